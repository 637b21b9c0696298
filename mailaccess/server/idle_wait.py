"""One wait for "the client wrote" or "there is news", without a task or a
cancel scope per waiter (IMAP IDLE on the plain socket).

An IDLE session waits for two things at once: its client's next line (DONE)
and a change to its selected mailbox.  With Trio that takes either a second
task per session (a watcher, its nursery and cancel scopes: memory), or a
wait for the socket that the bus interrupts by cancelling it (trio's
cancellation and the epoll re-registration cost ~100 us per wake-up: a
delivery to 1,000 idling sessions went from ~140 to ~220 ms).  ``IdleWaits``
does it with Trio's low-level parking: the waiting task parks
(``wait_task_rescheduled``), its socket is registered in an epoll set of
our own (one per service, watched by one task), and whichever comes first
reschedules it: the socket turning readable (-> True) or ``wake`` (-> False,
called by the bus subscription's waker).  Cancellation (the connection's
deadline, the server stopping) unregisters and raises as any Trio wait.

Linux only (``select.epoll``); ``available()`` says whether it can be used.
"""
from __future__ import annotations

import functools
import select

import trio
from outcome import Value

_IN = getattr(select, "EPOLLIN", 0) | getattr(select, "EPOLLRDHUP", 0)


def available() -> bool:
    return hasattr(select, "epoll")


class IdleWaits:
    """The parked waiters of one service: fd -> task, and the epoll set."""

    def __init__(self, nursery: trio.Nursery):
        self._nursery = nursery
        self._ep: select.epoll | None = None
        self._waiters: dict[int, trio.lowlevel.Task] = {}

    async def wait(self, fd: int) -> bool:
        """Park until FD is readable (True) or ``wake(FD)`` (False).  One
        waiter per fd at a time."""
        if self._ep is None:
            self._ep = select.epoll()
            self._nursery.start_soon(self._run)
        if fd in self._waiters:
            raise trio.BusyResourceError("another task is waiting on this socket")
        self._ep.register(fd, _IN)
        self._waiters[fd] = trio.lowlevel.current_task()
        # (a partial, not a closure: held by every parked waiter)
        return await trio.lowlevel.wait_task_rescheduled(functools.partial(self._abort, fd))

    def _abort(self, fd: int, _raise_cancel) -> trio.lowlevel.Abort:
        """Cancelled while parked: no longer a waiter."""
        self._drop(fd)
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self, fd: int) -> None:
        """End FD's wait (with False); nothing if none is under way."""
        task = self._drop(fd)
        if task is not None:
            trio.lowlevel.reschedule(task, Value(False))

    def _drop(self, fd: int):
        task = self._waiters.pop(fd, None)
        ep = self._ep
        if task is not None and ep is not None:
            try:
                ep.unregister(fd)
            except (OSError, ValueError):   # (closed meanwhile: already gone)
                pass
        return task

    async def _run(self) -> None:
        ep = self._ep
        try:
            while True:
                await trio.lowlevel.wait_readable(ep)
                for fd, _events in ep.poll(0):
                    task = self._drop(fd)
                    if task is not None:
                        trio.lowlevel.reschedule(task, Value(True))
        finally:
            ep.close()
            self._ep = None
