"""IMAP session semantics: typed commands (proto/imap) applied to the store.

One ImapSession per connection.  ``handle(cmd)`` runs one command and queues
response bytes in ``self.out``; the service (server/imap.py) sends them and
owns sockets, TLS, literals' continuations, IDLE waiting and SASL exchanges.
Nothing here reads or writes a socket.

The session decides *what* to say; every response's bytes come from
``proto/imap/serialize.py`` (domain values in, bytes out), except FETCH
data items, which ``build_fetch`` and its compiled twin format on the hot
path.  Which command may run in which state, and which state follows, is
``proto/imap/state.py``'s table: ``handle`` asks it and keeps no
``if state == ...`` of its own.

Each ``do_*`` handler returns its completion (``Done``: the text and code of
the tagged OK) or raises ``No``/``Bad``; the dispatcher then runs the one
``refresh`` (untagged EXISTS, EXPUNGE/VANISHED, FETCH FLAGS from
views/imap_selected.py) before the tagged line, allowing expunges only where
RFC 9051 §7.5.1 does (``state.may_announce_expunge``).
"""
from __future__ import annotations

import bisect
import functools
import logging
import re
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import trio

from .. import accounts, ids, ingest, storeio, vocab
from .. import _speedups
from ..store.changelog import absent_ranges      # QRESYNC past the change log's horizon
from ..store.errors import CannotCalculateChanges
from ..mime import fieldspans
from ..mime import index as mindex
from ..proto.imap import events as ev
from ..proto.imap import serialize as S
from ..proto.imap import state as st
from ..proto.imap.dates import format_datetime
from ..proto.imap import commands as imap_commands
from ..proto.imap.errors import CommandError
from ..proto.imap.modutf7 import InvalidName as NotModifiedUtf7
from ..store import (AlreadyExists, Conflict, InvalidName, NotFound, OverQuota, StoreError,
                     StoreFullError, LimitReached, ops)
from ..store.emails import LoadedEmail, load_email
from ..store.records import EMAIL_LAYOUT, FLAG_UTF8_HEADERS, EmailRecord, Mailbox, \
    decode_keywords
from ..views.imap_selected import BULK_RATIO, SelectedMailbox, Snapshot
from ..views import flag_column, imap_notify
from ..proto.imap.serialize import astring, literal, nstring
from . import imap_list, imap_marked, imap_recent
from .imap_fmt import SPECIAL_USE_TO_ROLE, flag_of, flags_list, keyword_of
from . import imap_context   # RFC 5267 contexts (UPDATE, PARTIAL)
from . import imap_sortcache   # SORT orders and THREAD answers kept per worker

log = logging.getLogger("mailaccess.imap")

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = st.NOT_AUTHENTICATED, st.AUTHENTICATED, \
    st.SELECTED, st.LOGOUT

SEP = "/"
_NONE: frozenset = frozenset()   # an empty set no session writes into
SYSTEM_FLAGS = tuple(vocab.KEYWORD_TO_IMAP_FLAG.values())

# After these commands (when they succeed) the dispatcher tells the client
# what changed in the selected mailbox; whether that may include expunges is
# state.may_announce_expunge (RFC 9051 7.5.1).  Other commands answer
# without catching up (the client hears at its next NOOP, IDLE or FETCH).
REPORTS_UPDATES = frozenset({"NOOP", "CHECK", "APPEND", "EXPUNGE", "COPY", "MOVE", "FETCH",
                             "STORE", "SEARCH", "SORT", "THREAD",
                             "NOTIFY"})   # RFC 5465 3.1: NOTIFY SET implies a NOOP
FETCH_BUFFER = 256 * 1024   # bytes of a FETCH answer built ahead of the socket
FETCH_CHUNK = 64 * 1024     # ... built this many at a time (other sessions run between)
#: a FETCH answer's last chunk of at most this many bytes (held with what
#: was not written yet) is sent with the tagged line, not written at once
FETCH_HOLD = 16 * 1024
FETCH_SLICE = 1000  # FETCH answers are built in slices of at most this many messages
#: the Python FETCH loop's chunk also ends once it split this many times its
#: budget of headers on the loop for HEADER.FIELDS (tiny answers of many
#: headers under fieldspans.OFFLOOP_BYTES: 20-45 ms per MB of tiny fields)
FETCH_SPLIT_WORK = 4
#: what one message's FETCH answer may hold besides the message itself:
#: this many bytes, plus this many times the message's size, of sections,
#: decoded parts and HEADER.FIELDS answers made for it (each distinct one is
#: built once; a <partial> is a window into its section, not a copy).  A
#: command line of 64 KB can name ~1,800 HEADER.FIELDS.NOT lists or ~3,000
#: partials: before, one FETCH of a 4 MB message held 5.7 GB.  Past it the
#: command is answered NO [LIMIT] (RFC 5530 3)
FETCH_MESSAGE_HOLD = 64 << 20
FETCH_MESSAGE_HOLD_FACTOR = 4
#: how many FETCH answers may build a chunk at the same moment (see _fetch_turn)
FETCH_BUILDERS = 1
#: seconds of building one FETCH turn may use (chunks, at least one, until then)
FETCH_TURN_SECONDS = 0.002
_FETCH_TURN: trio.lowlevel.RunVar = trio.lowlevel.RunVar("mailaccess_fetch_turn")


def _fetch_turn() -> trio.CapacityLimiter:
    """The turn that big FETCH answers take to build their next chunk (one
    per event loop, FIFO).

    Trio runs every runnable task once per scheduling batch before it looks
    at the sockets again.  With N answers streaming, each yielding after a
    chunk, every batch held N chunks of CPU, and a bystander's NOOP, which
    crosses several scheduling points (read, answer, write), waited several
    such batches.  An answer now builds each chunk after the first only
    while holding this turn; the others wait parked (not runnable), so a
    batch holds about one chunk and the bystander waits about one chunk per
    scheduling point, whatever N is.  A turn builds chunks for up to
    FETCH_TURN_SECONDS (or until FETCH_BUFFER bytes wait), so the cost of
    a scheduling round is spread over a few milliseconds of work: the total
    work, and so the big answers' total time, stays about the same; they
    take turns instead of interleaving."""
    try:
        return _FETCH_TURN.get()
    except LookupError:
        turn = trio.CapacityLimiter(FETCH_BUILDERS)
        _FETCH_TURN.set(turn)
        return turn


#: cached catch-up answers (SharedViews.remember): entries, and their bytes
TRANSITIONS = 256
TRANSITION_BYTES = 4 * 1024 * 1024


class SharedViews:
    """Shared between the sessions of one server (the memory and fan-out
    budget of IDLE): the latest sequence map of each mailbox, and recent
    catch-up answers keyed by the state they start from."""

    def __init__(self):
        # weak: a mailbox's map lives only while some session (or a cached
        # transition) still uses it
        self.snapshots: "weakref.WeakValueDictionary[tuple[int, int], Snapshot]" = \
            weakref.WeakValueDictionary()
        self.transitions: dict[tuple, tuple[Snapshot, bytes, tuple[str, ...]]] = {}
        self.claiming: set[tuple[int, int]] = set()   # \Recent claims on their way (imap_recent)
        self.marked: dict = {}     # messages carrying \Deleted, per mailbox (imap_marked)
        self.transition_bytes = 0  # the answers' bytes held in ``transitions``
        self.flag_columns = None   # views/flag_column.FlagColumns, made at the first use

    def publish(self, acc: int, mbx: int, snap) -> None:
        """SNAP is the newest map of mailbox MBX (a weak entry: replaced only
        when it is another object; setting one costs a weak reference)."""
        key = (acc, mbx)
        if self.snapshots.get(key) is not snap:
            self.snapshots[key] = snap

    def remember(self, key: tuple, snap, data: bytes, flags: tuple[str, ...]) -> None:
        """Keep the catch-up answer DATA for sessions starting from KEY's state:
        at most TRANSITIONS entries and TRANSITION_BYTES of answers, the
        oldest going first; the newest is kept whatever its size (the sessions
        catching up now share it).  Before, 256 entries of any size: a
        client toggling a flag on a 100,000-message mailbox, with a second
        session catching up after each toggle, grew the server by 18 MB per
        toggle (3.6 MB answers and their sequence maps)."""
        old = self.transitions.pop(key, None)
        if old is not None:
            self.transition_bytes -= len(old[1])
        while self.transitions and (len(self.transitions) >= TRANSITIONS or
                                    self.transition_bytes + len(data) > TRANSITION_BYTES):
            first = next(iter(self.transitions))
            self.transition_bytes -= len(self.transitions.pop(first)[1])
        self.transitions[key] = (snap, data, flags)
        self.transition_bytes += len(data)


@dataclass(frozen=True, slots=True)
class Done:
    """A handler's successful completion: ``tag OK [code] text``."""

    text: str
    code: str | bytes | None = None
    # the account's highest modseq as the command's own commit left it, with
    # no other task run since (a write the loop ran itself), or as the view
    # of a FETCH answer built at once read it: the catch-up check need not
    # read it back (_needs_refresh); -1: unknown
    current: int = -1


