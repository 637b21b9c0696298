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


@pytest.mark.parametrize("after_ack", [True, False])
def test_a_due_checkpoint_runs_after_the_acknowledgement_when_nothing_waits(
        tmp_path, monkeypatch, after_ack):
    """perf2: a lone client's write no longer waits for the checkpoint its
    predecessor made due; the writer runs it right after acknowledging,
    before any next request (without it: only at the next request, or when
    idle for REDO_IDLE, here an hour)."""
    from mailaccess.store import lmdb_store
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    monkeypatch.setattr(lmdb_store, "CHECKPOINT_AFTER_ACK", after_ack)
    s = LmdbStore(tmp_path / "store")
    s.start()
    # no background flush: one still running would put the checkpoint off
    # (test_a_checkpoint_waits_for_the_background_flush), not what is tested here
    s._presync.stop()
    s._presync = None
    try:
        s.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
        # the first write after opening may checkpoint: count from here
        assert _wait_for(lambda: s._queue.empty())
        base, commits = _checkpoints(s), s._redo_commits
        # each checkpoint notes whether the next request had been submitted
        # yet: ordering, not time, tells the two placements apart
        submitted = [False]
        seen = []
        real = s._try_checkpoint

        def spy():
            seen.append(submitted[0])
            real()

        monkeypatch.setattr(s, "_try_checkpoint", spy)
        for i in range(lmdb_store.REDO_MAX_COMMITS - commits):
            s.write_sync(lambda tx, i=i: tx.put("kw", _kw(i), b"v"))
        if after_ack:
            assert _wait_for(lambda: seen)           # (a hang guard: it comes with no request)
        submitted[0] = True
        s.write_sync(lambda tx: tx.put("kw", _kw(99), b"v"))
        # after the acknowledgement, before any next request; or only in
        # front of the next request.  One either way, never two.
        assert seen == [not after_ack]
        assert _checkpoints(s) == base + 1
        with s.read() as txn:
            assert bytes(txn.get(_kw(99), db=s.db["kw"])) == b"v"
    finally:
        s.close()


class _FakePresync:
    def __init__(self):
        self.kicks = []
        self.running = False

    def kick(self):
        self.kicks.append(self.commits())

    def busy(self):
        return self.running

    def stop(self):
        pass


def test_a_checkpoint_waits_for_the_background_flush(tmp_path, monkeypatch):
    """perf3: the background flush runs half-way and again a commit before
    the checkpoint; a checkpoint that comes due while it still runs waits
    for a later commit (not behind it on the writer, in the next request's
    way), for at most another interval."""
    from mailaccess.store import lmdb_store
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    n = lmdb_store.REDO_MAX_COMMITS
    s = LmdbStore(tmp_path / "store")
    s.start()
    s._presync.stop()
    fake = s._presync = _FakePresync()
    fake.commits = lambda: s._redo_commits
    try:
        s.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
        assert _wait_for(lambda: s._queue.empty())
        s._try_checkpoint()                 # (the writer is idle: count from a checkpoint)
        base = _checkpoints(s)
        fake.kicks.clear()
        fake.running = True                 # the first flush never ends
        for i in range(2 * n - 1):
            s.write_sync(lambda tx, i=i: tx.put("kw", _kw(i), b"v"))
        assert _checkpoints(s) == base      # put off while the flush runs
        assert fake.kicks == [n // 2]       # (no second one while the first runs)
        s.write_sync(lambda tx: tx.put("kw", _kw(98), b"v"))
        assert _wait_for(lambda: _checkpoints(s) == base + 1)   # at twice the interval
        # the flush done: kicked half-way and a commit before; the
        # checkpoint at the interval
        fake.kicks.clear()
        fake.running = False
        for i in range(n):
            s.write_sync(lambda tx, i=i: tx.put("kw", _kw(i), b"w"))
        assert _wait_for(lambda: _checkpoints(s) == base + 2)
        assert fake.kicks == [n // 2, n - 1]
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


def test_a_checkpoint_made_due_by_write_here_runs_on_the_writer_thread(tmp_path, monkeypatch):
    from mailaccess.store import lmdb_store
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    s = LmdbStore(tmp_path / "store")
    s.start()
    s._presync.stop()
    s._presync = None
    try:
        s.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
        assert _wait_for(lambda: s._queue.empty() and not s._busy.locked())
        s._try_checkpoint()
        base = _checkpoints(s)
        threads = []
        real = s._checkpoint
        monkeypatch.setattr(s, "_checkpoint",
                            lambda *a: (threads.append(threading.current_thread().name),
                                        real(*a)))
        for i in range(lmdb_store.REDO_MAX_COMMITS):
            assert _wait_for(lambda: s._queue.empty() and not s._busy.locked())
            assert s.write_here(lambda tx, i=i: tx.put("kw", _kw(i), b"v"), (),
                                lambda r, e: None)
        assert _wait_for(lambda: _checkpoints(s) == base + 1)
        assert threads == ["store-writer"]
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
