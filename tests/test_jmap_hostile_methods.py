"""Hostile input to JMAP methods after login (RFC 8620 §5.5, RFC 8621 §7.3):
work a request makes us do stays bounded by the method's limits, and what
is past them is the protocol's error, not a long stall on the loop."""
from __future__ import annotations

import threading

import pytest

from mailaccess import ids
from mailaccess.server import jmap_email_set as es
from mailaccess.server import jmap_submission as sub

from jmap_helpers import deliver, mbx_by_role, message

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


# --- Email/set: patches and placements counted before their entries are read ----------

def _email(ctx):  # noqa: F811
    return ids.email_id(deliver(ctx, mbx_by_role(ctx, "inbox").id, message()).email)


async def _update(ctx, patch, n=1):  # noqa: F811
    eids = [_email(ctx) for _ in range(n)]
    r = await one(ctx, "Email/set", {"update": {e: patch for e in eids}})
    return [(r["notUpdated"] or {}).get(e, {}).get("type") for e in eids]


@pytest.mark.parametrize("n", [1, 3])          # the plain path and the batched one
@pytest.mark.parametrize("head, value, err", [
    ("keywords/k", True, "tooManyKeywords"), ("keywords/k", None, "tooManyKeywords"),
    ("mailboxIds/Mnone", True, "tooManyMailboxes"), ("junk", 1, "invalidPatch")])
async def test_email_patch_of_too_many_paths(ctx, n, head, value, err):  # noqa: F811
    """100k paths in one PatchObject were each checked and resolved on the
    loop (0.5 s for 8 MB); more than MAX_PATCH_PATHS is refused up front."""
    patch = {f"{head}{i}": value for i in range(100_000)}
    assert await _update(ctx, patch, n) == [err] * n


async def test_email_patch_at_the_path_bound_applies(ctx):  # noqa: F811
    patch = {f"keywords/k{i}": None for i in range(es.MAX_PATCH_PATHS - 1)}
    patch["keywords/$seen"] = True
    assert await _update(ctx, patch, 2) == [None, None]


@pytest.mark.parametrize("prop, err, most", [("keywords", "tooManyKeywords", es.MAX_KEYWORDS),
                                             ("mailboxIds", "tooManyMailboxes",
                                              es.MAX_MAILBOXES)])
async def test_email_whole_values_counted_first(ctx, prop, err, most):  # noqa: F811
    """A whole keywords / mailboxIds value past its maximum is tooMany*
    before its entries are read: entries that are all invalid prove it."""
    bad = {f"x{i}": False for i in range(most + 1)}
    assert await _update(ctx, {prop: bad}) == [err]
    assert await _update(ctx, {prop: dict(list(bad.items())[:most])}) == ["invalidProperties"]
    obj = {"mailboxIds": {ids.mailbox_id(mbx_by_role(ctx, "inbox").id): True},
           "subject": "x", "bodyValues": {"1": {"value": "x"}},
           "textBody": [{"partId": "1", "type": "text/plain"}]}
    obj[prop] = bad
    r = await one(ctx, "Email/set", {"create": {"c": obj}})
    assert r["notCreated"]["c"]["type"] == err, r


async def test_email_batched_patches_checked_off_the_loop(ctx, monkeypatch):  # noqa: F811
    """A batch's patches (up to maxObjectsInSet x MAX_PATCH_PATHS paths) are
    checked in the worker pool, not on the event loop's thread."""
    seen = []
    real = es.parse_patch

    def spy(*a):
        seen.append(threading.current_thread() is threading.main_thread())
        return real(*a)
    monkeypatch.setattr(es, "parse_patch", spy)
    assert await _update(ctx, {"keywords/$seen": True}, 3) == [None] * 3
    assert seen == [False] * 3


# --- /changes: the server's own maxChanges ---------------------------------------------

@pytest.mark.parametrize("asked", [None, 10 ** 9])
async def test_changes_capped_by_the_server(ctx, monkeypatch, asked):  # noqa: F811
    """RFC 8620 §5.2: the server may return fewer than maxChanges. Absent or
    huge, a page holds at most MAX_CHANGES ids (not the account's whole
    log); following hasMoreChanges still gives every change once."""
    from mailaccess.server import jmap_standard as std
    monkeypatch.setattr(std, "MAX_CHANGES", 4)
    made = {_email(ctx) for _ in range(10)}
    seen, state, pages = [], "0", 0
    while True:
        args = {"sinceState": state}
        if asked is not None:
            args["maxChanges"] = asked
        r = await one(ctx, "Email/changes", args)
        assert len(r["created"]) + len(r["updated"]) + len(r["destroyed"]) <= 4
        seen += r["created"]
        state, pages = r["newState"], pages + 1
        if not r["hasMoreChanges"]:
            break
    assert sorted(seen) == sorted(made) and pages >= 3
    r = await one(ctx, "Email/changes", {"sinceState": "0", "maxChanges": 2})
    assert len(r["created"]) == 2 and r["hasMoreChanges"]


