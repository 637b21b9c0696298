"""fetchfmt_c reads the email records, message indexes and raw messages by
LMDB directly (lmdb_direct.pxi's TableReads: a cursor of the Reader's own
transaction, the values in place, the records stepped in table order; and
TableAhead: the indexes and raw messages of TD_AHEAD messages looked up
before any is read) and answers byte for byte what the pure twin answers
through the Readers, on every path: LMDB called directly with and without
the look-ahead (``look_ahead(False)``), py-lmdb's get (``lmdb_direct(False)``:
no py-lmdb 3.0.0), a plain callable; for generated tables with damaged values
(cut short, other versions, offsets past the end, no header end), gone
values, the neighbouring accounts' records next to the account's own, and
the UIDs in any order.  And the transaction read is the view's: a write
after the view opened is not seen."""
import functools
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from mailaccess import _speedups, ingest
from mailaccess.mime.index import INDEX_LAYOUT
from mailaccess.server.imap_fmt import flags_list
from mailaccess.store import Store, keys, ops, records
from mailaccess.store.records import EMAIL_LAYOUT, EmailRecord, Membership
from mailaccess.store.view import Reader

PY = _speedups.load_py("fetchfmt")
C = _speedups.load_c("fetchfmt")
pytestmark = pytest.mark.skipif(C is None, reason="fetchfmt_c is not built")
ACC = 7

HEADER = (b"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: s %d\r\n"
          b"Message-ID: <m%d@example.org>\r\nDate: Mon, 3 Nov 2025 00:00:00 +0000\r\n")
RAWS = [
    HEADER % (1, 1) + b"\r\nsmall\r\n",
    HEADER % (2, 2) + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/x"
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n",
    HEADER % (3, 3) + b"X-Nul: a\0b\r\n\r\nbody with \0 in it\r\n" + b"x" * 9000,
    HEADER % (4, 4) + b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nutf8\r\n",
    b"Subject: no blank line\r\nX-Long: " + b"y" * 5000,
    b"",
]
PREPARED = [ingest.prepare(r, 1_700_000_000 + 1000 * k, 60 * k - 120)
            for k, r in enumerate(RAWS)]
ITEMS = ["UID", "FLAGS", "MODSEQ", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE",
         "BODYSTRUCTURE", "BODY", "EMAILID", "THREADID",
         PY.HeaderFields(b"BODY[HEADER.FIELDS (Subject X-NUL)]", ("Subject", "X-NUL"), False),
         PY.HeaderFields(b"BODY[HEADER.FIELDS.NOT (From)]", ("From",), True),
         PY.WholeBody(b"BODY[]"), PY.WholeHeader(b"BODY[HEADER]")]


def _record(eid: int, k: int, kws, flags: int) -> bytes:
    p = PREPARED[k]
    return records.encode_email(EmailRecord(
        eid, p.blob, p.received_at, p.tz, len(p.raw), eid % 3, 1000 + eid, list(kws),
        [Membership(1, eid, 0)], flags))


def _damage(value: bytes, how):
    """VALUE damaged as HOW says: None (as is), "gone", ("cut", n), ("byte", at, b)."""
    if how is None:
        return value
    if how == "gone":
        return None
    if how[0] == "cut":
        return value[:how[1]]
    at = how[1] % (len(value) or 1)
    return value[:at] + bytes([how[2]]) + value[at + 1:] if value else value


damage = st.one_of(st.none(), st.none(), st.just("gone"),
                   st.tuples(st.just("cut"), st.integers(0, 120)),
                   st.tuples(st.just("byte"), st.integers(0, 60), st.integers(0, 255)))
# an index whose head's field ends point anywhere (past the value, backwards)
index_damage = damage | st.tuples(st.just("ends"), st.integers(0, len(INDEX_LAYOUT.fields) - 1),
                                  st.sampled_from([0, 1, 300, 2**31, 2**32 - 1]))
emails = st.lists(
    st.tuples(st.integers(1, 30), st.integers(0, len(RAWS) - 1),
              st.lists(st.sampled_from(["$seen", "kw", "\u00e9t\u00e9", "$flagged"]),
                       max_size=3),
              st.sampled_from([0, 0, EMAIL_LAYOUT.flag_utf8_headers]),
              damage, index_damage, damage),
    max_size=24, unique_by=lambda e: e[0])


def _index_damaged(value: bytes, how):
    if isinstance(how, tuple) and how[0] == "ends":
        head = list(INDEX_LAYOUT.head.unpack_from(value))
        head[1 + how[1]] = how[2]
        return INDEX_LAYOUT.head.pack(*head) + value[INDEX_LAYOUT.head.size:]
    return _damage(value, how)


