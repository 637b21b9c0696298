"""Worker processes: `mailaccess serve` on every core.

What this module owns: the supervisor (the parent process) and each worker's
end of the channel between them.  docs/architecture.md ("Worker processes")
describes the model; in short:

* The supervisor never opens the store, imports none of the server (no
  Trio, no store, no service) and never starts a thread.  It binds every
  listener, then forks a loader (the supervisor is a subreaper: processes
  orphaned below it become its children).  The loader opens the store once
  (creating or upgrading it, the demo account), closes it, makes the TLS
  certificate (in a short-lived child: server/memory.py), imports every
  module the workers will use and forks ``[server] workers`` processes, its
  objects frozen (gc.freeze) so that they share its pages; it tells the
  supervisor their pids and exits, and the workers become the supervisor's
  children.  So no process keeps the loader's copy of a page that every
  worker has written.  Each worker runs the ordinary Trio server (app.serve)
  on the inherited listening sockets (app.INHERITED) and opens the one LMDB
  environment itself, after the fork.  All workers accept on the same
  sockets: the kernel hands each connection to one of the workers waiting
  in accept.  A worker restarted later is forked from the supervisor and
  imports the server itself.  Without PR_SET_CHILD_SUBREAPER (not Linux) the
  supervisor does the loader's work and forks the workers itself.
* The channel: one Unix socketpair per worker to the supervisor, carrying
  lines.  After each durable commit a worker's store writer thread sends one
  ``N`` line per account ("account A reached modseq N, kinds, mailboxes")
  that another worker wants; the supervisor copies every line not addressed
  to itself (``!``) to every other worker, whose link task publishes it on
  its bus.  IDLE, NOTIFY, JMAP push and ActiveSync Ping wait on their own
  process's bus as before.  What a worker wants (server/interest.py: the
  accounts its bus has waiters for, the kinds its listeners hear for every
  account) it tells the others in ``W`` lines (``W[i,"=",accounts,kinds]``
  its whole state, ``"+"``/``"-"`` accounts gained/dropped, ``"k"`` the
  kinds; kinds null: every kind); a worker that starts asks the others for
  theirs (``Q[i]``) and is sent everything until they answer.  A worker
  that learns a new want answers with a catch-up (interest.py).
  ``B[topic, data]`` lines are broadcasts between workers
  (``WorkerLink.broadcast``/``on``): topic ``push`` tells the primary
  worker's push delivery that a push subscription changed.  ``!R`` (worker ready, with its bound addresses) is
  for the supervisor; ``!S`` (stop) for a worker.
* Singletons (app.SINGLETONS: the outbound queue, push delivery, the HTTP
  routes' background sweeps, the change log's age sweep) run in worker 0,
  the primary.  A primary that dies is restarted like any worker.
* A worker that dies is restarted after ``restart_delay`` seconds, doubled
  for each death within a minute of its start (at most
  ``restart_max_delay``); the others keep serving.  SIGTERM/SIGINT to the
  supervisor stop every worker gracefully (each drains as the single
  process does) and kill those still running after ``stop_timeout``.  A
  worker dies with the supervisor (PR_SET_PDEATHSIG) and stops when its
  channel closes.
"""
from __future__ import annotations

import ctypes
import errno
import gc
import json
import logging
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NoReturn

from . import memory

# trio and the bus are imported where a worker uses them: the supervisor
# imports this module and none of the server (tests/test_memory.py)
if TYPE_CHECKING:
    import trio

    from ..bus import Notification
    from ..config import Config

log = logging.getLogger("mailaccess.workers")

#: bytes waiting for one worker before it is taken for stuck and killed
MAX_PENDING = 16 * 1024 * 1024
#: a worker that lived longer than this had a "good" run: its backoff resets
GOOD_RUN = 60.0

#: imported by the services only as they start (not when their modules are
#: imported): the IDNA codec, which getaddrinfo of a host name loads
LATE_IMPORTS = ("encodings.idna",)

