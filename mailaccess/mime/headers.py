"""Header field values in their parsed forms (RFC 8621 §4.1.2), protocol-neutral.

A header value here is the text after the field name's colon up to (not
including) the field's final line break, folding kept: what the message
index stores per header (``MessageIndex.jmap_body["headers"]``), so every
form is computed from the stored index without reading the message again.

Forms: :func:`as_raw`, :func:`as_text` (RFC 2047 encoded words decoded,
NFC), :func:`as_addresses` / :func:`as_grouped_addresses` (RFC 5322
address-list, best effort), :func:`as_message_ids`, :func:`as_date` (an RFC
3339 date-time keeping the zone offset) and :func:`as_urls` (RFC 2369).
The tokenizer, address parser and encoded-word decoder are the indexer's
(``msgindex``), so a name shown by IMAP ENVELOPE, searched by SEARCH and
returned by JMAP is decoded the same way.

:func:`parse_property` reads ``header:{name}[:as{Form}][:all]`` and checks
the form is allowed for that header field (§4.1.2's per-form lists);
:func:`header_property` evaluates one over a list of ``(name, value)``.
JMAP uses these for Email and EmailBodyPart; ActiveSync reuses the forms.
"""
from __future__ import annotations

import calendar
import re
import time
import unicodedata
from dataclasses import dataclass
from email.utils import parsedate_tz

from mailaccess import _speedups

_impl = _speedups.load("msgindex")

__all__ = [
    "FORMS", "HeaderProperty", "parse_property", "form_allowed", "header_property",
    "values_of", "as_raw", "as_text", "as_addresses", "as_grouped_addresses",
    "as_message_ids", "as_date", "as_urls", "apply_form", "text", "date_string", "address",
    "MAX_VALUE",
]

FORMS = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")

# a structured parse looks at no more than this much of one value (a hostile
# 10 MB To: field is answered from its first MAX_VALUE characters)
MAX_VALUE = 256 * 1024

# header fields RFC 5322 and RFC 2369 define: each allows only the forms
# listed for it below (and Raw); any other field allows every form
_DEFINED = {
    "date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id", "in-reply-to",
    "references", "subject", "comments", "keywords", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-bcc", "resent-message-id",
    "return-path", "received",
    "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
    "list-archive",
}
_ADDRESS_FIELDS = {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from",
                   "resent-sender", "resent-reply-to", "resent-to", "resent-cc", "resent-bcc"}
_ALLOWED = {
    "Raw": None,    # every field
    "Text": {"subject", "comments", "keywords", "list-id"},
    "Addresses": _ADDRESS_FIELDS,
    "GroupedAddresses": _ADDRESS_FIELDS,
    "MessageIds": {"message-id", "in-reply-to", "references", "resent-message-id"},
    "Date": {"date", "resent-date"},
    "URLs": {"list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
             "list-archive"},
}


def form_allowed(name: str, form: str) -> bool:
    """May header field NAME be fetched in FORM (§4.1.2)?"""
    allowed = _ALLOWED[form]
    key = name.lower()
    return allowed is None or key in allowed or key not in _DEFINED


@dataclass(frozen=True, slots=True)
class HeaderProperty:
    """A parsed ``header:{name}[:as{form}][:all]`` property name."""

    prop: str     # the property as the client wrote it (the response key)
    name: str     # the header field name, as written
    form: str     # one of FORMS
    all: bool


_NAME_OK = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")   # printable ASCII but ":"


def parse_property(prop: str) -> HeaderProperty | None:
    """The header property PROP names; None when PROP is not a valid one (an
    unknown form, a bad field name, suffixes out of order, or a form §4.1.2
    does not allow for that field: all invalidArguments to JMAP)."""
    if not prop.startswith("header:"):
        return None
    parts = prop[7:].split(":")
    name = parts[0]
    if not name or not _NAME_OK.match(name) or len(parts) > 3:
        return None
    form, all_ = "Raw", False
    rest = parts[1:]
    if rest and rest[0].startswith("as"):
        form = rest.pop(0)[2:]
        if form not in FORMS:
            return None
    if rest and rest[0] == "all":
        all_ = True
        rest.pop(0)
    if rest:
        return None
    if not form_allowed(name, form):
        return None
    return HeaderProperty(prop, name, form, all_)


def values_of(headers, name: str) -> list[str]:
    """The values of every field called NAME (case-insensitive), in order;
    HEADERS is a list of ``{"name", "value"}`` (EmailHeader) dicts."""
    key = name.lower()
    return [h["value"] for h in headers if h["name"].lower() == key]


def header_property(headers, hp: HeaderProperty):
    """The value of header property HP over HEADERS (EmailHeader dicts):
    the last instance's parsed form (null when absent), or with ``:all`` a
    list of every instance's (empty when absent)."""
    vals = values_of(headers, hp.name)
    fn = _FORM_FN[hp.form]
    if hp.all:
        return [fn(v) for v in vals]
    return fn(vals[-1]) if vals else None


def apply_form(value: str, form: str):
    return _FORM_FN[form](value)


# ---------------------------------------------------------------- the forms

_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def as_raw(value: str) -> str:
    """§4.1.2.1 Raw: the value as it is (folding kept), NUL octets dropped."""
    return value.replace("\0", "") if "\0" in value else value


def _unfold(value: str) -> bytes:
    """The value's bytes with line breaks removed (unfolded) and outer blanks
    stripped, at most MAX_VALUE characters of it."""
    return _impl.unfold(value[:MAX_VALUE].encode("utf-8", "surrogatepass"))


