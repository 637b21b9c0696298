"""Every LMDB key of the store: the only module that builds or splits keys.

Keys are fixed-width big-endian integers (so byte order is numeric order and
range scans are prefix scans), account id first in every table.  See
docs/store.md for the table-by-table layout and what each one serves.
"""
from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass

from .errors import InvalidName

# 2: the change log became per-object rows (chg.id), per-kind state (chg.kind)
#    and a per-modseq summary (chg); format-1 stores are migrated on open
#    (store/changelog.py migrate_v1).
# 3: mailbox records carry ``recent_from`` (IMAP \Recent, records.Mailbox);
#    a format-2 record reads without it (as "nothing is recent"), so opening
#    a format-2 store only sets the version (older mailaccess cannot read
#    the longer records and refuses format 3 by its version check).
# 4: a ``chg.id`` row may stand for a run of consecutive object ids (its
#    value: the status, then the run's last id; store/changelog.py); a
#    format-2 or -3 store has none and reads as it is, so opening one only
#    sets the version (older mailaccess would read a run as its first id
#    and refuses format 4 by its version check).
# 5: the ``msg.bs`` table (each email's BODYSTRUCTURE, as its index holds
#    it, by email id: FETCH BODYSTRUCTURE reads it in mailbox order, not the
#    index on its own overflow pages); an email of a format-4 store has no
#    row and is answered from its index, ``mailaccess reindex`` writes the
#    rows, so opening a format-4 store only sets the version (older
#    mailaccess would leave the rows behind when it reindexes, and refuses
#    format 5 by its version check).
# 6: the ``msg.hdr`` table (each email's From/To/Cc/Bcc/Subject/Message-ID lines,
#    mime/index.py search_row, by email id: SEARCH FROM etc. read it, not the
#    index); an email of a format-5 store has no row and is searched in its
#    index, ``mailaccess reindex --outdated-only`` writes the rows, so
#    opening a format-5 store only sets the version.
DATA_VERSION = 6
# formats this code reads as they are (a read-only open does not migrate)
READABLE_DATA_VERSIONS = (2, 3, 4, 5, 6)

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U32U32 = struct.Struct(">II")
_U32U32U32 = struct.Struct(">III")
_U32U64 = struct.Struct(">IQ")
_U32U32U64 = struct.Struct(">IIQ")
_U32U32U64U32 = struct.Struct(">IIQI")
_U32U64U32 = struct.Struct(">IQI")
_U64U64 = struct.Struct(">QQ")

# LMDB refuses an empty key and one longer than its compiled-in maximum (511
# bytes): a key built from a name a client chose is checked here, so such a
# name is an InvalidName (a protocol's NO), never an lmdb error.
MAX_KEY = 511


def _fit(key: bytes, what: str) -> bytes:
    if not key or len(key) > MAX_KEY:
        raise InvalidName(f"{what} is empty or too long")
    return key


def fits(key_len: int) -> bool:
    """Whether a key of KEY_LEN bytes is one LMDB accepts."""
    return 0 < key_len <= MAX_KEY

