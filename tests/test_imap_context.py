"""RFC 5267 CONTEXT=SEARCH / CONTEXT=SORT (with ESORT and RFC 9394 PARTIAL
ranges), at three levels:

- the wire: RETURN (CONTEXT UPDATE PARTIAL ...) and CANCELUPDATE parsing,
  the ESEARCH PARTIAL / ADDTO / REMOVEFROM bytes, PARTIAL slicing against a
  model (hypothesis);
- a SORT context's positions: the REMOVEFROM/ADDTO pairs, applied by a
  client exactly as RFC 5267 4.3.3/4.3.4 say, give the server's new order
  (hypothesis, both insertion strategies);
- live sessions over raw sockets: one session changes flags, appends and
  expunges, the other keeps its contexts by applying ADDTO/REMOVEFROM (and
  EXPUNGE) in the order received, and after every step they equal a fresh
  SEARCH/SORT; REMOVEFROM comes before the EXPUNGE it explains and ADDTO
  after the EXISTS; updates during IDLE; tag reuse, CANCELUPDATE,
  NOUPDATE, and the end of updates with the selection; imapclient.
"""
from __future__ import annotations

import functools
import random
import re
import types
from array import array

import pytest
from hypothesis import given, settings, strategies as st
from imapclient import IMAPClient

from imap_helpers import imap_port, msg, Raw, run
from mailaccess.proto.imap import events as E
from mailaccess.proto.imap import serialize as S
from mailaccess.proto.imap.commands import parse_command
from mailaccess.proto.imap.errors import CommandError
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.server import imap_context as IC


# --- wire -------------------------------------------------------------------------------------

def parse(data: bytes):
    from mailaccess.proto.imap.receiver import Receiver
    r = Receiver()
    r.receive_data(data)
    ev = r.next_event()
    assert isinstance(ev, CommandFrame), ev
    return parse_command(ev)


def bad(data: bytes) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse(data)
    return info.value


def test_return_options_of_contexts():
    cmd = parse(b"t1 UID SEARCH RETURN (UPDATE COUNT) DELETED\r\n")
    assert cmd.uid and cmd.returns == ("UPDATE", "COUNT") and cmd.partial is None
    # CONTEXT alone is a hint with no data of its own: like RETURN () it means ALL
    assert parse(b"t1 SEARCH RETURN (CONTEXT) ALL\r\n").returns == ("CONTEXT", "ALL")
    assert parse(b"t1 SEARCH RETURN (CONTEXT COUNT) ALL\r\n").returns == ("CONTEXT", "COUNT")
    assert parse(b"t1 SEARCH RETURN (UPDATE) ALL\r\n").returns == ("UPDATE",)
    cmd = parse(b"t1 SEARCH RETURN (PARTIAL 1:100 COUNT) ALL\r\n")
    assert cmd.returns == ("PARTIAL", "COUNT") and cmd.partial == (1, 100)
    assert parse(b"t1 SEARCH RETURN (partial 500:400) ALL\r\n").partial == (400, 500)
    assert parse(b"t1 SEARCH RETURN (PARTIAL -1:-100) ALL\r\n").partial == (-1, -100)
    assert parse(b"t1 SEARCH RETURN (PARTIAL -100:-1) ALL\r\n").partial == (-1, -100)
    cmd = parse(b"t1 UID SORT RETURN (UPDATE PARTIAL 2:3 MIN) (SUBJECT) UTF-8 ALL\r\n")
    assert cmd.returns == ("UPDATE", "PARTIAL", "MIN") and cmd.partial == (2, 3)


@pytest.mark.parametrize("data", [
    b"t1 SEARCH RETURN (PARTIAL 1:5 ALL) ALL\r\n",       # RFC 5267 4.4: not both
    b"t1 SEARCH RETURN (ALL PARTIAL 1:5) ALL\r\n",
    b"t1 SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL\r\n",
    b"t1 SEARCH RETURN (PARTIAL 0:5) ALL\r\n",           # nz-number
    b"t1 SEARCH RETURN (PARTIAL 1:-5) ALL\r\n",          # one sign
    b"t1 SEARCH RETURN (PARTIAL 1:*) ALL\r\n",
    b"t1 SEARCH RETURN (PARTIAL) ALL\r\n",
    b"t1 SEARCH RETURN (PARTIAL 5) ALL\r\n",
    b"t1 SEARCH RETURN (PARTIAL 1:99999999999) ALL\r\n",
    b"t1 SEARCH RETURN (UPDATE FOO) ALL\r\n",
])
def test_bad_return_options(data):
    bad(data)


