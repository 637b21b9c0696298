"""JMAP Email/get, Email/changes and Email/parse (RFC 8621 §4.1, §4.2, §4.3, §4.9).

An Email object is read from the email's store record (id, blobId, threadId,
mailboxIds, keywords, size, receivedAt) and its stored message index
(headers and every header form, the body structure, textBody / htmlBody /
attachments, hasAttachment, preview): no property but ``bodyValues`` reads
the message itself, and that reads only the parts it returns.  The parsing
rules live in mailaccess/mime (headers.py: the header forms; jmapbody.py:
body parts and their text); this module shapes them as JMAP objects.

Email/parse runs the same code over a blob (a stored message: its stored
index; anything else: indexed on the spot, off the event loop).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from .. import ids, storeio
from ..config import JmapConfig
from ..mime import headers as mh
from ..mime import index as mindex
from ..mime import jmapbody
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError
from ..store import records
from ..store.emails import decode_index, load_email
from .jmap_api import Call, method
from .jmap_blobs import read_blob
from .jmap_standard import changes_response, invalid

EMAIL_PROPERTIES = (
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
    "headers", "messageId", "inReplyTo", "references", "sender", "from", "to", "cc",
    "bcc", "replyTo", "subject", "sentAt", "bodyStructure", "bodyValues", "textBody",
    "htmlBody", "attachments", "hasAttachment", "preview",
)
DEFAULT_PROPERTIES = (
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
    "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
    "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues",
    "textBody", "htmlBody", "attachments",
)
# Email/parse: the same less the metadata (§4.9)
PARSE_DEFAULT_PROPERTIES = DEFAULT_PROPERTIES[7:]
BODY_PROPERTIES = (
    "partId", "blobId", "size", "headers", "name", "type", "charset", "disposition",
    "cid", "language", "location", "subParts",
)
DEFAULT_BODY_PROPERTIES = (
    "partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
    "language", "location",
)
MAX_PROPERTIES = 256      # per properties / bodyProperties list
# properties answered from the email record alone
_RECORD_ONLY = frozenset(("id", "blobId", "threadId", "mailboxIds", "keywords", "size",
                          "receivedAt"))


def _addresses(items) -> list[dict] | None:
    return [mh.address(n, e) for n, e in items] if items else None


# convenience properties (§4.1.3) from the index's fields: the same parse as
# header:{name}:as{form} (mime/headers.py uses the indexer's parsers), read
# from the stored summary without decoding the body structure; an empty field
# reads as an absent one (null).  The index keeps a header's first instance
# (IMAP's ENVELOPE reads it), where JMAP's header:{name} form is the last
# (§4.1.3); so for a message with a repeated field (RFC 5322 §3.6 allows one
# From, Subject, ...; real mail breaks that) the property is answered from
# the last field itself: _LAST_INSTANCE.
_CONVENIENCE: dict[str, Callable[[Any], Any]] = {
    "messageId": lambda s: [s.message_id] if s.message_id else None,
    "inReplyTo": lambda s: list(s.in_reply_to) or None,
    "references": lambda s: list(s.references) or None,
    "sender": lambda s: _addresses(s.sender),
    "from": lambda s: _addresses(s.from_),
    "to": lambda s: _addresses(s.to),
    "cc": lambda s: _addresses(s.cc),
    "bcc": lambda s: _addresses(s.bcc),
    "replyTo": lambda s: _addresses(s.reply_to),
    "subject": lambda s: mh.text(s.subject) if s.subject else None,
    "sentAt": lambda s: mh.date_string(s.sent_at, s.sent_at_tz or 0) if s.sent_at is not None else None,
    "preview": lambda s: s.preview,
    "hasAttachment": lambda s: s.has_attachment,
}


def _addresses_or_null(value: str):
    return mh.as_addresses(value) or None


def _ids_or_null(value: str):
    return mh.as_message_ids(value)


# property -> (field name, its form from one field's value) for _CONVENIENCE's
# header-backed properties
_LAST_INSTANCE: dict[str, tuple[str, Callable[[str], Any]]] = {
    "messageId": ("message-id", _ids_or_null),
    "inReplyTo": ("in-reply-to", _ids_or_null),
    "references": ("references", _ids_or_null),
    "sender": ("sender", _addresses_or_null),
    "from": ("from", _addresses_or_null),
    "to": ("to", _addresses_or_null),
    "cc": ("cc", _addresses_or_null),
    "bcc": ("bcc", _addresses_or_null),
    "replyTo": ("reply-to", _addresses_or_null),
    "subject": ("subject", lambda v: mh.as_text(v) or None),
    "sentAt": ("date", mh.as_date),
}
_LAST_NAMES = tuple(sorted({name for name, _ in _LAST_INSTANCE.values()}))


# --- arguments -----------------------------------------------------------------------

@dataclass
class GetOptions:
    props: list[str]
    header_props: dict[str, mh.HeaderProperty]
    body_props: list[str]
    body_header_props: dict[str, mh.HeaderProperty]
    fetch_text: bool
    fetch_html: bool
    fetch_all: bool
    max_bytes: int


def _prop_list(call: Call, key: str, known, default) -> tuple[list[str], dict]:
    v = call.args.get(key)
    if v is None:
        return list(default), {}
    if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
        raise invalid(f"'{key}' must be a list of strings or null")
    if len(v) > MAX_PROPERTIES:     # each header:* property is a scan per object
        raise MethodError("requestTooLarge", f"at most {MAX_PROPERTIES} {key}")
    known = set(known)
    hdrs = {}
    bad = []
    for p in v:
        if p in known:
            continue
        hp = mh.parse_property(p)
        if hp is None:
            bad.append(p)
        else:
            hdrs[p] = hp
    if bad:
        raise invalid(f"unknown or not allowed {key}: {', '.join(bad[:10])}")
    return list(dict.fromkeys(v)), hdrs


def _flag(call: Call, key: str) -> bool:
    v = call.args.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise invalid(f"'{key}' must be a boolean")
    return v


def get_options(call: Call, default_props, always_id: bool) -> GetOptions:
    props, hprops = _prop_list(call, "properties", EMAIL_PROPERTIES, default_props)
    if always_id and "id" not in props:
        props.insert(0, "id")
    bprops, bhprops = _prop_list(call, "bodyProperties", BODY_PROPERTIES,
                                 DEFAULT_BODY_PROPERTIES)
    mx = call.args.get("maxBodyValueBytes", 0)
    if mx is None:
        mx = 0
    if isinstance(mx, bool) or not isinstance(mx, int) or mx < 0:
        raise invalid("'maxBodyValueBytes' must be an unsigned integer")
    return GetOptions(props, hprops, bprops, bhprops, _flag(call, "fetchTextBodyValues"),
                      _flag(call, "fetchHTMLBodyValues"), _flag(call, "fetchAllBodyValues"), mx)


# --- one Email object ----------------------------------------------------------------

def utc_date(t: int) -> str | None:
    """A JMAP UTCDate ("2014-10-30T06:12:00Z")."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return mh.date_string(t, 0)


