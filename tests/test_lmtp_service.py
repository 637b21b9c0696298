"""LMTP service over real loopback sockets with smtplib.LMTP as the client."""
import smtplib

import pytest
import trio

from conftest import port_of
from mailaccess import accounts
from mailaccess.store import ops

MSG = b"From: sender@example.org\r\nTo: alice@localhost\r\nSubject: hello\r\n\r\nHi there\r\n"


@pytest.fixture
async def users(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob@example.net", "pw")
    acc = server.store
    with acc.view() as v:
        alice = v.account_by_name("alice").id
    await trio.to_thread.run_sync(lambda: acc.write_sync(ops.create_mailbox, alice, 0, "lists"))
    return server


def lmtp_send(port, sender, rcpts, msg):
    """One transaction; -> {recipient: (code, text)} for every recipient.

    smtplib.LMTP.sendmail reads a single reply after DATA (it is SMTP's code),
    so the per-recipient LMTP replies (RFC 2033 4.2) are read with getreply()."""
    out = {}
    with smtplib.LMTP("127.0.0.1", port) as c:
        c.ehlo_or_helo_if_needed()
        c.mail(sender)
        accepted = []
        for r in rcpts:
            code, text = c.rcpt(r)
            if code == 250:
                accepted.append(r)
            else:
                out[r] = (code, text)
        if not accepted:
            c.rset()
            return out
        code, text = c.data(msg)
        out[accepted[0]] = (code, text)
        for r in accepted[1:]:
            out[r] = c.getreply()
    return out


def mailbox_count(store, user, path):
    with store.view() as v:
        a = v.account_by_name(user)
        return v.mailbox_by_path(a.id, path).total


async def test_per_recipient_replies_and_routing(users):
    port = port_of(users, "lmtp")
    replies = await trio.to_thread.run_sync(
        lmtp_send, port, "s@example.org",
        ["alice@localhost", "alice+lists@localhost", "alice+nosuch@localhost",
         "bob@example.net", "nobody@localhost"], MSG)
    assert {r: code for r, (code, _) in replies.items()} == {
        "alice@localhost": 250, "alice+lists@localhost": 250, "alice+nosuch@localhost": 250,
        "bob@example.net": 250, "nobody@localhost": 550}
    st = users.store
    assert mailbox_count(st, "alice", ["INBOX"]) == 2
    assert mailbox_count(st, "alice", ["lists"]) == 1
    assert mailbox_count(st, "bob@example.net", ["INBOX"]) == 1


async def test_unknown_domain_is_refused(users):
    port = port_of(users, "lmtp")
    replies = await trio.to_thread.run_sync(lmtp_send, port, "s@x", ["alice@elsewhere.org"], MSG)
    assert replies["alice@elsewhere.org"][0] == 550


async def test_message_bytes_survive_dot_stuffing(users):
    body = MSG + b".a line with a dot\r\n..two\r\n"
    await trio.to_thread.run_sync(lmtp_send, port_of(users, "lmtp"), "s@x",
                                  ["alice@localhost"], body)
    with users.store.view() as v:
        a = v.account_by_name("alice").id
        ib = v.mailbox_by_role(a, "inbox")
        [(uid, eid)] = v.uids(a, ib.id)
        assert bytes(v.blob(a, v.email(a, eid).blob)) == body


async def test_oversize_message_refused(users, cfg):
    limit = cfg.lmtp.max_message_size
    big = MSG + b"x" * (limit + 10)
    replies = await trio.to_thread.run_sync(lmtp_send, port_of(users, "lmtp"), "s@x",
                                            ["alice@localhost"], big)
    assert replies["alice@localhost"][0] == 552
    assert mailbox_count(users.store, "alice", ["INBOX"]) == 0


async def test_many_concurrent_deliveries(users):
    port = port_of(users, "lmtp")

    def client(i):
        with smtplib.LMTP("127.0.0.1", port) as c:
            for j in range(10):
                c.sendmail("s@x", ["alice@localhost"], MSG + b"n=%d/%d\r\n" % (i, j))

    async with trio.open_nursery() as n:
        for i in range(10):
            n.start_soon(trio.to_thread.run_sync, client, i)
    assert mailbox_count(users.store, "alice", ["INBOX"]) == 100
    # group commit: fewer commits than deliveries
    assert users.store.stats["commits"] < users.store.stats["jobs"]
