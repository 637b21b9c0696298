"""JMAP Thread (RFC 8621 §3): Thread/get and Thread/changes.

A Thread's id is the IMAP THREADID (``ids.thread_id``); its emailIds are
the store's thread members sorted by receivedAt (then id).  The store logs
a Thread change whenever a member is added or removed, so Thread/changes is
the change log's.
"""
from __future__ import annotations

from .. import ids
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError
from ..store.records import THREAD
from .jmap_api import Call, method
from .jmap_standard import changes_response, get_ids, get_properties

PROPERTIES = ("id", "emailIds")


def email_ids(v, acc: int, tid: int) -> list[str] | None:
    """The thread's emails, oldest receivedAt first; None if it has none."""
    members = []
    for eid in v.thread_members(acc, tid):
        e = v.email(acc, eid)
        if e is not None:
            members.append((e.received_at, eid))
    if not members:
        return None
    members.sort()
    return [ids.email_id(eid) for _, eid in members]


@method("Thread/get", cap.MAIL, args=("ids", "properties"))
async def thread_get(call: Call) -> dict:
    props = get_properties(call, PROPERTIES, PROPERTIES)
    limit = call.ctx.limits.max_objects_in_get
    with call.view() as v:
        def every_thread():
            seen = {}
            for e in v.emails(call.acc):
                seen[e.thread] = None
            if len(seen) > limit:
                raise MethodError("requestTooLarge",
                                  f"more than {limit} threads: ask for ids")
            return [ids.thread_id(t) for t in seen]
        want = get_ids(call, every_thread)
        found, missing = [], []
        for i in want:
            tid = ids.parse("T", i)
            members = email_ids(v, call.acc, tid) if tid is not None else None
            if members is None:
                missing.append(i)
                continue
            obj = {"id": i}
            if "emailIds" in props:
                obj["emailIds"] = members
            found.append(obj)
        st = v.kind_state(call.acc, THREAD)
    return {"accountId": ids.account_id(call.acc), "state": st, "list": found,
            "notFound": missing}


@method("Thread/changes", cap.MAIL, args=("sinceState", "maxChanges"))
async def thread_changes(call: Call) -> dict:
    return changes_response(call, THREAD, ids.thread_id)