class No(Exception):
    """Answer the command NO [code] text."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.text = text
        self.code = code


class Bad(No):
    """Answer the command BAD [code] text."""


#: command name -> the name of its ImapSession handler (filled as commands come)
_HANDLERS: dict[str, str] = {}


def _path(name: str) -> list[str]:
    parts = name.split(SEP)
    if parts and parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return parts


def _check_name(name: str) -> None:
    """SELECT/EXAMINE/STATUS of a name that is not valid modified UTF-7: NO
    (Dovecot's answer), not the BAD of a syntax error."""
    if isinstance(name, NotModifiedUtf7):
        raise No("mailbox name is not valid modified UTF-7")


def _esearch(tag: bytes, uid: bool, nums: list[int], returns, modseq: int | None,
             lowest: int | None, highest: int | None, *, keep_order: bool = False,
             partial: tuple[int, int] | None = None) -> bytes:
    """The ESEARCH response for RETURN options RETURNS over result NUMS (in
    result order; PARTIAL counts in it, RFC 5267 4.4)."""
    return S.esearch(tag, uid,
                     min=lowest if "MIN" in returns else None,
                     max=highest if "MAX" in returns else None,
                     count=len(nums) if "COUNT" in returns else None,
                     all=nums if "ALL" in returns else None,
                     modseq=modseq if nums else None, keep_order=keep_order,
                     partial=None if partial is None or "PARTIAL" not in returns else
                     (partial, imap_context.partial_slice(nums, partial)))


class ImapSession:
    def __init__(self, ctx, *, secure: bool, loopback: bool, views: SharedViews | None = None):
        self.ctx = ctx
        self.cfg = ctx.cfg.imap
        self.store = ctx.store
        self.secure = secure
        self.loopback = loopback
        self.remote = ""     # the client's address, set by the service (login penalty)
        self.state = NOT_AUTHENTICATED
        self.user: str | None = None
        self.acc: int | None = None
        self.sel: SelectedMailbox | None = None
        # ENABLEd capabilities: a set of its own from the first ENABLE
        self.enabled: set[str] | frozenset[str] = _NONE
        self._condstore = False           # CONDSTORE active in this session (see condstore)
        self.sel_flags: tuple[str, ...] = ()   # the FLAGS list last sent for self.sel
        # the View.keyword_spellings answer (shared, never changed) sel_flags
        # was built from, when known: flag_updates compares it by identity
        self._flags_from: dict | None = None
        # (sel_flags, {lowercase flag: flag}, the FLAGS formatters of a STORE's
        # answer) for the FLAGS list last sent (_told, do_store)
        self._told_flags: tuple | None = None
        self.out: list[bytes] = []
        self.compress_requested = False
        self.starttls_requested = False
        self.sender = None   # async fn(bytes), set by the service: lets big answers stream
        # fn(list of bytes) -> bytes written at once, or None when it cannot
        # write without a wait (set by the service, with sender): a FETCH
        # answer goes out as it is built
        self.write_nowait = None
        # announced in store.coming as likely to APPEND again (its last
        # command was an APPEND): withdrawn by any other command (_append_over)
        self._next_append = False
        # NOTIFY (RFC 5465): the Watch of the last NOTIFY SET, None for NOTIFY
        # NONE; the service's notify task delivers it between commands and
        # is told of a new one through on_notify
        self.notify: imap_notify.Watch | None = None
        self.on_notify = None
        # the IMAP service's SharedViews (one per server); a lone session gets its own
        self.shared = views if views is not None else SharedViews()
        self.contexts = imap_context.Contexts()   # RFC 5267 updating contexts
        # the account's modseq (a lower bound) when the dispatcher last caught
        # up on selection _quiet_sel: see _needs_refresh
        self._quiet_sel: SelectedMailbox | None = None
        self._quiet_ms = -1

    # --- capabilities -----------------------------------------------------------------

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if self.state == NOT_AUTHENTICATED:
            if not self.secure and self.ctx.tls_cert:
                caps.append("STARTTLS")
            if self.login_allowed():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
            # SCRAM never reveals the password, so it is offered everywhere
            caps.append("AUTH=SCRAM-SHA-256")
            caps += ["SASL-IR", "ID", "ENABLE", self.literal_cap()]
            return caps
        caps += [
            self.literal_cap(), "ID", "ENABLE", "IDLE", "NAMESPACE", "UNSELECT", "UIDPLUS", "MOVE",
            "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS",
            "STATUS=SIZE", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "WITHIN",
            "OBJECTID", "MULTIAPPEND", "CATENATE", "BINARY", f"APPENDLIMIT={self.cfg.max_literal}",
            "SAVEDATE", "PREVIEW", "UNAUTHENTICATE", "SORT", "SORT=DISPLAY", "ESORT",
            "CONTEXT=SEARCH", "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "QUOTA", "QUOTA=RES-STORAGE",
            "UTF8=ACCEPT", "SASL-IR",
        ]
        caps.append("NOTIFY")   # RFC 5465 (server/imap_notifier.py)
        if not self.compress_requested:
            # RFC 4978: offered after login (Dovecot does the same), and no
            # more once compression is active
            caps.append("COMPRESS=DEFLATE")
        return caps

    def literal_cap(self) -> str:
        return "LITERAL+" if self.cfg.nonsync_literals == "plus" else "LITERAL-"

    def login_allowed(self) -> bool:
        return self.secure or (self.loopback and self.cfg.plaintext_login_on_loopback_only) \
            or not self.cfg.plaintext_login_on_loopback_only

    def capability_code(self) -> bytes:
        return S.code_capability(self.capabilities())

    def greeting(self) -> bytes:
        return S.greeting("mailaccess IMAP ready", self.capability_code())

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    # --- output -----------------------------------------------------------------------------

    def tagged(self, tag: bytes, status: str, text: str, code: str | bytes | None = None) -> None:
        """A tagged line written by code outside the dispatcher (login, SASL)."""
        self.out.append(S.tagged(tag, status, text, code))

    def take_output(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    # --- dispatch ------------------------------------------------------------------------------

    async def handle(self, cmd: ev.Command) -> None:
        """Run one command: the state table, the handler, the one catch-up, the tagged line."""
        name = cmd.NAME
        if self._next_append and name != "APPEND":
            self._append_over()
        if not st.allowed(self.state, name):
            self.out.append(S.bad(cmd.tag, st.refusal(self.state, name)))
            return
        attr = _HANDLERS.get(name)
        if attr is None:
            attr = _HANDLERS[name] = "do_" + name.lower()
        _RUNNING[0] += 1
        try:
            done = await getattr(self, attr)(cmd)
            if done is not None and name in REPORTS_UPDATES:
                allow_expunge = st.may_announce_expunge(name)
                if self._needs_refresh(allow_expunge, done.current):
                    await self.refresh(allow_expunge=allow_expunge)
        except No as exc:   # Bad too
            status = "BAD" if isinstance(exc, Bad) else "NO"
            self._complete(cmd, False, S.tagged(cmd.tag, status, exc.text, exc.code))
        except OverQuota as exc:
            self._complete(cmd, False, S.no(cmd.tag, str(exc), "OVERQUOTA"))
        except LimitReached as exc:      # RFC 5530: an implementation limit
            self._complete(cmd, False, S.no(cmd.tag, str(exc), "LIMIT"))
        except StoreFullError as exc:   # RFC 5530: try later
            self._complete(cmd, False, S.no(cmd.tag, str(exc), "UNAVAILABLE"))
        except AlreadyExists as exc:
            self._complete(cmd, False, S.no(cmd.tag, str(exc), "ALREADYEXISTS"))
        except NotFound as exc:
            self._complete(cmd, False, S.no(cmd.tag, str(exc), "NONEXISTENT"))
        except (Conflict, InvalidName) as exc:
            self._complete(cmd, False, S.no(cmd.tag, str(exc), "CANNOT"))
        except StoreError as exc:
            self._complete(cmd, False, S.no(cmd.tag, str(exc)))
        else:
            # None: the handler wrote its own tagged line (LOGIN, whose
            # line is shared with the SASL path)
            self._complete(cmd, True, None if done is None else S.ok(cmd.tag, done.text, done.code))
        finally:
            _RUNNING[0] -= 1

    def _needs_refresh(self, allow_expunge: bool, current: int = -1) -> bool:
        """Could the dispatcher's catch-up say anything?  False only when
        nothing changed in the account since the last one this session ran
        for the same selection (the account's modseq is where it was) and
        nothing is held back (expunges not announced yet, RFC 5267 contexts);
        then only a changed RECENT count is told, as the catch-up would.

        The bus is the cheap first look: it is told of each commit after
        the commit (bus.py), so a modseq above the one recorded means a
        change without reading the store, and is a safe lower bound of what
        the catch-up then reads.  Otherwise one small read of the account's
        modseq decides.  (Claiming \\Recent writes no modseq: a claim that
        failed, e.g. on a full disk, is retried at the next change or
        SELECT rather than at the next command.)  CURRENT (>= 0): the
        account's modseq as the command's own commit left it, no other task
        having run since (Done.current): that read is not made again."""
        sel = self.sel
        if sel is None:
            return True      # (nothing to catch up on; the refresh returns at once)
        acc = self.acc
        known = self._quiet_ms if self._quiet_sel is sel else -1
        bus = getattr(self.ctx, "bus", None)
        hint = bus.latest(acc) if bus is not None else 0
        if hint > known:
            self._quiet_sel, self._quiet_ms = sel, hint
            return True
        if (allow_expunge and sel.gone) or self.contexts.live(sel):
            return True
        if current >= 0:
            ms = current
        else:
            with self.store.view() as v:
                ms = v.highest_modseq(acc)
        if ms != known:
            self._quiet_sel, self._quiet_ms = sel, ms
            return True
        self.out.extend(imap_recent.updates(sel))
        return False

    def _complete(self, cmd: ev.Command, ok: bool, line: bytes | None) -> None:
        self.state = st.next_state(self.state, cmd.NAME, ok)
        if line is not None:
            self.out.append(line)

    # --- any state ---------------------------------------------------------------------------

    async def do_capability(self, cmd):
        self.out.append(S.capability(self.capabilities()))
        return Done("CAPABILITY completed")

    async def do_noop(self, cmd):
        return Done("NOOP completed")   # the dispatcher's refresh is the point

    async def do_check(self, cmd):
        return await self.do_noop(cmd)

    @property
    def condstore(self) -> bool:
        """CONDSTORE is active in this session (RFC 7162 3.1)."""
        return self._condstore

    @condstore.setter
    def condstore(self, on: bool) -> None:
        # RFC 7162 3.1: a CONDSTORE-enabling command other than SELECT/EXAMINE
        # with a mailbox selected makes the server send OK [HIGHESTMODSEQ]
        # (do_select clears self.sel before it turns CONDSTORE on)
        if on and not self._condstore and self.sel is not None:
            self.out.append(S.untagged("OK", "highest modseq",
                                       S.code_highestmodseq(self.sel.known_ms)))
        self._condstore = on

    def flag_updates(self, v, spell: dict[str, str] | None = None) -> list[bytes]:
        """RFC 3501 7.2.6 / RFC 9051 7.3.5: when the account's keywords differ
        from the FLAGS list this session last sent for the selected mailbox,
        the new ``* FLAGS`` and ``* OK [PERMANENTFLAGS]``; they must precede a
        FETCH that shows a new keyword.  SPELL: V's keyword_spellings, when
        the caller read them."""
        if spell is None:
            spell = v.keyword_spellings(self.acc)
        if spell is self._flags_from:
            return []       # the very answer sel_flags was built from
        flags = _flag_list(spell)
        self._flags_from = spell
        if flags == self.sel_flags:
            return []
        self.sel_flags = flags
        out = [S.flags(flags)]
        if not self.sel.readonly:
            out.append(S.untagged("OK", "flags permitted", S.code_permanentflags(flags)))
        return out

    async def do_logout(self, cmd):
        self.out.append(S.bye("mailaccess logging out"))
        return Done("LOGOUT completed")

    async def do_id(self, cmd):
        from .. import __version__
        self.out.append(S.id_([("name", "mailaccess"), ("version", __version__)]))
        return Done("ID completed")

    async def do_enable(self, cmd):
        known = {"CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT"}
        newly = []
        for c in cmd.capabilities:
            if c in known and c not in self.enabled:
                if self.enabled is _NONE:
                    self.enabled = set()
                self.enabled.add(c)
                newly.append(c)
                if c == "QRESYNC":
                    self.condstore = True
                if c == "CONDSTORE":
                    self.condstore = True
        self.out.append(S.enabled(newly))
        return Done("ENABLE completed")

    async def do_starttls(self, cmd):
        if self.secure or not self.ctx.tls_cert:
            raise Bad("TLS is already active" if self.secure else "STARTTLS is not available")
        self.starttls_requested = True
        return Done("Begin TLS negotiation now")

    async def do_compress(self, cmd):
        if self.compress_requested:
            raise No("compression is already active", "COMPRESSIONACTIVE")
        if cmd.mechanism != "DEFLATE":
            raise Bad("only DEFLATE is supported")
        self.compress_requested = True
        return Done("DEFLATE active")

    # --- authentication ---------------------------------------------------------------------

    async def do_login(self, cmd):
        if not self.login_allowed():
            raise No("plaintext login is disabled on unencrypted connections; use STARTTLS "
                     "or port 993", "PRIVACYREQUIRED")
        await self.login(cmd.tag, cmd.username, cmd.password)

    async def login(self, tag: bytes, user: str, password: str, authz: str = "") -> None:
        """Check USER/PASSWORD with the login service (ctx.auth: bounded
        argon2 pool, credential cache, failed-login penalty) and log in."""
        if authz and authz != user:
            await trio.sleep(self.cfg.login_failure_delay)
            raise No("cannot act as another user", "AUTHORIZATIONFAILED")
        r = await self.ctx.auth.login(user, password, address=self.remote)
        if r.unavailable:
            raise No("too many logins in progress, try again shortly", "UNAVAILABLE")
        if not r.ok:
            await trio.sleep(self.cfg.login_failure_delay)
            raise No("wrong user name or password", "AUTHENTICATIONFAILED")
        self._logged_in(tag, user, r.account)

    def _logged_in(self, tag: bytes, user: str, acc: int) -> None:
        self.user, self.acc = user, acc
        # LOGIN and AUTHENTICATE (SASL, run by the service) lead to the same state
        self.state = st.next_state(self.state, "LOGIN", True)
        log.info("user %s logged in", user)
        self.out.append(S.ok(tag, "logged in", self.capability_code()))

    async def do_authenticate(self, cmd):
        # the SASL exchange itself runs in the service (it needs more lines);
        # it calls sasl_finish with the decoded credentials.
        raise Bad("AUTHENTICATE is handled by the service")

    async def sasl_finish(self, tag: bytes, done) -> None:
        """A SASL exchange (run by the service) ended with sasl.Done."""
        if done.password is None:
            # SCRAM proved the password itself; the identity is settled
            if done.authzid and done.authzid != done.user:
                raise No("cannot act as another user", "AUTHORIZATIONFAILED")
            a = accounts.lookup(self.store, done.user)
            if a is None:
                raise No("wrong user name or password", "AUTHENTICATIONFAILED")
            self.ctx.auth.record(self.remote, a.name, ok=True, known=True)
            self._logged_in(tag, a.name, a.id)
            return
        if not self.login_allowed():
            raise No("plaintext authentication is disabled here; use STARTTLS",
                     "PRIVACYREQUIRED")
        await self.login(tag, done.user, done.password, done.authzid)

    async def do_unauthenticate(self, cmd):
        self.sel = None
        self.user = self.acc = None
        self.enabled = _NONE
        self.condstore = False
        self.set_notify(None)
        return Done("UNAUTHENTICATE completed")   # the state table leads back

    # --- mailbox resolution ----------------------------------------------------------------

    def find_mailbox(self, v, name: str) -> Mailbox | None:
        return v.mailbox_by_path(self.acc, _path(name))

    def require_mailbox(self, v, name: str, trycreate: bool = False) -> Mailbox:
        m = self.find_mailbox(v, name)
        if m is None:
            raise No(f"no mailbox {name}", "TRYCREATE" if trycreate else "NONEXISTENT")
        return m

    def full_name(self, v, mbx: int) -> str:
        return SEP.join(v.mailbox_path(self.acc, mbx))

    # --- mailbox commands -------------------------------------------------------------------

    async def do_select(self, cmd):
        # a failed SELECT leaves nothing selected (state.TRANSITIONS agrees)
        previous, self.sel = self.sel, None
        if previous is not None and self.qresync:
            self.out.append(S.untagged("OK", "previous mailbox closed", "CLOSED"))
        if cmd.condstore or cmd.qresync:
            if cmd.qresync and not self.qresync:
                raise Bad("QRESYNC needs ENABLE QRESYNC first")
            self.condstore = True
        _check_name(cmd.mailbox)
        with self.store.view() as v:
            m = self.require_mailbox(v, cmd.mailbox)
            snap = self.shared.snapshots.get((self.acc, m.id))
            if snap is None or snap.highest_ms != m.highest_ms:
                snap = _current_map(v, self.acc, m, snap)
                self.shared.snapshots[(self.acc, m.id)] = snap
            spell = v.keyword_spellings(self.acc)
            first = None
            if not self.rev2 and m.unseen:
                # the first unseen message is usually near the top: look there
                # inline, and past it off the loop
                first = _first_unseen(v, self.acc, snap.eids[:FIRST_UNSEEN_INLINE])
        sel = SelectedMailbox(self.acc, m.id, m.uidvalidity, cmd.readonly, snap, m.uidnext)
        sel.show_recent = not self.rev2
        await imap_recent.on_select(self.store, self.shared, sel, m)
        # (the list last told, when built from this very table)
        flags = self.sel_flags if spell is self._flags_from else _flag_list(spell)
        out = self.out
        out.append(S.flags(flags))
        out.append(S.exists(sel.exists))
        if not self.rev2:
            out.append(S.recent(sel.recent_told))
        out.append(S.untagged("OK", "UIDs valid", S.code_uidvalidity(m.uidvalidity)))
        out.append(S.untagged("OK", "predicted next UID", S.code_uidnext(m.uidnext)))
        if cmd.readonly:
            out.append(S.untagged("OK", "read-only", S.code_permanentflags((), allow_new=False)))
        else:
            out.append(S.untagged("OK", "flags permitted", S.code_permanentflags(flags)))
        out.append(S.untagged("OK", "highest modseq", S.code_highestmodseq(m.highest_ms)))
        out.append(S.untagged("OK", "mailbox id", S.code_mailboxid(ids.mailbox_id(m.id))))
        if not self.rev2 and m.unseen:
            if first is None and len(snap.eids) > FIRST_UNSEEN_INLINE:
                first = await storeio.read(self.store, _first_unseen, self.acc,
                                           snap.eids[FIRST_UNSEEN_INLINE:])
                if first:
                    first += FIRST_UNSEEN_INLINE
            if first:
                out.append(S.untagged("OK", "first unseen", S.code_unseen(first)))
        self.sel = sel
        self.sel_flags = flags
        self._flags_from = spell
        if cmd.qresync is not None:
            await self.qresync_select(cmd.qresync)
        return Done("EXAMINE completed" if cmd.readonly else "SELECT completed",
                    "READ-ONLY" if cmd.readonly else "READ-WRITE")

    async def qresync_select(self, q: ev.QResync) -> None:
        """RFC 7162 3.2.5.1: report what changed since the client's modseq."""
        sel = self.sel
        if q.uidvalidity != sel.uidvalidity:
            return
        with self.store.view() as v:
            try:
                gone = [u for _ms, u in v.vanished_since(self.acc, sel.mbx, q.modseq)]
            except CannotCalculateChanges:
                gone = None     # older than the log: RFC 7162 3.2.5.2
            changed = [u for _ms, u in v.changed_since(self.acc, sel.mbx, q.modseq)]
        if gone is None:
            lost = _absent_uids(sel, q.known_uids)
            if lost:
                self.out.append(S.vanished_ranges(lost, earlier=True))
            gone = []
        known = None
        if q.known_uids is not None and gone:
            known = set(q.known_uids.iter(max(gone + [sel.max_uid(), 1])))
        if known is not None:
            gone = [u for u in gone if u in known]
        gone = sorted(u for u in set(gone) if not sel.has(u))
        if gone:
            self.out.append(S.vanished(gone, earlier=True))
        changed = sorted(u for u in set(changed) if sel.has(u))
        if changed:
            await self.send_fetch(changed, [ev.FetchItem("FLAGS"), ev.FetchItem("UID"),
                                            ev.FetchItem("MODSEQ")], uid_cmd=True)

    do_examine = do_select

    async def do_create(self, cmd):
        name = cmd.mailbox.rstrip(SEP)
        if not name:
            raise Bad("empty mailbox name")
        path = _path(name)
        if path[0] == "INBOX" and len(path) == 1:
            raise No("INBOX always exists", "ALREADYEXISTS")
        if any(not p for p in path):
            raise No("empty level in the mailbox name", "CANNOT")
        role = None
        if cmd.special_use:
            if len(cmd.special_use) > 1:
                raise No("one special use per mailbox", "USEATTR")
            role = SPECIAL_USE_TO_ROLE.get(cmd.special_use[0].lower())
            if role is None:
                raise No(f"unsupported special use {cmd.special_use[0]}", "USEATTR")
        try:
            mbx = await storeio.write(self.store, ops.create_mailbox_path, self.acc, path,
                                      role=role)
        except AlreadyExists as exc:
            if role and "role" in str(exc):
                raise No(str(exc), "USEATTR") from None
            raise
        return Done("CREATE completed", S.code_mailboxid(ids.mailbox_id(mbx)))

    async def do_delete(self, cmd):
        with self.store.view() as v:
            m = self.require_mailbox(v, cmd.mailbox)
            if v.children(self.acc, m.id):
                # RFC 9051 6.3.4: a mailbox with inferiors cannot be deleted here
                raise No("the mailbox has child mailboxes; delete them first", "INUSE")
        if m.role == vocab.ROLE_INBOX:
            raise No("INBOX cannot be deleted", "CANNOT")
        await storeio.write(self.store, ops.delete_mailbox, self.acc, m.id)
        if self.sel is not None and self.sel.mbx == m.id:
            self.sel = None
            self.state = st.after_deselect(self.state)
        return Done("DELETE completed")

    async def do_rename(self, cmd):
        new_path = _path(cmd.new_name.rstrip(SEP))
        if any(not p for p in new_path):
            raise No("empty level in the new name", "CANNOT")
        with self.store.view() as v:
            m = self.require_mailbox(v, cmd.mailbox)
            if self.find_mailbox(v, cmd.new_name) is not None:
                raise No("the new name exists already", "ALREADYEXISTS")
        if new_path == ["INBOX"]:
            raise No("cannot rename to INBOX", "ALREADYEXISTS")

        await storeio.write(self.store, ops.move_mailbox_to_path, self.acc, m.id, new_path)
        return Done("RENAME completed")

    async def do_subscribe(self, cmd):
        with self.store.view() as v:
            m = self.require_mailbox(v, cmd.mailbox)
        await storeio.write(self.store, ops.update_mailbox, self.acc, m.id, subscribed=True)
        return Done("SUBSCRIBE completed")

    async def do_unsubscribe(self, cmd):
        with self.store.view() as v:
            m = self.find_mailbox(v, cmd.mailbox)
        if m is None:
            # a subscription that outlived its mailbox
            name = SEP.join(_path(cmd.mailbox))
            if not await storeio.write(self.store, ops.unsubscribe_name, self.acc, name):
                raise No(f"not subscribed to {cmd.mailbox}", "NONEXISTENT")
            return Done("UNSUBSCRIBE completed")
        await storeio.write(self.store, ops.update_mailbox, self.acc, m.id, subscribed=False)
        return Done("UNSUBSCRIBE completed")

    async def do_notify(self, cmd):
        """RFC 5465: NOTIFY NONE, or NOTIFY SET [STATUS] (the notify task of
        the service delivers; the dispatcher's refresh is the implicit NOOP)."""
        if cmd.groups is None:
            self.set_notify(None)
            return Done("NOTIFY completed")
        try:
            spec = imap_notify.NotifySpec.from_command(cmd)
        except imap_notify.Unsupported as exc:
            raise No(f"unsupported NOTIFY events: {exc}", exc.code) from None
        if spec.name_count > imap_notify.MAX_NAMES:
            raise No("too many mailbox names", "NOTIFICATIONOVERFLOW")
        since = self.ctx.bus.latest(self.acc)    # before the read: nothing is missed
        with self.store.view() as v:
            watch = imap_notify.Watch(spec, imap_notify.scan(v, self.acc), since)
        if self.sel is not None:    # MessageNew FETCH from the next new message on
            watch.sel, watch.fetch_from = self.sel, max(self.sel.uidnext,
                                                        self.sel.max_uid() + 1)
        if spec.status:
            self.out.extend(watch.initial_status(self.sel.mbx if self.sel else None,
                                                 condstore=self.condstore, utf8=self.utf8))
        self.set_notify(watch)
        return Done("NOTIFY completed")

    def set_notify(self, watch) -> None:
        self.notify = watch
        if self.on_notify is not None:
            self.on_notify()

    async def do_namespace(self, cmd):
        self.out.append(S.namespace([("", SEP)]))
        return Done("NAMESPACE completed")

    async def do_list(self, cmd):
        return await self.list_mailboxes(cmd.tag, cmd.reference, cmd.patterns, cmd.selection,
                                  cmd.returns, cmd.return_status, cmd.extended, "LIST")

    async def do_lsub(self, cmd):
        return await self.list_mailboxes(cmd.tag, cmd.reference, (cmd.pattern,),
                                  frozenset({"SUBSCRIBED"}), frozenset(), None, False, "LSUB")

    async def list_mailboxes(self, tag, reference, patterns, selection, returns, return_status,
                             extended, verb):
        if verb == "LIST" and len(patterns) == 1 and patterns[0] == "" and not selection:
            # RFC 9051 6.3.9: the hierarchy delimiter and root
            self.out.append(S.list_(["\\Noselect"], SEP, ""))
            return Done("LIST completed")
        args = (self.acc, reference, patterns, selection, returns, extended, verb, self.utf8,
                return_status is not None)
        # an answer without LIST-STATUS is kept per tree generation (imap_list)
        cache = self._sort_cache() if return_status is None else None
        lines = None
        with self.store.view() as v:
            many = v.mailbox_count(self.acc)
            if cache is not None:
                gen = v.tree_generation(self.acc)
                kept = cache.get(imap_list.cache_key(gen, *args[:-1]))
                if kept is not None:
                    self.out.append(kept)
                    return Done(f"{verb} completed")
            if many is not None and many <= imap_list.LIST_INLINE:
                lines = imap_list.listing(v, *args)
        if lines is None:
            gen, lines = await storeio.read(self.store, imap_list.listing_at, *args)
        if cache is not None:
            answer = b"".join(line for line, _m, _name in lines)
            cache.put(imap_list.cache_key(gen, *args[:-1]), answer, len(answer) + 256)
        for line, m, name in lines:
            self.out.append(line)
            if m is not None:
                with self.store.view() as v:
                    await self.status_line(v, m, name, return_status)
        return Done(f"{verb} completed")

    async def do_status(self, cmd):
        _check_name(cmd.mailbox)
        with self.store.view() as v:
            m = self.require_mailbox(v, cmd.mailbox)
            await self.status_line(v, m, cmd.mailbox, cmd.items)
        return Done("STATUS completed")

    async def status_line(self, v, m: Mailbox, name: str, items) -> None:
        vals: list[tuple[str, int | str]] = []
        deleted = None
        for item in items:
            if item == "MESSAGES":
                vals.append((item, m.total))
            elif item == "UIDNEXT":
                vals.append((item, m.uidnext))
            elif item == "UIDVALIDITY":
                vals.append((item, m.uidvalidity))
            elif item == "UNSEEN":
                vals.append((item, m.unseen))
            elif item == "RECENT":
                vals.append((item, imap_recent.status_count(v, self.acc, self.sel, m)))
            elif item == "SIZE":
                vals.append((item, m.size))
            elif item == "HIGHESTMODSEQ":
                self.condstore = True
                vals.append((item, m.highest_ms))
            elif item == "DELETED":
                if deleted is None:
                    deleted = len(v.keyword_positions(self.acc, v.uid_map(self.acc, m.id)[1],
                                                      vocab.DELETED))
                vals.append((item, deleted))
            elif item == "APPENDLIMIT":
                vals.append((item, self.cfg.max_literal))
            elif item == "MAILBOXID":
                vals.append((item, ids.mailbox_id(m.id)))
        self.out.append(S.status(name, vals, utf8=self.utf8))

    # --- quota (RFC 9208) ---------------------------------------------------------------------

    def _quota_limit(self, v) -> int:
        a = v.account(self.acc)
        return (a.quota if a and a.quota else 0) or self.ctx.cfg.store.quota

    async def do_getquotaroot(self, cmd):
        with self.store.view() as v:
            self.require_mailbox(v, cmd.mailbox)
            limit = self._quota_limit(v)
            used = v.usage(self.acc)
        if limit:
            self.out.append(S.quotaroot(cmd.mailbox, [""], utf8=self.utf8))
            self.out.append(S.quota("", [("STORAGE", used // 1024, limit // 1024)]))
        else:
            self.out.append(S.quotaroot(cmd.mailbox, [], utf8=self.utf8))
        return Done("GETQUOTAROOT completed")

    async def do_getquota(self, cmd):
        with self.store.view() as v:
            limit = self._quota_limit(v)
            used = v.usage(self.acc)
        if cmd.root != "" or not limit:
            raise No("no such quota root", "NONEXISTENT")
        self.out.append(S.quota("", [("STORAGE", used // 1024, limit // 1024)]))
        return Done("GETQUOTA completed")

    async def do_setquota(self, cmd):
        raise No("quotas are set by the administrator (mailaccess user add --quota)", "NOPERM")

    # --- append -------------------------------------------------------------------------------

    async def do_append(self, cmd):
        try:
            prepared = await self._prepare_append(cmd)
        finally:
            self.store.coming.arrived(id(self))     # queued next, or not at all
        # MULTIAPPEND is atomic (RFC 3502).  The mailbox is looked up in the
        # write itself (no read transaction of its own on the loop: a
        # synchronizing literal's literal_refusal already answered TRYCREATE
        # before the upload; this finds the mailbox as of the commit)
        # (a small APPEND waits on the loop for the other sessions' APPENDs
        # on their way, and shares their commit: storeio.write_gathered)
        write = (storeio.write_gathered
                 if sum(len(new.raw) for new, _kws in prepared) < storeio.GATHER_BYTES
                 else storeio.write)
        # into the selected mailbox (read-write): the \Recent claim the
        # catch-up after it would make rides in the APPEND's own write
        # (imap_recent.claim_with_append: one commit less per APPEND)
        sel = self.sel
        claim = sel.mbx if sel is not None and not sel.readonly else None
        done = await write(self.store, _append_named, self.acc, cmd.mailbox,
                           prepared, self.ctx.cfg.store.quota, claim)
        if done is None:
            raise No(f"no mailbox {cmd.mailbox}", "TRYCREATE")
        results, claimed = done
        if claimed is not None and self.sel is sel:
            imap_recent.claimed(sel, *claimed)
        uids = [r.placed[0][2] for r in results]
        # A client that appends usually appends again (an upload, a copy
        # between servers): announced from its OK on, so that another
        # session's APPEND ready meanwhile waits for this one's next and
        # shares its commit (storeio.write_gathered); its next command
        # other than an APPEND withdraws it, else it goes stale (coming.FRESH)
        self._next_append = True
        self.store.coming.expect(id(self))
        # the mailbox's UIDVALIDITY as the writer found it (placed: mailbox, uidvalidity, uid)
        return Done("APPEND completed", S.code_appenduid(results[0].placed[0][1], uids))

    async def _prepare_append(self, cmd) -> list:
        """APPEND's messages, checked and indexed: [(NewEmail, keywords)]."""
        prepared = []
        for msg in cmd.messages:
            if msg.utf8 and "UTF8=ACCEPT" not in self.enabled:
                raise Bad("APPEND with UTF8 needs ENABLE UTF8=ACCEPT first (RFC 6855)")
            if msg.catenate is not None:
                raw = await self.catenate(msg.catenate)
            else:
                raw = msg.data
            if raw is None or len(raw) == 0:
                raise No("empty message", "CANNOT")
            if len(raw) > self.cfg.max_literal:
                raise No("message too large", "TOOBIG")
            when = msg.date_time
            received = int(when.timestamp()) if when else int(time.time())
            tz = int(when.utcoffset().total_seconds() // 60) if when and when.utcoffset() else 0
            kws = [k for k in (keyword_of(f) for f in msg.flags) if k]
            if len(raw) >= storeio.OFFLOOP_BYTES:
                new = await storeio.cpu(ingest.prepare, raw, received, tz)
            else:
                new = ingest.prepare(raw, received, tz)
            prepared.append((new, kws))
        return prepared

    def _append_over(self) -> None:
        """No APPEND of this session is on its way (after do_append announced one)."""
        self._next_append = False
        self.store.coming.arrived(id(self))

    def literal_refusal(self, tag: bytes | None, parts: tuple) -> bytes | None:
        """Asked by the service before it sends "+" for a synchronizing
        literal (``frames.ContinuationRequest``): the tagged NO/BAD that
        answers the command at once, or None to let the literal come.  An
        APPEND to a mailbox that does not exist gets NO [TRYCREATE], a bad
        date-time or flag BAD, before the client uploads the message (RFC
        3501 6.3.11 / RFC 9051 6.3.12)."""
        refusal = self._literal_refusal(tag, parts)
        if refusal is not None and self._next_append:
            self._append_over()         # (answered here: handle never sees it)
        return refusal

    def _literal_refusal(self, tag: bytes | None, parts: tuple) -> bytes | None:
        if tag is None:
            return None
        try:
            name = imap_commands.append_target(tag, parts, utf8=self.utf8)
        except CommandError as exc:
            return S.bad(tag, exc.message, exc.code)
        if name is None:
            return None
        if not st.allowed(self.state, "APPEND"):
            return S.bad(tag, st.refusal(self.state, "APPEND"))
        with self.store.view(durable=False) as v:       # (as do_append's)
            if _mailbox_id(v, self.acc, name) is None:
                return S.no(tag, f"no mailbox {name}", "TRYCREATE")
        # the message is on its way: the writer may hold a batch back for it
        # (store/coming.py); do_append withdraws this as it queues the write
        self.store.coming.expect(id(self))
        return None

    async def catenate(self, parts) -> bytes:
        """RFC 4469: build the message from literal text and URLs that point at
        this user's own messages (RFC 5092 IMAP URLs, relative or absolute)."""
        out = []
        for part in parts:
            if isinstance(part, ev.CatenateText):
                out.append(part.data)
                continue
            # in the worker pool: a URL with a section decodes the message's
            # whole index (1 s for a 16 MB header of small fields), and a
            # CATENATE may name a thousand
            data = await storeio.cpu(self.resolve_url, part.url)
            if data is None:
                raise No(f"bad URL {part.url}", "BADURL " + part.url)
            out.append(data)
        return b"".join(out)

    def resolve_url(self, url: str) -> bytes | None:
        """The bytes an IMAP URL (RFC 5092) names, or None (the caller answers
        NO [BADURL], RFC 4469 5): only this user's own messages on this
        server; a URL naming another user or another server is refused."""
        m = _URL.match(url)
        if m is None:
            return None
        from urllib.parse import unquote
        if m.group("user") is not None and (
                self.user is None or unquote(m.group("user")).casefold() != self.user.casefold()):
            return None
        if m.group("host") is not None and not self._url_names_us(m.group("host"),
                                                                   m.group("port")):
            return None
        box = m.group("mailbox")
        with self.store.view() as v:
            if box:
                mb = self.find_mailbox(v, unquote(box))
            elif self.sel is not None:
                mb = v.mailbox(self.acc, self.sel.mbx)
            else:
                return None
            if mb is None:
                return None
            if m.group("uidvalidity") and int(m.group("uidvalidity")) != mb.uidvalidity:
                return None
            eid = v.email_at(self.acc, mb.id, int(m.group("uid")))
            if eid is None:
                return None
            rec = v.email(self.acc, eid)
            raw = bytes(v.blob(self.acc, rec.blob))
            section = unquote(m.group("section") or "")
            if not section:
                data = raw
            else:
                mi = mindex.decode_index(bytes(v.blob_index(self.acc, rec.blob)))
                data = _section_bytes(raw, mi, section)
            if data is None:
                return None
            if m.group("partial"):
                off, _, ln = m.group("partial").partition(".")
                off = int(off)
                data = data[off:off + int(ln)] if ln else data[off:]
            return data

    def _url_names_us(self, host: str, port: str | None) -> bool:
        """Whether an IMAP URL's host[:port] is this server: its configured
        hostname and certificate names, the addresses it listens on, and the
        loopback names for a client on loopback."""
        ours = {self.ctx.cfg.hostname, *self.ctx.cfg.tls.hostnames}
        ports = {143, 993}
        for svc in ("imap", "imaps"):
            for h, p in getattr(self.ctx, "bound", {}).get(svc, ()):
                ours.add(h)
                ports.add(p)
        if self.loopback:
            ours |= {"localhost", "127.0.0.1", "::1"}
        ours = {h.lower().rstrip(".") for h in ours} - {"", "0.0.0.0", "::"}
        if port is not None and int(port) not in ports:
            return False
        return host.strip("[]").lower().rstrip(".") in ours

    # --- selected state ---------------------------------------------------------------------

    async def do_close(self, cmd):
        sel = self.sel
        if not sel.readonly:
            with self.store.view() as v:
                doomed = _deleted_uids(v, self.shared, self.acc, sel, None)
            if doomed:
                await storeio.write(self.store, ops.expunge, self.acc, sel.mbx, doomed)
        self.sel = None
        return Done("CLOSE completed")

    async def do_unselect(self, cmd):
        self.sel = None
        return Done("UNSELECT completed")

    async def do_expunge(self, cmd):
        sel = self.sel
        if sel.readonly:
            raise No("the mailbox is read-only", "READ-ONLY")
        targets = sel.uids_for_set(cmd.uids, True) if cmd.uid else None
        with self.store.view() as v:
            doomed = _deleted_uids(v, self.shared, self.acc, sel, targets)
        if doomed:
            await storeio.write(self.store, ops.expunge, self.acc, sel.mbx, doomed)
        code = None
        if self.condstore:
            with self.store.view() as v:
                code = S.code_highestmodseq(v.mailbox(self.acc, sel.mbx).highest_ms)
        return Done("EXPUNGE completed", code)

    def _targets(self, cmd) -> list[int]:
        sel = self.sel
        if not cmd.uid and not cmd.set.saved and not sel.seqs_valid(cmd.set):
            raise Bad("invalid message sequence number")
        return sel.uids_for_set(cmd.set, cmd.uid, sel.saved_result if cmd.set.saved else None)

    # --- fetch -------------------------------------------------------------------------------

    async def do_fetch(self, cmd):
        sel = self.sel
        if cmd.set.saved and not cmd.uid:
            uids = sel.uids_for_set(cmd.set, True, sel.saved_result)
        else:
            uids = self._targets(cmd)
        facts = _fetch_facts(cmd.items)
        items = facts.with_uid if cmd.uid else cmd.items
        if cmd.changedsince is not None or facts.modseq:
            self.condstore = True
        if cmd.vanished:
            if not self.qresync or not cmd.uid or cmd.changedsince is None:
                raise Bad("VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE")
        if cmd.changedsince is not None:
            if not facts.modseq:
                items = items + (ev.FetchItem("MODSEQ"),)
            with self.store.view() as v:
                changed = {u for _ms, u in v.changed_since(self.acc, sel.mbx, cmd.changedsince)}
                if cmd.vanished:
                    try:
                        gone = [u for _ms, u in
                                v.vanished_since(self.acc, sel.mbx, cmd.changedsince)]
                    except CannotCalculateChanges:
                        gone = None     # older than the log: RFC 7162 3.2.5.2
            if cmd.vanished and gone is None:
                lost = _absent_uids(sel, cmd.set)
                if lost:
                    self.out.append(S.vanished_ranges(lost, earlier=True))
            elif cmd.vanished:
                wanted = set(cmd.set.iter(max([sel.max_uid()] + gone)))
                gone = sorted(u for u in set(gone) if u in wanted and not sel.has(u))
                if gone:
                    self.out.append(S.vanished(gone, earlier=True))
            uids = [u for u in uids if u in changed]
        current = await self.send_fetch(uids, items, uid_cmd=cmd.uid, current=True)
        return Done("FETCH completed", None, current)

    async def send_fetch(self, uids: list[int], items, *, uid_cmd: bool,
                         records: dict | None = None, current: bool = False) -> int:
        """The FETCH answer for UIDS, streamed.  RECORDS: {eid: encoded
        record} that are the store's current ones (a STORE's own), read
        from there instead of the store; that answer is sent from its first
        chunk on.  CURRENT: return the account's modseq as read in the view
        the answer's last chunk was built in, when nothing was awaited
        since (an answer built at once, sent with the tagged line: the
        dispatcher's catch-up check reads it from there, Done.current);
        -1 otherwise."""
        sel = self.sel
        items = tuple(items)
        waited = False
        if not sel.readonly and _fetch_facts(items).sets_seen:
            with self.store.view() as v:
                unseen = [e for _u, e in sel.pairs(uids) if not _has(v, self.acc, e, vocab.SEEN)]
            if unseen:
                waited = True
                await storeio.write(self.store, ops.set_keywords, self.acc, unseen,
                                    add=[vocab.SEEN])
                items = list(items)
                if not any(isinstance(i, ev.FetchItem) and i.name == "FLAGS" for i in items):
                    items.append(ev.FetchItem("FLAGS"))
        # sel.reported learns each message's modseq as sent, so refresh does
        # not repeat a change this response already told.
        # Every answer streams: fetch_chunks builds it a slice at a time (by
        # message count and by bytes; a body bigger than the buffer goes out
        # in pieces) and opens a store view per slice, never across an await.
        # Once FETCH_BUFFER bytes are waiting they are sent, and the next
        # slice is built only when the socket took them (back-pressure).
        # An error (UNKNOWN-CTE) drops what was not sent yet, as before.
        # The first chunk is built at once (a small answer is one chunk and
        # never waits); the later ones are built in FETCH turns (see
        # _fetch_turn), whose wait is also the yield that lets other
        # sessions run between them.
        # Where the connection can write without a wait (write_nowait: the
        # plain TCP socket), each chunk goes out as soon as it is built
        # (perf5-body: the client parses while the rest is built, and the
        # last bytes leave with the last chunk); once the socket takes only
        # part of it, no write is tried until the sender (the wait for the
        # socket, the back-pressure) took what FETCH_BUFFER holds, as before.
        # The answer's last chunk, when it and what is held come to at most
        # FETCH_HOLD bytes (a FETCH of a few messages: the whole answer),
        # stays in self.out and leaves with the tagged line in one write
        # (perf8-cmd: a write less per command, and one wake-up of the client).
        items = tuple(items)
        held = 0
        mark = len(self.out)
        blocked = False
        out = self.out
        write_now = self.write_nowait if self.sender is not None else None
        turn = _fetch_turn()
        progress = FetchProgress()
        if current:
            progress.modseq = -1    # (asked of the view of the last chunk)
        # a big message to downgrade (RFC 6858: UTF-8 header, no UTF8=ACCEPT)
        # is downgraded in the worker pool, not on the loop, and a big index
        # decoded there: fetch_chunks yields a _DowngradeFirst for it, taken
        # from here to the pool
        downgrades: dict = {}
        first = None
        chunks = fetch_chunks(self.store, self.acc, sel, uids, items, self.condstore,
                              sel.reported, self.utf8, progress=progress,
                              read_email=None if records is None else records.get,
                              downgrades=downgrades)

        def build(until: float) -> bool:
            """Chunks into self.out until the buffer is full, the answer is
            complete or the clock passes UNTIL (at least one); more to build?"""
            nonlocal held, mark, blocked, first
            built = 0
            while True:
                chunk = next(chunks, None)
                if chunk is None:
                    return False
                if type(chunk) is _DowngradeFirst:
                    first = chunk
                    return True
                out.append(chunk)
                held += len(chunk)
                built += len(chunk)
                # the last chunk of the answer, when small, waits in self.out
                # for the tagged line: the two leave in one write
                if write_now is not None and not blocked and \
                        (progress.more or held > FETCH_HOLD):
                    n = write_now(out)
                    if n is not None:
                        dropped, held = _drop_written(out, n)
                        mark = max(0, mark - dropped)
                        blocked = held > 0
                if not progress.more:
                    return False
                # a turn ends at FETCH_BUFFER built, written or not (other
                # sessions wait no longer for it than when it was held)
                if built >= FETCH_BUFFER or time.perf_counter() >= until:
                    return True

        try:
            more = build(0.0)
            # a STORE's answer (flags only: nothing can fail half-way) goes
            # out from its first chunk on, so the client reads while the
            # rest is built
            early = records is not None and more
            while True:
                if self.sender is not None and (held >= FETCH_BUFFER or early):
                    early = blocked = False
                    held = mark = 0
                    waited = True
                    await self.sender(self.take_output())
                if not more:
                    break
                waited = True
                if first is not None:
                    downgrades[first.key] = await storeio.read(self.store, first.fn,
                                                               *first.args)
                    first = None
                async with turn:        # a checkpoint, then this answer alone
                    more = build(time.perf_counter() + FETCH_TURN_SECONDS)
        except No:
            # what was not sent is dropped, but never the rest of a piece
            # the socket took the start of (write_nowait)
            if self.out and type(self.out[0]) is memoryview:
                mark = max(mark, 1)
            del self.out[mark:]
            raise
        ms = progress.modseq
        return -1 if waited or ms is None else ms

    # --- store ------------------------------------------------------------------------------------

    async def do_store(self, cmd):
        sel = self.sel
        if sel.readonly:
            raise No("the mailbox is read-only", "READ-ONLY")
        if cmd.unchangedsince is None and not cmd.silent and _RUNNING[0] == 1 and \
                STORE_REPLY_INLINE:
            one = self._store_one(cmd)
            if one is not None:
                return one if type(one) is Done else await self._store_answer(*one)
        uids = self._targets(cmd)
        kws = []
        for f in cmd.flags:
            k = keyword_of(f)
            if k is None and f.lower() != "\\recent":
                raise Bad(f"invalid flag {f}")
            if k:
                kws.append(k)
        if cmd.unchangedsince is not None:
            self.condstore = True
        live, eids = sel.uids_eids(uids)
        kw = {cmd.mode: kws}        # add=, remove= or replace=
        mbx = sel.mbx
        known = sel.known_ms

        items = _STORE_ITEMS[cmd.uid, self.condstore]
        if not cmd.silent and len(live) > STORE_CHUNK_MIN:
            if not self.condstore and (cmd.mode == "remove" or self._announced(kws)):
                return await self._store_streamed(cmd, live, eids, kws, kw, items)
            return await self._store_chunked(cmd, live, eids, kws, kw, items)
        # the answer is formatted from the records the writer rewrote (and
        # read unchanged), not read back from the store
        # a STORE on a few messages while no other command runs in this
        # process: done by the loop itself when the writer is idle
        args = (self.store, ops.set_keywords_reporting, self.acc, mbx, eids)
        res = storeio.write_now(*args, unchanged_since=cmd.unchangedsince,
                                records=not cmd.silent, **kw) \
            if len(eids) <= STORE_REPLY_INLINE and _RUNNING[0] == 1 else storeio.NOT_NOW
        here = res is not storeio.NOT_NOW
        if not here:
            res = await storeio.write(*args, unchanged_since=cmd.unchangedsince,
                                      records=not cmd.silent, **kw)
        return await self._store_answer(cmd, res, here, live, eids, kws, known, items)

    def _store_one(self, cmd):
        """A client's usual STORE: one message, no UNCHANGEDSINCE, not
        .SILENT, no keyword the session was not told (no ``* FLAGS``
        first), no other command running in this process (the loop writes
        it itself: storeio.write_now).  The general path's answer (do_store,
        _store_answer) with less on the way: the one target looked up in
        the map (no set normalised), the FETCH line formatted from the
        record the write left (_store_line).  -> Done; or, once written,
        the arguments of _store_answer when the write found the mailbox
        changed by someone else first (the general answer then); None when
        nothing was written (do_store then does it all, errors included)."""
        ns = cmd.set
        if len(ns.ranges) != 1 or ns.saved:
            return None
        n, hi = ns.ranges[0]
        if n != hi or n == 0:       # a range, or "*"
            return None
        sel = self.sel
        snap = sel.snap
        su = snap.uids
        if cmd.uid:
            i = bisect.bisect_left(su, n)
            if i == len(su) or su[i] != n:
                return None
        elif n > len(su):
            return None
        else:
            i = n - 1
        u = su[i]
        if u in sel.gone:
            return None
        kws = []
        for f in cmd.flags:
            k = keyword_of(f)
            if not k:               # \Recent, or invalid (the general path answers)
                return None
            kws.append(k)
        if kws and cmd.mode != "remove" and not self._announced(kws):
            return None
        eid = snap.eids[i]
        known = sel.known_ms
        res = storeio.write_now(self.store, ops.set_keywords_one, self.acc, sel.mbx, eid,
                                **{cmd.mode: kws})
        if res is storeio.NOT_NOW:
            return None
        modseq = res.modseq_after
        data = res.records.get(eid) if res.modseq_before == known else None
        told = self._store_line(data, i + 1, u, cmd.uid) if data is not None else None
        if told is None:
            return (cmd, res, True, [u], [eid], kws, known, _STORE_ITEMS[cmd.uid, self.condstore])
        # as _store_answer: alone, so up to date to MODSEQ once this is out
        if modseq is not None and not sel.gone:
            sel.known_ms = modseq
            self._quiet_sel, self._quiet_ms = sel, modseq
        line, sel.reported[u] = told        # (the line, the modseq it shows)
        self.out.append(line)
        return Done("STORE completed", None, -1 if modseq is None else modseq)

    def _store_line(self, data, seq: int, u: int, uid_item: bool):
        """``* SEQ FETCH ([UID U ]FLAGS (...)[ MODSEQ (m)])`` of one message,
        from DATA, the record its STORE left: the bytes _store_fetch's
        ``fetch_simple`` makes of it (tests/test_imap_store_one.py) ->
        (line, modseq reported); None where fetch_simple leaves the message
        to the Python path (a record of another version, raw UTF-8 headers
        for a client not in UTF-8 mode) or a keyword was not told."""
        if len(data) < _REC_SIZE or data[0] != _REC_VERSION:
            return None
        rec = _REC_HEAD.unpack_from(data)
        if rec[_REC_FLAGS] & FLAG_UTF8_HEADERS and not self.utf8:
            return None
        told = self._told()
        sel = self.sel
        fmt = told[3] if sel.show_recent and sel.recent and sel.is_recent(u) else told[2]
        try:
            fl = fmt(decode_keywords(data[_REC_SIZE + rec[_REC_NMEM] * _REC_MEMBER:])
                     if rec[_REC_NKW] else [])
        except _NotTold:
            return None
        ms = rec[_REC_LAST_MS]
        body = b"UID %d FLAGS %s" % (u, fl) if uid_item else b"FLAGS " + fl
        if self.condstore:
            body += b" MODSEQ (%d)" % ms
        return b"* %d FETCH (%s)\r\n" % (seq, body), ms

    async def _store_answer(self, cmd, res, here: bool, live: list[int], eids: list[int],
                            kws: list[str], known: int, items):
        """The answer of a STORE on a few messages (do_store, _store_one)
        once RES (ops.KeywordsResult) is durable: the untagged FETCH lines
        (RFC 9051 6.4.6), a new FLAGS list first if needed, the session's
        modseqs moved -> Done.  HERE: the loop wrote it itself, no other
        task having run since."""
        sel = self.sel
        mbx = sel.mbx
        inline = self._store_inline(cmd, res, eids, live, kws, known, items)
        conflicts, before, modseq = res.conflicts, res.modseq_before, res.modseq_after
        if conflicts:
            by_eid = dict(zip(eids, live))
            conflict_uids = sorted(by_eid[e] for e in conflicts)
            conflict_set = set(conflict_uids)
        else:
            conflict_uids, conflict_set = [], ()
        # Report the new flags of every message the command touched (RFC
        # 9051 6.4.6), unless .SILENT.
        report = [] if cmd.silent else \
            [u for u in live if u not in conflict_set] if conflict_set else live
        # Nobody else changed the mailbox between what this session knew and
        # this STORE (the writer read BEFORE in the STORE's own transaction):
        # once our own answer is out, the session is up to date to MODSEQ
        # without rescanning what it just changed; a later commit by someone
        # else is the catch-up's, from MODSEQ on.
        alone = before == known
        if modseq is not None and alone and not sel.gone:
            sel.known_ms = modseq
            # ... and so is the dispatcher's catch-up after it: every change
            # of the account up to MODSEQ is known for this selection (the
            # mailbox moved only by this STORE; other mailboxes do not
            # matter), so _needs_refresh reads one counter instead of
            # running the catch-up (which would find nothing to say)
            self._quiet_sel, self._quiet_ms = sel, modseq
        if kws and cmd.mode != "remove" and not (alone and self._announced(kws)):
            with self.store.view() as v:
                self.out.extend(self.flag_updates(v))
        if report:
            if inline is not None:
                lines, reported = inline
            elif alone and len(report) <= STORE_REPLY_INLINE:
                lines, reported = self._store_fetch(report, items)
            else:
                lines = None
            if lines is not None:
                sel.reported.update(reported)
                self.out.extend(lines)
            else:
                recs = res.records if alone and res.records is not None and \
                    self._still(mbx, before if modseq is None else modseq) else None
                here = False        # other tasks may run while it sends
                await self.send_fetch(report, items, uid_cmd=cmd.uid, records=recs)
        if conflict_uids:
            nums = conflict_uids if cmd.uid else [sel.seq_of(u) for u in conflict_uids]
            return Done("conditional STORE failed", S.code_modified(nums))
        # written by the loop itself, with no await since: the account's
        # modseq is the STORE's own (its transaction allocated it last)
        return Done("STORE completed", None, modseq if here and modseq is not None else -1)

    async def _store_chunked(self, cmd, live: list[int], eids: list[int], kws: list[str],
                             kw: dict, items) -> Done:
        """A STORE on many messages, answered while it is written: the
        messages go to the writer in chunks (STORE_CHUNKS: a small first one,
        then growing), each its own durable commit with its own modseq;
        each chunk's FETCH lines leave once its commit is durable, while the
        writer already works on the next (queued before the lines are
        formatted).  The client reads and parses the answer meanwhile
        instead of after the whole write.  IMAP asks no atomicity of a
        STORE over several messages; every line still shows a durable
        change, and the tagged OK comes after the last chunk.  A session
        gone half-way (the connection lost) leaves the chunks after it
        unwritten, as if the client had sent a shorter STORE.  The path of
        sessions with CONDSTORE and of keywords new to the session; the
        others take _store_streamed."""
        sel = self.sel
        mbx = sel.mbx
        spans = []
        lo, i = 0, 0
        while lo < len(live):
            n = STORE_CHUNKS[min(i, len(STORE_CHUNKS) - 1)]
            spans.append((lo, min(len(live), lo + n)))
            lo += n
            i += 1

        def submit(span):
            a, b = span
            return storeio.start(self.store, ops.set_keywords_reporting, self.acc, mbx,
                                 eids[a:b], unchanged_since=cmd.unchangedsince, records=True,
                                 **kw)

        pending = submit(spans[0])
        conflict_uids: list[int] = []
        quiet = True           # every chunk so far written with nobody else in between
        last_ms = None
        for k, (a, b) in enumerate(spans):
            res = await pending.wait()
            conflicts, before, modseq = res.conflicts, res.modseq_before, res.modseq_after
            chunk = live[a:b]
            if conflicts:
                by_eid = dict(zip(eids[a:b], chunk))
                gone_now = {by_eid[e] for e in conflicts}
                conflict_uids.extend(sorted(gone_now))
                report = [u for u in chunk if u not in gone_now]
            else:
                report = chunk
            alone = quiet and before == sel.known_ms
            if modseq is not None and alone and not sel.gone:
                sel.known_ms = last_ms = modseq
            quiet = quiet and alone
            # the records are the store's current ones if nobody committed
            # since: decided before the next chunk is queued
            recs = res.records if alone and res.records is not None and \
                self._still(mbx, before if modseq is None else modseq) else None
            if k + 1 < len(spans):
                pending = submit(spans[k + 1])
            if k == 0 and kws and cmd.mode != "remove" and \
                    not (alone and self._announced(kws)):
                with self.store.view() as v:
                    self.out.extend(self.flag_updates(v))
            if report:
                await self.send_fetch(report, items, uid_cmd=cmd.uid, records=recs)
        if quiet and last_ms is not None:
            # as after a single STORE (do_store): the catch-up has nothing to say
            self._quiet_sel, self._quiet_ms = sel, last_ms
        if conflict_uids:
            nums = conflict_uids if cmd.uid else [sel.seq_of(u) for u in conflict_uids]
            return Done("conditional STORE failed", S.code_modified(nums))
        return Done("STORE completed")

    async def _store_streamed(self, cmd, live: list[int], eids: list[int], kws: list[str],
                              kw: dict, items) -> Done:
        """A STORE on many messages whose answer leaves while it is written:
        the writer rewrites the records a slice at a time (STORE_SLICES, a
        small first one) and hands each slice's new records to the loop
        from inside its transaction (storeio.stream); the loop formats and
        sends that slice's FETCH lines at once, while the writer rewrites
        the next one.  The client reads and parses the answer meanwhile,
        and the tagged OK comes once the commit is durable.  Commits of at
        most STORE_COMMIT messages, one after the other; a session gone
        half-way leaves the commits after the current one unwritten.

        What is sent before the commit is durable.  A server may send
        untagged FETCH responses at any time (RFC 9051 5.2, 7; RFC 3501
        5.2), and the outcome of a command is its tagged response alone
        (RFC 9051 2.2.2): only the OK waits for durability.  The FETCH
        lines show each message's flags in the STORE's own transaction,
        which holds LMDB's write lock (no other commit comes between it
        and its lines).  The session never leaves the client with flags
        that did not happen: when the commit fails, the messages already
        answered are answered again as they are in the store before the
        tagged NO (a FETCH response's FLAGS are the flags set on the
        message, RFC 9051 7.5.2: the later response is the client's
        news); a writer that runs the request again (after growing the
        map) sends its lines again.  A crash before the commit ends the
        connection without the tagged OK, and a client without CONDSTORE
        can learn flags only by fetching them again, in its next session.
        With CONDSTORE (or UNCHANGEDSINCE) the lines carry MODSEQ, which
        a client keeps as the point to resynchronise from (RFC 7162 3.1,
        and 3.2.5.1 with QRESYNC): a modseq lost in a crash would be
        given again to other changes, which that client would then miss.
        So those sessions take _store_chunked (answered once durable), as
        does a STORE adding a keyword new to the session (its ``* FLAGS``
        is read from the store after the commit)."""
        sel = self.sel
        mbx = sel.mbx
        names = _simple_items(items)
        recent = _StoreRecent(sel) if sel.show_recent and sel.recent else None
        # keywords spelled as the store has them, read when a line first shows
        # one (no view per slice: a system flag needs none)
        flags = functools.partial(flags_list, spell=_Spellings(None, self.acc, self.store)) \
            if names is not None and "FLAGS" in names else None
        quiet = True           # every commit so far with nobody else in between
        last_ms = None
        for a, b in ops.slice_spans(len(live), (STORE_COMMIT,)):
            spans = ops.slice_spans(b - a, STORE_SLICES)
            told = 0                     # UIDs answered before the commit: live[a:a + told]
            late: list[int] = []         # ... left to answer after it (fallback)
            s = storeio.stream(self.store, ops.set_keywords_reporting, self.acc, mbx,
                               eids[a:b], records=False, slices=STORE_SLICES, **kw)
            first = True
            while (part := await s.next()) is not None:
                n, (before, recs) = part
                if first and before != sel.known_ms:
                    # somebody else changed the mailbox (before this commit
                    # took the write lock): maybe with keywords of theirs,
                    # and FLAGS must come before a FETCH showing one (ours
                    # are all told already)
                    with self.store.view() as v:
                        self.out.extend(self.flag_updates(v))
                first = False
                lo, hi = spans[n]
                uids = live[a + lo:a + hi]
                if names is not None:
                    self.out.append(_slice_answer(sel, uids, names, flags, recent, recs.get,
                                                  late))
                else:
                    with self.store.view() as v:
                        # FLAGS and UID carry no header text: the lines are the
                        # same with UTF8=ACCEPT or not
                        self.out.extend(build_fetch(v, self.acc, sel, uids, items, False,
                                                    sel.reported, True, simple_items=names,
                                                    recent_uids=recent and recent.all(),
                                                    read_email=recs.get,
                                                    fallback_to=late))
                told = max(told, hi)     # (a rerun after a map growth starts again at 0)
                if self.sender is not None:
                    await self.sender(self.take_output())
            try:
                res = await s.wait()
            except Exception:
                if told:
                    await self.send_fetch(live[a:a + told], items, uid_cmd=cmd.uid)
                raise
            before, modseq = res.modseq_before, res.modseq_after
            alone = quiet and before == sel.known_ms
            if modseq is not None and alone and not sel.gone:
                sel.known_ms = last_ms = modseq
            quiet = quiet and alone
            if late:
                await self.send_fetch(late, items, uid_cmd=cmd.uid)
        if quiet and last_ms is not None:
            # as after a single STORE (do_store): the catch-up has nothing to say
            self._quiet_sel, self._quiet_ms = sel, last_ms
        return Done("STORE completed")

    def _still(self, mbx: int, ms: int) -> bool:
        """MBX's highest modseq is still MS: no commit after the STORE's own
        changed a message of it (each change to a message moves the modseq
        of every mailbox holding it), so the records the STORE's
        transaction left are the store's current ones."""
        with self.store.view() as v:
            m = v.mailbox(self.acc, mbx)
        return m is not None and m.highest_ms == ms

    def _announced(self, kws: list[str]) -> bool:
        """Every keyword of KWS is in the FLAGS list this session was last
        sent (so a STORE adding them needs no new ``* FLAGS``)."""
        low = self._told()[1]
        for k in kws:
            if flag_of(k).lower() not in low:
                return False
        return True

    def _told(self) -> tuple:
        """(the FLAGS list this session was last sent, {its flags lowercased:
        the flag as sent}, the FLAGS formatter of a STORE's answer, the same
        adding \\Recent), made once per FLAGS list.  The formatter spells
        custom keywords as sent (remembering each keyword's spelling) and
        raises _NotTold for one the session was not told."""
        told = self._told_flags
        if told is None or told[0] is not self.sel_flags:
            spelled = {f.lower(): f for f in self.sel_flags}
            by_keyword: dict[str, str] = {}

            def flags(keywords) -> bytes:
                out = []
                for k in keywords:
                    f = by_keyword.get(k)
                    if f is None:
                        f = spelled.get(flag_of(k).lower())
                        if f is None:
                            raise _NotTold
                        by_keyword[k] = f
                    out.append(f)
                return ("(" + " ".join(out) + ")").encode("utf-8")

            told = self._told_flags = (self.sel_flags, spelled, flags,
                                       functools.partial(_with_recent, flags))
        return told

    def _store_inline(self, cmd, res, eids, live, kws, known, items):
        """The answer of a STORE on a few messages, formatted from the
        records its transaction left (no view): -> (lines, {uid: modseq
        reported}) or None (do_store then answers over a view, or streams).
        Changes nothing in the session.  Only when nobody else changed the
        mailbox before the STORE (its records are then what the session
        would read: a change after it is the catch-up's, from the STORE's
        modseq on) and the session knows every keyword it adds (no
        ``* FLAGS`` must come first)."""
        if cmd.silent or res.records is None or res.modseq_before != known or \
                len(live) > STORE_REPLY_INLINE:
            return None
        if kws and cmd.mode != "remove" and not self._announced(kws):
            return None
        report = live
        if res.conflicts:
            failed = set(res.conflicts)
            report = [u for e, u in zip(eids, live) if e not in failed]
        if not report:
            return None
        lines, reported = self._store_fetch(report, items, res.records.get)
        return None if lines is None else (lines, reported)

    def _store_fetch(self, uids: list[int], items, read_email=None):
        """The ``* n FETCH (FLAGS ...)`` answers of a STORE on a few messages,
        built at once over one view, or from READ_EMAIL (``eid -> the record
        the STORE left``, no view) -> (lines, {uid: modseq reported}),
        which the caller sends and records (a bulk STORE streams through
        send_fetch).  Custom keywords are spelled as in the FLAGS list the
        session was sent; (None, None) when a message needs more than that
        (a keyword the session was not told, a record the compiled
        formatter leaves to the Python path): then send_fetch answers."""
        sel = self.sel
        _sel_flags, _spelled, flags, flags_recent = self._told()
        names = [i.name for i in items]
        recent = sel.show_recent and sel.recent
        snap = sel.snap
        lines: list[bytes] = []
        reported: dict[int, int] = {}

        def answer(read_email, read_index) -> bool:
            for u in uids:
                fmt = flags_recent if recent and u not in sel.gone and sel.is_recent(u) \
                    else flags
                out, rep, fallback = _fetchfmt.fetch_simple(
                    read_email, read_index, [u], snap.uids, snap.eids, names, fmt,
                    self.condstore, self.utf8)
                if fallback:
                    return False
                lines.extend(out)
                reported.update(rep)
            return True

        try:
            if read_email is not None:      # FLAGS, UID, MODSEQ: no index read
                ok = answer(read_email, _no_index)
            else:
                with self.store.view() as v:
                    ok = answer(v.email_reader(self.acc), v.index_reader(self.acc))
        except _NotTold:
            ok = False
        return (lines, reported) if ok else (None, None)

    # --- copy / move ------------------------------------------------------------------------

    async def do_copy(self, cmd):
        sel = self.sel
        uids = self._targets(cmd)
        with self.store.view() as v:
            dst = self.require_mailbox(v, cmd.mailbox, trycreate=True)
        live = [u for u in uids if u not in sel.gone]
        if not live:
            return Done("nothing to copy")
        new = await storeio.write(self.store, ops.copy, self.acc, [sel.eid_of(u) for u in live],
                                  dst.id)
        return Done("COPY completed", S.code_copyuid(dst.uidvalidity, live, new))

    async def do_move(self, cmd):
        sel = self.sel
        if sel.readonly:
            raise No("the mailbox is read-only", "READ-ONLY")
        uids = self._targets(cmd)
        with self.store.view() as v:
            dst = self.require_mailbox(v, cmd.mailbox, trycreate=True)
        live = [u for u in uids if u not in sel.gone]
        if not live:
            return Done("nothing to move")
        # into the selected mailbox too (RFC 6851 3.3 allows it): new UIDs,
        # the old ones expunged, as for any other destination
        pairs = await storeio.write(self.store, ops.move, self.acc, sel.mbx, live, dst.id)
        if not pairs:
            # all expunged meanwhile by another session: no empty COPYUID
            return Done("nothing to move")
        src = [a for a, _ in pairs]
        dstu = [b for _, b in pairs]
        # RFC 6851 3.3: COPYUID in an untagged OK before the expunges
        self.out.append(S.untagged("OK", "moved", S.code_copyuid(dst.uidvalidity, src, dstu)))
        return Done("MOVE completed")

    # --- search / sort / thread ----------------------------------------------------------------

    async def run_search(self, key) -> list[int]:
        return (await self._search(key))[0]

    async def _search(self, key) -> tuple[list[int], int | None]:
        """(the UIDs of the selected mailbox's view that match KEY, in UID
        order; the highest modseq among them when the flags column answered,
        else None).  Keywords, modseq and UID sets alone are answered on the
        loop from the worker's flags column (views/flag_column.py), built or
        brought forward in this view when the mailbox is small enough for
        that to be brief (FLAG_INLINE messages: one compiled scan, under a
        millisecond), else built in the worker pool; anything else, and
        what the column cannot tell, by the query engine in the pool."""
        from ..query import engine
        from ..query import model as qm
        from .imap_search import to_query

        sel = self.sel
        query = to_query(key, sel, self.acc, ranges=True)
        keys, eids = sel.columns()
        if type(query) is qm.All:
            return list(keys), None     # (what the engine answers, without its hop)
        cols = self._flag_columns()
        if cols is not None and flag_column.answerable(query):
            with self.store.view() as v:
                m = v.mailbox(self.acc, sel.mbx)
                col = None
                if m is not None:
                    # (built from the session's map: its UIDs are not read again)
                    col = cols.get(v, self.acc, m, start=sel.snap) \
                        if m.total <= FLAG_INLINE else cols.peek(self.acc, m)
                    if col is not None:
                        got = flag_column.evaluate(col, keys, query)
                        if got is not None:
                            return got
            if m is not None and col is None:
                col, got = await storeio.read(self.store, _column_search, self.acc, m.id,
                                              sel.snap, keys, query)
                if col is not None:
                    cols.put((self.acc, m.id), col)
                if got is not None:
                    return got
        uids = await storeio.read(self.store, functools.partial(
            engine.search_columns, mailbox=sel.mbx, ascending=True), self.acc, keys, eids, query)
        return uids, None

    def _flag_columns(self) -> "flag_column.FlagColumns | None":
        """The worker's flags columns (None: [imap] flag_cache_bytes = 0)."""
        limit = self.cfg.flag_cache_bytes
        if limit <= 0:
            return None
        cols = self.shared.flag_columns
        if cols is None:
            cols = self.shared.flag_columns = flag_column.FlagColumns(limit)
        return cols

    async def do_search(self, cmd):
        sel = self.sel
        # CHARSET: the parser decoded the strings with any charset Python
        # knows and answered NO [BADCHARSET] for the others (RFC 3501 6.4.4)
        if _uses_modseq(cmd.key):
            self.condstore = True
        returns = cmd.returns
        update = self._context_check(cmd)
        base = sel.known_ms
        uids, top = await self._search(cmd.key)
        if returns is None and self.rev2:
            returns = ("ALL",)
        modseq = None
        if self.condstore and _uses_modseq(cmd.key) and uids:
            # RFC 4731 3.2 / RFC 7162 3.1.5: the highest modseq of the messages
            # returned: with MIN, MAX and/or PARTIAL but neither ALL nor COUNT
            # only those
            shown_uids = imap_context.returned(uids, returns, cmd.partial)
            if top is not None and len(shown_uids) == len(uids):
                modseq = top        # (the column's, of the same messages)
            else:
                with self.store.view() as v:
                    modseq = flag_column.highest_modseq(
                        v, self.acc, [e for _u, e in sel.pairs(shown_uids)])
        nums = uids if cmd.uid else [sel.seq_of(u) for u in uids]
        if returns is None:
            self.out.append(S.search(nums, modseq))
            return Done("SEARCH completed")
        if "SAVE" in returns:
            # RFC 5182 2.4 / RFC 9394 3.2: with MIN, MAX and/or PARTIAL (and
            # neither ALL nor COUNT) only those messages are saved
            sel.saved_result = imap_context.returned(uids, returns, cmd.partial)
        if set(returns) != {"SAVE"}:
            self.out.append(_esearch(cmd.tag, cmd.uid, nums, returns, modseq,
                                     min(nums, default=None), max(nums, default=None),
                                     partial=cmd.partial))
        if update:
            self._context_start(cmd, uids, None, base)
        return Done("SEARCH completed")

    def _context_check(self, cmd) -> bool:
        """RETURN (UPDATE) asked for (RFC 5267 4.3); BAD when the tag already
        names a live context (the command then has no effect)."""
        if cmd.returns is None or "UPDATE" not in cmd.returns:
            return False
        if self.contexts.has(self.sel, cmd.tag):
            raise Bad("tag reuse: that tag names a context with updates")
        return True

    def _context_start(self, cmd, results: list[int], keys, base: int) -> None:
        from .imap_search import to_query

        query = to_query(cmd.key, self.sel, self.acc)
        if not self.contexts.add(self.sel, cmd.tag, cmd.uid, query, keys, results, base):
            self.out.append(S.untagged("NO", "too many contexts, no updates",
                                       S.code_noupdate(cmd.tag)))

    async def do_cancelupdate(self, cmd):
        if self.contexts.cancel(self.sel, cmd.tags):
            raise No("unknown tag")   # as Dovecot answers (RFC 5267 says nothing)
        return Done("no further updates")

    async def do_sort(self, cmd):
        from ..query import sort as qsort

        sel = self.sel
        update = self._context_check(cmd)
        base = sel.known_ms
        keys = [qsort.SortKey(k.key.lower(), k.reverse) for k in cmd.criteria]
        cache = self._sort_cache()
        if cache is not None and imap_sortcache.cacheable(keys):
            # the mailbox's whole order, kept per worker, filtered to the
            # result (ALL: the whole view, no search)
            uids = None if imap_sortcache.is_all(cmd.key) else await self.run_search(cmd.key)
            ordered = await imap_sortcache.sort(cache, self.store, sel, keys, uids)
        else:
            uids = await self.run_search(cmd.key)
            ordered = await storeio.read(self.store, qsort.sort, self.acc,
                                         sel.pairs(uids), keys)
        nums = ordered if cmd.uid else [sel.seq_of(u) for u in ordered]
        if cmd.returns is None:
            self.out.append(S.sort(nums))
        else:
            # ESORT (RFC 5267 3.2): MIN/MAX are the first/last message in the
            # sort order, not the lowest/highest number; ALL and PARTIAL keep the order
            first, last = (nums[0], nums[-1]) if nums else (None, None)
            self.out.append(_esearch(cmd.tag, cmd.uid, nums, cmd.returns, None,
                                     first, last, keep_order=True, partial=cmd.partial))
        if update:
            self._context_start(cmd, ordered, keys, base)
        return Done("SORT completed")

    async def do_thread(self, cmd):
        from ..query import thread as qthread

        sel = self.sel
        fn = qthread.thread_references if cmd.algorithm == "REFERENCES" \
            else qthread.thread_orderedsubject
        cache = self._sort_cache()
        if cache is not None:
            # the answer for exactly these candidates, kept per worker
            uids = None if imap_sortcache.is_all(cmd.key) else await self.run_search(cmd.key)
            self.out.append(await imap_sortcache.thread(cache, self.store, sel, cmd.algorithm,
                                                        fn, cmd.uid, uids))
            return Done("THREAD completed")
        uids = await self.run_search(cmd.key)
        cands = [(u if cmd.uid else sel.seq_of(u), e) for u, e in sel.pairs(uids)]
        threads = await storeio.read(self.store, fn, self.acc, cands)
        self.out.append(S.thread(threads))
        return Done("THREAD completed")

    def _sort_cache(self) -> "imap_sortcache.SortCache | None":
        """The worker's SORT/THREAD cache (None: [imap] sort_cache_bytes = 0)."""
        limit = self.cfg.sort_cache_bytes
        return imap_sortcache.for_views(self.shared, limit) if limit > 0 else None

    # --- updates ---------------------------------------------------------------------------------

    async def refresh(self, allow_expunge: bool) -> None:
        """The catch-up below, then the RFC 5267 context updates it implies
        (ADDTO after the EXISTS that numbers the new messages)."""
        await self._refresh(allow_expunge)
        if self.state is SELECTED and self.contexts.live(self.sel):
            self.out.append(await self.contexts.after_refresh(self.store, self.sel))

    async def _refresh(self, allow_expunge: bool) -> None:
        """Tell the client what changed in the selected mailbox since it last heard.

        Reads only what changed since the session's modseq.  Sessions in the
        same state (same shared snapshot and modseq, nothing pending of their
        own) get the same answer, so it is computed once and reused: a
        delivery to a mailbox that 1,000 sessions IDLE on costs one refresh
        and 999 cache hits."""
        sel = self.sel
        if sel is None:
            return
        with self.store.view() as v:
            m = v.mailbox(self.acc, sel.mbx)
            # (new mail another session claimed, the usual: no write, one view)
            if m is None or imap_recent.settled(self.shared, sel, m):
                self._catch_up(v, m, allow_expunge)
                return
        # new mail nobody claimed as \Recent yet: claim it (a write), then look
        # again (M read just now, nothing awaited since: on_refresh reads no
        # record of its own)
        await imap_recent.on_refresh(self.store, self.shared, sel, m)
        with self.store.view() as v:
            self._catch_up(v, v.mailbox(self.acc, sel.mbx), allow_expunge)

    def _catch_up(self, v, m, allow_expunge: bool) -> None:
        """The refresh in store view V, M the selected mailbox read from it."""
        sel = self.sel
        if m is None:
            # deleted under us (RFC 9051 allows BYE; we close it)
            self.out.append(S.bye("the selected mailbox was deleted"))
            self.state = st.after_bye(self.state)
            return
        if self.contexts.live(sel):   # RFC 5267 4.3.4: REMOVEFROM before the EXPUNGE
            self.out.append(self.contexts.before_refresh(v, sel, m.highest_ms))
        if m.highest_ms == sel.known_ms and not (allow_expunge and sel.gone):
            self.out.extend(imap_recent.updates(sel))
            return
        key = (sel.snap, sel.known_ms, m.highest_ms, allow_expunge, self.qresync,
               self.rev2, self.condstore, self.utf8, sel.readonly, self.sel_flags)
        # a session with recent messages answers for itself (\Recent, RECENT)
        shareable = not sel.gone and not sel.reported and not sel.recent \
            and not sel.recent_told
        if shareable:
            hit = self.shared.transitions.get(key)
            if hit is not None:
                snap, data, flags = hit
                sel.snap = snap
                if snap.highest_ms == m.highest_ms:     # (as below)
                    self.shared.publish(self.acc, sel.mbx, snap)
                sel.known_ms = m.highest_ms
                if flags is not self.sel_flags:
                    self.sel_flags = flags
                    self._flags_from = None
                self.out.append(data)
                return
        top = sel.max_uid()
        # every UID is below UIDNEXT: nothing can lie above TOP when it is next
        new_pairs = v.uid_map(self.acc, sel.mbx, after=top) if m.uidnext > top + 1 \
            else ((), ())
        try:
            vanished = [u for _ms, u in v.vanished_since(self.acc, sel.mbx, sel.known_ms)]
        except CannotCalculateChanges:   # pruned past known_ms: compare with the mailbox
            live = set(v.uid_map(self.acc, sel.mbx)[0])
            vanished = [u for u in sel.uids if u not in live]
        changed = v.changed_since(self.acc, sel.mbx, sel.known_ms)
        r = sel.apply(new_pairs, vanished, changed, m.highest_ms, allow_expunge)
        # a keyword new to the account is announced before any FETCH shows it
        spell = v.keyword_spellings(self.acc)
        out = self.flag_updates(v, spell)
        if r.expunged:
            if self.qresync:
                out.append(S.vanished(r.expunged))
            else:
                out.extend(S.expunge(s) for s in r.expunged_seqs)
        if r.exists is not None:
            out.append(S.exists(r.exists))
        out.extend(imap_recent.updates(sel))
        if r.changed:
            items = [ev.FetchItem("UID"), ev.FetchItem("FLAGS")]
            if self.condstore:
                items.append(ev.FetchItem("MODSEQ"))
            # the FLAGS spelled from the account's table read above (cached per
            # worker until a keyword joins it), not a read per keyword
            out.extend(build_fetch(v, self.acc, sel, r.changed, tuple(items),
                                   self.condstore, None, self.utf8, spell=spell))
        data = b"".join(out)
        self.out.append(data)
        if not sel.gone:
            if shareable:
                self.shared.remember(key, sel.snap, data, self.sel_flags)
            # the map as of M, whatever this session's own state (\Recent,
            # what it told): published, so that a SELECT brings it forward
            # (_current_map) instead of reading every UID again.  (Before,
            # only a shareable catch-up published it; the map of a session
            # with recent messages was nobody's, and the weak entry died
            # with the last session holding the older map.)
            if sel.snap.highest_ms == m.highest_ms:
                self.shared.publish(self.acc, sel.mbx, sel.snap)


# --- helpers that read the store (run inline or in a worker thread) --------------------------

def _append_named(tx, acc: int, name: str, items, quota: int, claim: int | None = None):
    """(The writer) ``ops.append_many`` into the mailbox NAME, found in this
    write transaction -> (its results, the \\Recent claim (lo, hi) made with
    them when NAME is mailbox CLAIM, the session's read-write selection, else
    None: imap_recent.claim_with_append); None (nothing written) when there is
    no such mailbox."""
    mbx = _mailbox_id(tx, acc, name)
    if mbx is None:
        return None
    results = ops.append_many(tx, acc, mbx, items, quota)
    return results, imap_recent.claim_with_append(tx, acc, mbx, claim)


def _mailbox_id(v, acc: int, name: str) -> int | None:
    """The id of the mailbox NAME, or None (APPEND: the record itself is not
    needed, so it is not decoded)."""
    parent = 0
    path = _path(name)
    for part in path:
        parent = v.child_id(acc, parent, part)
        if parent is None:
            return None
    return parent if path else None


def _flag_list(spellings: dict[str, str]) -> tuple[str, ...]:
    """The FLAGS list: system flags, then the keywords this account uses in
    their first spelling (RFC 9051 7.3.5)."""
    return SYSTEM_FLAGS + tuple(sorted(spellings.values()))


def _has(v, acc: int, eid: int, keyword: str) -> bool:
    kws = v.keywords(acc, eid)
    return kws is not None and keyword in kws


# SELECT looks for the first unseen message among this many inline (a compiled
# scan of the raw records, well under a millisecond); beyond, in a worker thread
FIRST_UNSEEN_INLINE = 1024


def _first_unseen(v, acc: int, eids) -> int | None:
    """The sequence number of the first message of EIDS without \\Seen."""
    hit = v.keyword_positions(acc, eids, vocab.SEEN, present=False, limit=1)
    return hit[0] + 1 if hit else None


def _deleted_uids(v, shared: SharedViews, acc: int, sel: SelectedMailbox,
                  targets) -> list[int]:
    """The UIDs of the view (TARGETS only, when not None) that are not
    expunged yet and carry \\Deleted now: what EXPUNGE and CLOSE remove.
    Found from the server's \\Deleted set of the mailbox (imap_marked), not
    by reading every message."""
    m = v.mailbox(acc, sel.mbx)
    if m is None:
        return []
    marked = imap_marked.marked_uids(v, shared.marked, acc, m, vocab.DELETED,
                                     read_all=targets is None)
    if marked is None:      # UID EXPUNGE, nothing kept for the mailbox: read only its set
        pairs = sel.pairs(targets)
        return [pairs[i][0] for i in v.keyword_positions(acc, [e for _, e in pairs],
                                                         vocab.DELETED)]
    if targets is not None:
        marked = marked.intersection(targets)
    if len(marked) * BULK_RATIO >= sel.exists:
        # many (an EXPUNGE of the whole mailbox): one pass over the map,
        # ascending, instead of a bisection per UID
        gone = sel.gone
        return [u for u in sel.uids if u in marked and u not in gone]
    return [u for u in sorted(marked) if sel.live(u)]


def _current_map(v, acc: int, m: Mailbox, last: Snapshot | None) -> Snapshot:
    """The sequence map of mailbox M as of this view (M read from it).
    LAST, the newest shared map of M (at an older modseq), is brought
    forward with what changed since (UIDs above its top, expunges since its
    modseq) instead of reading every UID again; without it, or when the
    expunges since are no longer recorded, or when the result does not
    count M's messages, the whole map is read."""
    if last is not None and last.highest_ms < m.highest_ms:
        try:
            vanished = [u for _ms, u in v.vanished_since(acc, m.id, last.highest_ms)]
        except CannotCalculateChanges:
            vanished = None
        if vanished is not None:
            top = last.uids[-1] if last.uids else 0
            new = v.uid_map(acc, m.id, after=top) if m.uidnext > top + 1 else ((), ())
            snap = last.advance(*new, vanished, m.highest_ms)
            if len(snap.uids) == m.total:
                return snap
    return Snapshot(*v.uid_map(acc, m.id), m.highest_ms)


# a flag SEARCH on a mailbox of at most this many messages builds or brings
# forward its flags column on the loop (a compiled scan of ~50 ns a message);
# a bigger one's column is built in the worker pool
FLAG_INLINE = 20_000


def _column_search(v, acc: int, mbx: int, snap, keys, query):
    """In the worker pool: (the flags column of mailbox MBX as view V has
    it, built from the session's map SNAP, ``flag_column.evaluate`` of
    QUERY on it over KEYS); (None, None) when the mailbox is gone."""
    m = v.mailbox(acc, mbx)
    if m is None:
        return None, None
    col = flag_column.build(v, acc, m, start=snap)
    return col, flag_column.evaluate(col, keys, query)


def _uses_modseq(key) -> bool:
    if isinstance(key, ev.ModSeq):
        return True
    for attr in ("keys",):
        if hasattr(key, attr):
            return any(_uses_modseq(k) for k in getattr(key, attr))
    if isinstance(key, ev.Or):
        return _uses_modseq(key.left) or _uses_modseq(key.right)
    if isinstance(key, ev.Not):
        return _uses_modseq(key.key)
    return False


def _internaldate(rec: EmailRecord) -> bytes:
    tz = timezone(timedelta(minutes=rec.tz))
    return format_datetime(datetime.fromtimestamp(rec.received_at, tz))


def _section_name(item) -> bytes:
    """ITEM's section as the response names it.  Field names go out as
    astrings (RFC 9051 9: header-fld-name): a name that is not an atom (a
    space, a parenthesis, a quote: ftext allows all but the colon, RFC 5322
    3.6.8) is quoted, so ``("a b")`` and ``(a b)`` stay two items."""
    s = item.section
    parts = ".".join(str(p) for p in s.part)
    text = s.text or ""
    spec = ".".join(x for x in (parts, text) if x).encode()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        spec += b" (" + b" ".join(astring(f) for f in s.fields) + b")"
    return spec


def _section_bytes(raw: bytes, mi, section: str) -> bytes | None:
    """RFC 5092 / IMAP section text like '1.2.HEADER' -> bytes."""
    parts = section.upper().split(".")
    nums = []
    while parts and parts[0].isdigit():
        nums.append(parts.pop(0))
    what = ".".join(parts)
    return mindex.part_bytes(raw, mi, ".".join(nums), what if what in
                             ("HEADER", "TEXT", "MIME") else "")


_DOWNGRADED: dict[tuple[int, bytes], tuple[bytes, bytes, mindex.MessageIndex]] = {}


def _downgraded(v, acc: int, em: LoadedEmail) -> tuple[bytes, bytes, mindex.MessageIndex]:
    """(raw, encoded index, index) of EM's message as RFC 6858 downgrades it,
    for clients without UTF8=ACCEPT.  Rare (raw UTF-8 headers), so computed
    on demand and kept in a small cache keyed by content hash.  Linear in
    the message, but at 0.2 s to 0.8 s per MB of hostile header: the FETCH
    answer has a big message's downgraded off the loop first
    (_DowngradeFirst, _downgrade_off_loop)."""
    key = (acc, em.blob)
    hit = _DOWNGRADED.get(key)
    if hit is None:
        from .imap_downgrade import downgrade
        raw = bytes(v.blob(acc, em.blob))
        dg = downgrade(raw, em.require_index().header_end)
        mi = mindex.index_message(dg)
        hit = (dg, mindex.encode_index(mi), mi)
        if len(_DOWNGRADED) > 256:
            _DOWNGRADED.clear()
        _DOWNGRADED[key] = hit
    return hit


class _DowngradeFirst:
    """fetch_chunks' request to its consumer: run ``fn(view, *args)`` off
    the loop (storeio.read: _downgrade_off_loop, _index_off_loop,
    _fields_off_loop), put the result in the answer's ``downgrades`` under
    KEY, then go on (the message is retried; the results it took are
    dropped once it is answered)."""

    __slots__ = ("key", "fn", "args")

    def __init__(self, key: tuple, fn, *args):
        self.key = key
        self.fn = fn
        self.args = args


# a stored index at least this big is decoded off the loop for FETCH: its
# JSON is most of the decoding (a 16 MB header of small fields: 1 s)
OFFLOOP_INDEX_BYTES = 1 << 20


def _index_off_loop(v, acc: int, blob: bytes):
    """The decoded index of BLOB in a worker thread; None when it is missing
    or unreadable (the loop's require_index then says why)."""
    data = v.blob_index(acc, blob)
    try:
        return mindex.decode_index(data) if data is not None else None
    except ValueError:
        return None


def _downgrade_off_loop(v, acc: int, eid: int):
    """_downgraded of email EID in a worker thread (storeio.read); None
    when it is gone."""
    em = load_email(v, acc, eid, members=False)
    return _downgraded(v, acc, em) if em is not None else None


# FETCH items that need only the email record and the prepared index, and
# the whole message's HEADER.FIELDS: the compiled hot path answers requests
# made of these alone (_speedups/fetchfmt)
_fetchfmt = _speedups.load("fetchfmt")
# the email record's layout, for a one-message STORE's answer (_store_line)
_REC_HEAD = EMAIL_LAYOUT.head
_REC_SIZE = _REC_HEAD.size
_REC_VERSION = EMAIL_LAYOUT.version
_REC_MEMBER = EMAIL_LAYOUT.member.size
_REC_LAST_MS, _REC_FLAGS, _REC_NKW, _REC_NMEM = (
    EMAIL_LAYOUT.index(n) for n in ("last_ms", "flags", "n_keywords", "n_members"))
_SIMPLE_FETCH = frozenset(_fetchfmt.ITEMS)
_HEADER_FIELDS = ("HEADER.FIELDS", "HEADER.FIELDS.NOT")
_WHOLE_BODY = _fetchfmt.WholeBody(b"BODY[]")
_WHOLE_RFC822 = _fetchfmt.WholeBody(b"RFC822")
_WHOLE_HEADER = _fetchfmt.WholeHeader(b"BODY[HEADER]")
_RFC822_HEADER = _fetchfmt.WholeHeader(b"RFC822.HEADER")
# fetchfmt items that read the raw message
_RAW_ITEMS = (_fetchfmt.HeaderFields, _fetchfmt.WholeBody, _fetchfmt.WholeHeader)
# a STORE touching at most this many messages answers at once (do_store)
STORE_REPLY_INLINE = 8
# commands under way in this process's IMAP sessions (handle): a small STORE
# is written by the loop itself (storeio.write_now) only when it runs alone
_RUNNING = [0]
# what a STORE's FETCH answers show, by (UID STORE, CONDSTORE on)
_STORE_ITEMS = {(uid, cond): tuple((ev.FetchItem("UID"),) * uid + (ev.FetchItem("FLAGS"),)
                                   + (ev.FetchItem("MODSEQ"),) * cond)
                for uid in (False, True) for cond in (False, True)}
# a STORE on more messages than this (not .SILENT) is written in chunks of
# these sizes (the last repeated), each answered once durable (_store_chunked)
STORE_CHUNK_MIN = 1000
STORE_CHUNKS = (500, 1000, 2000, 4000, 8000)
# ... or, in a session without CONDSTORE, in commits of at most STORE_COMMIT
# messages, each rewritten in slices of these sizes (the last repeated),
# each answered as soon as it is rewritten (_store_streamed); each slice is
# a hand-off to the loop (~0.2-0.4 ms of CPU on the two threads): with the
# writer at ~0.65 us a message (perf8-bulk), 4,000 still leave well ahead of
# a client's parse (~3 us a line)
STORE_COMMIT = 20000
STORE_SLICES = (100, 400, 1500, 4000)
# bytes of FETCH lines a streamed STORE formats per fetch_upto call (a
# slice's lines take one call: ~50 bytes a line)
STORE_SLICE_BYTES = 1 << 20


class _FetchFacts:
    """What do_fetch and send_fetch ask of a FETCH's items, found once per
    item tuple (_fetch_facts): ``with_uid`` (the items, UID first unless
    among them: a UID FETCH's), ``modseq`` (MODSEQ among them),
    ``sets_seen`` (BODY[...] without PEEK, RFC822 or RFC822.TEXT: the
    messages get \\Seen in a read-write mailbox), ``simple`` (their
    _simple_items, shared: not to be changed), ``want_blob`` and
    ``want_index`` (the simple items read the raw message, the message
    index: fetchfmt reads the index for ENVELOPE, BODYSTRUCTURE, BODY,
    HEADER.FIELDS and the whole header alone), ``want_bs`` (BODYSTRUCTURE
    among them: fetchfmt reads the ``msg.bs`` rows, View.bodystructure_reader,
    when it is the only one read from the index)."""
    __slots__ = ("with_uid", "modseq", "sets_seen", "simple", "want_blob", "want_index",
                 "want_bs", "keep")

    def __init__(self, items: tuple):
        named = {i.name for i in items if isinstance(i, ev.FetchItem)}
        self.with_uid = items if "UID" in named else (ev.FetchItem("UID"),) + items
        self.modseq = "MODSEQ" in named
        self.sets_seen = any(isinstance(i, ev.FetchBody) and not i.peek for i in items) or \
            "RFC822" in named or "RFC822.TEXT" in named
        self.simple = simple = _simple_items(items)
        self.want_blob = simple is not None and any(type(n) in _RAW_ITEMS for n in simple)
        self.want_index = simple is not None and any(
            type(n) is _fetchfmt.HeaderFields or type(n) is _fetchfmt.WholeHeader
            or type(n) is str and n in _INDEX_ITEMS for n in simple)
        self.want_bs = simple is not None and "BODYSTRUCTURE" in simple
        # kept (_fetch_facts) when small: a few items, HEADER.FIELDS lists
        # of a few short names (what clients send for their message lists)
        self.keep = len(items) <= 16 and sum(
            sum(len(f) + 8 for f in i.section.fields) for i in items
            if isinstance(i, ev.FetchBody) and i.section.fields) <= _KEEP_FIELDS_BYTES


def _fetch_facts(items: tuple) -> _FetchFacts:
    """The _FetchFacts of ITEMS (a tuple), kept for the item lists clients
    send (at most _FETCH_FACTS_MAX of them, each at most 16 items and
    _KEEP_FIELDS_BYTES of HEADER.FIELDS names: a hostile client cannot make
    them hold much, about 1 MB per worker at most)."""
    f = _FETCH_FACTS.get(items)
    if f is None:
        f = _FetchFacts(items)
        if f.keep and len(_FETCH_FACTS) < _FETCH_FACTS_MAX:
            _FETCH_FACTS[items] = f
    return f


#: the simple FETCH items fetchfmt answers from the message index
_INDEX_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE", "BODY"})
_FETCH_FACTS: dict[tuple, _FetchFacts] = {}
_FETCH_FACTS_MAX = 1024
_KEEP_FIELDS_BYTES = 512


class _NotTold(Exception):
    """A STORE's answer shows a keyword the session was not told (do_store)."""


def _simple_items(items) -> list | None:
    """ITEMS as fetchfmt items (names, HeaderFields), or None when one of
    them needs the Python loop."""
    out = []
    for it in items:
        if isinstance(it, ev.FetchItem):
            if it.name == "RFC822":
                out.append(_WHOLE_RFC822)
            elif it.name == "RFC822.HEADER":
                out.append(_RFC822_HEADER)
            elif it.name not in _SIMPLE_FETCH:
                return None
            else:
                out.append(it.name)
        elif (isinstance(it, ev.FetchBody) and not it.binary and it.partial is None
              and not it.section.part and it.section.text in _HEADER_FIELDS):
            out.append(_fetchfmt.HeaderFields(b"BODY[" + _section_name(it) + b"]",
                                              tuple(it.section.fields),
                                              it.section.text == "HEADER.FIELDS.NOT"))
        elif (isinstance(it, ev.FetchBody) and not it.binary and it.partial is None
              and not it.section.part and it.section.text is None):
            out.append(_WHOLE_BODY)     # BODY[], BODY.PEEK[] (perf5-body)
        elif (isinstance(it, ev.FetchBody) and not it.binary and it.partial is None
              and not it.section.part and it.section.text == "HEADER"):
            out.append(_WHOLE_HEADER)   # BODY[HEADER], BODY.PEEK[HEADER] (stop 24)
        else:
            return None
    return out


def build_fetch(v, acc: int, sel: SelectedMailbox, uids, items, condstore: bool,
                reported: dict | None = None, utf8: bool = True, *,
                simple: bool = True, simple_items: list | None = None,
                recent_uids: set | None = None, read_email=None,
                fallback_to: list | None = None,
                spell: dict[str, str] | None = None) -> list[bytes]:
    """FETCH responses for UIDS: the hot path.  Reads prepared index bytes;
    raw message bytes only for body sections.  UTF8=false: messages with raw
    UTF-8 headers are served downgraded (RFC 6858).  SIMPLE=False forces the
    Python loop below (the hot path's own fallback).  SIMPLE_ITEMS: ITEMS'
    _simple_items, when the caller has them.  RECENT_UIDS: the session's
    \\Recent UIDs (a superset of those in UIDS will do), when the caller
    built them once for a whole answer.  READ_EMAIL: where the hot path reads
    the email records (``eid -> record``; default the view's), e.g. the
    records a STORE just wrote, when they are known to be V's.  FALLBACK_TO:
    the UIDs the hot path cannot answer are appended there, unanswered,
    instead of going through the Python loop (which reads V's records).
    SPELL: V's keyword_spellings, when the caller read them (the catch-up);
    else the FLAGS read each keyword's spelling as they first show it."""
    names = (simple_items if simple_items is not None else _simple_items(items)) \
        if simple else None
    if names is not None:
        snap = sel.snap
        read_blob = None
        for n in names:
            if type(n) in _RAW_ITEMS:
                read_blob = v.blob_reader(acc)
                break
        flags = (functools.partial(flags_list, spell=_Spellings(v, acc) if spell is None
                                   else spell)
                 if "FLAGS" in names else None)
        # \Recent is the session's, not the record's: the session's recent
        # messages take a second pass whose FLAGS formatter adds it
        if flags is not None and sel.show_recent and sel.recent:
            recent = recent_uids.intersection(uids) if recent_uids is not None \
                else sel.recent_among(uids)
        else:
            recent = None
        if read_email is None:
            read_email = v.email_reader(acc)
        read_bs = v.bodystructure_reader(acc) if "BODYSTRUCTURE" in names else None
        plain = [u for u in uids if u not in recent] if recent else uids
        if plain:
            out, rep, fallback = _fetchfmt.fetch_simple(
                read_email, v.index_reader(acc), plain, snap.uids, snap.eids,
                names, flags, condstore, utf8, read_blob, read_bs)
            if reported is not None:
                reported.update(rep)
        else:
            out, rep, fallback = [], {}, []
        if recent:
            out_r, rep_r, fallback_r = _fetchfmt.fetch_simple(
                read_email, v.index_reader(acc),
                [u for u in uids if u in recent] if plain else uids,
                snap.uids, snap.eids, names, functools.partial(_with_recent, flags),
                condstore, utf8, read_blob, read_bs)
            if reported is not None:
                reported.update(rep_r)
            fallback = fallback + fallback_r
            if not plain and not fallback:
                return out_r      # every message recent (the session's new mail)
        elif not fallback:
            return out
        if fallback_to is not None:      # left out: the merge below skips them
            fallback_to.extend(fallback)
            fallback = []
        # RFC 6858 downgrades (and records the hot path does not read) go
        # through the loop below, merged back in UIDS order
        merged = []
        answered = iter(out)
        answered_r = iter(out_r) if recent else None
        slow = set(fallback)
        for u in uids:
            if u in slow:
                merged.extend(build_fetch(v, acc, sel, [u], items, condstore, reported, utf8,
                                          simple=False))
            elif recent and u in rep_r:
                merged.append(next(answered_r))
            elif u in rep:
                merged.append(next(answered))
        return merged

    plan = _FetchPlan(v, acc, items)
    out = []
    for u in uids:
        m = _fetch_message(v, acc, sel, u, items, condstore, reported, utf8, plan)
        if m is not None:
            out.append(b"".join(_message_segments(*m)))
    return out


def _slice_answer(sel: SelectedMailbox, uids: list[int], names: list, flags,
                  recent: _StoreRecent | None, read_email, late: list[int]) -> bytes:
    """The FETCH lines of one slice of a streamed STORE (_store_streamed),
    formatted from the records its transaction left (READ_EMAIL: the get of
    the slice's emailrec RecordRun, or of a dict) into one
    buffer by fetchfmt.fetch_upto, \\Recent added as RECENT says: the
    bytes build_fetch gives (joined), with the UIDs the compiled formatter
    leaves to the Python path appended to LATE, unanswered."""
    if recent is not None and flags is not None and recent.covers(uids):
        flags, recent = functools.partial(_with_recent, flags), None     # all recent
    elif recent is not None:
        recent = recent.all()
    out = []
    i, n = 0, len(uids)
    while i < n:
        # (the modseqs told go straight into the session's dict)
        chunk, _rep, i, fell = _fetchfmt.fetch_upto(
            read_email, _no_index, uids, i, sel.snap.uids, sel.snap.eids, names, flags,
            False, True, None, STORE_SLICE_BYTES, recent, None, sel.reported)
        out.append(chunk)
        if fell:
            late.append(uids[i])
            i += 1
    return out[0] if len(out) == 1 else b"".join(out)


class _StoreRecent:
    """The session's \\Recent UIDs for a streamed STORE's slices: a slice
    within its one recent range (the usual: every message new to the
    session), nothing gone, is all recent, told without a set of 10,000
    UIDs; else the set, built once per command."""

    __slots__ = ("sel", "uids")

    def __init__(self, sel: SelectedMailbox):
        self.sel = sel
        self.uids: set[int] | None = None

    def covers(self, uids: list[int]) -> bool:
        """Every UID of UIDS (ascending) is recent."""
        r = self.sel.recent
        return bool(uids) and len(r) == 1 and not self.sel.gone and \
            r[0][0] <= uids[0] and uids[-1] < r[0][1]

    def all(self) -> set[int]:
        if self.uids is None:
            self.uids = set(self.sel.recent_uids())
        return self.uids


class _Spellings:
    """View.keyword_spellings for flags_list, read a keyword at a time when
    a FLAGS answer first shows it (a FETCH shows a few keywords; the account
    may have used many): the same answers within one view.  STORE: with
    VIEW None, each keyword is read in a view of its own (a streamed STORE
    holds no view across its slices: the writer may need the readers gone
    to grow the map; its transaction holds the write lock meanwhile, so
    every view sees the same spellings)."""

    __slots__ = ("view", "acc", "known", "store", "table")

    def __init__(self, view, acc: int, store=None):
        self.view = view
        self.acc = acc
        self.known: dict[str, str | None] = {}
        self.store = store
        # the account's whole table when this worker holds it for VIEW's
        # version (View.keyword_spellings_if_cached: one counter read, looked
        # up at the first keyword not known yet); None: a read per keyword
        self.table: dict[str, str] | None | bool = False

    def get(self, keyword: str, default=None):
        try:
            s = self.known[keyword]
        except KeyError:
            table = self.table
            if table is False and self.view is not None:
                table = self.table = self.view.keyword_spellings_if_cached(self.acc)
            if type(table) is dict:
                s = self.known[keyword] = table.get(keyword)
            elif self.view is None:
                with self.store.view() as v:
                    s = self.known[keyword] = v.keyword_spelling(self.acc, keyword)
            else:
                s = self.known[keyword] = self.view.keyword_spelling(self.acc, keyword)
        return default if s is None else s

    def __bool__(self) -> bool:
        return True


def _no_index(_blob):
    """A message index reader that finds nothing (a STORE's answer needs none)."""
    return None


def _with_recent(flags, keywords) -> bytes:
    """FLAGS value of a message \\Recent in this session: FLAGS's, plus it."""
    fl = flags(keywords)
    return fl[:-1] + (b" \\Recent)" if len(fl) > 2 else b"\\Recent)")


# FETCH items answered from the email record alone, the same for a message
# and its downgraded form
_NO_CONTENT = frozenset(("UID", "FLAGS", "MODSEQ", "INTERNALDATE", "EMAILID", "THREADID",
                         "SAVEDATE"))


class _FetchPlan:
    """What the Python FETCH loop needs to know once per answer."""

    def __init__(self, v, acc: int, items):
        self.need_index = any(
            isinstance(i, ev.FetchItem) and i.name in (
                "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.HEADER", "RFC822.TEXT")
            or isinstance(i, (ev.FetchBody, ev.FetchBinarySize, ev.FetchPreview))
            for i in items)
        self.want_flags = any(isinstance(i, ev.FetchItem) and i.name == "FLAGS" for i in items)
        self.spell = _Spellings(v, acc) if self.want_flags else None
        self.need_members = any(isinstance(i, ev.FetchItem) and i.name == "SAVEDATE"
                                for i in items)
        self.flag_cache: dict[tuple, bytes] = {}
        # ENVELOPE/BODYSTRUCTURE/BODY come from the index with one header read
        self.wire_names = tuple(n for n in ("ENVELOPE", "BODYSTRUCTURE", "BODY")
                                if any(isinstance(i, ev.FetchItem) and i.name == n
                                       for i in items))
        self.wire_fields = tuple(n.lower() for n in self.wire_names)
        self.has_modseq = any(isinstance(i, ev.FetchItem) and i.name == "MODSEQ"
                              for i in items)
        # items that read the message (its size, bytes or index): a client
        # without UTF8=ACCEPT gets those of the downgraded message (RFC 6858)
        self.need_content = any(not isinstance(i, ev.FetchItem) or i.name not in _NO_CONTENT
                                for i in items)
        # {(acc, blob): _downgraded result, ("index", acc, blob): decoded
        # index} computed off the loop for this answer (fetch_chunks'
        # consumer); None: downgrade and decode on the loop
        self.downgrades: dict | None = None
        # items that decode the whole index (require_index)
        self.need_mi = any(
            isinstance(i, ev.FetchBody) and (i.section.part or i.binary)
            or isinstance(i, (ev.FetchBinarySize, ev.FetchPreview)) for i in items)
        # id(FetchBody item of ITEMS) -> its name in the answer (b"BODY[1.MIME]")
        self.body_names: dict[int, bytes] = {}
        # the HEADER.FIELDS(.NOT) items, by name in the answer: (section,
        # field names, NOT); a message's header (of each section) is split
        # once for all of them (_fields_of), whatever their number
        self.fields: dict[bytes, tuple[str, tuple, bool]] = {}
        # header bytes split on the loop for them since fetch_chunks' last
        # chunk (FETCH_SPLIT_WORK)
        self.split = 0
        for i in items:
            if isinstance(i, ev.FetchBody) and not i.binary and i.section.text in _HEADER_FIELDS:
                name = self.body_names[id(i)] = b"BODY[" + _section_name(i) + b"]"
                if name not in self.fields:     # (the first of a name is answered: whole)
                    self.fields[name] = (".".join(str(p) for p in i.section.part),
                                         tuple(i.section.fields),
                                         i.section.text == "HEADER.FIELDS.NOT")


class _Big:
    """A literal too big to copy into its response line: streamed in pieces.
    Its bytes are DATA[START:END] (a <partial> is a window into its section,
    never a copy of it)."""

    __slots__ = ("head", "data", "start", "end")

    def __init__(self, head: bytes, data, start: int = 0, end: int | None = None):
        self.head = head
        self.data = data
        self.start = start
        self.end = len(data) if end is None else end


def _message_segments(seq: int, pieces: list, chunk: int = FETCH_BUFFER):
    """The bytes of one ``* n FETCH (...)`` response, in pieces of about CHUNK
    bytes where a literal is bigger than that; joined they are exactly
    ``b"* n FETCH (" + b" ".join(pieces) + b")\r\n"``."""
    text = [b"* %d FETCH (" % seq]
    for k, p in enumerate(pieces):
        if k:
            text.append(b" ")
        if type(p) is _Big:
            text.append(p.head)
            yield b"".join(text)
            text = []
            data, end = p.data, p.end
            for off in range(p.start, end, chunk):
                yield data[off:min(off + chunk, end)]
        else:
            text.append(p)
    text.append(b")\r\n")
    yield b"".join(text)


def _fetch_message(v, acc: int, sel: SelectedMailbox, u: int, items, condstore: bool,
                   reported: dict | None, utf8: bool, plan: _FetchPlan,
                   big: int | None = None):
    """(seq, pieces) of one message's FETCH response, or None when it is gone.

    With BIG, every literal is a ``_Big`` piece (its head and its data, not
    copied into one bytes object: the caller joins the pieces once, or sends
    them in pieces when ``_literal_bytes`` of the pieces passes BIG);
    identical sections share one bytes object."""
    snap_uids = sel.snap.uids
    i = bisect.bisect_left(snap_uids, u)
    if i >= len(snap_uids) or snap_uids[i] != u:
        return None
    eid = sel.snap.eids[i]
    seq = i + 1
    em = load_email(v, acc, eid, members=plan.need_members)
    if em is None:
        return None   # expunged meanwhile: RFC 9051 lets us omit it
    rec = em.record
    raw = None
    mi = None
    size = rec.size
    used = []       # keys of plan.downgrades this message took (dropped once answered)
    if not utf8 and rec.flags & FLAG_UTF8_HEADERS and plan.need_content:
        key = (acc, em.blob)
        ready = plan.downgrades
        hit = None
        if ready is not None and key in ready:
            hit = ready[key]        # None: it was gone from the worker's view
            used.append(key)
        elif ready is not None and rec.size >= storeio.OFFLOOP_BYTES \
                and key not in _DOWNGRADED:
            return _DowngradeFirst(key, _downgrade_off_loop, acc, eid)
        raw, idx, mi = hit if hit is not None else _downgraded(v, acc, em)
        size = len(raw)
    else:
        idx = em.index_data if plan.wire_names else None   # sections read it via require_index
        if plan.need_mi and plan.downgrades is not None:
            data = em.index_data
            if data is not None and len(data) >= OFFLOOP_INDEX_BYTES:
                key = ("index", acc, em.blob)
                if key not in plan.downgrades:
                    return _DowngradeFirst(key, _index_off_loop, acc, em.blob)
                mi = plan.downgrades[key]   # None: require_index tells why
                used.append(key)
    wire_names = plan.wire_names
    wire = dict(zip(wire_names, mindex.index_fields(idx, plan.wire_fields))) \
        if wire_names else None
    fields = None       # {name: data} of the HEADER.FIELDS items (_fields_of)
    # what this answer holds besides the message (FETCH_MESSAGE_HOLD)
    hold = _Hold(FETCH_MESSAGE_HOLD + FETCH_MESSAGE_HOLD_FACTOR * size)
    if plan.fields:
        if raw is None:
            raw = bytes(v.blob(acc, rec.blob))
        if mi is None and any(sec for sec, _n, _neg in plan.fields.values()):
            mi = em.require_index()
        spans = _header_spans(plan.fields, mi, em)
        split = sum(e - s for s, e in filter(None, spans.values()))
        if plan.downgrades is not None and split >= fieldspans.OFFLOOP_BYTES:
            # a big header: split in the worker pool (0.12 s for 4 MB of
            # tiny fields; the lists then cost their answers)
            key = ("fields", acc, em.blob)
            if key not in plan.downgrades:
                return _DowngradeFirst(key, _fields_off_loop, raw, spans, plan.fields,
                                       hold.limit)
            fields = plan.downgrades[key]
            used.append(key)
        else:
            plan.split += split
            fields = _fields_of(raw, spans, plan.fields, hold.limit)
        # the answers, made at most one past the bound (_fields_of)
        hold.add(sum(len(d) for d in fields.values() if d is not None))
    sections: dict = {}
    # a section's data before any <partial>, once per message: items that
    # differ only in their partial range (BINARY[1]<0.1> BINARY[1]<1.1> ...)
    # or repeat a BINARY.SIZE each cut, decoded or searched the whole part
    # again (thousands of items times a 64 MB part)
    whole: dict = {}

    # a plain literal's data with NUL replaced (_no_nul), once per section
    clean: dict = {}

    def lit(name: bytes, data, binary: bool = False, start: int = 0, end: int | None = None):
        """NAME and the literal of DATA[START:END] (binary: literal8; else
        DATA carries no NUL: _no_nul)."""
        if end is None:
            end = len(data)
        if big is not None:     # the body is not copied into its line (perf4-body)
            return _Big(name + b" " + ((b"~{%d}\r\n" if binary else b"{%d}\r\n") % (end - start)),
                        data, start, end)
        if start or end != len(data):
            data = data[start:end]
        return name + b" " + literal(data, binary)

    pieces = []
    for it in items:
        if isinstance(it, ev.FetchItem):
            n = it.name
            if n == "UID":
                pieces.append(b"UID %d" % u)
            elif n == "FLAGS":
                kt = tuple(rec.keywords)
                fl = plan.flag_cache.get(kt)
                if fl is None:
                    fl = plan.flag_cache[kt] = b"FLAGS " + flags_list(kt, plan.spell)
                if sel.show_recent and sel.recent and sel.is_recent(u):
                    fl = fl[:-1] + (b" \\Recent)" if kt else b"\\Recent)")
                pieces.append(fl)
            elif n == "MODSEQ":
                pieces.append(b"MODSEQ (%d)" % rec.last_ms)
            elif n == "INTERNALDATE":
                pieces.append(b"INTERNALDATE " + _internaldate(rec))
            elif n == "RFC822.SIZE":
                pieces.append(b"RFC822.SIZE %d" % size)
            elif n == "ENVELOPE":
                pieces.append(b"ENVELOPE " + wire["ENVELOPE"])
            elif n == "BODYSTRUCTURE":
                pieces.append(b"BODYSTRUCTURE " + wire["BODYSTRUCTURE"])
            elif n == "BODY":
                pieces.append(b"BODY " + wire["BODY"])
            elif n == "EMAILID":
                pieces.append(f"EMAILID ({ids.email_id(eid)})".encode())
            elif n == "THREADID":
                pieces.append(f"THREADID ({ids.thread_id(rec.thread)})".encode())
            elif n == "SAVEDATE":
                mem = rec.member(sel.mbx)
                pieces.append(b"SAVEDATE " + format_datetime(
                    datetime.fromtimestamp(mem.savedate, timezone.utc)) if mem
                    else b"SAVEDATE NIL")
            elif n in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                if raw is None:
                    raw = bytes(v.blob(acc, rec.blob))
                if n == "RFC822":
                    data = raw
                else:
                    he = mi.header_end if mi is not None else em.header_end()
                    data = raw[:he] if n == "RFC822.HEADER" else raw[he:]
                    hold.add(len(data))
                clean_data = _no_nul(data)   # never NUL in a plain literal (RFC 9051 4.3)
                if clean_data is not data:
                    hold.add(len(clean_data))
                pieces.append(lit(n.encode(), clean_data))
        elif isinstance(it, ev.FetchBody):
            if raw is None:
                raw = bytes(v.blob(acc, rec.blob))
            name = plan.body_names.get(id(it))
            if name is None:      # once per answer (perf4-body)
                name = plan.body_names[id(it)] = \
                    (b"BINARY[" if it.binary else b"BODY[") + _section_name(it) + b"]"
            key = (name, it.partial)
            hit = sections.get(key)
            if hit is not None:       # (name, data, binary, start, end): counted again by lit()
                pieces.append(lit(*hit) if hit[1] is not None else hit[0] + b" NIL")
                continue
            data = whole.get(name, _NOT_YET)
            if data is _UNKNOWN_CTE:
                raise No("unknown Content-Transfer-Encoding", "UNKNOWN-CTE")
            if data is _NOT_YET:
                if fields is not None and name in fields:
                    data = fields[name]
                elif not it.section.part and not it.section.text and not it.binary:
                    data = raw          # BODY[]: the stored bytes, no index needed
                elif not it.section.part and not it.binary and mi is None:
                    # the whole message's header or text: its end is enough
                    data = _top_section(raw, em.header_end(), it.section)
                else:
                    if mi is None:
                        mi = em.require_index()
                    data = _fetch_section(raw, mi, it)
                if data is not None and data is not raw and not (
                        fields is not None and name in fields):
                    hold.add(len(data))     # (the fields are counted above)
                whole[name] = data
            if data is None:
                sections[key] = (name, None, False, 0, 0)
                pieces.append(name + b" NIL")
                continue
            if not it.binary:
                # never NUL in a plain literal (RFC 9051 4.3): a BINARY item
                # keeps it and becomes a literal8 when its range has one
                src = clean.get(name)
                if src is None:
                    src = clean[name] = _no_nul(data)
                    if src is not data:
                        hold.add(len(src))
                data = src
            start, end = 0, len(data)
            if it.partial is not None:
                off, ln = it.partial
                start, end = min(off, end), min(off + ln, end)
                name += b"<%d>" % off
            binary = it.binary and data.find(b"\0", start, end) >= 0
            sections[key] = (name, data, binary, start, end)
            pieces.append(lit(name, data, binary, start, end))
        elif isinstance(it, ev.FetchBinarySize):
            if raw is None:
                raw = bytes(v.blob(acc, rec.blob))
            if mi is None:
                mi = em.require_index()
            sec = ".".join(str(p) for p in it.part)
            bname = b"BINARY[" + sec.encode() + b"]"      # a BINARY item's name
            data = whole.get(bname, _NOT_YET)
            if data is _NOT_YET:
                try:
                    data = mindex.decoded_part(raw, mi, sec)
                except mindex.UnknownCTE:
                    data = _UNKNOWN_CTE
                if data is not None and data is not _UNKNOWN_CTE and data is not raw:
                    hold.add(len(data))
                whole[bname] = data
            pieces.append(b"BINARY.SIZE[" + sec.encode() + b"] " +
                          (b"%d" % len(data) if data is not None and data is not _UNKNOWN_CTE
                           else b"NIL"))
        elif isinstance(it, ev.FetchPreview):
            if mi is None:
                mi = em.require_index()
            pieces.append(b"PREVIEW " + nstring(mi.preview.encode("utf-8")))
    if condstore and not plan.has_modseq and plan.want_flags:
        # RFC 7162 3.1.4.1: once CONDSTORE is on, FETCH FLAGS carries MODSEQ
        pieces.append(b"MODSEQ (%d)" % rec.last_ms)
    if reported is not None:
        reported[u] = rec.last_ms
    for key in used:
        plan.downgrades.pop(key, None)
    return seq, pieces


def _header_spans(jobs: dict, mi, em: LoadedEmail) -> dict:
    """{section: (start, end) of its header in the raw message, or None
    when it has none} for the sections of the HEADER.FIELDS items JOBS
    (_FetchPlan.fields); MI the message's index (needed for numbered
    sections) or None."""
    out = {}
    for sec, _names, _neg in jobs.values():
        if sec not in out:
            out[sec] = mindex.header_span(mi, sec) if sec else \
                (0, mi.header_end if mi is not None else em.header_end())
    return out


def _fields_of(raw: bytes, spans: dict, jobs: dict, limit: int | None = None) -> dict:
    """{name: BODY[...HEADER.FIELDS (...)] data, or None for a section
    without a header} of the HEADER.FIELDS items JOBS (_FetchPlan.fields)
    of the message RAW, each section's header (SPANS: _header_spans) split
    once for all of them (mime.fieldspans: each list then costs its output
    and its names, RFC 9051 6.4.5).  Stops once the answers pass LIMIT
    bytes (the caller's _Hold then refuses the FETCH): hundreds of
    HEADER.FIELDS.NOT lists of a 16 MB header would be gigabytes."""
    wanted: dict[str, list] = {}        # section -> the names of all its lists
    lists: dict[str, int] = {}
    for sec, names, _neg in jobs.values():
        wanted.setdefault(sec, []).extend(names)
        lists[sec] = lists.get(sec, 0) + 1
    split: dict = {}
    out = {}
    made = 0
    for name, (sec, names, neg) in jobs.items():
        if limit is not None and made > limit:
            break
        span = spans[sec]
        if span is None:
            out[name] = None
        elif lists[sec] == 1:       # the section's one list: one pass, no spans kept
            out[name] = fieldspans.header_fields(raw, *span, names, neg)
        else:
            fs = split.get(sec)
            if fs is None:
                fs = split[sec] = fieldspans.FieldSpans(raw, *span, wanted[sec])
            out[name] = fs.select(raw, names, neg)
        made += len(out[name] or b"")
    return out


def _fields_off_loop(_v, raw: bytes, spans: dict, jobs: dict, limit: int) -> dict:
    """_fields_of in a worker thread (storeio.read), for a big header."""
    return _fields_of(raw, spans, jobs, limit)


class _Hold:
    """The bytes one message's FETCH answer made besides the message, against
    its bound (FETCH_MESSAGE_HOLD): past it the command is refused."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int):
        self.held = 0
        self.limit = limit

    def add(self, n: int) -> None:
        self.held += n
        if self.held > self.limit:
            raise No("the answer for one message would hold more than %d MB: ask for "
                     "fewer sections or header field lists per FETCH"
                     % (self.limit >> 20), "LIMIT")


_NOT_YET = object()      # _fetch_message's whole: not computed yet
_UNKNOWN_CTE = object()  # ... a BINARY section of an unknown transfer encoding


def _drop_written(out: list, n: int) -> tuple[int, int]:
    """Drop the first N bytes of the pieces in OUT (written to the socket):
    (how many pieces went whole, the bytes left)."""
    k = 0
    while k < len(out) and n >= len(out[k]):
        n -= len(out[k])
        k += 1
    del out[:k]
    if n:
        out[0] = memoryview(out[0])[n:]
    return k, sum(map(len, out))


class FetchProgress:
    """Told by ``fetch_chunks`` before each chunk: ``more`` is False when
    that chunk is the answer's last (the session then does not wait for the
    FETCH turn just to learn the answer is complete).  ``modseq``: None, or
    (asked for with -1) the account's highest modseq as read in the view
    the last chunk of an answer of simple items was built in."""
    __slots__ = ("more", "modseq")

    def __init__(self):
        self.more = True
        self.modseq: int | None = None


def fetch_chunks(store, acc: int, sel: SelectedMailbox, uids, items, condstore: bool,
                 reported: dict | None = None, utf8: bool = True, *,
                 budget: int = FETCH_CHUNK, progress: FetchProgress | None = None,
                 read_email=None, downgrades: dict | None = None):
    """The FETCH answer for UIDS as byte chunks of about BUDGET bytes.

    Joined, the chunks are exactly ``b"".join(build_fetch(...))``.  Messages
    are built a slice at a time (at most FETCH_SLICE, fewer when they are
    big), each slice under its own store view, closed before the chunk is
    yielded: the consumer may wait for its socket between chunks without
    holding an LMDB snapshot.  A literal bigger than BUDGET is yielded in
    pieces of BUDGET bytes; the message's raw bytes are held once.  PROGRESS,
    when given, says before each chunk whether more follow.  READ_EMAIL: as
    for build_fetch (the records must be those of every slice's view).
    DOWNGRADES: a dict, when the consumer downgrades big messages off the
    loop: for a message to downgrade (UTF-8 header, no UTF8=ACCEPT) of at
    least storeio.OFFLOOP_BYTES not downgraded yet, or whose index of at
    least OFFLOOP_INDEX_BYTES the items decode, or whose headers split by
    HEADER.FIELDS items come to fieldspans.OFFLOOP_BYTES, a
    ``_DowngradeFirst`` is yielded (outside any view) instead of bytes, and
    the message is retried once the consumer put the result in DOWNGRADES."""
    if progress is None:
        progress = FetchProgress()
    n_all = len(uids)
    facts = _fetch_facts(items if type(items) is tuple else tuple(items))
    simple = facts.simple
    if simple is not None:
        # the session's \\Recent UIDs once per answer, not once per slice
        if not isinstance(uids, list):
            uids = list(uids)
        recent = sel.recent_among(uids) if sel.show_recent and sel.recent and \
            "FLAGS" in simple else None
        yield from _chunks_upto(store, acc, sel, uids, items, facts, condstore, reported,
                                utf8, budget, progress, read_email, recent or None,
                                downgrades)
        return
    i = 0
    buf: list[bytes] = []
    held = 0
    plan = None
    while i < n_all:
        pending = None
        first = None
        with store.view() as v:
            if plan is None:
                plan = _FetchPlan(v, acc, items)   # one per answer, as one view had
                plan.downgrades = downgrades
            elif plan.spell is not None:
                plan.spell.view = v     # spellings not read yet come from this slice's view
            stop = min(n_all, i + FETCH_SLICE)
            plan.split = 0
            work = budget * FETCH_SPLIT_WORK
            while i < stop and held < budget and plan.split < work:
                m = _fetch_message(v, acc, sel, uids[i], items, condstore, reported, utf8,
                                   plan, big=budget)
                if type(m) is _DowngradeFirst:
                    first = m       # message i again once it is downgraded
                    break
                i += 1
                if m is None:
                    continue
                if _literal_bytes(m[1]) > budget:
                    pending = m
                    break
                # the pieces, joined once below: a body is not copied into
                # its line first (perf4-body)
                for data in _message_segments(*m, 1 << 62):
                    buf.append(data)
                    held += len(data)
        if buf and (held >= budget or pending is not None or i >= n_all
                    or first is not None or plan.split >= work):
            progress.more = pending is not None or i < n_all
            yield b"".join(buf)
            buf, held = [], 0
        if pending is not None:
            yield from _pieces(pending, budget, progress, i < n_all)
        if first is not None:
            progress.more = True
            yield first
    if buf:
        progress.more = False
        yield b"".join(buf)
    progress.more = False


def _chunks_upto(store, acc: int, sel: SelectedMailbox, uids, items, facts: "_FetchFacts",
                 condstore: bool, reported: dict | None, utf8: bool, budget: int,
                 progress: FetchProgress, read_email, recent: set | None,
                 downgrades: dict | None = None):
    """fetch_chunks for SIMPLE items (RECENT: the UIDs whose FLAGS show
    \\Recent, or None): each chunk is one ``fetchfmt.fetch_upto`` call under
    its own store view (the responses joined where they are formatted,
    perf5-body); a message it
    leaves to the Python path (a downgrade, a body bigger than BUDGET) is
    answered by ``_fetch_message`` in that view, and sent in pieces when its
    literals are bigger than BUDGET."""
    uids = uids if isinstance(uids, list) else list(uids)
    n_all = len(uids)
    simple = facts.simple
    want_blob, want_index = facts.want_blob, facts.want_index
    plan = None
    i = 0
    while i < n_all:
        pending = None
        first = None
        with store.view() as v:
            flags = (functools.partial(flags_list, spell=_Spellings(v, acc))
                     if "FLAGS" in simple else None)
            chunk, rep, i, fell = _fetchfmt.fetch_upto(
                read_email if read_email is not None else v.email_reader(acc),
                v.index_reader(acc) if want_index else _no_index, uids, i, sel.snap.uids,
                sel.snap.eids, simple, flags,
                condstore, utf8, v.blob_reader(acc) if want_blob else None, budget, recent,
                v.bodystructure_reader(acc) if facts.want_bs else None)
            if reported is not None:
                reported.update(rep)
            if fell:
                if plan is None:
                    plan = _FetchPlan(v, acc, items)
                    plan.downgrades = downgrades
                elif plan.spell is not None:
                    plan.spell.view = v
                m = _fetch_message(v, acc, sel, uids[i], items, condstore, reported, utf8,
                                   plan, big=budget)
                if type(m) is _DowngradeFirst:
                    first, m = m, None      # message i again once it is downgraded
                else:
                    i += 1
                if m is not None:
                    if _literal_bytes(m[1]) > budget:
                        pending = m
                    else:
                        chunk += b"".join(_message_segments(*m, 1 << 62))
            if progress.modseq is not None:
                # the account's modseq in the view of the answer's last
                # chunk (send_fetch's CURRENT), -1 before it
                progress.modseq = v.highest_modseq(acc) \
                    if i >= n_all and pending is None else -1
        if chunk:
            progress.more = pending is not None or i < n_all
            yield chunk
        if pending is not None:
            yield from _pieces(pending, budget, progress, i < n_all)
        if first is not None:
            progress.more = True
            yield first
    progress.more = False


def _pieces(m, budget: int, progress: FetchProgress, more: bool):
    """Message M's response (seq, pieces) in pieces of about BUDGET bytes;
    PROGRESS says more follow after its last piece when MORE."""
    segs = _message_segments(*m, budget)
    seg = next(segs)
    for after in segs:          # one ahead, to know which is the last
        progress.more = True
        yield seg
        seg = after
    progress.more = more
    yield seg


def _literal_bytes(pieces: list) -> int:
    """Bytes of the ``_Big`` literals among one message's FETCH pieces."""
    return sum(p.end - p.start for p in pieces if type(p) is _Big)


def _no_nul(data: bytes) -> bytes:
    """A non-binary literal never carries NUL (RFC 3501 4.3, RFC 9051 4.3):
    BODY[...]/RFC822* of content with NUL bytes send each NUL as 0x80, as
    Dovecot does.  The length stays the same, so RFC822.SIZE, partial
    ranges and BODYSTRUCTURE sizes still agree; BINARY[] (literal8) is the
    way to get the exact bytes."""
    return data.replace(b"\0", b"\x80") if b"\0" in data else data


def _fetch_section(raw: bytes, mi, it) -> bytes | None:
    s = it.section
    sec = ".".join(str(p) for p in s.part)
    if it.binary:
        try:
            return mindex.decoded_part(raw, mi, sec)
        except mindex.UnknownCTE:
            raise No("unknown Content-Transfer-Encoding", "UNKNOWN-CTE")
    text = s.text or ""
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        hdr = mindex.part_bytes(raw, mi, sec, "HEADER")
        if hdr is None:
            return None
        return mindex.header_fields(hdr, list(s.fields), text.endswith(".NOT"))
    return mindex.part_bytes(raw, mi, sec, text)


def _top_section(raw: bytes, header_end: int, s) -> bytes | None:
    """BODY[HEADER], [TEXT], [HEADER.FIELDS (...)] or [HEADER.FIELDS.NOT (...)]
    of the whole message (section S without part numbers) from RAW and where
    its header ends: what _fetch_section answers from the whole index."""
    text = s.text
    if text in _HEADER_FIELDS:
        return mindex.header_fields(raw[:header_end], list(s.fields),
                                    text == "HEADER.FIELDS.NOT")
    if text == "HEADER":
        return raw[:header_end]
    if text == "TEXT":
        return raw[header_end:]
    return None         # MIME needs a part number


# An RFC 5092 IMAP URL naming one message (or a section or part of it), as
# CATENATE takes it (RFC 4469 5): absolute, or relative to the selected
# mailbox.  Linear on any input: no quantified group holds another quantifier,
# and each repeat must be followed by a character it cannot match ("@" after
# the user, "/" after the host, ";" or "/;" after the mailbox), so a
# backtracking step fails at once instead of rescanning the rest.
_URL = re.compile(
    r"^(?:imap://"
    r"(?:(?P<user>[^/;@?\[\]]+)(?:;AUTH=[^/;@?]+)?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^/;@?:\[\]]+)(?::(?P<port>[0-9]{1,5}))?/|/)?"
    r"(?P<mailbox>[^;?]*?)"
    r"(?:;UIDVALIDITY=(?P<uidvalidity>[0-9]{1,10}))?/;UID=(?P<uid>[0-9]{1,10})"
    r"(?:/;SECTION=(?P<section>[^/;?]+))?"
    r"(?:/;PARTIAL=(?P<partial>[0-9]{1,20}(?:\.[0-9]{1,20})?))?$", re.I)


def _absent_uids(sel, numset) -> list[tuple[int, int]]:
    """RFC 7162 3.2.5.2: the change log no longer reaches the client's modseq,
    so every UID of NUMSET (no set: 1:UIDNEXT-1) not in the mailbox is
    reported vanished, as ranges however large."""
    top = max(sel.uidnext - 1, sel.max_uid())
    if top < 1:
        return []
    want = numset.normalized(top, sel.saved_result) if numset is not None else [(1, top)]
    want = [(lo, min(hi, top)) for lo, hi in want if lo <= top]
    return list(absent_ranges(want, sel.uids))
