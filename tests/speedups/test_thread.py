"""thread_py and thread_c (the THREAD cores, RFC 5256) give the same answers,
and those of tests/thread_oracle.py (REFERENCES read literally) and of
ORDEREDSUBJECT as first written (sorted by base subject, date, position),
on hostile input: duplicate, missing and self-referring Message-IDs,
References loops, ties of date, dates before 1970 and far ahead, subjects
sharing a base subject with and without a reply leader.  Also their
thread-list bytes (no trees made) are what serialize.thread writes of the
trees."""
import sys

import pytest
from hypothesis import example, given, settings, strategies as st

import thread_oracle
from conftest import twin_params
from mailaccess import _speedups
from mailaccess.mime import index as mindex
from mailaccess.proto.imap import serialize as S
from mailaccess.query.sort import collate
from mailaccess.query.thread import Thread, is_reply_or_forward
from test_query_thread import _orderedsubject_oracle   # ORDEREDSUBJECT as first written

TWINS = twin_params("thread")

_ID = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])
_SUBJECT = st.sampled_from(["Hello", "Re: Hello", "RE: re: hello", "Fwd: Hello",
                            "[list] Re: Hello", "[fwd: hello]", "hello (fwd)", "Other",
                            "Re: other", "", "Re:", "x", "\u00e9t\u00e9", "Re: \u00c9T\u00c9"])
# dates: ties, before 1970, year 9999 (beyond 32 bits)
_DATE = st.one_of(st.integers(0, 3), st.sampled_from([-2_000_000_000, 253_402_300_799]))


def M(seq, mid, refs, subject, date):
    return thread_oracle.Msg(100 + seq, seq, date, subject, collate(mindex.base_subject(subject)),
                       mid, tuple(refs))


@st.composite
def _msgs(draw, max_size=24):     # (past 16: the merge sort's runs)
    out = []
    for k in range(draw(st.integers(0, max_size))):
        mid = draw(st.one_of(st.none(), _ID))
        refs = draw(st.lists(_ID, max_size=6))
        if mid is not None and draw(st.booleans()):
            refs.insert(draw(st.integers(0, len(refs))), mid)     # refers to itself
        out.append(M(k, mid, refs, draw(_SUBJECT), draw(_DATE)))
    return out


def refs_of(mod, msgs, node=Thread):
    """The trees (NODE None: their thread-list bytes)."""
    return mod.references([x.key for x in msgs], [x.date for x in msgs],
                          [x.message_id for x in msgs], [x.refs for x in msgs],
                          [x.base for x in msgs], [x.subject for x in msgs],
                          is_reply_or_forward, node)


def ordered_of(mod, msgs, node=Thread):
    return mod.orderedsubject([x.key for x in msgs], [x.date for x in msgs],
                              [x.base for x in msgs], node)


def wire(trees) -> bytes:
    """What serialize.thread writes of TREES after ``* THREAD ``."""
    return S.thread(trees).removeprefix(b"* THREAD").strip()


@pytest.mark.parametrize("mod", TWINS)
@settings(max_examples=600, deadline=None)
# a root whose tree hangs under another tree later in the same message
@example([M(0, None, ["a", "b"], "x", 0), M(1, None, ["x", "y"], "x", 0),
          M(2, "m", ["b", "q", "y", "a", "b", "x"], "x", 0)])
# a cut and relinked container whose subtree holds the new parent: no link
@example([M(0, "b", ["a"], "Hello", 1), M(1, "c", ["b"], "Hello", 0),
          M(2, "a", ["c"], "Re: Hello", 2), M(3, "b", ["c"], "Hello", 0)])
# two roots of one base subject, neither a reply: a dummy holds both
@example([M(0, "a", [], "Hello", 1), M(1, "b", [], "Hello", 0)])
@given(_msgs())
def test_references_answer_as_the_oracle(mod, msgs):
    want = thread_oracle.references(msgs)
    assert refs_of(mod, msgs) == want
    assert refs_of(mod, msgs, None) == wire(want)


@pytest.mark.parametrize("mod", TWINS)
@settings(max_examples=300, deadline=None)
@given(_msgs())
def test_orderedsubject_answers_as_first_written(mod, msgs):
    want = _orderedsubject_oracle(msgs)
    assert ordered_of(mod, msgs) == want
    assert ordered_of(mod, msgs, None) == wire(want)


@pytest.mark.parametrize("mod", TWINS)
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-5, 5), max_size=60))
def test_ranks(mod, dates):
    assert mod.ranks(dates) == sorted(range(len(dates)), key=lambda i: (dates[i], i))


@pytest.mark.skipif(_speedups.load_c("thread") is None, reason="thread_c not built")
@settings(max_examples=150, deadline=None)
@given(_msgs(max_size=80))
def test_twins_agree_on_bigger_mailboxes(msgs):
    py, c = _speedups.load_py("thread"), _speedups.load_c("thread")
    assert refs_of(c, msgs) == refs_of(py, msgs)
    assert ordered_of(c, msgs) == ordered_of(py, msgs)
    assert refs_of(c, msgs, None) == refs_of(py, msgs, None) == wire(refs_of(py, msgs))
    assert ordered_of(c, msgs, None) == ordered_of(py, msgs, None) == wire(ordered_of(py, msgs))


@pytest.mark.parametrize("mod", TWINS)
def test_long_chains_do_not_recurse(mod):
    """A reply chain and a chain of dummies, 50,000 deep, under a recursion
    limit far below that: one thread nesting that deep, and one dummy
    holding every message (RFC 5256 REFERENCES step 3)."""
    n = 50_000
    chain = [M(i, f"m{i}", [f"m{i - 1}"] if i else [], "Re: c", i) for i in range(n)]
    dummies = [M(i, f"m{i}", ([f"d{i - 1}"] if i else []) + [f"d{i}"], "s", i)
               for i in range(n)]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        t = refs_of(mod, chain)
        depth = 0
        node = t[0]
        while node.children:
            depth += 1
            node = node.children[0]
        assert len(t) == 1 and depth == n - 1 and node.key == 100 + n - 1
        assert refs_of(mod, chain, None) == b"(" + b" ".join(b"%d" % (100 + i)
                                                            for i in range(n)) + b")"
        t = refs_of(mod, dummies)
        assert len(t) == 1 and t[0].key is None
        assert [x.key for x in t[0].children] == [100 + i for i in range(n)]
        assert refs_of(mod, dummies, None) == b"(" + b"".join(b"(%d)" % (100 + i)
                                                             for i in range(n)) + b")"
        # siblings at every level: 25,000 nested lists
        deep = [M(i, f"m{i}", [f"m{i - 2 + i % 2}"] if i > 1 else [], "Re: c", i)
                for i in range(n)]
        assert refs_of(mod, deep, None) == wire(refs_of(mod, deep))
    finally:
        sys.setrecursionlimit(old)
