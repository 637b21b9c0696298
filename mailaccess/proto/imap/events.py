"""Typed IMAP commands: what ``commands.parse_command`` returns.

Every class is a frozen, slotted dataclass (STYLE rule 3); a value that exists
was validated by the parser, and no raw protocol token reaches the session.
Each command class has ``NAME`` (the key of ``state.ALLOWED``); the UID forms
share their base class and set ``uid=True``.

Mailbox names are ``str``: decoded from modified UTF-7, or taken as UTF-8 once
UTF8=ACCEPT is enabled; ``INBOX`` in any case is normalised to ``"INBOX"``.
Flags are ``str`` with the system flags in canonical case (``\\Seen``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar

from .numset import NumSet

# ---------------------------------------------------------------- search keys


class SearchKey:
    """Base of the search-key tree."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class All(SearchKey):
    """ALL."""


@dataclass(frozen=True, slots=True)
class And(SearchKey):
    """A parenthesised list, or the implicit AND of the top-level keys."""

    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class Or(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class Not(SearchKey):
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Flag(SearchKey):
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/RECENT, KEYWORD x (``present``) and
    their UN- forms (``present=False``).  NEW and OLD parse to And/Not of these."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Header(SearchKey):
    """BCC/CC/FROM/SUBJECT/TO x (``name`` upper-cased) and HEADER name x."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Body(SearchKey):
    value: str


@dataclass(frozen=True, slots=True)
class Text(SearchKey):
    value: str


@dataclass(frozen=True, slots=True)
class Date(SearchKey):
    """BEFORE/ON/SINCE (``field="internal"``), SENT* (``"sent"``), SAVED* (``"saved"``, RFC 8514)."""

    field: str  # "internal" | "sent" | "saved"
    op: str  # "before" | "on" | "since"
    date: date


@dataclass(frozen=True, slots=True)
class Size(SearchKey):
    op: str  # "larger" | "smaller"
    size: int


@dataclass(frozen=True, slots=True)
class Sequence(SearchKey):
    """A bare sequence set (``uid=False``) or UID set; may hold ``$`` (RFC 5182)."""

    set: NumSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeq(SearchKey):
    """MODSEQ [entry-name entry-type] n (RFC 7162)."""

    modseq: int
    entry: str | None = None  # "/flags/\\Seen"
    entry_type: str | None = None  # "priv" | "shared" | "all"


@dataclass(frozen=True, slots=True)
class Age(SearchKey):
    """OLDER n / YOUNGER n seconds (RFC 5032)."""

    op: str  # "older" | "younger"
    seconds: int


@dataclass(frozen=True, slots=True)
class ObjectId(SearchKey):
    """EMAILID x / THREADID x (RFC 8474)."""

    kind: str  # "email" | "thread"
    id: str


@dataclass(frozen=True, slots=True)
class SaveDateSupported(SearchKey):
    """SAVEDATESUPPORTED (RFC 8514)."""


# ----------------------------------------------------------- fetch attributes


class FetchAtt:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class FetchItem(FetchAtt):
    """A data item without arguments: FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
    BODY BODYSTRUCTURE UID RFC822 RFC822.HEADER RFC822.TEXT MODSEQ EMAILID
    THREADID SAVEDATE."""

    name: str


@dataclass(frozen=True, slots=True)
class Section:
    """``[1.2.HEADER.FIELDS (From To)]``: part numbers, then an optional text
    specifier (HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME)."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchBody(FetchAtt):
    """BODY[...]<o.n>, BODY.PEEK[...], BINARY[...], BINARY.PEEK[...]."""

    section: Section
    partial: tuple[int, int] | None = None  # (origin, length)
    peek: bool = False
    binary: bool = False


@dataclass(frozen=True, slots=True)
class FetchBinarySize(FetchAtt):
    part: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FetchPreview(FetchAtt):
    """PREVIEW / PREVIEW (LAZY) (RFC 8970)."""

    lazy: bool = False


# ------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Command:
    NAME: ClassVar[str] = ""
    tag: bytes


@dataclass(frozen=True, slots=True)
class Capability(Command):
    NAME: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    NAME: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    NAME: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    NAME: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    NAME: ClassVar[str] = "AUTHENTICATE"
    mechanism: str  # upper-cased
    initial_response: bytes | None = None  # SASL-IR, base64-decoded; b"" for "="


@dataclass(frozen=True, slots=True)
class Login(Command):
    NAME: ClassVar[str] = "LOGIN"
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Enable(Command):
    NAME: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]  # upper-cased


@dataclass(frozen=True, slots=True)
class QResync:
    """SELECT ... (QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)]))."""

    uidvalidity: int
    modseq: int
    known_uids: NumSet | None = None
    seq_match: tuple[NumSet, NumSet] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    """SELECT, or EXAMINE (``readonly``)."""

    NAME: ClassVar[str] = "SELECT"
    mailbox: str
    readonly: bool = False
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create(Command):
    NAME: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 CREATE-SPECIAL-USE


