"""A WebSocket over a Trio stream (RFC 6455 via wsproto), after the HTTP
service (server/http.py) accepted the upgrade: ``receive()`` -> str | bytes
| None (closed), ``send_text``, ``close``.  Messages are bounded; pings are
answered."""
from __future__ import annotations

import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from .http_messages import Request

RECV = 65536
# frames one message may come in, at most (a client fragments at kilobytes:
# a 10 MB message in 4 KB frames is 2,560).  wsproto takes 7.5 us a frame
# on the loop, and each fragment is a str kept until the message ends: a
# 10 MB message in 2-byte frames would be 5,000,000 of them, about 37 s.
MAX_FRAGMENTS = 16384


class WebSocket:
    """One accepted WebSocket: ``receive()`` -> str | bytes | None (closed),
    ``send_text``, ``close``.  Sends are serialised (a push task and the
    request loop may both send); pings are answered inside ``receive``."""

    def __init__(self, stream: trio.abc.Stream, trailing: bytes, *, max_message: int,
                 write_timeout: float, subprotocol: str | None, request: Request):
        self.stream = stream
        self.conn = WsConnection(ConnectionType.SERVER, trailing_data=trailing)
        self.max_message = max_message
        self.write_timeout = write_timeout
        self.subprotocol = subprotocol
        self.request = request
        self._lock = trio.Lock()
        self._parts: list = []
        self._size = 0
        self.closed = False

    async def _send(self, event) -> None:
        async with self._lock:
            if self.conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                return
            data = self.conn.send(event)
            with trio.fail_after(self.write_timeout):
                await self.stream.send_all(data)

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise trio.ClosedResourceError("the WebSocket is closed")
        await self._send(TextMessage(data=text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            try:
                await self._send(CloseConnection(code=code, reason=reason))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
                pass

    async def receive(self) -> str | bytes | None:
        while True:
            for ev in self.conn.events():
                if isinstance(ev, (TextMessage, BytesMessage)):
                    self._size += len(ev.data)
                    if self._size > self.max_message:
                        await self.close(1009, "message too big")
                        return None
                    if len(self._parts) >= MAX_FRAGMENTS:
                        await self.close(1009, "message in too many frames")
                        return None
                    self._parts.append(ev.data)
                    if ev.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        return ("" if isinstance(ev, TextMessage) else b"").join(parts)
                elif isinstance(ev, Ping):
                    await self._send(ev.response())
                elif isinstance(ev, CloseConnection):
                    if not self.closed:
                        self.closed = True
                        try:
                            await self._send(ev.response())
                        except (trio.BrokenResourceError, trio.ClosedResourceError,
                                trio.TooSlowError):
                            pass
                    return None
            if self.closed:
                return None
            data = await self.stream.receive_some(RECV)
            if not data:
                self.closed = True
                return None
            try:
                self.conn.receive_data(data)
            except Exception:      # a protocol violation wsproto raises on
                await self.close(1002, "protocol error")
                return None
