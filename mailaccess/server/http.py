"""The HTTP service: h11 on Trio, shared by JMAP (and later ActiveSync).

What this module owns: the listener, one task per connection, HTTP/1.1
framing (h11), the limits every request is held to, authentication, the
route table, WebSocket upgrades (wsproto) and graceful shutdown.  It knows no
JMAP: route providers (``ROUTE_MODULES``, e.g. server/jmap.py) hand it
``Route``s whose handlers take a ``Request`` and return a ``Response``, a
``Stream`` (the handler writes the body as it goes: EventSource) or an
``Upgrade`` (the handler then owns a ``WebSocket``).  Those types and the
sans-IO helpers are in server/http_messages.py, the WebSocket in
server/http_ws.py; this module re-exports what handlers import.

Limits, all in config ``[http]`` (``HttpConfig``):

* connections: ``max_connections`` at once and ``max_connections_per_ip``
  from one address; beyond them a connection gets 503 and is closed;
* the request line and headers: ``max_header_bytes`` (431) within
  ``header_timeout`` seconds of their first byte; an idle kept-alive
  connection is closed after ``keepalive_timeout``;
* the body: the route's limit (``Route.max_body``, else ``max_body_bytes``),
  413 before anything is read when Content-Length says it is too big; read
  within ``body_timeout`` into one buffer; a chunked body in more than
  ``MAX_CHUNKS`` chunks plus one per ``MIN_CHUNK`` bytes is 400; each
  response written within ``write_timeout``;
* per user: each route may name a ``slot`` (JMAP API requests, uploads, push
  streams), a number of requests of that kind one user may have running at
  once (``HttpService.slot_limits``); beyond it the route's ``busy`` answer;
* malformed requests and request-smuggling shapes (Content-Length with
  Transfer-Encoding, conflicting Content-Lengths, bad chunking, obs-folded or
  bad header lines, a missing or doubled Host) get 400 and the connection is
  closed: h11 finds most, ``http_messages.smuggling`` the rest.

Every connection is a task of one nursery; API requests, push streams and
uploads are told apart by their slots, so a flood of one kind is refused
without starving the others.  Shutdown (the service's task cancelled):
listeners close, idle connections and push streams end, requests in flight
get ``shutdown_grace`` seconds to finish, then the rest is cancelled.

Authentication on every request of a route with ``auth=True``: HTTP Basic
through the login service (``ctx.auth.login``: the verified-credential cache
and the failed-login penalty, never argon2 per request), or an app-password
token (mailaccess/tokens.py) as ``Authorization: Bearer`` or as the Basic
password.  Failures answer 401 with ``WWW-Authenticate`` for both schemes.
"""
from __future__ import annotations

import errno
import importlib
import logging
import time
from contextlib import contextmanager

import h11
import trio
from wsproto.utilities import generate_accept_token

from .. import storeio, tokens
from ..store import tokens as store_tokens
from .app import ServerContext, bound_addresses, open_listeners
from .http_messages import (REASONS, Principal, Request, Response, Route, Stream, Upgrade,
                            forwarded_for, media_type, offered_subprotocols, parse_basic,
                            parse_bearer, parse_target, problem, smuggling,
                            websocket_request_problem)
from .http_ws import WebSocket
from .tls import server_context

__all__ = ["HttpService", "SlotsFull", "serve", "service_of", "Principal", "Request",
           "Response", "Route", "Stream", "Upgrade", "WebSocket", "media_type",
           "offered_subprotocols", "problem", "websocket_request_problem"]

log = logging.getLogger("mailaccess.http")

RECV = 65536
REALM = "mailaccess"
SERVER_NAME = b"mailaccess"
# modules whose ``routes(service) -> list[Route]`` the service serves
ROUTE_MODULES = ["mailaccess.server.jmap", "mailaccess.server.eas",
                 "mailaccess.server.autodiscover"]
