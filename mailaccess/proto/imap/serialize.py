"""Server responses as exact bytes (RFC 9051 §7 and the extensions we serve).

Plain functions, each returning the complete bytes of one response (CRLF
included) or of one fragment (a response code, a string).  The session layer
(``server/imap_session.py``) and the service (``server/imap.py``) decide
*what* to say and call these with domain values (ints, strs, lists); this
module only decides how it looks on the wire.  No intermediate response
objects: one call per response, bytes straight out.

FETCH data items are the one exception: they are built per message on the
hot path (``_speedups/fetchfmt_*`` and ``build_fetch``'s fallback loop, which
uses ``literal``/``nstring`` from here), because a function call per item per
message is what that path cannot afford (docs/imap.md, "Wire layer").
"""
from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from mailaccess import _speedups

from . import modutf7
from .numset import format_ints

CRLF = b"\r\n"
_number_list = _speedups.load("search").number_list
NIL = b"NIL"

_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+\Z')
_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")
_QUOTABLE8 = re.compile(rb"[^\x00\r\n]*\Z")
_ESCAPE = re.compile(rb'(["\\])')
MAX_QUOTED = 1024

# ----------------------------------------------------------------- strings


def _b(s: str | bytes) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else s


def quoted(s: str | bytes) -> bytes:
    """A quoted string; the caller checked that it has no CR, LF or NUL."""
    data = _b(s)
    if b'"' in data or b"\\" in data:
        data = _ESCAPE.sub(rb"\\\1", data)
    return b'"' + data + b'"'


def literal(data: bytes, binary: bool = False) -> bytes:
    """``{n}\\r\\n`` + data, or ``~{n}`` (literal8) when ``binary``."""
    head = b"~{%d}\r\n" if binary else b"{%d}\r\n"
    return head % len(data) + data


def string(s: str | bytes, utf8: bool = False) -> bytes:
    """The shortest correct IMAP string: quoted when possible, else a literal.

    8-bit text is quoted only when ``utf8`` (UTF8=ACCEPT enabled or IMAP4rev2
    UTF-8 quoted strings allowed); otherwise it goes out as a literal.
    """
    data = _b(s)
    if len(data) <= MAX_QUOTED and (_QUOTABLE8 if utf8 else _QUOTABLE).match(data):
        return quoted(data)
    return literal(data)


def astring(s: str | bytes, utf8: bool = False) -> bytes:
    data = _b(s)
    if data and _ASTRING_ATOM.match(data) and data.upper() != b"NIL":
        return data
    return string(data, utf8)


def nstring(s: str | bytes | None, utf8: bool = False) -> bytes:
    return NIL if s is None else string(s, utf8)


