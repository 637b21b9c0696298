"""JMAP Mailbox (RFC 8621 §2) through run_request on a temp store, and
cross-protocol: what Mailbox/set does is what the store (and so IMAP) sees,
and what IMAP-side ops do shows in Mailbox/changes."""
from __future__ import annotations

import json

import pytest

from mailaccess import ids, vocab
from mailaccess.store import ops

from jmap_helpers import api, deliver, make_ctx, make_store, mbx_by_role, message, one


@pytest.fixture
def ctx(tmp_path):
    store = make_store(tmp_path)
    yield make_ctx(store)
    store.close()


def by_name(res):
    return {m["name"]: m for m in res["list"]}


async def test_get_defaults(ctx):
    res = await one(ctx, "Mailbox/get", {"ids": None})
    boxes = by_name(res)
    assert set(boxes) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    inbox = boxes["INBOX"]
    assert inbox["role"] == "inbox" and inbox["parentId"] is None
    assert inbox["id"] == ids.mailbox_id(mbx_by_role(ctx, "inbox").id)
    assert inbox["isSubscribed"] is True and inbox["sortOrder"] == 0
    assert inbox["totalEmails"] == inbox["unreadEmails"] == inbox["totalThreads"] == 0
    assert inbox["myRights"]["mayDelete"] is False and boxes["Sent"]["myRights"]["mayDelete"]
    assert res["state"] == "1" and res["notFound"] == []
    res = await one(ctx, "Mailbox/get", {"ids": [inbox["id"], "M999", "zz"],
                                        "properties": ["name"]})
    assert res["list"] == [{"id": inbox["id"], "name": "INBOX"}]
    assert res["notFound"] == ["M999", "zz"]
    r = await api(ctx, ["Mailbox/get", {"properties": ["nope"]}])
    assert r[0][1]["type"] == "invalidArguments"


async def test_counts_follow_the_rfc(ctx):
    inbox = mbx_by_role(ctx, "inbox").id
    trash = mbx_by_role(ctx, "trash").id
    deliver(ctx, inbox, message("a", "<1@x>"))                          # unread
    deliver(ctx, inbox, message("Re: a", "<2@x>", "<1@x>"), ["$seen"])  # same thread, read
    deliver(ctx, inbox, message("b", "<3@x>"), ["$draft"])              # a draft: not unread
    deliver(ctx, trash, message("Re: b", "<4@x>", "<3@x>"))             # unread, trash only
    res = by_name(await one(ctx, "Mailbox/get", {"ids": None}))
    assert res["INBOX"]["totalEmails"] == 3 and res["INBOX"]["unreadEmails"] == 1
    assert res["INBOX"]["totalThreads"] == 2
    # thread b's only unread email is only in the trash: ignored for the inbox
    assert res["INBOX"]["unreadThreads"] == 1
    assert res["Trash"]["totalEmails"] == 1 and res["Trash"]["unreadThreads"] == 1
    assert res["Trash"]["totalThreads"] == 1


async def test_changes_see_imap_side_creates_and_deliveries(ctx):
    st = (await one(ctx, "Mailbox/get", {"ids": []}))["state"]
    # what an IMAP CREATE does
    new = ctx.store.write_sync(ops.create_mailbox_path, ctx.acc, ["Lists", "python"])
    deliver(ctx, mbx_by_role(ctx, "inbox").id, message())
    res = await one(ctx, "Mailbox/changes", {"sinceState": st})
    assert set(res["created"]) == {ids.mailbox_id(new), ids.mailbox_id(new - 1)}
    assert res["updated"] == [ids.mailbox_id(mbx_by_role(ctx, "inbox").id)]
    assert res["hasMoreChanges"] is False
    # the creates are created; the inbox's update is a delivery: only counts
    counts = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
    assert res["updatedProperties"] == counts
    res2 = await one(ctx, "Mailbox/changes", {"sinceState": str(int(st) + 1)})
    assert res2["created"] == [] and res2["updated"] == res["updated"]
    assert res2["updatedProperties"] == ["totalEmails", "unreadEmails", "totalThreads",
                                         "unreadThreads"]
    ctx.store.write_sync(ops.update_mailbox, ctx.acc, mbx_by_role(ctx, "inbox").id,
                         subscribed=False)          # IMAP UNSUBSCRIBE: a property
    res3 = await one(ctx, "Mailbox/changes", {"sinceState": str(int(st) + 1)})
    assert res3["updatedProperties"] is None
    page = await one(ctx, "Mailbox/changes", {"sinceState": st, "maxChanges": 1})
    assert page["hasMoreChanges"] and len(page["created"] + page["updated"]) == 1
    r = await api(ctx, ["Mailbox/changes", {"sinceState": "bogus"}])
    assert r[0][1]["type"] == "cannotCalculateChanges"


