"""Errors the store raises; protocol layers map them to their own replies."""


class StoreError(Exception):
    """Base class: the request could not be done; the message says why."""


class StoreFullError(StoreError):
    """The disk or the map is full; nothing of the request was written."""


class StoreMissing(StoreError):
    """There is no store where one was expected (and none may be created)."""


class StoreDamaged(StoreError):
    """The data directory holds something that is not a whole store of ours
    (truncated, zero-length, foreign format); it is refused, never replaced."""


class NotFound(StoreError):
    """The account, mailbox or message does not exist (for this account)."""


class AlreadyExists(StoreError):
    """A mailbox or account of that name exists already."""


class InvalidName(StoreError):
    """A mailbox or account name the store will not accept."""


class OverQuota(StoreError):
    """The account's quota would be exceeded."""


class LimitReached(StoreError):
    """A per-account limit on the number of objects of a kind (mailboxes:
    ``[store] max_mailboxes_per_account``) would be exceeded; nothing was
    written.  IMAP answers ``NO [LIMIT]`` (RFC 5530), JMAP ``overQuota``
    (RFC 8620 5.3: "a server-defined limit on the number ... of objects of
    this type")."""


class Conflict(StoreError):
    """The request conflicts with the current state (e.g. deleting INBOX)."""


class CannotCalculateChanges(StoreError):
    """The state given is older than the change log's retention horizon (or
    not a state this store issued): JMAP answers ``cannotCalculateChanges``,
    ActiveSync a full resync, IMAP QRESYNC reports vanished UIDs by range."""
