"""The message an ActiveSync SendMail / SmartReply / SmartForward sends,
built from the phone's MIME (sans-IO: bytes in, bytes out; no store).

* ``prepare(raw, from_addr, domain, now)``: the phone's message made
  sendable: CRLF line ends, ``From`` added when missing (the account's
  default address), ``Date`` and ``Message-ID`` added when missing (the copy
  sent and the copy saved in Sent then carry the same Message-ID, so replies
  thread).
* ``smart_reply(new, orig)``: the original quoted below the new text
  (MS-ASCMD 2.2.1.20: "the full text of the original message is retrieved
  and sent by the server").  Each body the new message has is extended in
  its own format: its text/plain part gets "On DATE, FROM wrote:" and the
  original's text with "> " before each line; its text/html part gets the
  same line and the original's HTML (or its escaped text) in a
  ``<blockquote type="cite">``, before ``</body>``.  A new message with no
  text body at all gets a text/plain one.  In-Reply-To / References are
  added when the phone sent none.
* ``smart_forward(new, orig)``: the original attached whole, as a
  ``message/rfc822`` part (Content-Disposition attachment, named after its
  subject), after the new message's own parts.  Chosen over copying the
  original's parts into the new message: the original's headers, bodies
  and attachments reach the recipient byte for byte (no re-encoding), and
  every mail client shows such a part.  The original's bytes are not
  re-serialised: the multipart/mixed wrapper is written around them here.

``MimeError`` is raised for a message that cannot be used (no header, no
usable structure): the command answers InvalidMIME (107).
"""
from __future__ import annotations

import datetime as _dt
import email.header
import email.parser
import email.policy
import email.utils
import html
import re
import secrets
import time
from email.message import EmailMessage

from ..mime.compose import html_as_text

__all__ = ["MimeError", "prepare", "smart_reply", "smart_forward", "header_end"]

_CRLF = b"\r\n"


class MimeError(ValueError):
    """The phone's MIME cannot be used (status 107 InvalidMIME)."""


def crlf(raw: bytes) -> bytes:
    """RAW with every line ending CRLF (phones send either)."""
    return re.sub(rb"\r?\n", _CRLF, raw)


def header_end(raw: bytes) -> int:
    """Offset of the body (after the blank line); len(raw) when there is none."""
    i = raw.find(b"\r\n\r\n")
    return len(raw) if i < 0 else i + 4


def _headers(raw: bytes):
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        raw[:header_end(raw)])


def _check(raw: bytes) -> None:
    if not raw.strip():
        raise MimeError("the message is empty")
    first = raw.split(b"\r\n", 1)[0]
    if b":" not in first or first[:1] in (b" ", b"\t"):
        raise MimeError("the message does not start with a header field")


def prepare(raw: bytes, from_addr: str, domain: str, now: float | None = None) -> bytes:
    """RAW as it is sent and saved: CRLF, with From, Date and Message-ID."""
    raw = crlf(raw)
    _check(raw)
    h = _headers(raw)
    add = []
    if h.get("From") is None:
        add.append(f"From: {from_addr}\r\n".encode())
    if h.get("Date") is None:
        when = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.timezone.utc)
        add.append(f"Date: {email.utils.format_datetime(when)}\r\n".encode())
    if h.get("Message-ID") is None:
        add.append(f"Message-ID: <{secrets.token_hex(16)}@{domain or 'localhost'}>"
                   "\r\n".encode())
    if header_end(raw) == len(raw) and not raw.endswith(b"\r\n\r\n"):
        raw = raw.rstrip(b"\r\n") + b"\r\n\r\n"    # headers only: an empty body
    return b"".join(add) + raw


# --- SmartReply ------------------------------------------------------------------------------

def _parse(raw: bytes) -> EmailMessage:
    return email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)


