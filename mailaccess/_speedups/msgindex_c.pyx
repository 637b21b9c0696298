# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Message indexer hot paths, compiled twin of ``msgindex_py`` (the source of truth).

Same functions, same results (``tests/speedups/test_msgindex_*.py``); the
byte-level scanners here are C loops over ``const unsigned char *``: header
splitting, line counting (SSE2, ``csrc/msgindex_simd.h``), unfolding, base64,
quoted-printable (RFC 2045 6.7 lines over binascii.a2b_qp's escape rules,
bad escapes included, straight from the message buffer), the structured-header tokenizer and address parser,
RFC 2047 word scanning, Message-ID lists, IMAP string quoting.  Text work is
C too: search normalisation (casefold through a table filled from
``str.casefold``, white space collapsed in the same pass, all body texts into
one buffer), the preview, the HTML-to-text passes (the twin's three regexes,
matched by hand with re's IGNORECASE/\\b/\\s rules, text between tags moved
as blocks), charset decoding straight into the codec (one-byte charsets
through their table), plain "Day, D Mon YYYY HH:MM:SS zone" dates (anything
else goes to email.utils, as in the twin) and ASCII search-header lines
straight from the bytes.  The MIME walk itself is the twin's code, compiled
as cpdef functions, with its entity as a cdef class.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8, PyUnicode_DecodeCharmap
from libc.string cimport memchr, memcpy, memmove
from libc.stdint cimport uint64_t, int64_t

cdef extern from "msgindex_simd.h":  # csrc/, hand-written
    size_t mi_count_byte(const unsigned char* p, size_t n, unsigned char c) noexcept nogil

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_KIND(object)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index) noexcept
    str PyUnicode_FromKindAndData(int kind, const void* buffer, Py_ssize_t size)
    Py_UCS4* PyUnicode_AsUCS4Copy(object) except NULL
    ctypedef unsigned char Py_UCS1
    Py_ssize_t PyUnicode_FindChar(object, Py_UCS4, Py_ssize_t, Py_ssize_t, int) except -2
    Py_UCS4 Py_UNICODE_TOLOWER(Py_UCS4) noexcept
    bint Py_UNICODE_ISSPACE(Py_UCS4) noexcept
    bint Py_UNICODE_ISALNUM(Py_UCS4) noexcept
    ctypedef unsigned short Py_UCS2

from cpython.mem cimport PyMem_Malloc, PyMem_Free, PyMem_Realloc


ctypedef fused _uchar:  # the three str widths
    Py_UCS1
    Py_UCS2
    Py_UCS4

ctypedef fused _uchar_out:
    Py_UCS1
    Py_UCS2
    Py_UCS4


import binascii
import sys
import calendar
import codecs
import html
import re
from email.utils import parsedate_tz

from mailaccess.mime.parts import Part

_tuple_new = tuple.__new__  # what Part(...) calls, minus its Python frame

MAX_DEPTH = 20  # nesting of multiparts / message/rfc822 before a part is a leaf
MAX_PARTS = 2000  # parts per message; later multiparts become leaves
MAX_TEXT = 1 << 20  # decoded bytes per text part that feed search text
PREVIEW_LEN = 256

# ---------------------------------------------------------------- bytes level

cdef inline bytes _bslice(bytes b, Py_ssize_t i, Py_ssize_t j):
    """b[i:j] (same clamping), without building a slice object."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if i < 0:
        i = i + n if i + n > 0 else 0
    elif i > n:
        i = n
    if j < 0:
        j = j + n if j + n > 0 else 0
    elif j > n:
        j = n
    if j <= i:
        return b""
    if i == 0 and j == n:
        return b
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b) + i, j - i)


cdef inline Py_ssize_t _memfind(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end, int c) noexcept:
    cdef const void* hit
    if pos >= end:
        return -1
    hit = memchr(p + pos, c, <size_t>(end - pos))
    if hit == NULL:
        return -1
    return <const unsigned char*>hit - p


cpdef tuple split_header(bytes buf, Py_ssize_t start, Py_ssize_t end):
    """Split the header block at buf[start:end].

    Returns ``(fields, body_start)``; each field is ``(name, field_start,
    value_start, field_end)`` with field_end just past the field's last line
    break.  The header ends at a blank line (body_start after it), at a line
    that is not a header field (body_start at that line) or at ``end``.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef list fields = []
    cdef object name = None
    cdef Py_ssize_t fstart = 0, vstart = 0, pos, nl, line_end, content_end, colon, ne, k
    cdef unsigned char c
    cdef bint ok
    if end > n:
        end = n
    if start < 0:
        start = 0
    pos = start
    while pos < end:
        nl = _memfind(p, pos, end, 10)
        if nl < 0:
            line_end = content_end = end
        else:
            line_end = nl + 1
            content_end = nl
        if content_end > pos and p[content_end - 1] == 13:
            content_end -= 1
        if content_end == pos:
            if name is not None:
                fields.append((name, fstart, vstart, pos))
            return fields, line_end
        c = p[pos]
        if c == 32 or c == 9:
            if name is None:
                return fields, pos
            pos = line_end
            continue
        colon = _memfind(p, pos, content_end, 58)
        if colon < 0:
            break
        ne = colon
        while ne > pos and (p[ne - 1] == 32 or p[ne - 1] == 9):
            ne -= 1
        if ne == pos:
            break
        ok = True
        for k in range(pos, ne):
            if p[k] < 33 or p[k] > 126:
                ok = False
                break
        if not ok:
            break
        if name is not None:
            fields.append((name, fstart, vstart, pos))
        name = PyUnicode_DecodeLatin1(<const char*>p + pos, ne - pos, NULL)
        fstart = pos
        vstart = colon + 1
        pos = line_end
    if name is not None:
        fields.append((name, fstart, vstart, pos))
    return fields, pos


cpdef tuple find_parts(bytes buf, Py_ssize_t start, Py_ssize_t end, bytes boundary):
    """Body spans of the parts of the multipart body buf[start:end].

    Returns ``(spans, closed)``; the line break before a delimiter belongs to
    the delimiter.  Without a close delimiter the last part runs to ``end``.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef bytes delim = b"--" + boundary
    cdef Py_ssize_t dlen = len(delim)
    cdef list spans = []
    cdef Py_ssize_t part_start = -1, pos, i, j, k, nl, line_end, pe
    cdef bint close, junk
    cdef unsigned char c
    if end > n:
        end = n
    if start < 0:
        start = 0
    pos = start
    while True:
        i = buf.find(delim, pos, end)
        if i < 0:
            break
        if i != start and p[i - 1] != 10:
            pos = i + 1
            continue
        j = i + dlen
        close = j + 1 < end and p[j] == 45 and p[j + 1] == 45
        if close:
            j += 2
        nl = _memfind(p, j, end, 10)
        line_end = end if nl < 0 else nl
        junk = False
        for k in range(j, line_end):
            c = p[k]
            if c != 32 and c != 9 and c != 13:
                junk = True
                break
        if junk:
            pos = i + 1
            continue
        if part_start >= 0:
            pe = i
            if pe > part_start and p[pe - 1] == 10:
                pe -= 1
                if pe > part_start and p[pe - 1] == 13:
                    pe -= 1
            spans.append((part_start, pe))
        if close:
            return spans, True
        part_start = end if nl < 0 else nl + 1
        pos = part_start
    if part_start >= 0:
        spans.append((part_start, end))
    return spans, False


cpdef Py_ssize_t count_lines(bytes buf, Py_ssize_t start, Py_ssize_t end):
    """Number of lines in buf[start:end]: the line ends it holds (twin of
    msgindex_py.count_lines)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf), count = 0, pos
    if end > n:
        end = n
    if start < 0:
        start = 0
    if end <= start:
        return 0
    count = <Py_ssize_t>mi_count_byte(p + start, <size_t>(end - start), 10)  # SSE2 when there
    return count


_NAME_CHARS = bytes(c for c in range(33, 127) if c != 58)
_B64_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NONALPHA = bytes(c for c in range(256) if c not in _B64_ALPHA)


