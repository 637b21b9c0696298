"""The message index: parse a raw RFC 5322 message once, at append/delivery.

:func:`index_message` turns raw bytes into a :class:`MessageIndex`: ENVELOPE,
BODYSTRUCTURE and BODY in their IMAP wire form, the part spans that FETCH
BODY[...]/BINARY[...] and JMAP downloads slice with, the JMAP bodyStructure
and textBody/htmlBody/attachments, and normalised search text.  FETCH and
Email/get then read prepared bytes instead of re-parsing the message.

The parsing itself is the ``msgindex`` hot path (``mailaccess._speedups``):
the compiled module when built, else its pure-Python twin; the choice is made
once, here, at import (MAILACCESS_NO_EXTENSIONS=1 forces the twin).
"""
from __future__ import annotations

import json
import re
import struct
import types
from dataclasses import MISSING, dataclass, fields as dc_fields

from mailaccess import _speedups
from mailaccess.mime import fieldspans
from mailaccess.mime.parts import Part

_impl = _speedups.load("msgindex")

__all__ = [
    "MessageIndex", "Part", "UnknownCTE", "index_message", "index_with", "encode_index",
    "decode_index", "index_field", "normalize_search", "base_subject", "part_bytes",
    "header_fields", "header_span", "decoded_part", "body_text", "index_field_span",
    "index_fields", "repeated_fields", "stored_repeated_fields",
    "FORMAT_VERSION", "READABLE_VERSIONS", "IndexFormatError", "index_version",
    "IndexSummary", "SUMMARY_FIELDS", "index_summary", "decode_index_meta",
    "index_header_end", "meta_header_end", "search_row", "address_text", "SEARCH_ROW_VERSION",
    "SEARCH_ROW_MAX", "ROW_HEADERS", "ADDRESS_FIELDS", "ODD_ADDRESS",
]

Address = tuple  # (name: str | None, email: str)


@dataclass(frozen=True, slots=True)
class MessageIndex:
    size: int
    header_end: int
    lines: int
    envelope: bytes
    bodystructure: bytes
    body: bytes
    parts: tuple[Part, ...]
    subject: str
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    sender: tuple[Address, ...]
    sent_at: int | None
    sent_at_tz: int | None
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    search_headers: str
    search_body: str
    preview: str
    has_attachment: bool
    jmap_body: dict
    text_body: tuple[str, ...]
    html_body: tuple[str, ...]
    attachments: tuple[str, ...]

    def part(self, section: str) -> Part | None:
        for p in self.parts:
            if p.section == section:
                return p
        return None


class UnknownCTE(ValueError):
    """decoded_part on a part whose Content-Transfer-Encoding is unknown (RFC 3516 UNKNOWN-CTE)."""


def index_with(raw: bytes, impl: types.ModuleType) -> MessageIndex:
    """index_message with an explicit twin (tests compare both in one process)."""
    try:
        return MessageIndex(*impl.build(bytes(raw)))
    except Exception:  # a bug must not lose the message: index it as opaque text
        return _fallback(bytes(raw))


def index_message(raw: bytes) -> MessageIndex:
    """Index a raw message; never raises on any bytes input."""
    return index_with(raw, _impl)


def _fallback(raw: bytes) -> MessageIndex:
    n = len(raw)
    lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
    body = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" %d %d)' % (n, lines)
    part = Part("1", 0, 0, n, "text/plain", "7bit", "us-ascii")
    return MessageIndex(
        n, 0, lines, b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
        body[:-1] + b" NIL NIL NIL NIL)", body,
        (Part("", 0, 0, n, "text/plain", "7bit", "us-ascii"), part),
        "", (), (), (), (), (), (), None, None, None, (), (), "", "", "", False,
        {"partId": "1", "headers": [], "name": None, "type": "text/plain", "charset": "us-ascii",
         "disposition": None, "cid": None, "language": None, "location": None, "size": n},
        ("1",), ("1",), (),
    )


