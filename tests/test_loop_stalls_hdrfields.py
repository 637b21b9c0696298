"""FETCH BODY[HEADER.FIELDS (...)] / [HEADER.FIELDS.NOT (...)] on a huge header.

Each distinct field list split the whole header again (40-66 ms per MB of
header per list, on the event loop: a 4 MB header with 100 lists held it for
26 s).  The header is now split once per message per FETCH (mime/fieldspans)
and each list answered from that split; a header of fieldspans.OFFLOOP_BYTES
or more is split in the worker pool.  No timing thresholds: a regression shows
as a test that does not finish or a wrong answer.
"""
import functools
import pathlib
import sys
import threading

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import twin_params
sys.path.insert(0, str(pathlib.Path(__file__).parent / "speedups"))
from test_fetchfmt import _selected  # noqa: E402
from imap_helpers import Raw, run
from mailaccess import _speedups
from mailaccess.mime import fieldspans
from mailaccess.mime import index as mindex
from mailaccess.server import imap_session

Raw = functools.partial(Raw, timeout=120)


def oracle(raw_header: bytes, names, negate: bool, split=_speedups.load_py("msgindex")) -> bytes:
    """mime.index.header_fields as it was: one split per list (the oracle)."""
    wanted = {n.lower() for n in names}
    fields, _ = split.split_header(raw_header, 0, len(raw_header))
    out = []
    for name, fstart, _vs, fend in fields:
        if (name.lower() in wanted) != negate:
            chunk = raw_header[fstart:fend]
            if not chunk.endswith(b"\n"):
                chunk += b"\r\n"
            out.append(chunk)
    out.append(b"\r\n")
    return b"".join(out)


# ------------------------------------------------------- the split, held to the oracle

_NAMES = ["From", "to", "X-A", "x-a", "Subject", "", "a b", "\u212a", "K", "Received"]
_LINES = st.sampled_from([
    b"From: a@b\r\n", b"TO: c@d\n", b"X-A: 1\r\n", b"x-a:2\r\n", b"Subject: s\r\n",
    b" folded\r\n", b"\tfolded\n", b"  \r\n", b"\r\n", b"\n", b"no colon here\r\n",
    b": empty name\r\n", b"K : spaced\r\n", b"Received: x\r", b"Received: y\r\n",
    b"bad\x80name: v\r\n", b"X-A: nul\x00\r\n", b"Subject: no line break at the end",
    b"X-Long: " + b"v" * 300 + b"\r\n", b"X-A :\r\n", b"\r", b" \n"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINES, max_size=30), st.lists(st.sampled_from(_NAMES), max_size=5),
       st.booleans(), st.integers(1, 64), st.integers(0, 4))
@example([b"From: a\r\n", b" b\r\n", b"To: c\r\n"], ["from"], False, 4, 64)
@example([b"From: a\r\n", b" b\r\n", b" c\r\n", b"To: c"], ["to"], True, 1, 0)
@example([b" lead\r\n", b"From: a\r\n"], ["from"], False, 64, 1)
def test_the_split_answers_as_one_split_per_list(lines, names, negate, window, order_max):
    """Held to the old code on hostile shapes (no colon, empty names, bare
    LF, long lines, obs-fold, NUL, no final line break), with windows small
    enough that fields are carried over the cut, and with the fields kept
    in order or by name (ORDER_MAX)."""
    raw = b"".join(lines)
    saved = fieldspans.WINDOW, fieldspans.ORDER_MAX
    fieldspans.WINDOW, fieldspans.ORDER_MAX = window, order_max
    try:
        got = fieldspans.header_fields(raw, 0, len(raw), names, negate)
        fs = fieldspans.FieldSpans(raw, 0, len(raw), names + ["subject", "X-A"])
        again = fs.select(raw, names, negate)
        other = fs.select(raw, ["subject", "x-a"][:len(names) % 3], not negate)
    finally:
        fieldspans.WINDOW, fieldspans.ORDER_MAX = saved
    assert got == again == oracle(raw, names, negate)
    assert other == oracle(raw, ["subject", "x-a"][:len(names) % 3], not negate)


def test_a_part_of_a_buffer_is_split_as_its_slice():
    raw = b"junk\r\nFrom: a\r\n b\r\nTo: c\r\n\r\nbody"
    s = raw.index(b"From")
    for names, neg in ((["from"], False), (["To"], True), ([], True)):
        assert fieldspans.header_fields(raw, s, len(raw), names, neg) == \
            oracle(raw[s:], names, neg) == mindex.header_fields(raw[s:], names, neg)


