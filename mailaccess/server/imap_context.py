"""RFC 5267 contexts: SEARCH/SORT results kept up to date (CONTEXT=SEARCH,
CONTEXT=SORT), and the PARTIAL return option (with RFC 9394's ranges from
the end).

What this module owns
- ``partial_slice`` / ``returned``: which results a PARTIAL range names, and
  which messages a SEARCH "returns" (the messages ``$`` saves, RFC 5182 and
  RFC 9394 3.2, and whose highest MODSEQ is reported, RFC 7162 3.1.5).
- ``Contexts``: a session's live updating contexts (``RETURN (UPDATE)``),
  at most ``MAX_CONTEXTS`` of them holding at most ``MAX_TRACKED`` UIDs
  together; over that the command gets ``* NO [NOUPDATE "tag"]`` (4.3.1).
  A context belongs to one selected mailbox: it dies with the selection.

How updates are found (bounded work, no re-search per change)
- Each context remembers the modseq up to which it is current.  At every
  refresh point (the session's one ``refresh``: after commands, NOOP, IDLE)
  only the messages changed or expunged since then are looked at: the store's
  per-mailbox modseq index (``changed_since``) and expunge log
  (``vanished_since``) name them.  The search program is evaluated on those
  messages alone (the query engine on a candidate list), off the event loop.
- ``before_refresh`` runs inside the refresh's store view, before any
  EXPUNGE is written: members that were expunged leave the context with
  REMOVEFROM while their sequence numbers are still valid (4.3.4).
- ``after_refresh`` runs after the refresh wrote EXISTS/FETCH: messages that
  now match (or stopped matching) are added or removed, ADDTO after the
  EXISTS that made their sequence numbers valid (4.3.3).
- SEARCH contexts use context position 0 (mailbox order).  SORT contexts keep
  the result in sort order and say where each change goes: removals first
  (positions counted as the client applies them), then insertions in
  ascending final position, so each pair is right when the client applies
  it in order (4.3.2).  Sort keys of IMAP SORT never change for a message, so
  a new member's position is found by binary search against the kept order
  (two records read per comparison) or, when many arrive at once, by sorting
  the members again, whichever reads fewer records.
"""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field, replace

from ..proto.imap import serialize as S
from ..query import engine
from ..query import sort as qsort
from ..store.errors import CannotCalculateChanges
from .. import storeio

MAX_CONTEXTS = 8            # live updating contexts per session (RFC 5267 requires >= 1)
MAX_TRACKED = 1_000_000     # UIDs all of a session's contexts may hold together (4 B each)


# --- PARTIAL ---------------------------------------------------------------------------------

def partial_slice(results: list[int], rng: tuple[int, int]) -> list[int]:
    """The results PARTIAL RNG names, in result order.  ``(lo, hi)``: the
    lo-th to hi-th result (1 is the first); ``(-lo, -hi)``: counted from the
    end (-1 is the last, RFC 9394 3.1).  Beyond the results: what is there."""
    lo, hi = rng
    n = len(results)
    if lo > 0:
        return results[lo - 1:hi]
    start = max(0, n + hi)          # -hi: the hi-th from the end (the far end)
    stop = n + lo + 1               # -lo: the lo-th from the end (the near end)
    return results[start:stop] if stop > 0 else []


def returned(results: list[int], returns, partial, *, ordered: list[int] | None = None
             ) -> list[int]:
    """The messages a SEARCH with RETURNS "returns": all of them with ALL or
    COUNT (or with none of MIN, MAX, PARTIAL); otherwise the union of the MIN,
    MAX and PARTIAL ones (RFC 5182 2.4, RFC 9394 3.2 table 1).  RESULTS
    ascending; ORDERED the order PARTIAL counts in (default RESULTS).
    Returned ascending."""
    if returns is None or not results or "ALL" in returns or "COUNT" in returns:
        return list(results)
    keep: set[int] = set()
    if "MIN" in returns:
        keep.add(results[0])
    if "MAX" in returns:
        keep.add(results[-1])
    if partial is not None:
        keep.update(partial_slice(ordered if ordered is not None else results, partial))
    if not ({"MIN", "MAX"} & set(returns)) and partial is None:
        return list(results)
    return sorted(keep)


# --- contexts ----------------------------------------------------------------------------------

