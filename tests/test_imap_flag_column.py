"""The flags column (views/flag_column.py): its answers equal the query
engine's through every change that can move a flag, and over the wire
SEARCH on flags sees each change made by another session."""
import dataclasses
import random
from array import array

import pytest

from mailaccess import ingest
from mailaccess.query import engine
from mailaccess.query import model as q
from mailaccess.store import Store, ops
from mailaccess.views import flag_column
from mailaccess.views.imap_selected import Snapshot

from conftest import make_config, twin_params
from imap_helpers import connect, msg, run

KWS = ["$seen", "$flagged", "$answered", "$deleted", "work", "later"]


@pytest.fixture
def box(tmp_path):
    store = Store(tmp_path / "data")
    store.start()
    acc = store.write_sync(ops.create_account, "a", "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
        archive = v.mailbox_by_role(acc, "archive").id
    rnd = random.Random(7)
    for i in range(120):
        store.write_sync(ops.append, acc, [inbox],
                         ingest.prepare(msg(f"m{i}"), 1762128000 + i),
                         [k for k in KWS if rnd.random() < 0.3])
    yield store, acc, inbox, archive, rnd
    store.close()


def queries(extra=()):
    out = [q.Keyword(k) for k in KWS + ["nosuch"] + list(extra)]
    out += [q.Not(q.Keyword("$seen")), q.Or([q.Keyword("$seen"), q.Keyword("$flagged")]),
            q.And([q.Not(q.Keyword("$seen")), q.Uids([(3, 40), (77, 90)])]),
            q.ModSeqAtLeast(1), q.ModSeqAtLeast(60), q.Not(q.ModSeqAtLeast(100)),
            q.Or([q.Not(q.Keyword("work")), q.And([q.Keyword("later"), q.Uids([(1, 5)])])])]
    return out


def check(store, acc, mbx, col, impl, extra=(), keys=None):
    """Every query over the column equals the engine's answer (and its
    highest modseq the records')."""
    with store.view() as v:
        uids, eids = v.uid_map(acc, mbx)
        if keys is not None:
            uids = array("I", [u for u in uids if u in keys])
            eids = array("I", [v.email_at(acc, mbx, u) for u in uids])
        for query in queries(extra):
            want = engine.search_columns(v, acc, uids, eids, query, mailbox=mbx,
                                         ascending=True)
            got = flag_column.evaluate(col, uids, query, impl)
            assert got is not None, query
            top = max((v.email(acc, v.email_at(acc, mbx, u)).last_ms for u in want), default=0)
            assert got == (want, top), query


@pytest.mark.parametrize("impl", twin_params("search"))
def test_column_equals_engine_through_every_change(box, impl):
    store, acc, inbox, archive, rnd = box
    cols = flag_column.FlagColumns(1 << 20)
    snaps = []

    def current():
        with store.view() as v:
            m = v.mailbox(acc, inbox)
            col = cols.get(v, acc, m, impl)
            fresh = flag_column.build(v, acc, m, impl)
            # built from a session's older map (SELECT's), brought forward
            snaps.append(Snapshot(*v.uid_map(acc, inbox), m.highest_ms))
            started = [flag_column.build(v, acc, m, impl, start=s) for s in snaps]

        # brought forward = built again from scratch
        def rows(c):
            return (list(c.uids), list(c.mss),
                    [sorted(c.names[i] for i in range(32) if b >> i & 1) for b in c.bits])
        assert rows(col) == rows(fresh)
        assert all(rows(c) == rows(fresh) for c in started)
        return col

    check(store, acc, inbox, current(), impl)
    with store.view() as v:
        uids, eids = v.uid_map(acc, inbox)
    # a STORE on a few, a keyword no message had (gets a bit)
    store.write_sync(ops.set_keywords, acc, list(eids[:5]), add=["$seen", "brandnew"])
    check(store, acc, inbox, current(), impl, ["brandnew"])
    store.write_sync(ops.set_keywords, acc, list(eids[3:9]), remove=["$seen", "work"])
    check(store, acc, inbox, current(), impl, ["brandnew"])
    # new mail
    for i in range(3):
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(msg(f"n{i}"), 1762200000),
                         ["$flagged"])
    check(store, acc, inbox, current(), impl)
    # expunge, move out, copy (moves the modseq of the copied ones)
    store.write_sync(ops.expunge, acc, inbox, [uids[10], uids[11], uids[50]])
    check(store, acc, inbox, current(), impl)
    store.write_sync(ops.move, acc, inbox, [uids[20], uids[21]], archive)
    check(store, acc, inbox, current(), impl)
    store.write_sync(ops.copy, acc, [eids[30], eids[31]], archive)
    check(store, acc, inbox, current(), impl)
    # a change made in another mailbox to an email also in this one
    with store.view() as v:
        shared = v.email_at(acc, archive, v.uid_map(acc, archive)[0][0])
    store.write_sync(ops.set_keywords, acc, [shared], add=["later"])
    check(store, acc, inbox, current(), impl)
    # a bulk change (more than REBUILD_SHARE: built again)
    store.write_sync(ops.set_keywords, acc, list(eids[40:]), add=["$answered"])
    check(store, acc, inbox, current(), impl)
    # candidates that are a part of the mailbox
    check(store, acc, inbox, current(), impl, keys=set(uids[::3]))


