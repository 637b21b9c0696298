"""Writes announced before they are queued, so that the writer can wait for them.

When the IMAP server sends "+" for an APPEND's literal, it knows that a
write is coming: the client uploads the message, the server indexes it and
queues the write, about a millisecond later over loopback.  With several
clients appending at once, the writer often has one request in hand while
another session of the same process is in exactly that phase.  Committing
the first alone costs a whole commit: the redo log's flush, LMDB's commit
and, with several worker processes, a turn of LMDB's writer lock, which is
held through the flush.  Measured with 4 imaplib clients on 2 workers, a
commit of two APPENDs held the lock as long as a commit of one (about 2 ms
each on the loaded disk), and 40% of the commits carried one APPEND.  So the
writer waits, at most ``WAIT`` seconds and only while an announced write is
still fresh, for the writes it was told about; they then share one commit
(each still in its own nested transaction, as any batch).

The loop asks the same register (perf7-append): an APPEND whose write is
ready waits there for the announced ones and writes them all in one batch
itself (storeio.write_gathered).  A session is also announced from an
APPEND's OK until its next command other than an APPEND: a client that
appends usually appends again.

``Coming`` is the register: the loop announces (``expect``) and withdraws
(``arrived``, just before it queues the write, or when the command fails
first); the writer thread asks ``pending``.  An announcement older than
``FRESH`` is forgotten (a client that stalls in the middle of its upload,
or a session that went away), so a stale one costs at most one wait per
batch for ``FRESH`` seconds.  No lock: each call is one dict operation
under the GIL, and ``pending`` iterates over a copy.
"""
from __future__ import annotations

import time

WAIT = 0.002     # the most the writer holds a batch back for announced writes
FRESH = 0.010    # an announcement older than this is forgotten


class Coming:
    """Keys (one per session) of writes announced and not yet queued, with
    when each was announced (``time.monotonic``)."""

    __slots__ = ("_at",)

    def __init__(self):
        self._at: dict = {}

    def expect(self, key, now: float | None = None) -> None:
        """A write from KEY is coming (a later announcement replaces an earlier one)."""
        self._at[key] = time.monotonic() if now is None else now

    def arrived(self, key) -> None:
        """KEY's write is being queued now, or will not come."""
        self._at.pop(key, None)

    def pending(self, now: float | None = None) -> bool:
        """Whether a fresh announcement waits; the stale ones are dropped."""
        if not self._at:
            return False
        if now is None:
            now = time.monotonic()
        fresh = False
        for key, at in list(self._at.items()):
            if now - at < FRESH:
                fresh = True
            else:
                self._at.pop(key, None)
        return fresh

    def __len__(self) -> int:
        return len(self._at)
