"""LMTP delivery service: the MTA hands us mail (RFC 2033).

Recipients resolve to accounts: ``name@domain`` goes to account ``name`` when
``domain`` is a configured local domain, else to an account named by the
whole address; ``name+detail@...`` goes to mailbox ``detail`` when that
mailbox exists (else INBOX).  Each recipient gets its own reply after DATA,
and a 250 is sent only once that recipient's copy is durable.  A recipient
that names no account (an empty or over-long name, ``+detail@domain``) gets
its own 550 and the transaction goes on; an empty name never reaches the store.
"""
from __future__ import annotations

import logging
import time

import trio

from .. import ingest, storeio, vocab
from ..proto.lmtp import wire
from ..store import InvalidName, OverQuota, StoreError, StoreFullError, ops
from . import autoreply
from .app import ServerContext, bound_addresses, open_listeners, serve_connections

log = logging.getLogger("mailaccess.lmtp")


def resolve_recipient(ctx: ServerContext, address: str) -> tuple[int, int] | None:
    """-> (account id, mailbox id) or None when the recipient is not ours."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    with ctx.store.view() as v:
        candidates = []
        if domain.lower() in ctx.cfg.lmtp.local_domains or not domain:
            candidates.append(local)
        candidates.append(address)
        for cand in candidates:
            name, plus, detail = cand.partition("+")
            a = v.account_by_name(cand) if cand else None
            if a is None and plus and name:
                a = v.account_by_name(name)
            if a is None:
                continue
            mbx = None
            if plus and a.name.casefold() != cand.casefold() and detail:
                m = v.mailbox_by_path(a.id, detail.split("/"))
                mbx = m.id if m is not None else None
            if mbx is None:
                inbox = v.mailbox_by_role(a.id, vocab.ROLE_INBOX)
                if inbox is None:
                    return None
                mbx = inbox.id
            return a.id, mbx
    return None


class LmtpSession:
    def __init__(self, ctx: ServerContext, stream: trio.abc.Stream):
        self.ctx = ctx
        self.stream = stream
        cfg = ctx.cfg.lmtp
        self.conn = wire.LmtpConnection(max_message_size=cfg.max_message_size,
                                        max_recipients=cfg.max_recipients)
        self.rcpts: list[tuple[str, int, int]] = []
        self.mail_from = ""

    async def send(self, data: bytes) -> None:
        # within [lmtp] timeout, like each read: a client that pipelines
        # commands and never reads the replies held its connection for
        # good once the socket buffers were full
        with trio.fail_after(self.ctx.cfg.lmtp.timeout):
            await self.stream.send_all(data)

    async def run(self) -> None:
        host = self.ctx.cfg.hostname
        await self.send(wire.reply(220, f"{host} mailaccess LMTP ready"))
        timeout = self.ctx.cfg.lmtp.timeout
        while True:
            ev = self.conn.next_event()
            if ev is wire.NEED_DATA:
                with trio.fail_after(timeout):
                    data = await self.stream.receive_some(65536)
                self.conn.receive_data(data)
                continue
            if isinstance(ev, wire.Closed):
                return
            if not await self.handle(ev):
                return

    async def handle(self, ev) -> bool:
        if isinstance(ev, wire.ProtocolError):
            await self.send(ev.reply)
        elif isinstance(ev, wire.Lhlo):
            self.rcpts.clear()
            size = self.ctx.cfg.lmtp.max_message_size
            await self.send(wire.reply(250, "\n".join([
                self.ctx.cfg.hostname, "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME",
                f"SIZE {size}"])))
        elif isinstance(ev, wire.MailFrom):
            self.rcpts.clear()
            self.mail_from = ev.address
            await self.send(wire.reply(250, "OK", "2.1.0"))
        elif isinstance(ev, wire.RcptTo):
            try:
                target = resolve_recipient(self.ctx, ev.address)
            except InvalidName:     # e.g. a name too long for any account
                target = None
            except StoreError as exc:
                log.warning("recipient %r not resolved: %s", ev.address, exc)
                await self.send(wire.reply(451, "Recipient lookup failed; try again later",
                                           "4.3.0"))
                return True
            if target is None:
                await self.send(wire.reply(550, f"No such user here: {ev.address}", "5.1.1"))
            else:
                self.rcpts.append((ev.address, *target))
                self.conn.accept_recipient()
                await self.send(wire.reply(250, "OK", "2.1.5"))
        elif isinstance(ev, wire.DataCommand):
            self.conn.start_data()
            await self.send(wire.reply(354, "Start mail input; end with <CRLF>.<CRLF>"))
        elif isinstance(ev, wire.MessageData):
            await self.deliver(ev)
        elif isinstance(ev, wire.Simple):
            if ev.verb == "QUIT":
                await self.send(wire.reply(221, "Bye", "2.0.0"))
                return False
            if ev.verb == "RSET":
                self.rcpts.clear()
            if ev.verb == "VRFY":
                await self.send(wire.reply(252, "Cannot VRFY; send some mail", "2.5.0"))
            elif ev.verb == "HELP":
                await self.send(wire.reply(214, "See RFC 2033", "2.0.0"))
            else:
                await self.send(wire.reply(250, "OK", "2.0.0"))
        return True

    async def deliver(self, ev: wire.MessageData) -> None:
        rcpts, self.rcpts = self.rcpts, []
        if ev.too_big:
            limit = self.ctx.cfg.lmtp.max_message_size
            await self.send(b"".join(
                wire.reply(552, f"Message exceeds the size limit of {limit} bytes", "5.3.4")
                for _ in rcpts))
            return
        raw = ev.data
        now = int(time.time())
        if len(raw) >= storeio.OFFLOOP_BYTES:
            new = await storeio.cpu(ingest.prepare, raw, now)
        else:
            new = ingest.prepare(raw, now)
        results: list[bytes | None] = [None] * len(rcpts)

        async def one(i, acc, mbx):
            results[i] = await store_copy(self.ctx, acc, mbx, new)

        async with trio.open_nursery() as n:
            for i, (_addr, acc, mbx) in enumerate(rcpts):
                n.start_soon(one, i, acc, mbx)
        for (addr, _a, _m), r in zip(rcpts, results):
            log.debug("delivered to %s: %s", addr, r.strip())
        # RFC 2033 4.2: one reply per accepted recipient, in RCPT order
        await self.send(b"".join(results))
        # the vacation response (RFC 3834), after the replies: never delays them
        for (addr, acc, _m), r in zip(rcpts, results):
            if r.startswith(b"250"):
                await autoreply.after_delivery(self.ctx, acc, addr, self.mail_from, raw)


async def store_copy(ctx: ServerContext, acc: int, mbx: int, new) -> bytes:
    """Store one recipient's copy of NEW (ingest.prepare) in mailbox MBX of
    ACC; -> the LMTP reply for it (250 once durable).  The outbound queue
    delivers to local recipients through this too."""
    try:
        await storeio.write(ctx.store, ops.append, acc, [mbx], new, [], ctx.cfg.store.quota,
                            delivery=True)
        return wire.reply(250, "Delivered", "2.0.0")
    except OverQuota:
        return wire.reply(552, "Mailbox full: quota exceeded", "5.2.2")
    except StoreFullError:
        return wire.reply(452, "Mail store full; try again later", "4.3.1")
    except StoreError as exc:
        return wire.reply(451, f"Delivery failed: {exc}", "4.3.0")


async def serve(ctx: ServerContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
    listeners = await open_listeners(ctx.cfg.lmtp.listen)

    async def handler(stream):
        await LmtpSession(ctx, stream).run()

    task_status.started(bound_addresses(listeners))
    await serve_connections("lmtp", listeners, handler)