# What str.splitlines() breaks a line at besides CR and LF.  The email
# generator of a Python without the CVE-2024-6923 fix (3.11.7, CI's, among
# them) writes these out as line ends when it folds a header, so "Subject:
# a\x0bBcc: x@y" left as two fields; a fixed Python keeps the character.
# RFC 5322 §2.2 allows none of them in a field body: refused on every Python.
_LINE_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _refuse_line_breaks(msg: EmailMessage) -> None:
    """MimeError when a header field of MSG (any part) holds one of
    _LINE_BREAKS: SmartReply writes the message anew, forwarding keeps the
    phone's bytes."""
    for part in msg.walk():
        for name, value in part.items():
            if _LINE_BREAKS.search(str(value)):
                raise MimeError(f"the {name} header field holds a line-breaking control "
                                "character")


def _text_of(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


# The original's HTML comes from anyone who can send the user mail: it is
# read in forward passes (its text by mime.compose.html_as_text; the
# regular expressions these replaced rescanned the rest of the text at every
# unclosed "<body", "<script" or "<").
_BODY_OPEN = re.compile(r"(?i)<body\b")
_BODY_CLOSE = re.compile(r"(?i)</body\s*>")


def _html_inner(s: str) -> str:
    """What lies between the first <body ...> and the last </body> after it
    (S itself when there is no such pair)."""
    m = _BODY_OPEN.search(s)
    gt = s.find(">", m.end()) if m is not None else -1
    if gt < 0:
        return s
    last = None
    for last in _BODY_CLOSE.finditer(s, gt + 1):
        pass
    return s[gt + 1:last.start()] if last is not None else s


def _original_bodies(orig: EmailMessage) -> tuple[str, str | None]:
    """(the original's text, its HTML or None)."""
    plain = orig.get_body(("plain",))
    rich = orig.get_body(("html",))
    h = _text_of(rich) if rich is not None else None
    if plain is not None:
        t = _text_of(plain)
    elif h is not None:
        t = html_as_text(h)
    else:
        t = ""
    return t, h


def _attribution(orig: EmailMessage) -> str:
    who = str(orig.get("From") or "").strip() or "someone"
    when = str(orig.get("Date") or "").strip()
    return f"On {when}, {who} wrote:" if when else f"{who} wrote:"


def _quote_text(text: str) -> str:
    return "\n".join(("> " + line) if line else ">" for line in text.splitlines())


def _body_parts(msg: EmailMessage) -> tuple[list, list]:
    """The new message's text/plain and text/html body parts (not attachments)."""
    plains, htmls = [], []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ct = part.get_content_type()
        if ct == "text/plain":
            plains.append(part)
        elif ct == "text/html":
            htmls.append(part)
    return plains, htmls


def _set_text(part, text: str, subtype: str, top: bool) -> None:
    part.set_content(text, subtype=subtype, charset="utf-8", cte="quoted-printable")
    if not top:
        del part["MIME-Version"]          # set_content adds it; it belongs on the message only


def smart_reply(new: bytes, orig: bytes) -> bytes:
    """NEW (prepared) with ORIG quoted below its text (see the module docstring)."""
    msg = _parse(new)
    _refuse_line_breaks(msg)
    o = _parse(orig)
    o_text, o_html = _original_bodies(o)
    attribution = _attribution(o)
    plains, htmls = _body_parts(msg)
    if not plains and not htmls:
        if msg.is_multipart():
            msg.make_mixed()
            body = EmailMessage(policy=email.policy.default)
            _set_text(body, "", "plain", False)
            msg.get_payload().insert(0, body)
            plains = [body]
        else:
            plains = [msg]
    if plains:
        p = plains[0]
        text = _text_of(p).rstrip("\n")
        quoted = f"{text}\n\n{attribution}\n{_quote_text(o_text)}\n"
        _set_text(p, quoted, "plain", p is msg)
    if htmls:
        p = htmls[0]
        doc = _text_of(p)
        inner = _html_inner(o_html) if o_html is not None else \
            "<pre>" + html.escape(o_text) + "</pre>"
        block = (f'<div><br>{html.escape(attribution)}<br>'
                 f'<blockquote type="cite" style="margin:0 0 0 .8ex;border-left:1px solid #ccc;'
                 f'padding-left:1ex">{inner}</blockquote></div>')
        m = list(re.finditer(r"(?i)</body\s*>", doc))
        doc = doc[:m[-1].start()] + block + doc[m[-1].start():] if m else doc + block
        _set_text(p, doc, "html", p is msg)
    mid = str(o.get("Message-ID") or "").strip()
    if mid and msg.get("In-Reply-To") is None:
        msg["In-Reply-To"] = mid
        if msg.get("References") is None:
            refs = " ".join(str(o.get("References") or "").split())
            msg["References"] = f"{refs} {mid}".strip()
    return msg.as_bytes(policy=email.policy.SMTP)


# --- SmartForward ----------------------------------------------------------------------------

def _filename(orig: bytes) -> str:
    subj = str(_headers(orig).get("Subject") or "").strip()
    subj = str(email.header.make_header(email.header.decode_header(subj))) if subj else ""
    subj = re.sub(r'[\x00-\x1f"\\/:*?<>|]+', " ", subj).strip()[:60] or "message"
    return subj + ".eml"


def _param(value: str) -> str:
    """A filename parameter: plain when ASCII, RFC 2231 UTF-8 otherwise."""
    if value.isascii():
        return f'filename="{value}"'
    from urllib.parse import quote
    return "filename*=utf-8''" + quote(value, safe="")


def _rfc822_part(orig: bytes) -> bytes:
    orig = crlf(orig)
    if not orig.endswith(_CRLF):
        orig += _CRLF
    head = [b"Content-Type: message/rfc822",
            b"Content-Disposition: attachment; " + _param(_filename(orig)).encode()]
    if not orig.isascii():
        head.append(b"Content-Transfer-Encoding: 8bit")
    return _CRLF.join(head) + _CRLF + _CRLF + orig


def _boundary(*parts: bytes) -> bytes:
    while True:
        b = b"=_fwd" + secrets.token_hex(12).encode()
        if not any(b in p for p in parts):
            return b


_CONTENT = re.compile(rb"(?i)^content-")


def _split_header_lines(head: bytes) -> list[bytes]:
    """Header fields (with their continuation lines), each ending CRLF."""
    fields: list[list[bytes]] = []       # each field's lines (joined once: linear)
    for line in head.split(_CRLF):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line + _CRLF)
        else:
            fields.append([line + _CRLF])
    return [b"".join(f) for f in fields]


