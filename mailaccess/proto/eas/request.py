"""ActiveSync request line and headers (MS-ASHTTP 2.2.1): query + headers ->
a typed ``EasRequest``.  Sans-IO: strings in, a dataclass or ``BadRequest`` out.

Two query forms (MS-ASHTTP 2.2.1.1.1):

* plain (2.2.1.1.1.2): ``Cmd=Sync&User=alice&DeviceId=abc&DeviceType=iPhone``
  plus command parameters (``CollectionId``, ``ItemId``, ``SaveInSent`` ...);
  the version and policy key come from the ``MS-ASProtocolVersion`` and
  ``X-MS-PolicyKey`` headers;
* base64 (2.2.1.1.1.1): the whole query is one base64 string of
  ``version(1) command(1) locale(2, little-endian) devid-len(1) devid
  policykey-len(1: 0 or 4) policykey(4, little-endian) devtype-len(1) devtype``
  then ``tag(1) len(1) value`` command parameters to the end.  The version
  byte is 10 times the version (121 = 12.1); the headers then carry neither.
  Every length is checked against what is left (``BadRequest`` on any
  overrun, trailing garbage or unknown tag).  The device id field is "a
  string or a GUID": one that is a valid plain-form DeviceId (letters,
  digits, ``-_.``) is taken as that string, any other is given as lowercase
  hex (as Z-Push does), so the same device always gets the same id string.
  ``User`` may be absent here (the specification's own example has none):
  the authenticated account decides the mailbox anyway.

``VERSIONS`` is what the server may speak; the caller passes the subset it
advertises to ``check_version``.
"""
from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass, field

VERSIONS = ("12.1", "14.0", "14.1", "16.0", "16.1")

# MS-ASHTTP 2.2.1.1.1.1.2 command codes
COMMAND_CODES = {
    0: "Sync", 1: "SendMail", 2: "SmartForward", 3: "SmartReply", 4: "GetAttachment",
    9: "FolderSync", 10: "FolderCreate", 11: "FolderDelete", 12: "FolderUpdate",
    13: "MoveItems", 14: "GetItemEstimate", 15: "MeetingResponse", 16: "Search",
    17: "Settings", 18: "Ping", 19: "ItemOperations", 20: "Provision",
    21: "ResolveRecipients", 22: "ValidateCert", 23: "Find",
}
COMMANDS = frozenset(COMMAND_CODES.values())
_CMD_BY_LOWER = {c.lower(): c for c in COMMANDS}

# MS-ASHTTP 2.2.1.1.1.1.1 command parameter tags
PARAM_TAGS = {0: "AttachmentName", 1: "CollectionId", 2: "CollectionName", 3: "ItemId",
              4: "LongId", 5: "ParentId", 6: "Occurrence", 7: "Options", 8: "User"}
OPTION_SAVE_IN_SENT = 0x01
OPTION_ACCEPT_MULTIPART = 0x02

# plain-form parameters besides Cmd/User/DeviceId/DeviceType
# (SaveInSent and AcceptMultiPart become EasRequest flags)
PLAIN_PARAMS = ("AttachmentName", "CollectionId", "CollectionName", "ItemId", "LongId",
                "ParentId", "Occurrence")

MAX_QUERY = 2048                 # characters of the query string
MAX_FIELD = 256                  # characters of one identifying value
_DEVICE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_DEVICE_TYPE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_VERSION = re.compile(r"[0-9]{1,2}\.[0-9]")


class BadRequest(ValueError):
    """A malformed ActiveSync request (the caller answers HTTP 400)."""


@dataclass(frozen=True)
class EasRequest:
    cmd: str                        # "Sync", "FolderSync", ... (canonical spelling)
    user: str
    device_id: str
    device_type: str
    version: str | None             # "14.1"; None when the client sent none
    policy_key: int | None          # X-MS-PolicyKey / the base64 field; None: absent
    locale: int | None = None       # base64 form only
    params: dict[str, str] = field(default_factory=dict)
    accept_multipart: bool = False
    save_in_sent: bool = False
    encoded: bool = False           # came in the base64 form


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    vals = [v for k, v in headers if k.lower() == name]
    if len(vals) > 1:
        raise BadRequest(f"more than one {name} header")
    return vals[0].strip() if vals else None


