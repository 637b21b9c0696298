"""Session-level guarantees over real sockets: 100 sessions per user, the
idle timeout, and sequence numbers that stay right while other sessions
expunge concurrently."""
import dataclasses
import imaplib
import random
import re
import socket

import trio

from imap_helpers import connect, imap_port, msg, run
from mailaccess import accounts
from mailaccess.server import app


async def test_hundred_sessions_for_one_user(imap_server):
    def go():
        conns = [connect(imap_server) for _ in range(100)]
        for c in conns[::10]:
            assert c.select("INBOX")[0] == "OK"
        for c in conns:
            c.logout()
    await run(go)


async def test_idle_timeout_says_bye(cfg, nursery):
    cfg = dataclasses.replace(cfg, imap=dataclasses.replace(cfg.imap, idle_timeout=1))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))

    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=10)
        f = s.makefile("rb")
        f.readline()
        assert f.readline().startswith(b"* BYE")
        assert f.readline() == b""   # closed
    await run(go)
    nursery.cancel_scope.cancel()


async def test_sequence_numbers_under_concurrent_expunges(imap_server):
    """Three sessions delete random messages while a fourth keeps FETCHing by
    sequence number; after each NOOP its view must equal the server's."""
    def setup():
        c = connect(imap_server)
        for i in range(60):
            c.append("INBOX", None, None, msg(f"n{i}", mid=f"<n{i}@t>"))
        c.logout()
    await run(setup)

    def deleter(seed):
        rng = random.Random(seed)
        c = connect(imap_server)
        c.select("INBOX")
        for _ in range(8):
            typ, data = c.uid("SEARCH", None, "ALL")
            uids = data[0].split()
            if not uids:
                break
            victim = rng.choice(uids)
            c.uid("STORE", victim, "+FLAGS", r"(\Deleted)")
            c.uid("EXPUNGE", victim)
        c.logout()

    class Watcher(imaplib.IMAP4):
        def _exists(self):
            return int(self.untagged_responses.get("EXISTS", [b"0"])[-1]) > 0

    w = await run(lambda: Watcher("127.0.0.1", imap_port(imap_server)))
    await run(w.login, "alice", "pw")
    await run(w.select, "INBOX")
    async with trio.open_nursery() as n:
        for seed in range(3):
            n.start_soon(run, deleter, seed)
        for _ in range(5):
            await run(w.noop)
            await trio.sleep(0.01)

    def final():
        w.untagged_responses.clear()
        w.noop()
        typ, data = w.uid("SEARCH", None, "ALL")
        server_uids = [int(x) for x in data[0].split()]
        w.untagged_responses.clear()
        typ, data = w.fetch(f"1:{len(server_uids)}", "(UID)")
        pairs = [re.match(rb"(\d+) \(UID (\d+)\)", d) for d in data]
        seen = [int(m.group(2)) for m in pairs]
        seqs = [int(m.group(1)) for m in pairs]
        return server_uids, seen, seqs
    server_uids, seen, seqs = await run(final)
    assert 60 - 24 <= len(server_uids) < 60   # deleters may race for the same victim
    assert seen == server_uids            # sequence n is the n-th UID, for every n
    assert seqs == list(range(1, len(server_uids) + 1))
    await run(w.logout)


async def test_silence_counts_only_while_waiting_for_the_client(cfg, nursery, monkeypatch):
    """perf4 (server/imap_silence.py): the client's silence is counted while
    the server waits for its next command, not while a command runs: a NOOP
    that takes longer than idle_timeout is answered, and the connection then
    ends with a BYE (how long the silence before it lasts is held on a
    virtual clock: test_silence_watch_ends_a_wait_between_limit_and_17_16)."""
    from mailaccess.server.imap_session import ImapSession

    real = ImapSession.do_noop

    async def slow_noop(self, cmd):
        await trio.sleep(1.6)
        return await real(self, cmd)

    monkeypatch.setattr(ImapSession, "do_noop", slow_noop)
    cfg = dataclasses.replace(cfg, imap=dataclasses.replace(cfg.imap, idle_timeout=1))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    got = []

    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=10)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a1 NOOP\r\n")
        got.append(f.readline())
        got.append(f.readline())
        assert f.readline() == b""   # closed
    await run(go)
    assert got[0] == b"a1 OK NOOP completed\r\n"
    assert got[1].startswith(b"* BYE")
    nursery.cancel_scope.cancel()


class _Waiter:
    """A connection as SilenceWatch sees it: told when its silence is over."""

    def __init__(self):
        self.over_at = None

    def silence_over(self):
        self.over_at = trio.current_time()


async def test_silence_watch_ends_a_wait_between_limit_and_17_16(autojump_clock, nursery):
    """server/imap_silence.py on a virtual clock: a connection waiting for
    its client is ended between idle_timeout and 17/16 of it after it began
    to wait, never earlier; one whose client spoke (``end``) is not ended,
    and its next wait counts from its own start."""
    from mailaccess.server.imap_silence import SilenceWatch

    limit = 1.0
    w = SilenceWatch(nursery, limit)
    first, later, spoke = _Waiter(), _Waiter(), _Waiter()
    t0 = trio.current_time()
    w.begin(first)
    w.begin(spoke)
    await trio.sleep(0.3)
    t_later = trio.current_time()
    w.begin(later)
    await trio.sleep(0.6)
    w.end(spoke)                     # its client spoke after 0.9 s: a command runs
    await trio.sleep(0.6)            # (longer than the limit since its first wait)
    assert spoke.over_at is None
    t_spoke = trio.current_time()
    w.begin(spoke)                   # waiting again
    await trio.sleep(3 * limit)
    for conn, began in ((first, t0), (later, t_later), (spoke, t_spoke)):
        assert conn.over_at is not None
        assert limit <= conn.over_at - began <= limit * 17 / 16 + 1e-9, (began, conn.over_at)
