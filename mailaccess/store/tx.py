"""A write transaction in domain terms: table writes plus the change log.

One WriteTx serves one request on the writer thread.  The first change it
makes to an account allocates that account's next modseq (one per request,
however many objects it touches); ``flush_changes`` writes the coalesced
change record for it before the nested transaction commits: one change-log
row per object it touched (store/changelog.py), pruning the log if it grew
past its size limit.
"""
from __future__ import annotations

import time
from itertools import repeat

from .. import _speedups
from . import changelog, keys, logical, records
from .records import Change
from .redolog import DELETE, PUT, LoggedTxn
from .view import View

_emailrec = _speedups.load("emailrec")


class WriteTx(View):
    def __init__(self, store, txn):
        super().__init__(store, txn)
        # a LoggedTxn (store/redolog.py) records the writes for the redo log
        self._ops = getattr(txn, "ops", None) if isinstance(txn, LoggedTxn) else None
        self._raw = txn.txn if self._ops is not None else txn
        self._changes: dict[int, Change] = {}
        self._states: dict[tuple[int, str], dict[int, str | None]] = {}
        self._flushed: list[tuple[int, Change]] = []

    # --- raw writes -----------------------------------------------------------------

    def put(self, table: str, key: bytes, value: bytes) -> None:
        if self._ops is None:
            self.txn.put(key, value, db=self.db[table])
        else:       # straight to LMDB and the redo log (one call less per write)
            self._raw.put(key, value, db=self.db[table])
            self._ops.append((PUT, table, key, value))

    def delete(self, table: str, key: bytes) -> bool:
        if self._ops is None:
            return self.txn.delete(key, db=self.db[table])
        r = self._raw.delete(key, db=self.db[table])
        if r:
            self._ops.append((DELETE, table, key, b""))
        return r

    def put_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        """``put`` of each (key, value) of ITEMS, in order, in one call into
        LMDB (a bulk STORE writes 10,000 records and 10,000 index keys)."""
        if len(items) < 4:          # a cursor costs more than a few puts
            db = self.db[table]
            if self._ops is None:
                put = self.txn.put
                for k, v in items:
                    put(k, v, db=db)
                return
            put, log = self._raw.put, self._ops.append
            for k, v in items:
                put(k, v, db=db)
                log((PUT, table, k, v))
            return
        self._raw.cursor(db=self.db[table]).putmulti(items)
        if self._ops is not None:     # (PUT, table, key, value) each, built in C
            ks, vs = zip(*items)
            self._ops.extend(zip(repeat(PUT, len(ks)), repeat(table), ks, vs))

    def put_run(self, table: str, prefix: bytes, suffixes: bytes, width: int,
                value: bytes) -> None:
        """``put(prefix + suffix, value)`` for each WIDTH-byte suffix of
        SUFFIXES, in order, logged as one RUN op (store/logical.py) instead
        of one op per key (a bulk STORE's 10,000 change-log rows)."""
        n = len(suffixes) // width
        if n < 4 or self._ops is None:
            self.put_many(table, [(prefix + suffixes[i:i + width], value)
                                  for i in range(0, n * width, width)])
            return
        # (the loop in _speedups/emailrec: compiled, LMDB called directly)
        _emailrec.put_run(self._raw.cursor(db=self.db[table]), prefix, suffixes, width, value)
        self._ops.append((logical.RUN, table, prefix, logical.encode_run(value, width, suffixes)))

    def delete_many(self, table: str, keys_: list[bytes]) -> None:
        """``delete`` of each key of KEYS_, in order, through one cursor:
        LMDB looks on the cursor's page first, so keys that lie close
        together (the old mbx.ms keys of a bulk STORE) cost no descent of
        the tree each."""
        if len(keys_) < 4:
            db = self.db[table]
            if self._ops is None:
                delete = self.txn.delete
                for k in keys_:
                    delete(k, db=db)
                return
            delete, log = self._raw.delete, self._ops.append
            for k in keys_:
                if delete(k, db=db):
                    log((DELETE, table, k, b""))
            return
        # (the loop in _speedups/emailrec: compiled, LMDB called directly)
        gone = _emailrec.delete_keys(self._raw.cursor(db=self.db[table]), keys_)
        if self._ops is not None:
            self._ops.extend(zip(repeat(DELETE), repeat(table), gone, repeat(b"")))

    def delete_prefix(self, table: str, prefix: bytes) -> int:
        cur = self.txn.cursor(db=self.db[table])
        n = 0
        if not cur.set_range(prefix):
            return 0
        while True:
            k = cur.key()
            if not bytes(k).startswith(prefix):
                break
            if not cur.delete():
                break
            n += 1
            if not cur.key():
                break
        return n

    def _count(self, key: bytes) -> int:
        """The counter at KEY (``counter`` with its key made once)."""
        v = self.txn.get(key, db=self.db["ctr"])
        return keys.read_u64(v) if v is not None else 0

    def next_counter(self, acc: int, kind: int, at_least: int = 0) -> int:
        key = keys.ctr(acc, kind)
        n = max(self._count(key) + 1, at_least)
        self.put("ctr", key, keys.u64(n))
        return n

    def add_counter(self, acc: int, kind: int, delta: int) -> int:
        key = keys.ctr(acc, kind)
        n = max(0, self._count(key) + delta)
        self.put("ctr", key, keys.u64(n))
        return n

    # --- records ----------------------------------------------------------------------

    def put_mailbox(self, acc: int, m: records.Mailbox) -> None:
        key = keys.mbox(acc, m.id)
        old = self._get("mbox", key)
        if old is None:
            self.tree_changed(acc)
        else:   # (the record was most likely just read: a decode-cache hit)
            o = records.decode_mailbox(m.id, bytes(old))
            if (o.name, o.parent, o.role, o.subscribed) != (m.name, m.parent, m.role,
                                                            m.subscribed):
                self.tree_changed(acc)
        self.put("mbox", key, records.encode_mailbox(m))

    def tree_changed(self, acc: int) -> None:
        """Bump ACC's mailbox tree generation (CTR_TREE): what an IMAP LIST
        answers (names, parents, roles, subscriptions) may have changed.
        put_mailbox calls it for a new mailbox or a changed name, parent,
        role or subscription; ops for a deleted mailbox and the ``sub``
        table."""
        self.next_counter(acc, keys.CTR_TREE)

    def put_email(self, acc: int, r: records.EmailRecord) -> None:
        self.put("msg", keys.msg(acc, r.id), records.encode_email(r))

    def put_account(self, a: records.Account) -> None:
        self.put("acct", keys.acct(a.id), records.encode_account(a))

    # --- the change clock -----------------------------------------------------------

    def change(self, acc: int) -> Change:
        """This request's change record for ACC, allocating its modseq once."""
        c = self._changes.get(acc)
        if c is None:
            ms = self.next_counter(acc, keys.CTR_MODSEQ)
            c = Change(ms)
            self._changes[acc] = c
        return c

    def modseq(self, acc: int) -> int:
        return self.change(acc).modseq

    def log(self, acc: int, kind: str, collection: str, oid: int) -> None:
        """Record that OID of COLLECTION was created/updated/destroyed.

        Coalesced within the request (O(1) per call; a STORE over 10,000
        messages logs 10,000 updates): created+updated = created,
        created+destroyed = nothing, destroyed+created = updated."""
        self.change(acc)
        states = self._states.setdefault((acc, collection), {})
        old = states.get(oid)
        if kind == "created":
            states[oid] = "updated" if old == "destroyed" else (old or "created")
        elif kind == "updated":
            if old is None:
                states[oid] = "updated"
        elif kind == "destroyed":
            if old == "created":
                states[oid] = None          # never existed outside this request
            else:
                states[oid] = "destroyed"
        else:
            raise ValueError(kind)

    def log_updated(self, acc: int, collection: str, oids) -> None:
        """``log(acc, "updated", collection, oid)`` for each of OIDS, at once
        (a bulk STORE logs 10,000), the same rule as ``log``."""
        if not oids:
            return
        self.change(acc)
        states = self._states.setdefault((acc, collection), {})
        if states:
            get = states.get
            for oid in oids:
                if get(oid) is None:
                    states[oid] = "updated"
        else:
            states.update(dict.fromkeys(oids, "updated"))

    def touch_mailbox(self, acc: int, mbx: int) -> None:
        c = self.change(acc)
        if mbx not in c.mailboxes:    # a handful per request: a list is fine
            c.mailboxes.append(mbx)

    def flush_changes(self) -> None:
        for (acc, collection), states in self._states.items():
            c = self._changes[acc]
            if len(states) < 16:
                for oid, kind in states.items():
                    if kind is not None:
                        getattr(c, kind).setdefault(collection, []).append(oid)
                continue
            # a bulk write (10,000 updated): one pass per kind, same lists;
            # all of one kind (a bulk STORE): the ids as they are
            kinds = set(states.values())
            if len(kinds) == 1:
                kind = kinds.pop()
                if kind is not None:
                    getattr(c, kind).setdefault(collection, []).extend(states)
                continue
            for kind in ("created", "updated", "destroyed"):
                ids = [oid for oid, k in states.items() if k == kind]
                if ids:
                    getattr(c, kind).setdefault(collection, []).extend(ids)
        self._states.clear()
        now = int(time.time())
        for acc, c in self._changes.items():
            changelog.write(self, acc, c, now)
            self._flushed.append((acc, c))
        self._changes.clear()

    def changes(self) -> list[tuple[int, Change]]:
        return list(self._flushed)
