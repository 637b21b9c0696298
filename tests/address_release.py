"""A stand-in for the other kind of Python release's address parser, so a
test of code that reads addresses passes on both (CVE-2023-27043): releases
with the fix (3.11.10+, 3.12.6+, 3.13, Debian's 3.11.2) answer ('', '') for
what they cannot read where unpatched ones (3.11.7, CI's) return fragments."""
from __future__ import annotations

import email.utils

# what getaddresses answers for these on a Python with the CVE-2023-27043 fix
# (3.11.10+, 3.12.6+, 3.13, Debian's 3.11.2): ('', '') for the whole field
STRICT = {"a b@@c": [("", "")], "a b@@c, bob@y.org": [("", "")], "a@x b@y": [("", "")]}

# what parseaddr answers ('', '') for on a Python with the fix, and an
# unpatched one reads the first address of (seen on 3.13.0 and 3.11.7)
STRICT_PARSEADDR = {"alice@localhost, bob@localhost", "bob@localhost)<alice@localhost>"}


def other_release(monkeypatch):
    """Make email.utils look like the other kind of release: on one with the
    CVE-2023-27043 fix, an unpatched one (no strict=, the lenient parser);
    on an unpatched one, a patched one (strict by default: STRICT,
    STRICT_PARSEADDR)."""
    real = email.utils.getaddresses
    real_parseaddr = email.utils.parseaddr
    if getattr(email.utils, "supports_strict_parsing", False):
        monkeypatch.delattr(email.utils, "supports_strict_parsing")
        monkeypatch.setattr(email.utils, "getaddresses", lambda vs: real(vs, strict=False))
        monkeypatch.setattr(email.utils, "parseaddr", lambda a: real_parseaddr(a, strict=False))
    else:
        monkeypatch.setattr(email.utils, "supports_strict_parsing", True, raising=False)
        monkeypatch.setattr(email.utils, "getaddresses", lambda vs, *, strict=True:
                            (STRICT.get(vs[0]) if strict else None) or real(vs))
        monkeypatch.setattr(email.utils, "parseaddr", lambda a, *, strict=True:
                            ("", "") if strict and a in STRICT_PARSEADDR
                            else real_parseaddr(a))
