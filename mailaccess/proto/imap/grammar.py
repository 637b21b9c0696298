"""Token reader over a framed command: the RFC 9051 §9 primitives.

``Reader`` walks the ``parts`` of a ``CommandFrame`` (line text and literals)
once, left to right; the grammar fragments (atom, astring, quoted, literal,
number, date-time, flag list ...) are transcribed from the ABNF as small
methods and named regexes (h11 ``_abnf.py``).  Every error is a
``ParseError``; ``commands.parse_command`` adds the tag.
"""
from __future__ import annotations

import re
from datetime import date, datetime

from ... import vocab
from .dates import parse_date, parse_datetime
from .errors import ParseError
from .frames import Literal
from .numset import DEFAULT_MAX_RANGES, NumSet

# atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # ASTRING-CHAR adds "]"
LIST_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')  # list-char adds "%" "*" "]"
QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb"\\([\"\\])")
NUMBER = re.compile(rb"[0-9]+")
SEQSET = re.compile(rb"[0-9:,*$]+")
TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')  # 1*<ASTRING-CHAR except "+">
DATE_TOKEN = re.compile(rb"[0-9A-Za-z-]+")
FLAG = re.compile(rb"\\?[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")

MAX_NUMBER = 0xFFFFFFFF
MAX_NUMBER64 = (1 << 63) - 1
DEFAULT_MAX_DEPTH = 64

SYSTEM_FLAGS = {
    f.lower(): f for f in (*vocab.KEYWORD_TO_IMAP_FLAG.values(), "\\Recent")
}


def canonical_flag(raw: bytes) -> str:
    text = raw.decode("ascii")
    if text.startswith("\\"):
        return SYSTEM_FLAGS.get(text.lower(), text)
    return text


