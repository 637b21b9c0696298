"""ActiveSync Find (MS-ASCMD 2.2.1.2, protocol 16.1 only): mailbox search
by free text, the successor of Search for phones.

Request: ``SearchId`` (a GUID), ``ExecuteSearch`` > ``MailBoxSearchCriterion``
> ``Query`` (``FreeText``, ``airsync:Class``, optional
``airsync:CollectionId``) and ``Options`` (``Range``, ``DeepTraversal``).
The query runs through the shared engine like Search (server/eas_search.py:
words of FreeText must all occur, newest first, the same result cache).

Paging: a client pages by repeating the request with the same SearchId and
a later Range (MS-ASCMD 2.2.3.160); a new SearchId must start at 0, else
Response Status 4 StartWithRangeZero (2.2.3.177.2).  The device's last
SearchId is kept under device state ``find``.

Result: ``airsync:Class``, ``airsync:ServerId`` (the email's "E42"),
``airsync:CollectionId``, and ``Properties`` with the Find summary fields
(2.2.3.140.1): email:Subject, email:DateReceived, email:DisplayTo, DisplayCc,
DisplayBcc, email:Importance, email:Read, email2:IsDraft, Preview,
HasAttachments, email:From; then ``Range`` and ``Total``.

Statuses (2.2.3.177.2): 1 success, 2 invalid request (a bad or missing
SearchId, Query or Range, GALSearchCriterion: no directory is served), 3
FolderSync required (an unknown CollectionId), 4 a new search not starting
at 0.  Versions before 16.1 do not have Find (2.2.3.69: 16.1 only): 14.0,
14.1 and 16.0 get the common status 138 VersionNotSupported (MS-ASCMD
2.2.2), 12.1 (no common statuses) HTTP 400.
"""
from __future__ import annotations

import datetime as _dt
import logging
import re

from .. import storeio, vocab
from ..proto.eas.wbxml import E, Element
from ..store import emails, ops
from ..store.errors import StoreError
from .eas_command import Command
from . import eas_search as S
from .eas_item import server_id
from .http import problem

log = logging.getLogger("mailaccess.eas")

OK = 1
INVALID = 2
FOLDER_SYNC_REQUIRED = 3
START_WITH_ZERO = 4
VERSION_NOT_SUPPORTED = 138

STATE_KEY = "find"
PREVIEW_CHARS = 255
_GUID = re.compile(r"^\{?[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\}?$")


class _Refused(Exception):
    def __init__(self, status: int):
        self.status = status


def _date(t: int) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _display(addrs) -> str:
    return "; ".join((name or email) for name, email in addrs)


def _addrs(addrs) -> str:
    return ", ".join(f'"{n}" <{e}>' if n else f"<{e}>" for n, e in addrs)


def properties(v, acc: int, eid: int) -> list[Element] | None:
    """The Find summary of email EID (None: gone)."""
    em = emails.load_email(v, acc, eid, members=False)
    if em is None:
        return None
    rec, mi = em.record, em.index
    kw = rec.keywords
    out = [E("Email:Subject", text=mi.subject if mi is not None else ""),
           E("Email:DateReceived", text=_date(rec.received_at))]
    if mi is not None:
        out += [E("Email:DisplayTo", text=_display(mi.to)),
                E("Find:DisplayCc", text=_display(mi.cc)),
                E("Find:DisplayBcc", text=_display(mi.bcc))]
    out += [E("Email:Importance", text="1"),
            E("Email:Read", text="1" if vocab.SEEN in kw else "0"),
            E("Email2:IsDraft", text="1" if vocab.DRAFT in kw else "0")]
    if mi is not None:
        out += [E("Find:Preview", text=(mi.preview or "")[:PREVIEW_CHARS]),
                E("Find:HasAttachments", text="1" if mi.has_attachment else "0"),
                E("Email:From", text=_addrs(mi.from_))]
    return out


def _results(v, acc: int, page: list[int], mailboxes) -> list[Element]:
    out = []
    for eid in page:
        props = properties(v, acc, eid)
        coll = S.collection_of(v, acc, eid, mailboxes)
        if props is None or coll is None:       # gone since the query ran
            continue
        out.append(E("Find:Result", E("AirSync:Class", text="Email"),
                     E("AirSync:ServerId", text=server_id(eid)),
                     E("AirSync:CollectionId", text=coll),
                     E("Find:Properties", *props)))
    return out


