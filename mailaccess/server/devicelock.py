"""A lock held across the worker processes of one server (server/workers.py).

What this module owns: ``SharedLock``, a drop-in for the ``trio.Lock`` an
ActiveSync device's requests take (server/eas.py: one request at a time per
(account, device), since each reads then writes the device's state).  With
several workers two requests of one device can land on two processes; the
lock then has to hold across them.

How: a ``trio.Lock`` orders the tasks of this process, then ``flock`` on a
file named by a hash of (account, device) under ``DATA/run/locks`` orders the
processes.  ``flock`` belongs to the open file, so every acquisition opens
its own descriptor and closing it releases the lock, also when a worker is
killed (the kernel closes its files).  Waiting for another process runs in
a thread (``flock`` blocks) and is cancellable: a cancelled wait gives the
lock back as soon as the thread gets it.  The files stay (one per device
seen; deleting a lock file while another process waits on it would split
the lock in two).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import threading

import trio

#: threads waiting for another process's lock at once (more wait their turn)
_WAITERS = trio.CapacityLimiter(64)


def lock_path(data_dir: str, account: int, device: str) -> str:
    h = hashlib.blake2b(f"{account}\0{device}".encode(), digest_size=16).hexdigest()
    return os.path.join(data_dir, "run", "locks", h[:2], h + ".lock")


async def _flock(path: str) -> int:
    """Open PATH and take its exclusive flock -> the descriptor (close it to release)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    guard = threading.Lock()
    state = {"acquired": False, "abandoned": False, "closed": False}

    def wait() -> int:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            with guard:
                state["closed"] = True
                os.close(fd)
            raise
        with guard:
            if state["abandoned"]:
                state["closed"] = True
                os.close(fd)
            else:
                state["acquired"] = True
        return fd

    try:
        return await trio.to_thread.run_sync(wait, abandon_on_cancel=True, limiter=_WAITERS)
    except BaseException:
        with guard:
            if state["acquired"]:
                os.close(fd)                # got it after all: give it back
            elif not state["closed"]:
                state["abandoned"] = True   # the thread closes it when it gets it
        raise


class SharedLock:
    """``trio.Lock``'s acquire/release/``async with``, exclusive across processes."""

    def __init__(self, path: str):
        self.path = path
        self._local = trio.Lock()
        self._fd: int | None = None

    async def acquire(self) -> None:
        await self._local.acquire()
        try:
            self._fd = await _flock(self.path)
        except BaseException:
            self._local.release()
            raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)
        finally:
            self._local.release()

    def locked(self) -> bool:
        return self._local.locked()

    async def __aenter__(self) -> "SharedLock":
        await self.acquire()
        return self

    async def __aexit__(self, *exc) -> None:
        self.release()
