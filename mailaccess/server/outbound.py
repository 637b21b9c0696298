"""The outbound queue service ("outbound", a sibling under the root nursery):
sends every message of the durable queue (store/sending.py) -- JMAP
EmailSubmissions and vacation replies.

* Local recipients (addresses LMTP would deliver to an account of this
  server, ``lmtp.resolve_recipient``) get the message in their mailbox
  through LMTP's own store path (``lmtp.store_copy``), vacation response
  included.
* Remote recipients are relayed to ``[smtp] relay_host`` with the stdlib's
  smtplib in a worker thread (at most ``[smtp] connections`` at once, every
  step under ``[smtp] timeout``): one MAIL FROM, one RCPT TO per recipient,
  DATA.  With no relay configured they fail at once, with a clear
  deliveryStatus and a log line.
* A 2xx is delivered, a 5xx a final failure; a 4xx or a broken connection
  is tried again after a doubling backoff (``retry_first`` .. ``retry_max``)
  until ``[smtp] expire`` seconds after queuing.

Each attempt first *claims* the entry (its submission becomes undoStatus
``final``: a cancel after that gets cannotUnsend), then records every
recipient's outcome in the store (the submission's deliveryStatus, visible
to EmailSubmission/get and /changes).  Nothing polls: a commit that touches
the queue (kind ``Outbound``) wakes the service through the bus (whichever
worker process committed it), and a timer waits for the next retry or the end of a hold.
An entry is only dropped once every recipient has an outcome, so after a
crash or kill -9 the queue resumes where the store says (a message whose
attempt was cut off may be sent twice, never lost).
"""
from __future__ import annotations

import logging
import math
import smtplib
import time

import trio

from .. import ingest, storeio
from ..outbound import retry
from ..store import sending
from . import autoreply, lmtp
from .app import ServerContext
from .tls import client_context

log = logging.getLogger("mailaccess.outbound")

NO_RELAY = "550 5.3.5 no SMTP relay is configured ([smtp] relay_host) for remote recipients"


class Outbound:
    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.cfg = ctx.cfg.smtp
        self.limiter = trio.CapacityLimiter(max(1, self.cfg.connections))
        self.busy: set[tuple[int, int]] = set()
        self._wake = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    # --- waking ------------------------------------------------------------------------

    def kick(self) -> None:
        self._wake.set()

    def on_notification(self, n) -> None:
        """Bus listener (on the loop): wake when the queue changed, by a
        commit of this process or of another worker (server/workers.py)."""
        if sending.OUTBOUND in n.kinds:
            self.kick()

    # --- the loop ----------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._token = trio.lowlevel.current_trio_token()
        stop_listening = self.ctx.bus.listen(self.on_notification, kinds={sending.OUTBOUND})
        try:
            async with trio.open_nursery() as nursery:
                task_status.started([])     # no listener of its own
                while True:
                    self._wake = trio.Event()     # before reading: no wake-up is lost
                    wait = self._start_due(nursery)
                    with trio.move_on_after(wait if wait is not None else math.inf):
                        await self._wake.wait()
        finally:
            stop_listening()

    def _start_due(self, nursery) -> float | None:
        """Start an attempt for every due entry; -> seconds until the next one."""
        now = time.time()
        with self.ctx.store.view() as v:
            entries = v.outbound_queue()
        nxt = None
        for acc, qid, entry in entries:
            if (acc, qid) in self.busy:
                continue
            due = entry.get("next", 0)
            if due <= now:
                self.busy.add((acc, qid))
                nursery.start_soon(self._attempt, acc, qid)
            else:
                nxt = due - now if nxt is None else min(nxt, due - now)
        return nxt

    async def _attempt(self, acc: int, qid: int) -> None:
        try:
            await self.attempt(acc, qid)
        except Exception:
            log.exception("outbound: sending %d/%d failed; tried again later", acc, qid)
            # keep it queued: the next attempt after the first backoff
            try:
                await storeio.write(self.ctx.store, sending.record_attempt, acc, qid, {},
                                    int(time.time() + self.cfg.retry_first))
            except Exception:
                log.exception("outbound: could not reschedule %d/%d", acc, qid)
        finally:
            self.busy.discard((acc, qid))
            self.kick()

    async def attempt(self, acc: int, qid: int) -> None:
        """One attempt at entry QID of ACC: every recipient still queued."""
        store = self.ctx.store
        entry = await storeio.write(store, sending.claim, acc, qid)
        if entry is None:
            return                                   # canceled meanwhile
        with store.view() as v:
            raw = v.outbound_message(acc, qid)
        pending = [r for r, s in entry["rcpts"].items() if s is None]
        now = time.time()
        if raw is None:
            results = {r: ("no", "554 5.3.0 the queued message is missing") for r in pending}
            await storeio.write(store, sending.record_attempt, acc, qid, results, None)
            return
        if now >= entry.get("expires", math.inf):
            results = {r: ("no", "554 5.4.7 delivery time expired; giving up")
                       for r in pending}
            log.warning("outbound: %d/%d expired for %s", acc, qid, ", ".join(pending))
            await storeio.write(store, sending.record_attempt, acc, qid, results, None)
            return
        results: dict[str, tuple[str, str]] = {}
        local, remote = [], []
        for r in pending:
            try:
                target = lmtp.resolve_recipient(self.ctx, r)
            except Exception:
                target = None
            (local if target is not None else remote).append((r, target))
        for r, (racc, mbx) in local:
            results[r] = await self._deliver_local(racc, mbx, r, entry["from"], raw)
        if remote:
            rcpts = [r for r, _ in remote]
            if not self.cfg.relay_host:
                log.warning("outbound: no relay configured; %s not sent to %s",
                            f"{acc}/{qid}", ", ".join(rcpts))
                for r in rcpts:
                    results[r] = ("no", NO_RELAY)
            else:
                results.update(await trio.to_thread.run_sync(
                    relay, self.cfg, self.ctx.cfg.hostname, entry["from"], rcpts, raw,
                    limiter=self.limiter, abandon_on_cancel=True))
        attempts = entry.get("attempts", 0) + 1
        nxt = None
        if any(s == "queued" for s, _ in results.values()):
            nxt = int(min(now + retry.backoff(attempts, self.cfg.retry_first, self.cfg.retry_max),
                          entry.get("expires", math.inf)))
        for r, (s, reply) in results.items():
            log.info("outbound: %d/%d to %s: %s (%s)", acc, qid, r, reply,
                     "delivered" if s == "yes" else "failed" if s == "no" else "will retry")
        await storeio.write(store, sending.record_attempt, acc, qid, results, nxt)

    async def _deliver_local(self, acc: int, mbx: int, rcpt: str, mail_from: str,
                             raw: bytes) -> tuple[str, str]:
        now = int(time.time())
        if len(raw) >= storeio.OFFLOOP_BYTES:
            new = await storeio.cpu(ingest.prepare, raw, now)
        else:
            new = ingest.prepare(raw, now)
        reply = (await lmtp.store_copy(self.ctx, acc, mbx, new)).decode("ascii", "replace")
        code = int(reply[:3]) if reply[:3].isdigit() else 451
        if code == 250:
            await autoreply.after_delivery(self.ctx, acc, rcpt, mail_from, raw)
        return retry.outcome(code), " ".join(reply.split())


