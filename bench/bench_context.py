"""RFC 5267 contexts: what keeping SEARCH/SORT results live costs.

One `mailaccess serve` on loopback (bench/common.py), one mailbox of N small
messages.  A watcher session holds four updating contexts (UNSEEN, a BODY
text search, a SORT (SUBJECT) over UNSEEN, a SORT (DATE) over everything);
a plain session holds none.  Another session changes one message's flags per
round; both watchers then NOOP and we time the NOOP (which carries the
ADDTO/REMOVEFROM).  For comparison: the time to run the four searches again
from scratch (what a server without incremental updates would pay per
change), and one bulk round (STORE 1:* on every message) followed by NOOP.

Run:  PYTHONPATH=. .venv/bin/python bench/bench_context.py [--messages 10000] [--rounds 40]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import start_mailaccess  # noqa: E402
from bench_hostile import load, small  # noqa: E402

CONTEXTS = [
    b"UID SEARCH RETURN (UPDATE COUNT) UNSEEN",
    b"UID SEARCH RETURN (UPDATE COUNT) BODY hello",
    b"UID SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 UNSEEN",
    b"SORT RETURN (UPDATE COUNT) (DATE) UTF-8 ALL",
]


class Session:
    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.f = self.s.makefile("rwb")
        self.f.readline()
        self.n = 0
        self.cmd(b"LOGIN alice pw")
        self.cmd(b"SELECT INBOX")

    def cmd(self, line: bytes) -> list[bytes]:
        self.n += 1
        tag = b"x%d" % self.n
        self.f.write(tag + b" " + line + b"\r\n")
        self.f.flush()
        out = []
        while not (l := self.f.readline()).startswith(tag + b" "):
            out.append(l)
        return out

    def timed(self, line: bytes) -> tuple[float, list[bytes]]:
        t = time.perf_counter()
        out = self.cmd(line)
        return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=40)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mailaccess-bench-context-")
    proc, ports = start_mailaccess(work)
    try:
        port = ports["imap"]
        load(port, "INBOX", (small(i) for i in range(a.messages)))
        watcher, plain, changer = Session(port), Session(port), Session(port)
        for line in CONTEXTS:
            assert not any(b"NOUPDATE" in x for x in watcher.cmd(line))
        with_ctx, without, updates = [], [], 0
        for r in range(a.rounds):
            seq = 1 + (r * 7919) % a.messages
            changer.cmd(b"STORE %d %sFLAGS (\\Seen)" % (seq, b"+" if r % 2 == 0 else b"-"))
            t, out = watcher.timed(b"NOOP")
            with_ctx.append(t)
            updates += sum(1 for x in out if b"ESEARCH" in x)
            without.append(plain.timed(b"NOOP")[0])
        again = []
        for line in CONTEXTS:
            again.append(watcher.timed(line.replace(b"UPDATE ", b""))[0])
        changer.cmd(b"STORE 1:* +FLAGS.SILENT (\\Seen)")
        bulk, out = watcher.timed(b"NOOP")
        bulk_bytes = sum(map(len, out))
        plain_bulk = plain.timed(b"NOOP")[0]
        ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        print(f"mailbox of {a.messages} messages, {a.rounds} rounds of one flag change")
        print(f"  NOOP after one change, no contexts:     p50 {ms(without):7.2f} ms")
        print(f"  NOOP after one change, 4 contexts:      p50 {ms(with_ctx):7.2f} ms "
              f"({updates} ESEARCH updates)")
        print(f"  the 4 searches run again from scratch:  sum {sum(again) * 1000:7.1f} ms")
        print(f"  NOOP after STORE 1:* (all change), no contexts: {plain_bulk * 1000:7.1f} ms")
        print(f"  NOOP after STORE 1:* (all change), 4 contexts:  {bulk * 1000:7.1f} ms "
              f"({bulk_bytes} bytes)")
    finally:
        proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
