"""The addresses an account may send from, and address syntax checks.

An account ``alice`` receives mail as ``alice@D`` for every configured local
domain D (LMTP's rule); an account named by a whole address
(``bob@example.org``) receives it at that address.  Those are the addresses
it may send from (JMAP Identity ``email``, EmailSubmission ``mailFrom``,
the From of what it submits).
"""
from __future__ import annotations

import email.utils
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


def _lenient(value: str) -> list[tuple[str, str]]:
    """email.utils' address-list parser without the strict checks: the same
    code (email._parseaddr) on every release; only a release with the
    CVE-2023-27043 fix has strict= (its strict checks are ours, below)."""
    if getattr(email.utils, "supports_strict_parsing", False):
        return email.utils.getaddresses([value], strict=False)
    return email.utils.getaddresses([value])


# elements of one group, at most: the lenient parser (email._parseaddr)
# copies a group's list of addresses once per member, quadratic (80,000
# members, a 400 KB field, took 22 s)
MAX_GROUP = 1000


def _expected(value: str) -> int | None:
    """How many entries the lenient parser must give for VALUE: one per
    address-list element, i.e. one more than the commas outside quoted
    strings and comments, less one when the field ends in a comma ("a@x,",
    RFC 5322's obs-addr-list: the parser gives nothing for that).  None when
    a comment or quoted string is left open or a parenthesis closes none,
    or a group holds more than MAX_GROUP elements.  One pass, linear."""
    n, depth, quoted, i, end, last = 1, 0, False, 0, len(value), -1
    angle, group, members = False, 0, 0     # in <...>; groups open; their commas
    while i < end:
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if quoted:
            quoted = c != '"'
        elif c == "(":
            depth += 1
        elif c == ")":
            if not depth:
                return None
            depth -= 1
        elif not depth:
            if c == '"':
                quoted = True
            elif c == ",":
                n, last = n + 1, i
                if group:
                    members += 1
                    if members >= MAX_GROUP:
                        return None
            elif c == "<":
                angle = True
            elif c == ">":
                angle = False
            elif c == ":" and not angle:
                group += 1
            elif c == ";" and group:
                group, members = group - 1, 0 if group == 1 else members
        i += 1
    if depth or quoted:
        return None
    return n - 1 if last == end - 1 else n


def parse_field(value: str) -> list[tuple[str, str]] | None:
    """The (name, address) pairs of one address-list header field VALUE, an
    empty element or group as ("", ""); None when the field cannot be read.

    The same answer on every Python release: email.utils.getaddresses
    answers differently by release (3.11.10+, 3.12.6+ and 3.13 reject a
    comma in a comment, "j@x (Doe, John)", and a trailing comma, "a@x,",
    that unpatched releases read; unpatched releases return the fragments
    of a field they cannot read, "a b@@c" -> "@c").  Here: the lenient
    parser's answer, accepted only when it has one entry per element and
    no address it had to patch up (an unclosed domain literal), for a
    field whose groups hold at most MAX_GROUP elements each."""
    if not value.strip():
        return []
    n = _expected(value)
    if n is None:
        return None
    try:
        pairs = _lenient(value)
    except RecursionError:          # groups nested in groups, hundreds deep
        return None
    if len(pairs) != n or any("[" in a for _n, a in pairs):
        return None
    return pairs
