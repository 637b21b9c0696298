"""The configuration: one TOML file, every setting with an embedded default.

``load(path)`` reads the file (stdlib tomllib) and returns a frozen Config;
an unknown key or a bad value raises ConfigError naming the key.  With no file
the defaults give the embedded mode: loopback listeners on unprivileged ports,
data in ./mailaccess-data, a self-signed certificate made on first start.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    enabled: bool = True


@dataclass(frozen=True)
class ImapConfig:
    listen: Listener = Listener("127.0.0.1", 1143)
    listen_tls: Listener = Listener("127.0.0.1", 1993)
    max_line: int = 65536
    max_literal: int = 64 * 1024 * 1024      # APPENDLIMIT
    max_sessions_per_user: int = 100
    idle_timeout: int = 30 * 60               # RFC 9051 5.4: at least 30 minutes
    # a fixed pause before each failed login's NO; the growing penalty per
    # address and user name, applied before every attempt, is [auth] penalty_*
    login_failure_delay: float = 1.0
    # LOGINDISABLED on unencrypted connections that are not from loopback
    plaintext_login_on_loopback_only: bool = True
    # RFC 7888: "plus" accepts non-synchronizing literals of any size up to
    # max_literal (LITERAL+); "minus" only up to 4096 bytes (LITERAL-)
    nonsync_literals: str = "plus"
    # before login: one command (lines and literals) of at most this many
    # bytes; a bigger {n} gets NO [TOOBIG], a bigger {n+} closes (RFC 7888 §4)
    preauth_max_command: int = 8192
    # connections at once (from accept, TLS handshake included), and from
    # one client address not logged in yet; beyond either the greeting is
    # "* BYE [UNAVAILABLE]" and the connection closes (IMAPS: closed before
    # the handshake).  Logged-in connections count per user (above).
    max_connections: int = 10000
    max_preauth_per_ip: int = 256
    # literal bytes (APPEND messages on their way) that one user's connections
    # to a worker may hold at once; 0: four times max_literal.  A literal past
    # it gets NO [LIMIT] before "+" (a {n+} one is read and dropped: BAD
    # [LIMIT]); each session could hold two max_literal before
    max_literal_bytes_per_user: int = 0
    # SORT orders, THREAD answers and LIST answers kept per worker process
    # (bytes, least recently used out first); 0: none kept
    # (server/imap_sortcache.py, server/imap_list.py)
    sort_cache_bytes: int = 32 * 1024 * 1024
    # flags columns kept per worker process for SEARCH on flags, keywords
    # and modseq (16 bytes a message, least recently used out first); 0:
    # none, such a SEARCH reads every record (views/flag_column.py)
    flag_cache_bytes: int = 16 * 1024 * 1024

    def __post_init__(self):
        if self.max_connections < 1 or self.max_preauth_per_ip < 1:
            raise ValueError("max_connections and max_preauth_per_ip are at least 1")
        if self.sort_cache_bytes < 0:
            raise ValueError("sort_cache_bytes is at least 0")
        if self.flag_cache_bytes < 0:
            raise ValueError("flag_cache_bytes is at least 0")
        if self.max_literal_bytes_per_user and self.max_literal_bytes_per_user < self.max_literal:
            raise ValueError("max_literal_bytes_per_user is at least max_literal")

    @property
    def literal_budget(self) -> int:
        """max_literal_bytes_per_user, its default (0) made explicit."""
        return self.max_literal_bytes_per_user or 4 * self.max_literal


@dataclass(frozen=True)
class AuthConfig:
    """The login service (mailaccess/auth), shared by every protocol.

    Password hashes are argon2id with OWASP's first recommended setting
    (m=19 MiB, t=2, p=1; Password Storage Cheat Sheet), rather than
    argon2-cffi's default, RFC 9106 section 4's second recommended option
    (m=64 MiB, t=3, p=4): the same resistance per OWASP at under a third of
    the memory, which matters when a server verifies many logins at once.
    Hashes made with other parameters keep verifying and are rehashed with
    these at the next successful login.  docs/operations.md ("Logins").
    """

    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # at most this many argon2 verifications run at once (worker threads),
    # at most verify_queue more wait; beyond that a login is "unavailable"
    # (IMAP: NO [UNAVAILABLE]) and costs nothing
    verify_threads: int = 2
    verify_queue: int = 64
    # successful verifications remembered in memory (keyed by an HMAC of
    # user and password under a per-process key); 0 disables the cache
    cache_ttl: float = 60.0
    cache_size: int = 10_000
    # failed-login penalty (Dovecot's auth penalty is the model): after n
    # failures from one address (or against one user name) the next attempt
    # waits penalty_initial * 2^(n-1) seconds, at most penalty_max; one
    # failure is forgotten per penalty_decay seconds without failures.
    # penalty_initial = 0 disables it.
    penalty_initial: float = 1.0
    penalty_max: float = 15.0
    penalty_decay: float = 300.0
    penalty_entries: int = 65_536    # addresses and user names remembered at most

    def __post_init__(self):
        if self.argon2_time_cost < 1 or self.argon2_parallelism < 1:
            raise ValueError("argon2_time_cost and argon2_parallelism are at least 1")
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError("argon2_memory_kib is at least 8 x argon2_parallelism")
        if self.verify_threads < 1:
            raise ValueError("verify_threads is at least 1")


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP service (server/http.py): JMAP now, ActiveSync later.

    Plain HTTP on ``listen`` (put a TLS-terminating reverse proxy in front,
    or set ``tls = true`` to serve HTTPS with the [tls] certificate).
    ``public_url`` is the base URL clients reach the service at
    (``https://mail.example.org``); the JMAP Session resource builds its
    absolute URLs from it, or, when empty, from each request's Host header and
    scheme.  docs/operations.md ("HTTP and JMAP").
    """

    listen: Listener = Listener("127.0.0.1", 8080)
    tls: bool = False
    public_url: str = ""
    # connections: at most this many at once, and from one client address
    max_connections: int = 1024
    max_connections_per_ip: int = 64
    # the request line and headers: at most this many bytes, within
    # header_timeout seconds of their first byte
    max_header_bytes: int = 16384
    header_timeout: float = 30.0
    # a request body (other than the JMAP API's and uploads', which have
    # [jmap] limits): at most this many bytes, read within body_timeout
    max_body_bytes: int = 1024 * 1024
    body_timeout: float = 300.0
    # a response must be written within this many seconds
    write_timeout: float = 60.0
    # a kept-alive connection with no request for this long is closed
    keepalive_timeout: float = 60.0
    # long-lived push streams (EventSource, WebSocket) of one user at once
    max_push_streams_per_user: int = 16
    # on shutdown: in-flight requests get this long to finish
    shutdown_grace: float = 10.0
    # reverse proxies whose X-Forwarded-For (last address) and
    # X-Forwarded-Proto are believed: the client's address then counts for
    # the login penalty, the logs and the Session's URL scheme
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self):
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url must start with http:// or https://")
        if self.max_connections < 1 or self.max_connections_per_ip < 1:
            raise ValueError("max_connections and max_connections_per_ip are at least 1")
        if self.max_header_bytes < 1024:
            raise ValueError("max_header_bytes is at least 1024")


