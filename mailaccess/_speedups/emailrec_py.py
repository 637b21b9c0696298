"""The write path's per-message work, pure-Python twin (the source of truth).

The hot loops of a bulk write run here (issue 10: ``STORE 1:* +FLAGS`` on
10,000 messages): changing the keywords of encoded email records in place
of decode -> EmailRecord -> encode (one record: ``rewrite_keywords``; the
whole loop of a bulk STORE, with its ``mbx.ms`` index keys:
``rewrite_many``; the same with its LMDB writes made: ``apply_keywords``),
taking a mailbox's membership out of the records of a bulk EXPUNGE
(``expunge_many``: the writes it implies, as lists; the same with its LMDB
writes made: ``apply_expunge``), deleting keys in bulk (``delete_keys``),
putting a run of keys of one prefix (``put_run``),
cutting a bulk write's ids in runs for the change log (``id_runs``), and
encoding the redo log's table writes (store/redolog.py).  ``emailrec_c``
is the compiled twin: same functions, same results, byte for byte.

The record layout is ``store.records.EMAIL_LAYOUT`` (read here at import);
this module builds no LMDB key of its own (``rewrite_many`` is handed the
store's key builders, ``apply_keywords`` its ``keys.KeyShape``s).
"""
from __future__ import annotations

from array import array
from collections.abc import Mapping

from ..store.errors import NotFound
from ..store.records import EMAIL_LAYOUT
from ..store.redolog import OP as _OP

_HEAD = EMAIL_LAYOUT.head
_I_MS = EMAIL_LAYOUT.index("last_ms")
_I_NKW = EMAIL_LAYOUT.index("n_keywords")
_I_NMEM = EMAIL_LAYOUT.index("n_members")
_I_SIZE = EMAIL_LAYOUT.index("size")
_VERSION = EMAIL_LAYOUT.version
_MEMBER = EMAIL_LAYOUT.member


def rewrite_keywords(data, add: frozenset, remove: frozenset, replace: frozenset | None,
                     new_ms: int, seen: str):
    """The keywords of encoded email record DATA changed: REPLACE when not
    None, else (old | ADD) - REMOVE (all lowercase).

    -> None when they stay the same; else (the new record: keywords sorted,
    last_ms = NEW_MS, everything else as it was; the old last_ms; the
    memberships as ((mailbox, uid), ...); +1/-1/0: SEEN gained/lost)."""
    head = list(_HEAD.unpack_from(data))
    nkw, nmem = head[_I_NKW], head[_I_NMEM]
    mem_end = _HEAD.size + nmem * _MEMBER.size
    old = set(bytes(data[mem_end:]).decode("utf-8").split("\0")) if nkw else set()
    new = set(replace) if replace is not None else (old | add) - remove
    if new == old:
        return None
    old_ms = head[_I_MS]
    head[_I_MS] = new_ms
    kws = sorted(new)
    head[_I_NKW] = len(kws)
    members = tuple(_MEMBER.unpack_from(data, _HEAD.size + i * _MEMBER.size)[:2]
                    for i in range(nmem))
    record = b"".join((_HEAD.pack(*head), bytes(data[_HEAD.size:mem_end]),
                       "\0".join(kws).encode("utf-8")))
    return record, old_ms, members, (seen in new) - (seen in old)


