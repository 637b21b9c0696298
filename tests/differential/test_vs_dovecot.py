"""Differential tests: the same IMAP conversation against mailaccess and against a
private Dovecot (bench/dovecot.py), compared after normalising what two correct
servers may legitimately answer differently (go-imap's GOIMAP_TEST_DOVECOT idea).

Opt-in: run with ``MAILACCESS_DIFFERENTIAL=1 pytest -m differential``.  Dovecot is
installed with apt-get when missing.

What is normalised away (imapdiff.Normaliser), and why it is a freedom:
- tags are identical by construction; text after a status and untagged OK
  without a code are free text;
- CAPABILITY responses/codes, [MAILBOXID], [HIGHESTMODSEQ], [NOMODSEQ], MODSEQ
  values: server-specific (mailaccess keeps one modseq per account);
- UIDVALIDITY values (also inside APPENDUID/COPYUID and STATUS);
- EMAILID/THREADID values (RFC 8474 leaves them opaque);
- flag case and flag-list order (flags are case-insensitive; mailaccess
  stores keywords lowercased, docs/imap.md);
- the order of untagged responses (RFC 3501 §7), SEARCH result order, the
  order of FETCH items, quoted string vs literal for the same bytes;
- EXPUNGE announcements compared as the set of original sequence numbers
  removed (3,2 and 2,2 are the same expunge);
- INTERNALDATE compared as an instant (zone free), or not at all for APPEND
  without a date;
- unsolicited FLAGS / PERMANENTFLAGS after a STORE introduces a keyword
  (a server may announce new keywords; mailaccess has ``\\*``).

Real mailaccess bugs are ``xfail(strict=True)`` with the exact difference.
"""
from __future__ import annotations

import functools

import pytest
import trio

import diffcorpus
from diffcorpus import M, seq
from imapdiff import Duo, Normaliser
from imap_helpers import imap_port

import os
import shutil
import tempfile

# --- fixtures (kept in this module: a conftest.py here would shadow the
# top-level tests/conftest.py that other test modules import helpers from)

ENV = "MAILACCESS_DIFFERENTIAL"


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def dovecot_peer(prefix: str, extra_config: str = ""):
    """Fixture body: a private Dovecot started in a fresh work dir (EXTRA_CONFIG
    appended to its config), stopped and removed afterwards."""
    if not enabled():
        pytest.skip(f"differential tests run only with {ENV}=1")
    from imapdiff import make_dovecot
    workdir = tempfile.mkdtemp(prefix=prefix)
    d = make_dovecot(workdir)
    if extra_config:
        base = d.write_config

        def write_config():
            base()
            with open(d.conf, "a") as fh:
                fh.write(extra_config)

        d.write_config = write_config
    d.start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def emptied(d):
    """D with its mail home emptied (user alice/pw starts with nothing)."""
    home = d.home()
    if os.path.isdir(home):
        for name in os.listdir(home):
            p = os.path.join(home, name)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    return d


@pytest.fixture(scope="session")
def _dovecot_instance():
    yield from dovecot_peer("mailaccess-diff-dovecot-")


@pytest.fixture
def dovecot(_dovecot_instance):
    """The Dovecot peer with an empty mail home (user alice/pw)."""
    return emptied(_dovecot_instance)

# ---


pytestmark = [pytest.mark.differential]


async def in_thread(fn, *args):
    with trio.fail_after(300):
        return await trio.to_thread.run_sync(fn, *args)


def load(duo: Duo, mailbox: str = "INBOX") -> None:
    """APPEND the corpus with flags and dates; compare each APPEND's answer."""
    for key, raw, flags, date in M:
        parts = [mailbox]
        if flags:
            parts.append(flags)
        if date:
            parts.append(f'"{date}"')
        duo.send("APPEND " + " ".join(parts) + " {}", [raw])


def sessions(imap_server, dovecot, n, body):
    """Run BODY(*duos) with N sessions on each server; fail listing every difference."""
    async def go():
        def blocking():
            duos = [Duo(imap_port(imap_server), dovecot.ports["imap"]) for _ in range(n)]
            try:
                body(*duos)
                return duos
            finally:
                for d in duos:
                    d.close()
        duos = await in_thread(blocking)
        if n == 1:
            duos[0].assert_same()
        diffs = [f"-- session {i + 1}:\n{d.report()}" for i, d in enumerate(duos) if d.diffs]
        assert not diffs, "\n\n".join(diffs)
    return go()


