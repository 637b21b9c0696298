"""Substring scans over many normalised texts: the hot loop of SEARCH TEXT/BODY.

Pure-Python twin of ``search_c``.  Texts and needles are UTF-8 bytes of the
normalised search text (casefolded, white space collapsed, see
``mailaccess.mime.index.normalize_search``), so a byte substring is exactly a
character substring and case-insensitivity is already in the data.  A text
is any object with the buffer protocol (bytes, or a memoryview slice of an
LMDB value: the compiled twin scans it in place, this one has to copy it,
since ``in`` on a memoryview compares items, not substrings).
"""
from __future__ import annotations


def find_all(texts: list, needle: bytes) -> list[int]:
    """Positions i (ascending) of the TEXTS that contain NEEDLE."""
    if not needle:
        return list(range(len(texts)))
    return [i for i, t in enumerate(texts)
            if needle in (t if type(t) is bytes else bytes(t))]


def find_header(texts: list, name: bytes, needle: bytes) -> list[int]:
    """Positions of the TEXTS (``name: value`` lines joined by ``\\n``) with a
    line for header NAME (lowercase, no colon) whose value contains NEEDLE;
    an empty NEEDLE asks only that such a line exists."""
    prefix = name + b":"
    n = len(prefix)
    out = []
    for i, t in enumerate(texts):
        t = bytes(t)
        if needle and needle not in t:
            continue
        for line in t.split(b"\n"):
            if line[:n] == prefix and needle in line[n:]:
                out.append(i)
                break
    return out
