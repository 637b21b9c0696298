"""Errors raised while parsing IMAP commands."""
from __future__ import annotations


class ParseError(ValueError):
    """A grammar helper rejected its input (no tag known at that level)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CommandError(Exception):
    """A command is malformed: the session answers ``tag BAD [code] message``.

    ``tag`` is None when even the tag was unusable (answer ``* BAD``).
    ``code`` is a response code such as ``"BADCHARSET"`` or ``"LIMIT"``.
    """

    def __init__(self, tag: bytes | None, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return f"CommandError({self.tag!r}, {self.message!r}, code={self.code!r})"
