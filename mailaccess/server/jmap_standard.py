"""The standard JMAP methods' shared parts (RFC 8620 §5): argument checks
and response shapes of /get, /changes, /query and /set, and PatchObject.

Each data type's module (jmap_mailbox, jmap_email, ...) supplies what is
specific to it (how to read one object, which properties exist, how to apply
a create/update/destroy) and uses these for the rest, so every type answers
the same way to the same mistakes.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from .. import ids
from ..proto.jmap.errors import MethodError, set_error
from ..store.changelog import CannotCalculateChanges
from ..store.errors import NotFound, OverQuota, StoreFullError
from .jmap_api import Call

log = logging.getLogger("mailaccess.jmap")


def invalid(description: str) -> MethodError:
    return MethodError("invalidArguments", description)


def arg(call: Call, name: str, types: type | tuple, default: Any = None, *,
        nullable: bool = True) -> Any:
    """Argument NAME of the call, checked against TYPES (invalidArguments)."""
    v = call.args.get(name, default)
    if v is None:
        if not nullable and name in call.args:
            raise invalid(f"'{name}' must not be null")
        return default
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise invalid(f"'{name}' has the wrong type")
    if not isinstance(v, types):
        raise invalid(f"'{name}' has the wrong type")
    return v


def state(call: Call, kind: str) -> str:
    with call.view() as v:
        return v.kind_state(call.acc, kind)


# --- /get (§5.1) --------------------------------------------------------------------

def get_ids(call: Call, all_ids: Callable[[], Iterable[str]]) -> list[str]:
    """The ids asked for: ``ids`` (creation references resolved, duplicates
    dropped, at most maxObjectsInGet) or, when null, every id."""
    want = call.args.get("ids")
    if want is None:
        return list(all_ids())
    if not isinstance(want, list) or not all(isinstance(i, str) for i in want):
        raise invalid("'ids' must be a list of ids or null")
    if len(want) > call.ctx.limits.max_objects_in_get:
        raise MethodError("requestTooLarge",
                          f"at most {call.ctx.limits.max_objects_in_get} ids per /get")
    out, seen = [], set()
    for i in want:
        r = call.resolve_id(i) or i
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def get_properties(call: Call, known: Iterable[str], default: Iterable[str]) -> list[str]:
    """``properties`` checked against KNOWN (invalidArguments); DEFAULT when
    null.  ``id`` is always returned (§5.1)."""
    props = call.args.get("properties")
    if props is None:
        props = list(default)
    elif not isinstance(props, list) or not all(isinstance(p, str) for p in props):
        raise invalid("'properties' must be a list of strings or null")
    known = set(known)
    bad = [p for p in props if p not in known]
    if bad:
        raise invalid(f"unknown properties: {', '.join(bad)}")
    if "id" not in props:
        props = ["id"] + list(props)
    return list(dict.fromkeys(props))


def get_response(call: Call, kind: str, found: list[dict], not_found: list[str]) -> dict:
    return {"accountId": ids.account_id(call.acc), "state": state(call, kind),
            "list": found, "notFound": not_found}


def get_records(call: Call, kind: str, records: dict[int, Any], prefix: str,
                to_id: Callable[[int], str], to_json: Callable[[int, Any, list[str]], dict],
                known: Iterable[str], default: Iterable[str]) -> dict:
    """The whole /get over RECORDS ({number: record}) whose ids are PREFIX +
    number: ids, properties, notFound and the state of KIND."""
    want = get_ids(call, lambda: [to_id(n) for n in sorted(records)])
    props = get_properties(call, known, default)
    found, missing = [], []
    for i in want:
        n = ids.parse(prefix, i)
        if n is None or n not in records:
            missing.append(i)
        else:
            found.append(to_json(n, records[n], props))
    return get_response(call, kind, found, missing)


# --- /changes (§5.2) ----------------------------------------------------------------

MAX_CHANGES = 10_000    # ids one /changes answers at most (hasMoreChanges past it)


def max_changes(call: Call) -> int:
    """The /changes call's maxChanges, capped at MAX_CHANGES."""
    mx = arg(call, "maxChanges", int)
    if mx is not None and mx < 1:
        raise invalid("'maxChanges' must be a positive integer")
    # RFC 8620 §5.2: "The server MAY choose to return fewer than this value";
    # without a cap one call walked the whole log since SINCE on the loop
    # (0.1 s per 20,000 emails, an account's size)
    return MAX_CHANGES if mx is None else min(mx, MAX_CHANGES)


