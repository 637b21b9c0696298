"""Email/set, Email/copy and Email/import (RFC 8621 §4.6-§4.8) through
run_request over a temp store, and across protocols: what JMAP writes an
IMAP session sees (FETCH FLAGS, EXPUNGE, new UIDs), through the store."""
from __future__ import annotations

import json

import pytest
import trio

from mailaccess import ids, ingest
from mailaccess.mime import index as mindex
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.proto.jmap.request import parse_request
from mailaccess.server import jmap_email_set as es  # noqa: F401  (registers the methods)
from mailaccess.server.jmap_api import JmapContext, run_request
from mailaccess.store import Store, ops

from conftest import make_config
from imap_helpers import connect, msg, run

USING = [cap.CORE, cap.MAIL]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    yield s
    s.close()


@pytest.fixture
def acc(store):
    return store.write_sync(ops.create_account, "alice", "hash")


@pytest.fixture
def ctx(store, acc, tmp_path):
    return JmapContext(store, None, make_config(tmp_path), acc, "alice")


async def call(ctx, *calls, created_ids=None):
    """Run METHOD CALLS ([name, args] or [name, args, id]); -> methodResponses."""
    body = {"using": USING,
            "methodCalls": [[c[0], {"accountId": ids.account_id(ctx.acc), **c[1]},
                             c[2] if len(c) > 2 else f"c{i}"] for i, c in enumerate(calls)]}
    if created_ids is not None:
        body["createdIds"] = created_ids
    out = await run_request(ctx, parse_request(json.dumps(body).encode()))
    return out["methodResponses"]


async def email_set(ctx, **args):
    [r] = await call(ctx, ["Email/set", args])
    assert r[0] == "Email/set", r
    return r[1]


def mbx(store, acc, role):
    with store.view() as v:
        return v.mailbox_by_role(acc, role).id


def mid(store, acc, role):
    return ids.mailbox_id(mbx(store, acc, role))


def deliver(store, acc, raw: bytes, role="inbox", kws=()) -> int:
    new = ingest.prepare(raw, 1_700_000_000)
    return store.write_sync(ops.append, acc, [mbx(store, acc, role)], new, list(kws)).email


def record(store, acc, eid):
    with store.view() as v:
        return v.email(acc, eid)


def raw_of(store, acc, eid) -> bytes:
    with store.view() as v:
        return bytes(v.blob(acc, v.email(acc, eid).blob))


# --- update: keywords and mailboxIds -----------------------------------------------------------

async def test_keyword_patches_and_whole_value(store, acc, ctx):
    eid = deliver(store, acc, msg("one"))
    e = ids.email_id(eid)
    r = await email_set(ctx, update={e: {"keywords/$seen": True, "keywords/$Flagged": True}})
    assert r["updated"] == {e: None} and r["oldState"] != r["newState"]
    assert record(store, acc, eid).keywords == ["$flagged", "$seen"]
    r = await email_set(ctx, update={e: {"keywords/$seen": None}})
    assert record(store, acc, eid).keywords == ["$flagged"]
    r = await email_set(ctx, update={e: {"keywords": {"custom": True, "$answered": True}}})
    assert record(store, acc, eid).keywords == ["$answered", "custom"]
    # a keyword with "/" travels escaped in the pointer (~1)
    r = await email_set(ctx, update={e: {"keywords/a~1b": True}})
    assert "a/b" in record(store, acc, eid).keywords


async def test_whole_keywords_keep_imap_deleted(store, acc, ctx):
    eid = deliver(store, acc, msg("d"), kws=["$deleted"])
    await email_set(ctx, update={ids.email_id(eid): {"keywords": {"$seen": True}}})
    assert record(store, acc, eid).keywords == ["$deleted", "$seen"]


async def test_mailbox_moves(store, acc, ctx):
    eid = deliver(store, acc, msg("move"))
    e = ids.email_id(eid)
    inbox, archive, trash = (mbx(store, acc, r) for r in ("inbox", "archive", "trash"))
    await email_set(ctx, update={e: {"mailboxIds": {ids.mailbox_id(archive): True}}})
    assert {m.mailbox for m in record(store, acc, eid).members} == {archive}
    await email_set(ctx, update={e: {f"mailboxIds/{ids.mailbox_id(trash)}": True,
                                     f"mailboxIds/{ids.mailbox_id(inbox)}": True}})
    assert {m.mailbox for m in record(store, acc, eid).members} == {archive, trash, inbox}
    await email_set(ctx, update={e: {f"mailboxIds/{ids.mailbox_id(archive)}": None}})
    assert {m.mailbox for m in record(store, acc, eid).members} == {trash, inbox}
    with store.view() as v:
        assert v.uids(acc, archive) == []
        assert [i for _, i in v.uids(acc, trash)] == [eid]


