"""ResolveRecipients, ValidateCert, MeetingResponse (server/eas_misc.py)
against ``serve``: pyactivesync's ResolveRecipients, raw requests with our
codec for the options, ambiguity, limits and the other two commands."""
from __future__ import annotations

import httpx
import pytest
import trio
from pyactivesync import Client

from address_release import STRICT_PARSEADDR, other_release
from conftest import port_of
from eas_helpers import base, provision
from imap_helpers import run
from mailaccess import accounts
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.store import sending

WBXML = "application/vnd.ms-sync.wbxml"


@pytest.fixture
async def srv(server):
    for name in ("alice", "bob", "bert"):
        await trio.to_thread.run_sync(accounts.add_user, server.store, name, "pw")
    bob = accounts.lookup(server.store, "bob").id
    server.store.write_sync(sending.ensure_identity, bob, {
        "name": "Robert Liddell", "email": "bob@localhost", "replyTo": None, "bcc": None,
        "textSignature": "", "htmlSignature": "", "mayDelete": False})
    return server


def post(c, cmd, body: bytes, *, version="14.1", device="raw1", key=None):
    headers = {"content-type": WBXML, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    return c.post("/Microsoft-Server-ActiveSync", content=body, headers=headers,
                  params={"Cmd": cmd, "User": "alice", "DeviceId": device,
                          "DeviceType": "test"})


def raw(ctx, cmd, root, version="14.1"):
    """One provisioned request of CMD with body ROOT -> the decoded answer."""
    def go():
        with httpx.Client(base_url=base(ctx), auth=("alice", "pw"), timeout=30) as c:
            key = provision(c, version)
            r = post(c, cmd, encode(root), version=version, key=key)
            assert r.status_code == 200, r.text
            return decode(r.content)
    return go


def responses(doc):
    out = []
    for r in doc.findall("ResolveRecipients:Response"):
        out.append((r.child_text("ResolveRecipients:To"),
                    r.child_text("ResolveRecipients:Status"),
                    r.child_text("ResolveRecipients:RecipientCount"),
                    [(x.child_text("ResolveRecipients:Type"),
                      x.child_text("ResolveRecipients:DisplayName"),
                      x.child_text("ResolveRecipients:EmailAddress"))
                     for x in r.findall("ResolveRecipients:Recipient")]))
    return out


async def test_pyactivesync_resolves_a_local_address_and_not_a_stranger(srv):
    def go():
        c = Client("unused", "alice", "pw", device_id="phone1", timeout=30)
        c._transport.base_url = base(srv) + "/Microsoft-Server-ActiveSync"
        with c:
            c.provision()
            return c.resolve_recipients("bob@localhost"), \
                c.resolve_recipients("nobody@example.com")

    found, none = await run(go)
    assert [(r.type, r.display_name, r.email_address) for r in found] == \
        [("1", "Robert Liddell", "bob@localhost")]
    assert none == []


@pytest.mark.parametrize("version", ["12.1", "16.1"])
async def test_names_addresses_and_ambiguity(srv, version):
    doc = await run(raw(srv, "ResolveRecipients", E(
        "ResolveRecipients:ResolveRecipients",
        E("ResolveRecipients:To", text="Bob <BOB+lists@localhost>"),
        E("ResolveRecipients:To", text="liddell"),
        E("ResolveRecipients:To", text="b"),
        E("ResolveRecipients:To", text="zz"),
        E("ResolveRecipients:To", text="alice@elsewhere.example")), version))
    assert doc.child_text("ResolveRecipients:Status") == "1"
    assert responses(doc) == [
        ("Bob <BOB+lists@localhost>", "1", "1", [("1", "Robert Liddell", "BOB+lists@localhost")]),
        ("liddell", "1", "1", [("1", "Robert Liddell", "bob@localhost")]),
        ("b", "2", "2", [("1", "bert", "bert@localhost"),
                         ("1", "Robert Liddell", "bob@localhost")]),
        ("zz", "4", "0", []),
        ("alice@elsewhere.example", "4", "0", []),
    ]


@pytest.mark.parametrize("other", [False, True], ids=["this-python", "other-release"])
async def test_a_to_that_is_not_one_readable_address_is_matched_as_a_name(srv, monkeypatch,
                                                                          other):
    """Whichever way this Python's parser answers (CVE-2023-27043: 3.11.7's
    parseaddr read alice out of "alice@localhost, bob@localhost", a fixed
    release answers ('', '')), several addresses or a malformed one in a To
    resolve to no one (Status 4, the name search finding nothing), and a
    comment with a comma or a last comma does not hide the address."""
    if other:
        other_release(monkeypatch)
    malformed = sorted(STRICT_PARSEADDR) + ["a b@@localhost", "bob@localhost bert@localhost"]
    doc = await run(raw(srv, "ResolveRecipients", E(
        "ResolveRecipients:ResolveRecipients",
        *[E("ResolveRecipients:To", text=q) for q in malformed],
        E("ResolveRecipients:To", text="bob@localhost (Liddell, Robert)"),
        E("ResolveRecipients:To", text="bert@localhost,"),
        E("ResolveRecipients:To", text="Bob"))))
    bob = [("1", "Robert Liddell", "bob@localhost")]
    assert responses(doc) == [(q, "4", "0", []) for q in malformed] + [
        ("bob@localhost (Liddell, Robert)", "1", "1", bob),
        ("bert@localhost,", "1", "1", [("1", "bert", "bert@localhost")]),
        ("Bob", "1", "1", bob)]


def test_the_stand_in_answers_as_a_fixed_release():
    """address_release's tables are what a Python with the CVE-2023-27043
    fix answers (checked where this Python is one, e.g. 3.13)."""
    import email.utils
    if not getattr(email.utils, "supports_strict_parsing", False):
        pytest.skip("this Python has no CVE-2023-27043 fix")
    for q in STRICT_PARSEADDR:
        assert email.utils.parseaddr(q) == ("", ""), q
        assert email.utils.parseaddr(q, strict=False)[1], q


async def test_options_we_cannot_serve_get_their_none_answers(srv):
    doc = await run(raw(srv, "ResolveRecipients", E(
        "ResolveRecipients:ResolveRecipients",
        E("ResolveRecipients:To", text="b"),
        E("ResolveRecipients:To", text="bob@localhost"),
        E("ResolveRecipients:Options",
          E("ResolveRecipients:CertificateRetrieval", text="2"),
          E("ResolveRecipients:MaxAmbiguousRecipients", text="1"),
          E("ResolveRecipients:Availability",
            E("ResolveRecipients:StartTime", text="2026-12-01T00:00:00.000Z"),
            E("ResolveRecipients:EndTime", text="2026-12-02T00:00:00.000Z")),
          E("ResolveRecipients:Picture", E("ResolveRecipients:MaxSize", text="1000"))))))
    amb, one = doc.findall("ResolveRecipients:Response")
    assert amb.child_text("ResolveRecipients:Status") == "3"            # partial list
    assert amb.child_text("ResolveRecipients:RecipientCount") == "2"
    assert len(amb.findall("ResolveRecipients:Recipient")) == 1
    # no free/busy for an ambiguous name (MS-ASCMD 2.2.3.183)
    assert amb.find("ResolveRecipients:Recipient").find("ResolveRecipients:Availability") \
        is None
    rec = one.find("ResolveRecipients:Recipient")
    assert [c.tag for c in rec.children] == ["Type", "DisplayName", "EmailAddress",
                                             "Availability", "Certificates", "Picture"]
    assert rec.find("ResolveRecipients:Availability").child_text("ResolveRecipients:Status") \
        == "163"
    certs = rec.find("ResolveRecipients:Certificates")
    assert certs.child_text("ResolveRecipients:Status") == "7"
    assert certs.child_text("ResolveRecipients:CertificateCount") == "0"
    assert rec.find("ResolveRecipients:Picture").child_text("ResolveRecipients:Status") == "173"


async def test_resolve_recipients_limits(srv):
    too_many = E("ResolveRecipients:ResolveRecipients",
                 *[E("ResolveRecipients:To", text=f"x{i}@example.com") for i in range(101)])
    doc = await run(raw(srv, "ResolveRecipients", too_many))
    assert doc.child_text("ResolveRecipients:Status") == "5" and \
        doc.find("ResolveRecipients:Response") is None
    none = await run(raw(srv, "ResolveRecipients", E("ResolveRecipients:ResolveRecipients")))
    assert none.child_text("ResolveRecipients:Status") == "5"


@pytest.mark.parametrize("version", ["12.1", "14.1", "16.1"])
async def test_validate_cert_says_the_server_could_not_validate(srv, version):
    doc = await run(raw(srv, "ValidateCert", E(
        "ValidateCert:ValidateCert",
        E("ValidateCert:Certificates", E("ValidateCert:Certificate", text="TUlJQg=="),
          E("ValidateCert:Certificate", text="TUlJQw==")),
        E("ValidateCert:CheckCRL", text="1")), version))
    assert doc.child_text("ValidateCert:Status") == "1"
    assert [c.child_text("ValidateCert:Status")
            for c in doc.findall("ValidateCert:Certificate")] == ["17", "17"]
    empty = await run(raw(srv, "ValidateCert", E("ValidateCert:ValidateCert"), version))
    assert empty.child_text("ValidateCert:Status") == "2"
    assert empty.find("ValidateCert:Certificate") is None


@pytest.mark.parametrize("version", ["12.1", "16.1"])
async def test_meeting_response_is_an_invalid_meeting_request(srv, version):
    doc = await run(raw(srv, "MeetingResponse", E(
        "MeetingResponse:MeetingResponse",
        E("MeetingResponse:Request", E("MeetingResponse:UserResponse", text="1"),
          E("MeetingResponse:CollectionId", text="M1"),
          E("MeetingResponse:RequestId", text="E1")),
        E("MeetingResponse:Request", E("MeetingResponse:UserResponse", text="3"),
          E("MeetingResponse:CollectionId", text="M1"),
          E("MeetingResponse:RequestId", text="E2"))), version))
    assert [(r.child_text("MeetingResponse:RequestId"), r.child_text("MeetingResponse:Status"))
            for r in doc.findall("MeetingResponse:Result")] == [("E1", "2"), ("E2", "2")]
    empty = await run(raw(srv, "MeetingResponse", E("MeetingResponse:MeetingResponse"),
                          version))
    assert empty.child_text("MeetingResponse:Status") == "2"