def rewrite_many(get, msg_key, mbx_ms_key, eids, add: frozenset, remove: frozenset,
                 replace: frozenset | None, seen: str, unchanged_since: int | None,
                 alloc_ms, want_records: bool):
    """``rewrite_keywords`` over the email records of EIDS: the loop of a bulk
    STORE (store/ops.py ``set_keywords``), reading each record with
    ``get(msg_key(eid))`` (None when there is none).

    ALLOC_MS() is called once, at the first record that changes, and gives
    the new modseq.  An email named twice is rewritten from its new record;
    one whose record is missing is skipped; with UNCHANGED_SINCE, one whose
    last_ms is above it is a conflict and stays as it is.

    -> (the new records [(key, record)] in first-change order, the mbx.ms
    keys to delete [mbx_ms_key(mailbox, old_ms, uid)], the mbx.ms items to
    put [(mbx_ms_key(mailbox, new_ms, uid), b"")], the changed eids (an
    email changed twice is there twice), the conflicting eids, {mailbox:
    change of its \\Seen count} for every mailbox of a changed email in
    first-seen order, and, when WANT_RECORDS, {eid: the email's record
    after the request (bytes)} for every email found and not in conflict,
    else None)."""
    new: dict = {}
    gone: list = []
    out_items: list = []
    changed: list = []
    conflicts: list = []
    deltas: dict = {}
    recs = {} if want_records else None
    ms = None
    for eid in eids:
        done = new.get(eid)
        if done is None:
            key = msg_key(eid)
            data = get(key)
            if data is None:
                continue
        else:
            key, data = done
        if unchanged_since is not None and \
                _HEAD.unpack_from(data)[_I_MS] > unchanged_since:
            conflicts.append(eid)
            continue
        out = None
        if ms is None:
            # a modseq only when something changes: ask first with any value
            if rewrite_keywords(data, add, remove, replace, 0, seen) is not None:
                ms = alloc_ms()
                out = rewrite_keywords(data, add, remove, replace, ms, seen)
        else:
            out = rewrite_keywords(data, add, remove, replace, ms, seen)
        if out is None:
            if recs is not None:
                recs[eid] = bytes(data)
            continue
        record, old_ms, members, seen_delta = out
        for mbx, uid in members:
            deltas[mbx] = deltas.get(mbx, 0) + seen_delta
            gone.append(mbx_ms_key(mbx, old_ms, uid))
            out_items.append((mbx_ms_key(mbx, ms, uid), b""))
        new[eid] = (key, record)
        changed.append(eid)
        if recs is not None:
            recs[eid] = record
    return list(new.values()), gone, out_items, changed, conflicts, deltas, recs


class RecordRun(Mapping):
    """A slice's email records in one buffer, handed by the writer to the
    loop (a streamed bulk STORE, stop 27): the ``{eid: record}`` of
    ``apply_keywords`` with ``run=True``, without a bytes object or a dict
    entry per email.  DATA: the records one after the other; EIDS and ENDS
    (``array("I")``): entry k is email EIDS[k]'s record, DATA[ENDS[k-1]:ENDS[k]]
    (from 0 for k = 0).  An email met twice has two entries, the later one
    its record (as the dict's later assignment).  ASCENDING: EIDS strictly
    ascending (each email once, in table order: the compiled formatter
    finds an email's entry by walking them, fetchfmt_c).  A read-only
    mapping eid -> record bytes, equal to the dict it stands for."""

    __slots__ = ("data", "eids", "ends", "ascending", "_pos")

    def __init__(self, data: bytes, eids: array, ends: array, ascending: bool | None = None):
        self.data, self.eids, self.ends = data, eids, ends
        if ascending is None:
            ascending = all(a < b for a, b in zip(eids, eids[1:]))
        self.ascending = ascending
        self._pos: dict[int, int] | None = None

    @classmethod
    def of(cls, records: dict[int, bytes]) -> RecordRun:
        """The run of RECORDS ({eid: record}), in the dict's order."""
        ends, n = array("I"), 0
        for r in records.values():
            n += len(r)
            ends.append(n)
        return cls(b"".join(records.values()), array("I", records), ends)

    def _index(self) -> dict[int, int]:
        pos = self._pos
        if pos is None:
            pos = self._pos = {e: k for k, e in enumerate(self.eids)}
        return pos

    def get(self, eid: int, default=None):
        k = self._index().get(eid)
        if k is None:
            return default
        return self.data[self.ends[k - 1] if k else 0:self.ends[k]]

    def __getitem__(self, eid: int) -> bytes:
        r = self.get(eid)
        if r is None:
            raise KeyError(eid)
        return r

    def __iter__(self):
        return iter(dict.fromkeys(self.eids))

    def __len__(self) -> int:
        return len(self._index())

    def __repr__(self) -> str:
        return f"RecordRun({len(self.eids)} entries, {len(self.data)} bytes)"


