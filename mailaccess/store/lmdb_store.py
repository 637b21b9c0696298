"""The LMDB environment, its one writer thread (group commit) and read views.

LMDB write transactions must begin, run and commit on one OS thread, so one
dedicated thread owns every write.  Callers hand it plain functions
``fn(tx) -> result``; it takes every request that is waiting, applies them
in one transaction (each inside its own nested transaction, so one failing
request never spoils the others), commits once, makes the commit durable (the
redo log's fdatasync, after LMDB's commit and outside its writer lock: on
the writer, or on the sync thread while the writer runs the next batch), and
only then completes each request and publishes the changes.  Many concurrent
APPENDs or deliveries therefore share one fsync.  A read snapshot holding a
commit not yet durable flushes the log before it is used (``READ_DURABLE``).

This module imports no Trio: completion is a callback, which the async layer
turns into a wake-up on its event loop (mailaccess/storeio.py).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import lmdb

from . import keys, redolog
from .changelog import Retention
from . import coming as _coming
from .errors import StoreDamaged, StoreError, StoreFullError, StoreMissing
from .records import Change
from .tx import WriteTx

log = logging.getLogger("mailaccess.store")

_GIB = 1 << 30

# a checkpoint (store/redolog.py) when the log holds this much, or this long
# after the last one (and at once when the writer is idle for REDO_IDLE)
REDO_MAX_BYTES = 16 << 20
REDO_MAX_COMMITS = 8
# the checkpoints that ride on commits continue the log where it is; once it
# reaches this offset the next checkpoint is a synchronous one (on the
# writer), which starts the file over (as an idle one does)
REDO_WRAP_BYTES = 16 << 20
# the checkpoint thread zero-fills the log this far past a switch, so that
# the writer seldom grows the file itself (a zero-fill and an fsync)
REDO_RESERVE = 2 << 20
# a commit waits for the checkpoint in flight once this many commits (of this
# process) went by since its switch: while it runs, two pins hold pages back
REDO_MAX_BEHIND = REDO_MAX_COMMITS
REDO_INTERVAL = 2.0
REDO_IDLE = 0.2
# how often an idle checkpointing process looks for other workers' records
REDO_POLL = 0.1
# change-log pruning down to the size limit waits this long for the writer to
# be idle, and stops for the next request; pruning past the hard limit
# (Retention.hard_entries) is done before the next request.  As long as the
# idle checkpoint's wait: a client's commands come closer than that (imaplib
# takes ~30 ms to read a 10,000-line answer), and pruning between them would
# run beside the loop's reads (the GIL) and hold the next write for a slice
PRUNE_IDLE = 0.2
# a synchronous checkpoint that is due (``_checkpoint_due``: the log at
# REDO_WRAP_BYTES) runs right after a commit's acknowledgements when no
# request waits (the next one, a lone client's round trip away, then finds
# the writer done or nearly); else in front of the next batch.  The usual
# checkpoints ride on a commit and flush on the checkpoint thread.
CHECKPOINT_AFTER_ACK = True
# a read snapshot (``store.read()`` / ``store.view()``) newer than what the
# redo log's shared mark says is durable flushes the log before it is used:
# no session, of any worker, shows a commit a power cut could take back
READ_DURABLE = True

_RESTORE = ("restore the store from a backup (docs/operations.md, \"Backups\"); "
            "mailaccess never replaces an existing store")


def store_state(path: str | os.PathLike) -> str:
    """What PATH holds, before anything opens it: ``"absent"`` (no such
    directory), ``"empty"`` (a directory with nothing in it) or
    ``"present"`` (anything else: a store, or something that must be
    checked as one and is never replaced)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return "absent"
    if os.path.isdir(path) and not os.listdir(path):
        return "empty"
    return "present"


def _refuse_damaged_files(path: str) -> int:
    """Refuse what LMDB would silently re-initialise (a zero-length or
    missing data.mdb beside other files) -> the size of data.mdb."""
    if not os.path.isdir(path):
        raise StoreDamaged(f"{path} is not a directory, so it holds no mail store: "
                           "point --data-dir at the data directory")
    data_file = os.path.join(path, "data.mdb")
    if not os.path.exists(data_file):
        raise StoreDamaged(
            f"{path} is not empty but holds no data.mdb: the store is missing; "
            f"{_RESTORE} (or use an empty directory for a new store)")
    size = os.path.getsize(data_file)
    if size == 0:
        raise StoreDamaged(f"{data_file} is empty (0 bytes): the store was truncated; "
                           f"{_RESTORE}")
    return size


def _refuse_short(path: str, env) -> None:
    """LMDB maps the file and reads pages past its end as SIGBUS: compare the
    file with the last page the store's meta page says is in use, before any
    page but the two meta pages is touched.  The size is read after the meta
    page: LMDB writes pages before the meta page naming them and never
    shrinks the file, so a writer in another process cannot make a whole
    store look short."""
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.path.getsize(os.path.join(path, "data.mdb"))
    if size < need:
        raise StoreDamaged(
            f"{os.path.join(path, 'data.mdb')} is {size} bytes but the store needs {need}: "
            f"it was truncated or only partly copied; {_RESTORE}")


def _index_versions() -> tuple[int, tuple[int, ...]]:
    """(the message index format this code writes, the formats it reads):
    mime.index owns the format; the store records which one it holds."""
    from ..mime import index as mindex

    return mindex.FORMAT_VERSION, tuple(mindex.READABLE_VERSIONS)


@dataclass(slots=True)
class _Job:
    fn: Callable[..., Any]
    args: tuple
    done: Callable[[Any, BaseException | None], None]


# queued by write_here when a checkpoint came due: the writer thread runs it
_KICK = object()


class _Unflatten(Exception):
    """A request of a flat batch failed: the batch runs again, nested (_run_batch)."""


@dataclass(slots=True)
class CommitInfo:
    """Handed to the on_commit hook after each durable commit."""

    changes: list[tuple[int, Change]]   # (account, change) in modseq order
    batch_size: int


class _Gate:
    """Readers share; map growth excludes them (set_mapsize needs no live txn)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    def enter(self) -> None:
        """``reading()`` without the context manager (the writer's hot path)."""
        cond = self._cond
        cond.acquire()
        try:
            while self._resizing:
                cond.wait()
            self._readers += 1
        finally:
            cond.release()

    def leave(self) -> None:
        cond = self._cond
        cond.acquire()
        try:
            self._readers -= 1
            if not self._readers and self._resizing:
                cond.notify_all()     # only map growth waits for the readers to leave
        finally:
            cond.release()

    @contextmanager
    def reading(self):
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class _Checkpointer:
    """The thread that finishes a checkpoint beside the writer (one at a
    time): flush data.mdb (env.sync, which takes no LMDB lock and changes
    nothing in LMDB), write the new generation's header, release the
    previous pin (``LmdbStore._finish_checkpoint``).  The writer has already
    switched the log to the new generation, in a commit of its own
    (``LmdbStore._log_commit``), and goes on committing meanwhile."""

    def __init__(self, store: "LmdbStore"):
        self._store = store
        self._cond = threading.Condition()
        self._job: tuple | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="store-checkpoint",
                                        daemon=True)
        self._thread.start()

    def submit(self, header, pin) -> None:
        with self._cond:
            assert self._job is None
            self._job = (header, pin)
            self._cond.notify_all()

    def busy(self) -> bool:
        return self._job is not None

    def wait(self) -> None:
        """Until no checkpoint is in flight."""
        with self._cond:
            while self._job is not None:
                self._cond.wait()

    def stop(self) -> None:
        with self._cond:
            while self._job is not None:
                self._cond.wait()
            self._stop = True
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._job is None:
                    return
                job = self._job
            try:
                self._store._finish_checkpoint(*job)
            except Exception as exc:   # lmdb.Error, OSError: the previous header stands
                log.error("store checkpoint failed (the redo log keeps every write): %s", exc)
            finally:
                with self._cond:
                    self._job = None
                    self._cond.notify_all()


