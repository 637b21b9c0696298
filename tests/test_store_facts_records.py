"""The ``msg.facts`` records (store/records.py encode_facts): one per email,
written at delivery beside the email record, equal to the facts of its
index (query/facts.py ``record``), kept right on every path that creates or
destroys an email (APPEND, COPY, MOVE, EXPUNGE one by one and in bulk, JMAP
destroy, delete_account), rewritten by reindex (which also writes the ones
mail stored before the table lacks), held by a backup, checked by
``mailaccess check``; and SORT/THREAD answer the same with and without them
(both twins), on a store made before the table too."""
import random

import lmdb
import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import ingest, reindex as rx
from mailaccess.check import check_store
from mailaccess.mime import index as mindex
from mailaccess.query import facts as F
from mailaccess.query import sort as qsort, thread as qthread
from mailaccess.query.sort import SortKey
from mailaccess.store import Store, keys, ops, records
from mailaccess.store.backup import backup_store

SAMPLES = [
    "Re: [list] Fwd: x (fwd)", "=?utf-8?b?w6l0w6k=?=", "grp: a@b, c@d;", "a@b",
    '"Q \\" d" <q@x>', "undisclosed-recipients:;", "<a@b> <c@d>", "<\"x y\"@z>",
    "Mon, 3 Nov 2025 10:00:00 -0200", "garbage", "\u00e9l\u00e8ve <e@x>", ",,,", ":;",
    "=?x?q?bad", "\"\" <>", "a@b (c)", "[fwd: hi]", "x" * 300, "\\",
    "Sender 1 <s1@example.org>", "plain subject", "  two  spaces ", "<m1@x> <m2@x>",
    "Tue, 4 Nov 2025 23:59:59 +1400", "<<>>", "<a b@c>", "Re: plain", "\ud800 lone"]
FIELDS = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
          "Content-Type"]
KEYS = ["date", "arrival", "subject", "from", "to", "cc", "displayfrom", "displayto", "size",
        "sentAt", "jmapFrom", "jmapTo"]


def message(headers, body="b") -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n" + body + "\r\n").encode(
        "utf-8", "surrogatepass")


def hostile(n: int, seed: int = 5) -> list[bytes]:
    rng = random.Random(seed)
    return [message([(rng.choice(FIELDS), rng.choice(SAMPLES))
                     for _ in range(rng.randrange(8))]) for _ in range(n)]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    yield s
    s.close()


def fill(store, name: str, msgs) -> tuple[int, int]:
    acc = store.write_sync(ops.create_account, name, "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    for i, raw in enumerate(msgs):
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, 1_700_000_000 + i), [])
    return acc, inbox


def stored(store, acc: int, table: str = "msg.facts") -> dict[int, bytes]:
    """eid -> the account's msg.facts records (or TABLE's rows)."""
    out = {}
    with store.read() as txn:
        cur = txn.cursor(db=store.db[table])
        pre = keys.account_prefix(acc)
        if cur.set_range(pre):
            for k, v in cur:
                if not bytes(k).startswith(pre):
                    break
                out[keys.split_msg(bytes(k))[1]] = bytes(v)
    return out


def wanted(store, acc: int) -> dict[int, bytes]:
    """eid -> the record of the facts of its index, for every email of ACC."""
    with store.view() as v:
        return {e: F.record(v.blob_index(acc, v.email(acc, e).blob)) for e in v.email_ids(acc)}


def assert_one_each(store, acc: int) -> None:
    want = wanted(store, acc)
    assert stored(store, acc) == {e: r for e, r in want.items() if r}
    assert check_store(store) == []


def raw_delete(store, acc: int, eids, table: str = "msg.facts") -> None:
    with store.env.begin(write=True) as txn:
        for e in eids:
            txn.delete(keys.msg(acc, e), db=store.db[table])


def answers(store, acc: int, mbx: int) -> list:
    """Every SORT key's order, the two THREAD algorithms and the facts
    themselves, read afresh (the facts cache emptied first)."""
    F.cache_of(store).clear()
    with store.view() as v:
        cands = v.uids(acc, mbx)
        out = [F.facts(v, acc, [e for _, e in cands])]
        for k in KEYS:
            for rev in (False, True):
                out.append(qsort.sort(v, acc, cands, [SortKey(k, rev), SortKey("arrival")]))
        out.append(qthread.thread_references(v, acc, cands))
        out.append(qthread.thread_orderedsubject(v, acc, cands))
    return out


# ---------------------------------------------------------------- the codec

@pytest.mark.parametrize("mod", twin_params("facts"))
@settings(max_examples=200, deadline=None)
@given(headers=st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(SAMPLES)),
                        max_size=10))
