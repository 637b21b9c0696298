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
    # the message's header is read (and the reply written) in the worker
    # pool: a 64 MB header takes the email package a second or more
    why = await storeio.cpu(autoreply.should_reply, raw, return_path, own)
    if why is not None:
        log.debug("no vacation reply to %r for account %d: %s", return_path, acc, why)
        return
    me = rcpt if addresses.may_send_from(rcpt, own) and addresses.valid_address(rcpt) else \
        addresses.default_address(account.name, cfg.lmtp.local_domains, cfg.hostname)
    reply = await storeio.cpu(autoreply.build_reply, raw, vac, me, return_path, now,
                              cfg.hostname)
    qid = await storeio.write(ctx.store, _queue_reply, acc, return_path, now,
                              cfg.vacation.period_days * 86400, cfg.vacation.max_senders,
                              reply, now + cfg.smtp.expire)
    if qid is not None:
        log.info("vacation reply for account %d queued to %s", acc, return_path)
