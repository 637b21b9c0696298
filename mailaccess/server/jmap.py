"""JMAP over HTTP (RFC 8620): the endpoints the HTTP service routes to.

``routes(service)`` gives server/http.py its JMAP routes:

* ``GET /.well-known/jmap`` -> redirect to the Session resource;
* ``GET /jmap/session`` -> the Session resource (server/jmap_session.py);
* ``POST /jmap/api/`` -> ``parse_request`` + ``run_request``
  (server/jmap_api.py); request-level errors as problem JSON;
* ``POST /jmap/upload/{accountId}/`` and ``GET
  /jmap/download/{accountId}/{blobId}/{name}?accept=`` (§6,
  server/jmap_blobs.py);
* ``GET /jmap/eventsource/?types=&closeafter=&ping=`` (§7.3) and the
  WebSocket at ``/jmap/ws/`` (RFC 8887, server/jmap_ws.py).

``background(service)`` sweeps expired uploads and prunes old email
submissions (``[jmap] submission_retention_days``).
"""
from __future__ import annotations

import json
import logging
import re
import urllib.parse

import trio

from .. import ids, storeio
from ..proto.jmap.errors import RequestError
from ..proto.jmap.request import Limits, parse_request
from ..store import OverQuota
from ..store import sending
from . import jmap_api, jmap_push
from . import jmap_blobs as blobs
from . import jmap_session as S
from .http import (HttpService, Request, Response, Route, Stream, Upgrade, media_type,
                   offered_subprotocols, problem, websocket_request_problem)

log = logging.getLogger("mailaccess.jmap")

UPLOAD_SWEEP_INTERVAL = 600
MAX_PING = 600

_MEDIA = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                    r"(?:\s*;\s*[A-Za-z0-9_.-]+=(?:[A-Za-z0-9_.+-]+|\"[^\"\\\r\n]*\"))*")


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def request_error(exc: RequestError) -> Response:
    return Response.json(exc.status, exc.body(), "application/problem+json")


