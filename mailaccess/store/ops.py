"""Protocol-neutral write operations: each runs on the writer thread inside
one request's transaction (``fn(tx, ...)``) and allocates one modseq.

IMAP, JMAP, ActiveSync, LMTP and the CLI all change mail only through these.
Every function checks that the objects it touches belong to the account it
was given.  Indexing (parsing the message) happens before the request is
queued, on the caller's side, so the writer thread only writes.

A request is all or nothing: the writer runs it in a nested transaction that
is rolled back whole when the function raises, so a composite operation
(``append_many``, ``move_mailbox_to_path``) needs no undo of its own.

Keywords and roles are spelled as in ``mailaccess.vocab`` (JMAP forms).
The features only IMAP needs are grouped at the end under "IMAP-only".
"""
from __future__ import annotations

import functools
import operator
import struct
import time
from dataclasses import dataclass

from .. import _speedups, vocab
from . import changelog, keys, logical, records, sending
from ..mime.index import bodystructure_of, search_row
from .errors import AlreadyExists, Conflict, InvalidName, LimitReached, NotFound, OverQuota
from .records import EMAIL, MAILBOX, THREAD, Account, EmailRecord, Mailbox, Membership
from .tx import WriteTx

_emailrec = _speedups.load("emailrec")
_kwone = _speedups.load("kwone")

SEEN = vocab.SEEN          # (kept for callers that import them from here)
DELETED = vocab.DELETED

# Created for every new account (issue: CREATE-SPECIAL-USE, JMAP roles).
DEFAULT_MAILBOXES = vocab.DEFAULT_MAILBOXES

# Name limits (mailaccess/vocab.py) keep every key built from a client's
# names under LMDB's 511 bytes: ``mbox.name`` = 8 + one level, ``sub`` = 4 +
# the "/"-joined full name, ``kw`` = 4 + a keyword.
MAX_NAME_BYTES = vocab.MAX_MAILBOX_LEVEL_BYTES     # one hierarchy level
MAX_PATH_BYTES = vocab.MAX_MAILBOX_PATH_BYTES      # the whole name, levels joined by "/"
MAX_KEYWORD_BYTES = vocab.MAX_KEYWORD_BYTES


# --- accounts --------------------------------------------------------------------

def create_account(tx: WriteTx, name: str, password_hash: str, quota: int = 0,
                   scram: str = "") -> int:
    if not name or len(name.encode()) > 255 or any(c in name for c in "\0\r\n\t "):
        raise InvalidName("account names are 1-255 bytes with no spaces or control characters")
    if tx.account_by_name(name) is not None:
        raise AlreadyExists(f"account {name!r} exists already")
    acc = tx.next_counter(0, keys.CTR_ACCOUNT)
    tx.put_account(Account(acc, name, password_hash, int(time.time()), quota, scram))
    tx.put("acct.name", keys.acct_name(name), keys.u32(acc))
    # a new account's default (special-use) mailboxes start subscribed; any
    # other mailbox only when a client subscribes it (RFC 3501 6.3.3)
    for mname, role in DEFAULT_MAILBOXES:
        create_mailbox(tx, acc, 0, mname, role=role, subscribed=True)
    return acc


def set_password(tx: WriteTx, acc: int, password_hash: str, scram: str = "") -> None:
    a = tx.account(acc)
    if a is None:
        raise NotFound("no such account")
    a.password_hash = password_hash
    a.scram = scram
    tx.put_account(a)


def set_quota(tx: WriteTx, acc: int, quota: int) -> None:
    a = tx.account(acc)
    if a is None:
        raise NotFound("no such account")
    a.quota = quota
    tx.put_account(a)


def delete_account(tx: WriteTx, acc: int) -> None:
    a = tx.account(acc)
    if a is None:
        raise NotFound("no such account")
    pre = keys.account_prefix(acc)
    for table in ("mbox", "mbox.name", "msg", "msg.facts", "uid", "mbx.ms", "vanished", "chg",
                  "chg.id", "chg.kind",
                  "blob", "blob.idx", "blob.ref", "thr.ref", "thr.mem", "dev", "kw", "sub",
                  "psub", "msg.bs", "msg.hdr", "acct"):
        tx.delete_prefix(table, pre)
    from . import tokens, uploads     # their own tables (app passwords, uploads)
    tokens.delete_all(tx, acc)
    uploads.delete_all(tx, acc)
    for kind in (keys.CTR_MODSEQ, keys.CTR_EMAIL, keys.CTR_MAILBOX, keys.CTR_UIDVALIDITY,
                 keys.CTR_USAGE, keys.CTR_LOG_ROWS, keys.CTR_LOG_HORIZON,
                 keys.CTR_PUSHSUB, keys.CTR_KEYWORDS, keys.CTR_MAILBOXES,
                 keys.CTR_INDEXES, keys.CTR_TREE):
        tx.delete("ctr", keys.ctr(acc, kind))
    sending.forget_account(tx, acc)
    tx.delete("acct.name", keys.acct_name(a.name))


# --- mailboxes ---------------------------------------------------------------------

def _check_name(name: str) -> None:
    if not name:
        raise InvalidName("a mailbox name has no empty level")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidName(f"mailbox name too long: at most {MAX_NAME_BYTES} bytes per level "
                          f"and {MAX_PATH_BYTES} in all")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise InvalidName("mailbox names cannot contain control characters")