# Named sub-databases: (name, dupsort)
TABLES = {
    "meta": False,      # ascii name -> value
    "ctr": False,       # acc kind -> u64
    "acct": False,      # acc -> account record
    "acct.name": False,  # casefolded login -> acc
    "mbox": False,      # acc mbx -> mailbox record
    "mbox.name": False,  # acc parent name -> mbx
    "msg": False,       # acc eid -> email record
    "msg.bs": False,    # acc eid -> BODYSTRUCTURE wire bytes (the index's field; absent: read the index)
    "msg.facts": False,  # acc eid -> the email's sort/thread facts (records.encode_facts)
    "msg.hdr": False,   # acc eid -> its From/To/Cc/Bcc/Subject/Message-ID search lines (index.search_row)
    "uid": False,       # acc mbx uid -> eid
    "mbx.ms": False,    # acc mbx ms uid -> ''
    "vanished": False,  # acc mbx ms uid -> ''
    "chg": False,       # acc ms -> modseq summary (time, rows, kinds, mailboxes)
    "chg.id": False,    # acc kind ms oid -> status byte c/u/d (one row per object per modseq)
    "chg.kind": False,  # acc kind -> last modseq that changed the kind, kind horizon
    "blob": False,      # acc hash -> raw message bytes
    "blob.idx": False,  # acc hash -> encoded MessageIndex
    "blob.ref": False,  # acc hash eid -> ''
    "thr.ref": False,   # acc hash16(message-id) -> thread id + subject hash
    "thr.mem": False,   # acc tid eid -> ''
    "dev": False,       # acc device-id \0 key -> opaque sync state
    "kw": False,        # acc lowercase-keyword -> the spelling first seen (IMAP shows it)
    "sub": False,       # acc full-name -> '': subscriptions to names with no mailbox (deleted)
    # outbound mail (store/sending.py): JMAP Identity, EmailSubmission, the
    # durable outbound queue and VacationResponse
    "ident": False,     # acc id -> identity record
    "esub": False,      # acc id -> email submission record
    "outq": False,      # acc id -> queue entry (what is left to send, when next)
    "outq.msg": False,  # acc id -> the message bytes to send (a copy: the email may go)
    "vac": False,       # acc -> vacation response record
    "vac.sent": False,  # acc hash16(sender) -> u64 time an automatic reply went to it
    "tok": False,       # acc name -> app-password token record (store/tokens.py)
    "tok.hash": False,  # sha256(token) -> acc name: Bearer look-up
    "upl": False,       # acc hash -> upload: expiry u64, type, bytes (store/uploads.py)
    "upl.exp": False,   # expiry u64, acc, hash -> '': the upload sweep's order
    "psub": False,      # acc sid -> JMAP PushSubscription record (records.PushSubscription)
}

# Tables added after a store was first made: a read-only open of an older
# store (backup, check) may not find them and reads them as empty.
LATER_TABLES = ("tok", "tok.hash", "upl", "upl.exp", "msg.bs", "msg.facts", "msg.hdr")

# Rows kept per email beside its record, keyed like ``msg`` (acc eid): each
# is derived from the email's index, written when the email is made
# (ops.append; copied by ops._duplicate), removed with it (ops._destroy,
# _destroy_many, delete_account) and rewritten by a reindex; an email stored
# before its table has none there and is read from its index.
EMAIL_ROWS = ("msg.bs", "msg.facts", "msg.hdr")

# ctr kinds
CTR_ACCOUNT = 1   # under account 0: last account id
CTR_MODSEQ = 2
CTR_EMAIL = 3
CTR_MAILBOX = 4
CTR_UIDVALIDITY = 5
CTR_LOG_ROWS = 7      # chg.id rows the account's change log holds (size pruning)
CTR_LOG_HORIZON = 8   # highest modseq pruned from the log: older states cannot be answered
CTR_PUSHSUB = 10      # last JMAP PushSubscription id of the account
CTR_KEYWORDS = 11     # grows whenever a row joins the account's kw table (a cache version)
CTR_MAILBOXES = 12    # the account's mailboxes (the cap, ops.create_mailbox); absent in
                      # stores made before it: counted once, then kept
CTR_INDEXES = 13      # grows whenever a stored message index is rewritten (reindex; a cache version)
CTR_TREE = 15         # grows whenever a mailbox is created, deleted, renamed or moved, its role or
                      # subscription changes, or a subscription to a deleted name comes or goes
                      # (WriteTx.put_mailbox, tree_changed): the version of cached LIST answers


def u32(n: int) -> bytes:
    return _U32.pack(n)


def read_u32(b) -> int:
    return _U32.unpack_from(b)[0]


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(b) -> int:
    return _U64.unpack_from(b)[0]


def ctr(acc: int, kind: int) -> bytes:
    return _U32.pack(acc) + bytes((kind,))


def acct(acc: int) -> bytes:
    return _U32.pack(acc)


def acct_name(name: str) -> bytes:
    return _fit(name.casefold().encode("utf-8"), "the account name")


def account_prefix(acc: int) -> bytes:
    return _U32.pack(acc)


def mbox(acc: int, mbx: int) -> bytes:
    return _U32U32.pack(acc, mbx)


def split_mbox(k: bytes) -> tuple[int, int]:
    return _U32U32.unpack_from(k)


def mbox_name(acc: int, parent: int, name: str) -> bytes:
    # Mailbox names compare case-sensitively, except INBOX which the session
    # layer canonicalises before it gets here (RFC 9051 5.1).
    return _fit(_U32U32.pack(acc, parent) + name.encode("utf-8"), "the mailbox name")


