"""IMAP LOGIN/AUTHENTICATE over the login service, on raw sockets and imaplib:
inputs that used to drop the connection get the protocol's answer and the
session goes on; a full verification pool answers NO [UNAVAILABLE]; cache
hits skip argon2; the failed-login penalty grows and is logged."""
from __future__ import annotations

import base64
import dataclasses
import imaplib
import logging
import socket
import threading

import pytest
import scramp
import trio

from imap_helpers import connect, imap_port, run
from mailaccess import accounts


def raw(ctx):
    s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=20)
    f = s.makefile("rwb")
    assert f.readline().startswith(b"* OK")
    return s, f


def say(f, data: bytes) -> bytes:
    f.write(data)
    f.flush()
    return f.readline()


def still_usable(f, tag=b"z"):
    assert say(f, tag + b" LOGIN alice pw\r\n").startswith(tag + b" OK")
    assert say(f, tag + b"2 SELECT INBOX\r\n").startswith(b"* ")


async def test_login_with_an_empty_or_impossible_user_name_is_refused_and_the_session_goes_on(
        imap_server):
    def go():
        s, f = raw(imap_server)
        assert say(f, b'a LOGIN "" x\r\n').startswith(b"a NO [AUTHENTICATIONFAILED]")
        assert say(f, b'b LOGIN "' + b"x" * 600 + b'" x\r\n').startswith(
            b"b NO [AUTHENTICATIONFAILED]")
        assert say(f, b'c LOGIN "a b" x\r\n').startswith(b"c NO [AUTHENTICATIONFAILED]")
        assert say(f, b'd LOGIN alice ""\r\n').startswith(b"d NO [AUTHENTICATIONFAILED]")
        still_usable(f)
        s.close()
    await run(go)


def scram_first(f, user="alice", client=None):
    c = client or scramp.ScramClient(["SCRAM-SHA-256"], user, "pw")
    line = say(f, b"a AUTHENTICATE SCRAM-SHA-256 " +
               base64.b64encode(c.get_client_first().encode()) + b"\r\n")
    return c, line


async def test_scram_with_an_empty_user_name_is_refused_and_the_session_goes_on(imap_server):
    def go():
        s, f = raw(imap_server)
        line = say(f, b"a AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(b"n,,n=,r=abcdef")
                   + b"\r\n")
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED]"), line
        # the same with the first message sent after the continuation
        assert say(f, b"b AUTHENTICATE SCRAM-SHA-256\r\n").startswith(b"+")
        line = say(f, base64.b64encode(b"n,,n=,r=abcdef") + b"\r\n")
        assert line.startswith(b"b NO [AUTHENTICATIONFAILED]"), line
        still_usable(f)
        s.close()
    await run(go)


async def test_scram_with_bad_base64_channel_binding_is_refused_and_the_session_goes_on(
        imap_server):
    def go():
        s, f = raw(imap_server)
        c, line = scram_first(f)
        assert line.startswith(b"+ ")
        server_first = base64.b64decode(line[2:]).decode()
        nonce = dict(p.split("=", 1) for p in server_first.split(","))["r"]
        final = f"c=abc,r={nonce},p=" + base64.b64encode(b"\0" * 32).decode()
        line = say(f, base64.b64encode(final.encode()) + b"\r\n")
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED]"), line
        # and an undecodable proof
        c, line = scram_first(f)
        nonce = dict(p.split("=", 1) for p in
                     base64.b64decode(line[2:]).decode().split(","))["r"]
        final = f"c=biws,r={nonce},p=!!!"
        assert say(f, base64.b64encode(final.encode()) + b"\r\n").startswith(
            b"a NO [AUTHENTICATIONFAILED]")
        still_usable(f)
        s.close()
    await run(go)


@pytest.mark.parametrize("pieces", [1, 7])
async def test_an_authenticate_response_over_64k_is_answered_and_the_session_goes_on(
        imap_server, pieces):
    def go():
        s, f = raw(imap_server)
        assert say(f, b"a AUTHENTICATE PLAIN\r\n").startswith(b"+")
        big = base64.b64encode(b"\0alice\0" + b"p" * 70_000)
        step = len(big) // pieces + 1
        for i in range(0, len(big), step):
            f.write(big[i:i + step])
            f.flush()
        f.write(b"\r\n")
        f.flush()
        line = f.readline()
        assert line.startswith(b"a BAD"), line
        still_usable(f)
        s.close()
    await run(go)


async def test_authenticate_login_with_an_empty_user_is_refused(imap_server):
    def go():
        s, f = raw(imap_server)
        assert say(f, b"a AUTHENTICATE LOGIN\r\n").startswith(b"+")
        assert say(f, b"\r\n").startswith(b"a NO [AUTHENTICATIONFAILED]")
        assert say(f, b"b AUTHENTICATE PLAIN " + base64.b64encode(b"\0\0pw") + b"\r\n") \
            .startswith(b"b NO [AUTHENTICATIONFAILED]")
        still_usable(f)
        s.close()
    await run(go)


