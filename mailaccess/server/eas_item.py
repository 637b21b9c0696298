"""An email as ActiveSync shows it (MS-ASEMAIL, MS-ASAIRS): the children of
``AirSync:ApplicationData`` (Sync), ``ItemOperations:Properties`` and
``Search:Properties``, built from the store's record and message index.

SKELETON (lead): the API below is the contract the Sync, ItemOperations,
Search and Find modules build on; the eas-items branch fills in the rest
(HTML and MIME bodies, Preview, attachments with FileReference, the 14.x
fields).  Keep the names and signatures.

ServerIds of emails are ``ids.email_id`` ("E42"): the same in every folder,
as in JMAP and IMAP's EMAILID (a move keeps it).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from .. import ids, vocab
from ..mime import jmapbody
from ..proto.eas.wbxml import E, Element
from ..store import emails

# AirSyncBase:Type of a body
PLAIN, HTML, RTF, MIME = 1, 2, 3, 4


@dataclass(frozen=True)
class BodyPref:
    """One AirSyncBase:BodyPreference."""
    type: int = PLAIN
    truncation: int | None = None    # TruncationSize (octets); None: whole
    all_or_none: bool = False
    preview: int | None = None       # Preview (14.0+): characters of plain text


@dataclass(frozen=True)
class ItemOptions:
    """What the client asked to see of an item (Sync/ItemOperations/Search Options)."""
    body_prefs: tuple[BodyPref, ...] = ()
    mime_support: int = 0            # AirSync:MIMESupport 0 never, 1 S/MIME only, 2 always
    extra: dict = field(default_factory=dict)


def server_id(eid: int) -> str:
    return ids.email_id(eid)


def parse_server_id(s: str | None) -> int | None:
    return ids.parse("E", s or "")


def item_options(options: Element | None, version: str) -> ItemOptions:
    """The ItemOptions of an Options element (None: the defaults)."""
    if options is None:
        return ItemOptions()
    prefs = []
    for bp in options.findall("AirSyncBase:BodyPreference"):
        t = bp.child_text("AirSyncBase:Type")
        ts = bp.child_text("AirSyncBase:TruncationSize")
        pv = bp.child_text("AirSyncBase:Preview")
        prefs.append(BodyPref(
            type=int(t) if t and t.isdigit() else PLAIN,
            truncation=int(ts) if ts and ts.isdigit() else None,
            all_or_none=bp.child_text("AirSyncBase:AllOrNone") == "1",
            preview=int(pv) if pv and pv.isdigit() else None))
    ms = options.child_text("AirSync:MIMESupport")
    return ItemOptions(tuple(prefs), int(ms) if ms and ms.isdigit() else 0)


def _date(t: int) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _addrs(addrs) -> str:
    out = []
    for name, email in addrs:
        out.append(f'"{name}" <{email}>' if name else f"<{email}>")
    return ", ".join(out)


def application_data(view, acc: int, eid: int, opts: ItemOptions, version: str) -> list[Element] | None:
    """The Email:/AirSyncBase: elements of email EID (None: no such email)."""
    em = emails.load_email(view, acc, eid, members=False)
    if em is None:
        return None
    rec = em.record
    mi = em.index
    out = []
    if mi is not None:
        out += [E("Email:To", text=_addrs(mi.to)), E("Email:From", text=_addrs(mi.from_)),
                E("Email:Subject", text=mi.subject or "")]
    out.append(E("Email:DateReceived", text=_date(rec.received_at)))
    out.append(E("Email:Read", text="1" if vocab.SEEN in rec.keywords else "0"))
    flagged = vocab.FLAGGED in rec.keywords
    out.append(E("Email:Flag", *( [E("Email:Status", text="2")] if flagged else [])))
    text = ""
    if mi is not None:
        raw = view.blob(acc, em.blob)
        for p in mi.parts:
            if raw is not None and p.content_type == "text/plain":
                text = jmapbody.body_value(raw, p).value
                break
    out.append(E("AirSyncBase:Body", E("AirSyncBase:Type", text=str(PLAIN)),
                 E("AirSyncBase:EstimatedDataSize", text=str(len(text.encode()))),
                 E("AirSyncBase:Data", text=text)))
    out.append(E("Email:MessageClass", text="IPM.Note"))
    return out
