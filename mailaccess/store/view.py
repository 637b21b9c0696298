"""Read access to the store in domain terms, over one LMDB transaction.

``View`` wraps a read snapshot (``store.read()``) or the writer's transaction;
every method takes the account id and only ever looks under that account's
key prefix, so no call can read across accounts.
"""
from __future__ import annotations

import weakref
from array import array
from typing import Any, Callable, Iterator

from .. import _speedups
from . import changelog, keys, records, sending
from .errors import CannotCalculateChanges, InvalidName, NotFound
from .records import Account, Change, EmailRecord, Mailbox


class Reader:
    """``reader(x)``: the stored value of one table of one account under X
    (an email id, a blob hash), or None; an LMDB buffer valid while the view's
    transaction lives.

    For compiled hot loops (_speedups/fetchfmt) the same read is spelled out:
    ``get(key(x), None, db)``, where ``key`` may also be assembled from SHAPE
    (``keys.KeyShape``), so a loop over thousands of emails needs no Python
    call per key.  The store chooses all of it from store/keys.py; the caller
    holds no key layout of its own.
    """

    __slots__ = ("get", "key", "db", "shape")

    def __init__(self, get: Callable, key: Callable, db: Any, shape: keys.KeyShape):
        self.get = get
        self.key = key
        self.db = db
        self.shape = shape

    def __call__(self, x) -> Any:
        return self.get(self.key(x), None, self.db)


# the IMAP selected-state scans (_speedups/imapsel: compiled)
_imapsel = _speedups.load("imapsel")

# {store: {account: (CTR_KEYWORDS value, spellings)}}: keyword_spellings
# answers from here while the account's kw table has not grown
_SPELLINGS: "weakref.WeakKeyDictionary[Any, dict[int, tuple[int, dict[str, str]]]]" = \
    weakref.WeakKeyDictionary()


