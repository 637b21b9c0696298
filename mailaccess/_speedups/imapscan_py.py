"""IMAP line and literal-header scanner: the receiver's hot loop (pure Python).

This is the source of truth; ``imapscan_c.pyx`` is its compiled twin and must
return identical results for every input (tests/test_imap_wire_scan.py checks
that under hypothesis).

Complexity contract (h11 ``_receivebuffer.py``): the receiver calls
``scan_line`` only on bytes it has not scanned before, carrying the quote state
across calls, so framing a command costs O(bytes received) however the input
is split.  ``literal_header`` looks only at the last few bytes of a line.

Quote state: 0 = outside a quoted string, 1 = inside one, 2 = inside one right
after a backslash (the next byte is escaped).  A LF always ends the line, even
inside a quoted string (quoted strings cannot contain CR or LF; such a line is
malformed and the parser rejects it, but framing must not wait forever).
"""
from __future__ import annotations

LIT_NONE = 0
LIT_SYNC = 1  # "{n}"; always set for a literal header
LIT_NONSYNC = 2  # "{n+}" (RFC 7888), added to LIT_SYNC's bit
LIT_BINARY = 4  # "~{n}" (RFC 3516 literal8)
LIT_BAD = -1  # "{}" / "{+}": looks like a header but has no digits

# Sizes saturate here; anything this big is over every configured limit.
SIZE_CAP = 1 << 62
_MAX_DIGITS = 19


def scan_line(buf, pos: int, end: int, qstate: int) -> tuple[int, int]:
    """Scan ``buf[pos:end]`` for the LF that ends the current line.

    Returns ``(lf, qstate)``: ``lf`` is the index of the LF, or -1 when there
    is none before ``end``; ``qstate`` is the quote state just before the LF
    (or at ``end``) given ``qstate`` at ``pos``.
    """
    n = len(buf)
    if end > n:
        end = n
    if pos < 0:
        pos = 0
    if pos >= end:
        return -1, qstate
    find = buf.find
    lf = find(b"\n", pos, end)
    stop = end if lf < 0 else lf
    q = qstate
    while pos < stop:
        if q == 0:
            i = find(b'"', pos, stop)
            if i < 0:
                break
            q = 1
            pos = i + 1
        elif q == 2:
            q = 1
            pos += 1
        else:
            quote = find(b'"', pos, stop)
            lim = stop if quote < 0 else quote
            while True:
                j = find(b"\\", pos, lim)
                if j < 0:
                    break
                if j + 1 >= stop:  # escape pending at the end of the data
                    pos = stop
                    q = 2
                    break
                pos = j + 2
                if j + 1 == quote:  # that quote was escaped: find the next one
                    quote = find(b'"', pos, stop)
                    lim = stop if quote < 0 else quote
            if q == 2:
                break
            if quote < 0:
                break
            q = 0
            pos = quote + 1
    return lf, q


def literal_header(buf, start: int, end: int) -> tuple[int, int, int]:
    """Classify the end of the line ``buf[start:end]`` (CRLF excluded).

    Returns ``(kind, size, hdr)``.  ``kind`` is LIT_NONE (the line ends the
    command), LIT_BAD, or LIT_SYNC with LIT_NONSYNC / LIT_BINARY bits added;
    ``size`` is the announced octet count (saturating at SIZE_CAP); ``hdr`` is
    where the header (``{`` or ``~``) starts, i.e. where the line's content
    ends (``end`` when there is no header).  The caller must only ask when
    the line ended outside a quoted string.
    """
    if end > len(buf):
        end = len(buf)
    if end <= start or buf[end - 1] != 0x7D:  # "}"
        return LIT_NONE, 0, end
    i = end - 2
    kind = LIT_SYNC
    if i >= start and buf[i] == 0x2B:  # "+"
        kind |= LIT_NONSYNC
        i -= 1
    dend = i + 1
    while i >= start and 0x30 <= buf[i] <= 0x39:
        i -= 1
    if i < start or buf[i] != 0x7B:  # "{"
        return LIT_NONE, 0, end
    if dend == i + 1:
        return LIT_BAD, 0, i
    k = i + 1
    while k < dend - 1 and buf[k] == 0x30:  # leading zeros
        k += 1
    if dend - k > _MAX_DIGITS:
        size = SIZE_CAP
    else:
        size = int(bytes(buf[k:dend]))
        if size > SIZE_CAP:
            size = SIZE_CAP
    hdr = i
    if i > start and buf[i - 1] == 0x7E:  # "~"
        kind |= LIT_BINARY
        hdr = i - 1
    return kind, size, hdr
