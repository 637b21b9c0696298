"""An email as ActiveSync shows it (server/eas_item.py), at the layer: a
store on a temp dir, messages appended with store ops, rendered under a
view and read back as WBXML elements.  Hypothesis checks that truncation
never splits a UTF-8 character or an HTML tag and honours AllOrNone, and
that an attachment's byte ranges (eas_itemops.part_range) are exact."""
import base64
import quopri

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailaccess import ingest
from mailaccess.mime import index as mindex
from mailaccess.mime import lite_index
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.server import eas_item as I
from mailaccess.server import eas_itemops as IO
from mailaccess.store import Store, ops


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(str(tmp_path_factory.mktemp("eas_item")))
    acc = s.write_sync(ops.create_account, "alice", "x")
    with s.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    yield s, acc, inbox
    s.close()


def add(store, raw: bytes, keywords=()) -> int:
    s, acc, inbox = store
    return s.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, 1_700_000_000),
                        list(keywords)).email


def render(store, eid, version="16.1", *prefs, mime=0, schema=None):
    s, acc, _ = store
    kids = []
    for p in prefs:
        t, trunc, aon, pv = (tuple(p) + (None, None, None))[:4]
        bp = [E("AirSyncBase:Type", text=str(t))]
        if trunc is not None:
            bp.append(E("AirSyncBase:TruncationSize", text=str(trunc)))
        if aon:
            bp.append(E("AirSyncBase:AllOrNone", text="1"))
        if pv is not None:
            bp.append(E("AirSyncBase:Preview", text=str(pv)))
        kids.append(E("AirSyncBase:BodyPreference", *bp))
    if mime:
        kids.append(E("AirSync:MIMESupport", text=str(mime)))
    if schema:
        kids.append(E("ItemOperations:Schema", *[E(q) for q in schema]))
    opts = I.item_options(E("ItemOperations:Options", *kids) if kids else None, version)
    with s.view() as v:
        out = I.application_data(v, acc, eid, opts, version)
    if out is None:
        return None
    # through the codec, as a client sees it
    return decode(encode(E("AirSync:ApplicationData", *out)))


def text(doc, q):
    return doc.child_text(q)


def body(doc):
    b = doc.find("AirSyncBase:Body")
    d = b.find("AirSyncBase:Data")
    return {"type": int(b.child_text("AirSyncBase:Type")),
            "size": int(b.child_text("AirSyncBase:EstimatedDataSize")),
            "truncated": b.child_text("AirSyncBase:Truncated") == "1",
            "data": None if d is None else (d.text if d.text is not None else d.opaque),
            "preview": b.child_text("AirSyncBase:Preview")}


