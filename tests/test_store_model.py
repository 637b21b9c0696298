"""A random-operation model test of the store (hypothesis stateful).

A real Store on a temp dir runs append, append_many, copy, move, expunge,
set_keywords, set_mailboxes, destroy_emails, create/rename/delete of
mailboxes and quota changes through ``write_sync`` (the writer thread, one
nested transaction per request); a plain-Python model predicts each result,
including the errors.  After every step the two must agree on mailboxes (name,
parent, role, uidnext, total/unseen/size), UID -> email maps, emails
(keywords, size, mailboxes), quota usage and the modseq clock (it moves on
every successful change and on nothing else); a second account must not
change at all.  Each run ends with ``check_store`` (every invariant of
mailaccess/check.py).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from mailaccess import vocab
from mailaccess.check import check_store
from mailaccess.store import (AlreadyExists, Conflict, NotFound, OverQuota, Store, StoreError,
                              keys, ops)

NAMES = ["a", "b", "Work", "Été"]
BODIES = [b"x" * 10, b"y" * 25, b"hello world", b"z" * 40]       # repeats share a blob
KEYWORDS = [vocab.SEEN, vocab.FLAGGED, vocab.DELETED, "Custom", "custom", "$Forwarded"]


def new_email(raw: bytes) -> ops.NewEmail:
    return ops.NewEmail(raw=raw, index=b"\x00idx", blob=hashlib.sha256(raw).digest(),
                        received_at=1_700_000_000, subject_hash=b"s" * 8)


@dataclass
class MBox:
    name: str
    parent: int
    role: str | None
    uidnext: int = 1
    uids: dict[int, int] = field(default_factory=dict)     # uid -> eid


@dataclass
class Email:
    size: int
    keywords: set[str]
    last_ms: int = 0         # the modseq of its last change (CONDSTORE MODSEQ)


class Model:
    """What the store should hold for one account."""

    def __init__(self):
        self.boxes: dict[int, MBox] = {}
        self.emails: dict[int, Email] = {}
        self.next_mbx = 1
        self.next_eid = 1
        self.quota = 0
        self.touched: set[int] = set()    # emails the current step changed

    def touch(self, eid: int) -> None:
        self.touched.add(eid)

    # --- queries ---
    def child(self, parent: int, name: str) -> int | None:
        for i, b in self.boxes.items():
            if b.parent == parent and b.name == name:
                return i
        return None

    def children(self, mbx: int) -> list[int]:
        return [i for i, b in self.boxes.items() if b.parent == mbx]

    def by_role(self, role: str) -> int | None:
        for i, b in self.boxes.items():
            if b.role == role:
                return i
        return None

    def members(self, eid: int) -> dict[int, int]:
        """{mailbox: uid} of EID."""
        return {m: u for m, b in self.boxes.items() for u, e in b.uids.items() if e == eid}

    def usage(self) -> int:
        return sum(e.size for e in self.emails.values())

    # --- changes (called only when the op is predicted to succeed) ---
    def create(self, parent: int, name: str, role: str | None = None) -> int:
        mbx = self.next_mbx
        self.next_mbx += 1
        self.boxes[mbx] = MBox(name, parent, role)
        return mbx

    def add(self, mbx: int, eid: int) -> int:
        self.touch(eid)
        b = self.boxes[mbx]
        uid = b.uidnext
        b.uidnext += 1
        b.uids[uid] = eid
        return uid

    def new_email(self, size: int, kws) -> int:
        eid = self.next_eid
        self.next_eid += 1
        self.emails[eid] = Email(size, {k.lower() for k in kws})
        self.touch(eid)
        return eid

    def remove(self, mbx: int, uid: int) -> None:
        eid = self.boxes[mbx].uids.pop(uid)
        self.touch(eid)
        if not self.members(eid):
            del self.emails[eid]


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None   # cheap fsync
        self.dir = tempfile.mkdtemp(prefix="mailaccess-model-", dir=base)
        self.store = Store(self.dir)
        self.store.start()
        self.acc = self.store.write_sync(ops.create_account, "alice", "x")
        self.bob = self.store.write_sync(ops.create_account, "bob", "x")
        self.store.write_sync(ops.append, self.bob, [1], new_email(b"bob's"), ["$seen"])
        self.bob_rows = self.snapshot(self.bob)
        self.m = Model()
        for name, role in vocab.DEFAULT_MAILBOXES:
            self.m.create(0, name, role)
        self.modseq = self.highest_modseq()

    def teardown(self):
        try:
            assert check_store(self.store) == []
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers -------------------------------------------------------------------------

    def highest_modseq(self) -> int:
        with self.store.view() as v:
            return v.highest_modseq(self.acc)

    def snapshot(self, acc: int):
        pre = keys.account_prefix(acc)
        out = {}
        with self.store.read() as txn:
            for table, db in self.store.db.items():
                cur = txn.cursor(db=db)
                rows = []
                if cur.set_range(pre):
                    for k, v in cur:
                        if not bytes(k).startswith(pre):
                            break
                        rows.append((bytes(k), bytes(v)))
                out[table] = rows
        return out

    def run(self, expected: type[StoreError] | None, fn, *args, **kw):
        """Run FN on the store; it must raise EXPECTED (and change nothing) or
        succeed (and move the modseq clock when CHANGES)."""
        try:
            result = self.store.write_sync(fn, self.acc, *args, **kw)
        except StoreError as exc:
            assert expected is not None and isinstance(exc, expected), \
                f"{fn.__name__} raised {exc!r}, the model expected {expected}"
            assert self.highest_modseq() == self.modseq, "a failed request moved the modseq"
            return None
        assert expected is None, f"{fn.__name__} succeeded, the model expected {expected}"
        return result

    def changed(self, yes: bool = True) -> None:
        ms = self.highest_modseq()
        if yes:
            assert ms > self.modseq, "a change did not move the modseq"
        else:
            assert ms == self.modseq, "nothing changed but the modseq moved"
        self.modseq = ms
        for eid in self.m.touched:
            if eid in self.m.emails:
                self.m.emails[eid].last_ms = ms
        self.m.touched.clear()

    def draw_box(self, data, any_id: bool = False) -> int:
        ids = sorted(self.m.boxes)
        if any_id:
            ids = ids + [max(ids) + 50]        # a mailbox that does not exist
        return data.draw(st.sampled_from(ids))

    def draw_uids(self, data, mbx: int) -> list[int]:
        b = self.m.boxes[mbx]
        pool = sorted(b.uids) + [b.uidnext, b.uidnext + 7]   # and some that are not there
        return data.draw(st.lists(st.sampled_from(pool), max_size=4))

    def path_of(self, mbx: int) -> list[str]:
        out = []
        while mbx:
            b = self.m.boxes[mbx]
            out.append(b.name)
            mbx = b.parent
        return out[::-1]

    # --- rules: mailboxes ------------------------------------------------------------------

    @rule(data=st.data(), name=st.sampled_from(NAMES),
          role=st.sampled_from([None, None, None, vocab.ROLE_ALL, vocab.ROLE_FLAGGED]))
    def create_mailbox(self, data, name, role):
        parent = data.draw(st.sampled_from([0] + sorted(self.m.boxes)))
        if self.m.child(parent, name) is not None:
            exp = AlreadyExists
        elif role is not None and self.m.by_role(role) is not None:
            exp = AlreadyExists
        else:
            exp = None
        got = self.run(exp, ops.create_mailbox, parent, name, role=role)
        if exp is None:
            assert got == self.m.create(parent, name, role)
            self.changed()

    @rule(data=st.data())
    def delete_mailbox(self, data):
        mbx = self.draw_box(data)
        b = self.m.boxes[mbx]
        exp = Conflict if b.role == vocab.ROLE_INBOX or self.m.children(mbx) else None
        self.run(exp, ops.delete_mailbox, mbx)
        if exp is None:
            for uid in list(b.uids):
                self.m.remove(mbx, uid)
            del self.m.boxes[mbx]
            self.changed()

    @rule(data=st.data(), path=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    def move_mailbox_to_path(self, data, path):
        mbx = self.draw_box(data)
        m = self.m
        # the parents: existing ones, then the ones to create
        parent, existing, to_create = 0, True, []
        for part in path[:-1]:
            if existing:
                nxt = m.child(parent, part)
                if nxt is not None:
                    parent = nxt
                    continue
                existing = False
            to_create.append(part)
        exp = None
        inbox = m.boxes[mbx].role == vocab.ROLE_INBOX
        if not inbox:
            p = parent
            while p:                                  # under itself?
                if p == mbx:
                    exp = Conflict
                    break
                p = m.boxes[p].parent
        if exp is None and not to_create and m.child(parent, path[-1]) is not None:
            exp = AlreadyExists
        got = self.run(exp, ops.move_mailbox_to_path, mbx, path)
        if exp is not None:
            return
        for part in to_create:
            parent = m.create(parent, part)
        if inbox:
            dst = m.create(parent, path[-1])
            src = m.boxes[mbx]
            for uid in sorted(src.uids):
                m.add(dst, src.uids.pop(uid))
            assert got == dst
        else:
            m.boxes[mbx].parent, m.boxes[mbx].name = parent, path[-1]
            assert got == mbx
        self.changed()

    # --- rules: emails ---------------------------------------------------------------------

    def predict_append(self, items: list[tuple[bytes, list[str]]], mbx_exists: bool = True):
        """Each message is checked in turn: the quota, then the mailbox."""
        used = self.m.usage()
        for raw, _ in items:
            used += len(raw)
            if self.m.quota and used > self.m.quota:
                return OverQuota
            if not mbx_exists:
                return NotFound
        return None

    @rule(data=st.data(), raw=st.sampled_from(BODIES),
          kws=st.lists(st.sampled_from(KEYWORDS), max_size=3))
    def append(self, data, raw, kws):
        boxes = data.draw(st.lists(st.sampled_from(sorted(self.m.boxes)), min_size=1,
                                   max_size=3))
        exp = self.predict_append([(raw, kws)])
        got = self.run(exp, ops.append, boxes, new_email(raw), kws)
        if exp is None:
            eid = self.m.new_email(len(raw), kws)
            placed = [(mbx, self.m.add(mbx, eid)) for mbx in dict.fromkeys(boxes)]
            assert got.email == eid
            assert [(mbx, uid) for mbx, _v, uid in got.placed] == placed
            self.changed()

    @rule(data=st.data(), items=st.lists(st.tuples(st.sampled_from(BODIES),
                                                   st.lists(st.sampled_from(KEYWORDS),
                                                            max_size=2)),
                                         min_size=1, max_size=3))
    def append_many(self, data, items):
        mbx = self.draw_box(data, any_id=True)
        exp = self.predict_append(items, mbx in self.m.boxes)
        got = self.run(exp, ops.append_many, mbx, [(new_email(r), k) for r, k in items])
        if exp is None:
            for (raw, kws), res in zip(items, got):
                eid = self.m.new_email(len(raw), kws)
                assert (res.email, res.placed[0][2]) == (eid, self.m.add(mbx, eid))
            self.changed()

    @precondition(lambda self: self.m.emails)
    @rule(data=st.data())
    def copy(self, data):
        eids = data.draw(st.lists(st.sampled_from(sorted(self.m.emails)), min_size=1,
                                  max_size=3))
        dst = self.draw_box(data)
        got = self.run(None, ops.copy, eids, dst)
        want = []
        for eid in eids:
            if dst in self.m.members(eid):     # IMAP-only: COPY makes a new email
                e = self.m.emails[eid]
                eid = self.m.new_email(e.size, e.keywords)
            want.append(self.m.add(dst, eid))
        assert got == want
        self.changed()

    @rule(data=st.data())
    def move(self, data):
        src = self.draw_box(data)
        dst = self.draw_box(data)
        uids = self.draw_uids(data, src)
        # src == dst (RFC 6851 allows it): each message gets a new UID there
        got = self.run(None, ops.move, src, uids, dst)
        want = []
        for uid in sorted(set(uids)):
            eid = self.m.boxes[src].uids.pop(uid, None)
            if eid is None:
                continue
            self.m.touch(eid)
            already = self.m.members(eid).get(dst)
            want.append((uid, already if already is not None else self.m.add(dst, eid)))
        assert got == want
        self.changed(bool(want))

    @rule(data=st.data())
    def expunge(self, data):
        mbx = self.draw_box(data)
        uids = self.draw_uids(data, mbx)
        got = self.run(None, ops.expunge, mbx, uids)
        want = sorted(u for u in set(uids) if u in self.m.boxes[mbx].uids)
        for uid in want:
            self.m.remove(mbx, uid)
        assert got == want
        self.changed(bool(want))

    @rule(data=st.data(), mode=st.sampled_from(["add", "remove", "replace"]),
          kws=st.lists(st.sampled_from(KEYWORDS), max_size=3))
    def set_keywords(self, data, mode, kws):
        """set_keywords_reporting, with UNCHANGEDSINCE sometimes (RFC 7162 3.1.3)."""
        eids = data.draw(st.lists(st.sampled_from(sorted(self.m.emails) + [10_000]),
                                  max_size=4))
        mbx = self.draw_box(data)
        since = data.draw(st.one_of(st.none(),
                                    st.integers(max(0, self.modseq - 6), self.modseq)))
        res = self.run(None, ops.set_keywords_reporting, mbx, eids, unchanged_since=since,
                       **{mode: kws})
        low = {k.lower() for k in kws}
        want, conflicts = [], []
        for eid in eids:
            e = self.m.emails.get(eid)
            if e is None:
                continue
            if since is not None and (eid in self.m.touched or e.last_ms > since):
                conflicts.append(eid)
                continue
            new = {"add": e.keywords | low, "remove": e.keywords - low, "replace": low}[mode]
            if new != e.keywords:
                e.keywords = new
                self.m.touch(eid)
                want.append(eid)
        assert (res.changed, res.conflicts) == (want, conflicts)
        self.changed(bool(want))
        assert res.modseq_after == (self.modseq if want else None)

    @precondition(lambda self: self.m.emails)
    @rule(data=st.data())
    def set_mailboxes(self, data):
        eid = data.draw(st.sampled_from(sorted(self.m.emails)))
        boxes = set(data.draw(st.lists(st.sampled_from(sorted(self.m.boxes)), max_size=3)))
        self.run(Conflict if not boxes else None, ops.set_mailboxes, eid, boxes)
        if not boxes:
            return
        current = self.m.members(eid)
        self.m.touch(eid)
        for mbx in set(current) - boxes:
            self.m.boxes[mbx].uids.pop(current[mbx])
        for mbx in sorted(boxes - set(current)):
            self.m.add(mbx, eid)
        self.changed()

    @rule(data=st.data())
    def destroy_emails(self, data):
        eids = data.draw(st.lists(st.sampled_from(sorted(self.m.emails) + [10_000]),
                                  max_size=3))
        got = self.run(None, ops.destroy_emails, eids)
        want = []
        for eid in eids:
            if eid in self.m.emails:
                for mbx, uid in self.m.members(eid).items():
                    self.m.remove(mbx, uid)
                want.append(eid)
        assert got == want
        self.changed(bool(want))

    @rule(extra=st.sampled_from([0, 0, 10, 60]))
    def set_quota(self, extra):
        q = self.m.usage() + extra if extra else 0
        self.store.write_sync(ops.set_quota, self.acc, q)
        self.m.quota = q
        self.changed(False)

    # --- agreement ---------------------------------------------------------------------------

    @invariant()
    def agrees(self):
        m, acc = self.m, self.acc
        with self.store.view() as v:
            boxes = {b.id: b for b in v.mailboxes(acc)}
            assert set(boxes) == set(m.boxes)
            for mbx, want in m.boxes.items():
                b = boxes[mbx]
                assert (b.name, b.parent, b.role, b.uidnext) == \
                    (want.name, want.parent, want.role, want.uidnext), mbx
                assert dict(v.uids(acc, mbx)) == want.uids, mbx
                unseen = sum(vocab.SEEN not in m.emails[e].keywords for e in want.uids.values())
                size = sum(m.emails[e].size for e in want.uids.values())
                assert (b.total, b.unseen, b.size) == (len(want.uids), unseen, size), mbx
            assert sorted(v.email_ids(acc)) == sorted(m.emails)
            for eid, want in m.emails.items():
                rec = v.email(acc, eid)
                assert set(rec.keywords) == want.keywords and rec.size == want.size
                assert rec.last_ms == want.last_ms, f"email {eid}: MODSEQ"
                assert {mem.mailbox: mem.uid for mem in rec.members} == m.members(eid)
            assert v.usage(acc) == m.usage()
            assert v.highest_modseq(acc) == self.modseq
        assert self.snapshot(self.bob) == self.bob_rows, "another account changed"


def test_store_against_model():
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.filter_too_much]))
