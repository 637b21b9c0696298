"""Per-worker cache of IMAP SORT orders and THREAD answers (RFC 5256).

What this module owns
- ``SortCache``: shared by the sessions of one server (``SharedViews``), so
  by one worker process; bounded in bytes (``[imap] sort_cache_bytes``),
  least recently used first out.  Two kinds of entries:

  * SORT: per (account, mailbox, UIDVALIDITY, sort keys) an ``Order``: the
    (UID, email id) pairs it knows, those UIDs in sort order, and each one's
    sort values.  Every fact in it stays true for as long as the UIDVALIDITY
    does: a UID names one email for good (RFC 9051 2.3.1.1), an email's
    content never changes, and the values IMAP SORT compares (dates, size,
    header fields) come from the content alone, not from flags or
    membership.  So an order is never invalidated by a change; it is only
    brought up to date.  A SORT answers with the order filtered to the
    session's search result: the order is by the keys, then by UID (the
    sequence order, RFC 5256 section 3: ties in sequence order, REVERSE
    included), and the relative order of two messages under that total
    order does not depend on the other messages, so the filtered full order
    is exactly the sort of the subset.  Messages of the session's view the
    order does not know (new mail, a MOVE in, an expunge another session has
    not seen yet) are read and inserted by binary search on their values;
    UIDs the view no longer holds (expunged, moved out) are skipped by the
    filter and dropped from the order once they are more than a quarter of
    it.  A UID found with another email id than the order says (a reused
    account or mailbox id) discards the order.  With no order to start from,
    a search result under a quarter of the view is sorted alone (as without
    the cache) and nothing is kept: a narrow search of a big mailbox does not
    pay for sorting all of it.
  * THREAD: the answer (serialized ``* THREAD`` bytes) for the exact
    candidate list it was computed from ((number, email id) pairs: UIDs, or
    sequence numbers for THREAD without UID), per (account, mailbox,
    UIDVALIDITY, algorithm, UID or not).  THREAD's trees depend on the whole
    searched set, so only an identical candidate list hits; anything else
    recomputes and replaces it.

- SORT and THREAD with the search key ALL run no search: the candidates are
  the session's view (its shared snapshot arrays, compared as they are).
- The work (reading sort values, filtering, comparing candidate lists) runs
  in the caller's worker thread (``storeio.read``): entries are immutable, a
  worker returns a new one and the loop installs it (``put``), so threads
  never share a mutable entry.

Not cached: JMAP's keyword sort keys (``hasKeyword:`` ...; flags, not
content) never reach here (``cacheable``).  A ``mailaccess reindex`` that
rewrites stored indexes (a parser fix) bumps the account's index generation
(``CTR_INDEXES``, ``View.index_generation``); an order remembers the
generation its values were read at and one read at another is not used
(``sorted_uids`` reads it in the worker thread, where the view is: the
entry is replaced by the order made afresh); THREAD answers and columns
remember it too.
"""
from __future__ import annotations

import bisect
import sys
from array import array
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Callable, Sequence

from .. import storeio
from ..proto.imap import events as ev
from ..proto.imap import serialize as S
from ..query import sort as qsort
from ..query import thread as qthread

__all__ = ["SortCache", "Order", "ThreadAnswer", "cacheable", "is_all", "view_arrays", "sort",
           "thread", "sorted_uids", "thread_answer", "for_views", "DEFAULT_BYTES"]

DEFAULT_BYTES = 32 * 1024 * 1024
# past this share of the view unknown to an order, sorting everything again
# reads no more records than inserting them one by one would
_REBUILD_SHARE = 8
# a search result under this share of the view is sorted alone when there is
# no order to filter (the whole mailbox's order is made for the next SORT)
_NARROW = 4


def cacheable(keys: Sequence[qsort.SortKey]) -> bool:
    """Keys whose values come from the message's content alone."""
    return all(k.field in qsort.FIELDS for k in keys)


@dataclass(frozen=True, eq=False)
class Order:
    """One mailbox's messages in the order of some sort keys (immutable)."""

    uids: array          # the UIDs it knows, ascending
    eids: array          # their email ids, parallel to uids
    order: array         # the same UIDs in sort order
    vals: list           # each one's sort values (a tuple), parallel to order
    nbytes: int
    gen: int = 0         # the account's index generation the values were read at


def _value_bytes(row: tuple) -> int:
    return sys.getsizeof(row) + sum(sys.getsizeof(v) for v in row)


