"""THREAD=REFERENCES (RFC 5256) on one long chain and on hostile shapes.

Every step of mailaccess.query.thread.thread_references is O(n log n): the
loop checks of steps 1A/1B use link-cut trees instead of walking to the root,
dummies are pruned in one pass, subject merging finds a root's place by
index.  Each shape below took from half a minute to hours with the walking
code (tests/thread_oracle.py, kept as the oracle); no timing thresholds: a
regression is a test that does not finish.  The small random cases hold the
new code to the oracle's exact answers.
"""
import functools
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import thread_oracle
from imap_helpers import Raw, run
from mailaccess import ingest
from mailaccess.mime import index as mindex
from mailaccess.query import thread
from mailaccess.query.sort import collate
from test_query_thread import _FakeView, format_thread, msg

Raw = functools.partial(Raw, timeout=120)


def M(k, mid, refs, subject="Chain", date=None):
    return thread_oracle.Msg(k, k, k if date is None else date, subject,
                       collate(mindex.base_subject(subject)), mid, tuple(refs))


def chain(keys) -> bytes:
    return ("(" + " ".join(map(str, keys)) + ")").encode()


def siblings(keys) -> bytes:
    return ("(" + "".join(f"({k})" for k in keys) + ")").encode()


# ------------------------------------------------------------ long chains
# name: (messages of size n, the answer, n).  The old times are for 40,000
# messages (python /tmp/h23-threadlin/bench.py, on the shared 2-core machine).

def _pred(n):
    # each message refers to its predecessor (In-Reply-To alone gives the same
    # refs): step 1B walked from the predecessor to the root, 12.6 s
    return [M(i, f"m{i}", [f"m{i - 1}"] if i else []) for i in range(n)], chain(range(n))


def _pred_reversed(n):
    msgs, _ = _pred(n)
    return msgs[::-1], chain(range(n))


def _last20(n):
    # truncated References (the last 20 ancestors): 15.5 s
    return ([M(i, f"m{i}", [f"m{j}" for j in range(max(0, i - 20), i)]) for i in range(n)],
            chain(range(n)))


def _all_earlier(n):
    # References naming every ancestor: the input itself is quadratic
    return [M(i, f"m{i}", [f"m{j}" for j in range(i)]) for i in range(n)], chain(range(n))


def _new_tail(n):
    # the predecessor, then an id nobody has: 1A's loop check for the new id
    # walked from the predecessor to the root, 7 s for 10,000, hours for this
    return ([M(i, f"m{i}", ([f"m{i - 1}"] if i else []) + [f"n{i}"]) for i in range(n)],
            chain(range(n)))


def _dummy_chain(n):
    # a chain of dummies, each with a message: 1A walked the chain, and the
    # pruning copied each dummy's gathered children into its parent's list
    return ([M(i, f"m{i}", ([f"d{i - 1}"] if i else []) + [f"d{i}"]) for i in range(n)],
            siblings(range(n)))


def _relinked(n):
    # two chains of dummies; then every dummy of the first becomes a message
    # replying to the end of the second: 1B cut and relinked, walking each time
    k = n // 2
    msgs = [M(0, "x", [f"d{i}" for i in range(k)]), M(1, "y", [f"e{i}" for i in range(k)])]
    msgs += [M(2 + i, f"d{i}", [f"e{k - 1}"]) for i in range(k)]
    return msgs, b"(" + b"".join(b"(%d)" % i for i in range(1, k + 1)) + b"(%d 0))" % (k + 1)


def _cycle(n):
    # References forming one cycle: the last link would close it
    return [M(i, f"m{i}", [f"m{(i + 1) % n}"]) for i in range(n)], chain(range(n - 1, -1, -1))


def _same_id(n):
    # one Message-ID on every message, each replying to it: the duplicates
    # get unique ids, so the first has them all as children
    return ([M(i, "same", ["same"] if i else []) for i in range(n)],
            b"(0 " + siblings(range(1, n))[1:])


def _no_id(n):
    return [M(i, None, ["p"]) for i in range(n)], siblings(range(n))


def _subject_pairs(n):
    # roots in pairs of one subject: each pair gets a dummy, which looked
    # for its place in the root list by scanning it, 4 s
    return ([M(i, f"m{i}", [], subject=f"s{i // 2}") for i in range(n)],
            b"".join(b"((%d)(%d))" % (i, i + 1) for i in range(0, n, 2)))


def _big_references(n):
    # one References field of N ids, then the same ids reversed, then again
    ids = [f"r{i}" for i in range(n)]
    return [M(0, "a", ids), M(1, "b", ids[::-1] + ["a"]), M(2, "c", ids + ["b"])], b"(0 1 2)"


SHAPES = [
    (_pred, 200_000), (_pred_reversed, 100_000), (_last20, 100_000), (_all_earlier, 2_000),
    (_new_tail, 50_000), (_dummy_chain, 50_000), (_relinked, 100_000), (_cycle, 100_000),
    (_same_id, 50_000), (_no_id, 50_000), (_subject_pairs, 200_000), (_big_references, 10_000),
]


@pytest.mark.parametrize("shape,n", SHAPES, ids=[f.__name__[1:] for f, _ in SHAPES])
def test_long_chain(shape, n):
    msgs, want = shape(n)
    assert format_thread(thread_oracle.core_references(msgs)) == want


