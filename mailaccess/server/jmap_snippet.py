"""SearchSnippet text (RFC 8621 5): the matched terms of a filter wrapped in
``<mark></mark>``, the rest HTML-escaped (``&``, ``<``, ``>``).

Terms match as the query engine matches them: case-insensitively, a white
space run equal to any white space run (the text shown has its white space
runs collapsed to one space).  ``mark_subject`` marks a whole subject;
``mark_preview`` cuts a window of at most PREVIEW_BYTES octets of body text
around the first match.  Both return None when nothing matches.  Matching is
plain substring search (``str.find``), linear in the text for each term: no
regular expression a hostile message or term could make backtrack.  Pure
functions over strings: no store, no Trio.
"""
from __future__ import annotations

import html

__all__ = ["mark_subject", "mark_preview", "find_spans", "PREVIEW_BYTES", "MAX_TERMS"]

PREVIEW_BYTES = 255
MAX_TERMS = 64
_LEAD = 40          # characters of context shown before the first match


def _lower(s: str) -> str:
    """Lower case of the same length as S (a character whose lower case is
    longer, like U+0130, stays as it is), so positions carry over."""
    low = s.lower()
    if len(low) == len(s):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in s)


def find_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) of the TERMS in TEXT (white space already
    collapsed), case-insensitive, overlapping hits merged, in order."""
    low = _lower(text)
    hits = []
    for t in terms[:MAX_TERMS]:
        needle = _lower(" ".join(t.split()))
        if not needle:
            continue
        pos = low.find(needle)
        while pos >= 0:
            hits.append((pos, pos + len(needle)))
            pos = low.find(needle, pos + len(needle))
    hits.sort()
    out: list[tuple[int, int]] = []
    for a, b in hits:
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _marked(text: str, spans: list[tuple[int, int]], start: int = 0,
            end: int | None = None) -> str:
    end = len(text) if end is None else end
    out = []
    pos = start
    for a, b in spans:
        if b <= start or a >= end:
            continue
        a, b = max(a, start), min(b, end)
        out.append(html.escape(text[pos:a], quote=False))
        out.append("<mark>" + html.escape(text[a:b], quote=False) + "</mark>")
        pos = b
    out.append(html.escape(text[pos:end], quote=False))
    return "".join(out)


def mark_subject(subject: str | None, terms: list[str]) -> str | None:
    if not subject:
        return None
    text = " ".join(subject.split())
    spans = find_spans(text, terms)
    return _marked(text, spans) if spans else None


def mark_preview(body: str | None, terms: list[str], limit: int = PREVIEW_BYTES) -> str | None:
    """A marked window of BODY (white space collapsed) of at most LIMIT
    octets in UTF-8, starting a little before the first match."""
    if not body:
        return None
    text = " ".join(body.split())
    spans = find_spans(text, terms)
    if not spans:
        return None
    first = spans[0][0]
    start = max(0, first - _LEAD)
    if start:
        sp = text.find(" ", start, first)     # start on a word boundary
        start = sp + 1 if sp >= 0 else start
    # a match cut by the window is marked up to the cut; shrink until it fits
    end = min(len(text), start + limit)
    while True:
        out = _marked(text, spans, start, end)
        size = len(out.encode("utf-8"))
        if size <= limit or end <= start:
            return out if end > start else None
        end = max(start, end - max(1, (size - limit) // 4))
