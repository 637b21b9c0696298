"""The client-silence limit of IMAP connections, without a deadline per read.

What this module owns: ending a connection whose client stayed silent for
``[imap] idle_timeout`` seconds while the server waited for its next
command (RFC 9051 5.4: at least 30 minutes).  A command itself takes the
time it takes: only waiting for the client counts.

With a Trio deadline, the reader moved its cancel scope's deadline to "now
+ limit" before each read and back to infinity after it: two deadline
changes per command, each a generator context manager and a heap push in
Trio (about 4% of the server's CPU on one-message STOREs).  Here a
connection about to wait is noted with the time (``begin``: one dict
store) and struck off when its bytes came (``end``); one task per service
(``_watch``) looks every limit/16 seconds and ends the connections that
have waited for the limit, by cancelling their scope (the reader then says
BYE, as at a deadline).  A connection so ends between limit and limit *
17/16 seconds after it began to wait.  The IDLE command's own wait on the
plain socket keeps its deadline (imap.py: IDLE is not per command).
"""
from __future__ import annotations

from typing import Any

import trio

#: looks per limit: a silent connection ends at most limit / STEPS late
STEPS = 16


class SilenceWatch:
    """The waiting connections of one IMAP service and the task that ends
    the silent ones (started with the first wait)."""

    __slots__ = ("limit", "since", "_nursery", "_running")

    def __init__(self, nursery: trio.Nursery, limit: float):
        self.limit = limit
        #: connection -> trio.current_time() when it began to wait
        self.since: dict[Any, float] = {}
        self._nursery = nursery
        self._running = False

    def begin(self, conn) -> None:
        """CONN waits for its client's bytes from now on."""
        self.since[conn] = trio.current_time()
        if not self._running:
            self._running = True
            self._nursery.start_soon(self._watch)

    def end(self, conn) -> None:
        """CONN's client spoke (or the connection is over)."""
        self.since.pop(conn, None)

    async def _watch(self) -> None:
        since = self.since
        period = max(self.limit / STEPS, 0.001)
        while True:
            await trio.sleep(period)
            if not since:
                continue
            cutoff = trio.current_time() - self.limit
            for conn in [c for c, t in since.items() if t <= cutoff]:
                del since[conn]
                conn.silence_over()
