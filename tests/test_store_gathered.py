"""APPENDs gathered on the loop and written there in one batch (perf7-append).

``storeio.write_gathered`` holds a write on the loop while other writes are
announced (``store.coming``: an APPEND whose literal is on its way), each
joining as it is ready; then all of them go in one batch, written by the
loop itself when the writer thread is idle (``LmdbStore.write_here_many``),
else queued for the writer.  What must hold: each write is answered only
once the redo log's flush covering its commit has completed; one failing
write spoils no other; a write that joined lands even when its caller (or
the one it joined) is cancelled; nothing is held back when nothing is
announced.  The announcements' limits are made long (an hour) where the
result must depend on the order of events alone: the waits here are hang
guards, not timing assertions.
"""
from __future__ import annotations

import threading

import pytest
import trio

from mailaccess import storeio
from mailaccess.store import coming, keys
from mailaccess.store.lmdb_store import LmdbStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(coming, "WAIT", 3600.0)
    monkeypatch.setattr(coming, "FRESH", 3600.0)
    s = LmdbStore(tmp_path / "store")
    s.start()
    s.write_sync(lambda tx: tx.put("kw", _key(0), b"x"))     # (the writer started)
    assert _idle(s)
    yield s
    s.close()


def _key(i: int) -> bytes:
    return keys.account_prefix(5) + b"gather%03d" % i


def _put(i: int, tag: bytes = b"v"):
    def fn(tx):
        tx.put("kw", _key(i), tag + b"%d" % i)
        return i
    return fn


def _idle(s, seconds: float = 10.0) -> bool:
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if s._queue.empty() and not s._busy.locked() and s._syncer.idle():
            return True
        time.sleep(0.005)
    return False


def _value(s, i: int):
    with s.view() as v:
        got = v._get("kw", _key(i))
        return None if got is None else bytes(got)


# --- the store: several writes in one batch, in the calling thread --------------------------

def test_write_here_many_writes_a_batch_in_the_callers_thread_answered_after_the_flush(store):
    events = []
    store.redo.on_sync = lambda what: what == "log" and events.append(("sync", what))
    me = threading.current_thread()
    commits = store.stats["commits"]

    def run(i):
        def fn(tx):
            events.append(("run", i, threading.current_thread() is me))
            return _put(i)(tx)
        return fn

    jobs = [(run(i), (), lambda r, e, i=i: events.append(("done", i, r, e))) for i in (1, 2, 3)]
    assert store.write_here_many(jobs)
    store.redo.on_sync = None
    assert store.stats["commits"] - commits == 1
    assert store.stats.get("unflattened", 0) == 0       # straight in the transaction
    assert [e for e in events if e[0] == "run"] == [("run", i, True) for i in (1, 2, 3)]
    # nothing else waited: the flush ran here, before any answer
    flush = events.index(("sync", "log"))
    assert all(events.index(("done", i, i, None)) > flush for i in (1, 2, 3))
    assert [_value(store, i) for i in (1, 2, 3)] == [b"v1", b"v2", b"v3"]


def test_a_failing_write_of_a_batch_spoils_no_other(store):
    """The batch runs straight in one transaction; a request failing there
    aborts it, and the batch runs again, each request in a nested
    transaction of its own: one commit, the others written once."""
    box = []
    commits = store.stats["commits"]

    def fails(tx):
        tx.put("kw", _key(8), b"half")
        raise ValueError("no")

    jobs = [(_put(7), (), lambda r, e: box.append((7, r, e))),
            (fails, (), lambda r, e: box.append((8, r, type(e)))),
            (_put(9), (), lambda r, e: box.append((9, r, e)))]
    assert store.write_here_many(jobs)
    assert sorted(box) == [(7, 7, None), (8, None, ValueError), (9, 9, None)]
    assert store.stats["unflattened"] == 1 and store.stats["commits"] - commits == 1
    assert (_value(store, 7), _value(store, 8), _value(store, 9)) == (b"v7", None, b"v9")


def test_write_here_many_leaves_the_writes_to_the_writer_when_it_is_busy(store):
    hold = threading.Event()
    inside = threading.Event()
    store.submit(lambda tx: (inside.set(), hold.wait(5)), done=lambda r, e: None)
    assert inside.wait(5)
    ran = []
    assert not store.write_here_many([(lambda tx: ran.append(1), (), lambda r, e: None)])
    hold.set()
    assert _idle(store) and ran == []


