# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The WBXML codec's hot loops, compiled twin of ``wbxml_py``.

Same functions, same results (the pure-Python module is the source of truth
and documents the contract, the argument conventions included); tests run
both on hypothesis input and require the same tree or the same error
(reason, detail, offset).  No negative indexing anywhere (wraparound is off).
Decoding builds wbxml.Element (a slots class with exactly page, tag,
children, text, opaque) field by field, without its Python-level __init__:
that call was half of the decode time of a 512-item Sync response.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.list cimport PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcpy

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL


cdef enum:
    SWITCH_PAGE = 0x00
    END = 0x01
    ENTITY = 0x02
    STR_I = 0x03
    LITERAL = 0x04
    STR_T = 0x83
    OPAQUE = 0xC3
    TAG_CONTENT = 0x40
    TAG_ATTRIBUTES = 0x80
    TOKEN_MASK = 0x3F


cdef Py_ssize_t _mb(const unsigned char *p, Py_ssize_t pos, Py_ssize_t end,
                    unsigned long long *value, object error) except -1:
    """Read the mb_u_int32 at POS into VALUE; the next position."""
    cdef unsigned long long v = 0
    cdef Py_ssize_t start = pos
    cdef unsigned char b
    while True:
        if pos >= end:
            raise error("truncated", "in a multi-byte integer", start)
        if pos - start >= 5:
            raise error("mb-u-int32-too-long", "", start)
        b = p[pos]
        pos += 1
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if v > 0xFFFFFFFF:
        raise error("mb-u-int32-range", str(v), start)
    value[0] = v
    return pos


def read_mb(bytes data, Py_ssize_t pos, Py_ssize_t end, error):
    """(value, next position) of the mb_u_int32 at POS: five bytes at most."""
    cdef unsigned long long v = 0
    if end > len(data):
        end = len(data)
    if pos < 0:
        raise error("truncated", "in a multi-byte integer", pos)
    pos = _mb(<const unsigned char *>PyBytes_AS_STRING(data), pos, end, &v, error)
    return v, pos


def mb_u_int32(n, error):
    """N (0 <= N < 2**32) as a WBXML mb_u_int32."""
    cdef unsigned char out[5]
    cdef int i = 4
    cdef unsigned long long v
    if n < 0 or n > 0xFFFFFFFF:
        raise error("mb-u-int32-range", str(n), -1)
    v = n
    out[4] = v & 0x7F
    v >>= 7
    while v:
        i -= 1
        out[i] = (v & 0x7F) | 0x80
        v >>= 7
    return PyBytes_FromStringAndSize(<char *>out + i, 5 - i)


cdef str _utf8(const unsigned char *s, Py_ssize_t n, Py_ssize_t offset, object error):
    try:
        return PyUnicode_DecodeUTF8(<const char *>s, n, NULL)
    except UnicodeDecodeError as e:
        raise error("bad-utf8", str(e.reason), offset) from None


cdef inline int _utf8_len(unsigned long long cp):
    if cp < 0x80:
        return 1
    if cp < 0x800:
        return 2
    if cp < 0x10000:
        return 3
    return 4


