"""A mailbox's flags as a column, kept per worker: IMAP SEARCH on flags,
keywords, modseq and UIDs without reading a record per message.

A ``FlagColumn`` holds, for one mailbox at its HIGHESTMODSEQ ``ms``, three
parallel arrays in UID order: the UIDs, each message's keywords as a bit set
(bit i: ``names[i]``; the first 32 keywords met get a bit, ``FLAG_SLOTS`` of
the search twins) and each message's modseq (its record's last change).  It
is built by one compiled scan of the raw records, the first time a session of
the worker makes a flag SEARCH on the mailbox (``FlagColumns.get``), and brought forward from the
store's change index as imap_marked does: at a later modseq only the
messages changed since (``View.changed_since``: every keyword change moves
the message's modseq in each mailbox it is in), the ones expunged since
(``View.vanished_since``) and the ones above its top UID (``View.uid_map``)
are read, all in the caller's view: the column is always that view's state,
whatever session, worker process or protocol made the change.  When the
expunges are no longer recorded, or too many changed, it is built again.

``evaluate`` answers a query (query/model.py) made only of keywords, modseq,
UID sets, All, And, Or and Not over the session's candidates, or says it
cannot (None: a keyword without a bit, a candidate the column does not
hold, any other condition): the caller then runs the query engine, whose
answers these are held to (tests/test_imap_flag_column.py).

Memory: 16 bytes a message; the columns of a worker are bounded by
``[imap] flag_cache_bytes`` (least recently used out first; a column over
the budget is used once and not kept).  Nothing here touches sockets; all
reads go through the caller's store view.
"""
from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict

from .. import _speedups
from ..query import model as q
from ..store.errors import CannotCalculateChanges
from ..store.records import Mailbox

_impl = _speedups.load("search")

# a column is rebuilt rather than brought forward when more than this share
# of its messages changed (one scan is cheaper than that many lookups)
REBUILD_SHARE = 4


class FlagColumn:
    __slots__ = ("ms", "uids", "bits", "mss", "names", "slots", "full", "uidvalidity")

    def __init__(self, ms: int, uids: array, bits: array, mss: array, names: list[bytes],
                 full: bool, uidvalidity: int = 0):
        self.uidvalidity = uidvalidity  # of the mailbox (another one: built again)
        self.ms = ms            # the mailbox's HIGHESTMODSEQ this column is
        self.uids = uids        # array('I'), ascending
        self.bits = bits        # array('I'): bit i set = keyword names[i]
        self.mss = mss          # array('Q'): the message's modseq
        self.names = names      # keywords (UTF-8 bytes, lowercase) with a bit
        self.slots = {n: i for i, n in enumerate(names)}
        self.full = full        # some keyword found no bit (evaluate: unknown)

    def nbytes(self) -> int:
        return 16 * len(self.uids) + sum(len(n) + 80 for n in self.names) + 400

    def _rows(self, reader, eids, impl) -> tuple[array, array]:
        bits, mss, full = impl.flag_rows(reader, eids, self.names)
        self.slots = {n: i for i, n in enumerate(self.names)}
        self.full = self.full or full
        return bits, mss


def build(v, acc: int, m: Mailbox, impl=None, start=None) -> FlagColumn:
    """The column of mailbox M as view V has it (one scan of its records).
    START: a sequence map of M at an older or the same modseq (a session's
    ``Snapshot``: ``uids``, ``eids``, ``highest_ms``), whose UIDs are taken
    instead of reading M's (the records are read in V all the same), then
    brought forward to V's state."""
    impl = impl or _impl
    if start is not None and start.highest_ms <= m.highest_ms:
        col = FlagColumn(start.highest_ms, array("I", start.uids), array("I"), array("Q"),
                         [], False, m.uidvalidity)
        col.bits, col.mss = col._rows(v.email_reader(acc), start.eids, impl)
        if col.ms == m.highest_ms or forward(v, acc, m, col, impl):
            return col
    uids, eids = v.uid_map(acc, m.id)
    col = FlagColumn(m.highest_ms, uids, array("I"), array("Q"), [], False, m.uidvalidity)
    col.bits, col.mss = col._rows(v.email_reader(acc), eids, impl)
    return col


