"""ActiveSync Ping and the waiting machinery (server/eas_ping.py,
server/eas_push.py) against ``serve``: raw requests built with our WBXML
codec over httpx (12.1, 14.1, 16.1) and pyactivesync's ping (16.1).

The heartbeat bounds and the caps are small through the config, so nothing
here depends on timing: a Ping that must wait is seen waiting in the
service's registry before the test acts, and ``Status 1`` comes from a
1-second interval running out."""
import dataclasses
import smtplib
from functools import partial

import httpx
import pytest
import trio
from pyactivesync import Client

from conftest import make_config
from eas_helpers import base
from imap_helpers import connect, msg, run
from mailaccess import accounts, ids
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.server import eas_push, http
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"
VERSIONS = ["12.1", "14.1", "16.1"]


@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, eas=dataclasses.replace(
        c.eas, min_heartbeat=1, max_heartbeat=600, max_ping_folders=3,
        max_pings_per_user=2, max_pings=3, max_concurrent_requests=1))


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def client(ctx, user="alice") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base(ctx), auth=(user, "pw"), timeout=120)


async def post(c, cmd, body: bytes | None, *, version="14.1", device="raw1", key=None,
               user="alice"):
    headers = {"content-type": WBXML, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    return await c.post("/Microsoft-Server-ActiveSync", content=body or b"", headers=headers,
                        params={"Cmd": cmd, "User": user, "DeviceId": device,
                                "DeviceType": "test"})


def _provision_body(key=None):
    pol = [E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML")]
    if key is not None:
        pol += [E("Provision:PolicyKey", text=str(key)), E("Provision:Status", text="1")]
    return encode(E("Provision:Provision", E("Provision:Policies", E("Provision:Policy", *pol))))


def _policy_key(doc) -> str:
    return doc.find("Provision:Policies").find("Provision:Policy").child_text(
        "Provision:PolicyKey")


async def device(c, *, version="14.1", device="raw1", user="alice") -> int:
    """Provision DEVICE and FolderSync it -> its policy key."""
    kw = dict(version=version, device=device, user=user)
    temp = _policy_key(decode((await post(c, "Provision", _provision_body(), **kw)).content))
    key = int(_policy_key(decode((await post(c, "Provision", _provision_body(temp),
                                             **kw)).content)))
    r = await post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                   E("FolderHierarchy:SyncKey", text="0"))), key=key, **kw)
    assert r.status_code == 200
    return key


def ping_body(folders=(), hb=None, cls="Email") -> bytes:
    kids = []
    if hb is not None:
        kids.append(E("Ping:HeartbeatInterval", text=str(hb)))
    if folders:
        kids.append(E("Ping:Folders", *(E("Ping:Folder", E("Ping:Id", text=f),
                                            E("Ping:Class", text=cls)) for f in folders)))
    return encode(E("Ping:Ping", *kids))


async def ping(c, key, folders=(), hb=None, *, body=True, **kw):
    """-> (Status, [changed folder ids], the answer's root) or the HTTP response
    when it is not a WBXML answer."""
    r = await post(c, "Ping", ping_body(folders, hb) if body else None, key=key, **kw)
    if r.status_code != 200:
        return r
    doc = decode(r.content)
    fs = doc.find("Ping:Folders")
    return (int(doc.child_text("Ping:Status")),
            [f.text for f in fs.children] if fs is not None else [], doc)


def acc_of(srv, name="alice") -> int:
    return accounts.lookup(srv.store, name).id


def inbox(srv, name="alice") -> str:
    with srv.store.view() as v:
        return ids.mailbox_id(v.mailbox_by_role(acc_of(srv, name), "inbox").id)


def registry(srv) -> eas_push.Registry:
    return eas_push._REGISTRIES[http.service_of(srv)]


async def until_waiting(srv, dev, user="alice", n=1):
    """Until DEV's Ping waits on the bus (and N requests wait in all)."""
    key = (acc_of(srv, user), dev)
    with trio.fail_after(30):
        while True:
            reg = eas_push._REGISTRIES.get(http.service_of(srv))
            if reg is not None and key in reg.by_device and reg.total >= n:
                return
            await trio.sleep(0.01)


def lmtp_deliver(ctx, rcpt="alice@localhost", subject="pushed"):
    with smtplib.LMTP("127.0.0.1", ctx.bound["lmtp"][0][1], timeout=30) as s:
        s.sendmail("s@example.org", [rcpt], msg(subject))


