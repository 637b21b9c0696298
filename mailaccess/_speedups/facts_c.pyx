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
    return _groups(<const unsigned char *>PyBytes_AS_STRING(env), PyBytes_GET_SIZE(env))


cdef tuple _groups(const unsigned char *p, Py_ssize_t n):
    """first_groups of the ENVELOPE p[0:n]."""
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


cdef extern from "string.h":
    void *memmem(const void *h, size_t n, const void *needle, size_t m) nogil


cdef inline const unsigned char *_find(const unsigned char *p, Py_ssize_t a, Py_ssize_t b,
                                       const char *needle, Py_ssize_t m) noexcept:
    """The first NEEDLE in p[a:b], NULL when none (glibc's memmem: SSE, where
    a memchr on the first byte stopped at every comma of the meta JSON)."""
    if b - a < m:
        return NULL
    return <const unsigned char *>memmem(p + a, <size_t>(b - a), needle, <size_t>m)


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

    cdef int skip_string(self) except -1:
        """At a quote: past the string, not made (its escapes not read)."""
        cdef Py_ssize_t j = self.pos + 1
        cdef unsigned char c
        while j < self.end:
            c = self.p[j]
            if c == 0x22:
                self.pos = j + 1
                return 0
            if c == 0x5C:
                j += 1
            elif c < 0x20 or c >= 0x80:
                raise _Decline()
            j += 1
        raise _Decline()

    cdef object value(self, int depth, bint make=True):
        """The value here; MAKE False: past it, None made for strings and
        lists (the meta keys _fast does not need)."""
        cdef unsigned char c
        cdef list out = None
        self.ws()
        if self.pos >= self.end:
            raise _Decline()
        c = self.p[self.pos]
        if c == 0x22:
            if make:
                return self.string()
            self.skip_string()
            return None
        if c == 0x5B:                            # [
            if depth > 8:
                raise _Decline()
            self.pos += 1
            if make:
                out = []
            self.ws()
            if self.pos < self.end and self.p[self.pos] == 0x5D:
                self.pos += 1
                return out
            while True:
                v = self.value(depth + 1, make)
                if make:
                    out.append(v)
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


# ---------------------------------------------------------------- facts_of / read_many
#
# The Facts of an index finished here, without extract's lists and key
# strings: the meta read key by key from "subject" on (the keys compared as
# bytes, the values not needed skipped unread), only the first address of
# FROM/TO/CC made, and query/facts.py's _make done in C for what common mail
# holds.  Anything else declines (None) and the caller computes them as the
# twin does: a group in the ENVELOPE, a Message-ID needing more than its
# angle brackets stripped, an unexpected value.

from libc.string cimport memcpy, strlen
from libc.stdint cimport uint64_t

include "lmdb_direct.pxi"

from mailaccess.mime.index import base_subject as _base_subject
from mailaccess.store.records import EMAIL_LAYOUT

from cpython.object cimport PyTypeObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython.list cimport PyList_AsTuple

cdef extern from "Python.h":
    PyObject *PyType_GenericAlloc(PyTypeObject *t, Py_ssize_t n)
    void PyObject_GC_UnTrack(object o)
    Py_ssize_t PyUnicode_FindChar(object, Py_UCS4, Py_ssize_t, Py_ssize_t, int) except -2
    object PyUnicode_Substring(object, Py_ssize_t, Py_ssize_t)
    bint PyUnicode_IS_ASCII(object)
    void *PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)

cdef object _tuple_new = tuple.__new__
cdef Py_ssize_t R_BLOB = EMAIL_LAYOUT.offset("blob")
if EMAIL_LAYOUT.code("blob") != "32s":
    raise ImportError("facts_c: the email record's blob hash changed type")

cdef inline bint _ws(unsigned char c) noexcept:
    """An ASCII character str.split() / str.strip() treat as white space."""
    return c == 0x20 or 0x09 <= c <= 0x0D or 0x1C <= c <= 0x1F


