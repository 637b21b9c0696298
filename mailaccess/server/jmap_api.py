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

import importlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from .. import ids, storeio
from ..proto.jmap import capabilities as cap
from ..proto.jmap import refs
from ..proto.jmap.errors import MethodError, RequestError
from ..proto.jmap.request import Limits, Request
from ..store.errors import StoreFullError


# a request at least this big is read (JSON decoded, its depth and shape
# checked) in the worker pool: 10 MB of "[{},{},...]" takes 2.4 s
OFFLOOP_REQUEST = 64 * 1024
# a response with this many characters of body values is written as JSON in
# the worker pool (30 MB of text: 0.08 s)
OFFLOOP_RESPONSE = 1024 * 1024


async def parse_off_loop(parse, text, limits: Limits):
    """parse(TEXT, LIMITS), in storeio.cpu when TEXT is big."""
    if len(text) < OFFLOOP_REQUEST:
        return parse(text, limits)
    return await storeio.cpu(parse, text, limits)


log = logging.getLogger("mailaccess.jmap")

# The method modules; each registers its methods with @method on import.
# Every JMAP part adds its module here (one line each).
JMAP_METHOD_MODULES = [
    "mailaccess.server.jmap_mailbox",
    "mailaccess.server.jmap_thread",
    "mailaccess.server.jmap_email",
    "mailaccess.server.jmap_email_set",
    "mailaccess.server.jmap_email_query",
    "mailaccess.server.jmap_identity",
    "mailaccess.server.jmap_submission",
    "mailaccess.server.jmap_vacation",
    "mailaccess.server.jmap_blobs",     # Blob/copy
    "mailaccess.server.jmap_push_subscription",
]
_loaded = False


def load_methods() -> None:
    """Import every module of JMAP_METHOD_MODULES once (run_request calls it).
    A listed module that cannot be imported is an error, not a silently
    smaller server."""
    global _loaded
    if _loaded:
        return
    for name in JMAP_METHOD_MODULES:
        importlib.import_module(name)
    _loaded = True


@dataclass
class JmapContext:
    """Who is asking, and the server parts a method may use."""

    store: Any
    bus: Any
    cfg: Any
    acc: int            # the authenticated account
    username: str
    limits: Limits = field(default_factory=Limits)
    # characters of text (body values) the methods put in the response so
    # far: a response with many is written as JSON in the worker pool
    response_bytes: int = 0
    # the request's size: from OFFLOOP_REQUEST, the objects it creates are
    # also made in the worker pool (Email/set: 10 MB of addresses and header
    # text took 0.6 s to check and write out)
    request_bytes: int = 0


@dataclass
class Call:
    ctx: JmapContext
    name: str
    args: dict[str, Any]
    call_id: str
    created_ids: dict[str, str]      # creation id -> real id, for the whole request
    extra: list[tuple[str, dict]] = field(default_factory=list)
    # run_set: creation ids of this /set not created yet, and whether this is
    # the last pass (a create may raise jmap_standard.Deferred until then)
    pending_creates: set[str] = field(default_factory=set)
    set_last_pass: bool = False

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


@dataclass(frozen=True)
class MethodEntry:
    capability: str             # must be in the request's `using`
    fn: Method
    account: bool               # takes accountId (checked by the dispatcher)
    args: frozenset[str] | None  # the arguments it knows; None: not checked


METHODS: dict[str, MethodEntry] = {}


def method(name: str, capability: str = cap.CORE, *, account: bool = True,
           args: Iterable[str] | None = None):
    """Register ``async def fn(call) -> dict`` as method NAME.  With ARGS,
    any other argument is invalidArguments (RFC 8620 §3.6.2: unknown
    arguments are refused); accountId is always allowed when ACCOUNT."""
    known = None
    if args is not None:
        known = frozenset(args) | ({"accountId"} if account else frozenset())

    def deco(fn: Method) -> Method:
        METHODS[name] = MethodEntry(capability, fn, account, known)
        return fn
    return deco


@method("Core/echo", account=False)
async def core_echo(call: Call) -> dict:
    return call.args


def check_account(call: Call, key: str = "accountId") -> None:
    """Another user's (or no such) accountId is accountNotFound, never data;
    a missing or non-string one is invalidArguments."""
    given = call.args.get(key)
    if not isinstance(given, str):
        raise MethodError("invalidArguments", f"'{key}' must be an account id")
    if given != ids.account_id(call.acc):
        raise MethodError("accountNotFound")
    if call.ctx.store.readonly and call.name.endswith(WRITING_VERBS):
        raise MethodError("accountReadOnly", "the store is open read-only")


# methods of these verbs change the account (accountReadOnly on a read-only store)
WRITING_VERBS = ("/set", "/copy", "/import")


def account_capabilities(ctx: JmapContext) -> set[str]:
    """The capabilities the authenticated account supports (its
    ``accountCapabilities`` in the Session): today every account has all
    the data capabilities the server knows."""
    return set(KNOWN_CAPABILITIES) - {cap.CORE, cap.WEBSOCKET}


async def _run_one(ctx: JmapContext, call: Call, using: set[str]) -> dict:
    entry = METHODS.get(call.name)
    if entry is None:
        raise MethodError("unknownMethod", f"no method {call.name}")
    if entry.capability not in using:
        raise MethodError("unknownMethod",
                          f"{call.name} needs {entry.capability} in 'using'")
    if entry.args is not None:
        extra = sorted(k for k in call.args if k not in entry.args)
        if extra:
            raise MethodError("invalidArguments",
                              f"unknown arguments: {', '.join(extra)}")
    if entry.account:
        check_account(call)
        if entry.capability != cap.CORE and entry.capability not in account_capabilities(ctx):
            raise MethodError("accountNotSupportedByMethod")
    return await entry.fn(call)


async def run_request(ctx: JmapContext, req: Request, session_state: str = "") -> dict:
    """Run every method call in order; per-call errors become error responses.

    Request-level: unknownCapability (RequestError, 400).  Per call: result
    references resolved first (invalidResultReference / invalidArguments),
    then unknownMethod, invalidArguments, accountNotFound,
    accountNotSupportedByMethod, accountReadOnly, the method's own errors;
    a store that is full is serverUnavailable, anything unexpected
    serverFail (the method reports serverPartialFail itself when some of
    its writes were made)."""
    load_methods()
    unknown = [u for u in req.using if u not in KNOWN_CAPABILITIES]
    if unknown:
        raise RequestError("unknownCapability", 400,
                           f"the server does not support {', '.join(unknown)}")
    using = set(req.using)
    created = dict(req.created_ids or {})
    responses: list[list] = []
    for inv in req.method_calls:
        call = Call(ctx, inv.name, inv.args, inv.call_id, created)
        try:
            if ctx.request_bytes >= OFFLOOP_REQUEST and \
                    any(isinstance(k, str) and k.startswith("#") for k in inv.args):
                # a big request's references may name millions of values
                call.args = await storeio.cpu(refs.resolve_args, inv.args, responses)
            else:
                call.args = refs.resolve_args(inv.args, responses)
            result = await _run_one(ctx, call, using)
            responses.append([inv.name, result, inv.call_id])
            for name, args in call.extra:
                responses.append([name, args, inv.call_id])
        except MethodError as exc:
            responses.append(["error", exc.args_json(), inv.call_id])
        except StoreFullError:
            log.warning("JMAP method %s: the store is full", inv.name)
            responses.append(["error", {"type": "serverUnavailable",
                                        "description": "the mail store is full"},
                              inv.call_id])
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
KNOWN_CAPABILITIES = {cap.CORE, cap.MAIL, cap.SUBMISSION, cap.VACATION}