class View:
    def __init__(self, store, txn):
        self.store = store
        self.txn = txn
        self.db = store.db

    # --- raw helpers ---------------------------------------------------------

    def _get(self, table: str, key: bytes):
        return self.txn.get(key, db=self.db[table])

    def _scan(self, table: str, prefix: bytes, start: bytes | None = None,
              values: bool = True) -> Iterator[tuple[bytes, bytes]]:
        cur = self.txn.cursor(db=self.db[table])
        if not cur.set_range(start if start is not None else prefix):
            return
        n = len(prefix)
        for k, v in cur:
            k = bytes(k)
            if k[:n] != prefix:
                return
            yield k, v

    def counter(self, acc: int, kind: int) -> int:
        v = self._get("ctr", keys.ctr(acc, kind))
        return keys.read_u64(v) if v is not None else 0

    def index_generation(self, acc: int) -> int:
        """Grows whenever one of ACC's stored message indexes is rewritten
        (``mailaccess reindex``, ops.replace_index): the version of caches of
        what the indexes hold (query/facts.py)."""
        return self.counter(acc, keys.CTR_INDEXES)

    def tree_generation(self, acc: int) -> int:
        """Grows whenever ACC's mailbox tree, roles or subscriptions change
        (WriteTx.tree_changed): the version of cached LIST answers
        (server/imap_list.py)."""
        return self.counter(acc, keys.CTR_TREE)

    # --- accounts --------------------------------------------------------------

    def account(self, acc: int) -> Account | None:
        v = self._get("acct", keys.acct(acc))
        return records.decode_account(acc, v) if v is not None else None

    def account_by_name(self, name: str) -> Account | None:
        """None also for a name no account can have (empty, or too long for
        a key): a login or a recipient naming it names no one."""
        try:
            key = keys.acct_name(name)
        except InvalidName:
            return None
        v = self._get("acct.name", key)
        if v is None:
            return None
        return self.account(keys.read_u32(v))

    def accounts(self) -> list[Account]:
        return [records.decode_account(keys.read_u32(k), v)
                for k, v in self._scan("acct", b"")]

    def highest_modseq(self, acc: int) -> int:
        return self.counter(acc, keys.CTR_MODSEQ)

    def usage(self, acc: int) -> int:
        return self.counter(acc, keys.CTR_USAGE)

    # --- mailboxes -------------------------------------------------------------

    def mailbox(self, acc: int, mbx: int) -> Mailbox | None:
        v = self._get("mbox", keys.mbox(acc, mbx))
        # as bytes: records.decode_mailbox remembers the records it decoded
        # (a dict look-up for the next session catching up on the same change)
        return records.decode_mailbox(mbx, bytes(v)) if v is not None else None

    def require_mailbox(self, acc: int, mbx: int) -> Mailbox:
        m = self.mailbox(acc, mbx)
        if m is None:
            raise NotFound(f"mailbox {mbx} does not exist")
        return m

    def mailbox_count(self, acc: int) -> int | None:
        """How many mailboxes ACC has (the cap's counter, ops.create_mailbox);
        None in a store made before the counter, until its first create or
        delete."""
        v = self._get("ctr", keys.ctr(acc, keys.CTR_MAILBOXES))
        return keys.read_u64(v) if v is not None else None

    def mailboxes(self, acc: int) -> list[Mailbox]:
        return [records.decode_mailbox(keys.split_mbox(k)[1], v)
                for k, v in self._scan("mbox", keys.account_prefix(acc))]

    def mailbox_tree(self, acc: int) -> list[tuple[int, int, str]]:
        """(id, parent, name) of every mailbox of ACC, from the ``mbox.name``
        keys alone (no mailbox record decoded), in key order."""
        pre = keys.account_prefix(acc)
        read_u32 = keys.read_u32
        return [(read_u32(v), keys.split_mbox_name_parent(k), k[8:].decode("utf-8"))
                for k, v in self._scan("mbox.name", pre)]

    def child_id(self, acc: int, parent: int, name: str) -> int | None:
        try:
            key = keys.mbox_name(acc, parent, name)
        except InvalidName:     # too long for any mailbox: there is none
            return None
        v = self._get("mbox.name", key)
        return keys.read_u32(v) if v is not None else None

    def children(self, acc: int, parent: int) -> list[int]:
        return [keys.read_u32(v) for _, v in
                self._scan("mbox.name", keys.mbox_name_prefix(acc, parent))]

    def mailbox_by_path(self, acc: int, path: list[str]) -> Mailbox | None:
        parent = 0
        for part in path:
            nxt = self.child_id(acc, parent, part)
            if nxt is None:
                return None
            parent = nxt
        return self.mailbox(acc, parent) if path else None

    def mailbox_path(self, acc: int, mbx: int) -> list[str]:
        out = []
        seen = set()
        while mbx and mbx not in seen:
            seen.add(mbx)
            m = self.mailbox(acc, mbx)
            if m is None:
                break
            out.append(m.name)
            mbx = m.parent
        return out[::-1]

    def mailbox_by_role(self, acc: int, role: str) -> Mailbox | None:
        for m in self.mailboxes(acc):
            if m.role == role:
                return m
        return None

    # --- messages in a mailbox ----------------------------------------------------

    def uids(self, acc: int, mbx: int, after: int = 0) -> list[tuple[int, int]]:
        """[(uid, email id)] in UID order (the IMAP sequence order), UIDs > AFTER."""
        pre = keys.uid_prefix(acc, mbx)
        start = keys.uid(acc, mbx, after + 1) if after else None
        return [(keys.split_uid(k), keys.read_u32(v)) for k, v in self._scan("uid", pre, start)]

    def uid_map(self, acc: int, mbx: int, after: int = 0) -> tuple[array, array]:
        """``uids`` as two parallel ``array('I')`` (UIDs ascending, email ids),
        read without a Python object per message: an IMAP sequence map."""
        pre = keys.uid_prefix(acc, mbx)
        cur = self.txn.cursor(db=self.db["uid"])
        if not cur.set_range(keys.uid(acc, mbx, after + 1) if after else pre):
            return array("I"), array("I")
        return _imapsel.uid_map(cur.iternext(keys=True, values=True), pre)

    def keyword_positions(self, acc: int, eids, keyword: str, present: bool = True,
                          limit: int = 0) -> list[int]:
        """The positions i in EIDS, ascending, of the emails that exist and
        have KEYWORD (lowercase) -- or lack it, PRESENT False; at most LIMIT
        of them when LIMIT > 0.  Reads the raw records (one LMDB get each, no
        record decoded): what EXPUNGE (\\Deleted) and SELECT's first unseen
        message need."""
        return _imapsel.keyword_hits(self.email_reader(acc), eids, keyword.encode("utf-8"),
                                     present, limit)

    def email_at(self, acc: int, mbx: int, uid: int) -> int | None:
        v = self._get("uid", keys.uid(acc, mbx, uid))
        return keys.read_u32(v) if v is not None else None

    def changed_since(self, acc: int, mbx: int, modseq: int,
                      limit: int | None = None) -> list[tuple[int, int]]:
        """[(modseq, uid)] of messages in MBX changed after MODSEQ (CHANGEDSINCE);
        with LIMIT, at most LIMIT + 1 of them (the caller learns there are more)."""
        return self._ms_uids("mbx.ms", keys.uid_prefix(acc, mbx),
                             keys.mbx_ms_from(acc, mbx, modseq + 1), limit)

    def vanished_since(self, acc: int, mbx: int, modseq: int,
                       limit: int | None = None) -> list[tuple[int, int]]:
        """[(modseq, uid)] expunged from MBX after MODSEQ (QRESYNC VANISHED).
        Raises CannotCalculateChanges when expunges after MODSEQ may have been
        pruned (MODSEQ below the log's horizon and below the mailbox's highest
        modseq): the caller then reports every absent UID (RFC 7162 3.2.5.2).
        LIMIT: as changed_since."""
        if modseq < changelog.horizon(self, acc):
            m = self.mailbox(acc, mbx)
            if m is None or modseq < m.highest_ms:
                raise CannotCalculateChanges(
                    f"expunges after modseq {modseq} are no longer recorded")
        return self._ms_uids("vanished", keys.uid_prefix(acc, mbx),
                             keys.vanished_from(acc, mbx, modseq + 1), limit)

    def _ms_uids(self, table: str, pre: bytes, start: bytes,
                 limit: int | None = None) -> list[tuple[int, int]]:
        """[(modseq, uid)] of the keys of TABLE (mbx.ms or vanished) from
        START on that begin with PRE (account, mailbox): the keys copied in
        one pass, split in one C call (an EXPUNGE of 10,000 messages is
        caught up from 10,000 vanished rows)."""
        cur = self.txn.cursor(db=self.db[table])
        if not cur.set_range(start):
            return []
        n = len(pre)
        got = []
        add = got.append
        left = -1 if limit is None else limit + 1
        for k in cur.iternext(keys=True, values=False):
            if k[:n] != pre or not left:
                break
            add(bytes(k))
            left -= 1
        return keys.split_mbx_ms_joined(b"".join(got))

    # --- emails ------------------------------------------------------------------

    def email(self, acc: int, eid: int) -> EmailRecord | None:
        v = self._get("msg", keys.msg(acc, eid))
        return records.decode_email(eid, v) if v is not None else None

    def email_raw(self, acc: int, eid: int):
        """The encoded email record (for fast partial decoders)."""
        return self._get("msg", keys.msg(acc, eid))

    def keywords(self, acc: int, eid: int) -> list[str] | None:
        """The keywords of email EID (None: no such email), without decoding
        the rest of its record."""
        v = self._get("msg", keys.msg(acc, eid))
        return records.email_keywords_and_ms(v)[0] if v is not None else None

    # hot-path readers, for loops over thousands of emails: see Reader

    def email_reader(self, acc: int) -> Reader:
        """``eid -> encoded email record`` (None when the email is gone);
        read it with ``records.EMAIL_LAYOUT``."""
        return Reader(self.txn.get, keys.msg_of(acc), self.db["msg"], keys.msg_shape(acc))

    def facts_reader(self, acc: int) -> Reader | None:
        """``eid -> msg.facts record`` (None when the email has none: read
        it with ``records.decode_facts``); None for a read-only open of a
        store made before the table (it has no records)."""
        db = self.db["msg.facts"]
        if db is None:
            return None
        return Reader(self.txn.get, keys.msg_of(acc), db, keys.msg_shape(acc))

    def index_reader(self, acc: int) -> Reader:
        """``blob hash -> encoded message index`` (None when missing); read
        it with ``mime.index.INDEX_LAYOUT``."""
        return Reader(self.txn.get, keys.blob_of(acc), self.db["blob.idx"],
                      keys.blob_shape(acc))

    def bodystructure_reader(self, acc: int) -> Reader | None:
        """``eid -> BODYSTRUCTURE wire bytes`` (the ``msg.bs`` row: the
        email's index's bodystructure field; None when the email has none:
        mail stored before format 5, until ``mailaccess reindex``), or None
        for a read-only older store without the table."""
        db = self.db.get("msg.bs")
        if db is None:
            return None
        return Reader(self.txn.get, keys.msg_of(acc), db, keys.msg_shape(acc))

    def search_row_reader(self, acc: int) -> Reader | None:
        """``eid -> msg.hdr row`` (mime/index.py search_row: the lines SEARCH
        FROM/TO/CC/BCC/SUBJECT match; None when the email has none: mail
        stored before format 6 until ``mailaccess reindex --outdated-only``,
        or a header too big for a row), or None for a read-only older store
        without the table."""
        db = self.db.get("msg.hdr")
        if db is None:
            return None
        return Reader(self.txn.get, keys.msg_of(acc), db, keys.msg_shape(acc))

    def blob_reader(self, acc: int) -> Reader:
        """``blob hash -> raw message bytes`` (None when missing)."""
        return Reader(self.txn.get, keys.blob_of(acc), self.db["blob"], keys.blob_shape(acc))

    def emails(self, acc: int) -> Iterator[EmailRecord]:
        for k, v in self._scan("msg", keys.account_prefix(acc)):
            yield records.decode_email(keys.split_msg(k)[1], v)

    def email_count_rows(self, acc: int, seen: str, draft: str) -> Iterator[tuple[int, list[int], bool]]:
        """(thread, mailbox ids, unread) of every email of ACC, unread being
        neither keyword SEEN nor DRAFT: what JMAP's Mailbox counts need,
        without building records."""
        s, d = seen.encode("utf-8"), draft.encode("utf-8")
        fn = records.email_thread_boxes_flags
        for _, v in self._scan("msg", keys.account_prefix(acc)):
            yield fn(v, s, d)

    def email_ids(self, acc: int) -> list[int]:
        return [keys.split_msg(k)[1] for k, _ in self._scan("msg", keys.account_prefix(acc))]

    def blob(self, acc: int, h: bytes):
        """Raw message bytes (a buffer valid while the transaction lives)."""
        return self._get("blob", keys.blob(acc, h))

    def blob_index(self, acc: int, h: bytes):
        return self._get("blob.idx", keys.blob(acc, h))

    def blob_refs(self, acc: int, h: bytes) -> list[int]:
        pre = keys.blob_ref_prefix(acc, h)
        return [keys.read_u32(k[len(pre):]) for k, _ in self._scan("blob.ref", pre)]

    def thread_members(self, acc: int, tid: int) -> list[int]:
        pre = keys.thr_mem_prefix(acc, tid)
        return [keys.read_u32(k[len(pre):]) for k, _ in self._scan("thr.mem", pre)]

    # --- change log (store/changelog.py) ----------------------------------------------

    def kind_state(self, acc: int, kind: str) -> str:
        """The state of KIND ("Email", "Mailbox", ...): the last modseq that
        changed it, as a string (a JMAP state; "0" if never changed)."""
        return changelog.kind_state(self, acc, kind)

    def changes(self, acc: int, kind: str, since: str | int,
                max_changes: int | None = None) -> changelog.ChangesPage:
        """RFC 8620 /changes for KIND after state SINCE, paged by MAX_CHANGES
        ids; raises CannotCalculateChanges beyond the retention horizon."""
        return changelog.changes(self, acc, kind, since, max_changes)

    def ids_changed_between(self, acc: int, kind: str, lo: int, hi: int,
                            limit: int) -> set[int] | None:
        """The ids of KIND logged after modseq LO up to HI; None past LIMIT
        or when the log no longer reaches back to LO (changelog.ids_between)."""
        return changelog.ids_between(self, acc, kind, lo, hi, limit)

    def updates_come_with(self, acc: int, kind: str, since: str, until: str,
                          companions: tuple[str, ...]) -> bool:
        """Whether every update of KIND between two states came with a change
        of a COMPANIONS kind (changelog.updates_come_with)."""
        return changelog.updates_come_with(self, acc, kind, since, until, companions)

    def change_horizon(self, acc: int) -> int:
        """Highest modseq pruned from the log; changes after it are complete."""
        return changelog.horizon(self, acc)

    def changes_since(self, acc: int, modseq: int, limit: int | None = None) -> list[Change]:
        return changelog.changes_since(self, acc, modseq, limit)

    def oldest_change(self, acc: int) -> int:
        """Lowest modseq still in the log (0 when the log is empty)."""
        return changelog.oldest_change(self, acc)

    def keyword_spellings(self, acc: int) -> dict[str, str]:
        """IMAP-only (the ``kw`` table).  {lowercase keyword: the spelling it
        was first stored with} for every custom keyword the account has used
        (IMAP keeps "$Forwarded" as sent).

        The answer is shared between calls (cached per store and account
        until a keyword joins the table): read it, never change it."""
        cacheable = type(self) is View   # a read snapshot: its state is committed
        if cacheable:
            version, per_acc, hit = self._spellings_cached(acc)
            if hit is not None:
                return hit
        pre = keys.account_prefix(acc)
        spell = {bytes(k[len(pre):]).decode("utf-8"): bytes(v).decode("utf-8")
                 for k, v in self._scan("kw", pre)}
        if cacheable:
            per_acc[acc] = (version, spell)
        return spell

    def _spellings_cached(self, acc: int) -> tuple[int, dict, dict[str, str] | None]:
        """(the kw table's version in this view, the store's cache of
        keyword_spellings answers, the answer cached for this version or None)."""
        version = self.counter(acc, keys.CTR_KEYWORDS)
        try:
            per_acc = _SPELLINGS.setdefault(self.store, {})
        except TypeError:            # a store without weak references
            per_acc = {}
        hit = per_acc.get(acc)
        return version, per_acc, hit[1] if hit is not None and hit[0] == version else None

    def keyword_spellings_if_cached(self, acc: int) -> dict[str, str] | None:
        """keyword_spellings' answer when this process holds it for this
        view's version of the table (one counter read), else None: nothing
        is scanned (for a caller that would otherwise read a few keywords
        one at a time)."""
        return self._spellings_cached(acc)[2] if type(self) is View else None

    def keyword_spelling(self, acc: int, lower: str) -> str | None:
        """IMAP-only (the ``kw`` table).  The spelling custom keyword LOWER was
        first stored with (None: never stored): one read, for a caller that
        needs a few keywords' spellings, not all of them."""
        v = self._get("kw", keys.kw(acc, lower))
        return bytes(v).decode("utf-8") if v is not None else None

    def orphan_subscriptions(self, acc: int) -> list[str]:
        """IMAP-only (the ``sub`` table).  Subscribed names whose mailbox no
        longer exists (RFC 9051 6.3.9: deleting a mailbox does not unsubscribe
        it), "/"-separated."""
        pre = keys.account_prefix(acc)
        return [bytes(k[len(pre):]).decode("utf-8") for k, _ in self._scan("sub", pre)]

    # --- per-device sync state (ActiveSync) -------------------------------------------

    def device_state(self, acc: int, device: str, key: str) -> bytes | None:
        v = self._get("dev", keys.dev(acc, device, key))
        return bytes(v) if v is not None else None

    def device_keys(self, acc: int, device: str) -> list[str]:
        pre = keys.dev_prefix(acc, device)
        return [k[len(pre):].decode("utf-8") for k, _ in self._scan("dev", pre)]

    def device_known(self, acc: int, device: str) -> bool:
        """Whether ACC has any state for DEVICE (the device counts against
        ``[eas] max_devices_per_user``)."""
        return next(self._scan("dev", keys.dev_prefix(acc, device), values=False), None) is not None

    def devices(self, acc: int, limit: int | None = None) -> list[str]:
        """The DeviceIds ACC has state for, in key order, at most LIMIT.  One
        seek per device, whatever the rows each holds: after device D's
        first row the next seek is to ``D \x01``, past all of ``D \0 *``."""
        pre = keys.account_prefix(acc)
        cur = self.txn.cursor(db=self.db["dev"])
        out: list[str] = []
        at = pre
        while (limit is None or len(out) < limit) and cur.set_range(at):
            k = bytes(cur.key())
            if k[:len(pre)] != pre:
                break
            end = k.index(b"\0", len(pre))
            out.append(k[len(pre):end].decode("utf-8"))
            at = k[:end] + b"\x01"
        return out

    # --- outbound mail (store/sending.py) ------------------------------------------------

    def identities(self, acc: int) -> dict[int, dict]:
        """{identity id: record} of ACC (JMAP Identity)."""
        return sending.identities(self, acc)

    def identity(self, acc: int, iid: int) -> dict | None:
        return sending.identity(self, acc, iid)

    def submissions(self, acc: int) -> dict[int, dict]:
        """{submission id: record} of ACC (JMAP EmailSubmission)."""
        return sending.submissions(self, acc)

    def submission(self, acc: int, sid: int) -> dict | None:
        return sending.submission(self, acc, sid)

    def outbound_queue(self) -> list[tuple[int, int, dict]]:
        """Every queued message of every account: [(account, id, entry)]."""
        return sending.queue(self)

    def outbound_entry(self, acc: int, qid: int) -> dict | None:
        return sending.queue_entry(self, acc, qid)

    def outbound_message(self, acc: int, qid: int) -> bytes | None:
        """The bytes queued as QID (a copy, whatever happened to the email)."""
        return sending.queue_message(self, acc, qid)

    def vacation(self, acc: int) -> dict | None:
        """ACC's vacation response record (None: never set)."""
        return sending.vacation(self, acc)

    # --- JMAP push subscriptions (RFC 8620 §7.2) -------------------------------------

    def push_subscription(self, acc: int, sid: int) -> records.PushSubscription | None:
        v = self._get("psub", keys.psub(acc, sid))
        return records.decode_push_subscription(sid, v) if v is not None else None

    def push_subscriptions(self, acc: int) -> list[records.PushSubscription]:
        return [records.decode_push_subscription(keys.split_psub(k)[1], v)
                for k, v in self._scan("psub", keys.account_prefix(acc))]

    def all_push_subscriptions(self) -> list[tuple[int, records.PushSubscription]]:
        """(account, subscription) of every user: what push delivery serves."""
        out = []
        for k, v in self._scan("psub", b""):
            acc, sid = keys.split_psub(k)
            out.append((acc, records.decode_push_subscription(sid, v)))
        return out

    # --- message index versions (mailaccess reindex) ---------------------------------

    def index_version(self) -> int:
        """The store-wide message index version: the oldest format any stored
        index may have (stores made before it was recorded hold version 1)."""
        v = self._get("meta", keys.META_INDEX_VERSION)
        return int(bytes(v)) if v is not None else 1

    def blob_indexes(self, acc: int, after: bytes = b"") -> Iterator[tuple[bytes, object]]:
        """(blob hash, stored index) of ACC's blobs in hash order, hashes after
        AFTER; the index is a buffer valid while the transaction lives."""
        pre = keys.account_prefix(acc)
        start = keys.blob(acc, after + b"\0") if after else None
        for k, v in self._scan("blob.idx", pre, start):
            yield k[len(pre):], v

    def count_blobs(self, acc: int, after: bytes = b"") -> int:
        """How many blobs ACC has with a hash after AFTER (keys only)."""
        pre = keys.account_prefix(acc)
        cur = self.txn.cursor(db=self.db["blob.idx"])
        if not cur.set_range(keys.blob(acc, after + b"\0") if after else pre):
            return 0
        n = 0
        for k in cur.iternext(keys=True, values=False):
            if bytes(k[:len(pre)]) != pre:
                break
            n += 1
        return n

    def reindex_cursors(self) -> dict[int, bytes]:
        """{account: last blob hash rebuilt} of every reindex run not finished."""
        pre = keys.reindex_cursor_prefix()
        return {keys.split_reindex_cursor(k): bytes(v) for k, v in self._scan("meta", pre)}
