"""JMAP EmailSubmission (RFC 8621 §7) through run_request on a temp store:
envelope derivation, the §7.5 checks, undoStatus and cancel, /query,
/changes, onSuccessUpdateEmail / onSuccessDestroyEmail.  (The sending
itself: tests/test_outbound_service.py.)"""
from __future__ import annotations

import dataclasses

import pytest

from mailaccess import config, ids
from mailaccess.proto.jmap import capabilities as cap

from jmap_helpers import api, deliver, make_ctx, make_store, mbx_by_role

USING = [cap.CORE, cap.MAIL, cap.SUBMISSION]


def cfg(**smtp):
    c = config.Config()
    return dataclasses.replace(c, smtp=dataclasses.replace(c.smtp, **smtp))


@pytest.fixture
def ctx(tmp_path):
    store = make_store(tmp_path)
    c = make_ctx(store)
    c.cfg = cfg(hold=3600)          # stays pending: nothing sends in these tests
    yield c
    store.close()


async def call(ctx, *calls):
    return await api(ctx, *calls, using=USING)


async def one(ctx, name, args):
    r = await call(ctx, [name, args])
    assert r[0][0] == name, r
    return r[0][1]


def draft(ctx, frm="alice@localhost", to="bob@example.com", extra="", keywords=("$draft",)):
    raw = (f"From: {frm}\r\nTo: {to}\r\n{extra}Subject: hi\r\nMessage-ID: <d1@x>\r\n\r\nhello\r\n"
           ).encode()
    drafts = mbx_by_role(ctx, "drafts").id
    return ids.email_id(deliver(ctx, drafts, raw, keywords).email)


async def identity(ctx):
    return (await one(ctx, "Identity/get", {"ids": None}))["list"][0]["id"]


async def submit(ctx, email_id, **more):
    obj = {"identityId": await identity(ctx), "emailId": email_id}
    obj.update(more)
    return await one(ctx, "EmailSubmission/set", {"create": {"k": obj}})


async def test_create_derives_envelope_and_is_pending(ctx):
    e = draft(ctx, to="Bob <bob@example.com>, carol@example.org",
              extra="Cc: bob@example.com\r\nBcc: dave@example.net\r\n")
    res = await submit(ctx, e)
    made = res["created"]["k"]
    assert made["undoStatus"] == "pending"
    assert made["envelope"] == {
        "mailFrom": {"email": "alice@localhost", "parameters": None},
        "rcptTo": [{"email": a, "parameters": None}
                   for a in ("bob@example.com", "carol@example.org", "dave@example.net")]}
    got = (await one(ctx, "EmailSubmission/get", {"ids": [made["id"]]}))["list"][0]
    assert got["emailId"] == e and got["threadId"].startswith("T")
    assert got["dsnBlobIds"] == [] and got["mdnBlobIds"] == []
    assert {r: s["delivered"] for r, s in got["deliveryStatus"].items()} == {
        "bob@example.com": "queued", "carol@example.org": "queued", "dave@example.net": "queued"}
    # the queued copy has no Bcc header
    with ctx.store.view() as v:
        raw = v.outbound_message(ctx.acc, ids.parse("S", made["id"]))
    assert b"Bcc" not in raw and b"hello" in raw


async def test_sender_header_gives_mail_from_and_an_unallowed_one_the_identity(ctx):
    e = draft(ctx, extra="Sender: alice+lists@localhost\r\n")
    res = await submit(ctx, e)
    assert res["created"]["k"]["envelope"]["mailFrom"]["email"] == "alice+lists@localhost"


async def test_checks_of_7_5(ctx):
    ctx.cfg = cfg(hold=3600, max_recipients=2, max_size=400)
    ident = await identity(ctx)

    async def err(email_id, **more):
        obj = {"identityId": ident, "emailId": email_id}
        obj.update(more)
        res = await one(ctx, "EmailSubmission/set", {"create": {"k": obj}})
        assert "k" not in (res["created"] or {}), res
        return res["notCreated"]["k"]

    assert (await err(draft(ctx, frm="mallory@example.com")))["type"] == "forbiddenFrom"
    assert (await err(draft(ctx, to="a@x.example, b@x.example, c@x.example")))["type"] == \
        "tooManyRecipients"
    e = await err(draft(ctx, to="undisclosed-recipients:;"))
    assert e["type"] == "noRecipients"
    e = await err(draft(ctx), envelope={"mailFrom": {"email": "alice@localhost"},
                                        "rcptTo": [{"email": "bad address"}]})
    assert e["type"] == "invalidRecipients" and e["invalidRecipients"] == ["bad address"]
    e = await err(draft(ctx), envelope={"mailFrom": {"email": "boss@example.com"},
                                        "rcptTo": [{"email": "x@example.com"}]})
    assert e["type"] == "forbiddenMailFrom"
    e = await err(draft(ctx, frm="alice@localhost, alice+b@localhost"))
    assert e["type"] == "invalidEmail"
    e = await err(draft(ctx, extra="X-Pad: " + "y" * 500 + "\r\n"))
    assert e["type"] == "tooLarge" and e["maxSize"] == 400
    assert (await err("E9999"))["type"] == "invalidProperties"
    res = await one(ctx, "EmailSubmission/set", {"create": {"k": {
        "identityId": "I999", "emailId": draft(ctx)}}})
    assert res["notCreated"]["k"]["type"] == "invalidProperties"
    assert res["notCreated"]["k"]["properties"] == ["identityId"]
    ctx.cfg = cfg(send_enabled=False)
    assert (await err(draft(ctx)))["type"] == "forbiddenToSend"


