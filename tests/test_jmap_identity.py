"""JMAP Identity (RFC 8621 §6) through run_request on a temp store."""
from __future__ import annotations

import pytest

from mailaccess.proto.jmap import capabilities as cap

from jmap_helpers import api, make_ctx, make_store, one

USING = [cap.CORE, cap.MAIL, cap.SUBMISSION]


@pytest.fixture
def ctx(tmp_path):
    store = make_store(tmp_path)
    yield make_ctx(store)
    store.close()


async def call(ctx, name, args):
    r = await api(ctx, [name, args], using=USING)
    assert r[0][0] == name, r
    return r[0][1]


async def test_default_identity_made_on_first_read(ctx):
    res = await call(ctx, "Identity/get", {"ids": None})
    assert len(res["list"]) == 1
    ident = res["list"][0]
    assert ident["email"] == "alice@localhost" and ident["mayDelete"] is False
    assert ident["replyTo"] is None and ident["textSignature"] == ""
    again = await call(ctx, "Identity/get", {"ids": None})
    assert again["list"] == res["list"] and again["state"] == res["state"]


async def test_needs_the_submission_capability(ctx):
    r = await api(ctx, ["Identity/get", {"ids": None}])
    assert r[0][0] == "error" and r[0][1]["type"] == "unknownMethod"


async def test_create_update_destroy_and_changes(ctx):
    st = (await call(ctx, "Identity/get", {"ids": None}))["state"]
    res = await call(ctx, "Identity/set", {"create": {
        "a": {"name": "Alice", "email": "alice+work@localhost",
              "replyTo": [{"name": None, "email": "alice@localhost"}],
              "textSignature": "-- \nA"},
        "bad": {"email": "mallory@example.com"},
        "junk": {"email": "not an address"}}})
    new_id = res["created"]["a"]["id"]
    assert res["created"]["a"]["mayDelete"] is True
    assert res["notCreated"]["bad"]["type"] == "forbiddenFrom"
    assert res["notCreated"]["junk"]["type"] == "invalidProperties"
    got = (await call(ctx, "Identity/get", {"ids": [new_id]}))["list"][0]
    assert got["name"] == "Alice" and got["replyTo"] == [{"name": None, "email": "alice@localhost"}]
    ch = await call(ctx, "Identity/changes", {"sinceState": st})
    assert ch["created"] == [new_id]
    res = await call(ctx, "Identity/set", {"update": {new_id: {"name": "A.", "htmlSignature": "<b>A</b>"}}})
    assert new_id in res["updated"]
    res = await call(ctx, "Identity/set", {"update": {new_id: {"email": "alice@localhost"}}})
    assert res["notUpdated"][new_id]["type"] == "invalidProperties"
    ch2 = await call(ctx, "Identity/changes", {"sinceState": ch["newState"]})
    assert ch2["updated"] == [new_id]
    default = [i["id"] for i in (await call(ctx, "Identity/get", {"ids": None}))["list"]
               if not i["mayDelete"]][0]
    res = await call(ctx, "Identity/set", {"destroy": [default, new_id]})
    assert res["destroyed"] == [new_id]
    assert res["notDestroyed"][default]["type"] == "forbidden"
    ch3 = await call(ctx, "Identity/changes", {"sinceState": ch2["newState"]})
    assert ch3["destroyed"] == [new_id]


async def test_other_account_is_not_found(ctx):
    r = await api(ctx, ["Identity/get", {"ids": None, "accountId": "A999"}], using=USING)
    assert r[0][1]["type"] == "accountNotFound"
