"""ActiveSync FolderCreate / FolderUpdate / FolderDelete (server/eas_folders.py)
against ``serve``: pyactivesync creates, renames and deletes a folder, IMAP
LIST sees each change; raw requests (our codec) cover the statuses, the
SyncKey rules (the device's own change is not reported back by its next
FolderSync, others' changes still are) and special folders, in 12.1, 14.1
and 16.1."""
import imaplib

import httpx
import pytest
import trio
from pyactivesync import Client, FolderType
from pyactivesync.exceptions import StatusError

from conftest import make_config, port_of
from eas_helpers import base, eas_client, post, provision, srv  # noqa: F401 (srv: a fixture)
from imap_helpers import run
from mailaccess import accounts, ids, ingest
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"
FH = "FolderHierarchy:"


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


def imap_list(srv) -> set[str]:
    m = imaplib.IMAP4("127.0.0.1", port_of(srv, "imap"))
    m.login("alice", "pw")
    _, lines = m.list()
    m.logout()
    return {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in lines}


class Device:
    """A raw EAS device: FolderSync and the hierarchy commands with its key."""

    def __init__(self, c, version, device):
        self.c, self.version, self.device = c, version, device
        self.policy = provision(c, version, device)
        self.key = "0"

    def cmd(self, name, *kids):
        r = post(self.c, name, encode(E(FH + name, *kids)), version=self.version,
                 device=self.device, key=self.policy)
        assert r.status_code == 200, r.text
        doc = decode(r.content)
        if doc.child_text(FH + "SyncKey"):
            self.key = doc.child_text(FH + "SyncKey")
        return doc

    def folder_sync(self):
        doc = self.cmd("FolderSync", E(FH + "SyncKey", text=self.key))
        ch = doc.find(FH + "Changes")
        return [(c.tag, c.child_text(FH + "ServerId"), c.child_text(FH + "DisplayName"))
                for c in (ch.children if ch is not None else []) if c.tag != "Count"]

    def create(self, name, parent="0", type_="12", key=None):
        doc = self.cmd("FolderCreate", E(FH + "SyncKey", text=key or self.key),
                       E(FH + "ParentId", text=parent), E(FH + "DisplayName", text=name),
                       E(FH + "Type", text=type_))
        return doc.child_text(FH + "Status"), doc.child_text(FH + "ServerId")

    def update(self, sid, name, parent="0", key=None):
        doc = self.cmd("FolderUpdate", E(FH + "SyncKey", text=key or self.key),
                       E(FH + "ServerId", text=sid), E(FH + "ParentId", text=parent),
                       E(FH + "DisplayName", text=name))
        return doc.child_text(FH + "Status")

    def delete(self, sid, key=None):
        doc = self.cmd("FolderDelete", E(FH + "SyncKey", text=key or self.key),
                       E(FH + "ServerId", text=sid))
        return doc.child_text(FH + "Status")


async def test_pyactivesync_create_rename_delete_seen_over_imap(srv):
    def create():
        with eas_client(srv) as c:
            c.provision()
            f = c.create_folder("Projects", type=FolderType(12))
            sub = c.create_folder("Old", parent_id=f.id, type=FolderType(12))
            return f, sub
    f, sub = await run(create)
    assert {"Projects", "Projects/Old"} <= await run(imap_list, srv)

    def rename():
        with eas_client(srv) as c:
            c.provision()
            c.update_folder(f.id, "Work")
            with pytest.raises(StatusError):        # 2: a folder of that name exists
                c.create_folder("Work", type=FolderType(12))
    await run(rename)
    names = await run(imap_list, srv)
    assert {"Work", "Work/Old"} <= names and "Projects" not in names

    def delete():
        with eas_client(srv) as c:
            c.provision()
            c.delete_folder(f.id)                  # with its subfolder
            return {x.id for x in c.list_folders()}
    left = await run(delete)
    assert f.id not in left and sub.id not in left
    names = await run(imap_list, srv)
    assert not {n for n in names if n.startswith("Work")}


