"""search_py and search_c: ``match_records`` on the encoded email records says
what the engine's Python predicate (``record_oracle.record_test``, the engine's before the twins) says on the
decoded ones, and ``match_headers`` what ``find_header`` says on the header
text of the message index, for generated records, indexes and conditions;
the compiled twin calling LMDB directly, through py-lmdb's get, and through
a plain reader."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

import record_oracle
from conftest import twin_params
from mailaccess import _speedups
from mailaccess.mime.index import INDEX_LAYOUT
from mailaccess.query import engine
from mailaccess.query import model as q
from mailaccess.store import keys, records
from mailaccess.store.records import EmailRecord, Membership
from mailaccess.store.view import Reader

PY = _speedups.load_py("search")
C = _speedups.load_c("search")
ACC = 7
MIDNIGHT = 1762128000      # 2025-11-03T00:00:00Z: day boundaries around it

# keywords with odd bytes: NUL (the separator), control bytes, multi-byte UTF-8
KW_ALPHA = "aA$\0\x01é€ ~"
kw_text = st.text(KW_ALPHA, max_size=4)
times = st.sampled_from([MIDNIGHT + d for d in (-86401, -86400, -1, 0, 1, 86399, 86400)]
                        + [0, -1, -(2**63), 2**63 - 1]) | st.integers(-(2**63), 2**63 - 1)
bounds = st.none() | times | st.sampled_from([2**63, -(2**63) - 1, 2**70])
sizes = st.sampled_from([0, 1, 9999, 10000, 10001, 2**32 - 1]) | st.integers(0, 2**32 - 1)
numbers = st.sampled_from([-1, 0, 1, 10000, 10001, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64,
                           2**80]) | st.integers(-5, 2**64 + 5)
boxes = st.integers(1, 4)

records_ = st.builds(
    lambda eid, kws, size, received, ms, thread, mems: EmailRecord(
        eid, bytes(range(32)), received, -120, size, thread, ms, kws,
        [Membership(mb, u, sd) for mb, u, sd in mems], 0),
    st.integers(1, 12), st.lists(kw_text, max_size=5), sizes, times,
    st.integers(0, 2**64 - 1), st.integers(0, 5),
    st.lists(st.tuples(boxes, st.integers(1, 2**32 - 1), times), max_size=4))

conditions = st.one_of(
    st.builds(q.Keyword, kw_text.filter(bool)),
    st.builds(q.Larger, numbers), st.builds(q.Smaller, numbers),
    st.builds(q.Received, bounds, bounds),
    st.builds(q.ModSeqAtLeast, numbers),
    st.builds(q.ThreadIds, st.frozensets(st.integers(0, 6), max_size=3)),
    st.builds(q.InMailbox, st.integers(0, 5) | st.just(2**40)),
    st.builds(q.InMailboxOtherThan, st.frozensets(boxes, max_size=4)),
    st.builds(q.Saved, bounds, bounds))


@pytest.fixture(scope="module")
def lmdb_env(tmp_path_factory):
    import lmdb
    env = lmdb.open(str(tmp_path_factory.mktemp("recscan")), max_dbs=4, map_size=1 << 26)
    yield env, env.open_db(b"msg"), env.open_db(b"blob.idx")
    env.close()


def _readers(txn, msg_db, idx_db):
    """The store's Readers over TXN (as View.email_reader / index_reader)."""
    return (Reader(txn.get, keys.msg_of(ACC), msg_db, keys.msg_shape(ACC)),
            Reader(txn.get, keys.blob_of(ACC), idx_db, keys.blob_shape(ACC)))


PATHS = [(PY, "reader")] + ([(C, "direct"), (C, "py-lmdb"), (C, "reader")] if C else [])


def _run(mod, path, env, table, call):
    """CALL(read_email, read_index) of MOD over TABLE ({key: value} of both
    tables) by PATH: LMDB called directly, py-lmdb's get, or a plain callable."""
    e, msg_db, idx_db = env
    with e.begin(write=True) as txn:
        for k, (db, v) in table.items():
            txn.put(k, v, db=msg_db if db == "msg" else idx_db)
        rd_e, rd_x = _readers(txn, msg_db, idx_db)
        if path == "reader":    # no shape: the reader called per key
            def rd_e(x, r=rd_e):
                return r(x)

            def rd_x(x, r=rd_x):
                return r(x)
        if mod is C:
            C.lmdb_direct(path == "direct")
        try:
            return call(rd_e, rd_x)
        finally:
            if mod is C:
                C.lmdb_direct(True)
            txn.abort()


@pytest.mark.parametrize("mod,path", PATHS, ids=lambda x: getattr(x, "__name__", x)[-8:])
@settings(max_examples=250, deadline=None)
@given(recs=st.lists(records_, max_size=8, unique_by=lambda r: r.id),
       extra=st.lists(st.integers(1, 14), max_size=3), cond=conditions,
       mailbox=st.none() | boxes, want=st.booleans(), ordered=st.booleans())
