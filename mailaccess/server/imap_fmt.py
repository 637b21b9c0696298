"""The session's vocabulary between store and wire: keyword <-> IMAP flag,
JMAP role <-> special-use attribute, and thin wrappers over the sans-IO
serialiser (proto/imap/serialize.py) for strings and mailbox names."""
from __future__ import annotations

from ..proto.imap import serialize
from ..proto.imap.serialize import astring, literal, nstring  # noqa: F401  (re-exported)

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
    """IMAP flag -> store keyword; None for \\Recent (not stored) and bad flags.
    Custom keywords keep their spelling here; the store folds case and
    remembers the first spelling."""
    low = flag.lower()
    if low.startswith("\\"):
        return FLAG_TO_KEYWORD.get(low)
    return low if low in SYSTEM_FLAGS else flag


def flag_of(keyword: str, spell: dict[str, str] | None = None) -> str:
    """Store keyword -> IMAP flag, custom keywords in the spelling the account
    first used (SPELL, from View.keyword_spellings)."""
    f = SYSTEM_FLAGS.get(keyword)
    if f is not None:
        return f
    return spell.get(keyword, keyword) if spell else keyword


def flags_list(keywords, spell: dict[str, str] | None = None) -> bytes:
    return ("(" + " ".join(flag_of(k, spell) for k in keywords) + ")").encode("utf-8")


def quoted(s: str | bytes, utf8: bool = False) -> bytes:
    """A quoted string when possible, else a literal (serialize.string)."""
    return serialize.string(s, utf8)


def mailbox_name(name: str, utf8: bool) -> bytes:
    """A mailbox name on the wire: UTF-8 when the client enabled it, else
    modified UTF-7 (RFC 3501 5.1.3)."""
    return serialize.mailbox(name, utf8)
