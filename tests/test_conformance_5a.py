"""Issue 7 section 5, conformance items 1, 3-8, each seen from the layer it
lives in (a raw IMAP socket for session behaviour, the query and MIME code
directly otherwise).

1. A keyword new to the selected mailbox is announced (``* FLAGS`` and
   ``* OK [PERMANENTFLAGS]``) before the FETCH that shows it (RFC 3501
   7.2.6, RFC 9051 7.3.5), whether this session or another set it.
3. SENTON/SENTBEFORE/SENTSINCE compare the day written in the Date: header,
   in its own zone (RFC 3501 6.4.4), not the UTC day.
4. BINARY of quoted-printable drops transport padding and honours "=" +
   spaces soft line breaks (RFC 2045 6.7 rules 3 and 5), sizes and
   partial ranges included.
5. CREATE subscribes nothing, implicit parents included (RFC 3501 6.3.3);
   a new account's default mailboxes are subscribed.
6. SORT strings collate by i;ascii-casemap: upper case, so "[\\]^_" sort
   after the letters (RFC 5256 2.1, RFC 4790 9.2).
7. ESEARCH MIN/MAX with MODSEQ give the highest modseq of the returned
   messages (RFC 4731 3.2, RFC 7162 3.1.5); the first CONDSTORE-enabling
   command with a mailbox selected sends OK [HIGHESTMODSEQ] (RFC 7162 3.1).
8. THREAD=REFERENCES step 1B breaks a message's old parent link even when
   the new one would close a loop (RFC 5256 2.2).
"""
import functools
import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailaccess import _speedups, ingest
from mailaccess.mime import index as mindex
from mailaccess.query import sort as qsort
from mailaccess.query.thread import thread_references
from mailaccess.store import Store, ops

from imap_helpers import RawText, run
from test_query_thread import format_thread


Raw = functools.partial(RawText, prefix=b"r")


def mail(subject="hello", date="Mon, 3 Nov 2025 10:00:00 +0000", body="body\r\n",
         extra="", frm="Sender <s@example.org>"):
    return (f"From: {frm}\r\nTo: alice@localhost\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\n{extra}\r\n{body}").encode()


def search(resp: bytes) -> list[int]:
    m = re.search(rb"^\* SEARCH([ \d]*)", resp, re.M)
    return [int(x) for x in m.group(1).split()]


# --- 1. FLAGS / PERMANENTFLAGS updates -----------------------------------------------------


async def test_keyword_set_by_another_session_is_announced_before_its_fetch(imap_server):
    def go():
        a, b = Raw(imap_server), Raw(imap_server)
        a.append(mail("one"))
        sel = a.cmd(b"SELECT INBOX")
        assert b"NewKeyword" not in sel
        b.cmd(b"SELECT INBOX")
        b.cmd(b"STORE 1 +FLAGS.SILENT (NewKeyword)")
        got = a.cmd(b"NOOP")
        flags = got.find(b"* FLAGS (")
        perm = got.find(b"* OK [PERMANENTFLAGS (")
        fetch = got.find(b"* 1 FETCH")
        assert 0 <= flags < fetch and 0 <= perm < fetch, got
        line = got[flags:got.index(b"\r\n", flags)]
        assert b"NewKeyword" in line and b"\\Seen" in line
        perm_line = got[perm:got.index(b"\r\n", perm)]
        assert b"NewKeyword" in perm_line and b"\\*" in perm_line
        # announced once: the next change to a known keyword sends no FLAGS
        b.cmd(b"STORE 1 -FLAGS.SILENT (NewKeyword)")
        again = a.cmd(b"NOOP")
        assert b"* 1 FETCH" in again and b"* FLAGS" not in again
        a.close()
        b.close()
    await run(go)


async def test_own_store_announces_new_keyword_before_fetch(imap_server):
    def go():
        a = Raw(imap_server)
        a.append(mail("one"))
        a.cmd(b"SELECT INBOX")
        got = a.cmd(b"STORE 1 +FLAGS (Brandnew)")
        assert got.index(b"* FLAGS (") < got.index(b"* 1 FETCH"), got
        assert b"Brandnew" in got[got.index(b"* FLAGS ("):got.index(b"* 1 FETCH")]
        assert b"* OK [PERMANENTFLAGS (" in got
        # a keyword already announced: no repetition
        got = a.cmd(b"STORE 1 FLAGS (Brandnew \\Seen)")
        assert b"* FLAGS" not in got and b"* 1 FETCH" in got
        a.close()
    await run(go)


