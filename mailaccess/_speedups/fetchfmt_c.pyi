from collections.abc import Buffer, Callable, Iterable, Sequence

ITEMS: tuple[str, ...]

def item_codes(items: Iterable[str]) -> list[int]: ...
def internaldate(received: int, tz: int) -> bytes: ...
def fetch_simple(
    read_email: Callable[[int], Buffer | None],
    read_index: Callable[[bytes], Buffer | None],
    uids: Iterable[int],
    snap_uids: Sequence[int],
    snap_eids: Sequence[int],
    items: Sequence[str],
    flags: Callable[[list[str]], bytes] | None,
    condstore: bool,
    utf8: bool,
) -> tuple[list[bytes], dict[int, int], list[int]]: ...