cpdef bytes unfold(bytes value):
    """A header value with its line breaks removed and outer blanks stripped."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t lo = 0, hi = PyBytes_GET_SIZE(value), k, w = 0
    cdef unsigned char c
    cdef bytes out
    cdef unsigned char* q
    while lo < hi and (p[lo] == 32 or p[lo] == 9 or p[lo] == 13 or p[lo] == 10):
        lo += 1
    while hi > lo and (p[hi - 1] == 32 or p[hi - 1] == 9 or p[hi - 1] == 13 or p[hi - 1] == 10):
        hi -= 1
    for k in range(lo, hi):
        c = p[k]
        if c == 13 or c == 10:
            break
    else:
        return PyBytes_FromStringAndSize(<const char*>p + lo, hi - lo)
    out = PyBytes_FromStringAndSize(NULL, hi - lo)
    q = <unsigned char*>PyBytes_AS_STRING(out)
    for k in range(lo, hi):
        c = p[k]
        if c != 13 and c != 10:
            q[w] = c
            w += 1
    return out[:w]


cdef signed char _B64[256]
for _c in range(256):
    _B64[_c] = -1
for _i, _c in enumerate(_B64_ALPHA):
    _B64[_c] = _i


cdef inline Py_ssize_t _b64_count(const unsigned char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t k, m = 0
    for k in range(n):
        m += _B64[p[k]] >= 0
    return m


cpdef bytes decode_b64(bytes data):
    """Lenient base64: ignore non-alphabet bytes and '=', tolerate bad padding."""
    return _b64_decode(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef bytes _b64_decode(const unsigned char* p, Py_ssize_t n):
    cdef Py_ssize_t m, k, w = 0
    cdef unsigned int acc = 0, cnt = 0
    cdef signed char v
    cdef bytes out
    cdef unsigned char* q
    m = _b64_count(p, n)
    out = PyBytes_FromStringAndSize(NULL, m // 4 * 3 + (0, 0, 1, 2)[m & 3])
    q = <unsigned char*>PyBytes_AS_STRING(out)
    cdef signed char a, b, c, d
    k = 0
    while k < n:
        if cnt == 0 and k + 4 <= n:  # a whole quantum of alphabet bytes
            a = _B64[p[k]]
            b = _B64[p[k + 1]]
            c = _B64[p[k + 2]]
            d = _B64[p[k + 3]]
            if (a | b | c | d) >= 0:
                acc = (<unsigned int>a << 18) | (<unsigned int>b << 12) | (<unsigned int>c << 6) | <unsigned int>d
                q[w] = (acc >> 16) & 255
                q[w + 1] = (acc >> 8) & 255
                q[w + 2] = acc & 255
                w += 3
                k += 4
                acc = 0
                continue
        v = _B64[p[k]]
        k += 1
        if v < 0:
            continue
        acc = (acc << 6) | <unsigned int>v
        cnt += 1
        if cnt == 4:
            q[w] = (acc >> 16) & 255
            q[w + 1] = (acc >> 8) & 255
            q[w + 2] = acc & 255
            w += 3
            cnt = 0
            acc = 0
    if cnt == 2:
        q[w] = (acc >> 4) & 255
    elif cnt == 3:
        q[w] = (acc >> 10) & 255
        q[w + 1] = (acc >> 2) & 255
    return out


cpdef Py_ssize_t b64_size(bytes data):
    """len(decode_b64(data)) without decoding."""
    cdef Py_ssize_t m = _b64_count(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    return m // 4 * 3 + (0, 0, 1, 2)[m & 3]


cdef unsigned char _HEXVAL[256]  # 0xFF: not a hex digit
for _c in range(256):
    _HEXVAL[_c] = int(chr(_c), 16) if chr(_c) in "0123456789abcdefABCDEF" else 0xFF


cdef Py_ssize_t _qp_into(const unsigned char* p, Py_ssize_t n, unsigned char* out, bint header) noexcept:
    """binascii.a2b_qp(p[:n], header) into out (room for n bytes): its length.

    Its rules, bad input included: "=" + LF is a soft break, "=" + CR skips
    to the next LF, "==" is "=", "=" + two hex digits a byte, any other "="
    stays as is (and the bytes after it are read as plain bytes), a final "="
    is dropped; with header, "_" is a space."""
    cdef Py_ssize_t i = 0, w = 0, e
    cdef unsigned char c, hi, lo
    while i < n:
        if not header:  # copy the run up to the next "=" in one go
            e = _memfind(p, i, n, 61)
            if e < 0:
                e = n
            if e > i:
                memcpy(out + w, p + i, e - i)
                w += e - i
                i = e
                if i >= n:
                    break
        c = p[i]
        i += 1
        if c != 61:
            out[w] = 32 if (header and c == 95) else c
            w += 1
            continue
        if i >= n:
            break
        c = p[i]
        if c == 10 or c == 13:
            if c == 13:
                while i < n and p[i] != 10:
                    i += 1
            if i < n:
                i += 1
            continue
        if c == 61:
            out[w] = 61
            w += 1
            i += 1
            continue
        if i + 1 < n:
            hi = _HEXVAL[c]
            lo = _HEXVAL[p[i + 1]]
            if hi != 0xFF and lo != 0xFF:
                out[w] = (hi << 4) | lo
                w += 1
                i += 2
                continue
        out[w] = 61
        w += 1
    return w


cdef Py_ssize_t _qp_body_into(const unsigned char* p, Py_ssize_t n, unsigned char* out) noexcept:
    """The twin's decode_qp (RFC 2045 6.7) into out (room for n bytes): its length.

    Line by line (a line ends at LF, a CR before it is part of the line
    break): trailing spaces and tabs are dropped (rule 3), a line then
    ending in "=" is a soft line break (rule 5: line break and "=" go), the
    rest is decoded by binascii.a2b_qp's rules (_qp_into) and a hard line
    break is kept as written."""
    cdef Py_ssize_t i = 0, w = 0, lf, tstart, term, end
    while i < n:
        lf = _memfind(p, i, n, 10)
        if lf < 0:
            tstart = term = n
        else:
            tstart = lf
            term = lf + 1
            if tstart > i and p[tstart - 1] == 13:
                tstart -= 1
        end = tstart
        while end > i and (p[end - 1] == 32 or p[end - 1] == 9):
            end -= 1
        if end > i and p[end - 1] == 61:
            w += _qp_into(p + i, end - 1 - i, out + w, False)
        else:
            w += _qp_into(p + i, end - i, out + w, False)
            if term > tstart:
                memcpy(out + w, p + tstart, term - tstart)
                w += term - tstart
        i = term
    return w


cdef bytes _qp_decode(const unsigned char* p, Py_ssize_t n, bint header):
    """The twin's decode_qp(p[:n]) (header: binascii.a2b_qp(p[:n], True))
    without slicing the input first."""
    cdef unsigned char* out = <unsigned char*>PyMem_Malloc(n + 1)
    if out == NULL:
        raise MemoryError
    try:
        if header:
            return PyBytes_FromStringAndSize(<char*>out, _qp_into(p, n, out, True))
        return PyBytes_FromStringAndSize(<char*>out, _qp_body_into(p, n, out))
    finally:
        PyMem_Free(out)


cdef Py_ssize_t _qp_size(const unsigned char* p, Py_ssize_t n) except -1:
    """len(decode_qp(p[:n]))."""
    cdef unsigned char* out = <unsigned char*>PyMem_Malloc(n + 1)
    if out == NULL:
        raise MemoryError
    try:
        return _qp_body_into(p, n, out)
    finally:
        PyMem_Free(out)


cpdef bytes decode_qp(bytes data):
    return _qp_decode(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), False)


def _decode_qp_header(bytes data):
    """binascii.a2b_qp(data, header=True) (tests compare the two)."""
    return _qp_decode(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), True)


cpdef bytes decode_cte(bytes data, str encoding):
    if encoding == "base64":
        return decode_b64(data)
    if encoding == "quoted-printable":
        return decode_qp(data)
    return data


_CHARSET_ALIASES = {
    "": "",
    "us-ascii": "",
    "ascii": "",
    "unknown-8bit": "",
    "x-unknown": "",
    "8bit": "",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    # IANA's name for Microsoft's Shift_JIS; Python knows it only from 3.13 on
    "windows-31j": "cp932",
    "windows_31j": "cp932",
    "cswindows31j": "cp932",
}
_CODECS: dict[str, str | None] = {}


cpdef object _codec_name(str charset):
    """Python codec for a MIME charset; "" means UTF-8-else-latin-1; None unknown."""
    name = _CODECS.get(charset, False)
    if name is not False:
        return name
    cs = charset.strip().strip("\"'").lower()
    star = cs.find("*")  # RFC 2231 language suffix
    if star >= 0:
        cs = cs[:star]
    cs = _CHARSET_ALIASES.get(cs, cs)
    if cs:
        try:
            info = codecs.lookup(cs)
            name = info.name if getattr(info, "_is_text_encoding", True) else None
        except (LookupError, ValueError):
            name = None
    else:
        name = ""
    if len(_CODECS) < 512:
        _CODECS[charset] = name
    return name


# decoders by MIME charset: the same codec _codec_name picks, called directly
# (the stdlib's one-byte charsets through their table, like their
# Codec.decode does) instead of through bytes.decode's registry look-up
cdef enum:
    _D_UNKNOWN, _D_HEADER, _D_UTF8, _D_ASCII, _D_LATIN1, _D_CHARMAP, _D_CALL

cdef class _Decoder:
    cdef int kind
    cdef object arg

cdef dict _DECODERS = {}


cdef _Decoder _decoder(str charset):
    cdef _Decoder d = _DECODERS.get(charset)
    if d is not None:
        return d
    d = _Decoder()
    name = _codec_name(charset)
    if name is None:
        d.kind = _D_UNKNOWN
    elif not name:
        d.kind = _D_HEADER
    elif name == "utf-8":
        d.kind = _D_UTF8
    elif name == "ascii":
        d.kind = _D_ASCII
    elif name == "iso8859-1":
        d.kind = _D_LATIN1
    else:
        d.kind = _D_CALL
        d.arg = codecs.lookup(name).decode
        owner = getattr(d.arg, "__self__", None)
        method = getattr(type(owner), "decode", None)
        code = getattr(method, "__code__", None)
        if code is not None and code.co_names == ("codecs", "charmap_decode", "decoding_table"):
            table = getattr(sys.modules.get(type(owner).__module__), "decoding_table", None)
            if type(table) is str:
                d.kind = _D_CHARMAP
                d.arg = table
    if len(_DECODERS) < 512:
        _DECODERS[charset] = d
    return d


cpdef object decode_charset(bytes data, str charset):
    """Bytes in a MIME charset as text (bad bytes replaced); None if unknown."""
    cdef _Decoder d = _decoder(charset)
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if d.kind == _D_UNKNOWN:
        return None
    if d.kind == _D_HEADER:
        return bytes_to_str(data)
    if n == 0:  # bytes.decode does not even ask the codec
        return ""
    try:
        if d.kind == _D_UTF8:
            return PyUnicode_DecodeUTF8(p, n, "replace")
        if d.kind == _D_ASCII:
            return PyUnicode_DecodeASCII(p, n, "replace")
        if d.kind == _D_LATIN1:
            return PyUnicode_DecodeLatin1(p, n, "replace")
        if d.kind == _D_CHARMAP:
            return PyUnicode_DecodeCharmap(p, n, d.arg, "replace")
        text = d.arg(data, "replace")[0]
        if type(text) is not str:
            return None
        return text
    except Exception:  # a codec that cannot even replace (idna & co)
        return None


cpdef str decode_text(bytes data, charset):
    """Body text: by charset, unknown charset as UTF-8 with replacement."""
    if charset:
        text = decode_charset(data, charset)
        if text is not None:
            return text
        return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), "replace")
    return bytes_to_str(data)


_EWORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


cpdef str decode_words(bytes value):
    """RFC 2047: a raw header value with its encoded words decoded.

    Adjacent encoded words (only white space between them) are joined, bytes
    of neighbours in the same charset first, so a character split across two
    words survives.  An encoded word in an unknown charset is kept as is.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef Py_ssize_t pos = 0, i, cs_end, t_start, t_end, m_end, k, run_start = 0, run_end = 0
    cdef unsigned char c, enc
    cdef bint gap_blank
    cdef list out
    cdef object cs = None
    cdef bytes data
    cdef list pending = None  # the run's decoded bytes, joined once at its end (never +=)
    cdef str charset
    if value.find(b"=?") < 0:
        return bytes_to_str(value)
    out = []
    i = 0
    while True:
        i = value.find(b"=?", i)
        if i < 0:
            break
        # charset: [^?\s]+
        k = i + 2
        while k < n:
            c = p[k]
            if c == 63 or c == 32 or (9 <= c <= 13):
                break
            k += 1
        if k == i + 2 or k + 2 >= n or p[k] != 63 or p[k + 2] != 63:
            i += 1
            continue
        cs_end = k
        enc = p[k + 1]
        if enc != 66 and enc != 98 and enc != 81 and enc != 113:
            i += 1
            continue
        t_start = k + 3
        t_end = _memfind(p, t_start, n, 63)
        if t_end < 0 or t_end + 1 >= n or p[t_end + 1] != 61:
            i += 1
            continue
        m_end = t_end + 2
        gap_blank = True
        for k in range(pos, i):
            c = p[k]
            if c != 32 and c != 9 and c != 13 and c != 10:
                gap_blank = False
                break
        if cs is None or not gap_blank:
            if cs is not None:
                out.append(_flush_words(value, cs, b"".join(pending), run_start, run_end))
                cs = None
            if i > pos:
                out.append(_str_range(<const char*>p + pos, i - pos))
        charset = PyUnicode_DecodeLatin1(<const char*>p + i + 2, cs_end - i - 2, NULL)
        if enc == 66 or enc == 98:
            data = _b64_decode(p + t_start, t_end - t_start)
        else:
            data = _qp_decode(p + t_start, t_end - t_start, True)
        if cs is not None and charset.lower() == cs.lower():
            pending.append(data)
        else:
            if cs is not None:
                out.append(_flush_words(value, cs, b"".join(pending), run_start, run_end))
            cs = charset
            pending = [data]
            run_start = i
        run_end = m_end
        pos = m_end
        i = m_end
    if cs is not None:
        out.append(_flush_words(value, cs, b"".join(pending), run_start, run_end))
    if pos < n:
        out.append(_str_range(<const char*>p + pos, n - pos))
    return "".join(out)


