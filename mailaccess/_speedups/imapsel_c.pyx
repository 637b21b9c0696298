# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Scans behind the IMAP selected state, compiled twin of ``imapsel_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  Keys and values are looked at through the
buffer protocol without copying; email records are read at the offsets
``store.records.EMAIL_LAYOUT`` gives, and the record of each email is fetched
through the store's reader (``View.email_reader``) with the key assembled
from its ``KeyShape``, no Python call per key.  A layout whose fields this
code reads changed type refuses to load (ImportError) and the twin takes over.
"""
from array import array

from cpython cimport array as carray
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact, \
    PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from mailaccess._speedups.span cimport Span, _span, _unspan

from ..store.records import EMAIL_LAYOUT

cdef extern from "Python.h":
    bint PyMemoryView_Check(object o)
    Py_buffer *PyMemoryView_GET_BUFFER(object o)

if EMAIL_LAYOUT.head.format[:1] not in (">", "!"):
    raise ImportError("imapsel_c: email records are not big-endian")
for _name, _code in {"n_keywords": "H", "n_members": "H"}.items():
    if EMAIL_LAYOUT.code(_name) != _code:
        raise ImportError(f"imapsel_c: email record field {_name!r} changed type")
if array("I").itemsize != 4:
    raise ImportError("imapsel_c: array('I') is not 32-bit here")

cdef Py_ssize_t HEAD = EMAIL_LAYOUT.head.size
cdef Py_ssize_t OFF_NKW = EMAIL_LAYOUT.offset("n_keywords")
cdef Py_ssize_t OFF_NMEM = EMAIL_LAYOUT.offset("n_members")
cdef Py_ssize_t MEMBER = EMAIL_LAYOUT.member.size


# Span, _span, _unspan: see span.pxd


cdef inline uint32_t _be32(const unsigned char *p) noexcept:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline Py_ssize_t _be16(const unsigned char *p) noexcept:
    return (<Py_ssize_t>p[0] << 8) | p[1]


def uid_map(rows, bytes prefix):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(prefix), cnt = 0, cap = 0
    cdef const char *pre = PyBytes_AS_STRING(prefix)
    cdef uint32_t *buf = NULL
    cdef uint32_t *grown
    cdef Span ks, vs
    cdef bint stop
    ks.release = vs.release = False
    uids = array("I")
    eids = array("I")
    try:
        for k, v in rows:
            _span(k, &ks)
            try:
                if ks.n < n or memcmp(ks.p, pre, n) != 0:
                    break
                _span(v, &vs)
                try:
                    if ks.n != n + 4 or vs.n != 4:
                        raise ValueError("uid row of unexpected size")
                    if cnt == cap:
                        cap = cap * 2 if cap else 1024
                        grown = <uint32_t *>PyMem_Realloc(buf, cap * 2 * sizeof(uint32_t))
                        if grown == NULL:
                            raise MemoryError()
                        buf = grown
                    buf[2 * cnt] = _be32(ks.p + n)
                    buf[2 * cnt + 1] = _be32(vs.p)
                    cnt += 1
                finally:
                    _unspan(&vs)
            finally:
                _unspan(&ks)
        carray.resize(uids, cnt)
        carray.resize(eids, cnt)
        cdef_fill(uids, eids, buf, cnt)
        return uids, eids
    finally:
        PyMem_Free(buf)


cdef void cdef_fill(carray.array uids, carray.array eids, const uint32_t *buf,
                    Py_ssize_t cnt) noexcept:
    cdef Py_ssize_t i
    cdef unsigned int *u = uids.data.as_uints
    cdef unsigned int *e = eids.data.as_uints
    for i in range(cnt):
        u[i] = buf[2 * i]
        e[i] = buf[2 * i + 1]


cdef inline bint _has_keyword(const unsigned char *p, Py_ssize_t n, const unsigned char *kw,
                              Py_ssize_t kn) noexcept:
    """Whether the NUL-separated list P[:N] holds the item KW[:KN]."""
    cdef Py_ssize_t start = 0, i
    for i in range(n + 1):
        if i == n or p[i] == 0:
            if i - start == kn and (kn == 0 or memcmp(p + start, kw, kn) == 0):
                return True
            start = i + 1
    return False


def keyword_hits(read_email, eids, bytes keyword, bint present, Py_ssize_t limit=0):
    cdef const unsigned char *kw = <const unsigned char *>PyBytes_AS_STRING(keyword)
    cdef Py_ssize_t kn = PyBytes_GET_SIZE(keyword)
    cdef bint fast = False, has
    cdef object get = None, db = None
    cdef bytes pre = b"", key
    shape = getattr(read_email, "shape", None)
    if shape is not None and shape.suffix == "u32" and type(shape.prefix) is bytes:
        fast, pre, get, db = True, shape.prefix, read_email.get, read_email.db
    cdef Py_ssize_t pn = PyBytes_GET_SIZE(pre), i = -1, off, nkw, nmem, found = 0
    cdef char *kp
    cdef unsigned long long e
    cdef Span ms
    ms.release = False
    cdef list out = []
    for e_obj in eids:
        i += 1
        if fast:
            e = e_obj
            if e > 0xFFFFFFFFULL:
                raise OverflowError("email id out of range")
            key = PyBytes_FromStringAndSize(NULL, pn + 4)
            kp = PyBytes_AS_STRING(key)
            memcpy(kp, PyBytes_AS_STRING(pre), pn)
            kp[pn] = <char>(e >> 24); kp[pn + 1] = <char>(e >> 16)
            kp[pn + 2] = <char>(e >> 8); kp[pn + 3] = <char>e
            data = get(key, None, db)
        else:
            data = read_email(e_obj)
        if data is None:
            continue
        _span(data, &ms)
        try:
            if ms.n < HEAD:
                raise ValueError("email record too short")
            nkw = _be16(ms.p + OFF_NKW)
            nmem = _be16(ms.p + OFF_NMEM)
            off = HEAD + nmem * MEMBER
            if off > ms.n:
                raise ValueError("email record too short")
            has = nkw != 0 and _has_keyword(ms.p + off, ms.n - off, kw, kn)
        finally:
            _unspan(&ms)
        if has == present:
            out.append(i)
            found += 1
            if limit > 0 and found >= limit:
                break
    return out
