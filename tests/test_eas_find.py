"""ActiveSync Find (server/eas_find.py, 16.1) against ``serve``: pyactivesync's
find_mailbox and search_mailbox(free_text=...) (which goes through Find),
paging by Range with the same SearchId, a new SearchId not starting at 0
(Status 4), the Find summary properties, and refusals: bad requests, an
unknown folder (3), and versions before 16.1 (138 for 14.x/16.0, HTTP 400
for 12.1)."""
import uuid

import httpx
import pytest
import trio
from pyactivesync import Client

from conftest import make_config, port_of
import eas_helpers
from eas_helpers import base, eas_client, provision, srv  # noqa: F401 (srv: a fixture)
from imap_helpers import run
from mailaccess import accounts, ids, ingest
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"
T0 = 1_700_000_000


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


def post(c, cmd, body, *, version="16.1", **kw):
    return eas_helpers.post(c, cmd, body, version=version, **kw)


def populate(store, n=12):
    acc = accounts.lookup(store, "alice").id
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
        archive = v.mailbox_by_role(acc, "archive").id
    eids = []
    for i in range(n):
        box = inbox if i % 2 == 0 else archive
        kw = ["$seen"] if i % 3 == 0 else []
        raw = (f"From: Bob Example <bob@example.org>\r\nTo: Alice <alice@example.org>\r\n"
               f"Cc: carol@example.org\r\nSubject: report {i} quarterly\r\n"
               f"Message-ID: <f{i}@x>\r\n\r\nfigures for quarter number{i}\r\n").encode()
        eids.append(store.write_sync(ops.append, acc, [box], ingest.prepare(raw, T0 + i * 60),
                                     kw).email)
    return acc, inbox, archive, eids


def find_body(text, *, sid=None, folder=None, rng=None, cls="Email"):
    q = [E("Find:FreeText", text=text)] if text is not None else []
    if cls:
        q.append(E("AirSync:Class", text=cls))
    if folder:
        q.append(E("AirSync:CollectionId", text=folder))
    opts = [E("Find:Range", text=rng)] if rng else []
    return encode(E("Find:Find", E("Find:SearchId", text=sid or str(uuid.uuid4())),
                    E("Find:ExecuteSearch", E("Find:MailBoxSearchCriterion",
                                              E("Find:Query", *q), E("Find:Options", *opts)))))


async def test_pyactivesync_find_and_paging(srv):
    acc, inbox, archive, eids = populate(srv.store)
    sids = [ids.email_id(e) for e in eids]

    def go():
        with eas_client(srv) as c:
            c.provision()
            allq = c.find_mailbox("quarterly", max_results=100)
            inbox_only = c.find_mailbox("quarterly", folder_id=ids.mailbox_id(inbox))
            one = c.find_mailbox("number7")
            p1 = c.find_mailbox("quarterly", max_results=5)
            p2 = c.find_mailbox("quarterly", range_start=5, max_results=5, search_id=p1.search_id)
            via_search = c.search_mailbox(ids.mailbox_id(archive), free_text="number7")
            return allq, inbox_only, one, p1, p2, via_search
    allq, inbox_only, one, p1, p2, via_search = await run(go)
    assert [i.server_id for i in allq.items] == sids[::-1]
    assert [i.server_id for i in inbox_only.items] == [sids[i] for i in (10, 8, 6, 4, 2, 0)]
    assert {i.collection_id for i in inbox_only.items} == {ids.mailbox_id(inbox)}
    (item,) = one.items
    assert item.server_id == sids[7] and item.collection_id == ids.mailbox_id(archive)
    f = item.fields
    assert f["Email.Subject"] == "report 7 quarterly"
    assert f["Email.DisplayTo"] == "Alice" and f["Find.DisplayCc"] == "carol@example.org"
    assert f["Email.Read"] == "0" and f["Find.HasAttachments"] == "0"
    assert "number7" in f["Find.Preview"]
    assert '<bob@example.org>' in f["Email.From"]
    assert p1.range == "0-4" and p2.range == "5-9"
    assert [i.server_id for i in p1.items + p2.items] == sids[::-1][:10]
    assert [x["AirSync.ServerId"] for x in via_search] == [sids[7]]


async def test_statuses_and_versions(srv):
    acc, inbox, archive, eids = populate(srv.store, 3)

    def go():
        out = {}
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            key = provision(c, "16.1", "f161")

            def find(body):
                r = post(c, "Find", body, device="f161", key=key)
                assert r.status_code == 200, r.text
                doc = decode(r.content)
                resp = doc.find("Find:Response")
                return (doc.child_text("Find:Status"),
                        resp.child_text("Find:Status") if resp is not None else None)
            out["ok"] = find(find_body("quarterly"))
            out["new_id_not_zero"] = find(find_body("quarterly", rng="5-9"))
            out["unknown_folder"] = find(find_body("quarterly", folder="M999"))
            out["no_text"] = find(find_body(None))
            out["blank_text"] = find(find_body("   "))
            out["bad_id"] = find(find_body("quarterly", sid="not-a-guid"))
            out["bad_range"] = find(find_body("quarterly", rng="x"))
            out["other_class"] = find(find_body("quarterly", cls="Calendar"))
            out["empty"] = find(encode(E("Find:Find")))
            out["gal"] = find(encode(E("Find:Find", E("Find:SearchId", text=str(uuid.uuid4())),
                              E("Find:ExecuteSearch", E("Find:GalSearchCriterion",
                                E("Find:Query", text="alice"), E("Find:Options",
                                E("Find:Range", text="0-9")))))))
            for version in ("14.0", "14.1", "16.0"):
                k = provision(c, version, "f" + version)
                r = post(c, "Find", find_body("quarterly"), version=version,
                         device="f" + version, key=k)
                out[version] = (r.status_code, decode(r.content).child_text("Find:Status"))
            k = provision(c, "12.1", "f121")
            out["12.1"] = post(c, "Find", find_body("quarterly"), version="12.1",
                               device="f121", key=k).status_code
        return out
    out = await run(go)
    assert out["ok"] == ("1", "1")
    assert out["new_id_not_zero"] == ("1", "4")
    assert out["unknown_folder"] == ("3", None)
    assert out["no_text"] == ("2", None) and out["blank_text"] == ("2", None)
    assert out["bad_id"] == ("2", None) and out["bad_range"] == ("2", None)
    assert out["other_class"] == ("1", "1")
    assert out["empty"] == ("2", None)
    assert out["gal"] == ("1", "1")
    for version in ("14.0", "14.1", "16.0"):
        assert out[version] == (200, "138")
    assert out["12.1"] == 400
