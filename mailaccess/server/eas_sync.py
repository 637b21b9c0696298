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

import email.utils
import json
import logging
import time
from dataclasses import dataclass, field

import trio

from .. import ids, ingest, storeio, vocab
from ..mime import compose as mcompose
from ..proto.eas.wbxml import E, Element, WbxmlError, decode, encode
from ..store import NotFound, StoreError, ops
from . import eas_item, eas_push
from . import eas_syncstate as ss
from .eas_command import Command
from .http import Response

log = logging.getLogger("mailaccess.eas")

LAST_KEY = "sync"

# MS-ASCMD 2.2.3.177.17 Status (Sync)
OK = 1
BAD_KEY = 3
PROTOCOL_ERROR = 4
SERVER_ERROR = 5
CONVERSION_ERROR = 6
CONFLICT = 7
NOT_FOUND = 8
FULL = 9
HIERARCHY_CHANGED = 12
INCOMPLETE = 13
BAD_WAIT = 14
TOO_MANY_COLLECTIONS = 15

MAX_WINDOW = 512
DEFAULT_WINDOW = 100
MAX_COLLECTIONS = 1000
WAIT_MIN, WAIT_MAX = 1, 59                  # minutes
HEARTBEAT_MIN, HEARTBEAT_MAX = 60, 3540     # seconds


# --- the request --------------------------------------------------------------------------

@dataclass
class CollReq:
    """One Collection of a request (or of the cached last request)."""
    cid: str
    key: str | None                 # None: the device's current key (cached request)
    window: int | None = None
    deletes_as_moves: bool = True
    get_changes: bool | None = None
    options: bytes | None = None    # the Options element, WBXML (cached with the request)
    commands: Element | None = None

    def params(self) -> dict:
        return {"w": self.window, "d": self.deletes_as_moves, "g": self.get_changes,
                "o": self.options.hex() if self.options else None}


@dataclass
class SyncReq:
    collections: list[CollReq]
    wait: int | None = None         # seconds
    window: int | None = None       # the request's WindowSize


class RequestError(Exception):
    def __init__(self, status: int, limit: int | None = None):
        self.status = status
        self.limit = limit


def _int(text: str | None) -> int | None:
    if text is None or not text.strip().isdigit() or len(text.strip()) > 9:
        return None
    return int(text.strip())


def _email_options(coll: Element) -> Element | None:
    """The collection's Options for email (several Options may come, one per Class)."""
    for o in coll.findall("AirSync:Options"):
        cls = o.child_text("AirSync:Class")
        if cls in (None, "Email"):
            return o
    return None


