"""The selected-mailbox data structures against naive models (hypothesis):
``Snapshot.advance`` and ``SelectedMailbox.apply`` (expunges cut in slices,
not rebuilt element by element) give the map, sequence numbers and
announcement order of the obvious list computation and never change a shared
snapshot; ``imap_marked`` (the \\Deleted set brought forward from the change
index) equals reading every message, over random histories of a real store."""
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

from mailaccess import ingest, vocab
from mailaccess.server import imap_marked
from mailaccess.store import CannotCalculateChanges, Store, ops
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

UIDS = st.lists(st.integers(1, 400), unique=True, max_size=60).map(sorted)


@st.composite
def histories(draw):
    uids = draw(UIDS)
    vanished = draw(st.lists(st.one_of(st.sampled_from(uids) if uids else st.nothing(),
                                       st.integers(1, 500)), max_size=20))
    top = uids[-1] if uids else 0
    new = draw(st.lists(st.integers(max(1, top - 5), top + 80), unique=True, max_size=15))
    return uids, vanished, sorted(new)


def eid(u):
    return u * 7 + 3


@settings(max_examples=300, deadline=None)
@given(h=histories())
def test_advance_is_remove_then_append_above_the_top(h):
    uids, vanished, new = h
    snap = Snapshot.from_pairs([(u, eid(u)) for u in uids], 5)
    before = (snap.uids.tolist(), snap.eids.tolist())
    got = snap.advance([u for u in new], [eid(u) for u in new], vanished, 9)
    kept = [u for u in uids if u not in set(vanished)]
    top = kept[-1] if kept else 0
    want = kept + [u for u in new if u > top]
    assert got.uids.tolist() == want and got.eids.tolist() == [eid(u) for u in want]
    assert got.highest_ms == 9
    assert (snap.uids.tolist(), snap.eids.tolist()) == before      # shared: unchanged


@settings(max_examples=300, deadline=None)
@given(h=histories(), allow=st.booleans(), earlier=st.lists(st.integers(1, 400), max_size=5),
       as_arrays=st.booleans())
def test_apply_matches_the_list_model(h, allow, earlier, as_arrays):
    uids, vanished, new = h
    snap = Snapshot.from_pairs([(u, eid(u)) for u in uids], 5)
    before = snap.uids.tolist()
    sel = SelectedMailbox(1, 1, 1, False, snap, 1000)
    sel.gone = {u for u in earlier if u in set(uids)}     # learnt before, not told yet
    if as_arrays:
        from array import array
        pairs = (array("I", new), array("I", [eid(u) for u in new]))
    else:
        pairs = [(u, eid(u)) for u in new]
    r = sel.apply(pairs, vanished, [], 9, allow)
    gone = sel_gone = set(earlier) & set(uids) | (set(vanished) & set(uids))
    if allow:
        kept = [u for u in uids if u not in gone]
        # the old code: highest sequence number first, numbered in the old map
        want_seqs = [uids.index(u) + 1 for u in sorted(gone, reverse=True)]
        assert r.expunged_seqs == want_seqs
        assert r.expunged == sorted(gone, reverse=True)
        assert sel.gone == set()
    else:
        kept = list(uids)
        assert r.expunged == [] and sel.gone == sel_gone
    top = kept[-1] if kept else 0
    added = [u for u in new if u > top]
    assert sel.uids.tolist() == kept + added
    assert [sel.eid_of(u) for u in sel.uids] == [eid(u) for u in kept + added]
    assert r.exists == (len(kept) + len(added) if added else None)
    assert snap.uids.tolist() == before


# --- the \Deleted set, brought forward -----------------------------------------------------

