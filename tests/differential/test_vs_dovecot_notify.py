"""Differential cases for NOTIFY (RFC 5465), run like test_vs_dovecot.py:
``MAILACCESS_DIFFERENTIAL=1 pytest -m differential tests/differential``.

Dovecot delivers NOTIFY news for other mailboxes only with the mailbox list
index on, so these cases run against their own Dovecot (the shared one of
test_vs_dovecot.py is left as it is).  Compared where both servers are
deterministic and the RFC leaves no choice:

* which NOTIFY commands are OK, NO or BAD.  Left out: the cases where
  Dovecot is laxer than RFC 5465 (it accepts MailboxName with SELECTED,
  6.1, MessageNew without MessageExpunge outside SELECTED, 5, and a NOTIFY
  SET without any event group, which the §8 ABNF does not allow), and the
  list inside BADEVENT (Dovecot lists the unsupported events asked for,
  RFC 5465 3.1 says the supported ones);
* NOTIFY SET STATUS's initial STATUS responses;
* what session A is sent, without asking, when session B delivers, creates,
  renames, subscribes, flags and expunges (each read until the expected
  response arrives, then compared normalised).
"""
from __future__ import annotations

import re
import time

import pytest
import trio

from imap_helpers import imap_port
from imapdiff import Normaliser, login, message as _msg
from test_vs_dovecot import dovecot_peer, emptied

pytestmark = [pytest.mark.differential]


@pytest.fixture(scope="module")
def notify_dovecot():
    yield from dovecot_peer("mailaccess-diff-notify-", "mailbox_list_index = yes\n")


@pytest.fixture
def dovecot(notify_dovecot):
    return emptied(notify_dovecot)


async def both(imap_server, dovecot, fn):
    """FN(port) on each server (in threads); the two results."""
    def go():
        return fn(imap_port(imap_server)), fn(dovecot.ports["imap"])
    with trio.fail_after(300):
        return await trio.to_thread.run_sync(go)


OUTCOMES = [
    "NOTIFY NONE",
    "NOTIFY SET (SELECTED (MessageNew MessageExpunge))",
    "NOTIFY SET (selected-delayed (messagenew messageexpunge flagchange))",
    "NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge))",
    "NOTIFY SET (SELECTED (MessageNew))",
    "NOTIFY SET (SELECTED (FlagChange))",
    "NOTIFY SET (SELECTED (MessageExpunge FlagChange))",
    "NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)",
    "NOTIFY SET (SELECTED NONE)",
    "NOTIFY SET (INBOXES (MessageNew MessageExpunge))",
    "NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName))",
    "NOTIFY SET (SUBSCRIBED (SubscriptionChange))",
    "NOTIFY SET (SUBTREE INBOX (MailboxName))",
    'NOTIFY SET (MAILBOXES (INBOX "Foo Bar") (MessageNew MessageExpunge))',
    "NOTIFY SET (PERSONAL NONE)",
    "NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))",
    "NOTIFY SET (PERSONAL (MailboxMetadataChange))",
    "NOTIFY SET (PERSONAL (ServerMetadataChange))",
    "NOTIFY SET (SELECTED (MessageNew MessageExpunge AnnotationChange))",
    "NOTIFY BOGUS",
    "NOTIFY SET (BOGUS (MessageNew MessageExpunge))",
    "NOTIFY SET (PERSONAL ())",
]


@pytest.mark.parametrize("cmd", OUTCOMES)
async def test_notify_outcome(imap_server, dovecot, cmd):
    def go(port):
        c = login(port)
        try:
            c.command("SELECT INBOX")
            r = c.command(cmd)
            return r[-1].split()[1]
        finally:
            c.close()
    ma, dc = await both(imap_server, dovecot, go)
    assert ma == dc, (cmd, ma, dc)


async def test_notify_set_status_initial_status(imap_server, dovecot):
    def go(port):
        c = login(port)
        try:
            c.command("CREATE Lists")
            c.command("CREATE Other")
            c.command("APPEND Lists {}", [_msg("one")])
            c.command("APPEND Lists (\\Seen) {}", [_msg("two")])
            n = Normaliser()
            a = n(c.command("NOTIFY SET STATUS (MAILBOXES (Lists Other) "
                            "(MessageNew MessageExpunge))"))
            b = n(c.command("NOTIFY SET STATUS (MAILBOXES Lists "
                            "(MessageNew MessageExpunge FlagChange))"))
            return a, b
        finally:
            c.close()
    ma, dc = await both(imap_server, dovecot, go)
    assert ma == dc


def _steps(port):
    """Session A watches; session B changes things; A's news after each step."""
    a, b = login(port), login(port)
    norm = Normaliser(children=False)

    def n(responses):
        # RFC 5465 5.1: a flag change's FETCH MUST carry UID and FLAGS;
        # Dovecot sends FLAGS alone.  Compared without the UID.
        return [re.sub(r" UID \d+\)$", ")", x) if " FETCH (FLAGS " in x else x
                for x in norm(responses)]
    out = []
    try:
        b.command("CREATE Lists")
        b.command("APPEND Lists {}", [_msg("l0")])   # Dovecot: a UIDVALIDITY event otherwise
        b.command("APPEND INBOX {}", [_msg("old")])
        a.command("SELECT INBOX")
        a.command("NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge FlagChange)) "
                  "(PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))")

        def step(name, pred, *cmds, settle=False):
            if settle:
                # Dovecot re-arms its watch of the selected mailbox 1 s after
                # each command or notification (imap-notify.c,
                # IMAP_NOTIFY_WATCH_ADD_DELAY_MSECS); a change inside that
                # window reaches its client only with the next command
                time.sleep(1.5)
            for cmd in cmds:
                if isinstance(cmd, tuple):
                    b.command(*cmd)
                else:
                    b.command(cmd)
            out.append((name, n(a.responses_until(pred))))

        step("append elsewhere", lambda r: r.startswith(b"* STATUS"),
             ("APPEND Lists {}", [_msg("l1")]))
        step("create", lambda r: r.startswith(b"* LIST"), "CREATE Work")
        # (renamed before it is subscribed: a subscription that follows the
        # rename is an automatic one, which RFC 5465 5.4 wants shown as
        # \Subscribed; Dovecot's LIST leaves it out)
        step("rename", lambda r: r.startswith(b"* LIST"), "RENAME Work Play")
        step("subscribe", lambda r: r.startswith(b"* LIST"), "SUBSCRIBE Play")
        step("unsubscribe", lambda r: r.startswith(b"* LIST"), "UNSUBSCRIBE Play")
        step("delete", lambda r: r.startswith(b"* LIST"), "DELETE Play")
        step("append selected", lambda r: b"FETCH" in r, ("APPEND INBOX {}", [_msg("new")]),
             settle=True)
        b.command("SELECT INBOX")
        step("flag", lambda r: b"FETCH" in r, "STORE 1 +FLAGS (\\Flagged)", settle=True)
        step("flag deleted", lambda r: b"FETCH" in r, "STORE 1 +FLAGS (\\Deleted)",
             settle=True)
        step("expunge", lambda r: r.rstrip().endswith(b"EXPUNGE"), "EXPUNGE", settle=True)
        return out
    finally:
        a.close()
        b.close()


async def test_notify_news_between_commands(imap_server, dovecot):
    ma, dc = await both(imap_server, dovecot, _steps)
    diffs = [(m, d) for m, d in zip(ma, dc) if m != d]
    assert not diffs, diffs
