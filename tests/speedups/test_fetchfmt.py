"""fetchfmt_py and fetchfmt_c give identical FETCH responses, and both match the
Python loop of build_fetch byte for byte, on a real LMDB store."""
import functools
import itertools
import os
from array import array
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups, ingest
from mailaccess.proto.imap import events as ev
from mailaccess.proto.imap.dates import format_datetime
from mailaccess.server import imap_session
from mailaccess.server.imap_fmt import flags_list
from mailaccess.server.imap_session import build_fetch
from mailaccess.store import Store, ops
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

PY = _speedups.load_py("fetchfmt")
C = _speedups.load_c("fetchfmt")
needs_c = pytest.mark.skipif(C is None, reason="fetchfmt_c is not built")

SYSTEM = ["$seen", "$answered", "$flagged", "$draft", "$deleted"]


def _msg(i: int, body: bytes, subject: str = "", extra: bytes = b"") -> bytes:
    subject = subject or f"message {i}"
    return (b"From: Sender %d <s%d@example.org>\r\nTo: Alice <alice@localhost>\r\n"
            b"Subject: " % (i, i) + subject.encode("utf-8") +
            b"\r\nMessage-ID: <m%d@example.org>\r\nDate: Mon, 3 Nov 2025 00:00:00 +0000\r\n"
            % i + extra + b"\r\n" + body)


