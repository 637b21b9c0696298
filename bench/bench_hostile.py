"""Hostile neighbour: a bystander's latency and the server's RSS while another
client runs each worst case of issue 7 §1-2.

One `mailaccess serve` on loopback (bench/common.py).  A bystander session
(its own mailbox of 50 small messages) loops NOOP and `FETCH n (FLAGS
BODY.PEEK[])` with a short pause and records each command's latency; a sampler
reads the RSS of the server's process tree every 50 ms.  Then each scenario
runs in turn, alone, and the report gives, per scenario: the bystander's NOOP
and FETCH p50/p99/max inside the scenario's window, the server's peak RSS and
its RSS at the end, and how long the attack itself took.

Scenarios (bounded counts, loopback only, each stops by itself):
  baseline    nothing else running
  subject     LMTP delivery of a Subject of "(fwd)" repeated (200 KB), then "x"
  sort        SORT (SUBJECT) and THREAD on a mailbox holding that message
  script      LMTP delivery of a text/html of "<script" repeated (420 KB)
  list        LIST "" "*a*a*a*a*b" after CREATE of a 200-character name of a's
  logins      80 concurrent wrong LOGINs
  literal     LOGIN {63000000+} before authentication, then the data
  bodypeek    FETCH 1 (BODY.PEEK[] x 200) of a 1 MiB message
  fetchone    one connection doing FETCH 1:* (FLAGS BODY.PEEK[]) on 5,000 messages
              (not an attack: the speed of the big FETCH itself)
  fetchall    50 connections doing FETCH 1:* (FLAGS BODY.PEEK[]) on 5,000 messages
  store       2,500 STORE 1:* (+/-FLAGS.SILENT) while another session sits
              selected on that mailbox without reading (RSS must stay flat)

Run:  PYTHONPATH=. .venv/bin/python bench/bench_hostile.py [--quick] [--only NAME,...]
          [--repeat N]
"""
from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report, start_mailaccess  # noqa: E402

SCENARIOS = ("baseline", "subject", "sort", "script", "list", "logins", "literal", "bodypeek",
             "fetchone", "fetchall", "store")
TIMEOUT = 600        # no single client call waits longer than this


# --- measuring -------------------------------------------------------------------------------

def tree_rss_kb(pid: int) -> int:
    """RSS of PID and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), tree_rss_kb(self.pid)))
            time.sleep(0.05)

    def window(self, t0: float, t1: float) -> list[int]:
        return [r for t, r in self.samples if t0 <= t <= t1]


class Bystander(threading.Thread):
    """NOOP and a small FETCH in turn, 20 ms apart; (time, kind, seconds)."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.c = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
        self.c.login("alice", "pw")
        self.c.select("Bystander")
        self.lat: list[tuple[float, str, float]] = []
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            t = time.monotonic()
            if n % 2:
                self.c.noop()
                kind = "noop"
            else:
                typ, _ = self.c.fetch(str(1 + n % 50), "(FLAGS BODY.PEEK[])")
                assert typ == "OK"
                kind = "fetch"
            self.lat.append((t, kind, time.monotonic() - t))
            time.sleep(0.02)

    def window(self, kind: str, t0: float, t1: float) -> list[float]:
        return sorted(d for t, k, d in self.lat if k == kind and t0 <= t <= t1)


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else float("nan")


# --- clients -----------------------------------------------------------------------------------

def login(port: int) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
    c.login("alice", "pw")
    return c


def small(i: int, subject: str | None = None, body: bytes | None = None) -> bytes:
    return (f"From: s{i % 50}@example.org\r\nTo: alice@localhost\r\n"
            f"Subject: {subject or f'message {i}'}\r\nMessage-ID: <h{i}.{time.time_ns()}@x>\r\n"
            f"Date: Mon, 3 Nov 2025 10:00:00 +0000\r\n\r\n").encode() + \
        (body if body is not None else b"hello %d\r\n" % i * 20)


