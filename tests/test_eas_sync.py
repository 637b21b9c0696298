"""ActiveSync Sync (server/eas_sync.py, eas_syncstate.py) against ``serve``:
pyactivesync (a third-party client sending 16.1) for the whole flow, raw
requests built with our codec for what it lacks (other versions, Options,
Wait, Partial, Fetch, conflicts), imaplib for what the device did as IMAP
sees it and for changes the device must see."""
import email.policy
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
from mailaccess.proto.eas.wbxml import E, decode, encode
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


# --- raw requests --------------------------------------------------------------------------------

class Device:
    """A raw EAS device over httpx (our codec): provisioned, one version."""

    def __init__(self, ctx, version="14.1", device=None, timeout=30):
        self.c = http(ctx, timeout=timeout)
        self.version = version
        self.device = device or "raw" + version.replace(".", "")
        self.pk = provision(self.c, version, self.device)

    def sync(self, *colls, **kw):
        return sync(self.c, self.pk, sync_body(*colls, **kw), version=self.version,
                    device=self.device)

    def raw(self, body: bytes | None):
        return sync(self.c, self.pk, body, version=self.version, device=self.device)

    def one(self, cid_, key, **kw) -> Coll:
        doc = self.sync(collection(cid_, key, **kw))
        if doc is None:                     # the empty answer: nothing new, same key
            return Coll(str(key), 1)
        return collections(doc)[cid_]

    def prime(self, cid_, **kw) -> str:
        co = self.one(cid_, 0, **kw)
        assert co.status == 1 and co.adds == [] and co.key != "0"
        return co.key

    def close(self):
        self.c.close()


def in_thread(fn):
    async def runner(*a):
        return await run(fn, *a)
    return runner


async def test_previous_key_gets_the_same_batch_and_a_bad_key_status_3(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 10)

    def go():
        d = Device(srv)
        k1 = d.prime(cid(inbox))
        a = d.one(cid(inbox), k1, window=4)                  # the answer the device "loses"
        newer = fill(srv.store, acc, inbox, 1, start=time.time() + 100)
        b = d.one(cid(inbox), k1, window=4)                  # resent with the previous key
        stale = d.one(cid(inbox), a.key, window=4)           # the lost answer's key: gone now
        rest = d.one(cid(inbox), b.key, window=100)
        bad = d.one(cid(inbox), "987654", window=4)
        junk = d.one(cid(inbox), "x1", window=4)
        d.close()
        return a, b, stale, rest, bad, junk, newer

    a, b, stale, rest, bad, junk, newer = await run(go)
    assert a.add_ids == [sid(e) for e in eids[:4]] and a.more
    assert b.add_ids == a.add_ids and b.key not in (a.key, "0") and b.more
    assert stale.status == 3 and stale.key == "0" and stale.adds == []
    assert rest.add_ids == [sid(newer[0])] + [sid(e) for e in eids[4:]]
    assert (bad.status, bad.key, junk.status) == (3, "0", 3)


async def test_replay_of_a_draft_add_does_not_store_it_twice(srv):
    acc = account(srv.store)
    drafts = role(srv.store, acc, "drafts")

    def add(client_id):
        app = E("AirSync:ApplicationData", E("Email:To", text='"Bob" <bob@example.org>'),
                E("Email:Subject", text="Grüße"),
                E("AirSyncBase:Body", E("AirSyncBase:Type", text="1"),
                  E("AirSyncBase:Data", text="hello\nthere")))
        return E("AirSync:Add", E("AirSync:ClientId", text=client_id), app)

    def go():
        d = Device(srv, "16.0")
        k1 = d.prime(cid(drafts))
        k2 = d.one(cid(drafts), k1).key
        first = d.one(cid(drafts), k2, commands=[add("c-1")])
        again = d.one(cid(drafts), k2, commands=[add("c-1")])       # resent
        later = d.one(cid(drafts), again.key)
        old = Device(srv, "14.1")
        ko = old.prime(cid(drafts))
        ko = old.one(cid(drafts), ko).key
        refused = old.one(cid(drafts), ko, commands=[add("c-2")])
        d.close(), old.close()
        return first, again, later, refused

    first, again, later, refused = await run(go)
    r1 = first.responses[0]
    assert r1.tag == "Add" and r1.child_text("AirSync:ClientId") == "c-1"
    assert r1.child_text("AirSync:Status") == "1"
    server_id = r1.child_text("AirSync:ServerId")
    r2 = again.responses[0]
    assert r2.child_text("AirSync:ServerId") == server_id
    assert later.adds == []                                   # the device's own draft
    with srv.store.view() as v:
        got = [e for _, e in v.uids(acc, drafts)]
        rec = v.email(acc, got[0])
        raw = bytes(v.blob(acc, rec.blob))
    assert [sid(e) for e in got] == [server_id]
    assert vocab.DRAFT in rec.keywords and vocab.SEEN not in rec.keywords
    assert b"To: Bob <bob@example.org>" in raw and b"Subject: =?utf-8?" in raw.replace(b"UTF-8", b"utf-8")
    assert b"hello\r\nthere" in raw
    assert refused.responses[0].child_text("AirSync:Status") == "6"


