"""Sequence sets and UID sets (RFC 9051 ``sequence-set``, RFC 5182 ``$``).

``NumSet`` keeps the set as the client wrote it: a tuple of ``(lo, hi)``
ranges in which ``STAR`` (0, never a valid number) stands for ``*``, plus
``saved`` for the SEARCHRES ``$`` marker.  ``*`` only gets a value against a
mailbox, so every query method takes ``largest`` (the highest sequence number
or UID in use) and, where ``$`` may occur, the saved result.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from .errors import ParseError

STAR: Final = 0
MAX_NUMBER: Final = 0xFFFFFFFF
DEFAULT_MAX_RANGES: Final = 10_000

_ELEM = re.compile(r"(?:([1-9][0-9]*)|\*)(?::(?:([1-9][0-9]*)|\*))?\Z")


def _num(text: str | None) -> int:
    if text is None:
        return STAR
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise ParseError("number out of range")
    return int(text)


@dataclass(frozen=True, slots=True)
class NumSet:
    ranges: tuple[tuple[int, int], ...]
    saved: bool = False

    @classmethod
    def parse(cls, text: bytes | str, *, max_ranges: int = DEFAULT_MAX_RANGES, allow_saved: bool = True) -> NumSet:
        if isinstance(text, bytes):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                raise ParseError("invalid sequence set") from None
        if not text:
            raise ParseError("empty sequence set")
        elems = text.split(",")
        if len(elems) > max_ranges:
            raise ParseError("sequence set too large", code="LIMIT")
        ranges = []
        saved = False
        for elem in elems:
            if elem == "$":
                if not allow_saved:
                    raise ParseError("$ not allowed here")
                saved = True
                continue
            m = _ELEM.match(elem)
            if m is None:
                raise ParseError(f"invalid sequence set element {elem[:20]!r}")
            lo = _num(m.group(1))
            if ":" in elem:
                hi = _num(m.group(2))
            else:
                hi = lo
            ranges.append((lo, hi))
        return cls(tuple(ranges), saved)

    @classmethod
    def from_ints(cls, nums: Iterable[int], *, sort: bool = True) -> NumSet:
        """Compress numbers into ranges; ``sort=False`` keeps the order (COPYUID)."""
        seq = sorted(set(nums)) if sort else list(nums)
        ranges: list[tuple[int, int]] = []
        for n in seq:
            if n < 1:
                raise ValueError("numbers start at 1")
            if ranges and ranges[-1][1] + 1 == n:
                ranges[-1] = (ranges[-1][0], n)
            else:
                ranges.append((n, n))
        return cls(tuple(ranges))

    @property
    def has_star(self) -> bool:
        return any(lo == STAR or hi == STAR for lo, hi in self.ranges)

    def __str__(self) -> str:
        out = []
        for lo, hi in self.ranges:
            a = "*" if lo == STAR else str(lo)
            if lo == hi:
                out.append(a)
            else:
                out.append(a + ":" + ("*" if hi == STAR else str(hi)))
        if self.saved:
            out.append("$")
        return ",".join(out)

    def to_bytes(self) -> bytes:
        return str(self).encode("ascii")

    def normalized(self, largest: int, saved: Iterable[int] | NumSet | None = None) -> list[tuple[int, int]]:
        """Sorted, merged, non-overlapping ranges with ``*`` (and ``$``) resolved."""
        spans = []
        for lo, hi in self.ranges:
            if lo == STAR:
                lo = largest
            if hi == STAR:
                hi = largest
            if lo > hi:
                lo, hi = hi, lo
            if hi >= 1:
                spans.append((max(lo, 1), hi))
        if self.saved:
            if saved is None:
                raise ValueError("$ used but no saved search result given")
            if isinstance(saved, NumSet):
                spans.extend(saved.normalized(largest))
            else:
                spans.extend((n, n) for n in saved)
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def resolve(self, largest: int, saved: Iterable[int] | NumSet | None = None) -> NumSet:
        return NumSet(tuple(self.normalized(largest, saved)))

    def iter(self, largest: int, saved: Iterable[int] | NumSet | None = None) -> Iterator[int]:
        """Every number in the set, ascending, each once."""
        for lo, hi in self.normalized(largest, saved):
            yield from range(lo, hi + 1)

    def count(self, largest: int, saved: Iterable[int] | NumSet | None = None) -> int:
        return sum(hi - lo + 1 for lo, hi in self.normalized(largest, saved))

    def contains(self, num: int, largest: int, saved: Iterable[int] | NumSet | None = None) -> bool:
        spans = self.normalized(largest, saved)
        i = bisect.bisect_right(spans, (num, MAX_NUMBER + 1)) - 1
        return i >= 0 and spans[i][0] <= num <= spans[i][1]


def format_ints(nums: Iterable[int], *, sort: bool = True) -> bytes:
    """``[1, 2, 3, 7]`` -> ``b"1:3,7"`` (for APPENDUID, COPYUID, VANISHED, ESEARCH ALL)."""
    return NumSet.from_ints(nums, sort=sort).to_bytes()
