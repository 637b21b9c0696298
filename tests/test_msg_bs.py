"""The ``msg.bs`` table (store format 5): each email's BODYSTRUCTURE wire
bytes by email id, exactly its index's bodystructure field, so that FETCH
BODYSTRUCTURE reads small rows in mailbox order instead of each message's
index on its own overflow pages.

Held here: every path that creates an email writes the row (append, COPY),
every path that destroys one removes it (EXPUNGE one and many, JMAP destroy,
delete_account), reindex rewrites it (and writes it for mail stored before
format 5), a backup carries it, ``mailaccess check`` reports a row that
differs from its index or has no email; and FETCH answers byte for byte the
same with the rows, without them (a format-4 store's mail: the index
answers) and with some of them, in both twins and on each path of the
compiled one (look-ahead, direct, py-lmdb's get, a plain callable)."""
import functools

import pytest

from mailaccess import _speedups, ingest
from mailaccess.check import check_store
from mailaccess.mime.index import index_field
from mailaccess.proto.imap import events as ev
from mailaccess.server import imap_session
from mailaccess.server.imap_fmt import flags_list
from mailaccess.store import Store, keys, ops
from mailaccess.store.backup import backup_store
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

from email_rows import drop_table_rows, load_inbox, rows_after_delete_account, table_rows

PY = _speedups.load_py("fetchfmt")
C = _speedups.load_c("fetchfmt")
TWINS = [PY] + ([C] if C is not None else [])

HEADER = (b"From: A <a@example.org>\r\nTo: b@example.org\r\nSubject: s %d\r\n"
          b"Message-ID: <bs%d@example.org>\r\nDate: Mon, 3 Nov 2025 00:00:00 +0000\r\n")
RAWS = [
    HEADER % (1, 1) + b"\r\nsmall\r\n",
    HEADER % (2, 2) + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/x"
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b--\r\n",
    HEADER % (3, 3) + b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; "
    b"boundary=q\r\n\r\n--q\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain\r\n"
    b"--q\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--q--\r\n" + b"x" * 9000,
    b"Subject: no blank line\r\nX-Long: " + b"y" * 5000,
]
ITEM_SETS = [["BODYSTRUCTURE"], ["UID", "FLAGS", "BODYSTRUCTURE"],
             ["ENVELOPE", "BODYSTRUCTURE"], ["BODYSTRUCTURE", "BODY"],
             ["BODYSTRUCTURE", "RFC822.SIZE", "BODY.PEEK[HEADER]"]]


def _prepared(k: int):
    return ingest.prepare(RAWS[k % len(RAWS)] + b"\r\n%d\r\n" % k, 1_700_000_000 + 60 * k)


@pytest.fixture
def store(tmp_path):
    st_ = Store(str(tmp_path / "store"))
    st_.start()
    yield st_
    st_.close()


def _setup(st_, n=8):
    return load_inbox(st_, n, lambda k: (_prepared(k), ["$seen"] if k % 2 else []))


def _rows(st_, acc) -> dict[int, bytes]:
    return table_rows(st_, acc, "msg.bs")


def _expected(st_, acc) -> dict[int, bytes]:
    """Each email's index's BODYSTRUCTURE field."""
    with st_.view() as v:
        return {rec.id: index_field(v.blob_index(acc, rec.blob), "bodystructure")
                for rec in v.emails(acc)}


def _items(names):
    out = []
    for n in names:
        if n == "BODY.PEEK[HEADER]":
            out.append(ev.FetchBody(ev.Section((), "HEADER", ()), peek=True))
        else:
            out.append(ev.FetchItem(n))
    return tuple(out)


def _answer(st_, acc, mbx, names, mod, budget=1 << 20) -> bytes:
    """The FETCH 1:* answer of MBX through the session's chunked path with
    fetchfmt twin MOD."""
    saved = imap_session._fetchfmt
    imap_session._fetchfmt = mod
    try:
        with st_.view() as v:
            m = v.mailbox(acc, mbx)
            sel = SelectedMailbox(acc, mbx, m.uidvalidity, True,
                                  Snapshot.from_pairs(v.uids(acc, mbx), m.highest_ms), m.uidnext)
        return b"".join(imap_session.fetch_chunks(st_, acc, sel, list(sel.uids), _items(names),
                                                  False, {}, budget=budget))
    finally:
        imap_session._fetchfmt = saved


