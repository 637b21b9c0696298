"""The outbound queue service with the whole server in-process and a real
SMTP sink (aiosmtpd) on loopback: what EmailSubmission sends arrives with
the right envelope; a 4xx is retried, a 5xx fails for good; local
recipients get it in their INBOX (seen over IMAP); vacation replies go once
per sender per period; an acknowledged submission survives kill -9."""
from __future__ import annotations

import dataclasses
import imaplib
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import trio

from conftest import make_config, port_of
from mailaccess import accounts, ids
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.server import lmtp as lmtp_mod  # noqa: F401  (the service's module)
from mailaccess.server.jmap_api import JmapContext
from mailaccess.store import sending

from jmap_helpers import api, deliver
from smtp_sink import Sink

USING = [cap.CORE, cap.MAIL, cap.SUBMISSION, cap.VACATION]


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def smtp_cfg(tmp_path, sink_port=None, **smtp):
    cfg = make_config(tmp_path)
    smtp.setdefault("retry_first", 0.2)
    if sink_port is not None:
        smtp.setdefault("relay_host", "127.0.0.1")
        smtp.setdefault("relay_port", sink_port)
    return dataclasses.replace(cfg, smtp=dataclasses.replace(cfg.smtp, **smtp))


async def start(nursery, cfg):
    from mailaccess.server import app
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    for name in ("alice", "bob"):
        await trio.to_thread.run_sync(accounts.add_user, ctx.store, name, "pw")
    return ctx


def jctx(server, name="alice") -> JmapContext:
    with server.store.view() as v:
        acc = v.account_by_name(name).id
    return JmapContext(server.store, server.bus, server.cfg, acc, name)


async def call(ctx, name, args):
    r = await api(ctx, [name, args], using=USING)
    assert r[0][0] == name, r
    return r[0][1]


def draft(ctx, to="bob@example.com", extra="", subject="hi"):
    raw = (f"From: Alice <alice@localhost>\r\nTo: {to}\r\n{extra}Subject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@localhost>\r\n\r\nhello\r\n").encode()
    with ctx.store.view() as v:
        drafts = v.mailbox_by_role(ctx.acc, "drafts").id
    return ids.email_id(deliver(ctx, drafts, raw, ["$draft"]).email)


async def submit(ctx, email_id) -> str:
    ident = (await call(ctx, "Identity/get", {"ids": None}))["list"][0]["id"]
    res = await call(ctx, "EmailSubmission/set", {"create": {"k": {
        "identityId": ident, "emailId": email_id}}})
    assert res["created"], res
    return res["created"]["k"]["id"]


async def until(ctx, pred, kinds=("EmailSubmission",)):
    """Wait (on the bus, no polling) until PRED() holds; 60 s hang guard."""
    with trio.fail_after(60):
        with ctx.bus.subscribe(ctx.acc, kinds=set(kinds)) as sub:
            while not pred():
                await sub.wait()


def status(ctx, sid):
    with ctx.store.view() as v:
        return v.submission(ctx.acc, ids.parse("S", sid))


def done(ctx, sid):
    def pred():
        rec = status(ctx, sid)
        return rec is not None and rec["undoStatus"] == "final" and all(
            s["delivered"] != "queued" for s in rec["deliveryStatus"].values())
    return pred


async def wait_received(sink, n):
    def have():
        return len(sink.received) >= n
    with trio.fail_after(60):
        while not have():
            await trio.to_thread.run_sync(_wait_cond, sink, n)


def _wait_cond(sink, n):
    with sink.handler.arrived:
        sink.handler.arrived.wait_for(lambda: len(sink.received) >= n, timeout=1)