cpdef str _flush_words(bytes value, str charset, bytes data, Py_ssize_t start, Py_ssize_t end):
    text = decode_charset(data, charset)
    if text is None:
        return _bslice(value, start, end).decode("latin-1")
    return text


# html_to_text: the twin's three regex substitutions, each as one C pass over
# a UCS4 copy, in place (every substitution shortens the text).  re's rules
# matter here: IGNORECASE literals also match U+0130/U+0131 for "i", U+212A
# for "k" and U+017F for "s"; the back reference compares simple lowercase
# mappings; \b and \s are Unicode word characters and white space.

cdef inline bint _ci(Py_UCS4 c, unsigned int lit) noexcept:
    """c matches the lowercase ASCII letter or digit lit under re.IGNORECASE."""
    cdef unsigned int u = c
    if u == lit or (97 <= lit <= 122 and u == lit - 32):
        return True
    if lit == 105:  # i
        return u == 0x130 or u == 0x131
    if lit == 107:  # k
        return u == 0x212A
    if lit == 115:  # s
        return u == 0x17F
    return False


cdef inline bint _is_word(Py_UCS4 c) noexcept:
    return c == 95 or Py_UNICODE_ISALNUM(c)


cdef inline bint _ci_word(const _uchar* s, Py_ssize_t i, Py_ssize_t n, const char* word) noexcept:
    """word (lowercase ASCII) at s[i:] under re.IGNORECASE, followed by \\b."""
    cdef Py_ssize_t k = 0
    while word[k]:
        if i + k >= n or not _ci(s[i + k], <unsigned char>word[k]):
            return False
        k += 1
    return i + k >= n or not _is_word(s[i + k])


# first letters of the tag names below, both cases: an ASCII byte outside
# these cannot start a match (non-ASCII characters may, under IGNORECASE, so
# they take the full test)
cdef unsigned char _DROP_FIRST[128]
cdef unsigned char _BREAK_FIRST[128]
for _c in bytearray(b"shtSHT"):
    _DROP_FIRST[_c] = 1
for _c in bytearray(b"bpdtluohBPDTLUOH"):
    _BREAK_FIRST[_c] = 1


cdef inline Py_ssize_t _next_lt(const _uchar* s, Py_ssize_t r, Py_ssize_t n) noexcept:
    """Index of the next "<" at or after r, else n."""
    cdef const void* q
    if _uchar is Py_UCS1:
        q = memchr(s + r, 60, n - r)
        return n if q == NULL else <Py_ssize_t>(<const Py_UCS1*>q - s)
    else:
        while r < n and s[r] != 60:
            r += 1
        return r


# Closing parts are searched once, not from every opening: re would scan to
# the end of the text from each "<script" (or "<!--", "<br", "<") that has no
# closing part, quadratic in the text (420 KB of "<script" took 20 s).  The
# first closing part found searching from q is also the first from any later
# q' up to it, and none from q means none from any later q'; so each search
# is remembered in a slot: [searched from, its start (-1: none), its end].
# Slot 0 is "-->"; a tag name's slot is 1 + 64 * name + mask, where the mask
# marks the letters written as U+0131 or U+017F (the back reference then
# wants that very letter; every other spelling lowercases to ASCII).
cdef enum:
    _DROP_SLOTS = 1 + 4 * 64


cdef inline bint _memo_get(Py_ssize_t* slot, Py_ssize_t q, Py_ssize_t* end) noexcept:
    if slot[0] >= 0 and slot[0] <= q and (slot[1] < 0 or slot[1] >= q):
        end[0] = slot[2] if slot[1] >= 0 else -1
        return True
    return False


cdef inline Py_ssize_t _memo_set(Py_ssize_t* slot, Py_ssize_t q, Py_ssize_t start, Py_ssize_t end) noexcept:
    slot[0] = q
    slot[1] = start
    slot[2] = end if start >= 0 else -1
    return slot[2]


cdef Py_ssize_t _drop_end(const _uchar* s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t* memo) noexcept:
    """End of a <(script|style|head|title)\\b.*?</\\1\\s*>|<!--.*?--> match at s[i] ('<'), or -1."""
    cdef Py_ssize_t j, k, t, L, q, e, ni, mask
    cdef const char* name
    cdef bint same
    cdef Py_ssize_t* slot
    if i + 1 < n and s[i + 1] == 33:  # <!--
        if i + 3 < n and s[i + 2] == 45 and s[i + 3] == 45:
            q = i + 4
            if _memo_get(memo, q, &e):
                return e
            j = q
            while j + 2 < n:
                if s[j] == 45 and s[j + 1] == 45 and s[j + 2] == 62:
                    return _memo_set(memo, q, j, j + 3)
                j += 1
            return _memo_set(memo, q, -1, -1)
        return -1
    if i + 1 >= n or (s[i + 1] < 128 and not _DROP_FIRST[s[i + 1]]):
        return -1  # cannot start any of the four names, even under IGNORECASE
    ni = 0
    for name in (b"script", b"style", b"head", b"title"):
        if _ci_word(s, i + 1, n, name):
            break
        ni += 1
    else:
        return -1
    L = len(name)
    mask = 0
    for t in range(L):
        if Py_UNICODE_TOLOWER(s[i + 1 + t]) >= 128:
            mask |= 1 << t
    slot = memo + 3 * (1 + 64 * ni + mask)
    q = i + 1 + L
    if _memo_get(slot, q, &e):
        return e
    j = q
    while j + 2 + L < n:
        if s[j] == 60 and s[j + 1] == 47:
            same = True
            for t in range(L):
                if Py_UNICODE_TOLOWER(s[j + 2 + t]) != Py_UNICODE_TOLOWER(s[i + 1 + t]):
                    same = False
                    break
            if same:
                k = j + 2 + L
                while k < n and Py_UNICODE_ISSPACE(s[k]):
                    k += 1
                if k < n and s[k] == 62:
                    return _memo_set(slot, q, j, k + 1)
        j += 1
    return _memo_set(slot, q, -1, -1)


cdef tuple _BREAK_WORDS = (b"br", b"p", b"div", b"tr", b"li", b"ul", b"ol", b"h1", b"h2", b"h3", b"h4",
                           b"h5", b"h6", b"table", b"hr", b"blockquote", b"pre", b"td", b"th")
cdef const char* _BREAK_TAGS[19]
for _i in range(19):
    _BREAK_TAGS[_i] = <bytes>_BREAK_WORDS[_i]  # kept alive by _BREAK_WORDS


cdef Py_ssize_t _break_end(const _uchar* s, Py_ssize_t i, Py_ssize_t n, Py_ssize_t last_gt) noexcept:
    """End of a </?(?:br|p|...|th)\\b[^>]*> match at s[i] ('<'), or -1.
    last_gt is the last ">" of the text: after it nothing matches, before it
    the scan for ">" always ends in a match (so it never repeats)."""
    cdef Py_ssize_t j = i + 1, k, t
    if i > last_gt:
        return -1
    if j < n and s[j] == 47:
        j += 1
    if j >= n or (s[j] < 128 and not _BREAK_FIRST[s[j]]):
        return -1
    for t in range(19):
        if _ci_word(s, j, n, _BREAK_TAGS[t]):
            k = j + 1
            while k < n:
                if s[k] == 62:
                    return k + 1
                k += 1
            return -1
    return -1


cdef Py_ssize_t _html_passes(_uchar* s, Py_ssize_t n) noexcept:
    """The twin's three substitutions, in place; each pass moves the text
    between two "<" as one block (memchr finds them in one-byte text)."""
    cdef Py_ssize_t r, w, e, pass_, last_gt
    cdef Py_ssize_t memo[3 * _DROP_SLOTS]
    for e in range(_DROP_SLOTS):
        memo[3 * e] = -1
    for pass_ in range(3):
        # 1. scripts, styles, head, title, comments -> " "
        # 2. block tags -> "\n"
        # 3. other tags -> ""
        last_gt = n - 1
        while last_gt >= 0 and s[last_gt] != 62:
            last_gt -= 1
        r = w = 0
        while r < n:
            e = _next_lt(s, r, n)
            if e > r:
                if w != r:
                    memmove(s + w, s + r, (e - r) * sizeof(s[0]))
                w += e - r
                r = e
                if r >= n:
                    break
            if pass_ == 0:
                e = _drop_end(s, r, n, memo)
                if e >= 0:
                    s[w] = 32
                    w += 1
                    r = e
                    continue
            elif pass_ == 1:
                e = _break_end(s, r, n, last_gt)
                if e >= 0:
                    s[w] = 10
                    w += 1
                    r = e
                    continue
            elif r < last_gt:
                e = r + 1
                while e < n and s[e] != 62:
                    e += 1
                if e < n:
                    r = e + 1
                    continue
            s[w] = s[r]
            w += 1
            r += 1
        n = w
    return n


