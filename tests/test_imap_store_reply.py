"""The answer to STORE (RFC 9051 6.4.6): the inline reply of a small STORE
(``ImapSession._store_fetch``, one view, no streaming; and the one-message
STORE's line formatted from its record, ``_store_one``/``_store_line``) says
byte for byte what the streaming FETCH path (``send_fetch``) says, in every
case it handles: \\Recent messages, custom keywords in their first spelling, a
keyword new to the session (``* FLAGS`` first), another session's keyword,
CONDSTORE's MODSEQ, UNCHANGEDSINCE conflicts, .SILENT, UID and sequence
forms.  Two accounts of one server run the same conversation, one with the
inline reply and one without; their modseqs and UIDs are the same."""
from __future__ import annotations

import functools

import trio

from imap_helpers import imap_port, msg, Raw, run
from mailaccess import accounts
from mailaccess.server import imap_session

Raw = functools.partial(Raw, timeout=30, whole=True, logout="wait")

CONVERSATION = [
    "STORE 1 +FLAGS (\\Flagged)",
    "UID STORE 2 +FLAGS (\\Seen \\Answered)",
    "STORE 2,4 +FLAGS ($MyFlag)",          # new to the session: * FLAGS first
    "STORE 3 +FLAGS ($myflag)",            # shown as first spelled
    "STORE 3 -FLAGS ($myflag)",
    "UID STORE 1:3 FLAGS (\\Draft $MyFlag)",
    "STORE 5 +FLAGS.SILENT (\\Deleted)",
    "ENABLE CONDSTORE",
    "STORE 1 +FLAGS (\\Seen)",
    "OTHER STORE 2 +FLAGS (OtherOne)",     # another session, a keyword we were not told
    "STORE 2 +FLAGS (\\Flagged)",
    "UID STORE 1,4 (UNCHANGEDSINCE 1) +FLAGS (\\Answered)",
    "STORE 1:5 +FLAGS (\\Seen)",           # more than the inline limit at 4: streams
    "STORE 4 -FLAGS (\\Seen)",
    "STORE 6 FLAGS ()",
    "UID STORE 6 +FLAGS ($MyFlag)",
]


def converse(port: int, user: str) -> list[bytes]:
    a = Raw(port, user=user)
    other = Raw(port, user=user)
    for i in range(6):
        a.cmd("APPEND INBOX", msg(f"m{i}"))
    out = []
    a.cmd("SELECT INBOX")               # every message is \Recent in this session
    other.cmd("SELECT INBOX")
    for line in CONVERSATION:
        if line.startswith("OTHER "):
            other.cmd(line[6:])
            continue
        out.append(b"".join(a.cmd(line)))
    a.close()
    other.close()
    return out


async def test_inline_store_reply_says_what_the_fetch_path_says(imap_server, monkeypatch):
    port = imap_port(imap_server)
    used = []
    lines = []
    real = imap_session.ImapSession._store_fetch
    real_line = imap_session.ImapSession._store_line

    def counting_line(self, *a):
        r = real_line(self, *a)
        lines.append(r is not None)
        return r

    def counting(self, uids, items, read_email=None):
        r = real(self, uids, items, read_email)
        used.append((read_email is not None, r[0] is not None))
        return r

    monkeypatch.setattr(imap_session, "STORE_REPLY_INLINE", 4)
    monkeypatch.setattr(imap_session.ImapSession, "_store_fetch", counting)
    monkeypatch.setattr(imap_session.ImapSession, "_store_line", counting_line)
    inline = await run(converse, port, "alice")
    # formatted from the writer's records (no view): one message by
    # _store_line, more by _store_fetch; and over a view (a keyword new to
    # the session)
    assert lines.count(True) >= 6 and used.count((True, True)) >= 1
    assert used.count((False, True)) >= 1
    used.clear()
    # every inline answer over a view
    from_records = imap_session.ImapSession._store_inline
    one = imap_session.ImapSession._store_one
    monkeypatch.setattr(imap_session.ImapSession, "_store_inline", lambda *a: None)
    monkeypatch.setattr(imap_session.ImapSession, "_store_one", lambda *a: None)
    await trio.to_thread.run_sync(accounts.add_user, imap_server.store, "carol", "pw")
    viewed = await run(converse, port, "carol")
    assert used.count((False, True)) >= 8 and not any(e for e, _ in used)
    monkeypatch.setattr(imap_session.ImapSession, "_store_inline", from_records)
    monkeypatch.setattr(imap_session.ImapSession, "_store_one", one)
    monkeypatch.setattr(imap_session, "STORE_REPLY_INLINE", 0)     # _store_one too
    streamed = await run(converse, port, "bob")
    assert inline == streamed
    assert viewed == streamed
    assert any(b"\\Recent" in r for r in inline)
    assert any(b"$MyFlag" in r for r in inline) and not any(b"$myflag" in r for r in inline)
    assert any(b"MODSEQ" in r for r in inline) and any(b"MODIFIED" in r for r in inline)