@dataclass(frozen=True)
class JmapConfig:
    """JMAP limits (RFC 8620 §2 core capability), advertised in the Session
    resource and enforced.  Uploads are kept upload_ttl seconds (at least
    an hour: RFC 8620 §6.1), at most max_pending_upload_bytes per account."""

    max_size_request: int = 10_000_000
    max_calls_in_request: int = 64
    max_objects_in_get: int = 1000
    max_objects_in_set: int = 1000
    max_concurrent_requests: int = 8
    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    upload_ttl: int = 24 * 3600
    # bytes of unexpired uploads one account may hold at once (0: no limit)
    max_pending_upload_bytes: int = 1_000_000_000
    # characters of body values (Email/get, Email/parse) in one response,
    # all its method calls together; past it a call is requestTooLarge
    max_size_response: int = 100_000_000
    # days a sent or canceled EmailSubmission is kept (then destroyed, and
    # /changes says so; RFC 8621 7 lets the server); 0 = kept until destroyed
    submission_retention_days: int = 30

    def __post_init__(self):
        if self.upload_ttl < 3600:
            raise ValueError("upload_ttl is at least 3600 seconds (RFC 8620 §6.1)")
        if self.submission_retention_days < 0:
            raise ValueError("submission_retention_days is 0 (keep) or more")
        if min(self.max_size_request, self.max_calls_in_request, self.max_objects_in_get,
               self.max_objects_in_set, self.max_concurrent_requests,
               self.max_size_upload, self.max_concurrent_upload,
               self.max_size_response) < 1:
            raise ValueError("every JMAP limit is at least 1")

    def limits(self):
        from .proto.jmap.request import Limits

        return Limits(max_size_request=self.max_size_request,
                      max_calls_in_request=self.max_calls_in_request,
                      max_objects_in_get=self.max_objects_in_get,
                      max_objects_in_set=self.max_objects_in_set,
                      max_size_upload=self.max_size_upload,
                      max_concurrent_upload=self.max_concurrent_upload,
                      max_concurrent_requests=self.max_concurrent_requests)


