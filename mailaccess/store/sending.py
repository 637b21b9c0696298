"""Outbound mail in the store: identities, email submissions, the durable
outbound queue and the vacation response (records, write ops, readers).

What this module owns (the only place that knows these tables' layouts):

* ``ident``: an account's sending identities (JMAP Identity, RFC 8621 §6),
  change-logged under kind IDENTITY.
* ``esub``: email submissions (RFC 8621 §7), kind SUBMISSION; a submission's
  ``undoStatus`` and ``deliveryStatus`` are updated here by the queue.
* ``outq`` / ``outq.msg``: the queue: one entry per message to send (a
  submission, or an automatic reply), with the recipients still to do, the
  next attempt's time and a copy of the bytes (the email itself may be
  destroyed once submitted).  An entry written and acknowledged survives
  kill -9; the outbound service (server/outbound.py) reads and updates it.
  Queue writes log kind OUTBOUND so the service is woken by the commit.
* ``vac`` / ``vac.sent``: the vacation response (RFC 8621 §8), kind
  VACATION, and the senders that got an automatic reply recently (RFC 3834
  §2: at most one per sender per period), bounded per account.

Records are versioned JSON objects (a format byte, then JSON) shaped like
the RFC's objects, so the JMAP layer maps them one to one.  Write ops run on
the writer thread (``fn(tx, ...)``); readers take a View.
"""
from __future__ import annotations

import json
from . import keys
from .errors import Conflict, NotFound

IDENTITY = "Identity"
SUBMISSION = "EmailSubmission"
VACATION = "VacationResponse"
OUTBOUND = "Outbound"            # queue entries (no JMAP type: wakes the queue)

_V1 = b"\x01"


def _enc(obj: dict) -> bytes:
    return _V1 + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _dec(data) -> dict:
    if data[0] != 1:
        raise ValueError(f"unknown outbound record version {data[0]}")
    return json.loads(bytes(data[1:]))


def _require_account(tx, acc: int) -> None:
    if tx.account(acc) is None:
        raise NotFound("no such account")


# --- readers (View methods call these) ---------------------------------------------

def identities(v, acc: int) -> dict[int, dict]:
    return {keys.split_acc_id(k)[1]: _dec(val)
            for k, val in v._scan("ident", keys.account_prefix(acc))}


def identity(v, acc: int, iid: int) -> dict | None:
    val = v._get("ident", keys.acc_id(acc, iid))
    return _dec(val) if val is not None else None


def submissions(v, acc: int) -> dict[int, dict]:
    return {keys.split_acc_id(k)[1]: _dec(val)
            for k, val in v._scan("esub", keys.account_prefix(acc))}


def submission(v, acc: int, sid: int) -> dict | None:
    val = v._get("esub", keys.acc_id(acc, sid))
    return _dec(val) if val is not None else None


def queue(v) -> list[tuple[int, int, dict]]:
    """Every queue entry of every account: [(account, entry id, entry)]."""
    return [(*keys.split_acc_id(k), _dec(val)) for k, val in v._scan("outq", b"")]


def queue_entry(v, acc: int, qid: int) -> dict | None:
    val = v._get("outq", keys.acc_id(acc, qid))
    return _dec(val) if val is not None else None


def queue_message(v, acc: int, qid: int) -> bytes | None:
    val = v._get("outq.msg", keys.acc_id(acc, qid))
    return bytes(val) if val is not None else None


def vacation(v, acc: int) -> dict | None:
    val = v._get("vac", keys.acct(acc))
    return _dec(val) if val is not None else None


# --- identities --------------------------------------------------------------------

def create_identity(tx, acc: int, rec: dict) -> int:
    _require_account(tx, acc)
    iid = tx.next_counter(acc, keys.CTR_IDENTITY)
    tx.put("ident", keys.acc_id(acc, iid), _enc(rec))
    tx.log(acc, "created", IDENTITY, iid)
    return iid


def ensure_identity(tx, acc: int, rec: dict) -> int | None:
    """The account's default identity REC, made if it has none yet; -> its
    id, or None when it had identities already."""
    if next(iter(tx._scan("ident", keys.account_prefix(acc))), None) is not None:
        return None
    return create_identity(tx, acc, rec)


def update_identity(tx, acc: int, iid: int, changes: dict) -> dict:
    rec = identity(tx, acc, iid)
    if rec is None:
        raise NotFound(f"identity {iid} does not exist")
    rec.update(changes)
    tx.put("ident", keys.acc_id(acc, iid), _enc(rec))
    tx.log(acc, "updated", IDENTITY, iid)
    return rec


