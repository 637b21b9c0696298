"""`mailaccess serve`: the process.  One root nursery, every service a sibling.

The store writer thread starts first and is closed last (after every session
is gone, so every acknowledged write is on disk).  Protocol services register
themselves in SERVICES; each is ``async def serve(ctx, task_status)`` that
binds its listeners, reports the bound addresses through ``task_status`` and
serves until cancelled.  SIGINT/SIGTERM cancel the nursery: sessions end,
in-flight writes finish (they are shielded), the store is flushed and closed.

With ``[server] workers`` above 1 this runs in each worker process
(server/workers.py starts them): the listeners are the ones the supervisor
bound (``open_listeners`` takes them from ``INHERITED``), the worker's
channel carries commit notifications to and from the other workers, and
services registered as ``singleton`` (the outbound queue, push delivery,
the HTTP routes' background sweeps, the change-log age sweep) run in the
primary worker only.
"""
from __future__ import annotations

import errno
import logging
import signal
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import trio

from .. import _speedups, accounts
from ..auth.hashing import Argon2Params, Hasher
from ..auth.service import LoginService
from ..bus import Bus
from ..config import Config
from ..store import Store
from . import memory

log = logging.getLogger("mailaccess.server")

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"


@dataclass
class ServerContext:
    cfg: Config
    store: Store
    bus: Bus
    tls_cert: str = ""
    tls_key: str = ""
    bound: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    # the one login service (mailaccess/auth): every protocol checks
    # passwords through it, sharing its verification pool, credential cache
    # and failed-login penalty.  Made from cfg.auth when not given.
    auth: LoginService | None = None
    # the worker process this runs in (server/workers.py WorkerLink), None
    # in the single-process server
    worker: object | None = None
    # Only what every service shares.  A service's own state (IMAP's shared
    # sequence maps and session counts: server/imap.py ImapService) lives in
    # that service, made by its serve().

    def __post_init__(self):
        if self.auth is None:
            self.auth = LoginService(self.store, self.cfg.auth)

    @property
    def primary(self) -> bool:
        """Whether this process runs the singletons (always, with one process)."""
        return self.worker is None or self.worker.primary


ServeFn = Callable[..., Awaitable[None]]
SERVICES: list[tuple[str, Callable[[Config], bool], str]] = []
#: services that run in one process only (the primary worker)
SINGLETONS: set[str] = set()


def register(name: str, module: str, enabled: Callable[[Config], bool], *,
             singleton: bool = False) -> None:
    """Register service NAME whose ``serve(ctx, task_status=...)`` lives in MODULE.
    A SINGLETON service runs in the primary worker only."""
    SERVICES.append((name, enabled, module))
    if singleton:
        SINGLETONS.add(name)


register("lmtp", "mailaccess.server.lmtp", lambda cfg: cfg.lmtp.listen.enabled)
register("imap", "mailaccess.server.imap",
         lambda cfg: cfg.imap.listen.enabled or cfg.imap.listen_tls.enabled)
register("outbound", "mailaccess.server.outbound", lambda cfg: True, singleton=True)
register("http", "mailaccess.server.http", lambda cfg: cfg.http.listen.enabled)
register("push", "mailaccess.server.push_delivery", lambda cfg: cfg.push.enabled,
         singleton=True)

#: listening sockets bound by the supervisor before it started the workers:
#: (the config's Listener, its sockets) (server/workers.py)
INHERITED: list[tuple[object, list]] = []


def _inherited(listener) -> list | None:
    for ln, socks in INHERITED:
        # port 0 ("any free port") is told apart by the Listener itself
        if ln is listener or (listener.port and ln == listener):
            return socks
    return None


def open_store(cfg: Config, *, create: bool = True, readonly: bool = False,
               sweep: bool = True) -> Store:
    """The configured store; CREATE=False refuses to make one where none is.
    SWEEP=False: this process never runs the change log's age sweep (a
    worker other than the primary)."""
    retention = cfg.store.retention()
    from ..query import facts          # its per-process cache's budget
    facts.configure(cfg.store.facts_cache_bytes)
    if not sweep:
        import dataclasses

        retention = dataclasses.replace(retention, sweep_interval=0.0)
    # LMDB's reader table is shared by every process of the server (the
    # first to open the environment sizes it: the supervisor): room for each
    # worker's cached read transactions (64) and its readers in flight
    return Store(cfg.store_path, map_size=cfg.store.map_size or None,
                 retention=retention, create=create, readonly=readonly,
                 max_readers=max(1024, 160 * cfg.server.count()),
                 max_mailboxes=cfg.store.max_mailboxes_per_account)


