"""``mailaccess check``: verify every invariant of the store, read-only.

``check_store(store)`` reads one snapshot and returns the problems it found as
sentences (an empty list means consistent).  It scans every table once, so it
costs a full read of the store; it never writes.

Invariants, per account:
  * accounts: ``acct.name`` and ``acct`` agree both ways; no data under an
    account id that does not exist; account ids <= the account counter;
  * mailboxes: the parent exists (no cycles), ``mbox.name[parent, name]`` is
    the mailbox and every ``mbox.name`` entry names an existing mailbox; ids
    <= the mailbox counter; highest_ms <= the account modseq; one mailbox per role;
    the first recent UID (\\Recent) is in 1..uidnext;
  * ``uid``: every entry points at an existing email whose record lists that
    membership, and every membership has its entry; UIDs < uidnext, strictly
    increasing, no email twice in one mailbox;
  * ``mbx.ms``: exactly one entry per membership, at the email's last_ms;
  * emails: at least one membership; last_ms <= the account modseq and <= the
    highest_ms of each of its mailboxes; keywords lowercase; ids <= the email
    counter; blob and blob.idx exist, size = blob length, ``blob.ref`` has the
    (hash, eid) entry; ``thr.mem`` has (thread, eid); a ``msg.bs`` row (none:
    stored before format 5) is the index's BODYSTRUCTURE, none is an orphan;
    a ``msg.hdr`` row (none: stored before format 6, or too big) is the
    index's ``search_row``, none is an orphan;
  * blobs: no blob without a ref, no index without a blob, no ref to a
    missing email or to an email with another hash;
  * ``msg.facts``: no record without its email, and each one the record of
    the facts of its email's index (``query.facts.record``); an email may
    have none (stored before the table existed);
  * threads: every ``thr.mem`` entry names an email of that thread;
  * mailbox counters total/unseen/size match the members;
  * change log: every modseq <= the account modseq and >= the horizon (pruned
    below it), summaries decode and count the ``chg.id`` rows of their modseq,
    every row has a summary naming its kind, lies between the kind's horizon
    and state, and the row counter is the number of rows;
  * ``vanished``: in an existing mailbox, below uidnext, not a live UID, not
    below the change-log horizon;
  * usage counter = sum of the sizes of the account's emails.
"""
from __future__ import annotations

from collections import defaultdict

from .mime.index import bodystructure_of, search_row
from .query import facts
from .store import changelog, keys, records
from .store.ops import SEEN

__all__ = ["check_store", "check_account"]

_ACCOUNT_TABLES = ("mbox", "mbox.name", "msg", "msg.facts", "uid", "mbx.ms", "vanished", "chg", "chg.id",
                   "chg.kind", "blob", "blob.idx", "blob.ref", "thr.ref", "thr.mem", "dev", "kw",
                   "sub", "tok", "upl", "psub", "msg.bs", "msg.hdr")


def _scan(txn, db, prefix: bytes = b""):
    cur = txn.cursor(db=db)
    if not cur.set_range(prefix):
        return
    n = len(prefix)
    for k, v in cur:
        k = bytes(k)
        if k[:n] != prefix:
            return
        yield k, v