@pytest.mark.parametrize("strict", [False, True], ids=["this-python", "strict-parser"])
def test_draft_recipients_whatever_the_python(monkeypatch, strict):
    """A draft's To keeps its good addresses and its encoded-word names are
    read, whichever way this Python's getaddresses answers a malformed list
    (fragments; or, with the CVE-2023-27043 fix of 3.12.6+/3.13, nothing)."""
    import email.utils
    from mailaccess.server import eas_sync_client
    if strict:
        real = email.utils.getaddresses
        monkeypatch.setattr(email.utils, "getaddresses", lambda vs: [("", "")] if any(
            "(Carol" in v for v in vs) else real(vs))
    app = E("AirSync:ApplicationData",
            E("Email:To", text='"Bob" <bob@example.org>, carol@example.net (Carol'),
            E("Email:Cc", text="=?utf-8?q?D=C3=B6rte?= <doerte@example.org>"),
            E("AirSyncBase:Body", E("AirSyncBase:Type", text="1"),
              E("AirSyncBase:Data", text="hi")))
    raw, _kws = eas_sync_client._draft_message(app, 1_700_000_000)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("Bob", "bob@example.org"), ("Carol", "carol@example.net")]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("D\u00f6rte", "doerte@example.org")]


async def test_pyactivesync_draft_add_on_16_1_seen_over_imap(srv):
    acc = account(srv.store)
    drafts = role(srv.store, acc, "drafts")

    def go():
        with eas_client(srv) as c:
            c.provision()
            k = c.sync_folder(cid(drafts), "0").sync_key
            k = c.sync_folder(cid(drafts), k).sync_key
            msg = EmailMessage()
            msg["To"] = "bob@example.org"
            msg["Subject"] = "draft from the phone"
            msg.set_content("first line\n")
            r = c.create_email_draft(cid(drafts), k, msg, flagged=True)
            nxt = c.sync_folder(cid(drafts), r.sync_key)
        m = imap(srv)
        m.select("Drafts")
        typ, data = m.uid("FETCH", "1:*", "(FLAGS EMAILID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        m.logout()
        return r, nxt, data

    r, nxt, data = await run(go)
    assert r.status == "1" and r.server_id.startswith("E")
    assert nxt.added == []
    head = data[0][0].decode()
    assert "\\Draft" in head and "\\Flagged" in head and r.server_id in head
    assert b"draft from the phone" in data[0][1]


async def test_deletes_as_moves_trash_and_permanent(srv):
    acc = account(srv.store)
    inbox, trash = role(srv.store, acc, "inbox"), role(srv.store, acc, "trash")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 4)

    def go():
        with eas_client(srv) as c:
            c.provision()
            ki = c.sync_folder(cid(inbox), "0").sync_key
            ki = c.sync_folder(cid(inbox), ki).sync_key
            kt = c.sync_folder(cid(trash), "0").sync_key
            kt = c.sync_folder(cid(trash), kt).sync_key
            newer = fill(srv.store, acc, inbox, 1, start=time.time() + 50)   # meanwhile
            r1 = c.apply_email_changes(cid(inbox), ki, [EmailChange(sid(eids[0]), delete=True)])
            r2 = c.apply_email_changes(cid(inbox), r1.sync_key,
                                       [EmailChange(sid(eids[1]), delete=True),
                                        EmailChange("E99999", delete=True)],
                                       deletes_as_moves=False)
            after = c.sync_folder(cid(inbox), r2.sync_key)
            t = c.sync_folder(cid(trash), kt)
            r3 = c.apply_email_changes(cid(trash), t.sync_key,
                                       [EmailChange(sid(eids[0]), delete=True)])
            t2 = c.sync_folder(cid(trash), r3.sync_key)
            return r1, r2, after, t, t2, newer

    r1, r2, after, t, t2, newer = await run(go)
    assert r2.statuses["E99999"] == "8" and r2.statuses[sid(eids[1])] == "1"
    # the device's own deletes are not sent back; the delivery meanwhile is
    assert after.deleted == [] and [a.server_id for a in after.added] == [sid(newer[0])]
    assert [a.server_id for a in t.added] == [sid(eids[0])]
    assert t2.deleted == [] and t2.added == []
    with srv.store.view() as v:
        assert sorted(e for _, e in v.uids(acc, inbox)) == sorted([eids[2], eids[3], newer[0]])
        assert v.uids(acc, trash) == []
        assert v.email(acc, eids[0]) is None and v.email(acc, eids[1]) is None


