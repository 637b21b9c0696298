"""WBXML 1.3 as Exchange ActiveSync uses it (MS-ASWBXML): bytes <-> Element.

``decode(data, limits)`` turns a request body into an ``Element`` tree;
``encode(element)`` turns a tree into a response body.  The tree is the
whole model: an element is a (code page, tag name) pair with either children,
or text (inline strings), or opaque bytes, or nothing.  ActiveSync uses no
attributes, no mixed content and no processing instructions.

What is accepted (WAP-192-WBXML 1.3, restricted as MS-ASWBXML uses it):

* header: version 0x03; a public id (mb_u_int32; 0x01 "unknown" is what
  clients send, 0 followed by a string-table index is accepted too); charset
  106 (UTF-8) only; a string table of any length within the limits (the
  STR_T references of a document copy at most ``max_string`` bytes in all);
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
(no recursion); they live in mailaccess/_speedups/wbxml_py.py (the source of
truth) and its compiled twin wbxml_c.pyx, loaded with ``_speedups.load``;
this module keeps the header, the tables, the classes and the public API.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mailaccess import _speedups

from .codepages import NAMESPACES, PAGE_OF, TAGS, TOKENS

# the hot loops (decode_body, encode_tree): compiled when built, else the
# pure twin (mailaccess/_speedups/wbxml_py.py, the source of truth)
_impl = _speedups.load("wbxml")

# the tables in the form the loops index: page -> 64 names by token (None:
# no such tag), page -> {name: token}; pages are 0..len-1
assert sorted(TAGS) == list(range(len(TAGS)))
_TAG_ROWS = tuple(tuple(TAGS[p].get(t) for t in range(64)) for p in range(len(TAGS)))
_TOKEN_MAPS = tuple(TOKENS[p] for p in range(len(TOKENS)))

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
    # the common case by one dict lookup (a Sync response builds ~15 a message)
    try:
        page, tag = _QNAMES[qname]
    except (KeyError, TypeError):
        pass
    else:
        return Element(page, tag, list(children), text, opaque)
    ns, sep, tag = qname.partition(":")
    if not sep or ns not in PAGE_OF:
        raise WbxmlError("unknown-page", f"no code page named in {qname!r}")
    page = PAGE_OF[ns]
    if tag not in TOKENS[page]:
        raise WbxmlError("unknown-tag", f"{qname!r}")
    return Element(page, tag, list(children), text, opaque)


#: "Namespace:Tag" -> (page, tag) for every tag of every page
_QNAMES: dict[str, tuple[int, str]] = {f"{ns}:{tag}": (p, tag) for p, ns in NAMESPACES.items()
                                       for tag in TOKENS[p]}


# ---- multi-byte integers -------------------------------------------------------------------

def mb_u_int32(n: int) -> bytes:
    """Encode N (0 <= N < 2**32) as a WBXML mb_u_int32."""
    return _impl.mb_u_int32(n, WbxmlError)


def _read_mb(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the mb_u_int32 at POS: five bytes at most."""
    return _impl.read_mb(data, pos, end, WbxmlError)


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
    return _impl.decode_body(data, pos, table, _TAG_ROWS, Element, WbxmlError,
                             limits.max_depth, limits.max_elements, limits.max_string,
                             limits.max_opaque)


# ---- encoding ----------------------------------------------------------------------------

def encode(root: Element, max_depth: int = 256) -> bytes:
    """The WBXML document for the tree ROOT (header, body); WbxmlError if the
    tree holds an unknown tag, mixed content or a NUL in a string."""
    return _impl.encode_tree(root, HEADER, _TOKEN_MAPS, Element, WbxmlError, max_depth)


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
