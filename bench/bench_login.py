"""Server memory and a real user's login latency under a flood of wrong LOGINs.

    .venv/bin/python bench/bench_login.py [--clients 80] [--rounds 3] [--config TOML]

Starts `mailaccess serve` from the tree whose root is the current directory
(run it from an older tree's root to compare), then C clients each send one
wrong `LOGIN alice wrong` at the same moment (from 127.0.0.2), ROUNDS times;
meanwhile a real user logs in once per round (from 127.0.0.1, after one
earlier login).  Prints the server's RSS before, its peak RSS (VmHWM), how
the wrong logins were answered (NO [AUTHENTICATIONFAILED] / NO [UNAVAILABLE])
and the real user's answer and latency.
"""
from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time

from common import report, start_mailaccess, tree_rss_kb


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def login(port: int, user: bytes, password: bytes, out: list, barrier=None,
          source: str = "127.0.0.1") -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=120,
                                     source_address=(source, 0))
        f = s.makefile("rwb")
        f.readline()
        if barrier is not None:
            barrier.wait()
        t0 = time.perf_counter()
        f.write(b"a LOGIN " + user + b" " + password + b"\r\n")
        f.flush()
        line = f.readline()
        out.append((line, time.perf_counter() - t0))
        s.close()
    except OSError as exc:
        out.append((f"error {exc}".encode(), 0.0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--config", default="", help="extra TOML appended to the config")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, ports = start_mailaccess(tmp, args.config)
        port = ports["imap"]
        try:
            warm: list = []
            login(port, b"alice", b"pw", warm)      # one right login: the steady state
            time.sleep(0.5)
            before = tree_rss_kb(proc.pid)
            wrong: list = []
            real: list = []
            for _ in range(args.rounds):
                barrier = threading.Barrier(args.clients + 1)
                # the attacker comes from 127.0.0.2, the real user from 127.0.0.1
                ts = [threading.Thread(target=login, args=(port, b"alice", b"wrong", wrong,
                                                           barrier, "127.0.0.2"))
                      for _ in range(args.clients)]
                for t in ts:
                    t.start()
                barrier.wait()
                time.sleep(0.05)
                login(port, b"alice", b"pw", real)
                for t in ts:
                    t.join()
            peak = vm_hwm_kb(proc.pid)
            after = tree_rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)

    def count(prefix: bytes) -> int:
        return sum(1 for line, _ in wrong if line.startswith(prefix))

    lat = sorted(t for _, t in wrong)
    report(f"{args.clients} concurrent wrong LOGINs x {args.rounds} rounds", [
        ("RSS before", f"{before / 1024:.0f} MB"),
        ("peak RSS (VmHWM)", f"{peak / 1024:.0f} MB"),
        ("RSS after", f"{after / 1024:.0f} MB"),
        ("NO [AUTHENTICATIONFAILED]", str(count(b"a NO [AUTHENTICATIONFAILED]"))),
        ("NO [UNAVAILABLE]", str(count(b"a NO [UNAVAILABLE]"))),
        ("other answers", str(len(wrong) - count(b"a NO [AUTHENTICATIONFAILED]")
                              - count(b"a NO [UNAVAILABLE]"))),
        ("wrong LOGIN answer p50 / max", f"{lat[len(lat) // 2]:.2f} s / {lat[-1]:.2f} s"),
        ("real user's LOGIN", ", ".join(f"{line[:24].decode(errors='replace').strip()} "
                                        f"in {t:.2f} s" for line, t in real)),
    ])


if __name__ == "__main__":
    main()
