"""JMAP Mailbox (RFC 8621 §2): Mailbox/get, /changes, /query,
/queryChanges and /set over the store's mailboxes.

The ids are the IMAP MAILBOXIDs (``ids.mailbox_id``), the roles the store's
(vocab.py), ``isSubscribed`` the IMAP subscription, ``sortOrder`` the
store's field; every write is a store op (create_mailbox, set_mailbox,
delete_mailbox), so IMAP sessions see it at once, and an IMAP CREATE or
RENAME is in Mailbox/changes.  The counts (§2: unread = neither $seen nor
$draft; threads with the Trash rule) come from one pass over the account's
emails, cached per account modseq.
"""
from __future__ import annotations

from typing import Any

from .. import ids, storeio, vocab
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError
from ..store import changelog, ops
from ..store.errors import AlreadyExists, Conflict, InvalidName, NotFound, LimitReached
from ..store.records import EMAIL, MAILBOX, THREAD
from . import jmap_mailbox_spread as spread
from .jmap_api import Call, method
from .jmap_standard import (Deferred, PatchError, SetError, apply_patch, arg, changes_response,
                            check_patch_size, max_changes, get_ids, get_properties, get_response, invalid,
                            query_changes_response, query_response, run_set)

COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")
SETTABLE = ("name", "parentId", "role", "sortOrder", "isSubscribed")
PROPERTIES = ("id",) + SETTABLE + COUNTS + ("myRights",)
RIGHTS = ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
          "mayCreateChild", "mayRename", "mayDelete", "maySubmit")
MAX_SORT_ORDER = (1 << 32) - 1
MAX_FILTER_DEPTH = 10
MAX_FILTER_CONDITIONS = 100


def rights(m) -> dict[str, bool]:
    """Everything, except that the inbox is neither renamed nor deleted
    (IMAP needs its INBOX)."""
    out = dict.fromkeys(RIGHTS, True)
    if m.role == vocab.ROLE_INBOX:
        out["mayRename"] = out["mayDelete"] = False
    return out


# --- counts ---------------------------------------------------------------------------------

_COUNT_CACHE: dict[tuple[str, int], tuple[int, dict]] = {}
_COUNT_CACHE_MAX = 64


def counts(v, acc: int, mailboxes) -> dict[int, dict[str, int]]:
    """mailbox id -> the four counts of RFC 8621 §2, from one pass over
    ACC's emails (cached until the account's modseq moves)."""
    ms = v.highest_modseq(acc)
    key = (v.store.path, acc)
    hit = _COUNT_CACHE.get(key)
    if hit is not None and hit[0] == ms:
        return hit[1]
    trash = {m.id for m in mailboxes if m.role == vocab.ROLE_TRASH}
    total: dict[int, int] = {}
    unread_n: dict[int, int] = {}
    thread_boxes: dict[int, set[int]] = {}
    # threads with an unread email outside the trash only / in the trash
    unread_out: set[int] = set()
    unread_trash: set[int] = set()
    for thread, boxes, unread in v.email_count_rows(acc, vocab.SEEN, vocab.DRAFT):
        for b in boxes:
            total[b] = total.get(b, 0) + 1
        if unread:
            for b in boxes:
                unread_n[b] = unread_n.get(b, 0) + 1
            if any(b not in trash for b in boxes):
                unread_out.add(thread)
            if trash and any(b in trash for b in boxes):
                unread_trash.add(thread)
        s = thread_boxes.get(thread)
        if s is None:
            thread_boxes[thread] = set(boxes)
        else:
            s.update(boxes)
    out = {m.id: dict.fromkeys(COUNTS, 0) for m in mailboxes}
    for b, c in out.items():
        c["totalEmails"] = total.get(b, 0)
        c["unreadEmails"] = unread_n.get(b, 0)
    for thread, boxes in thread_boxes.items():
        for b in boxes:
            c = out.get(b)
            if c is None:
                continue
            c["totalThreads"] += 1
            if thread in (unread_trash if b in trash else unread_out):
                c["unreadThreads"] += 1
    if len(_COUNT_CACHE) >= _COUNT_CACHE_MAX:
        _COUNT_CACHE.clear()
    _COUNT_CACHE[key] = (ms, out)
    return out


