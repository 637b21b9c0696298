"""Email/queryChanges (RFC 8621 4.5, RFC 8620 5.6) and the result cache that
Email/query patches from the change log (query/account.py): after random
writes (keywords, moves, destroys, new mail) the query still equals the
plain-Python reference, and a client applying removed/added to its old list
gets the new one."""
from __future__ import annotations

import random

import pytest

from mailaccess.query import account as qaccount
from mailaccess.query import engine
from mailaccess.query import model as q
from mailaccess.server import jmap_email_query as jq
from mailaccess.store import Store, ops

from jmap_query_data import Account
from test_jmap_email_query import expected


@pytest.fixture
def A(tmp_path) -> Account:
    s = Store(str(tmp_path / "store"))
    s.start()
    yield Account(s, n=30, seed=5)
    s.close()


def apply(old: list[str], removed: list[str], added: list[dict]) -> list[str]:
    """The client's side of RFC 8620 5.6."""
    rem = set(removed)
    out = [i for i in old if i not in rem]
    for a in sorted(added, key=lambda a: a["index"]):
        out.insert(a["index"], a["id"])
    return out


def write(A: Account, rng: random.Random, step: int) -> None:
    """One random change, made through store ops and mirrored in A.msgs."""
    op = rng.choice(["kw", "kw", "move", "destroy", "add"])
    eids = sorted(A.msgs)
    if op == "add" or not eids:
        A.add(rng, 1000 + step)
        return
    e = rng.choice(eids)
    m = A.msgs[e]
    if op == "kw":
        kw = rng.choice(["$seen", "$flagged"])
        if kw in m.keywords:
            A.store.write_sync(ops.set_keywords, A.acc, [e], remove=[kw])
            m.keywords.discard(kw)
        else:
            A.store.write_sync(ops.set_keywords, A.acc, [e], add=[kw])
            m.keywords.add(kw)
    elif op == "move":
        dst = rng.choice([{A.inbox}, {A.archive}, {A.inbox, A.archive}, {A.sent}])
        A.store.write_sync(ops.set_mailboxes, A.acc, e, dst)
        m.mailboxes = set(dst)
    else:
        A.store.write_sync(ops.destroy_emails, A.acc, [e])
        del A.msgs[e]


def queries(A: Account):
    return [
        (None, None),
        ({"inMailbox": f"M{A.inbox}"}, [{"property": "receivedAt", "isAscending": False}]),
        ({"hasKeyword": "$seen"}, [{"property": "subject"}]),
        ({"notKeyword": "$flagged", "text": "zanzibar"}, None),
        ({"operator": "OR", "conditions": [{"inMailbox": f"M{A.archive}"},
                                           {"minSize": 1000}]},
         [{"property": "hasKeyword", "keyword": "$flagged"}, {"property": "size"}]),
        ({"text": "kiwi"}, [{"property": "from"}]),                  # immutable
        ({"maxSize": 1200}, [{"property": "sentAt", "isAscending": False}]),  # immutable
        # thread-wide: one email's change moves the others of its thread
        ({"someInThreadHaveKeyword": "$flagged"}, None),
        ({"operator": "NOT", "conditions": [{"allInThreadHaveKeyword": "$seen"}]},
         [{"property": "size"}]),
        (None, [{"property": "someInThreadHaveKeyword", "keyword": "$seen"},
                {"property": "receivedAt", "isAscending": False}]),
    ]


def collapsed(A: Account, ids: list[int]) -> list[int]:
    seen, out = set(), []
    for e in ids:
        if A.msgs[e].thread not in seen:
            seen.add(A.msgs[e].thread)
            out.append(e)
    return out


COLLAPSED = [(None, None, True), ({"inMailbox": "INBOX"}, [{"property": "subject"}], True),
             ({"text": "kiwi"}, [{"property": "receivedAt"}], True)]


def test_queries_follow_random_writes(A):
    rng = random.Random(2)
    qs = [(f, s, False) for f, s in queries(A)] + [
        ({"inMailbox": f"M{A.inbox}"} if f == {"inMailbox": "INBOX"} else f, s, c)
        for f, s, c in COLLAPSED]

    def args_of(f, s, c):
        return {**({"filter": f} if f else {}), **({"sort": s} if s else {}),
                **({"collapseThreads": True} if c else {})}
    last = {}
    for i, q in enumerate(qs):
        r = A.call("Email/query", **args_of(*q))
        last[i] = (r["queryState"], r["ids"])
    for step in range(60):
        for _ in range(rng.randint(1, 3)):
            write(A, rng, step)
        for i, (f, s, c) in enumerate(qs):
            args = args_of(f, s, c)
            r = A.call("Email/query", **args)
            want = expected(A, f, s)
            want = [f"E{e}" for e in (collapsed(A, want) if c else want)]
            assert r["ids"] == want, (step, f, s)
            old_state, old_ids = last[i]
            c = A.call("Email/queryChanges", sinceQueryState=old_state, calculateTotal=True,
                       **args)
            assert "error" not in c, c
            assert c["oldQueryState"] == old_state and c["newQueryState"] == r["queryState"]
            assert apply(old_ids, c["removed"], c["added"]) == want, (step, f, s, c)
            assert c["total"] == len(want)
            assert [a["index"] for a in c["added"]] == sorted(a["index"] for a in c["added"])
            last[i] = (r["queryState"], r["ids"])


