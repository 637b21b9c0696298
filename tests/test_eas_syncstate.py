"""The ActiveSync sync state's basis (server/eas_syncstate.py): a difference
brought forward from the basis kept with a SyncKey equals the one computed
from the whole mailbox, whatever happens to the mailbox between requests
(hypothesis, against ``compute_full``, the full computation); states
written in the first format are read; a state no code can read is Status
3 for the device; and a page does not list the mailbox."""
import time

import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as st

from eas_helpers import account, cid, collection, collections, fill, role, sid, sync_body
from mailaccess import accounts, ingest, vocab
from mailaccess.proto.eas.wbxml import decode
from mailaccess.server import eas_syncstate as ss
from mailaccess.server.eas_sync import choose
from mailaccess.store import CannotCalculateChanges, Store, ops
from mailaccess.store.view import View

NOW = 1_700_000_000
_n = [0]


def _msg(i: int) -> bytes:
    return (f"From: s{i}@example.org\r\nTo: alice@example.org\r\nSubject: m{i}\r\n"
            f"Message-ID: <p{i}@x>\r\n\r\nbody {i}\r\n").encode()


def deliver(store, acc, mbx, ages: list[int]) -> list[int]:
    items = []
    for age in ages:
        _n[0] += 1
        items.append((ingest.prepare(_msg(_n[0]), received_at=NOW - age), []))
    return [a.email for a in store.write_sync(ops.append_many, acc, mbx, items)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("ss") / "data")
    s.start()
    yield s
    s.close()


def v_uid(store, acc, mbx, eid) -> int:
    with store.view() as v:
        return v.email(acc, eid).uid_in(mbx)


def uids(store, acc, mbx) -> list[tuple[int, int]]:
    with store.view() as v:
        return v.uids(acc, mbx)


# ages in seconds: inside and outside the 1-day, 3-day and 1-week windows
AGE = st.sampled_from([0, 3600, 20 * 3600, 2 * 86400, 5 * 86400, 10 * 86400, 40 * 86400])
STEP = st.one_of(
    st.tuples(st.just("deliver"), st.lists(AGE, min_size=1, max_size=4)),
    st.tuples(st.just("expunge"), st.integers(0, 10**6)),
    st.tuples(st.just("move_out"), st.integers(0, 10**6)),
    st.tuples(st.just("move_in"), st.integers(0, 10**6)),
    st.tuples(st.just("seen"), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("destroy"), st.integers(0, 10**6)),
    st.tuples(st.just("time"), st.sampled_from([600, 6 * 3600, 86400, 3 * 86400])),
    st.tuples(st.just("page"), st.integers(0, 8), st.booleans()),
    st.tuples(st.just("page"), st.integers(1, 8), st.just(True)),
    st.tuples(st.just("page"), st.integers(1, 8), st.just(True)),
    st.tuples(st.just("client"), st.integers(0, 10**6), st.sampled_from(["delete", "read", "draft",
                                                                         "failed_delete"])),
    st.tuples(st.just("client"), st.integers(0, 10**6), st.just("read")),
    st.tuples(st.just("filter"), st.sampled_from([0, 1, 2, 3])),
    st.tuples(st.just("moved_by_device"), st.integers(0, 10**6)),
    st.tuples(st.just("bounce"), st.integers(0, 10**6)),
)


def same(a: ss.Diff, b: ss.Diff) -> None:
    assert (list(a.adds), a.changes, a.deletes, a.soft, a.modseq) == \
           (list(b.adds), b.changes, b.deletes, b.soft, b.modseq)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(st.lists(AGE, max_size=12), st.sampled_from([0, 1, 2, 3]),
       st.lists(STEP, min_size=5, max_size=40))
