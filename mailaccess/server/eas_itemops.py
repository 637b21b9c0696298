"""ActiveSync ItemOperations (MS-ASCMD 2.2.1.10): Fetch of emails, bodies,
MIME and attachments, and EmptyFolderContents.

Fetch (Store "Mailbox"; another store is Status 9):
- ``airsync:CollectionId`` + ``airsync:ServerId`` ("M7" + "E42"): the email
  as eas_item renders it (Options: BodyPreference, MIMESupport, Schema), if
  it is in that folder; Status 6 if not (a ServerId without CollectionId
  is tolerated: the email wherever it is).
- ``search:LongId``: the Search command's LongIds are ServerIds ("E42"):
  the email wherever it is.
- ``airsyncbase:FileReference`` ("E42:2.1", eas_item.file_reference): the
  decoded content of that body part, ``Properties`` with ContentType, Total
  (decoded size), Range when asked, Data (base64, MS-ASCMD 2.2.3.39.2) or
  Part.  Status 15 for a reference that names no part.  ``Options/Range``
  "m-n" (inclusive, from 0) applies only here (MS-ASCMD 2.2.3.143.2); the
  server answers at most MAX_RANGE octets and says which in its Range
  (best effort, as the spec allows); a range starting past the end or
  malformed is Status 8.  Range is ignored on an email fetch.
- Bounded memory: an attachment is decoded from the LMDB buffer a chunk at a
  time (CHUNK octets), and only the requested range is kept: base64 before
  the range is counted, not decoded.  A response carries at most
  MAX_RESPONSE_DATA octets of fetched data: a fetch that would exceed it is
  Status 11 (the client can ask for ranges).

Multipart (MS-ASCMD 2.2.1.10.1, MS-ASHTTP MS-ASAcceptMultiPart header or the
base64 query's AcceptMultiPart flag, ``ctx.req.accept_multipart``): the
response is ``application/vnd.ms-sync.multipart``: PartsCount, then
(Offset, Length) per part, little-endian 32-bit, then the parts; part 0 is
the WBXML, whose ``Part`` elements (in Properties for an attachment, in the
Body for an email) index the others and replace ``Data``.

EmptyFolderContents (CollectionId, Options/DeleteSubFolders): every email
leaves the folder through ``ops.expunge`` (an email also in another folder
stays there; IMAP, JMAP and other devices see the change), and with
DeleteSubFolders every folder below it goes through ``ops.delete_mailbox``
(children first).  Folders with a role (Sent, Drafts...) below it are kept:
Status 17 (partial success).  Status 6 for an unknown folder.

Move (conversations) is not implemented: Status 156 per Move.
No device state is kept by this command.
"""
from __future__ import annotations

import base64
import binascii

from .. import _speedups, ids, storeio
from ..mime import index as mindex
from ..mime import jmapbody
from ..proto.eas.wbxml import E, Element, encode
from ..store import emails, ops
from ..store.errors import StoreError
from . import eas_item
from .eas_command import Command
from .http import Response

_msgindex = _speedups.load("msgindex")

MULTIPART_TYPE = "application/vnd.ms-sync.multipart"

OK = 1
PROTOCOL_ERROR = 2
SERVER_ERROR = 3
NOT_FOUND = 6
BAD_RANGE = 8
UNKNOWN_STORE = 9
TOO_LARGE = 11
BAD_ATTACHMENT = 15
PARTIAL = 17
NOT_SUPPORTED = 156

MAX_OPERATIONS = 64                      # Fetch/EmptyFolderContents per request
MAX_RANGE = 16 * 1024 * 1024             # octets answered to one Range
MAX_RESPONSE_DATA = 64 * 1024 * 1024     # octets of fetched data in one response
CHUNK = 1024 * 1024                      # encoded octets decoded at a time

_IO, _AS, _ASB, _SEARCH = 20, 0, 17, 15

_B64_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NONALPHA = bytes(b for b in range(256) if b not in _B64_ALPHA)


def _el(page: int, tag: str, text: str | None = None) -> Element:
    return Element(page, tag, [], text, None)


def _status(n: int) -> Element:
    return E("ItemOperations:ItemOperations", E("ItemOperations:Status", text=str(n)))


# ---------------------------------------------------------------- ranges of a part

