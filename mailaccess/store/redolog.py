"""The redo log: one small sequential fdatasync per acknowledged commit.

LMDB makes a commit durable with two flushes of data.mdb: every B-tree page
the transaction dirtied (a one-message STORE dirties about fifteen, scattered
over the file), then the meta page.  On this project's disks the scattered
pages are what costs (docs/durability.md has the figures).  With the redo log
the store opens LMDB without syncing (MDB_NOSYNC) and instead:

1. inside each write transaction, before its commit, every table write of
   the transaction (put / delete, physical: table name, key, value) is
   written to ``redo.log`` as one record (a ``pwrite`` at the tail, under
   LMDB's writer lock, so records are in commit order);
2. LMDB commits, in memory, which releases its writer lock;
3. ``redo.log`` is fdatasync'ed (``flush``): a few sequential pages in a
   preallocated file (no size change, so no journal commit).  An fdatasync
   writes every page of the file dirty when it is called, so it covers this
   record and every earlier one, whichever process wrote it;
4. only then are the transaction's requests acknowledged (and the commit
   published).  A commit whose records a flush that began after them has
   already covered (another thread's or process's: the shared ``DurableMark``)
   needs no flush of its own.

A record that was not flushed was never acknowledged; if a power cut takes
it (or tears it), replay stops there, and so does everything after it,
which was not acknowledged either (a later acknowledgement needs a later
flush, which would have covered it).  Between 2 and 3 other sessions could
read a commit a power cut may still take back: a read snapshot newer than
the ``DurableMark`` flushes the log first (``lmdb_store.READ_DURABLE``).

Every so often the store makes LMDB itself durable (a checkpoint), in two
halves:

* under LMDB's writer lock, riding on a commit (``LmdbStore._log_commit``):
  the snapshot S before that commit is pinned (a read transaction), S's two
  meta pages are read from data.mdb, and the log switches to generation
  g + 1: a NEXT record ends generation g, the commit's own record is the
  first of g + 1, right after it (one write; the checkpoint thread gets the
  job once the commit's flush has made the NEXT record durable);
* on the checkpoint thread, beside further commits (``_Checkpointer``):
  ``env.sync`` flushes every committed page (S's among them), then header
  g + 1 (S's txnid and meta pages, and where g + 1's records start) is
  written and flushed, then the previous snapshot's pin is released.

No second switch starts before that finishes.  Records therefore continue
through the file; a synchronous checkpoint (the old way, all of it under the
writer lock: at open, on taking the role over, when idle, and once the log
reaches ``REDO_WRAP_BYTES``) writes its header before any record of its
generation and starts the file over.

Why a crash after a checkpoint at S loses nothing and corrupts nothing:

* kill -9: the page cache survives, LMDB holds every committed transaction
  (it writes its meta page last), and the log holds at least those.
* power loss: data.mdb on disk is S's pages plus any later page the kernel
  happened to write back, possibly including a later meta page that names
  pages that never reached the disk.  The pages of S itself are intact:
  the store holds a read transaction on S until the next checkpoint's
  header is durable, so LMDB never reuses them (``pin``).  Recovery writes
  S's meta pages back from the log header, which makes LMDB see exactly S,
  then replays every record after S in order, from the header's start, and
  on through a NEXT record into the next generation (a checkpoint whose
  header never became durable: its generation's records were written after
  the switch).  A record whose fdatasync did not complete was never
  acknowledged; its CRC or generation fails and replay stops there, and so
  does everything after it: a NEXT record is followed only when intact.
  A record written, committed and not yet flushed when a checkpoint runs
  is in the checkpoint's data: env.sync flushes every committed page, and
  the header's snapshot holds it (a synchronous checkpoint's) or is older
  and replays it if it is durable (a background one's).

Recovery runs only when no other process has the store open read-write (an
exclusive ``flock`` on ``redo.lock``; every read-write store holds it shared):
a live server's page cache is the truth, not the disk.

The header has two slots (generation g in slot g % 2), so a header torn by a
crash in the middle of a checkpoint leaves the previous one, whose snapshot is
still pinned and whose records are still in the file (nothing overwrites them
before a later header is durable).  Records written under generation g carry
g: records of an older generation left further on in the reused file are
never replayed, and a generation is never used twice (after recovery the next
one is two past the last one replayed).  The header format is version 2
(``MAREDO02``, with the start offset); a version 1 header (records from
``RECORDS_AT``) is still read, so a store the previous release left unclean
recovers.

Processes share the log: a record is appended while the writing process holds
LMDB's writer lock (inside the write transaction), at the tail kept in
LMDB's main database (``redo.tail``), so records are in commit order; each flushes
after its commit, and one process's flush covers the records the others
wrote before it.  One process
checkpoints and pins (it holds ``redo.owner``); when it exits another takes
over before its next write.
"""
from __future__ import annotations

