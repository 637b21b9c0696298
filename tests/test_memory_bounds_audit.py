"""What a hostile client can make the server hold (stop 23, membounds audit).

Each test is one gap the audit found, held by the protocol's answer and by
the bound itself (docs/architecture.md, "What a client can make us hold"):

* HTTP: a chunked body in thousands of tiny chunks was kept as one bytes
  object per chunk (a 10 MB upload in 2-byte chunks: +386 MB); now one
  buffer, and too many chunks for the body's size is 400.
* IMAP: no cap on connections (5,000 silent pre-login connections from one
  address were all kept, 11.7 KB each, for the 30-minute silence limit);
  now ``[imap] max_connections`` and ``max_preauth_per_ip`` answer a BYE
  greeting.  A LOGIN after UNAUTHENTICATE kept the earlier session slot, so
  100 LOGIN/UNAUTHENTICATE pairs locked the user out until a restart.  The
  STARTTLS handshake had no deadline.
* IMAP: the shared catch-up answers (``SharedViews.transitions``) were
  bounded in count only (256 answers of any size).
* LMTP: replies were written without a deadline.
"""
import socket
import ssl

import pytest
import trio

from conftest import make_config
from imap_helpers import imap_port, msg, run
from mailaccess import config as _config
from mailaccess import ingest
from mailaccess.proto.imap import commands
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.server import http as http_mod
from mailaccess.server import imap as imap_mod
from mailaccess.server import imap_session
from mailaccess.server.imap_session import ImapSession, SharedViews
from mailaccess.store import Store, ops


@pytest.fixture
def cfg(tmp_path):
    base = make_config(tmp_path)
    return make_config(tmp_path, imap=_config.dataclasses.replace(
        base.imap, max_connections=6, max_preauth_per_ip=3, max_sessions_per_user=2),
        lmtp=_config.dataclasses.replace(base.lmtp, timeout=1))


def _connect(port: int) -> tuple[socket.socket, object]:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s, s.makefile("rb")


def _cmd(f_s, line: bytes) -> bytes:
    s, f = f_s
    s.sendall(line)
    tag = line.split(b" ")[0]
    while True:
        got = f.readline()
        if not got:
            raise EOFError(line)
        if got.startswith(tag + b" "):
            return got


# --- HTTP: a chunked body ------------------------------------------------------------------

