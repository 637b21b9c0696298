"""IMAP THREAD cores (RFC 5256), pure Python: the source of truth.

``thread_c.pyx`` has the same functions, typed over C arrays; tests hold
both to the same results (and to tests/thread_oracle.py, the RFC read
literally).  ``mailaccess.query.thread`` is the public face: it reads the
candidates' facts into columns and calls one of these.

Both take the candidates as parallel columns in candidate order (a
message's position is its sequence number, the last tie-break): KEYS (the
numbers to answer with), DATES (RFC 5256 sent dates, int), BASES (collated
base subjects); REFERENCES also MIDS (normalized Message-ID or None), REFS
(tuples of normalized ids), SUBJECTS (as decoded) and IS_RF (the "is a
reply or forward" test of step 5, called only where two roots share a base
subject).  THREAD is the class of the tree nodes, made as
``tuple.__new__(THREAD, (key, children))``; a key of None is a dummy.
With THREAD None they answer with the trees as RFC 5256 section 4's
thread-list bytes instead (what ``serialize.thread`` writes of the trees,
after ``* THREAD ``), making no node at all; KEYS are then non-negative.

Messages are compared by their rank in (date, position) order, so no sort
key is a tuple.  Containers are integers: column arrays instead of
objects, so a THREAD of 10,000 messages makes no per-container object
besides its answer.  Nothing recurses.
"""
from __future__ import annotations

__all__ = ["ranks", "orderedsubject", "references"]


def ranks(dates: list) -> list:
    """The messages (positions) in (date, position) order."""
    return sorted(range(len(dates)), key=dates.__getitem__)


def orderedsubject(keys: list, dates: list, bases: list, thread) -> list:
    """RFC 5256 section 3, ORDEREDSUBJECT: messages sorted by base subject,
    then sent date, then sequence number; each run of one base subject is a
    thread whose first message is the parent of the others (siblings);
    threads in the order of their first messages' (date, sequence number).
    Taken in (date, position) order, a base subject's first message is its
    thread's first, met in thread order: one pass, no string is compared
    but for equality."""
    groups: dict = {}
    heads: list = []
    for i in ranks(dates):
        g = groups.get(bases[i])
        if g is None:
            g = groups[bases[i]] = [i]
            heads.append(g)
        else:
            g.append(i)
    if thread is None:
        out = []
        for g in heads:
            if len(g) == 1:
                out.append(b"(%d)" % keys[g[0]])
            elif len(g) == 2:               # one child continues the list
                out.append(b"(%d %d)" % (keys[g[0]], keys[g[1]]))
            else:
                out.append(b"(%d " % keys[g[0]] + b"".join([b"(%d)" % keys[j] for j in g[1:]])
                           + b")")
        return b"".join(out)
    new = tuple.__new__
    out = []
    for g in heads:
        kids = tuple([new(thread, (keys[j], ())) for j in g[1:]]) if len(g) > 1 else ()
        out.append(new(thread, (keys[g[0]], kids)))
    return out


def _wire(top: list, first: list, nxt: list, msg: list, keys: list) -> bytes:
    """The thread-list of the trees at TOP (RFC 5256 section 4), as
    ``serialize.thread`` writes it: a parent and its single child continue
    one list (``3 6``), siblings open a list each, a dummy has no number."""
    out = []
    work = top[::-1]                    # containers; -1: a closing parenthesis
    while work:
        node = work.pop()
        if node < 0:
            out.append(b")")
            continue
        out.append(b"(")
        started = False
        while True:
            if msg[node] >= 0:
                if started:
                    out.append(b" ")
                out.append(b"%d" % keys[msg[node]])
                started = True
            c = first[node]
            if c >= 0 and nxt[c] < 0:
                node = c
                continue
            if c >= 0:
                if started:
                    out.append(b" ")
                work.append(-1)
                _push_kids(work, first, nxt, node)
            else:
                out.append(b")")
            break
    return b"".join(out)


# ------------------------------------------------------------ REFERENCES
# The roots of step 1's containers under links and cuts: link-cut trees
# (Sleator and Tarjan, "A data structure for dynamic trees", 1983), without
# re-rooting.  Root, link and cut cost amortised O(log n) each, so the loop
# checks of steps 1A and 1B ("no loops are permitted") cost O(log n) each
# rather than the depth of the chain (a chain of 40,000 replies, each walked
# to its root, took 13 s).  Node x has splay-tree children LO[x]/HI[x]
# (shallower/deeper on its preferred path) and UP[x]: its splay parent, or,
# at the top of a splay tree, the path's parent in the real tree.


def _rotate(lo: list, hi: list, up: list, x: int) -> None:
    p = up[x]
    g = up[p]
    if g >= 0:
        if lo[g] == p:
            lo[g] = x
        elif hi[g] == p:
            hi[g] = x                   # else g is p's path parent: x inherits it
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


