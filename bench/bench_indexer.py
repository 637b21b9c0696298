"""Benchmark the message indexer: pure-Python twin vs compiled msgindex_c.

    .venv/bin/python bench/bench_indexer.py [--count 2000] [--scale 2.0] [--repeat 3]

Generates a deterministic corpus (tests/corpus/make_corpus.py, realistic 2-50 KB
messages at the default scale), indexes it with each twin and prints
messages/s, MB/s and the C/py ratio (best of --repeat runs).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "corpus"))

import make_corpus  # noqa: E402

from mailaccess import _speedups  # noqa: E402
from mailaccess.mime.index import index_with  # noqa: E402


def run(mod, msgs, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for raw in msgs:
            index_with(raw, mod)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    msgs = make_corpus.generate(args.count, seed=2024, scale=args.scale)
    sizes = sorted(map(len, msgs))
    total = sum(sizes)
    print(f"corpus: {len(msgs)} messages, {total / 1e6:.1f} MB, median {statistics.median(sizes) / 1e3:.1f} KB,"
          f" p10 {sizes[len(sizes) // 10] / 1e3:.1f} KB, p90 {sizes[len(sizes) * 9 // 10] / 1e3:.1f} KB")
    results = {}
    for name, mod in (("py", _speedups.load_py("msgindex")), ("c", _speedups.load_c("msgindex"))):
        if mod is None:
            print(f"{name:>3}: not built")
            continue
        dt = run(mod, msgs, args.repeat)
        results[name] = dt
        print(f"{name:>3}: {len(msgs) / dt:9.0f} messages/s {total / dt / 1e6:8.1f} MB/s ({dt:.3f} s)")
    if len(results) == 2:
        print(f"ratio c/py: {results['py'] / results['c']:.2f}x")


if __name__ == "__main__":
    main()
