"""A huge literal before login is refused by the running server without being
buffered (issue 7 §2): counted in bytes the connection's receiver holds."""
import socket

import pytest

from imap_helpers import imap_port, run
from mailaccess.proto.imap import receiver as receiver_mod
from mailaccess.server import imap as imap_service


@pytest.fixture
def held(monkeypatch):
    """Most bytes any connection's receiver held after a read."""
    most = [0]

    class Counting(receiver_mod.Receiver):
        def receive_data(self, data):
            super().receive_data(data)
            most[0] = max(most[0], self.held)

    monkeypatch.setattr(imap_service, "Receiver", Counting)
    return most


def talk(ctx, payload: bytes, chunks: int = 0) -> bytes:
    s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=20)
    f = s.makefile("rb")
    f.readline()
    s.sendall(payload)
    try:
        for _ in range(chunks):
            s.sendall(b"x" * 65536)
    except OSError:
        pass        # the server closed: what we want
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        pass
    s.close()
    return data


async def test_preauth_nonsync_literal_closes_unbuffered(imap_server, held):
    out = await run(talk, imap_server, b"a LOGIN {63000000+}\r\n", 200)
    assert b"a BAD [TOOBIG]" in out and b"* BYE" in out
    assert held[0] < 2 * 65536 + 8192


async def test_preauth_sync_literal_refused_before_continuation(imap_server, held):
    out = await run(talk, imap_server, b"a LOGIN {63000000}\r\nb LOGOUT\r\n")
    assert b"a NO [TOOBIG]" in out and b"+ " not in out and b"b OK" in out


async def test_after_login_big_literals_are_accepted(imap_server, held):
    body = b"Subject: big\r\n\r\n" + b"y" * 200_000 + b"\r\n"
    out = await run(talk, imap_server, b"a LOGIN alice pw\r\nb APPEND INBOX {%d+}\r\n" % len(body)
                    + body + b"\r\nc UNAUTHENTICATE\r\nd LOGIN {20000+}\r\n")
    assert b"b OK" in out and b"c OK" in out
    assert b"d BAD [TOOBIG]" in out and b"* BYE" in out
