"""FETCH BODY[HEADER.FIELDS (...)] (and .NOT) of the whole message on the fast
path: both fetchfmt twins give, byte for byte, what the Python loop of
build_fetch gives (RFC 9051 6.4.5 / 7.5.2: the matching field lines in
message order, folded lines kept, names matched without regard to case, then
the blank line; a message without any of them gives just CRLF).

The header end comes from the stored index's meta prefix, not the decoded
JSON (mime.index.meta_header_end): it must agree with the decoded index for
every message, in both stored versions, and an index written some other way
must go to the Python loop instead of being misread."""
import functools
import json
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups, ingest
from mailaccess.mime import index as mindex
from mailaccess.proto.imap import events as ev
from mailaccess.proto.imap.serialize import literal
from mailaccess.server import imap_session
from mailaccess.server.imap_fmt import flags_list
from mailaccess.server.imap_session import _no_nul, build_fetch, fetch_chunks
from mailaccess.store import Store, ops
from mailaccess.store.emails import LoadedEmail, load_email
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "corpus"))
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
import make_corpus  # noqa: E402
from test_mime_index import encode_v1  # noqa: E402

PY = _speedups.load_py("fetchfmt")
HF = PY.HeaderFields
STRESS = ("FROM", "TO", "SUBJECT", "DATE", "MESSAGE-ID")   # bench/bench_stress.py

# headers a scanner could get wrong: folding, bare LF, NUL, a field name with
# blanks before its colon, a line that is no field, a first line that is a
# continuation, no blank line at all, no line break at the end, duplicates in
# mixed case, a lone CR, 8-bit values
EDGE = [
    b"From: a@example.org\r\nTo: b@example.org,\r\n  c@example.org\r\n\tand more\r\n"
    b"Subject: folded\r\n second line\r\nDate: Mon, 3 Nov 2025 00:00:00 +0000\r\n"
    b"Message-ID: <x@y>\r\n\r\nbody\r\n",
    b"from: lower\nTO: upper\nsubject: bare LF\n\nbody\n",
    b"From: nul\x00inside\r\nSubject: also \x00 here\r\n\r\n\x00 body\r\n",
    b"Subject : blank before colon\r\nX-Odd\t: tab\r\nFrom: f\r\n\r\n",
    b"From: f\r\nthis line is no field\r\nTo: after it\r\n\r\n",
    b" continuation first\r\nFrom: f\r\n\r\n",
    b"From: only header, no blank line\r\nTo: t\r\n",
    b"From: no line break at the end",
    b"Subject: one\r\nsubject: two\r\nSUBJECT: three\r\nFrom: x\r\nsUbJeCt: four\r\n\r\n",
    b"From: lone\rcr\r\nSubject: s\r\r\n\r\n",
    b"Subject: caf\xc3\xa9 8-bit\r\nFrom: J\xc3\xb6rg <j@example.org>\r\n\r\nhi\r\n",
    b"X-Nothing-Asked: 1\r\n\r\nno asked field at all\r\n",
    b"",
    b"\r\n\r\nempty header\r\n",
    b"From: [x]\r\nBad Name: spaces inside\r\nTo: after\r\n\r\n",
]
RAWS = list(dict.fromkeys(EDGE + make_corpus.corpus(80)
                          + [p.read_bytes() for p in make_corpus.ugly_files()]))

