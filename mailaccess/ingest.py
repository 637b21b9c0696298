"""Turn raw message bytes into a store.ops.NewEmail: index once, hash once.

Runs on the caller's side (a worker thread for big messages), never on the
store's writer thread, so the writer only writes.
"""
from __future__ import annotations

import hashlib
import time

from .mime import index as mindex
from .store import keys
from .store.ops import NewEmail
from .store.records import FLAG_UTF8_HEADERS


def subject_hash(base_subject: str) -> bytes:
    return hashlib.sha256(base_subject.encode("utf-8", "surrogatepass")).digest()[:8]


def prepare(raw: bytes, received_at: int | None = None, tz: int = 0) -> NewEmail:
    mi = mindex.index_message(raw)
    refs = tuple(mi.in_reply_to) + tuple(mi.references)
    return NewEmail(
        raw=raw,
        index=mindex.encode_index(mi),
        blob=keys.blob_hash(raw),
        received_at=int(time.time()) if received_at is None else int(received_at),
        tz=tz,
        message_id=mi.message_id,
        thread_refs=refs,
        subject_hash=subject_hash(mindex.base_subject(mi.subject or "")),
        flags=0 if raw[:mi.header_end].isascii() else FLAG_UTF8_HEADERS,
    )
