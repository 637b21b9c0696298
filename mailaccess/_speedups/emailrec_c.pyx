# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The write path's per-message work, compiled twin of ``emailrec_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract).  The record is read through the buffer protocol
at the offsets ``store.records.EMAIL_LAYOUT`` gives and the new one is
written into one fresh bytes object; keywords are still Python strings (the
set algebra and the sort are Python's, so the result is the same).  A layout
whose fields this code reads changed type refuses to load (ImportError) and
the twin takes over.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t, uint32_t
from libc.string cimport memcmp, memcpy

from ..store.records import EMAIL_LAYOUT
from ..store.redolog import OP

if OP.format not in (">BBHI", "!BBHI"):
    raise ImportError("emailrec_c: the redo log's op layout changed")

_READS = {"last_ms": "Q", "n_keywords": "H", "n_members": "H"}
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


cdef inline uint64_t _be(const unsigned char *p, int n) noexcept:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef inline void _put_be(unsigned char *p, uint64_t v, int n) noexcept:
    cdef int i
    for i in range(n - 1, -1, -1):
        p[i] = v & 0xFF
        v >>= 8


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
    cdef bytes kwb = <bytes>kc[0]
    cdef Py_ssize_t klen = PyBytes_GET_SIZE(kwb)
    cdef bytes record = PyBytes_FromStringAndSize(NULL, mem_end + klen)
    cdef unsigned char *w = <unsigned char *>PyBytes_AS_STRING(record)
    memcpy(w, p, mem_end)
    memcpy(w + mem_end, PyBytes_AS_STRING(kwb), klen)
    _put_be(w + OFF_MS, ms, 8)
    _put_be(w + OFF_NKW, <uint64_t>(<long>kc[1]), 2)
    return record


def rewrite_many(get, msg_key, mbx_ms_key, eids, frozenset add, frozenset remove,
                 replace, str seen, unchanged_since, alloc_ms, bint want_records):
    cdef dict new = {}
    cdef list gone = [], out_items = [], changed = [], conflicts = []
    cdef dict deltas = {}
    cdef dict recs = {} if want_records else None
    # a bulk STORE meets a handful of keyword sets: each is worked out once
    cdef dict kw_cache = {}
    cdef bint have_ms = False, check = unchanged_since is not None
    cdef uint64_t ms = 0, since = 0, old_ms
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef Py_ssize_t n, nkw, nmem, mem_end, klen, i
    cdef tuple done, kc
    cdef bytes record, tail, kwb
    cdef unsigned char *w
    cdef long delta
    if check:
        since = <uint64_t>unchanged_since
    ms_obj = None
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
            old_ms = _last_ms(p, n)
            if check and old_ms > since:
                conflicts.append(eid)
                continue
            mem_end = _members_end(p, n, &nkw, &nmem)
            tail = PyBytes_FromStringAndSize(<const char *>p + mem_end, n - mem_end) \
                if nkw else b""
            kc_obj = kw_cache.get((nkw != 0, tail))
            if kc_obj is None:
                kc_obj = kw_cache[(nkw != 0, tail)] = _kw_change(tail, nkw != 0, add, remove,
                                                                  replace, seen)
            if kc_obj is _NOCHANGE:
                if want_records:
                    recs[eid] = PyBytes_FromStringAndSize(<const char *>p, n)
                continue
            if not have_ms:
                # a modseq only when something changes
                ms_obj = alloc_ms()
                ms = <uint64_t>ms_obj
                have_ms = True
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
    return list(new.values()), gone, out_items, changed, conflicts, deltas, recs


cdef inline bytes _key3(bytes prefix, uint64_t a, uint64_t b, uint64_t c):
    """PREFIX + a u32, b u64, c u32, big-endian (an ``mbx.ms`` key)."""
    cdef Py_ssize_t pl = PyBytes_GET_SIZE(prefix)
    cdef bytes k = PyBytes_FromStringAndSize(NULL, pl + 16)
    cdef unsigned char *w = <unsigned char *>PyBytes_AS_STRING(k)
    memcpy(w, PyBytes_AS_STRING(prefix), pl)
    _put_be(w + pl, a, 4)
    _put_be(w + pl + 4, b, 8)
    _put_be(w + pl + 12, c, 4)
    return k


def apply_keywords(msg_cur, ms_cur, msg_shape, ms_shape, eids, frozenset add,
                   frozenset remove, replace, str seen, unchanged_since, alloc_ms,
                   bint want_records):
    # keys assembled here from the shapes; another shape: the twin's loop
    if msg_shape.suffix != "u32" or ms_shape.suffix != "u32.u64.u32":
        from . import emailrec_py
        return emailrec_py.apply_keywords(msg_cur, ms_cur, msg_shape, ms_shape, eids, add,
                                          remove, replace, seen, unchanged_since, alloc_ms,
                                          want_records)
    cdef bytes mpre = bytes(msg_shape.prefix), xpre = bytes(ms_shape.prefix)
    cdef Py_ssize_t mpl = PyBytes_GET_SIZE(mpre), xpl = PyBytes_GET_SIZE(xpre)
    # the old index keys are deleted through one reused buffer
    cdef bytearray dbuf = bytearray(xpl + 16)
    cdef unsigned char *dw = <unsigned char *>(<char *>dbuf)
    memcpy(dw, PyBytes_AS_STRING(xpre), xpl)
    get = msg_cur.get
    find = ms_cur.set_key
    delete = ms_cur.delete
    cdef list items = [], item_eids = [], out_items = [], changed = [], conflicts = []
    cdef dict pos = None          # eid -> index in items, once an eid comes twice
    cdef dict deltas = {}
    cdef dict recs = {} if want_records else None
    # a bulk STORE meets a handful of keyword sets: [(has keywords, tail, change)]
    cdef list kw_seen = []
    cdef bint have_ms = False, check = unchanged_since is not None, again
    cdef uint64_t ms = 0, since = 0, old_ms, e, last_eid = 0
    cdef Py_buffer view
    cdef const unsigned char *p
    cdef const unsigned char *tp
    cdef Py_ssize_t n, nkw, nmem, mem_end, klen, i, j, tl
    cdef tuple kc, ent
    cdef bytes record, key, kwb, t
    cdef unsigned char *w
    cdef long delta, pend = 0
    cdef uint64_t mbx, uid, cur_mbx = 0
    cdef bint have_mbx = False
    if check:
        since = <uint64_t>unchanged_since
    nk_obj = None
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
            old_ms = _last_ms(p, n)
            if check and old_ms > since:
                conflicts.append(eid)
                continue
            mem_end = _members_end(p, n, &nkw, &nmem)
            tp = p + mem_end
            tl = n - mem_end if nkw else 0
            kc_obj = None
            for ent in kw_seen:
                t = <bytes>ent[1]
                if (<bint>ent[0]) == (nkw != 0) and PyBytes_GET_SIZE(t) == tl and \
                        memcmp(PyBytes_AS_STRING(t), tp, tl) == 0:
                    kc_obj = ent[2]
                    break
            if kc_obj is None:
                t = PyBytes_FromStringAndSize(<const char *>tp, tl)
                kc_obj = _kw_change(t, nkw != 0, add, remove, replace, seen)
                kw_seen.append((nkw != 0, t, kc_obj))
            if kc_obj is _NOCHANGE:
                if want_records:
                    recs[eid] = data if type(data) is bytes else \
                        PyBytes_FromStringAndSize(<const char *>p, n)
                continue
            if not have_ms:
                # a modseq only when something changes
                ms = <uint64_t>alloc_ms()
                have_ms = True
            kc = <tuple>kc_obj
            delta = kc[2]
            record = _new_record(p, mem_end, kc, ms)
            for i in range(nmem):
                mbx = _be(p + HEAD + i * MEMBER, 4)
                uid = _be(p + HEAD + i * MEMBER + 4, 4)
                # the \Seen deltas: summed in C while the mailbox repeats
                if not have_mbx or mbx != cur_mbx:
                    if have_mbx:
                        deltas[cur_mbx] = deltas.get(cur_mbx, 0) + pend
                    cur_mbx = mbx
                    have_mbx = True
                    pend = 0
                    deltas.setdefault(cur_mbx, 0)
                pend += delta
                _put_be(dw + xpl, mbx, 4)
                _put_be(dw + xpl + 4, old_ms, 8)
                _put_be(dw + xpl + 12, uid, 4)
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
    if have_mbx:
        deltas[cur_mbx] = deltas.get(cur_mbx, 0) + pend
    if changed:
        ms_cur.putmulti(out_items)
        msg_cur.putmulti(items)
    return changed, conflicts, deltas, recs


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
