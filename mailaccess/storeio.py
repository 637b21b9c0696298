"""Trio side of the store: await a durable write, run long work off-loop.

``await write(store, fn, *args)`` queues ``fn(tx, *args)`` on the writer
thread and returns its result once the commit that holds it is on disk.
``write_early`` returns the result as soon as the writer's transaction holds
it, with a ``Pending`` to await the durable commit: the caller formats its
answer while the redo log is flushed (a one-message STORE's FETCH line).  The
write is not cancelled with the caller: once queued it lands (an ack may be
lost, the data is not half-written).

``await read(store, fn, *args)`` (search, sort, thread) and ``await
cpu(fn, *args)`` (indexing a delivered or appended message) run in worker
threads, at most CPU_THREADS at once for the whole server: the event loop
keeps answering every other session meanwhile, and a crowd of expensive
commands queues for the pool instead of starving the loop of the GIL.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import trio

from . import loophop
from .store import Store


async def write(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Any:
    hop = loophop.current()
    task = trio.lowlevel.current_task()
    box: list = []

    def finished(result, error):        # the writer thread, after the commit
        hop.call(_wake, task, box, result, error)

    if kwargs:
        fn = functools.partial(fn, **kwargs)
    if store.around_completions is None:
        store.around_completions = loophop.batched
    store.submit(fn, *args, done=finished)
    # not cancellable: once queued the write lands, and the caller learns
    # how it went (an abort that always fails is a shield, without the scope)
    await trio.lowlevel.wait_task_rescheduled(_no_abort)
    result, error = box[0]
    if error is not None:
        raise error
    return result


def _wake(task, box: list, result, error) -> None:
    box.append((result, error))
    trio.lowlevel.reschedule(task)


class Pending:
    """A write whose result is known and whose commit is not yet durable
    (``write_early``).  ``await durable()`` -> the result the commit made
    durable (the same object, unless the writer had to run the batch
    again), or raises the write's error."""

    __slots__ = ("_task", "_waiting", "early", "final")

    def __init__(self, task):
        self._task = task
        self._waiting = True         # the task sleeps until early or final
        self.early: Any = _NOTHING
        self.final: tuple | None = None

    def _ready(self, result) -> None:           # on the loop
        if self.final is None:
            self.early = result
            self._wake()

    def _done(self, result, error) -> None:     # on the loop
        self.final = (result, error)
        self._wake()

    def _wake(self) -> None:
        if self._waiting:
            self._waiting = False
            trio.lowlevel.reschedule(self._task)

    async def durable(self) -> Any:
        if self.final is None:
            self._waiting = True
            await trio.lowlevel.wait_task_rescheduled(_no_abort)
        result, error = self.final
        if error is not None:
            raise error
        return result


_NOTHING = object()


async def write_early(store: Store, fn: Callable[..., Any], *args,
                      **kwargs) -> tuple[Any, Pending]:
    """``write`` in two steps: -> (the result, as soon as the writer's
    transaction holds it; a Pending to ``await .durable()``).  The caller
    prepares its answer from the result while the commit is flushed, and
    sends nothing of it before ``durable()`` returns: an answer sent
    earlier could show a change that a crash would take back.  The result
    may come only with the durable commit (a batch whose flush was quick);
    then ``durable()`` returns at once."""
    hop = loophop.current()
    p = Pending(trio.lowlevel.current_task())
    call = hop.call

    def ready(result):                  # the writer thread, before the flush
        call(p._ready, result)

    def finished(result, error):        # the writer thread, after the commit
        call(p._done, result, error)

    if kwargs:
        fn = functools.partial(fn, **kwargs)
    if store.around_completions is None:
        store.around_completions = loophop.batched
    store.submit(fn, *args, done=finished, ready=ready)
    await trio.lowlevel.wait_task_rescheduled(_no_abort)
    if p.final is not None:
        result, error = p.final
        if error is not None:
            raise error
        return result, p
    return p.early, p


def _no_abort(_raise_cancel):
    return trio.lowlevel.Abort.FAILED


# worker threads for CPU-bound work, shared by every session of one server
# (one limiter per Trio run); more would only contend for the GIL
CPU_THREADS = 4
# messages at least this big are indexed off the event loop (APPEND, LMTP)
OFFLOOP_BYTES = 64 * 1024
_cpu_limiter: trio.lowlevel.RunVar = trio.lowlevel.RunVar("mailaccess_cpu_limiter")


def cpu_limiter() -> trio.CapacityLimiter:
    """The server's pool of CPU_THREADS worker threads (created on first use)."""
    try:
        return _cpu_limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(CPU_THREADS)
        _cpu_limiter.set(limiter)
        return limiter


async def cpu(fn: Callable[..., Any], *args) -> Any:
    """``fn(*args)`` in the bounded worker pool."""
    return await trio.to_thread.run_sync(fn, *args, limiter=cpu_limiter())


async def read(store: Store, fn: Callable[..., Any], *args) -> Any:
    """Run ``fn(view, *args)`` over a fresh snapshot in the bounded worker
    pool: for reads that may take more than a millisecond or two (search,
    sort, thread)."""

    def run():
        with store.view() as v:
            return fn(v, *args)

    return await cpu(run)
