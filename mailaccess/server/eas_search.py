"""ActiveSync Search (MS-ASCMD 2.2.1.16): the Mailbox store, through the
shared query engine (mailaccess/query), as JMAP Email/query runs.

Store ``Mailbox``: the Query is an ``And`` of
- ``airsync:Class`` (``Email``; any other class has no items here: no results),
- ``airsync:CollectionId`` (zero or more folders, "M7"; none: every folder;
  with Options ``DeepTraversal`` their subfolders too),
- ``FreeText`` (each white-space separated word must occur in the header
  fields or the body text: ``model.Text`` per word, as IMAP ``TEXT``),
- ``GreaterThan`` / ``LessThan`` on ``email:DateReceived`` (strictly after /
  before the instant, the email's receivedAt);
anything else the specification allows in a query (``Or``, ``EqualTo``,
nested ``And``, ConversationId, ``Value`` on other properties) is Status 8
"too complex"; unknown elements and bad values are Status 2.  Results are
ordered newest first (DateReceived descending, then email id); Options
``Range`` (default 0-99, at most MAX_RANGE results per request) picks the
window; ``Total`` is the number of matches.  Each Result carries
``LongId`` = the email's ServerId ("E42", what ItemOperations and
SmartReply take), ``airsync:CollectionId`` (the first searched folder
holding the email, else its first folder) and ``Properties`` from
``eas_item.application_data`` under the request's BodyPreference /
MIMESupport.  ``RebuildResults`` needs nothing: results are computed from
the current state every time (a per-store result cache keyed by the
account's Email state makes paging cheap).

Store ``GAL``: no directory is served: Status 1 and no results (users
sharing a server are not told about each other).  ``DocumentLibrary``:
not supported (14.0+: the common status 137 NotSupported, MS-ASCMD 2.2.2;
12.1: Store Status 2).  Statuses (MS-ASCMD 2.2.3.177.13): Search Status 1
or 3 (server error); Store Status 1 success, 2 invalid request, 3 server
error, 8 too complex, 11 FolderSync required (an unknown CollectionId).

``mailbox_search`` and ``result_order`` are shared with server/eas_find.py.
"""
from __future__ import annotations

import datetime as _dt
import logging
import re
import threading
import weakref

from .. import ids, storeio
from ..proto.eas.wbxml import E, Element
from ..query import account as qaccount
from ..query import model as q
from ..query import sort as qsort
from ..store.errors import StoreError
from .eas_command import Command
from . import eas_item

log = logging.getLogger("mailaccess.eas")

OK = 1
INVALID = 2
SERVER_ERROR = 3
TOO_COMPLEX = 8
FOLDER_SYNC_REQUIRED = 11
NOT_SUPPORTED = 137           # MS-ASCMD 2.2.2 common status (14.0+)

DEFAULT_RANGE = (0, 99)
MAX_RANGE = 100               # results per request (MS-ASCMD 2.2.3.143.3: the server may cap)
MAX_WORDS = 32                # FreeText words
MAX_FREETEXT = 1024           # FreeText characters
MAX_FOLDERS = 256             # CollectionIds in one query

ORDER = [qsort.SortKey("receivedAt", reverse=True)]


class Refused(Exception):
    """The request is answered with Store (or Find Response) status STATUS."""

    def __init__(self, status: int, why: str = ""):
        super().__init__(why)
        self.status = status


# --- the query --------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z?$", re.A)


def parse_date(s: str | None) -> float:
    """An ActiveSync date-time (``2024-05-01T12:00:00.000Z``, MS-ASDTYPE
    2.3) -> epoch seconds; Refused(2) when it is not one."""
    m = _DATE.match(s or "")
    if not m:
        raise Refused(INVALID, f"not a date: {s!r}")
    try:
        t = _dt.datetime(*(int(g) for g in m.groups()[:6]), tzinfo=_dt.timezone.utc)
    except ValueError:
        raise Refused(INVALID, f"not a date: {s!r}") from None
    return t.timestamp() + (float(m.group(7)) if m.group(7) else 0.0)


def free_text(text: str | None) -> list[q.Query]:
    """FreeText -> one Text condition per word (every word must occur)."""
    if text is None:
        raise Refused(INVALID, "empty FreeText")
    if len(text) > MAX_FREETEXT:
        raise Refused(TOO_COMPLEX, "FreeText too long")
    words = text.split()
    if len(words) > MAX_WORDS:
        raise Refused(TOO_COMPLEX, "too many words")
    return [q.Text(w) for w in words]


