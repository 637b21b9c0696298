"""JMAP EmailSubmission (RFC 8621 §7): /get, /changes, /query,
/queryChanges, /set with onSuccessUpdateEmail / onSuccessDestroyEmail.

Creating a submission checks the email, the identity and the envelope
(§7.5: invalidEmail, tooLarge, forbiddenFrom, forbiddenMailFrom,
noRecipients, invalidRecipients, tooManyRecipients, forbiddenToSend) and
writes, in one durable transaction, the submission and its outbound queue
entry with a copy of the message (Bcc removed); the outbound service
(server/outbound.py) is woken by that commit and sends it.  It stays
``pending`` (cancelable by an update to ``canceled``) for ``[smtp] hold``
seconds, then becomes ``final``; ``deliveryStatus`` follows each
recipient's SMTP reply.  The envelope, when the client gives none, is
derived from the message's headers (mailaccess/outbound/envelope.py).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from .. import ids, storeio
from ..outbound import addresses, envelope as env
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError
from ..store import sending
from ..store.errors import Conflict, NotFound
from .jmap_api import Call, method
from .jmap_identity import config, ensure_default, own_addresses
from .jmap_standard import (PatchError, SetError, apply_patch, arg, changes_response,
                            check_patch_size, get_records, invalid, query_changes_response,
                            query_response, run_set)

KIND = sending.SUBMISSION
PROPERTIES = ("id", "identityId", "emailId", "threadId", "envelope", "sendAt", "undoStatus",
              "deliveryStatus", "dsnBlobIds", "mdnBlobIds")
SERVER_SET = ("id", "threadId", "sendAt", "deliveryStatus", "dsnBlobIds", "mdnBlobIds")
UNDO = ("pending", "final", "canceled")
FILTERS = ("identityIds", "emailIds", "threadIds", "undoStatus", "before", "after")
SORTS = ("emailId", "threadId", "sentAt")


def capability_objects() -> tuple[dict, dict]:
    """The urn:ietf:params:jmap:submission objects for the Session resource
    (RFC 8621 §1.3.2): (in ``capabilities``, in an account's
    ``accountCapabilities``).  No delayed send (FUTURERELEASE) for clients
    and no SMTP extension parameters are offered."""
    return {}, {"maxDelayedSend": 0, "submissionExtensions": {}}


def utc(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(s) -> float | None:
    if not isinstance(s, str) or not s.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(s[:-1] + "+00:00").timestamp()
    except ValueError:
        return None


def to_json(sid: int, rec: dict, props) -> dict:
    full = {"id": ids.submission_id(sid), "identityId": rec.get("identityId"),
            "emailId": rec.get("emailId"), "threadId": rec.get("threadId"),
            "envelope": rec.get("envelope"), "sendAt": rec.get("sendAt"),
            "undoStatus": rec.get("undoStatus"),
            "deliveryStatus": rec.get("deliveryStatus"),
            "dsnBlobIds": [], "mdnBlobIds": []}
    return {p: full[p] for p in props}


def submissions(call: Call) -> dict[int, dict]:
    with call.view() as v:
        return v.submissions(call.acc)


# --- /get, /changes -----------------------------------------------------------------

@method("EmailSubmission/get", cap.SUBMISSION, args=("ids", "properties"))
async def submission_get(call: Call) -> dict:
    return get_records(call, KIND, submissions(call), "S", ids.submission_id, to_json,
                       PROPERTIES, PROPERTIES)


@method("EmailSubmission/changes", cap.SUBMISSION, args=("sinceState", "maxChanges"))
async def submission_changes(call: Call) -> dict:
    return changes_response(call, KIND, ids.submission_id)


# --- /query, /queryChanges ------------------------------------------------------------

# Bounds, as for Email/query (server/jmap_email_filter.py): a filter of at
# most MAX_FILTER_NODES operators + conditions + their properties, nested at
# most MAX_FILTER_DEPTH deep, and at most MAX_SORT Comparators.  Without them
# a 10 MB request held the loop for (submissions x conditions) and
# (submissions x comparators) work.  RFC 8620 §5.5: a filter the server
# cannot process is ``unsupportedFilter``, a sort ``unsupportedSort``.
MAX_FILTER_NODES = 512
MAX_FILTER_DEPTH = 16
MAX_SORT = 16


def _check_filter(f, depth: int = 0, budget: list[int] | None = None):
    """The client's filter checked and compiled for ``_matches``: None, an
    ``("op", operator, [compiled])`` or a ``("cond", {property: value})``
    whose id lists are frozensets (one lookup per record, not a scan)."""
    if f is None:
        return None
    budget = budget if budget is not None else [MAX_FILTER_NODES]
    if not isinstance(f, dict) or depth > MAX_FILTER_DEPTH:
        raise invalid("'filter' must be a FilterOperator or FilterCondition")
    budget[0] -= 1 if "operator" in f else max(1, len(f))
    if budget[0] < 0:
        raise MethodError("unsupportedFilter",
                          f"the filter has more than {MAX_FILTER_NODES} parts")
    if "operator" in f:
        if f.get("operator") not in ("AND", "OR", "NOT") or set(f) != {"operator", "conditions"} \
                or not isinstance(f.get("conditions"), list):
            raise MethodError("unsupportedFilter", "a FilterOperator is operator + conditions")
        if len(f["conditions"]) > budget[0]:
            raise MethodError("unsupportedFilter",
                              f"the filter has more than {MAX_FILTER_NODES} parts")
        return ("op", f["operator"], [_check_filter(c, depth + 1, budget)
                                      for c in f["conditions"]])
    cond = {}
    for k, v in f.items():
        if k not in FILTERS:
            raise MethodError("unsupportedFilter", f"no filter condition {k}")
        if k in ("identityIds", "emailIds", "threadIds"):
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise MethodError("unsupportedFilter", f"{k} is a list of ids")
            cond[k] = frozenset(v)
        elif k == "undoStatus":
            if v not in UNDO:
                raise MethodError("unsupportedFilter", "undoStatus is pending, final or canceled")
            cond[k] = v
        else:
            t = parse_utc(v)
            if t is None:
                raise MethodError("unsupportedFilter", f"{k} is a UTCDate")
            cond[k] = t
    return ("cond", cond)


def _matches(f, rec: dict) -> bool:
    """Whether REC passes F, a filter compiled by ``_check_filter``."""
    if f is None:
        return True
    if f[0] == "op":
        _, op, conds = f
        if op == "AND":
            return all(_matches(c, rec) for c in conds)
        if op == "OR":
            return any(_matches(c, rec) for c in conds)
        return not any(_matches(c, rec) for c in conds)
    at = rec.get("at", 0)
    for k, v in f[1].items():
        if k == "identityIds" and rec.get("identityId") not in v:
            return False
        if k == "emailIds" and rec.get("emailId") not in v:
            return False
        if k == "threadIds" and rec.get("threadId") not in v:
            return False
        if k == "undoStatus" and rec.get("undoStatus") != v:
            return False
        if k == "before" and not at < v:
            return False
        if k == "after" and not at >= v:
            return False
    return True


def _sort_key(prop: str):
    def num(s):
        return int(s[1:]) if isinstance(s, str) and s[1:].isdigit() else 0
    if prop == "emailId":
        return lambda sr: num(sr[1].get("emailId"))
    if prop == "threadId":
        return lambda sr: num(sr[1].get("threadId"))
    return lambda sr: sr[1].get("at", 0)


def _parse_sort(call: Call) -> list[tuple[str, bool]]:
    sort = call.args.get("sort")
    if sort is None:
        return []
    if not isinstance(sort, list):
        raise invalid("'sort' must be a list of Comparators")
    if len(sort) > MAX_SORT:
        raise MethodError("unsupportedSort", f"at most {MAX_SORT} Comparators")
    out = []
    for c in sort:
        if not isinstance(c, dict) or not isinstance(c.get("property"), str):
            raise invalid("a Comparator has a property")
        if c["property"] not in SORTS or set(c) - {"property", "isAscending", "collation"}:
            raise MethodError("unsupportedSort", f"cannot sort by {c.get('property')}")
        asc = c.get("isAscending", True)
        if not isinstance(asc, bool):
            raise invalid("isAscending is a boolean")
        out.append((c["property"], asc))
    return out


def _compute(call: Call, recs: dict[int, dict]) -> list[str]:
    f = _check_filter(call.args.get("filter"))
    items = [(sid, r) for sid, r in sorted(recs.items()) if _matches(f, r)]
    for prop, asc in reversed(_parse_sort(call)):
        items.sort(key=_sort_key(prop), reverse=not asc)
    return [ids.submission_id(sid) for sid, _ in items]


QUERY_ARGS = ("filter", "sort", "position", "anchor", "anchorOffset", "limit",
              "calculateTotal")


@method("EmailSubmission/query", cap.SUBMISSION, args=QUERY_ARGS)
async def submission_query(call: Call) -> dict:
    _check_filter(call.args.get("filter"))
    _parse_sort(call)
    with call.view() as v:
        st = v.kind_state(call.acc, KIND)
        recs = v.submissions(call.acc)
    return query_response(call, st, _compute(call, recs))


@method("EmailSubmission/queryChanges", cap.SUBMISSION,
        args=("filter", "sort", "sinceQueryState", "maxChanges", "upToId", "calculateTotal"))
async def submission_query_changes(call: Call) -> dict:
    _check_filter(call.args.get("filter"))
    _parse_sort(call)
    return query_changes_response(call, KIND,
                                  lambda v: _compute(call, v.submissions(call.acc)),
                                  ids.submission_id)


# --- /set: create -------------------------------------------------------------------

def _bad(prop: str, why: str) -> SetError:
    return SetError("invalidProperties", why, properties=[prop])


def _address_obj(a, prop: str) -> str:
    """An Envelope Address {email, parameters} -> its email."""
    if not isinstance(a, dict) or not isinstance(a.get("email"), str) or \
            set(a) - {"email", "parameters"}:
        raise _bad(prop, "an Address is {email, parameters}")
    if a.get("parameters") not in (None, {}):
        raise _bad(prop, "no SMTP parameters are supported (submissionExtensions is empty)")
    return a["email"]


def _envelope(obj: dict, max_recipients: int) -> tuple[str, list[str]] | None:
    """The client's Envelope -> (mailFrom, rcptTo); more than MAX_RECIPIENTS
    rcptTo entries is tooManyRecipients before any is read (RFC 8621 §7.5:
    "the envelope ... contains more recipients than the server allows")."""
    e = obj.get("envelope")
    if e is None:
        return None
    if not isinstance(e, dict) or set(e) != {"mailFrom", "rcptTo"} or \
            not isinstance(e["rcptTo"], list):
        raise _bad("envelope", "an Envelope is {mailFrom, rcptTo}")
    if len(e["rcptTo"]) > max_recipients:
        raise SetError("tooManyRecipients", "too many recipients", maxRecipients=max_recipients)
    mail_from = _address_obj(e["mailFrom"], "envelope")
    rcpts = [_address_obj(a, "envelope") for a in e["rcptTo"]]
    return mail_from, rcpts


def _envelope_json(mail_from: str, rcpts: list[str]) -> dict:
    return {"mailFrom": {"email": mail_from, "parameters": None},
            "rcptTo": [{"email": r, "parameters": None} for r in rcpts]}


async def _create(call: Call, cid: str, obj: dict) -> dict:
    unknown = [p for p in obj if p not in PROPERTIES]
    if unknown:
        raise SetError("invalidProperties", "unknown properties", properties=unknown)
    given = [p for p in SERVER_SET if p in obj and obj[p] not in (None, [])]
    if given:
        raise SetError("invalidProperties", "set by the server", properties=given)
    if obj.get("undoStatus", "pending") != "pending":
        raise _bad("undoStatus", "a new submission is pending")
    cfg = config(call)
    iid_s = obj.get("identityId")
    iid_s = call.resolve_id(iid_s) if isinstance(iid_s, str) else None
    iid = ids.parse("I", iid_s) if iid_s else None
    with call.view() as v:
        ident = v.identity(call.acc, iid) if iid is not None else None
    if ident is None:
        raise _bad("identityId", "no such identity")
    eid_s = obj.get("emailId")
    eid_s = call.resolve_id(eid_s) if isinstance(eid_s, str) else None
    if isinstance(obj.get("emailId"), str) and obj["emailId"].startswith("#") and eid_s is None \
            and obj["emailId"][1:] in call.pending_creates:
        raise _bad("emailId", "refers to an object not created")
    eid = ids.parse("E", eid_s) if eid_s else None
    with call.view() as v:
        rec = v.email(call.acc, eid) if eid is not None else None
        raw = bytes(v.blob(call.acc, rec.blob)) if rec is not None and \
            v.blob(call.acc, rec.blob) is not None else None
    if rec is None or raw is None:
        raise _bad("emailId", "no such email")
    if not cfg.smtp.send_enabled:
        raise SetError("forbiddenToSend", "sending is disabled on this server")
    if len(raw) > cfg.smtp.max_size:
        raise SetError("tooLarge", "the email is too big to send", maxSize=cfg.smtp.max_size)
    own = own_addresses(call)
    # the email package reads a 50 MB header in seconds: in the worker pool
    h = await storeio.cpu(env.header_addresses, raw)
    froms = [a for f in h.from_ for a in f]
    if not froms:
        raise SetError("invalidEmail", "the email has no From address", properties=["from"])
    bad_from = [a for a in froms if not addresses.may_send_from(a, own)]
    if bad_from:
        raise SetError("forbiddenFrom", f"this account may not send as {', '.join(bad_from)}")
    given_env = _envelope(obj, cfg.smtp.max_recipients)
    if given_env is not None:
        mail_from, rcpts = given_env
        if not addresses.may_send_from(mail_from, own):
            raise SetError("forbiddenMailFrom", f"this account may not send as {mail_from}")
    else:
        try:
            mail_from = env.derive_mail_from(h)
        except env.EnvelopeError as exc:
            raise SetError("invalidEmail", str(exc), properties=["from", "sender"]) from None
        if mail_from is None or not addresses.may_send_from(mail_from, own):
            mail_from = ident["email"]          # §7: the identity's address then
        # as many as the draft's headers hold: in the worker pool
        rcpts = await storeio.cpu(env.derive_rcpt_to, h)
    rcpts = env.dedupe(rcpts)
    if not rcpts:
        raise SetError("noRecipients", "the submission has no recipients")
    # counted before each is checked: checking is the costly part
    if len(rcpts) > cfg.smtp.max_recipients:
        raise SetError("tooManyRecipients", "too many recipients",
                       maxRecipients=cfg.smtp.max_recipients)
    bad = [r for r in rcpts if not addresses.valid_address(r)]
    if bad:
        raise SetError("invalidRecipients", "invalid recipient addresses",
                       invalidRecipients=bad)
    now = time.time()
    send_at = now + cfg.smtp.hold
    record = {"identityId": ids.identity_id(iid), "emailId": ids.email_id(eid),
              "threadId": ids.thread_id(rec.thread),
              "envelope": _envelope_json(mail_from, rcpts), "sendAt": utc(send_at),
              "at": int(send_at), "undoStatus": "pending"}
    wire = await storeio.cpu(env.wire_bytes, raw)
    sid = await call.write(sending.enqueue, call.acc, wire, mail_from, rcpts,
                           now=int(now), send_at=int(send_at),
                           expires=int(now + cfg.smtp.expire), submission=record)
    with call.view() as v:
        stored = v.submission(call.acc, sid) or record
    out = to_json(sid, stored, ("id", "threadId", "sendAt", "undoStatus", "deliveryStatus",
                                "dsnBlobIds", "mdnBlobIds"))
    if given_env is None:
        out["envelope"] = stored["envelope"]
    return out


# --- /set: update, destroy ----------------------------------------------------------

async def _update(call: Call, id_: str, patch: dict) -> dict | None:
    n = ids.parse("S", id_)
    recs = submissions(call)
    if n is None or n not in recs:
        raise SetError("notFound", f"no submission {id_}")
    check_patch_size(patch)
    cur = to_json(n, recs[n], PROPERTIES)
    rest = {p: v for p, v in patch.items() if p != "undoStatus"}
    for p in rest:
        if p.split("/")[0] not in PROPERTIES:
            raise SetError("invalidProperties", "unknown property", properties=[p])
    # only undoStatus changes: the rest of the patch must leave the object as
    # it is (RFC 8621 §7). Applied once (one copy of the object), not once
    # per path: per path it was paths x object size on the loop (5.3 s for
    # 20,000 no-op paths on a 100-recipient envelope)
    try:
        new = apply_patch(cur, rest)
    except PatchError as exc:
        root = (exc.path or "").split("/")[0] or "envelope"
        raise _bad(root, f"{root} cannot be changed") from None
    changed = [k for k in PROPERTIES if new.get(k) != cur.get(k)]
    if changed:
        raise _bad(changed[0], f"{changed[0]} cannot be changed")
    if "undoStatus" in patch:
        want = patch["undoStatus"]
        if want == cur["undoStatus"]:
            return None
        if want != "canceled":
            raise _bad("undoStatus", "undoStatus can only be changed to canceled")
        try:
            await call.write(sending.cancel_submission, call.acc, n)
        except Conflict:
            raise SetError("cannotUnsend", "the email has been sent already") from None
        return {"deliveryStatus": (submissions(call).get(n) or {}).get("deliveryStatus")}
    return None


async def _destroy(call: Call, id_: str) -> None:
    n = ids.parse("S", id_)
    if n is None:
        raise SetError("notFound", f"no submission {id_}")
    try:
        await call.write(sending.destroy_submission, call.acc, n)
    except NotFound:
        raise SetError("notFound", f"no submission {id_}") from None


# --- the implicit Email/set (§7.5 onSuccessUpdateEmail / onSuccessDestroyEmail) -------

def _succeeded(result: dict, before: dict[int, dict], key: str) -> str | None:
    """The emailId of submission KEY ("#cid" or an id) if its create, update
    or destroy in RESULT succeeded; else None."""
    if key.startswith("#"):
        made = (result.get("created") or {}).get(key[1:])
        if made is None:
            return None
        n = ids.parse("S", made["id"])
    else:
        ok = key in (result.get("updated") or {}) or key in (result.get("destroyed") or [])
        n = ids.parse("S", key) if ok else None
    if n is None:
        return None
    rec = before.get(n)
    return rec.get("emailId") if rec is not None else None


async def implicit_email_set(call: Call, update: dict, destroy: list) -> tuple[str, dict]:
    """Email/set with UPDATE and DESTROY through the one Email/set method
    (server/jmap_email_set.py), so the implicit update follows exactly the
    rules and write path a client's Email/set does.  -> (name, args)."""
    from . import jmap_email_set
    args = {"accountId": ids.account_id(call.acc)}
    if update:
        args["update"] = update
    if destroy:
        args["destroy"] = destroy
    sub = Call(call.ctx, "Email/set", args, call.call_id, call.created_ids)
    try:
        return "Email/set", await jmap_email_set.email_set(sub)
    except MethodError as exc:
        return "error", exc.args_json()


