"""The write path's per-message work, pure-Python twin (the source of truth).

Two hot loops of a bulk write run here (issue 10: ``STORE 1:* +FLAGS`` on
10,000 messages): changing the keywords of one encoded email record in
place of decode -> EmailRecord -> encode, and encoding the redo log's table
writes (store/redolog.py).  ``emailrec_c`` is the compiled twin: same
functions, same results, byte for byte.

The record layout is ``store.records.EMAIL_LAYOUT`` (read here at import);
this module builds no LMDB key.
"""
from __future__ import annotations

from ..store.records import EMAIL_LAYOUT
from ..store.redolog import OP as _OP

_HEAD = EMAIL_LAYOUT.head
_I_MS = EMAIL_LAYOUT.index("last_ms")
_I_NKW = EMAIL_LAYOUT.index("n_keywords")
_I_NMEM = EMAIL_LAYOUT.index("n_members")
_MEMBER = EMAIL_LAYOUT.member


def rewrite_keywords(data, add: frozenset, remove: frozenset, replace: frozenset | None,
                     new_ms: int, seen: str):
    """The keywords of encoded email record DATA changed: REPLACE when not
    None, else (old | ADD) - REMOVE (all lowercase).

    -> None when they stay the same; else (the new record: keywords sorted,
    last_ms = NEW_MS, everything else as it was; the old last_ms; the
    memberships as ((mailbox, uid), ...); +1/-1/0: SEEN gained/lost)."""
    head = list(_HEAD.unpack_from(data))
    nkw, nmem = head[_I_NKW], head[_I_NMEM]
    mem_end = _HEAD.size + nmem * _MEMBER.size
    old = set(bytes(data[mem_end:]).decode("utf-8").split("\0")) if nkw else set()
    new = set(replace) if replace is not None else (old | add) - remove
    if new == old:
        return None
    old_ms = head[_I_MS]
    head[_I_MS] = new_ms
    kws = sorted(new)
    head[_I_NKW] = len(kws)
    members = tuple(_MEMBER.unpack_from(data, _HEAD.size + i * _MEMBER.size)[:2]
                    for i in range(nmem))
    record = b"".join((_HEAD.pack(*head), bytes(data[_HEAD.size:mem_end]),
                       "\0".join(kws).encode("utf-8")))
    return record, old_ms, members, (seen in new) - (seen in old)


def encode_ops(ops) -> bytes:
    """The redo log payload of table writes OPS: (kind, table, key, value)
    each as ``store.redolog.OP`` (kind u8, len(table) u8, len(key) u16,
    len(value) u32), then the three byte strings (table UTF-8)."""
    parts = []
    pack = _OP.pack
    for kind, table, key, value in ops:
        t = table.encode()
        parts.append(pack(kind, len(t), len(key), len(value)))
        parts.append(t)
        parts.append(key)
        parts.append(value)
    return b"".join(parts)
