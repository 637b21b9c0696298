"""Substring scans over many normalised texts: the hot loop of SEARCH TEXT/BODY.

Pure-Python twin of ``search_c``.  Texts and needles are UTF-8 bytes of the
normalised search text (casefolded, white space collapsed, see
``mailaccess.mime.index.normalize_search``), so a byte substring is exactly a
character substring and case-insensitivity is already in the data.  A text
is any object with the buffer protocol (bytes, or a memoryview slice of an
LMDB value: the compiled twin scans it in place, this one has to copy it,
since ``in`` on a memoryview compares items, not substrings).
"""
from __future__ import annotations


def find_all(texts: list, needle: bytes) -> list[int]:
    """Positions i (ascending) of the TEXTS that contain NEEDLE."""
    if not needle:
        return list(range(len(texts)))
    return [i for i, t in enumerate(texts)
            if needle in (t if type(t) is bytes else bytes(t))]


def find_header(texts: list, name: bytes, needle: bytes) -> list[int]:
    """Positions of the TEXTS (``name: value`` lines joined by ``\\n``) with a
    line for header NAME (lowercase, no colon) whose value contains NEEDLE;
    an empty NEEDLE asks only that such a line exists."""
    prefix = name + b":"
    n = len(prefix)
    out = []
    for i, t in enumerate(texts):
        t = bytes(t)
        if needle and needle not in t:
            continue
        for line in t.split(b"\n"):
            if line[:n] == prefix and needle in line[n:]:
                out.append(i)
                break
    return out


# --- record conditions and header conditions over a chunk of emails ---------------
#
# The SEARCH conditions on the email record (keywords, size, dates, modseq,
# thread, mailboxes, save dates) and on one header field, tested on the stored
# values themselves: the record read at the offsets EMAIL_LAYOUT gives (no
# EmailRecord built), the header text sliced out of the message index.
# READ_EMAIL is a store Reader (``View.email_reader``: email id -> encoded
# record or None), READ_INDEX one of the index table (``View.index_reader``:
# blob hash -> encoded index or None).  An email whose record is gone reads as
# the empty record (no keywords, no mailboxes, every number 0), one without a
# readable index as no header text: what the engine's Python path reads.

from ..mime.index import INDEX_LAYOUT, SEARCH_ROW_VERSION  # noqa: E402
from ..store.records import EMAIL_LAYOUT  # noqa: E402

# condition codes (the first item of a COND tuple, see match_records)
KEYWORD, SIZE, RECEIVED, MODSEQ, THREAD, IN_MAILBOX, OTHER_MAILBOX, SAVED = range(8)

_HEAD = EMAIL_LAYOUT.head
_MEMBER = EMAIL_LAYOUT.member
_I_RECEIVED = EMAIL_LAYOUT.index("received_at")
_I_SIZE = EMAIL_LAYOUT.index("size")
_I_THREAD = EMAIL_LAYOUT.index("thread")
_I_MS = EMAIL_LAYOUT.index("last_ms")
_I_NKW = EMAIL_LAYOUT.index("n_keywords")
_I_NMEM = EMAIL_LAYOUT.index("n_members")
_FIELD = {KEYWORD: None, SIZE: _I_SIZE, RECEIVED: _I_RECEIVED, MODSEQ: _I_MS,
          THREAD: _I_THREAD}
_EMPTY = (0,) * len(EMAIL_LAYOUT.fields)
_BLOB_AT = EMAIL_LAYOUT.offset("blob")
_BLOB_END = _BLOB_AT + EMAIL_LAYOUT.size("blob")
_IDX_HEAD = INDEX_LAYOUT.head
_IDX_READABLE = frozenset(INDEX_LAYOUT.readable)
_HEADERS_FIELD = INDEX_LAYOUT.fields.index("search_headers")
_ROW_VERSION = SEARCH_ROW_VERSION[0]


def _within(v: int, lo, hi) -> bool:
    return (lo is None or v >= lo) and (hi is None or v < hi)


