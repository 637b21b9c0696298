"""App-password tokens for HTTP Bearer authentication (JMAP, later ActiveSync).

``add(store, user, name)`` makes a token, stores only its sha256 (store/
tokens.py) and returns the token: it is shown once (``mailaccess token add``)
and cannot be recovered.  ``verify(store, token)`` -> the Token record or
None, one look-up by digest (the token has 256 random bits, so no slow hash).
``list_tokens`` and ``revoke`` manage them.  A token is ``mat_`` + 43
base64url characters, so it is recognisable in logs and secret scanners.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time

from . import accounts
from .store import NotFound, Store
from .store import tokens as store_tokens

PREFIX = "mat_"
MAX_TOKEN = 200      # longer Bearer credentials are not ours: no look-up


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def make_token() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _account(store: Store, user: str):
    a = accounts.lookup(store, user)
    if a is None:
        raise NotFound(f"no user {user!r}")
    return a


def add(store: Store, user: str, name: str) -> str:
    a = _account(store, user)
    token = make_token()
    store.write_sync(store_tokens.add, a.id, name, digest(token), int(time.time()))
    return token


def list_tokens(store: Store, user: str) -> list[store_tokens.Token]:
    a = _account(store, user)
    with store.view() as v:
        return store_tokens.list_tokens(v, a.id)


def revoke(store: Store, user: str, name: str) -> None:
    a = _account(store, user)
    store.write_sync(store_tokens.revoke, a.id, name)


def verify(store: Store, token: str) -> store_tokens.Token | None:
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN:
        return None
    with store.view() as v:
        return store_tokens.by_digest(v, digest(token))