@dataclass(eq=False)
class Context:
    """One updating context: the client's result, as UIDs."""

    tag: bytes
    uid: bool                       # numbers on the wire: UIDs, else sequence numbers
    query: object                   # query.model tree (sequence numbers already UIDs)
    keys: list | None               # qsort.SortKey list for SORT, None for SEARCH
    members: array                  # UIDs in the result, ascending
    order: array | None             # SORT: the same UIDs in sort order
    ms: int                         # changes up to this modseq are reflected

    def size(self) -> int:
        return len(self.members)

    def has(self, u: int) -> bool:
        m = self.members
        i = bisect.bisect_left(m, u)
        return i < len(m) and m[i] == u


@dataclass
class Contexts:
    """A session's live contexts, bound to the selected mailbox they were made in."""

    sel: object = None
    by_tag: dict = field(default_factory=dict)

    # --- bookkeeping ---------------------------------------------------------------------

    def live(self, sel) -> bool:
        """Are there contexts for SEL?  Contexts of a mailbox no longer
        selected are dropped here (4.3: updates end with the selection)."""
        if sel is not self.sel:
            self.by_tag.clear()
            self.sel = sel
        return bool(self.by_tag)

    def has(self, sel, tag: bytes) -> bool:
        self.live(sel)
        return tag in self.by_tag

    def cancel(self, sel, tags) -> list[bytes]:
        """End the updates of TAGS; the tags that named no live context."""
        self.live(sel)
        return [t for t in tags if self.by_tag.pop(t, None) is None]

    def tracked(self) -> int:
        return sum(c.size() for c in self.by_tag.values())

    def add(self, sel, tag: bytes, uid: bool, query, keys, results, ms: int) -> bool:
        """Start updates for TAG with RESULTS (UIDs, in the requested order)
        current as of modseq MS.  False: refused (the limits)."""
        self.live(sel)
        if len(self.by_tag) >= MAX_CONTEXTS or self.tracked() + len(results) > MAX_TRACKED:
            return False
        members = array("I", sorted(results)) if keys is not None else array("I", results)
        order = array("I", results) if keys is not None else None
        self.by_tag[tag] = Context(tag, uid, query, keys, members, order, ms)
        return True

    # --- updates -------------------------------------------------------------------------

    def before_refresh(self, v, sel, highest: int) -> bytes:
        """In the refresh's store view (the mailbox at modseq HIGHEST), before
        it announces anything: members expunged since each context's modseq
        leave it (REMOVEFROM), numbered as the client still numbers them."""
        if not self.live(sel):
            return b""
        since = min(c.ms for c in self.by_tag.values())
        if since >= highest:
            return b""
        try:
            gone = {u for _ms, u in v.vanished_since(sel.acc, sel.mbx, since)}
        except CannotCalculateChanges:
            present = {u for u, _e in v.uids(sel.acc, sel.mbx)}
            gone = {u for c in self.by_tag.values() for u in c.members if u not in present}
        if not gone:
            return b""
        out = []
        for c in self.by_tag.values():
            drop = sorted(u for u in gone if c.has(u))
            if drop:
                items = [("REMOVEFROM", _remove(c, drop))]
                out.append(_format(c, sel, items))
        return b"".join(out)

    async def after_refresh(self, store, sel) -> bytes:
        """After the refresh: messages changed since each context's modseq
        (up to what the refresh told the client) are evaluated again; the
        ones whose membership changed go out as REMOVEFROM/ADDTO."""
        if not self.live(sel):
            return b""
        target = sel.known_ms
        stale = [c for c in self.by_tag.values() if c.ms < target]
        if not stale:
            return b""
        snap, gone = sel.snap, frozenset(sel.gone)
        # the worker changes nothing: if this task is cancelled meanwhile
        # (IDLE ended), the next refresh finds the same changes again
        updates = await storeio.read(store, _evaluate, sel.acc, sel.mbx, stale, snap, gone,
                                     target)
        out = []
        for c, items, new in updates:
            if self.by_tag.get(c.tag) is not c:
                continue
            c.ms = target
            if items:
                c.members, c.order = new.members, new.order
                out.append(_format(c, sel, items))
        return b"".join(out)


def _format(c: Context, sel, items) -> bytes:
    if not c.uid:
        items = [(name, [(pos, [sel.seq_of(u) for u in nums]) for pos, nums in pairs])
                 for name, pairs in items]
    return S.esearch_update(c.tag, c.uid, items)


