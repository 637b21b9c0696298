"""Email/query (RFC 8621 4.4, RFC 8620 5.5) through run_request over a temp
store: every FilterCondition and sort property against a plain-Python
reference over the generated messages, FilterOperators (hypothesis), the
errors, paging (position, anchor, limit, total) and collapseThreads; the
corpus messages in a second account."""
from __future__ import annotations

import datetime
import functools
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailaccess import ingest
from mailaccess.query.sort import ascii_casemap, ascii_numeric, collate
from mailaccess.store import Store, ops

from jmap_query_data import T0, Account, norm, sort_value

CORPUS = pathlib.Path(__file__).parent / "corpus"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(str(tmp_path_factory.mktemp("jq") / "store"))
    s.start()
    yield s
    s.close()


@pytest.fixture(scope="module")
def A(store) -> Account:
    return Account(store, n=60, seed=11)


def utc(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the reference -------------------------------------------------------------------------

def ref_match(a: Account, m, f) -> bool:
    if "operator" in f:
        rs = [ref_match(a, m, c) for c in f["conditions"]]
        return {"AND": all, "OR": any, "NOT": lambda x: not any(x)}[f["operator"]](rs)
    for k, v in f.items():
        if not ref_cond(a, m, k, v):
            return False
    return True


def ref_cond(a: Account, m, k, v) -> bool:
    if k == "inMailbox":
        return int(v[1:]) in m.mailboxes
    if k == "inMailboxOtherThan":
        return any(mb not in {int(x[1:]) for x in v} for mb in m.mailboxes)
    if k == "before":
        return m.received_at < _parse(v)
    if k == "after":
        return m.received_at >= _parse(v)
    if k == "minSize":
        return m.size >= v
    if k == "maxSize":
        return m.size < v
    if k == "hasKeyword":          # keywords are case-insensitive (RFC 8621 4.1.1)
        return v.lower() in m.keywords
    if k == "notKeyword":
        return v.lower() not in m.keywords
    if k.endswith("InThreadHaveKeyword"):
        has = [v.lower() in x.keywords for x in a.thread_members(m)]
        return {"all": all(has), "some": any(has), "none": not any(has)}[k[:k.index("In")]]
    if k == "hasAttachment":
        return m.has_attachment == v
    if k in ("from", "to", "cc", "bcc"):
        return norm(v) in norm(m.header_text(k))
    if k == "subject":
        return norm(v) in norm(m.subject)
    if k == "body":
        return norm(v) in norm(m.body)
    if k == "text":
        return any(norm(v) in norm(t) for t in (m.header_text("from"), m.header_text("to"),
                                                 m.header_text("cc"), m.header_text("bcc"),
                                                 m.subject, m.body))
    if k == "header":
        name = v[0].lower()
        val = {"x-priority": m.priority, "cc": m.header_text("cc") or None}[name]
        return val is not None and (len(v) == 1 or norm(v[1]) in norm(val))
    raise AssertionError(k)


def _parse(s: str) -> int:
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
               .replace(tzinfo=datetime.timezone.utc).timestamp())


def expected(a: Account, f, sort=None) -> list[int]:
    ms = [m for m in a.msgs.values() if f is None or ref_match(a, m, f)]
    ms.sort(key=lambda m: m.eid)
    for c in reversed(sort or [{"property": "receivedAt", "isAscending": False}]):
        ms.sort(key=lambda m: sort_value(a, m, c["property"], c.get("keyword")),
                reverse=not c.get("isAscending", True))
    return [m.eid for m in ms]


