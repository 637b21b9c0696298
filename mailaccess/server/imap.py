"""IMAP service: listeners, TLS, STARTTLS, COMPRESS, the read loop, IDLE.

Thin Trio glue around the sans-IO receiver/parser (proto/imap) and the
session (imap_session.py).  One task per connection reads, frames, parses,
lets the session handle the command and sends what it produced; an idle
logged-in connection is that one task and nothing else (docs/architecture.md,
"Memory").  IDLE waits for a DONE line from the client in that same task,
parked until its socket is readable or the bus wakes it for a change to
the selected mailbox (server/idle_wait.py); the session catches up and
parks again; nothing polls (over TLS or COMPRESS, where bytes may wait in
the stream rather than on the socket, a watcher task does the catching up
while IDLE lasts).  From the session's first NOTIFY a second task, the
NOTIFY task (imap_notifier.py), sends RFC 5465 news between commands; it
runs in the service's nursery, bound to the connection by a cancel scope.
The two share one writer: ``send`` holds a lock per connection (made by the
first write that cannot go straight to the socket), has a write deadline
and is never cancelled half-way; and ``turn`` (made with the NOTIFY task) is
held by the reader from a parsed command to its tagged line, so news never
falls inside a command's responses.  What the IMAP service keeps for all
its connections (shared sequence maps, sessions per user, the receivers'
bounds) is ``ImapService``, not the process-wide ``ServerContext``.  The
bytes it writes itself come from proto/imap/serialize.
"""
from __future__ import annotations

import base64
import logging
import socket
import zlib
import errno
import functools
from os import read as _os_read, write as _os_write, writev as _os_writev

import trio

from .. import sasl
from ..proto.imap import commands as imap_commands
from ..proto.imap import events as ev
from ..proto.imap import frames
from ..proto.imap import serialize as S
from ..proto.imap import state as st
from ..proto.imap.errors import CommandError
from ..proto.imap.receiver import LiteralBudget, Limits, Receiver, preauth_limits
from .app import ServerContext, bound_addresses, open_listeners, serve_connections
from . import idle_wait
from .imap_notifier import Notifier
from .imap_session import LOGOUT, SELECTED, Bad, ImapSession, No, SharedViews
from .imap_silence import SilenceWatch
from .tls import server_context

NEED_DATA, CONNECTION_CLOSED = frames.NEED_DATA, frames.CONNECTION_CLOSED
_INF = float("inf")
_wait_readable = trio.lowlevel.wait_readable
_checkpoint = trio.lowlevel.checkpoint

log = logging.getLogger("mailaccess.imap")

RECV = 65536
#: at most this many pieces go to one writev (Linux IOV_MAX is 1024)
_IOV_MAX = 512
#: seconds one write may take (a client that does not read is dropped)
WRITE_TIMEOUT = 120
#: seconds a TLS handshake may take (port 993, and after STARTTLS)
HANDSHAKE_TIMEOUT = 30


