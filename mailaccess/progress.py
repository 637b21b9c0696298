"""A small progress display for long CLI jobs (import, export): no dependency.

On a terminal it redraws one line in place (count/total, MB, rate, ETA) at
most ten times a second; otherwise (a log file, a pipe, systemd's journal) it
prints a full line every few seconds, so logs stay readable.

    p = Progress("importing", total=1200)
    for msg in ...:
        p.update(1, len(raw))
    p.close()

``update`` is thread-safe: the importer calls it from its commit threads.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def _fmt_duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """count/total, megabytes, messages per second and an ETA on stderr."""

    def __init__(self, label: str = "", total: int | None = None, *,
                 total_bytes: int | None = None,
                 stream: TextIO | None = None, interval: float = 5.0,
                 tty: bool | None = None, unit: str = "msg"):
        self.total = total
        self.total_bytes = total_bytes
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                tty = bool(isatty and isatty())
            except (ValueError, OSError):
                tty = False
        self.tty = tty
        # a terminal redraws often; a log gets a line every INTERVAL seconds
        self.interval = 0.1 if tty else interval
        self.count = 0
        self.bytes = 0
        self.start = time.monotonic()
        # a log gets its first line after INTERVAL, not for every short job
        self._last = 0.0 if tty else self.start
        self._drawn: tuple[int, int] | None = None
        self._width = 0
        self._lock = threading.Lock()
        self._closed = False

    # --- feeding ----------------------------------------------------------------

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self.total = total

    def set_total_bytes(self, total_bytes: int | None) -> None:
        """For sources whose message count is unknown up front (mbox): the ETA
        then follows the bytes."""
        with self._lock:
            self.total_bytes = total_bytes

    def update(self, n: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self.count += n
            self.bytes += nbytes
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._draw(time.monotonic(), final=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- rendering ----------------------------------------------------------------

    def render(self, now: float | None = None, final: bool = False) -> str:
        """The status text (without the terminal control characters)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        parts = []
        if self.label:
            parts.append(self.label)
        if self.total:
            pct = 100.0 * self.count / self.total
            parts.append(f"{self.count}/{self.total} {self.unit} ({pct:5.1f}%)")
        else:
            parts.append(f"{self.count} {self.unit}")
        if self.total_bytes:
            parts.append(f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB")
        else:
            parts.append(f"{self.bytes / 1e6:.1f} MB")
        parts.append(f"{rate:.0f} {self.unit}/s")
        eta = None
        if self.total and self.count and self.count < self.total and rate > 0:
            eta = (self.total - self.count) / rate
        elif not self.total and self.total_bytes and 0 < self.bytes < self.total_bytes:
            eta = (self.total_bytes - self.bytes) / (self.bytes / elapsed)
        if eta is not None and not final:
            parts.append(f"ETA {_fmt_duration(eta)}")
        else:
            parts.append(f"elapsed {_fmt_duration(elapsed)}")
        return "  ".join(parts)

    def _bar(self) -> str:
        if self.total:
            frac = self.count / self.total
        elif self.total_bytes:
            frac = self.bytes / self.total_bytes
        else:
            return ""
        width = 24
        filled = max(0, min(width, int(width * frac)))
        return "[" + "#" * filled + "." * (width - filled) + "] "

    def _draw(self, now: float, final: bool = False) -> None:
        if final and not self.tty and self._drawn == (self.count, self.bytes):
            return   # the last line already says it
        self._drawn = (self.count, self.bytes)
        text = self.render(now, final)
        try:
            if self.tty:
                line = self._bar() + text
                pad = " " * max(0, self._width - len(line))
                self._width = len(line)
                self.stream.write("\r" + line + pad + ("\n" if final else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr never stops an import
