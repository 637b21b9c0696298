# cython: language_level=3
# LMDB called directly: shared by the compiled modules that read or write many
# records per call (``include "lmdb_direct.pxi"``: search_c, emailrec_c,
# fetchfmt_c; each module finds the library once for itself).
#
# py-lmdb releases and retakes the GIL around every LMDB call (and counts the
# call on its environment): a bulk STORE on 10,000 messages made ~70,000 such
# calls through Python objects, a SEARCH over 10,000 records 10,000 gets.  With
# py-lmdb 3.0.0, whose objects' layout is known here, a module takes the LMDB
# cursors out of the py-lmdb Cursor objects it is given and calls LMDB's own
# cursor functions (exported by py-lmdb's module as mdb09_*) with the GIL
# held: the same operations on the same transaction.  Everything is checked
# before the first use (the library's version, the objects' sizes, the
# engine, each cursor's transaction and database as LMDB itself reports
# them); anything else takes the py-lmdb path.
from cpython.object cimport PyObject, PyTypeObject

import os as _os

cdef extern from *:
    """
    #include <dlfcn.h>
    typedef struct { size_t mv_size; void *mv_data; } ea_val;
    typedef int (*ea_cursor_get_t)(void *, ea_val *, ea_val *, int);
    typedef int (*ea_cursor_put_t)(void *, ea_val *, ea_val *, unsigned int);
    typedef int (*ea_cursor_del_t)(void *, unsigned int);
    typedef int (*ea_cursor_open_t)(void *, unsigned int, void **);
    typedef void (*ea_cursor_close_t)(void *);
    typedef void *(*ea_cursor_txn_t)(void *);
    typedef unsigned int (*ea_cursor_dbi_t)(void *);
    /* py-lmdb 3.0.0's Transaction and Cursor objects, the fields read here
       and those before them */
    typedef struct {
        PyObject_HEAD
        void *links[4];
        int valid;
        PyObject *weaklist;
        void *env;
        void *parent;
        const void *libv;
        void *txn;
        int flags;
        void *db;
        int mutations;
    } ea_trans;
    typedef struct {
        PyObject_HEAD
        void *links[4];
        int valid;
        ea_trans *trans;
        const void *libv;
        int positioned;
        void *curs;
        ea_val key;
        ea_val val;
        int last_mutation;
        unsigned int dbi_flags;
        unsigned int dbi;
    } ea_cursor;
    """
    ctypedef struct ea_val:
        size_t mv_size
        void *mv_data
    ctypedef int (*ea_cursor_get_t)(void *, ea_val *, ea_val *, int)
    ctypedef int (*ea_cursor_put_t)(void *, ea_val *, ea_val *, unsigned int)
    ctypedef int (*ea_cursor_del_t)(void *, unsigned int)
    ctypedef int (*ea_cursor_open_t)(void *, unsigned int, void **)
    ctypedef void (*ea_cursor_close_t)(void *)
    ctypedef void *(*ea_cursor_txn_t)(void *)
    ctypedef unsigned int (*ea_cursor_dbi_t)(void *)
    ctypedef struct ea_trans:
        int valid
        const void *libv
        void *txn
        int mutations
    ctypedef struct ea_cursor:
        int valid
        ea_trans *trans
        const void *libv
        void *curs
        unsigned int dbi
    void *dlopen(const char *, int)
    void *dlsym(void *, const char *)
    int RTLD_NOW, RTLD_NOLOAD

cdef enum:
    MDB_SET = 15
    MDB_CURRENT = 0x40
    MDB_NOTFOUND = -30798

cdef ea_cursor_get_t _c_get = NULL
cdef ea_cursor_put_t _c_put = NULL
cdef ea_cursor_del_t _c_del = NULL
cdef ea_cursor_open_t _c_open = NULL
cdef ea_cursor_close_t _c_close = NULL
cdef ea_cursor_txn_t _c_txn = NULL
cdef ea_cursor_dbi_t _c_dbi = NULL
cdef const void *_v09 = NULL
cdef PyTypeObject *_cursor_type = NULL
cdef PyTypeObject *_trans_type = NULL
cdef int _direct = 0           # 1: usable, -1: not, 0: not looked at yet
_lmdb_mod = None


