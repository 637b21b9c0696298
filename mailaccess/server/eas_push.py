"""Waiting for news for ActiveSync's long-lived requests (Ping, hanging
Sync): on the store's event bus, never by polling.

SKELETON (lead): ``wait_for_changes`` is the contract Sync (Wait /
HeartbeatInterval) and Ping build on; the eas-push branch owns this module
(caps per user and in all, a newer request from the same device ending the
older one, the Ping command itself).
"""
from __future__ import annotations

import trio

from ..bus import Notification


async def wait_for_changes(ctx, mailboxes: list[int] | None, seconds: float,
                           since: int) -> Notification | None:
    """Wait up to SECONDS for a change to ctx.account newer than modseq
    SINCE touching MAILBOXES (None: anything, hierarchy changes included).
    Returns the notification, or None when the time ran out (or, later, when
    a newer request from the same device ended this one).  The caller holds
    ctx.released() around the call and re-checks what actually changed."""
    with trio.move_on_after(seconds):
        return await ctx.bus.wait(ctx.account, None, mailboxes, since=since)
    return None
