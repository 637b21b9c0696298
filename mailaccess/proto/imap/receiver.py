"""Resumable, literal-aware IMAP command framer (sans-IO).

Bytes go in through ``receive_data``; ``next_event`` returns one of the frame
events in ``frames.py``.  It never touches a socket and never parses command
syntax: it only finds where each command ends, which in IMAP means following
literals (RFC 9051 §4.3): a line ending in ``{n}`` / ``{n+}`` / ``~{n}`` /
``~{n+}`` is followed by ``n`` octets of data and then more command text.

Complexity contract (h11 ``_receivebuffer.py``, STYLE rule 4): every byte is
scanned at most once.  The scan position and quote state of an incomplete line
survive between calls; literal payloads are never scanned at all, only counted
and collected (a 50 MB literal arriving in 64 KB chunks is joined once at the
end).  Nothing is ever re-parsed from the start of the command.

Bounds (STYLE rule 5): ``max_line`` (one line, CRLF included),
``max_literal`` (one literal), ``max_nonsync_literal`` (a ``{n+}`` literal;
4096 for a server advertising LITERAL-, RFC 7888 §4), ``max_command`` (all
lines and literals of one command) and ``max_literals`` (literals in one
command).  A breached bound becomes a ``FrameError``; whenever the command's
end can still be found the receiver skips to it and carries on with the next
command, otherwise the error is ``fatal`` and the connection must be closed.

The bounds are a ``Limits`` value and can be changed between commands
(``set_limits``): the service uses ``preauth_limits`` until the client has
logged in (LOGIN and AUTHENTICATE need a few KB, RFC 7888 §4 lets a server
refuse more) and its configured limits afterwards.  With
``Limits.close_on_refusal`` a refused non-synchronizing literal is not skipped
but ends the connection (tagged BAD [TOOBIG], then BYE; RFC 7888 §4), so a
client that is not logged in never makes the server read, let alone keep,
more than ``max_command`` bytes of one command.  Literal data is only ever
held for a literal that was accepted, so the bytes a receiver holds are
bounded by ``max_command`` plus one read.

A ``LiteralBudget`` shared by several receivers (one user's connections)
bounds the literal bytes they hold together: each accepted literal takes its
size from it when its header is read, and gives it back when the connection
asks for the next event after the command (the command has been handled) or
calls ``release``.  A literal the budget cannot cover is refused like one
over ``max_command`` (a ``{n}`` before "+", a ``{n+}`` skipped unread), with
the code LIMIT.

The I/O layer's loop::

    receiver.receive_data(chunk)          # b"" on EOF
    while (ev := receiver.next_event()) is not NEED_DATA:
        ContinuationRequest -> send b"+ Ready\\r\\n"
        CommandFrame        -> commands.parse_command(ev) ...
        RawLine             -> AUTHENTICATE response / IDLE "DONE"
        FrameError          -> tagged NO/BAD, or BYE and close when fatal
        CONNECTION_CLOSED   -> stop

``line_mode`` must be switched right after the event that calls for it (the
AUTHENTICATE or IDLE frame), before ``next_event`` is called again.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from mailaccess import _speedups

from .grammar import TAG as _TAG_RE
from .frames import (
    BAD_LITERAL,
    COMMAND_TOO_LARGE,
    CONNECTION_CLOSED,
    INCOMPLETE,
    LINE_TOO_LONG,
    LITERAL_BUDGET,
    LITERAL_TOO_LARGE,
    NEED_DATA,
    NONSYNC_TOO_LARGE,
    CommandFrame,
    ContinuationRequest,
    FrameError,
    Literal,
    RawLine,
)

_scan = _speedups.load("imapscan")

_LIT_NONE = 0
_LIT_BAD = -1
_LIT_NONSYNC = 2
_LIT_BINARY = 4

# receiver states
_LINE = 0  # reading command text
_LITERAL = 1  # collecting literal data
_SKIP_LINE = 2  # throwing away command text (error already reported)
_SKIP_LITERAL = 3  # throwing away literal data
_DEAD = 4  # fatal error: nothing more is framed

_TAIL = 32  # bytes of a skipped line kept to spot a literal header at its end

DEFAULT_MAX_LINE = 65536
DEFAULT_MAX_LITERAL = 64 * 1024 * 1024


PREAUTH_MAX_COMMAND = 8192


@dataclass(frozen=True, slots=True)
class Limits:
    """The receiver's bounds (see the module docstring)."""

    max_line: int = DEFAULT_MAX_LINE
    max_literal: int = DEFAULT_MAX_LITERAL
    max_nonsync_literal: int | None = None  # None: max_literal
    max_command: int | None = None  # None: 2 * max_literal + max_line
    max_literals: int = 10_000
    close_on_refusal: bool = False  # a refused {n+} literal closes the connection


