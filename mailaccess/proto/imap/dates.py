"""IMAP ``date`` (``1-Feb-1994``) and ``date-time`` (``"17-Jul-1996 02:44:25 -0700"``)."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from .errors import ParseError

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}

_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})\Z")
_DATETIME = re.compile(
    rb"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})\Z"
)


def parse_date(text: bytes) -> date:
    """``date-text`` (the quotes, if any, are already removed)."""
    m = _DATE.match(text)
    if m is None:
        raise ParseError("invalid date")
    month = _MONTH.get(m.group(2).upper().decode())
    if month is None:
        raise ParseError("invalid month")
    try:
        return date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        raise ParseError("invalid date") from None


def parse_datetime(text: bytes) -> datetime:
    """``date-time`` contents (without the DQUOTEs): an aware datetime."""
    m = _DATETIME.match(text)
    if m is None:
        raise ParseError("invalid date-time")
    month = _MONTH.get(m.group(2).upper().decode())
    if month is None:
        raise ParseError("invalid month")
    zh, zm = int(m.group(8)), int(m.group(9))
    if zm >= 60:
        raise ParseError("invalid zone")
    off = timedelta(hours=zh, minutes=zm)
    if m.group(7) == b"-":
        off = -off
    try:
        return datetime(
            int(m.group(3)), month, int(m.group(1).strip()),
            int(m.group(4)), int(m.group(5)), int(m.group(6)),
            tzinfo=timezone(off),
        )
    except ValueError:
        raise ParseError("invalid date-time") from None


def format_datetime(dt: datetime) -> bytes:
    """``b'"17-Jul-1996 02:44:25 -0700"'`` (with quotes); naive means UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    off = dt.utcoffset() or timedelta(0)
    secs = int(off.total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    return (
        f'"{dt.day:2d}-{MONTHS[dt.month - 1]}-{dt.year:04d} '
        f'{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{secs // 3600:02d}{secs % 3600 // 60:02d}"'
    ).encode("ascii")