@pytest.mark.parametrize("patch,err,props", [
    ({"mailboxIds": {}}, "invalidProperties", ["mailboxIds"]),
    ("nomailbox", "invalidProperties", ["mailboxIds"]),
    ({"mailboxIds/M999": True}, "invalidProperties", ["mailboxIds"]),
    ({"subject": "new"}, "invalidProperties", ["subject"]),
    ({"receivedAt": "2020-01-01T00:00:00Z"}, "invalidProperties", ["receivedAt"]),
    ({"keywords/bad(kw": True}, "invalidProperties", ["keywords/bad(kw"]),
    ({"keywords/$seen": False}, "invalidProperties", ["keywords/$seen"]),
    ({"keywords/$deleted": True}, "invalidProperties", ["keywords/$deleted"]),
    ({"keywords": {"$seen": False}}, "invalidProperties", ["keywords"]),
    ({"keywords": ["$seen"]}, "invalidProperties", ["keywords"]),
    ({"keywords": {}, "keywords/$seen": True}, "invalidPatch", None),
    ({"keywords/$seen/x": True}, "invalidPatch", None),
    ({"keywords": {f"k{i}": True for i in range(101)}}, "tooManyKeywords", None),
])
@pytest.mark.parametrize("batched", [False, True])
async def test_update_errors(store, acc, ctx, patch, err, props, batched):
    eid = deliver(store, acc, msg("e"), kws=["$seen"])
    other = deliver(store, acc, msg("other"))
    before = record(store, acc, eid)
    if patch == "nomailbox":
        patch = {f"mailboxIds/{mid(store, acc, 'inbox')}": None}
    update = {ids.email_id(eid): patch}
    if batched:     # two updates: one transaction for both (email_set's batch)
        update[ids.email_id(other)] = {"keywords/$flagged": True}
    r = await email_set(ctx, update=update)
    if batched:
        assert r["updated"] == {ids.email_id(other): None}
        assert record(store, acc, other).keywords == ["$flagged"]
    got = r["notUpdated"][ids.email_id(eid)]
    assert got["type"] == err, got
    if props is not None:
        assert got["properties"] == props
    after = record(store, acc, eid)
    assert (after.keywords, after.members, after.last_ms) == \
        (before.keywords, before.members, before.last_ms)
    assert (r["oldState"] == r["newState"]) != batched


async def test_update_and_destroy_unknown_ids(ctx):
    r = await email_set(ctx, update={"E4242": {"keywords/$seen": True}, "junk": {}},
                        destroy=["E4343", "M1"])
    assert r["notUpdated"]["E4242"]["type"] == "notFound"
    assert r["notUpdated"]["junk"]["type"] == "notFound"
    assert r["notDestroyed"]["E4343"]["type"] == "notFound"
    assert r["notDestroyed"]["M1"]["type"] == "notFound"


async def test_many_updates_and_destroys_in_one_call(store, acc, ctx):
    eids = [deliver(store, acc, msg(f"m{i}")) for i in range(6)]
    es_ = [ids.email_id(e) for e in eids]
    with store.view() as v:
        st = v.kind_state(acc, "Email")
        ms = v.highest_modseq(acc)
    r = await email_set(ctx, ifInState=st, update={
        es_[0]: {"keywords/$seen": True}, es_[1]: {"keywords/$seen": True},
        es_[2]: {"mailboxIds": {}}, es_[3]: {"keywords/$seen": True}, "E999": {"keywords": {}}},
        destroy=[es_[3], es_[4], es_[5], "E998", "junk"])
    assert r["oldState"] == st and r["newState"] != st
    assert r["updated"] == {es_[0]: None, es_[1]: None}
    assert r["notUpdated"][es_[2]]["type"] == "invalidProperties"
    assert r["notUpdated"][es_[3]]["type"] == "willDestroy"
    assert r["notUpdated"]["E999"]["type"] == "notFound"
    assert sorted(r["destroyed"]) == sorted(es_[3:6])
    assert set(r["notDestroyed"]) == {"E998", "junk"}
    assert record(store, acc, eids[0]).keywords == ["$seen"]
    assert all(record(store, acc, e) is None for e in eids[3:])
    with store.view() as v:      # one transaction: one modseq for all of it
        assert v.highest_modseq(acc) == ms + 1
    [r] = await call(ctx, ["Email/set", {"ifInState": st, "update": {
        es_[0]: {"keywords": {}}, es_[1]: {"keywords": {}}}}])
    assert r[0] == "error" and r[1]["type"] == "stateMismatch"
    assert record(store, acc, eids[0]).keywords == ["$seen"]