async def test_fetch_conflicts_and_not_found(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 3)

    def read(e, v="1"):
        return E("AirSync:Change", E("AirSync:ServerId", text=sid(e)),
                 E("AirSync:ApplicationData", E("Email:Read", text=v)))

    def go():
        d = Device(srv)
        k = d.prime(cid(inbox))
        k = d.one(cid(inbox), k).key
        # changed over IMAP meanwhile: flagged
        srv.store.write_sync(ops.set_keywords, acc, [eids[0]], add=[vocab.FLAGGED])
        fetch = E("AirSync:Fetch", E("AirSync:ServerId", text=sid(eids[2])))
        missing = E("AirSync:Fetch", E("AirSync:ServerId", text="E424242"))
        a = d.one(cid(inbox), k, commands=[read(eids[0]), read(eids[1]), fetch, missing,
                                           read(424242)])
        srv.store.write_sync(ops.set_keywords, acc, [eids[1]], add=[vocab.FLAGGED])
        b = d.one(cid(inbox), a.key, commands=[read(eids[1], "0")],
                  options=[E("AirSync:Conflict", text="0")])
        d.close()
        return a, b

    a, b = await run(go)
    st = {(r.tag, r.child_text("AirSync:ServerId")): r for r in a.responses}
    assert st[("Change", sid(eids[0]))].child_text("AirSync:Status") == "7"     # server wins
    assert ("Change", sid(eids[1])) not in st                                   # applied
    assert st[("Change", "E424242")].child_text("AirSync:Status") == "8"
    f = st[("Fetch", sid(eids[2]))]
    assert f.child_text("AirSync:Status") == "1"
    assert f.find("AirSync:ApplicationData").child_text("Email:Subject") == "message 2"
    assert st[("Fetch", "E424242")].child_text("AirSync:Status") == "8"
    # the server's object is sent to the device: flagged, still unread
    assert [s for s, _ in a.changes] == [sid(eids[0])]
    app = a.changes[0][1]
    assert app.child_text("Email:Read") == "0"
    assert app.find("Email:Flag").child_text("Email:Status") == "2"
    # Conflict 0: the client's object wins
    assert b.responses == []
    with srv.store.view() as v:
        assert vocab.SEEN not in v.email(acc, eids[0]).keywords
        assert vocab.SEEN not in v.email(acc, eids[1]).keywords
    assert [s for s, _ in b.changes] == []


