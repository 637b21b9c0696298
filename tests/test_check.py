"""check_store: a consistent store passes; each corrupted invariant is named.

The store is built through ops (no indexer needed: NewEmail is made here);
corruption is written as raw keys through a write transaction."""
import hashlib
from types import SimpleNamespace

import pytest

from mailaccess.check import check_store
from mailaccess.store import Store, keys, ops, records


def new_email(raw: bytes, mid=None, refs=(), when=1_700_000_000):
    return ops.NewEmail(raw=raw, index=b"\x00idx", blob=hashlib.sha256(raw).digest(),
                        received_at=when, message_id=mid, thread_refs=tuple(refs),
                        subject_hash=b"s" * 8)


@pytest.fixture
def built(tmp_path):
    """A store with two accounts, copies, keywords, an expunge, a thread."""
    s = Store(tmp_path / "data")
    s.start()
    acc = s.write_sync(ops.create_account, "alice", "x")
    other = s.write_sync(ops.create_account, "bob", "x")
    with s.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
        arch = v.mailbox_by_role(acc, "archive").id
    sub = s.write_sync(ops.create_mailbox_path, acc, ["Work", "Projects"])
    eids = []
    for i in range(30):
        r = s.write_sync(ops.append, acc, [inbox], new_email(b"message %d" % i, f"<{i}@x>",
                                                             [f"<{i - 1}@x>"] if i else []),
                         ["$seen"] if i % 3 else [])
        eids.append(r.email)
    s.write_sync(ops.append, acc, [inbox, sub], new_email(b"message 1"))   # shared blob
    s.write_sync(ops.append, other, [inbox], new_email(b"bob's"))
    s.write_sync(ops.copy, acc, eids[:5], arch)
    s.write_sync(ops.set_keywords, acc, eids[3:8], add=["$flagged", "custom"])
    s.write_sync(ops.expunge, acc, inbox, [10, 11])
    s.write_sync(ops.move, acc, inbox, [12, 13], sub)
    with s.view() as v:
        e = v.email(acc, eids[0])
        mb = v.mailbox(acc, inbox)
    yield SimpleNamespace(store=s, acc=acc, inbox=inbox, sub=sub, arch=arch, eid=eids[0],
                          email=e, mbox=mb, ms=None)
    s.close()


def test_consistent_store_passes(built):
    assert check_store(built.store) == []


def test_empty_store_passes(tmp_path):
    s = Store(tmp_path / "d")
    s.start()
    try:
        assert check_store(s) == []
    finally:
        s.close()


def _mbox_with(b, **changes):
    m = records.Mailbox(**{f: getattr(b.mbox, f) for f in b.mbox.__slots__})
    for k, v in changes.items():
        setattr(m, k, v)
    return keys.mbox(b.acc, m.id), records.encode_mailbox(m)


def _email_with(b, **changes):
    e = b.email
    r = records.EmailRecord(e.id, e.blob, e.received_at, e.tz, e.size, e.thread, e.last_ms,
                            list(e.keywords), list(e.members))
    for k, v in changes.items():
        setattr(r, k, v)
    return keys.msg(b.acc, r.id), records.encode_email(r)


def _modseq(b):
    with b.store.view() as v:
        return v.highest_modseq(b.acc)


