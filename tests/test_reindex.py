"""The store-wide message index version and `mailaccess reindex`.

A store made with version 1 indexes (the positional encoder as it shipped,
kept in test_mime_index.py) is served unchanged, logs a notice, and after
`mailaccess reindex` holds only current indexes with byte-identical FETCH
output; an interrupted run resumes without redoing anything; a store whose
indexes are newer than this code is refused with a message saying what to run.
"""
import io
import logging
import pathlib
import sys

import pytest

from conftest import twin_params
from mailaccess import cli, ingest, reindex as rx
from mailaccess.check import check_store
from mailaccess.mime import index as mindex
from mailaccess.progress import Progress
from mailaccess.proto.imap import events as ev
from mailaccess.server.imap_session import build_fetch
from mailaccess.store import NotFound, Store, StoreError, keys, ops
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

from test_mime_index import encode_v1

sys.path.insert(0, str(pathlib.Path(__file__).parent / "corpus"))
import make_corpus  # noqa: E402

RAWS = list(dict.fromkeys(make_corpus.corpus(60)))[:60]   # distinct: one blob each
ITEMS = ["UID", "ENVELOPE", "BODYSTRUCTURE", "BODY"]


def _new_v1(raw: bytes):
    n = ingest.prepare(raw, 1_700_000_000)
    n.index = encode_v1(mindex.index_message(raw))
    return n


def _make_v1_store(path, split=36) -> Store:
    """alice gets RAWS[:split] (one of them twice, in two mailboxes), bob the
    rest; every index in format 1 and no index_version recorded (a store made
    before the version existed)."""
    st = Store(str(path))
    st.start()
    alice = st.write_sync(ops.create_account, "alice", "h")
    bob = st.write_sync(ops.create_account, "bob", "h")
    with st.view() as v:
        a_in = v.mailbox_by_role(alice, "inbox").id
        a_arch = v.mailbox_by_role(alice, "archive").id
        b_in = v.mailbox_by_role(bob, "inbox").id

    def load(tx):
        for raw in RAWS[:split]:
            ops.append(tx, alice, [a_in], _new_v1(raw))
        ops.append(tx, alice, [a_arch], _new_v1(RAWS[0]))     # a shared blob
        for raw in RAWS[split:]:
            ops.append(tx, bob, [b_in], _new_v1(raw))
        tx.delete("meta", keys.META_INDEX_VERSION)
    st.write_sync(load)
    return st


@pytest.fixture
def v1_store(tmp_path):
    st = _make_v1_store(tmp_path / "store")
    yield st
    st.close()


def _versions(st) -> dict[int, int]:
    out: dict[int, int] = {}
    with st.view() as v:
        for a in v.accounts():
            for _h, idx in v.blob_indexes(a.id):
                ver = mindex.index_version(idx)
                out[ver] = out.get(ver, 0) + 1
    return out


def _indexes(st) -> dict[tuple[int, bytes], bytes]:
    with st.view() as v:
        return {(a.id, h): bytes(idx) for a in v.accounts() for h, idx in v.blob_indexes(a.id)}


def _fetch_all(st) -> dict:
    """FETCH UID ENVELOPE BODYSTRUCTURE BODY of every mailbox, through each
    fetchfmt twin (the fast path must answer every message itself) and the
    Python loop."""
    out = {}
    with st.view() as v:
        for a in v.accounts():
            for m in v.mailboxes(a.id):
                pairs = sorted(v.uids(a.id, m.id))
                if not pairs:
                    continue
                sel = SelectedMailbox(a.id, m.id, m.uidvalidity, False,
                                      Snapshot.from_pairs(pairs, m.highest_ms), m.uidnext)
                uids = list(sel.uids)
                for p in twin_params("fetchfmt"):
                    impl = p.values[0]
                    resp, _rep, fallback = impl.fetch_simple(
                        v.email_reader(a.id), v.index_reader(a.id), uids, sel.snap.uids,
                        sel.snap.eids, ITEMS, None, False, True)
                    assert fallback == []
                    out[(a.id, m.id, p.id)] = resp
                out[(a.id, m.id, "loop")] = build_fetch(
                    v, a.id, sel, uids, tuple(ev.FetchItem(n) for n in ITEMS), False, None,
                    True, simple=False)
    return out


class StopAfter:
    """A progress sink that interrupts the run (like Ctrl-C) after N updates."""

    def __init__(self, n: int | None = None, on_update=None):
        self.n = n
        self.updates = 0
        self.count = 0
        self.total = None
        self.on_update = on_update

    def set_total(self, total):
        self.total = total

    def update(self, n=1, nbytes=0):
        self.updates += 1
        self.count += n
        if self.on_update is not None:
            self.on_update(self.updates)
        if self.n is not None and self.updates >= self.n:
            raise KeyboardInterrupt

    def close(self):
        pass


