"""Waiting for news for ActiveSync's long-lived requests (Ping, hanging
Sync): on the store's event bus, never by polling.

What this module owns: the waiting requests of the HTTP service (a
``Registry`` per service) and the rules they live by.

* One bus subscription per waiting request (``bus.subscribe``: a few slots
  and at most one merged pending notification), one small ``Waiter`` record,
  and, when the request came over HTTP, one task watching the client's
  connection: O(1) memory each, nothing buffered per request.
* Caps: at most ``[eas] max_pings_per_user`` waiting requests of one user
  and ``max_pings`` in all.  Beyond them the request is refused with HTTP 503
  and ``Retry-After`` (``PushBusy``; server/eas.py answers it): MS-ASHTTP
  3.1.5.2.3 names 503 for "more users than allowed by the server's request
  queue limit ... or throttling", and the client retries after Retry-After.
  Ping Status 6 is not used for this: MS-ASCMD 2.2.3.177.11 gives it one
  meaning, too many *folders* (with MaxFolders), and a client told so would
  shrink its folder list instead of waiting.
* One waiting request per device: a newer one (Ping or hanging Sync) from
  the same (account, DeviceId) ends the older at once; the older then
  answers as if its interval had run out (Ping Status 1, Sync with no
  changes), which the device, having moved on, ignores.  Exchange behaves
  the same way; MS-ASCMD 3.1.5.8 has the device hold one Ping at a time.
* While it waits, a request gives back its per-user ``eas`` HTTP slot
  (``[eas] max_concurrent_requests`` counts requests being worked on, not
  devices waiting for mail), and the device lock (the caller's
  ``ctx.released()``).
* Ending: the interval running out, a newer request from the device, or
  the server shutting down (``HttpService.drain``: every waiter answers at
  once, so shutdown does not wait ``shutdown_grace`` for them) end the wait
  with ``None`` and the caller answers; the client closing its connection
  cancels the wait (no answer is written to nobody).  However it ends, the
  subscription, the counters and the slot are given back.
"""
from __future__ import annotations

import time
import weakref
from contextlib import asynccontextmanager
from typing import Iterable

import trio

from ..bus import Notification
from .http import problem, service_of

__all__ = ["PushBusy", "Registry", "Waiter", "registry", "waiting", "wait_for_changes"]

# how many seconds a refused waiting request is told to wait (Retry-After)
RETRY_AFTER = 30


class PushBusy(Exception):
    """Too many waiting requests (of the user, or in all): answer
    ``response()`` (HTTP 503 with Retry-After, MS-ASHTTP 3.1.5.2.3)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why

    def response(self):
        r = problem(503, "Service Unavailable", self.why)
        r.headers.append(("retry-after", str(RETRY_AFTER)))
        return r


class Waiter:
    """One waiting request: who, and how to end it."""

    __slots__ = ("account", "device", "seq", "ended", "why", "_scope", "counted", "sub")

    def __init__(self, account: int, device: str, seq: int = 0):
        self.account = account
        self.device = device
        self.seq = seq              # the request's order of arrival (see ``waiting``)
        self.ended = False          # ended by a newer request or by shutdown
        self.why = ""               # "superseded" or "shutdown"
        self._scope: trio.CancelScope | None = None
        self.counted = True         # still counted in the registry's caps
        self.sub = None             # the bus Subscription while waiting

    def end(self, why: str) -> None:
        """Make the wait return None now (and every later ``next``)."""
        if not self.ended:
            self.ended = True
            self.why = why
            if self._scope is not None:
                self._scope.cancel()

    async def next(self, deadline: float) -> Notification | None:
        """The next notification (everything since the last one, merged), or
        None at DEADLINE (trio.current_time() clock) or once ended."""
        if self.ended:
            await trio.lowlevel.checkpoint()
            return None
        with trio.CancelScope(deadline=deadline) as scope:
            self._scope = scope
            try:
                return await self.sub.wait()
            finally:
                self._scope = None
        return None


class Registry:
    """The waiting requests of one HTTP service: by device, and counted per
    user and in all."""

    def __init__(self, max_per_user: int, max_total: int):
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.by_device: dict[tuple[int, str], Waiter] = {}
        self.per_user: dict[int, int] = {}
        self.total = 0
        self.draining = False
        self.superseded = 0         # how many waits a newer request ended (for tests, stats)
        self.worker = None          # the worker link (several processes), else None
        self.refused = 0

    def admit(self, account: int, device: str, seq: int = 0) -> Waiter:
        """Register a waiting request of DEVICE: ends the device's older one
        (a smaller SEQ; a request older than the one waiting is itself ended
        at once: a hanging Sync that woke and waits again after a newer Ping
        began); raises PushBusy past a cap."""
        key = (account, device)
        old = self.by_device.get(key)
        if old is not None and old.seq > seq:
            w = Waiter(account, device, seq)
            w.counted = False
            w.end("superseded")
            return w
        if old is not None:
            del self.by_device[key]
            self._uncount(old)
            old.end("superseded")
            self.superseded += 1
        if self.total >= self.max_total:
            self.refused += 1
            raise PushBusy(f"too many waiting ActiveSync requests ({self.max_total})")
        if self.per_user.get(account, 0) >= self.max_per_user:
            self.refused += 1
            raise PushBusy(f"too many waiting ActiveSync requests for this user "
                           f"({self.max_per_user})")
        w = Waiter(account, device, seq)
        self.by_device[key] = w
        self.per_user[account] = self.per_user.get(account, 0) + 1
        self.total += 1
        if self.draining:
            w.end("shutdown")
        return w

    def release(self, w: Waiter) -> None:
        key = (w.account, w.device)
        if self.by_device.get(key) is w:
            del self.by_device[key]
        self._uncount(w)

    def _uncount(self, w: Waiter) -> None:
        if w.counted:
            w.counted = False
            self.total -= 1
            left = self.per_user[w.account] - 1
            if left:
                self.per_user[w.account] = left
            else:
                del self.per_user[w.account]

    def end_older(self, account: int, device: str, seq: int) -> None:
        """Another worker admitted DEVICE's request number SEQ: end an older
        one waiting here."""
        key = (account, device)
        old = self.by_device.get(key)
        if old is not None and old.seq < seq:
            del self.by_device[key]
            self._uncount(old)
            old.end("superseded")
            self.superseded += 1

    def drain(self) -> None:
        """Shutdown: every waiting request answers now, new ones at once."""
        self.draining = True
        for w in list(self.by_device.values()):
            w.end("shutdown")


_last_seq = 0


def _next_seq() -> int:
    """A request number: increasing in this process, and ordered across the
    worker processes (CLOCK_MONOTONIC is one clock for the whole system)."""
    global _last_seq
    _last_seq = max(_last_seq + 1, time.monotonic_ns())
    return _last_seq

# one registry per HTTP service (or per server context when there is none: unit tests)
_REGISTRIES: "weakref.WeakKeyDictionary[object, Registry]" = weakref.WeakKeyDictionary()
_LOOSE: dict[int, Registry] = {}


TOPIC = "eas-ping"     # worker broadcasts: [account, device, request number]


def _from_elsewhere(reg: Registry, data) -> None:
    try:
        account, device, seq = data
        reg.end_older(int(account), str(device), int(seq))
    except (TypeError, ValueError):
        pass


def registry(ctx) -> Registry:
    """The registry of the service CTX's request came through."""
    svc = service_of(ctx.app) if ctx.app is not None else None
    if svc is None:
        reg = _LOOSE.get(id(ctx.app))
        if reg is None:
            reg = _LOOSE[id(ctx.app)] = Registry(ctx.cfg.max_pings_per_user, ctx.cfg.max_pings)
        return reg
    reg = _REGISTRIES.get(svc)
    if reg is None:
        reg = _REGISTRIES[svc] = Registry(ctx.cfg.max_pings_per_user, ctx.cfg.max_pings)
        svc.drain_hooks.append(reg.drain)
        worker = getattr(ctx.app, "worker", None)
        if worker is not None:
            reg.worker = worker
            worker.on(TOPIC, lambda data: _from_elsewhere(reg, data))
        if svc.draining:
            reg.drain()
    return reg


