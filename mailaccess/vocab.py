"""The one vocabulary of mail state: keywords (flags) and mailbox roles, and
how each protocol names them.  One row per thing:

    store/JMAP keyword   IMAP flag    ActiveSync               Maildir letter
    $seen                \\Seen        Read (email:Read = 1)    S
    $flagged             \\Flagged     Flag (email:Flag Status) F
    ...

    store/JMAP role      IMAP special-use   ActiveSync FolderSync Type
    inbox                (the name INBOX)   2  Default Inbox
    drafts               \\Drafts            3  Default Drafts
    ...

The store keeps keywords in their JMAP form (RFC 8621 4.1.1: lowercase,
"$seen") and roles in their JMAP form (RFC 8621 2, the IANA "IMAP Mailbox
Name Attributes" registry without the backslash, lowercase).  Every protocol
layer builds its own wire spelling from the tables here; none keeps its own
list.  This module imports nothing from the project: proto/, server/, store/
and the importer may all use it.

Sources: RFC 9051 2.3.2 (IMAP system flags), RFC 8621 4.1.1 and the IANA
"IMAP and JMAP Keywords" registry ($forwarded, $junk, $notjunk, $phishing),
RFC 6154 and RFC 8457 (special-use attributes, \\Important), MS-ASCMD
2.2.3.186.3 (FolderSync Type) and MS-ASEMAIL (Read, Flag, LastVerbExecuted),
the Maildir spec (info letters D F P R S T).
"""
from __future__ import annotations

from dataclasses import dataclass

# --- keywords -----------------------------------------------------------------------------

SEEN = "$seen"
ANSWERED = "$answered"
FLAGGED = "$flagged"
DRAFT = "$draft"
DELETED = "$deleted"        # IMAP \Deleted; JMAP has no such keyword, the store keeps it
FORWARDED = "$forwarded"
JUNK = "$junk"
NOTJUNK = "$notjunk"
PHISHING = "$phishing"


@dataclass(frozen=True, slots=True)
class Keyword:
    keyword: str               # the store's and JMAP's form (lowercase)
    imap_flag: str | None      # IMAP system flag, or None: sent as the keyword itself
    activesync: str | None     # the ActiveSync (MS-ASEMAIL) property that carries it
    maildir: str | None        # Maildir info letter


# The IMAP system flags come first, in the order IMAP lists them in FLAGS.
KEYWORDS: tuple[Keyword, ...] = (
    Keyword(ANSWERED, "\\Answered", "LastVerbExecuted=1 (ReplyToSender)", "R"),
    Keyword(FLAGGED, "\\Flagged", "Flag (Status 2)", "F"),
    Keyword(DELETED, "\\Deleted", None, "T"),
    Keyword(SEEN, "\\Seen", "Read", "S"),
    Keyword(DRAFT, "\\Draft", "IsDraft", "D"),
    Keyword(FORWARDED, None, "LastVerbExecuted=3 (Forward)", "P"),
    Keyword(JUNK, None, None, None),
    Keyword(NOTJUNK, None, None, None),
    Keyword(PHISHING, None, None, None),
)
BY_KEYWORD = {k.keyword: k for k in KEYWORDS}

# IMAP system flags (RFC 9051 2.3.2) <-> store keywords.  \Recent is a session
# property, never stored, so it has no row.
KEYWORD_TO_IMAP_FLAG = {k.keyword: k.imap_flag for k in KEYWORDS if k.imap_flag}
IMAP_FLAG_TO_KEYWORD = {f.lower(): k for k, f in KEYWORD_TO_IMAP_FLAG.items()}
# Keywords that are IMAP system flags: their spelling is fixed, so the store
# does not remember how a client wrote them.
SYSTEM_KEYWORDS = frozenset(KEYWORD_TO_IMAP_FLAG)

# Maildir info letters (D F P R S T) <-> keywords
MAILDIR_LETTER_TO_KEYWORD = {k.maildir: k.keyword for k in KEYWORDS if k.maildir}
KEYWORD_TO_MAILDIR_LETTER = {v: k for k, v in MAILDIR_LETTER_TO_KEYWORD.items()}


def is_seen(keywords) -> bool:
    return SEEN in keywords


# --- mailbox roles ------------------------------------------------------------------------

ROLE_INBOX = "inbox"
ROLE_DRAFTS = "drafts"
ROLE_SENT = "sent"
ROLE_TRASH = "trash"
ROLE_JUNK = "junk"
ROLE_ARCHIVE = "archive"
ROLE_ALL = "all"
ROLE_FLAGGED = "flagged"
ROLE_IMPORTANT = "important"

# ActiveSync FolderSync Type values (MS-ASCMD 2.2.3.186.3), mail folders only
AS_USER_GENERIC = 1
AS_INBOX = 2
AS_DRAFTS = 3
AS_DELETED_ITEMS = 4
AS_SENT_ITEMS = 5
AS_OUTBOX = 6
AS_USER_MAIL = 12


@dataclass(frozen=True, slots=True)
class Role:
    role: str                  # JMAP role, the store's form
    special_use: str | None    # IMAP special-use attribute (RFC 6154/8457); INBOX is a name
    activesync_type: int       # FolderSync Type
    default_name: str | None   # created under this name for every new account


ROLES: tuple[Role, ...] = (
    Role(ROLE_INBOX, None, AS_INBOX, "INBOX"),
    Role(ROLE_DRAFTS, "\\Drafts", AS_DRAFTS, "Drafts"),
    Role(ROLE_SENT, "\\Sent", AS_SENT_ITEMS, "Sent"),
    Role(ROLE_TRASH, "\\Trash", AS_DELETED_ITEMS, "Trash"),
    Role(ROLE_JUNK, "\\Junk", AS_USER_MAIL, "Junk"),
    Role(ROLE_ARCHIVE, "\\Archive", AS_USER_MAIL, "Archive"),
    Role(ROLE_ALL, "\\All", AS_USER_MAIL, None),
    Role(ROLE_FLAGGED, "\\Flagged", AS_USER_MAIL, None),
    Role(ROLE_IMPORTANT, "\\Important", AS_USER_MAIL, None),
)
BY_ROLE = {r.role: r for r in ROLES}

# Created for every new account, in this order: (name, role)
DEFAULT_MAILBOXES = tuple((r.default_name, r.role) for r in ROLES if r.default_name)

ROLE_TO_SPECIAL_USE = {r.role: r.special_use for r in ROLES if r.special_use}
SPECIAL_USE_TO_ROLE = {su.lower(): role for role, su in ROLE_TO_SPECIAL_USE.items()}


def activesync_folder_type(role: str | None) -> int:
    """FolderSync Type of a mail folder with ROLE (None: a user's folder)."""
    r = BY_ROLE.get(role) if role else None
    return r.activesync_type if r is not None else AS_USER_MAIL


# --- size limits every protocol enforces and the store re-checks ---------------------
# LMDB refuses keys over 511 bytes; the store's longest keys built from client
# names are ``kw`` (4 + keyword), ``mbox.name`` (8 + one level) and ``sub``
# (4 + the "/"-joined full path), so these limits keep every key under it.
MAX_KEYWORD_BYTES = 250          # one keyword (flag), UTF-8
MAX_MAILBOX_LEVEL_BYTES = 200    # one hierarchy level of a mailbox name, UTF-8
MAX_MAILBOX_PATH_BYTES = 500     # a whole mailbox name, levels joined by "/"
