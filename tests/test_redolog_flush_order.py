"""The log's flush after LMDB's commit (perf5): acknowledged still means durable.

A write transaction now writes its redo record and commits under LMDB's
writer lock, releases it, and only then fdatasyncs the log; its requests
are acknowledged (and the bus told) after that flush, or after a flush that
began later, of any thread or process (the shared durable mark).  The tests
hold a commit between its LMDB commit and its flush and build power-loss
images there with the power-loss test's model (tests/test_store_powerloss.py:
each file as of the start of its last completed flush, plus some of the
pages written since):

* a commit whose flush has not run is not acknowledged, and may be there
  after the power cut or not; once acknowledged it is always there;
* a commit whose own flush finds the mark past it (a reader's flush covered
  it) is acknowledged without flushing, and is there;
* a read snapshot never holds a commit that is not durable (it flushes);
* a switch's checkpoint starts only once the switch's record is durable;
* a checkpoint's flushes running while a commit waits for its own flush
  lose nothing;
* a failed flush fails its requests and every later write.
"""
from __future__ import annotations

import random
import threading

import pytest

from mailaccess import ingest
from mailaccess.store import StoreError, lmdb_store, ops, redolog

from test_redolog_background import Hold, _recovery_path
from test_store_powerloss import _images, _msg, open_watched, verify_images
from test_store_writepath import _wait_for


class FlushGate:
    """Wraps ``RedoLog.flush``: while armed, a flush of the log ("log")
    made by a thread other than the test's own waits, before it starts, until
    released; the flushes run are noted with their thread's name."""

    def __init__(self, st):
        self.real = st.redo.flush
        self.main = threading.get_ident()
        self.armed = False
        self.reached = threading.Event()
        self.go = threading.Event()
        self.seen: list[tuple[str, str]] = []
        st.redo.flush = self

    def arm(self) -> None:
        self.reached.clear()
        self.go.clear()
        self.armed = True

    def release(self) -> None:
        self.armed = False
        self.go.set()

    def __call__(self, what: str = "log") -> None:
        if what == "log" and self.armed and threading.get_ident() != self.main:
            self.reached.set()
            assert self.go.wait(60)
        self.seen.append((what, threading.current_thread().name))
        self.real(what)


def _append(st, acc, ib, i: int, box: list) -> None:
    st.submit(ops.append, acc, [ib], ingest.prepare(_msg(i)),
              done=lambda r, e: box.append((r, e)))


def _quiet(monkeypatch) -> None:
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_POLL", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)


def _watched(tmp_path, monkeypatch, seed: int):
    """A watched store (checkpoints only every REDO_MAX_COMMITS commits)
    with its flushes gated -> (rng, path, store, disk, account, inbox, gate)."""
    _quiet(monkeypatch)
    path = str(tmp_path / "store")
    st, disk, acc, ib = open_watched(path)
    return random.Random(seed), path, st, disk, acc, ib, FlushGate(st)


def test_a_commit_waiting_for_its_flush_is_not_acknowledged_and_may_vanish(
        tmp_path, monkeypatch):
    rng, path, st, disk, acc, ib, gate = _watched(tmp_path, monkeypatch, 20261205)
    checks = []
    try:
        model: dict[str, list[str]] = {}
        for i in range(6):
            st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(i)))
            model[f"{i}@pl.test"] = []
        for rnd in range(3):
            i = 100 + rnd
            gate.arm()
            box: list = []
            _append(st, acc, ib, i, box)
            assert gate.reached.wait(30)
            # committed in LMDB (a look that skips the durable check sees it),
            # written to the log, not flushed: not acknowledged
            with st.view(durable=False) as v:
                assert len(v.uids(acc, ib)) == len(model) + 1
            assert box == []
            with_it = dict(model, **{f"{i}@pl.test": []})
            for d in _images(disk, path, str(tmp_path / f"pending{rnd}"), rng):
                checks.append((d, [model, with_it]))
            gate.release()
            assert _wait_for(lambda: box)
            assert box[0][1] is None
            model = with_it
            for d in _images(disk, path, str(tmp_path / f"acked{rnd}"), rng):
                checks.append((d, [model]))
    finally:
        gate.release()
        st.close()
    verify_images(checks)


def test_an_acknowledgement_whose_flush_another_one_covered_is_durable(tmp_path, monkeypatch):
    """The writer's flush finds the shared mark past its commit (here a
    reader's flush moved it; another worker's does the same): it
    acknowledges without flushing again, and the write is durable."""
    rng, path, st, disk, acc, ib, gate = _watched(tmp_path, monkeypatch, 20261206)
    real_to = st._flush_to
    hold = threading.Event()
    at = threading.Event()

    def flush_to(need):
        if threading.get_ident() != gate.main and not hold.is_set():
            at.set()
            assert hold.wait(60)
        real_to(need)

    st._flush_to = flush_to
    checks = []
    try:
        box: list = []
        _append(st, acc, ib, 1, box)
        assert at.wait(30)                 # committed, its flush not begun
        n = len(gate.seen)
        with st.view() as v:               # a reader: its snapshot holds the commit
            assert len(v.uids(acc, ib)) == 1
        assert gate.seen[n:] == [("log", "MainThread")]      # it flushed
        assert st.redo.mark.get() >= st.env.info()["last_txnid"]
        hold.set()
        assert _wait_for(lambda: box) and box[0][1] is None
        assert gate.seen[n + 1:] == []     # acknowledged without a flush of its own
        for d in _images(disk, path, str(tmp_path / "covered"), rng):
            checks.append((d, [{"1@pl.test": []}]))
    finally:
        hold.set()
        st.close()
    verify_images(checks)


