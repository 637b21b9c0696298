"""The ``msg.hdr`` table (store format 6): each email's From / To / Cc / Bcc /
Subject search lines by email id (mime/index.py ``search_row``), so that
SEARCH FROM/TO/CC/BCC/SUBJECT (and JMAP's from/to/cc/bcc/subject filters)
read a few hundred bytes per email instead of the ~19 KB message index.

Held here: the two ``search`` twins read the rows alike on every path of the
compiled one; over varied headers (comments, quoting, spaces in addresses,
encoded words, repeated fields, groups) the rows give exactly the hits the
indexes gave (hypothesis, both twins); an email without a row (a format-5
store's mail, a header too big for a row) is searched in its index; the rows
follow the emails (append, COPY, expunge, destroy, delete_account), ``check``
reports a stale or orphan row, and ``reindex --outdated-only`` writes the
missing ones."""
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaccess import _speedups, ingest
from mailaccess.check import check_store
from mailaccess.mime import index as mindex
from mailaccess.query import engine
from mailaccess.query import model as q
from mailaccess.store import keys, ops

from email_rows import (drop_table_rows, load_inbox, rows_after_delete_account, started_store,
                        table_rows)

PY = _speedups.load_py("search")
C = _speedups.load_c("search")
TWINS = [PY] + ([C] if C is not None else [])
_twin_ids = lambda m: m.__name__.rsplit(".", 1)[1]  # noqa: E731

HEADER = (b"From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <h%d@example.org>\r\n"
          b"Date: Mon, 3 Nov 2025 00:00:00 +0000\r\n")
FROMS = [b"Bob <bob@example.org>", b"user (the boss) @ Domain.ORG",
         b'"Doe, John" <john.doe@example.com>', b"=?utf-8?q?=C3=89ric?= <eric@x.org>",
         b"carol@x.org", b"undisclosed-recipients:;"]


def _raw(k: int) -> bytes:
    return (HEADER % (FROMS[k % len(FROMS)], b"alice@localhost, Bob <b@y.org>",
                      b"report %d" % k, k) + b"\r\nbody %d\r\n" % k)


@pytest.fixture
def store(tmp_path):
    with started_store(tmp_path / "store") as st_:
        yield st_


def _setup(st_, n=8, raw=_raw):
    return load_inbox(st_, n, lambda k: (ingest.prepare(raw(k), 1_700_000_000 + k), []))


def _rows(st_, acc) -> dict[int, bytes]:
    return table_rows(st_, acc, "msg.hdr")


def _expected(st_, acc) -> dict[int, bytes]:
    with st_.view() as v:
        out = {rec.id: mindex.search_row(v.blob_index(acc, rec.blob)) for rec in v.emails(acc)}
    return {e: r for e, r in out.items() if r is not None}


def _drop_rows(st_, acc, eids=None):
    drop_table_rows(st_, acc, "msg.hdr", eids)


def _search(st_, acc, ib, query, impl, rows=True):
    """UIDs of INBOX matching QUERY; ROWS False: as without the table (the
    indexes alone, what the engine did before format 6)."""
    with st_.view() as v:
        pairs = sorted(v.uids(acc, ib))
        saved = engine._row_reader
        if not rows:
            engine._row_reader = lambda view, acc: None
        try:
            return engine.search(v, acc, pairs, query, mailbox=ib, impl=impl)
        finally:
            engine._row_reader = saved


# --- the row itself --------------------------------------------------------------------

def test_the_row_holds_the_lines_and_the_parsed_addresses_of_unusual_fields():
    idx = ingest.prepare(_raw(1)).index       # From: user (the boss) @ Domain.ORG
    row = mindex.search_row(idx)
    assert row[:1] == mindex.SEARCH_ROW_VERSION
    lines = row[1:].split(b"\n")
    assert b"subject: report 1" in lines
    assert b"to: alice@localhost, bob <b@y.org>" in lines
    assert lines[0].startswith(b"from: user (the boss) @")
    assert b"from:the boss <user@domain.org>" in lines or any(
        ln.startswith(b"from:") and b"user@domain.org" in ln for ln in lines[1:])
    assert b"message-id: <h1@example.org>" in lines
    assert not any(ln.startswith(b"date:") for ln in lines)
    # a plain From gives no parsed-address line
    assert mindex.search_row(ingest.prepare(_raw(0)).index).count(b"from:") == 1
    assert mindex.search_row(b"") is None and mindex.search_row(b"\x09xx") is None


