"""The readable change log (store/changelog.py): per-kind state, RFC 8620
/changes paging inside and across modseqs, the retention horizon, pruning,
the format-1 migration, and IMAP QRESYNC falling back past the horizon."""
import dataclasses
import functools
import hashlib
import itertools
import time

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_config
from imap_helpers import connect, msg, RawText, run
from mailaccess.check import check_store
from mailaccess.store import CannotCalculateChanges, Store, keys, ops, records
from mailaccess.store.changelog import Retention, absent_ranges
from mailaccess.store.records import EMAIL, MAILBOX, THREAD

NO_SWEEP = dict(sweep_interval=0)


def new_email(i: int, mid=None, refs=()):
    raw = b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)
    return ops.NewEmail(raw=raw, index=b"\x00idx", blob=hashlib.sha256(raw).digest(),
                        received_at=1_700_000_000, message_id=mid or f"<{i}@x>",
                        thread_refs=tuple(refs), subject_hash=b"s" * 8)


def open_store(path, **retention):
    s = Store(path, retention=Retention(**{**NO_SWEEP, **retention}))
    s.start()
    return s


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "data")
    yield s
    s.close()


def account(s, name="alice"):
    acc = s.write_sync(ops.create_account, name, "x")
    with s.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    return acc, inbox


def append_many(s, acc, mbx, n, start=0):
    return s.write_sync(lambda tx: [ops.append(tx, acc, [mbx], new_email(start + i)).email
                                    for i in range(n)])


def read_all(s, acc, kind, since, max_changes):
    """Page through /changes from SINCE; -> (pages, final state)."""
    pages = []
    state = since
    while True:
        with s.view() as v:
            p = v.changes(acc, kind, state, max_changes)
        pages.append(p)
        assert p.old_state == str(state)
        state = p.new_state
        if not p.has_more:
            return pages, state
        assert len(pages) < 100_000


# --- per-kind state ------------------------------------------------------------------------

def test_per_kind_state_moves_only_with_its_kind(store):
    acc, inbox = account(store)
    with store.view() as v:
        assert v.kind_state(acc, "EmailSubmission") == "0"
        boxes = v.kind_state(acc, MAILBOX)
    [eid] = append_many(store, acc, inbox, 1)
    with store.view() as v:
        ms = v.highest_modseq(acc)
        assert v.kind_state(acc, EMAIL) == v.kind_state(acc, THREAD) == str(ms)
        assert v.kind_state(acc, MAILBOX) == str(ms) != boxes
    store.write_sync(ops.set_keywords, acc, [eid], add=["$flagged"])
    with store.view() as v:
        ms2 = v.highest_modseq(acc)
        assert v.kind_state(acc, EMAIL) == str(ms2)
        assert v.kind_state(acc, THREAD) == str(ms)          # flags do not touch threads
        p = v.changes(acc, THREAD, str(ms))
        assert (p.created, p.updated, p.destroyed, p.has_more) == ([], [], [], False)
        assert p.new_state == str(ms)
    # an open-ended kind: its own rows and state, nobody else's
    store.write_sync(lambda tx: tx.log(acc, "created", "EmailSubmission", 7))
    with store.view() as v:
        ms3 = v.highest_modseq(acc)
        assert v.kind_state(acc, "EmailSubmission") == str(ms3)
        assert v.kind_state(acc, EMAIL) == str(ms2)
        assert v.changes(acc, "EmailSubmission", "0").created == [7]
    assert check_store(store) == []


def test_a_mailbox_is_logged_only_when_a_keyword_change_moves_its_counts(store):
    """A keyword change logs its emails' mailboxes as JMAP Mailbox updated
    only where \\Seen moved (unreadEmails): a flag that moves no count
    changes no Mailbox property, so no row and no new Mailbox state.  The
    mailboxes' IMAP HIGHESTMODSEQ moves and the change names them (IDLE,
    NOTIFY) all the same."""
    acc, inbox = account(store)
    other = store.write_sync(ops.create_mailbox, acc, 0, "Other")
    a, b = append_many(store, acc, inbox, 2)
    store.write_sync(ops.set_mailboxes, acc, b, {inbox, other})
    with store.view() as v:
        boxes = v.kind_state(acc, MAILBOX)
    store.write_sync(ops.set_keywords, acc, [a, b], add=["$flagged"])
    with store.view() as v:
        ms = v.highest_modseq(acc)
        assert v.kind_state(acc, MAILBOX) == boxes
        assert v.changes(acc, MAILBOX, boxes).updated == []
        assert v.mailbox(acc, inbox).highest_ms == v.mailbox(acc, other).highest_ms == ms
        [c] = v.changes_since(acc, ms - 1)
        assert sorted(c.mailboxes) == sorted([inbox, other])
        assert c.updated == {EMAIL: [a, b]}
    store.write_sync(ops.set_keywords, acc, [a], add=["$seen"])
    with store.view() as v:
        ms = v.highest_modseq(acc)
        assert v.kind_state(acc, MAILBOX) == str(ms)
        assert v.changes(acc, MAILBOX, boxes).updated == [inbox]
        boxes = v.kind_state(acc, MAILBOX)
    store.write_sync(ops.set_keywords, acc, [a, b], remove=["$flagged"], add=["$seen"])
    with store.view() as v:
        assert sorted(v.changes(acc, MAILBOX, boxes).updated) == sorted([inbox, other])
    assert check_store(store) == []


