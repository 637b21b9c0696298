"""ActiveSync sync state of one device for one collection (a mailbox), and
the exact difference between what the device holds and what the mailbox
holds now.

Stored per device and collection under the device-state key ``s:<ServerId>``
("s:M7"), through ``ops.put_device_state`` / ``View.device_state``.  A
SyncKey is a decimal counter per collection; the state holds two snapshots,
the one under the device's current key and the one under its previous key
(MS-ASCMD 3.1.5.3: a client that lost our answer resends its request with
the previous key and must get the same batch again):

  ``Snapshot``: key, modseq (the account's highest modseq when the answer
  was made), ``held`` (the email ids the device holds, a sorted packed u32
  array: 10,000 messages are 40 KB), ``changed`` (ids the device holds that
  changed on the server but were not sent yet: a window too small, or
  GetChanges 0), filter (the FilterType the key was made under),
  ``complete`` (nothing was left unsent when the key was made) and
  ``basis`` (below; None: the next difference is computed in full).

  ``SyncState``: ``cur`` and ``prev`` snapshots, ``counter`` (the last key
  given; keys never repeat, even after a re-sync from 0), ``batch`` (what
  the answer that made ``cur`` sent: (op, email id), op "A" add, "C" change,
  "D" delete, "S" soft delete) and ``client_adds`` (ClientId -> email id of
  the drafts that request added, so a resent Add is not stored twice) and
  ``more`` (that answer said MoreAvailable: so does its replay).

The difference (``compute``) is exact:
  Add     = in the mailbox, inside the FilterType window, not held
            (newest first: received date, then id, descending);
  Delete  = held, no longer in the mailbox (a move over IMAP is a Delete
            here and an Add in the other collection: the ServerId is the
            email id and stays the same);
  SoftDelete = held, still in the mailbox, now outside the window
            (MS-ASCMD 2.2.3.172);
  Change  = held and changed since the snapshot's modseq
            (``View.changed_since``), plus the snapshot's ``changed``; an
            item the client itself changed in this request (its modseq is
            the one that request's write gave it) is not echoed back.

Two ways to the same answer (a property test holds them equal):

* in full (``compute_full``): list the whole mailbox (``View.uids``) and
  the received dates of what is not held: O(mailbox) per request.
* brought forward (the default when the snapshot has a ``Basis``): the
  basis is the difference as it stood at the snapshot's modseq M, kept
  when the key was issued -- the pending Adds in order (oldest first, with
  their UIDs and received dates), the pending Deletes and SoftDeletes, the
  UID of every held email -- and the mailbox's highest UID then.  The
  next request reads only what moved after M: the UIDs expunged since M
  (``View.vanished_since``, mapped to email ids through the UIDs the
  basis keeps), the memberships above that highest UID (``View.uids``
  after it: deliveries, moves in), and the messages changed since M
  (``View.changed_since``).  Its cost is what changed plus what it sends,
  not what the mailbox holds.  It falls back to the full computation when
  it cannot be exact: no basis (a key made by SyncKey 0, a state written
  by the first format, after ``note_move``), another FilterType, another
  UIDVALIDITY, a window start that moved back (the clock), or expunges
  after M already pruned from the ``vanished`` log.  An item ageing out of
  the FilterType window is found through ``hmin`` (a lower bound of the
  held items' received dates): only when the window start passes it are
  the held items' dates read again.

The previous snapshot is stored without its basis (only GetItemEstimate
under the previous key computes from it, in full).  Format 1 states
(written before the basis existed) are read, with no basis; a state this
code cannot read is no state: the device gets Status 3 and syncs from 0.

``pending(view, acc, device, collection_id)`` is what Ping and
GetItemEstimate use: how many Add/Change/Delete/SoftDelete a Sync under the
current key would send now (None: no state, the device never synced the
collection).  When the last answer left nothing unsent and the mailbox's
highest modseq has not moved since, it answers 0 without reading the
mailbox (an item ageing out of the FilterType window is then found by the
next Sync, not by Ping).
"""
from __future__ import annotations

import json
import sys
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field

from .. import ids
from ..store import records
from ..store.errors import CannotCalculateChanges

PREFIX = "s:"
FORMAT = 2
READABLE = (1, 2)
_U32 = "I" if array("I").itemsize == 4 else "L"
_I64 = "q"

