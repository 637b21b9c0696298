"""A bulk EXPUNGE (store/ops.py ``_expunge_bulk``, on ``emailrec.expunge_many``)
writes what the record-at-a-time loop wrote: every table, key and value,
the change log and the mailbox counts, byte for byte; and it replays from the
redo log to the very same store (its ``vanished`` rows are one RUN op).

The mix: emails only in the mailbox (destroyed, some sharing a blob, some
sharing a thread), emails also in one or two other mailboxes (rewritten,
their ``mbx.ms`` keys moved), seen and unseen, UIDs named twice and UIDs
that do not exist."""
from __future__ import annotations

import os
import time

import pytest

from mailaccess import ingest
from mailaccess.store import Store, lmdb_store, logical, ops, redolog
from test_store_logical_redo import Disk, _gen, dump, recovered


def _msg(i: int) -> bytes:
    # every 7th is the same message as the one before (one blob, two emails);
    # replies in threads of 5
    j = i - 1 if i % 7 == 0 else i
    ref = f"In-Reply-To: <{j - j % 5}@xb.test>\r\n" if j % 5 else ""
    return (f"From: a@example.org\r\nMessage-ID: <{j}@xb.test>\r\n{ref}"
            f"Subject: thread {j // 5}\r\n\r\nbody {j}\r\n").encode()


def _load(path: str, redo: bool = False):
    st = Store(path, redo=redo)
    st.start()
    acc = st.write_sync(ops.create_account, "alice", "x")
    with st.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    a = st.write_sync(ops.create_mailbox, acc, 0, "A")
    b = st.write_sync(ops.create_mailbox, acc, 0, "B")
    got = st.write_sync(ops.append_many, acc, ib,
                        [(ingest.prepare(_msg(i), 1_700_000_000, 0),
                          ["$seen"] if i % 3 == 0 else ["$deleted"]) for i in range(120)])
    eids = [g.email for g in got]
    st.write_sync(ops.copy, acc, eids[:60:2], a)     # some in two mailboxes
    st.write_sync(ops.copy, acc, eids[:60:6], b)     # some in three (threads after: all gone)
    with st.view() as v:
        uids = [u for u, _e in v.uids(acc, ib)]
    return st, acc, ib, uids


def _expunge_all(st, acc, ib, uids) -> list[int]:
    # named twice, out of order, and UIDs that never were
    pick = uids[3:100] + uids[10:20] + [9999, 10000] + uids[:3][::-1]
    return st.write_sync(ops.expunge, acc, ib, pick)


@pytest.fixture
def fixed_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_750_000_000.0)


@pytest.mark.parametrize("redo", [False, True])
def test_bulk_expunge_writes_what_the_loop_wrote(tmp_path, monkeypatch, fixed_clock, redo):
    """(REDO: the bulk path under the redo log, emailrec.apply_expunge
    logged as one EXPUNGE op; without, the tables written from its lists)."""
    st, acc, ib, uids = _load(str(tmp_path / "bulk"), redo)
    calls = []
    real = ops._expunge_bulk
    monkeypatch.setattr(ops, "_expunge_bulk", lambda *a: calls.append(1) or real(*a))
    try:
        done = _expunge_all(st, acc, ib, uids)
        bulk = dump(st)
    finally:
        st.close()
    assert calls == [1] and done == sorted(uids[:100])
    monkeypatch.setattr(ops, "EXPUNGE_BULK", 10 ** 9)      # the record-at-a-time loop
    st, acc, ib, uids = _load(str(tmp_path / "loop"), redo)
    try:
        assert _expunge_all(st, acc, ib, uids) == done
        loop = dump(st)
    finally:
        st.close()
    assert calls == [1]
    assert bulk.keys() == loop.keys()
    for table in bulk:
        assert bulk[table] == loop[table], table


def test_bulk_expunge_replays_to_the_same_store(tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_store, "REDO_MAX_COMMITS", 10 ** 6)
    monkeypatch.setattr(lmdb_store, "REDO_MAX_BYTES", 1 << 40)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 10 ** 6)
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 10 ** 6)
    path = str(tmp_path / "live")
    st, acc, ib, uids = _load(path, redo=True)
    disk = Disk(path)
    st.redo.on_sync = disk.on_sync
    _expunge_all(st, acc, ib, uids)
    st.write_sync(ops.expunge, acc, ib, uids)           # the rest, a second bulk one
    live = dump(st)
    kinds = {k for rec, _ in redolog.read_records(os.open(os.path.join(path, "redo.log"),
                                                          os.O_RDONLY), *_gen(st))
             for k, *_ in rec.ops}
    assert {logical.EXPUNGE, logical.RUN} <= kinds, kinds
    assert recovered(tmp_path, disk, st) == live


def test_vanished_and_changed_since_read_one_mailbox(tmp_path):
    """View.vanished_since / changed_since (the rows read in one pass, split
    in one C call) hold exactly the mailbox's own rows after the modseq, in
    key order: not those of the mailbox after it, not older ones."""
    st, acc, ib, uids = _load(str(tmp_path / "s"))
    try:
        with st.view() as v:
            boxes = [m.id for m in v.mailboxes(acc)]
            before = v.highest_modseq(acc)
        st.write_sync(ops.expunge, acc, ib, uids[:50])
        for m in boxes:
            with st.view() as v:
                mu = [u for u, _e in v.uids(acc, m)]
            st.write_sync(ops.expunge, acc, m, mu[-3:])
        with st.view() as v:
            for m in boxes:
                for since in (0, before, before + 1, v.highest_modseq(acc)):
                    for table, got in (("vanished", v.vanished_since(acc, m, since)),
                                       ("mbx.ms", v.changed_since(acc, m, since))):
                        want = [(ms, u) for (mm, ms, u) in _rows(v, table, acc) if mm == m
                                and ms > since]
                        assert got == want, (table, m, since)
    finally:
        st.close()


def _rows(v, table, acc):
    from mailaccess.store import keys
    pre = keys.account_prefix(acc)
    return [keys.parse_mbx_ms(bytes(k)) for k, _v in v._scan(table, pre)]
