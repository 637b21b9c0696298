"""A light reader of the stored message index for renderers that need a
message's headers, part spans and JMAP body choice but rarely its JMAP body
structure (ActiveSync items: server/eas_item.py).

``read_index(data)`` returns a :class:`LiteIndex` with the fields listed in
``LITE_FIELDS`` and the preview, decoded without ``jmap_body`` (every header
of every part: most of the meta JSON, and most of the time decoding it
takes); ``jmap_body`` is decoded from its own slice when first asked for.
It relies on the storage form documented in mime/index.py (version 2): the
meta field is a JSON object written in MessageIndex field order, so
``,"jmap_body":`` (its first occurrence) starts the structure and
``,"text_body":`` (its last occurrence) follows it; a quote inside a JSON
string is escaped, so neither text can occur inside one (index_summary
reads the same prefix).  Another version, or anything unexpected, falls
back to ``index.decode_index_meta``.  Lives in mime/ because only mime/
knows the index's layout.
"""
from __future__ import annotations

import json

from . import index as mindex

__all__ = ["LiteIndex", "read_index", "LITE_FIELDS"]


class LiteIndex:
    """The LITE_FIELDS and preview of a stored index; ``jmap_body`` decoded
    on first use; ``part(section)`` as MessageIndex has it."""

    __slots__ = ("parts", "subject", "from_", "to", "cc", "bcc", "reply_to", "sender",
                 "sent_at", "header_end", "text_body", "html_body", "attachments",
                 "preview", "_data", "_jmap_body")

    def part(self, section: str):
        for p in self.parts:
            if p.section == section:
                return p
        return None

    @property
    def jmap_body(self) -> dict:
        jb = self._jmap_body
        if jb is None:
            jb = self._jmap_body = json.loads(self._data)
        return jb


LITE_FIELDS = ("parts", "subject", "from_", "to", "cc", "bcc", "reply_to", "sender",
               "sent_at", "header_end", "text_body", "html_body", "attachments")
_JB_KEY = b',"jmap_body":'
_TB_KEY = b',"text_body":'
_PART_ARITY = len(mindex.Part._fields)
_ADDRESS_FIELDS = ("from_", "to", "cc", "bcc", "reply_to", "sender")


def read_index(data):
    """A LiteIndex (or a MessageIndex) of the stored index DATA; ValueError
    when it cannot be read."""
    if mindex.index_version(data) != 2:
        return mindex.decode_index_meta(data)
    s, e = mindex.index_field_span(data, "meta")
    meta = bytes(data[s:e])
    a = meta.find(_JB_KEY)
    b = meta.rfind(_TB_KEY)
    if a < 0 or b < a:
        return mindex.decode_index_meta(data)
    doc = json.loads(meta[:a] + meta[b:])
    li = LiteIndex()
    try:
        make = mindex.Part._make
        li.parts = tuple([make(p) if len(p) == _PART_ARITY else make(p[:_PART_ARITY])
                          for p in doc["parts"]])
        li.from_, li.to, li.cc, li.bcc, li.reply_to, li.sender = (
            tuple(map(tuple, doc[f])) for f in _ADDRESS_FIELDS)
        for f in ("subject", "sent_at", "header_end"):
            setattr(li, f, doc[f])
        for f in ("text_body", "html_body", "attachments"):
            setattr(li, f, tuple(doc[f]))
    except (KeyError, TypeError):
        return mindex.decode_index_meta(data)
    ps, pe = mindex.index_field_span(data, "preview")
    li.preview = bytes(data[ps:pe]).decode("utf-8", "surrogatepass")
    li._data = meta[a + len(_JB_KEY):b]      # the jmap_body object's JSON
    li._jmap_body = None
    return li