def _policy_key(s: str | None) -> int | None:
    if s is None or s == "":
        return None
    if not s.isdigit() or len(s) > 10 or int(s) > 0xFFFFFFFF:
        raise BadRequest("X-MS-PolicyKey is an unsigned 32-bit number")
    return int(s)


def _ident(value: str | None, name: str, pattern: re.Pattern) -> str:
    if not value:
        raise BadRequest(f"{name} is missing")
    if not pattern.fullmatch(value):
        raise BadRequest(f"{name} is malformed")
    return value


def _user(value: str | None) -> str:
    if value is None or value == "":
        raise BadRequest("User is missing")
    if len(value) > MAX_FIELD or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise BadRequest("User is malformed")
    return value


def _bool_param(v: str | None) -> bool:
    return v is not None and v.upper() in ("T", "TRUE", "1")


def parse(query: str, headers: list[tuple[str, str]]) -> EasRequest:
    """The request named by QUERY (the raw query string, without '?') and
    HEADERS ((name, value) pairs); raises BadRequest."""
    if len(query) > MAX_QUERY:
        raise BadRequest("the query string is too long")
    if not query:
        raise BadRequest("the query string is empty")
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="strict",
                                       max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the query string is malformed") from None
    if any(k.lower() == "cmd" for k, _ in pairs):
        return _parse_plain(pairs, headers)
    return parse_base64(urllib.parse.unquote(query), headers)


def _parse_plain(pairs: list[tuple[str, str]], headers) -> EasRequest:
    q: dict[str, str] = {}
    for k, v in pairs:
        key = k.lower()
        if key in q:
            raise BadRequest(f"parameter {k} given twice")
        q[key] = v
    cmd = _CMD_BY_LOWER.get(q.get("cmd", "").lower())
    if cmd is None:
        raise BadRequest("Cmd names no ActiveSync command")
    version = _header(headers, "ms-asprotocolversion")
    params: dict[str, str] = {}
    for name in PLAIN_PARAMS:
        v = q.get(name.lower())
        if v is not None:
            if len(v) > MAX_FIELD:
                raise BadRequest(f"{name} is too long")
            params[name] = v
    return EasRequest(
        cmd=cmd, user=_user(q.get("user")),
        device_id=_ident(q.get("deviceid"), "DeviceId", _DEVICE_ID),
        device_type=_ident(q.get("devicetype"), "DeviceType", _DEVICE_TYPE),
        version=version if version else None,
        policy_key=_policy_key(_header(headers, "x-ms-policykey")),
        params=params,
        accept_multipart=_bool_param(q.get("acceptmultipart"))
        or (_header(headers, "ms-asacceptmultipart") or "").upper() == "T",
        save_in_sent=_bool_param(q.get("saveinsent")))


def parse_base64(text: str, headers: list[tuple[str, str]] = ()) -> EasRequest:
    """The base64-encoded query value TEXT (already percent-decoded)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the query is neither plain nor valid base64") from None
    return decode_binary(raw, headers)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BadRequest(f"the base64 query is truncated in {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def device_id_of(raw: bytes) -> str:
    """The DeviceId string of the base64 form's device id field RAW."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.hex()
    return text if _DEVICE_ID.fullmatch(text) else raw.hex()


def _device_id_bytes(device_id: str) -> bytes:
    try:
        raw = bytes.fromhex(device_id)
    except ValueError:
        return device_id.encode("ascii")
    return raw if raw and device_id_of(raw) == device_id else device_id.encode("ascii")