@dataclass(frozen=True)
class EasConfig:
    """Exchange ActiveSync (server/eas.py, docs/activesync.md): the protocol
    versions advertised, request limits, and the device policy sent by
    Provision (MS-ASPROV EASProvisionDoc).  The default policy asks the
    device for nothing (no device password)."""

    versions: tuple = ("12.1", "14.0", "14.1", "16.0", "16.1")
    max_body_bytes: int = 32 * 1024 * 1024
    max_concurrent_requests: int = 8
    require_provisioning: bool = True
    device_password_enabled: bool = False
    alphanumeric_password_required: bool = False
    min_password_length: int = 4
    min_password_complex_characters: int = 1
    allow_simple_password: bool = True
    max_inactivity_lock: int = 0            # seconds; 0: no limit
    max_failed_attempts: int = 0            # before a wipe; 0: no limit
    password_expiration: int = 0            # days; 0: never
    password_history: int = 0
    require_device_encryption: bool = False
    max_attachment_size: int = 0            # bytes; 0: no limit
    # long-lived requests (server/eas_push.py, eas_ping.py): the Ping (and
    # hanging Sync) HeartbeatInterval bounds in seconds (Exchange's: 60 to
    # 3540, MS-ASCMD 2.2.3.88.1 note 6), the folders one Ping may watch, and
    # how many requests may wait at once per user and in all (503 beyond)
    min_heartbeat: int = 60
    max_heartbeat: int = 3540
    max_ping_folders: int = 300
    max_pings_per_user: int = 16
    max_pings: int = 10000
    # devices (DeviceIds) one account may have state for (Exchange's default
    # partnership limit); a new one beyond gets Status 177 (server/eas.py)
    max_devices_per_user: int = 100

    def __post_init__(self):
        from .proto.eas.request import VERSIONS

        if self.max_devices_per_user < 1:
            raise ValueError("max_devices_per_user is at least 1")

        if not 1 <= self.min_heartbeat <= self.max_heartbeat:
            raise ValueError("min_heartbeat is at least 1 and at most max_heartbeat")
        if self.max_ping_folders < 1 or self.max_pings_per_user < 1 or self.max_pings < 1:
            raise ValueError("max_ping_folders, max_pings_per_user and max_pings are at least 1")

        bad = [v for v in self.versions if v not in VERSIONS]
        if bad or not self.versions:
            raise ValueError(f"versions: a non-empty subset of {', '.join(VERSIONS)}")
        if self.max_body_bytes < 1024 or self.max_concurrent_requests < 1:
            raise ValueError("max_body_bytes is at least 1024, max_concurrent_requests 1")