DAY = 86400
# MS-ASCMD 2.2.3.68.2 FilterType: the time window (days) of each value
FILTER_DAYS = {0: None, 1: 1, 2: 3, 3: 7, 4: 14, 5: 31, 6: 92, 7: 183}


def state_key(collection_id: str) -> str:
    return PREFIX + collection_id


def packed(ids_: "set[int] | list[int]") -> array:
    return array(_U32, sorted(ids_))


def _u32(xs=()) -> array:
    return array(_U32, xs)


@dataclass
class Basis:
    """The difference of a snapshot as it stood at its modseq, kept so the
    next request brings it forward instead of listing the mailbox."""
    hw: int                  # the mailbox's highest UID then (uidnext - 1)
    uidvalidity: int
    start: int | None        # the FilterType window's start then (None: no window)
    hmin: int | None         # <= the received date of every held item in the window
    huid: array = field(default_factory=_u32)   # per Snapshot.held: its UID then (0: gone)
    pend: array = field(default_factory=_u32)   # pending Adds, oldest first
    puid: array = field(default_factory=_u32)   # their UIDs
    pdate: array = field(default_factory=lambda: array(_I64))   # their received dates
    gone: array = field(default_factory=_u32)   # pending Deletes (held, not in the mailbox)
    soft: array = field(default_factory=_u32)   # pending SoftDeletes (held, out of the window)

    def meta(self) -> dict:
        return {"hw": self.hw, "uv": self.uidvalidity, "st": self.start, "hm": self.hmin,
                "np": len(self.pend), "ng": len(self.gone), "ns": len(self.soft)}


@dataclass
class Snapshot:
    key: int
    modseq: int
    held: array = field(default_factory=_u32)
    changed: array = field(default_factory=_u32)
    filter: int = 0
    complete: bool = False
    basis: Basis | None = None

    def meta(self) -> dict:
        return {"k": self.key, "m": self.modseq, "f": self.filter, "c": self.complete,
                "nh": len(self.held), "nc": len(self.changed)}


@dataclass
class SyncState:
    cur: Snapshot
    prev: Snapshot | None = None
    counter: int = 0
    batch: list = field(default_factory=list)          # [(op, eid)]
    client_adds: dict = field(default_factory=dict)    # ClientId -> eid
    more: bool = False                                 # that answer said MoreAvailable

    def snapshot_for(self, key: int) -> tuple[Snapshot | None, bool]:
        """(the snapshot of KEY, whether it is the previous one)."""
        if key == self.cur.key:
            return self.cur, False
        if self.prev is not None and key == self.prev.key:
            return self.prev, True
        return None, False


def encode(st: SyncState) -> bytes:
    """The stored form: a length-prefixed JSON head, then the arrays
    (current snapshot: held, changed, and with a basis huid, pend, puid,
    pdate, gone, soft; previous snapshot: held, changed)."""
    cur_meta = st.cur.meta()
    b = st.cur.basis
    if b is not None:
        if len(b.huid) != len(st.cur.held):
            b = None        # not parallel to held: not to be trusted
        else:
            cur_meta["b"] = b.meta()
    head = {"v": FORMAT, "cur": cur_meta, "prev": st.prev.meta() if st.prev else None,
            "n": st.counter, "b": [[op, e] for op, e in st.batch], "a": st.client_adds, "mo": st.more,
            "le": sys.byteorder == "little"}
    hj = json.dumps(head, separators=(",", ":")).encode()
    parts = [len(hj).to_bytes(4, "big"), hj, st.cur.held.tobytes(), st.cur.changed.tobytes()]
    if b is not None:
        parts += [b.huid.tobytes(), b.pend.tobytes(), b.puid.tobytes(), b.pdate.tobytes(),
                  b.gone.tobytes(), b.soft.tobytes()]
    if st.prev is not None:
        parts += [st.prev.held.tobytes(), st.prev.changed.tobytes()]
    return b"".join(parts)


