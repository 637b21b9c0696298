"""Requests that queue while the writer waits for LMDB's write lock join its batch.

With several worker processes, one process's writer often waits in
``begin`` while another holds LMDB's write lock through its flush.  What its
own sessions queue meanwhile (the other clients' APPENDs) goes into the same
commit and shares its one flush (``LmdbStore._late_jobs``), each request
still in its own nested transaction.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from mailaccess.store import keys
from mailaccess.store import lmdb_store
from mailaccess.store.lmdb_store import LmdbStore

HOLDER = r"""
import sys, lmdb
env = lmdb.open(sys.argv[1], max_dbs=64, map_size=1 << 30)
txn = env.begin(write=True)          # LMDB's write lock, as another worker holds it
print("held", flush=True)
sys.stdin.readline()
txn.abort()
"""


def _key(i: int) -> bytes:
    return keys.account_prefix(9) + b"late%03d" % i


@pytest.fixture
def store(tmp_path):
    s = LmdbStore(tmp_path / "store")
    s.start()
    yield s
    s.close()


def _queued_behind_the_lock(store, tmp_path, fns, kick=False):
    """Submit FNS[0], let the writer take it and wait for the lock another
    process holds, then queue the rest (after a write_here's checkpoint
    request when KICK); release.  -> (results, commits)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "store")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        commits = store.stats["commits"]
        done = threading.Event()
        results: dict[int, tuple] = {}

        def finisher(i):
            def finished(res, err):
                results[i] = (res, err)
                if len(results) == len(fns):
                    done.set()
            return finished

        store.submit(fns[0], done=finisher(0))
        deadline = time.monotonic() + 30            # a hang guard
        while not store._queue.empty():              # the writer took it ...
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)                             # ... and waits in begin
        if kick:
            store._queue.put(lmdb_store._KICK)
        for i, fn in enumerate(fns[1:], 1):
            store.submit(fn, done=finisher(i))
        assert store._queue.qsize() == len(fns) - 1 + kick
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert done.wait(30)
        return results, store.stats["commits"] - commits
    finally:
        holder.kill()
        holder.wait()


def test_requests_queued_during_the_lock_wait_share_the_commit(store, tmp_path):
    def put(i):
        return lambda tx: tx.put("kw", _key(i), b"v%d" % i) or i

    results, commits = _queued_behind_the_lock(store, tmp_path, [put(i) for i in range(4)])
    assert commits == 1
    assert results == {i: (i, None) for i in range(4)}
    with store.view() as v:
        assert [bytes(v._get("kw", _key(i))) for i in range(4)] == [b"v%d" % i for i in range(4)]


def test_a_failing_request_in_the_grown_batch_spoils_no_other(store, tmp_path):
    """The first request was taken alone (it would have run straight in the
    transaction); once others joined, each runs in its own nested one."""
    def first(tx):
        tx.put("kw", _key(0), b"first")
        raise ValueError("the first one fails")

    def put(i):
        return lambda tx: tx.put("kw", _key(i), b"v%d" % i) or i

    results, commits = _queued_behind_the_lock(store, tmp_path, [first, put(1), put(2)])
    assert commits == 1
    assert isinstance(results[0][1], ValueError)
    assert results[1] == (1, None) and results[2] == (2, None)
    with store.view() as v:
        assert v._get("kw", _key(0)) is None
        assert bytes(v._get("kw", _key(1))) == b"v1" and bytes(v._get("kw", _key(2))) == b"v2"


def test_a_checkpoint_request_queued_during_the_lock_wait_is_no_job(store, tmp_path, caplog):
    """write_here leaves a due checkpoint to the writer with a marker in the
    queue; the batch that grows behind the lock skips it (it is no request)."""
    def put(i):
        return lambda tx: tx.put("kw", _key(i), b"v%d" % i) or i

    results, commits = _queued_behind_the_lock(store, tmp_path, [put(i) for i in range(3)],
                                               kick=True)
    assert commits == 1
    assert results == {i: (i, None) for i in range(3)}
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