class DeflateStream(trio.abc.Stream):
    """COMPRESS=DEFLATE (RFC 4978): raw deflate both ways over another stream."""

    def __init__(self, inner: trio.abc.Stream):
        self.inner = inner
        self._c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._d = zlib.decompressobj(-15)

    async def send_all(self, data) -> None:
        out = self._c.compress(bytes(data)) + self._c.flush(zlib.Z_SYNC_FLUSH)
        await self.inner.send_all(out)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes=None) -> bytes:
        while True:
            if self._d.unconsumed_tail:
                data = self._d.decompress(self._d.unconsumed_tail, RECV)
            else:
                raw = await self.inner.receive_some(RECV)
                if not raw:
                    return b""
                data = self._d.decompress(raw, RECV)
            if data:
                return data

    def feed(self, compressed: bytes) -> bytes:
        return self._d.decompress(compressed)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ImapService:
    """The IMAP service's own state, shared by its connections (one per server).

    ``views``: the latest sequence map of each mailbox and recent catch-up
    answers (the memory and fan-out budget of IDLE).  ``sessions``: account id
    -> logged-in sessions, for ``imap.max_sessions_per_user``.
    ``connections`` (all of them) and ``preauth_by_ip`` (client address ->
    connections not logged in yet), for ``imap.max_connections`` and
    ``imap.max_preauth_per_ip``.  Kept here so the process-wide
    ServerContext carries nothing IMAP-specific.
    """

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.views = SharedViews()
        self.sessions: dict[int, int] = {}
        self.connections = 0
        self.preauth_by_ip: dict[str, int] = {}
        #: account id -> the literal bytes its connections hold (receiver.py)
        self.literal_budgets: dict[int, LiteralBudget] = {}
        self._greetings: dict[tuple, bytes] = {}
        #: where the connections' NOTIFY tasks run (set by ``serve``)
        self.nursery: trio.Nursery | None = None
        self._idle_waits: idle_wait.IdleWaits | None = None
        self._silence: SilenceWatch | None = None

    # --- connection caps: a connection is counted from its accept (before
    # the TLS handshake) to its end, and as not logged in from one address
    # until its first login takes a session slot

    def literal_budget(self, acc: int) -> LiteralBudget:
        """The literal budget ACC's connections share (imap.max_literal_bytes_per_user)."""
        b = self.literal_budgets.get(acc)
        if b is None:
            b = self.literal_budgets[acc] = LiteralBudget(self.ctx.cfg.imap.literal_budget)
        return b

    def admit(self, host: str) -> bool:
        """Count a new connection from HOST; False (not counted) past a cap."""
        cfg = self.ctx.cfg.imap
        n = self.preauth_by_ip.get(host, 0)
        if self.connections >= cfg.max_connections or n >= cfg.max_preauth_per_ip:
            log.warning("IMAP connection from %s refused: %d connections, %d not logged in "
                        "from it", host or "?", self.connections, n)
            return False
        self.connections += 1
        self.preauth_by_ip[host] = n + 1
        return True

    def logged_in(self, host: str) -> None:
        """HOST's connection logged in: it no longer counts as not logged in."""
        n = self.preauth_by_ip.get(host, 1) - 1
        if n:
            self.preauth_by_ip[host] = n
        else:
            self.preauth_by_ip.pop(host, None)

    def ended(self, host: str, preauth: bool) -> None:
        """A counted connection from HOST ended (PREAUTH: never logged in)."""
        self.connections -= 1
        if preauth:
            self.logged_in(host)

    def silence(self) -> SilenceWatch | None:
        """The client-silence limit of the service's connections between
        commands (None without a nursery: then a deadline per read)."""
        w = self._silence
        if w is None and self.nursery is not None:
            w = self._silence = SilenceWatch(self.nursery, self.ctx.cfg.imap.idle_timeout)
        return w

    def idle_waits(self) -> "idle_wait.IdleWaits | None":
        """Where IDLE sessions on the plain socket park (None: not here)."""
        w = self._idle_waits
        if w is None and self.nursery is not None and idle_wait.available():
            w = self._idle_waits = idle_wait.IdleWaits(self.nursery)
        return w

    # the receivers' bounds, shared by every connection: the configured
    # ones once logged in; before, a few KB

    @functools.cached_property
    def limits(self) -> Limits:
        cfg = self.ctx.cfg.imap
        nonsync = cfg.max_literal if cfg.nonsync_literals == "plus" else 4096
        return Limits(max_line=cfg.max_line, max_literal=cfg.max_literal,
                      max_nonsync_literal=nonsync)

    @functools.cached_property
    def preauth(self) -> Limits:
        return preauth_limits(self.ctx.cfg.imap.preauth_max_command)

    def greeting(self, session: ImapSession) -> bytes:
        """The session's greeting (its capabilities depend only on the
        configuration and on how the client connected): made once per kind."""
        key = (session.secure, session.loopback)
        g = self._greetings.get(key)
        if g is None:
            g = self._greetings[key] = session.greeting()
        return g


