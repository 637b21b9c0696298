"""A small outbound HTTP/1.1 client (h11 on Trio): one POST per connection.

What it owns: getting one request to a URL a user gave us and its answer
back, within deadlines, without letting that URL reach what it must not.
Push delivery (server/push_delivery.py) uses it; nothing here knows JMAP.

* Deadlines: connecting (DNS included), then each write and each read has
  its own (``io_timeout``), and the whole exchange at most
  ``connect_timeout + 4 * io_timeout``; any of them is ``Timeout``.
* TLS for https with certificate and host name verification (the default
  SSL context, or the one given).
* The host is resolved once and every address is checked by
  ``allow_address`` before connecting (to the address checked, so a second
  DNS answer cannot send us elsewhere): server-side request forgery to
  loopback or private networks is refused (``Refused``).
* The answer's body is read up to ``max_body`` bytes (the rest is dropped).
"""
from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import h11
import trio

USER_AGENT = "mailaccess-push/1"


class HttpError(Exception):
    """The exchange failed (connection refused or reset, bad answer): retryable."""


class Timeout(HttpError):
    """A deadline passed: retryable."""


class Refused(Exception):
    """The URL is one we do not send to (scheme, address): not retryable."""


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)   # lower-case names
    body: bytes = b""


def global_only(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The default address rule: only public (global) unicast addresses."""
    return ip.is_global and not ip.is_multicast


async def _resolve(host: str, port: int) -> list[tuple]:
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return [(fam, sa) for fam, _, _, _, sa in infos]


async def _connect(host: str, port: int,
                   allow: Callable[[ipaddress._BaseAddress], bool]) -> trio.SocketStream:
    try:
        addrs = await _resolve(host, port)
    except OSError as exc:
        raise HttpError(f"cannot resolve {host}: {exc}") from None
    checked = []
    for _fam, sa in addrs:
        ip = ipaddress.ip_address(sa[0].split("%", 1)[0])
        if not allow(ip):
            raise Refused(f"{host} resolves to {ip}, which is not allowed")
        checked.append(str(ip))
    last: Exception | None = None
    for ip in dict.fromkeys(checked):
        try:
            return await trio.open_tcp_stream(ip, port)
        except OSError as exc:
            last = exc
    raise HttpError(f"cannot connect to {host}:{port}: {last}")


async def post(url: str, body: bytes, headers: list[tuple[str, str]] = (), *,
               connect_timeout: float = 10.0, io_timeout: float = 30.0,
               ssl_context: ssl.SSLContext | None = None,
               allow_address: Callable = global_only,
               allow_http: bool = False, max_body: int = 64 * 1024) -> Response:
    """POST BODY to URL with HEADERS -> the Response (any status).  Raises
    Refused (not retryable), Timeout or HttpError (retryable)."""
    u = urlsplit(url)
    if u.scheme not in ("https", "http") or (u.scheme == "http" and not allow_http) \
            or not u.hostname:
        raise Refused(f"not an allowed URL: {url[:100]}")
    https = u.scheme == "https"
    port = u.port or (443 if https else 80)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    host_header = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
    if u.port:
        host_header += f":{u.port}"
    with trio.move_on_after(connect_timeout + 4 * io_timeout) as whole:
        with trio.move_on_after(connect_timeout) as cs:
            stream = await _connect(u.hostname, port, allow_address)
        if cs.cancelled_caught:
            raise Timeout(f"connecting to {u.hostname}:{port} took too long")
        try:
            if https:
                ctx = ssl_context or ssl.create_default_context()
                stream = trio.SSLStream(stream, ctx, server_hostname=u.hostname)
                with trio.fail_after(io_timeout):
                    await stream.do_handshake()
            return await _exchange(stream, host_header, target, body, list(headers),
                                   io_timeout, max_body)
        except trio.TooSlowError:
            raise Timeout(f"{u.hostname}:{port} was too slow") from None
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            raise HttpError(f"{u.hostname}:{port}: {exc}") from None
        except h11.ProtocolError as exc:
            raise HttpError(f"{u.hostname}:{port} answered badly: {exc}") from None
        finally:
            await trio.aclose_forcefully(stream)
    assert whole.cancelled_caught
    raise Timeout(f"{u.hostname}:{port} was too slow")


async def _exchange(stream, host: str, target: str, body: bytes,
                    headers: list[tuple[str, str]], io_timeout: float,
                    max_body: int) -> Response:
    conn = h11.Connection(h11.CLIENT)
    hdrs = [("Host", host), ("User-Agent", USER_AGENT), ("Connection", "close"),
            ("Content-Length", str(len(body)))] + headers
    out = conn.send(h11.Request(method="POST", target=target, headers=hdrs))
    out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    with trio.fail_after(io_timeout):
        await stream.send_all(out)
    resp: Response | None = None
    chunks, size = [], 0
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            with trio.fail_after(io_timeout):
                data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if isinstance(ev, h11.InformationalResponse):
            continue
        if isinstance(ev, h11.Response):
            resp = Response(ev.status_code, {k.decode("latin-1").lower(): v.decode("latin-1")
                                             for k, v in ev.headers})
        elif isinstance(ev, h11.Data):
            if size < max_body:
                chunks.append(ev.data[:max_body - size])
            size += len(ev.data)
            if size >= max_body:
                break
        elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    if resp is None:
        raise HttpError("the connection closed before an answer")
    resp.body = b"".join(chunks)
    return resp
