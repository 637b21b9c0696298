"""ActiveSync Search (server/eas_search.py) against ``serve``: the Mailbox
store through the shared query engine.  FreeText, date ranges, one / several
/ all folders (DeepTraversal), Range paging and Total; the ids found match an
IMAP SEARCH over the same folders; the refusals (too complex, unknown
folder, bad range, GAL, DocumentLibrary) in 12.1, 14.1 and 16.1;
pyactivesync's date search."""
import datetime as dt
import imaplib
import re

import httpx
from hypothesis import given
from hypothesis import strategies as st
import pytest
import trio
from pyactivesync import Client

from conftest import make_config, port_of
from eas_helpers import base, post, provision, srv  # noqa: F401 (srv: a fixture)
from imap_helpers import run
from mailaccess import accounts, ids, ingest
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.server import eas_search
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"
T0 = 1_700_000_000
WORDS = ["apple", "banana", "cherry", "damson", "elder"]


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


def iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def populate(store):
    """40 emails: INBOX 0-19, Archive 20-29, Archive/Deep 30-39; email i is
    received at T0 + i*3600, its subject names WORDS[i % 5] and its body
    WORDS[(i + 1) % 5]."""
    acc = accounts.lookup(store, "alice").id
    with store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
        archive = v.mailbox_by_role(acc, "archive").id
    deep = store.write_sync(ops.create_mailbox, acc, archive, "Deep")
    eids = []
    for i in range(40):
        box = inbox if i < 20 else archive if i < 30 else deep
        raw = (f"From: Sender {i} <s{i}@example.org>\r\nTo: alice@example.org\r\n"
               f"Subject: note {i} about {WORDS[i % 5]}\r\nMessage-ID: <m{i}@x>\r\n\r\n"
               f"the body says {WORDS[(i + 1) % 5]} number{i}\r\n").encode()
        eids.append(store.write_sync(ops.append, acc, [box], ingest.prepare(raw, T0 + i * 3600),
                                     []).email)
    return acc, {"inbox": inbox, "archive": archive, "deep": deep}, eids


def search_body(*conds, folders=(), rng=None, deep=False, cls="Email", name="Mailbox",
                extra_options=()):
    q = [E("AirSync:Class", text=cls)] if cls else []
    q += [E("AirSync:CollectionId", text=f) for f in folders]
    q += list(conds)
    opts = []
    if rng:
        opts.append(E("Search:Range", text=rng))
    if deep:
        opts.append(E("Search:DeepTraversal"))
    opts += list(extra_options)
    store = [E("Search:Name", text=name), E("Search:Query", E("Search:And", *q))]
    if opts:
        store.append(E("Search:Options", *opts))
    return encode(E("Search:Search", E("Search:Store", *store)))


def free(text):
    return E("Search:FreeText", text=text)


def after(t):
    return E("Search:GreaterThan", E("Email:DateReceived"), E("Search:Value", text=iso(t)))


def before(t):
    return E("Search:LessThan", E("Email:DateReceived"), E("Search:Value", text=iso(t)))


class Searcher:
    def __init__(self, c, version="14.1"):
        self.c, self.version = c, version
        self.device = "s" + version.replace(".", "")
        self.key = provision(c, version, self.device)

    def raw(self, body):
        r = post(self.c, "Search", body, version=self.version, device=self.device, key=self.key)
        assert r.status_code == 200, r.text
        return decode(r.content)

    def __call__(self, *conds, **kw):
        """-> (store status, [(LongId, CollectionId, Subject)], range, total)"""
        doc = self.raw(search_body(*conds, **kw))
        assert doc.child_text("Search:Status") == "1"
        store = doc.find("Search:Response").find("Search:Store")
        res = []
        for r in store.findall("Search:Result"):
            if not r.children:
                continue
            props = r.find("Search:Properties")
            res.append((r.child_text("Search:LongId"), r.child_text("AirSync:CollectionId"),
                        props.child_text("Email:Subject")))
        total = store.child_text("Search:Total")
        return (store.child_text("Search:Status"), res, store.child_text("Search:Range"),
                int(total) if total is not None else None)


def imap_search(srv, folders: list[str], *criteria) -> set[str]:
    """EMAILIDs of the emails matching an IMAP SEARCH in FOLDERS."""
    m = imaplib.IMAP4("127.0.0.1", port_of(srv, "imap"))
    m.login("alice", "pw")
    out = set()
    for f in folders:
        m.select(f, readonly=True)
        _, data = m.uid("SEARCH", *criteria)
        uids = data[0].split()
        if uids:
            _, rows = m.uid("FETCH", b",".join(uids), "(EMAILID)")
            for row in rows:
                out.update(re.findall(rb"EMAILID \((E\d+)\)", row if isinstance(row, bytes)
                                      else row[0]))
    m.logout()
    return {x.decode() for x in out}


