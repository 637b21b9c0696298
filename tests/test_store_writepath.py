"""The write path's plumbing (issue 10): the writer's one-request batch, the
bulk writes' redo-log records, and the hop from the writer thread onto the
Trio loop (mailaccess/loophop.py, storeio.write)."""
from __future__ import annotations

import threading

import pytest
import trio

from mailaccess import loophop, storeio
from mailaccess.store import keys, redolog
from mailaccess.store.lmdb_store import LmdbStore

from test_redolog_background import Hold


@pytest.fixture
def store(tmp_path):
    s = LmdbStore(tmp_path / "store")
    s.start()
    yield s
    s.close()


def _kw(i: int) -> bytes:
    return keys.account_prefix(7) + b"k%03d" % i


def test_put_many_and_delete_many_write_and_log_what_single_writes_do(store):
    """put_many / delete_many (the bulk STORE's writes) leave the same table
    and the same redo-log ops as the one-by-one puts and deletes."""
    def bulk(tx):
        tx.put_many("kw", [(_kw(i), b"v%d" % i) for i in range(10)])
        tx.put_many("kw", [(_kw(20), b"x")])
        tx.delete_many("kw", [_kw(3), _kw(5), _kw(99)])     # 99: absent, not logged
        # through a cursor: out of order, neighbours, absent ones
        tx.delete_many("kw", [_kw(8), _kw(7), _kw(98), _kw(0), _kw(1), _kw(97), _kw(20)])
        return list(tx._ops)

    def single(tx):
        for i in range(10):
            tx.put("kw", _kw(i), b"v%d" % i)
        tx.put("kw", _kw(20), b"x")
        for i in (3, 5, 99, 8, 7, 98, 0, 1, 97, 20):
            tx.delete("kw", _kw(i))
        return list(tx._ops)

    ops_bulk = store.write_sync(bulk)
    with store.view() as v:
        after_bulk = [(bytes(k), bytes(val)) for k, val in v._scan("kw", keys.account_prefix(7))]
    store.write_sync(lambda tx: tx.delete_many("kw", [_kw(i) for i in range(30)]))
    ops_single = store.write_sync(single)
    with store.view() as v:
        after_single = [(bytes(k), bytes(val)) for k, val in v._scan("kw", keys.account_prefix(7))]
    assert [(k, t, bytes(a), bytes(b)) for k, t, a, b in ops_bulk] == \
        [(k, t, bytes(a), bytes(b)) for k, t, a, b in ops_single]
    assert len(after_bulk) == 4 and after_bulk == after_single
    assert redolog.decode_ops(redolog.encode_ops(ops_bulk)) == \
        [(k, t, bytes(a), bytes(b)) for k, t, a, b in ops_bulk]


def test_a_lone_failing_request_writes_nothing(store):
    """A batch of one runs without a nested transaction: its failure must
    still take back every write it made, and the next write goes through."""
    def fails(tx):
        tx.put("kw", _kw(1), b"half")
        raise ValueError("no")

    with pytest.raises(ValueError):
        store.write_sync(fails)
    with store.view() as v:
        assert v._get("kw", _kw(1)) is None
    store.write_sync(lambda tx: tx.put("kw", _kw(2), b"ok"))
    with store.view() as v:
        assert v._get("kw", _kw(1)) is None and bytes(v._get("kw", _kw(2))) == b"ok"


class _Token:
    def __init__(self):
        self.calls = []

    def run_sync_soon(self, fn, *args):
        self.calls.append((fn, args))


def test_hop_wakes_the_loop_once_per_burst_and_keeps_the_order():
    tok = _Token()
    hop = loophop.Hop(tok)
    seen = []
    t = threading.Thread(target=lambda: [hop.call(seen.append, i) for i in range(5)])
    t.start()
    t.join()
    assert len(tok.calls) == 1 and seen == []
    fn, args = tok.calls[0]
    fn(*args)
    assert seen == [0, 1, 2, 3, 4]
    hop.call(seen.append, 5)          # after the loop ran them: a new wake-up
    assert len(tok.calls) == 2


