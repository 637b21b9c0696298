"""The message index: golden IMAP wire forms, robustness, fetch helpers, storage form."""
import pathlib
import sys

import pytest

from mailaccess.mime.index import (
    FORMAT_VERSION, UnknownCTE, base_subject, body_text, decode_index, decoded_part, encode_index, header_fields,
    index_field, index_message, normalize_search, part_bytes,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent / "corpus"))
import make_corpus  # noqa: E402

CORPUS_DIR = pathlib.Path(__file__).parent / "corpus"


def ugly(name: str) -> bytes:
    return (CORPUS_DIR / name).read_bytes()


RFC3501_HEADER = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"
)


def test_rfc3501_fetch_example():
    # RFC 3501 section 8 / 7.4.2: 3028 octets in 92 lines of US-ASCII text
    body = b"".join(b"%-31d\r\n" % i for i in range(91)) + b"x" * (3028 - 91 * 33) + b"\r\n"
    body = body[:3028 - 2] + b"\r\n" if len(body) > 3028 else body
    assert len(body) == 3028 and body.count(b"\n") == 92
    mi = index_message(RFC3501_HEADER + body)
    assert mi.body == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    assert mi.bodystructure == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'
    # the RFC's example puts a space between the two cc addresses; its ABNF
    # (env-cc = "(" 1*address ")") and every server do not
    assert mi.envelope == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>")'
    )
    assert mi.sent_at == 837595405 and mi.sent_at_tz == -420
    assert mi.message_id == "B27397-0100000@cac.washington.edu"
    assert mi.cc == ((None, "minutes@CNRI.Reston.VA.US"), ("John Klensin", "KLENSIN@MIT.EDU"))
    assert mi.lines == 92 and mi.header_end == len(RFC3501_HEADER)


MIXED = (
    b"From: =?utf-8?q?J=C3=B6rg?= <j@x.de>\r\nSubject: =?iso-8859-1?q?caf=E9?= =?iso-8859-1?q?_ok?=\r\n"
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\npreamble\r\n"
    b"--XX\r\nContent-Type: multipart/alternative; boundary=\"YY\"\r\n\r\n"
    b"--YY\r\n\r\nplain text\r\n"
    b"--YY\r\nContent-Type: text/html\r\n\r\n<p>Hello &amp; <b>bye</b></p>\r\n--YY--\r\n"
    b"--XX\r\nContent-Type: application/pdf; name*=utf-8''%E2%82%AC.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename*0=\"a\"; filename*1=\"b.pdf\"\r\n\r\nAAAA\r\nAAA=\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
    b"--XX--\r\nepilogue\r\n"
)


def test_multipart_golden():
    mi = index_message(MIXED)
    assert mi.bodystructure == (
        # body-fld-lines counts line ends; the CRLF before a boundary belongs to
        # the delimiter (Dovecot agrees); text without charset shows us-ascii
        b'((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 29 0 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "YY") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME*" "utf-8\'\'%E2%82%AC.pdf") NIL NIL "BASE64" 10 NIL '
        b'("ATTACHMENT" ("FILENAME" "ab.pdf")) NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 28 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "XX") NIL NIL NIL)'
    )
    assert mi.body == (
        b'((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 29 0)'
        b' "ALTERNATIVE")("APPLICATION" "PDF" ("NAME*" "utf-8\'\'%E2%82%AC.pdf") NIL NIL "BASE64" 10)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 28 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0) 2) "MIXED")'
    )
    assert mi.subject == "café ok"
    assert mi.from_ == (("Jörg", "j@x.de"),)
    assert [p.section for p in mi.parts] == ["", "1", "1.1", "1.2", "2", "3", "3.1"]
    assert mi.text_body == ("1.1",) and mi.html_body == ("1.2",) and mi.attachments == ("2", "3")
    assert mi.has_attachment
    assert mi.preview == "plain text"
    assert "hello & bye" in mi.search_body and "inner body" in mi.search_body and "ab.pdf" in mi.search_body
    assert mi.jmap_body["subParts"][1]["name"] == "ab.pdf"
    assert mi.jmap_body["subParts"][1]["size"] == 5
    assert part_bytes(MIXED, mi, "1.1") == b"plain text"
    assert part_bytes(MIXED, mi, "1.2", "MIME") == b"Content-Type: text/html\r\n\r\n"
    assert part_bytes(MIXED, mi, "3", "HEADER") == b"Subject: inner\r\n\r\n"
    assert part_bytes(MIXED, mi, "3", "TEXT") == b"inner body"
    assert part_bytes(MIXED, mi, "3.1") == b"inner body"
    assert part_bytes(MIXED, mi, "2", "HEADER") is None
    assert part_bytes(MIXED, mi, "9") is None
    assert part_bytes(MIXED, mi, "", "HEADER") == MIXED[: mi.header_end]
    assert part_bytes(MIXED, mi, "", "TEXT") == MIXED[mi.header_end:]
    assert decoded_part(MIXED, mi, "2") == b"\0" * 5
    assert body_text(MIXED, mi, "1.2") == "<p>Hello &amp; <b>bye</b></p>"


