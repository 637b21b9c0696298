"""msgindex_py and msgindex_c agree on every function, corpus and hypothesis input."""
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailaccess import _speedups
from mailaccess.mime.index import index_with

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "corpus"))
import make_corpus  # noqa: E402

PY = _speedups.load_py("msgindex")
C = _speedups.load_c("msgindex")
needs_c = pytest.mark.skipif(C is None, reason="msgindex_c not built")
CORPUS = make_corpus.corpus()

HEADER_VALUES = [
    b'"Joe Q. Public" <john.q.public@example.com>, Mary <mary@x.test>',
    b"A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
    b"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
    b"<@route1,@route2:user@host.test>, undisclosed-recipients:;",
    b'=?utf-8?q?J=C3=B6rg?= <j@x.de>, "a\\"b" <c@d>, (only comment)',
    b"text/plain; charset=\"utf-8\"; format=flowed; name*0*=utf-8''%E2%82; name*1*=%AC.txt",
    b"attachment; filename=\"a;b.txt\"; size=12 ; x",
    b"=?iso-8859-1?q?caf=E9?= =?iso-8859-1?q?_ok?= tail =?bogus?b?AAA?=",
    b"=?utf-8?B?w6k=?= =?utf-8?B?gA==?= =?UTF-8?q?=E2=82?= =?utf-8?q?=AC?=",
    b"", b"<>", b"@", b",,,;;;::", b"(((", b'"unterminated', b"[1.2.3.4", b"\xff\xfe\x80",
]
FUNCS_BYTES = ["unfold", "decode_b64", "b64_size", "decode_qp", "bytes_to_str", "decode_words",
               "tokenize", "parse_addresses", "parse_params", "imap_string"]


def _same_everywhere(value: bytes):
    for name in FUNCS_BYTES:
        assert getattr(PY, name)(value) == getattr(C, name)(value), name
    n = len(value)
    for a, b in ((0, n), (1, n), (0, max(0, n - 1)), (n // 2, n + 5)):
        assert PY.split_header(value, a, b) == C.split_header(value, a, b)
        assert PY.count_lines(value, a, b) == C.count_lines(value, a, b)
        assert PY.find_parts(value, a, b, b"b") == C.find_parts(value, a, b, b"b")
    text = PY.bytes_to_str(value)
    assert PY.normalize(text) == C.normalize(text)
    assert PY.html_to_text(text) == C.html_to_text(text)


def _same_index(raw: bytes):
    a = index_with(raw, PY)
    b = index_with(raw, C)
    assert a == b
    assert PY.build(raw) == C.build(raw)  # neither fell back to the opaque index


@needs_c
@pytest.mark.parametrize("value", HEADER_VALUES)
def test_functions_agree_on_header_values(value):
    _same_everywhere(value)
    assert PY.params_2231(PY.parse_params(value)[1]) == C.params_2231(C.parse_params(value)[1])


@needs_c
def test_corpus_indexes_agree():
    for raw in CORPUS:
        _same_index(raw)


@needs_c
def test_corpus_functions_agree():
    for raw in CORPUS[::7]:
        _same_everywhere(raw[:3000])


def test_whitespace_table_matches_str_isspace():
    # msgindex_c hard-codes str.isspace() for its normalize(); keep it honest
    spaces = [c for c in range(0x110000) if chr(c).isspace()]
    text = "".join("a" + chr(c) for c in spaces) + "b"
    assert PY.normalize(text) == " ".join(["a"] * len(spaces) + ["b"]).replace(" b", " b")
    if C is not None:
        assert C.normalize(text) == PY.normalize(text)


_HDR_NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Content-Type", "Message-ID",
                              "Content-Transfer-Encoding", "Content-Disposition", "X-Junk"])
_HDR_VALUES = st.one_of(
    st.sampled_from(HEADER_VALUES),
    st.sampled_from([b"multipart/mixed; boundary=b", b"message/rfc822", b"base64",
                     b"quoted-printable", b"text/html; charset=koi8-r", b"multipart/digest; boundary=b"]),
    st.binary(max_size=60),
)


@st.composite
def messages(draw, depth=0):
    lines = [draw(_HDR_NAMES).encode() + b": " + draw(_HDR_VALUES)
             for _ in range(draw(st.integers(0, 6)))]
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    if depth < 3 and draw(st.booleans()):
        lines.append(b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"alternative", b"related"]))
                     + b"; boundary=b" + str(depth).encode())
        body = b""
        for _ in range(draw(st.integers(0, 3))):
            body += b"--b" + str(depth).encode() + eol + draw(messages(depth + 1)) + eol
        if draw(st.booleans()):
            body += b"--b" + str(depth).encode() + b"--" + eol
    else:
        body = draw(st.binary(max_size=200)) if draw(st.booleans()) else draw(st.text(max_size=80)).encode()
    return eol.join(lines) + eol + draw(st.sampled_from([eol, b""])) + body


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_agree(raw):
    _same_index(raw)
    _same_everywhere(raw)


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_structured_messages_agree(raw):
    _same_index(raw)


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_normalize_agrees(text):
    assert PY.normalize(text) == C.normalize(text)