async def test_filter_type_windows_and_soft_delete(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    now = time.time()
    eids = await trio.to_thread.run_sync(lambda: fill(srv.store, acc, inbox, 10, start=now - 3600,
                                                      step=86400))

    def ft(n):
        return [E("AirSync:FilterType", text=str(n))]

    def go():
        d = Device(srv)
        k = d.prime(cid(inbox), options=ft(3))
        week = d.one(cid(inbox), k)                 # Options omitted: the last ones (1 week)
        day = d.one(cid(inbox), week.key, options=ft(1))
        allof = d.one(cid(inbox), day.key, options=ft(0))
        bad = d.one(cid(inbox), allof.key, options=ft(8))
        d.close()
        return week, day, allof, bad

    week, day, allof, bad = await run(go)
    assert week.add_ids == [sid(e) for e in eids[:7]]
    assert day.soft == [sid(e) for e in sorted(eids[1:7])] and day.adds == []
    assert allof.add_ids == [sid(e) for e in eids[1:]]
    assert bad.status == 4


async def test_deleted_collection_is_status_12_then_8(srv):
    acc = account(srv.store)
    folder = srv.store.write_sync(ops.create_mailbox, acc, 0, "Old")
    await trio.to_thread.run_sync(fill, srv.store, acc, folder, 2)

    def go():
        d = Device(srv)
        k = d.prime(cid(folder))
        k = d.one(cid(folder), k).key
        srv.store.write_sync(ops.delete_mailbox, acc, folder)
        with srv.store.view() as v:
            pend = ss.pending(v, acc, d.device, cid(folder))
        a = d.one(cid(folder), k)
        b = d.one(cid(folder), k)
        d.close()
        return pend, a, b

    pend, a, b = await run(go)
    assert pend == 1 and a.status == 12 and b.status == 8


async def test_wait_and_heartbeat_bounds_by_version(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")

    def top(doc):
        return (int(doc.child_text("AirSync:Status")),
                doc.child_text("AirSync:Limit") and int(doc.child_text("AirSync:Limit")))

    def go():
        out = {}
        for version in VERSIONS:
            d = Device(srv, version)
            k = d.prime(cid(inbox))
            c = collection(cid(inbox), k)
            out[version] = [top(d.sync(c, wait=0)), top(d.sync(c, wait=60)),
                            top(d.sync(c, heartbeat=59)), top(d.sync(c, heartbeat=3541)),
                            top(d.sync(c, wait=5, heartbeat=300))]
            d.close()
        return out

    out = await run(go)
    for version in VERSIONS:
        if version == "12.1":       # no HeartbeatInterval in 12.1
            assert out[version] == [(14, 1), (14, 59), (4, None), (4, None), (4, None)]
        else:
            assert out[version] == [(14, 1), (14, 59), (14, 60), (14, 3540), (4, None)]


async def test_every_version_syncs_and_only_16_adds_drafts(srv):
    acc = account(srv.store)
    inbox, drafts = role(srv.store, acc, "inbox"), role(srv.store, acc, "drafts")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 5)
    add = E("AirSync:Add", E("AirSync:ClientId", text="1"), E("AirSync:ApplicationData",
            E("Email:Subject", text="s"), E("AirSyncBase:Body", E("AirSyncBase:Type", text="1"),
                                             E("AirSyncBase:Data", text="b"))))

    def go():
        out = {}
        for version in VERSIONS:
            d = Device(srv, version)
            k = d.prime(cid(inbox))
            pref = [E("AirSyncBase:BodyPreference", E("AirSyncBase:Type", text="1"),
                      E("AirSyncBase:TruncationSize", text="200"))]
            co = d.one(cid(inbox), k, window=3, options=pref)
            kd = d.prime(cid(drafts))
            kd = d.one(cid(drafts), kd).key
            dr = d.one(cid(drafts), kd, commands=[add])
            out[version] = (co, dr)
            d.close()
        return out

    out = await run(go)
    for version in VERSIONS:
        co, dr = out[version]
        assert co.add_ids == [sid(e) for e in eids[:3]] and co.more
        assert co.adds[0][1].find("AirSyncBase:Body") is not None
        status = dr.responses[0].child_text("AirSync:Status")
        assert status == ("1" if version.startswith("16") else "6"), version


async def test_empty_and_partial_requests_reuse_the_last_one(srv):
    acc = account(srv.store)
    inbox, arch = role(srv.store, acc, "inbox"), role(srv.store, acc, "archive")
    await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 2)

    def go():
        d = Device(srv)
        none_yet = d.raw(None)
        ki, ka = d.prime(cid(inbox)), d.prime(cid(arch))
        full = collections(d.sync(collection(cid(inbox), ki, window=1),
                                  collection(cid(arch), ka)))
        empty1 = collections(d.raw(None))      # same collections, current keys, window 1
        empty2 = d.raw(None)                   # nothing left: the empty answer
        new = fill(srv.store, acc, arch, 1)
        partial = collections(d.sync(collection(cid(inbox), empty1[cid(inbox)].key),
                                     partial=True))
        d.close()
        return none_yet, full, empty1, empty2, partial, new

    none_yet, full, empty1, empty2, partial, new = await run(go)
    assert none_yet.child_text("AirSync:Status") == "13"
    assert len(full[cid(inbox)].adds) == 1 and full[cid(inbox)].more
    assert len(empty1[cid(inbox)].adds) == 1 and not empty1[cid(inbox)].more
    assert empty1[cid(arch)].adds == []
    assert empty2 is None
    assert set(partial) == {cid(inbox), cid(arch)}
    assert partial[cid(arch)].add_ids == [sid(new[0])]


