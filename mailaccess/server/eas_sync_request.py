"""ActiveSync Sync requests (MS-ASCMD 2.2.1.21): the request's Collections,
Wait/HeartbeatInterval and WindowSize read and checked, completed from the
device's cached last request (an empty request, ``Partial``, Options
omitted), and each collection's Options (FilterType, Conflict, the item
options of eas_item).  Also the Sync status codes and limits.  It reads no store:
server/eas_sync.py stores the cache (device-state key ``sync``, JSON).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..proto.eas.wbxml import Element, WbxmlError, decode, encode
from . import eas_item
from . import eas_syncstate as ss

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
    named: set[str] = set()
    cs = body.find("AirSync:Collections")
    for c in cs.findall("AirSync:Collection") if cs is not None else []:
        if len(colls) >= MAX_COLLECTIONS:
            # at once: 100,000 elements name 33,000 collections (the check
            # for a collection named twice was a scan of the list: 28 s on
            # the loop)
            raise RequestError(TOO_MANY_COLLECTIONS, MAX_COLLECTIONS)
        cid = c.child_text("AirSync:CollectionId")
        key = c.child_text("AirSync:SyncKey")
        if not cid or key is None or cid in named:
            # a collection named twice would race with itself over one state
            raise RequestError(PROTOCOL_ERROR)
        named.add(cid)
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