@pytest.fixture(scope="module")
def lmdb_env(tmp_path_factory):
    import lmdb
    env = lmdb.open(str(tmp_path_factory.mktemp("fetchdirect")), max_dbs=4, map_size=1 << 26)
    yield env, env.open_db(b"msg"), env.open_db(b"blob.idx"), env.open_db(b"blob")
    env.close()


def _flags(kws) -> bytes:
    return b"(" + " ".join(kws).encode("utf-8") + b")"


def _outcome(f, *args):
    try:
        return f(*args)
    except Exception as exc:    # the twins raise alike, or answer alike
        return type(exc)


def _answers(mod, readers, uids, snap_uids, snap_eids, items, condstore, utf8, budget,
             recent):
    """fetch_simple (BUDGET None) or fetch_upto's chunks over all of UIDS."""
    rd_e, rd_x, rd_b = readers
    if budget is None:
        return _outcome(mod.fetch_simple, rd_e, rd_x, uids, snap_uids, snap_eids, items,
                        _flags, condstore, utf8, rd_b)
    out, start = [], 0
    while start < len(uids):
        got = _outcome(mod.fetch_upto, rd_e, rd_x, uids, start, snap_uids, snap_eids, items,
                       _flags, condstore, utf8, rd_b, budget, recent)
        out.append(got)
        if type(got) is not tuple:
            break
        start = got[2] + 1 if got[3] else got[2]
    return out


@pytest.mark.parametrize("path", ["ahead", "direct", "py-lmdb", "reader"])
@settings(max_examples=150, deadline=None)
@given(mails=emails, neighbours=st.booleans(), order=st.sampled_from(["eid", "shuffled"]),
       pick=st.lists(st.integers(0, 40), max_size=40) | st.none(),
       items=st.lists(st.sampled_from(ITEMS), min_size=1, max_size=5),
       condstore=st.booleans(), utf8=st.booleans(),
       budget=st.none() | st.integers(0, 12_000), recent=st.booleans(), rnd=st.randoms())
def test_compiled_reads_answer_as_the_readers(lmdb_env, path, mails, neighbours, order, pick,
                                              items, condstore, utf8, budget, recent, rnd):
    env, msg_db, idx_db, blob_db = lmdb_env
    with env.begin(write=True, buffers=True) as txn:
        for eid, k, kws, fl, d_rec, d_idx, d_blob in mails:
            p = PREPARED[k]
            for key, db, value in (
                    (keys.msg(ACC, eid), msg_db, _damage(_record(eid, k, kws, fl), d_rec)),
                    (keys.blob(ACC, p.blob), idx_db, _index_damaged(p.index, d_idx)),
                    (keys.blob(ACC, p.blob), blob_db, _damage(p.raw, d_blob))):
                if value is not None:
                    txn.put(key, value, db=db)
            if neighbours:  # the next and previous accounts' records around ACC's
                for acc in (ACC - 1, ACC + 1):
                    txn.put(keys.msg(acc, eid), _record(eid, (k + 1) % len(RAWS), [], 0),
                            db=msg_db)
        # the snapshot: UIDs ascending, their email ids in table order or not,
        # some of them without a record (expunged meanwhile)
        eids = sorted({e[0] for e in mails} | {31, 35})
        if order == "shuffled":
            rnd.shuffle(eids)
        snap_uids = [10 * (j + 1) for j in range(len(eids))]
        uids = snap_uids if pick is None else [10 * j for j in pick]
        readers = (Reader(txn.get, keys.msg_of(ACC), msg_db, keys.msg_shape(ACC)),
                   Reader(txn.get, keys.blob_of(ACC), idx_db, keys.blob_shape(ACC)),
                   Reader(txn.get, keys.blob_of(ACC), blob_db, keys.blob_shape(ACC)))
        rec = set(uids[::2]) if recent else None
        args = (uids, snap_uids, eids, items, condstore, utf8, budget, rec)
        expect = _answers(PY, readers, *args)
        if path == "reader":    # no key shape: each reader called
            readers = tuple((lambda x, r=r: r(x)) for r in readers)
        C.lmdb_direct(path in ("ahead", "direct"))
        C.look_ahead(path == "ahead")
        try:
            if path in ("ahead", "direct"):
                assert C.lmdb_direct()
            assert _answers(C, readers, *args) == expect
        finally:
            C.lmdb_direct(True)
            C.look_ahead(True)
            txn.abort()