NAMES = ["From", "TO", "subject", "Date", "Message-ID", "X-Odd", "Subject ", "to", "CC",
         "Content-Type", "MIME-Version", "Received", "Bad", "X-Nothing-Asked", "x-odd",
         "\u212aey", "Ke\u0131", "", "NONE"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st_ = Store(str(tmp_path_factory.mktemp("fetchhdr") / "store"))
    st_.start()
    acc = st_.write_sync(ops.create_account, "a", "h")
    with st_.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    news = [ingest.prepare(raw, 1_700_000_000 + i, 0) for i, raw in enumerate(RAWS)]

    def load(tx):
        for k, n in enumerate(news):
            ops.append(tx, acc, [ib], n,
                       keywords=["$seen"] if k % 2 else ["MyFlag", f"Kw{k % 5}Up", "$Forwarded"])
    st_.write_sync(load)
    yield st_, acc, ib
    st_.close()


def _selected(v, acc, ib):
    m = v.mailbox(acc, ib)
    return SelectedMailbox(acc, ib, m.uidvalidity, False,
                           Snapshot.from_pairs(sorted(v.uids(acc, ib)), m.highest_ms), m.uidnext)


def _body(names, negate=False, peek=True):
    return ev.FetchBody(ev.Section((), "HEADER.FIELDS.NOT" if negate else "HEADER.FIELDS",
                                   tuple(names)), peek=peek)


def _items(names, negate, before=("UID", "FLAGS"), after=()):
    return tuple([ev.FetchItem(n) for n in before] + [_body(names, negate)]
                 + [ev.FetchItem(n) for n in after])


def _simple(v, acc, sel, uids, items, impl, condstore=False, utf8=True):
    names = imap_session._simple_items(items)
    assert names is not None
    flags = (lambda kws: flags_list(kws, v.keyword_spellings(acc))) \
        if "FLAGS" in names else None
    return impl.fetch_simple(v.email_reader(acc), v.index_reader(acc), uids, sel.snap.uids,
                             sel.snap.eids, names, flags, condstore, utf8, v.blob_reader(acc))


# --- the header scan, twin against the Python loop's header_fields -------------------------

_line_end = st.sampled_from([b"\r\n", b"\n", b"\r", b""])
_name = st.one_of(st.sampled_from([n.encode("ascii", "replace") for n in NAMES if n]),
                  st.binary(min_size=0, max_size=6))
_field = st.builds(lambda n, sep, val, e, folds: n + sep + val + e + b"".join(folds),
                   _name, st.sampled_from([b":", b": ", b" :", b"\t: "]),
                   st.binary(max_size=12), _line_end,
                   st.lists(st.builds(lambda w, v, e: w + v + e, st.sampled_from([b" ", b"\t"]),
                                      st.binary(max_size=8), _line_end), max_size=2))
_header = st.one_of(
    st.builds(lambda fs, tail: b"".join(fs) + tail, st.lists(_field, max_size=8),
              st.sampled_from([b"", b"\r\n", b"\n", b"\r\nbody", b" x\r\n", b"no field\r\n"])),
    st.binary(max_size=200))
_names = st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=5)), max_size=6)


def _expected(raw_header: bytes, item) -> bytes:
    """What _fetch_message sends for the item (lit() of _fetch_section's bytes)."""
    data = mindex.header_fields(raw_header, list(item.names), item.negate)
    return item.label + b" " + literal(_no_nul(data))


