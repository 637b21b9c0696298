"""Email/get (RFC 8621 §4.1, §4.2) through run_request on a temp store:
metadata from the record, header fields and their parsed forms, convenience
properties, body parts by the §4.1.4 algorithm, bodyValues, bodyProperties,
argument errors, and hostile messages (bounded work, an answer)."""
from __future__ import annotations

import pytest

from mailaccess import ids
from mailaccess.server import jmap_email
from mailaccess.store import ops

from jmap_email_helpers import CORPUS, Env, corpus, crlf


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


RFC_ADDRESSES = ('" James Smythe" <james@example.com>, Friends: jane@example.com, '
                 '=?UTF-8?Q?John_Sm=C3=AEth?= <john@example.com>;')

SIMPLE = crlf(f"""From: Joe <joe@example.com>
To: {RFC_ADDRESSES}
Cc: Ann <ann@example.com>
Subject: =?UTF-8?Q?caf=C3=A9?= and
 more
Date: Thu, 30 Oct 2014 14:12:00 +0800
Message-ID: <1234@local.machine.example>
In-Reply-To: <a@x> (comment) <b@y>
References: <r1@x>
 <r2@y>
X-Custom: 1
X-Custom: 2
List-Post: <mailto:list@example.com> (Postings are moderated)
List-Id: Example list <list.example.com>
X-Date: Fri, 21 Nov 1997 09:55:06 -0600
Received: from x by y; Thu, 30 Oct 2014 14:12:00 +0800
Content-Type: text/plain; charset=utf-8

Hello caf\u00e9
""")


# --- metadata and defaults ---------------------------------------------------------

async def test_default_properties_and_metadata(env):
    eid = env.add(SIMPLE, keywords=("$seen", "$flagged"), received_at=1_414_649_520)
    res = await env.get([eid])
    assert res["accountId"] == env.account_id
    assert res["state"] == (await env.get([]))["state"] != ""
    (e,) = res["list"]
    assert list(e) == list(jmap_email.DEFAULT_PROPERTIES)
    with env.store.view() as v:
        rec = v.email(env.acc, ids.parse("E", eid))
    assert e["id"] == eid
    assert e["blobId"] == ids.blob_id(rec.blob)
    assert e["threadId"] == ids.thread_id(rec.thread)
    assert e["mailboxIds"] == {ids.mailbox_id(env.inbox): True}
    assert e["keywords"] == {"$seen": True, "$flagged": True}
    assert e["size"] == len(SIMPLE)
    assert e["receivedAt"] == "2014-10-30T06:12:00Z"
    assert e["subject"] == "café and more"
    assert e["from"] == [{"name": "Joe", "email": "joe@example.com"}]
    assert e["sentAt"] == "2014-10-30T14:12:00+08:00"
    assert e["messageId"] == ["1234@local.machine.example"]
    assert e["inReplyTo"] == ["a@x", "b@y"]
    assert e["references"] == ["r1@x", "r2@y"]
    assert e["sender"] is None and e["bcc"] is None and e["replyTo"] is None
    assert e["preview"] == "Hello café"
    assert e["hasAttachment"] is False
    assert e["bodyValues"] == {}           # none asked for
    assert [p["partId"] for p in e["textBody"]] == ["1"]
    assert e["attachments"] == []


async def test_not_found_and_id_always_returned(env):
    eid = env.add(SIMPLE)
    res = await env.get([eid, "E999", "nonsense", "M1", eid], properties=["subject"])
    assert res["list"] == [{"id": eid, "subject": "café and more"}]
    assert res["notFound"] == ["E999", "nonsense", "M1"]


async def test_ids_null_returns_every_email(env):
    a, b = env.add(SIMPLE), env.add(corpus("12-groups.eml"))
    res = await env.get(None, properties=["id"])
    assert sorted(x["id"] for x in res["list"]) == sorted([a, b])


async def test_another_accounts_id_is_account_not_found(env):
    env.add(SIMPLE)
    name, res = await env.call("Email/get", accountId=f"A{env.bob}", ids=None)
    assert name == "error" and res["type"] == "accountNotFound"


