"""The facts of an email's content that SORT, THREAD and the Sent /
HasAttachment searches need, read fast and remembered.

A :class:`Facts` holds, per email, the sent date and its zone, whether it
has an attachment, the subject and its RFC 5256 base subject, the string
each address sort key compares (before collation), the normalized
Message-ID and the parent chain REFERENCES threads by.  They are derived
from the stored message index alone, and :func:`from_index` (from a whole
:class:`~mailaccess.mime.index.MessageIndex`) is their definition;
:func:`from_data` reads the same values from the encoded index in place:
the meta JSON only from its "subject" key to its "jmap_body" key, the
ENVELOPE only to the first address of FROM/TO/CC (``_speedups/facts_*``,
compiled with a pure twin).

:func:`facts` answers for many emails at once from a per-process cache,
one per store (held like view.py's keyword spellings), bounded in bytes
(``[store] facts_cache_bytes``, least recently used out first).  It is
keyed by (account, index generation, email id), packed in one int
(:func:`_keys`: a dict of 10,000 int keys answers faster than one of tuples):

* an email id is never reused within an account (a per-account counter,
  store/ops.py) and account ids are never reused, and the content of an
  email never changes, so its facts never change;
* except that ``mailaccess reindex`` may rewrite a stored index while the
  server runs (a parser fix): ``ops.replace_index`` bumps the account's
  ``CTR_INDEXES`` counter (``View.index_generation``), which is part of the
  key, so facts read from an older index are never answered again (and age
  out of the LRU);
* keying by blob hash instead would need the email record read per email
  on every lookup; the id needs no read at all once cached.

Collation is applied by the caller at sort time (sort.py): the cached
strings are the uncollated values, so every collation sees the same facts.
"""
from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict, deque
from itertools import compress
from operator import itemgetter
from typing import NamedTuple, Sequence

from mailaccess import _speedups
from mailaccess.mime import index as mindex
from mailaccess.store.emails import decode_index
from mailaccess.store.records import encode_facts

_impl = _speedups.load("facts")

__all__ = ["Facts", "EMPTY", "facts", "from_index", "from_data", "configure", "FactsCache",
           "addr_mailbox", "display_value", "normalize_msgid", "DEFAULT_BUDGET",
           "first_groups", "group_text", "GROUP_FIELDS", "record"]

DEFAULT_BUDGET = 32 * 1024 * 1024
"""Bytes of facts one process remembers per store, by default."""

_budget = DEFAULT_BUDGET


class Facts(NamedTuple):
    sent: int | None           # Date: header, UTC seconds (None: missing or bad)
    sent_tz: int | None        # its zone, minutes east of UTC
    attachment: bool           # MessageIndex.has_attachment
    subject: str               # the subject as decoded
    base: str                  # its RFC 5256 section 2.1 base subject, case kept
    from_: str                 # SORT FROM / TO / CC (RFC 5256 2.2): group name
    to: str                    #   or the first address's addr-mailbox
    cc: str
    displayfrom: str           # SORT DISPLAYFROM / DISPLAYTO (RFC 5957 3):
    displayto: str             #   group name or display name or address
    jmap_from: str             # JMAP from / to sorts (RFC 8621 4.4.2): display
    jmap_to: str               #   name or address of the first address, no groups
    message_id: str | None     # normalized (normalize_msgid)
    refs: tuple[str, ...]      # normalized References, else first In-Reply-To


_new = tuple.__new__      # Facts(...) without its Python-level __new__

EMPTY = Facts(None, None, False, "", "", "", "", "", "", "", "", "", None, ())
"""The facts of an email without a (readable) index: no headers at all."""


def addr_mailbox(addrs) -> str:
    """RFC 5256 FROM/TO/CC: the [IMAP] addr-mailbox (local part) of the first address."""
    if not addrs:
        return ""
    email = addrs[0][1] or ""
    local, at, _host = email.rpartition("@")
    return local if at else email


def display_value(addrs) -> str:
    """RFC 5957 section 3: the first address's decoded display name if not
    empty, else addr-mailbox@addr-host, else addr-mailbox, else empty."""
    if not addrs:
        return ""
    name, email = addrs[0][0], addrs[0][1] or ""
    if name and name.strip():
        return name.strip()
    return email


