"""storeio.settle: a command's reads never flush the redo log on the loop
thread.  When the newest commit is not durable yet (another session's, its
flush still to come), READ_DURABLE makes the first read snapshot newer than
the durable mark flush the log before it is read; settle makes that flush
in a worker thread first, so the loop (every session of the worker) does
not wait on an fdatasync."""
from __future__ import annotations

import threading

import trio

from mailaccess import storeio
from mailaccess.store import ops
from mailaccess.store.tx import WriteTx

from test_imap_sortcache import append, env, session  # noqa: F401
from test_imap_selected_costs import run as command


def undurable_commit(env, keyword="later") -> int:
    """A committed change (KEYWORD added to email 1) whose log record is not
    flushed yet, as another session's commit is while the sync thread has
    not flushed it: the writer's housekeeping write, the writer held idle."""
    st = env.store
    with st._busy:
        st._unsynced_write(WriteTx, lambda tx: ops.set_keywords(
            tx, env.acc, [1], add=[keyword]))
    due = st.read_flush_due()
    assert due > 0
    return due


def flush_threads(env) -> list:
    """Record the thread of every log flush a reader asks for."""
    st = env.store
    seen = []
    real = st._reader_flush

    def spy(txnid):
        seen.append(threading.current_thread())
        real(txnid)

    st._reader_flush = spy
    return seen


async def test_settle_flushes_in_a_worker_thread(env):  # noqa: F811
    append(env, 3)
    due = undurable_commit(env)
    seen = flush_threads(env)
    await storeio.settle(env.store)
    assert seen and seen[0] is not threading.current_thread()
    assert env.store.read_flush_due() == 0 and env.store._mark.get() >= due
    with env.store.view():
        pass
    assert len(seen) == 1               # the view found it durable
    await storeio.settle(env.store)     # nothing due: nothing done
    assert len(seen) == 1


async def test_a_selected_session_never_flushes_on_the_loop(env):  # noqa: F811
    append(env, 5)
    a = session(env)
    await command(a, b"SELECT INBOX")
    loop_thread = threading.current_thread()
    seen = flush_threads(env)
    for i, line in enumerate((b"FETCH 1:* (FLAGS)", b"NOOP", b"UID SEARCH KEYWORD later",
                              b"STATUS Side (MESSAGES)", b"LIST \"\" *")):
        undurable_commit(env, f"later{i}")
        out = await command(a, line)
        assert b" OK " in out, out
        assert seen and loop_thread not in seen, line
    # and what the session showed is what was committed
    out = await command(a, b"FETCH 1 (FLAGS)")
    assert b"later4" in out


async def test_nothing_to_flush_costs_no_thread(env, monkeypatch):  # noqa: F811
    append(env, 2)
    calls = []
    monkeypatch.setattr(trio.to_thread, "run_sync", lambda *a, **k: calls.append(a))
    await storeio.settle(env.store)
    assert calls == []


async def test_a_jmap_request_never_flushes_on_the_loop(env):  # noqa: F811
    from jmap_helpers import one
    from mailaccess.proto.jmap.request import Limits
    from mailaccess.server.jmap_api import JmapContext
    append(env, 3)
    ctx = JmapContext(env.store, None, None, env.acc, "a", Limits())
    loop_thread = threading.current_thread()
    seen = flush_threads(env)
    undurable_commit(env, "fromimap")
    res = await one(ctx, "Email/query", {"filter": {"hasKeyword": "fromimap"}})
    assert len(res["ids"]) == 1
    assert seen and loop_thread not in seen
