# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The write path's per-message work, compiled twin of ``emailrec_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  The record is read through the buffer protocol
at the offsets ``store.records.EMAIL_LAYOUT`` gives and the new one is
written into one fresh bytes object; keywords are still Python strings (the
set algebra and the sort are Python's, so the result is the same).  A layout
whose fields this code reads changed type refuses to load (ImportError) and
the twin takes over.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t, uint32_t
from libc.string cimport memcpy

from ..store.records import EMAIL_LAYOUT
from ..store.redolog import OP

if OP.format not in (">BBHI", "!BBHI"):
    raise ImportError("emailrec_c: the redo log's op layout changed")

_READS = {"last_ms": "Q", "n_keywords": "H", "n_members": "H"}
if EMAIL_LAYOUT.head.format[:1] not in (">", "!"):
    raise ImportError("emailrec_c: email records are not big-endian")
for _name, _code in _READS.items():
    if EMAIL_LAYOUT.code(_name) != _code:
        raise ImportError(f"emailrec_c: email record field {_name!r} changed type")
if EMAIL_LAYOUT.member.format not in (">IIq", "!IIq"):
    raise ImportError("emailrec_c: membership layout changed")

cdef Py_ssize_t HEAD = EMAIL_LAYOUT.head.size
cdef Py_ssize_t OFF_MS = EMAIL_LAYOUT.offset("last_ms")
cdef Py_ssize_t OFF_NKW = EMAIL_LAYOUT.offset("n_keywords")
cdef Py_ssize_t OFF_NMEM = EMAIL_LAYOUT.offset("n_members")
cdef Py_ssize_t MEMBER = EMAIL_LAYOUT.member.size


cdef inline uint64_t _be(const unsigned char *p, int n) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef inline void _put_be(unsigned char *p, uint64_t v, int n) noexcept:
    cdef int i
    for i in range(n - 1, -1, -1):
        p[i] = v & 0xFF
        v >>= 8


def rewrite_keywords(data, frozenset add, frozenset remove, replace, uint64_t new_ms,
                     str seen):
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    cdef const unsigned char *p = <const unsigned char *>view.buf
    cdef Py_ssize_t n = view.len
    cdef Py_ssize_t nkw, nmem, mem_end, i, klen
    cdef uint64_t old_ms
    cdef bytes kwb, record
    cdef unsigned char *out
    try:
        if n < HEAD:
            raise ValueError("email record too short")
        nkw = <Py_ssize_t>_be(p + OFF_NKW, 2)
        nmem = <Py_ssize_t>_be(p + OFF_NMEM, 2)
        mem_end = HEAD + nmem * MEMBER
        if mem_end > n:
            raise ValueError("email record too short")
        if nkw:
            old = set(PyBytes_FromStringAndSize(<const char *>p + mem_end, n - mem_end)
                      .decode("utf-8").split("\0"))
        else:
            old = set()
        if replace is not None:
            new = set(replace)
        else:
            new = (old | add) - remove
        if new == old:
            return None
        kws = sorted(new)
        kwb = "\0".join(kws).encode("utf-8")
        klen = PyBytes_GET_SIZE(kwb)
        old_ms = _be(p + OFF_MS, 8)
        record = PyBytes_FromStringAndSize(NULL, mem_end + klen)
        out = <unsigned char *>PyBytes_AS_STRING(record)
        memcpy(out, p, mem_end)
        memcpy(out + mem_end, PyBytes_AS_STRING(kwb), klen)
        _put_be(out + OFF_MS, new_ms, 8)
        _put_be(out + OFF_NKW, <uint64_t>len(kws), 2)
        members = tuple([(<long>_be(p + HEAD + i * MEMBER, 4),
                          <long>_be(p + HEAD + i * MEMBER + 4, 4)) for i in range(nmem)])
        return record, old_ms, members, (seen in new) - (seen in old)
    finally:
        PyBuffer_Release(&view)


def encode_ops(list ops):
    cdef Py_ssize_t total = 0, tl, kl, vl
    cdef bytes out, t, key, value
    cdef unsigned char *w
    cdef list tables = []
    for op in ops:
        t = (<str>op[1]).encode()
        tables.append(t)
        total += 8 + PyBytes_GET_SIZE(t) + len(op[2]) + len(op[3])
    out = PyBytes_FromStringAndSize(NULL, total)
    w = <unsigned char *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t j = 0
    for op in ops:
        t = tables[j]
        j += 1
        key = bytes(op[2])
        value = bytes(op[3])
        tl = PyBytes_GET_SIZE(t)
        kl = PyBytes_GET_SIZE(key)
        vl = PyBytes_GET_SIZE(value)
        if tl > 0xFF or kl > 0xFFFF or vl > 0xFFFFFFFF:
            raise ValueError("redo op too large")
        w[0] = <unsigned char>(<int>op[0])
        w[1] = <unsigned char>tl
        _put_be(w + 2, <uint64_t>kl, 2)
        _put_be(w + 4, <uint64_t>vl, 4)
        w += 8
        memcpy(w, PyBytes_AS_STRING(t), tl)
        w += tl
        memcpy(w, PyBytes_AS_STRING(key), kl)
        w += kl
        memcpy(w, PyBytes_AS_STRING(value), vl)
        w += vl
    return out