cdef int _direct_init() except -1:
    """Find py-lmdb's LMDB (once); -> 1 if apply_keywords may call it directly, else 0."""
    global _c_get, _c_put, _c_del, _c_open, _c_close, _c_txn, _c_dbi, _v09, _direct
    global _cursor_type, _trans_type, _lmdb_mod
    _direct = -1
    if _os.environ.get("MAILACCESS_LMDB_DIRECT", "1") == "0":
        return 0
    try:
        import lmdb
        import lmdb.cpython as lc
    except ImportError:
        return 0
    if lmdb.__version__ != "3.0.0" or lmdb.Cursor is not lc.Cursor \
            or lmdb.Cursor.__basicsize__ != sizeof(ea_cursor) \
            or lmdb.Transaction.__basicsize__ != sizeof(ea_trans):
        return 0
    h = dlopen(_os.fsencode(lc.__file__), RTLD_NOW | RTLD_NOLOAD)
    if h == NULL:
        return 0
    _v09 = dlsym(h, b"lmdb_api_v09")
    _c_get = <ea_cursor_get_t>dlsym(h, b"mdb09_cursor_get")
    _c_put = <ea_cursor_put_t>dlsym(h, b"mdb09_cursor_put")
    _c_del = <ea_cursor_del_t>dlsym(h, b"mdb09_cursor_del")
    _c_open = <ea_cursor_open_t>dlsym(h, b"mdb09_cursor_open")
    _c_close = <ea_cursor_close_t>dlsym(h, b"mdb09_cursor_close")
    _c_txn = <ea_cursor_txn_t>dlsym(h, b"mdb09_cursor_txn")
    _c_dbi = <ea_cursor_dbi_t>dlsym(h, b"mdb09_cursor_dbi")
    if _v09 == NULL or _c_get == NULL or _c_put == NULL or _c_del == NULL or _c_open == NULL \
            or _c_close == NULL or _c_txn == NULL or _c_dbi == NULL:
        return 0
    _cursor_type = <PyTypeObject *>lmdb.Cursor
    _trans_type = <PyTypeObject *>lmdb.Transaction
    _lmdb_mod = lmdb
    _direct = 1
    return 1


def lmdb_direct(enable=None) -> bool:
    """Whether this module calls LMDB directly; ENABLE False turns it off
    (tests: the py-lmdb path of this module), True looks again."""
    global _direct
    if enable is not None:
        _direct = 0 if enable else -1
    if _direct == 0:
        _direct_init()
    return _direct == 1


cdef ea_cursor *_lmdb_cursor(object cur):
    """CUR's LMDB cursor, checked, or NULL: CUR is not a live py-lmdb 3.0.0
    cursor of the 0.9 engine (the caller then takes the py-lmdb path)."""
    cdef PyObject *o = <PyObject *>cur
    if o.ob_type != _cursor_type:
        return NULL
    cdef ea_cursor *c = <ea_cursor *>o
    if not c.valid or c.libv != _v09 or c.curs == NULL or c.trans == NULL:
        return NULL
    cdef ea_trans *t = c.trans
    if (<PyObject *>t).ob_type != _trans_type or not t.valid or t.libv != _v09 \
            or t.txn == NULL or _c_txn(c.curs) != t.txn or _c_dbi(c.curs) != c.dbi:
        return NULL
    return c


cdef int _lmdb_raise(str what, int rc) except -1:
    lm = _lmdb_mod
    cls = {-30799: lm.KeyExistsError, -30797: lm.PageNotFoundError,
           -30796: lm.CorruptedError, -30795: lm.PanicError, -30792: lm.MapFullError,
           -30791: lm.DbsFullError, -30788: lm.TxnFullError, -30787: lm.CursorFullError,
           -30786: lm.PageFullError, -30785: lm.MapResizedError,
           -30782: lm.BadTxnError, -30781: lm.BadValsizeError,
           -30780: lm.BadDbiError}.get(rc, lm.Error)
    raise cls(f"{what}: LMDB error {rc}")


