"""IMAP4rev1 \\Recent: which session a message is recent in (RFC 3501 2.3.2).

A message is recent in exactly one session: the first one that selects its
mailbox read-write after the message arrived, or that has the mailbox
selected and refreshes first (Dovecot's model).  The store keeps one
watermark per mailbox, ``recent_from`` (store/records.py): UIDs at or above
it are claimed by nobody yet.  A claim (store/ops.claim_recent) raises it to
UIDNEXT in one write, so two sessions never claim the same message; it
survives a restart, so mail that arrived while the server was down is recent
to the next session that selects.

EXAMINE claims nothing (RFC 3501 6.3.2) but still shows the unclaimed
messages as recent in its own view.  IMAP4rev2 sessions claim like any other
but never show \\Recent or RECENT (RFC 9051 dropped them).  What a session
claimed lives in its SelectedMailbox (views/imap_selected.py).
"""
from __future__ import annotations

import logging

from .. import storeio
from ..proto.imap import serialize as S
from ..store import StoreError, ops

log = logging.getLogger("mailaccess.imap")


async def on_select(store, shared, sel, m) -> None:
    """At SELECT/EXAMINE of mailbox record M into SEL: claim (read-write) or
    look at (read-only) the unclaimed messages; sets the RECENT count."""
    await _take(store, shared, sel, m)
    sel.recent_told = sel.recent_count() if sel.show_recent else 0


async def on_refresh(store, shared, sel, m=None) -> None:
    """Before a refresh: claim what arrived since SEL last looked.  One small
    read (none when the caller passes M, the mailbox's record it read with
    nothing awaited since); a write only when something is unclaimed."""
    if m is None:
        with store.view() as v:
            m = v.mailbox(sel.acc, sel.mbx)
    if m is not None and unclaimed(sel, m):
        await _take(store, shared, sel, m)


def settled(shared, sel, m) -> bool:
    """Before a refresh, in the view mailbox record M was read from: whether
    SEL's look at M for \\Recent needs no write (nothing arrived since SEL
    last looked; a read-only view; mail another session claimed already; a
    claim on its way).  What needs none is done here, so the refresh goes on
    in the same view; False: on_refresh must claim (a write) first."""
    if not unclaimed(sel, m):
        return True
    if sel.readonly or m.recent_from >= m.uidnext:
        _look(sel, m)
        return True
    return (sel.acc, sel.mbx) in shared.claiming


def claim_with_append(tx, acc: int, mbx: int, selected: int | None) -> tuple[int, int] | None:
    """(The writer, in an APPEND's transaction, after its messages) An APPEND
    into the mailbox its session has selected read-write claims, in its own
    write, what its catch-up would claim right after (``on_refresh``: the
    messages just appended, and whatever else arrived unclaimed), so the
    APPEND costs one commit, not two.  The session is the first to be told
    of them (its catch-up answers the APPEND with their EXISTS), as RFC 3501
    2.3.2 wants, and no other session can ever see them unclaimed.  -> the
    claimed range (lo, hi), for ``claimed``; None when MBX is not SELECTED."""
    if selected is None or selected != mbx:
        return None
    return ops.claim_recent(tx, acc, mbx)


def claimed(sel, lo: int, hi: int) -> None:
    """The session of SEL claimed [LO, HI) (claim_with_append): recent in it,
    and looked at up to HI."""
    sel.add_recent(lo, hi)
    sel.recent_upto = max(sel.recent_upto, hi)


def unclaimed(sel, m) -> bool:
    """Whether mailbox record M has messages SEL has not looked at for
    \\Recent yet (on_refresh then has something to do)."""
    return m.uidnext > sel.recent_upto


def updates(sel) -> list[bytes]:
    """``* n RECENT`` when the session's count moved (IMAP4rev1; as Dovecot,
    not repeated with every EXISTS)."""
    if not sel.show_recent:
        return []
    n = sel.recent_count()
    if n != sel.recent_told:
        sel.recent_told = n
        return [S.recent(n)]
    return []


def _look(sel, m) -> None:
    """Nothing to claim in M (read-only, or claimed already): what nobody
    claimed is recent in a read-only view."""
    if sel.readonly:
        sel.add_recent(max(m.recent_from, sel.recent_upto), m.uidnext)
    sel.recent_upto = max(sel.recent_upto, m.uidnext)


async def _take(store, shared, sel, m) -> None:
    if sel.readonly or m.recent_from >= m.uidnext:
        _look(sel, m)
        return
    key = (sel.acc, sel.mbx)
    claiming = shared.claiming
    if key in claiming:
        return      # another session's claim is on its way; it takes these
    claiming.add(key)
    try:
        lo, hi = await storeio.write(store, ops.claim_recent, sel.acc, sel.mbx)
    except StoreError as exc:
        # (a full disk): the session goes on without them; a later one takes them
        log.warning("could not claim \\Recent messages: %s", exc)
        return
    finally:
        claiming.discard(key)
    claimed(sel, lo, hi)
    sel.recent_upto = max(sel.recent_upto, m.uidnext)


def status_count(v, acc: int, sel, m) -> int:
    """STATUS (RECENT) of mailbox M: the selected one answers with the
    session's own count, any other with the messages nobody claimed yet."""
    if sel is not None and sel.mbx == m.id:
        return sel.recent_count() if sel.show_recent else 0
    if m.recent_from >= m.uidnext:
        return 0
    return len(v.uids(acc, m.id, after=m.recent_from - 1))
