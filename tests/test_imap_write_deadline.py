"""Every write has its deadline, also on send's fast path.

The service writes a command's answer straight to the socket when the kernel
takes it whole; what it does not take goes the locked way with
WRITE_TIMEOUT.  A client that stops reading while answers are due is
dropped when a write waits longer than that; one that reads gets every byte.
"""
import socket

import trio
import trio.testing

from imap_helpers import imap_port
from mailaccess.server import imap as imap_service

BODY = (b"x" * 998 + b"\r\n") * 1000          # ~1 MB
MESSAGE = b"Subject: big\r\nMessage-ID: <big@test>\r\n\r\n" + BODY
ROUNDS = 40                                    # ~40 MB of answers: more than any socket holds


async def _recv_all(sock: socket.socket) -> bytes:
    out = []
    with trio.fail_after(60):               # a hang guard, not a timing assertion
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            out.append(data)
    return b"".join(out)


async def _setup(ctx) -> socket.socket:
    """Logged in, the big message appended, INBOX selected (the server runs
    on this test's loop: the socket is only ever waited on through Trio)."""
    sock = socket.create_connection(("127.0.0.1", imap_port(ctx)))
    sock.setblocking(False)
    await _send(sock, b"a LOGIN alice pw\r\nb APPEND INBOX {%d+}\r\n" % len(MESSAGE) +
                MESSAGE + b"\r\nc SELECT INBOX\r\n")
    buf = b""
    with trio.fail_after(60):               # a hang guard
        while b"c OK" not in buf:
            await trio.lowlevel.wait_readable(sock)
            buf += sock.recv(65536)
    return sock


async def _send(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    with trio.fail_after(60):               # a hang guard
        while view:
            await trio.lowlevel.wait_writable(sock)
            view = view[sock.send(view):]


async def test_a_client_that_stops_reading_is_dropped(imap_server, monkeypatch):
    monkeypatch.setattr(imap_service, "WRITE_TIMEOUT", 0.2)
    sock = await _setup(imap_server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        await _send(sock, b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % i for i in range(ROUNDS)))
        # the server fills the socket and waits for it to drain; its write
        # deadline passes while this client does not read
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1.0)
        got = await _recv_all(sock)       # ends: the server closed the connection
        assert got.count(b" OK FETCH completed") < ROUNDS
    finally:
        sock.close()


async def test_a_client_that_reads_gets_everything(imap_server, monkeypatch):
    monkeypatch.setattr(imap_service, "WRITE_TIMEOUT", 5.0)
    sock = await _setup(imap_server)
    await _send(sock, b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % i for i in range(ROUNDS)) +
                b"z LOGOUT\r\n")
    got = await _recv_all(sock)
    assert got.count(b" OK FETCH completed") == ROUNDS
    assert got.count(BODY) == ROUNDS
    assert got.endswith(b"z OK LOGOUT completed\r\n")
    sock.close()