async def test_hanging_sync_answers_on_delivery(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")

    def go():
        d = Device(srv, "14.1", timeout=120)
        k = d.prime(cid(inbox))
        k = d.one(cid(inbox), k).key
        t0 = time.monotonic()
        res = {}

        def hang():
            res["doc"] = d.sync(collection(cid(inbox), k), heartbeat=120)
            res["t"] = time.monotonic() - t0

        import threading
        th = threading.Thread(target=hang)
        th.start()
        time.sleep(0.5)
        m = imap(srv)
        m.append("INBOX", None, None, message(77, "pushed"))
        m.logout()
        th.join(100)
        d.close()
        return res

    res = await run(go)
    co = collections(res["doc"])[cid(inbox)]
    assert len(co.adds) == 1
    assert co.adds[0][1].child_text("Email:Subject") == "pushed"


# --- the hanging Sync's timeout, on a virtual clock (the handler called directly) -------------------

async def test_hanging_sync_times_out_with_the_empty_answer_and_frees_the_device(tmp_path,
                                                                                 autojump_clock):
    from mailaccess import accounts
    from mailaccess.bus import Bus
    from mailaccess.proto.eas import request as R
    from mailaccess.server import eas, eas_sync
    from mailaccess.server.http import Response
    from mailaccess.store import Store

    store = Store(tmp_path / "data")
    store.start()
    bus = Bus()
    bus.attach()
    store.on_commit.append(bus.on_commit)
    try:
        accounts.add_user(store, "alice", "pw")
        acc = account(store)
        inbox = role(store, acc, "inbox")
        fill(store, acc, inbox, 2)
        lock = trio.Lock()
        from mailaccess.config import EasConfig
        ctx = eas.EasContext(store, bus, EasConfig(), acc, "alice",
                             R.EasRequest("Sync", "alice", "virt", "t", "14.1", None), lock=lock)

        async def call(body):
            async with lock:
                return await eas_sync.run(ctx, decode(body))

        k = collections(await call(sync_body(collection(cid(inbox), 0))))[cid(inbox)].key
        k = collections(await call(sync_body(collection(cid(inbox), k))))[cid(inbox)].key
        seen = []

        async def other_request():
            await trio.sleep(600)
            async with lock:                  # free while the Sync hangs
                seen.append(trio.current_time())

        t0 = trio.current_time()
        async with trio.open_nursery() as n:
            n.start_soon(other_request)
            out = await call(sync_body(collection(cid(inbox), k), heartbeat=3540))
        assert isinstance(out, Response) and out.status == 200 and out.body == b""
        assert trio.current_time() - t0 >= 3540
        assert seen and seen[0] - t0 < 3540
        # Wait is in minutes: 2 minutes
        t1 = trio.current_time()
        out = await call(sync_body(collection(cid(inbox), k), wait=2))
        assert out.body == b"" and 120 <= trio.current_time() - t1 < 3540
    finally:
        store.close()


# --- exactness: random server changes, random windows, lost answers --------------------------------

@pytest.mark.parametrize("seed", range(4))
async def test_device_converges_to_the_mailbox_whatever_happens(tmp_path, seed):
    """A model device applies every answer (or loses it and resends with the
    previous key) while the mailbox changes at random; after a last full
    sync it holds exactly the mailbox's messages with their Read flags."""
    import random

    from mailaccess import accounts
    from mailaccess.bus import Bus
    from mailaccess.proto.eas import request as R
    from mailaccess.server import eas, eas_sync
    from mailaccess.store import Store

    rnd = random.Random(seed)
    store = Store(tmp_path / "data")
    store.start()
    try:
        accounts.add_user(store, "alice", "pw")
        acc = account(store)
        inbox, arch = role(store, acc, "inbox"), role(store, acc, "archive")
        fill(store, acc, inbox, 20)
        ctx = eas.EasContext(store, Bus(), None, acc, "alice",
                             R.EasRequest("Sync", "alice", "model", "t", "16.1", None))

        async def call(key, window=None, commands=None):
            out = await eas_sync.run(ctx, decode(sync_body(
                collection(cid(inbox), key, window=window, commands=commands))))
            return collections(out)[cid(inbox)] if out is not None and not hasattr(out, "status") \
                else None

        held: dict[str, str] = {}
        key = (await call(0)).key
        prev_held, prev_key = dict(held), key

        def apply(co):
            for s_, app in co.adds:
                assert s_ not in held, "added twice"
                held[s_] = app.child_text("Email:Read")
            for s_, app in co.changes:
                assert s_ in held
                held[s_] = app.child_text("Email:Read")
            for s_ in co.deletes + co.soft:
                assert s_ in held
                del held[s_]

        def mailbox():
            with store.view() as v:
                return {sid(e): ("1" if vocab.SEEN in v.email(acc, e).keywords else "0")
                        for _, e in v.uids(acc, inbox)}

        for step in range(40):
            r = rnd.random()
            with store.view() as v:
                here = [(u, e) for u, e in v.uids(acc, inbox)]
                there = [(u, e) for u, e in v.uids(acc, arch)]
            if r < 0.2:
                fill(store, acc, inbox, rnd.randint(1, 3), start=time.time() + step)
            elif r < 0.4 and here:
                e = rnd.choice(here)[1]
                store.write_sync(ops.set_keywords, acc, [e], add=[vocab.SEEN]) if rnd.random() < .5 \
                    else store.write_sync(ops.set_keywords, acc, [e], remove=[vocab.SEEN])
            elif r < 0.5 and here:
                store.write_sync(ops.expunge, acc, inbox, [rnd.choice(here)[0]])
            elif r < 0.6 and here:
                store.write_sync(ops.move, acc, inbox, [rnd.choice(here)[0]], arch)
            elif r < 0.65 and there:
                store.write_sync(ops.move, acc, arch, [rnd.choice(there)[0]], inbox)
            elif r < 0.75 and held:
                # the device marks something read itself
                s_ = rnd.choice(sorted(held))
                cmd = E("AirSync:Change", E("AirSync:ServerId", text=s_),
                        E("AirSync:ApplicationData", E("Email:Read", text="1")))
                co = await call(key, window=rnd.randint(1, 6), commands=[cmd])
                if co is not None:
                    if not co.responses:
                        held[s_] = "1"
                    apply(co)
                    prev_held, prev_key, key = dict(held), key, co.key
            else:
                co = await call(key, window=rnd.randint(1, 6))
                if co is None:
                    continue
                if rnd.random() < 0.3:
                    # the answer is lost: resend with the same key, get the same batch
                    again = await call(key, window=rnd.randint(1, 6))
                    assert again.add_ids == co.add_ids and again.deletes == co.deletes
                    co = again
                apply(co)
                key = co.key
        while True:
            co = await call(key, window=7)
            if co is None:
                break
            apply(co)
            key = co.key
            if not co.more:
                break
        assert held == mailbox()
    finally:
        store.close()


async def test_options_advertises_sync_and_get_item_estimate(srv):
    def go():
        with http(srv) as c:
            return c.options("/Microsoft-Server-ActiveSync")

    r = await run(go)
    cmds = r.headers["ms-asprotocolcommands"].split(",")
    assert "Sync" in cmds and "GetItemEstimate" in cmds


async def test_note_move_keeps_a_device_move_out_of_the_next_sync(srv):
    acc = account(srv.store)
    inbox, arch = role(srv.store, acc, "inbox"), role(srv.store, acc, "archive")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 3)

    def go():
        d = Device(srv)
        ki, ka = d.prime(cid(inbox)), d.prime(cid(arch))
        ki = d.one(cid(inbox), ki).key
        with srv.store.view() as v:
            uid = [u for u, e in v.uids(acc, inbox) if e == eids[0]][0]
        srv.store.write_sync(ops.move, acc, inbox, [uid], arch)       # what MoveItems does
        srv.store.write_sync(ss.note_move, acc, d.device, cid(inbox), cid(arch), [eids[0]])
        a, b = d.one(cid(inbox), ki), d.one(cid(arch), ka)
        d.close()
        return a, b

    a, b = await run(go)
    assert a.deletes == [] and a.adds == []
    assert b.adds == [] and b.deletes == []


