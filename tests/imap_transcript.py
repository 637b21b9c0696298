"""A long IMAP conversation's transcript, to diff two trees of the server.

Runs an in-process server on loopback, plays ~200 commands over six
connections (every state, most commands and extensions, errors, a second
session's expunges seen by the first, QRESYNC and IMAP4rev2 clients, SASL),
and prints what was sent and every byte received, with UIDVALIDITY and
INTERNALDATE/SAVEDATE normalised.  A refactor that keeps the wire
byte-identical gives the same transcript:

    PYTHONPATH=OLD_TREE python tests/imap_transcript.py > old.txt
    PYTHONPATH=NEW_TREE python tests/imap_transcript.py > new.txt
    diff old.txt new.txt
"""
import dataclasses, re, sys, tempfile, threading, base64
import trio
from mailaccess import config as _config, accounts
from mailaccess.server import app

from imap_helpers import Raw as _Raw

MSGS = [
    b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: hello world\r\nMessage-ID: <a1@x>\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n\r\nfirst body\r\n",
    b"From: Bob <bob@example.org>\r\nTo: ann@example.org\r\nSubject: Re: hello world\r\nMessage-ID: <a2@x>\r\nIn-Reply-To: <a1@x>\r\nReferences: <a1@x>\r\nDate: Tue, 4 Nov 2025 10:00:00 +0000\r\n\r\nsecond body\r\n",
    b"From: Cy <cy@example.org>\r\nTo: ann@example.org\r\nSubject: other\r\nMessage-ID: <a3@x>\r\nDate: Wed, 5 Nov 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nYQBi\r\n--XX--\r\n",
    "From: Dé <d@example.org>\r\nTo: ann@example.org\r\nSubject: Grüße\r\nMessage-ID: <a4@x>\r\nDate: Thu, 6 Nov 2025 10:00:00 +0000\r\n\r\nutf8\r\n".encode(),
]

def Raw(port, out, name):
    """A recording raw client: OUT gets every line read and every write; a
    command also ends at a ``+`` continuation, or when the server closes."""
    r = _Raw(port, login=False, prefix=name.encode(), record=out, continuation=True,
             eof_ok=True)
    out.append(name.encode() + b" greeting: " + r.greeting)
    return r

