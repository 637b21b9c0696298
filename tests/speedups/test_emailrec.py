"""emailrec_py and emailrec_c: the keyword rewrite of an encoded email record
equals decode -> change -> records.encode_email, byte for byte, and both
encode the redo log's ops identically (decode_ops reads them back)."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups
from mailaccess.store import keys, records, redolog
from mailaccess.store.records import EmailRecord, Membership

PY = _speedups.load_py("emailrec")
C = _speedups.load_c("emailrec")

KW = st.sampled_from(["$seen", "$flagged", "$answered", "$draft", "$deleted", "custom",
                      "ünïcode", "$junk", "a" * 200])
KWS = st.frozensets(KW, max_size=6)

records_ = st.builds(
    lambda eid, kws, mems, ms, flags: EmailRecord(
        eid, bytes(range(32)), 1_700_000_000, -120, 12345, 7, ms, sorted(kws),
        [Membership(mb, u, 1_700_000_000 + i) for i, (mb, u) in enumerate(mems)], flags),
    st.integers(1, 2**32 - 1), KWS,
    st.lists(st.tuples(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1)), min_size=1,
             max_size=4, unique_by=lambda t: t[0]),
    st.integers(0, 2**63), st.integers(0, 1))


def expected(rec: EmailRecord, add, remove, replace, ms):
    old = set(rec.keywords)
    new = set(replace) if replace is not None else (old | add) - remove
    if new == old:
        return None
    out = EmailRecord(rec.id, rec.blob, rec.received_at, rec.tz, rec.size, rec.thread, ms,
                      sorted(new), list(rec.members), rec.flags)
    return (records.encode_email(out), rec.last_ms,
            tuple((m.mailbox, m.uid) for m in rec.members),
            ("$seen" in new) - ("$seen" in old))


@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=300, deadline=None)
@given(rec=records_, add=KWS, remove=KWS, replace=st.none() | KWS, ms=st.integers(0, 2**64 - 1))
def test_rewrite_keywords_is_decode_change_encode(mod, rec, add, remove, replace, ms):
    data = records.encode_email(rec)
    got = mod.rewrite_keywords(memoryview(data), add, remove, replace, ms, "$seen")
    assert got == expected(rec, add, remove, replace, ms)


def test_both_twins_are_there():
    assert C is not None, "emailrec_c is not built (setup.py build_ext --inplace)"


OPS = st.lists(st.tuples(st.sampled_from([redolog.PUT, redolog.DELETE]),
                         st.sampled_from(["msg", "mbx.ms", "chg.id", "blob"]),
                         st.binary(min_size=1, max_size=40), st.binary(max_size=300)),
               max_size=30)


@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=200, deadline=None)
@given(ops=OPS)
def test_encode_ops_round_trips(mod, ops):
    data = mod.encode_ops(ops)
    assert data == PY.encode_ops(ops)
    assert redolog.decode_ops(data) == ops


# --- rewrite_many: the loop of a bulk STORE -------------------------------------------

def reference_many(table, eids, add, remove, replace, since, first_ms):
    """rewrite_many spelled with rewrite_keywords, one record at a time, as
    store/ops.py set_keywords did before the loop was compiled."""
    new, gone, out, changed, conflicts, deltas, recs = {}, [], [], [], [], {}, {}
    ms = None
    for eid in eids:
        key = keys.msg(7, eid)
        data = new[eid][1] if eid in new else table.get(key)
        if data is None:
            continue
        if since is not None and records.email_last_ms(data) > since:
            conflicts.append(eid)
            continue
        if ms is None and PY.rewrite_keywords(data, add, remove, replace, 0, "$seen") is not None:
            ms = first_ms
        r = PY.rewrite_keywords(data, add, remove, replace, ms or 0, "$seen")
        if r is None:
            recs[eid] = bytes(data)
            continue
        record, old_ms, members, delta = r
        for mbx, uid in members:
            deltas[mbx] = deltas.get(mbx, 0) + delta
            gone.append(keys.mbx_ms(7, mbx, old_ms, uid))
            out.append((keys.mbx_ms(7, mbx, ms, uid), b""))
        new[eid] = (key, record)
        changed.append(eid)
        recs[eid] = record
    return list(new.values()), gone, out, changed, conflicts, deltas, recs


# emails sharing a few mailboxes (the \\Seen deltas add up per mailbox)
shared_records = st.builds(
    lambda eid, kws, mems, ms: EmailRecord(
        eid, bytes(range(32)), 1_700_000_000, 60, 100, 1, ms, sorted(kws),
        [Membership(mb, u, 1_700_000_000) for mb, u in mems], 0),
    st.integers(1, 2**32 - 1), KWS,
    st.lists(st.tuples(st.integers(1, 3), st.integers(1, 2**32 - 1)), min_size=1,
             max_size=3, unique_by=lambda t: t[0]),
    st.integers(0, 2**63))


@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=300, deadline=None)
@given(recs=st.lists(records_ | shared_records, max_size=12, unique_by=lambda r: r.id),
       picks=st.lists(st.integers(0, 14), max_size=20),
       add=KWS, remove=KWS, replace=st.none() | KWS,
       since=st.none() | st.integers(0, 2**63), want=st.booleans())
def test_rewrite_many_is_rewrite_keywords_per_record(mod, recs, picks, add, remove, replace,
                                                     since, want):
    """Every record of the loop as rewrite_keywords makes it, the index keys
    of every membership, the modseq allocated once at the first change; an
    email named twice starts from its new record; missing ones skipped."""
    table = {keys.msg(7, r.id): memoryview(records.encode_email(r)) for r in recs}
    ids = [r.id for r in recs]
    eids = [ids[i] if i < len(ids) else 4_000_000_000 - i for i in picks]   # some missing
    calls = []

    def alloc():
        calls.append(1)
        return 99

    got = mod.rewrite_many(table.get,
                           keys.msg_of(7), keys.mbx_ms_of(7), eids, add, remove, replace,
                           "$seen", since, alloc, want)
    exp = list(reference_many(table, eids, add, remove, replace, since, 99))
    if not want:
        exp[-1] = None
    assert list(got) == exp
    assert len(calls) == (1 if exp[3] else 0)


# --- apply_keywords: rewrite_many with its writes made -------------------------------

@pytest.fixture(scope="module")
def lmdb_env(tmp_path_factory):
    import lmdb
    env = lmdb.open(str(tmp_path_factory.mktemp("applykw")), max_dbs=4, map_size=1 << 26)
    yield env, env.open_db(b"msg"), env.open_db(b"mbx.ms")
    env.close()


def _apply(mod, env, eids, add, remove, replace, since, want, table, index, run=False):
    """apply_keywords of MOD in a write transaction over TABLE (msg) and INDEX
    (mbx.ms) -> (its result, the tables after it, modseqs allocated); aborted."""
    e, msg_db, ms_db = env
    calls = []

    def alloc():
        calls.append(1)
        return 99

    with e.begin(write=True) as txn:
        txn.drop(msg_db, delete=False)
        txn.drop(ms_db, delete=False)
        txn.cursor(db=msg_db).putmulti(sorted(table.items()))
        txn.cursor(db=ms_db).putmulti([(k, b"") for k in sorted(index)])
        made = []
        got = mod.apply_keywords(txn.cursor(db=msg_db), txn.cursor(db=ms_db), keys.msg_shape(7),
                                 keys.mbx_ms_shape(7), eids, add, remove, replace, "$seen", since,
                                 alloc, want, lambda recs: made.append(
                                     (recs, [(bytes(k), bytes(v))
                                             for k, v in txn.cursor(db=msg_db)])), run)
        after = ([(bytes(k), bytes(v)) for k, v in txn.cursor(db=msg_db)],
                 [bytes(k) for k, _ in txn.cursor(db=ms_db)])
        txn.abort()
    # MADE: called once, with the records, when they are written
    assert len(made) == 1 and made[0][0] is got[3] and made[0][1] == after[0]
    return got, after, len(calls)


@pytest.mark.parametrize("lmdb_path", ["direct", "py-lmdb"])
@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=150, deadline=None)
@given(recs=st.lists(records_ | shared_records, max_size=12, unique_by=lambda r: r.id),
       picks=st.lists(st.integers(0, 14), max_size=20),
       add=KWS, remove=KWS, replace=st.none() | KWS,
       since=st.none() | st.integers(0, 2**63), want=st.booleans(), run=st.booleans())
def test_apply_keywords_writes_what_rewrite_many_says(lmdb_env, lmdb_path, mod, recs, picks, add,
                                                      remove, replace, since, want, run):
    """The records rewrite_many makes are put, the old index keys of the
    changed emails deleted and the new ones put; the same result (an email
    named twice or missing, conflicts, the \\Seen deltas in first-seen order).
    The compiled twin both calling LMDB directly and through py-lmdb.  RUN:
    the records as a RecordRun holding the same mapping (its buffer laid out
    as its docstring says, ASCENDING true exactly when its ids ascend)."""
    if mod is PY and lmdb_path == "py-lmdb":
        return                          # (the pure twin has one path)
    table = {keys.msg(7, r.id): records.encode_email(r) for r in recs}
    index = {keys.mbx_ms(7, m.mailbox, r.last_ms, m.uid) for r in recs for m in r.members}
    index.add(keys.mbx_ms(7, 1, 5, 5))         # a key no email of the call has
    ids = [r.id for r in recs]
    eids = [ids[i] if i < len(ids) else 4_000_000_000 - i for i in picks]
    if mod is C:
        C.lmdb_direct(lmdb_path == "direct")
    try:
        got, after, nalloc = _apply(mod, lmdb_env, eids, add, remove, replace, since, want,
                                    table, index, run)
    finally:
        if mod is C:
            C.lmdb_direct(True)
    items, gone, out, changed, conflicts, deltas, recs_ = reference_many(
        table, eids, add, remove, replace, since, 99)
    assert got == (changed, conflicts, deltas, recs_ if want else None)
    assert list(got[2]) == list(deltas)             # first-seen order
    if run and want:
        check_run(got[3], recs_)
    else:
        assert type(got[3]) is not PY.RecordRun
    new_table = dict(table)
    new_table.update(items)
    new_index = (index - set(gone)) | {k for k, _ in out}
    assert after == (sorted(new_table.items()), sorted(new_index))
    assert nalloc == (1 if changed else 0)


def check_run(run, recs: dict) -> None:
    """RUN is a RecordRun standing for RECORDS (same mapping, same order of
    first mentions), its parts consistent."""
    assert type(run) is PY.RecordRun
    assert run == recs and dict(run) == recs and list(run) == list(recs)
    assert len(run.eids) == len(run.ends) and (not run.ends or run.ends[-1] == len(run.data))
    assert run.ascending == all(a < b for a, b in zip(run.eids, run.eids[1:]))
    for k, e in enumerate(run.eids):
        if e not in run.eids[k + 1:]:       # an email's last entry is its record
            assert run.data[run.ends[k - 1] if k else 0:run.ends[k]] == recs[e]
    assert run.get(4_000_000_001) is None


def test_the_compiled_apply_keywords_calls_lmdb_directly():
    """With the py-lmdb release whose objects it knows (3.0.0), the compiled
    apply_keywords takes its LMDB cursors out of the py-lmdb ones; another
    release turns that off (the py-lmdb path, slower), not wrong."""
    import lmdb
    if C is None or lmdb.__version__ != "3.0.0":
        pytest.skip("the compiled twin or py-lmdb 3.0.0 is not there")
    if os.environ.get("MAILACCESS_LMDB_DIRECT") == "0":
        pytest.skip("MAILACCESS_LMDB_DIRECT=0 turns it off")
    assert C.lmdb_direct()


@pytest.mark.parametrize("lmdb_path", ["direct", "py-lmdb"])
@pytest.mark.parametrize("mod", twin_params("emailrec"))
def test_a_full_map_raises_what_py_lmdb_raises(tmp_path, mod, lmdb_path):
    """A write that does not fit the map raises lmdb.MapFullError on every
    path (the store's writer grows the map on it and runs the request again)."""
    import lmdb
    env = lmdb.open(str(tmp_path / "full"), max_dbs=4, map_size=1 << 18)
    msg_db, ms_db = env.open_db(b"msg"), env.open_db(b"mbx.ms")
    recs = [EmailRecord(i, bytes(range(32)), 1_700_000_000, 0, 10, 1, 5, [],
                        [Membership(1, i, 1_700_000_000)], 0) for i in range(1, 600)]
    with env.begin(write=True) as txn:
        txn.cursor(db=msg_db).putmulti([(keys.msg(7, r.id), records.encode_email(r))
                                        for r in recs])
        txn.cursor(db=ms_db).putmulti([(keys.mbx_ms(7, 1, 5, r.id), b"") for r in recs])
    if mod is C:
        C.lmdb_direct(lmdb_path == "direct")
    try:
        with pytest.raises(lmdb.MapFullError):
            with env.begin(write=True) as txn:
                mod.apply_keywords(txn.cursor(db=msg_db), txn.cursor(db=ms_db),
                                   keys.msg_shape(7), keys.mbx_ms_shape(7),
                                   [r.id for r in recs], frozenset({"k" * 400}), frozenset(),
                                   None, "$seen", None, lambda: 9, False)
    finally:
        if mod is C:
            C.lmdb_direct(True)
        env.close()


def test_py_lmdb_cursors_see_what_apply_keywords_wrote(lmdb_env):
    """A py-lmdb cursor positioned before the call answers its key and value
    from after it (the direct path moves the transaction's mutation count, as
    py-lmdb's own writes do, so the cursor reads them again)."""
    e, msg_db, ms_db = lmdb_env
    recs = [EmailRecord(i, bytes(range(32)), 1_700_000_000, 0, 10, 1, 5, [],
                        [Membership(1, i, 1_700_000_000)], 0) for i in range(1, 40)]
    with e.begin(write=True) as txn:
        txn.drop(msg_db, delete=False)
        txn.drop(ms_db, delete=False)
        txn.cursor(db=msg_db).putmulti([(keys.msg(7, r.id), records.encode_email(r))
                                        for r in recs])
        txn.cursor(db=ms_db).putmulti([(keys.mbx_ms(7, 1, 5, r.id), b"") for r in recs])
        watch = txn.cursor(db=msg_db)
        assert watch.set_key(keys.msg(7, 20))
        assert bytes(watch.value()) == records.encode_email(recs[19])
        mod = C or PY
        mod.apply_keywords(txn.cursor(db=msg_db), txn.cursor(db=ms_db), keys.msg_shape(7),
                           keys.mbx_ms_shape(7), [r.id for r in recs],
                           frozenset({"$seen", "$flagged"}), frozenset(), None, "$seen", None,
                           lambda: 9, True)
        assert bytes(watch.key()) == keys.msg(7, 20)
        assert bytes(watch.value()) == bytes(txn.get(keys.msg(7, 20), db=msg_db))
        assert records.decode_email(20, bytes(watch.value())).keywords == ["$flagged", "$seen"]
        txn.abort()


@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=300, deadline=None)
@given(ids=st.sets(st.integers(0, 2**64 - 1), max_size=40)
       | st.sets(st.integers(0, 60), max_size=50)
       | st.integers(1, 2**64 - 200).flatmap(
           lambda lo: st.integers(1, 100).map(lambda n: set(range(lo, lo + n)))))
