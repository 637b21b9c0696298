"""The whole message on the fast path (perf5-body): ``BODY[]`` / ``BODY.PEEK[]``
/ ``RFC822`` as a fetchfmt ``WholeBody`` item, and ``fetch_upto``, the
chunked form ``fetch_chunks`` streams.  Both twins give, byte for byte, what
the Python loop of build_fetch gives (NUL sent as 0x80 in the literal, the
length unchanged; RFC 6858 downgrades left to the Python path), and
``fetch_upto`` stops where its contract says: after the response that fills
the budget, before a message it leaves to the Python path or whose literals
alone are bigger than the budget."""
import functools
import pathlib
import sys

import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups, ingest
from mailaccess.server import imap_session
from mailaccess.server.imap_fmt import flags_list
from mailaccess.server.imap_session import _Spellings, build_fetch, fetch_chunks
from mailaccess.store import Store, ops

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
from test_imap_fetch_stream import _items, _sel  # noqa: E402

PY = _speedups.load_py("fetchfmt")
C = _speedups.load_c("fetchfmt")
needs_c = pytest.mark.skipif(C is None, reason="fetchfmt_c is not built")
TWINS = twin_params("fetchfmt")


def _msg(i: int, body: bytes, subject: bytes = b"") -> bytes:
    return (b"From: s%d@example.org\r\nSubject: " % i + (subject or b"m %d" % i) +
            b"\r\nMessage-ID: <b%d@x>\r\nDate: Mon, 3 Nov 2025 00:00:00 +0000\r\n\r\n" % i
            + body)


