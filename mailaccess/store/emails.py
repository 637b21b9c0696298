"""One email as the layers above the store read it: its record and its index.

``load_email(view, acc, eid)`` is the one loader of an email with its message
index: IMAP FETCH, SEARCH, SORT and THREAD use it, and JMAP Email/get is meant
to (``load_record`` is its record-only part, for SEARCH's cheap conditions).  The record and the index are each read at most once, and only when asked
for, so a caller that needs only keywords never touches the index and one that
needs only the index text never decodes the memberships.

Decoding the index is lenient by default (``LoadedEmail.index``): an index this
version cannot read is ``None``, and the email is then searched, sorted and
threaded as one without headers.  ``require_index()`` is the strict form for
callers that must answer from the index or fail (FETCH BODY[...]);
``header_end()`` the strict reader of just where the header ends (FETCH of
the whole message's header or text), which skips decoding the index.  Every
decode of a stored index goes through here (``mime.index.decode_index``).

It lives in the store, not in query/ or a protocol, because it pairs two of the
store's tables (``msg`` and ``blob.idx``) and sits below every reader of mail.
"""
from __future__ import annotations

import struct

from ..mime import index as mindex
from . import records
from .records import EmailRecord

__all__ = ["LoadedEmail", "load_email", "load_record", "decode_index"]

_UNSET = object()


def decode_index(data) -> mindex.MessageIndex | None:
    """The decoded message index DATA, or None when there is none or this
    version cannot read it (lenient)."""
    if data is None:
        return None
    try:
        return mindex.decode_index(data)
    except (ValueError, struct.error):    # another version, or cut short
        return None


class LoadedEmail:
    """Email ID of account ACC, read through VIEW's transaction on demand."""

    __slots__ = ("view", "acc", "id", "raw", "members", "_record", "_index_data", "_index")

    def __init__(self, view, acc: int, eid: int, raw, members: bool = True):
        self.view = view
        self.acc = acc
        self.id = eid
        self.raw = raw            # the encoded record (an LMDB buffer)
        self.members = members    # decode memberships (False: an empty list)
        self._record: EmailRecord | None = None
        self._index_data = _UNSET
        self._index = _UNSET

    @property
    def record(self) -> EmailRecord:
        r = self._record
        if r is None:
            r = self._record = records.decode_email(self.id, self.raw, self.members)
        return r

    @property
    def blob(self) -> bytes:
        """The blob hash, without decoding the rest of the record."""
        r = self._record
        return r.blob if r is not None else records.blob_hash_of(self.raw)

    @property
    def index_data(self):
        """The encoded message index (a buffer), or None when missing."""
        d = self._index_data
        if d is _UNSET:
            d = self._index_data = self.view.blob_index(self.acc, self.blob)
        return d

    @property
    def index(self) -> mindex.MessageIndex | None:
        """The decoded index; None when missing or unreadable (lenient)."""
        mi = self._index
        if mi is _UNSET:
            mi = self._index = decode_index(self.index_data)
        return mi

    def require_index(self) -> mindex.MessageIndex:
        """The decoded index; ValueError when missing or unreadable (strict)."""
        mi = self._index
        if mi is _UNSET or mi is None:
            data = self.index_data
            if data is None:
                raise ValueError(f"email {self.id}: no message index")
            mi = self._index = mindex.decode_index(data)
        return mi

    def header_end(self) -> int:
        """Where the message's header ends (MessageIndex.header_end), read
        from the index's meta prefix without decoding it when it is not
        decoded yet; ValueError when missing or unreadable (strict)."""
        mi = self._index
        if mi is not _UNSET and mi is not None:
            return mi.header_end
        data = self.index_data
        if data is None:
            raise ValueError(f"email {self.id}: no message index")
        return mindex.index_header_end(data)


def load_email(view, acc: int, eid: int, *, members: bool = True,
               record: EmailRecord | None = None) -> LoadedEmail | None:
    """Email EID of account ACC (None when it does not exist).  MEMBERS=False
    leaves the record's memberships out (the usual case above IMAP SAVEDATE
    and mailbox conditions: it saves decoding them).  RECORD: its record, when
    the caller already holds it (read with load_record), so it is not read twice."""
    if record is not None:
        em = LoadedEmail(view, acc, eid, None, members)
        em._record = record
        return em
    raw = view.email_raw(acc, eid)
    if raw is None:
        return None
    return LoadedEmail(view, acc, eid, raw, members)


def load_record(view, acc: int, eid: int, members: bool = True) -> EmailRecord | None:
    """Just the record of email EID (None when it does not exist): the cheap
    SEARCH conditions (keywords, sizes, dates) need no more, once per candidate."""
    raw = view.email_raw(acc, eid)
    return records.decode_email(eid, raw, members) if raw is not None else None
