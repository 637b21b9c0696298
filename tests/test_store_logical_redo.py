"""Logical redo ops (store/logical.py) replay to the very same store.

A bulk keyword change is logged as the request (KEYWORDS) and its change-log
rows as one RUN op; recovery calls the same rewrite on the state as of the
checkpoint.  The test writes a mix (appends, copies, expunges, bulk keyword
changes with repeated, missing and conflicting emails, some rewritten a
slice at a time as a streamed bulk STORE is, several requests in one batch), keeps the disk as it was at its last flushes (the power-loss
test's hook), recovers that image in a fresh store and compares every table,
key and value, byte for byte, with the live store.
"""
from __future__ import annotations

import os
import threading

import pytest

from mailaccess import ingest
from mailaccess.store import Store, keys, logical, lmdb_store, ops, redolog


def _msg(i: int) -> bytes:
    return (f"From: a@example.org\r\nTo: alice@localhost\r\nMessage-ID: <{i}@lr.test>\r\n"
            f"Subject: message {i}\r\n\r\nbody {i}\r\n").encode()


class Disk:
    """data.mdb as of the last checkpoint's flush, redo.log as of its last flush."""

    def __init__(self, path: str):
        self.path = path
        self.data = self._read("data.mdb")
        self.log = self._read("redo.log")

    def _read(self, name: str) -> bytes:
        with open(os.path.join(self.path, name), "rb") as fh:
            return fh.read()

    def on_sync(self, what: str) -> None:
        if what == "data":
            self.data = self._read("data.mdb")
        else:
            self.log = self._read("redo.log")


def dump(st) -> dict:
    out = {}
    with st.read() as txn:
        for name, db in sorted(st.db.items()):
            if db is None:
                continue
            rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
            if name == "meta":      # the log's own tail is not logged
                rows = [(k, v) for k, v in rows if k != redolog.TAIL_KEY]
            out[name] = rows
    return out


def _watched(path: str, **store_kw):
    """A started store with a redo log at PATH, a Disk following its
    flushes, and an account -> (store, disk, account, its inbox)."""
    st = Store(path, redo=True, **store_kw)
    st.start()
    disk = Disk(path)
    st.redo.on_sync = disk.on_sync
    acc = st.write_sync(ops.create_account, "alice", "x")
    return st, disk, acc, _inbox(st, acc)


def _inbox(st, acc: int) -> int:
    with st.view() as v:
        return v.mailbox_by_role(acc, "inbox").id


def _batch(st, calls) -> list:
    """Submit CALLS [(fn, args, kwargs)] at once (one batch, nested transactions)."""
    box: list = [None] * len(calls)
    done = threading.Semaphore(0)
    for i, (fn, args, kw) in enumerate(calls):
        def cb(res, err, i=i):
            box[i] = (res, err)
            done.release()
        st.submit(lambda tx, *a, fn=fn, kw=kw: fn(tx, *a, **kw), *args, done=cb)
    for _ in calls:
        done.acquire()
    return box


@pytest.mark.parametrize("seed", [1, 2])
def test_logical_records_replay_to_the_same_store(tmp_path, monkeypatch, seed):
    # no checkpoint after the first: every write below is replayed
    monkeypatch.setattr(lmdb_store, "REDO_MAX_COMMITS", 10 ** 6)
    monkeypatch.setattr(lmdb_store, "REDO_MAX_BYTES", 1 << 40)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 10 ** 6)
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 10 ** 6)
    import random
    rng = random.Random(seed)
    path = str(tmp_path / "live")
    st, disk, acc, ib = _watched(path)
    other = st.write_sync(ops.create_mailbox, acc, 0, "Other")
    eids = []
    for lo in range(0, 150, 50):
        got = st.write_sync(ops.append_many, acc, ib,
                            [(ingest.prepare(_msg(i)), ["$seen"] if i % 4 == 0 else [])
                             for i in range(lo, lo + 50)])
        eids += [a.email for a in got]
    st.write_sync(ops.copy, acc, eids[::3], other)          # emails in two mailboxes
    gone = eids[5:9]
    with st.view() as v:
        uids = [v.email(acc, e).uid_in(ib) for e in gone]
    st.write_sync(ops.expunge, acc, ib, uids)               # eids that no longer exist
    with st.view() as v:
        mid_ms = v.highest_modseq(acc)
    kws = ["$seen", "$flagged", "$Custom", "$answered"]
    for step in range(8):
        pick = rng.sample(eids, rng.randint(logical.MIN_EMAILS, len(eids)))
        pick += pick[:5]                                    # some named twice
        mode = rng.choice(["add", "remove", "replace"])
        kw = {mode: rng.sample(kws, rng.randint(0 if mode == "replace" else 1, 2))}
        since = mid_ms if step == 3 else None               # conflicts
        # a streamed request (IMAP's bulk STORE): rewritten in slices, some
        # too small for a logical op, each KEYWORDS op its own slice
        emitted: dict = {}
        if step % 3 == 1:
            kw.update(emit=lambda before, recs: emitted.update(recs), slices=(40, 7))
        st.write_sync(ops.set_keywords_reporting, acc, ib, pick, unchanged_since=since,
                      records=step % 2 == 0, **kw)
        if step % 3 == 1:
            # what was emitted before the commit is what was committed
            with st.read() as txn:
                now = {e: txn.get(keys.msg_of(acc)(e), db=st.db["msg"]) for e in pick}
            assert emitted and emitted == {e: r for e, r in now.items() if r is not None}
    # several requests in one batch: each in a nested transaction, one failing
    res = _batch(st, [
        (ops.set_keywords, (acc, eids[:80]), {"add": ["$seen"]}),
        (ops.set_keywords_reporting, (acc, 999999, eids), {"add": ["x"]}),   # no mailbox
        (ops.set_keywords, (acc, eids[40:]), {"remove": ["$seen", "$flagged"]}),
        (ops.set_keywords, (acc, eids[::2]), {"replace": ["$draft"]}),
    ])
    assert res[1][1] is not None and res[0][1] is None and res[3][1] is None
    live = dump(st)
    kinds = {k for rec, _ in redolog.read_records(os.open(os.path.join(path, "redo.log"),
                                                          os.O_RDONLY), *_gen(st))
             for k, *_ in rec.ops}
    assert {logical.KEYWORDS, logical.RUN} <= kinds, kinds
    assert recovered(tmp_path, disk, st) == live