def test_a_header_too_big_for_a_row_has_none_and_is_found_in_its_index(store):
    big = lambda k: HEADER % (b"big@example.org", b", ".join(  # noqa: E731
        b"r%d@example.org" % i for i in range(200)), b"big %d" % k, k) + b"\r\nx\r\n"
    acc, ib = _setup(store, 2, big)
    assert _rows(store, acc) == {}
    assert ingest.prepare(big(0)).search is None
    for impl in TWINS:
        assert _search(store, acc, ib, q.To("r199@example"), impl) == [1, 2]
        assert _search(store, acc, ib, q.Subject("big 1"), impl) == [2]


# --- the twins read the rows alike ----------------------------------------------------------

row_line = st.tuples(st.sampled_from([b"from", b"to", b"subject", b"x"]),
                     st.text("ab <@>é", max_size=8).map(lambda s: s.encode("utf-8")))
row = st.one_of(st.none(), st.just(b""), st.just(b"\x02from: ab"),
                st.lists(row_line, max_size=4).map(
                    lambda ls: b"\x01" + b"\n".join(n + b":" + v for n, v in ls)))


@pytest.mark.skipif(C is None, reason="search_c is not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(row, max_size=10), st.sampled_from([b"from", b"to", b"subject"]),
       st.text("ab <@>é", max_size=3).map(lambda s: s.encode("utf-8")), st.data())
def test_match_header_rows_twins_agree(rows, name, needle, data):
    eids = list(range(len(rows)))
    pos = sorted(data.draw(st.sets(st.sampled_from(eids))) if eids else [])
    read = lambda e: rows[e]  # noqa: E731
    want = PY.match_header_rows(read, eids, pos, name, needle)
    assert C.match_header_rows(read, eids, pos, name, needle) == want
    found, missing = want
    assert sorted(found + missing) == [p for p in pos if p in set(found + missing)]
    assert set(missing) == {p for p in pos if not rows[p] or rows[p][0] != 1}


@pytest.mark.skipif(C is None, reason="search_c is not built")
@pytest.mark.parametrize("path", ["direct", "pylmdb", "reader"])
def test_each_compiled_path_reads_the_rows_as_the_pure_twin(store, path):
    acc, _ib = _setup(store, 24)
    eids = sorted(_rows(store, acc))
    _drop_rows(store, acc, eids[3::5])
    pos = list(range(len(eids)))[::-1][:6] + list(range(len(eids)))
    with store.view() as v:
        rr = v.search_row_reader(acc)
        for name, needle in [(b"from", b"bob"), (b"from", b"user@domain"), (b"to", b""),
                             (b"subject", b"report 1")]:
            want = PY.match_header_rows(rr, eids, pos, name, needle)
            r = (lambda e: rr(e)) if path == "reader" else rr
            C.lmdb_direct(path != "pylmdb")
            try:
                assert C.match_header_rows(r, eids, pos, name, needle) == want
            finally:
                C.lmdb_direct(True)


# --- the rows answer what the indexes answered --------------------------------------------------

local = st.sampled_from(["bob", "user", "john.doe", "Eric", "x"])
domain = st.sampled_from(["example.org", "Domain.ORG", "x.org"])
display = st.sampled_from(["", "Bob", '"Doe, John"', "=?utf-8?q?=C3=89ric?=", "Carol Smith",
                           '"a \\" b"'])


@st.composite
def address(draw):
    lp, dom = draw(local), draw(domain)
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return f"{lp}@{dom}"
    if kind == 1:
        return f"{draw(display)} <{lp}@{dom}>".strip()
    if kind == 2:
        return f"{lp} (comment {draw(local)}) @ {dom}"
    if kind == 3:
        return f'"{lp} q"@{dom}'
    if kind == 4:
        return f"{lp} @ {dom}"
    return "group: " + f"{lp}@{dom};"