def mbox_name_prefix(acc: int, parent: int) -> bytes:
    return _U32U32.pack(acc, parent)


def split_mbox_name_parent(k: bytes) -> int:
    """The parent id of an ``mbox.name`` key (the name follows it)."""
    return _U32U32.unpack_from(k)[1]


def msg(acc: int, eid: int) -> bytes:
    return _U32U32.pack(acc, eid)


def split_msg(k: bytes) -> tuple[int, int]:
    return _U32U32.unpack_from(k)


@dataclass(frozen=True)
class KeyShape:
    """How the keys of one table under one account are made from an id, as
    data: PREFIX, then the id as SUFFIX ("u32": 4 bytes big-endian; "bytes":
    as given; "u32.u64.u32": a tuple of three, big-endian).  ``key`` builds
    one (the same bytes as the builder functions); compiled code may
    assemble the same bytes from the shape (and writers, too)."""

    prefix: bytes
    suffix: str

    def key(self, x) -> bytes:
        if self.suffix == "u32":
            return self.prefix + _U32.pack(x)
        if self.suffix == "u32.u64.u32":        # x: a tuple of the three
            return self.prefix + _U32U64U32.pack(*x)
        return self.prefix + bytes(x)


def msg_shape(acc: int) -> KeyShape:
    """Keys of ``msg`` (email records) of ACC: ``msg(acc, eid)``."""
    return KeyShape(_U32.pack(acc), "u32")


def msg_of(acc: int):
    """``eid -> msg(acc, eid)`` as a C-level callable (no Python frame per call)."""
    return functools.partial(_U32U32.pack, acc)


def uid(acc: int, mbx: int, uid_: int) -> bytes:
    return _U32U32U32.pack(acc, mbx, uid_)


def uid_prefix(acc: int, mbx: int) -> bytes:
    return _U32U32.pack(acc, mbx)


def uid_shape(acc: int, mbx: int) -> KeyShape:
    """Keys of ``uid`` of mailbox MBX of ACC: ``uid(acc, mbx, u)`` is ``key(u)``."""
    return KeyShape(_U32U32.pack(acc, mbx), "u32")


def split_uid(k: bytes) -> int:
    return _U32.unpack_from(k, 8)[0]


def mbx_ms(acc: int, mbx: int, ms: int, uid_: int) -> bytes:
    return _U32U32U64U32.pack(acc, mbx, ms, uid_)


def mbx_ms_of(acc: int):
    """``(mbx, ms, uid) -> mbx_ms(acc, mbx, ms, uid)`` as a C-level callable."""
    return functools.partial(_U32U32U64U32.pack, acc)


def mbx_ms_shape(acc: int) -> KeyShape:
    """Keys of ``mbx.ms`` of ACC: ``mbx_ms(acc, mbx, ms, uid)`` is
    ``key((mbx, ms, uid))``, big-endian u32, u64, u32 after the prefix."""
    return KeyShape(_U32.pack(acc), "u32.u64.u32")


def mbx_ms_from(acc: int, mbx: int, ms: int) -> bytes:
    return _U32U32U64.pack(acc, mbx, ms)


def split_mbx_ms(k: bytes) -> tuple[int, int]:
    """-> (modseq, uid)"""
    _, _, ms, u = _U32U32U64U32.unpack_from(k)
    return ms, u


# an mbx.ms (or vanished) key's modseq and uid, after its account and mailbox
_MS_UID = struct.Struct(">8xQI")


def split_mbx_ms_joined(data: bytes) -> list[tuple[int, int]]:
    """``split_mbx_ms`` of each key of DATA, mbx.ms (or vanished) keys
    joined: one C pass, no Python step per key."""
    return list(_MS_UID.iter_unpack(data))


vanished = mbx_ms
vanished_from = mbx_ms_from
split_vanished = split_mbx_ms


def chg(acc: int, ms: int) -> bytes:
    return _U32U64.pack(acc, ms)


def split_chg(k: bytes) -> int:
    return _U32U64.unpack_from(k)[1]