class ImapConnection:
    """One client connection: one task (the reader), plus the NOTIFY task
    once the session sends NOTIFY, plus an IDLE watcher task only while an
    IDLE over TLS waits.  Memory (docs/architecture.md, "Memory"): an idle
    logged-in connection is this object, its session, its receiver, its
    socket and one task's coroutine frames; the trio objects a connection
    does not need yet (the writer lock, the turn lock, the NOTIFY task)
    are made when first needed, the receiver's bounds are the service's."""

    __slots__ = ("ctx", "service", "stream", "receiver", "session", "idle_timeout",
                 "write_lock", "turn", "_command_done", "notifier", "_scope",
                 "_notify_scope", "_plain", "_slot_user", "_closing", "_counted",
                 "_preauth", "__weakref__")

    def __init__(self, ctx: ServerContext, stream: trio.abc.Stream, *, secure: bool,
                 loopback: bool, service: ImapService, remote: str | None = None,
                 counted: str | None = None):
        self.ctx = ctx
        self.service = service
        self.stream = stream
        self.receiver = Receiver(limits=service.preauth)
        self.session = s = ImapSession(ctx, secure=secure, loopback=loopback,
                                       views=self.service.views)
        s.remote = _peer_host(stream) if remote is None else remote
        s.sender = self.send
        s.write_nowait = self.write_nowait
        self.idle_timeout = ctx.cfg.imap.idle_timeout
        # one writer at a time: made by the first write that cannot go
        # straight to the socket (send), kept from then on
        self.write_lock: trio.Lock | None = None
        # a command, or the NOTIFY task's news: made with the NOTIFY task
        # (until then the reader is the only one that writes between commands)
        self.turn: trio.Lock | None = None
        self._command_done: trio.Event | None = None
        # the NOTIFY task starts with the session's first NOTIFY (most
        # connections never send one): until then nothing runs beside the reader
        self.notifier: Notifier | None = None
        s.on_notify = self._start_notifier
        self._scope: trio.CancelScope | None = None         # the reader's (run)
        self._notify_scope: trio.CancelScope | None = None  # the NOTIFY task's
        self._slot_user = None
        self._closing = False   # the connection is ending (close_soon, or over)
        # the client address this connection is counted under in the
        # service's caps (None: not counted), and whether as not logged in
        self._counted = counted
        self._preauth = counted is not None
        # the plain TCP stream this connection started with (send's fast path
        # applies while it is still self.stream: not after STARTTLS or COMPRESS)
        self._plain = stream if type(stream) is trio.SocketStream else None

    @property
    def limits(self) -> Limits:
        return self.service.limits

    @property
    def preauth(self) -> Limits:
        return self.service.preauth

    @property
    def command_done(self) -> trio.Event:
        """Set (and replaced) after each command (made when someone waits)."""
        if self._command_done is None:
            self._command_done = trio.Event()
        return self._command_done

    async def send(self, data: bytes) -> None:
        """Write DATA whole: one writer at a time, within WRITE_TIMEOUT
        (trio.TooSlowError: the connection ends), and never cancelled
        half-way (a cancelled IDLE watcher or NOTIFY task would leave half
        a response on the wire).

        Fast path: on a plain TCP socket with no other write under way, the
        bytes go straight to the non-blocking socket, with no checkpoint
        between: what the kernel takes at once (a command's answer, nearly
        always) needs no lock, deadline or scheduling round.  What it does
        not take (a full socket buffer, an error) goes the full way below."""
        if not data:
            return
        lock = self.write_lock
        if self.stream is self._plain and (lock is None or not lock.locked()):
            fd = self._plain.socket.fileno()
            if fd >= 0:
                try:
                    n = _os_write(fd, data)
                except OSError:   # EAGAIN; EPIPE etc.: the full path raises it as trio does
                    n = 0
                if n >= len(data):
                    return
                if n:
                    data = memoryview(data)[n:]
        if lock is None:
            lock = self.write_lock = trio.Lock()
        async with lock:
            with trio.CancelScope(shield=True):
                with trio.fail_after(WRITE_TIMEOUT):
                    await self.stream.send_all(data)

    def write_nowait(self, parts: list) -> int | None:
        """Write PARTS (bytes-like, in order) straight to the socket, as much
        as it takes at once: the bytes written (0 when it is full), or None
        when this cannot be done without a wait (not the plain TCP stream,
        another write under way, an error: ``send`` then does it the full
        way, and raises as trio does).  A FETCH answer goes out this way as
        it is built (perf5-body), without joining its chunks first."""
        if self.stream is not self._plain:
            return None
        lock = self.write_lock
        if lock is not None and lock.locked():
            return None
        fd = self._plain.socket.fileno()
        if fd < 0:
            return None
        try:
            return _os_writev(fd, parts) if len(parts) <= _IOV_MAX \
                else _os_write(fd, b"".join(parts))
        except BlockingIOError:
            return 0
        except OSError:
            return None

    def close_soon(self) -> None:
        """End the connection (the reader and the NOTIFY task)."""
        self._closing = True
        if self._scope is not None:
            self._scope.cancel()
        if self._notify_scope is not None:
            self._notify_scope.cancel()

    def silence_over(self) -> None:
        """The client was silent for idle_timeout seconds (SilenceWatch):
        the reader ends the connection with a BYE."""
        if self._scope is not None:
            self._scope.cancel()

    def _finished(self) -> None:
        done = self._command_done
        if done is not None:
            self._command_done = None
            done.set()

    def _start_notifier(self) -> None:
        """The session's first NOTIFY: start the NOTIFY task (which takes
        over ``session.on_notify``) and tell it."""
        if self.notifier is None:
            if self.session.notify is None:
                return      # NOTIFY NONE (or UNAUTHENTICATE) with none ever set
            if self._closing:
                return      # the connection is over
            # the turn: the reader is inside a command (this one), so it
            # holds it from here to its tagged line (read_loop releases it)
            self.turn = trio.Lock()
            self.turn.acquire_nowait()
            self.notifier = Notifier(self)      # sets session.on_notify = its reset
            self._notify_scope = trio.CancelScope()
            nursery = self.service.nursery
            if nursery is None:
                raise RuntimeError("NOTIFY needs ImapService.nursery")
            nursery.start_soon(self._notify_task)
        self.notifier.reset()

    async def flush(self) -> None:
        await self.send(self.session.take_output())

    def sync_limits(self) -> None:
        """Pre-auth bounds until logged in (again after UNAUTHENTICATE)."""
        preauth = self.session.state is st.NOT_AUTHENTICATED
        want = self.preauth if preauth else self.limits
        if self.receiver.limits is not want:
            self.receiver.set_limits(want)
        budget = None if preauth else self.service.literal_budget(self.session.acc)
        if self.receiver.budget is not budget:
            self.receiver.release()
            self.receiver.budget = budget

    async def next_event(self):
        """The next receiver event, reading from the peer as needed.

        The client's silence ends the connection after ``idle_timeout``
        seconds without bytes: while this waits for bytes, the connection is
        on the service's SilenceWatch (imap_silence.py), which cancels the
        connection's scope (``run``) once the limit is over; a command
        itself takes the time it takes.  (No service nursery: the scope's
        deadline is that many seconds ahead while this waits, infinite
        otherwise.)

        On the plain TCP stream a read is: wait until the socket is
        readable, then one read (in a request/response exchange the next
        command is never there yet, so trying first would cost a failed
        read each time)."""
        receiver = self.receiver
        scope = self._scope
        silence = self.service.silence()
        read = False
        acked = False
        while True:
            e = receiver.next_event()
            if e is not NEED_DATA:
                if silence is None:
                    scope.deadline = _INF
                elif read:
                    silence.end(self)
                return e
            plain = self._plain
            if read and receiver.in_command:
                # Mid-command (a literal is arriving): ACK what came.  A
                # client with Nagle on (imaplib) holds the CRLF after a
                # literal until its data is ACKed; a delayed ACK costs every
                # APPEND ~40 ms.  (A read that completed a command needs none.)
                _quickack(self.stream)
                if not acked and self.stream is plain:
                    # Over loopback the ACK has usually brought the held
                    # bytes (the CRLF that ends an APPEND) before setsockopt
                    # returns: read them now rather than after a round of
                    # the scheduler (once per call: the wait below is the
                    # checkpoint that lets the other connections run).
                    acked = True
                    data = _read_plain(plain.socket)
                    if data is not None:
                        receiver.receive_data(data)
                        continue
            if silence is None:
                scope.deadline = trio.current_time() + self.idle_timeout
            else:
                silence.begin(self)
            if self.stream is not plain:
                data = await self.stream.receive_some(RECV)
            else:
                sock = plain.socket
                while True:
                    await _wait_readable(sock)
                    data = _read_plain(sock)
                    if data is not None:
                        break
            receiver.receive_data(data)
            read = True

    async def run(self) -> None:
        """The connection, in the task that called it (the reader), which
        reads, frames, parses, lets the session handle each command and
        sends what it produced.  No nursery of its own: the NOTIFY task, if
        the session ever needs one, runs in the service's nursery, bound to
        this connection by its cancel scope (cancelled when the reader ends,
        however it ends).  The reader runs in one cancel scope, ``_scope``:
        cancelled by ``close_soon``, and by the service's SilenceWatch (or
        past its deadline) when the client stays silent too long
        (next_event)."""
        s = self.session
        receiver = self.receiver
        try:
            await self.send(self.service.greeting(s))
            with trio.CancelScope() as scope:
                self._scope = scope
                while s.state is not LOGOUT:
                    e = receiver.next_event()
                    if e is NEED_DATA:
                        e = await self.next_event()     # reads: a wait, so a scheduling point
                    else:
                        # pipelined (already read): let the other connections run
                        # between commands, as a read would
                        await _checkpoint()
                    if e is CONNECTION_CLOSED:
                        return
                    # the turn (once there is a NOTIFY task), without a scheduling
                    # round when nobody holds it (the NOTIFY task waits for it like
                    # for any lock).  A NOTIFY command that starts the NOTIFY task
                    # makes the turn held by this task (_start_notifier).
                    turn = self.turn
                    if turn is not None:
                        if turn.locked():
                            await turn.acquire()
                        else:
                            turn.acquire_nowait()
                    try:
                        if type(e) is frames.CommandFrame:
                            idle = await self.command(e)
                            go_on = True
                        else:
                            idle, go_on = await self.handle_event(e)
                        if idle is not None:
                            # here, not in command: one coroutine frame less
                            # held by every IDLE session
                            await self.idle(idle)
                    finally:
                        if self.turn is not None:
                            self.turn.release()
                    self._finished()
                    if not go_on:
                        return
            if scope.cancelled_caught and not self._closing:
                # the deadline: the client was silent for idle_timeout seconds
                await self.send(S.bye("idle for too long, closing"))
        finally:
            self._closing = True
            if self._notify_scope is not None:
                self._notify_scope.cancel()
            silence = self.service.silence()
            if silence is not None:
                silence.end(self)
            self.release_slot()
            self.receiver.release()
            if self._counted is not None:
                self.service.ended(self._counted, self._preauth)
                self._counted = None

    async def _notify_task(self) -> None:
        """The NOTIFY task; a failure there ends the connection, not the reader's
        command half-way (the reader is cancelled at its next wait)."""
        try:
            with self._notify_scope:
                await self.notifier.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self.close_soon()
        except Exception:
            log.exception("NOTIFY failed; closing the connection")
            self.close_soon()

    async def handle_event(self, e) -> tuple[ev.Idle | None, bool]:
        """One receiver event (a command, a literal's continuation, an error)
        -> (the IDLE command to run, if it was one; False when the
        connection ends)."""
        s = self.session
        if isinstance(e, frames.ContinuationRequest):
            refusal = s.literal_refusal(e.tag, e.parts)
            if refusal is not None:     # answered before "+"
                self.receiver.refuse_literal()
                await self.send(refusal)
                return None, True
            await self.send(S.continuation("Ready for literal data"))
            return None, True
        if isinstance(e, frames.FrameError):
            await self.frame_error(e)
            return None, not e.fatal
        if isinstance(e, frames.RawLine):
            await self.send(S.bad(None, "unexpected line"))
            return None, True
        return await self.command(e), True

    async def frame_error(self, e: frames.FrameError) -> None:
        if e.fatal:
            if e.tag is not None and e.response != "BYE":
                await self.send(S.tagged(e.tag, e.response, e.message, e.code))
            await self.send(S.bye(e.message))
        elif e.tag is None:
            await self.send(S.bad(None, e.message, e.code))
        else:
            await self.send(S.tagged(e.tag, e.response, e.message, e.code))

    async def command(self, frame: frames.CommandFrame) -> ev.Idle | None:
        """Parse and run one command; an IDLE allowed here is returned, for
        the caller to run."""
        s = self.session
        try:
            cmd = imap_commands.parse_command(frame, utf8=s.utf8)
        except CommandError as exc:
            if exc.tag is None:
                await self.send(S.bad(None, exc.message, exc.code))
                return
            # RFC 3501 6.4.4: an unknown SEARCH charset is NO [BADCHARSET]
            status = "NO" if (exc.code or "").startswith("BADCHARSET") else "BAD"
            await self.send(S.tagged(exc.tag, status, exc.message, exc.code))
            return
        if isinstance(cmd, ev.Authenticate):
            await self.authenticate(cmd)
            self.sync_limits()
        elif isinstance(cmd, ev.Idle):
            if not st.allowed(s.state, cmd.NAME):
                await self.send(S.bad(cmd.tag, "log in first"))
                return None
            return cmd
        else:
            was = s.state
            await s.handle(cmd)
            if was is st.NOT_AUTHENTICATED and not await self.admit(cmd.tag):
                return None
            self.sync_limits()
            await self.flush()
            if s.starttls_requested:
                s.starttls_requested = False
                await self.start_tls()
            if s.compress_requested and not isinstance(self.stream, DeflateStream):
                leftover = self.receiver.discard_buffered()
                self.stream = DeflateStream(self.stream)
                if leftover:
                    self.receiver.receive_data(self.stream.feed(leftover))

    # --- per-user session limit ---------------------------------------------------------------

    async def admit(self, tag: bytes) -> bool:
        """After a successful login: take a session slot or undo the login
        and answer NO [LIMIT].  True when the session may go on."""
        s = self.session
        if s.state is st.NOT_AUTHENTICATED or self.take_slot():
            return True
        s.out.clear()
        s.state = st.NOT_AUTHENTICATED     # the login is undone
        s.user = s.acc = None
        await self.send(S.no(tag, "too many sessions for this user", "LIMIT"))
        return False

    def take_slot(self) -> bool:
        # a login after UNAUTHENTICATE (RFC 8437) gives back the slot of the
        # one before: each LOGIN/UNAUTHENTICATE pair used to keep one, and
        # 100 of them on one connection locked the user out until a restart
        self.release_slot()
        counts = self.service.sessions
        user = self.session.acc
        if counts.get(user, 0) >= self.ctx.cfg.imap.max_sessions_per_user:
            return False
        counts[user] = counts.get(user, 0) + 1
        self._slot_user = user
        if self._preauth:
            self._preauth = False
            self.service.logged_in(self._counted)
        return True

    def release_slot(self) -> None:
        if self._slot_user is not None:
            counts = self.service.sessions
            counts[self._slot_user] -= 1
            self._slot_user = None

    # --- STARTTLS --------------------------------------------------------------------------------

    async def start_tls(self) -> None:
        # RFC 9051 6.2.1: discard anything pipelined after STARTTLS
        self.receiver.discard_buffered()
        ssl_ctx = server_context(self.ctx.tls_cert, self.ctx.tls_key)
        tls = trio.SSLStream(self.stream, ssl_ctx, server_side=True)
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            await tls.do_handshake()
        self.stream = tls
        self.session.secure = True

    # --- AUTHENTICATE (SASL) ------------------------------------------------------------------

    async def read_sasl_line(self) -> bytes | frames.FrameError | None:
        """The client's next SASL response line; a (non-fatal) FrameError
        when it was too long (the rest of it is skipped); None when the
        connection ended or cannot go on."""
        self.receiver.line_mode = True
        try:
            e = await self.next_event()
        finally:
            self.receiver.line_mode = False
        if isinstance(e, frames.RawLine):
            return e.line
        if isinstance(e, frames.FrameError):
            if not e.fatal:
                return e
            await self.send(S.bye(e.message))
            self.session.state = LOGOUT
        return None

    async def authenticate(self, cmd: ev.Authenticate) -> None:
        s = self.session
        if not st.allowed(s.state, cmd.NAME):
            await self.send(S.bad(cmd.tag, st.refusal(s.state, cmd.NAME)))
            return
        auth = self.ctx.auth
        mech_name = cmd.mechanism
        if mech_name == "PLAIN":
            mech = sasl.Plain()
        elif mech_name == "LOGIN":
            mech = sasl.Login()
        elif mech_name == "SCRAM-SHA-256":
            mech = sasl.ScramSha256(auth.scram_lookup)
        else:
            await self.send(S.no(cmd.tag, "unsupported authentication mechanism"))
            return
        if mech_name != "SCRAM-SHA-256" and not s.login_allowed():
            await self.send(S.no(cmd.tag, "use STARTTLS or port 993 first", "PRIVACYREQUIRED"))
            return
        challenge = sasl.INITIAL_CHALLENGE[mech_name]
        response = cmd.initial_response
        try:
            while True:
                if response is None:
                    await self.send(S.continuation_data(challenge))
                    line = await self.sasl_response(cmd.tag)
                    if line is None:
                        return
                    try:
                        response = base64.b64decode(line.strip(), validate=True)
                    except ValueError:
                        await self.send(S.bad(cmd.tag, "invalid base64"))
                        return
                step = mech.step(response)
                response = None
                if isinstance(step, sasl.Challenge):
                    challenge = step.data
                    continue
                break
            if step.final is not None:
                # SCRAM checked the proof itself: the penalty is waited out
                # before the answer (the server's proof) tells the client
                await auth.throttle(s.remote, step.user)
                # the server's proof, then the client's empty answer
                await self.send(S.continuation_data(step.final))
                if await self.sasl_response(cmd.tag) is None:
                    return
            await s.sasl_finish(cmd.tag, step)
        except sasl.SaslError as exc:
            # a wrong SCRAM proof, or a malformed exchange: a failed attempt
            user = getattr(mech, "user", None)
            await auth.throttle(s.remote, user)
            auth.record(s.remote, user, ok=False, known=bool(user) and auth.known(user))
            await trio.sleep(self.ctx.cfg.imap.login_failure_delay)
            s.tagged(cmd.tag, "NO", f"authentication failed: {exc}", "AUTHENTICATIONFAILED")
        except Bad as exc:
            s.tagged(cmd.tag, "BAD", exc.text, exc.code)
        except No as exc:
            s.tagged(cmd.tag, "NO", exc.text, exc.code)
        if not await self.admit(cmd.tag):
            return
        await self.flush()

    async def sasl_response(self, tag: bytes) -> bytes | None:
        """One response line of an AUTHENTICATE exchange; None when the
        exchange is over (cancelled with "*", too long, or the connection
        ended: the tagged answer, if any, is sent)."""
        line = await self.read_sasl_line()
        if line is None:
            return None
        if isinstance(line, frames.FrameError):
            await self.send(S.bad(tag, "authentication response line too long"))
            return None
        if line.strip() == b"*":
            await self.send(S.bad(tag, "authentication cancelled"))
            return None
        return line

    # --- IDLE (RFC 2177) -------------------------------------------------------------------------

    async def idle(self, cmd: ev.Idle) -> None:
        s = self.session
        bus = self.ctx.bus
        # taken before the refresh reads the store: anything newer wakes us,
        # so nothing is lost between this read and the wait below
        seen = bus.latest(s.acc)
        # the continuation first, then what changed since the last command (as
        # Dovecot does): imapclient's idle() takes any untagged response before
        # the "+" for an error
        await self.send(b"+ idling\r\n")
        await s.refresh(allow_expunge=True)
        await self.flush()
        # RFC 5465 4: with NOTIFY in effect, IDLE sends what NOTIFY asked for
        # (the NOTIFY task, which gets the turn while we wait for DONE)
        watch = s.state == SELECTED and s.notify is None
        turn = self.turn
        if turn is not None:
            turn.release()
        self.receiver.line_mode = True
        try:
            if not watch:
                done = await self._idle_done()
            elif self.stream is not self._plain or (waits := self.service.idle_waits()) is None:
                done = await self._idle_watcher_task(seen)
            else:
                # IDLE in the reader's task alone (no task, nursery, cancel
                # scope or event per idling session): it parks until its
                # socket is readable or the bus wakes it (server/idle_wait.py)
                # for a change to the selected mailbox (or its deletion); the
                # session catches up and parks again.  Subscribed only while
                # idling: outside IDLE the session holds nothing on the bus.
                # The client's silence limit is the connection scope's
                # deadline (run: a BYE), counted from its last bytes.
                sock = self._plain.socket
                fd = sock.fileno()
                receiver = self.receiver
                scope = self._scope
                with bus.subscribe(s.acc, mailboxes=_one_mailbox(s.sel.mbx),
                                   since=seen) as sub:
                    sub.waker = functools.partial(waits.wake, fd)
                    scope.deadline = trio.current_time() + self.idle_timeout
                    try:
                        while True:
                            if sub.pending is not None:
                                sub.take()
                                await s.refresh(allow_expunge=True)
                                await self.flush()
                                continue
                            e = receiver.next_event()
                            if e is NEED_DATA:
                                if await waits.wait(fd):        # readable (False: news)
                                    data = _read_plain(sock)
                                    if data is not None:
                                        scope.deadline = trio.current_time() + self.idle_timeout
                                        receiver.receive_data(data)
                                continue
                            if isinstance(e, frames.RawLine):
                                done = e.line.strip().upper() == b"DONE"
                                break
                            if e is frames.CONNECTION_CLOSED or isinstance(e, frames.FrameError):
                                done = None
                                break
                    finally:
                        sub.waker = None
                        scope.deadline = _INF
        finally:
            self.receiver.line_mode = False
            if turn is not None:
                with trio.CancelScope(shield=True):
                    await turn.acquire()
        if done is None:
            s.state = LOGOUT
            return
        if not done:
            await self.send(cmd.tag + b" BAD expected DONE\r\n")
            return
        await self.send(cmd.tag + b" OK IDLE terminated\r\n")

    async def _idle_done(self) -> bool | None:
        """Wait for the client's line ending IDLE: True for DONE, False for
        another line, None when the connection ends."""
        while True:
            e = await self.next_event()
            if isinstance(e, frames.RawLine):
                return e.line.strip().upper() == b"DONE"
            if e is frames.CONNECTION_CLOSED or isinstance(e, frames.FrameError):
                return None

    async def _idle_watcher_task(self, seen: int) -> bool | None:
        """IDLE over TLS or COMPRESS (bytes may wait in the stream, not on
        the socket): a second task (the watcher) catches up on changes
        while the reader waits for the client's line."""
        s = self.session
        bus = self.ctx.bus

        async def watcher():
            with bus.subscribe(s.acc, mailboxes=(s.sel.mbx,), since=seen) as sub:
                while True:
                    await sub.wait()
                    await s.refresh(allow_expunge=True)
                    await self.flush()

        async with trio.open_nursery() as n:
            n.start_soon(watcher)
            try:
                return await self._idle_done()
            finally:
                n.cancel_scope.cancel()