def _chunked_post(port: int, chunks: list[bytes]) -> bytes:
    """POST CHUNKS to the JMAP API as alice, chunked; the status line."""
    import base64

    auth = base64.b64encode(b"alice:pw").decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    with s:
        s.sendall(f"POST /jmap/api/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  .encode())
        wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        try:
            s.sendall(wire)
        except (ConnectionResetError, BrokenPipeError):
            pass        # answered and closed before the rest was read
        return s.makefile("rb").readline()


async def test_a_body_in_too_many_tiny_chunks_is_400(imap_server):
    port = imap_server.bound["http"][0][1]
    body = b'{"using": [], "methodCalls": []}'
    # a few chunks: served
    ok = await run(_chunked_post, port, [body[:10], body[10:]])
    assert ok.startswith(b"HTTP/1.1 200"), ok
    # one byte a chunk, past MAX_CHUNKS: refused before the end of the body
    many = http_mod.MAX_CHUNKS + 100
    tiny = [b" "] * many + [body]
    bad = await run(_chunked_post, port, tiny)
    assert bad.startswith(b"HTTP/1.1 400"), bad
    # as many bytes in chunks of MIN_CHUNK: served (the bound grows with the size)
    pad = b" " * http_mod.MIN_CHUNK
    ok = await run(_chunked_post, port, [pad] * many + [body])
    assert ok.startswith(b"HTTP/1.1 200"), ok


# --- IMAP: connection caps -----------------------------------------------------------------

async def test_imap_connections_not_logged_in_are_capped_per_address(imap_server):
    port = imap_port(imap_server)

    def go():
        held = [_connect(port) for _ in range(3)]
        for _s, f in held:
            assert f.readline().startswith(b"* OK")
        # the fourth from the same address: a BYE greeting, then closed
        s, f = _connect(port)
        assert f.readline().startswith(b"* BYE [UNAVAILABLE]")
        assert f.readline() == b""
        s.close()
        # one of the three logs in: it no longer counts as not logged in
        assert _cmd(held[0], b"a LOGIN alice pw\r\n").startswith(b"a OK")
        s, f = _connect(port)
        assert f.readline().startswith(b"* OK")
        held.append((s, f))
        # one that was not logged in goes away: its place is free again
        held.pop(1)[0].close()
        s, f = _connect(port)
        assert f.readline().startswith(b"* OK")
        for s, _f in held + [(s, f)]:
            s.close()
    await run(go)


async def test_imap_connections_are_capped_in_all(imap_server):
    port = imap_port(imap_server)

    def go():
        held = []
        # logged-in connections count toward max_connections (6) but not
        # toward the per-address cap of connections not logged in
        for user in ("alice", "alice", "bob", "bob"):
            c = _connect(port)
            assert c[1].readline().startswith(b"* OK")
            assert _cmd(c, f"a LOGIN {user} pw\r\n".encode()).startswith(b"a OK")
            held.append(c)
        for _ in range(2):
            c = _connect(port)
            assert c[1].readline().startswith(b"* OK")
            held.append(c)
        s, f = _connect(port)
        assert f.readline().startswith(b"* BYE [UNAVAILABLE]")
        s.close()
        # a logged-in one ends: its place is free once the server has seen
        # the close (it notices when it reads: try again until it has)
        _cmd(held.pop(0), b"z LOGOUT\r\n")
        s, f = _connect(port)
        line = f.readline()
        s.close()
        for c in held:
            c[0].close()
        return line
    assert (await run(go)).startswith(b"* OK")


async def test_login_after_unauthenticate_gives_back_the_earlier_session_slot(imap_server):
    port = imap_port(imap_server)

    def go():
        c = _connect(port)
        c[1].readline()
        # max_sessions_per_user is 2: five LOGIN/UNAUTHENTICATE pairs on one
        # connection are one session, not five
        for _ in range(5):
            assert _cmd(c, b"a LOGIN alice pw\r\n").startswith(b"a OK")
            assert _cmd(c, b"b UNAUTHENTICATE\r\n").startswith(b"b OK")
        assert _cmd(c, b"a LOGIN alice pw\r\n").startswith(b"a OK")
        d = _connect(port)
        d[1].readline()
        assert _cmd(d, b"a LOGIN alice pw\r\n").startswith(b"a OK")
        e = _connect(port)
        e[1].readline()
        assert _cmd(e, b"a LOGIN alice pw\r\n").startswith(b"a NO [LIMIT]")
        for x in (c, d, e):
            x[0].close()
    await run(go)


async def test_starttls_handshake_has_a_deadline(imap_server, monkeypatch):
    monkeypatch.setattr(imap_mod, "HANDSHAKE_TIMEOUT", 0.2)
    port = imap_port(imap_server)

    def go():
        s, f = _connect(port)
        f.readline()
        s.sendall(b"a STARTTLS\r\n")
        assert f.readline().startswith(b"a OK")
        # no ClientHello: the server gives up and closes
        assert s.recv(1) == b""
        s.close()
    await run(go)


async def test_imaps_handshake_is_counted_and_released(imap_server, monkeypatch):
    monkeypatch.setattr(imap_mod, "HANDSHAKE_TIMEOUT", 0.2)
    port = imap_server.bound["imaps"][0][1]

    def go():
        # three silent TCP connections to port 993: the per-address cap
        silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        # each is closed at the handshake deadline, and its place is free again
        for s in silent:
            assert s.recv(1) == b""
            s.close()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with ctx.wrap_socket(raw) as t:
                assert t.recv(100).startswith(b"* OK")
    await run(go)


# --- IMAP: the shared catch-up answers -------------------------------------------------------

@pytest.fixture
def sel_env(tmp_path):
    s = Store(str(tmp_path / "store"))
    s.start()
    acc = s.write_sync(ops.create_account, "a", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    news = [ingest.prepare(msg(f"m{i}"), 1_700_000_000 + i) for i in range(40)]
    s.write_sync(lambda tx: [ops.append(tx, acc, [ib], n) for n in news])
    import types

    yield types.SimpleNamespace(store=s, acc=acc, ib=ib,
                                ctx=types.SimpleNamespace(cfg=make_config(tmp_path), store=s))
    s.close()


async def _run(sess, line: bytes) -> bytes:
    await sess.handle(commands.parse_command(CommandFrame(b"t", (line,))))
    return sess.take_output()


async def test_cached_catch_up_answers_are_bounded_in_bytes(sel_env, monkeypatch):
    """A session toggling a flag on every message, another catching up after
    each toggle: each catch-up answer is cached for the sessions in the same
    state; what the cache holds stays under TRANSITION_BYTES (plus the newest)."""
    monkeypatch.setattr(imap_session, "TRANSITION_BYTES", 4096)
    shared = SharedViews()

    def session():
        s = ImapSession(sel_env.ctx, secure=True, loopback=True, views=shared)
        s.acc, s.state = sel_env.acc, imap_session.AUTHENTICATED
        return s

    # the first SELECT claims the new messages as \Recent (a session with
    # recent messages answers for itself); the two after it share answers
    await _run(session(), b"SELECT INBOX")
    a, b = session(), session()
    await _run(a, b"SELECT INBOX")
    await _run(b, b"SELECT INBOX")
    sizes = []
    for i in range(30):
        op = b"+" if i % 2 == 0 else b"-"
        await _run(b, b"STORE 1:* " + op + b"FLAGS.SILENT (\\Flagged)")
        out = await _run(a, b"NOOP")
        assert out.count(b" FETCH ") == 40
        sizes.append(len(out))
        held = sum(len(d) for _snap, d, _f in shared.transitions.values())
        assert held == shared.transition_bytes
        assert held <= 4096 + max(sizes), (i, held)
        assert shared.transitions      # the newest answer is kept (shared)
    # the answers are bigger than a few hundred bytes: the byte bound is what held
    assert sum(sizes) > 4 * 4096


# --- LMTP: the write deadline ------------------------------------------------------------------

async def test_lmtp_client_that_never_reads_is_dropped(imap_server):
    port = imap_server.bound["lmtp"][0][1]

    def go():
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # pipelined commands whose replies are never read: once the socket
        # buffers are full the server's write waits, for [lmtp] timeout
        # (1 s here) at most, then the connection is closed
        block = b"NOOP\r\n" * 10000
        try:
            while True:
                s.sendall(block)
        except (ConnectionResetError, BrokenPipeError):
            return True
        finally:
            s.close()
    assert await run(go)


# --- JMAP: body values in one response ---------------------------------------------------------

async def test_body_values_of_one_request_are_bounded(tmp_path, monkeypatch):
    """Each Email/get call of a request could ask for the same big body
    again; the body values of the whole response are now at most
    max_size_response characters, later calls answering requestTooLarge."""
    from jmap_helpers import api, deliver, make_ctx, make_store, mbx_by_role, message
    from mailaccess.server import jmap_email

    monkeypatch.setattr(jmap_email, "DEFAULT_MAX_SIZE_RESPONSE", 25_000)
    store = make_store(tmp_path)
    try:
        ctx = make_ctx(store)
        eid = deliver(ctx, mbx_by_role(ctx, "inbox").id, message(body="x" * 10_000 + "\r\n")).email
        get = {"ids": [_email_id(eid)], "properties": ["bodyValues"],
               "fetchTextBodyValues": True}
        out = await api(ctx, *[["Email/get", get] for _ in range(5)])
        sizes = [sum(len(v["value"]) for v in r[1]["list"][0]["bodyValues"].values())
                 if r[0] == "Email/get" else None for r in out]
        # two calls fit in 25,000 characters; the third and later do not
        assert sizes[:2] == [10_001, 10_001], sizes   # CRLF -> LF
        assert [r[0] for r in out[2:]] == ["error"] * 3
        assert {r[1]["type"] for r in out[2:]} == {"requestTooLarge"}
        # cut with maxBodyValueBytes, the same calls fit (the server makes a
        # context per request; here one is reused: its count starts again)
        ctx.response_bytes = 0
        out = await api(ctx, *[["Email/get", dict(get, maxBodyValueBytes=1000)]
                               for _ in range(5)])
        assert [r[0] for r in out] == ["Email/get"] * 5
        # one call of many ids is held to the budget as it goes, too
        more = [deliver(ctx, mbx_by_role(ctx, "inbox").id,
                        message(mid=f"<m{i}@x>", body="y" * 10_000 + "\r\n")).email for i in range(4)]
        ctx.response_bytes = 0
        out = await api(ctx, ["Email/get", dict(get, ids=[_email_id(e) for e in more])])
        assert out[0][0] == "error" and out[0][1]["type"] == "requestTooLarge", out
    finally:
        store.close()


def _email_id(eid: int) -> str:
    from mailaccess import ids

    return ids.email_id(eid)


# --- ActiveSync: the bytes of one Sync answer ------------------------------------------------

async def test_a_sync_answer_is_bounded_in_bytes_and_the_rest_follows(server, monkeypatch):
    """A window of 512 whole bodies was built at once; past SYNC_BYTES of
    item data an answer stops, says MoreAvailable, and the next Sync goes on
    (the first item always goes, so a small budget still makes progress)."""
    from eas_helpers import account, eas_client, fill, role, sid
    from mailaccess import accounts
    from mailaccess.server import eas_sync

    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    acc = account(server.store)
    eids = await trio.to_thread.run_sync(fill, server.store, acc,
                                         role(server.store, acc, "inbox"), 6)
    monkeypatch.setattr(eas_sync, "SYNC_BYTES", 1)

    def go(device):
        with eas_client(server, device=device) as c:
            c.provision()
            fid = {f.name: f.id for f in c.list_folders()}["INBOX"]
            key = c.sync_folder(fid, "0").sync_key
            pages = []
            while True:
                r = c.sync_folder(fid, key, window_size=100)
                pages.append(r)
                key = r.sync_key
                if not r.more_available:
                    return pages
    # no room: one item an answer, each sent once, then no MoreAvailable
    pages = await run(go, "small")
    assert [len(p.added) for p in pages] == [1] * 6
    assert sorted(a.server_id for p in pages for a in p.added) == sorted(sid(e) for e in eids)
    # room enough: the whole window at once
    monkeypatch.setattr(eas_sync, "SYNC_BYTES", 1 << 20)
    assert [len(p.added) for p in await run(go, "big")] == [6]
