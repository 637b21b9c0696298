"""One phone's whole day over ActiveSync, end to end against ``serve``, with
pyactivesync (a third-party EAS client, 16.1) doing every step, as issue 9
asks: Provision, FolderSync, Sync from key 0 with WindowSize paging over a
few hundred messages, Read/Flag changes made on the phone seen over IMAP
(imaplib), a delivery over LMTP seen through Ping and then Sync, an
ItemOperations fetch of the full MIME, MoveItems (seen over IMAP and as a
Delete/Add in the two folders), and SendMail received by an SMTP sink on
loopback and saved to Sent."""
from __future__ import annotations

import dataclasses
import imaplib
import smtplib
from email.message import EmailMessage

import pytest
import trio
from pyactivesync import BodyType, Client, EmailChange

from conftest import make_config, port_of
from imap_helpers import run
from mailaccess import accounts, ids, ingest
from mailaccess.store import ops
from smtp_sink import Sink

N = 300


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
    acc = accounts.lookup(server.store, "alice").id
    with server.store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    items = [(ingest.prepare(
        (f"From: Bob <bob@example.org>\r\nTo: alice@localhost\r\nSubject: message {i:03d}\r\n"
         f"Message-ID: <m{i}@example.org>\r\nDate: Mon, 1 Dec 2025 10:{i % 60:02d}:00 +0000\r\n"
         f"\r\nBody of message {i}.\r\n").encode()), ()) for i in range(N)]
    server.store.write_sync(ops.append_many, acc, inbox, items)
    return server


def phone(ctx) -> Client:
    c = Client("unused", "alice", "pw", device_id="flowphone", timeout=60)
    c._transport.base_url = f"http://127.0.0.1:{port_of(ctx, 'http')}/Microsoft-Server-ActiveSync"
    return c


def imap(ctx) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", port_of(ctx, "imap"))
    m.login("alice", "pw")
    return m


def lmtp(ctx, subject: str) -> None:
    with smtplib.LMTP("127.0.0.1", port_of(ctx, "lmtp")) as c:
        c.sendmail("carol@example.net", ["alice@localhost"],
                   f"From: carol@example.net\r\nTo: alice@localhost\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\nHello.\r\n")


def imap_flags(ctx, mailbox: str, subject: str) -> bytes:
    m = imap(ctx)
    try:
        m.select(mailbox)
        typ, data = m.search(None, "HEADER", "Subject", f'"{subject}"')
        nums = data[0].split()
        assert len(nums) == 1, (subject, data)
        typ, data = m.fetch(nums[0], "(FLAGS)")
        return data[0]
    finally:
        m.logout()


async def test_a_phone_syncs_changes_gets_push_fetches_moves_and_sends(srv, sink):
    c = phone(srv)

    def start():
        c.provision()
        folders = {f.name: f for f in c.list_folders()}
        inbox = folders["INBOX"].id
        key = c.sync_folder(inbox, "0").sync_key
        added, pages = {}, 0
        while True:
            r = c.sync_folder(inbox, key, window_size=50)
            pages += 1
            for it in r.added:
                added[it.server_id] = it.fields
            key = r.sync_key
            if not r.more_available:
                break
        return folders, inbox, key, added, pages

    folders, inbox, key, added, pages = await run(start)
    assert len(added) == N and pages >= N // 50
    subjects = {f.get("Email.Subject") for f in added.values()}
    assert subjects == {f"message {i:03d}" for i in range(N)}
    by_subject = {f["Email.Subject"]: sid for sid, f in added.items()}

    # Read and Flag set on the phone are seen over IMAP
    read_sid, flag_sid = by_subject["message 007"], by_subject["message 008"]

    def change():
        return c.apply_email_changes(inbox, key, [EmailChange(read_sid, read=True),
                                                  EmailChange(flag_sid, flagged=True)])

    res = await run(change)
    key = res.sync_key
    assert set(res.statuses.values()) == {"1"}
    assert b"\\Seen" in await trio.to_thread.run_sync(imap_flags, srv, "INBOX", "message 007")
    assert b"\\Flagged" in await trio.to_thread.run_sync(imap_flags, srv, "INBOX", "message 008")

    # a delivery wakes the phone's Ping, and its Sync brings the new message
    async with trio.open_nursery() as n:
        got = {}

        async def ping():
            got["ping"] = await run(lambda: c.ping(inbox, heartbeat=300, timeout=120))

        n.start_soon(ping)
        await trio.sleep(0.5)
        await trio.to_thread.run_sync(lmtp, srv, "pushed news")
    assert got["ping"].status == "2" and inbox in got["ping"].changed_folder_ids
    r = await run(lambda: c.sync_folder(inbox, key, window_size=50))
    key = r.sync_key
    assert [it.fields.get("Email.Subject") for it in r.added] == ["pushed news"]
    new_sid = r.added[0].server_id

    # the full MIME through ItemOperations
    item = await run(lambda: c.fetch_item(inbox, new_sid, body_type=BodyType.MIME))
    assert isinstance(item.body.data, bytes) and b"Subject: pushed news" in item.body.data

    # MoveItems to Archive: seen over IMAP, and as Delete / Add in the two folders
    archive = folders["Archive"].id
    dst = await run(lambda: c.move_item(new_sid, inbox, archive))
    assert dst
    await trio.to_thread.run_sync(imap_flags, srv, "Archive", "pushed news")
    # the phone moved it itself: no Delete comes back for it (note_move)...
    r = await run(lambda: c.sync_folder(inbox, key, window_size=50))
    key = r.sync_key
    assert new_sid not in r.deleted and not r.added
    # ...but a move made over IMAP is a Delete here and an Add in Archive
    archive_key = await run(lambda: c.sync_folder(archive, "0").sync_key)
    r = await run(lambda: c.sync_folder(archive, archive_key, window_size=50))
    archive_key = r.sync_key
    assert [it.server_id for it in r.added] == [new_sid]

    def imap_move():
        m = imap(srv)
        try:
            m.select("INBOX")
            typ, data = m.search(None, "HEADER", "Subject", '"message 009"')
            assert m._simple_command("MOVE", data[0].decode(), "Archive")[0] == "OK"
        finally:
            m.logout()

    await trio.to_thread.run_sync(imap_move)
    moved_sid = by_subject["message 009"]
    r = await run(lambda: c.sync_folder(inbox, key, window_size=50))
    assert r.deleted == [moved_sid]
    r = await run(lambda: c.sync_folder(archive, archive_key, window_size=50))
    assert [it.server_id for it in r.added] == [moved_sid]

    # SendMail: received by the relay (the SMTP sink) and saved to Sent
    m = EmailMessage()
    m["From"] = "alice@localhost"
    m["To"] = "dave@example.net"
    m["Subject"] = "from the flow phone"
    m.set_content("Sent by the flow test.\n")
    await run(lambda: c.send_mail(m, save_in_sent_items=True))
    with trio.fail_after(30):
        while not sink.received:
            await trio.sleep(0.05)
    assert sink.received[0].rcpt_tos == ["dave@example.net"]
    assert b"Sent by the flow test." in sink.received[0].content
    assert b"\\Seen" in await trio.to_thread.run_sync(imap_flags, srv, "Sent",
                                                       "from the flow phone")
    c.close()
