"""UTF8=ACCEPT (RFC 6855) and the RFC 6858 downgrade for clients without it."""
import functools

from imap_helpers import RawText, run
from mailaccess.server.imap_downgrade import downgrade

RAW = ("From: Jöran Überg <jöran@exämple.org>\r\n"
       "To: Plain <plain@example.org>, Ünïcode Name <u@example.org>\r\n"
       "Subject: Grüße aus Köln\r\n"
       "Message-ID: <utf8@test>\r\n"
       "Content-Type: text/plain; charset=utf-8; name=\"bär.txt\"\r\n"
       "\r\n"
       "Körper bleibt wie er ist.\r\n").encode("utf-8")


def test_downgrade_rules():
    hdr_end = RAW.index(b"\r\n\r\n") + 4
    out = downgrade(RAW, hdr_end)
    header, _, body = out.partition(b"\r\n\r\n")
    assert header.isascii()
    assert body == "Körper bleibt wie er ist.\r\n".encode()
    text = header.decode()
    assert "Subject: =?utf-8?b?" in text
    assert ":;" in text.split("From: ")[1].split("\r\n")[0]   # UTF-8 address -> empty group
    assert "plain@example.org" in text and "<u@example.org>" in text
    assert "name*=utf-8''b%C3%A4r.txt" in text


def test_downgraded_address_fields_are_the_same_on_every_python():
    """Address fields are read by addresses.parse_field, not by this
    release's getaddresses: 3.13 (the CVE-2023-27043 fix) answers ('', '')
    for a comma in a comment or a last comma, so the field came out empty
    there; a field nobody can read is shown whole as an empty group, where
    3.11.7 gave its fragments ("@c")."""
    from mailaccess.server.imap_downgrade import downgrade_field
    out = downgrade_field("To: Ünï <u@example.org> (Doe, J.), p@example.org,\r\n".encode())
    assert out.startswith(b"To: =?utf-8?b?") and b"<u@example.org>, p@example.org\r\n" in out
    out = downgrade_field("To: Ünï <a b@@c>\r\n".encode())
    assert out.startswith(b"To: =?utf-8?b?") and out.endswith(b"?=:;\r\n") and b"@c" not in out


Raw = functools.partial(RawText, prefix=b"u")


async def test_non_utf8_client_gets_downgraded_views(imap_server):
    def go():
        r = Raw(imap_server)
        out = r.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(RAW), RAW))
        assert b"OK" in out.splitlines()[-1]
        r.cmd(b"SELECT INBOX")
        env = r.cmd(b"FETCH 1 (ENVELOPE RFC822.SIZE)")
        assert env.isascii(), env
        assert b"=?utf-8?b?" in env
        body = r.cmd(b"FETCH 1 (BODY.PEEK[])")
        size = int(env.split(b"RFC822.SIZE ")[1].split(b")")[0].split()[0])
        literal = body.split(b"}\r\n", 1)[1].rsplit(b")\r\n", 1)[0]
        assert len(literal) == size
        assert literal.split(b"\r\n\r\n")[0].isascii()
        # once UTF8=ACCEPT is enabled the same message comes as stored
        # (ENABLE only before a mailbox is selected, RFC 5161 3.1)
        r.cmd(b"UNSELECT")
        assert b"ENABLED UTF8=ACCEPT" in r.cmd(b"ENABLE UTF8=ACCEPT")
        r.cmd(b"SELECT INBOX")
        env = r.cmd(b"FETCH 1 (ENVELOPE)")
        assert "Grüße".encode() in env
        body = r.cmd(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert "Subject: Grüße aus Köln".encode() in body
        # UTF-8 mailbox names, and UTF8 APPEND
        assert b"OK" in r.cmd("CREATE \"Entwürfe\"".encode()).splitlines()[-1]
        lst = r.cmd(b'LIST "" "Entw*"')
        assert "Entwürfe".encode() in lst
        out = r.cmd(b"APPEND INBOX UTF8 (~{%d+}\r\n%s)" % (len(RAW), RAW))
        assert b"OK" in out.splitlines()[-1]
        r.s.close()
    await run(go)


async def test_utf8_append_needs_enable(imap_server):
    def go():
        r = Raw(imap_server)
        out = r.cmd(b"APPEND INBOX UTF8 (~{%d+}\r\n%s)" % (len(RAW), RAW))
        assert b" BAD " in out.splitlines()[-1]
        r.s.close()
    await run(go)
