"""JMAP blobs (RFC 8620 §6): what a blobId names, read from the store.

A blobId is ``B`` + the hex content hash of a whole stored message (or an
upload), ``P`` + hash + ``_`` + part id for one body part
(``ids.part_blob_id``).  ``read_blob`` answers every kind; uploads and parts
are added by the HTTP/blob work.
"""
from __future__ import annotations

from .. import ids


def read_blob(v, acc: int, blob_id: str) -> bytes | None:
    """The bytes BLOB_ID names in account ACC, or None (never another
    account's data: the store's blob keys are per account)."""
    h = ids.parse_blob(blob_id)
    if h is None:
        return None
    raw = v.blob(acc, h)
    return bytes(raw) if raw is not None else None