@pytest.fixture
def count_writes(monkeypatch):
    """Every (account, blob hash) whose index a reindex batch wrote."""
    written = []
    real = ops.reindex_batch

    def counting(tx, acc, entries, cursor, facts_only=()):
        written.extend((acc, h) for h, *_ in entries)
        return real(tx, acc, entries, cursor, facts_only)

    monkeypatch.setattr(ops, "reindex_batch", counting)
    return written


@pytest.fixture
def count_parses(monkeypatch):
    calls = []
    real = mindex.index_message

    def counting(raw):
        calls.append(raw)
        return real(raw)

    monkeypatch.setattr(mindex, "index_message", counting)
    return calls


# ---------------------------------------------------------------- the version at open


def test_new_store_records_the_current_version(tmp_path):
    with Store(str(tmp_path / "s")) as st, st.view() as v:
        assert v.index_version() == mindex.FORMAT_VERSION
        assert bytes(v._get("meta", keys.META_INDEX_VERSION)) == b"2"


def test_old_store_is_served_and_logs_a_notice(tmp_path, caplog):
    st = _make_v1_store(tmp_path / "s")
    before = _fetch_all(st)
    st.close()
    with caplog.at_level(logging.WARNING, logger="mailaccess.store"):
        st = Store(str(tmp_path / "s"))
    try:
        assert "mailaccess reindex" in caplog.text
        with st.view() as v:
            assert v.index_version() == 1
        assert _fetch_all(st) == before
    finally:
        st.close()


@pytest.mark.parametrize("stored,words", [
    (99, "format 99, this mailaccess reads formats 1, 2: a newer mailaccess wrote them"),
    (0, "format 0, this mailaccess reads formats 1, 2: run `mailaccess reindex` with"),
])
def test_unreadable_index_version_is_refused(tmp_path, stored, words):
    with Store(str(tmp_path / "s")) as st:
        st.write_sync(ops.set_index_version, stored)
    with pytest.raises(StoreError) as info:
        Store(str(tmp_path / "s"))
    assert words in str(info.value)


def test_serve_and_cli_refuse_a_newer_index_version(tmp_path, capsys, monkeypatch):
    from mailaccess.server import app

    data = tmp_path / "data"
    with Store(str(data / "store")) as st:
        st.write_sync(ops.set_index_version, mindex.FORMAT_VERSION + 1)
    # no services, no signal watcher: were the store accepted, serve would
    # start and return 0 at once
    monkeypatch.setattr(app, "SERVICES", [])

    async def no_signals(scope):
        pass

    monkeypatch.setattr(app, "_signal_watcher", no_signals)
    for argv in (["serve", "--no-demo"], ["check"], ["reindex"], ["user", "list"]):
        capsys.readouterr()
        assert cli.main(argv + ["--data-dir", str(data)]) == 1, argv
        err = capsys.readouterr().err
        assert f"holds message indexes of format {mindex.FORMAT_VERSION + 1}" in err, argv
        assert "a newer mailaccess wrote them; run that version" in err, argv
        assert "Traceback" not in err


# ---------------------------------------------------------------- reindex


def test_v1_store_is_served_by_both_fetch_twins(v1_store):
    assert _versions(v1_store) == {1: len(RAWS)}
    _fetch_all(v1_store)        # asserts no fallback for version 1 records


def test_reindex_rebuilds_every_blob_with_identical_output(v1_store, count_parses):
    old = _indexes(v1_store)
    before = _fetch_all(v1_store)
    with v1_store.view() as v:
        highest = {a.id: v.highest_modseq(a.id) for a in v.accounts()}

    s = rx.reindex(v1_store)

    assert s.rebuilt == s.changed == len(RAWS) == len(old) == len(count_parses)
    assert (s.accounts, s.gone, s.skipped, s.resumed) == (2, 0, 0, False)
    assert s.index_version == mindex.FORMAT_VERSION
    assert _versions(v1_store) == {mindex.FORMAT_VERSION: len(RAWS)}
    new = _indexes(v1_store)
    assert new.keys() == old.keys()
    for k in old:
        assert mindex.decode_index(new[k]) == mindex.decode_index(old[k])
    assert _fetch_all(v1_store) == before
    with v1_store.view() as v:
        assert v.index_version() == mindex.FORMAT_VERSION
        assert v.reindex_cursors() == {}
        # nothing a client syncs on moved: no modseq, no change log entry
        assert {a.id: v.highest_modseq(a.id) for a in v.accounts()} == highest
    assert check_store(v1_store) == []
    assert "every message index is in format 2" in str(s)

    # a second full run rebuilds everything again (a parser fix) and finds it identical
    s = rx.reindex(v1_store)
    assert (s.rebuilt, s.changed) == (len(RAWS), 0)
    # --outdated-only leaves current indexes alone
    del count_parses[:]
    s = rx.reindex(v1_store, outdated_only=True)
    assert (s.rebuilt, s.skipped, len(count_parses)) == (0, len(RAWS), 0)