def relay(cfg, hostname: str, mail_from: str, rcpts: list[str],
          raw: bytes) -> dict[str, tuple[str, str]]:
    """One SMTP conversation with the relay (worker thread): -> {recipient:
    (delivered, reply)} for every one of RCPTS."""
    out: dict[str, tuple[str, str]] = {}
    accepted: list[str] = []
    try:
        with smtplib.SMTP(cfg.relay_host, cfg.relay_port, local_hostname=hostname or None,
                          timeout=cfg.timeout) as s:
            s.ehlo()
            if cfg.starttls:
                s.starttls(context=client_context())
                s.ehlo()
            if cfg.username:
                s.login(cfg.username, cfg.password)
            opts = []
            if not raw.isascii() and s.has_extn("8bitmime"):
                opts.append("BODY=8BITMIME")
            if not (mail_from + "".join(rcpts)).isascii() and s.has_extn("smtputf8"):
                opts.append("SMTPUTF8")
            code, text = s.mail(mail_from, opts)
            if code != 250:
                s.rset()
                return {r: (retry.outcome(code), retry.reply_text(code, text)) for r in rcpts}
            for r in rcpts:
                code, text = s.rcpt(r)
                if 200 <= code < 300:
                    accepted.append(r)
                else:
                    out[r] = (retry.outcome(code), retry.reply_text(code, text))
            if not accepted:
                s.rset()
                return out
            code, text = s.data(raw)
            for r in accepted:
                out[r] = (retry.outcome(code), retry.reply_text(code, text))
            try:
                s.quit()
            except smtplib.SMTPException:
                pass
    except smtplib.SMTPAuthenticationError as exc:
        # the relay refused our credentials: a configuration problem, kept
        # queued (and logged) rather than failing every message for good
        log.error("outbound: relay %s refused the login: %s", cfg.relay_host, exc)
        for r in rcpts:
            out.setdefault(r, ("queued", retry.reply_text(451, f"4.7.0 relay login refused "
                                                               f"({exc.smtp_code})")))
    except smtplib.SMTPResponseException as exc:
        for r in rcpts:
            if r not in out:
                out[r] = (retry.outcome(exc.smtp_code), retry.reply_text(exc.smtp_code,
                                                                          exc.smtp_error))
    except (OSError, smtplib.SMTPException) as exc:
        for r in rcpts:
            if r not in out:
                out[r] = ("queued", f"451 4.4.1 relay {cfg.relay_host}:{cfg.relay_port}: "
                                    f"{type(exc).__name__}: {exc}"[:512])
    return out


async def serve(ctx: ServerContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
    await Outbound(ctx).run(task_status)
