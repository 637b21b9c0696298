"""query/facts.py: the facts read in place equal those of the whole message
index (both twins), and the per-store cache that remembers them is bounded
in bytes, per account, and right after expunges, new mail and a reindex."""
import sys

import pytest
from hypothesis import given, settings, strategies as st

import facts_oracle
from conftest import twin_params
from mailaccess import _speedups, ingest
from mailaccess.mime import index as mindex
from mailaccess.query import facts as F
from mailaccess.query import sort as qsort, thread as qthread
from mailaccess.query.sort import SortKey
from mailaccess.store import Store, ops

HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "Re: [list] Fwd: x (fwd)", "=?utf-8?b?w6l0w6k=?=", "grp: a@b, c@d;", "a@b",
        '"Q \\" d" <q@x>', "undisclosed-recipients:;", "<a@b> <c@d>", "<\"x y\"@z>",
        "Mon, 3 Nov 2025 10:00:00 -0200", "garbage", "\u00e9l\u00e8ve <e@x>", ",,,", ":;",
        "=?x?q?bad", "\"\" <>", "a@b (c)", "[fwd: hi]", "x" * 300, "\\", "{5}\r\n"]))
NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
                         "References", "Content-Type", "Content-Disposition"])


def message(headers, body="b") -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n" + body + "\r\n").encode(
        "utf-8", "surrogatepass")


@pytest.mark.parametrize("mod", twin_params("facts"))
@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(NAMES, HOSTILE), max_size=10))
def test_in_place_equals_whole_index(mod, headers):
    mi = mindex.index_message(message(headers))
    data = mindex.encode_index(mi)
    saved, F._impl = F._impl, mod
    try:
        want = F.from_index(mi)
        assert F.from_data(data) == want
        assert F.from_data(memoryview(data)) == want
    finally:
        F._impl = saved
    # and what SORT/THREAD computed from the whole index before facts.py
    old = facts_oracle.sort_strings(mi)
    for fld, i in qsort._FACT_FIELD.items():
        assert want[i] == old[fld], fld
    assert (want.sent, want.sent_tz, want.attachment) == (mi.sent_at, mi.sent_at_tz,
                                                          mi.has_attachment)
    assert want.message_id == qthread.normalize_msgid(mi.message_id)
    refs = tuple(r for r in map(qthread.normalize_msgid, mi.references) if r)
    if not refs:
        refs = tuple(r for r in map(qthread.normalize_msgid, mi.in_reply_to) if r)[:1]
    assert want.refs == refs and want.subject == (mi.subject or "")
    # the cache's estimate of an entry is not below what it holds
    held = {id(x): x for x in want[3:13] + want.refs}
    assert F._cost(want) >= (sys.getsizeof(want) + sys.getsizeof(want.refs)
                             + sum(map(sys.getsizeof, held.values())))
    # (both twins count it alike)
    assert mod.costs([want, F.EMPTY]) == [_speedups.load_py("facts").cost(want),
                                          _speedups.load_py("facts").cost(F.EMPTY)]


def test_unreadable_indexes_read_as_no_headers():
    assert F.from_data(None) == F.EMPTY
    assert F.from_data(b"\x63" + bytes(40)) == F.EMPTY          # unknown version
    data = mindex.encode_index(mindex.index_message(message([("Subject", "hi")])))
    assert F.from_data(data[:-5]) == F.EMPTY                     # cut short


# ---------------------------------------------------------------- the cache


def _facts(n: int) -> F.Facts:
    return F.EMPTY._replace(subject="s" * n)


def test_cache_never_holds_more_than_its_budget():
    c = F.FactsCache(10_000)
    for i in range(500):
        c.put((1, 0, i), _facts(i % 97))
        assert c.used <= c.budget
        assert c.used == sum(F._cost(f) for f in c.data.values())
    assert 0 < len(c.data) < 500
    assert (1, 0, 499) in c.data and (1, 0, 0) not in c.data     # oldest out first
    c.put((1, 0, 1000), _facts(20_000))                          # bigger than the budget
    assert (1, 0, 1000) not in c.data and c.used <= c.budget


def test_a_hostile_mailbox_is_held_to_the_budget(tmp_path, monkeypatch):
    store = Store(tmp_path / "d")
    store.start()
    try:
        acc = store.write_sync(ops.create_account, "a", "h")
        with store.view() as v:
            inbox = v.mailbox_by_role(acc, "inbox").id
        for i in range(40):
            raw = message([("Subject", f"{i} " + "x" * 3000),
                           ("References", " ".join(f"<r{j}@x>" for j in range(100)))])
            store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, i), [])
        budget = 60_000
        monkeypatch.setattr(F, "_CACHES", type(F._CACHES)())
        monkeypatch.setattr(F, "_budget", budget)
        with store.view() as v:
            cands = v.uids(acc, inbox)
            got = qsort.sort(v, acc, cands, [SortKey("subject")])
            cache = F.cache_of(store)
            assert 0 < len(cache.data) < 40 and cache.used <= budget
            assert got == qsort.sort(v, acc, cands, [SortKey("subject")])
    finally:
        store.close()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "d")
    s.start()
    yield s
    s.close()


