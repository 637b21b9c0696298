"""JMAP method dispatch (RFC 8620 §3): a parsed Request in, the Response
object out.  The session layer of JMAP; the HTTP and WebSocket endpoints call
``run_request``; method modules (server/jmap_*.py) register with ``@method``.

A method is ``async def fn(call: Call) -> dict`` returning its response
arguments, or raising ``MethodError``.  It reads through ``call.view()`` (a
store snapshot) and writes through ``await call.write(fn, *args)`` (one durable
store transaction).  Extra responses a method produces (the implicit
``Email/set`` of ``Email/copy``'s ``onSuccessDestroyOriginal``, ...) go to
``call.extra`` as ``(name, args)`` and are sent after its own, with its callId.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .. import ids, storeio
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError, RequestError
from ..proto.jmap.request import Limits, Request

log = logging.getLogger("mailaccess.jmap")


@dataclass
class JmapContext:
    """Who is asking, and the server parts a method may use."""

    store: Any
    bus: Any
    cfg: Any
    acc: int            # the authenticated account
    username: str
    limits: Limits = field(default_factory=Limits)


@dataclass
class Call:
    ctx: JmapContext
    name: str
    args: dict[str, Any]
    call_id: str
    created_ids: dict[str, str]      # creation id -> real id, for the whole request
    extra: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def acc(self) -> int:
        return self.ctx.acc

    @contextmanager
    def view(self):
        with self.ctx.store.view() as v:
            yield v

    async def write(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        return await storeio.write(self.ctx.store, fn, *args, **kwargs)

    def resolve_id(self, s: str) -> str | None:
        """An id argument that may be a creation reference ``#k`` (§5.3)."""
        if isinstance(s, str) and s.startswith("#"):
            return self.created_ids.get(s[1:])
        return s


Method = Callable[[Call], Awaitable[dict]]
# name -> (capability it needs in `using`, function, takes accountId)
METHODS: dict[str, tuple[str, Method, bool]] = {}


def method(name: str, capability: str = cap.CORE, *, account: bool = True):
    def deco(fn: Method) -> Method:
        METHODS[name] = (capability, fn, account)
        return fn
    return deco


@method("Core/echo", account=False)
async def core_echo(call: Call) -> dict:
    return call.args


def check_account(call: Call, key: str = "accountId") -> None:
    """Another user's (or no such) accountId is accountNotFound, never data."""
    if call.args.get(key) != ids.account_id(call.acc):
        raise MethodError("accountNotFound")


async def run_request(ctx: JmapContext, req: Request, session_state: str = "") -> dict:
    """Run every method call in order; per-call errors become error responses."""
    unknown = [u for u in req.using if u not in KNOWN_CAPABILITIES]
    if unknown:
        raise RequestError("unknownCapability", 400,
                           f"the server does not support {', '.join(unknown)}")
    created = dict(req.created_ids or {})
    responses: list[list] = []
    for inv in req.method_calls:
        call = Call(ctx, inv.name, inv.args, inv.call_id, created)
        try:
            entry = METHODS.get(inv.name)
            if entry is None:
                raise MethodError("unknownMethod", f"no method {inv.name}")
            capability, fn, takes_account = entry
            if capability not in req.using:
                raise MethodError("unknownMethod",
                                  f"{inv.name} needs {capability} in 'using'")
            if takes_account:
                check_account(call)
            result = await fn(call)
            responses.append([inv.name, result, inv.call_id])
            for name, args in call.extra:
                responses.append([name, args, inv.call_id])
        except MethodError as exc:
            responses.append(["error", exc.args_json(), inv.call_id])
        except Exception:
            log.exception("JMAP method %s failed", inv.name)
            responses.append(["error", {"type": "serverFail",
                                        "description": "internal error"}, inv.call_id])
    out: dict[str, Any] = {"methodResponses": responses, "sessionState": session_state}
    if req.created_ids is not None:
        out["createdIds"] = created
    return out


# capabilities a request may name in `using`; the Session resource lists the
# ones that are complete (server/jmap_session.py)
KNOWN_CAPABILITIES = {cap.CORE, cap.MAIL}

# method modules: each registers its methods with @method on import; the HTTP
# endpoint (server/jmap.py load_methods) imports them all.  One line each.
JMAP_METHOD_MODULES = [
    "mailaccess.server.jmap_blobs",     # Blob/copy (j-http)
]
