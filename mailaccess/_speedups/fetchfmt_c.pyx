# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""FETCH responses for the simple items, compiled twin of ``fetchfmt_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  Per message this reads the stored values of
the store's readers (``View.email_reader`` / ``index_reader`` /
``blob_reader``): with py-lmdb 3.0.0 by LMDB's own cursor calls on the
readers' transaction (lmdb_direct.pxi's TableReads; the indexes and raw
messages of 16 messages looked up before any is read, TableAhead),
else through the readers; it looks at them in place, picks the record's
fields at the offsets ``store.records.EMAIL_LAYOUT`` gives, and writes the
response into one growing C buffer; FLAGS text is formatted by the caller's
formatter once per distinct keyword set and INTERNALDATE by Python only
outside the years 1..9999 (where ``datetime`` has the last word, errors
included).  HEADER.FIELDS items scan the raw message's header in C the way
``msgindex``'s ``split_header`` splits it (the header end read from the
index's meta prefix, ``INDEX_LAYOUT.header_end_at``) and match the names
without regard to ASCII case (at most MAX_HF items of a header under
``fieldspans.OFFLOOP_BYTES``: a bigger one is a fallback, as in the pure
twin).  Whole-message (``WholeBody``) and whole-header (``WholeHeader``)
literals are copied from the raw message into the buffer, NUL as 0x80.  It
builds no LMDB key and imports nothing above the store.

