# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""FETCH responses for the simple items, compiled twin of ``fetchfmt_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  Per message this reads the stored values
through the store's readers (``View.email_reader`` / ``index_reader``), looks
at them through the buffer protocol without copying, picks the record's
fields at the offsets ``store.records.EMAIL_LAYOUT`` gives, and writes the
response into one growing C buffer; FLAGS text is formatted by the caller's
formatter once per distinct keyword set and INTERNALDATE by Python only
outside the years 1..9999 (where ``datetime`` has the last word, errors
included).  It builds no LMDB key and imports nothing above the store.

The layouts are read at import from their descriptions (EMAIL_LAYOUT,
``mime.index.INDEX_LAYOUT``): moving a field needs no rebuild, but if a
field this module reads changes its type, or the index framing changes
shape, it refuses to load (ImportError) and the pure-Python twin takes over.
"""
from array import array

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact, \
    PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

from ..ids import email_id, thread_id
from ..mime.index import INDEX_LAYOUT
from ..store.records import EMAIL_LAYOUT, decode_keywords
from . import fetchfmt_py as _py

cdef extern from "Python.h":
    bint PyMemoryView_Check(object o)
    Py_buffer *PyMemoryView_GET_BUFFER(object o)


# --- layouts, from their descriptions (checked against what this code reads) ----------------

# the struct code of each email record field read here: the C reads below
# (_be widths, signed casts) are written for exactly these
_READS = {"version": "B", "blob": "32s", "received_at": "q", "tz": "h", "size": "I",
          "thread": "I", "last_ms": "Q", "flags": "B", "n_keywords": "H", "n_members": "H"}


def _email_layout(L):
    if L.head.format[:1] not in (">", "!") or L.index("version") != 0:
        raise ImportError("fetchfmt_c: email records are not big-endian, version first")
    for name, code in _READS.items():
        if name not in L.fields or L.code(name) != code:
            raise ImportError(f"fetchfmt_c: email record field {name!r} changed type; "
                              "rebuild against the new layout")
    if not (0 <= L.version <= 255 and 0 < L.flag_utf8_headers <= 255):
        raise ImportError("fetchfmt_c: email record version or flag out of range")
    return L


def _index_layout(X):
    if X.head.format != ">B%dI" % len(X.fields):
        raise ImportError("fetchfmt_c: message index framing changed; rebuild against it")
    if not 0 <= X.version <= 255:
        raise ImportError("fetchfmt_c: message index version out of range")
    return [X.fields.index(f) for f in ("envelope", "bodystructure", "body")]


_L = _email_layout(EMAIL_LAYOUT)
_X = _index_layout(INDEX_LAYOUT)

cdef Py_ssize_t MSG_SIZE = _L.head.size
cdef Py_ssize_t MEMBER_SIZE = _L.member.size
cdef unsigned char MSG_VERSION = _L.version
cdef unsigned char UTF8_FLAG = _L.flag_utf8_headers
cdef Py_ssize_t O_BLOB = _L.offset("blob")
cdef Py_ssize_t O_RECEIVED = _L.offset("received_at")
cdef Py_ssize_t O_TZ = _L.offset("tz")
cdef Py_ssize_t O_SIZE = _L.offset("size")
cdef Py_ssize_t O_THREAD = _L.offset("thread")
cdef Py_ssize_t O_LAST_MS = _L.offset("last_ms")
cdef Py_ssize_t O_FLAGS = _L.offset("flags")
cdef Py_ssize_t O_NKW = _L.offset("n_keywords")
cdef Py_ssize_t O_NMEM = _L.offset("n_members")
cdef Py_ssize_t BLOB_SIZE = _L.size("blob")

cdef Py_ssize_t IDX_SIZE = INDEX_LAYOUT.head.size
# IDX_OK[v]: version byte v is one of INDEX_LAYOUT.readable (same framing)
cdef unsigned char IDX_OK[256]
for _v in range(256):
    IDX_OK[_v] = 1 if _v in INDEX_LAYOUT.readable else 0
# positions of envelope, bodystructure and body among the index fields
cdef int IDX_FIELD[3]
IDX_FIELD[0], IDX_FIELD[1], IDX_FIELD[2] = _X


def _id_prefix(f):
    s = f(0)
    p = s[:len(s) - 1]
    if f(4294967295) != p + "4294967295":
        raise ImportError("fetchfmt_c: ids.py changed its id format")
    return p.encode("ascii")


cdef bytes _EMAIL_PREFIX = _id_prefix(email_id)
cdef bytes _THREAD_PREFIX = _id_prefix(thread_id)

ITEMS = _py.ITEMS
if ITEMS != ("UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE",
             "BODYSTRUCTURE", "BODY", "EMAILID", "THREADID"):
    raise ImportError("fetchfmt_c: item codes changed")

cdef enum:
    C_UID = 0
    C_FLAGS = 1
    C_MODSEQ = 2
    C_SIZE = 3
    C_INTERNALDATE = 4
    C_ENVELOPE = 5
    C_BODYSTRUCTURE = 6
    C_BODY = 7
    C_EMAILID = 8
    C_THREADID = 9
    MAX_ITEMS = 64

cdef const char *_MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"

# outside these instants (a day inside datetime's years 1..9999) Python formats
cdef int64_t _TS_LO = -62135596800LL + 86400
cdef int64_t _TS_HI = 253402300799LL - 86400


def item_codes(items):
    """Codes of the item NAMES; ValueError for one this module cannot answer."""
    return _py.item_codes(items)


# --- output buffer --------------------------------------------------------------------------

cdef struct Buf:
    char *p
    Py_ssize_t n
    Py_ssize_t cap


cdef int _grow(Buf *b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2 if b.cap else 4096
    while cap < b.n + need:
        cap *= 2
    cdef char *p = <char *>PyMem_Realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef inline int _put(Buf *b, const char *s, Py_ssize_t n) except -1:
    if b.n + n > b.cap:
        _grow(b, n)
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0


cdef inline int _put_bytes(Buf *b, bytes s) except -1:
    return _put(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))


cdef inline int _put_u64(Buf *b, uint64_t v) except -1:
    cdef char tmp[24]
    cdef int k = 24
    while True:
        k -= 1
        tmp[k] = <char>(48 + v % 10)
        v //= 10
        if v == 0:
            break
    return _put(b, tmp + k, 24 - k)


cdef inline void _two(char *p, int v):
    p[0] = <char>(48 + v // 10)
    p[1] = <char>(48 + v % 10)


cdef int _put_date(Buf *b, int64_t received, int tz) except -1:
    """``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (quotes included), as fetchfmt_py.internaldate."""
    cdef int64_t secs, days, rem, z, era, doe, yoe, y, doy, mp, d, m
    cdef int off, hh, mi, ss
    cdef char out[28]
    if tz <= -1440 or tz >= 1440 or received < _TS_LO or received > _TS_HI:
        return _put_bytes(b, _py.internaldate(received, tz))
    secs = received + <int64_t>tz * 60
    days = secs // 86400
    rem = secs % 86400
    if rem < 0:
        rem += 86400
        days -= 1
    # days since 1970-01-01 -> civil date (proleptic Gregorian)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    hh = <int>(rem // 3600)
    mi = <int>(rem % 3600 // 60)
    ss = <int>(rem % 60)
    out[0] = b'"'
    if d < 10:
        out[1] = b' '
        out[2] = <char>(48 + d)
    else:
        _two(out + 1, <int>d)
    out[3] = b'-'
    memcpy(out + 4, _MONTHS + 3 * (m - 1), 3)
    out[7] = b'-'
    _two(out + 8, <int>(y // 100))
    _two(out + 10, <int>(y % 100))
    out[12] = b' '
    _two(out + 13, hh)
    out[15] = b':'
    _two(out + 16, mi)
    out[18] = b':'
    _two(out + 19, ss)
    out[21] = b' '
    off = tz
    if off < 0:
        out[22] = b'-'
        off = -off
    else:
        out[22] = b'+'
    _two(out + 23, off // 60)
    _two(out + 25, off % 60)
    out[27] = b'"'
    return _put(b, out, 28)


def internaldate(int64_t received, int tz):
    """``b'"dd-Mon-yyyy hh:mm:ss +zzzz"'`` for RECEIVED seconds at offset TZ minutes."""
    cdef Buf b
    b.p = NULL
    b.n = b.cap = 0
    try:
        _put_date(&b, received, tz)
        return PyBytes_FromStringAndSize(b.p, b.n)
    finally:
        PyMem_Free(b.p)


# --- reading LMDB values --------------------------------------------------------------------

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


cdef inline uint64_t _be(const unsigned char *p, int n):
    cdef uint64_t v = 0
    cdef int k
    for k in range(n):
        v = (v << 8) | p[k]
    return v


cdef inline void _idx_field(const Span *s, int w, const unsigned char **start, Py_ssize_t *n):
    """Field W (0 envelope, 1 bodystructure, 2 body) of the index storage form,
    clamped the way a Python slice clamps."""
    cdef int k = IDX_FIELD[w]
    cdef Py_ssize_t a = IDX_SIZE + (<Py_ssize_t>_be(s.p + 1 + 4 * (k - 1), 4) if k else 0)
    cdef Py_ssize_t e = IDX_SIZE + <Py_ssize_t>_be(s.p + 1 + 4 * k, 4)
    if a > s.n:
        a = s.n
    if e > s.n:
        e = s.n
    start[0] = s.p + a
    n[0] = e - a if e > a else 0


# --- the hot path ---------------------------------------------------------------------------

def fetch_simple(read_email, read_index, uids, snap_uids, snap_eids, items, flags,
                 bint condstore, bint utf8):
    """``(responses, reported, fallback)``: see ``fetchfmt_py.fetch_simple``."""
    cdef list codes_l = _py.item_codes(items)
    cdef int ncodes = len(codes_l)
    cdef int codes[MAX_ITEMS]
    cdef int k, c
    cdef bint want_flags = False, want_ms = False, want_index = False, add_modseq
    if ncodes > MAX_ITEMS:
        # absurd but legal: let the pure twin do it
        return _py.fetch_simple(read_email, read_index, uids, snap_uids, snap_eids, items,
                                flags, condstore, utf8)
    for k in range(ncodes):
        c = codes_l[k]
        codes[k] = c
        if c == C_FLAGS:
            want_flags = True
        elif c == C_MODSEQ:
            want_ms = True
        elif c == C_ENVELOPE or c == C_BODYSTRUCTURE or c == C_BODY:
            want_index = True
    add_modseq = condstore and want_flags and not want_ms

    if not isinstance(snap_uids, array) or snap_uids.typecode != "I":
        snap_uids = array("I", snap_uids)
    if not isinstance(snap_eids, array) or snap_eids.typecode != "I":
        snap_eids = array("I", snap_eids)
    cdef const unsigned int[::1] su = snap_uids
    cdef const unsigned int[::1] se = snap_eids
    cdef Py_ssize_t n_snap = su.shape[0]
    if se.shape[0] < n_snap:
        n_snap = se.shape[0]

    # a store Reader (store/view.py) spells its read out: get(key, None, db)
    # with the key assembled here from the store's KeyShape, no call per key
    cdef bint e_fast = False, x_fast = False
    cdef object e_get = None, e_db = None, x_get = None, x_db = None
    cdef bytes e_pre = b"", x_pre = b""
    shape = getattr(read_email, "shape", None)
    if shape is not None and shape.suffix == "u32" and type(shape.prefix) is bytes:
        e_fast, e_pre, e_get, e_db = True, shape.prefix, read_email.get, read_email.db
    shape = getattr(read_index, "shape", None)
    if shape is not None and shape.suffix == "bytes" and type(shape.prefix) is bytes:
        x_fast, x_pre, x_get, x_db = True, shape.prefix, read_index.get, read_index.db
    cdef Py_ssize_t e_pn = PyBytes_GET_SIZE(e_pre), x_pn = PyBytes_GET_SIZE(x_pre)
    cdef bytes key
    cdef char *kp

    cdef list out = []
    cdef dict reported = {}
    cdef list fallback = []
    cdef dict flag_cache = {}
    cdef bytes last_tail = None
    cdef bytes fl = None
    cdef bytes tail
    cdef bytes blob = None
    cdef Span ms, xs
    cdef Buf b
    cdef Py_ssize_t i = -1, lo, hi, mid, off, tail_n, fn
    cdef long long u
    cdef unsigned int eid
    cdef int64_t received
    cdef int tz, nkw, nmem
    cdef unsigned int size, thread
    cdef uint64_t last_ms
    cdef const unsigned char *fp
    cdef object data, idx
    ms.release = xs.release = False
    b.p = NULL
    b.n = b.cap = 0
    try:
        for u_obj in uids:
            u = u_obj
            if u < 0 or u > 0xFFFFFFFF:
                continue
            # FETCH 1:* walks the map in order: try the next slot before bisecting
            i += 1
            if not (i < n_snap and su[i] == u):
                lo = 0
                hi = n_snap
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if su[mid] < u:
                        lo = mid + 1
                    else:
                        hi = mid
                i = lo
                if i >= n_snap or su[i] != u:
                    i -= 1
                    continue
            eid = se[i]
            if e_fast:
                key = PyBytes_FromStringAndSize(NULL, e_pn + 4)
                kp = PyBytes_AS_STRING(key)
                memcpy(kp, PyBytes_AS_STRING(e_pre), e_pn)
                kp[e_pn] = <char>(eid >> 24); kp[e_pn + 1] = <char>(eid >> 16)
                kp[e_pn + 2] = <char>(eid >> 8); kp[e_pn + 3] = <char>eid
                data = e_get(key, None, e_db)
            else:
                data = read_email(eid)
            if data is None:
                continue    # expunged meanwhile: RFC 9051 lets us omit it
            _span(data, &ms)
            try:
                if ms.n < MSG_SIZE or ms.p[0] != MSG_VERSION:
                    fallback.append(u_obj)
                    continue
                received = <int64_t>_be(ms.p + O_RECEIVED, 8)
                tz = <short>_be(ms.p + O_TZ, 2)
                size = <unsigned int>_be(ms.p + O_SIZE, 4)
                thread = <unsigned int>_be(ms.p + O_THREAD, 4)
                last_ms = _be(ms.p + O_LAST_MS, 8)
                nkw = <int>_be(ms.p + O_NKW, 2)
                nmem = <int>_be(ms.p + O_NMEM, 2)
                if not utf8 and ms.p[O_FLAGS] & UTF8_FLAG:
                    fallback.append(u_obj)
                    continue
                if want_index:
                    if x_fast:
                        blob = PyBytes_FromStringAndSize(NULL, x_pn + BLOB_SIZE)
                        kp = PyBytes_AS_STRING(blob)
                        memcpy(kp, PyBytes_AS_STRING(x_pre), x_pn)
                        memcpy(kp + x_pn, ms.p + O_BLOB, BLOB_SIZE)
                    else:
                        blob = PyBytes_FromStringAndSize(<const char *>ms.p + O_BLOB, BLOB_SIZE)
                if want_flags:
                    if nkw:
                        off = MSG_SIZE + <Py_ssize_t>nmem * MEMBER_SIZE
                        if off > ms.n:
                            off = ms.n
                        tail_n = ms.n - off
                    else:
                        off = tail_n = 0
                    if not (last_tail is not None and PyBytes_GET_SIZE(last_tail) == tail_n
                            and memcmp(PyBytes_AS_STRING(last_tail), ms.p + off, tail_n) == 0):
                        tail = PyBytes_FromStringAndSize(<const char *>ms.p + off, tail_n)
                        fl = flag_cache.get(tail)
                        if fl is None:
                            fl = flag_cache[tail] = b"FLAGS " + flags(decode_keywords(tail))
                        last_tail = tail
            finally:
                _unspan(&ms)
            data = None
            if want_index:
                idx = x_get(blob, None, x_db) if x_fast else read_index(blob)
                blob = None
                if idx is None:
                    fallback.append(u_obj)
                    continue
                _span(idx, &xs)
                if xs.n < IDX_SIZE or not IDX_OK[xs.p[0]]:
                    _unspan(&xs)
                    fallback.append(u_obj)
                    continue
            try:
                b.n = 0
                _put(&b, b"* ", 2)
                _put_u64(&b, <uint64_t>(i + 1))
                _put(&b, b" FETCH (", 8)
                for k in range(ncodes):
                    if k:
                        _put(&b, b" ", 1)
                    c = codes[k]
                    if c == C_UID:
                        _put(&b, b"UID ", 4)
                        _put_u64(&b, <uint64_t>u)
                    elif c == C_FLAGS:
                        _put_bytes(&b, fl)
                    elif c == C_MODSEQ:
                        _put(&b, b"MODSEQ (", 8)
                        _put_u64(&b, last_ms)
                        _put(&b, b")", 1)
                    elif c == C_SIZE:
                        _put(&b, b"RFC822.SIZE ", 12)
                        _put_u64(&b, size)
                    elif c == C_INTERNALDATE:
                        _put(&b, b"INTERNALDATE ", 13)
                        _put_date(&b, received, tz)
                    elif c == C_ENVELOPE:
                        _put(&b, b"ENVELOPE ", 9)
                        _idx_field(&xs, 0, &fp, &fn)
                        _put(&b, <const char *>fp, fn)
                    elif c == C_BODYSTRUCTURE:
                        _put(&b, b"BODYSTRUCTURE ", 14)
                        _idx_field(&xs, 1, &fp, &fn)
                        _put(&b, <const char *>fp, fn)
                    elif c == C_BODY:
                        _put(&b, b"BODY ", 5)
                        _idx_field(&xs, 2, &fp, &fn)
                        _put(&b, <const char *>fp, fn)
                    elif c == C_EMAILID:
                        _put(&b, b"EMAILID (", 9)
                        _put_bytes(&b, _EMAIL_PREFIX)
                        _put_u64(&b, eid)
                        _put(&b, b")", 1)
                    else:
                        _put(&b, b"THREADID (", 10)
                        _put_bytes(&b, _THREAD_PREFIX)
                        _put_u64(&b, thread)
                        _put(&b, b")", 1)
                if add_modseq:
                    if ncodes:
                        _put(&b, b" ", 1)
                    _put(&b, b"MODSEQ (", 8)
                    _put_u64(&b, last_ms)
                    _put(&b, b")", 1)
                _put(&b, b")\r\n", 3)
            finally:
                _unspan(&xs)
            idx = None
            out.append(PyBytes_FromStringAndSize(b.p, b.n))
            reported[u_obj] = last_ms
    finally:
        _unspan(&ms)
        _unspan(&xs)
        PyMem_Free(b.p)
    return out, reported, fallback
