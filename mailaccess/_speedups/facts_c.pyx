# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Email facts hot paths, compiled twin of ``facts_py`` (the source of truth,
which documents the contract): the same functions, the same results (tests
run both on hypothesis input).  first_groups: one pass over the ENVELOPE,
no objects made but the group names found.  extract: the meta JSON's keys
"subject" .. "has_attachment" parsed in place by a small JSON reader
(strings without escapes made directly, strings with escapes by the json
module's own scanstring; numbers only as integers); it declines (None)
what it does not read, where facts_py's json may still read it (a float,
an object inside an array), and the caller then decodes the whole index.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memchr, memcmp

from mailaccess._speedups.span cimport Span, _span, _unspan

import json.decoder

from mailaccess._speedups.facts_py import HEAD, NEED, VERSION

FIELDS = (2, 5, 6)
cdef object _scanstring = json.decoder.scanstring
cdef Py_ssize_t _H = HEAD.size
assert HEAD.format == ">B7I" and VERSION == 2

cdef object _NONE3 = (None, None, None)


cdef inline int _slot(Py_ssize_t field):
    if field == 2:
        return 0
    if field == 5:
        return 1
    if field == 6:
        return 2
    return -1


cdef bytes _unquote(const unsigned char *p, Py_ssize_t a, Py_ssize_t b):
    """The quoted string's bytes p[a:b] with backslash escapes removed."""
    cdef bytearray buf = bytearray()
    cdef Py_ssize_t i = a
    while i < b:
        if p[i] == 0x5C:
            i += 1
        buf.append(p[i])
        i += 1
    return bytes(buf)


def first_groups(bytes env):
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(env)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(env)
    cdef Py_ssize_t pos = 0, j, start, end, size
    cdef Py_ssize_t depth, field = -1, addr = -1, elem = -1
    cdef int slot = -1
    cdef bint first_list = False, host_nil = False, escaped, is_nil
    cdef unsigned char c
    cdef object mailbox = None
    cdef object value
    cdef list found = [None, None, None]
    while pos < n and p[pos] == 0x20:
        pos += 1
    if pos >= n or p[pos] != 0x28:
        return _NONE3
    pos += 1
    depth = 1
    while True:
        while pos < n and p[pos] == 0x20:
            pos += 1
        if pos >= n:
            return _NONE3
        c = p[pos]
        if c == 0x29:
            pos += 1
            depth -= 1
            if depth == 0:
                return tuple(found)
            if depth == 2 and slot >= 0 and addr == 0:
                if first_list and host_nil and mailbox is not None:
                    found[slot] = mailbox
            continue
        if depth == 1:
            field += 1
            addr = -1
            slot = _slot(field)
            first_list = False
            mailbox = None
            host_nil = False
        elif depth == 2:
            addr += 1
            elem = -1
        elif depth == 3:
            elem += 1
        if c == 0x28:
            if depth == 2 and slot >= 0 and addr == 0:
                first_list = True
                mailbox = None
                host_nil = False
            pos += 1
            depth += 1
            continue
        # is this string one first_groups keeps? (the first address's
        # mailbox or host of a reported field)
        keep = depth == 3 and slot >= 0 and addr == 0 and (elem == 2 or elem == 3)
        value = None
        is_nil = False
        if c == 0x22:
            j = pos + 1
            escaped = False
            while j < n and p[j] != 0x22:
                if p[j] == 0x5C:
                    escaped = True
                    j += 1
                    if j >= n:
                        return _NONE3
                j += 1
            if j >= n:
                return _NONE3
            if keep:
                if escaped:
                    value = _unquote(p, pos + 1, j)
                else:
                    value = PyBytes_FromStringAndSize(<const char *>p + pos + 1, j - pos - 1)
            pos = j + 1
        elif c == 0x7B:
            j = pos + 1
            size = 0
            while j < n and 0x30 <= p[j] <= 0x39 and j - pos <= 9:
                size = size * 10 + (p[j] - 0x30)
                j += 1
            if j == pos + 1 or j + 2 >= n or p[j] != 0x7D or p[j + 1] != 0x0D \
                    or p[j + 2] != 0x0A:
                return _NONE3
            start = j + 3
            end = start + size
            if end > n:
                return _NONE3
            if keep:
                value = PyBytes_FromStringAndSize(<const char *>p + start, size)
            pos = end
        else:
            j = pos
            while j < n and p[j] != 0x20 and p[j] != 0x28 and p[j] != 0x29:
                j += 1
            is_nil = j - pos == 3 and p[pos] == 0x4E and p[pos + 1] == 0x49 \
                and p[pos + 2] == 0x4C
            if keep and not is_nil:
                value = PyBytes_FromStringAndSize(<const char *>p + pos, j - pos)
            pos = j
        if keep:
            if elem == 2:
                mailbox = value
            else:
                host_nil = is_nil


# ---------------------------------------------------------------- extract


class _Decline(Exception):
    pass


cdef inline unsigned long _u32(const unsigned char *p):
    return (<unsigned long>p[0] << 24) | (<unsigned long>p[1] << 16) | \
        (<unsigned long>p[2] << 8) | p[3]


cdef const unsigned char *_find(const unsigned char *p, Py_ssize_t a, Py_ssize_t b,
                                const char *needle, Py_ssize_t m):
    """The first NEEDLE in p[a:b], NULL when none."""
    cdef const unsigned char *q
    while b - a >= m:
        q = <const unsigned char *>memchr(p + a, needle[0], b - a - m + 1)
        if q == NULL:
            return NULL
        if memcmp(q, needle, m) == 0:
            return q
        a = q - p + 1
    return NULL