def test_id_runs_cut_ids_in_runs_of_consecutive_ones(mod, ids):
    shuffled = sorted(ids, key=lambda i: hash((i, 7)))
    singles, runs = mod.id_runs(shuffled)
    assert (singles, runs) == PY.id_runs(sorted(ids))
    assert sorted(singles + [i for lo, hi in runs for i in range(lo, hi + 1)]) == sorted(ids)
    assert all(hi > lo for lo, hi in runs)
    bounds = sorted([(i, i) for i in singles] + runs)
    assert all(b[0] > a[1] + 1 for a, b in zip(bounds, bounds[1:]))     # maximal runs


# --- expunge_many: a mailbox's membership out of many records (bulk EXPUNGE) ---------------

def reference_expunge(table, uid_rows, mbx, uids, ms):
    """What store/ops.py's record-at-a-time EXPUNGE made of the records:
    decode, remove the membership, last_ms = MS, encode."""
    done, uid_keys, gone, out_items, new, updated, destroy = [], [], [], [], [], [], []
    others: dict = {}
    size = unseen = 0
    ushape, mshape, xshape = keys.uid_shape(1, mbx), keys.msg_shape(1), keys.mbx_ms_shape(1)
    for uid in uids:
        eid = uid_rows.get(uid)
        if eid is None:
            continue
        rec = records.decode_email(eid, table[mshape.key(eid)])
        mem = rec.member(mbx)
        done.append(uid)
        uid_keys.append(ushape.key(uid))
        gone.append(xshape.key((mbx, rec.last_ms, mem.uid)))
        size += rec.size
        unseen += "$seen" not in rec.keywords
        rec.members.remove(mem)
        if not rec.members:
            destroy.append((eid, table[mshape.key(eid)]))
            continue
        for m in rec.members:
            others.setdefault(m.mailbox, None)
            gone.append(xshape.key((m.mailbox, rec.last_ms, m.uid)))
            out_items.append((xshape.key((m.mailbox, ms, m.uid)), b""))
        rec.last_ms = ms
        new.append((mshape.key(eid), records.encode_email(rec)))
        updated.append(eid)
    return done, uid_keys, gone, out_items, new, updated, destroy, size, unseen, others


