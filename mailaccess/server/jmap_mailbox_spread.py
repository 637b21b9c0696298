"""Which Mailboxes an Email change reaches through its Thread (JMAP
Mailbox/changes, RFC 8621 §2).

A Mailbox's ``unreadThreads`` counts the Threads with an Email in the
Mailbox and an unread Email anywhere (the Trash rule aside): the unread
Email need not be the one in this Mailbox.  So marking an Email of mailbox A
read, deleting it, moving it to the Trash or delivering a new unread reply
into A can move the ``unreadThreads`` of mailbox B, which holds another
Email of the same Thread.  The store logs a mailbox as updated when its own
Emails change (its counts move); B is not logged.  ``spread`` finds B from
the log at /changes time: the Threads of the Emails changed, and of the
Threads changed (an Email destroyed leaves its Thread logged, not itself
readable), between two states, and every Mailbox holding one of their
Emails now.  It may name a Mailbox whose counts did not move (a client then
fetches counts that are the same): RFC 8620 §5.2 asks for every updated id,
and a superset keeps clients right.

The work grows with the Emails changed and their Threads' sizes, so it is
bounded: past LIMIT Emails read, ``spread`` gives up (None), and the caller
names every Mailbox instead.
"""
from __future__ import annotations

from .. import vocab
from ..store.records import EMAIL, MAILBOX, THREAD, email_thread_boxes_flags

_SEEN, _DRAFT = vocab.SEEN.encode(), vocab.DRAFT.encode()


def spread(v, acc: int, lo: int, hi: int, limit: int) -> set[int] | None:
    """The ids of the Mailboxes holding, in view V, an Email of a Thread that
    an Email or Thread change logged after modseq LO up to HI touched; None
    when that takes more than LIMIT ids or records to find out (or the log
    no longer reaches back to LO)."""
    emails = v.ids_changed_between(acc, EMAIL, lo, hi, limit)
    if emails is None:
        return None
    threads = v.ids_changed_between(acc, THREAD, lo, hi, limit)
    if threads is None:
        return None
    read = v.email_reader(acc)
    budget = limit - len(emails)
    for eid in emails:
        raw = read(eid)
        if raw is not None:         # (destroyed since: its Thread is logged)
            threads.add(email_thread_boxes_flags(raw, _SEEN, _DRAFT)[0])
    boxes: set[int] = set()
    for tid in threads:
        members = v.thread_members(acc, tid)
        budget -= len(members)
        if budget < 0:
            return None
        for eid in members:
            raw = read(eid)
            if raw is not None:
                boxes.update(email_thread_boxes_flags(raw, _SEEN, _DRAFT)[1])
    return boxes


def extra_updates(v, acc: int, lo: int, hi: int, listed: set[int],
                  limit: int, every_when_unknown: bool = True) -> set[int] | None:
    """The Mailboxes that Mailbox/changes from modseq LO to HI must add to
    ``updated`` beyond the LISTED ids it names already: those ``spread``
    finds (when it gives up: every Mailbox of ACC, or None unless
    EVERY_WHEN_UNKNOWN), less the ones changed after HI (a later page names
    them, and one created after HI must not be named before its creation)."""
    boxes = spread(v, acc, lo, hi, limit)
    if boxes is None:
        if not every_when_unknown:
            return None
        boxes = {m.id for m in v.mailboxes(acc)}
    # from HI itself on: a page may end inside modseq HI (the rest of it is
    # the next page's); an id of HI that the page lists is in LISTED anyway
    later = v.ids_changed_between(acc, MAILBOX, hi - 1, v.highest_modseq(acc), limit)
    if later is None:       # (thousands of mailbox changes since: keep the live ones)
        live = {m.id for m in v.mailboxes(acc)}
        return {b for b in boxes if b in live} - listed
    return boxes - later - listed
