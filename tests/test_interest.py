"""The worker channel's filtered fan-out (server/interest.py), on its own and
through a WorkerLink over a socketpair: a commit goes to another worker only
if that worker wants it, and a want learned late is answered with a catch-up
that carries every commit made before it (no wake-up is lost)."""
from __future__ import annotations

import json
import socket

import trio

from mailaccess.bus import Bus, Notification
from mailaccess.server import workers
from mailaccess.server.interest import Fanout, Wants
from mailaccess.store.records import Change


def ch(ms, kind="Email", mailboxes=(1,)):
    return Change(modseq=ms, mailboxes=list(mailboxes), updated={kind: [ms]})


def sent(f: Fanout, changes) -> list[tuple[int, int]]:
    return [(acc, c.modseq) for acc, c in f.committed(changes)]


def test_a_worker_not_heard_from_yet_is_sent_everything():
    f = Fanout(0, 3)
    assert sent(f, [(1, ch(5)), (2, ch(6))]) == [(1, 5), (2, 6)]
    f.peer_state(1, [], frozenset())
    # worker 2 has not answered yet: still everything
    assert sent(f, [(1, ch(7))]) == [(1, 7)]
    f.peer_state(2, [], frozenset())
    assert sent(f, [(1, ch(8))]) == []
    # its first state, whatever it holds, needs no catch-up: it had everything
    g = Fanout(0, 2)
    g.committed([(1, ch(3))])
    assert g.peer_state(1, [1], frozenset()) == []


def test_only_wanted_accounts_are_sent_and_a_new_want_is_caught_up():
    f = Fanout(0, 2)
    f.peer_state(1, [], frozenset())
    assert sent(f, [(7, ch(1, "Mailbox")), (7, ch(2)), (7, ch(3, "Thread")),
                    (7, ch(4)), (8, ch(5))]) == []
    # the other worker starts waiting on account 7 after those commits:
    # it is told the latest modseq of each kind, "all mailboxes"
    notes = f.peer_add(1, [7])
    assert notes == [Notification(7, 1, frozenset({"Mailbox"}), None),
                     Notification(7, 3, frozenset({"Thread"}), None),
                     Notification(7, 4, frozenset({"Email"}), None)]
    assert f.peer_add(1, [7]) == []                   # already wanted
    assert sent(f, [(7, ch(6)), (8, ch(7))]) == [(7, 6)]
    f.peer_drop(1, [7])
    assert sent(f, [(7, ch(8))]) == []
    assert f.peer_add(1, [9]) == []                   # nothing committed there


def test_kinds_heard_for_every_account():
    f = Fanout(1, 2)
    f.peer_state(0, [], frozenset())
    f.committed([(1, ch(1, "Outbound")), (2, ch(2)), (3, ch(3, "Outbound"))])
    notes = f.peer_kinds(0, frozenset({"Outbound"}))
    assert sorted((n.account, n.modseq, n.kinds) for n in notes) == [
        (1, 1, {"Outbound"}), (3, 3, {"Outbound"})]
    assert sent(f, [(4, ch(4)), (5, ch(5, "Outbound"))]) == [(5, 5)]
    assert f.peer_kinds(0, frozenset({"Outbound"})) == []
    notes = f.peer_kinds(0, None)                     # everything, from now on
    assert {(n.account, n.modseq) for n in notes} >= {(2, 2), (4, 4)}
    assert sent(f, [(9, ch(9))]) == [(9, 9)]
    # a state that adds accounts and kinds catches both up
    f.peer_state(0, [], frozenset())
    notes = f.peer_state(0, [2], frozenset({"Outbound"}))
    assert sorted((n.account, n.modseq) for n in notes) == [(1, 1), (2, 2), (3, 3), (5, 5)]


def test_a_commit_is_sent_or_caught_up_whatever_the_order():
    """The commit hook (writer thread) and the want (loop) in either order:
    the waiter learns modseq 2 one way or the other."""
    for commit_first in (True, False):
        f = Fanout(0, 2)
        f.peer_state(1, [], frozenset())
        f.committed([(4, ch(1))])
        if commit_first:
            out, notes = sent(f, [(4, ch(2))]), f.peer_add(1, [4])
        else:
            notes, out = f.peer_add(1, [4]), sent(f, [(4, ch(2))])
        told = [ms for _, ms in out] + [n.modseq for n in notes]
        assert max(told) == 2


