"""ActiveSync ItemOperations (server/eas_itemops.py) end to end against
``serve``: pyactivesync fetches an email's full MIME, its HTML body and an
attachment; raw requests built with our codec cover FileReference ranges,
multipart responses (header and base64-query forms), LongId, the error
statuses, EmptyFolderContents (seen over IMAP) and 12.1 against 14.1."""
import base64
import dataclasses
import struct

import httpx
import pytest
import trio
from pyactivesync import BodyType, Client

from conftest import make_config
from eas_helpers import base, provision
from imap_helpers import connect, run
from mailaccess import accounts, ids, ingest
from mailaccess.proto.eas import request as R
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"
MULTIPART = "application/vnd.ms-sync.multipart"


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    return server


# --- helpers (as in test_eas_service.py) ---------------------------------------------------

def eas_client(ctx, device="dev1", user="alice", pw="pw") -> Client:
    c = Client("unused", user, pw, device_id=device, timeout=30)
    c._transport.base_url = base(ctx) + "/Microsoft-Server-ActiveSync"
    return c


def http(ctx) -> httpx.Client:
    return httpx.Client(base_url=base(ctx), auth=("alice", "pw"), timeout=30)


def post(c, cmd, body: bytes | None, *, version="14.1", device="raw1", key=None, extra=None):
    headers = {"content-type": WBXML, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    headers.update(extra or {})
    return c.post("/Microsoft-Server-ActiveSync",
                  params={"Cmd": cmd, "User": "alice", "DeviceId": device, "DeviceType": "test"},
                  content=body or b"", headers=headers)


def provision_body(key=None):
    pol = [E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML")]
    if key is not None:
        pol += [E("Provision:PolicyKey", text=str(key)), E("Provision:Status", text="1")]
    return encode(E("Provision:Provision", E("Provision:Policies", E("Provision:Policy", *pol))))


def item_ops(c, key, *ops_, version="14.1", device="raw1", extra=None):
    r = post(c, "ItemOperations", encode(E("ItemOperations:ItemOperations", *ops_)),
             version=version, device=device, key=key, extra=extra)
    assert r.status_code == 200, r.text
    return r


def fetches(r):
    doc = decode(r.content)
    assert doc.child_text("ItemOperations:Status") == "1"
    return doc.find("ItemOperations:Response").children


def fetch_item(coll, sid, *prefs, mime=None, schema=None):
    opts = [E("AirSyncBase:BodyPreference", *[E(f"AirSyncBase:{k}", text=str(v))
                                               for k, v in p.items()]) for p in prefs]
    if mime is not None:
        opts.append(E("AirSync:MIMESupport", text=str(mime)))
    kids = [E("ItemOperations:Store", text="Mailbox"), E("AirSync:CollectionId", text=coll),
            E("AirSync:ServerId", text=sid)]
    if opts:
        kids.append(E("ItemOperations:Options", *opts))
    return E("ItemOperations:Fetch", *kids)


def fetch_ref(ref, rng=None, store="Mailbox"):
    kids = [E("ItemOperations:Store", text=store), E("AirSyncBase:FileReference", text=ref)]
    if rng:
        kids.append(E("ItemOperations:Options", E("ItemOperations:Range", text=rng)))
    return E("ItemOperations:Fetch", *kids)


def split_multipart(body: bytes) -> list[bytes]:
    n, = struct.unpack_from("<i", body)
    out = []
    for i in range(n):
        off, ln = struct.unpack_from("<ii", body, 4 + 8 * i)
        out.append(body[off:off + ln])
    return out


PDF = bytes(range(256)) * 40          # 10,240 octets
RAW = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: report\r\n"
       b"Date: Mon, 1 Dec 2025 10:00:00 +0000\r\nMessage-ID: <r1@example.com>\r\n"
       b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n"
       b"--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n"
       b"--a\r\nContent-Type: text/plain\r\n\r\nSee the report attached.\r\n"
       b"--a\r\nContent-Type: text/html\r\n\r\n<p>See the <b>report</b> attached.</p>\r\n--a--\r\n"
       b"--m\r\nContent-Type: application/pdf; name=report.pdf\r\n"
       b"Content-Disposition: attachment; filename=report.pdf\r\n"
       b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(PDF) + b"--m--\r\n")


def deliver(srv, raw=RAW, mailbox=None) -> tuple[int, int]:
    acc = accounts.lookup(srv.store, "alice").id
    with srv.store.view() as v:
        mbx = mailbox or v.mailbox_by_role(acc, "inbox").id
    eid = srv.store.write_sync(ops.append, acc, [mbx], ingest.prepare(raw)).email
    return mbx, eid


# --- pyactivesync ------------------------------------------------------------------------------

async def test_pyactivesync_fetches_mime_html_and_attachment(srv):
    inbox, eid = deliver(srv)

    def go():
        with eas_client(srv) as c:
            c.provision()
            folders = {f.name: f.id for f in c.list_folders()}
            mime = c.fetch_item(folders["INBOX"], ids.email_id(eid), body_type=BodyType.MIME)
            html = c.fetch_item(folders["INBOX"], ids.email_id(eid), body_type=BodyType.HTML)
            att = c.fetch_attachment(html.attachments[0].file_reference)
            return folders, mime, html, att

    folders, mime, html, att = await run(go)
    assert folders["INBOX"] == ids.mailbox_id(inbox)
    assert mime.body.type == BodyType.MIME and mime.body.data == RAW
    assert mime.body.estimated_data_size == len(RAW)
    assert html.body.type == BodyType.HTML and html.body.data == "<p>See the <b>report</b> attached.</p>"
    assert html.native_body_type == BodyType.HTML
    a = html.attachments[0]
    assert a.file_reference == f"{ids.email_id(eid)}:2" and a.display_name == "report.pdf"
    assert a.estimated_data_size == len(PDF) and not a.is_inline
    assert att == PDF
    assert html.fields["Email.Subject"] == "report"


# --- raw requests ------------------------------------------------------------------------------

async def test_file_reference_ranges_and_statuses(srv):
    inbox, eid = deliver(srv)
    sid = ids.email_id(eid)
    coll = ids.mailbox_id(inbox)

    def go():
        with http(srv) as c:
            key = provision(c)
            r = item_ops(c, key, fetch_ref(f"{sid}:2", "100-199"), fetch_ref(f"{sid}:2"),
                         fetch_ref(f"{sid}:2", "10000-99999"), fetch_ref(f"{sid}:2", "9-2"),
                         fetch_ref(f"{sid}:2", "20000-20001"), fetch_ref(f"{sid}:9"),
                         fetch_ref("E999999:1"), fetch_ref("nonsense"),
                         fetch_ref(f"{sid}:2", store="DocumentLibrary"),
                         fetch_item(coll, "E999999"), fetch_item("M999", sid),
                         E("ItemOperations:Fetch", E("ItemOperations:Store", text="Mailbox"),
                           E("Search:LongId", text=sid)),
                         E("ItemOperations:Move", E("ItemOperations:ConversationId", text="x")),
                         E("ItemOperations:Fetch", E("AirSync:ServerId", text=sid)),
                         E("ItemOperations:Fetch", E("ItemOperations:Store", text="Mailbox")))
            empty = post(c, "ItemOperations", b"", key=key)
            return fetches(r), decode(empty.content)

    f, empty = await run(go)
    (rng, whole, tail, bad, past, nopart, noemail, junk, store, noitem, wrongcoll, longid, move,
     nocoll, nothing) = f
    props = rng.find("ItemOperations:Properties")
    assert rng.child_text("ItemOperations:Status") == "1"
    assert rng.child_text("AirSyncBase:FileReference") == f"{sid}:2"
    assert props.child_text("AirSyncBase:ContentType") == "application/pdf"
    assert props.child_text("ItemOperations:Range") == "100-199"
    assert props.child_text("ItemOperations:Total") == str(len(PDF))
    assert base64.b64decode(props.child_text("ItemOperations:Data")) == PDF[100:200]
    wp = whole.find("ItemOperations:Properties")
    assert base64.b64decode(wp.child_text("ItemOperations:Data")) == PDF
    assert wp.find("ItemOperations:Range") is None
    tp = tail.find("ItemOperations:Properties")
    assert tp.child_text("ItemOperations:Range") == f"10000-{len(PDF) - 1}"
    assert base64.b64decode(tp.child_text("ItemOperations:Data")) == PDF[10000:]
    assert bad.child_text("ItemOperations:Status") == "8"
    assert past.child_text("ItemOperations:Status") == "8"
    assert nopart.child_text("ItemOperations:Status") == "15"
    assert noemail.child_text("ItemOperations:Status") == "15"
    assert junk.child_text("ItemOperations:Status") == "15"
    assert store.child_text("ItemOperations:Status") == "9"
    assert noitem.child_text("ItemOperations:Status") == "6"
    assert noitem.child_text("AirSync:ServerId") == "E999999"
    assert wrongcoll.child_text("ItemOperations:Status") == "6"
    assert longid.child_text("ItemOperations:Status") == "1"
    assert longid.child_text("Search:LongId") == sid
    assert longid.child_text("AirSync:Class") == "Email"
    assert longid.find("ItemOperations:Properties").child_text("Email:Subject") == "report"
    assert move.child_text("ItemOperations:Status") == "156"
    assert empty.child_text("ItemOperations:Status") == "2"
    assert nocoll.child_text("ItemOperations:Status") == "1"
    assert nothing.child_text("ItemOperations:Status") == "2"


async def test_multipart_response_header_and_query_forms(srv):
    inbox, eid = deliver(srv)
    sid, coll = ids.email_id(eid), ids.mailbox_id(inbox)
    body = encode(E("ItemOperations:ItemOperations",
                    fetch_item(coll, sid, {"Type": 4}, mime=2), fetch_ref(f"{sid}:2"),
                    fetch_item(coll, sid, {"Type": 1, "TruncationSize": 3})))
    req = R.EasRequest(cmd="ItemOperations", user="alice", device_id="b64dev", device_type="t",
                       version="14.1", policy_key=None, locale=0x0409, accept_multipart=True)

    def go():
        with http(srv) as c:
            key = provision(c)
            a = post(c, "ItemOperations", body, key=key, extra={"ms-asacceptmultipart": "T"})
            key2 = provision(c, device="b64dev")
            q = base64.b64encode(R.encode_binary(dataclasses.replace(req, policy_key=key2)))
            b = c.post("/Microsoft-Server-ActiveSync?" + q.decode(), content=body,
                       headers={"content-type": WBXML})
            plain = post(c, "ItemOperations", body, key=key)
            return a, b, plain

    a, b, plain = await run(go)
    for r in (a, b):
        assert r.status_code == 200 and r.headers["content-type"] == MULTIPART
        parts = split_multipart(r.content)
        assert len(parts) == 4
        doc = decode(parts[0])
        mime, att, cut = doc.find("ItemOperations:Response").children
        mb = mime.find("ItemOperations:Properties").find("AirSyncBase:Body")
        assert mb.child_text("AirSyncBase:Type") == "4" and mb.find("AirSyncBase:Data") is None
        assert parts[int(mb.child_text("ItemOperations:Part"))] == RAW
        ap = att.find("ItemOperations:Properties")
        assert ap.find("ItemOperations:Data") is None
        assert parts[int(ap.child_text("ItemOperations:Part"))] == PDF
        cb = cut.find("ItemOperations:Properties").find("AirSyncBase:Body")
        assert cb.child_text("AirSyncBase:Truncated") == "1"
        assert parts[int(cb.child_text("ItemOperations:Part"))] == b"See"
    assert plain.headers["content-type"] == WBXML
    mime = fetches(plain)[0]
    data = mime.find("ItemOperations:Properties").find("AirSyncBase:Body").find("AirSyncBase:Data")
    assert data.text.encode() == RAW


async def test_versions_12_1_and_14_1(srv):
    inbox, eid = deliver(srv)
    sid, coll = ids.email_id(eid), ids.mailbox_id(inbox)
    f = fetch_item(coll, sid, {"Type": 2, "Preview": 50})

    def go():
        with http(srv) as c:
            out = {}
            for v in ("12.1", "14.0", "14.1", "16.0", "16.1"):
                key = provision(c, version=v, device="d" + v.replace(".", ""))
                out[v] = fetches(item_ops(c, key, f, version=v,
                                          device="d" + v.replace(".", "")))[0]
            return out

    out = await run(go)
    for v, fe in out.items():
        props = fe.find("ItemOperations:Properties")
        assert fe.child_text("ItemOperations:Status") == "1", v
        b = props.find("AirSyncBase:Body")
        assert b.child_text("AirSyncBase:Type") == "2"
        if v == "12.1":
            assert b.find("AirSyncBase:Preview") is None
            assert props.find("Email2:ConversationId") is None
        else:
            assert b.child_text("AirSyncBase:Preview").startswith("See the report")
            assert props.find("Email2:ConversationId") is not None
        assert (props.find("Email2:IsDraft") is not None) == v.startswith("16")


async def test_empty_folder_contents_seen_over_imap(srv):
    acc = accounts.lookup(srv.store, "alice").id
    with srv.store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    old = srv.store.write_sync(ops.create_mailbox, acc, 0, "Old")
    sub = srv.store.write_sync(ops.create_mailbox, acc, old, "Sub")
    keep = srv.store.write_sync(ops.create_mailbox, acc, 0, "Keep")
    keep_sub = srv.store.write_sync(ops.create_mailbox, acc, keep, "Sub")
    _, e1 = deliver(srv, mailbox=old)
    deliver(srv, RAW.replace(b"<r1@", b"<r2@"), mailbox=old)
    _, e3 = deliver(srv, RAW.replace(b"<r1@", b"<r3@"), mailbox=sub)
    deliver(srv, RAW.replace(b"<r1@", b"<r4@"), mailbox=keep)
    srv.store.write_sync(ops.copy, acc, [e1], inbox)       # also in INBOX: stays there

    def efc(coll, sub_folders):
        kids = [E("AirSync:CollectionId", text=coll)]
        if sub_folders:
            kids.append(E("ItemOperations:Options", E("ItemOperations:DeleteSubFolders")))
        return E("ItemOperations:EmptyFolderContents", *kids)

    def go():
        with http(srv) as c:
            key = provision(c)
            return fetches(item_ops(c, key, efc(ids.mailbox_id(old), True),
                                    efc(ids.mailbox_id(keep), False), efc("M999", False)))

    a, b, missing = await run(go)
    assert a.child_text("ItemOperations:Status") == "1"
    assert a.child_text("AirSync:CollectionId") == ids.mailbox_id(old)
    assert b.child_text("ItemOperations:Status") == "1"
    assert missing.child_text("ItemOperations:Status") == "6"

    def imap():
        m = connect(srv)
        try:
            names = [x.decode() for x in m.list()[1]]
            counts = {}
            for name in ("Old", "Keep", "Keep/Sub", "INBOX"):
                typ, data = m.select(name, readonly=True)
                counts[name] = int(data[0])
            return names, counts
        finally:
            m.logout()

    names, counts = await run(imap)
    assert not any(n.endswith('"Old/Sub"') or n.endswith(" Old/Sub") for n in names)
    assert counts == {"Old": 0, "Keep": 0, "Keep/Sub": 0, "INBOX": 1}
    with srv.store.view() as v:
        assert v.mailbox(acc, sub) is None and v.mailbox(acc, keep_sub) is not None
        assert v.email(acc, e1) is not None and v.email(acc, e3) is None


async def test_response_and_range_limits(srv, monkeypatch):
    from mailaccess.server import eas_itemops
    monkeypatch.setattr(eas_itemops, "MAX_RESPONSE_DATA", 5000)
    monkeypatch.setattr(eas_itemops, "MAX_RANGE", 50)
    inbox, eid = deliver(srv)
    sid, coll = ids.email_id(eid), ids.mailbox_id(inbox)

    def go():
        with http(srv) as c:
            key = provision(c)
            inline = fetches(item_ops(c, key, fetch_ref(f"{sid}:2"), fetch_ref(f"{sid}:2", "0-999"),
                                      fetch_item(coll, sid, {"Type": 4}, mime=2),
                                      fetch_item(coll, sid, {"Type": 4, "TruncationSize": 100},
                                                 mime=2)))
            multi = item_ops(c, key, fetch_ref(f"{sid}:2"), fetch_item(coll, sid, {"Type": 4}),
                             extra={"ms-asacceptmultipart": "T"})
            return inline, split_multipart(multi.content)

    (whole, rng, mime, cut), parts = await run(go)
    assert whole.child_text("ItemOperations:Status") == "11"
    assert mime.child_text("ItemOperations:Status") == "11"
    p = rng.find("ItemOperations:Properties")
    assert rng.child_text("ItemOperations:Status") == "1"
    assert p.child_text("ItemOperations:Range") == "0-49"
    assert base64.b64decode(p.child_text("ItemOperations:Data")) == PDF[:50]
    assert cut.child_text("ItemOperations:Status") == "1"
    statuses = [f.child_text("ItemOperations:Status")
                for f in decode(parts[0]).find("ItemOperations:Response").children]
    assert statuses == ["11", "11"] and len(parts) == 1