def test_names_not_split_for_are_refused():
    fs = fieldspans.FieldSpans(b"From: a\r\n\r\n", 0, 11, ["From"])
    with pytest.raises(ValueError):
        fs.select(b"From: a\r\n\r\n", ["To"], False)


def test_rfc_examples():
    """RFC 9051 6.4.5: the field lines asked for (any case), in message
    order, folding kept, and the blank line; .NOT all the others."""
    hdr = (b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nFrom: Terry Gray "
           b"<gray@cac.washington.edu>\r\nSubject: IMAP4rev2 WG mtg summary\r\n and minutes\r\n"
           b"To: imap@cac.washington.edu\r\ncc: minutes@CNRI.Reston.VA.US,\r\n"
           b"   John Klensin <KLENSIN@MIT.EDU>\r\nMessage-Id: <B27397-0100000@cac.washington.edu>"
           b"\r\n\r\n")
    assert mindex.header_fields(hdr, ["SUBJECT", "cc"], False) == (
        b"Subject: IMAP4rev2 WG mtg summary\r\n and minutes\r\ncc: minutes@CNRI.Reston.VA.US,"
        b"\r\n   John Klensin <KLENSIN@MIT.EDU>\r\n\r\n")
    assert mindex.header_fields(hdr, ["Date", "From", "Subject", "To", "Message-ID"],
                                True) == (b"cc: minutes@CNRI.Reston.VA.US,\r\n   John Klensin "
                                          b"<KLENSIN@MIT.EDU>\r\n\r\n")
    assert mindex.header_fields(hdr, ["X-None"], False) == b"\r\n"


# a header of small fields, and one of a few huge folded fields
def small_fields(size: int) -> bytes:
    n = size // 26
    return b"From: a@b\r\n" + b"".join(b"X-F%d: some value %d\r\n" % (k % 997, k)
                                       for k in range(n)) + b"Subject: s\r\n\r\n"