async def test_a_message_that_cannot_be_rendered_does_not_stall_the_sync(srv, monkeypatch):
    from mailaccess.server import eas_item
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 3)
    real = eas_item.application_data

    def broken(view, acc_, eid, opts, version):
        if eid == eids[1]:
            raise ValueError("unrenderable")
        return real(view, acc_, eid, opts, version)

    monkeypatch.setattr(eas_item, "application_data", broken)

    def go():
        d = Device(srv)
        k = d.prime(cid(inbox))
        a = d.one(cid(inbox), k)
        b = d.one(cid(inbox), a.key)
        d.close()
        return a, b

    a, b = await run(go)
    assert a.add_ids == [sid(e) for e in eids] and not a.more
    assert a.adds[1][1].child_text("Email:Read") == "0"
    assert b.adds == [] and b.key == a.key


async def test_a_12_1_request_with_class_and_options(srv):
    """12.1 clients name the Class in the Collection and in Options."""
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")
    eids = await trio.to_thread.run_sync(fill, srv.store, acc, inbox, 2)

    def coll(key):
        return E("AirSync:Collection", E("AirSync:Class", text="Email"),
                 E("AirSync:SyncKey", text=str(key)), E("AirSync:CollectionId", text=cid(inbox)),
                 E("AirSync:DeletesAsMoves"), E("AirSync:GetChanges"),
                 E("AirSync:WindowSize", text="5"),
                 E("AirSync:Options", E("AirSync:FilterType", text="0"),
                   E("AirSyncBase:BodyPreference", E("AirSyncBase:Type", text="1"))))

    def go():
        d = Device(srv, "12.1")
        k = collections(d.sync(coll(0)))[cid(inbox)].key
        co = collections(d.sync(coll(k)))[cid(inbox)]
        d.close()
        return co

    co = await run(go)
    assert co.status == 1 and co.add_ids == [sid(e) for e in eids]