def decode(raw) -> SyncState | None:
    """The state stored in RAW (None: nothing usable, the device starts over)."""
    try:
        raw = bytes(raw)
        n = int.from_bytes(raw[:4], "big")
        head = json.loads(raw[4:4 + n])
        if head.get("v") not in READABLE:
            return None
        pos = 4 + n
        swap = head.get("le", True) != (sys.byteorder == "little")

        def arr(count: int, code: str = _U32) -> array:
            nonlocal pos
            a = array(code)
            size = a.itemsize * count
            a.frombytes(raw[pos:pos + size])
            if len(a) != count:
                raise ValueError("truncated sync state")
            if swap:
                a.byteswap()
            pos += size
            return a

        def snap(m: dict) -> Snapshot:
            held = arr(m["nh"])
            changed = arr(m["nc"])
            s = Snapshot(m["k"], m["m"], held, changed, m["f"], m["c"])
            bm = m.get("b")
            if bm is not None:
                s.basis = Basis(bm["hw"], bm["uv"], bm["st"], bm["hm"], arr(m["nh"]),
                                arr(bm["np"]), arr(bm["np"]), arr(bm["np"], _I64),
                                arr(bm["ng"]), arr(bm["ns"]))
            return s

        cur = snap(head["cur"])
        prev = snap(head["prev"]) if head.get("prev") else None
        if prev is not None:
            prev.basis = None
        return SyncState(cur, prev, head["n"], [(op, e) for op, e in head["b"]],
                         dict(head.get("a") or {}), bool(head.get("mo")))
    except (ValueError, KeyError, TypeError):
        return None


def load(view, acc: int, device: str, collection_id: str) -> SyncState | None:
    raw = view.device_state(acc, device, state_key(collection_id))
    return decode(raw) if raw is not None else None


class NewestFirst:
    """The pending Adds of a basis (stored oldest first), newest first."""

    __slots__ = ("_a",)

    def __init__(self, a: array):
        self._a = a

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        return reversed(self._a)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(self)[i]
        return self._a[len(self._a) - 1 - i] if i >= 0 else self._a[-1 - i - len(self._a)]

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self) -> str:
        return f"NewestFirst({list(self)!r})"


@dataclass
class Diff:
    """What a Sync under a snapshot would send, read from one view."""
    modseq: int                       # the account's highest modseq in that view
    adds: "list[int] | NewestFirst"   # newest first
    changes: list[int]
    deletes: list[int]
    soft: list[int]                   # SoftDelete: left the FilterType window
    # the difference as a basis for the next snapshot (None: legacy callers)
    basis: Basis | None = None
    held: array | None = None         # the held set it was computed for, sorted (per basis.huid)

    def count(self) -> int:
        return len(self.adds) + len(self.changes) + len(self.deletes) + len(self.soft)


def window_start(filter_type: int, now: float | None = None) -> int | None:
    days = FILTER_DAYS.get(filter_type)
    if not days:
        return None
    return int((time.time() if now is None else now) - days * DAY)


_HEAD = records.EMAIL_LAYOUT.head
_RECEIVED = records.EMAIL_LAYOUT.index("received_at")


def received_dates(view, acc: int, eids) -> dict[int, int]:
    """email id -> received date (seconds), read in place from the records
    (records.EMAIL_LAYOUT: no decoding of keywords and memberships)."""
    get = view.email_reader(acc)
    unpack = _HEAD.unpack_from
    out = {}
    for eid in eids:
        raw = get(eid)
        out[eid] = unpack(raw)[_RECEIVED] if raw is not None else 0
    return out


def _held_set(snap: Snapshot, held, drop, extra) -> set[int]:
    if held is not None:
        return set(held)
    h = set(snap.held)
    h.difference_update(drop)
    h.update(extra)
    return h


def compute(view, acc: int, mbx: int, snap: Snapshot, filter_type: int | None = None, *,
            held: set[int] | None = None, drop=(), extra=(),
            echo: dict[int, int] | None = None, now: float | None = None,
            incremental: bool = True) -> Diff | None:
    """The difference between SNAP and mailbox MBX now (None: the mailbox is
    gone), for the held set SNAP.held - DROP + EXTRA (the request's own
    client commands: what the device deleted, the drafts it added) or HELD
    when given.  FILTER_TYPE defaults to the snapshot's.  ECHO: email id ->
    the modseq this request's own write gave it (not sent back as a
    Change).  Brought forward from SNAP's basis when it can be exact, else
    (and with INCREMENTAL false) computed in full."""
    m = view.mailbox(acc, mbx)
    if m is None:
        return None
    ft = snap.filter if filter_type is None else filter_type
    if incremental and held is None and snap.basis is not None:
        d = _bring_forward(view, acc, m, snap, ft, set(drop), set(extra), echo or {}, now)
        if d is not None:
            return d
    return compute_full(view, acc, mbx, snap, ft, held=_held_set(snap, held, drop, extra),
                        echo=echo, now=now)