def to_json(m, props, cnt: dict | None) -> dict[str, Any]:
    full = {"id": ids.mailbox_id(m.id), "name": m.name,
            "parentId": ids.mailbox_id(m.parent) if m.parent else None,
            "role": m.role, "sortOrder": m.sort_order, "isSubscribed": bool(m.subscribed),
            "myRights": rights(m)}
    out = {}
    for p in props:
        if p in COUNTS:
            out[p] = cnt[p] if cnt is not None else 0
        else:
            out[p] = full[p]
    return out


def parse_id(s: Any) -> int | None:
    return ids.parse("M", s) if isinstance(s, str) else None


# --- Mailbox/get (§2.1) -----------------------------------------------------------------------

@method("Mailbox/get", cap.MAIL, args=("ids", "properties"))
async def mailbox_get(call: Call) -> dict:
    props = get_properties(call, PROPERTIES, PROPERTIES)
    with call.view() as v:
        boxes = v.mailboxes(call.acc)
        by_id = {ids.mailbox_id(m.id): m for m in boxes}
        want = get_ids(call, lambda: list(by_id))
        cnt = counts(v, call.acc, boxes) if any(p in COUNTS for p in props) else {}
        found, missing = [], []
        for i in want:
            m = by_id.get(i)
            if m is None:
                missing.append(i)
            else:
                found.append(to_json(m, props, cnt.get(m.id)))
        st = v.kind_state(call.acc, MAILBOX)
    out = get_response(call, MAILBOX, found, missing)
    out["state"] = st
    return out


# --- Mailbox/changes (§2.2) -------------------------------------------------------------------

# Mailbox/changes reads the Threads of at most this many changed Emails on
# the loop; up to SPREAD_LIMIT in the worker pool; past that every Mailbox
# is named updated (jmap_mailbox_spread)
SPREAD_INLINE = 256
SPREAD_LIMIT = 20_000


@method("Mailbox/changes", cap.MAIL, args=("sinceState", "maxChanges"))
async def mailbox_changes(call: Call) -> dict:
    mx = max_changes(call)
    fewer = mx
    for _ in range(4):
        out = changes_response(call, MAILBOX, ids.mailbox_id, fewer)
        extra = await _thread_updates(call, out)
        n = len(out["created"]) + len(out["updated"]) + len(out["destroyed"])
        if n + len(extra) <= mx:
            break
        # RFC 8620 §5.2: never more ids than maxChanges: a shorter page (its
        # extra Mailboxes are those of fewer Email changes), else the client
        # fetches the Mailboxes again (there are few)
        fewer = min(n - 1, mx - len(extra))
        if fewer < 1:
            break
    else:
        fewer = 0
    if fewer < 1:
        raise MethodError("cannotCalculateChanges",
                          "the thread counts of more mailboxes changed than maxChanges")
    # only the counts changed when every update came with an email change
    # (the store logs a mailbox updated when its emails' changes move its
    # counts); else null
    only_counts = False
    if out["updated"]:
        with call.view() as v:
            only_counts = v.updates_come_with(call.acc, MAILBOX, out["oldState"],
                                              out["newState"], (EMAIL, THREAD))
    elif extra:
        only_counts = True
    out["updated"].extend(ids.mailbox_id(b) for b in sorted(extra))
    out["updatedProperties"] = list(COUNTS) if only_counts else None
    return out


async def _thread_updates(call: Call, out: dict) -> set[int]:
    """The Mailboxes whose thread counts the Email changes between the
    answer's two states may have moved, beyond those it names
    (jmap_mailbox_spread: RFC 8621 §2's unreadThreads reaches every Mailbox
    of a Thread)."""
    lo = changelog.parse_state(out["oldState"])[0]
    hi = changelog.parse_state(out["newState"])[0]
    if hi <= lo:
        return set()
    listed = {parse_id(i) for k in ("created", "updated", "destroyed") for i in out[k]}
    with call.view() as v:
        extra = spread.extra_updates(v, call.acc, lo, hi, listed, SPREAD_INLINE,
                                     every_when_unknown=False)
    if extra is None:
        extra = await storeio.read(call.ctx.store, spread.extra_updates, call.acc, lo, hi,
                                   listed, SPREAD_LIMIT)
    return extra


