"""JMAP blobs (RFC 8620 §6): what a blobId names, read from the store.

A blobId is ``B`` + the hex content hash of a whole stored message or of an
upload (the same hash for the same bytes), or ``P`` + hash + ``_`` + part id
for the decoded content of one body part (``ids.part_blob_id``: IMAP part
"1.2" of the message with that hash, its transfer encoding removed as IMAP
BINARY does).  ``read_blob`` answers every kind; ``blob_type`` says what a
blob is; ``store_upload`` keeps an upload (store/uploads.py) until it
expires; ``Blob/copy`` (core) copies blobs between accounts, of which a user
has one, so it only checks that they exist.  Another account's blob is never
found: every read is under the asking account's key prefix.
"""
from __future__ import annotations

import hashlib
import time

from .. import ids, storeio
from ..mime import index as mindex
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError, set_error
from ..store import emails as store_emails
from ..store import uploads as store_uploads
from .jmap_api import Call, method

# a part blob is decoded only from messages up to this size (bounded work)
MAX_PART_SOURCE = 256 * 1024 * 1024


def _message(v, acc: int, h: bytes):
    raw = v.blob(acc, h)
    return bytes(raw) if raw is not None else None


def _part(v, acc: int, h: bytes, part: str) -> tuple[bytes, str] | None:
    raw = v.blob(acc, h)
    if raw is None or len(raw) > MAX_PART_SOURCE:
        return None
    raw = bytes(raw)
    mi = store_emails.decode_index(v.blob_index(acc, h))
    if mi is None:
        mi = mindex.index_message(raw)
    p = mi.part(part)
    if p is None:
        return None
    try:
        data = mindex.decoded_part(raw, mi, part)
    except mindex.UnknownCTE:
        data = raw[p.body_start:p.end]
    if data is None:
        return None
    return bytes(data), p.content_type or "application/octet-stream"


def read_blob_typed(v, acc: int, blob_id: str) -> tuple[bytes, str] | None:
    """(bytes, media type) of BLOB_ID in account ACC, or None."""
    if not isinstance(blob_id, str):
        return None
    h = ids.parse_blob(blob_id)
    if h is not None:
        raw = _message(v, acc, h)
        if raw is not None:
            return raw, "message/rfc822"
        up = store_uploads.get(v, acc, h)
        if up is not None:
            return bytes(up.data), up.type
        return None
    pp = ids.parse_part_blob(blob_id)
    if pp is not None:
        return _part(v, acc, *pp)
    return None


def read_blob(v, acc: int, blob_id: str) -> bytes | None:
    """The bytes BLOB_ID names in account ACC, or None (never another
    account's data: the store's blob keys are per account)."""
    got = read_blob_typed(v, acc, blob_id)
    return got[0] if got is not None else None


def blob_exists(v, acc: int, blob_id: str) -> bool:
    if not isinstance(blob_id, str):
        return False
    h = ids.parse_blob(blob_id)
    if h is not None:
        return v.blob(acc, h) is not None or store_uploads.get(v, acc, h) is not None
    return read_blob_typed(v, acc, blob_id) is not None


async def store_upload(store, acc: int, data: bytes, content_type: str, ttl: int,
                       max_pending: int = 0) -> dict:
    """Keep DATA as an upload of ACC for TTL seconds -> the upload response
    object of RFC 8620 §6.1 (without accountId).  Raises store OverQuota
    when ACC's pending uploads would pass MAX_PENDING bytes."""
    h = hashlib.sha256(data).digest()
    expires = int(time.time()) + ttl
    await storeio.write(store, store_uploads.put, acc, h, content_type, data, expires,
                        max_pending)
    return {"blobId": ids.blob_id(h), "type": content_type, "size": len(data)}


def sweep_uploads(tx, now: int) -> int:
    return store_uploads.sweep(tx, now)


@method("Blob/copy", cap.CORE, account=False)
async def blob_copy(call: Call) -> dict:
    """RFC 8620 §6.3.  A user has one account: both ids must be it."""
    a = call.args
    mine = ids.account_id(call.acc)
    if a.get("fromAccountId") != mine:
        raise MethodError("fromAccountNotFound")
    if a.get("accountId") != mine:
        raise MethodError("accountNotFound")
    blob_ids = a.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise MethodError("invalidArguments", "blobIds must be a list of ids")
    if len(blob_ids) > call.ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge")
    copied: dict[str, str] = {}
    not_copied: dict[str, dict] = {}
    with call.view() as v:
        for b in blob_ids:
            if blob_exists(v, call.acc, b):
                copied[b] = b
            else:
                not_copied[b] = set_error("notFound")
    return {"fromAccountId": mine, "accountId": mine,
            "copied": copied or None, "notCopied": not_copied or None}
