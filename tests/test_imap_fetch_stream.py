"""FETCH answers stream (issue 7 §2): the chunks of ``fetch_chunks`` join to
exactly the unstreamed answer (``build_fetch``), none is much bigger than the
buffer (a body literal bigger than it goes in pieces), and the session builds
the next slice only when its sender (the socket) took the previous ones."""
import functools
import itertools
import types

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from conftest import make_config
from mailaccess import ingest
from mailaccess._speedups import fetchfmt_py as F
from mailaccess.proto.imap import events as ev
from mailaccess.proto.imap import commands
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.server import imap_session
from mailaccess.server.imap_session import FETCH_BUFFER, ImapSession, build_fetch, fetch_chunks
from mailaccess.store import Store, ops
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

BIG = b"x" * (1 << 20)
MULTI = (b"From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
         b"--XX\r\nContent-Type: text/plain\r\n\r\n" + b"hello world\r\n" * 40000 +
         b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
         b"\r\n\r\nYQBi\r\n--XX--\r\n")


def _msg(i, body=b"small\r\n"):
    return (b"From: s%d@example.org\r\nSubject: m %d\r\nMessage-ID: <m%d@x>\r\n"
            b"Date: Mon, 3 Nov 2025 00:00:00 +0000\r\n\r\n" % (i, i, i) + body)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(str(tmp_path_factory.mktemp("stream") / "store"))
    s.start()
    acc = s.write_sync(ops.create_account, "a", "h")
    with s.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    raws = [_msg(i) for i in range(700)]
    raws[3] = _msg(3, BIG)
    raws[10] = MULTI
    raws[400] = _msg(400, b"y" * 300_000)
    news = [ingest.prepare(r, 1_700_000_000 + i) for i, r in enumerate(raws)]

    def load(tx):
        for i, n in enumerate(news):
            ops.append(tx, acc, [ib], n, keywords=["$seen"] if i % 3 else [])
    s.write_sync(load)
    yield s, acc, ib
    s.close()


def _sel(v, acc, ib):
    m = v.mailbox(acc, ib)
    return SelectedMailbox(acc, ib, m.uidvalidity, False,
                           Snapshot.from_pairs(sorted(v.uids(acc, ib)), m.highest_ms), m.uidnext)


def _items(text: str):
    cmd = commands.parse_command(CommandFrame(b"a", (b"FETCH 1 " + text.encode(),)))
    return tuple(cmd.items)


ITEM_SETS = ["(UID FLAGS)", "(FLAGS ENVELOPE BODYSTRUCTURE)", "(UID BODY.PEEK[])",
             "(BODY.PEEK[] BODY.PEEK[] BODY.PEEK[1] RFC822.SIZE)", "(RFC822 UID)",
             "(BODY.PEEK[1]<5.600000> BINARY.PEEK[2] BINARY.SIZE[1])",
             "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] FLAGS MODSEQ)", "(RFC822.HEADER RFC822.TEXT)"]


@settings(max_examples=25, deadline=None)
@given(items=st.sampled_from(ITEM_SETS), budget=st.integers(1024, 3 << 20),
       pick=st.sampled_from(["all", "big", "few", "reverse"]), condstore=st.booleans())
def test_streamed_is_byte_identical(store, items, budget, pick, condstore):
    s, acc, ib = store
    with s.view() as v:
        sel = _sel(v, acc, ib)
        all_uids = list(sel.uids)
        uids = {"all": all_uids, "big": [all_uids[3], all_uids[10], all_uids[3]],
                "few": all_uids[395:405], "reverse": all_uids[::-7]}[pick]
        its = _items(items)
        whole = b"".join(build_fetch(v, acc, sel, uids, its, condstore, {}, True))
    progress = imap_session.FetchProgress()
    chunks, more = [], []
    for c in fetch_chunks(s, acc, sel, uids, its, condstore, {}, True, budget=budget,
                          progress=progress):
        chunks.append(c)
        more.append(progress.more)
    assert b"".join(chunks) == whole
    # the session stops (without waiting for its FETCH turn) at the last chunk
    assert more == [True] * (len(chunks) - 1) + [False]
    small = max(build_fetch_sizes(s, acc, sel, uids, its), default=0)
    # a chunk holds at most the budget plus one message whose literals are
    # at most the budget, plus its text
    assert all(len(c) <= 2 * budget + small for c in chunks)


