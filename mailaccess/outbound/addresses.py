"""The addresses an account may send from, and address syntax checks.

An account ``alice`` receives mail as ``alice@D`` for every configured local
domain D (LMTP's rule); an account named by a whole address
(``bob@example.org``) receives it at that address.  Those are the addresses
it may send from (JMAP Identity ``email``, EmailSubmission ``mailFrom``,
the From of what it submits).
"""
from __future__ import annotations

import re

# RFC 5321 Mailbox, loosely: a dot-atom or quoted local part, a domain of
# labels or an address literal; no spaces or controls anywhere.
_LOCAL = r'(?:[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.-]+|"(?:[^"\\\r\n]|\\.)+")'
_DOMAIN = r'(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[^\]\s]+\])'
_ADDR = re.compile(rf"{_LOCAL}@{_DOMAIN}")
MAX_ADDRESS = 254


def valid_address(addr: str) -> bool:
    """Whether ADDR is a usable SMTP address (non-UTF-8 domains need IDNA
    first; UTF-8 local parts are allowed, RFC 6531)."""
    if not isinstance(addr, str) or not addr or len(addr.encode("utf-8")) > MAX_ADDRESS:
        return False
    if any(ord(c) < 0x21 or c == "\x7f" for c in addr):
        return False
    ascii_form = "".join(c if ord(c) < 128 else "x" for c in addr)
    return _ADDR.fullmatch(ascii_form) is not None


def own_addresses(account_name: str, local_domains: tuple[str, ...] | list[str],
                  hostname: str = "") -> set[str]:
    """The addresses ACCOUNT_NAME may send from, lowercased."""
    name = account_name.lower()
    if "@" in name:
        return {name}
    domains = [d.lower() for d in local_domains] or ([hostname.lower()] if hostname else [])
    return {f"{name}@{d}" for d in domains}


def default_address(account_name: str, local_domains, hostname: str = "") -> str:
    """The address of the account's default identity."""
    if "@" in account_name:
        return account_name
    domains = list(local_domains) or [hostname or "localhost"]
    return f"{account_name}@{domains[0]}"


def may_send_from(addr: str, own: set[str]) -> bool:
    """ADDR is one of OWN (case-insensitive; a ``+detail`` sub-address of one
    is allowed too, as LMTP delivers it to the same account)."""
    a = addr.lower()
    if a in own:
        return True
    local, at, domain = a.rpartition("@")
    base, plus, _ = local.partition("+")
    return bool(at and plus and base and f"{base}@{domain}" in own)