ALL_FOLDERS = ["INBOX", "Archive", "Archive/Deep", "Drafts", "Sent", "Trash", "Junk"]


async def test_free_text_matches_imap_search(srv):
    acc, boxes, eids = populate(srv.store)
    I = ids.mailbox_id(boxes["inbox"])

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            s = Searcher(c)
            return {w: s(free(w)) for w in WORDS} | {
                "inbox-banana": s(free("banana"), folders=[I]),
                "two-words": s(free("apple banana")),
                "case": s(free("APPLE")),
                "none": s(free("zebra")),
                "header": s(free("s7@example.org")),
            }
    got = await run(go)
    for w in WORDS:
        st, res, rng, total = got[w]
        want = await run(imap_search, srv, ALL_FOLDERS, "TEXT", w)
        assert st == "1" and {r[0] for r in res} == want and total == len(want) == 16
        # newest first
        assert [r[0] for r in res] == sorted(want, key=lambda e: -int(e[1:]))
    want = await run(imap_search, srv, ["INBOX"], "TEXT", "banana")
    assert {r[0] for r in got["inbox-banana"][1]} == want
    assert all(r[1] == I for r in got["inbox-banana"][1])
    want = await run(imap_search, srv, ALL_FOLDERS, "TEXT", "apple", "TEXT", "banana")
    assert {r[0] for r in got["two-words"][1]} == want and want
    assert got["case"][1] == got["apple"][1]
    assert got["none"] == ("1", [], None, 0)
    assert [r[2] for r in got["header"][1]] == ["note 7 about cherry"]


async def test_date_range_folders_and_deep_traversal(srv):
    acc, boxes, eids = populate(srv.store)
    I, A, D = (ids.mailbox_id(boxes[k]) for k in ("inbox", "archive", "deep"))
    sid = [ids.email_id(e) for e in eids]

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            s = Searcher(c)
            return {
                # strictly after email 5's date, strictly before email 9's
                "range": s(after(T0 + 5 * 3600), before(T0 + 9 * 3600)),
                "after": s(after(T0 + 37 * 3600)),
                "two_folders": s(folders=[I, D], rng="0-99"),
                "archive": s(folders=[A]),
                "deep": s(folders=[A], deep=True),
                "all": s(),
                "text_in_range": s(free("apple"), after(T0 - 1), before(T0 + 10 * 3600)),
                "calendar": s(cls="Calendar"),
            }
    got = await run(go)
    assert [r[0] for r in got["range"][1]] == [sid[8], sid[7], sid[6]]
    assert [r[0] for r in got["after"][1]] == [sid[39], sid[38]]
    assert {r[0] for r in got["two_folders"][1]} == set(sid[:20] + sid[30:])
    assert got["two_folders"][3] == 30
    assert {r[1] for r in got["two_folders"][1]} == {I, D}
    assert {r[0] for r in got["archive"][1]} == set(sid[20:30])
    assert {r[0] for r in got["deep"][1]} == set(sid[20:40])
    assert got["all"][3] == 40 and len(got["all"][1]) == 40
    assert [r[0] for r in got["text_in_range"][1]] == [sid[9], sid[5], sid[4], sid[0]]
    assert got["calendar"] == ("1", [], None, 0)
    # the range is what IMAP SINCE/BEFORE-style search over receivedAt gives
    want = {sid[i] for i in range(40) if T0 + 5 * 3600 < T0 + i * 3600 < T0 + 9 * 3600}
    assert {r[0] for r in got["range"][1]} == want


async def test_range_paging(srv):
    acc, boxes, eids = populate(srv.store)

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            s = Searcher(c)
            pages = [s(rng=f"{lo}-{lo + 6}") for lo in range(0, 42, 7)]
            return pages, s(), s(rng="0-999"), s(rng="50-60")
    pages, whole, big, beyond = await run(go)
    assert [p[2] for p in pages] == ["0-6", "7-13", "14-20", "21-27", "28-34", "35-39"]
    assert all(p[3] == 40 for p in pages)
    flat = [r[0] for p in pages for r in p[1]]
    assert flat == [r[0] for r in whole[1]] == [ids.email_id(e) for e in reversed(eids)]
    assert whole[2] == "0-39"                   # the default range is 0-99
    assert len(big[1]) == eas_search.MAX_RANGE or len(big[1]) == 40
    assert beyond == ("1", [], None, 40)


