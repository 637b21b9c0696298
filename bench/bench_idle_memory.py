"""Memory per logged-in, SELECTed, idle IMAP session, in one server process.

The server runs in this process (one worker: what one session costs, not
how the workers split them); a client process opens N raw connections
that LOGIN, SELECT INBOX (M messages, APPENDed first) and then either
IDLE (``--mode idle``, the default) or just sit there (``--mode quiet``).
Reported, after a collection and a short settle:

* RSS growth of the server process per session (``/proc/self/status``);
* with ``--tracemalloc``: the Python bytes the sessions hold, per session
  (a snapshot before and after, same collection), the top allocation
  sites, and the object types whose count grew by at least one per session.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_idle_memory.py \
        [--sessions 1000] [--messages 1000] [--mode idle|quiet] [--tracemalloc]
"""
from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile

USER, PASSWORD = "bench", "benchpw"


# --- the client (a child process) -------------------------------------------------------------

def client(port: int, count: int, n_exists: int, mode: str) -> None:
    """COUNT connections up to IDLE (or quiet after SELECT), opened the way
    bench_imap.py opens its IDLE connections; print "ready", hold them until
    stdin closes."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_imap import open_idlers

    clients, _ = open_idlers(port, count, n_exists, idle=(mode == "idle"),
                             user=USER, password=PASSWORD)
    print("ready", flush=True)
    sys.stdin.read()
    for c in clients:
        c.sock.close()


# --- the server (this process) ----------------------------------------------------------------

def rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def type_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in gc.get_objects():
        t = type(o).__qualname__
        counts[t] = counts.get(t, 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--mode", choices=("idle", "quiet"), default="idle")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        port, count, n, mode = args.client
        client(int(port), int(count), int(n), mode)
        return

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.sessions * 2 + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    import dataclasses
    import trio
    from mailaccess import accounts, config
    from mailaccess.server import app, memory

    memory.tune_malloc()
    root = tempfile.mkdtemp(prefix="bench-idlemem-")
    cfg = config.Config(data_dir=os.path.join(root, "data"), demo_account=False,
                        log_level="warning")
    lo = config.Listener("127.0.0.1", 0)
    off = config.Listener("127.0.0.1", 0, enabled=False)
    cfg = dataclasses.replace(
        cfg, imap=dataclasses.replace(cfg.imap, listen=lo, listen_tls=off,
                                      max_sessions_per_user=args.sessions + 100),
        http=dataclasses.replace(cfg.http, listen=lo),
        lmtp=dataclasses.replace(cfg.lmtp, listen=lo))

    async def run():
        async with trio.open_nursery() as n:
            ctx = await n.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                               install_signals=False))
            await trio.to_thread.run_sync(accounts.add_user, ctx.store, USER, PASSWORD)
            port = ctx.bound["imap"][0][1]
            await trio.to_thread.run_sync(_fill, port, args.messages)
            # one connection first: what only the first session builds (caches,
            # specialised code) is not a per-session cost
            await _round(port, 1, args, None)
            await _round(port, args.sessions, args, report)
            n.cancel_scope.cancel()

    async def _round(port, count, args, report):
        gc.collect()
        await trio.sleep(0.5)
        gc.collect()
        before = rss_kb()
        snap0 = counts0 = None
        if report is not None and args.tracemalloc:
            import tracemalloc
            tracemalloc.start(8)
            gc.collect()
            snap0 = tracemalloc.take_snapshot()
            counts0 = type_counts()
        proc = await trio.lowlevel.open_process(
            [sys.executable, __file__, "--client", str(port), str(count), str(args.messages),
             args.mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        buf = b""
        while b"ready" not in buf:
            chunk = await proc.stdout.receive_some(100)
            if not chunk:
                raise SystemExit("the client failed")
            buf += chunk
        await trio.sleep(1.0)
        gc.collect()
        after = rss_kb()
        if report is not None:
            report(count, before, after, snap0, counts0)
        await proc.stdin.aclose()
        await proc.wait()
        await trio.sleep(0.5)

    def report(count, before, after, snap0, counts0):
        print(f"{count} {args.mode} sessions, {args.messages} messages in INBOX: "
              f"RSS {before:,} -> {after:,} KB = {(after - before) * 1024 / count / 1024:.1f} "
              f"KB per session")
        if snap0 is None:
            return
        import tracemalloc
        snap1 = tracemalloc.take_snapshot()
        counts1 = type_counts()
        tracemalloc.stop()
        flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
        snap0, snap1 = snap0.filter_traces(flt), snap1.filter_traces(flt)
        total = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
        print(f"Python objects (tracemalloc): {total / count:,.0f} bytes per session")
        by_pkg: dict[str, int] = {}
        for st in snap1.compare_to(snap0, "filename"):
            f = st.traceback[0].filename
            pkg = ("mailaccess" if "/mailaccess/" in f else "trio" if "/trio/" in f
                   else "attrs (trio's classes)" if "attrs generated" in f else "other")
            by_pkg[pkg] = by_pkg.get(pkg, 0) + st.size_diff
        print("  allocated in: " + ", ".join(f"{k} {v / count:,.0f} B" for k, v in
                                              sorted(by_pkg.items(), key=lambda kv: -kv[1])))
        for s in snap1.compare_to(snap0, "lineno")[:args.top]:
            if s.size_diff < count * 16:
                break
            fr = s.traceback[0]
            print(f"  {s.size_diff / count:8.0f} B {s.count_diff / count:6.2f} obj  "
                  f"{fr.filename.split('site-packages/')[-1].split('mailaccess/')[-1]}:{fr.lineno}")
        print("object types (gc-tracked), count per session:")
        grown = sorted(((counts1.get(t, 0) - counts0.get(t, 0)) / count, t) for t in counts1)
        for per, t in reversed(grown):
            if per < 0.99:
                break
            print(f"  {per:6.2f} {t}")

    try:
        trio.run(run)
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def _fill(port: int, n: int) -> None:
    import imaplib
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(USER, PASSWORD)
    for i in range(n):
        c.append("INBOX", None, None,
                 f"From: a@example.org\r\nSubject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nbody {i}\r\n"
                 .encode())
    c.logout()


if __name__ == "__main__":
    main()
