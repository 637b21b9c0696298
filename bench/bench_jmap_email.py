"""Benchmark Email/get in-process (no HTTP): the method layer's own cost.

    .venv/bin/python bench/bench_jmap_email.py [--count 10000] [--calls 300]

Fills a temp store with --count generated messages (bench/common.py, the
IMAP benchmark's mix), then times, in CPU seconds of this process:
  * Email/get of 50 ids with the list properties (id, threadId, mailboxIds,
    keywords, receivedAt, from, subject, preview, size, hasAttachment), the
    get half of the issue's Email/query(50)+Email/get round trip, JSON
    encoding of the response included;
  * Email/get of full bodies (bodyValues of every text part, bodyStructure),
    as MB/s of message bytes served.
The HTTP service and Email/query add their own cost on top (bench/ of the
JMAP service measures the whole round trip).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import trio  # noqa: E402

from common import message, report  # noqa: E402
from mailaccess import ingest  # noqa: E402
from mailaccess.proto.jmap.request import parse_request  # noqa: E402
from mailaccess.server import jmap_api  # noqa: E402
from mailaccess.server.jmap_api import JmapContext, run_request  # noqa: E402
from mailaccess.store import Store, ops  # noqa: E402

LIST_PROPS = ["id", "threadId", "mailboxIds", "keywords", "receivedAt", "from", "subject",
              "preview", "size", "hasAttachment"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args(argv)
    jmap_api.load_methods()
    d = tempfile.mkdtemp()
    s = Store(d + "/data")
    s.start()
    acc = s.write_sync(ops.create_account, "alice", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    rng = random.Random(1)
    items = [ingest.prepare(message(i, rng.choice([800, 2000, 5000, 20000])),
                            1_700_000_000 + i) for i in range(args.count)]
    total = 0
    for k in range(0, len(items), 500):
        total += len(s.write_sync(ops.append_many, acc, ib, [(n, []) for n in items[k:k + 500]]))
    with s.view() as v:
        eids = v.email_ids(acc)
    ctx = JmapContext(s, None, None, acc, "alice")

    def body(ids, **extra):
        return json.dumps({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                           "methodCalls": [["Email/get", {"accountId": f"A{acc}", "ids": ids,
                                                          **extra}, "0"]]}).encode()

    async def timed(bodies):
        t = time.process_time()
        size = 0
        for b in bodies:
            out = await run_request(ctx, parse_request(b))
            size += len(json.dumps(out))
        return time.process_time() - t, size

    async def run():
        rows = []
        # the same newest 50 each time (a client's list refresh) and a sliding window
        newest = [f"E{e}" for e in eids[-50:]]
        await timed([body(newest, properties=LIST_PROPS)])     # warm the cache once
        dt, _ = await timed([body(newest, properties=LIST_PROPS)] * args.calls)
        rows.append(("list get (newest 50, repeated)", f"{dt / args.calls * 1e3:.2f} ms/call, "
                     f"{args.calls / dt:.0f} calls/s of CPU"))
        windows = [[f"E{e}" for e in eids[i:i + 50]]
                   for i in range(0, min(len(eids), 50 * args.calls), 50)]
        dt, _ = await timed([body(w, properties=LIST_PROPS) for w in windows])
        rows.append(("list get (50 never seen)", f"{dt / len(windows) * 1e3:.2f} ms/call"))
        full = [[f"E{e}" for e in eids[i:i + 10]] for i in range(0, min(len(eids), 2000), 10)]
        t = time.process_time()
        served = 0
        for w in full:
            out = await run_request(ctx, parse_request(body(
                w, properties=["id", "bodyStructure", "bodyValues", "textBody", "htmlBody",
                               "attachments", "subject", "from", "to"],
                fetchAllBodyValues=True)))
            json.dumps(out)
            for e in out["methodResponses"][0][1]["list"]:
                served += sum(len(v["value"].encode()) for v in e["bodyValues"].values())
        dt = time.process_time() - t
        rows.append(("full bodies (10 per call)", f"{served / dt / 1e6:.1f} MB/s of body text"))
        report(f"Email/get in-process, {total} messages", rows)

    trio.run(run)
    s.close()


if __name__ == "__main__":
    main()