async def test_batch_with_creates_and_references(store, acc, ctx):
    e1 = deliver(store, acc, msg("a"))
    rs = await call(ctx, ["Email/set", {
        "create": {"k": _base(store, acc)},
        "update": {"#k": {"keywords/$seen": True}, ids.email_id(e1): {"keywords/$seen": True}},
        "destroy": [ids.email_id(e1)]}])
    r = rs[0][1]
    new = r["created"]["k"]["id"]
    assert r["updated"] == {new: None}
    assert r["notUpdated"][ids.email_id(e1)]["type"] == "willDestroy"
    assert r["destroyed"] == [ids.email_id(e1)]
    assert record(store, acc, ids.parse("E", new)).keywords == ["$seen"]


async def test_if_in_state(store, acc, ctx):
    eid = deliver(store, acc, msg("s"))
    [r] = await call(ctx, ["Email/set", {"ifInState": "nope",
                                         "update": {ids.email_id(eid): {"keywords": {}}}}])
    assert r[0] == "error" and r[1]["type"] == "stateMismatch"
    with store.view() as v:
        st = v.kind_state(acc, "Email")
    r = await email_set(ctx, ifInState=st, update={ids.email_id(eid): {"keywords/x": True}})
    assert r["oldState"] == st and r["newState"] != st


async def test_destroy_removes_from_every_mailbox(store, acc, ctx):
    eid = deliver(store, acc, msg("gone"))
    e = ids.email_id(eid)
    await email_set(ctx, update={e: {f"mailboxIds/{mid(store, acc, 'archive')}": True}})
    with store.view() as v:
        old = v.kind_state(acc, "Email")
    r = await email_set(ctx, destroy=[e])
    assert r["destroyed"] == [e]
    assert record(store, acc, eid) is None
    with store.view() as v:
        assert v.uids(acc, mbx(store, acc, "inbox")) == []
        assert v.uids(acc, mbx(store, acc, "archive")) == []
        assert v.changes(acc, "Email", old).destroyed == [eid]


# --- cross-protocol: an IMAP session sees JMAP's writes ------------------------------------

async def test_imap_session_sees_keywords_moves_and_destroy(imap_server):
    srv = imap_server
    with srv.store.view() as v:
        a = v.account_by_name("alice").id
    jctx = JmapContext(srv.store, srv.bus, srv.cfg, a, "alice")
    e1 = ids.email_id(deliver(srv.store, a, msg("first")))
    e2 = ids.email_id(deliver(srv.store, a, msg("second")))
    c = await run(connect, srv)
    try:
        await run(c.enable, "CONDSTORE")
        await run(c.select, "INBOX")
        typ, data = await run(c.fetch, "1:*", "(FLAGS MODSEQ)")
        ms_before = int(data[0].split(b"MODSEQ (")[1].split(b")")[0])
        await email_set(jctx, update={e1: {"keywords/$seen": True, "keywords/$flagged": True}})
        typ, data = await run(c.noop)
        seen = b" ".join(x for x in c.untagged_responses.pop("FETCH", []) if x)
        assert b"\\Seen" in seen and b"\\Flagged" in seen
        ms_after = int(seen.split(b"MODSEQ (")[1].split(b")")[0])
        assert ms_after > ms_before
        typ, data = await run(c.fetch, "1", "(FLAGS)")
        assert b"\\Seen" in data[0] and b"\\Flagged" in data[0]
        await email_set(jctx, update={e1: {"keywords/$seen": None}})
        typ, data = await run(c.fetch, "1", "(FLAGS)")
        assert b"\\Seen" not in data[0] and b"\\Flagged" in data[0]
        # a move out of INBOX is an EXPUNGE in the INBOX session
        await email_set(jctx, update={e1: {"mailboxIds": {mid(srv.store, a, "archive"): True}}})
        await run(c.noop)
        assert c.untagged_responses.pop("EXPUNGE", []) == [b"1"]
        typ, data = await run(c.status, "Archive", "(MESSAGES)")
        assert b"MESSAGES 1" in data[0]
        # destroy: EXPUNGE too, and VANISHED to a QRESYNC session
        q = await run(connect, srv)
        try:
            await run(q.enable, "QRESYNC")
            await run(q.select, "INBOX")
            typ, data = await run(q.uid, "SEARCH", "ALL")
            uid2 = data[0]
            await email_set(jctx, destroy=[e2])
            await run(c.noop)
            assert c.untagged_responses.pop("EXPUNGE", []) == [b"1"]
            typ, data = await run(c.search, None, "ALL")
            assert data == [b""]
            await run(q.noop)
            assert q.untagged_responses.pop("VANISHED", []) == [uid2]
        finally:
            await run(q.logout)
    finally:
        await run(c.logout)


