"""Process memory settings of `mailaccess serve`: the C allocator and the
garbage collector around fork.

What this module owns (docs/architecture.md, "Memory"):

* ``tune_malloc()``: glibc's allocator, set once at the start of the server,
  before any thread.  glibc gives every thread that allocates its own arena
  (up to 8 per core), and raises its mmap threshold to the size of each big
  block freed (up to 32 MiB): one argon2id verification at m=19 MiB in a
  login thread then leaves a 19 MiB arena resident in that thread for good,
  one per verification thread.  A fixed threshold (``MMAP_THRESHOLD``) sends
  every block from that size on to mmap and back to the kernel on free, and
  ``ARENA_MAX`` arenas bound what the threads keep (Python's own small
  objects come from pymalloc, under the GIL, whatever the thread).  An
  operator's ``MALLOC_ARENA_MAX``/``MALLOC_MMAP_THRESHOLD_`` environment
  variables win: glibc read them at start, and they are left alone.
* ``trim_periodically()``: a running server returns the allocator's free
  pages to the kernel every ``TRIM_INTERVAL`` seconds (``malloc_trim``):
  glibc gives back only the top of its heap by itself, and what a burst of
  commands freed below longer-lived objects stays resident otherwise.
* Sharing with the workers (Python's advice for gc.freeze): the supervisor
  turns its garbage collector off before it imports and builds what the
  workers inherit (``hold_collector``), so no collection leaves freed holes
  in those pages for a worker to fill (a write that copies the page); just
  before each fork it freezes every tracked object (``freeze``: the
  permanent generation, never walked by a collection); each worker turns
  its collector back on (``release_collector``).  A collection writes into
  the header of every object it walks: without the freeze a worker's first
  full collection would copy every page of the modules the supervisor
  shares with it.  What the workers still copy are the pages whose objects
  they use (Python 3.11 writes reference counts into the object itself).
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os

log = logging.getLogger("mailaccess.memory")

#: malloc arenas per process (glibc's default: 8 x cores)
ARENA_MAX = 2
#: blocks from this size on are mmapped and unmapped on free (glibc: 128 KiB,
#: raised to the size of each mmapped block freed, up to 32 MiB)
MMAP_THRESHOLD = 1024 * 1024
#: seconds between two trims of the allocator in a running server (0: never);
#: the environment's MAILACCESS_MALLOC_TRIM_INTERVAL wins
TRIM_INTERVAL = float(os.environ.get("MAILACCESS_MALLOC_TRIM_INTERVAL", "10"))

_M_MMAP_THRESHOLD = -3     # glibc malloc.h
_M_ARENA_MAX = -8

_tuned: dict[str, int] | None = None
_LIBC: list = []


def _libc():
    """The C library (None where it cannot be loaded)."""
    if not _LIBC:
        try:
            # the process's own symbols, the C library's among them (not
            # ctypes.util.find_library: it imports subprocess, tempfile,
            # shutil... about 1 MB the supervisor would keep)
            _LIBC.append(ctypes.CDLL(None))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def tune_malloc(arena_max: int = ARENA_MAX,
                mmap_threshold: int = MMAP_THRESHOLD) -> dict[str, int]:
    """Set glibc's arena limit and a fixed mmap threshold for this process
    (once; later calls return the first result).  -> the settings applied
    ({} on a C library without mallopt, or where the environment set them)."""
    global _tuned
    if _tuned is not None:
        return _tuned
    applied: dict[str, int] = {}
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        _tuned = applied
        return applied
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if "MALLOC_ARENA_MAX" not in os.environ and mallopt(_M_ARENA_MAX, arena_max) == 1:
        applied["arena_max"] = arena_max
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and \
            mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1:
        applied["mmap_threshold"] = mmap_threshold
    log.debug("malloc: %s", applied or "left at glibc's settings")
    _tuned = applied
    return applied


def hold_collector() -> None:
    """The supervisor, before it imports what its workers inherit: no
    automatic collection (gc.freeze() keeps what it would have freed)."""
    gc.disable()


def freeze() -> int:
    """Freeze every object the collector tracks and give the allocator's free
    pages back to the kernel (the supervisor, just before a fork: a worker
    would otherwise fill those free pages, copying each).  -> how many
    objects are frozen."""
    gc.freeze()
    trim()
    return gc.get_freeze_count()


def trim() -> bool:
    """glibc's malloc_trim(0): return every whole free page of every arena
    to the kernel.  -> whether it ran."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


async def trim_periodically(interval: float | None = None) -> None:
    """In a running server: give the allocator's free pages back to the
    kernel every INTERVAL seconds (TRIM_INTERVAL), until cancelled.  Python
    allocates every object above 512 bytes (a command's response, a
    message read, a batch's lists) with malloc; what a burst frees stays
    resident in the heap below the objects that outlive it, and glibc
    only gives back the top of the heap by itself.  One trim of a worker's
    heap costs about a millisecond of the loop (its free chunks are walked
    and each whole free page is returned with MADV_DONTNEED); after the
    50-client run it gave back 4 MB of a worker's 58 MB."""
    import trio

    interval = TRIM_INTERVAL if interval is None else interval
    libc = _libc()
    if interval <= 0 or libc is None or not hasattr(libc, "malloc_trim"):
        return
    while True:
        await trio.sleep(interval)
        trim()


def release_collector() -> None:
    """A worker, after the fork: collect its own objects again (the frozen
    ones are never walked)."""
    gc.enable()
