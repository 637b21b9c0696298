"""The change log: what changed at each modseq, readable per kind, pruned.

Owns three tables (layouts in docs/store.md):

* ``chg.id``   ``acc kind ms oid -> c|u|d``: one row per object per modseq,
  the object's net status in that request; or ``c|u|d`` + the last id (u64):
  one row for the run of consecutive ids OID..last of one status (format 4:
  a bulk write's ids; a ``STORE 1:*`` on 10,000 messages appended one after
  the other is one row).  Rows of one kind are contiguous and ordered by
  (modseq, object id), so ``/changes`` is one cursor walk from the client's
  position and can stop after any object, inside a modseq and inside a run
  too (a client pages through those 10,000 ids).
* ``chg.kind`` ``acc kind -> (last modseq, horizon)``: the kind's state (the
  last modseq that changed it, kept on write, so no scan finds it) and the
  highest modseq whose rows of that kind were pruned.
* ``chg``      ``acc ms -> summary``: commit time, entries left (an entry
  is one object's change: a run row holds as many as its ids, so the
  counts, the size limit and the pruning budget mean what they meant when
  every row was one), kinds and mailboxes of the modseq; pruning walks it
  oldest first.

plus two ``ctr`` counters per account: entries held (``CTR_LOG_ROWS``) and the
account horizon (``CTR_LOG_HORIZON``, the highest modseq pruned at all; the
``vanished`` table is pruned with the same modseqs).

A *state* is a position in one kind's rows: ``"57"`` means every change up
to and including modseq 57, ``"57.12"`` every change up to object 12 of
modseq 57 (a page that ended inside a modseq).  A state is answerable while
it is not older than the kind's horizon; otherwise ``CannotCalculateChanges``.

Writing is one pass over the request's coalesced ``Change`` (one put per
object or run of ids, no read of the log); pruning deletes whole modseqs oldest first, by
age and by size, at most a budget of rows per call, so no transaction grows
without bound.
"""
from __future__ import annotations

import bisect
import struct
from itertools import repeat
from dataclasses import dataclass, field

from .. import _speedups
from . import keys, records
from .errors import CannotCalculateChanges
from .records import STATUS_CODES, Change, ModseqSummary
from .redolog import DELETE

_C, _U, _D = (STATUS_CODES[s][0] for s in ("created", "updated", "destroyed"))
SWEEP_ACCOUNTS = 500    # accounts one sweep transaction looks at, at most
_U64 = struct.Struct(">Q")
_U32U32 = struct.Struct(">II")
_emailrec = _speedups.load("emailrec")


@dataclass(frozen=True, slots=True)
class Retention:
    """How long the log keeps changes (config.py [store] changelog_*)."""

    max_age: int = 90 * 86400       # seconds; 0 = no age limit
    max_entries: int = 100_000      # chg.id rows per account; 0 = no size limit
    slice: int = 2_000              # rows deleted per pruning step at most
    sweep_interval: float = 300.0   # seconds between age sweeps by the writer; 0 = never

    @property
    def hard_entries(self) -> int:
        """Entries past which a write's pruning is done before the writer's
        next request (0: no size limit).  Between ``max_entries`` and this,
        the writer prunes in its idle time only, a slice per transaction:
        a big write past the limit answers without paying for the rows it
        pushed out (see ``write``)."""
        return OVERSHOOT * self.max_entries


# how far past max_entries a log may grow while the writer has no idle
# moment to prune it (Retention.hard_entries)
OVERSHOOT = 2


@dataclass(slots=True)
class ChangesPage:
    """One ``/changes`` answer (RFC 8620 5.2) for one kind."""

    old_state: str
    new_state: str
    has_more: bool
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    destroyed: list[int] = field(default_factory=list)


# --- states -----------------------------------------------------------------------------

def format_state(ms: int, after: int | None = None) -> str:
    return str(ms) if after is None else f"{ms}.{after}"


