"""An email as ActiveSync shows it (MS-ASEMAIL, MS-ASAIRS): the children of
``AirSync:ApplicationData`` (Sync), ``ItemOperations:Properties`` and
``Search:Properties``, built from the store's record and message index.

API (the contract Sync, ItemOperations, Search and Find build on):
``item_options(options_el, version) -> ItemOptions``,
``application_data(view, acc, eid, opts, version) -> list[Element] | None``,
``server_id`` / ``parse_server_id``, and for attachments
``file_reference`` / ``parse_file_reference``; ``render`` takes an
already loaded email (emails.LoadedEmail) and can put the body's data
aside for an ItemOperations multipart answer.  Call under a store view
(``with store.view() as v``); the work is bounded by what is sent (a body
asked for with TruncationSize decodes only a prefix of its part).  The
stored index is read by mime/lite_index.py (without the JMAP body
structure unless the message has attachments); headers the index does not
hold (Importance) are read from the raw header block.

Ids
- ServerId of an email: ``ids.email_id`` ("E42"), the same in every folder,
  as in JMAP and IMAP's EMAILID (a move keeps it).
- FileReference of an attachment: ``"<ServerId>:<section>"``, e.g.
  ``"E42:2.1"`` = email 42, IMAP body section 2.1 (the JMAP partId of the
  part, ``MessageIndex.parts[i].section``).  It names content, not a
  mailbox, so it stays valid when the email moves.

What is rendered (MS-ASEMAIL 2.2.2; order as Exchange sends it)
- Email: To, Cc, From, ReplyTo (addresses ``"Name" <addr>``, To/Cc/From
  comma separated, ReplyTo semicolon separated), Subject, DateReceived
  (received time, UTC), DisplayTo (To display names, "; "), ThreadTopic
  (RFC 5256 base subject), Importance (0/1/2 from Importance, X-Priority or
  Priority headers), Read (``$seen``), Flag (empty, or Status 2 and FlagType
  "Flag for follow up" when ``$flagged``: the store keeps no flag dates, so
  none are sent -- MS-ASEMAIL allows a flag without them), MessageClass
  (IPM.Note; IPM.Note.SMIME / .SMIME.MultipartSigned for S/MIME),
  InternetCPID 65001 (we send UTF-8), ContentClass.
- AirSyncBase: Attachments (DisplayName, FileReference, Method 1, or 5 for
  an attached message, EstimatedDataSize = decoded size, ContentId,
  ContentLocation, IsInline, ContentType for 16.x), Body (below),
  NativeBodyType (2 when the message has an HTML body, else 1).
- 14.0+: Categories (keywords that are not ``$``-prefixed system/IANA
  keywords), Email2 ConversationId (16 bytes from the thread id),
  ConversationIndex (5 bytes of the sent time as a FILETIME), Sender (when
  it differs from From), LastVerbExecuted (1 ReplyToSender from
  ``$answered``, 3 Forward from ``$forwarded``; no execution time: none is
  stored).  16.0+: Email2 IsDraft and, for drafts, Bcc.
- 12.1 gets none of the 14.0+ elements and no Preview.

Body (MS-ASAIRS 2.2.2.9) from the client's BodyPreferences: type 4 (MIME,
the raw message) when asked and MIMESupport is 2 (or 1 for an S/MIME
message, or type 4 is the only preference); otherwise the message's native
type if asked, else HTML, else plain text (RTF, type 3, is not made: plain
text instead).  Type 1 is the text/plain parts of JMAP textBody (HTML
reduced to text when there are none); type 2 the text/html parts of
htmlBody (plain text escaped into HTML when there are none).  Children:
Type, EstimatedDataSize (the whole body's octets; decoded part sizes when
cut), Truncated (1 when cut), Data (omitted when cut and AllOrNone is 1, or
TruncationSize is 0), Preview (14.0+, when asked: the index's preview, at
most 255 characters).  Text is cut at TruncationSize octets of UTF-8, never
inside a character nor an HTML tag (jmapbody.truncate_utf8).  MIME data is
sent as a string when it is UTF-8 (any 7-bit message), else as WBXML opaque
bytes so no octet is changed.
"""
from __future__ import annotations

import functools
import html as _html
import re
import time
from dataclasses import dataclass, field

from .. import _speedups, ids, vocab
from ..mime import index as mindex
from ..mime import jmapbody, lite_index
from ..proto.eas.wbxml import Element
from ..store import emails

