"""The answer to a bulk STORE (more than STORE_REPLY_INLINE messages): it is
formatted from the records the writer rewrote (``KeywordsResult.records``,
``send_fetch(records=...)``) instead of reading them back from the store,
and says byte for byte what the streaming path reading the store says:
\\Recent messages, custom keywords in their first spelling, a keyword new to
the session (``* FLAGS`` first), another session's keyword the session was
not told yet, messages already \\Seen (read, not rewritten), messages
expunged by another session but not announced yet (no EXPUNGE during
STORE), an answer mixing \\Recent messages and others, CONDSTORE's MODSEQ, UNCHANGEDSINCE conflicts (MODIFIED), .SILENT,
UID and sequence forms.  The other session's catch-up still sees every
change.  Two accounts of one server run the same conversation, one with the
records and one without; their modseqs and UIDs are the same."""
from __future__ import annotations

import functools
import re

from imap_helpers import imap_port, msg, Raw, run
from mailaccess.server import imap_session

Raw = functools.partial(Raw, timeout=30, whole=True, logout="wait")

CONVERSATION = [
    "STORE 1:* +FLAGS (\\Flagged)",
    "UID STORE 2:9 +FLAGS (\\Seen \\Answered)",
    "STORE 1:10 +FLAGS ($MyFlag)",          # new to the session: * FLAGS first
    "STORE 3:12 +FLAGS ($myflag)",          # shown as first spelled; 1-2 stay, 11-12 change
    "STORE 1:* +FLAGS (\\Seen)",            # 2-9 already \Seen: read, not rewritten
    "OTHER STORE 2 +FLAGS (OtherOne)",      # another session's keyword, not told to us yet
    "STORE 1:12 +FLAGS (\\Draft)",
    "OTHER NOOP",
    "OTHER STORE 5 +FLAGS (\\Deleted)",
    "OTHER EXPUNGE",                        # we are not told yet ...
    "FETCH 1 (FLAGS)",                      # ... not even by FETCH: 5 is gone, unannounced
    "STORE 1:* -FLAGS (\\Draft)",           # skips the gone message, numbers unchanged
    "UID STORE 1:* FLAGS.SILENT (\\Seen $MyFlag)",
    "OTHER APPEND",                         # new mail the other session claims as \\Recent
    "OTHER NOOP",
    "NOOP",
    "STORE 1:* -FLAGS (\\Flagged)",          # \\Recent here and not, in one answer
    "ENABLE CONDSTORE",
    "STORE 1:* +FLAGS (\\Answered)",
    "OTHER STORE 3 +FLAGS (\\Flagged)",
    "NOOP",
    "UID STORE 1:* (UNCHANGEDSINCE 40) -FLAGS (\\Answered)",   # conflicts on 3
    "STORE 2:11 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",          # all conflict
    "UID STORE 1:* (UNCHANGEDSINCE 99) FLAGS ($MyFlag)",
    "OTHER NOOP",
]


def converse(port: int, user: str) -> list[bytes]:
    a = Raw(port, user=user)
    other = Raw(port, user=user)
    for i in range(12):
        a.cmd("APPEND INBOX", msg(f"m{i}"))
    out = []
    a.cmd("SELECT INBOX")               # every message is \Recent in this session
    other.cmd("SELECT INBOX")
    for line in CONVERSATION:
        if line == "OTHER APPEND":
            # (alice's and bob's INBOX may be created in different seconds:
            # the UIDVALIDITY in APPENDUID is theirs, not the answer's)
            out.append(b"OTHER: " + re.sub(rb"APPENDUID \d+ ", b"APPENDUID - ",
                                           b"".join(other.cmd("APPEND INBOX", msg("late")))))
            continue
        if line.startswith("OTHER "):
            out.append(b"OTHER: " + b"".join(other.cmd(line[6:])))
            continue
        out.append(b"".join(a.cmd(line)))
    a.close()
    other.close()
    return out


