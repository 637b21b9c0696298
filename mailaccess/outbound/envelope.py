"""The SMTP envelope of a message (RFC 8621 §7 Envelope when the client
gives none) and the bytes that go on the wire.

``header_addresses(raw)`` reads From/Sender/To/Cc/Bcc; ``derive_envelope``
applies §7: mailFrom is the address of the (last) Sender header, else of the
From header; rcptTo the deduplicated To, Cc and Bcc addresses.
``wire_bytes`` removes Bcc (its recipients are in the envelope only).
"""
from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass, field

from .addresses import parse_field


@dataclass
class HeaderAddresses:
    from_: list[list[str]] = field(default_factory=list)    # per header field: addresses
    sender: list[list[str]] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    auto_submitted: str = ""
    message_id: str = ""


def _header_end(raw: bytes) -> int:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return i + len(sep)
    return len(raw)


# a group with no members ("undisclosed-recipients:;"): a field that names
# nobody, on purpose.  Linear: each character either opens a quoted string
# or is one character of the name (white space included), never both.
_EMPTY_GROUP = re.compile(r'(?:"[^"\\]*"|[^":;,<>@()\\\[\]])*:\s*;\s*')
_SHOWN = 200    # of a malformed field, as much as the error message repeats


def _addrs(values: list[str]) -> list[str]:
    """The addresses of the header fields VALUES.  A field the parser cannot
    read stays in the list as its own text, which no address check accepts,
    so that the sender hears "invalid recipient" rather than "no recipient".

    Which fields can be read is addresses.parse_field's rule, the same on
    every Python release (email.utils.getaddresses answers differently by
    release: an unpatched 3.11.7 returns the fragments of "a b@@c", "@c";
    a release with the CVE-2023-27043 fix, 3.11.10+, 3.12.6+, 3.13, returns
    ('', '') for it and also for "j@x (Doe, John)" and "a@x,").  A field
    whose only element is empty ('<>') cannot be read either; an empty
    group or a blank field names nobody and stays empty."""
    out = []
    for v in values:
        pairs = parse_field(v)
        if (pairs is None or pairs == [("", "")]) and not _EMPTY_GROUP.fullmatch(v):
            out.append(" ".join(v.split())[:_SHOWN])
            continue
        out.extend(a for _n, a in pairs or () if a)
    return out


def header_addresses(raw: bytes) -> HeaderAddresses:
    hdr = raw[:_header_end(raw)]
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(hdr)

    def vals(name: str) -> list[str]:
        return [str(v) for v in (msg.get_all(name) or [])]

    return HeaderAddresses(
        from_=[_addrs([v]) for v in vals("From")],
        sender=[_addrs([v]) for v in vals("Sender")],
        to=_addrs(vals("To")), cc=_addrs(vals("Cc")), bcc=_addrs(vals("Bcc")),
        auto_submitted=(vals("Auto-Submitted") or [""])[-1].strip(),
        message_id=(vals("Message-ID") or [""])[-1].strip())


class EnvelopeError(ValueError):
    """The message's headers give no usable envelope (an invalidEmail)."""


def dedupe(addrs: list[str]) -> list[str]:
    """Addresses in order, each once (the domain compared case-insensitively)."""
    out, seen = [], set()
    for a in addrs:
        local, at, dom = a.rpartition("@")
        k = f"{local}@{dom.lower()}" if at else a
        if k not in seen:
            seen.add(k)
            out.append(a)
    return out


def derive_mail_from(h: HeaderAddresses) -> str | None:
    """§7: the Sender address if present, else the From address; None when
    neither names one; EnvelopeError when the field chosen has several
    addresses or appears more than once."""
    for fields in (h.sender, h.from_):
        if fields:
            if len(fields) > 1 or len(fields[-1]) > 1:
                raise EnvelopeError("several Sender/From addresses: give an envelope")
            return fields[-1][0] if fields[-1] else None
    return None


def derive_rcpt_to(h: HeaderAddresses) -> list[str]:
    return dedupe(h.to + h.cc + h.bcc)


def wire_bytes(raw: bytes) -> bytes:
    """RAW without its Bcc header fields (continuation lines included)."""
    end = _header_end(raw)
    head, body = raw[:end], raw[end:]
    lines = head.splitlines(keepends=True)
    out, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line[:4].lower() == b"bcc:"
        if not skipping:
            out.append(line)
    return b"".join(out) + body
