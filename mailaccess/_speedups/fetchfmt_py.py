"""FETCH responses for the simple items: ``build_fetch``'s hot loop (pure Python).

This is the source of truth; ``fetchfmt_c.pyx`` is its compiled twin and must
return identical results (tests/speedups/test_fetchfmt.py).

``fetch_simple`` answers FETCH for items that need only the email record and
the prepared index: UID, FLAGS, MODSEQ, RFC822.SIZE, INTERNALDATE, ENVELOPE,
BODYSTRUCTURE, BODY, EMAILID, THREADID, and the whole message's header
fields, ``BODY[HEADER.FIELDS (...)]`` and ``.NOT`` (a ``HeaderFields`` item:
the header's end from the index, the field lines from the raw message).  It
reads the stored values through the store's hot-path readers
(``View.email_reader`` / ``index_reader`` / ``blob_reader``)
and slices them in place as the layout descriptions say
(``store.records.EMAIL_LAYOUT``, ``mime.index.INDEX_LAYOUT``); it builds no
key and knows no offset of its own.  FLAGS text comes from the caller's
formatter, so this module needs nothing from the IMAP server.  A message it
cannot answer byte for byte the way ``server.imap_session.build_fetch`` would
is handed back as a fallback UID: raw UTF-8 headers for a client not in UTF-8
mode (RFC 6858 downgrading), and records or indexes of a version it does not
read (the Python path raises the proper error for those).
"""
from __future__ import annotations

from bisect import bisect_left
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from ..ids import email_id, thread_id
from ..mime.index import INDEX_LAYOUT, header_fields, meta_header_end
from ..proto.imap.dates import format_datetime
from ..store.records import EMAIL_LAYOUT, decode_keywords

# item codes, in the order of ITEMS
UID, FLAGS, MODSEQ, RFC822_SIZE, INTERNALDATE, ENVELOPE, BODYSTRUCTURE, BODY, EMAILID, \
    THREADID = range(10)
ITEMS = ("UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE",
         "BODYSTRUCTURE", "BODY", "EMAILID", "THREADID")
_CODE = {name: i for i, name in enumerate(ITEMS)}
HEADER_FIELDS = len(ITEMS)      # the code of a HeaderFields item


class HeaderFields(NamedTuple):
    """``BODY[HEADER.FIELDS (names)]`` (``.NOT`` when NEGATE) of the whole
    message, without a partial range: LABEL is the item as the response
    names it (``b"BODY[HEADER.FIELDS (From To)]"``), NAMES the field names as
    the client sent them (matched without regard to case, RFC 9051 6.4.5)."""

    label: bytes
    names: tuple[str, ...]
    negate: bool

# the email record, read in place (store/records.py EMAIL_LAYOUT)
_MSG = EMAIL_LAYOUT.head
_MSG_SIZE = _MSG.size
_MSG_VERSION = EMAIL_LAYOUT.version
_MEMBER_SIZE = EMAIL_LAYOUT.member.size
_UTF8_HEADERS = EMAIL_LAYOUT.flag_utf8_headers
(_F_BLOB, _F_RECEIVED, _F_TZ, _F_SIZE, _F_THREAD, _F_LAST_MS, _F_FLAGS, _F_NKW,
 _F_NMEM) = (EMAIL_LAYOUT.index(n) for n in (
     "blob", "received_at", "tz", "size", "thread", "last_ms", "flags", "n_keywords",
     "n_members"))

# the message index framing (mime/index.py INDEX_LAYOUT): end offsets of the
# fields after the version byte, each field starting where the one before ends
_IDX = INDEX_LAYOUT.head
_IDX_SIZE = _IDX.size
_IDX_VERSIONS = frozenset(INDEX_LAYOUT.readable)
# field k runs from ends[k] (0 for the first) to ends[k + 1], ends = _IDX.unpack_from()
_IDX_SPAN = {name: (k, k + 1) for k, name in enumerate(INDEX_LAYOUT.fields)}
_ENV, _BS, _BODY = (_IDX_SPAN[n] for n in ("envelope", "bodystructure", "body"))


def _idx_field(idx, ends, span) -> bytes:
    a, e = span
    return bytes(idx[_IDX_SIZE + (ends[a] if a else 0):_IDX_SIZE + ends[e]])


def item_codes(items) -> list[int]:
    """Codes of ITEMS (names of ITEMS, or HeaderFields); ValueError for one
    this module cannot answer."""
    out = []
    for n in items:
        if isinstance(n, HeaderFields):
            out.append(HEADER_FIELDS)
        elif type(n) is str and n in _CODE:
            out.append(_CODE[n])
        else:
            raise ValueError(f"not a simple FETCH item: {n!r}")
    return out


def header_literal(raw_header, item: HeaderFields) -> bytes:
    """``LABEL {n}\r\n`` + the matching field lines of RAW_HEADER (the
    message's bytes up to its header end) and the closing CRLF, NUL sent as
    0x80 as in every non-binary literal (server.imap_session._no_nul)."""
    data = header_fields(bytes(raw_header), list(item.names), item.negate)
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return item.label + b" {%d}\r\n" % len(data) + data


def internaldate(received: int, tz: int) -> bytes:
    """``b'"dd-Mon-yyyy hh:mm:ss +zzzz"'`` for RECEIVED seconds at offset TZ minutes."""
    return format_datetime(datetime.fromtimestamp(received, timezone(timedelta(minutes=tz))))