def recovered(tmp_path, disk: Disk, st) -> dict:
    """ST closed, then the dump of a store recovered from DISK (the disk as
    of the last flushes: the first checkpoint's data, the whole log)."""
    image = tmp_path / "image"
    image.mkdir()
    (image / "data.mdb").write_bytes(disk.data)
    (image / "redo.log").write_bytes(disk.log)
    st.close()
    rec = Store(str(image), create=False)
    try:
        return dump(rec)
    finally:
        rec.close()


def _gen(st) -> tuple[int, int]:
    h = st.redo.header()
    return h.generation, h.txnid


def test_a_keywords_op_round_trips():
    value = logical.encode_keywords(7, 12345, [3, 1, 3, 2 ** 32 - 1], frozenset({"a", "b"}),
                                    frozenset(), None, 0)
    assert logical.decode_keywords(value) == (7, 12345, [3, 1, 3, 2 ** 32 - 1],
                                              frozenset({"a", "b"}), frozenset(), None, 0)
    value = logical.encode_keywords(1, 2, [], frozenset(), frozenset({"$seen"}),
                                    frozenset({"é"}), None)
    assert logical.decode_keywords(value) == (1, 2, [], frozenset(), frozenset({"$seen"}),
                                              frozenset({"é"}), None)
    run = logical.encode_run(b"u", 8, b"".join(i.to_bytes(8, "big") for i in (5, 9)))
    assert logical.run_items(b"P", run) == [(b"P" + (5).to_bytes(8, "big"), b"u"),
                                            (b"P" + (9).to_bytes(8, "big"), b"u")]


def test_pruning_replays_to_the_same_store(tmp_path, monkeypatch):
    """Change-log pruning (changelog.prune: a cursor per kind and per
    mailbox, the deletes logged as it makes them) replays to the very same
    store: small modseqs (one APPEND each), run rows cut by the budget, the
    vanished rows of an expunge, past the hard limit (before the next
    request), in idle time and by prune_changes."""
    from mailaccess.store.changelog import Retention

    monkeypatch.setattr(lmdb_store, "REDO_MAX_COMMITS", 10 ** 6)
    monkeypatch.setattr(lmdb_store, "REDO_MAX_BYTES", 1 << 40)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 10 ** 6)
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 10 ** 6)
    path = str(tmp_path / "live")
    st, disk, acc, ib = _watched(
        path, retention=Retention(max_age=0, max_entries=150, slice=37, sweep_interval=0))
    eids = []
    for i in range(60):             # a modseq each
        eids += [a.email for a in st.write_sync(ops.append_many, acc, ib,
                                                [(ingest.prepare(_msg(i)), [])])]
    for step in range(6):           # runs of consecutive ids, pruned part by part
        st.write_sync(ops.set_keywords, acc, eids, add=[f"k{step}"])
    with st.view() as v:
        uids = [v.email(acc, e).uid_in(ib) for e in eids[10:50]]
    st.write_sync(ops.expunge, acc, ib, uids)
    for step in range(4):
        st.write_sync(ops.set_keywords, acc, eids[:10] + eids[50:], add=[f"j{step}"])
    st.prune_changes()
    st.write_sync(ops.set_keywords, acc, eids[:3], add=["last"])    # flushes the log
    with st.view() as v:
        assert v.change_horizon(acc) > 60
    live = dump(st)
    assert recovered(tmp_path, disk, st) == live
