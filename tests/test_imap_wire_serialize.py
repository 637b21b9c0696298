"""Response serialisation: exact bytes."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailaccess.proto.imap import serialize as S
from mailaccess.proto.imap.commands import parse_command
from mailaccess.proto.imap.events import FetchBody, Section
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.proto.imap.grammar import Reader


def test_status_lines():
    assert S.ok(b"a1", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert S.no(b"a1", "no such mailbox", "TRYCREATE") == b"a1 NO [TRYCREATE] no such mailbox\r\n"
    assert S.bad(None, "junk") == b"* BAD junk\r\n"
    assert S.bad(b"a1", "too big", "TOOBIG") == b"a1 BAD [TOOBIG] too big\r\n"
    assert S.bye("server shutting down", "UNAVAILABLE") == b"* BYE [UNAVAILABLE] server shutting down\r\n"
    assert S.preauth("welcome") == b"* PREAUTH welcome\r\n"
    assert S.greeting("ready", S.code_capability(["IMAP4rev1", "IMAP4rev2", "LITERAL+"])) == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+] ready\r\n"
    )
    assert S.continuation() == b"+ Ready\r\n"
    assert S.continuation_data(b"") == b"+ \r\n"
    assert S.continuation_data(b"abc") == b"+ YWJj\r\n"
    assert S.tagged(b"a1", "OK", "line\r\nbreak") == b"a1 OK line  break\r\n"


@pytest.mark.parametrize(
    "code,wire",
    [
        (S.code_uidvalidity(3857529045), b"UIDVALIDITY 3857529045"),
        (S.code_uidnext(4392), b"UIDNEXT 4392"),
        (S.code_unseen(12), b"UNSEEN 12"),
        (S.code_permanentflags(["\\Deleted", "\\Seen"]), b"PERMANENTFLAGS (\\Deleted \\Seen \\*)"),
        (S.code_permanentflags([], allow_new=False), b"PERMANENTFLAGS ()"),
        (S.code_highestmodseq(715194045007), b"HIGHESTMODSEQ 715194045007"),
        (S.code_appenduid(38505, [3955]), b"APPENDUID 38505 3955"),
        (S.code_appenduid(38505, [3955, 3956, 3957]), b"APPENDUID 38505 3955:3957"),
        (S.code_copyuid(38505, [304, 319, 320, 321], [3956, 3957, 3958, 3959]), b"COPYUID 38505 304,319:321 3956:3959"),
        (S.code_modified([7, 9, 10]), b"MODIFIED 7,9:10"),
        (S.code_mailboxid("F2212ea87-6097-4256-9d51-71338625"), b"MAILBOXID (F2212ea87-6097-4256-9d51-71338625)"),
        (S.code_badcharset(), b"BADCHARSET (UTF-8 US-ASCII)"),
        (S.code_appendlimit(1000), b"APPENDLIMIT 1000"),
    ],
)
def test_codes(code, wire):
    assert code == wire


def test_atom_codes():
    for code in ("TRYCREATE", "ALREADYEXISTS", "NONEXISTENT", "CLOSED", "TOOBIG", "OVERQUOTA", "LIMIT", "CANNOT",
                 "UNAVAILABLE", "AUTHENTICATIONFAILED", "UNKNOWN-CTE", "CONTACTADMIN", "NOMODSEQ"):
        assert code in S.ATOM_CODES
        assert S.no(b"a", "x", code) == b"a NO [" + code.encode() + b"] x\r\n"


def test_untagged():
    assert S.capability(["IMAP4rev1", "AUTH=PLAIN"]) == b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
    assert S.enabled(["CONDSTORE", "QRESYNC"]) == b"* ENABLED CONDSTORE QRESYNC\r\n"
    assert S.enabled([]) == b"* ENABLED\r\n"
    assert S.flags(["\\Answered", "\\Seen", "$Forwarded"]) == b"* FLAGS (\\Answered \\Seen $Forwarded)\r\n"
    assert S.exists(172) == b"* 172 EXISTS\r\n"
    assert S.recent(1) == b"* 1 RECENT\r\n"
    assert S.expunge(44) == b"* 44 EXPUNGE\r\n"
    assert S.vanished([405, 406, 407, 408, 410]) == b"* VANISHED 405:408,410\r\n"
    assert S.vanished([41, 43], earlier=True) == b"* VANISHED (EARLIER) 41,43\r\n"
    assert S.search([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert S.search([]) == b"* SEARCH\r\n"
    assert S.search([2, 5], modseq=917162500) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert S.search([], modseq=5) == b"* SEARCH\r\n"
    assert S.sort([5, 3, 4]) == b"* SORT 5 3 4\r\n"
    assert S.esearch(b"A282", False, min=2, count=3) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    assert S.esearch(b"A283", True, all=[43, 44, 45, 80, 81]) == b'* ESEARCH (TAG "A283") UID ALL 43:45,80:81\r\n'
    assert S.esearch(b"A284", True, count=0) == b'* ESEARCH (TAG "A284") UID COUNT 0\r\n'
    assert S.esearch(b"A285", False, min=1, max=9, modseq=7) == b'* ESEARCH (TAG "A285") MIN 1 MAX 9 MODSEQ 7\r\n'
    assert S.thread([(2, []), (3, [(6, [(4, [(23, [])]), (44, [(7, [(96, [])])])])])]) == (
        b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    )
    assert S.thread([(None, [(3, []), (5, [])])]) == b"* THREAD ((3)(5))\r\n"
    assert S.thread([]) == b"* THREAD\r\n"


def test_list_and_friends():
    assert S.list_(["\\HasNoChildren"], "/", "INBOX") == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    assert S.list_(["\\Noselect"], None, "") == b'* LIST (\\Noselect) NIL ""\r\n'
    assert S.list_([], "/", "Foo", childinfo=["SUBSCRIBED"]) == b'* LIST () "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    assert S.list_([], "/", "New", oldname="Old Box") == b'* LIST () "/" New ("OLDNAME" ("Old Box"))\r\n'
    assert S.list_(["\\Drafts"], "/", "Entw\u00fcrfe") == b'* LIST (\\Drafts) "/" Entw&APw-rfe\r\n'
    assert S.list_(["\\Drafts"], "/", "Entw\u00fcrfe", utf8=True) == '* LIST (\\Drafts) "/" "Entw\u00fcrfe"\r\n'.encode()
    assert S.list_([], "\\", "a b") == b'* LIST () "\\\\" "a b"\r\n'
    assert S.lsub([], ".", "x") == b'* LSUB () "." x\r\n'
    assert S.status("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    )
    assert S.status("INBOX", [("MAILBOXID", "F123"), ("APPENDLIMIT", None), ("SIZE", 10)]) == (
        b"* STATUS INBOX (MAILBOXID (F123) APPENDLIMIT NIL SIZE 10)\r\n"
    )
    assert S.namespace([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert S.namespace([("", ".")], [("~", "/")], [("#shared/", "/"), ("#public/", "/")]) == (
        b'* NAMESPACE (("" ".")) (("~" "/")) (("#shared/" "/")("#public/" "/"))\r\n'
    )
    assert S.id_(None) == b"* ID NIL\r\n"
    assert S.id_([("name", "mailaccess"), ("version", None)]) == b'* ID ("name" "mailaccess" "version" NIL)\r\n'
    assert S.quota("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert S.quotaroot("INBOX", [""]) == b'* QUOTAROOT INBOX ""\r\n'
    assert S.quotaroot("x", []) == b"* QUOTAROOT x\r\n"


def test_strings():
    assert S.astring("abc") == b"abc"
    assert S.astring("") == b'""'
    assert S.astring("NIL") == b'"NIL"'
    assert S.astring("a b") == b'"a b"'
    assert S.astring('a"b') == b'"a\\"b"'
    assert S.astring("a]b") == b"a]b"
    assert S.string("a\r\nb") == b"{4}\r\na\r\nb"
    assert S.string("\u00e4") == b"{2}\r\n\xc3\xa4"
    assert S.string("\u00e4", utf8=True) == b'"\xc3\xa4"'
    assert S.string("x" * 2000).startswith(b"{2000}\r\n")
    assert S.nstring(None) == b"NIL"
    assert S.literal(b"a\x00", binary=True) == b"~{2}\r\na\x00"


@given(st.binary(max_size=50))
def test_string_round_trips_through_parser(data):
    wire = S.astring(data)
    r = Reader((wire,) if not wire.startswith(b"{") else (b"", _lit(wire), b""))
    assert r.astring() == data


def _lit(wire):
    from mailaccess.proto.imap.frames import Literal

    return Literal(wire[wire.index(b"\n") + 1 :])


def test_fetch():
    env = b'("Wed, 17 Jul 1996 02:23:25 -0700" "IMAP4rev1 WG mtg" NIL NIL NIL NIL NIL NIL NIL "<B27397@x>")'
    bs = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    line = S.fetch(12, [
        S.fetch_uid(4827313), S.fetch_flags(("\\Seen",)), S.fetch_modseq(624140003),
        S.fetch_internaldate(dt.datetime(1996, 7, 17, 9, 44, 25, tzinfo=dt.timezone(dt.timedelta(hours=-7)))),
        S.fetch_size(4286), S.fetch_envelope(env), S.fetch_bodystructure(bs),
    ])
    assert line == (
        b'* 12 FETCH (UID 4827313 FLAGS (\\Seen) MODSEQ (624140003) INTERNALDATE "17-Jul-1996 09:44:25 -0700" '
        b"RFC822.SIZE 4286 ENVELOPE " + env + b" BODYSTRUCTURE " + bs + b")\r\n"
    )
    assert S.fetch(1, [S.fetch_flags([])]) == b"* 1 FETCH (FLAGS ())\r\n"
    assert S.fetch_bodystructure(bs, extensible=False) == b"BODY " + bs
    assert S.fetch_emailid("M6d99ac3275bb4e") == b"EMAILID (M6d99ac3275bb4e)"
    assert S.fetch_threadid(None) == b"THREADID NIL"
    assert S.fetch_threadid("T64b478a75b7ea9") == b"THREADID (T64b478a75b7ea9)"
    assert S.fetch_savedate(None) == b"SAVEDATE NIL"
    assert S.fetch_preview("Hi there") == b'PREVIEW "Hi there"'
    assert S.fetch_preview(None) == b"PREVIEW NIL"
    assert S.fetch_rfc822("RFC822.HEADER", b"A: b\r\n\r\n") == b"RFC822.HEADER {8}\r\nA: b\r\n\r\n"
    assert S.fetch_binary_size((1, 2), 2014) == b"BINARY.SIZE[1.2] 2014"


@pytest.mark.parametrize(
    "att,data,wire",
    [
        (b"BODY[]", b"hello", b"BODY[] {5}\r\nhello"),
        (b"BODY.PEEK[1]", b"hi", b"BODY[1] {2}\r\nhi"),
        (b"BODY[1]<0.3>", b"hello", b"BODY[1]<0> {3}\r\nhel"),
        (b"BODY[]<10.3>", b"hello", b"BODY[]<10> {0}\r\n"),
        (b"BODY[1.2.MIME]", b"x", b"BODY[1.2.MIME] {1}\r\nx"),
        (b"BODY[HEADER.FIELDS (From \"To\")]", b"From: a\r\n\r\n", b"BODY[HEADER.FIELDS (From To)] {11}\r\nFrom: a\r\n\r\n"),
        (b"BODY[4.TEXT]", None, b"BODY[4.TEXT] NIL"),
        (b"BINARY[1]", b"plain", b"BINARY[1] {5}\r\nplain"),
        (b"BINARY.PEEK[1]", b"a\x00b", b"BINARY[1] ~{3}\r\na\x00b"),
        (b"BINARY[2]<1.2>", b"a\x00b", b"BINARY[2]<1> ~{2}\r\n\x00b"),
    ],
)
def test_fetch_section(att, data, wire):
    (item,) = parse_command(CommandFrame(b"t", (b"FETCH 1 " + att,))).items
    assert S.fetch_section(item, data) == wire


def test_fetch_is_fast_enough():
    """10,000 FETCH lines of FLAGS ENVELOPE BODYSTRUCTURE in well under a second."""
    import time

    env = b'("date" "subject" (("A" NIL "a" "b.example")) NIL NIL NIL NIL NIL NIL "<id@x>")' * 2
    bs = b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'
    flags = ("\\Seen", "$Forwarded")
    t0 = time.perf_counter()
    out = [
        S.fetch(i, [S.fetch_uid(i), S.fetch_flags(flags), S.fetch_envelope(env), S.fetch_bodystructure(bs)])
        for i in range(1, 10_001)
    ]
    elapsed = time.perf_counter() - t0
    assert len(b"".join(out)) > 10_000 * 200
    assert elapsed < 1.0
