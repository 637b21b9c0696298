"""The per-worker cache of SORT orders and THREAD answers
(server/imap_sortcache.py): every cached answer equals the uncached
computation over the same session's view, through every change that can
make a cached answer wrong.

- Sessions over a store in a temp dir, driven command by command; the store
  is changed behind their backs with store operations (as another worker
  process's commit reaches this one: through the store alone): new mail,
  flag changes, expunges, a MOVE in and out, a MOVE within the mailbox (new
  UID, same email), another account's mail.  After each change a session
  that caught up and one that did not (its view still holds expunged mail
  and lacks the new) answer SORT (many key lists, REVERSE, search criteria)
  and THREAD (UID and sequence numbers), each compared with
  ``query.sort.sort`` / ``query.thread`` run on that session's view.
- Bounded: a small byte limit evicts, answers stay right.
- Over loopback with imapclient: two clients, one changing the mailbox
  (APPEND, STORE, EXPUNGE, MOVE in and out), the other's SORT/THREAD
  answers compared with the same command after the cache was emptied.
"""
import dataclasses
import random
import re
import types

import pytest
import trio
from imapclient import IMAPClient

from conftest import make_config
from imap_helpers import imap_port, run as in_thread
from test_imap_selected_costs import run as command     # one command, its output (OK)
from mailaccess import ingest
from mailaccess.proto.imap import commands
from mailaccess.proto.imap import serialize as S
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.query import sort as qsort
from mailaccess.query import thread as qthread
from mailaccess.server import imap_session, imap_sortcache
from mailaccess.server.imap_session import ImapSession, SharedViews
from mailaccess.store import Store, ops

SUBJECTS = ["budget", "Re: budget", "report", "[list] report", "Fwd: meeting", "meeting",
            "Zebra", "apple", "", "Ünïcode subject"]


def _raw(i: int, rng: random.Random) -> bytes:
    subj = rng.choice(SUBJECTS)
    frm = rng.choice(["a@x.org", "B <b@x.org>", "c@y.org", "Zed <z@x.org>", ""])
    day = rng.randint(1, 4)              # few dates: many ties, decided by UID
    refs = f"References: <m{rng.randrange(i)}@x>\r\n" if i and rng.random() < 0.4 else ""
    return (f"From: {frm}\r\nTo: t{i % 5}@x.org\r\nSubject: {subj}\r\n"
            f"Message-ID: <m{i}@x>\r\n{refs}"
            f"Date: Mon, {day} Nov 2025 10:00:00 +0000\r\n\r\n" + "body " * (i % 7)
            + "\r\n").encode()