cpdef str html_to_text(str text):
    """HTML reduced to its text: scripts/styles dropped, block tags to line breaks."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text), w
    cdef int kind = PyUnicode_KIND(text)
    cdef void* buf
    if PyUnicode_FindChar(text, 60, 0, n, 1) >= 0:
        buf = PyMem_Malloc(n * kind + 1)  # a copy in the text's own width
        if buf == NULL:
            raise MemoryError
        try:
            memcpy(buf, PyUnicode_DATA(text), n * kind)
            if kind == 1:
                w = _html_passes(<Py_UCS1*>buf, n)
            elif kind == 2:
                w = _html_passes(<Py_UCS2*>buf, n)
            else:
                w = _html_passes(<Py_UCS4*>buf, n)
            text = PyUnicode_FromKindAndData(kind, buf, w)
        finally:
            PyMem_Free(buf)
    if PyUnicode_FindChar(text, 38, 0, PyUnicode_GET_LENGTH(text), 1) >= 0:
        text = html.unescape(text)
    return text


# ------------------------------------------------------ structured header values

cdef unsigned char _ATOM_STOP[256]
for _c in bytearray(b' \t\r\n()<>@,;:"['):
    _ATOM_STOP[_c] = 1

_T_WORD = 0
_T_QUOTED = 1
_T_COMMENT = 2


cdef tuple _quoted_c(bytes value, Py_ssize_t i):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), seg = i, w = 0
    cdef bytearray out = None
    cdef unsigned char c
    # fast path: no backslash before the closing quote
    while i < n:
        c = p[i]
        if c == 34:
            if out is None:
                return _bslice(value, seg, i), i + 1
            out += _bslice(value, seg, i)
            return bytes(out), i + 1
        if c == 92 and i + 1 < n:
            if out is None:
                out = bytearray()
            out += _bslice(value, seg, i)
            seg = i + 1
            i += 2
            continue
        i += 1
    if out is None:
        return _bslice(value, seg, n), n
    out += _bslice(value, seg, n)
    return bytes(out), n


def _quoted(bytes value, Py_ssize_t i):
    """Quoted string starting after the DQUOTE at i-1: (content, next index)."""
    return _quoted_c(value, i)


cdef tuple _comment_c(bytes value, Py_ssize_t i):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), seg = i, depth = 1
    cdef bytearray out = bytearray()
    cdef unsigned char c
    while i < n:
        c = p[i]
        if c == 92 and i + 1 < n:
            out += _bslice(value, seg, i)
            seg = i + 1
            i += 2
            continue
        if c == 40:
            depth += 1
        elif c == 41:
            depth -= 1
            if depth == 0:
                out += _bslice(value, seg, i)
                return bytes(out), i + 1
        i += 1
    out += _bslice(value, seg, n)
    return bytes(out), n


def _comment(bytes value, Py_ssize_t i):
    """Comment starting after the '(' at i-1: (content, next index)."""
    return _comment_c(value, i)


cdef bytearray _tokenize_c(bytes value, list vals):
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i = 0, j
    cdef bytearray kinds = bytearray()
    cdef unsigned char c
    cdef tuple r
    while i < n:
        c = p[i]
        if c == 32 or c == 9 or c == 13 or c == 10:
            i += 1
        elif c == 34:
            r = _quoted_c(value, i + 1)
            kinds.append(1)
            vals.append(r[0])
            i = r[1]
        elif c == 40:
            r = _comment_c(value, i + 1)
            kinds.append(2)
            vals.append(r[0])
            i = r[1]
        elif c == 41:
            i += 1
        elif c == 91:
            j = _memfind(p, i + 1, n, 93)
            j = n if j < 0 else j + 1
            kinds.append(0)
            vals.append(_bslice(value, i, j))
            i = j
        elif c == 60 or c == 62 or c == 64 or c == 44 or c == 59 or c == 58:
            kinds.append(c)
            vals.append(_bslice(value, i, i + 1))
            i += 1
        else:
            j = i + 1
            while j < n and not _ATOM_STOP[p[j]]:
                j += 1
            kinds.append(0)
            vals.append(_bslice(value, i, j))
            i = j
    return kinds


def tokenize(bytes value):
    """RFC 5322 lexical tokens of a structured header value: (kinds, values)."""
    cdef list vals = []
    kinds = _tokenize_c(value, vals)
    return list(kinds), vals


cdef tuple _addr_spec_c(const unsigned char* kinds, list vals, Py_ssize_t lo, Py_ssize_t hi):
    cdef Py_ssize_t at = -1, k
    cdef unsigned char kind
    cdef list local = [], dom = []
    for k in range(lo, hi):
        if kinds[k] == 64:
            at = k
    for k in range(lo, hi):
        kind = kinds[k]
        if kind == 2 or k == at:
            continue
        if kind == 0 or kind == 1 or kind == 64:
            if at < 0 or k < at:
                local.append(vals[k])
            else:
                dom.append(vals[k])
    return b"".join(local), b"".join(dom)


def _addr_spec(kinds, list vals, Py_ssize_t lo, Py_ssize_t hi):
    """(mailbox, host) from tokens lo..hi of an addr-spec; host b"" when missing."""
    cdef bytes kb = bytes(kinds)
    return _addr_spec_c(<const unsigned char*>PyBytes_AS_STRING(kb), vals, lo, hi)


cpdef list parse_addresses(bytes value):
    """An address-list header value as IMAP address tuples.

    Each item is ``(name, adl, mailbox, host)`` of bytes or None, names left
    RFC 2047 encoded.  Groups are ``(None, None, name, None)`` ...
    ``(None, None, None, None)``.  A missing domain is ``b""``.
    """
    cdef list vals = []
    cdef bytes kb = bytes(_tokenize_c(value, vals))
    cdef const unsigned char* kinds = <const unsigned char*>PyBytes_AS_STRING(kb)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(kb), i = 0, j, k, lo, r, x
    cdef list out = [], words, adl_parts
    cdef bint in_group = False, has_addr
    cdef unsigned char kind
    cdef object comment, name, adl
    cdef bytes v
    while i < n:
        kind = kinds[i]
        if kind == 44:
            i += 1
            continue
        if kind == 59:
            if in_group:
                out.append((None, None, None, None))
                in_group = False
            i += 1
            continue
        j = i
        while j < n:
            kind = kinds[j]
            if kind == 44 or kind == 59 or kind == 60 or (kind == 58 and not in_group):
                break
            j += 1
        words = []
        for k in range(i, j):
            if kinds[k] <= 1:
                words.append(vals[k])
        comment = None
        for k in range(i, j):
            if kinds[k] == 2:
                v = vals[k].strip()
                if v:
                    comment = v
                    break
        if j < n and kinds[j] == 58:
            out.append((None, None, b" ".join(words), None))
            in_group = True
            i = j + 1
            continue
        if j < n and kinds[j] == 60:
            name = b" ".join(words) if words else comment
            k = j + 1
            while k < n and kinds[k] != 62:
                k += 1
            lo = j + 1
            adl = None
            if lo < k and kinds[lo] == 64:
                r = lo
                while r < k and kinds[r] != 58:
                    r += 1
                if r < k:
                    adl_parts = []
                    for x in range(lo, r):
                        if kinds[x] != 2:
                            adl_parts.append(vals[x])
                    adl = b"".join(adl_parts)
                    lo = r + 1
            mailbox, host = _addr_spec_c(kinds, vals, lo, k)
            out.append((name or None, adl, mailbox, host))
            i = k + 1
            while i < n and kinds[i] != 44 and kinds[i] != 59:
                i += 1
            continue
        has_addr = False
        for k in range(i, j):
            if kinds[k] != 2:
                has_addr = True
                break
        if has_addr:
            mailbox, host = _addr_spec_c(kinds, vals, i, j)
            out.append((comment, None, mailbox, host))
        i = j
    if in_group:
        out.append((None, None, None, None))
    return out


# token kinds: 0 word (atom or domain literal), 1 quoted string, 2 comment,
# otherwise the special character itself (< > @ , ; :)
cpdef tuple parse_params(bytes value):
    """``value; attr=val; ...`` (Content-Type, Content-Disposition).

    Returns ``(main, params)``: main lower-cased and stripped of comments,
    params as ``[(attr_lower, value)]`` in order, quoted values unescaped.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i, eq, semi
    cdef unsigned char c
    cdef list params
    cdef bytes main, attr, v
    semi = value.find(b";")
    if semi < 0:
        semi = n
    main = _bslice(value, 0, semi)
    if b"(" in main:
        main = re.sub(rb"\([^)]*\)?", b"", main)
    main = main.strip(b" \t\r\n").lower()
    params = []
    i = semi + 1
    while i < n:
        c = p[i]
        if c == 32 or c == 9 or c == 13 or c == 10 or c == 59:
            i += 1
            continue
        eq = value.find(b"=", i)
        semi = value.find(b";", i)
        if semi < 0:
            semi = n
        if eq < 0 or eq > semi:  # attribute without a value
            i = semi + 1
            continue
        attr = _bslice(value, i, eq).strip(b" \t\r\n").lower()
        i = eq + 1
        while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 13 or p[i] == 10):
            i += 1
        if i < n and p[i] == 34:
            v, i = _quoted_c(value, i + 1)
            semi = value.find(b";", i)
            i = n if semi < 0 else semi
        else:
            v = _bslice(value, i, semi).strip(b" \t\r\n")
            i = semi
        if attr:
            params.append((attr, v))
    return main, params


_ATTR_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~"
)


