"""Evaluate a :mod:`.model` query over candidate messages.

``search(view, acc, candidates, query)`` takes ``(key, email id)`` pairs in
order (IMAP: (UID, email id) in UID order; JMAP: (email id, email id)) and
returns the keys that match, in candidate order.

Evaluation is set-at-a-time over chunks of candidates: every node takes the
list of candidate positions still alive and returns the subset that matches.
``And`` runs its children cheapest first on the shrinking set, ``Or`` only
tries the candidates not yet matched, so expensive conditions (text scans)
only see the survivors of cheap ones (keywords, sizes, dates, modseq: all from
the email record).  Each email record and each message index is read at most
once per chunk, and the substring scan over a whole chunk is one call into
the ``search`` hot path (compiled twin when built).
"""
from __future__ import annotations

import bisect
import types
from typing import Sequence

from mailaccess import _speedups
from mailaccess.mime import index as mindex
from mailaccess.store.emails import LoadedEmail, load_email, load_record
from mailaccess.store.records import EmailRecord

from . import facts as _facts
from . import model as m

_impl = _speedups.load("search")
_INF = float("inf")     # (an open bound of a Sent range)

__all__ = ["search", "search_columns", "matches", "needle_bytes", "CHUNK"]

CHUNK = 512
"""Candidates evaluated together: bounds the text held in memory at once."""
RECORD_CHUNK = 8192
"""... when only keys and records are looked at (nothing is held per message)."""

# text fields of the message index
F_HEADERS = "search_headers"
F_BODY = "search_body"
F_TEXT = F_BODY  # the bench's "scan only" figure reads the body field

_EMPTY_RECORD = EmailRecord(0, b"", 0, 0, 0, 0, 0, [], [])


def needle_bytes(text: str) -> bytes:
    """A search string as the UTF-8 bytes of its normalised form."""
    return mindex.normalize_search(text).encode("utf-8", "surrogatepass")


def _field_view(data, name: str):
    """Field NAME of the index DATA without copying it when DATA is a buffer
    (an LMDB value in a read transaction): a memoryview slice, else bytes."""
    if data is None:
        return b""
    if type(data) is bytes:
        return mindex.index_field(data, name)
    start, end = mindex.index_field_span(data, name)
    return memoryview(data)[start:end]


# cost classes: evaluate lower first inside And / Or
_C_KEY, _C_RECORD, _C_THREAD, _C_META, _C_HEADER, _C_BODY = range(6)


def _cost(q) -> int:
    t = type(q)
    if t is _Compiled:
        if q.kind in (m.And, m.Or, m.Not):
            return max((_cost(i) for i in q.items), default=_C_KEY)
        return _C_HEADER if q.kind is m.Header else _C_BODY
    if t in (m.And, m.Or):
        return max((_cost(i) for i in q.items), default=_C_KEY)
    if t is m.Not:
        return _cost(q.item)
    if t in (m.All, m.Uids, m.EmailIds):
        return _C_KEY
    if t is m.ThreadKeyword:
        return _C_THREAD
    if t in (m.Sent, m.HasAttachment):
        return _C_META
    if t is m.Header:
        return _C_HEADER
    if t in (m.Text, m.Body):
        return _C_BODY
    return _C_RECORD


def _compile(q):
    """Normalise the tree once: flatten nested And/Or, precompute needles,
    order children by cost."""
    t = type(q)
    if t in (m.And, m.Or):
        items = []
        for i in q.items:
            c = _compile(i)
            if type(c) is t:
                items.extend(c.items)
            else:
                items.append(c)
        if t is m.And:
            items = [i for i in items if type(i) is not m.All]
            if not items:
                return m.All()
        if len(items) == 1:
            return items[0]
        items.sort(key=_cost)
        return _Compiled(t, tuple(items))
    if t is m.Not:
        inner = _compile(q.item)
        if type(inner) is _Compiled and inner.kind is m.Not:
            return inner.items[0]
        return _Compiled(m.Not, (inner,))
    if t in (m.Text, m.Body):
        return _Compiled(t, (), needle_bytes(q.text))
    if t is m.Header:
        name = q.name.strip().lower().encode("utf-8", "surrogatepass")
        return _Compiled(t, (), needle_bytes(q.text), name)
    return q