def compute_full(view, acc: int, mbx: int, snap: Snapshot, filter_type: int | None = None, *,
                 held: set[int] | None = None, echo: dict[int, int] | None = None,
                 now: float | None = None) -> Diff | None:
    """The difference computed from the whole mailbox (and its basis)."""
    m = view.mailbox(acc, mbx)
    if m is None:
        return None
    top = view.highest_modseq(acc)
    if held is None:
        held = set(snap.held)
    ft = snap.filter if filter_type is None else filter_type
    start = window_start(ft, now)
    pairs = view.uids(acc, mbx)
    by_uid = dict(pairs)
    uid_of = {e: u for u, e in pairs}
    inbox = uid_of.keys()
    deletes = sorted(held - inbox)
    if start is None:
        soft: list[int] = []
        candidates = inbox - held
        dates = received_dates(view, acc, candidates)
        visible_held = held & inbox
        hmin = None
    else:
        dates = received_dates(view, acc, inbox)
        in_window = {e for e in inbox if dates[e] >= start}
        candidates = in_window - held
        soft = sorted((held & inbox) - in_window)
        visible_held = held & in_window
        hmin = min((dates[e] for e in visible_held), default=None)
    adds = sorted(candidates, key=lambda e: (dates[e], e), reverse=True)
    changed = {e for e in snap.changed if e in visible_held}
    if visible_held:
        echo = echo or {}
        for ms, uid in view.changed_since(acc, mbx, snap.modseq):
            eid = by_uid.get(uid)
            if eid is None or eid not in visible_held:
                continue
            if echo.get(eid) == ms:
                changed.discard(eid)      # the client's own change: not echoed
                continue
            changed.add(eid)
    hs = packed(held)
    pend = adds[::-1]
    basis = Basis(m.uidnext - 1, m.uidvalidity, start, hmin,
                  _u32([uid_of.get(e, 0) for e in hs]), _u32(pend),
                  _u32([uid_of[e] for e in pend]), array(_I64, [dates[e] for e in pend]),
                  _u32(deletes), _u32(soft))
    return Diff(top, adds, sorted(changed), deletes, soft, basis, hs)


