"""Pre-auth bounds of the IMAP receiver (issue 7 §2): before login one command
holds at most a few KB; an oversized {n} is refused before "+", an oversized
{n+} ends the connection (BAD [TOOBIG], RFC 7888 §4) without being read."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess.proto.imap.frames import (
    CONNECTION_CLOSED,
    NEED_DATA,
    CommandFrame,
    ContinuationRequest,
    FrameError,
    Literal,
)
from mailaccess.proto.imap.receiver import Limits, Receiver, preauth_limits
from conftest import twin_params

LIMIT = 8192


@pytest.fixture(params=twin_params("imapscan"))
def scanner(request):
    return request.param


def feed(r, chunks):
    """Feed CHUNKS; return the events and the most bytes the receiver held."""
    out, most = [], 0
    for c in chunks:
        r.receive_data(c)
        most = max(most, r.held)
        while (e := r.next_event()) is not NEED_DATA:
            out.append(e)
            most = max(most, r.held)
            if e is CONNECTION_CLOSED:
                return out, most
    return out, most


def pre(scanner=None):
    return Receiver(limits=preauth_limits(LIMIT), scanner=scanner)


def test_login_with_small_literals_passes(scanner):
    out, _ = feed(pre(scanner), [b"a LOGIN {5+}\r\nalice {2}\r\n", b"pw\r\n"])
    assert out == [ContinuationRequest(b"a", 2),
                   CommandFrame(b"a", (b"LOGIN ", Literal(b"alice"), b" ", Literal(b"pw"), b""))]


def test_huge_nonsync_literal_closes_without_reading_it(scanner):
    r = pre(scanner)
    data = [b"a LOGIN {63000000+}\r\n"] + [b"x" * 65536] * 50
    out, most = feed(r, data)
    assert out[0].tag == b"a" and out[0].fatal
    assert out[0].response == "BAD" and out[0].code == "TOOBIG"
    assert len(out) == 1
    assert most < LIMIT + 65536    # never more than the limit plus one read


def test_huge_sync_literal_is_refused_before_continuation(scanner):
    out, _ = feed(pre(scanner), [b"a LOGIN {63000000}\r\n", b"b NOOP\r\n"])
    assert isinstance(out[0], FrameError) and out[0].response == "NO" and not out[0].fatal
    assert out[0].code == "TOOBIG" and out[0].tag == b"a"
    assert not any(isinstance(e, ContinuationRequest) for e in out)
    assert out[1] == CommandFrame(b"b", (b"NOOP",))


def test_total_of_small_literals_is_bounded(scanner):
    # each literal is under the limit, together they are over: refused
    out, _ = feed(pre(scanner), [b"a LOGIN {5000+}\r\n" + b"u" * 5000 + b" {5000+}\r\n"
                                 + b"p" * 5000 + b"\r\n"])
    assert out[0].fatal and out[0].response == "BAD" and out[0].code == "TOOBIG"


def test_long_line_preauth_is_refused_and_skipped(scanner):
    out, most = feed(pre(scanner), [b"a LOGIN " + b"u" * 4000] * 20 + [b" x\r\nb NOOP\r\n"])
    assert out[0].kind == "line-too-long" and not out[0].fatal
    assert out[-1] == CommandFrame(b"b", (b"NOOP",))
    assert most <= 2 * LIMIT


def test_limits_switch_after_login(scanner):
    r = pre(scanner)
    out, _ = feed(r, [b"a LOGIN alice pw\r\n"])
    assert isinstance(out[0], CommandFrame)
    r.set_limits(Limits())      # logged in: the configured bounds
    out, _ = feed(r, [b"b APPEND INBOX {100000+}\r\n", b"y" * 100000, b"\r\n"])
    assert isinstance(out[0], CommandFrame) and out[0].parts[1] == Literal(b"y" * 100000)
    r.set_limits(preauth_limits(LIMIT))   # UNAUTHENTICATE
    out, _ = feed(r, [b"c APPEND INBOX {100000+}\r\n"])
    assert out[0].fatal and out[0].response == "BAD"


@settings(max_examples=200, deadline=None)
@given(size=st.integers(LIMIT + 1, 10**9), sync=st.booleans(),
       cuts=st.lists(st.integers(1, 70000), min_size=1, max_size=30),
       cmd=st.sampled_from([b"a LOGIN ", b"a LOGIN alice ", b"t AUTHENTICATE PLAIN ", b"x ID ("]))
def test_preauth_never_holds_more_than_the_limit(size, sync, cuts, cmd):
    r = pre()
    head = cmd + (b"{%d}\r\n" if sync else b"{%d+}\r\n") % size
    chunks = [head] + [b"z" * c for c in cuts]
    out, most = feed(r, chunks)
    assert most <= LIMIT + max(cuts) + len(head)
    assert not any(isinstance(e, (ContinuationRequest, CommandFrame)) for e in out[:1])
    assert isinstance(out[0], FrameError) and out[0].code == "TOOBIG"
    assert out[0].fatal == (not sync)