def _record_holds(data, cond: tuple) -> bool:
    op = cond[0]
    if data is None:
        head = _EMPTY
    else:
        if len(data) < _HEAD.size:
            raise ValueError("damaged email record")
        head = _HEAD.unpack_from(data)
        if _HEAD.size + head[_I_NMEM] * _MEMBER.size > len(data):
            raise ValueError("damaged email record")
    if op == SIZE or op == RECEIVED or op == MODSEQ:
        return _within(head[_FIELD[op]], cond[1], cond[2])
    if op == THREAD:
        return head[_I_THREAD] in cond[1]
    if data is None:
        return False        # no keywords, no mailboxes
    nmem = head[_I_NMEM]
    if op == KEYWORD:
        # the keyword tail: NUL-joined UTF-8 (records.decode_keywords), none
        # when the count is 0 or the tail is empty
        tail = bytes(data[_HEAD.size + nmem * _MEMBER.size:])
        return bool(head[_I_NKW]) and len(tail) > 0 and cond[1] in tail.split(b"\0")
    members = [_MEMBER.unpack_from(data, _HEAD.size + i * _MEMBER.size) for i in range(nmem)]
    if op == IN_MAILBOX:
        return any(mb == cond[1] for mb, _u, _s in members)
    if op == OTHER_MAILBOX:
        return any(mb not in cond[1] for mb, _u, _s in members)
    if op == SAVED:
        mbx, lo, hi = cond[1], cond[2], cond[3]
        if mbx is None:
            return any(_within(sd, lo, hi) for _mb, _u, sd in members)
        for mb, _u, sd in members:
            if mb == mbx:       # the first membership in MBX (EmailRecord.member)
                return _within(sd, lo, hi)
        return False
    raise ValueError(f"unknown record condition {op!r}")


def match_records(read_email, eids: list, pos: list, cond: tuple,
                  want: bool = True) -> list[int]:
    """The positions p of POS (in order) whose email ``eids[p]`` satisfies
    COND (with WANT False: does not), a tuple whose first item says what it
    tests:

    - ``(KEYWORD, name)``: NAME (UTF-8 bytes) is one of its keywords;
    - ``(SIZE | RECEIVED | MODSEQ, lo, hi)``: lo <= the field < hi, None
      for no bound (size, internal date, modseq of the last change);
    - ``(THREAD, ids)``: its thread id is in the set IDS;
    - ``(IN_MAILBOX, mailbox)``: one of its memberships is in MAILBOX;
    - ``(OTHER_MAILBOX, mailboxes)``: one is in a mailbox not in MAILBOXES;
    - ``(SAVED, mailbox, lo, hi)``: the save date of its (first) membership
      in MAILBOX, or with MAILBOX None of any membership, is in [lo, hi).

    A record too short for its head and memberships: ValueError.
    """
    return [p for p in pos if _record_holds(read_email(eids[p]), cond) == want]


def header_text(read_email, read_index, eid: int):
    """The search header text of email EID (``search_headers`` of its
    index): b"" when the email, its index or a readable version of it is
    missing, the field's bytes clamped to the value as a slice is."""
    rec = read_email(eid)
    if rec is None:
        return b""
    data = read_index(bytes(rec[_BLOB_AT:_BLOB_END]))
    if data is None or not len(data) or data[0] not in _IDX_READABLE \
            or len(data) < _IDX_HEAD.size:
        return b""
    ends = _IDX_HEAD.unpack_from(data)
    k = _HEADERS_FIELD + 1
    return bytes(data[_IDX_HEAD.size + ends[k - 1]:_IDX_HEAD.size + ends[k]])


def _odd_line(t: bytes, prefix: bytes, odd: tuple) -> bool:
    for line in t.split(b"\n"):
        if line[:len(prefix)] == prefix and any(c in line for c in odd):
            return True
    return False


def match_headers(read_email, read_index, eids: list, pos: list, name: bytes, needle: bytes,
                  odd: tuple = ()) -> tuple[list[int], list[int]]:
    """(found, unusual) over the positions POS: FOUND those whose email's
    search header text has a line for header NAME whose value contains
    NEEDLE (``find_header``'s rule); UNUSUAL those of the others with a line
    for NAME containing any of the byte strings ODD (the engine decodes their
    addresses)."""
    found, unusual = [], []
    prefix = name + b":"
    for p in pos:
        t = header_text(read_email, read_index, eids[p])
        if find_header([t], name, needle):
            found.append(p)
        elif odd and _odd_line(t, prefix, odd):
            unusual.append(p)
    return found, unusual