# --- reading one table by key, the values in place (fetchfmt_c) ---------------------
#
# An addition: the functions above behave as they did.  A module reading
# many values of one table of a store View (its ``Reader``: store/view.py)
# opens a TableReads on it: LMDB called directly on a cursor of the
# Reader's own transaction when it can (the value seen in place: no
# py-lmdb buffer, no GIL round trip, no preload of every page of a big
# value), else the Reader's get with the key assembled from its shape,
# else the Reader called.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memcmp as _td_memcmp, memcpy as _td_memcpy

cdef enum:
    TD_NEXT = 8             # MDB_NEXT
    TD_KEY_MAX = 96         # the longest key read directly (prefix + suffix)
    TD_DIRECT = 2           # TableReads.mode: LMDB called directly
    TD_GET = 1              # ... the Reader's get with the key assembled here
    TD_CALL = 0             # ... the Reader called with the caller's object


cdef class TableReads:
    """The values of one table by key suffix (SUFFIX_LEN bytes after the
    Reader's shape prefix), for as long as the Reader's transaction lives;
    each value valid until the next read (the in-place ones as long as the
    transaction, when it writes nothing meanwhile).  STEP: the keys come
    mostly in table order (a mailbox's email ids): the entry after the last
    one found is tried before a search."""
    cdef ea_cursor *cur
    cdef object pycur, get, db, fn
    cdef int mode
    cdef bint step, positioned, held
    cdef unsigned char kbuf[TD_KEY_MAX]
    cdef Py_ssize_t pn, sn
    cdef Py_buffer view

    def __cinit__(self):
        self.cur = NULL
        self.mode = TD_CALL
        self.held = self.positioned = self.step = False

    cdef int open(self, reader, str suffix, Py_ssize_t suffix_len, bint step) except -1:
        """Read READER (a store Reader; any callable works: mode TD_CALL)
        whose keys end in SUFFIX_LEN bytes of kind SUFFIX (keys.KeyShape)."""
        self.fn = reader
        self.sn = suffix_len
        self.step = step
        shape = getattr(reader, "shape", None)
        if shape is None or shape.suffix != suffix or type(shape.prefix) is not bytes \
                or PyBytes_GET_SIZE(shape.prefix) + suffix_len > TD_KEY_MAX:
            return 0
        self.pn = PyBytes_GET_SIZE(shape.prefix)
        _td_memcpy(self.kbuf, PyBytes_AS_STRING(shape.prefix), self.pn)
        self.get, self.db, self.mode = reader.get, reader.db, TD_GET
        if _direct == 0:
            _direct_init()
        if _direct != 1:
            return 0
        # the Reader's get is its transaction's (View: txn.get): a cursor of
        # that very transaction, checked by _lmdb_cursor
        txn = getattr(self.get, "__self__", None)
        if type(txn) is not _lmdb_mod.Transaction:
            return 0
        self.pycur = txn.cursor(db=self.db)
        self.cur = _lmdb_cursor(self.pycur)
        if self.cur != NULL:
            self.mode = TD_DIRECT
        return 0

    cdef inline void drop(self) noexcept:
        """Let go of the value last read (a Python object's buffer)."""
        if self.held:
            PyBuffer_Release(&self.view)
            self.held = False

    cdef int close(self) except -1:
        self.drop()
        self.cur = NULL
        if self.pycur is not None:
            self.pycur.close()
            self.pycur = None
        return 0

    def __dealloc__(self):
        self.drop()

    cdef int read(self, const unsigned char *suffix, object x, const unsigned char **p,
                  Py_ssize_t *n) except -1:
        """The value under the key ending in SUFFIX (modes TD_DIRECT and
        TD_GET) or of X (TD_CALL: the Reader called with X) into P/N -> 1, or
        0 when there is none."""
        cdef ea_val k, d
        cdef int rc
        self.drop()
        if self.mode == TD_DIRECT:
            _td_memcpy(self.kbuf + self.pn, suffix, self.sn)
            if self.step and self.positioned:
                rc = _c_get(self.cur.curs, &k, &d, TD_NEXT)
                if rc == 0 and <Py_ssize_t>k.mv_size == self.pn + self.sn \
                        and _td_memcmp(k.mv_data, self.kbuf, k.mv_size) == 0:
                    p[0] = <const unsigned char *>d.mv_data
                    n[0] = <Py_ssize_t>d.mv_size
                    return 1
                if rc and rc != MDB_NOTFOUND:
                    _lmdb_raise("mdb_cursor_get", rc)
            k.mv_size = self.pn + self.sn
            k.mv_data = self.kbuf
            rc = _c_get(self.cur.curs, &k, &d, MDB_SET)
            self.positioned = rc == 0
            if rc == MDB_NOTFOUND:
                return 0
            if rc:
                _lmdb_raise("mdb_cursor_get", rc)
            p[0] = <const unsigned char *>d.mv_data
            n[0] = <Py_ssize_t>d.mv_size
            return 1
        if self.mode == TD_GET:
            _td_memcpy(self.kbuf + self.pn, suffix, self.sn)
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


