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
from array import array
from operator import itemgetter
from typing import NamedTuple, Sequence

from mailaccess import _speedups
from mailaccess.store.emails import load_record

from . import facts as _facts
from .facts import normalize_msgid
from .sort import collate

_impl = _speedups.load("thread")

__all__ = ["Thread", "Columns", "columns", "orderedsubject", "references", "OVER_COLUMNS",
           "orderedsubject_response", "references_response",
           "thread_orderedsubject", "thread_references",
           "normalize_msgid", "is_reply_or_forward"]


class Thread(NamedTuple):
    """One message (KEY; None for a dummy) and the threads below it."""

    key: int | None
    children: tuple["Thread", ...] = ()


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


class Columns(NamedTuple):
    """What the algorithms read of each candidate, in candidate order: the
    RFC 5256 sent date, the collated base subject (section 2.1), the
    normalized Message-ID, References (else the first In-Reply-To) and the
    subject; for the email ids EIDS of one account at index generation GEN.
    Each value depends on its email id alone (an email's content never
    changes; a reindex bumps GEN): so columns stay right for as long as GEN
    does, and the columns of a longer candidate list start with those of
    any prefix of it (``columns``'s OLD)."""

    gen: int
    eids: array
    dates: list
    bases: list
    mids: list
    refs: list
    subjects: list
    nbytes: int           # an estimate from above, for a cache


_SENT = itemgetter(0)           # Facts.sent
_BASE = itemgetter(4)           # Facts.base
_MID = itemgetter(12)           # Facts.message_id
_REFS = itemgetter(13)          # Facts.refs
_SUBJECT = itemgetter(3)        # Facts.subject
assert [_facts.Facts._fields[i] for i in (0, 3, 4, 12, 13)] == \
    ["sent", "subject", "base", "message_id", "refs"]


def columns(view, acc: int, eids: Sequence[int], old: Columns | None = None) -> Columns:
    """The columns of the emails EIDS (candidate order) of account ACC.
    OLD: columns computed earlier for this account (or None); when its ids
    are a prefix of EIDS at the current index generation, only the rest is
    read (new mail arrives above the known UIDs)."""
    gen = view.index_generation(acc)
    eids = eids if isinstance(eids, array) else array("I", eids)
    if old is not None and old.gen == gen and eids[:len(old.eids)] == old.eids:
        if len(eids) == len(old.eids):
            return old
        more = _read(view, acc, eids[len(old.eids):], gen)
        return Columns(gen, eids, *(a + b for a, b in zip(old[2:7], more[2:7])),
                       old.nbytes + more.nbytes)
    return _read(view, acc, eids, gen)


def _read(view, acc: int, eids: array, gen: int) -> Columns:
    fs = _facts.facts(view, acc, eids)
    if None in fs:
        fs = [_facts.EMPTY if f is None else f for f in fs]
    dates = list(map(_SENT, fs))
    if None in dates:
        for p, date in enumerate(dates):
            if date is None:
                # RFC 5256 section 2.2: the internal date when the Date:
                # header is missing or bad (0 for an email that is gone)
                rec = load_record(view, acc, eids[p], members=False)
                dates[p] = rec.received_at if rec is not None else 0
    raw = list(map(_BASE, fs))
    memo = {b: collate(b) for b in set(raw)}
    bases = list(map(memo.__getitem__, raw))
    # per message: the list slots, the date, the collated base subject's
    # header, and the subject's and Message-ID's (the facts cache may let go
    # of them while these hold them), 300 bytes; the base subject's and the
    # subject's characters, 1 byte each if ASCII, else up to 4; 60 per
    # reference (tracemalloc on bench_imap's 10,000: 1.4 MB of objects of
    # their own, 2.9 MB with the subjects and ids; counted 3.6 MB)
    refs = list(map(_REFS, fs))
    chars = sum(map(len, raw))
    nbytes = 200 + 300 * len(fs) + chars * (2 if "".join(raw).isascii() else 8) \
        + 60 * sum(map(len, refs))
    return Columns(gen, eids, dates, bases, list(map(_MID, fs)), refs,
                   list(map(_SUBJECT, fs)), nbytes)


# ------------------------------------------------------------ the algorithms

def thread_orderedsubject(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 ORDEREDSUBJECT ("poor man's threading"): messages sorted by
    base subject, then sent date (then sequence number); each run of one
    base subject is a thread, its first message the parent of the others;
    threads ordered by their first message's date (then sequence number)."""
    return orderedsubject(columns(view, acc, [e for _, e in candidates]),
                          [k for k, _ in candidates])


def thread_references(view, acc: int, candidates: Sequence[tuple[int, int]]) -> list[Thread]:
    """RFC 5256 REFERENCES threading."""
    return references(columns(view, acc, [e for _, e in candidates]),
                      [k for k, _ in candidates])


def orderedsubject(c: Columns, keys: list[int]) -> list[Thread]:
    """ORDEREDSUBJECT over the columns C, answering with KEYS (parallel)."""
    return _impl.orderedsubject(keys, c.dates, c.bases, Thread)


def references(c: Columns, keys: list[int]) -> list[Thread]:
    """REFERENCES over the columns C, answering with KEYS (parallel)."""
    return _impl.references(keys, c.dates, c.mids, c.refs, c.bases, c.subjects,
                            is_reply_or_forward, Thread)


def _response(body: bytes) -> bytes:
    """``* THREAD`` with BODY, as ``serialize.thread`` writes it."""
    return b"* THREAD " + body + b"\r\n" if body else b"* THREAD\r\n"


def orderedsubject_response(c: Columns, keys: list[int]) -> bytes:
    """``S.thread(orderedsubject(C, KEYS))``, without making the trees."""
    return _response(_impl.orderedsubject(keys, c.dates, c.bases, None))


def references_response(c: Columns, keys: list[int]) -> bytes:
    """``S.thread(references(C, KEYS))``, without making the trees."""
    return _response(_impl.references(keys, c.dates, c.mids, c.refs, c.bases, c.subjects,
                                      is_reply_or_forward, None))


OVER_COLUMNS = {thread_references: references_response,
                thread_orderedsubject: orderedsubject_response}
"""Each algorithm's ``* THREAD`` response over columns and keys
(imap_sortcache keeps the columns)."""
