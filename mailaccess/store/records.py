"""The store's domain records and their versioned value codecs.

Email records are hot (every FETCH FLAGS and STORE reads one), so they are a
fixed struct plus two variable tails; the colder records (accounts, mailboxes,
change-log entries) are versioned JSON.  Every encoded value starts with a
format-version byte.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field

# --- emails -----------------------------------------------------------------

# version, hash(32), received_at(i64 seconds), tz(i16 minutes), size(u32),
# thread(u32), last_ms(u64), flags(u8), n_keywords(u16), n_members(u16)
_MSG_HEAD = struct.Struct(">B32sqhIIQBHH")
_MSG_FIELDS = ("version", "blob", "received_at", "tz", "size", "thread", "last_ms", "flags",
               "n_keywords", "n_members")

FLAG_UTF8_HEADERS = 1   # raw 8-bit bytes in the header (RFC 6532); IMAP downgrades
# mailbox(u32), uid(u32), savedate(i64)
_MEMBER = struct.Struct(">IIq")
_MSG_V1 = 1


@dataclass(frozen=True)
class RecordLayout:
    """Where the fields of an encoded email record sit, for hot paths that
    read records in place instead of decoding them (the FETCH fast path and
    its compiled twin read this at import; a layout change is made here only).

    A record is HEAD (big-endian, no padding: FIELDS in order, the first one
    the version byte), then ``n_members`` MEMBER structs, then ``n_keywords``
    keywords as UTF-8 joined by NUL (:func:`decode_keywords`).
    """

    version: int                  # first byte of every record in this layout
    head: struct.Struct
    fields: tuple[str, ...]       # the names of HEAD's fields, in order
    member: struct.Struct
    flag_utf8_headers: int        # bit of the ``flags`` field: raw UTF-8 headers

    def _codes(self) -> list[str]:
        return re.findall(r"\d*[a-zA-Z?]", self.head.format.lstrip("<>!=@"))

    def code(self, name: str) -> str:
        """The struct code of field NAME ("q", "32s", ...)."""
        return self._codes()[self.fields.index(name)]

    def index(self, name: str) -> int:
        """Position of field NAME in ``head.unpack_from(record)``."""
        return self.fields.index(name)

    def offset(self, name: str) -> int:
        """Byte offset of field NAME from the start of the record."""
        endian = self.head.format[0]
        return struct.calcsize(endian + "".join(self._codes()[:self.fields.index(name)]))

    def size(self, name: str) -> int:
        return struct.calcsize(self.head.format[0] + self.code(name))


EMAIL_LAYOUT = RecordLayout(_MSG_V1, _MSG_HEAD, _MSG_FIELDS, _MEMBER, FLAG_UTF8_HEADERS)
"""The email record layout (``msg`` table values) as data: see RecordLayout."""


def decode_keywords(tail) -> list[str]:
    """The keywords of a record from its keyword tail (the bytes after the
    memberships; empty when it has none)."""
    return bytes(tail).decode("utf-8").split("\0") if len(tail) else []


@dataclass(slots=True)
class Membership:
    mailbox: int
    uid: int
    savedate: int  # seconds since the epoch when the message entered that mailbox


@dataclass(slots=True)
class EmailRecord:
    """The mutable part of an email: keywords, memberships, modseq."""

    id: int
    blob: bytes               # sha256 of the raw message (the blob key)
    received_at: int          # seconds since the epoch (IMAP INTERNALDATE, JMAP receivedAt)
    tz: int                   # INTERNALDATE zone offset in minutes
    size: int
    thread: int
    last_ms: int              # modseq of the last change to this email
    keywords: list[str] = field(default_factory=list)   # lowercase, JMAP form ($seen ...)
    members: list[Membership] = field(default_factory=list)
    flags: int = 0            # FLAG_* bits about the message content

    def uid_in(self, mailbox: int) -> int | None:
        for m in self.members:
            if m.mailbox == mailbox:
                return m.uid
        return None

    def member(self, mailbox: int) -> Membership | None:
        for m in self.members:
            if m.mailbox == mailbox:
                return m
        return None


def encode_email(r: EmailRecord) -> bytes:
    kw = "\0".join(r.keywords).encode("utf-8")
    parts = [
        _MSG_HEAD.pack(_MSG_V1, r.blob, r.received_at, r.tz, r.size, r.thread, r.last_ms,
                       r.flags, len(r.keywords), len(r.members))
    ]
    parts.extend(_MEMBER.pack(m.mailbox, m.uid, m.savedate) for m in r.members)
    parts.append(kw)
    return b"".join(parts)


def decode_email(eid: int, data, members: bool = True) -> EmailRecord:
    """The record of email EID.  MEMBERS=False skips the memberships (an
    empty list then): the FETCH hot path needs only flags, sizes and the blob."""
    (ver, h, received, tz, size, thread, last_ms, flags, nkw, nmem) = _MSG_HEAD.unpack_from(data)
    if ver != _MSG_V1:
        raise ValueError(f"unknown email record version {ver}")
    off = _MSG_HEAD.size
    mlist = []
    if members:
        for _ in range(nmem):
            mb, u, sd = _MEMBER.unpack_from(data, off)
            mlist.append(Membership(mb, u, sd))
            off += _MEMBER.size
    else:
        off += nmem * _MEMBER.size
    members = mlist
    kws = decode_keywords(data[off:]) if nkw else []
    return EmailRecord(eid, bytes(h), received, tz, size, thread, last_ms, kws, members, flags)


_BLOB_AT = EMAIL_LAYOUT.offset("blob")
_BLOB_END = _BLOB_AT + EMAIL_LAYOUT.size("blob")


def blob_hash_of(data) -> bytes:
    """The blob hash of an encoded email record, without decoding the rest."""
    return bytes(data[_BLOB_AT:_BLOB_END])


# --- email facts (``msg.facts``) -----------------------------------------------
#
# What SORT, THREAD and the Sent / HasAttachment searches read of an email's
# content (query/facts.py's ``Facts``: the 14 values in that order), kept
# beside the email record from delivery on, so that a cold SORT reads one
# small record per email (a cursor walking the account's email ids) instead
# of parsing the 20 KB message index of each.  The values are those
# ``facts.from_data`` reads from the index: derived from the blob alone, so a
# record never changes, but ``mailaccess reindex`` rewrites it with the index.
# Mail stored before the table existed has none: readers fall back to the
# index (query/facts.py), and ``reindex`` writes the missing ones.
# FACTS_VERSION goes up whenever query/facts.py derives any fact differently
# (or this layout changes): readers take only records of their own version
# (the others read as missing: the index is parsed), and ``mailaccess
# reindex`` rewrites them.
#
# HEAD: version(u8), bits(u8: FACT_*), sent(i64 UTC seconds), tz(i16
# minutes), n_refs(u16); then strings, each a u32 byte length and UTF-8:
# subject, base (unless FACT_BASE_SAME), from, to, cc, jmap_from, jmap_to,
# displayfrom (unless FACT_DFROM_SAME: equal to jmap_from), displayto
# (unless FACT_DTO_SAME), message_id (if FACT_MSGID), then the N_REFS refs.
FACTS_HEAD = struct.Struct(">BBqhH")
FACTS_VERSION = 1
FACT_SENT = 1           # sent is not None (else None; likewise FACT_TZ for tz)
FACT_TZ = 2
FACT_ATTACHMENT = 4
FACT_BASE_SAME = 8      # the base subject is the subject
FACT_DFROM_SAME = 16    # displayfrom is jmap_from (no group: RFC 5957 3, RFC 8621 4.4.2)
FACT_DTO_SAME = 32
FACT_MSGID = 64
_FLEN = struct.Struct(">I")
_I64 = (-(1 << 63), (1 << 63) - 1)


def encode_facts(v: tuple) -> bytes:
    """The ``msg.facts`` record of the 14 facts V (query/facts.py's Facts
    order); b"" when V has a value this layout does not hold exactly (a
    string that is not UTF-8 encodable, a number out of range, more than
    65,535 refs): no record is kept and readers use the index."""
    (sent, tz, att, subject, base, from_, to, cc, dfrom, dto, jfrom, jto, mid, refs) = v
    bits = 0
    if sent is not None:
        if type(sent) is not int or not _I64[0] <= sent <= _I64[1]:
            return b""
        bits |= FACT_SENT
    if tz is not None:
        if type(tz) is not int or not -32768 <= tz <= 32767:
            return b""
        bits |= FACT_TZ
    if att is True:
        bits |= FACT_ATTACHMENT
    elif att is not False:
        return b""
    strs = [subject]
    if base == subject:
        bits |= FACT_BASE_SAME
    else:
        strs.append(base)
    strs += [from_, to, cc, jfrom, jto]
    if dfrom == jfrom:
        bits |= FACT_DFROM_SAME
    else:
        strs.append(dfrom)
    if dto == jto:
        bits |= FACT_DTO_SAME
    else:
        strs.append(dto)
    if mid is not None:
        bits |= FACT_MSGID
        strs.append(mid)
    if type(refs) is not tuple or len(refs) > 0xFFFF:
        return b""
    strs += refs
    parts = [FACTS_HEAD.pack(FACTS_VERSION, bits, sent or 0, tz or 0, len(refs))]
    try:
        for s in strs:
            if type(s) is not str:
                return b""
            b = s.encode("utf-8")
            parts.append(_FLEN.pack(len(b)))
            parts.append(b)
    except UnicodeEncodeError:
        return b""
    return b"".join(parts)


def decode_facts(data) -> tuple | None:
    """The 14 facts of a ``msg.facts`` record; None when it is not one this
    code reads (another version, cut short, not UTF-8, bytes left over)."""
    data = bytes(data)
    n = len(data)
    if n < FACTS_HEAD.size or data[0] != FACTS_VERSION:
        return None
    _v, bits, sent, tz, nrefs = FACTS_HEAD.unpack_from(data)
    off = FACTS_HEAD.size

    def take():
        nonlocal off
        if off + 4 > n:
            raise ValueError("cut short")
        ln = _FLEN.unpack_from(data, off)[0]
        off += 4
        if off + ln > n:
            raise ValueError("cut short")
        s = data[off:off + ln].decode("utf-8")
        off += ln
        return s

    try:
        subject = take()
        base = subject if bits & FACT_BASE_SAME else take()
        from_, to, cc, jfrom, jto = take(), take(), take(), take(), take()
        dfrom = jfrom if bits & FACT_DFROM_SAME else take()
        dto = jto if bits & FACT_DTO_SAME else take()
        mid = take() if bits & FACT_MSGID else None
        refs = tuple(take() for _ in range(nrefs))
    except (ValueError, UnicodeDecodeError):
        return None
    if off != n:
        return None
    return (sent if bits & FACT_SENT else None, tz if bits & FACT_TZ else None,
            bool(bits & FACT_ATTACHMENT), subject, base, from_, to, cc, dfrom, dto, jfrom, jto,
            mid, refs)


def email_keywords_and_ms(data) -> tuple[list[str], int]:
    """Just keywords and modseq (FETCH FLAGS fast path) without building members."""
    (_v, _h, _r, _tz, _s, _t, last_ms, _f, nkw, nmem) = _MSG_HEAD.unpack_from(data)
    if not nkw:
        return [], last_ms
    off = _MSG_HEAD.size + nmem * _MEMBER.size
    return decode_keywords(data[off:]), last_ms


_MS_AT = EMAIL_LAYOUT.offset("last_ms")
_U64_AT = struct.Struct(">Q").unpack_from


def email_last_ms(data) -> int:
    """The modseq of the last change to an encoded email record."""
    return _U64_AT(data, _MS_AT)[0]


_U32_AT = struct.Struct(">I").unpack_from


def email_thread_boxes_flags(data, seen: bytes, draft: bytes) -> tuple[int, tuple, bool]:
    """(thread, mailbox ids, unread) of an encoded email record, without
    building it: unread is neither keyword SEEN nor DRAFT (JMAP Mailbox
    counts, RFC 8621 §2)."""
    h = _MSG_HEAD.unpack_from(data)
    nkw, nmem = h[8], h[9]
    off = _MSG_HEAD.size
    if nmem == 1:
        boxes = (_U32_AT(data, off)[0],)
    else:
        boxes = tuple(_U32_AT(data, off + i * _MEMBER.size)[0] for i in range(nmem))
    if not nkw:
        return h[5], boxes, True
    # keywords are NUL-separated: look for "\0kw\0" in "\0" + tail + "\0"
    tail = b"\0" + bytes(data[off + nmem * _MEMBER.size:]) + b"\0"
    return h[5], boxes, (b"\0" + seen + b"\0") not in tail and \
        (b"\0" + draft + b"\0") not in tail


# --- mailboxes ----------------------------------------------------------------

@dataclass(slots=True)
class Mailbox:
    id: int
    name: str            # leaf name
    parent: int          # 0 = top level
    role: str | None     # JMAP role / IMAP special-use without backslash: "inbox", "drafts", ...
    uidvalidity: int
    uidnext: int
    highest_ms: int
    created_ms: int
    subscribed: bool = True
    sort_order: int = 0
    total: int = 0
    unseen: int = 0
    size: int = 0
    # IMAP \Recent (RFC 3501 2.3.2): the first UID no session has claimed
    # yet.  A read-write SELECT (or a selected session's refresh) claims
    # [recent_from, uidnext) and raises it to uidnext (ops.claim_recent).
    # A record written before this field existed reads it as its uidnext:
    # what was stored before the upgrade is old (docs/store.md, "\Recent").
    recent_from: int = 1


# The JSON records written on every write (a mailbox's counters and modseq,
# the change log's summary row): ``json.dumps(v, separators=(",", ":"),
# ensure_ascii=False)`` and ``json.loads`` with the encoder and scanner built
# once (dumps with options builds a JSONEncoder per call, and loads of bytes
# detects the encoding first): the same bytes, a third of the Python calls.
def _make_dumps():
    enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    c_make = getattr(json.encoder, "c_make_encoder", None)
    if c_make is None:      # no C accelerator: the encoder, built once
        return lambda v: enc.encode(v).encode("utf-8")
    # the arguments JSONEncoder.iterencode passes, without the circular check
    # (these records are flat lists of numbers, strings and lists)
    it = c_make(None, enc.default, json.encoder.encode_basestring, None, ":", ",",
                False, False, True)
    join = "".join
    return lambda v: join(it(v, 0)).encode("utf-8")


json_dumps_compact = _make_dumps()
_JSON_SCAN = json.JSONDecoder().scan_once


def json_loads_record(data):
    """``json.loads(bytes(data))`` for a record body (UTF-8 JSON, no padding)."""
    s = bytes(data).decode("utf-8")
    try:
        v, end = _JSON_SCAN(s, 0)
    except StopIteration:
        return json.loads(s)        # (raises the usual JSONDecodeError)
    return v if end == len(s) else json.loads(s)


# The mailbox records last written or read, {encoded record: its field
# values}: a one-message STORE reads its mailbox's record and writes it back
# with a new modseq, and the next one reads those very bytes; decoding them
# is then a dict look-up, not a JSON parse.  The values are a tuple taken when
# the record was encoded (or decoded): the same values the parse would give
# (ints, strings, bools and None make the JSON round trip unchanged).  Shared
# by the threads of a process (single dict operations); emptied when full.
_MBX_DECODED: dict[bytes, tuple] = {}
_MBX_DECODED_MAX = 256


def _mbx_remember(data: bytes, v: tuple) -> None:
    if len(_MBX_DECODED) >= _MBX_DECODED_MAX:
        _MBX_DECODED.clear()
    _MBX_DECODED[data] = v


def encode_mailbox(m: Mailbox) -> bytes:
    v = (m.name, m.parent, m.role, m.uidvalidity, m.uidnext, m.highest_ms, m.created_ms,
         m.subscribed, m.sort_order, m.total, m.unseen, m.size, m.recent_from)
    data = b"\x01" + json_dumps_compact(v)
    _mbx_remember(data, v)
    return data


def decode_mailbox(mbx: int, data) -> Mailbox:
    if type(data) is bytes:
        v = _MBX_DECODED.get(data)
        if v is not None:
            return Mailbox(mbx, *v)
    if data[0] != 1:
        raise ValueError("unknown mailbox record version")
    v = json_loads_record(data[1:])
    if len(v) < _MAILBOX_FIELDS:
        # written before ``recent_from`` (store format 2): nothing is recent
        return Mailbox(mbx, *v, recent_from=v[4])
    v = tuple(v[:_MAILBOX_FIELDS])
    if type(data) is bytes:
        _mbx_remember(data, v)
    return Mailbox(mbx, *v)


_MAILBOX_FIELDS = 13   # values in a mailbox record's JSON list (later ones are ignored)


# --- accounts -------------------------------------------------------------------

@dataclass(slots=True)
class Account:
    id: int
    name: str
    password_hash: str
    created: int
    quota: int = 0        # bytes, 0 = the configured default
    scram: str = ""       # SCRAM-SHA-256 verifiers (sasl.scram_credentials), no password


def encode_account(a: Account) -> bytes:
    return b"\x01" + json_dumps_compact(
        [a.name, a.password_hash, a.created, a.quota, a.scram])


def decode_account(acc: int, data) -> Account:
    if data[0] != 1:
        raise ValueError("unknown account record version")
    return Account(acc, *json_loads_record(data[1:]))


# --- change log -------------------------------------------------------------------

# Collections ("kinds") named as JMAP data types; IMAP and ActiveSync read the
# same log.  The set is open: any name of 1-255 UTF-8 bytes can be logged
# (EmailSubmission, ...), each gets its own state and rows.
MAILBOX = "Mailbox"
EMAIL = "Email"
THREAD = "Thread"
COLLECTIONS = (MAILBOX, EMAIL, THREAD)


@dataclass(slots=True)
class Change:
    """What one modseq changed: per collection, created/updated/destroyed ids,
    plus the mailboxes whose IMAP view moved (for push filtering)."""

    modseq: int
    created: dict[str, list[int]] = field(default_factory=dict)
    updated: dict[str, list[int]] = field(default_factory=dict)
    destroyed: dict[str, list[int]] = field(default_factory=dict)
    mailboxes: list[int] = field(default_factory=list)

    def collections(self) -> set[str]:
        return set(self.created) | set(self.updated) | set(self.destroyed)


# The log on disk (store/changelog.py reads and writes it): one ``chg.id`` row
# per (kind, modseq, object) whose value is the object's net status at that
# modseq, and one ``chg`` summary per modseq.
STATUS_CODES = {"created": b"c", "updated": b"u", "destroyed": b"d"}
STATUS_NAMES = {v[0]: k for k, v in STATUS_CODES.items()}


@dataclass(slots=True)
class ModseqSummary:
    """The ``chg`` row of one modseq: when it was committed, how many
    ``chg.id`` rows it still has, under which kinds, and the mailboxes whose
    IMAP view moved (their ``vanished`` rows at this modseq go with it)."""

    time: int
    rows: int
    kinds: list[str]
    mailboxes: list[int]


def encode_summary(s: ModseqSummary) -> bytes:
    return encode_summary_of(s.time, s.rows, s.kinds, s.mailboxes)


def encode_summary_of(t: int, rows: int, kinds: list[str], mailboxes: list[int]) -> bytes:
    """``encode_summary(ModseqSummary(t, rows, kinds, mailboxes))``, with no
    ModseqSummary built (once per commit)."""
    return b"\x02" + json_dumps_compact([t, rows, kinds, mailboxes])


def decode_summary(data) -> ModseqSummary:
    if data[0] != 2:
        raise ValueError(f"unknown change summary version {data[0]}")
    t, rows, kinds, mb = json_loads_record(data[1:])
    return ModseqSummary(t, rows, kinds, mb)


_KIND_STATE = struct.Struct(">QQ")


def encode_kind_state(last_ms: int, horizon: int) -> bytes:
    """``chg.kind``: the last modseq that changed the kind (its state) and the
    highest modseq pruned from the kind's rows (older states are gone)."""
    return _KIND_STATE.pack(last_ms, horizon)