def imap_append(ctx, subject="appended"):
    c = connect(ctx)
    c.append("INBOX", None, None, msg(subject))
    c.logout()


class Later:
    """A request run in the background; ``await later.result()``."""

    def __init__(self, nursery, fn, *args, **kw):
        self._done = trio.Event()
        self._value = None

        async def go():
            self._value = await fn(*args, **kw)
            self._done.set()
        nursery.start_soon(go)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def result(self):
        with trio.fail_after(60):
            await self._done.wait()
        return self._value


# --- changes pushed -----------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
async def test_lmtp_delivery_answers_status_2_with_the_folder(srv, version, nursery):
    async with client(srv) as c:
        key = await device(c, version=version)
        box = inbox(srv)
        p = Later(nursery, ping, c, key, [box], 300, version=version)
        await until_waiting(srv, "raw1")
        await run(lmtp_deliver, srv)
        status, folders, _ = await p.result()
    assert (status, folders) == (2, [box])
    assert registry(srv).total == 0
    assert srv.bus.holding(acc_of(srv)) == (0, 0)


async def test_imap_append_answers_status_2(srv, nursery):
    async with client(srv) as c:
        key = await device(c)
        box = inbox(srv)
        with srv.store.view() as v:
            archive = ids.mailbox_id(v.mailbox_by_role(acc_of(srv), "archive").id)
        p = Later(nursery, ping, c, key, [archive, box], 300)
        await until_waiting(srv, "raw1")
        await run(imap_append, srv)
        status, folders, _ = await p.result()
    assert (status, folders) == (2, [box])


async def test_a_change_elsewhere_does_not_answer(srv, nursery):
    """Mail for another user and mail in an unwatched folder keep the Ping
    waiting; the interval then runs out (Status 1)."""
    async with client(srv) as c:
        key = await device(c)
        with srv.store.view() as v:
            archive = ids.mailbox_id(v.mailbox_by_role(acc_of(srv), "archive").id)
        p = Later(nursery, ping, c, key, [archive], 2)
        await until_waiting(srv, "raw1")
        await run(lmtp_deliver, srv, "bob@localhost")
        await run(lmtp_deliver, srv)            # alice's INBOX, not watched
        status, folders, _ = await p.result()
    assert (status, folders) == (1, [])


async def test_pyactivesync_ping_sees_a_delivery(srv, nursery):
    box = inbox(srv)

    def go():
        with Client("unused", "alice", "pw", device_id="pyas", timeout=60) as pc:
            pc._transport.base_url = base(srv) + "/Microsoft-Server-ActiveSync"
            pc.provision()
            pc.list_folders()
            return pc.ping(box, heartbeat=300, timeout=60)

    p = Later(nursery, run, go)
    await until_waiting(srv, "pyas")
    await run(lmtp_deliver, srv)
    result = await p.result()
    assert result.status == "2" and result.changed_folder_ids == [box]


async def test_nothing_happens_status_1(srv):
    async with client(srv) as c:
        key = await device(c, version="12.1")
        status, folders, doc = await ping(c, key, [inbox(srv)], 1, version="12.1")
    assert (status, folders) == (1, [])
    assert registry(srv).total == 0


# --- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
async def test_heartbeat_out_of_bounds_status_5_with_the_bound(srv, version):
    async with client(srv) as c:
        key = await device(c, version=version)
        low = await ping(c, key, [inbox(srv)], 0, version=version)
        high = await ping(c, key, [inbox(srv)], 601, version=version)
    assert low[0] == 5 and low[2].child_text("Ping:HeartbeatInterval") == "1"
    assert high[0] == 5 and high[2].child_text("Ping:HeartbeatInterval") == "600"


async def test_too_many_folders_status_6_with_max_folders(srv):
    async with client(srv) as c:
        key = await device(c)
        with srv.store.view() as v:
            boxes = [ids.mailbox_id(m.id) for m in v.mailboxes(acc_of(srv))]
        assert len(boxes) > 3
        status, _, doc = await ping(c, key, boxes, 60)
    assert status == 6 and doc.child_text("Ping:MaxFolders") == "3"


