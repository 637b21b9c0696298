"""JMAP VacationResponse (RFC 8621 §8) through run_request, and the RFC 3834
rules of automatic replies (mailaccess/outbound/autoreply.py)."""
from __future__ import annotations

import pytest

from mailaccess.outbound import autoreply
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.store import sending

from jmap_helpers import api, make_ctx, make_store

USING = [cap.CORE, cap.MAIL, cap.VACATION]


@pytest.fixture
def ctx(tmp_path):
    store = make_store(tmp_path)
    yield make_ctx(store)
    store.close()


async def one(ctx, name, args):
    r = await api(ctx, [name, args], using=USING)
    assert r[0][0] == name, r
    return r[0][1]


async def test_get_default_singleton(ctx):
    res = await one(ctx, "VacationResponse/get", {"ids": None})
    assert res["list"] == [{"id": "singleton", "isEnabled": False, "fromDate": None,
                            "toDate": None, "subject": None, "textBody": None,
                            "htmlBody": None}]
    res = await one(ctx, "VacationResponse/get", {"ids": ["singleton", "other"],
                                                  "properties": ["isEnabled"]})
    assert res["list"] == [{"id": "singleton", "isEnabled": False}]
    assert res["notFound"] == ["other"]


async def test_set_update_and_singleton_errors(ctx):
    st = (await one(ctx, "VacationResponse/get", {"ids": None}))["state"]
    res = await one(ctx, "VacationResponse/set", {
        "ifInState": st,
        "update": {"singleton": {"isEnabled": True, "subject": "Away",
                                 "textBody": "Back on Monday", "toDate": "2030-01-01T00:00:00Z"}},
        "create": {"x": {"isEnabled": True}}})
    assert "singleton" in res["updated"]
    assert res["notCreated"]["x"]["type"] == "singleton"
    r2 = await one(ctx, "VacationResponse/set", {"destroy": ["singleton"]})
    assert r2["notDestroyed"]["singleton"]["type"] == "singleton"
    assert res["newState"] != st
    got = (await one(ctx, "VacationResponse/get", {"ids": None}))["list"][0]
    assert got["isEnabled"] is True and got["subject"] == "Away"
    assert got["toDate"] == "2030-01-01T00:00:00Z"
    res = await one(ctx, "VacationResponse/set", {"update": {"singleton": {"fromDate": "soon"}}})
    assert res["notUpdated"]["singleton"]["type"] == "invalidProperties"
    res = await one(ctx, "VacationResponse/set", {"update": {"other": {"isEnabled": False}}})
    assert res["notUpdated"]["other"]["type"] == "notFound"
    r = await api(ctx, ["VacationResponse/set", {"ifInState": st, "update": {}}], using=USING)
    assert r[0][1]["type"] == "stateMismatch"


# --- RFC 3834 rules (sans-IO) ------------------------------------------------------------

ME = {"alice@localhost"}


def msg(extra="", to="alice@localhost"):
    return (f"From: bob@example.com\r\nTo: {to}\r\nSubject: question\r\n"
            f"Message-ID: <q1@example.com>\r\n{extra}\r\nbody\r\n").encode()


@pytest.mark.parametrize("raw,rp,why", [
    (msg(), "", "null return path"),
    (msg(), "MAILER-DAEMON@example.com", "system or list return path"),
    (msg(), "owner-list@example.com", "system or list return path"),
    (msg(), "alice@localhost", "from the user"),
    (msg("Auto-Submitted: auto-replied\r\n"), "bob@example.com", "auto-submitted"),
    (msg("Precedence: bulk\r\n"), "bob@example.com", "precedence bulk"),
    (msg("Precedence: list\r\n"), "bob@example.com", "precedence list"),
    (msg("Precedence: junk\r\n"), "bob@example.com", "precedence junk"),
    (msg("List-Id: <l.example.com>\r\n"), "bob@example.com", "list message"),
    (msg(to="everyone@example.com"), "bob@example.com", "not addressed to the user"),
    (msg("Auto-Submitted: no\r\n"), "bob@example.com", None),
    (msg(), "bob@example.com", None),
])
def test_when_not_to_reply(raw, rp, why):
    assert autoreply.should_reply(raw, rp, ME) == why


# what getaddresses answers on a Python with the CVE-2023-27043 fix (3.11.10+,
# 3.12.6+, 3.13): ('', '') for all the fields together when one is malformed
def _strict_getaddresses(real):
    return lambda vs: [("", "")] if any("@@" in v or "(Bob" in v for v in vs) else real(vs)