def decode_kind_state(data) -> tuple[int, int]:
    return _KIND_STATE.unpack_from(data)


# Format 1 (DATA_VERSION 1) kept a whole Change as one JSON row per modseq;
# these codecs remain only to migrate such stores (changelog.migrate_v1).
def encode_change(c: Change) -> bytes:
    return b"\x01" + json.dumps(
        [c.created, c.updated, c.destroyed, c.mailboxes], separators=(",", ":")).encode()


def decode_change(ms: int, data) -> Change:
    if data[0] != 1:
        raise ValueError("unknown change record version")
    cr, up, de, mb = json.loads(bytes(data[1:]))
    return Change(ms, cr, up, de, mb)


# --- threads --------------------------------------------------------------------

_THR = struct.Struct(">I8s")


def encode_thread_ref(tid: int, subject_hash: bytes) -> bytes:
    return _THR.pack(tid, subject_hash)


def decode_thread_ref(data) -> tuple[int, bytes]:
    tid, sh = _THR.unpack_from(data)
    return tid, sh


# --- JMAP push subscriptions (RFC 8620 §7.2) ------------------------------------

@dataclass(slots=True)
class PushSubscription:
    """One push subscription of a user (kept under the user's account).
    ``code`` is the verification code the server sent; ``client_code`` what
    the client set (verified when they are equal).  Keys are the client's
    base64url strings as given; ``expires`` is a Unix time."""

    id: int
    device_client_id: str
    url: str
    p256dh: str = ""
    auth: str = ""
    code: str = ""
    client_code: str | None = None
    expires: int = 0
    types: list[str] | None = None
    created: int = 0
    # the account's modseq when the client verified it: delivery pushes
    # every change after it, even one committed before its task started
    verified_ms: int = 0

    @property
    def verified(self) -> bool:
        return self.client_code is not None and self.client_code == self.code


def encode_push_subscription(p: PushSubscription) -> bytes:
    return b"\x01" + json.dumps(
        [p.device_client_id, p.url, p.p256dh, p.auth, p.code, p.client_code, p.expires,
         p.types, p.created, p.verified_ms], separators=(",", ":"),
        ensure_ascii=False).encode("utf-8")


def decode_push_subscription(sid: int, data) -> PushSubscription:
    if data[0] != 1:
        raise ValueError("unknown push subscription record version")
    return PushSubscription(sid, *json.loads(bytes(data[1:])))
