"""The writer waits for writes the loop announced (store/coming.py).

An IMAP APPEND is announced when the server sends "+" for its literal and
withdrawn as its write is queued (or when the command fails first).  A
writer holding a batch while an announcement is fresh waits for the write,
at most ``coming.WAIT``, so that both share one commit and one flush.  These
tests make WAIT and FRESH long, so the result depends on the order of
events alone (the waits below are hang guards, not timing assertions).
"""
from __future__ import annotations

import socket
import threading
import time

import pytest
import trio

from imap_helpers import imap_port
from mailaccess.store import coming, keys
from mailaccess.store.coming import Coming
from mailaccess.store.lmdb_store import LmdbStore


def _key(i: int) -> bytes:
    return keys.account_prefix(9) + b"coming%03d" % i


def _put(i):
    return lambda tx: tx.put("kw", _key(i), b"v%d" % i) or i


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(coming, "WAIT", 3600.0)
    monkeypatch.setattr(coming, "FRESH", 3600.0)
    s = LmdbStore(tmp_path / "store")
    s.start()
    yield s
    s.close()


def test_the_register_forgets_what_arrived_and_what_is_stale(monkeypatch):
    monkeypatch.setattr(coming, "FRESH", 0.010)
    c = Coming()
    assert not c.pending(100.0) and len(c) == 0
    c.expect("a", now=100.0)
    c.expect("b", now=100.0)
    assert c.pending(100.005) and len(c) == 2
    c.arrived("a")
    c.arrived("a")                       # twice, or never announced: no harm
    c.arrived("never")
    assert c.pending(100.005) and len(c) == 1
    c.expect("b", now=100.008)           # a later announcement replaces the earlier one
    assert c.pending(100.015)
    assert not c.pending(100.020)        # stale: forgotten
    assert len(c) == 0


def _taken(store) -> None:
    """Until the writer has taken what was queued (a hang guard)."""
    deadline = time.monotonic() + 30
    while not store._queue.empty():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.05)


def _submit(store, fn, results, n, done):
    def finished(res, err):
        results.append((res, err))
        if len(results) == n:
            done.set()
    store.submit(fn, done=finished)


def test_an_announced_write_joins_the_batch_the_writer_holds(store):
    commits = store.stats["commits"]
    results: list = []
    done = threading.Event()
    store.coming.expect("session 2")
    _submit(store, _put(1), results, 2, done)
    _taken(store)
    assert results == []                 # held back: session 2's write is announced
    store.coming.arrived("session 2")
    _submit(store, _put(2), results, 2, done)
    assert done.wait(30)
    assert store.stats["commits"] - commits == 1
    assert sorted(results) == [(1, None), (2, None)]
    with store.view() as v:
        assert bytes(v._get("kw", _key(1))) == b"v1" and bytes(v._get("kw", _key(2))) == b"v2"


def test_nothing_announced_or_a_stale_announcement_holds_nothing_back(store, monkeypatch):
    commits = store.stats["commits"]
    assert store.write_sync(_put(1)) == 1       # would wait an hour if it waited
    monkeypatch.setattr(coming, "FRESH", 0.010)
    store.coming.expect("gone", now=time.monotonic() - 1)
    assert store.write_sync(_put(2)) == 2
    assert store.stats["commits"] - commits == 2
    assert len(store.coming) == 0


def test_closing_the_store_ends_the_wait_and_commits_the_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(coming, "WAIT", 3600.0)
    monkeypatch.setattr(coming, "FRESH", 3600.0)
    s = LmdbStore(tmp_path / "store")
    s.start()
    results: list = []
    done = threading.Event()
    s.coming.expect("never comes")
    _submit(s, _put(1), results, 1, done)
    _taken(s)
    s.close()
    assert done.wait(30) and results == [(1, None)]
    s = LmdbStore(tmp_path / "store")
    try:
        with s.view() as v:
            assert bytes(v._get("kw", _key(1))) == b"v1"
    finally:
        s.close()


# --- the IMAP server announces an APPEND's literal ------------------------------------------

async def _until(sock: socket.socket, buf: bytearray, marker: bytes) -> bytes:
    with trio.fail_after(30):               # a hang guard
        while marker not in buf:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(65536)
            assert data, f"connection closed before {marker!r}: {bytes(buf)!r}"
            buf += data
    end = buf.index(b"\r\n", buf.index(marker)) + 2
    out = bytes(buf[:end])
    del buf[:end]
    return out


async def _send(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    with trio.fail_after(30):
        while view:
            await trio.lowlevel.wait_writable(sock)
            view = view[sock.send(view):]


async def test_an_append_is_announced_at_its_continuation_and_withdrawn_when_queued(imap_server):
    store = imap_server.store
    seen = []
    real_submit, real_here = store.submit, store.write_here_many

    def submit(fn, *args, done):
        seen.append(len(store.coming))          # withdrawn before it is queued
        return real_submit(fn, *args, done=done)

    def write_here_many(jobs):                  # (or written by the loop itself)
        seen.append(len(store.coming))
        return real_here(jobs)

    store.submit = submit
    store.write_here_many = write_here_many
    msg = b"Subject: c\r\n\r\nbody\r\n"
    sock = socket.create_connection(("127.0.0.1", imap_port(imap_server)))
    sock.setblocking(False)
    buf = bytearray()
    try:
        await _until(sock, buf, b"* OK")
        await _send(sock, b"a LOGIN alice pw\r\n")
        await _until(sock, buf, b"a OK")
        seen.clear()
        await _send(sock, b"b APPEND INBOX {%d}\r\n" % len(msg))
        await _until(sock, buf, b"+ ")
        assert len(store.coming) == 1
        await _send(sock, msg + b"\r\n")
        assert b"APPENDUID" in await _until(sock, buf, b"b OK")
        assert seen == [0]
        # announced again from its OK on (it will likely append again), until
        # a command other than APPEND
        assert len(store.coming) == 1
        await _send(sock, b"n NOOP\r\n")
        await _until(sock, buf, b"n OK")
        assert len(store.coming) == 0
        await _send(sock, b"b2 APPEND INBOX {%d}\r\n" % len(msg))
        await _until(sock, buf, b"+ ")
        await _send(sock, msg + b"\r\n")
        await _until(sock, buf, b"b2 OK")
        assert len(store.coming) == 1
        # refused before "+": nothing announced (the earlier announcement withdrawn)
        await _send(sock, b"c APPEND Nowhere {%d}\r\n" % len(msg))
        assert b"TRYCREATE" in await _until(sock, buf, b"c NO")
        assert len(store.coming) == 0
        # failing after "+" (an empty message): withdrawn, nothing queued
        await _send(sock, b"d APPEND INBOX {0}\r\n")
        await _until(sock, buf, b"+ ")
        assert len(store.coming) == 1
        await _send(sock, b"\r\n")
        await _until(sock, buf, b"d NO")
        assert len(store.coming) == 0 and seen == [0, 0]
    finally:
        sock.close()
        store.submit, store.write_here_many = real_submit, real_here