def test_reindex_one_user_then_the_rest(v1_store):
    s = rx.reindex(v1_store, "bob")
    assert s.accounts == 1 and s.rebuilt == len(RAWS) - 36
    assert s.index_version == 1       # alice still holds version 1 indexes
    assert "run `mailaccess reindex` for all accounts" in str(s)
    with v1_store.view() as v:
        assert v.index_version() == 1
    s = rx.reindex(v1_store, outdated_only=True)
    assert (s.rebuilt, s.skipped, s.index_version) == (36, len(RAWS) - 36, 2)
    with v1_store.view() as v:
        assert v.index_version() == 2
    with pytest.raises(NotFound):
        rx.reindex(v1_store, "nobody")


@pytest.mark.parametrize("stop_after", [1, 3, 8, 9, 12])
def test_interrupted_run_resumes_and_does_nothing_twice(v1_store, count_writes, count_parses,
                                                        stop_after):
    """batch=4: alice's 36 blobs are batches 1-9, bob's 24 are 10-15.  Each
    interruption lands after a durable batch (while the next one is parsed);
    the rerun continues there: every blob is written exactly once over both
    runs, and only the batch being parsed at the interruption is parsed twice."""
    p = StopAfter(stop_after)
    with pytest.raises(KeyboardInterrupt):
        rx.reindex(v1_store, progress=p, batch=4)
    assert p.total == len(RAWS)
    done = p.count
    assert done == 4 * stop_after == len(count_writes)
    assert _versions(v1_store) == {1: len(RAWS) - done, 2: done}
    with v1_store.view() as v:
        cursors = v.reindex_cursors()
        assert v.index_version() == 1
    assert set(cursors) == ({1, 2} if stop_after <= 9 else {2})

    q = StopAfter()
    s = rx.reindex(v1_store, progress=q, batch=4)
    assert s.resumed
    assert q.total == len(RAWS) - done == s.rebuilt
    assert len(count_writes) == len(set(count_writes)) == len(RAWS)
    # (after alice's last batch nothing more of hers was being parsed)
    assert len(count_parses) == len(RAWS) + (0 if stop_after == 9 else 4)
    assert set(count_parses) == set(RAWS)
    assert _versions(v1_store) == {2: len(RAWS)}
    assert s.index_version == 2
    with v1_store.view() as v:
        assert v.reindex_cursors() == {}


def test_restart_forgets_an_interrupted_run(v1_store, count_writes):
    with pytest.raises(KeyboardInterrupt):
        rx.reindex(v1_store, progress=StopAfter(2), batch=4)
    s = rx.reindex(v1_store, restart=True, batch=4)
    assert not s.resumed and s.rebuilt == len(RAWS)
    assert len(count_writes) == len(RAWS) + 8


def test_single_user_run_resumes_only_its_account(v1_store):
    with pytest.raises(KeyboardInterrupt):
        rx.reindex(v1_store, "alice", progress=StopAfter(2), batch=4)
    with v1_store.view() as v:
        assert set(v.reindex_cursors()) == {1}
    # "all accounts" finishes the interrupted run (alice) and says what remains
    s = rx.reindex(v1_store, batch=4)
    assert s.resumed and s.accounts == 1 and s.rebuilt == 36 - 8
    assert s.index_version == 1
    s = rx.reindex(v1_store, batch=4)
    assert not s.resumed and s.accounts == 2 and s.index_version == 2


def test_mail_changing_during_the_run(v1_store):
    """Deliveries and expunges while reindex runs (it is safe with the server
    up): an expunged blob's index is not brought back, a delivered one is
    current already, the store stays consistent."""
    with v1_store.view() as v:
        hashes = [h for h, _ in v.blob_indexes(1)]
        victim = hashes[5]              # in batch 2, read while batch 1 commits
        victim_eids = v.blob_refs(1, victim)
        inbox = v.mailbox_by_role(1, "inbox").id

    def meddle(n):
        if n == 1:
            v1_store.write_sync(ops.destroy_emails, 1, victim_eids)
            v1_store.write_sync(ops.append, 1, [inbox], ingest.prepare(
                b"Subject: late\r\nMessage-ID: <late@x>\r\n\r\nlate\r\n"))

    s = rx.reindex(v1_store, progress=StopAfter(on_update=meddle), batch=4)
    assert s.gone == 1
    with v1_store.view() as v:
        assert v.blob_index(1, victim) is None and v.blob(1, victim) is None
    assert _versions(v1_store) == {2: len(RAWS)}       # -1 expunged, +1 delivered
    assert s.index_version == 2
    assert check_store(v1_store) == []