def folded_fields(size: int) -> bytes:
    fold = b"\r\n folded" * (size // 40)
    return b"".join(b"X-Big%d: v" % k + fold + b"\r\n" for k in range(4)) + b"To: t\r\n\r\n"


LISTS = [(["X-F%d" % k, "From", "X-Big%d" % (k % 4)], k % 3 == 0) for k in range(120)]


@pytest.mark.parametrize("shape", [small_fields, folded_fields])
def test_a_16_mb_header_answers_many_lists_from_one_split(shape):
    raw = shape(16 << 20)
    fs = fieldspans.FieldSpans(raw, 0, len(raw),
                               {n for names, _ in LISTS for n in names})
    fast = _speedups.load("msgindex")
    for names, neg in LISTS[::8]:
        assert fs.select(raw, names, neg) == oracle(raw, names, neg, fast)


# ------------------------------------------------------- the fetchfmt twins

def _hdr_msg(header: bytes, body: bytes = b"body\r\n") -> bytes:
    return b"From: a@example.org\r\nSubject: s\r\n" + header + b"\r\n" + body


def _nested(inner_header: bytes) -> bytes:
    return (b"From: outer@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
            b"\r\n\r\nhi\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner_header +
            b"\r\ninner body\r\n--b--\r\n")


_UNDER = fieldspans.OFFLOOP_BYTES - 200
TWIN_MESSAGES = [
    _hdr_msg(b"To: b@example.org\r\nX-A: 1\r\n"),
    _hdr_msg(small_fields(_UNDER)[:_UNDER - 2000].rsplit(b"\r\n", 1)[0] + b"\r\n"),
    _hdr_msg(small_fields(2 * fieldspans.OFFLOOP_BYTES)),      # the Python path's
    _hdr_msg(b"X-F3: a\r\n b\r\nX-NUL: a\x00b\r\n"),
    _nested(b"From: inner@example.org\r\nX-F1: in\r\n"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mailaccess import ingest
    from mailaccess.store import Store, ops
    st_ = Store(str(tmp_path_factory.mktemp("hdrfields") / "store"))
    st_.start()
    acc = st_.write_sync(ops.create_account, "a", "h")
    with st_.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    news = [ingest.prepare(raw, 1_700_000_000, 0) for raw in TWIN_MESSAGES]

    def load(tx):
        for n in news:
            ops.append(tx, acc, [ib], n)
    st_.write_sync(load)
    yield st_, acc, ib
    st_.close()


def _items(lists):
    from mailaccess.proto.imap import events as ev
    return tuple(ev.FetchBody(ev.Section((), "HEADER.FIELDS.NOT" if neg else "HEADER.FIELDS",
                                         tuple(names)), peek=True) for names, neg in lists)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@pytest.mark.parametrize("n_lists", [1, 3, 16, 40])
def test_twins_answer_many_lists_and_leave_a_big_header(store, impl, n_lists):
    """Up to 16 lists (the compiled twin's own loop) and more (its pure
    twin): the answers of the Python loop, byte for byte, NUL as 0x80; a
    header of fieldspans.OFFLOOP_BYTES or more is left to the Python path."""
    st_, acc, ib = store
    lists = [(["X-F%d" % k, "from", "X-A", "x-nul"], k % 4 == 3) for k in range(n_lists)]
    items = _items(lists)
    names = imap_session._simple_items(items)
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)
        expect = imap_session.build_fetch(v, acc, sel, uids, items, False, None, True,
                                          simple=False)
        out, _rep, fallback = impl.fetch_simple(
            v.email_reader(acc), v.index_reader(acc), uids, sel.snap.uids, sel.snap.eids,
            names, None, False, True, v.blob_reader(acc))
        assert fallback == [uids[2]]
        assert out == expect[:2] + expect[3:]
        chunk, _rep, stop, fell = impl.fetch_upto(
            v.email_reader(acc), v.index_reader(acc), uids, 0, sel.snap.uids, sel.snap.eids,
            names, None, False, True, v.blob_reader(acc), 1 << 30)
        assert (chunk, stop, fell) == (b"".join(expect[:2]), 2, True)
    for k, raw in enumerate(TWIN_MESSAGES[:4]):        # the loop's answer, from the oracle
        hdr = raw[:raw.index(b"\r\n\r\n") + 4]
        want = b"".join(
            b"BODY[HEADER.FIELDS%s (%s)] {%d}\r\n%s" % (
                b".NOT" if neg else b"", " ".join(names).encode(),
                len(oracle(hdr, names, neg)), oracle(hdr, names, neg).replace(b"\0", b"\x80"))
            + b" " for names, neg in lists)
        assert expect[k] == b"* %d FETCH (%s)\r\n" % (k + 1, want[:-1])


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_a_chunk_ends_once_its_headers_are_scanned(store, impl):
    """fetch_upto's chunk ends after HEADER_WORK times its budget of header
    bytes times HEADER.FIELDS items, whatever the (tiny) answers hold:
    16 lists that match little on headers of 60 KB made 64 KB chunks of
    105 messages (84 ms of C scanning on the loop per chunk)."""
    st_, acc, ib = store
    lists = [(["X-F%d" % k, "x-none"], False) for k in range(16)]
    items = _items(lists)
    names = imap_session._simple_items(items)
    budget = 4096
    assert impl.HEADER_WORK * budget < 16 * (_UNDER - 2000)     # the 2nd message passes it
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)
        expect = imap_session.build_fetch(v, acc, sel, uids, items, False, None, True,
                                          simple=False)
        assert len(b"".join(expect[:2])) < budget
        steps, i = [], 0
        while i < len(uids):
            chunk, _rep, stop, fell = impl.fetch_upto(
                v.email_reader(acc), v.index_reader(acc), uids, i, sel.snap.uids,
                sel.snap.eids, names, None, False, True, v.blob_reader(acc), budget)
            steps.append((chunk, stop, fell))
            i = stop + fell
    assert steps == [(b"".join(expect[:2]), 2, False), (b"", 2, True),
                     (b"".join(expect[3:]), 5, False)]


def test_a_python_loop_chunk_ends_once_its_headers_are_split(store):
    """The Python FETCH loop (here for <partial>) splits headers under
    fieldspans.OFFLOOP_BYTES on the loop: its chunk ends once it split
    FETCH_SPLIT_WORK times its budget of them, whatever the (tiny) answers
    hold (a chunk of 1,000 such messages: 1-3 s on the loop)."""
    from mailaccess.proto.imap import events as ev
    st_, acc, ib = store
    items = (ev.FetchBody(ev.Section((), "HEADER.FIELDS", ("x-f1", "x-none")), peek=True,
                          partial=(0, 10)),)
    budget = 16 * 1024
    header = _UNDER - 2000      # (about: the second message's)
    assert header < budget * imap_session.FETCH_SPLIT_WORK < 2 * header
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = [sel.uids[1]] * 6
        [one] = imap_session.build_fetch(v, acc, sel, uids[:1], items, False, None, True)
    chunks = list(imap_session.fetch_chunks(st_, acc, sel, uids, items, False, budget=budget,
                                            downgrades={}))
    assert chunks == [one * 2] * 3


def test_nested_and_partial_items_answer_as_the_oracle(store):
    """BODY[1.HEADER.FIELDS ...] of a message/rfc822 part (the Python loop),
    <partial> cuts of one list, a part without a header (NIL)."""
    from mailaccess.proto.imap import events as ev
    st_, acc, ib = store
    inner = b"From: inner@example.org\r\nX-F1: in\r\n\r\n"
    items = (ev.FetchBody(ev.Section((2,), "HEADER.FIELDS", ("x-f1",)), peek=True),
             ev.FetchBody(ev.Section((2,), "HEADER.FIELDS.NOT", ("x-f1",)), peek=True,
                          partial=(2, 5)),
             ev.FetchBody(ev.Section((2,), "HEADER.FIELDS.NOT", ("x-f1",)), peek=True),
             ev.FetchBody(ev.Section((1,), "HEADER.FIELDS", ("from",)), peek=True),
             ev.FetchBody(ev.Section((), "HEADER.FIELDS", ("subject",)), peek=True,
                          partial=(0, 4)))
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        [got] = imap_session.build_fetch(v, acc, sel, [sel.uids[4]], items, False, None, True)
    a, b = oracle(inner, ["x-f1"], False), oracle(inner, ["x-f1"], True)
    assert got == (b"* 5 FETCH (BODY[2.HEADER.FIELDS (x-f1)] {%d}\r\n%s "
                   b"BODY[2.HEADER.FIELDS.NOT (x-f1)]<2> {5}\r\n%s "
                   b"BODY[2.HEADER.FIELDS.NOT (x-f1)] {%d}\r\n%s "
                   b"BODY[1.HEADER.FIELDS (from)] NIL BODY[HEADER.FIELDS (subject)]<0> {4}\r\n"
                   b"Subj)\r\n" % (len(a), a, b[2:7], len(b), b))


# ------------------------------------------------------------- over the wire

def tiny_fields(size: int) -> list[bytes]:
    """The field lines of a header of SIZE bytes of tiny fields (the
    audit's worst: the most fields per MB)."""
    return [b"F%d: v\r\n" % (k % 997) for k in range(size // 9)]


class Reference:
    """BODY[HEADER.FIELDS] of a header of unfolded field LINES,
    straightforwardly: the lines of each name, by position."""

    def __init__(self, lines: list[bytes]):
        self.lines = lines
        self.names = [ln.split(b":", 1)[0].decode().lower() for ln in lines]
        self.at: dict[str, list[int]] = {}
        for k, n in enumerate(self.names):
            self.at.setdefault(n, []).append(k)

    def __call__(self, names, negate: bool) -> bytes:
        want = {n.lower() for n in names}
        if negate:
            return b"".join(ln for ln, n in zip(self.lines, self.names) if n not in want) \
                + b"\r\n"
        at = sorted(k for n in want for k in self.at.get(n, ()))
        return b"".join(self.lines[k] for k in at) + b"\r\n"

BIG = 8 << 20
WIRE_LISTS = [(["F%d" % k, "From", "F%d" % (k + 500)], False) for k in range(150)]
NOT_LISTS = [(["F%d" % k for k in range(j, 997, 2)] + ["Subject"], True) for j in range(3)]


def _item(names, negate, part=b"", partial=b""):
    return b"BODY.PEEK[%sHEADER.FIELDS%s (%s)]%s" % (
        part, b".NOT" if negate else b"", " ".join(names).encode(), partial)


async def test_a_huge_header_answers_150_lists(imap_server):
    """150 distinct lists (and .NOT ones, cut by <partial>) of an 8 MB
    header of tiny fields, and of the 4 MB header of an attached message:
    each list split the whole header again (a minute and more on the
    loop); now one split per message and section."""
    lines = tiny_fields(BIG)
    top = b"From: a@example.org\r\nSubject: huge\r\n" + b"".join(lines)
    inner = b"From: inner@example.org\r\n" + b"".join(lines[:len(lines) // 2])
    big = top + b"\r\nbody\r\n"
    nested = _nested(inner)

    def go():
        r = Raw(imap_server, prefix=b"h")
        assert r.append(big)[-1].startswith(b"h2 OK")
        assert r.append(nested)[-1].startswith(b"h3 OK")
        r.cmd(b"SELECT INBOX")
        items = [_item(n, neg) for n, neg in WIRE_LISTS] + \
            [_item(n, neg, partial=b"<%d.%d>" % (k * 1000, 300)) for k, (n, neg)
             in enumerate(NOT_LISTS)]
        out = r.cmd(b"FETCH 1 (" + b" ".join(items) + b")")
        assert out[-1].startswith(b"h5 OK")
        got = b"".join(out[:-1])
        top_lines = [b"From: a@example.org\r\n", b"Subject: huge\r\n"] + lines
        ref = Reference(top_lines)
        for names, neg in WIRE_LISTS:
            want = ref(names, neg)
            assert b"BODY[HEADER.FIELDS (%s)] {%d}\r\n%s" % (
                " ".join(names).encode(), len(want), want) in got
        for k, (names, neg) in enumerate(NOT_LISTS):
            want = ref(names, neg)[k * 1000:k * 1000 + 300]
            assert b"BODY[HEADER.FIELDS.NOT (%s)]<%d> {300}\r\n%s" % (
                " ".join(names).encode(), k * 1000, want) in got
        out = r.cmd(b"FETCH 2 (" + b" ".join(_item(n, neg, b"2.") for n, neg in
                                             WIRE_LISTS[:100]) + b")")
        assert out[-1].startswith(b"h6 OK")
        got = b"".join(out[:-1])
        in_lines = [b"From: inner@example.org\r\n"] + lines[:len(lines) // 2]
        ref = Reference(in_lines)
        for names, neg in WIRE_LISTS[:100]:
            want = ref(names, neg)
            assert b"BODY[2.HEADER.FIELDS (%s)] {%d}\r\n%s" % (
                " ".join(names).encode(), len(want), want) in got
        r.close()
    await run(go)


async def test_a_huge_header_is_split_while_others_are_answered(imap_server, monkeypatch):
    """One HEADER.FIELDS item on a 16 MB header: the split (0.2 s to 1 s)
    runs in the worker pool, and another connection's NOOP is answered
    while it runs (the split waits for that answer: on the loop it could
    never come, and the wait ends unanswered).  A small header is answered
    by the fetchfmt hot path, as before."""
    calls, entered, release, released = [], threading.Event(), threading.Event(), []
    real = fieldspans.FieldSpans

    class Spy(real):
        __slots__ = ()

        def __init__(self, buf, start, end, wanted):
            calls.append((end - start, threading.current_thread() is threading.main_thread()))
            if end - start >= fieldspans.OFFLOOP_BYTES:
                entered.set()
                released.append(release.wait(30))
            super().__init__(buf, start, end, wanted)

    monkeypatch.setattr(fieldspans, "FieldSpans", Spy)
    lines = [b"F%d: %s\r\n" % (k % 997, b"v" * 50) for k in range((16 << 20) // 60)]
    big = b"Subject: huge\r\n" + b"".join(lines) + b"\r\nbody\r\n"
    small = b"Subject: small\r\nF1: v\r\n\r\nbody\r\n"

    def go():
        r = Raw(imap_server, prefix=b"o")
        other = Raw(imap_server, prefix=b"n")
        assert r.append(big)[-1].startswith(b"o2 OK")
        assert r.append(small)[-1].startswith(b"o3 OK")
        r.cmd(b"SELECT INBOX")
        tag = r.send(b"FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (F1)])")
        assert entered.wait(60)
        assert other.cmd(b"NOOP")[-1].startswith(b"n2 OK")
        release.set()
        out = r.read_until(tag)
        assert out[-1].startswith(tag + b" OK")
        want = b"".join(ln for ln in lines if ln.startswith(b"F1:")) + b"\r\n"
        assert out[:-1] == [b"* 1 FETCH (BODY[HEADER.FIELDS (F1)] {%d}\r\n" % len(want), want,
                            b")\r\n", b"* 2 FETCH (BODY[HEADER.FIELDS (F1)] {9}\r\n",
                            b"F1: v\r\n\r\n", b")\r\n"]
        assert released == [True]
        assert calls == [(len(big) - 6, False)]     # (the small one: fetchfmt's)
        r.close()
        other.close()
    await run(go)
