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
  GetChanges 0), filter (the FilterType the key was made under) and
  ``complete`` (nothing was left unsent when the key was made).

  ``SyncState``: ``cur`` and ``prev`` snapshots, ``counter`` (the last key
  given; keys never repeat, even after a re-sync from 0), ``batch`` (what
  the answer that made ``cur`` sent: (op, email id), op "A" add, "C" change,
  "D" delete, "S" soft delete) and ``client_adds`` (ClientId -> email id of
  the drafts that request added, so a resent Add is not stored twice) and
  ``more`` (that answer said MoreAvailable: so does its replay).

The difference (``compute``) is exact, from the store, not from a log that
could be pruned:
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

``pending(view, acc, device, collection_id)`` is what Ping and
GetItemEstimate use: how many Add/Change/Delete/SoftDelete a Sync under the
current key would send now (None: no state, the device never synced the
collection).  When the last answer left nothing unsent and the mailbox's
highest modseq has not moved since, it answers 0 without scanning the
mailbox (an item ageing out of the FilterType window is then found by the
next Sync, not by Ping).
"""
from __future__ import annotations

import json
import sys
import time
from array import array
from dataclasses import dataclass, field

from .. import ids
from ..store import records

PREFIX = "s:"
FORMAT = 1
_U32 = "I" if array("I").itemsize == 4 else "L"

DAY = 86400
# MS-ASCMD 2.2.3.68.2 FilterType: the time window (days) of each value
FILTER_DAYS = {0: None, 1: 1, 2: 3, 3: 7, 4: 14, 5: 31, 6: 92, 7: 183}


def state_key(collection_id: str) -> str:
    return PREFIX + collection_id


def packed(ids_: "set[int] | list[int]") -> array:
    return array(_U32, sorted(ids_))


@dataclass
class Snapshot:
    key: int
    modseq: int
    held: array = field(default_factory=lambda: array(_U32))
    changed: array = field(default_factory=lambda: array(_U32))
    filter: int = 0
    complete: bool = False

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
    head = {"v": FORMAT, "cur": st.cur.meta(), "prev": st.prev.meta() if st.prev else None,
            "n": st.counter, "b": [[op, e] for op, e in st.batch], "a": st.client_adds, "mo": st.more,
            "le": sys.byteorder == "little"}
    hj = json.dumps(head, separators=(",", ":")).encode()
    parts = [len(hj).to_bytes(4, "big"), hj, st.cur.held.tobytes(), st.cur.changed.tobytes()]
    if st.prev is not None:
        parts += [st.prev.held.tobytes(), st.prev.changed.tobytes()]
    return b"".join(parts)


def decode(raw) -> SyncState | None:
    """The state stored in RAW (None: nothing usable, the device starts over)."""
    try:
        raw = bytes(raw)
        n = int.from_bytes(raw[:4], "big")
        head = json.loads(raw[4:4 + n])
        if head.get("v") != FORMAT:
            return None
        pos = 4 + n
        swap = head.get("le", True) != (sys.byteorder == "little")

        def arr(count: int) -> array:
            nonlocal pos
            a = array(_U32)
            a.frombytes(raw[pos:pos + 4 * count])
            if len(a) != count:
                raise ValueError("truncated sync state")
            if swap:
                a.byteswap()
            pos += 4 * count
            return a

        def snap(m: dict) -> Snapshot:
            held = arr(m["nh"])
            changed = arr(m["nc"])
            return Snapshot(m["k"], m["m"], held, changed, m["f"], m["c"])

        cur = snap(head["cur"])
        prev = snap(head["prev"]) if head.get("prev") else None
        return SyncState(cur, prev, head["n"], [(op, e) for op, e in head["b"]],
                         dict(head.get("a") or {}), bool(head.get("mo")))
    except (ValueError, KeyError, TypeError):
        return None


def load(view, acc: int, device: str, collection_id: str) -> SyncState | None:
    raw = view.device_state(acc, device, state_key(collection_id))
    return decode(raw) if raw is not None else None


@dataclass
class Diff:
    """What a Sync under a snapshot would send, read from one view."""
    modseq: int                       # the account's highest modseq in that view
    adds: list[int]                   # newest first
    changes: list[int]
    deletes: list[int]
    soft: list[int]                   # SoftDelete: left the FilterType window

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


def compute(view, acc: int, mbx: int, snap: Snapshot, filter_type: int | None = None, *,
            held: set[int] | None = None, echo: dict[int, int] | None = None,
            now: float | None = None) -> Diff | None:
    """The difference between SNAP (or HELD, the held set as the request's
    own client commands left it) and mailbox MBX now (None: the mailbox is
    gone).  FILTER_TYPE defaults to the snapshot's.  ECHO: email id -> the
    modseq this request's own write gave it (not sent back as a Change)."""
    m = view.mailbox(acc, mbx)
    if m is None:
        return None
    top = view.highest_modseq(acc)
    if held is None:
        held = set(snap.held)
    ft = snap.filter if filter_type is None else filter_type
    start = window_start(ft, now)
    by_uid = dict(view.uids(acc, mbx))
    inbox = set(by_uid.values())
    deletes = sorted(held - inbox)
    if start is None:
        soft: list[int] = []
        candidates = inbox - held
        dates = received_dates(view, acc, candidates)
        visible_held = held & inbox
    else:
        dates = received_dates(view, acc, inbox)
        in_window = {e for e in inbox if dates[e] >= start}
        candidates = in_window - held
        soft = sorted((held & inbox) - in_window)
        visible_held = held & in_window
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
    return Diff(top, adds, sorted(changed), deletes, soft)


def advance(snap: Snapshot, diff: Diff, key: int, filter_type: int, *,
            held: set[int] | None = None, sent_adds=(), sent_changes=(),
            sent_removed=()) -> Snapshot:
    """The snapshot the device holds after an answer under SNAP that sent
    SENT_ADDS / SENT_CHANGES / SENT_REMOVED (Delete and SoftDelete) of DIFF."""
    h = set(snap.held) if held is None else set(held)
    h |= set(sent_adds)
    h -= set(sent_removed)
    changed = (set(diff.changes) - set(sent_changes)) & h
    complete = (len(sent_adds) == len(diff.adds) and not changed
                and len(sent_removed) == len(diff.deletes) + len(diff.soft))
    return Snapshot(key, diff.modseq, packed(h), packed(changed), filter_type, complete)


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
    ServerId stays the same), so that its next Sync of SRC sends no Delete
    and of DST no Add for them.  Runs in the writer (``storeio.write(store,
    eas_syncstate.note_move, ...)``, after the move); keys do not change.
    A collection the device never synced is left alone."""
    from ..store import ops      # the writer side only
    moved = set(eids)
    for cid, add in ((src, False), (dst, True)):
        raw = tx.device_state(acc, device, state_key(cid))
        st = decode(raw) if raw is not None else None
        if st is None:
            continue
        for snap in (st.cur, st.prev):
            if snap is None:
                continue
            held = set(snap.held)
            held = held | moved if add else held - moved
            snap.held = packed(held)
            snap.changed = packed(set(snap.changed) - moved)
        ops.put_device_state(tx, acc, device, state_key(cid), encode(st))