def test_hop_after_the_run_finished_drops_calls():
    class Finished:
        def run_sync_soon(self, fn, *args):
            raise trio.RunFinishedError

    hop = loophop.Hop(Finished())
    hop.call(print, "never")
    hop.call(print, "never")          # not left armed: it tries again, and drops again


async def test_write_lands_and_answers_even_when_the_caller_is_cancelled(store):
    """A queued write is not cancelled with its caller: it lands, and the
    caller gets its result (the cancel takes effect afterwards)."""
    gate = threading.Event()

    def slow(tx):
        gate.wait(5)
        tx.put("kw", _kw(9), b"landed")
        return "done"

    got = []
    with trio.move_on_after(0.05) as scope:
        trio.lowlevel.current_trio_token().run_sync_soon(lambda: None)
        threading.Timer(0.3, gate.set).start()
        got.append(await storeio.write(store, slow))
    assert got == ["done"]
    with store.view() as v:
        assert bytes(v._get("kw", _kw(9))) == b"landed"
    assert scope.cancel_called


def test_batched_holds_a_threads_calls_until_the_end_of_the_block():
    tok = _Token()
    hop = loophop.Hop(tok)
    seen = []

    def writer():
        with loophop.batched():
            for i in range(3):
                hop.call(seen.append, i)
            assert tok.calls == []        # nothing woken inside the block
    t = threading.Thread(target=writer)
    t.start()
    t.join()
    assert len(tok.calls) == 1
    fn, args = tok.calls[0]
    fn(*args)
    assert seen == [0, 1, 2]


def test_a_commits_acknowledgements_and_hooks_run_inside_around_completions(store):
    """The writer completes a commit's requests and runs its hooks (the bus)
    inside one ``around_completions`` block (storeio: loophop.batched, one
    loop wake-up per commit)."""
    import contextlib

    inside = []
    depth = [0]
    log = []

    @contextlib.contextmanager
    def around():
        depth[0] += 1
        log.append("enter")
        yield
        log.append("exit")
        depth[0] -= 1

    store.around_completions = around
    store.on_commit.append(lambda info: log.append(("hook", depth[0])))
    hold = threading.Event()
    done = threading.Event()
    store.submit(lambda tx: hold.wait(5), done=lambda r, e: None)
    for i in range(3):
        store.submit(lambda tx, i=i: tx.put("kw", _kw(50 + i), b"x"),
                     done=lambda r, e, i=i: (log.append(("done", depth[0])),
                                             i == 2 and done.set()))
    hold.set()
    assert done.wait(5)
    store.close()
    batch = log[log.index(("done", 1)) - 1:]
    assert batch[:5] == ["enter", ("done", 1), ("done", 1), ("done", 1), ("hook", 1)]
    assert batch[5] == "exit"


def _checkpoints(store) -> int:
    return store.stats.get("checkpoints", 0)


def _wait_for(pred, seconds: float = 10.0) -> bool:
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def _quiet_store(tmp_path, monkeypatch):
    """A store whose checkpoints come every REDO_MAX_COMMITS commits only."""
    from mailaccess.store import lmdb_store
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_POLL", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    s = LmdbStore(tmp_path / "store")
    s.start()
    s.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
    assert _wait_for(lambda: s._queue.empty() and not s._busy.locked())
    s._try_checkpoint()                 # (the writer is idle: count from a checkpoint)
    return s