def decode_body(bytes data, Py_ssize_t pos, bytes table, tuple tag_rows, element, error,
                Py_ssize_t max_depth, Py_ssize_t max_elements, Py_ssize_t max_string,
                Py_ssize_t max_opaque):
    """The root Element of the body DATA[POS:] (after the header and string
    TABLE), within the limits; ERROR otherwise."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef const unsigned char *tp = <const unsigned char *>PyBytes_AS_STRING(table)
    cdef Py_ssize_t end = len(data)
    cdef Py_ssize_t table_len = len(table)
    cdef Py_ssize_t npages = len(tag_rows)
    cdef Py_ssize_t depth = 0, cap = 0, elements = 0, n, at, i
    cdef Py_ssize_t from_table = 0    # text bytes drawn from the string table, whole document
    cdef Py_ssize_t *text_len = NULL
    cdef Py_ssize_t *blob_len = NULL
    cdef Py_ssize_t *grown
    cdef unsigned long long v
    cdef int page = 0, token
    cdef unsigned char b
    cdef const unsigned char *hit
    cdef tuple row
    cdef list stack = []
    cdef list pieces = []          # per open element: None, a str, or a list of str
    cdef list blobs = []           # per open element: None, a bytes, or a list of bytes
    cdef list kids = None          # the children of the innermost open element
    cdef object root = None, el, name, parts, chunks, s, chunk
    for i in range(npages):
        if len(<tuple>tag_rows[i]) < 64:
            raise ValueError("tag_rows: 64 names per page")
    if npages == 0:
        raise ValueError("tag_rows: no page")
    row = <tuple>tag_rows[0]
    # a slots class with exactly these fields (wbxml.Element) is built field by field
    cdef bint fast_new = tuple(getattr(element, "__slots__", ())) == (
        "page", "tag", "children", "text", "opaque")
    new = element.__new__
    try:
        while pos < end:
            b = p[pos]
            if b == SWITCH_PAGE:
                if pos + 1 >= end:
                    raise error("truncated", "SWITCH_PAGE", pos)
                page = p[pos + 1]
                if page >= npages:
                    raise error("unknown-page", str(page), pos)
                row = <tuple>tag_rows[page]
                pos += 2
                continue
            if b == END:
                if depth == 0:
                    raise error("unbalanced-end", "", pos)
                depth -= 1
                el = stack.pop()
                parts = pieces.pop()
                chunks = blobs.pop()
                if parts is not None:
                    el.text = parts if type(parts) is str else "".join(parts)
                elif chunks is not None:
                    el.opaque = chunks if type(chunks) is bytes else b"".join(chunks)
                kids = stack[depth - 1].children if depth else None
                pos += 1
                continue
            if b == STR_I or b == STR_T or b == ENTITY:
                if depth == 0:
                    raise error("text-outside-root", "", pos)
                if PyList_GET_SIZE(kids) or blobs[depth - 1] is not None:
                    raise error("mixed-content", stack[depth - 1].qname, pos)
                at = pos
                if b == STR_I:
                    if pos + 1 >= end:
                        raise error("truncated", "inline string", pos)
                    hit = <const unsigned char *>memchr(p + pos + 1, 0, <size_t>(end - pos - 1))
                    if hit == NULL:
                        raise error("truncated", "inline string", pos)
                    n = (hit - p) - pos - 1
                    if text_len[depth - 1] + n > max_string:
                        raise error("string-too-long", stack[depth - 1].qname, pos)
                    s = _utf8(p + pos + 1, n, pos, error)
                    pos = (hit - p) + 1
                elif b == ENTITY:
                    pos = _mb(p, pos + 1, end, &v, error)
                    if v == 0 or v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                        raise error("bad-entity", str(v), at)
                    s = chr(<int>v)
                    n = _utf8_len(v)
                    if text_len[depth - 1] + n > max_string:
                        raise error("string-too-long", stack[depth - 1].qname, at)
                else:
                    pos = _mb(p, pos + 1, end, &v, error)
                    hit = NULL
                    if <long long>v < table_len:
                        hit = <const unsigned char *>memchr(tp + v, 0, <size_t>(table_len - <Py_ssize_t>v))
                    if hit == NULL:
                        raise error("bad-string-table-reference", str(v), at)
                    n = (hit - tp) - <Py_ssize_t>v
                    if text_len[depth - 1] + n > max_string:
                        raise error("string-too-long", stack[depth - 1].qname, at)
                    # each reference copies its string: all of them together
                    # draw at most MAX_STRING bytes (a 1 MB string referenced
                    # by 1,000 elements was 1 GB from a 1 MB request)
                    from_table += n
                    if from_table > max_string:
                        raise error("string-table-overused", str(from_table), at)
                    s = _utf8(tp + v, n, at, error)
                parts = pieces[depth - 1]
                if parts is None:
                    pieces[depth - 1] = s
                elif type(parts) is str:
                    pieces[depth - 1] = [parts, s]
                else:
                    (<list>parts).append(s)
                text_len[depth - 1] += n
                continue
            if b == OPAQUE:
                if depth == 0:
                    raise error("text-outside-root", "opaque", pos)
                if PyList_GET_SIZE(kids) or pieces[depth - 1] is not None:
                    raise error("mixed-content", stack[depth - 1].qname, pos)
                at = pos
                pos = _mb(p, pos + 1, end, &v, error)
                if <long long>blob_len[depth - 1] + <long long>v > max_opaque:
                    raise error("opaque-too-long", stack[depth - 1].qname, at)
                if <long long>v > end - pos:
                    raise error("truncated", "opaque data", at)
                n = <Py_ssize_t>v
                chunk = PyBytes_FromStringAndSize(<const char *>p + pos, n)
                chunks = blobs[depth - 1]
                if chunks is None:
                    blobs[depth - 1] = chunk
                elif type(chunks) is bytes:
                    blobs[depth - 1] = [chunks, chunk]
                else:
                    (<list>chunks).append(chunk)
                blob_len[depth - 1] += n
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
            if fast_new:
                # what Element(page, name) does, without running its
                # Python-level __init__ (most of the per-element cost)
                el = new(element)
                el.page = page
                el.tag = name
                el.children = []
                el.text = None
                el.opaque = None
            else:
                el = element(page, name)
            if depth:
                if pieces[depth - 1] is not None or blobs[depth - 1] is not None:
                    raise error("mixed-content", stack[depth - 1].qname, pos)
                kids.append(el)
            elif root is None:
                root = el
            else:
                raise error("second-root", el.qname, pos)
            if b & TAG_CONTENT:
                if depth >= max_depth:
                    raise error("too-deep", str(max_depth), pos)
                if depth == cap:
                    cap = 16 if cap == 0 else cap * 2
                    grown = <Py_ssize_t *>PyMem_Realloc(text_len, cap * sizeof(Py_ssize_t))
                    if grown == NULL:
                        raise MemoryError()
                    text_len = grown
                    grown = <Py_ssize_t *>PyMem_Realloc(blob_len, cap * sizeof(Py_ssize_t))
                    if grown == NULL:
                        raise MemoryError()
                    blob_len = grown
                stack.append(el)
                pieces.append(None)
                blobs.append(None)
                text_len[depth] = 0
                blob_len[depth] = 0
                depth += 1
                kids = el.children
            pos += 1
        if depth:
            raise error("truncated", f"{depth} element(s) not closed", end)
        if root is None:
            raise error("no-root", "", end)
        return root
    finally:
        PyMem_Free(text_len)
        PyMem_Free(blob_len)


# ---- encoding ---------------------------------------------------------------------------------

cdef struct Buf:
    char *data
    Py_ssize_t len
    Py_ssize_t cap


cdef int _grow(Buf *o, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = o.cap
    cdef char *grown
    while cap < o.len + need:
        cap *= 2
    grown = <char *>PyMem_Realloc(o.data, cap)
    if grown == NULL:
        raise MemoryError()
    o.data = grown
    o.cap = cap
    return 0


cdef inline int _put(Buf *o, const char *s, Py_ssize_t n) except -1:
    if o.len + n > o.cap:
        _grow(o, n)
    memcpy(o.data + o.len, s, n)
    o.len += n
    return 0


cdef inline int _byte(Buf *o, unsigned char c) except -1:
    if o.len + 1 > o.cap:
        _grow(o, 1)
    o.data[o.len] = <char>c
    o.len += 1
    return 0


cdef int _check_element(el, element, tuple token_maps, error) except -1:
    """EL's token on its page, after checking it is an encodable element."""
    if not isinstance(el, element):
        raise error("not-an-element", type(el).__name__, -1)
    page = el.page
    if not isinstance(page, int) or not 0 <= page < len(token_maps):
        raise error("unknown-page", str(page), -1)
    token = (<dict>token_maps[page]).get(el.tag)
    if token is None:
        raise error("unknown-tag", f"{el.namespace}:{el.tag}", -1)
    text = el.text
    opaque = el.opaque
    if text is not None and not isinstance(text, str):
        raise error("bad-text", el.qname, -1)
    if opaque is not None and not isinstance(opaque, (bytes, bytearray)):
        raise error("bad-opaque", el.qname, -1)
    children = el.children
    if not isinstance(children, list):
        raise error("bad-children", el.qname, -1)
    if (1 if children else 0) + (text is not None) + (opaque is not None) > 1:
        raise error("mixed-content", el.qname, -1)
    return <int>token