async def test_set_create_tree_with_creation_refs_and_imap_sees_it(ctx):
    r = await api(ctx, ["Mailbox/set", {"create": {
        "leaf": {"name": "leaf", "parentId": "#mid"},
        "mid": {"name": "mid", "parentId": "#top", "isSubscribed": False},
        "top": {"name": "top", "sortOrder": 5}}}],
        ["Mailbox/get", {"ids": ["#leaf"], "properties": ["name", "parentId"]}])
    res = r[0][1]
    assert set(res["created"]) == {"leaf", "mid", "top"}, res
    created = {k: v["id"] for k, v in res["created"].items()}
    assert res["created"]["top"]["totalEmails"] == 0
    assert res["created"]["top"]["isSubscribed"] is True       # the default is reported
    assert "sortOrder" not in res["created"]["top"]             # given as the client sent it
    assert r[1][1]["list"] == [{"id": created["leaf"], "name": "leaf",
                                "parentId": created["mid"]}]
    with ctx.store.view() as v:
        m = v.mailbox_by_path(ctx.acc, ["top", "mid", "leaf"])     # IMAP LIST's view
        assert m is not None and ids.mailbox_id(m.id) == created["leaf"]
        assert not v.mailbox_by_path(ctx.acc, ["top", "mid"]).subscribed
        assert v.mailbox_by_path(ctx.acc, ["top"]).subscribed
        assert v.mailbox_by_path(ctx.acc, ["top"]).sort_order == 5
    assert res["oldState"] != res["newState"]


@pytest.mark.parametrize("obj,prop", [
    ({}, "name"), ({"name": ""}, "name"), ({"name": "a/b"}, "name"),
    ({"name": "x" * 300}, "name"), ({"name": "Sent"}, "name"), ({"name": "inbox"}, "name"),
    ({"name": "x", "role": "trash"}, "role"), ({"name": "x", "role": "bogus"}, "role"),
    ({"name": "x", "parentId": "M999"}, "parentId"), ({"name": "x", "parentId": "#nope"}, "parentId"),
    ({"name": "x", "sortOrder": -1}, "sortOrder"), ({"name": "x", "totalEmails": 0}, "totalEmails"),
    ({"name": "x", "id": "M1"}, "id"), ({"name": "x", "isSubscribed": 1}, "isSubscribed"),
])
async def test_set_create_invalid(ctx, obj, prop):
    res = await one(ctx, "Mailbox/set", {"create": {"k": obj}})
    err = res["notCreated"]["k"]
    assert err["type"] == "invalidProperties" and err["properties"] == [prop], err
    assert res["oldState"] == res["newState"]


async def test_set_role_unique_and_new_role(ctx):
    res = await one(ctx, "Mailbox/set", {"create": {"a": {"name": "All mail", "role": "all"}}})
    assert res["created"]["a"]["id"]
    with ctx.store.view() as v:
        assert v.mailbox_by_role(ctx.acc, "all").name == "All mail"


async def test_set_update_rename_move_and_cycles(ctx):
    res = await one(ctx, "Mailbox/set", {"create": {
        "a": {"name": "a"}, "b": {"name": "b", "parentId": "#a"}}})
    a, b = res["created"]["a"]["id"], res["created"]["b"]["id"]
    sent = ids.mailbox_id(mbx_by_role(ctx, "sent").id)
    inbox = ids.mailbox_id(mbx_by_role(ctx, "inbox").id)
    res = await one(ctx, "Mailbox/set", {"update": {
        b: {"parentId": None, "name": "bee", "sortOrder": 3, "isSubscribed": True},
        a: {"parentId": a},
        sent: {"role": None},
        inbox: {"name": "Posteingang"},
    }})
    assert res["updated"] == {b: None, sent: None}, res
    assert res["notUpdated"][a]["type"] == "invalidProperties"
    assert res["notUpdated"][inbox]["type"] == "forbidden"
    with ctx.store.view() as v:
        m = v.mailbox_by_path(ctx.acc, ["bee"])
        assert ids.mailbox_id(m.id) == b and m.sort_order == 3 and m.subscribed
        assert v.mailbox_by_role(ctx.acc, "sent") is None
    # a move below one's own child is a cycle
    res = await one(ctx, "Mailbox/set", {"update": {b: {"parentId": a}}})
    res = await one(ctx, "Mailbox/set", {"update": {a: {"parentId": b}}})
    assert res["notUpdated"][a]["properties"] == ["parentId"]
    res = await one(ctx, "Mailbox/set", {"update": {
        a: {"totalEmails": 5}, b: {"name/x": 1}, "M999": {"name": "z"}}})
    assert res["notUpdated"][a]["type"] == "invalidProperties"
    assert res["notUpdated"][b]["type"] == "invalidPatch"
    assert res["notUpdated"]["M999"]["type"] == "notFound"