def build_fetch_sizes(s, acc, sel, uids, its):
    """Sizes of the messages' responses without their literals' data."""
    with s.view() as v:
        for r in build_fetch(v, acc, sel, uids[:20], tuple(
                i for i in its if not isinstance(i, ev.FetchBody)
                and not (isinstance(i, ev.FetchItem) and i.name.startswith("RFC822"))), False):
            yield len(r) + 200


def test_body_literal_is_exactly_the_stored_bytes(store):
    s, acc, ib = store
    with s.view() as v:
        sel = _sel(v, acc, ib)
    uid = sel.uids[3]
    raw = _msg(3, BIG)
    chunks = list(fetch_chunks(s, acc, sel, [uid] * 3, _items("(BODY.PEEK[])"), False))
    one = b"* 4 FETCH (BODY[] {%d}\r\n" % len(raw) + raw + b")\r\n"
    assert b"".join(chunks) == one * 3
    assert max(map(len, chunks)) <= FETCH_BUFFER + 64


async def test_producer_waits_for_the_socket(store, tmp_path, monkeypatch):
    """While the sender (the socket) does not take data, nothing more is built."""
    s, acc, ib = store
    built = [0]
    real = imap_session.fetch_chunks

    def counting(*a, **kw):
        for c in real(*a, **kw):
            built[0] += len(c)
            yield c
    monkeypatch.setattr(imap_session, "fetch_chunks", counting)

    ctx = types.SimpleNamespace(cfg=make_config(tmp_path), store=s)
    sess = ImapSession(ctx, secure=True, loopback=True)
    sess.acc, sess.state = acc, imap_session.SELECTED
    with s.view() as v:
        sess.sel = _sel(v, acc, ib)
    uids = [sess.sel.uids[3]] * 200            # 200 x BODY[] of 1 MiB in one command
    sent = [0]
    ahead = []
    gate = trio.Event()
    got = []

    async def sender(data):
        ahead.append(built[0] - sent[0])
        sent[0] += len(data)
        got.append(data)
        await gate.wait()

    sess.sender = sender
    async with trio.open_nursery() as n:
        n.start_soon(functools.partial(sess.send_fetch, uids, _items("(BODY.PEEK[])"),
                                       uid_cmd=False))
        await trio.testing.wait_all_tasks_blocked()
        before = built[0]
        for _ in range(5):
            await trio.testing.wait_all_tasks_blocked()
        assert built[0] == before          # paused while the socket is not read
        assert before <= 2 * FETCH_BUFFER + 4096
        gate.set()
    got.append(sess.take_output())
    total = b"".join(got)
    assert len(total) == 200 * (len(_msg(3, BIG)) + len(b"* 4 FETCH (BODY[] {1048694}\r\n)\r\n"))
    # never more than about one buffer built ahead of what the socket took
    assert max(ahead) <= 2 * FETCH_BUFFER + 4096


