"""The neutral query model: what IMAP SEARCH, JMAP Email/query FilterConditions
and ActiveSync Search all compile to, evaluated by :mod:`.engine`.

Nodes are small frozen values, validated at construction.  Protocol details
stay in the protocol layers, which translate before building a query:

- dates become epoch-second ranges, half-open ``[after, before)``: IMAP
  ``SINCE d`` is ``Received(after=start_of(d))``, ``BEFORE d`` is
  ``Received(before=start_of(d))``, ``ON d`` is both; WITHIN (RFC 5032)
  ``YOUNGER n`` is ``Received(after=now - n)``, ``OLDER n`` is
  ``Received(before=now - n + 1)`` (strictly older than n seconds); JMAP
  ``after``/``before`` map directly.  ``SENT*`` are :class:`Sent`,
  ``SAVED*`` (RFC 8514) are :class:`Saved`.
- sizes: IMAP ``LARGER n`` is ``Larger(n)`` (size > n), ``SMALLER n`` is
  ``Smaller(n)`` (size < n); JMAP ``minSize m`` is ``Larger(m - 1)``,
  ``maxSize m`` is ``Smaller(m)``.
- keywords use the lowercase JMAP form (``$seen``); IMAP ``UNSEEN`` is
  ``Not(Keyword("$seen"))``; session state such as \\Recent becomes a
  :class:`Uids` set.
- sequence sets become UID sets (:class:`Uids`) over the candidate keys.
- strings are substrings, matched case-insensitively on the normalised
  (casefolded, white space collapsed) text the indexer stored.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Union

__all__ = [
    "Query", "All", "And", "Or", "Not", "Keyword", "ThreadKeyword", "Uids", "EmailIds",
    "ThreadIds", "InMailbox", "InMailboxOtherThan", "Header", "From", "To", "Cc", "Bcc",
    "Subject", "Text", "Body", "Larger", "Smaller", "Received", "Sent", "Saved",
    "ModSeqAtLeast", "HasAttachment", "NOTHING",
]


def _check_int(name: str, v, *, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")


@dataclass(frozen=True, slots=True)
class All:
    """Every candidate."""


@dataclass(frozen=True, slots=True)
class And:
    items: tuple["Query", ...]

    def __init__(self, items: Iterable["Query"]):
        object.__setattr__(self, "items", tuple(items))
        _check_items(self.items)


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ITEMS; ``Or(())`` matches nothing."""

    items: tuple["Query", ...]

    def __init__(self, items: Iterable["Query"]):
        object.__setattr__(self, "items", tuple(items))
        _check_items(self.items)


@dataclass(frozen=True, slots=True)
class Not:
    item: "Query"

    def __post_init__(self):
        _check_items((self.item,))


@dataclass(frozen=True, slots=True)
class Keyword:
    """The email has keyword NAME (case-insensitive; stored lowercase)."""

    name: str

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("keyword names are non-empty strings")
        object.__setattr__(self, "name", self.name.lower())


@dataclass(frozen=True, slots=True)
class ThreadKeyword:
    """JMAP all/some/noneInThreadHaveKeyword, over the whole thread (every
    email of the thread in the account, not only the candidates)."""

    name: str
    quantifier: str  # "all" | "some" | "none"

    def __post_init__(self):
        if self.quantifier not in ("all", "some", "none"):
            raise ValueError("quantifier is all, some or none")
        object.__setattr__(self, "name", self.name.lower())


@dataclass(frozen=True, slots=True)
class Uids:
    """Candidate keys (IMAP UIDs, or email ids in JMAP) in inclusive RANGES.

    Build with ``Uids([(1, 10), (20, 20)])`` or ``Uids.of({1, 2, 3})``; the
    ranges are sorted and merged at construction.
    """

    ranges: tuple[tuple[int, int], ...]
    _starts: tuple[int, ...] = field(default=(), compare=False, repr=False)

    def __init__(self, ranges: Iterable[tuple[int, int]]):
        merged: list[list[int]] = []
        for lo, hi in sorted((min(a, b), max(a, b)) for a, b in ranges):
            _check_int("uid", lo)
            _check_int("uid", hi)
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        rs = tuple((a, b) for a, b in merged)
        object.__setattr__(self, "ranges", rs)
        object.__setattr__(self, "_starts", tuple(a for a, _ in rs))

    @classmethod
    def of(cls, keys: Iterable[int]) -> "Uids":
        return cls((k, k) for k in keys)

    def __contains__(self, key: int) -> bool:
        i = bisect.bisect_right(self._starts, key) - 1
        return i >= 0 and key <= self.ranges[i][1]


@dataclass(frozen=True, slots=True)
class EmailIds:
    ids: frozenset[int]

    def __post_init__(self):
        object.__setattr__(self, "ids", frozenset(self.ids))