async def test_set_destroy_rules(ctx):
    res = await one(ctx, "Mailbox/set", {"create": {
        "p": {"name": "p"}, "c": {"name": "c", "parentId": "#p"}, "e": {"name": "e"}}})
    p, c, e = (res["created"][k]["id"] for k in "pce")
    inbox = mbx_by_role(ctx, "inbox").id
    full = ids.parse("M", e)
    r = deliver(ctx, full, message("only here", "<o@x>"))
    ctx.store.write_sync(ops.copy, ctx.acc, [r.email], inbox)  # also in the inbox
    deliver(ctx, full, message("only e", "<oe@x>"))
    res = await one(ctx, "Mailbox/set", {"destroy": [p, e, ids.mailbox_id(inbox)]})
    assert res["notDestroyed"][p]["type"] == "mailboxHasChild"
    assert res["notDestroyed"][e]["type"] == "mailboxHasEmail"
    assert res["notDestroyed"][ids.mailbox_id(inbox)]["type"] == "forbidden"
    # parent and child in one call: children go first
    res = await one(ctx, "Mailbox/set", {"destroy": [p, c, e], "onDestroyRemoveEmails": True})
    assert sorted(res["destroyed"]) == sorted([p, c, e]), res
    with ctx.store.view() as v:
        assert v.mailbox(ctx.acc, full) is None
        assert len(v.email_ids(ctx.acc)) == 1       # the one also in the inbox stays
        assert len(v.uids(ctx.acc, inbox)) == 1


async def test_if_in_state(ctx):
    st = (await one(ctx, "Mailbox/get", {"ids": []}))["state"]
    r = await api(ctx, ["Mailbox/set", {"ifInState": "0", "create": {"a": {"name": "a"}}}])
    assert r[0][1]["type"] == "stateMismatch"
    res = await one(ctx, "Mailbox/set", {"ifInState": st, "create": {"a": {"name": "a"}}})
    assert res["oldState"] == st and res["created"]["a"]


async def make_tree(ctx):
    res = await one(ctx, "Mailbox/set", {"create": {
        "w": {"name": "Work", "sortOrder": 1, "isSubscribed": False},
        "w1": {"name": "zeta", "parentId": "#w", "isSubscribed": True},
        "w2": {"name": "Alpha", "parentId": "#w", "isSubscribed": False},
        "h": {"name": "home", "sortOrder": 1, "isSubscribed": True}}})
    return {k: v["id"] for k, v in res["created"].items()}


def ids_of(ctx, *names):
    out = []
    with ctx.store.view() as v:
        for n in names:
            out.append(ids.mailbox_id(v.mailbox_by_path(ctx.acc, n.split("/")).id))
    return out


