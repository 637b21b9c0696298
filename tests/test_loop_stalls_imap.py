"""Hostile input that made the server's work grow faster than the input, or
held the event loop for a long time (the loop-stall audit of IMAP, LMTP and
mime/).  Each case is behaviour: the call returns the right answer on an input
within the real bounds that took minutes before.  No timing thresholds: a
regression shows as a test that does not finish.
"""
import base64
import email
import email.policy
import functools
import threading

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

import thread_oracle
from conftest import twin_params
from imap_helpers import Raw, run
from mailaccess import _speedups, storeio
from mailaccess.mime import index as mindex
from mailaccess.server import imap_downgrade, imap_session
from mailaccess.server.imap_downgrade import downgrade

Raw = functools.partial(Raw, timeout=60)
_twin = _speedups.load("msgindex")

# ---------------------------------------------------------- RFC 2047 words

# 32 MB of adjacent encoded words in one charset, each half a character: the
# run's bytes were gathered with bytes += (quadratic: a 4 MB Subject took 2 s
# to 7 s to index, this one hours); a 64 MB message may hold it
WORDS = 2_000_000


@pytest.mark.parametrize("impl", twin_params("msgindex"))
def test_decode_words_of_a_huge_run_of_encoded_words(impl):
    value = b"=?utf-8?q?=C3?= =?UTF-8?Q?=A9?= " * WORDS + b"end"
    assert impl.decode_words(value) == "\u00e9" * WORDS + " end"


@pytest.mark.parametrize("impl", twin_params("msgindex"))
def test_decode_words_joins_a_run_per_charset(impl):
    value = (b"a =?utf-8?q?=C3?= =?utf-8?q?=A9?= =?iso-8859-1?q?=E9?= b "
             b"=?x-unknown?q?z?= =?utf-8?b?w6k=?=")
    assert impl.decode_words(value) == "a \u00e9\u00e9 b z\u00e9"


# ------------------------------------------------- RFC 6858 downgrade (FETCH)

# a Subject folded over 1,000,000 lines (4 MB): the fields were gathered with
# bytes += per folded line (quadratic: 1 MB took 3.6 s, on the event loop)
FOLDS = 1_000_000


def test_downgrade_of_a_field_folded_over_a_million_lines():
    raw = "Subject: \u00e9".encode() + b"\r\n a" * FOLDS + b"\r\nX: y\r\n\r\nbody"
    out = downgrade(raw, len(raw) - 4)
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"body"
    subject, x = head.split(b"\r\n")
    assert subject.isascii() and x == b"X: y"
    assert _twin.decode_words(subject[len(b"Subject: "):]) == "\u00e9" + " a" * FOLDS