def test_a_checkpoint_rides_on_a_commit_and_flushes_beside_the_writer(tmp_path, monkeypatch):
    """perf4: the commit that finds a checkpoint due switches the log to a
    new generation and is acknowledged at once; env.sync and the header
    run on the checkpoint thread.  Held at its first stage, the thread
    does not hold up the writes that follow (with the flushes back in the
    commit, the first write after REDO_MAX_COMMITS never returns)."""
    from mailaccess.store import lmdb_store
    s = _quiet_store(tmp_path, monkeypatch)
    try:
        base, gen = _checkpoints(s), s._tail_state()[0]
        gate = s.ckpt_hook = Hold("switched")
        syncs = []
        real = s.redo.on_sync
        s.redo.on_sync = lambda what: (syncs.append((what, threading.current_thread().name)),
                                       real and real(what))
        n = lmdb_store.REDO_MAX_COMMITS
        for i in range(n + 3):
            s.write_sync(lambda tx, i=i: tx.put("kw", _kw(i), b"v"))
        assert gate.reached.wait(30)
        assert s._tail_state()[0] == gen + 1 and _checkpoints(s) == base
        assert s.redo.header().generation == gen           # not durable yet
        gate.go.set()
        assert _wait_for(lambda: _checkpoints(s) == base + 1)
        assert s.redo.header().generation == gen + 1
        assert [st for st, _t in gate.seen] == ["switched", "synced", "header"]
        assert {t for _st, t in gate.seen} == {"store-checkpoint"}
        assert ("data", "store-checkpoint") in syncs and ("header", "store-checkpoint") in syncs
        # perf5: a commit's flush runs after LMDB's commit, on the writer
        # (nothing else to do) or the sync thread; never the checkpoint's
        assert {t for what, t in syncs if what == "log"} <= {"store-writer", "store-sync"}
        with s.read() as txn:
            assert bytes(txn.get(_kw(n + 2), db=s.db["kw"])) == b"v"
    finally:
        s.close()


def test_no_second_checkpoint_starts_while_one_is_in_flight(tmp_path, monkeypatch):
    """The log switches to generation g + 2 only once header g + 1 is
    written (recovery from header g goes through one NEXT record, and the
    pin of g is released only then); meanwhile the writes go on in g + 1,
    up to REDO_MAX_BEHIND of them: the next one waits for the checkpoint
    (two pins hold pages back while it runs), then switches."""
    from mailaccess.store import lmdb_store
    s = _quiet_store(tmp_path, monkeypatch)
    try:
        base, gen = _checkpoints(s), s._tail_state()[0]
        gate = s.ckpt_hook = Hold("synced")
        n = lmdb_store.REDO_MAX_COMMITS
        for i in range(n + lmdb_store.REDO_MAX_BEHIND):
            s.write_sync(lambda tx, i=i: tx.put("kw", _kw(i), b"v"))
        assert gate.reached.wait(30)
        assert s._tail_state()[0] == gen + 1 and _checkpoints(s) == base
        waited = threading.Event()
        real_wait = s._ckpt.wait
        s._ckpt.wait = lambda: (waited.set(), real_wait())
        t = threading.Thread(target=s.write_sync,
                             args=(lambda tx: tx.put("kw", _kw(99), b"v"),))
        t.start()
        assert waited.wait(30)          # the next write waits for the checkpoint
        gate.go.set()
        t.join(30)
        # the held checkpoint is done; the one the waiting write started when
        # it switched may be done too (under load it can finish before this
        # line: a full-suite run beside four helpers saw base + 2)
        assert base + 1 <= _checkpoints(s) <= base + 2
        assert s._tail_state()[0] == gen + 2      # and switches once it is done
        assert _wait_for(lambda: _checkpoints(s) == base + 2)
    finally:
        s.close()


def test_write_here_runs_a_small_write_in_the_callers_thread_when_the_writer_is_idle(store):
    """perf3 (storeio.write_small): with the writer idle, write_here runs the
    one-request batch in the calling thread: done() is called before it
    returns, after the redo record's flush, and the write is committed."""
    store.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))      # (the writer started)
    assert _wait_for(lambda: store._queue.empty() and not store._busy.locked())
    events = []
    store.redo.on_sync = lambda what: events.append(("sync", what))
    me = threading.current_thread()

    def fn(tx):
        events.append(("run", threading.current_thread() is me))
        tx.put("kw", _kw(1), b"here")
        return "result"

    assert store.write_here(fn, (), lambda r, e: events.append(("done", r, e)))
    store.redo.on_sync = None
    assert events[0] == ("run", True)
    assert events.index(("sync", "log")) < events.index(("done", "result", None))
    with store.view() as v:
        assert bytes(v._get("kw", _kw(1))) == b"here"


