"""ActiveSync GetAttachment (server/eas_getattachment.py), the 12.x way to
fetch an attachment, against ``serve``: the FileReference that Sync/
ItemOperations hand out gives the decoded bytes with their Content-Type; a
deleted or unknown attachment is HTTP 500 (MS-ASCMD 2.2.1.7), a malformed
or missing AttachmentName HTTP 400, and the server keeps serving."""
import pytest
import trio

from imap_helpers import run
from mailaccess import accounts
from mailaccess.server import eas_item
from mailaccess.store import ops
from test_eas_itemops import PDF, deliver, http, post, provision  # noqa: F401 (fixtures below)
from test_eas_itemops import cfg, srv  # noqa: F401


def get_attachment(c, key, ref, version="12.1"):
    headers = {"ms-asprotocolversion": version, "x-ms-policykey": str(key)}
    params = {"Cmd": "GetAttachment", "User": "alice", "DeviceId": "raw1", "DeviceType": "test"}
    if ref is not None:
        params["AttachmentName"] = ref
    return c.post("/Microsoft-Server-ActiveSync", params=params, content=b"", headers=headers)


async def test_get_attachment_gives_the_decoded_part_and_errors_by_status(srv):
    mbx, eid = deliver(srv)
    ref = eas_item.file_reference(eid, "2")

    def go():
        with http(srv) as c:
            key = provision(c, version="12.1")
            out = {"ok": get_attachment(c, key, ref),
                   "v141": get_attachment(c, key, ref, version="14.1"),
                   "body_part": get_attachment(c, key, eas_item.file_reference(eid, "1.1")),
                   "nosection": get_attachment(c, key, eas_item.file_reference(eid, "9")),
                   "bad": get_attachment(c, key, "nonsense"),
                   "missing": get_attachment(c, key, None)}
            acc = accounts.lookup(srv.store, "alice").id
            srv.store.write_sync(ops.destroy_emails, acc, [eid])
            out["deleted"] = get_attachment(c, key, ref)
            out["after"] = get_attachment(c, key, ref)
            return out

    r = await run(go)
    assert r["ok"].status_code == 200
    assert r["ok"].content == PDF
    assert r["ok"].headers["content-type"] == "application/pdf"
    assert r["v141"].status_code == 200 and r["v141"].content == PDF
    # the text part is a part too: its bytes as stored
    assert r["body_part"].status_code == 200
    assert r["body_part"].content.startswith(b"See the report attached.")
    assert r["nosection"].status_code == 500
    assert r["bad"].status_code == 400
    assert r["missing"].status_code == 400
    assert r["deleted"].status_code == 500
    assert r["after"].status_code == 500
