"""What an idle IMAP session costs, and that IDLE in one task behaves as before.

Issue 10 asks for at most 10 KB per logged-in idle session.  The first test
measures, in the server's own process, the Python objects that 200
logged-in, SELECTed, IDLEing sessions hold (tracemalloc, before and after;
the clients are another process) and how many Trio tasks they run: one each
(server/imap.py: no NOTIFY task before a NOTIFY, no watcher task in IDLE,
no nursery per connection).  The others hold what the single-task IDLE must
keep: changes still reach the client, the client's silence still ends the
connection though changes keep waking the session, DONE still ends IDLE,
and IDLE over COMPRESS=DEFLATE wakes as over the plain socket.
"""
import dataclasses
import gc
import socket
import subprocess
import sys
import tracemalloc
import zlib

import pytest
import trio
import trio.testing

from imap_helpers import imap_port, msg, run
from mailaccess import accounts
from mailaccess.server import app

SESSIONS = 200
#: Python bytes one logged-in, SELECTed, IDLEing session may hold.  Issue 10
#: asks for <= 10 KB of memory per idle session; what the allocator adds to
#: the objects' own bytes needs some room.  Measured 2026-12-04: 6.6 KB here
#: (15.5 KB before: a watcher task in IDLE, a nursery per connection, their
#: cancel scopes, two locks; 8.1 KB with IDLE woken by cancelling its read).
MAX_BYTES_PER_SESSION = 8 * 1024

CLIENT = r"""
import re, selectors, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
state, bufs, socks = {}, {}, []
ready = started = 0

def launch():
    global started
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    socks.append(s)
    state[s], bufs[s] = "greeting", b""
    sel.register(s, selectors.EVENT_READ)
    started += 1

while started < min(20, count):
    launch()
while ready < count:
    for key, _ in sel.select(timeout=60):
        s = key.fileobj
        data = s.recv(65536)
        if not data:
            sys.exit("closed in state " + state[s])
        bufs[s] += data
        while b"\r\n" in bufs[s]:
            line, bufs[s] = bufs[s].split(b"\r\n", 1)
            st = state[s]
            if st == "greeting":
                s.sendall(b"a1 LOGIN alice pw\r\n")
                state[s] = "login"
            elif st == "login" and line.startswith(b"a1 "):
                assert line.startswith(b"a1 OK"), line
                s.sendall(b"a2 SELECT INBOX\r\n")
                state[s] = "select"
            elif st == "select" and line.startswith(b"a2 "):
                assert line.startswith(b"a2 OK"), line
                s.sendall(b"a3 IDLE\r\n")
                state[s] = "idle"
            elif st == "idle" and line.startswith(b"+"):
                state[s] = "ready"
                sel.unregister(s)
                ready += 1
                if started < count:
                    launch()
                break
print("ready", flush=True)
sys.stdin.read()
for s in socks:
    s.sendall(b"DONE\r\na4 LOGOUT\r\n")
for s in socks:
    s.setblocking(True)
    s.settimeout(30)
    while s.recv(65536):
        pass
    s.close()
print("closed", flush=True)
"""


@pytest.fixture
def cfg(tmp_path):
    from conftest import make_config
    c = make_config(tmp_path)
    return dataclasses.replace(c, imap=dataclasses.replace(
        c.imap, max_sessions_per_user=SESSIONS + 10))


def _prune_deadlines() -> None:
    """Drop the stale entries of trio's deadline heap (it keeps one per
    deadline set, pruned when they outnumber the live ones by 1,000 and
    twice over): what trio frees later in any case is not the sessions'."""
    try:
        trio._core._run.GLOBAL_RUN_CONTEXT.runner.deadlines._prune()
    except AttributeError:     # another trio: measured with them
        pass


def _tasks() -> int:
    """Trio tasks running now, in the whole run."""
    n, todo = 0, [trio.lowlevel.current_root_task()]
    while todo:
        t = todo.pop()
        n += 1
        for nursery in t.child_nurseries:
            todo.extend(nursery.child_tasks)
    return n