def test_rfc8620_coalescing_across_modseqs(store):
    acc, inbox = account(store)
    a, b, c = append_many(store, acc, inbox, 3)
    with store.view() as v:
        since = v.kind_state(acc, EMAIL)
    [d] = append_many(store, acc, inbox, 1, start=10)              # created
    store.write_sync(ops.set_keywords, acc, [d, a], add=["$seen"])  # d stays created
    [e] = append_many(store, acc, inbox, 1, start=20)
    store.write_sync(ops.destroy_emails, acc, [e, b])               # e: in no list
    with store.view() as v:
        p = v.changes(acc, EMAIL, since)
        top = v.highest_modseq(acc)
    assert p.created == [d]
    assert p.updated == [a]
    assert p.destroyed == [b]
    assert not p.has_more and p.new_state == str(top)


def test_paging_inside_one_modseq(store):
    """A STORE over 1,000 messages is one modseq; maxChanges=100 pages it."""
    acc, inbox = account(store)
    eids = append_many(store, acc, inbox, 1000)
    with store.view() as v:
        since = v.kind_state(acc, EMAIL)
    store.write_sync(ops.set_keywords, acc, eids, add=["$flagged"])
    with store.view() as v:
        ms = v.highest_modseq(acc)
    pages, final = read_all(store, acc, EMAIL, since, 100)
    assert len(pages) == 10
    assert all(len(p.updated) == 100 and not p.created and not p.destroyed for p in pages)
    assert [p.has_more for p in pages] == [True] * 9 + [False]
    # states inside the modseq, then the modseq itself
    assert all(p.new_state.startswith(f"{ms}.") for p in pages[:9])
    assert final == str(ms)
    assert sorted(u for p in pages for u in p.updated) == sorted(eids)
    # paging across modseqs: 3 modseqs of 2 and one of 1000, page size 7
    for i in range(3):
        store.write_sync(ops.set_keywords, acc, eids[2 * i:2 * i + 2], add=[f"k{i}"])
    pages, final = read_all(store, acc, EMAIL, since, 7)
    # an id changed again in a later modseq shows up again in a later page
    assert {u for p in pages for u in p.updated} == set(eids)
    assert all(len(p.updated) <= 7 for p in pages)
    with store.view() as v:
        assert final == v.kind_state(acc, EMAIL)
        with pytest.raises(ValueError):
            v.changes(acc, EMAIL, since, 0)


def test_states_from_elsewhere_cannot_be_calculated(store):
    acc, inbox = account(store)
    with store.view() as v:
        top = v.highest_modseq(acc)
        for bad in ("x", "-1", "1.2.3", "", str(top + 1), None):
            with pytest.raises(CannotCalculateChanges):
                v.changes(acc, EMAIL, bad)


# --- hypothesis: paging reconstructs one big read ----------------------------------------

KINDS = ("Email", "Thread")
NAMES = itertools.count()


@st.composite
def histories(draw):
    """Requests of (kind, action, id) that respect object lifecycles."""
    live = {k: set() for k in KINDS}
    dead = {k: set() for k in KINDS}
    nxt = {k: 1 for k in KINDS}
    reqs = []
    for _ in range(draw(st.integers(1, 12))):
        req = []
        for _ in range(draw(st.integers(0, 25))):
            kind = draw(st.sampled_from(KINDS))
            choices = ["created"] + (["updated", "destroyed"] if live[kind] else [])
            action = draw(st.sampled_from(choices))
            if action == "created":
                oid = nxt[kind]
                nxt[kind] += 1
                live[kind].add(oid)
            else:
                oid = draw(st.sampled_from(sorted(live[kind])))
                if action == "destroyed":
                    live[kind].discard(oid)
                    dead[kind].add(oid)
            req.append((kind, action, oid))
        reqs.append(req)
    return reqs


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    s = open_store(tmp_path_factory.mktemp("hyp") / "data")
    yield s
    s.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reqs=histories(), data=st.data())