def test_brought_forward_equals_the_full_computation(store, first, ft, steps):
    """Every request: the difference from the basis (what a Sync sends)
    equals the one computed from the whole mailbox; the device then holds
    what the answer sent (a window of 0-8, the state through its stored
    form), or nothing moves (an empty answer, GetChanges 0)."""
    _n[0] += 1
    acc = store.write_sync(ops.create_account, f"p{_n[0]}", "x")
    with store.view() as v:
        a, b = v.mailbox_by_role(acc, "inbox").id, v.mailbox_by_role(acc, "archive").id
    deliver(store, acc, a, first)
    now = NOW
    with store.view() as v:
        snap = ss.Snapshot(1, v.highest_modseq(acc), filter=ft)
    key = 1
    for step in steps:
        op = step[0]
        here, there = uids(store, acc, a), uids(store, acc, b)
        drop, extra, echo = set(), set(), {}
        if op == "deliver":
            deliver(store, acc, a, step[1])
            continue
        if op == "time":
            now += step[1]
            continue
        if op == "filter":
            ft = step[1]
            continue
        if op == "moved_by_device":
            # MoveItems told the state (note_move): the basis goes
            held = list(snap.held)
            if held:
                e = held[step[1] % len(held)]
                snap.held = ss.packed(set(held) - {e})
                snap.basis = None
            continue
        if op in ("expunge", "move_out", "seen", "destroy") and here:
            u, e = here[step[1] % len(here)]
            if op == "expunge":
                store.write_sync(ops.expunge, acc, a, [u])
            elif op == "move_out":
                store.write_sync(ops.move, acc, a, [u], b)
            elif op == "destroy":
                store.write_sync(ops.destroy_emails, acc, [e])
            else:
                store.write_sync(ops.set_keywords, acc, [e], **{
                    "add" if step[2] else "remove": [vocab.SEEN]})
            continue
        if op == "bounce" and len(snap.held):
            # a held item leaves and comes back (a new UID) between two requests
            e = snap.held[step[1] % len(snap.held)]
            with store.view() as v:
                rec = v.email(acc, e)
            if rec is not None and rec.uid_in(a) is not None:
                store.write_sync(ops.move, acc, a, [rec.uid_in(a)], b)
                store.write_sync(ops.move, acc, b, [v_uid(store, acc, b, e)], a)
            continue
        if op == "move_in" and there:
            store.write_sync(ops.move, acc, b, [there[step[1] % len(there)][0]], a)
            continue
        if op == "client":
            held = list(snap.held)
            kind = step[2]
            if kind == "draft":
                extra = set(deliver(store, acc, a, [0]))
            elif held:
                e = held[step[1] % len(held)]
                with store.view() as v:
                    rec = v.email(acc, e)
                u = rec.uid_in(a) if rec is not None else None
                if kind == "read" and u is not None:
                    store.write_sync(ops.set_keywords, acc, [e], **{
                        "remove" if vocab.SEEN in rec.keywords else "add": [vocab.SEEN]})
                    with store.view() as v:
                        echo = {e: v.email(acc, e).last_ms}
                elif kind in ("delete", "failed_delete"):
                    drop = {e}
                    if kind == "delete" and u is not None:
                        store.write_sync(ops.move, acc, a, [u], b)
            # then a page as below
        if op not in ("page", "client"):
            continue
        window = step[1] if op == "page" else 3
        with store.view() as v:
            h = (set(snap.held) - drop) | extra
            full = ss.compute_full(v, acc, a, snap, ft, held=h, echo=echo, now=now)
            inc = ss.compute(v, acc, a, snap, ft, drop=drop, extra=extra, echo=echo, now=now)
            same(inc, full)
            assert list(inc.held) == sorted(h)
        if op == "page" and not step[2] and not drop and not extra:
            continue            # nothing sent, the key stays: brought forward further next time
        batch = choose(inc, window)
        key += 1
        snap = ss.advance(snap, inc, key, ft,
                          sent_adds=[e for o, e in batch if o == "A"],
                          sent_changes=[e for o, e in batch if o == "C"],
                          sent_removed=[e for o, e in batch if o in "DS"])
        snap = ss.decode(ss.encode(ss.SyncState(snap, None, key))).cur
        assert snap.basis is not None
    # and at the end, after everything
    with store.view() as v:
        same(ss.compute(v, acc, a, snap, ft, now=now), ss.compute_full(v, acc, a, snap, ft, now=now))


