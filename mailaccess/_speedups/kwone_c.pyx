# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The keyword change of one email in one call, compiled twin of ``kwone_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  With py-lmdb 3.0.0 (see lmdb_direct.pxi) the
gets, puts and the delete call LMDB's own ``mdb_get``/``mdb_put``/``mdb_del``
on the transaction's LMDB handle, with the GIL held, and the keys are built
in C; else everything goes through ``kwone_py``.  The mailbox record (JSON)
and the change summary are made by store/records.py's functions, the new
email record by ``emailrec``'s ``rewrite_keywords``, as in the twin.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from ..store import records
from ..store.records import EMAIL, MAILBOX
from ..store.redolog import DELETE, PUT
from . import load_py as _load_py, load as _load

_py = _load_py("kwone")
_emailrec = _load("emailrec")
_rewrite = _emailrec.rewrite_keywords
_decode_mailbox = records.decode_mailbox
_encode_mailbox = records.encode_mailbox
_encode_summary_of = records.encode_summary_of
_UPDATED = records.STATUS_CODES["updated"]

include "lmdb_direct.pxi"

cdef extern from *:
    """
    typedef int (*k1_get_t)(void *, unsigned int, ea_val *, ea_val *);
    typedef int (*k1_put_t)(void *, unsigned int, ea_val *, ea_val *, unsigned int);
    typedef int (*k1_del_t)(void *, unsigned int, ea_val *, ea_val *);
    """
    ctypedef int (*k1_get_t)(void *, unsigned int, ea_val *, ea_val *)
    ctypedef int (*k1_put_t)(void *, unsigned int, ea_val *, ea_val *, unsigned int)
    ctypedef int (*k1_del_t)(void *, unsigned int, ea_val *, ea_val *)

cdef k1_get_t _k_get = NULL
cdef k1_put_t _k_put = NULL
cdef k1_del_t _k_del = NULL
cdef int _k_ready = 0          # 1: mdb_get/put/del found, -1: not


cdef int _k_init() except -1:
    global _k_get, _k_put, _k_del, _k_ready
    _k_ready = -1
    if _direct == 0:
        _direct_init()
    if _direct != 1:
        return 0
    import lmdb.cpython as lc
    h = dlopen(_os.fsencode(lc.__file__), RTLD_NOW | RTLD_NOLOAD)
    if h == NULL:
        return 0
    _k_get = <k1_get_t>dlsym(h, b"mdb09_get")
    _k_put = <k1_put_t>dlsym(h, b"mdb09_put")
    _k_del = <k1_del_t>dlsym(h, b"mdb09_del")
    if _k_get == NULL or _k_put == NULL or _k_del == NULL:
        return 0
    _k_ready = 1
    return 1


cdef enum:
    NT = 7          # ctr, msg, mbx.ms, mbox, chg.id, chg.kind, chg


cdef class Tables:
    """A store's tables for ``write_one``: the twin's (the py-lmdb handles
    and the store's key builders), and the tables' LMDB numbers when LMDB is
    called directly."""
    cdef readonly object py
    cdef unsigned int dbi[NT]
    cdef readonly bint direct


def tables(txn, handles, keys):
    """As kwone_py.tables: -> a Tables (the numbers read from a cursor of
    each table in TXN, as LMDB itself reports them; direct only when the
    keys built here are KEYS's)."""
    cdef Tables t = Tables.__new__(Tables)
    cdef ea_cursor *c
    cdef int i
    handles = tuple(handles)
    t.py = _py.tables(txn, handles, keys)
    t.direct = False
    if len(handles) != NT:
        raise ValueError("kwone.tables: 7 tables")
    if _k_ready == 0:
        _k_init()
    if _k_ready != 1 or type(txn) is not _lmdb_mod.Transaction or not _same_keys(keys):
        return t
    for i in range(NT):
        cur = txn.cursor(db=handles[i])
        c = _lmdb_cursor(cur)
        if c == NULL:
            cur.close()
            return t
        t.dbi[i] = c.dbi
        cur.close()
    t.direct = True
    return t


cdef inline void _be(unsigned char *p, uint64_t v, int n) noexcept:
    cdef int i
    for i in range(n - 1, -1, -1):
        p[i] = v & 0xff
        v >>= 8