async def test_imap_sees_created_email_with_a_uid(imap_server):
    srv = imap_server
    with srv.store.view() as v:
        a = v.account_by_name("alice").id
    jctx = JmapContext(srv.store, srv.bus, srv.cfg, a, "alice")
    c = await run(connect, srv)
    try:
        await run(c.select, "Drafts")
        c.untagged_responses.pop("EXISTS", None)
        sub = srv.bus.subscribe(a, ["Email"])
        r = await email_set(jctx, create={"d": {
            "mailboxIds": {mid(srv.store, a, "drafts"): True},
            "keywords": {"$draft": True, "$seen": True},
            "from": [{"name": "Alice", "email": "alice@localhost"}],
            "subject": "a draft", "textBody": [{"partId": "t"}],
            "bodyValues": {"t": {"value": "hello there"}}}})
        assert set(r["created"]["d"]) == {"id", "blobId", "threadId", "size"}
        with trio.fail_after(10), sub:
            note = await sub.wait()
        assert "Email" in note.kinds and mbx(srv.store, a, "drafts") in note.mailboxes
        await run(c.noop)
        assert c.untagged_responses.pop("EXISTS", []) == [b"1"]
        typ, data = await run(c.uid, "FETCH", "1:*", "(UID FLAGS EMAILID BODY.PEEK[TEXT])")
        head = data[0][0]
        assert b"\\Draft" in head and b"\\Seen" in head
        assert r["created"]["d"]["id"].encode() in head
        assert data[0][1] == b"hello there"
    finally:
        await run(c.logout)


# --- create ----------------------------------------------------------------------------------

async def test_create_with_text_html_and_attachments_by_blob(store, acc, ctx):
    src_raw = msg("attached message")
    src = deliver(store, acc, src_raw)
    with store.view() as v:
        src_blob = ids.blob_id(v.email(acc, src).blob)
    r = await email_set(ctx, create={"k": {
        "mailboxIds": {mid(store, acc, "drafts"): True},
        "from": [{"name": "Jöhn Smïth", "email": "john@example.com"}],
        "to": [{"name": None, "email": "bob@example.org"}],
        "subject": "Grüße — with attachments",
        "textBody": [{"partId": "1", "type": "text/plain"}],
        "htmlBody": [{"partId": "2", "type": "text/html"}],
        "bodyValues": {"1": {"value": "plain ünïcode\nsecond line"},
                       "2": {"value": "<p>html</p>"}},
        "attachments": [
            {"blobId": src_blob, "type": "message/rfc822", "name": "fwd.eml"},
            {"blobId": src_blob, "type": "application/octet-stream",
             "name": "résumé of a very long file name that needs continuations.bin",
             "disposition": "attachment"},
        ]}})
    created = r["created"]["k"]
    eid = ids.parse("E", created["id"])
    raw = raw_of(store, acc, eid)
    assert created["size"] == len(raw)
    assert created["blobId"] == ids.blob_id(record(store, acc, eid).blob)
    mi = mindex.index_message(raw)
    assert mi.subject == "Grüße — with attachments"
    assert mi.from_ == (("Jöhn Smïth", "john@example.com"),)
    assert mi.message_id and mi.sent_at
    head = raw[:mi.header_end]
    assert b"MIME-Version: 1.0" in head and head.isascii()
    assert all(len(ln) <= 998 for ln in raw.split(b"\r\n"))
    assert mi.jmap_body["type"] == "multipart/mixed"
    alt, fwd, att = mi.jmap_body["subParts"]
    assert [p["type"] for p in alt["subParts"]] == ["text/plain", "text/html"]
    assert mindex.body_text(raw, mi, "1.1") == "plain ünïcode\r\nsecond line"
    assert mindex.body_text(raw, mi, "1.2") == "<p>html</p>"
    assert fwd["type"] == "message/rfc822" and fwd["name"] == "fwd.eml"
    assert mindex.decoded_part(raw, mi, "2") == src_raw
    assert att["name"] == "résumé of a very long file name that needs continuations.bin"
    assert att["disposition"] == "attachment"
    assert mindex.decoded_part(raw, mi, "3") == src_raw
    assert mi.text_body == ("1.1",) and mi.html_body == ("1.2",)


async def test_create_inline_image_goes_in_related(store, acc, ctx):
    src = deliver(store, acc, msg("img"))
    with store.view() as v:
        blob = ids.blob_id(v.email(acc, src).blob)
    r = await email_set(ctx, create={"k": {
        "mailboxIds": {mid(store, acc, "drafts"): True},
        "htmlBody": [{"partId": "h", "type": "text/html"}],
        "bodyValues": {"h": {"value": '<img src="cid:img1@x">'}},
        "attachments": [{"blobId": blob, "type": "image/png", "cid": "img1@x",
                         "disposition": "inline"}]}})
    raw = raw_of(store, acc, ids.parse("E", r["created"]["k"]["id"]))
    mi = mindex.index_message(raw)
    assert mi.jmap_body["type"] == "multipart/related"
    assert mi.jmap_body["subParts"][1]["cid"] == "img1@x"


