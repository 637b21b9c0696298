"""Mailboxes per account are capped ([store] max_mailboxes_per_account).

Every protocol creates mailboxes through ``ops.create_mailbox``, which counts
them in one write transaction with the creation (the ``CTR_MAILBOXES``
counter; a store made before the counter counts once by a scan).  Past the
cap: IMAP ``NO [LIMIT]`` (RFC 5530), JMAP ``overQuota`` (RFC 8620 5.3),
ActiveSync FolderCreate Status 6, and nothing is written.  Deleting a
mailbox frees a slot.  The cap bounds what every walk over an account's
mailboxes costs (LIST, Mailbox/get, FolderSync, a rename's subtree check)."""
from __future__ import annotations

import dataclasses

import pytest
import trio
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from conftest import make_config, port_of
from eas_helpers import http
from jmap_helpers import api, make_ctx, make_store
from mailaccess import accounts
from mailaccess.store import LimitReached, keys, ops
from test_eas_folders import Device

CAP = 12


def count(store, acc: int) -> int:
    with store.view() as v:
        return len(v.mailboxes(acc))


def counter(store, acc: int):
    with store.view() as v:
        raw = v._get("ctr", keys.ctr(acc, keys.CTR_MAILBOXES))
    return keys.read_u64(raw) if raw is not None else None


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path)
    s.max_mailboxes = CAP
    yield s
    s.close()


def test_the_cap_refuses_the_next_mailbox_and_a_delete_frees_one(store):
    acc = store.write_sync(ops.create_account, "alice", "x")
    have = count(store, acc)
    assert counter(store, acc) == have          # new accounts count from the start
    made = [store.write_sync(ops.create_mailbox, acc, 0, f"m{i}") for i in range(CAP - have)]
    assert count(store, acc) == CAP == counter(store, acc)
    with pytest.raises(LimitReached):
        store.write_sync(ops.create_mailbox, acc, 0, "one too many")
    # a path whose first parent still fits is refused whole: nothing written
    store.write_sync(ops.delete_mailbox, acc, made[0])
    with pytest.raises(LimitReached):
        store.write_sync(ops.create_mailbox_path, acc, ["a", "b"])
    with store.view() as v:
        assert v.mailbox_by_path(acc, ["a"]) is None
    assert count(store, acc) == CAP - 1 == counter(store, acc)
    store.write_sync(ops.create_mailbox, acc, 0, "fits again")
    assert count(store, acc) == CAP == counter(store, acc)


def test_each_account_has_its_own_count(store):
    a = store.write_sync(ops.create_account, "alice", "x")
    b = store.write_sync(ops.create_account, "bob", "x")
    for i in range(CAP - count(store, a)):
        store.write_sync(ops.create_mailbox, a, 0, f"m{i}")
    with pytest.raises(LimitReached):
        store.write_sync(ops.create_mailbox, a, 0, "x")
    store.write_sync(ops.create_mailbox, b, 0, "bob's own")


def test_a_store_without_the_counter_counts_once(store):
    """Stores made before the counter: the first create or delete counts the
    account's mailboxes by a scan, and keeps the counter from then on."""
    acc = store.write_sync(ops.create_account, "alice", "x")
    ids_ = [store.write_sync(ops.create_mailbox, acc, 0, f"m{i}") for i in range(3)]
    have = count(store, acc)

    def forget(tx):
        tx.delete("ctr", keys.ctr(acc, keys.CTR_MAILBOXES))
    store.write_sync(forget)
    assert counter(store, acc) is None
    store.write_sync(ops.delete_mailbox, acc, ids_[0])
    assert counter(store, acc) == have - 1 == count(store, acc)
    store.write_sync(forget)
    store.write_sync(ops.create_mailbox, acc, 0, "new")
    assert counter(store, acc) == have == count(store, acc)


