"""The failed-login penalty: a delay that grows per address and per user name.

Modelled on Dovecot's auth penalty: after n recent failures the next attempt
waits ``initial * 2^(n-1)`` seconds, at most ``maximum``; the caller applies it
*before* verifying, to right and wrong passwords alike, so that a client
cannot learn the answer early by hanging up.  One failure is forgotten per
``decay`` seconds without a new one.

Two counters feed the delay, and the larger one wins:

- per source address (IPv6 by /64, IPv4-mapped addresses as IPv4).  A correct
  password does not reset it: an attacker who owns one account cannot wipe
  its record by logging in to it between guesses;
- per user name, for existing accounts only (unknown names protect nothing
  and would only fill memory), against guessing spread over many addresses.
  It does not apply to an address the user logged in from successfully in
  the last day, so the owner of an attacked account is not locked out.

A failure that repeats one of the last few failed (user name, password)
pairs of the same address counts for neither (Dovecot's anvil does the same
with a checksum): a client retrying a stale password, or a user typing the
same wrong one twice, is not mistaken for guessing; a guess is a new
password.  Only a short keyed hash of the pair is kept (8 bytes of BLAKE2b
under a key made at start, never written anywhere), the last
``REPEATS_KEPT`` per address.

Everything is pure and bounded: at most ``entries`` addresses, user names,
trusted (address, user) pairs and addresses' recent failed pairs each,
least recently touched evicted first; the clock is a parameter (tests use a
fake one).
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from typing import Callable

TRUST_SECONDS = 24 * 3600    # how long a successful (address, user) pair is exempt
REPEATS_KEPT = 10            # failed (user, password) hashes remembered per address (as anvil)


@functools.lru_cache(maxsize=4096)
def address_key(address: str) -> str:
    """The unit of penalty for ADDRESS: an IPv4 address or an IPv6 /64
    (remembered for the last few thousand addresses: every login asks twice)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def user_key(user: str) -> str:
    return user.casefold()


class _Counter:
    """Failures per key with decay; an OrderedDict bounded to ``size``."""

    def __init__(self, size: int, decay: float, cap: int):
        self.size, self.decay, self.cap = size, decay, cap
        self.entries: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def count(self, key: str, now: float) -> int:
        e = self.entries.get(key)
        if e is None:
            return 0
        n, last = e
        if self.decay > 0:
            n -= int((now - last) // self.decay)
        if n <= 0:
            del self.entries[key]
            return 0
        return n

    def add(self, key: str, now: float) -> int:
        n = min(self.count(key, now) + 1, self.cap)
        self.entries[key] = (n, now)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return n

    def clear(self, key: str) -> None:
        self.entries.pop(key, None)


class Penalty:
    def __init__(self, initial: float = 1.0, maximum: float = 15.0, decay: float = 300.0,
                 entries: int = 65_536, *, clock: Callable[[], float] = time.monotonic):
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        # the count at which the delay reaches the maximum, plus a few: a long
        # attack stays at the maximum for a few decay periods after it stops
        steps = 1
        if initial > 0 and maximum > initial:
            steps += math.ceil(math.log2(maximum / initial))
        cap = steps + 3
        self.addresses = _Counter(entries, decay, cap)
        self.users = _Counter(entries, decay, cap)
        self.trusted: OrderedDict[tuple[str, str], float] = OrderedDict()
        # address -> keyed hashes of its last failed (user, password) pairs
        self.tried: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()
        self._key = secrets.token_bytes(32)
        self.entries = entries

    @property
    def enabled(self) -> bool:
        return self.initial > 0 and self.maximum > 0

    def seconds(self, failures: int) -> float:
        if failures <= 0 or not self.enabled:
            return 0.0
        return min(self.initial * 2 ** (failures - 1), self.maximum)

    def _trusted(self, a: str, u: str, now: float) -> bool:
        exp = self.trusted.get((a, u))
        if exp is None:
            return False
        if exp <= now:
            del self.trusted[(a, u)]
            return False
        return True

    def delay(self, address: str, user: str | None) -> float:
        """Seconds the next attempt from ADDRESS for USER waits first."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        a = address_key(address)
        n = self.addresses.count(a, now)
        if user:
            u = user_key(user)
            if not self._trusted(a, u, now):
                n = max(n, self.users.count(u, now))
        return self.seconds(n)

    def _fingerprint(self, user: str | None, secret: str) -> bytes:
        data = user_key(user or "").encode("utf-8", "surrogatepass") + b"\0" + \
            secret.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=8).digest()

    def repeated(self, address: str, user: str | None, secret: str | None) -> bool:
        """Whether USER/SECRET is one of the last failed pairs of ADDRESS
        that its penalty still counts (a repeat: not counted again)."""
        if secret is None or not self.enabled:
            return False
        a = address_key(address)
        if not self.addresses.count(a, self.clock()):
            self.tried.pop(a, None)      # the failures are forgotten: so are their pairs
            return False
        return self._fingerprint(user, secret) in self.tried.get(a, ())

    def failed(self, address: str, user: str | None, *, known_user: bool,
               secret: str | None = None) -> float:
        """Count a failure with password SECRET (None: a mechanism that has
        no password to compare, such as SCRAM; always counted), unless it
        repeats a recent failure of the same address (see the module
        docstring); -> the delay the next attempt from ADDRESS will wait
        (what the log reports)."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        a = address_key(address)
        if secret is not None:
            if self.repeated(address, user, secret):
                self.tried.move_to_end(a)
                return self.seconds(self.addresses.count(a, now))
            fp = self._fingerprint(user, secret)
            self.tried[a] = (self.tried.get(a, ()) + (fp,))[-REPEATS_KEPT:]
            self.tried.move_to_end(a)
            while len(self.tried) > self.entries:
                self.tried.popitem(last=False)
        n = self.addresses.add(a, now)
        if user and known_user:
            self.users.add(user_key(user), now)
        return self.seconds(n)

    def succeeded(self, address: str, user: str) -> None:
        """A correct password: the address's own record stays (see the
        module docstring); the address becomes trusted for USER's name."""
        if not self.enabled:
            return
        key = (address_key(address), user_key(user))
        self.trusted[key] = self.clock() + TRUST_SECONDS
        self.trusted.move_to_end(key)
        while len(self.trusted) > self.entries:
            self.trusted.popitem(last=False)