def parse_range(s: str | None) -> tuple[int, int] | None | bool:
    """"m-n" -> (m, n) inclusive; None when absent; False when malformed."""
    if s is None:
        return None
    a, sep, b = s.strip().partition("-")
    if not sep or not (a.isascii() and a.isdigit() and b.isascii() and b.isdigit()) \
            or len(a) > 12 or len(b) > 12:
        return False
    m, n = int(a), int(b)
    return (m, n) if m <= n else False


def b64_range(buf, start: int, end: int, lo: int, hi: int) -> bytes:
    """Octets [LO, HI) of the base64 data buf[START:END] decoded as
    msgindex's lenient decoder does (non-alphabet octets and "=" ignored),
    a CHUNK at a time: what comes before LO is counted, not decoded."""
    out = []
    pos = 0                 # decoded offset of the next quantum
    carry = b""
    i = start
    while i < end and pos < hi:
        j = min(end, i + CHUNK)
        clean = carry + bytes(buf[i:j]).translate(None, _B64_NONALPHA)
        i = j
        if i < end:
            k = len(clean) & ~3
            clean, carry = clean[:k], clean[k:]
        else:
            rem = len(clean) & 3
            if rem == 1:
                clean = clean[:-1]
            elif rem:
                clean += b"=" * (4 - rem)
        n = len(clean) // 4 * 3 - clean[-2:].count(b"=") if clean else 0
        if pos + n <= lo:
            pos += n
            continue
        dec = binascii.a2b_base64(clean)
        out.append(dec[max(0, lo - pos):hi - pos])
        pos += len(dec)
    return b"".join(out)


def _qp(raw, part) -> bytes:
    return _msgindex.decode_cte(bytes(raw[part.body_start:part.end]), "quoted-printable")


def part_size(raw, mi, part) -> int:
    """The decoded size of PART of the message RAW with index MI (exact, as
    decoded_part and the indexer count it)."""
    enc = part.encoding
    if part.content_type.startswith("multipart/") or enc not in ("base64", "quoted-printable"):
        return part.end - part.body_start
    if enc == "base64":
        n = 0
        for i in range(part.body_start, part.end, CHUNK):
            chunk = bytes(raw[i:min(part.end, i + CHUNK)])
            n += len(chunk) - len(chunk.translate(None, _B64_ALPHA))
        return n // 4 * 3 + (0, 0, 1, 2)[n & 3]
    return len(_qp(raw, part))


def part_range(raw, mi, part, lo: int, hi: int) -> bytes:
    """Decoded octets [LO, HI) of PART of the message RAW (a buffer) with index MI."""
    enc = part.encoding
    if part.content_type.startswith("multipart/") or enc not in ("base64", "quoted-printable"):
        s = part.body_start
        return bytes(raw[s + lo:min(part.end, s + hi)])
    if enc == "base64":
        return b64_range(raw, part.body_start, part.end, lo, hi)
    data = _qp(raw, part)      # quoted-printable: text-sized parts; decoded whole
    return data[lo:hi]


# ---------------------------------------------------------------- Fetch

class _Budget:
    def __init__(self):
        self.left = MAX_RESPONSE_DATA


def _fetch_attachment(view, acc: int, ref: str, rng, parts: list | None,
                      budget: _Budget) -> Element:
    kids = [None, _el(_ASB, "FileReference", ref)]
    parsed = eas_item.parse_file_reference(ref)
    em = emails.load_email(view, acc, parsed[0], members=False) if parsed else None
    status, props = BAD_ATTACHMENT, None
    if em is not None:
        status, props = _attachment_props(view, acc, em, parsed[1], rng, parts, budget)
    kids[0] = _el(_IO, "Status", str(status))
    if props is not None:
        kids.append(Element(_IO, "Properties", props, None, None))
    return Element(_IO, "Fetch", kids, None, None)


