"""Rules the session's dispatcher holds for every command, seen by real clients.

- RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH (nor
  SORT/THREAD, nor their UID forms); the next NOOP announces it.  One place
  holds this (the dispatcher's refresh), so a handler that catches up on its
  own breaks this test.
- The state table (proto/imap/state.py) is what runs: ENABLE after SELECT is
  BAD (RFC 5161 §3.1), a command of the wrong state is BAD with the table's
  reason, and the state follows the table (a failed SELECT leaves nothing
  selected).
- FETCH data items on the live path, exact bytes (sections, partials,
  literal8).
"""
import functools

from imap_helpers import connect, msg, RawText, run


Raw = functools.partial(RawText, prefix=b"r")


async def test_no_expunge_announced_during_fetch_search_store(imap_server):
    def go():
        a = connect(imap_server)
        for i in range(4):
            a.append("INBOX", None, None, msg(f"m{i}"))
        a.select("INBOX")
        b = connect(imap_server)
        b.select("INBOX")
        b.store("1", "+FLAGS", "\\Deleted")
        b.expunge()
        b.logout()

        checks = [
            ("FETCH", lambda: a.fetch("1:*", "(FLAGS)")),
            ("UID FETCH", lambda: a.uid("FETCH", "1:*", "(FLAGS)")),
            ("SEARCH", lambda: a.search(None, "ALL")),
            ("UID SEARCH", lambda: a.uid("SEARCH", "ALL")),
            ("STORE", lambda: a.store("2", "+FLAGS", "\\Seen")),
            ("UID STORE", lambda: a.uid("STORE", "3", "+FLAGS", "\\Answered")),
            ("SORT", lambda: a.sort("(DATE)", "UTF-8", "ALL")),
            ("THREAD", lambda: a.thread("REFERENCES", "UTF-8", "ALL")),
        ]
        for name, call in checks:
            a.untagged_responses.clear()
            typ, _data = call()
            assert typ == "OK", name
            assert "EXPUNGE" not in a.untagged_responses, f"EXPUNGE announced during {name}"
        # the sequence map did not move: message 2 is still UID 2
        typ, data = a.fetch("2", "(UID)")
        assert typ == "OK" and data[0].startswith(b"2 (UID 2"), data
        a.untagged_responses.clear()
        typ, _ = a.noop()
        assert a.untagged_responses.get("EXPUNGE") == [b"1"]
        a.logout()
    await run(go)


async def test_search_skips_messages_expunged_elsewhere(imap_server):
    """A message another session expunged is not announced during SEARCH,
    and not found by it either (the candidates are the session's map less
    what is gone: SelectedMailbox.columns), whatever the condition."""
    def go():
        a = connect(imap_server)
        for i in range(4):
            a.append("INBOX", None, None, msg(f"m{i}"))
        a.select("INBOX")
        b = connect(imap_server)
        b.select("INBOX")
        b.store("2", "+FLAGS", "\\Deleted")
        b.expunge()
        b.logout()
        a.fetch("1:*", "(FLAGS)")      # learns of it (not announced)
        assert a.uid("SEARCH", "UNSEEN") == ("OK", [b"1 3 4"])
        assert a.uid("SEARCH", "ALL") == ("OK", [b"1 3 4"])
        assert a.uid("SEARCH", "UID", "1:2") == ("OK", [b"1"])
        assert a.uid("SEARCH", "LARGER", "1") == ("OK", [b"1 3 4"])
        assert a.search(None, "UNSEEN") == ("OK", [b"1 3 4"])
        a.logout()
    await run(go)


async def test_enable_after_select_is_bad(imap_server):
    def go():
        r = Raw(imap_server)
        assert r.cmd(b"ENABLE CONDSTORE").endswith(b"OK ENABLE completed\r\n")
        r.cmd(b"SELECT INBOX")
        out = r.cmd(b"ENABLE QRESYNC")
        assert out == b"r4 BAD ENABLE is not allowed once a mailbox is selected\r\n", out
        r.cmd(b"UNSELECT")
        assert b"* ENABLED QRESYNC\r\n" in r.cmd(b"ENABLE QRESYNC")
        r.close()
    await run(go)