@pytest.mark.parametrize("version", ["12.1", "14.1", "16.1"])
async def test_statuses(srv, version):
    acc, boxes, eids = populate(srv.store)

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            s = Searcher(c, version)

            def store_status(body):
                doc = s.raw(body)
                resp = doc.find("Search:Response")
                return (doc.child_text("Search:Status"),
                        resp.find("Search:Store").child_text("Search:Status")
                        if resp is not None else None)
            or_q = encode(E("Search:Search", E("Search:Store", E("Search:Name", text="Mailbox"),
                          E("Search:Query", E("Search:Or", free("apple"), free("banana"))))))
            return {
                "ok": store_status(search_body(free("apple"))),
                "too_complex": store_status(or_q),
                "equal_to": store_status(search_body(E("Search:EqualTo",
                                                       E("Email:Subject"),
                                                       E("Search:Value", text="x")))),
                "unknown_folder": store_status(search_body(folders=["M999"])),
                "bad_folder": store_status(search_body(folders=["inbox"])),
                "bad_range": store_status(search_body(rng="9-1")),
                "bad_date": store_status(search_body(E(
                    "Search:GreaterThan", E("Email:DateReceived"),
                    E("Search:Value", text="yesterday")))),
                "other_property": store_status(search_body(E(
                    "Search:GreaterThan", E("Email:Subject"), E("Search:Value", text="a")))),
                "no_query": store_status(encode(E("Search:Search", E("Search:Store",
                                                  E("Search:Name", text="Mailbox"))))),
                "gal": s.raw(search_body(cls=None, name="GAL")),
                "doclib": store_status(search_body(cls=None, name="DocumentLibrary")),
                "empty": store_status(encode(E("Search:Search"))),
            }
    got = await run(go)
    assert got["ok"] == ("1", "1")
    assert got["too_complex"] == ("1", "8") and got["equal_to"] == ("1", "8")
    assert got["unknown_folder"] == ("1", "11") and got["bad_folder"] == ("1", "11")
    assert got["bad_range"] == ("1", "2") and got["bad_date"] == ("1", "2")
    assert got["other_property"] == ("1", "8")
    assert got["no_query"] == ("1", "2")
    gal = got["gal"].find("Search:Response").find("Search:Store")
    assert gal.child_text("Search:Status") == "1" and gal.child_text("Search:Total") == "0"
    assert [r.children for r in gal.findall("Search:Result")] == [[]]
    assert got["doclib"] == (("137", None) if version != "12.1" else ("1", "2"))
    assert got["empty"] == ("1", "2")


async def test_properties_and_pyactivesync(srv):
    acc, boxes, eids = populate(srv.store)
    I = ids.mailbox_id(boxes["inbox"])

    def go():
        with httpx.Client(base_url=base(srv), auth=("alice", "pw"), timeout=30) as c:
            s = Searcher(c, "16.1")
            doc = s.raw(search_body(free("number13"), extra_options=[
                E("AirSyncBase:BodyPreference", E("AirSyncBase:Type", text="1"),
                  E("AirSyncBase:TruncationSize", text="100"))]))
        cl = Client("unused", "alice", "pw", device_id="pyas", timeout=30)
        cl._transport.base_url = base(srv) + "/Microsoft-Server-ActiveSync"
        with cl:
            cl.provision()
            found = cl.search_mailbox(I, date_received_after=iso(T0 + 16 * 3600))
        return doc, found
    doc, found = await run(go)
    (res,) = [r for r in doc.find("Search:Response").find("Search:Store")
              .findall("Search:Result")]
    assert res.child_text("Search:LongId") == ids.email_id(eids[13])
    props = res.find("Search:Properties")
    assert props.child_text("Email:Subject") == "note 13 about damson"
    assert "number13" in props.find("AirSyncBase:Body").child_text("AirSyncBase:Data")
    assert props.child_text("Email:DateReceived") == iso(T0 + 13 * 3600)
    assert [f.get("Email.Subject") for f in found] == [f"note {i} about {WORDS[i % 5]}"
                                                       for i in (19, 18, 17)]


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_parse_range(a, b):
    text = f"{a}-{b}"
    if a <= b:
        assert eas_search.parse_range(text) == (a, b)
    else:
        with pytest.raises(eas_search.Refused):
            eas_search.parse_range(text)


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1)))
def test_parse_date_round_trips(d):
    t = int(d.replace(tzinfo=dt.timezone.utc).timestamp())
    assert eas_search.parse_date(iso(t)) == t


@given(st.text(max_size=30))
def test_parse_date_refuses_or_parses(s):
    try:
        eas_search.parse_date(s)
    except eas_search.Refused as r:
        assert r.status == eas_search.INVALID