def test_pruned_vanished_rows_fall_back_to_the_full_computation(store, monkeypatch):
    acc = store.write_sync(ops.create_account, "pruned", "x")
    with store.view() as v:
        a, b = v.mailbox_by_role(acc, "inbox").id, v.mailbox_by_role(acc, "archive").id
    eids = deliver(store, acc, a, [0, 60, 120, 180])
    with store.view() as v:
        d = ss.compute(v, acc, a, ss.Snapshot(1, v.highest_modseq(acc)))
    snap = ss.advance(ss.Snapshot(1, 0), d, 2, 0, sent_adds=list(d.adds)[:2])
    assert snap.basis is not None and list(snap.held) == sorted(eids[:2])
    store.write_sync(ops.move, acc, a, [uids(store, acc, a)[0][0]], b)

    def pruned(self, acc_, mbx, modseq):
        raise CannotCalculateChanges("pruned")

    called = []
    real_full = ss.compute_full

    def spy(*args, **kw):
        called.append(1)
        return real_full(*args, **kw)

    monkeypatch.setattr(View, "vanished_since", pruned)
    monkeypatch.setattr(ss, "compute_full", spy)
    with store.view() as v:
        d2 = ss.compute(v, acc, a, snap)
    assert called and d2.deletes == [eids[0]] and list(d2.adds) == eids[2:]


# --- the stored form --------------------------------------------------------------------------

def encode_format_1(s: ss.SyncState) -> bytes:
    """The stored form as the first format wrote it (before the basis)."""
    import json
    import sys

    def meta(x):
        return {"k": x.key, "m": x.modseq, "f": x.filter, "c": x.complete,
                "nh": len(x.held), "nc": len(x.changed)}
    head = {"v": 1, "cur": meta(s.cur), "prev": meta(s.prev) if s.prev else None,
            "n": s.counter, "b": [[op, e] for op, e in s.batch], "a": s.client_adds, "mo": s.more,
            "le": sys.byteorder == "little"}
    hj = json.dumps(head, separators=(",", ":")).encode()
    parts = [len(hj).to_bytes(4, "big"), hj, s.cur.held.tobytes(), s.cur.changed.tobytes()]
    if s.prev is not None:
        parts += [s.prev.held.tobytes(), s.prev.changed.tobytes()]
    return b"".join(parts)


def test_basis_round_trips_and_the_previous_snapshot_goes_without_it():
    ids_ = st.lists(st.integers(1, 2**32 - 1), max_size=20)

    @given(ids_, ids_, st.lists(st.integers(-2**40, 2**40), max_size=20), st.booleans(),
           st.none() | st.integers(0, 2**40))
    def check(held, pend, dates, window, hmin):
        held = sorted(set(held))
        n = min(len(pend), len(dates))
        b = ss.Basis(17, 99, NOW if window else None, hmin, ss._u32(range(len(held))),
                     ss._u32(pend[:n]), ss._u32(range(n)),
                     ss.array("q", dates[:n]), ss._u32(held[:1]), ss._u32(held[1:2]))
        cur = ss.Snapshot(5, 42, ss._u32(held), ss._u32(held[:3]), 2, True, b)
        prev = ss.Snapshot(4, 40, ss._u32(held), ss._u32(), 2, False, b)
        got = ss.decode(ss.encode(ss.SyncState(cur, prev, 5, [("A", 3)], {"c": 3}, True)))
        assert got.cur == cur and got.prev.basis is None
        assert got.prev == ss.Snapshot(4, 40, ss._u32(held), ss._u32(), 2, False)

    check()


def test_a_format_1_state_is_read_without_a_basis():
    cur = ss.Snapshot(7, 30, ss.packed({3, 5, 9}), ss.packed({5}), 3, False)
    prev = ss.Snapshot(6, 20, ss.packed({3}), ss.packed(()), 3, True)
    st_ = ss.SyncState(cur, prev, 7, [("A", 5), ("C", 3)], {"x": 9}, True)
    got = ss.decode(encode_format_1(st_))
    assert got == st_ and got.cur.basis is None
    assert ss.decode(encode_format_1(st_).replace(b'"v":1', b'"v":9')) is None


