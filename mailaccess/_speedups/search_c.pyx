# cython: language_level=3
"""Compiled twin of ``search_py`` (same functions, same results).

The scan is memmem (glibc's two-way/SSE search) where the C library has it,
else a memchr-on-the-first-byte loop; texts are read through the buffer
protocol, so bytes and memoryview slices of LMDB values work without copies.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact, \
    PyBytes_FromStringAndSize

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


# --- record conditions and header conditions over a chunk of emails ---------------
#
# See search_py (the contract).  The records and indexes are read by LMDB
# itself (lmdb_direct.pxi: a cursor of the reader's transaction, MDB_SET per
# key, the value read in place) when py-lmdb 3.0.0 is there, else through the
# store's Reader (``get(key, None, db)`` with the key assembled here, or the
# reader called); either way no EmailRecord and no text copy per message.

include "lmdb_direct.pxi"

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from ..mime.index import INDEX_LAYOUT, SEARCH_ROW_VERSION
from ..store.records import EMAIL_LAYOUT

KEYWORD, SIZE, RECEIVED, MODSEQ, THREAD, IN_MAILBOX, OTHER_MAILBOX, SAVED = range(8)

_REC_READS = {"blob": "32s", "received_at": "q", "size": "I", "thread": "I", "last_ms": "Q",
              "n_keywords": "H", "n_members": "H"}
if EMAIL_LAYOUT.head.format[:1] not in (">", "!"):
    raise ImportError("search_c: email records are not big-endian")
for _name, _code in _REC_READS.items():
    if EMAIL_LAYOUT.code(_name) != _code:
        raise ImportError(f"search_c: email record field {_name!r} changed type")
if EMAIL_LAYOUT.member.format not in (">IIq", "!IIq"):
    raise ImportError("search_c: membership layout changed")
if INDEX_LAYOUT.head.format.lstrip(">!") != "B%dI" % len(INDEX_LAYOUT.fields):
    raise ImportError("search_c: the message index framing changed")

cdef Py_ssize_t R_HEAD = EMAIL_LAYOUT.head.size
cdef Py_ssize_t R_BLOB = EMAIL_LAYOUT.offset("blob")
cdef Py_ssize_t R_RECEIVED = EMAIL_LAYOUT.offset("received_at")
cdef Py_ssize_t R_SIZE = EMAIL_LAYOUT.offset("size")
cdef Py_ssize_t R_THREAD = EMAIL_LAYOUT.offset("thread")
cdef Py_ssize_t R_MS = EMAIL_LAYOUT.offset("last_ms")
cdef Py_ssize_t R_NKW = EMAIL_LAYOUT.offset("n_keywords")
cdef Py_ssize_t R_NMEM = EMAIL_LAYOUT.offset("n_members")
cdef Py_ssize_t R_MEMBER = EMAIL_LAYOUT.member.size
cdef Py_ssize_t X_HEAD = INDEX_LAYOUT.head.size
cdef Py_ssize_t X_FIELD = INDEX_LAYOUT.fields.index("search_headers")
cdef unsigned char ROW_VERSION = SEARCH_ROW_VERSION[0]
cdef unsigned char X_READABLE[256]
for _v in range(256):
    X_READABLE[_v] = _v in INDEX_LAYOUT.readable

cdef inline uint64_t _be(const unsigned char *p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef class _Source:
    """One table read per key: directly (an LMDB cursor), through the
    reader's get with the key assembled here, or by calling the reader."""
    cdef ea_cursor *cur
    cdef object pycur, get, db, fn
    cdef bint fast
    cdef unsigned char kbuf[64]
    cdef Py_ssize_t pn, sn
    cdef Py_buffer view
    cdef bint held
    cdef bint seq           # keys mostly in table order: try the next entry first
    cdef bint positioned    # the cursor is on the last key found

    def __cinit__(self):
        self.cur = NULL
        self.held = False
        self.fast = False
        self.positioned = False

    cdef int setup(self, reader, str suffix, Py_ssize_t sn, bint seq=False) except -1:
        shape = getattr(reader, "shape", None)
        self.fn = reader
        self.sn = sn
        self.seq = seq
        if shape is None or shape.suffix != suffix or type(shape.prefix) is not bytes \
                or len(shape.prefix) + sn > 64:
            return 0
        self.pn = len(shape.prefix)
        memcpy(self.kbuf, PyBytes_AS_STRING(shape.prefix), self.pn)
        self.get, self.db, self.fast = reader.get, reader.db, True
        if _direct == 0:
            _direct_init()
        if _direct != 1:
            return 0
        txn = getattr(self.get, "__self__", None)
        if type(txn) is not _lmdb_mod.Transaction:
            return 0
        self.pycur = txn.cursor(db=self.db)
        self.cur = _lmdb_cursor(self.pycur)
        return 0

    cdef inline void release(self) noexcept:
        if self.held:
            PyBuffer_Release(&self.view)
            self.held = False

    cdef int close(self) except -1:
        self.release()
        self.cur = NULL
        if self.pycur is not None:
            self.pycur.close()
            self.pycur = None
        return 0

    def __dealloc__(self):
        self.release()

    cdef int fetch(self, const unsigned char *suffix, object x,
                   const unsigned char **p, Py_ssize_t *n) except -1:
        """The value under the key of SUFFIX (fast paths) or X (the reader
        called) into P/N -> 1, or 0 when there is none.  Valid until the
        next fetch."""
        self.release()
        if self.cur != NULL:
            memcpy(self.kbuf + self.pn, suffix, self.sn)
            # (the email ids of a mailbox mostly follow one another: SEQ)
            return _direct_get(self.cur, self.kbuf, self.pn + self.sn, self.seq,
                               &self.positioned, p, n)
        if self.fast:
            memcpy(self.kbuf + self.pn, suffix, self.sn)
            v = self.get(PyBytes_FromStringAndSize(<char *>self.kbuf, self.pn + self.sn),
                         None, self.db)
        else:
            v = self.fn(x)
        if v is None:
            return 0
        PyObject_GetBuffer(v, &self.view, PyBUF_SIMPLE)
        self.held = True
        p[0] = <const unsigned char *>self.view.buf
        n[0] = self.view.len
        return 1


