"""Redo-log ops that record a bulk write as what makes it, not byte by byte.

A ``STORE 1:* +FLAGS`` on 10,000 messages rewrites 10,000 email records,
moves 20,000 ``mbx.ms`` index keys and writes 10,000 change-log rows: logged
physically (store/redolog.py ``PUT``/``DELETE``) that is 40,000 ops and a
2 MB record built, written and synced before the answer can leave (and an
EXPUNGE of as many, in a second mailbox too, 40,000).  Three op kinds log
them in a few kilobytes (framed like the others: kind, table, key,
value; docs/durability.md "Logical redo ops"):

``KEYWORDS`` (table ``msg``, empty key, value = the request): account,
    modseq, UNCHANGEDSINCE, the keyword change and the email ids in the
    order given.  Its writes are those of ``rewrite_keywords``, a pure
    function of the email records it reads, the request and the modseq:
    the new records (``msg``), the old ``mbx.ms`` keys deleted and the new
    ones put.  Replay calls the same function in the same place of the same
    transaction's op sequence, so on the same state (replay runs in order
    from the checkpoint) it makes the same writes.  Everything else the
    request writes (the modseq counter, the mailboxes' counts, the change
    log) is logged as ops of its own around it.

``EXPUNGE`` (table ``uid``, empty key, value = the request): account,
    mailbox, modseq and the UIDs (ascending, distinct).  Its writes are
    those of ``expunge``: ``emailrec.apply_expunge``, a pure function of
    the ``uid`` rows and email records it reads, the mailbox, the UIDs and
    the modseq (the ``uid`` rows deleted, each email's membership of the
    mailbox taken out of its record, the old ``mbx.ms`` keys deleted and
    the new ones put).  The emails it leaves in no mailbox are destroyed by
    physical ops after it (their records, blobs, thread rows), and the
    ``vanished`` rows are a RUN op.

``RUN`` (a table, key = a prefix, value = the common value and the key
    suffixes): ``put(prefix + suffix, value)`` for each suffix, in order
    (a bulk write's change-log rows: ``acc kind ms`` + each object id).

The compiled and pure twins of ``_speedups/emailrec`` produce the same bytes
(tests/speedups), so a record written by one replays identically under the
other.  A change to what ``rewrite_keywords`` writes for a given request is
a change of the log format: give it a new op kind.
"""
from __future__ import annotations

import json
import struct
import sys
from array import array

from .. import _speedups, vocab
from . import keys

KEYWORDS, RUN = 3, 4           # op kinds (1, 2: PUT, DELETE in store/redolog.py)
EXPUNGE = 6                    # (5: NEXT, store/redolog.py)

# a set_keywords on fewer emails is logged physically (a single STORE's
# record stays as it was)
MIN_EMAILS = 32

# KEYWORDS value: account u32, modseq u64, unchanged_since u64 (+1, 0 = none),
# length of the keyword JSON u32; the JSON ([add, remove, replace|null],
# sorted); then the email ids, u32 each
_KW = struct.Struct(">IQQI")
# EXPUNGE value: account u32, mailbox u32, modseq u64; then the UIDs, u32 each
_EX = struct.Struct(">IIQ")
# RUN value: length of the common value u32, suffix width u16; the value;
# then the suffixes
_RUN = struct.Struct(">IH")

_emailrec = _speedups.load("emailrec")
_U32 = "I" if array("I").itemsize == 4 else "L"     # an array code of 4-byte items


def rewrite_keywords(txn, dbs, acc: int, eids, add: frozenset, remove: frozenset,
                     replace: frozenset | None, unchanged_since: int | None, alloc_ms,
                     want_records: bool = False, made=None, run: bool = False):
    """The writes of a bulk keyword change on raw LMDB transaction TXN
    (DBS: table name -> handle): ``emailrec.apply_keywords`` (the records
    rewritten as ``emailrec.rewrite_many`` does, their old ``mbx.ms`` keys
    deleted, the new ones and the new records put; MADE(records), if given,
    called once the records are put, before the index keys move).  RUN: the
    records as one ``emailrec_py.RecordRun`` instead of a dict.
    -> (changed eids, conflicting eids, {mailbox: \\Seen delta}, records or None)."""
    return _emailrec.apply_keywords(
        txn.cursor(db=dbs["msg"]), txn.cursor(db=dbs["mbx.ms"]), keys.msg_shape(acc),
        keys.mbx_ms_shape(acc), eids, add, remove, replace, vocab.SEEN, unchanged_since,
        alloc_ms, want_records, made, run)


