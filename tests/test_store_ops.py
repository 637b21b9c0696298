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


# --- composite operations (issue 6 item 6) -----------------------------------------------

from mailaccess.check import check_store  # noqa: E402
from mailaccess.store import InvalidName, keys  # noqa: E402


def account_snapshot(store, acc):
    """Every row of every table under ACC's key prefix (for isolation checks)."""
    pre = keys.account_prefix(acc)
    out = {}
    with store.read() as txn:
        for table, db in store.db.items():
            cur = txn.cursor(db=db)
            rows = []
            if cur.set_range(pre):
                for k, v in cur:
                    if not bytes(k).startswith(pre):
                        break
                    rows.append((bytes(k), bytes(v)))
            out[table] = rows
    return out


def test_move_mailbox_to_path_creates_parents_and_moves_subtree(store, acc):
    leaf = store.write_sync(ops.create_mailbox_path, acc, ["Work", "Old"])
    with store.view() as v:
        work = v.mailbox_by_path(acc, ["Work"]).id
    assert store.write_sync(ops.move_mailbox_to_path, acc, work, ["A", "B", "Job"]) == work
    with store.view() as v:
        assert v.mailbox_path(acc, leaf) == ["A", "B", "Job", "Old"]
        assert v.mailbox_by_path(acc, ["A", "B"]) is not None
        assert v.mailbox_by_path(acc, ["Work"]) is None
    # a plain rename at the same level creates nothing
    with store.view() as v:
        n = len(v.mailboxes(acc))
    store.write_sync(ops.move_mailbox_to_path, acc, leaf, ["A", "B", "Job", "New"])
    with store.view() as v:
        assert len(v.mailboxes(acc)) == n
        assert v.mailbox_path(acc, leaf) == ["A", "B", "Job", "New"]
    assert check_store(store) == []


def test_move_mailbox_to_path_failure_creates_no_parents(store, acc):
    work = store.write_sync(ops.create_mailbox_path, acc, ["Work"])
    with store.view() as v:
        before = len(v.mailboxes(acc))
    with pytest.raises(Conflict):       # under itself
        store.write_sync(ops.move_mailbox_to_path, acc, work, ["Work", "X", "Y"])
    with pytest.raises(AlreadyExists):  # target taken
        store.write_sync(ops.move_mailbox_to_path, acc, work, ["Sent"])
    with pytest.raises(InvalidName):
        store.write_sync(ops.move_mailbox_to_path, acc, work, [])
    with store.view() as v:
        assert len(v.mailboxes(acc)) == before      # "Work/X" rolled back
        assert v.mailbox_by_path(acc, ["Work", "X"]) is None
    with pytest.raises(NotFound):
        store.write_sync(ops.move_mailbox_to_path, acc, 999, ["Z"])


def test_move_mailbox_to_path_inbox_rule(store, acc):
    ib = inbox(store, acc)
    store.write_sync(ops.append, acc, [ib.id], new_email(b"one"), ["$seen"])
    store.write_sync(ops.append, acc, [ib.id], new_email(b"two"))
    new = store.write_sync(ops.move_mailbox_to_path, acc, ib.id, ["Saved", "Old Inbox"])
    assert new != ib.id
    with store.view() as v:
        i = v.mailbox(acc, ib.id)
        assert (i.name, i.role, i.total, i.unseen) == ("INBOX", "inbox", 0, 0)
        m = v.mailbox(acc, new)
        assert v.mailbox_path(acc, new) == ["Saved", "Old Inbox"]
        assert (m.total, m.unseen, m.role) == (2, 1, None)
    assert check_store(store) == []


def test_append_many_is_all_or_nothing(store, acc):
    ib = inbox(store, acc)
    items = [(new_email(b"a" * 10), ["$seen"]), (new_email(b"b" * 10), ["X"])]
    res = store.write_sync(ops.append_many, acc, ib.id, items, 0)
    assert [r.placed[0][2] for r in res] == [1, 2]
    store.write_sync(ops.set_quota, acc, 45)        # 20 used: 2 more fit, not 3
    with store.view() as v:
        ms = v.highest_modseq(acc)
    three = [(new_email(bytes([65 + i]) * 10), []) for i in range(3)]
    with pytest.raises(OverQuota):
        store.write_sync(ops.append_many, acc, ib.id, three, 0)
    with store.view() as v:
        assert v.mailbox(acc, ib.id).total == 2
        assert v.usage(acc) == 20
        assert v.highest_modseq(acc) == ms          # nothing logged, no modseq
    res = store.write_sync(ops.append_many, acc, ib.id, three[:2], 0)
    assert [r.placed[0][2] for r in res] == [3, 4]   # the failed request used no UID
    store.write_sync(ops.set_quota, acc, 0)
    with pytest.raises(NotFound):
        store.write_sync(ops.append_many, acc, 999, three[:1], 0)
    assert check_store(store) == []


