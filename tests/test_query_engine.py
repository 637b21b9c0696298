"""The query engine over a small real store: every node, combinations, text
matching rules (RFC 3501/9051 6.4.4 substring, case-insensitive), dates at
day boundaries, modseq, save dates."""
import time

import pytest

from mailaccess import _speedups, ingest
from mailaccess.query import engine
from mailaccess.query import model as q
from mailaccess.store import Store, ops

from conftest import twin_params

MIDNIGHT = 1762128000  # 2025-11-03T00:00:00Z

M1 = (b'From: "=?utf-8?q?=C3=89ric?= Dupont" <eric@example.org>\r\n'
      b"To: Alice <alice@localhost>\r\n"
      b"Subject: Quarterly report\r\n"
      b"Date: Mon, 3 Nov 2025 10:00:00 +0000\r\n"
      b"Message-ID: <m1@example.org>\r\n"
      b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
      b"The \xc3\x89T\xc3\x89 numbers are in.\r\n")
M2 = (b"From: bob@example.com\r\n"
      b"To: alice@localhost\r\n"
      b"Cc: Carol <carol@x.org>\r\n"
      b"Subject: Re: Quarterly report\r\n"
      b"Date: Sun, 2 Nov 2025 23:59:59 +0000\r\n"
      b"Message-ID: <m2@example.com>\r\n"
      b"In-Reply-To: <m1@example.org>\r\n\r\n"
      b"Thanks, ZANZIBAR   is\r\n   fine.\r\n")
