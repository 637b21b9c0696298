"""A small outbound HTTP/1.1 client (h11 on Trio): one POST per connection.

What it owns: getting one request to a URL a user gave us and its answer
back, within deadlines, without letting that URL reach what it must not.
Push delivery (server/push_delivery.py) uses it; nothing here knows JMAP.

* Deadlines: connecting (DNS included), then each write and each read has
  its own (``io_timeout``), and the whole exchange at most
  ``connect_timeout + 4 * io_timeout``; any of them is ``Timeout``.
* TLS for https with certificate and host name verification
  (``tls.client_context()``, or the context given).
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

from .tls import client_context

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


# The addresses that are not globally reachable (IANA's IPv4 and IPv6
# Special-Purpose Address Registries, as of 2024, plus multicast and the
# deprecated site-local and IPv4-compatible ranges), spelled out here
# rather than taken from ipaddress's is_global: Python's table differs by
# release (the CVE-2024-4032 fix in 3.11.10+, 3.12.4+ and 3.13 moved
# 192.0.0.8, 2002::/16, 64:ff9b:1::/48 out of it and 2001:1::1, 2001:20::/28
# and others in; none of them knows 3fff::/20 or 5f00::/16), and which
# addresses push delivery may reach must not depend on the interpreter.
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
# ... less these, which the registries mark globally reachable
_GLOBAL_EXCEPTIONS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.9/32", "192.0.0.10/32", "2001:1::1/128", "2001:1::2/128", "2001:1::3/128",
    "2001:3::/32", "2001:4:112::/48", "2001:20::/28", "2001:30::/28",
))


def plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
          ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """IP, an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address
    it is (Python 3.13 answers is_loopback for ::ffff:127.0.0.1 as 127.0.0.1,
    older releases do not)."""
    return (ip.ipv4_mapped or ip) if ip.version == 6 else ip


def global_only(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The default address rule: only public (globally reachable) unicast
    addresses, the same on every Python release (see _NOT_GLOBAL)."""
    ip = plain(ip)
    if any(ip in n for n in _GLOBAL_EXCEPTIONS if n.version == ip.version):
        return True
    return not any(ip in n for n in _NOT_GLOBAL if n.version == ip.version)


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
        ip = plain(ipaddress.ip_address(sa[0].split("%", 1)[0]))
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
                ctx = ssl_context or client_context()
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