_html_to_text = _speedups.load("msgindex").html_to_text

# AirSyncBase:Type of a body
PLAIN, HTML, RTF, MIME = 1, 2, 3, 4

# code pages (MS-ASWBXML) for building elements without parsing qnames
_AS, _EM, _TASKS, _ASB, _IO, _EM2 = 0, 2, 9, 17, 20, 22
MAX_PREVIEW = 255           # MS-ASAIRS 2.2.2.35: Preview is 0..255 characters

CONTENT_CLASS = "urn:content-classes:message"
UTF8_CPID = "65001"
FLAG_TYPE = "Flag for follow up"


@dataclass(frozen=True)
class BodyPref:
    """One AirSyncBase:BodyPreference."""
    type: int = PLAIN
    truncation: int | None = None    # TruncationSize (octets); None: whole
    all_or_none: bool = False
    preview: int | None = None       # Preview (14.0+): characters of plain text


@dataclass(frozen=True)
class ItemOptions:
    """What the client asked to see of an item (Sync/ItemOperations/Search Options)."""
    body_prefs: tuple[BodyPref, ...] = ()
    mime_support: int = 0            # AirSync:MIMESupport 0 never, 1 S/MIME only, 2 always
    extra: dict = field(default_factory=dict)
    # ItemOperations Schema: the qnames ("Email:Subject", "AirSyncBase:Body")
    # to send; None: all of them
    schema: frozenset | None = None


def server_id(eid: int) -> str:
    return ids.email_id(eid)


def parse_server_id(s: str | None) -> int | None:
    return ids.parse("E", s or "")


def file_reference(eid: int, section: str) -> str:
    """The FileReference of body section SECTION of email EID ("E42:2.1")."""
    return f"{ids.email_id(eid)}:{section}"


def parse_file_reference(s: str | None) -> tuple[int, str] | None:
    """"E42:2.1" -> (42, "2.1"); None for anything else."""
    if not s or len(s) > 200:
        return None
    sid, sep, section = s.partition(":")
    eid = parse_server_id(sid)
    if eid is None or not sep or not section:
        return None
    for n in section.split("."):
        if not n.isdigit() or not n.isascii() or len(n) > 6 or n[0] == "0":
            return None
    return eid, section


# AirSync:MIMETruncation (MS-ASCMD 2.2.3.109): code -> octets (None: whole)
MIME_TRUNCATION = {0: 0, 1: 4096, 2: 5120, 3: 7168, 4: 10240, 5: 20480, 6: 51200,
                   7: 102400, 8: None}


def _int(s: str | None) -> int | None:
    return int(s) if s and s.isascii() and s.isdigit() and len(s) <= 10 else None


def item_options(options: Element | None, version: str) -> ItemOptions:
    """The ItemOptions of an Options element (None: the defaults)."""
    if options is None:
        return ItemOptions()
    prefs = []
    types = set()
    for bp in options.findall("AirSyncBase:BodyPreference"):
        t = _int(bp.child_text("AirSyncBase:Type"))
        t = t if t in (PLAIN, HTML, RTF, MIME) else PLAIN
        if t in types:
            # only the first of a Type is ever chosen (choose_body): the
            # rest are dropped here, not scanned for every item rendered
            # (25,000 BodyPreferences: 0.3 s per 512-item Sync page)
            continue
        types.add(t)
        prefs.append(BodyPref(
            type=t,
            truncation=_int(bp.child_text("AirSyncBase:TruncationSize")),
            all_or_none=bp.child_text("AirSyncBase:AllOrNone") == "1",
            preview=_int(bp.child_text("AirSyncBase:Preview"))))
    ms = _int(options.child_text("AirSync:MIMESupport"))
    extra = {}
    mt = _int(options.child_text("AirSync:MIMETruncation"))
    if mt is not None and mt in MIME_TRUNCATION:
        extra["mime_truncation"] = MIME_TRUNCATION[mt]
    schema = None
    sch = options.find("ItemOperations:Schema")
    if sch is not None and sch.children:
        schema = frozenset(c.qname for c in sch.children)
    return ItemOptions(tuple(prefs), ms if ms in (0, 1, 2) else 0, extra, schema=schema)


# ---------------------------------------------------------------- small helpers

def _el(page: int, tag: str, text: str | None = None) -> Element:
    return Element(page, tag, [], text, None)


