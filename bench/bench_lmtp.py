"""LMTP delivery throughput: N messages of ~SIZE bytes from C concurrent
smtplib.LMTP clients into one running `mailaccess serve`; every 250 is a
durable commit.  Run: .venv/bin/python bench/bench_lmtp.py [--messages N]"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import message, report, start_mailaccess  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--size", type=int, default=20_000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-lmtp-")
    msgs = [message(i, args.size) for i in range(args.messages)]
    proc, ports = start_mailaccess(work)
    try:
        port = ports["lmtp"]
        per = args.messages // args.clients
        errors = []

        def client(c):
            try:
                with smtplib.LMTP("127.0.0.1", port) as s:
                    for m in msgs[c * per:(c + 1) * per]:
                        s.sendmail("s@example.org", ["alice@localhost"], m)
            except Exception as exc:  # report, do not hide
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"{len(errors)} clients failed: {errors[0]!r}")
        n = per * args.clients
        sent = sum(map(len, msgs[: n]))
        report(f"LMTP delivery: {n} messages of ~{args.size // 1000} KB, {args.clients} clients", [
            ("elapsed", f"{dt:.2f} s"),
            ("messages/s", f"{n / dt:.0f}"),
            ("MB/s", f"{sent / dt / 1e6:.1f}"),
        ])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        # verify: every delivery is in the store
        from mailaccess.store import Store
        st = Store(os.path.join(work, "data", "store"))
        with st.view() as v:
            a = v.account_by_name("alice").id
            total = v.mailbox_by_role(a, "inbox").total
        st.close()
        print(f"  stored messages: {total} (expected {per * args.clients})")
        shutil.rmtree(work, ignore_errors=True)
        if total != per * args.clients:
            raise SystemExit("MISMATCH: delivered count differs")


if __name__ == "__main__":
    main()
