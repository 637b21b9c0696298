"""Message indexer hot paths, pure Python: the source of truth.

``msgindex_c.pyx`` has the same functions, typed; ``tests/speedups`` requires
identical results from both.  ``mailaccess.mime.index`` is the public face:
it calls :func:`build` once per message and wraps the tuple it returns.

Everything here works on the raw message bytes and byte offsets into them;
nothing uses ``email.parser``.  The functions never raise on malformed mail:
a broken message still gets a (best effort) index.
"""
from __future__ import annotations

import binascii
import calendar
import codecs
import html
import re
from email.utils import parsedate_tz

from mailaccess.mime.parts import Part

MAX_DEPTH = 20  # nesting of multiparts / message/rfc822 before a part is a leaf
MAX_PARTS = 2000  # parts per message; later multiparts become leaves
MAX_TEXT = 1 << 20  # decoded bytes per text part that feed search text
PREVIEW_LEN = 256

# ---------------------------------------------------------------- bytes level

_NAME_CHARS = bytes(c for c in range(33, 127) if c != 58)
_QUOTABLE = bytes(c for c in range(1, 128) if c not in (10, 13, 34, 92))
_B64_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_NONALPHA = bytes(c for c in range(256) if c not in _B64_ALPHA)


def split_header(buf: bytes, start: int, end: int):
    """Split the header block at buf[start:end].

    Returns ``(fields, body_start)``; each field is ``(name, field_start,
    value_start, field_end)`` with field_end just past the field's last line
    break.  The header ends at a blank line (body_start after it), at a line
    that is not a header field (body_start at that line) or at ``end``.
    """
    end = min(end, len(buf))
    start = max(start, 0)
    fields = []
    name = None
    fstart = vstart = 0
    pos = start
    while pos < end:
        nl = buf.find(b"\n", pos, end)
        if nl < 0:
            line_end = content_end = end
        else:
            line_end = nl + 1
            content_end = nl
        if content_end > pos and buf[content_end - 1] == 13:
            content_end -= 1
        if content_end == pos:  # blank line
            if name is not None:
                fields.append((name, fstart, vstart, pos))
            return fields, line_end
        c = buf[pos]
        if c == 32 or c == 9:
            if name is None:
                return fields, pos
            pos = line_end
            continue
        colon = buf.find(b":", pos, content_end)
        if colon < 0:
            break
        fname = buf[pos:colon].rstrip(b" \t")
        if not fname or fname.translate(None, _NAME_CHARS):
            break
        if name is not None:
            fields.append((name, fstart, vstart, pos))
        name = fname.decode("ascii")
        fstart = pos
        vstart = colon + 1
        pos = line_end
    if name is not None:
        fields.append((name, fstart, vstart, pos))
    return fields, pos


def find_parts(buf: bytes, start: int, end: int, boundary: bytes):
    """Body spans of the parts of the multipart body buf[start:end].

    Returns ``(spans, closed)``; the line break before a delimiter belongs to
    the delimiter.  Without a close delimiter the last part runs to ``end``.
    """
    end = min(end, len(buf))
    start = max(start, 0)
    delim = b"--" + boundary
    dlen = len(delim)
    spans = []
    part_start = -1
    pos = start
    while True:
        i = buf.find(delim, pos, end)
        if i < 0:
            break
        if i != start and buf[i - 1] != 10:
            pos = i + 1
            continue
        j = i + dlen
        close = j + 1 < end and buf[j] == 45 and buf[j + 1] == 45
        if close:
            j += 2
        nl = buf.find(b"\n", j, end)
        line_end = end if nl < 0 else nl
        if buf[j:line_end].strip(b" \t\r"):
            pos = i + 1
            continue
        if part_start >= 0:
            pe = i
            if pe > part_start and buf[pe - 1] == 10:
                pe -= 1
                if pe > part_start and buf[pe - 1] == 13:
                    pe -= 1
            spans.append((part_start, pe))
        if close:
            return spans, True
        part_start = end if nl < 0 else nl + 1
        pos = part_start
    if part_start >= 0:
        spans.append((part_start, end))
    return spans, False


