"""The client's side of an ActiveSync Sync (MS-ASCMD 2.2.3.32 Commands):
Change (Email:Read, Email:Flag), Delete, Add (16.x drafts) and Fetch of one
collection, checked against the store (per-item Status 8 not found, 7
conflict, 6 an Add we do not take) and written in one transaction through
the store ops IMAP and JMAP use (``write_client_ops`` runs in the writer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import vocab
from ..mime import compose as mcompose
from ..mime import headers as mheaders
from ..proto.eas.wbxml import E, Element
from ..store import StoreError, ops
from . import eas_item
from . import eas_syncstate as ss
from .eas_sync_request import CONFLICT, CONVERSION_ERROR, NOT_FOUND, CollOptions

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


def item_response(tag: str, sid_tag: str, sid: str, status: int, *extra: Element) -> Element:
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
            # our own address-list parser: getaddresses answers a malformed
            # list by release (since the CVE-2023-27043 fix, with nothing at
            # all: the draft lost every recipient) and leaves encoded words
            pairs = [(a["name"], a["email"]) for a in mheaders.as_addresses(v) if a["email"]]
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
    net: dict[int, tuple[dict, dict]] = {}     # eid -> (add, remove) of its Changes
    for c in cmds.children:
        sid = c.child_text("AirSync:ServerId") or ""
        if c.tag in ("Change", "Delete", "Fetch"):
            eid = eas_item.parse_server_id(sid)
            rec = view.email(acc, eid) if eid is not None else None
            here = rec is not None and rec.member(mbx) is not None
        if c.tag == "Change":
            if not here:
                out.responses.append(item_response("Change", "ServerId", sid, NOT_FOUND))
                continue
            kw = _keyword_change(c.find("AirSync:ApplicationData"))
            if kw is None:
                continue
            if changed_since is None:       # once: a set per Change was quadratic
                changed_since = set(snap.changed)
            server_changed = rec.last_ms > snap.modseq or eid in changed_since
            if server_changed and opts.conflict == 1:
                # the server's object wins; the client learns with Status 7
                # and gets the server's Change in this answer
                out.responses.append(item_response("Change", "ServerId", sid, CONFLICT))
                continue
            if eid in net:
                # the same item changed again in this request: one net change
                # per item, in order (25,000 Changes of one email were 25,000
                # updates, 0.46 s of the shared writer)
                add, rem = net[eid]
                for k in kw[0]:
                    rem.pop(k, None)
                    add[k] = True
                for k in kw[1]:
                    add.pop(k, None)
                    rem[k] = True
                continue
            net[eid] = (dict.fromkeys(kw[0], True), dict.fromkeys(kw[1], True))
            out.changes.append(eid)
        elif c.tag == "Delete":
            if not here:
                out.responses.append(item_response("Delete", "ServerId", sid, NOT_FOUND))
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
                out.responses.append(item_response("Add", "ClientId", cid, CONVERSION_ERROR))
                continue
            out.adds.append((cid, app))
    out.changes = [(eid, list(net[eid][0]), list(net[eid][1])) for eid in out.changes]
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