async def test_create_body_structure_and_header_forms(store, acc, ctx):
    r = await email_set(ctx, create={"k": {
        "mailboxIds": {mid(store, acc, "drafts"): True},
        "messageId": ["abc@example.com"], "inReplyTo": ["parent@example.com"],
        "sentAt": "2024-05-01T10:00:00+02:00",
        "header:X-Tag:asText": "ïnternational tag",
        "header:List-Post:asURLs": ["mailto:list@example.com"],
        "header:X-Raw": " raw value",
        "header:X-Multi:all": ["one", "two"],
        "header:To:asGroupedAddresses": [
            {"name": "Team", "addresses": [{"name": "A", "email": "a@x"}]},
            {"name": None, "addresses": [{"name": None, "email": "b@x"}]}],
        "bodyStructure": {"type": "multipart/alternative", "subParts": [
            {"partId": "p", "type": "text/plain", "header:X-Part:asText": "part header"},
            {"partId": "h", "type": "text/html", "language": ["en"], "location": "http://x/"}]},
        "bodyValues": {"p": {"value": "plain", "isTruncated": False}, "h": {"value": "<b>h</b>"}},
    }})
    eid = ids.parse("E", r["created"]["k"]["id"])
    raw = raw_of(store, acc, eid)
    mi = mindex.index_message(raw)
    assert mi.message_id == "abc@example.com"
    assert mi.in_reply_to == ("parent@example.com",)
    assert mi.sent_at_tz == 120
    head = raw[:mi.header_end].decode()
    assert "X-Tag: =?utf-8?b?" in head and "List-Post: <mailto:list@example.com>" in head
    assert "X-Raw: raw value" in head and "X-Multi: one\r\nX-Multi: two" in head
    assert "To: Team: A <a@x>;, b@x" in head
    assert mi.jmap_body["type"] == "multipart/alternative"
    p, h = mi.jmap_body["subParts"]
    assert {"name": "X-Part", "value": " part header"} in p["headers"]
    assert h["language"] == ["en"] and h["location"] == "http://x/"
    # threading: the In-Reply-To counts like any delivered message
    assert record(store, acc, eid).thread == eid


async def test_create_without_body_is_an_empty_text(store, acc, ctx):
    r = await email_set(ctx, create={"k": {"mailboxIds": {mid(store, acc, "drafts"): True}}})
    raw = raw_of(store, acc, ids.parse("E", r["created"]["k"]["id"]))
    mi = mindex.index_message(raw)
    assert mi.jmap_body["type"] == "text/plain" and raw.endswith(b"\r\n\r\n")


