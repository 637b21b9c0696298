"""JMAP push end to end: EventSource (RFC 8620 §7.3, httpx and jmapc's
sseclient), JMAP over WebSocket (RFC 8887, websocket-client), driven by
writes through the other protocols (IMAP APPEND, LMTP delivery).  Each client
runs in a thread; every wait is bounded by a socket timeout, none is timed."""
import base64
import dataclasses
import json
import smtplib

import httpx
import pytest
import trio
import websocket

from conftest import make_config
from imap_helpers import ca_file, connect, msg, run
from mailaccess import accounts, ids
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.server import jmap_push

CORE = cap.CORE


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def http_base(ctx) -> str:
    return f"http://127.0.0.1:{ctx.bound['http'][0][1]}"


def ws_url(ctx) -> str:
    return f"ws://127.0.0.1:{ctx.bound['http'][0][1]}/jmap/ws/"


def auth_header(user="alice", pw="pw") -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def states(ctx, user="alice") -> tuple[str, dict]:
    acc = accounts.lookup(ctx.store, user).id
    with ctx.store.view() as v:
        return ids.account_id(acc), {k: v.kind_state(acc, k) for k in ("Email", "Mailbox",
                                                                        "Thread")}


def read_events(lines, n: int) -> list[tuple[str, str, dict]]:
    """N events (name, id, data) from an iterator of SSE lines."""
    out, ev = [], {}
    for line in lines:
        if line == "":
            if ev:
                out.append((ev.get("event"), ev.get("id"), json.loads(ev.get("data", "{}"))))
                ev = {}
                if len(out) == n:
                    return out
            continue
        k, _, v = line.partition(":")
        ev[k] = v.lstrip(" ")
    return out


def imap_append(ctx, subject="pushed"):
    c = connect(ctx)
    c.append("INBOX", None, None, msg(subject))
    c.logout()


def lmtp_deliver(ctx, subject="delivered"):
    port = ctx.bound["lmtp"][0][1]
    with smtplib.LMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("s@example.org", ["alice@localhost"], msg(subject))


# --- EventSource -------------------------------------------------------------------------------

async def test_eventsource_pushes_imap_append_as_state_change(srv):
    def go():
        with httpx.Client(base_url=http_base(srv), auth=("alice", "pw"), timeout=30) as c:
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "*", "closeafter": "no", "ping": "0"}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"] == "text/event-stream"
                lines = r.iter_lines()
                first = read_events(lines, 1)
                imap_append(srv)                  # another protocol writes
                second = read_events(lines, 1)
        return first, second

    (first,), (second,) = await run(go)
    acc, now = states(srv)
    assert first[0] == "state" and first[2]["@type"] == "StateChange"
    assert set(first[2]["changed"][acc]) == set(jmap_push.DEFAULT_TYPES)
    name, event_id, data = second
    assert name == "state"
    changed = data["changed"][acc]
    assert changed["Email"] == now["Email"] != first[2]["changed"][acc]["Email"]
    assert changed["Mailbox"] == now["Mailbox"]
    assert event_id and int(event_id) > int(first[1])


async def test_eventsource_closeafter_state_types_and_last_event_id(srv):
    def go():
        with httpx.Client(base_url=http_base(srv), auth=("alice", "pw"), timeout=30) as c:
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "Email", "closeafter": "no", "ping": "0"}) as r:
                lines = r.iter_lines()
                (first,) = read_events(lines, 1)
                imap_append(srv, "one")
                (second,) = read_events(lines, 1)
            # a client reconnecting with an older event id is told at once
            imap_append(srv, "two")
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "*", "closeafter": "state", "ping": "0"},
                          headers={"last-event-id": second[1]}) as r:
                rest = read_events(r.iter_lines(), 5)    # closeafter=state: it ends
            bad = c.get("/jmap/eventsource/", params={"closeafter": "maybe"}).status_code
        return first, second, rest, bad

    first, second, rest, bad = await run(go)
    acc, now = states(srv)
    assert list(first[2]["changed"][acc]) == ["Email"]
    assert list(second[2]["changed"][acc]) == ["Email"]
    assert len(rest) == 1 and rest[0][2]["changed"][acc]["Email"] == now["Email"]
    assert bad == 400


async def test_email_delivery_moves_only_on_mta_delivery(srv):
    """RFC 8621 §1.5: the push-only EmailDelivery type changes when the MTA
    delivers (LMTP), not when a client stores a message (IMAP APPEND)."""
    acc_n = accounts.lookup(srv.store, "alice").id

    def delivery_state():
        with srv.store.view() as v:
            return v.kind_state(acc_n, "EmailDelivery")

    def go():
        with httpx.Client(base_url=http_base(srv), auth=("alice", "pw"), timeout=30) as c:
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "EmailDelivery", "closeafter": "no",
                                  "ping": "0"}) as r:
                lines = r.iter_lines()
                (first,) = read_events(lines, 1)
                before = delivery_state()
                imap_append(srv)                      # a client's APPEND: no delivery
                after_append = delivery_state()
                lmtp_deliver(srv)                     # the MTA delivers
                (second,) = read_events(lines, 1)
        return first, before, after_append, second

    first, before, after_append, second = await run(go)
    acc = ids.account_id(acc_n)
    assert before == after_append
    assert list(first[2]["changed"][acc]) == ["EmailDelivery"]
    assert second[2]["changed"][acc] == {"EmailDelivery": delivery_state()}
    assert delivery_state() != before