async def test_streaming_answers_take_turns(store, tmp_path, monkeypatch):
    """Many answers streaming at once build in turns, one answer per turn:
    between two steps of another task at most two answers (one per
    scheduling batch) built anything, so a bystander waits for about one
    turn, not one chunk of every streaming session (issue 7 §1, the
    50 × FETCH 1:* case)."""
    s, acc, ib = store
    builders = set()        # answers that built a chunk since the bystander's last step
    built = [0]
    real = imap_session.fetch_chunks

    def counting(*a, **kw):
        me = object()
        for k, c in enumerate(real(*a, **kw)):
            if k:                       # the first chunk is built at once
                builders.add(me)
                built[0] += 1
            yield c
    monkeypatch.setattr(imap_session, "fetch_chunks", counting)
    monkeypatch.setattr(imap_session, "FETCH_TURN_SECONDS", 0.0)   # one chunk per turn
    ctx = types.SimpleNamespace(cfg=make_config(tmp_path), store=s)
    items = _items("(FLAGS BODY.PEEK[])")

    async def sender(data):
        await trio.lowlevel.checkpoint()

    sessions = []
    for _ in range(8):
        sess = ImapSession(ctx, secure=True, loopback=True)
        sess.acc, sess.state = acc, imap_session.SELECTED
        with s.view() as v:
            sess.sel = _sel(v, acc, ib)
        sess.sender = sender
        sessions.append(sess)
    uids = [u for u in sessions[0].sel.uids if u != sessions[0].sel.uids[3]][:600]
    gaps = []
    running = [len(sessions)]

    async def fetch(sess):
        await sess.send_fetch(uids, items, uid_cmd=False)
        running[0] -= 1

    async def bystander():
        while running[0]:
            builders.clear()
            await trio.lowlevel.checkpoint()
            gaps.append(len(builders))

    async with trio.open_nursery() as n:
        for sess in sessions:
            n.start_soon(fetch, sess)
        n.start_soon(bystander)
    assert built[0] > 10 * len(sessions)        # the answers did stream in many chunks
    # one turn per scheduling batch: the bystander's step may fall at either
    # end of a batch, so two answers at most built between two of its steps
    assert max(gaps) <= 2 * imap_session.FETCH_BUILDERS


def _session(s, acc, ib, tmp_path):
    ctx = types.SimpleNamespace(cfg=make_config(tmp_path), store=s)
    sess = ImapSession(ctx, secure=True, loopback=True)
    sess.acc, sess.state = acc, imap_session.SELECTED
    with s.view() as v:
        sess.sel = _sel(v, acc, ib)
    return sess


@pytest.mark.parametrize("items", ["(UID BODY.PEEK[])", "(FLAGS ENVELOPE BODYSTRUCTURE)",
                                   "(BODY.PEEK[1]<5.600000> BINARY.PEEK[2] BINARY.SIZE[1])"])
async def test_answer_goes_out_as_it_is_built(store, tmp_path, items):
    """With write_nowait (the plain socket), each chunk is written as soon
    as it is built; once the socket takes only part of one, no write is
    tried until the sender (the wait for the socket) took what was held, at
    most about FETCH_BUFFER (perf5-body).  What leaves, in order, is exactly
    the whole answer."""
    s, acc, ib = store
    sess = _session(s, acc, ib, tmp_path)
    uids = list(sess.sel.uids)
    its = _items(items)
    with s.view() as v:
        whole = b"".join(build_fetch(v, acc, sess.sel, uids, its, False, {}, True))
    wire = []
    rooms = itertools.cycle([100_000, 20_000, 400_000])
    room = [next(rooms)]            # what the "socket" takes before it is full
    trace = []                      # ("w", partial?) per write_nowait, "s" per sender call

    def write_nowait(parts):
        data = b"".join(parts)
        n = min(len(data), room[0])
        trace.append(("w", n < len(data)))
        room[0] -= n
        wire.append(data[:n])
        return n

    async def sender(data):
        trace.append("s")
        assert len(data) <= 2 * FETCH_BUFFER + 4096     # about one buffer held back
        wire.append(bytes(data))
        room[0] = next(rooms)
        await trio.lowlevel.checkpoint()

    sess.sender, sess.write_nowait = sender, write_nowait
    sess.out.append(b"* 1 EXISTS\r\n")      # lines before the answer go first
    await sess.send_fetch(uids, its, uid_cmd=False)
    wire.append(sess.take_output())
    assert b"".join(wire) == b"* 1 EXISTS\r\n" + whole
    assert ("w", True) in trace and ("w", False) in trace   # whole writes, a full socket
    # after a partial write the next step is the wait for the socket (the
    # sender), not another write
    for k, t in enumerate(trace[:-1]):
        if t == ("w", True):
            assert trace[k + 1] == "s"


