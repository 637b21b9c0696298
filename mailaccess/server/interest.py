"""Which worker wants which commit notifications (sans-IO).

What this module owns: the bookkeeping behind the worker channel's
filtered fan-out (server/workers.py).  A worker sends another worker a
commit's notification only if that worker wants it: it has a waiter on the
account (IMAP IDLE or NOTIFY, JMAP EventSource/WebSocket, a push
subscription's delivery, ActiveSync Ping: a bus subscription), or a
listener that hears the commit's kinds for every account (the outbound
queue: kind ``Outbound``).  Before this, every commit was copied to every
other worker, whose supervisor and link task paid for it whether anyone
there listened or not.

* ``Wants`` is this worker's own side: which accounts and kinds it has told
  the others it wants.  An account stays wanted for ``linger`` seconds
  after its last waiter left (an IMAP client goes in and out of IDLE
  between commands; an ActiveSync Ping is re-issued), so a busy account
  costs no announcement per wait.
* ``Fanout`` is the other workers' side, as this worker knows it, and what
  this worker committed.  A worker whose wants are not known yet (it has
  not answered since this one started) wants everything.
* **No wake-up is lost.**  Between a waiter's read of the store and the
  moment another worker learns that the account is wanted, that worker
  may commit and send nothing.  So every worker keeps, per account it
  committed to, the latest modseq of each kind (what the bus keeps too:
  O(accounts)), and when it learns a new want it sends a catch-up, a
  notification per distinct modseq with "all mailboxes": the waiter is
  woken if any of those is newer than what it saw (at worst once for a
  change it had already read, which every waiter takes as harmless: bus.py).
  The commit hook records before it looks at the wants, the want is
  recorded before the catch-up is read, both under one lock: either the
  commit is sent, or the catch-up includes it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable

from ..bus import Notification


@dataclass(slots=True)
class Peer:
    """What one other worker wants: ACCOUNTS (any kind), and KINDS for
    every account (None: everything)."""

    accounts: set[int] = field(default_factory=set)
    kinds: frozenset[str] | None = frozenset()

    def wants(self, account: int, kinds: Iterable[str]) -> bool:
        return (self.kinds is None or account in self.accounts
                or not self.kinds.isdisjoint(kinds))


class Fanout:
    """The other workers' wants, and the latest modseq per kind of each
    account this worker committed to.  ``committed`` runs on the store's
    writer thread (or the loop), the rest on the loop: one lock."""

    def __init__(self, me: int, count: int):
        # None: not known yet (wants everything)
        self.peers: dict[int, Peer | None] = {i: None for i in range(count) if i != me}
        self.latest: dict[int, dict[str, int]] = {}
        self._lock = threading.Lock()

    def committed(self, changes) -> list:
        """Record a commit's ``(account, Change)`` list; -> those some other
        worker wants."""
        out = []
        with self._lock:
            peers = self.peers.values()
            for acc, c in changes:
                kinds = c.collections()
                rec = self.latest.get(acc)
                if rec is None:
                    rec = self.latest[acc] = {}
                ms = c.modseq
                for k in kinds:
                    if rec.get(k, 0) < ms:
                        rec[k] = ms
                for p in peers:
                    if p is None or p.wants(acc, kinds):
                        out.append((acc, c))
                        break
        return out

    # --- what another worker said it wants (-> the catch-up to send) ----------------------

    def peer_state(self, index: int, accounts: Iterable[int],
                   kinds: frozenset[str] | None) -> list[Notification]:
        """Worker INDEX wants exactly ACCOUNTS and KINDS (it started, or
        answered this worker's question)."""
        with self._lock:
            if index not in self.peers:
                return []
            old = self.peers[index]
            new = Peer(set(accounts), kinds)
            self.peers[index] = new
            if old is None:               # everything was sent to it until now
                return []
            return self._catch_up(new.accounts - old.accounts, old.kinds, kinds)

    def peer_add(self, index: int, accounts: Iterable[int]) -> list[Notification]:
        with self._lock:
            p = self.peers.get(index)
            if p is None:
                return []
            gained = set(accounts) - p.accounts
            p.accounts |= gained
            return self._catch_up(gained, p.kinds, p.kinds)

    def peer_drop(self, index: int, accounts: Iterable[int]) -> None:
        with self._lock:
            p = self.peers.get(index)
            if p is not None:
                p.accounts.difference_update(accounts)

    def peer_kinds(self, index: int, kinds: frozenset[str] | None) -> list[Notification]:
        with self._lock:
            p = self.peers.get(index)
            if p is None:
                return []
            old, p.kinds = p.kinds, kinds
            return self._catch_up((), old, kinds)

    def _catch_up(self, accounts, old_kinds, new_kinds) -> list[Notification]:
        """Notifications for what a peer newly wants: every kind of ACCOUNTS,
        and NEW_KINDS but not OLD_KINDS of every account (None: every kind)."""
        wanted: dict[int, frozenset[str] | None] = {}      # None: every kind
        if old_kinds is not None and new_kinds != old_kinds:
            extra = None if new_kinds is None else new_kinds - old_kinds
            if extra is None or extra:
                for acc in self.latest:
                    wanted[acc] = extra
        for acc in accounts:
            wanted[acc] = None
        out = []
        for acc, only in wanted.items():
            by_ms: dict[int, set[str]] = {}
            for k, ms in self.latest.get(acc, {}).items():
                if only is None or k in only:
                    by_ms.setdefault(ms, set()).add(k)
            for ms in sorted(by_ms):
                out.append(Notification(acc, ms, frozenset(by_ms[ms]), None))
        return out


class Wants:
    """What this worker told the others it wants (on the loop only).  Each
    method says what to announce now, if anything."""

    def __init__(self, linger: float):
        self.linger = linger
        self.accounts: set[int] = set()         # announced
        self.idle: dict[int, float] = {}        # announced, no waiter since (monotonic)
        self.kinds: frozenset[str] | None = frozenset()

    def account(self, account: int, on: bool, now: float) -> bool:
        """ACCOUNT got its first waiter (ON) or lost its last; -> whether to
        announce it as wanted."""
        if on:
            if self.idle.pop(account, None) is not None or account in self.accounts:
                return False
            self.accounts.add(account)
            return True
        if account in self.accounts:
            self.idle[account] = now
        return False

    def listened(self, kinds: frozenset[str] | None) -> bool:
        """The listeners now hear KINDS; -> whether to announce it."""
        if kinds == self.kinds:
            return False
        self.kinds = kinds
        return True

    def expire(self, now: float) -> list[int]:
        """-> the accounts with no waiter for ``linger`` seconds, no longer
        wanted (announce it)."""
        gone = [a for a, t in self.idle.items() if now - t >= self.linger]
        for a in gone:
            del self.idle[a]
            self.accounts.discard(a)
        return gone
