"""IMAP4rev1 \\Recent (RFC 3501 2.3.2, 6.3.1, 6.3.2, 6.4.4, 6.4.7, 7.3.2).

A message is recent in exactly one session: the first that SELECTs its
mailbox (or has it selected and refreshes) after it arrived.  EXAMINE shows
the unclaimed ones without taking them.  The watermark lives in the store,
so it survives a restart.  IMAP4rev2 sessions see no \\Recent at all.
Raw-socket conversations between several sessions, imapclient, the store
op, and a restart.
"""
from __future__ import annotations

import functools
import re

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_config
from imap_helpers import imap_port, msg, Raw, run
from mailaccess import accounts, ingest
from mailaccess.server import app
from mailaccess.store import Store, keys, ops, records


# Whole responses, every answer must be OK, LOGOUT (answer awaited) on close.
Raw = functools.partial(Raw, timeout=30, whole=True, check_ok=True, logout="wait")


def recent_of(resp: list[bytes]) -> list[int]:
    """The counts of every ``* n RECENT`` in RESP."""
    return [int(m.group(1)) for r in resp for m in [re.match(rb"\* (\d+) RECENT\r\n", r)] if m]


def exists_of(resp: list[bytes]) -> list[int]:
    return [int(m.group(1)) for r in resp for m in [re.match(rb"\* (\d+) EXISTS\r\n", r)] if m]


def search_of(resp: list[bytes]) -> list[int]:
    for r in resp:
        if r.startswith(b"* SEARCH"):
            return [int(x) for x in r[8:].split()]
    raise AssertionError(resp)


def recent_flags(resp: list[bytes]) -> dict[int, bool]:
    """seq -> whether its FETCH FLAGS hold \\Recent."""
    out = {}
    for r in resp:
        m = re.match(rb"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", r)
        if m:
            out[int(m.group(1))] = b"\\Recent" in m.group(2).split()
    return out


def status_recent(resp: list[bytes]) -> int:
    for r in resp:
        m = re.match(rb"\* STATUS .* \(.*RECENT (\d+)", r)
        if m:
            return int(m.group(1))
    raise AssertionError(resp)


async def test_first_select_claims_examine_does_not(imap_server):
    port = imap_port(imap_server)

    def go():
        a, b = Raw(port), Raw(port)
        for i in range(2):
            a.cmd("APPEND INBOX", msg(f"m{i}"))
        # EXAMINE shows the unclaimed ones and takes nothing (RFC 3501 6.3.2)
        r = b.cmd("EXAMINE INBOX")
        assert recent_of(r) == [2]
        assert recent_flags(b.cmd("FETCH 1:* FLAGS")) == {1: True, 2: True}
        assert search_of(b.cmd("SEARCH RECENT")) == [1, 2]
        b.cmd("CLOSE")
        # the first SELECT claims both
        r = a.cmd("SELECT INBOX")
        assert recent_of(r) == [2]
        assert recent_flags(a.cmd("FETCH 1:* FLAGS")) == {1: True, 2: True}
        assert search_of(a.cmd("SEARCH RECENT")) == [1, 2]
        assert search_of(a.cmd("SEARCH NEW")) == [1, 2]
        assert search_of(a.cmd("SEARCH OLD")) == []
        a.cmd("STORE 1 +FLAGS.SILENT (\\Seen)")
        assert search_of(a.cmd("SEARCH NEW")) == [2]
        assert search_of(a.cmd("SEARCH RECENT SEEN")) == [1]
        assert recent_flags(a.cmd("FETCH 1 FLAGS")) == {1: True}
        # ... so a later session sees none of them, SELECT or EXAMINE
        r = b.cmd("SELECT INBOX")
        assert recent_of(r) == [0]
        assert recent_flags(b.cmd("FETCH 1:* FLAGS")) == {1: False, 2: False}
        assert search_of(b.cmd("SEARCH RECENT")) == []
        assert search_of(b.cmd("SEARCH OLD")) == [1, 2]
        assert search_of(b.cmd("SEARCH NEW")) == []
        c = Raw(port)
        assert recent_of(c.cmd("EXAMINE INBOX")) == [0]
        # the claim stays with A's selection, not with A's connection
        a.cmd("UNSELECT")
        assert recent_of(a.cmd("SELECT INBOX")) == [0]
        for x in (a, b, c):
            x.close()
    await run(go)


