"""The per-session view of a selected IMAP mailbox.

The store knows UIDs; only a session knows sequence numbers, because
sequence numbers shift when that session is *told* about an expunge, not when
the expunge happens (RFC 9051 7.5.1).  This object keeps the session's
sequence map, the modseq up to which it has told the client about changes,
and expunges that happened but may not be announced yet (no EXPUNGE while
answering FETCH, STORE or SEARCH).

Memory: the sequence map is two parallel ``array('I')`` (UIDs, email ids),
and sessions that see the same state of a mailbox share the same arrays
(``Snapshot``, copy on write).  A thousand IDLE sessions on a 10,000-message
mailbox hold one 80 KB map between them, not a thousand.  Catching up
(``apply``) takes only what changed since the session's modseq, never the
whole mailbox.  Nothing here touches sockets or the store.
"""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class Snapshot:
    """An immutable sequence map of one mailbox at one modseq; shared."""

    uids: array      # ascending
    eids: array      # parallel to uids
    highest_ms: int

    @classmethod
    def from_pairs(cls, pairs, highest_ms: int) -> "Snapshot":
        return cls(array("I", (u for u, _ in pairs)), array("I", (e for _, e in pairs)),
                   highest_ms)

    def advance(self, new_uids, new_eids, vanished, highest_ms: int) -> "Snapshot":
        """This map brought forward to HIGHEST_MS: the UIDs in VANISHED
        removed, then NEW_UIDS (ascending, with NEW_EIDS) that lie above its
        top UID appended.  A new Snapshot (this one is shared and stays as it
        is); the arrays are cut and joined in slices, so expunging N of M
        messages costs O(N log M) Python steps, not O(M)."""
        uids, eids = _without(self.uids, self.eids, vanished)
        top = uids[-1] if uids else 0
        k = bisect.bisect_right(new_uids, top)
        if k < len(new_uids):
            if uids is self.uids:
                uids, eids = array("I", uids), array("I", eids)
            uids.extend(new_uids[k:] if k else new_uids)
            eids.extend(new_eids[k:] if k else new_eids)
        return Snapshot(uids, eids, highest_ms)


# a set of UIDs at least 1/BULK_RATIO the size of the map is looked up in it
# by one pass over the map (a set test per UID) instead of one bisection per
# UID: an EXPUNGE of 10,000 messages (stop 24); below, the cost stays that
# of the set, never the whole map's
BULK_RATIO = 16


def _positions(uids: array, drop) -> list[int]:
    """The indexes in UIDS (ascending) of the UIDs of DROP (a set, or any
    collection when small) it holds, ascending."""
    n = len(uids)
    if len(drop) * BULK_RATIO >= n and isinstance(drop, (set, frozenset)):
        return [i for i, u in enumerate(uids) if u in drop]
    out = []
    for u in drop:
        i = bisect.bisect_left(uids, u)
        if i < n and uids[i] == u:
            out.append(i)
    out.sort()
    return out


def _cut(uids: array, eids: array, idx: list[int]) -> tuple[array, array]:
    """New arrays without the entries at the ascending, distinct IDX."""
    nu, ne = array("I"), array("I")
    prev = 0
    for i in idx:
        if i > prev:
            nu += uids[prev:i]
            ne += eids[prev:i]
        prev = i + 1
    nu += uids[prev:]
    ne += eids[prev:]
    return nu, ne


def _without(uids: array, eids: array, drop) -> tuple[array, array]:
    """UIDS/EIDS without the UIDs in DROP; the same arrays when none is there."""
    idx = _positions(uids, set(drop)) if drop else []
    if not idx:
        return uids, eids
    return _cut(uids, eids, idx)


_NONE: frozenset = frozenset()


@dataclass
class Refresh:
    expunged: list[int] = field(default_factory=list)      # UIDs, to announce now
    expunged_seqs: list[int] = field(default_factory=list)  # their sequence numbers, announce order
    exists: int | None = None                                # new EXISTS count, if it grew
    changed: list[int] = field(default_factory=list)        # UIDs whose flags/modseq moved


