"""The store's read side for hot paths and the one email loader, at the store level:

* the layout descriptions (records.EMAIL_LAYOUT, mime.index.INDEX_LAYOUT,
  keys.KeyShape) say exactly where encode_email / encode_index / keys.* put
  each byte;
* View.email_reader / index_reader read what email_raw / blob_index read;
* store.emails.load_email reads each part at most once, only when asked,
  and decodes the index leniently (or strictly with require_index).
"""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from mailaccess import ingest
from mailaccess.mime import index as mindex
from mailaccess.store import Store, keys, ops, records
from mailaccess.store.emails import decode_index, load_email, load_record
from mailaccess.store.records import EMAIL_LAYOUT, EmailRecord, Membership

U32 = st.integers(0, 2**32 - 1)

records_st = st.builds(
    EmailRecord,
    id=U32, blob=st.binary(min_size=32, max_size=32),
    received_at=st.integers(-2**63, 2**63 - 1), tz=st.integers(-2**15, 2**15 - 1),
    size=U32, thread=U32, last_ms=st.integers(0, 2**64 - 1),
    keywords=st.lists(st.text(st.characters(blacklist_characters="\0",
                                            blacklist_categories=("Cs",)), min_size=1),
                      max_size=8),
    members=st.lists(st.builds(Membership, U32, U32, st.integers(-2**63, 2**63 - 1)),
                     max_size=5),
    flags=st.integers(0, 255))

_FIELD_VALUE = {
    "version": lambda r: EMAIL_LAYOUT.version, "blob": lambda r: r.blob,
    "received_at": lambda r: r.received_at, "tz": lambda r: r.tz, "size": lambda r: r.size,
    "thread": lambda r: r.thread, "last_ms": lambda r: r.last_ms, "flags": lambda r: r.flags,
    "n_keywords": lambda r: len(r.keywords), "n_members": lambda r: len(r.members),
}


@settings(max_examples=300, deadline=None)
@given(records_st)
def test_email_layout_describes_encode_email(r):
    data = records.encode_email(r)
    L = EMAIL_LAYOUT
    assert set(L.fields) == set(_FIELD_VALUE)
    head = L.head.unpack_from(data)
    for name in L.fields:
        want = _FIELD_VALUE[name](r)
        assert struct.unpack_from(L.head.format[0] + L.code(name), data, L.offset(name))[0] == want
        assert head[L.index(name)] == want
        assert L.offset(name) + L.size(name) <= L.head.size
    tail = data[L.head.size + len(r.members) * L.member.size:]
    assert records.decode_keywords(tail) == r.keywords
    assert records.decode_email(r.id, data) == r


@given(U32, U32, st.binary(min_size=32, max_size=32))
def test_key_shapes_build_the_store_keys(acc, eid, h):
    assert keys.msg_shape(acc).key(eid) == keys.msg(acc, eid) == keys.msg_of(acc)(eid)
    assert keys.blob_shape(acc).key(h) == keys.blob(acc, h) == keys.blob_of(acc)(h)


def test_key_parsers_invert_the_builders():
    assert keys.parse_mbox_name(keys.mbox_name(3, 7, "Été")) == (7, "Été")
    assert keys.parse_uid(keys.uid(3, 7, 9)) == (7, 9)
    assert keys.parse_mbx_ms(keys.mbx_ms(3, 7, 2**40, 9)) == (7, 2**40, 9)
    assert keys.parse_blob(keys.blob(3, b"h" * 32)) == b"h" * 32
    assert keys.parse_blob_ref(keys.blob_ref(3, b"h" * 32, 11)) == (b"h" * 32, 11)
    assert keys.parse_thr_mem(keys.thr_mem(3, 5, 11)) == (5, 11)
    assert keys.account_of(keys.ctr(3, keys.CTR_MODSEQ)) == 3


RAWS = [b"From: a@x\r\nSubject: one\r\nMessage-ID: <1@x>\r\n\r\nbody one\r\n",
        b"From: b@x\r\nSubject: two\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n\r\ntwo\r\n",
        b"no header at all"]


def test_index_layout_describes_encode_index():
    X = mindex.INDEX_LAYOUT
    for raw in RAWS:
        data = mindex.encode_index(mindex.index_message(raw))
        assert data[0] == X.version
        ends = X.head.unpack_from(data)[1:]
        start = 0
        for name, end in zip(X.fields, ends):
            assert data[X.head.size + start:X.head.size + end] == mindex.index_field(data, name)
            start = end