# ---------------------------------------------------------------- storage form
#
# Framing (every readable version): one version byte, the end offset of each
# of the seven fields in _FIELDS order (u32 big-endian), then the fields.  The
# wire forms and search text are bytes, so FETCH and SEARCH slice one field
# without decoding the rest; the FETCH fast path (_speedups/fetchfmt_*) reads
# this framing directly and accepts every version in READABLE_VERSIONS.
#
# The "meta" field is JSON:
#   version 1: a list, one value per name of _META_V1, by position (read only);
#   version 2: an object keyed by MessageIndex field name.  Readers ignore
#     names they do not know, and a field added later with a default may be
#     missing from older records, so adding a field needs no version bump and
#     no reindex; a record missing a field without default is an error.
#     Parts are positional lists in Part's field order: fields are appended
#     with defaults, and readers drop trailing values they do not know.
# A change that older code would misread (another framing, a field renamed or
# re-typed) takes a new FORMAT_VERSION, reading of the older ones here, and
# `mailaccess reindex` (mailaccess/reindex.py) to rewrite stored indexes.
#
# The header end without the JSON: both versions write "size" then
# "header_end" first (version 2's object follows _META order, which starts
# with them; version 1's list is _META_V1).  So the meta field starts with
# LEAD, the size's digits, SEP, the header end's digits and a comma, (LEAD,
# SEP) per version in _HEADER_END_AT (INDEX_LAYOUT.header_end_at, for the
# compiled FETCH path).  FETCH of the whole message's header (HEADER,
# HEADER.FIELDS, TEXT, RFC822.HEADER) reads that prefix (meta_header_end) and
# decodes the JSON only when the prefix is not there.

FORMAT_VERSION = 2                 # what encode_index writes
READABLE_VERSIONS = (1, 2)         # what decode_index reads; all share _HEAD framing
_READABLE = frozenset(READABLE_VERSIONS)
_FIELDS = ("envelope", "bodystructure", "body", "search_headers", "search_body", "preview", "meta")
_FIELD_INDEX = {name: i for i, name in enumerate(_FIELDS)}
_HEAD = struct.Struct(">B%dI" % len(_FIELDS))
_TEXT_FIELDS = ("search_headers", "search_body", "preview")
_META = tuple(
    f.name for f in dc_fields(MessageIndex)
    if f.name not in ("envelope", "bodystructure", "body") and f.name not in _TEXT_FIELDS
)
# version 1's positional meta list, frozen: never edit (stored records use it)
_META_V1 = ("size", "header_end", "lines", "parts", "subject", "from_", "to", "cc", "bcc",
            "reply_to", "sender", "sent_at", "sent_at_tz", "message_id", "in_reply_to",
            "references", "has_attachment", "jmap_body", "text_body", "html_body",
            "attachments")
_DEFAULTS = {f.name: f.default for f in dc_fields(MessageIndex) if f.name in _META
             and f.default is not MISSING}
_ADDRESS_FIELDS = ("from_", "to", "cc", "bcc", "reply_to", "sender")
_TUPLE_FIELDS = ("in_reply_to", "references", "text_body", "html_body", "attachments")
_PART_ARITY = len(Part._fields)
_HEADER_END_AT = ((1, b"[", b","), (2, b'{"size":', b',"header_end":'))
assert _META[:2] == _META_V1[:2] == ("size", "header_end")


class IndexFormatError(ValueError):
    """A stored index this code cannot read: unknown version, or a record
    missing a required field.  The message says what to run."""


def index_version(data: bytes | memoryview | None) -> int:
    """The format version of a stored index (0 for none or an empty value)."""
    return data[0] if data is not None and len(data) else 0


def _check_version(data) -> int:
    ver = index_version(data)
    if ver not in READABLE_VERSIONS:
        if ver > FORMAT_VERSION:
            raise IndexFormatError(
                f"message index format version {ver} is newer than this mailaccess reads "
                f"(up to {FORMAT_VERSION}): run the newer mailaccess that wrote it")
        raise IndexFormatError(
            f"unknown message index format version {ver} (this mailaccess reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}): run `mailaccess reindex`")
    return ver


@dataclass(frozen=True)
class IndexLayout:
    """The framing of the storage form, for hot paths that slice it in place
    (the FETCH fast path and its compiled twin read this at import): a
    VERSION byte, then HEAD's u32 end offsets of FIELDS (relative to the end
    of HEAD), then the fields in that order."""

    version: int                  # the version written now
    head: struct.Struct
    fields: tuple[str, ...]
    readable: tuple[int, ...]     # every version with this framing a reader accepts
    # (version, LEAD, SEP): that version's meta field starts with LEAD, the
    # size, SEP, the header end, "," (decimal digits; see meta_header_end)
    header_end_at: tuple[tuple[int, bytes, bytes], ...] = ()