@dataclass(frozen=True)
class LmtpConfig:
    listen: Listener = Listener("127.0.0.1", 2424)
    max_message_size: int = 64 * 1024 * 1024
    max_recipients: int = 1000
    local_domains: tuple[str, ...] = ("localhost",)
    timeout: int = 300


@dataclass(frozen=True)
class SmtpConfig:
    """Outbound mail (server/outbound.py, docs/operations.md "Outbound
    mail"): the relay every remote recipient goes through, and the queue's
    schedule.  With no relay_host, remote recipients fail at once (local
    ones are delivered directly)."""

    relay_host: str = ""
    relay_port: int = 25
    starttls: bool = False        # STARTTLS before anything else (required when true)
    username: str = ""            # AUTH after EHLO (and STARTTLS) when set
    password: str = ""
    timeout: float = 60.0         # seconds per SMTP conversation step
    connections: int = 4          # relay conversations at once
    hold: float = 0.0             # seconds a submission stays "pending" (undo window)
    retry_first: float = 60.0     # first retry after a temporary failure; doubles
    retry_max: float = 3600.0     # longest wait between attempts
    expire: int = 5 * 86400       # seconds after which a message still queued fails
    max_recipients: int = 100     # per submission (tooManyRecipients)
    max_size: int = 50 * 1024 * 1024   # bytes per submitted message (tooLarge)
    send_enabled: bool = True     # false: every EmailSubmission is forbiddenToSend


@dataclass(frozen=True)
class VacationConfig:
    """Automatic replies of the vacation response (RFC 3834)."""

    period_days: int = 7          # one reply per sender per this many days
    max_senders: int = 10_000     # senders remembered per account at most


@dataclass(frozen=True)
class TlsConfig:
    cert: str = ""          # PEM chain; empty = self-signed, generated on first start
    key: str = ""
    hostnames: tuple[str, ...] = ("localhost",)


@dataclass(frozen=True)
class StoreConfig:
    quota: int = 0          # bytes per account, 0 = unlimited
    map_size: int = 0       # initial LMDB map; 0 = automatic (grows by itself)
    # Change-log retention (docs/operations.md): a client state older than what
    # is kept gets a full resync (JMAP cannotCalculateChanges, IMAP QRESYNC
    # VANISHED by range).  0 disables a limit.
    changelog_max_age_days: int = 90
    changelog_max_entries: int = 100_000    # logged object changes kept per account
    changelog_prune_slice: int = 2_000      # rows deleted per pruning transaction at most
    changelog_sweep_interval: int = 300     # seconds between age sweeps
    # bytes of email facts (query/facts.py: what SORT, THREAD and SENT*
    # searches read) each worker process remembers; 0 keeps none
    facts_cache_bytes: int = 32 * 1024 * 1024
    # mailboxes one account may have (every protocol's create); 0 = no limit
    max_mailboxes_per_account: int = 10_000

    def __post_init__(self):
        if self.max_mailboxes_per_account < 0:
            raise ValueError("max_mailboxes_per_account is 0 (no limit) or more")

    def retention(self):
        from .store.changelog import Retention

        return Retention(max_age=self.changelog_max_age_days * 86400,
                         max_entries=self.changelog_max_entries,
                         slice=max(1, self.changelog_prune_slice),
                         sweep_interval=float(self.changelog_sweep_interval))


@dataclass(frozen=True)
class PushConfig:
    """JMAP PushSubscription delivery (RFC 8620 §7.2, server/push_delivery.py)."""

    enabled: bool = True            # run the delivery service
    max_expires_days: int = 7       # a subscription lives at most this long (renewable)
    max_per_user: int = 20
    # plain http:// push URLs, and push URLs on loopback addresses, are
    # refused unless this is set (tests, or a push gateway on this host)
    allow_loopback_http: bool = False
    # push URLs resolving to private / link-local addresses are refused
    # (server-side request forgery) unless this is set (a LAN push gateway)
    allow_private_addresses: bool = False
    connect_timeout: float = 10.0
    io_timeout: float = 30.0        # each write, and each read of the answer
    ttl: int = 86400                # RFC 8030 TTL header: how long a push service may hold it
    retries: int = 5                # attempts after the first one (429/5xx/timeouts)
    retry_delay: float = 2.0        # first backoff, doubled per attempt (Retry-After wins)
    retry_max_delay: float = 600.0
    sweep_interval: int = 3600      # seconds between sweeps of expired subscriptions