def load(port: int, mailbox: str, msgs) -> None:
    """Pipelined APPENDs with LITERAL+ over one raw connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    f = s.makefile("rwb")
    f.readline()
    f.write(b"l LOGIN alice pw\r\n")
    f.write(b'c CREATE "%s"\r\n' % mailbox.encode())
    f.flush()
    bad = []

    def read():   # answers are read while we write: no pipelining deadlock
        while line := f.readline():
            if line.startswith(b"a") and b" OK" not in line:
                bad.append(line)
    reader = threading.Thread(target=read)
    reader.start()
    n = 0
    for m in msgs:
        n += 1
        s.sendall(b'a%d APPEND "%s" {%d+}\r\n' % (n, mailbox.encode(), len(m)) + m + b"\r\n")
    s.sendall(b"z LOGOUT\r\n")
    reader.join()
    s.close()
    if bad:
        raise SystemExit(f"APPEND failed: {bad[0]!r}")


def deliver(port: int, raw: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", port, timeout=TIMEOUT) as l:
        l.sendmail("x@example.org", ["alice@localhost"], raw)


def raw_login(port: int, select: str | None = None) -> socket.socket:
    """A raw connection, logged in (and SELECTed), every answer read."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"l LOGIN alice pw\r\n" + (b"s SELECT %s\r\n" % select.encode() if select else b""))
    want = b"s " if select else b"l "
    while not (line := f.readline()).startswith(want):
        if not line:
            raise SystemExit("login failed")
    return s


def drain_cmd(s: socket.socket, line: bytes) -> int:
    """Send one command and LOGOUT on S; read (and drop) the answer; bytes read."""
    s.sendall(line + b"\r\nz LOGOUT\r\n")
    n = 0
    while chunk := s.recv(1 << 20):
        n += len(chunk)
    s.close()
    return n