def test_paged_reads_reconstruct_one_big_read(shared_store, reqs, data):
    s = shared_store
    acc = s.write_sync(ops.create_account, f"h{next(NAMES)}", "x")
    cut = data.draw(st.integers(0, len(reqs)), label="since after request")
    live = {k: set() for k in KINDS}
    since = {}
    touched = {k: set() for k in KINDS}
    for i, req in enumerate(reqs):
        if i == cut:
            with s.view() as v:
                since = {k: v.kind_state(acc, k) for k in KINDS}
            at_since = {k: set(live[k]) for k in KINDS}

        def run_req(tx, req=req):
            tx.modseq(acc)
            for kind, action, oid in req:
                tx.log(acc, action, kind, oid)

        s.write_sync(run_req)
        for kind, action, oid in req:
            (live[kind].add if action == "created" else
             live[kind].discard if action == "destroyed" else lambda o: None)(oid)
            if i >= cut:
                touched[kind].add(oid)
    if cut == len(reqs):
        with s.view() as v:
            since = {k: v.kind_state(acc, k) for k in KINDS}
        at_since = {k: set(live[k]) for k in KINDS}
    for kind in KINDS:
        with s.view() as v:
            big = v.changes(acc, kind, since[kind])
        assert not big.has_more
        # the big read against the model
        assert set(big.created) == live[kind] - at_since[kind]
        assert set(big.destroyed) == at_since[kind] - live[kind]
        assert set(big.updated) == (touched[kind] & at_since[kind] & live[kind])
        # paging with a random size reaches the same place, never over the limit
        m = data.draw(st.integers(1, 30), label=f"max_changes {kind}")
        pages, final = read_all(s, acc, kind, since[kind], m)
        client = set(at_since[kind])
        updated = set()
        for p in pages:
            ids = p.created + p.updated + p.destroyed
            assert len(ids) <= m and len(set(ids)) == len(ids)
            assert not set(p.created) & client
            assert set(p.updated) <= client | set(p.created) and set(p.destroyed) <= client
            client |= set(p.created)
            client -= set(p.destroyed)
            updated |= set(p.updated)
        assert client == live[kind]
        assert final == big.new_state
        assert set(big.updated) <= updated


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reqs=histories(), data=st.data())
def test_pruning_never_changes_an_answer_only_withdraws_it(shared_store, reqs, data):
    """After pruning (any limit, any budget, so modseqs cut short too) every
    state answers exactly as before or raises CannotCalculateChanges, and a
    state at or after the horizon always answers."""
    from mailaccess.store import changelog

    s = shared_store
    acc = s.write_sync(ops.create_account, f"p{next(NAMES)}", "x")
    states = set()
    for req in reqs:
        def run_req(tx, req=req):
            tx.modseq(acc)
            for kind, action, oid in req:
                tx.log(acc, action, kind, oid)
        s.write_sync(run_req)
        with s.view() as v:
            states |= {(k, v.kind_state(acc, k)) for k in KINDS}
    m = data.draw(st.integers(1, 5), label="max_changes")
    # mid-modseq states too: every state a paged reader can be handed
    for kind, st_ in list(states):
        for p in read_all(s, acc, kind, "0", m)[0]:
            states.add((kind, p.new_state))

    def answers():
        out = {}
        for kind, st_ in states:
            with s.view() as v:
                try:
                    p = v.changes(acc, kind, st_, m)
                    out[kind, st_] = (p.created, p.updated, p.destroyed, p.new_state, p.has_more)
                except CannotCalculateChanges:
                    out[kind, st_] = None
        return out

    before = answers()
    assert None not in before.values()
    limit = data.draw(st.integers(0, 60), label="max_entries")
    budget = data.draw(st.integers(1, 40), label="budget")
    policy = Retention(max_age=0, max_entries=limit, slice=budget)
    s.write_sync(lambda tx: changelog.prune(tx, acc, policy, 0, budget))
    after = answers()
    with s.view() as v:
        hz = {k: changelog.kind_meta(v, acc, k)[1] for k in KINDS}
    for (kind, st_), got in after.items():
        ms, mid = changelog.parse_state(st_)
        if ms > hz[kind] or (ms == hz[kind] and mid is None):
            assert got == before[kind, st_]
        else:
            assert got is None
    assert check_store(s) == []