def _splay(lo: list, hi: list, up: list, x: int) -> None:
    while True:
        p = up[x]
        if p < 0 or (lo[p] != x and hi[p] != x):
            return                      # x tops its splay tree
        g = up[p]
        if g >= 0 and (lo[g] == p or hi[g] == p):
            # zig-zig rotates the parent first, zig-zag x twice
            _rotate(lo, hi, up, p if (lo[g] == p) == (lo[p] == x) else x)
        _rotate(lo, hi, up, x)


def _access(lo: list, hi: list, up: list, x: int) -> None:
    """Make the path from x's root to x preferred; x tops its splay tree."""
    last, y = -1, x
    while y >= 0:
        _splay(lo, hi, up, y)
        hi[y] = last
        last, y = y, up[y]
    _splay(lo, hi, up, x)


def _root(lo: list, hi: list, up: list, x: int) -> int:
    _access(lo, hi, up, x)
    while lo[x] >= 0:
        x = lo[x]
    _splay(lo, hi, up, x)
    return x


def _cut(lo: list, hi: list, up: list, x: int) -> None:
    """X leaves its parent (it has one)."""
    _access(lo, hi, up, x)
    a = lo[x]
    lo[x] = -1
    up[a] = -1


def _link(lo: list, hi: list, up: list, parent: list, nkids: list, p: int, c: int) -> None:
    """C, a root, becomes a child of P (of another tree)."""
    parent[c] = p
    _access(lo, hi, up, c)
    up[c] = p
    nkids[p] += 1


def references(keys: list, dates: list, mids: list, refs: list, bases: list,
               subjects: list, is_rf, thread) -> list:
    """RFC 5256 section 3, REFERENCES."""
    n = len(keys)
    rank = [0] * n
    for r, i in enumerate(ranks(dates)):
        rank[i] = r
    cap = n + sum(map(len, refs))       # step 1's containers, at most
    # per container: its message (-1: a dummy), parent, child count (for
    # 1B's shortcut), the forest's arrays
    msg = [-1] * cap
    parent = [-1] * cap
    nkids = [0] * cap
    lo = [-1] * cap
    hi = [-1] * cap
    up = [-1] * cap
    table: dict = {}
    m = 0                               # containers made
    for x in range(n):
        mid = mids[x]
        c = table.get(mid, -1) if mid is not None else -1
        if c < 0 or msg[c] >= 0:
            # (1A) a missing or duplicate Message-ID gets a unique one: a
            # container no reference can name
            if c < 0 and mid is not None:
                table[mid] = m
            c = m
            m += 1
        msg[c] = x
        prev = -1
        for ref in refs[x]:             # (1A)
            rb = table.get(ref, -1)
            if rb < 0:
                rb = table[ref] = m
                m += 1
            # not when rb already has a parent; and rb has no parent, so
            # prev descends from rb exactly when rb is the root of prev's
            # tree: linking them would close a loop
            if prev >= 0 and parent[rb] < 0 and rb != prev and _root(lo, hi, up, prev) != rb:
                _link(lo, hi, up, parent, nkids, prev, rb)
            prev = rb
        # (1B) the last reference becomes the parent: any current parent (from
        # a truncated References elsewhere) is broken first, and the new link
        # is not made when it would close a loop (prev in c's own subtree,
        # whose root c now is), so the message may end up a root
        if parent[c] >= 0:
            _cut(lo, hi, up, c)
            nkids[parent[c]] -= 1
            parent[c] = -1
        if prev >= 0 and prev != c and (nkids[c] == 0 or _root(lo, hi, up, prev) != c):
            _link(lo, hi, up, parent, nkids, prev, c)
    del table, lo, hi, up, nkids
    return _rest(keys, rank, msg, parent, m, n, bases, subjects, is_rf, thread)


def _push_kids(todo: list, first: list, nxt: list, c: int) -> None:
    """C's children onto TODO, the first on top."""
    k = len(todo)
    d = first[c]
    while d >= 0:
        todo.append(d)
        d = nxt[d]
    todo[k:] = todo[k:][::-1]


