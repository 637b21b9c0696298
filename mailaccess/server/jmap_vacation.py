"""JMAP VacationResponse (RFC 8621 §8): the singleton ("singleton")
VacationResponse/get and /set.

Stored per account (store/sending.py, kind "VacationResponse"); LMTP
delivery honours it (server/autoreply.py, the RFC 3834 rules in
mailaccess/outbound/autoreply.py).  Create and destroy are ``singleton``
SetErrors; the one object always exists (disabled until set).
"""
from __future__ import annotations

from ..proto.jmap import capabilities as cap
from ..store import sending
from .jmap_api import Call, method
from .jmap_standard import SetError, get_ids, get_properties, get_response, run_set
from .jmap_submission import parse_utc

KIND = sending.VACATION
SINGLETON = "singleton"
PROPERTIES = ("id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
MAX_TEXT = 256 * 1024
DEFAULT = {"isEnabled": False, "fromDate": None, "toDate": None, "subject": None,
           "textBody": None, "htmlBody": None}


def current(call: Call) -> dict:
    with call.view() as v:
        rec = v.vacation(call.acc)
    out = dict(DEFAULT)
    out.update(rec or {})
    return out


@method("VacationResponse/get", cap.VACATION, args=("ids", "properties"))
async def vacation_get(call: Call) -> dict:
    want = get_ids(call, lambda: [SINGLETON])
    props = get_properties(call, PROPERTIES, PROPERTIES)
    rec = current(call)
    rec["id"] = SINGLETON
    found = [{p: rec[p] for p in props}] if SINGLETON in want else []
    return get_response(call, KIND, found, [i for i in want if i != SINGLETON])


def _check(prop: str, v):
    if prop == "isEnabled":
        if not isinstance(v, bool):
            raise SetError("invalidProperties", "isEnabled is a boolean", properties=[prop])
    elif prop in ("fromDate", "toDate"):
        if v is not None and parse_utc(v) is None:
            raise SetError("invalidProperties", f"{prop} is a UTCDate or null",
                           properties=[prop])
    elif prop in ("subject", "textBody", "htmlBody"):
        if v is not None and (not isinstance(v, str) or len(v.encode("utf-8", "replace")) > MAX_TEXT):
            raise SetError("invalidProperties", f"{prop} is a string or null",
                           properties=[prop])
        if prop == "subject" and isinstance(v, str) and any(c in v for c in "\r\n"):
            raise SetError("invalidProperties", "a subject is one line", properties=[prop])


async def _create(call: Call, cid: str, obj: dict) -> dict:
    raise SetError("singleton", "the VacationResponse always exists; update it")


async def _destroy(call: Call, id_: str) -> None:
    raise SetError("singleton", "the VacationResponse cannot be destroyed")


async def _update(call: Call, id_: str, patch: dict) -> dict | None:
    if id_ != SINGLETON:
        raise SetError("notFound", "the only VacationResponse is \"singleton\"")
    rec = current(call)
    for p, v in patch.items():
        if p == "id":
            if v != SINGLETON:
                raise SetError("invalidProperties", "id cannot change", properties=["id"])
            continue
        if p not in PROPERTIES:
            raise SetError("invalidProperties", "unknown property", properties=[p])
        _check(p, v)
        rec[p] = v
    await call.write(sending.set_vacation, call.acc, rec)
    return None


@method("VacationResponse/set", cap.VACATION,
        args=("ifInState", "create", "update", "destroy"))
async def vacation_set(call: Call) -> dict:
    return await run_set(call, KIND, create=_create, update=_update, destroy=_destroy)

