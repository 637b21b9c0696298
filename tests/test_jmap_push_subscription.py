"""JMAP PushSubscription (RFC 8620 §7.2): the methods through run_request on
a temp store, and push delivery (server/push_delivery.py) to a receiving
HTTP server on loopback written here with h11: the verification POST, then
StateChanges after an LMTP delivery or an IMAP APPEND, RFC 8291 encryption
decrypted with http_ece, 410 destroying the subscription, bursts coalesced."""
from __future__ import annotations

import base64
import dataclasses
import functools
import datetime as dt
import imaplib
import json
import os
import smtplib
import time

import h11
import http_ece
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailaccess import accounts, ids, storeio
from mailaccess.config import Config, PushConfig
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.server import http_out, push_delivery
from mailaccess.server.jmap_api import JmapContext
from mailaccess.store import ops

from conftest import make_config, port_of
from jmap_helpers import make_ctx, make_store, request

USING = [cap.CORE]
LOOPBACK = PushConfig(allow_loopback_http=True, retry_delay=0.01, retries=3,
                      sweep_interval=3600)


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def utc(t: float) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def keypair():
    """A subscriber's P-256 key pair and auth secret, as a push client makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    auth = os.urandom(16)
    return key, auth, {"p256dh": b64(point), "auth": b64(auth)}


async def calls(ctx, *mc) -> list:
    body = {"using": USING, "methodCalls": [[n, a, f"c{i}"] for i, (n, a) in enumerate(mc)]}
    return (await request(ctx, body))["methodResponses"]


async def pset(ctx, **args) -> dict:
    r = await calls(ctx, ["PushSubscription/set", args])
    assert r[0][0] == "PushSubscription/set", r
    return r[0][1]


async def pget(ctx, **args) -> dict:
    r = await calls(ctx, ["PushSubscription/get", args])
    assert r[0][0] == "PushSubscription/get", r
    return r[0][1]


def with_cfg(ctx, push: PushConfig):
    ctx.cfg = Config(push=push)
    return ctx


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def ctx(store):
    return with_cfg(make_ctx(store), LOOPBACK)


def sub_obj(url="https://push.example.net/p/1", **kw):
    return {"deviceClientId": "phone-1", "url": url, **kw}


# --- methods -----------------------------------------------------------------------

async def test_create_get_verify_update_destroy(ctx):
    res = await pset(ctx, create={"k": sub_obj(types=["Email"])})
    assert set(res) == {"created", "updated", "destroyed", "notCreated", "notUpdated",
                        "notDestroyed"}                 # no accountId, no states
    sid = res["created"]["k"]["id"]
    assert "expires" in res["created"]["k"]             # the server chose it
    got = await pget(ctx, ids=None)
    assert set(got) == {"list", "notFound"}
    [p] = got["list"]
    assert p == {"id": sid, "deviceClientId": "phone-1", "verificationCode": None,
                 "expires": res["created"]["k"]["expires"], "types": ["Email"]}
    with ctx.store.view() as v:
        rec = v.push_subscription(ctx.acc, int(sid))
    assert not rec.verified
    # a wrong code is refused; the right one verifies
    res = await pset(ctx, update={sid: {"verificationCode": "nope"}})
    assert res["notUpdated"][sid]["type"] == "invalidProperties"
    res = await pset(ctx, update={sid: {"verificationCode": rec.code, "types": None}})
    assert res["updated"] == {sid: None}
    [p] = (await pget(ctx, ids=[sid]))["list"]
    assert p["verificationCode"] == rec.code and p["types"] is None
    with ctx.store.view() as v:
        assert v.push_subscription(ctx.acc, int(sid)).verified
    res = await pset(ctx, destroy=[sid, "99"])
    assert res["destroyed"] == [sid]
    assert res["notDestroyed"]["99"]["type"] == "notFound"
    assert (await pget(ctx, ids=[sid]))["notFound"] == [sid]


async def test_url_and_keys_are_never_returned(ctx):
    _, _, keys = keypair()
    sid = (await pset(ctx, create={"k": sub_obj(keys=keys)}))["created"]["k"]["id"]
    for props in (None, ["id", "url", "keys", "deviceClientId"]):
        got = await pget(ctx, ids=[sid], properties=props)
        [p] = got["list"]
        assert "url" not in p and "keys" not in p
        assert "push.example.net" not in json.dumps(got)
        assert keys["auth"] not in json.dumps(got)


async def test_expires_is_capped_and_returned_when_changed(ctx):
    cap_s = LOOPBACK.max_expires_days * 86400
    far = utc(time.time() + 10 * cap_s)
    res = await pset(ctx, create={"a": sub_obj(expires=far)})
    got = res["created"]["a"]["expires"]
    assert got != far
    limit = time.time() + cap_s
    t = dt.datetime.fromisoformat(got[:-1] + "+00:00").timestamp()
    assert t <= limit + 1
    # a date inside the limit is kept, and not echoed
    near = utc(time.time() + 3600)
    res = await pset(ctx, create={"b": sub_obj(expires=near)})
    assert res["created"]["b"] == {"id": res["created"]["b"]["id"]}
    sid = res["created"]["b"]["id"]
    # an update past the limit is capped and reported
    res = await pset(ctx, update={sid: {"expires": far}})
    assert res["updated"][sid]["expires"] != far
    res = await pset(ctx, create={"c": sub_obj(expires=utc(time.time() - 60))})
    assert res["notCreated"]["c"]["properties"] == ["expires"]
    res = await pset(ctx, create={"d": sub_obj(expires="tomorrow")})
    assert res["notCreated"]["d"]["type"] == "invalidProperties"


async def test_immutable_properties_are_refused(ctx):
    _, _, keys = keypair()
    sid = (await pset(ctx, create={"k": sub_obj()}))["created"]["k"]["id"]
    for patch in ({"url": "https://evil.example/"}, {"keys": keys},
                  {"deviceClientId": "other"}, {"keys/auth": keys["auth"]}, {"id": "7"}):
        res = await pset(ctx, update={sid: patch})
        assert res["notUpdated"][sid]["type"] == "invalidProperties", patch
    with ctx.store.view() as v:
        rec = v.push_subscription(ctx.acc, int(sid))
    assert rec.url == "https://push.example.net/p/1" and rec.p256dh == ""


async def test_create_validation(ctx):
    _, _, keys = keypair()
    bad = {
        "http": sub_obj(url="http://push.example.net/x"),
        "ftp": sub_obj(url="ftp://push.example.net/x"),
        "nourl": {"deviceClientId": "d"},
        "nodev": {"url": "https://push.example.net/"},
        "code": sub_obj(verificationCode="x"),
        "id": sub_obj(id="5"),
        "keys": sub_obj(keys={"p256dh": keys["p256dh"], "auth": b64(b"short")}),
        "point": sub_obj(keys={"p256dh": b64(b"\x04" + b"\x01" * 64), "auth": keys["auth"]}),
        "types": sub_obj(types="Email"),
        "unknown": sub_obj(colour="blue"),
    }
    res = await pset(ctx, create=bad)
    assert set(res["notCreated"]) == set(bad), res
    assert res["created"] is None


async def test_loopback_and_plain_http_need_the_switch(store):
    strict = with_cfg(make_ctx(store), PushConfig())
    res = await pset(strict, create={"a": sub_obj(url="http://127.0.0.1:9/x"),
                                     "b": sub_obj(url="https://localhost/x")})
    assert set(res["notCreated"]) == {"a", "b"}
    loose = with_cfg(make_ctx(store, "bob"), LOOPBACK)
    res = await pset(loose, create={"a": sub_obj(url="http://127.0.0.1:9/x")})
    assert "a" in res["created"]


async def test_bounded_per_user(store):
    ctx = with_cfg(make_ctx(store), dataclasses.replace(LOOPBACK, max_per_user=3))
    res = await pset(ctx, create={f"k{i}": sub_obj() for i in range(5)})
    assert len(res["created"]) == 3
    assert {e["type"] for e in res["notCreated"].values()} == {"overQuota"}


async def test_another_users_subscriptions_are_invisible(store):
    alice = with_cfg(make_ctx(store, "alice"), LOOPBACK)
    bob = with_cfg(make_ctx(store, "bob"), LOOPBACK)
    sid = (await pset(alice, create={"k": sub_obj()}))["created"]["k"]["id"]
    assert (await pget(bob, ids=None))["list"] == []
    assert (await pget(bob, ids=[sid]))["notFound"] == [sid]
    res = await pset(bob, update={sid: {"types": ["Email"]}})
    assert res["notUpdated"][sid]["type"] == "notFound"
    res = await pset(bob, destroy=[sid])
    assert res["notDestroyed"][sid]["type"] == "notFound"
    assert [p["id"] for p in (await pget(alice, ids=None))["list"]] == [sid]


async def test_no_account_id_argument(ctx):
    r = await calls(ctx, ["PushSubscription/get", {"accountId": ids.account_id(ctx.acc)}],
                    ["PushSubscription/set", {"ifInState": "1"}])
    assert [x[1]["type"] for x in r] == ["invalidArguments", "invalidArguments"]


async def test_creation_reference_in_get(ctx):
    r = await calls(ctx, ["PushSubscription/set", {"create": {"k": sub_obj()}}],
                    ["PushSubscription/get", {"ids": ["#k"], "properties": ["deviceClientId"]}])
    assert r[1][1]["list"] == [{"id": r[0][1]["created"]["k"]["id"],
                                "deviceClientId": "phone-1"}]


async def test_expired_subscriptions_are_swept(store):
    acc = store.write_sync(ops.create_account, "carol", "x")
    from mailaccess.store.records import PushSubscription
    now = int(time.time())
    old = store.write_sync(ops.create_push_subscription, acc,
                           PushSubscription(0, "d", "https://x.example/", expires=now - 1), 10)
    new = store.write_sync(ops.create_push_subscription, acc,
                           PushSubscription(0, "d", "https://x.example/", expires=now + 99), 10)
    assert store.write_sync(ops.sweep_push_subscriptions, now) == [(acc, old)]
    with store.view() as v:
        assert [p.id for p in v.push_subscriptions(acc)] == [new]
    store.write_sync(ops.delete_account, acc)
    with store.view() as v:
        assert v.all_push_subscriptions() == []


# --- the receiving end -------------------------------------------------------------

class Receiver:
    """A push endpoint on loopback: records every POST (path, headers, body),
    answers with the next of ``statuses`` (then 201).  While ``hold`` is set
    (a trio.Event not yet set), answers wait for it."""

    def __init__(self):
        self.posts: list[tuple[str, dict, bytes]] = []
        self.statuses: list[int] = []
        self.hold: trio.Event | None = None
        self.arrived = trio.Event()
        self.port = 0

    async def start(self, nursery):
        listeners = await nursery.start(functools.partial(trio.serve_tcp, self._conn, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]

    def url(self, path="/push/1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _conn(self, stream):
        conn = h11.Connection(h11.SERVER)
        req, body = None, b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(ev, h11.Request):
                req = ev
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        headers = {k.decode().lower(): v.decode() for k, v in req.headers}
        self.posts.append((req.target.decode(), headers, body))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 201
        await stream.send_all(conn.send(h11.Response(status_code=status,
                                                     headers=[("Content-Length", "0")]))
                              + conn.send(h11.EndOfMessage()))
        await stream.aclose()

    async def wait_for(self, pred, what="a matching POST"):
        """Until PRED(posts) holds (a hang guard, not a timing threshold)."""
        with trio.fail_after(60):
            while not pred(self.posts):
                self.arrived = trio.Event()
                if pred(self.posts):
                    break
                await self.arrived.wait()


def decode(headers, body, key=None, auth=None) -> dict:
    if key is not None:
        assert headers["content-encoding"] == "aes128gcm"
        body = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
    return json.loads(body)


def state_changes(posts, key=None, auth=None):
    out = []
    for _, h, b in posts:
        obj = decode(h, b, key, auth)
        if obj["@type"] == "StateChange":
            out.append(obj)
    return out


@pytest.fixture
def push_cfg(tmp_path):
    return make_config(tmp_path, push=LOOPBACK)


@pytest.fixture
async def running(push_cfg, nursery):
    """The whole server (LMTP, IMAP, push delivery) with user alice/pw, and a
    Receiver."""
    from mailaccess.server import app

    srv = await nursery.start(lambda task_status: app.serve(push_cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, srv.store, "alice", "pw")
    with srv.store.view() as v:
        acc = v.account_by_name("alice").id
    rcv = Receiver()
    await rcv.start(nursery)
    jctx = JmapContext(srv.store, srv.bus, srv.cfg, acc, "alice")
    yield srv, jctx, rcv
    nursery.cancel_scope.cancel()


async def subscribe(jctx, rcv, **extra) -> tuple[str, dict]:
    """Create a subscription to RCV, wait for its PushVerification, verify
    it -> (id, the verification object)."""
    key = extra.pop("_key", None)
    auth = extra.pop("_auth", None)
    n = len(rcv.posts)
    res = await pset(jctx, create={"k": sub_obj(url=rcv.url(), **extra)})
    sid = res["created"]["k"]["id"]
    await rcv.wait_for(lambda p: len(p) > n)
    _, headers, body = rcv.posts[n]
    ver = decode(headers, body, key, auth)
    assert ver == {"@type": "PushVerification", "pushSubscriptionId": sid,
                   "verificationCode": ver["verificationCode"]}
    res = await pset(jctx, update={sid: {"verificationCode": ver["verificationCode"]}})
    assert sid in res["updated"]
    return sid, headers


MSG = b"From: a@example.org\r\nTo: alice@localhost\r\nSubject: hi\r\n\r\nhello\r\n"


def lmtp_deliver(port):
    with smtplib.LMTP("127.0.0.1", port) as c:
        c.sendmail("a@example.org", ["alice@localhost"], MSG)


def imap_append(port):
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login("alice", "pw")
    c.append("INBOX", None, None, MSG)
    c.logout()


def email_state(srv, acc) -> str:
    with srv.store.view() as v:
        return v.kind_state(acc, "Email")


async def test_verification_then_state_change_after_lmtp(running):
    srv, jctx, rcv = running
    sid, headers = await subscribe(jctx, rcv)
    assert headers["ttl"] == str(LOOPBACK.ttl) and headers["urgency"] == "normal"
    assert headers["content-type"].startswith("application/json")
    n = len(rcv.posts)
    await trio.to_thread.run_sync(lmtp_deliver, port_of(srv, "lmtp"))
    want = email_state(srv, jctx.acc)
    await rcv.wait_for(lambda p: any(
        s["changed"][ids.account_id(jctx.acc)].get("Email") == want
        for s in state_changes(p[n:])))
    sc = state_changes(rcv.posts[n:])[-1]
    changed = sc["changed"][ids.account_id(jctx.acc)]
    with srv.store.view() as v:
        assert changed == {k: v.kind_state(jctx.acc, k) for k in changed}
    assert {"Email", "Mailbox", "Thread"} <= set(changed)


async def test_unverified_gets_no_state_change(running):
    srv, jctx, rcv = running
    res = await pset(jctx, create={"k": sub_obj(url=rcv.url("/a"))})
    await rcv.wait_for(lambda p: len(p) == 1)
    # a verified second subscription tells us when the change was pushed
    await subscribe(jctx, rcv, deviceClientId="other")
    await trio.to_thread.run_sync(lmtp_deliver, port_of(srv, "lmtp"))
    await rcv.wait_for(lambda p: len(state_changes(p)) >= 1)
    assert all(t != "/a" for t, _, b in rcv.posts if b"StateChange" in b)
    # only the verified subscription waits on the bus
    assert srv.bus.holding(jctx.acc)[0] == 1
    assert res["created"]["k"]["id"]


async def test_the_service_sweeps_a_subscription_when_it_expires(running):
    srv, jctx, rcv = running
    from mailaccess.store.records import PushSubscription
    p = PushSubscription(0, "d", rcv.url(), code="c", client_code="c",
                         expires=int(time.time()) + 1)
    await storeio.write(srv.store, ops.create_push_subscription, jctx.acc, p, 10)
    push_delivery.subscriptions_changed(srv.store)
    svc = push_delivery._RUNNING[id(srv.store)]
    # the sweep's delete is visible to readers before the sweeping task
    # resumes to count it: wait for both (a hang guard, not a timing check)
    with trio.fail_after(60):
        while True:
            with srv.store.view() as v:
                if not v.push_subscriptions(jctx.acc) and svc.stats["expired"]:
                    break
            await trio.sleep(0.05)
    assert svc.stats["expired"] == 1 and svc.stats["gone"] == 0


async def test_types_filter_and_imap_append(running):
    srv, jctx, rcv = running
    await subscribe(jctx, rcv, types=["Mailbox"])
    n = len(rcv.posts)
    await trio.to_thread.run_sync(imap_append, port_of(srv, "imap"))
    await rcv.wait_for(lambda p: len(state_changes(p[n:])) >= 1)
    for sc in state_changes(rcv.posts[n:]):
        assert set(sc["changed"][ids.account_id(jctx.acc)]) == {"Mailbox"}


async def test_encrypted_delivery_decrypts_with_the_subscribers_key(running):
    srv, jctx, rcv = running
    key, auth, keys = keypair()
    sid, headers = await subscribe(jctx, rcv, keys=keys, _key=key, _auth=auth)
    assert headers["content-encoding"] == "aes128gcm"
    bodies = [b for _, _, b in rcv.posts]
    n = len(rcv.posts)
    await trio.to_thread.run_sync(lmtp_deliver, port_of(srv, "lmtp"))
    want = email_state(srv, jctx.acc)
    await rcv.wait_for(lambda p: any(
        s["changed"][ids.account_id(jctx.acc)].get("Email") == want
        for s in state_changes(p[n:], key, auth)))
    assert all(b"StateChange" not in b and b"Email" not in b
               for _, _, b in rcv.posts[n:])               # ciphertext on the wire
    # a fresh salt and server key per message: the aes128gcm headers differ
    assert len({b[:16] for b in bodies + [b for _, _, b in rcv.posts[n:]]}) == len(rcv.posts)
    assert len({b[21:21 + 65] for _, _, b in rcv.posts}) == len(rcv.posts)


async def test_410_destroys_the_subscription(running):
    srv, jctx, rcv = running
    sid, _ = await subscribe(jctx, rcv)
    rcv.statuses = [410]
    n = len(rcv.posts)
    await trio.to_thread.run_sync(lmtp_deliver, port_of(srv, "lmtp"))
    await rcv.wait_for(lambda p: len(p) > n)
    with trio.fail_after(60):
        while (await pget(jctx, ids=[sid]))["notFound"] != [sid]:
            await trio.sleep(0.01)


async def test_5xx_is_retried(running):
    srv, jctx, rcv = running
    await subscribe(jctx, rcv)
    rcv.statuses = [503, 500]
    n = len(rcv.posts)
    await trio.to_thread.run_sync(lmtp_deliver, port_of(srv, "lmtp"))
    await rcv.wait_for(lambda p: len(p) >= n + 3)
    sc = state_changes(rcv.posts[n:])
    assert len(sc) == 3 and sc[0] == sc[2]     # the same StateChange, sent again


async def test_a_burst_coalesces(running):
    srv, jctx, rcv = running
    await subscribe(jctx, rcv, types=["Email"])
    inbox = None
    with srv.store.view() as v:
        inbox = v.mailbox_by_role(jctx.acc, "inbox").id
    from mailaccess import ingest, storeio
    n = len(rcv.posts)
    rcv.hold = trio.Event()                     # the first POST stays in flight
    await storeio.write(srv.store, ops.append, jctx.acc, [inbox], ingest.prepare(MSG), [])
    await rcv.wait_for(lambda p: len(p) > n)
    for _ in range(50):
        await storeio.write(srv.store, ops.append, jctx.acc, [inbox], ingest.prepare(MSG), [])
    want = email_state(srv, jctx.acc)
    rcv.hold.set()
    await rcv.wait_for(lambda p: any(
        s["changed"][ids.account_id(jctx.acc)].get("Email") == want
        for s in state_changes(p[n:])))
    # the one in flight, then all 50 merged (a third only if the last commit
    # was published after the second POST had read the states)
    assert 2 <= len(rcv.posts) - n <= 3


# (address, globally reachable) where Python releases disagree with each
# other or with IANA's registries: 3.11.7 calls 192.0.0.8, 2002::/16 (6to4)
# and 64:ff9b:1::/48 global and 2001:1::1, 2001:20::/28 not; 3.13 calls the
# deprecated site-local fec0::/10, 3fff::/20 (documentation) and 5f00::/16
# (SRv6) global
ADDRESS_GLOBAL = [
    ("8.8.8.8", True), ("2606:4700::1111", True), ("192.0.0.9", True), ("192.0.0.10", True),
    ("2001:1::1", True), ("2001:20::1", True), ("2001:4:112::1", True),
    ("::ffff:8.8.8.8", True), ("64:ff9b::808:808", True), ("192.88.99.1", True),
    ("192.0.0.8", False), ("192.0.0.170", False), ("2002::1", False), ("2002:7f00:1::1", False),
    ("64:ff9b:1::1", False), ("fec0::1", False), ("3fff::1", False), ("5f00::1", False),
    ("::ffff:10.0.0.1", False), ("::ffff:127.0.0.1", False), ("::127.0.0.1", False),
    ("10.1.2.3", False), ("100.64.0.1", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.1.1", False), ("127.0.0.1", False), ("0.0.0.0", False), ("255.255.255.255", False),
    ("224.0.0.1", False), ("::1", False), ("::", False), ("fe80::1", False), ("fd00::1", False),
    ("2001:db8::1", False), ("2001::1", False), ("ff02::1", False), ("198.18.0.1", False),
]


@pytest.mark.parametrize("addr,want", ADDRESS_GLOBAL)
def test_the_address_rule_is_the_same_on_every_python(addr, want):
    """Which addresses push delivery reaches is our table, not the
    interpreter's ipaddress.is_global (which changed in 3.11.10/3.12.4/3.13)."""
    import ipaddress
    ip = ipaddress.ip_address(addr)
    assert http_out.global_only(ip) is want
    assert push_delivery.address_rule(PushConfig())(http_out.plain(ip)) is want


