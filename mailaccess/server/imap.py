"""IMAP service: listeners, TLS, STARTTLS, COMPRESS, the read loop, IDLE.

Thin Trio glue around the sans-IO receiver/parser (proto/imap) and the
session (imap_session.py).  One task per connection reads, frames, parses,
lets the session handle the command and sends what it produced.  IDLE races a
DONE line from the client against change notifications from the bus; nothing
polls.  A second task per connection, the NOTIFY task (imap_notifier.py),
sends RFC 5465 news between commands.  The two share one writer: ``send``
holds a lock per connection, has a write deadline and is never cancelled
half-way; and ``turn`` is held by the reader from a parsed command to its
tagged line, so news never falls inside a command's responses.  What the
IMAP service keeps for all its connections (shared sequence maps, sessions
per user) is ``ImapService``, not the process-wide ``ServerContext``.  The bytes it writes itself come from proto/imap/serialize.
"""
from __future__ import annotations

import base64
import logging
import socket
import zlib
import errno
from os import read as _os_read, write as _os_write

import trio

from .. import sasl
from ..proto.imap import commands as imap_commands
from ..proto.imap import events as ev
from ..proto.imap import frames
from ..proto.imap import serialize as S
from ..proto.imap import state as st
from ..proto.imap.errors import CommandError
from ..proto.imap.receiver import Limits, Receiver, preauth_limits
from .app import ServerContext, bound_addresses, open_listeners, serve_connections
from .imap_notifier import Notifier
from .imap_session import LOGOUT, SELECTED, Bad, ImapSession, No, SharedViews
from .tls import server_context

NEED_DATA, CONNECTION_CLOSED = frames.NEED_DATA, frames.CONNECTION_CLOSED
_wait_readable = trio.lowlevel.wait_readable
_checkpoint = trio.lowlevel.checkpoint

log = logging.getLogger("mailaccess.imap")