cdef inline object _at(list pos, list eids, Py_ssize_t i):
    """The email id at position ``pos[i]`` of EIDS (checked)."""
    cdef Py_ssize_t j = <object>PyList_GET_ITEM(pos, i)
    if j < 0 or j >= PyList_GET_SIZE(eids):
        raise IndexError("position out of range")
    return <object>PyList_GET_ITEM(eids, j)


cdef inline int _email(_Source src, object eid, const unsigned char **p,
                       Py_ssize_t *n) except -1:
    """Email EID's record into P/N -> 1, or 0 when it is gone."""
    cdef unsigned char s[4]
    cdef uint64_t e = <uint64_t>eid
    if e > 0xFFFFFFFF:
        raise OverflowError("email id out of range")
    s[0] = (e >> 24) & 255
    s[1] = (e >> 16) & 255
    s[2] = (e >> 8) & 255
    s[3] = e & 255
    return src.fetch(s, eid, p, n)


cdef bint _has_keyword(const unsigned char *t, Py_ssize_t n, const unsigned char *k,
                       Py_ssize_t m) noexcept nogil:
    """Whether the NUL-joined list T (non-empty) has an item equal to K."""
    cdef const unsigned char *end = t + n
    cdef const unsigned char *nul
    while True:
        nul = <const unsigned char *>memchr(t, 0, <size_t>(end - t))
        if nul == NULL:
            nul = end
        if nul - t == m and memcmp(t, k, <size_t>m) == 0:
            return True
        if nul == end:
            return False
        t = nul + 1