def _pct_decode(v: bytes) -> bytes:
    if b"%" not in v:
        return v
    out = []
    parts = v.split(b"%")
    out.append(parts[0])
    for p in parts[1:]:
        try:
            out.append(bytes((int(p[:2], 16),)) + p[2:] if len(p) >= 2 else b"%" + p)
        except ValueError:
            out.append(b"%" + p)
    return b"".join(out)


def _pct_encode(v: bytes) -> bytes:
    return b"".join(bytes((c,)) if c in _ATTR_CHARS else b"%%%02X" % c for c in v)


cpdef list params_2231(list params):
    """Merge RFC 2231 continuations and charsets.

    Returns ``[(attr, wire_attr, wire_value, text)]``: ``wire_*`` what
    BODYSTRUCTURE shows (``attr*`` + ``charset'lang'%XX`` when the value was
    extended), ``text`` the decoded value (RFC 2047 words decoded too).
    """
    cdef list out = []
    cdef bytes a, v
    for a, v in params:
        if b"*" in a:
            return _params_2231_ext(params)
        out.append((PyUnicode_DecodeLatin1(PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a), NULL), a, v, decode_words(v)))
    return out


def _params_2231_ext(params):
    order = []
    groups: dict[bytes, list] = {}
    for attr, v in params:
        base = attr
        idx = -1
        ext = False
        if attr.endswith(b"*"):
            ext = True
            base = attr[: len(attr) - 1]
        star = base.find(b"*")
        if star >= 0:
            num = base[star + 1 :]
            base = base[:star]
            idx = int(num) if num.isdigit() and len(num) < 6 else 99999
        if base not in groups:
            groups[base] = []
            order.append(base)
        groups[base].append((max(idx, 0), ext, v))
    out = []
    for base in order:
        segs = sorted(groups[base], key=lambda s: s[0])
        extended = any(s[1] for s in segs)
        if not extended:
            v = b"".join(s[2] for s in segs)
            out.append((base.decode("latin-1"), base, v, decode_words(v)))
            continue
        charset = b""
        lang = b""
        chunks = []
        for k, (_, ext, v) in enumerate(segs):
            if ext and k == 0:
                pieces = v.split(b"'", 2)
                if len(pieces) == 3:
                    charset, lang, v = pieces
            chunks.append(_pct_decode(v) if ext else v)
        data = b"".join(chunks)
        text = decode_text(data, charset.decode("latin-1")) if charset else bytes_to_str(data)
        wire = charset + b"'" + lang + b"'" + _pct_encode(data)
        out.append((base.decode("latin-1"), base + b"*", wire, text))
    return out


# ---------------------------------------------------------------- IMAP wire form

cdef unsigned char _QUOTE_OK[256]
for _c in range(1, 128):
    if _c not in (10, 13, 34, 92):
        _QUOTE_OK[_c] = 1


cpdef bytes imap_string(bytes v):
    """Quoted string when safe, else a literal."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(v)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v), k
    cdef bint lit = n > 1000
    if not lit:
        for k in range(n):
            if not _QUOTE_OK[p[k]]:
                lit = True
                break
    if lit:
        return b"{%d}\r\n" % n + v
    cdef bytes r = PyBytes_FromStringAndSize(NULL, n + 2)  # one object, not two concatenations
    cdef char* q = PyBytes_AS_STRING(r)
    q[0] = 34
    memcpy(q + 1, p, n)
    q[n + 1] = 34
    return r


cpdef bytes imap_nstring(v):
    if v is None:
        return b"NIL"
    return imap_string(v)


cdef unsigned char _SPACE[128]
for _c in (9, 10, 11, 12, 13, 28, 29, 30, 31, 32):
    _SPACE[_c] = 1


cdef inline bint _is_space(Py_UCS4 c) noexcept:
    """str.isspace() (what str.split() splits on); tests check the table."""
    if c < 128:
        return _SPACE[c]
    return (c == 0x85 or c == 0xA0 or c == 0x1680 or 0x2000 <= c <= 0x200A or c == 0x2028
            or c == 0x2029 or c == 0x202F or c == 0x205F or c == 0x3000)


# casefold of one character, filled lazily from str.casefold() (so it is
# exactly Python's, whatever its Unicode version): 0 unknown, else the folded
# character, or _FOLD_EXP | i for a fold of 2-3 characters (_FOLD_X[i]).
# BMP characters get a table; others a small direct-mapped cache.
cdef unsigned int _FOLD[65536]
cdef unsigned int _FOLD_AST_KEY[1024]
cdef unsigned int _FOLD_AST_VAL[1024]
cdef unsigned int _FOLD_EXP = 0x80000000
cdef unsigned int _FOLD_X[512][4]  # [length, c1, c2, c3]
cdef int _FOLD_NX = 0


cdef unsigned int _fold_slow(unsigned int c) except 0:
    global _FOLD_NX
    cdef str f = chr(c).casefold()
    cdef Py_ssize_t m = PyUnicode_GET_LENGTH(f), j
    cdef unsigned int r
    if m == 1:
        r = PyUnicode_READ(PyUnicode_KIND(f), PyUnicode_DATA(f), 0)
    elif 2 <= m <= 3 and _FOLD_NX < 512:
        r = _FOLD_EXP | _FOLD_NX
        _FOLD_X[_FOLD_NX][0] = m
        for j in range(m):
            _FOLD_X[_FOLD_NX][j + 1] = PyUnicode_READ(PyUnicode_KIND(f), PyUnicode_DATA(f), j)
        _FOLD_NX += 1
    else:  # pragma: no cover - Unicode has no such fold today
        raise ValueError("unexpected casefold")
    if c < 65536:
        _FOLD[c] = r
    else:
        _FOLD_AST_KEY[c & 1023] = c
        _FOLD_AST_VAL[c & 1023] = r
    return r


cdef inline unsigned int _fold1(unsigned int c) except 0:
    """casefold of c (>= 128): the character, or _FOLD_EXP | index into _FOLD_X."""
    cdef unsigned int f
    if c < 65536:
        f = _FOLD[c]
        if f != 0:
            return f
    elif _FOLD_AST_KEY[c & 1023] == c:
        return _FOLD_AST_VAL[c & 1023]
    return _fold_slow(c)


cdef unsigned char _ASCII_FOLD[128]  # 0xFF: white space, else the lower-cased byte
for _c in range(128):
    _ASCII_FOLD[_c] = 0xFF if chr(_c).isspace() else ord(chr(_c).lower())


cdef Py_ssize_t _normalize_into(const _uchar* src, Py_ssize_t n, _uchar_out* dst, Py_ssize_t cap,
                                Py_UCS4 maxc) except -2:
    """normalize() of src into dst[1:] (same character width, cap > n + 1),
    possibly with a leading space; -1 when a fold does not fit that width,
    -3 when dst is too short (the caller retries).

    dst[0] is a dummy so that "a space is pending" never has to ask whether
    anything was written yet: a leading space is cut by the caller."""
    cdef Py_ssize_t k, w = 1, j, m
    cdef unsigned int ch, f, x  # not Py_UCS4: Cython does str arithmetic on that
    cdef bint space = False, sp
    dst[0] = 32
    for k in range(n):
        ch = src[k]
        if ch < 128:
            # branch-free: both stores happen, the counts decide what stays
            # (output never outruns input here, so dst has room)
            f = _ASCII_FOLD[ch]
            sp = f == 0xFF
            dst[w] = 32
            w += space & (not sp)
            dst[w] = <_uchar_out>f
            w += not sp
            space = sp
            continue
        f = _fold1(ch)
        m = 1
        x = f & 511
        if f & _FOLD_EXP:
            m = _FOLD_X[x][0]
            if w + m + 2 + (n - k) > cap:
                return -3
        for j in range(m):
            if m > 1:
                f = _FOLD_X[x][j + 1]
            if _is_space(f):
                space = True
                continue
            if f > maxc:
                return -1
            if space:
                dst[w] = 32
                w += 1
                space = False
            dst[w] = <_uchar_out>f
            w += 1
    return w


cdef inline str _from_norm(int kind, void* buf, Py_ssize_t w):
    """The str of _normalize_into's output."""
    cdef Py_ssize_t lo = 1
    if w > 1:
        if kind == 1:
            lo += (<Py_UCS1*>buf)[1] == 32
        elif kind == 2:
            lo += (<Py_UCS2*>buf)[1] == 32
        else:
            lo += (<Py_UCS4*>buf)[1] == 32
    return PyUnicode_FromKindAndData(kind, <char*>buf + lo * kind, w - lo)


cdef Py_ssize_t _normalize_any(str t, void* dst, int okind, Py_ssize_t cap) except -2:
    cdef int kind = PyUnicode_KIND(t)
    cdef void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t)
    if okind == 1:
        if kind == 1:
            return _normalize_into(<const Py_UCS1*>data, n, <Py_UCS1*>dst, cap, 0xFF)
        return -1
    if okind == 2:
        if kind == 1:
            return _normalize_into(<const Py_UCS1*>data, n, <Py_UCS2*>dst, cap, 0xFFFF)
        if kind == 2:
            return _normalize_into(<const Py_UCS2*>data, n, <Py_UCS2*>dst, cap, 0xFFFF)
        return -1
    if kind == 1:
        return _normalize_into(<const Py_UCS1*>data, n, <Py_UCS4*>dst, cap, 0x10FFFF)
    if kind == 2:
        return _normalize_into(<const Py_UCS2*>data, n, <Py_UCS4*>dst, cap, 0x10FFFF)
    return _normalize_into(<const Py_UCS4*>data, n, <Py_UCS4*>dst, cap, 0x10FFFF)