@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=200, deadline=None)
@given(recs=st.lists(records_, min_size=1, max_size=12, unique_by=lambda r: r.id),
       missing=st.lists(st.integers(1, 2**32 - 1), max_size=3), ms=st.integers(1, 2**63))
def test_expunge_many_is_decode_remove_encode(mod, recs, missing, ms):
    """Each email is in mailbox MBX under some UID (its first membership's
    mailbox made MBX for all); the twin's lists are the reference's, an
    email left in no mailbox handed back whole; UIDs with no row skipped;
    the modseq allocated once, at the first UID found."""
    mbx = 77
    table, uid_rows = {}, {}
    for r in recs:
        r.members = [Membership(mbx, r.members[0].uid, 5)] + \
            [m for m in r.members[1:] if m.mailbox != mbx]
        uid_rows[r.members[0].uid] = r.id
        table[keys.msg_shape(1).key(r.id)] = records.encode_email(r)
    if len(uid_rows) < len(recs):
        return      # (two emails drew the same UID)
    uids = sorted(set(uid_rows) | set(missing))
    rows = {keys.uid_shape(1, mbx).key(u): keys.u32(e) for u, e in uid_rows.items()}
    calls = []
    got = mod.expunge_many(rows.get, table.get, keys.uid_shape(1, mbx), keys.msg_shape(1),
                           keys.mbx_ms_shape(1), mbx, uids, "$seen",
                           lambda: calls.append(1) or ms)
    assert got == reference_expunge(table, uid_rows, mbx, uids, ms)
    assert calls == [1]


