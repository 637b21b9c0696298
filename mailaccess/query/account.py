"""Account-wide email queries: JMAP Email/query (and ActiveSync Search).

IMAP searches one selected mailbox; JMAP and ActiveSync search the whole
account.  ``query_emails(view, acc, query, keys, collapse_threads)`` picks the
candidates from the store's indexes (an ``InMailbox`` condition at the top of
the query reads that mailbox's UID index instead of every email), evaluates
the rest with :func:`.engine.search`, orders with :func:`.sort.sort` and, for
JMAP ``collapseThreads``, keeps the first email of each thread.  The result
is the full ordered list of email ids; the protocol slices its window.

:func:`run` answers through a :class:`ResultCache` of the latest result of
each recent query, tagged with the account's Email state (a result depends
only on emails, their keywords, mailboxes and threads, all of which move the
Email state when they change): repeated queries over an unchanged account (a
client paging, many clients polling) cost a dict look-up, and after a few
changes the cached result is patched from the change log (:func:`refresh`:
the changed emails re-evaluated and placed by their sort values) instead of
re-reading every email.
"""
from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from typing import Sequence

from mailaccess.store.errors import CannotCalculateChanges
from mailaccess.store.records import EMAIL, EMAIL_LAYOUT

from . import engine
from . import model as m
from . import sort as qsort

__all__ = ["query_emails", "run", "refresh", "thread_wide", "split_mailbox", "collapse",
           "ResultCache", "Result"]

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
                if not rest:
                    return item.mailbox, m.All()
                return item.mailbox, rest[0] if len(rest) == 1 else m.And(rest)
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
    return _full(view, acc, "", query, keys, collapse_threads).ids


def _full(view, acc: int, state: str, query, keys, collapse_threads: bool) -> "Result":
    mailbox, rest = split_mailbox(query)
    cands = candidates(view, acc, mailbox)
    if type(rest) is not m.All:
        hits = engine.search(view, acc, cands, rest)
        cands = [(e, e) for e in hits]
    rows = qsort.sort_rows(view, acc, cands, keys)
    eids = [e for e, _ in rows]
    if collapse_threads:
        return Result(state, collapse(view, acc, eids))
    return Result(state, eids, [v for _, v in rows])


def thread_wide(query, keys: list[qsort.SortKey], collapse_threads: bool) -> bool:
    """Whether a result depends on other emails of a thread (thread keyword
    conditions or sorts, collapsing): a change to one email may then move
    another, so the change log alone cannot update the result."""
    if collapse_threads or any(k.field.startswith(_THREAD_SORTS) for k in keys):
        return True
    stack = [query]
    while stack:
        n = stack.pop()
        t = type(n)
        if t in (m.ThreadKeyword, m.ThreadIds):
            return True
        if t in (m.And, m.Or):
            stack.extend(n.items)
        elif t is m.Not:
            stack.append(n.item)
    return False


_THREAD_SORTS = ("someInThreadHaveKeyword:", "allInThreadHaveKeyword:")

REFRESH_MAX_CHANGES = 2000
"""Changed emails up to which a cached result is patched rather than recomputed."""


class _Rev:
    """Reverses the order of one sort value (for bisecting a list sorted with
    reverse=True on that key)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other: "_Rev") -> bool:
        return other.v < self.v

    def __eq__(self, other) -> bool:
        return self.v == other.v


def _order(keys: list[qsort.SortKey]):
    rev = [k.reverse for k in keys]

    def key(row):
        eid, vals = row
        return tuple(_Rev(v) if r else v for v, r in zip(vals, rev)) + (eid,)
    return key


def refresh(view, acc: int, old: "Result", state: str, query,
            keys: list[qsort.SortKey]) -> "Result | None":
    """OLD (a result of QUERY ordered by KEYS at an earlier state) brought to
    STATE from the change log: every email created, updated or destroyed
    since is taken out and, when it matches now, put back at its place.
    None when the log cannot say (pruned, too many changes): recompute."""
    if old.vals is None:
        return None
    try:
        page = view.changes(acc, EMAIL, old.state, REFRESH_MAX_CHANGES)
    except CannotCalculateChanges:
        return None
    if page.has_more or page.new_state != state:
        return None
    changed = set(page.created) | set(page.updated) | set(page.destroyed)
    if not changed:
        return Result(state, old.ids, old.vals)
    rows = [(e, v) for e, v in zip(old.ids, old.vals) if e not in changed]
    live = sorted(set(page.created) | set(page.updated))
    if live:
        hits = engine.search(view, acc, [(e, e) for e in live], query)
        order = _order(keys)
        for row in qsort.values(view, acc, [(e, e) for e in hits], keys):
            bisect.insort(rows, row, key=order)
    return Result(state, [e for e, _ in rows], [v for _, v in rows])


def run(view, acc: int, cache: "ResultCache", query, keys: list[qsort.SortKey],
        collapse_threads: bool = False) -> "Result":
    """The result of the query at VIEW's state: from CACHE when it holds that
    state, patched from an earlier one when the query allows, else computed;
    CACHE then holds it."""
    state = view.kind_state(acc, EMAIL)
    ck = (acc, query, tuple(keys), collapse_threads)
    old = cache.get(ck)
    if old is not None and old.state == state:
        return old
    r = None
    if old is not None and not thread_wide(query, keys, collapse_threads):
        r = refresh(view, acc, old, state, query, keys)
    if r is None:
        r = _full(view, acc, state, query, keys, collapse_threads)
    cache.put(ck, r)
    return r


class Result:
    """One query's ordered email ids (and their sort values, to patch it),
    with a position map built on demand."""

    __slots__ = ("state", "ids", "vals", "_pos")

    def __init__(self, state: str, ids: list[int], vals: list[tuple] | None = None):
        self.state = state
        self.ids = ids
        self.vals = vals
        self._pos: dict[int, int] | None = None

    def position(self, eid: int) -> int | None:
        p = self._pos
        if p is None:
            p = self._pos = {e: i for i, e in enumerate(self.ids)}
        return p.get(eid)


class ResultCache:
    """The latest result of recent queries (key: account, query, sort,
    collapse), least recently used first out, bounded in entries and in ids
    held; safe to use from the event loop and worker threads."""

    def __init__(self, max_entries: int = 256, max_ids: int = 400_000):
        self.max_entries = max_entries
        self.max_ids = max_ids
        self._d: OrderedDict[tuple, Result] = OrderedDict()
        self._ids = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Result | None:
        with self._lock:
            r = self._d.get(key)
            if r is not None:
                self._d.move_to_end(key)
            return r

    def put(self, key: tuple, result: Result) -> None:
        if len(result.ids) > self.max_ids:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._ids -= len(old.ids)
            self._d[key] = result
            self._ids += len(result.ids)
            while len(self._d) > self.max_entries or self._ids > self.max_ids:
                _, r = self._d.popitem(last=False)
                self._ids -= len(r.ids)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._ids = 0

    def __len__(self) -> int:
        return len(self._d)