import fcntl
import logging
import mmap
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

log = logging.getLogger("mailaccess.store")

LOG_NAME = "redo.log"
LOCK_NAME = "redo.lock"
OWNER_NAME = "redo.owner"
MARK_NAME = "redo.mark"

_MAGIC_V1 = b"MAREDO01"
_MAGIC = b"MAREDO02"
# header slot: magic, generation, snapshot txnid, page size, meta bytes saved,
# (v2) where the generation's records start; then both metas and a crc32.
# A v1 header (no start: its records start at RECORDS_AT) is still read, so a
# store left unclean by the previous release recovers.
_HEAD_V1 = struct.Struct(">8sQQII")
_HEAD = struct.Struct(">8sQQIIQ")
HEADER_SLOT = 4096
RECORDS_AT = 2 * HEADER_SLOT
META_BYTES = 512                 # of each meta page: LMDB's MDB_meta is ~140 bytes at offset 16
# record: length of what follows the header, generation, txnid, crc32 of the rest
_REC = struct.Struct(">IQQI")
# op: kind (1 put, 2 delete; 3 and 4: logical ops, store/logical.py), table
# name length, key length, value length; then the table name, the key and
# the value (encoded by _speedups/emailrec)
OP = _OP = struct.Struct(">BBHI")
PUT, DELETE = 1, 2
# the one op of a NEXT record, the last record of a generation: the log goes
# on at offset ``at`` with generation ``generation`` (key: _NEXT)
NEXT = 5
_NEXT = struct.Struct(">QQ")

# LMDB's main database (the one that names the tables; its page is written by
# every commit anyway): generation u64, tail u64 (not logged).  Releases
# before perf7-ckpt kept it in the meta table (LmdbStore._checkpoint moves it)
TAIL_KEY = b"redo.tail"
_TAIL = struct.Struct(">QQ")

GROW = 1 << 20                   # the log file grows by zero-filled steps of this
# ... written a page at a time: a write's length sets the size of the page
# cache folios it creates (ext4, Linux 6.16 on), and every later small write
# into a folio walks all of its blocks: a record's pwrite into the 1 MiB
# folio a 1 MiB zero-fill made cost 4.4 us of CPU, into a 4 KiB one 1.1 us
# (docs/durability.md, perf8-write)
FILL = 4096


@dataclass
class Header:
    generation: int
    txnid: int
    psize: int
    metas: tuple[bytes, bytes]
    start: int = RECORDS_AT      # the offset of the generation's first record


@dataclass
class Record:
    generation: int
    txnid: int
    ops: list = field(default_factory=list)   # (kind, table, key, value)


def encode_ops(ops: list) -> bytes:
    """The payload of one record (the compiled twin in _speedups/emailrec)."""
    return _emailrec().encode_ops(ops)


_EMAILREC = None


def _emailrec():
    global _EMAILREC
    if _EMAILREC is None:
        from .. import _speedups

        _EMAILREC = _speedups.load("emailrec")
    return _EMAILREC


