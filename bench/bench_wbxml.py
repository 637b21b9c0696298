"""The ActiveSync WBXML codec in process: encode and decode of a Sync response
with N email items (Add with the usual Email fields, an AirSyncBase Body with
a plain-text preview of about 1 KB, Read and Flag), and of the same response
through pyactivesync's codec when it is installed, for scale.  No store, no
sockets: this is the codec's own cost per response.
Run: .venv/bin/python bench/bench_wbxml.py [--items N] [--repeat R]"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import WORDS, report  # noqa: E402

from mailaccess.proto.eas.wbxml import E, decode, encode  # noqa: E402

CLOCK = time.perf_counter


def sync_response(items: int, body_bytes: int = 1000) -> object:
    rng = random.Random(7)
    adds = []
    for i in range(items):
        words = " ".join(rng.choice(WORDS) for _ in range(body_bytes // 5))[:body_bytes]
        adds.append(E(
            "AirSync:Add", E("AirSync:ServerId", text=f"5:{i + 1}"),
            E("AirSync:ApplicationData",
              E("Email:To", text='"Bob Example" <bob@example.org>'),
              E("Email:From", text='"Alice Example" <alice@example.org>'),
              E("Email:Subject", text=" ".join(rng.choice(WORDS) for _ in range(6))),
              E("Email:DateReceived", text="2026-12-03T17:%02d:00.000Z" % (i % 60)),
              E("Email:DisplayTo", text="Bob Example"),
              E("Email:ThreadTopic", text="weekly report"),
              E("Email:Importance", text="1"),
              E("Email:Read", text=str(i % 2)),
              E("AirSyncBase:Body", E("AirSyncBase:Type", text="1"),
                E("AirSyncBase:EstimatedDataSize", text=str(len(words))),
                E("AirSyncBase:Data", text=words)),
              E("Email:MessageClass", text="IPM.Note"),
              E("Email:InternetCPID", text="65001"),
              E("Email:Flag"),
              E("Email:ContentClass", text="urn:content-classes:message"),
              E("AirSyncBase:NativeBodyType", text="1"),
              E("Email2:ConversationId", opaque=rng.randbytes(16)),
              E("Email2:ConversationIndex", opaque=rng.randbytes(5)))))
    return E("AirSync:Sync", E("AirSync:Collections", E(
        "AirSync:Collection", E("AirSync:SyncKey", text="{0f1e2d3c}2"),
        E("AirSync:CollectionId", text="5"), E("AirSync:Status", text="1"),
        E("AirSync:MoreAvailable"), E("AirSync:Commands", *adds))))


def best_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    tree = sync_response(args.items)
    wire = encode(tree)
    assert decode(wire) == tree
    enc = best_ms(lambda: encode(tree), args.repeat)
    dec = best_ms(lambda: decode(wire), args.repeat)
    rows = [("items", str(args.items)), ("WBXML bytes", f"{len(wire):,}"),
            ("encode ms (best)", f"{enc:.2f}"), ("decode ms (best)", f"{dec:.2f}"),
            ("decode MB/s", f"{len(wire) / dec / 1000:.1f}")]
    try:
        from pyactivesync import _wbxml as pyas
    except ImportError:
        rows.append(("pyactivesync", "not installed"))
    else:
        rows.append(("pyactivesync decode ms", f"{best_ms(lambda: pyas.WBXMLReader(wire).parse(), args.repeat):.2f}"))
    report(f"WBXML Sync response, {args.items} email items", rows)


if __name__ == "__main__":
    main()
