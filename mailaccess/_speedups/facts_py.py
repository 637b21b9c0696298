"""Email facts hot path, pure Python: the source of truth.

``facts_c.pyx`` has the same functions, typed; tests hold both to the same
results.  ``mailaccess.query.facts`` is the public face.

:func:`extract` reads what query/facts.py needs from an encoded message
index (mime/index.py's storage form, version 2) in place: the meta JSON
from its "subject" key to its "jmap_body" key, and :func:`first_groups` of
the ENVELOPE.

:func:`first_groups` reads a stored ENVELOPE (IMAP wire form, RFC 9051
7.5.2: date subject from sender reply-to to cc bcc in-reply-to message-id)
in one pass, without building it, and tells for FROM, TO and CC whether the
field's first address starts a group: an address with NIL host and a
mailbox, the mailbox being the group name.  SORT by those fields sorts such
a message by the group name (RFC 5256 section 2.2, RFC 5957 section 3).
"""
from __future__ import annotations

import json
import re

from mailaccess.mime.index import INDEX_LAYOUT
from mailaccess.store.records import EMAIL_LAYOUT, decode_facts

# mime/index.py's storage form (INDEX_LAYOUT): a version byte, the u32
# big-endian end offsets of the seven fields (envelope first, meta last),
# then the fields; extract reads version 2 (its meta JSON's key order)
VERSION = 2
HEAD = INDEX_LAYOUT.head
assert VERSION in INDEX_LAYOUT.readable and HEAD.format == ">B7I"
assert INDEX_LAYOUT.fields[0] == "envelope" and INDEX_LAYOUT.fields[-1] == "meta"
NEED = ("subject", "from_", "to", "cc", "sent_at", "sent_at_tz", "message_id",
        "in_reply_to", "references", "has_attachment")
_SUBJECT_AT = re.compile(re.escape(b',"subject":')).search
_CUT_AT = re.compile(re.escape(b',"jmap_body":')).search
_decode = json.JSONDecoder().raw_decode

_BLOB_AT = EMAIL_LAYOUT.offset("blob")    # the email record's blob hash (32 bytes)
assert EMAIL_LAYOUT.code("blob") == "32s"

# positions in the ENVELOPE list of the fields first_groups reports, in order
FIELDS = (2, 5, 6)
_MAX_DIGITS = 9          # a literal's {size}: at most this many digits


def first_groups(env: bytes) -> tuple:
    """(from, to, cc): each the group name (the raw mailbox bytes, quoting
    removed) when that field's first address starts a group, else None.

    ENV must be one well-formed parenthesized list: values NIL, atoms,
    "quoted" strings (backslash escapes the next byte), {n}CRLF literals and
    nested lists, separated by spaces (0x20); bytes after its closing
    parenthesis are ignored.  Anything else (unbalanced, an unterminated
    string, a literal cut short) answers (None, None, None)."""
    n = len(env)
    pos = 0
    while pos < n and env[pos] == 0x20:
        pos += 1
    if pos >= n or env[pos] != 0x28:
        return (None, None, None)
    pos += 1
    depth = 1
    field = -1          # index of the current value at depth 1
    addr = -1           # index of the current value at depth 2
    elem = -1           # index of the current value at depth 3
    slot = -1           # FIELDS index of the current field, -1 when not reported
    first_list = False  # the reported field's first address is a list
    mailbox = None      # its third element when a string
    host_nil = False    # its fourth element is NIL
    found = [None, None, None]
    while True:
        while pos < n and env[pos] == 0x20:
            pos += 1
        if pos >= n:
            return (None, None, None)
        c = env[pos]
        if c == 0x29:                                   # )
            pos += 1
            depth -= 1
            if depth == 0:
                return tuple(found)
            if depth == 2 and slot >= 0 and addr == 0:
                # the first address of a reported field is complete
                if first_list and host_nil and mailbox is not None:
                    found[slot] = mailbox
            continue
        if depth == 1:
            field += 1
            addr = -1
            slot = FIELDS.index(field) if field in FIELDS else -1
            first_list, mailbox, host_nil = False, None, False
        elif depth == 2:
            addr += 1
            elem = -1
        elif depth == 3:
            elem += 1
        if c == 0x28:                                   # (
            if depth == 2 and slot >= 0 and addr == 0:
                first_list, mailbox, host_nil = True, None, False
            pos += 1
            depth += 1
            continue
        # a string: quoted, literal or atom
        if c == 0x22:
            j = pos + 1
            buf = bytearray()
            while j < n and env[j] != 0x22:
                if env[j] == 0x5C:
                    j += 1
                    if j >= n:
                        return (None, None, None)
                buf.append(env[j])
                j += 1
            if j >= n:
                return (None, None, None)
            value = bytes(buf)
            pos = j + 1
        elif c == 0x7B:
            j = pos + 1
            while j < n and 0x30 <= env[j] <= 0x39 and j - pos <= _MAX_DIGITS:
                j += 1
            if j == pos + 1 or j + 2 >= n or env[j] != 0x7D or env[j + 1] != 0x0D \
                    or env[j + 2] != 0x0A:
                return (None, None, None)
            start = j + 3
            end = start + int(env[pos + 1:j])
            if end > n:
                return (None, None, None)
            value = env[start:end]
            pos = end
        else:
            j = pos
            while j < n and env[j] not in (0x20, 0x28, 0x29):
                j += 1
            value = env[pos:j]
            if value == b"NIL":
                value = None
            pos = j
        if depth == 3 and slot >= 0 and addr == 0:
            if elem == 2:
                mailbox = value
            elif elem == 3:
                host_nil = value is None


