"""In-process event bus: "account A reached modseq N (these kinds, these mailboxes)".

What this module owns: waking the tasks that wait for an account's state to
move (IMAP IDLE today; JMAP EventSource/WebSocket push and ActiveSync Ping
next).  It never holds changes themselves; the change log in the store does.
A waiter is told *that* something it cares about moved and re-reads the store.

Memory is bounded by design:

* The bus remembers, per account, only the latest modseq it was told and the
  latest modseq per kind (a handful of ints): O(accounts).
* A waiter (``Subscription``) holds at most one pending ``Notification``:
  later ones are merged into it (max modseq, union of kinds, union of
  mailboxes; past ``MAX_MAILBOXES`` the set becomes "all mailboxes").
* Nothing is kept for a task that is not waiting: subscribe only while you
  wait (``with bus.subscribe(...)`` or ``await bus.wait(...)``), and keep your
  own last seen modseq in between.  Subscribing with that ``since`` wakes at
  once if the account moved past it in the meantime, so no wake-up is lost
  between a read and the start of the next wait.

How a protocol waits (every wait is cancellable; a Trio cancel scope or
deadline ends it and leaves nothing behind)::

    # ActiveSync Ping: one wait with a deadline, only some kinds/folders
    seen = bus.latest(acc)              # before reading the store
    ... read the store, compute the answer so far ...
    with trio.move_on_after(heartbeat):
        n = await bus.wait(acc, since=seen, kinds={"Email"}, mailboxes=folders)
        ...                             # n.modseq, n.kinds, n.touches(mbx)

    # JMAP EventSource / WebSocket push: a stream of coalesced wake-ups
    with bus.subscribe(acc, kinds={"Email", "Mailbox", "Thread"}, since=seen) as sub:
        while True:
            with trio.move_on_after(ping_interval) as scope:
                n = await sub.wait()
            if scope.cancelled_caught:
                ... send a keep-alive ...
                continue
            ... read the store, send a StateChange (n.kinds says which types) ...

    # IMAP IDLE: wake on anything touching the selected mailbox
    with bus.subscribe(acc, mailboxes={selected}, since=seen) as sub:
        while True:
            await sub.wait()
            await session.refresh(allow_expunge=True)

``since`` must be a modseq the caller has already accounted for: either one
it read from the store, or ``bus.latest(acc)`` taken *before* it read.  The
bus knows only what happened since it started, so a caller with an older
state (e.g. from before a restart) compares with the store first.

Producers: the store's writer thread calls ``on_commit`` after each durable
commit; it builds one plain ``Notification`` per account and hops onto the
Trio loop (``loophop``: the wake-up that carries the commit's
acknowledgements), where ``publish`` delivers it.  ``publish`` is
the public entry for any other source (e.g. notifications from other worker
processes: ``Notification`` is small, frozen and picklable); call it on the
loop's thread.

With several worker processes (server/workers.py) each has its own bus, fed
by its own commits and, about a millisecond later, by the other workers'.
So ``latest`` may trail the store briefly (a waiter is then woken once for
a change it already read: harmless), and another worker's modseq N may
arrive after this worker's N+1: ``latest`` and the per-kind latest only
move forward, a waiter at N+1 ignores the late N (LMDB serialises the
writers, so what it read at N+1 includes N), and a waiter behind N takes
N's kinds and mailboxes into its merge.  The bus never assumes modseqs
arrive in order or without gaps.

The other workers send a notification only where it is wanted: the bus
tells its watcher (``watch``: the worker link) when an account gets its
first waiter and loses its last, and which kinds its listeners hear for
every account.  So ``latest`` may also trail the store for an account
nobody here waits on (a reader must not take it for the store's modseq;
it is a safe lower bound), and a waiter's first notification from another
worker may be a catch-up for a change it had already read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import trio

from . import loophop

if TYPE_CHECKING:   # the bus needs only the Change attributes, not the store
    from .store.lmdb_store import CommitInfo

#: past this many distinct mailboxes a notification says "all mailboxes"
MAX_MAILBOXES = 32

#: the change-log collection whose ids are mailbox ids
MAILBOX_KIND = "Mailbox"


@dataclass(frozen=True, slots=True)
class Notification:
    """Account ACCOUNT reached modseq MODSEQ; KINDS (change-log collection
    names: "Email", "Mailbox", "Thread", ...) changed, in MAILBOXES.

    ``mailboxes`` is None when the set is unknown or too large: treat it as
    "any mailbox may have changed".  Plain data, picklable."""

    account: int
    modseq: int
    kinds: frozenset[str] = frozenset()
    mailboxes: frozenset[int] | None = frozenset()

    @property
    def all_mailboxes(self) -> bool:
        return self.mailboxes is None

    def touches(self, mailbox: int) -> bool:
        return self.mailboxes is None or mailbox in self.mailboxes

    def merge(self, other: "Notification") -> "Notification":
        """One notification saying what both say (same account)."""
        return Notification(self.account, max(self.modseq, other.modseq),
                            self.kinds | other.kinds,
                            _union(self.mailboxes, other.mailboxes))


def _union(a: frozenset[int] | None, b: frozenset[int] | None) -> frozenset[int] | None:
    if a is None or b is None:
        return None
    if b <= a:
        return a
    u = a | b
    return None if len(u) > MAX_MAILBOXES else u


def _bounded(mailboxes: Iterable[int]) -> frozenset[int] | None:
    s = frozenset(mailboxes)
    return None if len(s) > MAX_MAILBOXES else s


def notifications(changes) -> list[Notification]:
    """Fold a commit's ``(account, Change)`` list into one Notification per
    account (kinds: the Change's collections; mailboxes: those whose IMAP view
    moved plus the ids of Mailbox records created/updated/destroyed)."""
    if len(changes) == 1:
        # a one-message STORE's commit: emails updated in one mailbox (no
        # Mailbox record among them), folded at once, as below
        acc, c = changes[0]
        if not c.created and not c.destroyed and MAILBOX_KIND not in c.updated and \
                len(c.mailboxes) <= MAX_MAILBOXES:
            return [Notification(acc, c.modseq, frozenset(c.updated), frozenset(c.mailboxes))]
    out: dict[int, Notification] = {}
    for acc, c in changes:
        mbx = set(c.mailboxes)
        for by_kind in (c.created, c.updated, c.destroyed):
            mbx.update(by_kind.get(MAILBOX_KIND, ()))
            if len(mbx) > MAX_MAILBOXES:
                break
        n = Notification(acc, c.modseq, frozenset(c.collections()), _bounded(mbx))
        prev = out.get(acc)
        out[acc] = n if prev is None else prev.merge(n)
    return list(out.values())


class Subscription:
    """One waiter on one account: a filter, the modseq it has seen, and at most
    one pending (merged) notification.  Use it as a context manager; leaving
    it (or ``close``) removes it from the bus."""

    __slots__ = ("_bus", "account", "kinds", "mailboxes", "since", "pending", "_event",
                 "closed", "waker")

    def __init__(self, bus: "Bus", account: int, kinds: frozenset[str] | None,
                 mailboxes: frozenset[int] | None, since: int):
        self._bus = bus
        self.account = account
        self.kinds = kinds              # None: every kind
        self.mailboxes = mailboxes      # None: every mailbox (and account-wide changes)
        self.since = since              # notifications up to here are not news
        self.pending: Notification | None = None
        self._event: trio.Event | None = None
        self.closed = False
        # instead of ``wait``: called (on the loop, must not block or raise)
        # when a matching notification arrives; the caller then ``take``s it
        # (IMAP IDLE: it cancels the read it is waiting in, no task of its own)
        self.waker: Callable[[], object] | None = None

    def matches(self, n: Notification) -> bool:
        if n.modseq <= self.since:
            return False
        if self.kinds is not None and not (n.kinds & self.kinds):
            return False
        if self.mailboxes is not None and n.mailboxes is not None \
                and n.mailboxes.isdisjoint(self.mailboxes):
            return False
        return True

    def _offer(self, n: Notification) -> None:
        if not self.matches(n):
            return
        self.pending = n if self.pending is None else self.pending.merge(n)
        if self._event is not None:
            self._event.set()
        elif self.waker is not None:
            self.waker()

    def take(self) -> Notification | None:
        """What arrived so far (merged), without waiting; None if nothing."""
        n, self.pending = self.pending, None
        if n is not None:
            self.since = max(self.since, n.modseq)
        return n

    async def wait(self) -> Notification:
        """Wait until a matching notification newer than ``since`` arrives and
        take it (everything that arrived meanwhile, merged).  One task waits on
        a subscription at a time."""
        if self.closed:
            raise trio.ClosedResourceError("the subscription is closed")
        if self._event is not None:
            raise trio.BusyResourceError("another task is waiting on this subscription")
        if self.pending is None:
            self._event = trio.Event()
            try:
                await self._event.wait()
            finally:
                self._event = None
        else:
            await trio.lowlevel.checkpoint()
        return self.take()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pending = None
            self._bus._remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Bus:
    def __init__(self):
        self._subs: dict[int, set[Subscription]] = {}
        self._latest: dict[int, int] = {}                    # account -> modseq
        self._latest_kind: dict[int, dict[str, int]] = {}    # account -> kind -> modseq
        self._hop: loophop.Hop | None = None
        # (fn, kinds or None: every kind), called with every published
        # notification of those kinds, whatever its account (a service that
        # watches all accounts: the outbound queue)
        self._listeners: list[tuple[Callable[[Notification], None],
                                    frozenset[str] | None]] = []
        # told when an account gets its first waiter (True) or loses its
        # last (False), and when the kinds the listeners hear change
        self._on_account: Callable[[int, bool], None] | None = None
        self._on_kinds: Callable[[frozenset[str] | None], None] | None = None

    def attach(self) -> None:
        """Bind to the running Trio loop (call from inside it)."""
        self._hop = loophop.current()

    # --- waiting -------------------------------------------------------------------------

    def latest(self, account: int) -> int:
        """The newest modseq the bus was told for ACCOUNT (0: nothing yet)."""
        return self._latest.get(account, 0)

    def subscribe(self, account: int, kinds: Iterable[str] | None = None,
                  mailboxes: Iterable[int] | None = None, *, since: int | None = None
                  ) -> Subscription:
        """Start waiting for ACCOUNT's changes of KINDS (None: all) touching
        MAILBOXES (None: any, account-wide changes included) newer than SINCE
        (None: from now on).  If the account already moved past SINCE in a
        matching kind, the subscription is woken at once (its mailboxes are
        then unknown: "all")."""
        if since is None:
            since = self.latest(account)
        sub = Subscription(self, account,
                           None if kinds is None else frozenset(kinds),
                           None if mailboxes is None else frozenset(mailboxes), since)
        if since < self.latest(account):
            by_kind = self._latest_kind.get(account, {})
            missed = frozenset(k for k, ms in by_kind.items() if ms > since)
            sub._offer(Notification(account, self.latest(account), missed, None))
        subs = self._subs.get(account)
        if subs is None:
            subs = self._subs[account] = set()
            if self._on_account is not None:
                self._on_account(account, True)
        subs.add(sub)
        return sub

    async def wait(self, account: int, kinds: Iterable[str] | None = None,
                   mailboxes: Iterable[int] | None = None, *, since: int) -> Notification:
        """Wait once (see ``subscribe``); cancel with a Trio cancel scope or
        deadline.  Nothing stays on the bus afterwards, however it ends."""
        with self.subscribe(account, kinds, mailboxes, since=since) as sub:
            return await sub.wait()

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.account)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.account]
                if self._on_account is not None:
                    self._on_account(sub.account, False)

    def holding(self, account: int) -> tuple[int, int]:
        """(subscriptions, pending notifications) held for ACCOUNT: what a
        test counts to see that memory stays bounded."""
        subs = self._subs.get(account, ())
        return len(subs), sum(s.pending is not None for s in subs)

    def listen(self, fn: "Callable[[Notification], None]",
               kinds: Iterable[str] | None = None) -> "Callable[[], None]":
        """Call FN (on the loop) with every notification of every account
        that names one of KINDS (None: every notification), local or from
        another worker; -> a function that stops it.  FN must not block or
        raise.  Name the kinds: the other workers then send only those."""
        entry = (fn, None if kinds is None else frozenset(kinds))
        self._listeners.append(entry)
        self._kinds_changed()

        def stop() -> None:
            try:
                self._listeners.remove(entry)
            except ValueError:
                return
            self._kinds_changed()
        return stop

    # --- what this bus wants from elsewhere (the worker link) ------------------------------

    def watch(self, on_account: "Callable[[int, bool], None] | None",
              on_kinds: "Callable[[frozenset[str] | None], None] | None") -> None:
        """Tell ON_ACCOUNT(account, True) when ACCOUNT gets its first waiter
        and (account, False) when it loses its last; ON_KINDS(kinds) when the
        kinds the listeners hear change (None: every kind).  Called on the
        loop, inside ``subscribe``/``close``/``listen``: they must not block."""
        self._on_account, self._on_kinds = on_account, on_kinds

    def wanted(self) -> tuple[set[int], frozenset[str] | None]:
        """(accounts with a waiter, the kinds the listeners hear for every
        account: None for every kind)."""
        return set(self._subs), self.listened_kinds()

    def listened_kinds(self) -> frozenset[str] | None:
        out: frozenset[str] = frozenset()
        for _, kinds in self._listeners:
            if kinds is None:
                return None
            out |= kinds
        return out

    def _kinds_changed(self) -> None:
        if self._on_kinds is not None:
            self._on_kinds(self.listened_kinds())

    # --- publishing ----------------------------------------------------------------------

    def publish(self, n: Notification) -> None:
        """Deliver N to the waiters of its account.  Call on the Trio loop."""
        acc = n.account
        if n.modseq > self._latest.get(acc, 0):
            self._latest[acc] = n.modseq
        by_kind = self._latest_kind.setdefault(acc, {})
        for k in n.kinds:
            if n.modseq > by_kind.get(k, 0):
                by_kind[k] = n.modseq
        subs = self._subs.get(acc)
        if subs:
            for sub in list(subs):
                sub._offer(n)
        for fn, kinds in self._listeners:
            if kinds is None or not kinds.isdisjoint(n.kinds):
                fn(n)

    def on_commit(self, info: "CommitInfo") -> None:
        """The store's commit hook (writer thread): hop onto the loop."""
        if self._hop is None or not info.changes:
            return
        # the same wake-up as the batch's acknowledgements (storeio), after them
        self._hop.call(self._publish_all, notifications(info.changes))

    def _publish_all(self, batch: list[Notification]) -> None:
        for n in batch:
            self.publish(n)