def _utf8_message(size: int) -> bytes:
    head = "From: J\u00f6ran <j@example.org>\r\nSubject: Gr\u00fc\u00dfe\r\n\r\n".encode()
    return head + b"line of body text\r\n" * (size // 19)


async def test_a_big_message_is_downgraded_off_the_loop(imap_server, monkeypatch):
    """A client without UTF8=ACCEPT fetching a message with a UTF-8 header
    of storeio.OFFLOOP_BYTES or more: the downgrade (0.2 s to 0.8 s per MB
    of hostile header) runs in the worker pool; a small one and the items
    the downgrade does not change are answered on the loop as before."""
    calls = []
    real = imap_downgrade.downgrade

    def spy(raw, header_end):
        calls.append((len(raw), threading.current_thread() is threading.main_thread()))
        return real(raw, header_end)

    monkeypatch.setattr(imap_downgrade, "downgrade", spy)
    big, small = _utf8_message(4 * storeio.OFFLOOP_BYTES), _utf8_message(1000)
    imap_session._DOWNGRADED.clear()

    def go():
        r = Raw(imap_server, prefix=b"d")
        assert r.append(big)[-1].startswith(b"d2 OK")
        assert r.append(small)[-1].startswith(b"d3 OK")
        r.cmd(b"SELECT INBOX")
        flags = r.cmd(b"FETCH 1:2 (UID FLAGS)")
        assert flags[-1].startswith(b"d5 OK") and len(flags) == 3
        assert calls == []          # nothing to downgrade for UID and FLAGS
        out = r.cmd(b"FETCH 1:2 (RFC822.SIZE BODY.PEEK[])")
        assert out[-1].startswith(b"d6 OK")
        whole = b"".join(out[:-1])
        for seq, raw in ((1, big), (2, small)):
            want = real(raw, raw.index(b"\r\n\r\n") + 4)
            assert b"* %d FETCH (RFC822.SIZE %d BODY[] {%d}\r\n%s)\r\n" % (
                seq, len(want), len(want), want) in whole
        assert sorted(calls) == [(len(small), True), (len(big), False)]
        again = r.cmd(b"FETCH 1:2 (RFC822.SIZE BODY.PEEK[])")     # from the cache
        assert again[:-1] == out[:-1] and len(calls) == 2
        r.close()
    await run(go)


# ---------------------------------------------- FETCH items of one big part

async def test_thousands_of_items_on_one_big_part_decode_it_once(imap_server):
    """BINARY.SIZE[1] 4,000 times, or BINARY.PEEK[1]<k.1> for 2,000 k, of a
    24 MB base64 part: each item decoded the whole part again (20 ms each
    and 2 minutes on the event loop; with a 64 MB part three times that)."""
    text = b"0123456789" * 2_400_000
    raw = (b"From: a@example.org\r\nSubject: big\r\nContent-Type: multipart/mixed; "
           b"boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(text)
           + b"\r\n--b--\r\n")

    def go():
        r = Raw(imap_server, prefix=b"p")
        assert r.append(raw)[-1].startswith(b"p2 OK")
        r.cmd(b"SELECT INBOX")
        out = r.cmd(b"FETCH 1 (" + b" ".join([b"BINARY.SIZE[1]"] * 4000) + b")")
        assert out[-1].startswith(b"p4 OK")
        assert out[0].count(b"BINARY.SIZE[1] %d" % len(text)) == 4000
        offsets = range(0, 24_000_000, 12001)
        out = r.cmd(b"FETCH 1 (" + b" ".join(b"BINARY.PEEK[1]<%d.1>" % k for k in offsets)
                    + b")")
        assert out[-1].startswith(b"p5 OK")
        got = b"".join(out[:-1])
        for k in offsets:
            assert b"BINARY[1]<%d> {1}\r\n%d" % (k, k % 10) in got
        r.close()
    await run(go)


# ------------------------------------------------------- the vacation reply

async def test_the_vacation_reply_is_decided_and_built_off_the_loop(server, monkeypatch):
    """RFC 3834 reply to an LMTP delivery: the email package reads the
    delivered header and folds the reply's "Auto: <subject>" (1.3 s for a
    64 KB UTF-8 Subject, 80 s for a 1 MB one) in the worker pool."""
    from test_lmtp_service import lmtp_send
    from mailaccess import accounts
    from mailaccess.outbound import autoreply
    from mailaccess.store import sending
    from conftest import port_of

    built = []
    real = autoreply.build_reply

    def spy(raw, *args):
        reply = real(raw, *args)
        built.append((threading.current_thread() is threading.main_thread(), reply))
        return reply

    monkeypatch.setattr(autoreply, "build_reply", spy)
    bob = await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    server.store.write_sync(sending.set_vacation, bob, {"isEnabled": True})
    subject = "Greetings from  Cologne " * 20
    msg = ("From: ext@example.org\r\nTo: bob@localhost\r\nSubject: " + subject +
           "\r\nMessage-ID: <v1@example.org>\r\n\r\nhi\r\n").encode()
    r = await trio.to_thread.run_sync(lmtp_send, port_of(server, "lmtp"), "ext@example.org",
                                      ["bob@localhost"], msg)
    assert r["bob@localhost"][0] == 250
    with trio.fail_after(60):
        while not built:
            await trio.sleep(0.01)
    [(on_loop, reply)] = built
    assert not on_loop
    got = email.message_from_bytes(reply, policy=email.policy.default)
    assert got["Subject"] == "Auto: " + " ".join(subject.split())
    assert got["Auto-Submitted"] == "auto-replied" and got["In-Reply-To"] == "<v1@example.org>"


# ------------------------------------------------ a big index, for FETCH

async def test_a_big_index_is_decoded_off_the_loop(imap_server, monkeypatch):
    """FETCH BODY[1] (any item that reads the parts) decoded the message's
    whole index on the loop: 1 s for a 16 MB header of small fields, whose
    index lists every field.  An index of OFFLOOP_INDEX_BYTES or more is
    decoded in the worker pool; a small one on the loop, as before."""
    decoded = []
    real = mindex.decode_index

    def spy(data):
        decoded.append((len(data), threading.current_thread() is threading.main_thread()))
        return real(data)

    monkeypatch.setattr(mindex, "decode_index", spy)
    big = b"Subject: big\r\n" + b"X: a\r\n" * 400_000 + b"\r\nbig body\r\n"
    small = b"Subject: small\r\n\r\nsmall body\r\n"

    def go():
        r = Raw(imap_server, prefix=b"i")
        assert r.append(big)[-1].startswith(b"i2 OK")
        assert r.append(small)[-1].startswith(b"i3 OK")
        r.cmd(b"SELECT INBOX")
        decoded.clear()
        out = r.cmd(b"FETCH 1:2 (BODY.PEEK[1] BINARY.SIZE[1])")
        assert out[-1].startswith(b"i5 OK")
        assert out[:-1] == [b"* 1 FETCH (BODY[1] {10}\r\n", b"big body\r\n",
                            b" BINARY.SIZE[1] 10)\r\n",
                            b"* 2 FETCH (BODY[1] {12}\r\n", b"small body\r\n",
                            b" BINARY.SIZE[1] 12)\r\n"]
        assert [on_loop for n, on_loop in sorted(decoded)] == [True, False]
        assert max(decoded)[0] >= imap_session.OFFLOOP_INDEX_BYTES
        r.close()
    await run(go)


# ------------------------------------------------- THREAD=REFERENCES

def _thread_of(msgs):
    return thread_oracle.core_references(msgs)


_ids = st.integers(0, 12).map(lambda i: f"{i}@x")
_spec = st.lists(st.tuples(st.one_of(st.none(), _ids), st.lists(_ids, max_size=8),
                           st.integers(0, 3)), max_size=10)


@settings(max_examples=300, deadline=None)
# a root whose tree hangs under another tree later in the same message: the
# loop check for "x" must see b's new root (x itself), not its old one (a)
@example([(None, ["a@x", "b@x"], 0), (None, ["x@x", "y@x"], 0),
          ("m@x", ["b@x", "q@x", "y@x", "a@x", "b@x", "x@x"], 0)])
@given(_spec)
def test_thread_references_answers_as_when_every_loop_check_walked(spec):
    """Loops, repeated ids, a message referring to itself or to a later one."""
    msgs = [thread_oracle.Msg(k, k, date, "s", "s", mid, tuple(refs))
            for k, (mid, refs, date) in enumerate(spec)]
    assert _thread_of(msgs) == thread_oracle.references(msgs)


async def test_thread_references_of_a_huge_references_field(imap_server):
    """A References field of 100,000 ids (1 MB, any sender can deliver it):
    each id's loop check walked the chain linked so far, 5e9 steps."""
    refs = b" ".join(b"<%d@x>" % i for i in range(1, 100_000))
    first = b"Message-ID: <root@x>\r\nSubject: s\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n\r\nx\r\n"
    second = (b"Message-ID: <leaf@x>\r\nSubject: Re: s\r\nDate: Mon, 3 Nov 2025 11:00:00 +0000"
              b"\r\nReferences: <root@x> " + refs + b"\r\n\r\ny\r\n")
    third = (b"Message-ID: <other@x>\r\nSubject: t\r\nDate: Mon, 3 Nov 2025 12:00:00 +0000"
             b"\r\nReferences: " + refs + b" <leaf@x>\r\n\r\nz\r\n")

    def go():
        r = Raw(imap_server, prefix=b"t")
        for n, m in enumerate((first, second, third), 2):
            assert r.append(m)[-1].startswith(b"t%d OK" % n)
        r.cmd(b"SELECT INBOX")
        out = r.cmd(b"THREAD REFERENCES UTF-8 ALL")
        assert out == [b"* THREAD (1 2 3)\r\n", b"t6 OK THREAD completed\r\n"]
        r.close()
    await run(go)


async def test_catenate_urls_are_resolved_off_the_loop(imap_server, monkeypatch):
    """CATENATE (RFC 4469) URL parts with a section decoded the named
    message's whole index on the loop, once per URL."""
    decoded = []
    real = mindex.decode_index

    def spy(data):
        decoded.append(threading.current_thread() is threading.main_thread())
        return real(data)

    monkeypatch.setattr(mindex, "decode_index", spy)
    raw = (b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n")

    def go():
        r = Raw(imap_server, prefix=b"c")
        assert r.append(raw)[-1].startswith(b"c2 OK")
        r.cmd(b"SELECT INBOX")
        head = b"Subject: joined\r\n\r\n"
        out = r.cmd(b'APPEND INBOX CATENATE (TEXT {%d+}\r\n%s URL "/INBOX/;UID=1/;SECTION=2"'
                    b' URL "/INBOX/;UID=1/;SECTION=1" URL "/INBOX/;UID=1/;SECTION=9")'
                    % (len(head), head))
        assert b"c4 NO [BADURL /INBOX/;UID=1/;SECTION=9]" in out[-1]
        out = r.cmd(b'APPEND INBOX CATENATE (TEXT {%d+}\r\n%s URL "/INBOX/;UID=1/;SECTION=2"'
                    b' URL "/INBOX/;UID=1/;SECTION=1")' % (len(head), head))
        assert out[-1].startswith(b"c5 OK")
        r.cmd(b"NOOP")
        got = r.cmd(b"FETCH 2 BODY.PEEK[]")
        assert got[1] == head + b"twoone"
        assert decoded and not any(decoded)
        r.close()
    await run(go)
