"""TLS (STARTTLS with the generated CA, implicit TLS), SASL, LOGINDISABLED,
COMPRESS=DEFLATE, and bad input over real sockets."""
import base64
import imaplib
import time
import socket
import ssl
import zlib

import pytest
from imapclient import IMAPClient

from imap_helpers import client_ssl, connect, imap_port, imaps_port, msg, run
from mailaccess.server.imap_session import ImapSession


async def test_starttls_then_login(imap_server):
    def go():
        c = imaplib.IMAP4("127.0.0.1", imap_port(imap_server))
        assert "STARTTLS" in c.capabilities
        c.starttls(ssl_context=client_ssl(imap_server))
        assert "STARTTLS" not in c.capabilities
        c.login("alice", "pw")
        assert c.select("INBOX")[0] == "OK"
        c.logout()
    await run(go)


async def test_implicit_tls_with_imapclient(imap_server):
    def go():
        c = IMAPClient("localhost", port=imaps_port(imap_server), ssl=True,
                       ssl_context=client_ssl(imap_server), timeout=30)
        c.login("alice", "pw")
        c.append("INBOX", msg("over tls"))
        c.select_folder("INBOX")
        assert c.search(["ALL"]) == [1]
        c.logout()
    await run(go)


async def test_starttls_discards_pipelined_commands(imap_server):
    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        s.recv(4096)
        s.sendall(b"a STARTTLS\r\nb LOGIN alice pw\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += s.recv(1)
        assert line.startswith(b"a OK")
        t = client_ssl(imap_server).wrap_socket(s, server_hostname="localhost")
        t.sendall(b"c CAPABILITY\r\n")
        data = b""
        while b"c OK" not in data:
            data += t.recv(4096)
        # the pipelined LOGIN was thrown away: no "b OK" ever came
        assert b"b OK" not in data and b"b NO" not in data
        t.close()
    await run(go)


async def test_authenticate_plain_sasl_ir_and_login(imap_server):
    def go():
        c = imaplib.IMAP4("127.0.0.1", imap_port(imap_server))
        typ, _ = c.authenticate("PLAIN", lambda _: b"\0alice\0pw")
        assert typ == "OK"
        c.logout()
        # SASL-IR: initial response on the command line
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0pw") + b"\r\n")
        f.flush()
        assert f.readline().startswith(b"a OK")
        f.write(b"b AUTHENTICATE PLAIN\r\n")  # already authenticated
        f.flush()
        assert f.readline().startswith(b"b BAD")
        s.close()
        # AUTH=LOGIN, two challenges; and cancellation
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a AUTHENTICATE LOGIN\r\n"); f.flush()
        assert f.readline().startswith(b"+ ")
        f.write(base64.b64encode(b"alice") + b"\r\n"); f.flush()
        assert f.readline().startswith(b"+ ")
        f.write(base64.b64encode(b"wrong") + b"\r\n"); f.flush()
        assert f.readline().startswith(b"a NO [AUTHENTICATIONFAILED]")
        f.write(b"b AUTHENTICATE PLAIN\r\n"); f.flush()
        assert f.readline().startswith(b"+")
        f.write(b"*\r\n"); f.flush()
        assert f.readline().startswith(b"b BAD")
        s.close()
    await run(go)


def test_logindisabled_on_plaintext_non_loopback(cfg):
    class Ctx:
        pass
    ctx = Ctx()
    ctx.cfg, ctx.store, ctx.bus, ctx.tls_cert = cfg, None, None, "x"
    s = ImapSession(ctx, secure=False, loopback=False)
    caps = s.capabilities()
    assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps and "STARTTLS" in caps
    s.secure = True
    assert "AUTH=PLAIN" in s.capabilities() and "LOGINDISABLED" not in s.capabilities()


async def test_compress_deflate(imap_server):
    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a LOGIN alice pw\r\nb COMPRESS DEFLATE\r\n"); f.flush()
        assert f.readline().startswith(b"a OK")
        assert f.readline().startswith(b"b OK")
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        decomp = zlib.decompressobj(-15)
        s.sendall(comp.compress(b"c NOOP\r\nd COMPRESS DEFLATE\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        out = b""
        while b"d " not in out:
            out += decomp.decompress(s.recv(4096))
        assert b"c OK" in out and b"d NO [COMPRESSIONACTIVE]" in out
        s.close()
    await run(go)


async def test_bad_input_gets_protocol_errors_and_server_survives(imap_server):
    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a LOGIN alice pw\r\n"); f.flush()
        f.readline()
        f.write(b"b " + b"X" * 100_000 + b"\r\n"); f.flush()
        assert f.readline().startswith((b"b BAD", b"* BAD"))
        f.write(b"c APPEND INBOX {999999999999}\r\n"); f.flush()
        assert f.readline().startswith(b"c NO [TOOBIG]")
        f.write(b"d FETCH ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
                b"((((((((((\r\n"); f.flush()
        assert f.readline().startswith(b"d BAD")
        f.write(b"\xff\xfe garbage\r\n"); f.flush()
        assert b"BAD" in f.readline()
        f.write(b"e NOOP\r\n"); f.flush()
        assert f.readline().startswith(b"e OK")
        s.close()
        c = connect(imap_server)   # everyone else is still served
        c.logout()
    await run(go)


async def test_session_limit_per_user(imap_server, monkeypatch):
    import dataclasses
    cfg = imap_server.cfg
    imap_server.cfg = dataclasses.replace(cfg, imap=dataclasses.replace(
        cfg.imap, max_sessions_per_user=2))
    try:
        def go():
            a, b = connect(imap_server), connect(imap_server)
            c = imaplib.IMAP4("127.0.0.1", imap_port(imap_server))
            with pytest.raises(imaplib.IMAP4.error, match="LIMIT"):
                c.login("alice", "pw")
            a.logout()
            # the server frees a's slot when it sees the connection close,
            # which may come just after LOGOUT's answer: retry a bounded while
            for _ in range(200):
                try:
                    c.login("alice", "pw")
                    break
                except imaplib.IMAP4.error as exc:
                    assert "LIMIT" in str(exc)
                    time.sleep(0.02)
            else:
                raise AssertionError("a's slot was never freed")
            b.logout(); c.logout()
        await run(go)
    finally:
        imap_server.cfg = cfg


async def test_literal_minus_mode(cfg, nursery):
    import dataclasses
    from mailaccess import accounts
    from mailaccess.server import app
    cfg = dataclasses.replace(cfg, imap=dataclasses.replace(cfg.imap, nonsync_literals="minus"))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    await run(accounts.add_user, ctx.store, "alice", "pw")

    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=10)
        f = s.makefile("rwb")
        assert b"LITERAL-" in f.readline()
        f.write(b"a LOGIN alice pw\r\n"); f.flush()
        f.readline()
        small = msg("small")
        f.write(b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(small), small)); f.flush()
        assert f.readline().startswith(b"b OK")
        big = msg("big", body="x" * 5000)
        f.write(b"c APPEND INBOX {%d+}\r\n%s\r\n" % (len(big), big)); f.flush()
        assert f.readline().startswith(b"c BAD [TOOBIG]")
        f.write(b"d NOOP\r\n"); f.flush()
        assert f.readline().startswith(b"d OK")
        s.close()
    await run(go)
    nursery.cancel_scope.cancel()


async def test_user_added_by_cli_while_running_can_log_in(imap_server):
    import subprocess
    import sys

    def add():
        return subprocess.run(
            [sys.executable, "-m", "mailaccess", "user", "add", "carol", "--password-stdin",
             "--data-dir", imap_server.cfg.data_dir], input=b"pw3\n", capture_output=True,
            timeout=120)
    r = await run(add)
    assert r.returncode == 0, r.stderr
    c = await run(connect, imap_server, "carol", "pw3")
    await run(c.logout)
