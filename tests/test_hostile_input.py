"""Input built to make the server's text processing super-linear (issue 7 section 1).

Each worst case found in the audit of the regexes applied to client or message
data is here as behaviour: the call returns, with the right answer, on an input
of a bounded size that took minutes (or hours) with the backtracking regexes
these functions used before.  No timing thresholds: a regression shows as a
test that does not finish.  Then the same cases through a real server over a
raw socket, and the bounded worker pool CPU-heavy commands run in.
"""
import email
import email.policy
import functools
import re
import threading

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import twin_params
from imap_helpers import Raw, run
from mailaccess import storeio
from mailaccess.mime import index as mindex
from mailaccess.mime.compose import html_as_text
from mailaccess.outbound import autoreply
from mailaccess.proto.imap.pattern import compile_pattern
from mailaccess.query.thread import is_reply_or_forward
from mailaccess.server import eas_settings

N = 40_000   # repetitions: 120-240 KB inputs, like the reported attacks


# --------------------------------------------------------------- base subject

@pytest.mark.parametrize("subject, base", [
    # each took seconds at N = 4,000 and grew with the square of N
    ("(fwd)" * N + "x", "(fwd)" * N + "x"),         # trailer regex from every "("
    ("[x]" * N + "y", "y"),                         # blob run re-scanned per blob
    ("[a] " * N + "re x", "re x"),
    ("[fwd:" * N + "x" + "]" * N, "x"),             # nested subj-fwd: re-sliced
    ("Re: " * N + "hello" + " (fwd)" * N, "hello"),
    ("[" * N + "]", "[" * N + "]"),
])
def test_base_subject_of_hostile_subjects(subject, base):
    assert mindex.base_subject(subject) == base


def test_base_subject_on_normal_subjects_is_unchanged():
    for subject, base in [
        ("Re: [list] Fwd: hello (fwd)", "hello"),
        ("[fwd: Re: meeting]", "meeting"),
        ("[PATCH 1/2] fix", "fix"),
        ("[PATCH] ", "[PATCH]"),
        ("RE [x]: re: subj", "subj"),
        ("  spaced \t  out  ", "spaced out"),
        ("fw:", ""),
        ("Re:Re:Re:", ""),
    ]:
        assert mindex.base_subject(subject) == base, subject


def test_reply_or_forward_of_hostile_subjects():
    assert is_reply_or_forward("[x]" * N + "re: y")
    assert not is_reply_or_forward("[x]" * N + "y")
    assert not is_reply_or_forward("[a] " * N + "re x")
    assert is_reply_or_forward("[a] " * N + "fwd [b]: x")


# ---------------------------------------------------------------- html_to_text

@pytest.mark.parametrize("impl", twin_params("msgindex"))
@pytest.mark.parametrize("text, out", [
    # an opening without its closing part made re scan to the end from each
    ("<script" * N, "<script" * N),
    ("<STYLE " * N, "<STYLE " * N),
    ("<!--" * N, "<!--" * N),
    ("<br" * N, "<br" * N),
    ("<" * (4 * N), "<" * (4 * N)),
    ("<script" * N + "</script >after", " after"),
    ("<!--" * N + "-->x", " x"),
    ("<p" * N + ">x", "\nx"),
    ("<x" * N + ">y", "y"),
    ("<title>t</title><script>s</script>" * 1000 + "<p>body", " " * 2000 + "\nbody"),
    # re's IGNORECASE rules, kept: the back reference compares simple lowercase
    ("<scr\u0130pt>x</script>y", " y"),
    ("<scr\u0131pt>x</script>y", "xy"),
    ("<script>x</scr\u0130pt>y<TITLE>t</t\u0130tle>z", " y z"),
    ("<scr\u0131pt>x</SCR\u0131PT>y", " y"),
    ("<\u017ftyle>x</style>y<\u017ftyle>z</\u017fTYLE\u3000>w", " w"),
])
def test_html_to_text_of_hostile_html(impl, text, out):
    assert impl.html_to_text(text) == out


# ---------------------------------------------- same answers as the regexes

