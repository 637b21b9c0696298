"""ActiveSync GetItemEstimate (MS-ASCMD 2.2.1.9): how many items a Sync of
each collection would send now.

The estimate is exact: eas_syncstate.pending (Add + Change + Delete +
SoftDelete under the device's current key), or eas_syncstate.compute when
the request names a FilterType other than the one the key was made with.
One Response per Collection, each with its Status (2.2.3.177.6):
1 success, 2 the CollectionId is no mailbox, 3 the collection was never
synced (no state, or SyncKey 0: "sync state not primed"), 4 a SyncKey that
is neither the device's current nor previous key.  The SyncKey comes in
the Collection (airsync:SyncKey); 12.1 sends FilterType in the Collection,
14.0+ in airsync:Options.  A body that is no GetItemEstimate is Status 2
(protocol error: "Collection... invalid") at the top.
"""
from __future__ import annotations

from .. import ids, storeio
from ..proto.eas.wbxml import E, Element
from . import eas_syncstate as ss
from .eas_command import Command

OK = 1
INVALID_COLLECTION = 2
NOT_PRIMED = 3
BAD_KEY = 4


def _filter(coll: Element) -> int | None:
    ft = coll.child_text("AirSync:FilterType")
    if ft is None:
        for o in coll.findall("AirSync:Options"):
            if o.child_text("AirSync:Class") in (None, "Email"):
                ft = o.child_text("AirSync:FilterType")
                break
    if ft is None or not ft.strip().isdigit():
        return None
    n = int(ft.strip())
    return n if n in ss.FILTER_DAYS else None


def estimate(view, acc: int, device: str, coll: Element) -> Element:
    cid = coll.child_text("ItemEstimate:CollectionId") or ""
    key = (coll.child_text("AirSync:SyncKey") or "").strip()

    def resp(status: int, n: int | None = None) -> Element:
        kids = [E("ItemEstimate:CollectionId", text=cid)]
        if n is not None:
            kids.append(E("ItemEstimate:Estimate", text=str(n)))
        return E("ItemEstimate:Response", E("ItemEstimate:Status", text=str(status)),
                 E("ItemEstimate:Collection", *kids))

    mbx = ids.parse("M", cid)
    if mbx is None or view.mailbox(acc, mbx) is None:
        return resp(INVALID_COLLECTION)
    st = ss.load(view, acc, device, cid)
    if st is None or key in ("", "0"):
        return resp(NOT_PRIMED)
    snap, _ = st.snapshot_for(int(key) if key.isdigit() and len(key) <= 12 else -1)
    if snap is None:
        return resp(BAD_KEY)
    ft = _filter(coll)
    if snap is st.cur and (ft is None or ft == snap.filter):
        n = ss.pending(view, acc, device, cid)
    else:
        d = ss.compute(view, acc, mbx, snap, ft)
        n = d.count() if d is not None else 0
    return resp(OK, n or 0)


async def run(ctx, body: Element | None) -> Element:
    cs = body.find("ItemEstimate:Collections") if body is not None else None
    if body is None or body.qname != "ItemEstimate:GetItemEstimate" or cs is None:
        return E("ItemEstimate:GetItemEstimate",
                 E("ItemEstimate:Response", E("ItemEstimate:Status", text=str(INVALID_COLLECTION))))
    colls = cs.findall("ItemEstimate:Collection")[:1000]
    acc, dev = ctx.account, ctx.req.device_id

    def answer(v):
        # a collection named again with the same key and FilterType gets
        # the same answer: each estimate may list the whole mailbox (1,000
        # copies of one 5,000-message folder were 7.5 s of a worker)
        memo: dict[tuple, Element] = {}
        out = []
        for c in colls:
            k = (c.child_text("ItemEstimate:CollectionId"), c.child_text("AirSync:SyncKey"),
                 _filter(c))
            if k not in memo:
                memo[k] = estimate(v, acc, dev, c)
            out.append(memo[k])
        return out

    out = await storeio.read(ctx.store, answer)
    return E("ItemEstimate:GetItemEstimate", *out)


COMMANDS = [Command("GetItemEstimate", run, "ItemEstimate:GetItemEstimate", "ItemEstimate:Status")]
