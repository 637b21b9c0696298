"""IMAP IDLE on the event bus, from the outside (real clients over loopback).

What the bus holds for an account stays constant while 10,000 changes happen
to it, whether its IMAP sessions never IDLE (they hold nothing) or IDLE (one
subscription, at most one pending notification): counted on the bus, not
timed.  An idling session is woken only by its selected mailbox."""
import functools
import threading

import trio
import trio.testing
from imapclient import IMAPClient

from imap_helpers import connect, imap_port, msg, run
from mailaccess.store import ops

CHANGES = 10_000


def flag_storm(store, acc: int, eid: int, n: int) -> None:
    """N write requests toggling \\Flagged on one email: N modseqs, N change
    records, committed in the writer's batches."""
    done = threading.Semaphore(0)
    errors = []

    def ack(_result, error):
        if error is not None:
            errors.append(error)
        done.release()

    for i in range(n):
        kw = ["$flagged"]
        fn = functools.partial(ops.set_keywords, add=kw) if i % 2 == 0 else \
            functools.partial(ops.set_keywords, remove=kw)
        store.submit(fn, acc, [eid], done=ack)
    for _ in range(n):
        done.acquire()
    assert not errors, errors[:3]


async def test_sessions_hold_constant_bus_memory_under_10000_changes(imap_server):
    ctx = imap_server
    store, bus = ctx.store, ctx.bus
    quiet = await run(connect, ctx)                   # logged in, selected, never IDLEs
    await run(quiet.append, "INBOX", None, None, msg("one"))
    await run(quiet.select, "INBOX")
    with store.view() as v:
        acc = v.account_by_name("alice").id
        inbox = v.mailbox_by_role(acc, "inbox").id
        [(_uid, eid)] = v.uids(acc, inbox)
        start = v.highest_modseq(acc)
    assert bus.holding(acc) == (0, 0)

    idler = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(ctx), ssl=False, timeout=30))
    await run(idler.login, "alice", "pw")
    await run(idler.select_folder, "INBOX")
    await run(idler.idle)
    await trio.testing.wait_all_tasks_blocked()
    assert bus.holding(acc) == (1, 0)                 # the idler's, only while it idles

    await run(flag_storm, store, acc, eid, CHANGES)
    with store.view() as v:
        final = v.highest_modseq(acc)
    assert final - start == CHANGES
    with trio.fail_after(30):
        await bus.wait(acc, since=final - 1)          # the last change reached the bus
    subs, pending = bus.holding(acc)
    assert subs == 1 and pending <= 1                 # the idler: one coalesced entry

    # the idler was told (coalesced), the quiet session learns on NOOP
    seen = []
    with trio.fail_after(30):
        while not any(r[1:2] == (b"FETCH",) for r in seen if isinstance(r, tuple)):
            seen += await run(idler.idle_check, 5)
    await run(idler.idle_done)
    await trio.testing.wait_all_tasks_blocked()
    assert bus.holding(acc) == (0, 0)                 # IDLE over: nothing left

    quiet.untagged_responses.pop("FETCH", None)
    typ, _ = await run(quiet.noop)
    assert typ == "OK" and quiet.untagged_responses.get("FETCH")
    assert bus.holding(acc) == (0, 0)
    await run(quiet.logout)
    await run(idler.logout)


async def test_idle_is_not_woken_by_another_mailbox(imap_server, monkeypatch):
    """A change in a mailbox other than the selected one produces no output
    (as before) and now does not even wake the idling session."""
    from mailaccess.server.imap_session import ImapSession
    refreshed = []
    real_refresh = ImapSession.refresh

    async def spy(self, allow_expunge):
        if self.sel is not None:   # the idler; the appending session selects nothing
            refreshed.append(self.user)
        return await real_refresh(self, allow_expunge)

    monkeypatch.setattr(ImapSession, "refresh", spy)
    other = await run(connect, imap_server)
    await run(other.create, "Other")
    idler = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30))
    await run(idler.login, "alice", "pw")
    await run(idler.select_folder, "INBOX")
    await run(idler.idle)
    await trio.testing.wait_all_tasks_blocked()
    n = len(refreshed)
    bus = imap_server.bus
    with imap_server.store.view() as v:
        acc = v.account_by_name("alice").id
    before = bus.latest(acc)
    await run(other.append, "Other", None, None, msg("elsewhere"))
    with trio.fail_after(10):
        await bus.wait(acc, since=before)        # the change is on the bus
    await trio.testing.wait_all_tasks_blocked()  # a woken idler would refresh now
    assert len(refreshed) == n
    await run(other.append, "INBOX", None, None, msg("here"))
    responses = await run(idler.idle_check, 10)
    assert (1, b"EXISTS") in responses
    await run(idler.idle_done)
    await run(idler.logout)
    await run(other.logout)


async def test_idle_on_a_mailbox_deleted_elsewhere_says_bye(imap_server):
    other = await run(connect, imap_server)
    await run(other.create, "Doomed")
    idler = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30))
    await run(idler.login, "alice", "pw")
    await run(idler.select_folder, "Doomed")
    await run(idler.idle)
    await run(other.delete, "Doomed")
    responses = await run(idler.idle_check, 10)
    assert any(r[:1] == (b"BYE",) for r in responses), responses
    await run(other.logout)
