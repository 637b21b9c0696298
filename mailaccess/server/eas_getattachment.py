"""ActiveSync GetAttachment (MS-ASCMD 2.2.1.7): one attachment's decoded
bytes as the HTTP response body, for 12.x devices.

The request has no body; the query parameter ``AttachmentName`` is the
attachment's FileReference from Sync/ItemOperations (eas_item.file_reference:
"E42:2.1").  The answer is the part's decoded content with its Content-Type.
The specification lists the command for 2.5-12.1 only (14.0+ fetch with
ItemOperations); it is served at every version, since the answer is the same.
A reference to an attachment that does not exist (deleted, never was) is
HTTP 500, as the specification says for a deleted attachment; a missing or
malformed AttachmentName is HTTP 400.  The whole part is answered (up to
eas_itemops.MAX_RANGE octets: a larger one is HTTP 500 and is fetched with
ItemOperations and Range).
"""
from __future__ import annotations

from .. import storeio
from ..mime import index as mindex
from ..mime import jmapbody
from ..store import emails
from . import eas_item, eas_itemops
from .eas_command import Command
from .http import Response, problem


def _read(view, acc: int, ref: str) -> tuple[bytes, str] | int:
    parsed = eas_item.parse_file_reference(ref)
    if parsed is None:
        return 400
    em = emails.load_email(view, acc, parsed[0], members=False)
    if em is None:
        return 500
    raw = view.blob(acc, em.blob)
    if raw is None:
        return 500
    mi = emails.decode_index(em.index_data)
    if mi is None:
        mi = mindex.index_message(bytes(raw))
    part = mi.part(parsed[1])
    if part is None or part.content_type.startswith("multipart/") or not parsed[1]:
        return 500
    total = eas_itemops.part_size(raw, mi, part)
    if total > eas_itemops.MAX_RANGE:
        return 500
    node = jmapbody.parts_by_id(mi.jmap_body).get(parsed[1]) or {}
    return eas_itemops.part_range(raw, mi, part, 0, total), node.get("type") or part.content_type


async def run(ctx, body) -> Response:
    ref = ctx.req.params.get("AttachmentName")
    if not ref:
        return problem(400, "Bad Request", "GetAttachment needs AttachmentName")

    got = await storeio.read(ctx.store, _read, ctx.account, ref)
    if got == 400:
        return problem(400, "Bad Request", "AttachmentName is not an attachment reference")
    if isinstance(got, int):
        return problem(500, "Internal Server Error", "no such attachment")
    data, ctype = got
    return Response(200, data, [("content-type", ctype), ("cache-control", "private")])


COMMANDS = [Command("GetAttachment", run, "ItemOperations:ItemOperations",
                    "ItemOperations:Status")]