@dataclass(frozen=True, slots=True)
class Delete(Command):
    NAME: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    NAME: ClassVar[str] = "RENAME"
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    NAME: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    NAME: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with RFC 5258 LIST-EXTENDED selection and return options.

    ``extended`` is True when the client used any extended syntax (selection
    options, several patterns, RETURN); the response then carries extended
    data items (CHILDINFO, OLDNAME).  ``return_status`` holds the STATUS
    items of ``RETURN (STATUS (...))`` (RFC 5819), else None.
    """

    NAME: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    returns: frozenset[str] = frozenset()  # CHILDREN SUBSCRIBED SPECIAL-USE STATUS
    return_status: tuple[str, ...] | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    NAME: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    NAME: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    NAME: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[str, ...]  # MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ APPENDLIMIT MAILBOXID


@dataclass(frozen=True, slots=True)
class CatenateText:
    data: bytes
    binary: bool = False


@dataclass(frozen=True, slots=True)
class CatenateUrl:
    url: str


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of a (MULTI)APPEND: either ``data`` or ``catenate`` is set."""

    flags: tuple[str, ...] = ()
    date_time: datetime | None = None
    data: bytes | None = None
    binary: bool = False  # sent as literal8 (RFC 3516)
    utf8: bool = False  # APPEND ... UTF8 (~{n}) (RFC 6855)
    catenate: tuple[CatenateText | CatenateUrl, ...] | None = None


@dataclass(frozen=True, slots=True)
class Append(Command):
    NAME: ClassVar[str] = "APPEND"
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle(Command):
    NAME: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One event group of NOTIFY SET (RFC 5465 §8 ``event-group``).

    ``filter`` is SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED,
    SUBTREE or MAILBOXES; ``mailboxes`` the names of SUBTREE/MAILBOXES (else
    empty); ``events`` the event names in their canonical spelling (an
    unknown ``event-ext`` keeps the client's spelling), empty for NONE;
    ``fetch`` the MessageNew FETCH attributes (SELECTED* only), or None."""

    filter: str
    mailboxes: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    fetch: tuple["FetchAtt", ...] | None = None


@dataclass(frozen=True, slots=True)
class Notify(Command):
    """NOTIFY NONE (``groups`` None) or NOTIFY SET [STATUS] groups (RFC 5465)."""

    NAME: ClassVar[str] = "NOTIFY"
    groups: tuple[NotifyGroup, ...] | None = None
    status: bool = False


@dataclass(frozen=True, slots=True)
class Check(Command):
    NAME: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    NAME: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    NAME: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE, or UID EXPUNGE set (``uid`` and ``uids``)."""

    NAME: ClassVar[str] = "EXPUNGE"
    uid: bool = False
    uids: NumSet | None = None


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH / UID SEARCH.

    ``returns`` is None for a plain RFC 3501 SEARCH (answer ``* SEARCH``), or
    the RFC 4731 ESEARCH return options (``("ALL",)`` for ``RETURN ()``).
    ``charset`` is None when absent; text values are already decoded.
    """

    NAME: ClassVar[str] = "SEARCH"
    uid: bool
    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None   # RETURN (PARTIAL lo:hi), RFC 5267/9394


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH / UID FETCH; macros (ALL FAST FULL) are expanded into ``items``."""

    NAME: ClassVar[str] = "FETCH"
    uid: bool
    set: NumSet
    items: tuple[FetchAtt, ...]
    changedsince: int | None = None
    vanished: bool = False


@dataclass(frozen=True, slots=True)
class Store(Command):
    NAME: ClassVar[str] = "STORE"
    uid: bool
    set: NumSet
    mode: str  # "add" ("+FLAGS"), "remove" ("-FLAGS"), "replace" ("FLAGS")
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Copy(Command):
    NAME: ClassVar[str] = "COPY"
    uid: bool
    set: NumSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Move(Command):
    NAME: ClassVar[str] = "MOVE"
    uid: bool
    set: NumSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class SortKey:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT / UID SORT (RFC 5256), ESORT return options (RFC 5267) in ``returns``."""

    NAME: ClassVar[str] = "SORT"
    uid: bool
    criteria: tuple[SortKey, ...]
    charset: str
    key: SearchKey
    returns: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None   # RETURN (PARTIAL lo:hi), RFC 5267/9394


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """CANCELUPDATE "tag" ... (RFC 5267 4.3.5): stop the updates of those contexts."""

    NAME: ClassVar[str] = "CANCELUPDATE"
    tags: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Thread(Command):
    NAME: ClassVar[str] = "THREAD"
    uid: bool
    algorithm: str  # REFERENCES | ORDEREDSUBJECT
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Id(Command):
    """ID (RFC 2971); ``params`` None for ``ID NIL``."""

    NAME: ClassVar[str] = "ID"
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    NAME: ClassVar[str] = "GETQUOTA"
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    NAME: ClassVar[str] = "GETQUOTAROOT"
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    NAME: ClassVar[str] = "SETQUOTA"
    root: str
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Compress(Command):
    NAME: ClassVar[str] = "COMPRESS"
    mechanism: str  # "DEFLATE"


@dataclass(frozen=True, slots=True)
class Unauthenticate(Command):
    NAME: ClassVar[str] = "UNAUTHENTICATE"