def _rest(keys, rank, msg, parent, m, n, bases, subjects, is_rf, thread) -> list:
    """Steps 2 to 6 over step 1's M containers.  Children are linked lists
    (FIRST, LAST, NEXT), in container creation order as step 1 made them."""
    cap = m + n                         # and step 5's dummies
    msg.extend([-1] * (cap - len(msg)))
    parent.extend([-1] * (cap - len(parent)))
    first = [-1] * cap
    last = [-1] * cap
    nxt = [-1] * cap
    for c in range(m):
        p = parent[c]
        if p >= 0:
            if last[p] < 0:
                first[p] = c
            else:
                nxt[last[p]] = c
            last[p] = c
    # (2) the root set, in creation order
    roots = [c for c in range(m) if parent[c] < 0]
    # (3) prune dummies: every message (and root) takes as children the
    # messages below it through dummies only, empty dummies vanishing.  Each
    # dummy is crossed once, from its nearest kept ancestor: linear however
    # deep the dummies nest
    stack = [c for c in roots if first[c] >= 0]
    todo: list = []
    while stack:
        b = stack.pop()
        head = tail = -1
        _push_kids(todo, first, nxt, b)
        while todo:
            c = todo.pop()
            if msg[c] < 0:
                _push_kids(todo, first, nxt, c)
            else:
                parent[c] = b
                if tail < 0:
                    head = c
                else:
                    nxt[tail] = c
                tail = c
                stack.append(c)
        if tail >= 0:
            nxt[tail] = -1
        first[b] = head
        last[b] = tail
    top = []
    for r in roots:
        if msg[r] < 0:
            if first[r] < 0:
                continue
            # (3B) a dummy's children are promoted to the root set only
            # when there is just one
            if first[r] == last[r]:
                r = first[r]
                parent[r] = -1
        top.append(r)
    del roots

    def order(c: int) -> int:
        """Sort position: the message's rank, or a dummy's first child's
        (-1 for an empty dummy, which is never sorted)."""
        while msg[c] < 0:
            c = first[c]
            if c < 0:
                return -1
        return rank[msg[c]]

    def sort_kids(c: int) -> None:
        kids = []
        d = first[c]
        while d >= 0:
            kids.append(d)
            d = nxt[d]
        if len(kids) > 1:
            kids.sort(key=order)
            for a, b in zip(kids, kids[1:]):
                nxt[a] = b
            nxt[kids[-1]] = -1
            first[c] = kids[0]
            last[c] = kids[-1]

    def adopt(p: int, c: int) -> None:
        parent[c] = p
        nxt[c] = -1
        if last[p] < 0:
            first[p] = c
        else:
            nxt[last[p]] = c
        last[p] = c

    def subject_of(c: int) -> int:
        """The message whose base subject is C's thread's: C's, or a
        dummy's first child's (-1: none)."""
        return msg[c] if msg[c] >= 0 else (msg[first[c]] if first[c] >= 0 else -1)

    # (4) root dummies' children by date, then the root set by date (a
    # dummy's by its earliest child)
    for r in top:
        if msg[r] < 0:
            sort_kids(r)
    top.sort(key=order)
    # (5) gather roots with the same base subject; a dummy wins the base,
    # else a message that is not a reply or forward over one that is
    subj: dict = {}
    for r in top:
        x = subject_of(r)
        base = bases[x] if x >= 0 else ""
        if not base:
            continue
        cur = subj.get(base, -1)
        if cur < 0:
            subj[base] = r
        elif msg[cur] >= 0 and (msg[r] < 0 or (is_rf(subjects[msg[cur]])
                                               and not is_rf(subjects[x]))):
            subj[base] = r
    gone = [False] * cap
    where = [-1] * cap                  # a root's index in merged
    merged = []
    for r in top:
        if gone[r] or parent[r] >= 0:
            continue
        x = subject_of(r)
        base = bases[x] if x >= 0 else ""
        cur = subj.get(base, -1) if base else -1
        if cur < 0 or cur == r:
            where[r] = len(merged)
            merged.append(r)
            continue
        if msg[cur] < 0 and msg[r] < 0:
            # both dummies: r's children join cur's
            c = first[r]
            while c >= 0:
                d = nxt[c]
                adopt(cur, c)
                c = d
            first[r] = last[r] = -1
            gone[r] = True
        elif msg[cur] < 0:
            adopt(cur, r)
        elif is_rf(subjects[msg[r]]) and not is_rf(subjects[msg[cur]]):
            adopt(cur, r)
        else:
            # neither a dummy (nor r a reply to cur): a new dummy holds both,
            # in cur's place at the root
            d = m
            m += 1
            i = where[cur]
            if i < 0:
                i = len(merged)
                merged.append(d)
            else:
                merged[i] = d
            where[d] = i
            adopt(d, cur)
            adopt(d, r)
            subj[base] = d
    top = [r for r in merged if parent[r] < 0 and not gone[r]]
    del merged, gone, where, subj
    # (6) every set of siblings by date, grandchildren before children (the
    # reverse of a preorder), each container frozen to a node once its
    # children are
    pre = []
    stack = list(top)
    while stack:
        b = stack.pop()
        pre.append(b)
        c = first[b]
        while c >= 0:
            stack.append(c)
            c = nxt[c]
    if thread is None:
        for b in reversed(pre):
            sort_kids(b)
        top.sort(key=order)
        return _wire(top, first, nxt, msg, keys)
    new = tuple.__new__
    frozen: list = [None] * cap
    for b in reversed(pre):
        sort_kids(b)
        kids = []
        c = first[b]
        while c >= 0:
            kids.append(frozen[c])
            frozen[c] = None
            c = nxt[c]
        frozen[b] = new(thread, (keys[msg[b]] if msg[b] >= 0 else None, tuple(kids)))
    top.sort(key=order)
    return [frozen[r] for r in top]
