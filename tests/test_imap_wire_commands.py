"""Command parsing: real client syntax (imaplib, imapclient, Thunderbird, mbsync) -> typed commands."""
import datetime as dt

import pytest

from mailaccess.proto.imap import events as E
from mailaccess.proto.imap.commands import parse_command
from mailaccess.proto.imap.errors import CommandError
from mailaccess.proto.imap.frames import NEED_DATA, CommandFrame, ContinuationRequest
from mailaccess.proto.imap.numset import STAR, NumSet
from mailaccess.proto.imap.receiver import Receiver


def parse(data: bytes, **kw):
    r = Receiver()
    r.receive_data(data)
    while True:
        ev = r.next_event()
        assert ev is not NEED_DATA, "incomplete command"
        if isinstance(ev, CommandFrame):
            return parse_command(ev, **kw)
        assert isinstance(ev, ContinuationRequest)


def bad(data: bytes, **kw) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse(data, **kw)
    return info.value


def N(s):
    return NumSet.parse(s)


T = b"t1"

CASES = [
    (b"t1 CAPABILITY\r\n", E.Capability(T)),
    (b"t1 capability\r\n", E.Capability(T)),
    (b"t1 NOOP\r\n", E.Noop(T)),
    (b"t1 LOGOUT\r\n", E.Logout(T)),
    (b"t1 STARTTLS\r\n", E.StartTLS(T)),
    (b"t1 IDLE\r\n", E.Idle(T)),
    (b"t1 CHECK\r\n", E.Check(T)),
    (b"t1 CLOSE\r\n", E.Close(T)),
    (b"t1 UNSELECT\r\n", E.Unselect(T)),
    (b"t1 NAMESPACE\r\n", E.Namespace(T)),
    (b"t1 UNAUTHENTICATE\r\n", E.Unauthenticate(T)),
    (b"t1 COMPRESS DEFLATE\r\n", E.Compress(T, "DEFLATE")),
    # LOGIN: imaplib quotes, mbsync quotes, literals for odd passwords
    (b't1 LOGIN user "pass word"\r\n', E.Login(T, "user", "pass word")),
    (b't1 LOGIN "user" "p\\"w\\\\"\r\n', E.Login(T, "user", 'p"w\\')),
    (b"t1 LOGIN {4}\r\nuser {5}\r\np\xc3\xa4ss\r\n", E.Login(T, "user", "p\u00e4ss")),
    (b"t1 AUTHENTICATE PLAIN\r\n", E.Authenticate(T, "PLAIN")),
    (b"t1 authenticate plain AGJvYgBwdw==\r\n", E.Authenticate(T, "PLAIN", b"\x00bob\x00pw")),
    (b"t1 AUTHENTICATE EXTERNAL =\r\n", E.Authenticate(T, "EXTERNAL", b"")),
    (b"t1 ENABLE CONDSTORE qresync UTF8=ACCEPT\r\n", E.Enable(T, ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT"))),
    (b't1 ID ("name" "Thunderbird" "version" "115.3.1")\r\n',
     E.Id(T, (("name", "Thunderbird"), ("version", "115.3.1")))),
    (b"t1 ID NIL\r\n", E.Id(T, None)),
    (b't1 ID ("name" NIL)\r\n', E.Id(T, (("name", None),))),
    # SELECT / EXAMINE
    (b"t1 SELECT INBOX\r\n", E.Select(T, "INBOX")),
    (b't1 select "inbox"\r\n', E.Select(T, "INBOX")),
    (b"t1 EXAMINE Archive\r\n", E.Select(T, "Archive", readonly=True)),
    (b'T1 select "INBOX" (CONDSTORE)\r\n', E.Select(b"T1", "INBOX", condstore=True)),
    (b"t1 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
     E.Select(T, "INBOX", qresync=E.QResync(67890007, 20050715194045000, N("41,43:211,214:541")))),
    (b"t1 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
     E.Select(T, "INBOX", qresync=E.QResync(67890007, 90060115194045000, N("1:29997"),
              (N("5000,7500,9000,9990:9999"), N("15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"))))),
    (b"t1 SELECT INBOX (QRESYNC (1 2 (1:2 3:4)))\r\n", E.Select(T, "INBOX", qresync=E.QResync(1, 2, None, (N("1:2"), N("3:4"))))),
    # mailbox management; modified UTF-7 names
    (b"t1 CREATE &ZeVnLIqe-\r\n", E.Create(T, "\u65e5\u672c\u8a9e")),
    (b't1 CREATE "Entw&APw-rfe" (USE (\\drafts))\r\n', E.Create(T, "Entw\u00fcrfe", ("\\Drafts",))),
    (b"t1 CREATE Archive/2024 (USE (\\Archive \\X-Custom))\r\n", E.Create(T, "Archive/2024", ("\\Archive", "\\X-Custom"))),
    (b"t1 DELETE foo\r\n", E.Delete(T, "foo")),
    (b"t1 RENAME foo bar\r\n", E.Rename(T, "foo", "bar")),
    (b"t1 RENAME inbox old-inbox\r\n", E.Rename(T, "INBOX", "old-inbox")),
    (b'T1 SUBSCRIBE "a&-b"\r\n', E.Subscribe(b"T1", "a&b")),
    (b"t1 UNSUBSCRIBE foo\r\n", E.Unsubscribe(T, "foo")),
    # LIST
    (b'T1 LIST "" "*"\r\n', E.List(b"T1", "", ("*",))),
    (b't1 LIST "" %\r\n', E.List(T, "", ("%",))),
    (b't1 LIST "" ""\r\n', E.List(T, "", ("",))),
    (b"t1 LIST ~/Mail/ %/*\r\n", E.List(T, "~/Mail/", ("%/*",))),
    (b't1 list (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)\r\n',
     E.List(T, "", ("*",), frozenset({"SUBSCRIBED"}), frozenset({"SPECIAL-USE"}), None, True)),
    (b't1 LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Drafts" "Sent/%")\r\n',
     E.List(T, "", ("INBOX", "Drafts", "Sent/%"), frozenset({"REMOTE", "SUBSCRIBED", "RECURSIVEMATCH"}), frozenset(), None, True)),
    (b't1 LIST "" % RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n',
     E.List(T, "", ("%",), frozenset(), frozenset({"CHILDREN", "STATUS"}), ("MESSAGES", "UNSEEN"), True)),
    (b't1 LIST () "" % RETURN ()\r\n', E.List(T, "", ("%",), extended=True)),
    (b't1 LSUB "" "*"\r\n', E.Lsub(T, "", "*")),
    (b"t1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT MAILBOXID)\r\n",
     E.Status(T, "INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                            "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID"))),
    (b'T1 STATUS "Sent" (uidnext)\r\n', E.Status(b"T1", "Sent", ("UIDNEXT",))),
    # quota
    (b't1 GETQUOTAROOT "INBOX"\r\n', E.GetQuotaRoot(T, "INBOX")),
    (b't1 GETQUOTA ""\r\n', E.GetQuota(T, "")),
    (b't1 SETQUOTA "" (STORAGE 512 MESSAGE 1000)\r\n', E.SetQuota(T, "", (("STORAGE", 512), ("MESSAGE", 1000)))),
    # EXPUNGE
    (b"t1 EXPUNGE\r\n", E.Expunge(T)),
    (b"t1 UID EXPUNGE 3000:3002\r\n", E.Expunge(T, True, N("3000:3002"))),
    # COPY / MOVE
    (b"t1 COPY 2:4 MEETING\r\n", E.Copy(T, False, N("2:4"), "MEETING")),
    (b'T1 UID COPY 1,5:7 "Trash"\r\n', E.Copy(b"T1", True, N("1,5:7"), "Trash")),
    (b"t1 MOVE 1:* Archive\r\n", E.Move(T, False, N("1:*"), "Archive")),
    (b"t1 UID MOVE $ Junk\r\n", E.Move(T, True, NumSet((), saved=True), "Junk")),
    # STORE
    (b"t1 STORE 2:4 +FLAGS (\\Deleted)\r\n", E.Store(T, False, N("2:4"), "add", ("\\Deleted",))),
    (b"t1 UID STORE 3 +FLAGS.SILENT \\Deleted\r\n", E.Store(T, True, N("3"), "add", ("\\Deleted",), True)),
    (b"t1 uid store 4 -flags (\\seen $Junk)\r\n", E.Store(T, True, N("4"), "remove", ("\\Seen", "$Junk"))),
    (b"t1 STORE 1 FLAGS ()\r\n", E.Store(T, False, N("1"), "replace", ())),
    (b"t1 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
     E.Store(T, False, N("7,5,9"), "add", ("\\Deleted",), True, 320162338)),
    (b"t1 STORE 1 FLAGS \\Seen \\Answered Junk\r\n", E.Store(T, False, N("1"), "replace", ("\\Seen", "\\Answered", "Junk"))),
]


@pytest.mark.parametrize("data,expected", CASES, ids=[c[0][:40].decode("latin-1") for c in CASES])
def test_parse(data, expected):
    assert parse(data) == expected


def test_append_imaplib():
    msg = b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n"
    cmd = parse(b't1 APPEND INBOX (\\Seen) "01-Jan-2020 10:00:00 +0100" {%d}\r\n' % len(msg) + msg + b"\r\n")
    tz = dt.timezone(dt.timedelta(hours=1))
    assert cmd == E.Append(T, "INBOX", (E.AppendMessage(("\\Seen",), dt.datetime(2020, 1, 1, 10, tzinfo=tz), msg),))


def test_append_mbsync_literal_plus_and_multiappend():
    cmd = parse(b'T1 APPEND "INBOX" (\\Seen \\Flagged) " 7-Feb-1994 21:52:25 -0800" {3+}\r\nabc {2+}\r\nde ~{3+}\r\na\x00b\r\n')
    assert [m.data for m in cmd.messages] == [b"abc", b"de", b"a\x00b"]
    assert cmd.messages[0].date_time.day == 7 and cmd.messages[0].flags == ("\\Seen", "\\Flagged")
    assert cmd.messages[1].flags == () and cmd.messages[2].binary


def test_append_catenate_and_utf8():
    cmd = parse(b't1 APPEND Drafts (\\Draft) CATENATE (URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER" TEXT {4+}\r\n\r\nhi URL /INBOX/;UID=3)\r\n')
    (m,) = cmd.messages
    assert m.data is None and m.catenate == (
        E.CatenateUrl("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"),
        E.CatenateText(b"\r\nhi"),
        E.CatenateUrl("/INBOX/;UID=3"),
    )
    cmd = parse(b"t1 APPEND INBOX UTF8 (~{3+}\r\nabc)\r\n")
    assert cmd.messages[0].utf8 and cmd.messages[0].data == b"abc"


FETCH_CASES = [
    (b"t1 FETCH 1 ALL\r\n", (E.FetchItem("FLAGS"), E.FetchItem("INTERNALDATE"), E.FetchItem("RFC822.SIZE"), E.FetchItem("ENVELOPE"))),
    (b"t1 FETCH 1 fast\r\n", (E.FetchItem("FLAGS"), E.FetchItem("INTERNALDATE"), E.FetchItem("RFC822.SIZE"))),
    (b"t1 FETCH 1 FULL\r\n", (E.FetchItem("FLAGS"), E.FetchItem("INTERNALDATE"), E.FetchItem("RFC822.SIZE"), E.FetchItem("ENVELOPE"), E.FetchItem("BODY"))),
    (b"t1 FETCH 1 BODY\r\n", (E.FetchItem("BODY"),)),
    (b"t1 FETCH 1 (FLAGS)\r\n", (E.FetchItem("FLAGS"),)),
    (b"t1 FETCH 1 (UID RFC822.SIZE FLAGS INTERNALDATE ENVELOPE BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT MODSEQ EMAILID THREADID SAVEDATE)\r\n",
     tuple(E.FetchItem(n) for n in "UID RFC822.SIZE FLAGS INTERNALDATE ENVELOPE BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT MODSEQ EMAILID THREADID SAVEDATE".split())),
    (b"t1 FETCH 1 (BODY.PEEK[])\r\n", (E.FetchBody(E.Section(), peek=True),)),
    (b"t1 FETCH 1 BODY[]<0.2048>\r\n", (E.FetchBody(E.Section(), (0, 2048)),)),
    (b"t1 FETCH 1 (BODY[1.2.3] BODY[4.TEXT] BODY[2.MIME] BODY[HEADER] BODY[TEXT])\r\n",
     (E.FetchBody(E.Section((1, 2, 3))), E.FetchBody(E.Section((4,), "TEXT")), E.FetchBody(E.Section((2,), "MIME")),
      E.FetchBody(E.Section((), "HEADER")), E.FetchBody(E.Section((), "TEXT")))),
    (b"t1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
     (E.FetchItem("UID"), E.FetchItem("RFC822.SIZE"), E.FetchItem("FLAGS"),
      E.FetchBody(E.Section((), "HEADER.FIELDS", tuple("From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To".split())), peek=True))),
    (b't1 FETCH 1 BODY[1.HEADER.FIELDS.NOT ("Received" X-Spam)]\r\n', (E.FetchBody(E.Section((1,), "HEADER.FIELDS.NOT", ("Received", "X-Spam"))),)),
    (b"t1 FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<5.10> BINARY.SIZE[3] BINARY[])\r\n",
     (E.FetchBody(E.Section((1,)), binary=True), E.FetchBody(E.Section((1, 2)), (5, 10), peek=True, binary=True),
      E.FetchBinarySize((3,)), E.FetchBody(E.Section(), binary=True))),
    (b"t1 FETCH 1 (PREVIEW)\r\n", (E.FetchPreview(),)),
    (b"t1 FETCH 1 (PREVIEW (LAZY) FLAGS)\r\n", (E.FetchPreview(True), E.FetchItem("FLAGS"))),
    (b"t1 FETCH 1 PREVIEW\r\n", (E.FetchPreview(),)),
]


@pytest.mark.parametrize("data,items", FETCH_CASES)
def test_fetch_items(data, items):
    assert parse(data).items == items


def test_fetch_modifiers():
    cmd = parse(b"t1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n")
    assert cmd == E.Fetch(T, True, NumSet(((1, STAR),)), (E.FetchItem("FLAGS"),), 12345, True)
    cmd = parse(b"t1 fetch 1:* (FLAGS) (CHANGEDSINCE 0)\r\n")
    assert cmd.changedsince == 0 and not cmd.uid
    assert "VANISHED" in bad(b"t1 FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n").message
    bad(b"t1 UID FETCH 1:* (FLAGS) (VANISHED)\r\n")


SEARCH_CASES = [
    (b"t1 SEARCH ALL\r\n", E.All()),
    (b"t1 UID SEARCH UNDELETED\r\n", E.Flag("\\Deleted", False)),
    (b"t1 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
     E.And((E.Flag("\\Flagged"), E.Date("internal", "since", dt.date(1994, 2, 1)), E.Not(E.Header("FROM", "Smith"))))),
    (b"t1 SEARCH OR (SEEN ANSWERED) (DELETED DRAFT)\r\n",
     E.Or(E.And((E.Flag("\\Seen"), E.Flag("\\Answered"))), E.And((E.Flag("\\Deleted"), E.Flag("\\Draft"))))),
    (b"t1 SEARCH NEW\r\n", E.And((E.Flag("\\Recent"), E.Flag("\\Seen", False)))),
    (b"t1 SEARCH OLD RECENT UNANSWERED UNDRAFT UNFLAGGED UNSEEN\r\n",
     E.And((E.Not(E.Flag("\\Recent")), E.Flag("\\Recent"), E.Flag("\\Answered", False), E.Flag("\\Draft", False),
            E.Flag("\\Flagged", False), E.Flag("\\Seen", False)))),
    (b"t1 SEARCH KEYWORD $Forwarded UNKEYWORD $Junk\r\n", E.And((E.Flag("$Forwarded"), E.Flag("$Junk", False)))),
    (b"t1 SEARCH BCC a CC b FROM c SUBJECT d TO e\r\n",
     E.And(tuple(E.Header(n, v) for n, v in zip(["BCC", "CC", "FROM", "SUBJECT", "TO"], "abcde")))),
    (b'T1 SEARCH HEADER Message-ID "<x@y>"\r\n', E.Header("Message-ID", "<x@y>")),
    (b"t1 SEARCH BODY {5}\r\nhello TEXT x\r\n", E.And((E.Body("hello"), E.Text("x")))),
    (b'T1 SEARCH BEFORE "1-Jan-2024" ON 31-Dec-2023 SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000\r\n',
     E.And((E.Date("internal", "before", dt.date(2024, 1, 1)), E.Date("internal", "on", dt.date(2023, 12, 31)),
            E.Date("sent", "before", dt.date(2000, 1, 1)), E.Date("sent", "on", dt.date(2000, 1, 2)),
            E.Date("sent", "since", dt.date(2000, 1, 3))))),
    (b"t1 SEARCH SAVEDBEFORE 1-Jan-2024 SAVEDON 1-Jan-2024 SAVEDSINCE 1-Jan-2024 SAVEDATESUPPORTED\r\n",
     E.And((E.Date("saved", "before", dt.date(2024, 1, 1)), E.Date("saved", "on", dt.date(2024, 1, 1)),
            E.Date("saved", "since", dt.date(2024, 1, 1)), E.SaveDateSupported()))),
    (b"t1 SEARCH LARGER 1000 SMALLER 5000000000\r\n", E.And((E.Size("larger", 1000), E.Size("smaller", 5000000000)))),
    (b"t1 SEARCH 1:5,7 UID 2:* $\r\n",
     E.And((E.Sequence(N("1:5,7")), E.Sequence(N("2:*"), uid=True), E.Sequence(NumSet((), True))))),
    (b"t1 SEARCH MODSEQ 620162338\r\n", E.ModSeq(620162338)),
    (b'T1 SEARCH MODSEQ "/flags/\\\\draft" all 620162338\r\n', E.ModSeq(620162338, "/flags/\\draft", "all")),
    (b"t1 SEARCH YOUNGER 3600 OLDER 60\r\n", E.And((E.Age("younger", 3600), E.Age("older", 60)))),
    (b"t1 SEARCH EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9\r\n",
     E.And((E.ObjectId("email", "M6d99ac3275bb4e"), E.ObjectId("thread", "T64b478a75b7ea9")))),
    (b"t1 SEARCH NOT NOT (ALL)\r\n", E.Not(E.Not(E.All()))),
]


@pytest.mark.parametrize("data,key", SEARCH_CASES)
def test_search_keys(data, key):
    assert parse(data).key == key


def test_search_return_and_charset():
    cmd = parse(b"t1 UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET UTF-8 SUBJECT {6}\r\n\xc3\xa4rger\r\n")
    assert cmd.uid and cmd.returns == ("MIN", "MAX", "COUNT", "ALL", "SAVE")
    assert cmd.charset == "UTF-8" and cmd.key == E.Header("SUBJECT", "\u00e4rger")
    assert parse(b"t1 SEARCH RETURN () ALL\r\n").returns == ("ALL",)
    assert parse(b"t1 SEARCH ALL\r\n").returns is None
    cmd = parse(b"t1 SEARCH CHARSET ISO-8859-1 BODY {1}\r\n\xe4\r\n")
    assert cmd.key == E.Body("\u00e4")
    # IANA's Windows-31J (cp932): Python's codecs know the name from 3.13 on only
    cmd = parse(b"t1 SEARCH CHARSET WINDOWS-31J BODY {8}\r\n\x93\xfa\x96{\x8c\xea\x87\x40\r\n")
    assert cmd.charset == "WINDOWS-31J" and cmd.key == E.Body("\u65e5\u672c\u8a9e\u2460")
    err = bad(b"t1 SEARCH CHARSET KLINGON BODY x\r\n")
    assert err.code.startswith("BADCHARSET")
    # a NUL in the name: codecs.lookup raises ValueError, not LookupError
    # (found by test_imap_wire_fuzz on UID THREAD)
    for cmd in (b"t1 SEARCH CHARSET {1}\r\n\x00 ALL\r\n",
                b"t1 UID THREAD REFERENCES {6}\r\nUTF-8\x00 ALL\r\n",
                b"t1 SORT (DATE) {3}\r\nA\x00B ALL\r\n"):
        assert bad(cmd).code.startswith("BADCHARSET")
    bad(b"t1 SEARCH RETURN (PARTIAL 1:5 ALL) ALL\r\n")   # RFC 5267 4.4: not both


def test_sort_and_thread():
    cmd = parse(b"t1 UID SORT (REVERSE DATE SUBJECT DISPLAYFROM) UTF-8 ALL\r\n")
    assert cmd == E.Sort(T, True, (E.SortKey("DATE", True), E.SortKey("SUBJECT"), E.SortKey("DISPLAYFROM")), "UTF-8", E.All())
    cmd = parse(b"t1 SORT RETURN (MIN MAX) (ARRIVAL) US-ASCII UNDELETED\r\n")
    assert cmd.returns == ("MIN", "MAX") and cmd.criteria == (E.SortKey("ARRIVAL"),)
    cmd = parse(b"t1 UID THREAD REFERENCES UTF-8 SINCE 5-MAR-2000\r\n")
    assert cmd == E.Thread(T, True, "REFERENCES", "UTF-8", E.Date("internal", "since", dt.date(2000, 3, 5)))
    assert parse(b"t1 THREAD ORDEREDSUBJECT UTF-8 ALL\r\n").algorithm == "ORDEREDSUBJECT"
    bad(b"t1 SORT (DATE) ALL\r\n")  # charset is mandatory
    bad(b"t1 SORT (WEIGHT) UTF-8 ALL\r\n")
    bad(b"t1 THREAD X UTF-8 ALL\r\n")


def test_utf8_accept_mailbox_names():
    assert parse('t1 SELECT "Entwürfe"\r\n'.encode(), utf8=True).mailbox == "Entwürfe"
    assert parse(b"t1 SELECT a&b\r\n", utf8=True).mailbox == "a&b"
    bad('t1 CREATE "Entwürfe"\r\n'.encode())  # 8-bit without UTF8=ACCEPT


ERRORS = [
    b"t1 FOO\r\n",
    b"t1 NOOP extra\r\n",
    b"t1 UID LOGIN a b\r\n",
    b"t1 LOGIN onlyuser\r\n",
    b"t1 LOGIN a  b\r\n",
    b"t1 SELECT\r\n",
    b"t1 SELECT INBOX (FOO)\r\n",
    b"t1 SELECT INBOX (QRESYNC (0 1))\r\n",
    b"t1 SELECT INBOX (QRESYNC (1 0))\r\n",
    b"t1 SELECT INBOX (QRESYNC (1 2 1:*))\r\n",
    b"t1 CREATE &Jjo\r\n",   # (SELECT/EXAMINE/STATUS answer NO: test_conformance_5b)
    b"t1 DELETE &AGE-\r\n",  # encoded ASCII
    b"t1 FETCH 0 FLAGS\r\n",
    b"t1 FETCH 1 FLAGS)\r\n",
    b"t1 FETCH 1 (FLAGS\r\n",
    b"t1 FETCH 1 BODY.PEEK\r\n",
    b"t1 FETCH 1 BODY[MIME]\r\n",
    b"t1 FETCH 1 BINARY[HEADER]\r\n",
    b"t1 FETCH 1 BODY[1]<0>\r\n",
    b"t1 FETCH 1 FOO\r\n",
    b"t1 FETCH 1:4294967296 FLAGS\r\n",
    b"t1 FETCH 1 BODY[]<0.0>\r\n",
    b"t1 STORE 1 FLAGS\r\n",
    b"t1 STORE 1 XFLAGS (\\Seen)\r\n",
    b"t1 SEARCH\r\n",
    b"t1 SEARCH FOO\r\n",
    b"t1 SEARCH OR ALL\r\n",
    b"t1 SEARCH SINCE 32-Jan-2000\r\n",
    b"t1 SEARCH SINCE 1-Foo-2000\r\n",
    b"t1 SEARCH (ALL\r\n",
    b"t1 SEARCH EMAILID bad!id\r\n",
    b"t1 APPEND INBOX\r\n",
    b"t1 APPEND INBOX (\\Seen)\r\n",
    b'"t1" NOOP\r\n',
    b"t1 LOGIN ~{1+}\r\na ~{1+}\r\nb\r\n",  # literal8 outside APPEND
    b"t1 AUTHENTICATE PLAIN AGJv!\r\n",
    b"t1 LIST (RECURSIVEMATCH) \"\" *\r\n",
    b"t1 LIST (FOO) \"\" *\r\n",
    b"t1 STATUS INBOX (FOO)\r\n",
    b"t1 ENABLE\r\n",
    b"t1 CREATE x (USE (Drafts))\r\n",
    b"t1 ID (\"a\")\r\n",
]


@pytest.mark.parametrize("data", ERRORS, ids=[e[:40].decode("latin-1") for e in ERRORS])
def test_errors(data):
    err = bad(data)
    assert err.tag in (b"t1", None)


def test_tag_in_error():
    assert bad(b"A999 FETCH\r\n").tag == b"A999"
    assert bad(b"+a NOOP\r\n").tag is None


def test_nesting_limit():
    err = bad(b"t1 SEARCH " + b"(" * 70 + b"ALL" + b")" * 70 + b"\r\n")
    assert err.code == "LIMIT"
    err = bad(b"t1 SEARCH " + b"NOT " * 100 + b"ALL\r\n")
    assert err.code == "LIMIT"
    assert parse(b"t1 SEARCH " + b"(" * 20 + b"ALL" + b")" * 20 + b"\r\n").key == E.All()
    frame = CommandFrame(T, (b"SEARCH " + b"(" * 10 + b"ALL" + b")" * 10,))
    with pytest.raises(CommandError):
        parse_command(frame, max_depth=5)


def test_sequence_set_limit():
    many = b",".join(b"%d" % (2 * i + 1) for i in range(10_001))
    assert bad(b"t1 FETCH " + many + b" FLAGS\r\n").code == "LIMIT"
    frame = CommandFrame(T, (b"FETCH 1,3,5 FLAGS",))
    with pytest.raises(CommandError):
        parse_command(frame, max_ranges=2)


def test_command_names_are_state_table_keys():
    from mailaccess.proto.imap.commands import COMMAND_PARSERS
    from mailaccess.proto.imap.state import ALLOWED

    known = set().union(*ALLOWED.values())
    for name in COMMAND_PARSERS:
        assert (name if name != "EXAMINE" else "SELECT") in known, name
