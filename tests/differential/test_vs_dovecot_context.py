"""Differential cases for RFC 5267 CONTEXT=SEARCH (issue 7 §5, last item), run
like test_vs_dovecot.py: ``MAILACCESS_DIFFERENTIAL=1 pytest -m differential
tests/differential``.

Dovecot 2.3 advertises CONTEXT=SEARCH (not CONTEXT=SORT: it answers SORT
updates with position 0, which is not a sort order), so only SEARCH contexts,
PARTIAL and ESORT's PARTIAL are compared.  Left out because the two servers
may rightly differ:
- RFC 9394's negative PARTIAL ranges (Dovecot 2.3 predates them: BAD);
- SAVE with PARTIAL (Dovecot 2.3 saves every match; RFC 9394 3.2, later,
  saves the returned ones, as mailaccess does);
- the number of contexts before NOUPDATE (10 there, 8 here);
- when a REMOVEFROM for an expunge goes out: Dovecot waits for the EXPUNGE,
  mailaccess may send it earlier (during FETCH, where no EXPUNGE may go;
  RFC 5267 A.3 describes exactly that), so no FETCH runs between an expunge
  and the NOOP that announces it;
- unsolicited FETCH lines (UID, \\Recent, MODSEQ are each server's choice):
  the two-session cases compare ESEARCH, EXISTS, EXPUNGE and tagged lines.
"""
from __future__ import annotations

import re

import pytest

from imapdiff import Normaliser, message
from test_vs_dovecot import _dovecot_instance, dovecot, fresh, sessions  # noqa: F401

pytestmark = [pytest.mark.differential]


def _msg(subject: str, frm: str = "a@example.org") -> bytes:
    return message(subject, frm, body=f"body {subject}\r\n".encode(), domain="ctx")


async def test_return_options_and_partial(imap_server, dovecot):
    def body(duo):
        for s in ("delta", "alpha", "echo", "bravo", "charlie"):
            duo.send("APPEND INBOX {}", [_msg(s)])
        duo.send("SELECT INBOX")
        duo.send("STORE 2,4 +FLAGS (\\Seen)")
        duo.send("SEARCH RETURN (UPDATE) UNSEEN")
        duo.send("SEARCH RETURN (CONTEXT) ALL")
        duo.send("SEARCH RETURN (CONTEXT COUNT) UNSEEN")
        duo.send("SEARCH RETURN (PARTIAL 2:3 COUNT MIN) ALL")
        duo.send("UID SEARCH RETURN (PARTIAL 1:2 MAX) UNSEEN")
        duo.send("SEARCH RETURN (PARTIAL 4:2) ALL")
        duo.send("SEARCH RETURN (PARTIAL 7:9) ALL")
        duo.send("SEARCH RETURN (PARTIAL 1:5 ALL) ALL")
        duo.send("SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL")
        duo.send("SORT RETURN (PARTIAL 1:2) (REVERSE SUBJECT) UTF-8 ALL")
        duo.send("UID SORT RETURN (PARTIAL 2:4 COUNT) (SUBJECT) UTF-8 ALL")
        duo.send("SORT RETURN (PARTIAL 9:10) (SUBJECT) UTF-8 ALL")
    await fresh(imap_server, dovecot, body)


async def test_update_tags_and_cancelupdate(imap_server, dovecot):
    def body(duo):
        duo.send("APPEND INBOX {}", [_msg("one")])
        duo.send("SELECT INBOX")
        duo.ma.command("SEARCH RETURN (UPDATE) ALL", tag=b"B01")
        duo.dc.command("SEARCH RETURN (UPDATE) ALL", tag=b"B01")
        # tag reuse with UPDATE: BAD (RFC 5267 4.3)
        a = duo.ma.command("SEARCH RETURN (UPDATE COUNT) ALL", tag=b"B01")
        b = duo.dc.command("SEARCH RETURN (UPDATE COUNT) ALL", tag=b"B01")
        n = Normaliser()
        assert n(a) == n(b) == ["TAGGED BAD"], (a, b)
        duo.send('CANCELUPDATE "B01"')
        duo.send('CANCELUPDATE "B01"')          # no longer live: NO on both
        duo.send('CANCELUPDATE "nope"')
        duo.send("CANCELUPDATE nope")           # 1*(SP quoted)
        duo.send("NOOP")
    await fresh(imap_server, dovecot, body)


class _Contexts(Normaliser):
    """ESEARCH, EXISTS, EXPUNGE and the tagged line; unsolicited FETCH dropped."""

    def __call__(self, responses):
        return [x for x in super().__call__(responses) if not re.match(r"\* \d+ FETCH ", x)]


def _order(side: list[bytes]) -> None:
    """On one server: each REMOVEFROM before the EXPUNGE, each ADDTO after the EXISTS."""
    kinds = [("rm" if b"REMOVEFROM" in r else "add" if b"ADDTO" in r else
              "exp" if r.endswith(b" EXPUNGE\r\n") else
              "exists" if r.endswith(b" EXISTS\r\n") else None) for r in side]
    if "exp" in kinds and "rm" in kinds:
        assert max(i for i, k in enumerate(kinds) if k == "rm") < kinds.index("exp"), side
    if "exists" in kinds and "add" in kinds:
        assert kinds.index("exists") < kinds.index("add"), side


async def test_two_sessions_updates(imap_server, dovecot):
    norm = _Contexts()

    def body(a, b):
        for s in ("one", "two", "three", "four"):
            a.send("APPEND INBOX {}", [_msg(s)])
        a.send("SELECT INBOX")
        b.send("SELECT INBOX")
        for c in (a.ma, a.dc):
            c.command("UID SEARCH RETURN (UPDATE) UNSEEN", tag=b"B01")
            c.command("SEARCH RETURN (UPDATE COUNT) FLAGGED", tag=b"B02")
            c.command("SEARCH RETURN (UPDATE MIN) UNDELETED", tag=b"B03")

        def step(*cmds):
            for c in cmds:
                b.send(c, norm=norm)
            for side in a.send("NOOP", norm=norm):
                _order(side)

        step("STORE 2 +FLAGS (\\Seen)")
        step("STORE 1,4 +FLAGS (\\Flagged)")
        a.send("STORE 2 -FLAGS (\\Seen)", norm=norm)      # own change
        a.send("STORE 3 +FLAGS (\\Seen \\Flagged)", norm=norm)
        step("STORE 3 +FLAGS (\\Deleted)", "EXPUNGE")
        b.send("APPEND INBOX {}", [_msg("five")], norm=norm)
        step()
        step("STORE 1 -FLAGS (\\Flagged)", "STORE 1 +FLAGS (\\Deleted)")
        step("EXPUNGE")
        a.send('CANCELUPDATE "B01"', norm=norm)
        step("STORE 1 +FLAGS (\\Seen)")
    await sessions(imap_server, dovecot, 2, body)