# --- Mailbox/query (§2.3) ---------------------------------------------------------------------

FILTER_PROPS = {"parentId", "name", "role", "hasAnyRole", "isSubscribed"}
SORT_PROPS = {"sortOrder", "name"}
QUERY_ARGS = ("filter", "sort", "sortAsTree", "filterAsTree")


def _check_filter(f: Any, depth: int = 0, budget: list | None = None) -> None:
    budget = budget if budget is not None else [MAX_FILTER_CONDITIONS]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_FILTER_DEPTH:
        raise MethodError("unsupportedFilter", "the filter is too large")
    if not isinstance(f, dict):
        raise invalid("a filter is an object")
    if "operator" in f:
        if f["operator"] not in ("AND", "OR", "NOT") or set(f) - {"operator", "conditions"} \
                or not isinstance(f.get("conditions"), list):
            raise invalid("a FilterOperator is {operator: AND|OR|NOT, conditions: [...]}")
        for c in f["conditions"]:
            _check_filter(c, depth + 1, budget)
        return
    bad = set(f) - FILTER_PROPS
    if bad:
        raise MethodError("unsupportedFilter", f"unknown conditions: {', '.join(sorted(bad))}")
    if "parentId" in f and f["parentId"] is not None and not isinstance(f["parentId"], str):
        raise invalid("'parentId' is an id or null")
    if "name" in f and not isinstance(f["name"], str):
        raise invalid("'name' is a string")
    if "role" in f and f["role"] is not None and not isinstance(f["role"], str):
        raise invalid("'role' is a string or null")
    for k in ("hasAnyRole", "isSubscribed"):
        if k in f and not isinstance(f[k], bool):
            raise invalid(f"'{k}' is a boolean")


def _match(f: dict, m, call: Call) -> bool:
    if "operator" in f:
        rs = (_match(c, m, call) for c in f["conditions"])
        if f["operator"] == "AND":
            return all(rs)
        if f["operator"] == "OR":
            return any(rs)
        return not any(rs)
    if "parentId" in f:
        want = f["parentId"]
        if want is None:
            if m.parent:
                return False
        elif m.parent != parse_id(call.resolve_id(want)):
            return False
    if "name" in f and f["name"].casefold() not in m.name.casefold():
        return False
    if "role" in f and m.role != f["role"]:
        return False
    if "hasAnyRole" in f and (m.role is not None) != f["hasAnyRole"]:
        return False
    if "isSubscribed" in f and bool(m.subscribed) != f["isSubscribed"]:
        return False
    return True


def _sort_key(sort: list[dict]):
    def key(m):
        parts = []
        for c in sort:
            if c["property"] == "name":
                v = (m.name.casefold(), m.name)
            else:
                v = m.sort_order
            parts.append(_Rev(v) if not c.get("isAscending", True) else v)
        parts.append(m.id)
        return tuple(parts)
    return key


class _Rev:
    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return other.v < self.v

    def __eq__(self, other):
        return self.v == other.v


def _check_sort(sort: Any) -> list[dict]:
    if sort is None:
        return [{"property": "sortOrder"}, {"property": "name"}]
    if not isinstance(sort, list) or len(sort) > 10:
        raise invalid("'sort' is a list of comparators")
    for c in sort:
        if not isinstance(c, dict) or not isinstance(c.get("property"), str) \
                or not isinstance(c.get("isAscending", True), bool) \
                or set(c) - {"property", "isAscending", "collation"}:
            raise invalid("a comparator is {property, isAscending, collation}")
        if c["property"] not in SORT_PROPS:
            raise MethodError("unsupportedSort", f"cannot sort by {c['property']}")
        if c.get("collation") not in (None, "i;unicode-casemap", "i;ascii-casemap"):
            raise MethodError("unsupportedSort", f"unknown collation {c['collation']}")
    return sort