# --- retention: horizon, pruning, slices ------------------------------------------------------

def _settle(s, deadline=60.0):
    """Wait until the writer has nothing queued, runs nothing and has no
    pruning due (its idle pruning done)."""
    end = time.monotonic() + deadline
    while not (s._queue.empty() and not s._busy.locked() and not s._prune_due):
        assert time.monotonic() < end, "the writer never got its pruning done"
        time.sleep(0.002)


def test_size_limit_moves_the_horizon(tmp_path, monkeypatch):
    """Past max_entries the log is pruned in the writer's idle time, down to
    the limit; writes with no idle moment between them let it grow to
    twice the limit (Retention.hard_entries), past which each write's
    excess (plus a slice) is pruned before the writer's next request.
    Either way a state the pruning passed gets CannotCalculateChanges."""
    from mailaccess.store import lmdb_store
    # no idle moment: only the hard limit prunes
    monkeypatch.setattr(lmdb_store, "PRUNE_IDLE", 3600.0)
    s = open_store(tmp_path / "d", max_entries=300, slice=50)
    try:
        acc, inbox = account(s)
        eids = append_many(s, acc, inbox, 100)     # one modseq of ~200 entries
        with s.view() as v:
            early_email = v.kind_state(acc, EMAIL)
            thread_state = v.kind_state(acc, THREAD)
            assert v.change_horizon(acc) == 0
        seen = []
        for i in range(6):
            s.write_sync(ops.set_keywords, acc, eids, add=[f"k{i}"])
            assert check_store(s) == []
            with s.view() as v:
                rows = v.counter(acc, keys.CTR_LOG_ROWS)
                seen.append((rows, v.change_horizon(acc)))
                assert rows <= 2 * 300 + 101       # the hard limit and one write
        # over the limit, under twice it: nothing pruned yet (no idle time)
        assert seen[0][0] > 300 and seen[0][1] == 0, seen
        assert all(hz == 0 for rows, hz in seen[:4]), seen
        # past it: pruned before the next request
        assert seen[-1][1] > 0, seen
        # idle time: down to the limit
        monkeypatch.setattr(lmdb_store, "PRUNE_IDLE", 0.02)
        s.write_sync(ops.set_keywords, acc, eids, add=["k6"])     # (wakes the writer)
        _settle(s)
        with s.view() as v:
            hz = v.change_horizon(acc)
            assert hz > int(early_email)
            assert v.counter(acc, keys.CTR_LOG_ROWS) <= 300
            with pytest.raises(CannotCalculateChanges):
                v.changes(acc, EMAIL, early_email)
            with pytest.raises(CannotCalculateChanges):
                v.changes_since(acc, int(early_email))
            # flag changes never touched threads: the Thread state still answers
            assert v.changes(acc, THREAD, thread_state).new_state == thread_state
            # a state at or after the horizon answers
            now = v.kind_state(acc, EMAIL)
            assert v.changes(acc, EMAIL, now).updated == []
        assert check_store(s) == []
    finally:
        s.close()


def test_idle_pruning_leaves_its_commits_durable(tmp_path):
    """The writer's idle pruning flushes the log behind its own commits
    once it is done: a read snapshot afterwards flushes nothing (with the
    durable mark behind, READ_DURABLE makes the reader -- the loop, before
    its answer -- flush the log)."""
    s = open_store(tmp_path / "d", max_entries=100, slice=30)
    try:
        acc, inbox = account(s)
        eids = append_many(s, acc, inbox, 60)
        for i in range(3):
            s.write_sync(ops.set_keywords, acc, eids[::2], add=[f"k{i}"])
        _settle(s)
        before = s.stats.get("reader_flushes", 0)
        with s.view() as v:
            assert v.change_horizon(acc) > 0
            assert v.counter(acc, keys.CTR_LOG_ROWS) <= 100
        assert s.stats.get("reader_flushes", 0) == before
    finally:
        s.close()