cdef class _Txn:
    """The transaction's LMDB handle, and its py-lmdb object's mutation
    count moved with every write (its cursors then look again)."""
    cdef ea_trans *t
    cdef void *txn
    cdef unsigned int *dbi

    cdef object get(self, int table, bytes key):
        """-> the value (a copy) or None."""
        cdef ea_val k, v
        k.mv_size = PyBytes_GET_SIZE(key)
        k.mv_data = PyBytes_AS_STRING(key)
        rc = _k_get(self.txn, self.dbi[table], &k, &v)
        if rc == MDB_NOTFOUND:
            return None
        if rc:
            _lmdb_raise("mdb_get", rc)
        return PyBytes_FromStringAndSize(<char *>v.mv_data, v.mv_size)

    cdef int put(self, int table, bytes key, bytes value) except -1:
        cdef ea_val k, v
        k.mv_size = PyBytes_GET_SIZE(key)
        k.mv_data = PyBytes_AS_STRING(key)
        v.mv_size = PyBytes_GET_SIZE(value)
        v.mv_data = PyBytes_AS_STRING(value)
        self.t.mutations += 1
        rc = _k_put(self.txn, self.dbi[table], &k, &v, 0)
        if rc:
            _lmdb_raise("mdb_put", rc)
        return 0

    cdef bint delete(self, int table, bytes key) except -1:
        cdef ea_val k
        k.mv_size = PyBytes_GET_SIZE(key)
        k.mv_data = PyBytes_AS_STRING(key)
        self.t.mutations += 1
        rc = _k_del(self.txn, self.dbi[table], &k, NULL)
        if rc == MDB_NOTFOUND:
            return False
        if rc:
            _lmdb_raise("mdb_del", rc)
        return True


cdef bytes _key(Py_ssize_t n, uint64_t a, int an, const char *mid, Py_ssize_t mn,
                uint64_t b, int bn, uint64_t c, int cn, uint64_t d, int dn):
    """A key of N bytes: A (AN bytes, big-endian), MID (MN bytes), then B,
    C, D (BN, CN, DN bytes; 0: absent)."""
    cdef uint64_t vals[3]
    cdef int lens[3]
    cdef int i
    if an + mn + bn + cn + dn != n:
        raise ValueError("kwone_c: a key's parts do not add up")
    vals[0], vals[1], vals[2] = b, c, d
    lens[0], lens[1], lens[2] = bn, cn, dn
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    cdef unsigned char *p = <unsigned char *>PyBytes_AS_STRING(out)
    _be(p, a, an)
    p += an
    if mn:
        memcpy(p, mid, mn)
        p += mn
    for i in range(3):
        _be(p, vals[i], lens[i])
        p += lens[i]
    return out


cdef bytes _u64(uint64_t v):
    return _key(8, v, 8, NULL, 0, 0, 0, 0, 0, 0, 0)


cdef bint _same_keys(keys) except -1:
    """The keys built here are the store's (KEYS: store/keys.py), for a
    sample of values; else the twin writes (with KEYS)."""
    return keys.CTR_MODSEQ == 2 and keys.CTR_LOG_ROWS == 7 \
        and keys.mbox(7, 9) == _key(8, 7, 4, NULL, 0, 9, 4, 0, 0, 0, 0) \
        and keys.msg(7, 9) == _key(8, 7, 4, NULL, 0, 9, 4, 0, 0, 0, 0) \
        and keys.mbx_ms(7, 9, 11, 13) == _key(20, 7, 4, NULL, 0, 9, 4, 11, 8, 13, 4) \
        and keys.chg_id(7, EMAIL, 11, 13) == _key(26, 7, 4, b"\x05Email", 6, 11, 8, 13, 8, 0, 0) \
        and keys.chg_id(7, MAILBOX, 11, 13) == \
        _key(28, 7, 4, b"\x07Mailbox", 8, 11, 8, 13, 8, 0, 0) \
        and keys.chg_kind(7, EMAIL) == _key(10, 7, 4, b"\x05Email", 6, 0, 0, 0, 0, 0, 0) \
        and keys.chg_kind(7, MAILBOX) == _key(12, 7, 4, b"\x07Mailbox", 8, 0, 0, 0, 0, 0, 0) \
        and keys.chg(7, 11) == _key(12, 7, 4, NULL, 0, 11, 8, 0, 0, 0, 0) \
        and keys.u64(11) == _u64(11) \
        and records.encode_kind_state(11, 13) == _key(16, 11, 8, NULL, 0, 13, 8, 0, 0, 0, 0)


