"""SORT keys (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO, JMAP sort) over a real store."""
import pytest
from hypothesis import given, settings, strategies as st

from mailaccess import ingest
from mailaccess.query import sort as qsort
from mailaccess.query.sort import SortKey
from mailaccess.store import Store, ops


def msg(frm="", to="", cc="", subject="", date=None, body="x", pad=0):
    h = []
    if frm:
        h.append(f"From: {frm}")
    if to:
        h.append(f"To: {to}")
    if cc:
        h.append(f"Cc: {cc}")
    if subject:
        h.append(f"Subject: {subject}")
    if date:
        h.append(f"Date: {date}")
    return ("\r\n".join(h) + "\r\n\r\n" + body + "y" * pad + "\r\n").encode()


# (raw, received_at, keywords); sequence numbers 1..6
MSGS = [
    (msg("Zed <b@z.org>", "carol@c.org", "", "Re: beta", "Mon, 3 Nov 2025 10:00:00 +0000", pad=50),
     300, ["$flagged"]),
    (msg("alice@a.org", '"Bob" <zz@b.org>', "x@y", "alpha", "Mon, 3 Nov 2025 09:00:00 -0200",
         pad=10), 100, []),
    (msg("Alice Q <A@q.org>", "bob@b.org", "", "[list] Fwd: Beta", None, pad=30), 200, ["$seen"]),
    (msg("", "", "", "", "Mon, 3 Nov 2025 12:00:00 +0000", pad=10), 100, []),
    (msg('"=?utf-8?q?=C3=89mile?=" <e@e.org>', "Ann <ann@a.org>", "", "Gamma",
         "Mon, 3 Nov 2025 10:00:00 +0000", pad=20), 400, ["$flagged"]),
    (msg("  <c@c.org>", "yy@b.org", "", "alpha (fwd)", "garbage", pad=0), 50, []),
]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("s") / "data")
    store.start()
    acc = store.write_sync(ops.create_account, "a", "h")
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    for raw, when, kws in MSGS:
        store.write_sync(ops.append, acc, [inbox], ingest.prepare(raw, when), kws)
    yield store, acc, inbox
    store.close()


def run(box, *keys, cands=None):
    store, acc, inbox = box
    with store.view() as v:
        cands = cands or v.uids(acc, inbox)
        return qsort.sort(v, acc, cands, list(keys))


def test_arrival_and_ties(box):
    # 2 and 4 arrived at the same second: sequence order breaks the tie
    assert run(box, SortKey("arrival")) == [6, 2, 4, 3, 1, 5]
    assert run(box, SortKey("receivedAt")) == [6, 2, 4, 3, 1, 5]
    # REVERSE reverses the key, not the implicit sequence-number tie-break
    assert run(box, SortKey("arrival", True)) == [5, 1, 3, 2, 4, 6]


def test_date_uses_utc_and_falls_back_to_internal_date(box):
    # 2 is 11:00Z; 3 has no Date (internal date 200), 6 an unparsable one (50)
    assert run(box, SortKey("date")) == [6, 3, 1, 5, 2, 4]
    assert run(box, SortKey("sentAt", True)) == [4, 2, 1, 5, 3, 6]


def test_size(box):
    sizes = [len(r) for r, _, _ in MSGS]
    expect = [i + 1 for i in sorted(range(6), key=lambda i: (sizes[i], i))]
    assert run(box, SortKey("size")) == expect


def test_address_keys_use_addr_mailbox(box):
    # FROM: local parts "b", "alice", "A"->"a", "" (absent first), "e", "c"
    assert run(box, SortKey("from")) == [4, 3, 2, 1, 6, 5]
    # TO: carol, zz, bob, "", ann, yy
    assert run(box, SortKey("to")) == [4, 5, 3, 1, 6, 2]
    # CC: only 2 has one; the rest tie on "" and stay in sequence order
    assert run(box, SortKey("cc")) == [1, 3, 4, 5, 6, 2]
    assert run(box, SortKey("cc", True)) == [2, 1, 3, 4, 5, 6]


def test_display_keys_rfc5957(box):
    # display names: Zed, (none: alice@a.org), Alice Q, "", Émile, (blank: c@c.org)
    # ("alice q" < "alice@a.org": space collates before "@")
    assert run(box, SortKey("displayfrom")) == [4, 3, 2, 6, 5, 1]
    # to: carol@c.org, Bob, bob@b.org, "", Ann, yy@b.org
    assert run(box, SortKey("displayto")) == [4, 5, 2, 3, 1, 6]