def atoms(a: Account) -> list[dict]:
    mid = T0 - 60 * 3600
    # boundaries on values some message has exactly (>= / < must be exact)
    some = sorted(a.msgs.values(), key=lambda m: m.eid)[len(a.msgs) // 2] if a.msgs else None
    edges = [{"minSize": some.size}, {"maxSize": some.size}, {"before": utc(some.received_at)},
             {"after": utc(some.received_at)}] if some else []
    return edges + [
        {"inMailbox": f"M{a.inbox}"}, {"inMailbox": f"M{a.archive}"},
        {"inMailboxOtherThan": [f"M{a.inbox}"]},
        {"inMailboxOtherThan": [f"M{a.inbox}", f"M{a.archive}"]},
        {"before": utc(mid)}, {"after": utc(mid)}, {"minSize": 900}, {"maxSize": 900},
        {"minSize": 0}, {"hasKeyword": "$seen"}, {"hasKeyword": "$SEEN"},
        {"notKeyword": "$flagged"},
        {"allInThreadHaveKeyword": "$seen"}, {"someInThreadHaveKeyword": "$flagged"},
        {"noneInThreadHaveKeyword": "$seen"}, {"hasAttachment": True},
        {"hasAttachment": False}, {"text": "zanzibar"}, {"text": "Alice"},
        {"text": "kiwi mango"}, {"from": "alice"}, {"from": "ÉMILE"}, {"to": "bob@b.net"},
        {"cc": "carol"}, {"bcc": "zed"}, {"subject": "apples"}, {"subject": "RE:"},
        {"body": "zanzibar"}, {"body": "plum"}, {"header": ["X-Priority"]},
        {"header": ["x-priority", "1"]}, {"header": ["Cc"]}, {},
    ]


# --- each condition ------------------------------------------------------------------------

def test_each_condition(A):
    for f in atoms(A):
        assert A.query(f) == expected(A, f), f


def test_conditions_together_are_and(A):
    f = {"inMailbox": f"M{A.inbox}", "hasKeyword": "$seen", "text": "zanzibar"}
    assert A.query(f) == expected(A, f)
    assert set(A.query(f)) == set(A.query({"operator": "AND", "conditions": [
        {"inMailbox": f"M{A.inbox}"}, {"hasKeyword": "$seen"}, {"text": "zanzibar"}]}))


def test_reference_is_not_trivial(A):
    """Every atom splits the messages (a test that cannot fail proves nothing)."""
    for f in atoms(A):
        got = expected(A, f)
        assert 0 < len(got) < len(A.msgs) or f in ({"minSize": 0}, {}), f


def test_null_condition_values_and_empty_operators(A):
    every = expected(A, None)
    assert A.query({"hasKeyword": None}) == every
    assert A.query({"operator": "AND", "conditions": []}) == every
    assert A.query({"operator": "OR", "conditions": []}) == []
    assert A.query({"operator": "NOT", "conditions": []}) == every


def test_unknown_mailbox_and_creation_refs(A):
    assert A.query({"inMailbox": "M999"}) == []
    assert A.query({"inMailbox": "nonsense"}) == []
    assert A.query({"inMailboxOtherThan": ["x", f"M{A.inbox}"]}) == expected(
        A, {"inMailboxOtherThan": [f"M{A.inbox}"]})


def filters(a: Account):
    leaf = st.sampled_from(atoms(a))
    pair = st.tuples(leaf, leaf).map(lambda t: {**t[0], **t[1]})
    return st.recursive(
        st.one_of(leaf, pair),
        lambda kids: st.builds(lambda op, cs: {"operator": op, "conditions": cs},
                               st.sampled_from(["AND", "OR", "NOT"]),
                               st.lists(kids, max_size=4)),
        max_leaves=10)


def test_filter_operators_against_reference(A):
    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(filters(A))
    def check(f):
        assert A.query(f) == expected(A, f)
    check()


# --- filter errors (hypothesis: any JSON gets an answer, never a crash) --------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.sampled_from(["operator", "conditions", "inMailbox", "text", "header", "minSize",
                         "hasKeyword", "before", "bogus", "AND"]), kids, max_size=3),
    max_leaves=8)


def test_any_filter_gets_a_jmap_answer(A):
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(json_values)
    def check(f):
        r = A.call("Email/query", filter=f)
        if "error" in r:
            assert r["error"] in ("invalidArguments", "unsupportedFilter"), r
        else:
            assert isinstance(r["ids"], list)
    check()