@pytest.fixture
def env(tmp_path):
    s = Store(str(tmp_path / "store"))
    s.start()
    acc = s.write_sync(ops.create_account, "a", "h")
    other = s.write_sync(ops.create_account, "b", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
        ib_other = v.mailbox_by_role(other, "inbox").id
    side = s.write_sync(ops.create_mailbox, acc, 0, "Side")
    ctx = types.SimpleNamespace(cfg=make_config(tmp_path), store=s)
    yield types.SimpleNamespace(store=s, acc=acc, ib=ib, side=side, other=other,
                                ib_other=ib_other, ctx=ctx, shared=SharedViews(), n=0,
                                rng=random.Random(5256))
    s.close()


def append(env, count, mbx=None, acc=None, keywords=()):
    news = [ingest.prepare(_raw(env.n + i, env.rng), 1_700_000_000 + (env.n + i) // 3)
            for i in range(count)]
    env.n += count
    acc = env.acc if acc is None else acc
    mbx = env.ib if mbx is None else mbx
    env.store.write_sync(lambda tx: [ops.append(tx, acc, [mbx], n, keywords=list(keywords))
                                     for n in news])


def uids_of(env, mbx=None):
    with env.store.view() as v:
        return [u for u, _e in v.uids(env.acc, env.ib if mbx is None else mbx)]


def eids_of(env, uids, mbx=None):
    with env.store.view() as v:
        by = dict(v.uids(env.acc, env.ib if mbx is None else mbx))
    return [by[u] for u in uids]


def session(env, acc=None, shared=None):
    s = ImapSession(env.ctx, secure=True, loopback=True,
                    views=env.shared if shared is None else shared)
    s.acc, s.state = (env.acc if acc is None else acc), imap_session.AUTHENTICATED
    return s


def limit(env, nbytes: int) -> None:
    """The sessions' [imap] sort_cache_bytes."""
    env.ctx.cfg = dataclasses.replace(
        env.ctx.cfg, imap=dataclasses.replace(env.ctx.cfg.imap, sort_cache_bytes=nbytes))


async def answer(sess, line: bytes) -> bytes:
    out = await command(sess, line)
    m = re.search(rb"^\* (SORT|THREAD)[^\r]*\r\n", out, re.M)
    assert m, out
    return m.group(0)


async def uncached(sess, line: bytes) -> bytes:
    """LINE's answer computed without the cache, over SESS's view as it is."""
    cmd = commands.parse_command(CommandFrame(b"t", (line,)))
    sel = sess.sel
    uids = await sess.run_search(cmd.key)
    with sess.store.view() as v:
        if hasattr(cmd, "criteria"):          # SORT (THREAD has an algorithm)
            keys = [qsort.SortKey(k.key.lower(), k.reverse) for k in cmd.criteria]
            ordered = qsort.sort(v, sess.acc, sel.pairs(uids), keys)
            return S.sort(ordered if cmd.uid else [sel.seq_of(u) for u in ordered])
        fn = qthread.thread_references if cmd.algorithm == "REFERENCES" \
            else qthread.thread_orderedsubject
        cands = [(u if cmd.uid else sel.seq_of(u), e) for u, e in sel.pairs(uids)]
        return S.thread(fn(v, sess.acc, cands))


COMMANDS = [
    b"UID SORT (DATE) UTF-8 ALL",
    b"UID SORT (REVERSE DATE) UTF-8 ALL",
    b"UID SORT (SUBJECT) UTF-8 ALL",
    b"UID SORT (REVERSE SUBJECT DATE) UTF-8 ALL",
    b"UID SORT (FROM REVERSE ARRIVAL) UTF-8 ALL",
    b"UID SORT (SIZE) UTF-8 ALL",
    b"UID SORT (DATE) UTF-8 UNSEEN",
    b"UID SORT (REVERSE DATE) UTF-8 FLAGGED",
    b"UID SORT (SUBJECT) UTF-8 SUBJECT budget",
    b"SORT (DATE) UTF-8 ALL",
    b"SORT (REVERSE SUBJECT) UTF-8 UNSEEN",
    b"UID THREAD REFERENCES UTF-8 ALL",
    b"UID THREAD ORDEREDSUBJECT UTF-8 ALL",
    b"THREAD REFERENCES UTF-8 ALL",
    b"UID THREAD REFERENCES UTF-8 UNSEEN",
]


async def check_all(sess, commands_=COMMANDS):
    """Each command's answer == the uncached one over SESS's view.  A view
    that still holds messages another session expunged (not announced yet)
    whose emails are gone altogether: the uncached sort reads no values for
    them (they sort as empty), a cached order keeps the values it read while
    they existed; so those few may stand elsewhere, every other message is
    in exactly the uncached order (THREAD: the same messages)."""
    for line in commands_:
        dead = dead_numbers(sess, line.startswith(b"UID "))
        want = await uncached(sess, line)
        got = await answer(sess, line)
        if not dead:
            assert got == want, line
            continue
        g, w = nums(got), nums(want)
        assert sorted(g) == sorted(w), line
        if b"SORT" in line:
            assert [n for n in g if n not in dead] == [n for n in w if n not in dead], line


def nums(line: bytes) -> list[int]:
    return [int(x) for x in re.findall(rb"\d+", line)]


def dead_numbers(sess, uid: bool) -> set[int]:
    """The numbers (UIDs or sequence numbers) of SESS's view whose email is gone."""
    sel = sess.sel
    with sess.store.view() as v:
        return {u if uid else sel.seq_of(u) for u, e in sel.pairs()
                if v.email(sess.acc, e) is None}


def assert_orders_hold(env):
    """Every cached order: its UIDs ascending with their email ids as the
    store has them (an expunged UID is no longer in the store), the order
    a permutation of them, one value tuple each."""
    with env.store.view() as v:
        facts = {}
        for acc in (env.acc, env.other):
            for mbx in (env.ib, env.side, env.ib_other):
                facts.update({(acc, mbx, u): e for u, e in v.uids(acc, mbx)})
    for key, (entry, _n) in cache_of(env).entries.items():
        if key[0] != "sort":
            continue
        assert list(entry.uids) == sorted(set(entry.uids))
        assert sorted(entry.order) == list(entry.uids) and len(entry.vals) == len(entry.order)
        for u, e in zip(entry.uids, entry.eids):
            assert facts.get((key[1], key[2], u), e) == e


def cache_of(env, shared=None) -> imap_sortcache.SortCache:
    return imap_sortcache.for_views(env.shared if shared is None else shared, 1 << 40)


def random_flags(env, share=0.3):
    uids = uids_of(env)
    pick = [u for u in uids if env.rng.random() < share]
    if pick:
        env.store.write_sync(ops.set_keywords, env.acc, eids_of(env, pick),
                             add=[env.rng.choice(["$seen", "$flagged"])])
    pick = [u for u in uids if env.rng.random() < share]
    if pick:
        env.store.write_sync(ops.set_keywords, env.acc, eids_of(env, pick),
                             remove=[env.rng.choice(["$seen", "$flagged"])])


async def test_cached_answers_equal_the_uncached_through_every_change(env):
    append(env, 40)
    append(env, 10, mbx=env.side)
    a, stale = session(env), session(env)
    for s in (a, stale):
        await command(s, b"SELECT INBOX")
    await check_all(a)
    cache = cache_of(env)
    assert cache.entries
    hits = cache.hits
    await check_all(a)                        # the same view again: answered from the cache
    assert cache.hits - hits == sum(b"SORT" in c for c in COMMANDS)
    hits = cache.hits

    def expunge_some():
        uids = uids_of(env)
        env.store.write_sync(ops.expunge, env.acc, env.ib, env.rng.sample(uids, 5))

    def move_in():
        env.store.write_sync(ops.move, env.acc, env.side, uids_of(env, env.side)[:3], env.ib)

    def move_out():
        env.store.write_sync(ops.move, env.acc, env.ib, env.rng.sample(uids_of(env), 4),
                             env.side)

    def move_within():
        env.store.write_sync(ops.move, env.acc, env.ib, env.rng.sample(uids_of(env), 2),
                             env.ib)

    changes = [lambda: append(env, 1), lambda: append(env, 7), lambda: random_flags(env),
               expunge_some,
               move_in, move_out, move_within, lambda: append(env, 3, acc=env.other,
                                                               mbx=env.ib_other)]
    held_back = 0
    for step in range(3):
        for change in changes:
            change()
            # the stale session first: its view predates the change; after
            # its first command it knows of expunges it may not announce
            # (SORT, THREAD): its view leaves them out
            await check_all(stale, COMMANDS[step::3])
            held_back += bool(stale.sel.gone)
            await check_all(a)
            assert_orders_hold(env)
    assert cache.hits > hits and held_back


async def test_a_stale_view_and_a_current_one_share_the_cache(env):
    """One session's view lacks new mail and still holds expunged mail the
    other's does not: each gets the answer for its own view from the same
    cached orders, whichever went first."""
    append(env, 30)
    a, b = session(env), session(env)
    for s in (a, b):
        await command(s, b"SELECT INBOX")
    line = b"UID SORT (SUBJECT REVERSE DATE) UTF-8 ALL"
    await check_all(a, [line])
    env.store.write_sync(ops.expunge, env.acc, env.ib, uids_of(env)[5:9])
    append(env, 4)
    await command(a, b"NOOP")
    await check_all(a, [line])       # caught up: the order drops 4, inserts 4
    await check_all(b, [line])       # b still sees the 4 expunged, not the 4 new
    await check_all(a, [line])


async def test_a_narrow_search_with_nothing_cached_sorts_its_result_alone(env):
    append(env, 40)
    a = session(env)
    await command(a, b"SELECT INBOX")
    await check_all(a, [b"UID SORT (DATE) UTF-8 SUBJECT zebra",
                        b"SORT (REVERSE SUBJECT) UTF-8 UID 3:7"])
    assert not cache_of(env).entries
    await check_all(a, [b"UID SORT (DATE) UTF-8 ALL", b"UID SORT (DATE) UTF-8 SUBJECT zebra"])
    assert len(cache_of(env).entries) == 1 and cache_of(env).hits == 1


async def test_a_reindex_that_changes_sort_values_is_not_answered_from_old_orders(env):
    # mailaccess reindex may rewrite a stored index while the server runs (a
    # parser fix): ops.replace_index bumps the account's CTR_INDEXES, and an
    # order (or a donor for REVERSE) whose values were read before is not used
    from mailaccess.mime import index as mindex
    append(env, 12)
    a = session(env)
    await command(a, b"SELECT INBOX")
    lines = [b"UID SORT (SUBJECT) UTF-8 ALL", b"UID SORT (DATE) UTF-8 ALL"]
    await check_all(a, lines)
    # REVERSE SUBJECT first after the reindex: no order of its own, the
    # SUBJECT order (read before) would be its donor
    before = {b"UID SORT (REVERSE SUBJECT) UTF-8 ALL":
              await uncached(a, b"UID SORT (REVERSE SUBJECT) UTF-8 ALL")}
    before.update({line: await answer(a, line) for line in lines})
    last = uids_of(env)[-1]
    with env.store.view() as v:
        blob = v.email(env.acc, eids_of(env, [last])[0]).blob
    fixed = mindex.encode_index(mindex.index_message(
        b"Subject: 000 first now\r\nDate: Mon, 1 Jan 1990 00:00:00 +0000\r\n\r\nb\r\n"))
    env.store.write_sync(ops.replace_index, env.acc, blob, fixed)
    for line, old in before.items():
        want = await uncached(a, line)
        assert want != old, line                # (the reindex moved the message)
        assert await answer(a, line) == want, line
    # the orders made afresh are kept and answer again
    hits = cache_of(env).hits
    await check_all(a, lines)
    assert cache_of(env).hits == hits + len(lines)


async def test_two_accounts_never_see_each_others_orders(env):
    append(env, 20)
    append(env, 20, acc=env.other, mbx=env.ib_other)
    a, b = session(env), session(env, acc=env.other)
    for s in (a, b):
        await command(s, b"SELECT INBOX")
    await check_all(a)
    await check_all(b)
    keys = {k[1] for k in cache_of(env).entries}
    assert keys == {env.acc, env.other}


async def test_the_cache_is_bounded_in_bytes(env):
    limit(env, 20_000)
    append(env, 60)
    a = session(env)
    await command(a, b"SELECT INBOX")
    cache = imap_sortcache.for_views(env.shared, 20_000)
    for _ in range(2):
        await check_all(a)
        assert 0 < cache.nbytes <= 20_000
        assert cache.nbytes == sum(n for _v, n in cache.entries.values())
        append(env, 5)
        await command(a, b"NOOP")


async def test_no_cache_when_turned_off(env):
    limit(env, 0)
    append(env, 10)
    a = session(env)
    await command(a, b"SELECT INBOX")
    await check_all(a)
    assert imap_sortcache._CACHES.get(env.shared) is None


def test_cache_evicts_least_recently_used_first():
    c = imap_sortcache.SortCache(100)
    c.put("a", 1, 40)
    c.put("b", 2, 40)
    assert c.get("a") == 1
    c.put("c", 3, 40)                 # "b" was used least recently
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    c.put("d", 4, 101)                # bigger than the whole cache: not kept
    assert c.get("d") is None and c.nbytes == 80


# --- over loopback -----------------------------------------------------------------------------

async def test_loopback_cached_answers_equal_the_uncached(imap_server):
    port = imap_port(imap_server)
    rng = random.Random(3)

    def go():
        w = IMAPClient("127.0.0.1", port=port, ssl=False)
        w.login("alice", "pw")
        w.create_folder("Side")
        for i in range(30):
            w.append("INBOX", _raw(i, rng), flags=[b"\\Seen"] if i % 3 else [])
            if i % 4 == 0:
                w.append("Side", _raw(100 + i, rng))
        r = IMAPClient("127.0.0.1", port=port, ssl=False)
        r.login("alice", "pw")
        r.select_folder("INBOX")
        bob = IMAPClient("127.0.0.1", port=port, ssl=False)
        bob.login("bob", "pw")
        for i in range(5):
            bob.append("INBOX", _raw(200 + i, rng))
        bob.select_folder("INBOX")
        w.select_folder("INBOX")

        def without_cache(fn, *args):
            """FN's answer from a server with no cache (the cache set aside, then back)."""
            kept = dict(imap_sortcache._CACHES)
            imap_sortcache._CACHES.clear()
            try:
                return fn(*args)
            finally:
                imap_sortcache._CACHES.clear()
                imap_sortcache._CACHES.update(kept)

        def check(client):
            for crit in (["ALL"], ["UNSEEN"]):
                for keys in (["DATE"], ["REVERSE", "SUBJECT"], ["FROM", "ARRIVAL"]):
                    got = client.sort(keys, crit)
                    again = client.sort(keys, crit)
                    assert got == again == without_cache(client.sort, keys, crit), (keys, crit)
            for alg in ("REFERENCES", "ORDEREDSUBJECT"):
                got = client.thread(alg, ["ALL"])
                assert got == without_cache(client.thread, alg, ["ALL"]), alg

        check(r)
        check(bob)
        changes = [
            lambda: w.append("INBOX", _raw(300, rng)),
            lambda: w.add_flags(w.search(["ALL"])[::2], [b"\\Seen"]),
            lambda: (w.add_flags(w.search(["ALL"])[3:7], [b"\\Deleted"]), w.expunge()),
            lambda: w.move(w.search(["ALL"])[-3:], "Side"),
            lambda: (w.select_folder("Side"), w.move(w.search(["ALL"])[:2], "INBOX"),
                     w.select_folder("INBOX")),
        ]
        for change in changes:
            check(r)                  # the cache knows the view before the change
            change()
            r.noop()
            check(r)
            check(bob)
        for c in (w, r, bob):
            c.logout()
        assert sum(c.hits for c in imap_sortcache._CACHES.values()) > 0

    await in_thread(go)