def destroy_identity(tx, acc: int, iid: int) -> None:
    rec = identity(tx, acc, iid)
    if rec is None:
        raise NotFound(f"identity {iid} does not exist")
    if not rec.get("mayDelete", True):
        raise Conflict("this identity cannot be deleted")
    tx.delete("ident", keys.acc_id(acc, iid))
    tx.log(acc, "destroyed", IDENTITY, iid)


# --- submissions and the queue -----------------------------------------------------

def _put_entry(tx, acc: int, qid: int, entry: dict, raw: bytes | None = None) -> None:
    tx.put("outq", keys.acc_id(acc, qid), _enc(entry))
    if raw is not None:
        tx.put("outq.msg", keys.acc_id(acc, qid), raw)
    tx.log(acc, "updated", OUTBOUND, qid)


def _drop_entry(tx, acc: int, qid: int) -> None:
    tx.delete("outq", keys.acc_id(acc, qid))
    tx.delete("outq.msg", keys.acc_id(acc, qid))
    tx.log(acc, "destroyed", OUTBOUND, qid)


def enqueue(tx, acc: int, raw: bytes, mail_from: str, rcpts: list[str], *, now: int,
            send_at: int, expires: int, submission: dict | None = None) -> int:
    """Queue RAW for RCPTS from MAIL_FROM, first attempt at SEND_AT, given up
    at EXPIRES; with SUBMISSION (its record) it is an EmailSubmission of the
    same id.  -> the id."""
    _require_account(tx, acc)
    qid = tx.next_counter(acc, keys.CTR_OUTQ)
    entry = {"from": mail_from, "rcpts": {r: None for r in rcpts}, "attempts": 0,
             "created": now, "next": send_at, "expires": expires,
             "submission": submission is not None}
    _put_entry(tx, acc, qid, entry, raw)
    if submission is not None:
        submission = dict(submission)
        submission["deliveryStatus"] = {
            r: {"smtpReply": "250 2.0.0 queued", "delivered": "queued", "displayed": "unknown"}
            for r in rcpts}
        tx.put("esub", keys.acc_id(acc, qid), _enc(submission))
        tx.log(acc, "created", SUBMISSION, qid)
    return qid


def cancel_submission(tx, acc: int, sid: int) -> None:
    """undoStatus pending -> canceled, and its queue entry goes; Conflict
    when it is no longer pending (the queue has taken it)."""
    rec = submission(tx, acc, sid)
    if rec is None:
        raise NotFound(f"submission {sid} does not exist")
    if rec.get("undoStatus") != "pending":
        raise Conflict("the submission is not pending any more")
    rec["undoStatus"] = "canceled"
    for st in (rec.get("deliveryStatus") or {}).values():
        st["delivered"] = "no"
        st["smtpReply"] = "554 5.0.0 canceled before sending"
    tx.put("esub", keys.acc_id(acc, sid), _enc(rec))
    tx.log(acc, "updated", SUBMISSION, sid)
    if queue_entry(tx, acc, sid) is not None:
        _drop_entry(tx, acc, sid)


def destroy_submission(tx, acc: int, sid: int) -> None:
    """Forget a submission.  One still pending is canceled with it (it is
    never sent); one being sent goes on being sent (its record only goes)."""
    rec = submission(tx, acc, sid)
    if rec is None:
        raise NotFound(f"submission {sid} does not exist")
    if rec.get("undoStatus") == "pending" and queue_entry(tx, acc, sid) is not None:
        _drop_entry(tx, acc, sid)
    tx.delete("esub", keys.acc_id(acc, sid))
    tx.log(acc, "destroyed", SUBMISSION, sid)


def prune_submissions(tx, cutoff: int, start: bytes = b"", limit: int = 1000) -> bytes | None:
    """Forget the submissions sent (undoStatus ``final``, every recipient
    done: no queue entry left) or canceled whose send time (``at``) is
    before CUTOFF, as if the user had destroyed them: each is logged
    ``destroyed`` (RFC 8621 7: "the server MAY choose to delete
    EmailSubmission objects after a certain time").  A submission still in
    the queue stays whatever its age.  Ids grow with time within an account,
    so an account's scan stops at its first younger submission.  Looks at
    most LIMIT records from key START: -> the key to go on from, or None
    when every account was looked at."""
    cur = tx.txn.cursor(db=tx.db["esub"])
    if not cur.set_range(start):
        return None
    gone: list[tuple[int, int]] = []
    nxt: bytes | None = None
    for _ in range(limit):
        acc, sid = keys.split_acc_id(cur.key())
        rec = _dec(cur.value())
        if rec.get("at", 0) >= cutoff:
            if acc == 0xFFFFFFFF or not cur.set_range(keys.account_prefix(acc + 1)):
                break
        else:
            if rec.get("undoStatus") in ("final", "canceled") and \
                    queue_entry(tx, acc, sid) is None:
                gone.append((acc, sid))
            if not cur.next():
                break
    else:
        nxt = bytes(cur.key())
    for acc, sid in gone:
        tx.delete("esub", keys.acc_id(acc, sid))
        tx.log(acc, "destroyed", SUBMISSION, sid)
    return nxt