_OPTS = st.sampled_from([b"MIN", b"MAX", b"ALL", b"COUNT", b"SAVE", b"CONTEXT", b"UPDATE",
                         b"PARTIAL 1:5", b"PARTIAL -3:-1", b"PARTIAL 9:2", b"PARTIAL",
                         b"PARTIAL 0:1", b"PARTIAL 1:-1", b"FOO", b"partial 2:3"])


@settings(max_examples=500)
@given(st.lists(_OPTS, max_size=4), st.booleans())
def test_return_options_parse_or_bad(opts, sort):
    """Any list of options: a typed command with the RFC's rules, or BAD."""
    head = b"t1 UID SORT RETURN (" if sort else b"t1 UID SEARCH RETURN ("
    tail = b") (SUBJECT) UTF-8 ALL\r\n" if sort else b") ALL\r\n"
    try:
        cmd = parse(head + b" ".join(opts) + tail)
    except CommandError:
        return
    names = set(cmd.returns)
    assert names <= {"MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL"}
    assert not ({"ALL", "PARTIAL"} <= names)
    assert ("PARTIAL" in names) == (cmd.partial is not None)
    assert sum(o.upper().startswith(b"PARTIAL") for o in opts) <= 1
    if cmd.partial is not None:
        lo, hi = cmd.partial
        assert (lo > 0) == (hi > 0) and abs(lo) <= abs(hi)
    assert names - {"CONTEXT"}     # nothing but CONTEXT means ALL


def test_cancelupdate_syntax():
    cmd = parse(b't1 CANCELUPDATE "B01"\r\n')
    assert cmd == E.CancelUpdate(b"t1", (b"B01",))
    assert parse(b't1 CANCELUPDATE "a" "b c"\r\n').tags == (b"a", b"b c")
    bad(b"t1 CANCELUPDATE\r\n")
    bad(b"t1 CANCELUPDATE B01\r\n")        # 1*(SP quoted)


def test_esearch_bytes():
    assert S.esearch(b"A02", True, partial=((23500, 24000), [7, 8, 9, 12])) == \
        b'* ESEARCH (TAG "A02") UID PARTIAL (23500:24000 7:9,12)\r\n'
    assert S.esearch(b"A04", True, partial=((24000, 24500), [])) == \
        b'* ESEARCH (TAG "A04") UID PARTIAL (24000:24500 NIL)\r\n'
    assert S.esearch(b"A01", True, partial=((-1, -100), [5, 6]), count=2) == \
        b'* ESEARCH (TAG "A01") UID COUNT 2 PARTIAL (-1:-100 5:6)\r\n'
    # ESORT keeps the sort order inside PARTIAL too
    assert S.esearch(b"s", False, partial=((1, 3), [9, 2, 3]), keep_order=True) == \
        b'* ESEARCH (TAG "s") PARTIAL (1:3 9,2:3)\r\n'
    assert S.esearch_update(b"B01", True, [("ADDTO", [(0, [32768, 32769])])]) == \
        b'* ESEARCH (TAG "B01") UID ADDTO (0 32768:32769)\r\n'
    assert S.esearch_update(b"C01", False, [("REMOVEFROM", [(2, [7]), (5, [9, 3])]),
                                             ("ADDTO", [(1, [2731, 2732, 2733])])]) == \
        b'* ESEARCH (TAG "C01") REMOVEFROM (2 7 5 9,3) ADDTO (1 2731:2733)\r\n'
    assert S.untagged("NO", "too many", S.code_noupdate(b"B02")) == \
        b'* NO [NOUPDATE "B02"] too many\r\n'


