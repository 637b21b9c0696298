"""JMAP Email/query, Email/queryChanges (RFC 8621 4.4, 4.5; RFC 8620 5.5,
5.6) and SearchSnippet/get (RFC 8621 5).

The filter and sort compile to the shared query model
(:mod:`.jmap_email_filter`), evaluated over the whole account by
:func:`mailaccess.query.account.query_emails` in the worker pool
(``storeio.read``, as IMAP SEARCH runs).  Results are cached per store by
Email state (:class:`~mailaccess.query.account.ResultCache`): a client
paging through a list, or many clients asking the same question, pay for the
query once per change of the account.

queryState is the account's Email state.  queryChanges reads the change log
from sinceQueryState: every email created, updated or destroyed since then
(and, for collapseThreads or thread-wide keyword conditions and sorts, every
email of their threads: the Thread log names the threads of destroyed
emails) is re-placed, removed and then added at its new index when it is in
the results.  So every query can calculate changes; cannotCalculateChanges
comes only from a state the change log no longer covers (or never did).
"""
from __future__ import annotations

import threading
import weakref

import trio

from .. import _speedups, ids, storeio
from ..mime import index as mindex
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError
from ..query import account as qaccount
from ..store.changelog import CannotCalculateChanges
from ..store.emails import load_email
from ..store.records import EMAIL
from . import jmap_snippet
from .jmap_api import Call, method
from .jmap_email_filter import compile_filter, compile_sort, immutable, snippet_terms
from .jmap_standard import arg, invalid, query_window

__all__ = ["email_query", "email_query_changes", "search_snippet_get", "cache_for",
           "ARGS"]

# the arguments each method takes (RFC 8620 5.5/5.6, RFC 8621 4.4/4.5/5.1): for
# a dispatcher that answers invalidArguments to any other
ARGS = {
    "Email/query": ("accountId", "filter", "sort", "position", "anchor", "anchorOffset",
                    "limit", "calculateTotal", "collapseThreads"),
    "Email/queryChanges": ("accountId", "filter", "sort", "sinceQueryState", "maxChanges",
                           "upToId", "calculateTotal", "collapseThreads"),
    "SearchSnippet/get": ("accountId", "filter", "emailIds"),
}

_html_to_text = _speedups.load("msgindex").html_to_text


class _StoreQueries:
    """Per store: the result cache, and the queries being computed now (a
    crowd of clients asking the same question after a change waits for one
    computation instead of running it once each)."""

    def __init__(self):
        self.cache = qaccount.ResultCache()
        self.inflight: dict[tuple, trio.Event] = {}


_stores: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def _queries(store) -> _StoreQueries:
    with _stores_lock:
        q = _stores.get(store)
        if q is None:
            q = _stores[store] = _StoreQueries()
        return q


def cache_for(store) -> qaccount.ResultCache:
    """The result cache of STORE (one per store, shared by its requests)."""
    return _queries(store).cache


class _Ids:
    """The ordered email ids as the JMAP id strings query_window slices,
    formatted only for the window (a 10,000-email result is not turned into
    10,000 strings per page)."""

    __slots__ = ("r",)

    def __init__(self, r: qaccount.Result):
        self.r = r

    def __len__(self) -> int:
        return len(self.r.ids)

    def __getitem__(self, s):
        if isinstance(s, slice):
            return [ids.email_id(e) for e in self.r.ids[s]]
        return ids.email_id(self.r.ids[s])

    def index(self, anchor: str) -> int:
        n = ids.parse("E", anchor)
        p = self.r.position(n) if n is not None else None
        if p is None:
            raise ValueError(anchor)
        return p


def _query_args(call: Call):
    fv = call.args.get("filter")
    sv = call.args.get("sort")
    query = compile_filter(fv, call.resolve_id)
    keys = compile_sort(sv)
    collapse = arg(call, "collapseThreads", bool, False)
    total = call.args.get("calculateTotal")
    if total is not None and not isinstance(total, bool):
        raise invalid("'calculateTotal' must be a boolean")
    return fv, sv, query, keys, collapse


async def _results(call: Call, query, keys, collapse: bool) -> qaccount.Result:
    """The query's result at the current state: a cache hit is answered on
    the event loop, anything else runs in the worker pool, once at a time
    per query."""
    sq = _queries(call.ctx.store)
    ck = (call.acc, query, tuple(keys), collapse)
    fk = (trio.lowlevel.current_trio_token(),) + ck     # trio.Events belong to one run
    while True:
        with call.view() as v:
            state = v.kind_state(call.acc, EMAIL)
        r = sq.cache.get(ck)
        if r is not None and r.state == state:
            return r
        busy = sq.inflight.get(fk)
        if busy is None:
            break
        await busy.wait()
    done = sq.inflight[fk] = trio.Event()
    try:
        return await storeio.read(call.ctx.store, qaccount.run, call.acc, sq.cache, query,
                                  keys, collapse)
    finally:
        del sq.inflight[fk]
        done.set()


