"""Receiver throughput with each imapscan twin.

    .venv/bin/python bench/bench_imapscan.py [--size-mb 50] [--chunk-kb 64] [--repeat 3]

1. a 50 MB ``APPEND`` (synchronizing literal) fed in 64 KB chunks: the
   literal is counted and collected, never scanned, so both twins should run
   at memory-copy speed (the ratio shows the scanner is not in that path);
2. the same number of bytes as pipelined small commands (FETCH/STORE/SEARCH
   lines with quoted strings), where every byte goes through ``scan_line``.
"""
from __future__ import annotations

import argparse
import time

from mailaccess import _speedups
from mailaccess.proto.imap.frames import NEED_DATA, CommandFrame
from mailaccess.proto.imap.receiver import Receiver


def feed(scanner, chunks, max_literal):
    r = Receiver(max_literal=max_literal, scanner=scanner)
    frames = 0
    t0 = time.perf_counter()
    for c in chunks:
        r.receive_data(c)
        while (ev := r.next_event()) is not NEED_DATA:
            if isinstance(ev, CommandFrame):
                frames += 1
    return time.perf_counter() - t0, frames


def chunked(data, size):
    return [data[i : i + size] for i in range(0, len(data), size)]


def best(scanner, chunks, max_literal, repeat):
    times = []
    for _ in range(repeat):
        t, frames = feed(scanner, chunks, max_literal)
        times.append(t)
    return min(times), frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=50)
    ap.add_argument("--chunk-kb", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = int(args.size_mb * 1_000_000)
    chunk = args.chunk_kb * 1024
    twins = [("py", _speedups.load_py("imapscan"))]
    c = _speedups.load_c("imapscan")
    if c is not None:
        twins.append(("c", c))
    else:
        print("imapscan_c not built: run .venv/bin/python setup.py build_ext --inplace")

    line = b"From: someone@example.com\r\nSubject: a {5} \"quoted\" line\r\n" * 8
    body = (line * (size // len(line) + 1))[:size]
    append = b'A1 APPEND INBOX (\\Seen) "17-Jul-1996 02:44:25 -0700" {%d}\r\n' % size + body + b"\r\n"
    cmds = [
        b'A%d UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject)])\r\n',
        b'A%d UID STORE 1:5 +FLAGS.SILENT (\\Seen $Forwarded)\r\n',
        b'A%d UID SEARCH CHARSET UTF-8 SUBJECT "weekly {report} \\"draft\\"" SINCE 1-Feb-2024\r\n',
    ]
    parts, n, total = [], 0, 0
    while total < size:
        p = cmds[n % 3] % n
        parts.append(p)
        total += len(p)
        n += 1
    pipelined = b"".join(parts)

    for label, data in (("50 MB APPEND literal", append), ("pipelined small commands", pipelined)):
        chunks = chunked(data, chunk)
        results = {}
        for name, mod in twins:
            t, frames = best(mod, chunks, size + 1, args.repeat)
            results[name] = len(data) / t / 1e6
            print(f"{label:28s} {name:2s}: {results[name]:9.1f} MB/s  ({frames} commands, {len(data) / 1e6:.1f} MB)")
        if "c" in results:
            print(f"{label:28s} c/py ratio: {results['c'] / results['py']:.2f}x")


if __name__ == "__main__":
    main()
