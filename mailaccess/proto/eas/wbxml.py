"""WBXML 1.3 as Exchange ActiveSync uses it (MS-ASWBXML): bytes <-> Element.

``decode(data, limits)`` turns a request body into an ``Element`` tree;
``encode(element)`` turns a tree into a response body.  The tree is the
whole model: an element is a (code page, tag name) pair with either children,
or text (inline strings), or opaque bytes, or nothing.  ActiveSync uses no
attributes, no mixed content and no processing instructions.

What is accepted (WAP-192-WBXML 1.3, restricted as MS-ASWBXML uses it):

* header: version 0x03; a public id (mb_u_int32; 0x01 "unknown" is what
  clients send, 0 followed by a string-table index is accepted too); charset
  106 (UTF-8) only; a string table of any length within the limits;
* SWITCH_PAGE to a page 0..25, END, STR_I, STR_T (an offset into the string
  table), ENTITY (a character entity, appended to the text), OPAQUE;
* tags with and without content (the 0x40 bit).

Rejected with ``WbxmlError`` (never any other exception): the attribute bit
(0x80), LITERAL tags (no tag name can come from a string table: it is not a
token of a code page), the extension tokens EXT_I/EXT_T/EXT and PI, unknown
pages and unknown tokens, mixed content (text and child elements in one
element, or text and opaque), text outside the root or after it, anything
over the ``Limits`` (size, depth, element count, string and opaque length),
mb_u_int32 values over five bytes or 2**32, invalid UTF-8, truncation.

Which status the caller answers (the codec only reports ``reason``): for
protocol 14.0 and later every decoding error is the common status 102
(InvalidWBXML, MS-ASCMD 2.2.2) in the command's response (or HTTP 400 where
the command cannot be named); 12.x has no common status codes, so the answer
is HTTP 400.  A body over ``max_size`` is best refused before decoding, with
HTTP 413.  The unknown-tag and unknown-page reasons are the same 102.

The decoder and the encoder are plain loops over bytes with an explicit stack
(no recursion), written so that Cython can compile the module unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .codepages import NAMESPACES, PAGE_OF, TAGS, TOKENS

SWITCH_PAGE = 0x00
END = 0x01
ENTITY = 0x02
STR_I = 0x03
LITERAL = 0x04
EXT_I_0, EXT_I_1, EXT_I_2, PI, LITERAL_C = 0x40, 0x41, 0x42, 0x43, 0x44
EXT_T_0, EXT_T_1, EXT_T_2, STR_T, LITERAL_A = 0x80, 0x81, 0x82, 0x83, 0x84
EXT_0, EXT_1, EXT_2, OPAQUE, LITERAL_AC = 0xC0, 0xC1, 0xC2, 0xC3, 0xC4

VERSION_1_3 = 0x03
PUBLIC_ID_UNKNOWN = 0x01
CHARSET_UTF8 = 106
HEADER = bytes((VERSION_1_3, PUBLIC_ID_UNKNOWN, CHARSET_UTF8, 0x00))

TAG_CONTENT = 0x40
TAG_ATTRIBUTES = 0x80
TOKEN_MASK = 0x3F


class WbxmlError(ValueError):
    """Malformed, unsupported or over-limit WBXML.  ``reason`` is a short
    stable code (for logs and tests), ``offset`` the byte where it was seen
    (-1 when encoding)."""

    def __init__(self, reason: str, detail: str = "", offset: int = -1):
        self.reason = reason
        self.detail = detail
        self.offset = offset
        where = f" at byte {offset}" if offset >= 0 else ""
        super().__init__(f"{reason}{where}" + (f": {detail}" if detail else ""))


@dataclass(frozen=True)
class Limits:
    """Bounds on the work one decode may do.  The defaults fit a 14.x
    SendMail with attachments inline; callers tighten them per command."""
    max_size: int = 32 * 1024 * 1024        # bytes of input
    max_depth: int = 64                     # nesting of elements
    max_elements: int = 200_000             # tags in the document
    max_string: int = 16 * 1024 * 1024      # bytes of one element's text
    max_opaque: int = 32 * 1024 * 1024      # bytes of one element's opaque data


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Element:
    """One WBXML element: code page PAGE, tag name TAG, and either CHILDREN,
    or TEXT, or OPAQUE bytes (or none of them: an empty element)."""
    page: int
    tag: str
    children: list["Element"] = field(default_factory=list)
    text: str | None = None
    opaque: bytes | None = None

    @property
    def namespace(self) -> str:
        return NAMESPACES.get(self.page, f"page{self.page}")

    @property
    def qname(self) -> str:
        """"Namespace:Tag", e.g. "AirSync:Sync"."""
        return f"{self.namespace}:{self.tag}"

    def find(self, qname: str) -> "Element | None":
        """The first child named QNAME ("AirSync:SyncKey"), or None."""
        for c in self.children:
            if c.qname == qname:
                return c
        return None

    def findall(self, qname: str) -> list["Element"]:
        return [c for c in self.children if c.qname == qname]

    def child_text(self, qname: str) -> str | None:
        c = self.find(qname)
        return None if c is None else c.text


def E(qname: str, *children: Element, text: str | None = None,
      opaque: bytes | None = None) -> Element:
    """Build an element from its qualified name: E("AirSync:Sync", ...)."""
    ns, sep, tag = qname.partition(":")
    if not sep or ns not in PAGE_OF:
        raise WbxmlError("unknown-page", f"no code page named in {qname!r}")
    page = PAGE_OF[ns]
    if tag not in TOKENS[page]:
        raise WbxmlError("unknown-tag", f"{qname!r}")
    return Element(page, tag, list(children), text, opaque)


# ---- multi-byte integers -------------------------------------------------------------------

def mb_u_int32(n: int) -> bytes:
    """Encode N (0 <= N < 2**32) as a WBXML mb_u_int32."""
    if n < 0 or n > 0xFFFFFFFF:
        raise WbxmlError("mb-u-int32-range", str(n))
    out = bytearray((n & 0x7F,))
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.reverse()
    return bytes(out)


def _read_mb(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the mb_u_int32 at POS: five bytes at most."""
    value = 0
    start = pos
    while True:
        if pos >= end:
            raise WbxmlError("truncated", "in a multi-byte integer", start)
        if pos - start >= 5:
            raise WbxmlError("mb-u-int32-too-long", "", start)
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if value > 0xFFFFFFFF:
        raise WbxmlError("mb-u-int32-range", str(value), start)
    return value, pos