INDEX_LAYOUT = IndexLayout(FORMAT_VERSION, _HEAD, _FIELDS, READABLE_VERSIONS, _HEADER_END_AT)
_HEADER_END_RE = {
    ver: re.compile(re.escape(lead) + rb"[0-9]{1,18}" + re.escape(sep) + rb"([0-9]{1,18}),")
    for ver, lead, sep in _HEADER_END_AT}


# the meta field's encoder, made once (json.dumps with options makes one per
# call); the same text as json.dumps(meta, separators=(",", ":")).  No
# check for cycles (an index holds none; the check kept a dict of every
# container's id: 25% of the encoding's time, perf6-append)
_META_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def encode_index(mi: MessageIndex) -> bytes:
    """The storage form (version FORMAT_VERSION): version byte, end offsets of
    each field, the fields; the meta field is a JSON object keyed by name."""
    meta = {name: getattr(mi, name) for name in _META}
    blobs = [
        mi.envelope, mi.bodystructure, mi.body,
        mi.search_headers.encode("utf-8", "surrogatepass"),
        mi.search_body.encode("utf-8", "surrogatepass"),
        mi.preview.encode("utf-8", "surrogatepass"),
        _META_JSON(meta).encode("ascii"),
    ]
    ends = []
    pos = 0
    for b in blobs:
        pos += len(b)
        ends.append(pos)
    return _HEAD.pack(FORMAT_VERSION, *ends) + b"".join(blobs)


def index_field(data: bytes | memoryview, name: str) -> bytes:
    """One field of the storage form, sliced without decoding the others.

    Names: envelope, bodystructure, body, search_headers, search_body,
    preview (the text ones as UTF-8 bytes) and meta (JSON).
    """
    start, end = index_field_span(data, name)
    return bytes(data[start:end])


def bodystructure_of(data: bytes | memoryview) -> bytes | None:
    """The BODYSTRUCTURE field of the storage form DATA (the ``msg.bs`` row
    the store keeps beside it, store/keys.py), or None when DATA is not an
    index this code reads."""
    try:
        return index_field(data, "bodystructure")
    except (ValueError, struct.error):
        return None


def index_field_span(data: bytes | memoryview, name: str) -> tuple[int, int]:
    """(start, end) of field NAME inside the storage form DATA, so a caller
    holding an LMDB buffer can slice or scan it without a copy."""
    k = _FIELD_INDEX[name]
    if not data or data[0] not in _READABLE:
        _check_version(data)
    ends = _HEAD.unpack_from(data)
    return _HEAD.size + (ends[k] if k else 0), _HEAD.size + ends[k + 1]


# ---------------------------------------------------------------- search rows
#
# The ``msg.hdr`` row (store/keys.py) of an email: what SEARCH FROM / TO / CC
# / BCC / SUBJECT (IMAP, and JMAP's Email/query from/to/cc/bcc/subject) and
# HEADER Message-ID (how clients find a message they know) look at, so that
# they read a few hundred bytes by email id instead of the message index
# (query/engine.py).  It is SEARCH_ROW_VERSION, then lines joined by "\n":
#
# * every line of the index's search_headers text for one of ROW_HEADERS
#   (``name: value``, normalised as it is there: decoded, casefolded, white
#   space made one space), in their order;
# * for an address header with a line holding one of ODD_ADDRESS (comments,
#   quoting, spaces inside an address: its plain text does not show the
#   address as written), one line ``name:TEXT`` per parsed address of that
#   field, TEXT being ``normalize_search("display <addr>")`` (or of the bare
#   address): the engine searched those parsed addresses of such a message
#   too, so matching NEEDLE against the row's lines of NAME answers exactly
#   what the index gave (the found lines, else the parsed addresses of an
#   unusual message).
#
# None when the index is not one this code reads or the row would exceed
# SEARCH_ROW_MAX bytes (kept on the B-tree's leaf pages): such an email has
# no row and is searched in its index as before.

SEARCH_ROW_VERSION = b"\x01"
SEARCH_ROW_MAX = 1500
ROW_HEADERS = (b"from", b"to", b"cc", b"bcc", b"subject", b"message-id")
ADDRESS_FIELDS = {b"from": "from_", b"to": "to", b"cc": "cc", b"bcc": "bcc"}
"""Address headers: the MessageIndex field of their parsed addresses."""
ODD_ADDRESS = (b"(", b'"', b"\\", b" @", b"@ ", b" .", b". ")
"""What in an address header line writes an address in a way its plain text
does not show (comments, quoting, spaces)."""
_ROW_PREFIXES = tuple(n + b":" for n in ROW_HEADERS)
_ADDRESS_PREFIXES = tuple(n + b":" for n in ADDRESS_FIELDS)
_ODD_RX = re.compile(b"|".join(re.escape(c) for c in ODD_ADDRESS))