# address headers whose parsed form (the message index's address lists) is
# searched too
_ADDRESS_HEADERS = mindex.ADDRESS_FIELDS
# what in a header line writes an address in a way its plain text does not
# show (comments, quoting, spaces): such a message's parsed addresses are
# searched too (_Batch._addresses)
_ODD_ADDRESS = mindex.ODD_ADDRESS
# the headers an email's msg.hdr row holds (mime/index.py search_row): those
# conditions read the row, and only an email without one its index
_ROW_HEADERS = frozenset(mindex.ROW_HEADERS)


class _Compiled:
    __slots__ = ("kind", "items", "needle", "name")

    def __init__(self, kind, items, needle: bytes = b"", name: bytes = b""):
        self.kind = kind
        self.items = items
        self.needle = needle
        self.name = name


class _Batch:
    """One chunk of candidates and what has been read about them so far."""

    def __init__(self, view, acc: int, keys: list[int], eids: list[int],
                 mailbox: int | None, impl, readers: tuple):
        self.view = view
        self.acc = acc
        self.keys = keys
        self.eids = eids
        self.mailbox = mailbox
        self.impl = impl
        self._emails: list[LoadedEmail | None | bool] = [False] * len(keys)
        self._recs: list[EmailRecord | None] = [None] * len(keys)
        self._fields: dict[tuple[str, int], bytes] = {}
        self._threads: dict[int, list[EmailRecord]] = {}
        self.members = True
        self.read_email, self.read_index, self.read_row = readers
        self.ascending = False      # KEYS ascend (IMAP UIDs): Uids by bisection

    # --- lazily read data (store.emails: each part read at most once) ----------

    def email(self, p: int) -> LoadedEmail | None:
        em = self._emails[p]
        if em is False:
            r = self._recs[p]
            em = self._emails[p] = load_email(
                self.view, self.acc, self.eids[p], members=self.members,
                record=r if r is not _EMPTY_RECORD else None)
        return em

    def rec(self, p: int) -> EmailRecord:
        r = self._recs[p]
        if r is None:
            # memberships only when a condition asks about mailboxes
            r = load_record(self.view, self.acc, self.eids[p], self.members) or _EMPTY_RECORD
            self._recs[p] = r
        return r

    def index(self, p: int):
        """The encoded index (text-only conditions never decode the record)."""
        em = self.email(p)
        return em.index_data if em is not None else None

    def meta(self, p: int) -> mindex.MessageIndex | None:
        em = self.email(p)
        return em.index if em is not None else None

    def texts(self, name: str, pos: list[int]) -> list:
        out = []
        cache = self._fields
        for p in pos:
            k = (name, p)
            t = cache.get(k)
            if t is None:
                data = self.index(p)
                try:
                    t = _field_view(data, name)
                except ValueError:  # an index format this version cannot read
                    t = b""
                cache[k] = t
            out.append(t)
        return out

    def thread_records(self, tid: int) -> list[EmailRecord]:
        rs = self._threads.get(tid)
        if rs is None:
            rs = [r for r in (self.view.email(self.acc, e)
                              for e in self.view.thread_members(self.acc, tid)) if r]
            self._threads[tid] = rs
        return rs

    # --- evaluation ----------------------------------------------------------------

    def eval(self, q, pos: list[int]) -> list[int]:
        if not pos:
            return pos
        t = type(q)
        if t is _Compiled:
            return self._eval_compiled(q, pos)
        if t is m.All:
            return pos
        if t is m.Uids:
            keys = self.keys
            if self.ascending:
                return _in_ranges(keys, pos, q.ranges)
            return [p for p in pos if keys[p] in q]
        if t is m.EmailIds:
            eids, ids = self.eids, q.ids
            return [p for p in pos if eids[p] in ids]
        if t is m.ThreadKeyword:
            return self._thread_keyword(q, pos)
        if t is m.Sent:
            # the facts of the email's content (query/facts.py: remembered);
            # q.holds spelled out over the bounds (no call per email)
            eids = self.eids
            fs = _facts.facts(self.view, self.acc, [eids[p] for p in pos])
            # (sent, sent_tz) of each, None without a (readable) Date:
            if q.wall_clock:
                ts = [f[0] + (f[1] or 0) * 60 if f is not None and f[0] is not None else None
                      for f in fs]
            else:
                ts = [f[0] if f is not None else None for f in fs]
            lo = q.after if q.after is not None else -_INF
            hi = q.before if q.before is not None else _INF
            return [p for p, t in zip(pos, ts) if t is not None and lo <= t < hi]
        if t is m.HasAttachment:
            eids = self.eids
            return [p for p, f in zip(pos, _facts.facts(self.view, self.acc, [eids[p] for p in pos]))
                    if (f is not None and f.attachment) == q.value]
        return self.impl.match_records(self.read_email, self.eids, pos,
                                       _record_cond(q, self.mailbox, self.impl))

    def _eval_compiled(self, q: _Compiled, pos: list[int]) -> list[int]:
        k = q.kind
        if k is m.And:
            for item in q.items:
                pos = self.eval(item, pos)
                if not pos:
                    break
            return pos
        if k is m.Or:
            rest = pos
            hit: set[int] = set()
            for item in q.items:
                found = self.eval(item, rest)
                if found:
                    hit.update(found)
                    rest = [p for p in rest if p not in hit]
                    if not rest:
                        break
            return [p for p in pos if p in hit]
        if k is m.Not:
            inner = q.items[0]
            if _cost(inner) == _C_RECORD and type(inner) is not _Compiled:
                return self.impl.match_records(self.read_email, self.eids, pos,
                                               _record_cond(inner, self.mailbox, self.impl),
                                               False)
            hit = set(self.eval(inner, pos))
            return [p for p in pos if p not in hit]
        if k is m.Body:
            return self._scan(F_BODY, q.needle, pos)
        if k is m.Text:
            if not q.needle:
                return pos
            hit = set(self._scan(F_HEADERS, q.needle, pos))
            rest = [p for p in pos if p not in hit]
            hit.update(self._scan(F_BODY, q.needle, rest))
            return [p for p in pos if p in hit]
        if k is m.Header:
            if q.name in _ROW_HEADERS and self.read_row is not None:
                # the msg.hdr rows; an email without one (older mail, a
                # header too big for a row) is searched in its index
                found, rest = self.impl.match_header_rows(
                    self.read_row, self.eids, pos, q.name, q.needle)
                if not rest:
                    return found
                hit = set(found)
                hit.update(self._in_index(q, rest))
                return [p for p in pos if p in hit]
            return self._in_index(q, pos)
        raise TypeError(f"cannot evaluate {k!r}")

    def _in_index(self, q: _Compiled, pos: list[int]) -> list[int]:
        """Header condition Q over POS, read from the message indexes."""
        odd = _ODD_ADDRESS if q.needle and q.name in _ADDRESS_HEADERS else ()
        found, unusual = self.impl.match_headers(
            self.read_email, self.read_index, self.eids, pos, q.name,
            q.needle, odd)
        if unusual:
            found = self._addresses(q, pos, found, unusual)
        return found

    def _addresses(self, q: _Compiled, pos: list[int], found: list[int],
                   unusual: list[int]) -> list[int]:
        """FROM/TO/CC/BCC also match the parsed addresses (what ENVELOPE
        shows): ``user (comment) @ domain.org`` is found by
        ``user@domain.org``.  Only the UNUSUAL messages, whose header line is
        written with comments, quotes or spaces in an address, decode their
        index."""
        hit = set(found)
        field = _ADDRESS_HEADERS[q.name]
        needle = q.needle.decode("utf-8", "surrogatepass")
        for p in unusual:
            mi = self.meta(p)
            if mi is None:
                continue
            for name, email in getattr(mi, field):
                if needle in mindex.address_text(name, email):
                    hit.add(p)
                    break
        return [p for p in pos if p in hit]

    def _scan(self, name: str, needle: bytes, pos: list[int]) -> list[int]:
        if not pos:
            return pos
        texts = self.texts(name, pos)
        return [pos[i] for i in self.impl.find_all(texts, needle)]

    def _thread_keyword(self, q: m.ThreadKeyword, pos: list[int]) -> list[int]:
        out = []
        verdict: dict[int, bool] = {}
        for p in pos:
            tid = self.rec(p).thread
            v = verdict.get(tid)
            if v is None:
                has = [q.name in r.keywords for r in self.thread_records(tid)]
                if q.quantifier == "all":
                    v = bool(has) and all(has)
                elif q.quantifier == "some":
                    v = any(has)
                else:
                    v = not any(has)
                verdict[tid] = v
            if v:
                out.append(p)
        return out


