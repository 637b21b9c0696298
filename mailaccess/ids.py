"""Object ids shared by every protocol.

The JMAP Mailbox/Email/Thread ids are the IMAP OBJECTID MAILBOXID/EMAILID/
THREADID (RFC 8474) and the ActiveSync ServerIds: one function each way, so
no protocol can drift.  Ids are per account (the store's counters), prefixed
so a mailbox id can never be taken for an email id.
"""
from __future__ import annotations


def mailbox_id(n: int) -> str:
    return f"M{n}"


def email_id(n: int) -> str:
    return f"E{n}"


def thread_id(n: int) -> str:
    return f"T{n}"


def identity_id(n: int) -> str:
    """JMAP Identity ids (RFC 8621 §6; JMAP only)."""
    return f"I{n}"


def submission_id(n: int) -> str:
    """JMAP EmailSubmission ids (RFC 8621 §7; JMAP only)."""
    return f"S{n}"


def blob_id(h: bytes) -> str:
    return "B" + h.hex()


def parse(prefix: str, s: str) -> int | None:
    """'E42' -> 42 for prefix 'E'; None for anything else."""
    if not s or s[0] != prefix or not s[1:].isdigit() or len(s) > 12:
        return None
    n = int(s[1:])
    return n if 0 < n < 1 << 32 else None


def parse_blob(s: str) -> bytes | None:
    if len(s) != 65 or s[0] != "B":
        return None
    try:
        return bytes.fromhex(s[1:])
    except ValueError:
        return None


def account_id(n: int) -> str:
    """The JMAP accountId of account N (JMAP only; IMAP and EAS have none)."""
    return f"A{n}"


def part_blob_id(h: bytes, part: str) -> str:
    """The blobId of body part PART ("1.2") of the message with hash H: its
    decoded content (RFC 8621 §4.1.4).  Only [A-Za-z0-9_-] (RFC 8620 §1.2)."""
    return f"P{h.hex()}_{part.replace('.', '-')}"


def parse_part_blob(s: str) -> tuple[bytes, str] | None:
    """'P<hex>_1-2' -> (hash, "1.2"); None for anything else."""
    if len(s) < 67 or s[0] != "P" or s[65] != "_":
        return None
    try:
        h = bytes.fromhex(s[1:65])
    except ValueError:
        return None
    part = s[66:].replace("-", ".")
    if not part or not all(p.isdigit() for p in part.split(".")) or len(part) > 64:
        return None
    return h, part