class SelectedMailbox:
    def __init__(self, acc: int, mbx: int, uidvalidity: int, readonly: bool,
                 snap: Snapshot, uidnext: int):
        self.acc = acc
        self.mbx = mbx
        self.uidvalidity = uidvalidity
        self.readonly = readonly
        self.snap = snap                    # possibly shared: never mutate in place
        self.known_ms = snap.highest_ms     # changes up to here are reported
        self.uidnext = uidnext
        # expunged in the store, not announced yet (a set of its own only
        # while there are some: most sessions never hold one)
        self.gone: set[int] | frozenset[int] = _NONE
        self.reported: dict[int, int] = {}  # uid -> modseq this session already sent
        self.saved_result: list[int] = []   # SEARCHRES "$" (UIDs)
        # \Recent (RFC 3501 2.3.2): the UID ranges [lo, hi) this session
        # claimed (SELECT) or found unclaimed (EXAMINE); UIDs below
        # recent_upto were looked at.  IMAP4rev2 sessions claim the same way
        # but show none of it (show_recent False; RFC 9051 dropped \Recent).
        self.show_recent = False
        self.recent: list[tuple[int, int]] = []
        self.recent_upto = 0
        self.recent_told = 0                # the RECENT count last sent

    # --- numbering --------------------------------------------------------------

    @property
    def uids(self) -> array:
        return self.snap.uids

    @property
    def exists(self) -> int:
        return len(self.snap.uids)

    def seq_of(self, uid: int) -> int | None:
        uids = self.snap.uids
        i = bisect.bisect_left(uids, uid)
        if i < len(uids) and uids[i] == uid:
            return i + 1
        return None

    def eid_of(self, uid: int) -> int | None:
        uids = self.snap.uids
        i = bisect.bisect_left(uids, uid)
        if i < len(uids) and uids[i] == uid:
            return self.snap.eids[i]
        return None

    def has(self, uid: int) -> bool:
        return self.seq_of(uid) is not None

    def present(self, uids) -> set[int]:
        """The UIDs of UIDS in the view, as a set (one pass over the map:
        for sets of UIDs not much smaller than it, see BULK_RATIO)."""
        want = uids if isinstance(uids, (set, frozenset)) else set(uids)
        return want.intersection(self.snap.uids)

    def live(self, uid: int) -> bool:
        """In the view and not expunged in the store."""
        return uid not in self.gone and self.has(uid)

    def uid_at(self, seq: int) -> int:
        return self.snap.uids[seq - 1]

    def max_uid(self) -> int:
        uids = self.snap.uids
        return uids[-1] if uids else 0

    def pairs(self, uids=None) -> list[tuple[int, int]]:
        """(uid, eid) for UIDS (default: all), skipping unknown and gone ones."""
        if uids is None:
            if not self.gone:
                return list(zip(self.snap.uids, self.snap.eids))
            return [(u, e) for u, e in zip(self.snap.uids, self.snap.eids)
                    if u not in self.gone]
        return list(zip(*self.uids_eids(uids)))

    def columns(self) -> tuple:
        """``pairs()`` as two parallel sequences (the UIDs and their email
        ids): the snapshot's own arrays when nothing is gone (never changed
        in place, so a worker thread may read them)."""
        if not self.gone:
            return self.snap.uids, self.snap.eids
        su, se, gone = self.snap.uids, self.snap.eids, self.gone
        keep = [i for i, u in enumerate(su) if u not in gone]
        return [su[i] for i in keep], [se[i] for i in keep]

    def uids_eids(self, uids) -> tuple[list[int], list[int]]:
        """``pairs(UIDS)`` as two parallel lists, the UIDs and their email
        ids (no tuple per message: a bulk STORE names 10,000)."""
        su, se = self.snap.uids, self.snap.eids
        n = len(su)
        if not len(uids):
            return [], []
        gone = self.gone
        if len(uids) == 1:          # a client's STORE or FETCH of one message
            u = uids[0]
            i = bisect.bisect_left(su, u)
            if i < n and su[i] == u and u not in gone:
                return [u], [se[i]]
            return [], []
        # a run of the map (STORE 1:*, a range): sliced at once
        i = bisect.bisect_left(su, uids[0])
        j = i + len(uids) - 1
        if j < n and su[i] == uids[0] and su[j] == uids[-1] and \
                su[i:j + 1] == (uids if type(uids) is array else array("I", uids)):
            us, es = su[i:j + 1].tolist(), se[i:j + 1].tolist()
            if gone:
                keep = [k for k, u in enumerate(us) if u not in gone]
                us, es = [us[k] for k in keep], [es[k] for k in keep]
            return us, es
        us, es = [], []
        i = -1
        for u in uids:
            # ascending UIDS walk the map: try the next slot before bisecting
            i += 1
            if not (i < n and su[i] == u):
                i = bisect.bisect_left(su, u)
                if i >= n or su[i] != u:
                    i -= 1
                    continue
            if u not in gone:
                us.append(u)
                es.append(se[i])
        return us, es

    def uids_for_set(self, numset, uid: bool, saved=None) -> list[int]:
        """UIDs addressed by a sequence set or UID set, ascending, existing only."""
        uids = self.snap.uids
        if uid:
            if not uids:
                return []
            largest = uids[-1]
            out = []
            for lo, hi in numset.normalized(largest, saved):
                i = bisect.bisect_left(uids, lo)
                j = bisect.bisect_right(uids, hi)
                out.extend(uids[i:j])
            # RFC 9051 6.4.9: "*" in a UID set is the highest UID in use,
            # even when the client named a range entirely above it.
            if not out and any(0 in r for r in numset.ranges):
                out = [largest]
            return out
        n = len(uids)
        out = []
        for lo, hi in numset.normalized(n, saved):
            out.extend(uids[lo - 1:min(hi, n)])
        return out

    def uid_ranges_for_set(self, numset, uid: bool) -> list[tuple[int, int]]:
        """``uids_for_set`` (no "$") as inclusive UID ranges, for a search
        over the view: the view's UIDs inside them are exactly the UIDs that
        would list, in steps of the ranges, not of the UIDs (``UID
        1:5000`` is one range, not 5,000 UIDs)."""
        uids = self.snap.uids
        n = len(uids)
        if not n:
            return []
        if not uid:
            out = []
            for lo, hi in numset.normalized(n):
                if lo <= n:
                    out.append((uids[lo - 1], uids[min(hi, n) - 1]))
            return out
        largest = uids[-1]
        out = numset.normalized(largest)
        for lo, hi in out:
            if bisect.bisect_left(uids, lo) < bisect.bisect_right(uids, hi):
                return out
        # RFC 9051 6.4.9: "*" in a UID set is the highest UID in use, even
        # when the client named a range entirely above it (uids_for_set)
        if any(0 in r for r in numset.ranges):
            return [(largest, largest)]
        return []

    def seqs_valid(self, numset) -> bool:
        """False when a sequence set names a number beyond EXISTS (BAD per RFC 9051)."""
        n = self.exists
        if n == 0:
            return not numset.ranges and numset.saved
        for lo, hi in numset.ranges:
            if lo > n or hi > n:
                return False
        return True

    # --- \Recent ------------------------------------------------------------------

    def add_recent(self, lo: int, hi: int) -> None:
        """UIDs in [LO, HI) are recent in this session."""
        if lo >= hi:
            return
        if self.recent and self.recent[-1][1] == lo:
            self.recent[-1] = (self.recent[-1][0], hi)
        else:
            self.recent.append((lo, hi))
            self.recent.sort()

    def is_recent(self, uid: int) -> bool:
        for lo, hi in self.recent:      # (a loop: no generator per call)
            if lo <= uid < hi:
                return True
        return False

    def recent_uids(self) -> list[int]:
        """The recent UIDs of the view (not expunged), ascending."""
        uids = self.snap.uids
        out: list[int] = []
        for lo, hi in self.recent:
            out.extend(uids[bisect.bisect_left(uids, lo):bisect.bisect_left(uids, hi)])
        return [u for u in out if u not in self.gone] if self.gone else out

    def recent_among(self, uids) -> set[int]:
        """The UIDs of UIDS that ``recent_uids`` holds (recent, in the view,
        not expunged): what an answer on UIDS needs, in steps of len(UIDS)
        when that is fewer than the recent ranges span (a FETCH or catch-up
        on one message of a mailbox whose 10,000 messages are recent builds
        no set of 10,000), else ``set(recent_uids()) & UIDS``."""
        n = len(uids)
        span = 0
        for lo, hi in self.recent:
            span += hi - lo
        if n >= span:
            return set(self.recent_uids()).intersection(uids)
        view = self.snap.uids
        top = len(view)
        gone = self.gone
        out = set()
        for u in uids:
            if u in gone:
                continue
            for lo, hi in self.recent:
                if lo <= u < hi:
                    i = bisect.bisect_left(view, u)
                    if i < top and view[i] == u:
                        out.add(u)
                    break
        return out

    def recent_count(self) -> int:
        """How many messages of the view are recent; ranges that can hold no
        more of them are dropped (a UID below the top one is in the view or
        expunged for good)."""
        uids = self.snap.uids
        top = uids[-1] if uids else 0
        n = 0
        keep = []
        for lo, hi in self.recent:
            k = bisect.bisect_left(uids, hi) - bisect.bisect_left(uids, lo)
            if k or hi > top:
                keep.append((lo, hi))
            n += k
        self.recent = keep
        return n

    # --- catching up with the store ----------------------------------------------

    def apply(self, new_pairs, vanished, changed, highest_ms: int,
              allow_expunge: bool) -> Refresh:
        """Catch up: NEW_PAIRS are (uid, eid) appended above our top UID,
        VANISHED the UIDs expunged and CHANGED the (modseq, uid) changed since
        known_ms.  Applies the result to this view and says what to announce."""
        r = Refresh()
        snap = self.snap
        if len(vanished) * BULK_RATIO >= len(snap.uids) and vanished:
            held = self.present(vanished)
            if held:
                if self.gone is _NONE:
                    self.gone = set()
                self.gone.update(held)
        else:
            for u in vanished:
                if self.has(u):
                    if self.gone is _NONE:
                        self.gone = set()
                    self.gone.add(u)
        uids, eids = snap.uids, snap.eids
        copied = False
        if allow_expunge and self.gone:
            idx = _positions(uids, self.gone)
            # announce from the highest sequence number down, so each number
            # is still right when the client applies it
            for i in reversed(idx):
                r.expunged_seqs.append(i + 1)
                r.expunged.append(uids[i])
            uids, eids = _cut(uids, eids, idx)
            copied = True
            self.gone = _NONE
        top = uids[-1] if uids else 0
        if isinstance(new_pairs, tuple):     # (UIDs, email ids): View.uid_map
            new_uids, new_eids = new_pairs
            k = bisect.bisect_right(new_uids, top)
            new_uids, new_eids = new_uids[k:], new_eids[k:]
        else:
            new = [(u, e) for u, e in new_pairs if u > top]
            new_uids = [u for u, _ in new]
            new_eids = [e for _, e in new]
        if new_uids:
            if not copied:
                uids, eids = array("I", uids), array("I", eids)
                copied = True
            uids.extend(new_uids)
            eids.extend(new_eids)
            r.exists = len(uids)
        if copied or highest_ms != snap.highest_ms:
            # a new (shareable) snapshot object; unchanged arrays stay shared
            self.snap = Snapshot(uids, eids, highest_ms)
        newset = set(new_uids)
        reported = self.reported
        for ms, u in changed:
            # (told already first: a bulk STORE's own 10,000 changes skip the bisection)
            if reported.get(u, 0) >= ms:
                continue
            if u in newset or u in self.gone or not self.has(u):
                continue
            r.changed.append(u)
        r.changed = sorted(set(r.changed))
        self.known_ms = max(self.known_ms, highest_ms)
        self.reported.clear()   # everything up to known_ms is now told
        return r

