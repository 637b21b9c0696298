"""A bounded pool for costly verifications: at most N at once, M waiting.

Each argon2 verification takes tens of megabytes and tens of milliseconds of
CPU; unbounded, a burst of logins multiplies both.  ``VerifyPool.run`` runs a
blocking function in a worker thread when one of ``threads`` slots is free,
waits for one while fewer than ``queue`` other callers wait, and otherwise
raises ``Unavailable`` at once, having spent nothing.  ``running``,
``waiting`` and ``peak`` are there for tests and metrics.
"""
from __future__ import annotations

from typing import Any, Callable

import trio


class Unavailable(Exception):
    """Every verification slot is busy and the wait queue is full."""


class VerifyPool:
    def __init__(self, threads: int, queue: int):
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self.threads = threads
        self.queue = queue
        self._slots = trio.CapacityLimiter(threads)
        # trio.to_thread's default limiter (40 threads, shared) must not add a
        # second queue behind ours: the pool's own slots are the bound
        self._threads = trio.CapacityLimiter(threads)
        self.running = 0
        self.waiting = 0
        self.peak = 0          # most verifications ever running at once
        self.refused = 0       # callers turned away with Unavailable

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            if self.waiting >= self.queue:
                self.refused += 1
                raise Unavailable("too many logins in progress") from None
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
        try:
            self.running += 1
            self.peak = max(self.peak, self.running)
            # not abandoned on cancel: the slot stays taken while the thread
            # runs, so the bound holds even for clients that hang up
            return await trio.to_thread.run_sync(fn, *args, limiter=self._threads)
        finally:
            self.running -= 1
            self._slots.release()