def parse_state(state: str | int) -> tuple[int, int | None]:
    """-> (modseq, last object id seen inside it or None when complete)."""
    if isinstance(state, int) and not isinstance(state, bool):
        if state < 0:
            raise CannotCalculateChanges(f"not a state: {state}")
        return state, None
    if isinstance(state, str):
        ms, dot, after = state.partition(".")
        if ms.isascii() and ms.isdigit() and len(ms) <= 20 and (
                not dot or (after.isascii() and after.isdigit() and len(after) <= 20)):
            return int(ms), (int(after) if dot else None)
    raise CannotCalculateChanges(f"not a state of this store: {state!r}")


# --- reading ----------------------------------------------------------------------------

def kind_meta(v, acc: int, kind: str) -> tuple[int, int]:
    """(last modseq that changed KIND, KIND's horizon); (0, 0) if never logged."""
    raw = v._get("chg.kind", keys.chg_kind(acc, kind))
    return records.decode_kind_state(raw) if raw is not None else (0, 0)


def kind_state(v, acc: int, kind: str) -> str:
    return format_state(kind_meta(v, acc, kind)[0])


def horizon(v, acc: int) -> int:
    """Highest modseq pruned from ACC's log (0: nothing pruned yet).  Changes
    after it are complete; a state older than it cannot be answered."""
    return v.counter(acc, keys.CTR_LOG_HORIZON)


def changes(v, acc: int, kind: str, since: str | int,
            max_changes: int | None = None) -> ChangesPage:
    """What changed in KIND after state SINCE, at most MAX_CHANGES ids.

    RFC 8620 5.2: an id is in at most one list; created then destroyed after
    SINCE is in none; created then updated is created; has_more says another
    call from new_state has more.  Raises CannotCalculateChanges for a state
    older than the horizon, newer than the account, or malformed."""
    if max_changes is not None and max_changes < 1:
        raise ValueError("max_changes must be a positive number")
    ms, after = parse_state(since)
    last, hz = kind_meta(v, acc, kind)
    if ms > v.highest_modseq(acc):
        raise CannotCalculateChanges(f"state {since} is newer than the account")
    if ms < hz or (ms == hz and after is not None):
        raise CannotCalculateChanges(
            f"state {since} is older than the change log keeps for {kind} (horizon {hz})")
    first: dict[int, int] = {}
    final: dict[int, int] = {}
    pos = None
    next_ms = None
    for rms, lo, hi, code in _rows(v, acc, kind, ms, after):
        for oid in range(lo, hi + 1):
            if oid not in first:
                if max_changes is not None and len(first) >= max_changes:
                    next_ms = rms
                    break
                first[oid] = code
            final[oid] = code
            pos = (rms, oid)
        if next_ms is not None:
            break
    page = ChangesPage(format_state(ms, after), "", next_ms is not None)
    if next_ms is None:
        page.new_state = format_state(max(ms, last))
    elif next_ms != pos[0]:
        page.new_state = format_state(pos[0])          # every row of pos's modseq taken
    else:
        page.new_state = format_state(*pos)
    for oid, f in first.items():
        fin = final[oid]
        if f == _C:
            if fin != _D:
                page.created.append(oid)
            # created and destroyed since: the client never saw it (RFC 8620 5.2)
        elif fin == _D:
            page.destroyed.append(oid)
        else:
            page.updated.append(oid)
    return page


def _run_end(oid: int, val) -> int:
    """The last id of the chg.id row of OID whose value is VAL."""
    return _U64.unpack_from(val, 1)[0] if len(val) > 1 else oid


def _rows(v, acc: int, kind: str, ms: int, after: int | None):
    """(modseq, first id, last id, status code) of the chg.id rows under PRE
    (one kind) after state (MS, AFTER), in order: from modseq MS + 1 on, or,
    with AFTER, from object AFTER + 1 of modseq MS on (a run of MS starting
    at or before AFTER and going on past it comes first, cut there)."""
    pre = keys.chg_id_prefix(acc, kind)
    if after is None:
        start = keys.chg_id(acc, kind, ms + 1, 0)
    else:
        start = keys.chg_id(acc, kind, ms, after + 1)
        cur = v.txn.cursor(db=v.db["chg.id"])
        if cur.set_range(start):
            ok = cur.prev()
        else:
            ok = cur.last()
        if ok and bytes(cur.key()).startswith(keys.chg_id_prefix(acc, kind, ms)):
            hi = _run_end(0, cur.value())
            if hi > after:
                yield ms, after + 1, hi, cur.value()[0]
    for k, val in v._scan("chg.id", pre, start):
        _, rms, oid = keys.split_chg_id(k)
        yield rms, oid, _run_end(oid, val), val[0]


