"""IMAP SEARCH keys (proto/imap/events) -> the neutral query model (query/).

Sequence numbers become UID sets against the session's view, dates become
epoch ranges, flags become keywords.  RFC 9051 6.4.4: BEFORE/ON/SINCE compare
the date of the internal date "disregarding time and timezone"; we take the
date in UTC (the internal date's own zone is kept for display only).
"""
from __future__ import annotations

import calendar
import time

from .. import ids
from ..proto.imap import events as ev
from ..query import model as q
from ..views.imap_selected import SelectedMailbox
from .imap_fmt import keyword_of


def _day(d) -> int:
    return calendar.timegm(d.timetuple())


def _date_range(op: str, d) -> dict:
    start = _day(d)
    if op == "before":
        return {"before": start}
    if op == "since":
        return {"after": start}
    return {"after": start, "before": start + 86400}


def to_query(key, sel: SelectedMailbox, acc: int, now: float | None = None,
             ranges: bool = False) -> q.Query:
    """KEY as a query over SEL's view.  RANGES: sequence and UID sets
    become UID ranges (a search over the view now: the same answer, built
    in steps of the ranges), else the UIDs they name now (a context kept
    for later, RFC 5267, matches no message that arrives in a range)."""
    now = time.time() if now is None else now

    def conv(k):
        if isinstance(k, ev.All):
            return q.All()
        if isinstance(k, ev.And):
            return q.And([conv(x) for x in k.keys])
        if isinstance(k, ev.Or):
            return q.Or([conv(k.left), conv(k.right)])
        if isinstance(k, ev.Not):
            return q.Not(conv(k.key))
        if isinstance(k, ev.Flag):
            if k.flag.lower() == "\\recent":
                # the session's own \Recent messages (none for IMAP4rev2)
                node = q.Uids([(lo, hi - 1) for lo, hi in sel.recent] if sel.show_recent else ())
            else:
                kw = keyword_of(k.flag)
                node = q.Keyword(kw) if kw else q.Uids(())
            return node if k.present else q.Not(node)
        if isinstance(k, ev.Header):
            return q.Header(k.name.lower(), k.value)
        if isinstance(k, ev.Body):
            return q.Body(k.value)
        if isinstance(k, ev.Text):
            return q.Text(k.value)
        if isinstance(k, ev.Date):
            if k.field == "sent":
                # RFC 3501 6.4.4: the day written in the Date: header, in its own zone
                return q.Sent(**_date_range(k.op, k.date), wall_clock=True)
            cls = {"internal": q.Received, "saved": q.Saved}[k.field]
            return cls(**_date_range(k.op, k.date))
        if isinstance(k, ev.Size):
            return q.Larger(k.size) if k.op == "larger" else q.Smaller(k.size)
        if isinstance(k, ev.Sequence):
            if ranges and not k.set.saved:
                return q.Uids(sel.uid_ranges_for_set(k.set, k.uid))
            saved = sel.saved_result if k.set.saved else None
            if k.set.saved and not k.uid:
                uids = sel.uids_for_set(k.set, True, saved)
            else:
                uids = sel.uids_for_set(k.set, k.uid, saved)
            return q.Uids.of(uids)
        if isinstance(k, ev.ModSeq):
            return q.ModSeqAtLeast(k.modseq)
        if isinstance(k, ev.Age):
            n = int(now) - k.seconds
            # YOUNGER n: internal date within the last n seconds
            return q.Received(after=n) if k.op == "younger" else q.Received(before=n + 1)
        if isinstance(k, ev.ObjectId):
            n = ids.parse("E" if k.kind == "email" else "T", k.id)
            if n is None:
                return q.Uids(())
            return q.EmailIds(frozenset({n})) if k.kind == "email" else q.ThreadIds(
                frozenset({n}))
        if isinstance(k, ev.SaveDateSupported):
            return q.All()
        raise ValueError(f"unsupported search key {k!r}")

    return conv(key)