def parse_request(body: Element, major: int, cache: dict | None) -> SyncReq:
    """The request in BODY, completed from the cached last request (Options
    omitted, Partial).  Raises RequestError with the top-level Status."""
    if body.qname != "AirSync:Sync":
        raise RequestError(PROTOCOL_ERROR)
    wait_el, hb_el = body.find("AirSync:Wait"), body.find("AirSync:HeartbeatInterval")
    wait = None
    if wait_el is not None and hb_el is not None:
        raise RequestError(PROTOCOL_ERROR)
    if wait_el is not None:
        n = _int(wait_el.text)
        if n is None:
            raise RequestError(PROTOCOL_ERROR)
        if not WAIT_MIN <= n <= WAIT_MAX:
            raise RequestError(BAD_WAIT, WAIT_MIN if n < WAIT_MIN else WAIT_MAX)
        wait = n * 60
    elif hb_el is not None:
        if major < 14:
            raise RequestError(PROTOCOL_ERROR)
        n = _int(hb_el.text)
        if n is None:
            raise RequestError(PROTOCOL_ERROR)
        if not HEARTBEAT_MIN <= n <= HEARTBEAT_MAX:
            raise RequestError(BAD_WAIT, HEARTBEAT_MIN if n < HEARTBEAT_MIN else HEARTBEAT_MAX)
        wait = n
    window = None
    if body.find("AirSync:WindowSize") is not None:
        window = _int(body.child_text("AirSync:WindowSize"))
        if window is None:
            raise RequestError(PROTOCOL_ERROR)
    cached = (cache or {}).get("coll", {})
    colls: list[CollReq] = []
    cs = body.find("AirSync:Collections")
    for c in cs.findall("AirSync:Collection") if cs is not None else []:
        cid = c.child_text("AirSync:CollectionId")
        key = c.child_text("AirSync:SyncKey")
        if not cid or key is None or any(x.cid == cid for x in colls):
            # a collection named twice would race with itself over one state
            raise RequestError(PROTOCOL_ERROR)
        old = cached.get(cid) or {}
        w = c.child_text("AirSync:WindowSize")
        dam = c.child_text("AirSync:DeletesAsMoves")
        gc = c.child_text("AirSync:GetChanges")
        opts = _email_options(c)
        colls.append(CollReq(
            cid, key.strip(),
            window=_int(w) if w is not None else old.get("w"),
            deletes_as_moves=(dam.strip() != "0") if dam is not None else True,
            get_changes=(gc.strip() != "0") if gc is not None else None,
            options=encode(opts) if opts is not None else (
                bytes.fromhex(old["o"]) if old.get("o") else None),
            commands=c.find("AirSync:Commands")))
    if body.find("AirSync:Partial") is not None:
        have = {c.cid for c in colls}
        for cid in (cache or {}).get("last", []):
            if cid not in have:
                colls.append(_cached(cid, cached.get(cid) or {}))
        if wait is None and (cache or {}).get("wait"):
            wait = cache["wait"]
        if window is None:
            window = (cache or {}).get("window")
    if not colls:
        raise RequestError(INCOMPLETE)
    if len(colls) > MAX_COLLECTIONS:
        raise RequestError(TOO_MANY_COLLECTIONS, MAX_COLLECTIONS)
    return SyncReq(colls, wait, window)


def _cached(cid: str, p: dict) -> CollReq:
    return CollReq(cid, None, window=p.get("w"), deletes_as_moves=p.get("d", True),
                   get_changes=p.get("g"),
                   options=bytes.fromhex(p["o"]) if p.get("o") else None)


def request_from_cache(cache: dict | None) -> SyncReq:
    """The empty request: the last request's collections at their current keys."""
    if not cache or not cache.get("last"):
        raise RequestError(INCOMPLETE)
    coll = cache.get("coll", {})
    return SyncReq([_cached(cid, coll.get(cid) or {}) for cid in cache["last"]],
                   cache.get("wait"), cache.get("window"))


def cache_after(cache: dict | None, req: SyncReq) -> dict:
    coll = dict((cache or {}).get("coll", {}))
    for c in req.collections:
        coll[c.cid] = c.params()
    # forget collections nobody asked for in a while: keep the cache small
    if len(coll) > 4 * MAX_COLLECTIONS:
        keep = {c.cid for c in req.collections}
        coll = {k: v for k, v in coll.items() if k in keep}
    return {"last": [c.cid for c in req.collections], "coll": coll, "wait": req.wait,
            "window": req.window}


# --- options --------------------------------------------------------------------------------

@dataclass
class CollOptions:
    filter: int = 0
    conflict: int = 1
    item: eas_item.ItemOptions = field(default_factory=eas_item.ItemOptions)


def collection_options(raw: bytes | None, version: str) -> CollOptions:
    """Raises RequestError(PROTOCOL_ERROR) for a FilterType or Conflict out of range."""
    if not raw:
        return CollOptions(item=eas_item.item_options(None, version))
    try:
        el = decode(raw)
    except WbxmlError:
        return CollOptions(item=eas_item.item_options(None, version))
    ft = el.child_text("AirSync:FilterType")
    conflict = el.child_text("AirSync:Conflict")
    f = _int(ft) if ft is not None else 0
    c = _int(conflict) if conflict is not None else 1
    # MS-ASCMD 2.2.3.68.2: 0..5 for email; 6 and 7 (3 and 6 months) are
    # accepted too, as the date windows they name; 8 (tasks) is no email filter
    if f is None or f not in ss.FILTER_DAYS or c not in (0, 1):
        raise RequestError(PROTOCOL_ERROR)
    return CollOptions(f, c, eas_item.item_options(el, version))


# --- client commands ------------------------------------------------------------------------

