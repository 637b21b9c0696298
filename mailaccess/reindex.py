"""``mailaccess reindex``: rebuild stored message indexes from the stored bytes.

Every blob's index (``blob.idx``, mailaccess/mime/index.py) is derived from
the blob's raw bytes alone, so it can be rebuilt at any time: after an
upgrade that changed the index format, or after a parser fix.  A rebuild
changes no id, UID, record or modseq (store/ops.py ``replace_index``), so it
is safe while the server runs; deliveries meanwhile are indexed in the
current format already.

Pipeline: the calling thread reads a batch of blobs (in hash order) from a
read snapshot, parses them (``index_message``), and hands the batch to the
store's writer as one request (``ops.reindex_batch``) that also moves the
account's cursor to the batch's last hash; it parses the next batch while
that one commits.  A run is planned by giving each account a cursor
(``ops.plan_reindex``); a finished account drops its cursor.  So an
interrupted run resumes after its last durable batch, and accounts it
finished are not done again; ``restart`` forgets an interrupted run.

When no run is pending, the store-wide index version (the oldest format any
stored index has) is recomputed and recorded, which stops the notice the
store logs at open.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .mime import index as mindex
from .query import facts
from .store import ops
from .store.errors import NotFound

__all__ = ["ReindexSummary", "reindex", "settle_index_version"]

BATCH = 128                 # blobs per writer request
BATCH_BYTES = 16 << 20      # raw bytes per writer request


@dataclass
class ReindexSummary:
    accounts: int = 0           # accounts finished by this run
    rebuilt: int = 0            # indexes rebuilt (changed + identical)
    changed: int = 0            # ... whose stored bytes changed
    skipped: int = 0            # already current (outdated_only)
    gone: int = 0               # expunged while the run read them
    bytes: int = 0
    resumed: bool = False
    index_version: int = 0      # the store-wide version afterwards
    elapsed: float = 0.0

    def __str__(self) -> str:
        s = (f"reindexed {self.rebuilt} messages ({self.bytes / 1e6:.1f} MB) of "
             f"{self.accounts} account(s) in {self.elapsed:.1f}s: {self.changed} changed, "
             f"{self.rebuilt - self.changed} identical")
        if self.skipped:
            s += f", {self.skipped} already current"
        if self.resumed:
            s += " (resumed an interrupted run)"
        if self.index_version >= mindex.FORMAT_VERSION:
            s += f"\nevery message index is in format {mindex.FORMAT_VERSION}"
        else:
            s += (f"\nindexes older than format {mindex.FORMAT_VERSION} remain (oldest: "
                  f"{self.index_version}): run `mailaccess reindex` for all accounts")
        return s


def reindex(store, user: str | None = None, *, progress=None, outdated_only: bool = False,
            restart: bool = False, batch: int = BATCH,
            batch_bytes: int = BATCH_BYTES) -> ReindexSummary:
    """Rebuild the index of every blob of USER (or of every account).

    Resumes an interrupted run over the same accounts (for all accounts: the
    interrupted run's accounts) unless RESTART.  OUTDATED_ONLY leaves indexes
    already in the current format alone.  PROGRESS: a mailaccess.progress.
    Progress (count = blobs visited, bytes = their raw size)."""
    t0 = time.monotonic()
    summary = ReindexSummary()
    with store.view() as v:
        existing = {a.id: a.name for a in v.accounts()}
        cursors = v.reindex_cursors()
        if user is not None:
            a = v.account_by_name(user)
            if a is None:
                raise NotFound(f"no account {user!r}")
            scope = [a.id]
        else:
            scope = sorted(existing)
    gone = [acc for acc in cursors if acc not in existing]
    if gone:
        store.write_sync(ops.end_reindex, gone)
    if restart:
        stale = [acc for acc in scope if acc in cursors]
        if stale:
            store.write_sync(ops.end_reindex, stale)
        cursors = {}
    pending = {acc: c for acc, c in cursors.items() if acc in scope}
    if pending:
        summary.resumed = True
        plan = sorted(pending)
    else:
        plan = scope
        pending = {acc: b"" for acc in plan}
        if plan:
            store.write_sync(ops.plan_reindex, plan)
    if progress is not None and hasattr(progress, "set_total"):
        with store.view() as v:
            progress.set_total(sum(v.count_blobs(acc, pending[acc]) for acc in plan))
    try:
        for acc in plan:
            _reindex_account(store, acc, pending[acc], summary, progress, outdated_only,
                             batch, batch_bytes)
            store.write_sync(ops.end_reindex, [acc])
            summary.accounts += 1
    finally:
        if progress is not None:
            progress.close()
    summary.index_version = settle_index_version(store)
    summary.elapsed = time.monotonic() - t0
    return summary


def _read_batch(store, acc: int, after: bytes, outdated_only: bool, batch: int,
                batch_bytes: int) -> tuple[list[tuple[bytes, bytes]], bytes, int, int, int, list]:
    """-> ([(hash, raw)] to rebuild, last hash visited, blobs visited, bytes,
    blobs skipped as current, [(hash, facts record)] of skipped blobs with an
    email lacking its msg.facts record, its msg.bs row or its msg.hdr row:
    ops.reindex_batch writes them from the stored index)."""
    todo: list[tuple[bytes, bytes]] = []
    facts_only: list[tuple[bytes, bytes]] = []
    last = after
    visited = nbytes = skipped = 0
    with store.view() as v:
        read_facts = v.facts_reader(acc)
        read_bs = v.bodystructure_reader(acc)
        read_row = v.search_row_reader(acc)
        for h, idx in v.blob_indexes(acc, after):
            if visited >= batch or nbytes >= batch_bytes:
                break
            visited += 1
            last = h
            if outdated_only and mindex.index_version(idx) == mindex.FORMAT_VERSION:
                skipped += 1
                # the index stays; the records older mail lacks are written from it
                # (an email whose header is too big for a msg.hdr row has
                # none: its blob is visited again by each run, and nothing
                # is written)
                if read_facts is not None and read_bs is not None and read_row is not None \
                        and any(read_facts(e) is None or read_bs(e) is None
                                or read_row(e) is None for e in v.blob_refs(acc, h)):
                    facts_only.append((h, facts.record(idx)))
                continue
            raw = v.blob(acc, h)
            if raw is None:
                continue
            raw = bytes(raw)
            nbytes += len(raw)
            todo.append((h, raw))
    return todo, last, visited, nbytes, skipped, facts_only


class _InFlight:
    """The one batch the writer is committing while the next one is parsed."""

    def __init__(self, store):
        self.store = store
        self.event = threading.Event()
        self.box: list = []
        self.busy = False

    def submit(self, fn, *args) -> None:
        self.event.clear()
        self.box.clear()
        self.busy = True

        def done(result, error):
            self.box.append((result, error))
            self.event.set()

        self.store.submit(fn, *args, done=done)

    def wait(self):
        if not self.busy:
            return None
        self.event.wait()
        self.busy = False
        result, error = self.box[0]
        if error is not None:
            raise error
        return result


def _reindex_account(store, acc: int, after: bytes, summary: ReindexSummary, progress,
                     outdated_only: bool, batch: int, batch_bytes: int) -> None:
    flight = _InFlight(store)
    report = None     # (visited, nbytes, skipped, n) of the batch in flight

    def settle():
        nonlocal report
        res = flight.wait()
        if report is None:
            return
        visited, nbytes, skipped, n = report
        report = None
        changed, same = res
        summary.changed += changed
        summary.rebuilt += changed + same
        summary.gone += n - changed - same
        summary.skipped += skipped
        summary.bytes += nbytes
        if progress is not None:
            progress.update(visited, nbytes)

    try:
        while True:
            todo, last, visited, nbytes, skipped, facts_only = _read_batch(
                store, acc, after, outdated_only, batch, batch_bytes)
            if not visited:
                break
            entries = []
            for h, raw in todo:
                index = mindex.encode_index(mindex.index_message(raw))
                # the emails' msg.facts records are rewritten with the index
                entries.append((h, index, facts.record(index)))
            settle()          # the previous batch is durable before this one goes
            flight.submit(ops.reindex_batch, acc, entries, last, facts_only)
            report = (visited, nbytes, skipped, len(entries))
            after = last
    finally:
        settle()


def settle_index_version(store) -> int:
    """Record the oldest index format stored, when no reindex run is pending;
    -> the store-wide index version."""
    with store.view() as v:
        stored = v.index_version()
        if v.reindex_cursors():
            return stored
        floor = min(mindex.READABLE_VERSIONS)
        oldest = mindex.FORMAT_VERSION
        for a in v.accounts():
            for _h, idx in v.blob_indexes(a.id):
                ver = mindex.index_version(idx)
                if ver in mindex.READABLE_VERSIONS and ver < oldest:
                    oldest = ver
                    if oldest == floor:
                        break
            if oldest == floor:
                break
    if oldest != stored:
        store.write_sync(ops.set_index_version, oldest)
    return oldest