def test_no_limit_when_zero(store):
    store.max_mailboxes = 0
    acc = store.write_sync(ops.create_account, "alice", "x")
    for i in range(CAP + 3):
        store.write_sync(ops.create_mailbox, acc, 0, f"m{i}")
    assert count(store, acc) == counter(store, acc) > CAP


async def test_jmap_create_past_the_cap_is_over_quota(store):
    ctx = make_ctx(store)
    room = CAP - count(store, ctx.acc)
    creates = {f"k{i}": {"name": f"box {i}"} for i in range(room + 2)}
    r = await api(ctx, ["Mailbox/set", {"create": creates}])
    assert r[0][0] == "Mailbox/set", r
    res = r[0][1]
    assert len(res["created"]) == room
    assert sorted(e["type"] for e in res["notCreated"].values()) == ["overQuota"] * 2
    assert count(store, ctx.acc) == CAP


# --- over the wire: imapclient and ActiveSync ----------------------------------------------

@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, store=dataclasses.replace(c.store,
                                                            max_mailboxes_per_account=CAP))


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    return server


async def test_imap_create_and_rename_past_the_cap_get_no_limit(srv):
    def go():
        c = IMAPClient("127.0.0.1", port=port_of(srv, "imap"), ssl=False)
        c.login("alice", "pw")
        have = len(c.list_folders())
        for i in range(CAP - have):
            c.create_folder(f"f{i}")
        out = {}
        for what, call in (("create", lambda: c.create_folder("over")),
                           ("rename", lambda: c.rename_folder("f0", "new/parent/f0"))):
            try:
                call()
                out[what] = "OK"
            except IMAPClientError as exc:
                out[what] = str(exc)
        names = {f[2] for f in c.list_folders()}
        c.delete_folder("f1")
        c.create_folder("after delete")
        c.logout()
        return out, names
    out, names = await trio.to_thread.run_sync(go)
    assert all("[LIMIT]" in v for v in out.values()), out
    assert "over" not in names and "new" not in names and "f0" in names


async def test_eas_folder_create_past_the_cap_is_status_6(srv):
    def go():
        with http(srv) as c:
            d = Device(c, "14.1", "capdev")
            d.folder_sync()
            acc = accounts.lookup(srv.store, "alice").id
            statuses = [d.create(f"e{i}")[0] for i in range(CAP - count(srv.store, acc) + 1)]
            return statuses, count(srv.store, acc)
    statuses, n = await trio.to_thread.run_sync(go)
    assert statuses[:-1] == ["1"] * (len(statuses) - 1) and statuses[-1] == "6", statuses
    assert n == CAP


def test_the_setting_is_checked():
    from mailaccess.config import StoreConfig
    with pytest.raises(ValueError):
        StoreConfig(max_mailboxes_per_account=-1)


def test_longest_below_matches_the_full_names(store):
    """ops._longest_below (one pass over the account's mbox.name keys) ==
    the longest descendant's full name minus the mailbox's, on a random tree
    with multi-byte names, another account's mailboxes beside it."""
    import random

    store.max_mailboxes = 0
    rnd = random.Random(7)
    acc = store.write_sync(ops.create_account, "alice", "x")
    other = store.write_sync(ops.create_account, "bob", "x")

    def build(tx):
        made = [0]
        for i in range(300):
            parent = rnd.choice(made)
            name = rnd.choice(["a", "bé", "日本語", "x" * rnd.randint(1, 30)]) + str(i)
            made.append(ops.create_mailbox(tx, acc, parent, name))
            if i % 3 == 0:
                ops.create_mailbox(tx, other, 0, "o" * 40 + str(i))
        return made[1:]
    made = store.write_sync(build)

    def check(tx):
        full = {m: len("/".join(tx.mailbox_path(acc, m)).encode()) for m in made}
        for m in made:
            want, todo = 0, list(tx.children(acc, m))
            while todo:
                d = todo.pop()
                want = max(want, full[d] - full[m])
                todo.extend(tx.children(acc, d))
            assert ops._longest_below(tx, acc, m) == want, m
    store.write_sync(check)