def test_non_multipart_section_one_is_the_body():
    raw = b"Subject: x\r\n\r\nbody\r\n"
    mi = index_message(raw)
    assert part_bytes(raw, mi, "1") == b"body\r\n"
    assert part_bytes(raw, mi, "") == raw
    assert part_bytes(raw, mi, "2") is None


def test_header_fields():
    hdr = b"From: a@b\r\nSubject: one\r\n two\r\nX-A: 1\r\n\r\n"
    assert header_fields(hdr, ["subject", "X-A"], False) == b"Subject: one\r\n two\r\nX-A: 1\r\n\r\n"
    assert header_fields(hdr, ["SUBJECT"], True) == b"From: a@b\r\nX-A: 1\r\n\r\n"
    assert header_fields(hdr, ["nothing"], False) == b"\r\n"


@pytest.mark.parametrize("subject, base", [
    ("Re: hello", "hello"), ("RE: Re: FWD: hello", "hello"), ("[list] Re: hello", "hello"),
    ("Re: [list] hello (fwd)", "hello"), ("[fwd: Re: hi]", "hi"), ("[only blob]", "[only blob]"),
    ("  lots   of\t space  ", "lots of space"), ("Fw[x]: y", "y"), ("", ""), ("re:", ""),
])
def test_base_subject(subject, base):
    assert base_subject(subject) == base


def test_normalize_search():
    assert normalize_search("  Straße\tFOO\n bar ") == "strasse foo bar"
    mi = index_message(b"Subject: x\r\n\r\nHello   STRASSE\r\nworld\r\n")
    assert normalize_search("strasse  WORLD") in mi.search_body


# ---------------------------------------------------------------- ugly mail


def test_missing_close_boundary():
    raw = ugly("01-missing-close-boundary.eml")
    mi = index_message(raw)
    assert [p.section for p in mi.parts] == ["", "1", "2"]
    assert part_bytes(raw, mi, "2").endswith(b"runs to the end\r\n")


def test_missing_boundary_param_is_text():
    mi = index_message(ugly("02-no-boundary-param.eml"))
    assert mi.bodystructure.startswith(b'("TEXT" "PLAIN"')


def test_bad_base64_is_lenient():
    raw = ugly("03-bad-base64.eml")
    mi = index_message(raw)
    assert body_text(raw, mi, "1").startswith("Hello world")


def test_unknown_cte():
    raw = ugly("04-unknown-cte.eml")
    mi = index_message(raw)
    assert b'"X-UUENCODE"' in mi.bodystructure
    with pytest.raises(UnknownCTE):
        decoded_part(raw, mi, "1")


def test_8bit_headers():
    mi = index_message(ugly("05-8bit-headers.eml"))
    assert mi.subject == "Réunion à 14h — café"
    assert mi.from_ == (("Jérôme Lévêque", "j@example.fr"),)
    assert "x-latin1: café crème" in mi.search_headers
    assert b"{" in mi.envelope  # 8-bit values go out as literals


def test_bare_lf():
    raw = ugly("06-bare-lf.eml")
    mi = index_message(raw)
    assert part_bytes(raw, mi, "1") == b"line one\nline two"
    assert mi.text_body == ("1",) and mi.html_body == ("2",)
    assert "line one" in mi.search_body


