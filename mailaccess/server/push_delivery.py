"""Push delivery (RFC 8620 §7.2): POST to the URLs of JMAP PushSubscriptions.

What it owns: one task per live subscription.  An unverified one gets its
PushVerification POSTed once (on create, or after a restart); a verified one
waits on the bus for its account's changes of the subscribed ``types`` and
POSTs a StateChange with the current states from the change log.  At most
one POST per subscription is in flight: what changes meanwhile is merged
by the bus subscription into the next one, so a burst costs a few POSTs.

On the wire: RFC 8030 ``TTL`` and ``Urgency`` headers; with ``keys`` the
body is encrypted per RFC 8291 (aes128gcm, RFC 8188) by ``http_ece`` with
a fresh server ECDH key and a random salt per message.  429, 5xx, timeouts
and connection failures are retried with doubling delays (``Retry-After``
when given); 404/410 destroy the subscription (RFC 8030 §8.3: it is gone);
other answers drop that one message.  Expired subscriptions are swept from
the store (and their tasks stopped) as they expire.

The JMAP methods (server/jmap_push_subscription.py) call
``subscriptions_changed(store)`` after each change, which wakes the service
running over that store to start, restart or stop tasks.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Callable

import trio

from .. import storeio
from ..config import PushConfig
from ..store import ops
from ..store.records import PushSubscription
from . import http_out, jmap_push

log = logging.getLogger("mailaccess.push")

# POSTs in flight at once, whatever the number of subscriptions
MAX_POSTS_IN_FLIGHT = 64

# the running services, by store (a test may run several servers in one process)
_RUNNING: dict[int, "PushDelivery"] = {}


# how to tell the other worker processes over the same store (server/workers.py
# sets it; the service runs in the primary worker only), by store
_ELSEWHERE: dict[int, Callable[[], None]] = {}


def subscriptions_changed(store, *, here_only: bool = False) -> None:
    """A subscription of STORE was created, changed or destroyed (in this
    process; HERE_ONLY: told by another worker, not to be passed on)."""
    svc = _RUNNING.get(id(store))
    if svc is not None:
        svc.poke()
    tell = None if here_only else _ELSEWHERE.get(id(store))
    if tell is not None:
        tell()


def encrypt(body: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291 aes128gcm: a fresh ECDH key of ours and a random salt each time."""
    import http_ece
    from cryptography.hazmat.primitives.asymmetric import ec

    def b64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    key = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(body, salt=os.urandom(16), private_key=key, dh=b64(p256dh),
                            auth_secret=b64(auth), version="aes128gcm")


def address_rule(cfg: PushConfig) -> Callable:
    def allow(ip) -> bool:
        if ip.is_loopback:
            return cfg.allow_loopback_http
        if http_out.global_only(ip):
            return True
        return cfg.allow_private_addresses and not ip.is_multicast and not ip.is_unspecified
    return allow


