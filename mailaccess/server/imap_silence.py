"""The client-silence limit of IMAP connections, without a deadline per read.

What this module owns: ending a connection whose client stayed silent for
``[imap] idle_timeout`` seconds while the server waited for its next
command (RFC 9051 5.4: at least 30 minutes).  A command itself takes the
time it takes: only waiting for the client counts.

With a Trio deadline, the reader moved its cancel scope's deadline to "now
+ limit" before each read and back to infinity after it: two deadline
changes per command, each a generator context manager and a heap push in
Trio (about 4% of the server's CPU on one-message STOREs).  Here a
connection about to wait is noted with the watch's round (``begin``: one
dict store, no clock read) and struck off when its bytes came (``end``);
one task per service (``_watch``) starts a round every limit/16 seconds
and ends the connections noted more than 16 rounds ago, by cancelling
their scope (the reader then says BYE, as at a deadline).  A connection so
ends between limit and limit * 17/16 seconds after it began to wait.  The
IDLE command's own wait on the plain socket keeps its deadline (imap.py:
IDLE is not per command).
"""
from __future__ import annotations

from typing import Any

import trio

#: rounds per limit: a silent connection ends at most limit / STEPS late
STEPS = 16


class SilenceWatch:
    """The waiting connections of one IMAP service and the task that ends
    the silent ones (started with the first wait)."""

    __slots__ = ("limit", "since", "round", "_nursery", "_running")

    def __init__(self, nursery: trio.Nursery, limit: float):
        self.limit = limit
        #: connection -> the round in which it began to wait
        self.since: dict[Any, int] = {}
        self.round = 0
        self._nursery = nursery
        self._running = False

    def begin(self, conn) -> None:
        """CONN waits for its client's bytes from now on."""
        self.since[conn] = self.round
        if not self._running:
            self._running = True
            self._nursery.start_soon(self._watch)

    def end(self, conn) -> None:
        """CONN's client spoke (or the connection is over)."""
        self.since.pop(conn, None)

    async def _watch(self) -> None:
        # a connection noted in round r began to wait after round r started:
        # once round r + STEPS + 1 starts it has waited STEPS periods (the
        # limit) at least, and at most one period more
        since = self.since
        period = max(self.limit / STEPS, 0.001)
        while True:
            await trio.sleep(period)
            self.round += 1
            if not since:
                continue
            cutoff = self.round - STEPS - 1
            for conn in [c for c, r in since.items() if r <= cutoff]:
                del since[conn]
                conn.silence_over()
