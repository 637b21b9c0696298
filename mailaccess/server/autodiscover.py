"""Autodiscover for ActiveSync: the route provider for server/http.py.

``POST /autodiscover/autodiscover.xml`` (any case; authenticated like every
ActiveSync request: phones send Basic here) answers the mobilesync schema
(MS-ASCMD 2.2.1.1): Culture, User (DisplayName, EMailAddress) and
Action/Settings/Server with Type ``MobileSync`` and Url = the public
ActiveSync URL (``[http] public_url`` or the request's scheme and Host,
``HttpService.base_url``, + ``/Microsoft-Server-ActiveSync``).

Refusals, in the Autodiscover framework's error form (MS-OXDSCLI
2.2.4.2, ErrorCode per MS-ASCMD 2.2.3.64): a request asking for another
schema (Outlook's ``.../outlook/requestschema/2006`` and responseschema
``2006a``) is ErrorCode 601 with a message saying that only mobilesync is
served; a body that is not a well-formed request is ErrorCode 600 (Invalid
Request).  The XML is read with expat and nothing else: no DTD (a
``<!DOCTYPE``, hence any entity declaration, external or internal, is
refused before it is used), at most MAX_DEPTH levels and MAX_ELEMENTS
elements; the body is limited to MAX_BODY bytes by the HTTP service (413).
(defusedxml is not a dependency; this is its ``forbid_dtd`` rule.)

``GET /autodiscover/autodiscover.json?Email=...&Protocol=ActiveSync`` (and
``/autodiscover/autodiscover.json/v1.0/<email>?Protocol=...``), the
anonymous v2 endpoint Outlook mobile uses: ``{"Protocol": "ActiveSync",
"Url": ...}``; ``Protocol=AutodiscoverV1`` gives the XML endpoint's URL; any
other protocol is HTTP 400 ``{"ErrorCode": "InvalidProtocol",
"ErrorMessage": ...}``, as Exchange Online answers.
"""
from __future__ import annotations

import json
import random
import time
from urllib.parse import parse_qs
from xml.parsers import expat
from xml.sax.saxutils import escape

from .http import HttpService, Request, Response, Route

PATH_XML = "/autodiscover/autodiscover.xml"
PATH_JSON = "/autodiscover/autodiscover.json"
EAS_PATH = "/Microsoft-Server-ActiveSync"

NS_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
NS_MOBILE_REQUEST = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"
NS_MOBILE_RESPONSE = ("http://schemas.microsoft.com/exchange/autodiscover/mobilesync/"
                      "responseschema/2006")
NS_OUTLOOK_REQUEST = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"

MAX_BODY = 16 * 1024
MAX_DEPTH = 8
MAX_ELEMENTS = 64
MAX_TEXT = 1024

INVALID_REQUEST = 600
NO_PROVIDER = 601

XML_TYPE = "text/xml; charset=utf-8"


class BadRequest(Exception):
    """The body is not an Autodiscover request we read (ErrorCode 600)."""


class _Parsed:
    def __init__(self):
        self.root_ns = ""
        self.root = ""
        self.fields: dict[str, str] = {}     # Request's children (local name -> text)


def parse_request(body: bytes) -> _Parsed:
    """The Autodiscover request in BODY; BadRequest when it is not one, or
    when it has a DTD (entities are never expanded: none may be declared)."""
    out = _Parsed()
    stack: list[str] = []
    count = [0]
    text: list[str] = []

    def refuse(*_a):
        raise BadRequest("DTDs and entity declarations are not accepted")

    def start(name, _attrs):
        count[0] += 1
        if count[0] > MAX_ELEMENTS or len(stack) >= MAX_DEPTH:
            raise BadRequest("the request is too large")
        ns, _, local = name.rpartition(" ")
        if not stack:
            out.root_ns, out.root = ns, local
        stack.append(local)
        text.clear()

    def end(_name):
        local = stack.pop()
        if len(stack) == 2 and stack[1] == "Request":
            out.fields[local] = "".join(text).strip()
        text.clear()

    def chars(data):
        if sum(map(len, text)) + len(data) > MAX_TEXT:
            raise BadRequest("a value is too long")
        text.append(data)

    p = expat.ParserCreate(namespace_separator=" ")
    p.StartDoctypeDeclHandler = refuse
    p.EntityDeclHandler = refuse
    p.UnparsedEntityDeclHandler = refuse
    p.ExternalEntityRefHandler = refuse
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.StartElementHandler = start
    p.EndElementHandler = end
    p.CharacterDataHandler = chars
    try:
        p.Parse(body, True)
    except expat.ExpatError as exc:
        raise BadRequest(f"not well-formed XML: {exc}") from None
    if out.root != "Autodiscover":
        raise BadRequest("the root element is not Autodiscover")
    return out