@method("EmailSubmission/set", cap.SUBMISSION,
        args=("ifInState", "create", "update", "destroy", "onSuccessUpdateEmail",
              "onSuccessDestroyEmail"))
async def submission_set(call: Call) -> dict:
    on_update = arg(call, "onSuccessUpdateEmail", dict)
    on_destroy = arg(call, "onSuccessDestroyEmail", list)
    if on_update is not None and not all(isinstance(p, dict) for p in on_update.values()):
        raise invalid("'onSuccessUpdateEmail' maps ids to PatchObjects")
    if on_destroy is not None and not all(isinstance(i, str) for i in on_destroy):
        raise invalid("'onSuccessDestroyEmail' is a list of ids")
    await ensure_default(call)
    before = submissions(call) if on_update or on_destroy else {}
    result = await run_set(call, KIND, create=_create, update=_update, destroy=_destroy)
    if on_update or on_destroy:
        # the emails of the submissions this call touched (destroyed ones
        # are known from before it)
        before.update(submissions(call))
        update = {}
        for key, patch in (on_update or {}).items():
            e = _succeeded(result, before, key)
            if e is not None:
                update[e] = patch
        destroy = []
        for key in on_destroy or []:
            e = _succeeded(result, before, key)
            if e is not None and e not in destroy:
                destroy.append(e)
        if update or destroy:
            call.extra.append(await implicit_email_set(call, update, destroy))
    return result
