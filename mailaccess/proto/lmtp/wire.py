"""LMTP (RFC 2033) server side, sans-IO: bytes in, events out, replies to bytes.

``LmtpConnection.receive_data(data)`` buffers; ``next_event()`` returns the
next command event, ``NEED_DATA``, or ``Closed``.  The object owns the
command sequence (LHLO, MAIL, RCPT, DATA, RSET) and answers sequence errors
itself with ``ProtocolError`` events carrying the reply to send; what needs
the store (is this recipient ours? deliver!) is the session's business.

After the session answers a DATA command with 354 it calls ``start_data()``;
the message then arrives as one ``MessageData`` event, dot-unstuffed (RFC
5321 4.5.2).  Scanning for the end of data is O(bytes): the search resumes
where it stopped.  A message over ``max_message_size`` is read to its end and
discarded, and ``MessageData.too_big`` tells the session to answer 552.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NEED_DATA = object()


@dataclass(frozen=True, slots=True)
class Lhlo:
    domain: str


@dataclass(frozen=True, slots=True)
class MailFrom:
    address: str            # "" for the null reverse-path <>
    params: dict


@dataclass(frozen=True, slots=True)
class RcptTo:
    address: str
    params: dict


@dataclass(frozen=True, slots=True)
class DataCommand:
    pass


@dataclass(frozen=True, slots=True)
class MessageData:
    data: bytes
    too_big: bool


@dataclass(frozen=True, slots=True)
class Simple:
    verb: str               # RSET, NOOP, QUIT, VRFY, HELP


@dataclass(frozen=True, slots=True)
class ProtocolError:
    reply: bytes            # complete reply line(s) to send


@dataclass(frozen=True, slots=True)
class Closed:
    pass


def reply(code: int, text: str, enhanced: str | None = None) -> bytes:
    """One (possibly multi-line) reply; ENHANCED is the RFC 3463 status code."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        sep = "-" if i < len(lines) - 1 else " "
        pre = f"{enhanced} " if enhanced else ""
        out.append(f"{code}{sep}{pre}{line}\r\n")
    return "".join(out).encode("utf-8")


_PATH = re.compile(r"^<([^<>]*)>(?:\s+(.*))?$")

# states
_NEED_LHLO, _READY, _HAVE_MAIL, _IN_DATA = range(4)