def _in_ranges(keys: list[int], pos: list[int], ranges) -> list[int]:
    """The positions of POS (ascending) whose key is in one of RANGES
    (inclusive, sorted, disjoint), KEYS ascending: two bisections per range."""
    out: list[int] = []
    for lo, hi in ranges:
        i = bisect.bisect_left(keys, lo)
        j = bisect.bisect_right(keys, hi, i)
        if i < j:
            out.extend(pos[bisect.bisect_left(pos, i):bisect.bisect_left(pos, j)])
    return out


def _record_cond(q, mailbox: int | None, impl) -> tuple:
    """The condition tuple of ``match_records`` (the search twins) for the
    record node Q; the predicate it stands for is ``record_test(q, mailbox)``
    of tests/record_oracle.py (the Python predicate the engine used before the
    twins, kept as the tests' oracle)."""
    t = type(q)
    if t is m.Keyword:
        return (impl.KEYWORD, q.name.encode("utf-8", "surrogatepass"))
    if t is m.Larger:
        return (impl.SIZE, q.n + 1, None)
    if t is m.Smaller:
        return (impl.SIZE, None, q.n)
    if t is m.Received:
        return (impl.RECEIVED, q.after, q.before)
    if t is m.ModSeqAtLeast:
        return (impl.MODSEQ, q.n, None)
    if t is m.ThreadIds:
        return (impl.THREAD, q.ids)
    if t is m.InMailbox:
        return (impl.IN_MAILBOX, q.mailbox)
    if t is m.InMailboxOtherThan:
        return (impl.OTHER_MAILBOX, q.mailboxes)
    if t is m.Saved:
        return (impl.SAVED, mailbox, q.after, q.before)
    raise TypeError(f"not a query node: {q!r}")