def check_store(store) -> list[str]:
    """All problems found in STORE (empty: consistent)."""
    problems: list[str] = []
    db = store.db
    with store.read() as txn:
        accounts: dict[int, records.Account] = {}
        for k, v in _scan(txn, db["acct"]):
            acc = keys.account_of(k)
            try:
                accounts[acc] = records.decode_account(acc, v)
            except Exception as exc:  # noqa: BLE001 - report, keep checking
                problems.append(f"account {acc}: record does not decode ({exc})")
        last_acc = _counter(txn, db, 0, keys.CTR_ACCOUNT)
        for acc, a in accounts.items():
            if acc > last_acc:
                problems.append(f"account {acc} ({a.name}): id above the account counter "
                                f"{last_acc}")
            v = txn.get(keys.acct_name(a.name), db=db["acct.name"])
            if v is None or keys.read_u32(v) != acc:
                problems.append(f"account {acc} ({a.name}): acct.name does not map its name "
                                f"to it")
        for k, v in _scan(txn, db["acct.name"]):
            acc = keys.read_u32(v)
            a = accounts.get(acc)
            if a is None or keys.acct_name(a.name) != k:
                problems.append(f"acct.name {k.decode('utf-8', 'replace')!r} -> account {acc} "
                                f"which does not exist or has another name")
        # data under account ids that do not exist
        for table in _ACCOUNT_TABLES:
            seen = set()
            if db[table] is None:      # a later table a read-only open did not find
                continue
            for k, _ in _scan(txn, db[table]):
                acc = keys.account_of(k)
                if acc not in accounts and acc not in seen:
                    seen.add(acc)
                    problems.append(f"table {table}: entries under account {acc}, which does "
                                    f"not exist")
        for k, _ in _scan(txn, db["ctr"]):
            acc = keys.account_of(k)
            if acc and acc not in accounts:
                problems.append(f"table ctr: counter under account {acc}, which does not exist")
                break
        for acc, a in sorted(accounts.items()):
            problems.extend(f"account {acc} ({a.name}): {p}"
                            for p in check_account(txn, db, acc))
    return problems


def _counter(txn, db, acc: int, kind: int) -> int:
    v = txn.get(keys.ctr(acc, kind), db=db["ctr"])
    return keys.read_u64(v) if v is not None else 0


