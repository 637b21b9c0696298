"""ActiveSync MoveItems (server/eas_moveitems.py) against ``serve``:
pyactivesync moves an email, IMAP sees it in the destination with the same
EMAILID; raw requests (our codec) cover every status and several moves in
one request, for 12.1, 14.1 and 16.1."""
import imaplib

import httpx
import pytest
import trio
from pyactivesync import Client
from pyactivesync.exceptions import StatusError

from conftest import make_config, port_of
from eas_helpers import base, eas_client, post, provision, srv  # noqa: F401 (srv: a fixture)
from imap_helpers import run
from mailaccess import accounts, ids, ingest
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


def msg(subject: str) -> bytes:
    return (f"From: a@example.org\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@x>\r\n\r\nbody of {subject}\r\n").encode()


def setup(store):
    acc = accounts.lookup(store, "alice").id
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
        archive = v.mailbox_by_role(acc, "archive").id
    eids = []
    for i in range(3):
        a = store.write_sync(ops.append, acc, [inbox], ingest.prepare(msg(f"m{i}"), 1_700_000_000 + i), [])
        eids.append(a.email)
    return acc, inbox, archive, eids


async def test_pyactivesync_move_seen_over_imap(srv):
    acc, inbox, archive, eids = setup(srv.store)
    sid = ids.email_id(eids[0])

    def go():
        with eas_client(srv) as c:
            c.provision()
            return c.move_item(sid, ids.mailbox_id(inbox), ids.mailbox_id(archive))

    assert await run(go) == sid             # DstMsgId: the same ServerId

    def imap():
        m = imaplib.IMAP4("127.0.0.1", port_of(srv, "imap"))
        m.login("alice", "pw")
        m.select("INBOX")
        _, inbox_ids = m.uid("SEARCH", "ALL")
        m.select("Archive")
        _, data = m.uid("FETCH", "1:*", "(EMAILID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        m.logout()
        return inbox_ids[0].split(), data
    inbox_uids, data = await run(imap)
    assert len(inbox_uids) == 2
    assert f"EMAILID ({sid})".encode() in data[0][0] and b"m0" in data[0][1]


async def test_statuses_and_several_moves(srv):
    acc, inbox, archive, eids = setup(srv.store)
    with srv.store.view() as v:
        trash = v.mailbox_by_role(acc, "trash").id
    I, A, T = ids.mailbox_id(inbox), ids.mailbox_id(archive), ids.mailbox_id(trash)
    e0, e1, e2 = (ids.email_id(e) for e in eids)

    def move(*moves):
        return E("Move:MoveItems", *[E("Move:Move", E("Move:SrcMsgId", text=m),
                                       E("Move:SrcFldId", text=s), E("Move:DstFldId", text=d))
                                     for m, s, d in moves])

    def go(version):
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            key = provision(c, version, "raw-" + version)
            r = post(c, "MoveItems", encode(move(
                (e0, I, A),          # 3 moved
                (e0, I, T),          # 1 no longer in the source
                (e1, "M999", A),     # 1 unknown source folder
                (e1, I, "M999"),     # 2 unknown destination
                (e1, I, I),          # 4 same folder
                ("E999", I, A),      # 1 unknown item
                (e2, I, T),          # 3 moved
            )), version=version, device="raw-" + version, key=key)
            assert r.status_code == 200
            doc = decode(r.content)
            out = [(x.child_text("Move:SrcMsgId"), x.child_text("Move:Status"),
                    x.child_text("Move:DstMsgId")) for x in doc.findall("Move:Response")]
            empty = decode(post(c, "MoveItems", encode(E("Move:MoveItems")), version=version,
                                device="raw-" + version, key=key).content)
            return out, empty.child_text("Move:Status")

    out, empty = await run(go, "14.1")
    assert out == [(e0, "3", e0), (e0, "1", None), (e1, "1", None), (e1, "2", None),
                   (e1, "4", None), ("E999", "1", None), (e2, "3", e2)]
    assert empty == "5"
    with srv.store.view() as v:
        assert {m.mailbox for m in v.email(acc, eids[0]).members} == {archive}
        assert {m.mailbox for m in v.email(acc, eids[1]).members} == {inbox}
        assert {m.mailbox for m in v.email(acc, eids[2]).members} == {trash}
    # back again, in the other versions
    for version in ("12.1", "16.1"):
        def back(version=version):
            with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
                key = provision(c, version, "raw-" + version)
                src, dst = (A, I) if version == "12.1" else (I, A)
                r = post(c, "MoveItems", encode(move((e0, src, dst))), version=version,
                         device="raw-" + version, key=key)
                return decode(r.content).find("Move:Response").child_text("Move:Status")
        assert await run(back) == "3"


async def test_pyactivesync_reports_a_failed_move(srv):
    acc, inbox, archive, eids = setup(srv.store)

    def go():
        with eas_client(srv) as c:
            c.provision()
            with pytest.raises(StatusError):
                c.move_item(ids.email_id(eids[0]), ids.mailbox_id(archive), ids.mailbox_id(inbox))
    await run(go)
