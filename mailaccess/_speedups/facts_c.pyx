# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Email facts hot path, compiled twin of ``facts_py`` (the source of truth,
which documents the contract): the same function, the same results on any
bytes (tests run both on hypothesis input).  One pass over the ENVELOPE, no
objects made but the group names found."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize

FIELDS = (2, 5, 6)

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