def test_a_record_reads_back_the_facts_of_its_index(mod, headers):
    data = mindex.encode_index(mindex.index_message(message(headers)))
    want = F.from_data(data)
    rec = F.record(data)
    assert rec                  # (the parser leaves no lone surrogate: every email has one)
    if rec:
        assert records.decode_facts(rec) == tuple(want)
        got = mod.from_record(rec, F.Facts)
        assert got == want and type(got) is F.Facts
        # a record cut short, with bytes after it or of another version is not read
        for bad in (rec[:-1], rec + b"\0", b"\2" + rec[1:], rec[:5]):
            assert records.decode_facts(bad) is None and mod.from_record(bad, F.Facts) is None


def test_values_out_of_the_layout_keep_no_record():
    ok = tuple(F.EMPTY)
    assert records.decode_facts(records.encode_facts(ok)) == ok
    for i, bad in ((0, 1 << 63), (1, 40000), (2, 1), (3, "\udc80"), (13, ["a"]),
                   (13, ("r",) * 70000), (12, 5)):
        v = list(ok)
        v[i] = bad
        assert records.encode_facts(tuple(v)) == b"", (i, bad)


# ---------------------------------------------------------------- every path

def test_every_path_keeps_one_record_per_email(store):
    acc, inbox = fill(store, "a", hostile(70))
    with store.view() as v:
        arch = v.mailbox_by_role(acc, "archive").id
        cands = v.uids(acc, inbox)
    assert_one_each(store, acc)
    assert len(stored(store, acc)) == 70
    eids = [e for _, e in cands]
    store.write_sync(ops.copy, acc, eids[:20], arch)            # the same emails
    store.write_sync(ops.copy, acc, eids[:20], arch)            # new emails (_duplicate)
    assert_one_each(store, acc)
    with store.view() as v:
        assert len(v.email_ids(acc)) == 90
    store.write_sync(ops.move, acc, inbox, [u for u, _ in cands[10:20]], arch)
    assert_one_each(store, acc)
    store.write_sync(ops.expunge, acc, inbox, [u for u, _ in cands[20:25]])      # one by one
    with store.view() as v:
        left = v.uids(acc, arch)
    assert len(left) >= ops.EXPUNGE_BULK
    store.write_sync(ops.expunge, acc, arch, [u for u, _ in left])                # bulk
    assert_one_each(store, acc)
    with store.view() as v:
        rest = [e for _, e in v.uids(acc, inbox)]
    store.write_sync(ops.destroy_emails, acc, rest[:3])
    assert_one_each(store, acc)
    with store.view() as v:
        assert set(stored(store, acc)) <= set(v.email_ids(acc))
        assert len(v.email_ids(acc)) == 90 - 5 - 30 - 3


def test_delete_account_removes_its_records(store):
    a, _ = fill(store, "a", hostile(5))
    b, _ = fill(store, "b", hostile(5, 6))
    store.write_sync(ops.delete_account, a)
    assert stored(store, a) == {} and len(stored(store, b)) == 5
    assert check_store(store) == []


def test_replace_index_rewrites_or_removes_the_records(store):
    acc, inbox = fill(store, "a", [message([("Subject", "b")]), message([("Subject", "a")])])
    with store.view() as v:
        blob = v.email(acc, 1).blob
    # COPY into the mailbox it is in: a second email of that blob
    store.write_sync(ops.copy, acc, [1], inbox)
    fixed = mindex.encode_index(mindex.index_message(message([("Subject", "0 first")])))
    store.write_sync(ops.replace_index, acc, blob, fixed, F.record(fixed))
    recs = stored(store, acc)
    assert recs[1] == recs[3] == F.record(fixed)
    assert_one_each(store, acc)
    with store.view() as v:
        assert qsort.sort(v, acc, [(1, 1), (2, 2)], [SortKey("subject")]) == [1, 2]
    store.write_sync(ops.replace_index, acc, blob, fixed)          # no record given: none kept
    assert set(stored(store, acc)) == {2}
    assert check_store(store) == []


def test_reindex_writes_the_missing_records_and_rewrites_wrong_ones(store):
    acc, inbox = fill(store, "a", hostile(30))
    want = wanted(store, acc)
    raw_delete(store, acc, range(1, 16))             # as mail stored before the table
    other = F.record(mindex.encode_index(mindex.index_message(message([("Subject", "x")]))))
    with store.env.begin(write=True) as txn:         # and one that no longer fits its index
        txn.put(keys.msg(acc, 20), other, db=store.db["msg.facts"])
    assert check_store(store) == [
        "account 1 (a): email 20: its msg.facts record is not the facts of its index "
        "(run `mailaccess reindex`)"]
    rx.reindex(store)
    assert_one_each(store, acc)
    assert stored(store, acc) == {e: r for e, r in want.items() if r}


