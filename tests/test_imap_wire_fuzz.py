"""The receiver and the command parser never raise anything but their own error.

Arbitrary bytes go in; what comes out is a frame event from the receiver and,
for each ``CommandFrame``, either a typed ``Command`` or ``CommandError`` (the
session answers that ``BAD``, or ``NO [BADCHARSET]``).  Any other exception
would reach the service's connection guard and drop the client, so it is a
bug in the parser.

Plain random bytes mostly stop at "unknown command", so most examples are
built from IMAP's own vocabulary (command names, search keys, fetch items,
sets, strings, literals, parentheses) in random order: that reaches deep into
each command's parser.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaccess.proto.imap import events as E
from mailaccess.proto.imap import frames
from mailaccess.proto.imap.commands import COMMAND_PARSERS, UID_COMMANDS, parse_command
from mailaccess.proto.imap.errors import CommandError
from mailaccess.proto.imap.receiver import Receiver

WORDS = sorted(COMMAND_PARSERS) + [
    "UID", "ALL", "FAST", "FULL", "FLAGS", "UID", "ENVELOPE", "BODY", "BODY.PEEK", "BODYSTRUCTURE",
    "BINARY", "BINARY.PEEK", "BINARY.SIZE", "RFC822", "RFC822.SIZE", "RFC822.HEADER", "RFC822.TEXT",
    "INTERNALDATE", "MODSEQ", "EMAILID", "THREADID", "SAVEDATE", "PREVIEW", "LAZY", "HEADER",
    "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME", "CHANGEDSINCE", "VANISHED",
    "UNCHANGEDSINCE", "+FLAGS", "-FLAGS", "+FLAGS.SILENT", "FLAGS.SILENT", "\\Seen", "\\Deleted",
    "\\Recent", "\\*", "$Forwarded", "CHARSET", "UTF-8", "KOI8-R", "X-UNKNOWN", "RETURN", "MIN",
    "MAX", "COUNT", "SAVE", "PARTIAL", "$", "OR", "NOT", "ANSWERED", "BCC", "BEFORE", "CC",
    "FROM", "KEYWORD", "LARGER", "NEW", "OLD", "ON", "SENTBEFORE", "SENTON", "SENTSINCE", "SINCE",
    "SMALLER", "SUBJECT", "TO", "UNKEYWORD", "UNSEEN", "OLDER", "YOUNGER", "EMAILID", "THREADID",
    "SAVEDATESUPPORTED", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE", "/flags/\\seen", "priv", "shared",
    "REFERENCES", "ORDEREDSUBJECT", "ARRIVAL", "DATE", "REVERSE", "DISPLAYFROM", "DISPLAYTO",
    "SIZE", "CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT", "UTF8", "CATENATE", "URL",
    "MESSAGES", "UIDNEXT", "UIDVALIDITY", "RECENT", "HIGHESTMODSEQ", "DELETED", "APPENDLIMIT",
    "MAILBOXID", "SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE", "CHILDREN", "STATUS",
    "INBOX", "inbox", "&AOQ-", "&-", "&Jjo", "a&Jjo-&Jjo-", "NIL", "STORAGE", "DEFLATE", "PLAIN",
    "SCRAM-SHA-256", "=", "*", "%", "1", "0", "4294967295", "4294967296", "99999999999999999999",
    "1:*", "*:4", "1,3:5", "2:1", "1:", ",", ":", "$:3", "17-Jul-1996", "32-Jan-2020",
    '"17-Jul-1996 02:44:25 -0700"', '""', '"a b"', '"\\"q\\\\"', '"unterminated', "\\", "[", "]",
    "<", ">", "<0.10>", "<5>", "(", ")", "((", "))", "{", "}", "{0}", "{5+}", "~{3}", "\x00",
    "\xff", "\x7f", "\t",
]

_token = st.one_of(
    st.sampled_from(WORDS).map(lambda w: w.encode("latin-1")),
    st.integers(0, 2**64).map(lambda n: b"%d" % n),
    st.binary(max_size=6),
    st.text(max_size=6).map(lambda t: t.encode("utf-8")),
    st.binary(max_size=12).map(lambda d: b"{%d}\r\n" % len(d) + d),
    st.binary(max_size=12).map(lambda d: b"{%d+}\r\n" % len(d) + d),
    st.binary(max_size=12).map(lambda d: b"~{%d}\r\n" % len(d) + d),
)
_sep = st.sampled_from([b" "] * 12 + [b"", b"(", b")", b"[", b"]", b"  ", b"\r\n"])


@st.composite
def imapish_command(draw) -> bytes:
    tag = draw(st.sampled_from([b"a1"] * 20 + [b"t", b"*", b"+", b"", b"x.y", b"\xff"]))
    head = tag + b" "
    if draw(st.booleans()):
        head += b"UID "
        name = draw(st.sampled_from(sorted(UID_COMMANDS) + ["NOOP"]))
    else:
        name = draw(st.sampled_from(sorted(COMMAND_PARSERS)))
    out = [head + name.encode()]
    for _ in range(draw(st.integers(0, 14))):
        out.append(draw(_sep))
        out.append(draw(_token))
    return b"".join(out) + b"\r\n"


# Valid commands of every kind; the mutation test below breaks them a little.
SEEDS = [
    b"a LOGIN alice pw", b'a LOGIN "al ice" {2+}\r\npw', b"a AUTHENTICATE PLAIN AGFsaWNlAHB3",
    b"a ENABLE CONDSTORE QRESYNC UTF8=ACCEPT", b"a COMPRESS DEFLATE", b'a ID ("name" "x")',
    b"a ID NIL", b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
    b"a EXAMINE &AOQ- (CONDSTORE)", b"a CREATE foo/bar (USE (\\Drafts))", b"a DELETE x",
    b"a RENAME a b", b"a SUBSCRIBE a", b"a UNSUBSCRIBE a",
    b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("*" "%") RETURN (CHILDREN STATUS (MESSAGES SIZE))',
    b'a LSUB "" %', b"a STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ MAILBOXID)",
    b'a APPEND INBOX (\\Seen) "17-Jul-1996 02:44:25 -0700" {3+}\r\nabc',
    b"a APPEND INBOX UTF8 (~{3+}\r\nabc)",
    b'a APPEND INBOX CATENATE (URL "/INBOX;UIDVALIDITY=1/;UID=2" TEXT {2+}\r\nab)',
    b"a GETQUOTA \"\"", b"a GETQUOTAROOT INBOX", b'a SETQUOTA "" (STORAGE 512)',
    b"a UID EXPUNGE 1:3", b"a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)",
    b"a UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 12345 VANISHED)",
    b"a FETCH $ (BINARY.PEEK[1.2] BINARY.SIZE[1] PREVIEW (LAZY) EMAILID SAVEDATE)",
    b"a STORE 1:3 +FLAGS.SILENT (\\Deleted $Forwarded)",
    b"a UID STORE 1 (UNCHANGEDSINCE 5) FLAGS ()", b"a COPY 1:2 Trash", b"a UID MOVE 3 Archive",
    b'a SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 OR FROM "x" NOT SUBJECT {2+}\r\nyy',
    b"a UID SEARCH MODSEQ \"/flags/\\\\seen\" all 5 SINCE 1-Feb-1994 LARGER 10 1:5,$",
    b"a SEARCH YOUNGER 60 EMAILID Mabc SAVEDATESUPPORTED SAVEDBEFORE 1-Jan-2020 (UNSEEN)",
    b"a SORT RETURN (ALL) (REVERSE DATE SUBJECT DISPLAYFROM) UTF-8 ALL",
    b"a UID THREAD REFERENCES UTF-8 SINCE 1-Feb-1994", b"a IDLE", b"a NOOP", b"a UNSELECT",
]


@st.composite
def mutated_seed(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        how = draw(st.integers(0, 3))
        if how == 0 and pos < len(data):
            del data[pos:pos + draw(st.integers(1, 8))]
        elif how == 1 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif how == 2:
            data[pos:pos] = b" " + draw(_token)
        else:
            data[pos:pos] = draw(st.sampled_from([b"(", b")", b" ", b'"', b"\\", b"{1}\r\n", b"*"]))
    return bytes(data) + b"\r\n"


def _feed(data: bytes, utf8: bool) -> None:
    """Frame DATA and parse every command: only CommandError may come out."""
    r = Receiver(max_line=4096, max_literal=1024, max_nonsync_literal=1024)
    if data:
        r.receive_data(data)
    r.receive_data(b"")   # EOF
    for _ in range(10_000):
        e = r.next_event()
        if e is frames.NEED_DATA or e is frames.CONNECTION_CLOSED:
            return
        assert isinstance(e, (frames.CommandFrame, frames.ContinuationRequest,
                              frames.FrameError, frames.RawLine)), e
        if isinstance(e, frames.CommandFrame):
            try:
                cmd = parse_command(e, utf8=utf8)
            except CommandError as exc:
                assert exc.tag is None or exc.tag == e.tag
                assert isinstance(exc.message, str)
                continue
            assert isinstance(cmd, E.Command) and cmd.NAME
            assert cmd.tag == e.tag
    raise AssertionError("the receiver never ran out of events")


_SETTINGS = settings(max_examples=600, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(st.lists(imapish_command(), min_size=1, max_size=4).map(b"".join), st.booleans())
def test_imapish_commands_never_raise(data, utf8):
    _feed(data, utf8)


@_SETTINGS
@given(st.lists(mutated_seed(), min_size=1, max_size=3).map(b"".join), st.booleans())
def test_mutated_valid_commands_never_raise(data, utf8):
    _feed(data, utf8)


def test_seeds_are_valid():
    for seed in SEEDS:
        r = Receiver()
        r.receive_data(seed + b"\r\n")
        e = r.next_event()
        while isinstance(e, frames.ContinuationRequest):
            e = r.next_event()
        assert isinstance(parse_command(e, utf8=True), E.Command), seed


@_SETTINGS
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_never_raise(data, utf8):
    _feed(data, utf8)


@_SETTINGS
@given(st.sampled_from(sorted(COMMAND_PARSERS)), st.binary(max_size=120), st.booleans())
def test_known_command_with_arbitrary_arguments_never_raises(name, args, utf8):
    _feed(b"a1 " + name.encode() + b" " + args + b"\r\n", utf8)


def test_the_test_can_fail(monkeypatch):
    """A parser that lets a foreign exception out is caught by _feed."""
    import pytest

    from mailaccess.proto.imap import commands

    def broken(r, tag, ctx):
        raise KeyError("oops")

    monkeypatch.setitem(commands.COMMAND_PARSERS, "NOOP", broken)
    with pytest.raises(KeyError):
        _feed(b"a1 NOOP\r\n", False)
