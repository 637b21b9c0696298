"""THREAD=REFERENCES (RFC 5256) as it was written before it was made linear:
a test oracle for mailaccess.query.thread.

Every loop check walks from the container up to its root, a dummy's children
are gathered bottom-up by copying lists, and a merged subject's dummy looks
for its place in the root list by scanning it: quadratic on a long chain,
but each step is the RFC's sentence read literally.  ``references(msgs)``
takes a list of ``Msg`` (one candidate each; ``messages`` reads them from a
store view); ``core_references(msgs)`` runs the server's compiled (or pure)
core over the same list, so tests need no store.
"""
from collections import namedtuple

from mailaccess.query import thread as _thread
from mailaccess.query.thread import Thread, is_reply_or_forward


class Msg(namedtuple("Msg", "key seq date subject base message_id refs order")):
    """One candidate as the oracles see it: KEY, SEQ (its candidate
    position: the tie-break), DATE (RFC 5256 sent date), SUBJECT (as
    decoded), BASE (collated base subject), MESSAGE_ID, REFS; ORDER is
    its position among siblings, (date, seq) as one integer (seq is below
    2**32).  The server reads columns (``query.thread.Columns``)."""

    __slots__ = ()

    def __new__(cls, key: int, seq: int, date: int, subject: str, base: str,
                message_id, refs):
        return tuple.__new__(cls, (key, seq, date, subject, base, message_id, refs,
                                   (date << 32) + seq))


def messages(view, acc: int, candidates) -> list:
    """The Msg of each (key, email id) of CANDIDATES, from the server's columns."""
    c = _thread.columns(view, acc, [e for _, e in candidates])
    return [Msg(key, seq, c.dates[seq], c.subjects[seq], c.bases[seq], c.mids[seq],
                c.refs[seq]) for seq, (key, _eid) in enumerate(candidates)]


def core_references(msgs: list) -> list:
    """The server's REFERENCES core over MSGS (their positions are the
    sequence numbers)."""
    return _thread._impl.references(
        [x.key for x in msgs], [x.date for x in msgs], [x.message_id for x in msgs],
        [x.refs for x in msgs], [x.base for x in msgs], [x.subject for x in msgs],
        is_reply_or_forward, Thread)


class _Box:
    """A container: a message (a ``Msg``) or a dummy (msg None)."""

    __slots__ = ("msg", "parent", "children", "frozen")

    def __init__(self, msg=None):
        self.msg = msg
        self.parent = None
        self.children = []
        self.frozen = None


def _order(c) -> int:
    """Sort position: the message's (date, seq), or a dummy's first
    child's; an empty dummy's is -1."""
    while c.msg is None:
        if not c.children:
            return -1
        c = c.children[0]
    return c.msg.order


def _thread_subject(c):
    m = c.msg if c.msg is not None else (c.children[0].msg if c.children else None)
    return (m.base if m is not None else ""), m


def _sorted(top) -> list:
    """(6) every set of siblings sorted by date, deepest first."""
    pre = []
    stack = list(top)
    while stack:
        b = stack.pop()
        pre.append(b)
        stack.extend(b.children)
    for b in reversed(pre):
        b.children.sort(key=_order)
        b.frozen = Thread(b.msg.key if b.msg is not None else None,
                          tuple(c.frozen for c in b.children))
    top.sort(key=_order)
    return [b.frozen for b in top]


def _descends(a, b) -> bool:
    """Is A the same as or a descendant of B?"""
    while a is not None:
        if a is b:
            return True
        a = a.parent
    return False


def _unlink(c) -> None:
    if c.parent is not None:
        c.parent.children.remove(c)
        c.parent = None


def _link(parent, child) -> None:
    child.parent = parent
    parent.children.append(child)


def references(msgs) -> list[Thread]:
    table = {}
    # (1) link messages by their references
    for x in msgs:
        mid = x.message_id
        box = table.get(mid) if mid is not None else None
        if box is None or box.msg is not None:
            if box is not None or mid is None:
                mid = ("\0unique", x.seq)   # missing or duplicate Message-ID
            box = table.setdefault(mid, _Box())
        box.msg = x
        prev = None
        for ref in x.refs:                  # (1A)
            rb = table.get(ref)
            if rb is None:
                rb = table[ref] = _Box()
            if prev is not None and rb.parent is None and not _descends(prev, rb):
                _link(prev, rb)
            prev = rb
        # (1B) break the current parent, link to the last reference unless a loop
        _unlink(box)
        if prev is not None and not _descends(prev, box):
            _link(prev, box)
    # (2) the root set
    roots = [b for b in table.values() if b.parent is None]
    del table
    # (3) prune dummies, deepest first
    pre = []
    stack = list(roots)
    while stack:
        b = stack.pop()
        pre.append(b)
        stack.extend(b.children)
    for b in reversed(pre):
        kids = []
        for ch in b.children:
            if ch.msg is None:
                kids.extend(ch.children)   # empty dummies vanish
            else:
                kids.append(ch)
        for ch in kids:
            ch.parent = b
        b.children = kids
    top = []
    for r in roots:
        if r.msg is None:
            if not r.children:
                continue
            if len(r.children) == 1:
                r = r.children[0]
                r.parent = None
        top.append(r)
    # (4) sort the root set by date (a dummy by its earliest child)
    for r in top:
        if r.msg is None:
            r.children.sort(key=_order)
    top.sort(key=_order)
    # (5) gather roots with the same base subject
    subjects = {}
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
    gone = set()
    merged = []
    for r in top:
        if id(r) in gone or r.parent is not None:
            continue
        base, m = _thread_subject(r)
        cur = subjects.get(base) if base else None
        if cur is None or cur is r:
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
            for i, x in enumerate(merged):   # the dummy takes cur's place at the root
                if x is cur:
                    merged[i] = d
                    break
            else:
                merged.append(d)
            _link(d, cur)
            _link(d, r)
            subjects[base] = d
    top = [r for r in merged if r.parent is None and id(r) not in gone]
    return _sorted(top)
