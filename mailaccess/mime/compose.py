"""Compose an RFC 5322 message from structured parts (sans-IO).

The inverse of the message index: JMAP Email/set create (and later
ActiveSync and the outbound queue) describe a message as header values and a
tree of body parts; this module turns that into bytes any MIME parser reads
back as the same structure.

* Header values are formatted from their parsed forms (``format_text``,
  ``format_addresses``, ``format_grouped``, ``format_message_ids``,
  ``format_date``, ``format_urls``, ``format_raw``): non-ASCII text becomes
  RFC 2047 encoded words (UTF-8, B encoding, at most 75 characters each),
  and every header line is folded at white space to stay under 78 characters
  where it can and under 998 always (``ComposeError`` when it cannot).
* Parameters (``name``, ``filename``) that are not plain ASCII, or are long,
  use RFC 2231 (``filename*0*=utf-8''...``) with continuations.
* Leaf bodies get a Content-Transfer-Encoding chosen from their bytes: 7bit
  when they are already short-lined US-ASCII with CRLF line ends, else
  quoted-printable for mostly-ASCII text, else base64; message/* parts stay
  7bit/8bit when their lines allow (RFC 2046 5.2.1).  Every body line is
  under 998 octets.
* Multipart boundaries start with ``=_`` (which neither quoted-printable nor
  base64 output can contain) and are checked against the encoded children.
* ``compose`` adds MIME-Version, and Date and Message-ID when missing
  (RFC 8621 §4.6: the server MUST add them).

No I/O: the clock and the random source are arguments with defaults.
"""
from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .. import _speedups

__all__ = [
    "ComposeError", "BodyPart", "compose", "render_part",
    "format_text", "format_addresses", "format_grouped", "format_message_ids",
    "format_date", "format_urls", "format_raw", "fold", "parse_date",
    "encode_qp", "choose_encoding", "html_as_text",
]

MAX_LINE = 998          # RFC 5322 2.1.1: octets per line, CRLF excluded
FOLD_AT = 78            # ... SHOULD be no more than 78
_EW_BYTES = 45          # UTF-8 bytes per encoded word: 60 base64 chars + 12 = 72 <= 75
_CRLF = b"\r\n"


class ComposeError(ValueError):
    """A value that cannot be written as a valid header or body."""


# ----------------------------------------------------------------- header values

_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$")


def _encoded_words(text: str) -> list[str]:
    """TEXT as RFC 2047 B-encoded UTF-8 words, never splitting a character."""
    words, chunk, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8", "surrogatepass"))
        if size + n > _EW_BYTES and chunk:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    if chunk:
        words.append("".join(chunk))
    return ["=?utf-8?b?" + base64.b64encode(w.encode("utf-8", "surrogatepass")).decode("ascii")
            + "?=" for w in words]


def _clean(text: str) -> str:
    """Control characters (line breaks included) cannot stand in a parsed
    form's value: each becomes a space."""
    return _CTL.sub(" ", text)


def _needs_words(text: str) -> bool:
    return (not text.isascii() or "=?" in text
            or any(len(w) > MAX_LINE - 100 for w in text.split(" ")))


def format_text(text: str) -> str:
    """An unstructured value (Subject, Comments, the Text form)."""
    text = _clean(text)
    if _needs_words(text):
        return " ".join(_encoded_words(text))
    return text


def _phrase(name: str) -> str:
    name = _clean(name)
    if not name.strip():
        return ""
    if _needs_words(name):
        return " ".join(_encoded_words(name))
    if _ATEXT_PHRASE.match(name) and name == name.strip() and "  " not in name:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr_spec(addr: str) -> str:
    if _CTL.search(addr) or any(c in addr for c in "<>") or " " in addr.strip():
        raise ComposeError(f"not an email address: {addr!r}")
    return addr.strip()


def format_address(name: str | None, addr: str) -> str:
    spec = _addr_spec(addr)
    ph = _phrase(name) if name else ""
    return f"{ph} <{spec}>" if ph else spec


