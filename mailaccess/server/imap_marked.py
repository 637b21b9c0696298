"""Which messages of a mailbox carry a keyword (\\Deleted for EXPUNGE and
CLOSE), kept per server and brought forward from the store's change index.

An EXPUNGE used to read the record of every message of the mailbox.  Here
the answer for a mailbox at modseq MS is kept (``Marked``); at a later
modseq only the messages that changed since MS (``View.changed_since``: a
keyword change, an append or a copy moves a message's modseq in every
mailbox it is in) and the ones expunged since (``View.vanished_since``) are
looked at.  When those are no longer recorded, or too many changed, the
whole mailbox is read again (a compiled scan of the raw records).  Nothing
here touches sockets; all reads go through the caller's store view.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..store.errors import CannotCalculateChanges
from ..store.records import Mailbox

# beyond this many cached mailboxes the cache starts over (memory bound)
MAX_MAILBOXES = 4096


@dataclass(frozen=True, slots=True)
class Marked:
    """The UIDs of a mailbox that carried a keyword at modseq MS."""

    ms: int
    uids: frozenset


def marked_uids(v, cache: dict, acc: int, m: Mailbox, keyword: str,
                read_all: bool = True) -> frozenset | None:
    """The UIDs of mailbox M (as read in view V) whose email has KEYWORD
    (lowercase) in V's state.  CACHE: {(acc, mailbox, keyword): Marked},
    shared by the sessions of a server, updated here.  READ_ALL False: None
    instead of reading every message of M (the caller has a smaller set to
    look at)."""
    key = (acc, m.id, keyword)
    hit = cache.get(key)
    if hit is not None and hit.ms == m.highest_ms:
        return hit.uids
    uids = None
    if hit is not None and hit.ms < m.highest_ms:
        uids = _brought_forward(v, acc, m, keyword, hit)
    if uids is None:
        if not read_all:
            return None
        all_uids, eids = v.uid_map(acc, m.id)
        uids = frozenset(all_uids[i] for i in v.keyword_positions(acc, eids, keyword))
    if len(cache) >= MAX_MAILBOXES and key not in cache:
        cache.clear()
    cache[key] = Marked(m.highest_ms, uids)
    return uids


def _brought_forward(v, acc: int, m: Mailbox, keyword: str, hit: Marked) -> frozenset | None:
    """HIT brought forward to M's modseq, or None when it cannot be (or
    should not: reading everything is cheaper)."""
    try:
        vanished = v.vanished_since(acc, m.id, hit.ms)
    except CannotCalculateChanges:
        return None
    changed = v.changed_since(acc, m.id, hit.ms)
    if len(changed) > max(64, m.total // 4):
        return None
    uids = set(hit.uids)
    uids.difference_update(u for _ms, u in vanished)
    cu, ce = [], []
    for _ms, u in changed:
        uids.discard(u)
        e = v.email_at(acc, m.id, u)
        if e is not None:
            cu.append(u)
            ce.append(e)
    uids.update(cu[i] for i in v.keyword_positions(acc, ce, keyword))
    return frozenset(uids)