def test_a_reader_never_holds_a_commit_that_is_not_durable(tmp_path, monkeypatch):
    """READ_DURABLE: a snapshot newer than the durable mark flushes the log
    before it is used: what a session shows survives a power cut, even
    while the commit's own flush has not begun."""
    rng, path, st, disk, acc, ib, gate = _watched(tmp_path, monkeypatch, 20261207)
    checks = []
    try:
        gate.arm()
        box: list = []
        _append(st, acc, ib, 7, box)
        assert gate.reached.wait(30)
        with st.view() as v:
            shown = len(v.uids(acc, ib))
        assert shown == 1 and box == []
        # what the reader saw is on disk already, acknowledged or not
        for d in _images(disk, path, str(tmp_path / "shown"), rng):
            checks.append((d, [{"7@pl.test": []}]))
        gate.release()
        assert _wait_for(lambda: box)
    finally:
        gate.release()
        st.close()
    verify_images(checks)


def test_a_switch_checkpoint_starts_only_once_its_record_is_durable(tmp_path, monkeypatch):
    """The commit that switches the log to generation g + 1 hands its
    checkpoint over after the flush covering its NEXT record: when the
    checkpoint thread starts, the durable log already goes from header g on
    into g + 1 (with the hand-over before the flush, the thread runs while
    the flush is held)."""
    _quiet(monkeypatch)
    path = str(tmp_path / "store")
    st, disk, acc, ib = open_watched(path)
    st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(0)))
    st._try_checkpoint()       # (count from a checkpoint: the writer is idle)
    gen = st._tail_state()[0]
    seen_log: list[bytes] = []

    def hook(stage: str) -> None:
        if stage == "switched":
            seen_log.append(disk.durable()[1])

    st.ckpt_hook = hook
    gate = FlushGate(st)
    try:
        i = 1
        while st._tail_state()[0] == gen:
            if st._redo_commits >= lmdb_store.REDO_MAX_COMMITS:
                gate.arm()             # the next commit switches: hold its flush
            box: list = []
            _append(st, acc, ib, i, box)
            i += 1
            if gate.armed:
                assert gate.reached.wait(30)
                break
            assert _wait_for(lambda: box)
        assert st._tail_state()[0] == gen + 1 and box == []
        # (the checkpoint thread, were it started, gets time to reach its hook)
        st._ckpt.wait()
        threading.Event().wait(0.2)
        gate.release()
        assert _wait_for(lambda: box) and box[0][1] is None
        st._ckpt.wait()
        assert _wait_for(lambda: seen_log)
        got_gen, gens = _recovery_path(seen_log[0], tmp_path)
        assert got_gen == gen and gens and gens[-1] == gen + 1, (got_gen, gens)
    finally:
        gate.release()
        st.close()


def test_a_checkpoint_beside_a_commit_waiting_for_its_flush_loses_nothing(
        tmp_path, monkeypatch):
    """A background checkpoint flushes data.mdb and writes header g + 1
    while a later commit waits for its own flush (its record and pages
    written, not flushed): images there recover with or without that commit,
    and with it once it is acknowledged."""
    _quiet(monkeypatch)
    rng = random.Random(20261208)
    path = str(tmp_path / "store")
    st, disk, acc, ib = open_watched(path)
    model: dict[str, list[str]] = {}
    for i in range(3):
        st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(i)))
        model[f"{i}@pl.test"] = []
    st._try_checkpoint()
    gen = st._tail_state()[0]
    hold = st.ckpt_hook = Hold()
    gate = FlushGate(st)
    checks = []
    try:
        for stage in ("switched", "synced", "header"):
            hold.arm(stage)
            while st._tail_state()[0] == gen:       # until a commit switches the log
                i = len(model) + 10
                st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(i)))
                model[f"{i}@pl.test"] = []
            gen += 1
            assert hold.reached.wait(30)
            # the checkpoint held at STAGE; a commit waits for its flush
            gate.arm()
            box: list = []
            i = len(model) + 10
            _append(st, acc, ib, i, box)
            assert gate.reached.wait(30)
            hold.go.set()                            # the checkpoint goes on beside it
            hold.arm("never")
            st._ckpt.wait()
            with_it = dict(model, **{f"{i}@pl.test": []})
            for d in _images(disk, path, str(tmp_path / f"beside-{stage}"), rng):
                checks.append((d, [dict(model), dict(with_it)]))
            gate.release()
            assert _wait_for(lambda: box) and box[0][1] is None
            model = with_it
            for d in _images(disk, path, str(tmp_path / f"after-{stage}"), rng):
                checks.append((d, [dict(model)]))
    finally:
        hold.go.set()
        gate.release()
        st.close()
    verify_images(checks)


def test_a_failed_flush_fails_the_write_and_every_later_one(tmp_path):
    """fdatasync reports a lost page once: after a failed flush nothing
    written can be trusted to reach the disk, so the requests of that commit
    get an error (they were committed in memory: a restart recovers from
    the disk) and the store takes no more writes."""
    from mailaccess.store import Store

    st = Store(str(tmp_path / "store"), redo=True)
    st.start()
    try:
        acc = st.write_sync(ops.create_account, "alice", "x")
        with st.view() as v:
            ib = v.mailbox_by_role(acc, "inbox").id
        real = st.redo.flush
        calls = []

        def failing(what="log"):
            if what == "log" and not calls:
                calls.append(1)
                raise OSError(5, "Input/output error")
            return real(what)

        st.redo.flush = failing
        with pytest.raises(StoreError):
            st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(1)))
        with pytest.raises(StoreError):
            st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(2)))
        box = []
        assert st.write_here(lambda tx: None, (), lambda r, e: box.append(e))
        assert isinstance(box[0], StoreError)
    finally:
        st.close()