def _partial_model(results, rng):
    n = len(results)
    lo, hi = rng
    if lo > 0:
        positions = [p for p in range(lo, hi + 1) if p <= n]
    else:   # -1 is the last: position n
        positions = sorted(n + 1 + k for k in range(hi, lo + 1) if n + 1 + k >= 1)
    return [results[p - 1] for p in positions]


@given(st.lists(st.integers(1, 10**6), unique=True, max_size=40),
       st.integers(1, 50), st.integers(1, 50), st.booleans())
def test_partial_slice_matches_the_definition(results, a, b, negative):
    lo, hi = sorted((a, b))
    rng = (-lo, -hi) if negative else (lo, hi)
    assert IC.partial_slice(results, rng) == _partial_model(results, rng)


def test_returned_follows_rfc9394_table():
    r = [2, 4, 6, 8, 10]
    assert IC.returned(r, ("SAVE", "PARTIAL"), (2, 3)) == [4, 6]
    assert IC.returned(r, ("SAVE", "PARTIAL", "MIN"), (4, 5)) == [2, 8, 10]
    assert IC.returned(r, ("SAVE", "PARTIAL", "MIN", "MAX"), (2, 2)) == [2, 4, 10]
    assert IC.returned(r, ("SAVE", "PARTIAL", "COUNT", "MIN"), (2, 2)) == r
    assert IC.returned(r, ("SAVE", "MAX"), None) == [10]
    assert IC.returned(r, ("SAVE",), None) == r
    assert IC.returned(r, ("SAVE", "UPDATE"), None) == r
    assert IC.returned(r, ("PARTIAL",), (-1, -2)) == [8, 10]


# --- the positions of a SORT context (client model against the server's order) --------------

def apply_pairs(lst: list[int], name: str, pairs, mailbox_order=True) -> None:
    """Apply ADDTO/REMOVEFROM pairs to LST as RFC 5267 4.3.3/4.3.4 tell a client."""
    for pos, nums in pairs:
        if name == "REMOVEFROM":
            if pos == 0:
                for x in nums:
                    lst.remove(x)
            else:
                for x in nums:
                    assert lst[pos - 1] == x, (lst, pos, x)
                    del lst[pos - 1]
        else:
            if pos == 0:
                for x in nums:
                    assert x not in lst
                    lst.append(x)
                lst.sort()
            else:
                for k, x in enumerate(nums):
                    lst.insert(pos - 1 + k, x)


def _fake_sort(values):
    def sort(v, acc, pairs, keys):
        return [u for u, _e in sorted(pairs, key=lambda p: (values[p[0]], p[0]))]
    return types.SimpleNamespace(sort=sort)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.integers(1, 400), st.integers(0, 6), min_size=1, max_size=60),
       st.data())
def test_sort_context_pairs_rebuild_the_order(values, data):
    uids = sorted(values)
    members = data.draw(st.lists(st.sampled_from(uids), unique=True))
    order = sorted(members, key=lambda u: (values[u], u))
    snap = types.SimpleNamespace(uids=array("I", uids), eids=array("I", uids))
    c = IC.Context(b"t", True, None, ["k"], array("I", sorted(members)), array("I", order), 0)
    client = list(order)
    drops = sorted(data.draw(st.lists(st.sampled_from(members), unique=True))
                   if members else [])
    apply_pairs(client, "REMOVEFROM", IC._remove(c, drops))
    assert client == list(c.order)
    rest = [u for u in uids if u not in set(c.members)]
    adds = sorted(data.draw(st.lists(st.sampled_from(rest), unique=True)) if rest else [])
    old = IC.qsort
    IC.qsort = _fake_sort(values)
    try:
        pairs = IC._insert(None, 0, c, snap, adds) if adds else []
    finally:
        IC.qsort = old
    apply_pairs(client, "ADDTO", pairs)
    want = sorted(set(members) - set(drops) | set(adds), key=lambda u: (values[u], u))
    assert list(c.order) == want and client == want
    assert list(c.members) == sorted(want)
    # positions are ascending within ADDTO and each pair is a run
    assert [p for p, _ in pairs] == sorted(p for p, _ in pairs)


