"""Charset names that Python's codecs do not know on every supported
release, and a lookup that knows them on all.

``encodings.aliases`` of 3.11.7 and 3.12.1 are the same; 3.13.0 adds one
name, ``windows_31j`` (IANA's Windows-31J, Microsoft's Shift_JIS: cp932),
so "WINDOWS-31J" was a charset on 3.13 only.  IANA's alias csWindows31J is
known to none.  The message indexer's MIME charset table
(_speedups/msgindex_py.py and its Cython twin, which keep their own copy
with their other MIME label choices) maps the same names; a test holds the
two to the same codec.
"""
from __future__ import annotations

import codecs

# lowercased charset name -> Python codec name
CODEC_ALIASES = {
    "windows-31j": "cp932",
    "windows_31j": "cp932",
    "cswindows31j": "cp932",
}


def lookup(name: str) -> codecs.CodecInfo | None:
    """The text codec of charset NAME (any case, IANA or Python spelling);
    None for a name no codec has, or a codec that is not a text encoding
    (base64, rot13, ...)."""
    name = CODEC_ALIASES.get(name.lower(), name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):     # ValueError: a NUL in the name
        return None
    return info if getattr(info, "_is_text_encoding", True) else None