async def test_unknown_folder_status_7(srv):
    async with client(srv) as c:
        key = await device(c)
        assert (await ping(c, key, ["M9999"], 60))[0] == 7
        assert (await ping(c, key, ["nonsense"], 60))[0] == 7
        assert (await ping(c, key, [inbox(srv), "M9999"], 60))[0] == 7


async def test_malformed_pings_status_3_and_4(srv):
    async with client(srv) as c:
        key = await device(c, device="fresh")
        # nothing remembered for this device: an empty Ping lacks parameters
        assert (await ping(c, key, body=False, device="fresh"))[0] == 3
        assert (await ping(c, key, [], 60, device="fresh"))[0] == 3   # no folders
        assert (await ping(c, key, [inbox(srv)], "soon", device="fresh"))[0] == 4
        r = await post(c, "Ping", encode(E("Ping:Ping", E("Ping:Folders", E("Ping:Folder",
                       E("Ping:Class", text="Email"))))), key=key, device="fresh")
        assert decode(r.content).child_text("Ping:Status") == "4"    # Folder without Id
        r = await post(c, "Ping", ping_body([inbox(srv)], 60, cls="Calendar"), key=key,
                       device="fresh")
        assert decode(r.content).child_text("Ping:Status") == "4"
        r = await post(c, "Ping", encode(E("FolderHierarchy:FolderSync")), key=key,
                       device="fresh")
        assert decode(r.content).child_text("Ping:Status") == "4"


async def test_an_empty_ping_reuses_the_last_parameters(srv, nursery):
    async with client(srv) as c:
        key = await device(c)
        box = inbox(srv)
        assert (await ping(c, key, [box], 1))[:2] == (1, [])
        # no body: the remembered 1-second interval and INBOX
        assert (await ping(c, key, body=False))[:2] == (1, [])
        # the interval alone: the remembered folders
        p = Later(nursery, ping, c, key, (), 300)
        await until_waiting(srv, "raw1")
        await run(lmtp_deliver, srv)
        assert (await p.result())[:2] == (2, [box])
        # an empty Ping now waits 300 s (remembered): the delivery answers it
        p = Later(nursery, ping, c, key, body=False)
        await until_waiting(srv, "raw1")
        await run(lmtp_deliver, srv)
        assert (await p.result())[:2] == (2, [box])


async def test_a_new_folder_anywhere_asks_for_a_folder_sync(srv, nursery):
    async with client(srv) as c:
        key = await device(c)
        box = inbox(srv)
        with srv.store.view() as v:
            archive = v.mailbox_by_role(acc_of(srv), "archive").id
        await trio.to_thread.run_sync(srv.store.write_sync, ops.create_mailbox, acc_of(srv), 0,
                                      "Projects")
        assert (await ping(c, key, [box], 60))[0] == 7
        r = await post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                       E("FolderHierarchy:SyncKey", text="1"))), key=key)
        assert r.status_code == 200
        assert (await ping(c, key, [box], 1))[0] == 1
        # a watched folder deleted while the Ping waits
        p = Later(nursery, ping, c, key, [box, ids.mailbox_id(archive)], 300)
        await until_waiting(srv, "raw1")
        await trio.to_thread.run_sync(srv.store.write_sync, ops.delete_mailbox,
                                      acc_of(srv), archive)
        assert (await p.result())[0] == 7


async def test_a_device_without_folder_sync_gets_status_7(srv):
    async with client(srv) as c:
        kw = dict(device="nofs")
        temp = _policy_key(decode((await post(c, "Provision", _provision_body(), **kw)).content))
        key = int(_policy_key(decode((await post(c, "Provision", _provision_body(temp),
                                                 **kw)).content)))
        assert (await ping(c, key, [inbox(srv)], 60, **kw))[0] == 7


# --- one waiting request per device; caps ----------------------------------------------------

async def test_a_second_ping_from_the_device_ends_the_first(srv, nursery):
    async with client(srv) as c1, client(srv) as c2:
        key = await device(c1)
        box = inbox(srv)
        first = Later(nursery, ping, c1, key, [box], 300)
        await until_waiting(srv, "raw1")
        # the device's other requests run while its Ping waits (the lock is released)
        r = await post(c2, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                       E("FolderHierarchy:SyncKey", text="1"))), key=key)
        assert r.status_code == 200 and not first.done
        second = Later(nursery, ping, c2, key, [box], 300)
        assert (await first.result())[:2] == (1, [])
        await until_waiting(srv, "raw1")
        assert registry(srv).superseded == 1 and registry(srv).total == 1
        await run(lmtp_deliver, srv)
        assert (await second.result())[:2] == (2, [box])


