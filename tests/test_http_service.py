"""The HTTP service (server/http.py) on raw sockets: framing, limits,
malformed and smuggling-shaped requests, keep-alive, caps, authentication,
shutdown.  Every wait is bounded by a hang guard; no test measures time."""
import base64
import dataclasses

import pytest
import trio

from conftest import make_config
from mailaccess import accounts
from mailaccess.server.http import service_of

GUARD = 30       # seconds: a hang guard, not a threshold


@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, http=dataclasses.replace(
        c.http, max_header_bytes=4096, max_body_bytes=1000, header_timeout=0.5,
        keepalive_timeout=0.5, max_connections_per_ip=3),
        jmap=dataclasses.replace(c.jmap, max_size_request=1000))


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    return server


def port(ctx) -> int:
    return ctx.bound["http"][0][1]


def basic(user="alice", pw="pw") -> bytes:
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{pw}".encode()) + b"\r\n"


async def talk(ctx, data: bytes, *, then_close: bool = False) -> bytes:
    """Send DATA and read until the server closes the connection."""
    with trio.fail_after(GUARD):
        s = await trio.open_tcp_stream("127.0.0.1", port(ctx))
        await s.send_all(data)
        if then_close:
            await s.send_eof()
        out = b""
        while True:
            try:
                chunk = await s.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            out += chunk
        await s.aclose()
        return out


def statuses(raw: bytes) -> list[int]:
    """The status of each response in RAW (responses follow bodies directly)."""
    import re

    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


GET_WK = b"GET /.well-known/jmap HTTP/1.1\r\nHost: localhost\r\n\r\n"


async def test_keep_alive_serves_requests_in_order_then_idles_out(srv):
    raw = await talk(srv, GET_WK + GET_WK)
    assert statuses(raw) == [307, 307]
    assert b"location: http://localhost/jmap/session" in raw.lower()


