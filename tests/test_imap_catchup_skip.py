"""The dispatcher's catch-up is skipped only when it could say nothing.

After NOOP, FETCH, STORE... the session tells the client what changed in the
selected mailbox.  When the account's modseq is where it was at the last
catch-up of the same selection and nothing is held back, the catch-up is
not run (no store views, no mailbox decode).  These tests pin what must
still be told: changes made elsewhere (also when this worker's bus has not
heard of them yet: another worker's commit), expunges a FETCH had to hold
back (RFC 9051 7.5.1), and a new selection.
"""
import trio

from imap_helpers import AsyncRaw, msg
from mailaccess.server.imap_session import ImapSession


def literal(data: bytes) -> str:
    return "{%d+}\r\n" % len(data) + data.decode()


async def login(ctx) -> AsyncRaw:
    return await AsyncRaw.login(ctx)


def count_refreshes(monkeypatch) -> list:
    calls = []
    real = ImapSession.refresh

    async def counting(self, allow_expunge):
        calls.append(allow_expunge)
        return await real(self, allow_expunge)

    monkeypatch.setattr(ImapSession, "refresh", counting)
    return calls


async def test_quiet_noop_runs_no_catch_up(imap_server, monkeypatch):
    a = await login(imap_server)
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")
    calls = count_refreshes(monkeypatch)
    await a.cmd("NOOP")             # the first after SELECT looks
    n = len(calls)
    for _ in range(3):
        assert await a.cmd("NOOP") == [b"t%d OK NOOP completed" % a.n]
    assert len(calls) == n          # nothing changed: not run again
    a.close()