def test_cached_result_is_patched_not_recomputed(A, monkeypatch):
    A.call("Email/query", filter={"inMailbox": f"M{A.inbox}"})
    e = next(iter(A.msgs))
    A.store.write_sync(ops.set_keywords, A.acc, [e], add=["$junk"])
    calls = []
    real = qaccount._full
    monkeypatch.setattr(qaccount, "_full", lambda *a: calls.append(a) or real(*a))
    r = A.call("Email/query", filter={"inMailbox": f"M{A.inbox}"})
    assert calls == []
    assert r["ids"] == [f"E{x}" for x in expected(A, {"inMailbox": f"M{A.inbox}"})]
    # a thread-wide query too
    A.call("Email/query", collapseThreads=True)
    assert len(calls) == 1
    A.store.write_sync(ops.set_keywords, A.acc, [e], remove=["$junk"])
    A.call("Email/query", collapseThreads=True)
    assert len(calls) == 1


def test_immutable_query_changes_and_up_to_id(A):
    f, s = {"maxSize": 100_000}, [{"property": "receivedAt"}]
    r = A.call("Email/query", filter=f, sort=s)
    e = next(iter(A.msgs))
    A.store.write_sync(ops.set_keywords, A.acc, [e], add=["$seen", "$flagged"])
    c = A.call("Email/queryChanges", filter=f, sort=s, sinceQueryState=r["queryState"])
    assert c["removed"] == [] and c["added"] == []         # keywords do not matter here
    # new mail: one late (at the end), one early (at the start)
    rng = random.Random(9)
    late, early = A.add(rng, 500), A.add(rng, 501)
    assert late.received_at != early.received_at or True
    new = [f"E{x}" for x in expected(A, f, s)]
    c = A.call("Email/queryChanges", filter=f, sort=s, sinceQueryState=r["queryState"])
    assert apply(r["ids"], c["removed"], c["added"]) == new
    up_to = r["ids"][2]
    c = A.call("Email/queryChanges", filter=f, sort=s, sinceQueryState=r["queryState"],
               upToId=up_to)
    limit = new.index(up_to)
    assert all(a["index"] <= limit for a in c["added"])
    assert apply(r["ids"][:3], c["removed"], c["added"]) == new[:limit + 1]
    # with a mutable filter upToId is ignored
    c2 = A.call("Email/queryChanges", sort=s, filter={"hasKeyword": "$seen"},
                sinceQueryState=r["queryState"], upToId=up_to)
    assert "error" not in c2


def test_query_changes_errors(A):
    r = A.call("Email/query")
    st = r["queryState"]
    for _ in range(3):
        A.add(random.Random(1), 77)
    c = A.call("Email/queryChanges", sinceQueryState=st, maxChanges=2)
    assert c["error"] == "tooManyChanges"
    c = A.call("Email/queryChanges", sinceQueryState=st, maxChanges=3)
    assert len(c["added"]) == 3
    for bad in ("999999", "junk", ""):
        assert A.call("Email/queryChanges", sinceQueryState=bad)[
            "error"] == "cannotCalculateChanges", bad
    assert A.call("Email/queryChanges")["error"] == "invalidArguments"
    assert A.call("Email/queryChanges", sinceQueryState=st, maxChanges=-1)[
        "error"] == "invalidArguments"
    assert A.call("Email/queryChanges", sinceQueryState=st, filter={"x": 1})[
        "error"] == "unsupportedFilter"
    same = A.call("Email/queryChanges", sinceQueryState=A.call("Email/query")["queryState"])
    assert same["removed"] == [] and same["added"] == []


def test_cache_is_bounded():
    c = qaccount.ResultCache(max_entries=3, max_ids=10)
    def res(n):
        return qaccount.Result("1", [(e, ()) for e in range(n)])
    for i in range(5):
        c.put(("k", i), res(2))
    assert len(c) == 3 and c.get(("k", 0)) is None and c.get(("k", 4)) is not None
    c.put(("big",), res(11))
    assert c.get(("big",)) is None
    for i in range(5):
        c.put(("m", i), res(4))
    assert sum(len(c.get(k).ids) for k in list(c._d)) <= 10


def test_saved_inside_an_operator_reads_memberships(A):
    """engine: a membership condition (Saved, InMailbox) below And/Or/Not
    decodes the memberships (it used to see none)."""
    with A.store.view() as v:
        cands = v.uids(A.acc, A.inbox)
        every = [u for u, _ in cands]
        assert engine.search(v, A.acc, cands, q.And([q.Saved(after=0), q.Larger(0)]),
                             mailbox=A.inbox) == every
        assert engine.search(v, A.acc, cands, q.Not(q.Saved(after=0)), mailbox=A.inbox) == []
        assert engine.search(v, A.acc, cands, q.Or([q.InMailbox(A.inbox), q.Smaller(0)])) \
            == every


def test_split_mailbox():
    assert qaccount.split_mailbox(q.InMailbox(3)) == (3, q.All())
    assert qaccount.split_mailbox(q.And([q.Text("x"), q.InMailbox(3)])) == (3, q.Text("x"))
    assert qaccount.split_mailbox(q.Or([q.InMailbox(3)])) == (None, q.Or([q.InMailbox(3)]))
    assert jq.cache_for(object.__new__(Store)) is not None


def test_a_crowd_computes_once(A, monkeypatch):
    import json

    import trio

    from mailaccess.proto.jmap.request import parse_request
    from mailaccess.server.jmap_api import run_request

    from jmap_query_data import USING

    calls = []
    real = qaccount._full
    monkeypatch.setattr(qaccount, "_full", lambda *a: calls.append(a) or real(*a))
    body = json.dumps({"using": USING, "methodCalls": [
        ["Email/query", {"accountId": f"A{A.acc}", "filter": {"text": "kiwi"}}, "0"]]}).encode()
    got = []

    async def main():
        async def one():
            got.append(await run_request(A.ctx, parse_request(body)))
        async with trio.open_nursery() as n:
            for _ in range(10):
                n.start_soon(one)
    trio.run(main)
    assert len(calls) == 1
    assert len({json.dumps(g) for g in got}) == 1