cdef object _base(object s):
    """mime.index.base_subject(S): S itself when it has no white space but
    single spaces inside and starts and ends with nothing a leader, blob or
    trailer starts/ends with (base_subject's own first test)."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const unsigned char *d
    cdef unsigned char c
    if n == 0:
        return s
    if PyUnicode_IS_ASCII(s):
        d = <const unsigned char *>PyUnicode_DATA(s)
        c = d[0]
        if c != 0x5B and c != 0x72 and c != 0x52 and c != 0x66 and c != 0x46 \
                and d[n - 1] != 0x29 and not _ws(c) and not _ws(d[n - 1]):
            i = 1
            while i < n - 1:
                c = d[i]
                if _ws(c) and (c != 0x20 or _ws(d[i + 1])):
                    break
                i += 1
            else:
                return s
    return _base_subject(s)


cdef object _local(object email):
    """facts.addr_mailbox's value of EMAIL (a str): before its last "@"."""
    cdef Py_ssize_t i = PyUnicode_FindChar(email, 0x40, 0, PyUnicode_GET_LENGTH(email), -1)
    if i < 0:
        return email
    return PyUnicode_Substring(email, 0, i)


cdef object _display(object name, object email):
    """facts.display_value of one address (NAME None or a str, EMAIL a str)."""
    cdef Py_ssize_t a, b
    cdef const unsigned char *d
    if name is None:
        return email
    if not PyUnicode_IS_ASCII(name):
        t = name.strip()
        return t if t else email
    d = <const unsigned char *>PyUnicode_DATA(name)
    a = 0
    b = PyUnicode_GET_LENGTH(name)
    while a < b and _ws(d[a]):
        a += 1
    while b > a and _ws(d[b - 1]):
        b -= 1
    if a == b:
        return email
    if a == 0 and b == PyUnicode_GET_LENGTH(name):
        return name
    return PyUnicode_Substring(name, a, b)


cdef object _msgid(object mid):
    """facts.normalize_msgid of MID (a str) when that only strips angle
    brackets: printable ASCII without white space or quotes; else _Decline."""
    cdef Py_ssize_t n, a, b, i
    cdef const unsigned char *d
    cdef unsigned char c
    if type(mid) is not str:
        raise _Decline()
    if not PyUnicode_IS_ASCII(mid):
        raise _Decline()
    n = PyUnicode_GET_LENGTH(mid)
    d = <const unsigned char *>PyUnicode_DATA(mid)
    for i in range(n):
        c = d[i]
        if c <= 0x20 or c == 0x22 or c >= 0x7F:
            raise _Decline()
    a = 0
    b = n
    while a < b and (d[a] == 0x3C or d[a] == 0x3E):
        a += 1
    while b > a and (d[b - 1] == 0x3C or d[b - 1] == 0x3E):
        b -= 1
    if a == b:
        return None
    if a == 0 and b == n:
        return mid
    return PyUnicode_Substring(mid, a, b)


cdef tuple _first_address(_Reader r):
    """At an address list: (name, email) of its first address, (None, "")
    when there is none; the others skipped."""
    cdef unsigned char c
    r.ws()
    if r.pos >= r.end:
        raise _Decline()
    if r.p[r.pos] != 0x5B:
        if r.value(0) is not None:
            raise _Decline()
        return (None, "")
    r.pos += 1
    r.ws()
    if r.pos < r.end and r.p[r.pos] == 0x5D:
        r.pos += 1
        return (None, "")
    first = r.value(1)
    if type(first) is not list or len(<list>first) != 2:
        raise _Decline()
    name, email = first
    if (name is not None and type(name) is not str) or \
            (email is not None and type(email) is not str):
        raise _Decline()
    while True:
        r.ws()
        if r.pos >= r.end:
            raise _Decline()
        c = r.p[r.pos]
        r.pos += 1
        if c == 0x5D:
            return (name, email or "")
        if c != 0x2C:
            raise _Decline()
        r.value(1, False)


cdef inline void _put(object t, Py_ssize_t i, object v):
    Py_INCREF(v)
    PyTuple_SET_ITEM(t, i, v)


cdef object _made(object cls, object sent, object tz, object att, object subject, object base,
                  object sf, object st, object sc, object df, object dt, object jf, object jt,
                  object mid, object refs):
    """CLS(sent, tz, att, subject, base, sf, st, sc, df, dt, jf, jt, mid, refs),
    made as tuple.__new__(CLS, ...) makes it, without the argument tuple.
    It holds only strings, numbers, None, booleans and REFS (a tuple of
    strings), so neither can be in a reference cycle: both are untracked by
    the garbage collector, as CPython itself untracks such tuples at its
    next collection (10,000 new tracked tuples cost collections that walk
    them all)."""
    cdef PyObject *o = PyType_GenericAlloc(<PyTypeObject *>cls, 14)
    if o == NULL:
        raise MemoryError()
    t = <object>o
    Py_DECREF(t)                        # (the reference <object> took; o's own stays in t)
    _put(t, 0, sent)
    _put(t, 1, tz)
    _put(t, 2, att)
    _put(t, 3, subject)
    _put(t, 4, base)
    _put(t, 5, sf)
    _put(t, 6, st)
    _put(t, 7, sc)
    _put(t, 8, df)
    _put(t, 9, dt)
    _put(t, 10, jf)
    _put(t, 11, jt)
    _put(t, 12, mid)
    _put(t, 13, refs)
    PyObject_GC_UnTrack(refs)
    PyObject_GC_UnTrack(t)
    return t


