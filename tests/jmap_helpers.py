"""Helpers for the JMAP method-layer tests: a temp store with an account,
a JmapContext, and ``api(ctx, calls)`` running a request through
``run_request`` (no HTTP)."""
from __future__ import annotations

import json

from mailaccess import ids, ingest, storeio
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.proto.jmap.request import Limits, parse_request
from mailaccess.server.jmap_api import JmapContext, run_request
from mailaccess.store import Store, ops

USING = [cap.CORE, cap.MAIL]


def make_store(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    return s


def make_ctx(store, name: str = "alice", limits: Limits = Limits()) -> JmapContext:
    acc = store.write_sync(ops.create_account, name, "x")
    return JmapContext(store, None, None, acc, name, limits)


def account_id(ctx) -> str:
    return ids.account_id(ctx.acc)


async def request(ctx, body: dict) -> dict:
    """The Response object for BODY (a dict) sent through parse_request."""
    req = parse_request(json.dumps(body).encode(), ctx.limits)
    return await run_request(ctx, req, "s")


async def api(ctx, *calls, using=USING, created_ids=None) -> list:
    """Run CALLS ([name, args] or [name, args, callId]); accountId is filled
    in when missing.  -> methodResponses."""
    mc = []
    for i, c in enumerate(calls):
        name, args = c[0], dict(c[1])
        args.setdefault("accountId", account_id(ctx))
        mc.append([name, args, c[2] if len(c) > 2 else f"c{i}"])
    body = {"using": using, "methodCalls": mc}
    if created_ids is not None:
        body["createdIds"] = created_ids
    return (await request(ctx, body))["methodResponses"]


async def one(ctx, name, args) -> dict:
    """One call's response arguments; asserts it was not an error."""
    r = await api(ctx, [name, args])
    assert r[0][0] == name, r
    return r[0][1]


def mbx_by_role(ctx, role):
    with ctx.store.view() as v:
        return v.mailbox_by_role(ctx.acc, role)


def deliver(ctx, mbx: int, raw: bytes, keywords=(), when: int | None = None):
    new = ingest.prepare(raw, when)
    return ctx.store.write_sync(ops.append, ctx.acc, [mbx], new, list(keywords))


def message(subject="hello", mid="<a@x>", refs="", body="hi\r\n") -> bytes:
    h = f"From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
    if refs:
        h += f"References: {refs}\r\n"
    return (h + "\r\n" + body).encode()


async def write(ctx, fn, *args, **kw):
    return await storeio.write(ctx.store, fn, *args, **kw)
