"""IMAP THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES.

Both algorithms take ``(key, email id)`` candidates in mailbox order (the
order is the "sequence number" tie-break) and return a list of
:class:`Thread` trees of keys; a key of None is a dummy (a parent that is
not among the candidates).  This module reads the candidates' facts
(query/facts.py) into columns (dates, collated base subjects, Message-IDs,
References, subjects); the algorithms themselves are ``_speedups/thread_*``
(a compiled core and its pure twin, the source of truth): iterative, so a
reply chain of any length cannot hit the recursion limit, and REFERENCES is
O(n log n) in the messages and their references whatever the shape of the
chains (link-cut trees answer step 1's loop checks).  tests/thread_oracle.py
keeps the walking version, the RFC read literally, as the oracle.
"""
from __future__ import annotations

import re
from collections import namedtuple
from operator import itemgetter
from typing import NamedTuple, Sequence

from mailaccess import _speedups
from mailaccess.store.emails import load_record

from . import facts as _facts
from .facts import normalize_msgid
from .sort import collate

_impl = _speedups.load("thread")

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


_MID = itemgetter(12)           # Facts.message_id
_REFS = itemgetter(13)          # Facts.refs
_SUBJECT = itemgetter(3)        # Facts.subject
assert _facts.Facts._fields[12] == "message_id" and _facts.Facts._fields[13] == "refs" \
    and _facts.Facts._fields[3] == "subject"


def _messages(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[_Msg]:
    dates, fs, bases = _columns(view, acc, candidates)
    return [_Msg(key, seq, dates[seq], f.subject, bases[seq], f.message_id, f.refs)
            for seq, ((key, _eid), f) in enumerate(zip(candidates, fs))]


# ------------------------------------------------------------ the algorithms

def thread_orderedsubject(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 ORDEREDSUBJECT ("poor man's threading"): messages sorted by
    base subject, then sent date (then sequence number); each run of one
    base subject is a thread, its first message the parent of the others;
    threads ordered by their first message's date (then sequence number)."""
    dates, _fs, bases = _columns(view, acc, candidates)
    return _impl.orderedsubject([k for k, _ in candidates], dates, bases, Thread)


def thread_references(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 REFERENCES threading."""
    dates, fs, bases = _columns(view, acc, candidates)
    return _impl.references([k for k, _ in candidates], dates,
                            list(map(_MID, fs)), list(map(_REFS, fs)), bases,
                            list(map(_SUBJECT, fs)), is_reply_or_forward, Thread)


def _references(msgs: list[_Msg]) -> list[Thread]:
    """REFERENCES over _Msg values (their positions are the sequence
    numbers): for tests, whose messages need no store."""
    return _impl.references([x.key for x in msgs], [x.date for x in msgs],
                            [x.message_id for x in msgs], [x.refs for x in msgs],
                            [x.base for x in msgs], [x.subject for x in msgs],
                            is_reply_or_forward, Thread)
