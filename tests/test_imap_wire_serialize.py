"""Response serialisation: exact bytes (every function here has a production caller;
FETCH data items are tested through the session, tests/test_imap_wire_session.py)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailaccess.proto.imap import serialize as S
from mailaccess.proto.imap.grammar import Reader
from mailaccess.query.thread import Thread


def test_status_lines():
    assert S.ok(b"a1", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert S.no(b"a1", "no such mailbox", "TRYCREATE") == b"a1 NO [TRYCREATE] no such mailbox\r\n"
    assert S.bad(None, "junk") == b"* BAD junk\r\n"
    assert S.bad(b"a1", "too big", "TOOBIG") == b"a1 BAD [TOOBIG] too big\r\n"
    assert S.bye("server shutting down", "UNAVAILABLE") == b"* BYE [UNAVAILABLE] server shutting down\r\n"
    assert S.greeting("ready", S.code_capability(["IMAP4rev1", "IMAP4rev2", "LITERAL+"])) == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+] ready\r\n"
    )
    assert S.continuation() == b"+ Ready\r\n"
    assert S.continuation_data(b"") == b"+ \r\n"
    assert S.continuation_data(b"abc") == b"+ YWJj\r\n"
    assert S.tagged(b"a1", "OK", "line\r\nbreak") == b"a1 OK line  break\r\n"
    assert S.tagged(b"a1", "NO", "x", "") == b"a1 NO x\r\n"
    assert S.untagged("OK", "moved", b"COPYUID 1 2 3") == b"* OK [COPYUID 1 2 3] moved\r\n"


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
        (S.code_capability(["IMAP4rev1", "IDLE"]), b"CAPABILITY IMAP4rev1 IDLE"),
    ],
)
def test_codes(code, wire):
    assert code == wire


def test_atom_codes():
    for code in ("TRYCREATE", "ALREADYEXISTS", "NONEXISTENT", "CLOSED", "TOOBIG", "OVERQUOTA", "LIMIT", "CANNOT",
                 "UNAVAILABLE", "AUTHENTICATIONFAILED", "UNKNOWN-CTE", "CONTACTADMIN", "NOMODSEQ"):
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
    # COUNT before ALL, as the session has always sent it
    assert S.esearch(b"A", True, count=3, all=[5, 1, 2], modseq=9) == b'* ESEARCH (TAG "A") UID COUNT 3 ALL 1:2,5 MODSEQ 9\r\n'
    # ESORT: ALL in sort order (RFC 5267 3.2)
    assert S.esearch(b"B", False, min=5, max=2, all=[5, 1, 2], keep_order=True) == b'* ESEARCH (TAG "B") MIN 5 MAX 2 ALL 5,1:2\r\n'
    assert S.esearch(b"C", False, all=[]) == b'* ESEARCH (TAG "C")\r\n'
    T = Thread
    assert S.thread([T(2), T(3, (T(6, (T(4, (T(23),)), T(44, (T(7, (T(96),)),)))),))]) == (
        b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    )
    assert S.thread([T(None, (T(3), T(5)))]) == b"* THREAD ((3)(5))\r\n"
    assert S.thread([]) == b"* THREAD\r\n"


def test_thread_of_any_depth():
    """A reply chain deeper than the recursion limit still formats (no recursion)."""
    node = Thread(20_000)
    for k in range(19_999, 0, -1):
        node = Thread(k, (node, Thread(k + 100_000)))
    out = S.thread([node])
    assert out.startswith(b"* THREAD (1 (2 (3 ") and out.endswith(b")\r\n")


def test_list_and_friends():
    assert S.list_(["\\HasNoChildren"], "/", "INBOX") == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    assert S.list_(["\\Noselect"], None, "") == b'* LIST (\\Noselect) NIL ""\r\n'
    assert S.list_([], "/", "Foo", childinfo=["SUBSCRIBED"]) == b'* LIST () "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    assert S.list_([], "/", "New", oldname="Old Box") == b'* LIST () "/" New ("OLDNAME" ("Old Box"))\r\n'
    assert S.list_(["\\Drafts"], "/", "Entw\u00fcrfe") == b'* LIST (\\Drafts) "/" Entw&APw-rfe\r\n'
    assert S.list_(["\\Drafts"], "/", "Entw\u00fcrfe", utf8=True) == '* LIST (\\Drafts) "/" "Entw\u00fcrfe"\r\n'.encode()
    assert S.list_([], "\\", "a b") == b'* LIST () "\\\\" "a b"\r\n'
    assert S.list_([], ".", "x", command=b"LSUB") == b'* LSUB () "." x\r\n'
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


# ---------------------------------------------- THREAD: a round trip (RFC 5256 §4)

def _parse_thread(data: bytes) -> list[Thread]:
    """The THREAD response back into trees (a client's reading of RFC 5256 §4)."""
    import re

    toks = re.findall(rb"\(|\)|\d+", data.removeprefix(b"* THREAD").strip())
    pos = 0

    def thread_list() -> Thread:
        # "(" numbers... subthreads... ")": a chain whose last node has the subthreads
        nonlocal pos
        assert toks[pos] == b"("
        pos += 1
        nums, subs = [], []
        while toks[pos] != b")":
            if toks[pos] == b"(":
                subs.append(thread_list())
            else:
                assert not subs, "a number after a nested list"
                nums.append(int(toks[pos]))
                pos += 1
        pos += 1
        node = Thread(None if not nums else nums[-1], tuple(subs))
        for n in reversed(nums[:-1]):
            node = Thread(n, (node,))
        return node

    out = []
    while pos < len(toks):
        out.append(thread_list())
    return out


@st.composite
def _thread_forest(draw):
    counter = iter(range(1, 10_000))

    def tree(depth):
        key = next(counter)
        if depth > 6:
            return Thread(key)
        n = draw(st.sampled_from([0, 0, 1, 1, 2, 3]))
        return Thread(key, tuple(tree(depth + 1) for _ in range(n)))

    roots = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            roots.append(tree(0))
        else:   # a dummy root holds two or more siblings
            roots.append(Thread(None, tuple(tree(1) for _ in range(draw(st.integers(2, 3))))))
    return roots


@given(_thread_forest())
def test_thread_round_trip(roots):
    assert _parse_thread(S.thread(roots)) == roots
