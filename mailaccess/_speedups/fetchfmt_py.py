"""FETCH responses for the simple items: ``build_fetch``'s hot loop (pure Python).

This is the source of truth; ``fetchfmt_c.pyx`` is its compiled twin and must
return identical results (tests/speedups/test_fetchfmt.py).

``fetch_simple`` answers FETCH for items that need only the email record and
the prepared index: UID, FLAGS, MODSEQ, RFC822.SIZE, INTERNALDATE, ENVELOPE,
BODYSTRUCTURE, BODY, EMAILID, THREADID.  It reads the LMDB values itself
through ``get(key, None, db)`` (``lmdb.Transaction.get``), straight from the
storage layouts (``store/records.py`` ``_MSG_HEAD``, ``mime/index.py``
``_HEAD``).  A message it cannot answer byte for byte the way
``server.imap_session.build_fetch`` would is handed back as a fallback UID:
raw UTF-8 headers for a client not in UTF-8 mode (RFC 6858 downgrading),
and records or indexes it does not recognise (the Python path raises the
proper error for those).
"""
from __future__ import annotations

import struct
from bisect import bisect_left
from datetime import datetime, timedelta, timezone

from ..ids import email_id, thread_id
from ..mime.index import _HEAD as _IDX_HEAD, READABLE_VERSIONS as _IDX_VERSIONS
from ..proto.imap.dates import format_datetime
from ..server.imap_fmt import flags_list
from ..store.records import _MEMBER, _MSG_HEAD, _MSG_V1, FLAG_UTF8_HEADERS

# item codes, in the order of ITEMS
UID, FLAGS, MODSEQ, RFC822_SIZE, INTERNALDATE, ENVELOPE, BODYSTRUCTURE, BODY, EMAILID, \
    THREADID = range(10)
ITEMS = ("UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE",
         "BODYSTRUCTURE", "BODY", "EMAILID", "THREADID")
_CODE = {name: i for i, name in enumerate(ITEMS)}

_U32 = struct.Struct(">I")
_U32U32 = struct.Struct(">II")
_MSG_SIZE = _MSG_HEAD.size
_MEMBER_SIZE = _MEMBER.size
_IDX_SIZE = _IDX_HEAD.size


def item_codes(items) -> list[int]:
    """Codes of the item NAMES; ValueError for one this module cannot answer."""
    try:
        return [_CODE[n] for n in items]
    except KeyError as exc:
        raise ValueError(f"not a simple FETCH item: {exc.args[0]}") from None


def internaldate(received: int, tz: int) -> bytes:
    """``b'"dd-Mon-yyyy hh:mm:ss +zzzz"'`` for RECEIVED seconds at offset TZ minutes."""
    return format_datetime(datetime.fromtimestamp(received, timezone(timedelta(minutes=tz))))


def fetch_simple(get, msg_db, idx_db, acc: int, uids, snap_uids, snap_eids, items,
                 spell: dict | None, condstore: bool,
                 utf8: bool) -> tuple[list[bytes], dict[int, int], list[int]]:
    """``(responses, reported, fallback)`` for UIDS of a mailbox whose sequence
    map is SNAP_UIDS (ascending) / SNAP_EIDS (parallel email ids).

    RESPONSES holds one ``* seq FETCH (...)\\r\\n`` per answered message, in
    UIDS order; UIDs not in the map and emails whose record is gone are
    skipped.  REPORTED maps each answered UID to the modseq it carried.
    FALLBACK lists, in UIDS order, the UIDs left to the Python path.
    ITEMS are names from ``ITEMS`` in request order; SPELL is
    ``View.keyword_spellings``; CONDSTORE adds MODSEQ after FLAGS (RFC 7162
    3.1.4.1) unless MODSEQ was asked for; UTF8 says the client enabled
    UTF8=ACCEPT.
    """
    codes = item_codes(items)
    add_modseq = condstore and FLAGS in codes and MODSEQ not in codes
    want_index = any(c in (ENVELOPE, BODYSTRUCTURE, BODY) for c in codes)
    akey = _U32.pack(acc)
    msg_key = _U32U32.pack
    unpack_msg = _MSG_HEAD.unpack_from
    unpack_idx = _IDX_HEAD.unpack_from
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
        data = get(msg_key(acc, eid), None, msg_db)
        if data is None:
            continue    # expunged meanwhile: RFC 9051 lets us omit it
        if len(data) < _MSG_SIZE or data[0] != _MSG_V1:
            fallback.append(u)
            continue
        (_v, blob, received, tz, size, thread, last_ms, flags, nkw,
         nmem) = unpack_msg(data)
        if not utf8 and flags & FLAG_UTF8_HEADERS:
            fallback.append(u)
            continue
        idx = None
        if want_index:
            idx = get(akey + blob, None, idx_db)
            if idx is None or len(idx) < _IDX_SIZE or idx[0] not in _IDX_VERSIONS:
                fallback.append(u)
                continue
            ends = unpack_idx(idx)
        pieces = []
        for c in codes:
            if c == UID:
                pieces.append(b"UID %d" % u)
            elif c == FLAGS:
                tail = bytes(data[_MSG_SIZE + nmem * _MEMBER_SIZE:]) if nkw else b""
                fl = flag_cache.get(tail)
                if fl is None:
                    kws = tail.decode("utf-8").split("\0") if nkw else []
                    fl = flag_cache[tail] = b"FLAGS " + flags_list(kws, spell)
                pieces.append(fl)
            elif c == MODSEQ:
                pieces.append(b"MODSEQ (%d)" % last_ms)
            elif c == RFC822_SIZE:
                pieces.append(b"RFC822.SIZE %d" % size)
            elif c == INTERNALDATE:
                zone = tz_cache.get(tz)
                if zone is None:
                    zone = tz_cache[tz] = timezone(timedelta(minutes=tz))
                pieces.append(b"INTERNALDATE " +
                              format_datetime(datetime.fromtimestamp(received, zone)))
            elif c == ENVELOPE:
                pieces.append(b"ENVELOPE " + bytes(idx[_IDX_SIZE:_IDX_SIZE + ends[1]]))
            elif c == BODYSTRUCTURE:
                pieces.append(b"BODYSTRUCTURE " +
                              bytes(idx[_IDX_SIZE + ends[1]:_IDX_SIZE + ends[2]]))
            elif c == BODY:
                pieces.append(b"BODY " + bytes(idx[_IDX_SIZE + ends[2]:_IDX_SIZE + ends[3]]))
            elif c == EMAILID:
                pieces.append(f"EMAILID ({email_id(eid)})".encode())
            else:   # THREADID
                pieces.append(f"THREADID ({thread_id(thread)})".encode())
        if add_modseq:
            pieces.append(b"MODSEQ (%d)" % last_ms)
        out.append(b"* %d FETCH (" % (i + 1) + b" ".join(pieces) + b")\r\n")
        reported[u] = last_ms
    return out, reported, fallback
