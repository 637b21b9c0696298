"""The oracle of the search twins' record scan: the Python predicate over a
decoded email record that ``query/engine`` applied per message before
``match_records`` (stop 24). The server no longer runs it; the tests hold
both twins to it (tests/speedups/test_search_records.py)."""
from __future__ import annotations

from typing import Callable

from mailaccess.query import model as m
from mailaccess.store.records import EmailRecord


def record_test(q, mailbox: int | None) -> Callable[[EmailRecord], bool]:
    """A predicate over the decoded email record for the cheap nodes: what
    ``match_records`` computes from the encoded record (the tests hold the
    twins to it)."""
    t = type(q)
    if t is m.Keyword:
        name = q.name
        return lambda r: name in r.keywords
    if t is m.Larger:
        n = q.n
        return lambda r: r.size > n
    if t is m.Smaller:
        n = q.n
        return lambda r: r.size < n
    if t is m.Received:
        return lambda r: q.holds(r.received_at)
    if t is m.ModSeqAtLeast:
        n = q.n
        return lambda r: r.last_ms >= n
    if t is m.ThreadIds:
        ids = q.ids
        return lambda r: r.thread in ids
    if t is m.InMailbox:
        mbx = q.mailbox
        return lambda r: any(x.mailbox == mbx for x in r.members)
    if t is m.InMailboxOtherThan:
        not_in = q.mailboxes
        return lambda r: any(x.mailbox not in not_in for x in r.members)
    if t is m.Saved:
        if mailbox is not None:
            def saved(r):
                mem = r.member(mailbox)
                return mem is not None and q.holds(mem.savedate)
            return saved
        return lambda r: any(q.holds(x.savedate) for x in r.members)
    raise TypeError(f"not a query node: {q!r}")