def _drop_rows(st_, acc, eids=None):
    drop_table_rows(st_, acc, "msg.bs", eids)


# --- the rows follow the emails ----------------------------------------------------------------

def test_append_writes_each_emails_row(store):
    acc, _ib = _setup(store)
    assert _rows(store, acc) == _expected(store, acc)
    assert len(_rows(store, acc)) == 8
    assert check_store(store) == []


def test_copy_keeps_or_writes_the_rows_and_a_copy_of_rowless_mail_has_none(store):
    acc, ib = _setup(store, 4)
    dst = store.write_sync(ops.create_mailbox, acc, 0, "Dst")
    eids = sorted(_rows(store, acc))
    store.write_sync(ops.copy, acc, eids, dst)    # the same emails, in one more mailbox
    assert _rows(store, acc) == _expected(store, acc)
    assert len(_rows(store, acc)) == 4
    _drop_rows(store, acc, eids[:1])          # mail stored before format 5
    store.write_sync(ops.copy, acc, eids, ib)     # IMAP COPY into INBOX again: new emails
    rows, want = _rows(store, acc), _expected(store, acc)
    assert len(want) == 8
    new = sorted(set(want) - set(eids))
    assert new[0] not in rows                  # the copy of the row-less one
    assert {e: rows[e] for e in new[1:]} == {e: want[e] for e in new[1:]}
    assert check_store(store) == []


@pytest.mark.parametrize("how", ["expunge", "destroy", "delete_mailbox"])
def test_destroying_emails_removes_their_rows(store, how):
    acc, ib = _setup(store, ops.EXPUNGE_BULK + 8)
    with store.view() as v:
        pairs = sorted(v.uids(acc, ib))
    n = ops.EXPUNGE_BULK + 2
    if how == "expunge":        # a bulk EXPUNGE (_destroy_many) and a single one
        store.write_sync(ops.expunge, acc, ib, [u for u, _ in pairs[:n]])
        store.write_sync(ops.expunge, acc, ib, [pairs[n][0]])
        left = {e for _, e in pairs[n + 1:]}
    elif how == "destroy":      # JMAP Email/set destroy
        store.write_sync(ops.destroy_emails, acc, [e for _, e in pairs[:3]])
        left = {e for _, e in pairs[3:]}
    else:                       # MOVE keeps the emails (and rows); the box goes with them
        box = store.write_sync(ops.create_mailbox, acc, 0, "Box")
        before = _rows(store, acc)
        store.write_sync(ops.move, acc, ib, [u for u, _ in pairs], box)
        assert _rows(store, acc) == before
        store.write_sync(ops.delete_mailbox, acc, box)
        left = set()
    assert set(_rows(store, acc)) == left
    assert check_store(store) == []


def test_delete_account_removes_its_rows_only(store):
    acc, _ib = _setup(store, 3)
    mine, others = rows_after_delete_account(store, acc, "msg.bs", _prepared(1))
    assert mine == {} and len(others) == 1


def test_reindex_rewrites_rows_and_writes_them_for_older_mail(store):
    acc, _ib = _setup(store, 4)
    eids = sorted(_rows(store, acc))
    _drop_rows(store, acc, eids[:2])
    bad = store.write_sync(lambda tx: tx.put("msg.bs", keys.msg(acc, eids[2]), b"(stale)"))
    del bad
    assert any("msg.bs differs" in p for p in check_store(store))
    with store.view() as v:
        entries = [(rec.blob, bytes(v.blob_index(acc, rec.blob))) for rec in v.emails(acc)]
    for h, idx in entries:      # the index unchanged: only the rows are written
        assert store.write_sync(ops.replace_index, acc, h, idx) is False
    assert _rows(store, acc) == _expected(store, acc)
    assert check_store(store) == []


def test_check_reports_an_orphan_row(store):
    acc, _ib = _setup(store, 2)
    store.write_sync(lambda tx: tx.put("msg.bs", keys.msg(acc, 999), b"NIL"))
    assert any("msg.bs 999: orphan" in p for p in check_store(store))


