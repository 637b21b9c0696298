"""User accounts: argon2id password hashes, add/passwd/delete/list, look-ups.

Hashing is slow on purpose (argon2id; the parameters are config.AuthConfig's,
see auth/hashing.py), so hashing and verifying belong in a worker thread when
called from the event loop; servers verify through the login service
(auth/service.py), which bounds how many run at once.  ``lookup`` never
builds a store key for a name no account can have, so any client-supplied
name is safe to pass.
"""
from __future__ import annotations

from . import sasl
from .auth.hashing import Argon2Params, Hasher
from .store import Account, NotFound, Store, ops

_default = Hasher(Argon2Params())   # the configured defaults (config.AuthConfig)

MAX_NAME_BYTES = 255    # ops.create_account's rule


def valid_name(name: str) -> bool:
    """Could NAME be an account's name?  (The rule ops.create_account
    enforces: 1-255 bytes, no spaces or control characters.)"""
    if not name or any(c in name for c in "\0\r\n\t "):
        return False
    try:
        return len(name.encode("utf-8")) <= MAX_NAME_BYTES \
            and len(name.casefold().encode("utf-8")) <= 2 * MAX_NAME_BYTES
    except UnicodeEncodeError:
        return False


def hash_password(password: str, hasher: Hasher | None = None) -> str:
    return (hasher or _default).hash(password)


def add_user(store: Store, name: str, password: str, quota: int = 0, *,
             hasher: Hasher | None = None) -> int:
    return store.write_sync(ops.create_account, name, hash_password(password, hasher), quota,
                            sasl.scram_credentials(password))


def set_password(store: Store, name: str, password: str, *, hasher: Hasher | None = None) -> None:
    a = lookup(store, name)
    if a is None:
        raise NotFound(f"no user {name!r}")
    store.write_sync(ops.set_password, a.id, hash_password(password, hasher),
                     sasl.scram_credentials(password))


def replace_hash(tx, acc: int, old_hash: str, new_hash: str) -> bool:
    """Write function (for the store's writer): store NEW_HASH, the same
    password hashed with other parameters, unless the hash is no longer
    OLD_HASH (the password changed meanwhile).  -> whether it was stored."""
    a = tx.account(acc)
    if a is None or a.password_hash != old_hash:
        return False
    ops.set_password(tx, acc, new_hash, a.scram)
    return True


def delete_user(store: Store, name: str) -> None:
    a = lookup(store, name)
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


def lookup(store: Store, name: str) -> Account | None:
    """The account called NAME (case-insensitive), or None; None too for
    names no account can have (empty, too long...)."""
    if not valid_name(name):
        return None
    with store.view() as v:
        return v.account_by_name(name)


def authenticate(store: Store, name: str, password: str,
                 hasher: Hasher | None = None) -> int | None:
    """-> the account id when NAME/PASSWORD are right, else None.  Blocking
    and unbounded: for tools; servers use auth.service.LoginService."""
    a = lookup(store, name)
    checked = (hasher or _default).check(a.password_hash if a is not None else None, password)
    return a.id if checked.ok and a is not None else None


def scram_lookup(store: Store, name: str) -> str | None:
    """SCRAM verifiers of NAME (None for unknown users, impossible names and
    users whose password predates SCRAM support)."""
    a = lookup(store, name)
    return a.scram if a is not None and a.scram else None
