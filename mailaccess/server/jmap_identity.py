"""JMAP Identity (RFC 8621 §6): Identity/get, /changes, /set.

An identity is an address the user sends as, with a name, Reply-To/Bcc
defaults and signatures.  Its ``email`` must be an address the account
receives (mailaccess/outbound/addresses.py), else forbiddenFrom.  Every
account has a default identity for its own address, made on first use and
not deletable (mayDelete false).  Stored in the store (store/sending.py),
change-logged under "Identity".
"""
from __future__ import annotations

from .. import ids
from ..config import Config
from ..outbound import addresses
from ..proto.jmap import capabilities as cap
from ..store import sending
from ..store.errors import Conflict
from .jmap_api import Call, method
from .jmap_standard import SetError, changes_response, check_patch_size, get_records, run_set

KIND = sending.IDENTITY
PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature",
              "mayDelete")
MUTABLE = ("name", "replyTo", "bcc", "textSignature", "htmlSignature")
MAX_TEXT = 64 * 1024        # bytes of a name or signature
MAX_ADDRESSES = 100         # in replyTo / bcc


def config(call: Call) -> Config:
    return call.ctx.cfg if call.ctx.cfg is not None else Config()


def account_name(call: Call) -> str:
    with call.view() as v:
        a = v.account(call.acc)
    return a.name if a is not None else call.ctx.username


def own_addresses(call: Call) -> set[str]:
    cfg = config(call)
    return addresses.own_addresses(account_name(call), cfg.lmtp.local_domains, cfg.hostname)


def default_identity(call: Call) -> dict:
    cfg = config(call)
    name = account_name(call)
    return {"name": "", "email": addresses.default_address(name, cfg.lmtp.local_domains,
                                                          cfg.hostname),
            "replyTo": None, "bcc": None, "textSignature": "", "htmlSignature": "",
            "mayDelete": False}


async def ensure_default(call: Call) -> None:
    """Make the account's default identity if it has none (first use)."""
    with call.view() as v:
        if v.identities(call.acc):
            return
    if call.ctx.store.readonly:
        return
    await call.write(sending.ensure_identity, call.acc, default_identity(call))


def identities(call: Call) -> dict[int, dict]:
    with call.view() as v:
        return v.identities(call.acc)


def to_json(iid: int, rec: dict, props) -> dict:
    full = {"id": ids.identity_id(iid), "name": rec.get("name", ""),
            "email": rec.get("email", ""), "replyTo": rec.get("replyTo"),
            "bcc": rec.get("bcc"), "textSignature": rec.get("textSignature", ""),
            "htmlSignature": rec.get("htmlSignature", ""),
            "mayDelete": rec.get("mayDelete", True)}
    return {p: full[p] for p in props}


@method("Identity/get", cap.SUBMISSION, args=("ids", "properties"))
async def identity_get(call: Call) -> dict:
    await ensure_default(call)
    return get_records(call, KIND, identities(call), "I", ids.identity_id, to_json,
                       PROPERTIES, PROPERTIES)


@method("Identity/changes", cap.SUBMISSION, args=("sinceState", "maxChanges"))
async def identity_changes(call: Call) -> dict:
    return changes_response(call, KIND, ids.identity_id)


# --- /set -----------------------------------------------------------------------------

def _bad(prop: str, why: str) -> SetError:
    return SetError("invalidProperties", why, properties=[prop])


def _text(obj: dict, prop: str) -> str:
    v = obj[prop]
    if not isinstance(v, str) or len(v.encode("utf-8", "surrogatepass")) > MAX_TEXT:
        raise _bad(prop, f"{prop} is a string of at most {MAX_TEXT} bytes")
    return v


def _email_addresses(obj: dict, prop: str) -> list[dict] | None:
    v = obj[prop]
    if v is None:
        return None
    if not isinstance(v, list) or len(v) > MAX_ADDRESSES:
        raise _bad(prop, f"{prop} is null or a list of at most {MAX_ADDRESSES} EmailAddress")
    out = []
    for a in v:
        if not isinstance(a, dict) or set(a) - {"name", "email"} or \
                not isinstance(a.get("email"), str) or \
                not addresses.valid_address(a["email"]) or \
                not isinstance(a.get("name"), (str, type(None))):
            raise _bad(prop, f"{prop}: each is {{name, email}} with a valid email")
        out.append({"name": a.get("name"), "email": a["email"]})
    return out


def _fields(obj: dict, props) -> dict:
    out = {}
    for p in props:
        if p not in obj:
            continue
        if p in ("replyTo", "bcc"):
            out[p] = _email_addresses(obj, p)
        else:
            if obj[p] is None:
                out[p] = ""
                continue
            out[p] = _text(obj, p)
    return out


async def _create(call: Call, cid: str, obj: dict) -> dict:
    unknown = [p for p in obj if p not in PROPERTIES]
    if unknown:
        raise SetError("invalidProperties", "unknown properties", properties=unknown)
    if "id" in obj:
        raise _bad("id", "id is set by the server")
    if "mayDelete" in obj and obj["mayDelete"] is not True:
        raise _bad("mayDelete", "mayDelete is set by the server")
    email = obj.get("email")
    if not isinstance(email, str) or not addresses.valid_address(email):
        raise _bad("email", "email is a valid address")
    if not addresses.may_send_from(email, own_addresses(call)):
        raise SetError("forbiddenFrom", f"this account may not send as {email}")
    rec = {"name": "", "email": email, "replyTo": None, "bcc": None, "textSignature": "",
           "htmlSignature": "", "mayDelete": True}
    rec.update(_fields(obj, MUTABLE))
    iid = await call.write(sending.create_identity, call.acc, rec)
    return {"id": ids.identity_id(iid), "mayDelete": True}


async def _update(call: Call, id_: str, patch: dict) -> dict | None:
    n = ids.parse("I", id_)
    recs = identities(call)
    if n is None or n not in recs:
        raise SetError("notFound", f"no identity {id_}")
    check_patch_size(patch)
    cur = recs[n]
    for p, v in patch.items():
        if "/" in p and p.split("/")[0] in ("replyTo", "bcc"):
            raise SetError("invalidPatch", "replyTo and bcc are replaced whole")
        if p not in PROPERTIES:
            raise SetError("invalidProperties", "unknown property", properties=[p])
        if p not in MUTABLE:
            old = to_json(n, cur, [p])[p]
            if v != old:
                raise _bad(p, f"{p} cannot be changed")
    changes = _fields(patch, [p for p in MUTABLE if p in patch])
    if changes:
        await call.write(sending.update_identity, call.acc, n, changes)
    return None


async def _destroy(call: Call, id_: str) -> None:
    n = ids.parse("I", id_)
    recs = identities(call)
    if n is None or n not in recs:
        raise SetError("notFound", f"no identity {id_}")
    if not recs[n].get("mayDelete", True):
        raise SetError("forbidden", "the account's own identity cannot be deleted")
    try:
        await call.write(sending.destroy_identity, call.acc, n)
    except Conflict as exc:
        raise SetError("forbidden", str(exc)) from None


@method("Identity/set", cap.SUBMISSION,
        args=("ifInState", "create", "update", "destroy"))
async def identity_set(call: Call) -> dict:
    await ensure_default(call)
    return await run_set(call, KIND, create=_create, update=_update, destroy=_destroy)