# the meta keys _fast reads, in the order it unpacks them; jmap_body ends them
cdef const char *_KEYS[11]
_KEYS[:] = [b"subject", b"from_", b"to", b"cc", b"sent_at", b"sent_at_tz", b"message_id",
            b"in_reply_to", b"references", b"has_attachment", b"jmap_body"]
cdef enum:
    _FROM = 1
    _CC = 3
    _JMAP_BODY = 10


cdef inline int _meta_slot(const unsigned char *k, Py_ssize_t kn) noexcept:
    """The position in _KEYS of the key k[0:kn], -1 for another key."""
    cdef int i
    for i in range(11):
        if strlen(_KEYS[i]) == <size_t>kn and memcmp(k, _KEYS[i], kn) == 0:
            return i
    return -1


cdef object _fast(const unsigned char *p, Py_ssize_t n, object cls):
    """facts_of over p[0:n]."""
    cdef Py_ssize_t h = _H, start, end, envlen, kn, j
    cdef const unsigned char *a
    cdef const unsigned char *k
    cdef _Reader r
    cdef int seen = 0
    cdef tuple fa, ta, ca, g
    if n <= h or p[0] != VERSION:
        return None
    end = h + <Py_ssize_t>_u32(p + 1 + 4 * 6)
    start = h + <Py_ssize_t>_u32(p + 1 + 4 * 5)
    if n < end or start > end:
        return None
    a = _find(p, start, end, b',"subject":', 11)
    if a == NULL:
        return None
    r = _Reader()
    r.p = p
    r.base = a - p + 1
    r.pos = r.base
    r.end = end
    r.text = None
    cdef list vals = [None] * _JMAP_BODY
    cdef int slot
    try:
        while True:
            # a key: no escapes in the names read here
            r.ws()
            if r.pos >= r.end or r.p[r.pos] != 0x22:
                raise _Decline()
            j = r.pos + 1
            while j < r.end and r.p[j] != 0x22 and r.p[j] != 0x5C:
                j += 1
            if j >= r.end or r.p[j] != 0x22:
                raise _Decline()
            k = r.p + r.pos + 1
            kn = j - r.pos - 1
            r.pos = j + 1
            r.ws()
            if r.pos >= r.end or r.p[r.pos] != 0x3A:
                raise _Decline()
            r.pos += 1
            slot = _meta_slot(k, kn)
            if slot == _JMAP_BODY:
                break
            if slot < 0:
                r.value(0, False)
            else:
                vals[slot] = _first_address(r) if _FROM <= slot <= _CC else r.value(0)
                seen |= 1 << slot
            r.ws()
            if r.pos >= r.end or r.p[r.pos] != 0x2C:
                raise _Decline()
            r.pos += 1
        if seen != (1 << _JMAP_BODY) - 1:
            return None
        subject, fa, ta, ca, sent, tz, mid, irt, refs, att = vals
        if subject is None:
            subject = ""
        elif type(subject) is not str:
            return None
        if (sent is not None and type(sent) is not int) or \
                (tz is not None and type(tz) is not int) or \
                (att is not True and att is not False) or \
                (irt is not None and type(irt) is not list) or \
                (refs is not None and type(refs) is not list):
            return None
        envlen = <Py_ssize_t>_u32(p + 1)
        if envlen > n - h:
            envlen = n - h
        g = _groups(p + h, envlen)
        if g[0] is not None or g[1] is not None or g[2] is not None:
            return None
        # (query/facts.py's _make from here on)
        if mid:
            mid = _msgid(mid)
        else:
            mid = None
        out = []
        if refs:
            for x in refs:
                x = _msgid(x)
                if x:
                    out.append(x)
        if not out and irt:
            for x in irt:
                x = _msgid(x)
                if x:
                    out.append(x)
                    break
        jf = _display(fa[0], fa[1])
        jt = _display(ta[0], ta[1])
        return _made(cls, sent, tz, att, subject, _base(subject), _local(fa[1]),
                     _local(ta[1]), _local(ca[1]), jf, jt, jf, jt, mid, PyList_AsTuple(out))
    except (_Decline, ValueError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------- msg.facts records

from mailaccess.store.records import (FACTS_HEAD, FACTS_VERSION, FACT_SENT, FACT_TZ,
                                      FACT_ATTACHMENT, FACT_BASE_SAME, FACT_DFROM_SAME,
                                      FACT_DTO_SAME, FACT_MSGID)
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.tuple cimport PyTuple_New

if FACTS_HEAD.format != ">BBqhH" or FACTS_VERSION != 1 or (FACT_SENT, FACT_TZ, FACT_ATTACHMENT,
        FACT_BASE_SAME, FACT_DFROM_SAME, FACT_DTO_SAME, FACT_MSGID) != (1, 2, 4, 8, 16, 32, 64):
    raise ImportError("facts_c: the msg.facts record layout changed")
cdef Py_ssize_t _FH = 14


cdef object _fstr(const unsigned char *p, Py_ssize_t n, Py_ssize_t *off):
    """The string at p[off] (a u32 length, UTF-8), OFF moved past it."""
    cdef Py_ssize_t o = off[0], ln
    if o + 4 > n:
        raise _Decline()
    ln = <Py_ssize_t>_u32(p + o)
    o += 4
    if ln > n - o:
        raise _Decline()
    off[0] = o + ln
    return PyUnicode_DecodeUTF8(<const char *>p + o, ln, NULL)


cdef object _record(const unsigned char *p, Py_ssize_t n, object cls):
    """from_record over p[0:n]."""
    cdef Py_ssize_t off = _FH, nrefs, i
    cdef unsigned int bits
    cdef long long sent
    cdef int tz
    if n < _FH or p[0] != FACTS_VERSION:
        return None
    bits = p[1]
    sent = <long long>((<uint64_t>_u32(p + 2) << 32) | <uint64_t>_u32(p + 6))
    tz = <short>((p[10] << 8) | p[11])
    nrefs = (p[12] << 8) | p[13]
    try:
        subject = _fstr(p, n, &off)
        base = subject if bits & 8 else _fstr(p, n, &off)
        sf = _fstr(p, n, &off)
        st = _fstr(p, n, &off)
        sc = _fstr(p, n, &off)
        jf = _fstr(p, n, &off)
        jt = _fstr(p, n, &off)
        df = jf if bits & 16 else _fstr(p, n, &off)
        dt = jt if bits & 32 else _fstr(p, n, &off)
        mid = _fstr(p, n, &off) if bits & 64 else None
        if nrefs:
            refs = PyTuple_New(nrefs)
            for i in range(nrefs):
                _put(refs, i, _fstr(p, n, &off))
        else:
            refs = ()
    except (_Decline, UnicodeDecodeError):
        return None
    if off != n:
        return None
    return _made(cls, sent if bits & 1 else None, tz if bits & 2 else None,
                 True if bits & 4 else False, subject, base, sf, st, sc, df, dt, jf, jt, mid,
                 refs)


cdef object _spanned(data, cls, bint record):
    """_record (RECORD) or _fast over the bytes of DATA."""
    cdef Span s
    _span(data, &s)
    try:
        return _record(s.p, s.n, cls) if record else _fast(s.p, s.n, cls)
    finally:
        _unspan(&s)


def from_record(data, cls):
    return _spanned(data, cls, True)


def facts_of(data, cls):
    return _spanned(data, cls, False)


cdef class _Table:
    """One table of one account read by key: an LMDB cursor of the reader's
    transaction when lmdb_direct allows, else the reader's own get."""
    cdef ea_cursor *cur
    cdef object pycur, reader
    cdef unsigned char kbuf[64]
    cdef Py_ssize_t pn
    cdef bint positioned
    cdef Span span

    def __cinit__(self):
        self.cur = NULL
        self.positioned = False
        self.span.release = False

    cdef int setup(self, reader, str suffix) except -1:
        self.reader = reader
        shape = getattr(reader, "shape", None)
        if shape is None or shape.suffix != suffix or type(shape.prefix) is not bytes \
                or len(shape.prefix) + 32 > 64:
            return 0
        if _direct == 0:
            _direct_init()
        txn = getattr(getattr(reader, "get", None), "__self__", None)
        if _direct != 1 or type(txn) is not _lmdb_mod.Transaction:
            return 0
        self.pn = len(shape.prefix)
        memcpy(self.kbuf, PyBytes_AS_STRING(shape.prefix), self.pn)
        self.pycur = txn.cursor(db=reader.db)
        self.cur = _lmdb_cursor(self.pycur)
        return 0

    cdef int close(self) except -1:
        _unspan(&self.span)
        self.cur = NULL
        if self.pycur is not None:
            self.pycur.close()
            self.pycur = None
        return 0

    def __dealloc__(self):
        _unspan(&self.span)

    cdef int fetch(self, const unsigned char *suffix, Py_ssize_t sn, object x, bint seq,
                   const unsigned char **p, Py_ssize_t *n) except -1:
        """The value under the key of SUFFIX (X for the reader) into P/N -> 1,
        or 0 when there is none; valid until the next fetch.  SEQ: try the
        entry after the last one found first (email ids mostly ascend)."""
        _unspan(&self.span)
        if self.cur == NULL:
            v = self.reader(x)
            if v is None:
                return 0
            _span(v, &self.span)
            p[0] = self.span.p
            n[0] = self.span.n
            return 1
        memcpy(self.kbuf + self.pn, suffix, sn)
        return _direct_get(self.cur, self.kbuf, self.pn + sn, seq, &self.positioned, p, n)


def read_many(read_facts, read_email, read_index, list eids, cls, slow):
    cdef _Table fx = _Table(), em = _Table(), ix = _Table()
    cdef const unsigned char *p
    cdef const unsigned char *x
    cdef Py_ssize_t n, xn, i, ne = len(eids)
    cdef unsigned char s[4]
    cdef uint64_t e
    cdef list out = [None] * ne
    cdef bint facts = read_facts is not None
    if facts:
        fx.setup(read_facts, "u32")
    em.setup(read_email, "u32")
    ix.setup(read_index, "bytes")
    try:
        for i in range(ne):
            eid = eids[i]
            e = <uint64_t>eid
            if e > 0xFFFFFFFF:
                raise OverflowError("email id out of range")
            s[0] = (e >> 24) & 255
            s[1] = (e >> 16) & 255
            s[2] = (e >> 8) & 255
            s[3] = e & 255
            if facts and fx.fetch(s, 4, eid, True, &p, &n):
                f = _record(p, n, cls)
                if f is not None:
                    out[i] = f
                    continue
            if not em.fetch(s, 4, eid, True, &p, &n):
                continue
            if n < R_BLOB + 32:             # damaged: as the twin reads it
                out[i] = slow(read_index(PyBytes_FromStringAndSize(
                    <const char *>p + R_BLOB, max(0, n - R_BLOB))))
                continue
            h = None if ix.cur != NULL else PyBytes_FromStringAndSize(
                <const char *>p + R_BLOB, 32)
            if not ix.fetch(p + R_BLOB, 32, h, False, &x, &xn):
                out[i] = slow(None)
                continue
            f = _fast(x, xn, cls)
            if f is None:
                f = slow(PyBytes_FromStringAndSize(<const char *>x, xn))
            out[i] = f
    finally:
        fx.close()
        em.close()
        ix.close()
    return out


# ---------------------------------------------------------------- costs

cdef inline Py_ssize_t _text_cost(tuple t, Py_ssize_t a, Py_ssize_t b) except -1:
    """The characters of the strings t[a:b] at 1 byte each, 4 when any is
    beyond ASCII (the cost of their join)."""
    cdef Py_ssize_t i, n = 0
    cdef bint ascii = True
    for i in range(a, b):
        x = t[i]
        if type(x) is not str:
            raise TypeError("facts_c.costs: a string expected")
        n += PyUnicode_GET_LENGTH(x)
        if not PyUnicode_IS_ASCII(x):
            ascii = False
    return n if ascii else 4 * n


def costs(list fs):
    cdef list out = [None] * len(fs)
    cdef Py_ssize_t i, n
    cdef tuple t, refs
    for i in range(len(fs)):
        x = fs[i]
        if not isinstance(x, tuple) or len(<tuple>x) != 14:
            raise TypeError("facts_c.costs: 14 facts expected")
        t = <tuple>x
        n = 900 + _text_cost(t, 3, 12)
        mid = t[12]
        if mid:
            n += 50 + len(mid) * 4
        x = t[13]
        if not isinstance(x, tuple):
            raise TypeError("facts_c.costs: a tuple of references expected")
        refs = <tuple>x
        if refs:
            n += 60 * len(refs) + _text_cost(refs, 0, len(refs))
        out[i] = n
    return out