cdef str _normalize_join(list texts):
    """"\n".join(x for x in map(normalize, texts) if x), written into one
    buffer: each text's dummy slot (see _normalize_into) becomes the "\n"."""
    cdef int okind = 1
    cdef Py_ssize_t cap = 16, pos = 0, w
    cdef str t
    cdef char* buf
    cdef char* at
    for t in texts:
        if PyUnicode_KIND(t) > okind:
            okind = PyUnicode_KIND(t)
        cap += PyUnicode_GET_LENGTH(t) + (PyUnicode_GET_LENGTH(t) >> 3) + 16
    buf = <char*>PyMem_Malloc(cap * okind)
    if buf == NULL:
        raise MemoryError
    try:
        for t in texts:
            at = buf + pos * okind
            # each text keeps to its own share of the buffer, so texts after
            # it still have theirs (their ASCII runs are written unchecked)
            w = _normalize_any(t, at, okind, PyUnicode_GET_LENGTH(t) + (PyUnicode_GET_LENGTH(t) >> 3) + 16)
            if w < 0:  # a fold widened or lengthened the text: the plain way
                return "\n".join([x for x in [normalize(t) for t in texts] if x])
            if w <= 1:
                continue
            if _norm_char(at, okind, 1) == 32:  # leading white space
                memmove(at + okind, at + 2 * okind, (w - 2) * okind)
                w -= 1
            _norm_set(at, okind, 0, 10)
            pos += w
        if pos <= 1:
            return ""
        return PyUnicode_FromKindAndData(okind, buf + okind, pos - 1)
    finally:
        PyMem_Free(buf)


cdef inline Py_UCS4 _norm_char(char* at, int kind, Py_ssize_t i) noexcept:
    if kind == 1:
        return (<Py_UCS1*>at)[i]
    if kind == 2:
        return (<Py_UCS2*>at)[i]
    return (<Py_UCS4*>at)[i]


cdef inline void _norm_set(char* at, int kind, Py_ssize_t i, Py_UCS4 c) noexcept:
    if kind == 1:
        (<Py_UCS1*>at)[i] = <Py_UCS1>c
    elif kind == 2:
        (<Py_UCS2*>at)[i] = <Py_UCS2>c
    else:
        (<Py_UCS4*>at)[i] = c


cpdef str normalize(str text):
    """Search normalisation: casefold, white space runs to one space, trimmed."""
    cdef Py_ssize_t n, w, cap
    cdef int kind
    cdef void* data
    cdef void* buf
    n = PyUnicode_GET_LENGTH(text)
    kind = PyUnicode_KIND(text)
    data = PyUnicode_DATA(text)
    # same width as the input first (folds rarely widen the text), with
    # room for the longest folds (3 characters) if the text grew; UCS4 if a
    # fold widened it
    cap = n + (n >> 3) + 16
    while True:
        buf = PyMem_Malloc(cap * kind)
        if buf == NULL:
            raise MemoryError
        try:
            if kind == 1:
                w = _normalize_into(<const Py_UCS1*>data, n, <Py_UCS1*>buf, cap, 0xFF)
            elif kind == 2:
                w = _normalize_into(<const Py_UCS2*>data, n, <Py_UCS2*>buf, cap, 0xFFFF)
            else:
                w = _normalize_into(<const Py_UCS4*>data, n, <Py_UCS4*>buf, cap, 0x10FFFF)
            if w >= 0:
                return _from_norm(kind, buf, w)
        finally:
            PyMem_Free(buf)
        if w == -3:
            cap = 3 * n + 16
        else:
            break
    cap = 3 * n + 16
    cdef Py_UCS4* u = PyUnicode_AsUCS4Copy(text)
    buf = PyMem_Malloc(cap * 4)
    try:
        if buf == NULL:
            raise MemoryError
        w = _normalize_into(<const Py_UCS4*>u, n, <Py_UCS4*>buf, cap, 0x10FFFF)
        return _from_norm(4, buf, w)
    finally:
        PyMem_Free(buf)
        PyMem_Free(u)


cpdef str bytes_to_str(bytes data):
    """Header bytes as text: UTF-8, else latin-1."""
    return _str_range(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


cdef str _str_range(const char* p, Py_ssize_t n):
    try:
        return PyUnicode_DecodeUTF8(p, n, NULL)
    except UnicodeDecodeError:
        return PyUnicode_DecodeLatin1(p, n, NULL)



cpdef bytes imap_addresses(list items):
    if not items:
        return b"NIL"
    out = [b"("]
    for name, adl, mailbox, host in items:
        out.append(b"(")
        out.append(imap_nstring(name))
        out.append(b" ")
        out.append(imap_nstring(adl))
        out.append(b" ")
        out.append(imap_nstring(mailbox))
        out.append(b" ")
        out.append(imap_nstring(host))
        out.append(b")")
    out.append(b")")
    return b"".join(out)


cpdef bytes imap_params(list params):
    if not params:
        return b"NIL"
    out = []
    for attr, value in params:
        out.append(imap_string(attr))
        out.append(imap_string(value))
    return b"(" + b" ".join(out) + b")"


# ---------------------------------------------------------------- MIME walk


cdef class _Entity:
    cdef public object section, fields, hdr, mtype, subtype, params, ptext, enc
    cdef public object children, inner, dtype, dparams, addrs
    cdef public Py_ssize_t hstart, bstart, end, lines


cdef dict _LOWER_NAMES = {}  # header name -> name.lower(); names repeat across messages


cdef dict _header_map(bytes buf, list fields):
    hdr = {}
    for name, _fs, vs, fe in fields:
        key = _LOWER_NAMES.get(name)
        if key is None:
            key = name.lower()
            if len(_LOWER_NAMES) < 4096:
                _LOWER_NAMES[name] = key
        if key not in hdr:
            hdr[key] = _bslice(buf, vs, fe)
    return hdr


cdef str _join(str prefix, Py_ssize_t n):
    return f"{prefix}.{n}" if prefix else str(n)


cpdef _Entity _parse(bytes buf, Py_ssize_t start, Py_ssize_t end, str section, int depth, bint is_message, tuple default_type, list counter):
    cdef _Entity e = _Entity()
    fields, bstart = split_header(buf, start, end)
    hdr = _header_map(buf, fields)
    e.section = section
    e.hstart = start
    e.bstart = bstart
    e.end = end
    e.fields = fields
    e.hdr = hdr
    e.children = None
    e.inner = None
    e.lines = -1
    e.addrs = {}
    ct = hdr.get("content-type")
    mtype = subtype = b""
    params = []
    if ct is not None:
        main, params = parse_params(unfold(ct))
        slash = main.find(b"/")
        if slash > 0:
            mtype = main[:slash].strip()
            subtype = main[slash + 1 :].strip()
    if not mtype or not subtype or mtype.translate(None, _NAME_CHARS) or subtype.translate(None, _NAME_CHARS):
        mtype, subtype = default_type
        params = [(b"charset", b"us-ascii")] if mtype == b"text" else []
    cte = hdr.get("content-transfer-encoding")
    enc = unfold(cte).lower() if cte is not None else b"7bit"
    if not enc:
        enc = b"7bit"
    e.enc = enc
    cd = hdr.get("content-disposition")
    if cd is not None:
        dtype, dparams = parse_params(unfold(cd))
        e.dtype = dtype or None
        e.dparams = params_2231(dparams)
    else:
        e.dtype = None
        e.dparams = []
    counter[0] += 1
    if mtype == b"multipart":
        boundary = None
        for attr, v in params:
            if attr == b"boundary":
                boundary = v
                break
        spans = None
        if boundary and depth < MAX_DEPTH and counter[0] < MAX_PARTS:
            spans = find_parts(buf, bstart, end, boundary)[0]
        if spans:
            e.mtype, e.subtype = mtype, subtype
            e.params = params
            e.ptext = params_2231(params)
            child_default = (b"message", b"rfc822") if subtype == b"digest" else (b"text", b"plain")
            children = []
            for k, (ps, pe) in enumerate(spans, 1):
                if counter[0] >= MAX_PARTS:
                    break
                children.append(
                    _parse(buf, ps, pe, _join(section, k), depth + 1, False, child_default, counter)
                )
            e.children = children
            return e
        # multipart without boundary or delimiters: a plain text leaf
        mtype, subtype = b"text", b"plain"
        params = [(b"charset", b"us-ascii")]
    e.mtype, e.subtype = mtype, subtype
    e.params = params
    e.ptext = params_2231(params)
    if mtype == b"message" and (subtype == b"rfc822" or subtype == b"global"):
        e.lines = count_lines(buf, bstart, end)
        if depth < MAX_DEPTH and enc in (b"7bit", b"8bit", b"binary") and counter[0] < MAX_PARTS:
            inner_section = _join(section, 1) if is_message else section
            e.inner = _parse(buf, bstart, end, inner_section, depth + 1, True, (b"text", b"plain"), counter)
    elif mtype == b"text":
        e.lines = count_lines(buf, bstart, end)
    return e


cpdef _parts(_Entity e, bint is_message, list out):
    """Depth-first Part spans (see mailaccess.mime.parts)."""
    ctype = (e.mtype + b"/" + e.subtype).decode("latin-1")
    charset = _param(e.ptext, "charset")
    inner = e.inner.bstart if e.inner is not None else -1
    enc = e.enc.decode("latin-1")
    if is_message:
        if not e.section:
            out.append(_tuple_new(Part, ("", e.hstart, e.bstart, e.end, ctype, enc, charset, inner)))
        if e.children is None:
            out.append(_tuple_new(Part, (_join(e.section, 1), e.hstart, e.bstart, e.end, ctype, enc, charset, inner)))
    else:
        out.append(_tuple_new(Part, (e.section, e.hstart, e.bstart, e.end, ctype, enc, charset, inner)))
    if e.children is not None:
        for c in e.children:
            _parts(c, False, out)
    elif e.inner is not None:
        _parts(e.inner, True, out)


cdef object _param(list ptext, str name):
    for attr, _wa, _wv, text in ptext:
        if attr == name:
            return text
    return None


cdef object _nvalue(dict hdr, str name):
    v = hdr.get(name)
    return None if v is None else unfold(v)


cpdef bytes envelope(_Entity e):
    """ENVELOPE of a message entity (RFC 3501 7.4.2, RFC 9051 7.5.2)."""
    hdr = e.hdr
    frm = _addr_field(e, "from")
    sender = _addr_field(e, "sender") or frm
    reply_to = _addr_field(e, "reply-to") or frm
    return b"".join((
        b"(",
        imap_nstring(_nvalue(hdr, "date")), b" ",
        imap_nstring(_nvalue(hdr, "subject")), b" ",
        imap_addresses(frm), b" ",
        imap_addresses(sender), b" ",
        imap_addresses(reply_to), b" ",
        imap_addresses(_addr_field(e, "to")), b" ",
        imap_addresses(_addr_field(e, "cc")), b" ",
        imap_addresses(_addr_field(e, "bcc")), b" ",
        imap_nstring(_nvalue(hdr, "in-reply-to")), b" ",
        imap_nstring(_nvalue(hdr, "message-id")),
        b")",
    ))


cdef list _addr_field(_Entity e, str name):
    """Parsed address header of an entity (parsed once, cached on it)."""
    items = e.addrs.get(name)
    if items is None:
        v = e.hdr.get(name)
        items = [] if v is None else parse_addresses(unfold(v))
        e.addrs[name] = items
    return items


cpdef object _language(dict hdr):
    v = hdr.get("content-language")
    if v is None:
        return None
    cdef list langs = []
    for x in unfold(v).split(b","):
        x = x.strip()
        if x:
            langs.append(x)
    return langs or None


cpdef bytes bodystructure(_Entity e, bint ext):
    """BODYSTRUCTURE (ext) or BODY of an entity, IMAP wire form."""
    out = [b"("]
    if e.children is not None:
        for c in e.children:
            out.append(bodystructure(c, ext))
        out.append(b" ")
        out.append(imap_string(e.subtype.upper()))
        if ext:
            out.append(b" ")
            out.append(imap_params([(wa.upper(), wv) for _a, wa, wv, _t in e.ptext]))
            out.append(_ext_tail(e))
        out.append(b")")
        return b"".join(out)
    hdr = e.hdr
    out.append(imap_string(e.mtype.upper()))
    out.append(b" ")
    out.append(imap_string(e.subtype.upper()))
    out.append(b" ")
    wire = []
    has_charset = False
    for _a, wa, wv, _t in e.ptext:
        wire.append((wa.upper(), wv))
        if _a == "charset":
            has_charset = True
    if e.mtype == b"text" and not has_charset:
        # RFC 2046 4.1.2: a text part without a charset parameter is us-ascii
        wire.insert(0, (b"CHARSET", b"us-ascii"))
    out.append(imap_params(wire))
    out.append(b" ")
    out.append(imap_nstring(_nvalue(hdr, "content-id")))
    out.append(b" ")
    out.append(imap_nstring(_nvalue(hdr, "content-description")))
    out.append(b" ")
    out.append(imap_string(e.enc.upper()))
    out.append(b" %d" % (e.end - e.bstart))
    if e.mtype == b"message" and (e.subtype == b"rfc822" or e.subtype == b"global"):
        inner = e.inner
        if inner is None:  # too deep or encoded: an empty message
            out.append(b" (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)")
        else:
            out.append(b" ")
            out.append(envelope(inner))
            out.append(b" ")
            out.append(bodystructure(inner, ext))
        out.append(b" %d" % e.lines)
    elif e.mtype == b"text":
        out.append(b" %d" % e.lines)
    if ext:
        out.append(b" ")
        out.append(imap_nstring(_nvalue(hdr, "content-md5")))
        out.append(_ext_tail(e))
    out.append(b")")
    return b"".join(out)


cdef bytes _ext_tail(_Entity e):
    """ SP disposition SP language SP location (shared by both body kinds)."""
    if e.dtype is not None:
        disp = b"(" + imap_string(e.dtype.upper()) + b" " + imap_params(
            [(wa.upper(), wv) for _a, wa, wv, _t in e.dparams]
        ) + b")"
    else:
        disp = b"NIL"
    langs = _language(e.hdr)
    if langs is None:
        lang = b"NIL"
    elif len(langs) == 1:
        lang = imap_string(langs[0])
    else:
        lang = b"(" + b" ".join(imap_string(x) for x in langs) + b")"
    return b" " + disp + b" " + lang + b" " + imap_nstring(_nvalue(e.hdr, "content-location"))


# ---------------------------------------------------------------- JMAP + search


cpdef tuple _addresses_text(_Entity e, str name):
    """[(decoded name or None, email)] with groups flattened."""
    out = []
    for dname, _adl, mailbox, host in _addr_field(e, name):
        if host is None:
            continue
        email = bytes_to_str(mailbox + b"@" + host if host else mailbox)
        out.append((decode_words(dname) if dname is not None else None, email))
    return tuple(out)


_MSGID = re.compile(rb"<([^<>]*)>")


cpdef tuple _ids(value):
    """The twin's _MSGID.findall, unfold and blank removal in one scan: each
    "<" opens an id that a ">" closes before the next "<" (else the search
    goes on from that "<"); an id keeps its bytes minus CR, LF, SP, HTAB."""
    if value is None:
        return ()
    cdef bytes v = value
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(v)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v), i = 0, j, k, w
    cdef bint matched = False
    cdef unsigned char c
    cdef list out = []
    cdef unsigned char* buf = <unsigned char*>PyMem_Malloc(n + 1)
    if buf == NULL:
        raise MemoryError
    try:
        while True:
            i = _memfind(p, i, n, 60)
            if i < 0:
                break
            j = i + 1
            while j < n and p[j] != 60 and p[j] != 62:
                j += 1
            if j >= n:
                break
            if p[j] == 60:
                i = j
                continue
            matched = True
            w = 0
            for k in range(i + 1, j):
                c = p[k]
                if c != 32 and c != 9 and c != 13 and c != 10:
                    buf[w] = c
                    w += 1
            if w:
                out.append(_str_range(<const char*>buf, w))
            i = j + 1
    finally:
        PyMem_Free(buf)
    if not matched:
        for x in unfold(v).split():
            if b"@" in x:
                out.append(bytes_to_str(x))
    return tuple(out)