def test_subject_is_base_subject(box):
    # base subjects: beta, alpha, Beta, "", Gamma, alpha
    assert run(box, SortKey("subject")) == [4, 2, 6, 1, 3, 5]
    assert run(box, SortKey("subject"), SortKey("date")) == [4, 6, 2, 3, 1, 5]
    assert run(box, SortKey("subject"), SortKey("date", True)) == [4, 2, 6, 1, 3, 5]
    assert run(box, SortKey("subject", True), SortKey("arrival")) == [5, 3, 1, 6, 2, 4]


def test_keyword_and_id_keys(box):
    # false before true; ties in candidate order
    assert run(box, SortKey("hasKeyword:$flagged")) == [2, 3, 4, 6, 1, 5]
    assert run(box, SortKey("hasKeyword:$FLAGGED", True)) == [1, 5, 2, 3, 4, 6]
    assert run(box, SortKey("someInThreadHaveKeyword:$seen"), SortKey("arrival")) == \
        [6, 2, 4, 1, 5, 3]
    store, acc, inbox = box
    with store.view() as v:
        cands = list(reversed(v.uids(acc, inbox)))
        ids = sorted(e for _, e in cands)
        assert qsort.sort(v, acc, [(e, e) for _, e in cands], [SortKey("id")]) == ids


def test_no_keys_keeps_order(box):
    assert run(box) == [1, 2, 3, 4, 5, 6]


def test_bad_key():
    with pytest.raises(ValueError):
        SortKey("colour")
    with pytest.raises(ValueError):
        SortKey("hasKeyword:")


def test_helpers():
    assert qsort.addr_mailbox([("X", "Local@Host")]) == "Local"
    assert qsort.addr_mailbox([]) == ""
    assert qsort.display_value([(None, "a@b")]) == "a@b"
    assert qsort.display_value([("  ", "a@b")]) == "a@b"
    assert qsort.display_value([(" Bo ", "a@b")]) == "Bo"
    assert qsort.collate("ÉMILE") == qsort.collate("émile")


def test_group_address_sorts_by_group_name():
    """RFC 5256: the first address's addr-mailbox; for a group that is the
    group name (as Dovecot sorts it)."""
    from mailaccess.mime.index import index_message
    from mailaccess.query.sort import first_group_name
    mi = index_message(b"From: z@z.z\r\nTo: undisclosed-recipients:;\r\n"
                       b"Cc: Team: anna@x.org, bob@y.org;\r\nSubject: s\r\n\r\nx")
    assert first_group_name(mi.envelope, 5) == "undisclosed-recipients"
    assert first_group_name(mi.envelope, 6) == "Team"
    plain = index_message(b"From: z@z.z\r\nTo: A <a@b.c>\r\n\r\nx")
    assert first_group_name(plain.envelope, 5) is None
    assert first_group_name(b"garbage(", 5) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8),
                          st.text(alphabet="ab\0 [_^z\u00e9\u00df", max_size=6)), max_size=12),
       st.sampled_from(["i;ascii-casemap", "i;unicode-casemap"]))
def test_collated_all_at_once_is_each_one(strings, name):
    # _collated's all-at-once path (joined, upper-cased, split) equals the
    # collation of each string, also when a string holds the joining NUL
    coll = qsort.COLLATIONS[name]
    assert qsort._collated(strings, coll) == [coll(s) for s in strings]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["", "a", "B", "b"])),
                max_size=30),
       st.lists(st.tuples(st.sampled_from([0, 1]), st.booleans()), min_size=1, max_size=3))
def test_sort_rows_orders_key_by_key_ties_in_candidate_order(vals, spec):
    # RFC 5256 section 3: each key compared in turn, each reversed on its own;
    # candidates equal on every key stay in candidate order (also reversed)
    import functools
    keys = [SortKey("arrival", rev) for _col, rev in spec]
    rows = [(k, tuple(v[col] for col, _rev in spec)) for k, v in enumerate(vals)]

    def cmp(a, b):
        for i, (_col, rev) in enumerate(spec):
            x, y = a[1][i], b[1][i]
            if x != y:
                return (1 if x > y else -1) * (-1 if rev else 1)
        return a[0] - b[0]

    saved = qsort.values
    qsort.values = lambda view, acc, cands, ks: list(rows)
    try:
        got = qsort.sort_rows(None, 0, [], keys)
    finally:
        qsort.values = saved
    assert got == sorted(rows, key=functools.cmp_to_key(cmp))