async def test_arrival_goes_to_the_first_session_that_refreshes(imap_server):
    port = imap_port(imap_server)

    def go():
        a, b, d = Raw(port), Raw(port), Raw(port)
        a.cmd("APPEND INBOX", msg("old"))
        a.cmd("SELECT INBOX")
        b.cmd("SELECT INBOX")
        d.cmd("APPEND INBOX", msg("new"))
        r = b.cmd("NOOP")
        assert exists_of(r) == [2] and recent_of(r) == [1]
        assert recent_flags(b.cmd("FETCH 1:2 FLAGS")) == {1: False, 2: True}
        r = a.cmd("NOOP")          # A keeps message 1 (its SELECT took it), not 2:
        assert exists_of(r) == [2] and recent_of(r) == []   # its count did not move
        assert recent_flags(a.cmd("FETCH 1:2 FLAGS")) == {1: True, 2: False}
        # an expunge of a recent message lowers the count
        b.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
        r = b.cmd("EXPUNGE")
        assert recent_of(r) == [0]
        # an EXAMINEd view also shows (without claiming) what arrives
        e = Raw(port)
        e.cmd("EXAMINE INBOX")
        d.cmd("APPEND INBOX", msg("third"))
        r = e.cmd("NOOP")
        assert recent_of(r) == [1]
        r = a.cmd("NOOP")          # message 3 is still A's to claim: EXAMINE took nothing
        assert exists_of(r) == [2] and recent_of(r) == [2]
        assert recent_flags(a.cmd("FETCH 1:2 FLAGS")) == {1: True, 2: True}
        for x in (a, b, d, e):
            x.close()
    await run(go)


async def test_status_recent(imap_server):
    port = imap_port(imap_server)

    def go():
        a, b = Raw(port), Raw(port)
        for i in range(3):
            a.cmd("APPEND Archive", msg(f"s{i}"))
        assert status_recent(a.cmd("STATUS Archive (MESSAGES RECENT)")) == 3
        b.cmd("EXAMINE Archive")
        assert status_recent(a.cmd("STATUS Archive (RECENT)")) == 3
        assert status_recent(b.cmd("STATUS Archive (RECENT)")) == 3
        b.cmd("SELECT Archive")
        assert status_recent(a.cmd("STATUS Archive (RECENT)")) == 0
        # the selected mailbox answers with the session's own count
        assert status_recent(b.cmd("STATUS Archive (RECENT)")) == 3
        r = a.cmd('LIST "" Archive RETURN (STATUS (RECENT))')
        assert status_recent(r) == 0
        a.close()
        b.close()
    await run(go)


async def test_copy_sets_recent_on_the_copy(imap_server):
    port = imap_port(imap_server)

    def go():
        a, b = Raw(port), Raw(port)
        a.cmd("APPEND INBOX", msg("c1"))
        a.cmd("SELECT INBOX")
        assert status_recent(b.cmd("STATUS Archive (RECENT)")) == 0
        a.cmd("COPY 1 Archive")
        assert status_recent(b.cmd("STATUS Archive (RECENT)")) == 1
        assert recent_of(b.cmd("SELECT Archive")) == [1]
        # a copy into the session's own mailbox is recent there
        r = a.cmd("COPY 1 INBOX")
        assert exists_of(r) == [2] and recent_of(r) == [2]
        assert recent_flags(a.cmd("FETCH 2 FLAGS")) == {2: True}
        a.close()
        b.close()
    await run(go)


