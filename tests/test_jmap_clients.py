"""The whole JMAP server driven by third-party clients over real HTTP(S):
jmapc (PyPI) for a full mail flow, jmaplib (PyPI, imported as ``jmap``) for a
similar one, jmap-jam (npm, run by node: tests/js/jam_flow.mjs), plus the
cross-protocol rules (IMAP APPEND -> Email/changes + StateChange; a JMAP
keyword change -> an IMAP session's untagged FETCH with a higher MODSEQ).
EmailSubmission sends to an aiosmtpd sink (tests/smtp_sink.py).  Each client
runs in a thread while the server runs on the loop; every wait is bounded by a
socket timeout, none is timed."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading

import pytest
import trio

from conftest import make_config
from imap_helpers import ca_file, msg, run
from mailaccess import accounts, ids
from smtp_sink import Sink

HERE = os.path.dirname(os.path.abspath(__file__))
JS = os.path.join(HERE, "js")


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def tls_cfg(tmp_path, sink):
    c = make_config(tmp_path)
    return dataclasses.replace(
        c, http=dataclasses.replace(c.http, tls=True),
        smtp=dataclasses.replace(c.smtp, relay_host="127.0.0.1", relay_port=sink.port))


@pytest.fixture
async def srv(tls_cfg, nursery, monkeypatch):
    from mailaccess.server import app

    ctx = await nursery.start(lambda task_status: app.serve(tls_cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file(ctx))
    monkeypatch.setenv("SSL_CERT_FILE", ca_file(ctx))
    yield ctx
    nursery.cancel_scope.cancel()


def host(ctx) -> str:
    return f"localhost:{ctx.bound['http'][0][1]}"


def imap(ctx):
    from imapclient import IMAPClient

    c = IMAPClient("127.0.0.1", port=ctx.bound["imap"][0][1], ssl=False, timeout=30)
    c.login("alice", "pw")
    return c


def seed(ctx, n=3):
    """N messages in INBOX through IMAP APPEND; the last one is unread."""
    c = imap(ctx)
    for i in range(n):
        flags = [] if i == n - 1 else [b"\\Seen"]
        c.append("INBOX", msg(f"seed {i}", body=f"body number {i} banana" if i == 1 else
                              f"body number {i}"), flags=flags)
    c.logout()


def wait_for(cond: threading.Condition, pred, timeout=30.0):
    with cond:
        assert cond.wait_for(pred, timeout), "nothing arrived"


# --- jmapc -------------------------------------------------------------------------------------

async def test_jmapc_full_flow(srv, sink, tmp_path):
    from jmapc import Client, Comparator, EventSourceConfig, Ref
    from jmapc.methods import (CustomMethod, EmailChanges, EmailGet, EmailQuery, EmailSet,
                               EmailSubmissionSet, IdentityGet, MailboxGet,
                               SearchSnippetGet, ThreadGet)
    from jmapc.models import (Email, EmailAddress, EmailBodyPart, EmailBodyValue,
                              EmailQueryFilterCondition, EmailSubmission, Envelope)
    from jmapc.models import Address as EnvAddress

    await run(seed, srv)
    raw = msg("imported one", body="imported body", frm="Carol <carol@example.net>")
    blob_file = tmp_path / "m.eml"
    blob_file.write_bytes(raw)

    def go():
        out = {}
        client = Client.create_with_password(
            host(srv), "alice", "pw",
            event_source_config=EventSourceConfig(types="*", closeafter="no", ping=0))
        session = client.jmap_session
        out["session"] = session
        acc = client.account_id
        mboxes = client.request(MailboxGet(ids=None), raise_errors=True).data
        by_role = {m.role: m for m in mboxes}
        out["mboxes"] = by_role
        inbox, archive = by_role["inbox"], by_role["archive"]
        # Email/query (filter + sort) and Email/get with bodyValues, in one request
        r = client.request([
            EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox.id),
                       sort=[Comparator(property="receivedAt", is_ascending=False)],
                       limit=10),
            EmailGet(ids=Ref("/ids"), properties=["subject", "threadId", "keywords",
                                                 "mailboxIds", "bodyValues", "textBody"],
                     fetch_text_body_values=True),
        ], raise_errors=True)
        out["query"], out["get"] = r[0].response, r[1].response
        state0 = out["get"].state
        emails = out["get"].data
        # Email/set: keywords (patch) and a move INBOX -> Archive
        first, second = emails[0].id, emails[1].id
        r = client.request(EmailSet(update={
            first: {"keywords/$flagged": True, "keywords/$seen": True},
            second: {"mailboxIds": {archive.id: True}},
        }), raise_errors=True)
        out["set"] = r
        out["changes"] = client.request(EmailChanges(since_state=state0), raise_errors=True)
        out["after"] = client.request(EmailGet(ids=[first, second],
                                               properties=["keywords", "mailboxIds"]),
                                      raise_errors=True).data
        # upload + Email/import
        blob = client.upload_blob(blob_file)
        out["blob"] = blob
        imp = CustomMethod(data={"accountId": acc, "emails": {"i1": {
            "blobId": blob.id, "mailboxIds": {inbox.id: True}, "keywords": {"$seen": True}}}})
        imp.jmap_method = "Email/import"
        imp.using = {"urn:ietf:params:jmap:mail"}
        r = client.request(imp, raise_errors=True)
        out["import"] = r.data
        new_id = r.data["created"]["i1"]["id"]
        got = client.request(EmailGet(ids=[new_id], properties=["subject", "threadId", "from"]),
                             raise_errors=True).data[0]
        out["imported"] = got
        out["thread"] = client.request(ThreadGet(ids=[got.thread_id]), raise_errors=True).data
        out["snippets"] = client.request(SearchSnippetGet(
            ids=[e.id for e in emails],
            filter=EmailQueryFilterCondition(text="banana")), raise_errors=True).data
        # push: the first event is the current state, the next follows a write
        events = client.events
        out["ev0"] = next(events)
        # Identity/get + EmailSubmission/set with onSuccessUpdateEmail
        idents = client.request(IdentityGet(ids=None), raise_errors=True).data
        out["identity"] = idents[0]
        drafts, sent = by_role["drafts"].id, by_role["sent"].id
        r = client.request(EmailSet(create={"d1": Email(
            mail_from=[EmailAddress(name="Alice", email="alice@localhost")],
            to=[EmailAddress(email="dave@example.com")], subject="a draft to send",
            mailbox_ids={drafts: True}, keywords={"$draft": True},
            body_values={"t": EmailBodyValue(value="hello Dave\n")},
            text_body=[EmailBodyPart(part_id="t", type="text/plain")])}), raise_errors=True)
        draft = r.created["d1"].id
        out["draft"] = draft
        sub = client.request([EmailSubmissionSet(
            create={"s1": EmailSubmission(
                identity_id=idents[0].id, email_id=draft,
                envelope=Envelope(mail_from=EnvAddress(email="alice@localhost"),
                                  rcpt_to=[EnvAddress(email="dave@example.com"),
                                           EnvAddress(email="erin@example.org")]))},
            on_success_update_email={"#s1": {"keywords/$draft": None,
                                             f"mailboxIds/{drafts}": None,
                                             f"mailboxIds/{sent}": True}})])
        out["submission"] = sub
        if not getattr(sub[0].response, "created", None):
            return out
        out["ev1"] = next(events)
        wait_for(sink.handler.arrived, lambda: sink.received)
        out["after_sub"] = client.request(EmailGet(ids=[draft],
                                                   properties=["keywords", "mailboxIds"]),
                                          raise_errors=True).data[0]
        return out

    out = await run(go)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)
    s = out["session"]
    assert s.username == "alice" and s.api_url == f"https://{host(srv)}/jmap/api/"
    assert {"inbox", "archive", "sent", "drafts", "trash"} <= set(out["mboxes"])
    q, g = out["query"], out["get"]
    assert len(q.ids) == 3 and q.ids == [e.id for e in g.data]
    assert [e.subject for e in g.data] == ["seed 2", "seed 1", "seed 0"] or \
        sorted(e.subject for e in g.data) == ["seed 0", "seed 1", "seed 2"]
    body = g.data[1]
    part = body.text_body[0].part_id
    assert "body number" in body.body_values[part].value
    assert body.keywords == {"$seen": True}
    # the set and what it changed
    set_r = out["set"]
    assert set(set_r.updated) == {g.data[0].id, g.data[1].id} and not set_r.not_updated
    ch = out["changes"]
    assert set(ch.updated) >= {g.data[0].id, g.data[1].id} and ch.old_state == g.state
    a0, a1 = out["after"]
    assert a0.keywords.get("$flagged") and a0.keywords.get("$seen")
    assert a1.mailbox_ids == {out["mboxes"]["archive"].id: True}
    # upload + import
    assert out["blob"].size == len(raw)
    assert out["imported"].subject == "imported one"
    assert out["imported"].mail_from[0].email == "carol@example.net"
    assert out["thread"][0].email_ids == [out["imported"].id]
    snips = {sn.email_id: sn for sn in out["snippets"]}
    assert set(snips) == {e.id for e in g.data}
    hits = [sn for sn in snips.values() if sn.preview and "<mark>" in sn.preview]
    assert len(hits) == 1 and "banana" in hits[0].preview.lower()
    # identity and submission
    assert out["identity"].email == "alice@localhost"
    sub = out["submission"]
    resp = [r.response for r in sub]
    assert resp[0].created["s1"].id, resp
    # the implicit Email/set of onSuccessUpdateEmail (§7.5) follows in the response
    assert len(resp) == 2 and set(resp[1].updated) == {out["draft"]}
    assert out["after_sub"].keywords == {}
    assert out["after_sub"].mailbox_ids == {out["mboxes"]["sent"].id: True}
    r = sink.received[0]
    assert r.mail_from == "alice@localhost"          # the envelope given, not the headers
    assert sorted(r.rcpt_tos) == ["dave@example.com", "erin@example.org"]
    assert b"Subject: a draft to send" in r.content and b"hello Dave" in r.content
    assert b"Bcc:" not in r.content
    # push
    assert out["ev0"].data.changed[acc].email is not None
    assert out["ev1"].data.changed[acc].email != out["ev0"].data.changed[acc].email \
        or out["ev1"].data.changed[acc].mailbox != out["ev0"].data.changed[acc].mailbox
