"""Can a redo-log flush overlap the work after it?  (perf7-overlap)

    .venv/bin/python bench/bench_flush_overlap.py [--dir DIR] [--count 400]

Each iteration writes a 200-byte record into a preallocated log (as the
store does), starts its flush, does some work, waits for the flush, and
optionally sleeps 0.5 ms (a lone client's round trip: the CPUs go idle, as
between two STOREs).  Median µs from the record's write to "durable", and
of the work alone (slowed when the flush competes with it).  The work is
CPU only (a Python loop of about 100 µs) or also LMDB-like (ten 4 KiB
pwrites into another file, as LMDB's commit does).  Flushes:

- ``inline``: fdatasync after the work (what the store does);
- ``pythread``: a Python thread runs the fdatasync (it needs the GIL to
  start and to report: it starts when the main thread blocks);
- ``aio``: Linux AIO ``IOCB_CMD_FDSYNC`` (io_submit, then io_getevents),
  through ctypes: the kernel runs it on a workqueue;
- ``cthread``: a POSIX thread that never takes the GIL: the module of
  commit 2d4ff87 (``mailaccess/_speedups/logflush_c.pyx``), if importable
  (``git show 2d4ff87:mailaccess/_speedups/logflush_c.pyx > d/logflush_c.pyx;
  cythonize -i d/logflush_c.pyx; PYTHONPATH=d``).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import struct
import tempfile
import threading
import time


class PyThread:
    def __init__(self, fd: int):
        self.fd, self.cond, self.asked, self.done = fd, threading.Condition(), 0, 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with self.cond:
            while True:
                while self.asked == self.done:
                    self.cond.wait()
                upto = self.asked
                self.cond.release()
                try:
                    os.fdatasync(self.fd)
                finally:
                    self.cond.acquire()
                self.done = upto
                self.cond.notify_all()

    def start(self) -> int:
        with self.cond:
            self.asked += 1
            self.cond.notify_all()
            return self.asked

    def wait(self, t: int) -> int:
        with self.cond:
            while self.done < t:
                self.cond.wait()
        return 0


class Aio:
    """io_setup / io_submit(IOCB_CMD_FDSYNC) / io_getevents (x86_64 numbers)."""

    def __init__(self, fd: int):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.sc = self.libc.syscall
        self.sc.restype = ctypes.c_long
        self.ctx = ctypes.c_ulong(0)
        if self.sc(206, 8, ctypes.byref(self.ctx)) != 0:
            raise OSError(ctypes.get_errno(), "io_setup")
        self.iocb = ctypes.create_string_buffer(64)
        struct.pack_into("<QIIHhIQQqQII", self.iocb, 0, 1, 0, 0, 3, 0, fd, 0, 0, 0, 0, 0, 0)
        self.iocbp = (ctypes.c_void_p * 1)(ctypes.addressof(self.iocb))
        self.ev = ctypes.create_string_buffer(32)

    def start(self) -> int:
        if self.sc(209, self.ctx, 1, self.iocbp) != 1:
            raise OSError(ctypes.get_errno(), "io_submit")
        return 1

    def wait(self, t: int) -> int:
        if self.sc(208, self.ctx, 1, 1, self.ev, None) != 1:
            raise OSError(ctypes.get_errno(), "io_getevents")
        return -struct.unpack_from("<q", self.ev, 16)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--count", type=int, default=400)
    a = ap.parse_args()
    d = tempfile.mkdtemp(dir=a.dir)
    fd = os.open(os.path.join(d, "log"), os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, b"\0" * (1 << 20), 0)
    fd2 = os.open(os.path.join(d, "data"), os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd2, b"\0" * (8 << 20), 0)
    os.fsync(fd)
    os.fsync(fd2)
    page = b"y" * 4096
    spins = 1
    t = time.perf_counter()
    while time.perf_counter() - t < 0.01:
        spins *= 2
        t = time.perf_counter()
        sum(range(spins))
    spins = int(spins * 100e-6 / max(time.perf_counter() - t, 1e-9))

    def work(i: int, lmdb: bool) -> None:
        if lmdb:
            for k in range(10):
                os.pwrite(fd2, page, ((i * 37 + k * 101) % 2000) * 4096)
        sum(range(spins))

    flushers = [("inline", None), ("pythread", PyThread(fd)), ("aio", Aio(fd))]
    try:
        from mailaccess._speedups import logflush_c
    except ImportError:
        try:
            import logflush_c       # built from 2d4ff87's .pyx, on PYTHONPATH
        except ImportError:
            logflush_c = None
    if logflush_c is not None:
        flushers.append(("cthread", logflush_c.Flusher(fd)))
    for lmdb in (False, True):
        for gap in (0.0, 0.0005):
            row = []
            for name, f in flushers:
                tot, wk = [], []
                for i in range(a.count):
                    t0 = time.perf_counter()
                    os.pwrite(fd, b"x" * 200, (i * 4096) % (1 << 20))
                    ticket = f.start() if f else 0
                    work(i, lmdb)
                    t1 = time.perf_counter()
                    if f:
                        f.wait(ticket)
                    else:
                        os.fdatasync(fd)
                    tot.append(time.perf_counter() - t0)
                    wk.append(t1 - t0)
                    if gap:
                        time.sleep(gap)
                row.append(f"{name} {statistics.median(tot) * 1e6:4.0f} "
                           f"(work {statistics.median(wk) * 1e6:4.0f})")
            print(f"{'cpu+pwrites' if lmdb else 'cpu only':11s} gap {gap * 1e3:.1f} ms: "
                  + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