async def test_imap4rev2_shows_no_recent_but_claims(imap_server):
    port = imap_port(imap_server)

    def go():
        a, b = Raw(port), Raw(port)
        a.cmd("APPEND INBOX", msg("r2"))
        a.cmd("ENABLE IMAP4rev2")
        r = a.cmd("SELECT INBOX")
        assert recent_of(r) == []
        assert recent_flags(a.cmd("FETCH 1 FLAGS")) == {1: False}
        assert a.cmd("SEARCH RECENT")[0].startswith(b"* ESEARCH")
        assert b"ALL" not in a.cmd("SEARCH RECENT")[0]
        b.cmd("APPEND INBOX", msg("r2b"))
        r = a.cmd("NOOP")
        assert exists_of(r) == [2] and recent_of(r) == []
        # the rev2 session took them: a rev1 session arriving later sees none
        assert recent_of(b.cmd("SELECT INBOX")) == [0]
        a.close()
        b.close()
    await run(go)


async def test_imapclient(imap_server):
    imapclient = pytest.importorskip("imapclient")
    port = imap_port(imap_server)

    def go():
        c1 = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
        c1.login("alice", "pw")
        c1.append("INBOX", msg("ic1"))
        c1.append("INBOX", msg("ic2"), flags=[b"\\Seen"])
        info = c1.select_folder("INBOX")
        assert info[b"RECENT"] == 2
        flags = c1.get_flags([1, 2])
        assert all(b"\\Recent" in f for f in flags.values())
        assert c1.search("RECENT") == [1, 2]
        assert c1.search("NEW") == [1]
        assert c1.search("OLD") == []
        c2 = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
        c2.login("alice", "pw")
        assert c2.folder_status("INBOX", [b"RECENT"])[b"RECENT"] == 0
        assert c2.select_folder("INBOX")[b"RECENT"] == 0
        assert c2.search("OLD") == [1, 2]
        c1.logout()
        c2.logout()
    await run(go)


async def test_recent_survives_a_restart(tmp_path):
    """The watermark is in the store: what the last session claimed stays
    claimed, and mail that arrived while the server was down is recent to
    the next session that selects."""
    cfg = make_config(tmp_path)

    async def serving(body):
        async with trio.open_nursery() as n:
            ctx = await n.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                               install_signals=False))
            await run(body, imap_port(ctx))
            n.cancel_scope.cancel()

    def first(port):
        a = Raw(port)
        a.cmd("APPEND INBOX", msg("before"))
        assert recent_of(a.cmd("SELECT INBOX")) == [1]
        a.close()

    st_ = Store(cfg.store_path)
    accounts.add_user(st_, "alice", "pw")
    st_.close()
    await serving(first)
    # delivered while the server is down
    st_ = Store(cfg.store_path)
    with st_.view() as v:
        acc = v.account_by_name("alice").id
        inbox = v.mailbox_by_role(acc, "inbox").id
    st_.write_sync(ops.append, acc, [inbox], ingest.prepare(msg("while down")))
    st_.close()

    def second(port):
        a = Raw(port)
        assert status_recent(a.cmd("STATUS INBOX (RECENT)")) == 1
        r = a.cmd("SELECT INBOX")
        assert exists_of(r) == [2] and recent_of(r) == [1]
        assert recent_flags(a.cmd("FETCH 1:2 FLAGS")) == {1: False, 2: True}
        a.close()
    await serving(second)


# --- the store: one claim per message, whatever the interleaving --------------------


def _setup_store(path):
    st_ = Store(path)
    acc = accounts.add_user(st_, "alice", "pw")
    with st_.view() as v:
        acc = v.account_by_name("alice").id
        inbox = v.mailbox_by_role(acc, "inbox").id
    return st_, acc, inbox


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.just("claim"), st.integers(1, 3)), max_size=12))
def test_claims_are_disjoint_and_cover_every_message(tmp_path_factory, steps):
    st_, acc, inbox = _setup_store(tmp_path_factory.mktemp("s") / "store")
    try:
        claimed: list[int] = []
        n = 0
        for step in steps:
            if step == "claim":
                lo, hi = st_.write_sync(ops.claim_recent, acc, inbox)
                claimed.extend(range(lo, hi))
            else:
                for _ in range(step):
                    n += 1
                    st_.write_sync(ops.append, acc, [inbox], ingest.prepare(msg(f"x{n}")))
        lo, hi = st_.write_sync(ops.claim_recent, acc, inbox)
        claimed.extend(range(lo, hi))
        assert claimed == list(range(1, n + 1))      # each UID once, in order
        assert st_.write_sync(ops.claim_recent, acc, inbox) == (n + 1, n + 1)
    finally:
        st_.close()


