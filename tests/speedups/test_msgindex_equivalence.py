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


# ---- the C-only rewrites: HTML stripping, dates, charset decoders, b64, unfold

_HTML_BITS = [
    "<", ">", "/", "!", "-", "--", "<!--", "-->", "script", "SCRIPT", "\u017fcript", "style", "head", "title",
    "<script>", "</script>", "</ScRiPt >", "</script\n>", "<br>", "<BR/>", "<p class=x>", "<pre>", "<p", "<h1>",
    "<h7>", "<hr>", "<blockquote>", "<td>", "<tr>", "<div>", "</div>", "<li>", "<b>", "&amp;", "&copy;",
    "&#8364;", "&nbsp;", "&lt;p&gt;", " ", "\n", "a", "\u00e9", "\u65e5", "\U0001f642", "_", "1", "K", "\u212a",
    "\u0130", "\u0131", "<t\u0130tle>", "</t\u0131tle>", "\u2003", "<scripts>", "<script_>", "<head>", "</HEAD>",
    "</title >", "<STYLE type=x>", "</style>", "<bloc\u212aquote>",
]


@needs_c
@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_HTML_BITS), max_size=16).map("".join) | st.text(max_size=60))
def test_html_to_text_agrees(text):
    assert PY.html_to_text(text) == C.html_to_text(text)


@needs_c
@pytest.mark.parametrize("c", [0x130, 0x131, 0x17F, 0x212A, 0x5F, 0x30, 0xB2, 0x2003, 0x85, 0xA0])
def test_html_to_text_regex_corners(c):
    ch = chr(c)
    for t in ("<br" + ch + ">", "<" + ch + "r>", "<script" + ch + ">x</script>", "<script>x</scrip" + ch + ">",
              "<script>x</script" + ch + ">", "<s" + ch + "ript>x</s" + ch + "ript>", "<tit" + ch + "e>1</title>"):
        assert PY.html_to_text(t) == C.html_to_text(t), t


_DATE_BITS = ["Mon,", "Tue", "wed,", "x,", "1", "01", "31", "99", "0", "Jan", "feb", "MAR", "December", "Sept",
              "1999", "69", "68", "0000", "100", "12345", "2024,", "10:00", "23:59:59", "1:2:3", "10:00,",
              "10.00.00", "24:61:61", "+0000", "-0000", "-0700", "+0530", "+1260", "GMT", "est", "Z", "(UTC)",
              "+5", "0530", "1-Jan-99", ",", "-"]


@st.composite
def _dates(draw):
    if draw(st.booleans()):
        return " ".join(draw(st.lists(st.sampled_from(_DATE_BITS), max_size=8))).encode()
    return ("%s%d %s %d %02d:%02d%s%s" % (
        draw(st.sampled_from(["", "Mon, ", "Sun,"])), draw(st.integers(0, 40)),
        draw(st.sampled_from(["Jan", "feb", "DEC", "June"])), draw(st.sampled_from([5, 69, 99, 100, 1999, 9999])),
        draw(st.integers(0, 30)), draw(st.integers(0, 70)), draw(st.sampled_from(["", ":07", ":9"])),
        draw(st.sampled_from(["", " +0000", " -0700", " +0530", " EST", " -0000", " (garbage)", " +0000 (UTC)"])),
    )).encode()


@needs_c
@settings(max_examples=500, deadline=None)
@given(_dates() | st.binary(max_size=40))
def test_dates_agree(value):
    assert PY._date(value) == C._date(value)


_CHARSETS = ["utf-8", "UTF-8", "us-ascii", "iso-8859-1", "latin1", "iso-8859-15", "windows-1252", "koi8-r",
             "cp1251", "shift_jis", "euc-jp", "iso-2022-jp", "gb2312", "big5", "euc-kr", "utf-16", "utf-7",
             '"koi8-r"', "utf-8*en", "x-unknown", "bogus", "", "idna", "punycode", "rot13", "base64", "mac-roman"]


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.sampled_from(_CHARSETS))
def test_charset_decoding_agrees(data, charset):
    assert PY.decode_charset(data, charset) == C.decode_charset(data, charset)
    assert PY.decode_text(data, charset) == C.decode_text(data, charset)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80) | st.text("ABCabc019+/= \r\n\t-", max_size=80).map(str.encode))
def test_b64_and_unfold_agree(data):
    assert PY.decode_b64(data) == C.decode_b64(data)
    assert PY.b64_size(data) == C.b64_size(data)
    assert PY.unfold(data) == C.unfold(data)
    assert PY.count_lines(data, 0, len(data)) == C.count_lines(data, 0, len(data))


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("aZ \t\u00df\u00b5\u0130\u2003\ufb03\U00010400\U0001f642\x00\x85"), max_size=60))
def test_normalize_folds_agree(text):
    assert PY.normalize(text) == C.normalize(text)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("aZ:=?_ \t\r\n\x0b\x0c\x1c\x1f\x00\x7f"), max_size=40).map(str.encode)
       | st.binary(max_size=40))
def test_search_headers_agree(value):
    # build() normalises plain ASCII header fields straight from the bytes
    raw = b"Subject: " + value + b"\r\nX-A:" + value + b"\r\n\r\nbody"
    assert PY.build(raw)[19] == C.build(raw)[19]
    _same_index(raw)


@pytest.mark.parametrize("mod", [PY, C], ids=["py", "c"])
@pytest.mark.parametrize("charset", ["windows-31j", "Windows-31J", "csWindows31J"])
def test_windows_31j_is_cp932_on_every_python(mod, charset):
    """IANA's Windows-31J (Microsoft's Shift_JIS) decodes as cp932 on every
    release: Python's codec registry knows the name only from 3.13 on, so
    such mail was undecodable text on 3.11 and 3.12."""
    if mod is None:
        pytest.skip("msgindex_c not built")
    assert mod.decode_text("日本語 ①".encode("cp932"), charset) == "日本語 ①"