def test_a_batch_written_here_while_an_announced_write_is_on_its_way_flushes_on_the_sync_thread(
        store):
    """Something still to come (an announced APPEND): the flush goes to the
    sync thread, beside it, and the answers come from there, after it."""
    events = []
    store.redo.on_sync = lambda what: what == "log" and events.append(
        ("sync", what, threading.current_thread().name))
    done = threading.Event()
    store.coming.expect("another session")
    assert store.write_here_many([(_put(4), (), lambda r, e: (
        events.append(("done", r, threading.current_thread().name)), done.set()))])
    assert done.wait(30)
    store.coming.arrived("another session")
    store.redo.on_sync = None
    assert events[0] == ("sync", "log", "store-sync")
    assert events[1] == ("done", 4, "store-sync")


# --- storeio.write_gathered on the loop -------------------------------------------------------

async def test_a_write_waits_for_the_announced_one_and_both_share_a_commit(store):
    commits = store.stats["commits"]
    results = {}
    store.coming.expect("session 2")

    async def first():
        results[1] = await storeio.write_gathered(store, _put(1))

    async def second():
        await trio.sleep(0.05)              # "its literal arrives later"
        assert 1 not in results             # the first one is held for it
        store.coming.arrived("session 2")   # (as do_append, just before writing)
        results[2] = await storeio.write_gathered(store, _put(2))

    with trio.fail_after(30):               # a hang guard
        async with trio.open_nursery() as n:
            n.start_soon(first)
            n.start_soon(second)
    assert results == {1: 1, 2: 2}
    assert store.stats["commits"] - commits == 1
    assert (_value(store, 1), _value(store, 2)) == (b"v1", b"v2")


async def test_nothing_announced_nothing_held(store):
    commits = store.stats["commits"]
    with trio.fail_after(30):               # WAIT is an hour: it would hang if it waited
        assert await storeio.write_gathered(store, _put(1)) == 1
        assert await storeio.write_gathered(store, _put(2)) == 2
    assert store.stats["commits"] - commits == 2


async def test_a_write_announced_and_never_queued_holds_the_others_for_wait_only(
        store, monkeypatch):
    monkeypatch.setattr(coming, "WAIT", 0.01)
    store.coming.expect("fails before writing")
    with trio.fail_after(30):
        assert await storeio.write_gathered(store, _put(1)) == 1
    assert _value(store, 1) == b"v1"
    store.coming.arrived("fails before writing")


async def test_gathered_writes_are_answered_only_after_their_flush(store, monkeypatch):
    events = []
    store.redo.on_sync = lambda what: what == "log" and events.append("sync")
    real_done = storeio._hop_done

    def acknowledged(hop, p, result, error):       # the store answers a write
        events.append("ack")
        real_done(hop, p, result, error)

    monkeypatch.setattr(storeio, "_hop_done", acknowledged)
    store.coming.expect("b")
    store.coming.expect("c")

    async def write(i, key):
        if key is not None:
            await trio.sleep(0.02 * i)
            store.coming.arrived(key)
        await storeio.write_gathered(store, _put(i))
        events.append(i)

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(write, 1, None)
            n.start_soon(write, 2, "b")
            n.start_soon(write, 3, "c")
    store.redo.on_sync = None
    assert events[:4] == ["sync", "ack", "ack", "ack"]
    assert sorted(events[4:]) == [1, 2, 3]


async def test_a_cancelled_caller_leaves_its_write_and_the_joined_ones_to_land(store):
    results = {}
    store.coming.expect("session 2")

    async def first(scope_box):
        with trio.CancelScope() as scope:
            scope_box.append(scope)
            results[1] = await storeio.write_gathered(store, _put(1))

    async def second(scope_box):
        await trio.sleep(0.05)
        scope_box[0].cancel()               # the first session goes away while it waits
        store.coming.arrived("session 2")
        results[2] = await storeio.write_gathered(store, _put(2))

    box = []
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(first, box)
            n.start_soon(second, box)
    assert results[2] == 2
    assert (_value(store, 1), _value(store, 2)) == (b"v1", b"v2")


async def test_with_the_writer_busy_gathered_writes_go_to_the_writer(store):
    hold = threading.Event()
    inside = threading.Event()
    store.submit(lambda tx: (inside.set(), hold.wait(5)), done=lambda r, e: None)
    assert inside.wait(5)
    here = []
    real = store.write_here_many
    store.write_here_many = lambda jobs: here.append(real(jobs)) or here[-1]
    threading.Timer(0.05, hold.set).start()
    with trio.fail_after(30):
        assert await storeio.write_gathered(store, _put(6)) == 6
    assert here == [False] and _value(store, 6) == b"v6"


async def test_a_loop_with_other_work_ready_leaves_the_write_to_the_writer(store):
    here = []
    real = store.write_here_many
    store.write_here_many = lambda jobs: here.append(real(jobs)) or here[-1]

    async def other():
        await trio.sleep(0)

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(other)             # ready to run: the loop is not idle
            assert await storeio.write_gathered(store, _put(5)) == 5
    assert here == [] and _value(store, 5) == b"v5"
