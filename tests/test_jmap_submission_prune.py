"""Sent and canceled EmailSubmissions are forgotten after ``[jmap]
submission_retention_days`` (RFC 8621 7: the server may delete them after a
certain time): destroyed in the store, logged so that
EmailSubmission/changes tells clients; one still in the queue stays
whatever its age, and so does every younger one."""
from __future__ import annotations

import time

from mailaccess import ids
from mailaccess.server import jmap
from mailaccess.store import sending

from test_jmap_submission import ctx, draft, one, submit  # noqa: F401 (ctx: a fixture)

DAY = 86400


async def _sent(ctx, how: str) -> int:  # noqa: F811
    sid = ids.parse("S", (await submit(ctx, draft(ctx)))["created"]["k"]["id"])
    if how == "final":              # the queue took it and every recipient has an outcome
        ctx.store.write_sync(sending.claim, ctx.acc, sid)
        ctx.store.write_sync(sending.record_attempt, ctx.acc, sid,
                             {"bob@example.com": ("yes", "250 ok")}, None)
    elif how == "canceled":
        ctx.store.write_sync(sending.cancel_submission, ctx.acc, sid)
    elif how == "retrying":         # taken, still queued for a retry
        ctx.store.write_sync(sending.claim, ctx.acc, sid)
        ctx.store.write_sync(sending.record_attempt, ctx.acc, sid,
                             {"bob@example.com": ("queued", "451 later")}, int(time.time()))
    return sid


def _ids(ctx) -> set[int]:  # noqa: F811
    with ctx.store.view() as v:
        return set(v.submissions(ctx.acc))


async def test_old_finished_submissions_go_and_changes_say_so(ctx):  # noqa: F811
    final, canceled, retrying, pending = [await _sent(ctx, h) for h in
                                          ("final", "canceled", "retrying", "pending")]
    state = (await one(ctx, "EmailSubmission/get", {"ids": []}))["state"]
    # all four were sent "now" (+ the hold): 30 days later the finished two go
    await jmap.prune_submissions(ctx.store, 30, time.time() + 31 * DAY + 3600)
    assert _ids(ctx) == {retrying, pending}
    ch = await one(ctx, "EmailSubmission/changes", {"sinceState": state})
    assert set(ch["destroyed"]) == {ids.submission_id(final), ids.submission_id(canceled)}
    got = await one(ctx, "EmailSubmission/get", {"ids": [ids.submission_id(final)]})
    assert got["notFound"] == [ids.submission_id(final)]


async def test_younger_ones_and_zero_days_stay(ctx):  # noqa: F811
    sids = [await _sent(ctx, "final") for _ in range(3)]
    await jmap.prune_submissions(ctx.store, 30, time.time() + 10 * DAY)
    assert _ids(ctx) == set(sids)
    await jmap.prune_submissions(ctx.store, 0, time.time() + 1000 * DAY)
    assert _ids(ctx) == set(sids)


async def test_a_pass_in_slices_reaches_every_account(ctx):  # noqa: F811
    """LIMIT records per write transaction; the scan resumes where it
    stopped and skips an account at its first younger submission."""
    from mailaccess.store import ops
    mine = [await _sent(ctx, "final") for _ in range(5)]
    other = ctx.store.write_sync(ops.create_account, "bob", "x")
    theirs = [ctx.store.write_sync(
        sending.enqueue, other, b"x", "bob@x", ["a@y"], now=0, send_at=0, expires=1,
        submission={"undoStatus": "canceled", "at": 0}) for _ in range(4)]
    for q in theirs:
        ctx.store.write_sync(sending._drop_entry, other, q)
    cutoff, start, passes = int(time.time() + 31 * DAY), b"", 0
    while start is not None:
        start = ctx.store.write_sync(sending.prune_submissions, cutoff, start, 2)
        passes += 1
    assert passes >= 5
    assert _ids(ctx) == set()
    with ctx.store.view() as v:
        assert v.submissions(other) == {}
    assert mine and theirs


async def test_the_running_server_prunes(tmp_path, nursery, monkeypatch):
    """What runs: the HTTP service's background task prunes (its interval
    shortened for the test), the old canceled submission goes, the young
    one stays."""
    import dataclasses

    import trio

    from conftest import make_config
    from mailaccess import accounts
    from mailaccess.server import app

    monkeypatch.setattr(jmap, "UPLOAD_SWEEP_INTERVAL", 0.05)
    c = make_config(tmp_path)
    c = dataclasses.replace(c, jmap=dataclasses.replace(c.jmap, submission_retention_days=1))
    srv = await nursery.start(lambda task_status: app.serve(c, task_status=task_status,
                                                             install_signals=False))
    store = srv.store
    await trio.to_thread.run_sync(accounts.add_user, store, "alice", "pw")
    acc = accounts.lookup(store, "alice").id

    def make(at):
        q = store.write_sync(sending.enqueue, acc, b"x", "alice@x", ["a@y"], now=at,
                             send_at=at, expires=at + 1,
                             submission={"undoStatus": "canceled", "at": at})
        store.write_sync(sending._drop_entry, acc, q)
        return q
    old, young = make(int(time.time()) - 3 * DAY), make(int(time.time()))
    with trio.fail_after(30):           # a hang guard, not a timing check
        while True:
            with store.view() as v:
                left = set(v.submissions(acc))
            if old not in left:
                break
            await trio.sleep(0.05)
    assert young in left
    nursery.cancel_scope.cancel()
