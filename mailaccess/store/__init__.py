"""The one mail store: LMDB tables, the writer thread, domain reads and writes.

Only this package knows LMDB.  Protocols read through ``Store.view()`` and
write by handing functions from ``ops`` to ``Store.submit``/``write_sync`` (or
the async ``mailaccess.storeio.write``).
"""
from .errors import (AlreadyExists, CannotCalculateChanges, Conflict, InvalidName, NotFound,
                     OverQuota, StoreDamaged, StoreError, StoreFullError,
                     StoreMissing, LimitReached)
from .lmdb_store import CommitInfo, LmdbStore as Store
from .records import Account, Change, EmailRecord, Mailbox, Membership
from .view import View

__all__ = [
    "Store", "View", "CommitInfo", "Account", "Change", "EmailRecord", "Mailbox", "Membership",
    "StoreError", "StoreFullError", "StoreMissing", "StoreDamaged", "NotFound", "AlreadyExists",
    "InvalidName", "OverQuota", "LimitReached",
    "Conflict", "CannotCalculateChanges",
]