# --- live sessions ----------------------------------------------------------------------------

# Lines up to the tagged one (a literal an item of its own); the caller may
# name the tag (contexts are named by it).
Raw = functools.partial(Raw, prefix=b"r", timeout=20)


_ESEARCH = re.compile(rb'^\* ESEARCH \(TAG "([^"]*)"\)( UID)?(.*)\r\n$')


def expand(s: bytes) -> list[int]:
    out = []
    for part in s.split(b","):
        if b":" in part:
            a, b = map(int, part.split(b":"))
            out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
        else:
            out.append(int(part))
    return out


def esearch(line: bytes):
    """(tag, uid, [(name, value)]) of an ESEARCH line; ADDTO/REMOVEFROM values
    are [(position, [numbers])], PARTIAL ((lo, hi), [numbers]), ALL [numbers]."""
    m = _ESEARCH.match(line)
    if m is None:
        return None
    tag, uid, rest = m.group(1), bool(m.group(2)), m.group(3).strip()
    items = []
    toks = re.findall(rb"\([^)]*\)|\S+", rest)
    for name, val in zip(toks[0::2], toks[1::2]):
        name = name.decode().upper()
        if name in ("ADDTO", "REMOVEFROM"):
            w = val[1:-1].split()
            items.append((name, [(int(w[i]), expand(w[i + 1])) for i in range(0, len(w), 2)]))
        elif name == "PARTIAL":
            rng, nums = val[1:-1].split()
            items.append((name, (rng, [] if nums == b"NIL" else expand(nums))))
        elif name == "ALL":
            items.append((name, expand(val)))
        else:
            items.append((name, int(val)))
    return tag, uid, items


class ClientContexts:
    """What a client keeps: each context's list, changed only by what the server says."""

    def __init__(self):
        self.lists: dict[bytes, list[int]] = {}
        self.seq_based: set[bytes] = set()
        self.seen: list[tuple[bytes, bytes]] = []   # (kind, line) in order

    def start(self, tag: bytes, responses: list[bytes]) -> None:
        for line in responses:
            e = esearch(line)
            if e and e[0] == tag:
                self.lists[tag] = dict(e[2]).get("ALL", [])
                if not e[1]:
                    self.seq_based.add(tag)
                return
        raise AssertionError(responses)

    def feed(self, responses: list[bytes]) -> None:
        for line in responses:
            m = re.match(rb"\* (\d+) EXPUNGE", line)
            if m:
                n = int(m.group(1))
                self.seen.append((b"EXPUNGE", line))
                for tag in self.seq_based:
                    lst = self.lists[tag]
                    assert n not in lst, f"EXPUNGE {n} of a member of {tag} before REMOVEFROM"
                    lst[:] = [x - 1 if x > n else x for x in lst]
                continue
            if re.match(rb"\* \d+ EXISTS", line):
                self.seen.append((b"EXISTS", line))
                continue
            e = esearch(line)
            if e is None or e[0] not in self.lists:
                continue
            self.seen.append((b"ESEARCH", line))
            for name, pairs in e[2]:
                assert name in ("ADDTO", "REMOVEFROM"), line
                apply_pairs(self.lists[e[0]], name, pairs)


SUBJECTS = ["apple", "Banana", "cherry", "apple", "date", "[bracket]", "_under"]

CONTEXTS = {
    b"c1": b"UID SEARCH RETURN (UPDATE ALL) UNSEEN",
    b"c2": b"SEARCH RETURN (UPDATE ALL) FLAGGED",
    b"c3": b"UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN",
    b"c4": b"SORT RETURN (UPDATE ALL) (REVERSE SUBJECT) UTF-8 OR FLAGGED SEEN",
    b"c5": b"UID SORT RETURN (UPDATE ALL) (SIZE) UTF-8 ALL",
    b"c6": b"SEARCH RETURN (UPDATE COUNT) NOT DELETED",
}