def test_no_separator_and_empty():
    raw = ugly("07-no-separator.eml")
    mi = index_message(raw)
    assert mi.header_end == len(raw) and mi.subject == "header only, no blank line"
    mi = index_message(b"")
    assert mi.size == 0 and mi.header_end == 0 and mi.lines == 0
    assert mi.envelope == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_nested_rfc822():
    raw = ugly("09-nested-rfc822.eml")
    mi = index_message(raw)
    assert [p.section for p in mi.parts] == ["", "1", "1.1", "1.2", "1.2.1"]
    assert part_bytes(raw, mi, "1.1") == b"Caf=E9 inside=\r\n a message"
    assert decoded_part(raw, mi, "1.1") == b"Caf\xe9 inside a message"
    assert part_bytes(raw, mi, "1.2.1") == b"deep text"
    assert part_bytes(raw, mi, "1.2", "HEADER") == b"Subject: innermost\r\n\r\n"
    assert "café inside a message" in mi.search_body and "deep text" in mi.search_body


def test_encoded_words():
    raw = ugly("10-encoded-words.eml")
    mi = index_message(raw)
    assert mi.subject == "If you can read this you understand the example."
    assert mi.from_ == (("Keld Jørn Simonsen", "keld@example.dk"),)
    assert mi.to[1] == ("André Pirard", "PIRARD@example.be")
    assert mi.cc[0][0] == "=?x-bogus?q?kept_raw?="
    assert "x-split: é\ufffd€" in mi.search_headers
    assert b'"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?="' in mi.envelope


def test_rfc2231():
    mi = index_message(ugly("11-rfc2231.eml"))
    part = mi.jmap_body["subParts"][0]
    assert part["name"] == "€ rates.txt"
    assert b'"TITLE*" "us-ascii\'en\'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!"' \
        in mi.bodystructure


def test_groups_and_routes():
    mi = index_message(ugly("12-groups.eml"))
    env = mi.envelope
    assert b'((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")' \
           b'("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL)(NIL NIL "Undisclosed recipients" NIL)' \
           b'(NIL NIL NIL NIL))' in env
    assert b'((NIL "@route1,@route2" "user" "host.test"))' in env
    assert b'("Giant; \\"Big\\" Box" NIL' not in env and b"Big" in env
    assert mi.reply_to == (("Pete", "pete@silly.test"),)
    assert mi.bcc == (("Ed Jones", "c@a.test"), (None, "joe@where.test"), ("John", "jdoe@one.test"))


def test_deep_multipart_is_bounded():
    raw = ugly("13-deep-multipart.eml")
    mi = index_message(raw)
    assert len(mi.parts) <= 25
    assert mi.bodystructure.count(b"(") < 100


def test_related_inline():
    mi = index_message(ugly("14-related-inline.eml"))
    assert mi.html_body == ("1",) and mi.text_body == ("1",)
    assert mi.attachments == ("2",)
    assert mi.jmap_body["subParts"][1]["cid"] == "img1@x"
    assert "caption é" in mi.search_body


def test_boundary_prefixes():
    raw = ugly("15-crlf-in-boundary-prefix.eml")
    mi = index_message(raw)
    assert part_bytes(raw, mi, "1") == b"one\r\n--abcd"
    assert part_bytes(raw, mi, "2") == b"two"


def test_huge_header():
    raw = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(20000)) + b"Subject: s\r\n\r\nb\r\n"
    assert len(raw) > 900_000
    mi = index_message(raw)
    assert mi.subject == "s" and mi.header_end == len(raw) - 3


def test_nesting_limit():
    raw = b"Subject: x\r\n\r\nx"
    for _ in range(40):
        raw = b"Content-Type: message/rfc822\r\n\r\n" + raw
    mi = index_message(raw)
    assert len(mi.parts) <= 23


@pytest.mark.parametrize("raw", [b"", b"\r\n", b"\xff" * 50, b":", b"A:\r\n\r\n", bytes(range(256))])
def test_never_raises(raw):
    index_message(raw)


# ---------------------------------------------------------------- storage form


def test_storage_round_trip_over_corpus():
    for raw in make_corpus.corpus(120):
        mi = index_message(raw)
        data = encode_index(mi)
        assert data[0] == FORMAT_VERSION
        assert decode_index(data) == mi
        view = memoryview(data)
        for name in ("envelope", "bodystructure", "body"):
            assert index_field(view, name) == getattr(mi, name)
        assert index_field(data, "search_body").decode() == mi.search_body