@pytest.mark.parametrize("impl", twin_params("search"))
def test_more_keywords_than_bits_are_left_to_the_engine(box, impl):
    store, acc, inbox, _archive, _rnd = box
    with store.view() as v:
        uids, eids = v.uid_map(acc, inbox)
    many = [f"k{i}" for i in range(40)]
    store.write_sync(ops.set_keywords, acc, [eids[0]], add=many)
    with store.view() as v:
        col = flag_column.build(v, acc, v.mailbox(acc, inbox), impl)
        assert col.full and len(col.names) == 32
        unknown = next(k for k in many if k.encode() not in col.slots)
        # a keyword without a bit: the column cannot tell (the engine answers)
        assert flag_column.evaluate(col, uids, q.Keyword(unknown), impl) is None
        # one with a bit still answers, and right
        known = col.names[-1].decode()
        want = engine.search_columns(v, acc, uids, eids, q.Keyword(known), ascending=True)
        assert flag_column.evaluate(col, uids, q.Keyword(known), impl)[0] == want == [uids[0]]
        # a candidate the column does not hold: cannot tell either
        assert flag_column.evaluate(col, array("I", [uids[0], 99999]), q.All(), impl) is None


def test_twins_agree_on_the_column_functions(box):
    impls = [p.values[0] for p in twin_params("search")]
    if len(impls) < 2:
        pytest.skip("compiled twin not built")
    store, acc, inbox, _a, rnd = box
    with store.view() as v:
        uids, eids = v.uid_map(acc, inbox)
        eids = list(eids) + [999999]        # a gone email: the empty record
        rows = [i.flag_rows(v.email_reader(acc), eids, [b"work"]) for i in impls]
        assert rows[0] == rows[1]
        assert [i.flag_rows(v.email_reader(acc), eids, None) for i in impls][0][0] == \
            array("I", [0] * len(eids))
    bits, mss, _ = rows[0]
    col_uids = array("I", list(uids) + [10**6])
    for keys in (array("I"), array("I", uids[::2]), [uids[0], uids[1] + 100000]):
        got = [i.flag_align(col_uids, keys) for i in impls]
        assert got[0] == got[1]
    idx = impls[0].flag_align(col_uids, uids[::2])
    for mask in (1, 2, 6, 0):
        assert impls[0].flag_bits(idx, bits, mask) == impls[1].flag_bits(idx, bits, mask)
    for lo in (-1, 0, 5, 60, 1 << 70):
        assert impls[0].flag_min(idx, mss, lo) == impls[1].flag_min(idx, mss, lo)
    chosen = bytes(rnd.choice((0, 1)) for _ in range(len(idx)))
    assert impls[0].flag_pick(chosen, uids[::2], idx, mss) == \
        impls[1].flag_pick(chosen, uids[::2], idx, mss)
    with pytest.raises(IndexError):
        impls[1].flag_bits(array("i", [len(bits)]), bits, 1)