_BLOB = r"\[[\x01-\x5a\x5c\x5e-\x7f]*\] *"
_OLD_LEADER = re.compile(r"(?:%s)*(?:re|fwd?) *(?:%s)?:" % (_BLOB, _BLOB), re.I)
_OLD_BLOB = re.compile(_BLOB)
_OLD_TRAILER = re.compile(r"(?: |\(fwd\))+$", re.I)


def _old_base_subject(subject):
    """The regex version base_subject replaced: the oracle on short input."""
    s = " ".join(subject.split())
    while True:
        s = _OLD_TRAILER.sub("", s)
        while True:
            s = s.lstrip(" ")
            m = _OLD_LEADER.match(s)
            if m:
                s = s[m.end():]
                continue
            m = _OLD_BLOB.match(s)
            if m and s[m.end():]:
                s = s[m.end():]
                continue
            break
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            continue
        return s


_SUBJECT_BITS = st.sampled_from(["[", "]", " ", "\t", "re", "RE", "fw", "Fwd", ":", "(fwd)",
                                 "(FWD)", "[fwd:", "x", "d", "(", ")", "\u0130", "\u017f",
                                 "\x00", "\u00e9"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(_SUBJECT_BITS, max_size=14).map("".join))
def test_base_subject_answers_like_the_regexes(subject):
    assert mindex.base_subject(subject) == _old_base_subject(subject)


_OLD_DROP = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_OLD_BREAK = re.compile(
    r"</?(?:br|p|div|tr|li|ul|ol|h[1-6]|table|hr|blockquote|pre|td|th)\b[^>]*>", re.I)
_OLD_TAG = re.compile(r"<[^>]*>")
_HTML_BITS = st.sampled_from(["<", ">", "/", "</", "script", "SCRIPT", "scr\u0130pt",
                              "scr\u0131pt", "\u017ftyle", "style", "head", "title", "<!--",
                              "-->", "-", " ", "\n", "\u3000", "x", "br", "p", "pre", "h1",
                              "&amp;", "_", "1"])


@pytest.mark.parametrize("impl", twin_params("msgindex"))
@settings(max_examples=1500, deadline=None)
@given(text=st.lists(_HTML_BITS, max_size=16).map("".join))
def test_html_to_text_answers_like_the_regexes(impl, text):
    import html
    want = text
    if "<" in want:
        want = _OLD_TAG.sub("", _OLD_BREAK.sub("\n", _OLD_DROP.sub(" ", want)))
    if "&" in want:
        want = html.unescape(want)
    assert impl.html_to_text(text) == want


# ------------------------------------------------- a vacation reply's HTML

# The vacation response's htmlBody (JMAP VacationResponse/set, ActiveSync Oof
# Set; at most 256 KB) made text for the automatic reply and the Oof Get:
# both mime.compose.html_as_text, the message indexer's reading.
_TAG_BITS = st.sampled_from(["<", ">", "<br>", "<BR />", "</p >", "</div>", "<br", "/", "x",
                             " ", "\n", "&amp;", "&lt;", "\u00e9", "<style>", "</style>"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_TAG_BITS, max_size=16).map("".join))
def test_vacation_html_is_read_as_the_indexer_reads_it(body):
    from mailaccess import _speedups
    shown = _speedups.load("msgindex").html_to_text(body)
    want = "\n".join(ln.strip() for ln in shown.splitlines()).strip("\n")
    assert html_as_text(body) == want
    assert eas_settings._as_text({"textBody": None, "htmlBody": body}) == want


def test_the_automatic_reply_and_oof_get_read_html_alike():
    """Entities decoded, block tags made line breaks, a style's rules
    dropped, in the automatic reply as in the Oof Get (the reply kept
    "&amp;" and ran the lines together before)."""
    body = "<style>p {color: red}</style><p>Away &amp; back</p><div>on Monday<br>Alice</div>"
    assert _reply_text(body) == _oof_text(body) == "Away & back\n\non Monday\nAlice"


N_VACATION = eas_settings.MAX_TEXT    # "<" characters: the most a vacation response holds


def _reply_text(body):
    """The text the automatic reply to a message carries for an htmlBody."""
    orig = (b"From: bob@example.com\r\nTo: alice@localhost\r\nSubject: q\r\n"
            b"Message-ID: <q1@example.com>\r\n\r\nhi\r\n")
    vac = {"isEnabled": True, "subject": None, "textBody": None, "htmlBody": body}
    raw = autoreply.build_reply(orig, vac, "alice@localhost", "bob@example.com",
                                1_700_000_000, "mx")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n")


def _oof_text(body):
    """The reply text an ActiveSync Oof Get answers for an htmlBody."""
    rec = dict(eas_settings.DEFAULT, isEnabled=True, htmlBody=body)
    get = eas_settings.oof_get(rec, "Text").find("Settings:Get")
    return get.findall("Settings:OofMessage")[0].child_text("Settings:ReplyMessage")


@pytest.mark.parametrize("body, text", [
    # a "<" with no ">" after it made re scan to the end of the text from each
    ("<" * N_VACATION, "<" * N_VACATION),
    ("<a" * (N_VACATION // 2), "<a" * (N_VACATION // 2)),
    ("<p>x</p>" + "<br" * (N_VACATION // 3), "x\n" + "<br" * (N_VACATION // 3)),
    ("y>" + "<b " * (N_VACATION // 3) + ">z", "y>z"),
])
def test_vacation_html_with_hostile_tags_is_answered(body, text):
    assert _oof_text(body) == text
    assert _reply_text(body) == text


def test_html_as_text_of_message_sized_html():
    # SmartReply reads the original message's HTML with it too: megabytes
    n = 2_000_000
    assert html_as_text("<" * n) == "<" * n
    assert html_as_text("<p>x</p>" + "<a" * n) == "x\n" + "<a" * n
    assert html_as_text("<a>" * n + "<") == "<"


# ------------------------------------------------------------- LIST patterns

def _regex_oracle(reference, pattern):
    """The regex LIST used before: right on short names, exponential on long."""
    full = reference + pattern if not pattern.startswith("/") else pattern
    rx = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
    if full[:5].upper() == "INBOX":
        rx = "(?i:INBOX)" + rx[len("".join(re.escape(c) for c in full[:5])):]
    return re.compile(rx + r"\Z", re.S)


@settings(max_examples=400, deadline=None)
@given(st.text("ab/*%.", max_size=3), st.text("ab/*%INBOXinbx.", max_size=8),
       st.text("ab/INBOXinbx.", max_size=10))
def test_pattern_matches_like_the_regex_it_replaces(reference, pattern, name):
    expect = bool(_regex_oracle(reference, pattern).match(name))
    assert compile_pattern(reference, pattern, "/").matches(name) == expect


def test_pattern_rules():
    m = lambda p, name, ref="": compile_pattern(ref, p, "/").matches(name)
    assert m("*", "a/b/c") and m("%", "abc") and not m("%", "a/b")
    assert m("a/%", "a/b") and not m("a/%", "a/b/c") and m("a/*", "a/b/c")
    assert m("inbox", "INBOX") and m("InBoX/%", "INBOX/x") and not m("inbox/x", "INBOX/X")
    assert not m("Archive", "archive")
    assert m("%", "b", ref="a/") is False and m("%", "a/b", ref="a/")
    assert m("/x", "/x", ref="a/")       # a pattern starting with the delimiter ignores it
    assert m("", "") and not m("", "a")


def test_pattern_with_many_wildcards_on_a_long_name():
    # 108 s through the regex with six stars; each more star multiplies it
    name = "a" * 200
    assert not compile_pattern("", "*a" * 12 + "*b", "/").matches(name)
    assert compile_pattern("", "*a" * 12 + "*", "/").matches(name)
    assert not compile_pattern("", "%a" * 12 + "%b", "/").matches(name)
    assert compile_pattern("", "%a" * 200 + "%", "/").matches(name)
    long = "a/" * 2000
    assert not compile_pattern("", "*a/" * 300 + "%b", "/").matches(long)


# ------------------------------------------------------------- over the wire

Raw = functools.partial(Raw, prefix=b"h", timeout=60)


def _message(subject: bytes, body: bytes = b"hi\r\n", ctype: bytes = b"text/plain") -> bytes:
    return (b"From: a@example.org\r\nSubject: " + subject + b"\r\nContent-Type: " + ctype
            + b"\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n\r\n" + body)


async def test_hostile_subjects_and_html_through_append_sort_thread(imap_server):
    def go():
        r, bystander = Raw(imap_server), Raw(imap_server)
        assert r.append(_message(b"b"))[-1].startswith(b"h2 OK")
        assert r.append(_message(b"(fwd)" * N + b"x"))[-1].startswith(b"h3 OK")
        assert r.append(_message(b"[fwd:" * N + b"a" + b"]" * N))[-1] \
            .startswith(b"h4 OK")
        assert r.append(_message(b"[x]" * N + b"c"))[-1].startswith(b"h5 OK")
        assert r.append(_message(b"html", b"<script" * N + b"</p>words\r\n",
                                           b"text/html"))[-1].startswith(b"h6 OK")
        assert bystander.cmd(b"NOOP")[-1].startswith(b"h2 OK")
        r.cmd(b"SELECT INBOX")
        # base subjects: b, (fwd)...x, a, c, html
        out = r.cmd(b"SORT (SUBJECT) UTF-8 ALL")
        assert b"* SORT 2 3 1 4 5\r\n" in out
        out = r.cmd(b"THREAD ORDEREDSUBJECT UTF-8 ALL")    # threads in Date order
        assert b"* THREAD (1)(2)(3)(4)(5)\r\n" in out
        out = r.cmd(b"THREAD REFERENCES UTF-8 ALL")
        assert out[-1].startswith(b"h%d OK" % r.n)
        out = r.cmd(b"SEARCH BODY words")
        assert b"* SEARCH 5\r\n" in out
        assert bystander.cmd(b"NOOP")[-1].startswith(b"h3 OK")
        r.close()
        bystander.close()
    await run(go)


async def test_hostile_list_pattern_over_the_wire(imap_server):
    def go():
        r = Raw(imap_server)
        assert r.cmd(b"CREATE " + b"a" * 200)[-1].startswith(b"h2 OK")
        out = r.cmd(b'LIST "" "' + b"*a" * 12 + b'*b"')
        assert out == [b"h3 OK LIST completed\r\n"]
        out = r.cmd(b'LIST "" "' + b"*a" * 12 + b'*"')
        assert out[0] == b'* LIST (\\HasNoChildren) "/" ' + b"a" * 200 + b"\r\n"
        r.cmd(b"SUBSCRIBE " + b"a" * 200)
        out = r.cmd(b'LSUB "" "' + b"%a" * 12 + b'%b"')
        assert out[-1].startswith(b"h6 OK") and len(out) == 1
        out = r.cmd(b'LIST (SUBSCRIBED) "" "' + b"%a" * 12 + b'%"')
        assert b"a" * 200 in out[0] and out[-1].startswith(b"h7 OK")
        r.close()
    await run(go)


async def test_hostile_catenate_url_over_the_wire(imap_server):
    def go():
        r = Raw(imap_server)
        url = b"imap://" + b"a" * 60_000          # no "/": the host ate it all
        out = r.cmd(b"APPEND INBOX CATENATE (URL {%d+}\r\n%s)" % (len(url), url))
        assert b"h2 NO [BADURL" in out[-1]
        assert r.cmd(b"NOOP")[-1].startswith(b"h3 OK")
        r.close()
    await run(go)


# ---------------------------------------------------------- the worker pool

async def test_cpu_work_runs_in_a_bounded_pool_while_the_loop_runs():
    running, peak = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def work(i):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        # blocks until the event loop sets it: the loop runs meanwhile
        assert release.wait(30)
        with lock:
            running -= 1
        return i

    results = []

    async def one(i):
        results.append(await storeio.cpu(work, i))

    async with trio.open_nursery() as n:
        for i in range(3 * storeio.CPU_THREADS):
            n.start_soon(one, i)
        while True:     # the loop keeps running while the pool is full
            with lock:
                if running == storeio.CPU_THREADS:
                    break
            await trio.sleep(0.01)
        assert storeio.cpu_limiter().borrowed_tokens == storeio.CPU_THREADS
        release.set()
    assert sorted(results) == list(range(3 * storeio.CPU_THREADS))
    assert peak == storeio.CPU_THREADS