def conversation(imap_server, dovecot, body, load_corpus=True, select="INBOX"):
    """Run BODY(duo) against both servers (after loading the corpus and
    selecting SELECT, unless told not to) and fail listing every difference."""
    def run(duo):
        if load_corpus:
            load(duo)
        if select:
            duo.send(f"SELECT {select}")
        body(duo)
    return sessions(imap_server, dovecot, 1, run)


def fresh(imap_server, dovecot, body):
    """conversation() on empty accounts, nothing selected."""
    return conversation(imap_server, dovecot, body, load_corpus=False, select=None)


def xfail_bug(reason: str):
    return pytest.mark.xfail(strict=True, reason="mailaccess bug: " + reason)


def cases(values, bugs):
    """pytest params for VALUES, the ones named in BUGS marked xfail(strict)."""
    return [pytest.param(v, id=v, marks=[xfail_bug(bugs[v])] if v in bugs else [])
            for v in values]


# Real differences found against Dovecot 2.3 (each checked against the RFCs).


# ---------------------------------------------------------------------------------------------
# APPEND, SELECT, EXAMINE


async def test_append_select_examine(imap_server, dovecot):
    def body(duo):
        duo.send("EXAMINE INBOX")
        duo.send("SELECT INBOX")
        duo.send("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)")
        duo.send("NOOP")
        duo.send("CHECK")
        duo.send("UNSELECT")
        duo.send("SELECT Archive")
        duo.send("EXAMINE Trash")
        duo.send("CLOSE")
    await conversation(imap_server, dovecot, body)


