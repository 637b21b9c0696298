"""mime/jmapbody.py: part selection (RFC 8621 §4.1.4 parseStructure) and
body text (transfer and charset decoding, CRLF, truncation) with bounded
work; both indexer twins."""
from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import example, given, settings, strategies as st

from mailaccess.mime import index as mindex
from mailaccess.mime import jmapbody
from mailaccess.mime.parts import Part

from conftest import twin_params


def _node(t, pid=None, disp=None, name=None, subs=None):
    n = {"type": t, "partId": pid, "disposition": disp, "name": name}
    if subs is not None:
        n["subParts"] = subs
    return n


def test_parse_structure_alternative_inside_alternative_branch():
    """alternative > mixed > [text/plain, alternative > [text/html]]: the
    RFC's pseudo-code would push to a null htmlBody; the part goes to neither."""
    root = _node("multipart/alternative", subs=[
        _node("multipart/mixed", subs=[
            _node("text/plain", "1.1"),
            _node("multipart/alternative", subs=[_node("text/html", "1.2.1")])])])
    text, html, att = jmapbody.parse_structure(root)
    assert [p["partId"] for p in text] == ["1.1"]
    assert [p["partId"] for p in html] == ["1.1"]     # plain text only: shared
    assert att == []


@pytest.mark.parametrize("impl", twin_params("msgindex"))
def test_indexer_does_not_fall_back_on_that_shape(impl):
    raw = (b"From: a@b\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n--A\r\n"
           b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n"
           b"plain\r\n--B\r\nContent-Type: multipart/alternative; boundary=C\r\n\r\n--C\r\n"
           b"Content-Type: text/html\r\n\r\n<b>h</b>\r\n--C--\r\n--B--\r\n--A--\r\n")
    mi = mindex.index_with(raw, impl)
    assert mi.jmap_body["type"] == "multipart/alternative"     # not the opaque fallback
    assert mi.text_body == ("1.1",) and mi.html_body == ("1.1",)


def test_parse_structure_related_and_names():
    root = _node("multipart/mixed", subs=[
        _node("multipart/related", subs=[
            _node("text/html", "1.1"), _node("image/png", "1.2"),
            _node("text/plain", "1.3")]),
        _node("text/plain", "2", name="notes.txt"),
        _node("image/gif", "3"),
        _node("text/plain", "4", disp="attachment")])
    text, html, att = jmapbody.parse_structure(root)
    assert [p["partId"] for p in text] == ["1.1", "3"]
    assert [p["partId"] for p in html] == ["1.1", "3"]
    assert [p["partId"] for p in att] == ["1.2", "1.3", "2", "4"]


# --- truncation ------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.integers(0, 400), st.booleans())
@example("<p>ab<a href='x'>", 8, True)
def test_truncate_utf8(text, n, html):
    cut, truncated = jmapbody.truncate_utf8(text, n, html)
    size = len(text.encode("utf-8", "surrogatepass"))
    if n == 0 or size <= n:
        assert (cut, truncated) == (text, False)
        return
    assert truncated and text.startswith(cut)
    assert len(cut.encode("utf-8", "surrogatepass")) <= n
    if html:
        assert cut.rfind("<") <= cut.rfind(">")
    else:
        # as long as possible: the next character would not fit
        assert len(text[:len(cut) + 1].encode("utf-8", "surrogatepass")) > n


# --- body values -------------------------------------------------------------------------

def _part(body: bytes, encoding: str, charset: str | None, ctype="text/plain") -> tuple[bytes, Part]:
    header = b"Content-Type: text/plain\r\n\r\n"
    raw = header + body
    return raw, Part("1", 0, len(header), len(raw), ctype, encoding, charset)


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(data).replace(b"\n", b"\r\n")
    if encoding == "quoted-printable":
        # binary mode: CR and LF as =0D =0A, soft line breaks only
        return binascii.b2a_qp(data, istext=False).replace(b"=\n", b"=\r\n")
    return data


charsets = st.sampled_from(["utf-8", "iso-8859-2", "utf-16", "shift_jis", "iso-2022-jp",
                            "windows-1252", None])
encodings = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable"])


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
       st.integers(1, 60), charsets, encodings, st.integers(1, 200))
def test_prefix_decoding_equals_whole_decoding(text, repeat, charset, encoding, max_bytes):
    """With maxBodyValueBytes, body_value decodes a bounded prefix; the
    answer is the one decoding the whole part would give."""
    text = text.replace("\r", "") * repeat
    try:
        data = text.replace("\n", "\r\n").encode(charset or "us-ascii")
        if data.decode(charset or "us-ascii") != text.replace("\n", "\r\n"):
            # not round-trippable (Python's shift_jis writes U+00A5 as 0x5C,
            # which reads back as "\\"): the charset cannot carry this text
            raise UnicodeEncodeError(charset, text, 0, 1, "no round trip")
    except UnicodeEncodeError:
        data = text.replace("\n", "\r\n").encode("utf-8")
        charset = "utf-8"
    raw, part = _part(_encode(data, encoding), encoding, charset)
    got = jmapbody.body_value(raw, part, max_bytes)
    whole = jmapbody._decoded(bytes(raw[part.body_start:part.end]), part, max_bytes,
                              False, partial=False)
    assert got == whole
    assert got.value == jmapbody.truncate_utf8(text, max_bytes)[0]
    assert not got.is_encoding_problem


def test_big_part_prefix_is_bounded(monkeypatch):
    """A 4 MB part asked for 100 octets decodes a few KB, not 4 MB."""
    body = ("x" * 76 + "\r\n").encode() * 52000
    raw, part = _part(body, "8bit", "utf-8")
    seen = []
    real = jmapbody.decode_text
    monkeypatch.setattr(jmapbody, "decode_text", lambda d, c: seen.append(len(d)) or real(d, c))
    v = jmapbody.body_value(raw, part, 100)
    assert v.is_truncated and v.value == "x" * 76 + "\n" + "x" * 23
    assert max(seen) < 10_000


def test_crlf_and_problems():
    raw, part = _part(b"a\r\nb\rc\n", "7bit", "utf-8")
    assert jmapbody.body_value(raw, part).value == "a\nb\rc\n"
    raw, part = _part(b"caf\xe9", "8bit", None)     # us-ascii with Latin-1 bytes
    v = jmapbody.body_value(raw, part)
    assert v.value == "café" and v.is_encoding_problem
    raw, part = _part("café".encode(), "8bit", None)  # us-ascii with UTF-8: a heuristic
    v = jmapbody.body_value(raw, part)
    assert v.value == "café" and not v.is_encoding_problem
    raw, part = _part(b"QUJD!!!", "base64", "utf-8")  # junk in base64
    v = jmapbody.body_value(raw, part)
    assert v.value.startswith("ABC") and v.is_encoding_problem
