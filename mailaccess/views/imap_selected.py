"""The per-session view of a selected IMAP mailbox.

The store knows UIDs; only a session knows sequence numbers, because
sequence numbers shift when that session is *told* about an expunge, not when
the expunge happens (RFC 9051 7.5.1).  This object keeps the session's
sequence map, the modseq up to which it has told the client about changes,
and expunges that happened but may not be announced yet (no EXPUNGE while
answering FETCH, STORE or SEARCH).  ``refresh`` compares it with the store and
returns what to announce; nothing here touches sockets.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class Refresh:
    expunged: list[int] = field(default_factory=list)      # UIDs, to announce now
    expunged_seqs: list[int] = field(default_factory=list)  # their sequence numbers, announce order
    exists: int | None = None                                # new EXISTS count, if it grew
    changed: list[int] = field(default_factory=list)        # UIDs whose flags/modseq moved


class SelectedMailbox:
    def __init__(self, acc: int, mbx: int, uidvalidity: int, readonly: bool,
                 pairs: list[tuple[int, int]], highest_ms: int, uidnext: int):
        self.acc = acc
        self.mbx = mbx
        self.uidvalidity = uidvalidity
        self.readonly = readonly
        self.uids: list[int] = [u for u, _ in pairs]
        self.eid: dict[int, int] = dict(pairs)
        self.known_ms = highest_ms          # changes up to here are reported
        self.uidnext = uidnext
        self.gone: set[int] = set()         # expunged in the store, not announced yet
        self.reported: dict[int, int] = {}  # uid -> modseq this session already sent
        self.saved_result: list[int] = []   # SEARCHRES "$" (UIDs)

    # --- numbering --------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def uid_at(self, seq: int) -> int:
        return self.uids[seq - 1]

    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def uids_for_set(self, numset, uid: bool, saved=None) -> list[int]:
        """UIDs addressed by a sequence set or UID set, ascending, existing only."""
        if uid:
            largest = self.max_uid()
            if not self.uids:
                return []
            out = []
            for lo, hi in numset.normalized(largest, saved):
                i = bisect.bisect_left(self.uids, lo)
                j = bisect.bisect_right(self.uids, hi)
                out.extend(self.uids[i:j])
            # RFC 9051 6.4.9: "*" in a UID set is the highest UID in use,
            # even when the client named a range entirely above it.
            if not out and any(0 in r for r in numset.ranges):
                out = [largest]
            return out
        n = self.exists
        out = []
        for lo, hi in numset.normalized(n, saved):
            if hi > n:
                hi = n
            out.extend(self.uids[lo - 1:hi])
        return out

    def seqs_valid(self, numset, saved=None) -> bool:
        """False when a sequence set names a number beyond EXISTS (BAD per RFC 9051)."""
        n = self.exists
        if n == 0:
            return not numset.ranges and numset.saved
        for lo, hi in numset.ranges:
            if lo > n or hi > n:
                return False
        return True

    # --- catching up with the store ----------------------------------------------

    def refresh(self, pairs: list[tuple[int, int]], changed: list[tuple[int, int]],
                highest_ms: int, allow_expunge: bool) -> Refresh:
        """PAIRS: the mailbox's current (uid, eid); CHANGED: (modseq, uid) of
        messages changed since known_ms.  Applies the result to this view."""
        r = Refresh()
        current = dict(pairs)
        for u in self.uids:
            if u not in current:
                self.gone.add(u)
        if allow_expunge and self.gone:
            # announce from the highest sequence number down, so each number
            # is still right when the client applies it
            for u in sorted(self.gone, reverse=True):
                seq = self.seq_of(u)
                if seq is not None:
                    r.expunged_seqs.append(seq)
                    r.expunged.append(u)
                    del self.uids[seq - 1]
                    self.eid.pop(u, None)
                    self.reported.pop(u, None)
            self.gone.clear()
        top = self.uids[-1] if self.uids else 0
        new = [(u, e) for u, e in pairs if u > top and u not in self.gone]
        if new:
            for u, e in new:
                self.uids.append(u)
                self.eid[u] = e
            r.exists = len(self.uids)
        newset = {u for u, _ in new}
        for ms, u in changed:
            if u in newset or u in self.gone or u not in self.eid:
                continue
            if self.reported.get(u, 0) >= ms:
                continue
            r.changed.append(u)
        r.changed = sorted(set(r.changed))
        self.known_ms = max(self.known_ms, highest_ms)
        self.reported.clear()   # everything up to known_ms is now told
        return r