STEP = st.one_of(
    st.tuples(st.just("append"), st.booleans()),
    st.tuples(st.just("flag"), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("expunge"), st.integers(0, 10**6)),
    st.tuples(st.just("copy_in"), st.booleans()),
    st.tuples(st.just("look"), st.booleans()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_marked_set_equals_reading_every_message(steps):
    with tempfile.TemporaryDirectory() as d:
        s = Store(d + "/s")
        s.start()
        try:
            _run_history(s, steps)
        finally:
            s.close()


def _run_history(s, steps):
    acc = s.write_sync(ops.create_account, "a", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    other = s.write_sync(ops.create_mailbox, acc, 0, "Other")
    cache = {}
    n = [0]

    def new(deleted, mbx):
        n[0] += 1
        msg = ingest.prepare(b"Subject: %d\r\n\r\nx\r\n" % n[0], 1_700_000_000)
        s.write_sync(ops.append, acc, [mbx], msg, keywords=[vocab.DELETED] if deleted else [])

    for step in steps:
        with s.view() as v:
            pairs = v.uids(acc, ib)
        kind = step[0]
        if kind == "append":
            new(step[1], ib)
        elif kind == "flag" and pairs:
            u, e = pairs[step[1] % len(pairs)]
            s.write_sync(ops.set_keywords, acc, [e], **{"add" if step[2] else "remove":
                                                        [vocab.DELETED]})
        elif kind == "expunge" and pairs:
            s.write_sync(ops.expunge, acc, ib, [pairs[step[1] % len(pairs)][0]])
        elif kind == "copy_in":
            new(step[1], other)
            with s.view() as v:
                e = v.uids(acc, other)[-1][1]
            s.write_sync(ops.copy, acc, [e], ib)     # one email in two mailboxes
        with s.view() as v:
            m = v.mailbox(acc, ib)
            want = {u for u, e in v.uids(acc, ib) if vocab.DELETED in v.keywords(acc, e)}
            if kind == "look" and step[1]:
                cache.clear()                      # a fresh server
            got = imap_marked.marked_uids(v, cache, acc, m, vocab.DELETED)
            assert got == want
            # the same answer again comes from the cache
            assert imap_marked.marked_uids(v, cache, acc, m, vocab.DELETED) is got


def test_marked_set_reads_everything_when_expunges_are_not_recorded(tmp_path, monkeypatch):
    s = Store(str(tmp_path / "s"))
    s.start()
    try:
        acc = s.write_sync(ops.create_account, "a", "h")
        with s.view() as v:
            ib = v.mailbox_by_role(acc, "inbox").id
        for i in range(4):
            s.write_sync(ops.append, acc, [ib], ingest.prepare(b"Subject: %d\r\n\r\n" % i, 0),
                         keywords=[vocab.DELETED])
        cache = {}
        with s.view() as v:
            uids = [u for u, _ in v.uids(acc, ib)]
            assert imap_marked.marked_uids(v, cache, acc, v.mailbox(acc, ib),
                                           vocab.DELETED) == set(uids)
        s.write_sync(ops.expunge, acc, ib, uids[:2])
        from mailaccess.store import view as store_view

        def pruned(self, *a):
            raise CannotCalculateChanges("pruned")
        monkeypatch.setattr(store_view.View, "vanished_since", pruned)
        with s.view() as v:
            assert imap_marked.marked_uids(v, cache, acc, v.mailbox(acc, ib),
                                           vocab.DELETED) == set(uids[2:])
    finally:
        s.close()


@st.composite
def pair_queries(draw):
    uids = draw(UIDS)
    gone = draw(st.sets(st.sampled_from(uids), max_size=8)) if uids else set()
    if uids and draw(st.booleans()):        # a run of the map, as STORE 1:* / a range
        i = draw(st.integers(0, len(uids) - 1))
        j = draw(st.integers(i, len(uids) - 1))
        asked = uids[i:j + 1]
        holes = [u for u in range(uids[i] + 1, uids[j]) if u not in set(uids)]
        if len(asked) > 2 and holes and draw(st.booleans()):
            # as many UIDs, same ends, one of them not in the map: not a run
            k = draw(st.integers(1, len(asked) - 2))
            asked = sorted(set(asked[:k] + asked[k + 1:] + [draw(st.sampled_from(holes))]))
    else:                                   # anything: unknown, repeated, unordered UIDs
        asked = draw(st.lists(st.integers(1, 420), max_size=40))
        if draw(st.booleans()):
            asked = sorted(set(asked))
    return uids, gone, asked


@settings(max_examples=400, deadline=None)
@given(q=pair_queries(), as_array=st.booleans())
def test_pairs_is_eid_of_each_live_uid(q, as_array):
    """``pairs(uids)`` and ``uids_eids(uids)`` (a run of the map taken as one slice, otherwise one
    walk) is (uid, eid) of each asked UID in the map and not gone, in the
    order asked."""
    from array import array
    uids, gone, asked = q
    sel = SelectedMailbox(1, 1, 1, False, Snapshot.from_pairs([(u, eid(u)) for u in uids], 5),
                          (uids[-1] if uids else 0) + 1)
    sel.gone = set(gone)
    got = sel.pairs(array("I", asked) if as_array else asked)
    want = [(u, eid(u)) for u in asked if u in set(uids) and u not in gone]
    assert got == want
    assert sel.uids_eids(array("I", asked) if as_array else asked) == \
        ([u for u, _e in want], [e for _u, e in want])


@settings(max_examples=400, deadline=None)
@given(q=pair_queries(),
       ranges=st.lists(st.tuples(st.integers(1, 430), st.integers(0, 60)), max_size=4))
def test_recent_among_is_the_recent_uids_asked(q, ranges):
    """``recent_among(uids)`` (per asked UID when they are fewer than the
    recent ranges span, else the set of every recent UID) is
    ``set(recent_uids()) & uids``: recent, in the map, not gone."""
    uids, gone, asked = q
    sel = SelectedMailbox(1, 1, 1, False, Snapshot.from_pairs([(u, eid(u)) for u in uids], 5),
                          (uids[-1] if uids else 0) + 1)
    sel.gone = set(gone)
    for lo, n in sorted(ranges):
        if not sel.recent or lo >= sel.recent[-1][1]:
            sel.add_recent(lo, lo + n)
    assert sel.recent_among(asked) == set(sel.recent_uids()).intersection(asked)
    assert sel.recent_among(asked[:1]) == set(sel.recent_uids()).intersection(asked[:1])