async def test_eventsource_ping(srv):
    def go():
        with httpx.Client(base_url=http_base(srv), auth=("alice", "pw"), timeout=30) as c:
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "*", "closeafter": "no", "ping": "1"}) as r:
                return read_events(r.iter_lines(), 2)

    events = await run(go)
    assert events[0][0] == "state"
    assert events[1][0] == "ping" and events[1][2] == {"interval": 1}


async def test_eventsource_needs_authentication_and_sees_only_its_account(srv):
    def go():
        with httpx.Client(base_url=http_base(srv), timeout=30) as c:
            assert c.get("/jmap/eventsource/").status_code == 401
            with c.stream("GET", "/jmap/eventsource/", auth=("bob", "pw"),
                          params={"types": "*", "closeafter": "no", "ping": "0"}) as r:
                lines = r.iter_lines()
                (first,) = read_events(lines, 1)
                imap_append(srv)                 # alice's mail: nothing for bob
                lmtp = smtplib.LMTP("127.0.0.1", srv.bound["lmtp"][0][1], timeout=30)
                lmtp.sendmail("s@example.org", ["bob@localhost"], msg("for bob"))
                lmtp.quit()
                (second,) = read_events(lines, 1)
        return first, second

    first, second = await run(go)
    bob, now = states(srv, "bob")
    assert list(first[2]["changed"]) == [bob]
    assert list(second[2]["changed"]) == [bob]         # bob's own delivery, not alice's
    assert second[2]["changed"][bob]["Email"] == now["Email"]


# --- WebSocket (RFC 8887) ----------------------------------------------------------------------

def ws_connect(ctx, user="alice", **kw) -> websocket.WebSocket:
    return websocket.create_connection(ws_url(ctx), timeout=30, subprotocols=["jmap"],
                                       header=[auth_header(user)], **kw)


async def test_websocket_requests_errors_and_push(srv):
    def go():
        ws = ws_connect(srv)
        try:
            assert ws.getsubprotocol() == "jmap"
            ws.send(json.dumps({"@type": "Request", "id": "r1", "using": [CORE],
                                "methodCalls": [["Core/echo", {"a": 1}, "c"]]}))
            resp = json.loads(ws.recv())
            ws.send("{not json")
            err = json.loads(ws.recv())
            ws.send(json.dumps({"@type": "Request", "id": "r2", "using": "x"}))
            err2 = json.loads(ws.recv())
            ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None,
                                "pushState": None}))
            imap_append(srv)                        # IMAP APPEND -> StateChange
            push = json.loads(ws.recv())
            lmtp_deliver(srv)                       # LMTP delivery -> StateChange
            push2 = json.loads(ws.recv())
            # re-enabling with an older pushState sends the current state at once
            ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"],
                                "pushState": push["pushState"]}))
            again = json.loads(ws.recv())
            ws.send(json.dumps({"@type": "WebSocketPushDisable"}))
            ws.send(json.dumps({"@type": "Request", "using": [CORE],
                                "methodCalls": [["Core/echo", {"b": 2}, "d"]]}))
            after = json.loads(ws.recv())            # a response, no push in between
            return resp, err, err2, push, push2, again, after
        finally:
            ws.close()

    resp, err, err2, push, push2, again, after = await run(go)
    acc, now = states(srv)
    assert resp["@type"] == "Response" and resp["requestId"] == "r1"
    assert resp["methodResponses"] == [["Core/echo", {"a": 1}, "c"]] and resp["sessionState"]
    assert err["@type"] == "RequestError" and err["type"].endswith(":notJSON")
    assert err2 == {"@type": "RequestError", "requestId": "r2", "status": 400,
                    "type": "urn:ietf:params:jmap:error:notRequest",
                    "detail": err2["detail"]}
    assert push["@type"] == "StateChange" and "Email" in push["changed"][acc]
    assert int(push2["pushState"]) > int(push["pushState"])
    assert push2["changed"][acc]["Email"] == now["Email"]
    assert again["@type"] == "StateChange" and list(again["changed"][acc]) == ["Email"]
    assert after == {"@type": "Response", "methodResponses": [["Core/echo", {"b": 2}, "d"]],
                     "sessionState": resp["sessionState"]}


async def test_websocket_handshake_rules(srv):
    def go():
        out = []
        for kw in ({"subprotocols": ["other"], "header": [auth_header()]},
                   {"subprotocols": ["jmap"], "header": []},
                   {"subprotocols": ["jmap"], "header": [auth_header(pw="nope")]}):
            try:
                websocket.create_connection(ws_url(srv), timeout=30, **kw).close()
                out.append(101)
            except websocket.WebSocketBadStatusException as exc:
                out.append(exc.status_code)
        return out

    assert await run(go) == [400, 401, 401]