def _bring_forward(view, acc: int, m, snap: Snapshot, ft: int, drop: set[int],
                   extra: set[int], echo: dict[int, int], now: float | None) -> Diff | None:
    """SNAP's basis brought forward to the view (None: it cannot be exactly)."""
    b = snap.basis
    start = window_start(ft, now)
    if (ft != snap.filter or m.uidvalidity != b.uidvalidity or len(b.huid) != len(snap.held)
            or (start is None) != (b.start is None)
            or (start is not None and start < b.start)):
        return None
    mbx, since = m.id, snap.modseq
    try:
        vanished = view.vanished_since(acc, mbx, since)
    except CannotCalculateChanges:
        return None
    top = view.highest_modseq(acc)
    new = view.uids(acc, mbx, b.hw) if m.uidnext - 1 > b.hw else []
    held, huid = array(_U32, snap.held), array(_U32, b.huid)
    pend, puid, pdate = array(_U32, b.pend), array(_U32, b.puid), array(_I64, b.pdate)
    gone, soft = set(b.gone), set(b.soft)
    hmin = b.hmin
    get = view.email_reader(acc)
    unpack = _HEAD.unpack_from

    def date_of(e: int) -> int:
        raw = get(e)
        return unpack(raw)[_RECEIVED] if raw is not None else 0

    def find(e: int) -> int:
        i = bisect_left(held, e)
        return i if i < len(held) and held[i] == e else -1

    new_adds: list[tuple[int, int, int]] = []      # (date, eid, uid)
    unpend: set[int] = set()
    # the request's own commands: what the device deleted is no longer
    # held (still here, e.g. a failed move: an Add again); its drafts are
    for e in drop:
        i = find(e)
        if i < 0:
            continue
        del held[i]
        del huid[i]
        gone.discard(e)
        soft.discard(e)
        rec = view.email(acc, e)
        uid = rec.uid_in(mbx) if rec is not None else None
        if uid is not None and uid <= b.hw:
            d = rec.received_at
            if start is None or d >= start:
                new_adds.append((d, e, uid))
    check: list[int] = []
    for e in extra:
        if find(e) >= 0:
            continue
        i = bisect_left(held, e)
        held.insert(i, e)
        huid.insert(i, 0)
        unpend.add(e)
        check.append(e)
    # expunged since: held items leave (Delete), pending Adds go
    if vanished:
        rev_h = dict(zip(huid, held))
        rev_p = dict(zip(puid, pend))
        for _, uid in vanished:
            e = rev_h.get(uid)
            if e is not None:
                i = find(e)
                if i >= 0 and huid[i] == uid:
                    huid[i] = 0
                    gone.add(e)
                    soft.discard(e)
            e = rev_p.get(uid)
            if e is not None:
                unpend.add(e)
    # arrived since (deliveries, moves in, the items coming back)
    new_map = {}
    for uid, e in new:
        new_map[uid] = e
        i = find(e)
        if i >= 0:
            huid[i] = uid
            gone.discard(e)
            if e in check:
                check.remove(e)
            if start is not None:
                d = date_of(e)
                if d < start:
                    soft.add(e)
                else:
                    soft.discard(e)
                    hmin = d if hmin is None else min(hmin, d)
            continue
        d = date_of(e)
        if start is None or d >= start:
            new_adds.append((d, e, uid))
    for e in check:              # a held id not seen arriving: is it here?
        rec = view.email(acc, e)
        uid = rec.uid_in(mbx) if rec is not None else None
        i = find(e)
        if uid is None:
            gone.add(e)
            continue
        huid[i] = uid
        if start is not None:
            if rec.received_at < start:
                soft.add(e)
            else:
                hmin = rec.received_at if hmin is None else min(hmin, rec.received_at)
    # ageing out of the window: read the held dates only when the start
    # passed the lowest one
    if start is not None and hmin is not None and start > hmin:
        hmin = None
        for e, u in zip(held, huid):
            if u == 0 or e in soft:
                continue
            d = date_of(e)
            if d < start:
                soft.add(e)
            else:
                hmin = d if hmin is None else min(hmin, d)
    # the pending Adds: what went, what aged out, what came
    if unpend:
        keep = [i for i, e in enumerate(pend) if e not in unpend]
        if len(keep) != len(pend):
            pend = _u32([pend[i] for i in keep])
            puid = _u32([puid[i] for i in keep])
            pdate = array(_I64, [pdate[i] for i in keep])
    if start is not None and pend and pdate[0] < start:
        i = bisect_left(pdate, start)
        del pend[:i], puid[:i], pdate[:i]
    if new_adds:
        new_adds.sort()
        for d, e, uid in new_adds:
            n = len(pend)
            if not n or (pdate[-1], pend[-1]) < (d, e):
                pend.append(e), puid.append(uid), pdate.append(d)
                continue
            i = bisect_left(range(n), (d, e), key=lambda j: (pdate[j], pend[j]))
            pend.insert(i, e), puid.insert(i, uid), pdate.insert(i, d)
    gone = {e for e in gone if find(e) >= 0}
    soft = {e for e in soft if e not in gone and find(e) >= 0}

    def visible(e: int) -> bool:
        return e not in gone and e not in soft and find(e) >= 0

    changed = {e for e in snap.changed if visible(e)}
    if len(held):
        email_at = view.email_at
        for ms, uid in view.changed_since(acc, mbx, since):
            e = new_map.get(uid)
            if e is None:
                e = email_at(acc, mbx, uid)
            if e is None or not visible(e):
                continue
            if echo.get(e) == ms:
                changed.discard(e)        # the client's own change: not echoed
                continue
            changed.add(e)
    deletes, softs = sorted(gone), sorted(soft)
    basis = Basis(max(b.hw, m.uidnext - 1), m.uidvalidity, start, hmin, huid, pend, puid, pdate,
                  _u32(deletes), _u32(softs))
    return Diff(top, NewestFirst(pend), sorted(changed), deletes, softs, basis, held)


