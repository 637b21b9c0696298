"""A message's body parts and their text, as RFC 8621 §4.1.4 sees them,
protocol-neutral (JMAP Email/get and Email/parse; ActiveSync bodies).

The structure comes from the stored message index: ``MessageIndex.jmap_body``
is the EmailBodyPart tree (partId = the IMAP part number, headers, name with
RFC 2231 / RFC 2047 decoded, type, charset, disposition, cid, language,
location, decoded size, subParts) and ``text_body`` / ``html_body`` /
``attachments`` are the partIds the indexer chose with the §4.1.4
``parseStructure`` algorithm (``msgindex.parse_structure``; exposed here as
:func:`parse_structure` over any such tree).  Only the text of a part
(:func:`body_value`) reads the raw message, and only that part's bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from mailaccess import _speedups
from mailaccess.mime.parts import Part

_impl = _speedups.load("msgindex")

__all__ = ["walk", "parts_by_id", "parse_structure", "BodyValue", "body_value",
           "decode_text", "truncate_utf8", "is_text"]


def walk(node: dict) -> Iterator[dict]:
    """Every EmailBodyPart of the tree under NODE, depth first, NODE first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        subs = n.get("subParts")
        if subs:
            stack.extend(reversed(subs))


def parts_by_id(root: dict) -> dict[str, dict]:
    """partId -> EmailBodyPart for every leaf of the tree."""
    return {n["partId"]: n for n in walk(root) if n.get("partId") is not None}


def parse_structure(root: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """(textBody, htmlBody, attachments) of the EmailBodyPart tree ROOT by
    the RFC 8621 §4.1.4 algorithm (the indexer's implementation of it)."""
    text_body: list = []
    html_body: list = []
    attachments: list = []
    _impl.parse_structure([root], "mixed", False, html_body, text_body, attachments)
    by_id = parts_by_id(root)
    return ([by_id[p] for p in text_body], [by_id[p] for p in html_body],
            [by_id[p] for p in attachments])


def is_text(node: dict) -> bool:
    return node.get("type", "").startswith("text/")


# ---------------------------------------------------------------- body text

@dataclass(frozen=True, slots=True)
class BodyValue:
    """EmailBodyValue: the part's text (transfer encoding and charset
    decoded, CRLF as LF), whether decoding met a problem, whether cut."""

    value: str
    is_encoding_problem: bool = False
    is_truncated: bool = False


_IDENTITY = ("7bit", "8bit", "binary", "")
# what a well-formed base64 body holds (anything else is a problem)
_B64_OK = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"
_ASCII_FAMILY = ("us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "")


def decode_text(data: bytes, charset: str | None) -> tuple[str, bool]:
    """DATA in CHARSET (None: us-ascii) -> (text, problem).  Malformed
    sequences become U+FFFD; an unknown charset decodes as UTF-8 (with
    replacements); both are problems.  8-bit data labelled us-ascii is read
    as UTF-8 when it is UTF-8 (the RFC allows heuristics), else as Latin-1
    (a problem)."""
    cs = (charset or "us-ascii").strip().strip("\"'").lower()
    if cs in _ASCII_FAMILY:
        if data.isascii():
            return data.decode("ascii"), False
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            return _impl.bytes_to_str(data), True
    text = _impl.decode_charset(data, cs)
    if text is None:
        return data.decode("utf-8", "replace"), True
    return text, "\ufffd" in text and "\ufffd".encode("utf-8") not in data


def truncate_utf8(text: str, max_bytes: int, html: bool = False) -> tuple[str, bool]:
    """TEXT cut to at most MAX_BYTES octets of UTF-8, never inside a
    character nor (HTML) inside a tag -> (text, truncated)."""
    if max_bytes <= 0 or len(text) * 4 <= max_bytes:
        return text, False
    b = text.encode("utf-8", "surrogatepass")
    if len(b) <= max_bytes:
        return text, False
    cut = b[:max_bytes].decode("utf-8", "ignore")   # drops a split last character only
    if html:
        lt = cut.rfind("<")
        if lt > cut.rfind(">"):
            cut = cut[:lt]
    return cut, True


def _transfer_decode(data: bytes, encoding: str) -> tuple[bytes, bool]:
    if encoding in _IDENTITY:
        return data, False
    if encoding == "base64":
        return _impl.decode_b64(data), bool(data.translate(None, _B64_OK))
    if encoding == "quoted-printable":
        return _impl.decode_qp(data), False
    return data, True      # unknown: the bytes as they are, a problem


def body_value(raw, part: Part, max_bytes: int = 0, html: bool = False) -> BodyValue:
    """The EmailBodyValue of PART (a span of the message RAW, a bytes-like
    object) cut to MAX_BYTES octets when > 0.

    Work is bounded by what is returned: with MAX_BYTES set, only a prefix
    of the part large enough for it is decoded (a 50 MB text part asked for
    its first 1 KB decodes a few KB), unless that prefix turns out to hold
    too little text, when the whole part is decoded."""
    start, end = part.body_start, part.end
    enc = part.encoding
    if max_bytes > 0:
        # decoded octets needed: any charset gives >= 1 UTF-8 octet per 4
        # input octets, CRLF -> LF at most halves that: 8 per output octet
        need = 8 * max_bytes + 64
        enc_need = need * 3 if enc == "quoted-printable" else (need * 4 // 3 + 8 if enc == "base64" else need)
        if end - start > 2 * enc_need + 4096:
            prefix = bytes(raw[start:start + enc_need])
            if enc == "quoted-printable":
                prefix = prefix[:prefix.rfind(b"\n") + 1] or prefix
            bv = _decoded(prefix, part, max_bytes, html, partial=True)
            if bv is not None:
                return bv
    return _decoded(bytes(raw[start:end]), part, max_bytes, html, partial=False)


def _decoded(data: bytes, part: Part, max_bytes: int, html: bool, partial: bool) -> BodyValue | None:
    data, problem = _transfer_decode(data, part.encoding)
    if partial:
        # the prefix may end inside a character: drop a few octets (a
        # multiple of 4 keeps UTF-16/32 aligned); the cut falls well before
        data = data[:-4]
    text, bad = decode_text(data, part.charset)
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    value, cut = truncate_utf8(text, max_bytes, html)
    if partial:
        if not cut:
            return None         # the prefix held too little text: decode it all
        if bad and "\ufffd" in text and "\ufffd" not in value:
            bad = False         # the only damage is past the cut (the prefix's end)
    return BodyValue(value, problem or bad, cut)