def address_text(name: str | None, email: str | None) -> str:
    """The normalised search text of one parsed address (what FROM etc. match
    in an unusual message): ``display <addr>``, or the address alone."""
    return normalize_search(f"{name} <{email}>" if name else (email or ""))


def search_row(data) -> bytes | None:
    """The ``msg.hdr`` row of the stored index DATA (see above), or None."""
    try:
        start, end = index_field_span(data, "search_headers")
    except (ValueError, struct.error):
        return None
    lines = []
    unusual: set[bytes] = set()     # address fields with a line holding ODD_ADDRESS
    for ln in bytes(data[start:end]).split(b"\n"):
        if ln.startswith(_ROW_PREFIXES):
            lines.append(ln)
            if ln.startswith(_ADDRESS_PREFIXES) and _ODD_RX.search(ln):
                unusual.add(ln[:ln.index(b":")])
    odd = [name for name in ADDRESS_FIELDS if name in unusual]
    if odd:
        try:
            mi = decode_index(bytes(data))
        except (ValueError, struct.error):
            return None
        for name in odd:
            for dname, email in getattr(mi, ADDRESS_FIELDS[name]):
                t = address_text(dname, email).encode("utf-8", "surrogatepass")
                if b"\n" in t:
                    return None
                lines.append(name + b":" + t)
    row = SEARCH_ROW_VERSION + b"\n".join(lines)
    return row if len(row) <= SEARCH_ROW_MAX else None


_FIELD_STARTS: dict[tuple[str, ...], re.Pattern] = {}


def repeated_fields(search_headers: bytes | str, names: tuple[str, ...]) -> frozenset[str]:
    """Which of NAMES (lowercase header field names) occur more than once in
    a message's top-level header, read from its search_headers text: one
    line per field, ``name: value`` casefolded with white space runs made one
    space, so a field starts a line and no value holds a line break.  A
    non-ASCII name that casefolds onto one of NAMES (``\u017fubject``) is
    counted too: a caller then reads the fields themselves, never less.
    Linear: the pattern is literal names anchored at line starts."""
    rx = _FIELD_STARTS.get(names)
    if rx is None:
        alts = b"|".join(re.escape(n.encode("ascii")) for n in names)
        rx = _FIELD_STARTS[names] = re.compile(rb"^(" + alts + rb"):", re.M)
    if isinstance(search_headers, str):
        search_headers = search_headers.encode("utf-8", "surrogatepass")
    seen = set()
    out = set()
    for m in rx.finditer(search_headers):
        k = m.group(1)
        if k in seen:
            out.add(k.decode("ascii"))
        seen.add(k)
    return frozenset(out)


def stored_repeated_fields(data: bytes | memoryview, names: tuple[str, ...]) -> frozenset[str]:
    """repeated_fields of the stored index DATA, scanning its search_headers
    field in place; raises IndexFormatError like decode_index."""
    start, end = index_field_span(data, "search_headers")
    return repeated_fields(bytes(data[start:end]), names)


def index_fields(data: bytes | memoryview, names: tuple[str, ...]) -> list[bytes]:
    """Several fields of the storage form with one header read (FETCH
    ENVELOPE + BODYSTRUCTURE per message)."""
    if not data or data[0] not in _READABLE:
        _check_version(data)
    ends = _HEAD.unpack_from(data)
    h = _HEAD.size
    out = []
    for name in names:
        k = _FIELD_INDEX[name] + 1
        out.append(bytes(data[h + (ends[k - 1] if k > 1 else 0): h + ends[k]]))
    return out


def meta_header_end(data: bytes | memoryview, ends: tuple | None = None) -> int | None:
    """The header end of the stored index DATA read from its meta field's
    prefix (see _HEADER_END_AT), without decoding the JSON; None when that
    prefix is not there (or the version is not one this reads).  ENDS: DATA's
    head, unpacked (INDEX_LAYOUT.head.unpack_from), when the caller has it."""
    r = _HEADER_END_RE.get(data[0]) if len(data) >= _HEAD.size else None
    if r is None:
        return None
    if ends is None:
        ends = _HEAD.unpack_from(data)
    k = _FIELD_INDEX["meta"] + 1
    m = r.match(data, _HEAD.size + ends[k - 1], _HEAD.size + ends[k])
    return int(m.group(1)) if m is not None else None