def _values_bytes(rows: list[tuple]) -> int:
    """``sum(map(_value_bytes, ROWS))`` (ROWS: tuples of one length, the
    number of sort keys) without a Python frame per row (a generator per row
    was a third of building a 10,000-message order)."""
    if not rows:
        return 0
    return len(rows) * sys.getsizeof(rows[0]) + sum(map(sys.getsizeof,
                                                        chain.from_iterable(rows)))


def _make(pairs_sorted: list[tuple[int, tuple]], uids: array, eids: array, gen: int) -> Order:
    """The Order of PAIRS_SORTED ((UID, values) in sort order) over the UIDs
    UIDS (ascending; the same ones) and their email ids EIDS."""
    order = array("I", map(itemgetter(0), pairs_sorted))
    vals = list(map(itemgetter(1), pairs_sorted))
    nbytes = 200 + 16 * len(uids) + 8 * len(vals) + _values_bytes(vals)
    return Order(uids, eids, order, vals, nbytes, gen)


def _before(keys, va: tuple, ua: int, vb: tuple, ub: int) -> bool:
    """Does (values VA, UID UA) sort before (VB, UB)?  Key by key, each
    reversed on its own; equal on every key: the lower UID first (sequence
    order, RFC 5256 section 3)."""
    for i, k in enumerate(keys):
        a, b = va[i], vb[i]
        if a == b:
            continue
        return (a > b) if k.reverse else (a < b)
    return ua < ub


def is_all(key) -> bool:
    """Is the search key ALL (the whole view, no search to run)?"""
    return type(key) is ev.All


def view_arrays(sel) -> tuple[array, array]:
    """The UIDs and email ids of SEL's view (expunges it knows of left out):
    the shared snapshot's own arrays when there are none (they are never
    changed in place, so a worker thread may read them)."""
    if not sel.gone:
        return sel.snap.uids, sel.snap.eids
    pairs = sel.pairs()
    return array("I", [u for u, _ in pairs]), array("I", [e for _, e in pairs])


async def sort(cache: "SortCache", store, sel, keys, wanted) -> list[int]:
    """The UIDs of WANTED (None: the whole view) in the order of KEYS,
    from CACHE's order of the mailbox brought up to SEL's view."""
    ck = cache.sort_key(sel.acc, sel.mbx, sel.uidvalidity, keys)
    known = cache.get(ck)
    donor = cache.donor(ck) if known is None else None
    uids, eids = view_arrays(sel)
    ordered, new = await storeio.read(store, sorted_uids, sel.acc, keys, uids, eids, wanted,
                                      known, donor)
    cache.note_sort(ck, known, new)
    return ordered


async def thread(cache: "SortCache", store, sel, algorithm: str, fn: Callable, uid: bool,
                 wanted) -> bytes:
    """The ``* THREAD`` response of FN over WANTED (None: the whole view),
    numbered by UID or sequence number, from CACHE when it has the answer
    for exactly these candidates; over the whole view, from the mailbox's
    cached columns (``query.thread.Columns``) brought up to the view."""
    if wanted is None:
        us, es = view_arrays(sel)
        if uid:
            nums = us
        elif not sel.gone:
            nums = array("I", range(1, len(us) + 1))
        else:
            nums = array("I", [sel.seq_of(u) for u in us])
    else:
        ul, el = sel.uids_eids(wanted)
        nums = array("I", ul if uid else [sel.seq_of(u) for u in ul])
        es = array("I", el)
    ck = cache.thread_key(sel.acc, sel.mbx, sel.uidvalidity, algorithm, uid)
    known = cache.get(ck)
    colk = cache.columns_key(sel.acc, sel.mbx, sel.uidvalidity) if wanted is None else None
    cols = cache.get(colk) if colk is not None else None
    data, new, newcols = await storeio.read(store, thread_answer, sel.acc, fn, nums, es, known,
                                            cols, colk is not None)
    if new is not None:
        cache.put(ck, new, new.nbytes)
    if newcols is not None and newcols is not cols:
        cache.put(colk, newcols, newcols.nbytes)
    return data