class _ListCache:
    """The convenience properties of recently listed messages, as JSON
    values, by (blob hash, index head): the same content always gives the
    same values, and a rewritten index (mailaccess reindex) a new head.  The
    cached values are shared by responses: nothing may modify them."""

    def __init__(self, size: int = 5000):     # ~2 KB an entry: ~10 MB full
        self.size = size
        self.data: dict = {}

    def get(self, key, make):
        d = self.data
        v = d.get(key)
        if v is None:
            v = make()
            if len(d) >= self.size:
                del d[next(iter(d))]
            d[key] = v
        return v


LIST_CACHE = _ListCache()


class Source:
    """What an Email object is built from: its message index (the summary for
    the list properties, the whole index for the rest, each decoded once
    when first needed), a way to read the message bytes (only bodyValues
    calls it), and how to name part blobs."""

    __slots__ = ("_data", "_summary", "_mi", "_raw", "read_raw", "part_blob", "cache_key")

    def __init__(self, read_raw: Callable[[], Any], part_blob: Callable[[str], str | None],
                 *, index_data=None, mi: mindex.MessageIndex | None = None, cache_key=None):
        self.cache_key = cache_key
        self._data = index_data
        self._summary = self._mi = mi
        self._raw = None
        self.read_raw = read_raw
        self.part_blob = part_blob

    def _reindex(self) -> mindex.MessageIndex:
        """No readable stored index: index the message now (bounded work)."""
        self._summary = self._mi = mindex.index_message(bytes(self.raw()))
        return self._mi

    @property
    def summary(self):
        s = self._summary
        if s is None:
            try:
                s = self._summary = mindex.index_summary(self._data)
            except Exception:     # unreadable (another version, damaged)
                s = self._reindex()
        return s

    @property
    def mi(self) -> mindex.MessageIndex:
        mi = self._mi
        if mi is None:
            try:
                mi = self._mi = mindex.decode_index_meta(self._data)
            except Exception:     # unreadable (another version, damaged)
                mi = self._reindex()
        return mi

    def repeated_fields(self) -> frozenset[str]:
        """Which convenience header fields the message repeats (_LAST_NAMES)."""
        if self._data is not None:
            try:
                return mindex.stored_repeated_fields(self._data, _LAST_NAMES)
            except Exception:     # unreadable: summary/mi reindexed the message
                pass
        mi = self._mi if self._mi is not None else self.mi
        return mindex.repeated_fields(mi.search_headers, _LAST_NAMES)

    def raw(self):
        if self._raw is None:
            self._raw = self.read_raw()
        return self._raw