def index_header_end(data: bytes | memoryview) -> int:
    """MessageIndex.header_end of the stored index DATA, from the meta
    prefix when it is there, else from the decoded meta; raises
    IndexFormatError (a ValueError) like decode_index."""
    ver = _check_version(data)
    ends = _HEAD.unpack_from(data)
    he = meta_header_end(data, ends)
    if he is not None:
        return he
    k = _FIELD_INDEX["meta"] + 1
    return _meta_values(ver, bytes(data[_HEAD.size + ends[k - 1]:_HEAD.size + ends[k]]))[
        "header_end"]


def _meta_values(ver: int, meta_json: bytes) -> dict:
    doc = json.loads(meta_json)
    if ver == 1:
        if not isinstance(doc, list) or len(doc) != len(_META_V1):
            raise IndexFormatError("damaged message index (version 1): run `mailaccess reindex`")
        return dict(zip(_META_V1, doc))
    if not isinstance(doc, dict):
        raise IndexFormatError(f"damaged message index (version {ver}): run `mailaccess reindex`")
    values = {}
    for name in _META:
        if name in doc:
            values[name] = doc[name]
        elif name in _DEFAULTS:
            values[name] = _DEFAULTS[name]
        else:
            raise IndexFormatError(
                f"message index (version {ver}) lacks the required field {name!r}: "
                "run `mailaccess reindex`")
    return values


def decode_index(data: bytes) -> MessageIndex:
    """The MessageIndex of a stored index of any READABLE_VERSIONS; raises
    IndexFormatError (a ValueError) for one it cannot read."""
    data = bytes(data)
    ver = _check_version(data)
    ends = _HEAD.unpack_from(data)[1:]
    blobs = []
    start = 0
    for end in ends:
        blobs.append(data[_HEAD.size + start : _HEAD.size + end])
        start = end
    values = _meta_values(ver, blobs[6])
    values["parts"] = tuple(Part(*p[:_PART_ARITY]) for p in values["parts"])
    for name in _ADDRESS_FIELDS:
        values[name] = tuple(tuple(a) for a in values[name])
    for name in _TUPLE_FIELDS:
        values[name] = tuple(values[name])
    values["envelope"], values["bodystructure"], values["body"] = blobs[0], blobs[1], blobs[2]
    for name, blob in zip(_TEXT_FIELDS, blobs[3:6]):
        values[name] = blob.decode("utf-8", "surrogatepass")
    return MessageIndex(**values)


# ---------------------------------------------------------------- text helpers


def normalize_search(text: str) -> str:
    """Needle normalisation, the same as search_body/search_headers got."""
    return _impl.normalize(text)


_BLOB = r"\[[\x01-\x5a\x5c\x5e-\x7f]*\] *"
# Anchored pieces of the RFC 5256 section 2.1 grammar.  base_subject applies
# them by index (match(s, pos, endpos)), never to re-sliced copies, and never
# re-scans a run of blobs: every step below is linear in the subject, whatever
# it holds (a 200 KB Subject of "(fwd)" or "[x]" repeated took 41 s before).
# The blob inside a subj-leader is matched under IGNORECASE as it always was
# (its class then also admits U+0130, U+0131, U+017F and U+212A); a lone
# subj-blob is not.
_BLOB_I = re.compile(_BLOB, re.I)
_BLOB_RE = re.compile(_BLOB)
_REFWD_TAIL = re.compile(r"(?:re|fwd?) *(?:%s)?:" % _BLOB, re.I)


def _strip_leaders(s: str, i: int, hi: int) -> int:
    """Steps (3)-(5) on s[i:hi]: the index after every subj-leader and
    subj-blob that base subject extraction removes."""
    while True:
        while i < hi and s[i] == " ":
            i += 1
        # a subj-refwd is a run of blobs then "re"/"fw"/"fwd" ... ":"; regex
        # backtracking into fewer blobs always fails (a "[" is never "r"/"f"),
        # so the leader matches at i exactly when its tail matches after the
        # longest run of blobs
        j = i
        m = _BLOB_I.match(s, j, hi)
        while m:
            j = m.end()
            m = _BLOB_I.match(s, j, hi)
        m = _REFWD_TAIL.match(s, j, hi)
        if m:
            i = m.end()
            continue
        # no leader here, nor after any blob of this run (the run, and so the
        # failing tail, is the same): drop the blobs while text remains
        m = _BLOB_RE.match(s, i, hi)
        while m and m.end() < hi:
            i = m.end()
            m = _BLOB_RE.match(s, i, hi)
        return i