cdef tuple _MONTHS = (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct",
                      b"nov", b"dec", b"january", b"february", b"march", b"april", b"may", b"june",
                      b"july", b"august", b"september", b"october", b"november", b"december")
cdef tuple _DAYS = (b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun")
cdef dict _ZONES = {b"UT": 0, b"UTC": 0, b"GMT": 0, b"Z": 0, b"AST": -400, b"ADT": -300, b"EST": -500,
                    b"EDT": -400, b"CST": -600, b"CDT": -500, b"MST": -700, b"MDT": -600, b"PST": -800,
                    b"PDT": -700}


cdef bint _digits(bytes t, Py_ssize_t lo, Py_ssize_t hi, int64_t* out) noexcept:
    """t[lo:hi] is 1..4 ASCII digits: their value."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(t)
    cdef int64_t v = 0
    cdef Py_ssize_t k
    if hi <= lo or hi - lo > 4:
        return False
    for k in range(lo, hi):
        if not 48 <= p[k] <= 57:
            return False
        v = v * 10 + (p[k] - 48)
    out[0] = v
    return True


cdef tuple _date_fast(bytes v):
    """_date of a plain "[Day,] D Mon YYYY HH:MM[:SS] [zone]" value, or None
    for anything else (then email.utils decides, as in the twin)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(v)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v), k, c1, c2
    cdef int64_t dd, yy, hh, mi, ss = 0, mm, tz, y, era, yoe, doy, doe, days, secs
    cdef list toks
    cdef bytes t, tm
    for k in range(n):
        if not (33 <= p[k] <= 126 or p[k] == 32 or p[k] == 9):
            return None
    toks = v.split()
    if not toks:
        return None
    t = toks[0]
    if t.endswith(b",") or t.lower() in _DAYS:
        del toks[0]
    elif b"," in t:
        return None
    if len(toks) == 4:
        if b"+" in toks[3] or b"-" in toks[3]:
            return None
        toks.append(b"")
    if len(toks) < 5:
        return None
    t = toks[1].lower()
    if t not in _MONTHS:
        return None
    mm = _MONTHS.index(t) + 1
    if mm > 12:
        mm -= 12
    if not _digits(toks[0], 0, len(toks[0]), &dd) or not _digits(toks[2], 0, len(toks[2]), &yy):
        return None
    tm = toks[3]
    c1 = tm.find(b":")
    if c1 < 0:
        return None
    c2 = tm.find(b":", c1 + 1)
    if c2 < 0:
        c2 = len(tm)
    elif not _digits(tm, c2 + 1, len(tm), &ss) or len(tm) - c2 > 3:
        return None
    if (not _digits(tm, 0, c1, &hh) or c1 > 2 or not _digits(tm, c1 + 1, c2, &mi)
            or c2 - c1 > 3):
        return None
    if yy < 100:
        yy += 1900 if yy > 68 else 2000
    t = toks[4].upper()
    if t in _ZONES:
        tz = _ZONES[t]
    elif t == b"":
        tz = 0
    elif (len(t) == 5 and (t[0] == 43 or t[0] == 45) and _digits(t, 1, 5, &tz)):
        if t[0] == 45:
            tz = -tz
    else:
        return None
    if tz < 0:
        tz = -((-tz) // 100 * 3600 + (-tz) % 100 * 60)
    else:
        tz = tz // 100 * 3600 + tz % 100 * 60
    # calendar.timegm: days from 1970-01-01 to yy-mm-01 (proleptic Gregorian)
    y = yy - (mm <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mm + (-3 if mm > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468 + dd - 1
    secs = ((days * 24 + hh) * 60 + mi) * 60 + ss
    return secs - tz, (tz // 60 if tz >= 0 else -((-tz + 59) // 60))


cpdef tuple _date(value):
    if value is None:
        return None, None
    cdef bytes v = unfold(value)
    cdef tuple fast = _date_fast(v)
    if fast is not None:
        return fast
    try:
        t = parsedate_tz(bytes_to_str(unfold(value)))
        if t is None:
            return None, None
        tz = t[9] or 0
        return calendar.timegm(t[:9]) - tz, tz // 60
    except Exception:
        return None, None


cpdef list _jmap_headers(bytes buf, list fields):
    cdef const char* p = PyBytes_AS_STRING(buf)
    cdef list out = []
    cdef Py_ssize_t vs, fe
    cdef tuple f
    for f in fields:
        vs = f[2]
        fe = f[3]
        if fe > vs and p[fe - 1] == 10:
            fe -= 1
            if fe > vs and p[fe - 1] == 13:
                fe -= 1
        out.append({"name": f[0], "value": _str_range(p + vs, fe - vs)})
    return out


cdef bytes _body_data(bytes buf, _Entity e):
    """decode_cte(buf[e.bstart:e.end], e.enc), base64 without the slice."""
    if e.enc == b"base64":
        return _b64_decode(<const unsigned char*>PyBytes_AS_STRING(buf) + e.bstart, e.end - e.bstart)
    if e.enc == b"quoted-printable":
        return _qp_decode(<const unsigned char*>PyBytes_AS_STRING(buf) + e.bstart, e.end - e.bstart, False)
    return _bslice(buf, e.bstart, e.end)


cpdef Py_ssize_t _decoded_size(bytes buf, _Entity e):
    cdef Py_ssize_t m
    if e.enc == b"base64":
        m = _b64_count(<const unsigned char*>PyBytes_AS_STRING(buf) + e.bstart, e.end - e.bstart)
        return m // 4 * 3 + (0, 0, 1, 2)[m & 3]
    if e.enc == b"quoted-printable":
        return _qp_size(<const unsigned char*>PyBytes_AS_STRING(buf) + e.bstart, e.end - e.bstart)
    return e.end - e.bstart


cpdef dict _jmap_node(bytes buf, _Entity e, part_id, dict texts):
    """RFC 8621 4.1.4 EmailBodyPart of an entity (a message entity = its content)."""
    hdr = e.hdr
    mtype = (e.mtype + b"/" + e.subtype).decode("latin-1")
    name = _param(e.dparams, "filename")
    if name is None:
        name = _param(e.ptext, "name")
    charset = _param(e.ptext, "charset")
    if charset is None and e.mtype == b"text":
        charset = "us-ascii"
    cid = _nvalue(hdr, "content-id")
    if cid is not None:
        cid = bytes_to_str(cid.strip(b"<> \t"))
    loc = _nvalue(hdr, "content-location")
    langs = _language(hdr)
    node = {
        "partId": None if e.children is not None else part_id,
        "headers": _jmap_headers(buf, e.fields),
        "name": name,
        "type": mtype,
        "charset": charset,
        "disposition": e.dtype.decode("latin-1") if e.dtype is not None else None,
        "cid": cid,
        "language": [bytes_to_str(x) for x in langs] if langs is not None else None,
        "location": bytes_to_str(loc) if loc is not None else None,
    }
    if e.children is not None:
        node["size"] = 0
        node["subParts"] = [_jmap_node(buf, c, c.section, texts) for c in e.children]
    else:
        if e.inner is not None:
            _inner_texts(buf, e.inner, texts)
        if e.mtype == b"text":
            data = _body_data(buf, e)
            node["size"] = len(data)
            if len(data) > MAX_TEXT:
                data = data[:MAX_TEXT]
            text = decode_text(data, charset)
            if e.subtype == b"html":
                text = html_to_text(text)
            texts[part_id] = text
        else:
            node["size"] = _decoded_size(buf, e)
    return node


cpdef _inner_texts(bytes buf, _Entity e, dict texts):
    """Text of the parts of an encapsulated message (searchable, not JMAP)."""
    if e.children is not None:
        for c in e.children:
            _inner_texts(buf, c, texts)
    elif e.inner is not None:
        _inner_texts(buf, e.inner, texts)
    elif e.mtype == b"text":
        data = _body_data(buf, e)[:MAX_TEXT]
        text = decode_text(data, _param(e.ptext, "charset"))
        if e.subtype == b"html":
            text = html_to_text(text)
        texts["#%d" % len(texts)] = text


cpdef bint _inline_media(str t):
    return t.startswith("image/") or t.startswith("audio/") or t.startswith("video/")


cpdef parse_structure(list parts, str multipart_type, bint in_alternative, list html_body, list text_body, list attachments):
    """RFC 8621 section 4.1.4 parseStructure, on EmailBodyPart dicts."""
    text_len = len(text_body) if text_body is not None else -1
    html_len = len(html_body) if html_body is not None else -1
    for i, part in enumerate(parts):
        ptype = part["type"]
        is_multipart = ptype.startswith("multipart/")
        is_inline = (
            part["disposition"] != "attachment"
            and (ptype == "text/plain" or ptype == "text/html" or _inline_media(ptype))
            and (i == 0 or (multipart_type != "related" and (_inline_media(ptype) or not part["name"])))
        )
        if is_multipart:
            sub = ptype.split("/", 1)[1]
            parse_structure(
                part["subParts"], sub, in_alternative or sub == "alternative",
                html_body, text_body, attachments,
            )
        elif is_inline:
            if multipart_type == "alternative":
                # the RFC's pseudo-code pushes unconditionally; a list is null
                # here when an outer alternative already chose the other type
                # (alternative > mixed > [text/plain, alternative > html]):
                # that part then goes to neither body
                if ptype == "text/plain":
                    if text_body is not None:
                        text_body.append(part["partId"])
                elif ptype == "text/html":
                    if html_body is not None:
                        html_body.append(part["partId"])
                else:
                    attachments.append(part["partId"])
                continue
            elif in_alternative:
                if ptype == "text/plain":
                    html_body = None
                if ptype == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(part["partId"])
            if html_body is not None:
                html_body.append(part["partId"])
            if (text_body is None or html_body is None) and _inline_media(ptype):
                attachments.append(part["partId"])
        else:
            attachments.append(part["partId"])
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_len == len(text_body) and html_len != len(html_body):
            text_body.extend(html_body[html_len:])
        if html_len == len(html_body) and text_len != len(text_body):
            html_body.extend(text_body[text_len:])


cpdef _attachment_names(dict node, list out):
    if node.get("subParts") is not None:
        for c in node["subParts"]:
            _attachment_names(c, out)
    elif node["name"]:
        out.append(node["name"])


cdef str _search_header(bytes raw, str name, Py_ssize_t vs, Py_ssize_t fe):
    """normalize(name + ": " + decode_words(unfold(raw[vs:fe]))), in one pass
    over the bytes when the value is ASCII without encoded words."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t k, w, nlen = PyUnicode_GET_LENGTH(name)
    cdef const unsigned char* nm
    cdef unsigned char* q
    cdef unsigned char c, f
    cdef bint space = True, sp
    for k in range(vs, fe):
        c = p[k]
        if c >= 128 or (c == 61 and k + 1 < fe and p[k + 1] == 63):
            return normalize(name + ": " + decode_words(unfold(raw[vs:fe])))
    if not PyUnicode_IS_ASCII(name):  # split_header gives ASCII names
        return normalize(name + ": " + decode_words(unfold(raw[vs:fe])))
    nm = <const unsigned char*>PyUnicode_DATA(name)
    q = <unsigned char*>PyMem_Malloc(nlen + 3 + (fe - vs))
    if q == NULL:
        raise MemoryError
    try:
        for k in range(nlen):
            q[k] = _ASCII_FOLD[nm[k]]
        q[nlen] = 58
        w = nlen + 1
        for k in range(vs, fe):
            c = p[k]
            if c == 13 or c == 10:  # unfold drops line breaks, no blank
                continue
            f = _ASCII_FOLD[c]
            sp = f == 0xFF
            q[w] = 32
            w += space & (not sp)
            q[w] = f
            w += not sp
            space = sp
        return PyUnicode_DecodeASCII(<const char*>q, w, NULL)
    finally:
        PyMem_Free(q)


cdef enum:
    _PREVIEW_LEN = 256  # PREVIEW_LEN


cdef str _preview(str t):
    """" ".join(t[:PREVIEW_LEN * 8].split())[:PREVIEW_LEN], without the words."""
    cdef Py_UCS4 buf[_PREVIEW_LEN]
    cdef int kind = PyUnicode_KIND(t)
    cdef void* data = PyUnicode_DATA(t)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(t), k, w = 0
    cdef Py_UCS4 c
    cdef bint pending = False
    if n > _PREVIEW_LEN * 8:
        n = _PREVIEW_LEN * 8
    for k in range(n):
        c = PyUnicode_READ(kind, data, k)
        if _is_space(c):
            pending = w > 0
            continue
        if pending:
            if w >= _PREVIEW_LEN:
                break
            buf[w] = 32
            w += 1
            pending = False
        if w >= _PREVIEW_LEN:
            break
        buf[w] = c
        w += 1
    return PyUnicode_FromKindAndData(4, buf, w)


cpdef tuple build(bytes raw):
    """Index one message: the MessageIndex fields, in declaration order."""
    counter = [0]
    root = _parse(raw, 0, len(raw), "", 0, True, (b"text", b"plain"), counter)
    hdr = root.hdr
    parts = []
    _parts(root, True, parts)
    env = envelope(root)
    bs = bodystructure(root, True)
    body = bodystructure(root, False)
    lines = count_lines(raw, root.bstart, len(raw))

    subject_raw = hdr.get("subject")
    subject = decode_words(unfold(subject_raw)) if subject_raw is not None else ""
    sent_at, sent_at_tz = _date(hdr.get("date"))
    mids = _ids(hdr.get("message-id"))
    message_id = mids[0] if mids else None

    search_headers = []
    for name, _fs, vs, fe in root.fields:
        search_headers.append(_search_header(raw, name, vs, fe))
    texts: dict[str, str] = {}
    jmap = _jmap_node(raw, root, "1", texts)
    text_body: list = []
    html_body: list = []
    attachments: list = []
    parse_structure([jmap], "mixed", False, html_body, text_body, attachments)
    names: list[str] = []
    _attachment_names(jmap, names)
    search_body = _normalize_join(list(texts.values()) + names)
    preview = ""
    for pid in text_body:
        t = texts.get(pid)
        if t:
            preview = _preview(t)
            if preview:
                break
    return (
        len(raw),
        root.bstart,
        lines,
        env,
        bs,
        body,
        tuple(parts),
        subject,
        _addresses_text(root, "from"),
        _addresses_text(root, "to"),
        _addresses_text(root, "cc"),
        _addresses_text(root, "bcc"),
        _addresses_text(root, "reply-to"),
        _addresses_text(root, "sender"),
        sent_at,
        sent_at_tz,
        message_id,
        _ids(hdr.get("in-reply-to")),
        _ids(hdr.get("references")),
        "\n".join(search_headers),
        search_body,
        preview,
        bool(attachments),
        jmap,
        tuple(text_body),
        tuple(html_body),
        tuple(attachments),
    )
