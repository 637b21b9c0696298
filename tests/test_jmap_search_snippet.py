"""SearchSnippet/get (RFC 8621 5) through run_request, and the marking
functions (server/jmap_snippet.py) with hypothesis."""
from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess import ingest
from mailaccess.server import jmap_snippet as sn
from mailaccess.store import Store, ops

from jmap_query_data import T0, Account


@pytest.fixture(scope="module")
def A(tmp_path_factory) -> Account:
    s = Store(str(tmp_path_factory.mktemp("sn") / "store"))
    s.start()
    a = Account(s, n=0)
    raws = {
        "plain": (b"From: a@x.org\r\nSubject: apples & <pears>\r\n\r\n"
                  b"we like kiwi   mango a lot\r\n"),
        "html": (b"From: a@x.org\r\nSubject: html one\r\nContent-Type: text/html\r\n\r\n"
                 b"<p>Hello <b>kiwi</b> &amp; co</p>\r\n"),
        "long": (b"From: a@x.org\r\nSubject: long\r\n\r\n" + b"alpha beta " * 200
                 + b"the Zanzibar <treaty> " + b"gamma delta " * 200 + b"\r\n"),
        "none": b"From: a@x.org\r\nSubject: nothing here\r\n\r\nplain text\r\n",
    }
    a.eids = {}
    for i, (k, raw) in enumerate(raws.items()):
        ap = s.write_sync(ops.append, a.acc, [a.inbox], ingest.prepare(raw, T0 + i))
        a.eids[k] = f"E{ap.email}"
    yield a
    s.close()


def snip(A, f, *names):
    r = A.call("SearchSnippet/get", filter=f, emailIds=[A.eids[n] for n in names])
    assert "error" not in r, r
    return {x["emailId"]: (x["subject"], x["preview"]) for x in r["list"]}


def test_subject_and_preview_marked_and_escaped(A):
    got = snip(A, {"text": "apples"}, "plain")
    assert got[A.eids["plain"]] == ("<mark>apples</mark> &amp; &lt;pears&gt;", None)
    got = snip(A, {"text": "KIWI mango"}, "plain", "html", "none")
    assert got[A.eids["plain"]] == (None, "we like <mark>kiwi mango</mark> a lot")
    assert got[A.eids["html"]] == (None, None)      # not the phrase
    assert got[A.eids["none"]] == (None, None)
    got = snip(A, {"text": "kiwi"}, "html")
    assert got[A.eids["html"]] == (None, "Hello <mark>kiwi</mark> &amp; co")


def test_which_conditions_mark_what(A):
    assert snip(A, {"subject": "pears"}, "plain")[A.eids["plain"]] == (
        "apples &amp; &lt;<mark>pears</mark>&gt;", None)
    assert snip(A, {"body": "apples"}, "plain")[A.eids["plain"]] == (None, None)
    assert snip(A, {"body": "like"}, "plain")[A.eids["plain"]][0] is None
    assert snip(A, {"from": "a@x.org"}, "plain")[A.eids["plain"]] == (None, None)
    # terms under NOT are not highlighted; AND/OR are
    f = {"operator": "AND", "conditions": [
        {"operator": "NOT", "conditions": [{"text": "apples"}]},
        {"operator": "OR", "conditions": [{"subject": "pears"}]}]}
    assert snip(A, f, "plain")[A.eids["plain"]][0] == "apples &amp; &lt;<mark>pears</mark>&gt;"
    assert snip(A, None, "plain")[A.eids["plain"]] == (None, None)


def test_long_body_window(A):
    _, prev = snip(A, {"text": "zanzibar treaty"}, "long")[A.eids["long"]]
    assert prev is None          # the words are not adjacent: "<treaty>"
    _, prev = snip(A, {"body": "zanzibar"}, "long")[A.eids["long"]]
    assert "<mark>Zanzibar</mark> &lt;treaty&gt;" in prev
    assert len(prev.encode()) <= 255
    assert not prev.startswith("alpha beta alpha beta alpha beta alpha beta alpha beta alpha")


