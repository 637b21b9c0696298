"""More C-only rewrites in msgindex_c, each against the twin, bad input included.

msgindex_c decodes quoted-printable itself (bodies, sizes, RFC 2047 Q words)
instead of calling binascii.a2b_qp, scans Message-ID lists by hand instead of
the twin's regex, builds the preview without splitting the text, counts lines
16 bytes at a time (csrc/msgindex_simd.h) and moves the text between tags as
blocks when stripping HTML.
"""
import binascii

import pytest
from hypothesis import given, settings, strategies as st

from mailaccess import _speedups

PY = _speedups.load_py("msgindex")
C = _speedups.load_c("msgindex")
pytestmark = pytest.mark.skipif(C is None, reason="msgindex_c not built")

# bytes that matter to a QP decoder: escapes, hex digits of both cases,
# non-hex letters, line breaks, the header-mode underscore
_QP_BYTES = st.lists(
    st.sampled_from([b"=", b"==", b"=\r\n", b"=\n", b"=\r", b"\r", b"\n", b"\r\n", b"_", b" ", b"\t",
                     b"0", b"9", b"a", b"f", b"A", b"F", b"g", b"G", b"z", b"=3D", b"=c3=A9", b"=4", b"=G0",
                     b"=0g", b"\x00", b"\xff", b"\x80", b"=\xff", b"x"]),
    max_size=30,
).map(b"".join)


def _qp_header(data):
    if hasattr(C, "_decode_qp_header"):
        return C._decode_qp_header(data)
    return binascii.a2b_qp(data, header=True)


@settings(max_examples=1000, deadline=None)
@given(_QP_BYTES | st.binary(max_size=80))
def test_qp_matches_binascii(data):
    # bodies: the twin's RFC 2045 6.7 line rules (transport padding dropped,
    # "=" + spaces a soft break) over binascii's escapes; Q words: binascii
    assert C.decode_qp(data) == PY.decode_qp(data)
    if not any(c in data for c in (b" ", b"\t", b"==")) and b"\r" not in data.replace(b"\r\n", b""):
        # no padding, no "==" (read as "=" by binascii, as a bad escape then
        # a soft break by the line rules), no bare CR: binascii's answer
        assert C.decode_qp(data) == binascii.a2b_qp(data)
    assert _qp_header(data) == binascii.a2b_qp(data, header=True)


@pytest.mark.parametrize("data", [
    b"", b"=", b"==", b"===", b"=\r", b"=\n", b"=\r\n", b"a=\rbc\nd", b"a=\r", b"=4", b"=41", b"=4g",
    b"=g4", b"=\xff\xff", b"soft=\r\nbreak", b"soft=\nbreak", b"x=3d=3D=3", b"caf=E9_au_lait",
    b"trailing =  \r\nspace", b"=0A=0D", b"_=5F_",
])
def test_qp_corners(data):
    assert C.decode_qp(data) == PY.decode_qp(data)
    assert _qp_header(data) == binascii.a2b_qp(data, header=True)


def _qp_message(body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> bytes:
    return (b"Subject: =?utf-8?q?" + body.replace(b"?", b"").replace(b" ", b"_")[:40] + b"?=\r\n"
            b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
            b"--zz\r\nContent-Type: " + ctype + b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + body + b"\r\n--zz\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body + b"\r\n--zz--\r\n")


@settings(max_examples=300, deadline=None)
@given(_QP_BYTES | st.binary(max_size=60),
       st.sampled_from([b"text/plain; charset=utf-8", b"text/html; charset=iso-8859-1", b"text/plain"]))
def test_qp_parts_index_alike(body, ctype):
    # body text, decoded sizes (non-text part) and Q-encoded subject
    raw = _qp_message(body, ctype)
    assert PY.build(raw) == C.build(raw)


_ID_BYTES = st.lists(
    st.sampled_from([b"<", b">", b"@", b"a", b"b.c", b" ", b"\t", b"\r\n", b"\n", b"\r", b"<>", b"< >",
                     b"<a@b>", b"\xc3\xa9", b"\xff", b",", b"x@y"]),
    max_size=20,
).map(b"".join)


@settings(max_examples=1000, deadline=None)
@given(_ID_BYTES | st.binary(max_size=60) | st.none())
def test_ids_agree(value):
    assert PY._ids(value) == C._ids(value)


_PREVIEW_TEXT = st.lists(
    st.sampled_from(["word", "w", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\x1c",
                     "\x85", "\u00e9", "\u65e5", "\U0001f642", "x" * 300]),
    max_size=40,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_PREVIEW_TEXT | st.text(max_size=120), st.integers(0, 2100), st.sampled_from([" ", "\u2003", "a "]))
def test_preview_agrees(text, pad, filler):
    # the preview looks at the first 2048 characters: move text across that edge
    body = (filler * (pad // len(filler)) + text).encode("utf-8")
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    assert PY.build(raw)[21] == C.build(raw)[21]
    assert PY.build(raw) == C.build(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r\n", b"x", b"\n" * 17, b"y" * 15, b"\xff", b"\n\n\n\n"]),
                max_size=400).map(b"".join),
       st.integers(0, 20), st.integers(0, 20))
def test_count_lines_agrees(data, lo, cut):
    # lengths across the 16-byte blocks and the 255-block lane limit (4080 bytes)
    for buf in (data, data * 3):
        end = len(buf) - cut
        assert PY.count_lines(buf, lo, end) == C.count_lines(buf, lo, end)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 4079, 4080, 4081, 8161, 70000])
def test_count_lines_dense(n):
    for buf in (b"\n" * n, b"a" * n, (b"a\n" * n)[:n]):
        assert C.count_lines(buf, 0, n) == PY.count_lines(buf, 0, n)


_TAGGED = st.lists(
    st.sampled_from(["<p>", "</p>", "<br/>", "<b>", "</B>", "<script>x<b>y</b></script>", "<!-- c -->",
                     "<STYLE>s</style >", "text ", "\u00e9", "\u65e5", "\U0001f642", "<", ">", "&amp;",
                     "<\u017fcript>z</\u017fcript>", "<\u212ai>", "<td x=1>", "<head><title>t</title></head>"]),
    max_size=60,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_TAGGED)
def test_html_blocks_agree(text):
    assert PY.html_to_text(text) == C.html_to_text(text)