def test_set_keywords_reporting(store, acc):
    ib = inbox(store, acc)
    eids = [store.write_sync(ops.append, acc, [ib.id], new_email(b"m%d" % i)).email
            for i in range(3)]
    with store.view() as v:
        ms0 = v.mailbox(acc, ib.id).highest_ms
    r = store.write_sync(ops.set_keywords_reporting, acc, ib.id, eids[:2], add=["$seen"])
    assert (r.changed, r.conflicts, r.modseq_before) == (eids[:2], [], ms0)
    with store.view() as v:
        assert r.modseq_after == v.mailbox(acc, ib.id).highest_ms > ms0
    # nothing to change: no new modseq
    r2 = store.write_sync(ops.set_keywords_reporting, acc, ib.id, eids[:2], add=["$seen"])
    assert (r2.changed, r2.modseq_before, r2.modseq_after) == ([], r.modseq_after, None)
    # UNCHANGEDSINCE: the first two changed after ms0
    r3 = store.write_sync(ops.set_keywords_reporting, acc, ib.id, eids, replace=["$flagged"],
                          unchanged_since=ms0)
    assert r3.conflicts == eids[:2] and r3.changed == [eids[2]]
    with store.view() as v:
        assert v.email(acc, eids[0]).keywords == ["$seen"]
        assert v.email(acc, eids[2]).keywords == ["$flagged"]
    with pytest.raises(NotFound):
        store.write_sync(ops.set_keywords_reporting, acc, 999, eids, add=["x"])


# --- JMAP-facing ops ---------------------------------------------------------------------

def test_set_mailboxes(store, acc):
    ib = inbox(store, acc)
    with store.view() as v:
        arch = v.mailbox_by_role(acc, "archive").id
        trash = v.mailbox_by_role(acc, "trash").id
    r = store.write_sync(ops.append, acc, [ib.id], new_email(b"hello"))
    store.write_sync(ops.set_mailboxes, acc, r.email, {ib.id, arch})
    with store.view() as v:
        assert sorted(m.mailbox for m in v.email(acc, r.email).members) == [ib.id, arch]
        assert v.uids(acc, arch) == [(1, r.email)]
        before = v.highest_modseq(acc)
    store.write_sync(ops.set_mailboxes, acc, r.email, {trash})
    with store.view() as v:
        assert [m.mailbox for m in v.email(acc, r.email).members] == [trash]
        assert v.uids(acc, ib.id) == [] and v.uids(acc, arch) == []
        for mbx in (ib.id, arch):
            assert [u for _, u in v.vanished_since(acc, mbx, before)] == [1]
            assert v.mailbox(acc, mbx).total == 0
        t = v.mailbox(acc, trash)
        assert (t.total, t.unseen, t.size) == (1, 1, 5)
        assert v.usage(acc) == 5
    # back into the archive: a new UID there (UIDs are never reused)
    store.write_sync(ops.set_mailboxes, acc, r.email, {arch})
    with store.view() as v:
        assert v.uids(acc, arch) == [(2, r.email)]
    with pytest.raises(Conflict):
        store.write_sync(ops.set_mailboxes, acc, r.email, set())
    with pytest.raises(NotFound):
        store.write_sync(ops.set_mailboxes, acc, 999, {arch})
    with pytest.raises(NotFound):
        store.write_sync(ops.set_mailboxes, acc, r.email, {arch, 999})
    with store.view() as v:
        assert v.uids(acc, arch) == [(2, r.email)]      # the failed request changed nothing
    assert check_store(store) == []


def test_destroy_emails(store, acc):
    ib = inbox(store, acc)
    with store.view() as v:
        arch = v.mailbox_by_role(acc, "archive").id
    a = store.write_sync(ops.append, acc, [ib.id, arch], new_email(b"shared"))
    b = store.write_sync(ops.append, acc, [ib.id], new_email(b"kept"))
    with store.view() as v:
        h = v.email(acc, a.email).blob
    assert store.write_sync(ops.destroy_emails, acc, [a.email, 999]) == [a.email]
    with store.view() as v:
        assert v.email(acc, a.email) is None and v.blob(acc, h) is None
        assert v.uids(acc, ib.id) == [(2, b.email)] and v.uids(acc, arch) == []
        assert v.usage(acc) == len(b"kept")
    assert store.write_sync(ops.destroy_emails, acc, [a.email]) == []
    assert check_store(store) == []


def test_device_state(store, acc):
    store.write_sync(ops.put_device_state, acc, "phone", "synckey", b"1")
    store.write_sync(ops.put_device_state, acc, "phone", "folder:5", b"\x00\x01")
    store.write_sync(ops.put_device_state, acc, "phone2", "synckey", b"9")
    with store.view() as v:
        assert v.device_state(acc, "phone", "synckey") == b"1"
        assert v.device_state(acc, "phone", "nope") is None
        assert sorted(v.device_keys(acc, "phone")) == ["folder:5", "synckey"]
        assert v.device_keys(acc, "phone2") == ["synckey"]      # not a prefix of "phone"
        assert v.device_keys(acc, "ph") == []
    store.write_sync(ops.put_device_state, acc, "phone", "synckey", b"2")
    store.write_sync(ops.delete_device_state, acc, "phone", "folder:5")
    with store.view() as v:
        assert v.device_state(acc, "phone", "synckey") == b"2"
        assert v.device_keys(acc, "phone") == ["synckey"]
    store.write_sync(ops.delete_device_state, acc, "phone")
    with store.view() as v:
        assert v.device_keys(acc, "phone") == []
        assert v.device_keys(acc, "phone2") == ["synckey"]
    with pytest.raises(NotFound):
        store.write_sync(ops.put_device_state, 999, "phone", "k", b"v")
    # a device name with NUL would alias another device's keys
    with pytest.raises(InvalidName):
        store.write_sync(ops.put_device_state, acc, "phone2\0synckey", "x", b"v")