async def test_record_only_properties_never_read_the_index(env, monkeypatch):
    eid = env.add(SIMPLE)

    def boom(*a, **k):
        raise AssertionError("the index was read")
    monkeypatch.setattr(jmap_email.mindex, "index_summary", boom)
    monkeypatch.setattr(jmap_email.mindex, "decode_index_meta", boom)
    e = await env.one(eid, properties=["threadId", "mailboxIds", "keywords", "size",
                                       "receivedAt", "blobId"])
    assert e["size"] == len(SIMPLE)


async def test_list_properties_do_not_read_the_message(env, monkeypatch):
    """The list properties of the benchmark come from the record and the
    stored index: the raw message is not read, nor the body structure."""
    eid = env.add(SIMPLE)
    jmap_email.LIST_CACHE.data.clear()
    reads = []
    real = jmap_email.Source.raw
    monkeypatch.setattr(jmap_email.Source, "raw", lambda self: reads.append(1) or real(self))

    def boom(*a, **k):
        raise AssertionError("the whole index was decoded")
    monkeypatch.setattr(jmap_email.mindex, "decode_index_meta", boom)
    monkeypatch.setattr(jmap_email.mindex, "index_message", boom)
    props = ["id", "threadId", "mailboxIds", "keywords", "receivedAt", "from", "subject",
             "preview", "size", "hasAttachment"]
    for _ in range(2):      # a miss, then a hit of the list cache
        e = await env.one(eid, properties=props)
        assert e["from"] == [{"name": "Joe", "email": "joe@example.com"}]
        assert e["preview"] == "Hello café"
    assert reads == []


# --- header fields -----------------------------------------------------------------

async def test_headers_raw_in_order(env):
    eid = env.add(SIMPLE)
    e = await env.one(eid, properties=["headers"])
    names = [h["name"] for h in e["headers"]]
    assert names[:4] == ["From", "To", "Cc", "Subject"]
    assert names.count("X-Custom") == 2
    subj = next(h for h in e["headers"] if h["name"] == "Subject")
    assert subj["value"] == " =?UTF-8?Q?caf=C3=A9?= and\r\n more"


async def test_header_forms_rfc_examples(env):
    eid = env.add(SIMPLE)
    e = await env.one(eid, properties=[
        "header:To:asAddresses", "header:To:asGroupedAddresses", "header:to",
        "header:Subject:asText", "header:x-custom", "header:X-Custom:all",
        "header:X-Custom:asText:all", "header:List-Post:asURLs", "header:Date:asDate",
        "header:X-Date:asDate", "header:In-Reply-To:asMessageIds", "header:Missing",
        "header:Missing:all", "header:List-Id:asText", "header:Message-ID:asMessageIds"])
    assert e["header:To:asAddresses"] == [
        {"name": "James Smythe", "email": "james@example.com"},
        {"name": None, "email": "jane@example.com"},
        {"name": "John Smîth", "email": "john@example.com"}]
    assert e["header:To:asGroupedAddresses"] == [
        {"name": None, "addresses": [{"name": "James Smythe", "email": "james@example.com"}]},
        {"name": "Friends", "addresses": [
            {"name": None, "email": "jane@example.com"},
            {"name": "John Smîth", "email": "john@example.com"}]}]
    assert e["header:to"] == " " + RFC_ADDRESSES
    assert e["header:Subject:asText"] == "café and more"
    assert e["header:x-custom"] == " 2"                     # the last instance
    assert e["header:X-Custom:all"] == [" 1", " 2"]
    assert e["header:X-Custom:asText:all"] == ["1", "2"]
    assert e["header:List-Post:asURLs"] == ["mailto:list@example.com"]
    assert e["header:Date:asDate"] == "2014-10-30T14:12:00+08:00"
    assert e["header:X-Date:asDate"] == "1997-11-21T09:55:06-06:00"
    assert e["header:In-Reply-To:asMessageIds"] == ["a@x", "b@y"]
    assert e["header:Missing"] is None
    assert e["header:Missing:all"] == []
    assert e["header:List-Id:asText"] == "Example list <list.example.com>"
    assert e["header:Message-ID:asMessageIds"] == e["header:Message-ID:asMessageIds"]