def _headers_json(hdrs) -> list[dict]:
    return [{"name": h["name"], "value": mh.as_raw(h["value"])} for h in hdrs]


def body_part(src: Source, node: dict, opts: GetOptions, sub: bool = True) -> dict:
    """The EmailBodyPart NODE with the requested bodyProperties."""
    out: dict[str, Any] = {}
    for p in opts.body_props:
        if p == "blobId":
            pid = node.get("partId")
            out[p] = src.part_blob(pid) if pid is not None else None
        elif p == "headers":
            out[p] = _headers_json(node.get("headers", ()))
        elif p == "subParts":
            subs = node.get("subParts")
            out[p] = [body_part(src, c, opts) for c in subs] if (subs is not None and sub) else None
        elif p in opts.body_header_props:
            out[p] = mh.header_property(node.get("headers", ()), opts.body_header_props[p])
        else:
            out[p] = node.get(p)
    return out


def _body_values(src: Source, opts: GetOptions) -> dict:
    mi = src.mi
    want: dict[str, dict] = {}
    by_id = jmapbody.parts_by_id(mi.jmap_body)
    chosen = []
    if opts.fetch_all:
        chosen = list(by_id)
    else:
        if opts.fetch_text:
            chosen.extend(mi.text_body)
        if opts.fetch_html:
            chosen.extend(mi.html_body)
    for pid in chosen:
        node = by_id.get(pid)
        if node is not None and jmapbody.is_text(node):
            want[pid] = node
    out = {}
    if not want:
        return out
    raw = src.raw()
    for pid, node in want.items():
        part = mi.part(pid)
        if part is None:
            continue
        bv = jmapbody.body_value(raw, part, opts.max_bytes, node["type"] == "text/html")
        out[pid] = {"value": bv.value, "isEncodingProblem": bv.is_encoding_problem,
                    "isTruncated": bv.is_truncated}
    return out


def _part_list(src: Source, pids, opts: GetOptions) -> list[dict]:
    by_id = jmapbody.parts_by_id(src.mi.jmap_body)
    return [body_part(src, by_id[p], opts, sub=False) for p in pids if p in by_id]


def _convenience(src: Source) -> dict:
    summary = src.summary
    out = {p: fn(summary) for p, fn in _CONVENIENCE.items()}
    repeated = src.repeated_fields()
    if repeated:
        headers = src.mi.jmap_body.get("headers", ())
        for p, (name, form) in _LAST_INSTANCE.items():
            if name in repeated:
                vals = mh.values_of(headers, name)
                out[p] = form(vals[-1]) if vals else None
    return out


def content_properties(src: Source, props, opts: GetOptions, out: dict) -> None:
    """Every requested property answered from the message (not the record)."""
    conv = None
    for p in props:
        if p in _RECORD_ONLY:
            continue
        if p in _CONVENIENCE:
            if conv is None:
                conv = (LIST_CACHE.get(src.cache_key, lambda: _convenience(src))
                        if src.cache_key is not None else _convenience(src))
            out[p] = conv[p]
            continue
        mi = src.mi
        if p == "headers":
            out[p] = _headers_json(mi.jmap_body.get("headers", ()))
        elif p == "bodyStructure":
            out[p] = body_part(src, mi.jmap_body, opts)
        elif p == "textBody":
            out[p] = _part_list(src, mi.text_body, opts)
        elif p == "htmlBody":
            out[p] = _part_list(src, mi.html_body, opts)
        elif p == "attachments":
            out[p] = _part_list(src, mi.attachments, opts)
        elif p == "bodyValues":
            out[p] = _body_values(src, opts)
        elif p in opts.header_props:
            out[p] = mh.header_property(mi.jmap_body.get("headers", ()), opts.header_props[p])


_RECORD_GETTERS: dict[str, Callable[[records.EmailRecord], Any]] = {
    "id": lambda r: ids.email_id(r.id),
    "blobId": lambda r: ids.blob_id(r.blob),
    "threadId": lambda r: ids.thread_id(r.thread),
    "mailboxIds": lambda r: {ids.mailbox_id(m.mailbox): True for m in r.members},
    "keywords": lambda r: dict.fromkeys(r.keywords, True),
    "size": lambda r: r.size,
    "receivedAt": lambda r: utc_date(r.received_at),
}