def test_sync_state_round_trips():
    from hypothesis import HealthCheck, given, settings, strategies as st

    ids_ = st.sets(st.integers(1, 2**32 - 1), max_size=50)

    def snap(key):
        return st.builds(lambda h, c, m, f, done: ss.Snapshot(key, m, ss.packed(h), ss.packed(c),
                                                              f, done),
                         ids_, ids_, st.integers(0, 2**63), st.sampled_from(sorted(ss.FILTER_DAYS)),
                         st.booleans())

    # generating these is slow on a loaded machine: no health check on its speed
    @settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(snap(7), st.none() | snap(6), st.lists(st.tuples(st.sampled_from("ACDS"),
                                                              st.integers(1, 2**32 - 1))),
           st.dictionaries(st.text(max_size=64), st.integers(1, 2**32 - 1)), st.booleans())
    def check(cur, prev, batch, adds, more):
        s = ss.SyncState(cur, prev, 9, batch, adds, more)
        assert ss.decode(ss.encode(s)) == s

    check()
    assert ss.decode(b"") is None and ss.decode(b"\x00\x00\x00\x02{}") is None


async def test_malformed_sync_requests_get_status_4_or_13(srv):
    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")

    def go():
        d = Device(srv)
        k = d.prime(cid(inbox))
        out = [d.sync(collection(cid(inbox), k), collection(cid(inbox), k)),
               d.raw(sync_body(E("AirSync:Collection", E("AirSync:CollectionId", text=cid(inbox))))),
               d.raw(sync_body()),
               d.raw(sync_body(collection(cid(inbox), k), wait="x")),
               d.raw(b"\x03\x01\x6a\x00\x45\x01"),              # <Sync></Sync>, hand-made
               d.raw(encode(E("FolderHierarchy:FolderSync",
                              E("FolderHierarchy:SyncKey", text="0"))))]
        d.close()
        return [o.child_text("AirSync:Status") for o in out]

    assert await run(go) == ["4", "4", "13", "4", "13", "4"]