@pytest.mark.parametrize("prop", [
    "header:From:asDate", "header:From:asText", "header:Subject:asAddresses",
    "header:Date:asText", "header:Received:asText", "header:Message-ID:asAddresses",
    "header:List-Post:asText", "header:To:asURLs", "header:Return-Path:asAddresses",
    "header:X-A:asFoo", "header:X-A:all:asText", "header:X-A:asText:all:all",
    "header::asText", "header:", "header:X A", "header:X-A:astext", "header:X-A:ALL",
    "nope", "Subject", "header:X-A:asRaw:",
])
async def test_not_allowed_header_properties_are_invalid_arguments(env, prop):
    eid = env.add(SIMPLE)
    name, res = await env.call("Email/get", ids=[eid], properties=[prop])
    assert name == "error" and res["type"] == "invalidArguments", prop
    name, res = await env.call("Email/get", ids=[eid], properties=["id"], bodyProperties=[prop])
    assert name == "error" and res["type"] == "invalidArguments", prop


@pytest.mark.parametrize("prop", [
    "header:X-Unknown:asAddresses", "header:X-Unknown:asDate", "header:X-Unknown:asURLs",
    "header:X-Unknown:asMessageIds", "header:X-Unknown:asGroupedAddresses",
    "header:Resent-Reply-To:asAddresses", "header:Comments:asText", "header:Keywords:asText",
    "header:Resent-Message-ID:asMessageIds", "header:Resent-Date:asDate",
    "header:List-Unsubscribe:asURLs", "header:Received", "header:Received:asRaw:all",
])
async def test_allowed_header_properties(env, prop):
    eid = env.add(SIMPLE)
    name, res = await env.call("Email/get", ids=[eid], properties=[prop])
    assert name == "Email/get", (prop, res)
    assert prop in res["list"][0]


# every convenience field twice (RFC 5322 §3.6 allows one; real mail breaks
# that): JMAP's header:{name} form, so its convenience property, is the last
REPEATED = crlf("""From: First <first@example.com>
Sender: First <first@example.com>
To: a@example.com
Cc: c1@example.com
Bcc: b1@example.com
Reply-To: r1@example.com
Subject: first subject
Date: Thu, 30 Oct 2014 14:12:00 +0800
Message-ID: <first@example.com>
In-Reply-To: <p1@example.com>
References: <r1@example.com>
From: Last <last@example.com>
Sender: Last <last@example.com>
To: b@example.com, c@example.com
CC: c2@example.com
bcc: b2@example.com
Reply-To: r2@example.com
SUBJECT: =?UTF-8?Q?last_caf=C3=A9?=
Date: Fri, 21 Nov 1997 09:55:06 -0600
Message-ID: <last@example.com>
In-Reply-To: <p2@example.com>
References: <r2@example.com> <r3@example.com>
Content-Type: text/plain

body
""")
# the last instance empty (or not parsing): the property is null
REPEATED_EMPTY_LAST = crlf("""From: First <first@example.com>
Subject: first subject
Date: Thu, 30 Oct 2014 14:12:00 +0800
From:
Subject:
Date: not a date

body
""")


async def test_repeated_convenience_fields_answer_the_last(env):
    """RFC 8621 §4.1.3: `from` is header:From:asAddresses, the last From
    field's value, although the index (and IMAP's ENVELOPE) keep the first."""
    eid = env.add(REPEATED)
    e = await env.one(eid, properties=["from", "sender", "to", "cc", "bcc", "replyTo",
                                       "subject", "sentAt", "messageId", "inReplyTo",
                                       "references"])
    assert e["from"] == [{"name": "Last", "email": "last@example.com"}]
    assert e["sender"] == [{"name": "Last", "email": "last@example.com"}]
    assert [a["email"] for a in e["to"]] == ["b@example.com", "c@example.com"]
    assert e["cc"] == [{"name": None, "email": "c2@example.com"}]
    assert e["bcc"] == [{"name": None, "email": "b2@example.com"}]
    assert e["replyTo"] == [{"name": None, "email": "r2@example.com"}]
    assert e["subject"] == "last caf\u00e9"
    assert e["sentAt"] == "1997-11-21T09:55:06-06:00"
    assert e["messageId"] == ["last@example.com"]
    assert e["inReplyTo"] == ["p2@example.com"]
    assert e["references"] == ["r2@example.com", "r3@example.com"]
    eid = env.add(REPEATED_EMPTY_LAST)
    e = await env.one(eid, properties=["from", "subject", "sentAt"])
    assert e == {"id": eid, "from": None, "subject": None, "sentAt": None}


