"""CommandFrame -> typed Command (RFC 9051 §6 plus the extensions we serve).

``parse_command(frame)`` reads the frame once with a ``grammar.Reader`` and
dispatches on the command name through ``COMMAND_PARSERS`` (one function per
command).  Any syntax error raises ``CommandError(tag, message, code)``,
which the session answers with ``tag BAD [code] message``.

Bounds: parenthesis / search-key nesting (``max_depth``) and sequence-set
size (``max_ranges``) raise ``CommandError(..., code="LIMIT")``.
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from ... import vocab
from ...mime import charsets
from . import modutf7
from .errors import CommandError, ParseError
from .events import (
    Age,
    All,
    And,
    Append,
    AppendMessage,
    Authenticate,
    Body,
    CancelUpdate,
    Capability,
    CatenateText,
    CatenateUrl,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Date,
    Delete,
    Enable,
    Expunge,
    Fetch,
    FetchAtt,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    FetchPreview,
    Flag,
    GetQuota,
    GetQuotaRoot,
    Header,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    ModSeq,
    Move,
    Namespace,
    Noop,
    Not,
    Notify,
    NotifyGroup,
    ObjectId,
    Or,
    QResync,
    Rename,
    SaveDateSupported,
    Search,
    SearchKey,
    Section,
    Select,
    Sequence,
    SetQuota,
    Size,
    Sort,
    SortKey,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Text,
    Thread,
    Unauthenticate,
    Unselect,
    Unsubscribe,
)
from .frames import CommandFrame, Literal
from .grammar import DEFAULT_MAX_DEPTH, TAG, Reader, canonical_flag
from .numset import DEFAULT_MAX_RANGES, NumSet

STATUS_ITEMS = frozenset(
    {
        "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
        "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID",
    }
)
LIST_SELECT = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})
SEARCH_RETURN = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE",
                           "CONTEXT", "UPDATE", "PARTIAL"})   # the last three: RFC 5267
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
THREAD_ALGORITHMS = frozenset({"REFERENCES", "ORDEREDSUBJECT"})
SPECIAL_USES = {u.lower(): u for u in vocab.ROLE_TO_SPECIAL_USE.values()}
UID_COMMANDS = frozenset({"FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"})

_OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_STORE_NAME = re.compile(rb"[+-]?[A-Za-z.]+")
_SECTION_TEXT = re.compile(rb"[A-Za-z.]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
# RFC 5267 partial-range, with RFC 9394's partial-range-last (-1 is the last result)
_PARTIAL_RANGE = re.compile(rb"(-?)([1-9][0-9]{0,9}):(-?)([1-9][0-9]{0,9})")

FETCH_SIMPLE = frozenset(
    {
        "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE", "UID",
        "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ", "EMAILID", "THREADID", "SAVEDATE",
    }
)
_FAST = (FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE"))
FETCH_MACROS = {
    "FAST": _FAST,
    "ALL": _FAST + (FetchItem("ENVELOPE"),),
    "FULL": _FAST + (FetchItem("ENVELOPE"), FetchItem("BODY")),
}


class _Ctx:
    __slots__ = ("uid", "utf8", "charset")

    def __init__(self, uid: bool, utf8: bool) -> None:
        self.uid = uid
        self.utf8 = utf8
        self.charset = "utf-8"


Parser = Callable[[Reader, bytes, _Ctx], Command]


def parse_command(
    frame: CommandFrame,
    *,
    utf8: bool = False,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_ranges: int = DEFAULT_MAX_RANGES,
) -> Command:
    """Parse one framed command.  ``utf8``: UTF8=ACCEPT is enabled (RFC 6855)."""
    tag = frame.tag
    if not tag or TAG.fullmatch(tag) is None:
        raise CommandError(None, "invalid tag")
    parts = frame.parts
    if len(parts) == 1:
        # fast path: a command without arguments (NOOP, CHECK, LOGOUT...),
        # the same event the parser below makes of it
        bare = _BARE.get(parts[0].upper())
        # (COMMAND_PARSERS stays the authority: a replaced parser is used)
        if bare is not None and COMMAND_PARSERS.get(bare[0]) is bare[1]:
            return bare[2](tag)
        # fast path: a STORE on one message with a parenthesised flag list
        # (a mail client's single flag change), the event _store makes of it
        m = _STORE_ONE.match(parts[0])
        if m is not None and max_ranges > 0 and COMMAND_PARSERS.get("STORE") is _store:
            cmd = _store_one(tag, m, max_ranges)
            if cmd is not None:
                return cmd
        # fast path: a FETCH of one number or range with data items without
        # arguments ([UID] FETCH n (FLAGS), UID FETCH n:* (UID FLAGS)...)
        m = _FETCH_ONE.match(parts[0]) if m is None else None
        if m is not None and max_ranges > 0 and COMMAND_PARSERS.get("FETCH") is _fetch:
            cmd = _fetch_one(tag, m)
            if cmd is not None:
                return cmd
    r = Reader(frame.parts, max_depth=max_depth, max_ranges=max_ranges)
    try:
        name = r.keyword()
        uid = False
        if name == "UID":
            r.sp()
            name = r.keyword()
            if name not in UID_COMMANDS:
                raise ParseError(f"UID {name} is not a command")
            uid = True
        parser = COMMAND_PARSERS.get(name)
        if parser is None:
            raise ParseError("unknown command")
        cmd = parser(r, tag, _Ctx(uid, utf8))
        r.end()
        return cmd
    except ParseError as exc:
        raise CommandError(tag, exc.message, exc.code) from None
    except RecursionError:
        raise CommandError(tag, "too deeply nested", "LIMIT") from None


# ------------------------------------------------------------------ helpers


def decode_mailbox(raw: bytes, utf8: bool = False, lenient: bool = False) -> str:
    """Wire mailbox name -> str (INBOX normalised).  LENIENT: a name that is
    not valid modified UTF-7 comes back as ``modutf7.InvalidName`` (its wire
    text) instead of raising, for the commands that answer it NO (SELECT,
    EXAMINE, STATUS) or match it as a plain name (LIST), as Dovecot does."""
    if utf8:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("mailbox name is not UTF-8") from None
    else:
        try:
            name = modutf7.decode(raw)
        except ParseError:
            if not lenient:
                raise
            return modutf7.InvalidName(raw.decode("utf-8", "replace"))
    if len(name) == 5 and name.upper() == "INBOX":
        return "INBOX"
    return name


def _mailbox(r: Reader, ctx: _Ctx, lenient: bool = False) -> str:
    return decode_mailbox(r.astring("mailbox name"), ctx.utf8, lenient)


def _pattern(r: Reader, ctx: _Ctx) -> str:
    return decode_mailbox(r.list_mailbox(), ctx.utf8, lenient=True)


def _spaces(r: Reader) -> None:
    """Leniency: extra spaces just inside a parenthesised list (``( "a" "b" )``,
    aioimaplib's ID) where no ambiguity can arise."""
    while r.maybe_sp():
        pass


def _close_or_sp(r: Reader) -> bool:
    """After a list element: True at the closing parenthesis (spaces before it
    allowed), else consume the separating space(s) and return False."""
    if r.maybe_close():
        return True
    r.sp()
    _spaces(r)
    return r.maybe_close()


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"{what} is not UTF-8") from None