def test_concurrent_claims_share_nothing(tmp_path):
    """Claims queued together (one writer batch) still split the messages."""
    import threading

    st_, acc, inbox = _setup_store(tmp_path / "store")
    try:
        for i in range(5):
            st_.write_sync(ops.append, acc, [inbox], ingest.prepare(msg(f"c{i}")))
        got = []
        ev = threading.Event()
        lock = threading.Lock()

        def done(res, err):
            with lock:
                got.append(res)
                if len(got) == 8:
                    ev.set()
        for _ in range(8):
            st_.submit(ops.claim_recent, acc, inbox, done=done)
        ev.wait(30)
        nonempty = [r for r in got if r[0] < r[1]]
        assert nonempty == [(1, 6)]
    finally:
        st_.close()


def test_a_format_2_mailbox_record_has_nothing_recent():
    """Records written before the watermark existed read it as their
    uidnext: messages stored before the upgrade are old."""
    m = records.Mailbox(7, "INBOX", 0, "inbox", 1, 42, 9, 1, True, 0, 41, 3, 1000)
    old = b"\x01" + records.encode_mailbox(m)[1:].replace(b",1]", b"]")
    assert records.decode_mailbox(7, old).recent_from == 42
    assert records.decode_mailbox(7, records.encode_mailbox(m)).recent_from == 1


@pytest.mark.parametrize("old", [b"2", b"3", b"4", b"5"])
def test_format_2_to_5_store_opens_as_format_6(tmp_path, old):
    st_, acc, inbox = _setup_store(tmp_path / "store")
    st_.close()
    import lmdb
    env = lmdb.open(str(tmp_path / "store"), max_dbs=64)
    with env.begin(write=True) as txn:
        txn.put(b"data_version", old, db=env.open_db(b"meta", txn=txn))
    env.close()
    ro = Store(tmp_path / "store", readonly=True)     # read-only: read as it is
    ro.close()
    st_ = Store(tmp_path / "store")
    with st_.read() as txn:
        assert bytes(txn.get(b"data_version", db=st_.db["meta"])) == \
            str(keys.DATA_VERSION).encode() == b"6"
    st_.close()


def test_check_reports_a_watermark_above_uidnext(tmp_path):
    from mailaccess.check import check_store

    st_, acc, inbox = _setup_store(tmp_path / "store")
    try:
        assert check_store(st_) == []

        def corrupt(tx):
            m = tx.mailbox(acc, inbox)
            m.recent_from = m.uidnext + 1
            tx.put_mailbox(acc, m)
        st_.write_sync(corrupt)
        assert any("first recent UID" in p for p in check_store(st_))
    finally:
        st_.close()


async def test_a_failed_claim_does_not_fail_select(imap_server, monkeypatch):
    from mailaccess.store import StoreFullError

    def full(tx, acc, mbx):
        raise StoreFullError("no space left")
    port = imap_port(imap_server)

    def go():
        a = Raw(port)
        a.cmd("APPEND INBOX", msg("f1"))
        monkeypatch.setattr(ops, "claim_recent", full)
        r = a.cmd("SELECT INBOX")          # OK (Raw.cmd checks), nothing claimed
        assert exists_of(r) == [1] and recent_of(r) == [0]
        monkeypatch.undo()
        b = Raw(port)
        assert recent_of(b.cmd("SELECT INBOX")) == [1]     # still there to take
        a.close()
        b.close()
    await run(go)


def uid_recent(resp: list[bytes]) -> set[int]:
    out = set()
    for r in resp:
        m = re.match(rb"\* \d+ FETCH \((.*)\)\r\n", r)
        if m:
            u = int(re.search(rb"UID (\d+)", m.group(1)).group(1))
            if b"\\Recent" in re.search(rb"FLAGS \(([^)]*)\)", m.group(1)).group(1).split():
                out.add(u)
    return out


