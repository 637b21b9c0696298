"""What one FETCH may make the server hold for one message (imap_session
FETCH_MESSAGE_HOLD): a <partial> is a window into its section, never a copy,
and the distinct sections and HEADER.FIELDS answers one message's answer
makes are bounded; past the bound the command is answered NO [LIMIT]
(RFC 5530 3) and the connection goes on.  Before, a 64 KB command line of
distinct partials of a 4 MB message made one FETCH hold 5.7 GB.
"""
import socket
import tracemalloc

import pytest

from imap_helpers import Raw, imap_port, run
from mailaccess.server import imap_session

BODY_LINE = b"x" * 998 + b"\r\n"


def _message(lines: int) -> bytes:
    return b"From: a@example.org\r\nSubject: big\r\n\r\n" + BODY_LINE * lines


def _fetch_discarding(ctx, command: bytes) -> tuple[int, bytes]:
    """Log in, select INBOX and send COMMAND (tag c) on a raw socket that
    reads and drops the answer: (bytes read, the tagged line)."""
    s = socket.create_connection(("127.0.0.1", imap_port(ctx)), timeout=60)
    s.sendall(b"a LOGIN alice pw\r\nb SELECT INBOX\r\nc " + command + b"\r\n")
    total, tail = 0, b""
    while True:
        d = s.recv(1 << 20)
        assert d, "the server closed the connection"
        total += len(d)
        tail = (tail + d)[-4096:]
        k = tail.rfind(b"\r\nc ")
        if k >= 0 and tail.endswith(b"\r\n"):
            line = tail[k + 2:]
            s.close()
            return total, line


async def test_distinct_partials_of_a_message_are_windows_not_copies(imap_server):
    """300 distinct <partial> ranges of a 2 MB message: each was a copy of
    the rest of the message, held with all the others until the message's
    answer was built (~300 MB here); now each is a window into the one
    copy of the message."""
    raw = _message(2000)
    n = 300

    def go():
        r = Raw(imap_server, prefix=b"h")
        assert r.append(raw)[-1].startswith(b"h2 OK")
        r.close()
        items = b" ".join(b"BODY.PEEK[]<%d.%d>" % (k * 11, len(raw)) for k in range(n))
        tracemalloc.start()
        try:
            total, line = _fetch_discarding(imap_server, b"FETCH 1 (" + items + b")")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert line.startswith(b"c OK"), line
        assert total > sum(len(raw) - k * 11 for k in range(n))
        # the message (a few copies on its way through the store and the
        # socket) and the answer's chunks, not 300 windows' worth
        assert peak < 40 * len(raw), peak

    await run(go)


async def test_a_partial_answers_its_window(imap_server):
    raw = _message(50) + b"tail\0end\r\n"

    def go():
        r = Raw(imap_server, prefix=b"h")
        assert r.append(raw)[-1].startswith(b"h2 OK")
        r.cmd(b"SELECT INBOX")
        out = b"".join(r.cmd(b"FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[]<%d.100> "
                             b"BODY.PEEK[TEXT]<5.3> BINARY.PEEK[]<%d.20> "
                             b"BINARY.PEEK[]<0.5> BODY.PEEK[]<%d.5>)"
                             % (len(raw) - 9, len(raw) - 9, len(raw) + 10)))
        assert b"BODY[]<0> {10}\r\n" + raw[:10] in out
        # NUL is never in a plain literal (0x80 in its place); the length holds
        assert b"BODY[]<%d> {9}\r\n" % (len(raw) - 9) + b"ail\x80end\r\n" in out
        text = raw[raw.index(b"\r\n\r\n") + 4:]
        assert b"BODY[TEXT]<5> {3}\r\n" + text[5:8] in out
        # a BINARY range with NUL is a literal8, one without a literal
        assert b"BINARY[]<%d> ~{9}\r\n" % (len(raw) - 9) + b"ail\0end\r\n" in out
        assert b"BINARY[]<0> {5}\r\n" + raw[:5] in out
        # past the end: empty (RFC 9051 6.4.5)
        assert b"BODY[]<%d> {0}\r\n" % (len(raw) + 10) in out
        r.close()

    await run(go)


async def test_header_field_lists_past_the_bound_are_refused(imap_server, monkeypatch):
    """Many HEADER.FIELDS.NOT lists of a big header: each answer is most of
    the header (1,800 lists of a 16 MB header: 29 GB).  Past the bound, NO
    [LIMIT]; fewer lists, and the next command, are answered."""
    monkeypatch.setattr(imap_session, "FETCH_MESSAGE_HOLD", 1 << 20)
    monkeypatch.setattr(imap_session, "FETCH_MESSAGE_HOLD_FACTOR", 1)
    header = b"".join(b"X-F%d: %s\r\n" % (k, b"v" * 40) for k in range(5000))  # 250 KB
    raw = b"From: a@example.org\r\nSubject: s\r\n" + header + b"\r\nbody\r\n"

    def go():
        r = Raw(imap_server, prefix=b"h")
        assert r.append(raw)[-1].startswith(b"h2 OK")
        r.cmd(b"SELECT INBOX")
        lists = b" ".join(b"BODY.PEEK[HEADER.FIELDS.NOT (X-F%d)]" % k for k in range(40))
        out = r.cmd(b"FETCH 1 (" + lists + b")")
        assert out[-1].startswith(b"h4 NO [LIMIT]"), out[-1]
        out = r.cmd(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (X-F1)] "
                    b"BODY.PEEK[HEADER.FIELDS (Subject)])")
        assert out[-1].startswith(b"h5 OK"), out[-1]
        got = b"".join(out)
        assert b"BODY[HEADER.FIELDS (Subject)] {14}\r\nSubject: s\r\n\r\n" in got
        assert r.cmd(b"NOOP")[-1].startswith(b"h6 OK")
        r.close()

    await run(go)


@pytest.mark.parametrize("item", [b"BODY.PEEK[%s]", b"BINARY.PEEK[%s]", b"BINARY.SIZE[%s]"])
async def test_distinct_sections_past_the_bound_are_refused(imap_server, monkeypatch, item):
    """A message nested 30 deep: BODY[1], BODY[1.1], ... each nearly the
    whole message, each made once; together past the bound: NO [LIMIT]."""
    monkeypatch.setattr(imap_session, "FETCH_MESSAGE_HOLD", 1 << 20)
    monkeypatch.setattr(imap_session, "FETCH_MESSAGE_HOLD_FACTOR", 1)
    inner = b"Subject: leaf\r\n\r\n" + BODY_LINE * 200        # 200 KB
    depth = 30
    for _ in range(depth):
        inner = b"Subject: wrap\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    raw = b"From: a@example.org\r\n" + inner[len(b"Subject: wrap\r\n"):]

    def go():
        r = Raw(imap_server, prefix=b"h")
        assert r.append(raw)[-1].startswith(b"h2 OK")
        r.cmd(b"SELECT INBOX")
        secs = [b".".join([b"1"] * d) for d in range(1, depth + 1)]
        out = r.cmd(b"FETCH 1 (" + b" ".join(item % s for s in secs) + b")")
        assert out[-1].startswith(b"h4 NO [LIMIT]"), out[-1]
        out = r.cmd(b"FETCH 1 (" + b" ".join(item % s for s in secs[:3]) + b")")
        assert out[-1].startswith(b"h5 OK"), out[-1]
        r.close()

    await run(go)