def _attachment_props(view, acc, em, section, rng, parts, budget):
    data_idx = em.index_data
    try:
        mi = mindex.decode_index_meta(data_idx) if data_idx is not None else None
    except Exception:       # unreadable (another version, damaged): index the message
        mi = None
    raw = view.blob(acc, em.blob)
    if raw is None:
        return BAD_ATTACHMENT, None
    if mi is None:
        mi = mindex.index_message(bytes(raw))
    part = mi.part(section)
    if part is None or part.content_type.startswith("multipart/"):
        return BAD_ATTACHMENT, None
    node = jmapbody.parts_by_id(mi.jmap_body).get(section) or {}
    total = part_size(raw, mi, part)
    if rng is False:
        return BAD_RANGE, None
    if rng is None:
        lo, hi = 0, total
    else:
        lo, hi = rng[0], min(rng[1] + 1, total, rng[0] + MAX_RANGE)
        if lo >= total and total:
            return BAD_RANGE, None
        hi = max(hi, lo)
    if hi - lo > budget.left:
        return TOO_LARGE, None
    budget.left -= hi - lo
    data = part_range(raw, mi, part, lo, hi)
    props = [_el(_ASB, "ContentType", node.get("type") or part.content_type)]
    if rng is not None:
        props.append(_el(_IO, "Range", f"{lo}-{max(lo, lo + len(data) - 1)}"))
        props.append(_el(_IO, "Total", str(total)))
    else:
        props.append(_el(_IO, "Total", str(total)))
    if parts is not None:
        parts.append(data)
        props.append(_el(_IO, "Part", str(len(parts))))
    else:
        props.append(_el(_IO, "Data", base64.b64encode(data).decode("ascii")))
    return OK, props


def _fetch_email(view, acc: int, version: str, fetch: Element, opts, parts: list | None,
                 budget: _Budget) -> Element:
    long_id = fetch.child_text("Search:LongId")
    coll = fetch.child_text("AirSync:CollectionId")
    sid = fetch.child_text("AirSync:ServerId")
    head = []
    if long_id is not None:
        head.append(_el(_SEARCH, "LongId", long_id))
        eid = eas_item.parse_server_id(long_id)
        mbx = None
    else:
        if coll is not None:
            head.append(_el(_AS, "CollectionId", coll))
        if sid is not None:
            head.append(_el(_AS, "ServerId", sid))
        if sid is None:
            return Element(_IO, "Fetch", [_el(_IO, "Status", str(PROTOCOL_ERROR))] + head,
                           None, None)
        eid = eas_item.parse_server_id(sid)
        mbx = None
        if coll is not None:        # required by MS-ASCMD; tolerated when absent
            mbx = ids.parse("M", coll)
            if mbx is None:
                eid = None
    em = emails.load_email(view, acc, eid, members=True) if eid is not None else None
    if em is not None and mbx is not None and em.record.member(mbx) is None:
        em = None
    if em is None:
        return Element(_IO, "Fetch", [_el(_IO, "Status", str(NOT_FOUND))] + head, None, None)
    part_no = len(parts) + 1 if parts is not None else None
    try:
        props, data = eas_item.render(view, acc, em, opts, version, part=part_no)
    except (ValueError, UnicodeError):
        return Element(_IO, "Fetch", [_el(_IO, "Status", "14")] + head, None, None)
    if parts is None:
        size = _inline_size(props)
    else:
        size = len(data) if data is not None else 0
    if size > budget.left:
        return Element(_IO, "Fetch", [_el(_IO, "Status", str(TOO_LARGE))] + head, None, None)
    budget.left -= size
    if parts is not None and data is not None:
        parts.append(data)
    kids = [_el(_IO, "Status", str(OK))] + head + [_el(_AS, "Class", "Email"),
                                                   Element(_IO, "Properties", props, None, None)]
    return Element(_IO, "Fetch", kids, None, None)


def _inline_size(props: list[Element]) -> int:
    """The length of the body Data among PROPS (characters or octets)."""
    for e in props:
        if e.tag == "Body" and e.page == _ASB:
            for c in e.children:
                if c.tag == "Data":
                    return len(c.text) if c.text is not None else len(c.opaque or b"")
    return 0


def fetch(view, acc: int, version: str, el: Element, parts: list | None,
          budget: _Budget) -> Element:
    """The response Fetch for the request Fetch EL (runs under VIEW)."""
    store = el.child_text("ItemOperations:Store")
    if store is not None and store.strip().lower() != "mailbox":
        return Element(_IO, "Fetch", [_el(_IO, "Status", str(UNKNOWN_STORE))], None, None)
    options = el.find("ItemOperations:Options")
    ref = el.child_text("AirSyncBase:FileReference")
    if ref is not None:
        rng = parse_range(options.child_text("ItemOperations:Range")) if options is not None else None
        return _fetch_attachment(view, acc, ref, rng, parts, budget)
    opts = eas_item.item_options(options, version)
    return _fetch_email(view, acc, version, el, opts, parts, budget)