def changes_response(call: Call, kind: str, to_id: Callable[[int], str],
                     fewer: int | None = None) -> dict:
    """The whole /changes method for KIND, ids formatted with TO_ID; at most
    FEWER ids when given (below the call's maxChanges)."""
    since = call.args.get("sinceState")
    if not isinstance(since, str):
        raise invalid("'sinceState' must be a string")
    mx = max_changes(call) if fewer is None else fewer
    try:
        with call.view() as v:
            page = v.changes(call.acc, kind, since, mx)
    except CannotCalculateChanges as exc:
        raise MethodError("cannotCalculateChanges", str(exc)) from None
    return {"accountId": ids.account_id(call.acc), "oldState": page.old_state,
            "newState": page.new_state, "hasMoreChanges": page.has_more,
            "created": [to_id(i) for i in page.created],
            "updated": [to_id(i) for i in page.updated],
            "destroyed": [to_id(i) for i in page.destroyed]}


# --- /query (§5.5) ------------------------------------------------------------------

def query_window(call: Call, result_ids: list[str]) -> dict:
    """position / anchor / anchorOffset / limit / calculateTotal over the
    full sorted RESULT_IDS -> the window part of a /query response."""
    position = arg(call, "position", int, 0)
    anchor = arg(call, "anchor", str)
    offset = arg(call, "anchorOffset", int, 0)
    limit = arg(call, "limit", int)
    if limit is not None and limit < 0:
        raise invalid("'limit' must not be negative")
    total = len(result_ids)
    if anchor is not None:
        try:
            at = result_ids.index(anchor)
        except ValueError:
            raise MethodError("anchorNotFound") from None
        start = max(0, at + offset)
    else:
        start = position if position >= 0 else max(0, total + position)
    start = min(start, total)
    end = total if limit is None else min(total, start + limit)
    out = {"position": start, "ids": result_ids[start:end]}
    if call.args.get("calculateTotal"):
        out["total"] = total
    if limit is not None and limit > 0:
        out["limit"] = limit
    return out


def query_response(call: Call, query_state: str, result_ids: list[str], *,
                   can_calculate_changes: bool = True) -> dict:
    """The whole /query response over the full sorted RESULT_IDS.

    A query state is the state of the queried type (``Mailbox``, ``Email``)
    at the moment the results were computed: the results can only differ
    once that state moves, and /queryChanges reads the change log from it."""
    out = {"accountId": ids.account_id(call.acc), "queryState": query_state,
           "canCalculateChanges": can_calculate_changes}
    out.update(query_window(call, result_ids))
    return out


# --- /queryChanges (§5.6) -----------------------------------------------------------

QUERY_CHANGES_SCAN = 10_000     # change-log ids one /queryChanges reads at most


def query_changes_response(call: Call, kind: str,
                           compute: Callable[[Any], list[str]],
                           to_id: Callable[[int], str],
                           expand: Callable[[Any, set[str]], set[str]] | None = None,
                           updates_irrelevant: Callable[[Any, str, str], bool] | None = None,
                           ) -> dict:
    """The whole /queryChanges method for KIND (RFC 8620 §5.6).

    COMPUTE(view) is the query's full sorted result (ids); TO_ID formats
    the change log's object ids; EXPAND(view, changed ids) adds the ids
    whose place in the results depends on a changed one (a tree sort: the
    children of a renamed mailbox).  The strategy: every object changed or
    destroyed since ``sinceQueryState`` is in ``removed`` (the RFC lets
    removed name ids that were not in the old results), and every changed
    or created one that matches now is in ``added`` at its current index;
    the client removes, then inserts, and has the new results.  A state the
    log no longer covers, or more changes than QUERY_CHANGES_SCAN, is
    cannotCalculateChanges; more than ``maxChanges`` is tooManyChanges.
    ``upToId`` is accepted and ignored (allowed: the sort and filter
    properties are mutable).  UPDATES_IRRELEVANT(view, since, now) True
    says no update since SINCE touched what the query looks at (Mailbox:
    only counts changed): then only creates and destroys count."""
    since = call.args.get("sinceQueryState")
    if not isinstance(since, str):
        raise invalid("'sinceQueryState' must be a string")
    mx = arg(call, "maxChanges", int)
    if mx is not None and mx < 0:
        raise invalid("'maxChanges' must not be negative")
    arg(call, "upToId", str)
    with call.view() as v:
        cur = v.kind_state(call.acc, kind)
        results = compute(v)
        if since == cur:
            removed, added = [], []
        else:
            try:
                page = v.changes(call.acc, kind, since, QUERY_CHANGES_SCAN)
            except CannotCalculateChanges as exc:
                raise MethodError("cannotCalculateChanges", str(exc)) from None
            if page.has_more:
                raise MethodError("cannotCalculateChanges",
                                  "too many changes since that state; query again")
            upd = page.updated
            if upd and updates_irrelevant is not None and updates_irrelevant(v, since, cur):
                upd = []
            gone = [to_id(i) for i in upd + page.destroyed]
            changed = set(gone) | {to_id(i) for i in page.created}
            if expand is not None:
                more = expand(v, changed) - changed
                gone += sorted(more)
                changed |= more
            removed = gone
            added = [{"id": r, "index": n} for n, r in enumerate(results) if r in changed]
    if mx is not None and len(removed) + len(added) > mx:
        raise MethodError("tooManyChanges", f"more than {mx} changes")
    out = {"accountId": ids.account_id(call.acc), "oldQueryState": since,
           "newQueryState": cur, "removed": removed, "added": added}
    if call.args.get("calculateTotal"):
        out["total"] = len(results)
    return out