async def test_caps_per_user_and_in_all_answer_503(srv, nursery):
    """max_pings_per_user 2, max_pings 3, max_concurrent_requests 1."""
    async with client(srv) as a, client(srv, "bob") as b:
        keys = {d: await device(a, device=d) for d in ("d1", "d2", "d3")}
        bkeys = {d: await device(b, device=d, user="bob") for d in ("b1", "b2")}
        box, bbox = inbox(srv), inbox(srv, "bob")
        async with trio.open_nursery() as waits:
            waits.start_soon(partial(ping, a, keys["d1"], [box], 300, device="d1"))
            await until_waiting(srv, "d1")
            # the waiting Ping holds no request slot: alice's one slot is free
            r = await post(a, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                           E("FolderHierarchy:SyncKey", text="1"))), key=keys["d1"],
                           device="d1")
            assert r.status_code == 200
            waits.start_soon(partial(ping, a, keys["d2"], [box], 300, device="d2"))
            await until_waiting(srv, "d2", n=2)
            r = await ping(a, keys["d3"], [box], 300, device="d3")        # per user
            assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
            waits.start_soon(partial(ping, b, bkeys["b1"], [bbox], 300, device="b1",
                                     user="bob"))
            await until_waiting(srv, "b1", "bob", n=3)
            r = await ping(b, bkeys["b2"], [bbox], 300, device="b2", user="bob")  # in all
            assert r.status_code == 503 and "retry-after" in r.headers
            assert registry(srv).refused == 2 and registry(srv).total == 3
            # the clients go away: their waits end, nothing stays behind
            waits.cancel_scope.cancel()
        with trio.fail_after(30):
            while registry(srv).total:
                await trio.sleep(0.01)
        assert registry(srv).by_device == {} and registry(srv).per_user == {}
        assert srv.bus.holding(acc_of(srv)) == (0, 0)
        assert http.service_of(srv).slots == {}
        # and the server keeps serving: a new Ping waits and is answered
        p = Later(nursery, ping, a, keys["d3"], [box], 300, device="d3")
        await until_waiting(srv, "d3")
        await run(lmtp_deliver, srv)
        assert (await p.result())[:2] == (2, [box])


async def test_shutdown_answers_waiting_pings(srv, nursery):
    async with client(srv) as c:
        key = await device(c)
        p = Later(nursery, post, c, "Ping", ping_body([inbox(srv)], 600), key=key)
        await until_waiting(srv, "raw1")
        http.service_of(srv).drain()
        r = await p.result()
    assert r.status_code == 200 and decode(r.content).child_text("Ping:Status") == "1"
    assert r.headers.get("connection") == "close"


# --- with Sync (eas_sync.py): pending changes, hanging Sync ------------------------------------

def sync_body(cid, key, *, wait=None, window=None) -> bytes:
    kids = [E("AirSync:SyncKey", text=str(key)), E("AirSync:CollectionId", text=cid)]
    if window is not None:
        kids.append(E("AirSync:WindowSize", text=str(window)))
    top = [E("AirSync:Collections", E("AirSync:Collection", *kids))]
    if wait is not None:
        top.append(E("AirSync:Wait", text=str(wait)))
    return encode(E("AirSync:Sync", *top))


async def sync(c, policy, cid, key, **kw):
    """-> (new SyncKey, [added ServerIds]); (None, []) for the empty answer."""
    wait = kw.pop("wait", None)
    r = await post(c, "Sync", sync_body(cid, key, wait=wait), key=policy, **kw)
    assert r.status_code == 200
    if not r.content:
        return None, []
    doc = decode(r.content)
    coll = doc.find("AirSync:Collections").find("AirSync:Collection")
    cmds = coll.find("AirSync:Commands")
    adds = [a.child_text("AirSync:ServerId") for a in cmds.findall("AirSync:Add")] \
        if cmds is not None else []
    return coll.child_text("AirSync:SyncKey"), adds


async def synced(c, policy, cid, **kw) -> str:
    """Sync CID from key 0 until nothing is left -> the current key."""
    key, _ = await sync(c, policy, cid, 0, **kw)
    while True:
        new, adds = await sync(c, policy, cid, key, **kw)
        if not adds:
            return new or key
        key = new