def _eid(snap, u: int) -> int | None:
    i = bisect.bisect_left(snap.uids, u)
    if i < len(snap.uids) and snap.uids[i] == u:
        return snap.eids[i]
    return None


def _evaluate(v, acc: int, mbx: int, contexts, snap, gone, target: int):
    """(context, items, updated copy) for each of CONTEXTS: the messages of
    the session's view (SNAP less GONE) changed after the context's modseq
    and no later than TARGET, evaluated again.  Runs in a worker thread and
    changes no context: the caller applies the copies."""
    since = min(c.ms for c in contexts)
    changed = [(ms, u) for ms, u in v.changed_since(acc, mbx, since) if ms <= target]
    out = []
    for c in contexts:
        cand = sorted({u for ms, u in changed if ms > c.ms and u not in gone})
        pairs = [(u, e) for u in cand if (e := _eid(snap, u)) is not None]
        if not pairs:
            out.append((c, [], None))
            continue
        hit = set(engine.search(v, acc, pairs, c.query, mailbox=mbx))
        adds = [u for u, _e in pairs if u in hit and not c.has(u)]
        drops = [u for u, _e in pairs if u not in hit and c.has(u)]
        items = []
        new = None
        if drops or adds:
            new = replace(c, members=array("I", c.members),
                          order=array("I", c.order) if c.order is not None else None)
        if drops:
            items.append(("REMOVEFROM", _remove(new, drops)))
        if adds:
            items.append(("ADDTO", _insert(v, acc, new, snap, adds)))
        out.append((c, items, new))
    return out


def _remove(c: Context, drops: list[int]) -> list[tuple[int, list[int]]]:
    """Take DROPS (ascending UIDs, all members) out of C; the REMOVEFROM pairs."""
    dropset = set(drops)
    if len(drops) * 16 < len(c.members):
        for u in drops:
            del c.members[bisect.bisect_left(c.members, u)]
    else:
        c.members = array("I", (u for u in c.members if u not in dropset))
    if c.order is None:
        return [(0, drops)]
    # positions as the client applies the pairs in order: after removing k
    # results before it, a result at p sits at p - k; a run of neighbours
    # goes as one pair starting where the first of them is
    pairs: list[tuple[int, list[int]]] = []
    removed = 0
    last = None
    for i, u in enumerate(c.order):
        if u in dropset:
            pos = i + 1 - removed
            if last is not None and last == i - 1 and pairs and pairs[-1][0] == pos:
                pairs[-1][1].append(u)
            else:
                pairs.append((pos, [u]))
            removed += 1
            last = i
    c.order = array("I", (u for u in c.order if u not in dropset))
    return pairs


def _insert(v, acc: int, c: Context, snap, adds: list[int]) -> list[tuple[int, list[int]]]:
    """Put ADDS (ascending UIDs, not members) into C; the ADDTO pairs."""
    if len(adds) * 16 < len(c.members):
        for u in adds:
            bisect.insort(c.members, u)
    else:
        c.members = array("I", sorted([*c.members, *adds]))
    if c.order is None:
        return [(0, adds)]
    n = len(c.order)
    if len(adds) * 2 * max(1, n.bit_length()) > n + len(adds):
        # cheaper to sort every member again than to search for each
        everyone = [(u, e) for u in c.members if (e := _eid(snap, u)) is not None]
        c.order = array("I", qsort.sort(v, acc, everyone, c.keys))
    else:
        order = list(c.order)
        for u in adds:
            e = _eid(snap, u)
            lo, hi = 0, len(order)
            while lo < hi:
                mid = (lo + hi) // 2
                y = order[mid]
                if _before(v, acc, c.keys, (u, e), (y, _eid(snap, y))):
                    hi = mid
                else:
                    lo = mid + 1
            order.insert(lo, u)
        c.order = array("I", order)
    added = set(adds)
    pairs: list[tuple[int, list[int]]] = []
    for i, u in enumerate(c.order):
        if u in added:
            if pairs and pairs[-1][0] + len(pairs[-1][1]) == i + 1:
                pairs[-1][1].append(u)
            else:
                pairs.append((i + 1, [u]))
    return pairs


def _before(v, acc: int, keys, x: tuple[int, int | None], y: tuple[int, int | None]) -> bool:
    """Does message X sort before message Y?  (SORT's order: the keys, then
    the sequence order, which is UID order.)"""
    pair = sorted((p[0], p[1] or 0) for p in (x, y))
    return qsort.sort(v, acc, pair, keys)[0] == x[0]
