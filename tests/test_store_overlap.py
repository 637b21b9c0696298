"""write_begin (perf7-overlap): the loop's small write commits with its
redo-log flush begun before LMDB's commit, and is acknowledged (done, the
commit hooks) only once that flush has completed; a read snapshot of it in
between flushes the log itself (READ_DURABLE)."""
from mailaccess.store import keys
from mailaccess.store.lmdb_store import LmdbStore

from test_store_writepath import _wait_for


def _kw(i: int) -> bytes:
    return keys.account_prefix(7) + b"k%03d" % i


def _idle(st) -> bool:
    return _wait_for(lambda: st._queue.empty() and not st._busy.locked())


def test_write_begin_acknowledges_only_after_its_flush(tmp_path):
    st = LmdbStore(tmp_path / "store")
    st.start()
    try:
        st.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
        assert _idle(st)
        events = []
        st.redo.on_sync = lambda what: events.append(what)
        st.on_commit.append(lambda info: events.append("hook"))
        landing = st.write_begin(lambda tx: tx.put("kw", _kw(1), b"y") or "ok", (),
                                 lambda r, e: events.append(("done", r, e)))
        assert landing is not None
        assert landing.peek() == ("ok", None)
        # the flush began (before LMDB's commit), nothing acknowledged yet
        assert events == ["log-start"]
        assert st._busy.locked()                 # the writer is held until finish
        assert st.redo.mark.get() < st.env.info()["last_txnid"]
        landing.finish()
        assert events == ["log-start", "log", ("done", "ok", None), "hook"]
        assert st.redo.mark.get() >= st.env.info()["last_txnid"]
        assert not st._busy.locked()
        landing.finish()                         # again: nothing
        assert len(events) == 4
    finally:
        st.close()


def test_a_reader_of_a_write_begun_and_not_finished_flushes(tmp_path):
    st = LmdbStore(tmp_path / "store")
    st.start()
    try:
        st.write_sync(lambda tx: tx.put("kw", _kw(0), b"x"))
        assert _idle(st)
        events = []
        st.redo.on_sync = lambda what: events.append(what)
        landing = st.write_begin(lambda tx: tx.put("kw", _kw(1), b"y"), (), lambda r, e: None)
        with st.view() as v:
            assert bytes(v._get("kw", _kw(1))) == b"y"
        # the reader's own flush, beside the one under way
        assert events == ["log-start", "log-start", "log"]
        landing.finish()
    finally:
        st.close()