@pytest.mark.parametrize("mod", twin_params("emailrec"))
def test_expunge_many_refuses_what_the_loop_refused(mod):
    """A record not in the mailbox (NotFound), a missing record and another
    version (ValueError) raise as decode_email and _remove_member did; no
    UID found: no modseq taken."""
    from mailaccess.store.errors import NotFound
    rec = EmailRecord(5, bytes(32), 0, 0, 10, 5, 3, [], [Membership(9, 4, 0)], 0)
    data = records.encode_email(rec)
    args = (keys.uid_shape(1, 8), keys.msg_shape(1), keys.mbx_ms_shape(1), 8, [4], "$seen")
    rows = {keys.uid_shape(1, 8).key(4): keys.u32(5)}
    with pytest.raises(NotFound):
        mod.expunge_many(rows.get, {keys.msg_shape(1).key(5): data}.get, *args, lambda: 1)
    with pytest.raises(ValueError):
        mod.expunge_many(rows.get, {}.get, *args, lambda: 1)
    with pytest.raises(ValueError):
        mod.expunge_many(rows.get, {keys.msg_shape(1).key(5): b"\x09" + data[1:]}.get, *args,
                         lambda: 1)
    assert mod.expunge_many({}.get, {}.get, *args, lambda: 1 / 0)[0] == []