@pytest.mark.parametrize("strict", [False, True], ids=["this-python", "strict-parser"])
def test_addressed_to_the_user_whatever_the_other_fields_hold(monkeypatch, strict):
    """The user's address in To is found whatever a malformed Cc (or an
    unclosed comment in To) holds, on a Python whose getaddresses gives up
    on the whole lot as on one that returns fragments."""
    if strict:
        import email.utils
        monkeypatch.setattr(email.utils, "getaddresses",
                            _strict_getaddresses(email.utils.getaddresses))
    for raw in (msg("Cc: a b@@c\r\n"), msg(to="Alice <ALICE@localhost>, bob@y.org (Bob"),
                msg(to="undisclosed-recipients:;", extra="Cc: x@y.org, Team: alice@localhost;\r\n")):
        assert autoreply.should_reply(raw, "bob@example.com", ME) is None, raw
    assert autoreply.should_reply(msg(to="a b@@c"), "bob@example.com", ME) == \
        "not addressed to the user"


def test_reply_shape():
    vac = {"isEnabled": True, "subject": None, "textBody": "Away", "htmlBody": "<p>Away</p>"}
    raw = autoreply.build_reply(msg("References: <q0@example.com>\r\n"), vac,
                                "alice@localhost", "bob@example.com", 1_700_000_000, "mx")
    head = raw.split(b"\r\n\r\n")[0].decode()
    assert "Auto-Submitted: auto-replied" in head
    assert "In-Reply-To: <q1@example.com>" in head
    assert "References: <q0@example.com> <q1@example.com>" in head
    assert "Subject: Auto: question" in head and "To: bob@example.com" in head
    assert b"multipart/alternative" in raw


@pytest.mark.parametrize("subject, want", [
    ("Köln Grüße".encode(), "Auto: Köln Grüße"),               # raw UTF-8 (RFC 6532)
    (b"=?utf-8?q?K=C3=B6ln?= =?iso-8859-1?q?Gr=FC=DFe?=", "Auto: KölnGrüße"),  # RFC 2047
    ("a\r\n b Köln".encode(), "Auto: a b Köln"),                # folded
    (b"bad \xff x", "Auto: bad \ufffd x"),                       # not UTF-8
])
def test_reply_subject_reads_the_original_as_text(subject, want):
    """The reply's "Auto: <subject>" is the original's Subject as a reader
    sees it (it made replacement characters of a raw UTF-8 Subject)."""
    import email
    import email.policy
    raw = msg().replace(b"Subject: question", b"Subject: " + subject)
    vac = {"isEnabled": True, "subject": None, "textBody": "Away", "htmlBody": None}
    reply = autoreply.build_reply(raw, vac, "alice@localhost", "bob@example.com",
                                  1_700_000_000, "mx")
    assert email.message_from_bytes(reply, policy=email.policy.default)["Subject"] == want


def test_active_window():
    v = {"isEnabled": True, "fromDate": "2030-01-01T00:00:00Z", "toDate": "2030-01-08T00:00:00Z"}
    assert not autoreply.active(v, 1_700_000_000)
    assert autoreply.active(v, 1_893_456_000 + 3600)
    assert not autoreply.active(dict(v, isEnabled=False), 1_893_456_000 + 3600)
    assert not autoreply.active(None, 0)


def test_once_per_sender_per_period_bounded(tmp_path):
    store = make_store(tmp_path)
    try:
        acc = make_ctx(store).acc
        w = store.write_sync
        assert w(sending.note_auto_reply, acc, "Bob@x", 1000, 100, 3)
        assert not w(sending.note_auto_reply, acc, "bob@x", 1050, 100, 3)
        assert w(sending.note_auto_reply, acc, "bob@x", 1100, 100, 3)
        for i in range(10):
            assert w(sending.note_auto_reply, acc, f"s{i}@x", 1200 + i, 100, 3)
        with store.view() as v:
            rows = list(v._scan("vac.sent", b""))
        assert len(rows) <= 4
        assert not w(sending.note_auto_reply, acc, "s9@x", 1210, 100, 3)
    finally:
        store.close()


def test_resent_to_counts_as_addressed():
    assert autoreply.should_reply(msg("Resent-To: alice@localhost\r\n", to="x@example.com"),
                                  "bob@example.com", ME) is None


@pytest.mark.parametrize("to,cc", [
    ("alice@localhost (Liddell, Alice)", None),     # a comma in a comment
    ("alice@localhost,", None),                      # a last comma (obs-addr-list)
    ("alice@localhost", "a b@@c"),                   # another field cannot be read
    ("alice@localhost", "bob@example.com (Bob, B.)"),
])
def test_addressed_to_the_user_on_every_python(to, cc):
    """The user's address is found in To/Cc whatever getaddresses answers on
    this release: 3.13 (the CVE-2023-27043 fix) answers ('', '') for all of
    these when the fields are read together; 3.11.7 found the address."""
    extra = f"Cc: {cc}\r\n" if cc else ""
    assert autoreply.should_reply(msg(extra, to=to), "bob@example.com", ME) is None
    assert autoreply.should_reply(msg(extra, to=to.replace("alice", "carol")),
                                  "bob@example.com", ME) == "not addressed to the user"