def test_match_records_is_the_record_predicate(lmdb_env, mod, path, recs, extra, cond, mailbox,
                                               want, ordered):
    """Both twins, every read path: the positions whose record passes
    ``record_test`` (a missing email as the empty record), or with WANT
    False those whose record does not.  Email ids in table order (ORDERED:
    the compiled twin steps to the next entry), with gaps, gone ones and
    repeats."""
    table = {keys.msg(ACC, r.id): ("msg", records.encode_email(r)) for r in recs}
    eids = [r.id for r in recs] + [e for e in extra if keys.msg(ACC, e) not in table]
    if ordered:
        eids.sort()
    pos = list(range(len(eids)))[::-1][::2][::-1] + [0] * bool(eids)   # a subset, a repeat
    test = record_oracle.record_test(cond, mailbox)
    decoded = {r.id: records.decode_email(r.id, records.encode_email(r)) for r in recs}
    expect = [p for p in pos if test(decoded.get(eids[p], engine._EMPTY_RECORD)) == want]
    got = _run(mod, path, lmdb_env, table, lambda re, _rx: mod.match_records(
        re, eids, pos, engine._record_cond(cond, mailbox, mod), want))
    assert got == expect


# the search header text: "name: value" lines, with the bytes FROM/SUBJECT
# searches trip over (prefix lookalikes, odd address characters, UTF-8)
header_lines = st.lists(st.sampled_from(
    [b"from: bob <b@x>", b"from:", b"x-from: alice", b"subject: from: alice", b"to: (c) al@x",
     b'from: "al" <a@x>', b"from: al @ x", b"subject: \xc3\xa9t\xc3\xa9", b"from: alice"]),
    max_size=5).map(b"\n".join)


def _index(headers: bytes, version: int, cut: int | None) -> bytes:
    """An encoded index whose search_headers field is HEADERS (the other
    fields short filler), of VERSION, cut to CUT bytes."""
    fields = [b"e", b"bs", b"b", headers, b"body", b"p", b"{}"]
    ends, at = [], 0
    for f in fields:
        at += len(f)
        ends.append(at)
    data = INDEX_LAYOUT.head.pack(version, *ends) + b"".join(fields)
    return data if cut is None else data[:cut]


messages = st.lists(st.tuples(
    header_lines, st.sampled_from([2, 2, 2, 1, 0, 9]), st.none() | st.integers(0, 40),
    st.booleans()), max_size=8)


@pytest.mark.parametrize("mod,path", PATHS, ids=lambda x: getattr(x, "__name__", x)[-8:])
@settings(max_examples=250, deadline=None)
@given(msgs=messages, name=st.sampled_from([b"from", b"subject", b"to"]),
       needle=st.sampled_from([b"", b"alice", b"al", b"from", b"\xc3\xa9", b"b@x"]),
       odd=st.sampled_from([(), engine._ODD_ADDRESS]))
def test_match_headers_is_find_header_on_the_index(lmdb_env, mod, path, msgs, name, needle,
                                                   odd):
    """FOUND: find_header on each message's search header text (b"" when
    the email, its index or a readable version of it is missing); UNUSUAL:
    of the others, those with a NAME line holding any of ODD."""
    table, eids, texts = {}, [], []
    for i, (headers, version, cut, has_index) in enumerate(msgs, start=1):
        blob = struct.pack(">I", i) * 8
        rec = EmailRecord(i, blob, 0, 0, 1, 1, 1, [], [Membership(1, i, 0)], 0)
        table[keys.msg(ACC, i)] = ("msg", records.encode_email(rec))
        data = _index(headers, version, cut)
        if has_index:
            table[keys.blob(ACC, blob)] = ("idx", data)
        eids.append(i)
        readable = has_index and version in INDEX_LAYOUT.readable and \
            len(data) >= INDEX_LAYOUT.head.size
        # a cut index: the field clamped to the value, as a slice is
        start = INDEX_LAYOUT.head.size + len(b"ebsb")
        texts.append(headers[:max(0, len(data) - start)] if readable else b"")
    eids.append(99_999)         # an email that is gone
    texts.append(b"")
    pos = list(range(len(eids)))
    found = PY.find_header(texts, name, needle)
    prefix = name + b":"
    unusual = [p for p in pos if p not in found and odd and any(
        line.startswith(prefix) and any(o in line for o in odd)
        for line in texts[p].split(b"\n"))]
    got = _run(mod, path, lmdb_env, table, lambda re, rx: mod.match_headers(
        re, rx, eids, pos, name, needle, odd))
    assert got == (found, unusual)


def test_both_twins_are_there():
    assert C is not None, "search_c is not built (setup.py build_ext --inplace)"


@pytest.mark.parametrize("mod", twin_params("search"))
def test_a_damaged_record_is_an_error(mod):
    """A record shorter than its head, or than the memberships it counts:
    ValueError (the engine's Python path raised on decoding it too)."""
    r = records.encode_email(EmailRecord(1, b"\0" * 32, 0, 0, 5, 0, 0, ["a"],
                                         [Membership(1, 1, 0)], 0))
    for data in (r[:10], r[:records.EMAIL_LAYOUT.head.size + 4]):
        with pytest.raises(ValueError):
            mod.match_records({1: data}.get, [1], [0], (mod.SIZE, 1, None))