async def test_cancel_while_pending_then_cannot_unsend(ctx):
    res = await submit(ctx, draft(ctx))
    sid = res["created"]["k"]["id"]
    st = res["newState"]
    r = await one(ctx, "EmailSubmission/set", {"update": {sid: {"undoStatus": "canceled"}}})
    assert sid in r["updated"]
    got = (await one(ctx, "EmailSubmission/get", {"ids": [sid]}))["list"][0]
    assert got["undoStatus"] == "canceled"
    with ctx.store.view() as v:
        assert v.outbound_queue() == []          # nothing left to send
    ch = await one(ctx, "EmailSubmission/changes", {"sinceState": st})
    assert ch["updated"] == [sid]
    r = await one(ctx, "EmailSubmission/set", {"update": {sid: {"undoStatus": "canceled"}}})
    assert sid in r["updated"]                   # no change: fine
    r = await one(ctx, "EmailSubmission/set", {"update": {sid: {"undoStatus": "pending"}}})
    assert r["notUpdated"][sid]["type"] == "invalidProperties"
    r = await one(ctx, "EmailSubmission/set", {"update": {sid: {"emailId": "E77"}}})
    assert r["notUpdated"][sid]["type"] == "invalidProperties"


async def test_cannot_unsend_once_final(ctx):
    from mailaccess.store import sending
    res = await submit(ctx, draft(ctx))
    sid = res["created"]["k"]["id"]
    ctx.store.write_sync(sending.claim, ctx.acc, ids.parse("S", sid))
    r = await one(ctx, "EmailSubmission/set", {"update": {sid: {"undoStatus": "canceled"}}})
    assert r["notUpdated"][sid]["type"] == "cannotUnsend"


async def test_on_success_update_email_by_creation_reference(ctx):
    e = draft(ctx)
    sent = ids.mailbox_id(mbx_by_role(ctx, "sent").id)
    drafts = ids.mailbox_id(mbx_by_role(ctx, "drafts").id)
    ident = await identity(ctx)
    r = await call(ctx, ["EmailSubmission/set", {
        "create": {"k": {"identityId": ident, "emailId": e}},
        "onSuccessUpdateEmail": {"#k": {"mailboxIds/" + sent: True,
                                        "mailboxIds/" + drafts: None,
                                        "keywords/$draft": None, "keywords/$seen": True}}}])
    assert [x[0] for x in r] == ["EmailSubmission/set", "Email/set"]
    assert r[0][2] == r[1][2]
    assert e in r[1][1]["updated"]
    with ctx.store.view() as v:
        rec = v.email(ctx.acc, ids.parse("E", e))
    assert rec.keywords == ["$seen"]
    assert [m.mailbox for m in rec.members] == [ids.parse("M", sent)]


async def test_on_success_destroy_email_and_failed_create_does_nothing(ctx):
    e = draft(ctx)
    bad = draft(ctx, frm="mallory@example.com")
    ident = await identity(ctx)
    r = await call(ctx, ["EmailSubmission/set", {
        "create": {"k": {"identityId": ident, "emailId": e},
                   "b": {"identityId": ident, "emailId": bad}},
        "onSuccessDestroyEmail": ["#k", "#b"]}])
    assert r[1][0] == "Email/set" and r[1][1]["destroyed"] == [e]
    with ctx.store.view() as v:
        assert v.email(ctx.acc, ids.parse("E", e)) is None
        assert v.email(ctx.acc, ids.parse("E", bad)) is not None
        # the queued copy survives the email
        assert v.outbound_message(ctx.acc, ids.parse("S", r[0][1]["created"]["k"]["id"]))


async def test_email_created_in_the_same_request_by_reference(ctx):
    e = draft(ctx)
    ident = await identity(ctx)
    r = await call(ctx, ["EmailSubmission/set", {
        "create": {"k": {"identityId": ident, "emailId": "#m"}}}])
    assert r[0][1]["notCreated"]["k"]["type"] == "invalidProperties"
    r = await api(ctx, ["EmailSubmission/set", {
        "create": {"k": {"identityId": ident, "emailId": "#m"}}}], using=USING,
        created_ids={"m": e})
    assert r[0][1]["created"]["k"]["id"]


