"""LIST/LSUB answers are computed by ``server/imap_list.listing``: on the loop
for an account with few mailboxes, in the worker pool for many (5,000
mailboxes were ~70 ms of CPU on the loop, every other session of the worker
waiting), with the same answer either way; its shortcuts for the common
patterns answer as the pattern automaton does."""
from __future__ import annotations

import random
import threading

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imap_helpers import connect
from mailaccess import accounts
from mailaccess.proto.imap.pattern import compile_pattern
from mailaccess.server import imap_list
from mailaccess.store import ops
from mailaccess.store.records import Mailbox
from mailaccess.views.mailbox_tree import full_names

_CHARS = "ab/%*INBOXinbox\u00e9"


@settings(max_examples=500, deadline=None)
@given(ref=st.text(_CHARS, max_size=4), pat=st.text(_CHARS, max_size=8),
       names=st.lists(st.text(_CHARS.replace("%", "").replace("*", ""), max_size=10),
                      max_size=20))
@example(ref="", pat="inbox*", names=["INBOX/a"]).via("INBOX matches in any case")
@example(ref="IN", pat="box*", names=["Inbox"]).via("the reference counts")
@example(ref="", pat="%", names=["a/b"]).via("% stops at the delimiter")
def test_shortcuts_answer_as_the_automaton(ref, pat, names):
    r = compile_pattern(ref, pat, "/")
    test = imap_list._matcher(r)
    for name in names + ["INBOX", "inbox/x", "Inbox", pat, ref + pat]:
        assert test(name) == r.matches(name), (ref, pat, name)


def _walk_names(boxes):
    """The per-mailbox parent walk listing used before."""
    by_id = {m.id: m for m in boxes}
    out = {}
    for m in boxes:
        parts, p, seen = [], m, set()
        while p is not None and p.id not in seen:
            seen.add(p.id)
            parts.append(p.name)
            p = by_id.get(p.parent)
        out[m.id] = "/".join(reversed(parts))
    return out


def _box(i, name, parent):
    return Mailbox(i, name, parent, None, 1, 1, 1, 1, False, 0)


def test_full_names_match_the_parent_walk():
    rnd = random.Random(3)
    for _ in range(50):
        boxes = []
        for i in range(1, 60):
            boxes.append(_box(i, f"n{i}", rnd.choice([0] + [b.id for b in boxes])))
        rnd.shuffle(boxes)
        assert full_names(boxes) == _walk_names(boxes)
    # a parent that is missing ends the name there
    assert full_names([_box(5, "x", 99)]) == {5: "x"}


async def _fill(store, n):
    acc = accounts.lookup(store, "alice").id

    def make(tx):
        for i in range(n):
            ops.create_mailbox_path(tx, acc, [f"d{i // 50}", f"s{i}"]) if i % 50 else \
                ops.create_mailbox_path(tx, acc, [f"d{i // 50}"])
    await trio.to_thread.run_sync(store.write_sync, make)
    return acc


COMMANDS = [("LIST", '""', "*"), ("LIST", '""', "%"), ("LIST", '""', "d1*"),
            ("LIST", '""', "*/s7*"), ("LSUB", '""', "*"), ("LSUB", '""', "%"),
            ("LIST", '"d2/"', "%"), ("LIST", '""', "INBOX*"), ("LIST", '""', "iNbOx"),
            ("LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "%"),
            ("LIST", '""', "*", "RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES))")]


def _answers(srv):
    c = connect(srv)
    c.subscribe("d3/s151")
    c.unsubscribe("INBOX")
    out = []
    for cmd in COMMANDS:
        typ, data = c._simple_command(*cmd)
        assert typ == "OK", (cmd, data)
        out.append(sorted(repr(x) for x in c.response(cmd[0])[1])
                   + sorted(repr(x) for x in c.response("STATUS")[1]))
    c.logout()
    return out


@pytest.fixture
def where(monkeypatch):
    """True (the loop's thread) or False (the pool) per listing computed."""
    seen = []
    real = imap_list.listing

    def spy(*a):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*a)
    monkeypatch.setattr(imap_list, "listing", spy)
    # every LIST computes its answer (none kept: tests/test_imap_list_cache.py)
    monkeypatch.setattr(imap_list, "cache_key", lambda *a: object())
    return seen


async def test_many_mailboxes_are_listed_in_the_pool_with_the_same_answer(imap_server,
                                                                          monkeypatch, where):
    await _fill(imap_server.store, imap_list.LIST_INLINE + 50)
    pooled = await trio.to_thread.run_sync(_answers, imap_server)
    assert where and not any(where), where
    assert any(len(a) > imap_list.LIST_INLINE for a in pooled)
    where.clear()
    monkeypatch.setattr(imap_list, "LIST_INLINE", 10 ** 9)
    inline = await trio.to_thread.run_sync(_answers, imap_server)
    assert where and all(where), where
    assert inline == pooled


async def test_few_mailboxes_are_listed_on_the_loop(imap_server, where):
    await _fill(imap_server.store, 20)
    await trio.to_thread.run_sync(_answers, imap_server)
    assert where and all(where), where


async def test_an_account_without_a_count_is_listed_in_the_pool(imap_server, where):
    """A store made before the mailbox counter: the count is unknown, so
    the listing goes to the pool (it may be big)."""
    from mailaccess.store import keys
    acc = accounts.lookup(imap_server.store, "alice").id

    def forget(tx):
        tx.delete("ctr", keys.ctr(acc, keys.CTR_MAILBOXES))
    await trio.to_thread.run_sync(imap_server.store.write_sync, forget)

    def go():
        c = connect(imap_server)
        typ, data = c.list()
        c.logout()
        return typ, data
    typ, data = await trio.to_thread.run_sync(go)
    assert typ == "OK" and any(b"INBOX" in d for d in data)
    assert where == [False]
