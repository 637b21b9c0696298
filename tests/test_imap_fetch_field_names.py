"""BODY[HEADER.FIELDS (...)] names its fields in the response as the RFC's
header-fld-name, an astring (RFC 9051 9): a name that is not an atom (a
space, parentheses, a quote; RFC 5322 3.6.8 ftext allows all of them but the
colon) is quoted.  Before, ``("a b")`` was named ``(a b)``: two items of one
FETCH got one name, and the first one's data answered both.
"""
import imapclient

from imap_helpers import Raw, imap_port, run

MESSAGE = (b"From: s@example.org\r\na: 1\r\nb: 2\r\nX(y): 3\r\nSubject: hi\r\n"
           b"\r\nbody\r\n")


async def test_a_quoted_field_name_is_named_as_sent(imap_server):
    def go():
        r = Raw(imap_server, prefix=b"h")
        assert r.append(MESSAGE)[-1].startswith(b"h2 OK")
        r.cmd(b"SELECT INBOX")
        got = b"".join(r.cmd(b'FETCH 1 (BODY.PEEK[HEADER.FIELDS ("a b")] '
                             b'BODY.PEEK[HEADER.FIELDS (a b)] '
                             b'BODY.PEEK[HEADER.FIELDS ("X(y)")] '
                             b'BODY.PEEK[HEADER.FIELDS.NOT ("a b" From a b "X(y)")])'))
        assert b'BODY[HEADER.FIELDS ("a b")] {2}\r\n\r\n' in got
        assert b"BODY[HEADER.FIELDS (a b)] {14}\r\na: 1\r\nb: 2\r\n\r\n" in got
        assert b'BODY[HEADER.FIELDS ("X(y)")] {11}\r\nX(y): 3\r\n\r\n' in got
        assert b'BODY[HEADER.FIELDS.NOT ("a b" From a b "X(y)")] {15}\r\nSubject: hi\r\n\r\n' in got
        r.close()

        # a real client reads the names back as its own request
        c = imapclient.IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False)
        c.login("alice", "pw")
        c.select_folder("INBOX")
        res = c.fetch([1], ['BODY.PEEK[HEADER.FIELDS ("a b")]', "BODY.PEEK[HEADER.FIELDS (a b)]"])
        data = next(iter(res.values()))
        # (imapclient upper-cases the names it keys by)
        assert data[b'BODY[HEADER.FIELDS ("A B")]'] == b"\r\n"
        assert data[b"BODY[HEADER.FIELDS (A B)]"] == b"a: 1\r\nb: 2\r\n\r\n"
        c.logout()

    await run(go)
