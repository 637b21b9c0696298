"""The catch-up before each command without work it need not do (issue 10
section 3, the many-client run): the sequence map a catch-up reaches is
published for SELECT to bring forward even when the session's own state
(its \\Recent messages) keeps its answer private; a refresh that claims
\\Recent reads the mailbox record once before the claim; the FLAGS list is
rebuilt only when the account's keyword spellings changed.  Sessions over a
store in a temp dir, driven command by command; every map is compared with
what the store holds."""
import contextlib

import pytest

from mailaccess.server import imap_fmt, imap_session
from mailaccess.store import view as store_view

from test_imap_selected_costs import (append, assert_view_is_store, env, run,  # noqa: F401
                                      session, set_flags, spy_uid_map, store_uids)


async def test_a_session_with_recent_mail_publishes_the_map_it_reached(env, monkeypatch):
    append(env, 10)
    a = session(env)
    await run(a, b"SELECT INBOX")
    assert a.sel.recent      # A claimed the mail: its catch-ups are its own
    append(env, 3)
    await run(a, b"NOOP")    # A alone holds the map it reached
    assert env.shared.snapshots.get((env.acc, env.ib)) is a.sel.snap
    append(env, 2)
    top = [u for u, _ in store_uids(env)][-3]
    reads = spy_uid_map(monkeypatch)
    b = session(env)
    out = await run(b, b"SELECT INBOX")
    assert_view_is_store(b, env)
    assert b"* 15 EXISTS" in out
    assert reads == [top]    # brought forward: only the UIDs above A's map


async def test_a_map_with_expunges_not_told_is_not_published(env):
    append(env, 6)
    a = session(env)
    await run(a, b"SELECT INBOX")
    uids = [u for u, _ in store_uids(env)]
    env.store.write_sync(imap_session.ops.expunge, env.acc, env.ib, uids[1:3])
    await run(a, b"FETCH 1 FLAGS")   # no EXPUNGE allowed: A's map keeps them
    assert a.sel.gone
    shared = env.shared.snapshots.get((env.acc, env.ib))
    assert shared is None or list(shared.uids) == uids     # never A's, holding the gone
    b = session(env)
    await run(b, b"SELECT INBOX")
    assert_view_is_store(b, env)


def _count_views(env, monkeypatch) -> list:
    views = []
    real = env.store.view

    @contextlib.contextmanager
    def counting(*args, **kw):
        with real(*args, **kw) as v:
            views.append(v)
            yield v
    monkeypatch.setattr(env.store, "view", counting)
    return views


async def test_claiming_recent_reads_the_mailbox_once(env, monkeypatch):
    append(env, 4)
    a = session(env)
    await run(a, b"SELECT INBOX")
    append(env, 2)
    views = _count_views(env, monkeypatch)
    out = await run(a, b"NOOP")
    assert b"* 6 EXISTS" in out and b"* 3 RECENT" not in out and b"* 6 RECENT" in out
    assert a.sel.recent_count() == 6
    # the mailbox before the claim, the catch-up after it (before: a third,
    # on_refresh's own read of the record)
    assert len(views) == 2


async def test_mail_claimed_by_another_session_is_caught_up_in_one_view(env, monkeypatch):
    append(env, 4)
    a, b, c = session(env), session(env), session(env)
    await run(a, b"SELECT INBOX")
    await run(b, b"SELECT INBOX")
    await run(c, b"EXAMINE INBOX")
    append(env, 2)
    await run(a, b"NOOP")                   # A claims the two
    views = _count_views(env, monkeypatch)
    out = await run(b, b"NOOP")
    assert b"* 6 EXISTS" in out and b"RECENT" not in out and b.sel.recent_count() == 0
    assert len(views) == 1                  # no write: the catch-up in the same view
    append(env, 1)
    del views[:]
    out = await run(c, b"NOOP")             # read-only: nobody claimed the new one for it
    assert b"* 7 EXISTS" in out and b"* 1 RECENT" in out and len(views) == 1
    del views[:]
    out = await run(a, b"NOOP")             # A claims it: the modseq check, two views
    assert b"* 7 EXISTS" in out and b"* 7 RECENT" in out and len(views) == 3


def _spy_flag_list(monkeypatch) -> list:
    """The keyword tables _flag_list builds a FLAGS list from, from here on."""
    built = []
    real = imap_session._flag_list

    def spy(spell):
        built.append(spell)
        return real(spell)
    monkeypatch.setattr(imap_session, "_flag_list", spy)
    return built


async def test_the_flags_list_is_rebuilt_only_when_the_spellings_change(env, monkeypatch):
    append(env, 4)
    a = session(env)
    await run(a, b"SELECT INBOX")
    built = _spy_flag_list(monkeypatch)
    uids = [u for u, _ in store_uids(env)]
    set_flags(env, uids[:1], add=["$seen"])
    out = await run(a, b"NOOP")
    assert b"FLAGS (\\Seen \\Recent)" in out and b"* FLAGS" not in out
    set_flags(env, uids[1:2], add=["$seen"])
    await run(a, b"NOOP")
    assert built == []       # the account's spellings were the very same answer
    set_flags(env, uids[:1], add=["MyWord"])
    out = await run(a, b"NOOP")
    assert len(built) == 1 and out.startswith(b"* FLAGS (")
    assert b"MyWord" in out.split(b"\r\n")[0]      # RFC 9051 7.3.5: before the FETCH
    set_flags(env, uids[2:3], add=["myword"])      # a keyword the account has: same spelling
    out = await run(a, b"NOOP")
    assert b"* FLAGS" not in out and b"MyWord" in out and len(built) == 1