def extract(data):
    """(subject, from_, to, cc, sent_at, sent_at_tz, message_id, in_reply_to,
    references, has_attachment, group from, group to, group cc) of the
    encoded index DATA (bytes or a buffer), the JSON values as json.loads
    gives them; None when it is not version 2, is cut short, or its meta
    does not hold those keys between `,"subject":` and `,"jmap_body":`
    (the caller then decodes the whole index).

    The meta JSON (version 2) is one object written in mime/index.py's
    _META order: "subject" ... "has_attachment" come after "parts" and
    before "jmap_body".  A key of the top-level object is found as the
    first `,"subject":` / `,"jmap_body":` (inside a JSON string a quote is
    escaped, and "parts" holds lists only, no keys).  The JSON is ASCII."""
    n = len(data)
    if n <= HEAD.size or data[0] != VERSION:
        return None
    ends = HEAD.unpack_from(data)
    h = HEAD.size
    if n < h + ends[7]:
        return None
    start, end = h + ends[6], h + ends[7]
    a = _SUBJECT_AT(data, start, end)
    if a is None:
        return None
    b = _CUT_AT(data, a.end(), end)
    if b is None:
        return None
    try:
        doc = _decode("{" + str(data[a.start() + 1:b.start()], "ascii") + "}")[0]
    except ValueError:
        return None
    if type(doc) is not dict or not all(k in doc for k in NEED):
        return None
    return tuple(doc[k] for k in NEED) + first_groups(bytes(data[h:h + ends[1]]))


def facts_of(data, cls):
    """The facts (a CLS: query/facts.py's Facts) of the encoded index DATA
    when they are quick to finish here, else None: the caller computes them
    from extract's values (facts.py's _make) or the decoded index.  The
    compiled twin finishes common mail itself (no group in the ENVELOPE, no
    Message-ID needing more than its angle brackets stripped); this one
    always leaves it to the caller, whose answer is the same."""
    return None


def from_record(data, cls):
    """The facts (a CLS) of a ``msg.facts`` record DATA (store/records.py
    ``encode_facts``), None when it is not one this code reads."""
    v = decode_facts(data)
    return None if v is None else tuple.__new__(cls, v)


def read_many(read_facts, read_email, read_index, eids, cls, slow):
    """For each email id of EIDS (read_facts: eid -> msg.facts record, or
    None, itself None when the store has no such table; read_email: eid ->
    email record, or None; read_index: blob hash -> encoded index, or None;
    all store Readers): None when the email is gone, else its facts: those
    of its facts record (``from_record``) when it has one, else
    ``facts_of(index, CLS)``, or ``SLOW(index)`` when that declines
    (SLOW(None): no index)."""
    out = []
    for eid in eids:
        if read_facts is not None:
            rec = read_facts(eid)
            f = None if rec is None else from_record(rec, cls)
            if f is not None:
                out.append(f)
                continue
        raw = read_email(eid)
        if raw is None:
            out.append(None)
            continue
        data = read_index(bytes(raw[_BLOB_AT:_BLOB_AT + 32]))
        out.append(slow(data) if data is None else (facts_of(data, cls) or slow(data)))
    return out


def cost(f) -> int:
    """Bytes query/facts.py's cache counts for the facts F (a Facts), from
    above: 900 for the objects (the key, the tuple, its dict node, ten
    string headers of 49 bytes; sys.getsizeof counts 870 on typical mail,
    where some strings are shared or empty) plus the characters of the nine
    strings (subject .. jmap_to) at 1 byte each, 4 when any is beyond ASCII,
    50 and 4 a character for a Message-ID, and per reference 60, its
    characters as the strings'."""
    text = "".join(f[3:12])
    n = 900 + len(text) * (1 if text.isascii() else 4)
    if f[12]:
        n += 50 + len(f[12]) * 4
    refs = f[13]
    if refs:
        text = "".join(refs)
        n += 60 * len(refs) + len(text) * (1 if text.isascii() else 4)
    return n


def costs(fs: list) -> list:
    """``cost`` of each facts of FS."""
    return list(map(cost, fs))
