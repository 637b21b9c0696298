# cython: language_level=3
"""Compiled twin of ``search_py`` (same functions, same results).

The scan is memmem (glibc's two-way/SSE search) where the C library has it,
else a memchr-on-the-first-byte loop; texts are read through the buffer
protocol, so bytes and memoryview slices of LMDB values work without copies.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact

cdef extern from *:
    """
    #include <string.h>
    #if defined(__GLIBC__) || defined(__APPLE__) || defined(__FreeBSD__) \
        || defined(__OpenBSD__) || defined(__NetBSD__) || defined(__linux__)
    #define MA_HAVE_MEMMEM 1
    #endif
    static const char *ma_find(const char *h, Py_ssize_t n, const char *p, Py_ssize_t m) {
        if (m == 0) return h;
        if (m > n) return NULL;
    #ifdef MA_HAVE_MEMMEM
        return (const char *)memmem(h, (size_t)n, p, (size_t)m);
    #else
        const char *end = h + n - m + 1;
        const char first = p[0];
        while (h < end) {
            const char *q = (const char *)memchr(h, first, (size_t)(end - h));
            if (q == NULL) return NULL;
            if (memcmp(q + 1, p + 1, (size_t)(m - 1)) == 0) return q;
            h = q + 1;
        }
        return NULL;
    #endif
    }
    """
    const char *ma_find(const char *h, Py_ssize_t n, const char *p, Py_ssize_t m) nogil
    void *memchr(const void *s, int c, size_t n) nogil
    int memcmp(const void *a, const void *b, size_t n) nogil


cdef inline bint _contains(object t, const char *p, Py_ssize_t m) except -1:
    cdef Py_buffer view
    cdef const char *found
    if PyBytes_CheckExact(t):
        return ma_find(PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t), p, m) != NULL
    PyObject_GetBuffer(t, &view, PyBUF_SIMPLE)
    try:
        found = ma_find(<const char *>view.buf, view.len, p, m)
    finally:
        PyBuffer_Release(&view)
    return found != NULL


def find_all(list texts, bytes needle):
    """Positions i (ascending) of the TEXTS that contain NEEDLE."""
    cdef Py_ssize_t i, n = len(texts), m = len(needle)
    cdef const char *p = needle
    cdef list out = []
    if m == 0:
        return list(range(n))
    for i in range(n):
        if _contains(texts[i], p, m):
            out.append(i)
    return out


cdef bint _header_in(const char *h, Py_ssize_t n, const char *name, Py_ssize_t k,
                     const char *p, Py_ssize_t m) noexcept nogil:
    cdef const char *line = h
    cdef const char *end = h + n
    cdef const char *nl
    cdef Py_ssize_t ln
    if m and ma_find(h, n, p, m) == NULL:
        return False
    while line <= end:
        nl = <const char *>memchr(line, 10, <size_t>(end - line))
        if nl == NULL:
            nl = end
        ln = nl - line
        if ln >= k and memcmp(line, name, <size_t>k) == 0:
            if ma_find(line + k, ln - k, p, m) != NULL:
                return True
        line = nl + 1
    return False


def find_header(list texts, bytes name, bytes needle):
    """Positions of the TEXTS (``name: value`` lines joined by ``\\n``) with a
    line for header NAME (lowercase, no colon) whose value contains NEEDLE;
    an empty NEEDLE asks only that such a line exists."""
    cdef bytes prefix = name + b":"
    cdef const char *pre = prefix
    cdef Py_ssize_t k = len(prefix), m = len(needle), i, n = len(texts)
    cdef const char *p = needle
    cdef Py_buffer view
    cdef bint hit
    cdef list out = []
    for i in range(n):
        t = texts[i]
        if PyBytes_CheckExact(t):
            hit = _header_in(PyBytes_AS_STRING(t), PyBytes_GET_SIZE(t), pre, k, p, m)
        else:
            PyObject_GetBuffer(t, &view, PyBUF_SIMPLE)
            hit = _header_in(<const char *>view.buf, view.len, pre, k, p, m)
            PyBuffer_Release(&view)
        if hit:
            out.append(i)
    return out