def compute_query(call: Call):
    """-> compute(view) giving the full sorted result ids of the call's query."""
    f = call.args.get("filter")
    if f is not None:
        _check_filter(f)
    sort = _check_sort(call.args.get("sort"))
    as_tree = bool(arg(call, "sortAsTree", bool, False))
    filter_tree = bool(arg(call, "filterAsTree", bool, False))

    def compute(v) -> list[str]:
        boxes = v.mailboxes(call.acc)
        by_id = {m.id: m for m in boxes}
        ok = {m.id for m in boxes if f is None or _match(f, m, call)}
        if filter_tree:
            def all_up(m):
                p = m.parent
                hops = 0
                while p and hops <= len(by_id):
                    if p not in ok:
                        return False
                    p = by_id[p].parent if p in by_id else 0
                    hops += 1
                return True
            ok = {i for i in ok if all_up(by_id[i])}
        key = _sort_key(sort)
        if not as_tree:
            return [ids.mailbox_id(m.id) for m in sorted((by_id[i] for i in ok), key=key)]
        kids: dict[int, list] = {}
        for m in boxes:
            kids.setdefault(m.parent if m.parent in by_id else 0, []).append(m)
        out, seen = [], set()

        def walk(parent):
            stack = [iter(sorted(kids.get(parent, ()), key=key))]
            while stack:
                m = next(stack[-1], None)
                if m is None:
                    stack.pop()
                    continue
                if m.id in seen:
                    continue
                seen.add(m.id)
                if m.id in ok:
                    out.append(ids.mailbox_id(m.id))
                stack.append(iter(sorted(kids.get(m.id, ()), key=key)))
        walk(0)
        return out

    return compute


@method("Mailbox/query", cap.MAIL,
        args=QUERY_ARGS + ("position", "anchor", "anchorOffset", "limit", "calculateTotal"))
async def mailbox_query(call: Call) -> dict:
    compute = compute_query(call)
    with call.view() as v:
        st = v.kind_state(call.acc, MAILBOX)
        result = compute(v)
    return query_response(call, st, result)


def _descendants(call: Call):
    def expand(v, changed: set[str]) -> set[str]:
        boxes = v.mailboxes(call.acc)
        kids: dict[int, list[int]] = {}
        for m in boxes:
            kids.setdefault(m.parent, []).append(m.id)
        out = set(changed)
        todo = [parse_id(i) for i in changed]
        while todo:
            cur = todo.pop()
            for k in kids.get(cur, ()) if cur else ():
                kid = ids.mailbox_id(k)
                if kid not in out:
                    out.add(kid)
                    todo.append(k)
        return out
    return expand


@method("Mailbox/queryChanges", cap.MAIL,
        args=QUERY_ARGS + ("sinceQueryState", "maxChanges", "upToId", "calculateTotal"))
async def mailbox_query_changes(call: Call) -> dict:
    compute = compute_query(call)
    tree = call.args.get("sortAsTree") or call.args.get("filterAsTree")
    # the query reads no count: updates that only moved counts do not matter
    return query_changes_response(
        call, MAILBOX, compute, ids.mailbox_id, _descendants(call) if tree else None,
        lambda v, since, now: v.updates_come_with(call.acc, MAILBOX, since, now,
                                                  (EMAIL, THREAD)))


# --- Mailbox/set (§2.5) -----------------------------------------------------------------------

def _bad(prop: str, description: str) -> SetError:
    return SetError("invalidProperties", description, properties=[prop])


def _parent(call: Call, value: Any) -> int:
    """The store id of a parentId value (null: top level, "#cid": created
    in this request); Deferred while that creation is pending."""
    if value is None:
        return 0
    if not isinstance(value, str):
        raise _bad("parentId", "parentId is a mailbox id or null")
    if value.startswith("#"):
        if value[1:] in call.pending_creates:
            raise Deferred()
        value = call.resolve_id(value)
    n = parse_id(value)
    if n is None:
        raise _bad("parentId", "no such parent mailbox")
    with call.view() as v:
        if v.mailbox(call.acc, n) is None:
            raise _bad("parentId", "no such parent mailbox")
    return n