def preauth_limits(max_command: int = PREAUTH_MAX_COMMAND) -> Limits:
    """Bounds before authentication: one command (lines and literals) of at
    most ``max_command`` bytes; a refused non-synchronizing literal closes."""
    return Limits(max_line=max_command, max_literal=max_command,
                  max_nonsync_literal=max_command, max_command=max_command,
                  max_literals=4, close_on_refusal=True)


class LiteralBudget:
    """Literal bytes that the receivers sharing it may hold at once (one
    user's connections: ``imap.max_literal_bytes_per_user``)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def _valid_tag(tag: bytes) -> bytes | None:
    return tag if _TAG_RE.fullmatch(tag) else None


class Receiver:
    """Frame IMAP commands from a byte stream; see the module docstring."""

    def __init__(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        max_literal: int = DEFAULT_MAX_LITERAL,
        max_nonsync_literal: int | None = None,
        *,
        max_command: int | None = None,
        max_literals: int = 10_000,
        scanner: ModuleType | None = None,
        limits: Limits | None = None,
    ) -> None:
        if limits is None:
            limits = Limits(max_line, max_literal, max_nonsync_literal, max_command, max_literals)
        self.set_limits(limits)
        self._scanner = _scan if scanner is None else scanner
        self.line_mode = False
        self._buf = bytearray()
        self._eof = False
        self._eof_reported = False
        self._state = _LINE
        self._scan_pos = 0
        self._q = 0
        self._tail = b""
        self._tag: bytes | None = None
        self._parts: list[bytes | Literal] = []
        self._size = 0
        self._nlit = 0
        self._discard = False
        self._lit_left = 0
        self._lit_kind = 0
        #: the LiteralBudget this receiver's literals count against (None: only
        #: the Limits); bytes taken for the command being framed, and for the
        #: last command returned (given back at the next next_event)
        self.budget: LiteralBudget | None = None
        self._taken = 0
        self._frame_taken = 0
        self._chunks: list[bytes] = []

    def set_limits(self, limits: Limits) -> None:
        """Change the bounds; they apply from the next line or literal header."""
        if limits.max_line < 16:
            raise ValueError("max_line too small")
        self.limits = limits
        self.max_line = limits.max_line
        self.max_literal = limits.max_literal
        self.max_nonsync_literal = (limits.max_literal if limits.max_nonsync_literal is None
                                    else limits.max_nonsync_literal)
        self.max_command = ((2 * limits.max_literal + limits.max_line)
                            if limits.max_command is None else limits.max_command)
        self.max_literals = limits.max_literals
        self.close_on_refusal = limits.close_on_refusal

    @property
    def held(self) -> int:
        """Bytes this receiver holds right now (buffer, command so far, literal)."""
        return (len(self._buf) + sum(len(p) if isinstance(p, bytes) else len(p.data)
                                     for p in self._parts)
                + sum(len(c) for c in self._chunks) + len(self._tail))

    # -- input ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means EOF."""
        if self._eof:
            raise RuntimeError("receive_data after EOF")
        if not data:
            self._eof = True
            return
        if self._state == _DEAD:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        st = self._state
        if (st == _LITERAL or st == _SKIP_LITERAL) and not self._buf:
            # Fast path: literal bytes go straight into the literal, uncopied.
            left = self._lit_left
            n = len(data)
            if n <= left:
                if st == _LITERAL:
                    self._chunks.append(data)
                self._lit_left = left - n
                return
            if st == _LITERAL:
                self._chunks.append(data[:left])
            self._lit_left = 0
            data = data[left:]
        self._buf += data

    def discard_buffered(self) -> bytes:
        """Drop and return every buffered byte.

        Call right after the STARTTLS frame (RFC 9051 §6.2.1: anything the
        client pipelined after STARTTLS must be thrown away) or the COMPRESS
        frame (the bytes are compressed; decompress them and feed the result
        back in).  Only valid between commands.
        """
        if self._parts or self._state != _LINE:
            raise RuntimeError("discard_buffered inside a command")
        data = bytes(self._buf)
        self._buf.clear()
        self._scan_pos = 0
        self._q = 0
        return data

    @property
    def in_command(self) -> bool:
        """True while part of a command has been framed (between literals)."""
        return bool(self._parts) or self._state != _LINE or bool(self._buf)

    # -- output -----------------------------------------------------------

    def release(self) -> None:
        """Give back to the budget every byte this receiver took (the
        connection ends, or changes budget)."""
        if self.budget is not None:
            self.budget.give(self._taken + self._frame_taken)
        self._taken = self._frame_taken = 0

    def next_event(self):
        """Return the next frame event, ``NEED_DATA`` or ``CONNECTION_CLOSED``."""
        if self._frame_taken:
            # asked again: the command returned before has been handled
            self.budget.give(self._frame_taken)
            self._frame_taken = 0
        buf = self._buf
        if not buf and self._state == _LINE:
            # nothing buffered between lines (the connection asks before each
            # read): what the scan below finds in an empty buffer
            self._scan_pos = 0
            return self._need_data()
        scan = self._scanner
        while True:
            st = self._state
            if st == _LITERAL or st == _SKIP_LITERAL:
                left = self._lit_left
                if left:
                    n = len(buf)
                    if n:
                        take = left if left < n else n
                        if st == _LITERAL:
                            self._chunks.append(bytes(buf[:take]))
                        del buf[:take]
                        left -= take
                        self._lit_left = left
                    if left:
                        return self._need_data()
                if st == _LITERAL:
                    chunks = self._chunks
                    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    self._chunks = []
                    self._parts.append(Literal(data, bool(self._lit_kind & _LIT_BINARY)))
                    self._state = _LINE
                else:
                    self._state = _SKIP_LINE if self._discard else _LINE
                continue
            if st == _DEAD:
                return CONNECTION_CLOSED if self._eof else NEED_DATA

            n = len(buf)
            lf, q = scan.scan_line(buf, self._scan_pos, n, self._q)
            if lf < 0:
                self._q = q
                if st == _SKIP_LINE:
                    self._keep_tail(buf, n)
                    buf.clear()
                    self._scan_pos = 0
                else:
                    self._scan_pos = n
                    if n > self.max_line:
                        if self._parts:
                            tag = self._tag
                        else:
                            tag = None if self.line_mode else self._peek_tag(buf)
                        self._parts = []
                        self._tag = tag
                        self._keep_tail(buf, n)
                        buf.clear()
                        self._scan_pos = 0
                        self._discard = True
                        self._state = _SKIP_LINE
                        return self._too_long(tag)
                return self._need_data()

            end = lf
            if st == _SKIP_LINE:
                line = self._tail + bytes(buf[max(0, lf - _TAIL):lf])
                del buf[: lf + 1]
                self._scan_pos = 0
                self._q = 0
                self._tail = b""
                if line.endswith(b"\r"):
                    line = line[:-1]
                follow = q == 0 and not (self.line_mode and self._tag is None)
                kind, size, _hdr = (
                    scan.literal_header(line, 0, len(line)) if follow else (_LIT_NONE, 0, 0)
                )
                if kind > 0 and kind & _LIT_NONSYNC:
                    if size > self.max_literal or self.close_on_refusal:
                        return self._fatal(self._tag, NONSYNC_TOO_LARGE, "literal too large",
                                           "BAD" if self.close_on_refusal else "BYE")
                    self._state = _SKIP_LITERAL
                    self._lit_left = size
                else:
                    # End of the command, or a sync literal the client will
                    # not send: it has seen our tagged error instead of "+".
                    self._reset()
                continue

            if end > 0 and buf[end - 1] == 13:
                end -= 1
            first = not self._parts
            too_long = lf + 1 > self.max_line

            if self.line_mode and first:
                line = b"" if too_long else bytes(buf[:end])
                del buf[: lf + 1]
                self._scan_pos = 0
                self._q = 0
                if too_long:
                    return FrameError(None, LINE_TOO_LONG, "line too long")
                return RawLine(line)

            if too_long:
                # Same path as a long line arriving in pieces: skip it (this
                # rescans it once), then whatever literal it announces.
                tag = self._tag if not first else self._peek_tag(buf)
                self._parts = []
                self._tag = tag
                self._discard = True
                self._state = _SKIP_LINE
                self._scan_pos = 0
                self._q = 0
                self._tail = b""
                return self._too_long(tag)
            if q == 0:
                kind, size, hdr = scan.literal_header(buf, 0, end)
            else:
                kind, size, hdr = _LIT_NONE, 0, end

            piece = bytes(buf[:hdr])
            del buf[: lf + 1]
            self._scan_pos = 0
            self._q = 0
            if first:
                if kind == _LIT_NONE and not piece.strip():
                    continue  # stray empty line: ignore it
                sp = piece.find(b" ")
                if sp < 0:
                    self._tag, piece = piece, b""
                else:
                    self._tag, piece = piece[:sp], piece[sp + 1 :]
            tag = self._tag
            self._size += lf + 1

            if kind == _LIT_NONE:
                parts = self._parts
                parts.append(piece)
                frame = CommandFrame(tag, tuple(parts))  # type: ignore[arg-type]
                self._frame_taken, self._taken = self._taken, 0
                self._reset()
                return frame
            etag = _valid_tag(tag) if tag is not None else None
            if kind == _LIT_BAD:
                self._reset()
                return FrameError(etag, BAD_LITERAL, "malformed literal header")

            sync = not kind & _LIT_NONSYNC
            if size > self.max_literal:
                error, msg = LITERAL_TOO_LARGE, "literal too large"
            elif self._size + size > self.max_command or self._nlit >= self.max_literals:
                error, msg = COMMAND_TOO_LARGE, "command too large"
            elif not sync and size > self.max_nonsync_literal:
                error, msg = NONSYNC_TOO_LARGE, "non-synchronizing literal too large"
            elif self.budget is not None and not self.budget.take(size):
                error, msg = LITERAL_BUDGET, ("too much literal data on its way from "
                                              "this user's connections: try again later")
            else:
                if self.budget is not None:
                    self._taken += size
                self._parts.append(piece)
                self._nlit += 1
                self._size += size
                self._state = _LITERAL
                self._lit_left = size
                self._lit_kind = kind
                if sync:
                    return ContinuationRequest(etag, size, tuple(self._parts))
                continue
            code = "LIMIT" if error is LITERAL_BUDGET else "TOOBIG"
            if sync:
                # RFC 7888 §4 / RFC 9051 §7.1: refuse before "+"; the client
                # does not send the data, so the next line is a new command.
                self._reset()
                return FrameError(etag, error, msg, code=code, response="NO")
            if self.close_on_refusal:
                # RFC 7888 §4: BAD [TOOBIG], then close instead of reading it
                return self._fatal(etag, error, msg, "BAD")
            if size > self.max_literal:
                return self._fatal(etag, error, msg)
            self._parts.clear()
            self._discard = True
            self._state = _SKIP_LITERAL
            self._lit_left = size
            return FrameError(etag, error, msg, code=code, response="BAD")

    def refuse_literal(self) -> None:
        """Right after a ``ContinuationRequest``, instead of sending "+": the
        command was answered (NO/BAD) and the client sends no literal, so the
        next line starts a new command."""
        if self._state != _LITERAL:
            raise RuntimeError("refuse_literal outside a literal")
        self._chunks = []
        self._lit_left = 0
        self._reset()

    # -- helpers ----------------------------------------------------------

    def _need_data(self):
        if not self._eof:
            return NEED_DATA
        if self._eof_reported or (not self._buf and not self._parts and self._state == _LINE):
            self._state = _DEAD
            return CONNECTION_CLOSED
        self._eof_reported = True
        if self._discard:
            self._state = _DEAD
            return CONNECTION_CLOSED
        tag = self._tag if self._parts else self._peek_tag(self._buf)
        return FrameError(tag, INCOMPLETE, "connection closed inside a command", fatal=True, response="BYE")

    def _reset(self) -> None:
        if self._taken:     # a command dropped before it was returned
            self.budget.give(self._taken)
            self._taken = 0
        self._parts = []
        self._tag = None
        self._size = 0
        self._nlit = 0
        self._discard = False
        self._state = _LINE

    def _keep_tail(self, buf: bytearray, n: int) -> None:
        self._tail = (self._tail + bytes(buf[max(0, n - _TAIL) : n]))[-_TAIL:]

    def _peek_tag(self, buf) -> bytes | None:
        head = bytes(buf[:256])
        sp = head.find(b" ")
        if sp <= 0:
            return None
        return _valid_tag(head[:sp])

    def _too_long(self, tag: bytes | None) -> FrameError:
        tag = _valid_tag(tag) if tag else None
        return FrameError(tag, LINE_TOO_LONG, "command line too long")

    def _fatal(self, tag: bytes | None, kind: str, message: str,
               response: str = "BYE") -> FrameError:
        self._state = _DEAD
        self._buf.clear()
        self._parts = []
        self._chunks = []
        if tag is None and response != "BYE":
            response = "BYE"
        return FrameError(tag, kind, message, fatal=True, code="TOOBIG", response=response)