def check_account(txn, db, acc: int) -> list[str]:
    """Problems of one account, over an open read transaction."""
    P: list[str] = []
    pre = keys.account_prefix(acc)
    modseq = _counter(txn, db, acc, keys.CTR_MODSEQ)
    last_email = _counter(txn, db, acc, keys.CTR_EMAIL)
    last_mbx = _counter(txn, db, acc, keys.CTR_MAILBOX)
    usage = _counter(txn, db, acc, keys.CTR_USAGE)

    # --- mailboxes ---------------------------------------------------------------------
    boxes: dict[int, records.Mailbox] = {}
    for k, v in _scan(txn, db["mbox"], pre):
        mbx = keys.split_mbox(k)[1]
        try:
            boxes[mbx] = records.decode_mailbox(mbx, v)
        except Exception as exc:  # noqa: BLE001
            P.append(f"mailbox {mbx}: record does not decode ({exc})")

    def mname(mbx: int) -> str:
        m = boxes.get(mbx)
        return f"mailbox {mbx} {m.name!r}" if m else f"mailbox {mbx}"

    roles: dict[str, int] = {}
    for mbx, m in boxes.items():
        if mbx > last_mbx:
            P.append(f"{mname(mbx)}: id above the mailbox counter {last_mbx}")
        if m.parent and m.parent not in boxes:
            P.append(f"{mname(mbx)}: parent {m.parent} does not exist")
        v = txn.get(keys.mbox_name(acc, m.parent, m.name), db=db["mbox.name"])
        if v is None or keys.read_u32(v) != mbx:
            P.append(f"{mname(mbx)}: mbox.name entry for (parent {m.parent}, name) does not "
                     f"point at it")
        if m.highest_ms > modseq:
            P.append(f"{mname(mbx)}: highest_ms {m.highest_ms} above the account modseq "
                     f"{modseq}")
        if not 1 <= m.recent_from <= m.uidnext:
            P.append(f"{mname(mbx)}: first recent UID {m.recent_from} outside 1..uidnext "
                     f"{m.uidnext}")
        if m.role:
            if m.role in roles:
                P.append(f"{mname(mbx)}: role {m.role} also held by mailbox {roles[m.role]}")
            roles[m.role] = mbx
        # cycles
        p, hops = m.parent, 0
        while p and p in boxes and hops <= len(boxes):
            p = boxes[p].parent
            hops += 1
        if hops > len(boxes):
            P.append(f"{mname(mbx)}: its parents form a cycle")
    for k, v in _scan(txn, db["mbox.name"], pre):
        parent, name = keys.parse_mbox_name(k)
        mbx = keys.read_u32(v)
        m = boxes.get(mbx)
        if m is None or m.parent != parent or m.name != name:
            P.append(f"mbox.name (parent {parent}, {name!r}) -> mailbox {mbx}, which does not "
                     f"exist or has another parent/name")

    # --- emails -------------------------------------------------------------------------
    emails: dict[int, records.EmailRecord] = {}
    for k, v in _scan(txn, db["msg"], pre):
        eid = keys.split_msg(k)[1]
        try:
            emails[eid] = records.decode_email(eid, v)
        except Exception as exc:  # noqa: BLE001
            P.append(f"email {eid}: record does not decode ({exc})")

    # uid table
    uid_map: dict[tuple[int, int], int] = {}
    last_uid: dict[int, int] = {}
    for k, v in _scan(txn, db["uid"], pre):
        mbx, uid = keys.parse_uid(k)
        eid = keys.read_u32(v)
        uid_map[(mbx, uid)] = eid
        m = boxes.get(mbx)
        if m is None:
            P.append(f"uid {uid} in mailbox {mbx}, which does not exist")
        elif uid >= m.uidnext:
            P.append(f"{mname(mbx)}: UID {uid} is not below uidnext {m.uidnext}")
        if uid == 0:
            P.append(f"{mname(mbx)}: UID 0")
        if mbx in last_uid and uid <= last_uid[mbx]:
            P.append(f"{mname(mbx)}: UIDs not strictly increasing at {uid}")
        last_uid[mbx] = uid
        rec = emails.get(eid)
        if rec is None:
            P.append(f"{mname(mbx)}: UID {uid} points at email {eid}, which does not exist")
        elif not any(mem.mailbox == mbx and mem.uid == uid for mem in rec.members):
            P.append(f"{mname(mbx)}: UID {uid} points at email {eid}, whose record does not "
                     f"list that membership")

    # mbx.ms
    ms_entries: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, _ in _scan(txn, db["mbx.ms"], pre):
        mbx, ms, uid = keys.parse_mbx_ms(k)
        ms_entries[(mbx, uid)].append(ms)
    for (mbx, uid), mss in ms_entries.items():
        eid = uid_map.get((mbx, uid))
        if eid is None or eid not in emails:
            P.append(f"{mname(mbx)}: mbx.ms entry for UID {uid}, which is not in the mailbox")
            continue
        if len(mss) > 1:
            P.append(f"{mname(mbx)}: UID {uid} has {len(mss)} mbx.ms entries ({mss})")
        rec = emails[eid]
        stale = [ms for ms in mss if ms != rec.last_ms]
        if stale:
            P.append(f"{mname(mbx)}: UID {uid} mbx.ms entry at modseq {stale[0]}, but email "
                     f"{eid} last_ms is {rec.last_ms}")

    # per email
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    size_sum = 0
    for eid, rec in emails.items():
        size_sum += rec.size
        if eid > last_email:
            P.append(f"email {eid}: id above the email counter {last_email}")
        if not rec.members:
            P.append(f"email {eid}: in no mailbox")
        if rec.last_ms > modseq:
            P.append(f"email {eid}: last_ms {rec.last_ms} above the account modseq {modseq}")
        for kw in rec.keywords:
            if kw != kw.lower() or not kw:
                P.append(f"email {eid}: keyword {kw!r} is not lowercase")
        mboxes_seen = set()
        for mem in rec.members:
            if mem.mailbox in mboxes_seen:
                P.append(f"email {eid}: twice in {mname(mem.mailbox)}")
            mboxes_seen.add(mem.mailbox)
            m = boxes.get(mem.mailbox)
            if m is None:
                P.append(f"email {eid}: member of mailbox {mem.mailbox}, which does not exist")
                continue
            if uid_map.get((mem.mailbox, mem.uid)) != eid:
                P.append(f"email {eid}: membership {mname(mem.mailbox)} UID {mem.uid} has no "
                         f"uid entry pointing back")
            if rec.last_ms not in ms_entries.get((mem.mailbox, mem.uid), ()):
                P.append(f"email {eid}: no mbx.ms entry for {mname(mem.mailbox)} UID {mem.uid} "
                         f"at its last_ms {rec.last_ms}")
            if m.highest_ms < rec.last_ms:
                P.append(f"{mname(mem.mailbox)}: highest_ms {m.highest_ms} below the last_ms "
                         f"{rec.last_ms} of member email {eid}")
            t = totals[mem.mailbox]
            t[0] += 1
            t[1] += SEEN not in rec.keywords
            t[2] += rec.size
        bkey = keys.blob(acc, rec.blob)
        raw = txn.get(bkey, db=db["blob"])
        if raw is None:
            P.append(f"email {eid}: blob {rec.blob.hex()[:16]} missing")
        elif len(raw) != rec.size:
            P.append(f"email {eid}: size {rec.size} but its blob holds {len(raw)} bytes")
        idx = txn.get(bkey, db=db["blob.idx"])
        if idx is None:
            P.append(f"email {eid}: blob.idx {rec.blob.hex()[:16]} missing")
        bs = txn.get(keys.msg(acc, eid), db=db["msg.bs"]) if db["msg.bs"] is not None else None
        if bs is not None and idx is not None and bodystructure_of(idx) != bytes(bs):
            P.append(f"email {eid}: msg.bs differs from its index's BODYSTRUCTURE "
                     f"(mailaccess reindex rewrites it)")
        sr = txn.get(keys.msg(acc, eid), db=db["msg.hdr"]) if db["msg.hdr"] is not None else None
        if sr is not None and idx is not None and search_row(idx) != bytes(sr):
            P.append(f"email {eid}: msg.hdr differs from its index's search lines "
                     f"(mailaccess reindex rewrites it)")
        if txn.get(keys.blob_ref(acc, rec.blob, eid), db=db["blob.ref"]) is None:
            P.append(f"email {eid}: blob.ref entry for its blob missing")
        if txn.get(keys.thr_mem(acc, rec.thread, eid), db=db["thr.mem"]) is None:
            P.append(f"email {eid}: thr.mem entry for thread {rec.thread} missing")

    # counters
    for mbx, m in boxes.items():
        total, unseen, size = totals.get(mbx, (0, 0, 0))
        if (m.total, m.unseen, m.size) != (total, unseen, size):
            P.append(f"{mname(mbx)}: counters total/unseen/size {m.total}/{m.unseen}/{m.size} "
                     f"but the members give {total}/{unseen}/{size}")
    if usage != size_sum:
        P.append(f"usage counter {usage} but the emails' sizes sum to {size_sum}")

    # --- blobs --------------------------------------------------------------------------
    refs: dict[bytes, list[int]] = defaultdict(list)
    for k, _ in _scan(txn, db["blob.ref"], pre):
        h, eid = keys.parse_blob_ref(k)
        refs[h].append(eid)
        rec = emails.get(eid)
        if rec is None:
            P.append(f"blob.ref {h.hex()[:16]} -> email {eid}, which does not exist")
        elif rec.blob != h:
            P.append(f"blob.ref {h.hex()[:16]} -> email {eid}, whose blob is "
                     f"{rec.blob.hex()[:16]}")
    blobs = set()
    for k, _ in _scan(txn, db["blob"], pre):
        h = keys.parse_blob(k)
        blobs.add(h)
        if h not in refs:
            P.append(f"blob {h.hex()[:16]}: orphan (no blob.ref)")
    for k, _ in _scan(txn, db["blob.idx"], pre):
        h = keys.parse_blob(k)
        if h not in blobs:
            P.append(f"blob.idx {h.hex()[:16]}: orphan (no blob)")

    if db["msg.bs"] is not None:
        for k, _ in _scan(txn, db["msg.bs"], pre):
            eid = keys.split_msg(k)[1]
            if eid not in emails:
                P.append(f"msg.bs {eid}: orphan (no email)")
    if db["msg.hdr"] is not None:
        for k, _ in _scan(txn, db["msg.hdr"], pre):
            eid = keys.split_msg(k)[1]
            if eid not in emails:
                P.append(f"msg.hdr {eid}: orphan (no email)")

    # --- msg.facts: a record per email at most, the facts of its index ----------------
    if db["msg.facts"] is not None:      # (None: a read-only open of an older store)
        for k, v in _scan(txn, db["msg.facts"], pre):
            eid = keys.split_msg(k)[1]
            rec = emails.get(eid)
            if rec is None:
                P.append(f"msg.facts of email {eid}, which does not exist")
                continue
            idx = txn.get(keys.blob(acc, rec.blob), db=db["blob.idx"])
            if idx is not None and bytes(v) != facts.record(idx):
                P.append(f"email {eid}: its msg.facts record is not the facts of its index "
                         f"(run `mailaccess reindex`)")

    # --- threads ------------------------------------------------------------------------
    for k, _ in _scan(txn, db["thr.mem"], pre):
        tid, eid = keys.parse_thr_mem(k)
        rec = emails.get(eid)
        if rec is None:
            P.append(f"thr.mem thread {tid} -> email {eid}, which does not exist")
        elif rec.thread != tid:
            P.append(f"thr.mem thread {tid} -> email {eid}, whose thread is {rec.thread}")

    # --- change log and vanished ----------------------------------------------------------------
    hz = _counter(txn, db, acc, keys.CTR_LOG_HORIZON)
    log_rows = _counter(txn, db, acc, keys.CTR_LOG_ROWS)
    if hz > modseq:
        P.append(f"change log: horizon {hz} above the account modseq {modseq}")
    summaries: dict[int, records.ModseqSummary] = {}
    for k, v in _scan(txn, db["chg"], pre):
        ms = keys.split_chg(k)
        if ms > modseq:
            P.append(f"change log: modseq {ms} above the account modseq {modseq}")
        if ms < hz:
            P.append(f"change log: modseq {ms} below the horizon {hz} (not pruned)")
        try:
            summaries[ms] = records.decode_summary(v)
        except Exception as exc:  # noqa: BLE001
            P.append(f"change log: record {ms} does not decode ({exc})")
    kind_states: dict[str, tuple[int, int]] = {}
    for k, v in _scan(txn, db["chg.kind"], pre):
        kind = keys.split_chg_kind(k)
        last, khz = kind_states[kind] = records.decode_kind_state(v)
        if last > modseq or khz > last:
            P.append(f"change log: kind {kind} state {last} / horizon {khz} out of order "
                     f"(account modseq {modseq})")
    per_ms: dict[int, int] = defaultdict(int)
    n_rows = 0
    for k, v in _scan(txn, db["chg.id"], pre):
        kind, ms, oid = keys.split_chg_id(k)
        n = changelog.row_entries(k, v)        # a run row: its ids
        n_rows += n
        per_ms[ms] += n
        s = summaries.get(ms)
        if s is None or kind not in s.kinds:
            P.append(f"change log: {kind} {oid} at modseq {ms} has no summary naming it")
        # c|u|d, or c|u|d + the last id of a run of ids from OID (format 4)
        if bytes(v[:1]) not in (b"c", b"u", b"d") or len(v) not in (1, 9) or \
                len(v) == 9 and keys.read_u64(bytes(v[1:])) <= oid:
            P.append(f"change log: {kind} {oid} at modseq {ms}: bad status {bytes(v)!r}")
        last, khz = kind_states.get(kind, (0, 0))
        if ms > last:
            P.append(f"change log: {kind} {oid} at modseq {ms} above the kind's state {last}")
        if ms < khz:
            P.append(f"change log: {kind} {oid} at modseq {ms} below the kind's horizon {khz}")
    for ms, s in summaries.items():
        if s.rows != per_ms.get(ms, 0):
            P.append(f"change log: modseq {ms} summary counts {s.rows} rows, "
                     f"{per_ms.get(ms, 0)} present")
    if n_rows != log_rows:
        P.append(f"change log: row counter {log_rows} but {n_rows} rows present")
    for k, _ in _scan(txn, db["vanished"], pre):
        mbx, ms, uid = keys.parse_vanished(k)
        m = boxes.get(mbx)
        if m is None:
            P.append(f"vanished UID {uid} in mailbox {mbx}, which does not exist")
            continue
        if ms > modseq:
            P.append(f"{mname(mbx)}: vanished UID {uid} at modseq {ms} above the account "
                     f"modseq {modseq}")
        if ms < hz:
            P.append(f"{mname(mbx)}: vanished UID {uid} at modseq {ms} below the change-log "
                     f"horizon {hz} (not pruned)")
        if uid >= m.uidnext:
            P.append(f"{mname(mbx)}: vanished UID {uid} not below uidnext {m.uidnext}")
        if (mbx, uid) in uid_map:
            P.append(f"{mname(mbx)}: UID {uid} is both live and vanished")
    return P