async def test_query_filters_and_sorts(ctx):
    t = await make_tree(ctx)
    q = await one(ctx, "Mailbox/query", {"filter": {"parentId": t["w"]},
                                         "sort": [{"property": "name"}]})
    assert q["ids"] == [t["w2"], t["w1"]] and q["canCalculateChanges"] is True
    q = await one(ctx, "Mailbox/query", {"filter": {"hasAnyRole": True}, "calculateTotal": True})
    assert q["total"] == 6
    q = await one(ctx, "Mailbox/query", {"filter": {"role": "trash"}})
    assert q["ids"] == ids_of(ctx, "Trash")
    q = await one(ctx, "Mailbox/query", {"filter": {"operator": "AND", "conditions": [
        {"isSubscribed": True}, {"hasAnyRole": False}]}, "sort": [
        {"property": "name", "isAscending": False}]})
    assert q["ids"] == [t["w1"], t["h"]]
    q = await one(ctx, "Mailbox/query", {"filter": {"name": "A"},
                                         "sort": [{"property": "sortOrder"},
                                                  {"property": "name"}]})
    assert q["ids"] == [t["w2"], *ids_of(ctx, "Archive", "Drafts", "Trash"), t["w1"]][:len(q["ids"])]
    q = await one(ctx, "Mailbox/query", {"sortAsTree": True, "sort": [{"property": "name"}]})
    order = ids_of(ctx, "Archive", "Drafts", "home", "INBOX", "Junk", "Sent", "Trash", "Work",
                   "Work/Alpha", "Work/zeta")
    assert q["ids"] == order
    q = await one(ctx, "Mailbox/query", {"filter": {"name": "a"}, "filterAsTree": True,
                                         "sort": [{"property": "name"}]})
    assert t["w2"] not in q["ids"]                # its parent Work has no "a"
    q = await one(ctx, "Mailbox/query", {"filter": {"name": "o"}, "filterAsTree": True,
                                         "sortAsTree": True, "sort": [{"property": "name"}]})
    assert q["ids"] == ids_of(ctx, "home", "INBOX", "Work")
    q = await one(ctx, "Mailbox/query", {"sortAsTree": True, "position": 8, "limit": 1})
    assert len(q["ids"]) == 1 and q["position"] == 8
    r = await api(ctx, ["Mailbox/query", {"filter": {"nope": 1}}],
                  ["Mailbox/query", {"sort": [{"property": "totalEmails"}]}],
                  ["Mailbox/query", {"filter": {"name": 3}}],
                  ["Mailbox/query", {"anchor": "M999"}])
    assert [x[1]["type"] for x in r] == ["unsupportedFilter", "unsupportedSort",
                                         "invalidArguments", "anchorNotFound"]


async def test_query_changes(ctx):
    t = await make_tree(ctx)
    args = {"sortAsTree": True, "sort": [{"property": "name"}]}
    q = await one(ctx, "Mailbox/query", args)
    same = await one(ctx, "Mailbox/queryChanges", dict(args, sinceQueryState=q["queryState"]))
    assert same["removed"] == [] and same["added"] == []
    assert same["newQueryState"] == q["queryState"]
    deliver(ctx, mbx_by_role(ctx, "inbox").id, message())     # only counts change
    same = await one(ctx, "Mailbox/queryChanges", dict(args, sinceQueryState=q["queryState"]))
    assert same["removed"] == [] and same["added"] == []
    assert same["newQueryState"] != q["queryState"]
    await one(ctx, "Mailbox/set", {"update": {t["w"]: {"name": "Abc"}},
                                   "create": {"n": {"name": "new"}},
                                   "destroy": [t["h"]]})
    ch = await one(ctx, "Mailbox/queryChanges", dict(args, sinceQueryState=q["queryState"],
                                                     calculateTotal=True))
    now = (await one(ctx, "Mailbox/query", args))["ids"]
    # replaying the changes on the old results gives the new ones
    old = [i for i in q["ids"] if i not in set(ch["removed"])]
    for a in ch["added"]:
        old.insert(a["index"], a["id"])
    assert old == now and ch["total"] == len(now)
    assert set(ch["removed"]) >= {t["w"], t["h"], t["w1"], t["w2"]}
    r = await api(ctx, ["Mailbox/queryChanges", dict(args, sinceQueryState=q["queryState"],
                                                     maxChanges=1)],
                  ["Mailbox/queryChanges", dict(args, sinceQueryState="x")])
    assert [x[1]["type"] for x in r] == ["tooManyChanges", "cannotCalculateChanges"]


# --- cross-protocol: a real IMAP client on the same store ---------------------------------