def test_wants_linger_after_the_last_waiter():
    w = Wants(linger=10)
    assert w.account(3, True, 0.0)                    # announce
    assert not w.account(3, True, 1.0)                # a second waiter
    assert not w.account(3, False, 2.0)               # the last waiter left
    assert w.expire(5.0) == []
    assert not w.account(3, True, 6.0)                # back within the linger
    assert not w.account(3, False, 7.0)
    assert w.expire(16.9) == []
    assert w.expire(17.0) == [3]
    assert 3 not in w.accounts
    assert w.account(3, True, 20.0)                   # announced again
    assert w.listened(frozenset({"Outbound"}))
    assert not w.listened(frozenset({"Outbound"}))


def test_the_bus_tells_its_watcher_about_waiters_and_listeners():
    b = Bus()
    seen = []
    b.watch(lambda acc, on: seen.append((acc, on)), lambda kinds: seen.append(kinds))
    s1 = b.subscribe(5, since=0)
    s2 = b.subscribe(5, since=0)
    s1.close()
    s2.close()
    stop = b.listen(lambda n: None, kinds={"Outbound"})
    stop()
    assert seen == [(5, True), (5, False), frozenset({"Outbound"}), frozenset()]
    assert b.wanted() == (set(), frozenset())
    heard = []
    stop = b.listen(heard.append, kinds={"Outbound"})
    b.publish(Notification(1, 1, frozenset({"Email"})))
    b.publish(Notification(1, 2, frozenset({"Outbound", "Email"})))
    assert [n.modseq for n in heard] == [2]
    assert b.wanted() == (set(), frozenset({"Outbound"}))


class _Ctx:
    def __init__(self, bus):
        self.bus = bus
        self.store = object()


class Info:
    def __init__(self, changes):
        self.changes = changes


def _read(sock: socket.socket, buf: bytearray, n: int) -> list[bytes]:
    """The next N lines SOCK receives."""
    sock.settimeout(30)
    while buf.count(b"\n") < n:
        data = sock.recv(65536)
        if not data:
            raise EOFError(bytes(buf))
        buf += data
    *lines, rest = bytes(buf).split(b"\n", n)
    buf[:] = rest
    return lines


async def _until(cond) -> None:
    with trio.fail_after(30):
        while not cond():
            await trio.sleep(0.001)


async def test_worker_link_sends_only_what_the_other_worker_wants():
    """The link's wire: it announces its wants and asks for the others';
    once the other worker said it wants nothing, commits stay home; its
    waiter on an account that was written before gets a catch-up, then
    every commit; a waiter here is announced, and dropped after the linger.
    (A line sent on the same socket after one that should not be there
    shows that it was not: the link sends in order.)"""
    a, b = socket.socketpair()
    bus = Bus()
    bus.attach()
    link = workers.WorkerLink(0, 2, a, linger=0.05)
    buf = bytearray()

    async def read(n):
        return await trio.to_thread.run_sync(_read, b, buf, n)

    async with trio.open_nursery() as nursery:
        await nursery.start(link.run, _Ctx(bus), nursery.cancel_scope)
        assert await read(2) == [b'W[0,"=",[],[]]', b"Q[0]"]
        # worker 1 not heard from yet: sent everything
        link.on_commit(Info([(3, ch(1))]))
        assert [workers.decode(ln).modseq for ln in await read(1)] == [1]
        b.sendall(b'W[1,"=",[],[]]\n')
        await _until(lambda: link.fanout.peers[1] is not None)
        link.on_commit(Info([(3, ch(2))]))              # not sent
        b.sendall(b'W[1,"+",[3]]\n')                  # a waiter there, after the commit
        assert [workers.decode(ln) for ln in await read(1)] == [
            Notification(3, 2, frozenset({"Email"}), None)]
        link.on_commit(Info([(4, ch(3)), (3, ch(4))]))
        assert [(n.account, n.modseq) for n in map(workers.decode, await read(1))] == [(3, 4)]
        b.sendall(b'W[1,"-",[3]]\n')
        await _until(lambda: not link.fanout.peers[1].accounts)
        link.on_commit(Info([(3, ch(5))]))              # not sent
        # a waiter here: announced at once, withdrawn after the linger
        with bus.subscribe(9, since=0):
            assert await read(1) == [b'W[0,"+",[9]]']
        assert await read(1) == [b'W[0,"-",[9]]']
        # a started worker asks: this one tells its whole state
        stop = bus.listen(lambda n: None, kinds={"Outbound"})
        b.sendall(b"Q[1]\n")
        assert await read(2) == [b'W[0,"k",["Outbound"]]', b'W[0,"=",[],["Outbound"]]']
        stop()
        nursery.cancel_scope.cancel()
    a.close()
    b.close()
