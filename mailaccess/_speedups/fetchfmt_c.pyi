from collections.abc import Buffer, Callable, Iterable, Sequence
from typing import Any

ITEMS: tuple[str, ...]

def item_codes(items: Iterable[str]) -> list[int]: ...
def internaldate(received: int, tz: int) -> bytes: ...
def fetch_simple(
    get: Callable[[bytes, None, Any], Buffer | None],
    msg_db: Any,
    idx_db: Any,
    acc: int,
    uids: Iterable[int],
    snap_uids: Sequence[int],
    snap_eids: Sequence[int],
    items: Sequence[str],
    spell: dict[str, str] | None,
    condstore: bool,
    utf8: bool,
) -> tuple[list[bytes], dict[int, int], list[int]]: ...