async def test_write_nowait_on_a_socket(tmp_path):
    """ImapConnection.write_nowait: the pieces in order by writev, 0 once
    the socket is full, None when another write is under way."""
    from mailaccess.server import imap as imap_service
    import socket
    a0, b = socket.socketpair()
    a = trio.socket.from_stdlib_socket(a0)
    conn = object.__new__(imap_service.ImapConnection)
    stream = trio.SocketStream(a)
    conn.stream = conn._plain = stream
    conn.write_lock = None
    assert conn.write_nowait([b"ab", memoryview(b"xcd")[1:], b"e"]) == 5
    assert b.recv(100) == b"abcde"
    big = [b"x" * 65536] * 200
    n = conn.write_nowait(big)
    assert 0 < n < 65536 * 200
    assert conn.write_nowait(big) == 0
    conn.write_lock = trio.Lock()
    await conn.write_lock.acquire()
    assert conn.write_nowait([b"y"]) is None
    conn.write_lock.release()
    conn.stream = object()          # after STARTTLS / COMPRESS
    assert conn.write_nowait([b"y"]) is None
    a.close()
    b.close()


async def test_a_turn_ends_at_a_buffer_even_when_all_is_written(store, tmp_path, monkeypatch):
    """A socket that takes every chunk at once does not make a FETCH turn
    longer: it ends once FETCH_BUFFER bytes were built (plus the chunk that
    passed it), however long FETCH_TURN_SECONDS allows, so other sessions
    wait for it no longer than when the bytes were held."""
    s, acc, ib = store
    monkeypatch.setattr(imap_session, "FETCH_TURN_SECONDS", 60.0)
    built = [0]
    real = imap_session.fetch_chunks

    def counting(*a, **kw):
        for c in real(*a, **kw):
            built[0] += len(c)
            yield c
    monkeypatch.setattr(imap_session, "fetch_chunks", counting)
    sess = _session(s, acc, ib, tmp_path)
    wire = []

    def write_nowait(parts):
        data = b"".join(parts)
        wire.append(data)
        return len(data)

    async def sender(data):
        wire.append(bytes(data))
        await trio.lowlevel.checkpoint()

    sess.sender, sess.write_nowait = sender, write_nowait
    uids = [u for u in sess.sel.uids if u != sess.sel.uids[3]] * 4
    its = _items("(UID BODY.PEEK[])")
    steps = []
    done = [False]

    async def bystander():
        while not done[0]:
            before = built[0]
            await trio.lowlevel.checkpoint()
            steps.append(built[0] - before)

    async def fetch():
        await sess.send_fetch(uids, its, uid_cmd=False)
        done[0] = True

    async with trio.open_nursery() as n:
        n.start_soon(bystander)
        n.start_soon(fetch)
    assert sum(steps) > 4 * FETCH_BUFFER          # it did build in many turns
    assert max(steps) <= FETCH_BUFFER + 2 * imap_session.FETCH_CHUNK + 300_000


async def test_a_small_answer_waits_for_the_tagged_line(store, tmp_path):
    """A FETCH answer whose last chunk is small (with what is held, at most
    FETCH_HOLD bytes) is not written at once: it stays in the session's
    output, after the lines before it, and leaves with the tagged line in
    one write (perf8-cmd).  A bigger one is written as it is built."""
    s, acc, ib = store
    sess = _session(s, acc, ib, tmp_path)
    uids = list(sess.sel.uids)
    writes = []

    def write_nowait(parts):
        data = b"".join(parts)
        writes.append(data)
        return len(data)

    async def sender(data):
        writes.append(bytes(data))

    sess.sender, sess.write_nowait = sender, write_nowait
    its = _items("(UID FLAGS)")
    with s.view() as v:
        whole = b"".join(build_fetch(v, acc, sess.sel, uids[:1], its, False, {}, True))
    assert len(whole) <= imap_session.FETCH_HOLD
    sess.out.append(b"* 1 EXISTS\r\n")
    await sess.send_fetch(uids[:1], its, uid_cmd=False)
    assert writes == []
    assert sess.take_output() == b"* 1 EXISTS\r\n" + whole
    big = _items("(UID BODY.PEEK[])")
    with s.view() as v:
        whole = b"".join(build_fetch(v, acc, sess.sel, uids, big, False, {}, True))
    assert len(whole) > imap_session.FETCH_HOLD
    await sess.send_fetch(uids, big, uid_cmd=False)
    assert writes and b"".join(writes) + sess.take_output() == whole