def fresh(a: Raw, tag: bytes) -> list[int]:
    """The context's result now, asked again without UPDATE."""
    line = re.sub(rb"RETURN \([^)]*\)", b"RETURN (ALL)", CONTEXTS[tag])
    for r in a.cmd(line):
        e = esearch(r)
        if e:
            return dict(e[2]).get("ALL", [])
    raise AssertionError


def _append(b: Raw, rnd: random.Random, i: int) -> None:
    raw = msg(rnd.choice(SUBJECTS), body="x" * rnd.randrange(1, 300), mid=f"<m{i}@t>")
    b.f.write(b"a%d APPEND INBOX {%d}\r\n" % (i, len(raw)))
    b.f.flush()
    assert b.f.readline().startswith(b"+")
    b.f.write(raw + b"\r\n")
    b.f.flush()
    b.read_until(b"a%d" % i)


def _conversation(ctx, seed: int, steps: int) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(seed)
    a, b = Raw(ctx), Raw(ctx)
    for i in range(6):
        _append(b, rnd, i)
    b.cmd(b"SELECT INBOX")
    b.cmd(b"STORE 2,4 +FLAGS (\\Seen)")
    b.cmd(b"STORE 3 +FLAGS (\\Flagged)")
    a.cmd(b"SELECT INBOX")
    model = ClientContexts()
    for tag, line in CONTEXTS.items():
        resp = a.cmd(line, tag=tag)
        if b"ALL" in line.split(b")")[0]:
            model.start(tag, resp)
        else:       # COUNT only: the client keeps the list from a fresh answer
            model.lists[tag] = fresh(a, tag)
            model.seq_based.add(tag)
        assert model.lists[tag] == fresh(a, tag)
    for step in range(steps):
        op = rnd.random()
        found = [l for l in b.cmd(b"SEARCH ALL") if l.startswith(b"* SEARCH")][0]
        count = len(found.split()) - 2
        if op < 0.25 or count < 3:
            _append(b, rnd, 100 + step)
        elif op < 0.7:
            seq = rnd.randrange(1, count + 1)
            flag = rnd.choice([b"\\Seen", b"\\Flagged", b"\\Deleted"])
            sign = rnd.choice([b"+", b"-"])
            b.cmd(b"STORE %d %sFLAGS (%s)" % (seq, sign, flag))
        elif op < 0.85:
            seq = rnd.randrange(1, count + 1)
            b.cmd(b"STORE %d +FLAGS (\\Deleted)" % seq)
            b.cmd(b"EXPUNGE")
        else:
            # the watching session changes flags itself
            seq = rnd.randrange(1, count + 1)
            model.feed(a.cmd(b"STORE %d %sFLAGS (\\Seen)" % (seq, rnd.choice([b"+", b"-"]))))
        # a FETCH may not announce expunges (only REMOVEFROM), the NOOP does
        if rnd.random() < 0.4:
            model.feed(a.cmd(b"FETCH 1 (FLAGS)"))
        model.feed(a.cmd(b"NOOP"))
        for tag in CONTEXTS:
            assert model.lists[tag] == fresh(a, tag), (step, tag)
    a.close()
    b.close()
    return model.seen


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_sessions_contexts_follow_every_change(imap_server, seed):
    seen = await run(_conversation, imap_server, seed, 40)
    assert any(k == b"ESEARCH" for k, _ in seen)


