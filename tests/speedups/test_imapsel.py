"""imapsel_py and imapsel_c: the sequence map read from uid-table rows and
the keyword scan over encoded email records give the same results as each
other and as a naive model (decode every record), for any input."""
import struct
from array import array

import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups
from mailaccess.store import records
from mailaccess.store.records import EmailRecord, Membership

TWINS = twin_params("imapsel")

PREFIX = st.binary(min_size=0, max_size=9)
U32 = st.integers(0, 2**32 - 1)


def rows_for(prefix, pairs, tail):
    rows = [(prefix + struct.pack(">I", u), struct.pack(">I", e)) for u, e in sorted(pairs)]
    return rows + [(k, v) for k, v in tail if not k.startswith(prefix)]


@pytest.mark.parametrize("mod", TWINS)
@settings(max_examples=200, deadline=None)
@given(prefix=PREFIX, pairs=st.dictionaries(U32, U32, max_size=40),
       tail=st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=6)), max_size=3),
       as_view=st.booleans())
def test_uid_map_reads_the_rows_under_the_prefix(mod, prefix, pairs, tail, as_view):
    rows = rows_for(prefix, pairs.items(), tail)
    if as_view:     # LMDB read transactions with buffers=True hand out memoryviews
        rows = [(memoryview(k), memoryview(v)) for k, v in rows]
    uids, eids = mod.uid_map(iter(rows), prefix)
    assert isinstance(uids, array) and uids.typecode == "I" and eids.typecode == "I"
    want = sorted(pairs.items())
    assert list(zip(uids, eids)) == want


@pytest.mark.parametrize("mod", TWINS)
@pytest.mark.parametrize("row", [(b"p\0\0\0\1\0", b"\0\0\0\1"), (b"p\0\0\0\1", b"\0\0\1")])
def test_uid_map_refuses_rows_of_another_size(mod, row):
    with pytest.raises(ValueError):
        mod.uid_map(iter([row]), b"p")


KW = st.sampled_from(["$seen", "$deleted", "$deletedx", "deleted", "$flagged", "ünï", "a" * 90])
RECORDS = st.lists(st.one_of(
    st.none(),
    st.builds(lambda kws, nmem: EmailRecord(
        1, bytes(32), 0, 0, 10, 1, 5, sorted(kws),
        [Membership(i + 1, i + 7, 0) for i in range(nmem)], 0),
        st.frozensets(KW, max_size=4), st.integers(1, 3))), max_size=30)


class Reader:
    """A store Reader without a key shape (the generic path)."""

    def __init__(self, recs):
        self.recs = recs

    def __call__(self, eid):
        r = self.recs[eid]
        return None if r is None else memoryview(records.encode_email(r))


@pytest.mark.parametrize("mod", TWINS)
@settings(max_examples=200, deadline=None)
@given(recs=RECORDS, kw=KW, present=st.booleans(), limit=st.integers(0, 4),
       order=st.randoms(use_true_random=False))
def test_keyword_hits_equal_the_decoded_records(mod, recs, kw, present, limit, order):
    eids = list(range(len(recs)))
    order.shuffle(eids)
    want = [i for i, e in enumerate(eids)
            if recs[e] is not None and (kw in recs[e].keywords) == present]
    if limit:
        want = want[:limit]
    assert mod.keyword_hits(Reader(recs), eids, kw.encode(), present, limit) == want


@pytest.mark.parametrize("mod", TWINS)
def test_keyword_hits_refuse_a_truncated_record(mod):
    rec = records.encode_email(EmailRecord(1, bytes(32), 0, 0, 1, 1, 1, ["$deleted"],
                                           [Membership(1, 1, 0), Membership(2, 2, 0)], 0))
    for cut in (10, records.EMAIL_LAYOUT.head.size + 3):
        with pytest.raises(ValueError):
            mod.keyword_hits(lambda e: rec[:cut], [1], b"$deleted", True)


def test_keyword_hits_through_a_store_reader(tmp_path):
    """The compiled twin assembles keys from the store's KeyShape: same hits."""
    from mailaccess import ingest
    from mailaccess.store import Store, ops
    s = Store(str(tmp_path / "s"))
    s.start()
    try:
        acc = s.write_sync(ops.create_account, "a", "h")
        with s.view() as v:
            ib = v.mailbox_by_role(acc, "inbox").id
        news = [ingest.prepare(b"Subject: %d\r\n\r\nx\r\n" % i, 1_700_000_000) for i in range(9)]
        s.write_sync(lambda tx: [ops.append(tx, acc, [ib], n, keywords=["$deleted"] if i % 3
                                            else []) for i, n in enumerate(news)])
        with s.view() as v:
            uids, eids = v.uid_map(acc, ib)
            assert list(zip(uids, eids)) == v.uids(acc, ib)
            assert v.uid_map(acc, ib, after=uids[4])[0].tolist() == uids[5:].tolist()
            want = [i for i, e in enumerate(eids) if "$deleted" in v.keywords(acc, e)]
            for mod in [p.values[0] for p in TWINS]:
                assert mod.keyword_hits(v.email_reader(acc), list(eids) + [999], b"$deleted",
                                        True) == want
            assert v.keyword_positions(acc, eids, "$deleted") == want
            assert v.keyword_positions(acc, eids, "$deleted", present=False, limit=1) == [0]
    finally:
        s.close()


def test_the_compiled_twin_is_loaded_when_built():
    if _speedups.load_c("imapsel") is None:
        pytest.skip("not built")
    from mailaccess.store import view
    assert view._imapsel is _speedups.load("imapsel")
    if not _speedups.NO_EXTENSIONS:
        assert _speedups.IMPLEMENTATION["imapsel"] == "c"