def _check_values(call: Call, obj: dict, mbx: int | None) -> dict:
    """The settable properties of OBJ checked; -> store arguments."""
    out: dict[str, Any] = {}
    if "name" in obj:
        name = obj["name"]
        if not isinstance(name, str) or not name:
            raise _bad("name", "name is a non-empty string")
        if "/" in name:
            raise _bad("name", "a mailbox name cannot contain '/' (the IMAP hierarchy "
                       "separator)")
        if len(name.encode("utf-8")) > vocab.MAX_MAILBOX_LEVEL_BYTES:
            raise _bad("name", f"at most {vocab.MAX_MAILBOX_LEVEL_BYTES} bytes")
        if any(ord(c) < 0x20 or c == "\x7f" for c in name):
            raise _bad("name", "no control characters")
        out["name"] = name
    if "parentId" in obj:
        out["parent"] = _parent(call, obj["parentId"])
    if "role" in obj:
        role = obj["role"]
        if role is not None and role not in vocab.BY_ROLE:
            raise _bad("role", f"unknown role {role!r}")
        out["role"] = role
    if "sortOrder" in obj:
        so = obj["sortOrder"]
        if not isinstance(so, int) or isinstance(so, bool) or not 0 <= so <= MAX_SORT_ORDER:
            raise _bad("sortOrder", "sortOrder is an UnsignedInt")
        out["sort_order"] = so
    if "isSubscribed" in obj:
        if not isinstance(obj["isSubscribed"], bool):
            raise _bad("isSubscribed", "isSubscribed is a boolean")
        out["subscribed"] = obj["isSubscribed"]
    return out


def _check_place(call: Call, v, mbx: int | None, parent: int, name: str, role) -> None:
    """Sibling names are unique (and INBOX is the inbox's name at the top);
    a role belongs to one mailbox."""
    other = v.child_id(call.acc, parent, name)
    if other is not None and other != mbx:
        raise _bad("name", "a sibling mailbox has that name")
    if parent == 0 and name.upper() == "INBOX":
        inbox = v.mailbox_by_role(call.acc, vocab.ROLE_INBOX)
        if inbox is None or inbox.id != mbx:
            raise _bad("name", "INBOX is the inbox's name")
    if role is not None:
        holder = v.mailbox_by_role(call.acc, role)
        if holder is not None and holder.id != mbx:
            raise _bad("role", f"another mailbox has the role {role}")


async def _create(call: Call, cid: str, obj: dict) -> dict:
    """isSubscribed defaults to true: the user made it (RFC 8621 §2)."""
    unknown = [k for k in obj if k not in SETTABLE]
    if unknown:
        raise SetError("invalidProperties", "server-set or unknown properties",
                       properties=unknown)
    if "name" not in obj:
        raise _bad("name", "name is required")
    try:
        a = _check_values(call, obj, None)
    except Deferred:
        if not call.set_last_pass:
            raise
        raise _bad("parentId", "the parent is not created") from None
    parent = a.get("parent", 0)
    with call.view() as v:
        _check_place(call, v, None, parent, a["name"], a.get("role"))
    try:
        mbx = await call.write(ops.create_mailbox, call.acc, parent, a["name"],
                               role=a.get("role"), subscribed=a.get("subscribed", True),
                               sort_order=a.get("sort_order", 0))
    except AlreadyExists as exc:
        raise _bad("role" if "role" in str(exc) else "name", str(exc)) from None
    except InvalidName as exc:
        raise _bad("name", str(exc)) from None
    except NotFound as exc:
        raise _bad("parentId", str(exc)) from None
    except LimitReached as exc:
        # RFC 8620 5.3: "a server-defined limit on the number ... of objects of this type"
        raise SetError("overQuota", str(exc)) from None
    with call.view() as v:
        m = v.mailbox(call.acc, mbx)
    full = to_json(m, PROPERTIES, None)
    # the server-set properties, and any the server chose or changed
    return {k: val for k, val in full.items() if k not in obj or obj[k] != val}