def text(s: str) -> str:
    """Decoded header text made fit to show: control characters (an RFC 2047
    word may encode them) dropped, Unicode NFC (§4.1.2.2 steps 4-5)."""
    if _CONTROLS.search(s):
        s = _CONTROLS.sub("", s)
    if not s.isascii() and not unicodedata.is_normalized("NFC", s):
        s = unicodedata.normalize("NFC", s)
    return s


def as_text(value: str) -> str:
    """§4.1.2.2 Text: unfolded, outer white space removed, RFC 2047 encoded
    words decoded (unknown charsets left as written), NFC."""
    return text(_impl.decode_words(_unfold(value)))


def address(name: str | None, email: str) -> dict:
    """An EmailAddress from a decoded display name (None: none) and email."""
    if name is not None:
        name = text(name).strip() or None
    return {"name": name, "email": text(email)}


def _address(dname, mailbox: bytes, host: bytes) -> dict:
    email = _impl.bytes_to_str(mailbox + b"@" + host if host else mailbox)
    return address(_impl.decode_words(dname) if dname is not None else None, email)


def as_addresses(value: str) -> list[dict]:
    """§4.1.2.3 Addresses: every mailbox of the address-list, groups and
    comments dropped (a comment after a bare addr-spec is its name)."""
    out = []
    for dname, _adl, mailbox, host in _impl.parse_addresses(_unfold(value)):
        if host is None:        # a group's start or end marker
            continue
        out.append(_address(dname, mailbox, host))
    return out


def as_grouped_addresses(value: str) -> list[dict]:
    """§4.1.2.4 GroupedAddresses: like Addresses with the groups kept; runs
    of mailboxes outside any group form groups named null."""
    out: list[dict] = []
    current = None          # the group being filled
    in_group = False
    for dname, _adl, mailbox, host in _impl.parse_addresses(_unfold(value)):
        if host is None:
            if mailbox is not None:     # group start: (None, None, name, None)
                current = {"name": text(_impl.decode_words(mailbox)).strip() or None,
                           "addresses": []}
                out.append(current)
                in_group = True
            else:                       # group end
                current = None
                in_group = False
            continue
        if current is None or (not in_group and current["name"] is not None):
            current = {"name": None, "addresses": []}
            out.append(current)
        current["addresses"].append(_address(dname, mailbox, host))
    return out


def _strip_comments(s: str) -> str:
    """S without RFC 5322 comments (nested, with quoted-pairs); quoted
    strings are kept whole."""
    if "(" not in s:
        return s
    out = []
    depth = 0
    quoted = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and (depth or quoted) and i + 1 < n:
            if not depth:
                out.append(s[i:i + 2])
            i += 2
            continue
        if quoted:
            out.append(c)
            if c == '"':
                quoted = False
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(c)
            if c == '"':
                quoted = True
        i += 1
    return "".join(out)


_MSGID = re.compile(r"<([^<>]*)>")
_BLANKS = re.compile(r"[ \t\r\n]+")


def as_message_ids(value: str) -> list[str] | None:
    """§4.1.2.5 MessageIds: the msg-ids with CFWS and angle brackets
    removed; null when there is none.  Best effort as the indexer threads:
    without any <...>, the words holding an "@" are taken as ids."""
    s = _strip_comments(value[:MAX_VALUE])
    found = [_BLANKS.sub("", m) for m in _MSGID.findall(s)]
    if not found:
        found = [w for w in s.split() if "@" in w]
    found = [f for f in found if f]
    return found or None


def date_string(t: int, tz_minutes: int) -> str | None:
    """RFC 3339 date-time of epoch seconds T in the zone TZ_MINUTES east of
    UTC ("2014-10-30T14:12:00+08:00", "Z" for UTC), None when unrepresentable."""
    try:
        local = time.gmtime(t + tz_minutes * 60)
    except (OverflowError, OSError, ValueError):
        return None
    if not 1 <= local.tm_year <= 9999:
        return None
    if tz_minutes == 0:
        zone = "Z"
    else:
        sign = "+" if tz_minutes > 0 else "-"
        h, m = divmod(abs(tz_minutes), 60)
        zone = f"{sign}{h:02d}:{m:02d}"
    return "%04d-%02d-%02dT%02d:%02d:%02d" % local[:6] + zone


def parse_date(value: str) -> tuple[int, int] | None:
    """(epoch seconds, zone offset in minutes) of an RFC 5322 date-time
    (obsolete forms accepted), None when it does not parse."""
    s = _BLANKS.sub(" ", _strip_comments(value[:1024])).strip()
    try:
        t = parsedate_tz(s)
    except Exception:
        return None
    if t is None:
        return None
    offset = t[9] or 0
    if abs(offset) >= 24 * 3600:
        return None
    try:        # as the indexer reads Date (sentAt): the same instant for odd fields
        epoch = calendar.timegm(tuple(t[:6]) + (0, 0, 0))
    except (ValueError, OverflowError, TypeError):
        return None
    return epoch - offset, offset // 60


def as_date(value: str) -> str | None:
    """§4.1.2.6 Date: the date-time with its zone offset; null when it does
    not parse."""
    p = parse_date(value)
    return date_string(*p) if p is not None else None


def as_urls(value: str) -> list[str] | None:
    """§4.1.2.7 URLs (RFC 2369): the <...> URLs without brackets and
    comments; null when there is none."""
    s = _strip_comments(value[:MAX_VALUE])
    found = [_BLANKS.sub("", m) for m in _MSGID.findall(s)]
    found = [f for f in found if f]
    return found or None


_FORM_FN = {
    "Raw": as_raw, "Text": as_text, "Addresses": as_addresses,
    "GroupedAddresses": as_grouped_addresses, "MessageIds": as_message_ids,
    "Date": as_date, "URLs": as_urls,
}