def _span(lo, hi, fmin, fmax):
    """[lo, hi) (None: unbounded) within a field's range [FMIN, FMAX] as an
    inclusive pair, or None when it holds no value."""
    a = fmin if lo is None else max(lo, fmin)
    b = fmax if hi is None else min(hi - 1, fmax)
    return (a, b) if a <= b else None


_I64 = (-(1 << 63), (1 << 63) - 1)


def match_records(read_email, list eids, list pos, tuple cond, bint want=True):
    """The positions p of POS whose email ``eids[p]`` satisfies COND (with
    WANT False: does not); see search_py.match_records."""
    cdef int op = cond[0]
    cdef list out = []
    cdef Py_ssize_t i, n, np = PyList_GET_SIZE(pos)
    cdef Py_ssize_t nmem, off, km = 0
    cdef const unsigned char *p
    cdef const unsigned char *kw = NULL
    cdef int64_t slo = 0, shi = 0, sv
    cdef uint64_t ulo = 0, uhi = 0, uv, mbx = 0
    cdef bint hit, found, signed_field = False, any_box = False, empty = False
    cdef Py_ssize_t at = 0
    cdef int width = 0
    cdef object name = None, ids = None
    if op == SIZE or op == MODSEQ or op == RECEIVED or op == SAVED:
        lo, hi = (cond[2], cond[3]) if op == SAVED else (cond[1], cond[2])
        if op == SIZE:
            r, at, width = _span(lo, hi, 0, 0xFFFFFFFF), R_SIZE, 4
        elif op == MODSEQ:
            r, at, width = _span(lo, hi, 0, 0xFFFFFFFFFFFFFFFF), R_MS, 8
        else:
            r, at, width, signed_field = _span(lo, hi, *_I64), R_RECEIVED, 8, True
        if r is None:
            empty = True
        elif signed_field:
            slo, shi = r
        else:
            ulo, uhi = r
        if op == SAVED:
            any_box = cond[1] is None
            if not any_box:
                if not 0 <= cond[1] <= 0xFFFFFFFF:
                    empty = True
                else:
                    mbx = cond[1]
    elif op == KEYWORD:
        name = cond[1]
        if type(name) is not bytes:
            raise TypeError("a keyword is bytes")
        kw = <const unsigned char *>PyBytes_AS_STRING(name)
        km = PyBytes_GET_SIZE(name)
    elif op == THREAD or op == OTHER_MAILBOX:
        ids = cond[1]
    elif op == IN_MAILBOX:
        if not 0 <= cond[1] <= 0xFFFFFFFF:
            empty = True
        else:
            mbx = cond[1]
    else:
        raise ValueError(f"unknown record condition {op!r}")
    cdef _Source src = _Source()
    src.setup(read_email, "u32", 4, True)
    try:
        for i in range(np):
            if _email(src, _at(pos, eids, i), &p, &n):
                if n < R_HEAD:
                    raise ValueError("damaged email record")
                nmem = <Py_ssize_t>_be(p + R_NMEM, 2)
                if R_HEAD + nmem * R_MEMBER > n:
                    raise ValueError("damaged email record")
            else:
                p = NULL        # the empty record
                n = nmem = 0
            if empty:
                hit = False
            elif op == SIZE or op == MODSEQ or op == RECEIVED:
                if p == NULL:
                    sv = 0
                    uv = 0
                else:
                    uv = _be(p + at, width)
                    sv = <int64_t>uv
                hit = (slo <= sv <= shi) if signed_field else (ulo <= uv <= uhi)
            elif op == KEYWORD:
                off = R_HEAD + nmem * R_MEMBER
                hit = p != NULL and _be(p + R_NKW, 2) != 0 and off < n \
                    and _has_keyword(p + off, n - off, kw, km)
            elif op == THREAD:
                hit = (_be(p + R_THREAD, 4) if p != NULL else 0) in ids
            else:
                hit = False
                for k in range(nmem):
                    off = R_HEAD + k * R_MEMBER
                    uv = _be(p + off, 4)
                    if op == IN_MAILBOX:
                        if uv == mbx:
                            hit = True
                            break
                    elif op == OTHER_MAILBOX:
                        if uv not in ids:
                            hit = True
                            break
                    elif any_box or uv == mbx:      # SAVED
                        sv = <int64_t>_be(p + off + 8, 8)
                        found = slo <= sv <= shi
                        if found or not any_box:
                            hit = found
                            break
            if hit == want:
                out.append(<object>PyList_GET_ITEM(pos, i))
    finally:
        src.close()
    return out