async def test_imap_and_jmap_see_each_others_mailboxes(imap_server):
    from imap_helpers import connect, run

    from mailaccess.server.jmap_api import JmapContext
    with imap_server.store.view() as v:
        acc = v.account_by_name("alice").id
    jctx = JmapContext(imap_server.store, imap_server.bus if hasattr(imap_server, "bus")
                       else None, imap_server.cfg, acc, "alice")
    st = (await one(jctx, "Mailbox/get", {"ids": []}))["state"]
    res = await one(jctx, "Mailbox/set", {"create": {
        "p": {"name": "Projects", "isSubscribed": True},
        "c": {"name": "2026", "parentId": "#p", "isSubscribed": False}}})
    child = res["created"]["c"]["id"]

    def imap_side():
        c = connect(imap_server)
        try:
            listed = c.list()[1]
            lsub = c.lsub()[1]
            c.create("FromImap")
            c.subscribe("Projects/2026")
            return listed, lsub
        finally:
            c.logout()
    listed, lsub = await run(imap_side)
    assert any(b'"Projects/2026"' in x or b"Projects/2026" in x for x in listed), listed
    assert any(b"Projects" in x for x in lsub) and not any(b"2026" in x for x in lsub)
    ch = await one(jctx, "Mailbox/changes", {"sinceState": st})
    got = await one(jctx, "Mailbox/get", {"ids": ch["created"], "properties": ["name",
                                                                               "isSubscribed"]})
    names = {m["name"]: m for m in got["list"]}
    assert set(names) == {"Projects", "2026", "FromImap"}
    assert names["2026"]["isSubscribed"] is True        # IMAP SUBSCRIBE
    # a JMAP rename is what IMAP LIST shows next
    await one(jctx, "Mailbox/set", {"update": {child: {"name": "2027"}}})

    def imap_list():
        c = connect(imap_server)
        try:
            return c.list()[1]
        finally:
            c.logout()
    listed = await run(imap_list)
    assert any(b"Projects/2027" in x for x in listed)
    assert not any(b"Projects/2026" in x for x in listed)


# --- /queryChanges replays to the new results, whatever changed (hypothesis) ---------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

OPS = st.lists(st.tuples(st.sampled_from(["create", "rename", "move", "destroy", "subscribe",
                                          "sortorder", "deliver"]),
                         st.integers(0, 50), st.sampled_from(["a", "B", "c", "Zed", "m"])),
               min_size=1, max_size=8)