async def test_removefrom_before_expunge_addto_after_exists(imap_server):
    def go():
        a, b = Raw(imap_server), Raw(imap_server)
        rnd = random.Random(0)
        for i in range(4):
            _append(b, rnd, i)
        b.cmd(b"SELECT INBOX")
        a.cmd(b"SELECT INBOX")
        r = a.cmd(b"SEARCH RETURN (UPDATE) UNDELETED", tag=b"B01")
        assert r[0] == b'* ESEARCH (TAG "B01")\r\n'      # UPDATE alone: no result data
        b.cmd(b"STORE 2 +FLAGS (\\Deleted)")
        b.cmd(b"EXPUNGE")
        # during FETCH no EXPUNGE may be sent, but the context is told at once
        r = a.cmd(b"FETCH 1 (UID)")
        assert b'* ESEARCH (TAG "B01") REMOVEFROM (0 2)\r\n' in r
        assert not any(b"EXPUNGE" in l for l in r)
        r = a.cmd(b"NOOP")
        assert r[0] == b"* 2 EXPUNGE\r\n" and len(r) == 2, r     # no second REMOVEFROM
        # a delivery: EXISTS, then ADDTO with the new sequence number
        _append(b, rnd, 9)
        r = a.cmd(b"NOOP")
        assert r.index(b"* 4 EXISTS\r\n") < r.index(b'* ESEARCH (TAG "B01") ADDTO (0 4)\r\n')
        # an expunge announced by the same refresh: REMOVEFROM first
        b.cmd(b"STORE 1,3 +FLAGS (\\Deleted)")
        r = a.cmd(b"NOOP")
        # a flag change: REMOVEFROM with the FETCH that shows it (4.3.2)
        assert r[-2] == b'* ESEARCH (TAG "B01") REMOVEFROM (0 1,3)\r\n', r
        assert [l[:10] for l in r[:2]] == [b"* 1 FETCH ", b"* 3 FETCH "]
        b.cmd(b"EXPUNGE")
        r = a.cmd(b"NOOP")
        assert [l for l in r if b"EXPUNGE" in l] == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
        a.close()
        b.close()
    await run(go)


async def test_sort_context_positions_on_the_wire(imap_server):
    def go():
        a, b = Raw(imap_server), Raw(imap_server)
        for i, subj in enumerate(["b", "d", "f"]):
            raw = msg(subj, mid=f"<s{i}@t>")
            b.cmd(b"APPEND INBOX {%d+}\r\n" % len(raw) + raw)
        a.cmd(b"SELECT INBOX")
        r = a.cmd(b"UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN", tag=b"S1")
        assert r[0] == b'* ESEARCH (TAG "S1") UID ALL 1:3\r\n'
        for i, subj in enumerate(["e", "a"]):
            raw = msg(subj, mid=f"<t{i}@t>")
            b.cmd(b"APPEND INBOX {%d+}\r\n" % len(raw) + raw)
        r = a.cmd(b"NOOP")
        # a (UID 5) goes first, e (UID 4) between d and f: positions in the final order
        assert b'* ESEARCH (TAG "S1") UID ADDTO (1 5 4 4)\r\n' in r, r
        b.cmd(b"SELECT INBOX")
        b.cmd(b"UID STORE 2,4 +FLAGS (\\Seen)")     # d, e: neighbours at 3 and 4
        r = a.cmd(b"NOOP")
        assert b'* ESEARCH (TAG "S1") UID REMOVEFROM (3 2,4)\r\n' in r, r
        a.close()
        b.close()
    await run(go)


