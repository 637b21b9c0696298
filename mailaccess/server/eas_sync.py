"""ActiveSync Sync (MS-ASCMD 2.2.1.21): mail collections (the account's
mailboxes) synced to a device, both ways, with paging, filters, the empty
and the hanging Sync.

What a request gets, per Collection (AirSync namespace):

* SyncKey 0: a new key, no items (priming; Commands and GetChanges are
  ignored).  The device's state for the collection starts over.
* The current key: the client's Commands are applied (Change of Email:Read
  and Email:Flag -> ``$seen``/``$flagged``; Delete -> moved to the
  Trash-role mailbox when DeletesAsMoves is 1, the default, else and in the
  Trash itself removed from the mailbox; Add -> a draft in the Drafts-role
  mailbox, 16.0+ only; Fetch -> the item in Responses), then the server's
  changes since the key (eas_syncstate.compute: Delete, SoftDelete, Change,
  then Add newest first) up to WindowSize (per collection and for the
  request, at most 512, default 100) with MoreAvailable when more are left.
  GetChanges 0 sends none of them (they stay pending).
* The previous key (the device lost our answer): the same batch again
  under a new key; the commands are not applied twice (a resent draft Add
  gets the ServerId it got the first time).
* Any other key: Status 3 and SyncKey 0 (the device re-syncs from 0).
* A CollectionId that is no mailbox: Status 12 when the device had synced
  it (the folder was deleted: FolderSync again), Status 8 otherwise.

Conflicts (MS-ASCMD 2.2.3.34): a client Change to an item that changed on
the server since the client's key is discarded with per-item Status 7 when
Options/Conflict is 1 (the default: the server's object wins, and its
Change is in the same answer); with Conflict 0 the client's change is
applied.  A client's own changes are not echoed back to it as Changes.

An answer with nothing in it (no items, no Responses, no errors, no key
moved) is the empty Sync response (2.2.1.21.2: HTTP 200, no body) and keeps
the keys.  An empty request (no body) is the last request again
(2.2.1.21.1), each collection at the device's current key; Partial merges
the request's collections with the last request's.  Options omitted for a
collection are the last ones it was sent with.  The last request's
parameters are kept in the device state under the key ``sync`` (JSON); each
collection's sync state under ``s:<ServerId>`` (eas_syncstate).

Hanging Sync: Wait (minutes, 1..59) or HeartbeatInterval (seconds,
60..3540, 14.0+; both in one request is Status 4).  When there is nothing
to send, the request waits on the bus (eas_push.wait_for_changes, with the
device lock released), rechecks on each notification, and answers as soon
as something changed, or with the empty response when the time is up.
Outside the bounds: Status 14 with Limit (the nearest bound).

Versions: 12.1 has no Preview and no HeartbeatInterval; client Add of email
(drafts) is 16.0+ (earlier: per-item Status 6, as Exchange answers); item
rendering by version is eas_item's.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import trio

from .. import ids, ingest, storeio, vocab
from ..mime import compose as mcompose
from ..proto.eas.wbxml import E, Element
from ..store import NotFound, ops
from . import eas_item, eas_push
from . import eas_syncstate as ss
from .eas_command import Command
from .eas_sync_client import ClientOps, _draft_message, check_commands, item_response, write_client_ops
from .eas_sync_request import (BAD_KEY, CONVERSION_ERROR, DEFAULT_WINDOW, FULL, HIERARCHY_CHANGED,
                               MAX_WINDOW, NOT_FOUND, OK, SERVER_ERROR, CollOptions, CollReq,
                               RequestError, SyncReq, cache_after, collection_options, parse_request,
                               request_from_cache)
from .http import Response

log = logging.getLogger("mailaccess.eas")

LAST_KEY = "sync"


# --- rendering ------------------------------------------------------------------------------

def _flags_data(rec) -> list[Element]:
    """ApplicationData of a Change: what can change on an email (Read, Flag)."""
    flagged = vocab.FLAGGED in rec.keywords
    flag = (E("Email:Flag", E("Email:Status", text="2"),
              E("Email:FlagType", text="Flag for follow up")) if flagged else E("Email:Flag"))
    return [E("Email:Read", text="1" if vocab.SEEN in rec.keywords else "0"), flag]


@dataclass
class Outcome:
    """One collection's answer."""
    element: Element
    reportable: bool          # anything in it the device must see (else: the empty answer)
    write: tuple | None = None   # (device-state key, bytes) to store
    mailbox: int | None = None
    since: int = 0