def _utf8(raw: bytes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WbxmlError("bad-utf8", str(e.reason), offset) from None


# ---- decoding ----------------------------------------------------------------------------

def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Element:
    """Parse one WBXML document into its root Element; WbxmlError otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WbxmlError("not-bytes", type(data).__name__)
    data = bytes(data)
    end = len(data)
    if end > limits.max_size:
        raise WbxmlError("too-large", f"{end} > {limits.max_size} bytes", 0)
    if end < 4:
        raise WbxmlError("truncated", "header", 0)
    if data[0] != VERSION_1_3:
        raise WbxmlError("bad-version", f"0x{data[0]:02X}", 0)
    public_id, pos = _read_mb(data, 1, end)
    if public_id == 0:                    # the id is a string-table reference
        _index, pos = _read_mb(data, pos, end)
    charset, cpos = _read_mb(data, pos, end)
    if charset != CHARSET_UTF8:
        raise WbxmlError("bad-charset", str(charset), pos)
    table_len, pos = _read_mb(data, cpos, end)
    if table_len > end - pos:
        raise WbxmlError("truncated", "string table", cpos)
    table = data[pos:pos + table_len]
    pos += table_len

    page = 0
    root: Element | None = None
    stack: list[Element] = []
    # per open element: its text pieces (STR_I/STR_T/ENTITY) and opaque
    # chunks, joined once at its END (never by repeated concatenation), and
    # the byte counts they add up to
    # (None until the element gets text or opaque data: most elements get none)
    pieces: list = []
    text_len: list[int] = []
    blobs: list = []
    blob_len: list[int] = []
    elements = 0
    tags = TAGS[0]

    while pos < end:
        b = data[pos]
        if b == SWITCH_PAGE:
            if pos + 1 >= end:
                raise WbxmlError("truncated", "SWITCH_PAGE", pos)
            page = data[pos + 1]
            if page not in TAGS:
                raise WbxmlError("unknown-page", str(page), pos)
            tags = TAGS[page]
            pos += 2
            continue
        if b == END:
            if not stack:
                raise WbxmlError("unbalanced-end", "", pos)
            el = stack.pop()
            parts = pieces.pop()
            text_len.pop()
            chunks = blobs.pop()
            blob_len.pop()
            if parts is not None:
                el.text = parts[0] if len(parts) == 1 else "".join(parts)
            elif chunks is not None:
                el.opaque = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            pos += 1
            continue
        if b == STR_I or b == STR_T or b == ENTITY:
            if not stack:
                raise WbxmlError("text-outside-root", "", pos)
            el = stack[-1]
            if el.children or blobs[-1] is not None:
                raise WbxmlError("mixed-content", el.qname, pos)
            at = pos
            if b == STR_I:
                nul = data.find(b"\x00", pos + 1)
                if nul < 0:
                    raise WbxmlError("truncated", "inline string", pos)
                n = nul - pos - 1
                if text_len[-1] + n > limits.max_string:
                    raise WbxmlError("string-too-long", el.qname, pos)
                s = _utf8(data[pos + 1:nul], pos)
                pos = nul + 1
            elif b == STR_T:
                offset, pos = _read_mb(data, pos + 1, end)
                nul = table.find(b"\x00", offset) if offset < table_len else -1
                if nul < 0:
                    raise WbxmlError("bad-string-table-reference", str(offset), at)
                n = nul - offset
                if text_len[-1] + n > limits.max_string:
                    raise WbxmlError("string-too-long", el.qname, at)
                s = _utf8(table[offset:nul], at)
            else:
                cp, pos = _read_mb(data, pos + 1, end)
                if cp == 0 or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    raise WbxmlError("bad-entity", str(cp), at)
                s = chr(cp)
                n = len(s.encode("utf-8"))
                if text_len[-1] + n > limits.max_string:
                    raise WbxmlError("string-too-long", el.qname, at)
            if pieces[-1] is None:
                pieces[-1] = [s]
            else:
                pieces[-1].append(s)
            text_len[-1] += n
            continue
        if b == OPAQUE:
            if not stack:
                raise WbxmlError("text-outside-root", "opaque", pos)
            el = stack[-1]
            if el.children or pieces[-1] is not None:
                raise WbxmlError("mixed-content", el.qname, pos)
            at = pos
            n, pos = _read_mb(data, pos + 1, end)
            if blob_len[-1] + n > limits.max_opaque:
                raise WbxmlError("opaque-too-long", el.qname, at)
            if n > end - pos:
                raise WbxmlError("truncated", "opaque data", at)
            if blobs[-1] is None:
                blobs[-1] = [data[pos:pos + n]]
            else:
                blobs[-1].append(data[pos:pos + n])
            blob_len[-1] += n
            pos += n
            continue
        token = b & TOKEN_MASK
        if token < 0x05:
            # the remaining global tokens: LITERAL*, EXT*, PI
            if token == LITERAL:
                raise WbxmlError("literal-tag", f"0x{b:02X}", pos)
            raise WbxmlError("unsupported-token", f"0x{b:02X}", pos)
        if b & TAG_ATTRIBUTES:
            raise WbxmlError("attributes", f"0x{b:02X}", pos)
        name = tags.get(token)
        if name is None:
            raise WbxmlError("unknown-tag", f"page {page} token 0x{token:02X}", pos)
        elements += 1
        if elements > limits.max_elements:
            raise WbxmlError("too-many-elements", str(limits.max_elements), pos)
        el = Element(page, name)
        if stack:
            parent = stack[-1]
            if pieces[-1] is not None or blobs[-1] is not None:
                raise WbxmlError("mixed-content", parent.qname, pos)
            parent.children.append(el)
        elif root is None:
            root = el
        else:
            raise WbxmlError("second-root", el.qname, pos)
        if b & TAG_CONTENT:
            if len(stack) >= limits.max_depth:
                raise WbxmlError("too-deep", str(limits.max_depth), pos)
            stack.append(el)
            pieces.append(None)
            text_len.append(0)
            blobs.append(None)
            blob_len.append(0)
        pos += 1
    if stack:
        raise WbxmlError("truncated", f"{len(stack)} element(s) not closed", end)
    if root is None:
        raise WbxmlError("no-root", "", end)
    return root


# ---- encoding ----------------------------------------------------------------------------

def _check_element(el: object) -> Element:
    if not isinstance(el, Element):
        raise WbxmlError("not-an-element", type(el).__name__)
    if el.page not in TOKENS:
        raise WbxmlError("unknown-page", str(el.page))
    if el.tag not in TOKENS[el.page]:
        raise WbxmlError("unknown-tag", f"{el.namespace}:{el.tag}")
    if el.text is not None and not isinstance(el.text, str):
        raise WbxmlError("bad-text", el.qname)
    if el.opaque is not None and not isinstance(el.opaque, (bytes, bytearray)):
        raise WbxmlError("bad-opaque", el.qname)
    if not isinstance(el.children, list):
        raise WbxmlError("bad-children", el.qname)
    kinds = (1 if el.children else 0) + (el.text is not None) + (el.opaque is not None)
    if kinds > 1:
        raise WbxmlError("mixed-content", el.qname)
    return el


def encode(root: Element, max_depth: int = 256) -> bytes:
    """The WBXML document for the tree ROOT (header, body); WbxmlError if the
    tree holds an unknown tag, mixed content or a NUL in a string."""
    out = bytearray(HEADER)
    page = 0
    # (element, index of the next child to write); an entry is pushed when
    # its start tag is written and popped when its END is
    stack: list[list] = []
    el = _check_element(root)
    while True:
        if el is not None:
            if el.page != page:
                out.append(SWITCH_PAGE)
                out.append(el.page)
                page = el.page
            token = TOKENS[page][el.tag]
            if el.children or el.text is not None or el.opaque is not None:
                out.append(token | TAG_CONTENT)
                if el.text is not None:
                    try:
                        raw = el.text.encode("utf-8")
                    except (UnicodeEncodeError, AttributeError):
                        raise WbxmlError("bad-text", el.qname) from None
                    if b"\x00" in raw:
                        raise WbxmlError("nul-in-string", el.qname)
                    out.append(STR_I)
                    out += raw
                    out.append(0)
                elif el.opaque is not None:
                    out.append(OPAQUE)
                    out += mb_u_int32(len(el.opaque))
                    out += el.opaque
                if el.children:
                    if len(stack) >= max_depth:
                        raise WbxmlError("too-deep", str(max_depth))
                    stack.append([el, 0])
                else:
                    out.append(END)
            else:
                out.append(token)
            el = None
        if not stack:
            break
        top = stack[-1]
        kids = top[0].children
        if top[1] < len(kids):
            el = _check_element(kids[top[1]])
            top[1] += 1
        else:
            stack.pop()
            out.append(END)
    return bytes(out)


# ---- the readable form ---------------------------------------------------------------------

def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_xml(root: Element, indent: str = "  ", opaque_preview: int = 32) -> str:
    """An XML-like rendering for logs and tests: one element a line,
    namespaces as prefixes ("<AirSync:Sync>"), opaque data as its length and
    the hex of its first OPAQUE_PREVIEW bytes."""
    lines: list[str] = []
    stack: list[tuple[Element, int, bool]] = [(root, 0, False)]
    while stack:
        el, depth, closing = stack.pop()
        pad = indent * depth
        q = el.qname
        if closing:
            lines.append(f"{pad}</{q}>")
        elif el.children:
            lines.append(f"{pad}<{q}>")
            stack.append((el, depth, True))
            for c in reversed(el.children):
                stack.append((c, depth + 1, False))
        elif el.text is not None:
            lines.append(f"{pad}<{q}>{_esc(el.text)}</{q}>")
        elif el.opaque is not None:
            head = el.opaque[:opaque_preview].hex()
            more = "..." if len(el.opaque) > opaque_preview else ""
            lines.append(f"{pad}<{q} opaque=\"{len(el.opaque)}\">{head}{more}</{q}>")
        else:
            lines.append(f"{pad}<{q}/>")
    return "\n".join(lines)