@dataclass
class ClientOps:
    """The client's commands of one collection, checked against the store."""
    changes: list = field(default_factory=list)    # (eid, add kws, remove kws)
    deletes: list = field(default_factory=list)    # eid
    adds: list = field(default_factory=list)       # (client id, NewEmail, keywords)
    fetches: list = field(default_factory=list)    # server id strings
    responses: list = field(default_factory=list)  # ready Responses elements (errors)
    known_adds: list = field(default_factory=list)  # (client id, eid): resent Adds
    forget: list = field(default_factory=list)     # eids the device deleted that are gone already


def _keyword_change(app: Element | None) -> tuple[list[str], list[str]] | None:
    """(add, remove) keywords of a Change's ApplicationData (None: nothing we keep)."""
    if app is None:
        return None
    add, remove = [], []
    for el in app.children:
        if el.qname == "Email:Read":
            (add if (el.text or "").strip() == "1" else remove).append(vocab.SEEN)
        elif el.qname == "Email:Flag":
            st = el.child_text("Email:Status")
            # MS-ASEMAIL 2.2.2.34: 2 active, 1 complete, 0 / empty Flag cleared;
            # IMAP and JMAP know only flagged or not
            (add if (st or "").strip() == "2" else remove).append(vocab.FLAGGED)
    if not add and not remove:
        return None
    return add, remove


def _resp(tag: str, sid_tag: str, sid: str, status: int, *extra: Element) -> Element:
    return E(f"AirSync:{tag}", E(f"AirSync:{sid_tag}", text=sid),
             E("AirSync:Status", text=str(status)), *extra)


def _draft_message(app: Element, now: float) -> tuple[bytes, list[str]]:
    """An RFC 5322 draft from a 16.x Add's ApplicationData (MS-ASEMAIL 2.2.2,
    MS-ASCMD 2.2.3.7.2): a MIME body (AirSyncBase:Body Type 4) is stored as
    is; else the message is composed from To/Cc/Bcc/Subject/Importance and a
    plain or HTML body.  -> (raw, keywords)."""
    kws = [vocab.DRAFT]
    if app.child_text("Email:Read") == "1":
        kws.append(vocab.SEEN)
    flag = app.find("Email:Flag")
    if flag is not None and flag.child_text("Email:Status") == "2":
        kws.append(vocab.FLAGGED)
    body = app.find("AirSyncBase:Body")
    btype = body.child_text("AirSyncBase:Type") if body is not None else None
    data = ""
    if body is not None:
        d = body.find("AirSyncBase:Data")
        if d is not None:
            data = d.text if d.text is not None else (d.opaque or b"").decode("utf-8", "replace")
    if btype == "4":
        raw = data.encode("utf-8")
        if b"\r\n" not in raw:
            raw = raw.replace(b"\n", b"\r\n")
        return raw, kws
    headers = []
    for tag, name in (("Email:From", "From"), ("Email:To", "To"), ("Email:Cc", "Cc"),
                      ("Email2:Bcc", "Bcc"), ("Email:ReplyTo", "Reply-To")):
        v = app.child_text(tag)
        if v:
            pairs = [(n or None, a) for n, a in email.utils.getaddresses([v]) if a]
            if pairs:
                headers.append((name, mcompose.format_addresses(pairs)))
    subj = app.child_text("Email:Subject")
    if subj:
        headers.append(("Subject", mcompose.format_text(subj)))
    imp = app.child_text("Email:Importance")
    if imp in ("0", "2"):
        headers.append(("Importance", "low" if imp == "0" else "high"))
    ctype = "text/html" if btype == "2" else "text/plain"
    part = mcompose.BodyPart(type=ctype, data=data.replace("\r\n", "\n").replace("\n", "\r\n")
                             .encode("utf-8"), charset="utf-8")
    return mcompose.compose(headers, part, now=now), kws


