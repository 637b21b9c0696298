"""Issue 7 §5, items 9-15 and the post-login capabilities, over real sockets
(and imaplib / imapclient where a client sees the difference).

9  SEARCH FROM/TO/CC/BCC match the parsed address too (what ENVELOPE shows)
10 no NUL inside a non-binary literal (RFC 3501 4.3 / RFC 9051 4.3)
11 a name that is not modified UTF-7: NO for SELECT/EXAMINE/STATUS, plain
   name for LIST (as Dovecot)
12 MOVE into the selected mailbox (RFC 6851)
13 LIST (RECURSIVEMATCH REMOTE) without another option is BAD (RFC 5258 3)
14 ID ( "name" "x" ): extra spaces inside a list are accepted
15 APPEND to a missing mailbox / with a bad date answered before "+"
   (RFC 3501 6.3.11)
-  COMPRESS=DEFLATE and SASL-IR are advertised after login
"""
import functools
import imaplib
import re
import socket
import zlib

from imapclient import IMAPClient

from imap_helpers import connect, imap_port, msg, RawText, run
from mailaccess.proto.imap import commands
from mailaccess.proto.imap.frames import CommandFrame


# cmd(b"TAG ...") carries its own tag; answers joined.
Raw = functools.partial(RawText, own_tags=True, timeout=20)


def tagged(out: bytes, tag: bytes) -> bytes:
    return [ln for ln in out.split(b"\r\n") if ln.startswith(tag + b" ")][-1]


# --- 9: address search --------------------------------------------------------------


async def test_search_from_matches_address_written_with_comments(imap_server):
    def go():
        c = connect(imap_server)
        c.create("addr")
        c.append("addr", None, None, msg("one", frm="user (comment) @ domain.org"))
        c.append("addr", None, None, msg("two", frm="Other <other@example.org>"))
        c.append("addr", None, None,
                 msg("three", frm='"Joe" <"user" @ domain.org>',
                     extra="Cc: team (the team) @ lists.example\r\n"))
        c.select("addr")
        assert c.search(None, "FROM", "user@domain.org") == ("OK", [b"1 3"])
        assert c.search(None, "FROM", "other@example.org") == ("OK", [b"2"])
        assert c.search(None, "CC", "team@lists.example") == ("OK", [b"3"])
        assert c.search(None, "FROM", "nobody@domain.org") == ("OK", [b""])
        # the raw text still matches as before
        assert c.search(None, "FROM", "comment") == ("OK", [b"1"])
        # ENVELOPE agrees with what SEARCH finds
        typ, data = c.fetch("1", "(ENVELOPE)")
        assert b'"user" "domain.org"' in data[0]
        c.logout()
    await run(go)


# --- 10: NUL in literals ---------------------------------------------------------------


async def test_body_with_nul_is_never_sent_raw_in_a_literal(imap_server):
    raw = (b"From: a@b.c\r\nSubject: nul\r\nContent-Type: text/plain\r\n"
           b"Content-Transfer-Encoding: binary\r\n\r\nab\x00cd\r\n")

    def go():
        c = connect(imap_server)
        c.create("nul")
        assert c.append("nul", None, None, raw)[0] == "OK"
        c.logout()
        r = Raw(imap_server)
        r.cmd(b"s SELECT nul")
        for item in (b"BODY.PEEK[]", b"BODY.PEEK[1]", b"BODY.PEEK[TEXT]", b"RFC822",
                     b"RFC822.TEXT", b"BODY.PEEK[1]<1.3>"):
            out = r.cmd(b"f FETCH 1 (" + item + b")")
            assert tagged(out, b"f").startswith(b"f OK"), out
            assert b"\x00" not in out, item
            assert b"~{" not in out
        out = r.cmd(b"f FETCH 1 (BODY.PEEK[1])")
        assert b"{7}\r\nab\x80cd\r\n" in out      # same length: 0x80 for NUL
        out = r.cmd(b"f FETCH 1 (RFC822.SIZE)")
        assert b"RFC822.SIZE %d" % len(raw) in out
        # BINARY still gives the exact bytes, as literal8
        out = r.cmd(b"f FETCH 1 (BINARY.PEEK[1])")
        assert b"~{7}\r\nab\x00cd\r\n" in out
        r.close()
    await run(go)


# --- 11: names that are not modified UTF-7 ----------------------------------------------