def _reference(v, acc, sel, uids, items, condstore, reported, utf8):
    """The Python loop's answer with the header end taken from the decoded
    index, as it was before the meta prefix was read."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LoadedEmail, "header_end", lambda em: em.require_index().header_end)
        mp.setattr(mindex, "meta_header_end", lambda *a: None)
        return build_fetch(v, acc, sel, uids, items, condstore, reported, utf8, simple=False)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@settings(max_examples=1500, deadline=None)
@given(raw=_header, names=_names, negate=st.booleans())
def test_header_literal_is_the_python_loops(impl, raw, names, negate):
    item = HF(b"BODY[HEADER.FIELDS (X)]", tuple(names), negate)
    assert impl.header_literal(raw, item) == _expected(raw, item)
    assert impl.header_literal(memoryview(raw), item) == _expected(raw, item)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_header_literal_examples(impl):
    raw = EDGE[0].split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    got = impl.header_literal(raw, HF(b"L", ("subject", "TO", "nothing"), False))
    assert got == b"L " + literal(b"To: b@example.org,\r\n  c@example.org\r\n\tand more\r\n"
                                  b"Subject: folded\r\n second line\r\n\r\n")
    assert impl.header_literal(raw, HF(b"L", ("X-None",), False)) == b"L {2}\r\n\r\n"
    assert impl.header_literal(b"From: a\x00b\r\n\r\n", HF(b"L", ("from",), False)) == \
        b"L {13}\r\nFrom: a\x80b\r\n\r\n"
    # a last field without its line break gets one
    assert impl.header_literal(b"From: f", HF(b"L", ("FROM",), False)) == \
        b"L {11}\r\nFrom: f\r\n\r\n"
    assert impl.header_literal(EDGE[8], HF(b"L", ("subject",), True)) == \
        b"L {11}\r\nFrom: x\r\n\r\n"


# --- the header end from the meta prefix ---------------------------------------------------

_raw_msg = st.one_of(st.sampled_from(RAWS),
                     st.builds(lambda h, b: h + b, _header, st.binary(max_size=50)),
                     st.binary(max_size=300))


@settings(max_examples=400, deadline=None)
@given(raw=_raw_msg)
def test_meta_header_end_agrees_with_the_decoded_index(raw):
    mi = mindex.index_message(raw)
    for data in (mindex.encode_index(mi), encode_v1(mi)):
        assert mindex.meta_header_end(data) == mi.header_end
        assert mindex.meta_header_end(memoryview(data)) == mi.header_end
        assert mindex.index_header_end(data) == mi.header_end


def _reframed(data: bytes, meta: bytes) -> bytes:
    h = mindex._HEAD
    ver, *ends = h.unpack_from(data)
    return h.pack(ver, *ends[:6], ends[5] + len(meta)) + data[h.size:h.size + ends[5]] + meta


def _other_metas(data: bytes) -> list[bytes]:
    """The same index with its meta written in ways the prefix does not
    cover: every one decodes to the same MessageIndex."""
    meta = json.loads(mindex.index_field(data, "meta"))
    moved = dict(meta)
    he = moved.pop("header_end")
    moved["header_end"] = he                            # another key order
    spaced = json.dumps(meta).encode()                  # blanks after ":" and ","
    # a key readers ignore, as long as ',"header_end":', with a number
    other = {"size": meta["size"], "zzzzzzzzzz": 7}
    other.update((k, x) for k, x in meta.items() if k != "size")
    compact = [json.dumps(m, separators=(",", ":")).encode() for m in (moved, other)]
    escaped = compact[0].replace(b'"header_end"', b'"header\\u005fend"')   # the same key
    return compact + [spaced, escaped]


def test_other_meta_spellings_are_decoded_not_guessed():
    mi = mindex.index_message(EDGE[0])
    data = mindex.encode_index(mi)
    for meta in _other_metas(data):
        other = _reframed(data, meta)
        assert mindex.decode_index(other) == mi
        assert mindex.meta_header_end(other) is None
        assert mindex.index_header_end(other) == mi.header_end
    # 19 digits, a sign, a missing comma: not the prefix
    for bad in (b'{"size":1234567890123456789,"header_end":5,', b'{"size":-1,"header_end":5,',
                b'{"size":1,"header_end":5}', b'{"size":1,"header_end":1234567890123456789,'):
        assert mindex.meta_header_end(_reframed(data, bad)) is None, bad


# --- the whole FETCH on a real store, twin against the Python loop -------------------------

_uids = st.lists(st.integers(0, len(RAWS) + 3), max_size=25)


def _reference(v, acc, sel, uids, items, condstore, reported, utf8):
    """The Python loop's answer with the header end taken from the decoded
    index, as it was before the meta prefix was read."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LoadedEmail, "header_end", lambda em: em.require_index().header_end)
        mp.setattr(mindex, "meta_header_end", lambda *a: None)
        return build_fetch(v, acc, sel, uids, items, condstore, reported, utf8, simple=False)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=6), negate=st.booleans(),
       picks=_uids, before=st.sampled_from([(), ("UID",), ("UID", "FLAGS"), ("ENVELOPE",)]),
       after=st.sampled_from([(), ("RFC822.SIZE",), ("MODSEQ", "BODY")]),
       condstore=st.booleans(), utf8=st.booleans())
def test_fetch_matches_python_loop(store, impl, names, negate, picks, before, after,
                                   condstore, utf8):
    _check_fast_path(store, impl, _items(names, negate, before, after), picks, condstore, utf8)


def _check_fast_path(store, impl, items, picks, condstore, utf8):
    """fetch_simple of ITEMS on the messages PICKS (1-based; others: no such
    UID) answers what the Python loop answers, and build_fetch's merge and
    the streamed answer are that answer too."""
    st_, acc, ib = store
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = [sel.uids[p - 1] if 0 < p <= len(sel.uids) else 10_000 + p for p in picks]
        rep_old: dict = {}
        expect = _reference(v, acc, sel, uids, items, condstore, rep_old, utf8)
        out, rep, fallback = _simple(v, acc, sel, uids, items, impl, condstore, utf8)
        # only the raw UTF-8 headers of a client without UTF8=ACCEPT go back
        assert all(not utf8 and v.email(acc, sel.snap.eids[sel.uids.index(u)]).flags & 1
                   for u in fallback)
        answered = [u for u in uids if u in rep_old]
        assert out == [r for r, u in zip(expect, answered) if u not in fallback]
        # and build_fetch's merge, and the streamed answer, are the old answer
        assert build_fetch(v, acc, sel, uids, items, condstore, {}, utf8) == expect
    assert b"".join(fetch_chunks(st_, acc, sel, uids, items, condstore, {}, utf8)) == \
        b"".join(expect)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_the_stress_fetch_is_answered_by_the_fast_path(store, impl):
    st_, acc, ib = store
    items = _items(STRESS, False)
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)
        out, rep, fallback = _simple(v, acc, sel, uids, items, impl)
        assert fallback == [] and sorted(rep) == uids
        assert out == _reference(v, acc, sel, uids, items, False, None, True)
        assert out[0].endswith(
            b"BODY[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)] " + literal(
                b"From: a@example.org\r\nTo: b@example.org,\r\n  c@example.org\r\n"
                b"\tand more\r\nSubject: folded\r\n second line\r\n"
                b"Date: Mon, 3 Nov 2025 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\n") + b")\r\n")


