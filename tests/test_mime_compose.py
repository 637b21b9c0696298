"""mime/compose: what it writes, the server's own MIME index reads back as
the same structure (hypothesis round trips), with every line under 998
octets and boundaries that never collide with the content."""
from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailaccess.mime import compose as C
from mailaccess.mime import index as mindex

_text_chars = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_texts = st.text(_text_chars, max_size=200)
_names = st.text(_text_chars, min_size=1, max_size=90).filter(lambda s: s == s.strip())
_emails = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,20}@[a-z0-9]{1,12}\.[a-z]{2,6}", fullmatch=True)


@st.composite
def _leaf(draw):
    kind = draw(st.sampled_from(["text/plain", "text/html", "application/octet-stream",
                                 "image/png"]))
    name = draw(st.none() | _names)
    disp = draw(st.none() | st.sampled_from(["attachment", "inline"]))
    if kind.startswith("text/"):
        text = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000)
                    | st.text(st.sampled_from("ab =.\n\t\r é€"), max_size=3000))
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
        data = text.encode("utf-8")
        return C.BodyPart(kind, data, charset="utf-8", name=name, disposition=disp)
    data = draw(st.binary(max_size=3000) | st.sampled_from([b"--=_", b"x" * 2000, b"\r\n--"]))
    return C.BodyPart(kind, data, name=name, disposition=disp)


_tree = st.recursive(
    _leaf(),
    lambda kids: st.builds(
        lambda t, parts: C.BodyPart(t, parts=parts),
        st.sampled_from(["multipart/mixed", "multipart/alternative", "multipart/related"]),
        st.lists(kids, min_size=1, max_size=4)),
    max_leaves=8)


def _check(raw: bytes, mi, part: C.BodyPart, node: dict) -> None:
    assert node["type"] == part.type
    if part.parts is not None:
        assert len(node["subParts"]) == len(part.parts)
        for p, n in zip(part.parts, node["subParts"]):
            _check(raw, mi, p, n)
        return
    assert node["name"] == part.name
    want_disp = part.disposition or ("attachment" if part.name is not None else None)
    assert node["disposition"] == want_disp
    if part.type.startswith("text/"):
        assert node["charset"] == "utf-8"
        assert mindex.body_text(raw, mi, node["partId"]) == part.data.decode("utf-8")
    else:
        assert mindex.decoded_part(raw, mi, node["partId"]) == part.data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree, _texts, st.lists(st.tuples(st.none() | _names, _emails), max_size=4))
def test_round_trip_through_the_index(body, subject, addrs):
    headers = [("Subject", C.format_text(subject.strip()))]
    if addrs:
        headers.append(("To", C.format_addresses(addrs)))
    raw = C.compose(headers, body, now=1_700_000_000, domain="example.org")
    assert all(len(ln) <= C.MAX_LINE for ln in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"") or not raw[:raw.find(b"\r\n\r\n")].count(b"\n")
    mi = mindex.index_message(raw)
    assert raw[:mi.header_end].isascii()
    assert mi.subject == subject.strip()
    assert mi.to == tuple((n, e) for n, e in addrs)
    assert mi.message_id.endswith("@example.org")
    assert mi.sent_at == 1_700_000_000
    _check(raw, mi, body, mi.jmap_body)


@example(b"\xff" * 100 + b"a" * 300 + b" \r\n=" * 3)
@given(st.binary(max_size=2000))
def test_quoted_printable_decodes_back(data):
    import binascii
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    enc = C.encode_qp(data)
    assert all(len(ln) <= 76 for ln in enc.split(b"\r\n"))
    assert binascii.a2b_qp(enc) == data


@given(_names)
def test_long_and_international_parameters(name):
    raw = C.compose([], C.BodyPart("application/pdf", b"x", name=name + "é" * 40))
    mi = mindex.index_message(raw)
    assert mi.jmap_body["name"] == name + "é" * 40


def test_encoding_choice():
    assert C.choose_encoding("text/plain", b"hello\r\nworld") == "7bit"
    assert C.choose_encoding("text/plain", "héllo, mostly ASCII".encode()) == "quoted-printable"
    assert C.choose_encoding("text/plain", "日本語のテキスト".encode()) == "base64"
    assert C.choose_encoding("text/plain", b"x" * 1000) == "quoted-printable"
    assert C.choose_encoding("text/plain", b"bare\nlf") == "quoted-printable"
    assert C.choose_encoding("image/png", b"abc") == "7bit"
    assert C.choose_encoding("image/png", b"\x89PNG") == "base64"
    assert C.choose_encoding("message/rfc822", "Subject: é\r\n\r\nx".encode()) == "8bit"
    assert C.choose_encoding("message/rfc822", b"Subject: x\n\nx") == "base64"


def test_boundary_never_in_content():
    seq = iter(["aaaa", "aaaa", "bbbb"])
    evil = b"--=_aaaa\r\n"
    body = C.BodyPart("multipart/mixed", parts=[C.BodyPart("text/plain", evil)])
    raw = C.compose([], body, rand=lambda n: next(seq), domain="x")
    assert b'boundary="=_bbbb"' in raw


def test_date_message_id_and_mime_version_are_added_once():
    raw = C.compose([("Date", "Mon, 1 Jan 2024 00:00:00 +0000"), ("Message-ID", "<a@b>")],
                    C.BodyPart("text/plain", b"x"))
    assert raw.count(b"Date:") == 1 and raw.count(b"Message-ID:") == 1
    assert raw.count(b"MIME-Version: 1.0") == 1


@pytest.mark.parametrize("fn,arg", [
    (C.format_message_ids, ["a b"]), (C.format_message_ids, ["<x>"]),
    (C.format_urls, ["a b"]), (C.format_raw, "a\r\nb"), (C.format_raw, "a\x00"),
    (C.format_date, "2024-02-30T00:00:00Z"), (C.format_date, "yesterday"),
    (C.format_addresses, [(None, "a\r\n@b")]),
])
def test_bad_values_are_refused(fn, arg):
    with pytest.raises(C.ComposeError):
        fn(arg)


def test_long_words_fold_or_encode():
    word = "x" * 1200
    raw = C.compose([("Subject", C.format_text(word))], C.BodyPart("text/plain", b""))
    assert all(len(ln) <= 998 for ln in raw.split(b"\r\n"))
    assert mindex.index_message(raw).subject == word
    with pytest.raises(C.ComposeError):
        C.fold("X-Long", "y" * 1200)


def test_grouped_addresses():
    v = C.format_grouped([("Team, A", [("A", "a@x")]), (None, [(None, "b@x")]), ("Empty", [])])
    assert v == '"Team, A": A <a@x>;, b@x, Empty:;'


def test_base64_lines():
    raw = C.compose([], C.BodyPart("application/octet-stream", bytes(range(256)) * 10))
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert all(len(ln) <= 76 for ln in body.split(b"\r\n"))
    assert base64.b64decode(body) == bytes(range(256)) * 10