@asynccontextmanager
async def waiting(ctx, mailboxes: Iterable[int] | None, since: int,
                  kinds: Iterable[str] | None = None):
    """Wait for CTX's account's changes of KINDS (None: all) touching
    MAILBOXES (None: any, hierarchy changes included) newer than modseq SINCE
    (a modseq read from the store or ``bus.latest`` taken before reading):
    ``async with waiting(...) as w: n = await w.next(deadline)``, as often as
    needed, on one subscription.  Raises PushBusy past a cap.  Use it inside
    ``ctx.released()``.  A client closing its connection cancels the body
    (the ``async with`` then ends quietly, and the caller's answer goes
    nowhere)."""
    reg = registry(ctx)
    # a request is numbered at its first wait: requests of one device run one
    # at a time up to their wait (the device lock), so the order of first
    # waits is the order of arrival, and a request waiting again (a hanging
    # Sync's loop) keeps its number
    seq = ctx.__dict__.get("_push_seq")
    if seq is None:
        seq = ctx.__dict__["_push_seq"] = _next_seq()
    w = reg.admit(ctx.account, ctx.req.device_id, seq)
    if reg.worker is not None and not w.ended:
        reg.worker.broadcast(TOPIC, [ctx.account, ctx.req.device_id, seq])
    try:
        req = ctx.http
        svc = service_of(ctx.app) if ctx.app is not None else None
        slot = req.route.slot if req is not None and req.route is not None else None
        with ctx.bus.subscribe(ctx.account, kinds, mailboxes, since=since) as sub, \
                _slot_released(svc, slot, ctx.account):
            w.sub = sub
            watch = getattr(req, "wait_closed", None) if req is not None else None
            if watch is None:
                yield w
            else:
                async with trio.open_nursery() as n:
                    n.start_soon(_cancel_when_closed, watch, n.cancel_scope)
                    yield w
                    n.cancel_scope.cancel()
    finally:
        w.sub = None
        reg.release(w)


async def _cancel_when_closed(watch, scope: trio.CancelScope) -> None:
    await watch()
    scope.cancel()


class _NoSlot:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _slot_released(svc, slot: str | None, account: int):
    if svc is None or slot is None:
        return _NoSlot()
    return svc.slot_released(slot, account)


async def wait_for_changes(ctx, mailboxes: list[int] | None, seconds: float,
                           since: int) -> Notification | None:
    """Wait up to SECONDS for a change to ctx.account newer than modseq
    SINCE touching MAILBOXES (None: anything, hierarchy changes included).
    Returns the notification, or None when the time ran out, a newer request
    from the same device ended this one, or the server is shutting down.
    Raises PushBusy past the caps (server/eas.py answers 503).  The caller
    holds ctx.released() around the call and re-checks what actually
    changed."""
    async with waiting(ctx, mailboxes, since) as w:
        return await w.next(trio.current_time() + seconds)
    return None         # the client went away
