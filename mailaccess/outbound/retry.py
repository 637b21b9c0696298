"""The queue's schedule: how an SMTP reply code is taken, and when to try again.

A 2xx is delivered, a 5xx a final failure, anything else (4xx, a broken
connection, a timeout) a temporary one, tried again after a backoff that
doubles from ``first`` up to ``cap`` until the entry expires.
"""
from __future__ import annotations


def outcome(code: int) -> str:
    """JMAP ``delivered`` for an SMTP reply CODE: yes / no / queued (retry)."""
    if 200 <= code < 300:
        return "yes"
    if 500 <= code < 600:
        return "no"
    return "queued"


def backoff(attempts: int, first: float, cap: float) -> float:
    """Seconds to wait after the ATTEMPTS-th failed attempt (1, 2, ...)."""
    return min(cap, first * (2 ** max(0, attempts - 1)))


def reply_text(code: int, text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(text.split())
    return f"{code} {text}"[:512]