# --- looking values up a batch ahead (fetchfmt_c) ------------------------------------
#
# A value bigger than a page sits on overflow pages away from its B-tree
# leaf: reading one is a cache (and TLB) miss on its first page, and LMDB
# takes it inside the read, one value after the other.  TableAhead splits a
# read in two: ``seek`` runs LMDB's search without reading the value (a
# cursor op with no data wanted), then asks the CPU to fetch the start of
# the value's first page; ``value``, later, is LMDB's own read on the
# positioned cursor, by then mostly from cache.  The page's address is only
# a hint computed from LMDB 0.9's leaf node (lo, hi, flags, ksize, the key,
# then the first overflow page's number) and the map's start as the first
# big value read showed it: a prefetch never faults, and a wrong hint costs
# time, never a wrong answer.

from libc.stdint cimport uintptr_t as _td_uintptr_t

cdef extern from *:
    """
    static inline void ea_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
    """
    void ea_prefetch(const void *p) noexcept nogil

cdef enum:
    TD_GET_CURRENT = 4      # MDB_GET_CURRENT
    TD_SET_KEY = 16         # MDB_SET_KEY
    TD_AHEAD = 64           # the most values a TableAhead holds looked up at once
    TD_PAGEHDR = 16         # LMDB 0.9's page header: a value on overflow pages starts after it
    TD_BIGDATA = 1          # LMDB 0.9's F_BIGDATA: the node's value is on overflow pages