def _multipart(i: int) -> bytes:
    return _msg(i, b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
                   b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
                   b"\r\n\r\nAAECAwQ=\r\n--b--\r\n",
                extra=b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")


# (raw, keywords, received_at, tz): custom keywords with their first spelling,
# every system flag, none at all, many; big and small; odd zones and dates;
# raw UTF-8 headers (downgraded for clients without UTF8=ACCEPT)
MESSAGES = [
    (_msg(1, b"small\r\n"), [], 1_700_000_000, 0),
    (_msg(2, b"x" * 300_000 + b"\r\n"), SYSTEM, 1_700_000_001, -420),
    (_multipart(3), ["$Forwarded", "MyFlag", "$seen"], 946_684_799, 330),
    (_msg(4, b"hi\r\n", subject="Gr\u00fc\u00dfe aus K\u00f6ln"), ["$seen"], 0, 60),
    (_msg(5, b"many\r\n"), [f"Kw{k}" for k in range(40)] + SYSTEM, 2_000_000_000, -1439),
    (_msg(6, b"neg\r\n"), ["$flagged", "myflag", "$Junk"], -86_400 * 365 * 60 - 7, 1439),
    (_msg(7, b"lines\r\n" * 2000), ["\u00e9t\u00e9"], 1_234_567_890, 545),
    (_msg(8, b"utf8 again\r\n", subject="\u65e5\u672c\u8a9e"), SYSTEM + ["$Forwarded"],
     1_700_000_100, -30),
    (_msg(9, b""), [], 253_402_300_799 - 3 * 86_400, 0),
] + [(_msg(10 + k, b"bulk %d\r\n" % k), SYSTEM[:k % 4] + (["$Forwarded"] if k % 3 else []),
      1_700_001_000 + 3600 * k, 0) for k in range(30)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st_ = Store(str(tmp_path_factory.mktemp("fetchfmt") / "store"))
    st_.start()
    acc = st_.write_sync(ops.create_account, "a", "h")
    with st_.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    news = [(ingest.prepare(raw, when, tz), kws) for raw, kws, when, tz in MESSAGES]

    def load(tx):
        for n, kws in news:
            ops.append(tx, acc, [ib], n, keywords=kws)
        # a duplicate of the first message (shared blob, own record)
        ops.append(tx, acc, [ib], news[0][0], keywords=["Other"])
    st_.write_sync(load)
    yield st_, acc, ib
    st_.close()


def _selected(v, acc, ib, extra_pairs=()):
    m = v.mailbox(acc, ib)
    pairs = sorted(list(v.uids(acc, ib)) + list(extra_pairs))
    return SelectedMailbox(acc, ib, m.uidvalidity, False, Snapshot.from_pairs(pairs, m.highest_ms),
                           m.uidnext)


ALL = list(PY.ITEMS)
COMBOS = [
    ["UID", "FLAGS", "ENVELOPE", "BODYSTRUCTURE"],
    ["UID", "FLAGS"],
    ["FLAGS", "UID", "MODSEQ"],
    ["UID", "FLAGS", "MODSEQ", "INTERNALDATE", "RFC822.SIZE"],
    ["BODY", "ENVELOPE", "EMAILID", "THREADID", "UID"],
    ALL,
    ALL[::-1],
    ["FLAGS", "FLAGS"],
    ["INTERNALDATE"],
    [],
]


def _flags(v, acc, names):
    if "FLAGS" not in names:
        return None
    return functools.partial(flags_list, spell=v.keyword_spellings(acc))


def _run(mod, v, acc, sel, uids, names, condstore, utf8):
    return mod.fetch_simple(v.email_reader(acc), v.index_reader(acc), uids, sel.snap.uids,
                            sel.snap.eids, names, _flags(v, acc, names), condstore, utf8)


def _uid_sets(sel):
    u = list(sel.uids)
    return [u, u[::-1], u[3:7] + u[:2] + [u[5], 999_999, 0], [u[1], u[1]], [], array("I", u)]


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@pytest.mark.parametrize("names", COMBOS, ids=lambda n: "+".join(n) or "none")
@pytest.mark.parametrize("condstore,utf8", [(False, True), (True, True), (True, False),
                                            (False, False)])
def test_matches_python_loop(store, impl, names, condstore, utf8):
    """Each twin answers exactly what the Python loop answers; messages it
    hands back are exactly the UTF-8-header ones when UTF8 is off."""
    st_, acc, ib = store
    items = tuple(ev.FetchItem(n) for n in names)
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        utf8_uids = {u for u, e in v.uids(acc, ib) if v.email(acc, e).flags & 1}
        assert len(utf8_uids) == 2
        for uids in _uid_sets(sel):
            rep_old: dict = {}
            expect = build_fetch(v, acc, sel, uids, items, condstore, rep_old, utf8,
                                 simple=False)
            out, rep, fallback = _run(impl, v, acc, sel, uids, names, condstore, utf8)
            assert fallback == ([] if utf8 else [u for u in uids if u in utf8_uids])
            handled = [r for r, u in zip(expect, [u for u in uids if u in rep_old])
                       if u not in fallback]
            assert out == handled
            assert rep == {u: ms for u, ms in rep_old.items() if u not in fallback}
            # and build_fetch's own merge gives the old answer back
            rep_new: dict = {}
            assert build_fetch(v, acc, sel, uids, items, condstore, rep_new, utf8) == expect
            assert rep_new == rep_old


@needs_c
@pytest.mark.parametrize("names", COMBOS, ids=lambda n: "+".join(n) or "none")
def test_twins_agree(store, names):
    st_, acc, ib = store
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        for uids, condstore, utf8 in itertools.product(_uid_sets(sel), (False, True),
                                                       (False, True)):
            assert (_run(PY, v, acc, sel, uids, names, condstore, utf8)
                    == _run(C, v, acc, sel, uids, names, condstore, utf8))


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@pytest.mark.parametrize("names", [COMBOS[0], ALL], ids=lambda n: "+".join(n))
def test_plain_readers(store, impl, names):
    """Any ``eid -> record`` / ``hash -> index`` callables work, not only the
    store's Readers (whose key shape the compiled twin assembles itself): the
    answers are the same."""
    st_, acc, ib = store
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        em, ix = v.email_reader(acc), v.index_reader(acc)
        calls = []

        def read_email(eid):
            calls.append(eid)
            return em(eid)

        for uids in _uid_sets(sel):
            calls.clear()
            got = impl.fetch_simple(read_email, lambda h: ix(h), uids, sel.snap.uids,
                                    sel.snap.eids, names, _flags(v, acc, names), True, True)
            assert got == _run(impl, v, acc, sel, uids, names, True, True)
            assert len(calls) == len(got[0])


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_a_dicts_get_reads_as_any_callable(store, impl):
    """A dict's ``get`` as the record reader (a streamed STORE's records, by
    email id; the compiled twin looks them up itself) answers as the same
    reads through a function, a missing record left out."""
    st_, acc, ib = store
    names = ["UID", "FLAGS"]
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        em = v.email_reader(acc)
        recs = {e: bytes(em(e)) for e in list(sel.snap.eids)[1:]}
        uids = list(sel.uids)
        for budget in (-1, 200):
            args = (imap_session._no_index, uids, 0, sel.snap.uids, sel.snap.eids, names,
                    _flags(v, acc, names), False, True, None, 1 << 20) if budget > 0 else \
                (imap_session._no_index, uids, sel.snap.uids, sel.snap.eids, names, _flags(v, acc, names),
                 False, True)
            fn = impl.fetch_upto if budget > 0 else impl.fetch_simple
            got = fn(recs.get, *args)
            assert got == fn(lambda e: recs.get(e), *args)
            assert uids[0] not in got[1] and len(got[1]) == len(uids) - 1


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@pytest.mark.parametrize("shape", ["ascending", "gaps", "shuffled", "twice"])
def test_a_record_runs_get_reads_as_the_dicts(store, impl, shape):
    """A RecordRun's ``get`` as the record reader (a streamed STORE's slice,
    emailrec apply_keywords run=True; the compiled twin walks its entries
    along the UIDs) answers as the dict it stands for: records missing at
    the start, in the middle, an entry the UIDs do not name, entries out of
    order or an email twice (its later entry counts); in chunks too.  INTO:
    the entries told land in that dict, which is the one returned."""
    RecordRun = _speedups.load_py("emailrec").RecordRun
    st_, acc, ib = store
    names = ["UID", "FLAGS"]
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        em = v.email_reader(acc)
        eids = list(sel.snap.eids)
        recs = {e: bytes(em(e)) for e in eids}
        if shape != "ascending":
            for e in eids[:2] + eids[7:9]:
                del recs[e]
            recs[4_000_000_000] = recs[eids[3]]
        if shape == "shuffled":
            recs = dict(reversed(recs.items()))
        run = RecordRun.of(recs)
        if shape == "twice":        # a first, stale entry of eids[5]
            stale = RecordRun.of({eids[5]: recs[eids[4]], **recs})
            assert stale == recs and stale.get(eids[5]) == recs[eids[5]]
            run = stale
        assert run.ascending == (shape in ("ascending", "gaps"))
        uids = list(sel.uids)
        for budget in (-1, 200, 1 << 20):
            if budget < 0:
                args = (imap_session._no_index, uids, sel.snap.uids, sel.snap.eids, names,
                        _flags(v, acc, names), False, True)
                got = impl.fetch_simple(run.get, *args)
                assert got == impl.fetch_simple(recs.get, *args)
                continue
            into = {1: 1}
            at = 0
            while at < len(uids):
                args = (imap_session._no_index, uids, at, sel.snap.uids, sel.snap.eids, names,
                        _flags(v, acc, names), False, True, None, budget, None, None)
                got = impl.fetch_upto(run.get, *args, into)
                exp = impl.fetch_upto(recs.get, *args)
                assert (got[0], got[2], got[3]) == (exp[0], exp[2], exp[3])
                assert got[1] is into and exp[1].items() <= into.items()
                at = got[2] + got[3]
            assert into == {1: 1, **{u: v.email(acc, e).last_ms for u, e in zip(uids, eids)
                                     if e in recs}}


def test_reader_is_the_store_read(store):
    """A Reader's spelled-out form and its key shape give the bytes its call gives."""
    st_, acc, ib = store
    with st_.view() as v:
        em, ix = v.email_reader(acc), v.index_reader(acc)
        for _u, eid in v.uids(acc, ib):
            rec = em(eid)
            assert bytes(rec) == bytes(v.email_raw(acc, eid))
            assert em.shape.key(eid) == em.key(eid)
            assert bytes(em.get(em.shape.key(eid), None, em.db)) == bytes(rec)
            h = v.email(acc, eid).blob
            assert bytes(ix(h)) == bytes(v.blob_index(acc, h))
            assert ix.shape.key(h) == ix.key(h)
        assert em(10**9) is None and ix(b"\0" * 32) is None


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_gone_records_are_skipped(store, impl):
    """A snapshot entry whose email record is gone (expunged meanwhile) is
    left out, as RFC 9051 allows; so are UIDs not in the snapshot."""
    st_, acc, ib = store
    with st_.view() as v:
        sel = _selected(v, acc, ib, extra_pairs=[(500_000, 4_000_000)])
        uids = list(sel.uids)
        out, rep, fallback = _run(impl, v, acc, sel, uids + [500_001], ["UID", "FLAGS"],
                                  False, True)
        assert 500_000 not in rep and 500_001 not in rep and not fallback
        assert len(out) == len(uids) - 1
        assert out == build_fetch(v, acc, sel, uids, (ev.FetchItem("UID"), ev.FetchItem("FLAGS")),
                                  False, None, True, simple=False)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_unknown_layouts_fall_back(store, impl):
    """Records or indexes of another format version, or cut short, go to the
    Python path (which raises the proper error) instead of being misread."""
    st_, acc, ib = store
    with st_.view() as v:
        sel = _selected(v, acc, ib)
        uids = list(sel.uids)[:6]
        eids = {u: e for u, e in zip(sel.uids, sel.snap.eids)}
        read_email, read_index = v.email_reader(acc), v.index_reader(acc)
        bad_rec = {eids[uids[0]]: lambda b: b"\x02" + b[1:], eids[uids[1]]: lambda b: b[:40]}
        bad_blob = {}
        for u in uids[2:4]:
            bad_blob[v.email(acc, eids[u]).blob] = u

        def bad_email(eid):
            val = read_email(eid)
            f = bad_rec.get(eid)
            return f(bytes(val)) if f else val

        def bad_index(h):
            val = read_index(h)
            if bad_blob.get(h) == uids[2]:
                return b"\x07" + bytes(val)[1:]
            if bad_blob.get(h) == uids[3]:
                return bytes(val)[:10]
            return val

        out, rep, fallback = impl.fetch_simple(bad_email, bad_index, uids, sel.snap.uids,
                                               sel.snap.eids, ["UID", "ENVELOPE"], None, False,
                                               True)
        assert fallback == uids[:4]
        assert sorted(rep) == uids[4:]
        # without an index item, only the records matter
        out, rep, fallback = impl.fetch_simple(bad_email, bad_index, uids, sel.snap.uids,
                                               sel.snap.eids, ["UID", "FLAGS"], _flags(v, acc, ["FLAGS"]),
                                               False, True)
        assert fallback == uids[:2]


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
def test_not_simple_items_refused(impl):
    with pytest.raises(ValueError):
        impl.item_codes(["UID", "BODY[]"])
    with pytest.raises(ValueError):
        impl.fetch_simple(None, None, [], array("I"), array("I"), ["SAVEDATE"], None, False,
                          True)


def _internaldate_ref(received, tz):
    return format_datetime(datetime.fromtimestamp(received, timezone(timedelta(minutes=tz))))


def _outcome(f, *args):
    try:
        return f(*args)
    except Exception as exc:  # the same error as datetime raises, too
        return type(exc)


@pytest.mark.parametrize("impl", twin_params("fetchfmt"))
@settings(max_examples=2000, deadline=None)
@given(received=st.one_of(st.integers(-62_135_596_800 - 200_000, 253_402_300_799 + 200_000),
                          st.integers(-10**10, 10**10),
                          st.sampled_from([0, -1, 86_399, 86_400, 951_782_400, 4_107_542_400,
                                           -62_135_596_800, 253_402_300_799])),
       tz=st.one_of(st.integers(-1439, 1439), st.integers(-32768, 32767)))
def test_internaldate(impl, received, tz):
    assert _outcome(impl.internaldate, received, tz) == _outcome(_internaldate_ref, received, tz)


def test_build_fetch_uses_the_selected_twin():
    assert imap_session._fetchfmt is _speedups.load("fetchfmt")


@pytest.mark.skipif(bool(os.environ.get("MAILACCESS_NO_EXTENSIONS")),
                    reason="MAILACCESS_NO_EXTENSIONS forces the pure-Python twins")
def test_fetchfmt_c_loaded():
    assert _speedups.IMPLEMENTATION["fetchfmt"] == "c"
    assert imap_session._fetchfmt.__name__.endswith("fetchfmt_c")


def test_no_extensions_means_py():
    if os.environ.get("MAILACCESS_NO_EXTENSIONS"):
        assert _speedups.IMPLEMENTATION["fetchfmt"] == "py"
        assert imap_session._fetchfmt.__name__.endswith("fetchfmt_py")


# --- the twins follow the layout descriptions ----------------------------------------------

_MOVED = r'''
import struct, sys
from mailaccess.store import records
from mailaccess.mime import index as mindex
L = records.EMAIL_LAYOUT
fields = ("version", "n_members", "blob", "tz", "size", "flags", "thread", "last_ms",
          "received_at", "n_keywords")
head = struct.Struct(">" + "".join(L.code(f) for f in fields))
records.EMAIL_LAYOUT = records.RecordLayout(L.version, head, fields, L.member,
                                            L.flag_utf8_headers)
from mailaccess import _speedups
py, c = _speedups.load_py("fetchfmt"), _speedups.load_c("fetchfmt")
assert c is not None, "the compiled twin refused a layout it can read"
idx = mindex.encode_index(mindex.index_message(b"Subject: moved\r\n\r\nbody\r\n"))
recs = {}
for eid in (1, 2, 3):
    kws = ["$seen", "kw%d" % eid][:eid - 1]
    vals = dict(version=L.version, blob=bytes([eid]) * 32, received_at=1_700_000_000 + eid,
                tz=60 * eid, size=1000 + eid, thread=70 + eid, last_ms=500 + eid, flags=0,
                n_keywords=len(kws), n_members=eid)
    recs[eid] = (head.pack(*(vals[f] for f in fields))
                 + b"".join(L.member.pack(9, eid, 0) for _ in range(eid))
                 + "\0".join(kws).encode())
names = list(py.ITEMS)
fmt = lambda kws: ("(" + " ".join(kws) + ")").encode()
args = ([1, 2, 3], [1, 2, 3], [1, 2, 3], names, fmt, True, True)
a = py.fetch_simple(recs.get, lambda h: idx, *args)
b = c.fetch_simple(recs.get, lambda h: idx, *args)
assert a == b, (a, b)
assert b[2] == [] and len(b[0]) == 3
assert b"RFC822.SIZE 1003" in b[0][2] and b"MODSEQ (503)" in b[0][2], b[0][2]
assert b"FLAGS ($seen kw3)" in b[0][2] and b"FLAGS ()" in b[0][0], b[0]
assert b"+0300" in b[0][2] and b"moved" in b[0][2]
print("ok")
'''

_RETYPED = r'''
import struct
from mailaccess.store import records
L = records.EMAIL_LAYOUT
fmt = L.head.format.replace("QBHH", "QBHI")          # n_members becomes a u32
records.EMAIL_LAYOUT = records.RecordLayout(L.version, struct.Struct(fmt), L.fields, L.member,
                                            L.flag_utf8_headers)
from mailaccess import _speedups
assert _speedups.load_c("fetchfmt") is None, "compiled twin loaded a layout it cannot read"
assert _speedups.load("fetchfmt").__name__.endswith("fetchfmt_py")
print("ok")
'''


def _python(code: str) -> str:
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MAILACCESS_NO_EXTENSIONS", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=root)
    assert r.returncode == 0, r.stderr
    return r.stdout


@needs_c
def test_twins_follow_a_moved_field():
    """Fields moved in records.EMAIL_LAYOUT (same types): both twins read the
    new places without a rebuild and still agree."""
    assert _python(_MOVED).strip() == "ok"


@needs_c
def test_compiled_twin_refuses_a_retyped_field():
    """A field the compiled twin reads changes type: it refuses to load and
    the pure-Python twin takes over."""
    assert _python(_RETYPED).strip() == "ok"