cdef bint _odd_line(const char *h, Py_ssize_t n, const char *pre, Py_ssize_t k,
                    list odd) except -1:
    """Whether a line of H starting with PRE contains any of ODD (bytes)."""
    cdef const char *line = h
    cdef const char *end = h + n
    cdef const char *nl
    cdef Py_ssize_t ln
    while line <= end:
        nl = <const char *>memchr(line, 10, <size_t>(end - line))
        if nl == NULL:
            nl = end
        ln = nl - line
        if ln >= k and memcmp(line, pre, <size_t>k) == 0:
            for o in odd:
                if ma_find(line, ln, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o)) != NULL:
                    return True
        line = nl + 1
    return False


def match_headers(read_email, read_index, list eids, list pos, bytes name, bytes needle,
                  tuple odd=()):
    """(found, unusual) over the positions POS; see search_py.match_headers."""
    cdef bytes prefix = name + b":"
    cdef const char *pre = prefix
    cdef Py_ssize_t k = len(prefix), m = len(needle), i, n, xn, s, e
    cdef Py_ssize_t np = PyList_GET_SIZE(pos)
    cdef const char *nd = needle
    cdef const unsigned char *p
    cdef const unsigned char *x
    cdef list found = [], unusual = [], odds = [bytes(o) for o in odd]
    cdef _Source rs = _Source(), xs = _Source()
    rs.setup(read_email, "u32", 4, True)
    xs.setup(read_index, "bytes", 32)
    try:
        for i in range(np):
            xn = 0
            x = NULL
            if _email(rs, _at(pos, eids, i), &p, &n):
                if n < R_BLOB + 32:
                    raise ValueError("damaged email record")
                h = None if xs.fast else PyBytes_FromStringAndSize(<char *>p + R_BLOB, 32)
                if xs.fetch(p + R_BLOB, h, &x, &xn) and xn >= X_HEAD and X_READABLE[x[0]]:
                    # the head: the version byte, then each field's end
                    s = X_HEAD + (<Py_ssize_t>_be(x + 1 + 4 * (X_FIELD - 1), 4)
                                  if X_FIELD else 0)
                    e = X_HEAD + <Py_ssize_t>_be(x + 1 + 4 * X_FIELD, 4)
                    if e > xn:
                        e = xn
                    if s > e:
                        s = e
                    x += s
                    xn = e - s
                else:
                    xn = 0
            if x == NULL:
                x = <const unsigned char *>""
            if _header_in(<const char *>x, xn, pre, k, nd, m):
                found.append(<object>PyList_GET_ITEM(pos, i))
            elif odds and _odd_line(<const char *>x, xn, pre, k, odds):
                unusual.append(<object>PyList_GET_ITEM(pos, i))
    finally:
        rs.close()
        xs.close()
    return found, unusual


