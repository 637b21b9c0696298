"""IDLE is woken by the store's events: an LMTP delivery and an APPEND from
another session reach an idling imaplib/imapclient session without polling."""
import smtplib
import socket

import trio
import trio.testing
from imapclient import IMAPClient

from imap_helpers import connect, imap_port, msg, run
from mailaccess.server.imap_session import ImapSession


def lmtp_deliver(ctx, rcpt, data):
    with smtplib.LMTP("127.0.0.1", ctx.bound["lmtp"][0][1]) as c:
        c.sendmail("s@example.org", [rcpt], data)


async def test_lmtp_delivery_wakes_idle(imap_server):
    client = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30))
    await run(client.login, "alice", "pw")
    await run(client.select_folder, "INBOX")
    await run(client.idle)
    await run(lmtp_deliver, imap_server, "alice@localhost", msg("pushed"))
    responses = await run(client.idle_check, 10)
    assert (1, b"EXISTS") in responses
    await run(client.idle_done)
    await run(client.logout)


async def test_append_in_one_session_wakes_idle_in_another(imap_server):
    idler = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30))
    await run(idler.login, "alice", "pw")
    await run(idler.select_folder, "INBOX")
    await run(idler.idle)

    other = await run(connect, imap_server)
    await run(other.append, "INBOX", None, None, msg("one"))
    seen = []
    with trio.fail_after(20):
        while (1, b"EXISTS") not in seen:
            seen += await run(idler.idle_check, 5)
    # only once the idler was told of the message: a flag set before its
    # catch-up would arrive as part of the new message (EXISTS, no FETCH)
    await run(other.select, "INBOX")
    await run(other.store, "1", "+FLAGS", r"(\Flagged)")
    await run(other.logout)
    with trio.fail_after(20):
        while not any(isinstance(r, tuple) and len(r) > 2 and r[1] == b"FETCH" for r in seen):
            seen += await run(idler.idle_check, 5)
    await run(idler.idle_done)
    await run(idler.logout)


async def test_idle_other_account_is_not_woken(imap_server, monkeypatch):
    """Bob idles; a delivery to alice must not wake bob's session at all (not
    merely produce no output: a woken session refreshes, and that is counted)."""
    refreshed = []
    real_refresh = ImapSession.refresh

    async def spy(self, allow_expunge):
        refreshed.append(self.user)
        return await real_refresh(self, allow_expunge)

    monkeypatch.setattr(ImapSession, "refresh", spy)
    bus = imap_server.bus
    with imap_server.store.view() as v:
        alice = v.account_by_name("alice").id
    idler = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30))
    await run(idler.login, "bob", "pw")
    await run(idler.select_folder, "INBOX")
    await run(idler.idle)
    await trio.testing.wait_all_tasks_blocked()
    assert refreshed == ["bob"]                  # the one at the start of IDLE
    before = bus.latest(alice)
    await run(lmtp_deliver, imap_server, "alice@localhost", msg("not for bob"))
    with trio.fail_after(10):
        await bus.wait(alice, since=before)      # alice's change is on the bus
    await trio.testing.wait_all_tasks_blocked()  # a woken bob would refresh now
    assert refreshed == ["bob"]
    # the control: bob's own delivery does wake him
    await run(lmtp_deliver, imap_server, "bob@localhost", msg("for bob"))
    responses = await run(idler.idle_check, 10)
    assert (1, b"EXISTS") in responses
    assert refreshed[1:] and set(refreshed) == {"bob"}
    await run(idler.idle_done)
    await run(idler.logout)


async def test_idle_without_selected_mailbox_and_bad_done(imap_server):
    def go():
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a LOGIN alice pw\r\nb IDLE\r\n"); f.flush()
        assert f.readline().startswith(b"a OK")
        assert f.readline().startswith(b"+ ")
        f.write(b"NOTDONE\r\n"); f.flush()
        assert f.readline().startswith(b"b BAD")
        f.write(b"c NOOP\r\n"); f.flush()
        assert f.readline().startswith(b"c OK")
        s.close()
    await run(go)