QUERIES = st.sampled_from([
    {"sortAsTree": True, "sort": [{"property": "name"}]},
    {"sort": [{"property": "name", "isAscending": False}]},
    {"filter": {"isSubscribed": True}, "filterAsTree": True, "sortAsTree": True},
    {"filter": {"hasAnyRole": False}, "sort": [{"property": "sortOrder"},
                                               {"property": "name"}]},
])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=OPS, after=OPS, query=QUERIES)
def test_query_changes_replay(tmp_path_factory, before, after, query):
    import trio

    async def apply(ctx, steps):
        for op, n, name in steps:
            boxes = (await one(ctx, "Mailbox/get", {"ids": None,
                                                    "properties": ["name", "role"]}))["list"]
            b = boxes[n % len(boxes)]["id"]
            other = boxes[(n // 3) % len(boxes)]["id"]
            if op == "create":
                args = {"create": {"k": {"name": f"{name}{n}", "parentId": b,
                                         "isSubscribed": n % 2 == 0}}}
            elif op == "rename":
                args = {"update": {b: {"name": f"{name}{n}"}}}
            elif op == "move":
                args = {"update": {b: {"parentId": None if n % 5 == 0 else other}}}
            elif op == "destroy":
                args = {"destroy": [b], "onDestroyRemoveEmails": True}
            elif op == "deliver":
                deliver(ctx, ids.parse("M", b), message(f"m{n}", f"<{n}.{len(boxes)}@x>"))
                continue
            elif op == "subscribe":
                args = {"update": {b: {"isSubscribed": n % 2 == 1}}}
            else:
                args = {"update": {b: {"sortOrder": n}}}
            await one(ctx, "Mailbox/set", args)     # failures (cycles, ...) are fine

    async def main():
        store = make_store(tmp_path_factory.mktemp("qc"))
        try:
            ctx = make_ctx(store)
            await apply(ctx, before)
            q = await one(ctx, "Mailbox/query", query)
            await apply(ctx, after)
            ch = await one(ctx, "Mailbox/queryChanges",
                           dict(query, sinceQueryState=q["queryState"]))
            now = await one(ctx, "Mailbox/query", query)
            removed = set(ch["removed"])
            got = [i for i in q["ids"] if i not in removed]
            for a in sorted(ch["added"], key=lambda a: a["index"]):
                got.insert(a["index"], a["id"])
            assert got == now["ids"], (ch, q["ids"], now["ids"])
            assert ch["newQueryState"] == now["queryState"]
        finally:
            store.close()
    trio.run(main)


# --- a real client library's requests and parsing (jmapc), without HTTP -------------------

class _FakeResponse:
    def __init__(self, body):
        self._body = body
        self.text = json.dumps(body)

    def raise_for_status(self):
        pass

    def json(self):
        return self._body


def jmapc_client(ctx):
    """A jmapc Client whose API POSTs go to run_request (from a worker thread)."""
    import jmapc
    import trio

    from mailaccess.proto.jmap.request import parse_request
    from mailaccess.server.jmap_api import run_request

    acc = ids.account_id(ctx.acc)
    from jmapc.session import Session
    session = Session.from_dict({
        "username": "alice", "apiUrl": "https://x/api", "downloadUrl": "https://x/d",
        "uploadUrl": "https://x/u", "eventSourceUrl": "https://x/e", "state": "s",
        "primaryAccounts": {"urn:ietf:params:jmap:core": acc,
                            "urn:ietf:params:jmap:mail": acc},
        "capabilities": {"urn:ietf:params:jmap:core": {
            "maxSizeUpload": 1, "maxConcurrentUpload": 1, "maxSizeRequest": 10**7,
            "maxConcurrentRequests": 1, "maxCallsInRequest": 64, "maxObjectsInGet": 1000,
            "maxObjectsInSet": 1000, "collationAlgorithms": []},
            "urn:ietf:params:jmap:mail": {}}})

    class Fake:
        auth = None

        def post(self, url, headers=None, data=None, timeout=None):
            req = parse_request(data.encode() if isinstance(data, str) else data, ctx.limits)
            return _FakeResponse(trio.from_thread.run(run_request, ctx, req, "s"))

    c = jmapc.Client("x")
    c.__dict__["jmap_session"] = session
    c.__dict__["requests_session"] = Fake()
    return c


async def test_jmapc_drives_mailbox_and_thread(ctx):
    import trio
    from jmapc import Ref
    from jmapc.methods import (MailboxChanges, MailboxGet, MailboxQuery, MailboxSet,
                               ThreadGet)
    from jmapc.models import Mailbox, MailboxQueryFilterCondition

    inbox = mbx_by_role(ctx, "inbox").id
    a = deliver(ctx, inbox, message("topic", "<1@x>"))
    deliver(ctx, inbox, message("Re: topic", "<2@x>", "<1@x>"), ["$seen"])
    client = jmapc_client(ctx)

    def run_client():
        out = {}
        out["q"] = client.request([
            MailboxQuery(filter=MailboxQueryFilterCondition(role="inbox")),
            MailboxGet(ids=Ref("/ids"))], raise_errors=True)
        out["set"] = client.request(MailboxSet(create={"n": Mailbox(name="Lists")}))
        out["changes"] = client.request(MailboxChanges(since_state=out["q"][1].response.state))
        out["thread"] = client.request(ThreadGet(ids=[ids.thread_id(a.thread)]))
        return out
    out = await trio.to_thread.run_sync(run_client)
    box = out["q"][1].response.data[0]
    assert box.name == "INBOX" and box.role == "inbox"
    assert box.total_emails == 2 and box.unread_emails == 1 and box.unread_threads == 1
    new_id = out["set"].created["n"].id
    assert out["changes"].created == [new_id]
    assert out["thread"].data[0].email_ids == [ids.email_id(a.email), ids.email_id(a.email + 1)]


async def test_hostile_queries_are_bounded(ctx):
    deep = {"name": "x"}
    for _ in range(50):
        deep = {"operator": "NOT", "conditions": [deep]}
    wide = {"operator": "OR", "conditions": [{"name": "x"}] * 500}
    r = await api(ctx, ["Mailbox/query", {"filter": deep}],
                  ["Mailbox/query", {"filter": wide}],
                  ["Mailbox/query", {"sort": [{"property": "name"}] * 50}],
                  ["Mailbox/get", {"ids": ["M1"] * 2000}],
                  ["Mailbox/set", {"update": {"M1": {"a" * 100 + "/" * 1000: 1}}}])
    assert [x[1].get("type") for x in r[:4]] == ["unsupportedFilter", "unsupportedFilter",
                                                 "invalidArguments", "requestTooLarge"]
    assert r[4][1]["notUpdated"]["M1"]["type"] == "invalidProperties"
