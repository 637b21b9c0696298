"""The NOTIFY task of one IMAP connection (RFC 5465): news sent between commands.

One task per connection, started with the session's first ``NOTIFY SET``
(in the IMAP service's nursery, under a cancel scope of the connection's;
asleep after NOTIFY NONE until the next SET).  While a NOTIFY is in effect
it holds one subscription on the bus for the account (at most one merged
pending notification: memory does not grow with the rate of changes), and
on each wake-up:

* waits for its turn: the connection's ``turn`` lock is held by the reader
  while it handles a command (from the parsed command to its tagged line,
  IDLE's wait for DONE excepted), and a command that is still arriving
  (``receiver.in_command``: a literal being uploaded, pipelined commands)
  is waited for too.  Untagged news therefore never falls inside a
  command's responses (RFC 5465 §5; RFC 9051 §7.5.1); what happened meanwhile
  is merged into the next wake-up;
* for the selected mailbox (SELECTED / SELECTED-DELAYED), runs the session's
  ``refresh`` (EXISTS, EXPUNGE or VANISHED, FETCH FLAGS) and sends the
  MessageNew FETCH attributes for new messages;
* for the other mailboxes, sends LIST (MailboxName, SubscriptionChange) and
  STATUS (MessageNew, MessageExpunge, FlagChange) from
  ``views/imap_notify.Watch.catch_up``;
* past ``imap_notify.MAX_LINES`` responses at once sends
  ``* OK [NOTIFICATIONOVERFLOW]`` and behaves as after NOTIFY NONE (§5.8).

Every write goes through the connection's ``send`` (one writer lock, a
write deadline, never cancelled half-way).
"""
from __future__ import annotations

import bisect
import logging

import trio

from ..proto.imap import serialize as S
from ..proto.imap import state as st
from ..views import imap_notify as nt
from .imap_session import No

log = logging.getLogger("mailaccess.imap")


class Notifier:
    def __init__(self, conn):
        self.conn = conn
        self.session = conn.session
        self.bus = conn.ctx.bus
        self._wake = trio.Event()
        self._scope: trio.CancelScope | None = None
        self.session.on_notify = self.reset

    def reset(self) -> None:
        """The session's NOTIFY changed (SET, NONE, UNAUTHENTICATE): drop the
        old subscription and start over.  Called by a command, so never
        while ``emit`` runs (both hold the turn)."""
        if self._scope is not None:
            self._scope.cancel()
        self._wake.set()

    async def run(self) -> None:
        s = self.session
        while True:
            watch = s.notify
            if watch is None:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            with trio.CancelScope() as scope:
                self._scope = scope
                with self.bus.subscribe(s.acc, since=watch.since) as sub:
                    while s.notify is watch:
                        await sub.wait()
                        await self.deliver(watch)
            self._scope = None

    async def deliver(self, watch: nt.Watch) -> None:
        """Wait for the turn (no command running or arriving), then emit."""
        conn, s = self.conn, self.session
        while True:
            done = conn.command_done
            async with conn.turn:
                if s.notify is not watch or s.state not in (st.AUTHENTICATED, st.SELECTED):
                    return
                if not conn.receiver.in_command:
                    await self.emit(watch)
                    return
            await done.wait()

    async def emit(self, watch: nt.Watch) -> None:
        s, spec = self.session, watch.spec
        sel = s.sel if s.state is st.SELECTED else None
        try:
            if sel is not None and spec.selected:
                if watch.sel is not sel:        # selected since we last looked
                    watch.sel, watch.fetch_from = sel, sel.uidnext
                with s.store.view() as v:
                    news = nt.selected_news(v, s.acc, spec, sel)
                if news:
                    await s.refresh(allow_expunge=not spec.delayed)
                    if s.state is st.LOGOUT:    # the mailbox was deleted: BYE
                        await self.conn.flush()
                        self.conn.close_soon()
                        return
                if spec.fetch:
                    # also for messages a command's own catch-up announced
                    # meanwhile (their EXISTS went out with it, as Dovecot does)
                    await self.fetch_new(watch, sel)
            if spec.watches_others:
                with s.store.view() as v:
                    lines = watch.catch_up(v, s.acc, sel.mbx if sel is not None else None,
                                           condstore=s.condstore, utf8=s.utf8)
                s.out.extend(lines)
        except nt.Overflow:
            s.notify = None     # NOTIFY NONE (the loop in run sees it)
            s.out.append(S.untagged("OK", "too many notifications; NOTIFY NONE is in effect",
                                    "NOTIFICATIONOVERFLOW"))
        await self.conn.flush()

    async def fetch_new(self, watch: nt.Watch, sel) -> None:
        """RFC 5465 5.2: the MessageNew FETCH attributes of the new messages."""
        uids = sel.uids
        new = [u for u in uids[bisect.bisect_left(uids, watch.fetch_from):]
               if u not in sel.gone]
        if not new:
            return
        if len(new) > nt.MAX_LINES:
            watch.fetch_from = new[-1] + 1
            raise nt.Overflow()
        watch.fetch_from = new[-1] + 1
        try:
            await self.session.send_fetch(new, watch.spec.fetch, uid_cmd=False)
        except No as exc:       # e.g. UNKNOWN-CTE of a BINARY attribute
            self.session.out.append(S.untagged("NO", f"NOTIFY FETCH: {exc.text}", exc.code))