def test_cache_is_bounded_and_evicts_the_least_recently_used():
    cols = flag_column.FlagColumns(3000)
    mk = lambda n: flag_column.FlagColumn(1, array("I", range(n)), array("I", [0] * n),  # noqa: E731
                                          array("Q", [0] * n), [], False)
    cols.put((1, 1), mk(50))
    cols.put((1, 2), mk(50))
    cols.put((1, 3), mk(50))
    assert cols.bytes <= 3000 and (1, 1) not in cols.cols and (1, 3) in cols.cols
    cols.put((1, 4), mk(1000))          # over the budget alone: not kept
    assert (1, 4) not in cols.cols and cols.bytes <= 3000


# --- over the wire --------------------------------------------------------------------------------

@pytest.fixture(params=[16 << 20, 0], ids=["column", "engine"])
def cfg(tmp_path, request):
    """The server with its flags columns, and without (every SEARCH by the
    engine): the same scenario, the same answers."""
    c = make_config(tmp_path)
    return dataclasses.replace(c, imap=dataclasses.replace(c.imap,
                                                           flag_cache_bytes=request.param))


def _uids(c, *crit):
    typ, data = c.uid("SEARCH", *crit)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


async def test_search_sees_every_change_of_another_session(imap_server):
    def scenario():
        a, b = connect(imap_server), connect(imap_server)
        a.create("Other")
        for i in range(12):
            a.append("INBOX", r"(\Seen)" if i % 3 else None, None, msg(f"w{i}"))
        a.select("INBOX")
        b.select("INBOX")
        assert _uids(a, "UNSEEN") == [1, 4, 7, 10]
        b.uid("STORE", "2,3", "-FLAGS", r"(\Seen)")            # another session
        assert _uids(a, "UNSEEN") == [1, 2, 3, 4, 7, 10]
        a.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged)")      # this session
        assert _uids(a, "UNSEEN") == [2, 3, 4, 7, 10]
        assert _uids(a, "OR", "FLAGGED", "UID", "4") == [1, 4]
        b.uid("STORE", "5", "+FLAGS", "(NewKeyword)")          # a keyword created
        assert _uids(a, "KEYWORD", "NewKeyword") == [5]
        assert _uids(a, "UNKEYWORD", "NewKeyword", "UID", "4:6") == [4, 6]
        b.append("INBOX", None, None, msg("w12"))                # new mail: seen after NOOP
        a.noop()
        assert _uids(a, "UNSEEN") == [2, 3, 4, 7, 10, 13]
        b.uid("STORE", "4", "+FLAGS", r"(\Deleted)")
        b.expunge()                                              # EXPUNGE
        b.uid("MOVE", "7", "Other")                            # MOVE
        assert _uids(b, "UNSEEN") == [2, 3, 10, 13]
        a.noop()
        assert _uids(a, "UNSEEN") == [2, 3, 10, 13]
        assert _uids(a, "DELETED") == []
        # CONDSTORE: the highest modseq of the messages found (RFC 7162 3.1.5)
        typ, data = a.uid("SEARCH", "MODSEQ", "1")
        lines = a.uid("FETCH", "1:*", "(MODSEQ)")[1]
        hi = max(int(ln.split(b"MODSEQ (")[1].split(b")")[0]) for ln in lines if ln and b"MODSEQ (" in ln)
        assert data[0].endswith(b"(MODSEQ %d)" % hi), data
        # ... of those returned only, with MIN and no ALL (RFC 4731 3.2)
        ms = {int(ln.split(b"UID ")[1].split(b" ")[0]): int(ln.split(b"MODSEQ (")[1].split(b")")[0])
              for ln in lines if ln and b"MODSEQ (" in ln}
        a.uid("SEARCH", "RETURN", "(MIN)", "MODSEQ", "1")
        low = min(ms)
        assert a.response("ESEARCH")[1][-1].endswith(b"MIN %d MODSEQ %d" % (low, ms[low]))
        a.logout()
        b.logout()
    await run(scenario)