def decode_ops(data: bytes) -> list:
    ops, off, n = [], 0, len(data)
    while off < n:
        kind, tl, kl, vl = _OP.unpack_from(data, off)
        off += _OP.size
        table = data[off:off + tl].decode()
        off += tl
        key = data[off:off + kl]
        off += kl
        value = data[off:off + vl]
        off += vl
        ops.append((kind, table, key, value))
    return ops


def apply_ops(txn, dbs, ops: list) -> None:
    """Replay OPS (one record's) on write transaction TXN, in order: PUT and
    DELETE as they are, the logical kinds by store/logical.py."""
    for kind, table, key, value in ops:
        if kind == PUT:
            txn.put(key, value, db=dbs[table])
        elif kind == DELETE:
            txn.delete(key, db=dbs[table])
        else:
            from . import logical      # (late: it loads _speedups, which import this)

            logical.apply(txn, dbs, kind, table, key, value)


def encode_record(generation: int, txnid: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(struct.pack(">QQ", generation, txnid)))
    return _REC.pack(len(payload), generation, txnid, crc) + payload


def encode_next(generation: int, txnid: int, next_generation: int, at: int) -> bytes:
    """The NEXT record that ends GENERATION: the log goes on at AT (right
    after this record) with NEXT_GENERATION."""
    op = (NEXT, "", _NEXT.pack(next_generation, at), b"")
    return encode_record(generation, txnid, encode_ops([op]))


def next_size() -> int:
    return len(encode_next(0, 0, 0, 0))


def encode_header(h: Header) -> bytes:
    body = (_HEAD.pack(_MAGIC, h.generation, h.txnid, h.psize, META_BYTES, h.start)
            + h.metas[0] + h.metas[1])
    return body + struct.pack(">I", zlib.crc32(body))


def decode_header(data: bytes) -> Header | None:
    head = _HEAD if data[:8] == _MAGIC else _HEAD_V1 if data[:8] == _MAGIC_V1 else None
    if head is None:
        return None
    n = head.size + 2 * META_BYTES
    if len(data) < n + 4:
        return None
    body = data[:n]
    if struct.unpack_from(">I", data, n)[0] != zlib.crc32(body):
        return None
    magic, gen, txnid, psize, mb, *start = head.unpack_from(body)
    if mb != META_BYTES:
        return None
    m0 = body[head.size:head.size + META_BYTES]
    m1 = body[head.size + META_BYTES:n]
    return Header(gen, txnid, psize, (m0, m1), start[0] if start else RECORDS_AT)


def read_header(fd: int) -> Header | None:
    """The valid header slot with the highest generation, or None."""
    best = None
    for slot in (0, 1):
        h = decode_header(os.pread(fd, HEADER_SLOT, slot * HEADER_SLOT))
        if h is not None and (best is None or h.generation > best.generation):
            best = h
    return best


def read_records(fd: int, generation: int, after_txnid: int, start: int = RECORDS_AT):
    """Records of GENERATION from START (a header's ``start``), in order,
    and on through each NEXT record into the generation it names (a
    checkpoint whose header never became durable: its records follow the
    previous generation's), stopping at the first torn, foreign or
    out-of-order record.  NEXT records themselves are not yielded."""
    off = start
    size = os.fstat(fd).st_size
    last = after_txnid
    while off + _REC.size <= size:
        head = os.pread(fd, _REC.size, off)
        length, gen, txnid, crc = _REC.unpack(head)
        if gen != generation or length == 0 or off + _REC.size + length > size:
            return
        payload = os.pread(fd, length, off + _REC.size)
        if zlib.crc32(payload, zlib.crc32(struct.pack(">QQ", gen, txnid))) != crc:
            return
        end = off + _REC.size + length
        ops = decode_ops(payload)
        if len(ops) == 1 and ops[0][0] == NEXT:
            # the end of GENERATION: its snapshot txnid (not ordered
            # against the records around it, which may share it)
            nxt, at = _NEXT.unpack(ops[0][2])
            if nxt != generation + 1 or at != end or txnid < last:
                return
            generation = nxt
            off = at
            continue
        if txnid <= last:
            return
        last = txnid
        yield Record(gen, txnid, ops), end
        off = end


