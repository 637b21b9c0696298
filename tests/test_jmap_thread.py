"""JMAP Thread (RFC 8621 §3): Thread/get and Thread/changes through
run_request on a temp store."""
from __future__ import annotations

import pytest

from mailaccess import ids
from mailaccess.store import ops

from jmap_helpers import api, deliver, make_ctx, make_store, mbx_by_role, message, one


@pytest.fixture
def ctx(tmp_path):
    store = make_store(tmp_path)
    yield make_ctx(store)
    store.close()


async def test_thread_get_sorted_by_received_at(ctx):
    inbox = mbx_by_role(ctx, "inbox").id
    a = deliver(ctx, inbox, message("topic", "<1@x>"), when=3000)
    b = deliver(ctx, inbox, message("Re: topic", "<2@x>", "<1@x>"), when=1000)
    c = deliver(ctx, inbox, message("Re: topic", "<3@x>", "<1@x> <2@x>"), when=2000)
    other = deliver(ctx, inbox, message("other", "<9@x>"))
    assert a.thread == b.thread == c.thread != other.thread
    tid = ids.thread_id(a.thread)
    res = await one(ctx, "Thread/get", {"ids": [tid, "T999", "nope"]})
    assert res["list"] == [{"id": tid, "emailIds": [ids.email_id(x.email) for x in (b, c, a)]}]
    assert res["notFound"] == ["T999", "nope"]
    res = await one(ctx, "Thread/get", {"ids": None, "properties": ["id"]})
    assert sorted(t["id"] for t in res["list"]) == sorted([tid, ids.thread_id(other.thread)])
    assert all(set(t) == {"id"} for t in res["list"])


async def test_thread_get_by_result_reference(ctx):
    inbox = mbx_by_role(ctx, "inbox").id
    a = deliver(ctx, inbox, message("topic", "<1@x>"))
    r = await api(ctx, ["Core/echo", {"list": [{"threadId": ids.thread_id(a.thread)}]}, "e"],
                  ["Thread/get", {"#ids": {"resultOf": "e", "name": "Core/echo",
                                           "path": "/list/*/threadId"}}, "t"])
    assert r[1][1]["list"][0]["emailIds"] == [ids.email_id(a.email)]


async def test_thread_changes(ctx):
    inbox = mbx_by_role(ctx, "inbox").id
    a = deliver(ctx, inbox, message("topic", "<1@x>"))
    st = (await one(ctx, "Thread/get", {"ids": []}))["state"]
    deliver(ctx, inbox, message("Re: topic", "<2@x>", "<1@x>"))      # joins: updated
    n = deliver(ctx, inbox, message("new", "<5@x>"))                 # created
    res = await one(ctx, "Thread/changes", {"sinceState": st})
    assert res["updated"] == [ids.thread_id(a.thread)]
    assert res["created"] == [ids.thread_id(n.thread)]
    st = res["newState"]
    ctx.store.write_sync(ops.destroy_emails, ctx.acc, [n.email])
    res = await one(ctx, "Thread/changes", {"sinceState": st})
    assert res["destroyed"] == [ids.thread_id(n.thread)]
    res = await one(ctx, "Thread/get", {"ids": [ids.thread_id(n.thread)]})
    assert res["notFound"] == [ids.thread_id(n.thread)]
    r = await api(ctx, ["Thread/changes", {"sinceState": st, "maxChanges": 0}])
    assert r[0][1]["type"] == "invalidArguments"