_REFUSED = S.bye("too many connections, try again later", "UNAVAILABLE")


def _read_plain(sock) -> bytes | None:
    """One non-blocking read from SOCK (b"" at EOF); None when nothing was
    there after all.  Errors as trio's SocketStream raises them."""
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("this socket was already closed")
    try:
        return _os_read(fd, RECV)
    except BlockingIOError:
        return None         # (woken without data)
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.ENOTSOCK):
            raise trio.ClosedResourceError("this socket was already closed") from None
        raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _one_mailbox(mbx: int) -> frozenset[int]:
    """{MBX}, one object for every session idling on it (the bus keeps a
    frozenset it is given as it is)."""
    return frozenset((mbx,))


def _raw_socket(stream):
    while stream is not None:
        sock = getattr(stream, "socket", None)
        if sock is not None:
            return sock
        stream = getattr(stream, "transport_stream", None) or getattr(stream, "inner", None)
    return None


def _quickack(stream) -> None:
    sock = _raw_socket(stream)
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass


def _peer_host(stream) -> str:
    """The client's IP address as text ("" when unknown)."""
    sock = _raw_socket(stream)
    try:
        name = sock.getpeername() if sock is not None else None
    except OSError:
        return ""
    return str(name[0]) if isinstance(name, tuple) and name else ""