async def test_a_mailbox_over_the_inline_bound_is_built_in_the_pool(imap_server, monkeypatch):
    """Beyond FLAG_INLINE messages the column is built in the worker pool
    (then kept); the answers stay the engine's."""
    from mailaccess.server import imap_session
    monkeypatch.setattr(imap_session, "FLAG_INLINE", 3)

    def scenario():
        a, b = connect(imap_server), connect(imap_server)
        for i in range(8):
            a.append("INBOX", r"(\Seen)" if i % 2 else None, None, msg(f"p{i}"))
        a.select("INBOX")
        b.select("INBOX")
        assert _uids(a, "UNSEEN") == [1, 3, 5, 7]
        assert _uids(a, "UNSEEN") == [1, 3, 5, 7]        # (the kept column)
        b.uid("STORE", "1:2", "FLAGS", r"(\Flagged)")
        assert _uids(a, "UNSEEN") == [1, 2, 3, 5, 7]
        assert _uids(a, "FLAGGED", "NOT", "SEEN") == [1, 2]
        a.logout()
        b.logout()
    await run(scenario)


def test_a_change_made_on_another_worker_process_is_seen(tmp_path):
    """[server] workers = 2: the column of the worker that answers follows a
    STORE, an APPEND and an EXPUNGE made by a session of the other worker."""
    from test_workers import Cluster, Imap, _running, on_each_worker

    for cluster in _running(Cluster(tmp_path)):
        port = cluster.ports["imap"]
        conns = list(on_each_worker(cluster, lambda: Imap(port).login()).values())
        a, b = conns
        for i in range(6):
            a.cmd("APPEND INBOX" + (r" (\Seen)" if i % 2 else ""), msg(f"x{i}"))
        for c in conns:
            c.cmd("SELECT INBOX")

        def unseen(c, *more):
            line = [ln for ln in c.cmd(" ".join(("UID SEARCH UNSEEN",) + more))
                    if ln.startswith(b"* SEARCH")][0]
            return [int(x) for x in line.split()[2:]]

        assert unseen(a) == [1, 3, 5]
        b.cmd(r"UID STORE 1 +FLAGS (\Seen)")
        b.cmd(r"UID STORE 2 -FLAGS (\Seen)")
        assert unseen(a) == [2, 3, 5]
        b.cmd("APPEND INBOX", msg("x6"))
        a.cmd("NOOP")
        assert unseen(a) == [2, 3, 5, 7]
        b.cmd(r"UID STORE 3 +FLAGS (\Deleted)")
        b.cmd("EXPUNGE")
        a.cmd("NOOP")
        assert unseen(a) == [2, 5, 7]
        for c in conns:
            c.close()


def test_a_kept_column_of_another_mailbox_incarnation_is_not_used(box):
    """Same (account, mailbox id) and modseq but another UIDVALIDITY: built again."""
    store, acc, inbox, _archive, _rnd = box
    cols = flag_column.FlagColumns(1 << 20)
    with store.view() as v:
        m = v.mailbox(acc, inbox)
        fresh = flag_column.build(v, acc, m)
        stale = flag_column.FlagColumn(m.highest_ms, array("I", fresh.uids),
                                       array("I", [1] * len(fresh.uids)), fresh.mss,
                                       [b"$seen"], False, m.uidvalidity + 1)
        cols.put((acc, inbox), stale)
        assert cols.peek(acc, m) is None
        got = cols.get(v, acc, m)
    assert got is not stale and list(got.bits) == list(fresh.bits)