def test_which_requests_take_the_fast_path():
    s = imap_session._simple_items
    assert s(_items(STRESS, False)) is not None
    assert s(_items(STRESS, True)) is not None
    assert s((ev.FetchItem("UID"), _body(["From"], peek=False))) is not None
    # the whole message (BODY[], BODY.PEEK[], RFC822) too (perf5-body)
    whole = (ev.FetchBody(ev.Section((), None)), ev.FetchBody(ev.Section((), None), peek=True),
             ev.FetchItem("RFC822"))
    assert s((ev.FetchItem("UID"),) + whole) == [
        "UID", PY.WholeBody(b"BODY[]"), PY.WholeBody(b"BODY[]"), PY.WholeBody(b"RFC822")]
    # the whole message's header (BODY[HEADER], BODY.PEEK[HEADER], RFC822.HEADER: stop 24)
    head = (ev.FetchBody(ev.Section((), "HEADER")),
            ev.FetchBody(ev.Section((), "HEADER"), peek=True), ev.FetchItem("RFC822.HEADER"))
    assert s((ev.FetchItem("UID"),) + head) == [
        "UID", PY.WholeHeader(b"BODY[HEADER]"), PY.WholeHeader(b"BODY[HEADER]"),
        PY.WholeHeader(b"RFC822.HEADER")]
    # a part's header, a partial range, BINARY, the text: the Python loop
    for it in (ev.FetchBody(ev.Section((1,), "HEADER.FIELDS", ("From",))),
               ev.FetchBody(ev.Section((), "HEADER.FIELDS", ("From",)), partial=(0, 10)),
               ev.FetchBody(ev.Section((1,), "HEADER")),
               ev.FetchBody(ev.Section((), "HEADER"), partial=(0, 10)),
               ev.FetchBody(ev.Section((), "TEXT")),
               ev.FetchBody(ev.Section((), None), partial=(0, 10)),
               ev.FetchBody(ev.Section((), None), binary=True),
               ev.FetchBody(ev.Section((1,), None)), ev.FetchItem("RFC822.TEXT")):
        assert s((ev.FetchItem("UID"), it)) is None


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_an_index_written_otherwise_goes_to_the_python_loop(store, impl):
    """An index whose meta does not start with size and header_end (written
    by other code), and a missing raw message, are handed back, not misread;
    build_fetch then answers them from the decoded index."""
    st_, acc, ib = store
    items = _items(STRESS, False)
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)[:6]
        eids = dict(zip(sel.uids, sel.snap.eids))
        blobs = {v.email(acc, eids[u]).blob: u for u in uids}
        read_index, read_blob = v.index_reader(acc), v.blob_reader(acc)

        def odd_index(h):
            data = read_index(h)
            k = uids.index(blobs[h]) if blobs.get(h) in uids[1:4] else None
            if k is not None:
                return _reframed(bytes(data), _other_metas(bytes(data))[k - 1])
            return data

        def no_blob(h):
            return None if blobs.get(h) == uids[4] else read_blob(h)

        names = imap_session._simple_items(items)
        flags = functools.partial(flags_list, spell=v.keyword_spellings(acc))
        out, rep, fallback = impl.fetch_simple(v.email_reader(acc), odd_index, uids,
                                               sel.snap.uids, sel.snap.eids, names, flags,
                                               False, True, no_blob)
        assert fallback == uids[1:5]
        assert sorted(rep) == [u for u in uids if u not in fallback]
        assert out == [r for r, u in zip(_reference(v, acc, sel, uids, items, False, None, True),
                                         uids) if u not in fallback]
        with pytest.raises(ValueError):
            impl.fetch_simple(v.email_reader(acc), read_index, uids, sel.snap.uids,
                              sel.snap.eids, names, flags, False, True)