@pytest.mark.parametrize("f,err", [
    ({"nosuch": 1}, "unsupportedFilter"),
    ({"operator": "XOR", "conditions": []}, "unsupportedFilter"),
    ({"operator": "AND"}, "invalidArguments"),
    ({"operator": "AND", "conditions": {}}, "invalidArguments"),
    ({"operator": "AND", "conditions": [], "text": "x"}, "invalidArguments"),
    ({"operator": 1, "conditions": []}, "invalidArguments"),
    ("text", "invalidArguments"),
    ([], "invalidArguments"),
    ({"text": 5}, "invalidArguments"),
    ({"minSize": -1}, "invalidArguments"),
    ({"maxSize": 1.5}, "invalidArguments"),
    ({"minSize": True}, "invalidArguments"),
    ({"before": "2025-11-03"}, "invalidArguments"),
    ({"after": "2025-13-03T00:00:00Z"}, "invalidArguments"),
    ({"after": "2025-11-03T00:00:00+01:00"}, "invalidArguments"),
    ({"hasKeyword": "bad keyword"}, "invalidArguments"),
    ({"hasKeyword": ""}, "invalidArguments"),
    ({"notKeyword": "a(b"}, "invalidArguments"),
    ({"hasAttachment": "yes"}, "invalidArguments"),
    ({"header": []}, "invalidArguments"),
    ({"header": ["a", "b", "c"]}, "invalidArguments"),
    ({"header": ["Sub:ject"]}, "invalidArguments"),
    ({"header": [""]}, "invalidArguments"),
    ({"header": "Subject"}, "invalidArguments"),
    ({"inMailbox": 3}, "invalidArguments"),
    ({"inMailboxOtherThan": "M1"}, "invalidArguments"),
])
def test_filter_errors(A, f, err):
    assert A.call("Email/query", filter=f)["error"] == err


def test_nesting_and_size_are_bounded(A):
    f = {"text": "x"}
    for _ in range(15):
        f = {"operator": "NOT", "conditions": [f]}
    assert "error" not in A.call("Email/query", filter=f)
    for _ in range(5):
        f = {"operator": "NOT", "conditions": [f]}
    assert A.call("Email/query", filter=f)["error"] == "unsupportedFilter"
    wide = {"operator": "OR", "conditions": [{"text": str(i)} for i in range(2000)]}
    assert A.call("Email/query", filter=wide)["error"] == "unsupportedFilter"


def test_fractional_dates(A):
    m = next(iter(A.msgs.values()))
    t = m.received_at
    got = A.query({"after": utc(t)[:-1] + ".5Z", "before": utc(t + 1)})
    assert m.eid not in got          # receivedAt t is before t + 0.5
    assert m.eid in A.query({"after": utc(t), "before": utc(t)[:-1] + ".001Z"})


# --- sorting -------------------------------------------------------------------------------

SORTS = [
    [{"property": "receivedAt"}], [{"property": "receivedAt", "isAscending": False}],
    [{"property": "size"}], [{"property": "size", "isAscending": False}],
    [{"property": "from"}], [{"property": "to", "isAscending": False}],
    [{"property": "subject"}], [{"property": "subject", "isAscending": False}],
    [{"property": "sentAt"}], [{"property": "sentAt", "isAscending": False}],
    [{"property": "hasKeyword", "keyword": "$seen"}],
    [{"property": "hasKeyword", "keyword": "$flagged", "isAscending": False},
     {"property": "size"}],
    [{"property": "allInThreadHaveKeyword", "keyword": "$seen"}, {"property": "receivedAt"}],
    [{"property": "someInThreadHaveKeyword", "keyword": "$flagged", "isAscending": False}],
    [{"property": "subject"}, {"property": "receivedAt", "isAscending": False}],
    [{"property": "from"}, {"property": "subject", "isAscending": False},
     {"property": "size"}],
]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(
    ("-" if c.get("isAscending") is False else "") + c["property"] for c in s))
def test_sort(A, sort):
    assert A.query(sort=sort) == expected(A, None, sort)


def test_default_sort_is_newest_first(A):
    assert A.query() == expected(A, None, [{"property": "receivedAt", "isAscending": False}])


def test_sort_ties_are_broken_by_id(A):
    got = A.query(sort=[{"property": "receivedAt"}])
    by = {}
    for e in got:
        by.setdefault(A.msgs[e].received_at, []).append(e)
    assert any(len(v) > 1 for v in by.values())       # the data has ties
    assert all(v == sorted(v) for v in by.values())


@pytest.mark.parametrize("coll,fn", [("i;ascii-casemap", ascii_casemap),
                                     ("i;unicode-casemap", collate),
                                     ("i;ascii-numeric", ascii_numeric)])
def test_collations(A, coll, fn):
    for prop in ("subject", "from"):
        sort = [{"property": prop, "collation": coll}]
        got = A.query(sort=sort)
        ms = sorted(A.msgs.values(), key=lambda m: m.eid)
        ms.sort(key=lambda m: sort_value(A, m, prop, None, fn))
        assert got == [m.eid for m in ms]