@pytest.fixture(scope="module")
def lmdb_env3(tmp_path_factory):
    import lmdb
    env = lmdb.open(str(tmp_path_factory.mktemp("applyex")), max_dbs=4, map_size=1 << 26)
    yield env, env.open_db(b"uid"), env.open_db(b"msg"), env.open_db(b"mbx.ms")
    env.close()


@pytest.mark.parametrize("lmdb_path", ["direct", "py-lmdb"])
@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=150, deadline=None)
@given(recs=st.lists(records_, min_size=1, max_size=12, unique_by=lambda r: r.id),
       missing=st.lists(st.integers(1, 2**32 - 1), max_size=3), ms=st.integers(1, 2**63),
       skip=st.sets(st.integers(0, 11), max_size=4))
def test_apply_expunge_writes_what_expunge_many_says(lmdb_env3, lmdb_path, mod, recs, missing,
                                                     ms, skip):
    """apply_expunge (the logical EXPUNGE redo op): expunge_many's result,
    and its writes made: the uid rows of the UIDs removed deleted, the old
    mbx.ms keys deleted, the new ones put, the new records put; the records
    of the emails left in no mailbox, other rows and keys untouched (some
    emails of the mailbox not named; a key of another mailbox).  The
    compiled twin both calling LMDB directly and through py-lmdb."""
    if mod is PY and lmdb_path == "py-lmdb":
        return                          # (the pure twin has one path)
    mbx = 77
    ushape, mshape, xshape = keys.uid_shape(1, mbx), keys.msg_shape(1), keys.mbx_ms_shape(1)
    table, uid_rows = {}, {}
    for r in recs:
        r.members = [Membership(mbx, r.members[0].uid, 5)] + \
            [m for m in r.members[1:] if m.mailbox != mbx]
        uid_rows[r.members[0].uid] = r.id
        table[mshape.key(r.id)] = records.encode_email(r)
    if len(uid_rows) < len(recs) or ms <= max(r.last_ms for r in recs):
        return      # (two emails drew the same UID; a request's modseq is above all)
    named = sorted(u for i, u in enumerate(sorted(uid_rows)) if i not in skip)
    uids = sorted(set(named) | set(missing))
    rows = {ushape.key(u): keys.u32(e) for u, e in uid_rows.items()}
    rows[keys.uid_shape(1, mbx + 1).key(1)] = keys.u32(1)          # another mailbox's
    index = {xshape.key((m.mailbox, r.last_ms, m.uid)) for r in recs for m in r.members}
    index.add(xshape.key((mbx + 1, 1, 1)))
    e, uid_db, msg_db, ms_db = lmdb_env3
    calls = []
    if mod is C:
        C.lmdb_direct(lmdb_path == "direct")
    try:
        with e.begin(write=True) as txn:
            for db in (uid_db, msg_db, ms_db):
                txn.drop(db, delete=False)
            txn.cursor(db=uid_db).putmulti(sorted(rows.items()))
            txn.cursor(db=msg_db).putmulti(sorted(table.items()))
            txn.cursor(db=ms_db).putmulti([(k, b"") for k in sorted(index)])
            got = mod.apply_expunge(txn.cursor(db=uid_db), txn.cursor(db=msg_db),
                                    txn.cursor(db=ms_db), ushape, mshape, xshape, mbx, uids,
                                    "$seen", lambda: calls.append(1) or ms)
            after = tuple([(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
                          for db in (uid_db, msg_db, ms_db))
            txn.abort()
    finally:
        if mod is C:
            C.lmdb_direct(True)
    done, uid_keys, gone, out, new, updated, destroy, size, unseen, others = \
        reference_expunge(table, uid_rows, mbx, uids, ms)
    assert got == (done, updated, destroy, size, unseen, others)
    assert list(got[5]) == list(others)             # first-met order
    new_table = dict(table)
    new_table.update(new)
    new_index = (index - set(gone)) | {k for k, _ in out}
    assert after == (sorted((k, v) for k, v in rows.items() if k not in set(uid_keys)),
                     sorted(new_table.items()), sorted((k, b"") for k in new_index))
    assert calls == ([1] if done else [])


@pytest.mark.parametrize("lmdb_path", ["direct", "py-lmdb"])
@pytest.mark.parametrize("mod", twin_params("emailrec"))
def test_apply_expunge_refuses_what_the_loop_refused(lmdb_env3, lmdb_path, mod):
    """A record not in the mailbox (NotFound), a missing record and another
    version (ValueError) raise, as expunge_many does."""
    from mailaccess.store.errors import NotFound
    rec = EmailRecord(5, bytes(32), 0, 0, 10, 5, 3, [], [Membership(9, 4, 0)], 0)
    data = records.encode_email(rec)
    e, uid_db, msg_db, ms_db = lmdb_env3
    if mod is C:
        C.lmdb_direct(lmdb_path == "direct")
    try:
        for record, exc in ((data, NotFound), (None, ValueError),
                            (b"\x09" + data[1:], ValueError)):
            with e.begin(write=True) as txn:
                for db in (uid_db, msg_db, ms_db):
                    txn.drop(db, delete=False)
                txn.put(keys.uid_shape(1, 8).key(4), keys.u32(5), db=uid_db)
                if record is not None:
                    txn.put(keys.msg_shape(1).key(5), record, db=msg_db)
                with pytest.raises(exc):
                    mod.apply_expunge(txn.cursor(db=uid_db), txn.cursor(db=msg_db),
                                      txn.cursor(db=ms_db), keys.uid_shape(1, 8),
                                      keys.msg_shape(1), keys.mbx_ms_shape(1), 8, [4], "$seen",
                                      lambda: 1)
                txn.abort()
    finally:
        if mod is C:
            C.lmdb_direct(True)


@pytest.mark.parametrize("lmdb_path", ["direct", "py-lmdb"])
@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=60, deadline=None)
@given(have=st.sets(st.binary(min_size=1, max_size=12), max_size=30),
       prefix=st.binary(max_size=90), width=st.integers(1, 8),
       suffixes=st.binary(max_size=400), value=st.binary(max_size=20))
def test_put_run_puts_each_prefixed_suffix(lmdb_env, mod, lmdb_path, have, prefix, width,
                                           suffixes, value):
    """put_run (a RUN redo op's writes): prefix + each whole WIDTH-byte
    suffix put with VALUE, over what the table holds (a key there already
    gets VALUE), a trailing partial suffix ignored; -> how many."""
    e, msg_db, _ms_db = lmdb_env
    n = len(suffixes) // width
    if mod is C:
        C.lmdb_direct(lmdb_path == "direct")
    try:
        with e.begin(write=True) as txn:
            txn.drop(msg_db, delete=False)
            txn.cursor(db=msg_db).putmulti([(k, b"old") for k in sorted(have)])
            assert mod.put_run(txn.cursor(db=msg_db), prefix, suffixes, width, value) == n
            got = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=msg_db)]
            txn.abort()
    finally:
        if mod is C:
            C.lmdb_direct(True)
    want = {k: b"old" for k in have}
    for i in range(n):
        want[prefix + suffixes[i * width:(i + 1) * width]] = value
    assert got == sorted(want.items())