# NUL in the header and the body, only NULs, empty body, bare LF, big ones
# (above and below the budgets the tests use), raw UTF-8 headers (downgraded
# for a client without UTF8=ACCEPT)
RAWS = [
    _msg(1, b"small\r\n"),
    _msg(2, b"nul \x00 inside \x00\x00 twice\r\n", subject=b"also \x00 here"),
    _msg(3, b"\x00" * 5000),
    _msg(4, b""),
    b"From: bare@lf\nSubject: lf\n\nbody\n",
    _msg(6, b"x" * 70_000 + b"\r\n"),
    _msg(7, b"y" * 300_000 + b"\x00\r\n"),
    _msg(8, b"utf8\r\n", subject="Gr\u00fc\u00dfe".encode()),
    _msg(9, b"z\r\n" * 3000),
] + [_msg(10 + k, b"bulk %d\r\n" % k * (k * 37 % 400)) for k in range(40)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(str(tmp_path_factory.mktemp("fetchbody") / "store"))
    s.start()
    acc = s.write_sync(ops.create_account, "a", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    news = [ingest.prepare(r, 1_700_000_000 + i, 0) for i, r in enumerate(RAWS)]

    def load(tx):
        for i, n in enumerate(news):
            ops.append(tx, acc, [ib], n, keywords=["$seen", "Custom"][:i % 3])
    s.write_sync(load)
    yield s, acc, ib
    s.close()


REQUESTS = ["(BODY.PEEK[])", "(UID BODY.PEEK[])", "(UID FLAGS BODY.PEEK[] RFC822.SIZE)",
            "(RFC822 UID)", "(BODY.PEEK[] BODY.PEEK[] RFC822)",
            "(BODY.PEEK[] FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])",
            "(BODY.PEEK[] MODSEQ INTERNALDATE EMAILID)"]


def _args(v, acc, sel, names):
    flags = functools.partial(flags_list, spell=_Spellings(v, acc)) if "FLAGS" in names \
        else None
    return (v.email_reader(acc), v.index_reader(acc)), (sel.snap.uids, sel.snap.eids, names,
                                                        flags), v.blob_reader(acc)


def _uid_sets(sel):
    u = list(sel.uids)
    return [u, u[::-1], u[1:9] + [u[1], 999_999, 0], [u[6]] * 3, []]


@pytest.mark.parametrize("impl", TWINS)
@pytest.mark.parametrize("request_", REQUESTS)
@pytest.mark.parametrize("condstore,utf8", [(False, True), (True, False)])
def test_whole_body_matches_python_loop(store, impl, request_, condstore, utf8):
    """fetch_simple with WholeBody items answers what the Python loop
    answers; it hands back exactly the UTF-8-header messages without UTF8."""
    s, acc, ib = store
    items = _items(request_)
    names = imap_session._simple_items(items)
    assert names is not None and any(type(n) is PY.WholeBody for n in names)
    with s.view() as v:
        sel = _sel(v, acc, ib)
        utf8_uids = {u for u, e in v.uids(acc, ib) if v.email(acc, e).flags & 1}
        assert len(utf8_uids) == 1
        readers, rest, read_blob = _args(v, acc, sel, names)
        for uids in _uid_sets(sel):
            rep_old: dict = {}
            expect = build_fetch(v, acc, sel, uids, items, condstore, rep_old, utf8,
                                 simple=False)
            out, rep, fallback = impl.fetch_simple(*readers, uids, *rest, condstore, utf8,
                                                   read_blob)
            assert fallback == ([] if utf8 else [u for u in uids if u in utf8_uids])
            answered = [u for u in uids if u in rep_old]
            assert out == [r for r, u in zip(expect, answered) if u not in fallback]
            assert rep == {u: ms for u, ms in rep_old.items() if u not in fallback}
            assert build_fetch(v, acc, sel, uids, items, condstore, {}, utf8) == expect


def test_nul_is_sent_as_0x80(store):
    """The literal of a message with NUL bytes: same length, each NUL 0x80."""
    s, acc, ib = store
    with s.view() as v:
        sel = _sel(v, acc, ib)
        uid = sel.uids[1]
        names = [PY.WholeBody(b"BODY[]")]
        for impl in [p.values[0] for p in TWINS]:
            out, _, _ = impl.fetch_simple(v.email_reader(acc), v.index_reader(acc), [uid],
                                          sel.snap.uids, sel.snap.eids, names, None, False,
                                          True, v.blob_reader(acc))
            raw = RAWS[1].replace(b"\0", b"\x80")
            assert out == [b"* 2 FETCH (BODY[] {%d}\r\n" % len(RAWS[1]) + raw + b")\r\n"]


def _upto_all(impl, v, acc, sel, uids, items, names, condstore, utf8, budget, recent=None):
    """Every chunk of fetch_upto over UIDS, the messages it stops at
    answered by the Python loop (as fetch_chunks does): (chunks, stops)."""
    readers, rest, read_blob = _args(v, acc, sel, names)
    chunks, stops, i = [], [], 0
    while i < len(uids):
        chunk, rep, stop, fell = impl.fetch_upto(*readers, uids, i, *rest, condstore, utf8,
                                                 read_blob, budget, recent)
        assert i <= stop <= len(uids)
        assert stop > i or fell
        chunks.append(chunk)
        stops.append((stop, fell, len(chunk)))
        i = stop
        if fell:
            chunks.append(b"".join(build_fetch(v, acc, sel, [uids[i]], items, condstore, {},
                                               utf8, simple=False)))
            i += 1
    return chunks, stops


@pytest.mark.parametrize("impl", TWINS)
@settings(max_examples=40, deadline=None)
@given(request_=st.sampled_from(REQUESTS + ["(UID FLAGS)", "(FLAGS ENVELOPE BODYSTRUCTURE)"]),
       budget=st.one_of(st.integers(0, 4000), st.integers(4000, 400_000)),
       pick=st.integers(0, 4), condstore=st.booleans(), utf8=st.booleans())
def test_upto_is_the_answer_in_chunks(store, impl, request_, budget, pick, condstore, utf8):
    """fetch_upto's chunks, with the messages it stops at answered by the
    Python loop, join to exactly the whole answer; a chunk ends at the
    first response that fills the budget; it stops before a body bigger
    than the budget and before a downgrade."""
    s, acc, ib = store
    items = _items(request_)
    names = imap_session._simple_items(items)
    n_whole = sum(type(n) is PY.WholeBody for n in names)
    with s.view() as v:
        sel = _sel(v, acc, ib)
        uids = _uid_sets(sel)[pick]
        whole = build_fetch(v, acc, sel, uids, items, condstore, {}, utf8, simple=False)
        chunks, stops = _upto_all(impl, v, acc, sel, uids, items, names, condstore, utf8,
                                  budget)
        assert b"".join(chunks) == b"".join(whole)
        sizes = {u: len(RAWS[k]) for k, u in enumerate(sel.uids)}
        utf8_uid = sel.uids[7]
        biggest = max(map(len, whole), default=0)
        for stop, fell, size in stops:
            if fell:
                u = uids[stop]
                assert (not utf8 and u == utf8_uid) or n_whole * sizes[u] > budget
            # no response after the one that filled the budget
            assert size <= max(budget - 1, 0) + biggest
            if not fell and stop < len(uids):
                assert size >= budget


@needs_c
@settings(max_examples=60, deadline=None)
@given(request_=st.sampled_from(REQUESTS), budget=st.integers(0, 400_000),
       start=st.integers(0, 60), pick=st.integers(0, 4), condstore=st.booleans(),
       utf8=st.booleans(), recent=st.booleans())
def test_upto_twins_agree(store, request_, budget, start, pick, condstore, utf8, recent):
    s, acc, ib = store
    names = imap_session._simple_items(_items(request_))
    with s.view() as v:
        sel = _sel(v, acc, ib)
        uids = _uid_sets(sel)[pick]
        readers, rest, read_blob = _args(v, acc, sel, names)
        shown = set(sel.uids[::3]) if recent else None
        got = [m.fetch_upto(*readers, uids, start, *rest, condstore, utf8, read_blob, budget,
                            shown)
               for m in (PY, C)]
        assert got[0] == got[1]


@pytest.mark.parametrize("impl", TWINS)
def test_upto_stops_before_a_big_body(store, impl):
    s, acc, ib = store
    names = [PY.WholeBody(b"BODY[]")]
    with s.view() as v:
        sel = _sel(v, acc, ib)
        uids = list(sel.uids)
        readers, rest, read_blob = _args(v, acc, sel, names)
        # messages 6 (70 KB) and 7 (300 KB): a 64 KB budget stops at 6
        chunk, rep, stop, fell = impl.fetch_upto(*readers, uids, 0, *rest, False, True,
                                                 read_blob, 1 << 16)
        assert (stop, fell) == (5, True) and sorted(rep) == uids[:5]
        # two literals of one message count together
        chunk, rep, stop, fell = impl.fetch_upto(*readers, uids, 8, *rest[:2],
                                                 names * 2, None, False, True, read_blob,
                                                 2 * len(RAWS[8]) - 1)
        assert (stop, fell, chunk, rep) == (8, True, b"", {})
        # a budget of 0: one response per chunk
        chunk, rep, stop, fell = impl.fetch_upto(*readers, uids, 0, *rest, False, True,
                                                 read_blob, 0)
        assert (stop, fell) == (0, True)
        chunk, rep, stop, fell = impl.fetch_upto(*readers, uids, 2, *rest[:2], ["UID"],
                                                 None, False, True, read_blob, 0)
        assert (stop, fell, list(rep)) == (3, False, [uids[2]])


@pytest.mark.parametrize("impl", TWINS)
def test_whole_body_needs_read_blob(impl):
    with pytest.raises(ValueError):
        impl.fetch_simple(lambda e: None, lambda h: None, [1], [1], [1],
                          [PY.WholeBody(b"BODY[]")], None, False, True)


@pytest.mark.parametrize("budget", [1, 100, 20_000, 65_536, 1 << 20])
@pytest.mark.parametrize("request_", REQUESTS)
@pytest.mark.parametrize("recent", [False, True])
def test_fetch_chunks_streams_the_same_bytes(store, request_, budget, recent):
    """fetch_chunks (now on fetch_upto for these) joins to build_fetch's
    answer, \\Recent shown or not, and no chunk holds much more than the
    budget plus one message."""
    s, acc, ib = store
    items = _items(request_)
    with s.view() as v:
        sel = _recent_sel(v, acc, ib) if recent else _sel(v, acc, ib)
        uids = list(sel.uids)
        whole = build_fetch(v, acc, sel, uids, items, False, {}, True, simple=False)
    chunks = list(fetch_chunks(s, acc, sel, uids, items, False, {}, True, budget=budget))
    assert b"".join(chunks) == b"".join(whole)
    small = max(len(w) for w in whole if len(w) < 20_000)
    assert all(len(c) <= 2 * max(budget, 1) + 3 * small for c in chunks)


def _recent_sel(v, acc, ib):
    """The selection with every other message \\Recent in this session."""
    sel = _sel(v, acc, ib)
    sel.show_recent = True
    for u in list(sel.uids)[::2]:
        sel.add_recent(u, u + 1)
    return sel


@pytest.mark.parametrize("impl", TWINS)
@pytest.mark.parametrize("request_", ["(UID FLAGS)", "(FLAGS ENVELOPE BODYSTRUCTURE)",
                                      "(FLAGS BODY.PEEK[] MODSEQ)"])
@pytest.mark.parametrize("budget", [0, 3000, 1 << 20])
def test_upto_shows_recent(store, impl, request_, budget):
    """fetch_upto with RECENT: FLAGS of those UIDs show \\Recent, as the
    Python loop shows it for a session's recent messages."""
    s, acc, ib = store
    items = _items(request_)
    names = imap_session._simple_items(items)
    with s.view() as v:
        sel = _recent_sel(v, acc, ib)
        recent = set(sel.recent_uids())
        for condstore in (False, True):
            for uids in _uid_sets(sel):
                whole = build_fetch(v, acc, sel, uids, items, condstore, {}, True,
                                    simple=False)
                got, _stops = _upto_all(impl, v, acc, sel, uids, items, names, condstore, True,
                                        budget, recent)
                assert b"".join(got) == b"".join(whole)
                assert uids == [] or b"\\Recent" in b"".join(got)


@pytest.mark.parametrize("flags", [b"FLAGS ()", b"FLAGS (\\Seen)", b"FLAGS (\\Seen Custom)"])
def test_with_recent(flags):
    want = flags[:-1] + (b" \\Recent)" if flags != b"FLAGS ()" else b"\\Recent)")
    assert PY.with_recent(flags) == want