def count_lines(buf: bytes, start: int, end: int) -> int:
    """Number of lines in buf[start:end]: the line ends it holds.  A last line
    without its own CRLF is not counted (before a MIME boundary that CRLF
    belongs to the delimiter), as Dovecot and Cyrus count body-fld-lines."""
    end = min(end, len(buf))
    start = max(start, 0)
    if end <= start:
        return 0
    return buf.count(b"\n", start, end)


def unfold(value: bytes) -> bytes:
    """A header value with its line breaks removed and outer blanks stripped."""
    return value.translate(None, b"\r\n").strip(b" \t")


def decode_b64(data: bytes) -> bytes:
    """Lenient base64: ignore non-alphabet bytes and '=', tolerate bad padding."""
    clean = data.translate(None, _B64_NONALPHA)
    rem = len(clean) & 3
    if rem == 1:
        clean = clean[:-1]
    elif rem:
        clean += b"=" * (4 - rem)
    return binascii.a2b_base64(clean)


def b64_size(data: bytes) -> int:
    """len(decode_b64(data)) without decoding."""
    n = len(data) - len(data.translate(None, _B64_ALPHA))
    return n // 4 * 3 + (0, 0, 1, 2)[n & 3]


def decode_qp(data: bytes) -> bytes:
    """Quoted-printable body decoding (RFC 2045 6.7), line by line.

    A line ends at LF (a CR before it belongs to the line break).  Trailing
    spaces and tabs are transport padding and go (rule 3); a line that then
    ends in "=" is a soft line break: the "=" and the line break go (rule 5).
    Escapes in the rest follow binascii.a2b_qp (bad ones kept as written); a
    hard line break is kept as written."""
    out = []
    i, n = 0, len(data)
    while i < n:
        lf = data.find(b"\n", i)
        if lf < 0:
            tstart = term = n
        else:
            tstart, term = lf, lf + 1
            if tstart > i and data[tstart - 1] == 13:
                tstart -= 1
        line = data[i:tstart].rstrip(b" \t")
        if line.endswith(b"="):
            out.append(binascii.a2b_qp(line[:-1]))
        else:
            out.append(binascii.a2b_qp(line))
            out.append(data[tstart:term])
        i = term
    return b"".join(out)