def _flags_list_as_before(keywords, spell=None) -> bytes:
    return ("(" + " ".join(imap_fmt.flag_of(k, spell) for k in keywords) + ")").encode("utf-8")


@pytest.mark.parametrize("spell", [None, {}, {"$own1": "$Own1", "x\u00e9": "X\u00c9"},
                                   "spellings"])
def test_flags_list_is_flag_of_each_keyword(env, spell):
    words = [[], ["$seen"], ["$seen", "$flagged", "$answered", "$draft", "$deleted"],
             ["$own1"], ["$own1", "$seen", "x\u00e9", "plain"], ["$junk", "$forwarded"]]
    if spell == "spellings":     # what build_fetch passes without the catch-up's table
        env.store.write_sync(imap_session.ops._remember_spellings, env.acc, ["$Own1", "X\u00c9"])
        with env.store.view() as v:
            spellings = imap_session._Spellings(v, env.acc)
            for kws in words:
                assert imap_fmt.flags_list(kws, spellings) == _flags_list_as_before(kws, spellings)
            assert imap_fmt.flags_list(["$own1"], spellings) == b"($Own1)"
        return
    for kws in words:
        assert imap_fmt.flags_list(kws, spell) == _flags_list_as_before(kws, spell)


async def test_the_catch_up_spells_keywords_from_the_accounts_table(env, monkeypatch):
    append(env, 3)
    a = session(env)
    await run(a, b"SELECT INBOX")
    uids = [u for u, _ in store_uids(env)]
    set_flags(env, uids[:2], add=["$Label1"])
    out = await run(a, b"NOOP")
    assert out.count(b"$Label1") == 4       # FLAGS, PERMANENTFLAGS, two FETCH

    def one_by_one(self, acc, lower):
        raise AssertionError("a keyword read on its own")
    monkeypatch.setattr(store_view.View, "keyword_spelling", one_by_one)
    set_flags(env, uids[2:], add=["$label1"])
    set_flags(env, uids[:1], add=["$seen"])
    out = await run(a, b"NOOP")
    assert out.count(b" FETCH ") == 2 and out.count(b"$Label1") == 2
    assert b"$label1" not in out


def test_spellings_come_from_the_cached_table_when_it_is_current(env, monkeypatch):
    env.store.write_sync(imap_session.ops._remember_spellings, env.acc, ["$Own1", "X\u00c9"])
    with env.store.view() as v:
        assert v.keyword_spellings_if_cached(env.acc) is None     # nothing read yet
        v.keyword_spellings(env.acc)
    real = store_view.View.keyword_spelling
    single = []

    def counting(self, acc, lower):
        single.append(lower)
        return real(self, acc, lower)
    monkeypatch.setattr(store_view.View, "keyword_spelling", counting)
    with env.store.view() as v:
        sp = imap_session._Spellings(v, env.acc)
        assert [sp.get(k, k) for k in ("$own1", "x\u00e9", "other")] == ["$Own1", "X\u00c9", "other"]
    assert single == []
    # a keyword joins the table: the cached answer is an older version's
    env.store.write_sync(imap_session.ops._remember_spellings, env.acc, ["NeW"])
    with env.store.view() as v:
        assert v.keyword_spellings_if_cached(env.acc) is None
        sp = imap_session._Spellings(v, env.acc)
        assert [sp.get(k, k) for k in ("$own1", "new", "other")] == ["$Own1", "NeW", "other"]
    assert single == ["$own1", "new", "other"]


async def test_a_fetch_after_the_catch_up_reads_no_keyword_on_its_own(env, monkeypatch):
    append(env, 3, keywords=["$Label1"])
    a = session(env)
    await run(a, b"SELECT INBOX")        # reads the account's table

    def one_by_one(self, acc, lower):
        raise AssertionError("a keyword read on its own")
    monkeypatch.setattr(store_view.View, "keyword_spelling", one_by_one)
    out = await run(a, b"FETCH 1:3 (FLAGS)")
    assert out.count(b"$Label1") == 3


async def test_select_reuses_the_flags_list_of_the_same_table(env, monkeypatch):
    append(env, 2, keywords=["$Label1"])
    a = session(env)
    first = await run(a, b"SELECT INBOX")
    built = _spy_flag_list(monkeypatch)
    again = await run(a, b"SELECT INBOX")
    assert built == [] and again.split(b"\r\n")[0] == first.split(b"\r\n")[0]
    assert b"$Label1" in again.split(b"\r\n")[0]
    env.store.write_sync(imap_session.ops._remember_spellings, env.acc, ["Zed"])
    third = await run(a, b"SELECT INBOX")
    assert len(built) == 1 and b" Zed)" in third.split(b"\r\n")[0]    # a keyword joined
