"""RFC 6858 simplified downgrading: serve a message whose header carries raw
UTF-8 (RFC 6532) to an IMAP client that did not ENABLE UTF8=ACCEPT.

Only the header changes; the body is passed through.  Per header field that
is not ASCII:
- address fields: a display name becomes an RFC 2047 encoded-word; an address
  whose mailbox or domain is not ASCII cannot be expressed, so it becomes an
  empty group whose name is the encoded-word of the whole original address
  (``=?utf-8?b?...?=:;``), which a client shows and cannot reply to;
- Content-Type / Content-Disposition: non-ASCII parameter values become
  RFC 2231 ``name*=utf-8''...`` values;
- any other field: its value becomes encoded-words.
ENVELOPE, BODYSTRUCTURE, RFC822.SIZE and every BODY[...] section are then
taken from the downgraded message, so they agree with each other.
"""
from __future__ import annotations

import base64
import re
import urllib.parse

from ..outbound.addresses import parse_field

ADDRESS_FIELDS = {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from",
                  "resent-sender", "resent-to", "resent-cc", "resent-bcc", "return-path",
                  "disposition-notification-to"}
PARAM_FIELDS = {"content-type", "content-disposition"}

_FIELD = re.compile(rb"^([^:\s]+):", re.M)


def _ew(text: str) -> str:
    """RFC 2047 encoded-words (B encoding), each kept under 75 characters."""
    out = []
    data = text.encode("utf-8")
    chunk = []
    size = 0
    for ch in text:
        b = ch.encode("utf-8")
        if size + len(b) > 45:
            out.append(b"".join(chunk))
            chunk, size = [], 0
        chunk.append(b)
        size += len(b)
    if chunk:
        out.append(b"".join(chunk))
    del data
    return " ".join("=?utf-8?b?" + base64.b64encode(p).decode() + "?=" for p in out)


def _split_header(header: bytes) -> list[bytes]:
    """Header block -> list of raw fields (each with its folded lines)."""
    fields: list[list[bytes]] = []     # each field's lines, joined once at the end
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return [b"".join(f) for f in fields]


def _addresses(value: str) -> str:
    pairs = parse_field(value)
    if pairs is None:
        # a field that cannot be read (the same on every Python release,
        # which getaddresses is not): shown whole, as an empty group
        return _ew(value) + ":;"
    parts = []
    for name, addr in pairs:
        if not addr:
            continue
        if not addr.isascii():
            whole = f"{name} <{addr}>" if name else addr
            parts.append(_ew(whole) + ":;")
            continue
        if name and not name.isascii():
            parts.append(f"{_ew(name)} <{addr}>")
        elif name:
            parts.append(f'"{name}" <{addr}>' if any(c in name for c in ',;<>@:"') else
                         f"{name} <{addr}>")
        else:
            parts.append(addr)
    return ", ".join(parts)


def _params(value: str) -> str:
    pieces = value.split(";")
    out = [pieces[0].strip() if pieces[0].isascii() else _ew(pieces[0].strip())]
    for p in pieces[1:]:
        name, eq, val = p.strip().partition("=")
        if not eq or val.isascii():
            out.append(p.strip())
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        out.append(f"{name.strip()}*=utf-8''" + urllib.parse.quote(val, safe=""))
    return "; ".join(out)


def downgrade_field(field: bytes) -> bytes:
    if field.isascii():
        return field
    m = _FIELD.match(field)
    if m is None:
        return b""   # not even a field name: nothing a conventional client could use
    name = m.group(1).decode("ascii", "replace")
    value = field[m.end():].decode("utf-8", "replace")
    value = re.sub(r"\r?\n[ \t]", " ", value).strip()
    low = name.lower()
    if low in ADDRESS_FIELDS:
        new = _addresses(value)
    elif low in PARAM_FIELDS:
        new = _params(value)
    else:
        new = _ew(value)
    return f"{name}: {new}\r\n".encode("ascii")


def downgrade(raw: bytes, header_end: int) -> bytes:
    """The whole message with its header downgraded."""
    header = raw[:header_end]
    body = raw[header_end:]
    fields = _split_header(header)
    out = b"".join(downgrade_field(f) for f in fields)
    return out + b"\r\n" + body