async def test_websocket_message_over_max_size_request_closes(tmp_path, nursery):
    from mailaccess.server import app

    c = make_config(tmp_path)
    cfg = dataclasses.replace(c, jmap=dataclasses.replace(c.jmap, max_size_request=1000))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")

    def go():
        ws = ws_connect(ctx)
        ws.send("x" * 2000)
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            return None
        return op, int.from_bytes(data[:2], "big")

    assert await run(go) in ((websocket.ABNF.OPCODE_CLOSE, 1009), None)


# --- jmapc (a third-party JMAP client) ---------------------------------------------------------

@pytest.fixture
def tls_cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, http=dataclasses.replace(c.http, tls=True))


async def test_jmapc_discovers_the_session_echoes_and_gets_events(tls_cfg, nursery,
                                                                  monkeypatch):
    from jmapc import Client, EventSourceConfig
    from jmapc.methods import CoreEcho

    from mailaccess.server import app

    ctx = await nursery.start(lambda task_status: app.serve(tls_cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file(ctx))
    host = f"localhost:{ctx.bound['http'][0][1]}"

    def go():
        client = Client.create_with_password(
            host, "alice", "pw",
            event_source_config=EventSourceConfig(types="*", closeafter="no", ping=0))
        session = client.jmap_session           # GET https://host/.well-known/jmap
        echo = client.request(CoreEcho(data={"hello": "world"}))
        events = client.events
        first = next(events)
        imap_append(ctx)
        second = next(events)
        return session, client.account_id, echo, first, second

    session, account_id, echo, first, second = await run(go)
    assert session.username == "alice"
    assert session.api_url == f"https://{host}/jmap/api/"
    assert session.capabilities.core.max_calls_in_request == ctx.cfg.jmap.max_calls_in_request
    assert account_id == ids.account_id(accounts.lookup(ctx.store, "alice").id)
    assert echo.data == {"hello": "world"}
    assert first.data.changed[account_id].email is not None
    _, now = states(ctx)
    assert second.data.changed[account_id].email == now["Email"]


async def test_push_streams_per_user_are_capped(srv):
    from mailaccess.server.http import service_of

    service_of(srv).slot_limits["push"] = 1

    def go():
        with httpx.Client(base_url=http_base(srv), auth=("alice", "pw"), timeout=30) as c:
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "*", "closeafter": "no", "ping": "0"}) as r:
                lines = r.iter_lines()        # kept: dropping it would close the stream
                read_events(lines, 1)         # the stream is open
                second = httpx.get(http_base(srv) + "/jmap/eventsource/", auth=("alice", "pw"),
                                   timeout=30).status_code
                other = httpx.get(http_base(srv) + "/jmap/session", auth=("bob", "pw"),
                                  timeout=30).status_code
                try:
                    ws_connect(srv).close()
                    ws = 101
                except websocket.WebSocketBadStatusException as exc:
                    ws = exc.status_code
            return second, ws, other

    assert await run(go) == (429, 429, 200)


def test_state_change_names_only_jmap_types(tmp_path):
    """The change log also holds kinds that are no JMAP type (the outbound
    queue's "Outbound"); no push (EventSource, WebSocket, PushSubscription,
    all through jmap_push.changed) ever names them."""
    from mailaccess.store import Store
    store = Store(tmp_path / "store")
    try:
        acc = accounts.add_user(store, "carol", "pw")
        changed, _ = jmap_push.changed(store, acc, {"Email", "Outbound"}, None)
        assert list(changed[ids.account_id(acc)]) == ["Email"]
        assert jmap_push.changed(store, acc, {"Outbound"}, None)[0] == {}
    finally:
        store.close()


async def test_a_late_published_commit_is_not_pushed_twice(srv):
    """A commit acknowledged before a stream opens but published to the bus
    only after the stream read its first state (the writer acknowledges
    first, then publishes) is not pushed again with a state the client has:
    the next event is the next change (jmap_push.unsent)."""
    held = []
    hooks = srv.store.on_commit
    real = srv.bus.on_commit
    i = hooks.index(real)
    hooks[i] = held.append                  # commits reach the bus only when released
    try:
        await trio.to_thread.run_sync(imap_append, srv, "before the stream")
        assert held
    finally:
        hooks[i] = real

    def go():
        with httpx.Client(base_url=http_base(srv), auth=("alice", "pw"), timeout=30) as c:
            with c.stream("GET", "/jmap/eventsource/",
                          params={"types": "*", "closeafter": "no", "ping": "0"}) as r:
                lines = r.iter_lines()
                first = read_events(lines, 1)
                trio.from_thread.run_sync(lambda: [real(info) for info in held])
                imap_append(srv, "after the stream")
                second = read_events(lines, 1)
        return first, second

    (first,), (second,) = await run(go)
    acc, now = states(srv)
    assert second[2]["changed"][acc]["Email"] == now["Email"] \
        != first[2]["changed"][acc]["Email"]
