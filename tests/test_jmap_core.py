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


# --- dispatcher: request- and method-level errors (RFC 8620 §3.6) ---------------------

@method("Boom/get", cap.CORE)
async def boom_get(call):
    raise RuntimeError("a bug")


@method("Full/get", cap.CORE)
async def full_get(call):
    from mailaccess.store import StoreFullError
    raise StoreFullError("disk full")


@method("Strict/get", cap.MAIL, args=["ids"])
async def strict_get(call):
    return {"ok": True}


async def test_result_reference_in_a_request(ctx):
    r = await api(ctx, ["Core/echo", {"list": [{"id": "x"}, {"id": "y"}]}, "e"],
                  ["Core/echo", {"#ids": {"resultOf": "e", "name": "Core/echo",
                                          "path": "/list/*/id"}}, "f"],
                  ["Core/echo", {"#ids": {"resultOf": "e", "name": "Core/echo",
                                          "path": "/nope"}}, "g"],
                  ["Core/echo", {"ids": 1, "#ids": {"resultOf": "e", "name": "Core/echo",
                                                    "path": "/list"}}, "h"],
                  ["Core/echo", {"#x": {"resultOf": "g", "name": "Core/echo",
                                        "path": ""}}, "i"])
    assert r[1][1]["ids"] == ["x", "y"]
    assert r[2] == ["error", r[2][1], "g"] and r[2][1]["type"] == "invalidResultReference"
    assert r[3][1]["type"] == "invalidArguments"
    # a reference to a call that failed: its response is "error"
    assert r[4][1]["type"] == "invalidResultReference"


async def test_unknown_capability_is_a_request_error(ctx):
    with pytest.raises(RequestError) as e:
        await api(ctx, ["Core/echo", {}], using=[cap.CORE, "urn:example:nope"])
    assert e.value.status == 400
    assert e.value.problem()["type"] == "urn:ietf:params:jmap:error:unknownCapability"


async def test_method_level_errors(ctx):
    other = account_id(ctx)[:-1] + "9"
    r = await api(ctx, ["Nope/get", {}], ["Strict/get", {}],
                  ["Widget/set", {"accountId": other}],
                  ["Widget/set", {"accountId": 5}],
                  ["Strict/get", {"ids": [], "bogus": 1}],
                  ["Boom/get", {}], ["Full/get", {}], ["Strict/get", {"ids": None}],
                  using=[cap.CORE])
    types = [x[1].get("type") for x in r]
    assert types == ["unknownMethod", "unknownMethod",        # Strict/get needs mail
                     "accountNotFound", "invalidArguments", "unknownMethod",
                     "serverFail", "serverUnavailable", "unknownMethod"]
    r = await api(ctx, ["Strict/get", {"ids": [], "bogus": 1}], ["Strict/get", {"ids": None}])
    assert r[0][1]["type"] == "invalidArguments" and "bogus" in r[0][1]["description"]
    assert r[1][1] == {"ok": True}
    assert [x[2] for x in r] == ["c0", "c1"]


async def test_account_read_only(ctx):
    ctx.store.readonly = True
    try:
        r = await api(ctx, ["Widget/set", {"create": {"a": {"name": "A"}}}],
                      ["Widget/get", {}])
    finally:
        ctx.store.readonly = False
    assert r[0][1]["type"] == "accountReadOnly"
    assert r[1][0] == "Widget/get"
    assert WIDGETS == {}


async def test_partial_failure(ctx, monkeypatch):
    async def bad_update(call, wid, patch):
        raise RuntimeError("a bug")

    @method("Widget2/set", cap.CORE)
    async def widget2_set(call):
        return await run_set(call, "Widget", create=_w_create, update=bad_update,
                             destroy=_w_destroy)
    r = await api(ctx, ["Widget2/set", {"update": {"W1": {}}}])
    assert r[0][1]["type"] == "serverFail"
    r = await api(ctx, ["Widget2/set", {"create": {"a": {"name": "A"}}, "update": {"W1": {}}}])
    assert r[0][1]["type"] == "serverPartialFail"
    assert "W1" in WIDGETS


@pytest.mark.parametrize("body,type_", [
    (b"[1", "notJSON"), (b"[]", "notRequest"), (b'{"using": "x", "methodCalls": []}', "notRequest"),
    (b'{"using": [], "methodCalls": [["a", {}]]}', "notRequest"),
    (b'{"using": [], "methodCalls": [], "createdIds": {"a": 1}}', "notRequest"),
])
def test_request_shapes(body, type_):
    from mailaccess.proto.jmap.request import parse_request
    with pytest.raises(RequestError) as e:
        parse_request(body)
    assert e.value.type.endswith(":" + type_) and e.value.status == 400


def _nested(depth: int, close: bool = True) -> bytes:
    return (b'{"using": [], "methodCalls": [["Core/echo", {"x": ' + b"[" * (depth - 4)
            + (b"]" * (depth - 4) + b'}, "c"]]}' if close else b""))


@pytest.mark.parametrize("depth,close", [(257, True), (1200, True), (1200, False),
                                          (5000, True), (100_000, False)])