def write_one(txn, dbs, log, acc, mbx, eid, frozenset add, frozenset remove, replace,
              str seen, now):
    """As kwone_py.write_one (DBS: what ``tables`` made)."""
    cdef Tables t = <Tables?>dbs
    if not t.direct or type(txn) is not _lmdb_mod.Transaction:
        return _py.write_one(txn, t.py, log, acc, mbx, eid, add, remove, replace, seen, now)
    cdef ea_trans *et = <ea_trans *>(<PyObject *>txn)
    if not et.valid or et.libv != _v09 or et.txn == NULL:
        return _py.write_one(txn, t.py, log, acc, mbx, eid, add, remove, replace, seen, now)
    cdef _Txn x = _Txn.__new__(_Txn)
    x.t = et
    x.txn = et.txn
    x.dbi = t.dbi
    cdef uint64_t a = acc, mb = mbx, e = eid, ms, total, hz, old_ms, uid
    cdef bint logged = log is not None
    mkey = _key(8, a, 4, NULL, 0, mb, 4, 0, 0, 0, 0)
    mraw = x.get(3, mkey)
    if mraw is None:
        return None
    m = _decode_mailbox(mbx, mraw)
    before = m.highest_ms
    ekey = _key(8, a, 4, NULL, 0, e, 4, 0, 0, 0, 0)
    data = x.get(1, ekey)
    if data is None:
        return None
    out = _rewrite(data, add, remove, replace, 0, seen)
    if out is None:
        return before, None, data, 0, False
    members = out[2]
    if len(members) != 1 or members[0][0] != mbx:
        return None
    ckey = _key(5, a, 4, b"\x02", 1, 0, 0, 0, 0, 0, 0)      # keys.CTR_MODSEQ
    v = x.get(0, ckey)
    ms = (int.from_bytes(v, "big") if v is not None else 0) + 1
    record, old_ms_o, members, seen_delta = _rewrite(data, add, remove, replace, ms, seen)
    old_ms = old_ms_o
    uid = members[0][1]
    # (the writes in the general path's order: the redo record is the same)
    val = _u64(ms)
    x.put(0, ckey, val)
    old = _key(20, a, 4, NULL, 0, mb, 4, old_ms, 8, uid, 4)
    gone = x.delete(2, old)
    if logged:
        log.append((PUT, "ctr", ckey, val))
        if gone:
            log.append((DELETE, "mbx.ms", old, b""))
    k = _key(20, a, 4, NULL, 0, mb, 4, ms, 8, uid, 4)
    x.put(2, k, b"")
    if logged:
        log.append((PUT, "mbx.ms", k, b""))
    x.put(1, ekey, record)
    if logged:
        log.append((PUT, "msg", ekey, record))
    m.highest_ms = ms
    if seen_delta:
        m.unseen -= seen_delta
    val = _encode_mailbox(m)
    x.put(3, mkey, val)
    if logged:
        log.append((PUT, "mbox", mkey, val))
    cdef int nk = 2 if seen_delta else 1
    cdef int i
    k = _key(26, a, 4, b"\x05Email", 6, ms, 8, e, 8, 0, 0)
    x.put(4, k, _UPDATED)
    if logged:
        log.append((PUT, "chg.id", k, _UPDATED))
    if nk == 2:
        k = _key(28, a, 4, b"\x07Mailbox", 8, ms, 8, mb, 8, 0, 0)
        x.put(4, k, _UPDATED)
        if logged:
            log.append((PUT, "chg.id", k, _UPDATED))
    for i in range(nk):
        k = _key(10, a, 4, b"\x05Email", 6, 0, 0, 0, 0, 0, 0) if i == 0 else \
            _key(12, a, 4, b"\x07Mailbox", 8, 0, 0, 0, 0, 0, 0)
        raw = x.get(5, k)
        hz = int.from_bytes(raw[8:16], "big") if raw is not None else 0
        val = _key(16, ms, 8, NULL, 0, hz, 8, 0, 0, 0, 0)
        x.put(5, k, val)
        if logged:
            log.append((PUT, "chg.kind", k, val))
    k = _key(12, a, 4, NULL, 0, ms, 8, 0, 0, 0, 0)
    val = _encode_summary_of(now, nk, [EMAIL, MAILBOX] if nk == 2 else [EMAIL], [mbx])
    x.put(6, k, val)
    if logged:
        log.append((PUT, "chg", k, val))
    k = _key(5, a, 4, b"\x07", 1, 0, 0, 0, 0, 0, 0)         # keys.CTR_LOG_ROWS
    v = x.get(0, k)
    total = (int.from_bytes(v, "big") if v is not None else 0) + nk
    val = _u64(total)
    x.put(0, k, val)
    if logged:
        log.append((PUT, "ctr", k, val))
    return before, ms, record, total, bool(seen_delta)