def _children(commands: list[Element], more: bool, responses: list[Element]) -> list[Element]:
    """A Collection's Commands, MoreAvailable and Responses, in the order of
    MS-ASCMD 4.5.8's example (MoreAvailable after Commands)."""
    kids = [E("AirSync:Commands", *commands)] if commands else []
    if more:
        kids.append(E("AirSync:MoreAvailable"))
    if responses:
        kids.append(E("AirSync:Responses", *responses))
    return kids


def _collection(cid: str, key: str, status: int, *rest: Element) -> Element:
    return E("AirSync:Collection", E("AirSync:SyncKey", text=key),
             E("AirSync:CollectionId", text=cid), E("AirSync:Status", text=str(status)), *rest)


def _render(view, acc: int, eid: int, opts: CollOptions, version: str) -> list[Element] | None:
    try:
        return eas_item.application_data(view, acc, eid, opts.item, version)
    except Exception:
        # one message we cannot render must not stall the device's sync (it
        # would come back as an Add in every answer): send what the record
        # says, log the rest
        log.exception("EAS Sync: cannot render email %s", eid)
        rec = view.email(acc, eid)
        return None if rec is None else _flags_data(rec) + [
            E("Email:MessageClass", text="IPM.Note")]


#: bytes of item data (text and opaque) one Sync answer carries, all its
#: collections together: past it the rest of the window waits for the next
#: Sync (MoreAvailable, MS-ASCMD 2.2.3.108), the first item always goes.
#: Before, a window of 512 whole bodies (up to 64 MB each) was built at once.
SYNC_BYTES = 32 * 1024 * 1024


def _data_bytes(el: Element) -> int:
    n, todo = 0, [el]
    while todo:
        e = todo.pop()
        n += len(e.text or "") + len(e.opaque or b"")
        todo.extend(e.children)
    return n


def render_batch(view, acc: int, mbx: int, batch: list, opts: CollOptions, version: str,
                 room: list[int] | None = None) -> tuple[list[Element], list, set[int], int]:
    """Commands elements of BATCH [(op, eid)] -> (elements, the batch as sent
    (items gone since are left out), the eids of Adds that could not be sent,
    how many items of BATCH were used).  ROOM ([bytes left], shared by the
    collections of one answer): the rendering stops once it is used up."""
    els, sent, gone = [], [], set()
    used = 0
    for op, eid in batch:
        if room is not None and room[0] <= 0:
            break
        used += 1
        sid = eas_item.server_id(eid)
        if op == "D":
            els.append(E("AirSync:Delete", E("AirSync:ServerId", text=sid)))
        elif op == "S":
            els.append(E("AirSync:SoftDelete", E("AirSync:ServerId", text=sid)))
        elif op == "C":
            rec = view.email(acc, eid)
            if rec is None or rec.member(mbx) is None:
                continue     # gone meanwhile: the next Sync deletes it
            els.append(E("AirSync:Change", E("AirSync:ServerId", text=sid),
                         E("AirSync:ApplicationData", *_flags_data(rec))))
        else:
            data = _render(view, acc, eid, opts, version)
            if data is None:
                gone.add(eid)
                continue
            els.append(E("AirSync:Add", E("AirSync:ServerId", text=sid),
                         E("AirSync:ApplicationData", *data)))
            if room is not None:
                room[0] -= _data_bytes(els[-1])
        sent.append((op, eid))
    return els, sent, gone, used


def choose(diff: ss.Diff, budget: int) -> list:
    """The batch to send: Deletes, SoftDeletes, Changes, then Adds (newest
    first), at most BUDGET."""
    out = []
    for op, items in (("D", diff.deletes), ("S", diff.soft), ("C", diff.changes),
                      ("A", diff.adds)):
        for eid in items:
            if len(out) >= budget:
                return out
            out.append((op, eid))
    return out


# --- the command ----------------------------------------------------------------------------

@dataclass
class Plan:
    """A collection's request with everything read from the store before writing."""
    req: CollReq
    mbx: int | None = None
    role: str | None = None
    state: ss.SyncState | None = None
    snap: ss.Snapshot | None = None
    replay: bool = False
    opts: CollOptions | None = None
    client: ClientOps | None = None
    outcome: Outcome | None = None      # decided already (errors, priming)