def fetch_simple(read_email, read_index, uids, snap_uids, snap_eids, items,
                 flags, condstore: bool, utf8: bool,
                 read_blob=None) -> tuple[list[bytes], dict[int, int], list[int]]:
    """``(responses, reported, fallback)`` for UIDS of a mailbox whose sequence
    map is SNAP_UIDS (ascending) / SNAP_EIDS (parallel email ids).

    READ_EMAIL is ``eid -> encoded email record or None`` and READ_INDEX
    ``blob hash -> encoded message index or None`` (``View.email_reader`` and
    ``View.index_reader`` of the account); READ_BLOB ``blob hash -> raw
    message or None`` (``View.blob_reader``), needed for HeaderFields items.
    RESPONSES holds one ``* seq FETCH (...)\\r\\n`` per answered message, in
    UIDS order; UIDs not in the map and emails whose record is gone are
    skipped.  REPORTED maps each answered UID to the modseq it carried.
    FALLBACK lists, in UIDS order, the UIDs left to the Python path.
    ITEMS are names from ``ITEMS`` and HeaderFields in request order; FLAGS formats a list of
    keywords as the FLAGS value (``b"(\\Seen $Forwarded)"``), called once per
    distinct keyword set (None when FLAGS is not asked for); CONDSTORE adds
    MODSEQ after FLAGS (RFC 7162 3.1.4.1) unless MODSEQ was asked for; UTF8
    says the client enabled UTF8=ACCEPT.
    """
    codes = item_codes(items)
    add_modseq = condstore and FLAGS in codes and MODSEQ not in codes
    want_header = HEADER_FIELDS in codes
    want_index = want_header or any(c in (ENVELOPE, BODYSTRUCTURE, BODY) for c in codes)
    if want_header and read_blob is None:
        raise ValueError("HEADER.FIELDS items need read_blob")
    unpack_msg = _MSG.unpack_from
    unpack_idx = _IDX.unpack_from
    flag_cache: dict[bytes, bytes] = {}
    tz_cache: dict[int, timezone] = {}
    out: list[bytes] = []
    reported: dict[int, int] = {}
    fallback: list[int] = []
    n_snap = len(snap_uids)
    i = -1
    for u in uids:
        # FETCH 1:* walks the map in order: try the next slot before bisecting
        i += 1
        if not (i < n_snap and snap_uids[i] == u):
            i = bisect_left(snap_uids, u)
            if i >= n_snap or snap_uids[i] != u:
                i -= 1
                continue
        eid = snap_eids[i]
        data = read_email(eid)
        if data is None:
            continue    # expunged meanwhile: RFC 9051 lets us omit it
        if len(data) < _MSG_SIZE or data[0] != _MSG_VERSION:
            fallback.append(u)
            continue
        rec = unpack_msg(data)
        if not utf8 and rec[_F_FLAGS] & _UTF8_HEADERS:
            fallback.append(u)
            continue
        last_ms = rec[_F_LAST_MS]
        idx = None
        if want_index:
            idx = read_index(rec[_F_BLOB])
            if idx is None or len(idx) < _IDX_SIZE or idx[0] not in _IDX_VERSIONS:
                fallback.append(u)
                continue
            ends = unpack_idx(idx)
        if want_header:
            # the header end from the meta's prefix (an index written
            # otherwise is decoded by the Python path); the fields from the
            # raw message, cut there as a Python slice cuts
            raw = read_blob(rec[_F_BLOB])
            he = meta_header_end(idx, ends) if raw is not None else None
            if he is None:
                fallback.append(u)
                continue
            raw_header = raw[:he]
        pieces = []
        for k, c in enumerate(codes):
            if c == UID:
                pieces.append(b"UID %d" % u)
            elif c == FLAGS:
                tail = bytes(data[_MSG_SIZE + rec[_F_NMEM] * _MEMBER_SIZE:]) \
                    if rec[_F_NKW] else b""
                fl = flag_cache.get(tail)
                if fl is None:
                    fl = flag_cache[tail] = b"FLAGS " + flags(decode_keywords(tail))
                pieces.append(fl)
            elif c == MODSEQ:
                pieces.append(b"MODSEQ (%d)" % last_ms)
            elif c == RFC822_SIZE:
                pieces.append(b"RFC822.SIZE %d" % rec[_F_SIZE])
            elif c == INTERNALDATE:
                tz = rec[_F_TZ]
                zone = tz_cache.get(tz)
                if zone is None:
                    zone = tz_cache[tz] = timezone(timedelta(minutes=tz))
                pieces.append(b"INTERNALDATE " +
                              format_datetime(datetime.fromtimestamp(rec[_F_RECEIVED], zone)))
            elif c == ENVELOPE:
                pieces.append(b"ENVELOPE " + _idx_field(idx, ends, _ENV))
            elif c == BODYSTRUCTURE:
                pieces.append(b"BODYSTRUCTURE " + _idx_field(idx, ends, _BS))
            elif c == BODY:
                pieces.append(b"BODY " + _idx_field(idx, ends, _BODY))
            elif c == HEADER_FIELDS:
                pieces.append(header_literal(raw_header, items[k]))
            elif c == EMAILID:
                pieces.append(f"EMAILID ({email_id(eid)})".encode())
            else:   # THREADID
                pieces.append(f"THREADID ({thread_id(rec[_F_THREAD])})".encode())
        if add_modseq:
            pieces.append(b"MODSEQ (%d)" % last_ms)
        out.append(b"* %d FETCH (" % (i + 1) + b" ".join(pieces) + b")\r\n")
        reported[u] = last_ms
    return out, reported, fallback
