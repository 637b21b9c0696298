"""Mailbox/changes names every Mailbox whose thread counts an Email change
moved, also one holding another Email of the Thread only (RFC 8621 §2:
unreadThreads counts a Thread with an unread Email anywhere): marking read,
destroying, a new unread reply, moving to the Trash; and it stays bounded
(past its limits every Mailbox is named; over maxChanges the client is told
to fetch again)."""
from __future__ import annotations

import pytest

from mailaccess import ids
from mailaccess.server import jmap_mailbox

from jmap_helpers import api, deliver, make_ctx, make_store, mbx_by_role, message, one

COUNTS = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]


@pytest.fixture
def ctx(tmp_path):
    store = make_store(tmp_path)
    yield make_ctx(store)
    store.close()


def mid(ctx, role):
    return ids.mailbox_id(mbx_by_role(ctx, role).id)


async def counts(ctx) -> dict:
    res = await one(ctx, "Mailbox/get", {"ids": None})
    return {m["id"]: tuple(m[c] for c in COUNTS) for m in res["list"]}, res["state"]


async def email_id(ctx, mbx_role) -> str:
    res = await one(ctx, "Email/query", {"filter": {"inMailbox": mid(ctx, mbx_role)}})
    return res["ids"][0]


async def setup_thread(ctx):
    """An unread email in INBOX and its read reply in Archive (one Thread)."""
    deliver(ctx, mbx_by_role(ctx, "inbox").id, message("plan", "<1@x>"))
    deliver(ctx, mbx_by_role(ctx, "archive").id, message("Re: plan", "<2@x>", "<1@x>"),
            ["$seen"])
    before, st = await counts(ctx)
    assert before[mid(ctx, "archive")] == (1, 0, 1, 1)      # the thread is unread
    return before, st


async def changed_as_told(ctx, before, st):
    """Every Mailbox whose counts moved since ST is in Mailbox/changes's
    updated (or created), and updatedProperties allows the counts."""
    after, _ = await counts(ctx)
    moved = {m for m, c in after.items() if before.get(m) != c}
    res = await one(ctx, "Mailbox/changes", {"sinceState": st})
    told = set(res["updated"]) | set(res["created"])
    assert moved <= told, (moved, res)
    assert res["updatedProperties"] in (None, COUNTS)
    return res, after


async def test_marking_read_in_one_mailbox_updates_the_other(ctx):
    before, st = await setup_thread(ctx)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"keywords/$seen": True}}})
    res, after = await changed_as_told(ctx, before, st)
    assert after[mid(ctx, "archive")] == (1, 0, 1, 0)
    assert mid(ctx, "archive") in res["updated"]
    assert res["updatedProperties"] == COUNTS


async def test_destroying_the_unread_email_updates_the_other(ctx):
    before, st = await setup_thread(ctx)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"destroy": [e]})
    res, after = await changed_as_told(ctx, before, st)
    assert after[mid(ctx, "archive")] == (1, 0, 1, 0)


async def test_moving_the_unread_email_to_the_trash_updates_the_other(ctx):
    before, st = await setup_thread(ctx)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"mailboxIds": {mid(ctx, "trash"): True}}}})
    res, after = await changed_as_told(ctx, before, st)
    assert after[mid(ctx, "archive")] == (1, 0, 1, 0)     # unread only in the trash now


async def test_a_new_unread_reply_updates_every_mailbox_of_the_thread(ctx):
    deliver(ctx, mbx_by_role(ctx, "archive").id, message("plan", "<1@x>"), ["$seen"])
    before, st = await counts(ctx)
    deliver(ctx, mbx_by_role(ctx, "inbox").id, message("Re: plan", "<2@x>", "<1@x>"))
    res, after = await changed_as_told(ctx, before, st)
    assert after[mid(ctx, "archive")] == (1, 0, 1, 1)
    assert mid(ctx, "archive") in res["updated"]


async def test_pages_and_paging_states_keep_the_extra(ctx):
    before, st = await setup_thread(ctx)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"keywords/$seen": True}}})
    seen = set()
    state = st
    for _ in range(10):
        res = await one(ctx, "Mailbox/changes", {"sinceState": state, "maxChanges": 2})
        assert len(res["created"] + res["updated"] + res["destroyed"]) <= 2
        seen.update(res["updated"])
        state = res["newState"]
        if not res["hasMoreChanges"]:
            break
    assert {mid(ctx, "archive"), mid(ctx, "inbox")} <= seen
    # from the newest state nothing more
    res = await one(ctx, "Mailbox/changes", {"sinceState": state})
    assert res["updated"] == [] and res["created"] == []


async def test_more_than_max_changes_asks_the_client_to_fetch_again(ctx):
    before, st = await setup_thread(ctx)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"keywords/$seen": True}}})
    r = await api(ctx, ["Mailbox/changes", {"sinceState": st, "maxChanges": 1}])
    assert r[0][0] == "error" and r[0][1]["type"] == "cannotCalculateChanges"


async def test_past_the_limits_every_mailbox_is_named(ctx, monkeypatch):
    before, st = await setup_thread(ctx)
    monkeypatch.setattr(jmap_mailbox, "SPREAD_INLINE", 0)
    monkeypatch.setattr(jmap_mailbox, "SPREAD_LIMIT", 0)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"keywords/$seen": True}}})
    res, after = await changed_as_told(ctx, before, st)
    assert set(res["updated"]) == set(after)          # all six


async def test_in_the_pool_past_the_inline_limit(ctx, monkeypatch):
    before, st = await setup_thread(ctx)
    monkeypatch.setattr(jmap_mailbox, "SPREAD_INLINE", 0)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"keywords/$seen": True}}})
    res, after = await changed_as_told(ctx, before, st)
    assert set(res["updated"]) == {mid(ctx, "inbox"), mid(ctx, "archive")}


async def test_a_mailbox_created_later_is_not_named_before_its_creation(ctx):
    before, st = await setup_thread(ctx)
    e = await email_id(ctx, "inbox")
    await one(ctx, "Email/set", {"update": {e: {"keywords/$seen": True}}})
    r = await one(ctx, "Mailbox/set", {"create": {"n": {"name": "new"}}})
    new = r["created"]["n"]["id"]
    e2 = await email_id(ctx, "archive")
    await one(ctx, "Email/set", {"update": {e2: {"mailboxIds": {new: True}}}})
    # paging by 2: no page names the new mailbox (where e2 is now) before
    # the page that creates it; the Archive's count change is named
    state, created, updated = st, False, set()
    for _ in range(10):
        res = await one(ctx, "Mailbox/changes", {"sinceState": state, "maxChanges": 2})
        if not created:
            assert new not in res["updated"], res
        created = created or new in res["created"]
        updated.update(res["updated"])
        state = res["newState"]
        if not res["hasMoreChanges"]:
            break
    assert created and {mid(ctx, "inbox"), mid(ctx, "archive")} <= updated
    full = await one(ctx, "Mailbox/changes", {"sinceState": st})
    assert new in full["created"] and new not in full["updated"]
