"""What a durable write costs on this disk: fdatasync/fsync latency, p50/p99.

    .venv/bin/python bench/bench_fsync.py [--dir DIR] [--count 500]

Each case writes a few bytes and waits for them to be on stable storage, the
way a store commit does, COUNT times in a file under DIR (default: a temp dir
beside the data directory's file system, /tmp):

- ``append4k+fdatasync``: append 4 KiB to a growing file, fdatasync (the file
  size changes: ext4 commits its journal too);
- ``rewrite4k+fdatasync``: overwrite one 4 KiB page inside an already
  allocated file, fdatasync (data only: what a preallocated redo log or
  LMDB's data pages cost);
- ``rewrite4k+fsync``: the same with fsync (also the inode's timestamps);
- ``rewrite4k O_DSYNC``: one pwrite on a file opened O_DSYNC (how LMDB writes
  its meta page);
- ``2x rewrite+fdatasync``: two pages in two places, a sync after each (LMDB's
  commit today: data pages, then the meta page);
- ``N scattered pages+fdatasync``: N pages far apart in a 64 MiB file, then
  one fdatasync (a commit that dirtied N B-tree pages: a one-message STORE
  dirties about 15 today);
- ``lmdb commit``: one small put per write transaction in an LMDB
  environment opened like the store (sync=True, metasync=True), and with
  ``metasync=False`` (one sync per commit, durability deferred to the next).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(name: str, xs: list[float]) -> None:
    us = [x * 1e6 for x in xs]
    print(f"{name:28s} p50 {pct(us, 50):8.0f} us   p99 {pct(us, 99):8.0f} us   "
          f"mean {statistics.fmean(us):8.0f} us   ({len(us)} runs)")


def case_append(d: str, n: int) -> list[float]:
    path = os.path.join(d, "append.dat")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    page = os.urandom(4096)
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, page)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def _prealloc(path: str, pages: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"\0" * 4096 * pages)
    os.fsync(fd)
    return fd


def case_rewrite(d: str, n: int, sync) -> list[float]:
    path = os.path.join(d, "rewrite.dat")
    fd = _prealloc(path, 256)
    page = os.urandom(4096)
    out = []
    try:
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, page, (i % 256) * 4096)
            sync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def case_dsync(d: str, n: int) -> list[float]:
    path = os.path.join(d, "dsync.dat")
    os.close(_prealloc(path, 256))
    fd = os.open(path, os.O_RDWR | os.O_DSYNC)
    page = os.urandom(4096)
    out = []
    try:
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, page, (i % 256) * 4096)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def case_two(d: str, n: int) -> list[float]:
    path = os.path.join(d, "two.dat")
    fd = _prealloc(path, 256)
    page = os.urandom(4096)
    out = []
    try:
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, page, (2 + i % 200) * 4096)
            os.fdatasync(fd)
            os.pwrite(fd, page, (i % 2) * 4096)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def case_scattered(d: str, n: int, pages: int) -> list[float]:
    """PAGES pages far apart in a 64 MiB file, one pwrite each, then fdatasync."""
    path = os.path.join(d, "scattered.dat")
    fd = _prealloc(path, 16384)
    page = os.urandom(4096)
    out = []
    try:
        for i in range(n):
            t = time.perf_counter()
            for j in range(pages):
                os.pwrite(fd, page, ((i * 7919 + j * 1021) % 16384) * 4096)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return out


def case_lmdb(d: str, n: int, **flags) -> list[float]:
    import lmdb

    path = os.path.join(d, "env-" + "-".join(f"{k}{v}" for k, v in flags.items()))
    env = lmdb.open(path, map_size=1 << 30, **flags)
    out = []
    try:
        for i in range(50):     # grow the file first: steady state, not growth
            with env.begin(write=True) as txn:
                txn.put(b"k%06d" % i, os.urandom(2000))
        for i in range(n):
            t = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(b"k%06d" % (i % 50), os.urandom(200))
            out.append(time.perf_counter() - t)
    finally:
        env.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None)
    ap.add_argument("--count", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        st = os.statvfs(d)
        print(f"dir {d} (block size {st.f_bsize}); {args.count} runs per case")
        report("append4k+fdatasync", case_append(d, args.count))
        report("rewrite4k+fdatasync", case_rewrite(d, args.count, os.fdatasync))
        report("rewrite4k+fsync", case_rewrite(d, args.count, os.fsync))
        report("rewrite4k O_DSYNC", case_dsync(d, args.count))
        report("2x rewrite+fdatasync", case_two(d, args.count))
        for pages in (1, 4, 16):
            report(f"{pages} scattered pages+fdatasync", case_scattered(d, args.count, pages))
        report("lmdb commit (sync+metasync)", case_lmdb(d, args.count))
        report("lmdb commit (nometasync)", case_lmdb(d, args.count, metasync=False))
        report("lmdb commit (writemap)", case_lmdb(d, args.count, writemap=True))
        report("lmdb commit (writemap,nometa)", case_lmdb(d, args.count, writemap=True,
                                                          metasync=False))
        report("lmdb commit (nosync)", case_lmdb(d, args.count, sync=False))


if __name__ == "__main__":
    main()