def _kind(kind: str) -> bytes:
    k = _KINDS.get(kind)
    if k is not None:
        return k
    b = kind.encode("utf-8")
    if not 0 < len(b) < 256:
        raise ValueError(f"a change-log kind is 1-255 bytes: {kind!r}")
    k = bytes((len(b),)) + b
    if len(_KINDS) < 64:        # the collections in use (Email, Mailbox, Thread...)
        _KINDS[kind] = k
    return k


_KINDS: dict[str, bytes] = {}   # kind -> its key part (_kind)


def chg_kind(acc: int, kind: str) -> bytes:
    """acc, len(kind) u8, kind: per-kind state of the change log."""
    return _U32.pack(acc) + _kind(kind)


def split_chg_kind(k: bytes) -> str:
    return bytes(k[5:5 + k[4]]).decode("utf-8")


def chg_id(acc: int, kind: str, ms: int, oid: int) -> bytes:
    """acc, len(kind) u8, kind, ms u64, object id u64: one object's change."""
    return _U32.pack(acc) + _kind(kind) + _U64U64.pack(ms, oid)


def chg_id_prefix(acc: int, kind: str, ms: int | None = None) -> bytes:
    """Every row of KIND (MS None), or of KIND at modseq MS."""
    pre = _U32.pack(acc) + _kind(kind)
    return pre if ms is None else pre + _U64.pack(ms)


def chg_id_keys(acc: int, kind: str, ms: int, oids):
    """chg_id(acc, kind, ms, oid) for each of OIDS (the prefix built once)."""
    pre = _U32.pack(acc) + _kind(kind) + _U64.pack(ms)
    return map(pre.__add__, map(_U64.pack, oids))     # no Python frame per key


def split_chg_id(k: bytes) -> tuple[str, int, int]:
    """-> (kind, modseq, object id)"""
    n = k[4]
    ms, oid = _U64U64.unpack_from(k, 5 + n)
    return bytes(k[5:5 + n]).decode("utf-8"), ms, oid


def blob(acc: int, h: bytes) -> bytes:
    return _U32.pack(acc) + h


def blob_shape(acc: int) -> KeyShape:
    """Keys of ``blob`` / ``blob.idx`` of ACC: ``blob(acc, hash)``."""
    return KeyShape(_U32.pack(acc), "bytes")


def blob_of(acc: int):
    """``hash -> blob(acc, hash)`` as a C-level callable (see msg_of)."""
    return _U32.pack(acc).__add__


def blob_ref(acc: int, h: bytes, eid: int) -> bytes:
    return _U32.pack(acc) + h + _U32.pack(eid)


def blob_ref_prefix(acc: int, h: bytes) -> bytes:
    return _U32.pack(acc) + h


def blob_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def thr_ref(acc: int, message_id: str) -> bytes:
    return _U32.pack(acc) + hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).digest()[:16]


def thr_mem(acc: int, tid: int, eid: int) -> bytes:
    return _U32U32U32.pack(acc, tid, eid)


def thr_mem_prefix(acc: int, tid: int) -> bytes:
    return _U32U32.pack(acc, tid)


def dev(acc: int, device: str, key: str) -> bytes:
    return _fit(_U32.pack(acc) + device.encode("utf-8") + b"\0" + key.encode("utf-8"),
                "the device id or state key")


def dev_prefix(acc: int, device: str) -> bytes:
    return _fit(_U32.pack(acc) + device.encode("utf-8") + b"\0", "the device id")

CTR_USAGE = 6     # bytes used by the account's distinct emails (quota)
# outbound mail (store/sending.py); high numbers leave room for other counters
CTR_IDENTITY = 20     # last identity id
CTR_OUTQ = 21         # last submission / queue entry id (shared: an entry's id is its submission's)
CTR_VAC_SENT = 22     # rows in vac.sent (bounded)


def acc_id(acc: int, n: int) -> bytes:
    """acc u32, id u32: ``ident``, ``esub``, ``outq``, ``outq.msg`` keys."""
    return _U32U32.pack(acc, n)


def split_acc_id(k) -> tuple[int, int]:
    return _U32U32.unpack_from(k)


def vac_sent(acc: int, sender: str) -> bytes:
    return _U32.pack(acc) + hashlib.sha256(sender.encode("utf-8", "surrogateescape")).digest()[:16]