def apply_keywords(msg_cur, ms_cur, msg_shape, ms_shape, eids, add: frozenset,
                   remove: frozenset, replace: frozenset | None, seen: str,
                   unchanged_since: int | None, alloc_ms, want_records: bool, made=None,
                   run: bool = False):
    """``rewrite_many`` over EIDS with its writes made: the records read
    through MSG_CUR (an LMDB cursor on ``msg``; keys ``msg_shape.key(eid)``),
    then, when something changed, every old ``mbx.ms`` key deleted through
    MS_CUR (keys ``ms_shape.key((mailbox, modseq, uid))``), the new ones put
    (``putmulti``), and the new records put through MSG_CUR.  The writes of
    a bulk keyword change (store/logical.py), in one call: the compiled
    twin makes the same writes without building the lists (and, with
    py-lmdb 3.0.0, through LMDB's own cursor calls: each record put and its
    index keys moved as it is met, the same table contents at the end).

    MADE: called as ``made(records or None)`` once the records are put,
    before the index keys move (a streamed STORE's slice leaves while they
    do: the compiled twin moves them without the GIL).  RUN (with
    WANT_RECORDS): the records as a ``RecordRun`` instead of a dict (the
    compiled twin copies each into one buffer as it puts it).

    -> (changed eids, conflicting eids, {mailbox: \\Seen delta}, records or
    None), as ``rewrite_many``'s last four."""
    items, gone, out_items, changed, conflicts, deltas, recs = rewrite_many(
        msg_cur.get, msg_shape.key, lambda mbx, ms, uid: ms_shape.key((mbx, ms, uid)), eids,
        add, remove, replace, seen, unchanged_since, alloc_ms, want_records)
    if changed:
        msg_cur.putmulti(items)
    if run and recs is not None:
        recs = RecordRun.of(recs)
    if made is not None:
        made(recs)
    if changed:
        find, delete = ms_cur.set_key, ms_cur.delete
        for k in gone:
            if find(k):
                delete()
        ms_cur.putmulti(out_items)
    return changed, conflicts, deltas, recs


def expunge_many(uid_get, msg_get, uid_shape, msg_shape, ms_shape, mbx: int, uids,
                 seen: str, alloc_ms):
    """The loop of a bulk EXPUNGE (store/ops.py ``expunge``): mailbox MBX's
    membership taken out of the email record of each UID of UIDS (ascending,
    distinct), read with ``uid_get(uid_shape.key(uid))`` (the email id, u32;
    None: no such UID, skipped) and ``msg_get(msg_shape.key(eid))``.

    ALLOC_MS() is called once, at the first UID found, and gives the
    request's modseq MS.  A record that is missing, of another version, or
    without MBX among its memberships raises (ValueError, NotFound) as the
    record-at-a-time path did.  An email left in other mailboxes gets its
    new record (the membership out, last_ms = MS, everything else as it
    was) and its ``mbx.ms`` keys moved to MS in those mailboxes; an email
    left in none is handed back to be destroyed.

    -> (the UIDs removed, their ``uid`` keys, the ``mbx.ms`` keys to delete
    [ms_shape.key((mailbox, old last_ms, uid))] (MBX's and the other
    mailboxes'), the ``mbx.ms`` items to put [(key, b"")], the new records
    [(msg key, record)], the ids of the emails rewritten, the emails to
    destroy [(eid, record bytes)], the removed messages' total size, how
    many of them lacked SEEN, the other mailboxes met {mailbox: None} in
    first-met order)."""
    done: list = []
    uid_keys: list = []
    gone: list = []
    out_items: list = []
    new: list = []
    updated: list = []
    destroy: list = []
    others: dict = {}
    size = unseen = 0
    ms = None
    seen_b = seen.encode("utf-8")
    for uid in uids:
        k = uid_shape.key(uid)
        v = uid_get(k)
        if v is None:
            continue
        eid = int.from_bytes(bytes(v[:4]), "big")
        mkey = msg_shape.key(eid)
        data = msg_get(mkey)
        if data is None:
            raise ValueError(f"email {eid} (uid {uid}) has no record")
        if ms is None:
            ms = alloc_ms()
        data = bytes(data)
        head = list(_HEAD.unpack_from(data))
        if head[0] != _VERSION:
            raise ValueError(f"unknown email record version {head[0]}")
        nmem = head[_I_NMEM]
        mem_end = _HEAD.size + nmem * _MEMBER.size
        members = [_MEMBER.unpack_from(data, _HEAD.size + i * _MEMBER.size)
                   for i in range(nmem)]
        at = next((i for i, m in enumerate(members) if m[0] == mbx), None)
        if at is None:
            raise NotFound("message not in mailbox")
        old_ms = head[_I_MS]
        tail = data[mem_end:] if head[_I_NKW] else b""
        done.append(uid)
        uid_keys.append(k)
        gone.append(ms_shape.key((mbx, old_ms, members[at][1])))
        size += head[_I_SIZE]
        if seen_b not in tail.split(b"\0"):
            unseen += 1
        rest = members[:at] + members[at + 1:]
        if not rest:
            destroy.append((eid, data))
            continue
        for m, u, _sd in rest:
            others.setdefault(m, None)
            gone.append(ms_shape.key((m, old_ms, u)))
            out_items.append((ms_shape.key((m, ms, u)), b""))
        head[_I_MS] = ms
        head[_I_NMEM] = len(rest)
        new.append((mkey, b"".join([_HEAD.pack(*head)] + [_MEMBER.pack(*m) for m in rest]
                                   + [tail])))
        updated.append(eid)
    return done, uid_keys, gone, out_items, new, updated, destroy, size, unseen, others


