"""Store operations on a real LMDB store in a temp dir (no indexer needed)."""
import hashlib

import pytest

from mailaccess.store import AlreadyExists, Conflict, NotFound, OverQuota, Store, ops, records


def new_email(raw: bytes, mid=None, refs=(), subj=b"s" * 8, when=1_700_000_000):
    return ops.NewEmail(raw=raw, index=b"\x00idx", blob=hashlib.sha256(raw).digest(),
                        received_at=when, message_id=mid, thread_refs=tuple(refs),
                        subject_hash=subj)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    yield s
    s.close()


@pytest.fixture
def acc(store):
    return store.write_sync(ops.create_account, "alice", "hash")


def inbox(store, acc):
    with store.view() as v:
        return v.mailbox_by_role(acc, "inbox")


def test_account_has_default_mailboxes(store, acc):
    with store.view() as v:
        roles = {m.role: m.name for m in v.mailboxes(acc)}
        assert roles == {"inbox": "INBOX", "drafts": "Drafts", "sent": "Sent",
                         "trash": "Trash", "junk": "Junk", "archive": "Archive"}
        assert v.account_by_name("ALICE").id == acc
    with pytest.raises(AlreadyExists):
        store.write_sync(ops.create_account, "Alice", "x")


def test_append_uids_increase_and_modseq_moves(store, acc):
    ib = inbox(store, acc)
    r1 = store.write_sync(ops.append, acc, [ib.id], new_email(b"one"))
    r2 = store.write_sync(ops.append, acc, [ib.id], new_email(b"two"), ["$seen"])
    assert r1.placed[0][2] == 1 and r2.placed[0][2] == 2
    with store.view() as v:
        m = v.mailbox(acc, ib.id)
        assert (m.total, m.unseen, m.uidnext) == (2, 1, 3)
        assert v.uids(acc, ib.id) == [(1, r1.email), (2, r2.email)]
        e2 = v.email(acc, r2.email)
        assert e2.keywords == ["$seen"] and e2.last_ms == m.highest_ms
        assert bytes(v.blob(acc, e2.blob)) == b"two"


def test_expunge_deletes_blob_and_logs_vanished(store, acc):
    ib = inbox(store, acc)
    r1 = store.write_sync(ops.append, acc, [ib.id], new_email(b"one"))
    with store.view() as v:
        before = v.highest_modseq(acc)
        h = v.email(acc, r1.email).blob
    assert store.write_sync(ops.expunge, acc, ib.id, [1, 99]) == [1]
    with store.view() as v:
        assert v.email(acc, r1.email) is None
        assert v.blob(acc, h) is None and v.blob_index(acc, h) is None
        assert [u for _, u in v.vanished_since(acc, ib.id, before)] == [1]
        assert v.mailbox(acc, ib.id).total == 0
        ch = v.changes_since(acc, before)
        assert ch[-1].destroyed["Email"] == [r1.email]


def test_dedup_blob_refcount(store, acc):
    ib = inbox(store, acc)
    a = store.write_sync(ops.append, acc, [ib.id], new_email(b"same"))
    b = store.write_sync(ops.append, acc, [ib.id], new_email(b"same"))
    with store.view() as v:
        h = v.email(acc, a.email).blob
        assert sorted(v.blob_refs(acc, h)) == [a.email, b.email]
    store.write_sync(ops.expunge, acc, ib.id, [1])
    with store.view() as v:
        assert bytes(v.blob(acc, h)) == b"same"
    store.write_sync(ops.expunge, acc, ib.id, [2])
    with store.view() as v:
        assert v.blob(acc, h) is None


def test_keywords_unchangedsince_and_changed_since(store, acc):
    ib = inbox(store, acc)
    r = store.write_sync(ops.append, acc, [ib.id], new_email(b"x"))
    with store.view() as v:
        ms0 = v.email(acc, r.email).last_ms
    changed, conflicts = store.write_sync(ops.set_keywords, acc, [r.email], add=["$Seen", "Custom"])
    assert changed == [r.email] and not conflicts
    with store.view() as v:
        e = v.email(acc, r.email)
        assert e.keywords == ["$seen", "custom"]
        assert v.changed_since(acc, ib.id, ms0) == [(e.last_ms, 1)]
        assert v.mailbox(acc, ib.id).unseen == 0
        assert v.mailbox(acc, ib.id).highest_ms == e.last_ms
    changed, conflicts = store.write_sync(ops.set_keywords, acc, [r.email], remove=["$seen"],
                                          unchanged_since=ms0)
    assert conflicts == [r.email] and not changed
    # no-op change allocates nothing
    changed, _ = store.write_sync(ops.set_keywords, acc, [r.email], add=["custom"])
    assert changed == []


def test_copy_move_share_email_id(store, acc):
    ib = inbox(store, acc)
    with store.view() as v:
        arch = v.mailbox_by_role(acc, "archive").id
        trash = v.mailbox_by_role(acc, "trash").id
    r = store.write_sync(ops.append, acc, [ib.id], new_email(b"x"))
    assert store.write_sync(ops.copy, acc, [r.email], arch) == [1]
    assert store.write_sync(ops.move, acc, ib.id, [1], trash) == [(1, 1)]
    with store.view() as v:
        e = v.email(acc, r.email)
        assert sorted(m.mailbox for m in e.members) == sorted([arch, trash])
        assert v.uids(acc, ib.id) == []
        # every mailbox's HIGHESTMODSEQ covers the message's modseq
        for m in e.members:
            assert v.mailbox(acc, m.mailbox).highest_ms >= e.last_ms
    # copying into a mailbox that has it makes a second message (IMAP semantics)
    assert store.write_sync(ops.copy, acc, [r.email], arch) == [2]


