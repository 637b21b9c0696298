# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The write path's per-message work, compiled twin of ``emailrec_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  The record is read through the buffer protocol
at the offsets ``store.records.EMAIL_LAYOUT`` gives and the new one is
written into one fresh bytes object; keywords are still Python strings (the
set algebra and the sort are Python's, so the result is the same).  A layout
whose fields this code reads changed type refuses to load (ImportError) and
the twin takes over.  ``apply_keywords`` calls LMDB itself, with the GIL
held, through the py-lmdb cursors it is given (see "LMDB called directly"
below: py-lmdb 3.0.0 only; else it goes through py-lmdb's methods).
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.object cimport PyObject, PyTypeObject
from libc.stdint cimport uint64_t, uint32_t
from libc.string cimport memcmp, memcpy
from libc.stdlib cimport realloc, free

from array import array

import os as _os

from ..store.errors import NotFound
from .emailrec_py import RecordRun
from ..store.records import EMAIL_LAYOUT
from ..store.redolog import OP

if OP.format not in (">BBHI", "!BBHI"):
    raise ImportError("emailrec_c: the redo log's op layout changed")

_READS = {"version": "B", "size": "I", "last_ms": "Q", "n_keywords": "H", "n_members": "H"}
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
cdef Py_ssize_t OFF_VERSION = EMAIL_LAYOUT.offset("version")
cdef Py_ssize_t OFF_SIZE = EMAIL_LAYOUT.offset("size")
cdef unsigned char VERSION = EMAIL_LAYOUT.version


cdef inline uint64_t _be(const unsigned char *p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef inline void _put_be(unsigned char *p, uint64_t v, int n) noexcept nogil:
    cdef int i
    for i in range(n - 1, -1, -1):
        p[i] = v & 0xFF
        v >>= 8


cdef inline void _ms_suffix(unsigned char *w, uint64_t mbx, uint64_t ms, uint64_t uid) noexcept nogil:
    """An ``mbx.ms`` key's suffix at W: mailbox u32, modseq u64, uid u32, big-endian."""
    _put_be(w, mbx, 4)
    _put_be(w + 4, ms, 8)
    _put_be(w + 12, uid, 4)


cdef object _NOCHANGE = object()


cdef object _kw_change(bytes tail, bint has_kw, frozenset add, frozenset remove, object replace,
                       str seen):
    """What the request makes of the keywords TAIL (a record's keyword
    bytes): _NOCHANGE, or (the new keyword bytes, how many, \\Seen delta)."""
    if has_kw:
        old = set(tail.decode("utf-8").split("\0"))
    else:
        old = set()
    if replace is not None:
        new = set(replace)
    else:
        new = (old | add) - remove
    if new == old:
        return _NOCHANGE
    kws = sorted(new)
    return "\0".join(kws).encode("utf-8"), len(kws), (seen in new) - (seen in old)


cdef object _rewrite(const unsigned char *p, Py_ssize_t n, frozenset add, frozenset remove,
                     object replace, uint64_t new_ms, str seen):
    """rewrite_keywords on the record at P (N bytes)."""
    cdef Py_ssize_t nkw, nmem, mem_end, i, klen
    cdef uint64_t old_ms
    cdef bytes kwb, record
    cdef unsigned char *out
    if n < HEAD:
        raise ValueError("email record too short")
    nkw = <Py_ssize_t>_be(p + OFF_NKW, 2)
    nmem = <Py_ssize_t>_be(p + OFF_NMEM, 2)
    mem_end = HEAD + nmem * MEMBER
    if mem_end > n:
        raise ValueError("email record too short")
    r = _kw_change(PyBytes_FromStringAndSize(<const char *>p + mem_end, n - mem_end) if nkw
                   else b"", nkw != 0, add, remove, replace, seen)
    if r is _NOCHANGE:
        return None
    kwb, nk, delta = r
    klen = PyBytes_GET_SIZE(kwb)
    old_ms = _be(p + OFF_MS, 8)
    record = PyBytes_FromStringAndSize(NULL, mem_end + klen)
    out = <unsigned char *>PyBytes_AS_STRING(record)
    memcpy(out, p, mem_end)
    memcpy(out + mem_end, PyBytes_AS_STRING(kwb), klen)
    _put_be(out + OFF_MS, new_ms, 8)
    _put_be(out + OFF_NKW, <uint64_t>nk, 2)
    members = tuple([(<long>_be(p + HEAD + i * MEMBER, 4),
                      <long>_be(p + HEAD + i * MEMBER + 4, 4)) for i in range(nmem)])
    return record, old_ms, members, delta


def rewrite_keywords(data, frozenset add, frozenset remove, replace, uint64_t new_ms,
                     str seen):
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _rewrite(<const unsigned char *>view.buf, view.len, add, remove, replace,
                        new_ms, seen)
    finally:
        PyBuffer_Release(&view)




cdef uint64_t _last_ms(const unsigned char *p, Py_ssize_t n) except? 0:
    if n < HEAD:
        raise ValueError("email record too short")
    return _be(p + OFF_MS, 8)


cdef Py_ssize_t _members_end(const unsigned char *p, Py_ssize_t n, Py_ssize_t *nkw,
                             Py_ssize_t *nmem) except -1:
    """Where the keywords of the record at P (N bytes) start; *NKW, *NMEM:
    how many keywords and memberships it has."""
    nkw[0] = <Py_ssize_t>_be(p + OFF_NKW, 2)
    nmem[0] = <Py_ssize_t>_be(p + OFF_NMEM, 2)
    cdef Py_ssize_t mem_end = HEAD + nmem[0] * MEMBER
    if mem_end > n:
        raise ValueError("email record too short")
    return mem_end


cdef bytes _new_record(const unsigned char *p, Py_ssize_t mem_end, tuple kc, uint64_t ms):
    """The record at P with the keywords of KC (a _kw_change) and last_ms MS."""
    cdef bytes record = PyBytes_FromStringAndSize(NULL, mem_end + PyBytes_GET_SIZE(kc[0]))
    _fill_record(<unsigned char *>PyBytes_AS_STRING(record), p, mem_end, kc, ms)
    return record


cdef inline Py_ssize_t _fill_record(unsigned char *w, const unsigned char *p, Py_ssize_t mem_end,
                                    tuple kc, uint64_t ms) except -1:
    """_new_record's bytes written at W (room for mem_end + len(KC's keywords)) -> their length."""
    cdef bytes kwb = <bytes>kc[0]
    cdef Py_ssize_t klen = PyBytes_GET_SIZE(kwb)
    memcpy(w, p, mem_end)
    memcpy(w + mem_end, PyBytes_AS_STRING(kwb), klen)
    _put_be(w + OFF_MS, ms, 8)
    _put_be(w + OFF_NKW, <uint64_t>(<long>kc[1]), 2)
    return mem_end + klen


def rewrite_many(get, msg_key, mbx_ms_key, eids, frozenset add, frozenset remove,
                 replace, str seen, unchanged_since, alloc_ms, bint want_records):
    cdef dict new = {}
    cdef list gone = [], out_items = [], changed = []
    cdef dict deltas = {}
    cdef _KwRequest req = _KwRequest(add, remove, replace, seen, unchanged_since, want_records,
                                     alloc_ms)
    cdef dict recs = req.recs
    cdef uint64_t ms, old_ms
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t n, nmem, mem_end, i
    cdef tuple done, kc
    cdef bytes record
    cdef long delta
    for eid in eids:
        done = new.get(eid)
        if done is None:
            key = msg_key(eid)
            data = get(key)
            if data is None:
                continue
        else:
            key = done[0]
            data = done[1]
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char *>view.buf
            n = view.len
            kc_obj = req.change(eid, p, n, &old_ms, &mem_end, &nmem)
            if kc_obj is None:
                continue
            ms = req.modseq()
            ms_obj = req.ms_obj
            kc = <tuple>kc_obj
            delta = kc[2]
            record = _new_record(p, mem_end, kc, ms)
            old_ms_obj = old_ms
            for i in range(nmem):
                mbx = <long>_be(p + HEAD + i * MEMBER, 4)
                uid = <long>_be(p + HEAD + i * MEMBER + 4, 4)
                deltas[mbx] = deltas.get(mbx, 0) + delta
                gone.append(mbx_ms_key(mbx, old_ms_obj, uid))
                out_items.append((mbx_ms_key(mbx, ms_obj, uid), b""))
        finally:
            PyBuffer_Release(&view)
        new[eid] = (key, record)
        changed.append(eid)
        if want_records:
            recs[eid] = record
    return list(new.values()), gone, out_items, changed, req.conflicts, deltas, recs


cdef class _RunBuf:
    """apply_keywords's records with RUN: each copied into one growing
    buffer as it is put (no bytes object or dict entry per email), handed
    over as an ``emailrec_py.RecordRun``."""
    cdef unsigned char *p
    cdef uint32_t *e
    cdef uint32_t *ends
    cdef Py_ssize_t n, cap, k, kcap
    cdef bint asc
    cdef uint64_t last

    def __cinit__(self):
        self.p = NULL
        self.e = self.ends = NULL
        self.n = self.cap = self.k = self.kcap = 0
        self.asc = True
        self.last = 0

    def __dealloc__(self):
        free(self.p)
        free(self.e)
        free(self.ends)

    cdef int add(self, uint64_t eid, const unsigned char *rp, Py_ssize_t rn) except -1:
        memcpy(self.reserve(rn), rp, <size_t>rn)
        return self.commit(eid, rn)

    cdef unsigned char *reserve(self, Py_ssize_t rn) except NULL:
        """Room for RN more bytes at the end -> where they go (valid until
        the next reserve)."""
        cdef Py_ssize_t cap
        cdef void *q
        if self.n + rn > self.cap:
            cap = self.cap * 2 if self.cap else 65536
            while cap < self.n + rn:
                cap *= 2
            q = realloc(self.p, <size_t>cap)
            if q == NULL:
                raise MemoryError()
            self.p = <unsigned char *>q
            self.cap = cap
        if self.k == self.kcap:
            cap = self.kcap * 2 if self.kcap else 1024
            q = realloc(self.e, <size_t>cap * sizeof(uint32_t))
            if q == NULL:
                raise MemoryError()
            self.e = <uint32_t *>q
            q = realloc(self.ends, <size_t>cap * sizeof(uint32_t))
            if q == NULL:
                raise MemoryError()
            self.ends = <uint32_t *>q
            self.kcap = cap
        return self.p + self.n

    cdef int commit(self, uint64_t eid, Py_ssize_t rn) except -1:
        """The RN bytes written where reserve said are EID's record."""
        self.n += rn
        if self.k and eid <= self.last:
            self.asc = False
        self.last = eid
        self.e[self.k] = <uint32_t>eid
        self.ends[self.k] = <uint32_t>self.n
        self.k += 1
        return 0

    cdef object done(self):
        eids, ends = array("I"), array("I")
        eids.frombytes(PyBytes_FromStringAndSize(<const char *>self.e, self.k * 4))
        ends.frombytes(PyBytes_FromStringAndSize(<const char *>self.ends, self.k * 4))
        return RecordRun(PyBytes_FromStringAndSize(<const char *>self.p, self.n), eids, ends,
                         self.asc)


cdef class _KwRequest:
    """A bulk keyword change over records, as the loops below meet them: what
    it makes of each record's keywords (the keyword sets met so far are
    compared by their bytes: a bulk STORE meets a handful, no bytes or tuple
    is made per record), the UNCHANGEDSINCE conflicts, the records left as
    they were (when the records are wanted)."""
    cdef frozenset add, remove
    cdef object replace
    cdef str seen
    cdef bint check
    cdef uint64_t since
    cdef list kw_seen          # [(has keywords, keyword bytes, _kw_change)]
    cdef list conflicts
    cdef dict recs
    cdef _RunBuf run           # the records as a RecordRun (want_records, run): else None
    cdef object alloc_ms
    cdef object ms_obj         # the request's modseq once allocated, else None
    cdef uint64_t ms

    def __cinit__(self, frozenset add, frozenset remove, replace, str seen, unchanged_since,
                  bint want_records, alloc_ms, bint run=False):
        self.add, self.remove, self.replace, self.seen = add, remove, replace, seen
        self.alloc_ms = alloc_ms
        self.check = unchanged_since is not None
        self.since = <uint64_t>unchanged_since if self.check else 0
        self.kw_seen = []
        self.conflicts = []
        self.recs = {} if want_records and not run else None
        self.run = _RunBuf() if want_records and run else None

    cdef object change(self, object eid, const unsigned char *p, Py_ssize_t n,
                       uint64_t *old_ms, Py_ssize_t *mem_end, Py_ssize_t *nmem):
        """The _kw_change for the record of EID at P (N bytes); None when the
        record stays as it is (a conflict, or no change: noted).  *OLD_MS:
        its last_ms; *MEM_END, *NMEM: where its memberships end, how many."""
        cdef Py_ssize_t nkw, tl
        cdef bytes t
        cdef tuple ent
        old_ms[0] = _last_ms(p, n)
        if self.check and old_ms[0] > self.since:
            self.conflicts.append(eid)
            return None
        mem_end[0] = _members_end(p, n, &nkw, nmem)
        cdef const unsigned char *tp = p + mem_end[0]
        tl = n - mem_end[0] if nkw else 0
        kc = None
        for ent in self.kw_seen:
            t = <bytes>ent[1]
            if (<bint>ent[0]) == (nkw != 0) and PyBytes_GET_SIZE(t) == tl and \
                    memcmp(PyBytes_AS_STRING(t), tp, tl) == 0:
                kc = ent[2]
                break
        if kc is None:
            t = PyBytes_FromStringAndSize(<const char *>tp, tl)
            kc = _kw_change(t, nkw != 0, self.add, self.remove, self.replace, self.seen)
            self.kw_seen.append((nkw != 0, t, kc))
        if kc is _NOCHANGE:
            if self.recs is not None:
                self.recs[eid] = PyBytes_FromStringAndSize(<const char *>p, n)
            elif self.run is not None:
                self.run.add(<uint64_t>eid, p, n)
            return None
        return kc

    cdef uint64_t modseq(self) except? 0:
        """The request's modseq, allocated at the first change only."""
        if self.ms_obj is None:
            self.ms_obj = self.alloc_ms()
            self.ms = <uint64_t>self.ms_obj
        return self.ms


cdef class _SeenDeltas:
    """{mailbox: \\Seen delta} in first-seen order, summed in C while the
    mailbox repeats (a bulk STORE's messages are mostly of one)."""
    cdef dict deltas
    cdef uint64_t cur
    cdef bint have
    cdef long pend

    def __cinit__(self):
        self.deltas = {}

    cdef int add(self, uint64_t mbx, long delta) except -1:
        if not self.have or mbx != self.cur:
            if self.have:
                self.deltas[self.cur] = self.deltas.get(self.cur, 0) + self.pend
            self.cur = mbx
            self.have = True
            self.pend = 0
            self.deltas.setdefault(mbx, 0)
        self.pend += delta
        return 0

    cdef dict done(self):
        if self.have:
            self.deltas[self.cur] = self.deltas.get(self.cur, 0) + self.pend
            self.have = False
        return self.deltas


cdef inline bytes _key3(bytes prefix, uint64_t a, uint64_t b, uint64_t c):
    """PREFIX + a u32, b u64, c u32, big-endian (an ``mbx.ms`` key)."""
    cdef Py_ssize_t pl = PyBytes_GET_SIZE(prefix)
    cdef bytes k = PyBytes_FromStringAndSize(NULL, pl + 16)
    cdef unsigned char *w = <unsigned char *>PyBytes_AS_STRING(k)
    memcpy(w, PyBytes_AS_STRING(prefix), pl)
    _ms_suffix(w + pl, a, b, c)
    return k


# --- LMDB called directly (apply_keywords): see lmdb_direct.pxi ---------------------

include "lmdb_direct.pxi"


ctypedef int (*_put_nogil_t)(void *, ea_val *, ea_val *, unsigned int) noexcept nogil
ctypedef int (*_get_nogil_t)(void *, ea_val *, ea_val *, int) noexcept nogil
ctypedef int (*_del_nogil_t)(void *, unsigned int) noexcept nogil


ctypedef struct _Ix:
    uint64_t mbx, old_ms, uid


ctypedef struct _IxBuf:
    # the index moves of _apply_direct, made once its records are: each
    # (mailbox, old modseq, uid) key deleted, (mailbox, ms, uid) put
    _Ix *v
    Py_ssize_t n, cap
    uint64_t ms
    const char *failed          # the LMDB call that failed


cdef int _ix_push(_IxBuf *b, uint64_t mbx, uint64_t old_ms, uint64_t uid) except -1:
    cdef Py_ssize_t cap
    cdef _Ix *v
    if b.n == b.cap:
        cap = b.cap * 2 if b.cap else 1024
        v = <_Ix *>realloc(b.v, <size_t>cap * sizeof(_Ix))
        if v == NULL:
            raise MemoryError()
        b.v = v
        b.cap = cap
    b.v[b.n].mbx = mbx
    b.v[b.n].old_ms = old_ms
    b.v[b.n].uid = uid
    b.n += 1
    return 0


cdef enum:
    _GET_CURRENT = 4            # MDB_GET_CURRENT
    _IX_GROUPS = 4              # _ix_move's deletes grouped by mailbox up to this many


cdef int _ix_move(void *xc, void *pc, _IxBuf *b, unsigned char *kbuf,
                  Py_ssize_t xpl) noexcept nogil:
    """B's old ``mbx.ms`` keys deleted through XC, then its new ones put
    through PC (KBUF: the keys' prefix, XPL bytes, and room for a suffix):
    what the twin does (every old key deleted, then every new one put), so
    an email named twice moves as there.  No Python object is touched: run
    without the GIL, the loop formats a slice's answer meanwhile.  -> 0 or
    LMDB's error (B.failed names the call)."""
    cdef _get_nogil_t get = <_get_nogil_t>_c_get
    cdef _del_nogil_t delete = <_del_nogil_t>_c_del
    cdef _put_nogil_t put = <_put_nogil_t>_c_put
    cdef ea_val k, d, empty
    cdef unsigned char nothing = 0
    cdef Py_ssize_t j
    cdef int rc
    cdef ea_val ck
    cdef bint walk = False      # XC stands where its last delete left it
    # A delete leaves the cursor on the next key, and a bulk change's old
    # keys of one mailbox mostly follow each other in the table (UIDs
    # ascending, modseqs ascending with them): that key is compared first,
    # LMDB's search made only when it is another one.  The keys are deleted
    # a mailbox at a time when they are of a few (emails in two mailboxes,
    # as after a COPY, would otherwise alternate between them); the order
    # of the deletes changes nothing in the table.
    cdef uint64_t mb[_IX_GROUPS]
    cdef int nmb = 0, g, q
    for j in range(b.n):
        for q in range(nmb):
            if mb[q] == b.v[j].mbx:
                break
        else:
            if nmb == _IX_GROUPS:
                nmb = 0         # many: in the order met
                break
            mb[nmb] = b.v[j].mbx
            nmb += 1
    k.mv_size = <size_t>(xpl + 16)
    k.mv_data = kbuf
    for g in range(nmb if nmb > 1 else 1):
        for j in range(b.n):
            if nmb > 1 and b.v[j].mbx != mb[g]:
                continue
            _ms_suffix(kbuf + xpl, b.v[j].mbx, b.v[j].old_ms, b.v[j].uid)
            if walk:
                rc = get(xc, &ck, &d, _GET_CURRENT)
                walk = rc == 0 and ck.mv_size == k.mv_size and \
                    memcmp(ck.mv_data, kbuf, k.mv_size) == 0
            if not walk:
                rc = get(xc, &k, &d, MDB_SET)
                if rc == MDB_NOTFOUND:
                    continue
                if rc:
                    b.failed = "mdb_cursor_get"
                    return rc
            walk = True
            rc = delete(xc, 0)
            if rc:
                b.failed = "mdb_cursor_del"
                return rc
    empty.mv_size = 0
    empty.mv_data = &nothing
    # (the new keys a mailbox at a time too: each put then lands next to
    # the one before, on a page LMDB's cursor is on)
    for g in range(nmb if nmb > 1 else 1):
        for j in range(b.n):
            if nmb > 1 and b.v[j].mbx != mb[g]:
                continue
            _ms_suffix(kbuf + xpl, b.v[j].mbx, b.ms, b.v[j].uid)
            rc = put(pc, &k, &empty, 0)
            if rc:
                b.failed = "mdb_cursor_put"
                return rc
    return 0


cdef inline void _keybuf(ea_val *v, unsigned char *buf, bytes prefix, Py_ssize_t suffix) noexcept:
    """V: a key of BUF (64 bytes): PREFIX, then SUFFIX bytes filled in later."""
    cdef Py_ssize_t pl = PyBytes_GET_SIZE(prefix)
    memcpy(buf, PyBytes_AS_STRING(prefix), pl)
    v.mv_size = <size_t>(pl + suffix)
    v.mv_data = buf


cdef object _apply_direct(ea_cursor *mcur, ea_cursor *xcur, bytes mpre, bytes xpre, eids,
                          frozenset add, frozenset remove, replace, str seen,
                          unchanged_since, alloc_ms, bint want_records, made, bint run):
    """apply_keywords on the LMDB cursors of MCUR (msg) and XCUR (mbx.ms):
    each changed record put as it is met (an email named again reads what
    its first mention wrote, as the py-lmdb path reads what it is about to
    write: the same writes); the index keys moved after the last record, all
    old keys deleted, then the new ones put (_ix_move), as the twin does, and
    with the GIL released: the event loop formats the answer of this slice
    meanwhile (MADE, called with the records before, hands them over).  (Measured, 10,000 emails, stop 26: 4.8 -> 4.2 ms of
    CPU against deleting and putting each email's keys as it is met, and
    ~half of it without the GIL.  The order of the deletes, forward or
    backward, made no difference.)"""
    cdef void *mc = mcur.curs
    cdef void *xc = xcur.curs
    cdef void *pc = NULL            # puts the new index keys (the deletes keep xc in place)
    cdef Py_ssize_t mpl = PyBytes_GET_SIZE(mpre), xpl = PyBytes_GET_SIZE(xpre)
    if mpl + 4 > 64 or xpl + 16 > 64:
        return None
    cdef unsigned char kbuf[64]
    cdef unsigned char obuf[64]
    cdef unsigned char nbuf[64]
    cdef unsigned char nothing = 0
    cdef ea_val k, d, ok, nk, empty, rv
    _keybuf(&k, kbuf, mpre, 4)
    _keybuf(&ok, obuf, xpre, 16)
    _keybuf(&nk, nbuf, xpre, 16)
    empty.mv_size = 0
    empty.mv_data = &nothing
    cdef list changed = []
    cdef _SeenDeltas deltas = _SeenDeltas()
    cdef _KwRequest req = _KwRequest(add, remove, replace, seen, unchanged_since, want_records,
                                     alloc_ms, run)
    cdef dict recs = req.recs
    cdef _RunBuf rbuf = req.run
    cdef object out = None
    cdef uint64_t ms, old_ms, e
    cdef const unsigned char *p
    cdef const unsigned char *r
    cdef unsigned char *w
    cdef Py_ssize_t n, nkw, nmem, mem_end, i
    cdef tuple kc
    cdef bytes record
    cdef long delta
    cdef uint64_t mbx, uid
    cdef int rc
    cdef _IxBuf ix
    ix.v = NULL
    ix.n = ix.cap = 0
    try:
        for eid in eids:
            e = <uint64_t>eid
            if e > 0xFFFFFFFF:
                raise OverflowError("email id out of range")    # (the twin: struct.error)
            _put_be(kbuf + mpl, e, 4)
            rc = _c_get(mc, &k, &d, MDB_SET)
            if rc == MDB_NOTFOUND:
                continue
            if rc:
                _lmdb_raise("mdb_cursor_get", rc)
            p = <const unsigned char *>d.mv_data
            n = <Py_ssize_t>d.mv_size
            kc_obj = req.change(eid, p, n, &old_ms, &mem_end, &nmem)
            if kc_obj is None:
                continue
            if req.ms_obj is None:
                # the modseq's allocation may write: the record is read again
                req.modseq()
                rc = _c_get(mc, &k, &d, MDB_SET)
                if rc:
                    _lmdb_raise("mdb_cursor_get", rc)
                p = <const unsigned char *>d.mv_data
                n = <Py_ssize_t>d.mv_size
                mem_end = _members_end(p, n, &nkw, &nmem)
            ms = req.ms
            kc = <tuple>kc_obj
            delta = kc[2]
            if rbuf is not None:
                # (written where the run keeps it: no bytes object of its own)
                w = rbuf.reserve(mem_end + PyBytes_GET_SIZE(kc[0]))
                rv.mv_size = <size_t>_fill_record(w, p, mem_end, kc, ms)
                r = w
            else:
                record = _new_record(p, mem_end, kc, ms)
                r = <const unsigned char *>PyBytes_AS_STRING(record)
                rv.mv_size = <size_t>PyBytes_GET_SIZE(record)
            # (P is not read after a write: the memberships come from R)
            rv.mv_data = <void *>r
            # (the cursor stands on the record: MDB_SET just found it)
            rc = _c_put(mc, &k, &rv, MDB_CURRENT)
            if rc:
                _lmdb_raise("mdb_cursor_put", rc)
            if pc == NULL and nmem:
                rc = _c_open(_c_txn(xc), _c_dbi(xc), &pc)
                if rc:
                    pc = NULL
                    _lmdb_raise("mdb_cursor_open", rc)
            for i in range(nmem):
                mbx = _be(r + HEAD + i * MEMBER, 4)
                uid = _be(r + HEAD + i * MEMBER + 4, 4)
                deltas.add(mbx, delta)
                _ix_push(&ix, mbx, old_ms, uid)
            changed.append(eid)
            if rbuf is not None:
                rbuf.commit(e, <Py_ssize_t>rv.mv_size)
            elif want_records:
                recs[eid] = record
        out = rbuf.done() if rbuf is not None else recs
        if made is not None:
            made(out)
        if ix.n:
            ix.ms = req.ms
            with nogil:
                rc = _ix_move(xc, pc, &ix, obuf, xpl)
            if rc:
                _lmdb_raise(ix.failed.decode("ascii"), rc)
    finally:
        free(ix.v)
        if pc != NULL:
            _c_close(pc)
        # py-lmdb refreshes a cursor's cached key and value when its
        # transaction's mutation count moved: the writes above were not its own
        mcur.trans.mutations += 1
        xcur.trans.mutations += 1
    return changed, req.conflicts, deltas.done(), out


def apply_keywords(msg_cur, ms_cur, msg_shape, ms_shape, eids, frozenset add,
                   frozenset remove, replace, str seen, unchanged_since, alloc_ms,
                   bint want_records, made=None, bint run=False):
    # keys assembled here from the shapes; another shape: the twin's loop
    if msg_shape.suffix != "u32" or ms_shape.suffix != "u32.u64.u32":
        from . import emailrec_py
        return emailrec_py.apply_keywords(msg_cur, ms_cur, msg_shape, ms_shape, eids, add,
                                          remove, replace, seen, unchanged_since, alloc_ms,
                                          want_records, made, run)
    cdef bytes mpre = bytes(msg_shape.prefix), xpre = bytes(ms_shape.prefix)
    cdef ea_cursor *mcur
    cdef ea_cursor *xcur
    if _direct == 0:
        _direct_init()
    if _direct == 1:
        mcur = _lmdb_cursor(msg_cur)
        xcur = _lmdb_cursor(ms_cur) if mcur != NULL else NULL
        if xcur != NULL and xcur.trans == mcur.trans:
            got = _apply_direct(mcur, xcur, mpre, xpre, eids, add, remove, replace, seen,
                                unchanged_since, alloc_ms, want_records, made, run)
            if got is not None:
                return got
    cdef Py_ssize_t mpl = PyBytes_GET_SIZE(mpre), xpl = PyBytes_GET_SIZE(xpre)
    # the old index keys are deleted through one reused buffer
    cdef bytearray dbuf = bytearray(xpl + 16)
    cdef unsigned char *dw = <unsigned char *>(<char *>dbuf)
    memcpy(dw, PyBytes_AS_STRING(xpre), xpl)
    get = msg_cur.get
    find = ms_cur.set_key
    delete = ms_cur.delete
    cdef list items = [], item_eids = [], out_items = [], changed = []
    cdef dict pos = None          # eid -> index in items, once an eid comes twice
    cdef _SeenDeltas deltas = _SeenDeltas()
    cdef _KwRequest req = _KwRequest(add, remove, replace, seen, unchanged_since, want_records,
                                     alloc_ms)
    cdef dict recs = req.recs
    cdef bint again
    cdef uint64_t ms, old_ms, e, last_eid = 0
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t n, nmem, mem_end, i, j
    cdef tuple kc, ent
    cdef bytes record, key
    cdef unsigned char *w
    cdef long delta
    cdef uint64_t mbx, uid
    for eid in eids:
        e = <uint64_t>eid
        if e > 0xFFFFFFFF:
            raise OverflowError("email id out of range")    # (the twin: struct.error)
        j = -1
        again = e <= last_eid
        if again:
            if pos is None:
                pos = {item_eids[k]: k for k in range(len(item_eids))}
            j_obj = pos.get(eid)
            if j_obj is not None:
                j = <Py_ssize_t>j_obj
        else:
            last_eid = e
        if j >= 0:
            ent = <tuple>items[j]
            key = <bytes>ent[0]
            data = ent[1]
        else:
            key = PyBytes_FromStringAndSize(NULL, mpl + 4)
            w = <unsigned char *>PyBytes_AS_STRING(key)
            memcpy(w, PyBytes_AS_STRING(mpre), mpl)
            _put_be(w + mpl, e, 4)
            data = get(key)
            if data is None:
                continue
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char *>view.buf
            n = view.len
            kc_obj = req.change(eid, p, n, &old_ms, &mem_end, &nmem)
            if kc_obj is None:
                continue
            ms = req.modseq()
            kc = <tuple>kc_obj
            delta = kc[2]
            record = _new_record(p, mem_end, kc, ms)
            for i in range(nmem):
                mbx = _be(p + HEAD + i * MEMBER, 4)
                uid = _be(p + HEAD + i * MEMBER + 4, 4)
                deltas.add(mbx, delta)
                _ms_suffix(dw + xpl, mbx, old_ms, uid)
                if find(dbuf):
                    delete()
                out_items.append((_key3(xpre, mbx, ms, uid), b""))
        finally:
            PyBuffer_Release(&view)
        if j >= 0:
            items[j] = (key, record)
        else:
            items.append((key, record))
            item_eids.append(eid)
            if pos is not None:
                pos[eid] = len(items) - 1
        changed.append(eid)
        if want_records:
            recs[eid] = record
    if changed:
        ms_cur.putmulti(out_items)
        msg_cur.putmulti(items)
    out = RecordRun.of(recs) if run and recs is not None else recs
    if made is not None:
        made(out)
    return changed, req.conflicts, deltas.done(), out


def delete_keys(cur, keys_):
    """See ``emailrec_py.delete_keys``: with py-lmdb 3.0.0, LMDB's own cursor
    calls (MDB_SET, then del), the GIL held; else py-lmdb's methods."""
    cdef list out = []
    cdef ea_cursor *c = NULL
    cdef ea_val k, d
    cdef int rc
    cdef bytes kb
    if _direct == 0:
        _direct_init()
    if _direct == 1:
        c = _lmdb_cursor(cur)
    if c == NULL:
        find, delete = cur.set_key, cur.delete
        for key in keys_:
            if find(key) and delete():
                out.append(key)
        return out
    try:
        for key in keys_:
            kb = <bytes?>key
            k.mv_size = <size_t>PyBytes_GET_SIZE(kb)
            k.mv_data = <void *>PyBytes_AS_STRING(kb)
            rc = _c_get(c.curs, &k, &d, MDB_SET)
            if rc == MDB_NOTFOUND:
                continue
            if rc:
                _lmdb_raise("mdb_cursor_get", rc)
            rc = _c_del(c.curs, 0)
            if rc:
                _lmdb_raise("mdb_cursor_del", rc)
            out.append(kb)
    finally:
        # py-lmdb refreshes a cursor's cached key and value when its
        # transaction's mutation count moved: these deletes were not its own
        c.trans.mutations += 1
    return out


cdef inline bytes _key1(bytes prefix, uint64_t a):
    """PREFIX + a u32, big-endian (a ``uid`` or ``msg`` key)."""
    cdef Py_ssize_t pl = PyBytes_GET_SIZE(prefix)
    cdef bytes k = PyBytes_FromStringAndSize(NULL, pl + 4)
    cdef unsigned char *w = <unsigned char *>PyBytes_AS_STRING(k)
    memcpy(w, PyBytes_AS_STRING(prefix), pl)
    _put_be(w + pl, a, 4)
    return k


cdef bint _has_kw(const unsigned char *p, Py_ssize_t n, bytes kw):
    """The keyword bytes P[:N] ("\\0"-separated) hold KW."""
    cdef Py_ssize_t kl = PyBytes_GET_SIZE(kw), a = 0, e
    cdef const char *k = PyBytes_AS_STRING(kw)
    while True:
        e = a
        while e < n and p[e] != 0:
            e += 1
        if e - a == kl and memcmp(p + a, k, kl) == 0:
            return True
        if e >= n:
            return False
        a = e + 1


cdef Py_ssize_t _member_at(const unsigned char *p, Py_ssize_t n, long mbx, Py_ssize_t *nkw,
                           Py_ssize_t *nmem, Py_ssize_t *mem_end) except -1:
    """Which membership of the record at P (N bytes) is mailbox MBX's
    (*NKW, *NMEM, *MEM_END as _members_end sets them); a short record or
    another version (ValueError) or no such membership (NotFound) raises,
    as decode_email and _remove_member did."""
    cdef Py_ssize_t i
    if n < HEAD:
        raise ValueError("email record too short")
    if p[OFF_VERSION] != VERSION:
        raise ValueError(f"unknown email record version {p[OFF_VERSION]}")
    mem_end[0] = _members_end(p, n, nkw, nmem)
    for i in range(nmem[0]):
        if <long>_be(p + HEAD + i * MEMBER, 4) == mbx:
            return i
    raise NotFound("message not in mailbox")


cdef bytes _without_member(const unsigned char *p, Py_ssize_t mem_end, Py_ssize_t nmem,
                           Py_ssize_t at, Py_ssize_t tail_n, uint64_t ms):
    """The record at P without its membership AT, last_ms MS (TAIL_N: its
    keyword bytes)."""
    cdef bytes record = PyBytes_FromStringAndSize(NULL, mem_end - MEMBER + tail_n)
    cdef unsigned char *w = <unsigned char *>PyBytes_AS_STRING(record)
    memcpy(w, p, HEAD + at * MEMBER)
    memcpy(w + HEAD + at * MEMBER, p + HEAD + (at + 1) * MEMBER, (nmem - at - 1) * MEMBER)
    memcpy(w + mem_end - MEMBER, p + mem_end, tail_n)
    _put_be(w + OFF_MS, ms, 8)
    _put_be(w + OFF_NMEM, <uint64_t>(nmem - 1), 2)
    return record


def expunge_many(uid_get, msg_get, uid_shape, msg_shape, ms_shape, long mbx, uids,
                 str seen, alloc_ms):
    """See ``emailrec_py.expunge_many``."""
    if uid_shape.suffix != "u32" or msg_shape.suffix != "u32" or \
            ms_shape.suffix != "u32.u64.u32":
        raise ValueError("expunge_many: unexpected key shapes")
    cdef bytes upre = uid_shape.prefix, mpre = msg_shape.prefix, xpre = ms_shape.prefix
    cdef list done = [], uid_keys = [], gone = [], out_items = [], new = [], updated = []
    cdef list destroy = []
    cdef dict others = {}
    cdef uint64_t size = 0, unseen = 0, ms = 0, old_ms
    cdef bint have_ms = False
    cdef bytes seen_b = seen.encode("utf-8")
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t n, nmem, nkw, mem_end, i, at, tail_n
    cdef uint64_t eid, m, u
    cdef bytes k, mkey, record
    for uid in uids:
        k = _key1(upre, <uint64_t>uid)
        v = uid_get(k)
        if v is None:
            continue
        PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
        try:
            if view.len < 4:
                raise ValueError("uid row too short")
            eid = _be(<const unsigned char *>view.buf, 4)
        finally:
            PyBuffer_Release(&view)
        mkey = _key1(mpre, eid)
        data = msg_get(mkey)
        if data is None:
            raise ValueError(f"email {eid} (uid {uid}) has no record")
        if not have_ms:
            ms = alloc_ms()
            have_ms = True
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = <const unsigned char *>view.buf
            n = view.len
            at = _member_at(p, n, mbx, &nkw, &nmem, &mem_end)
            old_ms = _be(p + OFF_MS, 8)
            tail_n = n - mem_end if nkw else 0
            done.append(uid)
            uid_keys.append(k)
            gone.append(_key3(xpre, <uint64_t>mbx, old_ms, _be(p + HEAD + at * MEMBER + 4, 4)))
            size += _be(p + OFF_SIZE, 4)
            if not _has_kw(p + mem_end, tail_n, seen_b):
                unseen += 1
            if nmem == 1:
                destroy.append((eid, PyBytes_FromStringAndSize(<const char *>p, n)))
                continue
            for i in range(nmem):
                if i == at:
                    continue
                m = _be(p + HEAD + i * MEMBER, 4)
                u = _be(p + HEAD + i * MEMBER + 4, 4)
                others.setdefault(m, None)
                gone.append(_key3(xpre, m, old_ms, u))
                out_items.append((_key3(xpre, m, ms, u), b""))
            record = _without_member(p, mem_end, nmem, at, tail_n, ms)
        finally:
            PyBuffer_Release(&view)
        new.append((mkey, record))
        updated.append(eid)
    return done, uid_keys, gone, out_items, new, updated, destroy, size, unseen, others


def apply_expunge(uid_cur, msg_cur, ms_cur, uid_shape, msg_shape, ms_shape, long mbx, uids,
                  str seen, alloc_ms):
    """See ``emailrec_py.apply_expunge``.  With py-lmdb 3.0.0: LMDB's own
    cursor calls, the GIL held, each UID's writes made as it is met (no key,
    list or tuple built per message); else the twin's steps on this
    module's expunge_many."""
    if uid_shape.suffix != "u32" or msg_shape.suffix != "u32" or \
            ms_shape.suffix != "u32.u64.u32":
        raise ValueError("apply_expunge: unexpected key shapes")
    cdef ea_cursor *uc = NULL
    cdef ea_cursor *mc = NULL
    cdef ea_cursor *xc = NULL
    if _direct == 0:
        _direct_init()
    if _direct == 1:
        uc = _lmdb_cursor(uid_cur)
        mc = _lmdb_cursor(msg_cur) if uc != NULL else NULL
        xc = _lmdb_cursor(ms_cur) if mc != NULL else NULL
        if xc != NULL and uc.trans == mc.trans and xc.trans == mc.trans:
            got = _expunge_direct(uc, mc, xc, uid_shape.prefix, msg_shape.prefix,
                                  ms_shape.prefix, mbx, uids, seen, alloc_ms)
            if got is not None:
                return got
    from . import emailrec_py
    return emailrec_py.write_expunge(
        expunge_many(uid_cur.get, msg_cur.get, uid_shape, msg_shape, ms_shape, mbx, uids,
                     seen, alloc_ms), uid_cur, msg_cur, ms_cur, delete_keys)


cdef int _del_at(void *c, ea_val *k) except -1:
    """Delete key K through cursor C if it is there."""
    cdef ea_val d
    cdef int rc = _c_get(c, k, &d, MDB_SET)
    if rc == MDB_NOTFOUND:
        return 0
    if rc:
        _lmdb_raise("mdb_cursor_get", rc)
    rc = _c_del(c, 0)
    if rc:
        _lmdb_raise("mdb_cursor_del", rc)
    return 0


cdef object _expunge_direct(ea_cursor *ucur, ea_cursor *mcur, ea_cursor *xcur, bytes upre,
                            bytes mpre, bytes xpre, long mbx, uids, str seen, alloc_ms):
    """apply_expunge on the LMDB cursors of UCUR (uid), MCUR (msg) and XCUR
    (mbx.ms).  Per UID: the record read and its new bytes made before any
    write (the page it was read from is not looked at again), then the
    record put, the uid row and the old index keys deleted, the new index
    keys put.  The same final tables as the twin's (the keys it deletes
    and puts differ: the new modseq is above every old one)."""
    cdef void *uc = ucur.curs
    cdef void *mc = mcur.curs
    cdef void *xc = xcur.curs
    cdef void *pc = NULL            # puts the new index keys (the deletes keep xc in place)
    cdef Py_ssize_t upl = PyBytes_GET_SIZE(upre), mpl = PyBytes_GET_SIZE(mpre)
    cdef Py_ssize_t xpl = PyBytes_GET_SIZE(xpre)
    if upl + 4 > 64 or mpl + 4 > 64 or xpl + 16 > 64:
        return None
    cdef unsigned char ubuf[64]
    cdef unsigned char mbuf[64]
    cdef unsigned char xbuf[64]
    cdef unsigned char nothing = 0
    cdef ea_val uk, mk, xk, d, rv, empty
    _keybuf(&uk, ubuf, upre, 4)
    _keybuf(&mk, mbuf, mpre, 4)
    _keybuf(&xk, xbuf, xpre, 16)
    empty.mv_size = 0
    empty.mv_data = &nothing
    cdef list done = [], updated = [], destroy = []
    cdef dict others = {}
    cdef uint64_t size = 0, unseen = 0, ms = 0, old_ms, eid, m, u, at_uid, last_other = 0
    cdef bint have_ms = False, have_other = False
    cdef bytes seen_b = seen.encode("utf-8")
    cdef const unsigned char *p
    cdef const unsigned char *r
    cdef Py_ssize_t n, nmem, nkw, mem_end, i, at, tail_n
    cdef bytes record
    cdef int rc
    try:
        for uid in uids:
            _put_be(ubuf + upl, <uint64_t>uid, 4)
            rc = _c_get(uc, &uk, &d, MDB_SET)
            if rc == MDB_NOTFOUND:
                continue
            if rc:
                _lmdb_raise("mdb_cursor_get", rc)
            if d.mv_size < 4:
                raise ValueError("uid row too short")
            eid = _be(<const unsigned char *>d.mv_data, 4)
            if not have_ms:
                ms = alloc_ms()        # (may write: nothing read is held across it)
                have_ms = True
            _put_be(mbuf + mpl, eid, 4)
            rc = _c_get(mc, &mk, &d, MDB_SET)
            if rc == MDB_NOTFOUND:
                raise ValueError(f"email {eid} (uid {uid}) has no record")
            if rc:
                _lmdb_raise("mdb_cursor_get", rc)
            p = <const unsigned char *>d.mv_data
            n = <Py_ssize_t>d.mv_size
            at = _member_at(p, n, mbx, &nkw, &nmem, &mem_end)
            old_ms = _be(p + OFF_MS, 8)
            at_uid = _be(p + HEAD + at * MEMBER + 4, 4)
            tail_n = n - mem_end if nkw else 0
            size += _be(p + OFF_SIZE, 4)
            if not _has_kw(p + mem_end, tail_n, seen_b):
                unseen += 1
            done.append(uid)
            if nmem == 1:
                destroy.append((eid, PyBytes_FromStringAndSize(<const char *>p, n)))
                record = None
            else:
                record = _without_member(p, mem_end, nmem, at, tail_n, ms)
                # (P is not read after this: the other memberships come from RECORD)
                rv.mv_size = <size_t>PyBytes_GET_SIZE(record)
                rv.mv_data = PyBytes_AS_STRING(record)
                rc = _c_put(mc, &mk, &rv, MDB_CURRENT)
                if rc:
                    _lmdb_raise("mdb_cursor_put", rc)
                updated.append(eid)
            _del_at(uc, &uk)
            _ms_suffix(xbuf + xpl, <uint64_t>mbx, old_ms, at_uid)
            _del_at(xc, &xk)
            if record is None:
                continue
            r = <const unsigned char *>PyBytes_AS_STRING(record)
            if pc == NULL:
                rc = _c_open(_c_txn(xc), _c_dbi(xc), &pc)
                if rc:
                    pc = NULL
                    _lmdb_raise("mdb_cursor_open", rc)
            for i in range(nmem - 1):
                m = _be(r + HEAD + i * MEMBER, 4)
                u = _be(r + HEAD + i * MEMBER + 4, 4)
                if not have_other or m != last_other:
                    others.setdefault(m, None)
                    last_other = m
                    have_other = True
                _ms_suffix(xbuf + xpl, m, old_ms, u)
                _del_at(xc, &xk)
                _ms_suffix(xbuf + xpl, m, ms, u)
                rc = _c_put(pc, &xk, &empty, 0)
                if rc:
                    _lmdb_raise("mdb_cursor_put", rc)
    finally:
        if pc != NULL:
            _c_close(pc)
        # py-lmdb refreshes a cursor's cached key and value when its
        # transaction's mutation count moved: the writes above were not its own
        mcur.trans.mutations += 1
    return done, updated, destroy, size, unseen, others


def put_run(cur, prefix, suffixes, Py_ssize_t width, value):
    """See ``emailrec_py.put_run``: with py-lmdb 3.0.0, LMDB's own cursor
    put on one reused key buffer (no key object per row)."""
    cdef ea_cursor *c = NULL
    cdef bytes pre = bytes(prefix), suf = bytes(suffixes), val = bytes(value)
    cdef Py_ssize_t pl = PyBytes_GET_SIZE(pre), n, j
    cdef unsigned char kbuf[96]
    cdef ea_val k, v
    cdef int rc
    if width <= 0:
        raise ValueError("put_run: width must be positive")
    n = PyBytes_GET_SIZE(suf) // width
    if _direct == 0:
        _direct_init()
    if _direct == 1 and pl + width <= 96:
        c = _lmdb_cursor(cur)
    if c == NULL:
        from . import emailrec_py
        return emailrec_py.put_run(cur, pre, suf, width, val)
    memcpy(kbuf, PyBytes_AS_STRING(pre), pl)
    k.mv_size = <size_t>(pl + width)
    k.mv_data = kbuf
    v.mv_size = <size_t>PyBytes_GET_SIZE(val)
    v.mv_data = PyBytes_AS_STRING(val)
    try:
        for j in range(n):
            memcpy(kbuf + pl, PyBytes_AS_STRING(suf) + j * width, width)
            rc = _c_put(c.curs, &k, &v, 0)
            if rc:
                _lmdb_raise("mdb_cursor_put", rc)
    finally:
        # py-lmdb refreshes a cursor's cached key and value when its
        # transaction's mutation count moved: these puts were not its own
        c.trans.mutations += 1
    return n


def id_runs(ids):
    cdef list srt = sorted(ids)
    cdef list singles = [], runs = []
    cdef Py_ssize_t i = 0, j, n = len(srt)
    cdef unsigned long long a, b
    if n and srt[n - 1] - srt[0] == n - 1:        # one run (or one id)
        return ([srt[0]], []) if n == 1 else ([], [(srt[0], srt[n - 1])])
    while i < n:
        j = i
        b = srt[i]
        while j + 1 < n:
            a = srt[j + 1]
            if a != b + 1:
                break
            b = a
            j += 1
        if j > i:
            runs.append((srt[i], srt[j]))
        else:
            singles.append(srt[i])
        i = j + 1
    return singles, runs


def encode_ops(list ops):
    cdef Py_ssize_t total = 0, tl, kl, vl
    cdef bytes out, t, key, value
    cdef unsigned char *w
    cdef tuple op
    cdef list keys = [], values = [], tables = []
    # a bulk write names a handful of tables over 10,000s of ops: each name
    # is encoded once
    cdef dict names = {}
    last_name = None
    t = None
    for o in ops:
        op = o if type(o) is tuple else tuple(o)
        name = op[1]
        if name is not last_name:
            t = names.get(name)
            if t is None:
                t = names[name] = (<str>name).encode()
            last_name = name
        key = op[2] if type(op[2]) is bytes else bytes(op[2])
        value = op[3] if type(op[3]) is bytes else bytes(op[3])
        tables.append(t)
        keys.append(key)
        values.append(value)
        total += 8 + PyBytes_GET_SIZE(t) + PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value)
    out = PyBytes_FromStringAndSize(NULL, total)
    w = <unsigned char *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t j, n = len(ops)
    for j in range(n):
        op = ops[j] if type(ops[j]) is tuple else tuple(ops[j])
        t = <bytes>tables[j]
        key = <bytes>keys[j]
        value = <bytes>values[j]
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
