"""App-password tokens (HTTP Bearer): the store side.

Tables (store/keys.py): ``tok`` (acc name -> JSON record: sha256 of the
token, created, last used) and ``tok.hash`` (sha256 -> acc name), so a
Bearer token is found by one look-up of its digest.  Only digests are stored:
the token itself is shown once, by ``mailaccess token add``.  Tokens are 256
random bits, so a fast hash is enough (no argon2 per request).  Writes here
log nothing in the change log (tokens are not mail) and allocate no modseq.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import keys
from .errors import AlreadyExists, InvalidName, NotFound

MAX_NAME_BYTES = 200


@dataclass(frozen=True)
class Token:
    account: int
    name: str
    digest: bytes
    created: int
    last_used: int     # 0: never


def _check_name(name: str) -> None:
    if not name or len(name.encode("utf-8")) > MAX_NAME_BYTES or any(
            ord(c) < 32 or c == "\x7f" for c in name):
        raise InvalidName("a token name is 1-200 bytes without control characters")


def _decode(acc: int, name: str, v) -> Token:
    d = json.loads(bytes(v))
    return Token(acc, name, bytes.fromhex(d["h"]), int(d["c"]), int(d.get("u", 0)))


def _encode(t: Token) -> bytes:
    return json.dumps({"h": t.digest.hex(), "c": t.created, "u": t.last_used},
                      separators=(",", ":")).encode()


def _has_tables(v) -> bool:
    return v.db.get("tok") is not None


# --- reads (over a View) -------------------------------------------------------------

def by_digest(v, digest: bytes) -> Token | None:
    """The token whose sha256 is DIGEST, or None."""
    if not _has_tables(v):
        return None
    t = v._get("tok.hash", keys.tok_hash(digest))
    if t is None:
        return None
    acc, name = keys.split_tok_target(t)
    rec = v._get("tok", keys.tok(acc, name))
    if rec is None:
        return None
    tok = _decode(acc, name, rec)
    return tok if tok.digest == bytes(digest) else None


def list_tokens(v, acc: int) -> list[Token]:
    if not _has_tables(v):
        return []
    pre = keys.account_prefix(acc)
    return [_decode(acc, keys.split_tok(k), val) for k, val in v._scan("tok", pre)]


# --- writes (on the writer thread: fn(tx, ...)) -------------------------------------

def add(tx, acc: int, name: str, digest: bytes, created: int) -> None:
    _check_name(name)
    if tx.account(acc) is None:
        raise NotFound("no such account")
    if tx._get("tok", keys.tok(acc, name)) is not None:
        raise AlreadyExists(f"a token named {name!r} exists")
    t = Token(acc, name, bytes(digest), created, 0)
    tx.put("tok", keys.tok(acc, name), _encode(t))
    tx.put("tok.hash", keys.tok_hash(digest), keys.tok_target(acc, name))


def revoke(tx, acc: int, name: str) -> None:
    try:
        key = keys.tok(acc, name)
    except InvalidName:
        raise NotFound(f"no token named {name!r}") from None
    rec = tx._get("tok", key)
    if rec is None:
        raise NotFound(f"no token named {name!r}")
    t = _decode(acc, name, rec)
    tx.delete("tok", key)
    tx.delete("tok.hash", keys.tok_hash(t.digest))


def touch(tx, acc: int, name: str, when: int) -> None:
    """Record a use at WHEN (if the token still exists)."""
    key = keys.tok(acc, name)
    rec = tx._get("tok", key)
    if rec is None:
        return
    t = _decode(acc, name, rec)
    if when > t.last_used:
        tx.put("tok", key, _encode(Token(acc, name, t.digest, t.created, when)))


def delete_all(tx, acc: int) -> None:
    """Every token of ACC (the account is being deleted)."""
    for t in list_tokens(tx, acc):
        tx.delete("tok.hash", keys.tok_hash(t.digest))
    tx.delete_prefix("tok", keys.account_prefix(acc))