def _base(store, acc, **kw):
    obj = {"mailboxIds": {mid(store, acc, "drafts"): True},
           "textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "x"}}}
    obj.update(kw)
    return {k: v for k, v in obj.items() if v is not None}


@pytest.mark.parametrize("extra,err,props", [
    ({"id": "E1"}, "invalidProperties", ["id"]),
    ({"blobId": "B00", "threadId": "T1", "size": 3}, "invalidProperties",
     ["blobId", "size", "threadId"]),
    ({"headers": []}, "invalidProperties", ["headers"]),
    ({"preview": "x"}, "invalidProperties", ["preview"]),
    ({"nonsense": 1}, "invalidProperties", ["nonsense"]),
    ({"mailboxIds": {}}, "invalidProperties", ["mailboxIds"]),
    ({"mailboxIds": None}, "invalidProperties", ["mailboxIds"]),
    ({"mailboxIds": {"M999": True}}, "invalidProperties", ["mailboxIds"]),
    ({"keywords": {"$seen": "yes"}}, "invalidProperties", ["keywords"]),
    ({"receivedAt": "yesterday"}, "invalidProperties", ["receivedAt"]),
    ({"from": [{"email": "a@b"}], "header:From:asAddresses": [{"email": "c@d"}]},
     "invalidProperties", ["from"]),
    ({"header:Content-Type": "text/plain"}, "invalidProperties", ["header:Content-Type"]),
    ({"header:From:asDate": "2020-01-01T00:00:00Z"}, "invalidProperties",
     ["header:From:asDate"]),
    ({"header:Subject:asNope": "x"}, "invalidProperties", ["header:Subject:asNope"]),
    ({"subject": 5}, "invalidProperties", ["subject"]),
    ({"from": [{"name": "x", "email": "a b@c"}]}, "invalidProperties", ["from"]),
    ({"messageId": ["a b"]}, "invalidProperties", ["messageId"]),
    ({"sentAt": "2020-13-01T00:00:00Z"}, "invalidProperties", ["sentAt"]),
    ({"header:X-Raw": "a\r\nb"}, "invalidProperties", ["header:X-Raw"]),
    ({"bodyStructure": {"partId": "t"}}, "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t", "type": "text/html"}]}, "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t"}, {"partId": "t"}]}, "invalidProperties", ["textBody"]),
    ({"htmlBody": [{"partId": "t", "type": "text/plain"}]}, "invalidProperties", ["htmlBody"]),
    ({"textBody": [{"partId": "nope"}]}, "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t", "charset": "utf-8"}]}, "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t", "size": 1}]}, "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t", "headers": []}]}, "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t", "header:Content-Transfer-Encoding": "base64"}]},
     "invalidProperties", ["textBody"]),
    ({"textBody": [{"partId": "t", "blobId": "B" + "0" * 64}]}, "invalidProperties",
     ["textBody"]),
    ({"bodyValues": {"t": {"value": "x", "isTruncated": True}}}, "invalidProperties",
     ["bodyValues"]),
    ({"textBody": None, "bodyStructure": {"type": "multipart/mixed", "partId": "t",
                                          "subParts": []}},
     "invalidProperties", ["bodyStructure"]),
    ({"textBody": None, "bodyStructure": {"partId": "t", "header:Subject": "x"},
      "subject": "y"}, "invalidProperties", ["bodyStructure"]),
    ({"attachments": [{"blobId": "B" + "1" * 64}, {"blobId": "Bnope"}]}, "blobNotFound", None),
])
async def test_create_errors(store, acc, ctx, extra, err, props):
    with store.view() as v:
        before = v.highest_modseq(acc)
    r = await email_set(ctx, create={"k": _base(store, acc, **extra)})
    got = r["notCreated"]["k"]
    assert got["type"] == err, got
    if props is not None:
        assert got["properties"] == props
    if err == "blobNotFound":
        assert got["notFound"] == ["B" + "1" * 64, "Bnope"]
    with store.view() as v:
        assert v.highest_modseq(acc) == before
    assert r["created"] is None


async def test_create_over_quota_and_too_large(store, acc, ctx, tmp_path):
    import dataclasses
    cfg = ctx.cfg
    small = dataclasses.replace(cfg, imap=dataclasses.replace(cfg.imap, max_literal=100))
    c2 = JmapContext(store, None, small, acc, "alice")
    r = await email_set(c2, create={"k": _base(store, acc, bodyValues={"t": {"value": "x" * 200}})})
    assert r["notCreated"]["k"]["type"] == "tooLarge"
    store.write_sync(ops.set_quota, acc, 50)
    r = await email_set(ctx, create={"k": _base(store, acc)})
    assert r["notCreated"]["k"]["type"] == "overQuota"


async def test_creation_references_across_calls(store, acc, ctx):
    rs = await call(ctx,
                    ["Email/set", {"create": {"k": _base(store, acc)}}],
                    ["Email/set", {"update": {"#k": {"keywords/$seen": True}}}],
                    ["Email/set", {"destroy": ["#k"]}])
    eid = rs[0][1]["created"]["k"]["id"]
    assert rs[1][1]["updated"] == {eid: None}
    assert rs[2][1]["destroyed"] == [eid]


# --- copy -------------------------------------------------------------------------------------

async def test_copy_needs_another_account(store, acc, ctx):
    """RFC 8620 §5.4: accountId MUST differ from fromAccountId; a user owns
    one account, so the own account is invalidArguments and any other is
    fromAccountNotFound.  Nothing is written either way."""
    eid = deliver(store, acc, msg("c"))
    me = ids.account_id(acc)
    before = record(store, acc, eid)
    [r] = await call(ctx, ["Email/copy", {"fromAccountId": "A999", "create": {}}])
    assert r[0] == "error" and r[1]["type"] == "fromAccountNotFound"
    [r] = await call(ctx, ["Email/copy", {"fromAccountId": me, "onSuccessDestroyOriginal": True,
                                          "create": {"x": {"id": ids.email_id(eid),
                                                           "mailboxIds": {mid(store, acc, "archive"): True}}}}])
    assert r[0] == "error" and r[1]["type"] == "invalidArguments"
    [r] = await call(ctx, ["Email/copy", {"create": {}}])
    assert r[0] == "error" and r[1]["type"] == "invalidArguments"
    assert record(store, acc, eid).members == before.members


# --- import -----------------------------------------------------------------------------------