async def test_the_state_table_decides(imap_server):
    def go():
        r = Raw(imap_server, login=False)
        assert r.cmd(b"SELECT INBOX") == b"r1 BAD SELECT needs you to log in first\r\n"
        assert r.cmd(b"ENABLE CONDSTORE") == b"r2 BAD ENABLE needs you to log in first\r\n"
        assert r.cmd(b"IDLE") == b"r3 BAD log in first\r\n"
        assert r.cmd(b"LOGIN alice pw").startswith(b"r4 OK [CAPABILITY ")
        assert r.cmd(b"LOGIN alice pw") == b"r5 BAD already authenticated\r\n"
        assert r.cmd(b"AUTHENTICATE PLAIN") == b"r6 BAD already authenticated\r\n"
        assert r.cmd(b"FETCH 1 FLAGS") == b"r7 BAD FETCH needs a selected mailbox\r\n"
        assert r.cmd(b"SELECT INBOX").endswith(b"r8 OK [READ-WRITE] SELECT completed\r\n")
        assert r.cmd(b"UID FETCH 1:* FLAGS").endswith(b"r9 OK FETCH completed\r\n")
        # a failed SELECT in the selected state leaves nothing selected (RFC 9051 6.3.2)
        assert r.cmd(b"SELECT Nowhere").startswith(b"r10 NO [NONEXISTENT]")
        assert r.cmd(b"FETCH 1 FLAGS") == b"r11 BAD FETCH needs a selected mailbox\r\n"
        assert r.cmd(b"LOGOUT") == b"* BYE mailaccess logging out\r\nr12 OK LOGOUT completed\r\n"
        r.close()
    await run(go)


MULTIPART = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: parts\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"--XX\r\nContent-Type: text/plain\r\n\r\nhello world\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"YQBi\r\n--XX--\r\n"
)


async def test_fetch_items_exact_bytes(imap_server):
    """FETCH data items as the live path (build_fetch) sends them."""
    def go():
        r = Raw(imap_server)
        r.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(MULTIPART), MULTIPART))
        r.cmd(b"EXAMINE INBOX")
        cases = [
            (b"BODY.PEEK[1]", b"BODY[1] {11}\r\nhello world"),
            (b"BODY.PEEK[1]<0.5>", b"BODY[1]<0> {5}\r\nhello"),
            (b"BODY.PEEK[1]<100.3>", b"BODY[1]<100> {0}\r\n"),
            (b"BODY.PEEK[1.MIME]", b"BODY[1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n"),
            (b'BODY.PEEK[HEADER.FIELDS (Subject "To")]',
             b"BODY[HEADER.FIELDS (Subject To)] {37}\r\nTo: b@example.org\r\nSubject: parts\r\n\r\n"),
            (b"BINARY.PEEK[1]", b"BINARY[1] {11}\r\nhello world"),
            (b"BINARY.PEEK[2]", b"BINARY[2] ~{3}\r\na\x00b"),
            (b"BINARY.PEEK[2]<1.2>", b"BINARY[2]<1> ~{2}\r\n\x00b"),
            (b"BINARY.SIZE[2]", b"BINARY.SIZE[2] 3"),
        ]
        for att, wire in cases:
            out = r.cmd(b"FETCH 1 (" + att + b")")
            assert out.startswith(b"* 1 FETCH (" + wire + b")\r\n"), (att, out)
        r.close()
    await run(go)


def test_server_context_carries_no_service_state():
    """IMAP's shared views and session counts live in its service (server/imap.py
    ImapService), so JMAP and ActiveSync will not each add fields here."""
    import dataclasses

    from mailaccess.server.app import ServerContext
    from mailaccess.server.imap import ImapService

    names = {f.name for f in dataclasses.fields(ServerContext)}
    # auth: the login service every protocol shares (mailaccess/auth);
    # worker: the worker process this is (server/workers.py), or None
    assert names == {"cfg", "store", "bus", "tls_cert", "tls_key", "bound", "auth",
                     "worker"}, names
    assert {"views", "sessions"} <= set(vars(ImapService(None)))