def _is_fwd_trailer(s: str, i: int) -> bool:
    return (s[i] == "(" and s[i + 1] in "fF" and s[i + 2] in "wW" and s[i + 3] in "dD"
            and s[i + 4] == ")")


def base_subject(subject: str) -> str:
    """RFC 5256 section 2.1 base subject (case kept; compare case-insensitively).

    Linear in the length of the subject: it works on indexes into one string.
    """
    s = " ".join(subject.split())  # (1)
    if not s or (s[0] not in "[rRfF" and s[-1] != ")"):
        # the common case: every subj-leader, subj-blob and "[fwd:" starts
        # with one of "[rRfF" (under IGNORECASE too), every subj-trailer
        # ends with ")", and (1) left no space at either end
        return s
    i, hi = 0, len(s)
    while True:
        while i < hi:  # (2) trailing " " and "(fwd)", right to left
            if s[hi - 1] == " ":
                hi -= 1
            elif hi - i >= 5 and _is_fwd_trailer(s, hi - 5):
                hi -= 5
            else:
                break
        i = _strip_leaders(s, i, hi)  # (3) (4) (5)
        if hi - i >= 6 and s[i:i + 5].lower() == "[fwd:" and s[hi - 1] == "]":  # (6)
            i, hi = i + 5, hi - 1
            continue
        return s[i:hi]


# ---------------------------------------------------------------- fetch helpers


def _find(mi: MessageIndex, section: str) -> Part | None:
    for p in mi.parts:
        if p.section == section:
            return p
    return None


def part_bytes(raw: bytes, mi: MessageIndex, section: str, what: str = "") -> bytes | None:
    """IMAP BODY[section.what]; None when that section does not exist.

    ``what`` is "", "HEADER", "TEXT" or "MIME".  HEADER and TEXT of a numbered
    section exist only for message/rfc822 parts (the encapsulated message).
    """
    what = what.upper()
    if section == "":
        if what == "":
            return raw
        if what == "HEADER":
            return raw[: mi.header_end]
        if what == "TEXT":
            return raw[mi.header_end :]
        return None
    p = _find(mi, section)
    if p is None:
        return None
    if what == "":
        return raw[p.body_start : p.end]
    if what == "MIME":
        return raw[p.header_start : p.body_start]
    if what == "HEADER":
        span = header_span(mi, section)
        return raw[span[0] : span[1]] if span is not None else None
    if p.inner_body_start < 0:
        return None
    if what == "TEXT":
        return raw[p.inner_body_start : p.end]
    return None


def header_span(mi: MessageIndex, section: str) -> tuple[int, int] | None:
    """Where BODY[section.HEADER] lies in the raw message: the whole
    message's header for "", the encapsulated message's header of a
    message/rfc822 part; None when there is none."""
    if section == "":
        return 0, mi.header_end
    p = _find(mi, section)
    if p is None or p.inner_body_start < 0:
        return None
    return p.body_start, p.inner_body_start


def header_fields(raw_header: bytes, names: list[str], negate: bool) -> bytes:
    """BODY[HEADER.FIELDS (names)] (or .NOT): raw matching fields + closing CRLF.
    The header split once (fieldspans: one FETCH's many lists share a split)."""
    return fieldspans.header_fields(raw_header, 0, len(raw_header), names, negate)


_IDENTITY = ("7bit", "8bit", "binary", "")


def decoded_part(raw: bytes, mi: MessageIndex, section: str) -> bytes | None:
    """IMAP BINARY[section] (RFC 3516): the part with its transfer encoding removed.

    None when the section does not exist; raises UnknownCTE for an encoding
    that is neither identity, base64 nor quoted-printable.
    """
    if section == "":
        return raw
    p = _find(mi, section)
    if p is None:
        return None
    data = raw[p.body_start : p.end]
    if p.content_type.startswith("multipart/") or p.encoding in _IDENTITY:
        return data
    if p.encoding in ("base64", "quoted-printable"):
        return _impl.decode_cte(data, p.encoding)
    raise UnknownCTE(p.encoding)