def _loopback_host(host: str) -> bool:
    return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")


def _is_loopback(stream) -> bool:
    try:
        sock = stream.socket if hasattr(stream, "socket") else stream.transport_stream.socket
        host = sock.getpeername()[0]
    except (AttributeError, OSError):
        return False
    return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")


async def serve(ctx: ServerContext, task_status=trio.TASK_STATUS_IGNORED) -> None:
    cfg = ctx.cfg.imap
    service = ImapService(ctx)
    plain = await open_listeners(cfg.listen) if cfg.listen.enabled else []
    tls = await open_listeners(cfg.listen_tls) if cfg.listen_tls.enabled else []
    ssl_ctx = server_context(ctx.tls_cert, ctx.tls_key)

    def plain_handler(stream):
        # not a coroutine function: the connection's own coroutine is awaited
        # in its place (one frame less held by every connection's task)
        host = _peer_host(stream)
        if not service.admit(host):
            # RFC 9051 7.1.5: BYE as the greeting, the server will not serve
            # this client now (one try, no wait: the socket is closed after)
            try:
                _os_write(stream.socket.fileno(), _REFUSED)
            except OSError:
                pass
            return _checkpoint()
        try:
            conn = ImapConnection(ctx, stream, secure=False, loopback=_loopback_host(host),
                                  service=service, remote=host, counted=host)
        except BaseException:
            service.ended(host, True)
            raise
        return conn.run()

    async def tls_handler(stream):
        host = _peer_host(stream)
        if not service.admit(host):
            return      # closed before the handshake (as the HTTP service does)
        try:
            loop = _is_loopback(stream)
            tstream = trio.SSLStream(stream, ssl_ctx, server_side=True)
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await tstream.do_handshake()
            conn = ImapConnection(ctx, tstream, secure=True, loopback=loop, service=service,
                                  remote=host, counted=host)
        except BaseException:
            service.ended(host, True)
            raise
        await conn.run()

    ctx.bound["imaps"] = bound_addresses(tls)
    task_status.started(bound_addresses(plain))
    async with trio.open_nursery() as n:
        service.nursery = n
        if plain:
            n.start_soon(serve_connections, "imap", plain, plain_handler)
        if tls:
            n.start_soon(serve_connections, "imaps", tls, tls_handler)