def forward(v, acc: int, m: Mailbox, col: FlagColumn, impl=None) -> bool:
    """Bring COL (of mailbox M, at an older modseq) forward to M as view V
    has it, in place -> True; False when it cannot be (the expunges since
    are no longer recorded) or should not (too many changed: build)."""
    impl = impl or _impl
    most = max(64, len(col.uids) // REBUILD_SHARE)
    try:
        vanished = v.vanished_since(acc, m.id, col.ms, most)
    except CannotCalculateChanges:
        return False
    changed = v.changed_since(acc, m.id, col.ms, most)
    if len(changed) + len(vanished) > most:
        return False
    uids = col.uids
    if vanished:
        drop = sorted({i for _ms, u in vanished
                       for i in (bisect.bisect_left(uids, u),) if i < len(uids) and uids[i] == u})
        if drop:
            keep_u, keep_b, keep_s = array("I"), array("I"), array("Q")
            prev = 0
            for i in drop + [len(uids)]:
                keep_u += uids[prev:i]
                keep_b += col.bits[prev:i]
                keep_s += col.mss[prev:i]
                prev = i + 1
            col.uids, col.bits, col.mss = keep_u, keep_b, keep_s
            uids = keep_u
    top = uids[-1] if uids else 0
    reader = v.email_reader(acc)
    at, eids = [], []
    for _ms, u in changed:
        if u > top:
            continue            # new: read below, with the others above the top
        i = bisect.bisect_left(uids, u)
        if i < len(uids) and uids[i] == u:
            e = v.email_at(acc, m.id, u)
            if e is not None:
                at.append(i)
                eids.append(e)
    if eids:
        bits, mss = col._rows(reader, eids, impl)
        for i, b, s in zip(at, bits, mss):
            col.bits[i] = b
            col.mss[i] = s
    new_uids, new_eids = v.uid_map(acc, m.id, top)
    if len(new_uids):
        bits, mss = col._rows(reader, new_eids, impl)
        col.uids.extend(new_uids)
        col.bits.extend(bits)
        col.mss.extend(mss)
    col.ms = m.highest_ms
    return True


class FlagColumns:
    """The columns of one worker process, by (account, mailbox), least
    recently used first; at most LIMIT bytes (``FlagColumn.nbytes``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.cols: OrderedDict[tuple[int, int], FlagColumn] = OrderedDict()
        self.bytes = 0

    def get(self, v, acc: int, m: Mailbox, impl=None, start=None) -> FlagColumn:
        """The column of mailbox M in view V's state: the kept one, brought
        forward or built (and kept, within the budget; START: see
        ``build``).  Linear in M's size when built, in what changed
        otherwise."""
        key = (acc, m.id)
        col = self.cols.get(key)
        if col is not None:
            if col.ms == m.highest_ms and col.uidvalidity == m.uidvalidity:
                self.cols.move_to_end(key)
                return col
            self._drop(key)
            if col.ms > m.highest_ms or col.uidvalidity != m.uidvalidity \
                    or not forward(v, acc, m, col, impl):
                col = None
        if col is None:
            col = build(v, acc, m, impl, start)
        self.put(key, col)
        return col

    def peek(self, acc: int, m: Mailbox) -> FlagColumn | None:
        """The kept column of M when it is M's state (no read)."""
        col = self.cols.get((acc, m.id))
        return col if col is not None and col.ms == m.highest_ms \
            and col.uidvalidity == m.uidvalidity else None

    def put(self, key: tuple[int, int], col: FlagColumn) -> None:
        self._drop(key)
        size = col.nbytes()
        if size > self.limit:
            return
        while self.cols and self.bytes + size > self.limit:
            _k, old = self.cols.popitem(last=False)
            self.bytes -= old.nbytes()
        self.cols[key] = col
        self.bytes += size

    def _drop(self, key) -> None:
        old = self.cols.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes()


class _Unknown(Exception):
    """The column cannot answer this condition."""


def answerable(query) -> bool:
    """Is QUERY made only of what ``evaluate`` knows (keywords, modseq,
    UID sets, All, And, Or, Not)?"""
    t = type(query)
    if t in (q.And, q.Or):
        return all(answerable(i) for i in query.items)
    if t is q.Not:
        return answerable(query.item)
    return t in (q.Keyword, q.ModSeqAtLeast, q.Uids, q.All)


def evaluate(col: FlagColumn, keys, query, impl=None) -> tuple[list[int], int] | None:
    """(the KEYS (candidate UIDs, ascending) that match QUERY, the highest
    modseq among them, 0 when none), or None when the column cannot tell
    (see the module's docstring)."""
    impl = impl or _impl
    if type(keys) is not array:
        keys = array("I", keys)
    idx = impl.flag_align(col.uids, keys)
    if idx is None:
        return None
    n = len(keys)
    every = int.from_bytes(b"\x01" * n, "little")

    def ev(node) -> int:
        # a set of candidates: byte i of the integer is 1 when candidate i is in it
        t = type(node)
        if t is q.All:
            return every
        if t is q.And:
            r = every
            for i in node.items:
                r &= ev(i)
            return r
        if t is q.Or:
            r = 0
            for i in node.items:
                r |= ev(i)
            return r
        if t is q.Not:
            return every & ~ev(node.item)
        if t is q.Keyword:
            slot = col.slots.get(node.name.encode("utf-8", "surrogatepass"))
            if slot is None:
                if col.full:
                    raise _Unknown
                return 0        # no message of the mailbox has it
            return int.from_bytes(impl.flag_bits(idx, col.bits, 1 << slot), "little")
        if t is q.ModSeqAtLeast:
            return int.from_bytes(impl.flag_min(idx, col.mss, node.n), "little")
        if t is q.Uids:
            hit = bytearray(n)
            for lo, hi in node.ranges:
                i = bisect.bisect_left(keys, lo)
                j = bisect.bisect_right(keys, hi, i)
                if i < j:
                    hit[i:j] = b"\x01" * (j - i)
            return int.from_bytes(hit, "little")
        raise _Unknown

    try:
        chosen = ev(query)
    except _Unknown:
        return None
    return impl.flag_pick(chosen.to_bytes(n, "little"), keys, idx, col.mss)


def highest_modseq(v, acc: int, eids, impl=None) -> int:
    """The highest modseq of the emails EIDS in view V (0: none, or all
    gone): one compiled pass over their raw records, no record decoded."""
    impl = impl or _impl
    _bits, mss, _full = impl.flag_rows(v.email_reader(acc), eids, None)
    return max(mss, default=0)