def test_write_here_leaves_the_write_to_the_writer_when_it_is_busy(store):
    """A batch (or checkpoint) under way, or requests queued: write_here
    does nothing (the caller submits), so it never overtakes a queued write
    nor waits for the writer."""
    store.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
    hold = threading.Event()
    inside = threading.Event()
    store.submit(lambda tx: (inside.set(), hold.wait(5)), done=lambda r, e: None)
    assert inside.wait(5)
    ran = []
    assert not store.write_here(lambda tx: ran.append(1), (), lambda r, e: None)
    store.submit(lambda tx: None, done=lambda r, e: None)      # queued behind the batch
    assert not store.write_here(lambda tx: ran.append(1), (), lambda r, e: None)
    hold.set()
    assert ran == []
    assert _wait_for(lambda: store._queue.empty() and not store._busy.locked())
    # a request queued and not yet taken (the writer waits on the old queue)
    import queue as queue_
    real, store._queue = store._queue, queue_.SimpleQueue()
    store._queue.put(object())
    assert not store.write_here(lambda tx: ran.append(1), (), lambda r, e: None)
    store._queue = real
    assert store.write_here(lambda tx: ran.append(1), (), lambda r, e: None) and ran == [1]


def test_a_checkpoint_made_due_by_write_here_flushes_on_the_checkpoint_thread(
        tmp_path, monkeypatch):
    """write_here (a caller's thread) switches the log when a checkpoint is
    due, like the writer; the flushes run on the checkpoint thread, and no
    synchronous checkpoint runs anywhere."""
    from mailaccess.store import lmdb_store
    s = _quiet_store(tmp_path, monkeypatch)
    try:
        base, gen = _checkpoints(s), s._tail_state()[0]
        gate = s.ckpt_hook = Hold()
        sync_ckpt = []
        real = s._checkpoint
        monkeypatch.setattr(s, "_checkpoint", lambda *a: (sync_ckpt.append(1), real(*a)))
        for i in range(lmdb_store.REDO_MAX_COMMITS + 1):
            assert _wait_for(lambda: s._queue.empty() and not s._busy.locked())
            assert s.write_here(lambda tx, i=i: tx.put("kw", _kw(i), b"v"), (),
                                lambda r, e: None)
        assert _wait_for(lambda: _checkpoints(s) == base + 1)
        assert s._tail_state()[0] == gen + 1
        assert {t for _st, t in gate.seen} == {"store-checkpoint"} and sync_ckpt == []
    finally:
        s.close()


async def test_write_small_raises_the_writes_error_and_publishes_its_commit(store):
    """storeio.write_small, run by the loop itself: a failing request raises
    and leaves nothing; a commit's hooks (the bus) run before it returns."""
    store.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
    assert _wait_for(lambda: store._queue.empty() and not store._busy.locked())
    here = []
    real = store.write_here
    store.write_here = lambda *a: here.append(real(*a)) or here[-1]
    seen = []
    store.on_commit.append(lambda info: loophop.current().call(seen.append, info.batch_size))

    def fails(tx):
        tx.put("kw", _kw(3), b"half")
        raise ValueError("no")

    with pytest.raises(ValueError):
        await storeio.write_small(store, fails)
    assert seen == [1]           # (the writer runs the hooks after a failed batch too)
    assert await storeio.write_small(store, lambda tx: tx.put("kw", _kw(4), b"y") or "ok") == "ok"
    assert here == [True, True] and seen == [1, 1]      # run before it returned
    with store.view() as v:
        assert v._get("kw", _kw(3)) is None and bytes(v._get("kw", _kw(4))) == b"y"


def test_loop_idle_says_what_the_run_statistics_say():
    """storeio._loop_idle (the run queue's length, read directly) agrees
    with trio's public tasks_runnable, with and without a task ready."""
    seen = []

    async def main():
        async def other():
            await trio.sleep(0)

        seen.append((storeio._loop_idle(),
                     trio.lowlevel.current_statistics().tasks_runnable == 0))
        async with trio.open_nursery() as n:
            n.start_soon(other)         # ready to run, not run yet
            seen.append((storeio._loop_idle(),
                         trio.lowlevel.current_statistics().tasks_runnable == 0))

    trio.run(main)
    assert seen == [(True, True), (False, False)]