def test_not_found_and_errors(A):
    r = A.call("SearchSnippet/get", filter={"text": "x"},
               emailIds=[A.eids["plain"], "E9999", "junk", A.eids["plain"]])
    assert [x["emailId"] for x in r["list"]] == [A.eids["plain"]]
    assert r["notFound"] == ["E9999", "junk"] and r["accountId"] == f"A{A.acc}"
    assert A.call("SearchSnippet/get", filter=None)["error"] == "invalidArguments"
    assert A.call("SearchSnippet/get", emailIds="E1")["error"] == "invalidArguments"
    assert A.call("SearchSnippet/get", emailIds=["E1"], filter={"nosuch": 1})[
        "error"] == "unsupportedFilter"
    assert A.call("SearchSnippet/get", emailIds=[f"E{i}" for i in range(1001)])[
        "error"] == "requestTooLarge"


# --- the marking functions -------------------------------------------------------------------

def _plain(marked: str) -> str:
    return html.unescape(marked.replace("<mark>", "").replace("</mark>", ""))


texts = st.text(alphabet=st.sampled_from("ab <>&é\n\tXY"), max_size=400)
terms = st.lists(st.text(alphabet=st.sampled_from("ab <&Y"), min_size=1, max_size=4),
                 max_size=3)


def _reference_spans(text: str, ts: list[str]) -> list[tuple[int, int]]:
    """Every position where a term starts, as covered ranges (brute force)."""
    low = text.lower()
    cover = [False] * len(text)
    for t in ts:
        n = " ".join(t.split()).lower()
        if not n:
            continue
        for i in range(len(low) - len(n) + 1):
            if low.startswith(n, i):
                for j in range(i, i + len(n)):
                    cover[j] = True
    return cover


@settings(max_examples=300, deadline=None)
@given(texts, terms)
def test_preview_is_escaped_marked_and_bounded(text, ts):
    out = sn.mark_preview(text, ts)
    collapsed = " ".join(text.split())
    if not any(_reference_spans(collapsed, ts)):
        assert out is None
        return
    assert out is not None and len(out.encode()) <= sn.PREVIEW_BYTES
    # nothing but the mark tags is markup; the text is a piece of the body
    assert "<" not in re.sub(r"</?mark>", "", out) and ">" not in re.sub(r"</?mark>", "", out)
    assert _plain(out) in collapsed
    assert "<mark>" in out


@settings(max_examples=300, deadline=None)
@given(texts, terms)
def test_subject_marks_every_match(text, ts):
    out = sn.mark_subject(text, ts)
    collapsed = " ".join(text.split())
    cover = _reference_spans(collapsed, ts)
    if not any(cover):
        assert out is None
        return
    assert _plain(out) == collapsed
    # the marked characters are exactly those some term occurrence covers,
    # except where a later occurrence overlaps one already taken
    marked = [False] * len(collapsed)
    pos = 0
    for piece in re.split(r"(<mark>.*?</mark>)", out, flags=re.S):
        inner = piece[6:-7] if piece.startswith("<mark>") else None
        n = len(html.unescape(inner if inner is not None else piece))
        if inner is not None:
            for j in range(pos, pos + n):
                marked[j] = True
        pos += n
    assert all(c for c, m in zip(cover, marked) if m)      # nothing marked that is no hit
    assert sum(marked) >= 1


def test_marking_hostile_text_returns():
    """Terms that almost match everywhere (a backtracking matcher's worst
    case) on a 300 KB body: plain substring scans, so this returns at once.
    No timing threshold: a regression is a test that does not finish."""
    body = "a" * 200_000 + " " * 100_000 + "a b"
    assert sn.mark_preview(body, ["a" * 500 + "b", "a " * 300 + "c", "a b"]).endswith(
        "<mark>a b</mark>")
    assert sn.mark_subject(body, ["a" * 1000 + "x"]) is None
