"""A flush of the redo log begun early and waited for later, pure-Python twin.

What this module owns: ``Flusher(fd)``, the means to ask for an fdatasync
of FD at one point (``start() -> ticket``, right after a commit's redo
record is written) and to wait for it at another (``wait(ticket) -> 0`` or
an errno), so that the thread in between can do other work (LMDB's commit,
formatting the answer) while the disk writes: ``mailaccess.store.lmdb_store``
(perf7-overlap, docs/durability.md).

The contract, the same for both twins:

* ``wait(t)`` returns once an fdatasync of FD that *began after* ``start()``
  returned T has completed: everything written to FD before that call is
  durable;
* a failed fdatasync makes ``wait`` return its errno, for that ticket and
  every later one (fdatasync reports a lost page once: nothing written since
  can be trusted, and the store takes no more writes);
* tickets are increasing; a wait for a ticket a later flush already covered
  does not flush again.

This twin starts nothing in ``start``: ``wait`` runs the fdatasync itself
(so without the compiled module nothing overlaps: the flush runs where the
store used to run it, after the commit).  The compiled twin (``logflush_c``)
hands the flush to a POSIX thread that never takes the GIL, so the flush
runs while the caller runs Python.  A Python thread could not do that: it
needs the GIL to start the fdatasync and again to report it done, which it
gets only when the caller blocks (or after the 5 ms switch interval), so it
would add a thread hand-off instead of overlapping (measured in
docs/durability.md, perf7-overlap).
"""
from __future__ import annotations

import errno
import os
import threading


class Flusher:
    """Flushes of one file descriptor (see the module docstring)."""

    def __init__(self, fd: int):
        self.fd = fd
        self._lock = threading.Lock()
        self._asked = 0          # the last ticket handed out
        self._done = 0           # every ticket up to this one is covered
        self._err = 0            # sticky: the errno of the first failed flush

    def start(self) -> int:
        with self._lock:
            self._asked += 1
            return self._asked

    def wait(self, ticket: int) -> int:
        with self._lock:
            if self._done < ticket and not self._err:
                upto = self._asked          # asked for before this flush begins
                try:
                    os.fdatasync(self.fd)
                except OSError as exc:
                    self._err = exc.errno or errno.EIO
                self._done = upto
            return self._err

    def close(self) -> None:
        """Stop (waits for a flush under way; idempotent)."""