class PushDelivery:
    def __init__(self, store, bus, cfg: PushConfig | None = None, *, ssl_context=None):
        self.store = store
        self.bus = bus
        self.cfg = cfg or PushConfig()
        self.ssl_context = ssl_context
        self._allow = address_rule(self.cfg)
        self._wake = trio.Event()
        self._tasks: dict[tuple[int, int], tuple[PushSubscription, trio.CancelScope]] = {}
        self._verified_sent: set[tuple[int, int, str]] = set()
        self._posts = trio.CapacityLimiter(MAX_POSTS_IN_FLIGHT)
        self.stats = {"posts": 0, "verifications": 0, "state_changes": 0, "failures": 0,
                      "gone": 0, "expired": 0}

    def poke(self) -> None:
        self._wake.set()

    # --- the supervisor -------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        key = id(self.store)
        async with trio.open_nursery() as nursery:
            _RUNNING[key] = self
            try:
                task_status.started()
                next_sweep = 0.0
                while True:
                    self._wake = trio.Event()
                    if trio.current_time() >= next_sweep:
                        await self.sweep()
                        next_sweep = trio.current_time() + self.cfg.sweep_interval
                    soonest = self._reconcile(nursery)
                    if soonest is not None:
                        next_sweep = min(next_sweep, trio.current_time() + soonest)
                    with trio.move_on_at(next_sweep):
                        await self._wake.wait()
            finally:
                if _RUNNING.get(key) is self:
                    del _RUNNING[key]
                nursery.cancel_scope.cancel()

    async def sweep(self) -> None:
        gone = await storeio.write(self.store, ops.sweep_push_subscriptions, int(time.time()))
        if gone:
            self.stats["expired"] += len(gone)
            log.info("push: %d expired subscriptions removed", len(gone))

    def _reconcile(self, nursery) -> float | None:
        """Start a task per live subscription whose record is new or changed,
        stop the others -> seconds until the next one expires (None: none)."""
        with self.store.view() as v:
            subs = v.all_push_subscriptions()
        now = time.time()
        live = {}
        soonest = None
        for acc, p in subs:
            if p.expires <= now:
                soonest = 0.0
                continue
            live[(acc, p.id)] = p
            left = p.expires - now
            soonest = left if soonest is None else min(soonest, left)
        self._verified_sent = {t for t in self._verified_sent if t[:2] in live}
        for k, (p, scope) in list(self._tasks.items()):
            if live.get(k) != p:
                scope.cancel()
                del self._tasks[k]
        for k, p in live.items():
            if k not in self._tasks:
                scope = trio.CancelScope()
                self._tasks[k] = (p, scope)
                nursery.start_soon(self._guarded, k[0], p, scope)
        return soonest

    async def _guarded(self, acc: int, p: PushSubscription, scope: trio.CancelScope) -> None:
        with scope:
            try:
                if p.verified:
                    await self._push_changes(acc, p)
                else:
                    await self._verify(acc, p)
            except Exception:
                log.exception("push subscription %d of account %d failed", p.id, acc)
        # a task that ended by itself keeps its entry (it is not restarted
        # until the record changes)

    # --- the two jobs -----------------------------------------------------------------

    async def _verify(self, acc: int, p: PushSubscription) -> None:
        token = (acc, p.id, p.code)
        if token in self._verified_sent:
            return
        body = {"@type": "PushVerification", "pushSubscriptionId": str(p.id),
                "verificationCode": p.code}
        outcome = await self._send(acc, p, lambda: body, "normal")
        self._verified_sent.add(token)
        if outcome == "ok":
            self.stats["verifications"] += 1

    async def _push_changes(self, acc: int, p: PushSubscription) -> None:
        wanted = None if p.types is None else frozenset(p.types)
        # from the modseq it was verified at: a change committed between the
        # verification and this task's start is pushed, not lost (a restart
        # starts from now: what changed while down is not replayed)
        since = min(p.verified_ms, self.bus.latest(acc)) if p.verified_ms else None
        with self.bus.subscribe(acc, kinds=wanted, since=since) as sub:
            while True:
                n = await sub.wait()
                kinds = set(n.kinds)

                def payload() -> dict | None:
                    more = sub.take()           # what came while we waited to retry
                    if more is not None:
                        kinds.update(more.kinds)
                    # the same StateChange EventSource and WebSocket send:
                    # JMAP types only (not the outbound queue's log kind)
                    changed, _ = jmap_push.changed(self.store, acc, kinds, wanted)
                    if not changed:
                        return None
                    return {"@type": "StateChange", "changed": changed}

                outcome = await self._send(acc, p, payload, "normal")
                if outcome == "ok":
                    self.stats["state_changes"] += 1
                elif outcome in ("gone", "refused"):
                    return

    async def _send(self, acc: int, p: PushSubscription, payload: Callable[[], dict | None],
                    urgency: str) -> str:
        """POST PAYLOAD() (made again for each attempt) -> "ok", "gone" (the
        subscription was destroyed), "refused" (the URL is not allowed),
        "failed" (given up on this message) or "skipped" (nothing to send)."""
        delay = self.cfg.retry_delay
        for attempt in range(self.cfg.retries + 1):
            if p.expires <= time.time():
                self.poke()                     # the supervisor sweeps it
                return "skipped"
            obj = payload()
            if obj is None:
                return "skipped"
            body = json.dumps(obj, separators=(",", ":")).encode()
            headers = [("TTL", str(self.cfg.ttl)), ("Urgency", urgency)]
            if p.p256dh:
                body = encrypt(body, p.p256dh, p.auth)
                headers += [("Content-Encoding", "aes128gcm"),
                            ("Content-Type", "application/octet-stream")]
            else:
                headers.append(("Content-Type", "application/json; charset=utf-8"))
            self.stats["posts"] += 1
            wait = delay
            try:
                async with self._posts:
                    resp = await http_out.post(
                        p.url, body, headers, connect_timeout=self.cfg.connect_timeout,
                        io_timeout=self.cfg.io_timeout, ssl_context=self.ssl_context,
                        allow_address=self._allow, allow_http=self.cfg.allow_loopback_http)
            except http_out.Refused as exc:
                log.warning("push subscription %d: %s", p.id, exc)
                self.stats["failures"] += 1
                return "refused"
            except http_out.HttpError as exc:
                log.info("push subscription %d: %s (attempt %d)", p.id, exc, attempt + 1)
            else:
                if 200 <= resp.status < 300:
                    return "ok"
                if resp.status in (404, 410):
                    log.info("push subscription %d of account %d: the push service says "
                             "it is gone (%d); destroying it", p.id, acc, resp.status)
                    await storeio.write(self.store, ops.destroy_push_subscription, acc, p.id)
                    self.stats["gone"] += 1
                    self.poke()
                    return "gone"
                if resp.status != 429 and resp.status < 500:
                    log.info("push subscription %d: answered %d; message dropped",
                             p.id, resp.status)
                    self.stats["failures"] += 1
                    return "failed"
                ra = resp.headers.get("retry-after", "")
                if ra.isdigit():
                    wait = max(delay, float(ra))
            if attempt < self.cfg.retries:
                await trio.sleep(min(wait, self.cfg.retry_max_delay))
                delay = min(delay * 2, self.cfg.retry_max_delay)
        self.stats["failures"] += 1
        log.info("push subscription %d: giving up on this message", p.id)
        return "failed"


async def serve(ctx, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The service app.py runs: no listener, so it reports no addresses."""
    svc = PushDelivery(ctx.store, ctx.bus, ctx.cfg.push)
    await svc.run(task_status=_Started(task_status))


class _Started:
    """Report ``[]`` (no bound addresses) to app.serve's nursery.start."""

    def __init__(self, status):
        self._status = status

    def started(self, value=None) -> None:
        self._status.started([])
