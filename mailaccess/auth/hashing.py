"""Password hashes: argon2id with chosen parameters, verification, rehash.

``Hasher(params)`` makes hashes with the configured parameters and verifies
hashes made with any parameters (argon2 reads them from the hash string).
``check`` is the one blocking call the login service runs in its worker pool:
it verifies and, when the password is right but the stored hash was made with
other parameters, computes the replacement in the same thread.  Unknown users
are verified against a dummy hash made with the same parameters, so the time
taken does not reveal which names exist.
"""
from __future__ import annotations

from dataclasses import dataclass

import argon2


@dataclass(frozen=True, slots=True)
class Argon2Params:
    memory_kib: int = 19456     # OWASP Password Storage Cheat Sheet, first argon2id option
    time_cost: int = 2
    parallelism: int = 1

    @classmethod
    def from_config(cls, auth_cfg) -> "Argon2Params":
        return cls(auth_cfg.argon2_memory_kib, auth_cfg.argon2_time_cost,
                   auth_cfg.argon2_parallelism)


@dataclass(frozen=True, slots=True)
class Checked:
    ok: bool
    new_hash: str | None = None     # set when OK and the stored hash needs replacing


class Hasher:
    def __init__(self, params: Argon2Params = Argon2Params()):
        self.params = params
        self._ph = argon2.PasswordHasher(time_cost=params.time_cost,
                                         memory_cost=params.memory_kib,
                                         parallelism=params.parallelism,
                                         type=argon2.Type.ID)
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        if not password:
            raise ValueError("the password is empty")
        return self._ph.hash(password)

    @property
    def dummy(self) -> str:
        """A hash no password matches in practice, with the current parameters."""
        if self._dummy is None:
            self._dummy = self._ph.hash("mailaccess: not a real password")
        return self._dummy

    def check(self, stored: str | None, password: str) -> Checked:
        """Verify PASSWORD against STORED (None: an unknown user, verified
        against the dummy and always refused).  Blocking: argon2."""
        try:
            self._ph.verify(stored if stored is not None else self.dummy, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return Checked(False)
        if stored is None:
            return Checked(False)
        try:
            stale = self._ph.check_needs_rehash(stored)
        except (argon2.exceptions.InvalidHashError, ValueError):
            stale = True
        return Checked(True, self._ph.hash(password) if stale else None)