async def test_pending_changes_answer_at_once_then_push_after_sync(srv, nursery):
    async with client(srv) as c:
        policy = await device(c)
        box = inbox(srv)
        await run(lmtp_deliver, srv)
        key, _ = await sync(c, policy, box, 0)          # primed: the message not sent yet
        assert (await ping(c, policy, [box], 300))[:2] == (2, [box])
        key = await synced(c, policy, box)
        # nothing left to send: the Ping waits, and a delivery answers it
        p = Later(nursery, ping, c, policy, [box], 300)
        await until_waiting(srv, "raw1")
        assert not p.done
        await run(lmtp_deliver, srv, "alice@localhost", "second")
        assert (await p.result())[:2] == (2, [box])
        new, adds = await sync(c, policy, box, key)
        assert len(adds) == 1
        # the device's own change (a Sync it made) is no news for its Ping
        assert (await ping(c, policy, [box], 1))[:2] == (1, [])


async def test_ping_and_hanging_sync_of_one_device_end_each_other(srv, nursery):
    async with client(srv) as c1, client(srv) as c2:
        policy = await device(c1)
        box = inbox(srv)
        key = await synced(c1, policy, box)
        hanging = Later(nursery, sync, c1, policy, box, key, wait=5)
        await until_waiting(srv, "raw1")
        p = Later(nursery, ping, c2, policy, [box], 300)
        assert await hanging.result() == (None, [])     # the empty answer: ended
        await until_waiting(srv, "raw1")
        hanging = Later(nursery, sync, c1, policy, box, key, wait=5)
        assert (await p.result())[:2] == (1, [])         # ended by the hanging Sync
        await until_waiting(srv, "raw1")
        await run(lmtp_deliver, srv)
        new, adds = await hanging.result()
        assert len(adds) == 1
        assert registry(srv).total == 0


# --- the registry alone -------------------------------------------------------------------------

def test_registry_orders_requests_of_a_device_by_arrival():
    reg = eas_push.Registry(max_per_user=5, max_total=5)
    older = reg.admit(1, "d", seq=1)
    newer = reg.admit(1, "d", seq=2)
    assert older.ended and older.why == "superseded" and not newer.ended
    # the older request waiting again (a hanging Sync's loop) does not end the newer
    again = reg.admit(1, "d", seq=1)
    assert again.ended and not newer.ended and reg.by_device[(1, "d")] is newer
    assert reg.total == 1
    for w in (older, newer, again):
        reg.release(w)
    assert (reg.total, reg.per_user, reg.by_device) == (0, {}, {})


def test_registry_caps_and_drain():
    reg = eas_push.Registry(max_per_user=2, max_total=3)
    a1, a2 = reg.admit(1, "a1", 1), reg.admit(1, "a2", 2)
    with pytest.raises(eas_push.PushBusy):
        reg.admit(1, "a3", 3)
    b1 = reg.admit(2, "b1", 4)
    with pytest.raises(eas_push.PushBusy) as exc:
        reg.admit(3, "c1", 5)
    r = exc.value.response()
    assert r.status == 503 and ("retry-after", str(eas_push.RETRY_AFTER)) in r.headers
    # a device's newer request replaces its older one within the caps
    a1b = reg.admit(1, "a1", 6)
    assert a1.ended and reg.total == 3
    reg.drain()
    assert all(w.ended and w.why == "shutdown" for w in (a2, b1, a1b))
    reg.release(a1)
    for w in (a2, b1, a1b):
        reg.release(w)
    assert reg.total == 0
    assert reg.admit(4, "late", 7).ended         # draining: answered at once


async def test_a_hanging_sync_past_the_cap_gets_503(srv, nursery):
    async with client(srv) as c:
        keys = {d: await device(c, device=d) for d in ("d1", "d2", "d3")}
        box = inbox(srv)
        key = await synced(c, keys["d3"], box, device="d3")
        async with trio.open_nursery() as waits:
            for d in ("d1", "d2"):
                waits.start_soon(partial(ping, c, keys[d], [box], 300, device=d))
                await until_waiting(srv, d)
            r = await post(c, "Sync", sync_body(box, key, wait=5), key=keys["d3"], device="d3")
            assert r.status_code == 503 and "retry-after" in r.headers
            waits.cancel_scope.cancel()