def check_commands(view, acc: int, mbx: int, cmds: Element | None, snap: ss.Snapshot,
                   opts: CollOptions, major: int, role: str | None,
                   known_adds: dict) -> ClientOps:
    """The client's Commands checked against the store: what to write, and
    the per-item Responses of those that fail (8 not found, 7 conflict, 6
    an Add we do not take)."""
    out = ClientOps()
    if cmds is None:
        return out
    changed_since = None
    for c in cmds.children:
        sid = c.child_text("AirSync:ServerId") or ""
        if c.tag in ("Change", "Delete", "Fetch"):
            eid = eas_item.parse_server_id(sid)
            rec = view.email(acc, eid) if eid is not None else None
            here = rec is not None and rec.member(mbx) is not None
        if c.tag == "Change":
            if not here:
                out.responses.append(_resp("Change", "ServerId", sid, NOT_FOUND))
                continue
            kw = _keyword_change(c.find("AirSync:ApplicationData"))
            if kw is None:
                continue
            server_changed = rec.last_ms > snap.modseq or eid in set(snap.changed)
            if server_changed and opts.conflict == 1:
                # the server's object wins; the client learns with Status 7
                # and gets the server's Change in this answer
                out.responses.append(_resp("Change", "ServerId", sid, CONFLICT))
                continue
            out.changes.append((eid, kw[0], kw[1]))
        elif c.tag == "Delete":
            if not here:
                out.responses.append(_resp("Delete", "ServerId", sid, NOT_FOUND))
                if eid is not None:
                    out.forget.append(eid)        # gone anyway: not held any more
                continue
            out.deletes.append(eid)
        elif c.tag == "Fetch":
            out.fetches.append(sid)
        elif c.tag == "Add":
            cid = c.child_text("AirSync:ClientId") or ""
            app = c.find("AirSync:ApplicationData")
            if cid in known_adds:
                out.known_adds.append((cid, known_adds[cid]))
                continue
            if major < 16 or role != "drafts" or app is None or not cid or len(cid) > 64:
                out.responses.append(_resp("Add", "ClientId", cid, CONVERSION_ERROR))
                continue
            out.adds.append((cid, app))
    return out


def write_client_ops(tx, acc: int, mbx: int, trash: int | None, deletes_as_moves: bool,
                     changes: list, deletes: list, adds: list) -> dict:
    """One transaction: the client's keyword changes, deletes and draft adds
    of one collection (through the store ops IMAP and JMAP use).  -> {"echo":
    eid -> its modseq after, "added": [(client id, eid or None)],
    "failed": [eids]}."""
    echo: dict[int, int] = {}
    if changes:
        items = [(eid, {"add_keywords": add, "remove_keywords": rem}) for eid, add, rem in changes]
        ops.update_emails(tx, acc, items)
    for eid, _, _ in changes:
        rec = tx.email(acc, eid)
        if rec is not None:
            echo[eid] = rec.last_ms
    failed = []
    for eid in deletes:
        rec = tx.email(acc, eid)
        uid = rec.uid_in(mbx) if rec is not None else None
        if uid is None:
            failed.append(eid)
            continue
        if deletes_as_moves and trash is not None and trash != mbx:
            ops.move(tx, acc, mbx, [uid], trash)
        else:
            ops.expunge(tx, acc, mbx, [uid])
    added = []
    for cid, new, kws in adds:
        try:
            added.append((cid, ops.append(tx, acc, [mbx], new, kws).email))
        except StoreError:
            added.append((cid, None))
    return {"echo": echo, "added": added, "failed": failed}


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


def render_batch(view, acc: int, mbx: int, batch: list, opts: CollOptions, version: str
                 ) -> tuple[list[Element], list, set[int]]:
    """Commands elements of BATCH [(op, eid)] -> (elements, the batch as sent
    (items gone since are left out), the eids of Adds that could not be sent)."""
    els, sent, gone = [], [], set()
    for op, eid in batch:
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
        sent.append((op, eid))
    return els, sent, gone


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


