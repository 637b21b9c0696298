"""SASL mechanisms, sans-IO: PLAIN (RFC 4616), LOGIN, SCRAM-SHA-256 (RFC 7677 /
RFC 5802).

A mechanism object takes the client's responses one at a time
(``step(data) -> Challenge | Done``); the protocol layer base64-encodes the
challenges onto its own wire.  Credential checks are callbacks so this module
knows no store.  SCRAM needs per-user verifiers (salt, iteration count,
StoredKey, ServerKey), which ``scram_credentials`` derives when a password is
set; the password itself is never stored.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

SCRAM_ITERATIONS = 10000


class SaslError(Exception):
    """Authentication failed or the exchange was malformed."""


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Done:
    user: str
    authzid: str = ""
    password: str | None = None     # PLAIN/LOGIN: still to be verified by the caller
    final: bytes | None = None      # SCRAM: server-final-message, sent before success


def scram_credentials(password: str, *, iterations: int = SCRAM_ITERATIONS,
                      salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b = lambda x: base64.b64encode(x).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}${b(salt)}${b(stored)}${b(server)}"


def _parse_creds(creds: str):
    try:
        name, it, salt, stored, server = creds.split("$")
        if name != "SCRAM-SHA-256":
            raise ValueError
        return int(it), base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server)
    except (ValueError, TypeError):
        return None


def _attrs(msg: str) -> dict[str, str]:
    out = {}
    for part in msg.split(","):
        if len(part) < 2 or part[1] != "=":
            raise SaslError("malformed SCRAM message")
        out.setdefault(part[0], part[2:])
    return out


def _unescape_name(s: str) -> str:
    if "=" in s.replace("=2C", "").replace("=3D", ""):
        raise SaslError("malformed user name")
    return s.replace("=2C", ",").replace("=3D", "=")


class ScramSha256:
    """Server side of SCRAM-SHA-256 without channel binding."""

    def __init__(self, lookup: Callable[[str], str | None]):
        self._lookup = lookup    # user -> stored credentials string (or None)
        self._state = 0

    def step(self, data: bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslError("SCRAM messages are UTF-8") from None
        try:
            if self._state == 0:
                return self._first(text)
            if self._state == 1:
                return self._final(text)
        except (ValueError, TypeError):
            # whatever a client sends is answered, never a traceback
            self._state = 2
            raise SaslError("malformed SCRAM message") from None
        raise SaslError("unexpected SCRAM message")

    def _first(self, text: str):
        gs2, sep, rest = text.partition(",")
        authz, sep2, bare = rest.partition(",")
        if not sep or not sep2 or gs2 not in ("n", "y"):
            # "p=..." asks for channel binding, which this server does not offer
            raise SaslError("channel binding is not supported; use SCRAM-SHA-256 without -PLUS")
        self._gs2 = f"{gs2},{authz},"
        self.authzid = _unescape_name(authz[2:]) if authz.startswith("a=") else ""
        a = _attrs(bare)
        if "m" in a or "n" not in a or "r" not in a:
            raise SaslError("malformed client-first-message")
        self.user = _unescape_name(a["n"])
        if not self.user:
            raise SaslError("empty user name")
        creds = self._lookup(self.user)
        parsed = _parse_creds(creds) if creds else None
        # unknown users get a plausible fake exchange, so timing and replies
        # do not reveal which names exist
        if parsed is None:
            fake = hashlib.sha256(b"mailaccess-fake" + self.user.encode()).digest()
            parsed = (SCRAM_ITERATIONS, fake[:16], b"\0" * 32, b"\0" * 32)
            self._known = False
        else:
            self._known = True
        self._iter, self._salt, self._stored, self._server = parsed
        self._nonce = a["r"] + base64.b64encode(secrets.token_bytes(18)).decode()
        self._client_first_bare = bare
        self._server_first = (f"r={self._nonce},s={base64.b64encode(self._salt).decode()},"
                              f"i={self._iter}")
        self._state = 1
        return Challenge(self._server_first.encode())

    def _final(self, text: str):
        self._state = 2
        without_proof, _, proof_part = text.rpartition(",p=")
        a = _attrs(without_proof)
        if a.get("r") != self._nonce or not proof_part:
            raise SaslError("nonce mismatch")
        try:
            cbind = base64.b64decode(a.get("c", ""), validate=True)
        except ValueError:      # binascii.Error
            raise SaslError("malformed channel binding data") from None
        if cbind != self._gs2.encode():
            raise SaslError("channel binding data mismatch")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise SaslError("malformed proof") from None
        sig = hmac.new(self._stored, auth_message, hashlib.sha256).digest()
        if len(proof) != len(sig):
            raise SaslError("authentication failed")
        client_key = bytes(x ^ y for x, y in zip(proof, sig))
        if not self._known or not hmac.compare_digest(hashlib.sha256(client_key).digest(),
                                                      self._stored):
            raise SaslError("authentication failed")
        server_sig = hmac.new(self._server, auth_message, hashlib.sha256).digest()
        return Done(self.user, self.authzid,
                    final=b"v=" + base64.b64encode(server_sig))


class Plain:
    """RFC 4616: one response "authzid NUL authcid NUL passwd"."""

    def step(self, data: bytes):
        parts = data.split(b"\0")
        if len(parts) != 3:
            raise SaslError("malformed PLAIN response")
        authz, user, pw = (p.decode("utf-8", "replace") for p in parts)
        if not user:
            raise SaslError("empty user name")
        return Done(user, authz, password=pw)


class Login:
    """The obsolete LOGIN mechanism some clients still use: user, then password."""

    def __init__(self):
        self._user = None

    def step(self, data: bytes):
        if self._user is None:
            self._user = data.decode("utf-8", "replace")
            if not self._user:
                raise SaslError("empty user name")
            return Challenge(b"Password:")
        return Done(self._user, password=data.decode("utf-8", "replace"))


INITIAL_CHALLENGE = {"PLAIN": b"", "LOGIN": b"Username:", "SCRAM-SHA-256": b""}
