"""The JMAP method layer (RFC 8620 §3, §5.3): dispatch, request- and
method-level errors, createdIds, and the /set engine ``run_set``, through
``run_request`` on a temp store."""
from __future__ import annotations

import pytest

from mailaccess.proto.jmap import capabilities as cap
from mailaccess.proto.jmap.errors import MethodError, RequestError
from mailaccess.server import jmap_api
from mailaccess.server.jmap_api import method
from mailaccess.server.jmap_standard import Deferred, SetError, run_set

from jmap_helpers import account_id, api, make_ctx, make_store, request

WIDGETS: dict[str, dict] = {}


async def _w_create(call, cid, obj):
    if "name" not in obj or not isinstance(obj["name"], str):
        raise SetError("invalidProperties", "name is required", properties=["name"])
    parent = obj.get("parent")
    if isinstance(parent, str) and parent.startswith("#"):
        if parent[1:] in call.pending_creates:
            raise Deferred()
        parent = call.resolve_id(parent)
        if parent is None:
            raise SetError("invalidProperties", "no such parent", properties=["parent"])
    wid = f"W{len(WIDGETS) + 1}"
    WIDGETS[wid] = dict(obj, parent=parent)
    return {"id": wid, "size": 7}


async def _w_update(call, wid, patch):
    if wid not in WIDGETS:
        raise SetError("notFound")
    if "id" in patch:
        raise SetError("invalidProperties", properties=["id"])
    WIDGETS[wid].update(patch)
    return {"size": 8} if "name" in patch else None


async def _w_destroy(call, wid):
    if WIDGETS.pop(wid, None) is None:
        raise SetError("notFound")


@method("Widget/set", cap.CORE)
async def widget_set(call):
    return await run_set(call, "Widget", create=_w_create, update=_w_update,
                         destroy=_w_destroy)


@method("Widget/get", cap.CORE)
async def widget_get(call):
    want = call.args.get("ids") or list(WIDGETS)
    return {"list": [dict(WIDGETS[w], id=w) for w in want if w in WIDGETS]}


@pytest.fixture
def ctx(tmp_path):
    WIDGETS.clear()
    store = make_store(tmp_path)
    yield make_ctx(store)
    store.close()


async def test_run_set_create_update_destroy(ctx):
    r = await api(ctx, ["Widget/set", {"create": {"a": {"name": "A"}, "b": {"nope": 1}}}])
    res = r[0][1]
    assert res["created"] == {"a": {"id": "W1", "size": 7}}
    assert res["notCreated"]["b"]["type"] == "invalidProperties"
    assert res["notCreated"]["b"]["properties"] == ["name"]
    assert res["oldState"] == res["newState"] == "0"
    assert res["updated"] is None and res["destroyed"] is None
    r = await api(ctx, ["Widget/set", {"update": {"W1": {"name": "B"}, "W9": {"name": "x"}},
                                       "destroy": ["W7"]}])
    res = r[0][1]
    assert res["updated"] == {"W1": {"size": 8}}          # server-changed property returned
    assert res["notUpdated"]["W9"]["type"] == "notFound"
    assert res["notDestroyed"]["W7"]["type"] == "notFound"
    r = await api(ctx, ["Widget/set", {"update": {"W1": {"colour": "red"}}, "destroy": ["W1"]}])
    res = r[0][1]
    assert res["notUpdated"]["W1"]["type"] == "willDestroy"
    assert res["destroyed"] == ["W1"]


async def test_run_set_creation_refs_in_call_and_later_calls(ctx):
    r = await api(ctx,
                  ["Widget/set", {"create": {"child": {"name": "c", "parent": "#top"},
                                             "top": {"name": "t"}}}],
                  ["Widget/set", {"update": {"#child": {"name": "c2"}}, "destroy": ["#nope"]}],
                  ["Widget/get", {"ids": ["#top"]}])
    res = r[0][1]
    top, child = res["created"]["top"]["id"], res["created"]["child"]["id"]
    assert WIDGETS[child]["parent"] == top
    assert r[1][1]["updated"] == {child: {"size": 8}}
    assert r[1][1]["notDestroyed"]["#nope"]["type"] == "notFound"


async def test_run_set_unresolvable_reference_is_a_set_error(ctx):
    r = await api(ctx, ["Widget/set", {"create": {"a": {"name": "A", "parent": "#b"},
                                                  "b": {"name": "B", "parent": "#a"}}}])
    res = r[0][1]
    assert set(res["notCreated"]) == {"a", "b"}
    assert res["created"] is None


async def test_run_set_if_in_state_and_limits(ctx):
    r = await api(ctx, ["Widget/set", {"ifInState": "99", "create": {"a": {"name": "A"}}}])
    assert r[0] == ["error", {"type": "stateMismatch",
                              "description": "the state is 0, not 99"}, "c0"]
    assert WIDGETS == {}
    r = await api(ctx, ["Widget/set", {"ifInState": "0", "create": {"a": {"name": "A"}}}])
    assert r[0][1]["created"]["a"]["id"] == "W1"
    many = {f"k{i}": {"name": "x"} for i in range(ctx.limits.max_objects_in_set + 1)}
    r = await api(ctx, ["Widget/set", {"create": many}])
    assert r[0][0] == "error" and r[0][1]["type"] == "requestTooLarge"
    r = await api(ctx, ["Widget/set", {"create": []}])
    assert r[0][1]["type"] == "invalidArguments"


async def test_created_ids_in_and_out(ctx):
    body = {"using": [cap.CORE], "createdIds": {"old": "W0"},
            "methodCalls": [["Widget/set", {"accountId": account_id(ctx),
                                            "create": {"n": {"name": "N"}}}, "0"]]}
    res = await request(ctx, body)
    assert res["createdIds"] == {"old": "W0", "n": "W1"}
    del body["createdIds"]
    res = await request(ctx, body)
    assert "createdIds" not in res