def encode_tree(root, bytes header, tuple token_maps, element, error, Py_ssize_t max_depth):
    """HEADER followed by the body for the tree ROOT; ERROR if the tree holds
    an unknown tag, mixed content, a NUL in a string or is deeper than
    MAX_DEPTH."""
    cdef Buf o
    cdef Py_ssize_t depth = 0, cap = 0, n
    cdef Py_ssize_t *idx = NULL
    cdef Py_ssize_t *grown
    cdef list kid_lists = []       # the children of each open element
    cdef list kids
    cdef int page = 0, token, el_page
    cdef unsigned long long v
    cdef unsigned char mb[5]
    cdef int i
    cdef const char *s
    cdef object el = root, text, opaque, children
    for t in token_maps:
        if type(t) is not dict:
            raise TypeError("token_maps: a dict per page")
    o.len = 0
    o.cap = 4096
    o.data = <char *>PyMem_Malloc(o.cap)
    if o.data == NULL:
        raise MemoryError()
    try:
        _put(&o, PyBytes_AS_STRING(header), len(header))
        while True:
            if el is not None:
                token = _check_element(el, element, token_maps, error)
                el_page = el.page
                if el_page != page:
                    page = el_page
                    _byte(&o, SWITCH_PAGE)
                    _byte(&o, <unsigned char>page)
                children = el.children
                text = el.text
                opaque = el.opaque
                if children or text is not None or opaque is not None:
                    _byte(&o, token | TAG_CONTENT)
                    if text is not None:
                        try:
                            s = PyUnicode_AsUTF8AndSize(text, &n)
                        except UnicodeEncodeError:
                            raise error("bad-text", el.qname, -1) from None
                        if n and memchr(s, 0, <size_t>n) != NULL:
                            raise error("nul-in-string", el.qname, -1)
                        _byte(&o, STR_I)
                        _put(&o, s, n)
                        _byte(&o, 0)
                    elif opaque is not None:
                        n = len(opaque)
                        if n > 0xFFFFFFFF:
                            raise error("mb-u-int32-range", str(n), -1)
                        _byte(&o, OPAQUE)
                        v = <unsigned long long>n
                        i = 4
                        mb[4] = v & 0x7F
                        v >>= 7
                        while v:
                            i -= 1
                            mb[i] = (v & 0x7F) | 0x80
                            v >>= 7
                        _put(&o, <char *>mb + i, 5 - i)
                        if isinstance(opaque, bytes):
                            _put(&o, PyBytes_AS_STRING(opaque), n)
                        else:
                            _put(&o, PyByteArray_AS_STRING(opaque), n)
                    if children:
                        if depth >= max_depth:
                            raise error("too-deep", str(max_depth), -1)
                        if depth == cap:
                            cap = 16 if cap == 0 else cap * 2
                            grown = <Py_ssize_t *>PyMem_Realloc(idx, cap * sizeof(Py_ssize_t))
                            if grown == NULL:
                                raise MemoryError()
                            idx = grown
                        kid_lists.append(children)
                        idx[depth] = 0
                        depth += 1
                    else:
                        _byte(&o, END)
                else:
                    _byte(&o, token)
                el = None
            if depth == 0:
                break
            kids = <list>kid_lists[depth - 1]
            if idx[depth - 1] < PyList_GET_SIZE(kids):
                el = kids[idx[depth - 1]]
                idx[depth - 1] += 1
            else:
                depth -= 1
                kid_lists.pop()
                _byte(&o, END)
        return PyBytes_FromStringAndSize(o.data, o.len)
    finally:
        PyMem_Free(o.data)
        PyMem_Free(idx)
