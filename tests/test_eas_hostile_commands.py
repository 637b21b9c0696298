"""ActiveSync commands under hostile input after login: work and memory
that must not grow faster than the request (see docs/activesync.md)."""
from __future__ import annotations

import trio

from eas_helpers import account, cid, message, role, sid, srv  # noqa: F401 (fixture)
from imap_helpers import run
from mailaccess import ingest
from mailaccess.proto.eas.wbxml import E
from mailaccess.server import eas_sync
from mailaccess.store import ops
from test_eas_sync import Device


async def test_repeated_sync_fetches_share_the_answers_byte_budget(srv, monkeypatch):
    # 1000 Fetches of one 1 MB email were an 8 KB request building a 1 GB
    # answer (3.5 GB resident); now the Fetches draw on the answer's byte
    # budget and those past it get Status 5 (retry)
    monkeypatch.setattr(eas_sync, "SYNC_BYTES", 100_000)
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    raw = message(1, body="x" * 60_000)
    got = await trio.to_thread.run_sync(
        srv.store.write_sync, ops.append_many, acc, inbox, [(ingest.prepare(raw), [])])
    eid = got[0].email
    body_opts = [E("AirSyncBase:BodyPreference", E("AirSyncBase:Type", text="1"),
                   E("AirSyncBase:TruncationSize", text="1000000"))]

    def go():
        d = Device(srv)
        k = d.prime(cid(inbox))
        k = d.one(cid(inbox), k).key
        fetches = [E("AirSync:Fetch", E("AirSync:ServerId", text=sid(eid))) for _ in range(50)]
        fetches.append(E("AirSync:Fetch", E("AirSync:ServerId", text="E424242")))
        co = d.one(cid(inbox), k, commands=fetches, options=body_opts)
        d.close()
        return co

    co = await run(go)
    st = [(r.tag, r.child_text("AirSync:ServerId"), r.child_text("AirSync:Status"))
          for r in co.responses]
    assert len(st) == 51
    # 60 KB each against 100 KB: two are sent whole, the rest wait
    assert [s for _, _, s in st[:2]] == ["1", "1"]
    assert all(s == "5" for _, _, s in st[2:])
    data = co.responses[0].find("AirSync:ApplicationData").find("AirSyncBase:Body")
    assert "x" * 60_000 in data.child_text("AirSyncBase:Data")