class Jmap:
    """The JMAP endpoints over one HttpService."""

    def __init__(self, service: HttpService):
        self.svc = service
        self.ctx = service.ctx
        self.limits: Limits = self.ctx.cfg.jmap.limits()
        service.slot_limits.update({
            "api": self.limits.max_concurrent_requests,
            "download": self.limits.max_concurrent_requests,
            "upload": self.limits.max_concurrent_upload,
        })

    # --- the Session resource -----------------------------------------------------------

    def _session(self, req: Request) -> dict:
        p = req.principal
        return S.session_resource(account=p.account, username=p.name, limits=self.limits,
                                  base=self.svc.base_url(req), methods=jmap_api.METHODS)

    async def session(self, req: Request) -> Response:
        return Response.json(200, json.dumps(self._session(req)).encode())

    async def well_known(self, req: Request) -> Response:
        return Response(307, b"", [("location", self.svc.base_url(req) + "/jmap/session"),
                                   ("cache-control", "no-store")])

    # --- the API endpoint ---------------------------------------------------------------

    def context(self, req: Request) -> jmap_api.JmapContext:
        p = req.principal
        return jmap_api.JmapContext(self.ctx.store, self.ctx.bus, self.ctx.cfg, p.account,
                                    p.name, self.limits)

    def session_state(self, account: int, username: str) -> str:
        return S.session_state(account=account, username=username, limits=self.limits,
                               methods=jmap_api.METHODS)

    async def api(self, req: Request) -> Response:
        if media_type(req.header("content-type")) != "application/json":
            return request_error(RequestError(
                "notJSON", 400, "the request's Content-Type must be application/json"))
        try:
            jreq = await jmap_api.parse_off_loop(parse_request, req.body, self.limits)
            ctx = self.context(req)
            ctx.request_bytes = len(req.body)
            out = await jmap_api.run_request(
                ctx, jreq, self.session_state(req.principal.account, req.principal.name))
        except RequestError as exc:
            return request_error(exc)
        if ctx.response_bytes >= jmap_api.OFFLOOP_RESPONSE:
            return Response.json(200, await storeio.cpu(_json_bytes, out))
        return Response.json(200, _json_bytes(out))

    def too_large(self) -> Response:
        return request_error(RequestError("limit", 413, "the request is larger than "
                                          "maxSizeRequest", limit="maxSizeRequest"))

    def too_many(self) -> Response:
        r = request_error(RequestError("limit", 429, "too many concurrent requests",
                                       limit="maxConcurrentRequests"))
        r.headers.append(("retry-after", "1"))
        return r

    # --- upload and download (RFC 8620 §6) ----------------------------------------------

    def _own_account(self, req: Request, acc_id: str) -> bool:
        return acc_id == ids.account_id(req.principal.account)

    async def upload(self, req: Request) -> Response:
        acc_id = req.match.rstrip("/")
        if "/" in acc_id or not self._own_account(req, acc_id):
            return problem(404, "Not Found", "no such account")
        ctype = (req.header("content-type") or "application/octet-stream").strip()
        if not _MEDIA.fullmatch(ctype) or len(ctype) > 255:
            ctype = "application/octet-stream"
        jcfg = self.ctx.cfg.jmap
        try:
            up = await blobs.store_upload(self.ctx.store, req.principal.account, req.body,
                                          ctype, jcfg.upload_ttl, jcfg.max_pending_upload_bytes)
        except OverQuota:
            return problem(413, "Content Too Large",
                           f"this account's pending uploads would exceed "
                           f"{jcfg.max_pending_upload_bytes} bytes; they expire after "
                           f"{jcfg.upload_ttl} seconds")
        return Response.json(201, json.dumps({"accountId": acc_id, **up}).encode())

    def upload_too_large(self) -> Response:
        return request_error(RequestError("limit", 413, "the upload is larger than "
                                          "maxSizeUpload", limit="maxSizeUpload"))

    def too_many_uploads(self) -> Response:
        r = request_error(RequestError("limit", 429, "too many concurrent uploads",
                                       limit="maxConcurrentUpload"))
        r.headers.append(("retry-after", "1"))
        return r

    async def download(self, req: Request) -> Response:
        parts = req.match.split("/", 2)
        if len(parts) != 3 or not parts[2]:
            return problem(404, "Not Found", "expected {accountId}/{blobId}/{name}")
        acc_id, blob_id, name = parts
        if not self._own_account(req, acc_id):
            return problem(404, "Not Found", "no such blob")
        got = await storeio.read(self.ctx.store, blobs.read_blob_typed,
                                 req.principal.account, blob_id)
        if got is None:
            return problem(404, "Not Found", "no such blob")
        data, _type = got
        accept = (req.query.get("accept") or "").strip()
        ctype = accept if accept and _MEDIA.fullmatch(accept) else "application/octet-stream"
        disposition = "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
        return Response(200, data, [("content-type", ctype),
                                    ("content-disposition", disposition),
                                    ("x-content-type-options", "nosniff"),
                                    ("cache-control", "private, immutable, max-age=31536000")])

    # --- EventSource (RFC 8620 §7.3) ----------------------------------------------------

    async def eventsource(self, req: Request) -> Response | Stream:
        q = req.query
        types = jmap_push.parse_types(q.get("types"))
        closeafter = q.get("closeafter", "no") or "no"
        if closeafter not in ("state", "no"):
            return problem(400, "Bad Request", "closeafter is 'state' or 'no'")
        ping_s = q.get("ping", "0") or "0"
        if not ping_s.isdigit() or len(ping_s) > 6:
            return problem(400, "Bad Request", "ping is a non-negative integer")
        ping = min(int(ping_s), MAX_PING)
        if ping:
            ping = max(ping, 1)
        acc = req.principal.account
        last_id = jmap_push.parse_push_state(req.header("last-event-id"))
        store, bus = self.ctx.store, self.ctx.bus

        async def run(write):
            seen = bus.latest(acc)
            changed, push_state = jmap_push.current(store, acc, types)
            sent: dict = {}
            if closeafter == "no" or (last_id is not None and int(push_state) > last_id):
                await write(_event("state", jmap_push.unsent(changed, sent), push_state))
                if closeafter == "state":
                    return
            else:
                jmap_push.unsent(changed, sent)     # the client has these states
            with bus.subscribe(acc, kinds=types, since=seen) as sub:
                while True:
                    with trio.move_on_after(ping if ping else float("inf")) as scope:
                        n = await sub.wait()
                    if scope.cancelled_caught:
                        await write(b"event: ping\ndata: "
                                    + json.dumps({"interval": ping}).encode() + b"\n\n")
                        continue
                    changed, push_state = jmap_push.changed(store, acc, n.kinds, types)
                    changed = jmap_push.unsent(changed, sent)
                    if not changed:
                        continue
                    await write(_event("state", changed, push_state))
                    if closeafter == "state":
                        return

        return Stream(200, [("content-type", "text/event-stream"),
                            ("cache-control", "no-cache, no-store"),
                            ("x-accel-buffering", "no")], run)

    # --- WebSocket (RFC 8887) -----------------------------------------------------------

    async def websocket(self, req: Request) -> Response | Upgrade:
        bad = websocket_request_problem(req)
        if bad:
            r = problem(400, "Bad Request", bad)
            if "version" in bad:
                r.headers.append(("sec-websocket-version", "13"))
            return r
        from ..proto.jmap.ws import SUBPROTOCOL
        from .jmap_ws import serve_socket

        if SUBPROTOCOL not in offered_subprotocols(req):
            return problem(400, "Bad Request", "the WebSocket subprotocol must be \"jmap\"")
        principal = req.principal

        async def run(ws):
            await serve_socket(self, ws, principal)

        return Upgrade(SUBPROTOCOL, run, max_message=self.limits.max_size_request)


