"""The session's vocabulary between store and wire: keyword <-> IMAP flag,
JMAP role <-> special-use attribute (both built from mailaccess.vocab, the one
table), and a keyword list as FETCH's flag list.  (Every other response's
bytes come from proto/imap/serialize.py.)"""
from __future__ import annotations

from .. import vocab

# keyword -> IMAP system flag ("$seen" -> "\\Seen") and back (lowercased flag)
SYSTEM_FLAGS = vocab.KEYWORD_TO_IMAP_FLAG
FLAG_TO_KEYWORD = vocab.IMAP_FLAG_TO_KEYWORD

# JMAP role -> IMAP special-use attribute ("drafts" -> "\\Drafts") and back
ROLE_TO_SPECIAL_USE = vocab.ROLE_TO_SPECIAL_USE
SPECIAL_USE_TO_ROLE = vocab.SPECIAL_USE_TO_ROLE


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
    """KEYWORDS as a FETCH FLAGS list: ``flag_of`` of each, without a call
    per keyword (a catch-up formats one per changed message)."""
    system = SYSTEM_FLAGS.get
    if spell:
        custom = spell.get
        names = [system(k) or custom(k, k) for k in keywords]
    else:
        names = [system(k) or k for k in keywords]
    return ("(" + " ".join(names) + ")").encode("utf-8")
