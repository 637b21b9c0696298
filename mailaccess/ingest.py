"""Turn raw message bytes into a store.ops.NewEmail: index once, hash once.

Runs on the caller's side (a worker thread for big messages), never on the
store's writer thread, so the writer only writes.
"""
from __future__ import annotations

import hashlib
import time

from .mime import index as mindex
from .query import facts
from .store import keys
from .store.ops import NewEmail
from .store.records import FLAG_UTF8_HEADERS


def subject_hash(base_subject: str) -> bytes:
    return hashlib.sha256(base_subject.encode("utf-8", "surrogatepass")).digest()[:8]


#: message ids of a message's In-Reply-To and References that the store's
#: threading looks up and records (ops._assign_thread: a read and a key per
#: id, on the writer that every account shares).  RFC 5322 3.6.4: References
#: is the parent's References plus the parent's id, so its first id is the
#: root and its last ones the nearest ancestors: those are kept.  Before, a
#: References of 200,000 ids (2.3 MB) held the writer 0.63 s and added 39 MB
#: to the store; anyone who can send mail can send one.
THREAD_IN_REPLY_TO_MAX = 8
THREAD_REFERENCES_MAX = 64


def thread_refs(in_reply_to, references) -> tuple[str, ...]:
    """The ids the store threads a message by (THREAD_*_MAX), in order,
    each once."""
    refs = list(in_reply_to[:THREAD_IN_REPLY_TO_MAX])
    if len(references) > THREAD_REFERENCES_MAX:
        refs.append(references[0])
        refs.extend(references[-(THREAD_REFERENCES_MAX - 1):])
    else:
        refs.extend(references)
    return tuple(dict.fromkeys(refs))


def prepare(raw: bytes, received_at: int | None = None, tz: int = 0) -> NewEmail:
    mi = mindex.index_message(raw)
    refs = thread_refs(mi.in_reply_to, mi.references)
    index = mindex.encode_index(mi)
    return NewEmail(
        raw=raw,
        index=index,
        # what SORT and THREAD read, kept beside the email (query/facts.py)
        facts=facts.record(index),
        # what SEARCH FROM/TO/CC/BCC/SUBJECT read, kept beside it too (msg.hdr)
        search=mindex.search_row(index),
        blob=keys.blob_hash(raw),
        received_at=int(time.time()) if received_at is None else int(received_at),
        tz=tz,
        message_id=mi.message_id,
        thread_refs=refs,
        subject_hash=subject_hash(mindex.base_subject(mi.subject or "")),
        flags=0 if raw[:mi.header_end].isascii() else FLAG_UTF8_HEADERS,
    )
