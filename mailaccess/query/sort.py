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
from typing import Sequence

from mailaccess.mime import index as mindex
from mailaccess.store.emails import load_email
from mailaccess.store.records import EMAIL_LAYOUT, EmailRecord

__all__ = ["SortKey", "sort", "sort_rows", "values", "FIELDS", "COLLATIONS", "addr_mailbox",
           "display_value", "collate", "ascii_casemap", "ascii_numeric", "sent_date"]

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


def addr_mailbox(addrs) -> str:
    """RFC 5256 FROM/TO/CC: the [IMAP] addr-mailbox (local part) of the first address."""
    if not addrs:
        return ""
    email = addrs[0][1] or ""
    local, at, _host = email.rpartition("@")
    return local if at else email


def display_value(addrs) -> str:
    """RFC 5957 section 3: the first address's decoded display name if not
    empty, else addr-mailbox@addr-host, else addr-mailbox, else empty."""
    if not addrs:
        return ""
    name, email = addrs[0][0], addrs[0][1] or ""
    if name and name.strip():
        return name.strip()
    return email


# positions in the ENVELOPE list (RFC 9051 7.5.2): date subject from sender
# reply-to to cc bcc in-reply-to message-id
_ENVELOPE_FIELD = {"from": 2, "displayfrom": 2, "to": 5, "displayto": 5, "cc": 6}


def _envelope_items(data: bytes) -> list | None:
    """Parse an ENVELOPE in IMAP wire form into nested lists of bytes/None."""
    pos = 0
    n = len(data)

    def value():
        nonlocal pos
        while pos < n and data[pos] == 0x20:
            pos += 1
        if pos >= n:
            raise ValueError("truncated")
        c = data[pos]
        if c == 0x28:                       # (
            pos += 1
            out = []
            while True:
                while pos < n and data[pos] == 0x20:
                    pos += 1
                if pos >= n:
                    raise ValueError("truncated")
                if data[pos] == 0x29:       # )
                    pos += 1
                    return out
                out.append(value())
        if c == 0x22:                       # "quoted"
            pos += 1
            buf = bytearray()
            while pos < n and data[pos] != 0x22:
                if data[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                buf.append(data[pos])
                pos += 1
            pos += 1
            return bytes(buf)
        if c == 0x7B:                       # {n}\r\n literal
            close = data.index(b"}", pos)
            size = int(data[pos + 1:close])
            start = close + 3
            pos = start + size
            return data[start:pos]
        end = pos
        while end < n and data[end] not in b" ()":
            end += 1
        atom = data[pos:end]
        pos = end
        return None if atom == b"NIL" else atom

    try:
        v = value()
    except (ValueError, IndexError):
        return None
    return v if isinstance(v, list) else None


def first_group_name(envelope: bytes, field: int) -> str | None:
    """The group name when the first address of envelope FIELD starts a group
    (an address with NIL host and a mailbox, RFC 9051 7.5.2), else None."""
    items = _envelope_items(envelope)
    if not items or len(items) <= field or not items[field]:
        return None
    first = items[field][0]
    if not isinstance(first, list) or len(first) < 4:
        return None
    if first[3] is None and first[2] is not None:
        from email.header import decode_header, make_header
        raw = first[2].decode("utf-8", "replace")
        try:
            return str(make_header(decode_header(raw)))
        except Exception:  # a malformed encoded word: the raw text
            return raw
    return None


def sent_date(rec: EmailRecord, mi: mindex.MessageIndex | None) -> int:
    """RFC 5256 section 2.2: the Date: header in UTC, else the internal date."""
    if mi is not None and mi.sent_at is not None:
        return mi.sent_at
    return rec.received_at


def _value(fld: str, eid: int, rec: EmailRecord, mi, thread_kw, coll=collate) -> object:
    if fld in ("arrival", "receivedAt"):
        return rec.received_at
    if fld == "size":
        return rec.size
    if fld == "id":
        return eid
    if fld in ("date", "sentAt"):
        return sent_date(rec, mi)
    if fld == "subject":
        return coll(mindex.base_subject(mi.subject or "")) if mi else coll("")
    if fld in ("jmapFrom", "jmapTo"):
        # RFC 8621 4.4.2: the name, else the email, of the first address of
        # the Email's from/to (asAddresses: groups are flattened, unlike the
        # group names RFC 5256/5957 sort by)
        if mi is None:
            return coll("")
        return coll(display_value(mi.from_ if fld == "jmapFrom" else mi.to))
    if fld in ("from", "to", "cc", "displayfrom", "displayto"):
        if mi is None:
            return coll("")
        # RFC 5256: the first address of the field; when that is a group,
        # its addr-mailbox in the ENVELOPE is the group name
        group = first_group_name(mi.envelope, _ENVELOPE_FIELD[fld])
        if group is not None:
            return coll(group)
        if fld in ("displayfrom", "displayto"):
            return coll(display_value(mi.from_ if fld == "displayfrom" else mi.to))
        return coll(addr_mailbox(getattr(mi, "from_" if fld == "from" else fld)))
    if fld.startswith("hasKeyword:"):
        return fld[11:] in rec.keywords
    return thread_kw(fld, rec)


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
    rows = values(view, acc, candidates, keys)
    # stable sorts from the least significant key up; reverse=True keeps
    # equal items in their original order, so ties stay in candidate order
    for i in range(len(keys) - 1, -1, -1):
        rows.sort(key=lambda row: row[1][i], reverse=keys[i].reverse)
    return rows


def values(view, acc: int, candidates: Sequence[tuple[int, int]],
           keys: list[SortKey]) -> list[tuple[int, tuple]]:
    """``(key, values)`` of CANDIDATES in candidate order (unsorted)."""
    if not keys:
        return [(k, ()) for k, _ in candidates]
    rows = _head_sort(view, acc, candidates, keys)
    if rows is not None:
        return rows
    need_index = any(k.field in _NEEDS_INDEX for k in keys)
    thread_cache: dict[tuple[str, int], bool] = {}

    def thread_kw(fld: str, rec: EmailRecord) -> bool:
        ck = (fld, rec.thread)
        v = thread_cache.get(ck)
        if v is None:
            quant, _, kw = fld.partition("InThreadHaveKeyword:")
            recs = [r for r in (view.email(acc, e) for e in view.thread_members(acc, rec.thread))
                    if r is not None] or [rec]
            has = [kw in r.keywords for r in recs]
            v = all(has) if quant == "all" else any(has)
            thread_cache[ck] = v
        return v

    empty = EmailRecord(0, b"", 0, 0, 0, 0, 0, [], [])
    colls = [COLLATIONS[k.collation] if k.collation else collate for k in keys]
    rows = []
    for key, eid in candidates:
        em = load_email(view, acc, eid, members=False)
        rec = em.record if em is not None else empty
        mi = em.index if need_index and em is not None else None
        rows.append((key, tuple(_value(k.field, eid, rec, mi, thread_kw, colls[i])
                                for i, k in enumerate(keys))))
    return rows
