"""JMAP uploads (RFC 8620 §6.1): blobs a client uploaded, kept until they expire.

Tables (store/keys.py): ``upl`` (acc hash -> expiry, media type, bytes) and
``upl.exp`` (expiry acc hash -> ''), the order ``sweep`` deletes them in.
An upload's blobId is the same content hash a stored message of the same
bytes has (``ids.blob_id``), so uploading a message and importing it name
the same blob.  Uploading the same bytes again only extends the expiry.
Writes log nothing in the change log (uploads are not mail).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import keys
from .errors import OverQuota


@dataclass(frozen=True)
class Upload:
    expires: int
    type: str
    data: memoryview     # valid while the view's transaction lives


def _has_tables(v) -> bool:
    return v.db.get("upl") is not None


def get(v, acc: int, h: bytes, now: float | None = None) -> Upload | None:
    """ACC's unexpired upload with hash H, or None."""
    if not _has_tables(v):
        return None
    raw = v._get("upl", keys.upl(acc, h))
    if raw is None:
        return None
    expires, ctype, data = keys.decode_upload(raw)
    if expires <= (time.time() if now is None else now):
        return None
    return Upload(expires, ctype, data)


def pending_bytes(v, acc: int) -> int:
    """Bytes of ACC's uploads not yet swept."""
    return v.counter(acc, keys.CTR_UPLOADS)


def put(tx, acc: int, h: bytes, content_type: str, data: bytes, expires: int,
        max_pending: int = 0) -> None:
    """Keep DATA (hash H) for ACC until EXPIRES; OverQuota when ACC's
    pending uploads would pass MAX_PENDING bytes (0: no limit)."""
    key = keys.upl(acc, h)
    old = tx._get("upl", key)
    if old is not None:
        old_expires = keys.decode_upload(old)[0]
        tx.delete("upl.exp", keys.upl_exp(old_expires, acc, h))
        expires = max(expires, old_expires)
    else:
        total = tx.counter(acc, keys.CTR_UPLOADS) + len(data)
        if max_pending and total > max_pending:
            raise OverQuota(f"pending uploads would exceed {max_pending} bytes")
        tx.put("ctr", keys.ctr(acc, keys.CTR_UPLOADS), keys.u64(total))
    tx.put("upl", key, keys.encode_upload(expires, content_type, data))
    tx.put("upl.exp", keys.upl_exp(expires, acc, h), b"")


def sweep(tx, now: int, limit: int = 1000) -> int:
    """Delete at most LIMIT uploads that expired before NOW -> how many."""
    cur = tx.txn.cursor(db=tx.db["upl.exp"])
    gone = []
    if cur.first():
        for k, _ in cur:
            expires, acc, h = keys.split_upl_exp(k)
            if expires > now or len(gone) >= limit:
                break
            gone.append((bytes(k), acc, h))
    for k, acc, h in gone:
        tx.delete("upl.exp", k)
        raw = tx._get("upl", keys.upl(acc, h))
        if raw is not None and keys.decode_upload(raw)[0] <= now:
            size = len(keys.decode_upload(raw)[2])
            tx.delete("upl", keys.upl(acc, h))
            if tx.account(acc) is not None:
                tx.add_counter(acc, keys.CTR_UPLOADS, -size)
    return len(gone)


def delete_all(tx, acc: int) -> None:
    """Every upload of ACC (the account is being deleted); their sweep rows
    are dropped by the next sweep."""
    tx.delete_prefix("upl", keys.account_prefix(acc))
    tx.delete("ctr", keys.ctr(acc, keys.CTR_UPLOADS))
