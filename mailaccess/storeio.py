"""Trio side of the store: await a durable write, run a long read off-loop.

``await write(store, fn, *args)`` queues ``fn(tx, *args)`` on the writer
thread and returns its result once the commit that holds it is on disk.  The
write is not cancelled with the caller: once queued it lands (an ack may be
lost, the data is not half-written).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import trio

from .store import Store


async def write(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Any:
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: list = []

    def finished(result, error):
        box.append((result, error))
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass

    if kwargs:
        fn = functools.partial(fn, **kwargs)
    store.submit(fn, *args, done=finished)
    with trio.CancelScope(shield=True):
        await done.wait()
    result, error = box[0]
    if error is not None:
        raise error
    return result


async def read(store: Store, fn: Callable[..., Any], *args) -> Any:
    """Run ``fn(view, *args)`` over a fresh snapshot in a worker thread: for
    reads that may take more than a millisecond or two (search, big fetches)."""

    def run():
        with store.view() as v:
            return fn(v, *args)

    return await trio.to_thread.run_sync(run)
