"""IMAP THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES.

Both algorithms take ``(key, email id)`` candidates in mailbox order (the
order is the "sequence number" tie-break) and return a list of
:class:`Thread` trees of keys; a key of None is a dummy (a parent that is
not among the candidates).  Everything is iterative, so a reply chain of
any length cannot hit the recursion limit, and REFERENCES is O(n log n) in
the messages and their references whatever the shape of the chains: the
loop checks ask :class:`_Forest` (link-cut trees) for a root instead of
walking up, dummies are pruned in one pass, subject merging indexes the
root list.  tests/thread_oracle.py keeps the walking version as the oracle.
"""
from __future__ import annotations

import re
from collections import namedtuple
from typing import NamedTuple, Sequence

from mailaccess.store.emails import load_record

from . import facts as _facts
from .facts import normalize_msgid
from .sort import collate

__all__ = ["Thread", "thread_orderedsubject", "thread_references",
           "normalize_msgid", "is_reply_or_forward"]


class Thread(NamedTuple):
    """One message (KEY; None for a dummy) and the threads below it."""

    key: int | None
    children: tuple["Thread", ...] = ()


class _Msg(namedtuple("_Msg", "key seq date subject base message_id refs order")):
    """One candidate as the algorithms see it: KEY, SEQ (its candidate
    position: the tie-break), DATE (RFC 5256 sent date), SUBJECT (as
    decoded), BASE (collated base subject), MESSAGE_ID, REFS; ORDER is
    its position among siblings, (date, seq) as one integer (seq is below
    2**32).  A tuple of no containers: once the garbage collector has seen
    one it stops tracking it, so 10,000 of them alive during a THREAD add
    nothing to its later passes."""

    __slots__ = ()

    def __new__(cls, key: int, seq: int, date: int, subject: str, base: str,
                message_id: str | None, refs: tuple[str, ...]):
        return tuple.__new__(cls, (key, seq, date, subject, base, message_id, refs,
                                   (date << 32) + seq))


_REPLY_LEADER = re.compile(r"^(?:\[[^\[\]]*\]\s*)*(?:re|fwd?)\s*(?:\[[^\[\]]*\]\s*)?:", re.I)


def is_reply_or_forward(subject: str) -> bool:
    """Whether base subject extraction removes a subj-refwd, a "(fwd)"
    subj-trailer or a subj-fwd-hdr/trl (RFC 5256, REFERENCES)."""
    s = " ".join(subject.split())
    if s.lower().endswith("(fwd)"):
        return True
    if s[:5].lower() == "[fwd:" and s.endswith("]"):
        return True
    # A leader after leading blobs that base subject extraction would strip
    # is the leader at the start: a failing match never succeeds after
    # dropping blobs of the same run, so one anchored (linear) match decides.
    return _REPLY_LEADER.match(s) is not None


def _columns(view, acc: int, candidates: Sequence[tuple[int, int]]):
    """(dates, facts, collated base subjects) of CANDIDATES, in candidate
    order, from their facts (query/facts.py)."""
    fs = _facts.facts(view, acc, [e for _, e in candidates])
    dates = []
    bases = []
    memo: dict[str, str] = {}
    for p, f in enumerate(fs):
        if f is None:
            f = fs[p] = _facts.EMPTY
        date = f.sent
        if date is None:
            # RFC 5256 section 2.2: the internal date when the Date: header is
            # missing or bad (0 for an email that is gone)
            rec = load_record(view, acc, candidates[p][1], members=False)
            date = rec.received_at if rec is not None else 0
        dates.append(date)
        base = memo.get(f.base)
        if base is None:
            base = memo[f.base] = collate(f.base)
        bases.append(base)
    return dates, fs, bases