def advance(snap: Snapshot, diff: Diff, key: int, filter_type: int, *,
            held: set[int] | None = None, sent_adds=(), sent_changes=(),
            sent_removed=()) -> Snapshot:
    """The snapshot the device holds after an answer under SNAP that sent
    SENT_ADDS / SENT_CHANGES / SENT_REMOVED (Delete and SoftDelete) of DIFF
    (with the basis for the next request when DIFF has one)."""
    sr = set(sent_removed)
    changed = {e for e in diff.changes if e not in sr} - set(sent_changes)
    complete = (len(sent_adds) == len(diff.adds) and not changed
                and len(sent_removed) == len(diff.deletes) + len(diff.soft))
    b = diff.basis
    sa = set(sent_adds)
    found: list[int] = []
    if b is not None and diff.held is not None:
        # the Adds sent are the newest pending ones (the end of pend), less
        # those that could not be rendered (they stay pending)
        pend = b.pend
        j, kept = len(pend), []
        while len(found) < len(sa) and j > 0:
            j -= 1
            (found if pend[j] in sa else kept).append(j)
        if len(found) != len(sa):
            b = None                # not what the basis says: no basis next time
    if b is None or diff.held is None:
        h = set(diff.held if diff.held is not None else snap.held if held is None else held)
        h |= sa
        h -= sr
        return Snapshot(key, diff.modseq, packed(h), packed(changed & h), filter_type, complete)
    hs, huid = array(_U32, diff.held), array(_U32, b.huid)
    puid, pdate = b.puid, b.pdate
    hmin = b.hmin
    for i in found:
        e, u = pend[i], puid[i]
        k = bisect_left(hs, e)
        if k < len(hs) and hs[k] == e:
            huid[k] = u
        else:
            hs.insert(k, e)
            huid.insert(k, u)
        if b.start is not None:
            hmin = pdate[i] if hmin is None else min(hmin, pdate[i])
    for e in sr:
        k = bisect_left(hs, e)
        if k < len(hs) and hs[k] == e:
            del hs[k]
            del huid[k]
    kept.reverse()
    npend, npuid, npdate = pend[:j], puid[:j], pdate[:j]
    npend.extend(pend[i] for i in kept)
    npuid.extend(puid[i] for i in kept)
    npdate.extend(pdate[i] for i in kept)
    nb = Basis(b.hw, b.uidvalidity, b.start, hmin, huid, npend, npuid, npdate,
               _u32([e for e in b.gone if e not in sr]),
               _u32([e for e in b.soft if e not in sr]))
    return Snapshot(key, diff.modseq, hs, packed(changed), filter_type, complete, nb)


def pending(view, acc: int, device: str, collection_id: str) -> int | None:
    """How many changes (Add + Change + Delete + SoftDelete) a Sync under the
    device's current key for COLLECTION_ID would send now; None when the
    device has no sync state for it (never synced, or re-syncing from 0).
    A collection whose mailbox is gone counts 1 (the device must hear
    about it: its Sync gets Status 12)."""
    st = load(view, acc, device, collection_id)
    if st is None:
        return None
    mbx = ids.parse("M", collection_id)
    m = view.mailbox(acc, mbx) if mbx is not None else None
    if m is None:
        return 1
    snap = st.cur
    if snap.complete and not len(snap.changed) and m.highest_ms <= snap.modseq:
        return 0
    d = compute(view, acc, mbx, snap)
    return d.count() if d is not None else 1


def note_move(tx, acc: int, device: str, src: str, dst: str, eids) -> None:
    """Tell DEVICE's sync states that it moved EIDS from collection SRC to
    DST itself (MoveItems: the device moves the items locally, the
    ServerId stays the same), so that its next Sync of SRC sends no
    Delete and of DST no Add for them.  Runs in the writer (``storeio.write(store,
    eas_syncstate.note_move, ...)``, after the move); keys do not change.
    The snapshots lose their basis (the next Sync computes in full).
    A collection the device never synced is left alone."""
    note_moves(tx, acc, device, [(src, dst, e) for e in eids])


def note_moves(tx, acc: int, device: str, moves) -> None:
    """``note_move`` for MOVES [(src, dst, eid)] in order, each collection's
    state read and written once (one per move was 512 decodes and packs of
    the whole held set: 674 ms of the writer for a 10,000-item folder):
    per collection and email, the last move in or out of it is what holds."""
    from ..store import ops      # the writer side only
    last: dict[str, dict[int, bool]] = {}       # collection -> eid -> moved in
    for src, dst, eid in moves:
        last.setdefault(src, {})[eid] = False
        last.setdefault(dst, {})[eid] = True
    for cid, fate in last.items():
        raw = tx.device_state(acc, device, state_key(cid))
        st = decode(raw) if raw is not None else None
        if st is None:
            continue
        came = {e for e, into in fate.items() if into}
        for snap in (st.cur, st.prev):
            if snap is None:
                continue
            snap.held = packed((set(snap.held) - set(fate)) | came)
            snap.changed = packed(set(snap.changed) - set(fate))
            snap.basis = None
        ops.put_device_state(tx, acc, device, state_key(cid), encode(st))