@functools.lru_cache(maxsize=4096)
def mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name: modified UTF-7 unless UTF8=ACCEPT is enabled (RFC 6855).
    Remembered (a LIST of 5,000 mailboxes formats each name again; names are
    at most 500 bytes, so the cache holds at most ~4 MB)."""
    if name == "INBOX":
        return b"INBOX"
    if utf8:
        return string(name.encode("utf-8"), utf8=True)
    return astring(modutf7.encode(name))


def paren(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def _nums(nums: Iterable[int]) -> bytes:
    # b" ".join(b"%d" % n for n in nums), compiled: a SEARCH answer may
    # list every message of the mailbox
    return _number_list(nums)


# ------------------------------------------------------------ status lines


def _code(code: str | bytes | None) -> bytes:
    if not code:
        return b""
    return b"[" + _b(code) + b"] "


def tagged(tag: bytes, status: str, text: str, code: str | bytes | None = None) -> bytes:
    """``tag OK [code] text``; ``status`` is OK, NO or BAD."""
    return tag + _status_tail(status, text, code)


@functools.lru_cache(maxsize=512)
def _status_tail(status: str, text: str, code: str | bytes | None) -> bytes:
    """`` OK [code] text\r\n``: the same few hundred tails end nearly every
    command (``x OK NOOP completed``), so each is made once."""
    return b" " + status.encode("ascii") + b" " + _code(code) + _text(text) + CRLF


def untagged(status: str, text: str, code: str | bytes | None = None) -> bytes:
    """``* OK/NO/BAD/PREAUTH/BYE [code] text``."""
    return b"* " + status.encode("ascii") + b" " + _code(code) + _text(text) + CRLF


def ok(tag: bytes, text: str = "done", code: str | bytes | None = None) -> bytes:
    return tagged(tag, "OK", text, code)


def no(tag: bytes, text: str, code: str | bytes | None = None) -> bytes:
    return tagged(tag, "NO", text, code)


def bad(tag: bytes | None, text: str, code: str | bytes | None = None) -> bytes:
    """Tagged BAD, or ``* BAD`` when the tag was unusable."""
    if tag is None:
        return untagged("BAD", text, code)
    return tagged(tag, "BAD", text, code)


def bye(text: str, code: str | bytes | None = None) -> bytes:
    return untagged("BYE", text, code)




def greeting(text: str, code: str | bytes | None = None) -> bytes:
    return untagged("OK", text, code)


def continuation(text: str = "Ready") -> bytes:
    """``+ Ready``: the go-ahead for a synchronizing literal or IDLE."""
    return b"+ " + _text(text) + CRLF


def continuation_data(data: bytes) -> bytes:
    """``+ base64``: a SASL challenge (``+ `` alone for an empty one)."""
    return b"+ " + base64.b64encode(data) + CRLF


def _text(text: str) -> bytes:
    data = text.encode("utf-8")
    if b"\r" in data or b"\n" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return data or b"-"


# ---------------------------------------------------------- response codes


def code_capability(caps: Iterable[str]) -> bytes:
    return b"CAPABILITY " + " ".join(caps).encode("ascii")


def code_uidvalidity(n: int) -> bytes:
    return b"UIDVALIDITY %d" % n


def code_uidnext(n: int) -> bytes:
    return b"UIDNEXT %d" % n


def code_unseen(n: int) -> bytes:
    return b"UNSEEN %d" % n


def code_permanentflags(flags: Iterable[str], allow_new: bool = True) -> bytes:
    items = [f.encode("ascii") for f in flags]
    if allow_new:
        items.append(b"\\*")
    return b"PERMANENTFLAGS " + paren(items)


def code_highestmodseq(n: int) -> bytes:
    return b"HIGHESTMODSEQ %d" % n


def code_appenduid(uidvalidity: int, uids: Sequence[int]) -> bytes:
    """APPENDUID (RFC 4315), the UIDs in the order the messages were appended."""
    return b"APPENDUID %d " % uidvalidity + format_ints(uids, sort=False)


def code_copyuid(uidvalidity: int, src: Sequence[int], dst: Sequence[int]) -> bytes:
    """COPYUID (RFC 4315): the two sets correspond element by element."""
    return b"COPYUID %d %s %s" % (uidvalidity, format_ints(src, sort=False), format_ints(dst, sort=False))


def code_modified(nums: Iterable[int]) -> bytes:
    return b"MODIFIED " + format_ints(nums)


def code_mailboxid(object_id: str) -> bytes:
    return b"MAILBOXID (" + object_id.encode("ascii") + b")"







# ------------------------------------------------------------ untagged data


def capability(caps: Iterable[str]) -> bytes:
    return b"* " + code_capability(caps) + CRLF


def enabled(caps: Iterable[str]) -> bytes:
    caps = list(caps)
    return b"* ENABLED" + b"".join(b" " + c.encode("ascii") for c in caps) + CRLF


def flags(flag_names: Iterable[str]) -> bytes:
    return b"* FLAGS (" + " ".join(flag_names).encode("utf-8") + b")" + CRLF


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def recent(n: int) -> bytes:
    return b"* %d RECENT\r\n" % n


def expunge(seq: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % seq


def vanished(uids: Iterable[int], earlier: bool = False) -> bytes:
    s = format_ints(uids)
    return (b"* VANISHED (EARLIER) " if earlier else b"* VANISHED ") + s + CRLF


def vanished_ranges(ranges: Iterable[tuple[int, int]], earlier: bool = False) -> bytes:
    """VANISHED for UID ranges ``[(lo, hi), ...]`` however large (RFC 7162
    3.2.5.2: everything a client knows of that is gone, past the log)."""
    s = b",".join(b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi) for lo, hi in ranges)
    return (b"* VANISHED (EARLIER) " if earlier else b"* VANISHED ") + s + CRLF


def search(nums: Iterable[int], modseq: int | None = None) -> bytes:
    body = _nums(nums)
    out = b"* SEARCH"
    if body:
        out += b" " + body
        if modseq is not None:
            out += b" (MODSEQ %d)" % modseq
    return out + CRLF


def sort(nums: Iterable[int]) -> bytes:
    """``* SORT 5 3 4`` (RFC 5256), in sort order."""
    body = _nums(nums)
    return b"* SORT" + (b" " + body if body else b"") + CRLF


def esearch(
    tag: bytes | None,
    uid: bool,
    *,
    min: int | None = None,
    max: int | None = None,
    count: int | None = None,
    all: Iterable[int] | None = None,
    modseq: int | None = None,
    keep_order: bool = False,
    partial: tuple[tuple[int, int], Iterable[int]] | None = None,
) -> bytes:
    """``* ESEARCH (TAG "t") UID MIN 1 MAX 9 COUNT 4 ALL 1:3,9 MODSEQ 7`` (RFC 4731).

    The one formatter for SEARCH RETURN, IMAP4rev2 SEARCH and ESORT (RFC 5267):
    an item left None (or ``all`` empty) is left out.  ``keep_order`` keeps
    ``all`` in the given order (ESORT's ALL is in sort order, RFC 5267 §3.2);
    otherwise it goes out as an ascending set.  ``partial`` is the requested
    range and the results in it: ``PARTIAL (1:100 4:9)``, ``NIL`` when there
    are none (RFC 5267 §4.4, RFC 9394: ``PARTIAL (-1:-100 ...)``), in the same
    order rule as ``all``.
    """
    out = [b"* ESEARCH"]
    if tag is not None:
        out.append(b"(TAG " + quoted(tag) + b")")
    if uid:
        out.append(b"UID")
    if min is not None:
        out.append(b"MIN %d" % min)
    if max is not None:
        out.append(b"MAX %d" % max)
    if count is not None:
        out.append(b"COUNT %d" % count)
    if all is not None:
        s = format_ints(all, sort=not keep_order)
        if s:
            out.append(b"ALL " + s)
    if partial is not None:
        (lo, hi), nums = partial
        s = format_ints(nums, sort=not keep_order)
        out.append(b"PARTIAL (%d:%d %s)" % (lo, hi, s or b"NIL"))
    if modseq is not None:
        out.append(b"MODSEQ %d" % modseq)
    return b" ".join(out) + CRLF


def esearch_update(tag: bytes, uid: bool,
                   items: Iterable[tuple[str, Iterable[tuple[int, Iterable[int]]]]]) -> bytes:
    """``* ESEARCH (TAG "t") UID REMOVEFROM (0 3:4) ADDTO (1 7,2)`` (RFC 5267 §4.3).

    ITEMS: ("ADDTO" or "REMOVEFROM", [(context position, numbers)]) in the
    order the client must apply them.  The numbers keep their given order
    (a SORT context's are in sort order; a SEARCH context's come ascending)."""
    out = [b"* ESEARCH (TAG " + quoted(tag) + b")"]
    if uid:
        out.append(b"UID")
    for name, pairs in items:
        body = b" ".join(b"%d %s" % (pos, format_ints(nums, sort=False)) for pos, nums in pairs)
        out.append(name.encode("ascii") + b" (" + body + b")")
    return b" ".join(out) + CRLF


def code_noupdate(tag: bytes) -> bytes:
    """``NOUPDATE "tag"``: no updates for that searching command (RFC 5267 §4.3.1)."""
    return b"NOUPDATE " + quoted(tag)


class ThreadNode(Protocol):
    """A THREAD tree node: a message number (None for a dummy parent) and its children."""

    key: int | None
    children: Sequence[ThreadNode]


def thread(roots: Sequence[ThreadNode]) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4).

    A parent and a single child continue one list (``3 6``); siblings open
    one nested list each; a dummy contributes no number (``((3)(5))``).
    Iterative, so a reply chain of any depth cannot hit the recursion limit.
    """
    out: list[bytes] = []
    work: list[object] = list(reversed(roots))
    while work:
        item = work.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        node = item
        out.append(b"(")
        started = False
        while True:
            if node.key is not None:
                if started:
                    out.append(b" ")
                out.append(b"%d" % node.key)
                started = True
            if len(node.children) == 1:
                node = node.children[0]
                continue
            if node.children:
                if started:
                    out.append(b" ")
                work.append(b")")
                work.extend(reversed(node.children))
            else:
                out.append(b")")
            break
    body = b"".join(out)
    return b"* THREAD" + (b" " + body if body else b"") + CRLF


_DELIMS = {"/": b'"/"', ".": b'"."'}


def list_(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    childinfo: Iterable[str] = (),
    oldname: str | None = None,
    command: bytes = b"LIST",
) -> bytes:
    """``* LIST (\\HasNoChildren) "/" INBOX`` plus RFC 5258 extended items."""
    delim = NIL if delimiter is None else _DELIMS.get(delimiter) or quoted(delimiter)
    out = [
        b"* " + command + b" (" + " ".join(attributes).encode("ascii") + b") " + delim + b" "
        + mailbox(name, utf8)
    ]
    ext = []
    childinfo = tuple(childinfo)
    if childinfo:
        ext.append(b'"CHILDINFO" ' + paren(quoted(c) for c in childinfo))
    if oldname is not None:
        ext.append(b'"OLDNAME" (' + mailbox(oldname, utf8) + b")")
    if ext:
        out.append(paren(ext))
    return b" ".join(out) + CRLF




def status(name: str, items: Iterable[tuple[str, int | str | None]], *, utf8: bool = False) -> bytes:
    """``* STATUS name (MESSAGES 3 UIDNEXT 9 MAILBOXID (M1) APPENDLIMIT NIL)``."""
    out = []
    for key, val in items:
        if val is None:
            out.append(key.encode("ascii") + b" NIL")
        elif isinstance(val, str):
            out.append(key.encode("ascii") + b" (" + val.encode("ascii") + b")")
        else:
            out.append(b"%s %d" % (key.encode("ascii"), val))
    return b"* STATUS " + mailbox(name, utf8) + b" " + paren(out) + CRLF


def _ns(entries: Iterable[tuple[str, str | None]] | None, utf8: bool) -> bytes:
    if entries is None:
        return NIL
    out = []
    for prefix, delim in entries:
        name = prefix.encode("utf-8") if utf8 else modutf7.encode(prefix)
        out.append(b"(" + string(name, utf8) + b" " + (NIL if delim is None else quoted(delim)) + b")")
    return b"(" + b"".join(out) + b")"


def namespace(
    personal: Iterable[tuple[str, str | None]] | None,
    other: Iterable[tuple[str, str | None]] | None = None,
    shared: Iterable[tuple[str, str | None]] | None = None,
    *,
    utf8: bool = False,
) -> bytes:
    """``* NAMESPACE (("" "/")) NIL NIL``."""
    return b"* NAMESPACE " + b" ".join(_ns(x, utf8) for x in (personal, other, shared)) + CRLF


def id_(params: Iterable[tuple[str, str | None]] | None) -> bytes:
    if params is None:
        return b"* ID NIL\r\n"
    items = []
    for k, v in params:
        items.append(string(k))
        items.append(nstring(v, utf8=True))
    return b"* ID " + paren(items) + CRLF


def quota(root: str, resources: Iterable[tuple[str, int, int]]) -> bytes:
    """``* QUOTA "" (STORAGE 10 512)`` (RFC 9208; STORAGE in KiB)."""
    body = paren(b"%s %d %d" % (name.encode("ascii"), usage, limit) for name, usage, limit in resources)
    return b"* QUOTA " + astring(root) + b" " + body + CRLF


def quotaroot(name: str, roots: Iterable[str], *, utf8: bool = False) -> bytes:
    return b"* QUOTAROOT " + mailbox(name, utf8) + b"".join(b" " + astring(r) for r in roots) + CRLF