@pytest.mark.parametrize("version", ["12.1", "14.1", "16.1"])
async def test_statuses_keys_and_own_changes(srv, version):
    acc = accounts.lookup(srv.store, "alice").id
    with srv.store.view() as v:
        inbox = ids.mailbox_id(v.mailbox_by_role(acc, "inbox").id)
        trash = ids.mailbox_id(v.mailbox_by_role(acc, "trash").id)

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            d = Device(c, version, "raw-" + version)
            out = {}
            # before any FolderSync: no key to match
            out["nokey"] = d.create("X", key="1")[0]
            d.folder_sync()
            k1 = d.key
            st, sid = d.create("Lists", parent=inbox)
            out["create"] = (st, sid is not None, d.key != k1)
            out["own_change_not_reported"] = d.folder_sync()
            out["old_key"] = d.create("Y", key=k1)[0]             # only the current key
            out["garbage_key"] = d.create("Y", key="abc")[0]
            out["exists"] = d.create("Lists", parent=inbox)[0]
            out["no_parent"] = d.create("Y", parent="M9999")[0]
            out["calendar"] = d.create("Cal", type_="13")[0]
            out["slash"] = d.create("a/b")[0]
            out["generic"] = d.create("Generic", type_="1")[0]
            out["update_special"] = d.update(inbox, "Renamed")
            out["update_missing"] = d.update("M9999", "Z")
            out["update_no_parent"] = d.update(sid, "Lists", parent="M9999")
            out["move_top"] = d.update(sid, "Lists2")
            out["delete_special"] = d.delete(trash)
            out["delete_missing"] = d.delete("M9999")
            # someone else's change (IMAP) is still reported, the device's own are not
            srv.store.write_sync(ops.create_mailbox, acc, 0, "FromImap")
            out["sync"] = d.folder_sync()
            out["delete"] = d.delete(sid)
            out["after_delete"] = d.folder_sync()
            out["malformed"] = d.cmd("FolderCreate", E(FH + "SyncKey", text=d.key)) \
                .child_text(FH + "Status")
            return out

    out = await run(go)
    assert out["nokey"] == "9"
    assert out["create"] == ("1", True, True)
    assert out["own_change_not_reported"] == []
    assert out["old_key"] == "9" and out["garbage_key"] == "9"
    assert out["exists"] == "2"
    assert out["no_parent"] == "5"
    assert out["calendar"] == "3"
    assert out["slash"] == "10"
    assert out["generic"] == "1"
    assert out["update_special"] == "2"
    assert out["update_missing"] == "4"
    assert out["update_no_parent"] == "5"
    assert out["move_top"] == "1"
    assert out["delete_special"] == "3"
    assert out["delete_missing"] == "4"
    assert [(t, n) for t, _, n in out["sync"]] == [("Add", "FromImap")]
    assert out["delete"] == "1" and out["after_delete"] == []
    assert out["malformed"] == "10"
    names = await run(imap_list, srv)
    assert "Generic" in names and "INBOX/Lists" not in names and "Lists2" not in names


async def test_delete_destroys_emails_only_there(srv):
    acc = accounts.lookup(srv.store, "alice").id
    mbx = srv.store.write_sync(ops.create_mailbox, acc, 0, "Tmp")
    with srv.store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    raw = b"From: a@x\r\nSubject: s\r\n\r\nb\r\n"
    only = srv.store.write_sync(ops.append, acc, [mbx], ingest.prepare(raw, 1), []).email
    both = srv.store.write_sync(ops.append, acc, [mbx, inbox], ingest.prepare(raw + b"2", 2), []).email

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            d = Device(c, "14.1", "rawd")
            d.folder_sync()
            return d.delete(ids.mailbox_id(mbx))
    assert await run(go) == "1"
    with srv.store.view() as v:
        assert v.mailbox(acc, mbx) is None
        assert v.email(acc, only) is None
        assert {m.mailbox for m in v.email(acc, both).members} == {inbox}