# --- the whole header: BODY[HEADER], BODY.PEEK[HEADER], RFC822.HEADER (stop 24) -------------

_WHOLE_HEADERS = [
    (ev.FetchBody(ev.Section((), "HEADER"), peek=True),),
    (ev.FetchItem("RFC822.HEADER"),),
    (ev.FetchBody(ev.Section((), "HEADER")), ev.FetchItem("RFC822.HEADER")),
    (ev.FetchBody(ev.Section((), "HEADER"), peek=True), _body(STRESS),
     ev.FetchItem("RFC822.HEADER"), ev.FetchBody(ev.Section((), None), peek=True)),
]


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(_WHOLE_HEADERS) - 1), picks=_uids,
       before=st.sampled_from([(), ("UID",), ("UID", "FLAGS"), ("ENVELOPE",)]),
       after=st.sampled_from([(), ("RFC822.SIZE",), ("MODSEQ", "BODY")]),
       condstore=st.booleans(), utf8=st.booleans())
def test_whole_header_matches_python_loop(store, impl, which, picks, before, after,
                                          condstore, utf8):
    """The whole header on the fast path (a fetchfmt WholeHeader item) is the
    Python loop's answer byte for byte (the header end from the decoded
    index, NUL as 0x80), for the edge headers (none at all, no blank line,
    bare LF, NUL) and the corpus; only downgrades go back."""
    items = tuple(ev.FetchItem(n) for n in before) + _WHOLE_HEADERS[which] + \
        tuple(ev.FetchItem(n) for n in after)
    _check_fast_path(store, impl, items, picks, condstore, utf8)


def test_whole_header_examples():
    """The literal is the header with its blank line, NUL as 0x80; a message
    without a blank line is all header."""
    for impl in [p.values[0] for p in twin_params("fetchfmt")]:
        for raw, head in ((b"From: a\r\nSubject: \x00x\r\n\r\nbody\r\n",
                           b"From: a\r\nSubject: \x80x\r\n\r\n"),
                          (b"From: a\nTo: b\n\nbody\n", b"From: a\nTo: b\n\n"),
                          (b"From: no blank line\r\n", b"From: no blank line\r\n")):
            assert impl.body_literal(raw[:len(head)], PY.WholeHeader(b"RFC822.HEADER")) == \
                b"RFC822.HEADER {%d}\r\n" % len(head) + head


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@pytest.mark.parametrize("budget", [0, 300, 2000, 1 << 16])
def test_whole_header_upto_stops_before_a_header_over_the_budget(store, impl, budget):
    """fetch_upto hands back a message whose whole-header literals (with its
    whole-body ones) hold more than the budget (the Python path sends them
    in pieces), and nothing else; its chunks and the Python loop's answers
    for those join to the whole answer."""
    st_, acc, ib = store
    items = (ev.FetchItem("UID"), ev.FetchBody(ev.Section((), "HEADER"), peek=True),
             ev.FetchItem("RFC822.HEADER"))
    names = imap_session._simple_items(items)
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)
        eids = dict(zip(sel.uids, sel.snap.eids))
        heads = {u: min(load_email(v, acc, eids[u]).header_end(),
                        len(v.blob(acc, v.email(acc, eids[u]).blob))) for u in uids}
        whole = _reference(v, acc, sel, uids, items, False, None, True)
        got, i, fell_at = [], 0, []
        while i < len(uids):
            chunk, rep, stop, fell = impl.fetch_upto(
                v.email_reader(acc), v.index_reader(acc), uids, i, sel.snap.uids,
                sel.snap.eids, names, None, False, True, v.blob_reader(acc), budget)
            got.append(chunk)
            i = stop
            if fell:
                fell_at.append(uids[i])
                got += build_fetch(v, acc, sel, [uids[i]], items, False, {}, True,
                                   simple=False)
                i += 1
        assert b"".join(got) == b"".join(whole)
        assert set(fell_at) == {u for u in uids if 2 * heads[u] > budget}


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_whole_header_of_an_index_written_otherwise_goes_to_the_python_loop(store, impl):
    """Without the meta prefix the header end is not guessed: the message is
    handed back (the Python loop decodes the index)."""
    st_, acc, ib = store
    items = (ev.FetchItem("UID"), ev.FetchItem("RFC822.HEADER"))
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)[:4]
        eids = dict(zip(sel.uids, sel.snap.eids))
        odd = v.email(acc, eids[uids[1]]).blob
        read_index = v.index_reader(acc)

        def odd_index(h):
            data = read_index(h)
            return _reframed(bytes(data), _other_metas(bytes(data))[0]) if h == odd else data

        names = imap_session._simple_items(items)
        out, rep, fallback = impl.fetch_simple(v.email_reader(acc), odd_index, uids,
                                               sel.snap.uids, sel.snap.eids, names, None,
                                               False, True, v.blob_reader(acc))
        assert fallback == [uids[1]]
        assert out == [r for r, u in zip(_reference(v, acc, sel, uids, items, False, None, True),
                                         uids) if u != uids[1]]