def _s(text: str) -> str:
    """TEXT made encodable in a WBXML string: no NUL, no lone surrogate."""
    if text.isascii():
        return text.replace("\x00", "") if "\x00" in text else text
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


_DAYS: dict[int, str] = {}


def _date(t: int) -> str:
    """T (seconds, UTC) as MS-ASEMAIL's DateReceived; the date part is
    formatted once per day (a page of a mailbox is mostly a few days)."""
    try:
        day, sec = divmod(int(t), 86400)
        head = _DAYS.get(day)
        if head is None:
            if len(_DAYS) > 4096:
                _DAYS.clear()
            head = _DAYS[day] = "%04d-%02d-%02dT" % time.gmtime(day * 86400)[:3]
        h, sec = divmod(sec, 3600)
        return "%s%02d:%02d:%02d.000Z" % (head, h, sec // 60, sec % 60)
    except (OverflowError, OSError, ValueError):
        return "1970-01-01T00:00:00.000Z"


def _addr(name, email) -> str:
    if name and ('"' in name or "\\" in name):
        name = name.replace("\\", "\\\\").replace('"', '\\"')
    if not email:
        return f'"{name}"' if name else ""
    return f'"{name}" <{email}>' if name else f"<{email}>"


def _addrs(addrs, sep: str = ", ") -> str:
    if len(addrs) == 1:
        return _addr(*addrs[0])
    return sep.join(_addr(n, e) for n, e in addrs)


def _display_to(addrs) -> str:
    return "; ".join((n or e or "") for n, e in addrs)


def _header_value(head: bytes, name: bytes) -> bytes | None:
    """The first line of header NAME (lower case, with the colon) in HEAD
    (the lower-cased header block, starting with a line break)."""
    i = head.find(b"\n" + name)
    if i < 0:
        return None
    i += len(name) + 1
    j = head.find(b"\n", i)
    return head[i:j if j >= 0 else len(head)].strip()


_PRIORITY = re.compile(rb"(?i)priority:|importance:")


def importance(raw, header_end: int) -> int:
    """MS-ASEMAIL Importance: 0 low, 1 normal, 2 high, from the Importance,
    X-Priority or Priority header of the message RAW."""
    if _PRIORITY.search(raw, 0, header_end) is None:
        return 1
    head = b"\n" + bytes(raw[:header_end]).lower()
    v = _header_value(head, b"importance:")
    if v is not None:
        return 2 if v == b"high" else 0 if v == b"low" else 1
    v = _header_value(head, b"x-priority:")
    if v is not None:
        return 2 if v[:1] in (b"1", b"2") else 0 if v[:1] in (b"4", b"5") else 1
    v = _header_value(head, b"priority:")
    if v is not None:
        return 2 if v == b"urgent" else 0 if v == b"non-urgent" else 1
    return 1


def _filetime5(t: int | None) -> bytes:
    """ConversationIndex (MS-ASEMAIL 2.2.2.18): the first five octets of the
    header block, the top 40 bits (after the reserved octet) of a FILETIME."""
    ft = ((t or 0) + 11644473600) * 10_000_000
    return (ft & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")[1:6]


def _conversation_id(thread: int) -> bytes:
    return b"mailaccessT\x00" + (thread & 0xFFFFFFFF).to_bytes(4, "big")


# ---------------------------------------------------------------- bodies

def _nodes(mi: mindex.MessageIndex) -> dict[str, dict]:
    return jmapbody.parts_by_id(mi.jmap_body)


def native_type(mi: mindex.MessageIndex) -> int:
    """HTML when htmlBody holds a text/html part, else PLAIN."""
    for pid in mi.html_body:
        p = mi.part(pid)
        if p is not None and p.content_type == "text/html":
            return HTML
    return PLAIN


def _smime(mi: mindex.MessageIndex) -> str | None:
    ct = mi.parts[0].content_type if mi.parts else ""
    if ct == "multipart/signed":
        return "IPM.Note.SMIME.MultipartSigned"
    if ct in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "IPM.Note.SMIME"
    return None


def choose_body(opts: ItemOptions, native: int, smime: bool) -> BodyPref:
    """The BodyPreference to answer with (see the module docstring)."""
    prefs = opts.body_prefs
    if not prefs:
        # 12.x without BodyPreference: MIMESupport (with MIMETruncation) alone
        if opts.mime_support == 2 or (opts.mime_support == 1 and smime):
            return BodyPref(MIME, opts.extra.get("mime_truncation"))
        return BodyPref(PLAIN)
    by_type = {}
    for p in prefs:
        by_type.setdefault(p.type, p)
    mime = by_type.get(MIME)
    if mime is not None and (opts.mime_support == 2 or (opts.mime_support == 1 and smime)
                             or len(by_type) == 1):
        if mime.truncation is None and opts.extra.get("mime_truncation") is not None:
            return BodyPref(MIME, opts.extra["mime_truncation"], mime.all_or_none, mime.preview)
        return mime
    for t in (native, HTML, PLAIN):
        if t in by_type:
            return by_type[t]
    p = by_type.get(RTF) or prefs[0]
    return BodyPref(PLAIN, p.truncation, p.all_or_none, p.preview)


def _estimated(part) -> int:
    """About the decoded size of PART, from its span (no decoding)."""
    n = part.end - part.body_start
    return n * 3 // 4 if part.encoding == "base64" else n


def _part_texts(raw, mi, pids, ctype: str, max_bytes: int, html: bool):
    """[(BodyValue, estimated decoded size)] of the parts PIDS of type CTYPE."""
    out = []
    for pid in pids:
        part = mi.part(pid)
        if part is None or part.content_type != ctype:
            continue
        out.append((jmapbody.body_value(raw, part, max_bytes, html), _estimated(part)))
    return out


def _joined(vals, max_bytes: int, html: bool, sep: str) -> tuple[str, bool, int]:
    """Several part texts as one body -> (text, truncated, estimated size)."""
    if len(vals) == 1:
        bv, size = vals[0]
        return bv.value, bv.is_truncated, size
    text = sep.join(bv.value for bv, _ in vals)
    cut = any(bv.is_truncated for bv, _ in vals)
    text, cut2 = jmapbody.truncate_utf8(text, max_bytes, html)
    return text, cut or cut2, sum(s for _, s in vals)


def _plain_to_html(text: str) -> str:
    return ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            '</head><body>' + _html.escape(text, quote=False).replace("\n", "<br>\n")
            + "</body></html>")


def body_text(raw, mi: mindex.MessageIndex, want: int,
              max_bytes: int) -> tuple[str, bool, int]:
    """The text of body type WANT (PLAIN or HTML) cut to MAX_BYTES octets
    (0: whole) -> (text, truncated, estimated size of the whole)."""
    if want == HTML:
        vals = _part_texts(raw, mi, mi.html_body, "text/html", max_bytes, True)
        if vals:
            return _joined(vals, max_bytes, True, "\n")
        vals = _part_texts(raw, mi, mi.html_body, "text/plain", 0, False)
        whole = _plain_to_html("\n".join(bv.value for bv, _ in vals))
        text, cut = jmapbody.truncate_utf8(whole, max_bytes, True)
        return text, cut, len(whole.encode("utf-8", "surrogatepass")) if cut else len(whole)
    vals = _part_texts(raw, mi, mi.text_body, "text/plain", max_bytes, False)
    if vals:
        return _joined(vals, max_bytes, False, "\n")
    # no text/plain: the HTML reduced to text (a generous prefix of it when cut)
    cap = max(8 * max_bytes, 65536) if max_bytes > 0 else 0
    vals = _part_texts(raw, mi, mi.text_body, "text/html", cap, True)
    if not vals:
        vals = _part_texts(raw, mi, mi.html_body, "text/html", cap, True)
    whole = "\n".join(_html_to_text(bv.value) for bv, _ in vals)
    text, cut = jmapbody.truncate_utf8(whole, max_bytes)
    cut = cut or any(bv.is_truncated for bv, _ in vals)
    return text, cut, len(whole.encode("utf-8", "surrogatepass"))


def mime_data(raw, max_bytes: int | None) -> tuple[str | None, bytes | None, bool]:
    """The raw message as Body Data cut to MAX_BYTES -> (text, opaque, truncated):
    a string when the octets are UTF-8 without NUL, else opaque bytes."""
    n = len(raw)
    cut = max_bytes is not None and max_bytes < n
    data = bytes(raw[:max_bytes] if cut else raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if cut and exc.reason == "unexpected end of data":
            try:
                text = data[:exc.start].decode("utf-8")
            except UnicodeDecodeError:
                return None, data, cut
        else:
            return None, data, cut
    if "\x00" in text:
        return None, data, cut
    return text, None, cut


def body_element(raw, mi: mindex.MessageIndex, size: int, pref: BodyPref,
                 version_major: int, part: int | None = None) -> tuple[Element, bytes | None]:
    """The AirSyncBase:Body for PREF.  PART (ItemOperations multipart): the
    Data goes out of the WBXML as part PART, returned as bytes."""
    t = pref.type if pref.type in (PLAIN, HTML, MIME) else PLAIN
    trunc = pref.truncation
    kids = [_el(_ASB, "Type", str(t))]
    text = opaque = None
    if t == MIME:
        estimated = size
        if trunc == 0:
            cut = size > 0
        else:
            text, opaque, cut = mime_data(raw, trunc)
    else:
        if trunc == 0:
            body, cut, estimated = body_text(raw, mi, t, 1)
            cut = cut or bool(body)
        else:
            body, cut, estimated = body_text(raw, mi, t, trunc or 0)
            text = _s(body)
            sent = len(text) if text.isascii() else len(text.encode("utf-8"))
            # whole: its exact size; cut: the estimate, but more than was sent
            estimated = max(estimated, sent + 1) if cut else sent
    kids.append(_el(_ASB, "EstimatedDataSize", str(estimated)))
    if cut:
        kids.append(_el(_ASB, "Truncated", "1"))
    out_bytes = None
    if trunc != 0 and not (cut and pref.all_or_none):
        if part is not None:
            out_bytes = opaque if opaque is not None else text.encode("utf-8")
            kids.append(_el(_IO, "Part", str(part)))
        elif opaque is not None:
            kids.append(Element(_ASB, "Data", [], None, opaque))
        else:
            kids.append(_el(_ASB, "Data", text))
    if version_major >= 14 and pref.preview:
        kids.append(_el(_ASB, "Preview", _s(mi.preview[:min(pref.preview, MAX_PREVIEW)])))
    return Element(_ASB, "Body", kids, None, None), out_bytes


# ---------------------------------------------------------------- attachments

def _att_name(node: dict, pid: str) -> str:
    name = node.get("name")
    if name:
        return _s(name)
    t = node.get("type") or ""
    if t in ("message/rfc822", "message/global"):
        return "message.eml"
    sub = t.partition("/")[2]
    ext = {"plain": "txt", "jpeg": "jpg", "octet-stream": "bin"}.get(sub, sub)
    return f"attachment-{pid}.{ext}" if ext and ext.isalnum() else f"attachment-{pid}"


def attachments_element(eid: int, mi: mindex.MessageIndex,
                        version_major: int) -> Element | None:
    """AirSyncBase:Attachments for the JMAP attachments of the message."""
    if not mi.attachments:
        return None
    nodes = _nodes(mi)
    atts = []
    for pid in mi.attachments:
        n = nodes.get(pid)
        if n is None:
            continue
        t = n.get("type") or "application/octet-stream"
        kids = [_el(_ASB, "DisplayName", _att_name(n, pid)),
                _el(_ASB, "FileReference", file_reference(eid, pid)),
                _el(_ASB, "Method", "5" if t in ("message/rfc822", "message/global") else "1"),
                _el(_ASB, "EstimatedDataSize", str(n.get("size") or 0))]
        cid = n.get("cid")
        if cid:
            kids.append(_el(_ASB, "ContentId", _s(cid)))
        loc = n.get("location")
        if loc:
            kids.append(_el(_ASB, "ContentLocation", _s(loc)))
        disp = n.get("disposition")
        if disp == "inline" or (cid and disp is None):
            kids.append(_el(_ASB, "IsInline", "1"))
        if version_major >= 16:
            kids.append(_el(_ASB, "ContentType", _s(t)))
        atts.append(Element(_ASB, "Attachment", kids, None, None))
    return Element(_ASB, "Attachments", atts, None, None) if atts else None


# ---------------------------------------------------------------- the item

@functools.lru_cache(maxsize=32)
def _major(version: str) -> int:
    head = version.partition(".")[0]
    return int(head) if head.isdigit() else 16


def _index_of(view, acc: int, em) -> tuple[object, object]:
    """(the message index, the raw message or None if not read yet)."""
    data = em.index_data
    if data is not None:
        try:
            return lite_index.read_index(data), None
        except Exception:    # unreadable (another version, damaged): index the message
            pass
    raw = view.blob(acc, em.blob)
    raw = bytes(raw) if raw is not None else b""
    return mindex.index_message(raw), raw


def application_data(view, acc: int, eid: int, opts: ItemOptions, version: str) -> list[Element] | None:
    """The Email:/AirSyncBase: elements of email EID (None: no such email)."""
    em = emails.load_email(view, acc, eid, members=False)
    if em is None:
        return None
    return render(view, acc, em, opts, version)[0]


def render(view, acc: int, em, opts: ItemOptions, version: str,
           part: int | None = None) -> tuple[list[Element], bytes | None]:
    """The elements of the loaded email EM (emails.LoadedEmail) and, when
    PART is given (ItemOperations multipart), the body's data as bytes."""
    major = _major(version)
    rec = em.record
    eid = em.id
    mi, raw = _index_of(view, acc, em)
    if raw is None:
        raw = view.blob(acc, em.blob)
        if raw is None:
            raw = b""
    kw = rec.keywords
    E_ = _el
    out = []
    if mi.to:
        out.append(E_(_EM, "To", _s(_addrs(mi.to))))
    if mi.cc:
        out.append(E_(_EM, "Cc", _s(_addrs(mi.cc))))
    if mi.from_:
        out.append(E_(_EM, "From", _s(_addrs(mi.from_))))
    subject = _s(mi.subject or "")
    out.append(E_(_EM, "Subject", subject))
    if mi.reply_to:
        out.append(E_(_EM, "ReplyTo", _s(_addrs(mi.reply_to, "; "))))
    out.append(E_(_EM, "DateReceived", _date(rec.received_at)))
    out.append(E_(_EM, "DisplayTo", _s(_display_to(mi.to))))
    out.append(E_(_EM, "ThreadTopic", _s(mindex.base_subject(subject)) if subject else ""))
    out.append(E_(_EM, "Importance", str(importance(raw, mi.header_end))))
    out.append(E_(_EM, "Read", "1" if vocab.SEEN in kw else "0"))
    atts = attachments_element(eid, mi, major)
    if atts is not None:
        out.append(atts)
    smime = _smime(mi)
    native = native_type(mi)
    data = None
    if opts.schema is None or "AirSyncBase:Body" in opts.schema:
        pref = choose_body(opts, native, smime is not None)
        body, data = body_element(raw, mi, rec.size, pref, major, part)
        out.append(body)
    out.append(E_(_EM, "MessageClass", smime or "IPM.Note"))
    out.append(E_(_EM, "InternetCPID", UTF8_CPID))
    if vocab.FLAGGED in kw:
        out.append(Element(_EM, "Flag", [E_(_EM, "Status", "2"),
                                         E_(_EM, "FlagType", FLAG_TYPE)], None, None))
    else:
        out.append(Element(_EM, "Flag", [], None, None))
    out.append(E_(_EM, "ContentClass", CONTENT_CLASS))
    out.append(E_(_ASB, "NativeBodyType", str(native)))
    if major >= 14:
        out.append(Element(_EM2, "ConversationId", [], None, _conversation_id(rec.thread)))
        out.append(Element(_EM2, "ConversationIndex", [], None,
                           _filetime5(mi.sent_at if mi.sent_at is not None else rec.received_at)))
        cats = [k for k in kw if not k.startswith("$")]
        if cats:
            out.append(Element(_EM, "Categories",
                               [E_(_EM, "Category", _s(k)) for k in sorted(cats)], None, None))
        if mi.sender and mi.from_ and mi.sender[0][1].lower() != mi.from_[0][1].lower():
            out.append(E_(_EM2, "Sender", _s(_addrs(mi.sender))))
        if vocab.ANSWERED in kw:
            out.append(E_(_EM2, "LastVerbExecuted", "1"))
        elif vocab.FORWARDED in kw:
            out.append(E_(_EM2, "LastVerbExecuted", "3"))
    if major >= 16:
        draft = vocab.DRAFT in kw
        out.append(E_(_EM2, "IsDraft", "1" if draft else "0"))
        if draft and mi.bcc:
            out.append(E_(_EM2, "Bcc", _s(_addrs(mi.bcc))))
    if opts.schema is not None:
        out = [e for e in out if e.qname in opts.schema]
    return out, data


__all__ = ["PLAIN", "HTML", "RTF", "MIME", "BodyPref", "ItemOptions", "item_options",
           "application_data", "render", "server_id", "parse_server_id", "file_reference",
           "parse_file_reference", "choose_body", "body_text", "body_element",
           "attachments_element", "native_type", "mime_data", "importance",
           "MIME_TRUNCATION"]
