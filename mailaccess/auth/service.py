"""The login service: one place where every protocol checks a password.

Protocol-neutral: IMAP LOGIN/AUTHENTICATE use it now, and the HTTP services
(JMAP, ActiveSync: Basic credentials on every request) will use the same
object.  ``await login(user, password, address=...)`` returns a
``LoginResult``: OK with the account, FAILED, or UNAVAILABLE when the
verification pool is full (IMAP answers ``NO [UNAVAILABLE]``).  In order:

1. names that cannot be account names (empty, over 255 bytes, with spaces or
   control characters) fail at once, counted as failures, without argon2 and
   without building a store key;
2. the penalty (penalty.py) for the address and user name is waited out;
3. a credential-cache hit (cache.py) whose account still has the verified
   hash succeeds without argon2;
4. otherwise argon2 runs in the bounded pool (pool.py) against the stored
   hash, or a dummy for unknown users;
5. a success is cached, and a hash made with other parameters than the
   configured ones is replaced through the store's writer; a failure is
   counted and logged with address, user and penalty (the same wrong
   password again from the same address is logged, not counted again).

Mechanisms that verify the proof themselves (SCRAM) call ``throttle`` before
they answer and ``record`` after.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

from .. import accounts, storeio
from ..store import Store, StoreError
from .cache import CredentialCache
from .hashing import Argon2Params, Hasher
from .penalty import Penalty
from .pool import Unavailable, VerifyPool

log = logging.getLogger("mailaccess.auth")


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class LoginResult:
    status: Status
    account: int | None = None
    name: str | None = None      # the account's stored name
    cached: bool = False         # verified from the cache, without argon2

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def unavailable(self) -> bool:
        return self.status is Status.UNAVAILABLE


FAILED = LoginResult(Status.FAILED)
UNAVAILABLE = LoginResult(Status.UNAVAILABLE)


class LoginService:
    def __init__(self, store: Store, cfg, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] | None = None):
        """CFG: config.AuthConfig.  CLOCK and SLEEP are replaceable for tests."""
        self.store = store
        self.cfg = cfg
        self.hasher = Hasher(Argon2Params.from_config(cfg))
        self.pool = VerifyPool(cfg.verify_threads, cfg.verify_queue)
        self.cache = CredentialCache(cfg.cache_ttl, cfg.cache_size, clock=clock)
        self.penalty = Penalty(cfg.penalty_initial, cfg.penalty_max, cfg.penalty_decay,
                               cfg.penalty_entries, clock=clock)
        self._sleep = sleep or trio.sleep

    # --- password logins (LOGIN, SASL PLAIN/LOGIN, HTTP Basic) ---------------------------

    async def login(self, user: str, password: str, *, address: str = "") -> LoginResult:
        if not accounts.valid_name(user) or not password:
            await self.throttle(address, None)
            self.record(address, user, ok=False, known=False)
            return FAILED
        await self.throttle(address, user)
        a = accounts.lookup(self.store, user)
        hit = self.cache.get(user, password)
        if hit is not None:
            if a is not None and a.id == hit.account and a.password_hash == hit.password_hash:
                self.record(address, a.name, ok=True, known=True)
                return LoginResult(Status.OK, a.id, a.name, cached=True)
            self.cache.forget(user, password)     # password changed or account gone
        stored = a.password_hash if a is not None else None
        try:
            checked = await self.pool.run(self.hasher.check, stored, password)
        except Unavailable:
            log.warning("login from %s for %r refused: %d verifications running, %d waiting",
                        address or "?", user, self.pool.running, self.pool.waiting)
            return UNAVAILABLE
        if not checked.ok or a is None:
            self.record(address, user, ok=False, known=a is not None, secret=password)
            return FAILED
        verified = a.password_hash
        if checked.new_hash is not None:
            verified = await self._rehash(a, checked.new_hash)
        self.cache.put(user, password, a.id, verified)
        self.record(address, a.name, ok=True, known=True)
        return LoginResult(Status.OK, a.id, a.name)

    async def _rehash(self, a, new_hash: str) -> str:
        """Store NEW_HASH for account A (made with the configured parameters)
        unless its password changed meanwhile; -> the hash now stored."""
        try:
            done = await storeio.write(self.store, accounts.replace_hash, a.id, a.password_hash,
                                       new_hash)
        except StoreError as exc:
            log.warning("could not rehash the password of %r: %s", a.name, exc)
            return a.password_hash
        if done:
            log.info("rehashed the password of %r with the configured argon2 parameters",
                     a.name)
            return new_hash
        return a.password_hash

    # --- shared by every mechanism ---------------------------------------------------------

    async def throttle(self, address: str, user: str | None) -> None:
        """Wait out the penalty of ADDRESS (and USER) before answering."""
        wait = self.penalty.delay(address, user)
        if wait > 0:
            log.info("login from %s for %r delayed %gs (penalty)", address or "?", user, wait)
            await self._sleep(wait)

    def record(self, address: str, user: str | None, *, ok: bool, known: bool,
               secret: str | None = None) -> None:
        """The outcome of one attempt, for the penalty and the log.  SECRET:
        the password of a failed attempt, so a repeat is not counted again
        (only a keyed hash of it is kept, penalty.py)."""
        if ok:
            self.penalty.succeeded(address, user or "")
            return
        repeat = self.penalty.repeated(address, user, secret)
        wait = self.penalty.failed(address, user, known_user=known, secret=secret)
        log.warning("failed login from %s for %r; penalty now %gs%s", address or "?",
                    user, wait, " (the same password as before: not counted again)"
                    if repeat else "")

    def scram_lookup(self, user: str) -> str | None:
        """SCRAM verifiers of USER (None: unknown, not a possible name, or no
        verifiers); never raises for odd names."""
        return accounts.scram_lookup(self.store, user)

    def known(self, user: str) -> bool:
        return accounts.lookup(self.store, user) is not None
