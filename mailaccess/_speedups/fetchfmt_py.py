"""FETCH responses for the simple items: ``build_fetch``'s hot loop (pure Python).

This is the source of truth; ``fetchfmt_c.pyx`` is its compiled twin and must
return identical results (tests/speedups/test_fetchfmt.py).

``fetch_simple`` answers FETCH for items that need only the email record and
the prepared index: UID, FLAGS, MODSEQ, RFC822.SIZE, INTERNALDATE, ENVELOPE,
BODYSTRUCTURE, BODY, EMAILID, THREADID, the whole message's header
fields, ``BODY[HEADER.FIELDS (...)]`` and ``.NOT`` (a ``HeaderFields`` item:
the header's end from the index, the field lines from the raw message), and
the whole message as a literal, ``BODY[]`` and ``RFC822`` (a ``WholeBody``
item: the stored bytes, NUL sent as 0x80), and the whole message's header
as a literal, ``BODY[HEADER]`` and ``RFC822.HEADER`` (a ``WholeHeader``
item: the stored bytes up to the header end read from the index's meta
prefix, NUL sent as 0x80).  ``fetch_upto`` is the same
answer for a streamed FETCH: the responses of as many UIDs as fill a byte
budget, joined, stopping before a message it leaves to the Python path.  It
reads the stored values through the store's hot-path readers
(``View.email_reader`` / ``index_reader`` / ``blob_reader``)
and slices them in place as the layout descriptions say
(``store.records.EMAIL_LAYOUT``, ``mime.index.INDEX_LAYOUT``); it builds no
key and knows no offset of its own.  FLAGS text comes from the caller's
formatter, so this module needs nothing from the IMAP server.  A message it
cannot answer byte for byte the way ``server.imap_session.build_fetch`` would
is handed back as a fallback UID: raw UTF-8 headers for a client not in UTF-8
mode (RFC 6858 downgrading), and records or indexes of a version it does not
read (the Python path raises the proper error for those).  HEADER.FIELDS
items split the header once per message (mime.fieldspans), whatever their
number; a message whose header is ``fieldspans.OFFLOOP_BYTES`` or more is a
fallback UID too (the Python path splits it in the worker pool).
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from ..ids import email_id, thread_id
from ..mime.fieldspans import OFFLOOP_BYTES as FIELDS_OFFLOOP_BYTES, FieldSpans
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
WHOLE_BODY = HEADER_FIELDS + 1  # the code of a WholeBody item
WHOLE_HEADER = WHOLE_BODY + 1   # the code of a WholeHeader item
# fetch_upto's chunk also ends once its messages' headers times their
# HEADER.FIELDS items come to this many times its budget: items that match
# little (tiny answers) on big headers scan much for few bytes (16 lists on
# 105 headers of 60 KB filled 64 KB: 84 ms in C, on the loop)
HEADER_WORK = 16


class HeaderFields(NamedTuple):
    """``BODY[HEADER.FIELDS (names)]`` (``.NOT`` when NEGATE) of the whole
    message, without a partial range: LABEL is the item as the response
    names it (``b"BODY[HEADER.FIELDS (From To)]"``), NAMES the field names as
    the client sent them (matched without regard to case, RFC 9051 6.4.5)."""

    label: bytes
    names: tuple[str, ...]
    negate: bool


class WholeBody(NamedTuple):
    """The whole message as a literal, ``BODY[]`` / ``BODY.PEEK[]`` (LABEL
    ``b"BODY[]"``) or ``RFC822`` (LABEL ``b"RFC822"``), without a partial
    range: ``LABEL {n}\\r\\n`` + the stored bytes, NUL as 0x80
    (server.imap_session._no_nul; the length stays the same)."""

    label: bytes


class WholeHeader(NamedTuple):
    """The whole message's header as a literal, ``BODY[HEADER]`` /
    ``BODY.PEEK[HEADER]`` (LABEL ``b"BODY[HEADER]"``) or ``RFC822.HEADER``
    (LABEL ``b"RFC822.HEADER"``), without a partial range: ``LABEL {n}\\r\\n``
    + the stored bytes up to the header end (the blank line included: RFC
    9051 6.4.5), NUL as 0x80.  The header end is read from the index's meta
    prefix (mime.index.meta_header_end); an index without it is a fallback."""

    label: bytes

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
        elif isinstance(n, WholeBody):
            out.append(WHOLE_BODY)
        elif isinstance(n, WholeHeader):
            out.append(WHOLE_HEADER)
        elif type(n) is str and n in _CODE:
            out.append(_CODE[n])
        else:
            raise ValueError(f"not a simple FETCH item: {n!r}")
    return out


def header_literal(raw_header, item: HeaderFields) -> bytes:
    """``LABEL {n}\r\n`` + the matching field lines of RAW_HEADER (the
    message's bytes up to its header end) and the closing CRLF, NUL sent as
    0x80 as in every non-binary literal (server.imap_session._no_nul)."""
    return _header_literal(header_fields(bytes(raw_header), list(item.names), item.negate),
                           item)


def _header_literal(data: bytes, item: HeaderFields) -> bytes:
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return item.label + b" {%d}\r\n" % len(data) + data


def body_literal(raw, item: WholeBody | WholeHeader) -> bytes:
    """``LABEL {n}\\r\\n`` + RAW (the stored message, or its header), NUL as 0x80."""
    data = bytes(raw)
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return item.label + b" {%d}\r\n" % len(data) + data


def with_recent(flags: bytes) -> bytes:
    """FLAGS text (``b"FLAGS (...)"``) with ``\\Recent`` added last."""
    return flags[:-1] + (b" \\Recent)" if flags[-2:] != b"()" else b"\\Recent)")


def internaldate(received: int, tz: int) -> bytes:
    """``b'"dd-Mon-yyyy hh:mm:ss +zzzz"'`` for RECEIVED seconds at offset TZ minutes."""
    return format_datetime(datetime.fromtimestamp(received, timezone(timedelta(minutes=tz))))


def fetch_simple(read_email, read_index, uids, snap_uids, snap_eids, items,
                 flags, condstore: bool, utf8: bool,
                 read_blob=None, read_bs=None) -> tuple[list[bytes], dict[int, int], list[int]]:
    """``(responses, reported, fallback)`` for UIDS of a mailbox whose sequence
    map is SNAP_UIDS (ascending) / SNAP_EIDS (parallel email ids).

    READ_EMAIL is ``eid -> encoded email record or None`` and READ_INDEX
    ``blob hash -> encoded message index or None`` (``View.email_reader`` and
    ``View.index_reader`` of the account); READ_BLOB ``blob hash -> raw
    message or None`` (``View.blob_reader``), needed for HeaderFields and
    WholeBody items.  READ_BS (optional) is ``eid -> BODYSTRUCTURE wire
    bytes or None`` (``View.bodystructure_reader``, the ``msg.bs`` rows):
    when BODYSTRUCTURE is the only item read from the index, an email with
    a row is answered from it and its index is not read (the same bytes:
    the row is the index's field); one without is answered from its index.
    RESPONSES holds one ``* seq FETCH (...)\\r\\n`` per answered message, in
    UIDS order; UIDs not in the map and emails whose record is gone are
    skipped.  REPORTED maps each answered UID to the modseq it carried.
    FALLBACK lists, in UIDS order, the UIDs left to the Python path.
    ITEMS are names from ``ITEMS``, HeaderFields and WholeBody in request
    order; FLAGS formats a list of
    keywords as the FLAGS value (``b"(\\Seen $Forwarded)"``), called once per
    distinct keyword set (None when FLAGS is not asked for); CONDSTORE adds
    MODSEQ after FLAGS (RFC 7162 3.1.4.1) unless MODSEQ was asked for; UTF8
    says the client enabled UTF8=ACCEPT.
    """
    if not isinstance(uids, (list, tuple, array)):
        uids = list(uids)
    out: list[bytes] = []
    reported: dict[int, int] = {}
    fallback: list[int] = []
    for _k, u, resp, last_ms in _answers(read_email, read_index, uids, 0, snap_uids,
                                         snap_eids, items, flags, condstore, utf8, read_blob,
                                         None, read_bs=read_bs):
        if resp is None:
            fallback.append(u)
        else:
            out.append(resp)
            reported[u] = last_ms
    return out, reported, fallback


def fetch_upto(read_email, read_index, uids, start: int, snap_uids, snap_eids, items,
               flags, condstore: bool, utf8: bool, read_blob,
               budget: int, recent=None,
               read_bs=None, into: dict | None = None) -> tuple[bytes, dict[int, int], int, bool]:
    """``(chunk, reported, stop, fallback)``: the responses ``fetch_simple``
    gives for ``UIDS[START:STOP]``, joined into CHUNK, for a FETCH answer
    streamed in chunks of about BUDGET bytes (server.imap_session.fetch_chunks).

    UIDS is a sequence; the arguments otherwise as for fetch_simple.  It
    stops after the response that brings CHUNK to BUDGET bytes or more (so
    CHUNK stays under BUDGET plus one response), or after the response
    that brings the header bytes its HEADER.FIELDS items scan (a header's
    size times those items) to HEADER_WORK times BUDGET, or at the end of UIDS.
    FALLBACK True: it stopped at ``UIDS[STOP]``, a message it leaves to the
    Python path (as fetch_simple would) or whose WholeBody and WholeHeader
    literals together hold more than BUDGET bytes (the Python path sends those in pieces);
    the caller answers that one and goes on from STOP + 1.  RECENT: UIDs
    (a container) whose FLAGS also show ``\\Recent``, the session's recent
    messages (server.imap_session._with_recent), or None.  READ_BS: as for
    fetch_simple.  INTO: the dict REPORTED is (its entries added to it, a
    session's own: no dict of the chunk's made and merged), else a new one.
    """
    parts: list[bytes] = []
    held = 0
    reported: dict[int, int] = {} if into is None else into
    scanned = [0]
    for k, u, resp, last_ms in _answers(read_email, read_index, uids, start, snap_uids,
                                        snap_eids, items, flags, condstore, utf8, read_blob,
                                        budget, recent, scanned, read_bs):
        if resp is None:
            return b"".join(parts), reported, k, True
        parts.append(resp)
        held += len(resp)
        reported[u] = last_ms
        if held >= budget or scanned[0] >= budget * HEADER_WORK:
            return b"".join(parts), reported, k + 1, False
    return b"".join(parts), reported, len(uids), False


def _answers(read_email, read_index, uids, start: int, snap_uids, snap_eids, items,
             flags, condstore: bool, utf8: bool, read_blob, limit: int | None,
             recent=None, scanned: list | None = None, read_bs=None):
    """``(k, uid, response, modseq)`` for the messages of ``UIDS[START:]`` in
    order (K: the position in UIDS), skipping UIDs not in the map and gone
    records; RESPONSE None (and modseq None) for one left to the Python
    path, and for one whose WholeBody and WholeHeader literals hold more
    than LIMIT bytes.
    FLAGS of the UIDs in RECENT show \\Recent as well.  SCANNED[0] (when
    given) counts the header bytes of each message times its HEADER.FIELDS
    items (fetch_upto's HEADER_WORK)."""
    codes = item_codes(items)
    add_modseq = condstore and FLAGS in codes and MODSEQ not in codes
    want_header = HEADER_FIELDS in codes
    n_whole = codes.count(WHOLE_BODY)
    n_head = codes.count(WHOLE_HEADER)
    want_index = want_header or n_head > 0 or \
        any(c in (ENVELOPE, BODYSTRUCTURE, BODY) for c in codes)
    want_he = want_header or n_head > 0      # the header end, from the index
    # BODYSTRUCTURE the only item read from the index: the msg.bs row, if
    # the email has one, answers it (the index is read for the others)
    if read_bs is not None and not (BODYSTRUCTURE in codes and not want_he and
                                    ENVELOPE not in codes and BODY not in codes):
        read_bs = None
    # every HEADER.FIELDS item's names: the header is split once for them all
    hf_names = {n for j, c in enumerate(codes) if c == HEADER_FIELDS for n in items[j].names}
    n_hf = codes.count(HEADER_FIELDS)
    if (want_he or n_whole) and read_blob is None:
        raise ValueError("HEADER.FIELDS, whole-body and whole-header items need read_blob")
    unpack_msg = _MSG.unpack_from
    unpack_idx = _IDX.unpack_from
    flag_cache: dict[bytes, bytes] = {}
    tz_cache: dict[int, timezone] = {}
    n_snap = len(snap_uids)
    i = -1
    for k in range(start, len(uids)):
        u = uids[k]
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
            yield k, u, None, None
            continue
        rec = unpack_msg(data)
        if not utf8 and rec[_F_FLAGS] & _UTF8_HEADERS:
            yield k, u, None, None
            continue
        last_ms = rec[_F_LAST_MS]
        idx = None
        bs = read_bs(eid) if read_bs is not None else None
        if want_index and bs is None:
            idx = read_index(rec[_F_BLOB])
            if idx is None or len(idx) < _IDX_SIZE or idx[0] not in _IDX_VERSIONS:
                yield k, u, None, None
                continue
            ends = unpack_idx(idx)
        he = 0
        if want_he or n_whole:
            raw = read_blob(rec[_F_BLOB])
            if raw is None:
                yield k, u, None, None
                continue
        if want_he:
            # the header end from the meta's prefix (an index written
            # otherwise is decoded by the Python path); the header from the
            # raw message, cut there as a Python slice cuts
            he = meta_header_end(idx, ends)
            if he is None:
                yield k, u, None, None
                continue
            he = min(he, len(raw))
        # literals bigger than the budget: the Python path sends them in pieces
        if limit is not None and (n_whole or n_head) and \
                n_whole * len(raw) + n_head * he > limit:
            yield k, u, None, None
            continue
        if want_header:
            if he >= FIELDS_OFFLOOP_BYTES:
                yield k, u, None, None
                continue
            raw_header = bytes(raw[:he])
            if scanned is not None:
                scanned[0] += len(raw_header) * n_hf
            if n_hf > 1:        # one split for all of them
                split = FieldSpans(raw_header, 0, len(raw_header), hf_names)
        pieces = []
        for j, c in enumerate(codes):
            if c == UID:
                pieces.append(b"UID %d" % u)
            elif c == FLAGS:
                tail = bytes(data[_MSG_SIZE + rec[_F_NMEM] * _MEMBER_SIZE:]) \
                    if rec[_F_NKW] else b""
                fl = flag_cache.get(tail)
                if fl is None:
                    fl = flag_cache[tail] = b"FLAGS " + flags(decode_keywords(tail))
                if recent is not None and u in recent:
                    fl = with_recent(fl)
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
                pieces.append(b"BODYSTRUCTURE " + (bytes(bs) if bs is not None
                                                   else _idx_field(idx, ends, _BS)))
            elif c == BODY:
                pieces.append(b"BODY " + _idx_field(idx, ends, _BODY))
            elif c == HEADER_FIELDS:
                item = items[j]
                pieces.append(_header_literal(split.select(raw_header, item.names, item.negate),
                                              item) if n_hf > 1 else
                              header_literal(raw_header, item))
            elif c == WHOLE_BODY:
                pieces.append(body_literal(raw, items[j]))
            elif c == WHOLE_HEADER:
                pieces.append(body_literal(raw[:he], items[j]))
            elif c == EMAILID:
                pieces.append(f"EMAILID ({email_id(eid)})".encode())
            else:   # THREADID
                pieces.append(f"THREADID ({thread_id(rec[_F_THREAD])})".encode())
        if add_modseq:
            pieces.append(b"MODSEQ (%d)" % last_ms)
        yield k, u, b"* %d FETCH (" % (i + 1) + b" ".join(pieces) + b")\r\n", last_ms