def test_pruning_by_age_in_slices_prunes_vanished_too(tmp_path):
    s = open_store(tmp_path / "d", max_age=3600, max_entries=0, slice=7)
    try:
        acc, inbox = account(s)
        append_many(s, acc, inbox, 40)
        with s.view() as v:
            ms0 = v.highest_modseq(acc)
        s.write_sync(ops.expunge, acc, inbox, list(range(1, 21)))
        s.write_sync(ops.set_keywords, acc, [1000], add=["x"])   # nothing: no modseq
        append_many(s, acc, inbox, 1, start=99)                   # the newest modseq
        with s.view() as v:
            assert len(v.vanished_since(acc, inbox, ms0)) == 20
        # nothing is old yet
        s.prune_changes()
        with s.view() as v:
            assert v.change_horizon(acc) == 0
        # an hour later: one slice deletes at most 7 rows
        import time
        later = int(time.time()) + 7200
        from mailaccess.store import changelog
        start = 0
        slices = 0
        while start is not None:
            with s.view() as v:
                before = v.counter(acc, keys.CTR_LOG_ROWS) + sum(
                    1 for _ in v._scan("vanished", keys.account_prefix(acc)))
            start = s.write_sync(lambda tx, st_: changelog.sweep(tx, s.retention, later, st_),
                                 start)
            with s.view() as v:
                after = v.counter(acc, keys.CTR_LOG_ROWS) + sum(
                    1 for _ in v._scan("vanished", keys.account_prefix(acc)))
            assert before - after <= 7
            assert check_store(s) == []
            slices += 1
        assert slices > 5
        with s.view() as v:
            top = v.highest_modseq(acc)
            assert v.change_horizon(acc) == top - 1       # the newest modseq stays
            assert v.oldest_change(acc) == top
            assert list(v._scan("vanished", keys.account_prefix(acc))) == []
            with pytest.raises(CannotCalculateChanges):
                v.vanished_since(acc, inbox, ms0)
            assert v.vanished_since(acc, inbox, top - 1) == []
            assert [c.modseq for c in v.changes_since(acc, top - 1)] == [top]
    finally:
        s.close()


def test_the_writer_sweeps_when_idle(tmp_path):
    """No request needed: the writer thread prunes a log over its limits."""
    import time

    s = open_store(tmp_path / "d", max_entries=0)
    acc, inbox = account(s)
    eids = append_many(s, acc, inbox, 50)
    for i in range(4):
        s.write_sync(ops.set_keywords, acc, eids, add=[f"k{i}"])
    s.close()
    s = open_store(tmp_path / "d", max_entries=60, slice=10, sweep_interval=0.01)
    try:
        for _ in range(6000):     # a bounded wait (up to about a minute), not a timing
            with s.view() as v:
                if v.counter(acc, keys.CTR_LOG_ROWS) <= 60 + 51:
                    break
            time.sleep(0.01)
        else:
            raise AssertionError("the writer never pruned")
        with s.view() as v:
            assert v.change_horizon(acc) > 0
    finally:
        s.close()
    s = open_store(tmp_path / "d")
    try:
        assert check_store(s) == []
    finally:
        s.close()


def test_sweep_slices_cover_every_account(tmp_path, monkeypatch):
    from mailaccess.store import changelog

    s = open_store(tmp_path / "d", max_entries=0)
    accs = []
    for i in range(4):
        acc, inbox = account(s, f"u{i}")
        eids = append_many(s, acc, inbox, 10)
        s.write_sync(ops.set_keywords, acc, eids, add=["$seen"])
        accs.append(acc)
    s.close()
    monkeypatch.setattr(changelog, "SWEEP_ACCOUNTS", 1)
    s = open_store(tmp_path / "d", max_entries=5, slice=4)
    try:
        calls = []
        real = changelog.sweep
        monkeypatch.setattr(changelog, "sweep", lambda *a: calls.append(a[3]) or real(*a))
        s.prune_changes()
        with s.view() as v:
            for acc in accs:
                assert v.change_horizon(acc) == v.highest_modseq(acc) - 1
        assert len(calls) > 4 * 2
        assert check_store(s) == []
    finally:
        s.close()