def format_addresses(addrs: Iterable[tuple[str | None, str]]) -> str:
    """The Addresses form: [(name, email)] -> "Name <a@b>, c@d"."""
    return ", ".join(format_address(n, a) for n, a in addrs)


def format_grouped(groups: Iterable[tuple[str | None, list[tuple[str | None, str]]]]) -> str:
    """The GroupedAddresses form: [(group name or None, [(name, email)])]."""
    out = []
    for gname, addrs in groups:
        inner = format_addresses(addrs)
        if gname is None:
            if inner:
                out.append(inner)
        else:
            ph = _phrase(gname) or '""'
            out.append(f"{ph}: {inner};" if inner else f"{ph}:;")
    return ", ".join(out)


_MSGID = re.compile(r"^[^\s<>\x00-\x1f\x7f]+$")


def format_message_ids(ids: Iterable[str]) -> str:
    """The MessageIds form: ["a@b"] -> "<a@b>"."""
    out = []
    for i in ids:
        if not isinstance(i, str) or not _MSGID.match(i):
            raise ComposeError(f"not a message id: {i!r}")
        out.append(f"<{i}>")
    return " ".join(out)


_RFC3339 = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d+)?"
                      r"(?:([Zz])|([+-])(\d\d):(\d\d))$")


def parse_date(s: str) -> _dt.datetime:
    """An RFC 3339 date-time (JMAP Date/UTCDate) -> an aware datetime."""
    m = _RFC3339.match(s) if isinstance(s, str) else None
    if m is None:
        raise ComposeError(f"not an RFC 3339 date-time: {s!r}")
    y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
    if m.group(7):
        tz = _dt.timezone.utc
    else:
        off = int(m.group(9)) * 60 + int(m.group(10))
        if off >= 24 * 60:
            raise ComposeError(f"bad offset in {s!r}")
        tz = _dt.timezone(_dt.timedelta(minutes=off if m.group(8) == "+" else -off))
    try:
        return _dt.datetime(y, mo, d, h, mi, min(sec, 59), tzinfo=tz)
    except ValueError as exc:
        raise ComposeError(f"not a date: {s!r}") from exc


def format_date(when: str | _dt.datetime) -> str:
    """The Date form: an RFC 3339 date-time -> an RFC 5322 date-time."""
    if isinstance(when, str):
        when = parse_date(when)
    return email.utils.format_datetime(when)


def format_urls(urls: Iterable[str]) -> str:
    """The URLs form: ["http://x"] -> "<http://x>"."""
    out = []
    for u in urls:
        if not isinstance(u, str) or not u or _CTL.search(u) or any(c in u for c in " <>"):
            raise ComposeError(f"not a URL: {u!r}")
        out.append(f"<{u}>")
    return ", ".join(out)


def format_raw(value: str) -> str:
    """The Raw form, as given; line breaks must be folding (CRLF + WSP)."""
    if "\x00" in value:
        raise ComposeError("a header value cannot contain NUL")
    v = value.replace("\r\n", "\n").replace("\r", "\n")
    lines = v.split("\n")
    if any(not ln or ln[0] not in " \t" for ln in lines[1:]):
        raise ComposeError("a line break in a header value must be followed by white space")
    return "\r\n".join(lines)


def fold(name: str, value: str) -> bytes:
    """``Name: value`` as folded header line(s), CRLF-terminated.  VALUE has
    no leading space; a value given in Raw form that is already folded is
    kept as it is."""
    if "\r\n" in value:
        text = f"{name}:{value if value[:1] in (' ', chr(9)) else ' ' + value}"
        out = text.encode("utf-8", "surrogatepass") + _CRLF
        if any(len(ln) > MAX_LINE for ln in out.split(_CRLF)):
            raise ComposeError(f"header {name} has a line over {MAX_LINE} octets")
        return out
    lines: list[str] = []
    cur = f"{name}:"
    for i, w in enumerate(value.split(" ")):
        piece = " " + w
        if i and len(cur) + len(piece) > FOLD_AT:
            lines.append(cur)
            cur = piece
        else:
            cur += piece
    lines.append(cur)
    out = "\r\n".join(lines).encode("utf-8", "surrogatepass") + _CRLF
    if any(len(ln) > MAX_LINE for ln in out.split(_CRLF)):
        raise ComposeError(f"header {name} has a word over {MAX_LINE} octets")
    return out