def read_metas(data_path: str, psize: int) -> tuple[bytes, bytes]:
    fd = os.open(data_path, os.O_RDONLY)
    try:
        return (os.pread(fd, META_BYTES, 0), os.pread(fd, META_BYTES, psize))
    finally:
        os.close(fd)


def restore_metas(data_path: str, h: Header) -> None:
    """Write the checkpoint's meta pages back into data.mdb (durably)."""
    fd = os.open(data_path, os.O_RDWR)
    try:
        os.pwrite(fd, h.metas[0], 0)
        os.pwrite(fd, h.metas[1], h.psize)
        os.fdatasync(fd)
    finally:
        os.close(fd)


class RedoLog:
    """The open log file of one store (one per process)."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOG_NAME)
        self.lock_path = os.path.join(directory, LOCK_NAME)
        self.lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.owner_fd = os.open(os.path.join(directory, OWNER_NAME), os.O_RDWR | os.O_CREAT,
                                0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.size = os.fstat(self.fd).st_size
        self._grow_lock = threading.Lock()       # (the checkpoint thread writes headers)
        self.mark = DurableMark(os.path.join(directory, MARK_NAME))
        # test hook: on_sync(what) around each flush this store relies on:
        # WHAT + "-start" right before it (what was written by then is what
        # it makes durable) and WHAT right after it; WHAT is "log" (records:
        # a commit's flush, or a reader's, ``flush``), "header" (a
        # checkpoint's header) or "data" (a checkpoint's env.sync of data.mdb)
        self.on_sync = None
        self.syncs = 0

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.lock_fd)
        os.close(self.owner_fd)
        self.mark.close()

    # --- who else has the store open ------------------------------------------------

    def lock_alone(self) -> bool:
        """Take the lock exclusively if no other read-write store holds it."""
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def try_own(self) -> bool:
        """Become the process that checkpoints, if no live process is."""
        try:
            fcntl.flock(self.owner_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def lock_shared(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_SH)

    # --- writing ------------------------------------------------------------------------

    def _ensure(self, end: int) -> None:
        """Zero-fill the file up to END (and a step beyond), durably: records
        then overwrite allocated blocks and their fdatasync changes no metadata.
        The size is read again first, under an exclusive lock on the file:
        another process (a worker) may have grown it, and written records
        past the size this one last saw, which zeros must never overwrite."""
        if end <= self.size:
            return
        with self._grow_lock:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                self.size = max(self.size, os.fstat(self.fd).st_size)
                if end <= self.size:
                    return
                new = max(end, self.size + GROW)
                new = (new + GROW - 1) // GROW * GROW
                zero = b"\0" * FILL
                off = self.size
                while off < new:
                    os.pwrite(self.fd, zero[:new - off], off)
                    off += min(FILL, new - off)
                os.fsync(self.fd)
                self.size = new
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)

    def reserve(self, end: int) -> None:
        """Zero-fill the file up to END ahead of the records (the checkpoint
        thread, beside the writer: it fills past the size, where no record
        is, under the same locks as a growth by the writer)."""
        self._ensure(end)

    def append(self, at: int, record: bytes, sync: bool = True) -> int:
        """Write RECORD at offset AT (the tail) -> the new tail; durable
        when SYNC (else the next ``flush``, of any process, covers it: an
        fdatasync writes every dirty page of the file)."""
        end = at + len(record)
        self._ensure(end + _REC.size)
        os.pwrite(self.fd, record, at)
        if sync:
            self.flush()
        return end

    def flush(self, what: str = "log") -> None:
        """fdatasync the log: every record written (by any process) before
        the call is durable when it returns."""
        hook = self.on_sync
        if hook is not None:
            hook(what + "-start")
        os.fdatasync(self.fd)
        self.syncs += 1
        if hook is not None:
            hook(what)

    def void(self, at: int) -> None:
        """Invalidate a record written at AT whose transaction did not commit."""
        os.pwrite(self.fd, b"\0" * _REC.size, at)
        os.fdatasync(self.fd)

    def write_header(self, h: Header) -> None:
        self._ensure(RECORDS_AT + _REC.size)
        os.pwrite(self.fd, encode_header(h), (h.generation % 2) * HEADER_SLOT)
        # The previous generation's records stay as they are: if a power cut
        # keeps other pages of this flush but not the header (one flush
        # orders nothing), recovery takes the previous header and must still
        # replay them.  The new generation's reader stops at the first
        # record of another generation (read_records), so they need no
        # erasing (tests/test_redolog_header.py).
        self.flush("header")

    def header(self) -> Header | None:
        return read_header(self.fd)


_MARK = struct.Struct("<Q")


class DurableMark:
    """The transaction id up to which every commit is durable (its record
    flushed), shared by the processes of one store: 8 bytes of a small
    file mapped by each (``redo.mark``).  Only a value known to be durable
    is ever stored, so two processes storing at once (no lock: the higher
    may be overwritten by the lower) leave a value that is still true,
    only lower than it could be, which costs a reader one flush more.  It
    is not itself made durable: a store opened alone sets it again
    (``set``) after recovery, where transaction ids start over from the
    checkpoint's."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < mmap.PAGESIZE:
                os.ftruncate(fd, mmap.PAGESIZE)
            self._mm = mmap.mmap(fd, mmap.PAGESIZE)
        finally:
            os.close(fd)

    def get(self) -> int:
        return _MARK.unpack_from(self._mm, 0)[0]

    def advance(self, txnid: int) -> None:
        """Every commit up to TXNID is durable."""
        if txnid > _MARK.unpack_from(self._mm, 0)[0]:
            _MARK.pack_into(self._mm, 0, txnid)

    def set(self, txnid: int) -> None:
        _MARK.pack_into(self._mm, 0, txnid)

    def close(self) -> None:
        self._mm.close()


