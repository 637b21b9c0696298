"""LMTP recipients that name no account (empty local part, ``+detail``
alone, over-long names) get their own 550 and the transaction goes on: the
other recipients are accepted and get their replies after DATA."""
import smtplib

import trio

from conftest import port_of
from mailaccess import accounts
from mailaccess.proto.lmtp import wire
from test_lmtp_service import MSG, mailbox_count

BAD = ["<+bob@localhost>", "<@localhost>", "<+@localhost>", "<+>", "<@>",
       "<" + "x" * 600 + "@localhost>", "<" + "x" * 600 + "+d@localhost>"]


def _transaction(port):
    """Interleave good and bad recipients; -> (rcpt replies, data replies)."""
    rcpt, data = [], []
    with smtplib.LMTP("127.0.0.1", port) as c:
        c.ehlo_or_helo_if_needed()
        c.mail("s@example.org")
        rcpt.append(c.rcpt("alice@localhost"))
        for bad in BAD:
            rcpt.append(c.docmd("RCPT TO:" + bad))
        rcpt.append(c.rcpt("bob@localhost"))
        data.append(c.data(MSG))
        data.append(c.getreply())
        assert c.noop()[0] == 250   # the connection goes on
    return rcpt, data


async def test_recipients_naming_no_account_get_550_and_the_others_their_replies(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    rcpt, data = await trio.to_thread.run_sync(_transaction, port_of(server, "lmtp"))
    assert rcpt[0][0] == 250 and rcpt[-1][0] == 250
    for (code, text), bad in zip(rcpt[1:-1], BAD):
        assert code == 550, (bad, code, text)
    assert [code for code, _ in data] == [250, 250]
    assert mailbox_count(server.store, "alice", ["INBOX"]) == 1
    assert mailbox_count(server.store, "bob", ["INBOX"]) == 1


def test_wire_refuses_an_empty_local_part_for_that_recipient_alone():
    c = wire.LmtpConnection()
    c.receive_data(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<@localhost>\r\n"
                   b"RCPT TO:<u@localhost>\r\n")
    assert isinstance(c.next_event(), wire.Lhlo)
    assert isinstance(c.next_event(), wire.MailFrom)
    err = c.next_event()
    assert isinstance(err, wire.ProtocolError) and err.reply.startswith(b"550 5.1.3")
    assert c.next_event() == wire.RcptTo("u@localhost", {})
