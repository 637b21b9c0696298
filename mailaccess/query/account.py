"""Account-wide email queries: JMAP Email/query (and ActiveSync Search).

IMAP searches one selected mailbox; JMAP and ActiveSync search the whole
account.  ``query_emails(view, acc, query, keys, collapse_threads)`` picks the
candidates from the store's indexes (an ``InMailbox`` condition at the top of
the query reads that mailbox's UID index instead of every email), evaluates
the rest with :func:`.engine.search`, orders with :func:`.sort.sort` and, for
JMAP ``collapseThreads``, keeps the first email of each thread.  The result
is the full ordered list of email ids; the protocol slices its window.

:class:`ResultCache` keeps recent results keyed by the account's Email state
(a result depends only on emails, their keywords, mailboxes and threads, all
of which move the Email state when they change), so repeated queries over an
unchanged account (a client paging, many clients polling) cost a dict look-up.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from mailaccess.store.records import EMAIL_LAYOUT

from . import engine
from . import model as m
from . import sort as qsort

__all__ = ["query_emails", "split_mailbox", "collapse", "ResultCache", "Result"]

_HEAD = EMAIL_LAYOUT.head
_THREAD = EMAIL_LAYOUT.index("thread")


def split_mailbox(query) -> tuple[int | None, object]:
    """(mailbox, rest): when QUERY requires membership of one mailbox (an
    ``InMailbox`` alone or inside the top ``And``), that mailbox and the query
    without it; else (None, QUERY)."""
    if type(query) is m.InMailbox:
        return query.mailbox, m.All()
    if type(query) is m.And:
        for i, item in enumerate(query.items):
            if type(item) is m.InMailbox:
                rest = query.items[:i] + query.items[i + 1:]
                return item.mailbox, (m.And(rest) if rest else m.All())
    return None, query


def candidates(view, acc: int, mailbox: int | None) -> list[tuple[int, int]]:
    """(email id, email id) of every email of the account, or of MAILBOX, in
    email id order."""
    if mailbox is None:
        eids = view.email_ids(acc)
    else:
        eids = sorted({e for _, e in view.uids(acc, mailbox)})
    return [(e, e) for e in eids]


def collapse(view, acc: int, eids: Sequence[int]) -> list[int]:
    """The first email of each thread, in EIDS order (RFC 8621 4.4.3)."""
    reader = view.email_reader(acc)
    unpack = _HEAD.unpack_from
    seen: set[int] = set()
    out = []
    for e in eids:
        raw = reader(e)
        tid = unpack(raw)[_THREAD] if raw is not None else -e
        if tid not in seen:
            seen.add(tid)
            out.append(e)
    return out


def query_emails(view, acc: int, query, keys: list[qsort.SortKey],
                 collapse_threads: bool = False) -> list[int]:
    """Email ids of account ACC matching QUERY, ordered by KEYS (ties in
    email id order), one per thread with COLLAPSE_THREADS."""
    mailbox, rest = split_mailbox(query)
    cands = candidates(view, acc, mailbox)
    if type(rest) is not m.All:
        hits = engine.search(view, acc, cands, rest)
        cands = [(e, e) for e in hits]
    ordered = qsort.sort(view, acc, cands, keys)
    if collapse_threads:
        ordered = collapse(view, acc, ordered)
    return ordered


class Result:
    """One query's ordered email ids, with a position map built on demand."""

    __slots__ = ("state", "ids", "_pos")

    def __init__(self, state: str, ids: list[int]):
        self.state = state
        self.ids = ids
        self._pos: dict[int, int] | None = None

    def position(self, eid: int) -> int | None:
        p = self._pos
        if p is None:
            p = self._pos = {e: i for i, e in enumerate(self.ids)}
        return p.get(eid)


class ResultCache:
    """Least-recently-used results, bounded in entries and in ids held."""

    def __init__(self, max_entries: int = 256, max_ids: int = 2_000_000):
        self.max_entries = max_entries
        self.max_ids = max_ids
        self._d: OrderedDict[tuple, Result] = OrderedDict()
        self._ids = 0

    def get(self, key: tuple) -> Result | None:
        r = self._d.get(key)
        if r is not None:
            self._d.move_to_end(key)
        return r

    def put(self, key: tuple, result: Result) -> None:
        if len(result.ids) > self.max_ids:
            return
        old = self._d.pop(key, None)
        if old is not None:
            self._ids -= len(old.ids)
        self._d[key] = result
        self._ids += len(result.ids)
        while len(self._d) > self.max_entries or self._ids > self.max_ids:
            _, r = self._d.popitem(last=False)
            self._ids -= len(r.ids)

    def __len__(self) -> int:
        return len(self._d)