def _messages(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[_Msg]:
    dates, fs, bases = _columns(view, acc, candidates)
    return [_Msg(key, seq, dates[seq], f.subject, bases[seq], f.message_id, f.refs)
            for seq, ((key, _eid), f) in enumerate(zip(candidates, fs))]


# ------------------------------------------------------------ ORDEREDSUBJECT

def thread_orderedsubject(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 ORDEREDSUBJECT ("poor man's threading"): messages sorted by
    base subject, then sent date (then sequence number); each run of one
    base subject is a thread, its first message the parent of the others;
    threads ordered by their first message's date (then sequence number)."""
    dates, _fs, bases = _columns(view, acc, candidates)
    keys = [k for k, _ in candidates]
    # positions sorted by (base, date, seq): stable sorts on C-level keys, so
    # no per-message tuple or list is made for the garbage collector to walk
    idx = sorted(range(len(keys)), key=dates.__getitem__)
    idx.sort(key=bases.__getitem__)
    starts = [i for i in range(len(idx)) if i == 0 or bases[idx[i]] != bases[idx[i - 1]]]
    starts.append(len(idx))
    # threads by their first message's (date, seq)
    firsts = [idx[i] for i in starts[:-1]]
    order = sorted(range(len(firsts)), key=firsts.__getitem__)
    order.sort(key=[dates[f] for f in firsts].__getitem__)
    new = tuple.__new__               # Thread(key, children), without its Python __new__
    out = []
    for j in order:
        a, b = starts[j], starts[j + 1]
        kids = tuple([new(Thread, (keys[s], ())) for s in idx[a + 1:b]]) if b - a > 1 else ()
        out.append(new(Thread, (keys[idx[a]], kids)))
    return out


# ------------------------------------------------------------ REFERENCES


class _Box:
    """A container: a message, or a dummy (msg None), in the thread tree.
    ``n`` is its node in :class:`_Forest`, ``frozen`` its Thread at the end."""

    __slots__ = ("msg", "parent", "children", "n", "frozen")

    def __init__(self, msg: _Msg | None = None, n: int = -1, children=None):
        self.msg = msg
        self.parent: _Box | None = None
        # CHILDREN () until the first child comes (_adopt): most containers
        # never get one, and a list each is 10,000 more objects the garbage
        # collector walks while a THREAD runs
        self.children: list[_Box] = [] if children is None else children
        self.n = n
        self.frozen: Thread | None = None       # its Thread, once _sorted made it


class _Forest:
    """The roots of step 1's containers under links and cuts: link-cut trees
    (Sleator and Tarjan, "A data structure for dynamic trees", 1983), without
    re-rooting.  ``root``, ``link`` and ``cut`` cost amortised O(log n) each,
    so the loop checks of RFC 5256 REFERENCES steps 1A and 1B ("no loops are
    permitted") cost O(log n) each rather than the depth of the chain: a
    chain of 40,000 replies, each walked to its root, took 13 s.

    Node ``x`` has splay-tree children ``lo[x]``/``hi[x]`` (shallower/deeper
    on its preferred path) and ``up[x]``: its splay parent, or, at the top of
    a splay tree, the path's parent in the real tree.  No recursion."""

    __slots__ = ("lo", "hi", "up")

    def __init__(self):
        self.lo: list[int] = []
        self.hi: list[int] = []
        self.up: list[int] = []

    def add(self) -> int:
        self.lo.append(-1)
        self.hi.append(-1)
        self.up.append(-1)
        return len(self.up) - 1

    def _splay(self, x: int) -> None:
        lo, hi, up = self.lo, self.hi, self.up
        while True:
            p = up[x]
            if p < 0 or (lo[p] != x and hi[p] != x):
                return                      # x tops its splay tree
            g = up[p]
            if g >= 0 and (lo[g] == p or hi[g] == p):
                # zig-zig rotates the parent first, zig-zag x twice
                self._rotate(p if (lo[g] == p) == (lo[p] == x) else x)
            self._rotate(x)

    def _rotate(self, x: int) -> None:
        lo, hi, up = self.lo, self.hi, self.up
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

    def _access(self, x: int) -> None:
        """Make the path from x's root to x preferred; x tops its splay tree."""
        hi, up = self.hi, self.up
        last, y = -1, x
        while y >= 0:
            self._splay(y)
            hi[y] = last
            last, y = y, up[y]
        self._splay(x)

    def root(self, x: int) -> int:
        self._access(x)
        lo = self.lo
        while lo[x] >= 0:
            x = lo[x]
        self._splay(x)
        return x

    def link(self, x: int, parent: int) -> None:
        """X, a root, becomes a child of PARENT (of another tree)."""
        self._access(x)
        self.up[x] = parent

    def cut(self, x: int) -> None:
        """X leaves its parent (it has one)."""
        self._access(x)
        a = self.lo[x]
        self.lo[x] = -1
        self.up[a] = -1


def _order(c: _Box) -> int:
    """Sort position: the message's, or a dummy's first (sorted) child's
    (_Msg.order; an empty dummy's is that of (date 0, seq -1))."""
    while c.msg is None:
        if not c.children:
            return -1
        c = c.children[0]
    return c.msg.order


def _thread_subject(c: _Box) -> tuple[str, _Msg | None]:
    m = c.msg if c.msg is not None else (c.children[0].msg if c.children else None)
    return (m.base if m is not None else ""), m


def _adopt(parent: _Box, child: _Box) -> None:
    """CHILD joins PARENT's children (a list from the first one on)."""
    if parent.children:
        parent.children.append(child)
    else:
        parent.children = [child]


def _link(parent: _Box, child: _Box) -> None:
    child.parent = parent
    _adopt(parent, child)


def thread_references(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 REFERENCES threading."""
    return _references(_messages(view, acc, candidates))


def _link_messages(msgs: list[_Msg]) -> list[_Box]:
    """RFC 5256 REFERENCES step (1): every container, in creation order,
    with its parent set (children are not filled in)."""
    boxes: list[_Box] = []
    table: dict[str, _Box] = {}
    forest = _Forest()
    nkids: list[int] = []                   # children per container, for 1B's shortcut

    def new(mid: str | None) -> _Box:
        b = _Box(None, forest.add(), ())
        nkids.append(0)
        boxes.append(b)
        if mid is not None:
            table[mid] = b
        return b

    def link(parent: _Box, child: _Box) -> None:
        child.parent = parent
        forest.link(child.n, parent.n)
        nkids[parent.n] += 1

    for x in msgs:
        mid = x.message_id
        box = table.get(mid) if mid is not None else None
        if box is None or box.msg is not None:
            # (1A) a missing or duplicate Message-ID gets a unique one: a
            # container no reference can name
            box = new(mid if box is None else None)
        box.msg = x
        prev = None
        for ref in x.refs:                  # (1A)
            rb = table.get(ref)
            if rb is None:
                rb = new(ref)
            # not when rb already has a parent; and rb has no parent, so
            # prev descends from rb exactly when rb is the root of prev's
            # tree: linking them would close a loop
            if prev is not None and rb.parent is None and rb is not prev \
                    and forest.root(prev.n) != rb.n:
                link(prev, rb)
            prev = rb
        # (1B) the last reference becomes the parent: any current parent (from a
        # truncated References elsewhere) is broken first, and the new link is
        # not made when it would close a loop (prev in box's own subtree, whose
        # root box now is), so the message may end up a root
        if box.parent is not None:
            forest.cut(box.n)
            nkids[box.parent.n] -= 1
            box.parent = None
        if prev is not None and prev is not box and (
                nkids[box.n] == 0 or forest.root(prev.n) != box.n):
            link(prev, box)
    return boxes


def _references(msgs: list[_Msg]) -> list[Thread]:
    boxes = _link_messages(msgs)
    for b in boxes:
        if b.parent is not None:
            _adopt(b.parent, b)
    # (2) the root set; the table is gone with _link_messages
    roots = [b for b in boxes if b.parent is None]
    del boxes
    # (3) prune dummies: every message (and root) takes as children the
    # messages below it through dummies only, empty dummies vanishing.  Each
    # dummy is crossed once, from its nearest kept ancestor, so this is
    # linear however deep the dummies nest (gathering them bottom-up copied
    # a chain of dummies' lists once per level).
    stack = [b for b in roots if b.children]
    while stack:
        b = stack.pop()
        if not b.children:
            continue                        # (most messages: nothing below)
        kids: list[_Box] = []
        todo = b.children[::-1]
        while todo:
            ch = todo.pop()
            if ch.msg is None:
                todo.extend(reversed(ch.children))
            else:
                ch.parent = b
                kids.append(ch)
        b.children = kids
        stack.extend(kids)
    top: list[_Box] = []
    for r in roots:
        if r.msg is None:
            if not r.children:
                continue
            # (3B) a dummy's children are promoted to the root set only
            # when there is just one
            if len(r.children) == 1:
                r = r.children[0]
                r.parent = None
        top.append(r)
    # (4) root dummies by their earliest child, then the root set by date
    for r in top:
        if r.msg is None:
            r.children.sort(key=_order)
    top.sort(key=_order)
    # (5) gather roots with the same base subject
    subjects: dict[str, _Box] = {}
    for r in top:
        base, m = _thread_subject(r)
        if not base:
            continue
        cur = subjects.get(base)
        if cur is None:
            subjects[base] = r
        elif cur.msg is not None and (
                r.msg is None
                or (is_reply_or_forward(cur.msg.subject) and not is_reply_or_forward(m.subject))):
            subjects[base] = r
    gone: set[int] = set()
    merged: list[_Box] = []
    where: dict[int, int] = {}              # id(box) -> its index in merged
    for r in top:
        if id(r) in gone or r.parent is not None:
            continue
        base, m = _thread_subject(r)
        cur = subjects.get(base) if base else None
        if cur is None or cur is r:
            where[id(r)] = len(merged)
            merged.append(r)
            continue
        if cur.msg is None and r.msg is None:
            for ch in r.children:
                _link(cur, ch)
            r.children = []
            gone.add(id(r))
        elif cur.msg is None:
            _link(cur, r)
        elif is_reply_or_forward(r.msg.subject) and not is_reply_or_forward(cur.msg.subject):
            _link(cur, r)
        else:
            d = _Box()
            i = where.get(id(cur))          # the dummy takes cur's place at the root
            if i is None:
                i = len(merged)
                merged.append(d)
            else:
                merged[i] = d
            where[id(d)] = i
            _link(d, cur)
            _link(d, r)
            subjects[base] = d
    top = [r for r in merged if r.parent is None and id(r) not in gone]
    return _sorted(top)


def _sorted(top: list[_Box]) -> list[Thread]:
    """Step 6 of RFC 5256's REFERENCES: every set of siblings sorted by date
    (grandchildren before children, no recursion), each container frozen to
    a Thread once its children are."""
    pre = []
    stack = list(top)
    while stack:
        b = stack.pop()
        pre.append(b)
        stack.extend(b.children)
    new = tuple.__new__               # Thread(key, children), without its Python __new__
    for b in reversed(pre):
        kids = b.children
        if len(kids) > 1:
            kids.sort(key=_order)
        b.frozen = new(Thread, (b.msg.key if b.msg is not None else None,
                                tuple([c.frozen for c in kids]) if kids else ()))
    top.sort(key=_order)
    return [b.frozen for b in top]