def match_header_rows(read_row, list eids, list pos, bytes name, bytes needle):
    """(found, missing) over the positions POS from the msg.hdr rows; see
    search_py.match_header_rows."""
    cdef bytes prefix = name + b":"
    cdef const char *pre = prefix
    cdef Py_ssize_t k = len(prefix), m = len(needle), i, n
    cdef Py_ssize_t np = PyList_GET_SIZE(pos)
    cdef const char *nd = needle
    cdef const unsigned char *p
    cdef list found = [], missing = []
    cdef _Source rs = _Source()
    rs.setup(read_row, "u32", 4, True)
    try:
        for i in range(np):
            if not _email(rs, _at(pos, eids, i), &p, &n) or n < 1 or p[0] != ROW_VERSION:
                missing.append(<object>PyList_GET_ITEM(pos, i))
            elif _header_in(<const char *>p + 1, n - 1, pre, k, nd, m):
                found.append(<object>PyList_GET_ITEM(pos, i))
    finally:
        rs.close()
    return found, missing


from cpython.mem cimport PyMem_Malloc, PyMem_Free


def number_list(nums):
    """``b" ".join(b"%d" % n for n in NUMS)`` (search_py.number_list); ints
    0 <= n < 2**63 written here, anything else by the twin's expression."""
    if type(nums) is not list:
        nums = list(nums)
    cdef list ns = <list>nums
    cdef Py_ssize_t n = PyList_GET_SIZE(ns), i, at = 0, k
    cdef char *buf
    cdef char tmp[24]
    cdef long long v
    cdef unsigned long long u
    if n == 0:
        return b""
    buf = <char *>PyMem_Malloc(<size_t>n * 21)
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            o = <object>PyList_GET_ITEM(ns, i)
            if type(o) is not int or o < 0 or o > 0x7FFFFFFFFFFFFFFF:
                return b" ".join(b"%d" % x for x in ns)
            v = o
            u = <unsigned long long>v
            k = 24
            while True:
                k -= 1
                tmp[k] = <char>(48 + u % 10)
                u //= 10
                if u == 0:
                    break
            if i:
                buf[at] = 32
                at += 1
            memcpy(buf + at, tmp + k, <size_t>(24 - k))
            at += 24 - k
        return PyBytes_FromStringAndSize(buf, at)
    finally:
        PyMem_Free(buf)


# --- the flags column (see search_py: the contract) --------------------------------

from array import array as _array

FLAG_SLOTS = 32


cdef int _slot_of(list names, const unsigned char *k, Py_ssize_t m) except -2:
    """The index of the keyword K (M bytes) in NAMES (a list of bytes), -1 if none."""
    cdef Py_ssize_t i
    cdef object o
    for i in range(PyList_GET_SIZE(names)):
        o = <object>PyList_GET_ITEM(names, i)
        if PyBytes_GET_SIZE(o) == m and memcmp(PyBytes_AS_STRING(o), k, <size_t>m) == 0:
            return <int>i
    return -1


def flag_rows(read_email, eids, names):
    """See search_py.flag_rows."""
    cdef Py_ssize_t count = len(eids), i = 0
    cdef object bits = _array("I", bytes(4 * count)), mss = _array("Q", bytes(8 * count))
    cdef unsigned int[::1] bv
    cdef unsigned long long[::1] sv
    cdef list nl = None
    cdef bint full = False
    cdef const unsigned char *p
    cdef const unsigned char *t
    cdef const unsigned char *end
    cdef const unsigned char *nul
    cdef Py_ssize_t n, nmem, off
    cdef int s
    cdef unsigned int b
    if count == 0:
        return bits, mss, False
    bv = bits
    sv = mss
    if names is not None:
        if type(names) is not list:
            raise TypeError("names is a list")
        nl = <list>names
        for o in nl:
            if type(o) is not bytes:
                raise TypeError("a keyword is bytes")
    cdef _Source src = _Source()
    src.setup(read_email, "u32", 4, True)
    try:
        for e in eids:
            if i >= count:
                raise ValueError("EIDS changed size")
            if not _email(src, e, &p, &n):
                i += 1          # the empty record: no keywords, modseq 0
                continue
            if n < R_HEAD:
                raise ValueError("damaged email record")
            nmem = <Py_ssize_t>_be(p + R_NMEM, 2)
            off = R_HEAD + nmem * R_MEMBER
            if off > n:
                raise ValueError("damaged email record")
            sv[i] = _be(p + R_MS, 8)
            b = 0
            if nl is not None and _be(p + R_NKW, 2) != 0 and off < n:
                t = p + off
                end = p + n
                while True:
                    nul = <const unsigned char *>memchr(t, 0, <size_t>(end - t))
                    if nul == NULL:
                        nul = end
                    s = _slot_of(nl, t, nul - t)
                    if s < 0:
                        if PyList_GET_SIZE(nl) >= FLAG_SLOTS:
                            full = True
                        else:
                            s = <int>PyList_GET_SIZE(nl)
                            nl.append(PyBytes_FromStringAndSize(<const char *>t, nul - t))
                    if s >= 0:
                        b |= (<unsigned int>1) << s
                    if nul == end:
                        break
                    t = nul + 1
            bv[i] = b
            i += 1
    finally:
        src.close()
    if i != count:
        raise ValueError("EIDS changed size")
    return bits, mss, full