class Reader:
    __slots__ = ("_parts", "_i", "buf", "pos", "depth", "max_depth", "max_ranges")

    def __init__(
        self,
        parts: tuple[bytes | Literal, ...],
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_ranges: int = DEFAULT_MAX_RANGES,
    ) -> None:
        self._parts = parts
        self._i = 0
        self.buf: bytes = parts[0]  # type: ignore[assignment]
        self.pos = 0
        self.depth = 0
        self.max_depth = max_depth
        self.max_ranges = max_ranges

    # -- position -----------------------------------------------------------

    def peek(self) -> int:
        """The next byte of line text, or -1 at the end of a piece."""
        return self.buf[self.pos] if self.pos < len(self.buf) else -1

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self._i >= len(self._parts) - 1

    def at_literal(self) -> bool:
        return self.pos >= len(self.buf) and self._i < len(self._parts) - 1

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected extra arguments")

    def _fail(self, what: str) -> ParseError:
        if self.at_end():
            return ParseError(f"missing {what}")
        return ParseError(f"expected {what}")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self._fail("space")
        self.pos += 1

    def maybe_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def char(self, c: bytes) -> None:
        if self.peek() != c[0]:
            raise self._fail(repr(c.decode()))
        self.pos += 1

    def maybe_char(self, c: bytes) -> bool:
        if self.peek() == c[0]:
            self.pos += 1
            return True
        return False

    def open(self) -> None:
        self.char(b"(")
        self.enter()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise ParseError("too deeply nested", code="LIMIT")

    def close(self) -> None:
        self.char(b")")
        self.depth -= 1

    def maybe_open(self) -> bool:
        if self.peek() == 0x28:
            self.pos += 1
            self.enter()
            return True
        return False

    def maybe_close(self) -> bool:
        if self.peek() == 0x29:
            self.pos += 1
            self.depth -= 1
            return True
        return False

    # -- tokens -------------------------------------------------------------

    def _match(self, rx: re.Pattern[bytes]) -> bytes | None:
        m = rx.match(self.buf, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def atom(self, what: str = "atom") -> bytes:
        tok = self._match(ATOM)
        if tok is None:
            raise self._fail(what)
        return tok

    def keyword(self) -> str:
        """An atom, upper-cased (command names, options, search keys)."""
        return self.atom("keyword").decode("ascii").upper()

    def maybe_keyword(self, word: str) -> bool:
        """Consume ``word`` (case-insensitive) if it is the next whole atom."""
        m = ATOM.match(self.buf, self.pos)
        if m is not None and m.group().upper() == word.encode():
            self.pos = m.end()
            return True
        return False

    def literal(self, binary_ok: bool = False) -> tuple[bytes, bool]:
        if not self.at_literal():
            raise self._fail("literal")
        self._i += 1
        lit = self._parts[self._i]
        assert isinstance(lit, Literal)
        if lit.binary and not binary_ok:
            raise ParseError("literal8 not allowed here")
        self._i += 1
        self.buf = self._parts[self._i]  # type: ignore[assignment]
        self.pos = 0
        return lit.data, lit.binary

    def quoted(self) -> bytes:
        m = QUOTED.match(self.buf, self.pos)
        if m is None:
            raise ParseError("invalid quoted string")
        self.pos = m.end()
        val = m.group(1)
        return _UNESCAPE.sub(rb"\1", val) if b"\\" in val else val

    def string(self, binary_ok: bool = False) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == -1 and self.at_literal():
            return self.literal(binary_ok)[0]
        raise self._fail("string")

    def astring(self, what: str = "astring") -> bytes:
        c = self.peek()
        if c == 0x22 or (c == -1 and self.at_literal()):
            return self.string()
        tok = self._match(ASTRING_ATOM)
        if tok is None:
            raise self._fail(what)
        return tok

    def nstring(self) -> bytes | None:
        if self.maybe_keyword("NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        c = self.peek()
        if c == 0x22 or (c == -1 and self.at_literal()):
            return self.string()
        tok = self._match(LIST_ATOM)
        if tok is None:
            raise self._fail("mailbox pattern")
        return tok

    def number(self, limit: int = MAX_NUMBER) -> int:
        tok = self._match(NUMBER)
        if tok is None:
            raise self._fail("number")
        if len(tok) > 19 or int(tok) > limit:
            raise ParseError("number out of range")
        return int(tok)

    def nz_number(self, limit: int = MAX_NUMBER) -> int:
        n = self.number(limit)
        if n == 0:
            raise ParseError("number must not be zero")
        return n

    def number64(self) -> int:
        return self.number(MAX_NUMBER64)

    def seqset(self, allow_saved: bool = True) -> NumSet:
        tok = self._match(SEQSET)
        if tok is None:
            raise self._fail("sequence set")
        return NumSet.parse(tok, max_ranges=self.max_ranges, allow_saved=allow_saved)

    def at_seqset(self) -> bool:
        c = self.peek()
        return 0x30 <= c <= 0x39 or c == 0x2A or c == 0x24

    def flag(self) -> str:
        tok = self._match(FLAG)
        if tok is None or tok == b"\\":
            raise self._fail("flag")
        if len(tok) > vocab.MAX_KEYWORD_BYTES:
            # the store keeps keywords in keys, which LMDB bounds
            raise ParseError(f"keyword too long: at most {vocab.MAX_KEYWORD_BYTES} bytes")
        return canonical_flag(tok)

    def flag_list(self) -> tuple[str, ...]:
        self.open()
        flags: list[str] = []
        if not self.maybe_close():
            flags.append(self.flag())
            while self.maybe_sp():
                flags.append(self.flag())
            self.close()
        return tuple(flags)

    def date(self) -> date:
        if self.peek() == 0x22:
            return parse_date(self.quoted())
        tok = self._match(DATE_TOKEN)
        if tok is None:
            raise self._fail("date")
        return parse_date(tok)

    def date_time(self) -> datetime:
        if self.peek() != 0x22:
            raise self._fail("date-time")
        return parse_datetime(self.quoted())