def _plan(view, ctx, cr: CollReq) -> Plan:
    acc, dev = ctx.account, ctx.req.device_id
    p = Plan(cr)
    state = ss.load(view, acc, dev, cr.cid)
    p.state = state
    mbx = ids.parse("M", cr.cid)
    m = view.mailbox(acc, mbx) if mbx is not None else None
    if m is None:
        status = HIERARCHY_CHANGED if state is not None else NOT_FOUND
        p.outcome = Outcome(_collection(cr.cid, cr.key or "0", status), True,
                            write=(ss.state_key(cr.cid), None) if state is not None else None)
        return p
    p.mbx, p.role = m.id, m.role
    try:
        p.opts = collection_options(cr.options, ctx.version)
    except RequestError as exc:
        p.outcome = Outcome(_collection(cr.cid, cr.key or "0", exc.status), True)
        return p
    key = cr.key
    if key is None:                       # cached request: the current key
        if state is None:
            p.outcome = Outcome(_collection(cr.cid, "0", BAD_KEY), True)
            return p
        key = str(state.cur.key)
        cr.key = key
    if key == "0":
        counter = (state.counter if state else 0) + 1
        snap = ss.Snapshot(counter, view.highest_modseq(acc), filter=p.opts.filter)
        st = ss.SyncState(snap, None, counter)
        p.outcome = Outcome(_collection(cr.cid, str(counter), OK), True,
                            write=(ss.state_key(cr.cid), ss.encode(st)))
        return p
    n = int(key) if key.isdigit() and len(key) <= 12 else -1
    snap, is_prev = state.snapshot_for(n) if state is not None else (None, False)
    if snap is None:
        # MS-ASCMD 2.2.3.177.17 Status 3: the client must start over from 0
        p.outcome = Outcome(_collection(cr.cid, "0", BAD_KEY), True)
        return p
    p.snap, p.replay = snap, is_prev
    p.client = check_commands(view, acc, m.id, None if is_prev else cr.commands, snap, p.opts,
                              ctx.major, m.role, state.client_adds)
    if is_prev and cr.commands is not None:
        # resent: the drafts it added are answered with the ServerIds they got
        for c in cr.commands.findall("AirSync:Add"):
            cid = c.child_text("AirSync:ClientId") or ""
            if cid in state.client_adds:
                p.client.known_adds.append((cid, state.client_adds[cid]))
    return p


