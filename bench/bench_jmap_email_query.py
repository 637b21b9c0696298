"""JMAP Email/query (limit 50, receivedAt descending) on the N-message account
of bench_search, through run_request in-process (no HTTP: the method layer's
own cost).  Figures: the first query (nothing cached), repeated queries
(sequential, and 10 concurrent clients), the query after each single keyword
write (the cached result patched from the change log), and a cold subject
sort.  Run: .venv/bin/python bench/bench_jmap_email_query.py [--messages N] [--keep DIR]"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import trio  # noqa: E402
from bench_search import build  # noqa: E402
from common import report  # noqa: E402

from mailaccess import ids  # noqa: E402
from mailaccess.proto.jmap.request import parse_request  # noqa: E402
from mailaccess.server import jmap_email_query as jq  # noqa: E402
from mailaccess.server.jmap_api import JmapContext, run_request  # noqa: E402
from mailaccess.store import ops  # noqa: E402

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def body(acc: int, filt, sort, collapse: bool = False) -> bytes:
    args = {"accountId": ids.account_id(acc), "sort": sort, "limit": 50, "calculateTotal": True,
            "collapseThreads": collapse}
    if filt is not None:
        args["filter"] = filt
    return json.dumps({"using": USING, "methodCalls": [["Email/query", args, "0"]]}).encode()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


async def run(store, acc: int, mbx: int, rounds: int) -> list[tuple[str, str]]:
    ctx = JmapContext(store, None, None, acc, "alice")
    rows = []
    newest = [{"property": "receivedAt", "isAscending": False}]
    inbox = {"inMailbox": ids.mailbox_id(mbx)}
    for label, filt in (("all mail", None), ("inMailbox INBOX", inbox)):
        b = body(acc, filt, newest)
        jq.cache_for(store).clear()
        t = time.perf_counter()
        r = await run_request(ctx, parse_request(b))
        rows.append((f"{label}: first query", f"{(time.perf_counter() - t) * 1000:7.1f} ms"
                     f"  (total {r['methodResponses'][0][1]['total']})"))
        t = time.perf_counter()
        for _ in range(rounds):
            await run_request(ctx, parse_request(b))
        rate = rounds / (time.perf_counter() - t)
        rows.append((f"{label}: repeated, 1 client", f"{rate:7.0f} /s"))
        lat: list[float] = []

        async def client():
            for _ in range(rounds // 10):
                t0 = time.perf_counter()
                await run_request(ctx, parse_request(b))
                lat.append(time.perf_counter() - t0)
                await trio.sleep(0)
        t = time.perf_counter()
        async with trio.open_nursery() as n:
            for _ in range(10):
                n.start_soon(client)
        rows.append((f"{label}: repeated, 10 clients",
                     f"{len(lat) / (time.perf_counter() - t):7.0f} /s  p50 {pct(lat, .5):.2f} ms"
                     f"  p99 {pct(lat, .99):.2f} ms"))
    # after each write: patched from the change log, not recomputed
    rng = random.Random(1)
    with store.view() as v:
        eids = v.email_ids(acc)
    for label, b in (("inMailbox INBOX", body(acc, inbox, newest)),
                     ("collapseThreads", body(acc, inbox, newest, collapse=True))):
        await run_request(ctx, parse_request(b))
        lat = []
        for i in range(100):
            e = rng.choice(eids)
            with store.view() as v:       # flip $seen: every write changes something
                seen = "$seen" in (v.keywords(acc, e) or [])
            kw = {"remove": ["$seen"]} if seen else {"add": ["$seen"]}
            await trio.to_thread.run_sync(functools.partial(
                store.write_sync, ops.set_keywords, acc, [e], **kw))
            t0 = time.perf_counter()
            await run_request(ctx, parse_request(b))
            lat.append(time.perf_counter() - t0)
        rows.append((f"{label}: query after each keyword write",
                     f"p50 {pct(lat, .5):.2f} ms  p99 {pct(lat, .99):.2f} ms"))
    jq.cache_for(store).clear()
    t = time.perf_counter()
    await run_request(ctx, parse_request(body(acc, None, [{"property": "subject"}])))
    rows.append(("sort by subject, first query", f"{(time.perf_counter() - t) * 1000:7.1f} ms"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--keep", help="store directory to build once and reuse")
    args = ap.parse_args()
    path = args.keep or tempfile.mkdtemp(prefix="bench-jmapq-")
    store, acc, mbx = build(path, args.messages)
    try:
        rows = trio.run(run, store, acc, mbx, args.rounds)
    finally:
        store.close()
    report(f"JMAP Email/query, {args.messages} messages (limit 50, receivedAt desc)", rows)


if __name__ == "__main__":
    main()