ALT = (b"From: \"Alice, A.\" <alice@example.com>\r\nTo: Bob <bob@example.org>, carol@example.net\r\n"
       b"Cc: Dave <dave@example.com>\r\nReply-To: list@example.com, other@example.com\r\n"
       b"Subject: Re: Fwd: meeting notes\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
       b"Importance: high\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/alternative; boundary=b1\r\n\r\n"
       b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello plain \xc3\xa9t\xc3\xa9\r\n"
       b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>html</b></p>\r\n--b1--\r\n")


def test_email_properties_and_versions(store):
    eid = add(store, ALT, ["$seen", "$flagged", "$answered", "work"])
    d = render(store, eid, "16.1", (2,))
    assert text(d, "Email:To") == '"Bob" <bob@example.org>, <carol@example.net>'
    assert text(d, "Email:Cc") == '"Dave" <dave@example.com>'
    assert text(d, "Email:From") == '"Alice, A." <alice@example.com>'
    assert text(d, "Email:ReplyTo") == "<list@example.com>; <other@example.com>"
    assert text(d, "Email:Subject") == "Re: Fwd: meeting notes"
    assert text(d, "Email:ThreadTopic") == "meeting notes"
    assert text(d, "Email:DisplayTo") == "Bob; carol@example.net"
    assert text(d, "Email:DateReceived") == "2023-11-14T22:13:20.000Z"
    assert text(d, "Email:Importance") == "2"
    assert text(d, "Email:Read") == "1"
    flag = d.find("Email:Flag")
    assert flag.child_text("Email:Status") == "2"
    assert flag.child_text("Email:FlagType") == "Flag for follow up"
    assert text(d, "Email:MessageClass") == "IPM.Note"
    assert text(d, "Email:InternetCPID") == "65001"
    assert text(d, "Email:ContentClass") == "urn:content-classes:message"
    assert text(d, "AirSyncBase:NativeBodyType") == "2"
    assert [c.text for c in d.find("Email:Categories").children] == ["work"]
    assert text(d, "Email2:LastVerbExecuted") == "1"
    assert len(d.find("Email2:ConversationId").opaque) == 16
    assert len(d.find("Email2:ConversationIndex").opaque) == 5
    assert text(d, "Email2:IsDraft") == "0"
    d14 = render(store, eid, "14.1", (2, None, None, 100))
    assert d14.find("Email2:ConversationId") is not None and d14.find("Email2:IsDraft") is None
    assert body(d14)["preview"] and "Hello" in body(d14)["preview"]
    d12 = render(store, eid, "12.1", (2, None, None, 100))
    for q in ("Email2:ConversationId", "Email2:ConversationIndex", "Email2:LastVerbExecuted",
              "Email:Categories", "Email2:IsDraft"):
        assert d12.find(q) is None, q
    assert body(d12)["preview"] is None
    assert text(d12, "Email:Subject") == "Re: Fwd: meeting notes"


def test_unflagged_unread_and_forwarded(store):
    eid = add(store, ALT.replace(b"Importance: high", b"X-Priority: 5 (Lowest)"),
              ["$forwarded", "$draft"])
    d = render(store, eid, "16.1")
    assert text(d, "Email:Read") == "0"
    assert d.find("Email:Flag").children == [] and d.find("Email:Categories") is None
    assert text(d, "Email:Importance") == "0"
    assert text(d, "Email2:LastVerbExecuted") == "3"
    assert text(d, "Email2:IsDraft") == "1"


def test_missing_email_is_none(store):
    assert render(store, 999_999, "14.1") is None


def test_body_choice(store):
    eid = add(store, ALT)
    plain = body(render(store, eid, "14.1", (1,)))
    assert plain["type"] == 1 and plain["data"] == "Hello plain été" and not plain["truncated"]
    assert plain["size"] == len("Hello plain été".encode())
    h = body(render(store, eid, "14.1", (2,)))
    assert h["type"] == 2 and h["data"] == "<p>Hello <b>html</b></p>"
    # both asked: the native type (HTML here)
    assert body(render(store, eid, "14.1", (1,), (2,)))["type"] == 2
    # MIME: with MIMESupport 2, or when it is all that is asked; not with MIMESupport 0
    m = body(render(store, eid, "14.1", (2,), (4,), mime=2))
    assert m["type"] == 4 and m["data"].encode() == ALT and m["size"] == len(ALT)
    assert body(render(store, eid, "14.1", (4,)))["type"] == 4
    assert body(render(store, eid, "14.1", (2,), (4,)))["type"] == 2
    # RTF is not made: plain text
    assert body(render(store, eid, "14.1", (3,)))["type"] == 1
    # no preference: plain
    assert body(render(store, eid, "14.1"))["type"] == 1


def test_plain_from_html_and_html_from_plain(store):
    only_html = (b"From: a@example.com\r\nSubject: h\r\nContent-Type: text/html\r\n\r\n"
                 b"<html><style>x{}</style><p>One &amp; two</p><p>three</p></html>\r\n")
    eid = add(store, only_html)
    p = body(render(store, eid, "14.1", (1,)))
    assert p["type"] == 1 and "One & two" in p["data"] and "<p>" not in p["data"]
    assert "x{}" not in p["data"]
    d = render(store, eid, "14.1", (1,))
    assert text(d, "AirSyncBase:NativeBodyType") == "2"
    only_plain = b"From: a@example.com\r\nSubject: p\r\n\r\na < b\r\nline two\r\n"
    eid = add(store, only_plain)
    h = body(render(store, eid, "14.1", (2,)))
    assert h["type"] == 2 and "a &lt; b<br>" in h["data"] and "line two" in h["data"]
    assert text(render(store, eid, "14.1", (2,)), "AirSyncBase:NativeBodyType") == "1"


def test_truncation_allornone_and_zero(store):
    eid = add(store, b"Subject: t\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
              + "é".encode() * 100)
    t = body(render(store, eid, "14.1", (1, 11)))
    assert t["truncated"] and t["data"] == "é" * 5 and t["size"] == 200
    a = body(render(store, eid, "14.1", (1, 11, True)))
    assert a["truncated"] and a["data"] is None and a["size"] == 200
    whole = body(render(store, eid, "14.1", (1, 1000, True)))
    assert not whole["truncated"] and whole["data"] == "é" * 100
    z = body(render(store, eid, "14.1", (1, 0)))
    assert z["truncated"] and z["data"] is None
    m = body(render(store, eid, "14.1", (4, 40), mime=2))
    assert m["truncated"] and len(m["data"].encode()) <= 40


def test_mime_that_is_not_utf8_goes_as_opaque_bytes(store):
    raw = b"Subject: latin\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n"
    eid = add(store, raw)
    m = body(render(store, eid, "14.1", (4,), mime=2))
    assert m["type"] == 4 and m["data"] == raw
    p = body(render(store, eid, "14.1", (1,)))
    assert p["data"] == "café\n"


MIXED = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=m\r\n\r\n"
         b"--m\r\nContent-Type: multipart/related; boundary=r\r\n\r\n"
         b"--r\r\nContent-Type: text/html\r\n\r\n<p><img src=\"cid:img1@x\"></p>\r\n"
         b"--r\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\x89PNG" * 10)
         + b"--r--\r\n"
         b"--m\r\nContent-Type: application/pdf; name=\"r\xc3\xa9port.pdf\"\r\n"
         b"Content-Disposition: attachment; filename=\"r\xc3\xa9port.pdf\"\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(bytes(range(256)) * 4)
         + b"--m\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n"
         b"--m--\r\n")


