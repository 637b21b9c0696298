"""Recently verified credentials, in memory only, for a short time.

JMAP and ActiveSync clients send Basic credentials with every HTTP request;
paying argon2 each time would make every request a login.  After a
successful verification the cache remembers, for ``ttl`` seconds, that
HMAC(per-process random key, user NUL password) belonged to account A whose
stored hash was H.  Neither the password nor an unkeyed hash of it is kept, and
the key never leaves the process.  A hit is only trusted by the caller when
the account's stored hash is still H (so a password change or a deleted
account invalidates it at once).  Failed logins are never put here.  At most
``size`` entries: the least recently used goes first.
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True, slots=True)
class Verified:
    account: int
    password_hash: str      # the stored hash the password was verified against
    expires: float


def _name_key(user: str) -> str:
    return user.casefold()  # account names are looked up case-insensitively


class CredentialCache:
    def __init__(self, ttl: float, size: int, *, clock: Callable[[], float] = time.monotonic,
                 key: bytes | None = None):
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._key = key or secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, Verified] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _mac(self, user: str, password: str) -> bytes:
        msg = _name_key(user).encode("utf-8", "surrogatepass") + b"\0" \
            + password.encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, msg, "sha256")

    def get(self, user: str, password: str) -> Verified | None:
        if not self.enabled:
            return None
        k = self._mac(user, password)
        hit = self._entries.get(k)
        if hit is None:
            return None
        if hit.expires <= self._clock():
            del self._entries[k]
            return None
        self._entries.move_to_end(k)
        return hit

    def put(self, user: str, password: str, account: int, password_hash: str) -> None:
        if not self.enabled:
            return
        now = self._clock()
        k = self._mac(user, password)
        self._entries[k] = Verified(account, password_hash, now + self.ttl)
        self._entries.move_to_end(k)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        # drop expired entries at the old end while they are there
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.expires > now:
                break
            self._entries.popitem(last=False)

    def forget(self, user: str, password: str) -> None:
        self._entries.pop(self._mac(user, password), None)

    def clear(self) -> None:
        self._entries.clear()