async def test_import_a_stored_blob(store, acc, ctx):
    raw = msg("imported")
    src = deliver(store, acc, raw)
    with store.view() as v:
        blob = ids.blob_id(v.email(acc, src).blob)
        st = v.kind_state(acc, "Email")
    [r] = await call(ctx, ["Email/import", {"ifInState": st, "emails": {"i": {
        "blobId": blob, "mailboxIds": {mid(store, acc, "archive"): True},
        "keywords": {"$seen": True}, "receivedAt": "2021-02-03T04:05:06Z"}}}])
    assert r[0] == "Email/import"
    c = r[1]["created"]["i"]
    assert c["blobId"] == blob and c["size"] == len(raw) and c["id"] != ids.email_id(src)
    rec = record(store, acc, ids.parse("E", c["id"]))
    assert rec.keywords == ["$seen"] and rec.received_at == 1612325106
    assert rec.thread == record(store, acc, src).thread
    assert r[1]["oldState"] == st and r[1]["newState"] != st


async def test_import_errors(store, acc, ctx):
    junk = ops.NewEmail(raw=b"\x00\x01 not a message", index=b"", blob=b"j" * 32,
                        received_at=0)
    store.write_sync(ops.append, acc, [mbx(store, acc, "inbox")], junk)
    good = deliver(store, acc, msg("ok"))
    with store.view() as v:
        gblob = ids.blob_id(v.email(acc, good).blob)
    arch = {mid(store, acc, "archive"): True}
    [r] = await call(ctx, ["Email/import", {"emails": {
        "nf": {"blobId": "B" + "2" * 64, "mailboxIds": arch},
        "bad": {"blobId": ids.blob_id(b"j" * 32), "mailboxIds": arch},
        "nomb": {"blobId": gblob, "mailboxIds": {}},
        "kw": {"blobId": gblob, "mailboxIds": arch, "keywords": {"a b": True}},
        "extra": {"blobId": gblob, "mailboxIds": arch, "subject": "x"},
        "nob": {"mailboxIds": arch},
        "date": {"blobId": gblob, "mailboxIds": arch, "receivedAt": "2021-02-03T04:05:06+01:00"},
    }}])
    nc = r[1]["notCreated"]
    assert nc["nf"] == {"type": "invalidProperties", "description": "no such blob",
                        "properties": ["blobId"]}
    assert nc["bad"]["type"] == "invalidEmail"
    assert nc["nomb"]["properties"] == ["mailboxIds"]
    assert nc["kw"]["properties"] == ["keywords"]
    assert nc["extra"]["properties"] == ["subject"]
    assert nc["nob"]["properties"] == ["blobId"]
    assert nc["date"]["properties"] == ["receivedAt"]
    assert r[1]["created"] is None
    [r] = await call(ctx, ["Email/import", {"ifInState": "0", "emails": {}}])
    assert r[0] == "error" and r[1]["type"] == "stateMismatch"
    [r] = await call(ctx, ["Email/import", {"emails": []}])
    assert r[1]["type"] == "invalidArguments"


async def test_another_account_is_never_touched(store, acc, ctx):
    bob = store.write_sync(ops.create_account, "bob", "hash")
    beid = deliver(store, bob, msg("bob's"))
    with store.view() as v:
        bblob = ids.blob_id(v.email(bob, beid).blob)
    e = ids.email_id(beid)
    # the same number is no email of alice's
    r = await email_set(ctx, update={e: {"keywords/$seen": True}})
    assert r["notUpdated"][e]["type"] == "notFound"
    r = await email_set(ctx, destroy=[e])
    assert r["notDestroyed"][e]["type"] == "notFound"
    r = await email_set(ctx, create={"k": _base(store, acc, attachments=[{"blobId": bblob}])})
    assert r["notCreated"]["k"]["type"] == "blobNotFound"
    [r] = await call(ctx, ["Email/set", {"accountId": ids.account_id(bob), "destroy": [e]}])
    assert r[1]["type"] == "accountNotFound"
    assert record(store, bob, beid).keywords == []


# --- the store op ------------------------------------------------------------------------------

def test_update_email_op_is_all_or_nothing(store, acc):
    eid = deliver(store, acc, msg("op"))
    before = record(store, acc, eid)
    with pytest.raises(ops.NoSuchMailbox):
        store.write_sync(ops.update_email, acc, eid, add_keywords=["$seen"], add_mailboxes=[999])
    with pytest.raises(ops.TooMany):
        store.write_sync(ops.update_email, acc, eid, add_keywords=[f"k{i}" for i in range(5)],
                         max_keywords=3)
    assert record(store, acc, eid) == before
    assert store.write_sync(ops.update_email, acc, eid, add_keywords=["$Forwarded"]) is True
    assert store.write_sync(ops.update_email, acc, eid, add_keywords=["$forwarded"]) is False
    with store.view() as v:
        assert v.keyword_spellings(acc).get("$forwarded") == "$Forwarded"