def updates_come_with(v, acc: int, kind: str, since: str, until: str,
                      companions: tuple[str, ...], budget: int = 10_000) -> bool:
    """True when every modseq after state SINCE up to state UNTIL at which
    KIND has an *updated* row also has a row of one of the COMPANIONS kinds.
    JMAP Mailbox/changes uses it to tell that only the counts changed (a
    mailbox is logged updated with its emails' changes; a rename,
    subscription, sort order or role change logs no email).  False when it
    cannot tell: a malformed state, or more than BUDGET rows to look at.  A
    SINCE inside a modseq ("57.12") looks at the whole modseq (safe side)."""
    try:
        ms, inside = parse_state(since)
        end, _ = parse_state(until)       # a page ending inside END: END looked at whole
    except CannotCalculateChanges:
        return False
    pre = keys.chg_id_prefix(acc, kind)
    last_ok = None
    start = keys.chg_id(acc, kind, ms if inside is not None else ms + 1, 0)
    for k, val in v._scan("chg.id", pre, start):
        budget -= 1
        if budget < 0:
            return False
        _, rms, _oid = keys.split_chg_id(k)
        if rms > end:
            break
        if val[0] != _U or rms == last_ok:
            continue
        if not any(next(v._scan("chg.id", keys.chg_id_prefix(acc, c, rms)), None) is not None
                   for c in companions):
            return False
        last_ok = rms
    return True


def ids_between(v, acc: int, kind: str, lo: int, hi: int, limit: int) -> set[int] | None:
    """The ids of KIND logged at a modseq after LO up to and including HI,
    whatever their status; None when there are more than LIMIT, or when LO
    is older than KIND's horizon (the log no longer holds them all)."""
    if lo < kind_meta(v, acc, kind)[1]:
        return None
    out: set[int] = set()
    for rms, first, last, _code in _rows(v, acc, kind, lo, None):
        if rms > hi:
            break
        if len(out) + (last - first + 1) > limit:
            return None
        out.update(range(first, last + 1))
    return out

def changes_since(v, acc: int, modseq: int, limit: int | None = None) -> list[Change]:
    """The whole Change of each modseq after MODSEQ, oldest first (for tests,
    tools and push catch-up); CannotCalculateChanges below the horizon."""
    if modseq < horizon(v, acc):
        raise CannotCalculateChanges(f"modseq {modseq} is older than the change log")
    out = []
    for k, raw in v._scan("chg", keys.account_prefix(acc), keys.chg(acc, modseq + 1)):
        ms = keys.split_chg(k)
        s = records.decode_summary(raw)
        c = Change(ms, mailboxes=list(s.mailboxes))
        for kind in s.kinds:
            for rk, val in v._scan("chg.id", keys.chg_id_prefix(acc, kind, ms)):
                status = records.STATUS_NAMES[val[0]]
                oid = keys.split_chg_id(rk)[2]
                getattr(c, status).setdefault(kind, []).extend(range(oid, _run_end(oid, val) + 1))
        out.append(c)
        if limit is not None and len(out) >= limit:
            break
    return out


def oldest_change(v, acc: int) -> int:
    """Lowest modseq still in the log (0 when the log is empty)."""
    for k, _ in v._scan("chg", keys.account_prefix(acc)):
        return keys.split_chg(k)
    return 0


# --- writing ----------------------------------------------------------------------------