@pytest.mark.parametrize("items", ["(FLAGS)", "(UID FLAGS)", "(FLAGS UID MODSEQ)", "(BODY[])",
                                   "(BODY.PEEK[] RFC822.SIZE)", "(RFC822)", "(RFC822.TEXT UID)",
                                   "(RFC822.HEADER ENVELOPE)", "(BINARY[1] FLAGS)",
                                   "(BINARY.PEEK[1] PREVIEW)", "(ENVELOPE FLAGS)", "(BODY UID)",
                                   "(BODYSTRUCTURE)", "(BODY.PEEK[HEADER.FIELDS (From To)])",
                                   "(RFC822.SIZE INTERNALDATE)", "(" + "FLAGS " * 16 + "UID)",
                                   "(UID BODY.PEEK[HEADER.FIELDS ("
                                   + " ".join(["X-Long-Field-Name"] * 30) + ")])"])
def test_fetch_facts_are_what_the_items_say(items):
    """_fetch_facts (kept per item tuple) says what looking at the items
    says: UID put first unless there, MODSEQ among them, \\Seen set."""
    its = tuple(_items(items))
    f = imap_session._fetch_facts(its)
    has_uid = any(isinstance(i, ev.FetchItem) and i.name == "UID" for i in its)
    assert f.with_uid == (its if has_uid else (ev.FetchItem("UID"),) + its)
    assert f.modseq == any(isinstance(i, ev.FetchItem) and i.name == "MODSEQ" for i in its)
    assert f.sets_seen == (any(isinstance(i, ev.FetchBody) and not i.peek for i in its) or any(
        isinstance(i, ev.FetchItem) and i.name in ("RFC822", "RFC822.TEXT") for i in its))
    simple = imap_session._simple_items(its)
    assert f.simple == simple
    codes = F.item_codes(simple) if simple is not None else []
    assert f.want_index == any(c in (F.ENVELOPE, F.BODYSTRUCTURE, F.BODY, F.HEADER_FIELDS,
                                     F.WHOLE_HEADER)
                               for c in codes)
    assert f.want_blob == any(c in (F.HEADER_FIELDS, F.WHOLE_BODY, F.WHOLE_HEADER)
                              for c in codes)
    # kept unless long or with long HEADER.FIELDS lists (bounded memory)
    kept = imap_session._fetch_facts(its) is f
    assert kept == (len(its) <= 16 and "X-Long" not in items)


async def test_current_is_the_modseq_of_an_answer_built_at_once(store, tmp_path):
    """send_fetch(current=True): the account's modseq as read in the view
    of the answer's last chunk when nothing was awaited since (a small
    answer); -1 for an answer that waited for its socket or its turn, and
    for one not asked."""
    s, acc, ib = store
    sess = _session(s, acc, ib, tmp_path)
    uids = list(sess.sel.uids)
    sent = []

    async def sender(data):
        sent.append(len(data))
        await trio.lowlevel.checkpoint()

    sess.sender, sess.write_nowait = sender, lambda parts: None
    with s.view() as v:
        ms = v.highest_modseq(acc)
    assert await sess.send_fetch(uids[:2], _items("(UID FLAGS)"), uid_cmd=True,
                                 current=True) == ms
    assert await sess.send_fetch(uids[:2], _items("(UID FLAGS)"), uid_cmd=True) == -1
    sess.out.clear()
    assert await sess.send_fetch(uids, _items("(UID BODY.PEEK[])"), uid_cmd=True,
                                 current=True) == -1
    assert sent