async def test_unknown_arguments_are_refused(ctx):
    for name in ("Email/set", "Email/copy", "Email/import"):
        [r] = await call(ctx, [name, {"bogus": 1}])
        assert r[0] == "error" and r[1]["type"] == "invalidArguments", (name, r)


async def test_malformed_call_writes_nothing(store, acc, ctx):
    eids = [ids.email_id(deliver(store, acc, msg(f"m{i}"))) for i in range(3)]
    with store.view() as v:
        ms = v.highest_modseq(acc)
    [r] = await call(ctx, ["Email/set", {"update": {e: {"keywords/$seen": True} for e in eids},
                                         "destroy": [eids[0], 5]}])
    assert r[0] == "error" and r[1]["type"] == "invalidArguments"
    with store.view() as v:
        assert v.highest_modseq(acc) == ms


def test_update_emails_op_reports_failures_per_email(store, acc):
    a, b, c = (deliver(store, acc, msg(s)) for s in "abc")
    results, gone = store.write_sync(ops.update_emails, acc, [
        (a, {"add_keywords": ["$seen"]}),
        (b, {"add_mailboxes": [999]}),
        (424242, {"add_keywords": ["$seen"]}),
        (c, {"mailboxes": set()}),
    ], [c, 777])
    assert results[0] is None
    assert isinstance(results[1], ops.NoSuchMailbox)
    assert isinstance(results[2], ops.NotFound)
    assert isinstance(results[3], ops.Conflict)
    assert gone == [c]
    assert record(store, acc, a).keywords == ["$seen"]
    assert len(record(store, acc, b).members) == 1 and record(store, acc, c) is None


async def test_mailbox_created_earlier_in_the_request(store, acc, ctx):
    rs = await call(ctx,
                    ["Mailbox/set", {"create": {"mb": {"name": "Projects"}}}],
                    ["Email/set", {"create": {"k": {**_base(store, acc),
                                                    "mailboxIds": {"#mb": True}}}}],
                    ["Email/set", {"update": {"#k": {"mailboxIds/#mb": None,
                                                     f"mailboxIds/{mid(store, acc, 'inbox')}": True}}}])
    assert rs[0][1]["created"]["mb"]["id"]
    new = ids.parse("E", rs[1][1]["created"]["k"]["id"])
    assert rs[2][1]["updated"]
    assert {m.mailbox for m in record(store, acc, new).members} == {mbx(store, acc, "inbox")}


async def test_import_many_in_one_transaction_each_on_its_own(store, acc, ctx):
    raws = [msg(f"imp{i}", body="x" * 100) for i in range(4)]
    srcs = [deliver(store, acc, r) for r in raws]
    with store.view() as v:
        blobs = [ids.blob_id(v.email(acc, e).blob) for e in srcs]
        used, ms = v.usage(acc), v.highest_modseq(acc)
    store.write_sync(ops.set_quota, acc, used + len(raws[0]) + len(raws[1]) + 10)
    arch = {mid(store, acc, "archive"): True}
    [r] = await call(ctx, ["Email/import", {"emails": {
        f"i{i}": {"blobId": b, "mailboxIds": arch} for i, b in enumerate(blobs)}}])
    res = r[1]
    assert set(res["created"]) == {"i0", "i1"}
    assert {k: e["type"] for k, e in res["notCreated"].items()} == \
        {"i2": "overQuota", "i3": "overQuota"}
    with store.view() as v:
        assert v.highest_modseq(acc) == ms + 1
        assert len(v.uids(acc, mbx(store, acc, "archive"))) == 2


async def test_batched_creates(store, acc, ctx):
    with store.view() as v:
        ms = v.highest_modseq(acc)
    rs = await call(ctx, ["Email/set", {"create": {
        "a": _base(store, acc, subject="a"), "b": _base(store, acc, subject="b"),
        "bad": _base(store, acc, id="E1"), "nombx": _base(store, acc, mailboxIds={"M999": True}),
        "notobj": 5}}],
        ["Email/set", {"update": {"#a": {"keywords/$seen": True},
                                  "#b": {"keywords/$seen": True}}}])
    r = rs[0][1]
    assert set(r["created"]) == {"a", "b"}
    assert set(r["notCreated"]) == {"bad", "nombx", "notobj"}
    assert r["notCreated"]["bad"]["properties"] == ["id"]
    with store.view() as v:
        assert v.highest_modseq(acc) == ms + 2       # one commit per call
    subjects = {mindex.index_message(raw_of(store, acc, ids.parse("E", c["id"]))).subject
                for c in r["created"].values()}
    assert subjects == {"a", "b"}
    assert set(rs[1][1]["updated"]) == {r["created"]["a"]["id"], r["created"]["b"]["id"]}
