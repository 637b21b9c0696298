"""Order candidates by sort keys: IMAP SORT (RFC 5256, RFC 5957) and JMAP
Email/query ``sort`` (RFC 8621 section 4.4.2).

Strings compare by i;ascii-casemap (RFC 5256 section 2.1, RFC 4790 section
9.2: ASCII letters mapped to upper case, so "[", "\\", "]", "^" and "_" sort
after the letters) extended to Unicode as i;unicode-casemap does (RFC 5051:
titlecase, then NFKD; titlecase of an ASCII letter is its upper case, so the
two agree on ASCII); the empty string (absent header) sorts first.  Each key may be reversed on its own; candidates equal
on every key keep their candidate order (IMAP: sequence number), also under
REVERSE, as RFC 5256 requires.
"""
from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from operator import itemgetter
from typing import Sequence

from mailaccess.store.emails import load_record
from mailaccess.store.records import EMAIL_LAYOUT, EmailRecord

from . import facts as _facts
from .facts import Facts, addr_mailbox, display_value

__all__ = ["SortKey", "sort", "sort_rows", "order_rows", "values", "FIELDS", "COLLATIONS",
           "addr_mailbox", "display_value", "collate", "ascii_casemap", "ascii_numeric"]

FIELDS = frozenset({
    "arrival", "date", "from", "to", "cc", "displayfrom", "displayto", "subject", "size",
    "receivedAt", "sentAt", "id", "jmapFrom", "jmapTo",
})
_KEYWORD_FIELDS = ("hasKeyword:", "someInThreadHaveKeyword:", "allInThreadHaveKeyword:")
_NEEDS_INDEX = frozenset({"date", "from", "to", "cc", "displayfrom", "displayto", "subject",
                          "sentAt", "jmapFrom", "jmapTo"})


@dataclass(frozen=True, slots=True)
class SortKey:
    """FIELD is one of FIELDS (IMAP names lowercase, JMAP names as JMAP spells
    them; JMAP's from/to are jmapFrom/jmapTo) or ``hasKeyword:KW`` / ``someInThreadHaveKeyword:KW`` /
    ``allInThreadHaveKeyword:KW`` (false sorts before true).  COLLATION (a
    name of COLLATIONS, RFC 4790) compares the string fields; None is
    :func:`collate` (what IMAP SORT uses)."""

    field: str
    reverse: bool = False
    collation: str | None = None

    def __post_init__(self):
        if self.collation is not None and self.collation not in COLLATIONS:
            raise ValueError(f"unknown collation {self.collation!r}")
        f = self.field
        if f in FIELDS:
            return
        for pre in _KEYWORD_FIELDS:
            if f.startswith(pre) and len(f) > len(pre):
                object.__setattr__(self, "field", pre + f[len(pre):].lower())
                return
        raise ValueError(f"unknown sort field {f!r}")


def collate(s: str) -> str:
    """The comparison form of a string: i;ascii-casemap on ASCII (upper case),
    i;unicode-casemap (per-character titlecase, then NFKD) beyond it."""
    if s.isascii():
        return s.upper()
    return unicodedata.normalize("NFKD", "".join(map(_title, s)))


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_casemap(s: str) -> str:
    """i;ascii-casemap (RFC 4790 9.2): ASCII letters to upper case, the rest
    compared by octet (code point order is UTF-8 octet order)."""
    return s.translate(_ASCII_UPPER)


def ascii_numeric(s: str) -> tuple[int, int]:
    """i;ascii-numeric (RFC 4790 9.1): the number the string starts with;
    a string not starting with a digit is greater than every number."""
    n = 0
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        n = n * 10 + ord(s[i]) - 48
        i += 1
    return (0, n) if i else (1, 0)


COLLATIONS = {
    "i;ascii-casemap": ascii_casemap,
    "i;unicode-casemap": collate,
    "i;ascii-numeric": ascii_numeric,
}
"""The collations a SortKey may name (JMAP Comparator ``collation``)."""


@functools.lru_cache(maxsize=4096)
def _title(c: str) -> str:
    """RFC 5051's simple titlecase mapping of one character (a character
    whose full mapping is longer, like "\u00df", stays as it is)."""
    t = c.title()
    return t if len(t) == 1 else c


def first_group_name(envelope: bytes, field: int) -> str | None:
    """The group name when the first address of envelope FIELD (2 from, 5
    to, 6 cc) starts a group (an address with NIL host and a mailbox, RFC
    9051 7.5.2), else None."""
    return _facts.group_text(
        _facts.first_groups(envelope)[_facts.GROUP_FIELDS.index(field)])


# the sort fields read from an email's facts (query/facts.py), before collation
_FACT_FIELD = {
    # RFC 5256 2.1: the base subject
    "subject": Facts._fields.index("base"),
    # RFC 5256 2.2: the first address's addr-mailbox, or the group name
    "from": Facts._fields.index("from_"), "to": Facts._fields.index("to"),
    "cc": Facts._fields.index("cc"),
    # RFC 5957 3: the display name, else the address, or the group name
    "displayfrom": Facts._fields.index("displayfrom"),
    "displayto": Facts._fields.index("displayto"),
    # RFC 8621 4.4.2: the name, else the email, of the first address of the
    # Email's from/to (asAddresses: groups are flattened, unlike the group
    # names RFC 5256/5957 sort by)
    "jmapFrom": Facts._fields.index("jmap_from"), "jmapTo": Facts._fields.index("jmap_to"),
}


_SENT = itemgetter(Facts._fields.index("sent"))