async def test_bulk_store_reply_from_the_writer_says_what_the_store_says(imap_server,
                                                                        monkeypatch):
    port = imap_port(imap_server)
    used = []
    real = imap_session.ImapSession.send_fetch

    async def counting(self, uids, items, *, uid_cmd, records=None, **kw):
        used.append(records is not None)
        return await real(self, uids, items, uid_cmd=uid_cmd, records=records, **kw)

    monkeypatch.setattr(imap_session, "STORE_REPLY_INLINE", 0)
    monkeypatch.setattr(imap_session.ImapSession, "send_fetch", counting)
    from_writer = await run(converse, port, "alice")
    assert used.count(True) >= 8
    used.clear()
    monkeypatch.setattr(imap_session.ImapSession, "_still", lambda self, mbx, ms: False)
    from_store = await run(converse, port, "bob")
    assert not any(used)
    assert from_writer == from_store
    joined = b"".join(from_writer)
    assert b"\\Recent" in joined and b"$MyFlag" in joined and b"$myflag" not in joined
    assert b"OtherOne" in joined and b"MODSEQ" in joined and b"MODIFIED" in joined
    # the gone message: no EXPUNGE during the STOREs, announced by NOOP
    i = CONVERSATION.index("STORE 1:* -FLAGS (\\Draft)")
    assert b"EXPUNGE" not in from_writer[i] and from_writer[i].count(b" FETCH ") == 11
    assert b"* 5 EXPUNGE" in from_writer[CONVERSATION.index("NOOP")]
    mixed = from_writer[CONVERSATION.index("STORE 1:* -FLAGS (\\Flagged)")]
    assert mixed.count(b" FETCH ") == 12 and mixed.count(b"\\Recent") == 11
    # the other session was told of the changes by its catch-up
    assert from_writer[-1].count(b" FETCH ") >= 10


def _chunked_only(monkeypatch):
    """Every bulk STORE through _store_chunked, also those _store_streamed takes."""
    async def chunked(self, cmd, live, eids, kws, kw, items):
        return await self._store_chunked(cmd, live, eids, kws, kw, items)

    monkeypatch.setattr(imap_session.ImapSession, "_store_streamed", chunked)


async def _users(imap_server, *users):
    import trio

    from mailaccess import accounts

    for user in users:
        await trio.to_thread.run_sync(accounts.add_user, imap_server.store, user, "pw")


async def test_a_store_written_in_chunks_says_what_the_store_says(imap_server, monkeypatch):
    """A STORE on many messages is written in chunks, each answered once
    durable (ImapSession._store_chunked).  Tiny chunks here: the same
    conversation answered from the writer's records and from the store is
    the same, byte for byte; each chunk is its own send_fetch."""
    port = imap_port(imap_server)
    await _users(imap_server, "carol", "dave")
    calls = []
    real = imap_session.ImapSession.send_fetch

    async def counting(self, uids, items, *, uid_cmd, records=None, **kw):
        calls.append((len(uids), records is not None))
        return await real(self, uids, items, uid_cmd=uid_cmd, records=records, **kw)

    _chunked_only(monkeypatch)
    monkeypatch.setattr(imap_session, "STORE_REPLY_INLINE", 0)
    monkeypatch.setattr(imap_session, "STORE_CHUNK_MIN", 3)
    monkeypatch.setattr(imap_session, "STORE_CHUNKS", (2, 3, 4))
    monkeypatch.setattr(imap_session.ImapSession, "send_fetch", counting)
    from_writer = await run(converse, port, "carol")
    # STORE 1:* on 12 messages: chunks of 2, 3, 4, 3
    assert [n for n, _ in calls[:4]] == [2, 3, 4, 3]
    assert sum(r for _, r in calls) >= 8
    calls.clear()
    monkeypatch.setattr(imap_session.ImapSession, "_still", lambda self, mbx, ms: False)
    from_store = await run(converse, port, "dave")
    assert not any(r for _, r in calls)
    assert from_writer == from_store
    first = from_writer[0]
    assert first.count(b" FETCH ") == 12 and b"STORE completed" in first
    joined = b"".join(from_writer)
    assert b"MODIFIED" in joined and b"\\Recent" in joined and b"OtherOne" in joined