# ---------------------------------------------------------------- EmptyFolderContents

def _below(view, acc: int, mbx: int) -> list:
    """Mailboxes below MBX, deepest first."""
    out, stack = [], [(mbx, 0)]
    while stack:
        m, d = stack.pop()
        for c in view.children(acc, m):
            out.append((d + 1, c))
            stack.append((c, d + 1))
    out.sort(key=lambda x: -x[0])
    return [c for _, c in out]


async def empty_folder(ctx, el: Element) -> Element:
    coll = el.child_text("AirSync:CollectionId")
    head = [_el(_AS, "CollectionId", coll)] if coll is not None else []

    def answer(n: int) -> Element:
        return Element(_IO, "EmptyFolderContents", [_el(_IO, "Status", str(n))] + head, None, None)

    if coll is None:
        return answer(PROTOCOL_ERROR)
    options = el.find("ItemOperations:Options")
    subfolders = options is not None and options.find("ItemOperations:DeleteSubFolders") is not None
    mbx = ids.parse("M", coll)
    acc = ctx.account
    with ctx.store.view() as v:
        if mbx is None or v.mailbox(acc, mbx) is None:
            return answer(NOT_FOUND)
        uids = [u for u, _ in v.uids(acc, mbx)]
        below = []
        kept = False
        if subfolders:
            for c in _below(v, acc, mbx):
                m = v.mailbox(acc, c)
                if m is None:
                    continue
                if m.role:
                    kept = True
                else:
                    below.append(c)
    try:
        if uids:
            await storeio.write(ctx.store, ops.expunge, acc, mbx, uids)
        for c in below:
            try:
                await storeio.write(ctx.store, ops.delete_mailbox, acc, c)
            except StoreError:       # a role folder (or a child of one) stays
                kept = True
    except StoreError:
        return answer(SERVER_ERROR)
    return answer(PARTIAL if kept else OK)


# ---------------------------------------------------------------- the command

def multipart_body(parts: list[bytes]) -> bytes:
    """The MultiPartResponse structure (MS-ASCMD 2.2.1.10.1.1)."""
    n = len(parts)
    offset = 4 + 8 * n
    meta = [n.to_bytes(4, "little")]
    for p in parts:
        meta.append(offset.to_bytes(4, "little") + len(p).to_bytes(4, "little"))
        offset += len(p)
    return b"".join(meta + parts)


async def run(ctx, body: Element | None):
    if body is None or body.qname != "ItemOperations:ItemOperations":
        return _status(PROTOCOL_ERROR)
    todo = body.children
    if not todo or len(todo) > MAX_OPERATIONS:
        return _status(PROTOCOL_ERROR)
    multipart = bool(ctx.req.accept_multipart)
    parts: list[bytes] | None = [] if multipart else None
    budget = _Budget()
    out = []
    acc, version = ctx.account, ctx.version
    for el in todo:
        q = el.qname
        if q == "ItemOperations:Fetch":
            out.append(await storeio.read(ctx.store, fetch, acc, version, el, parts, budget))
        elif q == "ItemOperations:EmptyFolderContents":
            out.append(await empty_folder(ctx, el))
        elif q == "ItemOperations:Move":
            out.append(Element(_IO, "Move", [_el(_IO, "Status", str(NOT_SUPPORTED))], None, None))
        else:
            return _status(PROTOCOL_ERROR)
    root = E("ItemOperations:ItemOperations", E("ItemOperations:Status", text=str(OK)),
             Element(_IO, "Response", out, None, None))
    if not multipart:
        return root
    from .eas import SERVER_VERSION
    return Response(200, multipart_body([encode(root)] + parts),
                    [("content-type", MULTIPART_TYPE), ("cache-control", "private"),
                     ("ms-server-activesync", SERVER_VERSION)])


COMMANDS = [Command("ItemOperations", run, "ItemOperations:ItemOperations",
                    "ItemOperations:Status", big_answer=True)]