def decode_cte(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return decode_b64(data)
    if encoding == "quoted-printable":
        return decode_qp(data)
    return data


def bytes_to_str(data: bytes) -> str:
    """Header bytes as text: UTF-8, else latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


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


def _codec_name(charset: str) -> str | None:
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


def decode_charset(data: bytes, charset: str) -> str | None:
    """Bytes in a MIME charset as text (bad bytes replaced); None if unknown."""
    name = _codec_name(charset)
    if name is None:
        return None
    if not name:
        return bytes_to_str(data)
    try:
        return data.decode(name, "replace")
    except Exception:  # a codec that cannot even replace (idna & co)
        return None


def decode_text(data: bytes, charset: str | None) -> str:
    """Body text: by charset, unknown charset as UTF-8 with replacement."""
    if charset:
        text = decode_charset(data, charset)
        if text is not None:
            return text
        return data.decode("utf-8", "replace")
    return bytes_to_str(data)


_EWORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def decode_words(value: bytes) -> str:
    """RFC 2047: a raw header value with its encoded words decoded.

    Adjacent encoded words (only white space between them) are joined, bytes
    of neighbours in the same charset first, so a character split across two
    words survives.  An encoded word in an unknown charset is kept as is.
    """
    if b"=?" not in value:
        return bytes_to_str(value)
    out = []
    pos = 0
    cs = None  # charset of the pending run of words
    pending = []  # its decoded bytes, joined once at the run's end (never +=)
    run_start = 0
    run_end = 0
    for m in _EWORD.finditer(value):
        gap = value[pos : m.start()]
        if cs is None or gap.strip(b" \t\r\n"):
            if cs is not None:
                out.append(_flush_words(value, cs, b"".join(pending), run_start, run_end))
                cs = None
            if gap:
                out.append(bytes_to_str(gap))
        charset = m.group(1).decode("latin-1")
        text = m.group(3)
        if m.group(2) in b"bB":
            data = decode_b64(text)
        else:
            data = binascii.a2b_qp(text, header=True)
        if cs is not None and charset.lower() == cs.lower():
            pending.append(data)
        else:
            if cs is not None:
                out.append(_flush_words(value, cs, b"".join(pending), run_start, run_end))
            cs = charset
            pending = [data]
            run_start = m.start()
        run_end = m.end()
        pos = run_end
    if cs is not None:
        out.append(_flush_words(value, cs, b"".join(pending), run_start, run_end))
    if pos < len(value):
        out.append(bytes_to_str(value[pos:]))
    return "".join(out)


def _flush_words(value: bytes, charset: str, data: bytes, start: int, end: int) -> str:
    text = decode_charset(data, charset)
    if text is None:
        return value[start:end].decode("latin-1")
    return text


def normalize(text: str) -> str:
    """Search normalisation: casefold, white space runs to one space, trimmed."""
    return " ".join(text.casefold().split())


# html_to_text is what these three substitutions do, in order:
#   <(script|style|head|title)\b.*?</\1\s*>|<!--.*?-->   -> " "
#   </?(?:br|p|div|tr|li|ul|ol|h[1-6]|table|hr|blockquote|pre|td|th)\b[^>]*>  -> "\n"
#   <[^>]*>                                                 -> ""
# but re would scan to the end of the text from every "<" that has no closing
# part (quadratic: 420 KB of "<script" took 20 s).  The last two only scan up
# to the last ">" (see _tag_pass).  For the first, each opening is matched by
# re (bounded work), and the search for its closing part is remembered: the
# first closing part at or after q is also the first at or after any later q'
# up to it, and none after q means none after q'.  So every character is
# searched a bounded number of times.
_DROP_OPEN = re.compile(r"<(?:(script|style|head|title)\b|!--)", re.I)
_HTML_BREAK = re.compile(
    r"</?(?:br|p|div|tr|li|ul|ol|h[1-6]|table|hr|blockquote|pre|td|th)\b[^>]*>", re.I
)
_HTML_TAG = re.compile(r"<[^>]*>")
# re's back reference under IGNORECASE compares simple lowercase mappings;
# the characters whose simple lowercase is an ASCII letter besides its two
# cases (str.lower() gives the full mapping, two characters for U+0130)
_LOWER_EXTRA = {"i": "\u0130", "k": "\u212a"}
_CLOSE_RE: dict[str, re.Pattern] = {}


def _simple_lower(c: str) -> str:
    return "i" if c == "\u0130" else c.lower()


def _close_re(opening: str) -> re.Pattern:
    r"""</\1\s*> for the tag name as written in the opening."""
    key = "".join(map(_simple_lower, opening))
    rx = _CLOSE_RE.get(key)
    if rx is None:
        classes = []
        for c in key:
            same = c + c.upper() + _LOWER_EXTRA.get(c, "") if c.isascii() else c
            classes.append("[" + re.escape(same) + "]")
        rx = _CLOSE_RE[key] = re.compile("</" + "".join(classes) + r"\s*>")
    return rx


class _NextMatch:
    """The first match of one pattern at or after a growing position."""

    __slots__ = ("find", "start", "end")

    def __init__(self, find):
        self.find = find        # q -> (match start, match end) or None
        self.start = -1         # searched from here ...
        self.end = None         # ... and found this (start, end), or None

    def at_or_after(self, q: int):
        if self.start >= 0 and self.start <= q and (self.end is None or self.end[0] >= q):
            return self.end
        self.start, self.end = q, self.find(q)
        return self.end


def _search(rx: re.Pattern, text: str):
    def find(q):
        m = rx.search(text, q)
        return (m.start(), m.end()) if m else None
    return find


def _literal(text: str, lit: str):
    def find(q):
        i = text.find(lit, q)
        return (i, i + len(lit)) if i >= 0 else None
    return find


def _html_pass(text: str, opening, repl: str) -> str:
    """One substitution: opening(text, i) -> (end of the opening, closing
    search) at a "<", or None; the match runs to the end of the closing."""
    out = []
    last = r = 0
    while True:
        i = text.find("<", r)
        if i < 0:
            break
        o = opening(i)
        found = o[1].at_or_after(o[0]) if o is not None else None
        if found is None:
            r = i + 1
            continue
        out.append(text[last:i])
        out.append(repl)
        last = r = found[1]
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _drop_pass(text: str) -> str:
    comments = _NextMatch(_literal(text, "-->"))
    closers: dict[str, _NextMatch] = {}

    def opening(i):
        m = _DROP_OPEN.match(text, i)
        if m is None:
            return None
        name = m.group(1)
        if name is None:
            return m.end(), comments
        rx = _close_re(name)
        nm = closers.get(rx.pattern)
        if nm is None:
            nm = closers[rx.pattern] = _NextMatch(_search(rx, text))
        return m.end(), nm

    return _html_pass(text, opening, repl=" ")


def _tag_pass(rx: re.Pattern, text: str, repl: str) -> str:
    """rx ends in [^>]*>: every match ends at a ">", so rx only scans up to
    the last one; cut there, every scan that starts ends in a match."""
    k = text.rfind(">") + 1
    return rx.sub(repl, text[:k]) + text[k:] if k else text


def html_to_text(text: str) -> str:
    """HTML reduced to its text: scripts/styles dropped, block tags to line breaks."""
    if "<" in text:
        text = _drop_pass(text)
        text = _tag_pass(_HTML_BREAK, text, "\n")
        text = _tag_pass(_HTML_TAG, text, "")
    if "&" in text:
        text = html.unescape(text)
    return text


# ------------------------------------------------------ structured header values

_ATOM = re.compile(rb'[^ \t\r\n()<>@,;:"\[]+')

# token kinds: 0 word (atom or domain literal), 1 quoted string, 2 comment,
# otherwise the special character itself (< > @ , ; :)
_T_WORD = 0
_T_QUOTED = 1
_T_COMMENT = 2


def _quoted(value: bytes, i: int):
    """Quoted string starting after the DQUOTE at i-1: (content, next index)."""
    n = len(value)
    out = []
    seg = i
    while i < n:
        c = value[i]
        if c == 34:
            out.append(value[seg:i])
            return b"".join(out), i + 1
        if c == 92 and i + 1 < n:
            out.append(value[seg:i])
            seg = i + 1
            i += 2
            continue
        i += 1
    out.append(value[seg:n])
    return b"".join(out), n


def _comment(value: bytes, i: int):
    """Comment starting after the '(' at i-1: (content, next index)."""
    n = len(value)
    depth = 1
    out = []
    seg = i
    while i < n:
        c = value[i]
        if c == 92 and i + 1 < n:
            out.append(value[seg:i])
            seg = i + 1
            i += 2
            continue
        if c == 40:
            depth += 1
        elif c == 41:
            depth -= 1
            if depth == 0:
                out.append(value[seg:i])
                return b"".join(out), i + 1
        i += 1
    out.append(value[seg:n])
    return b"".join(out), n


def tokenize(value: bytes):
    """RFC 5322 lexical tokens of a structured header value: (kinds, values)."""
    kinds = []
    vals = []
    n = len(value)
    i = 0
    while i < n:
        c = value[i]
        if c == 32 or c == 9 or c == 13 or c == 10:
            i += 1
        elif c == 34:
            v, i = _quoted(value, i + 1)
            kinds.append(_T_QUOTED)
            vals.append(v)
        elif c == 40:
            v, i = _comment(value, i + 1)
            kinds.append(_T_COMMENT)
            vals.append(v)
        elif c == 41:
            i += 1
        elif c == 91:
            j = value.find(b"]", i + 1)
            j = n if j < 0 else j + 1
            kinds.append(_T_WORD)
            vals.append(value[i:j])
            i = j
        elif c in b"<>@,;:":
            kinds.append(c)
            vals.append(value[i : i + 1])
            i += 1
        else:
            m = _ATOM.match(value, i)
            kinds.append(_T_WORD)
            vals.append(m.group())
            i = m.end()
    return kinds, vals


def _addr_spec(kinds, vals, lo: int, hi: int):
    """(mailbox, host) from tokens lo..hi of an addr-spec; host b"" when missing."""
    at = -1
    for k in range(lo, hi):
        if kinds[k] == 64:
            at = k
    local = []
    dom = []
    for k in range(lo, hi):
        kind = kinds[k]
        if kind == _T_COMMENT or k == at:
            continue
        if kind == _T_WORD or kind == _T_QUOTED or kind == 64:
            (local if at < 0 or k < at else dom).append(vals[k])
    return b"".join(local), b"".join(dom)


def parse_addresses(value: bytes):
    """An address-list header value as IMAP address tuples.

    Each item is ``(name, adl, mailbox, host)`` of bytes or None, names left
    RFC 2047 encoded.  Groups are ``(None, None, name, None)`` ...
    ``(None, None, None, None)``.  A missing domain is ``b""``.
    """
    kinds, vals = tokenize(value)
    n = len(kinds)
    out = []
    in_group = False
    i = 0
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
        words = [vals[k] for k in range(i, j) if kinds[k] <= _T_QUOTED]
        comment = None
        for k in range(i, j):
            if kinds[k] == _T_COMMENT and vals[k].strip():
                comment = vals[k].strip()
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
            if lo < k and kinds[lo] == 64:  # obsolete route: @a,@b:
                r = lo
                while r < k and kinds[r] != 58:
                    r += 1
                if r < k:
                    adl = b"".join(vals[x] for x in range(lo, r) if kinds[x] != _T_COMMENT)
                    lo = r + 1
            mailbox, host = _addr_spec(kinds, vals, lo, k)
            out.append((name or None, adl, mailbox, host))
            i = k + 1
            while i < n and kinds[i] != 44 and kinds[i] != 59:
                i += 1
            continue
        has_addr = False
        for k in range(i, j):
            if kinds[k] != _T_COMMENT:
                has_addr = True
                break
        if has_addr:
            mailbox, host = _addr_spec(kinds, vals, i, j)
            out.append((comment, None, mailbox, host))
        i = j
    if in_group:
        out.append((None, None, None, None))
    return out


def parse_params(value: bytes):
    """``value; attr=val; ...`` (Content-Type, Content-Disposition).

    Returns ``(main, params)``: main lower-cased and stripped of comments,
    params as ``[(attr_lower, value)]`` in order, quoted values unescaped.
    """
    n = len(value)
    semi = value.find(b";")
    if semi < 0:
        semi = n
    main = value[:semi]
    if b"(" in main:
        main = re.sub(rb"\([^)]*\)?", b"", main)
    main = main.strip(b" \t\r\n").lower()
    params = []
    i = semi + 1
    while i < n:
        c = value[i]
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
        attr = value[i:eq].strip(b" \t\r\n").lower()
        i = eq + 1
        while i < n and value[i] in b" \t\r\n":
            i += 1
        if i < n and value[i] == 34:
            v, i = _quoted(value, i + 1)
            semi = value.find(b";", i)
            i = n if semi < 0 else semi
        else:
            v = value[i:semi].strip(b" \t\r\n")
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


def params_2231(params):
    """Merge RFC 2231 continuations and charsets.

    Returns ``[(attr, wire_attr, wire_value, text)]``: ``wire_*`` what
    BODYSTRUCTURE shows (``attr*`` + ``charset'lang'%XX`` when the value was
    extended), ``text`` the decoded value (RFC 2047 words decoded too).
    """
    if not any(b"*" in a for a, _ in params):
        return [(a.decode("latin-1"), a, v, decode_words(v)) for a, v in params]
    order = []
    groups: dict[bytes, list] = {}
    for attr, v in params:
        base = attr
        idx = -1
        ext = False
        if attr.endswith(b"*"):
            ext = True
            base = attr[:-1]
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


def imap_string(v: bytes) -> bytes:
    """Quoted string when safe, else a literal."""
    if len(v) > 1000 or v.translate(None, _QUOTABLE):
        return b"{%d}\r\n" % len(v) + v
    return b'"' + v + b'"'


def imap_nstring(v) -> bytes:
    if v is None:
        return b"NIL"
    return imap_string(v)


def imap_addresses(items) -> bytes:
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


def imap_params(params) -> bytes:
    if not params:
        return b"NIL"
    out = []
    for attr, value in params:
        out.append(imap_string(attr))
        out.append(imap_string(value))
    return b"(" + b" ".join(out) + b")"


# ---------------------------------------------------------------- MIME walk


class _Entity:
    __slots__ = (
        "section", "hstart", "bstart", "end", "fields", "hdr", "mtype", "subtype",
        "params", "ptext", "enc", "children", "inner", "lines", "dtype", "dparams", "addrs",
    )


def _header_map(buf, fields):
    hdr = {}
    for name, _fs, vs, fe in fields:
        key = name.lower()
        if key not in hdr:
            hdr[key] = buf[vs:fe]
    return hdr


def _join(prefix: str, n: int) -> str:
    return f"{prefix}.{n}" if prefix else str(n)


def _parse(buf, start, end, section, depth, is_message, default_type, counter):
    e = _Entity()
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


def _parts(e, is_message, out):
    """Depth-first Part spans (see mailaccess.mime.parts)."""
    ctype = (e.mtype + b"/" + e.subtype).decode("latin-1")
    charset = _param(e.ptext, "charset")
    inner = e.inner.bstart if e.inner is not None else -1
    enc = e.enc.decode("latin-1")
    if is_message:
        if not e.section:
            out.append(Part("", e.hstart, e.bstart, e.end, ctype, enc, charset, inner))
        if e.children is None:
            out.append(Part(_join(e.section, 1), e.hstart, e.bstart, e.end, ctype, enc, charset, inner))
    else:
        out.append(Part(e.section, e.hstart, e.bstart, e.end, ctype, enc, charset, inner))
    if e.children is not None:
        for c in e.children:
            _parts(c, False, out)
    elif e.inner is not None:
        _parts(e.inner, True, out)


def _param(ptext, name: str):
    for attr, _wa, _wv, text in ptext:
        if attr == name:
            return text
    return None


def _nvalue(hdr, name: str):
    v = hdr.get(name)
    return None if v is None else unfold(v)


def envelope(e) -> bytes:
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


def _addr_field(e, name):
    """Parsed address header of an entity (parsed once, cached on it)."""
    items = e.addrs.get(name)
    if items is None:
        v = e.hdr.get(name)
        items = [] if v is None else parse_addresses(unfold(v))
        e.addrs[name] = items
    return items


def _language(hdr):
    v = hdr.get("content-language")
    if v is None:
        return None
    langs = [x.strip() for x in unfold(v).split(b",")]
    return [x for x in langs if x] or None


def bodystructure(e, ext: bool) -> bytes:
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
    wire = [(wa.upper(), wv) for _a, wa, wv, _t in e.ptext]
    if e.mtype == b"text" and not any(_a == "charset" for _a, _wa, _wv, _t in e.ptext):
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


def _ext_tail(e) -> bytes:
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


def _addresses_text(e, name):
    """[(decoded name or None, email)] with groups flattened."""
    out = []
    for dname, _adl, mailbox, host in _addr_field(e, name):
        if host is None:
            continue
        email = bytes_to_str(mailbox + b"@" + host if host else mailbox)
        out.append((decode_words(dname) if dname is not None else None, email))
    return tuple(out)


_MSGID = re.compile(rb"<([^<>]*)>")


def _ids(value):
    if value is None:
        return ()
    found = [unfold(m).translate(None, b" \t") for m in _MSGID.findall(value)]
    if not found:
        found = [w for w in unfold(value).split() if b"@" in w]
    return tuple(bytes_to_str(x) for x in found if x)


def _date(value):
    if value is None:
        return None, None
    try:
        t = parsedate_tz(bytes_to_str(unfold(value)))
        if t is None:
            return None, None
        tz = t[9] or 0
        return calendar.timegm(t[:9]) - tz, tz // 60
    except Exception:
        return None, None


def _jmap_headers(buf, fields):
    out = []
    for name, _fs, vs, fe in fields:
        v = buf[vs:fe]
        if v.endswith(b"\n"):
            v = v[:-2] if v.endswith(b"\r\n") else v[:-1]
        out.append({"name": name, "value": bytes_to_str(v)})
    return out


def _decoded_size(buf, e) -> int:
    if e.enc == b"base64":
        return b64_size(buf[e.bstart : e.end])
    if e.enc == b"quoted-printable":
        return len(decode_qp(buf[e.bstart : e.end]))
    return e.end - e.bstart


def _jmap_node(buf, e, part_id, texts):
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
            data = decode_cte(buf[e.bstart : e.end], e.enc.decode("latin-1"))
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


def _inner_texts(buf, e, texts):
    """Text of the parts of an encapsulated message (searchable, not JMAP)."""
    if e.children is not None:
        for c in e.children:
            _inner_texts(buf, c, texts)
    elif e.inner is not None:
        _inner_texts(buf, e.inner, texts)
    elif e.mtype == b"text":
        data = decode_cte(buf[e.bstart : e.end], e.enc.decode("latin-1"))[:MAX_TEXT]
        text = decode_text(data, _param(e.ptext, "charset"))
        if e.subtype == b"html":
            text = html_to_text(text)
        texts["#%d" % len(texts)] = text


def _inline_media(t: str) -> bool:
    return t.startswith("image/") or t.startswith("audio/") or t.startswith("video/")


def parse_structure(parts, multipart_type, in_alternative, html_body, text_body, attachments):
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


def _attachment_names(node, out):
    if node.get("subParts") is not None:
        for c in node["subParts"]:
            _attachment_names(c, out)
    elif node["name"]:
        out.append(node["name"])


def build(raw: bytes):
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
        search_headers.append(normalize(name + ": " + decode_words(unfold(raw[vs:fe]))))
    texts: dict[str, str] = {}
    jmap = _jmap_node(raw, root, "1", texts)
    text_body: list = []
    html_body: list = []
    attachments: list = []
    parse_structure([jmap], "mixed", False, html_body, text_body, attachments)
    body_texts = [normalize(t) for t in texts.values()]
    names: list[str] = []
    _attachment_names(jmap, names)
    body_texts.extend(normalize(x) for x in names)
    preview = ""
    for pid in text_body:
        t = texts.get(pid)
        if t:
            preview = " ".join(t[: PREVIEW_LEN * 8].split())[:PREVIEW_LEN]
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
        "\n".join(x for x in body_texts if x),
        preview,
        bool(attachments),
        jmap,
        tuple(text_body),
        tuple(html_body),
        tuple(attachments),
    )