def test_parser_keeps_invalid_mutf7_names_for_select_status_list():
    from mailaccess.proto.imap.modutf7 import InvalidName
    def parse(line):
        tag, rest = line.split(b" ", 1)
        return commands.parse_command(CommandFrame(tag, (rest,)))
    for line in (b"t SELECT &Jjo", b"t EXAMINE &AGE-", b"t STATUS &Jjo (MESSAGES)"):
        assert isinstance(parse(line).mailbox, InvalidName)
    cmd = parse(b't LIST "" "&Jjo*"')
    assert cmd.patterns == ("&Jjo*",) and isinstance(cmd.patterns[0], InvalidName)
    # valid names are decoded as before
    assert not isinstance(parse(b"t SELECT &ZeVnLIqe-").mailbox, InvalidName)


async def test_invalid_mutf7_name_gets_no_and_list_a_plain_match(imap_server):
    def go():
        r = Raw(imap_server)
        assert tagged(r.cmd(b"s SELECT INBOX"), b"s").startswith(b"s OK")
        out = r.cmd(b"a SELECT &Jjo")
        assert tagged(out, b"a").startswith(b"a NO"), out
        assert b"not valid modified UTF-7" in tagged(out, b"a"), out
        # a failed SELECT leaves nothing selected
        assert tagged(r.cmd(b"b FETCH 1 FLAGS"), b"b").startswith(b"b BAD")
        assert tagged(r.cmd(b"c EXAMINE &AGE-"), b"c").startswith(b"c NO")
        out = r.cmd(b"d STATUS &Jjo (MESSAGES)")
        assert tagged(out, b"d").startswith(b"d NO") and b"modified UTF-7" in out, out
        out = r.cmd(b'e LIST "" "&Jjo*"')
        assert tagged(out, b"e").startswith(b"e OK") and b"* LIST" not in out
        # CREATE keeps refusing the name as a syntax error
        assert tagged(r.cmd(b"f CREATE &Jjo"), b"f").startswith(b"f BAD")
        r.close()
    await run(go)


# --- 12: MOVE into the selected mailbox --------------------------------------------------