def test_a_backup_carries_the_rows(store, tmp_path):
    acc, _ib = _setup(store, 3)
    path = backup_store(store, tmp_path / "bk")
    import os

    import lmdb
    env = lmdb.open(os.path.dirname(path), readonly=True, lock=False, max_dbs=64)
    try:
        with env.begin() as txn:
            db = env.open_db(b"msg.bs", txn=txn, create=False)
            got = {keys.split_msg(k)[1]: bytes(v) for k, v in txn.cursor(db=db)}
    finally:
        env.close()
    assert got == _rows(store, acc) != {}


# --- FETCH answers the same with and without them ----------------------------------------------

@pytest.mark.parametrize("names", ITEM_SETS, ids=lambda n: " ".join(n))
def test_fetch_answers_the_same_with_all_some_or_no_rows(store, names):
    acc, ib = _setup(store, 12)
    full = _answer(store, acc, ib, names, PY)
    assert b"BODYSTRUCTURE (" in full
    for mod in TWINS:
        assert _answer(store, acc, ib, names, mod) == full
        assert _answer(store, acc, ib, names, mod, budget=300) == full
    _drop_rows(store, acc, sorted(_rows(store, acc))[::3])
    for mod in TWINS:
        assert _answer(store, acc, ib, names, mod) == full
    _drop_rows(store, acc)
    for mod in TWINS:
        assert _answer(store, acc, ib, names, mod) == full


@pytest.mark.parametrize("mod", TWINS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_fetch_bodystructure_reads_the_row(store, mod):
    """BODYSTRUCTURE alone is answered from the row (a different row shows),
    with other index items from the index."""
    acc, ib = _setup(store, 3)
    eid = sorted(_rows(store, acc))[1]
    store.write_sync(lambda tx: tx.put("msg.bs", keys.msg(acc, eid), b"(\"ROW\")"))
    assert _answer(store, acc, ib, ["BODYSTRUCTURE"], mod).count(b'BODYSTRUCTURE ("ROW")') == 1
    assert b'"ROW"' not in _answer(store, acc, ib, ["ENVELOPE", "BODYSTRUCTURE"], mod)


@pytest.mark.skipif(C is None, reason="fetchfmt_c is not built")
@pytest.mark.parametrize("path", ["ahead", "ahead-1", "direct", "pylmdb", "reader"])
def test_each_compiled_path_reads_the_rows_as_the_pure_twin(store, path):
    acc, ib = _setup(store, 40)
    _drop_rows(store, acc, sorted(_rows(store, acc))[5::7])
    with store.view() as v:
        pairs = sorted(v.uids(acc, ib))
        su, se = [u for u, _ in pairs], [e for _, e in pairs]
        uids = su[::-1][:10] + su       # out of order, then in order
        readers = (v.email_reader(acc), v.index_reader(acc), v.bodystructure_reader(acc))
        flags = functools.partial(flags_list, spell=v.keyword_spellings(acc))
        for names in ITEM_SETS[:4]:
            want = PY.fetch_upto(readers[0], readers[1], uids, 0, su, se, names, flags, False,
                                 True, None, 1 << 20, None, readers[2])
            rs = readers
            if path == "reader":
                rs = tuple((lambda x, r=r: r(x)) for r in readers)
            C.lmdb_direct(path != "pylmdb")
            C.look_ahead(path.startswith("ahead"), 1 if path == "ahead-1" else 16)
            try:
                got = C.fetch_upto(rs[0], rs[1], uids, 0, su, se, names, flags, False, True,
                                   None, 1 << 20, None, rs[2])
            finally:
                C.lmdb_direct(True)
                C.look_ahead(True, 16)
            assert got == want
            # and the rows change nothing in the answer
            assert got[0] == PY.fetch_upto(readers[0], readers[1], uids, 0, su, se, names,
                                           flags, False, True, None, 1 << 20)[0]


@pytest.mark.skipif(C is None, reason="fetchfmt_c is not built")
def test_the_look_ahead_depth_is_bounded():
    with pytest.raises(ValueError):
        C.look_ahead(None, 0)
    with pytest.raises(ValueError):
        C.look_ahead(None, 10_000)
    assert C.look_ahead(None, 16)