def test_flag_changes_alone_stop_growing_the_file_and_cost_no_quota(tmp_path, monkeypatch):
    """400 STOREs grew data.mdb by 12.6 MB (issue 6); with retention the
    pages in use reach a plateau: as many after 2N rounds as after N.
    (After each write the test waits for the writer's pruning and the
    checkpoint thread to be done: which commits overlap a checkpoint in
    flight is a matter of timing, and each holds pages back a little
    longer.)"""

    from mailaccess.store import lmdb_store
    # checkpoints every REDO_MAX_COMMITS commits, not after a time that a
    # loaded machine may reach at another commit
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    monkeypatch.setattr(lmdb_store, "PRUNE_IDLE", 0.02)     # (each round waits for it)

    def settle(s):
        while not (s._queue.empty() and not s._busy.locked() and not s._prune_due
                   and not s._ckpt.busy()):
            time.sleep(0.001)

    def rounds(s, acc, eids, n):
        for i in range(n):
            s.write_sync(ops.set_keywords, acc, eids,
                         **({"add": ["$flagged"]} if i % 2 == 0 else {"remove": ["$flagged"]}))
            settle(s)

    def pages(s):
        return s.env.info()["last_pgno"]

    out = {}
    for name, limit in (("pruned", 1000), ("unpruned", 0)):
        s = open_store(tmp_path / name, max_entries=limit, slice=500)
        try:
            acc, inbox = account(s)
            # every other email: no two ids consecutive, 300 rows per change
            # (a run of consecutive ids would be one row: slow growth)
            eids = append_many(s, acc, inbox, 600)[::2]
            with s.view() as v:
                usage = v.usage(acc)
            rounds(s, acc, eids, 40)
            n1 = pages(s)
            rounds(s, acc, eids, 40)
            n2 = pages(s)
            with s.view() as v:
                assert v.usage(acc) == usage        # the log is not the user's bytes
            assert check_store(s) == []
            out[name] = (n1, n2)
        finally:
            s.close()
    n1, n2 = out["pruned"]
    assert n2 == n1, out
    u1, u2 = out["unpruned"]
    assert u2 > u1 + 100, out    # the same load without a limit keeps growing