async def test_examine_session_gets_flags_without_permanentflags(imap_server):
    def go():
        a, b = Raw(imap_server), Raw(imap_server)
        a.append(mail("one"))
        a.cmd(b"EXAMINE INBOX")
        b.cmd(b"SELECT INBOX")
        b.cmd(b"STORE 1 +FLAGS.SILENT (Readonlykw)")
        got = a.cmd(b"NOOP")
        assert got.index(b"* FLAGS (") < got.index(b"* 1 FETCH") and b"Readonlykw" in got
        assert b"PERMANENTFLAGS" not in got
        a.close()
        b.close()
    await run(go)


async def test_appended_keyword_is_announced_with_exists(imap_server):
    def go():
        a, b = Raw(imap_server), Raw(imap_server)
        a.cmd(b"SELECT INBOX")
        b.append(mail("kw"), b"Appendkw")
        got = a.cmd(b"NOOP")
        assert b"* 1 EXISTS" in got and b"Appendkw" in got[got.index(b"* FLAGS ("):]
        a.close()
        b.close()
    await run(go)


# --- 3. SENT* by the Date: header's own day ------------------------------------------------


async def test_sent_dates_use_the_headers_own_zone(imap_server):
    def go():
        a = Raw(imap_server)
        # 3 Nov late evening at -0500 is 4 Nov in UTC
        a.append(mail("west", "Mon, 3 Nov 2025 23:30:00 -0500"))
        # 5 Nov early morning at +1400 is 4 Nov in UTC
        a.append(mail("east", "Wed, 5 Nov 2025 01:00:00 +1400"))
        a.cmd(b"SELECT INBOX")
        assert search(a.cmd(b"SEARCH SENTON 3-Nov-2025")) == [1]
        assert search(a.cmd(b"SEARCH SENTON 4-Nov-2025")) == []
        assert search(a.cmd(b"SEARCH SENTON 5-Nov-2025")) == [2]
        assert search(a.cmd(b"SEARCH SENTBEFORE 4-Nov-2025")) == [1]
        assert search(a.cmd(b"SEARCH SENTSINCE 4-Nov-2025")) == [2]
        assert search(a.cmd(b"SEARCH SENTSINCE 5-Nov-2025")) == [2]
        assert search(a.cmd(b"SEARCH SENTBEFORE 5-Nov-2025")) == [1]
        a.close()
    await run(go)


def test_sent_query_wall_clock_is_what_imap_asks_for():
    import datetime

    from mailaccess.proto.imap import events as ev
    from mailaccess.query import model as q
    from mailaccess.server.imap_search import to_query
    d = datetime.date(2025, 11, 3)
    node = to_query(ev.Date("sent", "on", d), None, 1)
    assert isinstance(node, q.Sent) and node.wall_clock
    node = to_query(ev.Date("internal", "on", d), None, 1)
    assert isinstance(node, q.Received)


# --- 4. quoted-printable BINARY -------------------------------------------------------------

# 3 lines; transport padding after "brown", "=" + spaces soft break, tab padding
QP_BODY = (b"The quick brown   \r\n"
           b"fox jumps over=  \r\n"
           b" the lazy dog=3D\t\r\n"
           b"end")
QP_DECODED = b"The quick brown\r\nfox jumps over the lazy dog=\r\nend"
QP_MSG = (b"Subject: qp\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=us-ascii\r\n"
          b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + QP_BODY)


@pytest.mark.parametrize("impl", ["py", "c"])
def test_qp_decoding_rules(impl):
    m = _speedups.load_py("msgindex") if impl == "py" else _speedups.load_c("msgindex")
    if m is None:
        pytest.skip("msgindex_c not built")
    assert m.decode_qp(QP_BODY) == QP_DECODED
    assert m.decode_qp(b"soft=\t \nbreak") == b"softbreak"            # rule 5 after rule 3
    assert m.decode_qp(b"pad \t\nx") == b"pad\nx"                     # rule 3, bare LF
    assert m.decode_qp(b"last line  ") == b"last line"                # a final line too
    assert m.decode_qp(b"=20\r\n") == b" \r\n"                         # encoded space stays
    assert m.decode_qp(b"a=3D=\r\nb") == b"a=b"


def test_decoded_part_and_size():
    mi = mindex.index_message(QP_MSG)
    assert mindex.decoded_part(QP_MSG, mi, "1") == QP_DECODED


async def test_binary_fetch_of_qp(imap_server):
    def go():
        a = Raw(imap_server)
        a.append(QP_MSG)
        a.cmd(b"SELECT INBOX")
        got = a.cmd(b"FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.PEEK[1]<10.20>)")
        assert b"BINARY.SIZE[1] %d" % len(QP_DECODED) in got
        assert QP_DECODED in got
        part = QP_DECODED[10:30]
        assert b"BINARY[1]<10> {%d}\r\n" % len(part) + part in got \
            or b"BINARY[1]<10> ~{%d}\r\n" % len(part) + part in got, got
        a.close()
    await run(go)


