"""The event bus on its own: coalescing into O(1) per waiter, filters by kind
and mailbox, since/latest semantics, cleanup on close and on cancellation, and
the writer-thread hop.  Memory is checked by counting what a subscription
holds, never by timing."""
import gc
import pickle
import threading
import types

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess import bus as busmod
from mailaccess.bus import MAX_MAILBOXES, Bus, Notification, Subscription, notifications
from mailaccess.store.lmdb_store import CommitInfo
from mailaccess.store.records import Change


def N(acc, ms, kinds=("Email",), mailboxes=(1,)):
    return Notification(acc, ms, frozenset(kinds),
                        None if mailboxes is None else frozenset(mailboxes))


def held_objects(sub: Subscription) -> int:
    """Objects reachable from SUB (not through the bus, not types/functions)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen = {id(sub._bus), id(sub)}
    todo = [getattr(sub, name) for name in Subscription.__slots__]
    count = 0
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, skip):
            continue
        seen.add(id(o))
        count += 1
        todo.extend(gc.get_referents(o))
    return count


# --- the notification -----------------------------------------------------------------------

def test_notification_is_plain_picklable_data():
    n = N(3, 17, ("Email", "Mailbox"), (4, 5))
    assert pickle.loads(pickle.dumps(n)) == n
    assert pickle.loads(pickle.dumps(N(3, 1, (), None))).all_mailboxes
    with pytest.raises(Exception):
        n.modseq = 18


def test_notifications_from_a_commit_fold_per_account():
    changes = [
        (1, Change(5, created={"Email": [10]}, updated={"Mailbox": [2]}, mailboxes=[2])),
        (2, Change(9, updated={"Thread": [7]})),
        (1, Change(6, destroyed={"Mailbox": [3]})),
    ]
    out = {n.account: n for n in notifications(changes)}
    assert out[1] == N(1, 6, ("Email", "Mailbox"), (2, 3))
    assert out[2] == N(2, 9, ("Thread",), ())


_ids = st.lists(st.integers(1, 40), max_size=4)
_by_kind = st.dictionaries(st.sampled_from(["Email", "Mailbox", "Thread"]), _ids, max_size=3)


@settings(max_examples=300, deadline=None)
@given(_by_kind, _by_kind, _by_kind, st.lists(st.integers(1, 40), max_size=MAX_MAILBOXES + 3),
       st.integers(1, 10**6))
def test_a_one_change_commit_folds_as_the_general_path(created, updated, destroyed,
                                                       mailboxes, modseq):
    """``notifications`` of a commit with one change (a one-message STORE's:
    folded at once) says what the fold of several says for that account."""
    c = Change(modseq, created=created, updated=updated, destroyed=destroyed,
               mailboxes=mailboxes)
    [alone] = notifications([(1, c)])
    folded = {n.account: n for n in notifications([(1, c), (2, Change(1))])}[1]
    assert alone == folded


def test_a_commit_touching_many_mailboxes_says_all():
    c = Change(5, updated={"Mailbox": list(range(MAX_MAILBOXES + 1))})
    [n] = notifications([(1, c)])
    assert n.all_mailboxes and n.touches(12345)


# --- coalescing ------------------------------------------------------------------------------

def test_ten_thousand_notifications_leave_one_pending_object():
    bus = Bus()
    sub = bus.subscribe(1, since=0)
    kinds = ["Email", "Mailbox", "Thread", "EmailSubmission"]
    for i in range(1, 101):
        bus.publish(N(1, i, (kinds[i % 4],), (i, i + 1)))
    after_100 = held_objects(sub)
    for i in range(101, 10_001):
        bus.publish(N(1, i, (kinds[i % 4],), (i, i + 1)))
    assert bus.holding(1) == (1, 1)
    assert held_objects(sub) <= after_100 < 20
    n = sub.take()
    assert n.modseq == 10_000 and n.kinds == frozenset(kinds) and n.all_mailboxes
    assert bus.holding(1) == (1, 0)
    sub.close()


def test_the_mailbox_set_is_bounded():
    bus = Bus()
    sub = bus.subscribe(1, since=0)
    for i in range(1, MAX_MAILBOXES + 1):
        bus.publish(N(1, i, mailboxes=(i,)))
    assert sub.pending.mailboxes == frozenset(range(1, MAX_MAILBOXES + 1))
    bus.publish(N(1, 99, mailboxes=(MAX_MAILBOXES + 1,)))
    assert sub.pending.mailboxes is None and sub.pending.modseq == 99


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2), st.integers(1, 50),
                          st.frozensets(st.sampled_from(["Email", "Mailbox", "Thread"])),
                          st.one_of(st.none(), st.frozensets(st.integers(1, 6), max_size=3))),
                max_size=40),
       st.one_of(st.none(), st.frozensets(st.sampled_from(["Email", "Mailbox", "Thread"]))),
       st.one_of(st.none(), st.frozensets(st.integers(1, 6), min_size=1, max_size=2)),
       st.integers(0, 20))
def test_pending_is_the_merge_of_what_matched(seq, kinds, mailboxes, since):
    """Model: the pending notification says exactly what the matching
    notifications say together (mailboxes may only widen to "all")."""
    bus = Bus()
    sub = bus.subscribe(1, kinds, mailboxes, since=since)
    matched = []
    for acc, ms, ks, mbs in seq:
        n = Notification(acc, ms, ks, mbs)
        bus.publish(n)
        if (acc == 1 and ms > since and (kinds is None or ks & kinds)
                and (mailboxes is None or mbs is None or mbs & mailboxes)):
            matched.append(n)
    p = sub.take()
    if not matched:
        assert p is None
        return
    assert p.account == 1
    assert p.modseq == max(n.modseq for n in matched)
    assert p.kinds == frozenset().union(*(n.kinds for n in matched))
    if any(n.mailboxes is None for n in matched):
        assert p.mailboxes is None
    else:
        union = frozenset().union(*(n.mailboxes for n in matched))
        assert p.mailboxes is None or p.mailboxes == union


# --- filters ---------------------------------------------------------------------------------

def test_filter_by_kind():
    bus = Bus()
    sub = bus.subscribe(1, kinds={"Email"}, since=0)
    bus.publish(N(1, 1, ("Mailbox", "Thread")))
    assert sub.pending is None
    bus.publish(N(1, 2, ("Email", "Mailbox")))
    assert sub.take().modseq == 2


def test_filter_by_mailbox():
    bus = Bus()
    sub = bus.subscribe(1, mailboxes={7}, since=0)
    bus.publish(N(1, 1, mailboxes=(8, 9)))
    bus.publish(N(1, 2, mailboxes=()))            # account-wide, no mailbox
    assert sub.pending is None
    bus.publish(N(1, 3, mailboxes=(6, 7)))
    assert sub.take().modseq == 3
    bus.publish(N(1, 4, mailboxes=None))          # "all mailboxes" may include ours
    assert sub.take().modseq == 4


def test_other_account_is_not_woken():
    bus = Bus()
    bob = bus.subscribe(2, since=0)
    bus.publish(N(1, 5))
    assert bob.pending is None and bus.holding(2) == (1, 0)
    assert bus.latest(2) == 0 and bus.latest(1) == 5
    bus.publish(N(2, 1))
    assert bob.take().modseq == 1


# --- since and the latest modseq -------------------------------------------------------------

def test_only_newer_than_since_wakes():
    bus = Bus()
    sub = bus.subscribe(1, since=5)
    bus.publish(N(1, 4))
    bus.publish(N(1, 5))
    assert sub.pending is None
    bus.publish(N(1, 6))
    assert sub.take().modseq == 6
    assert sub.since == 6
    bus.publish(N(1, 6))                          # a duplicate is not news
    assert sub.pending is None


def test_subscribing_behind_the_latest_wakes_at_once():
    bus = Bus()
    bus.publish(N(1, 3, ("Thread",)))
    bus.publish(N(1, 10, ("Email",), (4,)))
    assert bus.latest(1) == 10
    late = bus.subscribe(1, mailboxes={99}, since=7)
    n = late.take()
    # what was missed is not known per mailbox: "all mailboxes", kinds since 7
    assert n.modseq == 10 and n.all_mailboxes and n.kinds == {"Email"}
    assert bus.subscribe(1, kinds={"Thread"}, since=7).pending is None
    assert bus.subscribe(1, kinds={"Thread"}, since=2).pending.kinds == {"Thread", "Email"}
    assert bus.subscribe(1, since=10).pending is None
    assert bus.subscribe(1).since == 10           # default: from now on


# --- waiting, closing, cancelling ------------------------------------------------------------

async def test_a_waiter_is_woken_and_takes_the_merge():
    bus = Bus()
    got = []

    async def waiter():
        got.append(await bus.wait(1, since=0))

    async with trio.open_nursery() as n:
        n.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert bus.holding(1) == (1, 0)
        bus.publish(N(1, 1, mailboxes=(1,)))
        bus.publish(N(1, 2, ("Mailbox",), (2,)))
    assert got == [N(1, 2, ("Email", "Mailbox"), (1, 2))]
    assert bus.holding(1) == (0, 0) and not bus._subs


async def test_one_task_waits_on_a_subscription_at_a_time():
    bus = Bus()
    with bus.subscribe(1, since=0) as sub:
        async with trio.open_nursery() as n:
            n.start_soon(sub.wait)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await sub.wait()
            bus.publish(N(1, 1))


async def test_close_removes_the_waiter():
    bus = Bus()
    with bus.subscribe(1, since=0) as sub:
        bus.publish(N(1, 1))
        assert bus.holding(1) == (1, 1)
    assert bus.holding(1) == (0, 0) and not bus._subs
    assert sub.pending is None
    bus.publish(N(1, 2))
    assert sub.pending is None
    with pytest.raises(trio.ClosedResourceError):
        await sub.wait()
    sub.close()                                   # twice is fine


async def test_a_deadline_leaves_nothing_behind(autojump_clock):
    bus = Bus()
    with trio.move_on_after(30) as scope:
        await bus.wait(1, kinds={"Email"}, mailboxes={3}, since=0)
    assert scope.cancelled_caught
    assert bus.holding(1) == (0, 0) and not bus._subs
    # a subscription kept across a cancelled wait keeps what arrives
    with bus.subscribe(1, since=0) as sub:
        with trio.move_on_after(30):
            await sub.wait()
        assert sub._event is None
        bus.publish(N(1, 1))
        assert (await sub.wait()).modseq == 1
    assert not bus._subs


async def test_commits_hop_from_the_writer_thread():
    bus = Bus()
    bus.attach()
    info = CommitInfo([(1, Change(4, updated={"Email": [1]}, mailboxes=[2])),
                       (1, Change(5, created={"Email": [2]}, mailboxes=[3]))], 2)
    with bus.subscribe(1, mailboxes={3}, since=0) as sub:
        t = threading.Thread(target=bus.on_commit, args=(info,))
        t.start()
        with trio.fail_after(10):
            n = await sub.wait()
        t.join()
    assert n == N(1, 5, ("Email",), (2, 3))
    assert bus.latest(1) == 5


def test_a_commit_before_attach_is_dropped_quietly():
    bus = Bus()
    bus.on_commit(CommitInfo([(1, Change(1, updated={"Email": [1]}))], 1))
    assert bus.latest(1) == 0


def test_module_needs_no_store():
    # plain data for other processes: the bus imports nothing from the store
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(busmod))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("store" in (getattr(n, "module", "") or "") for n in top)


# --- notifications from other worker processes (server/workers.py) ---------------------------
# Another worker's commit N can arrive after this worker's own N+1: LMDB
# serialises writers, so a reader that saw N+1 saw N too; the late N must
# neither move ``latest`` back nor wake a waiter that saw N+1, and must
# still wake (and add its kinds to) a waiter behind N.

def test_a_late_notification_from_another_worker():
    b = Bus()
    behind = b.subscribe(1, since=4)
    b.publish(N(1, 6, kinds=("Email",), mailboxes=(1,)))        # ours, first
    seen = b.latest(1)
    assert seen == 6
    current = b.subscribe(1, since=seen)
    b.publish(N(1, 5, kinds=("Mailbox",), mailboxes=(2,)))      # theirs, late
    assert b.latest(1) == 6
    assert current.take() is None
    n = behind.take()
    assert n.modseq == 6 and n.kinds == {"Email", "Mailbox"} and n.mailboxes == {1, 2}
    # a waiter arriving later, behind 5, for the late kind only: woken at once
    late = b.subscribe(1, kinds={"Mailbox"}, since=4)
    assert "Mailbox" in late.take().kinds
    assert b.subscribe(1, kinds={"Mailbox"}, since=5).take() is None


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 30), st.sampled_from(["Email", "Mailbox", "Thread"])),
                min_size=1, max_size=12, unique_by=lambda t: t[0]),
       st.randoms(), st.integers(0, 30), st.sampled_from(["Email", "Mailbox", "Thread"]))
def test_arrival_order_does_not_matter(events, rnd, since, kind):
    """Whatever order the notifications arrive in, the bus ends in the same
    state, and a waiter is woken iff one of them is news to it."""
    def run(order):
        b = Bus()
        before = b.subscribe(7, kinds={kind}, since=since)
        for ms, k in order:
            b.publish(N(7, ms, kinds=(k,)))
        after = b.subscribe(7, kinds={kind}, since=since)
        p, q = before.take(), after.take()
        return (b.latest(7), dict(b._latest_kind[7]),
                None if p is None else p.modseq, None if q is None else bool(q.kinds & {kind}))

    shuffled = list(events)
    rnd.shuffle(shuffled)
    in_order = run(sorted(events))
    assert run(shuffled) == in_order
    news = [ms for ms, k in events if ms > since and k == kind]
    assert (in_order[2] is not None) == bool(news)
    assert (in_order[3] is not None) == bool(news)


def test_a_listener_hears_every_account_until_stopped():
    b = Bus()
    heard = []
    stop = b.listen(heard.append)
    b.publish(N(1, 1))
    b.publish(N(2, 1, kinds=("Outbound",)))
    stop()
    b.publish(N(3, 1))
    stop()                               # twice is harmless
    assert [(n.account, n.kinds) for n in heard] == [(1, {"Email"}), (2, {"Outbound"})]
