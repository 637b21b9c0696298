"""SearchSnippet text (RFC 8621 5): the matched terms of a filter wrapped in
``<mark></mark>``, the rest HTML-escaped (``&``, ``<``, ``>``).

Terms match as the query engine matches them: case-insensitively, white
space runs equal to any white space run.  ``mark_subject`` marks a whole
subject; ``mark_preview`` cuts a window of at most PREVIEW_BYTES octets of
body text around the first match.  Both return None when nothing matches.
Pure functions over strings: no store, no Trio.
"""
from __future__ import annotations

import html
import re

__all__ = ["mark_subject", "mark_preview", "PREVIEW_BYTES", "terms_pattern"]

PREVIEW_BYTES = 255
_LEAD = 40          # characters of context shown before the first match
_MAX_TERMS = 64


def terms_pattern(terms: list[str]) -> re.Pattern | None:
    """One pattern matching any of TERMS (longest first), or None."""
    alts = []
    for t in terms[:_MAX_TERMS]:
        words = t.split()
        if words:
            alts.append(r"\s+".join(re.escape(w) for w in words))
    if not alts:
        return None
    alts.sort(key=len, reverse=True)
    return re.compile("|".join(alts), re.IGNORECASE)


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


def _spans(text: str, pattern: re.Pattern | None) -> list[tuple[int, int]]:
    if pattern is None:
        return []
    return [m.span() for m in pattern.finditer(text) if m.end() > m.start()]


def mark_subject(subject: str | None, terms: list[str]) -> str | None:
    if not subject:
        return None
    spans = _spans(subject, terms_pattern(terms))
    return _marked(subject, spans) if spans else None


def mark_preview(body: str | None, terms: list[str], limit: int = PREVIEW_BYTES) -> str | None:
    """A marked window of BODY (white space collapsed) of at most LIMIT
    octets in UTF-8, starting a little before the first match."""
    if not body:
        return None
    text = " ".join(body.split())
    spans = _spans(text, terms_pattern(terms))
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
        if len(out.encode("utf-8")) <= limit or end <= start:
            return out if end > start else None
        over = len(out.encode("utf-8")) - limit
        end = max(start, end - max(1, over // 4))