def _answer(view, ctx, p: Plan, budget: int, written: dict | None,
            room: list[int] | None = None) -> tuple[Outcome, int]:
    """The collection's answer after the client's commands were written
    (WRITTEN: write_client_ops's result; ROOM: render_batch's).  -> (outcome,
    items sent)."""
    acc, cr, st, snap = ctx.account, p.req, p.state, p.snap
    client = p.client
    responses: list[Element] = list(client.responses)
    for sid in client.fetches:
        if room is not None and room[0] <= 0:
            # the answer's bytes are used up (an 8 KB request of 1000
            # Fetches of one 1 MB email built a 1 GB answer): the rest get
            # Status 5, which MS-ASCMD 2.2.3.177.17 says to retry
            responses.append(item_response("Fetch", "ServerId", sid, SERVER_ERROR))
            continue
        eid = eas_item.parse_server_id(sid)
        rec = view.email(acc, eid) if eid is not None else None
        data = (_render(view, acc, eid, p.opts, ctx.version)
                if rec is not None and rec.member(p.mbx) is not None else None)
        if data is None:
            responses.append(item_response("Fetch", "ServerId", sid, NOT_FOUND))
        else:
            responses.append(item_response("Fetch", "ServerId", sid, OK,
                                   E("AirSync:ApplicationData", *data)))
            if room is not None:
                room[0] -= _data_bytes(responses[-1])
    client_adds = dict(st.client_adds) if p.replay else {}
    new_held_extra: set[int] = set()
    for cid, eid in client.known_adds:
        responses.append(E("AirSync:Add", E("AirSync:ClientId", text=cid),
                           E("AirSync:ServerId", text=eas_item.server_id(eid)),
                           E("AirSync:Status", text=str(OK))))
        client_adds[cid] = eid
    if written:
        for cid, eid in written["added"]:
            if eid is None:
                responses.append(item_response("Add", "ClientId", cid, FULL))
                continue
            responses.append(E("AirSync:Add", E("AirSync:ClientId", text=cid),
                               E("AirSync:ServerId", text=eas_item.server_id(eid)),
                               E("AirSync:Status", text=str(OK))))
            client_adds[cid] = eid
            new_held_extra.add(eid)
    counter = st.counter + 1
    if p.replay:
        # the same batch again under a new key; the device then holds what
        # the lost answer would have left it with (st.cur)
        # (the batch as it was sent: already cut to the room of its answer)
        els, sent, gone, _ = render_batch(view, acc, p.mbx, st.batch, p.opts, ctx.version)
        if gone:
            cur = ss.Snapshot(counter, st.cur.modseq, ss.packed(set(st.cur.held) - gone),
                              st.cur.changed, st.cur.filter, False)
        else:
            cur = ss.Snapshot(counter, st.cur.modseq, st.cur.held, st.cur.changed,
                              st.cur.filter, st.cur.complete, st.cur.basis)
        new = ss.SyncState(cur, st.prev, counter, sent, client_adds, st.more)
        kids = _children(els, st.more, responses)
        return Outcome(_collection(cr.cid, str(counter), OK, *kids), True,
                       (ss.state_key(cr.cid), ss.encode(new)), p.mbx, cur.modseq), len(sent)
    drop = set(client.deletes) | set(client.forget)
    echo = written["echo"] if written else {}
    diff = ss.compute(view, acc, p.mbx, snap, p.opts.filter, drop=drop, extra=new_held_extra,
                      echo=echo)
    if diff is None:        # the mailbox went away meanwhile
        return Outcome(_collection(cr.cid, cr.key, HIERARCHY_CHANGED), True,
                       (ss.state_key(cr.cid), None)), 0
    get_changes = cr.get_changes if cr.get_changes is not None else True
    window = cr.window if cr.window is not None else DEFAULT_WINDOW
    window = max(0, min(window, MAX_WINDOW, budget))
    batch = choose(diff, window) if get_changes else []
    els, sent, gone, used = render_batch(view, acc, p.mbx, batch, p.opts, ctx.version, room)
    batch = batch[:used]        # the rest waits for the next Sync (MoreAvailable)
    sent_adds = [e for op, e in sent if op == "A"]
    sent_changes = [e for op, e in sent if op == "C"]
    sent_removed = [e for op, e in sent if op in ("D", "S")]
    gone_changes = {e for op, e in batch if op == "C"} - set(sent_changes)
    new_snap = ss.advance(snap, diff, counter, p.opts.filter,
                          sent_adds=sent_adds, sent_changes=set(sent_changes) | gone_changes,
                          sent_removed=sent_removed)
    more = get_changes and len(batch) < diff.count()
    anything = bool(sent or responses or client.changes or client.deletes or written)
    if not anything and not more and new_snap.filter == snap.filter and not p.replay:
        # nothing to say: the key stays (the empty Sync response if all are so)
        return Outcome(_collection(cr.cid, cr.key, OK), False, None, p.mbx, diff.modseq), 0
    new = ss.SyncState(new_snap, snap, counter, sent, client_adds, more)
    kids = _children(els, more, responses)
    return Outcome(_collection(cr.cid, str(counter), OK, *kids), True,
                   (ss.state_key(cr.cid), ss.encode(new)), p.mbx, diff.modseq), len(sent)


def _top_status(status: int, limit: int | None = None) -> Element:
    kids = [E("AirSync:Status", text=str(status))]
    if limit is not None:
        kids.append(E("AirSync:Limit", text=str(limit)))
    return E("AirSync:Sync", *kids)


def empty_response() -> Response:
    """MS-ASCMD 2.2.1.21.2: nothing to report, HTTP 200 without a body."""
    return Response(200, b"", [("cache-control", "private")])


def _prepare_add(app, now: float):
    """(NewEmail, keywords) of one draft Add (CPU: runs in storeio.cpu; the
    message is composed from up to 32 MB of WBXML, 2.9 s for a 16 MB body)."""
    raw, kws = _draft_message(app, now)
    return ingest.prepare(raw), kws


async def _prepare_adds(client: ClientOps) -> list:
    """(client id, NewEmail, keywords) of the draft Adds (composed and
    indexed off the loop)."""
    out = []
    for cid, app in client.adds:
        try:
            new, kws = await storeio.cpu(_prepare_add, app, time.time())
        except (ValueError, mcompose.ComposeError):
            client.responses.append(item_response("Add", "ClientId", cid, CONVERSION_ERROR))
            continue
        out.append((cid, new, kws))
    return out


