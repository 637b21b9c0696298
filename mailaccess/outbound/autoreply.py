"""Automatic replies (RFC 3834) for the vacation response (RFC 8621 §8).

``should_reply`` is RFC 3834 §2's "when not to respond", as data in, a
reason out (None: reply); ``active`` the vacation window; ``build_reply``
the response per §3 (Auto-Submitted: auto-replied, In-Reply-To and
References, sent with a null return path so nothing answers it back).
At most one reply per sender per period is the store's part
(store/sending.note_auto_reply).
"""
from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import re

from ..mime.compose import html_as_text
from ..mime.headers import as_addresses
from .addresses import valid_address
from .envelope import _header_end

# return paths that are never answered (RFC 3834 §2: list and system senders)
_SYSTEM = re.compile(r"^(mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request|"
                     r".*-owner|no-?reply|bounce[s]?(-.*)?)@", re.I)
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "list-help", "list-subscribe",
                 "list-owner", "list-archive")


def _headers(raw: bytes):
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        raw[:_header_end(raw)])


def _text_of(value) -> str:
    """A raw header value of _headers (``raw_items``: 8-bit octets kept as
    surrogates; ``get`` would give them as replacement characters) as text:
    a raw UTF-8 field (RFC 6532) read as UTF-8, replacement characters for
    what is not; RFC 2047 words are left to the reply's header policy,
    which decodes them."""
    if value is None:
        return ""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def should_reply(raw: bytes, return_path: str, user_addresses: set[str]) -> str | None:
    """Why RAW, delivered with envelope sender RETURN_PATH to a user known
    by USER_ADDRESSES (lowercased), must not be answered; None to answer."""
    if not return_path:
        return "null return path"
    if not valid_address(return_path):
        return "unusable return path"
    if _SYSTEM.match(return_path):
        return "system or list return path"
    if return_path.lower() in user_addresses:
        return "from the user"
    msg = _headers(raw)
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto.split(";")[0].strip() != "no":
        return "auto-submitted"
    prec = (msg.get("Precedence") or "").strip().lower()
    if prec in ("bulk", "list", "junk"):
        return f"precedence {prec}"
    if any(msg.get(h) is not None for h in _LIST_HEADERS):
        return "list message"
    if msg.get("X-Auto-Response-Suppress") is not None and \
            re.search(r"\b(all|oof|autoreply)\b", msg.get("X-Auto-Response-Suppress"), re.I):
        return "auto responses suppressed"
    # our own address-list parser, one field at a time: getaddresses answers
    # a malformed field by release (fragments, or since the CVE-2023-27043
    # fix nothing at all for every field passed with it)
    personal = [a["email"].lower()
                for f in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
                for v in (msg.get_all(f) or []) for a in as_addresses(str(v))]
    if not any(a in user_addresses for a in personal):
        return "not addressed to the user"
    return None


def active(vacation: dict | None, now: int) -> bool:
    """The vacation response is on at NOW (isEnabled, within fromDate..toDate)."""
    if not vacation or not vacation.get("isEnabled"):
        return False
    lo, hi = vacation.get("fromDate"), vacation.get("toDate")
    if lo and now < _ts(lo):
        return False
    if hi and now >= _ts(hi):
        return False
    return True


def _ts(utc: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp()


# What the reply repeats of header fields whose length a stranger (or the
# vacation response's 256 KB subject) decides, at most: the email package
# parses and folds a header field in time that grows with the square of its
# length (a 1.5 MB References took 14 s, a 1.4 MB Subject of encoded words
# ran out of memory).  A line's worth of the subject (whole words), the
# latest message ids of References, no In-Reply-To for an id longer than a
# line (RFC 5322 §2.1.1: 998 characters).
MAX_LINE = 998
MAX_REFERENCES = 8 * MAX_LINE


def _first_words(words: list[str], limit: int) -> str:
    """The first of WORDS, joined by spaces, in at most LIMIT characters
    (the first word cut if it alone is longer)."""
    out, n = [], -1
    for w in words:
        n += 1 + len(w)
        if n > limit:
            break
        out.append(w)
    return " ".join(out) if out else (words[0][:limit] if words else "")


def _last_words(words: list[str], limit: int) -> str:
    """The last of WORDS, joined by spaces, in at most LIMIT characters."""
    out, n = [], -1
    for w in reversed(words):
        n += 1 + len(w)
        if n > limit:
            break
        out.append(w)
    return " ".join(reversed(out))


def build_reply(raw: bytes, vacation: dict, user_address: str, to: str, now: int,
                hostname: str) -> bytes:
    """The automatic reply to RAW, from USER_ADDRESS to TO (the original's
    return path), with the vacation response's subject and bodies (the
    subject and references bounded: MAX_LINE, MAX_REFERENCES)."""
    orig = _headers(raw)
    osubj = " ".join(_text_of(next((v for k, v in orig.raw_items()
                                    if k.lower() == "subject"), None)).split())
    subject = vacation.get("subject") or (f"Auto: {osubj}" if osubj else "Auto: away")
    if len(subject) > MAX_LINE:
        subject = _first_words(subject.split(), MAX_LINE)
    text = vacation.get("textBody")
    html = vacation.get("htmlBody")
    if text is None and html is None:
        text = "I am away and will read your message when I return.\n"
    if text is None:
        text = html_as_text(html) + "\n"
    m = email.message.EmailMessage(policy=email.policy.SMTP)
    m["From"] = user_address
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = email.utils.formatdate(now, localtime=False)
    m["Message-ID"] = email.utils.make_msgid(domain=hostname or "localhost")
    m["Auto-Submitted"] = "auto-replied"
    mid = str(orig.get("Message-ID") or "").strip()
    if mid and len(mid) <= MAX_LINE:
        m["In-Reply-To"] = mid
        refs = _last_words(str(orig.get("References") or "").split(),
                           MAX_REFERENCES - len(mid) - 1)
        m["References"] = f"{refs} {mid}".strip()
    m.set_content(text)
    if html is not None:
        m.add_alternative(html, subtype="html")
    return m.as_bytes()
