"""Small IMAP wire formatting helpers used by the session (strings, flags,
mailbox names).  Kept beside the session; the sans-IO response module of
proto/imap owns the bigger serialisers."""
from __future__ import annotations

from ..proto.imap import modutf7
from ..proto.imap.grammar import ASTRING_ATOM

SYSTEM_FLAGS = {
    "$seen": "\\Seen",
    "$answered": "\\Answered",
    "$flagged": "\\Flagged",
    "$draft": "\\Draft",
    "$deleted": "\\Deleted",
}
FLAG_TO_KEYWORD = {v.lower(): k for k, v in SYSTEM_FLAGS.items()}

ROLE_TO_SPECIAL_USE = {
    "drafts": "\\Drafts",
    "sent": "\\Sent",
    "trash": "\\Trash",
    "junk": "\\Junk",
    "archive": "\\Archive",
    "all": "\\All",
    "flagged": "\\Flagged",
    "important": "\\Important",
}
SPECIAL_USE_TO_ROLE = {v.lower(): k for k, v in ROLE_TO_SPECIAL_USE.items()}


def keyword_of(flag: str) -> str | None:
    """IMAP flag -> store keyword; None for \\Recent (not stored) and bad flags."""
    low = flag.lower()
    if low.startswith("\\"):
        return FLAG_TO_KEYWORD.get(low)
    return low


def flag_of(keyword: str) -> str:
    return SYSTEM_FLAGS.get(keyword, keyword)


def flags_list(keywords) -> bytes:
    return ("(" + " ".join(flag_of(k) for k in keywords) + ")").encode("utf-8")


def quoted(s: str | bytes) -> bytes:
    """A quoted string when possible, else a literal."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    if b"\r" in b or b"\n" in b or b"\0" in b or len(b) > 4000:
        return b"{%d}\r\n" % len(b) + b
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def astring(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    if b and ASTRING_ATOM.fullmatch(b) and b.upper() != b"NIL":
        return b
    return quoted(b)


def nstring(b: bytes | None) -> bytes:
    if b is None:
        return b"NIL"
    return quoted(b)


def literal(b: bytes, binary: bool = False) -> bytes:
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(b) + b


def mailbox_name(name: str, utf8: bool) -> bytes:
    """A mailbox name on the wire: UTF-8 when the client enabled it, else
    modified UTF-7 (RFC 3501 5.1.3)."""
    raw = name.encode("utf-8") if utf8 else modutf7.encode(name)
    if raw.upper() == b"INBOX":
        return b"INBOX"
    return astring(raw)