def _xml(body: str) -> Response:
    return Response(200, ('<?xml version="1.0" encoding="utf-8"?>\n' + body).encode(),
                    [("content-type", XML_TYPE), ("cache-control", "private")])


def error_response(code: int, message: str) -> Response:
    """The Autodiscover framework's error answer (MS-OXDSCLI 2.2.4.2)."""
    now = time.gmtime()
    stamp = time.strftime("%H:%M:%S", now)
    return _xml(
        f'<Autodiscover xmlns="{NS_RESPONSE}">'
        f'<Response><Error Time="{stamp}" Id="{random.randrange(1, 2**31)}">'
        f"<ErrorCode>{code}</ErrorCode><Message>{escape(message)}</Message>"
        f"<DebugData /></Error></Response></Autodiscover>")


def mobilesync_response(email: str, display_name: str, url: str) -> Response:
    u = escape(url)
    return _xml(
        f'<Autodiscover xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="{NS_RESPONSE}">'
        f'<Response xmlns="{NS_MOBILE_RESPONSE}">'
        f"<Culture>en:us</Culture>"
        f"<User><DisplayName>{escape(display_name)}</DisplayName>"
        f"<EMailAddress>{escape(email)}</EMailAddress></User>"
        f"<Action><Settings><Server><Type>MobileSync</Type>"
        f"<Url>{u}</Url><Name>{u}</Name></Server></Settings></Action>"
        f"</Response></Autodiscover>")


class Autodiscover:
    def __init__(self, service: HttpService):
        self.svc = service

    def eas_url(self, req: Request) -> str:
        return self.svc.base_url(req) + EAS_PATH

    async def post_xml(self, req: Request) -> Response:
        try:
            r = parse_request(req.body or b"")
        except BadRequest as exc:
            return error_response(INVALID_REQUEST, f"Invalid Request: {exc}")
        schema = r.fields.get("AcceptableResponseSchema", "")
        if r.root_ns == NS_OUTLOOK_REQUEST or (schema and schema != NS_MOBILE_RESPONSE):
            return error_response(
                NO_PROVIDER, "Provider is not available for the requested schema: this server "
                f"serves only Exchange ActiveSync ({NS_MOBILE_RESPONSE}); configure the "
                "account as Exchange ActiveSync, or use IMAP or JMAP")
        if r.root_ns not in (NS_MOBILE_REQUEST, ""):
            return error_response(INVALID_REQUEST, "Invalid Request: unknown request schema")
        email = r.fields.get("EMailAddress", "")
        if not email:
            return error_response(INVALID_REQUEST, "Invalid Request: no EMailAddress")
        name = req.principal.name if req.principal is not None else email
        return mobilesync_response(email, name, self.eas_url(req))

    async def get_json(self, req: Request) -> Response:
        query = parse_qs(req.target.partition("?")[2], keep_blank_values=True)
        params = {k.lower(): v[-1] for k, v in query.items()}
        protocol = params.get("protocol", "")
        email = params.get("email", "")
        rest = req.path[len(PATH_JSON):]
        if rest.lower().startswith("/v1.0/"):
            email = rest[len("/v1.0/"):]     # the path is percent-decoded already
        elif rest not in ("", "/"):
            return _json(404, {"ErrorCode": "NotFound", "ErrorMessage": "no such resource"})
        if not email or "@" not in email:
            return _json(400, {"ErrorCode": "InvalidUser",
                               "ErrorMessage": "an Email address is required"})
        p = protocol.lower()
        if p == "activesync":
            return _json(200, {"Protocol": "ActiveSync", "Url": self.eas_url(req)})
        if p == "autodiscoverv1":
            return _json(200, {"Protocol": "AutodiscoverV1",
                               "Url": self.svc.base_url(req) + "/autodiscover/autodiscover.xml"})
        return _json(400, {"ErrorCode": "InvalidProtocol",
                           "ErrorMessage": f"The given protocol value '{protocol}' is invalid. "
                                           "Supported values are 'ActiveSync, AutodiscoverV1'"})


def _json(status: int, obj: dict) -> Response:
    return Response.json(status, json.dumps(obj).encode(), "application/json")


def routes(service: HttpService) -> list[Route]:
    a = Autodiscover(service)
    return [
        Route("POST", PATH_XML, a.post_xml, nocase=True, max_body=MAX_BODY),
        Route("GET", PATH_JSON, a.get_json, nocase=True, prefix=True, auth=False),
    ]
