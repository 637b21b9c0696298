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
from imap_helpers import ca_file, client_ssl, msg, run
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


async def test_jmapc_reads_the_last_of_repeated_fields(srv):
    """RFC 8621 §4.1.3: a message with two From and two Subject fields (RFC
    5322 allows one; real mail breaks that) shows jmapc the last ones, while
    an IMAP client's ENVELOPE keeps the first (as Dovecot's does)."""
    from jmapc import Client
    from jmapc.methods import EmailGet, EmailQuery

    raw = (b"From: First <first@example.com>\r\nSubject: first subject\r\n"
           b"From: Last <last@example.com>\r\nSubject: last subject\r\n"
           b"Message-ID: <twice@example.com>\r\n\r\nbody\r\n")

    def go():
        c = imap(srv)
        c.append("INBOX", raw)
        c.select_folder("INBOX")
        env = c.fetch(c.search(), ["ENVELOPE"])
        c.logout()
        client = Client.create_with_password(host(srv), "alice", "pw")
        r = client.request([EmailQuery(), EmailGet(ids=None, properties=["subject", "from"])],
                           raise_errors=True)
        return env, r[1].response.data
    env, emails = await trio.to_thread.run_sync(go)
    (e,) = env.values()
    assert e[b"ENVELOPE"].subject == b"first subject"
    assert e[b"ENVELOPE"].from_[0].mailbox == b"first"
    (got,) = emails
    assert got.subject == "last subject"
    assert [a.email for a in got.mail_from] == ["last@example.com"]


# --- jmaplib -----------------------------------------------------------------------------------

async def test_jmaplib_flow_with_eventsource(srv):
    import httpx
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient
    from jmap.push.listener import EventSourceClient
    from jmap.models.push import StateChange

    await run(seed, srv)
    raw = msg("jmaplib import", body="via jmaplib")

    def go():
        out = {}
        http = httpx.Client(verify=client_ssl(srv), follow_redirects=True, timeout=30)
        with JMAPClient.connect(f"https://{host(srv)}/.well-known/jmap",
                                auth=BasicAuth("alice", "pw"), http=http) as client:
            out["echo"] = client.echo(ping="pong")
            with client.batch() as b:
                mboxes = b.mail.mailbox.get(ids=None)
            inbox = next(m for m in mboxes.result.items if m.role == "inbox")
            out["inbox"] = inbox
            with client.batch() as b:
                found = b.mail.email.query(filter={"inMailbox": inbox.id, "notKeyword": "$seen"},
                                           sort=[{"property": "receivedAt",
                                                  "isAscending": False}], limit=10)
                got = b.mail.email.get(ids=found.ref_ids(),
                                       properties=["subject", "keywords", "preview"])
            out["found"], out["got"] = found.result, got.result
            state0 = got.result.state
            eid = found.result.ids[0]
            with client.batch() as b:
                upd = b.mail.email.set(update={eid: {"keywords/$seen": True}})
            out["set"] = upd.result
            up = client.upload(raw, content_type="message/rfc822")
            out["upload"] = up
            with client.batch() as b:
                imp = b.mail.email.import_(emails={"k": {"blobId": up.blob_id,
                                                         "mailboxIds": {inbox.id: True}}})
                ch = b.mail.email.changes(since_state=state0)
            out["import"], out["changes"] = imp.result, ch.result
            es = EventSourceClient(client, types=["Email", "Mailbox"])
            events = es.events()
            first = next(e for e in events if isinstance(e, StateChange))
            c = imap(srv)
            c.append("INBOX", msg("while listening"))
            c.logout()
            second = next(e for e in events if isinstance(e, StateChange))
            events.close()
            out["first"], out["second"] = first, second
        return out

    out = await run(go)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)
    assert out["echo"] == {"ping": "pong"}
    assert [e.subject for e in out["got"].items] == ["seed 2"]     # the only unread one
    eid = out["found"].ids[0]
    assert eid in out["set"].updated and not out["set"].not_updated
    assert out["upload"].size == len(raw)
    new = out["import"].created["k"]
    new_id = new["id"] if isinstance(new, dict) else new.id
    assert eid in out["changes"].updated and new_id in out["changes"].created
    first, second = out["first"].changed[acc], out["second"].changed[acc]
    assert set(first) <= {"Email", "Mailbox"} and "Email" in first
    with srv.store.view() as v:
        now = v.kind_state(accounts.lookup(srv.store, "alice").id, "Email")
    assert second["Email"] == now != first["Email"]