async def test_convenience_properties_equal_their_header_forms(env):
    """from == header:From:asAddresses etc. (§4.1.3), over the corpus: the
    list fast path (index summary) and the header parse agree."""
    pairs = {"from": "header:From:asAddresses", "to": "header:To:asAddresses",
             "cc": "header:Cc:asAddresses", "bcc": "header:Bcc:asAddresses",
             "sender": "header:Sender:asAddresses", "replyTo": "header:Reply-To:asAddresses",
             "subject": "header:Subject:asText", "sentAt": "header:Date:asDate",
             "inReplyTo": "header:In-Reply-To:asMessageIds",
             "references": "header:References:asMessageIds",
             "messageId": "header:Message-ID:asMessageIds"}
    raws = [SIMPLE, REPEATED, REPEATED_EMPTY_LAST] + [
        p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    eids = [env.add(r) for r in raws]
    res = await env.get(eids, properties=list(pairs) + list(pairs.values()))
    for e in res["list"]:
        for conv, form in pairs.items():
            want = e[form]
            if want in ([], ""):      # the index reads an empty field as absent
                want = None
            assert e[conv] == want, (e["id"], conv, e[conv], e[form])


async def test_groups_and_odd_addresses(env):
    eid = env.add(corpus("12-groups.eml"))
    e = await env.one(eid, properties=["bcc", "header:Bcc:asGroupedAddresses", "cc",
                                       "replyTo", "sender"])
    assert e["header:Bcc:asGroupedAddresses"] == [
        {"name": "A Group", "addresses": [
            {"name": "Ed Jones", "email": "c@a.test"},
            {"name": None, "email": "joe@where.test"},
            {"name": "John", "email": "jdoe@one.test"}]},
        {"name": "Undisclosed recipients", "addresses": []}]
    assert [a["email"] for a in e["bcc"]] == ["c@a.test", "joe@where.test", "jdoe@one.test"]
    assert e["cc"] == [{"name": None, "email": "boss@nil.test"},
                       {"name": 'Giant; "Big" Box', "email": "sysservices@example.net"}]
    assert e["sender"] == [{"name": None, "email": "user@host.test"}]
    assert e["replyTo"][-1] == {"name": "Pete", "email": "pete@silly.test"}


async def test_encoded_words(env):
    eid = env.add(corpus("10-encoded-words.eml"))
    e = await env.one(eid, properties=["subject", "from", "cc", "header:X-Split:asText"])
    assert e["subject"] == "If you can read this you understand the example."
    assert e["from"] == [{"name": "Keld Jørn Simonsen", "email": "keld@example.dk"}]
    assert e["cc"][0]["name"] == "=?x-bogus?q?kept_raw?="     # unknown charset: as written
    assert e["header:X-Split:asText"].startswith("é")


# --- body parts (§4.1.4) -------------------------------------------------------------

def _rfc_structure_message() -> bytes:
    """The example of RFC 8621 §4.1.4: parts A..K."""
    def leaf(ctype, label, disp=None, extra=""):
        d = f"Content-Disposition: {disp}\n" if disp else ""
        return f"Content-Type: {ctype}\n{d}{extra}\n{label}\n"

    def multi(sub, b, *parts):
        body = "".join(f"--{b}\n{p}" for p in parts) + f"--{b}--\n"
        return f"Content-Type: multipart/{sub}; boundary={b}\n\n{body}"

    msg = multi(
        "mixed", "b0",
        leaf("text/plain", "A", "inline"),
        multi("mixed", "b1",
              multi("alternative", "b2",
                    multi("mixed", "b3",
                          leaf("text/plain", "B", "inline"),
                          leaf("image/jpeg", "C", "inline"),
                          leaf("text/plain", "D", "inline")),
                    multi("related", "b4",
                          leaf("text/html", "E"),
                          leaf("image/jpeg", "F"))),
              leaf("image/jpeg", "G", "attachment"),
              leaf("application/x-excel", "H"),
              leaf("message/rfc822", "From: j@example.com\nSubject: J\n\nJ")),
        leaf("text/plain", "K", "inline"))
    return crlf("From: a@example.com\nSubject: rfc structure\nMIME-Version: 1.0\n" + msg)


async def test_rfc_8621_body_structure_example(env):
    eid = env.add(_rfc_structure_message())
    e = await env.one(eid, properties=["textBody", "htmlBody", "attachments", "bodyValues",
                                       "hasAttachment", "bodyStructure"],
                      bodyProperties=["partId", "blobId", "type", "subParts"],
                      fetchAllBodyValues=True)
    values = {pid: v["value"].strip() for pid, v in e["bodyValues"].items()}

    def labels(parts):
        out = []
        for p in parts:
            if p["partId"] in values:
                out.append(values[p["partId"]])
            else:
                out.append({"image/jpeg": "CFG", "application/x-excel": "H",
                            "message/rfc822": "J"}[p["type"]])
        return out

    assert labels(e["textBody"]) == ["A", "B", "CFG", "D", "K"]
    assert labels(e["htmlBody"]) == ["A", "E", "K"]
    att = e["attachments"]
    assert [p["type"] for p in att] == ["image/jpeg", "image/jpeg", "image/jpeg",
                                        "application/x-excel", "message/rfc822"]
    # C, F, G in document order: their partIds say which is which
    assert [p["partId"] for p in att] == ["2.1.1.2", "2.1.2.2", "2.2", "2.3", "2.4"]
    assert [p["partId"] for p in e["textBody"]] == ["1", "2.1.1.1", "2.1.1.2", "2.1.1.3", "3"]
    assert e["hasAttachment"] is True
    # multiparts have no partId/blobId; leaves have both; every part id is unique
    parts = []

    def walk(n):
        parts.append(n)
        for c in n.get("subParts") or ():
            walk(c)
    walk(e["bodyStructure"])
    for p in parts:
        if p["type"].startswith("multipart/"):
            assert p["partId"] is None and p["blobId"] is None
        else:
            assert p["blobId"] == ids.part_blob_id(
                ids.parse_blob((await env.one(eid, properties=["blobId"]))["blobId"]), p["partId"])
    leaf_ids = [p["partId"] for p in parts if p["partId"]]
    assert len(leaf_ids) == len(set(leaf_ids)) == 10      # A..K but I


async def test_body_properties(env):
    eid = env.add(corpus("11-rfc2231.eml"))
    e = await env.one(eid, properties=["bodyStructure", "attachments"], bodyProperties=[
        "partId", "type", "name", "disposition", "headers", "header:Content-Disposition:asRaw",
        "header:Content-Type:all", "subParts", "charset", "size", "cid", "language", "location"])
    root = e["bodyStructure"]
    assert list(root) == ["partId", "type", "name", "disposition", "headers",
                          "header:Content-Disposition:asRaw", "header:Content-Type:all",
                          "subParts", "charset", "size", "cid", "language", "location"]
    assert root["type"] == "multipart/mixed" and root["partId"] is None
    assert [h["name"] for h in root["headers"]] == ["From", "Subject", "Content-Type"]
    (part,) = root["subParts"]
    assert part["name"] == "€ rates.txt"         # RFC 2231 filename*, UTF-8
    assert part["disposition"] == "attachment"
    assert part["type"] == "application/x-stuff" and part["charset"] is None
    assert part["size"] == 4
    assert part["header:Content-Disposition:asRaw"].startswith(" attachment;")
    assert len(part["header:Content-Type:all"]) == 1
    assert part["subParts"] is None
    assert e["attachments"][0]["name"] == "€ rates.txt"


async def test_default_body_properties(env):
    eid = env.add(SIMPLE)
    e = await env.one(eid, properties=["bodyStructure"])
    assert list(e["bodyStructure"]) == list(jmap_email.DEFAULT_BODY_PROPERTIES)
    assert e["bodyStructure"]["charset"] == "utf-8"


# --- bodyValues ------------------------------------------------------------------------

ALT = crlf("""From: a@example.com
Subject: alt
Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

caf=E9 line one
line two
--b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+Y2Fmw6kgPGEgaHJlZj0iaHR0cHM6Ly9leGFtcGxlLmNvbSI+bGluazwvYT48L3A+
--b--
""")


async def test_fetch_text_html_all_body_values(env):
    eid = env.add(ALT)
    e = await env.one(eid, properties=["bodyValues"], fetchTextBodyValues=True)
    assert e["bodyValues"] == {"1": {"value": "café line one\nline two",
                                     "isEncodingProblem": False, "isTruncated": False}}
    e = await env.one(eid, properties=["bodyValues"], fetchHTMLBodyValues=True)
    assert list(e["bodyValues"]) == ["2"]
    assert e["bodyValues"]["2"]["value"] == '<p>café <a href="https://example.com">link</a></p>'
    e = await env.one(eid, properties=["bodyValues"], fetchAllBodyValues=True)
    assert sorted(e["bodyValues"]) == ["1", "2"]


async def test_max_body_value_bytes(env):
    eid = env.add(ALT)
    e = await env.one(eid, properties=["bodyValues"], fetchAllBodyValues=True,
                      maxBodyValueBytes=4)
    # "café": 'caf' + a 2-octet 'é' = 5 octets; 4 cannot cut inside the 'é'
    assert e["bodyValues"]["1"] == {"value": "caf", "isEncodingProblem": False,
                                    "isTruncated": True}
    e = await env.one(eid, properties=["bodyValues"], fetchHTMLBodyValues=True,
                      maxBodyValueBytes=20)
    # never inside a tag: '<p>café <a href="ht' is cut back to before '<a'
    assert e["bodyValues"]["2"] == {"value": "<p>café ", "isEncodingProblem": False,
                                    "isTruncated": True}
    e = await env.one(eid, properties=["bodyValues"], fetchTextBodyValues=True,
                      maxBodyValueBytes=10_000)
    assert e["bodyValues"]["1"]["isTruncated"] is False


async def test_encoding_problems(env):
    unknown_charset = crlf("From: a@b\nContent-Type: text/plain; charset=x-nonesuch\n\nhello\n")
    unknown_cte = crlf("From: a@b\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uue\n\nhi\n")
    bad_utf8 = b"From: a@b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbad \xff\xfe here\r\n"
    good = crlf("From: a@b\nContent-Type: text/plain; charset=utf-8\n\nfine\n")
    for raw, problem, value in ((unknown_charset, True, "hello\n"), (unknown_cte, True, "hi\n"),
                                (bad_utf8, True, "bad \ufffd\ufffd here\n"),
                                (good, False, "fine\n")):
        eid = env.add(raw)
        e = await env.one(eid, properties=["bodyValues"], fetchTextBodyValues=True)
        assert e["bodyValues"]["1"] == {"value": value, "isEncodingProblem": problem,
                                        "isTruncated": False}, raw


async def test_big_part_truncated_reads_a_prefix(env):
    line = "é" * 60 + "\r\n"
    raw = crlf("From: a@b\nSubject: big\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: 8bit\n\n") + (line * 20000).encode()
    eid = env.add(raw)
    e = await env.one(eid, properties=["bodyValues"], fetchTextBodyValues=True,
                      maxBodyValueBytes=1001)
    v = e["bodyValues"]["1"]
    assert v["isTruncated"] and len(v["value"].encode()) <= 1001
    assert v["value"] == (line.replace("\r\n", "\n") * 20)[:len(v["value"])]
    assert len(v["value"].encode()) >= 999


# --- argument errors -----------------------------------------------------------------

@pytest.mark.parametrize("args", [
    {"properties": "subject"}, {"properties": [1]}, {"bodyProperties": ["nope"]},
    {"fetchTextBodyValues": "yes"}, {"maxBodyValueBytes": -1},
    {"maxBodyValueBytes": "5"}, {"maxBodyValueBytes": True}, {"ids": "E1"},
    {"ids": [1]}, {"properties": ["bodyValues", "subject", "blob"]},
])
async def test_invalid_arguments(env, args):
    eid = env.add(SIMPLE)
    args.setdefault("ids", [eid])
    name, res = await env.call("Email/get", **args)
    assert name == "error" and res["type"] == "invalidArguments", args


async def test_too_many_ids(env):
    name, res = await env.call("Email/get", ids=[f"E{i}" for i in range(1, 2000)])
    assert name == "error" and res["type"] == "requestTooLarge"


async def test_creation_id_reference(env):
    eid = env.add(SIMPLE)
    env_calls = [["Email/get", {"accountId": env.account_id, "ids": ["#k"],
                                "properties": ["subject"]}, "c"]]
    import json
    from mailaccess.proto.jmap.request import parse_request
    from mailaccess.server.jmap_api import run_request
    body = json.dumps({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                       "methodCalls": env_calls, "createdIds": {"k": eid}}).encode()
    out = await run_request(env.ctx, parse_request(body))
    assert out["methodResponses"][0][1]["list"] == [{"id": eid, "subject": "café and more"}]


# --- hostile messages ----------------------------------------------------------------

async def test_thousands_of_parts(env):
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(5000))
    raw = crlf("From: a@b\nSubject: many\nContent-Type: multipart/mixed; boundary=b\n\n") + \
        parts.encode() + b"--b--\r\n"
    eid = env.add(raw)
    e = await env.one(eid, properties=["bodyStructure", "textBody", "bodyValues"],
                      bodyProperties=["partId", "subParts"],
                      fetchAllBodyValues=True, maxBodyValueBytes=3)
    n = len(e["bodyStructure"]["subParts"])
    assert 100 < n <= 2000                           # the indexer's MAX_PARTS
    assert len(e["bodyValues"]) == len(e["textBody"]) == n