async def sync_once(ctx, req: SyncReq, apply: bool = True) -> tuple[list[Outcome], bool]:
    """One pass over the request's collections: commands written, answers
    built, states stored.  -> (outcomes, anything to report)."""
    acc = ctx.account

    def plan_all(v):
        # in the worker pool: each collection's state is decoded and each
        # client command checked against the store (100,000 elements make
        # 25,000 Changes or 50,000 Deletes: 156 ms of checks on the loop)
        return ([_plan(v, ctx, cr) for cr in req.collections],
                v.mailbox_by_role(acc, "trash"))

    plans, trash_m = await storeio.read(ctx.store, plan_all)
    trash = trash_m.id if trash_m is not None else None
    written: dict[int, dict] = {}
    for i, p in enumerate(plans):
        if p.outcome is not None or p.client is None or not apply:
            continue
        c = p.client
        adds = await _prepare_adds(c) if c.adds else []
        dels = c.deletes
        if c.changes or dels or adds:
            try:
                written[i] = await storeio.write(ctx.store, write_client_ops, acc, p.mbx, trash,
                                                 p.req.deletes_as_moves, c.changes, dels, adds)
            except NotFound:
                written[i] = {"echo": {}, "added": [], "failed": dels}
    budget = req.window if req.window is not None else MAX_WINDOW
    budget = min(budget, MAX_WINDOW)

    def build(v):
        out = []
        left = budget
        room = [SYNC_BYTES]
        for i, p in enumerate(plans):
            if p.outcome is not None:
                out.append(p.outcome)
                continue
            o, n = _answer(v, ctx, p, left, written.get(i), room)
            left -= n
            out.append(o)
        return out

    outcomes = await storeio.read(ctx.store, build)
    writes = [o.write for o in outcomes if o.write is not None]
    if writes:
        await storeio.write(ctx.store, _store_states, acc, ctx.req.device_id, writes)
    return outcomes, any(o.reportable for o in outcomes)


def _store_states(tx, acc: int, device: str, writes: list) -> None:
    for key, value in writes:
        if value is None:
            ops.delete_device_state(tx, acc, device, key)
        else:
            ops.put_device_state(tx, acc, device, key, value)


def _response(outcomes: list[Outcome]) -> Element:
    return E("AirSync:Sync", E("AirSync:Collections", *[o.element for o in outcomes]))


async def run(ctx, body: Element | None):
    acc, dev = ctx.account, ctx.req.device_id
    with ctx.store.view() as v:
        raw = v.device_state(acc, dev, LAST_KEY)
    try:
        cache = json.loads(raw) if raw else None
    except ValueError:
        cache = None
    try:
        if body is None:
            req = request_from_cache(cache)
        else:
            req = parse_request(body, ctx.major, cache)
    except RequestError as exc:
        return _top_status(exc.status, exc.limit)
    if body is not None:
        new_cache = json.dumps(cache_after(cache, req), separators=(",", ":")).encode()
        if new_cache != raw:
            await storeio.write(ctx.store, ops.put_device_state, acc, dev, LAST_KEY, new_cache)
    outcomes, report = await sync_once(ctx, req)
    if report or not req.wait:
        return _response(outcomes) if report else empty_response()
    return await hang(ctx, req, outcomes)


async def hang(ctx, req: SyncReq, outcomes: list[Outcome]):
    """The hanging Sync: wait for a change to the collections (device lock
    released), recheck, answer when something is to be said or when the
    time is up (the empty response)."""
    deadline = trio.current_time() + req.wait
    mailboxes = sorted({o.mailbox for o in outcomes if o.mailbox is not None})
    keys = {c.cid: c.key for c in req.collections}
    since = max((o.since for o in outcomes), default=0)
    while True:
        left = deadline - trio.current_time()
        if left <= 0:
            return empty_response()
        async with ctx.released():
            note = await eas_push.wait_for_changes(ctx, mailboxes or None, left, since)
        if note is None:
            return empty_response()
        since = max(since, note.modseq)
        # the device may have moved on meanwhile (a newer request): then
        # this one has nothing to add
        with ctx.store.view() as v:
            for cid, key in keys.items():
                st = ss.load(v, ctx.account, ctx.req.device_id, cid)
                if st is None or str(st.cur.key) != key:
                    return empty_response()
        again = SyncReq([CollReq(c.cid, c.key, c.window, c.deletes_as_moves, c.get_changes,
                                 c.options, None) for c in req.collections], None, req.window)
        outcomes, report = await sync_once(ctx, again, apply=False)
        if report:
            return _response(outcomes)


COMMANDS = [Command("Sync", run, "AirSync:Sync", "AirSync:Status", big_answer=True)]
