"""ActiveSync Sync (server/eas_sync.py, eas_syncstate.py) against ``serve``:
pyactivesync (a third-party client sending 16.1) for the whole flow, raw
requests built with our codec for what it lacks (other versions, Options,
Wait, Partial, Fetch, conflicts), imaplib for what the device did as IMAP
sees it and for changes the device must see."""
import imaplib
import time
from email.message import EmailMessage

import pytest
import trio
from pyactivesync import EmailChange

from eas_helpers import (VERSIONS, Coll, account, cid, collection, collections, eas_client,
                         fill, http, message, post, provision, role, sid, srv, sync, sync_body)
from imap_helpers import run
from mailaccess import ingest, vocab
from mailaccess.proto.eas.wbxml import E, decode
from mailaccess.server import eas_syncstate as ss
from mailaccess.store import ops

assert srv  # the fixture


def imap(ctx) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", ctx.bound["imap"][0][1])
    m.login("alice", "pw")
    return m


def flags_of(ctx, folder="INBOX") -> dict[int, str]:
    """UID -> FLAGS of every message in FOLDER, over IMAP."""
    m = imap(ctx)
    try:
        m.select(folder)
        typ, data = m.uid("FETCH", "1:*", "(FLAGS EMAILID)")
        out = {}
        for line in data:
            if not line:
                continue
            s = line.decode()
            eid = s.split("EMAILID (")[1].split(")")[0]
            out[eid] = s.split("FLAGS (")[1].split(")")[0]
        return out
    finally:
        m.logout()


# --- pyactivesync: the whole flow --------------------------------------------------------------

async def test_pyactivesync_initial_sync_pages_newest_first_then_changes_both_ways(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 300)

    def go():
        with eas_client(srv) as c:
            c.provision()
            folders = {f.name: f.id for f in c.list_folders()}
            fid = folders["INBOX"]
            first = c.sync_folder(fid, "0")
            pages, key = [], first.sync_key
            while True:
                r = c.sync_folder(fid, key, window_size=128)
                pages.append(r)
                key = r.sync_key
                if not r.more_available:
                    break
            again = c.sync_folder(fid, key, window_size=128)
            ch = c.apply_email_changes(fid, key, [
                EmailChange(sid(eids[0]), read=True),
                EmailChange(sid(eids[1]), flagged=True),
                EmailChange(sid(eids[2]), read=True, flagged=True)])
            after = c.sync_folder(fid, ch.sync_key)
            return first, pages, again, ch, after

    first, pages, again, ch, after = await run(go)
    assert first.added == [] and first.sync_key != "0"
    assert [len(p.added) for p in pages] == [128, 128, 44]
    assert [p.more_available for p in pages] == [True, True, False]
    got = [a.server_id for p in pages for a in p.added]
    assert got == [sid(e) for e in eids]                 # newest first, each once
    a0 = pages[0].added[0].fields
    assert a0["Email.Subject"] == "message 0" and a0["Email.Read"] == "0"
    assert again.added == again.changed == again.deleted == []
    assert again.sync_key == pages[-1].sync_key          # nothing new: the key stays
    assert set(ch.statuses.values()) == {"1"}
    # the device's own changes are not sent back to it
    assert after.changed == [] and after.added == []
    fl = await run(flags_of, srv)
    assert "\\Seen" in fl[sid(eids[0])] and "\\Flagged" not in fl[sid(eids[0])]
    assert "\\Flagged" in fl[sid(eids[1])] and "\\Seen" not in fl[sid(eids[1])]
    assert "\\Seen" in fl[sid(eids[2])] and "\\Flagged" in fl[sid(eids[2])]
    assert "\\Seen" not in fl[sid(eids[3])] and "\\Flagged" not in fl[sid(eids[3])]


async def test_imap_store_expunge_move_are_change_delete_add(srv):
    acc = account(srv.store)
    inbox, arch = role(srv.store, acc, "inbox"), role(srv.store, acc, "archive")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 6)

    def go():
        with eas_client(srv) as c:
            c.provision()
            k_in = c.sync_folder(cid(inbox), "0").sync_key
            k_ar = c.sync_folder(cid(arch), "0").sync_key
            k_in = c.sync_folder(cid(inbox), k_in).sync_key
            k_ar = c.sync_folder(cid(arch), k_ar).sync_key
            m = imap(srv)
            m.select("INBOX")
            m.uid("STORE", "1", "+FLAGS", "(\\Seen \\Flagged)")     # eids[0]
            m.uid("STORE", "2", "+FLAGS", "(\\Deleted)")            # eids[1]
            m.expunge()
            m.uid("MOVE", "3", "Archive")                           # eids[2]
            m.logout()
            r_in = c.sync_folder(cid(inbox), k_in)
            r_ar = c.sync_folder(cid(arch), k_ar)
            return r_in, r_ar

    r_in, r_ar = await run(go)
    assert [a.server_id for a in r_in.changed] == [sid(eids[0])]
    ch = r_in.changed[0].fields
    assert ch["Email.Read"] == "1" and ch["Email.Status"] == "2"
    assert sorted(r_in.deleted) == sorted([sid(eids[1]), sid(eids[2])])
    assert r_in.added == []
    assert [a.server_id for a in r_ar.added] == [sid(eids[2])]     # same ServerId
