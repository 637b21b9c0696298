"""IMAP receiver: framing tables, fragmentation, literals, limits, properties."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaccess.proto.imap.frames import (
    CONNECTION_CLOSED,
    NEED_DATA,
    CommandFrame,
    ContinuationRequest,
    FrameError,
    Literal,
    RawLine,
)
from mailaccess.proto.imap.receiver import Receiver
from conftest import twin_params


@pytest.fixture(params=twin_params("imapscan"))
def scanner(request):
    return request.param


def run(chunks, scanner=None, eof=False, **kw):
    r = Receiver(scanner=scanner, **kw)
    out = []
    for c in [c for c in chunks if c] + ([b""] if eof else []):
        r.receive_data(c)
        while True:
            ev = r.next_event()
            if ev is NEED_DATA:
                break
            out.append(ev)
            if ev is CONNECTION_CLOSED:
                return out
    return out


def F(tag, *parts):
    return CommandFrame(tag, tuple(parts))


CASES = [
    ([b"A023 LO", b"GOUT\r\n"], [F(b"A023", b"LOGOUT")]),
    ([b"a1 NOOP\r\na2 CAPABILITY\r\n"], [F(b"a1", b"NOOP"), F(b"a2", b"CAPABILITY")]),
    ([b"a1 NOOP\n"], [F(b"a1", b"NOOP")]),  # bare LF tolerated
    ([b"\r\n\r\na1 NOOP\r\n"], [F(b"a1", b"NOOP")]),  # empty lines ignored
    ([b"a1 NOOP\r", b"\n"], [F(b"a1", b"NOOP")]),
    ([b"a1\r\n"], [F(b"a1", b"")]),
    (
        [b"a1 LOGIN {3}\r\n", b"bob", b" {3}\r\npwd\r\n"],
        [ContinuationRequest(b"a1", 3), ContinuationRequest(b"a1", 3),
         F(b"a1", b"LOGIN ", Literal(b"bob"), b" ", Literal(b"pwd"), b"")],
    ),
    (
        [b"a1 LOGIN {3+}\r\nbob {3+}\r\npwd\r\n"],
        [F(b"a1", b"LOGIN ", Literal(b"bob"), b" ", Literal(b"pwd"), b"")],
    ),
    (
        [b"a1 APPEND INBOX ~{5}\r\n", b"a\x00\r\nb\r\n"],
        [ContinuationRequest(b"a1", 5), F(b"a1", b"APPEND INBOX ", Literal(b"a\x00\r\nb", True), b"")],
    ),
    ([b"a1 APPEND INBOX ~{2+}\r\n\x00\x01\r\n"], [F(b"a1", b"APPEND INBOX ", Literal(b"\x00\x01", True), b"")]),
    ([b"a1 X {0}\r\n\r\n"], [ContinuationRequest(b"a1", 0), F(b"a1", b"X ", Literal(b""), b"")]),
    # literal data that looks like commands and literal headers is not scanned
    (
        [b"a1 APPEND x {15+}\r\na2 LOGOUT {3}\r\n\r\n"],
        [F(b"a1", b"APPEND x ", Literal(b"a2 LOGOUT {3}\r\n"), b"")],
    ),
    # a "{3}" inside a quoted string is not a literal
    ([b'a1 LOGIN "x {3}"\r\n'], [F(b"a1", b'LOGIN "x {3}"')]),
    ([b'a1 LOGIN "x\\" {3}\r\n'], [F(b"a1", b'LOGIN "x\\" {3}')]),  # still inside the quote
    ([b'a1 LOGIN "x\\\\" {3}\r\nabc\r\n'], [ContinuationRequest(b"a1", 3), F(b"a1", b'LOGIN "x\\\\" ', Literal(b"abc"), b"")]),
    ([b"a1 SEARCH SUBJECT foo}\r\n"], [F(b"a1", b"SEARCH SUBJECT foo}")]),
    ([b"a1 X {}\r\na2 NOOP\r\n"], [FrameError(b"a1", "bad-literal-header", "malformed literal header"), F(b"a2", b"NOOP")]),
    ([b"a1 X {0000000000000000000000003+}\r\nabc\r\n"], [F(b"a1", b"X ", Literal(b"abc"), b"")]),
]


@pytest.mark.parametrize("chunks,expected", CASES)
def test_table(chunks, expected, scanner):
    assert run(chunks, scanner) == expected


@pytest.mark.parametrize("chunks,expected", CASES)
def test_every_split_point(chunks, expected, scanner):
    data = b"".join(chunks)
    for i in range(len(data) + 1):
        assert run([data[:i], data[i:]], scanner) == expected, i
    assert run([data[i : i + 1] for i in range(len(data))], scanner) == expected


def test_continuation_once_per_literal(scanner):
    r = Receiver(scanner=scanner)
    r.receive_data(b"a1 APPEND INBOX {10}\r\n")
    assert r.next_event() == ContinuationRequest(b"a1", 10)
    assert r.next_event() is NEED_DATA
    for b in b"0123456789":
        r.receive_data(bytes([b]))
        assert r.next_event() is NEED_DATA
    r.receive_data(b"\r\n")
    assert r.next_event() == F(b"a1", b"APPEND INBOX ", Literal(b"0123456789"), b"")
    assert r.next_event() is NEED_DATA


def test_big_literal_in_chunks(scanner):
    size = 3 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    chunks = [b"a1 APPEND INBOX {%d+}\r\n" % size]
    chunks += [payload[i : i + 65536] for i in range(0, size, 65536)]
    chunks.append(b"\r\n")
    (frame,) = run(chunks, scanner)
    assert frame.parts[1].data == payload


def test_sync_literal_too_large(scanner):
    out = run([b"a1 APPEND INBOX {101}\r\na2 NOOP\r\n"], scanner, max_literal=100)
    assert out[0].kind == "literal-too-large" and out[0].response == "NO" and out[0].code == "TOOBIG"
    assert out[0].tag == b"a1" and not out[0].fatal
    assert out[1] == F(b"a2", b"NOOP")


def test_nonsync_literal_over_literal_minus_is_consumed(scanner):
    data = b"x" * 5000
    out = run([b"a1 APPEND INBOX {5000+}\r\n" + data + b" {3+}\r\nabc\r\na2 NOOP\r\n"], scanner,
              max_nonsync_literal=4096)
    assert [type(e) for e in out] == [FrameError, CommandFrame]
    assert out[0].kind == "nonsync-literal-too-large" and out[0].response == "BAD" and out[0].code == "TOOBIG"
    assert out[1] == F(b"a2", b"NOOP")


def test_nonsync_literal_beyond_max_literal_is_fatal(scanner):
    out = run([b"a1 APPEND INBOX {999999999999+}\r\nxx", b"more"], scanner, eof=True)
    assert out[0].fatal and out[0].response == "BYE"
    assert out[-1] is CONNECTION_CLOSED and len(out) == 2


def test_line_too_long_resyncs(scanner):
    long = b"a1 SEARCH " + b"x" * 200
    for chunks in ([long + b"\r\na2 NOOP\r\n"], [long[:50], long[50:], b"\r\na2 NOOP\r\n"]):
        out = run(chunks, scanner, max_line=64)
        assert out == [FrameError(b"a1", "line-too-long", "command line too long"), F(b"a2", b"NOOP")]


def test_line_too_long_then_nonsync_literal_skipped(scanner):
    data = b"a1 APPEND INBOX (" + b"\\Seen " * 40 + b") {12+}\r\na3 LOGOUT\r\n\r\na2 NOOP\r\n"
    out = run([data], scanner, max_line=64)
    assert out == [FrameError(b"a1", "line-too-long", "command line too long"), F(b"a2", b"NOOP")]


def test_command_too_large(scanner):
    out = run([b"a1 APPEND x {60}\r\n"], scanner, max_literal=100, max_command=50)
    assert out[0].kind == "command-too-large" and out[0].response == "NO"


def test_too_many_literals(scanner):
    out = run([b"a1 X {1+}\r\na {1+}\r\nb {1+}\r\nc\r\na2 NOOP\r\n"], scanner, max_literals=2)
    assert out[0].kind == "command-too-large" and out[1] == F(b"a2", b"NOOP")


def test_line_mode(scanner):
    r = Receiver(scanner=scanner)
    r.receive_data(b"a1 AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\na2 IDLE\r\nDONE\r\na3 NOOP\r\n")
    assert r.next_event() == F(b"a1", b"AUTHENTICATE PLAIN")
    r.line_mode = True
    assert r.next_event() == RawLine(b"AGJvYgBwdw==")
    r.line_mode = False
    assert r.next_event() == F(b"a2", b"IDLE")
    r.line_mode = True
    assert r.next_event() == RawLine(b"DONE")
    r.line_mode = False
    assert r.next_event() == F(b"a3", b"NOOP")


def test_line_mode_does_not_follow_literals(scanner):
    r = Receiver(scanner=scanner)
    r.line_mode = True
    r.receive_data(b"abc {5}\r\n")
    assert r.next_event() == RawLine(b"abc {5}")


def test_eof(scanner):
    assert run([b"a1 NOOP\r\n"], scanner, eof=True) == [F(b"a1", b"NOOP"), CONNECTION_CLOSED]
    out = run([b"a1 NOO"], scanner, eof=True)
    assert out[0].kind == "incomplete" and out[0].fatal and out[1] is CONNECTION_CLOSED
    out = run([b"a1 APPEND x {5+}\r\nab"], scanner, eof=True)
    assert out[0].kind == "incomplete" and out[0].tag == b"a1"
    r = Receiver(scanner=scanner)
    r.receive_data(b"")
    with pytest.raises(RuntimeError):
        r.receive_data(b"x")


def test_starttls_discards_pipelined_bytes(scanner):
    r = Receiver(scanner=scanner)
    r.receive_data(b"a1 STARTTLS\r\na2 LOGIN injected pw\r\n")
    assert r.next_event() == F(b"a1", b"STARTTLS")
    assert r.discard_buffered() == b"a2 LOGIN injected pw\r\n"
    assert r.next_event() is NEED_DATA
    r.receive_data(b"a3 NOOP\r\n")
    assert r.next_event() == F(b"a3", b"NOOP")


def test_invalid_tag_not_reported(scanner):
    out = run([b"a+b APPEND {3}\r\n"], scanner, max_literal=1)
    assert out[0].tag is None


# ------------------------------------------------------------- properties

_atom = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789.:,*[]<>-}", min_size=1, max_size=8)
_quoted = st.text(alphabet='abc {}3+~"\\', max_size=8).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
_literal = st.tuples(st.binary(max_size=40), st.sampled_from(["{%d}", "{%d+}", "~{%d}", "~{%d+}"]))


@st.composite
def command_stream(draw):
    out = b""
    for i in range(draw(st.integers(1, 4))):
        cmd = b"t%d " % i + draw(_atom).encode()
        for _ in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                cmd += b" " + draw(st.one_of(_atom, _quoted)).encode()
            else:
                data, hdr = draw(_literal)
                cmd += b" " + (hdr % len(data)).encode() + b"\r\n" + data
        out += cmd + b"\r\n"
    return out


def _split(data, cuts):
    cuts = sorted({c % (len(data) + 1) for c in cuts})
    pieces, prev = [], 0
    for c in cuts:
        pieces.append(data[prev:c])
        prev = c
    pieces.append(data[prev:])
    return [p for p in pieces if p]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=command_stream(), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_same_events(scanner, data, cuts):
    whole = run([data], scanner, eof=True)
    assert whole[-1] is CONNECTION_CLOSED
    assert all(not isinstance(e, FrameError) for e in whole)
    assert run(_split(data, cuts), scanner, eof=True) == whole


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=300) | st.lists(st.sampled_from([b"{", b"}", b"+", b"~", b"3", b"\r\n", b'"', b"\\", b" ", b"a", b"\n", b"{99999999999999999999999+}"]), max_size=60).map(b"".join),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    line_mode=st.booleans(),
)
def test_never_raises(scanner, data, cuts, line_mode):
    r = Receiver(max_line=32, max_literal=16, max_nonsync_literal=8, scanner=scanner)
    r.line_mode = line_mode
    events = []
    for piece in _split(data, cuts) + [b""]:
        r.receive_data(piece)
        for _ in range(10_000):
            ev = r.next_event()
            if ev is NEED_DATA or ev is CONNECTION_CLOSED:
                break
            assert isinstance(ev, (CommandFrame, ContinuationRequest, FrameError, RawLine))
            events.append(ev)
        else:
            raise AssertionError("receiver loops")
    assert r.next_event() is CONNECTION_CLOSED
    assert len(r._buf) <= len(data)
    for ev in events:
        if isinstance(ev, CommandFrame):
            assert all(len(p) <= 32 for p in ev.parts if isinstance(p, bytes))
            assert all(len(p.data) <= 16 for p in ev.parts if isinstance(p, Literal))


def test_line_mode_long_line_ignores_literal_header(scanner):
    r = Receiver(max_line=32, scanner=scanner)
    r.line_mode = True
    r.receive_data(b"x" * 40)
    assert r.next_event() == FrameError(None, "line-too-long", "command line too long")
    r.receive_data(b" {3+}\r\nDONE\r\n")
    assert r.next_event() == RawLine(b"DONE")