def encode_keywords(acc: int, ms: int, eids, add, remove, replace,
                    unchanged_since: int | None) -> bytes:
    kw = json.dumps([sorted(add), sorted(remove),
                     None if replace is None else sorted(replace)]).encode()
    # the ids big-endian u32 through one array (struct.pack of 10,000
    # arguments took twice as long)
    ids = array(_U32, eids)
    if sys.byteorder == "little":
        ids.byteswap()
    return (_KW.pack(acc, ms, 0 if unchanged_since is None else unchanged_since + 1, len(kw))
            + kw + ids.tobytes())


def decode_keywords(value: bytes):
    """-> (acc, ms, eids, add, remove, replace, unchanged_since)."""
    acc, ms, since, kl = _KW.unpack_from(value)
    off = _KW.size
    add, remove, replace = json.loads(bytes(value[off:off + kl]))
    off += kl
    n = (len(value) - off) // 4
    eids = list(struct.unpack_from(f">{n}I", value, off))
    return (acc, ms, eids, frozenset(add), frozenset(remove),
            None if replace is None else frozenset(replace), None if since == 0 else since - 1)


def replay_keywords(txn, dbs, value: bytes) -> None:
    acc, ms, eids, add, remove, replace, since = decode_keywords(value)
    rewrite_keywords(txn, dbs, acc, eids, add, remove, replace, since, lambda: ms)


def expunge(txn, dbs, acc: int, mbx: int, uids, alloc_ms):
    """The writes of a bulk EXPUNGE of UIDS (ascending, distinct) from
    mailbox MBX on raw LMDB transaction TXN (DBS: table name -> handle):
    ``emailrec.apply_expunge``.  -> (the UIDs removed, the emails rewritten,
    the emails to destroy [(eid, record)], their total size, how many were
    unseen, the other mailboxes met {mailbox: None})."""
    return _emailrec.apply_expunge(
        txn.cursor(db=dbs["uid"]), txn.cursor(db=dbs["msg"]), txn.cursor(db=dbs["mbx.ms"]),
        keys.uid_shape(acc, mbx), keys.msg_shape(acc), keys.mbx_ms_shape(acc), mbx, uids,
        vocab.SEEN, alloc_ms)


def encode_expunge(acc: int, mbx: int, ms: int, uids) -> bytes:
    return _EX.pack(acc, mbx, ms) + struct.pack(f">{len(uids)}I", *uids)


def decode_expunge(value: bytes):
    """-> (acc, mbx, ms, uids)."""
    acc, mbx, ms = _EX.unpack_from(value)
    n = (len(value) - _EX.size) // 4
    return acc, mbx, ms, list(struct.unpack_from(f">{n}I", value, _EX.size))


def replay_expunge(txn, dbs, value: bytes) -> None:
    acc, mbx, ms, uids = decode_expunge(value)
    expunge(txn, dbs, acc, mbx, uids, lambda: ms)


def encode_run(value: bytes, width: int, suffixes: bytes) -> bytes:
    return _RUN.pack(len(value), width) + value + suffixes


def run_items(prefix: bytes, value: bytes):
    """The (key, value) items of a RUN op (its KEY is PREFIX, its value VALUE)."""
    vl, width = _RUN.unpack_from(value)
    off = _RUN.size
    common = bytes(value[off:off + vl])
    off += vl
    prefix = bytes(prefix)
    return [(prefix + bytes(value[i:i + width]), common)
            for i in range(off, len(value), width)]


def apply(txn, dbs, kind: int, table: str, key, value) -> None:
    """Replay one logical op on TXN."""
    if kind == KEYWORDS:
        replay_keywords(txn, dbs, value)
    elif kind == EXPUNGE:
        replay_expunge(txn, dbs, value)
    elif kind == RUN:
        txn.cursor(db=dbs[table]).putmulti(run_items(key, value))
    else:
        raise ValueError(f"unknown redo op kind {kind}")