def match_header_rows(read_row, eids: list, pos: list, name: bytes,
                      needle: bytes) -> tuple[list[int], list[int]]:
    """(found, missing) over the positions POS, from the ``msg.hdr`` rows
    READ_ROW gives (``View.search_row_reader``: email id -> row or None; see
    mime/index.py search_row): FOUND those whose row has a line for header
    NAME whose value contains NEEDLE (``find_header``'s rule over the lines
    after the row's version byte), MISSING those with no row (or one of
    another version), which the caller searches in their index."""
    found, missing = [], []
    for p in pos:
        row = read_row(eids[p])
        if row is None or len(row) < 1 or row[0] != _ROW_VERSION:
            missing.append(p)
        elif find_header([bytes(row[1:])], name, needle):
            found.append(p)
    return found, missing


# --- the flags column (views/flag_column.py) -------------------------------------
#
# A mailbox's keywords and modseqs as parallel arrays, one slot per UID, and
# SEARCH's flag conditions answered on them: a candidate set is a byte string
# with one byte (0 or 1) per candidate, so that And/Or/Not are integer
# operations on ``int.from_bytes`` of it.

FLAG_SLOTS = 32
"""Keywords a column gives a bit (the ``bits`` are ``array('I')``)."""


def flag_rows(read_email, eids, names):
    """Per email of EIDS: (bits, modseqs, full).  BITS (``array('I')``) has
    bit i set when the email has keyword ``NAMES[i]`` (bytes); a keyword not
    in NAMES is appended to it while it holds fewer than FLAG_SLOTS, else
    FULL is True (that keyword has no bit).  MODSEQS (``array('Q')``) is the
    record's last_ms.  A gone email reads as the empty record (no keywords,
    modseq 0).  NAMES None: no keyword is looked at (bits all 0)."""
    from array import array
    bits, mss = array("I"), array("Q")
    slot = {n: i for i, n in enumerate(names)} if names is not None else None
    full = False
    for e in eids:
        data = read_email(e)
        if data is None:
            bits.append(0)
            mss.append(0)
            continue
        if len(data) < _HEAD.size:
            raise ValueError("damaged email record")
        head = _HEAD.unpack_from(data)
        off = _HEAD.size + head[_I_NMEM] * _MEMBER.size
        if off > len(data):
            raise ValueError("damaged email record")
        mss.append(head[_I_MS])
        b = 0
        if slot is not None and head[_I_NKW] and off < len(data):
            for kw in bytes(data[off:]).split(b"\0"):
                i = slot.get(kw)
                if i is None:
                    if len(names) >= FLAG_SLOTS:
                        full = True
                        continue
                    i = slot[kw] = len(names)
                    names.append(kw)
                b |= 1 << i
        bits.append(b)
    return bits, mss, full


def flag_align(col_uids, keys):
    """The position in COL_UIDS of each of KEYS (both ascending), as an
    ``array('i')``; None when one of KEYS is not in COL_UIDS."""
    from array import array
    out = array("i")
    j, n = 0, len(col_uids)
    for k in keys:
        while j < n and col_uids[j] < k:
            j += 1
        if j >= n or col_uids[j] != k:
            return None
        out.append(j)
        j += 1
    return out


def flag_bits(idx, bits, mask: int) -> bytes:
    """One byte per position of IDX: 1 when ``bits[idx[i]] & MASK``."""
    return bytes(1 if bits[j] & mask else 0 for j in idx)


def flag_min(idx, mss, lo: int) -> bytes:
    """One byte per position of IDX: 1 when ``mss[idx[i]] >= LO``."""
    return bytes(1 if mss[j] >= lo else 0 for j in idx)


def flag_pick(chosen: bytes, keys, idx, mss) -> tuple[list[int], int]:
    """(the KEYS whose byte in CHOSEN is odd, the highest ``mss[idx[i]]``
    among them, 0 when none)."""
    out, top = [], 0
    for i, c in enumerate(chosen):
        if c & 1:
            out.append(keys[i])
            top = max(top, mss[idx[i]])
    return out, top


def number_list(nums) -> bytes:
    """``b" ".join(b"%d" % n for n in NUMS)``: the numbers of a SEARCH or
    SORT answer (10,000 of them for ``SEARCH UNSEEN`` in a big mailbox)."""
    return b" ".join(b"%d" % n for n in nums)