def test_jmap_ops_never_touch_another_account(store, acc):
    """Ids are per account: bob's ops on ids bob does not have fail with
    NotFound (or do nothing); on ids bob has too, only bob's data changes."""
    bob = store.write_sync(ops.create_account, "bob", "h")
    ib = inbox(store, acc)
    mine = store.write_sync(ops.create_mailbox, acc, 0, "Alice only")   # id 7, bob has 1-6
    eids = [store.write_sync(ops.append, acc, [ib.id, mine], new_email(b"a%d" % i)).email
            for i in range(3)]
    store.write_sync(ops.put_device_state, acc, "phone", "synckey", b"alice")
    b1 = store.write_sync(ops.append, bob, [1], new_email(b"bob's")).email
    assert b1 == eids[0]        # the same number names two different emails
    alice = account_snapshot(store, acc)

    with pytest.raises(NotFound):
        store.write_sync(ops.set_mailboxes, bob, eids[2], {1})
    with pytest.raises(NotFound):
        store.write_sync(ops.set_mailboxes, bob, b1, {mine})
    with pytest.raises(NotFound):
        store.write_sync(ops.move_mailbox_to_path, bob, mine, ["X"])
    with pytest.raises(NotFound):
        store.write_sync(ops.append_many, bob, mine, [(new_email(b"x"), [])], 0)
    with pytest.raises(NotFound):
        store.write_sync(ops.set_keywords_reporting, bob, mine, eids, add=["$seen"])
    assert store.write_sync(ops.destroy_emails, bob, eids[1:]) == []
    assert store.write_sync(ops.set_keywords, bob, eids[1:], add=["x"]) == ([], [])
    store.write_sync(ops.delete_device_state, bob, "phone")
    store.write_sync(ops.put_device_state, bob, "phone", "synckey", b"bob")
    # on the shared number, bob's op changes bob's email
    store.write_sync(ops.set_mailboxes, bob, b1, {2})
    store.write_sync(ops.set_keywords_reporting, bob, 2, [b1], add=["$seen"])
    with store.view() as v:
        assert v.device_state(acc, "phone", "synckey") == b"alice"
        assert v.device_state(bob, "phone", "synckey") == b"bob"
        assert v.email(bob, b1).keywords == ["$seen"]
    store.write_sync(ops.destroy_emails, bob, [b1])
    store.write_sync(ops.delete_device_state, bob, "phone")
    assert account_snapshot(store, acc) == alice
    assert check_store(store) == []


def test_set_keywords_reporting_records_are_the_stores(store, acc):
    """records=True: {eid: record after the request} for every email found
    and not in conflict, changed or not, each the bytes a view reads after
    the commit (IMAP STORE formats its answer from them)."""
    ib = inbox(store, acc)
    with store.view() as v:
        other = v.mailbox_by_role(acc, "archive")
    eids = [store.write_sync(ops.append, acc, [ib.id] + ([other.id] if i % 3 == 0 else []),
                             new_email(b"r%d" % i), ["$seen"] if i % 2 else []).email
            for i in range(12)]
    with store.view() as v:
        ms0 = v.mailbox(acc, ib.id).highest_ms
    store.write_sync(ops.set_keywords, acc, eids[:2], add=["$flagged"])
    asked = eids + [eids[3], 99_999]          # one named twice, one that does not exist
    r = store.write_sync(ops.set_keywords_reporting, acc, ib.id, asked, add=["$seen", "Custom"],
                         unchanged_since=ms0, records=True)
    # (named again, the email is read from its new record: changed since ms0)
    assert r.conflicts == eids[:2] + [eids[3]]
    assert sorted(r.records) == eids[2:]
    with store.view() as v:
        read = v.email_reader(acc)
        for eid, rec in r.records.items():
            assert type(rec) is bytes and rec == bytes(read(eid))
        # eids[0] (unseen, in both mailboxes) conflicted: the only unseen one left
        assert v.mailbox(acc, ib.id).unseen == 1 and v.mailbox(acc, other.id).unseen == 1
    # nothing changes: the records are read as they are
    r2 = store.write_sync(ops.set_keywords_reporting, acc, ib.id, eids[2:], add=["custom"],
                          records=True)
    assert r2.changed == [] and r2.modseq_after is None
    with store.view() as v:
        assert all(rec == bytes(v.email_reader(acc)(e)) for e, rec in r2.records.items())
    assert store.write_sync(ops.set_keywords_reporting, acc, ib.id, eids,
                            add=["x"]).records is None