async def _sessions(port: int, count: int):
    """A client process holding COUNT IDLEing sessions once it says "ready"."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CLIENT, str(port), str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    buf = b""
    with trio.fail_after(120):
        while b"ready" not in buf:
            chunk = await proc.stdout.receive_some(100)
            assert chunk, "the client failed"
            buf += chunk
    return proc


async def _end(proc) -> None:
    await proc.stdin.aclose()
    with trio.fail_after(60):
        out = b""
        while chunk := await proc.stdout.receive_some(100):
            out += chunk
        assert await proc.wait() == 0 and b"closed" in out


async def test_an_idle_session_is_one_task_and_a_few_kb(imap_server):
    def fill():
        c = __import__("imap_helpers").connect(imap_server)
        for i in range(20):
            c.append("INBOX", None, None, msg(f"m{i}"))
        c.logout()
    await run(fill)
    port = imap_port(imap_server)
    # one session first: what only the first one builds is not per session
    await _end(await _sessions(port, 1))
    await trio.sleep(0.2)
    tasks0 = _tasks()
    _prune_deadlines()
    gc.collect()
    tracemalloc.start()
    try:
        snap0 = tracemalloc.take_snapshot()
        proc = await _sessions(port, SESSIONS)
        await trio.sleep(0.5)          # every session back in its wait
        _prune_deadlines()
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
        tasks1 = _tasks()
    finally:
        tracemalloc.stop()
    await _end(proc)
    flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
    grown = sum(d.size_diff for d in snap1.filter_traces(flt).compare_to(
        snap0.filter_traces(flt), "filename"))
    per_session = grown / SESSIONS
    top = "\n".join(str(d) for d in snap1.compare_to(snap0, "lineno")[:12])
    assert tasks1 - tasks0 == SESSIONS, f"{tasks1 - tasks0} tasks for {SESSIONS} sessions"
    assert per_session <= MAX_BYTES_PER_SESSION, f"{per_session:.0f} B per session:\n{top}"


def _line(f) -> bytes:
    line = f.readline()
    assert line, "closed"
    return line


async def test_changes_wake_idle_and_the_client_s_silence_still_ends_it(cfg, nursery):
    """Deliveries keep waking the IDLE (each seen as EXISTS), yet the
    connection ends idle_timeout seconds after the client's last bytes: the
    wake-ups do not restart the client's silence."""
    cfg = dataclasses.replace(cfg, imap=dataclasses.replace(cfg.imap, idle_timeout=2))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
    seen: list[bytes] = []

    def client():
        s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=20)
        f = s.makefile("rb")
        _line(f)
        s.sendall(b"a1 LOGIN alice pw\r\na2 SELECT INBOX\r\n")
        while not _line(f).startswith(b"a2 OK"):
            pass
        s.sendall(b"a3 IDLE\r\n")
        assert _line(f).startswith(b"+")
        while True:
            line = f.readline()
            seen.append(line)
            if not line or line.startswith(b"* BYE"):
                return

    stopped_by_bye = []

    async def deliver():
        import smtplib
        for i in range(30):             # ~10 s of changes, 5 times the limit
            if seen and (not seen[-1] or seen[-1].startswith(b"* BYE")):
                stopped_by_bye.append(i)
                return

            def one(i=i):
                with smtplib.LMTP("127.0.0.1", ctx.bound["lmtp"][0][1]) as c:
                    c.sendmail("s@example.org", ["alice@localhost"], msg(f"d{i}"))
            await trio.to_thread.run_sync(one)
            await trio.sleep(0.25)

    async with trio.open_nursery() as n:
        n.start_soon(deliver)
        await run(client)
    exists = [line for line in seen if line.endswith(b" EXISTS\r\n")]
    assert len(exists) >= 2, seen          # the wake-ups reached the client
    assert seen[-1].startswith(b"* BYE"), seen   # ... and the silence still ended it,
    assert stopped_by_bye, seen                  # while the changes kept coming
    nursery.cancel_scope.cancel()


async def test_idle_over_compress_wakes_and_ends_with_done(imap_server):
    """COMPRESS=DEFLATE, then IDLE: a change made by another session arrives
    (compressed) while idling, DONE ends it."""
    port = imap_port(imap_server)

    def go():
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        f = s.makefile("rb")
        _line(f)
        s.sendall(b"a1 LOGIN alice pw\r\na2 SELECT INBOX\r\na3 COMPRESS DEFLATE\r\n")
        while not _line(f).startswith(b"a3 OK"):
            pass
        c, d = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)

        def send(b):
            s.sendall(c.compress(b) + c.flush(zlib.Z_SYNC_FLUSH))

        buf = b""

        def until(pred):
            nonlocal buf
            while True:
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if pred(line):
                        return line
                data = s.recv(65536)
                assert data, "closed"
                buf += d.decompress(data)

        send(b"a4 IDLE\r\n")
        until(lambda line: line.startswith(b"+"))
        other = __import__("imap_helpers").connect(imap_server)
        other.append("INBOX", None, None, msg("while idling"))
        other.logout()
        assert until(lambda line: line.endswith(b"EXISTS")) == b"* 1 EXISTS"
        send(b"DONE\r\n")
        assert until(lambda line: line.startswith(b"a4 ")) == b"a4 OK IDLE terminated"
        send(b"a5 LOGOUT\r\n")
        until(lambda line: line.startswith(b"a5 "))
        s.close()
    await run(go)


async def test_idle_waits_parks_until_readable_or_woken_and_cleans_up(nursery):
    """server/idle_wait.py: wait(fd) -> True once the socket is readable,
    False after wake(fd); a cancelled wait leaves nothing registered (the fd
    can be waited on again at once); wake with no waiter does nothing."""
    from mailaccess.server import idle_wait
    if not idle_wait.available():
        pytest.skip("no epoll here")
    waits = idle_wait.IdleWaits(nursery)
    a, b = socket.socketpair()
    try:
        got = []

        async def waiter():
            got.append(await waits.wait(a.fileno()))

        waits.wake(a.fileno())                  # nobody waits: nothing happens
        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            waits.wake(a.fileno())
        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            b.send(b"x")
        with trio.move_on_after(0.05):
            a.recv(1)
            await waits.wait(a.fileno())        # nothing to read: parks, cancelled
        assert waits._waiters == {}
        b.send(b"y")
        assert await waits.wait(a.fileno()) is True
        assert got == [False, True]
    finally:
        a.close()
        b.close()