def normalize_msgid(mid: str | None) -> str | None:
    """A msg-id in one form (RFC 5256: quoting must not cause non-matches):
    without angle brackets, white space or local-part quoting.  Comparison
    stays case-sensitive."""
    if not mid:
        return None
    s = "".join(mid.split()).strip("<>")
    local, at, dom = s.rpartition("@")
    if at and '"' in local:
        local = re.sub(r'\\(.)', r"\1", local.replace('"', ""))
        s = local + "@" + dom
    return s or None


GROUP_FIELDS = _impl.FIELDS
"""Positions in the ENVELOPE of the fields first_groups reports (from, to, cc)."""


def first_groups(envelope: bytes) -> tuple:
    """(from, to, cc) group names (raw ENVELOPE bytes) or None each: see
    ``_speedups/facts_py.first_groups``."""
    return _impl.first_groups(envelope)


def group_text(raw: bytes | None) -> str | None:
    """A group name from the ENVELOPE (its mailbox bytes), RFC 2047 words decoded."""
    if raw is None:
        return None
    from email.header import decode_header, make_header
    text = raw.decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # a malformed encoded word: the raw text
        return text


def _make(subject, from_, to, cc, sent_at, sent_tz, message_id, in_reply_to, references,
          has_attachment, gf, gt, gc) -> Facts:
    """The facts of these index values; GF, GT, GC: first_groups of the ENVELOPE."""
    subject = subject or ""
    # RFC 5256: the first address of the field; when that is a group, its
    # addr-mailbox in the ENVELOPE is the group name
    jf = display_value(from_)
    jt = display_value(to)
    if gf is None:
        sf, df = addr_mailbox(from_), jf
    else:
        sf = df = group_text(gf)
    if gt is None:
        st, dt = addr_mailbox(to), jt
    else:
        st = dt = group_text(gt)
    sc = addr_mailbox(cc) if gc is None else group_text(gc)
    # REFERENCES threads by the References, else the first In-Reply-To
    refs = ()
    if references:
        refs = tuple(r for r in map(normalize_msgid, references) if r)
    if not refs and in_reply_to:
        for r in in_reply_to:
            r = normalize_msgid(r)
            if r:
                refs = (r,)
                break
    return _new(Facts, (sent_at, sent_tz, bool(has_attachment), subject,
                        mindex.base_subject(subject), sf, st, sc, df, dt, jf, jt,
                        normalize_msgid(message_id) if message_id else None, refs))


def from_index(mi: mindex.MessageIndex | None) -> Facts:
    """The facts of a decoded message index (None: no index): the definition."""
    if mi is None:
        return EMPTY
    return _make(mi.subject, mi.from_, mi.to, mi.cc, mi.sent_at, mi.sent_at_tz, mi.message_id,
                 mi.in_reply_to, mi.references, mi.has_attachment,
                 *_impl.first_groups(mi.envelope))


def from_data(data) -> Facts:
    """The facts of an encoded message index DATA (bytes or an LMDB buffer;
    None: no index), equal to ``from_index(decode_index(data))``, reading
    only the spans they come from (``_speedups/facts_*.extract``); an index
    it cannot read that way (version 1, damaged) is decoded whole,
    leniently, as load_email does.  (An index damaged only outside those
    spans still gives its facts here, where decode_index gives none.)"""
    if data is None:
        return EMPTY
    try:
        f = _impl.facts_of(data, Facts)
        if f is not None:
            return f
        v = _impl.extract(data)
        if v is not None:
            return _make(*v)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        pass
    return from_index(decode_index(data))


def record(data) -> bytes:
    """The ``msg.facts`` record (store/records.py ``encode_facts``) of the
    encoded message index DATA: ``from_data(DATA)`` as the store keeps it
    beside each email of that index (ingest.prepare at delivery, ``mailaccess
    reindex``), so :func:`facts` reads the same values without the index;
    b"" when they do not fit a record (the index is read then)."""
    return encode_facts(from_data(data))


# ---------------------------------------------------------------- the cache