class LmtpConnection:
    def __init__(self, *, max_line: int = 4096, max_message_size: int = 64 << 20,
                 max_recipients: int = 1000):
        self.max_line = max_line
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self._buf = bytearray()
        self._scan_from = 0
        self._eof = False
        self._state = _NEED_LHLO
        self.recipients = 0          # accepted RCPTs in this transaction
        self._skipping_line = False
        self._discarded = 0          # bytes of an over-size message thrown away

    # --- input -------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        else:
            self._buf += data

    def start_data(self) -> None:
        """The session sent 354: what follows is message content."""
        self._state = _IN_DATA
        self._scan_from = 0

    def accept_recipient(self) -> None:
        """The session accepted a RCPT: count it (DATA needs at least one)."""
        self.recipients += 1

    def _reset(self) -> None:
        self._state = _READY
        self.recipients = 0

    # --- events ------------------------------------------------------------------

    def next_event(self):
        if self._state == _IN_DATA:
            return self._next_data()
        nl = self._buf.find(b"\n")
        if nl < 0:
            if len(self._buf) > self.max_line:
                # swallow the rest of the over-long line, then complain once
                self._buf.clear()
                self._skipping_line = True
            if self._eof:
                return Closed()
            return NEED_DATA
        line = bytes(self._buf[:nl]).rstrip(b"\r")
        del self._buf[:nl + 1]
        if self._skipping_line or len(line) > self.max_line:
            self._skipping_line = False
            return ProtocolError(reply(500, "Line too long", "5.5.2"))
        return self._command(line)

    def _next_data(self):
        buf = self._buf
        # The terminator is CRLF.CRLF; the first line may be the dot itself.
        if buf.startswith(b".\r\n"):
            end, body_end = 3, 0
        else:
            i = buf.find(b"\r\n.\r\n", max(0, self._scan_from - 4))
            if i < 0:
                self._scan_from = len(buf)
                if len(buf) > self.max_message_size + 4:
                    # keep only a tail long enough to find the terminator
                    self._discarded += len(buf) - 4
                    del buf[:-4]
                    self._scan_from = 4
                if self._eof:
                    return Closed()
                return NEED_DATA
            end, body_end = i + 5, i + 2
        data = bytes(buf[:body_end])
        discarded = self._discarded
        del buf[:end]
        self._discarded = 0
        self._reset()
        too_big = discarded > 0 or len(data) > self.max_message_size
        if too_big:
            return MessageData(b"", True)
        # dot-unstuffing: a line starting with "." lost its first dot
        if data.startswith(b".."):
            data = data[1:]
        data = data.replace(b"\r\n..", b"\r\n.")
        return MessageData(data, False)

    def _command(self, line: bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return ProtocolError(reply(500, "Command is not valid UTF-8", "5.5.2"))
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        if verb == "LHLO":
            if not arg:
                return ProtocolError(reply(501, "LHLO needs a domain", "5.5.4"))
            self._reset()
            return Lhlo(arg)
        if verb in ("HELO", "EHLO"):
            return ProtocolError(reply(500, "This is LMTP: say LHLO (RFC 2033)", "5.5.1"))
        if verb in ("NOOP", "QUIT", "HELP", "VRFY"):
            return Simple(verb)
        if verb == "RSET":
            if self._state != _NEED_LHLO:
                self._reset()
            return Simple(verb)
        if self._state == _NEED_LHLO:
            return ProtocolError(reply(503, "Say LHLO first", "5.5.1"))
        if verb == "MAIL":
            if self._state != _READY:
                return ProtocolError(reply(503, "Nested MAIL command", "5.5.1"))
            parsed = _parse_path(arg, "FROM:")
            if parsed is None:
                return ProtocolError(reply(501, "Syntax: MAIL FROM:<address>", "5.5.4"))
            addr, params = parsed
            size = params.get("SIZE")
            if size is not None:
                if not size.isdigit():
                    return ProtocolError(reply(501, "Bad SIZE parameter", "5.5.4"))
                if int(size) > self.max_message_size:
                    return ProtocolError(reply(
                        552, f"Message size exceeds the limit of {self.max_message_size} bytes",
                        "5.3.4"))
            self._state = _HAVE_MAIL
            self.recipients = 0
            return MailFrom(addr, params)
        if verb == "RCPT":
            if self._state != _HAVE_MAIL:
                return ProtocolError(reply(503, "Need MAIL before RCPT", "5.5.1"))
            parsed = _parse_path(arg, "TO:")
            if parsed is None or not parsed[0]:
                return ProtocolError(reply(501, "Syntax: RCPT TO:<address>", "5.5.4"))
            if self.recipients >= self.max_recipients:
                return ProtocolError(reply(452, "Too many recipients", "4.5.3"))
            local = parsed[0].rpartition("@")[0] if "@" in parsed[0] else parsed[0]
            if not local:
                # RFC 5321 4.1.2: a Local-part is never empty; refused for this
                # recipient alone, the transaction goes on
                return ProtocolError(reply(
                    550, f"No such user here: {parsed[0]} (empty local part)", "5.1.3"))
            return RcptTo(*parsed)
        if verb == "DATA":
            if self._state != _HAVE_MAIL:
                return ProtocolError(reply(503, "Need MAIL before DATA", "5.5.1"))
            if not self.recipients:
                return ProtocolError(reply(503, "No valid recipients", "5.5.1"))
            return DataCommand()
        if verb in ("BDAT", "STARTTLS", "AUTH", "ETRN", "EXPN", "TURN"):
            return ProtocolError(reply(502, f"{verb} is not implemented", "5.5.1"))
        return ProtocolError(reply(500, "Unknown command", "5.5.1"))


def _parse_path(arg: str, prefix: str):
    if not arg.upper().startswith(prefix):
        return None
    rest = arg[len(prefix):].strip()
    m = _PATH.match(rest)
    if not m:
        return None
    addr = m.group(1).strip()
    if ":" in addr and addr.startswith("@"):
        addr = addr.split(":", 1)[1]  # strip a source route (RFC 5321 4.1.2)
    params = {}
    for p in (m.group(2) or "").split():
        k, _, v = p.partition("=")
        params[k.upper()] = v
    return addr, params