def test_outdated_only_writes_the_missing_records_from_the_indexes(store, monkeypatch):
    # the indexes are current: nothing is parsed again, the records are
    # made from the stored indexes
    # (and the msg.bs rows, FETCH BODYSTRUCTURE's, from the same indexes)
    acc, inbox = fill(store, "a", hostile(40))
    want = stored(store, acc)
    want_bs = stored(store, acc, "msg.bs")
    assert want_bs
    raw_delete(store, acc, range(1, 31))
    raw_delete(store, acc, range(5, 40), "msg.bs")
    monkeypatch.setattr(mindex, "index_message", None)      # (no message is parsed)
    s = rx.reindex(store, outdated_only=True, batch=16)
    with store.view() as v:
        blobs = {v.email(acc, e).blob for e in v.email_ids(acc)}
    assert (s.rebuilt, s.skipped) == (0, len(blobs))
    assert stored(store, acc) == want
    assert stored(store, acc, "msg.bs") == want_bs
    assert_one_each(store, acc)


def test_a_rewritten_record_is_read_again(store):
    # a record reindex finds wrong (the index itself unchanged) is rewritten,
    # and facts remembered from it are not answered again (CTR_INDEXES)
    acc, inbox = fill(store, "a", [message([("Subject", "b")]), message([("Subject", "a")])])
    with store.view() as v:
        blob, index = v.email(acc, 1).blob, bytes(v.blob_index(acc, v.email(acc, 1).blob))
    wrong = F.record(mindex.encode_index(mindex.index_message(message([("Subject", "0")]))))
    with store.env.begin(write=True) as txn:
        txn.put(keys.msg(acc, 1), wrong, db=store.db["msg.facts"])
    F.cache_of(store).clear()
    with store.view() as v:                          # (read from the wrong record)
        assert qsort.sort(v, acc, v.uids(acc, inbox), [SortKey("subject")]) == [1, 2]
    assert store.write_sync(ops.replace_index, acc, blob, index, F.record(index)) is False
    with store.view() as v:                          # (the cache as the sort above left it)
        assert qsort.sort(v, acc, v.uids(acc, inbox), [SortKey("subject")]) == [2, 1]
        assert stored(store, acc)[1] == F.record(index)
    # the same with the index read instead: the record removed
    with store.env.begin(write=True) as txn:
        txn.put(keys.msg(acc, 1), wrong, db=store.db["msg.facts"])
    F.cache_of(store).clear()
    with store.view() as v:
        assert qsort.sort(v, acc, v.uids(acc, inbox), [SortKey("subject")]) == [1, 2]
    store.write_sync(ops.replace_index, acc, blob, index)
    with store.view() as v:
        assert qsort.sort(v, acc, v.uids(acc, inbox), [SortKey("subject")]) == [2, 1]
    assert 1 not in stored(store, acc)


def test_a_backup_holds_the_records(store, tmp_path):
    acc, _ = fill(store, "a", hostile(12))
    backup_store(store, tmp_path / "bk")
    copy = Store(tmp_path / "bk" / "store", create=False)    # (as `serve --data-dir` opens it)
    try:
        assert stored(copy, acc) == stored(store, acc) != {}
        assert check_store(copy) == []
    finally:
        copy.close()


def test_check_names_a_record_without_its_email(store):
    acc, _ = fill(store, "a", hostile(3))
    with store.env.begin(write=True) as txn:
        txn.put(keys.msg(acc, 99), F.record(None) or b"\1", db=store.db["msg.facts"])
    assert check_store(store) == ["account 1 (a): msg.facts of email 99, which does not exist"]


# ---------------------------------------------------------------- the same answers

@pytest.mark.parametrize("mod", twin_params("facts"))
def test_sort_and_thread_answer_the_same_without_records(store, mod):
    saved, F._impl = F._impl, mod
    try:
        acc, inbox = fill(store, "a", hostile(80) + [
            message([("From", "Ann <ann@example.org>"), ("Subject", "common mail"),
                     ("Message-ID", "<c@x>"), ("Date", "Sat, 1 Nov 2025 10:00:00 +0100")])])
        with_records = answers(store, acc, inbox)
        raw_delete(store, acc, range(1, 41))            # half of them: mixed old and new mail
        mixed = answers(store, acc, inbox)
        raw_delete(store, acc, range(1, 100))
        assert stored(store, acc) == {}
        without = answers(store, acc, inbox)
    finally:
        F._impl = saved
    assert with_records == mixed == without


def test_a_store_made_before_the_table(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    acc, inbox = fill(s, "a", hostile(20))
    want = answers(s, acc, inbox)
    s.close()
    env = lmdb.open(str(tmp_path / "data"), max_dbs=64)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"msg.facts", txn=txn), delete=True)
    env.close()
    ro = Store(tmp_path / "data", create=False, readonly=True)    # (backup opens so)
    try:
        assert ro.db["msg.facts"] is None
        with ro.view() as v:
            assert v.facts_reader(acc) is None
    finally:
        ro.close()
    # a writable open makes the table; the old mail reads from its index
    # until reindexed, which writes the records
    s = Store(tmp_path / "data")
    s.start()
    try:
        assert stored(s, acc) == {} and answers(s, acc, inbox) == want
        assert check_store(s) == []
        rx.reindex(s)
        assert stored(s, acc) == {e: r for e, r in wanted(s, acc).items() if r} != {}
        assert answers(s, acc, inbox) == want
        assert check_store(s) == []
    finally:
        s.close()