async def test_move_into_the_selected_mailbox(imap_server):
    def go():
        c = connect(imap_server)
        c.create("self")
        for i in range(3):
            c.append("self", None, None, msg(f"m{i}"))
        c.logout()
        r = Raw(imap_server)
        r.cmd(b"s SELECT self")
        out = r.cmd(b"m UID MOVE 1:2 self")
        assert tagged(out, b"m").startswith(b"m OK"), out
        m = re.search(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", out)
        assert m and m.group(2) == b"1:2" and m.group(3) == b"4:5", out
        assert b"* 1 EXPUNGE" in out
        assert out.count(b"EXPUNGE") == 2
        out = r.cmd(b"f UID FETCH 1:* (UID)")
        assert re.findall(rb"UID (\d+)", out) == [b"3", b"4", b"5"]
        r.close()
        # with QRESYNC: VANISHED instead of EXPUNGE
        r = Raw(imap_server)
        r.cmd(b"e ENABLE QRESYNC")
        r.cmd(b"s SELECT self")
        out = r.cmd(b"n MOVE 1 self")
        assert b"* VANISHED 3" in out and b"EXPUNGE" not in out, out
        assert tagged(out, b"n").startswith(b"n OK")
        r.close()
    await run(go)


async def test_move_into_the_selected_mailbox_with_imapclient(imap_server):
    def go():
        c = IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30)
        c.login("alice", "pw")
        c.create_folder("self2")
        c.append("self2", msg("x"))
        c.select_folder("self2")
        c.move([1], "self2")
        assert c.search(["ALL"]) == [2]
        assert c.fetch([2], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[2][
            b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: x"
        c.logout()
    await run(go)


# --- 13: RECURSIVEMATCH ---------------------------------------------------------------------


async def test_recursivematch_needs_subscribed(imap_server):
    def go():
        r = Raw(imap_server)
        for n, sel in enumerate((b"(RECURSIVEMATCH REMOTE)", b"(REMOTE RECURSIVEMATCH)",
                                 b"(RECURSIVEMATCH)")):
            tag = b"l%d" % n
            out = r.cmd(tag + b' LIST ' + sel + b' "" "*"')
            assert tagged(out, tag).startswith(tag + b" BAD"), out
        out = r.cmd(b'ok LIST (RECURSIVEMATCH REMOTE SUBSCRIBED) "" "*"')
        assert tagged(out, b"ok").startswith(b"ok OK")
        r.close()
    await run(go)


# --- 14: list spacing -----------------------------------------------------------------------


async def test_id_and_lists_with_extra_spaces(imap_server):
    def go():
        r = Raw(imap_server, login=False)
        out = r.cmd(b'i ID ( "name" "aioimaplib" "version" "1.0" )')
        assert tagged(out, b"i").startswith(b"i OK"), out
        assert b'* ID ("name" "mailaccess"' in out
        r.cmd(b"a LOGIN alice pw")
        out = r.cmd(b"s STATUS INBOX ( MESSAGES  UIDNEXT )")
        assert tagged(out, b"s").startswith(b"s OK") and b"UIDNEXT" in out, out
        out = r.cmd(b'l LIST ( SUBSCRIBED ) "" "*" RETURN ( CHILDREN )')
        assert tagged(out, b"l").startswith(b"l OK"), out
        # still refused: a missing value
        assert tagged(r.cmd(b'j ID ( "name" )'), b"j").startswith(b"j BAD")
        r.close()
    await run(go)


# --- 15: APPEND refused before "+" ------------------------------------------------------------


async def test_append_to_missing_mailbox_refused_before_continuation(imap_server):
    def go():
        r = Raw(imap_server)
        r.s.sendall(b"a APPEND nosuchbox {100}\r\n")
        line = r.line()
        assert line.startswith(b"a NO [TRYCREATE]"), line
        # no literal was expected: the next line is a command
        assert tagged(r.cmd(b"n NOOP"), b"n").startswith(b"n OK")
        r.s.sendall(b'b APPEND INBOX (\\Seen) "31-Foo-2020 10:00:00 +0000" {100}\r\n')
        line = r.line()
        assert line.startswith(b"b BAD"), line
        assert tagged(r.cmd(b"n NOOP"), b"n").startswith(b"n OK")
        # a second message of a MULTIAPPEND with a bad date
        body = msg("multi")
        r.s.sendall(b"c APPEND INBOX {%d}\r\n" % len(body))
        assert r.line().startswith(b"+")
        r.s.sendall(body + b' "99-Jan-2020 10:00:00 +0000" {10}\r\n')
        assert r.line().startswith(b"c BAD")
        assert tagged(r.cmd(b"n NOOP"), b"n").startswith(b"n OK")
        # an existing mailbox still gets "+" and the message
        r.s.sendall(b"d APPEND INBOX (\\Seen) {%d}\r\n" % len(body))
        assert r.line().startswith(b"+")
        r.s.sendall(body + b"\r\n")
        assert tagged(r.until(b"d"), b"d").startswith(b"d OK [APPENDUID")
        # CATENATE into a missing mailbox: refused at its first literal
        r.s.sendall(b"g APPEND nosuchbox CATENATE (TEXT {10}\r\n")
        assert r.line().startswith(b"g NO [TRYCREATE]")
        assert tagged(r.cmd(b"n NOOP"), b"n").startswith(b"n OK")
        r.close()
        # before login: refused before "+" too
        r = Raw(imap_server, login=False)
        r.s.sendall(b"e APPEND INBOX {100}\r\n")
        assert r.line().startswith(b"e BAD")
        r.close()
    await run(go)


async def test_append_trycreate_with_imaplib(imap_server):
    def go():
        c = connect(imap_server)
        typ, data = c.append("missing-box", None, None, msg("x", body="y" * 50000))
        assert typ == "NO" and b"TRYCREATE" in data[0]
        assert c.noop()[0] == "OK"
        c.logout()
    await run(go)


# --- capabilities ---------------------------------------------------------------------------


async def test_compress_and_sasl_ir_advertised_after_login(imap_server):
    def go():
        c = connect(imap_server, user=None)
        assert "COMPRESS=DEFLATE" not in c.capabilities
        c.login("alice", "pw")
        typ, data = c.capability()
        caps = data[0].split()
        assert b"COMPRESS=DEFLATE" in caps and b"SASL-IR" in caps
        c.logout()

        # a raw zlib client uses it, and after it the capability is gone
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=20)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a LOGIN alice pw\r\n"); f.flush()
        ok = f.readline()
        assert b"COMPRESS=DEFLATE" in ok
        f.write(b"b COMPRESS DEFLATE\r\n"); f.flush()
        assert f.readline().startswith(b"b OK")
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        decomp = zlib.decompressobj(-15)
        body = msg("compressed", body="z" * 20000)
        s.sendall(comp.compress(b"c CAPABILITY\r\nd APPEND INBOX {%d+}\r\n" % len(body)
                                + body + b"\r\ne SELECT INBOX\r\nf FETCH * (BODY.PEEK[])\r\n")
                  + comp.flush(zlib.Z_SYNC_FLUSH))
        out = b""
        while b"\r\nf " not in out:
            data = s.recv(65536)
            assert data
            out += decomp.decompress(data)
        cap = [ln for ln in out.split(b"\r\n") if ln.startswith(b"* CAPABILITY")][0]
        assert b"COMPRESS=DEFLATE" not in cap and b"SASL-IR" in cap
        assert b"d OK" in out and b"f OK" in out and body in out
        s.close()

        # imapclient sees it too
        c = IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30)
        c.login("alice", "pw")
        assert c.has_capability("COMPRESS=DEFLATE") and c.has_capability("SASL-IR")
        c.logout()
    await run(go)