# --- /set (§5.3) --------------------------------------------------------------------

def check_if_in_state(call: Call, kind: str) -> str:
    """The current state; stateMismatch when ``ifInState`` differs."""
    cur = state(call, kind)
    want = call.args.get("ifInState")
    if want is not None and want != cur:
        raise MethodError("stateMismatch", f"the state is {cur}, not {want}")
    return cur


def set_sizes(call: Call) -> tuple[dict, dict, list]:
    """create / update / destroy arguments, shape- and size-checked."""
    create = call.args.get("create")
    update = call.args.get("update")
    destroy = call.args.get("destroy")
    create = {} if create is None else create
    update = {} if update is None else update
    destroy = [] if destroy is None else destroy
    if not isinstance(create, dict) or not isinstance(update, dict) or not isinstance(destroy, list):
        raise invalid("'create' and 'update' must be objects, 'destroy' a list")
    if len(create) + len(update) + len(destroy) > call.ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge",
                          f"at most {call.ctx.limits.max_objects_in_set} objects per /set")
    return create, update, destroy


class SetError(Exception):
    """One object of a /set failed: carries a SetError object (§5.3), made by
    ``proto.jmap.errors.set_error``.  ``SetError(set_error("notFound"))`` or
    the short form ``SetError("invalidProperties", "why", properties=[...])``."""

    def __init__(self, error: dict | str, description: str | None = None, **extra: Any):
        if isinstance(error, str):
            error = set_error(error, description, **extra)
        super().__init__(error.get("description") or error.get("type"))
        self.error = error


class Deferred(Exception):
    """Raised by a create function whose object refers (``#cid``) to another
    object created by the same /set call that is not created yet: run_set
    tries it again after the others (a Mailbox whose parent comes later in
    ``create``).  On the last pass (``call.set_last_pass``) nothing is
    pending any more, and the function answers with a SetError instead."""


