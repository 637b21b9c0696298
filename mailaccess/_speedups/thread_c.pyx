# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""IMAP THREAD cores (RFC 5256), compiled twin of ``thread_py`` (the source
of truth, which documents the contract and cites the RFC steps): the same
functions, the same results (tests run both, and tests/thread_oracle.py,
on hypothesis input with hostile References).  Containers are indexes into
C arrays allocated once per call; sorts are a stable merge sort on (key,
index) pairs; the Message-ID table and the base subjects are Python dicts;
the answer's nodes are the only objects made per container, and with
THREAD None none at all: the thread-list is written into one C buffer.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.string cimport memcpy

__all__ = ["ranks", "orderedsubject", "references"]

cdef object _new = tuple.__new__
cdef tuple _EMPTY = ()


cdef struct Pair:
    long long k
    Py_ssize_t v


cdef void _msort(Pair *a, Pair *tmp, Py_ssize_t n) noexcept nogil:
    """A[:n] stably by k (runs of 16 by insertion, then bottom-up merges)."""
    cdef Py_ssize_t i, j, w, lo, mid, hi, p, q, o
    cdef Pair x
    cdef Pair *src = a
    cdef Pair *dst = tmp
    cdef Pair *t
    lo = 0
    while lo < n:
        hi = lo + 16 if lo + 16 < n else n
        i = lo + 1
        while i < hi:
            x = a[i]
            j = i
            while j > lo and a[j - 1].k > x.k:
                a[j] = a[j - 1]
                j -= 1
            a[j] = x
            i += 1
        lo = hi
    w = 16
    while w < n:
        lo = 0
        while lo < n:
            mid = lo + w if lo + w < n else n
            hi = lo + 2 * w if lo + 2 * w < n else n
            p = lo
            q = mid
            o = lo
            while p < mid and q < hi:
                if src[q].k < src[p].k:
                    dst[o] = src[q]
                    q += 1
                else:
                    dst[o] = src[p]
                    p += 1
                o += 1
            while p < mid:
                dst[o] = src[p]
                p += 1
                o += 1
            while q < hi:
                dst[o] = src[q]
                q += 1
                o += 1
            lo = hi
        t = src
        src = dst
        dst = t
        w *= 2
    if src != a:
        memcpy(a, src, n * sizeof(Pair))


cdef void _by_date(list dates, Pair *pairs, Pair *tmp, Py_ssize_t n) except *:
    """PAIRS[:n]: the positions in (date, position) order."""
    cdef Py_ssize_t i
    for i in range(n):
        pairs[i].k = dates[i]
        pairs[i].v = i
    _msort(pairs, tmp, n)


def ranks(list dates):
    cdef Py_ssize_t n = len(dates), i
    cdef Pair *pairs = <Pair *>PyMem_Malloc(2 * (n + 1) * sizeof(Pair))
    if pairs == NULL:
        raise MemoryError()
    try:
        _by_date(dates, pairs, pairs + n + 1, n)
        return [pairs[i].v for i in range(n)]
    finally:
        PyMem_Free(pairs)


cdef tuple _tuple_of(list items, Py_ssize_t *ids, Py_ssize_t k):
    """(ITEMS[ids[0]], ... ITEMS[ids[k-1]])."""
    if k == 0:
        return _EMPTY
    cdef tuple t = PyTuple_New(k)
    cdef Py_ssize_t i
    cdef object o
    for i in range(k):
        o = items[ids[i]]
        Py_INCREF(o)
        PyTuple_SET_ITEM(t, i, o)
    return t


cdef struct Out:
    char *p
    Py_ssize_t n, cap