@pytest.mark.parametrize("shape", [f for f, _ in SHAPES], ids=[f.__name__[1:] for f, _ in SHAPES])
def test_small_shapes_answer_as_the_oracle(shape):
    for n in (1, 2, 3, 7, 8, 40):
        msgs, want = shape(n)
        got = format_thread(thread_oracle.core_references(msgs))
        assert got == format_thread(thread_oracle.references(msgs))
        if n >= 8:      # the answers above hold for a few messages and up
            assert got == want


def test_a_deep_chain_does_not_recurse():
    """100,000 messages deep, under a recursion limit far below that."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        msgs, want = _pred(100_000)
        assert format_thread(thread_oracle.core_references(msgs)) == want
    finally:
        sys.setrecursionlimit(old)


# ------------------------------------------------------------ the oracle

_ID = st.sampled_from(["a", "b", "c", "d", "e", "f"])
# subjects whose base subjects (RFC 5256 section 2.1) coincide, and replies
_SUBJECT = st.sampled_from(["Hello", "Re: Hello", "RE: re: hello", "Fwd: Hello", "[list] Re: Hello",
                            "[fwd: hello]", "hello (fwd)", "Other", "Re: other", "", "Re:", "x"])


@st.composite
def _msg_lists(draw):
    n = draw(st.integers(0, 12))
    out = []
    for k in range(n):
        mid = draw(st.one_of(st.none(), _ID))
        refs = draw(st.lists(_ID, max_size=6))
        if mid is not None and draw(st.booleans()):
            refs.insert(draw(st.integers(0, len(refs))), mid)     # refers to itself
        out.append(M(k, mid, refs, draw(_SUBJECT), draw(st.integers(0, 4))))
    return out


@settings(max_examples=1000, deadline=None)
# a root whose tree hangs under another tree later in the same message: the
# loop check for "x" must see b's new root (x itself), not its old one (a)
@example([M(0, None, ["a", "b"]), M(1, None, ["x", "y"]), M(2, "m", ["b", "q", "y", "a", "b", "x"])])
# a cut and relinked box whose subtree holds the new parent: no link (loop)
@example([M(0, "b", ["a"]), M(1, "c", ["b"]), M(2, "a", ["c"]), M(3, "b", ["c"])])
@given(_msg_lists())
def test_answers_as_the_oracle(msgs):
    """Duplicate, missing and self-referring ids, cycles, ties of date,
    subjects with one base subject: the oracle's exact answer."""
    assert format_thread(thread_oracle.core_references(msgs)) == \
        format_thread(thread_oracle.references(msgs))


_HDR_ID = st.sampled_from(["<a@x>", "<b@x>", '<"a"@x>', "< c@x >", "<>", "", "<d@x>"])


@st.composite
def _raws(draw):
    raws = []
    for k in range(draw(st.integers(0, 10))):
        mid = draw(st.one_of(st.none(), _HDR_ID))
        refs = draw(st.one_of(st.none(), st.lists(_HDR_ID, max_size=5).map(" ".join)))
        irt = draw(st.one_of(st.none(), _HDR_ID))
        hour = draw(st.integers(10, 12))
        raws.append(msg(draw(_SUBJECT) or "-", f"{hour}:00", mid or None, refs or None,
                        irt or None))
    return raws


@settings(max_examples=300, deadline=None)
@given(_raws())
def test_messages_answer_as_the_oracle(raws):
    """Through the header parsing: Message-ID forms, In-Reply-To only."""
    v = _FakeView(raws)
    cands = [(i, i) for i in range(1, len(raws) + 1)]
    msgs = thread_oracle.messages(v, 0, cands)
    assert format_thread(thread.thread_references(v, 0, cands)) == \
        format_thread(thread_oracle.references(msgs))


# ------------------------------------------------------------ over the wire

WIRE = 40_000


async def test_thread_of_a_long_chain_over_the_wire(imap_server):
    """40,000 messages, each naming its predecessor and an id nobody has
    (about two minutes with the walking loop checks, past run()'s 60 s),
    then an In-Reply-To-only chain of 2,000."""
    from mailaccess.store import ops
    st_ = imap_server.store
    with st_.view() as v:
        acc = v.account_by_name("alice").id
        ib = v.mailbox_by_role(acc, "inbox").id
    news = []
    for i in range(WIRE):
        refs = (f"<m{i - 1}@x> " if i else "") + f"<n{i}@x>"
        news.append(msg("Re: chain", "10:00", f"<m{i}@x>", refs))
    for i in range(2000):
        news.append(msg("Re: other", "11:00", f"<o{i}@x>", irt=f"<o{i - 1}@x>" if i else None))
    news = [ingest.prepare(raw, 1_700_000_000 + i) for i, raw in enumerate(news)]

    def load(tx):
        for n in news:
            ops.append(tx, acc, [ib], n)
    st_.write_sync(load)

    def go():
        r = Raw(imap_server, prefix=b"t")
        r.cmd(b"SELECT INBOX")
        out = r.cmd(b"THREAD REFERENCES UTF-8 ALL")
        assert out[-1] == b"t3 OK THREAD completed\r\n"
        assert out[0] == b"* THREAD " + chain(range(1, WIRE + 1)) + \
            chain(range(WIRE + 1, WIRE + 2001)) + b"\r\n"
        r.close()
    await run(go)