def record_properties(rec: records.EmailRecord, props, out: dict) -> None:
    for p in props:
        g = _RECORD_GETTERS.get(p)
        if g is not None:
            out[p] = g(rec)


DEFAULT_MAX_SIZE_RESPONSE = JmapConfig.max_size_response


def _value_bytes(obj: dict) -> int:
    return sum(len(bv["value"]) for bv in (obj.get("bodyValues") or {}).values())


class _ValueBudget:
    """The body values one request may put in its response, at most
    [jmap] max_size_response characters in all (the other properties are
    bounded by the message and the ids per call).  Before, each call of a
    request could ask for them again: 16 Email/get calls of one 20 MB text
    body grew the server by 876 MB (64 calls are allowed, 8 requests at once).
    Past the budget the call is ``requestTooLarge`` (RFC 8620 §5.1: more than
    the server is willing to process in one call)."""

    __slots__ = ("left",)

    def __init__(self, call: Call):
        cfg = getattr(call.ctx.cfg, "jmap", None)
        limit = cfg.max_size_response if cfg is not None else DEFAULT_MAX_SIZE_RESPONSE
        self.left = limit - call.ctx.response_bytes

    def take(self, obj: dict) -> None:
        self.left -= _value_bytes(obj)
        if self.left < 0:
            raise MethodError("requestTooLarge",
                              "the body values asked for would make the response too large; "
                              "ask for fewer emails or set maxBodyValueBytes")


def _cache_key(h: bytes, data):
    return (h, bytes(data[:mindex.INDEX_LAYOUT.head.size])) if data is not None else None


# --- Email/get -----------------------------------------------------------------------

@method("Email/get", cap.MAIL)
async def email_get(call: Call) -> dict:
    opts = get_options(call, DEFAULT_PROPERTIES, always_id=True)
    want = call.args.get("ids")
    limit = call.ctx.limits.max_objects_in_get
    if want is not None:
        if not isinstance(want, list) or not all(isinstance(i, str) for i in want):
            raise invalid("'ids' must be a list of ids or null")
        if len(want) > limit:
            raise MethodError("requestTooLarge", f"at most {limit} ids per Email/get")
    props = opts.props
    # body values are decoded from the message (0.2-0.3 s for a 30-50 MB
    # text part, each id): then in the worker pool, over a snapshot of its own
    heavy = "bodyValues" in props and (opts.fetch_all or opts.fetch_text or opts.fetch_html)
    if heavy:
        found, not_found, state = await storeio.read(call.ctx.store, _collect, call, want, opts,
                                                     False)
        call.ctx.response_bytes += sum(_value_bytes(o) for o in found)
    else:
        try:
            with call.view() as v:
                found, not_found, state = _collect(v, call, want, opts, True)
        except _Heavy:
            found, not_found, state = await storeio.read(call.ctx.store, _collect, call, want,
                                                         opts, False)
    return {"accountId": ids.account_id(call.acc), "state": state,
            "list": found, "notFound": not_found}


class _Heavy(Exception):
    """An email's index is big: the Email/get is made in the worker pool."""


# an index this big is read in the worker pool: decoding the index of a
# 1 MB text message took 77 ms, of a message with a 10 MB To (anyone can
# send one) 1.0 s, each email
HEAVY_INDEX = 64 * 1024