async def test_append_without_date_and_flags(imap_server, dovecot):
    raw = M[0][1]

    def body(duo):
        duo.send("APPEND INBOX {}", [raw])
        duo.send("APPEND INBOX () {}", [raw])
        duo.send("APPEND INBOX (\\Seen $MDNSent NewKeyword) {}", [raw])
        duo.send('APPEND INBOX "05-Jan-2024 23:59:59 -0800" {}', [raw])
        duo.send("APPEND Nonexistent {}", [raw])
        duo.send("SELECT INBOX")
        duo.send("FETCH 1:3 (FLAGS INTERNALDATE RFC822.SIZE)",
                 norm=Normaliser(drop_internaldate=True))
        duo.send("FETCH 4 (FLAGS INTERNALDATE)")
    await fresh(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# FETCH

MULTIPART = ",".join(str(seq(k)) for k in ("alternative", "mixed-attach", "nested",
                                            "related-b64", "odd-parts", "signed"))
FETCH_CASES = {
    "envelope": "1:* ENVELOPE",
    "bodystructure": "1:* BODYSTRUCTURE",
    "body": "1:* BODY",
    "header": "1:* BODY.PEEK[HEADER]",
    "text": "1:* BODY.PEEK[TEXT]",
    "part1": "1:* BODY.PEEK[1]",
    "part1-mime": f"{MULTIPART} BODY.PEEK[1.MIME]",
    "part2-mime": f"{MULTIPART} BODY.PEEK[2.MIME]",
    "nested-2-header": f"{seq('nested')} (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] "
                       f"BODY.PEEK[2.2.MIME] BODY.PEEK[2])",
    # part 1 of 'nested' is text/plain, so 1.HEADER/1.1 do not exist there: NIL (mailaccess)
    # and "" (Dovecot) are both answers to a nonexistent section; only ask where it exists
    "nested-structure-parts": f"{seq('rfc822-body')} (BODY.PEEK[1.HEADER] "
                              f"BODY.PEEK[1.TEXT] BODY.PEEK[1.1])",
    "header-fields": "1:* BODY.PEEK[HEADER.FIELDS (From Subject X-Custom-Header Date)]",
    "header-fields-not": "1:* BODY.PEEK[HEADER.FIELDS.NOT (From Subject Received Date To Cc)]",
    "nested-header-fields": f"{seq('nested')} BODY.PEEK[2.HEADER.FIELDS (Subject)]",
    "partial": "1:* (BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<5.20>)",
    "partial-beyond": "1:* BODY.PEEK[TEXT]<100000.10>",
    "binary-b64": f"{seq('related-b64')},{seq('mixed-attach')} (BINARY.PEEK[1] BINARY.SIZE[1])",
    "binary-b64-part2": f"{seq('mixed-attach')},{seq('related-b64')} "
                        f"(BINARY.PEEK[2] BINARY.SIZE[2])",
    "binary-singlepart": f"{seq('single-b64')},{seq('plain')} (BINARY.PEEK[1] BINARY.SIZE[1])",
    "binary-qp": f"{seq('encoded')},{seq('qp-folded')} (BINARY.PEEK[1] BINARY.SIZE[1])",
    "rfc822-size": "1:* RFC822.SIZE",
    "rfc822-header": "1:* RFC822.HEADER",
    "full-peek": "1:* BODY.PEEK[]",
    "macros": "1:5 (FAST)",
    "all-macro": "1:* ALL",
    "full-macro": "1:* FULL",
    "uid-fetch-star": "UID 25:* (FLAGS)",
    "sets-seen": "2 (BODY[TEXT])",
    "rfc822-sets-seen": "3 RFC822",
}


@pytest.mark.parametrize("case", cases(list(FETCH_CASES), {}))
async def test_fetch(imap_server, dovecot, case):
    cmd = FETCH_CASES[case]

    def body(duo):
        if cmd.startswith("UID "):
            duo.send("UID FETCH " + cmd[4:])
        else:
            duo.send("FETCH " + cmd)
        duo.send("FETCH 1:* (FLAGS)")
    await conversation(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# STORE

async def test_store(imap_server, dovecot):
    def body(duo):
        n = Normaliser(drop_flag_updates=True)
        duo.send = functools.partial(duo.send, extra_fetch_ok=True)
        duo.send("STORE 1:3 +FLAGS (\\Flagged Custom3)", norm=n)
        duo.send("STORE 2 -FLAGS (\\Flagged $Forwarded)", norm=n)
        duo.send("STORE 4 FLAGS (\\Seen \\Draft keyword_a keyword-b)", norm=n)
        duo.send("STORE 5:6 +FLAGS.SILENT (\\Answered)", norm=n)
        duo.send("UID STORE 7,9 +FLAGS ($Important)", norm=n)
        duo.send("UID STORE 8 FLAGS ()", norm=n)
        duo.send("STORE 10:* -FLAGS (\\Seen)", norm=n)
        duo.send("STORE 1 +FLAGS (\\Bogus)", norm=n)
        duo.send("FETCH 1:* (UID FLAGS)")
        duo.send("SEARCH KEYWORD custom3")
        duo.send("SEARCH KEYWORD Custom3")
        duo.send("SEARCH UNKEYWORD custom1")
    await conversation(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# SEARCH

SEARCH_KEYS = [
    "ALL", "SEEN", "UNSEEN", "FLAGGED", "UNFLAGGED", "ANSWERED", "UNANSWERED", "DELETED",
    "UNDELETED", "DRAFT", "UNDRAFT",
    # NEW/OLD/RECENT are left out: \\Recent is never set by mailaccess (RFC 9051 removed it)
    "KEYWORD $Forwarded", "KEYWORD custom1", "UNKEYWORD custom1", "KEYWORD nosuchkeyword",
    "FROM alice", "FROM Smith", "FROM \"john.smith\"", "TO alice@example.org", "TO undisclosed",
    "CC dave", "CC anna", "BCC hidden", "SUBJECT kickoff", "SUBJECT \"Project kickoff\"",
    "SUBJECT Grüße", "SUBJECT köln", "HEADER Message-ID t-root", "HEADER X-Custom-Header two",
    "HEADER In-Reply-To \"\"", "HEADER References \"\"", "HEADER Subject \"\"",
    "BODY zebra", "BODY giraffe", "BODY wombat", "BODY café", "BODY ümlaut",
    "TEXT zebra", "TEXT Alice", "TEXT kiwi", "TEXT ocelot", "BODY aardvark",
    "BEFORE 10-Nov-2025", "ON 16-Nov-2025", "SINCE 17-Nov-2025", "BEFORE 1-Jan-2000",
    # Dovecot treats a missing Date: as the epoch (so SENTBEFORE matches it); restrict to
    # messages that have one
    "SENTBEFORE 5-Nov-2025 HEADER Date \"\"", "SENTON 15-Nov-2025", "SENTSINCE 20-Nov-2025",
    "LARGER 2000", "SMALLER 300", "LARGER 100000",
    "OR FLAGGED SEEN", "NOT SEEN", "NOT OR FLAGGED SEEN", "OR (FROM leo) (FROM mia)",
    "(SEEN FLAGGED)", "1:5", "2,4,6:8", "10:*", "*", "5:3", "UID 3:*", "UID 1,5,20:25",
    "UID 100:*", "SEEN 1:10 NOT FLAGGED", "OR OR SEEN FLAGGED DRAFT",
    "NOT NOT SEEN", "UNSEEN SINCE 15-Nov-2025 SUBJECT Re", "SUBJECT \"\"",
    "CHARSET UTF-8 SUBJECT Été", "CHARSET UTF-8 BODY Ölfass", "CHARSET US-ASCII TEXT budget",
    "CHARSET X-BOGUS TEXT x",
]


@pytest.mark.parametrize("key", cases(SEARCH_KEYS, {}))
async def test_search(imap_server, dovecot, key):
    def body(duo):
        duo.send("SEARCH " + key)
        duo.send("UID SEARCH " + key)
    await conversation(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# ESEARCH

ESEARCH_CASES = [
    "SEARCH RETURN (MIN MAX COUNT ALL) SEEN",
    "SEARCH RETURN () FLAGGED",
    "SEARCH RETURN (COUNT) NOTHINGMATCHES",
    "UID SEARCH RETURN (MIN MAX) SUBJECT kickoff",
    "UID SEARCH RETURN (ALL) 1:*",
    "SEARCH RETURN (MIN) KEYWORD nosuchkeyword",
    "SEARCH RETURN (ALL) UNSEEN",
    "SEARCH RETURN (COUNT MIN) UID 5:*",
]


@pytest.mark.parametrize("cmd", ESEARCH_CASES)
async def test_esearch(imap_server, dovecot, cmd):
    cmd = cmd.replace("NOTHINGMATCHES", "SUBJECT nothing-matches-this")

    def body(duo):
        duo.send(cmd)
    await conversation(imap_server, dovecot, body)


async def test_searchres(imap_server, dovecot):
    def body(duo):
        duo.send("SEARCH RETURN (SAVE) SUBJECT kickoff")
        duo.send("FETCH $ (UID FLAGS)")
        duo.send("UID SEARCH RETURN (SAVE MIN) FLAGGED")
        duo.send("UID FETCH $ (UID)")
        duo.send("SEARCH $ SEEN")
    await conversation(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# SORT and THREAD

SORT_CASES = [
    "(ARRIVAL)", "(DATE)", "(REVERSE DATE)", "(FROM)", "(TO)", "(CC)", "(SUBJECT)",
    "(REVERSE SUBJECT)", "(SIZE)", "(REVERSE SIZE)", "(SUBJECT DATE)", "(DISPLAYFROM)",
    "(DISPLAYTO)", "(REVERSE ARRIVAL)",
]


@pytest.mark.parametrize("keys", cases(SORT_CASES, {}))
async def test_sort(imap_server, dovecot, keys):
    def body(duo):
        n = Normaliser(keep_order=True)
        duo.send(f"SORT {keys} UTF-8 ALL", norm=n)
        duo.send(f"UID SORT {keys} UTF-8 UNSEEN", norm=n)
    await conversation(imap_server, dovecot, body)


async def test_esort(imap_server, dovecot):
    def body(duo):
        n = Normaliser(keep_order=True)
        duo.send("SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL", norm=n)
        duo.send("UID SORT RETURN (ALL) (REVERSE DATE) UTF-8 SEEN", norm=n)
    await conversation(imap_server, dovecot, body)


@pytest.mark.parametrize("algo", ["ORDEREDSUBJECT", "REFERENCES"])
@pytest.mark.parametrize("crit", ["ALL", "UNSEEN"])
async def test_thread(imap_server, dovecot, algo, crit):
    def body(duo):
        n = Normaliser(keep_order=True)
        duo.send(f"THREAD {algo} UTF-8 {crit}", norm=n)
        duo.send(f"UID THREAD {algo} UTF-8 {crit}", norm=n)
    await conversation(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# COPY / MOVE / EXPUNGE


async def test_copy(imap_server, dovecot):
    def body(duo):
        duo.send("COPY 1:3 Archive", extra_fetch_ok=True)
        duo.send("UID COPY 5,7:8 Archive", extra_fetch_ok=True)
        duo.send("COPY 1 Nonexistent")
        duo.send("COPY 100 Archive")
        duo.send("STATUS Archive (MESSAGES UIDNEXT UNSEEN)")
        duo.send("SELECT Archive")
        duo.send("FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)")
    await conversation(imap_server, dovecot, body)


async def test_move(imap_server, dovecot):
    def body(duo):
        duo.send("MOVE 2:4 Archive")
        duo.send("UID MOVE 10,12 Archive")
        duo.send("UID MOVE 1000 Archive")
        duo.send("FETCH 1:* (UID)")
        duo.send("STATUS Archive (MESSAGES UIDNEXT)")
        duo.send("SELECT Archive")
        duo.send("FETCH 1:* (UID FLAGS)")
    await conversation(imap_server, dovecot, body)


async def test_expunge(imap_server, dovecot):
    def body(duo):
        duo.send("STORE 2,3,7,20 +FLAGS.SILENT (\\Deleted)")
        duo.send("EXPUNGE")
        duo.send("FETCH 1:* (UID)")
        duo.send("STORE 1:5 +FLAGS.SILENT (\\Deleted)")
        duo.send("UID EXPUNGE 1:5")
        duo.send("FETCH 1:* (UID FLAGS)")
        duo.send("UID EXPUNGE 100:200")
        duo.send("CLOSE")
        duo.send("STATUS INBOX (MESSAGES UIDNEXT)")
    await conversation(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# STATUS


async def test_status(imap_server, dovecot):
    def body(duo):
        duo.send("STATUS INBOX (MESSAGES UIDNEXT UNSEEN UIDVALIDITY RECENT)")
        duo.send("STATUS INBOX (SIZE)")
        duo.send("STATUS INBOX (HIGHESTMODSEQ)")
        duo.send("STATUS Archive (MESSAGES UIDNEXT UNSEEN SIZE)")
        duo.send("STATUS Nonexistent (MESSAGES)")
        duo.send("STATUS INBOX ()")
    await conversation(imap_server, dovecot, body, select=None)


# ---------------------------------------------------------------------------------------------
# LIST / LSUB


TREE = ("a", "a/b", "a/b/c", "foo", "foo/bar", "Zeta", "Gr&APwA3w-e")


def make_tree(duo):
    for name in TREE:
        duo.send(f'CREATE "{name}"')
    # neither server subscribes what CREATE makes (RFC 3501 6.3.3) and Dovecot does not
    # auto-subscribe INBOX here; set the subscriptions explicitly on both
    for name in TREE:
        duo.send(f'UNSUBSCRIBE "{name}"', compare=False)
    duo.send("SUBSCRIBE INBOX", compare=False)
    # Dovecot reports a never-opened INBOX as \\NonExistent; open it once on both
    duo.send("EXAMINE INBOX", compare=False)
    duo.send("UNSELECT", compare=False)
    duo.send("SUBSCRIBE foo/bar")
    duo.send("SUBSCRIBE a/b/c")
    duo.send("SUBSCRIBE gone")
    duo.send("CREATE gone2")
    duo.send("SUBSCRIBE gone2")
    duo.send("DELETE gone2")
    duo.send("UNSUBSCRIBE Zeta")


LIST_CASES = [
    'LIST "" ""', 'LIST "" "*"', 'LIST "" "%"', 'LIST "" "a/%"', 'LIST "a/" "%"',
    'LIST "" "a*"', 'LIST "" "*/c"', 'LIST "" "inbox"', 'LIST "" "foo/%"', 'LIST "" "nomatch*"',
    'LSUB "" "*"', 'LSUB "" "%"', 'LSUB "" "foo"',
    'LIST (SUBSCRIBED) "" "*"', 'LIST (SPECIAL-USE) "" "*"',
    'LIST "" "*" RETURN (CHILDREN)', 'LIST "" "%" RETURN (SUBSCRIBED)',
    'LIST "" "*" RETURN (SPECIAL-USE)',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
    'LIST "" ("INBOX" "foo*")', 'LIST "" "%" RETURN (STATUS (MESSAGES UIDNEXT))',
    'LIST () "" "%"', 'LIST "" "Gr*"',
]


@pytest.mark.parametrize("cmd", cases(LIST_CASES, {
}))
async def test_list(imap_server, dovecot, cmd):
    def body(duo):
        make_tree(duo)
        duo.send(cmd)
    await fresh(imap_server, dovecot, body)


# ---------------------------------------------------------------------------------------------
# Issue 7 section 5: conformance items 1, 3-8 (each on messages of its own)


def _mail(subject: str, date: str = "Mon, 3 Nov 2025 10:00:00 +0000", frm: str = "s@example.org",
          extra: str = "", body: bytes = b"body\r\n") -> bytes:
    return (f"From: {frm}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\n{extra}\r\n").encode() + body


def _append(duo, *raws, flags: str = ""):
    for raw in raws:
        duo.send("APPEND INBOX " + (f"({flags}) " if flags else "") + "{}", [raw])


# item 1: FLAGS / PERMANENTFLAGS before the FETCH that shows a new keyword
_FLAG_ORDER = Normaliser(drop_flag_updates=False, keep_order=True)


async def test_new_keyword_announced_by_own_store(imap_server, dovecot):
    def body(duo):
        _append(duo, _mail("one"), _mail("two"))
        duo.send("SELECT INBOX")
        duo.send("STORE 1 +FLAGS (Newkeyword)", norm=_FLAG_ORDER)
        duo.send("STORE 2 +FLAGS (Newkeyword)", norm=_FLAG_ORDER)   # known: no FLAGS
    await fresh(imap_server, dovecot, body)


async def test_new_keyword_announced_from_another_session(imap_server, dovecot):
    async def go():
        def blocking():
            duo = Duo(imap_port(imap_server), dovecot.ports["imap"])
            other = Duo(imap_port(imap_server), dovecot.ports["imap"])
            try:
                _append(duo, _mail("one"))
                duo.send("SELECT INBOX")
                other.send("SELECT INBOX")
                other.send("STORE 1 +FLAGS.SILENT (Otherkeyword)")
                # what an unsolicited FETCH carries besides FLAGS (UID?) is free: check
                # on each server that FLAGS and PERMANENTFLAGS name the keyword and come
                # before the FETCH
                for side in duo.send("NOOP", compare=False):
                    kinds = [("flags" if r.startswith(b"* FLAGS ") else
                              "perm" if r.startswith(b"* OK [PERMANENTFLAGS ") else
                              "fetch" if b" FETCH " in r else None) for r in side]
                    assert "fetch" in kinds and "flags" in kinds and "perm" in kinds, side
                    assert kinds.index("flags") < kinds.index("fetch"), side
                    assert kinds.index("perm") < kinds.index("fetch"), side
                    assert b"Otherkeyword".lower() in side[kinds.index("flags")].lower(), side
                return duo
            finally:
                duo.close()
                other.close()
        duo = await in_thread(blocking)
        duo.assert_same()
    await go()


# item 3: SENT* by the day written in the Date: header (these are near midnight on purpose)
SENT_KEYS = ["SENTON 3-Nov-2025", "SENTON 4-Nov-2025", "SENTON 5-Nov-2025",
             "SENTBEFORE 4-Nov-2025", "SENTSINCE 4-Nov-2025", "SENTBEFORE 5-Nov-2025",
             "SENTSINCE 5-Nov-2025"]


async def test_sent_dates_in_the_headers_zone(imap_server, dovecot):
    def body(duo):
        _append(duo, _mail("west", "Mon, 3 Nov 2025 23:30:00 -0500"),
                _mail("east", "Wed, 5 Nov 2025 01:00:00 +1400"),
                _mail("utc", "Tue, 4 Nov 2025 12:00:00 +0000"))
        duo.send("SELECT INBOX")
        for key in SENT_KEYS:
            duo.send("SEARCH " + key)
    await fresh(imap_server, dovecot, body)


# item 4: quoted-printable transport padding and "=" + spaces soft breaks
QP_PADDED = (b"Subject: qp\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/plain; charset=us-ascii\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"The quick brown   \r\nfox jumps over=  \r\n the lazy dog=3D\t\r\nend\r\n")


async def test_binary_qp_padding(imap_server, dovecot):
    def body(duo):
        _append(duo, QP_PADDED)
        duo.send("SELECT INBOX")
        duo.send("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
        duo.send("FETCH 1 (BINARY.PEEK[1]<10.20>)")
        duo.send("FETCH 1 (BINARY.PEEK[1]<40.100>)")
    await fresh(imap_server, dovecot, body)


# item 5: CREATE subscribes nothing, implicit parents included
async def test_create_does_not_subscribe(imap_server, dovecot):
    def body(duo):
        duo.send("SUBSCRIBE INBOX", compare=False)
        duo.send("EXAMINE INBOX", compare=False)
        duo.send("UNSELECT", compare=False)
        duo.send("CREATE top/mid/leaf")
        duo.send("CREATE plain")
        duo.send('LSUB "" "*"')
        duo.send('LIST (SUBSCRIBED) "" "*"')
        duo.send("SUBSCRIBE top/mid/leaf")
        duo.send('LSUB "" "*"')
    await fresh(imap_server, dovecot, body)


# item 6: i;ascii-casemap puts "[\]^_" after the letters
async def test_sort_ascii_casemap(imap_server, dovecot):
    def body(duo):
        # addresses use only atext (RFC 5322 3.2.3): "[", "]" and "\\" would
        # make them invalid, and the servers' parse of a broken address is not
        # what this compares; "^", "_" and "`" sort after letters in i;ascii-casemap
        for subj, frm in (("_under", "b@x.org"), ("abc", "_a@x.org"), ("^caret", "Zed@x.org"),
                          ("Zed", "a@x.org"), ("\\back", "^b@x.org"), ("]close", "`c@x.org")):
            _append(duo, _mail(subj, frm=frm))
        duo.send("SELECT INBOX")
        n = Normaliser(keep_order=True)
        for keys in ("(SUBJECT)", "(REVERSE SUBJECT)", "(FROM)", "(DISPLAYFROM)"):
            duo.send(f"SORT {keys} UTF-8 ALL", norm=n)
    await fresh(imap_server, dovecot, body)


# item 7: MODSEQ values differ between servers (one counter per account here), so each
# server's answer is checked against its own FETCH MODSEQ; the rule is the same for both
def _modseqs(resps) -> dict[int, int]:
    import re
    out = {}
    for r in resps:
        m = re.match(rb"\* (\d+) FETCH \(.*MODSEQ \((\d+)\)", r)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def _esearch_modseq(resps) -> int | None:
    import re
    for r in resps:
        m = re.match(rb"\* ESEARCH .*MODSEQ (\d+)", r)
        if m:
            return int(m.group(1))
    return None


async def test_esearch_minmax_modseq_and_first_condstore_command(imap_server, dovecot):
    def body(duo):
        _append(duo, _mail("a"), _mail("b"), _mail("c"))
        duo.send("SELECT INBOX")
        # the first CONDSTORE-enabling command with a mailbox selected: OK [HIGHESTMODSEQ]
        first = duo.send("FETCH 1:3 (MODSEQ)", compare=False)
        for side in first:
            assert any(r.startswith(b"* OK [HIGHESTMODSEQ ") for r in side), side
        duo.send("STORE 2 +FLAGS.SILENT (\\Flagged)", compare=False)
        for side in duo.send("FETCH 1:3 (MODSEQ)"):
            assert not any(b"HIGHESTMODSEQ" in r for r in side), side
        ms = [_modseqs(side) for side in duo.send("FETCH 1:3 (MODSEQ)")]
        for cmd, want in (("SEARCH RETURN (MIN MAX) MODSEQ 1", lambda m: max(m[1], m[3])),
                          ("SEARCH RETURN (MIN) MODSEQ 1", lambda m: m[1]),
                          ("SEARCH RETURN (MAX COUNT) MODSEQ 1", lambda m: max(m.values()))):
            got = duo.send(cmd)
            for side, m in zip(got, ms):
                assert _esearch_modseq(side) == want(m), (cmd, side, m)
    await fresh(imap_server, dovecot, body)


# item 8: THREAD=REFERENCES with a References loop (RFC 5256 2.2 step 1B)
async def test_thread_references_loop(imap_server, dovecot):
    def body(duo):
        _append(duo,
                _mail("first", extra="Message-ID: <a@x>\r\n"),
                _mail("second", "Mon, 3 Nov 2025 11:00:00 +0000",
                      extra="Message-ID: <b@x>\r\nReferences: <a@x> <c@x>\r\n"),
                _mail("third", "Mon, 3 Nov 2025 09:00:00 +0000",
                      extra="Message-ID: <c@x>\r\nReferences: <b@x>\r\n"))
        duo.send("SELECT INBOX")
        duo.send("THREAD REFERENCES UTF-8 ALL", norm=Normaliser(keep_order=True))
    await fresh(imap_server, dovecot, body)