@dataclass(frozen=True)
class ServerConfig:
    """The process model of `mailaccess serve` (server/workers.py,
    docs/architecture.md "Worker processes").  ``workers`` processes share
    the listeners and the store; 0 means one per core (os.cpu_count());
    1 is the single process (no supervisor: the setting for debugging)."""

    workers: int = 0
    # a worker that dies is restarted after restart_delay seconds, doubled
    # for each death within a minute of its start, at most restart_max_delay
    restart_delay: float = 0.5
    restart_max_delay: float = 30.0
    # on SIGTERM/SIGINT: workers that have not drained after this many
    # seconds are killed (the store is durable at every acknowledged write)
    stop_timeout: float = 60.0

    def count(self) -> int:
        """The number of worker processes this setting means."""
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    data_dir: str = "mailaccess-data"
    hostname: str = "localhost"
    log_level: str = "info"
    demo_account: bool = True   # embedded default: create demo/demo on first start
    imap: ImapConfig = ImapConfig()
    auth: AuthConfig = AuthConfig()
    http: HttpConfig = HttpConfig()
    jmap: JmapConfig = JmapConfig()
    eas: EasConfig = EasConfig()
    lmtp: LmtpConfig = LmtpConfig()
    tls: TlsConfig = TlsConfig()
    store: StoreConfig = StoreConfig()
    smtp: SmtpConfig = SmtpConfig()
    vacation: VacationConfig = VacationConfig()
    push: PushConfig = PushConfig()
    server: ServerConfig = ServerConfig()

    @property
    def store_path(self) -> str:
        return os.path.join(self.data_dir, "store")


def _build(base, data: dict, where: str):
    """BASE (a dataclass instance) with the settings of DATA applied."""
    cls = type(base)
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        path = f"{where}.{key}" if where else key
        if name not in fields:
            raise ConfigError(f"unknown setting {path!r}; known: "
                              + ", ".join(sorted(fields)))
        kwargs[name] = _convert(getattr(base, name), value, path)
    try:
        return dataclasses.replace(base, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _convert(default, value, path: str):
    if dataclasses.is_dataclass(default):
        if isinstance(default, Listener) and isinstance(value, str):
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"{path}: expected \"host:port\", got {value!r}")
            value = {"host": host.strip("[]"), "port": int(port)}
        return _build(default, value, path)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{path}: expected a non-negative integer, got {value!r}")
        if path.endswith("port") and not 0 <= value <= 65535:
            raise ConfigError(f"{path}: a port is 0-65535")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: expected a non-negative number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings")
        return tuple(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        if path == "log_level" and value.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{path}: one of debug, info, warning, error")
        if path == "imap.nonsync_literals" and value not in ("plus", "minus"):
            raise ConfigError(f"{path}: \"plus\" (LITERAL+) or \"minus\" (LITERAL-)")
        return value
    raise ConfigError(f"{path}: cannot set this")


def load(path: str | None = None, *, data_dir: str | None = None) -> Config:
    """Read PATH (None = defaults only); DATA_DIR overrides the file's data_dir."""
    cfg = Config()
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        cfg = _build(cfg, data, "")
        if "data_dir" in data and not os.path.isabs(cfg.data_dir):
            base = os.path.dirname(os.path.abspath(path))
            cfg = dataclasses.replace(cfg, data_dir=os.path.join(base, cfg.data_dir))
    if data_dir:
        cfg = dataclasses.replace(cfg, data_dir=data_dir)
    return cfg