def _event(name: str, changed: dict, push_state: str) -> bytes:
    data = json.dumps({"@type": "StateChange", "changed": changed}, separators=(",", ":"))
    return f"event: {name}\nid: {push_state}\ndata: {data}\n\n".encode()


def routes(service: HttpService) -> list[Route]:
    jmap_api.load_methods()
    j = Jmap(service)
    api_body = j.limits.max_size_request
    out = [
        Route("GET", "/.well-known/jmap", j.well_known, auth=False),
        Route("GET", "/jmap/session", j.session),
        Route("GET", "/jmap/session/", j.session),
        Route("GET", "/jmap/eventsource/", j.eventsource, slot="push"),
        Route("GET", "/jmap/eventsource", j.eventsource, slot="push"),
        Route("GET", S.WEBSOCKET_PATH, j.websocket, slot="push"),
        Route("GET", S.WEBSOCKET_PATH.rstrip("/"), j.websocket, slot="push"),
        Route("POST", S.UPLOAD_PATH, j.upload, prefix=True, slot="upload",
              max_body=j.limits.max_size_upload, too_large=j.upload_too_large,
              busy=j.too_many_uploads),
        Route("GET", S.DOWNLOAD_PATH, j.download, prefix=True, slot="download",
              busy=j.too_many),
    ]
    for path in (S.API_PATH, S.API_PATH.rstrip("/")):
        out.append(Route("POST", path, j.api, slot="api", max_body=api_body,
                         too_large=j.too_large, busy=j.too_many))
    return out


async def background(service: HttpService) -> None:
    """Every UPLOAD_SWEEP_INTERVAL seconds: sweep expired uploads, and forget
    submissions older than ``[jmap] submission_retention_days``."""
    import time

    store = service.ctx.store
    while True:
        await trio.sleep(UPLOAD_SWEEP_INTERVAL)
        try:
            while await storeio.write(store, blobs.sweep_uploads, int(time.time())) \
                    >= 1000:
                pass
        except Exception:
            log.exception("sweeping expired uploads failed")
        try:
            await prune_submissions(store, service.ctx.cfg.jmap.submission_retention_days,
                                    time.time())
        except Exception:
            log.exception("pruning old email submissions failed")


async def prune_submissions(store, days: int, now: float) -> None:
    """One pass of ``sending.prune_submissions`` over every account, a
    write transaction per 1,000 records looked at (the writer is shared)."""
    if not days:
        return
    cutoff, start = int(now - days * 86400), b""
    while start is not None:
        start = await storeio.write(store, sending.prune_submissions, cutoff, start)
