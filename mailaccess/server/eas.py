"""Exchange ActiveSync over HTTP (MS-ASHTTP): the route provider for
server/http.py.

``OPTIONS`` and ``POST`` on ``/Microsoft-Server-ActiveSync`` (any case).
Every request is authenticated by the HTTP service (Basic through
``ctx.auth.login``, or a Bearer/app-password token) before it gets here.
A POST is parsed by proto/eas/request.py (plain or base64 query form), its
protocol version checked against ``[eas] versions``, its policy key against
the device's provisioning state, its WBXML body decoded with limits, and the
command run by its module (server/eas_provision.py, server/eas_foldersync.py).

Refusals: a malformed request (query, headers) is HTTP 400; an unadvertised
version is HTTP 400 with ``MS-ASProtocolVersions``; a command the server
does not implement is HTTP 501; bad WBXML is status 102 in the command's
response for 14.0+ and HTTP 400 for 12.x; a device without a valid policy
key is HTTP 449 (12.x) or status 142/143/144 (14.0+).  Per-device state
lives in the store (``put_device_state``), keyed by the request's DeviceId.

Devices per account are capped (``[eas] max_devices_per_user``): a DeviceId
the store does not know, from an account at the cap, gets the common status
177 MaximumDevicesReached (MS-ASCMD 2.2.2; HTTP 403 for 12.x, which has no
common status codes) before anything is stored or locked for it; the
operator frees a slot with ``mailaccess eas forget``.
"""
from __future__ import annotations

import json
import logging
import time
import weakref
from dataclasses import dataclass

import trio

from ..proto.eas import request as R
from ..proto.eas.wbxml import Element, E, Limits, WbxmlError, decode, encode
import importlib
from contextlib import asynccontextmanager

from .. import storeio
from ..store import ops
from . import eas_provision, eas_push
from .eas_command import Command
from .http import HttpService, Request, Response, Route, problem

log = logging.getLogger("mailaccess.eas")

PATH = "/microsoft-server-activesync"
WBXML_TYPE = "application/vnd.ms-sync.wbxml"
SERVER_VERSION = "16.1"

# The modules (in mailaccess.server) that implement commands: each has a
# COMMANDS list of eas_command.Command.  A module named here that is missing is
# an error at startup, not a silently smaller command list.
EAS_COMMAND_MODULES = [
    "eas_provision",
    "eas_foldersync",
    "eas_sendmail",
    "eas_settings",
    "eas_misc",
    "eas_folders",
    "eas_moveitems",
    "eas_search",
    "eas_find",
    "eas_sync",
    "eas_estimate",
    "eas_ping",
    "eas_itemops",
    "eas_getattachment",
]


def load_commands() -> dict[str, Command]:
    out: dict[str, Command] = {}
    for name in EAS_COMMAND_MODULES:
        mod = importlib.import_module(f"{__package__}.{name}")
        for c in mod.COMMANDS:
            if c.name in out:
                raise RuntimeError(f"EAS command {c.name} registered twice")
            out[c.name] = c
    return out


HANDLERS: dict[str, Command] = load_commands()

# MS-ASCMD 2.2.2 common status codes
STATUS_INVALID_WBXML = 102
STATUS_REMOTE_WIPE_REQUESTED = 140
STATUS_DEVICE_NOT_PROVISIONED = 142
STATUS_POLICY_REFRESH = 143
STATUS_INVALID_POLICY_KEY = 144
STATUS_MAXIMUM_DEVICES_REACHED = 177     # a new device of an account at its device cap


@dataclass
class EasContext:
    """What a command handler gets: the store, the config, who and which device."""
    store: object
    bus: object
    cfg: object          # EasConfig
    account: int
    username: str
    req: R.EasRequest
    app: object = None                 # the server's AppContext (outbound queue, login, ...)
    http: Request | None = None        # the HTTP request (headers; raw body for MIME commands)
    lock: trio.Lock | None = None      # this device's request lock, held while the command runs

    @asynccontextmanager
    async def released(self):
        """Release the device lock for a long wait (Ping, hanging Sync), so a
        newer request from the same device can run; take it back after."""
        lock = self.lock
        if lock is None:
            yield
            return
        lock.release()
        try:
            yield
        finally:
            with trio.CancelScope(shield=True):
                await lock.acquire()

    @property
    def version(self) -> str:
        return self.req.version

    @property
    def major(self) -> int:
        return R.major(self.req.version)


def status_response(cmd: str, status: int) -> bytes:
    c = HANDLERS[cmd]
    return encode(E(c.root, E(c.status_tag, text=str(status))))


def wbxml_response(body: bytes, status: int = 200) -> Response:
    return Response(status, body, [("content-type", WBXML_TYPE), ("cache-control", "private")])


