"""Calls from other threads onto the Trio loop, one wake-up per burst.

What this module owns: the hop from the store's writer thread to the event
loop.  After a commit the writer acknowledges each write of the batch
(storeio) and publishes the commit's notification (bus).  Each
``TrioToken.run_sync_soon`` writes the loop's wake-up socket (a system call,
and a GIL hand-off to the loop in the middle of the writer's work); a
``Hop`` queues the calls and wakes the loop once for every call queued
before the loop gets to them; the writer holds its calls until the end of
a commit's completions (``batched``), so a commit costs one wake-up however
many writes it acknowledges.  Calls run on the loop in the order they were
queued.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import trio


class Hop:
    """The calls waiting for one Trio run's loop."""

    __slots__ = ("_token", "_pending", "_lock", "_armed")

    def __init__(self, token: trio.lowlevel.TrioToken):
        self._token = token
        self._pending: list[tuple[Callable[..., Any], tuple]] = []
        self._lock = threading.Lock()
        self._armed = False          # a wake-up is on its way: later calls ride with it

    def call(self, fn: Callable[..., Any], *args) -> None:
        """Run ``fn(*args)`` on the loop soon (from any thread).  Dropped if
        the run has finished.  Inside ``batched()`` it waits for the end of
        the block."""
        held = getattr(_held, "calls", None)
        if held is not None:
            held.setdefault(self, []).append((fn, args))
            return
        self._call_many([(fn, args)])

    def _call_many(self, calls: list) -> None:
        with self._lock:
            self._pending.extend(calls)
            if self._armed:
                return
            self._armed = True
        try:
            self._token.run_sync_soon(self._run)
        except trio.RunFinishedError:
            with self._lock:
                self._pending.clear()
                self._armed = False

    def _run(self) -> None:
        with self._lock:
            calls = self._pending
            self._pending = []
            self._armed = False
        for fn, args in calls:
            fn(*args)


_held = threading.local()


class batched:
    """Hold every ``Hop.call`` this thread makes inside the block and wake
    each loop once at its end.  The writer wraps a commit's
    acknowledgements and notification in it: waking the loop hands it the
    GIL in the middle of the writer's work, and the loop, idle until then,
    would drain the first call before the writer queues the next.  (A plain
    class, not a generator context manager: it runs once per commit.)"""

    __slots__ = ("_calls",)

    def __enter__(self) -> None:
        if getattr(_held, "calls", None) is not None:
            self._calls = None          # nested: the outer block wakes
            return
        _held.calls = self._calls = {}

    def __exit__(self, *exc) -> None:
        calls = self._calls
        if calls is None:
            return
        _held.calls = None
        for hop, items in calls.items():
            hop._call_many(items)


class here:
    """On the loop's own thread: run every ``Hop.call`` made inside the
    block at its end, right there, in order, instead of waking the loop
    (storeio.write_now: a write the loop ran itself; its commit's
    notification need not wait for a wake-up of the loop it is on)."""

    __slots__ = ("_calls", "_prev")

    def __enter__(self) -> None:
        self._prev = getattr(_held, "calls", None)
        _held.calls = self._calls = {}

    def __exit__(self, *exc) -> None:
        _held.calls = self._prev
        for items in self._calls.values():
            for fn, args in items:
                fn(*args)


_HOP: trio.lowlevel.RunVar = trio.lowlevel.RunVar("mailaccess_loophop")


def current() -> Hop:
    """The running loop's Hop (call on the loop)."""
    try:
        return _HOP.get()
    except LookupError:
        hop = Hop(trio.lowlevel.current_trio_token())
        _HOP.set(hop)
        return hop