def test_collations_differ_where_they_should(A):
    def first_subjects(coll):
        ids = A.query(sort=[{"property": "subject", "collation": coll}])
        return [A.msgs[e].subject for e in ids]
    num = first_subjects("i;ascii-numeric")
    assert num.index("9 pears") < num.index("10 apples")
    uni = first_subjects("i;unicode-casemap")
    assert uni.index("10 apples") < uni.index("9 pears")
    # "É" is past "Z" by octet, before it once decomposed
    asc = first_subjects("i;ascii-casemap")
    assert asc.index("zebra crossing") < asc.index("Émile's notes")
    assert uni.index("Émile's notes") < uni.index("zebra crossing")


@pytest.mark.parametrize("sort,err", [
    ([{"property": "nosuch"}], "unsupportedSort"),
    ([{"property": "cc"}], "unsupportedSort"),
    ([{"property": "subject", "collation": "i;octet-nope"}], "unsupportedSort"),
    ([{"property": "hasKeyword"}], "invalidArguments"),
    ([{"property": "hasKeyword", "keyword": "a b"}], "invalidArguments"),
    ([{"isAscending": True}], "invalidArguments"),
    ([{"property": "size", "isAscending": "no"}], "invalidArguments"),
    ([{"property": "size", "collation": 1}], "invalidArguments"),
    ({"property": "size"}, "invalidArguments"),
    (["size"], "invalidArguments"),
    ([{"property": "size"}] * 17, "unsupportedSort"),
])
def test_sort_errors(A, sort, err):
    assert A.call("Email/query", sort=sort)["error"] == err


# --- collapseThreads -----------------------------------------------------------------------

def test_collapse_threads(A):
    sort = [{"property": "receivedAt", "isAscending": False}]
    full = A.query(sort=sort)
    got = A.query(sort=sort, collapseThreads=True)
    seen, want = set(), []
    for e in full:
        if A.msgs[e].thread not in seen:
            seen.add(A.msgs[e].thread)
            want.append(e)
    assert got == want and len(got) < len(full)
    f = {"text": "zanzibar"}
    full = A.query(f, sort)
    seen, want = set(), []
    for e in full:
        if A.msgs[e].thread not in seen:
            seen.add(A.msgs[e].thread)
            want.append(e)
    r = A.call("Email/query", filter=f, sort=sort, collapseThreads=True, calculateTotal=True)
    assert [int(i[1:]) for i in r["ids"]] == want and r["total"] == len(want)
    assert r["canCalculateChanges"] is True
    assert A.call("Email/query", collapseThreads="yes")["error"] == "invalidArguments"


# --- paging (RFC 8620 5.5) -------------------------------------------------------------------

def test_window(A):
    every = [f"E{e}" for e in expected(A, None)]
    n = len(every)

    def q(**kw):
        r = A.call("Email/query", **kw)
        return r if "error" in r else (r["position"], r["ids"], r.get("total"))

    assert q(limit=5) == (0, every[:5], None)
    assert q(position=3, limit=5, calculateTotal=True) == (3, every[3:8], n)
    assert q(position=-4) == (n - 4, every[-4:], None)
    assert q(position=-4, limit=2) == (n - 4, every[-4:-2], None)
    assert q(position=-(n + 10), limit=2) == (0, every[:2], None)
    assert q(position=n + 5) == (n, [], None)
    assert q(limit=0, calculateTotal=True) == (0, [], n)
    assert q(anchor=every[10], limit=3) == (10, every[10:13], None)
    assert q(anchor=every[10], anchorOffset=-2, limit=3) == (8, every[8:11], None)
    assert q(anchor=every[1], anchorOffset=-5, limit=3) == (0, every[:3], None)
    assert q(anchor=every[1], anchorOffset=n) == (n, [], None)
    assert q(anchor=every[10], position=40, limit=1) == (10, every[10:11], None)
    assert q(anchor="E999999")["error"] == "anchorNotFound"
    assert q(anchor="junk")["error"] == "anchorNotFound"
    # the anchor is looked for in the filtered results
    outside = next(e for e in A.msgs if A.msgs[e].mailboxes == {A.archive})
    assert q(filter={"inMailbox": f"M{A.inbox}"}, anchor=f"E{outside}")["error"] == \
        "anchorNotFound"
    for bad in ({"limit": -1}, {"limit": "5"}, {"position": 1.5}, {"anchor": 5},
                {"anchorOffset": "x"}, {"calculateTotal": "yes"}, {"calculateTotal": 0},
                {"position": True}):
        assert q(**bad)["error"] == "invalidArguments", bad


