"""One user's connections share a budget of literal bytes in flight
(``imap.max_literal_bytes_per_user``, receiver.LiteralBudget): before, each
of a user's 100 sessions could hold two max_literal literals of one command
(a MULTIAPPEND of 2 x 60 MB measured +347 MB, times 100 sessions).  A literal
past the budget gets NO [LIMIT] before "+", a {n+} one is read and dropped
(BAD [LIMIT]); the bytes come back when the command was handled, refused, or
the connection ended.  Wire tests with bytes, then service tests over
loopback.
"""
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_config
from imap_helpers import imap_port, msg, run
from mailaccess import config as _config
from mailaccess.proto.imap.frames import (
    NEED_DATA,
    CommandFrame,
    ContinuationRequest,
    FrameError,
)
from mailaccess.proto.imap.receiver import LiteralBudget, Receiver


def _events(r: Receiver, data: bytes = b"") -> list:
    if data:
        r.receive_data(data)
    out = []
    while (e := r.next_event()) is not NEED_DATA:
        out.append(e)
    return out


def test_a_literal_past_the_shared_budget_is_refused_before_continuation():
    budget = LiteralBudget(100)
    a, b = Receiver(), Receiver()
    a.budget = b.budget = budget
    [ca] = _events(a, b"a1 APPEND INBOX {60}\r\n")
    assert isinstance(ca, ContinuationRequest) and budget.used == 60
    [eb] = _events(b, b"b1 APPEND INBOX {60}\r\n")
    assert isinstance(eb, FrameError) and eb.response == "NO" and eb.code == "LIMIT"
    assert budget.used == 60
    # b's next command is framed (the client sent no literal)
    [nb] = _events(b, b"b2 NOOP\r\n")
    assert isinstance(nb, CommandFrame) and nb.tag == b"b2"
    # a's literal arrives: held until a asks for its next event
    a.receive_data(b"x" * 60 + b"\r\n")
    e = a.next_event()
    assert isinstance(e, CommandFrame) and budget.used == 60
    assert a.next_event() is NEED_DATA and budget.used == 0
    [cb] = _events(b, b"b3 APPEND INBOX {60}\r\n")
    assert isinstance(cb, ContinuationRequest) and budget.used == 60


def test_a_nonsync_literal_past_the_budget_is_read_and_dropped():
    budget = LiteralBudget(100)
    a = Receiver()
    a.budget = budget
    budget.take(50)                     # another connection of the user
    out = _events(a, b"a1 APPEND INBOX {60+}\r\n" + b"y" * 60 + b"\r\na2 NOOP\r\n")
    assert isinstance(out[0], FrameError) and out[0].response == "BAD"
    assert out[0].code == "LIMIT" and not out[0].fatal
    assert isinstance(out[1], CommandFrame) and out[1].tag == b"a2"
    assert budget.used == 50
    assert a.held < 60                  # the literal was not kept


def test_refused_and_abandoned_literals_give_their_bytes_back():
    budget = LiteralBudget(1000)
    a = Receiver()
    a.budget = budget
    _events(a, b"a1 APPEND INBOX {100}\r\n")
    a.refuse_literal()                  # the session answered NO [TRYCREATE]
    assert budget.used == 0
    _events(a, b"a2 APPEND INBOX {100}\r\n" + b"z" * 40)
    assert budget.used == 100
    a.release()                         # the connection ends mid-literal
    assert budget.used == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 80), st.booleans(),
                          st.booleans()), max_size=30))
def test_the_budget_never_overflows_and_comes_back(steps):
    """Three receivers of one user, commands with sync or {n+} literals,
    some handled (the next event asked for), some left mid-way: the
    budget's use never passes its limit, and is zero once all release."""
    budget = LiteralBudget(150)
    rs = [Receiver() for _ in range(3)]
    for r in rs:
        r.budget = budget
    for n, (k, size, nonsync, finish) in enumerate(steps):
        r = rs[k]
        if r.in_command:
            r.release()
            rs[k] = r = Receiver()
            r.budget = budget
        head = b"t%d APPEND INBOX {%d%s}\r\n" % (n, size, b"+" if nonsync else b"")
        evs = _events(r, head)
        if evs and isinstance(evs[0], FrameError):
            assert evs[0].code == "LIMIT"
            if nonsync:
                _events(r, b"q" * size + b"\r\n")
            continue
        if finish:
            evs = _events(r, b"q" * size + b"\r\n")
            assert isinstance(evs[-1], CommandFrame)
        assert budget.used <= budget.limit
    for r in rs:
        r.release()
    assert budget.used == 0