async def test_move_of_a_message_moved_meanwhile_sends_no_empty_copyuid(imap_server):
    def go():
        c = connect(imap_server)
        c.create("race")
        c.append("race", None, None, msg("r"))
        c.logout()
        a, b = Raw(imap_server), Raw(imap_server)
        a.cmd(b"s SELECT race")
        b.cmd(b"s SELECT race")
        assert tagged(a.cmd(b"m UID MOVE 1 race"), b"m").startswith(b"m OK")
        out = b.cmd(b"m UID MOVE 1 race")     # b has not heard of the move yet
        assert tagged(out, b"m").startswith(b"m OK") and b"COPYUID" not in out, out
        a.close()
        b.close()
    await run(go)


# --- sans-IO layers of item 15 -----------------------------------------------------------------


def test_receiver_refuses_a_literal_before_continuation():
    from mailaccess.proto.imap.frames import ContinuationRequest, NEED_DATA
    from mailaccess.proto.imap.receiver import Receiver
    r = Receiver()
    r.receive_data(b'a APPEND box (\\Seen) {5}\r\n')
    e = r.next_event()
    assert isinstance(e, ContinuationRequest) and e.parts == (b"APPEND box (\\Seen) ",)
    r.refuse_literal()
    assert r.next_event() is NEED_DATA
    r.receive_data(b"b NOOP\r\n")
    assert r.next_event() == CommandFrame(b"b", (b"NOOP",))


def test_append_target_reads_the_command_so_far():
    import pytest
    from mailaccess.proto.imap.errors import CommandError
    from mailaccess.proto.imap.frames import Literal

    def target(*parts):
        return commands.append_target(b"t", tuple(parts))
    assert target(b"APPEND box ") == "box"
    assert target(b'APPEND "a b" (\\Seen) "05-Jan-2024 23:59:59 -0800" ') == "a b"
    assert target(b"APPEND inbox ") == "INBOX"
    # MULTIAPPEND: the second message literal
    assert target(b"APPEND box ", Literal(b"x"), b" (\\Seen) ") == "box"
    # a literal inside CATENATE or UTF8 belongs to the message too
    assert target(b"APPEND box CATENATE (TEXT ") == "box"
    assert target(b"APPEND box (\\Seen) UTF8 (") == "box"
    # the mailbox name is itself the literal; other commands
    assert target(b"APPEND ") is None
    assert target(b"LOGIN ") is None and target(b"") is None
    with pytest.raises(CommandError):
        target(b'APPEND box "31-Foo-2020 10:00:00 +0000" ')
    with pytest.raises(CommandError):
        target(b"APPEND box (\\Seen ")


def test_lenient_spacing_in_lists_parses_the_same():
    def parse(line):
        tag, rest = line.split(b" ", 1)
        return commands.parse_command(CommandFrame(tag, (rest,)))
    pairs = [
        (b't ID ( "name" "x"  "version" NIL )', b't ID ("name" "x" "version" NIL)'),
        (b"t ID ( )", b"t ID ()"),
        (b"t STATUS INBOX ( MESSAGES  UIDNEXT )", b"t STATUS INBOX (MESSAGES UIDNEXT)"),
        (b't LIST ( SUBSCRIBED ) "" "*" RETURN ( CHILDREN )',
         b't LIST (SUBSCRIBED) "" "*" RETURN (CHILDREN)'),
        (b"t FETCH 1 ( FLAGS  UID )", b"t FETCH 1 (FLAGS UID)"),
    ]
    for sloppy, strict in pairs:
        assert parse(sloppy) == parse(strict), sloppy