# ----------------------------------------------------------------- parameters

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PCT_SAFE = frozenset(b"!#$&+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _param(name: str, value: str) -> list[str]:
    """One MIME parameter, RFC 2231-encoded (and continued) when needed."""
    if _TOKEN.match(value) and len(value) < 60:
        return [f"{name}={value}"]
    if value.isascii() and not _CTL.search(value) and len(value) < 60:
        return [f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"']
    data = value.encode("utf-8", "surrogatepass")
    enc = "".join(chr(b) if b in _PCT_SAFE else f"%{b:02X}" for b in data)
    if len(enc) <= 60:
        return [f"{name}*=utf-8''{enc}"]
    chunks, i = [], 0
    while i < len(enc):
        j = min(len(enc), i + 60)
        while j < len(enc) and "%" in enc[j - 2:j]:   # never split a %XX escape
            j -= 1
        chunks.append(enc[i:j])
        i = j
    return [f"{name}*{n}*=" + ("utf-8''" if n == 0 else "") + c for n, c in enumerate(chunks)]


def _with_params(value: str, params: list[str]) -> str:
    return "; ".join([value] + params)


# ----------------------------------------------------------------- bodies

def html_as_text(s: str) -> str:
    """The text of HTML S as a reader sees it, for a text/plain part made
    from it (an automatic reply, an ActiveSync Oof message, SmartReply's
    quote): the message indexer's ``html_to_text`` (script and style
    elements dropped, block tags made line breaks, tags dropped, entities
    decoded; one forward pass, compiled, with a pure-Python twin), without
    the white space around each line and the blank lines at both ends, which
    HTML does not show."""
    text = _speedups.load("msgindex").html_to_text(s)
    return "\n".join(ln.strip() for ln in text.splitlines()).strip("\n")


@dataclass
class BodyPart:
    """One MIME entity: a leaf (DATA, the content's octets) or a multipart
    (PARTS).  HEADERS are further (name, formatted value) pairs; they must not
    repeat what the other fields say."""

    type: str = "text/plain"
    data: bytes = b""
    parts: list["BodyPart"] | None = None
    charset: str | None = None
    name: str | None = None
    disposition: str | None = None
    cid: str | None = None
    language: list[str] | None = None
    location: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def _lines_ok(data: bytes) -> bool:
    """CRLF line ends only, no NUL, every line under MAX_LINE."""
    if b"\0" in data:
        return False
    stripped = data.replace(_CRLF, b"\n")
    if b"\r" in stripped:
        return False
    if b"\n" in data.replace(_CRLF, b""):
        return False
    return all(len(ln) <= MAX_LINE for ln in stripped.split(b"\n"))


def choose_encoding(ctype: str, data: bytes) -> str:
    ctype = ctype.lower()
    ok = _lines_ok(data)
    if ctype.startswith("message/"):
        if ok:
            return "7bit" if data.isascii() else "8bit"
        return "base64"
    if ok and data.isascii():
        return "7bit"
    if ctype.startswith("text/"):
        high = sum(1 for b in data if b > 0x7E or (b < 0x20 and b not in (9, 10, 13)))
        if high * 4 <= len(data):       # mostly ASCII: readable quoted-printable
            return "quoted-printable"
    return "base64"


def encode_qp(data: bytes) -> bytes:
    """RFC 2045 6.7 quoted-printable of DATA, whose CRLFs are line breaks
    (lone CR or LF are encoded); lines of at most 76 characters."""
    out = []
    for line in data.split(_CRLF):
        enc = []
        for i, b in enumerate(line):
            last = i == len(line) - 1
            if (33 <= b <= 126 and b != 61) or (b in (9, 32) and not last):
                enc.append(chr(b))
            else:
                enc.append(f"={b:02X}")
        # soft line breaks: at most 75 characters + "=" per physical line
        phys, cur = [], ""
        for tok in enc:
            if len(cur) + len(tok) > 75:
                phys.append(cur + "=")
                cur = ""
            cur += tok
        phys.append(cur)
        out.append("\r\n".join(phys))
    return "\r\n".join(out).encode("ascii")


def _encode_body(cte: str, data: bytes) -> bytes:
    if cte == "base64":
        b = base64.encodebytes(data).replace(b"\n", _CRLF)
        return b[:-2] if b.endswith(_CRLF) else b
    if cte == "quoted-printable":
        return encode_qp(data)
    return data


def _new_boundary(rand: Callable[[int], str]) -> str:
    return "=_" + rand(12)


def render_part(p: BodyPart, *, rand: Callable[[int], str] = secrets.token_hex,
                depth: int = 0) -> tuple[list[bytes], bytes]:
    """(P's MIME header lines, P's body) as bytes."""
    if depth > 32:
        raise ComposeError("body parts nested too deep")
    ctype = p.type.strip().lower() if p.type else "text/plain"
    if not re.match(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$", ctype):
        raise ComposeError(f"not a media type: {p.type!r}")
    params: list[str] = []
    if p.parts is not None:
        if not ctype.startswith("multipart/"):
            raise ComposeError("only multipart/* parts have sub-parts")
        rendered = [render_part(sp, rand=rand, depth=depth + 1) for sp in p.parts]
        children = [b"".join(h) + _CRLF + b for h, b in rendered]
        boundary = _new_boundary(rand)
        while any(b"--" + boundary.encode() in c for c in children):
            boundary = _new_boundary(rand)
        params.append(f'boundary="{boundary}"')
        delim = b"--" + boundary.encode()
        body = b"".join(delim + _CRLF + c + _CRLF for c in children) + delim + b"--" + _CRLF
        cte = None
    else:
        if ctype.startswith("multipart/"):
            raise ComposeError("a multipart part needs sub-parts")
        cte = choose_encoding(ctype, p.data)
        body = _encode_body(cte, p.data)
        if p.charset:
            params.extend(_param("charset", p.charset))
    if p.name is not None:
        params.extend(_param("name", p.name))
    headers = [fold("Content-Type", _with_params(ctype, params))]
    if p.disposition or (p.name is not None and p.parts is None):
        dparams = _param("filename", p.name) if p.name is not None else []
        disp = (p.disposition or "attachment").lower()
        if not _TOKEN.match(disp):
            raise ComposeError(f"not a disposition: {p.disposition!r}")
        headers.append(fold("Content-Disposition", _with_params(disp, dparams)))
    if p.cid:
        headers.append(fold("Content-ID", format_message_ids([p.cid.strip("<>")])))
    if p.language:
        headers.append(fold("Content-Language", ", ".join(_clean(x) for x in p.language)))
    if p.location:
        headers.append(fold("Content-Location", _clean(p.location)))
    if cte is not None and cte != "7bit":
        headers.append(fold("Content-Transfer-Encoding", cte))
    for hname, hvalue in p.headers:
        headers.append(fold(hname, hvalue))
    return headers, body


def _message_id(rand: Callable[[int], str], domain: str) -> str:
    return f"<{rand(16)}@{domain}>"


def compose(headers: list[tuple[str, str]], body: BodyPart, *,
            now: float | None = None, domain: str = "localhost",
            rand: Callable[[int], str] = secrets.token_hex) -> bytes:
    """The whole message: HEADERS ((name, formatted value), in order) and
    BODY's entity.  MIME-Version, Date and Message-ID are added when HEADERS
    lack them; Date is NOW (seconds since the epoch, local offset UTC)."""
    have = {n.lower() for n, _ in headers}
    out: list[bytes] = []
    if "date" not in have:
        when = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.timezone.utc)
        out.append(fold("Date", format_date(when)))
    if "message-id" not in have:
        out.append(fold("Message-ID", _message_id(rand, domain)))
    for name, value in headers:
        out.append(fold(name, value))
    if "mime-version" not in have:
        out.append(b"MIME-Version: 1.0\r\n")
    part_headers, data = render_part(body, rand=rand)
    return b"".join(out) + b"".join(part_headers) + _CRLF + data