def search(view, acc: int, candidates: Sequence[tuple[int, int]], query, *,
           mailbox: int | None = None, impl: types.ModuleType | None = None) -> list[int]:
    """The keys of CANDIDATES ((key, email id) pairs) that match QUERY, in
    candidate order.  MAILBOX is the mailbox being searched (IMAP), used by
    :class:`~.model.Saved`; IMPL picks a ``search`` twin (default: the loaded one)."""
    return search_columns(view, acc, [k for k, _ in candidates], [e for _, e in candidates],
                          query, mailbox=mailbox, impl=impl)


def search_columns(view, acc: int, keys: Sequence[int], eids: Sequence[int], query, *,
                   mailbox: int | None = None, impl: types.ModuleType | None = None,
                   ascending: bool = False) -> list[int]:
    """``search`` over candidates given as two parallel sequences, KEYS and
    their email ids EIDS (lists or arrays: an IMAP mailbox's UID map as it
    is, no pair built per message).  ASCENDING: the caller knows KEYS
    ascend (UID and sequence-set conditions then bisect)."""
    plan = _compile(query)
    if type(plan) is m.All:
        return list(keys)
    impl = impl or _impl
    members = _needs_members(plan)
    readers = (view.email_reader(acc), view.index_reader(acc), _row_reader(view, acc))
    out: list[int] = []
    n = min(len(keys), len(eids))
    step = RECORD_CHUNK if _cost(plan) <= _C_RECORD else CHUNK
    for start in range(0, n, step):
        ks = list(keys[start:start + step])
        batch = _Batch(view, acc, ks, list(eids[start:start + step]), mailbox, impl, readers)
        batch.members = members
        batch.ascending = ascending
        hits = batch.eval(plan, list(range(len(ks))))
        out.extend(ks if len(hits) == len(ks) else [ks[p] for p in hits])
    return out


def _row_reader(view, acc: int):
    """VIEW's reader of the msg.hdr rows (None: a view without them)."""
    f = getattr(view, "search_row_reader", None)
    return f(acc) if f is not None else None


def _needs_members(q) -> bool:
    """Does any condition of Q (a query or a compiled plan) look at the
    email's mailboxes?"""
    if isinstance(q, (m.InMailbox, m.InMailboxOtherThan, m.Saved)):
        return True
    if type(q) is _Compiled:
        return any(_needs_members(x) for x in q.items)
    if isinstance(q, (m.And, m.Or)):
        return any(_needs_members(x) for x in q.items)
    if isinstance(q, m.Not):
        return _needs_members(q.item)
    return False


def matches(view, acc: int, key: int, eid: int, query, *, mailbox: int | None = None) -> bool:
    """Whether one message matches (e.g. a JMAP push filter)."""
    return bool(search(view, acc, [(key, eid)], query, mailbox=mailbox))