# --- the login service behind IMAP ---------------------------------------------------------------

async def start(cfg, nursery, **auth):
    from mailaccess.server import app
    cfg = dataclasses.replace(cfg, auth=dataclasses.replace(cfg.auth, **auth))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    await run(accounts.add_user, ctx.store, "alice", "pw")
    await run(accounts.add_user, ctx.store, "bob", "pw")
    return ctx


class Gate:
    """Wraps the service's argon2 check: counts calls; holds them while closed."""

    def __init__(self, ctx, closed=False):
        self.inner = ctx.auth.hasher.check
        self.calls = 0
        self.open = threading.Event()
        if not closed:
            self.open.set()
        ctx.auth.hasher.check = self

    def __call__(self, stored, password):
        self.calls += 1
        self.open.wait(30)
        return self.inner(stored, password)


async def test_a_full_verification_pool_answers_no_unavailable(cfg, nursery):
    ctx = await start(cfg, nursery, verify_threads=1, verify_queue=0)
    gate = Gate(ctx, closed=True)
    answers = {}
    first_done = threading.Event()

    def first():
        s, f = raw(ctx)
        answers["first"] = say(f, b"a LOGIN alice pw\r\n")
        first_done.set()
        s.close()

    def second():
        s, f = raw(ctx)
        answers["second"] = say(f, b"b LOGIN bob pw\r\n")
        gate.open.set()
        first_done.wait(30)
        # the session is still there and can log in now
        answers["third"] = say(f, b"c LOGIN bob pw\r\n")
        s.close()

    async with trio.open_nursery() as n:
        n.start_soon(run, first)
        with trio.fail_after(30):
            while gate.calls < 1:
                await trio.sleep(0.01)
        n.start_soon(run, second)
    assert answers["second"].startswith(b"b NO [UNAVAILABLE]")
    assert answers["first"].startswith(b"a OK") and answers["third"].startswith(b"c OK")
    nursery.cancel_scope.cancel()


async def test_imap_logins_hit_the_cache_and_failures_do_not(imap_server):
    gate = Gate(imap_server)

    def go():
        for _ in range(3):
            connect(imap_server).logout()
        with pytest.raises(imaplib.IMAP4.error):
            connect(imap_server, password="wrong")
        with pytest.raises(imaplib.IMAP4.error):
            connect(imap_server, password="wrong")
        c = imaplib.IMAP4("127.0.0.1", imap_port(imap_server))
        c.authenticate("PLAIN", lambda _: b"\0alice\0pw")      # AUTHENTICATE shares it
        c.logout()
    await run(go)
    assert gate.calls == 3       # one for alice/pw, one per wrong password


async def test_a_password_change_is_seen_at_once_despite_the_cache(imap_server):
    def go():
        connect(imap_server).logout()
        accounts.set_password(imap_server.store, "alice", "new")
        with pytest.raises(imaplib.IMAP4.error):
            connect(imap_server, password="pw")
        connect(imap_server, password="new").logout()
    await run(go)


async def test_failed_logins_grow_the_penalty_of_the_address_and_it_is_logged(
        cfg, nursery, caplog):
    # tiny delays: the test reads the penalty's state, it does not time anything
    ctx = await start(cfg, nursery, penalty_initial=0.001, penalty_max=0.008)
    caplog.set_level(logging.INFO, "mailaccess.auth")

    def go():
        for i in range(3):      # three guesses (a repeated password would not count again)
            with pytest.raises(imaplib.IMAP4.error):
                connect(ctx, password=f"wrong{i}")
        connect(ctx, user="bob", password="pw").logout()   # a right password, same address
    await run(go)
    p = ctx.auth.penalty
    assert p.delay("127.0.0.1", None) == pytest.approx(0.004)    # 1, 2, 4 ms: not reset
    assert p.delay("10.9.9.9", "alice") == pytest.approx(0.004)   # per user name too
    assert "failed login from 127.0.0.1 for 'alice'; penalty now 0.004s" in caplog.text
    assert "delayed" in caplog.text
    nursery.cancel_scope.cancel()


async def test_scram_failures_count_towards_the_penalty(cfg, nursery):
    ctx = await start(cfg, nursery, penalty_initial=0.001, penalty_max=0.008)

    def go():
        s, f = raw(ctx)
        c = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "wrong")
        c, line = scram_first(f, client=c)
        c.set_server_first(base64.b64decode(line[2:]).decode())
        line = say(f, base64.b64encode(c.get_client_final().encode()) + b"\r\n")
        assert line.startswith(b"a NO [AUTHENTICATIONFAILED]")
        s.close()
    await run(go)
    assert ctx.auth.penalty.delay("127.0.0.1", None) == pytest.approx(0.001)
    assert ctx.auth.penalty.delay("10.9.9.9", "alice") == pytest.approx(0.001)
    nursery.cancel_scope.cancel()