async def test_a_sync_under_a_format_1_key_goes_on_and_an_unreadable_one_is_status_3(tmp_path):
    """A device whose key was issued by the first format keeps syncing
    (computed in full once, exactly); a state this code cannot read is
    Status 3 with SyncKey 0 (the device starts over), as MS-ASCMD says."""
    from mailaccess.bus import Bus
    from mailaccess.proto.eas import request as R
    from mailaccess.server import eas, eas_sync

    store = Store(tmp_path / "data")
    store.start()
    try:
        accounts.add_user(store, "alice", "pw")
        acc = account(store)
        inbox = role(store, acc, "inbox")
        eids = fill(store, acc, inbox, 12, start=time.time())
        ctx = eas.EasContext(store, Bus(), None, acc, "alice",
                             R.EasRequest("Sync", "alice", "old", "t", "16.1", None))

        async def call(key, window=5):
            out = await eas_sync.run(ctx, decode(sync_body(collection(cid(inbox), key,
                                                                      window=window))))
            return collections(out)[cid(inbox)]

        k = (await call(0)).key
        first = await call(k)
        assert first.add_ids == [sid(e) for e in eids[:5]] and first.more
        # rewrite the stored state in the first format
        with store.view() as v:
            st_ = ss.load(v, acc, "old", cid(inbox))
        assert st_.cur.basis is not None
        old = encode_format_1(st_)
        store.write_sync(ops.put_device_state, acc, "old", ss.state_key(cid(inbox)), old)
        with store.view() as v:
            assert ss.load(v, acc, "old", cid(inbox)).cur.basis is None
        got = [first.add_ids]
        key = first.key
        while True:
            co = await call(key)
            got.append(co.add_ids)
            key = co.key
            if not co.more:
                break
        assert sum(got, []) == [sid(e) for e in eids]
        with store.view() as v:
            assert ss.load(v, acc, "old", cid(inbox)).cur.basis is not None
        # a state nobody can read: Status 3, SyncKey 0
        store.write_sync(ops.put_device_state, acc, "old", ss.state_key(cid(inbox)),
                         old.replace(b'"v":1', b'"v":9'))
        co = await call(key)
        assert co.status == 3 and co.key == "0"
    finally:
        store.close()


async def test_a_page_under_a_basis_does_not_list_the_mailbox(tmp_path, monkeypatch):
    """After the first page, a page reads what changed, not the mailbox:
    View.uids is asked only for the UIDs above the basis's highest one."""
    from mailaccess.bus import Bus
    from mailaccess.proto.eas import request as R
    from mailaccess.server import eas, eas_sync

    store = Store(tmp_path / "data")
    store.start()
    try:
        accounts.add_user(store, "alice", "pw")
        acc = account(store)
        inbox = role(store, acc, "inbox")
        eids = fill(store, acc, inbox, 30, start=time.time())
        ctx = eas.EasContext(store, Bus(), None, acc, "alice",
                             R.EasRequest("Sync", "alice", "pg", "t", "16.1", None))

        async def call(key, window=10):
            out = await eas_sync.run(ctx, decode(sync_body(collection(cid(inbox), key,
                                                                      window=window))))
            return collections(out)[cid(inbox)]

        k = (await call(0)).key
        co = await call(k)
        assert co.add_ids == [sid(e) for e in eids[:10]]
        listed = []
        real = View.uids

        def spy(self, acc_, mbx, after=0):
            out = real(self, acc_, mbx, after)
            listed.append((after, len(out)))
            return out

        monkeypatch.setattr(View, "uids", spy)
        fill(store, acc, inbox, 1, start=time.time() + 60)     # one new message
        co = await call(co.key)
        assert co.add_ids[0] == sid(max(eids) + 1) and len(co.add_ids) == 10
        assert listed and all(after > 0 and n <= 1 for after, n in listed), listed
    finally:
        store.close()
