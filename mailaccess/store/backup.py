"""Online backups: a consistent, compacted copy of the store.

``backup_store(store, target)`` writes TARGET/store/data.mdb with LMDB's
copy-with-compaction (``env.copy(path, compact=True)``), which reads one
snapshot in a read transaction: writers (the server's writer thread, another
process's) go on meanwhile, and the copy holds exactly the commits that were
durable when it began.  The copy is written beside its final place and
renamed only when complete and synced, so a backup interrupted half-way never
looks like a whole one.  TARGET is then itself a data directory: serve it
with ``--data-dir TARGET``, or copy TARGET/store into a data directory.
"""
from __future__ import annotations

import os
import shutil

from .errors import StoreError

__all__ = ["backup_store"]


def backup_store(store, target: str | os.PathLike) -> str:
    """Copy STORE to TARGET/store/data.mdb -> that file's path.  TARGET must
    be absent or empty: a backup never overwrites anything."""
    target = os.fspath(target)
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise StoreError(f"{target} exists and is not an empty directory: a backup never "
                         "overwrites anything; name a new or empty directory")
    os.makedirs(target, exist_ok=True)
    partial = os.path.join(target, ".store.partial")
    final = os.path.join(target, "store")
    os.makedirs(partial)
    try:
        store.env.copy(partial, compact=True)
        fd = os.open(os.path.join(partial, "data.mdb"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(partial, final)
        dfd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return os.path.join(final, "data.mdb")
