"""ActiveSync GetItemEstimate (server/eas_estimate.py) against ``serve``:
pyactivesync's get_item_estimate, and raw requests for the status codes
and the 12.1 form (FilterType in the Collection)."""
import time

import trio

from eas_helpers import (account, cid, collection, collections, eas_client, fill, http, post,
                         provision, role, sid, srv, sync, sync_body)
from imap_helpers import run
from mailaccess.proto.eas.wbxml import E, decode, encode

assert srv


def estimate_body(*colls) -> bytes:
    return encode(E("ItemEstimate:GetItemEstimate", E("ItemEstimate:Collections", *colls)))


def est_coll(cid_, key, filter_type=None, v121=False):
    kids = []
    if v121:
        kids.append(E("ItemEstimate:Class", text="Email"))
    kids.append(E("ItemEstimate:CollectionId", text=cid_))
    if filter_type is not None and v121:
        kids.append(E("AirSync:FilterType", text=str(filter_type)))
    kids.append(E("AirSync:SyncKey", text=str(key)))
    if filter_type is not None and not v121:
        kids.append(E("AirSync:Options", E("AirSync:FilterType", text=str(filter_type))))
    return E("ItemEstimate:Collection", *kids)


def answers(doc):
    out = []
    for r in doc.findall("ItemEstimate:Response"):
        c = r.find("ItemEstimate:Collection")
        est = c.child_text("ItemEstimate:Estimate") if c is not None else None
        out.append((int(r.child_text("ItemEstimate:Status")), int(est) if est else None))
    return out


async def test_pyactivesync_estimate_counts_what_sync_would_send(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 30)

    def go():
        with eas_client(srv) as c:
            c.provision()
            k = c.sync_folder(cid(inbox), "0").sync_key
            before = c.get_item_estimate(cid(inbox), k)
            r = c.sync_folder(cid(inbox), k, window_size=20)
            mid = c.get_item_estimate(cid(inbox), r.sync_key)
            r = c.sync_folder(cid(inbox), r.sync_key, window_size=20)
            done = c.get_item_estimate(cid(inbox), r.sync_key)
            return before, mid, done, r.sync_key

    before, mid, done, key = await run(go)
    assert (before, mid, done) == (30, 10, 0)
    # a delivery and a flag change show up in the estimate
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 2)
    from mailaccess.store import ops
    with srv.store.view() as v:
        first = sorted(e for _, e in v.uids(acc, inbox))[0]
    srv.store.write_sync(ops.set_keywords, acc, [first], add=["$seen"])

    def again():
        with eas_client(srv) as c:
            c.provision()
            return c.get_item_estimate(cid(inbox), key)

    assert await run(again) == 3


async def test_estimate_statuses_and_versions(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    now = time.time()
    await trio.to_thread.run_sync(lambda: fill(srv.store, acc, inbox, 10, start=now, step=86400))

    def go(version):
        dev = "est" + version.replace(".", "")
        with http(srv) as c:
            pk = provision(c, version, dev)
            k = collections(sync(c, pk, sync_body(collection(cid(inbox), 0)),
                                 version=version, device=dev))[cid(inbox)].key
            v121 = version == "12.1"
            r = post(c, "GetItemEstimate", estimate_body(
                est_coll(cid(inbox), k, v121=v121),
                est_coll(cid(inbox), k, filter_type=3, v121=v121),     # one week: 7 (or 8)
                est_coll("M999", k, v121=v121),
                est_coll(cid(inbox), "0", v121=v121),
                est_coll(cid(inbox), "12345", v121=v121),
                est_coll(cid(role(srv.store, acc, "trash")), "1", v121=v121)),
                version=version, device=dev, key=pk)
            assert r.status_code == 200
            return answers(decode(r.content))

    for version in ("12.1", "14.1", "16.1"):
        got = await run(go, version)
        assert got[0] == (1, 10)
        assert got[1][0] == 1 and got[1][1] in (7, 8)
        assert got[2:] == [(2, None), (3, None), (4, None), (3, None)]