async def test_concurrent_sessions_never_share_a_recent_message(imap_server):
    """Four sessions SELECT, refresh and re-SELECT INBOX while mail arrives:
    each message ends up \\Recent in exactly one of them."""
    import threading

    port = imap_port(imap_server)

    def go():
        readers = [Raw(port) for _ in range(4)]
        for r in readers:
            r.cmd("SELECT INBOX")
        n = 40
        stop = threading.Event()
        errors = []

        def deliver():
            d = Raw(port)
            try:
                for i in range(n):
                    d.cmd("APPEND INBOX", msg(f"race{i}"))
            except BaseException as exc:   # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                stop.set()
                d.close()

        seen = [set() for _ in readers]     # what each session held before re-selecting

        def churn(r, k):
            try:
                while not stop.is_set():
                    if k % 2:
                        r.cmd("NOOP")
                    else:               # re-SELECT: claims at SELECT, drops what it held
                        while True:     # until no update after the answer claimed more
                            resp = r.cmd("UID FETCH 1:* (UID FLAGS)")
                            seen[k] |= uid_recent(resp)
                            if not exists_of(resp) and not recent_of(resp):
                                break
                        r.cmd("UNSELECT")
                        r.cmd("SELECT INBOX")
            except BaseException as exc:   # noqa: BLE001
                errors.append(exc)

        ts = [threading.Thread(target=deliver)] + [
            threading.Thread(target=churn, args=(r, k)) for k, r in enumerate(readers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        for r in readers:
            r.cmd("NOOP")          # the last arrivals are claimed by someone now
        got = [uid_recent(r.cmd("UID FETCH 1:* (UID FLAGS)")) for r in readers]
        for i, held in enumerate(seen):
            assert not held & got[i]        # once dropped, never recent again
            got[i] |= held
        for i in range(len(got)):
            for j in range(i + 1, len(got)):
                assert not got[i] & got[j], (i, j, got[i] & got[j])
        assert set().union(*got) == set(range(1, n + 1))
        for r in readers:
            r.close()
    await run(go)


async def test_recent_messages_keep_the_fetch_hot_path(imap_server, monkeypatch):
    """A first SELECT after an import makes every message recent: FETCH
    FLAGS of them stays on the compiled/fast path (the per-message Python
    loop is not used), with \\Recent added to each."""
    from mailaccess.server import imap_session

    port = imap_port(imap_server)

    def go():
        a = Raw(port)
        for i in range(5):
            a.cmd("APPEND INBOX (\\Seen)" if i % 2 else "APPEND INBOX", msg(f"h{i}"))
        assert recent_of(a.cmd("SELECT INBOX")) == [5]

        def no_slow_path(*args, **kw):
            raise AssertionError("the Python FETCH loop was used")
        monkeypatch.setattr(imap_session, "_fetch_message", no_slow_path)
        r = a.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE)")
        assert recent_flags(r) == {i: True for i in range(1, 6)}
        assert b"FLAGS (\\Seen \\Recent)" in r[1] and b"FLAGS (\\Recent)" in r[0]
        monkeypatch.undo()
        a.close()
    await run(go)


async def test_recent_on_the_python_fetch_path(imap_server):
    """Messages the hot path leaves to the Python loop (raw UTF-8 headers
    for a client without UTF8=ACCEPT: RFC 6858 downgrade) show \\Recent too."""
    store = imap_server.store
    port = imap_port(imap_server)
    raw8 = "From: Dé <d@example.org>\r\nSubject: Grüße\r\n\r\nutf8\r\n".encode()

    def go():
        with store.view() as v:
            acc = v.account_by_name("alice").id
            inbox = v.mailbox_by_role(acc, "inbox").id
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw8))
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(msg("plain")))
        a = Raw(port)
        assert recent_of(a.cmd("SELECT INBOX")) == [2]
        r = a.cmd("FETCH 1:2 (UID FLAGS RFC822.SIZE)")
        assert recent_flags(r) == {1: True, 2: True}
        assert recent_flags(a.cmd("FETCH 1 (FLAGS BODY.PEEK[HEADER])")) == {1: True}
        a.close()
    await run(go)