async def test_relay_gets_the_right_envelope(tmp_path, sink, nursery):
    server = await start(nursery, smtp_cfg(tmp_path, sink.port))
    ctx = jctx(server)
    sid = await submit(ctx, draft(ctx, to="Bob <bob@example.com>, carol@example.org",
                                  extra="Cc: bob@example.com\r\nBcc: dave@example.net\r\n"))
    await until(ctx, done(ctx, sid))
    ch = await call(ctx, "EmailSubmission/changes", {"sinceState": "0"})
    assert ch["created"] == [sid]
    got = (await call(ctx, "EmailSubmission/get", {"ids": [sid]}))["list"][0]
    assert got["undoStatus"] == "final"
    assert len(sink.received) == 1
    got = sink.received[0]
    assert got.mail_from == "alice@localhost"
    assert got.rcpt_tos == ["bob@example.com", "carol@example.org", "dave@example.net"]
    assert b"Bcc" not in got.content and b"Subject: hi" in got.content
    rec = status(ctx, sid)
    assert {r: s["delivered"] for r, s in rec["deliveryStatus"].items()} == {
        "bob@example.com": "yes", "carol@example.org": "yes", "dave@example.net": "yes"}
    assert rec["deliveryStatus"]["bob@example.com"]["smtpReply"].startswith("250 ")
    with server.store.view() as v:
        assert v.outbound_queue() == []


async def test_4xx_is_retried_and_5xx_fails(tmp_path, sink, nursery):
    sink.handler.temp_fail["slow@example.com"] = 2
    sink.handler.reject.add("reject@example.com")
    server = await start(nursery, smtp_cfg(tmp_path, sink.port))
    ctx = jctx(server)
    sid = await submit(ctx, draft(ctx, to="slow@example.com, reject@example.com"))
    await until(ctx, done(ctx, sid))
    rec = status(ctx, sid)["deliveryStatus"]
    assert rec["slow@example.com"]["delivered"] == "yes"
    assert rec["reject@example.com"]["delivered"] == "no"
    assert rec["reject@example.com"]["smtpReply"].startswith("550 5.1.1")
    assert sink.handler.rcpt_attempts["slow@example.com"] == 3
    assert sink.handler.rcpt_attempts["reject@example.com"] == 1     # never retried
    assert [r.rcpt_tos for r in sink.received] == [["slow@example.com"]]


async def test_no_relay_fails_remote_recipients_clearly(tmp_path, nursery, caplog):
    server = await start(nursery, smtp_cfg(tmp_path))
    ctx = jctx(server)
    sid = await submit(ctx, draft(ctx, to="far@example.com"))
    await until(ctx, done(ctx, sid))
    st = status(ctx, sid)["deliveryStatus"]["far@example.com"]
    assert st["delivered"] == "no" and "no SMTP relay" in st["smtpReply"]
    assert any("no relay configured" in r.getMessage() for r in caplog.records)


async def test_local_recipient_gets_it_in_inbox_seen_over_imap(tmp_path, nursery):
    server = await start(nursery, smtp_cfg(tmp_path))
    ctx = jctx(server)
    sid = await submit(ctx, draft(ctx, to="bob@localhost", subject="for bob"))
    await until(ctx, done(ctx, sid))
    assert status(ctx, sid)["deliveryStatus"]["bob@localhost"]["delivered"] == "yes"
    port = port_of(server, "imap")

    def imap_search():
        c = imaplib.IMAP4("127.0.0.1", port)
        c.login("bob", "pw")
        c.select("INBOX")
        typ, data = c.search(None, "SUBJECT", '"for bob"')
        c.logout()
        return data[0].split()
    assert len(await trio.to_thread.run_sync(imap_search)) == 1


async def test_cancel_during_hold_sends_nothing(tmp_path, sink, nursery):
    server = await start(nursery, smtp_cfg(tmp_path, sink.port, hold=3600))
    ctx = jctx(server)
    sid = await submit(ctx, draft(ctx))
    assert status(ctx, sid)["undoStatus"] == "pending"
    r = await call(ctx, "EmailSubmission/set", {"update": {sid: {"undoStatus": "canceled"}}})
    assert sid in r["updated"]
    assert status(ctx, sid)["undoStatus"] == "canceled"
    assert sink.received == []