@pytest.mark.parametrize("lmdb_path", ["direct", "py-lmdb"])
@pytest.mark.parametrize("mod", twin_params("emailrec"))
@settings(max_examples=60, deadline=None)
@given(have=st.sets(st.integers(0, 3000), max_size=300),
       ask=st.lists(st.integers(0, 3100), max_size=300))
def test_delete_keys_deletes_what_is_there(lmdb_env, mod, lmdb_path, have, ask):
    """delete_keys: each asked key that is there is deleted (named twice:
    once) and handed back, in order; the rest of the table stays; a py-lmdb
    cursor positioned before the call reads the table as it is after."""
    e, msg_db, _ms_db = lmdb_env
    k = keys.u32
    if mod is C:
        C.lmdb_direct(lmdb_path == "direct")
    try:
        with e.begin(write=True) as txn:
            txn.drop(msg_db, delete=False)
            txn.cursor(db=msg_db).putmulti([(k(i), b"v%d" % i) for i in sorted(have)])
            watch = txn.cursor(db=msg_db)
            watch.first()
            got = mod.delete_keys(txn.cursor(db=msg_db), [k(i) for i in ask])
            want, left = [], set(have)
            for i in ask:
                if i in left:
                    left.discard(i)
                    want.append(k(i))
            assert got == want
            assert [bytes(x) for x, _v in txn.cursor(db=msg_db)] == [k(i) for i in sorted(left)]
            assert watch.first() == bool(left)
            if left:
                assert bytes(watch.key()) == k(min(left))
            txn.abort()
    finally:
        if mod is C:
            C.lmdb_direct(True)