field_value = st.lists(address(), min_size=1, max_size=3).map(", ".join)
subject = st.sampled_from(["Report", "=?utf-8?q?r=C3=A9sum=C3=A9?= of (x)", "Re: a  \t b",
                           '"quoted" @ subject', "Ünïcode ß"])


@st.composite
def message(draw):
    lines = []
    for name in ("From", "To", "Cc", "Bcc"):
        for _ in range(draw(st.integers(0, 2))):       # absent, once, or twice
            lines.append(f"{name}: {draw(field_value)}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"Subject: {draw(subject)}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append(f"Message-ID: <{draw(local)}.{draw(st.integers(0, 3))}@{draw(domain)}>")
    lines.append("X-Other: bob@example.org")
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode("utf-8")


NEEDLES = ["bob", "BOB@EXAMPLE", "user@domain.org", "user (comment", "comment", "doe, john",
           "john.doe@example.org", "éric", "eric", "q@x.org", '"x q"@', "group", "smith <",
           "résumé", "re: a b", "ss", "ß", "@", " ", "", "<", "x.org>", "example.org, ",
           "<bob.1@", "eric.2@domain.org>"]
KINDS = [q.From, q.To, q.Cc, q.Bcc, q.Subject, lambda t: q.Header("FROM", t),
         lambda t: q.Header("Message-ID", t)]


_BOXES = itertools.count()      # one new mailbox per example


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with started_store(tmp_path_factory.mktemp("hdr") / "store") as st_:
        yield st_, st_.write_sync(ops.create_account, "a", "h")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(message(), min_size=1, max_size=6))
def test_the_rows_give_the_hits_the_indexes_gave(shared, msgs):
    st_, acc = shared
    mbx = st_.write_sync(ops.create_mailbox, acc, 0, f"m{next(_BOXES)}")
    st_.write_sync(lambda tx: [ops.append(tx, acc, [mbx], ingest.prepare(r, 1_700_000_000))
                               for r in msgs])
    with st_.view() as v:
        pairs = sorted(v.uids(acc, mbx))
        rr = v.search_row_reader(acc)
        assert all(rr(e) is not None for _u, e in pairs)
    for kind in KINDS:
        for text in NEEDLES:
            query = kind(text)
            want = _search(st_, acc, mbx, query, PY, rows=False)
            for impl in TWINS:
                assert _search(st_, acc, mbx, query, impl) == want, (kind, text, msgs)
                assert _search(st_, acc, mbx, q.Not(query), impl) == [
                    u for u, _ in pairs if u not in want]


def test_the_unusual_address_is_found_and_a_broken_row_rule_would_miss_it(store):
    acc, ib = _setup(store, 6)
    for impl in TWINS:
        # From: user (the boss) @ Domain.ORG: its text does not hold the address
        assert _search(store, acc, ib, q.From("user@domain.org"), impl) == [2]
        assert _search(store, acc, ib, q.From("user@domain.org"), impl, rows=False) == [2]
        assert _search(store, acc, ib, q.From("john.doe@example"), impl) == [3]
        assert _search(store, acc, ib, q.From("éric"), impl) == [4]
        assert _search(store, acc, ib, q.From("undisclosed"), impl) == [6]


# --- old mail without rows, and the rows being read ----------------------------------------------

@pytest.mark.parametrize("impl", TWINS, ids=_twin_ids)
def test_all_some_or_no_rows_answer_the_same(store, impl):
    acc, ib = _setup(store, 18)
    queries = [q.From("bob"), q.From("user@domain.org"), q.To("b@y.org"), q.Subject("report 1"),
               q.Cc(""), q.Bcc("x"), q.Or([q.From("carol"), q.Subject("report 2")])]
    want = [_search(store, acc, ib, x, impl, rows=False) for x in queries]
    assert [_search(store, acc, ib, x, impl) for x in queries] == want
    _drop_rows(store, acc, sorted(_rows(store, acc))[::3])     # some mail from format 5
    assert [_search(store, acc, ib, x, impl) for x in queries] == want
    _drop_rows(store, acc)
    assert [_search(store, acc, ib, x, impl) for x in queries] == want