# --- the Python loop reads only the header end, not the whole index ------------------------

_TOP = [ev.FetchBody(ev.Section((), t, f)) for t, f in (
    ("HEADER", ()), ("TEXT", ()), ("HEADER.FIELDS", STRESS), ("HEADER.FIELDS", ("x-odd", "Bad")),
    ("HEADER.FIELDS.NOT", ("From", "subject")), ("HEADER.FIELDS", ()))]


def test_top_section_is_fetch_section_from_the_whole_index(store):
    """_top_section (the header end alone) answers what _fetch_section answers
    from the decoded index, for every message and section of the whole message."""
    st_, acc, ib = store
    with st_.view() as v:
        for _u, eid in v.uids(acc, ib):
            em = load_email(v, acc, eid)
            raw = bytes(v.blob(acc, em.blob))
            for it in _TOP:
                assert imap_session._top_section(raw, em.header_end(), it.section) == \
                    imap_session._fetch_section(raw, em.require_index(), it)


def test_python_loop_does_not_decode_the_index_for_the_whole_header(store, monkeypatch):
    st_, acc, ib = store
    items = (ev.FetchItem("UID"), _body(STRESS), ev.FetchBody(ev.Section((), "HEADER")),
             ev.FetchBody(ev.Section((), "TEXT"), peek=True, partial=(2, 30)),
             ev.FetchItem("RFC822.HEADER"), ev.FetchItem("RFC822.TEXT"),
             ev.FetchBody(ev.Section((), "HEADER.FIELDS.NOT", ("From", "x-odd"))))
    calls = []
    real = mindex.decode_index
    monkeypatch.setattr(mindex, "decode_index", lambda d: calls.append(1) or real(d))
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        out = build_fetch(v, acc, sel, list(sel.uids), items, False, None, True)
        assert len(out) == len(sel.uids)
        assert calls == []
        # a part's MIME header needs the parts: the index is decoded then
        build_fetch(v, acc, sel, list(sel.uids)[:1],
                    (ev.FetchBody(ev.Section((1,), "MIME")),), False, None, True)
    assert calls == [1]


def test_loaded_email_header_end(store):
    st_, acc, ib = store
    with st_.view() as v:
        for _u, eid in v.uids(acc, ib):
            em = load_email(v, acc, eid)
            he = em.header_end()
            assert he == load_email(v, acc, eid).require_index().header_end
            assert em.header_end() == he        # after require_index, the same


def test_flag_spellings_read_on_demand_across_slices(store):
    """FLAGS shows each custom keyword as first spelled (View.keyword_spellings),
    read a keyword at a time: in one view, and in a streamed answer whose
    slices each open their own view."""
    st_, acc, ib = store
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        spell = v.keyword_spellings(acc)
        assert spell["kw3up"] == "Kw3Up" and spell["$forwarded"] == "$Forwarded"
        uids = list(sel.uids)
        want = [b"FLAGS " + flags_list(v.keywords(acc, e), spell) for e in sel.snap.eids]
        for simple in (True, False):
            out = build_fetch(v, acc, sel, uids, (ev.FetchItem("FLAGS"),), False, None, True,
                              simple=simple)
            assert [o.split(b" (", 1)[1][:-3] for o in out] == want
        items = (ev.FetchItem("FLAGS"), ev.FetchBody(ev.Section((), "TEXT"), peek=True))
        expect = b"".join(build_fetch(v, acc, sel, uids, items, False, None, True))
    assert b"Kw3Up" in expect and b"kw3up" not in expect
    assert b"".join(fetch_chunks(st_, acc, sel, uids, items, False, None, True,
                                 budget=64)) == expect