def test_threading_by_references_and_subject(store, acc):
    ib = inbox(store, acc)
    a = store.write_sync(ops.append, acc, [ib.id], new_email(b"a", mid="a@x"))
    b = store.write_sync(ops.append, acc, [ib.id], new_email(b"b", mid="b@x", refs=["a@x"]))
    c = store.write_sync(ops.append, acc, [ib.id],
                         new_email(b"c", mid="c@x", refs=["a@x"], subj=b"other!!"))
    # a reply that arrives before its parent
    d = store.write_sync(ops.append, acc, [ib.id], new_email(b"d", mid="d@x", refs=["e@x"]))
    e = store.write_sync(ops.append, acc, [ib.id], new_email(b"e", mid="e@x"))
    assert a.thread == b.thread == a.email
    assert c.thread != a.thread
    assert e.thread == d.thread


def test_mailbox_tree_rename_delete(store, acc):
    mbx = store.write_sync(ops.create_mailbox_path, acc, ["Work", "Projects", "Été"])
    with store.view() as v:
        assert v.mailbox_path(acc, mbx) == ["Work", "Projects", "Été"]
        work = v.mailbox_by_path(acc, ["Work"]).id
    store.write_sync(ops.rename_mailbox, acc, work, 0, "Job")
    with store.view() as v:
        assert v.mailbox_path(acc, mbx) == ["Job", "Projects", "Été"]
    with pytest.raises(Conflict):
        store.write_sync(ops.delete_mailbox, acc, work)
    with pytest.raises(Conflict):
        store.write_sync(ops.rename_mailbox, acc, work, mbx, "Loop")
    with pytest.raises(Conflict):
        store.write_sync(ops.delete_mailbox, acc, inbox(store, acc).id)


def test_accounts_are_isolated(store, acc):
    bob = store.write_sync(ops.create_account, "bob", "h")
    ib = inbox(store, acc)
    r = store.write_sync(ops.append, acc, [ib.id], new_email(b"secret"))
    with store.view() as v:
        assert v.email(bob, r.email) is None
        assert v.blob(bob, v.email(acc, r.email).blob) is None
        assert [m.id for m in v.mailboxes(bob)] == [1, 2, 3, 4, 5, 6]  # ids are per account
        assert v.uids(bob, 1) == []
    arch = store.write_sync(ops.create_mailbox, acc, 0, "Mine")
    with pytest.raises(NotFound):
        store.write_sync(ops.append, bob, [arch], new_email(b"x"))
    with pytest.raises(NotFound):
        store.write_sync(ops.copy, bob, [r.email], 1)


def test_quota(store, acc):
    ib = inbox(store, acc)
    store.write_sync(ops.set_quota, acc, 10)
    store.write_sync(ops.append, acc, [ib.id], new_email(b"12345"))
    with pytest.raises(OverQuota):
        store.write_sync(ops.append, acc, [ib.id], new_email(b"1234567"))


def test_failed_request_does_not_spoil_batch(store, acc):
    import threading
    ib = inbox(store, acc)
    results = []
    def one(i):
        try:
            mbx = ib.id if i % 2 else 12345
            results.append(store.write_sync(ops.append, acc, [mbx], new_email(b"m%d" % i)))
        except NotFound:
            results.append("nf")
    ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert results.count("nf") == 20
    with store.view() as v:
        assert v.mailbox(acc, ib.id).total == 20


def test_map_grows(tmp_path):
    s = Store(tmp_path / "small", map_size=1 << 20)
    s.start()
    try:
        acc = s.write_sync(ops.create_account, "a", "h")
        with s.view() as v:
            ib = v.mailbox_by_role(acc, "inbox").id
        for i in range(30):
            s.write_sync(ops.append, acc, [ib], new_email(bytes([i]) * 100_000))
        with s.view() as v:
            assert v.mailbox(acc, ib).total == 30
    finally:
        s.close()


def test_delete_account_removes_everything(store, acc):
    ib = inbox(store, acc)
    store.write_sync(ops.append, acc, [ib.id], new_email(b"x"))
    store.write_sync(ops.delete_account, acc)
    with store.view() as v:
        assert v.account(acc) is None and v.account_by_name("alice") is None
        assert v.mailboxes(acc) == [] and v.email_ids(acc) == []


def test_change_log_coalesces_within_a_request(store, acc):
    from mailaccess.store.records import EMAIL

    def req(tx):
        tx.log(acc, "created", EMAIL, 1)
        tx.log(acc, "updated", EMAIL, 1)      # created+updated = created
        tx.log(acc, "created", EMAIL, 2)
        tx.log(acc, "destroyed", EMAIL, 2)    # created+destroyed = nothing
        tx.log(acc, "destroyed", EMAIL, 3)
        tx.log(acc, "created", EMAIL, 3)      # destroyed+created = updated
        tx.log(acc, "updated", EMAIL, 4)
        tx.log(acc, "destroyed", EMAIL, 4)    # updated+destroyed = destroyed
        return tx.modseq(acc)

    ms = store.write_sync(req)
    with store.view() as v:
        [c] = v.changes_since(acc, ms - 1)
    assert c.created == {EMAIL: [1]}
    assert c.updated == {EMAIL: [3]}
    assert c.destroyed == {EMAIL: [4]}