LOG_FORMAT = "%(asctime)s %(levelname)s [%(worker)s] %(name)s: %(message)s"

#: seconds an account stays wanted from the other workers after its last
#: waiter here left (server/interest.py Wants)
WANT_LINGER = 30.0


# --- the channel: encoding ---------------------------------------------------------------

def encode(n: Notification) -> bytes:
    mbx = None if n.mailboxes is None else sorted(n.mailboxes)
    return b"N" + json.dumps([n.account, n.modseq, sorted(n.kinds), mbx],
                             separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Notification:
    from ..bus import Notification

    acc, modseq, kinds, mbx = json.loads(line[1:])
    return Notification(int(acc), int(modseq), frozenset(kinds),
                        None if mbx is None else frozenset(int(m) for m in mbx))


# --- the worker's end ----------------------------------------------------------------------

class WorkerLink:
    """One worker's end of its socketpair to the supervisor (ServerContext.worker)."""

    def __init__(self, index: int, count: int, sock: socket.socket,
                 linger: float = WANT_LINGER):
        from .interest import Fanout, Wants

        self.index = index
        self.count = count
        self.primary = index == 0
        self.sock = sock
        self._send_lock = threading.Lock()
        self._broken = False
        self._handlers: dict[str, list] = {}
        self.stats = {"sent": 0, "received": 0, "caught_up": 0}
        self.fanout = Fanout(index, count)      # what the others want
        self.wants = Wants(linger)              # what this worker told them it wants

    # messages between workers, by topic ----------------------------------------------

    def broadcast(self, topic: str, data=None) -> None:
        """Send DATA (JSON-able) to every other worker's handlers of TOPIC
        (not to this worker's: the caller acts here itself).  E.g. push
        subscriptions changed, or, for ActiveSync, "device D of account A
        sent a newer Ping: end yours"."""
        self.send(b"B" + json.dumps([topic, data], separators=(",", ":")).encode() + b"\n")

    def on(self, topic: str, fn) -> "Callable[[], None]":
        """Call FN(data) on this worker's Trio loop for each broadcast of
        TOPIC by another worker; -> a function that stops it.  FN must not
        block or raise."""
        self._handlers.setdefault(topic, []).append(fn)

        def stop() -> None:
            fns = self._handlers.get(topic, [])
            if fn in fns:
                fns.remove(fn)
        return stop

    # sending (any thread) ------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write DATA whole.  The socket is non-blocking (Trio reads it), so
        a full buffer is waited out here; the supervisor reads at once."""
        with self._send_lock:
            if self._broken:
                return
            view = memoryview(data)
            try:
                while view:
                    try:
                        n = self.sock.send(view)
                    except BlockingIOError:
                        select.select([], [self.sock], [], 1.0)
                        continue
                    view = view[n:]
            except OSError as exc:
                self._broken = True
                log.warning("the channel to the supervisor is broken (%s)", exc)

    def on_commit(self, info) -> None:
        """The store's commit hook (writer thread): tell the other workers
        that want it."""
        if not info.changes or self.count < 2:
            return
        changes = self.fanout.committed(info.changes)
        if not changes:
            return
        from ..bus import notifications

        batch = notifications(changes)
        self.stats["sent"] += len(batch)
        self.send(b"".join(encode(n) for n in batch))

    # what this worker wants (the bus's watcher, on the loop) ---------------------------

    def _send_wants(self, op: str, *args) -> None:
        self.send(b"W" + json.dumps([self.index, op, *args], separators=(",", ":")).encode()
                  + b"\n")

    def _announce(self, bus) -> None:
        accounts, kinds = bus.wanted()
        self.wants.accounts |= accounts
        self.wants.kinds = kinds
        self._send_wants("=", sorted(self.wants.accounts), _kinds_out(kinds))

    def _bus_account(self, account: int, on: bool) -> None:
        if self.wants.account(account, on, time.monotonic()):
            self._send_wants("+", [account])

    def _bus_kinds(self, kinds) -> None:
        if self.wants.listened(kinds):
            self._send_wants("k", _kinds_out(kinds))

    async def _expire_wants(self) -> None:
        import trio

        while True:
            await trio.sleep(self.wants.linger)
            gone = self.wants.expire(time.monotonic())
            if gone:
                self._send_wants("-", sorted(gone))

    def ready(self, ctx) -> None:
        self.send(b"!R" + json.dumps({"pid": os.getpid(), "bound": ctx.bound}).encode()
                  + b"\n")

    # receiving (the Trio loop) -------------------------------------------------------

    async def run(self, ctx, scope: trio.CancelScope, task_status=None) -> None:
        """Publish the other workers' notifications on this worker's bus
        until cancelled; cancel SCOPE (the server) when told to stop or
        when the supervisor is gone."""
        import trio

        from . import push_delivery

        if task_status is None:
            task_status = trio.TASK_STATUS_IGNORED

        key = id(ctx.store)
        push_delivery._ELSEWHERE[key] = lambda: self.broadcast("push")
        stop_push = self.on("push", lambda _data: push_delivery.subscriptions_changed(
            ctx.store, here_only=True))
        tsock = trio.socket.from_stdlib_socket(self.sock)
        bus = ctx.bus
        bus.watch(self._bus_account, self._bus_kinds)
        self._announce(bus)                     # then ask the others for theirs
        self.send(b"Q" + json.dumps([self.index]).encode() + b"\n")
        buf = b""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._expire_wants)
                task_status.started()
                while True:
                    try:
                        data = await tsock.recv(65536)
                    except ConnectionResetError:    # gone with lines of ours unread
                        data = b""
                    if not data:
                        log.warning("the supervisor is gone: stopping")
                        scope.cancel()
                        nursery.cancel_scope.cancel()
                        return
                    buf += data
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        self._handle(ctx, line, scope)
        finally:
            bus.watch(None, None)
            push_delivery._ELSEWHERE.pop(key, None)
            stop_push()

    def _handle(self, ctx, line: bytes, scope: trio.CancelScope) -> None:
        kind = line[:1]
        if kind == b"N":
            try:
                n = decode(line)
            except (ValueError, TypeError):
                log.error("bad notification on the channel: %r", line[:200])
                return
            self.stats["received"] += 1
            ctx.bus.publish(n)
        elif kind == b"B":
            try:
                topic, data = json.loads(line[1:])
            except (ValueError, TypeError):
                log.error("bad message on the channel: %r", line[:200])
                return
            for fn in list(self._handlers.get(topic, ())):
                try:
                    fn(data)
                except Exception:
                    log.exception("handler of %r failed", topic)
        elif kind == b"W":
            try:
                index, op, *args = json.loads(line[1:])
                self._peer_wants(int(index), op, args)
            except (ValueError, TypeError, IndexError):
                log.error("bad message on the channel: %r", line[:200])
        elif kind == b"Q":
            self._announce(ctx.bus)             # a worker started: what this one wants
        elif line == b"!S":
            log.info("stopping: draining connections and flushing the store")
            scope.cancel()


    def _peer_wants(self, index: int, op: str, args: list) -> None:
        """Another worker's ``W`` line: record it, send what it newly wants."""
        f = self.fanout
        if op == "=":
            notes = f.peer_state(index, [int(a) for a in args[0]], _kinds_in(args[1]))
        elif op == "+":
            notes = f.peer_add(index, [int(a) for a in args[0]])
        elif op == "-":
            f.peer_drop(index, [int(a) for a in args[0]])
            notes = []
        elif op == "k":
            notes = f.peer_kinds(index, _kinds_in(args[0]))
        else:
            raise ValueError(op)
        if notes:
            self.stats["caught_up"] += len(notes)
            self.send(b"".join(encode(n) for n in notes))


def _kinds_out(kinds):
    return None if kinds is None else sorted(kinds)


def _kinds_in(kinds) -> frozenset[str] | None:
    return None if kinds is None else frozenset(str(k) for k in kinds)


# --- the supervisor ---------------------------------------------------------------------------

@dataclass
class Slot:
    index: int
    pid: int = 0
    sock: socket.socket | None = None
    inbuf: bytes = b""
    out: bytearray = field(default_factory=bytearray)
    started: float = 0.0
    ready: bool = False
    fast_deaths: int = 0
    restart_at: float | None = None


class _WorkerExit(BaseException):
    pass


def bind_listeners(cfg: Config) -> list[tuple[object, list[socket.socket]]]:
    """Bind every enabled listener as trio.open_tcp_listeners would."""
    wanted = []
    if cfg.imap.listen.enabled:
        wanted.append(cfg.imap.listen)
    if cfg.imap.listen_tls.enabled:
        wanted.append(cfg.imap.listen_tls)
    if cfg.lmtp.listen.enabled:
        wanted.append(cfg.lmtp.listen)
    if cfg.http.listen.enabled:
        wanted.append(cfg.http.listen)
    out: list[tuple[object, list[socket.socket]]] = []
    for ln in wanted:
        host = None if ln.host in ("", "*") else ln.host
        if host is not None and host.isascii():
            host = host.encode()        # a str is encoded with the IDNA codec (an import)
        infos = socket.getaddrinfo(host, ln.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        socks = []
        seen = set()
        try:
            for family, type_, proto, _, sockaddr in infos:
                if (family, sockaddr) in seen:
                    continue
                seen.add((family, sockaddr))
                s = socket.socket(family, type_, proto)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(sockaddr)
                s.listen(min(socket.SOMAXCONN, 0xFFFF) if socket.SOMAXCONN > 128 else 4096)
        except OSError as exc:
            for s in socks:
                s.close()
            for _, ss in out:
                for s in ss:
                    s.close()
            if exc.errno == errno.EADDRINUSE:
                raise SystemExit(
                    f"cannot listen on {ln.host}:{ln.port}: the port is in use. "
                    "Stop the other server or pick another port in the config file.") from None
            raise
        out.append((ln, socks))
    return out


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: SIGKILL this worker when the supervisor dies (kill
    -9 of the server ends all of it, as of the single process)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _WorkerName(logging.Filter):
    def __init__(self, name: str):
        super().__init__()
        self.worker = name

    def filter(self, record) -> bool:
        record.worker = self.worker
        return True


def _name_logs(name: str) -> None:
    """Every log line of this process says which process wrote it."""
    root = logging.getLogger()
    for h in root.handlers:
        for f in list(h.filters):
            if isinstance(f, _WorkerName):
                h.removeFilter(f)
        h.addFilter(_WorkerName(name))
        h.setFormatter(logging.Formatter(LOG_FORMAT))


class Supervisor:
    def __init__(self, cfg: Config, *, banner=None, prepare=None):
        self.cfg = cfg
        self.n = cfg.server.count()
        self.banner = banner
        # run before the store is opened (the CLI's data-directory checks)
        self.prepare = prepare
        self.pid = os.getpid()
        self.subreaper = False
        # this process imported the server and forks from it (no subreaper)
        self.preloaded = False
        self.froze = False
        self.demo = False
        self.slots = [Slot(i) for i in range(self.n)]
        self.listeners: list = []
        self.sel = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.stopping = False
        self.stop_deadline = 0.0
        self.all_ready_once = False
        self.bound: dict = {}
        self.exit_code = 0

    # startup ------------------------------------------------------------------------

    def preflight(self) -> bool:
        """Create, upgrade and check the store, the demo account and the
        certificate in this process, then close the store: the workers open
        it after the fork.  -> whether the demo account exists."""
        from . import app
        from .tls import ensure_certificate

        store = app.open_store(self.cfg)
        try:
            if self.cfg.demo_account and app.ensure_demo_account(self.cfg, store):
                log.info("created the demo account: user %r, password %r",
                         app.DEMO_USER, app.DEMO_PASSWORD)
            with store.view() as v:
                demo = v.account_by_name(app.DEMO_USER) is not None
        finally:
            store.close()
        # made in a child: generating a certificate loads cryptography
        # (about 10 MB this process and its workers would keep for good)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ensure_certificate(self.cfg)
                code = 0
            except BaseException:
                pass                # the call below fails the same way, and says why
            finally:
                os._exit(code)
        os.waitpid(pid, 0)
        ensure_certificate(self.cfg)
        return demo

    def preload(self) -> None:
        """Import every module a worker imports as it starts, before forking:
        the workers share those pages (copy-on-write) and start sooner.  A
        module first imported in a worker is built there, once per worker
        (tests/test_memory.py: starting the server imports nothing more)."""
        import importlib

        from . import app

        for _name, _enabled, module in app.SERVICES:
            try:
                mod = importlib.import_module(module)
            except ImportError:
                continue
            for name in getattr(mod, "ROUTE_MODULES", ()):
                try:
                    importlib.import_module(name)
                except ImportError:
                    pass
        for name in LATE_IMPORTS:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        jmap_api = sys.modules.get("mailaccess.server.jmap_api")
        if jmap_api is not None:
            try:
                jmap_api.load_methods()    # the JMAP routes import the methods as they start
            except ImportError:
                pass                       # the worker reports it as it starts

    def run(self) -> int:
        _name_logs("supervisor")
        self.pid = os.getpid()
        # the workers are forked by a loader process that exits once they
        # run: they become this process's children (a subreaper), and no
        # process keeps the loader's pages once both workers have copied them
        self.subreaper = _set_subreaper(True)
        collecting = gc.isenabled()
        try:
            return self._run()
        finally:
            if self.subreaper:
                _set_subreaper(False)
            if self.froze:
                gc.unfreeze()
            if self.preloaded:
                gc.unfreeze()
                if collecting:
                    gc.enable()

    def _run(self) -> int:
        self.listeners = bind_listeners(self.cfg)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake = (wake_r, wake_w)
        self.sel.register(wake_r, selectors.EVENT_READ, None)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        handlers = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            handlers[sig] = signal.signal(sig, self._on_signal)
        log.info("starting %d worker processes", self.n)
        try:
            if self.subreaper:
                self._start_through_loader()
            else:
                self._start_here()
            if any(s.pid for s in self.slots):
                self._loop()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, h in handlers.items():
                signal.signal(sig, h)
            self._kill_all()
            for slot in self.slots:
                if slot.sock is not None:
                    self._close(slot)
            for _, socks in self.listeners:
                for s in socks:
                    s.close()
            app = sys.modules.get("mailaccess.server.app")
            if app is not None:
                app.INHERITED.clear()
            self.sel.close()
            os.close(wake_r)
            os.close(wake_w)
        return self.exit_code

    def _start_here(self) -> None:
        """Without a subreaper (not Linux): this process loads what the
        workers share and forks them itself, keeping those pages."""
        gc.collect()
        memory.hold_collector()
        self.preloaded = True
        self._prepare()
        self.demo = self._demo_login(self.preflight())
        self.preload()
        for slot in self.slots:
            self._spawn(slot)

    def _start_through_loader(self) -> None:
        """Fork the loader: it prepares the store and the certificate,
        imports what the workers share and forks them (server/memory.py's
        rules: collector held, objects frozen at each fork), tells this
        process their pids and exits.  The workers are then this process's
        children.  Why: a page that every worker has written (Python writes
        reference counts into the objects it uses) exists once per worker
        and once more in the process they were forked from; the loader
        takes that last copy with it, while this process stays a small
        interpreter that has imported none of the server.  A worker
        restarted later is forked from this process and imports the server
        itself (server/memory.py)."""
        pairs = {s.index: socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                 for s in self.slots}
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # this process's own objects are shared with everything it forks: its
        # collections must not walk (write into) them (server/memory.py)
        gc.collect()
        memory.freeze()
        self.froze = True
        pid = os.fork()
        if pid == 0:                                    # the loader
            def run() -> int:
                os.close(r)
                return self._loader(pairs, w)
            _exit_after(run)
        os.close(w)
        for _, child_end in pairs.values():
            child_end.close()
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        try:
            info = json.loads(data)
        except ValueError:
            info = None
        if info is None or "exit" in info:
            for parent_end, _ in pairs.values():
                parent_end.close()
            if info is not None:
                # the store or the certificate refused (an error for the CLI to print)
                raise SystemExit(1 if info["exit"] is None else info["exit"])
            self.exit_code = (os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0) or 1
            return
        self.demo = info["demo"] and tuple(info["demo"])
        now = time.monotonic()
        for slot in self.slots:
            parent_end = pairs[slot.index][0]
            parent_end.setblocking(False)
            slot.pid, slot.sock, slot.started = int(info["pids"][str(slot.index)]), parent_end, now
            slot.inbuf, slot.out, slot.ready, slot.restart_at = b"", bytearray(), False, None
            self.sel.register(parent_end, selectors.EVENT_READ, slot)
            log.info("worker %d started, pid %d", slot.index, slot.pid)

    def _loader(self, pairs: dict, w: int) -> int:
        """In the loader: prepare, import, fork every worker, report, exit."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT):   # the supervisor decides
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for parent_end, _ in pairs.values():
            parent_end.close()
        gc.collect()
        memory.hold_collector()
        from ..store import StoreError

        try:
            self._prepare()
            demo = self._demo_login(self.preflight())
        except (StoreError, SystemExit) as exc:
            # the supervisor reports it, as it did when it prepared the store
            code = exc.code if isinstance(exc, SystemExit) else str(exc)
            os.write(w, json.dumps({"exit": code}).encode())
            return code if isinstance(code, int) else 1
        self.preload()
        me = os.getpid()
        pids: dict[int, int] = {}
        try:
            for slot in self.slots:
                sys.stdout.flush()
                sys.stderr.flush()
                memory.freeze()
                pid = os.fork()
                if pid == 0:                            # a worker
                    def run() -> int:
                        os.close(w)
                        for i, (_, child_end) in pairs.items():
                            if i != slot.index:
                                child_end.close()
                        return self._child(slot.index, pairs[slot.index][1], loader=me)
                    _exit_after(run)
                pids[slot.index] = pid
            os.write(w, json.dumps({"demo": demo, "pids": pids}).encode())
        except BaseException:
            for pid in pids.values():
                _kill(pid, signal.SIGKILL)
            raise
        return 0

    def _prepare(self) -> None:
        if self.prepare is not None:
            self.prepare()

    @staticmethod
    def _demo_login(demo: bool):
        """-> the demo account's (user, password) for the banner, or False."""
        if not demo:
            return False
        from . import app

        return (app.DEMO_USER, app.DEMO_PASSWORD)

    def _on_signal(self, signum, frame) -> None:
        self.signals.append(signum)

    def _spawn(self, slot: Slot) -> None:
        """Fork SLOT's worker from this process (a restart; every start
        without a subreaper)."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        if threading.active_count() > 1:
            log.warning("forking with %d threads alive", threading.active_count())
        if self.preloaded:
            memory.freeze()
        pid = os.fork()
        if pid == 0:                                    # the worker
            def run() -> int:
                parent_end.close()
                return self._child(slot.index, child_end)
            _exit_after(run)
        child_end.close()
        parent_end.setblocking(False)
        slot.pid, slot.sock, slot.started = pid, parent_end, time.monotonic()
        slot.inbuf, slot.out, slot.ready, slot.restart_at = b"", bytearray(), False, None
        self.sel.register(parent_end, selectors.EVENT_READ, slot)
        log.info("worker %d started, pid %d", slot.index, pid)

    def _child(self, index: int, sock: socket.socket, loader: int | None = None) -> int:
        """In the forked worker: forget the supervisor's state, run the
        server.  LOADER: the pid of the loader that forked it (the worker
        waits until it has exited and the supervisor is its parent)."""
        import trio

        from . import app

        signal.set_wakeup_fd(-1)
        memory.release_collector()
        # the first SIGTERM/SIGINT drains (app.serve's watcher); any later
        # one is ignored (the supervisor's stop_timeout backs it up)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if loader is not None:
            deadline = time.monotonic() + 60
            while os.getppid() == loader and time.monotonic() < deadline:
                time.sleep(0.001)
        ppid = os.getppid()
        if ppid != self.pid:
            return 1                    # the supervisor is gone
        _die_with_parent()
        if os.getppid() != ppid:
            return 1
        for slot in self.slots:
            if slot.sock is not None:
                slot.sock.close()
        self.sel.close()
        os.close(self._wake[0])
        os.close(self._wake[1])
        _name_logs(f"worker {index}")
        app.INHERITED[:] = self.listeners
        link = WorkerLink(index, self.n, sock)
        trio.run(lambda: app.serve(self.cfg, worker=link))
        return 0

    # the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            timeout = None
            due = [s.restart_at for s in self.slots if s.restart_at is not None]
            if due:
                timeout = max(0.0, min(due) - now)
            if self.stopping:
                left = max(0.0, self.stop_deadline - now)
                timeout = left if timeout is None else min(timeout, left)
            for key, mask in self.sel.select(timeout):
                if key.data is None:
                    try:
                        while os.read(self._wake[0], 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                slot = key.data
                if mask & selectors.EVENT_READ:
                    self._read(slot)
                if mask & selectors.EVENT_WRITE and slot.sock is not None:
                    self._flush(slot)
            self._handle_signals()
            self._reap()
            if self.stopping:
                if not any(s.pid for s in self.slots):
                    log.info("every worker has stopped")
                    return
                if time.monotonic() >= self.stop_deadline:
                    for s in self.slots:
                        if s.pid:
                            log.warning("worker %d (pid %d) did not stop in %gs: killing it",
                                        s.index, s.pid, self.cfg.server.stop_timeout)
                            _kill(s.pid, signal.SIGKILL)
                    self.stop_deadline = time.monotonic() + 5.0
                continue
            now = time.monotonic()
            for s in self.slots:
                if s.restart_at is not None and s.restart_at <= now and not s.pid:
                    self._spawn(s)

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGCHLD:
                continue                    # _reap looks
            if not self.stopping:
                log.info("received %s: stopping every worker", signal.Signals(signum).name)
                self.stop()

    def stop(self) -> None:
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.cfg.server.stop_timeout
        for s in self.slots:
            s.restart_at = None
            if s.pid:
                if s.sock is not None:
                    s.out += b"!S\n"
                    self._flush(s)
                _kill(s.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            self._gone(slot, status)

    def _gone(self, slot: Slot, status: int) -> None:
        if os.WIFSIGNALED(status):
            how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            how = f"exited with status {os.WEXITSTATUS(status)}"
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
        lived = time.monotonic() - slot.started
        pid = slot.pid
        if slot.sock is not None:
            self._close(slot)
        slot.pid = 0
        if self.stopping:
            log.info("worker %d (pid %d) %s", slot.index, pid, how)
            return
        if not self.all_ready_once:
            # a worker that cannot start (bad certificate, port, store):
            # the server cannot start; stop the others and say why
            log.error("worker %d %s while starting: stopping", slot.index, how)
            self.exit_code = code or 1
            self.stop()
            return
        slot.fast_deaths = slot.fast_deaths + 1 if lived < GOOD_RUN else 0
        delay = min(self.cfg.server.restart_delay * 2 ** max(0, slot.fast_deaths - 1),
                    self.cfg.server.restart_max_delay)
        slot.restart_at = time.monotonic() + delay
        log.warning("worker %d (pid %d) %s; restarting it in %gs", slot.index, pid, how,
                    delay)

    def _close(self, slot: Slot) -> None:
        try:
            self.sel.unregister(slot.sock)
        except (KeyError, ValueError):
            pass
        slot.sock.close()
        slot.sock = None
        slot.out = bytearray()
        slot.inbuf = b""

    def _read(self, slot: Slot) -> None:
        if slot.sock is None:
            return
        try:
            data = slot.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(slot)           # its exit is reaped
            return
        buf = slot.inbuf + data
        *lines, slot.inbuf = buf.split(b"\n")
        fan = []
        for line in lines:
            if line.startswith(b"!R"):
                self._ready(slot, line)
            elif line.startswith(b"!"):
                log.warning("unknown message from worker %d: %r", slot.index, line[:80])
            else:
                fan.append(line)
        if fan:
            data = b"\n".join(fan) + b"\n"
            for other in self.slots:
                if other is not slot and other.sock is not None:
                    other.out += data
                    self._flush(other)

    def _flush(self, slot: Slot) -> None:
        if slot.out:
            try:
                n = slot.sock.send(slot.out)
            except BlockingIOError:
                n = 0
            except OSError:
                n = len(slot.out)         # it is gone; its exit is reaped
            del slot.out[:n]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if slot.out else 0)
        self.sel.modify(slot.sock, events, slot)
        if len(slot.out) > MAX_PENDING and slot.pid:
            log.error("worker %d (pid %d) reads nothing from its channel: killing it",
                      slot.index, slot.pid)
            _kill(slot.pid, signal.SIGKILL)
            self._close(slot)

    def _ready(self, slot: Slot, line: bytes) -> None:
        try:
            info = json.loads(line[2:])
        except ValueError:
            info = {}
        slot.ready = True
        log.info("worker %d (pid %d) is ready", slot.index, slot.pid)
        if not self.bound:
            self.bound = {k: [tuple(a) for a in v] for k, v in info.get("bound", {}).items()}
        if not self.all_ready_once and all(s.ready for s in self.slots):
            self.all_ready_once = True
            log.info("mailaccess is ready: %d workers; data in %s", self.n, self.cfg.data_dir)
            if self.banner is not None:
                self.banner(self.bound, self.demo)

    def _kill_all(self) -> None:
        """Leaving with workers alive (an error in the supervisor): stop them."""
        live = [s for s in self.slots if s.pid]
        for s in live:
            _kill(s.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.server.stop_timeout
        for s in live:
            while time.monotonic() < deadline:
                try:
                    pid, _ = os.waitpid(s.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    break
                time.sleep(0.05)
            else:
                _kill(s.pid, signal.SIGKILL)
            s.pid = 0


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _set_subreaper(on: bool) -> bool:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants of this process (the
    workers, once their loader exits) become its children.  -> whether it
    is set (False where prctl is missing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, int(on), 0, 0, 0) == 0      # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def supervise(cfg: Config, *, banner=None, prepare=None) -> int:
    """Run the server as ``cfg.server.count()`` worker processes until
    SIGTERM/SIGINT; -> the exit status.  PREPARE: called before the store
    is opened."""
    return Supervisor(cfg, banner=banner, prepare=prepare).run()


def _exit_after(run) -> NoReturn:
    """In a forked child: ``run()``, then leave with its exit code (a
    SystemExit's code or message, 1 on any other exception, printed), never
    returning into the parent's stack."""
    code = 1
    try:
        code = run()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"error: {exc.code}", file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
