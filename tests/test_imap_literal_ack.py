"""The end of an APPEND after its literal (server/imap.py, ``next_event``).

A client with Nagle on (imaplib) sends the literal and the CRLF that ends
the command in two writes, and holds the CRLF until the server ACKs the
literal.  The service ACKs at once (TCP_QUICKACK) after a read in the middle
of a command; over loopback that ACK has usually brought the CRLF before
setsockopt returns, so the service reads once more right away instead of
waiting a round of the scheduler for it.  These tests hold the result to
what the client sent, whichever way the CRLF comes, and check that the read
after the ACK takes what is there without a wait.
"""
import select
import socket

import pytest
import trio

from imap_helpers import imap_port
from mailaccess.server import imap as imap_service
from mailaccess.server.imap_session import ImapSession

MESSAGE = b"Subject: ack\r\nMessage-ID: <ack@test>\r\n\r\n" + b"body line\r\n" * 700


async def _send(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    with trio.fail_after(30):               # a hang guard, not a timing assertion
        while view:
            await trio.lowlevel.wait_writable(sock)
            view = view[sock.send(view):]


async def _until(sock: socket.socket, buf: bytearray, marker: bytes) -> bytes:
    with trio.fail_after(30):               # a hang guard
        while marker not in buf:
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed before {marker!r}: {bytes(buf)!r}")
            buf += data
    at = buf.index(marker)
    end = buf.index(b"\r\n", at) + 2
    out = bytes(buf[:end])
    del buf[:end]
    return out


async def _login(ctx) -> tuple[socket.socket, bytearray]:
    sock = socket.create_connection(("127.0.0.1", imap_port(ctx)))
    sock.setblocking(False)
    buf = bytearray()
    await _until(sock, buf, b"* OK")
    await _send(sock, b"a LOGIN alice pw\r\n")
    await _until(sock, buf, b"a OK")
    return sock, buf


async def _body(sock, buf, uid: int) -> bytes:
    await _send(sock, b"f UID FETCH %d BODY.PEEK[]\r\n" % uid)
    out = await _until(sock, buf, b"f OK")
    head = b"BODY[] {%d}\r\n" % len(MESSAGE)
    return out[out.index(head) + len(head):][:len(MESSAGE)]


@pytest.mark.parametrize("how", ["after the ACK", "later", "with the literal"])
async def test_append_ends_whichever_way_its_crlf_comes(imap_server, monkeypatch, how):
    sock, buf = await _login(imap_server)
    real_quickack = imap_service._quickack
    sent = []

    def quickack(stream):
        real_quickack(stream)
        if how == "after the ACK" and not sent:
            sent.append(sock.send(b"\r\n"))      # Nagle's held CRLF, released by the ACK

    monkeypatch.setattr(imap_service, "_quickack", quickack)
    try:
        for n in range(3):
            sent.clear()
            await _send(sock, b"b%d APPEND INBOX {%d}\r\n" % (n, len(MESSAGE)))
            await _until(sock, buf, b"+ ")
            if how == "with the literal":
                await _send(sock, MESSAGE + b"\r\n")
            else:
                await _send(sock, MESSAGE)
                if how == "later":
                    await trio.sleep(0.05)
                    await _send(sock, b"\r\n")
            ok = await _until(sock, buf, b"b%d OK" % n)
            assert b"APPENDUID" in ok
        # a MULTIAPPEND: the second literal follows the first one's line
        await _send(sock, b"m APPEND INBOX {%d}\r\n" % len(MESSAGE))
        await _until(sock, buf, b"+ ")
        await _send(sock, MESSAGE)
        if how != "after the ACK":
            await _send(sock, b" {%d}\r\n" % len(MESSAGE))
        else:
            monkeypatch.setattr(imap_service, "_quickack", real_quickack)
            await _send(sock, b" {%d}\r\n" % len(MESSAGE))
        await _until(sock, buf, b"+ ")
        await _send(sock, MESSAGE + b"\r\n")
        ok = await _until(sock, buf, b"m OK")
        assert b"APPENDUID" in ok
        await _send(sock, b"s SELECT INBOX\r\n")
        sel = await _until(sock, buf, b"s OK")
        assert b"* 5 EXISTS" in sel
        for uid in range(1, 6):
            assert await _body(sock, buf, uid) == MESSAGE
    finally:
        sock.close()


async def test_the_crlf_the_ack_brings_is_read_without_a_wait(imap_server, monkeypatch):
    """From the literal to the command: no wait beyond the one for the
    literal, which began as "+" went out (without the read after the ACK:
    one more, for the CRLF).  The fake ACK sends the client's CRLF and waits
    until the server's socket has it, as over loopback."""
    sock, buf = await _login(imap_server)
    real_quickack = imap_service._quickack
    real_wait = imap_service._wait_readable
    waits = [0]
    at_command = []

    def quickack(stream):
        real_quickack(stream)
        if not at_command and not sent:
            sent.append(sock.send(b"\r\n"))
            server_sock = imap_service._raw_socket(stream)
            select.select([server_sock], [], [], 10)   # until it arrived

    async def wait_readable(s):
        waits[0] += 1
        await real_wait(s)

    real_append = ImapSession.do_append

    async def do_append(self, cmd):
        at_command.append(waits[0])
        return await real_append(self, cmd)

    sent: list = []
    monkeypatch.setattr(imap_service, "_quickack", quickack)
    monkeypatch.setattr(imap_service, "_wait_readable", wait_readable)
    monkeypatch.setattr(ImapSession, "do_append", do_append)
    try:
        await _send(sock, b"b APPEND INBOX {%d}\r\n" % len(MESSAGE))
        await _until(sock, buf, b"+ ")
        before = waits[0]
        await _send(sock, MESSAGE)
        await _until(sock, buf, b"b OK")
        assert sent and at_command
        assert at_command[0] == before
    finally:
        sock.close()
