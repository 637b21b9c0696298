"""THREAD's columns (query/thread.Columns) and their reuse by the sort cache.

- ``columns(view, acc, eids, old)`` equals ``columns(view, acc, eids)``
  whatever OLD is: the columns of a prefix (new mail: only the rest is
  read), of another list (an expunge, a search result: read afresh), of an
  older index generation (``mailaccess reindex``: read afresh); and THREAD
  over the brought-up columns answers as over fresh ones (hypothesis:
  random mailboxes, random appends).
- Through sessions (server/imap_sortcache.py): THREAD of the whole view
  keeps the mailbox's columns; after new mail only the new messages are
  read, the answer equal to the uncached one; a reindex is not answered
  from columns of the old index.
"""
from hypothesis import given, settings, strategies as st

from mailaccess.mime import index as mindex
from mailaccess.query import thread
from mailaccess.store import ops
from mailaccess.store.records import blob_hash_of
from test_imap_sortcache import append, cache_of, check_all, env, session  # noqa: F401
from test_imap_selected_costs import run as command
from test_query_thread import _FakeView, msg

_ID = st.sampled_from(["<a@x>", "<b@x>", "<c@x>", "<d@x>", None])
_SUBJECT = st.sampled_from(["Hello", "Re: Hello", "Fwd: hello", "[x] HELLO", "Other", ""])


@st.composite
def _mailbox(draw):
    """Raw messages (some without Date:, so dated by their internal date)
    and the candidates' email ids in mailbox order (any order of ids)."""
    raws = []
    for k in range(draw(st.integers(0, 14))):
        hour = draw(st.sampled_from(["10:00", "11:00", None]))
        raw = msg(draw(_SUBJECT), hour or "10:00", draw(_ID), draw(_ID), draw(_ID))
        if hour is None:
            raw = raw.replace(b"Date: Mon, 3 Nov 2025 10:00 +0000\r\n", b"")
        raws.append(raw)
    eids = draw(st.permutations(range(1, len(raws) + 1)))
    return raws, list(eids)


def same(a: thread.Columns, b: thread.Columns) -> bool:
    return a[1:7] == b[1:7]            # (gen: the view's)


def answers(c: thread.Columns):
    keys = [100 + i for i in range(len(c.eids))]
    return thread.references(c, keys), thread.orderedsubject(c, keys)


@settings(max_examples=300, deadline=None)
@given(_mailbox(), st.data())
def test_columns_brought_up_equal_fresh_ones(box, data):
    raws, eids = box
    v = _FakeView(raws)
    k = data.draw(st.integers(0, len(eids)))
    old = thread.columns(v, 0, eids[:k])           # before the new mail
    got = thread.columns(v, 0, eids, old)
    want = thread.columns(_FakeView(raws), 0, eids)   # (another view: its own facts cache)
    assert same(got, want)
    assert answers(got) == answers(want)
    if k == len(eids):
        assert got is old
    # not a prefix (an expunge, a move within, a search result): read afresh
    other = data.draw(st.permutations(eids))
    old = thread.columns(v, 0, other[:data.draw(st.integers(0, len(eids)))])
    assert same(thread.columns(v, 0, eids, old), want)
    if eids:
        drop = data.draw(st.integers(0, len(eids) - 1))
        rest = eids[:drop] + eids[drop + 1:]
        assert same(thread.columns(v, 0, rest, got), thread.columns(_FakeView(raws), 0, rest))


def test_columns_of_another_index_generation_are_not_reused():
    raws = [msg("Hello", "10:00", "<a@x>"), msg("Re: Hello", "11:00", "<b@x>", "<a@x>")]
    v = _FakeView(raws)
    old = thread.columns(v, 0, [1])
    # a reindex rewrote the first message's index (another subject, no id)
    v.idx[(1).to_bytes(32, "big")] = mindex.encode_index(
        mindex.index_message(msg("Other", "09:00")))
    v.index_generation = lambda acc: 1
    got = thread.columns(v, 0, [1, 2], old)
    assert got.gen == 1 and got.bases[0] == "OTHER" and got.mids[0] is None
    assert same(got, thread.columns(_FakeView([msg("Other", "09:00"), raws[1]]), 0, [1, 2]))


def _reads(monkeypatch) -> list:
    """The numbers of email ids each columns read takes (thread._read)."""
    seen = []
    real = thread._read

    def spy(view, acc, eids, gen):
        seen.append(len(eids))
        return real(view, acc, eids, gen)
    monkeypatch.setattr(thread, "_read", spy)
    return seen


THREADS = [b"UID THREAD REFERENCES UTF-8 ALL", b"UID THREAD ORDEREDSUBJECT UTF-8 ALL",
           b"THREAD REFERENCES UTF-8 ALL", b"THREAD ORDEREDSUBJECT UTF-8 ALL"]


async def test_new_mail_reads_only_the_new_messages(env, monkeypatch):  # noqa: F811
    append(env, 40)
    a = session(env)
    await command(a, b"SELECT INBOX")
    reads = _reads(monkeypatch)
    await check_all(a, THREADS)
    # one read of the mailbox for all four (and one more per uncached answer)
    keys = [k for k in cache_of(env).entries if k[0] == "thread-columns"]
    assert len(keys) == 1 and reads == [40] * 5
    total = 40
    for n in (1, 3):
        append(env, n)
        total += n
        await command(a, b"NOOP")
        reads.clear()
        await check_all(a, THREADS)
        # the uncached answers read all; the cached ones the new mail only
        assert sorted(reads) == [n] + [total] * 4
    # an expunge: the ids are no longer a prefix, read afresh (once)
    env.store.write_sync(ops.expunge, env.acc, env.ib, [2, 3])
    await command(a, b"NOOP")
    reads.clear()
    await check_all(a, THREADS)
    assert sorted(reads) == [42] * 5


async def test_a_reindex_is_not_answered_from_old_columns(env):  # noqa: F811
    append(env, 12)
    a = session(env)
    await command(a, b"SELECT INBOX")
    await check_all(a, THREADS[:2])
    reindex_first(env)
    append(env, 1)                     # (new mail too: the columns would be a prefix)
    await command(a, b"NOOP")
    await check_all(a, THREADS)
    c = [e for k, (e, _n) in cache_of(env).entries.items() if k[0] == "thread-columns"]
    assert c[0].subjects[0] == "reindexed"


async def test_a_reindex_is_not_answered_from_an_old_thread_answer(env):  # noqa: F811
    # the same candidates before and after: only the index generation tells
    # the kept answer (a reindex that gives the first message a subject of
    # another thread) from a current one
    append(env, 12)
    a = session(env)
    await command(a, b"SELECT INBOX")
    await check_all(a, THREADS)
    reindex_first(env)
    await command(a, b"NOOP")
    await check_all(a, THREADS)


def reindex_first(env):
    """What ``mailaccess reindex`` does when it finds the first message's
    index different (another subject, another Message-ID)."""
    with env.store.view() as v:
        uid, eid = v.uids(env.acc, env.ib)[0]
        h = blob_hash_of(v.email_raw(env.acc, eid))
    idx = mindex.encode_index(mindex.index_message(
        b"Subject: reindexed\r\nMessage-ID: <new@x>\r\n\r\nx\r\n"))
    env.store.write_sync(ops.replace_index, env.acc, h, idx)