async def test_noop_tells_a_change_made_elsewhere(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    await b.cmd("APPEND INBOX " + literal(msg("two")))
    assert b"* 2 EXISTS" in await a.cmd("NOOP")
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 +FLAGS (\\Flagged)")
    got = await a.cmd("NOOP")
    assert any(l.startswith(b"* 1 FETCH") and b"\\Flagged" in l for l in got), got
    a.close()
    b.close()


async def test_a_commit_the_bus_has_not_heard_of_is_told(imap_server, monkeypatch):
    """Another worker's commit reaches this worker's bus a moment later: the
    store, not the bus, decides that nothing changed."""
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    frozen = imap_server.bus.latest(1)
    monkeypatch.setattr(type(imap_server.bus), "latest", lambda self, acc: frozen)
    await b.cmd("APPEND INBOX " + literal(msg("two")))
    assert b"* 2 EXISTS" in await a.cmd("NOOP")
    a.close()
    b.close()


async def test_expunge_held_back_by_fetch_is_told_at_noop(imap_server):
    """FETCH may not announce an expunge; the NOOP after it must, although
    the account's modseq has not moved since the FETCH's catch-up."""
    a = await login(imap_server)
    b = await login(imap_server)
    for s in ("one", "two"):
        await a.cmd("APPEND INBOX " + literal(msg(s)))
    await a.cmd("SELECT INBOX")
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    await b.cmd("EXPUNGE")
    got = await a.cmd("FETCH 2 (FLAGS)")
    assert not any(b"EXPUNGE" in l for l in got), got
    got = await a.cmd("NOOP")
    assert b"* 1 EXPUNGE" in got, got
    a.close()
    b.close()


async def test_new_selection_is_caught_up(imap_server):
    """After SELECT of another mailbox, a change there is told."""
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("CREATE Other")
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    await a.cmd("SELECT Other")
    await b.cmd("APPEND Other " + literal(msg("two")))
    assert b"* 1 EXISTS" in await a.cmd("NOOP")
    a.close()
    b.close()


async def test_lone_store_runs_no_catch_up(imap_server, monkeypatch):
    """A STORE nobody else raced: the session knows the mailbox up to the
    STORE's own modseq, so the catch-up after its answer is not run (perf2:
    it used to open a view and decode the mailbox only to find nothing)."""
    a = await login(imap_server)
    for s in ("one", "two"):
        await a.cmd("APPEND INBOX " + literal(msg(s)))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    calls = count_refreshes(monkeypatch)
    for n in (1, 2, 1):
        got = await a.cmd("UID STORE %d +FLAGS ($k%d)" % (n, a.n))
        assert got[-1] == b"t%d OK STORE completed" % a.n, got
        assert any(l.startswith(b"* %d FETCH" % n) for l in got), got
    assert calls == []
    assert await a.cmd("NOOP") == [b"t%d OK NOOP completed" % a.n]
    assert calls == []
    a.close()


async def test_store_after_a_change_elsewhere_in_the_account(imap_server, monkeypatch):
    """Another mailbox of the account moved before the STORE: the selected
    one did not, so nothing is owed; a later change to the selected mailbox
    is still told at the next command."""
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("CREATE Other")
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    await b.cmd("APPEND Other " + literal(msg("two")))
    got = await a.cmd("STORE 1 +FLAGS (\\Flagged)")
    assert got[-1].endswith(b"OK STORE completed"), got
    assert not any(b"EXISTS" in l for l in got), got
    await b.cmd("APPEND INBOX " + literal(msg("three")))
    assert b"* 2 EXISTS" in await a.cmd("NOOP")
    a.close()
    b.close()


async def test_a_change_after_a_lone_store_is_told_bus_or_not(imap_server, monkeypatch):
    """After a lone STORE, a commit by someone else (one the bus has not
    heard of yet: another worker's) is told at the next command: the store's
    modseq, not the bus, decides."""
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    await a.cmd("STORE 1 +FLAGS (\\Flagged)")
    frozen = imap_server.bus.latest(1)
    monkeypatch.setattr(type(imap_server.bus), "latest", lambda self, acc: frozen)
    await b.cmd("APPEND INBOX " + literal(msg("two")))
    assert b"* 2 EXISTS" in await a.cmd("NOOP")
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 -FLAGS (\\Flagged)")
    got = await a.cmd("NOOP")
    assert any(l.startswith(b"* 1 FETCH") and b"\\Flagged" not in l for l in got), got
    a.close()
    b.close()


async def test_a_store_the_loop_wrote_itself_reads_nothing_back(imap_server, monkeypatch):
    """perf4: a lone one-message STORE written by the loop itself
    (storeio.write_now) opens no read view at all: its answer comes from the
    records its transaction left, and the catch-up check takes the account's
    modseq from the STORE's own commit (Done.current) instead of reading it
    back; the next command reads it again."""
    a = await login(imap_server)
    for s in ("one", "two", "three"):
        await a.cmd("APPEND INBOX " + literal(msg(s)))
    await a.cmd("SELECT INBOX")
    await a.cmd("UID STORE 3 +FLAGS (\\Flagged)")
    store = imap_server.store
    # the writer thread does no idle work (checkpoints) from now on: the
    # loop finds it idle and writes each STORE itself
    monkeypatch.setattr(store, "_idle_timeout", lambda: None)
    await trio.sleep(0.3)
    views = []
    real = store.view

    def counting():
        views.append(1)
        return real()

    monkeypatch.setattr(store, "view", counting)
    here = []
    real_here = store.write_here
    monkeypatch.setattr(store, "write_here", lambda *a: here.append(real_here(*a)) or here[-1])
    for n in (1, 2):
        while store._busy.locked() or not store._queue.empty():
            await trio.sleep(0.01)
        got = await a.cmd("UID STORE %d +FLAGS (\\Flagged)" % n)
        assert got == [b"* %d FETCH (UID %d FLAGS (\\Flagged \\Recent))" % (n, n),
                       b"t%d OK STORE completed" % a.n], got
    assert here == [True, True]
    assert views == []
    assert await a.cmd("NOOP") == [b"t%d OK NOOP completed" % a.n]
    assert views == [1]
    a.close()


async def test_a_fetch_built_at_once_reads_the_modseq_in_its_own_view(imap_server, monkeypatch):
    """perf8-cmd: a FETCH answer built in one view with no wait since hands
    the account's modseq read in that view to the catch-up check
    (Done.current): one view per quiet FETCH, not two.  A commit made before
    the FETCH (one the bus has not heard of: another worker's) is still
    told by that FETCH's catch-up."""
    a = await login(imap_server)
    b = await login(imap_server)
    for s in ("one", "two"):
        await a.cmd("APPEND INBOX " + literal(msg(s)))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOOP")
    store = imap_server.store
    views = []
    real = store.view

    def counting(*args, **kw):
        views.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(store, "view", counting)
    calls = count_refreshes(monkeypatch)
    got = await a.cmd("UID FETCH 2 (FLAGS)")
    assert got[-1] == b"t%d OK FETCH completed" % a.n, got
    assert views == [1] and calls == []
    frozen = imap_server.bus.latest(1)
    monkeypatch.setattr(type(imap_server.bus), "latest", lambda self, acc: frozen)
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 +FLAGS (\\Flagged)")
    got = await a.cmd("UID FETCH 2 (FLAGS)")
    assert any(l.startswith(b"* 1 FETCH") and b"\\Flagged" in l for l in got), got
    assert calls == [False]
    a.close()
    b.close()
