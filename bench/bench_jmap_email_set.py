"""Email/set in process (run_request over a temp store, no HTTP): one call
updating N emails' keywords, one creating M drafts with a body, one
destroying the N.  Checks every answer; prints wall time and objects/s.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_jmap_email_set.py [N] [M]
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from mailaccess import ids, ingest
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.proto.jmap.request import parse_request
from mailaccess.server.jmap_api import JmapContext, run_request
from mailaccess.store import Store, ops


async def email_set(ctx, args: dict) -> dict:
    body = {"using": [cap.CORE, cap.MAIL],
            "methodCalls": [["Email/set", {"accountId": ids.account_id(ctx.acc), **args}, "0"]]}
    out = await run_request(ctx, parse_request(json.dumps(body).encode()))
    name, res, _ = out["methodResponses"][0]
    assert name == "Email/set", res
    return res


async def main(n: int, m: int) -> None:
    store = Store(Path(tempfile.mkdtemp()) / "data")
    store.start()
    try:
        acc = store.write_sync(ops.create_account, "bench", "x")
        ctx = JmapContext(store, None, None, acc, "bench")
        with store.view() as v:
            inbox = v.mailbox_by_role(acc, "inbox").id
        raw = [f"From: a@x\r\nSubject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nbody {i}\r\n".encode()
               for i in range(n)]
        res = store.write_sync(ops.append_many, acc, inbox,
                               [(ingest.prepare(r, 0), []) for r in raw])
        eids = [ids.email_id(r.email) for r in res]

        t = time.perf_counter()
        r = await email_set(ctx, {"update": {e: {"keywords/$seen": True} for e in eids}})
        dt = time.perf_counter() - t
        assert len(r["updated"]) == n
        print(f"update {n} (keywords/$seen): {dt * 1000:7.0f} ms  {n / dt:7.0f}/s")

        draft = {"mailboxIds": {ids.mailbox_id(inbox): True}, "subject": "draft",
                 "from": [{"name": "B", "email": "b@x"}], "textBody": [{"partId": "t"}],
                 "bodyValues": {"t": {"value": "hello " * 50}}}
        t = time.perf_counter()
        r = await email_set(ctx, {"create": {f"c{i}": draft for i in range(m)}})
        dt = time.perf_counter() - t
        assert len(r["created"]) == m
        print(f"create {m} drafts:            {dt * 1000:7.0f} ms  {m / dt:7.0f}/s")

        t = time.perf_counter()
        r = await email_set(ctx, {"destroy": eids})
        dt = time.perf_counter() - t
        assert len(r["destroyed"]) == n
        print(f"destroy {n}:                  {dt * 1000:7.0f} ms  {n / dt:7.0f}/s")
    finally:
        store.close()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 500,
             int(sys.argv[2]) if len(sys.argv) > 2 else 100)
