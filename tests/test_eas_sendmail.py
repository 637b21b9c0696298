"""ActiveSync SendMail, SmartReply, SmartForward (server/eas_sendmail.py,
eas_compose.py) against ``serve`` with an aiosmtpd sink on loopback as the
relay: pyactivesync's SendMail (16.1) reaches the sink and the Sent
mailbox (seen over IMAP); 12.1 raw MIME with SaveInSent=T; SmartReply and
SmartForward built with our codec at 14.1 and 16.1 (the quoted / attached
original, ReplaceMime, $answered / $forwarded); a From that is not the
user's, a repeated ClientId, a missing original, bad MIME, no recipients."""
from __future__ import annotations

import dataclasses
import email
import email.policy
import imaplib
from email.message import EmailMessage

import httpx
from hypothesis import given, settings, strategies as st
import pytest
import trio
from pyactivesync import Client

from conftest import make_config, port_of
from eas_helpers import base, provision
from imap_helpers import run
from mailaccess import accounts, ids, ingest, vocab
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.server import eas_compose
from mailaccess.store import ops
from smtp_sink import Sink

WBXML = "application/vnd.ms-sync.wbxml"


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def cfg(tmp_path, sink):
    c = make_config(tmp_path)
    return dataclasses.replace(c, smtp=dataclasses.replace(
        c.smtp, relay_host="127.0.0.1", relay_port=sink.port, retry_first=0.2))


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def http(ctx) -> httpx.Client:
    return httpx.Client(base_url=base(ctx), auth=("alice", "pw"), timeout=30)