def test_request_nesting_is_bounded_the_same_on_every_python(depth, close):
    """A request nesting JSON deeper than MAX_DEPTH is notJSON (400).  json.loads
    alone answered by release: 1200 deep parsed on 3.12 and was a RecursionError
    (HTTP 500) on 3.11; 5000 deep a RecursionError on both."""
    from mailaccess.proto.jmap.request import parse_request
    with pytest.raises(RequestError) as e:
        parse_request(_nested(depth, close))
    assert e.value.type.endswith(":notJSON") and e.value.status == 400


def test_request_nesting_up_to_the_bound_is_read():
    from mailaccess.proto.jmap.request import MAX_DEPTH, parse_request
    assert MAX_DEPTH == 256
    r = parse_request(_nested(MAX_DEPTH))
    x = r.method_calls[0].args["x"]
    for _ in range(MAX_DEPTH - 5):
        x = x[0]
    assert x == []
    # brackets inside strings are no nesting
    r = parse_request(b'{"using": [], "methodCalls": [["Core/echo", {"x": "'
                      + b"[{" * 5000 + b'"}, "c"]]}')
    assert r.method_calls[0].args["x"] == "[{" * 5000


def test_request_limits():
    from mailaccess.proto.jmap.request import Limits, parse_request
    lim = Limits(max_size_request=100, max_calls_in_request=2)
    with pytest.raises(RequestError) as e:
        parse_request(b'{"using": [], "methodCalls": []}' + b" " * 100, lim)
    assert e.value.problem()["limit"] == "maxSizeRequest"
    with pytest.raises(RequestError) as e:
        parse_request(b'{"using": [], "methodCalls": [["a",{},"1"],["a",{},"2"],["a",{},"3"]]}',
                      lim)
    assert e.value.problem()["limit"] == "maxCallsInRequest"


async def test_account_not_supported_by_method(ctx, monkeypatch):
    monkeypatch.setattr(jmap_api, "account_capabilities", lambda c: set())
    r = await api(ctx, ["Strict/get", {"ids": None}], ["Core/echo", {"x": 1}])
    assert r[0][1]["type"] == "accountNotSupportedByMethod"
    assert r[1][1]["x"] == 1


def test_method_modules_load_and_a_missing_one_is_an_error(monkeypatch):
    monkeypatch.setattr(jmap_api, "_loaded", False)
    jmap_api.load_methods()
    assert {"Mailbox/get", "Mailbox/set", "Thread/get", "Email/get", "Email/set"} <= set(jmap_api.METHODS)
    monkeypatch.setattr(jmap_api, "_loaded", False)
    monkeypatch.setattr(jmap_api, "JMAP_METHOD_MODULES",
                        jmap_api.JMAP_METHOD_MODULES + ["mailaccess.server.jmap_not_yet"])
    with pytest.raises(ModuleNotFoundError):
        jmap_api.load_methods()


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SET_ARGS = st.fixed_dictionaries({}, optional={
    "create": st.dictionaries(st.sampled_from(["a", "b", "c", "d"]),
                              st.sampled_from([{"name": "n"}, {}, {"name": 1},
                                               {"name": "n", "parent": "#a"},
                                               {"name": "n", "parent": "#d"}, "x"]),
                              max_size=4),
    "update": st.dictionaries(st.sampled_from(["W1", "W2", "W9", "#a", "#zz"]),
                              st.sampled_from([{"name": "m"}, {"id": "x"}, {}, 3]),
                              max_size=4),
    "destroy": st.lists(st.sampled_from(["W1", "W2", "W9", "#b", "#zz"]), max_size=4),
})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=SET_ARGS)
def test_run_set_accounts_for_every_object(tmp_path_factory, args):
    """Each create, update and destroy is answered exactly once."""
    import trio

    async def main():
        WIDGETS.clear()
        WIDGETS.update({"W1": {"name": "one"}, "W2": {"name": "two"}})
        store = make_store(tmp_path_factory.mktemp("s"))
        try:
            ctx = make_ctx(store)
            r = await api(ctx, ["Widget/set", args])
        finally:
            store.close()
        res = r[0][1]
        assert r[0][0] == "Widget/set", r
        created, not_created = res["created"] or {}, res["notCreated"] or {}
        assert set(created) | set(not_created) == set(args.get("create", {}))
        assert not set(created) & set(not_created)
        cids = {cid: o["id"] for cid, o in created.items()}

        def real(i):
            return cids.get(i[1:], i) if i.startswith("#") else i
        updated, not_updated = res["updated"] or {}, res["notUpdated"] or {}
        upd = {real(i) for i in args.get("update", {})}
        assert set(updated) | set(not_updated) == upd
        assert not set(updated) & set(not_updated)
        destroyed, not_destroyed = res["destroyed"] or [], res["notDestroyed"] or {}
        assert set(destroyed) | set(not_destroyed) == {real(i) for i in args.get("destroy", [])}
        assert not set(destroyed) & set(not_destroyed)
        assert len(destroyed) == len(set(destroyed))
        for i in destroyed:
            assert i not in WIDGETS
    trio.run(main)