def test_an_ipv4_mapped_loopback_address_is_loopback_on_every_python():
    """::ffff:127.0.0.1 is 127.0.0.1: allowed by allow_loopback_http, not by
    allow_private_addresses (3.13's is_loopback says so, 3.11.7's did not)."""
    import ipaddress
    ip = http_out.plain(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert push_delivery.address_rule(PushConfig(allow_loopback_http=True))(ip)
    assert not push_delivery.address_rule(PushConfig(allow_private_addresses=True))(ip)
    assert push_delivery.address_rule(PushConfig(allow_private_addresses=True))(
        http_out.plain(ipaddress.ip_address("::ffff:10.0.0.1")))


async def test_http_client_refuses_addresses_and_times_out(nursery):
    with pytest.raises(http_out.Refused):
        await http_out.post("http://127.0.0.1:9/x", b"", allow_http=True)   # loopback: no
    with pytest.raises(http_out.Refused):
        await http_out.post("http://example.org/x", b"")                    # not https
    # a server that never answers: the read deadline ends it
    async def silent(stream):
        await trio.sleep_forever()
    listeners = await nursery.start(functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(http_out.Timeout):
        await http_out.post(f"http://127.0.0.1:{port}/x", b"{}", allow_http=True,
                            io_timeout=0.05, allow_address=lambda ip: True)


async def test_http_client_verifies_tls(nursery):
    """https: the certificate is checked (a CA we do not trust fails; the
    same server through a context that trusts its CA answers)."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    rcv = Receiver()

    async def tls_conn(stream):
        s = trio.SSLStream(stream, server_ctx, server_side=True)
        try:
            await s.do_handshake()
        except trio.BrokenResourceError:
            return
        await rcv._conn(s)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, tls_conn, 0,
                                                      host="127.0.0.1"))
    url = f"https://localhost:{listeners[0].socket.getsockname()[1]}/p"
    anywhere = dict(allow_address=lambda ip: True)
    with pytest.raises(http_out.HttpError):
        await http_out.post(url, b"{}", **anywhere)              # system trust store
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    resp = await http_out.post(url, b'{"a":1}', [("TTL", "5")], ssl_context=client_ctx,
                               **anywhere)
    assert resp.status == 201
    assert rcv.posts[-1][2] == b'{"a":1}' and rcv.posts[-1][1]["ttl"] == "5"


def test_push_config_section(tmp_path):
    from mailaccess import config

    p = tmp_path / "c.toml"
    p.write_text("[push]\nmax_expires_days = 2\nallow_loopback_http = true\n")
    cfg = config.load(str(p))
    assert cfg.push.max_expires_days == 2 and cfg.push.allow_loopback_http


# --- values (hypothesis) -----------------------------------------------------------

from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess.server import jmap_push_subscription as jps
from mailaccess.server.jmap_standard import SetError


@given(st.integers(min_value=0, max_value=2**33))
def test_utc_dates_round_trip(t):
    assert jps.parse_utc_date(jps.utc_date(t)) == t


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=60), st.from_regex(r"https?://[a-z0-9.:\[\]@%-]{0,30}/?.{0,20}"),
                 st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)))
def test_any_url_value_is_accepted_or_refused_cleanly(url):
    try:
        out = jps.check_url(url, PushConfig())
    except SetError as exc:
        assert exc.error["type"] == "invalidProperties"
    else:
        assert out.startswith("https://")


@settings(max_examples=200)
@given(st.one_of(st.none(), st.dictionaries(st.sampled_from(["p256dh", "auth", "x"]),
                                            st.one_of(st.text(max_size=100), st.integers()))))
def test_any_keys_value_is_accepted_or_refused_cleanly(keys):
    try:
        p256dh, auth = jps.check_keys(keys)
    except SetError as exc:
        assert exc.error["properties"] == ["keys"]
    else:
        assert keys is None or (p256dh, auth) == (keys["p256dh"], keys["auth"])