async def test_deep_nesting(env):
    depth = 200
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
                   for i in range(depth))
    tail = "".join(f"\r\n--b{i}--" for i in reversed(range(depth)))
    raw = b"From: a@b\r\nSubject: deep\r\n" + (head + "Content-Type: text/plain\r\n\r\nx" + tail).encode()
    eid = env.add(raw)
    e = await env.one(eid, properties=["bodyStructure", "textBody", "attachments"],
                      bodyProperties=["partId", "subParts"])
    d, n = 0, e["bodyStructure"]
    while n.get("subParts"):
        n = n["subParts"][0]
        d += 1
    assert d <= 21                                   # the indexer's MAX_DEPTH


async def test_huge_header(env):
    to = ", ".join(f"User {i} <u{i}@example.com>" for i in range(40000))
    raw = crlf(f"From: a@b\nTo: {to}\nSubject: {'s' * 100000}\n\nbody\n")
    eid = env.add(raw)
    e = await env.one(eid, properties=["to", "header:To:asGroupedAddresses", "subject",
                                       "header:To:asAddresses"])
    assert len(e["subject"]) == 100000
    # structured parses look at a bounded prefix of one value
    assert 1000 < len(e["header:To:asAddresses"]) < 40000
    assert len(e["to"]) == 40000


