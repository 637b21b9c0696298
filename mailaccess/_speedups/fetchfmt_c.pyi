from collections.abc import Buffer, Callable, Container, Iterable, Sequence
from typing import NamedTuple

ITEMS: tuple[str, ...]

def item_codes(items: Iterable[str | HeaderFields | WholeBody | WholeHeader]) -> list[int]: ...
def internaldate(received: int, tz: int) -> bytes: ...
def fetch_simple(
    read_email: Callable[[int], Buffer | None],
    read_index: Callable[[bytes], Buffer | None],
    uids: Iterable[int],
    snap_uids: Sequence[int],
    snap_eids: Sequence[int],
    items: Sequence[str | HeaderFields | WholeBody | WholeHeader],
    flags: Callable[[list[str]], bytes] | None,
    condstore: bool,
    utf8: bool,
    read_blob: Callable[[bytes], Buffer | None] | None = None,
    read_bs: Callable[[int], Buffer | None] | None = None,
) -> tuple[list[bytes], dict[int, int], list[int]]: ...
def fetch_upto(
    read_email: Callable[[int], Buffer | None],
    read_index: Callable[[bytes], Buffer | None],
    uids: Sequence[int],
    start: int,
    snap_uids: Sequence[int],
    snap_eids: Sequence[int],
    items: Sequence[str | HeaderFields | WholeBody | WholeHeader],
    flags: Callable[[list[str]], bytes] | None,
    condstore: bool,
    utf8: bool,
    read_blob: Callable[[bytes], Buffer | None] | None,
    budget: int,
    recent: Container[int] | None = None,
    read_bs: Callable[[int], Buffer | None] | None = None,
    into: dict[int, int] | None = None,
) -> tuple[bytes, dict[int, int], int, bool]: ...

class HeaderFields(NamedTuple):
    label: bytes
    names: tuple[str, ...]
    negate: bool

HEADER_FIELDS: int

def header_literal(raw_header: Buffer, item: HeaderFields) -> bytes: ...

class WholeBody(NamedTuple):
    label: bytes

WHOLE_BODY: int

class WholeHeader(NamedTuple):
    label: bytes

WHOLE_HEADER: int
HEADER_WORK: int

def body_literal(raw: Buffer, item: WholeBody | WholeHeader) -> bytes: ...
def with_recent(flags: bytes) -> bytes: ...
def lmdb_direct(enable: bool | None = None) -> bool: ...
def look_ahead(enable: bool | None = None, depth: int | None = None) -> bool: ...
