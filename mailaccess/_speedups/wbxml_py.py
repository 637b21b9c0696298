"""The WBXML codec's two hot loops (pure Python): the body decoder and the
tree encoder behind ``mailaccess.proto.eas.wbxml.decode`` / ``encode``.

This is the source of truth; ``wbxml_c.pyx`` is its compiled twin and must
give identical results (the same tree, or a WbxmlError with the same reason,
detail and offset) for every input: tests/test_eas_wbxml_twins.py checks that
under hypothesis.  wbxml.py owns the format's description, the header, the
code-page tables and the classes; this module is a leaf and gets them as
arguments:

* ``tag_rows``: page number -> a 64-tuple, token -> tag name or None;
* ``token_maps``: page number -> {tag name: token};
* ``element``: the Element class (called as ``element(page, tag)``; its
  ``children`` list, ``text``, ``opaque`` and ``qname`` are used; the
  compiled twin builds a slots class with exactly the fields page, tag,
  children, text, opaque field by field instead, without its __init__);
* ``error``: the WbxmlError class (called as ``error(reason, detail, offset)``).

A profile of a 512-item Sync response (bench/bench_wbxml.py) put 60-75 % of
the time in these two loops' own bytecode, which is what compiling removes.
"""
from __future__ import annotations

SWITCH_PAGE = 0x00
END = 0x01
ENTITY = 0x02
STR_I = 0x03
LITERAL = 0x04
OPAQUE = 0xC3
TAG_CONTENT = 0x40
TAG_ATTRIBUTES = 0x80
TOKEN_MASK = 0x3F


def read_mb(data, pos: int, end: int, error) -> tuple[int, int]:
    """(value, next position) of the mb_u_int32 at POS: five bytes at most."""
    value = 0
    start = pos
    while True:
        if pos >= end:
            raise error("truncated", "in a multi-byte integer", start)
        if pos - start >= 5:
            raise error("mb-u-int32-too-long", "", start)
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if value > 0xFFFFFFFF:
        raise error("mb-u-int32-range", str(value), start)
    return value, pos


def mb_u_int32(n: int, error) -> bytes:
    """N (0 <= N < 2**32) as a WBXML mb_u_int32."""
    if n < 0 or n > 0xFFFFFFFF:
        raise error("mb-u-int32-range", str(n), -1)
    out = bytearray((n & 0x7F,))
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.reverse()
    return bytes(out)


def _utf8(raw: bytes, offset: int, error) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error("bad-utf8", str(e.reason), offset) from None


