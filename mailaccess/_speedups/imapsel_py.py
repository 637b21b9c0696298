"""Scans behind the IMAP selected state, pure-Python twin (the source of truth).

Two loops that once ran per command over every message of a mailbox (issue
10: SELECT, EXPUNGE, CLOSE on a few thousand messages) run here over raw
store values, with no record or tuple built per message:

- ``uid_map``: the sequence map of a mailbox (UIDs and email ids as two
  ``array('I')``) from a cursor over its ``uid`` table rows;
- ``keyword_hits``: which of a list of emails have (or lack) one keyword,
  read from their encoded records (``store.records.EMAIL_LAYOUT``).

``imapsel_c`` is the compiled twin: same functions, same results.  Key
layouts come from the store (a ``keys.KeyShape`` and its reader); this module
builds no key of its own design.
"""
from __future__ import annotations

from array import array

from ..store.records import EMAIL_LAYOUT

_HEAD = EMAIL_LAYOUT.head
_I_NKW = EMAIL_LAYOUT.index("n_keywords")
_I_NMEM = EMAIL_LAYOUT.index("n_members")
_MEMBER_SIZE = EMAIL_LAYOUT.member.size


def uid_map(rows, prefix: bytes) -> tuple[array, array]:
    """ROWS: (key, value) pairs in key order; the leading ones whose key is
    PREFIX + a 4-byte big-endian UID (value: a 4-byte big-endian email id)
    are read, up to the first key that does not start with PREFIX.
    -> (UIDs, email ids), parallel ``array('I')``.  A row of another length
    raises ValueError."""
    uids, eids = array("I"), array("I")
    n = len(prefix)
    for k, v in rows:
        k = bytes(k)
        if k[:n] != prefix:
            break
        if len(k) != n + 4 or len(v) != 4:
            raise ValueError("uid row of unexpected size")
        uids.append(int.from_bytes(k[n:], "big"))
        eids.append(int.from_bytes(bytes(v), "big"))
    return uids, eids


def keyword_hits(read_email, eids, keyword: bytes, present: bool, limit: int = 0) -> list[int]:
    """The positions i in EIDS, ascending, whose email record (READ_EMAIL:
    ``eid -> encoded record or None``) exists and has KEYWORD (lowercase,
    UTF-8) when PRESENT, lacks it when not.  LIMIT > 0: stop after that many.
    A record too short for its own counts raises ValueError."""
    out: list[int] = []
    for i, e in enumerate(eids):
        data = read_email(e)
        if data is None:
            continue
        if len(data) < _HEAD.size:
            raise ValueError("email record too short")
        h = _HEAD.unpack_from(data)
        off = _HEAD.size + h[_I_NMEM] * _MEMBER_SIZE
        if off > len(data):
            raise ValueError("email record too short")
        has = bool(h[_I_NKW]) and keyword in bytes(data[off:]).split(b"\0")
        if has == present:
            out.append(i)
            if limit and len(out) >= limit:
                break
    return out
