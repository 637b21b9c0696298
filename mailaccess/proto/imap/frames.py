"""Transport-level events of the IMAP receiver (what ``Receiver.next_event`` returns).

These are kept apart from the protocol events in ``events.py`` (STYLE rule 3,
hypercorn's two vocabularies): a frame is "some bytes made a command", a
``Command`` is what the command means.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""Nothing complete yet: feed more bytes with ``receive_data``."""

CONNECTION_CLOSED: Final = _Sentinel("CONNECTION_CLOSED")
"""The peer sent EOF (``receive_data(b"")``) and every event before it was returned."""


@dataclass(frozen=True, slots=True)
class Literal:
    """The payload of one literal inside a command (``{n}``, ``{n+}``, ``~{n}``)."""

    data: bytes
    binary: bool = False  # sent as literal8 ("~{n}", RFC 3516)


@dataclass(frozen=True, slots=True)
class CommandFrame:
    """One complete command.

    ``parts`` alternates line text and literals and always starts and ends with
    line text: ``(b"APPEND INBOX (\\\\Seen) ", Literal(b"..."), b"")``.  The
    first part starts after the tag and its space; literal headers (``{n}``)
    and CRLFs are removed.
    """

    tag: bytes
    parts: tuple[bytes | Literal, ...]

    @property
    def line(self) -> bytes:
        """The first line piece (all of the command when it has no literal)."""
        return self.parts[0]  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """The command so far ends in a synchronizing literal of ``size`` octets.

    The I/O layer sends ``+ Ready\\r\\n`` (``serialize.continuation()``) once,
    then keeps feeding data.  Non-synchronizing literals never produce this.
    ``parts``: the command so far, as in ``CommandFrame.parts`` and ending in
    the text before the literal header, so the session can refuse the
    command before "+" (``Receiver.refuse_literal``; RFC 3501 6.3.11).
    """

    tag: bytes | None
    size: int
    parts: tuple[bytes | Literal, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line read in line mode (AUTHENTICATE responses, IDLE's ``DONE``), CRLF removed."""

    line: bytes


# FrameError kinds
LINE_TOO_LONG: Final = "line-too-long"
LITERAL_TOO_LARGE: Final = "literal-too-large"  # sync literal: answer NO [TOOBIG], no "+"
NONSYNC_TOO_LARGE: Final = "nonsync-literal-too-large"  # consumed and dropped: BAD [TOOBIG]
COMMAND_TOO_LARGE: Final = "command-too-large"
# the user's connections hold their literal budget: NO [LIMIT] before "+",
# a {n+} consumed and dropped with BAD [LIMIT]
LITERAL_BUDGET: Final = "literal-budget"
BAD_LITERAL: Final = "bad-literal-header"
INCOMPLETE: Final = "incomplete"  # EOF inside a command


@dataclass(frozen=True, slots=True)
class FrameError:
    """A command could not be framed.

    ``response`` says how the I/O layer answers: ``"NO"`` / ``"BAD"`` tagged
    with ``tag`` (untagged ``* BAD`` when ``tag`` is None), or ``"BYE"`` when
    ``fatal``: the receiver cannot find the next command boundary (or, before
    login, refuses to read on), so the connection must be closed after the
    BYE; a fatal error with ``response == "BAD"`` is answered with the
    tagged BAD first, then the BYE (RFC 7888 §4).  ``code`` is the response code to
    include (``"TOOBIG"``) or None.  Non-fatal errors leave the receiver at the
    start of the next command.
    """

    tag: bytes | None
    kind: str
    message: str
    fatal: bool = False
    code: str | None = None
    response: str = "BAD"
