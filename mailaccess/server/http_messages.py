"""What HTTP handlers see and return, and the sans-IO helpers around them.

``Request`` (method, path, query, headers, body, principal, peer),
``Response``, ``Stream`` (a body the handler writes as it goes),
``Upgrade`` (a WebSocket), ``Route``; parsing of request targets and of
Basic/Bearer credentials, media types, the request-smuggling shapes h11 lets
through, X-Forwarded-* from trusted proxies, the WebSocket handshake checks.
No sockets and no event loop here: server/http.py is the service.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

if TYPE_CHECKING:
    from .http_ws import WebSocket

# --- what handlers see and return --------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as."""

    account: int
    name: str
    via: str          # "basic", "bearer" or "token" (an app password as the Basic password)


@dataclass
class Request:
    method: str
    target: str                     # as sent: path and query
    path: str                       # percent-decoded path
    query: dict[str, str]           # first value of each parameter
    headers: list[tuple[str, str]]  # lower-case names, in order
    peer: str                       # client address ("" when unknown)
    scheme: str                     # "http" or "https" (of this listener)
    body: bytes = b""
    principal: Principal | None = None
    route: "Route | None" = None
    match: str = ""                 # the part of the path after a prefix route's path
    # set by the HTTP service while the handler runs: returns when the client
    # closes the connection (a long wait races it: ActiveSync Ping)
    wait_closed: "Callable[[], Awaitable[None]] | None" = None

    def header(self, name: str) -> str | None:
        """NAME's value (several fields joined with ", "), or None."""
        vals = [v for k, v in self.headers if k == name]
        return ", ".join(vals) if vals else None

    @property
    def host(self) -> str:
        """The Host header when it is a plain host[:port] ("" otherwise)."""
        h = self.header("host") or ""
        return h if HOST_RE.fullmatch(h) else ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, body: bytes, ctype: str = "application/json") -> "Response":
        return cls(status, body, [("content-type", ctype), ("cache-control", "no-store")])

    @classmethod
    def text(cls, status: int, text: str) -> "Response":
        return cls(status, text.encode() + b"\n", [("content-type", "text/plain; charset=utf-8")])


@dataclass
class Stream:
    """A response whose body the handler writes: ``await run(write)`` with
    ``await write(bytes)``; the service ends the body when RUN returns."""

    status: int
    headers: list[tuple[str, str]]
    run: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]


@dataclass
class Upgrade:
    """Accept a WebSocket upgrade (RFC 6455) with SUBPROTOCOL, then ``await
    run(ws)``; the service closes the socket when RUN returns."""

    subprotocol: str | None
    run: Callable[["WebSocket"], Awaitable[None]]
    max_message: int = 10_000_000


Handler = Callable[[Request], Awaitable["Response | Stream | Upgrade"]]


@dataclass
class Route:
    method: str                     # "GET", "POST", ... ("*": any)
    path: str
    handler: Handler
    prefix: bool = False            # PATH is a prefix ("/jmap/download/")
    auth: bool = True
    max_body: int | None = None     # None: [http] max_body_bytes
    slot: str | None = None         # per-user concurrency class (slot_limits)
    too_large: Callable[[], Response] | None = None
    busy: Callable[[], Response] | None = None
    nocase: bool = False            # PATH matches case-insensitively (ActiveSync)


def problem(status: int, title: str, detail: str = "") -> Response:
    """A plain RFC 7807 problem answer (for HTTP-level refusals)."""
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return Response.json(status, json.dumps(body).encode(), "application/problem+json")


# --- small sans-IO helpers -----------------------------------------------------------------------

HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def parse_target(target: str) -> tuple[str, dict[str, str]] | None:
    """'/a%20b?x=1' -> ('/a b', {'x': '1'}); None when it is not an origin-form path."""
    if not target.startswith("/"):
        return None
    path, _, qs = target.partition("?")
    try:
        path = urllib.parse.unquote(path, errors="strict")
        q = urllib.parse.parse_qs(qs, keep_blank_values=True, errors="strict",
                                  max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return None
    if "\0" in path:
        return None
    return path, {k: v[0] for k, v in q.items()}


def parse_basic(value: str) -> tuple[str, str] | None:
    """'Basic dXNlcjpwdw==' -> ('user', 'pw'); None when malformed."""
    scheme, _, cred = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, pw = raw.partition(":")
    return (user, pw) if sep else None


def parse_bearer(value: str) -> str | None:
    scheme, _, cred = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not cred.strip():
        return None
    return cred.strip()


def media_type(value: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return (value or "").split(";", 1)[0].strip().lower()


def smuggling(headers: list[tuple[bytes, bytes]]) -> str | None:
    """What h11 lets through but a front proxy may read differently."""
    names = [k for k, _ in headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        return "Content-Length together with Transfer-Encoding"
    for k, v in headers:
        if k == b"host" and not HOST_RE.fullmatch(v.decode("latin-1")):
            return "a malformed Host header"
    return None



def forwarded_for(req: Request) -> None:
    """REQ came through a trusted reverse proxy: take the client's address
    (the last X-Forwarded-For entry, the one the proxy added) and scheme."""
    xff = req.header("x-forwarded-for")
    if xff:
        last = xff.split(",")[-1].strip()
        try:
            req.peer = str(ipaddress.ip_address(last))
        except ValueError:
            pass
    proto = (req.header("x-forwarded-proto") or "").split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        req.scheme = proto


def websocket_request_problem(req: Request) -> str | None:
    """Why REQ is not a WebSocket upgrade we can accept (None: it is)."""
    if req.method != "GET":
        return "a WebSocket upgrade is a GET"
    if "websocket" not in (req.header("upgrade") or "").lower():
        return "expected Upgrade: websocket"
    if "upgrade" not in (req.header("connection") or "").lower():
        return "expected Connection: Upgrade"
    if (req.header("sec-websocket-version") or "").strip() != "13":
        return "only WebSocket version 13 is supported"
    key = req.header("sec-websocket-key") or ""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return "a bad Sec-WebSocket-Key"
    except ValueError:
        return "a bad Sec-WebSocket-Key"
    return None


def offered_subprotocols(req: Request) -> list[str]:
    return [p.strip() for p in (req.header("sec-websocket-protocol") or "").split(",")
            if p.strip()]


REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
    204: "No Content", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
    308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    408: "Request Timeout", 413: "Content Too Large", 415: "Unsupported Media Type",
    426: "Upgrade Required", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}