# --- Mailbox/set: renames over big subtrees ------------------------------------------

async def test_mailbox_rename_walks_the_subtree_only_when_the_name_grows(ctx, monkeypatch):  # noqa: F811
    """Renaming each mailbox of a chain over a wide subtree walked the whole
    subtree per rename on the store writer (chain x subtree: 2.5 s for
    100 x 5,000). A rename that does not lengthen the full name cannot push
    a descendant past the path limit and walks nothing; one that does is
    still checked (and refused when a descendant would be too long)."""
    from mailaccess.store import ops
    made = await one(ctx, "Mailbox/set", {"create": {
        "a": {"name": "a"}, "b": {"name": "b", "parentId": "#a"},
        "c": {"name": "c" * 200, "parentId": "#b"}, "d": {"name": "d" * 200, "parentId": "#c"}}})
    a, b = made["created"]["a"]["id"], made["created"]["b"]["id"]
    walked = []
    real = ops._longest_below
    monkeypatch.setattr(ops, "_longest_below", lambda tx, acc, m: walked.append(m) or
                        real(tx, acc, m))
    r = await one(ctx, "Mailbox/set", {"update": {a: {"name": "x"}, b: {"name": "y"}}})
    assert r["updated"] == {a: None, b: None} and walked == []
    r = await one(ctx, "Mailbox/set", {"update": {b: {"name": "y" * 100}}})
    assert r["notUpdated"][b]["type"] == "invalidProperties" and len(walked) == 1
    r = await one(ctx, "Mailbox/set", {"update": {b: {"name": "y" * 20}}})
    assert r["updated"] == {b: None} and len(walked) == 2


# --- PatchObjects of Mailbox, Identity, EmailSubmission --------------------------------

async def test_submission_patch_of_no_op_paths(ctx):  # noqa: F811
    """Each path of an EmailSubmission patch was applied to a fresh copy of
    the object (paths x object size: 5.3 s for 20,000 paths); the patch is
    applied once, and more than MAX_PATCH_PATHS is invalidPatch."""
    from mailaccess.server import jmap_standard as std
    _, s = await _three(ctx)
    ok = {f"envelope/z{i}": None for i in range(std.MAX_PATCH_PATHS)}   # remove nothing
    r = await one(ctx, "EmailSubmission/set", {"update": {s[0]: ok}})
    assert r["updated"] == {s[0]: None}, r
    sneaky = dict(ok, **{"envelope/mailFrom/email": "eve@example.com"})
    del sneaky["envelope/z0"]
    r = await one(ctx, "EmailSubmission/set", {"update": {s[0]: sneaky}})
    assert r["notUpdated"][s[0]]["type"] == "invalidProperties", r
    assert r["notUpdated"][s[0]]["properties"] == ["envelope"]
    r = await one(ctx, "EmailSubmission/set", {"update": {s[0]: {"threadId/x": 1}}})
    assert r["notUpdated"][s[0]]["properties"] == ["threadId"], r
    big = {f"envelope/z{i}": None for i in range(100_000)}
    r = await one(ctx, "EmailSubmission/set", {"update": {s[0]: big}})
    assert r["notUpdated"][s[0]]["type"] == "invalidPatch", r


async def test_mailbox_and_identity_patches_bounded(ctx):  # noqa: F811
    inbox = ids.mailbox_id(mbx_by_role(ctx, "inbox").id)
    big = {f"myRights/x{i}": True for i in range(100_000)}
    r = await one(ctx, "Mailbox/set", {"update": {inbox: big}})
    assert r["notUpdated"][inbox]["type"] == "invalidPatch", r
    ident = await identity(ctx)
    big = {f"x{i}": None for i in range(100_000)}
    r = await one(ctx, "Identity/set", {"update": {ident: big}})
    assert r["notUpdated"][ident]["type"] == "invalidPatch", r
    r = await one(ctx, "Identity/set", {"update": {ident: {"x0": None}}})
    assert r["notUpdated"][ident]["type"] == "invalidProperties", r