async def test_a_store_streamed_from_its_transaction_says_what_the_store_says(imap_server,
                                                                           monkeypatch):
    """A STORE on many messages in a session without CONDSTORE is answered
    from inside its transaction, a slice at a time (ImapSession._store_streamed,
    storeio.stream): tiny commits and slices here.  The same conversation
    answered so and through _store_chunked with the same commits, reading
    the store, is the same byte for byte (\\Recent, spellings, another
    session's keyword and FLAGS, the gone message); the sessions with
    CONDSTORE, UNCHANGEDSINCE or a keyword new to the session take
    _store_chunked."""
    port = imap_port(imap_server)
    await _users(imap_server, "erin", "frank")
    streamed = []
    real = imap_session.ImapSession._store_streamed

    async def counting(self, cmd, live, *a):
        streamed.append(len(live))
        return await real(self, cmd, live, *a)

    monkeypatch.setattr(imap_session, "STORE_REPLY_INLINE", 0)
    monkeypatch.setattr(imap_session, "STORE_CHUNK_MIN", 3)
    monkeypatch.setattr(imap_session, "STORE_COMMIT", 5)
    monkeypatch.setattr(imap_session, "STORE_SLICES", (2, 1))
    monkeypatch.setattr(imap_session, "STORE_CHUNKS", (5,))
    monkeypatch.setattr(imap_session.ImapSession, "_store_streamed", counting)
    from_stream = await run(converse, port, "erin")
    # not: $MyFlag (new to the session), .SILENT, and none once UNCHANGEDSINCE
    # turned CONDSTORE on (ENABLE comes too late: BAD)
    assert streamed == [12, 8, 10, 12, 12, 11, 12, 12]
    _chunked_only(monkeypatch)
    monkeypatch.setattr(imap_session.ImapSession, "_still", lambda self, mbx, ms: False)
    from_store = await run(converse, port, "frank")
    assert from_stream == from_store
    first = from_stream[0]
    assert first.count(b" FETCH ") == 12 and b"STORE completed" in first
    joined = b"".join(from_stream)
    assert b"\\Recent" in joined and b"OtherOne" in joined


def _seen_lines(lines: list[bytes]) -> dict[int, bool]:
    """{message number: \\Seen in its last FETCH line}."""
    last = {}
    for line in lines:
        m = re.match(rb"\* (\d+) FETCH \(FLAGS \(([^)]*)\)", line)
        if m:
            last[int(m.group(1))] = b"\\Seen" in m.group(2)
    return last


def _store_through(port: int, user: str, monkeypatch, writer_fn):
    """8 messages; ``STORE 1:* +FLAGS (\\Seen)`` with WRITER_FN in place of
    ops.set_keywords_reporting; -> (its answer, FETCH 1:* (FLAGS) after)."""
    from mailaccess.store import ops

    real = ops.set_keywords_reporting
    a = Raw(port, user=user)
    for i in range(8):
        a.cmd("APPEND INBOX", msg(f"m{i}"))
    a.cmd("SELECT INBOX")
    monkeypatch.setattr(ops, "set_keywords_reporting", functools.partial(writer_fn, real))
    try:
        answer = a.cmd("STORE 1:* +FLAGS (\\Seen)")
    finally:
        monkeypatch.setattr(ops, "set_keywords_reporting", real)
    after = a.cmd("FETCH 1:* (FLAGS)")
    a.close()
    return answer, after


async def test_a_streamed_store_whose_commit_fails_answers_the_flags_again(imap_server,
                                                                          monkeypatch):
    """Lines sent from inside the transaction, then the write fails: before
    its tagged NO the session answers those messages again as they are in
    the store, so the last FETCH the client has of each shows no \\Seen."""
    from mailaccess.store import StoreError

    port = imap_port(imap_server)
    await _users(imap_server, "gina")

    def failing(real, tx, *a, **kw):
        real(tx, *a, **kw)          # every slice emitted ...
        raise StoreError("the disk is full")     # ... then no commit

    monkeypatch.setattr(imap_session, "STORE_CHUNK_MIN", 3)
    monkeypatch.setattr(imap_session, "STORE_SLICES", (2, 3))
    failed, after = await run(_store_through, port, "gina", monkeypatch, failing)
    assert failed[-1].split()[1] == b"NO", failed[-1]
    told = [ln for ln in failed if b" FETCH " in ln]
    assert sum(b"\\Seen" in ln for ln in told) == 8          # sent before the failure
    assert _seen_lines(failed) == {n: False for n in range(1, 9)}
    assert _seen_lines(after) == {n: False for n in range(1, 9)}