RECV = 65536
#: seconds one write may take (a client that does not read is dropped)
WRITE_TIMEOUT = 120


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
    -> logged-in sessions, for ``imap.max_sessions_per_user``.  Kept here so
    the process-wide ServerContext carries nothing IMAP-specific.
    """

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.views = SharedViews()
        self.sessions: dict[int, int] = {}
        self._greetings: dict[tuple, bytes] = {}

    def greeting(self, session: ImapSession) -> bytes:
        """The session's greeting (its capabilities depend only on the
        configuration and on how the client connected): made once per kind."""
        key = (session.secure, session.loopback)
        g = self._greetings.get(key)
        if g is None:
            g = self._greetings[key] = session.greeting()
        return g


class ImapConnection:
    def __init__(self, ctx: ServerContext, stream: trio.abc.Stream, *, secure: bool,
                 loopback: bool, service: ImapService, remote: str | None = None):
        self.ctx = ctx
        self.service = service
        self.stream = stream
        cfg = ctx.cfg.imap
        nonsync = cfg.max_literal if cfg.nonsync_literals == "plus" else 4096
        # the configured bounds apply once logged in; before, a few KB
        self.limits = Limits(max_line=cfg.max_line, max_literal=cfg.max_literal,
                             max_nonsync_literal=nonsync)
        self.preauth = preauth_limits(cfg.preauth_max_command)
        self.receiver = Receiver(limits=self.preauth)
        self.session = s = ImapSession(ctx, secure=secure, loopback=loopback,
                                       views=self.service.views)
        s.remote = _peer_host(stream) if remote is None else remote
        s.sender = self.send
        self.idle_timeout = cfg.idle_timeout
        self.write_lock = trio.Lock()       # one writer at a time
        self.turn = trio.Lock()             # a command, or the NOTIFY task's news
        self._command_done: trio.Event | None = None
        # the NOTIFY task starts with the session's first NOTIFY (most
        # connections never send one): until then nothing runs beside the reader
        self.notifier: Notifier | None = None
        s.on_notify = self._start_notifier
        self._nursery: trio.Nursery | None = None
        # the plain TCP stream this connection started with (send's fast path
        # applies while it is still self.stream: not after STARTTLS or COMPRESS)
        self._plain = stream if type(stream) is trio.SocketStream else None

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
        if self.stream is self._plain and not self.write_lock.locked():
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
        async with self.write_lock:
            with trio.CancelScope(shield=True):
                with trio.fail_after(WRITE_TIMEOUT):
                    await self.stream.send_all(data)

    async def receive(self) -> bytes:
        """The next bytes from the peer (b"" at EOF).

        On the plain TCP stream: wait until the socket is readable, then one
        read (in a request/response exchange the next command is never there
        yet, so trying first would cost a failed read each time).  Errors as
        trio's SocketStream raises them."""
        plain = self._plain
        if self.stream is not plain:
            return await self.stream.receive_some(RECV)
        sock = plain.socket
        while True:
            await _wait_readable(sock)
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("this socket was already closed")
            try:
                return _os_read(fd, RECV)
            except BlockingIOError:
                continue        # (woken without data)
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    raise trio.ClosedResourceError("this socket was already closed") from None
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    def close_soon(self) -> None:
        """End the connection (the reader and the NOTIFY task)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

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
            self.notifier = Notifier(self)      # sets session.on_notify = its reset
            if self._nursery is not None:
                self._nursery.start_soon(self._notify_task)
        self.notifier.reset()

    async def flush(self) -> None:
        await self.send(self.session.take_output())

    def sync_limits(self) -> None:
        """Pre-auth bounds until logged in (again after UNAUTHENTICATE)."""
        want = self.preauth if self.session.state is st.NOT_AUTHENTICATED else self.limits
        if self.receiver.limits is not want:
            self.receiver.set_limits(want)

    async def next_event(self):
        """The next receiver event, reading from the peer as needed."""
        receiver = self.receiver
        read = False
        while True:
            e = receiver.next_event()
            if e is not NEED_DATA:
                return e
            if read and receiver.in_command:
                # Mid-command (a literal is arriving): ACK what came.  A
                # client with Nagle on (imaplib) holds the CRLF after a
                # literal until its data is ACKed; a delayed ACK costs every
                # APPEND ~40 ms.  (A read that completed a command needs none.)
                _quickack(self.stream)
            with trio.move_on_after(self.idle_timeout) as scope:
                data = await self.receive()
            if scope.cancelled_caught:
                await self.send(S.bye("idle for too long, closing"))
                return frames.CONNECTION_CLOSED
            receiver.receive_data(data)
            read = True

    async def run(self) -> None:
        await self.send(self.service.greeting(self.session))
        try:
            async with trio.open_nursery() as n:
                self._nursery = n
                await self.read_loop()
                n.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # one failure (the reader's) is what the caller expects to see
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._nursery = None
            self.release_slot()

    async def _notify_task(self) -> None:
        """The NOTIFY task; a failure there ends the connection, not the reader's
        command half-way (the reader is cancelled at its next wait)."""
        try:
            await self.notifier.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            self.close_soon()
        except Exception:
            log.exception("NOTIFY failed; closing the connection")
            self.close_soon()

    async def read_loop(self) -> None:
        s = self.session
        turn = self.turn
        receiver = self.receiver
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
            # the turn, without a scheduling round when nobody holds it
            # (the NOTIFY task, if any, waits for it like for any lock)
            if turn.locked():
                await turn.acquire()
            else:
                turn.acquire_nowait()
            try:
                if type(e) is frames.CommandFrame:
                    await self.command(e)
                    go_on = True
                else:
                    go_on = await self.handle_event(e)
            finally:
                turn.release()
            self._finished()
            if not go_on:
                return

    async def handle_event(self, e) -> bool:
        """One receiver event (a command, a literal's continuation, an error);
        False when the connection ends."""
        s = self.session
        if isinstance(e, frames.ContinuationRequest):
            refusal = s.literal_refusal(e.tag, e.parts)
            if refusal is not None:     # answered before "+"
                self.receiver.refuse_literal()
                await self.send(refusal)
                return True
            await self.send(S.continuation("Ready for literal data"))
            return True
        if isinstance(e, frames.FrameError):
            await self.frame_error(e)
            return not e.fatal
        if isinstance(e, frames.RawLine):
            await self.send(S.bad(None, "unexpected line"))
            return True
        await self.command(e)
        return True

    async def frame_error(self, e: frames.FrameError) -> None:
        if e.fatal:
            if e.tag is not None and e.response != "BYE":
                await self.send(S.tagged(e.tag, e.response, e.message, e.code))
            await self.send(S.bye(e.message))
        elif e.tag is None:
            await self.send(S.bad(None, e.message, e.code))
        else:
            await self.send(S.tagged(e.tag, e.response, e.message, e.code))

    async def command(self, frame: frames.CommandFrame) -> None:
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
                return
            await self.idle(cmd)
        else:
            was = s.state
            await s.handle(cmd)
            if was is st.NOT_AUTHENTICATED and not await self.admit(cmd.tag):
                return
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

    _slot_user = None

    def take_slot(self) -> bool:
        counts = self.service.sessions
        user = self.session.acc
        if counts.get(user, 0) >= self.ctx.cfg.imap.max_sessions_per_user:
            return False
        counts[user] = counts.get(user, 0) + 1
        self._slot_user = user
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
        done = None
        # RFC 5465 4: with NOTIFY in effect, IDLE sends what NOTIFY asked for
        # (the NOTIFY task, which gets the turn while we wait for DONE)
        notify = s.notify is not None

        async def watch():
            # subscribed only while idling: outside IDLE the session holds
            # nothing on the bus.  A change elsewhere in the account does not
            # wake us; one to the selected mailbox (or its deletion) does.
            with bus.subscribe(s.acc, mailboxes=(s.sel.mbx,), since=seen) as sub:
                while True:
                    await sub.wait()
                    await s.refresh(allow_expunge=True)
                    await self.flush()

        self.turn.release()
        try:
            async with trio.open_nursery() as n:
                if s.state == SELECTED and not notify:
                    n.start_soon(watch)
                self.receiver.line_mode = True
                try:
                    while True:
                        e = await self.next_event()
                        if isinstance(e, frames.RawLine):
                            done = e.line.strip().upper() == b"DONE"
                            break
                        if e is frames.CONNECTION_CLOSED or isinstance(e, frames.FrameError):
                            done = None
                            break
                finally:
                    self.receiver.line_mode = False
                    n.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.turn.acquire()
        if done is None:
            s.state = LOGOUT
            return
        if not done:
            await self.send(cmd.tag + b" BAD expected DONE\r\n")
            return
        await self.send(cmd.tag + b" OK IDLE terminated\r\n")


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

    async def plain_handler(stream):
        host = _peer_host(stream)
        await ImapConnection(ctx, stream, secure=False, loopback=_loopback_host(host),
                             service=service, remote=host).run()

    async def tls_handler(stream):
        loop = _is_loopback(stream)
        tstream = trio.SSLStream(stream, ssl_ctx, server_side=True)
        with trio.fail_after(30):
            await tstream.do_handshake()
        await ImapConnection(ctx, tstream, secure=True, loopback=loop, service=service).run()

    ctx.bound["imaps"] = bound_addresses(tls)
    task_status.started(bound_addresses(plain))
    async with trio.open_nursery() as n:
        if plain:
            n.start_soon(serve_connections, "imap", plain, plain_handler)
        if tls:
            n.start_soon(serve_connections, "imaps", tls, tls_handler)