def _account(store, name, subjects):
    acc = store.write_sync(ops.create_account, name, "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    for i, s in enumerate(subjects):
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(message([("Subject", s)]), i),
                         [])
    return acc, inbox


def _sorted(store, acc, inbox, field="subject"):
    with store.view() as v:
        return qsort.sort(v, acc, v.uids(acc, inbox), [SortKey(field)])


def test_accounts_never_see_each_others_facts(store):
    # the same email ids in both accounts, other content
    a, ia = _account(store, "a", ["c", "b", "a"])
    b, ib = _account(store, "b", ["x", "y", "z"])
    with store.view() as v:
        assert [e for _, e in v.uids(a, ia)] == [e for _, e in v.uids(b, ib)]
    assert _sorted(store, a, ia) == [3, 2, 1]
    assert _sorted(store, b, ib) == [1, 2, 3]
    assert _sorted(store, a, ia) == [3, 2, 1]


def test_expunge_then_new_mail(store):
    acc, inbox = _account(store, "a", ["b", "c"])
    assert _sorted(store, acc, inbox) == [1, 2]
    with store.view() as v:
        gone = v.uids(acc, inbox)[0]
    store.write_sync(ops.expunge, acc, inbox, [gone[0]])
    store.write_sync(ops.append, acc, [inbox], ingest.prepare(message([("Subject", "a")]), 9),
                     [])
    with store.view() as v:
        cands = v.uids(acc, inbox)
    # email ids come from a per-account counter: the new email has a new one
    assert gone[1] not in [e for _, e in cands]
    assert _sorted(store, acc, inbox) == [3, 2]
    with store.view() as v:
        # threads in date order: 2 arrived at 1, 3 at 9
        assert qthread.thread_orderedsubject(v, acc, cands) == [
            qthread.Thread(2), qthread.Thread(3)]


def test_a_rewritten_index_is_read_again(store):
    # mailaccess reindex may rewrite an index while the server runs (a parser fix)
    acc, inbox = _account(store, "a", ["b", "a"])
    assert _sorted(store, acc, inbox) == [2, 1]
    with store.view() as v:
        blob = v.email(acc, 1).blob
        before = v.index_generation(acc)
    fixed = mindex.encode_index(mindex.index_message(message([("Subject", "0 first")])))
    store.write_sync(ops.replace_index, acc, blob, fixed)
    with store.view() as v:
        assert v.index_generation(acc) == before + 1
    assert _sorted(store, acc, inbox) == [1, 2]


def test_configure_sets_every_budget(store):
    acc, inbox = _account(store, "a", ["b", "a"])
    _sorted(store, acc, inbox)
    cache = F.cache_of(store)
    assert cache.data
    try:
        F.configure(0)
        assert not cache.data and cache.budget == 0
        assert _sorted(store, acc, inbox) == [2, 1]
        assert not cache.data                           # 0 keeps nothing
    finally:
        F.configure(F.DEFAULT_BUDGET)


def test_threads_share_one_cache(store, monkeypatch):
    # sorts run in the worker pool's threads, all on the store's one cache
    import sys
    import threading
    acc, inbox = _account(store, "a", [f"s{i:03}" for i in range(60)])
    monkeypatch.setattr(sys, "getswitchinterval", sys.getswitchinterval)
    sys.setswitchinterval(1e-6)                 # switch threads as often as possible
    monkeypatch.setattr(F, "_CACHES", type(F._CACHES)())
    monkeypatch.setattr(F, "_budget", 55 * F._cost(F.EMPTY._replace(subject="s000", base="s000")))
    errors = []

    def work():
        try:
            for _ in range(200):
                assert _sorted(store, acc, inbox) == list(range(1, 61))
        except BaseException as e:              # noqa: BLE001 (reported below)
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    try:
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(0.005)
    cache = F.cache_of(store)
    assert not errors and cache.used <= cache.budget
    assert cache.used == sum(F._cost(f) for f in cache.data.values())


# ---------------------------------------------------------------- read_many

SAMPLES = [
    "Re: [list] Fwd: x (fwd)", "=?utf-8?b?w6l0w6k=?=", "grp: a@b, c@d;", "a@b",
    '"Q \\" d" <q@x>', "undisclosed-recipients:;", "<a@b> <c@d>", "<\"x y\"@z>",
    "Mon, 3 Nov 2025 10:00:00 -0200", "garbage", "\u00e9l\u00e8ve <e@x>", ",,,", ":;",
    "=?x?q?bad", "\"\" <>", "a@b (c)", "[fwd: hi]", "x" * 300, "\\", "{5}\r\n",
    "Sender 1 <s1@example.org>", "plain subject", "  two  spaces ", "<m1@x> <m2@x>",
    "Tue, 4 Nov 2025 23:59:59 +1400", "<<>>", "<a b@c>", "Re: plain"]
FIELDS = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
          "Content-Type"]