def body_text(raw: bytes, mi: MessageIndex, part_id: str) -> str:
    """JMAP bodyValues: a part's content as text via its charset.

    Unknown charsets decode as UTF-8 with replacement characters; an unknown
    transfer encoding leaves the bytes as they are.  KeyError for no such part.
    """
    p = _find(mi, part_id)
    if p is None or p.section == "":
        raise KeyError(part_id)
    data = raw[p.body_start : p.end]
    if p.encoding in ("base64", "quoted-printable"):
        data = _impl.decode_cte(data, p.encoding)
    charset = p.charset
    if charset is None and p.content_type.startswith("text/"):
        charset = "us-ascii"
    return _impl.decode_text(data, charset)


# ---------------------------------------------------------------- light readers
#
# Listing emails (JMAP Email/get of list properties, 50 at a time, many times
# a second) needs a few meta fields and the preview, not the search text nor
# the body structure.  The meta JSON object is written in _META order, so the
# fields before "jmap_body" (the large one) are read by decoding only the
# prefix of the object up to its "jmap_body" key: a key of the top-level
# object, found as the first `,"jmap_body":` (inside a JSON string a quote is
# escaped, so the text cannot occur there).

SUMMARY_FIELDS = ("size", "subject", "from_", "to", "cc", "bcc", "reply_to", "sender",
                  "sent_at", "sent_at_tz", "message_id", "in_reply_to", "references",
                  "has_attachment")
_CUT_RE = re.compile(re.escape(b',"jmap_body":'))
assert all(_META.index(f) < _META.index("jmap_body") for f in SUMMARY_FIELDS)


@dataclass(frozen=True, slots=True)
class IndexSummary:
    """The list fields of a stored index (see SUMMARY_FIELDS) and its preview."""

    size: int
    subject: str
    from_: tuple
    to: tuple
    cc: tuple
    bcc: tuple
    reply_to: tuple
    sender: tuple
    sent_at: int | None
    sent_at_tz: int | None
    message_id: str | None
    in_reply_to: tuple
    references: tuple
    has_attachment: bool
    preview: str


def index_summary(data: bytes | memoryview) -> IndexSummary:
    """The IndexSummary of a stored index, without decoding the body
    structure or the search text; raises IndexFormatError like decode_index."""
    ver = _check_version(data)
    ends = _HEAD.unpack_from(data)
    h = _HEAD.size
    k = _FIELD_INDEX["meta"]
    start, end = h + ends[k], h + ends[k + 1]
    values = None
    if ver >= 2:
        m = _CUT_RE.search(data, start, end)     # no copy of the whole meta
        if m is not None:
            doc = json.loads(bytes(data[start:m.start()]) + b"}")
            if all(f in doc for f in SUMMARY_FIELDS):
                values = doc
    if values is None:
        values = _meta_values(ver, bytes(data[start:end]))
    p = _FIELD_INDEX["preview"]
    preview = bytes(data[h + ends[p]: h + ends[p + 1]]).decode("utf-8", "surrogatepass")
    out = {f: values[f] for f in SUMMARY_FIELDS}
    for name in _ADDRESS_FIELDS:
        out[name] = tuple(tuple(a) for a in out[name])
    out["in_reply_to"] = tuple(out["in_reply_to"])
    out["references"] = tuple(out["references"])
    return IndexSummary(preview=preview, **out)


def decode_index_meta(data: bytes | memoryview) -> MessageIndex:
    """decode_index without the search text (search_headers and search_body
    are empty): what Email/get needs, at a fraction of the copying."""
    ver = _check_version(data)
    ends = _HEAD.unpack_from(data)
    h = _HEAD.size

    def field(name):
        k = _FIELD_INDEX[name]
        return bytes(data[h + ends[k]: h + ends[k + 1]])

    values = _meta_values(ver, field("meta"))
    values["parts"] = tuple(Part(*p[:_PART_ARITY]) for p in values["parts"])
    for name in _ADDRESS_FIELDS:
        values[name] = tuple(tuple(a) for a in values[name])
    for name in _TUPLE_FIELDS:
        values[name] = tuple(values[name])
    values["envelope"] = values["bodystructure"] = values["body"] = b""
    values["search_headers"] = values["search_body"] = ""
    values["preview"] = field("preview").decode("utf-8", "surrogatepass")
    return MessageIndex(**values)
