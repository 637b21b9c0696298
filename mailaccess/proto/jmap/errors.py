"""JMAP errors: request-level problems (RFC 8620 §3.6.1, RFC 7807 problem
details) and method-level errors (§3.6.2), plus SetError objects (§5.3)."""
from __future__ import annotations

import json
from typing import Any

PREFIX = "urn:ietf:params:jmap:error:"


class RequestError(Exception):
    """The whole request is refused: an HTTP status and a problem JSON."""

    def __init__(self, type: str, status: int = 400, detail: str = "", *,
                 limit: str | None = None):
        super().__init__(detail or type)
        self.type = type if ":" in type else PREFIX + type
        self.status = status
        self.detail = detail
        self.limit = limit

    def problem(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        if self.limit is not None:
            out["limit"] = self.limit
        return out

    def body(self) -> bytes:
        return json.dumps(self.problem()).encode()


class MethodError(Exception):
    """One method call failed: answered as ``["error", {...}, callId]``."""

    def __init__(self, type: str, description: str | None = None, **extra: Any):
        super().__init__(description or type)
        self.type = type
        self.description = description
        self.extra = extra

    def args_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.description:
            out["description"] = self.description
        out.update(self.extra)
        return out


def set_error(type: str, description: str | None = None, **extra: Any) -> dict[str, Any]:
    """A SetError object (RFC 8620 §5.3) for notCreated/notUpdated/notDestroyed."""
    out: dict[str, Any] = {"type": type}
    if description:
        out["description"] = description
    out.update(extra)
    return out