def _date_bound(el: Element) -> float:
    """The instant of a GreaterThan/LessThan on email:DateReceived."""
    names = [c.qname for c in el.children]
    if names.count("Email:DateReceived") != 1 or names.count("Search:Value") != 1 \
            or len(names) != 2:
        if any(n not in ("Email:DateReceived", "Search:Value") for n in names):
            raise Refused(TOO_COMPLEX, "comparison on another property")
        raise Refused(INVALID, "a comparison has one property and one Value")
    return parse_date(el.child_text("Search:Value"))


class MailboxQuery:
    """What a Mailbox search asked, before it is resolved against the store."""

    def __init__(self):
        self.classes: list[str] = []
        self.folders: list[str] = []
        self.conditions: list[q.Query] = []


def parse_query(query: Element | None) -> MailboxQuery:
    """Search:Query of a Mailbox search -> MailboxQuery (Refused on errors)."""
    if query is None:
        raise Refused(INVALID, "no Query")
    items = query.children
    if len(items) == 1 and items[0].qname == "Search:And":
        items = items[0].children
    out = MailboxQuery()
    for it in items:
        n = it.qname
        if n == "AirSync:Class":
            out.classes.append(it.text or "")
        elif n == "AirSync:CollectionId":
            out.folders.append(it.text or "")
            if len(out.folders) > MAX_FOLDERS:
                raise Refused(TOO_COMPLEX, "too many folders")
        elif n == "Search:FreeText":
            out.conditions += free_text(it.text)
        elif n == "Search:GreaterThan":
            t = _date_bound(it)
            out.conditions.append(q.Received(after=int(t) + 1))     # strictly after
        elif n == "Search:LessThan":
            t = _date_bound(it)
            out.conditions.append(q.Received(before=-int(-t // 1)))  # strictly before
        elif n in ("Search:And", "Search:Or", "Search:EqualTo", "Search:ConversationId"):
            raise Refused(TOO_COMPLEX, f"{n} is not supported in a mailbox query")
        else:
            raise Refused(INVALID, f"unexpected {n} in a mailbox query")
    return out


def resolve_folders(v, acc: int, folders: list[str], deep: bool) -> list[int] | None:
    """Mailbox ids searched (None: all); Refused(11) for an unknown folder."""
    if not folders:
        return None
    out: list[int] = []
    for f in folders:
        mbx = ids.parse("M", f)
        if mbx is None or v.mailbox(acc, mbx) is None:
            raise Refused(FOLDER_SYNC_REQUIRED, f"no folder {f!r}")
        out.append(mbx)
    if deep:
        todo, seen = list(out), set(out)
        while todo:
            for c in v.children(acc, todo.pop()):
                if c not in seen:
                    seen.add(c)
                    out.append(c)
                    todo.append(c)
    return list(dict.fromkeys(out))


def build(mq: MailboxQuery, mailboxes: list[int] | None) -> q.Query | None:
    """The engine query (None: no item can match, e.g. Class Calendar)."""
    if mq.classes and "Email" not in mq.classes:
        return None
    items = list(mq.conditions)
    if mailboxes is not None:
        if len(mailboxes) == 1:
            items.insert(0, q.InMailbox(mailboxes[0]))
        else:
            items.insert(0, q.Or([q.InMailbox(m) for m in mailboxes]))
    if not items:
        return q.All()
    return items[0] if len(items) == 1 else q.And(items)


# --- running it ---------------------------------------------------------------------------------

_caches: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(store) -> qaccount.ResultCache:
    with _caches_lock:
        c = _caches.get(store)
        if c is None:
            c = _caches[store] = qaccount.ResultCache(max_entries=64)
        return c


async def run_query(ctx, query: q.Query) -> list[int]:
    """Email ids matching QUERY, newest first, computed in the worker pool."""
    r = await storeio.read(ctx.store, qaccount.run, ctx.account, _cache(ctx.store), query,
                           ORDER, False)
    return r.ids


async def mailbox_search(ctx, mq: MailboxQuery, deep: bool) -> tuple[list[int], list[int] | None]:
    """(matching email ids newest first, the searched mailboxes or None)."""
    with ctx.store.view() as v:
        mailboxes = resolve_folders(v, ctx.account, mq.folders, deep)
    query = build(mq, mailboxes)
    if query is None:
        return [], mailboxes
    return await run_query(ctx, query), mailboxes


def parse_range(text: str | None, default=DEFAULT_RANGE) -> tuple[int, int]:
    """``m-n`` -> (m, n); Refused(2) when malformed."""
    if text is None:
        return default
    a, sep, b = text.partition("-")
    if not sep or not a.isdigit() or not b.isdigit() or len(a) > 9 or len(b) > 9 \
            or int(a) > int(b):
        raise Refused(INVALID, f"bad Range {text!r}")
    return int(a), int(b)


def window(hits: list[int], rng: tuple[int, int]) -> list[int]:
    lo, hi = rng
    hi = min(hi, lo + MAX_RANGE - 1)
    return hits[lo:hi + 1]


def collection_of(v, acc: int, eid: int, mailboxes: list[int] | None) -> str | None:
    """The CollectionId a result is reported in."""
    rec = v.email(acc, eid)
    if rec is None or not rec.members:
        return None
    if mailboxes:
        held = {m.mailbox for m in rec.members}
        for m in mailboxes:
            if m in held:
                return ids.mailbox_id(m)
    return ids.mailbox_id(min(m.mailbox for m in rec.members))


# --- the command --------------------------------------------------------------------------------

def _results(v, acc: int, page: list[int], mailboxes, opts, version: str) -> list[Element]:
    out = []
    for eid in page:
        props = eas_item.application_data(v, acc, eid, opts, version)
        coll = collection_of(v, acc, eid, mailboxes)
        if props is None or coll is None:      # gone since the query ran
            continue
        out.append(E("Search:Result", E("AirSync:Class", text="Email"),
                     E("Search:LongId", text=eas_item.server_id(eid)),
                     E("AirSync:CollectionId", text=coll),
                     E("Search:Properties", *props)))
    return out


def _store_answer(status: int, results: list[Element] = (), rng=None,
                  total: int | None = None) -> Element:
    kids = [E("Search:Status", text=str(status))]
    kids += list(results) or ([E("Search:Result")] if status == OK else [])
    if rng is not None:
        kids.append(E("Search:Range", text=f"{rng[0]}-{rng[1]}"))
    if total is not None:
        kids.append(E("Search:Total", text=str(total)))
    return E("Search:Search", E("Search:Status", text=str(OK)),
             E("Search:Response", E("Search:Store", *kids)))


async def _mailbox(ctx, store: Element) -> Element:
    options = store.find("Search:Options")
    rng = parse_range(options.child_text("Search:Range") if options is not None else None)
    deep = options is not None and options.find("Search:DeepTraversal") is not None
    opts = eas_item.item_options(options, ctx.version)
    mq = parse_query(store.find("Search:Query"))
    hits, mailboxes = await mailbox_search(ctx, mq, deep)
    page = window(hits, rng)
    # rendering reads bodies: off the event loop too
    results = await storeio.read(ctx.store, _results, ctx.account, page, mailboxes, opts,
                                 ctx.version)
    if not results:
        return _store_answer(OK, total=len(hits))
    return _store_answer(OK, results, (rng[0], rng[0] + len(results) - 1), len(hits))


async def run(ctx, body: Element | None) -> Element:
    store = body.find("Search:Store") if body is not None and body.qname == "Search:Search" \
        else None
    if store is None:
        return _store_answer(INVALID)
    name = (store.child_text("Search:Name") or "").strip()
    try:
        if name.lower() == "mailbox":
            return await _mailbox(ctx, store)
        if name.upper() == "GAL":
            # no directory of users is served: a valid, empty answer
            parse_range(store.find("Search:Options").child_text("Search:Range")
                        if store.find("Search:Options") is not None else None)
            return _store_answer(OK, total=0)
        if name.lower() == "documentlibrary" and ctx.major >= 14:
            return E("Search:Search", E("Search:Status", text=str(NOT_SUPPORTED)))
        return _store_answer(INVALID)
    except Refused as r:
        log.info("EAS Search from %s refused (%d): %s", ctx.req.device_id, r.status, r)
        return _store_answer(r.status)
    except StoreError as exc:
        log.warning("EAS Search for %s failed: %s", ctx.username, exc)
        return E("Search:Search", E("Search:Status", text=str(SERVER_ERROR)))


COMMANDS = [Command("Search", run, "Search:Search", "Search:Status", big_answer=True)]
