"""ActiveSync ResolveRecipients' name search (server/eas_misc.py) with many
accounts: the account list is read once per request, into a sorted word
index, in the worker pool; the answers are the per-account scan's (kept
below as the reference), and an identity renamed between two requests is
seen by the second."""
from __future__ import annotations

import threading

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from imap_helpers import run
from mailaccess import accounts
from mailaccess.config import Config
from mailaccess.proto.eas.wbxml import E
from mailaccess.server import eas_misc
from mailaccess.store import Store, ops, sending
from test_eas_misc import raw, responses, srv  # noqa: F401 (srv: the fixture)

CFG = Config()


def scan(view, cfg, query: str) -> list[tuple[str, str]]:
    """resolve() as it was: every account, and its identities, per query
    (an address is looked up as before)."""
    addr = eas_misc._one_address(query)
    if "@" in addr:
        return eas_misc._by_address(view, cfg, addr)
    q = query.strip().casefold()
    if not q:
        return []
    out = []
    for acc in sorted(view.accounts(), key=lambda a: a.name):
        names = eas_misc._display_names(view, acc)
        if acc.name.casefold().startswith(q) or any(
                w.casefold().startswith(q) for n in names.values() for w in [n] + n.split()):
            out.append(eas_misc._entry(view, cfg, acc))
    return out


def _identity(name, email):
    return {"name": name, "email": email, "replyTo": None, "bcc": None,
            "textSignature": "", "htmlSignature": "", "mayDelete": True}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("rr") / "data")
    s.start()
    yield s
    s.close()


NAMES = ["bob", "Bert", "STRASSE", "Straße", "anne-marie", "Zoë", "x", "a.b", "bob2", "ann"]
DISPLAY = ["Robert Liddell", "Anne  Marie", "straße", "Zoë Ångström", "", "Bob", "  lead",
           "Mc Bob", "İstanbul"]
QUERIES = ["b", "B", "bob", "robert", "lid", "robert lid", "ann", "anne marie", "anne  m",
           "strasse", "STRASSE", "straß", "zo", "zoë", "ång", "x", "", "  ", " bob ",
           "i̇st", "ist", "mc b", "a.", "bob@localhost", "Bob <bob+x@localhost>",
           "nobody@localhost", "a@x, b@y", "lead", "  lead"]


@settings(max_examples=40, deadline=None)
@given(accs=st.lists(st.tuples(st.sampled_from(NAMES),
                               st.lists(st.tuples(st.sampled_from(DISPLAY),
                                                  st.sampled_from(["own", "other", "same"])),
                                        max_size=3)),
                     max_size=8, unique_by=lambda a: a[0].casefold()))
def test_answers_as_the_per_account_scan(store, accs):
    """Names that casefold alike, several words, identities sharing one
    address (the last one's name counts), addresses and +details."""
    def load(tx):
        for a in tx.accounts():
            ops.delete_account(tx, a.id)
        for name, idents in accs:
            acc = ops.create_account(tx, name, "h")
            for display, which in idents:
                email = {"own": f"{name}@localhost", "other": f"{name}.alt@localhost",
                         "same": "shared@example.org"}[which]
                sending.create_identity(tx, acc, _identity(display, email))
    store.write_sync(load)
    with store.view() as v:
        got = eas_misc.resolve_all(v, CFG, QUERIES)
        for q, (count, hits) in zip(QUERIES, got):
            want = scan(v, CFG, q)
            assert (count, hits) == (len(want), want), q
            assert eas_misc.resolve(v, CFG, q) == want
        limited = eas_misc.resolve_all(v, CFG, QUERIES, 1)
        assert [(c, h) for c, h in limited] == [(c, h[:1]) for c, h in got]


ACCOUNTS = 3000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """3,000 accounts, two of three with a named identity."""
    s = Store(tmp_path_factory.mktemp("rrbig") / "data")
    s.start()

    def load(tx):
        for i in range(ACCOUNTS):
            acc = ops.create_account(tx, f"user{i:05d}", "h")
            if i % 3:
                sending.create_identity(tx, acc, _identity(f"Person {i} Family{i % 7}",
                                                           f"user{i:05d}@localhost"))
    s.write_sync(load)
    yield s
    s.close()


def test_many_accounts_one_read(big, monkeypatch):
    """A hundred name queries read each account's identities once (the scan
    read them once per query: 5 s for 100 queries over 10,000 accounts, on
    the event loop)."""
    reads = []
    real = eas_misc._display_names
    monkeypatch.setattr(eas_misc, "_display_names", lambda v, a: reads.append(a.id) or real(v, a))
    queries = ["user0", "person 1", "family3", "u", "zz", "user02999@localhost"] * 16 + \
        ["Person 2999", "user00001", "FAMILY", "p"]
    with big.view() as v:
        got = eas_misc.resolve_all(v, CFG, queries, 20)
    # once each, and once per address query (its entry)
    assert len(reads) == ACCOUNTS + queries.count("user02999@localhost")
    monkeypatch.undo()
    with big.view() as v:
        for q, (count, hits) in zip(queries[:6] + queries[-4:], got[:6] + got[-4:]):
            want = scan(v, CFG, q)
            assert (count, hits) == (len(want), want[:20]), q
    assert [got[i][0] for i in (0, 3, 4, 5)] == [ACCOUNTS, ACCOUNTS, 0, 1]


async def test_resolved_in_the_worker_pool(srv, monkeypatch):  # noqa: F811
    """The name search runs off the event loop, and sees an identity renamed
    since the last request (no index outlives the request's snapshot)."""
    where = []
    real = eas_misc._Directory.__init__

    def spy(self, view):
        where.append(threading.current_thread() is threading.main_thread())
        real(self, view)

    monkeypatch.setattr(eas_misc._Directory, "__init__", spy)
    ask = E("ResolveRecipients:ResolveRecipients", E("ResolveRecipients:To", text="rob"),
            E("ResolveRecipients:To", text="zeb"))
    doc = await run(raw(srv, "ResolveRecipients", ask))
    assert responses(doc) == [("rob", "1", "1", [("1", "Robert Liddell", "bob@localhost")]),
                              ("zeb", "4", "0", [])]
    bob = accounts.lookup(srv.store, "bob").id
    with srv.store.view() as v:
        iid = next(iter(v.identities(bob)))
    await trio.to_thread.run_sync(srv.store.write_sync, sending.update_identity, bob, iid,
                                  {"name": "Zebedee Liddell"})
    doc = await run(raw(srv, "ResolveRecipients", ask))
    assert responses(doc) == [("rob", "4", "0", []),
                              ("zeb", "1", "1", [("1", "Zebedee Liddell", "bob@localhost")])]
    assert where == [False, False]