async def test_own_store_idle_cancel_reuse_and_limits(imap_server):
    def go():
        a, b = Raw(imap_server), Raw(imap_server)
        rnd = random.Random(1)
        for i in range(3):
            _append(b, rnd, i)
        b.cmd(b"SELECT INBOX")
        a.cmd(b"SELECT INBOX")
        r = a.cmd(b"UID SEARCH RETURN (UPDATE COUNT) UNSEEN", tag=b"B01")
        assert r[0] == b'* ESEARCH (TAG "B01") UID COUNT 3\r\n'
        # tag reuse with UPDATE: BAD, no effect (RFC 5267 4.3)
        r = a.cmd(b"SORT RETURN (UPDATE) (DATE) UTF-8 FLAGGED", tag=b"B01")
        assert r[-1].startswith(b"B01 BAD")
        # the session's own STORE: the update comes with the STORE's answer
        r = a.cmd(b"STORE 1 +FLAGS (\\Seen)")
        assert b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 1)\r\n' in r
        # IDLE: another session's change arrives while idling
        tag = a.send(b"IDLE")
        assert a.f.readline().startswith(b"+")
        b.cmd(b"STORE 1 -FLAGS (\\Seen)")
        got = []
        while b"ESEARCH" not in (got[-1] if got else b""):
            got.append(a.f.readline())
        assert got[-1] == b'* ESEARCH (TAG "B01") UID ADDTO (0 1)\r\n'
        a.f.write(b"DONE\r\n")
        a.f.flush()
        a.read_until(tag)
        # CANCELUPDATE: no more updates for B01
        assert a.cmd(b'CANCELUPDATE "B01"')[-1].split()[1] == b"OK"
        assert a.cmd(b'CANCELUPDATE "B01"')[-1].split()[1] == b"NO"    # no longer live
        b.cmd(b"STORE 2 +FLAGS (\\Seen)")
        assert not any(b"ESEARCH" in l for l in a.cmd(b"NOOP"))
        # the limit: NO [NOUPDATE], the other return options still answered
        for i in range(IC.MAX_CONTEXTS):
            r = a.cmd(b"SEARCH RETURN (UPDATE COUNT) ALL", tag=b"L%d" % i)
            assert not any(b"NOUPDATE" in l for l in r)
        r = a.cmd(b"SEARCH RETURN (UPDATE COUNT) ALL", tag=b"L99")
        assert r[0] == b'* ESEARCH (TAG "L99") COUNT 3\r\n'
        assert r[1].startswith(b'* NO [NOUPDATE "L99"]') and r[2].startswith(b"L99 OK")
        # a new selection ends all updates (and frees the slots)
        a.cmd(b"SELECT INBOX")
        b.cmd(b"STORE 3 +FLAGS (\\Flagged)")
        _append(b, rnd, 9)
        assert not any(b"ESEARCH" in l for l in a.cmd(b"NOOP"))
        r = a.cmd(b"SEARCH RETURN (UPDATE) ALL", tag=b"L1")
        assert not any(b"NOUPDATE" in l for l in r)
        a.close()
        b.close()
    await run(go)


async def test_noupdate_past_the_uid_budget(imap_server, monkeypatch):
    monkeypatch.setattr(IC, "MAX_TRACKED", 5)

    def go():
        a = Raw(imap_server)
        rnd = random.Random(3)
        for i in range(4):
            _append(a, rnd, i)
        a.cmd(b"SELECT INBOX")
        r = a.cmd(b"UID SEARCH RETURN (UPDATE) ALL", tag=b"U1")     # holds 4 UIDs
        assert not any(b"NOUPDATE" in l for l in r)
        r = a.cmd(b"UID SEARCH RETURN (UPDATE COUNT) ALL", tag=b"U2")   # 4 more: over 5
        assert r[:2] == [b'* ESEARCH (TAG "U2") UID COUNT 4\r\n',
                         b'* NO [NOUPDATE "U2"] too many contexts, no updates\r\n']
        r = a.cmd(b"UID SEARCH RETURN (UPDATE) 1", tag=b"U3")           # 1 more: fits
        assert not any(b"NOUPDATE" in l for l in r)
        a.close()
    await run(go)


async def test_partial_on_the_wire(imap_server):
    def go():
        a = Raw(imap_server)
        rnd = random.Random(2)
        for i in range(6):
            _append(a, rnd, i)
        a.cmd(b"SELECT INBOX")
        a.cmd(b"STORE 1,3 +FLAGS (\\Seen)")
        r = a.cmd(b"UID SEARCH RETURN (PARTIAL 2:3 COUNT) UNSEEN", tag=b"P1")
        assert r[0] == b'* ESEARCH (TAG "P1") UID COUNT 4 PARTIAL (2:3 4:5)\r\n'
        r = a.cmd(b"SEARCH RETURN (PARTIAL -1:-3) ALL", tag=b"P2")
        assert r[0] == b'* ESEARCH (TAG "P2") PARTIAL (-1:-3 4:6)\r\n'
        r = a.cmd(b"SEARCH RETURN (PARTIAL 7:9) ALL", tag=b"P3")
        assert r[0] == b'* ESEARCH (TAG "P3") PARTIAL (7:9 NIL)\r\n'
        full = a.cmd(b"UID SORT (REVERSE SIZE) UTF-8 ALL")[0].split()[2:]
        r = a.cmd(b"UID SORT RETURN (PARTIAL 2:3) (REVERSE SIZE) UTF-8 ALL", tag=b"P4")
        assert esearch(r[0])[2] == [("PARTIAL", (b"2:3", [int(x) for x in full[1:3]]))]
        # SAVE with PARTIAL saves the returned messages (RFC 9394 3.2)
        a.cmd(b"UID SEARCH RETURN (SAVE PARTIAL 2:2 MIN) UNSEEN")
        r = a.cmd(b"UID SEARCH UID $")
        assert r[0] == b"* SEARCH 2 4\r\n"
        assert a.cmd(b"SEARCH RETURN (ALL PARTIAL 1:2) ALL")[-1].split()[1] == b"BAD"
        a.close()
    await run(go)