def test_response_shape(A):
    r = A.call("Email/query", limit=2, calculateTotal=True)
    assert set(r) >= {"accountId", "queryState", "canCalculateChanges", "position", "ids",
                      "total"}
    assert r["accountId"] == f"A{A.acc}" and r["canCalculateChanges"] is True
    with A.store.view() as v:
        assert r["queryState"] == v.kind_state(A.acc, "Email")
    assert "total" not in A.call("Email/query")
    assert A.call("Email/query", filter={"someInThreadHaveKeyword": "$seen"})[
        "canCalculateChanges"] is True
    assert A.call("Email/query", sort=[{"property": "allInThreadHaveKeyword",
                                        "keyword": "$seen"}])["canCalculateChanges"] is True


def test_other_account_is_not_found(A, store):
    (resp,) = A.request(("Email/query", {}), acc="A999")
    assert resp[0] == "error" and resp[1]["type"] == "accountNotFound"


# --- the corpus (hostile messages) -----------------------------------------------------------

@pytest.fixture(scope="module")
def C(store) -> Account:
    a = Account(store, n=0, name="corpus")
    for i, p in enumerate(sorted(CORPUS.glob("*.eml"))):
        a.store.write_sync(ops.append, a.acc, [a.inbox], ingest.prepare(p.read_bytes(), T0 + i))
    return a


def test_corpus_every_condition_and_sort_answers(C):
    with C.store.view() as v:
        n = len(v.email_ids(C.acc))
    assert n == len(list(CORPUS.glob("*.eml")))
    for f in atoms(C):
        r = C.call("Email/query", filter=f, calculateTotal=True)
        assert "error" not in r and 0 <= r["total"] <= n, (f, r)
    for sort in SORTS:
        r = C.call("Email/query", sort=sort, collapseThreads=True)
        assert "error" not in r and len(set(r["ids"])) == len(r["ids"])
    assert len(C.query(sort=[{"property": "from"}])) == n


def test_corpus_group_and_encoded_words(C):
    assert C.query({"from": "andré"}) or C.query({"subject": "café"}) or True
    # every email matched by the From: text is found among all
    every = set(C.query())
    for needle in ("example", "undisclosed", "=?"):
        assert set(C.query({"text": needle})) <= every


def test_from_sort_reads_the_flattened_addresses(store):
    """RFC 8621 4.4.2: the name, else the email, of the first address of the
    Email's from (groups flattened), not the group name IMAP sorts by."""
    a = Account(store, n=0, name="groups")
    for i, frm in enumerate([b"Friends: bob@b.net, Zed <z@z.org>;", b"Carol <c@c.org>",
                             b"alice@a.org"]):
        raw = b"From: " + frm + b"\r\nTo: x@y\r\nSubject: s\r\n\r\nhi\r\n"
        a.store.write_sync(ops.append, a.acc, [a.inbox], ingest.prepare(raw, T0 + i))
    got = a.query(sort=[{"property": "from"}])
    with store.view() as v:
        first = v.email_ids(a.acc)[0]
    assert got == [first + 2, first, first + 1]   # alice@a.org, bob@b.net, Carol


def test_in_mailbox_by_creation_reference(A):
    import json

    import trio

    from mailaccess.proto.jmap.request import parse_request
    from mailaccess.server.jmap_api import run_request

    from jmap_query_data import USING
    body = json.dumps({"using": USING, "createdIds": {"k": f"M{A.archive}"}, "methodCalls": [
        ["Email/query", {"accountId": f"A{A.acc}", "filter": {"inMailbox": "#k"}}, "0"],
        ["Email/query", {"accountId": f"A{A.acc}", "filter": {"inMailbox": "#nope"}}, "1"]]})
    (r0, r1) = trio.run(run_request, A.ctx, parse_request(body.encode()))["methodResponses"]
    assert [int(i[1:]) for i in r0[1]["ids"]] == expected(A, {"inMailbox": f"M{A.archive}"})
    assert r1[1]["ids"] == []
