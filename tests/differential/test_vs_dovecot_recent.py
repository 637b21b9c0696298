"""Differential cases for issue 7 §5 item 2: \\Recent (RFC 3501 2.3.2), run like
test_vs_dovecot.py: ``MAILACCESS_DIFFERENTIAL=1 pytest -m differential tests/differential``.

Which session a message is recent in depends on every session before it,
so these cases drive several sessions per server (one Duo each, the same
commands in the same order on both servers) and compare \\Recent in FETCH
FLAGS, ``* n RECENT`` and STATUS RECENT (every other case compares them too,
one session at a time: imapdiff.Normaliser keep_recent).
"""
from __future__ import annotations

import functools

import pytest

from imapdiff import Duo, Normaliser, message
from test_vs_dovecot import _dovecot_instance, dovecot, sessions  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.differential]


_msg = functools.partial(message, domain="recent")


def send(duo: Duo, text: str, literals=()):
    verb = text.split(" ", 1)[0].upper()
    return duo.send(text, literals, norm=Normaliser(
        keep_recent=True, drop_flag_updates=verb not in ("SELECT", "EXAMINE")),
        extra_fetch_ok=verb == "COPY")


async def test_select_claims_examine_does_not(imap_server, dovecot):
    def body(a, b, c):
        for i in range(3):
            send(a, "APPEND INBOX {}", [_msg(f"s{i}")])
        send(b, "EXAMINE INBOX")
        send(b, "FETCH 1:* FLAGS")
        send(b, "SEARCH RECENT")
        send(b, "CLOSE")
        send(a, "SELECT INBOX")
        send(a, "FETCH 1:* FLAGS")
        send(b, "SELECT INBOX")
        send(b, "FETCH 1:* FLAGS")
        send(b, "SEARCH RECENT")
        send(c, "EXAMINE INBOX")
        send(a, "UNSELECT")
        send(a, "SELECT INBOX")
        send(a, "FETCH 1:* FLAGS")
    await sessions(imap_server, dovecot, 3, body)


async def test_search_new_old_recent(imap_server, dovecot):
    def body(a, b):
        send(a, "APPEND INBOX {}", [_msg("n1")])
        send(a, "APPEND INBOX (\\Seen) {}", [_msg("n2")])
        send(a, "SELECT INBOX")
        send(a, "SEARCH RECENT")
        send(b, "APPEND INBOX {}", [_msg("n3")])
        # Dovecot claims an arrival only at a full sync (NOOP, CHECK, IDLE):
        # one first announced by a SEARCH or FETCH answer is not recent until
        # the next NOOP; mailaccess claims it in the answer that announces it
        # (RFC 3501 2.3.2: "the first session to have been notified").  The
        # conversation syncs with NOOP first, where both agree.
        send(a, "NOOP")
        for key in ("RECENT", "NEW", "OLD", "NOT RECENT", "UNSEEN NOT NEW", "OR NEW SEEN",
                    "NOT OLD"):
            send(a, f"SEARCH {key}")
            send(a, f"UID SEARCH {key}")
        send(a, "STORE 1 +FLAGS (\\Seen)")
        send(a, "SEARCH NEW")
        send(a, "FETCH 1:* FLAGS")
        send(b, "SELECT INBOX")
        send(b, "SEARCH NEW")
        send(b, "SEARCH OLD")
    await sessions(imap_server, dovecot, 2, body)


async def test_arrival_while_selected(imap_server, dovecot):
    def body(a, b, c):
        send(a, "APPEND INBOX {}", [_msg("w1")])
        send(a, "SELECT INBOX")
        send(b, "SELECT INBOX")
        send(c, "APPEND INBOX {}", [_msg("w2")])
        send(b, "NOOP")
        send(b, "FETCH 1:* FLAGS")
        send(a, "NOOP")
        send(a, "FETCH 1:* FLAGS")
        send(c, "EXAMINE INBOX")
        send(b, "APPEND INBOX {}", [_msg("w3")])
        send(c, "NOOP")
        send(c, "FETCH 1:* FLAGS")
        send(a, "NOOP")
        send(a, "FETCH 1:* FLAGS")
    await sessions(imap_server, dovecot, 3, body)


async def test_status_recent(imap_server, dovecot):
    def body(a, b):
        send(a, "CREATE Other")
        for i in range(3):
            send(a, "APPEND Other {}", [_msg(f"t{i}")])
        send(a, "STATUS Other (MESSAGES RECENT UNSEEN)")
        send(b, "EXAMINE Other")
        send(a, "STATUS Other (RECENT)")
        send(b, "STATUS Other (RECENT)")
        send(b, "SELECT Other")
        send(a, "STATUS Other (RECENT)")
        send(b, "STATUS Other (RECENT)")
        send(a, "APPEND Other {}", [_msg("t3")])
        send(a, "STATUS Other (RECENT)")
        send(b, "STATUS Other (RECENT)")
        send(b, "NOOP")
        send(a, "STATUS Other (RECENT)")
    await sessions(imap_server, dovecot, 2, body)


async def test_copy_sets_recent(imap_server, dovecot):
    def body(a, b):
        send(a, "CREATE Other")
        send(a, "APPEND INBOX {}", [_msg("c1")])
        send(a, "APPEND INBOX {}", [_msg("c2")])
        send(a, "SELECT INBOX")
        send(a, "COPY 1:2 Other")
        send(b, "STATUS Other (RECENT MESSAGES)")
        send(b, "SELECT Other")
        send(b, "FETCH 1:* FLAGS")
        send(a, "COPY 1 INBOX")
        send(a, "FETCH 1:* FLAGS")
        send(a, "SEARCH RECENT")
    await sessions(imap_server, dovecot, 2, body)