def write(tx, acc: int, c: Change, now: int, *, prune_after: bool = True) -> None:
    """Append C (one request's coalesced change) to ACC's log: one row per
    object, the kinds' states, the modseq summary.  If the log is over its
    size limit, pruning is due, handed to the store's writer
    (``prune_later``) and done after the acknowledgement in transactions of
    their own: down to the limit in the writer's idle time, a slice at a
    time; and, when the log is past ``hard_entries`` (twice the limit), the
    excess plus a slice before the writer runs its next request.  A store
    without a writer (tools) prunes here, at most the rows written plus a
    slice."""
    rows = 0
    ms = c.modseq
    named = []          # the kinds, as c.collections() (no sets for one kind)
    for status, code in STATUS_CODES.items():
        for kind, ids in getattr(c, status).items():
            named.append(kind)
            if len(ids) == 1:       # a one-message STORE: its email, its mailbox
                tx.put("chg.id", keys.chg_id(acc, kind, ms, ids[0]), code)
            elif len(ids) < 16:
                tx.put_many("chg.id", list(zip(keys.chg_id_keys(acc, kind, ms, ids),
                                               repeat(code))))
            else:       # a bulk write's rows: a row per run of consecutive ids
                _write_runs(tx, acc, kind, ms, ids, code)
            rows += len(ids)
    kinds = sorted(set(named)) if len(named) > 1 else named
    for kind in kinds:
        kk = keys.chg_kind(acc, kind)
        raw = tx._get("chg.kind", kk)
        hz = records.decode_kind_state(raw)[1] if raw is not None else 0
        tx.put("chg.kind", kk, records.encode_kind_state(ms, hz))
    tx.put("chg", keys.chg(acc, ms), records.encode_summary_of(now, rows, kinds, c.mailboxes))
    total = tx.add_counter(acc, keys.CTR_LOG_ROWS, rows) if rows else \
        tx.counter(acc, keys.CTR_LOG_ROWS)
    if prune_after:
        after_rows(tx, acc, total, rows, now)


def after_rows(tx, acc: int, total: int, rows: int, now: int) -> None:
    """ROWS rows were written to ACC's log, which holds TOTAL now: pruning
    due past the size limit (``write``; a one-email keyword change written
    in one call, store/ops.py ``set_keywords_one``)."""
    policy = tx.store.retention
    if policy.max_entries and total > policy.max_entries:
        later = getattr(tx.store, "prune_later", None)
        if later is not None:
            # not in this request's transaction (a bulk STORE over a full log
            # would delete ~12,000 rows before its answer could leave), and
            # not before the next request either unless the log is past the
            # hard limit: pruning the 12,000 entries of 4,000 APPENDs takes
            # ~60 ms, which an EXPUNGE sent right after a bulk STORE waited
            # for (stop 24: 142 ms against Dovecot's 76)
            over = total - policy.hard_entries
            later(acc, over + policy.slice if over > 0 else 0)
        else:
            prune(tx, acc, policy, now, rows + policy.slice)


def _write_runs(tx, acc: int, kind: str, ms: int, ids, code: bytes) -> None:
    """KIND's rows of IDS (16 or more) at MS: one row per run of consecutive
    ids (CODE + the run's last id), the ids alone one row each (CODE, all
    of them one redo op)."""
    singles, runs = _emailrec.id_runs(ids)
    if runs:
        tx.put_many("chg.id", list(zip(keys.chg_id_keys(acc, kind, ms, [lo for lo, _ in runs]),
                                       [code + _U64.pack(hi) for _, hi in runs])))
    if singles:
        tx.put_run("chg.id", keys.chg_id_prefix(acc, kind, ms),
                   struct.pack(f">{len(singles)}Q", *singles), 8, code)


# --- pruning ----------------------------------------------------------------------------