cdef class _Reader:
    """A JSON reader over p[0:end] (ASCII); TEXT the same as a str, made
    when a string with escapes needs the json module's scanstring."""
    cdef const unsigned char *p
    cdef Py_ssize_t pos, end, base
    cdef object text

    cdef inline void ws(self):
        cdef unsigned char c
        while self.pos < self.end:
            c = self.p[self.pos]
            if c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D:
                self.pos += 1
            else:
                return

    cdef object string(self):
        """At a quote: the string."""
        cdef Py_ssize_t j = self.pos + 1
        cdef unsigned char c
        cdef object out
        while j < self.end:
            c = self.p[j]
            if c == 0x22:
                out = PyUnicode_DecodeASCII(<const char *>self.p + self.pos + 1,
                                            j - self.pos - 1, NULL)
                self.pos = j + 1
                return out
            if c == 0x5C:
                if self.text is None:
                    self.text = PyUnicode_DecodeASCII(<const char *>self.p + self.base,
                                                      self.end - self.base, NULL)
                out, j = _scanstring(self.text, self.pos + 1 - self.base, True)
                self.pos = j + self.base
                return out
            if c < 0x20 or c >= 0x80:
                raise _Decline()
            j += 1
        raise _Decline()

    cdef object number(self):
        cdef Py_ssize_t a = self.pos, j = self.pos
        cdef long long v = 0
        cdef bint neg = False
        if self.p[j] == 0x2D:
            neg = True
            j += 1
        if j >= self.end or not (0x30 <= self.p[j] <= 0x39):
            raise _Decline()
        if self.p[j] == 0x30 and j + 1 < self.end and 0x30 <= self.p[j + 1] <= 0x39:
            raise _Decline()
        while j < self.end and 0x30 <= self.p[j] <= 0x39:
            if j - a > 17:
                raise _Decline()
            v = v * 10 + (self.p[j] - 0x30)
            j += 1
        if j < self.end and (self.p[j] == 0x2E or self.p[j] == 0x65 or self.p[j] == 0x45):
            raise _Decline()                     # a float: json's to read
        self.pos = j
        return -v if neg else v

    cdef object value(self, int depth):
        cdef unsigned char c
        cdef list out
        self.ws()
        if self.pos >= self.end:
            raise _Decline()
        c = self.p[self.pos]
        if c == 0x22:
            return self.string()
        if c == 0x5B:                            # [
            if depth > 8:
                raise _Decline()
            self.pos += 1
            out = []
            self.ws()
            if self.pos < self.end and self.p[self.pos] == 0x5D:
                self.pos += 1
                return out
            while True:
                out.append(self.value(depth + 1))
                self.ws()
                if self.pos >= self.end:
                    raise _Decline()
                c = self.p[self.pos]
                self.pos += 1
                if c == 0x5D:
                    return out
                if c != 0x2C:
                    raise _Decline()
        if c == 0x6E and self.end - self.pos >= 4 and memcmp(self.p + self.pos, b"null", 4) == 0:
            self.pos += 4
            return None
        if c == 0x74 and self.end - self.pos >= 4 and memcmp(self.p + self.pos, b"true", 4) == 0:
            self.pos += 4
            return True
        if c == 0x66 and self.end - self.pos >= 5 and memcmp(self.p + self.pos, b"false", 5) == 0:
            self.pos += 5
            return False
        if c == 0x2D or 0x30 <= c <= 0x39:
            return self.number()
        raise _Decline()                         # an object, or not JSON


cdef dict _SLOT = {k: i for i, k in enumerate(NEED)}


def extract(data):
    cdef Span s
    cdef Py_ssize_t h = _H, start, end, n, envlen
    cdef const unsigned char *a
    cdef const unsigned char *b
    cdef _Reader r
    cdef list vals
    cdef object key, slot
    cdef int found = 0
    _span(data, &s)
    try:
        n = s.n
        if n <= h or s.p[0] != VERSION:
            return None
        if n < h + <Py_ssize_t>_u32(s.p + 1 + 4 * 6):
            return None
        start = h + <Py_ssize_t>_u32(s.p + 1 + 4 * 5)
        end = h + <Py_ssize_t>_u32(s.p + 1 + 4 * 6)
        if start > end:
            return None
        a = _find(s.p, start, end, b',"subject":', 11)
        if a == NULL:
            return None
        b = _find(s.p, a - s.p + 11, end, b',"jmap_body":', 13)
        if b == NULL:
            return None
        r = _Reader()
        r.p = s.p
        r.base = a - s.p + 1
        r.pos = r.base
        r.end = b - s.p
        r.text = None
        vals = [None] * len(NEED)
        seen = [False] * len(NEED)
        try:
            while True:
                r.ws()
                if r.pos >= r.end or r.p[r.pos] != 0x22:
                    raise _Decline()
                key = r.string()
                r.ws()
                if r.pos >= r.end or r.p[r.pos] != 0x3A:
                    raise _Decline()
                r.pos += 1
                v = r.value(0)
                slot = _SLOT.get(key)
                if slot is not None:
                    vals[slot] = v
                    seen[slot] = True
                r.ws()
                if r.pos >= r.end:
                    break
                if r.p[r.pos] != 0x2C:
                    raise _Decline()
                r.pos += 1
        except (_Decline, ValueError, UnicodeDecodeError):
            return None
        if not all(seen):
            return None
        envlen = <Py_ssize_t>_u32(s.p + 1)
        if envlen > n - h:
            envlen = n - h                       # as slicing does
        env = PyBytes_FromStringAndSize(<const char *>s.p + h, envlen)
        return tuple(vals) + first_groups(env)
    finally:
        _unspan(&s)