def ensure_demo_account(cfg: Config, store: Store) -> bool:
    with store.view() as v:
        if v.accounts():
            return False
    accounts.add_user(store, DEMO_USER, DEMO_PASSWORD,
                      hasher=Hasher(Argon2Params.from_config(cfg.auth)))
    return True


async def serve(cfg: Config, *, task_status=trio.TASK_STATUS_IGNORED,
                install_signals: bool = True, worker=None) -> None:
    """Run every service until cancelled.  WORKER (server/workers.py
    WorkerLink): this is one of several worker processes."""
    import importlib

    from .tls import ensure_certificate

    primary = worker is None or worker.primary
    store = open_store(cfg, sweep=primary)
    store.start()
    bus = Bus()
    bus.attach()
    store.on_commit.append(bus.on_commit)
    if worker is not None:
        store.on_commit.append(worker.on_commit)     # to the other workers
    try:
        cert, key = ensure_certificate(cfg)
        ctx = ServerContext(cfg, store, bus, cert, key, worker=worker)
        a = cfg.auth
        log.debug("logins: argon2id m=%d KiB t=%d p=%d, %d verifications at once, %d waiting",
                  a.argon2_memory_kib, a.argon2_time_cost, a.argon2_parallelism,
                  a.verify_threads, a.verify_queue)
        if primary:
            compiled, line = _speedups.describe()
            (log.info if compiled else log.warning)("%s", line)
        if cfg.demo_account and ensure_demo_account(cfg, store):
            log.info("created the demo account: user %r, password %r", DEMO_USER, DEMO_PASSWORD)
        async with trio.open_nursery() as nursery:
            if install_signals:
                nursery.start_soon(_signal_watcher, nursery.cancel_scope)
                # the server's own process: return freed heap pages (server/memory.py)
                nursery.start_soon(memory.trim_periodically)
            if worker is not None:
                await nursery.start(worker.run, ctx, nursery.cancel_scope)
            for name, enabled, module in SERVICES:
                if not enabled(cfg) or (name in SINGLETONS and not primary):
                    continue
                try:
                    mod = importlib.import_module(module)
                except ImportError as exc:
                    log.warning("service %s is not available (%s)", name, exc)
                    continue
                before = set(ctx.bound)
                ctx.bound[name] = await nursery.start(mod.serve, ctx)
                for svc in [name] + sorted(set(ctx.bound) - before - {name}):
                    for host, port in ctx.bound[svc]:
                        log.info("%s listening on %s:%d", svc, host, port)
            log.info("mailaccess is ready; data in %s", cfg.data_dir)
            if worker is not None:
                worker.ready(ctx)
            task_status.started(ctx)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(store.close)
        log.info("store flushed and closed")


async def _signal_watcher(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: draining connections and flushing the store",
                     signal.Signals(signum).name)
            scope.cancel()
            return


async def open_listeners(listener) -> list[trio.SocketListener]:
    inherited = _inherited(listener)
    if inherited is not None:
        return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in inherited]
    try:
        return await trio.open_tcp_listeners(listener.port, host=listener.host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"cannot listen on {listener.host}:{listener.port}: the port is in use. "
                "Stop the other server or pick another port in the config file.") from None
        raise


def bound_addresses(listeners) -> list[tuple[str, int]]:
    out = []
    for ln in listeners:
        host, port = ln.socket.getsockname()[:2]
        out.append((host, port))
    return out


async def serve_connections(name: str, listeners, handler) -> None:
    """trio.serve_listeners, with each connection's crash logged and contained."""

    async def guarded(stream):
        try:
            await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        except Exception:
            log.exception("%s connection failed", name)
        finally:
            if type(stream) is trio.SocketStream:
                # what aclose does, without the cancelled checkpoint of
                # aclose_forcefully (an exception per connection)
                stream.socket.close()
            else:
                await trio.aclose_forcefully(stream)

    await trio.serve_listeners(guarded, listeners)
