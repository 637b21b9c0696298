"""What one IMAP session asked to be told with NOTIFY (RFC 5465), and what to tell it.

Owns the meaning of a ``NOTIFY SET``: which events the client wants for the
selected mailbox (``NotifySpec.selected``, ``delayed``, ``fetch``) and for
every other mailbox (``NotifySpec.rules``, first matching group wins, so
``(MAILBOXES Spam NONE) (PERSONAL (...))`` leaves Spam out), and turning a
change of the account into the untagged LIST and STATUS responses those
events call for (``Watch.catch_up``).  The selected mailbox's EXISTS,
EXPUNGE and FETCH come from the session's own ``refresh``; this module only
says whether to run it (``selected_news``).

How a change is found: the watch keeps, per mailbox of the account, the few
numbers a notification depends on (``BoxState``: full name, subscribed,
UIDNEXT, MESSAGES, UNSEEN, UIDVALIDITY, highest modseq).  On each wake-up
from the bus it reads the mailbox list again and compares: a new id is a
created mailbox, a missing one a deleted mailbox, another full name a rename
(children included), another ``subscribed`` a subscription change, other
counters new or expunged messages or flag changes.  Memory is one small
tuple per mailbox of the account, whatever the rate of changes; nothing is
queued (the bus hands over one merged wake-up).

Sans-IO apart from the store view it is given; no Trio, no sockets.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import vocab
from ..proto.imap import events as ev
from ..proto.imap import serialize as S
from ..proto.imap.commands import NOTIFY_SELECTED
from ..store.errors import CannotCalculateChanges
from .mailbox_tree import full_names

SEP = "/"

#: the events this server can deliver (NO [BADEVENT (...)] lists them)
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
MAILBOX_EVENTS = frozenset({"MailboxName", "SubscriptionChange"})

#: past this many untagged lines (or new messages to FETCH) for one wake-up
#: the session gets ``* OK [NOTIFICATIONOVERFLOW]`` and NOTIFY NONE (§5.8)
MAX_LINES = 1000
#: a NOTIFY SET naming more mailboxes than this is refused NO [NOTIFICATIONOVERFLOW]
MAX_NAMES = 100


class Unsupported(Exception):
    """An event this server does not deliver was asked for."""

    def __init__(self, events: list[str]):
        super().__init__(", ".join(events))
        self.events = events

    @property
    def code(self) -> str:
        return "BADEVENT (" + " ".join(SUPPORTED) + ")"


@dataclass(frozen=True, slots=True)
class Rule:
    """One non-selected event group: FILTER (PERSONAL, INBOXES, SUBSCRIBED,
    SUBTREE, MAILBOXES), its NAMES, and EVENTS (empty: NONE)."""

    filter: str
    names: tuple[str, ...]
    events: frozenset[str]

    def matches(self, name: str, subscribed: bool) -> bool:
        f = self.filter
        if f in ("PERSONAL", "INBOXES"):
            # every mailbox may receive mail here (LMTP name+detail delivers to
            # any mailbox), so INBOXES is PERSONAL (RFC 5465 6.3)
            return True
        if f == "SUBSCRIBED":
            return subscribed
        if f == "MAILBOXES":        # no wildcard expansion (6.6)
            return name in self.names
        return any(name == n or name.startswith(n + SEP) for n in self.names)   # SUBTREE


@dataclass(frozen=True, slots=True)
class NotifySpec:
    """A session's NOTIFY SET, checked and compiled."""

    selected: frozenset[str] = frozenset()   # message events for the selected mailbox
    delayed: bool = False                    # SELECTED-DELAYED: expunges wait for a command
    fetch: tuple | None = None               # MessageNew FETCH attributes
    rules: tuple[Rule, ...] = ()
    status: bool = False                     # NOTIFY SET STATUS

    @classmethod
    def from_command(cls, cmd: ev.Notify) -> "NotifySpec":
        """Compile CMD (groups already checked by the parser).  Raises
        Unsupported for an event this server does not deliver."""
        bad = []
        for g in cmd.groups:
            bad.extend(e for e in g.events if e not in SUPPORTED and e not in bad)
        if bad:
            raise Unsupported(bad)
        selected: frozenset[str] = frozenset()
        delayed = False
        fetch = None
        rules = []
        for g in cmd.groups:
            if g.filter in NOTIFY_SELECTED:
                selected = frozenset(g.events)
                delayed = g.filter == "SELECTED-DELAYED"
                fetch = g.fetch
            else:
                names = tuple(_normal(n) for n in g.mailboxes)
                rules.append(Rule(g.filter, names, frozenset(g.events)))
        return cls(selected, delayed, fetch, tuple(rules), cmd.status)

    @property
    def name_count(self) -> int:
        return sum(len(r.names) for r in self.rules)

    def events_for(self, name: str, subscribed: bool) -> frozenset[str]:
        """The events wanted for the (not selected) mailbox NAME: those of the
        first group whose filter matches it."""
        for r in self.rules:
            if r.matches(name, subscribed):
                return r.events
        return frozenset()

    @property
    def watches_others(self) -> bool:
        return any(r.events for r in self.rules)


