# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""IMAP line and literal-header scanner, compiled twin of ``imapscan_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract); tests run both on hypothesis input.
"""
from libc.string cimport memchr

LIT_NONE = 0
LIT_SYNC = 1
LIT_NONSYNC = 2
LIT_BINARY = 4
LIT_BAD = -1
SIZE_CAP = 1 << 62

cdef unsigned long long _CAP = (<unsigned long long>1) << 62


def scan_line(const unsigned char[::1] buf, Py_ssize_t pos, Py_ssize_t end, int qstate):
    """Find the LF ending the line in buf[pos:end]; return (lf or -1, qstate)."""
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t i, stop, lf
    cdef const unsigned char *p
    cdef const unsigned char *hit
    cdef unsigned char c
    cdef int q = qstate
    if end > n:
        end = n
    if pos < 0:
        pos = 0
    if pos >= end:
        return -1, qstate
    p = &buf[0]
    hit = <const unsigned char *>memchr(p + pos, 10, <size_t>(end - pos))
    if hit == NULL:
        lf = -1
        stop = end
    else:
        lf = hit - p
        stop = lf
    i = pos
    while i < stop:
        if q == 0:
            hit = <const unsigned char *>memchr(p + i, 34, <size_t>(stop - i))
            if hit == NULL:
                break
            q = 1
            i = (hit - p) + 1
            continue
        c = p[i]
        if q == 1:
            if c == 34:
                q = 0
            elif c == 92:
                q = 2
        else:
            q = 1
        i += 1
    return lf, q


def literal_header(const unsigned char[::1] buf, Py_ssize_t start, Py_ssize_t end):
    """Classify the end of line buf[start:end]; return (kind, size, hdr)."""
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t i, dend, k, hdr
    cdef int kind
    cdef unsigned long long size = 0
    if end > n:
        end = n
    if end <= start or buf[end - 1] != 0x7D:
        return LIT_NONE, 0, end
    i = end - 2
    kind = 1
    if i >= start and buf[i] == 0x2B:
        kind |= 2
        i -= 1
    dend = i + 1
    while i >= start and 0x30 <= buf[i] <= 0x39:
        i -= 1
    if i < start or buf[i] != 0x7B:
        return LIT_NONE, 0, end
    if dend == i + 1:
        return LIT_BAD, 0, i
    k = i + 1
    while k < dend:
        if size > 461168601842738790ULL:  # the next digit would pass the cap
            size = _CAP
            break
        size = size * 10 + (buf[k] - 0x30)
        if size > _CAP:
            size = _CAP
            break
        k += 1
    hdr = i
    if i > start and buf[i - 1] == 0x7E:
        kind |= 4
        hdr = i - 1
    return kind, size, hdr
