"""CATENATE URLs (RFC 4469 5, RFC 5092): only the caller's own messages on
this server; a URL naming another user or another server gets NO [BADURL]
and the session goes on.  The URL reader is linear on any input."""
import pytest

from imap_helpers import msg, run
from mailaccess.server.imap_session import _URL
from test_imap_extensions import Raw


def _append_url(r, url: bytes) -> bytes:
    return r.cmd(b'APPEND INBOX CATENATE (URL "%s")' % url)[-1]


async def test_urls_naming_another_user_or_server_get_badurl(imap_server):
    def go():
        bob = Raw(imap_server, login=False)
        bob.cmd(b"LOGIN bob pw")
        secret = msg("bob's secret")
        bob.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(secret), secret))
        r = Raw(imap_server)    # alice
        mine = msg("alice's own")
        r.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(mine), mine))
        r.cmd(b"SELECT INBOX")
        for url in (b"imap://bob@127.0.0.1/INBOX/;UID=1",
                    b"imap://bob;AUTH=*@localhost/INBOX/;UID=1",
                    b"imap://alice@mail.example.net/INBOX/;UID=1",
                    b"imap://mail.example.net/INBOX/;UID=1",
                    b"imap://alice@localhost:1/INBOX/;UID=1",
                    b"imap://alice@[2001:db8::1]/INBOX/;UID=1"):
            last = _append_url(r, url)
            assert last.startswith(b"t") and b"NO [BADURL" in last, (url, last)
            assert r.cmd(b"NOOP")[-1].split(b" ")[1] == b"OK"
        # the caller's own message, by absolute URL (own name, this host) and
        # by relative URL, is taken
        for url in (b"imap://alice@127.0.0.1/INBOX/;UID=1", b"imap://ALICE@localhost/INBOX/;UID=1",
                    b"imap://localhost/INBOX/;UID=1", b"/INBOX/;UID=1", b"INBOX/;UID=1",
                    b"/;UID=1"):
            last = _append_url(r, url)
            assert b" OK " in last, (url, last)
        out = b"".join(r.cmd(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        assert b"bob's secret" not in out and b"alice's own" in out
        r.close()
        bob.close()
    await run(go)


def test_the_url_reader_takes_the_rfc_5092_forms():
    m = _URL.match("imap://alice;AUTH=*@mail.example.org:143/a/b;UIDVALIDITY=7/;UID=3"
                   "/;SECTION=1.2/;PARTIAL=10.20")
    assert m.group("user", "host", "port", "mailbox", "uidvalidity", "uid", "section",
                   "partial") == ("alice", "mail.example.org", "143", "a/b", "7", "3", "1.2",
                                  "10.20")
    m = _URL.match("imap://[::1]/INBOX/;UID=1")
    assert m.group("host", "mailbox") == ("[::1]", "INBOX")
    assert _URL.match("/;UID=5").group("user", "host", "mailbox") == (None, None, "")


@pytest.mark.parametrize("bad", [
    "imap://" + "a" * 50_000,
    "imap://" + "a@" * 25_000 + "/;UID=1x",
    "/" + "a/" * 50_000 + ";UID=1x",
    "imap://" + "a:" * 25_000,
    "/" + "a;" * 25_000,
    "imap://u;AUTH=" + "x" * 50_000,
    "/" + "/;UID=1" * 10_000 + "/;SECTION=",
    "imap://a/" + "/" * 50_000,
    "imap://" + "[" * 50_000,
    "imap://[" + ":" * 50_000,
    "/a;UIDVALIDITY=1" * 5_000,
])
def test_the_url_reader_returns_on_hostile_input(bad):
    """Behaviour, no timing: a quadratic reader would not finish these
    100 KB inputs within the suite's patience; they are simply refused."""
    assert _URL.match(bad) is None
