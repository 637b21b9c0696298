"""JMAP push (RFC 8620 §7): StateChange objects from the bus and the change log.

Shared by the EventSource endpoint (server/jmap.py) and the WebSocket glue
(server/jmap_ws.py).  The bus says *that* kinds of an account moved
(mailaccess/bus.py); the states sent are read from the store's change log
(``View.kind_state``), the same strings ``/get`` and ``/changes`` use.  A
push state (``pushState``, the EventSource event id) is the account's
modseq: every write moves it, so a client that reconnects with an older one
is sent the current states at once.
"""
from __future__ import annotations

from typing import Iterable

from .. import ids

# the JMAP data types pushed: the change log also holds kinds that are no
# JMAP type (the outbound queue's "Outbound"), which are never sent
DEFAULT_TYPES = ("Mailbox", "Email", "Thread", "Identity", "EmailSubmission",
                 "VacationResponse", "EmailDelivery")


def parse_types(value: str | None) -> frozenset[str] | None:
    """'*' (or nothing) -> None (every type); 'Email,Mailbox' -> those."""
    if value is None or value.strip() in ("", "*"):
        return None
    return frozenset(t.strip() for t in value.split(",") if t.strip())


def current(store, acc: int, types: Iterable[str] | None) -> tuple[dict, str]:
    """({accountId: {Type: state}} for TYPES (None: the default set), push state)."""
    with store.view() as v:
        kinds = sorted(DEFAULT_TYPES if types is None else set(types) & set(DEFAULT_TYPES))
        states = {k: v.kind_state(acc, k) for k in kinds}
        ms = v.highest_modseq(acc)
    return ({ids.account_id(acc): states} if states else {}), str(ms)


def changed(store, acc: int, kinds: Iterable[str], types: frozenset[str] | None
            ) -> tuple[dict, str]:
    """The StateChange ``changed`` map for the KINDS a notification named,
    restricted to TYPES (None: all), and the push state."""
    want = sorted(k for k in kinds if k in DEFAULT_TYPES and (types is None or k in types))
    with store.view() as v:
        states = {k: v.kind_state(acc, k) for k in want}
        ms = v.highest_modseq(acc)
    return ({ids.account_id(acc): states} if states else {}), str(ms)


def unsent(changed: dict, sent: dict) -> dict:
    """CHANGED ({accountId: {Type: state}}) without the states already sent
    on this stream (SENT, {accountId: {Type: state}}, updated in place).
    A stream reads the current state, then subscribes from the bus's latest
    modseq; a commit acknowledged just before may be published to the bus
    only after that read, and would otherwise be pushed a second time with a
    state the client already has."""
    out = {}
    for acc, states in changed.items():
        had = sent.setdefault(acc, {})
        new = {t: st for t, st in states.items() if had.get(t) != st}
        if new:
            had.update(new)
            out[acc] = new
    return out


def parse_push_state(s: str | None) -> int | None:
    if s is None or not s.isdigit() or len(s) > 20:
        return None
    return int(s)
