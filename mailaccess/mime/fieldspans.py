"""A message header split into fields once, for many ``HEADER.FIELDS`` lists.

IMAP ``BODY[HEADER.FIELDS (names)]`` and ``BODY[HEADER.FIELDS.NOT (names)]``
(RFC 3501 / RFC 9051 6.4.5) answer the header's field lines whose name is
(is not) one of NAMES, matched without regard to case, in message order, each
with its folded continuation lines, then a blank line.  A FETCH may carry many
such lists for one message; splitting the header once per list made it cost
the header's size times the lists.  ``FieldSpans`` splits the header once (the
way ``msgindex.split_header`` splits it: fields end at a blank line, at the
first line that is not a field, or at the end), keeping only where the fields
named in any of the lists lie; ``select`` then answers one list in time of its
output and its list, not of the header.

The split runs ``split_header`` over windows of about WINDOW bytes cut after
a line break (a field folded across the cut is carried over), so a header of
millions of tiny fields is never held as one list of millions of tuples.
This module owns the split and the selection; where it runs (the worker pool
for a big header) is the FETCH code's business (server/imap_session).
"""
from __future__ import annotations

import re
from array import array

from mailaccess import _speedups

_impl = _speedups.load("msgindex")

# bytes of header split per split_header call (then cut after the next LF)
WINDOW = 1 << 20
# a header at least this big is split off the event loop by FETCH (the
# fetchfmt hot path leaves such messages to the Python path, which hands the
# split to the worker pool): as storeio.OFFLOOP_BYTES for indexing
OFFLOOP_BYTES = 64 * 1024
# named fields a FieldSpans keeps in order too (FieldSpans.order)
ORDER_MAX = 64

# folded continuation lines (each starts with SP or HTAB, RFC 5322 2.2.3):
# they belong to the field before them, across a window's cut too
_CONTINUED = re.compile(rb"(?:[ \t][^\n]*\n?)*")


class FieldSpans:
    """Where the fields named in WANTED lie in the header BUF[START:END].

    ``order``: (lower-cased name, start, end) of those fields in message
    order while there are at most ORDER_MAX of them (offsets into BUF, END
    just past the field's last line break, or the header's end), else None
    and ``spans[name]``: the (start, end) of each field of that name,
    flattened, in message order.  ``first`` and ``last``: where the
    header's fields begin and end (-1, -1 when it has none).  Fields follow
    one another without a gap from ``first`` to ``last``."""

    __slots__ = ("wanted", "spans", "first", "last", "order")

    def __init__(self, buf: bytes, start: int, end: int, wanted):
        self.wanted = frozenset(n.lower() for n in wanted)
        self.spans: dict[str, array] = {}
        self.first = self.last = -1
        # (name, start, end) of the named fields in order while they are
        # few (the usual: a small message): a list is answered scanning
        # them, faster than merging spans (None once more than ORDER_MAX)
        self.order: list | None = []
        end = min(end, len(buf))
        pos = max(start, 0)
        split = _impl.split_header
        want = self.wanted
        open_name = None        # the last field seen, maybe folded on past the cut
        open_start = 0
        while pos < end:
            if open_name is not None:
                pos = _CONTINUED.match(buf, pos, end).end()
                if pos >= end:
                    break
            cut = pos + WINDOW
            if cut < end:
                nl = buf.find(b"\n", cut, end)
                cut = end if nl < 0 else nl + 1
            else:
                cut = end
            fields, _ = split(buf, pos, cut)
            if open_name is not None:       # it ends where this window's fields begin
                self._add(open_name, open_start, pos)
                open_name = None
            if not fields:
                return                      # a blank line, a line not a field
            if self.first < 0:
                self.first = fields[0][1]
            for name, fstart, _vs, fend in fields[:-1]:
                low = name.lower()
                if low in want:
                    self._add(low, fstart, fend)
            name, fstart, _vs, fend = fields[-1]
            self.last = fend
            if fend != cut or cut == end:   # the header ended in this window
                self._add(name.lower(), fstart, fend)
                return
            open_name, open_start = name.lower(), fstart
            pos = cut
        if open_name is not None:
            self.last = pos
            self._add(open_name, open_start, pos)

    def _add(self, low: str, start: int, end: int) -> None:
        self.last = end
        if low not in self.wanted:
            return
        order = self.order
        if order is not None:
            if len(order) < ORDER_MAX:
                order.append((low, start, end))
                return
            self.order = None           # many: by name from here on
            for o in order:
                self._span(*o)
        self._span(low, start, end)

    def _span(self, low: str, start: int, end: int) -> None:
        a = self.spans.get(low)
        if a is None:
            a = self.spans[low] = array("q")
        a.append(start)
        a.append(end)

    def select(self, buf: bytes, names, negate: bool) -> bytes:
        """``BODY[HEADER.FIELDS (NAMES)]`` (``.NOT`` when NEGATE) of the
        header split from BUF: the matching fields as they are in the
        message, each ending in a line break (CRLF added to a last field
        without one), then CRLF.  NAMES must be among those split for."""
        keys = {n.lower() for n in names}
        if not keys <= self.wanted:
            raise ValueError("field names not split for")
        if self.order is not None:      # a few fields: scanned, in order
            pairs = [(s, e) for low, s, e in self.order if low in keys]
        else:
            found = [self.spans[k] for k in keys if k in self.spans]
            if len(found) == 1:
                a = found[0]
                pairs = zip(a[0::2], a[1::2])
            else:
                pairs = sorted(p for a in found for p in zip(a[0::2], a[1::2]))
        out = []
        last = self.last
        if negate:      # the runs of fields between the named ones
            prev = self.first
            for s, e in pairs:
                if s > prev:
                    out.append(buf[prev:s])
                prev = e
            if prev < last:
                out.append(buf[prev:last])
                if buf[last - 1] != 10:
                    out.append(b"\r\n")
        else:           # the named fields, adjacent ones in one piece
            run_s = run_e = -1
            for s, e in pairs:
                if s != run_e:
                    if run_e > 0:
                        out.append(buf[run_s:run_e])
                    run_s = s
                run_e = e
            if run_e > 0:
                out.append(buf[run_s:run_e])
                if run_e == last and buf[last - 1] != 10:
                    out.append(b"\r\n")
        out.append(b"\r\n")
        return b"".join(out)


def header_fields(buf: bytes, start: int, end: int, names, negate: bool) -> bytes:
    """``FieldSpans(BUF, START, END, NAMES).select(BUF, NAMES, NEGATE)``: one
    list.  A header of one window is split and filtered in one pass (the
    common FETCH of a few fields of a small message: no spans kept)."""
    if end - start > WINDOW:
        return FieldSpans(buf, start, end, names).select(buf, names, negate)
    keys = {n.lower() for n in names}
    fields, _ = _impl.split_header(buf, start, end)
    out = []
    for name, fstart, _vs, fend in fields:
        if (name.lower() in keys) != negate:
            out.append(buf[fstart:fend])
            if buf[fend - 1] != 10:     # (the header's last field only)
                out.append(b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)
