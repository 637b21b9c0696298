"""facts_py and facts_c: first_groups gives the same answer on any bytes, and
on every ENVELOPE the indexer writes it agrees with a full parse of the
ENVELOPE (the parser SORT used before query/facts.py, kept here as the
oracle)."""
import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups
from mailaccess.mime import index as mindex
from facts_oracle import envelope_items, oracle

PY = _speedups.load_py("facts")
C = _speedups.load_c("facts")


ADDR = st.sampled_from([
    "a@b.org", "Al <al@x.org>", '"Q \\" d" <q@x>', "grp: a@b, c@d;", "undisclosed-recipients:;",
    "=?utf-8?q?Gr=C3=BCppe?=: x@y;", "nohost", "(c) <> ", "\u00e9l\u00e8ve <e@x>",
    '"(x)" <p@q>', "Team: ;, z@w", "a@b (NIL)", "{3}\r\nabc <k@l>", "x\\y@z", ""])
HEADERS = st.lists(st.tuples(st.sampled_from(["From", "To", "Cc", "Subject", "Sender",
                                              "Reply-To", "Bcc", "Message-ID"]),
                             st.one_of(ADDR, st.text(max_size=30))), max_size=8)


def message(headers) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\nbody\r\n").encode(
        "utf-8", "surrogatepass")


@pytest.mark.parametrize("mod", twin_params("facts"))
@settings(max_examples=300, deadline=None)
@given(headers=HEADERS)
def test_written_envelopes_agree_with_the_full_parse(mod, headers):
    env = mindex.index_message(message(headers)).envelope
    assert mod.first_groups(env) == oracle(env)


@settings(max_examples=2000, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from([b"(", b")", b" ", b"NIL", b'"a"', b'"\\"x"', b"{2}\r\nab",
                              b"{9}\r\n", b'"', b"\\", b"{", b"}", b"x", b"((NIL NIL \"g\" NIL))"]),
             max_size=40).map(b"".join)))
def test_twins_agree_on_any_bytes(data):
    got = PY.first_groups(data)
    if C is not None:
        assert C.first_groups(data) == got
    # a well-formed list reads as the full parse does
    if envelope_items(data) is not None and got != (None, None, None):
        assert got == oracle(data)


def test_both_twins_are_there():
    assert C is not None, "facts_c is not built (setup.py build_ext --inplace)"


@pytest.mark.parametrize("mod", twin_params("facts"))
def test_examples(mod):
    env = (b'(NIL "s" ((NIL NIL "Grp" NIL)(NIL NIL "a" "b")) NIL NIL '
           b'((NIL NIL {3}\r\nu\\v NIL)) ((NIL NIL "a" "b")) NIL NIL NIL)')
    assert mod.first_groups(env) == (b"Grp", b"u\\v", None)
    assert mod.first_groups(env[:-1]) == (None, None, None)        # unbalanced
    assert mod.first_groups(b'(NIL "x) ((NIL NIL "g" NIL)))') == (None, None, None)
    assert mod.first_groups(b"") == (None, None, None)
    # quoting: an escaped quote and parentheses inside a quoted string
    env = b'(NIL "(s)" ((NIL NIL "a\\"b)" NIL)) NIL NIL ((NIL NIL "(" NIL)) NIL NIL NIL NIL)'
    assert mod.first_groups(env) == (b'a"b)', b"(", None) == oracle(env)


# ---------------------------------------------------------------- extract

HOSTILE = st.one_of(ADDR, st.text(max_size=30), st.sampled_from([
    "Mon, 3 Nov 2025 10:00:00 -0200", "<a@b> <c@d>", '"\\u00e9"', "\x7f", "\\", "\u2028",
    "\U0001F600 smile", "=?utf-8?b?w6l0w6k=?="]))


def test_layout_is_the_index_layout():
    assert PY.HEAD.format == mindex.INDEX_LAYOUT.head.format
    assert PY.VERSION == mindex.FORMAT_VERSION
    assert mindex.INDEX_LAYOUT.fields[0] == "envelope" and mindex.INDEX_LAYOUT.fields[-1] == "meta"


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(st.sampled_from(["From", "To", "Cc", "Subject", "Date",
                                                   "Message-ID", "References", "In-Reply-To"]),
                                  HOSTILE), max_size=8))
def test_extract_twins_agree_on_written_indexes(headers):
    mi = mindex.index_message(message(headers))
    data = mindex.encode_index(mi)
    got = PY.extract(data)
    want = (mi.subject, mi.from_, mi.to, mi.cc, mi.sent_at, mi.sent_at_tz, mi.message_id,
            mi.in_reply_to, mi.references, mi.has_attachment) + PY.first_groups(mi.envelope)
    assert got is not None
    assert [list(map(list, v)) if k in (1, 2, 3) else (list(v) if k in (7, 8) else v)
            for k, v in enumerate(want)] == list(got)
    if C is not None:
        assert C.extract(data) == got
        assert C.extract(memoryview(data)) == got


@settings(max_examples=1000, deadline=None)
@given(headers=st.lists(st.tuples(st.sampled_from(["From", "Subject", "References"]), HOSTILE),
                        max_size=4),
       at=st.integers(0, 10**6), byte=st.sampled_from(b' \\"[],:{}0123456789.e-ntfu\x00\x80\n'),
       cut=st.integers(0, 50))
def test_extract_c_reads_damaged_meta_as_py_or_declines(headers, at, byte, cut):
    data = bytearray(mindex.encode_index(mindex.index_message(message(headers))))
    data[at % len(data)] = byte
    data = bytes(data[:len(data) - cut % 3 * cut])
    got = PY.extract(data) if True else None
    if C is not None:
        c = C.extract(data)
        assert c is None or c == got