# fields read from the head of the email record alone (no keyword or
# membership decoding, no message index): the common JMAP/IMAP sorts
_HEAD_FIELDS = {"arrival": "received_at", "receivedAt": "received_at", "size": "size"}
_HEAD = EMAIL_LAYOUT.head


def _head_sort(view, acc: int, candidates: Sequence[tuple[int, int]], keys: list[SortKey]):
    """Sort values of record-head fields (and "id") only, reading each record
    in place; None when a key needs more."""
    cols = []
    for k in keys:
        if k.field == "id":
            cols.append(-1)
        elif k.field in _HEAD_FIELDS:
            cols.append(EMAIL_LAYOUT.index(_HEAD_FIELDS[k.field]))
        else:
            return None
    reader = view.email_reader(acc)
    unpack = _HEAD.unpack_from
    rows = []
    for key, eid in candidates:
        raw = reader(eid)
        head = unpack(raw) if raw is not None else None
        rows.append((key, tuple(eid if c < 0 else (head[c] if head is not None else 0)
                                for c in cols)))
    return rows


def sort(view, acc: int, candidates: Sequence[tuple[int, int]], keys: list[SortKey]) -> list[int]:
    """The keys of CANDIDATES ((key, email id) pairs) ordered by KEYS."""
    return [k for k, _ in sort_rows(view, acc, candidates, keys)]


def sort_rows(view, acc: int, candidates: Sequence[tuple[int, int]],
              keys: list[SortKey]) -> list[tuple[int, tuple]]:
    """``(key, values)`` of CANDIDATES ordered by KEYS, VALUES being each
    candidate's comparison value under each key (what :func:`sort` orders
    by; a caller keeping a sorted list places new entries with them)."""
    return order_rows(values(view, acc, candidates, keys), keys)


def order_rows(rows: list[tuple[int, tuple]], keys: Sequence[SortKey]) -> list[tuple[int, tuple]]:
    """ROWS ((key, values) in candidate order) ordered by KEYS.

    Stable sorts from the least significant key up; reverse=True keeps equal
    items in their original order, so ties stay in candidate order (RFC 5256
    section 3).  Positions are sorted, each by a column of one key's values
    (its __getitem__ as the key: no Python call per comparison key)."""
    at = list(range(len(rows)))
    for i in range(len(keys) - 1, -1, -1):
        col = [v[i] for _k, v in rows]
        at.sort(key=col.__getitem__, reverse=keys[i].reverse)
    return list(map(rows.__getitem__, at))


def values(view, acc: int, candidates: Sequence[tuple[int, int]],
           keys: list[SortKey]) -> list[tuple[int, tuple]]:
    """``(key, values)`` of CANDIDATES in candidate order (unsorted)."""
    if not keys:
        return [(k, ()) for k, _ in candidates]
    rows = _head_sort(view, acc, candidates, keys)
    if rows is not None:
        return rows
    eids = [e for _, e in candidates]
    fs = None
    if any(k.field in _NEEDS_INDEX for k in keys):
        fs = _facts.facts(view, acc, eids)
        if None in fs:
            fs = [f if f is not None else _facts.EMPTY for f in fs]
    recs: list[EmailRecord | None] = [None] * len(eids)
    empty = EmailRecord(0, b"", 0, 0, 0, 0, 0, [], [])

    def rec_of(p: int) -> EmailRecord:
        r = recs[p]
        if r is None:
            r = recs[p] = load_record(view, acc, eids[p], members=False) or empty
        return r

    thread_cache: dict[tuple[str, int], bool] = {}

    def thread_kw(fld: str, rec: EmailRecord) -> bool:
        ck = (fld, rec.thread)
        v = thread_cache.get(ck)
        if v is None:
            quant, _, kw = fld.partition("InThreadHaveKeyword:")
            members = [r for r in (view.email(acc, e)
                                    for e in view.thread_members(acc, rec.thread))
                       if r is not None] or [rec]
            has = [kw in r.keywords for r in members]
            v = all(has) if quant == "all" else any(has)
            thread_cache[ck] = v
        return v

    cols = []
    n = len(eids)
    for k in keys:
        fld = k.field
        coll = COLLATIONS[k.collation] if k.collation else collate
        i = _FACT_FIELD.get(fld)
        if i is not None:
            cols.append(_collated([f[i] for f in fs], coll))
        elif fld in ("date", "sentAt"):
            # RFC 5256 section 2.2: the Date: header in UTC, else the internal date
            col = list(map(_SENT, fs))
            if None in col:
                col = [s if s is not None else rec_of(p).received_at for p, s in enumerate(col)]
            cols.append(col)
        elif fld == "id":
            cols.append(eids)
        elif fld in ("arrival", "receivedAt"):
            cols.append([rec_of(p).received_at for p in range(n)])
        elif fld == "size":
            cols.append([rec_of(p).size for p in range(n)])
        elif fld.startswith("hasKeyword:"):
            kw = fld[11:]
            cols.append([kw in rec_of(p).keywords for p in range(n)])
        else:
            cols.append([thread_kw(fld, rec_of(p)) for p in range(n)])
    return list(zip([k for k, _ in candidates], zip(*cols)))


def _collated(strings: list[str], coll) -> list:
    """COLL of each of STRINGS, each distinct string collated once."""
    if (coll is collate or coll is ascii_casemap) and strings:
        # both map ASCII to upper case and leave the rest of ASCII as it is:
        # all the strings at once, joined by a character none of them holds
        joined = "\0".join(strings)
        if joined.isascii() and joined.count("\0") == len(strings) - 1:
            return joined.upper().split("\0")
    memo: dict[str, object] = {}
    out = []
    for s in strings:
        v = memo.get(s)
        if v is None:
            v = memo[s] = coll(s)
        out.append(v)
    return out