The layouts are read at import from their descriptions (EMAIL_LAYOUT,
``mime.index.INDEX_LAYOUT``): moving a field needs no rebuild, but if a
field this module reads changes its type, or the index framing changes
shape, it refuses to load (ImportError) and the pure-Python twin takes over.
"""
from array import array

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact, \
    PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItemWithError
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset
from mailaccess._speedups.span cimport Span, _span, _unspan

from ..ids import email_id, thread_id
from ..mime.fieldspans import OFFLOOP_BYTES as _FIELDS_OFFLOOP_BYTES
from ..mime.index import INDEX_LAYOUT
from ..store.records import EMAIL_LAYOUT, decode_keywords
from . import fetchfmt_py as _py
from .emailrec_py import RecordRun

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
    return [X.fields.index(f) for f in ("envelope", "bodystructure", "body", "meta")]


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
# a header this big is left to the Python path (split once, in the worker
# pool): here each HEADER.FIELDS item scans the header, up to MAX_HF of them
cdef Py_ssize_t FIELDS_OFFLOOP = _FIELDS_OFFLOOP_BYTES
HEADER_WORK = _py.HEADER_WORK
cdef Py_ssize_t C_HEADER_WORK = HEADER_WORK     # (fetch_upto: see the pure twin)
# IDX_OK[v]: version byte v is one of INDEX_LAYOUT.readable (same framing)
cdef unsigned char IDX_OK[256]
for _v in range(256):
    IDX_OK[_v] = 1 if _v in INDEX_LAYOUT.readable else 0
# positions of envelope, bodystructure, body and meta among the index fields
cdef int IDX_FIELD[4]
IDX_FIELD[0], IDX_FIELD[1], IDX_FIELD[2], IDX_FIELD[3] = _X

# the meta prefix holding the header end, per version (see _header_end):
# HE_LEAD_N[v] < 0 when version v has none (its HEADER.FIELDS fall back)
cdef char HE_LEAD[256][16]
cdef int HE_LEAD_N[256]
cdef char HE_SEP[256][32]
cdef int HE_SEP_N[256]
for _v in range(256):
    HE_LEAD_N[_v] = HE_SEP_N[_v] = -1
for _v, _lead, _sep in INDEX_LAYOUT.header_end_at:
    if not (0 <= _v <= 255 and len(_lead) <= 16 and len(_sep) <= 32):
        raise ImportError("fetchfmt_c: header end prefix out of range")
    HE_LEAD_N[_v] = len(_lead)
    HE_SEP_N[_v] = len(_sep)
    memcpy(HE_LEAD[_v], <const char *>_lead, len(_lead))
    memcpy(HE_SEP[_v], <const char *>_sep, len(_sep))


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
if _py.HEADER_FIELDS != 10 or _py.HeaderFields._fields != ("label", "names", "negate"):
    raise ImportError("fetchfmt_c: HeaderFields changed")
HeaderFields = _py.HeaderFields
HEADER_FIELDS = _py.HEADER_FIELDS
if _py.WHOLE_BODY != 11 or _py.WholeBody._fields != ("label",):
    raise ImportError("fetchfmt_c: WholeBody changed")
WholeBody = _py.WholeBody
WHOLE_BODY = _py.WHOLE_BODY
if _py.WHOLE_HEADER != 12 or _py.WholeHeader._fields != ("label",):
    raise ImportError("fetchfmt_c: WholeHeader changed")
WholeHeader = _py.WholeHeader
WHOLE_HEADER = _py.WHOLE_HEADER
body_literal = _py.body_literal     # not on the hot path: the loop below writes its own
with_recent = _py.with_recent

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
    C_HEADER_FIELDS = 10
    C_WHOLE_BODY = 11
    C_WHOLE_HEADER = 12
    MAX_ITEMS = 64
    MAX_HF = 16         # HEADER.FIELDS items in one request (more: the pure twin)
    MAX_WANT = 256      # field names in all of them

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

# Span, _span, _unspan: see span.pxd


cdef inline uint64_t _be(const unsigned char *p, int n):
    cdef uint64_t v = 0
    cdef int k
    for k in range(n):
        v = (v << 8) | p[k]
    return v


cdef inline void _idx_field(const Span *s, int w, const unsigned char **start, Py_ssize_t *n):
    """Field W (0 envelope, 1 bodystructure, 2 body, 3 meta) of the index
    storage form, clamped the way a Python slice clamps."""
    cdef int k = IDX_FIELD[w]
    cdef Py_ssize_t a = IDX_SIZE + (<Py_ssize_t>_be(s.p + 1 + 4 * (k - 1), 4) if k else 0)
    cdef Py_ssize_t e = IDX_SIZE + <Py_ssize_t>_be(s.p + 1 + 4 * k, 4)
    if a > s.n:
        a = s.n
    if e > s.n:
        e = s.n
    start[0] = s.p + a
    n[0] = e - a if e > a else 0


cdef inline Py_ssize_t _digits(const unsigned char *p, Py_ssize_t pos, Py_ssize_t e,
                               uint64_t *value):
    """How many decimal digits start at P[POS] (before E), counting at most
    19; their value in VALUE."""
    cdef Py_ssize_t k = 0
    cdef uint64_t v = 0
    while pos + k < e and k < 19 and 48 <= p[pos + k] <= 57:
        v = v * 10 + (p[pos + k] - 48)
        k += 1
    value[0] = v
    return k


cdef Py_ssize_t _header_end(const Span *s):
    """The header end in the index S's meta prefix (mime.index.meta_header_end:
    LEAD, 1-18 digits, SEP, 1-18 digits, ","), or -1 when it is not there."""
    cdef int v = s.p[0]
    cdef int ln = HE_LEAD_N[v], sn = HE_SEP_N[v]
    cdef const unsigned char *p = NULL
    cdef Py_ssize_t n = 0, pos, k
    cdef uint64_t size, he
    if ln < 0:
        return -1
    _idx_field(s, 3, &p, &n)
    if n < ln or memcmp(p, HE_LEAD[v], ln) != 0:
        return -1
    pos = ln
    k = _digits(p, pos, n, &size)
    if k < 1 or k > 18:
        return -1
    pos += k
    if n - pos < sn or memcmp(p + pos, HE_SEP[v], sn) != 0:
        return -1
    pos += sn
    k = _digits(p, pos, n, &he)
    if k < 1 or k > 18 or pos + k >= n or p[pos + k] != 44:
        return -1
    return <Py_ssize_t>he


cdef inline bint _name_in(const unsigned char *name, Py_ssize_t n, const char **wname,
                          const Py_ssize_t *wlen, int w0, int w1):
    """NAME (ASCII) lower-cased is one of wname[w0:w1] (lower case)."""
    cdef int j
    cdef Py_ssize_t k
    cdef unsigned char c
    for j in range(w0, w1):
        if wlen[j] != n:
            continue
        for k in range(n):
            c = name[k]
            if 65 <= c <= 90:
                c += 32
            if c != <unsigned char>wname[j][k]:
                break
        else:
            return True
    return False


cdef int _put_header_fields(Buf *b, Buf *t, const unsigned char *p, Py_ssize_t end,
                            const char **wname, const Py_ssize_t *wlen, int w0, int w1,
                            bint negate, bytes label) except -1:
    """``LABEL {n}\\r\\n`` + the field lines of P[:END] whose name is (NEGATE:
    is not) one of wname[w0:w1], each ending in a line break, then CRLF; NUL
    as 0x80.  The fields are split exactly as msgindex ``split_header``
    splits P[0:END]; T is scratch space."""
    cdef Py_ssize_t pos = 0, line_end, content_end, fstart = 0, nstart = 0, nlen = 0, q, k
    cdef const unsigned char *hit
    cdef bint have = False
    cdef unsigned char c
    t.n = 0
    while pos < end:
        hit = <const unsigned char *>memchr(p + pos, 10, end - pos)
        if hit == NULL:
            line_end = content_end = end
        else:
            content_end = hit - p
            line_end = content_end + 1
        if content_end > pos and p[content_end - 1] == 13:
            content_end -= 1
        if content_end == pos:      # blank line: the header ends
            break
        c = p[pos]
        if c == 32 or c == 9:       # a continuation line (or none to continue: the end)
            if not have:
                break
            pos = line_end
            continue
        hit = <const unsigned char *>memchr(p + pos, 58, content_end - pos)
        if hit == NULL:
            break
        q = hit - p
        while q > pos and (p[q - 1] == 32 or p[q - 1] == 9):
            q -= 1
        if q == pos:
            break
        for k in range(pos, q):
            if p[k] < 33 or p[k] > 126:
                break
        else:
            k = q
        if k != q:
            break
        if have and _name_in(p + nstart, nlen, wname, wlen, w0, w1) != negate:
            _put(t, <const char *>p + fstart, pos - fstart)
            if p[pos - 1] != 10:
                _put(t, b"\r\n", 2)
        have = True
        fstart = nstart = pos
        nlen = q - pos
        pos = line_end
    if have and _name_in(p + nstart, nlen, wname, wlen, w0, w1) != negate:
        _put(t, <const char *>p + fstart, pos - fstart)
        if p[pos - 1] != 10:
            _put(t, b"\r\n", 2)
    _put(t, b"\r\n", 2)
    hit = <const unsigned char *>memchr(t.p, 0, t.n)
    while hit != NULL:
        (<unsigned char *>hit)[0] = 0x80
        q = hit - <const unsigned char *>t.p + 1
        hit = <const unsigned char *>memchr(t.p + q, 0, t.n - q)
    _put_bytes(b, label)
    _put(b, b" {", 2)
    _put_u64(b, <uint64_t>t.n)
    _put(b, b"}\r\n", 3)
    _put(b, t.p, t.n)
    return 0


cdef int _put_literal(Buf *b, bytes label, const unsigned char *p, Py_ssize_t n) except -1:
    """``LABEL {N}\\r\\n`` + P[:N], each NUL as 0x80 (fetchfmt_py.body_literal)."""
    cdef Py_ssize_t at
    cdef const unsigned char *nul
    _put_bytes(b, label)
    _put(b, b" {", 2)
    _put_u64(b, <uint64_t>n)
    _put(b, b"}\r\n", 3)
    at = b.n
    _put(b, <const char *>p, n)
    nul = <const unsigned char *>memchr(b.p + at, 0, n)
    while nul != NULL:
        (<unsigned char *>nul)[0] = 0x80
        at = nul - <const unsigned char *>b.p + 1
        nul = <const unsigned char *>memchr(b.p + at, 0, b.n - at)
    return 0


def header_literal(raw_header, item):
    """``LABEL {n}\\r\\n`` + the matching field lines: see ``fetchfmt_py.header_literal``."""
    cdef const char *wname[MAX_WANT]
    cdef Py_ssize_t wlen[MAX_WANT]
    cdef int nw = 0
    cdef list keep = []
    cdef bytes w
    cdef Span rs
    cdef Buf b, t
    if len(item.names) > MAX_WANT:
        return _py.header_literal(raw_header, item)
    for name in item.names:
        low = name.lower()
        if low.isascii():
            w = low.encode("ascii")
            keep.append(w)
            wname[nw] = PyBytes_AS_STRING(w)
            wlen[nw] = PyBytes_GET_SIZE(w)
            nw += 1
    b.p = t.p = NULL
    b.n = b.cap = t.n = t.cap = 0
    rs.release = False
    _span(raw_header, &rs)
    try:
        _put_header_fields(&b, &t, rs.p, rs.n, wname, wlen, 0, nw, bool(item.negate),
                           bytes(item.label))
        return PyBytes_FromStringAndSize(b.p, b.n)
    finally:
        _unspan(&rs)
        PyMem_Free(b.p)
        PyMem_Free(t.p)


# --- the hot path ---------------------------------------------------------------------------

# the stored values are read through lmdb_direct.pxi's TableReads (LMDB
# called directly when py-lmdb 3.0.0 is there; ``lmdb_direct(False)`` turns
# that off for this module: the Reader's get)
include "lmdb_direct.pxi"


cdef inline bint _seat(const unsigned int *su, Py_ssize_t n_snap, long long u,
                       Py_ssize_t *i) noexcept:
    """Move I (the map slot of the UID before) to UID U's slot -> True, or
    leave it before where U would be -> False (U not in the map).  FETCH 1:*
    walks the map in order: the next slot is tried before bisecting."""
    cdef Py_ssize_t k = i[0] + 1, lo = 0, hi = n_snap, mid
    if k < n_snap and su[k] == u:
        i[0] = k
        return True
    while lo < hi:
        mid = (lo + hi) >> 1
        if su[mid] < u:
            lo = mid + 1
        else:
            hi = mid
    if lo >= n_snap or su[lo] != u:
        i[0] = lo - 1
        return False
    i[0] = lo
    return True


cdef bint _AHEAD = True
# messages looked up at once (at most TD_AHEAD): measured in process (10,000
# messages of bench_imap's corpus, CPU medians of 30 alternated runs),
# BODY.PEEK[HEADER] 19.7 ms at 16 and 20.7 at 64, ENVELOPE 10.3 and 10.5
cdef int _DEPTH = 16


def look_ahead(enable=None, depth=None) -> bool:
    """Whether fetch_simple/fetch_upto look the values up DEPTH messages at
    a time (default 16, at most TD_AHEAD) when they call LMDB directly;
    ENABLE False turns it off (tests: the direct path one message at a
    time), True on again; DEPTH (tests, benchmarks) sets how many."""
    global _AHEAD, _DEPTH
    if enable is not None:
        _AHEAD = bool(enable)
    if depth is not None:
        if not 1 <= depth <= TD_AHEAD:
            raise ValueError(f"look-ahead depth must be 1..{TD_AHEAD}")
        _DEPTH = depth
    return _AHEAD


cdef struct Ahead:
    # the messages of positions [base, base + _DEPTH) of the UIDs, looked
    # up at once (_look_ahead): map slot (-1: none), record (NULL: gone),
    # index and raw message (rc 0: read; MDB_NOTFOUND: none or not looked
    # up; else LMDB's error, raised when the message is answered)
    Py_ssize_t i[TD_AHEAD]
    const unsigned char *mp[TD_AHEAD]
    Py_ssize_t mn[TD_AHEAD]
    int xrc[TD_AHEAD]
    const unsigned char *xp[TD_AHEAD]
    Py_ssize_t xn[TD_AHEAD]
    int rrc[TD_AHEAD]
    const unsigned char *rp[TD_AHEAD]
    Py_ssize_t rn[TD_AHEAD]
    # the msg.bs row (NULL: none, or not read): the index is not looked up
    const unsigned char *bp[TD_AHEAD]
    Py_ssize_t bn[TD_AHEAD]


cdef int _look_ahead(Ahead *a, uids, Py_ssize_t base, Py_ssize_t end, const unsigned int *su,
                     const unsigned int *se, Py_ssize_t n_snap, Py_ssize_t *fi, TableReads er,
                     TableAhead xa, TableAhead ra, unsigned int fields,
                     TableReads br) except -1:
    """Look the messages of UIDS[BASE:END] (at most _DEPTH) up into A: the
    records (stepped in table order by ER), then every index (XA) and raw
    message (RA) key searched before any of their values is read, the
    index fields in FIELDS (bit w: _idx_field's field w) prefetched as
    soon as the index's head is there.  The big values' first pages are a
    cache miss each: asked for together they are waited for together.
    BR (or None): the msg.bs rows, read in table order; a message with one
    has its index not looked up.
    FI: the map slot of the UID before BASE (the main loop's I, run ahead)."""
    cdef Py_ssize_t j, n = end - base, k, fn = 0
    cdef long long u
    cdef unsigned int eid
    cdef unsigned char ekey[4]
    cdef const unsigned char *fp = NULL
    cdef Span s
    cdef int w
    for j in range(n):
        a.i[j] = -1
        a.mp[j] = a.bp[j] = NULL
        a.xrc[j] = a.rrc[j] = MDB_NOTFOUND
        u = uids[base + j]
        if u < 0 or u > 0xFFFFFFFF or not _seat(su, n_snap, u, fi):
            continue
        a.i[j] = fi[0]
        eid = se[fi[0]]
        ekey[0] = <unsigned char>(eid >> 24)
        ekey[1] = <unsigned char>(eid >> 16)
        ekey[2] = <unsigned char>(eid >> 8)
        ekey[3] = <unsigned char>eid
        if not er.read(ekey, None, &a.mp[j], &a.mn[j]):
            a.mp[j] = NULL
            continue
        if a.mn[j] < MSG_SIZE or a.mp[j][0] != MSG_VERSION:
            continue        # (answered by the fallback: nothing more to read)
        if br is not None and not br.read(ekey, None, &a.bp[j], &a.bn[j]):
            a.bp[j] = NULL
        if xa is not None and a.bp[j] == NULL:
            a.xrc[j] = xa.seek(<int>j, a.mp[j] + O_BLOB)
        if ra is not None:
            a.rrc[j] = ra.seek(<int>j, a.mp[j] + O_BLOB)
    for j in range(n):
        if xa is not None and a.xrc[j] == 0:
            a.xrc[j] = xa.value(<int>j, &a.xp[j], &a.xn[j])
            if a.xrc[j] == 0 and a.xn[j] >= IDX_SIZE and IDX_OK[a.xp[j][0]]:
                s.p = a.xp[j]
                s.n = a.xn[j]
                for w in range(4):
                    if fields & (1u << w):
                        _idx_field(&s, w, &fp, &fn)
                        k = 0
                        while k < fn and k < 512:
                            ea_prefetch(fp + k)
                            k += 64
        if ra is not None and a.rrc[j] == 0:
            a.rrc[j] = ra.value(<int>j, &a.rp[j], &a.rn[j])
            if a.rrc[j] == 0:
                k = 128
                while k < a.rn[j] and k < 512:
                    ea_prefetch(a.rp[j] + k)
                    k += 64
    return 0


def fetch_simple(read_email, read_index, uids, snap_uids, snap_eids, items, flags,
                 bint condstore, bint utf8, read_blob=None, read_bs=None):
    """``(responses, reported, fallback)``: see ``fetchfmt_py.fetch_simple``."""
    if not isinstance(uids, (list, tuple, array)):
        uids = list(uids)
    r = _run(read_email, read_index, uids, 0, snap_uids, snap_eids, items, flags, condstore,
             utf8, read_blob, -1, None, read_bs, None)
    if r is None:       # absurd but legal requests: the pure twin
        return _py.fetch_simple(read_email, read_index, uids, snap_uids, snap_eids, items,
                                flags, condstore, utf8, read_blob, read_bs)
    return r[0], r[1], r[2]


def fetch_upto(read_email, read_index, uids, Py_ssize_t start, snap_uids, snap_eids, items,
               flags, bint condstore, bint utf8, read_blob, Py_ssize_t budget, recent=None,
               read_bs=None, dict into=None):
    """``(chunk, reported, stop, fallback)``: see ``fetchfmt_py.fetch_upto``."""
    if budget < 0:
        raise ValueError("budget must not be negative")
    r = _run(read_email, read_index, uids, start, snap_uids, snap_eids, items, flags,
             condstore, utf8, read_blob, budget, recent, read_bs, into)
    if r is None:
        return _py.fetch_upto(read_email, read_index, uids, start, snap_uids, snap_eids, items,
                              flags, condstore, utf8, read_blob, budget, recent, read_bs, into)
    return r[0], r[1], r[3], bool(r[2])


cdef _run(read_email, read_index, uids, Py_ssize_t start, snap_uids, snap_eids, items,
          flags, bint condstore, bint utf8, read_blob, Py_ssize_t budget, recent, read_bs,
          dict into):
    """fetch_simple (BUDGET < 0: one response per message, every UID) or
    fetch_upto (BUDGET >= 0: the responses joined, until BUDGET bytes or the
    first fallback): ``(responses or chunk, reported, fallback, stop)``, or
    None for a request the pure twin answers.  FLAGS of the UIDs in RECENT
    show \\Recent too.  READ_BS: the msg.bs rows (fetchfmt_py.fetch_simple)."""
    cdef list codes_l = _py.item_codes(items)
    cdef int ncodes = len(codes_l)
    cdef int codes[MAX_ITEMS]
    cdef int k, c, k2
    cdef bint want_flags = False, want_ms = False, want_index = False, want_header = False
    cdef bint add_modseq
    # HEADER.FIELDS items: hf_of[k] is item k's spec; spec s wants the names
    # wname[hf_w[s]:hf_w[s + 1]] (lower case; names that cannot match an
    # ASCII field name are left out), hf_neg[s] for .NOT, labels[s]
    cdef int hf_of[MAX_ITEMS]
    cdef int hf_w[MAX_HF + 1]
    cdef bint hf_neg[MAX_HF]
    cdef const char *wname[MAX_WANT]
    cdef Py_ssize_t wlen[MAX_WANT]
    cdef int nhf = 0, nw = 0
    cdef list labels = [], keep = []
    cdef bytes w
    cdef int n_whole = 0, n_head = 0
    cdef list whole_label = [None] * ncodes
    if ncodes > MAX_ITEMS:
        return None     # absurd but legal: let the pure twin do it
    hf_w[0] = 0
    for k in range(ncodes):
        c = codes_l[k]
        codes[k] = c
        if c == C_FLAGS:
            want_flags = True
        elif c == C_MODSEQ:
            want_ms = True
        elif c == C_ENVELOPE or c == C_BODYSTRUCTURE or c == C_BODY:
            want_index = True
        elif c == C_HEADER_FIELDS:
            want_index = want_header = True
            spec = items[k]
            if nhf == MAX_HF or nw + len(spec.names) > MAX_WANT:
                return None
            for name in spec.names:
                low = name.lower()
                if low.isascii():
                    w = low.encode("ascii")
                    keep.append(w)
                    wname[nw] = PyBytes_AS_STRING(w)
                    wlen[nw] = PyBytes_GET_SIZE(w)
                    nw += 1
            hf_of[k] = nhf
            hf_neg[nhf] = bool(spec.negate)
            labels.append(bytes(spec.label))
            nhf += 1
            hf_w[nhf] = nw
        elif c == C_WHOLE_BODY:
            n_whole += 1
            whole_label[k] = bytes(items[k].label)
        elif c == C_WHOLE_HEADER:
            want_index = True
            n_head += 1
            whole_label[k] = bytes(items[k].label)
    # the header end (from the index's meta prefix) for HEADER.FIELDS and
    # whole-header items
    cdef bint want_he = want_header or n_head > 0
    if (want_he or n_whole) and read_blob is None:
        raise ValueError("HEADER.FIELDS, whole-body and whole-header items need read_blob")
    cdef bint want_raw = want_he or n_whole > 0
    # BODYSTRUCTURE the only item read from the index: a message's msg.bs
    # row, when it has one, answers it and its index is not read
    cdef bint want_env_body = False
    for k in range(ncodes):
        if codes[k] == C_ENVELOPE or codes[k] == C_BODY:
            want_env_body = True
    cdef bint bs_only = read_bs is not None and not want_he and not want_env_body
    if bs_only:
        bs_only = False
        for k in range(ncodes):
            if codes[k] == C_BODYSTRUCTURE:
                bs_only = True
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
    cdef const unsigned int *sup = &su[0] if su.shape[0] else NULL
    cdef const unsigned int *sep = &se[0] if se.shape[0] else NULL

    # the stored values by key (lmdb_direct.pxi's TableReads): LMDB called
    # directly on a cursor of the Reader's own transaction when it can (each
    # value seen in place: only the pages of it read here are touched; the
    # email records stepped in table order), else the Reader's get with the
    # key assembled from its KeyShape, else the Reader called
    cdef TableReads er = TableReads(), xr = TableReads(), rr = TableReads(), br = TableReads()
    # ... or a dict's get (a streamed STORE's records, by email id): looked
    # up here, no call per message
    cdef dict e_dict = None
    # ... or a RecordRun's get (the same, the writer's records in one
    # buffer): its entries walked along the UIDs (the request's order), a
    # bisection when one is skipped
    cdef bytes r_data = None
    cdef const unsigned int[::1] r_eids
    cdef const unsigned int[::1] r_ends
    cdef Py_ssize_t r_n = 0, r_k = 0, r_at, r_lo
    owner = getattr(read_email, "__self__", None)
    if type(owner) is dict and getattr(read_email, "__name__", None) == "get":
        e_dict = <dict>owner
    elif type(owner) is RecordRun and getattr(read_email, "__name__", None) == "get":
        if owner.ascending:
            r_data = owner.data
            r_eids = owner.eids
            r_ends = owner.ends
            r_n = r_eids.shape[0]
        else:
            e_dict = dict(owner)
    else:
        er.open(read_email, "u32", 4, True)
    if want_index:
        xr.open(read_index, "bytes", BLOB_SIZE, False)
    if want_raw:
        rr.open(read_blob, "bytes", BLOB_SIZE, False)
    if bs_only:
        br.open(read_bs, "u32", 4, True)
    # ... and, LMDB called directly, the indexes and raw messages looked up
    # _DEPTH messages at a time (_look_ahead; no more cursors than UIDs)
    cdef bint ahead = _AHEAD and er.mode == TD_DIRECT and (want_index or want_raw) \
        and (xr.mode == TD_DIRECT or not want_index) and (rr.mode == TD_DIRECT or not want_raw) \
        and (br.mode == TD_DIRECT or not bs_only)
    cdef TableAhead xa = None, ra = None
    cdef Ahead a
    cdef Py_ssize_t a_base = 0, a_end = start, fi = -1, j = 0
    cdef unsigned int fields = 0
    cdef bint got
    cdef Py_ssize_t n_left = len(uids) - start
    cdef int depth = _DEPTH if n_left > _DEPTH else <int>n_left
    memset(&a, 0, sizeof(Ahead))
    if depth < 1:
        ahead = False
    if ahead:
        if want_index:
            xa = TableAhead()
            xa.open(xr, depth)
        if want_raw:
            ra = TableAhead()
            ra.open(rr, depth)
        for k in range(ncodes):
            c = codes[k]
            if c == C_ENVELOPE or c == C_BODYSTRUCTURE or c == C_BODY:
                fields |= 1u << (c - C_ENVELOPE)
        if want_he:
            fields |= 1u << 3
    cdef PyObject *found
    cdef unsigned char ekey[4]
    cdef unsigned char hsh[32]      # the blob hash (BLOB_SIZE: "32s", checked at import)

    cdef list out = []
    cdef dict reported = {} if into is None else into
    cdef list fallback = []
    cdef dict flag_cache = {}
    cdef dict recent_cache = {}
    cdef bytes fl_r
    cdef bytes last_tail = None
    cdef bytes fl = None
    cdef bytes tail
    cdef Span ms, xs, rs
    cdef Buf b, t
    cdef Py_ssize_t he = 0
    cdef Py_ssize_t i = -1, off, tail_n, fn, pos, n_u, fb_pos = -1, stop
    cdef Py_ssize_t scanned = 0     # header bytes times HEADER.FIELDS items
    cdef bint joined = budget >= 0
    cdef long long u
    cdef unsigned int eid
    cdef int64_t received
    cdef int tz, nkw, nmem
    cdef unsigned int size, thread
    cdef uint64_t last_ms, rep_ms = 0
    cdef object rep_ms_obj = None
    cdef const unsigned char *fp
    cdef const unsigned char *bsp = NULL
    cdef Py_ssize_t bsn = 0
    cdef object data
    # (xs and rs point into values TableReads holds: nothing to release)
    ms.release = xs.release = rs.release = False
    b.p = t.p = NULL
    b.n = b.cap = t.n = t.cap = 0
    n_u = len(uids)
    stop = n_u
    if joined:      # room for the chunk at once: no regrowth copies on the way
        _grow(&b, (budget if budget < (1 << 22) else (1 << 22)) + 65536)
    try:
        for pos in range(start, n_u):
            if fb_pos >= 0:
                break       # fetch_upto stops at its first fallback
            u_obj = uids[pos]
            u = u_obj
            if ahead:
                if pos >= a_end:
                    a_base = pos
                    a_end = pos + depth if n_u - pos > depth else n_u
                    _look_ahead(&a, uids, a_base, a_end, sup, sep, n_snap, &fi, er, xa, ra,
                                fields, br if bs_only else None)
                j = pos - a_base
                i = a.i[j]
                if i < 0:
                    continue
                eid = se[i]
                if a.mp[j] == NULL:
                    continue    # expunged meanwhile: RFC 9051 lets us omit it
                ms.p = a.mp[j]
                ms.n = a.mn[j]
                bsp = a.bp[j]
                bsn = a.bn[j]
            else:
                if u < 0 or u > 0xFFFFFFFF or not _seat(sup, n_snap, u, &i):
                    continue
                eid = se[i]
                if r_data is not None:
                    # (the entries ascend: found as a UID in the map, the
                    # entry after the last one found tried first)
                    r_at = r_k - 1
                    if not _seat(&r_eids[0] if r_n else NULL, r_n, eid, &r_at):
                        continue    # (as below)
                    r_lo = r_ends[r_at - 1] if r_at else 0
                    ms.p = <const unsigned char *>PyBytes_AS_STRING(r_data) + r_lo
                    ms.n = r_ends[r_at] - r_lo
                    r_k = r_at + 1
                elif e_dict is not None:
                    found = PyDict_GetItemWithError(e_dict, eid)
                    if found == NULL or <object>found is None:
                        continue    # (as above)
                    data = <object>found
                    _span(data, &ms)
                else:
                    ekey[0] = <unsigned char>(eid >> 24)
                    ekey[1] = <unsigned char>(eid >> 16)
                    ekey[2] = <unsigned char>(eid >> 8)
                    ekey[3] = <unsigned char>eid
                    if not er.read(ekey, eid if er.mode == TD_CALL else None, &ms.p, &ms.n):
                        continue    # (as above)
                bsp = NULL
                if bs_only:
                    ekey[0] = <unsigned char>(eid >> 24)
                    ekey[1] = <unsigned char>(eid >> 16)
                    ekey[2] = <unsigned char>(eid >> 8)
                    ekey[3] = <unsigned char>eid
                    if not br.read(ekey, eid if br.mode == TD_CALL else None, &bsp, &bsn):
                        bsp = NULL
            try:
                if ms.n < MSG_SIZE or ms.p[0] != MSG_VERSION:
                    fallback.append(u_obj)
                    fb_pos = pos if joined else -1
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
                    fb_pos = pos if joined else -1
                    continue
                if want_index or want_raw:
                    memcpy(hsh, ms.p + O_BLOB, BLOB_SIZE)
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
            if want_index and bsp == NULL:
                got = _blob_value(ahead, a.xrc[j], a.xp[j], a.xn[j], xr, hsh, &xs)
                if not got or xs.n < IDX_SIZE or not IDX_OK[xs.p[0]]:
                    fallback.append(u_obj)
                    fb_pos = pos if joined else -1
                    continue
            if want_raw:
                # HEADER.FIELDS: the header end from the meta's prefix (an
                # index written otherwise is decoded by the Python path), the
                # fields from the raw message up to it
                he = _header_end(&xs) if want_he else -1
                if (want_he and he < 0) or \
                        not _blob_value(ahead, a.rrc[j], a.rp[j], a.rn[j], rr, hsh, &rs):
                    fallback.append(u_obj)
                    fb_pos = pos if joined else -1
                    continue
                if he > rs.n:
                    he = rs.n
                if want_header and he >= FIELDS_OFFLOOP:
                    # a big header: split once, off the loop, by the Python path
                    fallback.append(u_obj)
                    fb_pos = pos if joined else -1
                    continue
                if want_header:
                    scanned += he * nhf
                if joined and (n_whole or n_head) and \
                        n_whole * rs.n + n_head * he > budget:
                    # bigger than the budget: the Python path sends it in pieces
                    fallback.append(u_obj)
                    fb_pos = pos
                    continue
            if not joined:
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
                    if recent is not None and u_obj in recent:
                        fl_r = recent_cache.get(fl)
                        if fl_r is None:
                            fl_r = recent_cache[fl] = _py.with_recent(fl)
                        _put_bytes(&b, fl_r)
                    else:
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
                    if bsp != NULL:
                        _put(&b, <const char *>bsp, bsn)
                    else:
                        _idx_field(&xs, 1, &fp, &fn)
                        _put(&b, <const char *>fp, fn)
                elif c == C_BODY:
                    _put(&b, b"BODY ", 5)
                    _idx_field(&xs, 2, &fp, &fn)
                    _put(&b, <const char *>fp, fn)
                elif c == C_HEADER_FIELDS:
                    k2 = hf_of[k]
                    _put_header_fields(&b, &t, rs.p, he, wname, wlen, hf_w[k2],
                                       hf_w[k2 + 1], hf_neg[k2], labels[k2])
                elif c == C_WHOLE_BODY:
                    # LABEL {n}\r\n and the stored bytes, NUL as 0x80
                    _put_literal(&b, <bytes>whole_label[k], rs.p, rs.n)
                elif c == C_WHOLE_HEADER:
                    # LABEL {n}\r\n and the header's stored bytes, NUL as 0x80
                    _put_literal(&b, <bytes>whole_label[k], rs.p, he)
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
            if rep_ms_obj is None or rep_ms != last_ms:
                # (a bulk STORE's lines share one modseq: one int for them)
                rep_ms = last_ms
                rep_ms_obj = last_ms
            reported[u_obj] = rep_ms_obj
            if not joined:
                out.append(PyBytes_FromStringAndSize(b.p, b.n))
            elif b.n >= budget or scanned >= budget * C_HEADER_WORK:
                stop = pos + 1
                break
        if fb_pos >= 0:
            stop = fb_pos
        if joined:
            return PyBytes_FromStringAndSize(b.p, b.n), reported, fallback, stop
        return out, reported, fallback, stop
    finally:
        _unspan(&ms)
        if xa is not None:
            xa.close()
        if ra is not None:
            ra.close()
        er.close()
        xr.close()
        rr.close()
        br.close()
        PyMem_Free(b.p)
        PyMem_Free(t.p)


cdef inline bint _blob_value(bint ahead, int rc, const unsigned char *p, Py_ssize_t n,
                             TableReads tr, const unsigned char *h, Span *s) except -1:
    """The value under blob hash H in TR's table into S -> True, or False
    when there is none: as _look_ahead found it (AHEAD: RC, P, N), or read
    now."""
    if not ahead:
        return tr.read(h, _hash_obj(h) if tr.mode == TD_CALL else None, &s.p, &s.n)
    if rc and rc != MDB_NOTFOUND:
        _lmdb_raise("mdb_cursor_get", rc)
    s.p = p
    s.n = n
    return rc == 0


cdef inline bytes _hash_obj(const unsigned char *h):
    """The blob hash H as bytes: the key a plain reader is called with."""
    return PyBytes_FromStringAndSize(<const char *>h, BLOB_SIZE)