def _charset(r: Reader, ctx: _Ctx) -> str:
    """A CHARSET argument: sets the codec for the search strings, returns the
    name as the client wrote it, upper-cased."""
    name = r.astring("charset").decode("ascii", "replace").upper()
    info = charsets.lookup(name)          # WINDOWS-31J on every Python, not 3.13 only
    if info is None:
        raise ParseError(f"unsupported charset {name[:40]}", code="BADCHARSET (UTF-8 US-ASCII)")
    ctx.charset = info.name
    return name


def _text(r: Reader, ctx: _Ctx) -> str:
    raw = r.astring()
    try:
        return raw.decode(ctx.charset)
    except UnicodeDecodeError:
        raise ParseError(f"search text is not valid {ctx.charset}") from None


def _no_args(cls: type) -> Parser:
    def parse(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
        return cls(tag)

    return parse


# --------------------------------------------------------- any / non-auth state


def _authenticate(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    mech = r.atom("mechanism").decode("ascii").upper()
    initial = None
    if r.maybe_sp():
        raw = r.atom("initial response")
        if raw == b"=":
            initial = b""
        else:
            if _BASE64.fullmatch(raw) is None or len(raw) % 4:
                raise ParseError("invalid base64 in initial response")
            try:
                initial = base64.b64decode(raw, validate=True)
            except binascii.Error:
                raise ParseError("invalid base64 in initial response") from None
    return Authenticate(tag, mech, initial)


def _login(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    user = _utf8(r.astring("user name"), "user name")
    r.sp()
    password = _utf8(r.astring("password"), "password")
    return Login(tag, user, password)


def _enable(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    caps = []
    r.sp()
    caps.append(r.atom("capability").decode("ascii").upper())
    while r.maybe_sp():
        caps.append(r.atom("capability").decode("ascii").upper())
    return Enable(tag, tuple(caps))


def _compress(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    return Compress(tag, r.atom("algorithm").decode("ascii").upper())


def _id(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    if r.maybe_keyword("NIL"):
        return Id(tag, None)
    r.open()
    _spaces(r)
    params: list[tuple[str, str | None]] = []
    if not r.maybe_close():
        while True:
            key = r.string().decode("utf-8", "replace")
            r.sp()
            _spaces(r)
            val = r.nstring()
            params.append((key, None if val is None else val.decode("utf-8", "replace")))
            if len(params) > 30:
                raise ParseError("too many ID parameters", code="LIMIT")
            if _close_or_sp(r):
                break
    return Id(tag, tuple(params))


# ------------------------------------------------------------ authenticated


def _select(readonly: bool) -> Parser:
    def parse(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
        r.sp()
        mailbox = _mailbox(r, ctx, lenient=True)
        condstore = False
        qresync = None
        if r.maybe_sp():
            r.open()
            if not r.maybe_close():
                while True:
                    param = r.keyword()
                    if param == "CONDSTORE":
                        condstore = True
                    elif param == "QRESYNC" and qresync is None:
                        r.sp()
                        qresync = _qresync(r)
                    else:
                        raise ParseError(f"unknown select parameter {param[:40]}")
                    if r.maybe_close():
                        break
                    r.sp()
        return Select(tag, mailbox, readonly, condstore, qresync)

    return parse


def _qresync(r: Reader) -> QResync:
    r.open()
    uidvalidity = r.nz_number()
    r.sp()
    modseq = r.number64()
    if modseq == 0:
        raise ParseError("mod-sequence must not be zero")
    known = None
    match = None
    if r.maybe_sp():
        if r.peek() != 0x28:
            known = _no_star(r.seqset(allow_saved=False))
            if r.maybe_sp():
                match = _seq_match(r)
        else:
            match = _seq_match(r)
    r.close()
    return QResync(uidvalidity, modseq, known, match)


def _seq_match(r: Reader) -> tuple[NumSet, NumSet]:
    r.open()
    seqs = _no_star(r.seqset(allow_saved=False))
    r.sp()
    uids = _no_star(r.seqset(allow_saved=False))
    r.close()
    return seqs, uids


def _no_star(ns: NumSet) -> NumSet:
    if ns.has_star:
        raise ParseError("* not allowed here")
    return ns


def _create(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    mailbox = _mailbox(r, ctx)
    uses: list[str] = []
    if r.maybe_sp():
        r.open()
        while True:
            param = r.keyword()
            if param != "USE":
                raise ParseError(f"unknown CREATE parameter {param[:40]}")
            r.sp()
            for flag in r.flag_list():
                if not flag.startswith("\\"):
                    raise ParseError("special-use attributes start with a backslash")
                uses.append(SPECIAL_USES.get(flag.lower(), flag))
            if r.maybe_close():
                break
            r.sp()
    return Create(tag, mailbox, tuple(uses))


def _one_mailbox(cls: type) -> Parser:
    def parse(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
        r.sp()
        return cls(tag, _mailbox(r, ctx))

    return parse


def _rename(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    old = _mailbox(r, ctx)
    r.sp()
    return Rename(tag, old, _mailbox(r, ctx))


def _list(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    extended = False
    selection: set[str] = set()
    if r.peek() == 0x28:
        extended = True
        r.open()
        _spaces(r)
        if not r.maybe_close():
            while True:
                opt = r.keyword()
                if opt not in LIST_SELECT:
                    raise ParseError(f"unknown LIST selection option {opt[:40]}")
                selection.add(opt)
                if _close_or_sp(r):
                    break
        r.sp()
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            # RFC 5258 3: BAD when used alone or only with REMOTE
            raise ParseError("RECURSIVEMATCH needs another selection option than REMOTE")
    reference = _pattern(r, ctx)
    r.sp()
    patterns: list[str] = []
    if r.peek() == 0x28:
        extended = True
        r.open()
        patterns.append(_pattern(r, ctx))
        while not r.maybe_close():
            r.sp()
            patterns.append(_pattern(r, ctx))
    else:
        patterns.append(_pattern(r, ctx))
    returns: set[str] = set()
    status = None
    if r.maybe_sp():
        if not r.maybe_keyword("RETURN"):
            raise ParseError("expected RETURN")
        extended = True
        r.sp()
        r.open()
        _spaces(r)
        if not r.maybe_close():
            while True:
                opt = r.keyword()
                if opt not in LIST_RETURN:
                    raise ParseError(f"unknown LIST return option {opt[:40]}")
                if opt == "STATUS":
                    r.sp()
                    status = _status_items(r)
                returns.add(opt)
                if _close_or_sp(r):
                    break
    return List(tag, reference, tuple(patterns), frozenset(selection), frozenset(returns), status, extended)


def _lsub(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    ref = _pattern(r, ctx)
    r.sp()
    return Lsub(tag, ref, _pattern(r, ctx))


def _status_items(r: Reader) -> tuple[str, ...]:
    r.open()
    _spaces(r)
    items = []
    while True:
        item = r.keyword()
        if item not in STATUS_ITEMS:
            raise ParseError(f"unknown STATUS item {item[:40]}")
        items.append(item)
        if _close_or_sp(r):
            return tuple(items)


def _status(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    mailbox = _mailbox(r, ctx, lenient=True)
    r.sp()
    return Status(tag, mailbox, _status_items(r))


def _append(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    mailbox = _mailbox(r, ctx)
    messages = []
    while True:
        r.sp()
        flags: tuple[str, ...] = ()
        when = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            when = r.date_time()
            r.sp()
        if r.at_literal():
            data, binary = r.literal(binary_ok=True)
            messages.append(AppendMessage(flags, when, data, binary))
        elif r.maybe_keyword("CATENATE"):
            r.sp()
            messages.append(AppendMessage(flags, when, catenate=_catenate(r)))
        elif r.maybe_keyword("UTF8"):
            r.sp()
            r.open()
            data, binary = r.literal(binary_ok=True)
            r.close()
            messages.append(AppendMessage(flags, when, data, binary, utf8=True))
        else:
            raise ParseError("expected message literal")
        if r.at_end():
            return Append(tag, mailbox, tuple(messages))


def append_target(tag: bytes, parts: tuple, *, utf8: bool = False) -> str | None:
    """An APPEND whose message literal is announced (``parts``: the command
    so far, from ``frames.ContinuationRequest``): the target mailbox name, so
    the session can answer NO [TRYCREATE] before "+" (RFC 3501 6.3.11).
    None when the literal is not part of an APPEND's messages (or the
    mailbox name is itself the literal).  Raises ``CommandError`` when the
    text so far is already malformed (a bad date-time, flag or name): BAD
    before "+" rather than after the upload."""
    r = Reader(tuple(parts) + (Literal(b""), b""))
    try:
        if r.keyword() != "APPEND":
            return None
    except ParseError:
        return None     # not ours: the full parse answers it
    try:
        r.sp()
        if r.at_literal():
            return None
        mailbox = _mailbox(r, _Ctx(False, utf8))
        last = len(parts)          # the index of the announced literal
        while True:
            r.sp()
            if r.peek() == 0x28:
                r.flag_list()
                r.sp()
            if r.peek() == 0x22:
                r.date_time()
                r.sp()
            if r.at_literal():
                if r._i + 1 == last:
                    return mailbox
                r.literal(binary_ok=True)
            else:
                # a literal inside CATENATE / UTF8: the target is known all the
                # same (and any syntax error there is the full parse's to report)
                return mailbox
            if r.at_end():
                return None
    except ParseError as exc:
        raise CommandError(tag, exc.message, exc.code) from None


def _catenate(r: Reader) -> tuple[CatenateText | CatenateUrl, ...]:
    r.open()
    parts: list[CatenateText | CatenateUrl] = []
    while True:
        kind = r.keyword()
        r.sp()
        if kind == "TEXT":
            data, binary = r.literal(binary_ok=True)
            parts.append(CatenateText(data, binary))
        elif kind == "URL":
            parts.append(CatenateUrl(_utf8(r.astring("URL"), "URL")))
        else:
            raise ParseError("expected TEXT or URL")
        if r.maybe_close():
            return tuple(parts)
        r.sp()


def _getquota(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    return GetQuota(tag, _utf8(r.astring("quota root"), "quota root"))


def _setquota(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    root = _utf8(r.astring("quota root"), "quota root")
    r.sp()
    r.open()
    limits = []
    if not r.maybe_close():
        while True:
            res = r.keyword()
            r.sp()
            limits.append((res, r.number64()))
            if r.maybe_close():
                break
            r.sp()
    return SetQuota(tag, root, tuple(limits))


# ---------------------------------------------------------------- selected


def _expunge(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    if ctx.uid:
        r.sp()
        return Expunge(tag, True, r.seqset())
    return Expunge(tag)


def _copy_move(cls: type) -> Parser:
    def parse(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
        r.sp()
        seqs = r.seqset()
        r.sp()
        return cls(tag, ctx.uid, seqs, _mailbox(r, ctx))

    return parse


def _store(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    seqs = r.seqset()
    r.sp()
    unchanged = None
    if r.maybe_open():
        while True:
            mod = r.keyword()
            if mod != "UNCHANGEDSINCE" or unchanged is not None:
                raise ParseError(f"unknown STORE modifier {mod[:40]}")
            r.sp()
            unchanged = r.number64()
            if r.maybe_close():
                break
            r.sp()
        r.sp()
    tok = r._match(_STORE_NAME)
    if tok is None:
        raise ParseError("expected FLAGS, +FLAGS or -FLAGS")
    name = tok.decode("ascii").upper()
    mode = "replace"
    if name[0] == "+":
        mode, name = "add", name[1:]
    elif name[0] == "-":
        mode, name = "remove", name[1:]
    silent = name == "FLAGS.SILENT"
    if name not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError(f"unknown store item {name[:40]}")
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        fl = [r.flag()]
        while r.maybe_sp():
            fl.append(r.flag())
        flags = tuple(fl)
    return Store(tag, ctx.uid, seqs, mode, flags, silent, unchanged)


def _fetch(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    seqs = r.seqset()
    r.sp()
    # the item list as the client wrote it (the rest of a line with no
    # literal): a client sends the same few lists again and again, so the
    # items parsed from one are kept (_FETCH_TAILS) and the next FETCH with
    # that list skips the item grammar
    tail = None
    if r._i == len(r._parts) - 1 and r.max_depth >= _FETCH_DEPTH:
        tail = r.buf[r.pos:]
        hit = _FETCH_TAILS.get(tail)
        if hit is not None:
            r.pos = len(r.buf)
            return Fetch(tag, ctx.uid, seqs, hit)
    items: list[FetchAtt] = []
    if r.maybe_open():
        _spaces(r)
        items.append(_fetch_att(r))
        while not _close_or_sp(r):
            items.append(_fetch_att(r))
    else:
        m = _FETCH_NAME.match(r.buf, r.pos)
        macro = FETCH_MACROS.get(m.group().decode("ascii").upper()) if m else None
        if macro is not None and (m.end() == len(r.buf) or r.buf[m.end()] == 0x20):
            r.pos = m.end()
            items.extend(macro)
        else:
            items.append(_fetch_att(r))
    if tail is not None and r.at_end():
        # (only a list that is the whole tail, no modifier: what a hit returns)
        if len(_FETCH_TAILS) < _FETCH_TAILS_MAX and len(tail) <= _FETCH_TAIL_BYTES:
            _FETCH_TAILS[tail] = tuple(items)
    changedsince = None
    vanished = False
    if r.maybe_sp():
        r.open()
        while True:
            mod = r.keyword()
            if mod == "CHANGEDSINCE" and changedsince is None:
                r.sp()
                changedsince = r.number64()
            elif mod == "VANISHED" and not vanished:
                vanished = True
            else:
                raise ParseError(f"unknown FETCH modifier {mod[:40]}")
            if r.maybe_close():
                break
            r.sp()
        if vanished and (not ctx.uid or changedsince is None):
            raise ParseError("VANISHED needs UID FETCH and CHANGEDSINCE")
    return Fetch(tag, ctx.uid, seqs, tuple(items), changedsince, vanished)


#: _fetch's item lists by their wire text: at most _FETCH_TAILS_MAX lists of at
#: most _FETCH_TAIL_BYTES each (then no more are kept: bounded whatever
#: clients send).  Only lists parsed whole and valid are kept, and only read
#: by a Reader allowing _FETCH_DEPTH levels of parentheses, the most an item
#: list nests (the list; in it a HEADER.FIELDS list or PREVIEW's modifiers),
#: so a hit is exactly the event the grammar makes of that text.
_FETCH_TAILS: dict[bytes, tuple] = {}
_FETCH_TAILS_MAX = 256
_FETCH_TAIL_BYTES = 512
_FETCH_DEPTH = 2


def _fetch_att(r: Reader) -> FetchAtt:
    tok = r._match(_FETCH_NAME)
    if tok is None:
        raise ParseError("expected fetch attribute")
    name = tok.decode("ascii").upper()
    bracket = r.peek() == 0x5B
    if name in ("BODY", "BODY.PEEK") and bracket:
        section = _section(r, binary=False)
        return FetchBody(section, _partial(r), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK") and bracket:
        section = _section(r, binary=True)
        return FetchBody(section, _partial(r), peek=name == "BINARY.PEEK", binary=True)
    if name == "BINARY.SIZE" and bracket:
        return FetchBinarySize(_section(r, binary=True).part)
    if bracket:
        raise ParseError(f"{name[:40]} takes no section")
    if name == "PREVIEW":
        lazy = False
        if r.buf.startswith(b" (", r.pos):
            r.pos += 1
            r.open()
            while True:
                mod = r.keyword()
                if mod != "LAZY":
                    raise ParseError("unknown PREVIEW modifier")
                lazy = True
                if r.maybe_close():
                    break
                r.sp()
        return FetchPreview(lazy)
    if name in FETCH_SIMPLE:
        return FetchItem(name)
    raise ParseError(f"unknown fetch attribute {name[:40]}")


def _section(r: Reader, binary: bool) -> Section:
    r.char(b"[")
    part: list[int] = []
    text = None
    fields: tuple[str, ...] = ()
    c = r.peek()
    if 0x30 <= c <= 0x39:
        part.append(r.nz_number())
        while r.maybe_char(b"."):
            c = r.peek()
            if 0x30 <= c <= 0x39:
                part.append(r.nz_number())
            else:
                text = _section_text(r)
                break
        if len(part) > 100:
            raise ParseError("section part too deep", code="LIMIT")
    elif c != 0x5D:
        text = _section_text(r)
    if text is not None:
        if binary:
            raise ParseError("BINARY sections are part numbers only")
        if text == "MIME" and not part:
            raise ParseError("MIME needs a part number")
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            r.sp()
            r.open()
            names = [r.astring("header name")]
            while not r.maybe_close():
                r.sp()
                names.append(r.astring("header name"))
            try:
                fields = tuple(n.decode("ascii") for n in names)
            except UnicodeDecodeError:
                raise ParseError("header names are ASCII") from None
    r.char(b"]")
    return Section(tuple(part), text, fields)


def _section_text(r: Reader) -> str:
    tok = r._match(_SECTION_TEXT)
    text = tok.decode("ascii").upper() if tok else ""
    if text not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
        raise ParseError("invalid section")
    return text


def _partial(r: Reader) -> tuple[int, int] | None:
    if not r.maybe_char(b"<"):
        return None
    origin = r.number()
    r.char(b".")
    length = r.nz_number()
    r.char(b">")
    return origin, length


# ------------------------------------------------------------- search keys


def _return_opts(r: Reader, allowed: frozenset[str]
                 ) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """``RETURN (...)`` after the keyword RETURN: the options and the PARTIAL
    range.  ``RETURN ()`` means ALL, and so does a list of CONTEXT alone (a
    hint with no result of its own, RFC 5267 4.2; Dovecot answers ALL too).

    PARTIAL (RFC 5267 4.4, RFC 9394 3.1) takes ``lo:hi`` or ``-lo:-hi`` (both
    ends of one sign; 500:400 is 400:500); it and ALL exclude each other, and
    it may be given once.  The range comes back ordered: ``(1, 100)`` or
    ``(-1, -100)`` (nearest the end first)."""
    r.sp()
    r.open()
    opts: list[str] = []
    partial = None
    if not r.maybe_close():
        while True:
            opt = r.keyword()
            if opt not in allowed:
                raise ParseError(f"unknown RETURN option {opt[:40]}")
            if opt == "PARTIAL":
                if partial is not None:
                    raise ParseError("PARTIAL may be given only once")
                r.sp()
                partial = _partial_range(r)
            if opt not in opts:
                opts.append(opt)
            if r.maybe_close():
                break
            r.sp()
    if "PARTIAL" in opts and "ALL" in opts:
        raise ParseError("PARTIAL conflicts with ALL")
    if not [o for o in opts if o != "CONTEXT"]:
        opts.append("ALL")
    return tuple(opts), partial


def _partial_range(r: Reader) -> tuple[int, int]:
    tok = r._match(_PARTIAL_RANGE)
    if tok is None:
        raise ParseError("expected a PARTIAL range such as 1:100 or -1:-100")
    m = _PARTIAL_RANGE.fullmatch(tok)
    if m.group(1) != m.group(3):
        raise ParseError("both ends of a PARTIAL range have the same sign")
    a, b = sorted((int(m.group(2)), int(m.group(4))))
    if a > 0xFFFFFFFF or b > 0xFFFFFFFF:
        raise ParseError("PARTIAL range out of range")
    return (-a, -b) if m.group(1) else (a, b)


def _search_keys(r: Reader, ctx: _Ctx) -> SearchKey:
    keys = [_search_key(r, ctx)]
    while r.maybe_sp():
        keys.append(_search_key(r, ctx))
    return keys[0] if len(keys) == 1 else And(tuple(keys))


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True), "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False), "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
_DATE_KEYS = {
    "BEFORE": ("internal", "before"), "ON": ("internal", "on"), "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"), "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since"),
    "SAVEDBEFORE": ("saved", "before"), "SAVEDON": ("saved", "on"), "SAVEDSINCE": ("saved", "since"),
}
_NEW = And((Flag("\\Recent"), Flag("\\Seen", False)))
_OLD = Not(Flag("\\Recent"))


def _search_key(r: Reader, ctx: _Ctx) -> SearchKey:
    if r.maybe_open():
        keys = [_search_key(r, ctx)]
        while not r.maybe_close():
            r.sp()
            keys.append(_search_key(r, ctx))
        return keys[0] if len(keys) == 1 else And(tuple(keys))
    if r.at_seqset():
        return Sequence(r.seqset())
    name = r.keyword()
    flag = _FLAG_KEYS.get(name)
    if flag is not None:
        return Flag(*flag)
    if name == "ALL":
        return All()
    if name in _HEADER_KEYS:
        r.sp()
        return Header(name, _text(r, ctx))
    date_key = _DATE_KEYS.get(name)
    if date_key is not None:
        r.sp()
        return Date(date_key[0], date_key[1], r.date())
    if name == "NOT":
        r.sp()
        r.enter()
        key = _search_key(r, ctx)
        r.depth -= 1
        return Not(key)
    if name == "OR":
        r.sp()
        r.enter()
        left = _search_key(r, ctx)
        r.sp()
        right = _search_key(r, ctx)
        r.depth -= 1
        return Or(left, right)
    if name == "HEADER":
        r.sp()
        field = r.astring("header name")
        r.sp()
        try:
            fname = field.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError("header names are ASCII") from None
        return Header(fname, _text(r, ctx))
    if name == "BODY":
        r.sp()
        return Body(_text(r, ctx))
    if name == "TEXT":
        r.sp()
        return Text(_text(r, ctx))
    if name in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        return Flag(r.atom("keyword").decode("ascii"), name == "KEYWORD")
    if name in ("LARGER", "SMALLER"):
        r.sp()
        return Size(name.lower(), r.number64())
    if name == "UID":
        r.sp()
        return Sequence(r.seqset(), uid=True)
    if name == "NEW":
        return _NEW
    if name == "OLD":
        return _OLD
    if name == "MODSEQ":
        r.sp()
        entry = etype = None
        if r.peek() == 0x22:
            entry = _utf8(r.quoted(), "entry name")
            r.sp()
            etype = r.keyword().lower()
            if etype not in ("priv", "shared", "all"):
                raise ParseError("entry type must be priv, shared or all")
            r.sp()
        return ModSeq(r.number64(), entry, etype)
    if name in ("OLDER", "YOUNGER"):
        r.sp()
        return Age(name.lower(), r.nz_number())
    if name in ("EMAILID", "THREADID"):
        r.sp()
        tok = r.astring("object id")
        if _OBJECTID.fullmatch(tok) is None:
            raise ParseError("invalid object id")
        return ObjectId("email" if name == "EMAILID" else "thread", tok.decode("ascii"))
    if name == "SAVEDATESUPPORTED":
        return SaveDateSupported()
    raise ParseError(f"unknown search key {name[:40]}")


def _search(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    returns = None
    charset = None
    partial = None
    if r.maybe_keyword("RETURN"):
        returns, partial = _return_opts(r, SEARCH_RETURN)
        r.sp()
    if r.maybe_keyword("CHARSET"):
        r.sp()
        charset = _charset(r, ctx)
        r.sp()
    return Search(tag, ctx.uid, _search_keys(r, ctx), charset, returns, partial)


def _sort(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    returns = None
    partial = None
    if r.maybe_keyword("RETURN"):
        returns, partial = _return_opts(r, SEARCH_RETURN)
        r.sp()
    r.open()
    criteria = []
    while True:
        reverse = r.maybe_keyword("REVERSE")
        if reverse:
            r.sp()
        key = r.keyword()
        if key not in SORT_KEYS:
            raise ParseError(f"unknown sort key {key[:40]}")
        criteria.append(SortKey(key, reverse))
        if r.maybe_close():
            break
        r.sp()
    r.sp()
    charset = _charset(r, ctx)
    r.sp()
    return Sort(tag, ctx.uid, tuple(criteria), charset, _search_keys(r, ctx), returns, partial)


def _cancelupdate(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    """``CANCELUPDATE 1*(SP quoted)`` (RFC 5267 5)."""
    tags = []
    r.sp()
    tags.append(r.quoted())
    while r.maybe_sp():
        tags.append(r.quoted())
        if len(tags) > 100:
            raise ParseError("too many tags", code="LIMIT")
    return CancelUpdate(tag, tuple(tags))


def _thread(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    r.sp()
    alg = r.keyword()
    if alg not in THREAD_ALGORITHMS:
        raise ParseError(f"unknown threading algorithm {alg[:40]}")
    r.sp()
    charset = _charset(r, ctx)
    r.sp()
    return Thread(tag, ctx.uid, alg, charset, _search_keys(r, ctx))


# ---------------------------------------------------------------- notify

#: RFC 5465 §8 event names, keyed by their upper-case spelling
NOTIFY_EVENTS = {e.upper(): e for e in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
    "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange")}
NOTIFY_MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange",
                                   "AnnotationChange"})
NOTIFY_SELECTED = frozenset({"SELECTED", "SELECTED-DELAYED"})
NOTIFY_FILTERS = NOTIFY_SELECTED | {"INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"}
#: event groups, and mailbox names in one group, one NOTIFY SET may carry
NOTIFY_MAX_GROUPS = 64
NOTIFY_MAX_NAMES = 1000


def _notify(r: Reader, tag: bytes, ctx: _Ctx) -> Command:
    """``NOTIFY NONE`` / ``NOTIFY SET [STATUS] event-group *(SP event-group)``.

    The composition rules of RFC 5465 §5 and §6.1 are syntax here (BAD):
    MessageNew and MessageExpunge together, FlagChange/AnnotationChange only
    with both, one SELECTED/SELECTED-DELAYED group, only message events
    there, FETCH attributes only there.  Whether an event is *supported* is
    the session's question (NO [BADEVENT])."""
    r.sp()
    verb = r.keyword()
    if verb == "NONE":
        return Notify(tag, None)
    if verb != "SET":
        raise ParseError("expected NOTIFY SET or NOTIFY NONE")
    r.sp()
    status = r.maybe_keyword("STATUS")
    if status:
        r.sp()
    groups = [_notify_group(r, ctx)]
    while r.maybe_sp():
        groups.append(_notify_group(r, ctx))
        if len(groups) > NOTIFY_MAX_GROUPS:
            raise ParseError("too many NOTIFY event groups", code="LIMIT")
    if sum(g.filter in NOTIFY_SELECTED for g in groups) > 1:
        raise ParseError("only one SELECTED or SELECTED-DELAYED group")
    return Notify(tag, tuple(groups), status)


def _notify_group(r: Reader, ctx: _Ctx) -> NotifyGroup:
    r.open()
    spec = r.keyword()
    if spec not in NOTIFY_FILTERS:
        raise ParseError(f"unknown NOTIFY mailbox filter {spec[:40]}")
    names: list[str] = []
    if spec in ("SUBTREE", "MAILBOXES"):
        r.sp()
        if r.maybe_open():
            names.append(_mailbox(r, ctx))
            while not r.maybe_close():
                r.sp()
                names.append(_mailbox(r, ctx))
                if len(names) > NOTIFY_MAX_NAMES:
                    raise ParseError("too many mailbox names", code="LIMIT")
        else:
            names.append(_mailbox(r, ctx))
    r.sp()
    selected = spec in NOTIFY_SELECTED
    events: list[str] = []
    fetch = None
    if not r.maybe_keyword("NONE"):
        r.open()
        while True:
            raw = r.atom("event").decode("ascii")
            name = NOTIFY_EVENTS.get(raw.upper(), raw)
            if name in events:
                raise ParseError(f"event {name[:40]} given twice")
            events.append(name)
            if name == "MessageNew" and r.buf.startswith(b" (", r.pos):
                if not selected:
                    raise ParseError("FETCH attributes only with SELECTED or SELECTED-DELAYED")
                r.sp()
                r.open()
                atts = [_fetch_att(r)]
                while not r.maybe_close():
                    r.sp()
                    atts.append(_fetch_att(r))
                fetch = tuple(atts)
            if r.maybe_close():
                break
            r.sp()
    r.close()
    have = set(events)
    if ("MessageNew" in have) != ("MessageExpunge" in have):
        raise ParseError("MessageNew and MessageExpunge go together")
    if have & {"FlagChange", "AnnotationChange"} and "MessageNew" not in have:
        raise ParseError("FlagChange and AnnotationChange need MessageNew and MessageExpunge")
    if selected and have - NOTIFY_MESSAGE_EVENTS:
        raise ParseError("only message events with SELECTED or SELECTED-DELAYED")
    return NotifyGroup(spec, tuple(names), tuple(events), fetch)


COMMAND_PARSERS: dict[str, Parser] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTLS),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "ID": _id,
    "COMPRESS": _compress,
    "UNAUTHENTICATE": _no_args(Unauthenticate),
    "SELECT": _select(False),
    "EXAMINE": _select(True),
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _no_args(Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _no_args(Idle),
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(GetQuotaRoot),
    "SETQUOTA": _setquota,
    "CHECK": _no_args(Check),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(Copy),
    "MOVE": _copy_move(Move),
    "SORT": _sort,
    "THREAD": _thread,
    "CANCELUPDATE": _cancelupdate,
    "NOTIFY": _notify,
}

#: the argument-less commands, by their upper-cased wire name (parse_command's
#: fast path): (name, its parser in COMMAND_PARSERS, the event class)
_BARE: dict[bytes, tuple] = {
    name.encode(): (name, COMMAND_PARSERS[name], cls) for name, cls in (
        ("CAPABILITY", Capability), ("NOOP", Noop), ("LOGOUT", Logout), ("STARTTLS", StartTLS),
        ("UNAUTHENTICATE", Unauthenticate), ("NAMESPACE", Namespace), ("IDLE", Idle),
        ("CHECK", Check), ("CLOSE", Close), ("UNSELECT", Unselect), ("EXPUNGE", Expunge))
}

#: parse_command's STORE fast path: [UID] STORE set [+-]FLAGS[.SILENT] (flag ...),
#: the set a number of at most 9 digits (never out of range) or a sequence
#: set without "$" (NumSet.parse: what it refuses takes the parser, which
#: refuses it alike), names in any letter case, one space between flags
#: (grammar.FLAG each): anything else takes the parser
_STORE_ONE = re.compile(
    rb"(?i:(UID )?STORE )([1-9][0-9]{0,8}|[0-9*][0-9:,*]*) "
    rb"(?i:([+-]?)FLAGS(\.SILENT)?) \("
    rb"(\\?[^\x00-\x20\x7f-\xff(){%*\"\\\]]+(?: \\?[^\x00-\x20\x7f-\xff(){%*\"\\\]]+)*)\)\Z")
_STORE_MODES = {b"": "replace", b"+": "add", b"-": "remove"}


def _store_one(tag: bytes, m: "re.Match[bytes]",
               max_ranges: int = DEFAULT_MAX_RANGES) -> Command | None:
    """The Store event of a _STORE_ONE match, as _store makes it; None when
    a flag is too long or the set is not one NumSet.parse takes (the parser
    then refuses it)."""
    toks = m.group(5).split(b" ")
    for tok in toks:
        if len(tok) > vocab.MAX_KEYWORD_BYTES:
            return None
    raw = m.group(2)
    if raw.isdigit() and raw[0] != 0x30 and len(raw) <= 9:
        n = int(raw)
        seqs = NumSet(((n, n),))
    else:
        try:
            seqs = NumSet.parse(raw, max_ranges=max_ranges)
        except ParseError:
            return None
    flags = []
    for tok in toks:
        f = _FLAG_NAMES.get(tok)
        if f is None:
            f = canonical_flag(tok)
            if len(_FLAG_NAMES) < 256:      # the system flags and the usual keywords
                _FLAG_NAMES[tok] = f
        flags.append(f)
    return Store(tag, m.group(1) is not None, seqs, _STORE_MODES[m.group(3)],
                 tuple(flags), m.group(4) is not None, None)


_FLAG_NAMES: dict[bytes, str] = {}     # wire flag -> grammar.canonical_flag of it (_store_one)

#: parse_command's FETCH fast path: [UID] FETCH set (name ...) or [UID] FETCH
#: set name, the set one number or range (numbers of at most 9 digits: never
#: out of range), names in any letter case, one space between them; a name
#: that is not FETCH_SIMPLE (or a macro, alone) takes the parser
_FETCH_ONE = re.compile(
    rb"(?i:(UID )?FETCH )([1-9][0-9]{0,8}|\*)(:(?:[1-9][0-9]{0,8}|\*))? "
    rb"(?:\(([A-Za-z0-9.]+(?: [A-Za-z0-9.]+)*)\)|([A-Za-z0-9.]+))\Z")


def _fetch_one(tag: bytes, m: "re.Match[bytes]") -> Command | None:
    """The Fetch event of a _FETCH_ONE match, as _fetch makes it; None when
    a name is not one it answers (the parser then does)."""
    lo = m.group(2)
    lo = 0 if lo == b"*" else int(lo)      # numset.STAR is 0
    hi = m.group(3)
    hi = lo if hi is None else 0 if hi == b":*" else int(hi[1:])
    raw = m.group(4)
    if raw is None:
        name = m.group(5).upper().decode("ascii")
        items = FETCH_MACROS.get(name)
        if items is None:
            if name not in FETCH_SIMPLE:
                return None
            items = (FetchItem(name),)
    else:
        items = _FETCH_LISTS.get(raw)
        if items is None:
            names = raw.upper().decode("ascii").split(" ")
            for name in names:
                if name not in FETCH_SIMPLE:
                    return None
            items = tuple(FetchItem(name) for name in names)
            if len(_FETCH_LISTS) < 256 and len(raw) <= 128:     # the lists clients send
                _FETCH_LISTS[raw] = items
    return Fetch(tag, m.group(1) is not None, NumSet(((lo, hi),)), items)


_FETCH_LISTS: dict[bytes, tuple] = {}   # wire item list -> its items (_fetch_one)


__all__ = ["COMMAND_PARSERS", "CommandError", "decode_mailbox", "parse_command"]
