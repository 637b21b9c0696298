# cython: language_level=3
# LMDB called directly: shared by the compiled modules that read or write many
# records per call (``include "lmdb_direct.pxi"``; each module finds the
# library once for itself).
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
