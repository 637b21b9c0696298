"""The keyword change of ONE email, all of its writes in one call: pure-Python
twin (the source of truth) of ``kwone_c``.

A client's usual STORE (``UID STORE n +FLAGS (\\Flagged)``, one message per
command) made ~100 Python calls through the general path (store/ops.py
``set_keywords_reporting``: WriteTx's put wrappers, the request's Change and
its coalescing, ``changelog.write``'s loops, the mailbox record compared for
a tree change).  ``write_one`` makes the same table writes, in the same order,
logged as the same redo ops, for the case that path spends them on: one
email, in one mailbox (the one the client sees it in), whose keywords change.

The writes (as ``set_keywords_reporting`` + ``WriteTx.flush_changes`` make
them, tests/test_store_kwone.py holds the tables and the redo ops to theirs):
the account's modseq counter, the old ``mbx.ms`` key out and the new one in,
the email record, the mailbox record (HIGHESTMODSEQ; its unseen count when
\\Seen moved), the change log's ``chg.id`` row of the email (and of the
mailbox when its count moved), each kind's ``chg.kind`` state, the modseq's
``chg`` summary and the log's row counter.  Pruning the log, when it grew
past its limit, is the caller's (store/ops.py: ``changelog.after_rows``).
"""
from __future__ import annotations

from ..store import records
from ..store.records import EMAIL, MAILBOX
from ..store.redolog import DELETE, PUT
from . import load as _load

_emailrec = _load("emailrec")

_UPDATED = records.STATUS_CODES["updated"]


def tables(txn, handles: tuple, keys):
    """What ``write_one`` takes for a store's tables: HANDLES, its py-lmdb
    handles of ``ctr, msg, mbx.ms, mbox, chg.id, chg.kind, chg``, and KEYS,
    the store's key builders (store/keys.py, handed in: this module builds
    no key of its own; the compiled twin checks its own against them).
    TXN: one of the store's write transactions (the compiled twin reads
    the tables' LMDB numbers through it).  Made once per store."""
    return handles, keys


def write_one(txn, dbs, log, acc: int, mbx: int, eid: int, add: frozenset,
              remove: frozenset, replace, seen: str, now: int):
    """Change email EID's keywords (lowercase: REPLACE when not None, else
    (old | ADD) - REMOVE) in TXN (a py-lmdb write transaction; DBS what
    ``tables`` made of the store's tables), each
    write appended to LOG (a list, as LoggedTxn.ops; None: not logged) as
    (PUT or DELETE, table, key, value).  NOW: the time of the ``chg``
    summary.

    -> None when this is not the one-email case (no mailbox MBX, no record,
    or the email in another mailbox than MBX or in several): nothing was
    written, the general path does it.  Else (MBX's modseq before, the new
    modseq or None when the keywords stay as they were (nothing written),
    the email's record after, the log's row count after or 0, whether the
    Mailbox was logged updated (its unseen count moved))."""
    (ctr, msg, mbx_ms, mbox, chg_id, chg_kind, chg), keys = dbs
    get, put = txn.get, txn.put
    mkey = keys.mbox(acc, mbx)
    mraw = get(mkey, db=mbox)
    if mraw is None:
        return None
    m = records.decode_mailbox(mbx, mraw)
    before = m.highest_ms
    ekey = keys.msg(acc, eid)
    data = get(ekey, db=msg)
    if data is None:
        return None
    # (asked with any modseq first: a modseq only when something changes)
    out = _emailrec.rewrite_keywords(data, add, remove, replace, 0, seen)
    if out is None:
        return before, None, data, 0, False
    members = out[2]
    if len(members) != 1 or members[0][0] != mbx:
        return None
    ckey = keys.ctr(acc, keys.CTR_MODSEQ)
    v = get(ckey, db=ctr)
    ms = (keys.read_u64(v) if v is not None else 0) + 1
    record, old_ms, members, seen_delta = _emailrec.rewrite_keywords(
        data, add, remove, replace, ms, seen)
    uid = members[0][1]
    # (the writes in the general path's order: the redo record is the same)
    val = keys.u64(ms)
    put(ckey, val, db=ctr)
    old = keys.mbx_ms(acc, mbx, old_ms, uid)
    gone = txn.delete(old, db=mbx_ms)
    if log is not None:
        log.append((PUT, "ctr", ckey, val))
        if gone:
            log.append((DELETE, "mbx.ms", old, b""))
    w = [(mbx_ms, "mbx.ms", keys.mbx_ms(acc, mbx, ms, uid), b"")]
    w.append((msg, "msg", ekey, record))
    m.highest_ms = ms
    if seen_delta:
        m.unseen -= seen_delta
    w.append((mbox, "mbox", mkey, records.encode_mailbox(m)))
    kinds = [EMAIL, MAILBOX] if seen_delta else [EMAIL]
    for kind, oid in zip(kinds, (eid, mbx)):
        w.append((chg_id, "chg.id", keys.chg_id(acc, kind, ms, oid), _UPDATED))
    for kind in kinds:
        kk = keys.chg_kind(acc, kind)
        raw = get(kk, db=chg_kind)
        w.append((chg_kind, "chg.kind", kk, records.encode_kind_state(
            ms, records.decode_kind_state(raw)[1] if raw is not None else 0)))
    w.append((chg, "chg", keys.chg(acc, ms), records.encode_summary_of(
        now, len(kinds), kinds, [mbx])))
    rkey = keys.ctr(acc, keys.CTR_LOG_ROWS)
    v = get(rkey, db=ctr)
    total = (keys.read_u64(v) if v is not None else 0) + len(kinds)
    w.append((ctr, "ctr", rkey, keys.u64(total)))
    for db, table, k, val in w:
        put(k, val, db=db)
        if log is not None:
            log.append((PUT, table, k, val))
    return before, ms, record, total, bool(seen_delta)
