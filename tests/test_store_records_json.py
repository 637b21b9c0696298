"""The JSON record codec built once (store/records.py, perf2) writes the
bytes ``json.dumps(separators=(",", ":"), ensure_ascii=False)`` writes and
reads what ``json.loads`` reads: a mailbox record or a change summary is the
same on disk whichever wrote it."""
import json

from hypothesis import given, strategies as st

from mailaccess.store import records

_scalar = st.one_of(st.integers(min_value=-2**63, max_value=2**64), st.text(), st.booleans(),
                    st.none(), st.floats(allow_nan=False, allow_infinity=False))
_value = st.recursive(_scalar, lambda c: st.lists(c, max_size=5), max_leaves=20)


def _old(v) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@given(st.lists(_value, max_size=14))
def test_dumps_writes_the_bytes_json_dumps_writes(v):
    assert records.json_dumps_compact(v) == _old(v)
    assert records.json_loads_record(_old(v)) == json.loads(_old(v))


@given(st.text(min_size=1), st.integers(0, 2**32 - 1), st.one_of(st.none(), st.text()),
       st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1), st.integers(0, 2**63),
       st.booleans(), st.integers(0, 2**31), st.integers(0, 2**20))
def test_mailbox_record_bytes_and_round_trip(name, parent, role, uidv, uidnext, ms, sub, total,
                                             size):
    m = records.Mailbox(7, name, parent, role, uidv, uidnext, ms, ms // 2, sub, 3, total,
                        total // 2, size, uidnext)
    enc = records.encode_mailbox(m)
    assert enc == b"\x01" + _old([m.name, m.parent, m.role, m.uidvalidity, m.uidnext,
                                  m.highest_ms, m.created_ms, m.subscribed, m.sort_order,
                                  m.total, m.unseen, m.size, m.recent_from])
    assert records.decode_mailbox(7, enc) == m
    assert records.decode_mailbox(7, memoryview(enc)) == m


@given(st.integers(0, 2**40), st.integers(0, 1000), st.lists(st.text(max_size=8), max_size=4),
       st.lists(st.integers(0, 2**32 - 1), max_size=4))
def test_summary_record_bytes_and_round_trip(t, rows, kinds, mbs):
    s = records.ModseqSummary(t, rows, kinds, mbs)
    enc = records.encode_summary(s)
    assert enc == b"\x02" + _old([t, rows, kinds, mbs])
    assert records.decode_summary(enc) == s


def test_a_damaged_record_still_raises():
    import pytest
    for bad in (b"\x01[1,2", b"\x01[1] x", b"\x01"):
        with pytest.raises(ValueError):
            records.decode_mailbox(1, bad)


@given(st.text(), st.text(), st.integers(0, 2**40), st.integers(0, 2**40), st.text())
def test_account_record_bytes_and_round_trip(name, pw, created, quota, scram):
    a = records.Account(3, name, pw, created, quota, scram)
    enc = records.encode_account(a)
    assert enc == b"\x01" + _old([name, pw, created, quota, scram])
    assert records.decode_account(3, enc) == a


@given(st.text(min_size=1), st.one_of(st.none(), st.text()), st.integers(1, 2**32 - 1),
       st.integers(0, 2**63), st.booleans(), st.integers(0, 2**31))
def test_a_mailbox_record_read_back_from_the_cache_is_what_the_parse_gives(
        name, role, uidnext, ms, sub, total):
    """decode_mailbox answers bytes it encoded or read before from a cache
    (perf4-store2): the same Mailbox the JSON parse gives, a new object each
    time, unaffected by later changes to the object that was encoded."""
    m = records.Mailbox(7, name, 0, role, 5, uidnext, ms, ms // 2, sub, 3, total,
                        total // 2, 100, uidnext)
    enc = records.encode_mailbox(m)
    m.highest_ms += 1            # the writer goes on changing its object
    m.name += "x"
    records._MBX_DECODED.clear()
    parsed = records.decode_mailbox(9, enc)          # parsed (and remembered)
    assert enc in records._MBX_DECODED
    records.encode_mailbox(records.decode_mailbox(9, enc))   # remembered again
    cached = records.decode_mailbox(9, enc)
    assert cached == parsed and cached is not parsed
    assert cached == records.decode_mailbox(9, memoryview(enc))     # no cache
    cached.unseen += 1
    assert records.decode_mailbox(9, enc) == parsed


def test_the_mailbox_record_cache_stays_bounded():
    records._MBX_DECODED.clear()
    for i in range(3 * records._MBX_DECODED_MAX):
        records.encode_mailbox(records.Mailbox(1, "a", 0, None, 1, 1, i, 0))
    assert len(records._MBX_DECODED) <= records._MBX_DECODED_MAX