def _answer(view, ctx, p: Plan, budget: int, written: dict | None) -> tuple[Outcome, int]:
    """The collection's answer after the client's commands were written
    (WRITTEN: write_client_ops's result).  -> (outcome, items sent)."""
    acc, cr, st, snap = ctx.account, p.req, p.state, p.snap
    client = p.client
    responses: list[Element] = list(client.responses)
    for sid in client.fetches:
        eid = eas_item.parse_server_id(sid)
        rec = view.email(acc, eid) if eid is not None else None
        data = (_render(view, acc, eid, p.opts, ctx.version)
                if rec is not None and rec.member(p.mbx) is not None else None)
        if data is None:
            responses.append(_resp("Fetch", "ServerId", sid, NOT_FOUND))
        else:
            responses.append(_resp("Fetch", "ServerId", sid, OK,
                                   E("AirSync:ApplicationData", *data)))
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
                responses.append(_resp("Add", "ClientId", cid, FULL))
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
        els, sent, gone = render_batch(view, acc, p.mbx, st.batch, p.opts, ctx.version)
        cur = ss.Snapshot(counter, st.cur.modseq, ss.packed(set(st.cur.held) - gone),
                          st.cur.changed, st.cur.filter, st.cur.complete and not gone)
        new = ss.SyncState(cur, st.prev, counter, sent, client_adds, st.more)
        kids = [E("AirSync:MoreAvailable")] if st.more else []
        if els:
            kids.append(E("AirSync:Commands", *els))
        if responses:
            kids.append(E("AirSync:Responses", *responses))
        return Outcome(_collection(cr.cid, str(counter), OK, *kids), True,
                       (ss.state_key(cr.cid), ss.encode(new)), p.mbx, cur.modseq), len(sent)
    held = set(snap.held)
    held -= set(client.deletes) | set(client.forget)
    held |= new_held_extra
    echo = written["echo"] if written else {}
    diff = ss.compute(view, acc, p.mbx, snap, p.opts.filter, held=held, echo=echo)
    if diff is None:        # the mailbox went away meanwhile
        return Outcome(_collection(cr.cid, cr.key, HIERARCHY_CHANGED), True,
                       (ss.state_key(cr.cid), None)), 0
    get_changes = cr.get_changes if cr.get_changes is not None else True
    window = cr.window if cr.window is not None else DEFAULT_WINDOW
    window = max(0, min(window, MAX_WINDOW, budget))
    batch = choose(diff, window) if get_changes else []
    els, sent, gone = render_batch(view, acc, p.mbx, batch, p.opts, ctx.version)
    sent_adds = [e for op, e in sent if op == "A"]
    sent_changes = [e for op, e in sent if op == "C"]
    sent_removed = [e for op, e in sent if op in ("D", "S")]
    gone_changes = {e for op, e in batch if op == "C"} - set(sent_changes)
    new_snap = ss.advance(snap, diff, counter, p.opts.filter, held=held,
                          sent_adds=sent_adds, sent_changes=set(sent_changes) | gone_changes,
                          sent_removed=sent_removed)
    more = get_changes and len(batch) < diff.count()
    anything = bool(sent or responses or client.changes or client.deletes or written)
    if not anything and not more and new_snap.filter == snap.filter and not p.replay:
        # nothing to say: the key stays (the empty Sync response if all are so)
        return Outcome(_collection(cr.cid, cr.key, OK), False, None, p.mbx, diff.modseq), 0
    new = ss.SyncState(new_snap, snap, counter, sent, client_adds, more)
    kids = []
    if more:
        kids.append(E("AirSync:MoreAvailable"))
    if els:
        kids.append(E("AirSync:Commands", *els))
    if responses:
        kids.append(E("AirSync:Responses", *responses))
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


async def _prepare_adds(client: ClientOps) -> list:
    """(client id, NewEmail, keywords) of the draft Adds (indexing off the loop)."""
    out = []
    for cid, app in client.adds:
        try:
            raw, kws = _draft_message(app, time.time())
            new = await storeio.cpu(ingest.prepare, raw)
        except (ValueError, mcompose.ComposeError):
            client.responses.append(_resp("Add", "ClientId", cid, CONVERSION_ERROR))
            continue
        out.append((cid, new, kws))
    return out


async def sync_once(ctx, req: SyncReq, apply: bool = True) -> tuple[list[Outcome], bool]:
    """One pass over the request's collections: commands written, answers
    built, states stored.  -> (outcomes, anything to report)."""
    acc = ctx.account
    with ctx.store.view() as v:
        plans = [_plan(v, ctx, cr) for cr in req.collections]
        trash_m = v.mailbox_by_role(acc, "trash")
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
        for i, p in enumerate(plans):
            if p.outcome is not None:
                out.append(p.outcome)
                continue
            o, n = _answer(v, ctx, p, left, written.get(i))
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


COMMANDS = [Command("Sync", run, "AirSync:Sync", "AirSync:Status")]
