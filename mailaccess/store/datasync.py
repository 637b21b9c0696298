"""What a background checkpoint must flush of data.mdb (perf7-ckpt).

A checkpoint makes snapshot S_next durable in data.mdb.  The previous
checkpoint's snapshot S_prev is durable already, and pinned (a read
transaction), so none of its pages changed since.  The pages S_next needs
written are the ones it uses that S_prev did not:

    new = (F(S_prev) | pages past S_prev's last page) - F(S_next)

where F(S) is every page LMDB's free database lists in snapshot S (LMDB
keeps every page of the file either in a tree or in a free-database
record, ``mdb_audit``).  Everything else that is dirty in the page cache is
a page freed again before S_next (a copy a later commit replaced: most of
what the commits between two checkpoints write, since the pin keeps LMDB
from reusing any page freed after S_prev) and needs no flush for S_next.
``env.sync`` (an fdatasync) would write it all back, each page its own I/O.

This module parses LMDB 0.9's free database from the file (the page layout
of lmdb.h/mdb.c, 64-bit page numbers), keeping the leaves it parsed: a page
number both snapshots' free databases hold is the same page (pinned), so
only the pages a checkpoint interval rewrote are parsed again.  It imports
nothing of LMDB's Python binding and changes nothing.
"""
from __future__ import annotations

import ctypes
import os
import struct

P_BRANCH = 0x01
F_BIGDATA = 0x01
P_INVALID = (1 << 64) - 1
_PAGE = struct.Struct("=QHHHH")       # pgno, pad, flags, lower, upper (PAGEHDRSZ 16)
_NODE = struct.Struct("=HHHH")        # lo, hi, flags, ksize (NODESZ 8)
_Q = struct.Struct("=Q")
# MDB_meta after the 16-byte page header: magic, version, address, mapsize,
# then two MDB_db (48 bytes: pad, flags, depth, branch, leaf, overflow,
# entries, root), then last_pg and txnid
_META_FREE_ROOT = 16 + 24 + 40
_META_LAST_TXNID = 16 + 24 + 96


def meta_of(metas: tuple[bytes, bytes], txnid: int) -> tuple[int, int] | None:
    """(free database root, last page) of the meta page of transaction
    TXNID among METAS (the first bytes of both meta pages), or None."""
    for raw in metas:
        last, tid = struct.unpack_from("=QQ", raw, _META_LAST_TXNID)
        if tid == txnid:
            return _Q.unpack_from(raw, _META_FREE_ROOT)[0], last
    return None


class FreeDb:
    """The free pages of one snapshot, read from the file (FD, page size
    PSIZE) with the leaves of the previous read reused."""

    def __init__(self, fd: int, psize: int):
        self.fd = fd
        self.psize = psize
        self._leaves: dict[int, tuple] = {}     # pgno -> the page numbers its records list

    def read(self, root: int) -> set[int]:
        """Every page the free database rooted at ROOT lists."""
        fd, psize = self.fd, self.psize
        old, new = self._leaves, {}
        out: set[int] = set()
        stack = [] if root == P_INVALID else [root]
        while stack:
            pg = stack.pop()
            got = old.get(pg)
            if got is not None:
                new[pg] = got
                out.update(got)
                continue
            page = os.pread(fd, psize, pg * psize)
            flags, lower = _PAGE.unpack_from(page)[2:4]
            ptrs = struct.unpack_from("=%dH" % ((lower - 16) >> 1), page, 16)
            if flags & P_BRANCH:
                for p in ptrs:
                    lo, hi, fl, _k = _NODE.unpack_from(page, p)
                    stack.append(lo | hi << 16 | fl << 32)
                continue
            listed: list[int] = []
            for p in ptrs:
                lo, hi, fl, ks = _NODE.unpack_from(page, p)
                at = p + 8 + ks
                if fl & F_BIGDATA:
                    opg = _Q.unpack_from(page, at)[0]
                    n = struct.unpack_from("=I", os.pread(fd, 16, opg * psize), 12)[0]
                    data = os.pread(fd, n * psize, opg * psize)
                    at, size = 16, len(data) - 16
                else:
                    data, size = page, lo | hi << 16
                cnt = _Q.unpack_from(data, at)[0]
                if 8 + cnt * 8 > size:
                    raise ValueError(f"free database page {pg}: a record longer than its node")
                listed.extend(struct.unpack_from("=%dQ" % cnt, data, at + 8))
            got = tuple(listed)
            new[pg] = got
            out.update(got)
        self._leaves = new
        return out


def runs(pages) -> list[tuple[int, int]]:
    """Sorted page numbers -> (first, count) of each run of consecutive ones."""
    out: list[tuple[int, int]] = []
    first = prev = None
    for p in sorted(pages):
        if prev is not None and p == prev + 1:
            prev = p
            continue
        if first is not None:
            out.append((first, prev - first + 1))
        first = prev = p
    if first is not None:
        out.append((first, prev - first + 1))
    return out


SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
_libc = None


def _sfr():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        f = lib.sync_file_range
        f.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        f.restype = ctypes.c_int
        _libc = f
    return _libc


def write_pages(fd: int, psize: int, spans: list[tuple[int, int]]) -> None:
    """Start the write-back of each span, then wait for all of them (each
    written and completed: durable after the next device flush)."""
    sfr = _sfr()
    for flags in (SYNC_FILE_RANGE_WRITE, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                  | SYNC_FILE_RANGE_WAIT_AFTER):
        for first, n in spans:
            if sfr(fd, first * psize, n * psize, flags) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