# --- 5. CREATE does not subscribe ----------------------------------------------------------


def lsub_names(resp: bytes) -> set[bytes]:
    return {line.rsplit(b" ", 1)[1] for line in resp.split(b"\r\n")
            if line.startswith(b"* LSUB ")}


async def test_create_subscribes_nothing(imap_server):
    def go():
        a = Raw(imap_server)
        before = lsub_names(a.cmd(b'LSUB "" "*"'))
        # a new account: its default (special-use) mailboxes are subscribed
        assert {b"INBOX", b"Sent", b"Trash", b"Drafts", b"Junk", b"Archive"} <= before
        assert a.cmd(b"CREATE top/mid/leaf").split(b"\r\n")[-2].split()[1] == b"OK"
        assert a.cmd(b"CREATE plain").split(b"\r\n")[-2].split()[1] == b"OK"
        assert lsub_names(a.cmd(b'LSUB "" "*"')) == before
        listed = a.cmd(b'LIST (SUBSCRIBED) "" "*"')
        assert b"top" not in listed and b"plain" not in listed
        a.cmd(b"SUBSCRIBE top/mid/leaf")
        assert lsub_names(a.cmd(b'LSUB "" "*"')) == before | {b"top/mid/leaf"}
        a.close()
    await run(go)


def test_store_create_mailbox_defaults(tmp_path):
    store = Store(tmp_path / "data")
    store.start()
    try:
        acc = store.write_sync(ops.create_account, "a", "h")
        leaf = store.write_sync(ops.create_mailbox_path, acc, ["x", "y"])
        with store.view() as v:
            assert all(m.subscribed for m in v.mailboxes(acc) if m.role)
            assert not v.mailbox(acc, leaf).subscribed
            assert not v.mailbox_by_path(acc, ["x"]).subscribed
    finally:
        store.close()


# --- 6. i;ascii-casemap ----------------------------------------------------------------------


def test_collate_upper_cases():
    words = ["_under", "abc", "^caret", "Zed", "\\back", "]close", "[open x"]
    assert sorted(words, key=qsort.collate) == [
        "abc", "Zed", "[open x", "\\back", "]close", "^caret", "_under"]
    assert qsort.collate("abc") == qsort.collate("ABC")
    assert qsort.collate("émile") == qsort.collate("ÉMILE")
    # ASCII and non-ASCII strings order consistently (both upper-case ASCII)
    assert sorted(["_x", "éa", "eb"], key=qsort.collate)[-1] == "_x"


async def test_sort_subject_and_from_by_ascii_casemap(imap_server):
    def go():
        a = Raw(imap_server)
        for subj, frm in (("_under", "b@x.org"), ("abc", "_a@x.org"),
                          ("^caret", "Z@x.org"), ("Zed", "a@x.org")):
            a.append(mail(subj, frm=frm))
        a.cmd(b"SELECT INBOX")
        got = a.cmd(b"SORT (SUBJECT) UTF-8 ALL")
        assert b"* SORT 2 4 3 1\r\n" in got, got
        got = a.cmd(b"SORT (FROM) UTF-8 ALL")
        assert b"* SORT 4 1 3 2\r\n" in got, got
        a.close()
    await run(go)


# --- 7. ESEARCH MODSEQ and the first CONDSTORE-enabling command --------------------------------


def modseqs(resp: bytes) -> dict[int, int]:
    return {int(s): int(m) for s, m in
            re.findall(rb"^\* (\d+) FETCH \(.*?MODSEQ \((\d+)\)", resp, re.M)}


async def test_esearch_min_max_modseq_of_returned_messages(imap_server):
    def go():
        a = Raw(imap_server)
        for i in range(3):
            a.append(mail(f"m{i}"))
        a.cmd(b"SELECT INBOX (CONDSTORE)")
        a.cmd(b"STORE 2 +FLAGS.SILENT (\\Flagged)")    # 2 now has the highest modseq
        ms = modseqs(a.cmd(b"FETCH 1:3 (MODSEQ)"))
        assert ms[2] > ms[1] and ms[2] > ms[3]
        got = a.cmd(b"SEARCH RETURN (MIN MAX) MODSEQ 1")
        assert b"MIN 1 MAX 3 MODSEQ %d" % max(ms[1], ms[3]) in got, got
        got = a.cmd(b"SEARCH RETURN (MIN) MODSEQ 1")
        assert b"MIN 1 MODSEQ %d" % ms[1] in got, got
        got = a.cmd(b"SEARCH RETURN (MAX COUNT) MODSEQ 1")   # COUNT: all matches count
        assert b"MODSEQ %d" % ms[2] in got, got
        got = a.cmd(b"SEARCH RETURN (MIN MAX ALL) MODSEQ 1")
        assert b"MODSEQ %d" % ms[2] in got, got
        a.close()
    await run(go)


