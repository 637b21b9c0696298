"""The vacation response at delivery time: after a message is stored for an
account whose VacationResponse is on, decide (RFC 3834 §2, mailaccess/
outbound/autoreply.py) whether its sender gets an automatic reply, and if
so queue one through the outbound queue (so a local sender gets it
delivered locally) -- at most once per sender per ``[vacation] period_days``,
remembered in the store.  Called by LMTP delivery and by the outbound
queue's local delivery; never fails a delivery.
"""
from __future__ import annotations

import logging
import time

from .. import storeio
from ..config import Config
from ..outbound import addresses, autoreply
from ..store import sending

log = logging.getLogger("mailaccess.vacation")


def _queue_reply(tx, acc: int, sender: str, now: int, period: int, max_senders: int,
                 raw: bytes, expires: int) -> int | None:
    """One transaction: remember SENDER and queue the reply, or nothing."""
    if not sending.note_auto_reply(tx, acc, sender, now, period, max_senders):
        return None
    return sending.enqueue(tx, acc, raw, "", [sender], now=now, send_at=now, expires=expires)


async def after_delivery(ctx, acc: int, rcpt: str, return_path: str, raw: bytes) -> None:
    try:
        await _after_delivery(ctx, acc, rcpt, return_path, raw)
    except Exception:
        log.exception("vacation response for account %d failed", acc)


async def _after_delivery(ctx, acc: int, rcpt: str, return_path: str, raw: bytes) -> None:
    now = int(time.time())
    with ctx.store.view() as v:
        vac = v.vacation(acc)
        if not autoreply.active(vac, now):
            return
        account = v.account(acc)
    if account is None:
        return
    cfg: Config = ctx.cfg
    own = addresses.own_addresses(account.name, cfg.lmtp.local_domains, cfg.hostname)
    own.add(rcpt.lower())
    me = rcpt if addresses.may_send_from(rcpt, own) and addresses.valid_address(rcpt) else \
        addresses.default_address(account.name, cfg.lmtp.local_domains, cfg.hostname)
    # in the worker pool: both read the delivered message's header with the
    # email package, whose header folding of the reply's "Auto: <subject>"
    # took 1.3 s for a 64 KB UTF-8 Subject and 80 s for a 1 MB one
    why, reply = await storeio.cpu(_decide, raw, return_path, own, vac, me, now, cfg.hostname)
    if why is not None:
        log.debug("no vacation reply to %r for account %d: %s", return_path, acc, why)
        return
    qid = await storeio.write(ctx.store, _queue_reply, acc, return_path, now,
                              cfg.vacation.period_days * 86400, cfg.vacation.max_senders,
                              reply, now + cfg.smtp.expire)
    if qid is not None:
        log.info("vacation reply for account %d queued to %s", acc, return_path)


def _decide(raw: bytes, return_path: str, own: set, vac: dict, me: str, now: int,
            hostname: str) -> tuple[str | None, bytes | None]:
    """(why RAW gets no reply, None) or (None, the reply): off the loop."""
    why = autoreply.should_reply(raw, return_path, own)
    if why is not None:
        return why, None
    return None, autoreply.build_reply(raw, vac, me, return_path, now, hostname)