# --- the request layer alone (eas_sync_request: no store) -------------------------------------

def test_wait_and_heartbeat_limits_property():
    from hypothesis import given, strategies as st

    from mailaccess.server import eas_sync_request as rq

    def req(tag, n, major=14):
        body = decode(encode(E("AirSync:Sync", E("AirSync:Collections", collection("M1", 1)),
                               E(f"AirSync:{tag}", text=str(n)))))
        return rq.parse_request(body, major, None)

    @given(st.integers(0, 10**6))
    def check(n):
        for tag, lo, hi, scale in (("Wait", 1, 59, 60), ("HeartbeatInterval", 60, 3540, 1)):
            if lo <= n <= hi:
                assert req(tag, n).wait == n * scale
            else:
                with pytest.raises(rq.RequestError) as e:
                    req(tag, n)
                assert (e.value.status, e.value.limit) == (14, lo if n < lo else hi)

    check()


def test_partial_and_omitted_options_come_from_the_cache():
    from mailaccess.server import eas_sync_request as rq

    ft3 = [E("AirSync:FilterType", text="3")]
    first = rq.parse_request(decode(sync_body(collection("M1", 5, window=7, options=ft3),
                                              collection("M2", 9), wait=2)), 14, None)
    cache = rq.cache_after(None, first)
    again = rq.parse_request(decode(sync_body(collection("M1", 6), partial=True)), 14, cache)
    by = {c.cid: c for c in again.collections}
    assert set(by) == {"M1", "M2"} and by["M1"].key == "6" and by["M2"].key is None
    assert by["M1"].window == 7 and rq.collection_options(by["M1"].options, "14.1").filter == 3
    assert again.wait == 120
    empty = rq.request_from_cache(cache)
    assert [c.cid for c in empty.collections] == ["M1", "M2"] and empty.wait == 120
    assert all(c.key is None for c in empty.collections)
    with pytest.raises(rq.RequestError) as e:
        rq.request_from_cache(None)
    assert e.value.status == 13


async def test_hanging_sync_with_wait_on_12_1_answers_an_lmtp_delivery(srv):
    import smtplib
    import threading

    acc = account(srv.store)
    inbox = role(srv.store, acc, "inbox")

    def go():
        d = Device(srv, "12.1", timeout=120)
        k = d.prime(cid(inbox))
        res = {}

        def hang():
            res["doc"] = d.sync(collection(cid(inbox), k), wait=1)

        th = threading.Thread(target=hang)
        th.start()
        time.sleep(0.5)
        with smtplib.LMTP("127.0.0.1", srv.bound["lmtp"][0][1]) as c:
            c.sendmail("s@example.org", ["alice"], message(5, "by lmtp"))
        th.join(100)
        d.close()
        return res

    res = await run(go)
    co = collections(res["doc"])[cid(inbox)]
    assert [a.child_text("Email:Subject") for _, a in co.adds] == ["by lmtp"]