def _check_path(full: str) -> None:
    if len(full.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidName(f"mailbox name too long: at most {MAX_PATH_BYTES} bytes in all "
                          f"and {MAX_NAME_BYTES} per level")


def _longest_below(tx: WriteTx, acc: int, mbx: int) -> int:
    """Bytes the deepest descendant of MBX adds to MBX's full name.  One pass
    over the account's ``mbox.name`` keys (parent id + the name's UTF-8
    bytes: no mailbox record decoded, at most ``max_mailboxes`` keys), then
    the subtree in memory: on the shared writer, a lengthening rename over a
    subtree of 9,800 mailboxes took 86 ms walking and decoding records."""
    kids: dict[int, list[tuple[int, int]]] = {}
    unpack, read = keys.split_mbox_name_parent, keys.read_u32
    for k, v in tx._scan("mbox.name", keys.account_prefix(acc)):
        kids.setdefault(unpack(k), []).append((read(v), len(k) - 8))
    longest, todo, seen = 0, [(mbx, 0)], set()
    while todo:
        cur, extra = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        if extra > longest:
            longest = extra
        for child, n in kids.get(cur, ()):
            todo.append((child, extra + 1 + n))
    return longest


def _mailbox_count(tx: WriteTx, acc: int) -> int:
    """The account's mailboxes, from its counter; a store made before the
    counter existed counts them once (one scan of the account's ``mbox``
    rows) and keeps the counter from then on."""
    key = keys.ctr(acc, keys.CTR_MAILBOXES)
    v = tx._get("ctr", key)
    if v is not None:
        return keys.read_u64(v)
    n = sum(1 for _ in tx._scan("mbox", keys.account_prefix(acc)))
    tx.put("ctr", key, keys.u64(n))
    return n


def create_mailbox(tx: WriteTx, acc: int, parent: int, name: str, *, role: str | None = None,
                   subscribed: bool = False, sort_order: int = 0) -> int:
    """A new mailbox NAME under PARENT; -> its id.  It is not subscribed
    unless SUBSCRIBED, or its name was subscribed while it did not exist."""
    _check_name(name)
    if parent and tx.mailbox(acc, parent) is None:
        raise NotFound("the parent mailbox does not exist")
    if tx.child_id(acc, parent, name) is not None:
        raise AlreadyExists(f"mailbox {name!r} exists already")
    if role is not None and tx.mailbox_by_role(acc, role) is not None:
        raise AlreadyExists(f"a mailbox with role {role} exists already")
    full = "/".join(tx.mailbox_path(acc, parent) + [name])
    _check_path(full)
    if tx._get("sub", keys.sub(acc, full)) is not None:
        # IMAP-only: the name was subscribed while it did not exist (the
        # ``sub`` table, keyed by IMAP names): it is again
        tx.delete("sub", keys.sub(acc, full))
        tx.tree_changed(acc)
        subscribed = True
    # the cap ([store] max_mailboxes_per_account) bounds what every per-account
    # walk of the mailboxes costs (LIST, Mailbox/get, FolderSync, a rename's
    # subtree check), whichever protocol creates them
    cap = getattr(tx.store, "max_mailboxes", 0)
    count = _mailbox_count(tx, acc)
    if cap and count >= cap:
        raise LimitReached(f"an account has at most {cap} mailboxes "
                      "([store] max_mailboxes_per_account); delete some first")
    tx.put("ctr", keys.ctr(acc, keys.CTR_MAILBOXES), keys.u64(count + 1))
    mbx = tx.next_counter(acc, keys.CTR_MAILBOX)
    ms = tx.modseq(acc)
    uidvalidity = tx.next_counter(acc, keys.CTR_UIDVALIDITY, at_least=int(time.time()) & 0x7FFFFFFF)
    m = Mailbox(mbx, name, parent, role, uidvalidity, 1, ms, ms, subscribed, sort_order)
    tx.put_mailbox(acc, m)
    tx.put("mbox.name", keys.mbox_name(acc, parent, name), keys.u32(mbx))
    tx.log(acc, "created", MAILBOX, mbx)
    return mbx


def create_mailbox_path(tx: WriteTx, acc: int, path: list[str], *,
                        role: str | None = None) -> int:
    """Create PATH and any missing parents (IMAP CREATE semantics); -> leaf id."""
    parent = 0
    for i, part in enumerate(path):
        existing = tx.child_id(acc, parent, part)
        last = i == len(path) - 1
        if existing is not None:
            if last:
                raise AlreadyExists("mailbox exists already")
            parent = existing
        else:
            parent = create_mailbox(tx, acc, parent, part, role=role if last else None)
    return parent


def rename_mailbox(tx: WriteTx, acc: int, mbx: int, new_parent: int, new_name: str) -> None:
    _check_name(new_name)
    m = tx.require_mailbox(acc, mbx)
    if new_parent:
        p = new_parent
        while p:  # no cycles
            if p == mbx:
                raise Conflict("a mailbox cannot move under itself")
            pm = tx.require_mailbox(acc, p)
            p = pm.parent
    if tx.child_id(acc, new_parent, new_name) is not None:
        raise AlreadyExists("a mailbox of that name exists already")
    new_full = "/".join(tx.mailbox_path(acc, new_parent) + [new_name]).encode("utf-8")
    old_full = "/".join(tx.mailbox_path(acc, mbx)).encode("utf-8")
    # every descendant's full name grows by what MBX's grows: when it does
    # not grow, no descendant's can pass the limit, and the subtree is not
    # walked (renaming each of a chain of mailboxes over a wide subtree was
    # chain x subtree reads on the writer: 2.5 s for 100 x 5,000)
    if len(new_full) > MAX_PATH_BYTES or (len(new_full) > len(old_full) and len(
            new_full) + _longest_below(tx, acc, mbx) > MAX_PATH_BYTES):
        raise InvalidName(f"mailbox name too long: at most {MAX_PATH_BYTES} bytes in all "
                          f"(child mailboxes included) and {MAX_NAME_BYTES} per level")
    tx.delete("mbox.name", keys.mbox_name(acc, m.parent, m.name))
    m.parent, m.name = new_parent, new_name
    m.highest_ms = tx.modseq(acc)
    tx.put_mailbox(acc, m)
    tx.put("mbox.name", keys.mbox_name(acc, new_parent, new_name), keys.u32(mbx))
    tx.log(acc, "updated", MAILBOX, mbx)


def move_mailbox_to_path(tx: WriteTx, acc: int, mbx: int, path: list[str]) -> int:
    """Give MBX the full name PATH: missing parents are created (RFC 9051
    6.3.6; a JMAP Mailbox/set update names an existing parent, so nothing is
    created), then MBX is renamed/moved there.  The inbox follows the
    IMAP-only INBOX rule (``rename_inbox``): its messages move to a new
    mailbox at PATH and the inbox stays.  -> the id of the mailbox at PATH."""
    if not path:
        raise InvalidName("a mailbox path has at least one level")
    m = tx.require_mailbox(acc, mbx)
    parent = 0
    for part in path[:-1]:
        nxt = tx.child_id(acc, parent, part)
        parent = nxt if nxt is not None else create_mailbox(tx, acc, parent, part)
    if m.role == vocab.ROLE_INBOX:
        return rename_inbox(tx, acc, parent, path[-1])
    rename_mailbox(tx, acc, mbx, parent, path[-1])
    return mbx


def delete_mailbox(tx: WriteTx, acc: int, mbx: int, *, remove_emails: bool = True) -> None:
    m = tx.require_mailbox(acc, mbx)
    count = _mailbox_count(tx, acc)     # (before its row goes: a first count scans)
    if m.role == vocab.ROLE_INBOX:
        raise Conflict("INBOX cannot be deleted")
    if tx.children(acc, mbx):
        raise Conflict("the mailbox has children; delete them first")
    uids = tx.uids(acc, mbx)
    if uids and not remove_emails:
        raise Conflict("the mailbox is not empty")
    if uids:
        expunge(tx, acc, mbx, [u for u, _ in uids])
    tx.delete_prefix("vanished", keys.uid_prefix(acc, mbx))
    full = "/".join(tx.mailbox_path(acc, mbx))
    if m.subscribed and len(full.encode("utf-8")) <= MAX_PATH_BYTES:
        # IMAP-only, RFC 9051 6.3.9: the subscription outlives the mailbox
        # (not that of a name longer than the limit, made before there was
        # one: its key would not fit, and the mailbox must still go)
        tx.put("sub", keys.sub(acc, full), b"")
    tx.delete("mbox.name", keys.mbox_name(acc, m.parent, m.name))
    tx.delete("mbox", keys.mbox(acc, mbx))
    tx.tree_changed(acc)
    tx.put("ctr", keys.ctr(acc, keys.CTR_MAILBOXES), keys.u64(max(0, count - 1)))
    tx.log(acc, "destroyed", MAILBOX, mbx)


def update_mailbox(tx: WriteTx, acc: int, mbx: int, *, subscribed: bool | None = None,
                   sort_order: int | None = None, role: str | None | type(...) = ...) -> None:
    m = tx.require_mailbox(acc, mbx)
    if subscribed is not None:
        m.subscribed = subscribed
    if sort_order is not None:
        m.sort_order = sort_order
    if role is not ...:
        if role is not None and role != m.role:
            other = tx.mailbox_by_role(acc, role)
            if other is not None:
                raise AlreadyExists(f"a mailbox with role {role} exists already")
        m.role = role
    tx.modseq(acc)
    tx.put_mailbox(acc, m)
    tx.log(acc, "updated", MAILBOX, mbx)


def set_mailbox(tx: WriteTx, acc: int, mbx: int, *, parent: int | None = None,
                name: str | None = None, subscribed: bool | None = None,
                sort_order: int | None = None, role: str | None | type(...) = ...) -> None:
    """JMAP Mailbox/set update in one request: a move/rename (PARENT 0 is the
    top level; cycle- and name-checked by rename_mailbox) and the other
    properties (update_mailbox).  None/... leave a property as it is."""
    m = tx.require_mailbox(acc, mbx)
    new_parent = m.parent if parent is None else parent
    new_name = m.name if name is None else name
    if (new_parent, new_name) != (m.parent, m.name):
        rename_mailbox(tx, acc, mbx, new_parent, new_name)
    if subscribed is not None or sort_order is not None or role is not ...:
        update_mailbox(tx, acc, mbx, subscribed=subscribed, sort_order=sort_order, role=role)


# --- emails ---------------------------------------------------------------------------

@dataclass(slots=True)
class NewEmail:
    """Everything append needs, computed before the request is queued."""

    raw: bytes
    index: bytes                 # encoded MessageIndex
    blob: bytes                  # sha256(raw)
    received_at: int
    tz: int = 0
    message_id: str | None = None
    thread_refs: tuple[str, ...] = ()   # In-Reply-To + References
    subject_hash: bytes = b"\0" * 8     # hash of the RFC 5256 base subject
    flags: int = 0                      # records.FLAG_* (e.g. UTF-8 header)
    facts: bytes = b""                  # records.encode_facts of the index (b"": none kept)
    search: bytes | None = None         # mindex.search_row of the index (None: made in append)


@dataclass(slots=True)
class Appended:
    email: int
    thread: int
    placed: list[tuple[int, int, int]]   # (mailbox, uidvalidity, uid)


def _set_ms_index(tx: WriteTx, acc: int, rec: EmailRecord, new_ms: int,
                  cache: dict[int, Mailbox]) -> None:
    """Move REC to modseq NEW_MS in every mailbox it is in; those mailboxes'
    HIGHESTMODSEQ moves with it (they are saved from CACHE)."""
    for m in rec.members:
        _load_mbx(tx, acc, cache, m.mailbox)
        tx.delete("mbx.ms", keys.mbx_ms(acc, m.mailbox, rec.last_ms, m.uid))
        tx.put("mbx.ms", keys.mbx_ms(acc, m.mailbox, new_ms, m.uid), b"")
    rec.last_ms = new_ms


def _load_mbx(tx: WriteTx, acc: int, cache: dict[int, Mailbox], mbx: int) -> Mailbox:
    m = cache.get(mbx)
    if m is None:
        m = tx.require_mailbox(acc, mbx)
        cache[mbx] = m
    return m


def _save_mailboxes(tx: WriteTx, acc: int, cache: dict[int, Mailbox],
                    counted: set[int] | None = None) -> None:
    """Write the mailboxes of CACHE at this request's modseq (their IMAP
    HIGHESTMODSEQ).  Each is logged as a JMAP Mailbox updated unless COUNTED
    (not None) leaves it out: a keyword change that moved none of its
    counts changed no Mailbox property (one change-log row, and a page of
    the log's table, less per flag STORE)."""
    ms = tx.modseq(acc)
    for m in cache.values():
        m.highest_ms = ms
        tx.put_mailbox(acc, m)
        tx.touch_mailbox(acc, m.id)
        if counted is None or m.id in counted:
            tx.log(acc, "updated", MAILBOX, m.id)


def _add_member(tx: WriteTx, acc: int, rec: EmailRecord, m: Mailbox, now: int) -> int:
    uid = m.uidnext
    m.uidnext += 1
    m.total += 1
    m.size += rec.size
    if SEEN not in rec.keywords:
        m.unseen += 1
    rec.members.append(Membership(m.id, uid, now))
    tx.put("uid", keys.uid(acc, m.id, uid), keys.u32(rec.id))
    tx.put("mbx.ms", keys.mbx_ms(acc, m.id, rec.last_ms, uid), b"")
    return uid


def _remove_member(tx: WriteTx, acc: int, rec: EmailRecord, m: Mailbox, ms: int) -> int:
    mem = rec.member(m.id)
    if mem is None:
        raise NotFound("message not in mailbox")
    rec.members.remove(mem)
    m.total -= 1
    m.size -= rec.size
    if SEEN not in rec.keywords:
        m.unseen -= 1
    tx.delete("uid", keys.uid(acc, m.id, mem.uid))
    tx.delete("mbx.ms", keys.mbx_ms(acc, m.id, rec.last_ms, mem.uid))
    tx.put("vanished", keys.vanished(acc, m.id, ms, mem.uid), b"")
    return mem.uid


def _assign_thread(tx: WriteTx, acc: int, eid: int, new: NewEmail) -> tuple[int, bool]:
    """JMAP-style threading: join the thread of a referenced message whose base
    subject matches; else start a thread named after this email."""
    tid = None
    ids = list(new.thread_refs)
    if new.message_id:
        ids.append(new.message_id)
    for mid in ids:
        v = tx._get("thr.ref", keys.thr_ref(acc, mid))
        if v is not None:
            t, sh = records.decode_thread_ref(v)
            if sh == new.subject_hash:
                tid = t
                break
    created = tid is None
    if tid is None:
        tid = eid
    ref = records.encode_thread_ref(tid, new.subject_hash)
    for mid in ids:
        k = keys.thr_ref(acc, mid)
        if tx._get("thr.ref", k) is None:
            tx.put("thr.ref", k, ref)
    tx.put("thr.mem", keys.thr_mem(acc, tid, eid), b"")
    return tid, created


# RFC 8621 §1.5 push-only type: moves on MTA delivery only
EMAIL_DELIVERY = "EmailDelivery"


def append(tx: WriteTx, acc: int, mailboxes: list[int], new: NewEmail,
           keywords: list[str] = (), quota: int = 0, *, delivery: bool = False) -> Appended:
    """Store one message in MAILBOXES (one email id, one UID per mailbox).

    DELIVERY: it came from the MTA (LMTP, local delivery of outbound mail),
    which moves the account's ``EmailDelivery`` state (RFC 8621 §1.5: a
    push-only type whose state changes when new mail is delivered, not when
    a draft is saved or a message imported).  One object, id 1, so the log
    holds one row per delivery modseq and nothing grows per message."""
    if not mailboxes:
        raise Conflict("an email must be in at least one mailbox")
    a = tx.account(acc)
    if a is None:
        raise NotFound("no such account")
    limit = a.quota or quota
    size = len(new.raw)
    if limit and tx.usage(acc) + size > limit:
        raise OverQuota(f"the account's quota of {limit} bytes would be exceeded")
    cache: dict[int, Mailbox] = {}
    for mbx in mailboxes:
        _load_mbx(tx, acc, cache, mbx)
    ms = tx.modseq(acc)
    eid = tx.next_counter(acc, keys.CTR_EMAIL)
    bkey = keys.blob(acc, new.blob)
    if tx._get("blob", bkey) is None:
        tx.put("blob", bkey, new.raw)
        tx.put("blob.idx", bkey, new.index)
    tx.put("blob.ref", keys.blob_ref(acc, new.blob, eid), b"")
    bs = bodystructure_of(new.index)     # (None: an index FETCH leaves to its Python path)
    if bs is not None:
        tx.put("msg.bs", keys.msg(acc, eid), bs)
    tid, thread_created = _assign_thread(tx, acc, eid, new)
    kws = sorted({k.lower() for k in keywords})
    _remember_spellings(tx, acc, keywords)
    rec = EmailRecord(eid, new.blob, new.received_at, new.tz, size, tid, ms, kws, [], new.flags)
    now = int(time.time())
    placed = []
    for mbx in dict.fromkeys(mailboxes):
        m = cache[mbx]
        uid = _add_member(tx, acc, rec, m, now)
        placed.append((mbx, m.uidvalidity, uid))
    tx.put_email(acc, rec)
    if new.facts:
        tx.put("msg.facts", keys.msg(acc, eid), new.facts)
    row = new.search if new.search is not None else search_row(new.index)
    if row:
        tx.put("msg.hdr", keys.msg(acc, eid), row)
    tx.add_counter(acc, keys.CTR_USAGE, size)
    _save_mailboxes(tx, acc, cache)
    tx.log(acc, "created", EMAIL, eid)
    tx.log(acc, "created" if thread_created else "updated", THREAD, tid)
    if delivery:
        tx.log(acc, "updated", EMAIL_DELIVERY, 1)
    return Appended(eid, tid, placed)


def append_many(tx: WriteTx, acc: int, mbx: int, items, quota: int = 0) -> list[Appended]:
    """Append each (NewEmail, keywords) of ITEMS to MBX, in order, all or
    nothing (IMAP MULTIAPPEND, RFC 3502 6.3.11; a JMAP Email/import of several
    emails would use ``append`` once per email, each on its own).  The quota
    is checked per message, counting the ones before it.  -> one Appended per
    item, in order."""
    return [append(tx, acc, [mbx], new, kws, quota) for new, kws in items]


def append_each(tx: WriteTx, acc: int, items, quota: int = 0) -> list:
    """``append`` of each (mailboxes, NewEmail, keywords) of ITEMS in one
    transaction, each on its own (JMAP Email/import, Email/set create): an
    item ``append`` refuses (OverQuota, NotFound, Conflict: all raised before
    it writes anything) is reported, the others are stored.  The quota counts
    the items before.  -> per item, its Appended or the error."""
    out: list = []
    for mailboxes, new, kws in items:
        try:
            out.append(append(tx, acc, mailboxes, new, kws, quota))
        except (OverQuota, NotFound, Conflict) as exc:
            out.append(exc)
    return out


def _destroy(tx: WriteTx, acc: int, rec: EmailRecord) -> None:
    """Remove an email with no memberships left, and its blob if unreferenced."""
    tx.delete("msg", keys.msg(acc, rec.id))
    for table in keys.EMAIL_ROWS:
        tx.delete(table, keys.msg(acc, rec.id))
    tx.delete("blob.ref", keys.blob_ref(acc, rec.blob, rec.id))
    tx.delete("thr.mem", keys.thr_mem(acc, rec.thread, rec.id))
    tx.add_counter(acc, keys.CTR_USAGE, -rec.size)
    if not tx.blob_refs(acc, rec.blob):
        tx.delete("blob", keys.blob(acc, rec.blob))
        tx.delete("blob.idx", keys.blob(acc, rec.blob))
    tx.log(acc, "destroyed", EMAIL, rec.id)
    if tx.thread_members(acc, rec.thread):
        tx.log(acc, "updated", THREAD, rec.thread)
    else:
        tx.log(acc, "destroyed", THREAD, rec.thread)


def expunge(tx: WriteTx, acc: int, mbx: int, uids: list[int]) -> list[int]:
    """Remove UIDS from MBX; an email left in no mailbox is destroyed.  -> the
    UIDs actually removed, ascending."""
    cache: dict[int, Mailbox] = {}
    m = _load_mbx(tx, acc, cache, mbx)
    if len(uids) >= EXPUNGE_BULK:
        done = _expunge_bulk(tx, acc, m, uids, cache)
        if done:
            _save_mailboxes(tx, acc, cache)
        return done
    done = []
    for uid in sorted(set(uids)):
        eid = tx.email_at(acc, mbx, uid)
        if eid is None:
            continue
        ms = tx.modseq(acc)    # only when something changes: a no-op takes no modseq
        rec = tx.email(acc, eid)
        _remove_member(tx, acc, rec, m, ms)
        done.append(uid)
        if rec.members:
            _set_ms_index(tx, acc, rec, ms, cache)
            tx.put_email(acc, rec)
            tx.log(acc, "updated", EMAIL, eid)
        else:
            _destroy(tx, acc, rec)
    if done:
        _save_mailboxes(tx, acc, cache)
    return done


# an EXPUNGE of at least this many UIDs takes _expunge_bulk (the same writes)
EXPUNGE_BULK = 32


def _expunge_bulk(tx: WriteTx, acc: int, m: Mailbox, uids, cache: dict) -> list[int]:
    """``expunge``'s loop for many UIDs (stop 24: EXPUNGE of 10,000 messages):
    the records are read through cursors and rewritten in their encoded
    form (_speedups/emailrec ``expunge_many``: compiled), and each table's
    writes are made in one call (delete_many, put_many; the ``vanished``
    rows as one RUN op of the redo log).  The same table contents, change
    log and mailbox counts as the record-at-a-time loop (tests/
    test_store_expunge_bulk.py holds them equal)."""
    raw = tx._raw
    uids = sorted(set(uids))
    ops_ = tx._ops
    if ops_ is not None:
        # under the redo log: the uid, msg and mbx.ms writes made by
        # emailrec.apply_expunge and logged as one EXPUNGE op (store/logical.py)
        # instead of their 40,000 table writes
        done, updated, destroy, size, unseen, others = logical.expunge(
            raw, tx.db, acc, m.id, uids, lambda: tx.modseq(acc))
        if not done:
            return done
        ms = tx.modseq(acc)
        ops_.append((logical.EXPUNGE, "uid", b"", logical.encode_expunge(acc, m.id, ms, uids)))
    else:
        done, uid_keys, gone, out_items, new, updated, destroy, size, unseen, others = \
            _emailrec.expunge_many(
                raw.cursor(db=tx.db["uid"]).get, raw.cursor(db=tx.db["msg"]).get,
                keys.uid_shape(acc, m.id), keys.msg_shape(acc), keys.mbx_ms_shape(acc), m.id,
                uids, SEEN, lambda: tx.modseq(acc))
        if not done:
            return done
        ms = tx.modseq(acc)
        tx.delete_many("uid", uid_keys)
        gone.sort()          # (neighbours on a page: no descent of the tree each)
        tx.delete_many("mbx.ms", gone)
        if out_items:
            out_items.sort()
            tx.put_many("mbx.ms", out_items)
        if new:
            tx.put_many("msg", new)
    m.total -= len(done)
    m.size -= size
    m.unseen -= unseen
    tx.put_run("vanished", keys.vanished_from(acc, m.id, ms),
               struct.pack(">%dI" % len(done), *done), 4, b"")
    if updated:
        tx.log_updated(acc, EMAIL, updated)
    for other in others:
        _load_mbx(tx, acc, cache, other)
    if destroy:
        _destroy_many(tx, acc, destroy)
    return done


_HEAD_OF = records.EMAIL_LAYOUT.head.unpack_from
_I_BLOB, _I_SIZE, _I_THREAD = (records.EMAIL_LAYOUT.index(n) for n in ("blob", "size", "thread"))


def _destroy_many(tx: WriteTx, acc: int, destroy: list) -> None:
    """``_destroy`` of each email of DESTROY [(eid, encoded record)], left
    in no mailbox by a bulk EXPUNGE: the same writes and change-log entries,
    made one call per table (the records' keys sorted), the usage counter
    moved once, each blob and thread looked at once after all of them went
    (a blob still referred to is kept; a thread with members left is
    updated, else destroyed: what the email-at-a-time order leaves too)."""
    msg_keys, ref_keys, thr_keys = [], [], []
    blobs: dict = {}
    threads: dict = {}
    total = 0
    for eid, data in destroy:
        h = _HEAD_OF(data)
        blob, thread = h[_I_BLOB], h[_I_THREAD]
        total += h[_I_SIZE]
        msg_keys.append(keys.msg(acc, eid))
        ref_keys.append(keys.blob_ref(acc, blob, eid))
        thr_keys.append(keys.thr_mem(acc, thread, eid))
        blobs[blob] = None
        threads[thread] = None
    tx.delete_many("msg", msg_keys)
    for table in keys.EMAIL_ROWS:
        tx.delete_many(table, msg_keys)
    ref_keys.sort()
    tx.delete_many("blob.ref", ref_keys)
    thr_keys.sort()
    tx.delete_many("thr.mem", thr_keys)
    tx.add_counter(acc, keys.CTR_USAGE, -total)
    refs = tx._raw.cursor(db=tx.db["blob.ref"])
    unused = sorted(keys.blob(acc, b) for b in blobs
                    if not _any_key(refs, keys.blob_ref_prefix(acc, b)))
    tx.delete_many("blob", unused)
    tx.delete_many("blob.idx", unused)
    for eid, _data in destroy:
        tx.log(acc, "destroyed", EMAIL, eid)
    members = tx._raw.cursor(db=tx.db["thr.mem"])
    for t in threads:
        tx.log(acc, "updated" if _any_key(members, keys.thr_mem_prefix(acc, t)) else "destroyed",
               THREAD, t)


def _any_key(cur, prefix: bytes) -> bool:
    """A key starting with PREFIX is in CUR's table."""
    return cur.set_range(prefix) and bytes(cur.key()[:len(prefix)]) == prefix


def destroy_emails(tx: WriteTx, acc: int, eids: list[int]) -> list[int]:
    """JMAP Email/set destroy: remove the emails from every mailbox."""
    out = []
    for eid in eids:
        rec = tx.email(acc, eid)
        if rec is None:
            continue
        for mem in list(rec.members):
            expunge(tx, acc, mem.mailbox, [mem.uid])
        out.append(eid)
    return out


def set_keywords(tx: WriteTx, acc: int, eids: list[int], *, add: list[str] = (),
                 remove: list[str] = (), replace: list[str] | None = None,
                 unchanged_since: int | None = None,
                 loaded: dict[int, Mailbox] | None = None) -> tuple[list[int], list[int]]:
    """Change keywords of EIDS.  -> (changed eids, eids that failed the
    UNCHANGEDSINCE test).  Emails whose keywords end up the same are untouched
    (no modseq change), as RFC 7162 3.1.3 allows.  LOADED: mailboxes the
    caller read in this transaction (used, not re-read, when they change)."""
    changed, conflicts, _records = _set_keywords(tx, acc, eids, add, remove, replace,
                                                 unchanged_since, loaded, False)
    return changed, conflicts


def _set_keywords(tx: WriteTx, acc: int, eids, add, remove, replace, unchanged_since,
                  loaded, want_records: bool, emit=None, slices=()):
    """``set_keywords``; -> (changed, conflicts, {eid: record after} or None).
    EMIT: the emails are rewritten a slice at a time (SLICES: the sizes,
    the last repeated) and ``emit({eid: record after})`` is called after
    each, inside the transaction (storeio.stream: the loop formats a bulk
    STORE's answer while the writer goes on)."""
    cache: dict[int, Mailbox] = {}
    # (no list, set or generator built for an empty side: a one-message
    # STORE names one flag)
    if add:
        _remember_spellings(tx, acc, add)
        add = frozenset(map(str.lower, add))
    else:
        add = _NO_KEYWORDS
    if replace:
        _remember_spellings(tx, acc, replace)
    remove = frozenset(map(str.lower, remove)) if remove else _NO_KEYWORDS
    if replace is not None:
        replace = frozenset(map(str.lower, replace))
    if emit is None:
        changed, conflicts, deltas, recs = _rewrite_keywords(
            tx, acc, eids, add, remove, replace, unchanged_since, want_records)
    else:
        changed, conflicts, deltas = [], [], {}
        recs = {} if want_records else None
        for a, b in slice_spans(len(eids), slices):
            # (emitted once the records are written, before the index keys
            # move: the loop formats the slice's answer while they do)
            # (no records wanted back: each slice's go to EMIT as one
            # RecordRun, no bytes object or dict entry per email)
            c, x, d, r = _rewrite_keywords(tx, acc, eids[a:b], add, remove, replace,
                                           unchanged_since, True, emit, recs is None)
            changed += c
            conflicts += x
            for mbx, n in d.items():
                deltas[mbx] = deltas.get(mbx, 0) + n
            if recs is not None:
                recs.update(r)
    for mbx, seen_delta in deltas.items():
        m = loaded.get(mbx) if loaded else None
        if m is not None:
            cache[mbx] = m
        else:
            m = _load_mbx(tx, acc, cache, mbx)
        if seen_delta:
            m.unseen -= seen_delta
    tx.log_updated(acc, EMAIL, changed)
    if cache:       # a Mailbox changed for JMAP only if its \Seen count did
        _save_mailboxes(tx, acc, cache, {mbx for mbx, d in deltas.items() if d})
    return changed, conflicts, recs


_NO_KEYWORDS: frozenset[str] = frozenset()


def slice_spans(n: int, sizes) -> list[tuple[int, int]]:
    """[(start, end)] cutting N items in pieces of SIZES (the last repeated)."""
    spans, lo, i = [], 0, 0
    while lo < n:
        step = sizes[min(i, len(sizes) - 1)]
        spans.append((lo, min(n, lo + step)))
        lo += step
        i += 1
    return spans


def _rewrite_keywords(tx: WriteTx, acc: int, eids, add, remove, replace, unchanged_since,
                      want_records: bool, made=None, run: bool = False):
    """The record and index writes of ``set_keywords`` on EIDS (keywords
    lower-cased); -> (changed, conflicts, {mailbox: \\Seen delta}, records or None).
    MADE(records): called once the records are written (before the index
    keys move, under the redo log), inside the transaction.  RUN: the
    records of a bulk change as an ``emailrec_py.RecordRun`` (under the redo
    log; else a dict all the same: both answer ``get``)."""
    # the whole loop on the raw records (_speedups/emailrec: compiled): no
    # EmailRecord is built; the modseq is allocated at the first change only.
    # The records are read through one cursor (LMDB looks on its page
    # first: ascending ids cost no descent of the tree each).
    # The writes are made in one call per table: each email's new record,
    # its old and new mbx.ms keys (they differ by modseq).  Under the redo
    # log, a bulk change is logged as one logical op (store/logical.py)
    # instead of its 30,000 table writes.
    ops_ = tx._ops
    if ops_ is not None and len(eids) >= logical.MIN_EMAILS:
        allocated: list[int] = []

        def alloc_ms() -> int:
            ms = tx.modseq(acc)
            allocated.append(ms)
            return ms

        changed, conflicts, deltas, recs = logical.rewrite_keywords(
            tx._raw, tx.db, acc, eids, add, remove, replace, unchanged_since, alloc_ms,
            want_records, made, run)
        if changed:
            ops_.append((logical.KEYWORDS, "msg", b"", logical.encode_keywords(
                acc, allocated[0], eids, add, remove, replace, unchanged_since)))
    else:
        items, index_gone, index_out, changed, conflicts, deltas, recs = \
            _emailrec.rewrite_many(
                tx._raw.cursor(db=tx.db["msg"]).get, keys.msg_of(acc), keys.mbx_ms_of(acc),
                eids, add, remove, replace, SEEN, unchanged_since, lambda: tx.modseq(acc),
                want_records)
        tx.delete_many("mbx.ms", index_gone)
        tx.put_many("mbx.ms", index_out)
        tx.put_many("msg", items)
        if made is not None:
            made(recs)
    return changed, conflicts, deltas, recs


@dataclass(slots=True)
class KeywordsResult:
    """What ``set_keywords_reporting`` did, for the protocol's reply."""

    changed: list[int]           # emails whose keywords changed
    conflicts: list[int]         # emails that failed the UNCHANGEDSINCE test
    modseq_before: int           # the mailbox's highest modseq before the request
    modseq_after: int | None     # the request's modseq; None when nothing changed
    # with ``records=True``: {eid: its encoded record after the request} for
    # every email found and not in conflict (IMAP STORE formats its answer
    # from them instead of reading the 10,000 records it just wrote again)
    records: dict[int, bytes] | None = None


def set_keywords_reporting(tx: WriteTx, acc: int, mbx: int, eids: list[int], *,
                           add: list[str] = (), remove: list[str] = (),
                           replace: list[str] | None = None,
                           unchanged_since: int | None = None,
                           records: bool = False, emit=None,
                           slices=(1000,)) -> KeywordsResult:
    """``set_keywords`` on EIDS (seen from mailbox MBX), reporting MBX's modseq
    before and the request's modseq after: IMAP STORE uses them to know
    whether anybody else changed the mailbox meanwhile (then it must rescan),
    JMAP Email/set to return oldState/newState.  EMIT: called as
    ``emit(modseq before, {eid: record after})`` for each slice of EIDS
    (sizes SLICES) once it is rewritten, before the commit (without
    RECORDS, under the redo log, the mapping is an ``emailrec_py.RecordRun``:
    the slice's records in one buffer; else a dict)."""
    m = tx.require_mailbox(acc, mbx)
    before = m.highest_ms
    changed, conflicts, recs = _set_keywords(
        tx, acc, eids, add, remove, replace, unchanged_since, {mbx: m}, records,
        None if emit is None else functools.partial(emit, before), slices)
    return KeywordsResult(changed, conflicts, before, tx.modseq(acc) if changed else None,
                          recs)


def set_keywords_one(tx: WriteTx, acc: int, mbx: int, eid: int, *,
                     add: list[str] = (), remove: list[str] = (),
                     replace: list[str] | None = None) -> KeywordsResult:
    """``set_keywords_reporting(tx, acc, mbx, [eid], records=True, ...)``
    of a lone request (a client's one-message STORE): the same writes,
    redo ops, change (``tx.changes()``) and result, the writes made in one
    call (_speedups/kwone) when the email is in MBX alone; the general
    path otherwise."""
    if not tx._changes and not tx._states:
        if add:
            _remember_spellings(tx, acc, add)
        if replace:
            _remember_spellings(tx, acc, replace)
        now = int(time.time())
        store = tx.store
        kw1 = _kwone
        made = getattr(store, "_kwone_tables", None)     # (module, its tables), once
        if made is None or made[0] is not kw1:
            made = store._kwone_tables = (kw1, kw1.tables(tx._raw, _kwone_handles(tx.db), keys))
        r = kw1.write_one(
            tx._raw, made[1], tx._ops, acc, mbx, eid,
            frozenset(map(str.lower, add)) if add else _NO_KEYWORDS,
            frozenset(map(str.lower, remove)) if remove else _NO_KEYWORDS,
            None if replace is None else frozenset(map(str.lower, replace)), SEEN, now)
        if r is not None:
            before, ms, record, total, counted = r
            if ms is None:
                return KeywordsResult([], [], before, None, {eid: bytes(record)})
            tx._flushed.append((acc, records.Change(
                ms, updated={EMAIL: [eid], MAILBOX: [mbx]} if counted else {EMAIL: [eid]},
                mailboxes=[mbx])))
            changelog.after_rows(tx, acc, total, 2 if counted else 1, now)
            return KeywordsResult([eid], [], before, ms, {eid: record})
    return set_keywords_reporting(tx, acc, mbx, [eid], add=add, remove=remove,
                                  replace=replace, records=True)


# a store's handles of the tables kwone.write_one writes, as kwone.tables takes them
_kwone_handles = operator.itemgetter("ctr", "msg", "mbx.ms", "mbox", "chg.id", "chg.kind", "chg")


def copy(tx: WriteTx, acc: int, eids: list[int], dst: int) -> list[int]:
    """Add EIDS to DST in order (IMAP COPY shares the email: same EMAILID,
    RFC 8474 5.1).  IMAP-only rule: an email already in DST gets a new UID all
    the same (IMAP COPY always creates messages), so it is appended as a new
    email (``_duplicate``); JMAP adds mailboxes with ``set_mailboxes``, where
    being in DST already is a no-op.  -> the new UIDs, in the order of EIDS."""
    cache: dict[int, Mailbox] = {}
    m = _load_mbx(tx, acc, cache, dst)
    ms = tx.modseq(acc)
    now = int(time.time())
    uids = []
    for eid in eids:
        rec = tx.email(acc, eid)
        if rec is None:
            raise NotFound(f"email {eid} does not exist")
        if rec.member(dst) is not None:
            uids.append(_duplicate(tx, acc, rec, m, now))
            continue
        _set_ms_index(tx, acc, rec, ms, cache)
        uids.append(_add_member(tx, acc, rec, m, now))
        tx.put_email(acc, rec)
        tx.log(acc, "updated", EMAIL, eid)
    _save_mailboxes(tx, acc, cache)
    return uids


def move(tx: WriteTx, acc: int, src: int, uids: list[int], dst: int) -> list[tuple[int, int]]:
    """IMAP MOVE (RFC 6851): -> [(source uid, destination uid)] ascending by source.
    SRC == DST (allowed by RFC 6851) gives each message a new UID there and
    expunges the old one."""
    cache: dict[int, Mailbox] = {}
    s = _load_mbx(tx, acc, cache, src)
    d = _load_mbx(tx, acc, cache, dst)
    now = int(time.time())
    out = []
    for uid in sorted(set(uids)):
        eid = tx.email_at(acc, src, uid)
        if eid is None:
            continue
        ms = tx.modseq(acc)    # only when something changes: a no-op takes no modseq
        rec = tx.email(acc, eid)
        _remove_member(tx, acc, rec, s, ms)
        if rec.member(dst) is not None:
            # already there: the move only removes it from the source
            _set_ms_index(tx, acc, rec, ms, cache)
            tx.put_email(acc, rec)
            out.append((uid, rec.member(dst).uid))
            tx.log(acc, "updated", EMAIL, eid)
            continue
        _set_ms_index(tx, acc, rec, ms, cache)
        new_uid = _add_member(tx, acc, rec, d, now)
        tx.put_email(acc, rec)
        tx.log(acc, "updated", EMAIL, eid)
        out.append((uid, new_uid))
    if out:
        _save_mailboxes(tx, acc, cache)
    return out


def set_mailboxes(tx: WriteTx, acc: int, eid: int, mailboxes: set[int]) -> None:
    """JMAP Email/set mailboxIds: make EID's memberships exactly MAILBOXES."""
    if not mailboxes:
        raise Conflict("an email must be in at least one mailbox")
    rec = tx.email(acc, eid)
    if rec is None:
        raise NotFound(f"email {eid} does not exist")
    cache: dict[int, Mailbox] = {}
    for mbx in mailboxes:
        _load_mbx(tx, acc, cache, mbx)
    ms = tx.modseq(acc)
    now = int(time.time())
    current = {m.mailbox for m in rec.members}
    for mbx in current - mailboxes:
        _remove_member(tx, acc, rec, _load_mbx(tx, acc, cache, mbx), ms)
    _set_ms_index(tx, acc, rec, ms, cache)
    for mbx in sorted(mailboxes - current):
        _add_member(tx, acc, rec, cache[mbx], now)
    tx.put_email(acc, rec)
    tx.log(acc, "updated", EMAIL, eid)
    _save_mailboxes(tx, acc, cache)


class NoSuchMailbox(NotFound):
    """A mailbox named for an email's memberships does not exist."""


class TooMany(Conflict):
    """An email would carry more keywords or sit in more mailboxes than the
    server allows; WHAT is "keywords" or "mailboxes"."""

    def __init__(self, what: str, limit: int):
        super().__init__(f"an email can have at most {limit} {what}")
        self.what = what


def update_email(tx: WriteTx, acc: int, eid: int, *, keywords=None, add_keywords=(),
                 remove_keywords=(), mailboxes=None, add_mailboxes=(), remove_mailboxes=(),
                 max_keywords: int = 0, max_mailboxes: int = 0) -> bool:
    """JMAP Email/set update (and Email/copy within one account): EID's
    keywords and memberships changed in one transaction, from what they are
    when the writer runs (so two clients' patches both apply).

    KEYWORDS / MAILBOXES replace the whole set when not None; the add/remove
    sets are applied after.  JMAP cannot see IMAP's ``$deleted``, so a whole
    keywords value keeps it.  Everything is checked before anything changes:
    NotFound (no such email), NoSuchMailbox, Conflict (no mailbox left),
    TooMany (over MAX_KEYWORDS / MAX_MAILBOXES when the set grows),
    InvalidName (a keyword too long).  -> True if anything changed."""
    rec = tx.email(acc, eid)
    if rec is None:
        raise NotFound(f"email {eid} does not exist")
    old_kw = set(rec.keywords)
    new_kw = {k.lower() for k in keywords} if keywords is not None else set(old_kw)
    if keywords is not None and DELETED in old_kw:
        new_kw.add(DELETED)
    new_kw = (new_kw | {k.lower() for k in add_keywords}) - {k.lower() for k in remove_keywords}
    old_mb = {m.mailbox for m in rec.members}
    new_mb = set(mailboxes) if mailboxes is not None else set(old_mb)
    new_mb = (new_mb | set(add_mailboxes)) - set(remove_mailboxes)
    if not new_mb:
        raise Conflict("an email must be in at least one mailbox")
    for mbx in new_mb - old_mb:
        if tx.mailbox(acc, mbx) is None:
            raise NoSuchMailbox(f"mailbox {mbx} does not exist")
    if max_keywords and len(new_kw) > max(max_keywords, len(old_kw)):
        raise TooMany("keywords", max_keywords)
    if max_mailboxes and len(new_mb) > max(max_mailboxes, len(old_mb)):
        raise TooMany("mailboxes", max_mailboxes)
    added = [k for k in (list(keywords or ()) + list(add_keywords)) if k.lower() in new_kw]
    for k in added:
        if not k or len(k.encode("utf-8")) > MAX_KEYWORD_BYTES:
            raise InvalidName(f"keywords are 1-{MAX_KEYWORD_BYTES} bytes")
    changed = False
    if new_kw != old_kw:
        _remember_spellings(tx, acc, added)
        set_keywords(tx, acc, [eid], replace=sorted(new_kw))
        changed = True
    if new_mb != old_mb:
        set_mailboxes(tx, acc, eid, new_mb)
        changed = True
    return changed


def update_emails(tx: WriteTx, acc: int, items: list[tuple[int, dict]], destroy: list[int] = ()
                  ) -> tuple[list[Exception | None], list[int]]:
    """JMAP Email/set in one transaction: ``update_email(eid, **change)`` for
    each (eid, change) of ITEMS, then DESTROY (``destroy_emails``).  Each
    update either applies whole or fails before changing anything (every
    check of update_email comes before its first write), so one email's
    failure is reported, not raised, and the others still apply.
    -> ([None or the error, per item], the destroyed eids)."""
    results: list[Exception | None] = []
    for eid, change in items:
        try:
            update_email(tx, acc, eid, **change)
            results.append(None)
        except (NotFound, Conflict, InvalidName) as exc:
            results.append(exc)
    return results, destroy_emails(tx, acc, list(dict.fromkeys(destroy)))


# --- per-device sync state -----------------------------------------------------------

def put_device_state(tx: WriteTx, acc: int, device: str, key: str, value: bytes) -> None:
    """Store VALUE under (DEVICE, KEY) for ACC (ActiveSync SyncKeys and what
    the device holds); View.device_state/device_keys read it back."""
    if tx.account(acc) is None:
        raise NotFound("no such account")
    if not device or "\0" in device:
        # the key is acc device NUL key: a NUL in the name would alias another device
        raise InvalidName("device ids are non-empty and contain no NUL")
    tx.put("dev", keys.dev(acc, device, key), value)


def admit_device(tx: WriteTx, acc: int, device: str, cap: int, key: str,
                 value: bytes) -> bool:
    """Let DEVICE of ACC in: True when ACC already has state for it, or has
    state for fewer than CAP devices (then VALUE is stored under KEY, so the
    device counts from now on); False (nothing written) at the cap.  The
    count and the write are one write transaction: LMDB has one writer at a
    time across processes, so two new devices cannot both take the last slot."""
    if tx.device_known(acc, device):
        return True
    if len(tx.devices(acc, limit=cap)) >= cap:
        return False
    put_device_state(tx, acc, device, key, value)
    return True


def delete_device_state(tx: WriteTx, acc: int, device: str, key: str | None = None) -> None:
    if key is None:
        tx.delete_prefix("dev", keys.dev_prefix(acc, device))
    else:
        tx.delete("dev", keys.dev(acc, device, key))


# --- IMAP-only ---------------------------------------------------------------------------
# What only IMAP's rules need: JMAP and ActiveSync neither call nor see these.
#  * the ``sub`` table: subscriptions to names with no mailbox (RFC 9051
#    6.3.9), keyed by IMAP names ("/"-joined); create_mailbox and
#    delete_mailbox keep it, unsubscribe_name drops an entry;
#  * rename_inbox: the RFC 9051 6.3.6 INBOX rule (move_mailbox_to_path applies it);
#  * COPY's duplicate rule (copy/_duplicate);
#  * the keyword-spelling table ``kw`` (_remember_spellings,
#    View.keyword_spellings): mbsync compares keywords case-sensitively.

def rename_inbox(tx: WriteTx, acc: int, new_parent: int, new_name: str) -> int:
    """IMAP-only: RENAME INBOX (RFC 9051 6.3.6) moves every message to a new
    mailbox; INBOX stays and is empty.  -> the new mailbox's id."""
    inbox = tx.mailbox_by_role(acc, vocab.ROLE_INBOX)
    if inbox is None:
        raise NotFound("no INBOX")
    dst = create_mailbox(tx, acc, new_parent, new_name)
    uids = [u for u, _ in tx.uids(acc, inbox.id)]
    if uids:
        move(tx, acc, inbox.id, uids, dst)
    return dst


def _duplicate(tx: WriteTx, acc: int, rec: EmailRecord, m: Mailbox, now: int) -> int:
    ms = tx.modseq(acc)
    eid = tx.next_counter(acc, keys.CTR_EMAIL)
    tx.put("blob.ref", keys.blob_ref(acc, rec.blob, eid), b"")
    tx.put("thr.mem", keys.thr_mem(acc, rec.thread, eid), b"")
    for table in keys.EMAIL_ROWS:   # (mail stored before a table has no row there)
        row = tx._get(table, keys.msg(acc, rec.id))
        if row is not None:
            tx.put(table, keys.msg(acc, eid), bytes(row))
    new = EmailRecord(eid, rec.blob, rec.received_at, rec.tz, rec.size, rec.thread, ms,
                      list(rec.keywords), [], rec.flags)
    uid = _add_member(tx, acc, new, m, now)
    tx.put_email(acc, new)
    tx.add_counter(acc, keys.CTR_USAGE, rec.size)
    tx.log(acc, "created", EMAIL, eid)
    tx.log(acc, "updated", THREAD, rec.thread)
    return uid


SYSTEM_KEYWORDS = vocab.SYSTEM_KEYWORDS


def _remember_spellings(tx: WriteTx, acc: int, keywords) -> None:
    """IMAP-only (the ``kw`` table).  Keywords are stored lowercase (JMAP);
    remember how each custom keyword was first spelled so IMAP clients get
    "$Forwarded" back as they sent it (mbsync compares keywords
    case-sensitively)."""
    for k in keywords:
        low = k.lower()
        if low in SYSTEM_KEYWORDS:     # (a few ASCII bytes: within the limit)
            continue
        if not k or len(k.encode("utf-8")) > MAX_KEYWORD_BYTES:
            raise InvalidName(f"keywords are 1-{MAX_KEYWORD_BYTES} bytes")
        key = keys.kw(acc, low)
        if tx._get("kw", key) is None:
            tx.put("kw", key, k.encode("utf-8"))
            tx.add_counter(acc, keys.CTR_KEYWORDS, 1)   # View.keyword_spellings' cache


def unsubscribe_name(tx: WriteTx, acc: int, full_name: str) -> bool:
    """IMAP-only: drop a subscription to a name with no mailbox (the ``sub``
    table, keyed by "/"-joined IMAP names); True if there was one."""
    if not keys.fits(4 + len(full_name.encode("utf-8"))):
        return False    # no such key can exist
    if not tx.delete("sub", keys.sub(acc, full_name)):
        return False
    tx.tree_changed(acc)
    return True



def claim_recent(tx: WriteTx, acc: int, mbx: int) -> tuple[int, int]:
    """IMAP-only: claim the \\Recent messages of MBX for the calling session
    (RFC 3501 2.3.2: a message is recent in exactly one session).

    -> (lo, hi): the session owns the UIDs in [lo, hi) (empty when lo == hi);
    the mailbox's watermark (``recent_from``) is raised to its uidnext in the
    same write, so two sessions claiming at once never share a message.
    Session state, not mail: no modseq, no change-log row, nothing pushed.
    A mailbox deleted meanwhile claims nothing."""
    m = tx.mailbox(acc, mbx)
    if m is None:
        return (0, 0)
    lo, hi = m.recent_from, m.uidnext
    if lo >= hi:
        return (hi, hi)
    m.recent_from = hi
    tx.put_mailbox(acc, m)
    return (lo, hi)

# --- message index rebuilds (mailaccess reindex) ------------------------------------
# An index is derived from its blob's bytes, which never change for a hash, so
# replacing it changes no id, UID, record or modseq: these ops log no change.

def _put_rows(tx: WriteTx, acc: int, blob_hash: bytes, table: str, value: bytes | None) -> bool:
    """VALUE as the TABLE row (one of keys.EMAIL_ROWS) of every email of
    BLOB_HASH (None or b"": none), written where missing or different;
    -> whether a row's value changed (writing a missing one changes none:
    its readers read the same from the index)."""
    rewritten = False
    for eid in tx.blob_refs(acc, blob_hash):
        k = keys.msg(acc, eid)
        had = tx._get(table, k)
        if not value:
            if had is not None:
                tx.delete(table, k)
                rewritten = True
        elif had is None:
            tx.put(table, k, value)
        elif bytes(had) != value:
            tx.put(table, k, value)
            rewritten = True
    return rewritten


def replace_index(tx: WriteTx, acc: int, blob_hash: bytes, index: bytes,
                  facts: bytes = b"") -> bool | None:
    """Store INDEX (built from the blob's own bytes) as BLOB_HASH's index,
    and FACTS (records.encode_facts of what query/facts.py reads from INDEX;
    b"": none) as the ``msg.facts`` record of every email of that blob
    (written where missing or different, removed when FACTS is b"").

    -> True if the stored index bytes changed, False if they were identical,
    None if the blob is gone meanwhile (expunged: nothing is written)."""
    bkey = keys.blob(acc, blob_hash)
    old = tx._get("blob.idx", bkey)
    if old is None:
        return None
    # each email of the blob: its msg.bs row follows the index, its msg.facts
    # record is FACTS (both written here for mail stored before their tables)
    _put_rows(tx, acc, blob_hash, "msg.bs", bodystructure_of(index))
    _put_rows(tx, acc, blob_hash, "msg.hdr", search_row(index))
    rewritten = _put_rows(tx, acc, blob_hash, "msg.facts", facts)
    same = bytes(old) == index
    if not same:
        tx.put("blob.idx", bkey, index)
    if rewritten or not same:
        # facts read from the old index or record (query/facts.py, the SORT
        # orders of server/imap_sortcache.py) are keyed by this version
        tx.add_counter(acc, keys.CTR_INDEXES, 1)
    return not same


def reindex_batch(tx: WriteTx, acc: int, entries: list[tuple],
                  cursor: bytes, facts_only: list[tuple[bytes, bytes]] = ()) -> tuple[int, int]:
    """Replace the indexes of ENTRIES [(blob hash, index[, facts record])]
    (``replace_index``), write the facts records of FACTS_ONLY [(blob hash,
    facts record)] (blobs whose index stays: ``reindex --outdated-only``
    on mail stored before ``msg.facts``; their ``msg.bs`` rows are written
    from the stored index too), and move ACC's
    reindex cursor to CURSOR (the last hash handled), in one transaction, so
    an interrupted run resumes after the last durable batch.
    -> (indexes changed, indexes identical)."""
    changed = same = 0
    for h, index, *facts in entries:
        r = replace_index(tx, acc, h, index, *facts)
        if r:
            changed += 1
        elif r is False:
            same += 1
    for h, facts in facts_only:
        idx = tx._get("blob.idx", keys.blob(acc, h))
        if idx is None:
            continue
        _put_rows(tx, acc, h, "msg.bs", bodystructure_of(idx))
        _put_rows(tx, acc, h, "msg.hdr", search_row(idx))
        if _put_rows(tx, acc, h, "msg.facts", facts):
            tx.add_counter(acc, keys.CTR_INDEXES, 1)
    tx.put("meta", keys.reindex_cursor(acc), cursor)
    return changed, same


def plan_reindex(tx: WriteTx, accs: list[int]) -> None:
    """Start a reindex run over ACCS: each gets a cursor at the beginning."""
    for acc in accs:
        tx.put("meta", keys.reindex_cursor(acc), b"")


def end_reindex(tx: WriteTx, accs: list[int]) -> None:
    """Forget the reindex cursors of ACCS (done, gone, or a restart)."""
    for acc in accs:
        tx.delete("meta", keys.reindex_cursor(acc))


def set_index_version(tx: WriteTx, version: int) -> None:
    """Record the oldest message index format version the store holds."""
    tx.put("meta", keys.META_INDEX_VERSION, str(int(version)).encode("ascii"))


# --- JMAP push subscriptions (RFC 8620 §7.2) --------------------------------------
# Not mail: no modseq, no change-log row (a PushSubscription has no state).

def create_push_subscription(tx: WriteTx, acc: int, p: records.PushSubscription,
                             max_per_user: int) -> int:
    """Store P as a new subscription of ACC -> its id.  OverQuota when ACC
    has MAX_PER_USER already."""
    if tx.account(acc) is None:
        raise NotFound("no such account")
    if len(tx.push_subscriptions(acc)) >= max_per_user:
        raise OverQuota(f"at most {max_per_user} push subscriptions per user")
    p.id = tx.next_counter(acc, keys.CTR_PUSHSUB)
    tx.put("psub", keys.psub(acc, p.id), records.encode_push_subscription(p))
    return p.id


def update_push_subscription(tx: WriteTx, acc: int, sid: int, *,
                             expires: int | None = None,
                             types: list[str] | None | bool = False,
                             client_code: str | None | bool = False) -> records.PushSubscription:
    """Change the mutable properties of subscription SID of ACC (an argument
    left at its default stays as it is) -> the new record."""
    p = tx.push_subscription(acc, sid)
    if p is None:
        raise NotFound("no such push subscription")
    if expires is not None:
        p.expires = expires
    if types is not False:
        p.types = types
    if client_code is not False:
        was = p.verified
        p.client_code = client_code
        if p.verified and not was:
            p.verified_ms = tx.highest_modseq(acc)
    tx.put("psub", keys.psub(acc, sid), records.encode_push_subscription(p))
    return p


def destroy_push_subscription(tx: WriteTx, acc: int, sid: int) -> bool:
    return tx.delete("psub", keys.psub(acc, sid))


def sweep_push_subscriptions(tx: WriteTx, now: int) -> list[tuple[int, int]]:
    """Delete every subscription that expired before NOW -> (account, id)s."""
    gone = [(acc, p.id) for acc, p in tx.all_push_subscriptions() if p.expires <= now]
    for acc, sid in gone:
        tx.delete("psub", keys.psub(acc, sid))
    return gone