cdef object _u32(object xs):
    """XS as something with a buffer of C unsigned ints (an array('I') as it is)."""
    if type(xs) is _array and xs.typecode == "I":
        return xs
    return _array("I", xs)


def flag_align(col_uids, keys):
    """See search_py.flag_align."""
    cdef const unsigned int[::1] c = _u32(col_uids)
    cdef const unsigned int[::1] k = _u32(keys)
    cdef Py_ssize_t i, j = 0, n = c.shape[0], m = k.shape[0]
    out = _array("i", bytes(4 * m)) if m else _array("i")
    cdef int[::1] o
    if m == 0:
        return out
    o = out
    for i in range(m):
        while j < n and c[j] < k[i]:
            j += 1
        if j >= n or c[j] != k[i]:
            return None
        o[i] = <int>j
        j += 1
    return out


cdef int _out_of_range() except -1:
    raise IndexError("position out of range")


def flag_bits(idx, bits, unsigned int mask):
    """See search_py.flag_bits."""
    cdef const int[::1] x = idx
    cdef const unsigned int[::1] b = bits
    cdef Py_ssize_t i, m = x.shape[0], n = b.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, m)
    cdef char *o = PyBytes_AS_STRING(out)
    cdef Py_ssize_t j
    for i in range(m):
        j = x[i]
        if j < 0 or j >= n:
            _out_of_range()
        o[i] = 1 if b[j] & mask else 0
    return out


def flag_min(idx, mss, lo):
    """See search_py.flag_min."""
    cdef const int[::1] x = idx
    cdef const unsigned long long[::1] s = mss
    cdef Py_ssize_t i, m = x.shape[0], n = s.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, m)
    cdef char *o = PyBytes_AS_STRING(out)
    cdef unsigned long long v
    if lo <= 0:
        v = 0
    elif lo > 0xFFFFFFFFFFFFFFFF:
        return bytes(m)
    else:
        v = lo
    cdef Py_ssize_t j
    for i in range(m):
        j = x[i]
        if j < 0 or j >= n:
            _out_of_range()
        o[i] = 1 if s[j] >= v else 0
    return out


def flag_pick(bytes chosen, keys, idx, mss):
    """See search_py.flag_pick."""
    cdef const int[::1] x = idx
    cdef const unsigned long long[::1] s = mss
    cdef Py_ssize_t i, m = PyBytes_GET_SIZE(chosen), n = s.shape[0]
    cdef const char *c = PyBytes_AS_STRING(chosen)
    cdef unsigned long long top = 0, v
    cdef Py_ssize_t j
    cdef list out = []
    if x.shape[0] < m or len(keys) < m:
        raise IndexError("CHOSEN is longer than KEYS or IDX")
    for i in range(m):
        if c[i] & 1:
            out.append(keys[i])
            j = x[i]
            if j < 0 or j >= n:
                _out_of_range()
            v = s[j]
            if v > top:
                top = v
    return out, top