# --- cross-protocol ----------------------------------------------------------------------------

async def test_imap_append_shows_in_email_changes_and_pushes(srv):
    import httpx

    await run(seed, srv, 1)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)

    def go():
        with httpx.Client(base_url=f"https://{host(srv)}", verify=client_ssl(srv),
                          auth=("alice", "pw"), timeout=30) as h:
            def api(calls):
                r = h.post("/jmap/api/", json={"using": ["urn:ietf:params:jmap:core",
                                                         "urn:ietf:params:jmap:mail"],
                                               "methodCalls": calls})
                r.raise_for_status()
                return r.json()["methodResponses"]
            first = api([["Email/get", {"accountId": acc, "ids": []}, "0"]])
            assert first[0][0] == "Email/get", first
            st = first[0][1]["state"]
            with h.stream("GET", "/jmap/eventsource/",
                          params={"types": "Email", "closeafter": "no", "ping": "0"}) as r:
                lines = r.iter_lines()
                evs = [_next_event(lines)]
                c = imap(srv)
                res = c.append("INBOX", msg("from imap"))
                c.logout()
                evs.append(_next_event(lines))
            ch = api([["Email/changes", {"accountId": acc, "sinceState": st}, "0"],
                      ["Email/get", {"accountId": acc, "properties": ["subject"],
                                     "#ids": {"resultOf": "0", "name": "Email/changes",
                                              "path": "/created"}}, "1"]])
            return res, st, evs, ch

    res, st, evs, ch = await run(go)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)
    changes, got = ch[0][1], ch[1][1]
    assert len(changes["created"]) == 1 and changes["oldState"] == st
    assert [e["subject"] for e in got["list"]] == ["from imap"]
    assert evs[0]["changed"][acc]["Email"] == st
    assert evs[1]["@type"] == "StateChange"
    assert evs[1]["changed"][acc]["Email"] == changes["newState"]


async def test_imap_seen_in_inbox_moves_archive_thread_count_in_mailbox_changes(srv):
    """RFC 8621 §2: a Thread with an unread Email counts in every Mailbox of
    the Thread.  IMAP (imapclient) marks the INBOX half of a thread read;
    jmapc's Mailbox/changes names the Archive, whose unreadThreads fell."""
    from jmapc import Client
    from jmapc.methods import MailboxChanges, MailboxGet

    def go():
        c = imap(srv)
        c.append("INBOX", msg("plan", mid="<p1@test>"))
        c.append("Archive", msg("Re: plan", mid="<p2@test>", extra="In-Reply-To: <p1@test>\r\n"
                                "References: <p1@test>\r\n"), flags=[b"\\Seen"])
        client = Client.create_with_password(host(srv), "alice", "pw")
        before = client.request(MailboxGet(ids=None), raise_errors=True)
        c.select_folder("INBOX")
        c.add_flags(c.search("ALL"), [b"\\Seen"])
        c.logout()
        ch = client.request(MailboxChanges(since_state=before.state), raise_errors=True)
        after = client.request(MailboxGet(ids=None), raise_errors=True)
        return before, ch, after

    before, ch, after = await run(go)
    arch = {m.role: m for m in before.data}["archive"]
    assert arch.unread_threads == 1
    assert {m.role: m for m in after.data}["archive"].unread_threads == 0
    assert arch.id in ch.updated, ch


def _next_event(lines) -> dict:
    data = None
    for line in lines:
        if line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and data is not None:
            return json.loads(data)
    raise AssertionError("the event stream ended")


