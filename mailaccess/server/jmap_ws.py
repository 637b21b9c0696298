"""JMAP over WebSocket (RFC 8887): the glue between a WebSocket and the
method layer.

One socket: requests are read and answered in order (each through
``run_request``, holding one of the user's API slots like an HTTP API
request); a push task, started by ``WebSocketPushEnable`` and stopped by
``WebSocketPushDisable``, sends StateChange messages from the bus with a
``pushState``.  Message shapes are proto/jmap/ws.py's.
"""
from __future__ import annotations

import logging

import trio

from .. import storeio
from ..proto.jmap import ws as W
from ..proto.jmap.errors import RequestError
from . import jmap_api, jmap_push
from .http import SlotsFull

log = logging.getLogger("mailaccess.jmap")


class _Push:
    def __init__(self):
        self.scope: trio.CancelScope | None = None


async def serve_socket(jmap, ws, principal) -> None:
    """Serve JMAP on the accepted WebSocket WS for PRINCIPAL until it closes."""
    ctx = jmap.ctx
    acc = principal.account
    limits = jmap.limits
    push = _Push()
    svc = jmap.svc

    async def pusher(types, push_state, task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as scope:
            push.scope = scope
            task_status.started()
            seen = ctx.bus.latest(acc)
            changed, state = jmap_push.current(ctx.store, acc, types)
            since = jmap_push.parse_push_state(push_state)
            sent: dict = {}
            first = jmap_push.unsent(changed, sent)
            if push_state is not None and (since is None or int(state) > since):
                await ws.send_text(W.state_change(first, state))
            with ctx.bus.subscribe(acc, kinds=types, since=seen) as sub:
                while True:
                    n = await sub.wait()
                    changed, state = jmap_push.changed(ctx.store, acc, n.kinds, types)
                    changed = jmap_push.unsent(changed, sent)
                    if changed:
                        await ws.send_text(W.state_change(changed, state))

    async with trio.open_nursery() as n:
        while True:
            msg = await ws.receive()
            if msg is None:
                break
            try:
                m = await jmap_api.parse_off_loop(W.parse_message, msg, limits)
            except W.WsError as exc:
                await ws.send_text(W.request_error(exc.error, exc.request_id))
                continue
            if isinstance(m, W.PushEnable):
                if push.scope is not None:
                    push.scope.cancel()
                types = frozenset(m.data_types) if m.data_types is not None else None
                await n.start(pusher, types, m.push_state)
                continue
            if isinstance(m, W.PushDisable):
                if push.scope is not None:
                    push.scope.cancel()
                    push.scope = None
                continue
            try:
                with svc.slot("api", acc):
                    ctx_j = jmap_api.JmapContext(ctx.store, ctx.bus, ctx.cfg, acc,
                                                 principal.name, limits,
                                                 request_bytes=len(msg))
                    out = await jmap_api.run_request(
                        ctx_j, m.request, jmap.session_state(acc, principal.name))
                if ctx_j.response_bytes >= jmap_api.OFFLOOP_RESPONSE:
                    text = await storeio.cpu(W.response, m.id, out)
                else:
                    text = W.response(m.id, out)
                await ws.send_text(text)
            except SlotsFull:
                await ws.send_text(W.request_error(
                    RequestError("limit", 429, "too many concurrent requests",
                                 limit="maxConcurrentRequests"), m.id))
            except RequestError as exc:
                await ws.send_text(W.request_error(exc, m.id))
        n.cancel_scope.cancel()
