from collections.abc import Buffer

LIT_NONE: int
LIT_SYNC: int
LIT_NONSYNC: int
LIT_BINARY: int
LIT_BAD: int
SIZE_CAP: int

def scan_line(buf: Buffer, pos: int, end: int, qstate: int) -> tuple[int, int]: ...
def literal_header(buf: Buffer, start: int, end: int) -> tuple[int, int, int]: ...