async def test_jmap_keyword_change_is_an_imap_untagged_fetch_with_higher_modseq(srv):
    import httpx

    await run(seed, srv, 1)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)

    def go():
        c = imap(srv)
        c.enable("CONDSTORE")
        c.select_folder("INBOX")
        before = c.fetch(c.search(), ["MODSEQ", "FLAGS", "EMAILID"])
        (uid, data), = before.items()
        eid = data[b"EMAILID"][0].decode()
        c.idle()                     # the session waits; JMAP writes meanwhile
        with httpx.Client(base_url=f"https://{host(srv)}", verify=client_ssl(srv),
                          auth=("alice", "pw"), timeout=30) as h:
            r = h.post("/jmap/api/", json={
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                "methodCalls": [["Email/set", {"accountId": acc, "update": {
                    eid: {"keywords/$flagged": True}}}, "0"]]})
            r.raise_for_status()
            updated = r.json()["methodResponses"][0][1]["updated"]
        got = c.idle_check(timeout=30)
        c.idle_done()
        c.logout()
        return data, eid, updated, got

    data, eid, updated, got = await run(go)
    assert eid in updated
    fetches = [r for r in got if len(r) >= 3 and r[1] == b"FETCH"]
    assert fetches, got
    _, _, items = fetches[0]
    items = list(items)
    kv = dict(zip(items[::2], items[1::2]))
    assert b"\\Flagged" in kv[b"FLAGS"]
    assert kv[b"MODSEQ"][0] > data[b"MODSEQ"][0]


async def test_change_pending_when_imap_idle_starts_comes_after_the_continuation(srv):
    """A JMAP write between two IMAP commands, then IDLE: imapclient's idle()
    takes anything before the "+" for an error, so the server answers "+ idling"
    first and the FETCH after it (as Dovecot does)."""
    import httpx

    await run(seed, srv, 1)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)

    def go():
        c = imap(srv)
        c.select_folder("INBOX")
        eid = c.fetch(c.search(), ["EMAILID"]).popitem()[1][b"EMAILID"][0].decode()
        with httpx.Client(base_url=f"https://{host(srv)}", verify=client_ssl(srv),
                          auth=("alice", "pw"), timeout=30) as h:
            h.post("/jmap/api/", json={
                "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                "methodCalls": [["Email/set", {"accountId": acc, "update": {
                    eid: {"keywords/$flagged": True}}}, "0"]]}).raise_for_status()
        c.idle()
        text, responses = c.idle_done()
        c.logout()
        return responses

    responses = await run(go)
    assert any(r[1] == b"FETCH" and b"\\Flagged" in dict(zip(r[2][::2], r[2][1::2]))[b"FLAGS"]
               for r in responses if len(r) >= 3), responses


# --- jmap-jam (npm) run by node ----------------------------------------------------------------

def jam_available() -> str | None:
    """Why the jmap-jam test cannot run here (None: it can).  scripts/test
    installs it into tests/js (npm ci) when npm is there."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(JS, "node_modules", "jmap-jam")):
        return "jmap-jam is not installed (scripts/test runs npm ci in tests/js)"
    return None


async def test_jmap_jam_drives_session_query_get_set(srv):
    from mailaccess import tokens

    if (why := jam_available()) is not None:
        pytest.skip(why)
    await run(seed, srv)
    token = await trio.to_thread.run_sync(tokens.add, srv.store, "alice", "jam")
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=ca_file(srv))

    def go():
        return subprocess.run(["node", os.path.join(JS, "jam_flow.mjs"),
                               f"https://{host(srv)}/.well-known/jmap", token],
                              cwd=JS, env=env, capture_output=True, text=True, timeout=60)

    p = await run(go)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)
    assert out["username"] == "alice" and out["accountId"] == acc
    assert out["apiUrl"] == f"https://{host(srv)}/jmap/api/"
    assert ["inbox", "Inbox", 3] in out["mailboxes"] or \
        any(m[0] == "inbox" and m[2] == 3 for m in out["mailboxes"])
    assert len(out["queryIds"]) == 3 and sorted(out["subjects"]) == ["seed 0", "seed 1",
                                                                     "seed 2"]
    assert out["updated"] == [out["queryIds"][0]] and out["notUpdated"] is None
    assert out["keywordsAfter"].get("$flagged") is True