def post(c, cmd, body: bytes, *, version="14.1", device="raw1", key=None, ctype=WBXML,
         params=None):
    headers = {"content-type": ctype, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    q = {"Cmd": cmd, "User": "alice", "DeviceId": device, "DeviceType": "test"}
    q.update(params or {})
    return c.post("/Microsoft-Server-ActiveSync", params=q, content=body, headers=headers)


def compose(kind, mime: bytes, client_id="c1", save=True, item=None, folder=None,
            replace=False) -> bytes:
    kids = [E("ComposeMail:ClientId", text=client_id)]
    if item is not None:
        src = [E("ComposeMail:FolderId", text=folder)] if folder else []
        kids.append(E("ComposeMail:Source", *src, E("ComposeMail:ItemId", text=item)))
    if save:
        kids.append(E("ComposeMail:SaveInSentItems"))
    if replace:
        kids.append(E("ComposeMail:ReplaceMime"))
    kids.append(E("ComposeMail:Mime", opaque=mime))
    return encode(E(f"ComposeMail:{kind}", *kids))


def status_of(r) -> int | None:
    assert r.status_code == 200, r.text
    if not r.content:
        return None
    return int(decode(r.content).child_text("ComposeMail:Status"))


def mime(to="carol@example.net", subject="hello", body="Hi there\r\n", frm="alice@localhost",
         extra="") -> bytes:
    return (f"From: Alice <{frm}>\r\nTo: {to}\r\n{extra}Subject: {subject}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


async def wait_received(sink, n):
    def wait():
        with sink.handler.arrived:
            return sink.handler.arrived.wait_for(lambda: len(sink.received) >= n, timeout=30)
    assert await trio.to_thread.run_sync(wait), f"the sink got {len(sink.received)} of {n}"


def imap_sent(ctx, user="alice") -> list[tuple[bytes, bytes]]:
    """(FLAGS, message) of every message in USER's Sent, over IMAP."""
    with imaplib.IMAP4("127.0.0.1", port_of(ctx, "imap")) as m:
        m.login(user, "pw")
        _, n = m.select("Sent", readonly=True)
        if n[0] == b"0":
            return []
        _, data = m.fetch("1:*", "(FLAGS BODY.PEEK[])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                out.append((item[0], item[1]))
        return out


def acc_of(ctx, name="alice") -> int:
    return accounts.lookup(ctx.store, name).id


def seed(ctx, raw: bytes, name="alice") -> int:
    acc = acc_of(ctx, name)
    with ctx.store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    return ctx.store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw)).email


def keywords(ctx, eid, name="alice") -> list[str]:
    with ctx.store.view() as v:
        return list(v.email(acc_of(ctx, name), eid).keywords)


ORIGINAL = (b"From: Bob <bob@example.org>\r\nTo: alice@localhost\r\nSubject: Lunch?\r\n"
            b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <orig1@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
            b"--OUT\r\nContent-Type: multipart/alternative; boundary=ALT\r\n\r\n"
            b"--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nShall we eat at noon?\r\n"
            b"--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            b"<html><body><p>Shall we eat at <b>noon</b>?</p></body></html>\r\n--ALT--\r\n"
            b"--OUT\r\nContent-Type: application/pdf; name=menu.pdf\r\n"
            b"Content-Disposition: attachment; filename=menu.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--OUT--\r\n")


# --- SendMail ----------------------------------------------------------------------------------

async def test_pyactivesync_sendmail_reaches_the_sink_and_sent(srv, sink):
    m = EmailMessage()
    m["From"] = "Alice <alice@localhost>"
    m["To"] = "carol@example.net"
    m["Cc"] = "dave@example.net"
    m["Bcc"] = "eve@example.net"
    m["Subject"] = "From my phone"
    m.set_content("Sent with pyactivesync.\n")

    def go():
        c = Client("unused", "alice", "pw", device_id="phone1", timeout=30)
        c._transport.base_url = base(srv) + "/Microsoft-Server-ActiveSync"
        with c:
            c.provision()
            c.send_mail(m, save_in_sent_items=True)

    await run(go)
    await wait_received(sink, 1)
    got = sink.received[0]
    assert got.mail_from == "alice@localhost"
    assert sorted(got.rcpt_tos) == ["carol@example.net", "dave@example.net", "eve@example.net"]
    assert b"Sent with pyactivesync." in got.content
    assert b"\nBcc:" not in got.content and b"eve@example.net" not in got.content
    assert b"Message-ID:" in got.content and b"Date:" in got.content
    sent = await trio.to_thread.run_sync(imap_sent, srv)
    assert len(sent) == 1
    flags, raw = sent[0]
    assert b"\\Seen" in flags
    assert b"Subject: From my phone" in raw and b"Bcc: eve@example.net" in raw
    # the same message: its Message-ID is the one that was sent
    mid = email.message_from_bytes(raw)["Message-ID"]
    assert mid and mid.encode() in got.content


async def test_12_1_raw_mime_sendmail_with_save_in_sent(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "12.1")
            r = post(c, "SendMail", mime(subject="raw 12.1").replace(b"\r\n", b"\n"),
                     version="12.1", key=key, ctype="message/rfc822",
                     params={"SaveInSent": "T"})
            return r

    r = await run(go)
    assert r.status_code == 200 and r.content == b""
    await wait_received(sink, 1)
    assert sink.received[0].rcpt_tos == ["carol@example.net"]
    assert b"Subject: raw 12.1\r\n" in sink.received[0].content      # CRLF on the wire
    sent = await trio.to_thread.run_sync(imap_sent, srv)
    assert [b"raw 12.1" in raw for _f, raw in sent] == [True]


async def test_12_1_without_save_in_sent_saves_nothing(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "12.1")
            return post(c, "SendMail", mime(), version="12.1", key=key, ctype="message/rfc822")

    r = await run(go)
    assert r.status_code == 200
    await wait_received(sink, 1)
    assert await trio.to_thread.run_sync(imap_sent, srv) == []


@pytest.mark.parametrize("version", ["14.0", "16.1"])
async def test_a_from_that_is_not_the_users_is_refused(srv, sink, version):
    def go():
        with http(srv) as c:
            key = provision(c, version)
            r1 = post(c, "SendMail", compose("SendMail", mime(frm="bob@localhost")),
                      version=version, key=key)
            r2 = post(c, "SendMail", compose("SendMail", mime(frm="ceo@example.com"),
                                             client_id="c2"), version=version, key=key)
            r3 = post(c, "SendMail", compose("SendMail", mime(
                extra="Sender: mallory@example.com\r\n"), client_id="c3"),
                version=version, key=key)
            return r1, r2, r3

    rs = await run(go)
    assert [status_of(r) for r in rs] == [130, 130, 130]
    assert await trio.to_thread.run_sync(imap_sent, srv) == []
    assert sink.received == []


async def test_a_plus_address_and_a_missing_from_are_the_users(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "16.1")
            r1 = post(c, "SendMail", compose("SendMail", mime(frm="alice+phone@localhost")),
                      version="16.1", key=key)
            no_from = b"To: carol@example.net\r\nSubject: anon\r\n\r\nhi\r\n"
            r2 = post(c, "SendMail", compose("SendMail", no_from, client_id="c2"),
                      version="16.1", key=key)
            return r1, r2

    r1, r2 = await run(go)
    assert status_of(r1) is None and status_of(r2) is None
    await wait_received(sink, 2)
    assert {r.mail_from for r in sink.received} == {"alice+phone@localhost", "alice@localhost"}
    anon = [r for r in sink.received if b"Subject: anon" in r.content][0]
    assert b"From: alice@localhost\r\n" in anon.content


async def test_a_repeated_client_id_is_not_sent_twice(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "16.1")
            body = compose("SendMail", mime(subject="once"), client_id="same-id")
            r1 = post(c, "SendMail", body, version="16.1", key=key)
            r2 = post(c, "SendMail", body, version="16.1", key=key)
            # another device may use the same ClientId
            key2 = provision(c, "16.1", device="raw2")
            r3 = post(c, "SendMail", body, version="16.1", key=key2, device="raw2")
            return r1, r2, r3

    r1, r2, r3 = await run(go)
    assert (status_of(r1), status_of(r2), status_of(r3)) == (None, 118, None)
    await wait_received(sink, 2)
    await trio.sleep(0.3)
    assert len(sink.received) == 2
    assert len(await trio.to_thread.run_sync(imap_sent, srv)) == 2


async def test_bad_requests_get_their_status(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "14.1")
            out = {}
            out["no mime"] = post(c, "SendMail", encode(E(
                "ComposeMail:SendMail", E("ComposeMail:ClientId", text="x1"))), key=key)
            out["not mime"] = post(c, "SendMail", compose("SendMail", b"\r\n\r\njunk",
                                                         client_id="x2"), key=key)
            out["no rcpt"] = post(c, "SendMail", compose("SendMail", mime(to="undisclosed:;"),
                                                        client_id="x3"), key=key)
            out["bad rcpt"] = post(c, "SendMail", compose("SendMail", mime(to="a b@@c"),
                                                         client_id="x4"), key=key)
            out["account"] = post(c, "SendMail", encode(E(
                "ComposeMail:SendMail", E("ComposeMail:ClientId", text="x5"),
                E("ComposeMail:AccountId", text="7"), E("ComposeMail:Mime", opaque=mime()))),
                key=key)
            out["no original"] = post(c, "SmartReply", compose(
                "SmartReply", mime(), client_id="x6", item="E999", folder="M1"), key=key)
            out["bad wbxml"] = post(c, "SendMail", b"\x03\x01j\x00\x00\x15\x45\x45", key=key)   # truncated
            return out

    rs = await run(go)
    got = {k: status_of(r) for k, r in rs.items()}
    assert got == {"no mime": 107, "not mime": 107, "no rcpt": 119, "bad rcpt": 116,
                   "account": 166, "no original": 150, "bad wbxml": 102}
    assert sink.received == []


async def test_12_1_failure_is_http_500(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "12.1")
            return post(c, "SendMail", mime(frm="bob@localhost"), version="12.1", key=key,
                        ctype="message/rfc822")

    r = await run(go)
    assert r.status_code == 500 and b"130" in r.content


async def test_a_local_recipient_gets_it_in_their_inbox(srv, sink):
    def go():
        with http(srv) as c:
            key = provision(c, "16.1")
            return post(c, "SendMail", compose("SendMail", mime(to="bob@localhost",
                                                                subject="to bob")),
                        version="16.1", key=key)

    assert status_of(await run(go)) is None
    bob = acc_of(srv, "bob")

    def bob_inbox_total():
        with srv.store.view() as v:
            return v.mailbox_by_role(bob, "inbox").total

    with trio.fail_after(30):
        with srv.bus.subscribe(bob) as sub:
            while bob_inbox_total() == 0:
                await sub.wait()
    assert sink.received == []


# --- SmartReply / SmartForward -------------------------------------------------------------------

def _smart(srv, kind, version, item, folder, new: bytes, replace=False, cid="s1"):
    def go():
        with http(srv) as c:
            key = provision(c, version)
            return post(c, kind, compose(kind, new, client_id=cid, item=item, folder=folder,
                                         replace=replace), version=version, key=key)
    return go


def inbox_id(ctx) -> str:
    with ctx.store.view() as v:
        return ids.mailbox_id(v.mailbox_by_role(acc_of(ctx), "inbox").id)


@pytest.mark.parametrize("version", ["14.1", "16.1"])
async def test_smart_reply_quotes_the_original_in_text_and_html(srv, sink, version):
    eid = seed(srv, ORIGINAL)
    new = (b"From: alice@localhost\r\nTo: bob@example.org\r\nSubject: Re: Lunch?\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=N\r\n\r\n"
           b"--N\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYes, noon is fine.\r\n"
           b"--N\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><body><div>Yes, noon is <i>fine</i>.</div></body></html>\r\n--N--\r\n")
    r = await run(_smart(srv, "SmartReply", version, ids.email_id(eid), inbox_id(srv), new))
    assert status_of(r) is None
    await wait_received(sink, 1)
    msg = email.message_from_bytes(sink.received[0].content, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert text.index("Yes, noon is fine.") < text.index("> Shall we eat at noon?")
    assert "Bob <bob@example.org> wrote:" in text
    assert html.index("<i>fine</i>") < html.index("<blockquote") < \
        html.index("<b>noon</b>") < html.index("</body>")
    assert msg["In-Reply-To"] == "<orig1@example.org>"
    assert "menu.pdf" not in sink.received[0].content.decode()       # a reply: no attachments
    assert vocab.ANSWERED in keywords(srv, eid)
    assert vocab.FORWARDED not in keywords(srv, eid)
    sent = await trio.to_thread.run_sync(imap_sent, srv)
    assert len(sent) == 1 and b"Shall we eat at noon?" in sent[0][1]


async def test_smart_reply_plain_only_gets_a_plain_quote(srv, sink):
    eid = seed(srv, ORIGINAL)
    r = await run(_smart(srv, "SmartReply", "14.1", ids.email_id(eid), None,
                         mime(to="bob@example.org", subject="Re: Lunch?", body="OK\r\n")))
    assert status_of(r) is None
    await wait_received(sink, 1)
    msg = email.message_from_bytes(sink.received[0].content, policy=email.policy.default)
    assert msg.get_body(("html",)) is None
    text = msg.get_content()
    assert text.startswith("OK") and "> Shall we eat at noon?" in text


async def test_smart_reply_with_replace_mime_sends_the_phones_message_only(srv, sink):
    eid = seed(srv, ORIGINAL)
    r = await run(_smart(srv, "SmartReply", "16.1", ids.email_id(eid), inbox_id(srv),
                         mime(to="bob@example.org", body="edited inline\r\n"), replace=True))
    assert status_of(r) is None
    await wait_received(sink, 1)
    body = sink.received[0].content
    assert b"edited inline" in body and b"Shall we eat" not in body
    assert vocab.ANSWERED in keywords(srv, eid)


@pytest.mark.parametrize("version", ["14.1", "16.1"])
async def test_smart_forward_attaches_the_original(srv, sink, version):
    eid = seed(srv, ORIGINAL)
    new = mime(to="carol@example.net", subject="Fwd: Lunch?", body="See below.\r\n")
    r = await run(_smart(srv, "SmartForward", version, ids.email_id(eid), inbox_id(srv), new))
    assert status_of(r) is None
    await wait_received(sink, 1)
    got = sink.received[0].content
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    assert parts[0].get_content().startswith("See below.")
    assert parts[1].get_content_type() == "message/rfc822"
    assert parts[1].get_filename() == "Lunch.eml"
    assert ORIGINAL in got                                 # byte for byte
    assert vocab.FORWARDED in keywords(srv, eid)
    assert vocab.ANSWERED not in keywords(srv, eid)


async def test_smart_forward_with_replace_mime_and_12_1_query_form(srv, sink):
    eid = seed(srv, ORIGINAL)
    r = await run(_smart(srv, "SmartForward", "16.1", ids.email_id(eid), inbox_id(srv),
                         mime(body="my own forward\r\n"), replace=True))
    assert status_of(r) is None

    def go12():
        with http(srv) as c:
            key = provision(c, "12.1", device="old")
            return post(c, "SmartForward", mime(body="old phone\r\n", subject="Fwd 12"),
                        version="12.1", key=key, device="old", ctype="message/rfc822",
                        params={"ItemId": ids.email_id(eid), "CollectionId": inbox_id(srv),
                                "SaveInSent": "T"})

    r12 = await run(go12)
    assert r12.status_code == 200 and r12.content == b""
    await wait_received(sink, 2)
    first = [x for x in sink.received if b"my own forward" in x.content][0]
    assert b"Shall we eat" not in first.content
    old = [x for x in sink.received if b"old phone" in x.content][0]
    assert ORIGINAL in old.content
    sent = await trio.to_thread.run_sync(imap_sent, srv)
    assert [b"Fwd 12" in raw for _f, raw in sent] == [False, True]


async def test_smart_forward_into_an_existing_mixed_message(srv, sink):
    eid = seed(srv, ORIGINAL)
    new = (b"From: alice@localhost\r\nTo: carol@example.net\r\nSubject: Fwd\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n"
           b"--M\r\nContent-Type: text/plain\r\n\r\nwith my photo\r\n"
           b"--M\r\nContent-Type: image/png; name=p.png\r\nContent-Transfer-Encoding: base64"
           b"\r\n\r\niVBORw0KGgo=\r\n--M--\r\n")
    r = await run(_smart(srv, "SmartForward", "14.1", ids.email_id(eid), None, new))
    assert status_of(r) is None
    await wait_received(sink, 1)
    msg = email.message_from_bytes(sink.received[0].content, policy=email.policy.default)
    assert [p.get_content_type() for p in msg.iter_parts()] == \
        ["text/plain", "image/png", "message/rfc822"]


# --- eas_compose on its own -------------------------------------------------------------------

def test_prepare_adds_what_is_missing_and_keeps_what_is_there():
    out = eas_compose.prepare(b"To: x@y.z\nSubject: s\n\nbody\n", "me@here", "here", now=0)
    assert out.startswith(b"From: me@here\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"
                          b"Message-ID: <")
    assert out.endswith(b"To: x@y.z\r\nSubject: s\r\n\r\nbody\r\n")
    full = mime(extra="Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@b>\r\n")
    assert eas_compose.prepare(full, "me@here", "here") == full
    with pytest.raises(eas_compose.MimeError):
        eas_compose.prepare(b"   \r\n", "me@here", "here")


def test_forward_wraps_a_single_part_message():
    new = eas_compose.prepare(mime(body="fw\r\n"), "a@l", "l")
    out = eas_compose.smart_forward(new, ORIGINAL)
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["To"] == "carol@example.net" and msg["Subject"] == "hello"
    first, second = msg.iter_parts()
    assert first.get_content_type() == "text/plain" and first.get_content_charset() == "utf-8"
    assert second.get_content_type() == "message/rfc822"
    assert out.count(b"MIME-Version") == 2         # the message's and the original's


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=200)


@settings(max_examples=30, deadline=None)
@given(new_text=_text, orig_text=_text, html_too=st.booleans())
def test_reply_keeps_the_new_text_and_quotes_every_original_line(new_text, orig_text, html_too):
    orig = EmailMessage()
    orig["From"] = "Bob <bob@example.org>"
    orig["Subject"] = "s"
    orig.set_content(orig_text)
    new = EmailMessage()
    new["From"] = "alice@localhost"
    new["To"] = "bob@example.org"
    new.set_content(new_text)
    plain = new.get_content()
    if html_too:
        new.add_alternative("<html><body><p>new</p></body></html>", subtype="html")
    out = eas_compose.smart_reply(eas_compose.prepare(new.as_bytes(), "a@l", "l"),
                                  orig.as_bytes())
    msg = email.message_from_bytes(out, policy=email.policy.default)
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    head, sep, quoted = text.partition("Bob <bob@example.org> wrote:\n")
    assert sep
    norm = lambda s: [ln.rstrip() for ln in s.splitlines()]    # noqa: E731
    assert norm(head.rstrip("\n")) == norm(plain.rstrip("\n"))
    want = [("> " + ln).rstrip() if ln else ">"
            for ln in orig.get_content().splitlines()]
    assert norm(quoted) == want
    if html_too:
        assert "<blockquote" in msg.get_body(("html",)).get_content()


# the regular expression _html_inner replaced (quadratic on unclosed
# "<body" tags): the reference its answers are held to
def _old_html_inner(s):
    import re
    m = re.search(r"(?is)<body\b[^>]*>(.*)</body\s*>", s)
    return m.group(1) if m else s


_html_bits = st.lists(st.sampled_from([
    "<script", "<SCRIPT>", "<scripts>", "</script>", "</Script \n>", "<style x>", "</style>",
    "</style", "<body", "<Body a=1>", "</body>", "</BODY >", "<", ">", "<br/>", "</p >",
    "&amp;", "a", " ", "\n", "x>y"]), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(_html_bits)
def test_the_body_reader_answers_as_the_regular_expression_did(s):
    assert eas_compose._html_inner(s) == _old_html_inner(s)


def test_a_reply_quotes_an_html_only_original_as_the_phone_was_shown_it():
    """The quote of an HTML-only original is the text ActiveSync shows as
    its body (the message indexer's html_to_text, eas_item): scripts and
    styles dropped, block tags to line breaks, entities decoded."""
    from mailaccess import _speedups
    body = ("<html><head><style>p {color: red}</style></head><body><p>Hi &amp; bye</p>"
            "<div>two<br>three</div><script>alert(1)</script>four</body></html>")
    orig = EmailMessage()
    orig["From"], orig["To"], orig["Subject"] = "Bob <bob@example.org>", "a@l", "s"
    orig.set_content(body, subtype="html")
    text, h = eas_compose._original_bodies(orig)
    shown = _speedups.load("msgindex").html_to_text(h)
    assert [ln.strip() for ln in shown.splitlines() if ln.strip()] == \
        ["Hi & bye", "two", "three", "four"]
    # the same lines, without the white space HTML does not show
    assert text == "Hi & bye\n\ntwo\nthree\nfour"
    new = EmailMessage()
    new["From"], new["To"], new["Subject"] = "a@l", "bob@example.org", "Re: s"
    new.set_content("ok")
    out = eas_compose.smart_reply(eas_compose.prepare(new.as_bytes(), "a@l", "l"),
                                  orig.as_bytes())
    quoted = email.message_from_bytes(out, policy=email.policy.default) \
        .get_body(("plain",)).get_content()
    assert quoted.replace("\r\n", "\n").endswith(
        "wrote:\n> Hi & bye\n>\n> two\n> three\n> four\n")
    assert "alert" not in quoted and "color" not in quoted


def test_the_html_readers_take_hostile_html_in_one_pass():
    """Behaviour, no timing: the original's HTML comes from any sender, and
    these are what the replaced expressions rescanned to the end at every
    tag (hours each at this size); the answers are checked."""
    n = 100_000
    assert eas_compose.html_as_text("<script " * n + "</style>") == ""
    assert eas_compose.html_as_text("<" * n + "a") == "<" * n + "a"
    assert eas_compose.html_as_text("<style>" * n + "x") == "x"
    assert eas_compose._html_inner("<body " * n) == "<body " * n
    assert eas_compose._html_inner("<body>" + "</body" * n) == "<body>" + "</body" * n


@pytest.mark.parametrize("ch", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_reply_refuses_a_header_with_a_line_breaking_control(ch):
    """SmartReply writes the message anew; a Python without the
    CVE-2024-6923 fix (3.11.7) writes these characters out as line ends
    when it folds a header, so "Subject: a<VT>From: ceo@..." left as a second
    From field, and a fixed one keeps them.  RFC 5322 allows none of them
    in a field body: refused (InvalidMIME) on every Python."""
    new = ("From: alice@localhost\r\nTo: bob@example.org\r\n"
           f"Subject: a{ch}From: ceo@example.org\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
    with pytest.raises(eas_compose.MimeError):
        eas_compose.smart_reply(eas_compose.prepare(new.encode("utf-8"), "a@l", "l"),
                                b"From: b@example.org\r\n\r\norig\r\n")


def test_reply_takes_the_originals_message_id_as_one_line():
    orig = b"From: b@example.org\r\nMessage-ID: <m1@x>\x0bX-Injected: yes\r\n\r\norig\r\n"
    new = b"From: alice@localhost\r\nTo: b@example.org\r\nSubject: re\r\n\r\nhi\r\n"
    out = eas_compose.smart_reply(eas_compose.prepare(new, "a@l", "l"), orig)
    head = out[:out.index(b"\r\n\r\n")].split(b"\r\n")
    assert not any(line.lower().startswith(b"x-injected") for line in head), head
    assert sum(line.lower().startswith(b"from:") for line in head) == 1


@settings(max_examples=30, deadline=None)
@given(new_text=_text, mixed=st.booleans())
def test_forward_carries_the_original_byte_for_byte(new_text, mixed):
    new = EmailMessage()
    new["From"] = "alice@localhost"
    new["To"] = "carol@example.net"
    new.set_content(new_text)
    if mixed:
        new.add_attachment(b"\x00\x01data", maintype="application", subtype="octet-stream",
                           filename="d.bin")
    out = eas_compose.smart_forward(eas_compose.prepare(new.as_bytes(), "a@l", "l"), ORIGINAL)
    assert ORIGINAL in out
    msg = email.message_from_bytes(out, policy=email.policy.default)
    parts = list(msg.iter_parts())
    assert parts[-1].get_content_type() == "message/rfc822"
    assert len(parts) == (3 if mixed else 2)
    if not mixed:
        assert parts[0].get_content().replace("\r\n", "\n") == new.get_content()


async def test_limits_and_sending_disabled(tmp_path, sink, nursery):
    from mailaccess.server import app
    c = make_config(tmp_path)
    c = dataclasses.replace(c, smtp=dataclasses.replace(
        c.smtp, relay_host="127.0.0.1", relay_port=sink.port, max_size=4000,
        max_recipients=2))
    ctx = await nursery.start(lambda task_status: app.serve(c, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
    eid = seed(ctx, ORIGINAL.replace(b"JVBERi0xLjQK", b"QUFB" * 900))      # ~3.6 kB

    def go():
        with http(ctx) as h:
            key = provision(h, "16.1")
            out = {}
            out["big"] = post(h, "SendMail", compose("SendMail", mime(body="x" * 5000),
                                                     client_id="b1"), version="16.1", key=key)
            out["big forward"] = post(h, "SmartForward", compose(
                "SmartForward", mime(), client_id="b2", item=ids.email_id(eid)),
                version="16.1", key=key)
            out["rcpts"] = post(h, "SendMail", compose(
                "SendMail", mime(to="a@x.example, b@x.example, c@x.example"), client_id="b3"),
                version="16.1", key=key)
            out["wrong root"] = post(h, "SendMail", compose("SmartReply", mime(),
                                                            client_id="b4"),
                                     version="16.1", key=key)
            out["long id"] = post(h, "SendMail", compose("SendMail", mime(),
                                                         client_id="x" * 41),
                                  version="16.1", key=key)
            out["ok"] = post(h, "SendMail", compose("SendMail", mime(), client_id="b5"),
                             version="16.1", key=key)
            return out

    rs = await run(go)
    assert {k: status_of(r) for k, r in rs.items()} == {
        "big": 122, "big forward": 122, "rcpts": 115, "wrong root": 101, "long id": 101,
        "ok": None}
    await wait_received(sink, 1)


async def test_sending_disabled_is_access_denied(tmp_path, sink, nursery):
    from mailaccess.server import app
    c = make_config(tmp_path)
    c = dataclasses.replace(c, smtp=dataclasses.replace(c.smtp, send_enabled=False))
    ctx = await nursery.start(lambda task_status: app.serve(c, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")

    def go():
        with http(ctx) as h:
            key = provision(h, "14.0")
            return post(h, "SendMail", compose("SendMail", mime()), version="14.0", key=key)

    assert status_of(await run(go)) == 130
    assert await trio.to_thread.run_sync(imap_sent, ctx) == []