@dataclass(frozen=True, slots=True)
class ThreadIds:
    ids: frozenset[int]

    def __post_init__(self):
        object.__setattr__(self, "ids", frozenset(self.ids))


@dataclass(frozen=True, slots=True)
class InMailbox:
    """JMAP inMailbox: the email is in mailbox MAILBOX."""

    mailbox: int


@dataclass(frozen=True, slots=True)
class InMailboxOtherThan:
    """JMAP inMailboxOtherThan: the email is in at least one mailbox not in MAILBOXES."""

    mailboxes: frozenset[int]

    def __post_init__(self):
        object.__setattr__(self, "mailboxes", frozenset(self.mailboxes))


@dataclass(frozen=True, slots=True)
class Header:
    """Header field NAME's decoded value contains TEXT; empty TEXT: the field
    is present (RFC 3501 HEADER, JMAP ``header``)."""

    name: str
    text: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or ":" in self.name:
            raise ValueError("header names are non-empty and have no colon")
        if not isinstance(self.text, str):
            raise TypeError("header text must be a str")


def From(text: str) -> Header:  # noqa: N802 - reads like the other nodes
    return Header("from", text)


def To(text: str) -> Header:  # noqa: N802
    return Header("to", text)


def Cc(text: str) -> Header:  # noqa: N802
    return Header("cc", text)


def Bcc(text: str) -> Header:  # noqa: N802
    return Header("bcc", text)


def Subject(text: str) -> Header:  # noqa: N802
    return Header("subject", text)


@dataclass(frozen=True, slots=True)
class Text:
    """TEXT: anywhere in the header fields or the body text."""

    text: str

    def __post_init__(self):
        if not isinstance(self.text, str):
            raise TypeError("text must be a str")


@dataclass(frozen=True, slots=True)
class Body:
    """BODY: in the body text (decoded text parts and attachment names)."""

    text: str

    def __post_init__(self):
        if not isinstance(self.text, str):
            raise TypeError("text must be a str")


@dataclass(frozen=True, slots=True)
class Larger:
    """size > n octets."""

    n: int

    def __post_init__(self):
        _check_int("n", self.n)


@dataclass(frozen=True, slots=True)
class Smaller:
    """size < n octets."""

    n: int

    def __post_init__(self):
        _check_int("n", self.n)


@dataclass(frozen=True, slots=True)
class _Range:
    after: int | None = None
    before: int | None = None

    def __post_init__(self):
        _check_int("after", self.after, allow_none=True)
        _check_int("before", self.before, allow_none=True)

    def holds(self, t: int) -> bool:
        return ((self.after is None or t >= self.after)
                and (self.before is None or t < self.before))


@dataclass(frozen=True, slots=True)
class Received(_Range):
    """Internal date (receivedAt) in [after, before), epoch seconds."""


@dataclass(frozen=True, slots=True)
class Sent(_Range):
    """Date: header in [after, before); no match when it is missing or bad.

    With ``wall_clock`` the header's own local date and time is compared (its
    zone offset added to the instant, bounds read as UTC): IMAP SENT* compare
    the date of the Date: header "disregarding time and timezone" (RFC 3501
    6.4.4), i.e. the day written in the header, not the UTC day."""

    wall_clock: bool = False


@dataclass(frozen=True, slots=True)
class Saved(_Range):
    """Save date (RFC 8514) of the membership in the searched mailbox (with
    no mailbox: of any membership) in [after, before)."""


@dataclass(frozen=True, slots=True)
class ModSeqAtLeast:
    """RFC 7162 MODSEQ: the email's modseq >= n (no per-flag modseqs here,
    so an entry name in the IMAP key is ignored, as the RFC allows)."""

    n: int

    def __post_init__(self):
        _check_int("n", self.n)


@dataclass(frozen=True, slots=True)
class HasAttachment:
    value: bool = True


Query = Union[All, And, Or, Not, Keyword, ThreadKeyword, Uids, EmailIds, ThreadIds,
              InMailbox, InMailboxOtherThan, Header, Text, Body, Larger, Smaller,
              Received, Sent, Saved, ModSeqAtLeast, HasAttachment]

_NODE_TYPES = (All, And, Or, Not, Keyword, ThreadKeyword, Uids, EmailIds, ThreadIds,
               InMailbox, InMailboxOtherThan, Header, Text, Body, Larger, Smaller,
               Received, Sent, Saved, ModSeqAtLeast, HasAttachment)


def _check_items(items) -> None:
    for it in items:
        if not isinstance(it, _NODE_TYPES):
            raise TypeError(f"not a query node: {it!r}")


NOTHING = Or(())
"""The query that matches no candidate."""