def test_attachments(store):
    eid = add(store, MIXED)
    d = render(store, eid, "16.1", (2,))
    atts = d.find("AirSyncBase:Attachments").children
    got = {a.child_text("AirSyncBase:FileReference"): a for a in atts}
    sid = I.server_id(eid)
    assert set(got) == {f"{sid}:1.2", f"{sid}:2", f"{sid}:3"}
    img, pdf, msg = got[f"{sid}:1.2"], got[f"{sid}:2"], got[f"{sid}:3"]
    assert img.child_text("AirSyncBase:ContentId") == "img1@x"
    assert img.child_text("AirSyncBase:IsInline") == "1"
    assert img.child_text("AirSyncBase:EstimatedDataSize") == "40"
    assert pdf.child_text("AirSyncBase:DisplayName") == "réport.pdf"
    assert pdf.child_text("AirSyncBase:Method") == "1" and pdf.find("AirSyncBase:IsInline") is None
    assert pdf.child_text("AirSyncBase:EstimatedDataSize") == "1024"
    assert pdf.child_text("AirSyncBase:ContentType") == "application/pdf"
    assert msg.child_text("AirSyncBase:Method") == "5"
    assert msg.child_text("AirSyncBase:DisplayName") == "message.eml"
    # ContentType of an attachment is 16.x only
    d14 = render(store, eid, "14.1", (2,))
    assert all(a.find("AirSyncBase:ContentType") is None
               for a in d14.find("AirSyncBase:Attachments").children)
    assert I.parse_file_reference(f"{sid}:2") == (eid, "2")


def test_smime_message_class_and_mimesupport_1(store):
    raw = (b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; "
           b"protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n--s\r\n"
           b"Content-Type: text/plain\r\n\r\nsigned\r\n--s\r\nContent-Type: "
           b"application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n")
    eid = add(store, raw)
    d = render(store, eid, "14.1", (1,), (4,), mime=1)
    assert text(d, "Email:MessageClass") == "IPM.Note.SMIME.MultipartSigned"
    assert body(d)["type"] == 4
    plain = add(store, ALT)
    assert body(render(store, plain, "14.1", (1,), (4,), mime=1))["type"] == 1


def test_schema_limits_the_properties(store):
    eid = add(store, ALT)
    d = render(store, eid, "14.1", (1,), schema=["Email:Subject", "AirSyncBase:Body"])
    assert [c.qname for c in d.children] == ["Email:Subject", "AirSyncBase:Body"]


def test_file_reference_parsing():
    assert I.parse_file_reference("E42:2.1") == (42, "2.1")
    for bad in ("E42", "E42:", "M4:1", "E42:1..2", "E42:01", "E42:a", "E42:1.", ":1", None,
                "E42:" + "1." * 200 + "1"):
        assert I.parse_file_reference(bad) is None, bad


# --- properties (hypothesis) ----------------------------------------------------------------

_PROPS = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPS
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"),
               max_size=300),
       st.integers(min_value=1, max_value=400), st.booleans(), st.sampled_from([1, 2]))
def test_truncation_never_splits_and_honours_allornone(store, s, limit, aon, kind):
    if kind == 1:
        raw = (b"Subject: h\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(s.encode()))
        full = s.replace("\r\n", "\n")
    else:
        html = "<p>" + s.replace("<", "").replace(">", "") + "<br>" + s[:20].replace("<", "").replace(">", "") + "</p>"
        raw = (b"Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(html.encode()))
        full = html
    eid = add(store, raw)
    b = body(render(store, eid, "14.1", (kind, limit, aon)))
    size = len(full.encode())
    assert b["truncated"] == (size > limit)
    if aon and b["truncated"]:
        assert b["data"] is None
        return
    data = b["data"]
    assert len(data.encode()) <= limit
    assert full.startswith(data)                      # a prefix: no character split
    if b["truncated"]:
        assert b["size"] > len(data.encode())         # an estimate of the whole
    if kind == 2 and b["truncated"]:
        assert data.rfind("<") <= data.rfind(">")     # never inside a tag
    if not b["truncated"]:
        assert data == full and b["size"] == size


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 3200), st.integers(0, 3200),
       st.integers(1, 200), st.sampled_from([b"\r\n", b"\n", b" \r\n"]),
       st.sampled_from(["base64", "quoted-printable", "8bit"]))