@dataclass(slots=True)
class _Durable:
    """A commit (a batch's) waiting for the log's flush: its requests'
    results and changes, the transaction id the flush must cover, and the
    checkpoint its commit switched the log for, if any (header, pin)."""

    batch: list
    results: list
    changes: list
    need: int
    switch: tuple | None


class _Syncer:
    """The thread that makes the writer's commits durable and acknowledges
    them (thread ``store-sync``): it takes every commit handed to it since
    its last flush, fdatasyncs the log once for all of them (a flush that
    started after each one's record was written), then completes their
    requests and runs the commit hooks, in commit order, and hands a
    commit's checkpoint to the checkpoint thread.  Meanwhile the writer
    thread runs the next batch: its record goes into the file during this
    flush and waits for the next one (``LmdbStore._make_durable``)."""

    def __init__(self, store: "LmdbStore"):
        self._store = store
        self._cond = threading.Condition()
        self._items: list[_Durable] = []
        self._active = False
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="store-sync", daemon=True)
        self._thread.start()

    def add(self, item: _Durable) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def idle(self) -> bool:
        """No commit handed over is waiting or being flushed (read without
        the lock: ``_loop`` marks itself active before it takes the items)."""
        return not self._items and not self._active

    def drain(self) -> None:
        """Until every commit handed over is acknowledged."""
        with self._cond:
            while self._items or self._active:
                self._cond.wait()

    def stop(self) -> None:
        self.drain()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._items and not self._stop:
                    cond.wait()
                if not self._items:
                    return
                # active first: idle() is read without the lock
                # (_make_durable), and must never see neither
                self._active = True
                items, self._items = self._items, []
            try:
                self._store._make_durable(items)
            except Exception:      # (it completes every request itself)
                log.exception("store flush failed")
            finally:
                with cond:
                    self._active = False
                    cond.notify_all()