async def test_a_streamed_store_run_again_after_a_map_growth_answers_again(imap_server,
                                                                          monkeypatch):
    """The writer runs a request again after growing the map: the lines of
    the first run (its transaction aborted) are sent again from the second,
    every message's last line shows the committed flags, and the STORE is
    answered OK."""
    import lmdb

    port = imap_port(imap_server)
    await _users(imap_server, "hal")
    runs = []

    def full_once(real, tx, *a, **kw):
        res = real(tx, *a, **kw)        # every slice emitted ...
        runs.append(len(runs))
        if len(runs) == 1:
            raise lmdb.MapFullError("map full")     # ... then grown and run again
        return res

    monkeypatch.setattr(imap_session, "STORE_CHUNK_MIN", 3)
    monkeypatch.setattr(imap_session, "STORE_SLICES", (2, 3))
    answer, after = await run(_store_through, port, "hal", monkeypatch, full_once)
    assert runs == [0, 1]
    assert answer[-1].split()[1] == b"OK", answer[-1]
    assert sum(b" FETCH " in ln for ln in answer) == 16
    assert _seen_lines(answer) == _seen_lines(after) == {n: True for n in range(1, 9)}


async def test_a_streamed_stores_slices_open_no_view_but_for_a_keywords_spelling(imap_server,
                                                                               monkeypatch):
    """The slices of a streamed STORE are formatted from the records its
    writer hands over (one fetchfmt.fetch_upto call each, perf6-bulk): no
    store view per slice.  A system flag needs none at all; a custom keyword
    is spelled from one view opened the first time a line shows it, not one
    per slice; the lines still show its first spelling."""
    port = imap_port(imap_server)
    await _users(imap_server, "hugo")
    store = imap_server.store
    views = []
    real_view = type(store).view
    real = imap_session.ImapSession._store_streamed

    def counting_view(self, *a, **kw):
        if streaming:
            views.append(1)
        return real_view(self, *a, **kw)

    streaming = []

    async def streamed(self, *a):
        streaming.append(1)
        try:
            return await real(self, *a)
        finally:
            streaming.clear()

    def converse_views(port, user):
        a = Raw(port, user=user)
        for i in range(8):
            a.cmd("APPEND INBOX", msg(f"m{i}"))
        a.cmd("SELECT INBOX")
        out = []
        for line in ("STORE 1:* +FLAGS (\\Seen)", "STORE 1 +FLAGS ($Spelled)",
                     "STORE 1:* +FLAGS ($spelled)"):
            # (the second: one message, not streamed; its * FLAGS tells the
            # session the keyword, so the third is streamed)
            views.clear()
            out.append((a.cmd(line), len(views)))
        a.close()
        return out

    monkeypatch.setattr(imap_session, "STORE_REPLY_INLINE", 0)
    monkeypatch.setattr(imap_session, "STORE_CHUNK_MIN", 3)
    monkeypatch.setattr(imap_session, "STORE_SLICES", (2, 3))
    monkeypatch.setattr(type(store), "view", counting_view)
    monkeypatch.setattr(imap_session.ImapSession, "_store_streamed", streamed)
    (seen, seen_views), _, (kw, kw_views) = await run(converse_views, port, "hugo")
    assert sum(b" FETCH " in ln for ln in seen) == 8 and seen_views == 0
    assert sum(b"$Spelled" in ln for ln in kw) == 8 and b"$spelled" not in b"".join(kw)
    assert kw_views == 1