async def test_vacation_reply_once_per_sender(tmp_path, sink, nursery):
    server = await start(nursery, smtp_cfg(tmp_path, sink.port))
    bob = jctx(server, "bob")
    alice = jctx(server)
    await call(bob, "VacationResponse/set", {"update": {"singleton": {
        "isEnabled": True, "subject": "Bob is away", "textBody": "Back soon"}}})
    # a local sender (alice, through EmailSubmission) twice: one reply, in her INBOX
    for n in range(2):
        sid = await submit(alice, draft(alice, to="bob@localhost", subject=f"q{n}"))
        await until(alice, done(alice, sid))

    def queue_empty():
        with server.store.view() as v:
            return v.outbound_queue() == []

    def inbox_subjects(ctx):
        with ctx.store.view() as v:
            inbox = v.mailbox_by_role(ctx.acc, "inbox")
            return [v.email(ctx.acc, e).blob for _u, e in v.uids(ctx.acc, inbox.id)]

    await until(bob, queue_empty, kinds=(sending.OUTBOUND,))
    assert len(inbox_subjects(alice)) == 1
    # a remote sender over LMTP twice: one reply through the relay, MAIL FROM <>
    from test_lmtp_service import lmtp_send
    msg = (b"From: ext@example.org\r\nTo: bob@localhost\r\nSubject: hello\r\n"
           b"Message-ID: <ext1@example.org>\r\n\r\nhi\r\n")
    port = port_of(server, "lmtp")
    for _ in range(2):
        r = await trio.to_thread.run_sync(lmtp_send, port, "ext@example.org",
                                          ["bob@localhost"], msg)
        assert r["bob@localhost"][0] == 250
    await wait_received(sink, 1)
    got = sink.received[0]
    assert got.mail_from in ("", "<>") and got.rcpt_tos == ["ext@example.org"]
    assert b"Auto-Submitted: auto-replied" in got.content
    assert b"In-Reply-To: <ext1@example.org>" in got.content
    assert b"Subject: Bob is away" in got.content
    # a list message gets none
    r = await trio.to_thread.run_sync(lmtp_send, port, "other@example.org", ["bob@localhost"],
                                      msg.replace(b"Subject", b"List-Id: <l.x>\r\nSubject"))
    with server.store.view() as v:
        assert v.outbound_queue() == []
    assert len(sink.received) == 1


CHILD = textwrap.dedent("""
    import dataclasses, json, sys, time
    import trio
    sys.path.insert(0, {tests!r})
    from mailaccess import config, ids, ingest
    from mailaccess.proto.jmap import capabilities as cap
    from mailaccess.server.app import open_store
    from mailaccess.server.jmap_api import JmapContext
    from mailaccess.store import ops
    from jmap_helpers import api
    cfg = config.Config(data_dir={data!r}, demo_account=False)
    store = open_store(cfg)
    store.start()
    acc = store.write_sync(ops.create_account, "alice", "x")
    with store.view() as v:
        drafts = v.mailbox_by_role(acc, "drafts").id
    raw = b"From: alice@localhost\\r\\nTo: bob@example.com\\r\\nSubject: durable\\r\\n\\r\\nkeep me\\r\\n"
    eid = store.write_sync(ops.append, acc, [drafts], ingest.prepare(raw), []).email
    ctx = JmapContext(store, None, cfg, acc, "alice")
    async def main():
        using = [cap.CORE, cap.MAIL, cap.SUBMISSION]
        ident = (await api(ctx, ["Identity/get", {{"ids": None}}], using=using))[0][1]["list"][0]["id"]
        r = await api(ctx, ["EmailSubmission/set", {{"create": {{"k": {{
            "identityId": ident, "emailId": ids.email_id(eid)}}}}}}], using=using)
        print("ACK", r[0][1]["created"]["k"]["id"], flush=True)
        await trio.sleep(3600)
    trio.run(main)
""")