def test_corpus_invariants():
    for raw in make_corpus.corpus(120):
        mi = index_message(raw)
        assert mi.size == len(raw)
        assert 0 <= mi.header_end <= len(raw)
        assert len(mi.preview) <= 256
        for p in mi.parts:
            assert p.header_start <= p.body_start <= p.end <= len(raw)
            assert part_bytes(raw, mi, p.section) is not None


# ---------------------------------------------------------------- versioned storage form

import json  # noqa: E402
import struct  # noqa: E402
from dataclasses import fields as _dc_fields  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

from mailaccess.mime import index as mindex  # noqa: E402
from mailaccess.mime.index import IndexFormatError, MessageIndex, Part  # noqa: E402

# The version 1 encoder as it shipped (meta = a JSON list by field position):
# kept here, frozen, to make the records existing stores hold.
_V1_HEAD = struct.Struct(">B7I")
_V1_META = ("size", "header_end", "lines", "parts", "subject", "from_", "to", "cc", "bcc",
            "reply_to", "sender", "sent_at", "sent_at_tz", "message_id", "in_reply_to",
            "references", "has_attachment", "jmap_body", "text_body", "html_body",
            "attachments")


def encode_v1(mi: MessageIndex) -> bytes:
    meta = [getattr(mi, name) for name in _V1_META]
    blobs = [
        mi.envelope, mi.bodystructure, mi.body,
        mi.search_headers.encode("utf-8", "surrogatepass"),
        mi.search_body.encode("utf-8", "surrogatepass"),
        mi.preview.encode("utf-8", "surrogatepass"),
        json.dumps(meta, separators=(",", ":")).encode("ascii"),
    ]
    ends, pos = [], 0
    for b in blobs:
        pos += len(b)
        ends.append(pos)
    return _V1_HEAD.pack(1, *ends) + b"".join(blobs)


def _with_meta(data: bytes, edit) -> bytes:
    """DATA with its meta JSON replaced by edit(decoded meta), re-framed."""
    h = mindex._HEAD
    ver, *ends = h.unpack_from(data)
    meta = edit(json.loads(data[h.size + ends[5]:]))
    new_meta = json.dumps(meta, separators=(",", ":")).encode("ascii")
    return h.pack(ver, *ends[:6], ends[5] + len(new_meta)) + data[h.size:h.size + ends[5]] + \
        new_meta


def test_v1_layout_is_the_one_that_shipped():
    assert mindex._META_V1 == _V1_META
    assert mindex._HEAD.format == _V1_HEAD.format
    # every field of version 1 is still a field (or decoding v1 would need a mapping)
    assert set(_V1_META) <= {f.name for f in _dc_fields(MessageIndex)}


def test_encode_writes_the_current_version_keyed_by_name():
    mi = index_message(RFC3501_HEADER + b"hello\r\n")
    data = encode_index(mi)
    assert data[0] == mindex.FORMAT_VERSION == 2
    assert mindex.index_version(data) == 2
    meta = json.loads(index_field(data, "meta"))
    assert isinstance(meta, dict)
    assert meta["subject"] == "IMAP4rev1 WG mtg summary and minutes"
    assert set(meta) == set(mindex._META)


def test_reads_version_1_records():
    for raw in make_corpus.corpus(120):
        mi = index_message(raw)
        old = encode_v1(mi)
        assert mindex.index_version(old) == 1
        assert decode_index(old) == mi
        for name in ("envelope", "bodystructure", "body"):
            assert index_field(memoryview(old), name) == getattr(mi, name)
        assert mindex.index_fields(old, ("envelope", "body")) == [mi.envelope, mi.body]
        assert index_field(old, "search_body").decode() == mi.search_body


def test_unknown_names_and_trailing_part_values_are_ignored():
    mi = index_message(RFC3501_HEADER + b"hello\r\n")

    def add(meta):
        meta["jmapFutureProperty"] = {"anything": [1, 2]}
        meta["zzz"] = None
        meta["parts"] = [p + ["a later Part field", 7] for p in meta["parts"]]
        return meta

    assert decode_index(_with_meta(encode_index(mi), add)) == mi