def smart_forward(new: bytes, orig: bytes) -> bytes:
    """NEW (prepared) with ORIG attached as message/rfc822 (see the module docstring)."""
    new = crlf(new)
    end = header_end(new)
    head, body = new[:end], new[end:]
    h = _headers(new)
    ctype = (h.get_content_type() or "").lower()
    attached = _rfc822_part(orig)
    if ctype == "multipart/mixed" and h.get_boundary():
        # a part more, before the closing delimiter (the CRLF before "--B--"
        # belongs to that delimiter, RFC 2046 5.1.1)
        close = b"--" + h.get_boundary().encode() + b"--"
        at = body.rfind(close)
        if at < 0 or (at > 0 and body[at - 2:at] != _CRLF):
            raise MimeError("multipart/mixed without its closing delimiter")
        delim = b"--" + h.get_boundary().encode()
        return head + body[:at] + delim + _CRLF + attached + _CRLF + body[at:]
    # wrap: the new message's content becomes the first part of a multipart/mixed
    fields = _split_header_lines(head)
    outer = [f for f in fields if not _CONTENT.match(f) and not f.lower().startswith(b"mime-version:")]
    inner = [f for f in fields if _CONTENT.match(f)]
    if not any(f.lower().startswith(b"content-type:") for f in inner):
        inner.insert(0, b"Content-Type: text/plain; charset=us-ascii\r\n")
    first = b"".join(inner) + _CRLF + body
    b = _boundary(first, attached)
    delim = b"--" + b
    out = b"".join(outer) + b"MIME-Version: 1.0\r\n" + \
        b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n'
    # the CRLF before each delimiter belongs to it (RFC 2046 5.1.1): the
    # parts' own last line ends stay theirs
    return out + delim + _CRLF + first + _CRLF + delim + _CRLF + attached + _CRLF + \
        delim + b"--" + _CRLF