M3 = (b"From: dave@example.net\r\n"
      b"To: alice@localhost\r\n"
      b"Subject: Lunch\r\n"
      b"X-Custom: Hello World\r\n"
      b"Message-ID: <m3@example.net>\r\n"
      b"MIME-Version: 1.0\r\n"
      b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
      b"--b\r\nContent-Type: text/plain\r\n\r\nPizza at noon?\r\n"
      b"--b\r\nContent-Type: application/pdf\r\n"
      b'Content-Disposition: attachment; filename="menu.pdf"\r\n'
      b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n")


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("q") / "data")
    store.start()
    acc = store.write_sync(ops.create_account, "a", "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
        archive = v.mailbox_by_role(acc, "archive").id
    t0 = int(time.time())
    r1 = store.write_sync(ops.append, acc, [inbox], ingest.prepare(M1, MIDNIGHT), ["$seen"])
    r2 = store.write_sync(ops.append, acc, [inbox], ingest.prepare(M2, MIDNIGHT - 1),
                          ["$flagged", "Work"])
    r3 = store.write_sync(ops.append, acc, [inbox, archive],
                          ingest.prepare(M3, MIDNIGHT + 86400))
    # a later change to m1: its modseq moves past m2's and m3's
    store.write_sync(ops.set_keywords, acc, [r1.email], add=["$answered"])
    t1 = int(time.time())
    yield store, acc, inbox, archive, (r1.email, r2.email, r3.email), (t0, t1)
    store.close()


@pytest.fixture(params=twin_params("search"))
def impl(request):
    return request.param


def run(box, query, impl=None, mailbox="inbox"):
    store, acc, inbox, archive, _eids, _t = box
    mbx = {"inbox": inbox, "archive": archive}[mailbox]
    with store.view() as v:
        cands = v.uids(acc, mbx)
        return engine.search(v, acc, cands, query, mailbox=mbx, impl=impl)


def test_all_and_nothing(box):
    assert run(box, q.All()) == [1, 2, 3]
    assert run(box, q.NOTHING) == []
    assert run(box, q.And([])) == [1, 2, 3]


def test_keywords(box):
    assert run(box, q.Keyword("$seen")) == [1]
    assert run(box, q.Keyword("$SEEN")) == [1]
    assert run(box, q.Not(q.Keyword("$seen"))) == [2, 3]
    assert run(box, q.Keyword("work")) == [2]
    assert run(box, q.Keyword("$answered")) == [1]


def test_uids_emailids_threads(box):
    _s, _a, _i, _ar, (e1, e2, e3), _t = box
    assert run(box, q.Uids([(2, 3)])) == [2, 3]
    assert run(box, q.Uids.of([3, 1])) == [1, 3]
    assert run(box, q.Uids([(4, 10)])) == []
    assert run(box, q.EmailIds({e3})) == [3]
    store, acc = box[0], box[1]
    with store.view() as v:
        t1 = v.email(acc, e1).thread
        t2 = v.email(acc, e2).thread
    assert t1 == t2  # the reply joined m1's thread
    assert run(box, q.ThreadIds({t1})) == [1, 2]


def test_mailboxes(box):
    _s, _a, inbox, archive, _e, _t = box
    assert run(box, q.InMailbox(archive)) == [3]
    assert run(box, q.InMailboxOtherThan({inbox})) == [3]
    assert run(box, q.InMailboxOtherThan({inbox, archive})) == []
    assert run(box, q.All(), mailbox="archive") == [1]


def test_sizes(box):
    store, acc, _i, _ar, (e1, e2, e3), _t = box
    with store.view() as v:
        s1 = v.email(acc, e1).size
    assert s1 == len(M1)
    assert run(box, q.Larger(len(M1))) == sorted(
        i for i, m in ((1, M1), (2, M2), (3, M3)) if len(m) > len(M1))
    assert 1 not in run(box, q.Larger(s1)) and 1 in run(box, q.Larger(s1 - 1))
    assert 1 not in run(box, q.Smaller(s1)) and 1 in run(box, q.Smaller(s1 + 1))


def test_received_day_boundaries(box):
    day = 86400
    # IMAP ON 3-Nov-2025 = [midnight, midnight + 1 day)
    assert run(box, q.Received(MIDNIGHT, MIDNIGHT + day)) == [1]
    # BEFORE 3-Nov-2025: strictly earlier than midnight
    assert run(box, q.Received(before=MIDNIGHT)) == [2]
    # SINCE 3-Nov-2025: midnight itself is included
    assert run(box, q.Received(after=MIDNIGHT)) == [1, 3]
    assert run(box, q.Received(after=MIDNIGHT + day)) == [3]


def test_sent_dates(box):
    assert run(box, q.Sent(MIDNIGHT, MIDNIGHT + 86400)) == [1]
    assert run(box, q.Sent(before=MIDNIGHT)) == [2]
    # m3 has no Date: header: no sent-date condition matches it
    assert run(box, q.Sent(after=0)) == [1, 2]
    assert run(box, q.Not(q.Sent(after=0))) == [3]


def test_saved(box):
    t0, t1 = box[5]
    assert run(box, q.Saved(t0, t1 + 1)) == [1, 2, 3]
    assert run(box, q.Saved(before=t0)) == []
    assert run(box, q.Saved(after=t1 + 1)) == []


def test_modseq(box):
    store, acc, _i, _ar, (e1, e2, e3), _t = box
    with store.view() as v:
        ms = {e: v.email(acc, e).last_ms for e in (e1, e2, e3)}
    assert ms[e1] > ms[e3] > ms[e2]
    assert run(box, q.ModSeqAtLeast(ms[e3])) == [1, 3]
    assert run(box, q.ModSeqAtLeast(ms[e1])) == [1]
    assert run(box, q.ModSeqAtLeast(ms[e1] + 1)) == []


def test_has_attachment(box):
    assert run(box, q.HasAttachment(True)) == [3]
    assert run(box, q.HasAttachment(False)) == [1, 2]


def test_text_body_case_and_non_ascii(box, impl):
    assert run(box, q.Body("zanzibar"), impl) == [2]
    assert run(box, q.Body("ZanZiBar"), impl) == [2]
    # white space runs collapse on both sides
    assert run(box, q.Body("zanzibar is fine"), impl) == [2]
    assert run(box, q.Body("ZANZIBAR  IS\tFINE"), impl) == [2]
    # É and é match each other (casefold), in body and in decoded headers
    assert run(box, q.Body("été"), impl) == [1]
    assert run(box, q.Body("ÉTÉ NUMBERS"), impl) == [1]
    assert run(box, q.From("éric"), impl) == [1]
    assert run(box, q.From("ÉRIC dupont"), impl) == [1]
    # BODY does not look in headers; TEXT looks in both
    assert run(box, q.Body("quarterly"), impl) == []
    assert run(box, q.Text("quarterly"), impl) == [1, 2]
    assert run(box, q.Text("pizza"), impl) == [3]
    assert run(box, q.Text("menu.pdf"), impl) == [3]
    assert run(box, q.Text("not anywhere at all"), impl) == []
    assert run(box, q.Text(""), impl) == [1, 2, 3]


def test_headers(box, impl):
    assert run(box, q.Subject("report"), impl) == [1, 2]
    assert run(box, q.Subject("re: quarterly"), impl) == [2]
    assert run(box, q.Cc("carol"), impl) == [2]
    assert run(box, q.Cc(""), impl) == [2]          # empty string: header present
    assert run(box, q.To("ALICE@LOCALHOST"), impl) == [1, 2, 3]
    assert run(box, q.Header("X-Custom", "hello w"), impl) == [3]
    assert run(box, q.Header("x-custom", ""), impl) == [3]
    assert run(box, q.Header("X-Missing", ""), impl) == []
    # the value only: the field name is not part of the searched text
    assert run(box, q.Header("subject", "subject"), impl) == []
    assert run(box, q.Bcc("alice"), impl) == []
    # a string in another header does not match this one
    assert run(box, q.From("carol"), impl) == []


def test_and_or_not(box, impl):
    assert run(box, q.And([q.Keyword("$flagged"), q.Body("zanzibar")]), impl) == [2]
    assert run(box, q.And([q.Keyword("$seen"), q.Body("zanzibar")]), impl) == []
    assert run(box, q.Or([q.Keyword("$seen"), q.Body("pizza")]), impl) == [1, 3]
    assert run(box, q.Or([q.Body("pizza"), q.Keyword("$seen"), q.Uids.of([3])]), impl) == [1, 3]
    assert run(box, q.Not(q.Or([q.Keyword("$seen"), q.Body("pizza")])), impl) == [2]
    assert run(box, q.Not(q.Not(q.Keyword("$seen"))), impl) == [1]
    nested = q.And([q.Or([q.Subject("lunch"), q.Subject("report")]),
                    q.Not(q.Keyword("$seen")), q.And([q.Larger(10)])])
    assert run(box, nested, impl) == [2, 3]


def test_thread_keywords(box):
    assert run(box, q.ThreadKeyword("$seen", "some")) == [1, 2]
    assert run(box, q.ThreadKeyword("$seen", "all")) == []
    assert run(box, q.ThreadKeyword("$seen", "none")) == [3]


def test_candidate_order_and_jmap_keys(box):
    store, acc, _i, _ar, (e1, e2, e3), _t = box
    with store.view() as v:
        cands = [(e3, e3), (e1, e1), (e2, e2)]  # JMAP: key = email id, any order
        assert engine.search(v, acc, cands, q.Text("report")) == [e1, e2]
        assert engine.search(v, acc, cands, q.All()) == [e3, e1, e2]


def test_chunking(box, monkeypatch):
    monkeypatch.setattr(engine, "CHUNK", 1)
    assert run(box, q.Or([q.Keyword("$seen"), q.Body("pizza")])) == [1, 3]
    # record-only plans take chunks of RECORD_CHUNK
    monkeypatch.setattr(engine, "RECORD_CHUNK", 2)
    assert run(box, q.Not(q.Keyword("$seen"))) == [2, 3]
    assert run(box, q.Or([q.Keyword("$seen"), q.Keyword("work")])) == [1, 2]


def test_model_validation():
    with pytest.raises(TypeError):
        q.And([1])
    with pytest.raises(ValueError):
        q.Header("bad:name", "x")
    with pytest.raises(TypeError):
        q.Larger("10")
    with pytest.raises(ValueError):
        q.ThreadKeyword("$seen", "most")
    u = q.Uids([(5, 7), (1, 2), (3, 3), (9, 9)])
    assert u.ranges == ((1, 3), (5, 7), (9, 9))
    assert 3 in u and 4 not in u and 9 in u and 10 not in u
    assert q.Keyword("$Seen") == q.Keyword("$seen")
    assert q.Received(1, 2) != q.Sent(1, 2)


def test_implementation_loaded_is_used():
    assert engine._impl is _speedups.load("search")


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.integers(1, 60), unique=True, max_size=30).map(sorted),
       ranges=st.lists(st.tuples(st.integers(0, 70), st.integers(0, 70)), max_size=5),
       drop=st.sets(st.integers(0, 29)))
def test_uids_by_bisection_is_membership(keys, ranges, drop):
    """Ascending keys (IMAP UIDs): the bisection gives the positions whose
    key is in the Uids set, in order."""
    u = q.Uids(ranges)
    pos = [p for p in range(len(keys)) if p not in drop]
    assert engine._in_ranges(keys, pos, u.ranges) == [p for p in pos if keys[p] in u]


def test_search_columns_ascending(box):
    store, acc, inbox, _archive, _eids, _t = box
    with store.view() as v:
        cands = v.uids(acc, inbox)
        ks, es = [k for k, _ in cands], [e for _, e in cands]
        for query in (q.Uids([(2, 3)]), q.Not(q.Uids.of([2])), q.Uids(()),
                      q.And([q.Uids([(1, 2)]), q.Not(q.Keyword("$seen"))])):
            assert engine.search_columns(v, acc, ks, es, query, mailbox=inbox,
                                         ascending=True) == \
                engine.search(v, acc, cands, query, mailbox=inbox)