cdef class TableAhead:
    """Up to TD_AHEAD slots (``open``'s N), each a cursor of the transaction
    and table of a TableReads in mode TD_DIRECT: ``seek(slot, suffix)`` looks the key up
    (-> 0, MDB_NOTFOUND or LMDB's error code, nothing raised) and prefetches
    the value's start; ``value(slot, p, n)`` reads what the slot found (-> 0
    or an error code), in place, valid as long as the transaction (when it
    writes nothing meanwhile)."""
    cdef void *curs[TD_AHEAD]
    cdef int n_open
    cdef unsigned char kbuf[TD_KEY_MAX]
    cdef Py_ssize_t pn, sn
    cdef _td_uintptr_t base     # the map's start (0: no big value read yet)
    cdef size_t psize

    def __cinit__(self):
        self.n_open = 0
        self.base = 0

    cdef int open(self, TableReads src, int n) except -1:
        """N slots (at most TD_AHEAD) on SRC's transaction and table."""
        cdef int rc
        if n > TD_AHEAD:
            n = TD_AHEAD
        if src.mode != TD_DIRECT:
            raise ValueError("TableAhead needs a TableReads calling LMDB directly")
        self.pn, self.sn = src.pn, src.sn
        _td_memcpy(self.kbuf, src.kbuf, self.pn)
        self.psize = src.get.__self__.stat(src.db)["psize"]
        while self.n_open < n:
            rc = _c_open(_c_txn(src.cur.curs), _c_dbi(src.cur.curs), &self.curs[self.n_open])
            if rc:
                _lmdb_raise("mdb_cursor_open", rc)
            self.n_open += 1
        return 0

    cdef void close(self) noexcept:
        while self.n_open:
            self.n_open -= 1
            _c_close(self.curs[self.n_open])

    def __dealloc__(self):
        self.close()

    cdef inline _td_uintptr_t _page(self, const unsigned char *key, size_t ksize) noexcept:
        """The first overflow page's address the leaf node of KEY (in the
        page) names, or 0 when its value is in the node."""
        cdef unsigned short flags, nk
        cdef size_t pgno
        _td_memcpy(&flags, key - 4, 2)
        _td_memcpy(&nk, key - 2, 2)
        if not (flags & TD_BIGDATA) or nk != ksize:
            return 0
        _td_memcpy(&pgno, key + ksize, sizeof(size_t))
        return self.base + <_td_uintptr_t>pgno * self.psize

    cdef int seek(self, int slot, const unsigned char *suffix) noexcept:
        cdef ea_val k
        cdef _td_uintptr_t at
        cdef int rc
        _td_memcpy(self.kbuf + self.pn, suffix, self.sn)
        k.mv_size = self.pn + self.sn
        k.mv_data = self.kbuf
        rc = _c_get(self.curs[slot], &k, NULL, TD_SET_KEY)
        if rc == 0 and self.base:
            at = self._page(<const unsigned char *>k.mv_data, k.mv_size)
            if at:
                ea_prefetch(<const void *>at)
                ea_prefetch(<const void *>(at + 64))
        return rc

    cdef int value(self, int slot, const unsigned char **p, Py_ssize_t *n) noexcept:
        cdef ea_val k, d
        cdef _td_uintptr_t at
        cdef int rc = _c_get(self.curs[slot], &k, &d, TD_GET_CURRENT)
        if rc:
            return rc
        if not self.base:
            # the map's start, from where LMDB found this value (if big)
            self.base = 1   # (page 0 at address 0: a hint like any other)
            at = self._page(<const unsigned char *>k.mv_data, k.mv_size)
            self.base = <_td_uintptr_t>d.mv_data - TD_PAGEHDR - (at - 1) if at else 0
        p[0] = <const unsigned char *>d.mv_data
        n[0] = <Py_ssize_t>d.mv_size
        return 0


cdef enum:
    _DG_NEXT = 8           # MDB_NEXT
    _DG_SET_KEY = 16       # MDB_SET_KEY


cdef inline int _direct_get(ea_cursor *cur, const unsigned char *key, Py_ssize_t kn, bint seq,
                            bint *positioned, const unsigned char **p,
                            Py_ssize_t *n) except -1:
    """The value under KEY (kn bytes) through CUR (``_lmdb_cursor``) into
    P/N -> 1, or 0 when there is none; valid while the transaction lives.
    SEQ: the keys come mostly in table order, the entry after the last one
    found is tried first; POSITIONED: whether CUR is on the last key found
    (kept here)."""
    cdef ea_val k, d
    cdef int rc
    cdef Py_ssize_t i
    if seq and positioned[0]:
        rc = _c_get(cur.curs, &k, &d, _DG_NEXT)
        if rc == 0 and <Py_ssize_t>k.mv_size == kn:
            i = 0
            while i < kn and (<const unsigned char *>k.mv_data)[i] == key[i]:
                i += 1
            if i == kn:
                p[0] = <const unsigned char *>d.mv_data
                n[0] = <Py_ssize_t>d.mv_size
                return 1
        elif rc and rc != MDB_NOTFOUND:
            _lmdb_raise("mdb_cursor_get", rc)
    k.mv_size = kn
    k.mv_data = <void *>key
    rc = _c_get(cur.curs, &k, &d, _DG_SET_KEY)
    positioned[0] = rc == 0
    if rc == MDB_NOTFOUND:
        return 0
    if rc:
        _lmdb_raise("mdb_cursor_get", rc)
    p[0] = <const unsigned char *>d.mv_data
    n[0] = <Py_ssize_t>d.mv_size
    return 1