class LmdbStore:
    """Owns the environment, the writer thread and the commit hook."""

    def __init__(self, path: str | os.PathLike, *, map_size: int | None = None,
                 max_batch: int = 256, readonly: bool = False,
                 retention: Retention | None = None, create: bool = True,
                 max_readers: int = 1024, redo: bool | None = None,
                 max_mailboxes: int = 10_000):
        self.path = os.fspath(path)
        # mailboxes one account may have (ops.create_mailbox); 0 = no limit
        self.max_mailboxes = max_mailboxes
        self.readonly = readonly
        if redo is None:
            redo = os.environ.get("MAILACCESS_STORE_REDO", "1") != "0"
        # the redo log (store/redolog.py): one sequential fdatasync per commit
        # instead of LMDB's two flushes of scattered pages
        self.redo: redolog.RedoLog | None = None
        self._owner = False      # this process checkpoints (it opened the store alone)
        self.retention = retention or Retention()
        state = store_state(self.path)
        if state != "present" and (readonly or not create):
            raise StoreMissing(
                f"there is no mail store at {self.path}: check --data-dir/--config (the "
                "server creates a store on its first start in an empty data directory), "
                "or restore one from a backup (docs/operations.md)")
        existing = 0
        if state == "present":
            existing = _refuse_damaged_files(self.path)
        else:
            log.warning("creating a new, empty mail store at %s", self.path)
            os.makedirs(self.path, exist_ok=True)
        # The map is virtual address space, not disk: start with room to grow
        # and double whenever a transaction fills it.
        self._map_size = map_size or max(_GIB, existing * 2)
        recover = None
        if not readonly:
            self.redo = rl = redolog.RedoLog(self.path)
            try:
                recover = self._restore_checkpoint(rl, existing)
            except BaseException:
                rl.close()
                raise
        try:
            self.env = lmdb.open(
                self.path, map_size=self._map_size, max_dbs=len(keys.TABLES) + 4,
                max_readers=max_readers, sync=not redo or readonly, metasync=True,
                readonly=readonly, lock=True, subdir=True, max_spare_txns=64)
        except (lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.CorruptedError) as exc:
            self._close_redo()
            if state != "present":
                raise StoreError(f"cannot create a store at {self.path}: {exc}") from None
            raise StoreDamaged(
                f"{os.path.join(self.path, 'data.mdb')} is not a readable LMDB store "
                f"({exc}): it is damaged, truncated or of a foreign format; {_RESTORE}"
            ) from None
        except lmdb.Error as exc:    # permissions, no space, too many readers ...
            self._close_redo()
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
        try:
            if state == "present":
                _refuse_short(self.path, self.env)
            # an environment with no table at all is one whose creation never
            # committed: it is initialised like a new one
            fresh = self.env.stat()["entries"] == 0
            if not fresh:
                self._refuse_foreign()
        except BaseException:
            self.env.close()
            self._close_redo()
            raise
        self.db: dict[str, Any] = {}
        with self.env.begin(write=not readonly) as txn:
            for name, dup in keys.TABLES.items():
                if readonly and name in keys.LATER_TABLES and txn.get(name.encode()) is None:
                    self.db[name] = None     # read-only, older store: reads as empty
                    continue
                self.db[name] = self.env.open_db(name.encode(), txn=txn, dupsort=dup,
                                                 create=not readonly)
            meta = self.db["meta"]
            ver = txn.get(b"data_version", db=meta)
            if ver is not None and int(ver) == 1 and not readonly:
                ver = self._migrate_v1(txn)
            if ver is not None and int(ver) in (2, 3, 4, 5) and not readonly:
                old_ver = ver
                # formats 2 -> 3 -> 4 -> 5 -> 6 change no stored byte (records.decode_mailbox,
                # change-log runs, msg.bs and msg.hdr rows absent: keys.DATA_VERSION)
                ver = str(keys.DATA_VERSION).encode()
                txn.put(b"data_version", ver, db=meta)
                log.info("store format %d -> %d", int(old_ver), keys.DATA_VERSION)

            if ver is None and not fresh:
                self.env.close()
                raise StoreDamaged(
                    f"{self.path} holds an LMDB database that is not a mailaccess store "
                    f"(no data_version): point --data-dir elsewhere, or {_RESTORE}")
            if ver is None and not readonly:
                txn.put(b"data_version", str(keys.DATA_VERSION).encode(), db=meta)
                txn.put(b"created", str(int(time.time())).encode(), db=meta)
                txn.put(keys.META_INDEX_VERSION, str(_index_versions()[0]).encode(), db=meta)
            elif ver is not None and int(ver) not in keys.READABLE_DATA_VERSIONS:
                raise StoreError(
                    f"{self.path} holds store format {int(ver)}, this mailaccess reads "
                    f"format {keys.DATA_VERSION}: upgrade or export with the matching version")
            iver = txn.get(keys.META_INDEX_VERSION, db=meta)
            iver = int(bytes(iver)) if iver is not None else 1
            # the redo log's tail (``redolog.TAIL_KEY``) is a row of LMDB's
            # main database, whose page every commit writes anyway (each
            # table's root moves): no page of its own per commit
            self._tail_db = self.env.open_db(None, txn=txn)
        try:
            self._check_index_version(iver)
        except StoreError:
            self.env.close()
            self._close_redo()
            raise
        self._gate = _Gate()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # held by whichever thread runs a write transaction of this process:
        # the writer thread (a batch, a checkpoint, a sweep) or a caller
        # running a small write itself (write_here)
        self._busy = threading.Lock()
        self._max_batch = max_batch
        # writes the loop announced and has not queued yet (an APPEND whose
        # literal is on its way): the writer waits for them (_wait_coming)
        self.coming = _coming.Coming()
        self.on_commit: list[Callable[[CommitInfo], None]] = []
        # a context manager factory wrapped around a commit's completions and
        # hooks (storeio sets loophop.batched: one loop wake-up per commit)
        self.around_completions: Callable[[], Any] | None = None
        self._sweep_from: int | None = 0      # account the next age sweep starts at
        self._unsynced_tid = 0                # the last housekeeping commit (_unsynced_write)
        # size pruning a request made due (changelog.write): account -> the
        # entries to prune before the next request (0: idle time only)
        self._prune_due: dict[int, int] = {}
        self._next_sweep = time.monotonic() + self.retention.sweep_interval
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats = {"commits": 0, "jobs": 0}
        self._names = {id(h): n for n, h in self.db.items() if h is not None}
        self._pin = None                     # read txn on the last durable header's snapshot
        self._alone = False                  # opened with no other read-write process
        # the log's flush, after LMDB's commit and its lock (_make_durable):
        # the writer's batches on the sync thread, write_here's by its caller
        self._syncer: _Syncer | None = None
        # a switch made (_log_commit) whose checkpoint waits for its flush
        self._switching = False
        # the shared "durable up to" transaction id (redolog.DurableMark)
        self._mark: redolog.DurableMark | None = None
        self._broken: BaseException | None = None   # a flush failed: no more writes
        self._redo_tail = 0
        self._redo_commits = 0
        self._gen_start = redolog.RECORDS_AT  # where this generation's records start
        self._psize = 0
        self._ckpt: _Checkpointer | None = None
        # test hook: ckpt_hook(stage) in the checkpoint thread, at "switched"
        # (before env.sync), "synced" (before the header) and "header" (after)
        self.ckpt_hook: Callable[[str], None] | None = None
        self._last_checkpoint = time.monotonic()
        if self.redo is not None:
            try:
                self._open_redo(recover, redo)
            except BaseException:
                self.env.close()
                self._close_redo()
                raise
        if not readonly:
            # reader slots left by a process that died holding a snapshot
            # (a killed worker, server/workers.py) pin old pages: free them.
            # Only now: a dead checkpointer's slot is the redo log's pin, and
            # if this process took over checkpointing it has just made (in
            # _open_redo) the new checkpoint that no longer needs it.
            self.env.reader_check()

    # --- the redo log ---------------------------------------------------------------

    def _restore_checkpoint(self, rl: "redolog.RedoLog", existing: int):
        """Before LMDB opens: if no other process has the store open and the
        redo log has a checkpoint, put its meta pages back (LMDB then sees
        exactly the durable, pinned snapshot) -> the header to replay from."""
        alone = self._alone = rl.lock_alone()
        # the checkpointer: whoever holds redo.owner (the first opener; another
        # process takes over when it exits, see _take_over)
        self._owner = rl.try_own()
        if not alone:
            rl.lock_shared()          # a live writer elsewhere: its page cache is the truth
            return None
        h = rl.header()
        if h is None or not existing:
            return None
        redolog.restore_metas(os.path.join(self.path, "data.mdb"), h)
        return h

    def _open_redo(self, recover, keep: bool) -> None:
        rl = self.redo
        gen = 0
        if recover is not None:
            n = 0
            gen = recover.generation
            for rec, _end in redolog.read_records(rl.fd, recover.generation, recover.txnid,
                                                  recover.start):
                self._replay(rec)
                gen = max(gen, rec.generation)
                n += 1
            if n:
                log.warning("store %s was not closed cleanly: replayed %d transactions "
                            "from the redo log", self.path, n)
        h = rl.header()
        if h is not None:
            gen = max(gen, h.generation)
        if self._owner or self._tail_state() is None:
            # + 2: the log may hold records of one generation past the last
            # one replayed (a switch whose NEXT record never became durable),
            # never two (the next switch waits for that one's checkpoint,
            # which starts only once the NEXT record is durable)
            self._checkpoint(at_least=gen + 2)
        if self._alone:
            # transaction ids start over from the checkpoint's after a
            # recovery: the mark left by the previous run means nothing
            rl.mark.set(self.env.info()["last_txnid"])
        if not keep:
            self._drop_redo()
        else:
            self._mark = rl.mark
            rl.lock_shared()

    def _replay(self, rec: "redolog.Record") -> None:
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    redolog.apply_ops(txn, self.db, rec.ops)
                return
            except lmdb.MapFullError:
                self._map_size *= 2
                self.env.set_mapsize(self._map_size)

    def _checkpoint(self, at_least: int = 0) -> None:
        """The synchronous checkpoint (at open, on taking the role over, when
        idle, and when the log has grown to REDO_WRAP_BYTES): make every
        committed transaction durable in data.mdb, save its meta pages as
        the log's new header (a new generation, whose records start over at
        the beginning of the file) and pin that snapshot.  Runs in its own
        write transaction, so under LMDB's writer lock, after the checkpoint
        in flight (if any) is done."""
        rl = self.redo
        if self._syncer is not None:
            self._syncer.drain()      # (a switch waiting for its flush goes to _ckpt)
        if self._ckpt is not None:
            self._ckpt.wait()
        at = self._tail_db
        for _attempt in range(8):
            txn = self.env.begin(write=True)
            try:
                old = redolog.decode_tail(txn.get(redolog.TAIL_KEY, db=at))
                legacy = redolog.decode_tail(txn.get(redolog.TAIL_KEY, db=self.db["meta"]))
                if legacy is not None:
                    # where an earlier release kept it (perf7-ckpt moved it)
                    txn.delete(redolog.TAIL_KEY, db=self.db["meta"])
                    old = max(old or legacy, legacy)
                gen = max(at_least, (old[0] if old else 0) + 1)
                self._sync_data()
                psize = self.env.stat()["psize"]
                metas = redolog.read_metas(os.path.join(self.path, "data.mdb"), psize)
                pin = self.env.begin(write=False)     # the snapshot just made durable
                try:
                    rl.write_header(redolog.Header(gen, pin.id(), psize, metas))
                except BaseException:
                    pin.abort()
                    raise
                if self._pin is not None:
                    self._pin.abort()
                self._pin = pin
                txn.put(redolog.TAIL_KEY, redolog.encode_tail(gen, redolog.RECORDS_AT), db=at)
                tid = txn.id()
                txn.commit()
                # every commit up to here is in data.mdb, durable (this
                # one changed the log's tail only, which recovery remakes)
                rl.mark.advance(tid)
                self._last_checkpoint = time.monotonic()
                self._redo_tail = self._gen_start = redolog.RECORDS_AT
                self._redo_commits = 0
                self.stats["checkpoints"] = self.stats.get("checkpoints", 0) + 1
                return
            except lmdb.MapFullError:
                txn.abort()
                self._grow()
            except BaseException:
                txn.abort()
                raise
        raise StoreFullError("the mail store map could not grow far enough")

    def _sync_data(self) -> None:
        """A checkpoint's flush of data.mdb (around it the log's test hook,
        ``RedoLog.on_sync``: "data-start", "data")."""
        hook = self.redo.on_sync
        if hook is not None:
            hook("data-start")
        self.env.sync(True)
        if hook is not None:
            hook("data")

    def _switch_due(self, tail: int) -> bool:
        """A checkpoint rides on this commit (``_log_commit``): this process
        checkpoints, none is in flight, and 8 commits, 16 MiB of log or 2 s
        have passed since the last."""
        ck = self._ckpt
        if ck is None or ck.busy() or self._switching or not self._owner:
            return False
        return (self._redo_commits >= REDO_MAX_COMMITS
                or tail - self._gen_start >= REDO_MAX_BYTES
                or time.monotonic() - self._last_checkpoint >= REDO_INTERVAL)

    def _finish_checkpoint(self, header: "redolog.Header", pin) -> None:
        """The checkpoint thread's half (``_Checkpointer``): the log has
        switched to HEADER's generation at the snapshot PIN holds; make that
        snapshot durable, then the header, then let the previous one go.  A
        failure leaves the previous header and pin (still valid: recovery
        goes from its records on through the NEXT record into this
        generation's)."""
        rl = self.redo
        hook = self.ckpt_hook
        try:
            if hook is not None:
                hook("switched")
            self._sync_data()
            if hook is not None:
                hook("synced")
            rl.write_header(header)
        except BaseException:
            pin.abort()
            raise
        old, self._pin = self._pin, pin
        if old is not None:
            old.abort()
        self.stats["checkpoints"] = self.stats.get("checkpoints", 0) + 1
        if hook is not None:
            hook("header")
        rl.reserve(header.start + REDO_RESERVE)

    def _take_over(self) -> None:
        """The checkpointing process exited: this one checkpoints from now
        on, starting at once (before its next write), so a snapshot is pinned
        and the log stays bounded."""
        if self.redo.try_own():
            self._owner = True
            log.info("store %s: this process now checkpoints the redo log", self.path)
            self._try_checkpoint()
            if self._thread is not None and self._ckpt is None:
                self._ckpt = _Checkpointer(self)

    def _tail_state(self):
        with self.env.begin() as txn:
            return redolog.decode_tail(txn.get(redolog.TAIL_KEY, db=self._tail_db))

    def _try_checkpoint(self) -> None:
        """A checkpoint from the writer loop: one that fails (no space, I/O
        error) leaves the previous header and pin in place, which is safe;
        the next one is tried after the next commit."""
        try:
            self._checkpoint()
        except (lmdb.Error, OSError, StoreError) as exc:
            log.error("store checkpoint failed (the redo log keeps every write): %s", exc)

    def _checkpoint_due(self) -> bool:
        """A synchronous checkpoint (``_checkpoint``) is due on the writer.
        With the checkpoint thread running, only when the log has grown to
        REDO_WRAP_BYTES (it then starts over at the beginning of the file;
        the checkpoints between ride on commits, ``_switch_due``); without
        it, every interval as before."""
        if self.redo is None or not self._owner or self._redo_tail <= redolog.RECORDS_AT:
            return False
        if self._ckpt is not None:
            return self._redo_tail >= REDO_WRAP_BYTES
        return (self._redo_commits >= REDO_MAX_COMMITS
                or self._redo_tail - self._gen_start >= REDO_MAX_BYTES
                or time.monotonic() - self._last_checkpoint >= REDO_INTERVAL)

    def _log_commit(self, txn, ops: list, sync: bool = True):
        """Write TXN's OPS to the redo log, then commit it: LMDB itself does
        not sync, and neither does this (under LMDB's writer lock): the
        caller flushes the log after the commit, which releases the lock,
        and acknowledges after the flush (``_make_durable``).  When a
        checkpoint is due (``_switch_due``, only for a SYNC commit, one
        that is flushed and acknowledged) the record goes in a new
        generation, after a NEXT record ending the old one; the snapshot
        before TXN is pinned and its meta pages read (both consistent: this
        process holds the writer lock) -> (header, pin) for the checkpoint
        thread, to hand over once the record is flushed; else None."""
        rl = self.redo
        if rl is None or not ops:
            txn.commit()
            return None
        meta = self._tail_db
        gen, tail = redolog.decode_tail(txn.get(redolog.TAIL_KEY, db=meta)) or (0, 0)
        if not gen:
            raise StoreError("the redo log has no checkpoint")
        txnid = txn.id()
        payload = redolog.encode_ops(ops)
        pin = None
        ck = self._ckpt
        if ck is not None and ck.busy() and self._redo_commits >= REDO_MAX_BEHIND:
            # the checkpoint in flight is slow (a loaded disk): wait for it,
            # as the synchronous checkpoint did, rather than let the two
            # pins hold back the pages of ever more commits
            ck.wait()
        try:
            if sync and self._switch_due(tail):
                header, pin, head = self._switch_at(gen, tail)
                gen, start = header.generation, header.start
                record = head + redolog.encode_record(gen, txnid, payload)
            else:
                record = redolog.encode_record(gen, txnid, payload)
            # the tail first: a full map fails the put before anything is
            # logged.  A switch's checkpoint starts only once its NEXT
            # record is flushed (``_make_durable`` hands it over), so a log
            # never holds records two generations past where recovery's
            # chain ends (``_open_redo`` starts the generation after at + 2).
            end = tail + len(record)
            txn.put(redolog.TAIL_KEY, redolog.encode_tail(gen, end), db=meta)
            rl.append(tail, record, sync=False)
            try:
                txn.commit()
            except BaseException:
                try:
                    rl.void(tail)        # logged but never committed: never replayed
                except OSError:
                    log.exception("could not void a redo record")
                raise
        except BaseException:
            if pin is not None:
                pin.abort()
            raise
        self._redo_tail = end
        if pin is None:
            self._redo_commits += 1
            return None
        self._switched(start, 1)
        return (header, pin)

    def _switch_at(self, gen: int, tail: int):
        """A switch from generation GEN, whose records end at TAIL (under
        LMDB's writer lock, in the write transaction that switches): pin S,
        the last commit, and read its meta pages -> (header g + 1, pin,
        the NEXT record to write at TAIL)."""
        pin = self.env.begin(write=False)      # S: the last commit before this one
        try:
            psize = self._psize or self.env.stat()["psize"]
            self._psize = psize
            metas = redolog.read_metas(os.path.join(self.path, "data.mdb"), psize)
        except BaseException:
            pin.abort()
            raise
        start = tail + redolog.next_size()
        head = redolog.encode_next(gen, pin.id(), gen + 1, start)
        return redolog.Header(gen + 1, pin.id(), psize, metas, start), pin, head

    def _switched(self, start: int, commits: int) -> None:
        self._gen_start = start
        self._redo_commits = commits
        self._last_checkpoint = time.monotonic()
        self._switching = True        # no other switch before this one's checkpoint

    def _idle_switch(self) -> bool:
        """The checkpointing process, idle, found other workers' records in
        the log (``_others_logged``): switch the log in a write transaction
        of its own that writes only the NEXT record (and ``redo.tail``), and
        leave the flushes to the checkpoint thread, as a switch riding on a
        commit does: LMDB's writer lock is held for a pwrite and a commit,
        not through env.sync and the header's flush (the synchronous
        checkpoint).  -> True when switched, or when a checkpoint is in
        flight (the next poll tries again); False when the synchronous
        checkpoint is due instead: the log has reached REDO_WRAP_BYTES (it
        starts the file over) or there is no checkpoint thread."""
        ck = self._ckpt
        if ck is None or self.redo is None:
            return False
        if ck.busy() or self._switching:
            return True
        meta = self._tail_db
        with self._gate.reading():
            txn = self.env.begin(write=True)
            pin = None
            try:
                gen, tail = redolog.decode_tail(txn.get(redolog.TAIL_KEY, db=meta)) or (0, 0)
                if not gen or tail >= REDO_WRAP_BYTES or tail <= self._gen_start:
                    txn.abort()
                    return False
                header, pin, head = self._switch_at(gen, tail)
                txn.put(redolog.TAIL_KEY, redolog.encode_tail(header.generation, header.start),
                        db=meta)
                tid = txn.id()
                self.redo.append(tail, head, sync=False)
            except BaseException:
                txn.abort()
                if pin is not None:
                    pin.abort()
                raise
            try:
                txn.commit()
            except BaseException:
                pin.abort()
                try:
                    self.redo.void(tail)
                except OSError:
                    log.exception("could not void a redo record")
                raise
        self._switched(header.start, 0)
        self._make_durable([_Durable([], [], [], tid, (header, pin))], here=True)
        return True

    def _drop_redo(self) -> None:
        """No redo log from here on (LMDB syncs by itself): everything is
        durable in data.mdb first, then the log is emptied."""
        rl = self.redo
        if self._ckpt is not None:
            self._ckpt.stop()
            self._ckpt = None
        self.env.sync(True)
        if self._pin is not None:
            self._pin.abort()
            self._pin = None
        if rl.lock_alone():
            os.ftruncate(rl.fd, 0)
            os.fsync(rl.fd)
        self._close_redo()

    def _close_redo(self) -> None:
        if self.redo is not None:
            self.redo.close()
            self.redo = None

    def _refuse_foreign(self) -> None:
        """An LMDB file with tables but no ``meta`` table is not ours."""
        with self.env.begin() as txn:
            if txn.get(b"meta") is None:
                raise StoreDamaged(
                    f"{self.path} holds an LMDB database that is not a mailaccess store "
                    f"(no meta table): point --data-dir elsewhere, or {_RESTORE}")

    def _check_index_version(self, stored: int) -> None:
        """Refuse a store whose message indexes this code cannot read; note
        one whose indexes are older than the format this code writes."""
        current, readable = _index_versions()
        if stored > current or stored not in readable:
            raise StoreError(
                f"{self.path} holds message indexes of format {stored}, this mailaccess "
                f"reads formats {', '.join(map(str, readable))}: " + (
                    "a newer mailaccess wrote them; run that version (or newer) on this "
                    "data directory" if stored > current else
                    "run `mailaccess reindex` with a mailaccess release that reads format "
                    f"{stored}, then this one"))
        if stored < current:
            log.warning("%s holds message indexes older than format %d (format %d and up); "
                        "they are read as they are: run `mailaccess reindex` to rebuild them",
                        self.path, current, stored)

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self.redo is not None and self._owner and self._ckpt is None:
            self._ckpt = _Checkpointer(self)
        if self.redo is not None and self._syncer is None:
            self._syncer = _Syncer(self)
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer_loop, name="store-writer",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Finish every queued write, stop the writer, close the environment."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._syncer is not None:
            self._syncer.stop()
            self._syncer = None
        if self._ckpt is not None:
            self._ckpt.stop()
            self._ckpt = None
        if self.redo is not None:
            rl = self.redo
            self.env.sync(True)
            if rl.lock_alone():
                # the only writer: everything is in data.mdb, the log is empty
                if self._pin is not None:
                    self._pin.abort()
                    self._pin = None
                os.ftruncate(rl.fd, 0)
                os.fsync(rl.fd)
            # else others keep writing: their records follow ours in the log
            if self._pin is not None:
                self._pin.abort()
                self._pin = None
            self._close_redo()
        elif not self.readonly:
            self.env.sync(True)
        self.env.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # --- reads -------------------------------------------------------------------

    def read(self) -> "_Read":
        """A read snapshot (``with store.read() as txn``).  Keep it short and
        never hold it across an await."""
        return _Read(self)

    def view(self, durable: bool = True) -> "_ReadView":
        """A read snapshot wrapped in the domain read API (store.view.View):
        ``with store.view() as v``.  ``durable=False``: the snapshot may
        hold commits whose redo record is not flushed yet (``READ_DURABLE``
        is skipped), for a look whose result no client sees as state (an
        APPEND's mailbox lookup: the write that follows is flushed after
        every commit it read)."""
        return _ReadView(self, durable)

    # --- writes ------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], *args,
               done: Callable[[Any, BaseException | None], None]) -> None:
        """Queue ``fn(tx, *args)``; ``done(result, error)`` runs on the writer
        thread after the commit that made it durable (or with the error)."""
        if self._closed:
            raise StoreError("the store is closed")
        if self._thread is None:
            self.start()
        self._queue.put(_Job(fn, args, done))

    def write_sync(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Blocking write for threads that are not the event loop (CLI, import)."""
        ev = threading.Event()
        box: list = []

        def done(result, error):
            box.append((result, error))
            ev.set()

        if kwargs:
            fn = functools.partial(fn, **kwargs)
        self.submit(fn, *args, done=done)
        ev.wait()
        result, error = box[0]
        if error is not None:
            raise error
        return result

    def write_here(self, fn: Callable[..., Any], args: tuple,
                   done: Callable[[Any, BaseException | None], None]) -> bool:
        """Run the small write ``fn(tx, *args)`` in the calling thread, now,
        if the writer thread is idle (nothing queued, no batch, checkpoint
        or sweep under way): the same one-request batch the writer would
        run (``done`` is called before this returns, after the commit is
        durable), without two thread hand-offs.  The caller waits for the
        log's flush.  A worker process that does not checkpoint (another
        one does) writes here too.  -> False (nothing done) when the writer
        is busy: ``submit`` then."""
        return self._batch_here([_Job(fn, args, done)], here=True)

    def _batch_here(self, batch: list[_Job], here: bool = False, flat: bool = False) -> bool:
        """``_run_batch(BATCH)`` in the calling thread, now, if the writer
        thread is idle (write_here, write_here_many) -> False (nothing
        done) when it is busy."""
        if self._closed or self._thread is None or not self._busy.acquire(False):
            return False
        try:
            if not self._queue.empty():
                return False
            if self.redo is not None and not self._owner and self.redo.try_own():
                # the checkpointing process exited and this one now holds the
                # role: the writer thread takes it over (and checkpoints)
                # before the write (_take_over); another live owner: write on
                return False
            gc_on = gc.isenabled()
            if gc_on:
                gc.disable()        # (as for the writer's batches)
            pruning = self._prune_state()
            try:
                self._run_batch(batch, WriteTx, here=here, flat=flat)
            finally:
                if gc_on:
                    gc.enable()
            # a checkpoint or change-log pruning (prune_later) made due here
            # is the writer thread's, not the caller's: it may sleep with no
            # timeout (or one set before the pruning was due) and must be
            # woken; pruning that was due already has its wake-up
            due = (CHECKPOINT_AFTER_ACK and self._checkpoint_due()) or \
                self._prune_state() > pruning
        finally:
            self._busy.release()
        if due:
            self._queue.put(_KICK)      # the writer thread checkpoints / prunes, not the caller
        return True

    def write_here_many(self, jobs: list) -> bool:
        """Run the small writes JOBS ([(fn, args, done)]) in the calling
        thread, now, as one batch (one commit; straight in the transaction,
        nested only if one of them fails: ``_run_batch``'s FLAT), if the
        writer thread is idle, as ``write_here`` does: the APPENDs the loop
        gathered (storeio.write_gathered).  Unlike
        write_here, the caller need not wait for the log's flush: it
        flushes here only when nothing else waits (the sync thread idle,
        nothing queued or announced), else the sync thread does, beside the
        next batch, as after a batch of the writer thread; either way each
        ``done`` is called after the flush (on the sync thread in the
        second case: the caller's must hop back to its loop).  -> False
        (nothing done) when the writer is busy: ``submit`` then."""
        return self._batch_here([_Job(fn, args, done) for fn, args, done in jobs], flat=True)

    def _writer_loop(self) -> None:
        busy = self._busy
        while True:
            try:
                job = self._queue.get(timeout=self._idle_timeout())
            except queue.Empty:
                with busy:
                    self._idle_work()
                continue
            if job is None:
                return
            with busy:
                if not self._writer_step(job):
                    return

    def _idle_work(self) -> None:
        if self._prune_due:
            self._prune(WriteTx, idle=True)    # idle: slices, until a request comes
            return
        if self._owner and self._redo_tail > redolog.RECORDS_AT:
            self._try_checkpoint()    # idle: make LMDB durable, empty the log
        elif self._owner and self._others_logged():
            # other worker processes write and never checkpoint: without
            # this the pin held every page they freed (data.mdb grew by
            # 140 MB over 2,000 one-message STOREs on a second worker).
            # A switch of its own, flushed beside their commits; the
            # synchronous checkpoint when that cannot be
            try:
                switched = self._idle_switch()
            except (lmdb.Error, OSError, StoreError) as exc:
                log.error("store checkpoint failed (the redo log keeps every write): %s", exc)
                switched = True       # (the next poll tries again)
            if not switched:
                self._try_checkpoint()
        if self._sweep_timeout() == 0:
            self._sweep(WriteTx)

    def _others_logged(self) -> bool:
        """The shared log holds records this process did not write, after
        the start of the current generation's (its own tail is at the start
        of the record area, or of the generation its last switch began)."""
        try:
            state = self._tail_state()
        except lmdb.Error:
            return False
        return state is not None and state[1] > max(redolog.RECORDS_AT, self._gen_start)

    def _writer_step(self, job) -> bool:
        """One batch (JOB and whatever else waits), with the checkpoint and
        sweep around it; False when told to stop."""
        if self._prune_due:
            # past the hard limit: before the next request (or now, woken by
            # a write_here); the rest when idle (_idle_timeout)
            self._prune(WriteTx, idle=False)
        if self.redo is not None and not self._owner:
            self._take_over()
        if self._checkpoint_due():
            self._try_checkpoint()
        if job is _KICK:
            return True
        batch = [job]
        stop = False
        while len(batch) < self._max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                stop = True
                break
            if nxt is not _KICK:
                batch.append(nxt)
        if not stop and self.coming:
            stop = self._wait_coming(batch)
        # No cyclic garbage collection while a batch runs: a bulk STORE
        # allocates ~100,000 short-lived tuples (records, keys, redo-log
        # ops), freed by reference counting at the commit, and the
        # collector, triggered by the allocations, walked them (and every
        # older object) again and again: 40-60% of a 10,000-message
        # STORE.  Re-enabled at once after it: garbage of the batch, if
        # any, is collected on the next allocation.
        gc_on = gc.isenabled()
        if gc_on:
            gc.disable()
        try:
            self._run_batch(batch, WriteTx)
        finally:
            if gc_on:
                gc.enable()
        if stop:
            return False
        # The same flushes, in the same order between commit N and N+1,
        # as a checkpoint in front of batch N+1: only earlier, while
        # the loop sends the answer and the client sends its next write.
        if CHECKPOINT_AFTER_ACK and self._queue.empty() and self._checkpoint_due():
            self._try_checkpoint()
        if self.retention.sweep_interval and time.monotonic() >= self._next_sweep:
            self._sweep(WriteTx)   # under constant load too, one slice at a time
        return True

    def _wait_coming(self, batch: list[_Job]) -> bool:
        """Hold BATCH back, at most ``coming.WAIT``, while writes the loop
        announced (``coming``) are still on their way, and add them as they
        are queued: one commit, one flush, one turn of LMDB's lock for all.
        -> whether the stop marker came."""
        now = time.monotonic()
        deadline = now + _coming.WAIT
        while len(batch) < self._max_batch and self.coming.pending(now):
            try:
                nxt = self._queue.get(timeout=deadline - now)
            except queue.Empty:
                break
            if nxt is None:
                return True
            if nxt is not _KICK:
                batch.append(nxt)
            now = time.monotonic()
            if now >= deadline:
                break
        return False

    def _late_jobs(self, batch: list[_Job]) -> bool:
        """Add to BATCH the requests queued while ``begin`` waited for
        LMDB's write lock (another worker process held it, through its
        flush): they share this commit and its one flush instead of each
        waiting for the lock again.  -> whether BATCH grew."""
        grew = False
        while len(batch) < self._max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:             # the stop marker: back, for the loop
                self._queue.put(None)
                break
            if nxt is _KICK:            # a write_here's checkpoint request: the
                continue                # writer checks _checkpoint_due after the batch
            batch.append(nxt)
            grew = True
        return grew

    def _run_batch(self, batch: list[_Job], WriteTx, here: bool = False,
                   flat: bool = False) -> None:
        """Run BATCH in one write transaction, commit it, and have it made
        durable and acknowledged: by the sync thread (``_Syncer``), or
        HERE, by the calling thread, before this returns (write_here)."""
        # A batch of one request (a lone client's STORE) runs straight in the
        # transaction: its failure aborts the whole of it.  Several requests
        # run each in a nested transaction, so one failing spoils no other;
        # or, FLAT (write_here_many: APPENDs, which seldom fail), all straight
        # in the transaction, and if one fails, the transaction is aborted
        # and the batch runs again the nested way (a nested transaction
        # costs LMDB a 2 MB dirty-page list, allocated and freed: mmap,
        # page faults, munmap, ~20 µs a request).
        if self._broken is not None:
            err = StoreError(f"the mail store could not make a commit durable "
                             f"({self._broken}); restart the server")
            for job in batch:
                self._complete(job, None, err)
            return
        single = len(batch) == 1
        logged = self.redo is not None
        names = self._names
        gate = self._gate
        for attempt in range(8):
            results: list[tuple[Any, BaseException | None]] = []
            changes: list[tuple[int, Change]] = []
            ops: list = []
            switch = None
            try:
                gate.enter()
                try:
                    txn = self.env.begin(write=True)
                    tid = txn.id()
                    if attempt == 0 and not self._queue.empty() and self._late_jobs(batch):
                        single = False
                    nest = not single and not flat
                    try:
                        for job in batch:
                            sub = self.env.begin(write=True, parent=txn) if nest else txn
                            if logged:
                                sub = redolog.LoggedTxn(sub, names)
                            tx = WriteTx(self, sub)
                            try:
                                res = job.fn(tx, *job.args)
                            except lmdb.MapFullError:
                                if nest:
                                    sub.abort()
                                raise
                            except Exception as exc:  # the request's own failure
                                if single:
                                    txn.abort()
                                    txn = None
                                elif nest:
                                    sub.abort()
                                else:
                                    raise _Unflatten from exc
                                results.append((None, exc))
                                continue
                            tx.flush_changes()
                            if nest:
                                sub.commit()
                            if logged:
                                ops.extend(sub.ops)
                            results.append((res, None))
                            changes.extend(tx._flushed)
                        if txn is not None:
                            switch = self._log_commit(txn, ops)
                    except BaseException:
                        if txn is not None:
                            txn.abort()
                        raise
                finally:
                    gate.leave()
            except lmdb.MapFullError:
                self._grow()
                continue
            except lmdb.MapResizedError:
                self._adopt_map_size()
                continue
            except _Unflatten:          # (the transaction was aborted)
                self.stats["unflattened"] = self.stats.get("unflattened", 0) + 1
                flat = False
                continue
            except (lmdb.Error, OSError, StoreError) as exc:  # OSError: the redo log
                log.error("store commit failed: %s", exc)
                err = StoreFullError(
                    f"the mail store could not commit ({exc}); nothing was written. "
                    "Free disk space on the data directory's file system.")
                for job in batch:
                    self._complete(job, None, err)
                return
            self.stats["commits"] += 1
            self.stats["jobs"] += len(batch)
            if not logged:             # LMDB synced the commit itself
                self._acknowledge(batch, results, changes)
                return
            # the flush must cover this commit, or (nothing written) the
            # snapshot its requests read, which may not be durable yet
            item = _Durable(batch, results, changes, tid if ops and txn is not None else tid - 1,
                            switch)
            syncer = self._syncer
            if (here or syncer is None
                    or (syncer.idle() and self._queue.empty()
                        and not self.coming.pending(time.monotonic()))):
                # nothing to run beside the flush: flush here, without the
                # hand-off to the sync thread
                self._make_durable([item], here=True)
            else:
                syncer.add(item)
            return
        err = StoreFullError("the mail store map could not grow far enough")
        for job in batch:
            self._complete(job, None, err)

    def _acknowledge(self, batch: list[_Job], results: list, changes: list) -> None:
        # acknowledge first (the writers are waiting on a network reply),
        # then tell the subscribers (IDLE/push fan-out can be large)
        with self._completing():
            for job, (res, err) in zip(batch, results):
                self._complete(job, res, err)
            info = CommitInfo(changes, len(batch))
            for hook in self.on_commit:
                try:
                    hook(info)
                except Exception:
                    log.exception("commit hook failed")

    def _flush_to(self, need: int) -> None:
        """Every commit up to transaction NEED durable: at once if the
        shared mark says a flush (of any process) already covered it, else
        after an fdatasync of the log, which covers every record written
        before it (each commit's, in every process, is written before that
        commit, under LMDB's writer lock): the mark then moves to the last
        transaction committed before the flush began."""
        rl = self.redo
        mark = rl.mark
        if need <= mark.get():
            self.stats["flush_skipped"] = self.stats.get("flush_skipped", 0) + 1
            return
        last = self.env.info()["last_txnid"]
        self.stats["flushes"] = self.stats.get("flushes", 0) + 1
        rl.flush()
        mark.advance(max(need, last))

    def _make_durable(self, items: list[_Durable], here: bool = False) -> None:
        """Flush the log once for ITEMS (commits, in commit order), then
        acknowledge them and run the commit hooks (the bus: IDLE and JMAP
        pushes go out only once durable), and hand a switch's checkpoint
        to the checkpoint thread (it starts once the NEXT record is
        durable).  On the sync thread, or HERE: write_here's caller, whose
        flush covers the sync thread's pending commits too; it waits for
        their acknowledgements before its own (commit order).  A failed
        flush fails the requests and every later write: the page cache may
        have dropped the pages it could not write (fdatasync reports that
        once), so nothing written since can be trusted to the disk."""
        err = None
        if self._broken is not None:
            err = self._broken
        else:
            try:
                self._flush_to(items[0].need if len(items) == 1 else
                               max(it.need for it in items))
            except OSError as exc:
                log.critical("store %s: the redo log's flush failed (%s): no more writes "
                             "until a restart", self.path, exc)
                self._broken = err = exc
        syncer = self._syncer
        if here and syncer is not None and not syncer.idle():
            syncer.drain()
        for it in items:
            if it.switch is not None:
                header, pin = it.switch
                if err is None:
                    self._ckpt.submit(header, pin)
                else:
                    pin.abort()
                self._switching = False
            if err is None:
                if it.batch:
                    self._acknowledge(it.batch, it.results, it.changes)
            else:
                fail = StoreError(f"the mail store could not make a commit durable ({err}); "
                                  "restart the server")
                for job in it.batch:
                    self._complete(job, None, fail)

    def _reader_flush(self, txnid: int) -> None:
        """A read snapshot at TXNID, newer than the durable mark: flush the
        log first (``READ_DURABLE``)."""
        rl = self.redo
        if rl is None:
            return
        self.stats["reader_flushes"] = self.stats.get("reader_flushes", 0) + 1
        rl.flush()
        rl.mark.advance(txnid)

    # --- change-log retention -------------------------------------------------------

    def _migrate_v1(self, txn) -> bytes:
        """Format 1 kept one JSON change row per modseq: rewrite it as the
        per-object log (store/changelog.py), in the opening transaction."""
        from .changelog import migrate_v1
        n = migrate_v1(WriteTx(self, txn), int(time.time()))
        ver = str(keys.DATA_VERSION).encode()
        txn.put(b"data_version", ver, db=self.db["meta"])
        log.info("store format 1 -> %d: migrated %d change-log entries", keys.DATA_VERSION, n)
        return ver

    def _idle_timeout(self) -> float | None:
        if self._prune_due:
            return PRUNE_IDLE
        t = self._sweep_timeout()
        if self.redo is not None and self._owner:
            # its own records: a checkpoint once idle; none: a look at the
            # shared log every REDO_POLL (other workers' records, _idle_work)
            wait = REDO_IDLE if self._redo_tail > redolog.RECORDS_AT else REDO_POLL
            t = wait if t is None else min(t, wait)
        return t

    def _sweep_timeout(self) -> float | None:
        if not self.retention.sweep_interval:
            return None
        return max(0.0, self._next_sweep - time.monotonic())

    def _sweep(self, WriteTx) -> None:
        """Prune the change log by age (and any size excess left over), one
        slice per transaction, until done or a request is waiting."""
        from . import changelog

        while True:
            start = self._sweep_from or 0
            try:
                nxt = self._unsynced_write(WriteTx, lambda tx: changelog.sweep(
                    tx, self.retention, int(time.time()), start))
            except (lmdb.Error, OSError) as exc:  # OSError: the redo log
                log.error("change-log pruning failed: %s", exc)
                nxt = None
            self._sweep_from = nxt
            if nxt is None or not self._queue.empty():
                break
        # a full pass done: wait an interval; cut short: continue soon
        delay = self.retention.sweep_interval if self._sweep_from is None else 0.05
        self._next_sweep = time.monotonic() + delay

    def _unsynced_write(self, WriteTx, fn):
        """``fn(tx)`` in a write transaction of its own on the writer thread,
        for housekeeping nobody waits on (change-log sweep and pruning): its
        redo record is synced with the next one.  Retried after the map grew
        or moved; -> fn's result (lmdb.Error, OSError raised)."""
        while True:
            try:
                with self._gate.reading():
                    txn = self.env.begin(write=True)
                    try:
                        wtxn = txn if self.redo is None else redolog.LoggedTxn(txn, self._names)
                        res = fn(WriteTx(self, wtxn))
                        tid = txn.id()
                        self._log_commit(txn, getattr(wtxn, "ops", []), sync=False)
                        self._unsynced_tid = tid
                        return res
                    except BaseException:
                        txn.abort()
                        raise
            except lmdb.MapFullError:
                self._grow()
            except lmdb.MapResizedError:
                self._adopt_map_size()

    def prune_later(self, acc: int, urgent: int) -> None:
        """A request left ACC's change log over its size limit: prune it
        down to the limit after the acknowledgement, in the writer's idle
        time, and URGENT entries of it (the log is past its hard limit)
        before the next request (writer thread only)."""
        self._prune_due[acc] = self._prune_due.get(acc, 0) + urgent

    def _prune_state(self) -> tuple[int, int]:
        """(accounts with pruning due, of which urgent): what a write_here
        compares to tell whether it made pruning due and must wake the writer."""
        due = self._prune_due
        return (len(due), sum(1 for n in due.values() if n)) if due else (0, 0)

    def _prune(self, WriteTx, idle: bool) -> None:
        """The size pruning requests made due, a slice per transaction (its
        redo record synced with the next).  Not IDLE: the urgent entries
        only (changelog.write: the log past its hard limit).  IDLE: each
        account down to its limit, stopping when a request waits."""
        from . import changelog

        due = self._prune_due
        for acc in list(due):
            while acc in due:
                urgent = due[acc]
                if not idle and not urgent:
                    break
                step = max(1, self.retention.slice)
                if urgent:
                    step = min(step, urgent)
                try:
                    spent, more = self._unsynced_write(WriteTx, lambda tx: changelog.prune(
                        tx, acc, self.retention, int(time.time()), step))
                except (lmdb.Error, OSError) as exc:  # OSError: the redo log
                    log.error("change-log pruning failed: %s", exc)
                    due.clear()       # the next write over the limit asks again
                    return
                if not more:
                    del due[acc]      # within the limit (or only the newest modseq left)
                else:
                    due[acc] = max(0, urgent - spent)
                if idle and not self._queue.empty():
                    return
        if idle and not due and self._queue.empty():
            self._flush_unsynced()

    def _flush_unsynced(self) -> None:
        """Flush the log behind the housekeeping commits just made (idle
        pruning), here on the writer thread, when nothing waits: else the
        loop's next read snapshot, newer than the durable mark, would
        flush it itself before its answer (READ_DURABLE)."""
        mark = self._mark
        tid = self._unsynced_tid
        if mark is not None and self.redo is not None and tid > mark.get():
            self.redo.flush()
            mark.advance(tid)

    def prune_changes(self, now: int | None = None) -> None:
        """Run the age/size pruning to completion now (tools and tests); one
        write request per slice, so other writes interleave."""
        from . import changelog

        when = int(time.time()) if now is None else now
        start: int | None = 0
        while start is not None:
            start = self.write_sync(
                lambda tx, s: changelog.sweep(tx, self.retention, when, s), start)

    def _completing(self):
        """The block the writer completes a commit's requests and runs its
        hooks in (``around_completions``, or nothing)."""
        around = self.around_completions
        return around() if around is not None else contextlib.nullcontext()

    @staticmethod
    def _complete(job: _Job, res, err) -> None:
        try:
            job.done(res, err)
        except Exception:
            log.exception("write completion callback failed")

    def _adopt_map_size(self) -> None:
        """Another process (a worker, server/workers.py) grew the map past
        ours: take its size (no transaction of ours may be open)."""
        with self._gate.exclusive():
            self.env.set_mapsize(0)
            self._map_size = max(self._map_size, self.env.info()["map_size"])

    def _grow(self) -> None:
        with self._gate.exclusive():
            # another process may have grown it already: double the larger
            self._map_size = max(self._map_size, self.env.info()["map_size"]) * 2
            log.info("growing the LMDB map to %d MiB", self._map_size >> 20)
            self.env.set_mapsize(self._map_size)


# --- read snapshots ------------------------------------------------------------------
# Plain context-manager classes, not @contextmanager generators: every IMAP
# command opens one or more views, and the generator machinery (three nested
# generators and two Condition enters per view) was ~5% of the event loop.
# The reader count is the _Gate's (readers share; map growth waits for zero).


def _read_begin(store: "LmdbStore", durable: bool = True):
    """Count a reader in the gate and begin a read txn; retries after another
    process grew the map (lmdb.MapResizedError).  DURABLE (``READ_DURABLE``):
    a snapshot newer than the shared durable mark flushes the redo log
    first, so that what it shows survives a power cut."""
    gate = store._gate
    cond = gate._cond
    while True:
        cond.acquire()
        try:
            while gate._resizing:
                cond.wait()
            gate._readers += 1
        finally:
            cond.release()
        try:
            txn = store.env.begin(write=False, buffers=True)
        except lmdb.MapResizedError:
            _read_end(gate)
            store._adopt_map_size()
            continue
        except BaseException:
            _read_end(gate)
            raise
        mark = store._mark
        if mark is not None and durable and READ_DURABLE:
            try:
                tid = txn.id()
                if tid > mark.get():
                    store._reader_flush(tid)
            except BaseException:
                txn.abort()
                _read_end(gate)
                raise
        return txn


def _read_end(gate: _Gate) -> None:
    cond = gate._cond
    cond.acquire()
    try:
        gate._readers -= 1
        if not gate._readers and gate._resizing:
            cond.notify_all()     # only map growth waits for the readers to leave
    finally:
        cond.release()


class _Read:
    """``with store.read() as txn``: one read transaction."""

    __slots__ = ("_store", "_txn", "_durable")

    def __init__(self, store: "LmdbStore", durable: bool = True):
        self._store = store
        self._txn = None
        self._durable = durable

    def __enter__(self):
        self._txn = txn = _read_begin(self._store, self._durable)
        return txn

    def __exit__(self, *exc) -> None:
        txn, self._txn = self._txn, None
        try:
            txn.abort()
        finally:
            _read_end(self._store._gate)


class _ReadView(_Read):
    """``with store.view() as v``: a read transaction as a store.view.View."""

    __slots__ = ()

    def __enter__(self):
        self._txn = txn = _read_begin(self._store, self._durable)
        return _View(self._store, txn)


from .view import View as _View  # noqa: E402  (view.py imports nothing from here)
