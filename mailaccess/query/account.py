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
the emails that may have moved, :func:`moved`, re-evaluated and placed by
their sort values) instead of re-reading every email.  For a query that
depends on whole threads (thread keyword conditions or sorts, collapsing)
the emails that may have moved include every email of a changed thread.
"""
from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from mailaccess.store.errors import CannotCalculateChanges
from mailaccess.store.records import EMAIL, EMAIL_LAYOUT, THREAD

from . import engine
from . import model as m
from . import sort as qsort

__all__ = ["query_emails", "run", "refresh", "moved", "Moved", "thread_wide",
           "split_mailbox", "collapse", "thread_ids", "ResultCache", "Result"]

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


def thread_ids(view, acc: int, eids: Sequence[int]) -> list[int]:
    """The thread id of each of EIDS (read from the record head alone; an
    email that is gone gets a thread of its own)."""
    reader = view.email_reader(acc)
    unpack = _HEAD.unpack_from
    out = []
    for e in eids:
        raw = reader(e)
        out.append(unpack(raw)[_THREAD] if raw is not None else -e)
    return out


def collapse(view, acc: int, eids: Sequence[int]) -> list[int]:
    """The first email of each thread, in EIDS order (RFC 8621 4.4.3)."""
    return _collapse(eids, thread_ids(view, acc, eids))


def _collapse(eids: Sequence[int], tids: Sequence[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for e, t in zip(eids, tids):
        if t not in seen:
            seen.add(t)
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
    if collapse_threads:
        tids = thread_ids(view, acc, [e for e, _ in rows])
        rows = [(e, v, t) for (e, v), t in zip(rows, tids)]
    return Result(state, rows, collapse_threads)


def thread_wide(query, keys: list[qsort.SortKey], collapse_threads: bool) -> bool:
    """Whether a result depends on other emails of a thread (thread keyword
    conditions or sorts, collapsing): a change to one email may then move
    the others of its thread too."""
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


@dataclass(slots=True)
class Moved:
    """What may have moved in a query's results since a state: every email
    created, updated or destroyed since (from the change log) and, for a
    thread-wide query, every email of their threads."""

    created: set[int]
    destroyed: set[int]
    affected: set[int]        # all of them, destroyed ones included


def moved(view, acc: int, since: str, thread_wide_query: bool,
          limit: int | None = None) -> Moved:
    """The emails whose place in a query's results may differ between state
    SINCE and VIEW's state.  Raises CannotCalculateChanges when the change
    log cannot say (state pruned, malformed, newer than the account) or, with
    LIMIT, when more than LIMIT emails changed."""
    page = view.changes(acc, EMAIL, since, limit)
    if page.has_more:
        raise CannotCalculateChanges("too many changes")
    created, destroyed = set(page.created), set(page.destroyed)
    affected = created | destroyed | set(page.updated)
    if thread_wide_query and affected:
        tpage = view.changes(acc, THREAD, since, limit)
        if tpage.has_more:
            raise CannotCalculateChanges("too many changes")
        threads = set(tpage.created) | set(tpage.updated) | set(tpage.destroyed)
        live = sorted(affected - destroyed)
        threads.update(t for t in thread_ids(view, acc, live) if t > 0)
        for t in threads:
            affected.update(view.thread_members(acc, t))
            if limit is not None and len(affected) > limit:
                raise CannotCalculateChanges("too many changes")
    return Moved(created, destroyed, affected)


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
        return tuple(_Rev(v) if r else v for v, r in zip(row[1], rev)) + (row[0],)
    return key


def refresh(view, acc: int, old: "Result", state: str, query, keys: list[qsort.SortKey],
            collapse_threads: bool = False) -> "Result | None":
    """OLD (a result of QUERY ordered by KEYS at an earlier state) brought to
    STATE from the change log: every email that may have moved (:func:`moved`)
    is taken out and, when it matches now, put back at its place.  None when
    the log cannot say (pruned, too many changes): recompute."""
    wide = thread_wide(query, keys, collapse_threads)
    try:
        mv = moved(view, acc, old.state, wide, REFRESH_MAX_CHANGES)
    except CannotCalculateChanges:
        return None
    if not mv.affected:
        return Result(state, old.rows, collapse_threads)
    out = mv.affected
    rows = [r for r in old.rows if r[0] not in out]
    live = sorted(out - mv.destroyed)
    if live:
        hits = engine.search(view, acc, [(e, e) for e in live], query)
        new = qsort.values(view, acc, [(e, e) for e in hits], keys)
        if collapse_threads:
            tids = thread_ids(view, acc, [e for e, _ in new])
            new = [(e, v, t) for (e, v), t in zip(new, tids)]
        order = _order(keys)
        for row in new:
            bisect.insort(rows, row, key=order)
    return Result(state, rows, collapse_threads)


def run(view, acc: int, cache: "ResultCache", query, keys: list[qsort.SortKey],
        collapse_threads: bool = False) -> "Result":
    """The result of the query at VIEW's state: from CACHE when it holds that
    state, patched from an earlier one when the log allows, else computed;
    CACHE then holds it."""
    state = view.kind_state(acc, EMAIL)
    ck = (acc, query, tuple(keys), collapse_threads)
    old = cache.get(ck)
    if old is not None and old.state == state:
        return old
    r = None
    if old is not None:
        r = refresh(view, acc, old, state, query, keys, collapse_threads)
    if r is None:
        r = _full(view, acc, state, query, keys, collapse_threads)
    cache.put(ck, r)
    return r


class Result:
    """One query's ordered email ids at STATE.  ROWS is the full ordered list
    before collapsing, ``(email id, sort values)`` (plus the thread id when
    COLLAPSED), kept to patch it; IDS the answer (one email per thread when
    COLLAPSED); the position map is built on demand."""

    __slots__ = ("state", "rows", "ids", "_pos")

    def __init__(self, state: str, rows: list[tuple], collapsed: bool = False):
        self.state = state
        self.rows = rows
        if collapsed:
            self.ids = _collapse([r[0] for r in rows], [r[2] for r in rows])
        else:
            self.ids = [r[0] for r in rows]
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
        if len(result.rows) > self.max_ids:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._ids -= len(old.rows)
            self._d[key] = result
            self._ids += len(result.rows)
            while len(self._d) > self.max_entries or self._ids > self.max_ids:
                _, r = self._d.popitem(last=False)
                self._ids -= len(r.rows)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._ids = 0

    def __len__(self) -> int:
        return len(self._d)