def convo(port, out):
    lit = lambda m: b"{%d+}\r\n%s" % (len(m), m)
    a = Raw(port, out, "a")
    for c in [b"CAPABILITY", b"NOOP", b"SELECT INBOX", b"ENABLE CONDSTORE", b"IDLE", b"FETCH 1 FLAGS", b"ID NIL",
              b"AUTHENTICATE FOO", b"LOGIN alice wrong", b"BOGUS", b"UID NOOP", b"LOGIN alice pw", b"LOGIN alice pw",
              b"CAPABILITY", b"ID (\"name\" \"t\")", b"NAMESPACE", b"ENABLE CONDSTORE QRESYNC",
              b"FETCH 1 FLAGS", b"LIST \"\" \"\"", b"LIST \"\" *", b"CREATE Work/Sub", b"CREATE Arch (USE (\\Archive))",
              b"CREATE Bad (USE (\\Foo))", b"CREATE INBOX", b"CREATE Work", b"CREATE &AOQ-bc",
              b"SUBSCRIBE Work/Sub", b"SUBSCRIBE INBOX", b"LIST (SUBSCRIBED) \"\" *", b"LIST (SUBSCRIBED RECURSIVEMATCH) \"\" Work",
              b"LSUB \"\" %", b"LIST \"\" * RETURN (CHILDREN SPECIAL-USE SUBSCRIBED)",
              b"LIST \"\" % RETURN (STATUS (MESSAGES UIDNEXT UNSEEN SIZE))", b"LIST (SPECIAL-USE) \"\" *"]:
        a.cmd(c)
    for m in MSGS:
        a.cmd(b"APPEND INBOX (\\Seen $Forwarded) \"03-Nov-2025 10:00:00 +0100\" " + lit(m))
    a.cmd(b"APPEND INBOX " + lit(MSGS[0]) + b" (\\Flagged) " + lit(MSGS[1]))
    a.cmd(b"APPEND Nowhere " + lit(MSGS[0]))
    a.cmd(b"APPEND INBOX UTF8 (~{3+}\r\nabc)")
    for c in [b"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE HIGHESTMODSEQ DELETED APPENDLIMIT MAILBOXID)",
              b"STATUS &AOQ-bc (MESSAGES)", b"STATUS Nope (MESSAGES)",
              b"GETQUOTAROOT INBOX", b"GETQUOTA \"\"", b"GETQUOTA x", b"SETQUOTA \"\" (STORAGE 1)",
              b"EXAMINE INBOX", b"FETCH 1:* (FLAGS UID)", b"STORE 1 +FLAGS (\\Deleted)", b"CLOSE",
              b"SELECT INBOX (CONDSTORE)", b"FETCH 1:* (UID FLAGS MODSEQ RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE EMAILID THREADID)",
              b"FETCH 3 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[HEADER.FIELDS (Subject)] PREVIEW SAVEDATE BODY)",
              b"FETCH 1 (BODY[])", b"FETCH 2 (RFC822.HEADER RFC822.TEXT)", b"FETCH 9 FLAGS", b"FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
              b"SEARCH ALL", b"SEARCH FROM ann", b"UID SEARCH SUBJECT hello", b"SEARCH MODSEQ 1",
              b"SEARCH RETURN (MIN MAX COUNT) ALL", b"SEARCH RETURN () SUBJECT hello", b"UID SEARCH RETURN (ALL SAVE) SUBJECT hello",
              b"FETCH $ (UID)", b"SEARCH RETURN (MIN SAVE) ALL", b"SEARCH RETURN (COUNT) NOT ALL", b"SEARCH CHARSET X-FOO ALL",
              b"SEARCH CHARSET ISO-8859-1 SUBJECT other",
              b"SORT (SUBJECT) UTF-8 ALL", b"UID SORT (REVERSE DATE) UTF-8 ALL", b"SORT RETURN (MIN MAX COUNT ALL) (REVERSE ARRIVAL) UTF-8 ALL",
              b"SORT RETURN () (DATE) UTF-8 NOT ALL",
              b"THREAD REFERENCES UTF-8 ALL", b"UID THREAD ORDEREDSUBJECT UTF-8 ALL", b"THREAD REFERENCES UTF-8 NOT ALL",
              b"STORE 1 +FLAGS (\\Answered)", b"STORE 1:2 -FLAGS.SILENT (\\Seen)", b"UID STORE 1 FLAGS (\\Seen Custom)",
              b"STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Draft)", b"STORE 1 +FLAGS (\\Bogus)",
              b"COPY 1:2 Work", b"COPY 1 Nowhere", b"UID COPY 99 Work", b"MOVE 2 Work/Sub", b"UID MOVE 99 Work",
              b"STORE 1 +FLAGS (\\Deleted)", b"EXPUNGE", b"UID EXPUNGE 1:*", b"CHECK"]:
        a.cmd(c)
    b = Raw(port, out, "b")
    b.cmd(b"LOGIN alice pw"); b.cmd(b"SELECT INBOX")
    b.cmd(b"STORE 1 +FLAGS (\\Deleted)"); b.cmd(b"EXPUNGE")
    a.cmd(b"ENABLE UTF8=ACCEPT"); a.cmd(b"FETCH 1:* FLAGS"); a.cmd(b"SEARCH ALL"); a.cmd(b"STORE 2 +FLAGS (\\Seen)"); a.cmd(b"NOOP")
    b.cmd(b"APPEND INBOX " + lit(MSGS[2]))
    b.cmd(b"STORE 2 +FLAGS (\\Flagged)")
    a.cmd(b"NOOP")
    a.cmd(b"UNSELECT")
    # rev1 client with qresync
    c = Raw(port, out, "c")
    c.cmd(b"LOGIN alice pw"); c.cmd(b"ENABLE QRESYNC"); c.cmd(b"SELECT INBOX (QRESYNC (1 1 1:10))")
    c.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    b.cmd(b"STORE 1 +FLAGS (\\Deleted)"); b.cmd(b"EXPUNGE")
    c.cmd(b"NOOP"); c.cmd(b"SELECT Work"); c.cmd(b"SELECT Nowhere"); c.cmd(b"FETCH 1 FLAGS")
    # rev2 client
    d = Raw(port, out, "d")
    d.cmd(b"LOGIN alice pw"); d.cmd(b"ENABLE IMAP4rev2"); d.cmd(b"SELECT INBOX"); d.cmd(b"SEARCH ALL")
    d.cmd(b"LIST \"\" *"); d.cmd(b"UNSELECT")
    d.cmd(b"RENAME Work Job"); d.cmd(b"RENAME INBOX Old/In"); d.cmd(b"RENAME Job INBOX")
    d.cmd(b"SELECT Arch"); d.cmd(b"DELETE Arch"); d.cmd(b"FETCH 1 FLAGS")
    d.cmd(b"DELETE Job"); d.cmd(b"UNSUBSCRIBE Gone"); d.cmd(b"SUBSCRIBE Old"); d.cmd(b"DELETE Old/In"); d.cmd(b"LIST (SUBSCRIBED) \"\" *")
    d.cmd(b"LSUB \"\" *"); d.cmd(b"UNSUBSCRIBE Old/In")
    d.cmd(b"COMPRESS FOO")
    d.cmd(b"UNAUTHENTICATE"); d.cmd(b"SELECT INBOX")
    e = Raw(port, out, "e")
    e.cmd(b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0pw")); e.cmd(b"SELECT INBOX")
    e.cmd(b"AUTHENTICATE PLAIN")
    f = Raw(port, out, "f")
    f.cmd(b"AUTHENTICATE PLAIN"); f.write(b"*\r\n"); f.line()
    f.cmd(b"AUTHENTICATE LOGIN"); f.write(base64.b64encode(b"alice") + b"\r\n"); f.line(); f.write(b"!!\r\n"); f.line()

    f.cmd(b"SEARCH (((")
    for x in (a, b, c, d, e, f):
        x.cmd(b"LOGOUT")

async def main(tmp):
    cfg = _config.Config(data_dir=tmp, demo_account=False)
    lo = _config.Listener("127.0.0.1", 0)
    cfg = dataclasses.replace(cfg, imap=dataclasses.replace(cfg.imap, listen=lo, listen_tls=lo, login_failure_delay=0.0),
                              http=dataclasses.replace(cfg.http, listen=lo), lmtp=dataclasses.replace(cfg.lmtp, listen=lo))
    async with trio.open_nursery() as n:
        ctx = await n.start(lambda task_status: app.serve(cfg, task_status=task_status, install_signals=False))
        await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
        out = []
        try:
            await trio.to_thread.run_sync(convo, ctx.bound["imap"][0][1], out)
        except Exception as exc:
            out.append(b"\nEXCEPTION %r\n" % exc)
        n.cancel_scope.cancel()
    data = b"".join(out)
    data = re.sub(rb"UIDVALIDITY \d+", b"UIDVALIDITY X", data)
    data = re.sub(rb"(COPYUID|APPENDUID) \d+", rb"\1 X", data)
    data = re.sub(rb'"[ 0-9]\d-\w{3}-20\d\d \d\d:\d\d:\d\d \+0000"', b'"DATE"', data)
    sys.stdout.buffer.write(data)

with tempfile.TemporaryDirectory() as tmp:
    trio.run(main, tmp)