# a token's last use is written at most this often (seconds)
TOKEN_TOUCH_INTERVAL = 3600
# a chunked body (RFC 9112 §7.1) may come in MAX_CHUNKS chunks, plus one
# per MIN_CHUNK bytes; beyond, 400.  h11 takes ~7 us of the loop per chunk:
# a 10 MB upload in 2-byte chunks was 38 s of one core
# (tests/test_memory_bounds_audit.py)
MAX_CHUNKS = 16384
MIN_CHUNK = 256


# --- the service ---------------------------------------------------------------------------------

class SlotsFull(Exception):
    """All of a user's slots of one kind are taken (``HttpService.slot``)."""


class HttpService:
    def __init__(self, ctx: ServerContext, routes: list[Route] | None = None):
        self.ctx = ctx
        self.cfg = ctx.cfg.http
        self.routes: list[Route] = list(routes or [])
        self.scheme = "https" if self.cfg.tls else "http"
        self.connections = 0
        self.per_ip: dict[str, int] = {}
        self.active_requests = 0
        self.slots: dict[tuple[str, int], int] = {}
        self.slot_limits: dict[str, int] = {"push": self.cfg.max_push_streams_per_user}
        self.draining = False
        # called (synchronously) when the service starts draining: long waits
        # (ActiveSync Ping) answer at once instead of holding shutdown_grace
        self.drain_hooks: list = []
        self._idle_scopes: set[trio.CancelScope] = set()
        self._stream_scopes: set[trio.CancelScope] = set()
        self._drained = trio.Event()
        self._token_touched: dict[tuple[int, str], float] = {}
        self.ssl_context = (server_context(ctx.tls_cert, ctx.tls_key)
                            if self.cfg.tls else None)

    def add_routes(self, routes: list[Route]) -> None:
        self.routes.extend(routes)

    def find_route(self, method: str, path: str) -> tuple[Route | None, bool]:
        """(the route, whether PATH matched at all: False -> 404, True with
        None -> 405)."""
        seen = False
        for r in self.routes:
            p = path.lower() if r.nocase else path
            if (p.startswith(r.path) if r.prefix else p == r.path):
                seen = True
                if r.method in ("*", method) or (r.method == "GET" and method == "HEAD"):
                    return r, True
        return None, seen

    # --- per-user slots --------------------------------------------------------------------

    @contextmanager
    def slot(self, name: str, account: int):
        """Hold one of ACCOUNT's NAME slots; raises SlotsFull when all are
        taken (the caller answers)."""
        key = (name, account)
        limit = self.slot_limits.get(name)
        n = self.slots.get(key, 0)
        if limit is not None and n >= limit:
            raise SlotsFull(name)
        self.slots[key] = n + 1
        try:
            yield
        finally:
            left = self.slots[key] - 1
            if left:
                self.slots[key] = left
            else:
                del self.slots[key]

    @contextmanager
    def slot_released(self, name: str, account: int):
        """Give back one of ACCOUNT's NAME slots (held by the calling request)
        for a while: a long wait (ActiveSync Ping, which has caps of its
        own) does not count as a request being worked on.  Taken back
        after, even past the limit (the request is already admitted)."""
        key = (name, account)
        n = self.slots.get(key, 0)
        if n <= 0:
            yield
            return
        if n == 1:
            del self.slots[key]
        else:
            self.slots[key] = n - 1
        try:
            yield
        finally:
            self.slots[key] = self.slots.get(key, 0) + 1

    # --- accepting ---------------------------------------------------------------------------

    async def run(self, listeners) -> None:
        """Accept until drained; shielded, so a cancel of the service is
        turned into a drain by ``serve`` instead of cutting requests off."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as conns:
                for ln in listeners:
                    conns.start_soon(self._accept_loop, ln, conns)
                await self._drained.wait()
                for ln in listeners:
                    await trio.aclose_forcefully(ln)
                for sc in list(self._idle_scopes) + list(self._stream_scopes):
                    sc.cancel()
                with trio.move_on_after(self.cfg.shutdown_grace):
                    while self.active_requests:
                        await trio.sleep(0.05)
                conns.cancel_scope.cancel()

    def drain(self) -> None:
        self.draining = True
        self._drained.set()
        for hook in list(self.drain_hooks):
            try:
                hook()
            except Exception:
                log.exception("an HTTP drain hook failed")
        for sc in list(self._idle_scopes) + list(self._stream_scopes):
            sc.cancel()

    async def _accept_loop(self, listener, nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                    log.error("accept failed (%s); pausing 100 ms", exc)
                    await trio.sleep(0.1)
                    continue
                raise
            peer = _peer(stream)
            if self.draining:
                await trio.aclose_forcefully(stream)
                continue
            if (self.connections >= self.cfg.max_connections
                    or self.per_ip.get(peer, 0) >= self.cfg.max_connections_per_ip):
                nursery.start_soon(self._refuse_connection, stream, peer)
                continue
            self.connections += 1
            self.per_ip[peer] = self.per_ip.get(peer, 0) + 1
            nursery.start_soon(self._connection, stream, peer)

    async def _refuse_connection(self, stream, peer: str) -> None:
        log.warning("HTTP connection from %s refused: %d connections (%d from it)",
                    peer or "?", self.connections, self.per_ip.get(peer, 0))
        try:
            if self.ssl_context is None:
                with trio.move_on_after(1):
                    await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\n"
                                          b"Connection: close\r\nRetry-After: 5\r\n"
                                          b"Content-Length: 0\r\n\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _connection(self, stream, peer: str) -> None:
        try:
            if self.ssl_context is not None:
                stream = trio.SSLStream(stream, self.ssl_context, server_side=True)
                with trio.fail_after(self.cfg.header_timeout):
                    await stream.do_handshake()
            await Connection(self, stream, peer).run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception:
            log.exception("HTTP connection from %s failed", peer or "?")
        finally:
            self.connections -= 1
            left = self.per_ip.get(peer, 1) - 1
            if left:
                self.per_ip[peer] = left
            else:
                self.per_ip.pop(peer, None)
            await trio.aclose_forcefully(stream)

    # --- authentication ----------------------------------------------------------------------

    async def authenticate(self, req: Request) -> Principal | Response:
        auth = self.ctx.auth
        value = req.header("authorization")
        if value:
            bearer = parse_bearer(value)
            if bearer is not None:
                return await self._token(req, bearer, None) or self.unauthorized()
            basic = parse_basic(value)
            if basic is not None:
                user, password = basic
                if password.startswith(tokens.PREFIX):
                    return await self._token(req, password, user) or self.unauthorized()
                result = await auth.login(user, password, address=req.peer)
                if result.ok:
                    return Principal(result.account, result.name, "basic")
                if result.unavailable:
                    r = problem(503, "Service Unavailable", "too many logins at once; retry")
                    r.headers.append(("retry-after", "5"))
                    return r
        return self.unauthorized()

    async def _token(self, req: Request, token: str, user: str | None) -> Principal | None:
        auth = self.ctx.auth
        await auth.throttle(req.peer, None)
        t = tokens.verify(self.ctx.store, token)
        if t is not None:
            with self.ctx.store.view() as v:
                a = v.account(t.account)
            if a is not None and (user is None or user.casefold() == a.name.casefold()):
                auth.record(req.peer, a.name, ok=True, known=True)
                await self._touch_token(t)
                return Principal(a.id, a.name, "bearer" if user is None else "token")
        auth.record(req.peer, user, ok=False, known=False)
        return None

    async def _touch_token(self, t) -> None:
        now = time.time()
        key = (t.account, t.name)
        last = self._token_touched.get(key, t.last_used)
        if now - last < TOKEN_TOUCH_INTERVAL:
            return
        self._token_touched[key] = now
        if len(self._token_touched) > 100_000:
            self._token_touched.clear()
        await storeio.write(self.ctx.store, store_tokens.touch, t.account, t.name, int(now))

    def unauthorized(self) -> Response:
        r = problem(401, "Unauthorized", "authenticate with Basic or Bearer credentials")
        r.headers += [("www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
                      ("www-authenticate", f'Bearer realm="{REALM}"')]
        return r

    # --- URLs -----------------------------------------------------------------------------------

    def base_url(self, req: Request) -> str:
        """The absolute base URL clients use: [http] public_url, or the
        request's scheme and Host (the listener's address without one)."""
        if self.cfg.public_url:
            return self.cfg.public_url.rstrip("/")
        host = req.host
        if not host:
            bound = self.ctx.bound.get("http") or [(self.cfg.listen.host, self.cfg.listen.port)]
            h, p = bound[0]
            host = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        return f"{req.scheme}://{host}"


class Connection:
    """One client connection: requests in order (HTTP/1.1 keep-alive)."""

    def __init__(self, service: HttpService, stream, peer: str):
        self.svc = service
        self.cfg = service.cfg
        self.stream = stream
        self.peer = peer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.cfg.max_header_bytes)

    async def _event(self):
        while True:
            ev = self.h11.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            data = await self.stream.receive_some(RECV)
            self.h11.receive_data(data)

    async def send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            with trio.fail_after(self.cfg.write_timeout):
                await self.stream.send_all(data)

    async def run(self) -> None:
        while not self.svc.draining:
            try:
                ev = await self._head()
            except h11.RemoteProtocolError as exc:
                await self._fail(exc.error_status_hint or 400, str(exc))
                return
            except trio.TooSlowError:
                await self._fail(408, "the request head took too long")
                return
            if ev is None or isinstance(ev, h11.ConnectionClosed):
                return
            keep = await self._request(ev)
            if not keep or self.h11.our_state is h11.MUST_CLOSE \
                    or self.h11.their_state is not h11.DONE:
                return
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _head(self):
        """The next request head, or None when the connection should just
        close (idle too long, drained, closed by the client)."""
        ev = self.h11.next_event()
        if ev is h11.NEED_DATA:
            with trio.CancelScope(deadline=trio.current_time() + self.cfg.keepalive_timeout) \
                    as idle:
                self.svc._idle_scopes.add(idle)
                try:
                    data = await self.stream.receive_some(RECV)
                finally:
                    self.svc._idle_scopes.discard(idle)
            if idle.cancelled_caught:
                return None
            self.h11.receive_data(data)
            if not data:
                return None
            with trio.fail_after(self.cfg.header_timeout):
                ev = await self._event()
        return ev

    async def _fail(self, status: int, why: str) -> None:
        """A malformed request: answer STATUS (if h11 still lets us) and close."""
        log.info("HTTP %d to %s: %s", status, self.peer or "?", why)
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            r = problem(status, REASONS.get(status, "Bad Request"), why)
            try:
                await self._respond(r, close=True)
            except (h11.LocalProtocolError, trio.TooSlowError):
                pass

    async def _respond(self, r: Response, *, close: bool = False, head: bool = False) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in r.headers]
        headers += [(b"content-length", str(len(r.body)).encode()), (b"server", SERVER_NAME)]
        if close or self.svc.draining:
            headers.append((b"connection", b"close"))
        # one write for the whole response (no small segments for Nagle to hold)
        out = [self.h11.send(h11.Response(status_code=r.status, headers=headers,
                                          reason=REASONS.get(r.status, "").encode()))]
        if r.body and not head:
            out.append(self.h11.send(h11.Data(data=r.body)))
        out.append(self.h11.send(h11.EndOfMessage()))
        data = b"".join(x for x in out if x)
        with trio.fail_after(self.cfg.write_timeout):
            await self.stream.send_all(data)

    async def _request(self, ev: h11.Request) -> bool:
        """Serve one request -> whether the connection may carry another."""
        bad = smuggling(list(ev.headers))
        if bad:
            await self._fail(400, bad)
            return False
        size = len(ev.target) + sum(len(k) + len(v) + 4 for k, v in ev.headers)
        if size > self.cfg.max_header_bytes:     # h11 bounds only an incomplete head
            await self._fail(431, "the request head is too large")
            return False
        target = ev.target.decode("latin-1")
        parsed = parse_target(target)
        if parsed is None:
            await self._fail(400, "the request target is not a path")
            return False
        method = ev.method.decode("ascii", "replace").upper()
        req = Request(method, target, parsed[0], parsed[1],
                      [(k.decode("latin-1"), v.decode("latin-1")) for k, v in ev.headers],
                      self.peer, self.svc.scheme)
        if self.peer in self.cfg.trusted_proxies:
            forwarded_for(req)
        if req.header("transfer-encoding") is None and \
                (req.header("content-length") or "0").split(",")[0].strip() == "0":
            self.h11.next_event()       # no body: its EndOfMessage is here already
        route, seen = self.svc.find_route(method, req.path)
        if route is None:
            r = problem(405, "Method Not Allowed") if seen else problem(404, "Not Found")
            await self._respond(r, close=self.h11.their_state is not h11.DONE)
            return False if self.h11.their_state is not h11.DONE else True
        req.route = route
        req.match = req.path[len(route.path):] if route.prefix else ""
        self.svc.active_requests += 1
        try:
            if route.auth:
                who = await self.svc.authenticate(req)
                if isinstance(who, Response):
                    await self._respond(who, close=self.h11.their_state is not h11.DONE)
                    return self.h11.their_state is h11.DONE
                req.principal = who
            if route.slot and req.principal is not None:
                try:
                    with self.svc.slot(route.slot, req.principal.account):
                        return await self._body_and_handle(req, route, ev)
                except SlotsFull:
                    r = route.busy() if route.busy else problem(429, "Too Many Requests")
                    await self._respond(r, close=self.h11.their_state is not h11.DONE)
                    return self.h11.their_state is h11.DONE
            return await self._body_and_handle(req, route, ev)
        finally:
            self.svc.active_requests -= 1

    async def _body_and_handle(self, req: Request, route: Route, ev: h11.Request) -> bool:
        limit = route.max_body if route.max_body is not None else self.cfg.max_body_bytes
        too_large = route.too_large() if route.too_large else problem(
            413, "Content Too Large", f"the body is larger than {limit} bytes")
        if too_large.status == 400:      # a JMAP limit problem: still 413 on the wire
            too_large.status = 413
        cl = req.header("content-length")
        if cl is not None and int(cl.split(",")[0]) > limit:
            await self._respond(too_large, close=True)
            return False
        try:
            body = await self._read_body(limit)
        except h11.RemoteProtocolError as exc:
            await self._fail(exc.error_status_hint or 400, str(exc))
            return False
        except trio.TooSlowError:
            await self._fail(408, "the request body took too long")
            return False
        if body is None:
            await self._respond(too_large, close=True)
            return False
        req.body = body
        req.wait_closed = self._wait_closed
        try:
            out = await route.handler(req)
        except Exception:
            log.exception("HTTP handler for %s %s failed", req.method, req.path)
            out = problem(500, "Internal Server Error")
        if isinstance(out, Response):
            await self._respond(out, head=req.method == "HEAD")
            return True
        if isinstance(out, Stream):
            await self._stream(out)
            return False
        if isinstance(out, Upgrade):
            await self._upgrade(req, ev, out)
            return False
        raise TypeError(f"a handler returned {out!r}")

    async def _read_body(self, limit: int) -> bytes | None:
        """The whole body (None: over LIMIT)."""
        if self.h11.their_state is not h11.SEND_BODY:
            return b""
        if self.h11.they_are_waiting_for_100_continue:
            await self.send(h11.InformationalResponse(status_code=100, headers=[]))
        # one buffer, not a list of pieces: a piece is one h11 event, a chunk
        # of a chunked body or a part of one, and each bytes object costs ~40
        # bytes beside its data (a 10 MB body in 2-byte chunks held 386 MB)
        body = bytearray()
        chunks = 0
        with trio.fail_after(self.cfg.body_timeout):
            while True:
                ev = await self._event()
                if isinstance(ev, h11.Data):
                    if len(body) + len(ev.data) > limit:
                        return None
                    body += ev.data
                    if ev.chunk_start:
                        chunks += 1
                        if chunks > MAX_CHUNKS + len(body) // MIN_CHUNK:
                            raise h11.RemoteProtocolError(
                                "the body comes in too many chunks", 400)
                elif isinstance(ev, h11.EndOfMessage):
                    return bytes(body)
                elif isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                    raise h11.RemoteProtocolError("the body ended early", 400)

    async def _wait_closed(self) -> None:
        """Return when the client closes the connection (a handler's long
        wait races this: ActiveSync Ping).  Only while the handler runs and
        nothing else reads; bytes the client sends meanwhile (a pipelined
        request) go to h11 for later, up to max_header_bytes, then reading
        stops."""
        got = 0
        while got <= self.cfg.max_header_bytes:
            try:
                data = await self.stream.receive_some(RECV)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self.h11.receive_data(data)
            got += len(data)
        await trio.sleep_forever()

    async def _stream(self, out: Stream) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out.headers]
        # the connection ends with the stream: say so, or a client may reuse it
        headers += [(b"server", SERVER_NAME), (b"connection", b"close")]
        await self.send(h11.Response(status_code=out.status, headers=headers,
                                     reason=REASONS.get(out.status, "").encode()))

        async def write(data: bytes) -> None:
            if data:
                await self.send(h11.Data(data=data))

        async def watch_close():
            # the client going away ends the stream (EventSource reconnects);
            # a TLS client that closes without close_notify (httpx, jmapc) is
            # a broken stream, which is the same thing here, not an error
            while True:
                try:
                    data = await self.stream.receive_some(RECV)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    scope.cancel()
                    return

        with trio.CancelScope() as scope:
            self.svc._stream_scopes.add(scope)
            try:
                async with trio.open_nursery() as n:
                    n.start_soon(watch_close)
                    await out.run(write)
                    n.cancel_scope.cancel()
            finally:
                self.svc._stream_scopes.discard(scope)
        try:
            with trio.move_on_after(1):
                await self.send(h11.EndOfMessage())
        except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _upgrade(self, req: Request, ev: h11.Request, out: Upgrade) -> None:
        key = (req.header("sec-websocket-key") or "").encode("latin-1")
        headers = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                   (b"sec-websocket-accept", generate_accept_token(key))]
        if out.subprotocol:
            headers.append((b"sec-websocket-protocol", out.subprotocol.encode()))
        await self.send(h11.InformationalResponse(status_code=101, headers=headers))
        trailing, _closed = self.h11.trailing_data
        ws = WebSocket(self.stream, bytes(trailing), max_message=out.max_message,
                       write_timeout=self.cfg.write_timeout, subprotocol=out.subprotocol,
                       request=req)
        with trio.CancelScope() as scope:
            self.svc._stream_scopes.add(scope)
            try:
                await out.run(ws)
            finally:
                self.svc._stream_scopes.discard(scope)
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await ws.close(1001 if scope.cancelled_caught else 1000)


def _peer(stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        name = sock.getpeername() if sock is not None else None
    except OSError:
        return ""
    return str(name[0]) if isinstance(name, tuple) and name else ""


async def serve(ctx: ServerContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
    cfg = ctx.cfg.http
    service = HttpService(ctx)
    for name in ROUTE_MODULES:
        mod = importlib.import_module(name)
        service.add_routes(mod.routes(service))
    listeners = await open_listeners(cfg.listen)
    _RUNNING[id(ctx)] = service
    try:
        await _serve(service, listeners, task_status)
    finally:
        _RUNNING.pop(id(ctx), None)


# the running service of each ServerContext (the context carries no
# service's state: tests and status pages look it up here)
_RUNNING: dict[int, HttpService] = {}


def service_of(ctx: ServerContext) -> HttpService | None:
    return _RUNNING.get(id(ctx))


async def _serve(service: HttpService, listeners, task_status) -> None:
    async with trio.open_nursery() as n:
        n.start_soon(service.run, listeners)
        for name in ROUTE_MODULES:
            bg = getattr(importlib.import_module(name), "background", None)
            # sweeps run in one process of a multi-worker server (app.py)
            if bg is not None and service.ctx.primary:
                n.start_soon(bg, service)
        task_status.started(bound_addresses(listeners))
        try:
            await trio.sleep_forever()
        finally:
            service.drain()