class Eas:
    def __init__(self, service: HttpService):
        self.svc = service
        self.ctx = service.ctx
        self.cfg = service.ctx.cfg.eas
        self.versions = tuple(self.cfg.versions)
        # one string may take at most half the body (the codec's 16 MB at
        # the default 32 MB body limit), so the string limit is reachable
        # under any configured body limit
        self.limits = Limits(max_size=self.cfg.max_body_bytes, max_depth=32,
                             max_elements=100_000,
                             max_string=min(Limits.max_string, self.cfg.max_body_bytes // 2))
        service.slot_limits["eas"] = self.cfg.max_concurrent_requests
        # one request at a time per (account, device): its state is read, then written
        self._device_locks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def _device_lock(self, account: int, device: str) -> trio.Lock:
        key = (account, device)
        lock = self._device_locks.get(key)
        if lock is None:
            if getattr(self.ctx, "worker", None) is None:
                lock = trio.Lock()
            else:   # several worker processes: the lock holds across them
                from .devicelock import SharedLock, lock_path

                lock = SharedLock(lock_path(self.ctx.cfg.data_dir, account, device))
            self._device_locks[key] = lock
        return lock

    async def _admit(self, account: int, er: R.EasRequest) -> bool:
        """Whether the request's device may go on: one the store knows, or a
        new one while the account has fewer than ``max_devices_per_user``
        devices (it is registered, key ``seen``, in the same write as the
        count: ops.admit_device).  Before the device lock, so a refused device
        leaves nothing behind, neither rows nor a lock file."""
        with self.ctx.store.view() as v:
            if v.device_known(account, er.device_id):
                return True
        seen = json.dumps({"type": er.device_type, "since": int(time.time())},
                          separators=(",", ":")).encode()
        return await storeio.write_small(self.ctx.store, ops.admit_device, account,
                                         er.device_id, self.cfg.max_devices_per_user,
                                         eas_provision.SEEN_KEY, seen)

    def _common_headers(self) -> list[tuple[str, str]]:
        return [("ms-server-activesync", SERVER_VERSION),
                ("ms-asprotocolversions", ",".join(self.versions))]

    async def options(self, req: Request) -> Response:
        r = Response(200, b"", self._common_headers() + [
            ("ms-asprotocolcommands", ",".join(HANDLERS)),
            ("allow", "OPTIONS,POST"), ("public", "OPTIONS,POST"),
            ("cache-control", "private")])
        return r

    def _bad(self, why: str) -> Response:
        r = problem(400, "Bad Request", why)
        r.headers += self._common_headers()
        return r

    async def post(self, req: Request) -> Response:
        try:
            er = R.parse(req.target.partition("?")[2], req.headers)
        except R.BadRequest as exc:
            return self._bad(str(exc))
        try:
            R.check_version(er.version, self.versions)
        except R.BadRequest as exc:
            return self._bad(str(exc))
        handler = HANDLERS.get(er.cmd)
        if handler is None:
            r = problem(501, "Not Implemented", f"{er.cmd} is not implemented")
            r.headers += self._common_headers()
            return r
        if not await self._admit(req.principal.account, er):
            log.info("EAS %s: %s has %d devices, refused new device %s", er.cmd,
                     req.principal.name, self.cfg.max_devices_per_user, er.device_id)
            if R.major(er.version) < 14:
                r = problem(403, "Forbidden", "too many ActiveSync devices for this user: "
                            "remove one on the server (mailaccess eas forget)")
                r.headers += self._common_headers()
                return r
            return self._answer(status_response(er.cmd, STATUS_MAXIMUM_DEVICES_REACHED))
        lock = self._device_lock(req.principal.account, er.device_id)
        async with lock:
            return await self._run(req, er, handler, lock)

    async def _run(self, req: Request, er: R.EasRequest, handler: Command,
                   lock: trio.Lock) -> Response:
        major = R.major(er.version)
        ectx = EasContext(self.ctx.store, self.ctx.bus, self.cfg, req.principal.account,
                          req.principal.name, er, app=self.ctx, http=req, lock=lock)
        if handler.needs_policy:
            bad = eas_provision.policy_status(ectx, self.cfg.require_provisioning)
            if bad:
                if major < 14:
                    r = problem(449, "Retry With", "provision the device first")
                    r.headers += self._common_headers()
                    return r
                return self._answer(status_response(er.cmd, bad))
        body = None
        if req.body and handler.raw_body and not _is_wbxml(req):
            body = None            # the handler reads ctx.http.body (12.x MIME)
        elif req.body:
            try:
                if len(req.body) >= storeio.OFFLOOP_BYTES:
                    # 100,000 elements (the limit) take the decoder 0.09 s
                    body = await storeio.cpu(decode, req.body, self.limits)
                else:
                    body = decode(req.body, self.limits)
            except WbxmlError as exc:
                log.info("EAS %s from %s: bad WBXML: %s", er.cmd, er.device_id, exc)
                if major < 14:
                    return self._bad(f"invalid WBXML: {exc.reason}")
                return self._answer(status_response(er.cmd, STATUS_INVALID_WBXML))
        try:
            out = await handler.run(ectx, body)
        except eas_push.PushBusy as exc:      # too many waiting requests (Ping, hanging Sync)
            r = exc.response()
            r.headers += self._common_headers()
            return r
        if isinstance(out, Response):
            return out
        if handler.big_answer:
            return self._answer(await storeio.cpu(encode, out))
        return self._answer(encode(out))

    def _answer(self, body: bytes) -> Response:
        r = wbxml_response(body)
        r.headers.append(("ms-server-activesync", SERVER_VERSION))
        return r

    def busy(self) -> Response:
        r = problem(503, "Service Unavailable", "too many ActiveSync requests at once")
        r.headers.append(("retry-after", "5"))
        return r


def _is_wbxml(req: Request) -> bool:
    for k, v in req.headers:
        if k.lower() == "content-type":
            return v.split(";")[0].strip().lower() == WBXML_TYPE
    return False


def routes(service: HttpService) -> list[Route]:
    e = Eas(service)
    return [
        Route("OPTIONS", PATH, e.options, nocase=True),
        Route("POST", PATH, e.post, nocase=True, slot="eas", max_body=e.cfg.max_body_bytes,
              busy=e.busy),
    ]


__all__ = ["routes", "EasContext", "Element", "HANDLERS"]