async def test_capabilities(imap_server):
    def go():
        a = Raw(imap_server)
        caps = a.cmd(b"CAPABILITY")[0].split()
        assert {b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"ESORT", b"SORT", b"ESEARCH"} <= set(caps)
        a.close()
    await run(go)


async def test_imapclient_search_return_and_updates(imap_server):
    def go():
        c = IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30)
        c.login("alice", "pw")
        for i in range(5):
            c.append("INBOX", msg(f"m{i}"))
        c.select_folder("INBOX")
        c.add_flags([1], [b"\\Flagged"])
        data = c._raw_command_untagged(
            b"SEARCH", [b"RETURN", b"(UPDATE", b"COUNT", b"PARTIAL", b"1:2)", b"UNFLAGGED"],
            response_name=b"ESEARCH")
        assert data and b"COUNT 4" in data[0] and b"PARTIAL (1:2 2:3)" in data[0], data
        other = IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False, timeout=30)
        other.login("alice", "pw")
        other.select_folder("INBOX")
        other.add_flags([2], [b"\\Flagged"])
        got = c.noop()[1]
        assert any(isinstance(x, tuple) and b"ESEARCH" in x and b"REMOVEFROM" in x
                   for x in got), got
        c.idle()
        other.append("INBOX", msg("late"))
        seen = []
        for _ in range(5):
            seen += c.idle_check(timeout=5)
            if any(b"ADDTO" in x for x in seen if isinstance(x, tuple)):
                break
        c.idle_done()
        assert any(isinstance(x, tuple) and b"ADDTO" in x for x in seen), seen
        c.logout()
        other.logout()
    await run(go)


async def test_an_update_cut_off_by_cancellation_comes_next_time(imap_server):
    """IDLE ends (its task is cancelled) before an evaluation is applied: the
    next refresh finds the same change again."""
    import trio

    from mailaccess.server.imap_search import to_query
    from mailaccess.views.imap_selected import SelectedMailbox, Snapshot

    def setup():
        a = Raw(imap_server)
        rnd = random.Random(4)
        for i in range(3):
            _append(a, rnd, i)
        return a
    a = await run(setup)
    store = imap_server.store
    with store.view() as v:
        acc = v.account_by_name("alice").id
        m = v.mailbox_by_path(acc, ["INBOX"])
        sel = SelectedMailbox(acc, m.id, m.uidvalidity, False,
                              Snapshot.from_pairs(v.uids(acc, m.id), m.highest_ms), m.uidnext)
    key = parse(b"t SEARCH UNSEEN\r\n").key
    ctxs = IC.Contexts()
    assert ctxs.add(sel, b"B01", True, to_query(key, sel, acc), None, [1, 2, 3], sel.known_ms)
    await run(lambda: a.cmd(b"SELECT INBOX") and a.cmd(b"STORE 2 +FLAGS (\\Seen)"))
    with store.view() as v:
        sel.known_ms = v.mailbox(acc, m.id).highest_ms     # what the refresh would do

    # cancelled before the evaluation could be applied: nothing is lost
    with trio.CancelScope() as scope:
        scope.cancel()
        await ctxs.after_refresh(store, sel)
    assert scope.cancelled_caught
    assert await ctxs.after_refresh(store, sel) == b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 2)\r\n'
    assert await ctxs.after_refresh(store, sel) == b""
    a.close()