def test_attachment_ranges_are_exact(data, a, b, chunk, nl, cte):
    lo, hi = min(a, b), max(a, b)
    if cte == "base64":
        enc = base64.b64encode(data)
        body = nl.join(enc[i:i + 76] for i in range(0, len(enc), 76)) + nl
    elif cte == "quoted-printable":
        body = quopri.encodestring(data)
    else:
        body = data
    head = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: " + cte.encode()
    raw = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n" \
        + head + b"\r\n\r\n" + body + b"\r\n--zz--\r\n"
    mi = mindex.index_message(raw)
    part = mi.part("1")
    want = mindex.decoded_part(raw, mi, "1")        # IMAP BINARY[1]: the reference
    if cte == "base64":
        assert want == data
    old = IO.CHUNK
    IO.CHUNK = chunk
    try:
        assert IO.part_size(raw, mi, part) == len(want)
        assert IO.part_range(raw, mi, part, lo, hi) == want[lo:hi]
        assert IO.part_range(memoryview(raw), mi, part, lo, hi) == want[lo:hi]
    finally:
        IO.CHUNK = old


def test_multipart_body_layout():
    body_ = IO.multipart_body([b"wbxml", b"", b"abc"])
    import struct
    n, = struct.unpack_from("<i", body_)
    assert n == 3
    metas = [struct.unpack_from("<ii", body_, 4 + 8 * i) for i in range(3)]
    assert [body_[o:o + ln] for o, ln in metas] == [b"wbxml", b"", b"abc"]
    assert metas[0][0] == 4 + 24


def test_12x_mimesupport_alone_and_mimetruncation(store):
    s, acc, _ = store
    big = ALT + b"x" * 5000
    eid = add(store, big)

    def b(*kids, version="12.1"):
        opts = I.item_options(E("AirSync:Options", *kids), version)
        with s.view() as v:
            out = I.application_data(v, acc, eid, opts, version)
        return body(decode(encode(E("AirSync:ApplicationData", *out))))

    m = b(E("AirSync:MIMESupport", text="2"), E("AirSync:MIMETruncation", text="1"))
    assert m["type"] == 4 and m["truncated"] and m["data"].encode() == big[:4096]
    whole = b(E("AirSync:MIMESupport", text="2"), E("AirSync:MIMETruncation", text="8"))
    assert whole["data"].encode() == big and not whole["truncated"]
    assert b(E("AirSync:MIMESupport", text="0"))["type"] == 1
    with_pref = b(E("AirSyncBase:BodyPreference", E("AirSyncBase:Type", text="4")),
                  E("AirSync:MIMESupport", text="2"), E("AirSync:MIMETruncation", text="2"))
    assert with_pref["truncated"] and len(with_pref["data"].encode()) == 5120


def test_address_quoting(store):
    eid = add(store, b'From: "A \\"Q\\" B" <a@example.com>\r\nTo: undisclosed-recipients:;\r\n'
              b"Subject: q\r\n\r\nx\r\n")
    d = render(store, eid, "14.1")
    assert text(d, "Email:From") == '"A \\"Q\\" B" <a@example.com>'


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_lite_index_reads_what_the_full_decoder_reads(subject, name):
    tricky = ',"text_body":[1],"jmap_body":{}'
    for raw in (ALT, MIXED, b"Subject: " + (subject + tricky).encode() + b"\r\nX-A: "
                + tricky.encode() + b"\r\nFrom: \"" + name.replace('"', "").encode()
                + b"\" <a@example.com>\r\n\r\nbody\r\n"):
        data = mindex.encode_index(mindex.index_message(raw))
        li = lite_index.read_index(data)
        full = mindex.decode_index_meta(data)
        assert isinstance(li, lite_index.LiteIndex)
        for f in lite_index.LITE_FIELDS + ("preview", "jmap_body"):
            assert getattr(li, f) == getattr(full, f), f
        assert li.part("1") == full.part("1")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.integers(0, 400), st.booleans())
def test_mime_truncation_keeps_octets_and_characters(s, limit, latin):
    raw = b"Subject: m\r\n\r\n" + (s.encode("latin-1", "replace") if latin else s.encode("utf-8",
                                                                                       "replace"))
    text, opaque, cut = I.mime_data(memoryview(raw), limit)
    assert cut == (limit < len(raw))
    got = opaque if opaque is not None else text.encode("utf-8")
    assert raw.startswith(got) and len(got) <= limit
    if opaque is None:
        assert len(got) >= limit - 3 or not cut          # only a split character is dropped
    untouched = I.mime_data(raw, None)
    assert (untouched[1] if untouched[1] is not None else untouched[0].encode()) == raw
