"""JMAP Mailbox/get counts and Thread/get over a 10,000-message account, in
process (run_request on a temp store, no HTTP).

    .venv/bin/python bench/bench_jmap_mailbox.py [--messages 10000] [--rounds 5]

Prints the time of Mailbox/get with every property (the four counts need a
pass over the account's email records; it is cached until the account's
modseq moves: "uncached" is the first call after a change, "cached" the
next), Mailbox/query, and Thread/get of 50 threads.  Checks the counts.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import trio  # noqa: E402

from bench.common import message  # noqa: E402
from mailaccess import ids, ingest  # noqa: E402
from mailaccess.proto.jmap.request import parse_request  # noqa: E402
from mailaccess.server.jmap_api import JmapContext, run_request  # noqa: E402
from mailaccess.store import Store, ops  # noqa: E402

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


async def call(ctx, name, args):
    args = dict(args, accountId=ids.account_id(ctx.acc))
    body = json.dumps({"using": USING, "methodCalls": [[name, args, "0"]]}).encode()
    res = await run_request(ctx, parse_request(body), "s")
    out = res["methodResponses"][0]
    assert out[0] == name, out
    return out[1]


async def timed(fn):
    t = time.perf_counter()
    r = await fn()
    return (time.perf_counter() - t) * 1000, r


async def main(n: int, rounds: int) -> None:
    d = pathlib.Path(tempfile.mkdtemp(prefix="bench-jmap-"))
    store = Store(d / "data")
    store.start()
    try:
        acc = store.write_sync(ops.create_account, "bench", "x")
        ctx = JmapContext(store, None, None, acc, "bench")
        with store.view() as v:
            inbox = v.mailbox_by_role(acc, "inbox").id
        rng = random.Random(1)
        batch = []
        seen = 0
        for i in range(n):
            kw = ["$seen"] if rng.random() < 0.7 else []
            seen += bool(kw)
            batch.append((ingest.prepare(message(i, 3000, rng), 1_700_000_000 + i), kw))
            if len(batch) == 500:
                store.write_sync(ops.append_many, acc, inbox, batch)
                batch = []
        if batch:
            store.write_sync(ops.append_many, acc, inbox, batch)
        unc, cac = [], []
        for r in range(rounds):
            # a flag change moves the modseq: the next Mailbox/get recounts
            with store.view() as v:
                eid = v.email_ids(acc)[r]
            store.write_sync(ops.set_keywords, acc, [eid], add=["$flagged"])
            t, res = await timed(lambda: call(ctx, "Mailbox/get", {"ids": None}))
            unc.append(t)
            t, _ = await timed(lambda: call(ctx, "Mailbox/get", {"ids": None}))
            cac.append(t)
        box = next(m for m in res["list"] if m["role"] == "inbox")
        assert box["totalEmails"] == n and box["unreadEmails"] == n - seen, box
        tq, q = await timed(lambda: call(ctx, "Mailbox/query", {"sortAsTree": True}))
        assert len(q["ids"]) == 6
        with store.view() as v:
            threads = sorted({e.thread for e in v.emails(acc)})[:50]
        tt, th = await timed(lambda: call(ctx, "Thread/get",
                                          {"ids": [ids.thread_id(t) for t in threads]}))
        assert len(th["list"]) == len(threads)
        print(f"{n} messages: Mailbox/get all properties uncached median "
              f"{statistics.median(unc):.1f} ms (max {max(unc):.1f}), cached median "
              f"{statistics.median(cac):.2f} ms; Mailbox/query {tq:.2f} ms; "
              f"Thread/get x{len(threads)} {tt:.1f} ms")
    finally:
        store.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    trio.run(main, a.messages, a.rounds)
