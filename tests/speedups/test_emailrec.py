"""emailrec_py and emailrec_c: the keyword rewrite of an encoded email record
equals decode -> change -> records.encode_email, byte for byte, and both
encode the redo log's ops identically (decode_ops reads them back)."""
import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups
from mailaccess.store import records, redolog
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
