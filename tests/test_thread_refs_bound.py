"""The ids the store threads a message by are bounded (ingest.thread_refs):
the root of References, its nearest ancestors and In-Reply-To.  Before, a
References of 200,000 ids made the writer, which every account shares, do
400,000 look-ups and 200,000 puts for one delivery (0.63 s, 39 MB of store).
"""
from hypothesis import given
from hypothesis import strategies as st

from mailaccess import accounts, ingest
from mailaccess.store import Store, keys, ops

THREAD_MAX = ingest.THREAD_IN_REPLY_TO_MAX + ingest.THREAD_REFERENCES_MAX


def _raw(mid: str, refs: list[str], subject: str = "s", irt: list[str] = ()) -> bytes:
    head = f"From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
    if refs:
        head += "References: " + "\r\n ".join(f"<{r}>" for r in refs) + "\r\n"
    if irt:
        head += "In-Reply-To: " + " ".join(f"<{r}>" for r in irt) + "\r\n"
    return (head + "\r\nbody\r\n").encode()


def _thr_refs(store, acc: int) -> int:
    with store.view() as v:
        return sum(1 for _ in v._scan("thr.ref", keys.thr_ref(acc, "")[:4]))


@given(st.lists(st.text("abc", min_size=1, max_size=3), max_size=200),
       st.lists(st.text("abc", min_size=1, max_size=3), max_size=20))
def test_thread_refs_keep_the_root_the_nearest_ancestors_and_in_reply_to(refs, irt):
    got = ingest.thread_refs(irt, refs)
    assert len(got) == len(set(got)) <= THREAD_MAX
    assert set(got) <= set(refs) | set(irt)
    assert set(irt[:ingest.THREAD_IN_REPLY_TO_MAX]) <= set(got)
    if refs:
        assert refs[0] in got
        assert set(refs[-(ingest.THREAD_REFERENCES_MAX - 1):]) <= set(got)
    if len(refs) <= ingest.THREAD_REFERENCES_MAX and len(irt) <= ingest.THREAD_IN_REPLY_TO_MAX:
        assert set(got) == set(refs) | set(irt)     # nothing dropped below the bounds


def test_a_message_with_200000_references_records_a_bounded_number(tmp_path):
    store = Store(tmp_path / "store")
    store.start()
    try:
        accounts.add_user(store, "alice", "pw")
        with store.view() as v:
            acc = v.account_by_name("alice").id
            ib = v.mailbox_by_role(acc, "inbox").id
        root = store.write_sync(ops.append, acc, [ib], ingest.prepare(_raw("root@x", [])))
        parent = store.write_sync(ops.append, acc, [ib], ingest.prepare(
            _raw("parent@x", ["root@x"])))
        before = _thr_refs(store, acc)
        chain = ["root@x"] + [f"r{i}@x" for i in range(200_000)]
        # threaded by its root (the first References id) ...
        a = store.write_sync(ops.append, acc, [ib], ingest.prepare(_raw("a@x", chain)))
        # ... and by its parent (the last one)
        b = store.write_sync(ops.append, acc, [ib], ingest.prepare(
            _raw("b@x", [f"x{i}@x" for i in range(200_000)] + ["parent@x"])))
        assert a.thread == b.thread == parent.thread == root.thread
        assert _thr_refs(store, acc) - before <= 2 * (THREAD_MAX + 1)
    finally:
        store.close()