async def _update(call: Call, id_: str, patch: dict) -> dict | None:
    n = parse_id(id_)
    with call.view() as v:
        m = v.mailbox(call.acc, n) if n is not None else None
        if m is None:
            raise SetError("notFound")
        current = to_json(m, PROPERTIES, None)
    check_patch_size(patch)
    top = {}
    for path in patch:
        if not isinstance(path, str) or not path:
            raise SetError("invalidPatch", "patch keys are property paths")
        top.setdefault(path.split("/")[0], []).append(path)
    for prop, paths in top.items():
        if prop not in PROPERTIES:
            raise SetError("invalidProperties", f"no property {prop}", properties=[prop])
        if prop not in SETTABLE and (prop in COUNTS or prop == "id"):
            raise SetError("invalidProperties", f"{prop} is server-set", properties=[prop])
    try:
        new = apply_patch({k: current[k] for k in SETTABLE + ("myRights",)}, patch)
    except PatchError as exc:
        raise SetError("invalidPatch", str(exc)) from None
    if new.get("myRights") != current["myRights"]:
        raise SetError("invalidProperties", "myRights is server-set", properties=["myRights"])
    changed = {k: new.get(k) for k in SETTABLE if new.get(k) != current[k]}
    if "name" in changed and changed["name"] is None:
        raise _bad("name", "name is required")
    if not changed:
        return None
    a = _check_values(call, changed, n)
    if m.role == vocab.ROLE_INBOX and ("name" in a or "parent" in a or "role" in a):
        raise SetError("forbidden", "the inbox is not renamed, moved or given another role")
    parent = a.get("parent", m.parent)
    name = a.get("name", m.name)
    with call.view() as v:
        _check_place(call, v, n, parent, name, a.get("role"))
        if "parent" in a:       # no cycle: the new parent is not the mailbox or below it
            p, hops = parent, 0
            while p and hops < 10_000:
                if p == n:
                    raise _bad("parentId", "a mailbox cannot move under itself")
                pm = v.mailbox(call.acc, p)
                p = pm.parent if pm is not None else 0
                hops += 1
    kw = {}
    if "parent" in a or "name" in a:
        kw["parent"], kw["name"] = parent, name
    for k in ("subscribed", "sort_order", "role"):
        if k in a:
            kw[k] = a[k]
    try:
        await call.write(ops.set_mailbox, call.acc, n, **kw)
    except AlreadyExists as exc:
        raise _bad("role" if "role" in str(exc) else "name", str(exc)) from None
    except InvalidName as exc:
        raise _bad("name", str(exc)) from None
    except Conflict as exc:
        raise _bad("parentId", str(exc)) from None
    return None


def _destroyer(remove_emails: bool):
    async def destroy(call: Call, id_: str) -> None:
        n = parse_id(id_)
        with call.view() as v:
            m = v.mailbox(call.acc, n) if n is not None else None
            if m is None:
                raise SetError("notFound")
            if m.role == vocab.ROLE_INBOX:
                raise SetError("forbidden", "the inbox cannot be destroyed")
            if v.children(call.acc, n):
                raise SetError("mailboxHasChild", "the mailbox has child mailboxes")
            if not remove_emails and v.uids(call.acc, n):
                raise SetError("mailboxHasEmail", "the mailbox is not empty")
        try:
            await call.write(ops.delete_mailbox, call.acc, n, remove_emails=remove_emails)
        except Conflict as exc:     # changed meanwhile
            raise SetError("mailboxHasChild" if "children" in str(exc) else "mailboxHasEmail",
                           str(exc)) from None
    return destroy


def _depth_first(call: Call, destroy: list) -> list:
    """Children before parents, so one call can destroy a whole subtree."""
    with call.view() as v:
        def depth(i):
            n = parse_id(call.resolve_id(i)) if isinstance(i, str) else None
            return len(v.mailbox_path(call.acc, n)) if n else 0
        return sorted(destroy, key=depth, reverse=True)


@method("Mailbox/set", cap.MAIL,
        args=("ifInState", "create", "update", "destroy", "onDestroyRemoveEmails"))
async def mailbox_set(call: Call) -> dict:
    remove = arg(call, "onDestroyRemoveEmails", bool, False)
    d = call.args.get("destroy")
    if isinstance(d, list) and len(d) > 1 and len(d) <= call.ctx.limits.max_objects_in_set:
        call.args = dict(call.args, destroy=_depth_first(call, d))
    return await run_set(call, MAILBOX, create=_create, update=_update,
                         destroy=_destroyer(bool(remove)))