@pytest.mark.parametrize("enabler", [b"FETCH 1 (MODSEQ)", b"SEARCH MODSEQ 1",
                                     b"STATUS Archive (HIGHESTMODSEQ)",
                                     b"STORE 1 +FLAGS.SILENT (\\Seen)"])
async def test_first_condstore_command_sends_highestmodseq(imap_server, enabler):
    def go():
        a = Raw(imap_server)
        a.append(mail("m"))
        sel = a.cmd(b"SELECT INBOX")
        hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", sel).group(1))
        cmd = enabler
        if enabler.startswith(b"STORE"):
            cmd = b"STORE 1 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Seen)" % hms
        got = a.cmd(cmd)
        assert b"* OK [HIGHESTMODSEQ %d]" % hms in got, got
        assert got.index(b"* OK [HIGHESTMODSEQ") < got.rindex(b"r4 OK")
        # only the first one
        assert b"* OK [HIGHESTMODSEQ" not in a.cmd(b"FETCH 1 (MODSEQ)")
        a.close()
    await run(go)


async def test_condstore_enabled_before_select_sends_no_extra(imap_server):
    def go():
        a = Raw(imap_server)
        a.append(mail("m"))
        a.cmd(b"ENABLE CONDSTORE")
        sel = a.cmd(b"SELECT INBOX")
        assert sel.count(b"HIGHESTMODSEQ") == 1
        assert b"HIGHESTMODSEQ" not in a.cmd(b"FETCH 1 (MODSEQ)")
        a.close()
    await run(go)


# --- 8. THREAD=REFERENCES with a References loop -------------------------------------------


def _tmsg(subject, hour, mid, refs=None):
    h = [f"Subject: {subject}", f"Date: Mon, 3 Nov 2025 {hour} +0000", f"Message-ID: {mid}"]
    if refs:
        h.append(f"References: {refs}")
    return ("\r\n".join(h) + "\r\n\r\nbody\r\n").encode()


def test_references_loop_breaks_old_parent(tmp_path):
    store = Store(tmp_path / "data")
    store.start()
    try:
        acc = store.write_sync(ops.create_account, "a", "h")
        with store.view() as v:
            inbox = v.mailbox_by_role(acc, "inbox").id
        msgs = [
            _tmsg("first", "10:00", "<a@x>"),                   # 1
            _tmsg("second", "11:00", "<b@x>", "<a@x> <c@x>"),   # 2: a -> c -> b
            _tmsg("third", "09:00", "<c@x>", "<b@x>"),          # 3: b -> c is a loop
        ]
        for i, raw in enumerate(msgs):
            store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, 1000 + i))
        with store.view() as v:
            got = format_thread(thread_references(v, acc, v.uids(acc, inbox)))
        # step 1B for 3: its parent a (from 2's References) is broken first,
        # and b -> c is not made (b descends from c): 3 is a root over 2
        assert got == b"(3 2)(1)"
    finally:
        store.close()


_IDS = ["<a@x>", "<b@x>", "<c@x>", "<d@x>", "<e@x>"]


@pytest.fixture(scope="module")
def thread_store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("thr") / "data")
    store.start()
    acc = store.write_sync(ops.create_account, "t", "h")
    yield store, acc
    store.close()


_counter = iter(range(10**6))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_IDS + [None]),
                          st.lists(st.sampled_from(_IDS), max_size=4),
                          st.integers(0, 23)), min_size=1, max_size=6))
def test_references_threads_every_message_once(thread_store, msgs):
    # loops, self-references and duplicates included: every message appears
    # exactly once, and no dummy is left without children
    store, acc = thread_store
    mbx = store.write_sync(ops.create_mailbox, acc, 0, f"t{next(_counter)}")
    for i, (mid, refs, hour) in enumerate(msgs):
        raw = _tmsg(f"s{i}", f"{hour:02d}:00", mid or f"<u{i}@y>", " ".join(refs) or None)
        store.write_sync(ops.append, acc, [mbx], ingest.prepare(raw, 1000 + i))
    with store.view() as v:
        cands = v.uids(acc, mbx)
        threads = thread_references(v, acc, cands)
    seen = []
    stack = list(threads)
    while stack:
        t = stack.pop()
        if t.key is None:
            assert t.children
        else:
            seen.append(t.key)
        stack.extend(t.children)
    assert sorted(seen) == sorted(k for k, _ in cands)
