"""IMAP THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES.

Both algorithms take ``(key, email id)`` candidates in mailbox order (the
order is the "sequence number" tie-break) and return a list of
:class:`Thread` trees of keys; a key of None is a dummy (a parent that is
not among the candidates).  Everything is iterative, so a reply chain of
any length cannot hit the recursion limit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from mailaccess.mime import index as mindex
from mailaccess.store.emails import load_email
from mailaccess.store.records import EmailRecord

from .sort import collate, sent_date

__all__ = ["Thread", "thread_orderedsubject", "thread_references",
           "normalize_msgid", "is_reply_or_forward"]


@dataclass(frozen=True, slots=True)
class Thread:
    key: int | None
    children: tuple["Thread", ...] = ()


@dataclass(slots=True)
class _Msg:
    key: int
    seq: int          # candidate position: the tie-break
    date: int         # RFC 5256 sent date
    subject: str      # original subject
    base: str         # collated base subject
    message_id: str | None
    refs: tuple[str, ...]

    @property
    def order(self) -> tuple[int, int]:
        return (self.date, self.seq)


def normalize_msgid(mid: str | None) -> str | None:
    """A msg-id in one form (RFC 5256: quoting must not cause non-matches):
    without angle brackets, white space or local-part quoting.  Comparison
    stays case-sensitive."""
    if not mid:
        return None
    s = "".join(mid.split()).strip("<>")
    local, at, dom = s.rpartition("@")
    if at and '"' in local:
        local = re.sub(r'\\(.)', r"\1", local.replace('"', ""))
        s = local + "@" + dom
    return s or None


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


def _messages(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[_Msg]:
    empty = EmailRecord(0, b"", 0, 0, 0, 0, 0, [], [])
    out = []
    for seq, (key, eid) in enumerate(candidates):
        em = load_email(view, acc, eid, members=False)
        rec = em.record if em is not None else empty
        mi = em.index if em is not None else None
        if mi is None:
            out.append(_Msg(key, seq, rec.received_at, "", "", None, ()))
            continue
        subject = mi.subject or ""
        refs = tuple(r for r in map(normalize_msgid, mi.references) if r)
        if not refs:
            first = next((r for r in map(normalize_msgid, mi.in_reply_to) if r), None)
            refs = (first,) if first else ()
        out.append(_Msg(key, seq, sent_date(rec, mi), subject,
                        collate(mindex.base_subject(subject)), normalize_msgid(mi.message_id),
                        refs))
    return out


# ------------------------------------------------------------ ORDEREDSUBJECT

def thread_orderedsubject(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 ORDEREDSUBJECT ("poor man's threading")."""
    msgs = sorted(_messages(view, acc, candidates), key=lambda x: (x.base, x.date, x.seq))
    groups: list[list[_Msg]] = []
    for x in msgs:
        if groups and groups[-1][0].base == x.base:
            groups[-1].append(x)
        else:
            groups.append([x])
    groups.sort(key=lambda g: g[0].order)
    return [Thread(g[0].key, tuple(Thread(x.key) for x in g[1:])) for g in groups]


# ------------------------------------------------------------ REFERENCES


class _Box:
    """A container: a message, or a dummy (msg None), in the thread tree."""

    __slots__ = ("msg", "parent", "children")

    def __init__(self, msg: _Msg | None = None):
        self.msg = msg
        self.parent: _Box | None = None
        self.children: list[_Box] = []


def _descends(a: _Box, b: _Box) -> bool:
    """Is A the same as or a descendant of B?"""
    while a is not None:
        if a is b:
            return True
        a = a.parent
    return False


class _Roots:
    """The root of a box's tree, while one message's references are linked
    (step 1A: the only change then is a root hung under a box, ``attached``).
    Each box is walked up once per message: a References list of R ids
    linked as a chain walked its whole depth per id (R * R / 2 steps: 2.5 s
    for 16,000 ids, and a 1 MB field holds 160,000)."""

    __slots__ = ("known", "moved")

    def __init__(self):
        self.known: dict[_Box, _Box] = {}   # box -> its root when walked
        self.moved: dict[_Box, _Box] = {}   # a former root -> the root it hangs under

    def find(self, b: _Box) -> _Box:
        known = self.known
        path = []
        while b.parent is not None and b not in known:
            path.append(b)
            b = b.parent
        r = known.get(b, b)
        moved = self.moved
        if r in moved:
            hops = []
            while r in moved:
                hops.append(r)
                r = moved[r]
            for h in hops:
                moved[h] = r
        for p in path:
            known[p] = r
        known[b] = r
        return r

    def attached(self, root: _Box, under: _Box) -> None:
        """ROOT (a root) was linked below a box of the tree rooted at UNDER."""
        self.moved[root] = under


def _unlink(c: _Box) -> None:
    if c.parent is not None:
        c.parent.children.remove(c)
        c.parent = None


def _link(parent: _Box, child: _Box) -> None:
    child.parent = parent
    parent.children.append(child)


def _order(c: _Box) -> tuple[int, int]:
    """Sort position: the message's, or a dummy's first (sorted) child's."""
    while c.msg is None:
        if not c.children:
            return (0, -1)
        c = c.children[0]
    return c.msg.order


def _thread_subject(c: _Box) -> tuple[str, _Msg | None]:
    m = c.msg if c.msg is not None else (c.children[0].msg if c.children else None)
    return (m.base if m is not None else ""), m


def thread_references(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 REFERENCES threading."""
    msgs = _messages(view, acc, candidates)
    table: dict[object, _Box] = {}
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
        roots = _Roots()
        for ref in x.refs:                  # (1A)
            rb = table.get(ref)
            if rb is None:
                rb = table[ref] = _Box()
            # rb has no parent, so prev descends from rb exactly when rb is
            # the root of prev's tree: linking them would close a loop
            if prev is not None and rb.parent is None and rb is not prev:
                top = roots.find(prev)
                if top is not rb:
                    _link(prev, rb)
                    roots.attached(rb, top)
            prev = rb
        # (1B) the last reference becomes the parent: any current parent (from a
        # truncated References elsewhere) is broken first, and the new link is
        # not made when it would close a loop, so the message may end up a root
        _unlink(box)
        if prev is not None and not _descends(prev, box):
            _link(prev, box)
    # (2) the root set
    roots = [b for b in table.values() if b.parent is None]
    del table
    # (3) prune dummies, deepest first
    pre: list[_Box] = []
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
    top: list[_Box] = []
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
    # (6) sort every set of siblings by date, grandchildren before children
    pre = []
    stack = list(top)
    while stack:
        b = stack.pop()
        pre.append(b)
        stack.extend(b.children)
    for b in reversed(pre):
        b.children.sort(key=_order)
    top.sort(key=_order)
    return _freeze(top)


def _freeze(top: list[_Box]) -> list[Thread]:
    """Containers to Thread values, bottom-up without recursion."""
    pre: list[_Box] = []
    stack = list(top)
    while stack:
        b = stack.pop()
        pre.append(b)
        stack.extend(b.children)
    done: dict[int, Thread] = {}
    for b in reversed(pre):
        done[id(b)] = Thread(b.msg.key if b.msg is not None else None,
                             tuple(done[id(c)] for c in b.children))
    return [done[id(b)] for b in top]