CORRUPTIONS = {
    "row without summary": (
        lambda tx, acc, ms, inbox: tx.put("chg.id", keys.chg_id(acc, "Other", ms - 1, 9), b"u"),
        "has no summary naming it"),
    "row counter": (
        lambda tx, acc, ms, inbox: tx.put("ctr", keys.ctr(acc, keys.CTR_LOG_ROWS), keys.u64(3)),
        "row counter 3 but"),
    "summary count": (
        lambda tx, acc, ms, inbox: tx.delete_prefix("chg.id", keys.chg_id_prefix(acc, EMAIL, ms)),
        "summary counts"),
    "bad status": (
        lambda tx, acc, ms, inbox: tx.put("chg.id", keys.chg_id(acc, EMAIL, ms, 4), b"x"),
        "bad status"),
    "row above kind state": (
        lambda tx, acc, ms, inbox: tx.put("chg.kind", keys.chg_kind(acc, EMAIL),
                                          records.encode_kind_state(1, 0)),
        "above the kind's state"),
    "vanished below horizon": (
        lambda tx, acc, ms, inbox: tx.put("ctr", keys.ctr(acc, keys.CTR_LOG_HORIZON),
                                          keys.u64(ms)),
        "below the change-log horizon"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_check_knows_the_change_log(store, case):
    acc, inbox = account(store)
    append_many(store, acc, inbox, 3)
    store.write_sync(ops.expunge, acc, inbox, [1])
    append_many(store, acc, inbox, 1, start=9)
    with store.view() as v:
        ms = v.highest_modseq(acc)
    assert check_store(store) == []
    corrupt, expected = CORRUPTIONS[case]
    store.write_sync(lambda tx: corrupt(tx, acc, ms, inbox))
    problems = check_store(store)
    assert any(expected in p for p in problems), problems


def test_delete_account_removes_its_log(store):
    acc, inbox = account(store)
    other, _ = account(store, "bob")
    append_many(store, acc, inbox, 3)
    store.write_sync(ops.delete_account, acc)
    with store.view() as v:
        for table in ("chg", "chg.id", "chg.kind"):
            assert list(v._scan(table, keys.account_prefix(acc))) == []
        assert v.counter(acc, keys.CTR_LOG_ROWS) == 0
    assert check_store(store) == []


# --- format 1 -> 2 migration -------------------------------------------------------------

def test_format1_store_is_migrated_on_open(tmp_path):
    path = tmp_path / "old"
    s = open_store(path)
    acc, inbox = account(s)
    eids = append_many(s, acc, inbox, 5)
    s.write_sync(ops.set_keywords, acc, eids[:2], add=["$seen"])
    s.write_sync(ops.expunge, acc, inbox, [5])
    with s.view() as v:
        expected = [(c.modseq, c.created, c.updated, c.destroyed, c.mailboxes)
                    for c in v.changes_since(acc, 0)]
        email_state = v.kind_state(acc, EMAIL)
    s.close()
    # rewrite it as format 1 wrote it: one JSON Change per modseq, nothing else
    env = lmdb.open(str(path), max_dbs=64, map_size=1 << 30)
    with env.begin(write=True) as txn:
        dbs = {n: env.open_db(n.encode(), txn=txn) for n in ("meta", "chg", "chg.id",
                                                             "chg.kind", "ctr")}
        for ms, cr, up, de, mb in expected:
            txn.put(keys.chg(acc, ms), records.encode_change(
                records.Change(ms, cr, up, de, mb)), db=dbs["chg"])
        txn.drop(dbs["chg.id"], delete=False)
        txn.drop(dbs["chg.kind"], delete=False)
        txn.delete(keys.ctr(acc, keys.CTR_LOG_ROWS), db=dbs["ctr"])
        txn.put(b"data_version", b"1", db=dbs["meta"])
    env.close()
    s = open_store(path)
    try:
        with s.view() as v:
            got = [(c.modseq, c.created, c.updated, c.destroyed, c.mailboxes)
                   for c in v.changes_since(acc, 0)]
            assert v.kind_state(acc, EMAIL) == email_state
            assert v.txn.get(b"data_version", db=s.db["meta"]) == str(keys.DATA_VERSION).encode()
        norm = lambda rows: [(ms, {k: sorted(x) for k, x in cr.items()},
                              {k: sorted(x) for k, x in up.items()},
                              {k: sorted(x) for k, x in de.items()}, mb)
                             for ms, cr, up, de, mb in rows]
        assert norm(got) == norm(expected)
        assert check_store(s) == []
    finally:
        s.close()


# --- IMAP QRESYNC past the horizon ---------------------------------------------------------

def test_absent_ranges():
    assert absent_ranges([(1, 10)], [2, 3, 7]) == [(1, 1), (4, 6), (8, 10)]
    assert absent_ranges([(1, 3), (5, 5)], []) == [(1, 3), (5, 5)]
    assert absent_ranges([(1, 4_000_000_000)], [5]) == [(1, 4), (6, 4_000_000_000)]
    assert absent_ranges([(2, 3)], [1, 2, 3, 4]) == []


@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, store=dataclasses.replace(
        c.store, changelog_max_entries=40, changelog_prune_slice=1000,
        changelog_sweep_interval=0))


Raw = functools.partial(RawText, check_ok=lambda tagged: b" OK " in tagged)


async def test_qresync_past_the_horizon_reports_absent_uids_by_range(imap_server):
    ctx = imap_server

    def go():
        c = connect(ctx)
        for i in range(8):
            c.append("INBOX", None, None, msg(f"m{i}"))
        # a second session selected now, which will not look again until later
        idle = Raw(ctx)
        idle.cmd(b"SELECT INBOX")
        r = Raw(ctx)
        r.cmd(b"ENABLE QRESYNC")
        out = r.cmd(b"SELECT INBOX")
        uidv = int(out.split(b"UIDVALIDITY ")[1].split(b"]")[0])
        hms = int(out.split(b"HIGHESTMODSEQ ")[1].split(b"]")[0])
        r.cmd(b"UID STORE 2,4,7:8 +FLAGS.SILENT (\\Deleted)")
        r.cmd(b"UID EXPUNGE 2,4,7:8")
        # flag churn pushes the 40-row log past hms (and the expunges)
        for i in range(30):
            r.cmd(b"STORE 1:* %sFLAGS.SILENT (\\Flagged)" % (b"+" if i % 2 == 0 else b"-"))
        with ctx.store.view() as v:
            acc = v.account_by_name("alice").id
            assert v.change_horizon(acc) > hms
        r.cmd(b"CLOSE")
        out = r.cmd(b"SELECT INBOX (QRESYNC (%d %d 1:8))" % (uidv, hms))
        assert b"* VANISHED (EARLIER) 2,4,7:8\r\n" in out
        # no known UIDs: 1:UIDNEXT-1; a huge known range is clamped, not expanded
        r.cmd(b"CLOSE")
        out = r.cmd(b"SELECT INBOX (QRESYNC (%d %d))" % (uidv, hms))
        assert b"* VANISHED (EARLIER) 2,4,7:8\r\n" in out
        r.cmd(b"CLOSE")
        out = r.cmd(b"SELECT INBOX (QRESYNC (%d %d 3:4294967295))" % (uidv, hms))
        assert b"* VANISHED (EARLIER) 4,7:8\r\n" in out
        out = r.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
        assert b"* VANISHED (EARLIER) 2,4,7:8\r\n" in out
        out = r.cmd(b"UID FETCH 5:8 (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
        assert b"* VANISHED (EARLIER) 7:8\r\n" in out
        # a client that is current gets no VANISHED at all
        with ctx.store.view() as v:
            now = v.mailbox_by_role(acc, "inbox").highest_ms
        r.cmd(b"CLOSE")
        out = r.cmd(b"SELECT INBOX (QRESYNC (%d %d 1:8))" % (uidv, now))
        assert b"VANISHED" not in out
        # the session that slept through it all still learns of the expunges
        out = idle.cmd(b"NOOP")
        assert out.count(b" EXPUNGE\r\n") == 4, out
        assert b"* 4 EXISTS" not in out
        out = idle.cmd(b"FETCH 1:* (UID)")
        assert out.count(b" FETCH (") == 4
        idle.close()
        r.close()
        c.logout()

    await run(go)
    assert check_store(ctx.store) == []


def test_pruning_made_due_by_a_write_the_loop_ran_itself_is_done(tmp_path):
    """A small write run in the caller's thread (``write_here``, perf3) that
    takes the log over its size limit leaves the pruning to the writer
    thread (``prune_later``) and wakes it: with no redo log and no age sweep
    the writer sleeps with no timeout, and the log would grow unpruned for
    as long as the loop keeps writing itself."""
    s = Store(tmp_path / "d", redo=False,
              retention=Retention(max_age=0, max_entries=30, slice=10, **NO_SWEEP))
    s.start()
    try:
        acc, inbox = account(s)
        eids = append_many(s, acc, inbox, 10)
        idle = lambda: s._queue.empty() and not s._busy.locked()   # noqa: E731
        for i in range(8):
            deadline = time.monotonic() + 10
            while not idle():
                assert time.monotonic() < deadline
                time.sleep(0.005)
            box = []
            assert s.write_here(functools.partial(ops.set_keywords, add=[f"k{i}"]), (acc, eids),
                                lambda r, e: box.append(e))
            assert box == [None]
        deadline = time.monotonic() + 10
        while True:
            with s.view() as v:
                rows = v.counter(acc, keys.CTR_LOG_ROWS)
            if rows <= 30 + 10:
                break
            assert time.monotonic() < deadline, f"{rows} change-log rows, limit 30"
            time.sleep(0.02)
        assert check_store(s) == []
    finally:
        s.close()


# --- runs of consecutive ids (format 4) ---------------------------------------------------

def test_a_bulk_change_of_consecutive_ids_is_one_row_paged_through_inside(store):
    """A bulk change logs a run of consecutive ids as one chg.id row (the
    other ids one row each); /changes pages through it with states inside
    the run, every page resuming where the last one stopped; changes_since,
    the row counts and check_store see every id."""
    acc, inbox = account(store)
    eids = append_many(store, acc, inbox, 60)
    with store.view() as v:
        since = v.kind_state(acc, EMAIL)
    # a run of 40, then ids alone (every other one of the last 20)
    pick = eids[:40] + eids[41::2]
    store.write_sync(ops.set_keywords, acc, pick, add=["$flagged"])
    with store.view() as v:
        ms = v.highest_modseq(acc)
        rows = list(v._scan("chg.id", keys.chg_id_prefix(acc, EMAIL, ms)))
        assert len(rows) == 1 + 10
        assert rows[0][0] == keys.chg_id(acc, EMAIL, ms, eids[0])
        assert [c.updated[EMAIL] for c in v.changes_since(acc, ms - 1)] == [pick]
    for size in (1, 7, 39, 40, 41, 100):
        pages, final = read_all(store, acc, EMAIL, since, size)
        got = [i for p in pages for i in p.updated]
        assert got == pick, size
        assert all(len(p.updated) <= size for p in pages)
        assert final == str(ms)
    # a state inside the run, as a page left it
    with store.view() as v:
        p = v.changes(acc, EMAIL, f"{ms}.{eids[12]}")
        assert p.updated == pick[13:]
    assert check_store(store) == []


def test_pruning_cuts_a_run_at_the_slice_budget(tmp_path):
    from mailaccess.store import changelog
    s = open_store(tmp_path / "d", max_entries=0)        # pruned below, by hand
    try:
        acc, inbox = account(s)
        eids = append_many(s, acc, inbox, 30)
        s.write_sync(ops.set_keywords, acc, eids, add=["$seen"])      # a run of 30
        s.write_sync(ops.set_keywords, acc, eids, add=["$flagged"])   # and another
        with s.view() as v:
            rows = v.counter(acc, keys.CTR_LOG_ROWS)
        # one pruning step deletes 7 entries: the first run loses its first ids
        policy = Retention(max_entries=10, slice=7)
        spent, more = s.write_sync(lambda tx: changelog.prune(tx, acc, policy,
                                                              int(time.time()), 7))
        assert (spent, more) == (7, True)
        with s.view() as v:
            assert v.counter(acc, keys.CTR_LOG_ROWS) == rows - 7
        assert check_store(s) == []
    finally:
        s.close()
