"""User accounts: argon2id password hashes, add/passwd/delete/list, login check.

Hashing is slow on purpose (argon2id, RFC 9106), so ``verify`` belongs in a
worker thread when called from the event loop.
"""
from __future__ import annotations

import argon2

from . import sasl
from .store import NotFound, Store, ops

_hasher = argon2.PasswordHasher()  # argon2id with the library's RFC 9106 defaults
# a hash to verify against for unknown users, so timing does not reveal them
_DUMMY = _hasher.hash("not a real password")


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("the password is empty")
    return _hasher.hash(password)


def add_user(store: Store, name: str, password: str, quota: int = 0) -> int:
    return store.write_sync(ops.create_account, name, hash_password(password), quota,
                            sasl.scram_credentials(password))


def set_password(store: Store, name: str, password: str) -> None:
    with store.view() as v:
        a = v.account_by_name(name)
    if a is None:
        raise NotFound(f"no user {name!r}")
    store.write_sync(ops.set_password, a.id, hash_password(password),
                     sasl.scram_credentials(password))


def delete_user(store: Store, name: str) -> None:
    with store.view() as v:
        a = v.account_by_name(name)
    if a is None:
        raise NotFound(f"no user {name!r}")
    store.write_sync(ops.delete_account, a.id)


def list_users(store: Store) -> list[tuple[str, int, int]]:
    """[(name, messages, bytes used)]"""
    out = []
    with store.view() as v:
        for a in v.accounts():
            n = sum(m.total for m in v.mailboxes(a.id))
            out.append((a.name, n, v.usage(a.id)))
    return out


def authenticate(store: Store, name: str, password: str) -> int | None:
    """-> the account id when NAME/PASSWORD are right, else None."""
    with store.view() as v:
        a = v.account_by_name(name)
    stored = a.password_hash if a is not None else _DUMMY
    try:
        _hasher.verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return None
    return a.id if a is not None else None


def scram_lookup(store: Store, name: str) -> str | None:
    """SCRAM verifiers of NAME (None for unknown users and users whose
    password predates SCRAM support)."""
    with store.view() as v:
        a = v.account_by_name(name)
    return a.scram if a is not None and a.scram else None