@pytest.fixture
def loaded(tmp_path):
    s = Store(str(tmp_path / "data"))
    s.start()
    acc = s.write_sync(ops.create_account, "alice", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    eids = [s.write_sync(ops.append, acc, [ib], ingest.prepare(r, 1_700_000_000), ["$seen"]).email
            for r in RAWS]
    yield s, acc, ib, eids
    s.close()


def test_readers_read_what_the_view_reads(loaded):
    s, acc, _ib, eids = loaded
    with s.view() as v:
        em, ix = v.email_reader(acc), v.index_reader(acc)
        for eid in eids:
            assert bytes(em(eid)) == bytes(v.email_raw(acc, eid))
            h = v.email(acc, eid).blob
            assert bytes(ix(h)) == bytes(v.blob_index(acc, h))
            # the spelled-out form compiled loops use
            assert bytes(em.get(em.shape.key(eid), None, em.db)) == bytes(em(eid))
        assert em(max(eids) + 1) is None
        assert ix(b"\0" * 32) is None
        # account-scoped: another account's reader sees nothing of alice's
        other = v.email_reader(acc + 1)
        assert all(other(e) is None for e in eids)
        assert v.keywords(acc, eids[0]) == ["$seen"] and v.keywords(acc, 10**6) is None


class _Counting:
    """A View that counts the reads the loader makes and can corrupt indexes."""

    def __init__(self, v, corrupt=None):
        self.v = v
        self.corrupt = corrupt
        self.reads = []

    def email_raw(self, acc, eid):
        self.reads.append(("msg", eid))
        return self.v.email_raw(acc, eid)

    def blob_index(self, acc, h):
        self.reads.append(("idx", h))
        data = self.v.blob_index(acc, h)
        return self.corrupt(bytes(data)) if self.corrupt and data is not None else data


def test_load_email_reads_each_part_once_and_only_when_asked(loaded):
    s, acc, ib, eids = loaded
    with s.view() as real:
        v = _Counting(real)
        assert load_email(v, acc, 10**6) is None
        v.reads.clear()
        em = load_email(v, acc, eids[0], members=False)
        assert v.reads == [("msg", eids[0])]
        want = real.email(acc, eids[0])
        assert em.blob == want.blob and em._record is None     # the hash alone: no decode
        assert em.record.keywords == want.keywords and em.record.members == []
        assert load_email(real, acc, eids[0]).record == want    # members by default
        assert v.reads == [("msg", eids[0])]                   # no index read yet
        mi = em.index
        assert mi == mindex.decode_index(real.blob_index(acc, want.blob))
        assert mi.subject == "one"
        assert em.index is mi and em.require_index() is mi
        assert bytes(em.index_data) == bytes(real.blob_index(acc, want.blob))
        assert v.reads == [("msg", eids[0]), ("idx", want.blob)]


@pytest.mark.parametrize("corrupt", [lambda d: b"\x7f" + d[1:], lambda d: d[:3], lambda d: b""],
                         ids=["unknown version", "cut short", "empty"])
def test_index_decoding_is_lenient_unless_required(loaded, corrupt):
    s, acc, _ib, eids = loaded
    with s.view() as real:
        em = load_email(_Counting(real, corrupt), acc, eids[1])
        assert em.index is None
        assert em.record.id == eids[1]          # the record is still there
        with pytest.raises((ValueError, struct.error)):
            em.require_index()
    assert decode_index(None) is None


def test_missing_index(loaded):
    s, acc, _ib, eids = loaded
    with s.view() as real:
        v = _Counting(real)
        v.blob_index = lambda acc_, h: None
        em = load_email(v, acc, eids[2])
        assert em.index_data is None and em.index is None
        with pytest.raises(ValueError):
            em.require_index()


def test_load_record_and_a_held_record(loaded):
    s, acc, _ib, eids = loaded
    with s.view() as real:
        want = real.email(acc, eids[1])
        assert load_record(real, acc, eids[1]) == want
        assert load_record(real, acc, eids[1], False).members == []
        assert load_record(real, acc, 10**6) is None
        v = _Counting(real)
        em = load_email(v, acc, eids[1], record=want)     # not read again
        assert em.record is want and em.index.subject == "two"
        assert v.reads == [("idx", want.blob)]