@method("Email/query", cap.MAIL, args=ARGS["Email/query"])
async def email_query(call: Call) -> dict:
    fv, sv, query, keys, collapse = _query_args(call)
    for name in ("position", "anchorOffset"):
        arg(call, name, int)
    arg(call, "anchor", str)
    limit = arg(call, "limit", int)
    if limit is not None and limit < 0:
        raise invalid("'limit' must not be negative")
    r = await _results(call, query, keys, collapse)
    out = {"accountId": ids.account_id(call.acc), "queryState": r.state,
           "canCalculateChanges": True}
    out.update(query_window(call, _Ids(r)))
    return out


def _query_changes(v, acc: int, cache, query, keys, collapse: bool, since: str):
    """(result, what moved since SINCE) from one snapshot, so both end
    exactly at the result's state."""
    r = qaccount.run(v, acc, cache, query, keys, collapse)
    return r, qaccount.moved(v, acc, since, qaccount.thread_wide(query, keys, collapse))


@method("Email/queryChanges", cap.MAIL, args=ARGS["Email/queryChanges"])
async def email_query_changes(call: Call) -> dict:
    fv, sv, query, keys, collapse = _query_args(call)
    since = call.args.get("sinceQueryState")
    if not isinstance(since, str):
        raise invalid("'sinceQueryState' must be a string")
    max_changes = arg(call, "maxChanges", int)
    if max_changes is not None and max_changes < 0:
        raise invalid("'maxChanges' must not be negative")
    up_to = arg(call, "upToId", str)
    try:
        r, mv = await storeio.read(call.ctx.store, _query_changes, call.acc,
                                   cache_for(call.ctx.store), query, keys, collapse, since)
    except CannotCalculateChanges as exc:
        raise MethodError("cannotCalculateChanges", str(exc)) from None
    fixed = immutable(fv, sv, collapse)
    if fixed:
        # nothing about an email that the query reads ever changes: only
        # created and destroyed emails move the results
        removed = sorted(mv.destroyed)
        placed = mv.created
    else:
        # every email that may have moved is removed, and added back where
        # it is now (RFC 8620 5.6 allows removing ids the client never had)
        removed = sorted(mv.affected - mv.created)
        placed = mv.affected - mv.destroyed
    added = sorted((p, e) for e in placed if (p := r.position(e)) is not None)
    if fixed and up_to is not None:
        n = ids.parse("E", up_to)
        last = r.position(n) if n is not None else None
        if last is not None:
            added = [(p, e) for p, e in added if p <= last]
    if max_changes is not None and len(removed) + len(added) > max_changes:
        raise MethodError("tooManyChanges",
                          f"{len(removed) + len(added)} changes, more than maxChanges")
    out = {"accountId": ids.account_id(call.acc), "oldQueryState": since,
           "newQueryState": r.state,
           "removed": [ids.email_id(e) for e in removed],
           "added": [{"id": ids.email_id(e), "index": p} for p, e in added]}
    if call.args.get("calculateTotal"):
        out["total"] = len(r.ids)
    return out


# --- SearchSnippet/get (RFC 8621 5) ---------------------------------------------------------

def _body_texts(raw: bytes, mi):
    """The decoded text of the body parts a reader sees, plain before HTML."""
    types = {p.section: p.content_type for p in mi.parts}
    seen = set()
    for pid in tuple(mi.text_body) + tuple(mi.html_body):
        if pid in seen:
            continue
        seen.add(pid)
        try:
            text = mindex.body_text(raw, mi, pid)
        except (KeyError, ValueError):
            continue
        if types.get(pid) == "text/html":
            text = _html_to_text(text)
        yield text


def _snippets(v, acc: int, wanted: list[tuple[str, int | None]], terms) -> tuple[list, list]:
    found, not_found = [], []
    for sid, eid in wanted:
        em = load_email(v, acc, eid, members=False) if eid is not None else None
        if em is None:
            not_found.append(sid)
            continue
        mi = em.index
        subject = preview = None
        if mi is not None:
            if terms.subject:
                subject = jmap_snippet.mark_subject(mi.subject, terms.subject)
            if terms.body:
                blob = v.blob(acc, em.blob)
                if blob is not None:
                    raw = bytes(blob)
                    for text in _body_texts(raw, mi):
                        preview = jmap_snippet.mark_preview(text, terms.body)
                        if preview is not None:
                            break
        found.append({"emailId": sid, "subject": subject, "preview": preview})
    return found, not_found


@method("SearchSnippet/get", cap.MAIL, args=ARGS["SearchSnippet/get"])
async def search_snippet_get(call: Call) -> dict:
    fv = call.args.get("filter")
    compile_filter(fv, call.resolve_id)            # the same errors as Email/query
    email_ids = call.args.get("emailIds")
    if not isinstance(email_ids, list) or not all(isinstance(i, str) for i in email_ids):
        raise invalid("'emailIds' must be a list of ids")
    if len(email_ids) > call.ctx.limits.max_objects_in_get:
        raise MethodError("requestTooLarge",
                          f"at most {call.ctx.limits.max_objects_in_get} emailIds")
    wanted = []
    for i in dict.fromkeys(email_ids):
        wanted.append((i, ids.parse("E", call.resolve_id(i) or "")))
    terms = snippet_terms(fv)
    found, not_found = await storeio.read(call.ctx.store, _snippets, call.acc, wanted, terms)
    return {"accountId": ids.account_id(call.acc), "list": found,
            "notFound": not_found}