def _collect(v, call: Call, want, opts: GetOptions, on_loop: bool):
    """(the Email objects of WANT, the ids not found, the Email state) from
    the snapshot V.  ON_LOOP: LIST_CACHE may be filled, and an email whose
    index must be read and is HEAVY_INDEX or more raises _Heavy (elsewhere
    the cache is only read: its entries are never changed)."""
    props = opts.props
    limit = call.ctx.limits.max_objects_in_get
    needs_index = any(p not in _RECORD_ONLY for p in props)
    list_only = all(p in _RECORD_ONLY or p in _CONVENIENCE for p in props)
    getters = [(p, _RECORD_GETTERS[p]) for p in props if p in _RECORD_GETTERS]
    members = "mailboxIds" in props
    found, not_found = [], []
    acc = call.acc
    budget = _ValueBudget(call)
    if want is None:
        eids = v.email_ids(acc)
        if len(eids) > limit:
            raise MethodError("requestTooLarge",
                              f"the account has more than {limit} emails: ask for ids")
        want = [ids.email_id(e) for e in eids]
    seen = set()
    for s in want:
        s = call.resolve_id(s) or s
        if s in seen:
            continue
        seen.add(s)
        eid = ids.parse("E", s)
        em = load_email(v, acc, eid, members=members) if eid is not None else None
        if em is None:
            not_found.append(s)
            continue
        rec = em.record
        obj = {p: g(rec) for p, g in getters}
        if needs_index:
            h = rec.blob
            data = em.index_data
            key = _cache_key(h, data)
            conv = LIST_CACHE.data.get(key) if list_only and key is not None else None
            if conv is not None:        # the list fast path: a cache hit
                for p in props:
                    if p in conv:
                        obj[p] = conv[p]
            else:
                if on_loop and (len(data) >= HEAVY_INDEX if data is not None
                                else rec.size >= storeio.OFFLOOP_BYTES):
                    raise _Heavy
                src = Source(lambda h=h: v.blob(acc, h) or b"",
                             lambda pid, h=h: ids.part_blob_id(h, pid),
                             index_data=data, cache_key=key if on_loop else None)
                content_properties(src, props, opts, obj)
                budget.take(obj)
        found.append({p: obj.get(p) for p in props})
    state = v.kind_state(acc, records.EMAIL)
    return found, not_found, state


# --- Email/changes -------------------------------------------------------------------

@method("Email/changes", cap.MAIL)
async def email_changes(call: Call) -> dict:
    return changes_response(call, records.EMAIL, ids.email_id)


# --- Email/parse ---------------------------------------------------------------------

# a blob parses as a message when its header holds at least one field
# before its first line that is not one
def _parsable(raw: bytes, mi: mindex.MessageIndex) -> bool:
    return bool(raw) and bool(mi.jmap_body.get("headers"))


def _part_namer(blob_id: str) -> Callable[[str], str | None]:
    """How the parts of the message in blob BLOB_ID are named as blobs: the
    parts of a stored message by its hash; the parts of an attached message
    (a part blob "P<hash>_2") as the outer message's parts ("2.1", ...)."""
    h = ids.parse_blob(blob_id)
    if h is not None:
        return lambda pid: ids.part_blob_id(h, pid)
    pb = ids.parse_part_blob(blob_id)
    if pb is not None:
        oh, sec = pb
        return lambda pid: ids.part_blob_id(oh, f"{sec}.{pid}")
    return lambda pid: None


@method("Email/parse", cap.MAIL)
async def email_parse(call: Call) -> dict:
    opts = get_options(call, PARSE_DEFAULT_PROPERTIES, always_id=False)
    blob_ids = call.args.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise invalid("'blobIds' must be a list of ids")
    limit = call.ctx.limits.max_objects_in_get
    if len(blob_ids) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} blobs per Email/parse")
    # in the worker pool: a part blob is decoded, a message without a stored
    # index indexed, body values decoded (0.2-0.3 s for a 50 MB one)
    parsed, not_parsable, not_found = await storeio.read(call.ctx.store, _parse_all, call,
                                                         blob_ids, opts)
    call.ctx.response_bytes += sum(_value_bytes(o) for o in parsed.values())
    return {"accountId": ids.account_id(call.acc), "parsed": parsed or None,
            "notParsable": not_parsable or None, "notFound": not_found or None}


def _parse_all(v, call: Call, blob_ids: list, opts: GetOptions):
    """Email/parse's (parsed, notParsable, notFound) from the snapshot V."""
    parsed: dict[str, dict] = {}
    not_parsable: list[str] = []
    not_found: list[str] = []
    budget = _ValueBudget(call)
    for bid in dict.fromkeys(blob_ids):
        raw = read_blob(v, call.acc, bid)
        stored = None
        h = ids.parse_blob(bid)
        if raw is not None and h is not None:
            stored = v.blob_index(call.acc, h)
            stored = decode_index(stored)
        if raw is None:
            not_found.append(bid)
            continue
        mi = stored if stored is not None else mindex.index_message(raw)
        if not _parsable(raw, mi):
            not_parsable.append(bid)
            continue
        src = Source(lambda raw=raw: raw, _part_namer(bid), mi=mi)
        obj: dict[str, Any] = {}
        for p in opts.props:
            if p == "blobId":
                obj[p] = bid
            elif p == "size":
                obj[p] = len(raw)
            elif p in ("id", "mailboxIds", "keywords", "receivedAt", "threadId"):
                obj[p] = None
        content_properties(src, opts.props, opts, obj)
        budget.take(obj)
        parsed[bid] = {p: obj.get(p) for p in opts.props}
    return parsed, not_parsable, not_found
