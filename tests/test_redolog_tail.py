"""Where the redo log's tail lives (perf7-ckpt).

Every logged commit writes the log's tail (``redolog.TAIL_KEY``: generation,
offset) in its own transaction, so that records stay in commit order across
processes.  It is a row of LMDB's main database, the one that names the
tables: every commit writes that page anyway (each table it changes gets a
new root there), so the tail costs no page of its own.  Kept in the ``meta``
table, as releases before did, it cost one more copied page per commit (the
meta table's leaf), written by LMDB at the commit and again by the
checkpoint's flush of data.mdb.  A store an earlier release left, with its
tail in ``meta``, opens: the checkpoint at open moves the row, and never
reuses a generation the old row names.
"""
from __future__ import annotations

import struct

import lmdb

from mailaccess import accounts, ingest
from mailaccess.check import check_store
from mailaccess.store import ops, redolog
from mailaccess.store.lmdb_store import LmdbStore

MSG = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\n"
       b"Message-ID: <%d@example.org>\r\n\r\nbody %d\r\n")


def _fill(s: LmdbStore, n: int = 40):
    accounts.add_user(s, "u", "p")
    with s.view() as v:
        acc = v.account_by_name("u").id
        inbox = v.mailbox_by_role(acc, "inbox").id
    s.write_sync(ops.append_many, acc, inbox,
                 [(ingest.prepare(MSG % (i, i)), []) for i in range(n)])
    with s.view() as v:
        eids = [e for _, e in v.uids(acc, inbox)]
    return acc, inbox, eids


def _root(s: LmdbStore, table: str) -> int:
    """The root page of TABLE: its record in LMDB's main database (an MDB_db,
    whose last 8 bytes are md_root)."""
    with s.env.begin() as txn:
        rec = bytes(txn.get(table.encode()))
    return struct.unpack_from("=Q", rec, len(rec) - 8)[0]


def _tail(s: LmdbStore, db):
    with s.env.begin() as txn:
        return redolog.decode_tail(txn.get(redolog.TAIL_KEY, db=db))


def test_a_commit_moves_the_tail_and_writes_no_page_of_meta(tmp_path):
    s = LmdbStore(tmp_path / "store")
    s.start()
    try:
        acc, inbox, eids = _fill(s)
        main = s.env.open_db(None)
        for eid in eids[:12]:          # past a switch (REDO_MAX_COMMITS)
            before, root = _tail(s, main), _root(s, "meta")
            s.write_sync(ops.set_keywords_reporting, acc, inbox, [eid], add=["\\Flagged"],
                         records=True)
            after = _tail(s, main)
            assert after is not None and after != before
            assert after[1] == s._redo_tail
            # the meta table's root page is the one it had: the commit
            # copied no page of it
            assert _root(s, "meta") == root
        assert _tail(s, s.db["meta"]) is None
    finally:
        s.close()


def test_a_store_with_its_tail_in_meta_opens_and_moves_it(tmp_path):
    """As a release before perf7-ckpt left it: the tail in ``meta``, at a
    generation past the log's header (a generation is never used twice)."""
    path = tmp_path / "store"
    s = LmdbStore(path)
    s.start()
    acc, inbox, eids = _fill(s)
    s.close()
    env = lmdb.open(str(path), max_dbs=64, subdir=True)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        assert txn.delete(redolog.TAIL_KEY)           # (main database)
        txn.put(redolog.TAIL_KEY, redolog.encode_tail(50, redolog.RECORDS_AT), db=meta)
    env.close()

    s = LmdbStore(path)
    s.start()
    try:
        assert _tail(s, s.db["meta"]) is None
        gen, _at = _tail(s, s.env.open_db(None))
        assert gen > 50
        s.write_sync(ops.set_keywords_reporting, acc, inbox, eids[:3], add=["$x"],
                     records=True)
    finally:
        s.close()
    s = LmdbStore(path)
    s.start()
    try:
        with s.view() as v:
            assert v.uids(acc, inbox)
        assert check_store(s) == []
        assert _tail(s, s.db["meta"]) is None
    finally:
        s.close()