def test_progress_bar(v1_store):
    out = io.StringIO()
    rx.reindex(v1_store, progress=Progress("reindexing", stream=out, tty=True), batch=8)
    text = out.getvalue()
    assert "[########################] reindexing" in text
    assert f"{len(RAWS)}/{len(RAWS)} msg (100.0%)" in text
    assert text.endswith("\n")


# ---------------------------------------------------------------- the command


def test_cli_reindex(tmp_path, capsys, count_writes):
    data = tmp_path / "data"
    _make_v1_store(data / "store").close()
    assert cli.main(["reindex", "bob", "--data-dir", str(data)]) == 0
    out, err = capsys.readouterr()
    assert f"reindexed {len(RAWS) - 36} messages" in out
    assert "indexes older than format 2 remain" in out
    assert f"reindexing  {len(RAWS) - 36}/{len(RAWS) - 36} msg (100.0%)" in err
    assert cli.main(["reindex", "--outdated-only", "--data-dir", str(data)]) == 0
    out, err = capsys.readouterr()
    assert "reindexed 36 messages" in out and f"{len(RAWS) - 36} already current" in out
    assert "every message index is in format 2" in out
    assert len(count_writes) == len(RAWS)
    assert cli.main(["reindex", "nobody", "--data-dir", str(data)]) == 1
    assert "no account 'nobody'" in capsys.readouterr().err


def test_cli_reindex_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reindex", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in ("USER", "every account", "Resumable", "--outdated-only", "--restart",
                  "Safe while the server runs"):
        assert words.lower() in out.lower(), words
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "reindex" in capsys.readouterr().out


# ---------------------------------------------------------------- with the server up


async def test_reindex_while_the_server_runs(imap_server):
    """`mailaccess reindex` in its own process while IMAP sessions are
    selected: a session sees byte-identical FETCH output afterwards, and no
    untagged FETCH or modseq change (nothing a client syncs on moved)."""
    import os
    import subprocess

    import trio

    from imap_helpers import connect, run

    store = imap_server.store
    raws = RAWS[:20]

    def fill():
        c = connect(imap_server)
        for raw in raws:
            c.append("INBOX", None, None, raw)
        c.logout()

    await run(fill)

    def make_v1(tx):
        acc = tx.account_by_name("alice").id
        for h, idx in list(tx.blob_indexes(acc)):
            ops.replace_index(tx, acc, h, encode_v1(mindex.decode_index(bytes(idx))))
        ops.set_index_version(tx, 1)

    await trio.to_thread.run_sync(store.write_sync, make_v1)
    assert _versions(store) == {1: len(raws)}
    c = await run(connect, imap_server)
    await run(c.enable, "CONDSTORE")
    typ, data = await run(c.select, "INBOX")
    assert data == [str(len(raws)).encode()]
    typ, before = await run(c.fetch, "1:*", "(UID ENVELOPE BODYSTRUCTURE BODY)")
    status_before = (await run(c.status, "INBOX", "(HIGHESTMODSEQ UIDNEXT)"))[1]

    root = str(pathlib.Path(__file__).parent.parent)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await trio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "mailaccess", "reindex", "--data-dir",
         imap_server.cfg.data_dir], env=env, capture_output=True, text=True, timeout=300))
    assert proc.returncode == 0, proc.stderr
    assert "reindexing" in proc.stderr
    assert f"reindexed {len(raws)} messages" in proc.stdout
    assert f"{len(raws)} changed" in proc.stdout

    assert _versions(store) == {2: len(raws)}
    with store.view() as v:
        assert v.index_version() == 2
    c.untagged_responses.clear()
    typ, _ = await run(c.noop)
    assert "FETCH" not in c.untagged_responses and "EXISTS" not in c.untagged_responses
    typ, after = await run(c.fetch, "1:*", "(UID ENVELOPE BODYSTRUCTURE BODY)")
    assert after == before
    assert (await run(c.status, "INBOX", "(HIGHESTMODSEQ UIDNEXT)"))[1] == status_before
    await run(c.logout)
