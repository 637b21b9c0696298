"""The session's vocabulary between store and wire: keyword <-> IMAP flag,
JMAP role <-> special-use attribute, and a keyword list as FETCH's flag
list.  (Every other response's bytes come from proto/imap/serialize.py.)"""
from __future__ import annotations

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
