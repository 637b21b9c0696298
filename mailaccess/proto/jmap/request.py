"""The Request object (RFC 8620 §3.3): bytes in, a typed Request out.

``parse_request(body, limits)`` checks the JSON and the shape and raises
``RequestError`` (notJSON, notRequest, limit) otherwise.  ``loads`` reads
the JSON of a request (HTTP or WebSocket) with its nesting bounded by
MAX_DEPTH on every Python release.  Result references
(§3.7) are resolved by ``refs.resolve`` while the request runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestError


#: JSON arrays and objects nested in one another, at most (RFC 8259 §9 lets
#: a parser limit it).  Far above any request we answer (bodyStructure and
#: filters nest 16 deep), far below where json.loads itself gives up: a
#: RecursionError, at a depth that depends on the Python release (about
#: 1000 on 3.11, 1500 on 3.12) and on the stack it runs on.
MAX_DEPTH = 256


def _too_deep(obj: Any) -> bool:
    """Whether OBJ (parsed JSON) nests deeper than MAX_DEPTH.  Iterative,
    one visit per non-empty array or object."""
    if obj and isinstance(obj, (dict, list)):
        stack = [(obj, 1)]
    else:
        return False
    while stack:
        o, d = stack.pop()
        for v in (o.values() if isinstance(o, dict) else o):
            if isinstance(v, (dict, list)):
                if d >= MAX_DEPTH:
                    return True
                if v:
                    stack.append((v, d + 1))
    return False


def loads(text: str | bytes) -> Any:
    """json.loads(TEXT), refusing (RequestError notJSON) what is not JSON or
    nests deeper than MAX_DEPTH, the same way on every Python release."""
    deep = RequestError("notJSON", 400,
                        f"the body is not JSON nested at most {MAX_DEPTH} deep")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("notJSON", 400, f"the body is not JSON: {exc}") from None
    brackets = (b"[", b"{") if isinstance(text, (bytes, bytearray)) else ("[", "{")
    if (isinstance(obj, (dict, list))
            and text.count(brackets[0]) + text.count(brackets[1]) >= MAX_DEPTH
            and _too_deep(obj)):
        raise deep
    return obj


@dataclass(frozen=True)
class Limits:
    max_size_request: int = 10_000_000
    max_calls_in_request: int = 64
    max_objects_in_get: int = 1000
    max_objects_in_set: int = 1000
    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    max_concurrent_requests: int = 8


@dataclass(frozen=True)
class Invocation:
    name: str
    args: dict[str, Any]
    call_id: str


@dataclass(frozen=True)
class Request:
    using: list[str]
    method_calls: list[Invocation]
    created_ids: dict[str, str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_request(body: bytes, limits: Limits = Limits()) -> Request:
    if len(body) > limits.max_size_request:
        raise RequestError("limit", 400, "the request is larger than maxSizeRequest",
                           limit="maxSizeRequest")
    obj = loads(body)
    if not isinstance(obj, dict):
        raise RequestError("notRequest", 400, "the body is not a JSON object")
    using = obj.get("using")
    calls = obj.get("methodCalls")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        raise RequestError("notRequest", 400, "'using' must be a list of strings")
    if not isinstance(calls, list):
        raise RequestError("notRequest", 400, "'methodCalls' must be a list")
    if len(calls) > limits.max_calls_in_request:
        raise RequestError("limit", 400, "too many method calls", limit="maxCallsInRequest")
    out = []
    for c in calls:
        if (not isinstance(c, list) or len(c) != 3 or not isinstance(c[0], str)
                or not isinstance(c[1], dict) or not isinstance(c[2], str)):
            raise RequestError("notRequest", 400,
                               "each method call must be [name, arguments, callId]")
        out.append(Invocation(c[0], c[1], c[2]))
    created = obj.get("createdIds")
    if created is not None and (not isinstance(created, dict)
                                or not all(isinstance(v, str) for v in created.values())):
        raise RequestError("notRequest", 400, "'createdIds' must map ids to ids")
    return Request(using, out, created, obj)
