"""Memory of `mailaccess serve` by phase: just started, at the peak of the
bench_stress load, and at rest after it.

bench_stress reports the peak of each run; a server also lives before and
after its bursts.  This starts mailaccess with bench_stress's configuration
(2 workers unless --workers), APPENDs the INBOX, runs bench_stress's clients
(LOGIN per cycle, then staying logged in) and prints the whole process tree's
RSS / PSS / anonymous PSS (MB, /proc/PID/smaps_rollup) with each process's
RSS/PSS: just started, right after the load, and --rest seconds later (what
the server holds once a burst is over: heap trimming, server/memory.py).

    .venv/bin/python bench/bench_memory_phases.py [--clients 50] [--seconds 5]
                     [--messages 1000] [--rest 12] [--workers 2]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs  # noqa: E402


def snapshot(pids: list[int]) -> str:
    total = dict.fromkeys(("Rss", "Pss", "Pss_Anon"), 0)
    per = []
    for pid in pids:
        got = dict.fromkeys(total, 0)
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    key = line.split(":", 1)[0]
                    if key in got:
                        got[key] = int(line.split()[1])
        except OSError:
            continue
        for k, v in got.items():
            total[k] += v
        per.append(f"{got['Rss'] // 1024}/{got['Pss'] // 1024}")
    return (f"RSS {total['Rss'] / 1024:.0f} / PSS {total['Pss'] / 1024:.0f} / anon PSS "
            f"{total['Pss_Anon'] / 1024:.0f} MB  (each process RSS/PSS, root first: "
            f"{' '.join(per)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rest", type=float, default=12.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-memory-")
    ma = bs.Mailaccess(os.path.join(root, "mailaccess"), args.clients + 50, args.workers)
    msgs = bs.corpus(400)
    loop = asyncio.new_event_loop()
    ma.start(bs.CHEAP)
    try:
        time.sleep(1)
        print(f"just started:           {snapshot(ma.pids())}", flush=True)
        loop.run_until_complete(bs.load(ma.port, msgs, args.messages))
        print(f"INBOX loaded:           {snapshot(ma.pids())}", flush=True)
        for login in (True, False):
            res = loop.run_until_complete(bs.run_config(
                ma.port, ma.pids, args.clients, args.seconds, login, msgs,
                mapped=("/data.mdb",)))
            m = res["mem_mb"]
            print(f"{args.clients} clients, {'LOGIN per cycle' if login else 'stay logged in'}: "
                  f"{res['ops_s']:.0f} ops/s, {res['cpu_per_k']:.2f} s/1k ops, "
                  f"{len(res['errors'])} errors; peak RSS {m['rss']:.0f} / PSS {m['pss']:.0f}"
                  f" / anon PSS {m['pss_anon']:.0f} MB", flush=True)
        print(f"right after the load:   {snapshot(ma.pids())}", flush=True)
        time.sleep(args.rest)
        print(f"{args.rest:g} s at rest:         {snapshot(ma.pids())}", flush=True)
    finally:
        ma.stop()
        loop.close()
        import shutil
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
