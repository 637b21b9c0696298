"""Per-item cost of rendering an email for ActiveSync (server/eas_item.py
application_data) in process: a store in a temp dir, N messages from
common.message (a third multipart/alternative, the rest plain; every fifth
with a 30 KB base64 attachment), rendered under one view as Sync renders a
window, for BodyPreference types 1, 2 (TruncationSize, Preview 255) and 4.
Prints the best of R runs in microseconds per item, the render alone and
with WBXML encoding, as wall time and as this thread's CPU time (the
figure to trust on a shared machine).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_eas_item.py [--messages 512] [--size 4000]
        [--truncation 32768] [--profile]
"""
from __future__ import annotations

import argparse
import base64
import cProfile
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import message  # noqa: E402

from mailaccess import ingest  # noqa: E402
from mailaccess.proto.eas.wbxml import E, encode  # noqa: E402
from mailaccess.server import eas_item  # noqa: E402
from mailaccess.store import Store, ops  # noqa: E402


def with_attachment(raw: bytes, i: int) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    head = b"\r\n".join(h for h in head.split(b"\r\n")
                        if not h.lower().startswith((b"content-type", b"mime-version")))
    att = base64.encodebytes(os.urandom(30_000))
    return (head + b"\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=mx\r\n\r\n"
            b"--mx\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
            + b"\r\n--mx\r\nContent-Type: application/pdf; name=\"f%d.pdf\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" % i + att + b"--mx--\r\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=512)
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--truncation", type=int, default=32768)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        st = Store(d)
        acc = st.write_sync(ops.create_account, "alice", "x")
        with st.view() as v:
            inbox = v.mailbox_by_role(acc, "inbox").id
        eids = []
        for i in range(a.messages):
            raw = message(i, a.size)
            if i % 5 == 4:
                raw = with_attachment(raw, i)
            eids.append(st.write_sync(ops.append, acc, [inbox], ingest.prepare(raw),
                                      ["$seen"] if i % 2 else []).email)
        for t in (1, 2, 4):
            opts = eas_item.item_options(E("AirSync:Options", E(
                "AirSyncBase:BodyPreference", E("AirSyncBase:Type", text=str(t)),
                E("AirSyncBase:TruncationSize", text=str(a.truncation)),
                E("AirSyncBase:Preview", text="255")), E("AirSync:MIMESupport", text="2")),
                "16.1")

            def render():
                with st.view() as v:
                    return [eas_item.application_data(v, acc, e, opts, "16.1") for e in eids]

            render()
            best = best_enc = cpu = cpu_enc = 1e9
            for _ in range(a.runs):
                c0, t0 = time.thread_time(), time.perf_counter()
                out = render()
                c1, t1 = time.thread_time(), time.perf_counter()
                for o in out:
                    encode(E("AirSync:ApplicationData", *o))
                c2, t2 = time.thread_time(), time.perf_counter()
                best, best_enc = min(best, t1 - t0), min(best_enc, t2 - t0)
                cpu, cpu_enc = min(cpu, c1 - c0), min(cpu_enc, c2 - c0)
            n = len(eids)
            print(f"type {t}: render {best / n * 1e6:6.1f} us/item wall, {cpu / n * 1e6:6.1f} cpu; "
                  f"render+encode {best_enc / n * 1e6:6.1f} wall, {cpu_enc / n * 1e6:6.1f} cpu "
                  f"({n} items)")
            if a.profile:
                cProfile.runctx("render()", globals(), locals(), "/tmp/eas_item.prof")
                pstats.Stats("/tmp/eas_item.prof").sort_stats("cumtime").print_stats(15)
        st.close()


if __name__ == "__main__":
    main()