def decode_binary(raw: bytes, headers=()) -> EasRequest:
    """The decoded bytes of a base64 query (MS-ASHTTP 2.2.1.1.1.1)."""
    r = _Reader(raw)
    vbyte = r.byte("the version")
    version = f"{vbyte // 10}.{vbyte % 10}"
    code = r.byte("the command code")
    cmd = COMMAND_CODES.get(code)
    if cmd is None:
        raise BadRequest(f"unknown command code {code}")
    locale = int.from_bytes(r.take(2, "the locale"), "little")
    dev = r.take(r.byte("the device id length"), "the device id")
    if not dev:
        raise BadRequest("DeviceId is missing")
    pklen = r.byte("the policy key length")
    if pklen not in (0, 4):
        raise BadRequest("the policy key is 0 or 4 bytes")
    policy_key = int.from_bytes(r.take(4, "the policy key"), "little") if pklen else None
    dtype = r.take(r.byte("the device type length"), "the device type")
    try:
        device_type = dtype.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("DeviceType is not ASCII") from None
    _ident(device_type, "DeviceType", _DEVICE_TYPE)
    params: dict[str, str] = {}
    user = None
    accept_multipart = save_in_sent = False
    while r.left:
        tag = r.byte("a parameter tag")
        name = PARAM_TAGS.get(tag)
        if name is None:
            raise BadRequest(f"unknown command parameter tag {tag}")
        value = r.take(r.byte("a parameter length"), f"the {name} parameter")
        if name == "Options":
            if len(value) != 1:
                raise BadRequest("Options is one byte")
            save_in_sent = bool(value[0] & OPTION_SAVE_IN_SENT)
            accept_multipart = bool(value[0] & OPTION_ACCEPT_MULTIPART)
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{name} is not UTF-8") from None
        if name == "User":
            user = text
        elif name in params:
            raise BadRequest(f"parameter {name} given twice")
        else:
            params[name] = text
    return EasRequest(cmd=cmd, user=_user(user) if user is not None else "",
                      device_id=device_id_of(dev),
                      device_type=device_type, version=version, policy_key=policy_key,
                      locale=locale, params=params, accept_multipart=accept_multipart
                      or (_header(list(headers), "ms-asacceptmultipart") or "").upper() == "T",
                      save_in_sent=save_in_sent, encoded=True)


def encode_binary(req: EasRequest) -> bytes:
    """The inverse of decode_binary (for tests and tools); the device id is
    string or hex, as decode_binary gives it."""
    major, _, minor = (req.version or "14.1").partition(".")
    code = {v: k for k, v in COMMAND_CODES.items()}[req.cmd]
    dev = _device_id_bytes(req.device_id)
    out = bytearray((int(major) * 10 + int(minor), code))
    out += (req.locale or 0).to_bytes(2, "little")
    out += bytes((len(dev),)) + dev
    if req.policy_key is None:
        out.append(0)
    else:
        out += b"\x04" + req.policy_key.to_bytes(4, "little")
    dt = req.device_type.encode("ascii")
    out += bytes((len(dt),)) + dt
    tags = {v: k for k, v in PARAM_TAGS.items()}
    for name, value in req.params.items():
        b = value.encode("utf-8")
        out += bytes((tags[name], len(b))) + b
    opts = (OPTION_SAVE_IN_SENT if req.save_in_sent else 0) | \
        (OPTION_ACCEPT_MULTIPART if req.accept_multipart else 0)
    if opts:
        out += bytes((tags["Options"], 1, opts))
    if req.user:
        u = req.user.encode("utf-8")
        out += bytes((tags["User"], len(u))) + u
    return bytes(out)


def check_version(version: str | None, advertised: tuple[str, ...]) -> str:
    """VERSION if it is one of ADVERTISED; raises BadRequest otherwise."""
    if version is None:
        raise BadRequest("MS-ASProtocolVersion is missing")
    if not _VERSION.fullmatch(version) or version not in advertised:
        raise BadRequest(f"protocol version {version[:16]!r} is not supported")
    return version


def major(version: str) -> int:
    return int(version.partition(".")[0])