def threads(fns) -> None:
    ts = [threading.Thread(target=f) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


# --- scenarios --------------------------------------------------------------------------------

def scenarios(ports: dict, q: bool):
    imap, lmtp = ports["imap"], ports["lmtp"]
    n_fetch = 1000 if q else 5000
    conns = 20 if q else 50
    big = 1 << 20
    sc = {}

    def prepare():
        load(imap, "Bystander", (small(i) for i in range(50)))
        load(imap, "Many", (small(i, body=b"line of text\r\n" * 100) for i in range(n_fetch)))
        load(imap, "Big", [small(0, body=(b"x" * 76 + b"\r\n") * (big // 78))])
        load(imap, "Flags", (small(i) for i in range(200)))
        load(imap, "Subj", [small(i) for i in range(20)] +
             [small(99, subject="(fwd)" * (20_000 if q else 40_000) + "x")])

    sc["baseline"] = lambda: time.sleep(3 if q else 6)
    sc["subject"] = lambda: deliver(lmtp, small(1, subject="(fwd)" * (20_000 if q else 40_000)
                                                + "x"))

    def sort():
        c = login(imap)
        c.select("Subj")

        def attack():
            for _ in range(1 if q else 2):
                c.sort("(SUBJECT)", "UTF-8", "ALL")
                c.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL")
            c.logout()
        return attack
    sc["sort"] = sort

    sc["script"] = lambda: deliver(lmtp, (
        "From: x@example.org\r\nTo: alice@localhost\r\nSubject: html\r\n"
        "Content-Type: text/html\r\n\r\n").encode() + b"<script" * ((15_000 if q else 60_000)))

    def wildcards():
        c = login(imap)
        c.create("a" * 200)

        def attack():
            typ, _ = c.list('""', '"*a*a*a*b"' if q else '"*a*a*a*a*b"')
            assert typ == "OK"
            c.delete("a" * 200)
            c.logout()
        return attack
    sc["list"] = wildcards

    def wrong():
        c = imaplib.IMAP4("127.0.0.1", imap, timeout=TIMEOUT)
        try:
            c.login("alice", "wrong")
        except imaplib.IMAP4.error:
            pass
        c.shutdown()
    sc["logins"] = lambda: threads([wrong] * (40 if q else 80))

    def literal():
        size = 63_000_000
        s = socket.create_connection(("127.0.0.1", imap), timeout=TIMEOUT)
        s.recv(4096)
        s.sendall(b"a LOGIN {%d+}\r\n" % size)
        block = b"u" * (1 << 20)
        sent = 0
        try:
            while sent < size:
                sent += s.send(block[:size - sent])
            s.sendall(b" {5+}\r\nwrong\r\n")
        except OSError:
            pass
        s.close()
    sc["literal"] = literal

    # The staged ones log in during setup (outside the measured window): each
    # argon2 verification costs 64 MiB today, which is the logins scenario.
    def bodypeek():
        s = raw_login(imap, "Big")
        return lambda: drain_cmd(s, b"f FETCH 1 (" +
                                 b" ".join([b"BODY.PEEK[]"] * (50 if q else 200)) + b")")
    sc["bodypeek"] = bodypeek

    def fetchall():
        socks = [raw_login(imap, "Many") for _ in range(conns)]
        return lambda: threads([lambda s=s: drain_cmd(s, b"f FETCH 1:* (FLAGS BODY.PEEK[])")
                                for s in socks])
    sc["fetchall"] = fetchall

    def fetchone():     # the same FETCH from one connection: its own speed
        s = raw_login(imap, "Many")
        return lambda: drain_cmd(s, b"f FETCH 1:* (FLAGS BODY.PEEK[])")
    sc["fetchone"] = fetchone

    def store():
        # a session selected on the mailbox that never reads: its pending
        # changes must not pile up (the bus is bounded)
        idle = raw_login(imap, "Flags")
        c = login(imap)
        c.select("Flags")

        def attack():
            for k in range(500 if q else 2500):
                c.store("1:*", "+FLAGS.SILENT" if k % 2 == 0 else "-FLAGS.SILENT", "(\\Seen)")
            c.logout()
            idle.close()
        return attack
    sc["store"] = store
    return prepare, sc, {"sort", "list", "bodypeek", "fetchone", "fetchall", "store"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts, a short run")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each scenario this many times (one load, one server)")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    work = tempfile.mkdtemp(prefix="bench-hostile-")
    proc, ports = start_mailaccess(work)
    rows = []
    try:
        prepare, sc, staged = scenarios(ports, args.quick)
        t = time.monotonic()
        prepare()
        print(f"loaded in {time.monotonic() - t:.1f} s; RSS {tree_rss_kb(proc.pid) // 1024} MB",
              flush=True)
        sampler = Sampler(proc.pid)
        sampler.start()
        by = Bystander(ports["imap"])
        by.start()
        for name in [n for n in only for _ in range(args.repeat)]:
            attack = sc[name]() if name in staged else sc[name]
            time.sleep(1.0)           # let the previous one (and the setup) settle
            t0 = time.monotonic()
            rss0 = tree_rss_kb(proc.pid)
            attack()
            t1 = time.monotonic()
            time.sleep(0.5)           # the server may still be busy with it
            t2 = time.monotonic()
            noop = by.window("noop", t0, t2)
            fetch = by.window("fetch", t0, t2)
            rss = sampler.window(t0, t2) or [rss0]
            ms = lambda x: f"{x * 1000:.1f}"  # noqa: E731
            row = (f"{name:<9} attack {t1 - t0:7.2f} s | NOOP p50/p99/max "
                   f"{ms(pct(noop, .5))}/{ms(pct(noop, .99))}/{ms(noop[-1] if noop else 0)} ms"
                   f" (n={len(noop)}) | FETCH p50/p99/max {ms(pct(fetch, .5))}/"
                   f"{ms(pct(fetch, .99))}/{ms(fetch[-1] if fetch else 0)} ms | RSS before "
                   f"{rss0 // 1024} peak {max(rss) // 1024} end {tree_rss_kb(proc.pid) // 1024} MB")
            print(row, flush=True)
            rows.append((name, row[10:]))
        by.stop.set()
        sampler.stop.set()
        by.join(TIMEOUT)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except Exception:
            proc.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report("hostile neighbour" + (" (--quick)" if args.quick else ""), rows)


if __name__ == "__main__":
    main()