def sorted_uids(view, acc: int, keys, uids: array, eids: array, wanted,
                old: Order | None, donor: Order | None = None
                ) -> tuple[list[int], Order | None]:
    """(The UIDs of WANTED in sort order, a new Order to keep or None).

    UIDS/EIDS: the session's view, (UID, email id) ascending; WANTED: the
    UIDs to answer with (the search result, a subset of UIDS, ascending;
    None: all of them); OLD: the cached order or None; DONOR (when OLD is
    None): a cached order by the same fields with other REVERSE flags, whose
    values are sorted again instead of read.  Runs in a worker thread.

    OLD and DONOR hold values read from the stored message indexes as they
    were at their index generation (``View.index_generation``): one that
    ``mailaccess reindex`` has since rewritten any of is not used (the
    caller's entry is replaced by the order made afresh)."""
    gen = view.index_generation(acc)
    if old is not None and old.gen != gen:
        old = None
    if donor is not None and donor.gen != gen:
        donor = None
    new = None
    if old is None and donor is not None:
        old = new = _resorted(donor, keys)
    if old is not None and not (old.uids == uids and old.eids == eids):
        new = _catch_up(view, acc, keys, old, uids, eids)
        old = new
    if old is None and wanted is not None and len(wanted) * _NARROW < len(uids):
        # a narrow search and no order to start from: sorting the whole
        # mailbox would read far more than the answer needs; sort the
        # result alone and keep nothing
        pairs = [(u, eids[bisect.bisect_left(uids, u)]) for u in wanted]
        return qsort.sort(view, acc, pairs, list(keys)), None
    if old is None:
        pairs = list(zip(uids, eids))
        rows = qsort.sort_rows(view, acc, pairs, list(keys))
        new = old = _make(rows, uids, eids, gen)
    order = old.order
    if len(order) == len(uids) and (wanted is None or len(wanted) == len(uids)):
        # the whole view: the order knows every UID of it (caught up) and no other
        return order.tolist(), new
    keep = set(uids if wanted is None else wanted)
    return [u for u in order if u in keep], new


def _resorted(donor: Order, keys) -> Order:
    """DONOR's messages ordered by KEYS (the same fields, other REVERSE
    flags), from its values: in UID order, then stable sorts from the least
    significant key up, as ``query.sort.sort_rows`` does."""
    rows = qsort.order_rows(sorted(zip(donor.order, donor.vals), key=itemgetter(0)), keys)
    order = array("I", map(itemgetter(0), rows))
    return Order(donor.uids, donor.eids, order, list(map(itemgetter(1), rows)), donor.nbytes,
                 donor.gen)


def _catch_up(view, acc: int, keys, old: Order, uids: array, eids: array) -> Order | None:
    """OLD brought up to the view UIDS/EIDS: unknown UIDs inserted, and UIDs
    the view lacks dropped when they are many.  None: sort afresh (an email
    id changed under a UID, or too much is unknown)."""
    known_u, known_e = old.uids, old.eids
    top = known_u[-1] if known_u else 0
    k = bisect.bisect_right(uids, top)
    missing_u: list[int] = []
    missing_e: list[int] = []
    above = k == len(known_u) and known_u == uids[:k] and known_e == eids[:k]
    if not above:                       # (the common case: only new mail above the top)
        where = dict(zip(known_u, known_e))
        for u, e in zip(uids[:k], eids[:k]):
            have = where.get(u)
            if have is None:
                missing_u.append(u)
                missing_e.append(e)
            elif have != e:
                return None
    missing_u.extend(uids[k:])
    missing_e.extend(eids[k:])
    extra = len(known_u) + len(missing_u) - len(uids)   # known, not in the view
    if len(missing_u) * _REBUILD_SHARE > len(uids):
        return None
    order = old.order
    vals = old.vals
    if missing_u:
        rows = qsort.values(view, acc, list(zip(missing_u, missing_e)), list(keys))
        order = order.tolist()
        vals = list(vals)
        for u, v in rows:
            lo, hi = 0, len(order)
            while lo < hi:
                mid = (lo + hi) // 2
                if _before(keys, v, u, vals[mid], order[mid]):
                    hi = mid
                else:
                    lo = mid + 1
            order.insert(lo, u)
            vals.insert(lo, v)
    if extra * 4 > len(uids):
        keep = set(uids)
        pos = [i for i, u in enumerate(order) if u in keep]
        order = [order[i] for i in pos]
        vals = [vals[i] for i in pos]
        # (every UID of the view is in ORDER now: known, or inserted above)
        return _make(list(zip(order, vals)), uids, eids, old.gen)
    if not missing_u:
        return old
    if above:                           # the known UIDs, then the new ones above them
        nu, ne = array("I", known_u), array("I", known_e)
        nu.extend(missing_u)
        ne.extend(missing_e)
    else:
        both = sorted([*zip(known_u, known_e), *zip(missing_u, missing_e)])
        nu, ne = array("I", [u for u, _ in both]), array("I", [e for _, e in both])
    nbytes = old.nbytes + sum(16 + 8 + _value_bytes(v) for _u, v in rows)
    return Order(nu, ne, array("I", order), vals, nbytes, old.gen)