CASES = {
    "uid to missing email": (
        lambda tx, b: tx.put("uid", keys.uid(b.acc, b.inbox, 2), keys.u32(9999)),
        "points at email 9999, which does not exist"),
    "uid to email without that membership": (
        lambda tx, b: tx.put("uid", keys.uid(b.acc, b.arch, 1), keys.u32(b.eid + 20)),
        "whose record does not list that membership"),
    "membership without uid": (
        lambda tx, b: tx.delete("uid", keys.uid(b.acc, b.inbox, b.email.uid_in(b.inbox))),
        "has no uid entry pointing back"),
    "uid not below uidnext": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, uidnext=5)),
        "is not below uidnext 5"),
    "second mbx.ms entry": (
        lambda tx, b: tx.put("mbx.ms", keys.mbx_ms(b.acc, b.inbox, 1,
                                                   b.email.uid_in(b.inbox)), b""),
        "mbx.ms entries"),
    "mbx.ms missing": (
        lambda tx, b: tx.delete("mbx.ms", keys.mbx_ms(b.acc, b.inbox, b.email.last_ms,
                                                      b.email.uid_in(b.inbox))),
        "no mbx.ms entry for"),
    "mbx.ms for a uid not in the mailbox": (
        lambda tx, b: tx.put("mbx.ms", keys.mbx_ms(b.acc, b.inbox, 3, 777), b""),
        "mbx.ms entry for UID 777, which is not in the mailbox"),
    "blob missing": (
        lambda tx, b: tx.delete("blob", keys.blob(b.acc, b.email.blob)),
        "missing"),
    "blob.idx missing": (
        lambda tx, b: tx.delete("blob.idx", keys.blob(b.acc, b.email.blob)),
        "blob.idx"),
    "blob.ref missing": (
        lambda tx, b: tx.delete("blob.ref", keys.blob_ref(b.acc, b.email.blob, b.eid)),
        "blob.ref entry for its blob missing"),
    "orphan blob": (
        lambda tx, b: tx.put("blob", keys.blob(b.acc, b"\x07" * 32), b"junk"),
        "orphan (no blob.ref)"),
    "orphan blob.idx": (
        lambda tx, b: tx.put("blob.idx", keys.blob(b.acc, b"\x07" * 32), b"junk"),
        "blob.idx 0707070707070707: orphan"),
    "orphan blob.ref": (
        lambda tx, b: tx.put("blob.ref", keys.blob_ref(b.acc, b"\x07" * 32, 4444), b""),
        "-> email 4444, which does not exist"),
    "blob size": (
        lambda tx, b: tx.put("msg", *_email_with(b, size=b.email.size + 1)),
        "but its blob holds"),
    "counter total": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, total=b.mbox.total + 1)),
        "counters total/unseen/size"),
    "counter unseen": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, unseen=0)),
        "counters total/unseen/size"),
    "counter size": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, size=1)),
        "counters total/unseen/size"),
    "mailbox highest_ms below a member": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, highest_ms=1)),
        "below the last_ms"),
    "mailbox highest_ms above modseq": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, highest_ms=10 ** 9)),
        "highest_ms 1000000000 above the account modseq"),
    "change above modseq": (
        lambda tx, b: tx.put("chg", keys.chg(b.acc, 10 ** 6),
                             records.encode_change(records.Change(10 ** 6))),
        "change log: modseq 1000000 above the account modseq"),
    "email last_ms above modseq": (
        lambda tx, b: tx.put("msg", *_email_with(b, last_ms=10 ** 7)),
        "last_ms 10000000 above the account modseq"),
    "parent missing": (
        lambda tx, b: tx.put("mbox", *_mbox_with(b, parent=999)),
        "parent 999 does not exist"),
    "mbox.name missing": (
        lambda tx, b: tx.delete("mbox.name", keys.mbox_name(b.acc, 0, "INBOX")),
        "mbox.name entry for (parent 0, name) does not point at it"),
    "mbox.name to another mailbox": (
        lambda tx, b: tx.put("mbox.name", keys.mbox_name(b.acc, 0, "Ghost"),
                             keys.u32(b.inbox)),
        "'Ghost') -> mailbox"),
    "usage": (
        lambda tx, b: tx.put("ctr", keys.ctr(b.acc, keys.CTR_USAGE), keys.u64(1)),
        "usage counter 1 but"),
    "thr.mem wrong thread": (
        lambda tx, b: tx.put("thr.mem", keys.thr_mem(b.acc, 777, b.eid), b""),
        "whose thread is"),
    "thr.mem missing": (
        lambda tx, b: tx.delete("thr.mem", keys.thr_mem(b.acc, b.email.thread, b.eid)),
        "thr.mem entry for thread"),
    "email in no mailbox": (
        lambda tx, b: tx.put("msg", keys.msg(b.acc, 5000), records.encode_email(
            records.EmailRecord(5000, b.email.blob, 0, 0, b.email.size, b.email.thread, 1))),
        "email 5000: in no mailbox"),
    "keyword case": (
        lambda tx, b: tx.put("msg", *_email_with(b, keywords=["$Seen"])),
        "is not lowercase"),
    "duplicate membership": (
        lambda tx, b: tx.put("msg", *_email_with(b, members=b.email.members * 2)),
        "twice in mailbox"),
    "vanished uid still live": (
        lambda tx, b: tx.put("vanished", keys.vanished(b.acc, b.inbox, 2,
                                                       b.email.uid_in(b.inbox)), b""),
        "is both live and vanished"),
    "orphan account data": (
        lambda tx, b: tx.put("msg", keys.msg(77, 1), b"x"),
        "table msg: entries under account 77"),
    "acct.name dangling": (
        lambda tx, b: tx.put("acct.name", keys.acct_name("ghost"), keys.u32(55)),
        "acct.name 'ghost' -> account 55"),
    "role twice": (
        lambda tx, b: tx.put("mbox", keys.mbox(b.acc, b.sub), records.encode_mailbox(
            records.Mailbox(b.sub, "Projects", b.sub - 1, "inbox", 1, 1, 1, 1))),
        "role inbox also held by"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corruption_is_reported(built, case):
    corrupt, expected = CASES[case]
    built.store.write_sync(corrupt, built)
    problems = check_store(built.store)
    assert problems, case
    assert any(expected in p for p in problems), problems
    if "account 77" not in expected and "ghost" not in expected:
        assert all(p.startswith("account ") for p in problems), problems
