"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3).

``encode`` always produces the one canonical form; ``decode`` is strict and
accepts only canonical input (so ``encode(decode(b)) == b``): no 8-bit or
control bytes, no unterminated or empty shift, no base64-encoded printable
ASCII, no adjacent shifted runs, no non-zero padding bits, no lone UTF-16
surrogates.  Errors raise ``ParseError`` (the parser turns that into BAD).

The importer and exporter use the same functions for Dovecot's Maildir++
folder names: ``encode(name, force="./")`` also shifts characters a folder
name cannot hold, and ``decode(name, strict=False)`` keeps a shift it cannot
decode as it is instead of raising.
"""
from __future__ import annotations

import base64
import binascii
import re

from .errors import ParseError

_SHIFTED = re.compile(r"[^\x20-\x7e]+")
_B64CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class InvalidName(str):
    """A mailbox name that is not valid modified UTF-7, kept as its wire text.

    SELECT/EXAMINE/STATUS answer it NO and LIST matches it as a plain name
    (what Dovecot does), instead of the BAD a syntax error gets."""

    __slots__ = ()


def _b64(chunk: str) -> str:
    raw = chunk.encode("utf-16-be", "surrogatepass")
    return binascii.b2a_base64(raw, newline=False).decode("ascii").rstrip("=").replace("/", ",")


def encode(name: str, force: str = "") -> bytes:
    """Encode a mailbox name as modified UTF-7; characters in FORCE are shifted too."""
    out = []
    pos = 0
    shifted = re.compile("(?:[^\\x20-\\x7e]|[" + re.escape(force) + "])+") if force else _SHIFTED
    for m in shifted.finditer(name):
        out.append(name[pos : m.start()].replace("&", "&-"))
        out.append("&" + _b64(m.group()) + "-")
        pos = m.end()
    out.append(name[pos:].replace("&", "&-"))
    return "".join(out).encode("ascii")


def decode(data: bytes | str, strict: bool = True) -> str:
    """Decode a modified UTF-7 mailbox name, strictly (or leniently: ``strict=False``)."""
    if not strict:
        return _decode_lenient(data if isinstance(data, str) else data.decode("latin-1"))
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise ParseError("mailbox name is not modified UTF-7") from None
    if not data:
        return ""
    for c in data:
        if c < 0x20 or c > 0x7E:
            raise ParseError("mailbox name is not modified UTF-7")
    if b"&" not in data:
        return data.decode("ascii")
    out = []
    pos = 0
    n = len(data)
    last_shift_end = -1
    while pos < n:
        amp = data.find(b"&", pos)
        if amp < 0:
            out.append(data[pos:].decode("ascii"))
            break
        out.append(data[pos:amp].decode("ascii"))
        dash = data.find(b"-", amp + 1)
        if dash < 0:
            raise ParseError("unterminated modified UTF-7 shift")
        if dash == amp + 1:
            out.append("&")
            pos = dash + 1
            continue
        if amp == last_shift_end:
            raise ParseError("adjacent modified UTF-7 shifts")
        b64 = data[amp + 1 : dash]
        if any(c not in _B64CHARS for c in b64) or len(b64) % 4 == 1:
            raise ParseError("invalid modified UTF-7 base64")
        padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
        try:
            raw = binascii.a2b_base64(padded, strict_mode=True)
        except binascii.Error:
            raise ParseError("invalid modified UTF-7 base64") from None
        if len(raw) % 2 or _b64_canon(raw) != b64:
            raise ParseError("non-canonical modified UTF-7")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError:
            raise ParseError("invalid UTF-16 in modified UTF-7") from None
        if any(0x20 <= ord(ch) <= 0x7E for ch in text):
            raise ParseError("non-canonical modified UTF-7")
        out.append(text)
        pos = dash + 1
        last_shift_end = pos
    return "".join(out)


def _b64_canon(raw: bytes) -> bytes:
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",")


def _decode_lenient(name: str) -> str:
    """Each shift that decodes is decoded; anything else stays as it is."""
    if "&" not in name:
        return name
    out = []
    pos = 0
    n = len(name)
    while pos < n:
        amp = name.find("&", pos)
        if amp < 0:
            out.append(name[pos:])
            break
        out.append(name[pos:amp])
        dash = name.find("-", amp + 1)
        if dash < 0:
            out.append(name[amp:])
            break
        if dash == amp + 1:
            out.append("&")
        else:
            chunk = name[amp + 1 : dash].replace(",", "/")
            try:
                raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
                out.append(raw.decode("utf-16-be", "surrogatepass"))
            except (ValueError, UnicodeDecodeError):
                out.append(name[amp : dash + 1])
        pos = dash + 1
    return "".join(out)