class SortCache:
    """The cached orders and THREAD answers of one worker, at most LIMIT bytes."""

    def __init__(self, limit: int = DEFAULT_BYTES):
        self.limit = limit
        self.entries: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = 0      # (for tests and benchmarks)

    def get(self, key: tuple):
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.entries.move_to_end(key)
        return hit[0]

    def put(self, key: tuple, value, nbytes: int) -> None:
        """Keep VALUE (NBYTES) under KEY, the least recently used going
        first; a value bigger than the whole limit is not kept."""
        old = self.entries.pop(key, None)
        if old is not None:
            self.nbytes -= old[1]
        if nbytes > self.limit:
            return
        while self.entries and self.nbytes + nbytes > self.limit:
            _k, (_v, n) = self.entries.popitem(last=False)
            self.nbytes -= n
        self.entries[key] = (value, nbytes)
        self.nbytes += nbytes

    # --- SORT ----------------------------------------------------------------------------

    @staticmethod
    def sort_key(acc: int, mbx: int, uidvalidity: int, keys) -> tuple:
        return ("sort", acc, mbx, uidvalidity,
                tuple((k.field, k.reverse, k.collation) for k in keys))

    def donor(self, key: tuple) -> Order | None:
        """A cached order of KEY's mailbox by KEY's fields and collations
        with other REVERSE flags (``sorted_uids`` sorts its values again)."""
        *head, ks = key
        if len(ks) > 3:                 # (2 ** keys lookups: a few keys only)
            return None
        for flips in range(1, 1 << len(ks)):
            other = (*head, tuple((f, r ^ bool(flips >> i & 1), c)
                                  for i, (f, r, c) in enumerate(ks)))
            hit = self.get(other)
            if hit is not None:
                return hit
        return None

    def note_sort(self, key: tuple, old: Order | None, new: Order | None) -> None:
        if new is None:             # OLD as it was, or a narrow search sorted alone
            self.hits += old is not None
            return
        self.misses += old is None
        self.put(key, new, new.nbytes)

    # --- THREAD --------------------------------------------------------------------------

    @staticmethod
    def thread_key(acc: int, mbx: int, uidvalidity: int, algorithm: str, uid: bool) -> tuple:
        return ("thread", acc, mbx, uidvalidity, algorithm, uid)

    @staticmethod
    def columns_key(acc: int, mbx: int, uidvalidity: int) -> tuple:
        return ("thread-columns", acc, mbx, uidvalidity)


@dataclass(frozen=True, eq=False)
class ThreadAnswer:
    """A THREAD answer, the exact candidates it is the answer for and the
    account's index generation it was made at (a reindex may change what a
    message threads by: References, subject, date)."""

    nums: array
    eids: array
    data: bytes
    gen: int = 0

    @property
    def nbytes(self) -> int:
        return 200 + 8 * len(self.nums) + len(self.data)

    def matches(self, nums: array, eids: array, gen: int) -> bool:
        return self.gen == gen and self.nums == nums and self.eids == eids


def thread_answer(view, acc: int, fn: Callable, nums: array, eids: array,
                  old: ThreadAnswer | None, cols: "qthread.Columns | None" = None,
                  keep: bool = False) -> tuple[bytes, ThreadAnswer | None,
                                               "qthread.Columns | None"]:
    """(The ``* THREAD`` response of FN over the candidates NUMS/EIDS
    (numbers and email ids, parallel), a new ThreadAnswer to keep or None
    when OLD was it, the candidates' columns to keep or None).  COLS: the
    mailbox's columns as cached (None: none), reused for the email ids they
    start with; KEEP: the candidates are the whole view, whose columns are
    worth keeping.  Runs in a worker thread."""
    gen = view.index_generation(acc)
    if old is not None and old.matches(nums, eids, gen):
        return old.data, None, None
    over = qthread.OVER_COLUMNS.get(fn)
    if over is None:
        data = S.thread(fn(view, acc, list(zip(nums, eids))))
        return data, ThreadAnswer(nums, eids, data, gen), None
    c = qthread.columns(view, acc, eids, cols)
    data = over(c, nums.tolist())
    return data, ThreadAnswer(nums, eids, data, gen), c if keep else None


# one SortCache per SharedViews (per IMAP service, so per worker process),
# kept beside it rather than in it: it lives as long as the service does
_CACHES: "weakref.WeakKeyDictionary[object, SortCache]" = weakref.WeakKeyDictionary()


def for_views(shared, limit: int) -> SortCache:
    """The SortCache of the sessions sharing SHARED (a SharedViews)."""
    c = _CACHES.get(shared)
    if c is None:
        c = _CACHES[shared] = SortCache(limit)
    return c