@pytest.mark.slow
async def test_acknowledged_submission_survives_kill_9(tmp_path, sink, nursery):
    data = str(tmp_path / "data")
    here = os.path.dirname(__file__)
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=here, data=data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                [os.path.dirname(here), os.environ.get("PYTHONPATH", "")])))
    try:
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert line.startswith(b"ACK "), line + proc.stderr.read()
        sid = line.split()[1].decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cfg = dataclasses.replace(smtp_cfg(tmp_path, sink.port), data_dir=data)
    from mailaccess.server import app
    server = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                                install_signals=False))
    await wait_received(sink, 1)
    assert sink.received[0].rcpt_tos == ["bob@example.com"]
    assert b"keep me" in sink.received[0].content
    ctx = jctx(server)
    await until(ctx, done(ctx, sid))
    assert status(ctx, sid)["deliveryStatus"]["bob@example.com"]["delivered"] == "yes"


SERVER_CONFIG = """
data_dir = "{data}"
demo_account = false
[imap]
listen = {{ host = "127.0.0.1", port = 0, enabled = false }}
listen_tls = {{ host = "127.0.0.1", port = 0, enabled = false }}
[http]
listen = "127.0.0.1:0"
[lmtp]
listen = "127.0.0.1:0"
[smtp]
relay_host = "127.0.0.1"
relay_port = {port}
retry_first = 2
"""


@pytest.mark.slow
async def test_queued_reply_survives_kill_9_of_the_server(tmp_path, sink, nursery):
    """The server is killed -9 while a message waits in its queue for a
    retry (the relay was down); restarted, it sends it."""
    import re

    from smtp_sink import free_port
    from test_lmtp_service import lmtp_send
    data = str(tmp_path / "data")
    cfg = dataclasses.replace(smtp_cfg(tmp_path, sink.port), data_dir=data)
    from mailaccess.server.app import open_store
    store = open_store(cfg)
    store.start()
    try:
        accounts.add_user(store, "bob", "pw")
        with store.view() as v:
            bob = v.account_by_name("bob").id
        store.write_sync(sending.set_vacation, bob, {"isEnabled": True, "subject": "away"})
    finally:
        store.close()
    cfg_path = tmp_path / "server.toml"
    cfg_path.write_text(SERVER_CONFIG.format(data=data, port=free_port()))
    proc = subprocess.Popen([sys.executable, "-m", "mailaccess", "serve", "--config",
                             str(cfg_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def read_until(pattern):
            while True:
                line = proc.stdout.readline().decode(errors="replace")
                assert line, "the server stopped"
                m = re.search(pattern, line)
                if m:
                    return m
        with trio.fail_after(60):
            port = int((await trio.to_thread.run_sync(
                read_until, r"lmtp listening on 127\.0\.0\.1:(\d+)")).group(1))
            msg = (b"From: ext@example.org\r\nTo: bob@localhost\r\nSubject: q\r\n"
                   b"Message-ID: <k9@example.org>\r\n\r\nhi\r\n")
            r = await trio.to_thread.run_sync(lmtp_send, port, "ext@example.org",
                                              ["bob@localhost"], msg)
            assert r["bob@localhost"][0] == 250
            await trio.to_thread.run_sync(read_until, r"outbound: .*ext@example\.org.*will retry")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    from mailaccess.server import app
    await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                       install_signals=False))
    await wait_received(sink, 1)
    got = sink.received[0]
    assert got.rcpt_tos == ["ext@example.org"] and b"In-Reply-To: <k9@example.org>" in got.content


async def test_expiry_fails_what_is_still_queued(tmp_path, nursery):
    from smtp_sink import free_port
    server = await start(nursery, smtp_cfg(tmp_path, free_port(), expire=0))
    ctx = jctx(server)
    sid = await submit(ctx, draft(ctx, to="far@example.com"))
    await until(ctx, done(ctx, sid))
    st = status(ctx, sid)["deliveryStatus"]["far@example.com"]
    assert st["delivered"] == "no" and "expired" in st["smtpReply"]
