"""In-process event bus: "account A's state moved to modseq N".

The store's writer thread calls ``Bus.on_commit`` after every durable commit;
the bus hops onto the Trio loop and wakes every subscriber of the accounts
that changed.  Notifications carry the change records of the commit, but a
subscriber may treat them as a hint and re-read the store: coalescing or
dropping duplicates is always safe.  IMAP IDLE, JMAP push and ActiveSync
Ping all wait here; nothing polls.
"""
from __future__ import annotations

import logging
from collections import defaultdict

import trio

from .store.lmdb_store import CommitInfo
from .store.records import Change

log = logging.getLogger("mailaccess.bus")


class Subscription:
    """One waiter's view of one account's changes (coalesced)."""

    def __init__(self, bus: "Bus", account: int):
        self._bus = bus
        self.account = account
        self._pending: list[Change] = []
        self._event = trio.Event()

    def _push(self, change: Change) -> None:
        self._pending.append(change)
        self._event.set()

    def pending(self) -> list[Change]:
        """Take what arrived so far without waiting."""
        out, self._pending = self._pending, []
        self._event = trio.Event()
        return out

    async def wait(self) -> list[Change]:
        """Wait for at least one change and take everything pending."""
        await self._event.wait()
        return self.pending()

    def close(self) -> None:
        self._bus._subs[self.account].discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Bus:
    def __init__(self):
        self._subs: dict[int, set[Subscription]] = defaultdict(set)
        self._token: trio.lowlevel.TrioToken | None = None

    def attach(self) -> None:
        """Bind to the running Trio loop (call from inside it)."""
        self._token = trio.lowlevel.current_trio_token()

    def subscribe(self, account: int) -> Subscription:
        sub = Subscription(self, account)
        self._subs[account].add(sub)
        return sub

    # writer thread -> Trio loop
    def on_commit(self, info: CommitInfo) -> None:
        if self._token is None or not info.changes:
            return
        try:
            self._token.run_sync_soon(self._deliver, info.changes)
        except trio.RunFinishedError:
            pass

    def _deliver(self, changes: list[tuple[int, Change]]) -> None:
        for acc, change in changes:
            for sub in list(self._subs.get(acc, ())):
                sub._push(change)
