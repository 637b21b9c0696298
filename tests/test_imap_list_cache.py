"""LIST/LSUB answers kept per mailbox tree generation (server/imap_list.py,
``View.tree_generation``): a repeated LIST is answered from the worker's
cache, and every write that can change a LIST line (over IMAP, JMAP or any
other path to the store) makes the next LIST compute its answer again."""
from __future__ import annotations

import pytest
import trio

from imap_helpers import connect
from mailaccess import accounts, vocab
from mailaccess.server import imap_list
from mailaccess.store import ops


@pytest.fixture
def computed(monkeypatch):
    """The listings computed (cache misses)."""
    seen = []
    real = imap_list.listing

    def spy(*a):
        seen.append(a[2:4])
        return real(*a)
    monkeypatch.setattr(imap_list, "listing", spy)
    return seen


def _lines(c, *cmd):
    typ, data = c._simple_command(*cmd)
    assert typ == "OK", (cmd, data)
    return sorted(repr(x) for x in c.response(cmd[0])[1])


async def test_a_repeated_list_is_answered_from_the_cache(imap_server, computed):
    def go():
        c = connect(imap_server)
        a = _lines(c, "LIST", '""', "*")
        b = _lines(c, "LIST", '""', "*")
        d = _lines(c, "LIST", '""', "%")        # other arguments: another entry
        c.logout()
        return a, b, d
    a, b, d = await trio.to_thread.run_sync(go)
    assert a == b and any("INBOX" in x for x in a)
    assert len(computed) == 2, computed


COMMANDS = [("LIST", '""', "*"), ("LSUB", '""', "*"), ("LIST", '""', "%"),
            ("LIST", "(SUBSCRIBED)", '""', "*"),
            ("LIST", '""', "*", "RETURN (CHILDREN SPECIAL-USE)")]


async def test_every_tree_change_is_seen_by_the_next_list(imap_server, computed):
    """After each change the cached path answers as a fresh computation;
    writes that change only counts (APPEND, STORE) keep the answer."""
    store = imap_server.store
    acc = accounts.lookup(store, "alice").id
    real_key = imap_list.cache_key

    def answers(c, fresh: bool):
        imap_list.cache_key = (lambda *a: object()) if fresh else real_key
        try:
            return [_lines(c, *cmd) for cmd in COMMANDS]
        finally:
            imap_list.cache_key = real_key

    def write(fn, *args, **kw):
        return store.write_sync(fn, acc, *args, **kw)

    def by_path(path):
        with store.view() as v:
            return v.mailbox_by_path(acc, path.split("/")).id

    changes = [
        ("IMAP CREATE", lambda c: c.create("a/b")),
        ("IMAP CREATE of a sibling", lambda c: c.create("a/c")),
        ("IMAP SUBSCRIBE", lambda c: c.subscribe("a/b")),
        ("IMAP UNSUBSCRIBE", lambda c: c.unsubscribe("a/b")),
        ("IMAP SUBSCRIBE again", lambda c: c.subscribe("a/c")),
        ("IMAP RENAME", lambda c: c.rename("a/c", "z")),
        ("IMAP DELETE of a subscribed mailbox (the subscription stays)",
         lambda c: c.delete("z")),
        ("IMAP UNSUBSCRIBE of the deleted name", lambda c: c.unsubscribe("z")),
        ("IMAP CREATE", lambda c: c.create("ghost")),
        ("IMAP SUBSCRIBE", lambda c: c.subscribe("ghost")),
        ("IMAP DELETE (the subscription stays)", lambda c: c.delete("ghost")),
        ("IMAP CREATE of that name (subscribed again)", lambda c: c.create("ghost")),
        ("a role set from another protocol",
         lambda c: write(ops.update_mailbox, by_path("a/b"), role=vocab.ROLE_IMPORTANT)),
        ("a role removed", lambda c: write(ops.update_mailbox, by_path("a/b"), role=None)),
        ("a subscription from another protocol",
         lambda c: write(ops.update_mailbox, by_path("a"), subscribed=True)),
        ("a move to another parent from another protocol",
         lambda c: write(ops.rename_mailbox, by_path("a/b"), by_path("ghost"), "b2")),
    ]

    def go():
        c = connect(imap_server)
        before = answers(c, fresh=False)
        assert answers(c, fresh=False) == before
        for what, change in changes:
            typ = change(c)
            if isinstance(typ, tuple):
                assert typ[0] == "OK", (what, typ)
            cached = answers(c, fresh=False)
            assert cached == answers(c, fresh=True), what
            assert cached != before, f"{what}: the test changes nothing"
            before = cached
        # counts only: the answer stays cached
        n = len(computed)
        c.append("ghost", None, None, b"Subject: x\r\n\r\nbody\r\n")
        c.select("ghost")
        c.store("1", "+FLAGS", "(\\Seen)")
        assert answers(c, fresh=False) == before
        assert len(computed) == n
        c.logout()
    await trio.to_thread.run_sync(go)