def apply_expunge(uid_cur, msg_cur, ms_cur, uid_shape, msg_shape, ms_shape, mbx: int, uids,
                  seen: str, alloc_ms):
    """``expunge_many`` over UIDS with its writes made (the logical EXPUNGE
    redo op, store/logical.py): read through UID_CUR (``uid``) and MSG_CUR
    (``msg``), then, when a UID was found, its ``uid`` key deleted, the old
    ``mbx.ms`` keys deleted and the new ones put (MS_CUR), and the new
    records put (MSG_CUR).  The records of the emails to destroy are left
    to the caller (store/ops.py ``_destroy_many``: physical ops), as are the
    ``vanished`` rows, the counts and the change log.  The compiled twin
    makes the same writes.

    -> (the UIDs removed, the ids of the emails rewritten, the emails to
    destroy [(eid, record bytes)], the removed messages' total size, how
    many of them lacked SEEN, the other mailboxes met {mailbox: None}), as
    ``expunge_many``'s."""
    return write_expunge(expunge_many(uid_cur.get, msg_cur.get, uid_shape, msg_shape, ms_shape,
                                      mbx, uids, seen, alloc_ms),
                         uid_cur, msg_cur, ms_cur, delete_keys)


def write_expunge(lists, uid_cur, msg_cur, ms_cur, delete_keys_):
    """The writes of ``expunge_many``'s LISTS through the cursors (keys
    deleted with DELETE_KEYS_: this module's or the compiled twin's, whose
    py-lmdb path ends here); -> ``apply_expunge``'s result."""
    done, uid_keys, gone, out_items, new, updated, destroy, size, unseen, others = lists
    if done:
        delete_keys_(uid_cur, uid_keys)
        gone.sort()
        delete_keys_(ms_cur, gone)
        if out_items:
            out_items.sort()
            ms_cur.putmulti(out_items)
        if new:
            msg_cur.putmulti(new)
    return done, updated, destroy, size, unseen, others


def delete_keys(cur, keys_) -> list:
    """Delete each key of KEYS_ (in order) through CUR, an LMDB cursor of a
    write transaction (LMDB looks on the cursor's page first: neighbouring
    keys cost no descent of the tree each); -> the keys that were there
    (and are gone now), in order.  The compiled twin calls LMDB itself
    (py-lmdb 3.0.0, as apply_keywords does)."""
    out = []
    find, delete = cur.set_key, cur.delete
    for k in keys_:
        if find(k) and delete():
            out.append(k)
    return out


def put_run(cur, prefix: bytes, suffixes: bytes, width: int, value: bytes) -> int:
    """``put(prefix + suffix, value)`` through CUR (an LMDB cursor of a write
    transaction) for each WIDTH-byte suffix of SUFFIXES, in order (a RUN
    redo op: store/tx.py ``put_run``); -> how many.  The compiled twin calls
    LMDB itself (py-lmdb 3.0.0, as apply_keywords does)."""
    if width <= 0:
        raise ValueError("put_run: width must be positive")
    n = len(suffixes) // width
    prefix, value = bytes(prefix), bytes(value)
    cur.putmulti([(prefix + bytes(suffixes[i:i + width]), value)
                  for i in range(0, n * width, width)])
    return n


def id_runs(ids) -> tuple[list[int], list[tuple[int, int]]]:
    """IDS (distinct, any order) cut in runs of consecutive ids, ascending:
    -> (the ids in no run of two or more, [(first, last) of each run])
    (the change-log rows of a bulk write, store/changelog.py)."""
    ids = sorted(ids)
    singles: list[int] = []
    runs: list[tuple[int, int]] = []
    i, n = 0, len(ids)
    while i < n:
        j = i
        while j + 1 < n and ids[j + 1] == ids[j] + 1:
            j += 1
        if j > i:
            runs.append((ids[i], ids[j]))
        else:
            singles.append(ids[i])
        i = j + 1
    return singles, runs


def encode_ops(ops) -> bytes:
    """The redo log payload of table writes OPS: (kind, table, key, value)
    each as ``store.redolog.OP`` (kind u8, len(table) u8, len(key) u16,
    len(value) u32), then the three byte strings (table UTF-8)."""
    parts = []
    pack = _OP.pack
    for kind, table, key, value in ops:
        t = table.encode()
        parts.append(pack(kind, len(t), len(key), len(value)))
        parts.append(t)
        parts.append(key)
        parts.append(value)
    return b"".join(parts)