@dataclass(frozen=True, slots=True)
class BoxState:
    """What a notification about one mailbox depends on."""

    name: str
    subscribed: bool
    uidvalidity: int
    uidnext: int
    total: int
    unseen: int
    highest_ms: int
    role: str | None
    parent: int


def scan(v, acc: int) -> dict[int, BoxState]:
    """mailbox id -> BoxState for every mailbox of ACC (one read of the list)."""
    boxes = v.mailboxes(acc)
    names = full_names(boxes, SEP)
    return {m.id: BoxState(names[m.id], m.subscribed, m.uidvalidity, m.uidnext, m.total,
                           m.unseen, m.highest_ms, m.role, m.parent) for m in boxes}


def _normal(name: str) -> str:
    parts = name.rstrip(SEP).split(SEP)
    if parts and parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return SEP.join(parts)


def _order(item):
    _id, b = item
    return (b.name != "INBOX", b.name)


class Overflow(Exception):
    """Too many notifications at once: NOTIFICATIONOVERFLOW (RFC 5465 5.8)."""


@dataclass
class Watch:
    """One session's NOTIFY state: the spec and the mailbox states last told."""

    spec: NotifySpec
    boxes: dict[int, BoxState]
    since: int = 0          # the account's modseq this state was read at (bus)
    sel: object = None      # the selected mailbox the next two are about
    fetch_from: int = 0     # its first UID not yet sent with the MessageNew FETCH

    def status_line(self, b: BoxState, events: frozenset[str], *, condstore: bool, utf8: bool,
                    initial: bool = False, uidvalidity: bool = False) -> bytes:
        """STATUS for a watched mailbox (RFC 5465 5.1-5.3; HIGHESTMODSEQ with
        CONDSTORE on or flag changes watched, UIDVALIDITY with it)."""
        items: list[tuple[str, int]] = [("MESSAGES", b.total), ("UIDNEXT", b.uidnext)]
        modseq = condstore or "FlagChange" in events
        if initial or uidvalidity or modseq:
            items.append(("UIDVALIDITY", b.uidvalidity))
        items.append(("UNSEEN", b.unseen))
        if modseq:
            items.append(("HIGHESTMODSEQ", b.highest_ms))
        return S.status(b.name, items, utf8=utf8)

    def initial_status(self, selected: int | None, *, condstore: bool, utf8: bool) -> list[bytes]:
        """NOTIFY SET STATUS: a STATUS for every watched mailbox but the selected one."""
        out = []
        for mid, b in sorted(self.boxes.items(), key=_order):
            if mid == selected:
                continue
            events = self.spec.events_for(b.name, b.subscribed)
            if events & MESSAGE_EVENTS:
                out.append(self.status_line(b, events, condstore=condstore, utf8=utf8,
                                            initial=True))
        return out

    def catch_up(self, v, acc: int, selected: int | None, *, condstore: bool, utf8: bool
                 ) -> list[bytes]:
        """The LIST and STATUS responses for what changed in the account since
        the last call (the selected mailbox's messages excepted: its
        ``refresh`` tells those); remembers the new state.  Raises Overflow
        (and remembers nothing) when there would be more than MAX_LINES."""
        old = self.boxes
        new = scan(v, acc)
        spec = self.spec
        lists: list[tuple[str, bytes]] = []
        stats: list[tuple[str, bytes]] = []
        children = {b.parent for b in new.values()}

        def list_line(mid: int, b: BoxState, *, oldname: str | None = None) -> bytes:
            attrs = ["\\HasChildren" if mid in children else "\\HasNoChildren"]
            su = vocab.ROLE_TO_SPECIAL_USE.get(b.role) if b.role else None
            if su:
                attrs.append(su)
            if b.subscribed:
                attrs.append("\\Subscribed")
            return S.list_(attrs, SEP, b.name, utf8=utf8, oldname=oldname)

        for mid in old.keys() - new.keys():        # deleted
            b = old[mid]
            if "MailboxName" in spec.events_for(b.name, b.subscribed):
                lists.append((b.name, S.list_(["\\NonExistent"], SEP, b.name, utf8=utf8)))
        for mid, b in new.items():
            was = old.get(mid)
            events = spec.events_for(b.name, b.subscribed)
            if was is None:                        # created
                if "MailboxName" in events:
                    lists.append((b.name, list_line(mid, b)))
                continue
            if was.name != b.name:                 # renamed (itself or a parent)
                if "MailboxName" in events or "MailboxName" in spec.events_for(
                        was.name, was.subscribed):
                    lists.append((b.name, list_line(mid, b, oldname=was.name)))
            elif was.subscribed != b.subscribed:
                if "SubscriptionChange" in events or "SubscriptionChange" in spec.events_for(
                        was.name, was.subscribed):
                    lists.append((b.name, list_line(mid, b)))
            if mid == selected or not events & MESSAGE_EVENTS:
                continue
            if b.uidvalidity != was.uidvalidity:
                stats.append((b.name, self.status_line(b, events, condstore=condstore,
                                                       utf8=utf8, uidvalidity=True)))
            elif b.highest_ms == was.highest_ms:
                continue
            elif b.uidnext != was.uidnext or b.total != was.total \
                    or "FlagChange" in events and (
                        b.unseen != was.unseen or v.changed_since(acc, mid, was.highest_ms)) \
                    or _expunged(v, acc, mid, was.highest_ms):
                # (a rename or a subscription moves the mailbox's modseq too:
                # only message changes count here)
                stats.append((b.name, self.status_line(b, events, condstore=condstore,
                                                       utf8=utf8)))
            if len(lists) + len(stats) > MAX_LINES:
                raise Overflow()
        if len(lists) + len(stats) > MAX_LINES:
            raise Overflow()
        self.boxes = new
        lists.sort(key=lambda x: (x[0] != "INBOX", x[0]))
        stats.sort(key=lambda x: (x[0] != "INBOX", x[0]))
        return [line for _n, line in lists] + [line for _n, line in stats]


def _expunged(v, acc: int, mbx: int, since: int) -> bool:
    """Whether messages were expunged from MBX after modseq SINCE (when the
    log no longer knows, assume so: one response too many is harmless)."""
    try:
        return bool(v.vanished_since(acc, mbx, since))
    except CannotCalculateChanges:
        return True


def selected_news(v, acc: int, spec: NotifySpec, sel) -> bool:
    """Whether the selected mailbox SEL has news this client asked to hear
    at once: new messages, expunges (not with SELECTED-DELAYED, which keeps
    them for a command that may announce them), flag changes (FlagChange),
    or its deletion.  The session's ``refresh`` then tells it."""
    if not spec.selected:
        return False
    m = v.mailbox(acc, sel.mbx)
    if m is None:
        return True
    if m.highest_ms == sel.known_ms and not sel.gone:
        return False
    if v.uids(acc, sel.mbx, after=sel.max_uid()):
        return True
    if "FlagChange" in spec.selected and m.highest_ms != sel.known_ms:
        return True
    return not spec.delayed and (bool(sel.gone) or _expunged(v, acc, sel.mbx, sel.known_ms))