class LoggedTxn:
    """An LMDB write transaction that also records its table writes (for the
    redo log).  Reads pass straight through; ``ops`` is the list of
    (kind, table, key, value) in the order they were made (key and value as
    given: bytes, or buffers read from this write transaction, which stay
    valid until it ends; they are encoded before it commits)."""

    __slots__ = ("txn", "ops", "_names", "get", "id")

    def __init__(self, txn, names: dict):
        self.txn = txn
        self.ops: list = []
        self._names = names          # id(db handle) -> table name
        self.get = txn.get
        self.id = txn.id

    def put(self, key, value, db=None, **kw):
        r = self.txn.put(key, value, db=db, **kw)
        if r:
            self.ops.append((PUT, self._names[id(db)], key, value))
        return r

    def delete(self, key, value=b"", db=None):
        r = self.txn.delete(key, value, db=db)
        if r:
            self.ops.append((DELETE, self._names[id(db)], key, b""))
        return r

    def cursor(self, db=None):
        return _LoggedCursor(self.txn.cursor(db=db), self.ops, self._names[id(db)])

    def __getattr__(self, name):
        return getattr(self.txn, name)


class _LoggedCursor:
    __slots__ = ("cur", "ops", "table")

    def __init__(self, cur, ops: list, table: str):
        self.cur = cur
        self.ops = ops
        self.table = table

    def delete(self, dupdata: bool = False):
        key = self.cur.key()
        r = self.cur.delete(dupdata)
        if r:
            self.ops.append((DELETE, self.table, key, b""))
        return r

    def put(self, key, value, **kw):
        r = self.cur.put(key, value, **kw)
        if r:
            self.ops.append((PUT, self.table, key, value))
        return r

    def __iter__(self):
        return iter(self.cur)

    def __getattr__(self, name):
        return getattr(self.cur, name)


def decode_tail(raw) -> tuple[int, int] | None:
    if raw is None or len(raw) != _TAIL.size:
        return None
    return _TAIL.unpack(bytes(raw))


def encode_tail(generation: int, tail: int) -> bytes:
    return _TAIL.pack(generation, tail)


def now() -> float:
    return time.monotonic()