cdef int _grow(Out *o, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = o.cap
    cdef char *p
    while cap < o.n + more:
        cap = 2 * cap + 64
    p = <char *>PyMem_Realloc(o.p, cap)
    if p == NULL:
        raise MemoryError()
    o.p = p
    o.cap = cap
    return 0


cdef inline int _put(Out *o, char c) except -1:
    if o.n + 1 > o.cap:
        _grow(o, 1)
    o.p[o.n] = c
    o.n += 1
    return 0


cdef int _put_num(Out *o, object key) except -1:
    """KEY (a non-negative int) in decimal."""
    cdef unsigned long long v = key
    cdef char tmp[24]
    cdef int k = 0
    while True:
        tmp[k] = 48 + <char>(v % 10)
        k += 1
        v //= 10
        if v == 0:
            break
    if o.n + k > o.cap:
        _grow(o, k)
    while k:
        k -= 1
        o.p[o.n] = tmp[k]
        o.n += 1
    return 0


cdef bytes _taken(Out *o):
    return PyBytes_FromStringAndSize(o.p, o.n) if o.n else b""


cdef bytes _ordered_wire(list keys, Py_ssize_t *head, Py_ssize_t *nxt, Py_ssize_t ng):
    cdef Out o
    cdef Py_ssize_t g, i, j
    o.p = NULL
    o.n = o.cap = 0
    try:
        for g in range(ng):
            i = head[g]
            _put(&o, 40)                    # (
            _put_num(&o, keys[i])
            j = nxt[i]
            if j >= 0 and nxt[j] < 0:       # one child continues the list
                _put(&o, 32)
                _put_num(&o, keys[j])
            elif j >= 0:
                _put(&o, 32)
                while j >= 0:
                    _put(&o, 40)
                    _put_num(&o, keys[j])
                    _put(&o, 41)
                    j = nxt[j]
            _put(&o, 41)                    # )
        return _taken(&o)
    finally:
        PyMem_Free(o.p)


def orderedsubject(list keys, list dates, list bases, thread):
    cdef Py_ssize_t n = len(keys), i, j, g, r, ng = 0, k
    cdef Py_ssize_t *buf = <Py_ssize_t *>PyMem_Malloc((3 * n + 1) * sizeof(Py_ssize_t))
    cdef Pair *pairs = <Pair *>PyMem_Malloc(2 * (n + 1) * sizeof(Pair))
    cdef Py_ssize_t *head
    cdef Py_ssize_t *tail
    cdef Py_ssize_t *nxt
    cdef dict groups = {}
    cdef list out = []
    cdef tuple kids
    cdef object o
    if buf == NULL or pairs == NULL:
        PyMem_Free(buf)
        PyMem_Free(pairs)
        raise MemoryError()
    head = buf              # per group: its first message, then the last
    tail = buf + n
    nxt = buf + 2 * n       # per message: the next of its group
    try:
        _by_date(dates, pairs, pairs + n + 1, n)
        for r in range(n):
            i = pairs[r].v
            nxt[i] = -1
            o = groups.get(bases[i])
            if o is None:
                groups[bases[i]] = ng
                head[ng] = tail[ng] = i
                ng += 1
            else:
                g = o
                nxt[tail[g]] = i
                tail[g] = i
        if thread is None:
            return _ordered_wire(keys, head, nxt, ng)
        for g in range(ng):
            i = head[g]
            k = 0
            j = nxt[i]
            while j >= 0:
                pairs[k].v = j
                k += 1
                j = nxt[j]
            kids = _EMPTY
            if k:
                kids = PyTuple_New(k)
                for j in range(k):
                    o = _new(thread, (keys[pairs[j].v], _EMPTY))
                    Py_INCREF(o)
                    PyTuple_SET_ITEM(kids, j, o)
            out.append(_new(thread, (keys[i], kids)))
        return out
    finally:
        PyMem_Free(buf)
        PyMem_Free(pairs)


# ------------------------------------------------------------ REFERENCES
# the link-cut forest of step 1 (thread_py documents it)

cdef inline void _rotate(Py_ssize_t *lo, Py_ssize_t *hi, Py_ssize_t *up,
                         Py_ssize_t x) noexcept nogil:
    cdef Py_ssize_t p = up[x], g, b
    g = up[p]
    if g >= 0:
        if lo[g] == p:
            lo[g] = x
        elif hi[g] == p:
            hi[g] = x
    up[x] = g
    if lo[p] == x:
        b = hi[x]
        lo[p] = b
        hi[x] = p
    else:
        b = lo[x]
        hi[p] = b
        lo[x] = p
    if b >= 0:
        up[b] = p
    up[p] = x


cdef inline void _splay(Py_ssize_t *lo, Py_ssize_t *hi, Py_ssize_t *up,
                        Py_ssize_t x) noexcept nogil:
    cdef Py_ssize_t p, g
    while True:
        p = up[x]
        if p < 0 or (lo[p] != x and hi[p] != x):
            return
        g = up[p]
        if g >= 0 and (lo[g] == p or hi[g] == p):
            _rotate(lo, hi, up, p if (lo[g] == p) == (lo[p] == x) else x)
        _rotate(lo, hi, up, x)


cdef inline void _access(Py_ssize_t *lo, Py_ssize_t *hi, Py_ssize_t *up,
                         Py_ssize_t x) noexcept nogil:
    cdef Py_ssize_t last = -1, y = x
    while y >= 0:
        _splay(lo, hi, up, y)
        hi[y] = last
        last = y
        y = up[y]
    _splay(lo, hi, up, x)


cdef inline Py_ssize_t _root(Py_ssize_t *lo, Py_ssize_t *hi, Py_ssize_t *up,
                             Py_ssize_t x) noexcept nogil:
    _access(lo, hi, up, x)
    while lo[x] >= 0:
        x = lo[x]
    _splay(lo, hi, up, x)
    return x


cdef struct Work:
    # step 1: per container its message (-1: a dummy), parent, child
    # count, and the forest's arrays
    Py_ssize_t *msg
    Py_ssize_t *parent
    Py_ssize_t *nkids
    Py_ssize_t *lo
    Py_ssize_t *hi
    Py_ssize_t *up
    # steps 2-6: children lists, the messages' ranks, scratch stacks
    Py_ssize_t *first
    Py_ssize_t *last
    Py_ssize_t *nxt
    Py_ssize_t *rank
    Py_ssize_t *where
    Py_ssize_t *stack
    Py_ssize_t *todo
    Py_ssize_t *top
    Py_ssize_t *merged
    Pair *pairs
    Pair *tmp


cdef inline long long _order(Work *w, Py_ssize_t c) noexcept nogil:
    while w.msg[c] < 0:
        c = w.first[c]
        if c < 0:
            return -1
    return w.rank[w.msg[c]]


cdef void _sort_kids(Work *w, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t k = 0, d = w.first[c], i
    while d >= 0:
        w.pairs[k].k = _order(w, d)
        w.pairs[k].v = d
        k += 1
        d = w.nxt[d]
    if k < 2:
        return
    _msort(w.pairs, w.tmp, k)
    for i in range(k - 1):
        w.nxt[w.pairs[i].v] = w.pairs[i + 1].v
    w.nxt[w.pairs[k - 1].v] = -1
    w.first[c] = w.pairs[0].v
    w.last[c] = w.pairs[k - 1].v


cdef inline void _adopt(Work *w, Py_ssize_t p, Py_ssize_t c) noexcept nogil:
    w.parent[c] = p
    w.nxt[c] = -1
    if w.last[p] < 0:
        w.first[p] = c
    else:
        w.nxt[w.last[p]] = c
    w.last[p] = c


cdef inline Py_ssize_t _subject_of(Work *w, Py_ssize_t c) noexcept nogil:
    if w.msg[c] >= 0:
        return w.msg[c]
    return w.msg[w.first[c]] if w.first[c] >= 0 else -1


cdef Py_ssize_t _push_kids(Work *w, Py_ssize_t t, Py_ssize_t c) noexcept nogil:
    """C's children onto the todo stack of height T, the first on top: the new height."""
    cdef Py_ssize_t k = t, d = w.first[c], a, b, x
    while d >= 0:
        w.todo[t] = d
        t += 1
        d = w.nxt[d]
    a = k
    b = t - 1
    while a < b:
        x = w.todo[a]
        w.todo[a] = w.todo[b]
        w.todo[b] = x
        a += 1
        b -= 1
    return t


cdef void _sort_top(Work *w, Py_ssize_t nt) noexcept nogil:
    """TOP[:nt] by order."""
    cdef Py_ssize_t i
    for i in range(nt):
        w.pairs[i].k = _order(w, w.top[i])
        w.pairs[i].v = w.top[i]
    _msort(w.pairs, w.tmp, nt)
    for i in range(nt):
        w.top[i] = w.pairs[i].v


cdef bytes _refs_wire(Work *w, Py_ssize_t nt, list keys):
    """thread_py._wire: the work stack holds containers, -1 for a ")"; each
    container is pushed once and each parent of several children one -1,
    so twice the containers bound it (w.stack and w.todo, adjacent)."""
    cdef Out o
    cdef Py_ssize_t sp = 0, node, c, a, b, x, i
    cdef Py_ssize_t *work = w.stack
    cdef bint started
    o.p = NULL
    o.n = o.cap = 0
    try:
        i = nt
        while i:
            i -= 1
            work[sp] = w.top[i]
            sp += 1
        while sp:
            sp -= 1
            node = work[sp]
            if node < 0:
                _put(&o, 41)
                continue
            _put(&o, 40)
            started = False
            while True:
                if w.msg[node] >= 0:
                    if started:
                        _put(&o, 32)
                    _put_num(&o, keys[w.msg[node]])
                    started = True
                c = w.first[node]
                if c >= 0 and w.nxt[c] < 0:
                    node = c
                    continue
                if c >= 0:
                    if started:
                        _put(&o, 32)
                    work[sp] = -1
                    sp += 1
                    a = sp
                    while c >= 0:
                        work[sp] = c
                        sp += 1
                        c = w.nxt[c]
                    b = sp - 1
                    while a < b:
                        x = work[a]
                        work[a] = work[b]
                        work[b] = x
                        a += 1
                        b -= 1
                else:
                    _put(&o, 41)
                break
        return _taken(&o)
    finally:
        PyMem_Free(o.p)


def references(list keys, list dates, list mids, list refs, list bases, list subjects,
               is_rf, thread):
    cdef Py_ssize_t n = len(keys), x, c, rb, prev, m = 0, cap1 = n, cap, r, i
    cdef Py_ssize_t nt, ns, nm, sp, tp, b, head, tail, cur, d, nxtc, xi
    cdef object mid, ref, o, base
    cdef dict table = {}, subj
    cdef list frozen, out
    cdef tuple kids
    cdef char *gone
    cdef Py_ssize_t *buf
    cdef Work w
    for o in refs:
        cap1 += len(o)
    cap = cap1 + n
    buf = <Py_ssize_t *>PyMem_Malloc((15 * cap + 16) * sizeof(Py_ssize_t))
    gone = <char *>PyMem_Malloc(cap + 1)
    w.pairs = <Pair *>PyMem_Malloc(2 * (cap + 1) * sizeof(Pair))
    if buf == NULL or gone == NULL or w.pairs == NULL:
        PyMem_Free(buf)
        PyMem_Free(gone)
        PyMem_Free(w.pairs)
        raise MemoryError()
    w.tmp = w.pairs + cap + 1
    w.msg = buf
    w.parent = buf + cap
    w.nkids = buf + 2 * cap
    w.lo = buf + 3 * cap
    w.hi = buf + 4 * cap
    w.up = buf + 5 * cap
    w.first = buf + 6 * cap
    w.last = buf + 7 * cap
    w.nxt = buf + 8 * cap
    w.rank = buf + 9 * cap
    w.where = buf + 10 * cap
    w.stack = buf + 11 * cap
    w.todo = buf + 12 * cap
    w.top = buf + 13 * cap
    w.merged = buf + 14 * cap
    try:
        for i in range(cap):
            w.msg[i] = w.parent[i] = w.lo[i] = w.hi[i] = w.up[i] = -1
            w.first[i] = w.last[i] = w.nxt[i] = w.where[i] = -1
            w.nkids[i] = 0
            gone[i] = 0
        _by_date(dates, w.pairs, w.tmp, n)
        for i in range(n):
            w.rank[w.pairs[i].v] = i
        # (1) (thread_py.references has the comments)
        for x in range(n):
            mid = mids[x]
            c = -1
            if mid is not None:
                o = table.get(mid)
                if o is not None:
                    c = o
            if c < 0 or w.msg[c] >= 0:
                if c < 0 and mid is not None:
                    table[mid] = m
                c = m
                m += 1
            w.msg[c] = x
            prev = -1
            for ref in refs[x]:
                o = table.get(ref)
                if o is None:
                    rb = m
                    table[ref] = m
                    m += 1
                else:
                    rb = o
                if prev >= 0 and w.parent[rb] < 0 and rb != prev \
                        and _root(w.lo, w.hi, w.up, prev) != rb:
                    w.parent[rb] = prev
                    _access(w.lo, w.hi, w.up, rb)
                    w.up[rb] = prev
                    w.nkids[prev] += 1
                prev = rb
            if w.parent[c] >= 0:
                _access(w.lo, w.hi, w.up, c)
                w.up[w.lo[c]] = -1
                w.lo[c] = -1
                w.nkids[w.parent[c]] -= 1
                w.parent[c] = -1
            if prev >= 0 and prev != c and (
                    w.nkids[c] == 0 or _root(w.lo, w.hi, w.up, prev) != c):
                w.parent[c] = prev
                _access(w.lo, w.hi, w.up, c)
                w.up[c] = prev
                w.nkids[prev] += 1
        del table
        # children lists in creation order
        for c in range(m):
            b = w.parent[c]
            if b >= 0:
                if w.last[b] < 0:
                    w.first[b] = c
                else:
                    w.nxt[w.last[b]] = c
                w.last[b] = c
        # (2) the root set (in top), (3) pruned
        nt = 0
        sp = 0
        for c in range(m):
            if w.parent[c] < 0:
                w.top[nt] = c
                nt += 1
                if w.first[c] >= 0:
                    w.stack[sp] = c
                    sp += 1
        while sp:
            sp -= 1
            b = w.stack[sp]
            head = tail = -1
            tp = _push_kids(&w, 0, b)
            while tp:
                tp -= 1
                c = w.todo[tp]
                if w.msg[c] < 0:
                    tp = _push_kids(&w, tp, c)
                else:
                    w.parent[c] = b
                    if tail < 0:
                        head = c
                    else:
                        w.nxt[tail] = c
                    tail = c
                    w.stack[sp] = c
                    sp += 1
            if tail >= 0:
                w.nxt[tail] = -1
            w.first[b] = head
            w.last[b] = tail
        ns = 0
        for i in range(nt):
            r = w.top[i]
            if w.msg[r] < 0:
                if w.first[r] < 0:
                    continue
                if w.first[r] == w.last[r]:
                    r = w.first[r]
                    w.parent[r] = -1
            w.top[ns] = r
            ns += 1
        nt = ns
        # (4)
        for i in range(nt):
            if w.msg[w.top[i]] < 0:
                _sort_kids(&w, w.top[i])
        _sort_top(&w, nt)
        # (5)
        subj = {}
        for i in range(nt):
            r = w.top[i]
            xi = _subject_of(&w, r)
            if xi < 0:
                continue
            base = bases[xi]
            if not base:
                continue
            o = subj.get(base)
            if o is None:
                subj[base] = r
            else:
                cur = o
                if w.msg[cur] >= 0 and (w.msg[r] < 0 or (is_rf(subjects[w.msg[cur]])
                                                         and not is_rf(subjects[xi]))):
                    subj[base] = r
        nm = 0
        for i in range(nt):
            r = w.top[i]
            if gone[r] or w.parent[r] >= 0:
                continue
            xi = _subject_of(&w, r)
            cur = -1
            if xi >= 0:
                base = bases[xi]
                if base:
                    o = subj.get(base)
                    if o is not None:
                        cur = o
            if cur < 0 or cur == r:
                w.where[r] = nm
                w.merged[nm] = r
                nm += 1
                continue
            if w.msg[cur] < 0 and w.msg[r] < 0:
                c = w.first[r]
                while c >= 0:
                    nxtc = w.nxt[c]
                    _adopt(&w, cur, c)
                    c = nxtc
                w.first[r] = w.last[r] = -1
                gone[r] = 1
            elif w.msg[cur] < 0:
                _adopt(&w, cur, r)
            elif is_rf(subjects[w.msg[r]]) and not is_rf(subjects[w.msg[cur]]):
                _adopt(&w, cur, r)
            else:
                d = m
                m += 1
                b = w.where[cur]
                if b < 0:
                    b = nm
                    nm += 1
                w.merged[b] = d
                w.where[d] = b
                _adopt(&w, d, cur)
                _adopt(&w, d, r)
                subj[base] = d
        nt = 0
        for i in range(nm):
            r = w.merged[i]
            if w.parent[r] < 0 and not gone[r]:
                w.top[nt] = r
                nt += 1
        # (6) preorder into todo, then frozen in reverse
        sp = 0
        tp = 0
        for i in range(nt):
            w.stack[sp] = w.top[i]
            sp += 1
        while sp:
            sp -= 1
            b = w.stack[sp]
            w.todo[tp] = b
            tp += 1
            c = w.first[b]
            while c >= 0:
                w.stack[sp] = c
                sp += 1
                c = w.nxt[c]
        if thread is None:
            while tp:
                tp -= 1
                _sort_kids(&w, w.todo[tp])
            _sort_top(&w, nt)
            return _refs_wire(&w, nt, keys)
        frozen = [None] * m
        while tp:
            tp -= 1
            b = w.todo[tp]
            _sort_kids(&w, b)
            i = 0
            c = w.first[b]
            while c >= 0:
                w.stack[i] = c
                i += 1
                c = w.nxt[c]
            kids = _tuple_of(frozen, w.stack, i)
            while i:
                i -= 1
                frozen[w.stack[i]] = None
            frozen[b] = _new(thread, (keys[w.msg[b]] if w.msg[b] >= 0 else None, kids))
        _sort_top(&w, nt)
        return [frozen[w.top[i]] for i in range(nt)]
    finally:
        PyMem_Free(buf)
        PyMem_Free(gone)
        PyMem_Free(w.pairs)