async def run_set(call: Call, kind: str, *, create, update, destroy) -> dict:
    """The whole /set method (RFC 8620 §5.3) for KIND.

    ``create(call, cid, obj) -> dict``: the properties the server set or
    changed, including "id" (the creation id is then registered for ``#cid``
    references, later in this call and in later calls);
    ``update(call, id, patch) -> dict | None``: properties the server changed
    other than those in the patch (§5.3), or None;
    ``destroy(call, id) -> None``.  Each raises SetError for that object.
    Creates run first, then updates, then destroys (§5.3)."""
    old_state = check_if_in_state(call, kind)
    creates, updates, destroys = set_sizes(call)
    created: dict[str, dict] = {}
    updated: dict[str, Any] = {}
    destroyed: list[str] = []

    async def guard(aw):
        """Store errors every type answers alike become SetErrors; an
        unexpected failure after some writes is serverPartialFail (§3.6.2),
        before any is left to the dispatcher (serverFail)."""
        try:
            return await aw
        except (SetError, Deferred, MethodError):
            raise
        except NotFound as exc:
            raise SetError("notFound", str(exc)) from None
        except OverQuota as exc:
            raise SetError("overQuota", str(exc)) from None
        except StoreFullError:
            if created or updated or destroyed:
                raise MethodError("serverPartialFail", "the store is full; some changes "
                                  "were made: resynchronise") from None
            raise
        except Exception:
            if created or updated or destroyed:
                log.exception("%s/set failed part way", kind)
                raise MethodError("serverPartialFail",
                                  "some changes were made; resynchronise") from None
            raise

    if not all(isinstance(i, str) for i in updates) or \
            not all(isinstance(i, str) for i in destroys):
        raise invalid("'update' keys and 'destroy' items must be ids")
    not_created: dict[str, dict] = {}
    pending = []
    for cid, obj in creates.items():
        if not isinstance(obj, dict):
            not_created[cid] = set_error("invalidProperties", "not an object", properties=[])
        else:
            pending.append((cid, obj))
    call.pending_creates = {cid for cid, _ in pending}
    call.set_last_pass = False
    while pending:
        deferred = []
        for cid, obj in pending:
            try:
                out = await guard(create(call, cid, obj))
            except Deferred:
                deferred.append((cid, obj))
                continue
            except SetError as exc:
                not_created[cid] = exc.error
            else:
                created[cid] = out
                call.created_ids[cid] = out["id"]
            call.pending_creates.discard(cid)
        if len(deferred) == len(pending):       # no progress: last pass, no deferring
            call.set_last_pass = True
            call.pending_creates = set()
        pending = deferred
    not_updated: dict[str, dict] = {}
    doomed = {call.resolve_id(i) for i in destroys}
    for uid, patch in updates.items():
        rid = call.resolve_id(uid)
        if rid is None:
            not_updated[uid] = set_error("notFound", f"no object was created as {uid}")
            continue
        if not isinstance(patch, dict):
            not_updated[rid] = set_error("invalidPatch", "a PatchObject is a JSON object")
            continue
        if rid in doomed:
            not_updated[rid] = set_error("willDestroy", "this object is destroyed in this call")
            continue
        try:
            updated[rid] = await guard(update(call, rid, patch))
        except SetError as exc:
            not_updated[rid] = exc.error
    not_destroyed: dict[str, dict] = {}
    for did in destroys:
        rid = call.resolve_id(did)
        if rid is None:
            not_destroyed[did] = set_error("notFound", f"no object was created as {did}")
            continue
        if rid in destroyed or rid in not_destroyed:     # named twice: answered once
            continue
        try:
            await guard(destroy(call, rid))
        except SetError as exc:
            not_destroyed[rid] = exc.error
        else:
            destroyed.append(rid)
    return {"accountId": ids.account_id(call.acc), "oldState": old_state,
            "newState": state(call, kind),
            "created": created or None, "updated": updated or None,
            "destroyed": destroyed or None,
            "notCreated": not_created or None, "notUpdated": not_updated or None,
            "notDestroyed": not_destroyed or None}


class PatchError(ValueError):
    """A PatchObject that cannot be applied (invalidPatch / invalidProperties);
    PATH is the path that could not be (None: the patch as a whole)."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


MAX_PATCH_PATHS = 1000
"""Paths in one PatchObject of Mailbox, Identity, EmailSubmission (Email has
its own, tighter bound): far more than their properties, so more cannot be a
useful patch; each path is checked, which a 10 MB patch made a long stall."""


def check_patch_size(patch: dict) -> None:
    """invalidPatch (RFC 8620 §5.3) for a PatchObject of more than
    MAX_PATCH_PATHS paths, before any is looked at."""
    if len(patch) > MAX_PATCH_PATHS:
        raise SetError("invalidPatch", f"at most {MAX_PATCH_PATHS} paths in one patch")


def apply_patch(obj: dict, patch: dict) -> dict:
    """RFC 8620 §5.3 PatchObject: keys are JSON Pointers (no leading '/');
    a null value removes.  Returns the patched copy; raises PatchError."""
    import copy
    if len(patch) > MAX_PATCH_PATHS:
        raise PatchError(f"at most {MAX_PATCH_PATHS} paths in one patch")
    out = copy.deepcopy(obj)
    for path, value in patch.items():
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")]
        target = out
        for p in parts[:-1]:
            if not isinstance(target, dict) or p not in target or not isinstance(target[p], dict):
                raise PatchError(f"cannot patch {path}", path)
            target = target[p]
        last = parts[-1]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return out