def test_a_field_with_a_default_may_be_missing(monkeypatch):
    """A field added later (with a default) is absent from older records of the
    same version: they decode with the default, no bump, no reindex."""
    mi = index_message(RFC3501_HEADER + b"hello\r\n")
    data = _with_meta(encode_index(mi), lambda m: {k: v for k, v in m.items()
                                                   if k != "has_attachment"})
    with pytest.raises(IndexFormatError, match="has_attachment"):
        decode_index(data)
    monkeypatch.setitem(mindex._DEFAULTS, "has_attachment", False)
    assert decode_index(data) == mi


def test_missing_required_name_raises_a_clear_error():
    mi = index_message(RFC3501_HEADER + b"hello\r\n")
    data = _with_meta(encode_index(mi), lambda m: {k: v for k, v in m.items() if k != "parts"})
    with pytest.raises(IndexFormatError, match=r"required field 'parts'.*mailaccess reindex"):
        decode_index(data)


@pytest.mark.parametrize("version", [0, 3, 99, 255])
def test_unknown_version_raises(version):
    data = bytearray(encode_index(index_message(RFC3501_HEADER + b"hello\r\n")))
    data[0] = version
    for call in (lambda: decode_index(bytes(data)),
                 lambda: index_field(bytes(data), "envelope"),
                 lambda: mindex.index_field_span(memoryview(data), "search_body"),
                 lambda: mindex.index_fields(bytes(data), ("envelope",))):
        with pytest.raises(IndexFormatError, match=f"version {version}"):
            call()
    if version > mindex.FORMAT_VERSION:
        with pytest.raises(ValueError, match="newer"):
            decode_index(bytes(data))


def test_empty_record_raises():
    with pytest.raises(IndexFormatError):
        decode_index(b"")
    assert mindex.index_version(b"") == 0
    assert mindex.index_version(None) == 0


def test_damaged_meta_shape_raises():
    mi = index_message(RFC3501_HEADER + b"hello\r\n")
    with pytest.raises(IndexFormatError, match="damaged"):
        decode_index(_with_meta(encode_index(mi), lambda m: list(m.values())))
    with pytest.raises(IndexFormatError, match="damaged"):
        decode_index(_with_meta(encode_v1(mi), lambda m: m[:-1]))


# hypothesis: any MessageIndex value survives the storage form by name

_text = st.text(max_size=30)
_addr = st.tuples(st.none() | _text, _text)
_addrs = st.lists(_addr, max_size=3).map(tuple)
_strs = st.lists(_text, max_size=3).map(tuple)
_int = st.integers(min_value=-(2 ** 53), max_value=2 ** 53)
_part = st.builds(Part, _text, _int, _int, _int, _text, _text, st.none() | _text, _int)
_json = st.recursive(st.none() | st.booleans() | _int | _text,
                     lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(_text, inner, max_size=3), max_leaves=8)
_message_index = st.builds(
    MessageIndex,
    size=_int, header_end=_int, lines=_int, envelope=st.binary(max_size=40),
    bodystructure=st.binary(max_size=40), body=st.binary(max_size=40),
    parts=st.lists(_part, max_size=3).map(tuple), subject=_text,
    from_=_addrs, to=_addrs, cc=_addrs, bcc=_addrs, reply_to=_addrs, sender=_addrs,
    sent_at=st.none() | _int, sent_at_tz=st.none() | st.integers(-1439, 1439),
    message_id=st.none() | _text, in_reply_to=_strs, references=_strs,
    search_headers=_text, search_body=_text, preview=_text, has_attachment=st.booleans(),
    jmap_body=st.dictionaries(_text, _json, max_size=4),
    text_body=_strs, html_body=_strs, attachments=_strs,
)


@settings(max_examples=200, deadline=None)
@given(_message_index)
def test_round_trip_by_name(mi):
    data = encode_index(mi)
    assert decode_index(data) == mi
    assert decode_index(encode_v1(mi)) == mi
    for name in ("envelope", "bodystructure", "body"):
        assert index_field(data, name) == getattr(mi, name)
    assert index_field(data, "preview").decode("utf-8", "surrogatepass") == mi.preview