def decode_body(data: bytes, pos: int, table: bytes, tag_rows, element, error,
                max_depth: int, max_elements: int, max_string: int, max_opaque: int):
    """The root Element of the body DATA[POS:] (after the header and string
    TABLE), within the limits; ERROR otherwise."""
    end = len(data)
    table_len = len(table)
    npages = len(tag_rows)
    page = 0
    root = None
    stack: list = []
    # per open element: its text (None, one str, or a list of pieces:
    # STR_I/STR_T/ENTITY) and opaque data (None, one bytes, or a list of
    # chunks), joined once at its END (never by repeated concatenation), and
    # the byte counts they add up to
    pieces: list = []
    text_len: list[int] = []
    blobs: list = []
    blob_len: list[int] = []
    elements = 0
    from_table = 0      # text bytes drawn from the string table, whole document
    row = tag_rows[0]

    while pos < end:
        b = data[pos]
        if b == SWITCH_PAGE:
            if pos + 1 >= end:
                raise error("truncated", "SWITCH_PAGE", pos)
            page = data[pos + 1]
            if page >= npages:
                raise error("unknown-page", str(page), pos)
            row = tag_rows[page]
            pos += 2
            continue
        if b == END:
            if not stack:
                raise error("unbalanced-end", "", pos)
            el = stack.pop()
            parts = pieces.pop()
            text_len.pop()
            chunks = blobs.pop()
            blob_len.pop()
            if parts is not None:
                el.text = parts if type(parts) is str else "".join(parts)
            elif chunks is not None:
                el.opaque = chunks if type(chunks) is bytes else b"".join(chunks)
            pos += 1
            continue
        if b == STR_I or b == 0x83 or b == ENTITY:       # 0x83: STR_T
            if not stack:
                raise error("text-outside-root", "", pos)
            el = stack[-1]
            if el.children or blobs[-1] is not None:
                raise error("mixed-content", el.qname, pos)
            at = pos
            if b == STR_I:
                nul = data.find(b"\x00", pos + 1)
                if nul < 0:
                    raise error("truncated", "inline string", pos)
                n = nul - pos - 1
                if text_len[-1] + n > max_string:
                    raise error("string-too-long", el.qname, pos)
                s = _utf8(data[pos + 1:nul], pos, error)
                pos = nul + 1
            elif b == ENTITY:
                cp, pos = read_mb(data, pos + 1, end, error)
                if cp == 0 or cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    raise error("bad-entity", str(cp), at)
                s = chr(cp)
                n = len(s.encode("utf-8"))
                if text_len[-1] + n > max_string:
                    raise error("string-too-long", el.qname, at)
            else:
                offset, pos = read_mb(data, pos + 1, end, error)
                nul = table.find(b"\x00", offset) if offset < table_len else -1
                if nul < 0:
                    raise error("bad-string-table-reference", str(offset), at)
                n = nul - offset
                if text_len[-1] + n > max_string:
                    raise error("string-too-long", el.qname, at)
                # each reference copies its string: all of them together
                # draw at most MAX_STRING bytes (a 1 MB string referenced by
                # 1,000 elements was 1 GB from a 1 MB request)
                from_table += n
                if from_table > max_string:
                    raise error("string-table-overused", str(from_table), at)
                s = _utf8(table[offset:nul], at, error)
            parts = pieces[-1]
            if parts is None:
                pieces[-1] = s
            elif type(parts) is str:
                pieces[-1] = [parts, s]
            else:
                parts.append(s)
            text_len[-1] += n
            continue
        if b == OPAQUE:
            if not stack:
                raise error("text-outside-root", "opaque", pos)
            el = stack[-1]
            if el.children or pieces[-1] is not None:
                raise error("mixed-content", el.qname, pos)
            at = pos
            n, pos = read_mb(data, pos + 1, end, error)
            if blob_len[-1] + n > max_opaque:
                raise error("opaque-too-long", el.qname, at)
            if n > end - pos:
                raise error("truncated", "opaque data", at)
            chunk = data[pos:pos + n]
            chunks = blobs[-1]
            if chunks is None:
                blobs[-1] = chunk
            elif type(chunks) is bytes:
                blobs[-1] = [chunks, chunk]
            else:
                chunks.append(chunk)
            blob_len[-1] += n
            pos += n
            continue
        token = b & TOKEN_MASK
        if token < 0x05:
            # the remaining global tokens: LITERAL*, EXT*, PI
            if token == LITERAL:
                raise error("literal-tag", f"0x{b:02X}", pos)
            raise error("unsupported-token", f"0x{b:02X}", pos)
        if b & TAG_ATTRIBUTES:
            raise error("attributes", f"0x{b:02X}", pos)
        name = row[token]
        if name is None:
            raise error("unknown-tag", f"page {page} token 0x{token:02X}", pos)
        elements += 1
        if elements > max_elements:
            raise error("too-many-elements", str(max_elements), pos)
        el = element(page, name)
        if stack:
            if pieces[-1] is not None or blobs[-1] is not None:
                raise error("mixed-content", stack[-1].qname, pos)
            stack[-1].children.append(el)
        elif root is None:
            root = el
        else:
            raise error("second-root", el.qname, pos)
        if b & TAG_CONTENT:
            if len(stack) >= max_depth:
                raise error("too-deep", str(max_depth), pos)
            stack.append(el)
            pieces.append(None)
            text_len.append(0)
            blobs.append(None)
            blob_len.append(0)
        pos += 1
    if stack:
        raise error("truncated", f"{len(stack)} element(s) not closed", end)
    if root is None:
        raise error("no-root", "", end)
    return root


def _check_element(el, element, token_maps, error):
    """EL's token on its page, after checking it is an encodable element."""
    if not isinstance(el, element):
        raise error("not-an-element", type(el).__name__, -1)
    page = el.page
    if not isinstance(page, int) or not 0 <= page < len(token_maps):
        raise error("unknown-page", str(page), -1)
    token = token_maps[page].get(el.tag)
    if token is None:
        raise error("unknown-tag", f"{el.namespace}:{el.tag}", -1)
    text = el.text
    opaque = el.opaque
    if text is not None and not isinstance(text, str):
        raise error("bad-text", el.qname, -1)
    if opaque is not None and not isinstance(opaque, (bytes, bytearray)):
        raise error("bad-opaque", el.qname, -1)
    if not isinstance(el.children, list):
        raise error("bad-children", el.qname, -1)
    kinds = (1 if el.children else 0) + (text is not None) + (opaque is not None)
    if kinds > 1:
        raise error("mixed-content", el.qname, -1)
    return token


def encode_tree(root, header: bytes, token_maps, element, error, max_depth: int) -> bytes:
    """HEADER followed by the body for the tree ROOT; ERROR if the tree holds
    an unknown tag, mixed content, a NUL in a string or is deeper than
    MAX_DEPTH."""
    out = bytearray(header)
    page = 0
    # (element, index of the next child to write); an entry is pushed when
    # its start tag is written and popped when its END is
    stack: list[list] = []
    el = root
    while True:
        if el is not None:
            token = _check_element(el, element, token_maps, error)
            if el.page != page:
                page = el.page
                out.append(SWITCH_PAGE)
                out.append(page)
            if el.children or el.text is not None or el.opaque is not None:
                out.append(token | TAG_CONTENT)
                if el.text is not None:
                    try:
                        raw = el.text.encode("utf-8")
                    except UnicodeEncodeError:
                        raise error("bad-text", el.qname, -1) from None
                    if b"\x00" in raw:
                        raise error("nul-in-string", el.qname, -1)
                    out.append(STR_I)
                    out += raw
                    out.append(0)
                elif el.opaque is not None:
                    out.append(OPAQUE)
                    out += mb_u_int32(len(el.opaque), error)
                    out += el.opaque
                if el.children:
                    if len(stack) >= max_depth:
                        raise error("too-deep", str(max_depth), -1)
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
            el = kids[top[1]]
            top[1] += 1
        else:
            stack.pop()
            out.append(END)
    return bytes(out)