@pytest.mark.parametrize("request_bytes, status", [
    # request smuggling shapes
    (b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
     b"abcd", 400),
    (b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\n" + basic() + b"Transfer-Encoding: chunked\r\n"
     b"\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    (b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    # malformed heads
    (b"GET / HTTP/1.1\r\n\r\n", 400),                               # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n folded: x\r\n\r\n", 400),      # obs-fold into Host
    (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET http//x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /%ff HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40, 400),  # TLS to plain
])
async def test_malformed_and_smuggling_requests_get_an_error_and_a_close(srv, request_bytes,
                                                                         status):
    raw = await talk(srv, request_bytes)
    assert statuses(raw) == [status], raw        # one answer, then closed: nothing smuggled


async def test_header_block_over_the_limit_is_431(srv):
    raw = await talk(srv, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 5000 + b"\r\n\r\n")
    assert statuses(raw) == [431]


async def test_body_over_the_limit_is_413_before_it_is_read(srv):
    # only the head is sent: the answer comes without the body
    big = srv.cfg.jmap.max_size_upload + 1
    raw = await talk(srv, b"POST /jmap/upload/A1/ HTTP/1.1\r\nHost: a\r\n" + basic()
                     + f"Content-Length: {big}\r\n\r\n".encode())
    assert statuses(raw) == [413] and b'"limit": "maxSizeUpload"' in raw
    # the API endpoint answers its own limit problem (maxSizeRequest)
    big = srv.cfg.jmap.max_size_request + 1
    raw = await talk(srv, b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\n" + basic()
                     + b"Content-Type: application/json\r\n"
                     + f"Content-Length: {big}\r\n\r\n".encode())
    assert statuses(raw) == [413] and b'"limit": "maxSizeRequest"' in raw


async def test_chunked_body_over_the_limit_is_413(srv):
    chunk = b"%x\r\n%s\r\n" % (600, b"a" * 600)
    raw = await talk(srv, b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\n" + basic()
                     + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunk + chunk + b"0\r\n\r\n")
    assert statuses(raw) == [413] and b'"limit": "maxSizeRequest"' in raw


async def test_a_slow_request_head_gets_408_and_an_idle_connection_is_closed(srv):
    raw = await talk(srv, b"GET /.well-known/jmap HTTP/1.1\r\nHost: a\r\n")   # never ends
    assert statuses(raw) == [408]
    raw = await talk(srv, b"")          # says nothing: closed after keepalive_timeout
    assert raw == b""


async def test_expect_100_continue(srv):
    with trio.fail_after(GUARD):
        s = await trio.open_tcp_stream("127.0.0.1", port(srv))
        await s.send_all(b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\n" + basic()
                         + b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                           b"Content-Length: 2\r\n\r\n")
        got = await s.receive_some(1000)
        assert got.startswith(b"HTTP/1.1 100 ")
        await s.send_all(b"{}")
        got = b""
        while b"\r\n\r\n" not in got:
            got += await s.receive_some(1000)
        assert statuses(got) == [400]       # {} is notRequest
        await s.aclose()


async def test_per_address_connection_cap(srv):
    with trio.fail_after(GUARD):
        held = [await trio.open_tcp_stream("127.0.0.1", port(srv)) for _ in range(3)]
        # the service counts a connection once it accepted it: wait for that
        while service_of(srv).per_ip.get("127.0.0.1", 0) < 3:
            await trio.sleep(0.01)
        raw = await talk(srv, GET_WK)
        assert statuses(raw) == [503]
        for s in held:
            await s.aclose()
        while service_of(srv).per_ip.get("127.0.0.1", 0):
            await trio.sleep(0.01)
        assert statuses(await talk(srv, GET_WK)) == [307]


async def test_unknown_path_404_wrong_method_405(srv):
    raw = await talk(srv, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                          b"DELETE /jmap/session HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [404, 405]


async def test_authentication_basic_and_401(srv):
    req = b"GET /jmap/session HTTP/1.1\r\nHost: a\r\n"
    raw = await talk(srv, req + b"Connection: close\r\n\r\n")
    assert statuses(raw) == [401]
    low = raw.lower()
    assert b'www-authenticate: basic realm="mailaccess"' in low
    assert b'www-authenticate: bearer realm="mailaccess"' in low
    for bad in (basic(pw="wrong"), basic(user="nobody"), b"Authorization: Basic !!!\r\n",
                b"Authorization: Bearer mat_nope\r\n", b"Authorization: Digest x\r\n"):
        assert statuses(await talk(srv, req + bad + b"Connection: close\r\n\r\n")) == [401]
    raw = await talk(srv, req + basic() + b"Connection: close\r\n\r\n")
    assert statuses(raw) == [200] and b'"username": "alice"' in raw


async def test_basic_auth_uses_the_credential_cache_not_argon2_per_request(srv):
    auth = srv.auth
    before = auth.cache.hits if hasattr(auth.cache, "hits") else None
    calls = []
    real = auth.hasher.check

    def counting(*a):
        calls.append(1)
        return real(*a)

    auth.hasher.check = counting
    try:
        req = b"GET /jmap/session HTTP/1.1\r\nHost: a\r\n" + basic() + b"\r\n"
        raw = await talk(srv, req * 3 + b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    finally:
        auth.hasher.check = real
    assert statuses(raw) == [200, 200, 200, 404]
    assert len(calls) <= 1, before


async def test_concurrent_api_requests_per_user_are_capped(srv):
    from mailaccess.server.http import HttpService

    svc: HttpService = service_of(srv)
    acc = accounts.lookup(srv.store, "alice").id
    limit = svc.slot_limits["api"]
    body = b'{"using":["urn:ietf:params:jmap:core"],"methodCalls":[]}'
    post = (b"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\n" + basic()
            + b"Content-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    from contextlib import ExitStack
    with ExitStack() as held:
        for _ in range(limit):                  # the user's other requests, in flight
            held.enter_context(svc.slot("api", acc))
        raw = await talk(srv, post)
        assert statuses(raw) == [429] and b'"limit": "maxConcurrentRequests"' in raw
    assert statuses(await talk(srv, post)) == [200]


async def test_shutdown_closes_idle_connections_and_ends(tmp_path):
    from mailaccess.server import app

    cfg = make_config(tmp_path)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as n:
            ctx = await n.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                               install_signals=False))
            s = await trio.open_tcp_stream("127.0.0.1", port(ctx))
            await s.send_all(GET_WK)
            got = b""
            while b"\r\n\r\n" not in got:
                got += await s.receive_some(1000)
            n.cancel_scope.cancel()          # SIGTERM's path: drain and stop
        rest = await s.receive_some(1000)    # the kept-alive connection was closed
        assert rest == b""


async def test_shutdown_lets_a_request_in_flight_finish(tmp_path):
    from mailaccess.server import app
    from mailaccess.server.http import Response, Route

    cfg = make_config(tmp_path)
    entered, release = trio.Event(), trio.Event()
    got = []

    async def slow(req):
        entered.set()
        await release.wait()
        return Response.text(200, "finished")

    async def client(p):
        s = await trio.open_tcp_stream("127.0.0.1", p)
        await s.send_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        out = b""
        while True:
            chunk = await s.receive_some(1000)
            if not chunk:
                break
            out += chunk
        got.append(out)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as n:
                ctx = await n.start(lambda task_status: app.serve(
                    cfg, task_status=task_status, install_signals=False))
                service_of(ctx).add_routes([Route("GET", "/slow", slow, auth=False)])
                outer.start_soon(client, port(ctx))
                await entered.wait()

                async def release_when_draining():
                    while not service_of(ctx).draining:
                        await trio.sleep(0.01)
                    release.set()

                outer.start_soon(release_when_draining)
                n.cancel_scope.cancel()        # shutdown begins with the request in flight
    assert statuses(got[0]) == [200]
    assert got[0].endswith(b"finished\n") and b"connection: close" in got[0].lower()


# --- the sans-IO helpers (server/http_messages.py) ------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from mailaccess.server import http_messages as M  # noqa: E402


def test_parse_target_and_credentials():
    assert M.parse_target("/a%20b/c?x=1&x=2&y=") == ("/a b/c", {"x": "1", "y": ""})
    assert M.parse_target("http://evil/") is None
    assert M.parse_target("/%00") is None and M.parse_target("/%ff") is None
    assert M.parse_basic("Basic " + base64.b64encode(b"al:ice:p w").decode()) == ("al", "ice:p w")
    assert M.parse_basic("basic !!") is None and M.parse_basic("Basic Zm9v") is None
    assert M.parse_bearer("Bearer  mat_x ") == "mat_x" and M.parse_bearer("Bearer ") is None
    assert M.media_type("Application/JSON; charset=utf-8") == "application/json"


def test_forwarded_for_takes_the_proxy_added_address():
    req = M.Request("GET", "/", "/", {}, [("x-forwarded-for", "10.0.0.1, 192.0.2.5"),
                                          ("x-forwarded-proto", "https")], "127.0.0.1", "http")
    M.forwarded_for(req)
    assert (req.peer, req.scheme) == ("192.0.2.5", "https")
    req = M.Request("GET", "/", "/", {}, [("x-forwarded-for", "not-an-ip"),
                                          ("x-forwarded-proto", "gopher")], "127.0.0.1", "http")
    M.forwarded_for(req)
    assert (req.peer, req.scheme) == ("127.0.0.1", "http")


@given(st.text(max_size=100))
def test_helpers_never_raise(s):
    M.parse_target(s)
    M.parse_basic(s)
    M.parse_bearer(s)
    M.media_type(s)
    M.smuggling([(b"host", s.encode("utf-8", "replace"))])
