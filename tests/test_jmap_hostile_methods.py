"""Hostile input to JMAP methods after login (RFC 8620 §5.5, RFC 8621 §7.3):
work a request makes us do stays bounded by the method's limits, and what
is past them is the protocol's error, not a long stall on the loop."""
from __future__ import annotations

import pytest

from mailaccess.server import jmap_submission as sub

from test_jmap_submission import call, ctx, draft, identity, one, submit  # noqa: F401


async def _three(ctx):  # noqa: F811
    e = [draft(ctx) for _ in range(3)]
    s = [(await submit(ctx, x))["created"]["k"]["id"] for x in e]
    return e, s


async def test_submission_query_wide_filter_is_unsupported(ctx):  # noqa: F811
    """A FilterOperator of 100k conditions was evaluated per submission
    (submissions x conditions on the loop): now unsupportedFilter."""
    await _three(ctx)
    wide = {"operator": "OR", "conditions": [{"undoStatus": "final"}] * 100_000}
    for name in ("EmailSubmission/query", "EmailSubmission/queryChanges"):
        args = {"filter": wide}
        if name.endswith("Changes"):
            args["sinceQueryState"] = "0"
        r = await call(ctx, [name, args])
        assert r[0][0] == "error" and r[0][1]["type"] == "unsupportedFilter", r


async def test_submission_query_filter_at_the_bound_still_answers(ctx):  # noqa: F811
    e, s = await _three(ctx)
    n = sub.MAX_FILTER_NODES - 1
    ok = {"operator": "OR", "conditions": [{"undoStatus": "final"}] * (n - 1)
          + [{"emailIds": [e[1]]}]}
    assert (await one(ctx, "EmailSubmission/query", {"filter": ok}))["ids"] == [s[1]]
    deep = {"undoStatus": "pending"}
    for _ in range(sub.MAX_FILTER_DEPTH):
        deep = {"operator": "AND", "conditions": [deep]}
    assert (await one(ctx, "EmailSubmission/query", {"filter": deep}))["ids"] == s
    r = await call(ctx, ["EmailSubmission/query",
                         {"filter": {"operator": "AND", "conditions": [deep]}}])
    assert r[0][1]["type"] == "invalidArguments", r


async def test_submission_query_long_id_lists_match_by_lookup(ctx):  # noqa: F811
    """emailIds / identityIds with many ids (within the node budget: one
    condition) answer the same as a short list."""
    e, s = await _three(ctx)
    ident = await identity(ctx)
    many = [f"Enone{i}" for i in range(50_000)] + [e[2], e[0]]
    q = await one(ctx, "EmailSubmission/query",
                  {"filter": {"emailIds": many, "identityIds": ["Ix"] * 1000 + [ident]}})
    assert q["ids"] == [s[0], s[2]]


@pytest.mark.parametrize("n, ok", [(sub.MAX_SORT, True), (sub.MAX_SORT + 1, False),
                                   (100_000, False)])
async def test_submission_query_many_comparators(ctx, n, ok):  # noqa: F811
    """Each Comparator was one sort of every submission; more than MAX_SORT
    is unsupportedSort (as Email/query)."""
    await _three(ctx)
    r = await call(ctx, ["EmailSubmission/query", {"sort": [{"property": "sentAt"}] * n}])
    assert (r[0][0] == "EmailSubmission/query") is ok, r
    if not ok:
        assert r[0][1]["type"] == "unsupportedSort"


async def test_submission_envelope_past_max_recipients_is_not_read(ctx):  # noqa: F811
    """A given rcptTo longer than [smtp] max_recipients is tooManyRecipients
    before any entry is parsed or checked (100k entries were each validated
    on the loop first): entries that are not even Addresses prove it."""
    e = draft(ctx)
    mx = ctx.cfg.smtp.max_recipients
    envl = {"mailFrom": {"email": "alice@localhost"}, "rcptTo": [7] * 100_000}
    r = await one(ctx, "EmailSubmission/set", {"create": {"k": {
        "identityId": await identity(ctx), "emailId": e, "envelope": envl}}})
    assert r["notCreated"]["k"]["type"] == "tooManyRecipients", r
    assert r["notCreated"]["k"]["maxRecipients"] == mx
    envl["rcptTo"] = [7] * mx      # at the limit, entries are read
    r = await one(ctx, "EmailSubmission/set", {"create": {"k": {
        "identityId": await identity(ctx), "emailId": e, "envelope": envl}}})
    assert r["notCreated"]["k"]["type"] == "invalidProperties", r


async def test_submission_derived_recipients_counted_before_checked(ctx):  # noqa: F811
    mx = ctx.cfg.smtp.max_recipients
    to = ", ".join(f"bad{i}@x..y" for i in range(mx + 1))    # each invalid
    r = await one(ctx, "EmailSubmission/set", {"create": {"k": {
        "identityId": await identity(ctx), "emailId": draft(ctx, to=to)}}})
    assert r["notCreated"]["k"]["type"] == "tooManyRecipients", r["notCreated"]
    r = await one(ctx, "EmailSubmission/set", {"create": {"k": {
        "identityId": await identity(ctx), "emailId": draft(ctx, to="bad@x..y")}}})
    assert r["notCreated"]["k"]["type"] == "invalidRecipients", r["notCreated"]