def _answer(status: int, response: Element | None = None) -> Element:
    kids = [E("Find:Status", text=str(status))]
    if response is not None:
        kids.append(response)
    return E("Find:Find", *kids)


def _response(status: int, results=(), rng=None, total=None) -> Element:
    kids = [E("ItemOperations:Store", text="Mailbox"), E("Find:Status", text=str(status))]
    kids += list(results)
    if rng is not None:
        kids.append(E("Find:Range", text=f"{rng[0]}-{rng[1]}"))
    if total is not None:
        kids.append(E("Find:Total", text=str(total)))
    return E("Find:Response", *kids)


def _query(q_el: Element | None) -> S.MailboxQuery:
    if q_el is None:
        raise _Refused(INVALID)
    mq = S.MailboxQuery()
    text = None
    for it in q_el.children:
        n = it.qname
        if n == "Find:FreeText":
            text = it.text
        elif n == "AirSync:Class":
            mq.classes.append(it.text or "")
        elif n == "AirSync:CollectionId":
            mq.folders.append(it.text or "")
        else:
            raise _Refused(INVALID)
    if not (text or "").strip():
        raise _Refused(INVALID)
    try:
        mq.conditions = S.free_text(text)
    except S.Refused:
        raise _Refused(INVALID) from None
    if len(mq.folders) > S.MAX_FOLDERS:
        raise _Refused(INVALID)
    return mq


async def _mailbox(ctx, search_id: str, crit: Element) -> Element:
    mq = _query(crit.find("Find:Query"))
    options = crit.find("Find:Options")
    try:
        rng = S.parse_range(options.child_text("Find:Range") if options is not None else None)
    except S.Refused:
        raise _Refused(INVALID) from None
    deep = options is not None and options.find("Find:DeepTraversal") is not None
    dev = ctx.req.device_id
    with ctx.store.view() as v:
        last = v.device_state(ctx.account, dev, STATE_KEY)
    same = last is not None and last.decode("ascii", "replace") == search_id
    if rng[0] != 0 and not same:
        return _answer(OK, _response(START_WITH_ZERO))
    try:
        hits, mailboxes = await S.mailbox_search(ctx, mq, deep)
    except S.Refused as r:
        raise _Refused(FOLDER_SYNC_REQUIRED if r.status == S.FOLDER_SYNC_REQUIRED
                       else INVALID) from None
    if not same:
        await storeio.write(ctx.store, ops.put_device_state, ctx.account, dev, STATE_KEY,
                            search_id.encode("ascii"))
    results = await storeio.read(ctx.store, _results, ctx.account, S.window(hits, rng),
                                 mailboxes)
    rng_out = (rng[0], rng[0] + len(results) - 1) if results else None
    return _answer(OK, _response(OK, results, rng_out, len(hits)))


async def run(ctx, body: Element | None):
    if tuple(int(x) for x in ctx.version.split(".")) < (16, 1):
        if ctx.major < 14:
            return problem(400, "Bad Request", "Find needs protocol version 16.1")
        return _answer(VERSION_NOT_SUPPORTED)
    if body is None or body.qname != "Find:Find":
        return _answer(INVALID)
    search_id = body.child_text("Find:SearchId") or ""
    execute = body.find("Find:ExecuteSearch")
    if not _GUID.match(search_id) or execute is None:
        return _answer(INVALID)
    try:
        crit = execute.find("Find:MailBoxSearchCriterion")
        if crit is None:
            # GALSearchCriterion: no directory of users is served
            return _answer(OK, _response(OK, total=0)) \
                if execute.find("Find:GalSearchCriterion") is not None else _answer(INVALID)
        return await _mailbox(ctx, search_id, crit)
    except _Refused as r:          # 2 and 3 are statuses of the Find element
        return _answer(r.status)
    except StoreError as exc:
        log.warning("EAS Find for %s failed: %s", ctx.username, exc)
        return _answer(INVALID)


COMMANDS = [Command("Find", run, "Find:Find", "Find:Status", big_answer=True)]