# --- over loopback -------------------------------------------------------------------------

@pytest.fixture
def cfg(tmp_path):
    base = make_config(tmp_path)
    return make_config(tmp_path, imap=_config.dataclasses.replace(
        base.imap, max_literal=100_000, max_literal_bytes_per_user=150_000))


def _conn(ctx):
    s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"l LOGIN alice pw\r\n")
    while not f.readline().startswith(b"l "):
        pass
    return s, f


def _until(f, tag: bytes) -> bytes:
    while True:
        line = f.readline()
        assert line, "connection closed"
        if line.startswith(tag + b" ") or line.startswith(b"+"):
            return line


def test_the_config_refuses_a_budget_smaller_than_a_literal(tmp_path):
    base = make_config(tmp_path)
    with pytest.raises(ValueError):
        _config.dataclasses.replace(base.imap, max_literal=1000, max_literal_bytes_per_user=999)
    assert base.imap.literal_budget == 4 * base.imap.max_literal


async def test_one_users_connections_share_the_literal_budget(imap_server):
    body = msg(body="b" * 90_000)

    def go():
        a, fa = _conn(imap_server)
        b, fb = _conn(imap_server)
        c, fc = _conn(imap_server)
        bob = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=30)
        fbob = bob.makefile("rb")
        fbob.readline()
        bob.sendall(b"l LOGIN bob pw\r\n")
        assert _until(fbob, b"l").startswith(b"l OK")
        a.sendall(b"a1 APPEND INBOX {%d}\r\n" % len(body))
        assert _until(fa, b"a1").startswith(b"+")          # 90 KB of alice's 150 taken
        b.sendall(b"b1 APPEND INBOX {%d}\r\n" % len(body))
        assert _until(fb, b"b1").startswith(b"b1 NO [LIMIT]")
        # another user has a budget of its own
        bob.sendall(b"x1 APPEND INBOX {%d}\r\n" % len(body))
        assert _until(fbob, b"x1").startswith(b"+")
        bob.sendall(body + b"\r\n")
        assert _until(fbob, b"x1").startswith(b"x1 OK")
        # a {n+} literal past it is read and dropped; the session goes on
        b.sendall(b"b2 APPEND INBOX {%d+}\r\n" % len(body) + body + b"\r\nb3 NOOP\r\n")
        assert _until(fb, b"b2").startswith(b"b2 BAD [LIMIT]")
        assert _until(fb, b"b3").startswith(b"b3 OK")
        # a's upload arrives: once it is stored, the bytes are back
        a.sendall(body + b"\r\n")
        assert _until(fa, b"a1").startswith(b"a1 OK")
        b.sendall(b"b4 APPEND INBOX {%d}\r\n" % len(body))
        assert _until(fb, b"b4").startswith(b"+")
        # a connection that ends mid-literal gives its bytes back
        c.sendall(b"c1 APPEND INBOX {%d}\r\n" % len(body))
        assert _until(fc, b"c1").startswith(b"c1 NO [LIMIT]")
        fb.close()
        b.close()
        for k in range(600):        # until the server has seen b's end (30 s guard)
            c.sendall(b"c3 APPEND INBOX {%d}\r\n" % len(body))
            line = _until(fc, b"c3")
            if line.startswith(b"+"):
                break
            assert line.startswith(b"c3 NO [LIMIT]")
            time.sleep(0.05)
        assert line.startswith(b"+")
        c.sendall(body + b"\r\n")
        assert _until(fc, b"c3").startswith(b"c3 OK")
        for s in (a, c, bob):
            s.close()

    await run(go)