async def test_query_filters_sorts_and_query_changes(ctx):
    ident = await identity(ctx)
    e1, e2, e3 = draft(ctx), draft(ctx), draft(ctx)
    s = []
    for e in (e1, e2, e3):
        s.append((await submit(ctx, e))["created"]["k"]["id"])
    q = await one(ctx, "EmailSubmission/query", {"sort": [{"property": "emailId",
                                                           "isAscending": False}]})
    assert q["ids"] == s[::-1]
    q0 = await one(ctx, "EmailSubmission/query", {"filter": {"emailIds": [e1, e3]},
                                                  "calculateTotal": True})
    assert q0["ids"] == [s[0], s[2]] and q0["total"] == 2
    await one(ctx, "EmailSubmission/set", {"update": {s[0]: {"undoStatus": "canceled"}}})
    q = await one(ctx, "EmailSubmission/query", {"filter": {"undoStatus": "pending"}})
    assert q["ids"] == s[1:]
    q = await one(ctx, "EmailSubmission/query", {"filter": {
        "operator": "NOT", "conditions": [{"identityIds": [ident]}]}})
    assert q["ids"] == []
    q = await one(ctx, "EmailSubmission/query", {"filter": {"after": "2000-01-01T00:00:00Z",
                                                            "before": "2999-01-01T00:00:00Z"},
                                                 "sort": [{"property": "sentAt"}]})
    assert sorted(q["ids"]) == sorted(s)
    r = await call(ctx, ["EmailSubmission/query", {"filter": {"subject": "x"}}])
    assert r[0][1]["type"] == "unsupportedFilter"
    r = await call(ctx, ["EmailSubmission/query", {"sort": [{"property": "size"}]}])
    assert r[0][1]["type"] == "unsupportedSort"
    qc = await one(ctx, "EmailSubmission/queryChanges", {
        "filter": {"emailIds": [e1, e3]}, "sinceQueryState": q0["queryState"]})
    # the canceled one changed: removed, and added back where it still matches
    assert qc["removed"] == [s[0]] and qc["added"] == [{"id": s[0], "index": 0}]


async def test_destroy(ctx):
    res = await submit(ctx, draft(ctx))
    sid = res["created"]["k"]["id"]
    r = await one(ctx, "EmailSubmission/set", {"destroy": [sid, "S999"]})
    assert r["destroyed"] == [sid] and r["notDestroyed"]["S999"]["type"] == "notFound"
    with ctx.store.view() as v:
        assert v.outbound_queue() == []          # a pending one is not sent
    g = await one(ctx, "EmailSubmission/get", {"ids": [sid]})
    assert g["notFound"] == [sid]


@pytest.mark.parametrize("obj", [
    {"envelope": "x"},
    {"envelope": {"mailFrom": "alice@localhost", "rcptTo": []}},
    {"envelope": {"mailFrom": {"email": "alice@localhost"}, "rcptTo": "b@x"}},
    {"envelope": {"mailFrom": {"email": "alice@localhost", "parameters": {"HOLDFOR": "9"}},
                  "rcptTo": [{"email": "b@example.com"}]}},
    {"envelope": {"mailFrom": {"email": 7}, "rcptTo": [{"email": "b@example.com"}]}},
    {"identityId": 5},
    {"emailId": ["E1"]},
    {"undoStatus": "final"},
    {"deliveryStatus": {"b@x": {}}},
    {"sendAt": "2030-01-01T00:00:00Z"},
    {"nosuch": 1},
])
async def test_hostile_create_is_a_set_error(ctx, obj):
    base = {"identityId": await identity(ctx), "emailId": draft(ctx)}
    base.update(obj)
    res = await one(ctx, "EmailSubmission/set", {"create": {"k": base, "z": 3}})
    assert res["notCreated"]["k"]["type"] == "invalidProperties", res
    assert res["notCreated"]["z"]["type"] == "invalidProperties"
    with ctx.store.view() as v:
        assert v.outbound_queue() == []


@pytest.mark.parametrize("args", [
    {"onSuccessUpdateEmail": []}, {"onSuccessUpdateEmail": {"#k": 1}},
    {"onSuccessDestroyEmail": {"a": 1}}, {"onSuccessDestroyEmail": [1]}, {"create": []},
])
async def test_bad_set_arguments(ctx, args):
    r = await call(ctx, ["EmailSubmission/set", args])
    assert r[0][0] == "error" and r[0][1]["type"] == "invalidArguments"


@pytest.mark.parametrize("f", [{"undoStatus": "sent"}, {"before": "yesterday"},
                               {"emailIds": "E1"}, {"operator": "XOR", "conditions": []}])
async def test_bad_query_filters(ctx, f):
    r = await call(ctx, ["EmailSubmission/query", {"filter": f}])
    assert r[0][0] == "error" and r[0][1]["type"] in ("unsupportedFilter", "invalidArguments")
