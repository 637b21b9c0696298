# The bytes of an LMDB value (bytes, memoryview or any buffer) seen from C
# without copying: shared by the compiled modules that read store values
# (imapsel_c, fetchfmt_c).  Declarations only; nothing to build on its own.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact

cdef extern from "Python.h":
    bint PyMemoryView_Check(object o)
    Py_buffer *PyMemoryView_GET_BUFFER(object o)


cdef struct Span:
    const unsigned char *p
    Py_ssize_t n
    bint release
    Py_buffer view


cdef inline int _span(object o, Span *s) except -1:
    """Point S at the bytes of O (bytes, memoryview or any buffer) without copying."""
    cdef Py_buffer *mv
    s.release = False
    if PyBytes_CheckExact(o):
        s.p = <const unsigned char *>PyBytes_AS_STRING(o)
        s.n = PyBytes_GET_SIZE(o)
        return 0
    if PyMemoryView_Check(o):
        mv = PyMemoryView_GET_BUFFER(o)
        if mv.itemsize == 1 and mv.ndim <= 1 and (mv.strides == NULL or mv.ndim == 0
                                                   or mv.strides[0] == 1):
            s.p = <const unsigned char *>mv.buf
            s.n = mv.len
            return 0
    PyObject_GetBuffer(o, &s.view, PyBUF_SIMPLE)
    s.p = <const unsigned char *>s.view.buf
    s.n = s.view.len
    s.release = True
    return 0


cdef inline void _unspan(Span *s):
    if s.release:
        PyBuffer_Release(&s.view)
        s.release = False
