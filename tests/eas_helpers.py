"""Helpers for the ActiveSync Sync/GetItemEstimate tests: a server with
alice and bob, raw requests built with our WBXML codec (httpx), pyactivesync
clients pointed at the server, and a way to fill a mailbox fast."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import pytest
import trio
from pyactivesync import Client

from mailaccess import accounts, ids, ingest
from mailaccess.proto.eas.wbxml import E, Element, decode, encode
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"
VERSIONS = ["12.1", "14.0", "14.1", "16.0", "16.1"]


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def base(ctx) -> str:
    return f"http://127.0.0.1:{ctx.bound['http'][0][1]}"


def eas_client(ctx, device="dev1", user="alice", pw="pw") -> Client:
    c = Client("unused", user, pw, device_id=device, timeout=30)
    c._transport.base_url = base(ctx) + "/Microsoft-Server-ActiveSync"
    return c


def http(ctx, user="alice", pw="pw", timeout=30) -> httpx.Client:
    return httpx.Client(base_url=base(ctx), auth=(user, pw), timeout=timeout)


def post(c, cmd, body: bytes | None, *, version="14.1", device="raw1", key=None):
    headers = {"content-type": WBXML, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    return c.post("/Microsoft-Server-ActiveSync",
                  params={"Cmd": cmd, "User": "alice", "DeviceId": device, "DeviceType": "test"},
                  content=body or b"", headers=headers)


def provision(c, version="14.1", device="raw1") -> int:
    """Both phases -> the final policy key."""
    def body(key=None):
        pol = [E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML")]
        if key is not None:
            pol += [E("Provision:PolicyKey", text=str(key)), E("Provision:Status", text="1")]
        return encode(E("Provision:Provision", E("Provision:Policies", E("Provision:Policy", *pol))))

    r1 = decode(post(c, "Provision", body(), version=version, device=device).content)
    temp = r1.find("Provision:Policies").find("Provision:Policy").child_text("Provision:PolicyKey")
    r2 = decode(post(c, "Provision", body(temp), version=version, device=device).content)
    return int(r2.find("Provision:Policies").find("Provision:Policy")
               .child_text("Provision:PolicyKey"))


def collection(cid: str, key, *, window=None, options=None, commands=None, get_changes=None,
               deletes_as_moves=None) -> Element:
    kids = [E("AirSync:SyncKey", text=str(key)), E("AirSync:CollectionId", text=cid)]
    if deletes_as_moves is not None:
        kids.append(E("AirSync:DeletesAsMoves", text="1" if deletes_as_moves else "0"))
    if get_changes is not None:
        kids.append(E("AirSync:GetChanges", text="1" if get_changes else "0"))
    if window is not None:
        kids.append(E("AirSync:WindowSize", text=str(window)))
    if options is not None:
        kids.append(E("AirSync:Options", *options))
    if commands:
        kids.append(E("AirSync:Commands", *commands))
    return E("AirSync:Collection", *kids)


def sync_body(*colls: Element, wait=None, heartbeat=None, window=None, partial=False) -> bytes:
    kids = []
    if colls:
        kids.append(E("AirSync:Collections", *colls))
    if partial:
        kids.append(E("AirSync:Partial"))
    if wait is not None:
        kids.append(E("AirSync:Wait", text=str(wait)))
    if heartbeat is not None:
        kids.append(E("AirSync:HeartbeatInterval", text=str(heartbeat)))
    if window is not None:
        kids.append(E("AirSync:WindowSize", text=str(window)))
    return encode(E("AirSync:Sync", *kids))


@dataclass
class Coll:
    """One Collection of a Sync answer, flattened."""
    key: str
    status: int
    adds: list = field(default_factory=list)        # [(ServerId, ApplicationData)]
    changes: list = field(default_factory=list)
    deletes: list = field(default_factory=list)
    soft: list = field(default_factory=list)
    responses: list = field(default_factory=list)   # [Element]
    more: bool = False

    @property
    def add_ids(self) -> list[str]:
        return [s for s, _ in self.adds]


def collections(doc: Element | None) -> dict[str, Coll]:
    out = {}
    if doc is None:
        return out
    cs = doc.find("AirSync:Collections")
    for c in cs.findall("AirSync:Collection") if cs is not None else []:
        co = Coll(c.child_text("AirSync:SyncKey"), int(c.child_text("AirSync:Status")))
        co.more = c.find("AirSync:MoreAvailable") is not None
        cmds = c.find("AirSync:Commands")
        for x in cmds.children if cmds is not None else []:
            sid = x.child_text("AirSync:ServerId")
            if x.tag == "Add":
                co.adds.append((sid, x.find("AirSync:ApplicationData")))
            elif x.tag == "Change":
                co.changes.append((sid, x.find("AirSync:ApplicationData")))
            elif x.tag == "Delete":
                co.deletes.append(sid)
            elif x.tag == "SoftDelete":
                co.soft.append(sid)
        rs = c.find("AirSync:Responses")
        co.responses = list(rs.children) if rs is not None else []
        out[c.child_text("AirSync:CollectionId")] = co
    return out


def sync(c, key, body: bytes | None, *, version="14.1", device="raw1"):
    """POST a Sync -> the decoded answer (None: the empty answer)."""
    r = post(c, "Sync", body, version=version, device=device, key=key)
    assert r.status_code == 200, r.text
    return decode(r.content) if r.content else None


def account(store, name="alice") -> int:
    return accounts.lookup(store, name).id


def role(store, acc: int, r: str) -> int:
    with store.view() as v:
        return v.mailbox_by_role(acc, r).id


def message(i: int, subject: str | None = None, body: str | None = None) -> bytes:
    return (f"From: Sender {i} <s{i}@example.org>\r\nTo: alice@example.org\r\n"
            f"Subject: {subject or f'message {i}'}\r\nMessage-ID: <m{i}.{time.time_ns()}@x>\r\n"
            f"\r\n{body or f'body of message {i}'}\r\n").encode()


def fill(store, acc: int, mbx: int, n: int, *, start: float | None = None, step=60,
         keywords=()) -> list[int]:
    """N messages in MBX, message i received START - i*STEP (newest first
    in i order); -> their email ids, in i order."""
    t0 = time.time() if start is None else start
    items = [(ingest.prepare(message(i), received_at=int(t0 - i * step)), list(keywords))
             for i in range(n)]
    got = store.write_sync(ops.append_many, acc, mbx, items)
    return [a.email for a in got]


def sid(eid: int) -> str:
    return ids.email_id(eid)


def cid(mbx: int) -> str:
    return ids.mailbox_id(mbx)
