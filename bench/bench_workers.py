"""Worker processes ([server] workers, server/workers.py): accept balance and
the cross-worker notification latency.

1. accept balance: `mailaccess serve` with 2 workers; C IMAP connections are
   opened (one after another, then C at once) and counted per worker (the
   worker whose file table holds the accepted socket, from /proc).  The same
   count for the two kernel models side by side, outside mailaccess: N
   processes each running a Trio accept loop on one inherited listening
   socket (what mailaccess does) or each on its own SO_REUSEPORT socket.
2. notification latency: one session IDLEs, another session of the same
   account APPENDs; the time from the APPEND's tagged OK to the IDLE's
   "* n EXISTS" (both read by this one process, one clock), when both
   sessions are on the same worker and when they are on different workers
   (so the commit's notification crosses the channel: writer thread ->
   socketpair -> supervisor -> socketpair -> the other worker's bus), and
   with workers = 1.  p50/p99 over R rounds.

    .venv/bin/python bench/bench_workers.py [--rounds 300] [--conns 200]
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

from test_workers import MESSAGE, Cluster, Imap, on_each_worker, worker_pid  # noqa: E402


class Path(str):
    def __truediv__(self, other):
        return Path(os.path.join(self, other))

    def write_text(self, text):
        with open(self, "w") as fh:
            fh.write(text)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def balance_mailaccess(cluster, conns: int) -> tuple[dict, dict]:
    pids = list(cluster.pids().values())
    out = []
    for mode in ("sequential", "burst"):
        socks = []
        if mode == "sequential":
            for _ in range(conns):
                socks.append(Imap(cluster.ports["imap"]))
        else:
            raw = [socket.create_connection(("127.0.0.1", cluster.ports["imap"]))
                   for _ in range(conns)]
            for s in raw:
                s.settimeout(30)
                s.recv(1024)
            socks = [type("C", (), {"sock": s, "close": s.close})() for s in raw]
        counts = {p: 0 for p in pids}
        for c in socks:
            p = worker_pid(c.sock, pids)
            counts[p] = counts.get(p, 0) + 1
        for c in socks:
            c.close()
        out.append(counts)
    return out[0], out[1]


def _accept_child(sock: socket.socket, conns_w, port: int, reuseport: bool):
    import trio

    async def main():
        if reuseport:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", port))
            s.listen(4096)
        else:
            s = sock
        ls = trio.SocketListener(trio.socket.from_stdlib_socket(s))
        n = 0
        while True:
            stream = await ls.accept()
            n += 1
            os.write(conns_w, b"x")
            await stream.send_all(b"hi\r\n")
            await stream.aclose()

    trio.run(main)


def balance_kernel(reuseport: bool, procs: int, conns: int, burst: bool) -> list[int]:
    base = socket.socket()
    if reuseport:
        base.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    base.bind(("127.0.0.1", 0))
    port = base.getsockname()[1]
    if not reuseport:
        base.listen(4096)
    pipes, pids = [], []
    for _ in range(procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _accept_child(base, w, port, reuseport)
            finally:
                os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    time.sleep(1.0)
    if burst:
        ss = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
        for s in ss:
            s.settimeout(10)
            s.recv(10)
            s.close()
    else:
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(10)
            s.recv(10)
            s.close()
    time.sleep(0.3)
    counts = []
    for r in pipes:
        os.set_blocking(r, False)
        try:
            counts.append(len(os.read(r, 1 << 20)))
        except BlockingIOError:
            counts.append(0)
        os.close(r)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    base.close()
    return counts


def channel_latency(rounds: int) -> list[float]:
    """The channel alone, with the server's own code: process A calls
    WorkerLink.on_commit (what the store writer thread calls after a commit),
    this process relays with Supervisor._read/_flush, process B's
    WorkerLink.run publishes on its Bus, where a subscriber wakes.  ms from
    the call in A to the wake-up in B (CLOCK_MONOTONIC is one clock for all
    processes)."""
    import json
    import selectors

    import trio

    from mailaccess.bus import Bus
    from mailaccess.config import Config
    from mailaccess.server import workers
    from mailaccess.store.records import Change

    hub = workers.Supervisor(Config())
    ends, res = [], []
    for slot in hub.slots[:2]:
        p, c = socket.socketpair()
        p.setblocking(False)
        slot.sock = p
        hub.sel.register(p, selectors.EVENT_READ, slot)
        ends.append(c)
    hub.slots = hub.slots[:2]
    pids = []
    for role in ("B", "A"):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                out = []
                if role == "B":
                    async def main():
                        bus = Bus()
                        bus.attach()
                        link = workers.WorkerLink(1, 2, ends[1])

                        class Ctx:
                            store = object()
                        Ctx.bus = bus
                        async with trio.open_nursery() as n:
                            await n.start(link.run, Ctx, n.cancel_scope)
                            os.write(w, b"R")
                            since = 0
                            while since < rounds:
                                with bus.subscribe(1, since=since) as sub:
                                    got = await sub.wait()
                                out.append((got.modseq, time.perf_counter()))
                                since = got.modseq
                            n.cancel_scope.cancel()
                    trio.run(main)
                else:
                    os.read(ready_r, 1)
                    link = workers.WorkerLink(0, 2, ends[0])
                    for i in range(1, rounds + 1):
                        info = type("Info", (), {"changes": [
                            (1, Change(modseq=i, mailboxes=[1], created={"Email": [i]}))]})
                        t0 = time.perf_counter()
                        link.on_commit(info)
                        out.append((i, t0))
                        time.sleep(0.002)
                os.write(w, json.dumps(out).encode())
            finally:
                os._exit(0)
        os.close(w)
        pids.append(pid)
        res.append(r)
        if role == "B":
            # A, forked next, waits for B's "R" on this pipe (its read end
            # is inherited): B listens before A sends
            ready_r = r
    for e in ends:
        e.close()
    while pids:
        for key, mask in hub.sel.select(0.5):
            slot = key.data
            if mask & selectors.EVENT_READ:
                hub._read(slot)
            if mask & selectors.EVENT_WRITE and slot.sock is not None:
                hub._flush(slot)
        for pid in list(pids):
            if os.waitpid(pid, os.WNOHANG)[0]:
                pids.remove(pid)
    b = dict(json.loads(os.read(res[0], 1 << 22) or b"[]"))
    a = dict(json.loads(os.read(res[1], 1 << 22) or b"[]"))
    return [(b[k] - a[k]) * 1000 for k in a if k in b and b[k] >= a[k]]


def latency(cluster, rounds: int, cross: bool) -> list[float]:
    port = cluster.ports["imap"]
    if cross:
        a, b = on_each_worker(cluster, lambda: Imap(port)).values()
    else:
        pids = list(cluster.pids().values())
        first = Imap(port)
        target = worker_pid(first.sock, pids)
        b = None if pids else Imap(port)         # workers = 1: one process
        for _ in range(200 if pids else 0):
            c = Imap(port)
            if worker_pid(c.sock, pids) == target:
                b = c
                break
            c.close()
        a = first
    a.login()
    b.login()
    a.idle()
    out = []
    for i in range(rounds):
        b.cmd("APPEND INBOX", MESSAGE % i)
        t0 = time.perf_counter()
        a.wait_exists()
        out.append((time.perf_counter() - t0) * 1000)
    a.done()
    a.close()
    b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--conns", type=int, default=200)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-workers-")
    try:
        print(f"bench_workers: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
        print("\n== accept balance, kernel models, 2 processes (Trio accept loops)")
        for reuse in (False, True):
            for burst in (False, True):
                counts = balance_kernel(reuse, 2, args.conns, burst)
                print(f"  {'SO_REUSEPORT' if reuse else 'one inherited socket':<22} "
                      f"{'burst' if burst else 'sequential':<11} {counts}")
        os.makedirs(Path(root) / "w2")
        xs = channel_latency(args.rounds)
        print(f"\n== channel alone (WorkerLink.on_commit in A -> bus wake-up in B, "
              f"through the supervisor's relay), ms\n  p50 {statistics.median(xs):.3f}  "
              f"p99 {pct(xs, 99):.3f}  (n={len(xs)})")
        c = Cluster(Path(root) / "w2")
        try:
            seq, burst = balance_mailaccess(c, args.conns)
            print(f"\n== accept balance, mailaccess serve, workers = 2, {args.conns} IMAP "
                  f"connections\n  sequential  {sorted(seq.values())}\n"
                  f"  burst       {sorted(burst.values())}")
            print("\n== IDLE wake-up after another session's APPEND (ms from the APPEND's "
                  "OK to '* n EXISTS')")
            for cross in (False, True):
                xs = latency(c, args.rounds, cross)
                print(f"  workers = 2, {'different workers' if cross else 'same worker':<18}"
                      f" p50 {statistics.median(xs):.3f}  p99 {pct(xs, 99):.3f}  "
                      f"(n={len(xs)})")
        finally:
            c.stop()
        os.makedirs(Path(root) / "w1", exist_ok=True)
        c1 = Cluster(Path(root) / "w1", n=1)
        try:
            xs = latency(c1, args.rounds, False)
            print(f"  workers = 1{'':<20} p50 {statistics.median(xs):.3f}  "
                  f"p99 {pct(xs, 99):.3f}  (n={len(xs)})")
        finally:
            c1.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
