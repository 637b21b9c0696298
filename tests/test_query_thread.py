"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256) and the THREAD
response syntax (RFC 5256 section 4)."""
import pytest
from hypothesis import given, settings, strategies as st

from mailaccess import ingest
from mailaccess.mime import index as mindex
from mailaccess.proto.imap.serialize import thread as thread_response
from mailaccess.query.thread import (Thread, is_reply_or_forward,
                                     normalize_msgid, thread_orderedsubject, thread_references)
from mailaccess.store import Store, ops
from mailaccess.store.records import EmailRecord, encode_email


def format_thread(threads) -> bytes:
    """The THREAD response data, as the session sends it (serialize.thread)."""
    return thread_response(threads).removeprefix(b"* THREAD").strip()


def msg(subject, hour, mid=None, refs=None, irt=None):
    h = [f"Subject: {subject}", f"Date: Mon, 3 Nov 2025 {hour} +0000"]
    if mid:
        h.append(f"Message-ID: {mid}")
    if refs:
        h.append(f"References: {refs}")
    if irt:
        h.append(f"In-Reply-To: {irt}")
    return ("\r\n".join(h) + "\r\n\r\nbody\r\n").encode()


MSGS = [
    msg("Hello", "10:00", "<a@x>"),                               # 1
    msg("Re: Hello", "11:00", "<b@x>", "<a@x>"),                  # 2
    msg("Re: Hello", "12:00", "<c@x>", "<a@x> <b@x>"),            # 3
    msg("Re: Hello", "10:30", "<d@x>", "<a@x>"),                  # 4
    msg("Other", "09:00", "<e@x>", irt="<missing@x>"),            # 5: dummy parent, pruned
    msg("Split", "13:00", "<f@x>", "<missing2@x>"),               # 6: \ siblings under
    msg("Split", "14:00", "<g@x>", "<missing2@x>"),               # 7: / a dummy root
    msg("Hello", "08:00"),                                        # 8: no Message-ID
    msg("Re: Other", "15:00", "<h@x>"),                           # 9: reply by subject only
    msg("Quote", "16:00", '<"q"@x>'),                             # 10: quoted local part
    msg("Re: Quote", "17:00", "<i@x>", "<q@x>"),                  # 11
    msg("Loop", "18:00", "<l1@x>", "<l2@x>"),                     # 12: \ references
    msg("Loop", "19:00", "<l2@x>", "<l1@x>"),                     # 13: / in a loop
    msg("Dup", "20:00", "<a@x>"),                                 # 14: duplicate Message-ID
]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("t") / "data")
    store.start()
    acc = store.write_sync(ops.create_account, "a", "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    for i, raw in enumerate(MSGS):
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, 1000 + i))
    yield store, acc, inbox
    store.close()


def run(box, fn, keep=None):
    store, acc, inbox = box
    with store.view() as v:
        cands = v.uids(acc, inbox)
        if keep is not None:
            cands = [c for c in cands if c[0] in keep]
        return format_thread(fn(v, acc, cands))


def test_references(box):
    assert run(box, thread_references) == (
        b"((8)(1 (4)(2 3)))(5 9)((6)(7))(10 11)(13 12)(14)")


def test_references_subset_makes_dummies(box):
    # without 1, 2 and 4 hang from a dummy <a@x>; 3 stays under 2
    assert run(box, thread_references, keep={2, 3, 4}) == b"((4)(2 3))"
    # without 2, 3's References still name 1 as its grandparent: 1 -> dummy -> 3
    assert run(box, thread_references, keep={1, 3}) == b"(1 3)"


def test_orderedsubject(box):
    assert run(box, thread_orderedsubject) == (
        b"(8 (1)(4)(2)(3))(5 9)(6 7)(10 11)(12 13)(14)")
    assert run(box, thread_orderedsubject, keep=set()) == b""


def test_format_rfc5256_examples():
    t = [Thread(2), Thread(3, (Thread(6, (Thread(4, (Thread(23),)),
                                          Thread(44, (Thread(7, (Thread(96),)),)))),))]
    assert format_thread(t) == b"(2)(3 6 (4 23)(44 7 96))"
    assert format_thread([Thread(None, (Thread(3), Thread(5)))]) == b"((3)(5))"
    assert format_thread([]) == b""
    assert format_thread([Thread(174, tuple(Thread(k) for k in (175, 176, 178)))]) == \
        b"(174 (175)(176)(178))"


def test_helpers():
    assert normalize_msgid('<"01KF8JCEOCBS0045PS"@xxx.yyy.com>') == \
        normalize_msgid("<01KF8JCEOCBS0045PS@xxx.yyy.com>")
    assert normalize_msgid("<A@x>") != normalize_msgid("<a@x>")  # case-sensitive
    assert is_reply_or_forward("Re: x")
    assert is_reply_or_forward("[list] FWD: x")
    assert is_reply_or_forward("x (fwd)")
    assert is_reply_or_forward("[fwd: x]")
    assert not is_reply_or_forward("Regarding: x")
    assert not is_reply_or_forward("[list] x")


class _FakeView:
    """Just enough of store.View for the threading code, without a store."""

    def __init__(self, raws):
        self.store = self        # whose facts cache (query/facts.py) this is
        self.recs = {}
        self.idx = {}
        for i, raw in enumerate(raws, 1):
            h = i.to_bytes(32, "big")
            self.recs[i] = EmailRecord(i, h, i, 0, len(raw), 0, 0, [], [])
            self.idx[h] = mindex.encode_index(mindex.index_message(raw))

    def email(self, acc, eid):
        return self.recs.get(eid)

    def email_raw(self, acc, eid):
        r = self.recs.get(eid)
        return encode_email(r) if r is not None else None

    def blob_index(self, acc, h):
        return self.idx.get(h)

    def facts_reader(self, acc):             # (no msg.facts records: the index is read)
        return None

    def email_reader(self, acc):             # (query/facts.py reads many at once)
        return lambda eid: self.email_raw(acc, eid)

    def index_reader(self, acc):
        return self.idx.get

    def index_generation(self, acc):
        return 0


def test_deep_chain_has_no_recursion_limit():
    n = 2500
    raws = [msg("Chain", "10:00", f"<m{i}@x>", f"<m{i - 1}@x>" if i else None)
            for i in range(n)]
    v = _FakeView(raws)
    cands = [(i, i) for i in range(1, n + 1)]
    out = format_thread(thread_references(v, 0, cands))
    assert out == ("(" + " ".join(map(str, range(1, n + 1))) + ")").encode()
    # a deep chain where every message also has a sibling: deep nesting
    t = Thread(None)
    for k in range(2999, 0, -2):
        t = Thread(k, (Thread(k + 1), t)) if t.key is not None else Thread(k, (Thread(k + 1),))
    assert format_thread([t]).startswith(b"(1 (2)(3 (4)(5 ")


def _orderedsubject_oracle(msgs):
    """ORDEREDSUBJECT as it was written over thread_oracle.Msg objects."""
    msgs = sorted(msgs, key=lambda x: (x.base, x.date, x.seq))
    groups = []
    for x in msgs:
        if groups and groups[-1][0].base == x.base:
            groups[-1].append(x)
        else:
            groups.append([x])
    groups.sort(key=lambda g: (g[0].date, g[0].seq))
    return [Thread(g[0].key, tuple(Thread(x.key) for x in g[1:])) for g in groups]



@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "Re: a", "b", "B", "[x] b", "", "Fwd: a"]),
                          st.sampled_from(["10:00", "11:00", "12:00"]),
                          st.booleans()), max_size=12))
def test_orderedsubject_answers_as_it_was_written(spec):
    # a message without a Date: sorts by its internal date (its record's)
    raws = [msg(s, h).replace(b"Date: Mon, 3 Nov 2025 " + h.encode() + b" +0000\r\n", b"")
            if nodate else msg(s, h) for s, h, nodate in spec]
    v = _FakeView(raws)
    cands = [(100 + i, i) for i in range(1, len(raws) + 1)]
    import thread_oracle
    from mailaccess.query import thread
    assert thread.thread_orderedsubject(v, 0, cands) == \
        _orderedsubject_oracle(thread_oracle.messages(v, 0, cands))