class _Oldest:
    """The rows of one kind (``chg.id``, PRE = acc + kind) or of one mailbox
    (``vanished``, PRE = acc + mailbox), oldest modseq first, as pruning
    deletes them: a cursor of its own that stays on the oldest row left,
    so a modseq's rows are deleted with no search of the tree, and a
    modseq with none (an APPEND's, for ``vanished``) costs a comparison.
    Its deletes are logged for the redo log as ``WriteTx.delete``'s are.
    LMDB keeps every cursor of a write transaction right when another one
    deletes or puts."""

    __slots__ = ("key", "value", "delete", "set_range", "pre", "n", "next", "table", "log",
                 "runs")

    def __init__(self, tx, table: str, pre: bytes):
        cur = tx._raw.cursor(db=tx.db[table])
        self.key, self.value, self.delete, self.set_range = \
            cur.key, cur.value, cur.delete, cur.set_range
        self.pre, self.n, self.table = pre, len(pre), table
        self.log = tx._ops.append if tx._ops is not None else None
        self.runs = table == "chg.id"
        self.next = self._ms() if self.set_range(pre) else None

    def _ms(self) -> int | None:
        """The modseq of the row the cursor is on, None past PRE's rows."""
        k = self.key()
        if k and k[:self.n] == self.pre:
            return _U64.unpack_from(k, self.n)[0]
        return None

    def take(self, tx, ms: int, limit: int) -> int:
        """Delete up to LIMIT entries of modseq MS; -> how many: a
        ``chg.id`` run row counts its ids, and one that would pass LIMIT
        loses its first ids only."""
        if limit <= 0 or self.next is None or self.next > ms:
            return 0
        if self.next < ms:          # (rows older than the pruned modseqs: none expected)
            self.next = self._ms() if self.set_range(self.pre + _U64.pack(ms)) else None
            if self.next != ms:
                return 0
        p = self.pre + _U64.pack(ms)
        n = len(p)
        key, delete, log, table = self.key, self.delete, self.log, self.table
        done = 0
        while done < limit:
            k = key()
            if not k or k[:n] != p:
                break
            size = 1
            if self.runs:
                val = self.value()
                if len(val) > 1:
                    oid = _U64.unpack_from(k, n)[0]
                    hi = _U64.unpack_from(val, 1)[0]
                    size = hi - oid + 1
            if not delete():
                break
            if log is not None:
                log((DELETE, table, k, b""))
            if done + size > limit:        # the rest of the run stays
                take = limit - done
                tx.put(table, p + _U64.pack(oid + take),
                       val[:1] + (_U64.pack(hi) if oid + take < hi else b""))
                self.next = ms
                return limit
            done += size
        self.next = self._ms()
        return done


def row_entries(k, val) -> int:
    """How many ids the ``chg.id`` row K: VAL stands for (1 for a row of
    another table, whose value is empty)."""
    if len(val) <= 1:
        return 1
    oid = keys.split_chg_id(bytes(k))[2]
    return _run_end(oid, val) - oid + 1


def _raise_horizon(tx, acc: int, ms: int, kinds) -> None:
    """The account horizon to MS and that of each of KINDS ({kind: modseq}
    or kinds all at MS), where they are lower."""
    if tx.counter(acc, keys.CTR_LOG_HORIZON) < ms:
        tx.put("ctr", keys.ctr(acc, keys.CTR_LOG_HORIZON), keys.u64(ms))
    for kind in kinds:
        kms = kinds[kind] if isinstance(kinds, dict) else ms
        kk = keys.chg_kind(acc, kind)
        raw = tx._get("chg.kind", kk)
        last, hz = records.decode_kind_state(raw) if raw is not None else (kms, 0)
        if hz < kms:
            tx.put("chg.kind", kk, records.encode_kind_state(last, kms))