CTR_UPLOADS = 9   # bytes of the account's unexpired JMAP uploads (store/uploads.py)


def kw(acc: int, lower: str) -> bytes:
    return _fit(_U32.pack(acc) + lower.encode("utf-8"), "the keyword")


def sub(acc: int, full_name: str) -> bytes:
    return _fit(_U32.pack(acc) + full_name.encode("utf-8"), "the mailbox name")


def tok(acc: int, name: str) -> bytes:
    return _fit(_U32.pack(acc) + name.encode("utf-8"), "the token name")


def tok_hash(digest: bytes) -> bytes:
    return bytes(digest)


def tok_target(acc: int, name: str) -> bytes:
    """The value of a ``tok.hash`` row: acc u32 + token name."""
    return _U32.pack(acc) + name.encode("utf-8")


def split_tok_target(v) -> tuple[int, str]:
    return _U32.unpack_from(v)[0], bytes(v[4:]).decode("utf-8")


def split_tok(k) -> str:
    return bytes(k[4:]).decode("utf-8")


def upl(acc: int, h: bytes) -> bytes:
    return _U32.pack(acc) + h


def upl_exp(expires: int, acc: int, h: bytes) -> bytes:
    return _U64.pack(expires) + _U32.pack(acc) + h


def split_upl_exp(k) -> tuple[int, int, bytes]:
    """-> (expires, acc, hash) of an ``upl.exp`` key."""
    return _U64.unpack_from(k)[0], _U32.unpack_from(k, 8)[0], bytes(k[12:])


def encode_upload(expires: int, content_type: str, data: bytes) -> bytes:
    t = content_type.encode("utf-8")[:255]
    return _U64.pack(expires) + bytes((len(t),)) + t + data


def decode_upload(v) -> tuple[int, str, memoryview]:
    """-> (expires, type, data) of an ``upl`` value."""
    mv = memoryview(v)
    n = mv[8]
    return _U64.unpack_from(mv)[0], bytes(mv[9:9 + n]).decode("utf-8", "replace"), mv[9 + n:]
def psub(acc: int, sid: int) -> bytes:
    return _U32U32.pack(acc, sid)


def split_psub(k) -> tuple[int, int]:
    """-> (account, subscription id) of a ``psub`` key."""
    return _U32U32.unpack_from(k)


# meta keys of the message index's version bookkeeping (mailaccess reindex)
META_INDEX_VERSION = b"index_version"   # oldest format version any stored index may have
_REINDEX = b"reindex."                  # + u32 acc -> last blob hash rebuilt (b"": none yet)


def reindex_cursor(acc: int) -> bytes:
    return _REINDEX + _U32.pack(acc)


def reindex_cursor_prefix() -> bytes:
    return _REINDEX


def split_reindex_cursor(k: bytes) -> int:
    return _U32.unpack_from(k, len(_REINDEX))[0]


# --- whole-key parsers (mailaccess check reads every table) ---------------------

def account_of(k) -> int:
    """The account id that starts every key (``ctr`` keys included)."""
    return _U32.unpack_from(k)[0]


def parse_mbox_name(k) -> tuple[int, str]:
    """-> (parent, name) of an ``mbox.name`` key."""
    return _U32.unpack_from(k, 4)[0], bytes(k[8:]).decode("utf-8", "replace")


def parse_uid(k) -> tuple[int, int]:
    """-> (mailbox, uid) of a ``uid`` key."""
    return _U32U32.unpack_from(k, 4)


def parse_mbx_ms(k) -> tuple[int, int, int]:
    """-> (mailbox, modseq, uid) of an ``mbx.ms`` or ``vanished`` key."""
    return _U32U32U64U32.unpack_from(k)[1:]


parse_vanished = parse_mbx_ms


def parse_blob(k) -> bytes:
    """-> hash of a ``blob`` or ``blob.idx`` key."""
    return bytes(k[4:])


def parse_blob_ref(k) -> tuple[bytes, int]:
    """-> (hash, email id) of a ``blob.ref`` key."""
    return bytes(k[4:-4]), _U32.unpack_from(k, len(k) - 4)[0]


def parse_thr_mem(k) -> tuple[int, int]:
    """-> (thread id, email id) of a ``thr.mem`` key."""
    return _U32U32.unpack_from(k, 4)
