"""JMAP over WebSocket (RFC 8887): message shapes, sans-IO.

``parse_message(data, limits)`` turns one client message into a
``WsRequest`` (a Request with its optional ``id``), ``PushEnable`` or
``PushDisable``, or raises ``WsError`` (a RequestError and the request id,
if one could be read).  ``response``, ``request_error`` and
``state_change`` build the server's messages as text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import RequestError
from .request import Limits, Request, loads, parse_request

SUBPROTOCOL = "jmap"


@dataclass(frozen=True)
class WsRequest:
    id: str | None
    request: Request


@dataclass(frozen=True)
class PushEnable:
    data_types: list[str] | None    # None: every type
    push_state: str | None


@dataclass(frozen=True)
class PushDisable:
    pass


class WsError(Exception):
    def __init__(self, error: RequestError, request_id: str | None = None):
        super().__init__(str(error))
        self.error = error
        self.request_id = request_id


def parse_message(data: str | bytes, limits: Limits = Limits()) -> WsRequest | PushEnable | PushDisable:
    if isinstance(data, bytes):
        raise WsError(RequestError("notJSON", 400, "JMAP messages are text frames"))
    raw = data.encode("utf-8", "surrogatepass")
    if len(raw) > limits.max_size_request:
        raise WsError(RequestError("limit", 400, "the request is larger than maxSizeRequest",
                                   limit="maxSizeRequest"))
    try:
        obj = loads(data)
    except RequestError as exc:
        raise WsError(exc) from None
    if not isinstance(obj, dict):
        raise WsError(RequestError("notRequest", 400, "a message is a JSON object"))
    rid = obj.get("id")
    if rid is not None and not isinstance(rid, str):
        raise WsError(RequestError("notRequest", 400, "'id' must be a string"))
    kind = obj.get("@type")
    if kind == "Request":
        try:
            return WsRequest(rid, parse_request(raw, limits))
        except RequestError as exc:
            raise WsError(exc, rid) from None
    if kind == "WebSocketPushEnable":
        types = obj.get("dataTypes")
        state = obj.get("pushState")
        if types is not None and (not isinstance(types, list)
                                  or not all(isinstance(t, str) for t in types)):
            raise WsError(RequestError("notRequest", 400, "dataTypes: a list of type names"))
        if state is not None and not isinstance(state, str):
            raise WsError(RequestError("notRequest", 400, "pushState: a string"))
        return PushEnable(types, state)
    if kind == "WebSocketPushDisable":
        return PushDisable()
    raise WsError(RequestError("notRequest", 400, f"unknown @type {kind!r}"), rid)


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def response(request_id: str | None, resp: dict[str, Any]) -> str:
    """A Response message (RFC 8887 §4.3.3) for the Response object RESP."""
    out: dict[str, Any] = {"@type": "Response"}
    if request_id is not None:
        out["requestId"] = request_id
    out.update(resp)
    return _dump(out)


def request_error(error: RequestError, request_id: str | None = None) -> str:
    """A RequestError message (RFC 8887 §4.3.4)."""
    out: dict[str, Any] = {"@type": "RequestError"}
    if request_id is not None:
        out["requestId"] = request_id
    out.update(error.problem())
    return _dump(out)


def state_change(changed: dict[str, dict[str, str]], push_state: str | None = None) -> str:
    """A StateChange message (RFC 8620 §7.1, RFC 8887 §4.3.5)."""
    out: dict[str, Any] = {"@type": "StateChange", "changed": changed}
    if push_state is not None:
        out["pushState"] = push_state
    return _dump(out)