def claim(tx, acc: int, qid: int) -> dict | None:
    """The queue takes entry QID for an attempt: its submission (if any and
    still there) becomes undoStatus final, so it can no longer be canceled.
    -> the entry, or None when it is gone (canceled meanwhile)."""
    entry = queue_entry(tx, acc, qid)
    if entry is None:
        return None
    if entry.get("submission"):
        rec = submission(tx, acc, qid)
        if rec is not None and rec.get("undoStatus") == "pending":
            rec["undoStatus"] = "final"
            tx.put("esub", keys.acc_id(acc, qid), _enc(rec))
            tx.log(acc, "updated", SUBMISSION, qid)
    return entry


def record_attempt(tx, acc: int, qid: int, results: dict[str, tuple[str, str]],
                   next_at: int | None) -> bool:
    """After an attempt: RESULTS {recipient: (delivered "yes"/"no"/"queued",
    SMTP reply)} for the recipients tried; NEXT_AT the next attempt for
    those still queued.  The submission's deliveryStatus follows.  An entry
    with no queued recipient left goes.  -> whether it is finished."""
    entry = queue_entry(tx, acc, qid)
    if entry is None:
        return True
    entry["attempts"] = entry.get("attempts", 0) + 1
    results = dict(results)
    if next_at is None:         # no next attempt: whoever is left has failed
        for r, s in entry["rcpts"].items():
            if s is None and results.get(r, ("queued",))[0] == "queued":
                results[r] = ("no", "554 5.3.0 not delivered; given up")
    for r, (state, reply) in results.items():
        if r in entry["rcpts"]:
            entry["rcpts"][r] = None if state == "queued" else state
            entry.setdefault("replies", {})[r] = reply
    left = [r for r, s in entry["rcpts"].items() if s is None]
    if entry.get("submission"):
        rec = submission(tx, acc, qid)
        if rec is not None:
            ds = rec.get("deliveryStatus") or {}
            for r, (state, reply) in results.items():
                ds[r] = {"smtpReply": reply, "delivered": state, "displayed": "unknown"}
            rec["deliveryStatus"] = ds
            if rec.get("undoStatus") == "pending":
                rec["undoStatus"] = "final"
            tx.put("esub", keys.acc_id(acc, qid), _enc(rec))
            tx.log(acc, "updated", SUBMISSION, qid)
    if not left or next_at is None:
        _drop_entry(tx, acc, qid)
        return True
    entry["next"] = next_at
    _put_entry(tx, acc, qid, entry)
    return False


# --- vacation response ---------------------------------------------------------------

def set_vacation(tx, acc: int, rec: dict) -> None:
    _require_account(tx, acc)
    tx.put("vac", keys.acct(acc), _enc(rec))
    tx.log(acc, "updated", VACATION, 1)


def note_auto_reply(tx, acc: int, sender: str, now: int, period: int,
                    max_entries: int) -> bool:
    """Whether SENDER may get an automatic reply now (none in the last
    PERIOD seconds); if so it is remembered.  At most MAX_ENTRIES senders are
    remembered per account: past that, entries older than PERIOD go, then
    the oldest ones."""
    key = keys.vac_sent(acc, sender.lower())
    old = tx._get("vac.sent", key)
    if old is not None and now - keys.read_u64(old) < period:
        return False
    tx.put("vac.sent", key, keys.u64(now))
    if old is None:
        n = tx.add_counter(acc, keys.CTR_VAC_SENT, 1)
        if n > max_entries:
            rows = [(keys.read_u64(v), bytes(k)) for k, v in
                    tx._scan("vac.sent", keys.account_prefix(acc))]
            rows.sort()
            doomed = [k for t, k in rows if now - t >= period]
            excess = len(rows) - len(doomed) - max_entries
            if excess > 0:
                keep = [k for t, k in rows if now - t < period and k != key]
                doomed += keep[:excess]
            for k in doomed:
                tx.delete("vac.sent", k)
            tx.put("ctr", keys.ctr(acc, keys.CTR_VAC_SENT), keys.u64(len(rows) - len(doomed)))
    return True


def forget_account(tx, acc: int) -> None:
    """delete_account's part: every outbound row of ACC."""
    pre = keys.account_prefix(acc)
    for table in ("ident", "esub", "outq", "outq.msg", "vac", "vac.sent"):
        tx.delete_prefix(table, pre)
    for kind in (keys.CTR_IDENTITY, keys.CTR_OUTQ, keys.CTR_VAC_SENT):
        tx.delete("ctr", keys.ctr(acc, kind))
