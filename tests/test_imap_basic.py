"""IMAP over real loopback sockets with Python's imaplib as the client."""
import imaplib
import re

import pytest

from imap_helpers import connect, msg, run


async def test_login_list_select_fetch(imap_server):
    def go():
        c = connect(imap_server)
        typ, boxes = c.list()
        names = [b.split(b' "/" ')[1] for b in boxes]
        assert names[0] == b"INBOX"
        assert set(names) == {b"INBOX", b"Drafts", b"Sent", b"Trash", b"Junk", b"Archive"}
        assert any(b"\\Sent" in b for b in boxes)
        typ, data = c.append("INBOX", r"(\Seen $Custom)", None, msg("first"))
        assert typ == "OK" and re.match(rb"\[APPENDUID \d+ 1\]", data[0])
        c.append("INBOX", None, None, msg("second"))
        typ, data = c.select("INBOX")
        assert data == [b"2"]
        typ, data = c.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE)")
        assert b'"first"' in data[0] and b"\\Seen" in data[0] and b"$Custom" in data[0]
        assert b"UID 2" in data[1]
        typ, data = c.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: second\r\n\r\n"
        typ, data = c.fetch("2", "(FLAGS)")
        assert b"\\Seen" not in data[0]
        typ, data = c.fetch("2", "(BODY[TEXT])")
        assert data[0][1] == b"body text\r\n"
        typ, data = c.fetch("2", "(FLAGS)")
        assert b"\\Seen" in data[0]   # BODY[] without PEEK sets \Seen
        c.logout()
    await run(go)


async def test_wrong_password_and_bad_commands(imap_server):
    def go():
        c = imaplib.IMAP4("127.0.0.1", imap_server.bound["imap"][0][1])
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            c.login("alice", "wrong")
        with pytest.raises(imaplib.IMAP4.error):
            c.select("INBOX")   # not authenticated
        c.login("alice", "pw")
        with pytest.raises(imaplib.IMAP4.error, match="unknown command"):
            c.xatom("FROBNICATE")
        with pytest.raises(imaplib.IMAP4.error):
            c.fetch("1", "(FLAGS)")   # no mailbox selected
        c.select("INBOX")
        with pytest.raises(imaplib.IMAP4.error, match="sequence"):
            c.fetch("5", "(FLAGS)")   # beyond EXISTS
        c.logout()
    await run(go)


async def test_store_copy_move_expunge(imap_server):
    def go():
        c = connect(imap_server)
        for i in range(5):
            c.append("INBOX", None, None, msg(f"m{i}"))
        c.select("INBOX")
        typ, data = c.store("1:2", "+FLAGS", r"(\Deleted)")
        assert all(b"\\Deleted" in d for d in data)
        typ, data = c.copy("3", "Archive")
        assert re.search(rb"COPYUID \d+ 3 1", data[0])
        typ, data = c.uid("MOVE", "4", "Trash")
        assert typ == "OK"
        typ, data = c.expunge()
        # imaplib collects untagged EXPUNGEs: 4 came with the MOVE, then 2 and 1
        assert data == [b"4", b"2", b"1"]
        typ, data = c.select("INBOX")
        assert data == [b"2"]
        typ, data = c.status("Trash", "(MESSAGES UIDNEXT)")
        assert b"MESSAGES 1" in data[0]
        typ, data = c.uid("FETCH", "1:*", "(UID)")
        assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"3", b"5"]
        c.logout()
    await run(go)


async def test_mailbox_management(imap_server):
    def go():
        c = connect(imap_server)
        assert c.create("Projects/2026/&AMk-t&AOk-")[0] == "OK"
        typ, boxes = c.list('""', "Projects/*")
        assert [b.split(b' "/" ')[1] for b in boxes] == [b"Projects/2026", b"Projects/2026/&AMk-t&AOk-"]
        assert c.rename("Projects", "Work")[0] == "OK"
        typ, boxes = c.list('""', "Work/%")
        assert boxes == [b'(\\HasChildren) "/" Work/2026']
        typ, _ = c.delete("Work")
        assert typ == "NO"   # has children
        assert c.delete("Work/2026/&AMk-t&AOk-")[0] == "OK"
        assert c.create("INBOX")[0] == "NO"
        assert c.subscribe("Work")[0] == "OK"
        typ, data = c.lsub('""', "*")
        assert any(d.endswith(b"Work") for d in data)
        assert c.unsubscribe("Work")[0] == "OK"
        typ, data = c.lsub('""', "Work")
        assert data == [None]
        c.logout()
    await run(go)


async def test_two_sessions_see_each_others_changes(imap_server):
    def go():
        a = connect(imap_server)
        b = connect(imap_server)
        a.select("INBOX")
        b.select("INBOX")
        b.append("INBOX", None, None, msg("from b"))
        a.untagged_responses.clear()
        typ, data = a.noop()
        assert a.untagged_responses.get("EXISTS") == [b"1"]
        b.store("1", "+FLAGS", r"(\Flagged)")
        a.noop()
        fetches = a.untagged_responses.get("FETCH", [])
        assert any(b"\\Flagged" in f for f in fetches)
        b.store("1", "+FLAGS", r"(\Deleted)")
        b.expunge()
        a.untagged_responses.clear()
        a.noop()
        assert a.untagged_responses.get("EXPUNGE") == [b"1"]
        a.logout()
        b.logout()
    await run(go)


async def test_accounts_are_isolated_over_imap(imap_server):
    def go():
        a = connect(imap_server)
        a.append("INBOX", None, None, msg("secret"))
        b = connect(imap_server, "bob")
        typ, data = b.select("INBOX")
        assert data == [b"0"]
        typ, data = b.status("INBOX", "(MESSAGES)")
        assert b"MESSAGES 0" in data[0]
        a.logout()
        b.logout()
    await run(go)


async def test_subscriptions_outlive_mailboxes_and_lsub_noselect(imap_server):
    def go():
        c = connect(imap_server)
        c.create("gone")
        c.subscribe("gone")
        c.delete("gone")
        # RFC 9051 6.3.9: DELETE does not unsubscribe
        typ, data = c.lsub('""', "gone")
        assert data == [b'() "/" gone']
        typ, data = c._simple_command("LIST", "(SUBSCRIBED)", '""', "gone")
        assert c.untagged_responses.pop("LIST") == [b'(\\NonExistent \\Subscribed) "/" gone']
        c.create("gone")                     # comes back subscribed, once
        typ, data = c.lsub('""', "gone")
        assert len(data) == 1 and data[0].endswith(b" gone") and b"Noselect" not in data[0]
        c.delete("gone")
        assert c.unsubscribe("gone")[0] == "OK"
        typ, data = c.lsub('""', "gone")
        assert data == [None]
        # LSUB "%": an unsubscribed parent of a subscribed child is \Noselect
        c.create("a/b/c")
        c.subscribe("a/b/c")                 # CREATE subscribes nothing (RFC 3501 6.3.3)
        c.unsubscribe("a")
        c.unsubscribe("a/b")
        typ, data = c.lsub('""', "%")
        assert b'(\\Noselect) "/" a' in data
        c.logout()
    await run(go)