def prune(tx, acc: int, policy: Retention, now: int, budget: int) -> tuple[int, bool]:
    """Drop ACC's oldest modseqs while the log holds more than max_entries
    rows or they are older than max_age, deleting at most BUDGET rows
    (chg.id and vanished).  The newest modseq always stays.  A modseq cut
    short by the budget keeps its remaining rows (and summary) and is
    finished by the next call; the horizon already covers it.
    -> (rows deleted, True when more is due).

    One cursor per kind and per mailbox for the whole call (``_Oldest``),
    the horizons and the row counter written once at the end (pruning the
    log of 10,000 APPENDs is 10,000 small modseqs)."""
    newest = tx.highest_modseq(acc)
    total = tx.counter(acc, keys.CTR_LOG_ROWS)
    cutoff = now - policy.max_age if policy.max_age else None
    limit = policy.max_entries
    pre = keys.account_prefix(acc)
    spent = 0
    top = 0                           # highest modseq pruned (at all) by this call
    kinds_hz: dict[str, int] = {}     # kind -> highest modseq pruned of it
    kind_rows: dict[str, _Oldest] = {}
    box_rows: dict[int, _Oldest] = {}
    chg = tx._raw.cursor(db=tx.db["chg"])
    chg_key, chg_value, chg_delete = chg.key, chg.value, chg.delete
    log = tx._ops.append if tx._ops is not None else None
    more = False
    total0 = total
    ok = chg.set_range(pre)
    while True:
        k = chg_key() if ok else None
        if not k or k[:4] != pre:
            break
        ms = _U64.unpack_from(k, 4)[0]
        if ms >= newest:
            break
        s = records.decode_summary(chg_value())
        over = bool(limit) and total > limit
        if not (over or (cutoff is not None and s.time <= cutoff)):
            break
        if spent >= budget:
            more = True
            break
        top = ms
        for kind in s.kinds:
            kinds_hz[kind] = ms
        for mbx in s.mailboxes:
            rows = box_rows.get(mbx)
            if rows is None:
                rows = box_rows[mbx] = _Oldest(tx, "vanished", _U32U32.pack(acc, mbx))
            spent += rows.take(tx, ms, budget - spent)
        gone = 0
        for kind in s.kinds:
            rows = kind_rows.get(kind)
            if rows is None:
                rows = kind_rows[kind] = _Oldest(tx, "chg.id", keys.chg_id_prefix(acc, kind))
            gone += rows.take(tx, ms, budget - spent - gone)
        spent += gone
        total -= gone
        if gone < s.rows or spent >= budget and _has_rows(tx, acc, ms, s):
            s.rows -= gone
            tx.put("chg", bytes(k), records.encode_summary(s))
            more = True
            break
        k = bytes(k)
        ok = chg_delete()             # (the cursor moves to the next summary)
        if log is not None:
            log((DELETE, "chg", k, b""))
        ok = bool(chg_key())
    if top:
        _raise_horizon(tx, acc, top, kinds_hz)
    if total != total0:
        tx.put("ctr", keys.ctr(acc, keys.CTR_LOG_ROWS), keys.u64(max(0, total)))
    return spent, more


def _has_rows(tx, acc: int, ms: int, s: ModseqSummary) -> bool:
    for mbx in s.mailboxes:
        if next(tx._scan("vanished", keys.vanished_from(acc, mbx, ms)), None) is not None:
            return True
    return False


def sweep(tx, policy: Retention, now: int, start_acc: int = 0) -> int | None:
    """One pruning slice over every account from START_ACC on (the writer
    runs it when idle).  -> the account to continue from, or None when every
    account is within its limits."""
    budget = policy.slice
    looked = 0
    for k, _ in tx._scan("acct", b"", keys.acct(start_acc)):
        acc = keys.read_u32(k)
        if looked >= SWEEP_ACCOUNTS:      # bounded work per transaction
            return acc
        looked += 1
        spent, more = prune(tx, acc, policy, now, budget)
        budget -= spent
        if more or budget <= 0:
            return acc
    return None


# --- format 1 -> 2 ----------------------------------------------------------------------

def migrate_v1(tx, now: int, chunk: int = 1000) -> int:
    """Rewrite every format-1 ``chg`` row (a whole Change as JSON) as rows and
    a summary, in the open transaction.  -> modseqs migrated."""
    done = 0
    start = b""
    while True:
        batch = []
        for k, raw in tx._scan("chg", b"", start):
            if raw[0] == 1:
                batch.append((k, bytes(raw)))
                if len(batch) >= chunk:
                    break
        if not batch:
            return done
        for k, raw in batch:
            acc = keys.read_u32(k)
            c = records.decode_change(keys.split_chg(k), raw)
            write(tx, acc, c, now, prune_after=False)
        done += len(batch)
        start = batch[-1][0] + b"\0"


# --- IMAP QRESYNC fallback helper --------------------------------------------------------

def absent_ranges(ranges, present) -> list[tuple[int, int]]:
    """The parts of RANGES (sorted, merged (lo, hi)) holding no number of
    PRESENT (ascending): what a client may know that no longer exists, as
    ranges however large they are."""
    out = []
    for lo, hi in ranges:
        i = bisect.bisect_left(present, lo)
        cur = lo
        while i < len(present) and present[i] <= hi:
            p = present[i]
            if p > cur:
                out.append((cur, p - 1))
            cur = p + 1
            i += 1
        if cur <= hi:
            out.append((cur, hi))
    return out