def _cost(f: Facts) -> int:
    """Bytes an entry holds, from above: ``_speedups/facts_py.cost``."""
    return _impl.costs([f])[0]


class FactsCache:
    """key (facts.py: account, index generation, email id) -> Facts, at most BUDGET bytes
    by :func:`_cost`, the least recently used dropped first.  An entry
    bigger than the budget alone is not kept.  Searches, sorts and threads
    run in the worker pool's threads: every step holds LOCK (never while
    facts are read from the store)."""

    __slots__ = ("budget", "used", "data", "lock", "__weakref__")

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.data: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def get_many(self, keys: list) -> list:
        """The entry of each of KEYS or None, each found one now the most recent."""
        with self.lock:
            data = self.data
            out = list(map(data.get, keys))
            # the found ones become the most recent (Facts are non-empty tuples: true)
            deque(map(data.move_to_end, compress(keys, out)), 0)
            return out

    def put(self, key, f: Facts) -> None:
        self.put_many([(key, f)])

    def put_many(self, items: list) -> None:
        costs = _impl.costs(list(map(itemgetter(1), items)))
        with self.lock:
            data = self.data
            budget = self.budget
            keys = list(map(itemgetter(0), items))
            if costs and max(costs) <= budget and len(set(keys)) == len(keys) \
                    and not any(map(data.__contains__, keys)):
                # all new (the misses of facts()): appended at once, then the
                # oldest out while over the budget; the same entries stay as
                # when each was put and the oldest dropped after each (both
                # keep the longest run of most recent entries that fits)
                data.update(items)
                self.used += sum(costs)
                while self.used > budget:
                    _k, gone = data.popitem(last=False)
                    self.used -= _cost(gone)
                return
            for (key, f), cost in zip(items, costs):
                if cost > budget:
                    continue
                old = data.pop(key, None)
                if old is not None:
                    self.used -= _cost(old)
                self.used += cost
                while self.used > budget:
                    _k, gone = data.popitem(last=False)
                    self.used -= _cost(gone)
                data[key] = f

    def clear(self) -> None:
        with self.lock:
            self.data.clear()
            self.used = 0


_CACHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def configure(budget: int) -> None:
    """Set the byte budget of every store's cache in this process (the
    worker's [store] facts_cache_bytes); 0 keeps nothing."""
    global _budget
    with _CACHES_LOCK:
        _budget = max(0, int(budget))
        caches = list(_CACHES.values())
    for c in caches:
        with c.lock:
            c.budget = _budget
            c.data.clear()
            c.used = 0


def cache_of(store) -> FactsCache:
    """STORE's facts cache in this process."""
    c = _CACHES.get(store)
    if c is None:
        with _CACHES_LOCK:
            c = _CACHES.get(store)
            if c is None:
                c = _CACHES[store] = FactsCache(_budget)
    return c


def _keys(acc: int, gen: int, eids: Sequence[int]) -> list[int]:
    """The cache keys of emails EIDS of account ACC at index generation GEN:
    (GEN, ACC, eid) packed in one int (account and email ids are u32, as
    the store's keys hold them: store/keys.py)."""
    return list(map(((gen << 64) | (acc << 32)).__or__, eids))


def facts(view, acc: int, eids: Sequence[int]) -> list[Facts | None]:
    """The facts of emails EIDS of account ACC, in order; None for an email
    that does not exist (or gone since it was remembered: a caller passes
    ids of VIEW's snapshot).  Read through VIEW on a miss, then remembered."""
    cache = cache_of(view.store)
    ks = _keys(acc, view.index_generation(acc), eids)
    out = cache.get_many(ks)
    miss = [p for p, f in enumerate(out) if f is None]
    if not miss:
        return out
    # the misses read in one call (_speedups/facts_*.read_many): each email's
    # msg.facts record (a cursor over ascending email ids), else its email
    # record and index read in place, most facts finished without Python
    got = _impl.read_many(view.facts_reader(acc), view.email_reader(acc),
                          view.index_reader(acc), [eids[p] for p in miss], Facts, from_data)
    new = []
    for p, f in zip(miss, got):
        if f is not None:
            out[p] = f
            new.append((ks[p], f))
    if new and cache.budget:
        cache.put_many(new)
    return out