def _hostile_account(store, n=80):
    import random
    rng = random.Random(5)
    msgs = [message([(rng.choice(FIELDS), rng.choice(SAMPLES))
                     for _ in range(rng.randrange(8))]) for _ in range(n)]
    msgs.append(message([("From", "Ann <ann@example.org>"), ("To", "bob@example.org"),
                         ("Subject", "common mail"), ("Message-ID", "<c@x>"),
                         ("Date", "Sat, 1 Nov 2025 10:00:00 +0100")]))
    acc = store.write_sync(ops.create_account, "h", "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    for i, raw in enumerate(msgs):
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, i), [])
    return acc, inbox


@pytest.mark.parametrize("mod", twin_params("facts"))
@pytest.mark.parametrize("direct", [True, False], ids=["lmdb", "reader"])
@pytest.mark.parametrize("records", [True, False], ids=["msg.facts", "index"])
def test_read_many_equals_the_whole_index(store, mod, direct, records):
    # the batch read of facts() (the msg.facts records, else records and
    # indexes read in place, most facts finished in C) gives what the whole
    # decoded index defines; an email that is gone reads as None
    from mailaccess.store.emails import decode_index
    acc, inbox = _hostile_account(store)
    with store.view() as v:
        gone = v.uids(acc, inbox)[3][1]
        store.write_sync(ops.expunge, acc, inbox, [v.uids(acc, inbox)[3][0]])
    if not direct and hasattr(mod, "lmdb_direct"):
        mod.lmdb_direct(False)
    saved, F._impl = F._impl, mod               # (from_data, the slow path, on MOD too)
    try:
        with store.view() as v:
            eids = [e for _, e in v.uids(acc, inbox)] + [gone]
            got = mod.read_many(v.facts_reader(acc) if records else None, v.email_reader(acc),
                                v.index_reader(acc), eids, F.Facts,
                                F.from_data)
            want = [F.from_index(decode_index(v.blob_index(acc, v.email(acc, e).blob)))
                    for e in eids[:-1]] + [None]
    finally:
        F._impl = saved
        if hasattr(mod, "lmdb_direct"):
            mod.lmdb_direct(True)
    assert got == want
    assert all(type(f) is F.Facts for f in got[:-1])
    # the compiled twin finished the common message itself (no Python _make)
    if hasattr(mod, "lmdb_direct"):
        with store.view() as v:
            data = v.blob_index(acc, v.email(acc, eids[-2]).blob)
            assert mod.facts_of(data, F.Facts) == want[-2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 900)), max_size=12),
                max_size=6),
       st.integers(900, 6000))
def test_put_many_keeps_what_putting_each_keeps(batches, budget):
    # put_many's all-at-once path (new keys) leaves the cache as putting each
    # entry in turn does: the same entries in the same order, the same bytes
    a, b = F.FactsCache(budget), F.FactsCache(budget)
    for batch in batches:
        items = [(k, _facts(n)) for k, n in batch]
        a.put_many(items)
        for k, f in items:
            b.put(k, f)
        assert list(a.data.items()) == list(b.data.items()) and a.used == b.used <= budget


def test_cache_keys_never_collide():
    top = (1 << 32) - 1
    trios = [(a, g, e) for a in (0, 1, top) for g in (0, 1, 2, 1 << 40) for e in (0, 1, top)]
    keys = [F._keys(a, g, [e])[0] for a, g, e in trios]
    assert len(set(keys)) == len(trios)


def test_sent_ranges_hold_at_their_bounds(store):
    # the engine's Sent branch over the facts equals Sent.holds on each
    # email's Date: (UTC instant, or with wall_clock its written local time,
    # RFC 3501 6.4.4), bounds [after, before); no Date: matches nothing
    import itertools
    from mailaccess.query import engine, model as m
    dates = ["Mon, 3 Nov 2025 10:00:00 +0000", "Mon, 3 Nov 2025 10:00:00 -0200",
             "Mon, 3 Nov 2025 23:30:00 +1400", "Tue, 4 Nov 2025 00:00:00 +0000", None]
    acc = store.write_sync(ops.create_account, "s", "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    for i, d in enumerate(dates):
        raw = message([("Subject", str(i))] + ([("Date", d)] if d else []))
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, i), [])
    with store.view() as v:
        cands = v.uids(acc, inbox)
        fs = F.facts(v, acc, [e for _, e in cands])
        instants = sorted({f.sent for f in fs if f.sent is not None} |
                          {f.sent + f.sent_tz * 60 for f in fs if f.sent is not None})
        bounds = [None] + [t + d for t in instants for d in (-1, 0, 1)]
        for lo, hi, wall in itertools.product(bounds, bounds, (False, True)):
            cond = m.Sent(after=lo, before=hi, wall_clock=wall)
            want = [k for (k, _e), f in zip(cands, fs) if f.sent is not None
                    and cond.holds(f.sent + (f.sent_tz or 0) * 60 * wall)]
            assert engine.search(v, acc, cands, cond) == want, (lo, hi, wall)