@pytest.mark.parametrize("impl", TWINS, ids=_twin_ids)
def test_a_search_reads_the_row_not_the_index(store, impl):
    acc, ib = _setup(store, 3)
    eid = sorted(_rows(store, acc))[1]
    store.write_sync(lambda tx: tx.put("msg.hdr", keys.msg(acc, eid), b"\x01from: planted"))
    assert _search(store, acc, ib, q.From("planted"), impl) == [2]
    assert _search(store, acc, ib, q.Subject("report"), impl) == [1, 3]
    assert _search(store, acc, ib, q.Header("message-id", "h1@"), impl) == []
    # other headers are read from the index
    assert _search(store, acc, ib, q.Header("date", "nov 2025"), impl) == [1, 2, 3]
    # a row of another version is not read: the index answers
    store.write_sync(lambda tx: tx.put("msg.hdr", keys.msg(acc, eid), b"\x07from: planted"))
    assert _search(store, acc, ib, q.From("planted"), impl) == []
    assert _search(store, acc, ib, q.Subject("report"), impl) == [1, 2, 3]
    assert _search(store, acc, ib, q.Header("message-id", "h1@"), impl) == [2]


# --- the rows follow the emails -----------------------------------------------------------------

def test_append_copy_and_destroy_keep_the_rows_with_the_emails(store):
    acc, ib = _setup(store, ops.EXPUNGE_BULK + 8)
    assert _rows(store, acc) == _expected(store, acc)
    assert len(_rows(store, acc)) == ops.EXPUNGE_BULK + 8
    assert check_store(store) == []
    dst = store.write_sync(ops.create_mailbox, acc, 0, "Dst")
    with store.view() as v:
        pairs = sorted(v.uids(acc, ib))
    store.write_sync(ops.copy, acc, [e for _, e in pairs[:3]], dst)   # the same emails
    store.write_sync(ops.copy, acc, [e for _, e in pairs[:3]], ib)    # new emails
    assert _rows(store, acc) == _expected(store, acc)
    assert len(_rows(store, acc)) == ops.EXPUNGE_BULK + 11
    n = ops.EXPUNGE_BULK + 2
    store.write_sync(ops.expunge, acc, ib, [u for u, _ in pairs[:n]])     # _destroy_many
    store.write_sync(ops.expunge, acc, ib, [pairs[n][0]])                 # _destroy
    store.write_sync(ops.destroy_emails, acc, [pairs[n + 1][1]])
    assert _rows(store, acc) == _expected(store, acc)
    assert check_store(store) == []


def test_delete_account_removes_its_rows_only(store):
    acc, _ib = _setup(store, 3)
    mine, others = rows_after_delete_account(store, acc, "msg.hdr", ingest.prepare(_raw(1)))
    assert mine == {} and len(others) == 1


def test_check_reports_a_stale_or_orphan_row(store):
    acc, _ib = _setup(store, 2)
    eid = sorted(_rows(store, acc))[0]
    store.write_sync(lambda tx: tx.put("msg.hdr", keys.msg(acc, eid), b"\x01from: stale"))
    store.write_sync(lambda tx: tx.put("msg.hdr", keys.msg(acc, 999), b"\x01"))
    problems = check_store(store)
    assert any(f"email {eid}: msg.hdr differs" in p for p in problems)
    assert any("msg.hdr 999: orphan" in p for p in problems)


def test_reindex_outdated_only_writes_the_missing_rows(store, tmp_path):
    from mailaccess import reindex
    acc, ib = _setup(store, 6)
    want = _rows(store, acc)
    eids = sorted(want)
    _drop_rows(store, acc, eids[::2])          # mail stored before format 6
    store.write_sync(lambda tx: tx.put("msg.hdr", keys.msg(acc, eids[1]), b"\x01from: stale"))
    reindex.reindex(store, outdated_only=True)
    got = _rows(store, acc)
    assert {e: got[e] for e in eids[::2]} == {e: want[e] for e in eids[::2]}
    with store.view() as v:     # a full reindex rewrites a stale one
        entries = [(rec.blob, bytes(v.blob_index(acc, rec.blob))) for rec in v.emails(acc)]
    for h, idx in entries:
        store.write_sync(ops.replace_index, acc, h, idx)
    assert _rows(store, acc) == want
    assert check_store(store) == []