def test_the_compiled_twin_calls_lmdb_directly():
    """With the py-lmdb release whose objects lmdb_direct.pxi knows (3.0.0),
    fetchfmt_c reads by LMDB's own cursor calls; another release (or
    MAILACCESS_LMDB_DIRECT=0) takes py-lmdb's get: slower, not wrong."""
    import lmdb
    if lmdb.__version__ != "3.0.0":
        pytest.skip("py-lmdb 3.0.0 is not there")
    if os.environ.get("MAILACCESS_LMDB_DIRECT") == "0":
        pytest.skip("MAILACCESS_LMDB_DIRECT=0 turns it off")
    assert C.lmdb_direct()


@pytest.mark.parametrize("direct,ahead", [(True, True), (True, False), (False, False)])
def test_the_views_transaction_is_read(tmp_path, direct, ahead):
    """The answer is the view's snapshot: flags changed and an email
    destroyed after the view opened are not seen through its Readers (the
    direct cursor is one of the view's own transaction); a new view sees
    them."""
    st_ = Store(str(tmp_path / "store"))
    st_.start()
    try:
        acc = st_.write_sync(ops.create_account, "a", "h")
        with st_.view() as v:
            ib = v.mailbox_by_role(acc, "inbox").id

        def load(tx):
            for p in PREPARED[:4]:
                ops.append(tx, acc, [ib], p, keywords=["$seen"])
        st_.write_sync(load)
        items = ["UID", "FLAGS", "ENVELOPE", ITEMS[10], ITEMS[13]]

        def answer(v, mod):
            pairs = sorted(v.uids(acc, ib))
            flags = functools.partial(flags_list, spell=v.keyword_spellings(acc))
            return mod.fetch_upto(v.email_reader(acc), v.index_reader(acc),
                                  [u for u, _ in pairs], 0, [u for u, _ in pairs],
                                  [e for _, e in pairs], items, flags, False, True,
                                  v.blob_reader(acc), 1 << 20)

        C.lmdb_direct(direct)
        C.look_ahead(ahead)
        try:
            with st_.view() as v:
                before = answer(v, PY)
                eids = [e for _, e in sorted(v.uids(acc, ib))]
                st_.write_sync(ops.set_keywords, acc, eids[:2], add=["$flagged"])
                st_.write_sync(ops.destroy_emails, acc, eids[2:3])
                assert answer(v, C) == before
            with st_.view() as v:
                after = answer(v, C)
                assert after == answer(v, PY) != before
                assert b"\\Flagged" in after[0] and len(after[1]) == 3
        finally:
            C.lmdb_direct(True)
            C.look_ahead(True)
    finally:
        st_.close()


def test_damaged_records_are_not_read_past_their_end(lmdb_env):
    """A record whose counts point past its end (keywords, memberships) and
    an index whose field ends point past its end are read only as far as
    they go, as a Python slice reads them, on the direct path too."""
    env, msg_db, idx_db, blob_db = lmdb_env
    p = PREPARED[1]
    head = EMAIL_LAYOUT.head
    rec = bytearray(_record(1, 1, ["kw"], 0))
    struct.pack_into(">H", rec, EMAIL_LAYOUT.offset("n_members"), 0xFFFF)
    ends = list(INDEX_LAYOUT.head.unpack_from(p.index))
    ends[1:] = [2**32 - 1] * (len(ends) - 1)
    with env.begin(write=True, buffers=True) as txn:
        txn.put(keys.msg(ACC, 1), bytes(rec), db=msg_db)
        txn.put(keys.msg(ACC, 2), _record(2, 0, [], 0)[:head.size], db=msg_db)
        txn.put(keys.blob(ACC, p.blob), INDEX_LAYOUT.head.pack(*ends) + b"abc", db=idx_db)
        readers = (Reader(txn.get, keys.msg_of(ACC), msg_db, keys.msg_shape(ACC)),
                   Reader(txn.get, keys.blob_of(ACC), idx_db, keys.blob_shape(ACC)),
                   Reader(txn.get, keys.blob_of(ACC), blob_db, keys.blob_shape(ACC)))
        try:
            for items in (["UID", "FLAGS"], ["ENVELOPE", "BODY"]):
                args = ([1, 2], [1, 2], [1, 2], items, False, True, None, None)
                assert C.lmdb_direct()
                got = _answers(C, readers, *args)
                assert got == _answers(PY, readers, *args)
                assert type(got) is tuple and 1 in got[1]
        finally:
            txn.abort()
