"""One email's keyword change in one call (store/ops.py ``set_keywords_one``,
_speedups/kwone) makes the general path's writes, byte for byte.

Two stores are filled alike; one runs each one-message change through
``set_keywords_reporting(..., records=True)`` (the general path, change log
written by ``WriteTx.flush_changes``), the other through
``set_keywords_one`` with the pure twin or the compiled module.  After each
request the results, the redo ops of the request, the change handed to the
bus and, at the end, every table of the two stores must be the same:
flags added and removed, \\Seen moving the mailbox's unseen count (the
Mailbox logged), a custom keyword's spelling, nothing changed, and the
cases the one-call path leaves to the general one (an email in two
mailboxes, seen from a mailbox it is not in, a missing email, a missing
mailbox).
"""
from __future__ import annotations

import time
import types

import pytest

from mailaccess import _speedups, ingest
from mailaccess.store import Store, keys, ops, redolog
from mailaccess.store.errors import NotFound

IMPLS = ["py", "c"]


def _msg(i: int) -> bytes:
    return (f"From: a@example.org\r\nTo: alice@localhost\r\nMessage-ID: <{i}@k1.test>\r\n"
            f"Subject: message {i}\r\n\r\nbody {i}\r\n").encode()


def _filled(path: str):
    st = Store(path, redo=True)
    st.start()
    acc = st.write_sync(ops.create_account, "alice", "x")
    with st.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    other = st.write_sync(ops.create_mailbox, acc, 0, "Other")
    got = st.write_sync(ops.append_many, acc, ib,
                        [(ingest.prepare(_msg(i)), ["$seen"] if i % 2 else [])
                         for i in range(6)])
    eids = [a.email for a in got]
    st.write_sync(ops.copy, acc, eids[4:5], other)          # eids[4]: in two mailboxes
    return st, acc, ib, other, eids


def _dump(st) -> dict:
    out = {}
    with st.read() as txn:
        for name, db in sorted(st.db.items()):
            if db is not None:
                rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
                out[name] = [(k, v) for k, v in rows if k != redolog.TAIL_KEY]
    return out


def _traced(fn):
    """FN's result, then the request's redo ops and change, as committed."""
    def run(tx, *args, **kw):
        res = fn(tx, *args, **kw)
        tx.flush_changes()
        return res, [(o[0], o[1], bytes(o[2]), bytes(o[3])) for o in tx._ops], tx.changes()
    return run


def _general(tx, acc, mbx, eid, **kw):
    return ops.set_keywords_reporting(tx, acc, mbx, [eid], records=True, **kw)


@pytest.mark.parametrize("impl", IMPLS)
def test_one_call_writes_what_the_general_path_writes(tmp_path, monkeypatch, impl):
    mod = _speedups.load_py("kwone") if impl == "py" else _speedups.load_c("kwone")
    if mod is None:
        pytest.skip("kwone_c is not built")
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.0)
    a, acc, ib, other, eids = _filled(str(tmp_path / "general"))
    b, acc_b, ib_b, other_b, eids_b = _filled(str(tmp_path / "one"))
    assert (acc, ib, other, eids) == (acc_b, ib_b, other_b, eids_b)
    assert _dump(a) == _dump(b)
    monkeypatch.setattr(ops, "_kwone", mod)
    calls = [
        (ib, eids[0], {"add": ["$flagged"]}),
        (ib, eids[0], {"add": ["$flagged"]}),          # already there: nothing written
        (ib, eids[0], {"add": ["$seen", "$answered"]}),   # unseen count moves
        (ib, eids[1], {"remove": ["$seen"]}),
        (ib, eids[1], {"remove": ["$draft"]}),         # not there: nothing written
        (ib, eids[2], {"replace": ["MyKeyword", "$seen"]}),   # a custom spelling
        (ib, eids[2], {"replace": []}),
        (ib, eids[3], {"add": ["$MDNSent"], "remove": ["$seen"]}),
        (ib, eids[4], {"add": ["$flagged"]}),          # in two mailboxes: general
        (other, eids[4], {"remove": ["$seen"]}),
        (other, eids[5], {"add": ["$flagged"]}),       # not in Other: general
        (ib, 9999, {"add": ["$flagged"]}),             # no such email
        (ib, eids[5], {"add": ["$deleted"]}),
    ]
    for mbx, eid, kw in calls:
        want = a.write_sync(_traced(_general), acc, mbx, eid, **kw)
        got = b.write_sync(_traced(ops.set_keywords_one), acc, mbx, eid, **kw)
        assert got == want, (mbx, eid, kw)
    with pytest.raises(NotFound):
        b.write_sync(ops.set_keywords_one, acc, 777, eids[0], add=["$flagged"])
    assert _dump(a) == _dump(b)
    a.close()
    b.close()


def test_the_one_call_path_is_taken(tmp_path, monkeypatch):
    """(Else the test above compares the general path with itself.)"""
    calls = []
    real = ops._kwone.write_one
    monkeypatch.setattr(ops._kwone, "write_one", lambda *a: calls.append(real(*a)) or calls[-1])
    st, acc, ib, other, eids = _filled(str(tmp_path / "s"))
    res = st.write_sync(ops.set_keywords_one, acc, ib, eids[0], add=["$flagged"])
    assert res.changed == [eids[0]] and res.modseq_after is not None
    assert len(calls) == 1 and calls[0] is not None and calls[0][1] == res.modseq_after
    made = st._kwone_tables[1]
    if _speedups.IMPLEMENTATION.get("kwone") == "c" and _speedups.load_c("emailrec").lmdb_direct():
        assert made.direct          # LMDB called directly (else all of it is the twin's)
    st.close()


def test_the_compiled_keys_are_the_stores(tmp_path):
    """kwone_c calls LMDB itself only when the keys it builds are the ones
    store/keys.py builds (it is handed them); else its twin writes."""
    kc = _speedups.load_c("kwone")
    if kc is None or not _speedups.load_c("emailrec").lmdb_direct():
        pytest.skip("kwone_c is not built, or LMDB is not called directly")
    st, *_ = _filled(str(tmp_path / "s"))
    moved = types.SimpleNamespace(**{**vars(keys), "chg": lambda acc, ms: keys.chg(acc, ms + 1)})

    def direct(tx, k):
        return kc.tables(tx._raw, ops._kwone_handles(tx.db), k).direct

    assert st.write_sync(direct, keys) is True
    assert st.write_sync(direct, moved) is False
    st.close()