async def test_every_corpus_message_every_property(env):
    eids = [env.add(p.read_bytes()) for p in sorted(CORPUS.glob("*.eml"))]
    res = await env.get(eids, properties=list(jmap_email.EMAIL_PROPERTIES),
                        bodyProperties=list(jmap_email.BODY_PROPERTIES),
                        fetchAllBodyValues=True, maxBodyValueBytes=50)
    assert res["notFound"] == [] and len(res["list"]) == len(eids)
    for e in res["list"]:
        assert set(e) == set(jmap_email.EMAIL_PROPERTIES)
        for v in e["bodyValues"].values():
            assert len(v["value"].encode()) <= 50


@pytest.mark.parametrize("damage", [b"\x09not an index", b"\x02" + b"\xff" * 40])
async def test_unreadable_stored_index_is_rebuilt_for_the_answer(env, damage):
    """An index this version cannot read (or a damaged one): Email/get indexes
    the message on the spot and answers in full."""
    eid = env.add(SIMPLE)
    want = await env.one(eid, properties=list(jmap_email.EMAIL_PROPERTIES),
                         fetchAllBodyValues=True)
    with env.store.view() as v:
        h = v.email(env.acc, ids.parse("E", eid)).blob
    env.store.write_sync(ops.replace_index, env.acc, h, damage)
    jmap_email.LIST_CACHE.data.clear()
    got = await env.one(eid, properties=list(jmap_email.EMAIL_PROPERTIES),
                        fetchAllBodyValues=True)
    assert got == want


async def test_property_lists_are_bounded(env):
    eid = env.add(SIMPLE)
    many = [f"header:X-{i}" for i in range(jmap_email.MAX_PROPERTIES + 1)]
    for key in ("properties", "bodyProperties"):
        name, res = await env.call("Email/get", ids=[eid], **{key: many})
        assert name == "error" and res["type"] == "requestTooLarge"
    name, res = await env.call("Email/get", ids=[eid], properties=many[:-1])
    assert name == "Email/get" and len(res["list"][0]) == jmap_email.MAX_PROPERTIES + 1
