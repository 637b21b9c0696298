"""ActiveSync Settings (server/eas_settings.py) against ``serve``: Oof set by
pyactivesync is the JMAP VacationResponse (seen over JMAP's HTTP API) and
the other way round; UserInformation at 12.1/14.0 and 14.1+;
DeviceInformation stored with the device; DevicePassword,
RightsManagementInformation; malformed requests."""
from __future__ import annotations

import httpx
import pytest
import trio
from pyactivesync import Client
from pyactivesync.models import OofState

from conftest import port_of
from eas_helpers import base, provision
from imap_helpers import run
from mailaccess import accounts
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.proto.jmap import capabilities as cap
from mailaccess.server import eas_settings

WBXML = "application/vnd.ms-sync.wbxml"
USING = [cap.CORE, cap.MAIL, cap.SUBMISSION, cap.VACATION]


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    return server


def http(ctx) -> httpx.Client:
    return httpx.Client(base_url=base(ctx), auth=("alice", "pw"), timeout=30)


def eas_client(ctx, device="phone1") -> Client:
    c = Client("unused", "alice", "pw", device_id=device, timeout=30)
    c._transport.base_url = base(ctx) + "/Microsoft-Server-ActiveSync"
    return c


def jmap(c: httpx.Client, name, args) -> dict:
    session = c.get("/jmap/session").json()
    acc = session["primaryAccounts"][cap.MAIL]
    args = dict(args, accountId=acc)
    r = c.post("/jmap/api/", json={"using": USING, "methodCalls": [[name, args, "0"]]})
    assert r.status_code == 200, r.text
    out = r.json()["methodResponses"][0]
    assert out[0] == name, out
    return out[1]


def post(c, body: bytes, *, version="14.1", device="raw1", key=None, cmd="Settings"):
    headers = {"content-type": WBXML, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    return c.post("/Microsoft-Server-ActiveSync", content=body, headers=headers,
                  params={"Cmd": cmd, "User": "alice", "DeviceId": device,
                          "DeviceType": "test"})


def settings(c, *children, version="14.1", device="raw1", key=None):
    r = post(c, encode(E("Settings:Settings", *children)), version=version, device=device,
             key=key)
    assert r.status_code == 200, r.text
    return decode(r.content)


# --- Oof <-> VacationResponse ----------------------------------------------------------------

async def test_oof_set_by_the_phone_is_the_jmap_vacation_response(srv):
    def go():
        with eas_client(srv) as c:
            c.provision()
            c.set_oof(OofState.ENABLED_SCHEDULED, start_time="2026-12-20T08:00:00.000Z",
                      end_time="2027-01-04T08:00:00.000Z",
                      reply_message="Away until January.", body_type="Text")
            back = c.get_oof()
        with http(srv) as h:
            vac = jmap(h, "VacationResponse/get", {"ids": None})["list"][0]
        return back, vac

    back, vac = await run(go)
    assert vac["isEnabled"] is True
    assert vac["fromDate"] == "2026-12-20T08:00:00Z" and vac["toDate"] == "2027-01-04T08:00:00Z"
    assert vac["textBody"] == "Away until January." and vac["htmlBody"] is None
    assert back.state == OofState.ENABLED_SCHEDULED
    assert back.start_time == "2026-12-20T08:00:00.000Z"
    assert [m.applies_to for m in back.messages] == ["Internal", "ExternalKnown",
                                                     "ExternalUnknown"]
    assert all(m.enabled and m.reply_message == "Away until January." for m in back.messages)

    def off():
        with eas_client(srv) as c:
            c.set_oof(OofState.DISABLED)
        with http(srv) as h:
            return jmap(h, "VacationResponse/get", {"ids": None})["list"][0]

    vac = await run(off)
    assert vac["isEnabled"] is False and vac["textBody"] == "Away until January."


async def test_jmap_vacation_response_is_what_the_phone_gets(srv):
    def go():
        with http(srv) as h:
            res = jmap(h, "VacationResponse/set", {"update": {"singleton": {
                "isEnabled": True, "subject": "Out", "htmlBody": "<p>On <b>leave</b></p>",
                "textBody": None}}})
            assert "singleton" in res["updated"], res
        with eas_client(srv) as c:
            c.provision()
            return c.get_oof()

    got = await run(go)
    assert got.state == OofState.ENABLED
    assert got.start_time is None
    # pyactivesync asks for Text: the tags go
    assert got.messages[0].reply_message == "On leave" and got.messages[0].body_type == "Text"


async def test_oof_get_html_and_set_html(srv):
    def go():
        with http(srv) as c:
            key = provision(c)
            s = settings(c, E("Settings:Oof", E("Settings:Set",
                         E("Settings:OofState", text="1"),
                         E("Settings:OofMessage", E("Settings:AppliesToExternalUnknown"),
                           E("Settings:Enabled", text="1"),
                           E("Settings:ReplyMessage", text="<p>external</p>"),
                           E("Settings:BodyType", text="HTML")),
                         E("Settings:OofMessage", E("Settings:AppliesToInternal"),
                           E("Settings:Enabled", text="1"),
                           E("Settings:ReplyMessage", text="<p>internal &amp; more</p>"),
                           E("Settings:BodyType", text="HTML")))), key=key)
            vac = jmap(c, "VacationResponse/get", {"ids": None})["list"][0]
            g = settings(c, E("Settings:Oof", E("Settings:Get",
                                                E("Settings:BodyType", text="HTML"))), key=key)
            t = settings(c, E("Settings:Oof", E("Settings:Get",
                                                E("Settings:BodyType", text="Text"))), key=key)
            return s, vac, g, t

    s, vac, g, t = await run(go)
    assert s.child_text("Settings:Status") == "1"
    assert s.find("Settings:Oof").child_text("Settings:Status") == "1"
    # AppliesToInternal wins whatever the order
    assert vac["htmlBody"] == "<p>internal &amp; more</p>" and vac["textBody"] is None
    assert vac["isEnabled"] and vac["fromDate"] is None
    msg = g.find("Settings:Oof").find("Settings:Get").find("Settings:OofMessage")
    assert msg.child_text("Settings:ReplyMessage") == "<p>internal &amp; more</p>"
    assert msg.child_text("Settings:BodyType") == "HTML"
    msg = t.find("Settings:Oof").find("Settings:Get").find("Settings:OofMessage")
    assert msg.child_text("Settings:ReplyMessage") == "internal & more"


async def test_bad_oof_sets_change_nothing(srv):
    def go():
        with http(srv) as c:
            key = provision(c)
            out = []
            for kids in ([E("Settings:OofState", text="2")],                       # no dates
                         [E("Settings:OofState", text="2"),
                          E("Settings:StartTime", text="2027-01-02T00:00:00.000Z"),
                          E("Settings:EndTime", text="2027-01-01T00:00:00.000Z")],
                         [E("Settings:OofState", text="7")],
                         [E("Settings:OofState", text="2"),
                          E("Settings:StartTime", text="soon"),
                          E("Settings:EndTime", text="later")]):
                r = settings(c, E("Settings:Oof", E("Settings:Set", *kids)), key=key)
                out.append(r.find("Settings:Oof").child_text("Settings:Status"))
            vac = jmap(c, "VacationResponse/get", {"ids": None})["list"][0]
            return out, vac

    statuses, vac = await run(go)
    assert statuses == ["5", "6", "5", "5"]
    assert vac["isEnabled"] is False


# --- UserInformation, DeviceInformation, the rest -----------------------------------------------

@pytest.mark.parametrize("version", ["12.1", "14.0"])
async def test_user_information_before_14_1(srv, version):
    def go():
        with http(srv) as c:
            key = provision(c, version)
            return settings(c, E("Settings:UserInformation", E("Settings:Get")),
                            version=version, key=key)

    r = await run(go)
    ui = r.find("Settings:UserInformation")
    assert ui.child_text("Settings:Status") == "1"
    addrs = ui.find("Settings:Get").find("Settings:EmailAddresses")
    assert [a.text for a in addrs.children] == ["alice@localhost"]
    assert ui.find("Settings:Get").find("Settings:Accounts") is None


@pytest.mark.parametrize("version", ["14.1", "16.1"])
async def test_user_information_accounts_from_14_1(srv, version):
    def go():
        with http(srv) as c:
            res = jmap(c, "Identity/get", {"ids": None})
            ident = res["list"][0]["id"]
            jmap(c, "Identity/set", {"update": {ident: {"name": "Alice Liddell"}}})
            key = provision(c, version)
            return settings(c, E("Settings:UserInformation", E("Settings:Get")),
                            version=version, key=key)

    r = await run(go)
    acc = r.find("Settings:UserInformation").find("Settings:Get") \
        .find("Settings:Accounts").find("Settings:Account")
    assert acc.find("Settings:AccountId") is None                 # the primary account
    assert acc.child_text("Settings:UserDisplayName") == "Alice Liddell"
    ea = acc.find("Settings:EmailAddresses")
    assert ea.child_text("Settings:SmtpAddress") == "alice@localhost"
    assert ea.child_text("Settings:PrimarySmtpAddress") == "alice@localhost"


async def test_device_information_is_stored_with_the_device(srv):
    def go():
        with http(srv) as c:
            key = provision(c, "14.1", device="dev9")
            return settings(c, E("Settings:DeviceInformation", E("Settings:Set",
                            E("Settings:Model", text="Pixel 9"),
                            E("Settings:OS", text="Android 16"),
                            E("Settings:FriendlyName", text="Alice's phone"))),
                            device="dev9", key=key)

    r = await run(go)
    assert r.find("Settings:DeviceInformation").child_text("Settings:Status") == "1"
    with srv.store.view() as v:
        acc = v.account_by_name("alice").id
    from mailaccess.server import eas_provision
    st = eas_provision.device_status(srv.store, acc, "dev9")
    assert st["info"] == {"Model": "Pixel 9", "OS": "Android 16",
                          "FriendlyName": "Alice's phone"}
    assert st["key"]                         # the provisioning state is intact


async def test_several_settings_at_once_and_malformed_ones(srv):
    def go():
        with http(srv) as c:
            key = provision(c, "16.1")
            many = settings(c, E("Settings:DevicePassword", E("Settings:Set",
                                 E("Settings:Password", text="1234"))),
                            E("Settings:RightsManagementInformation", E("Settings:Get")),
                            E("Settings:UserInformation", E("Settings:Get")),
                            version="16.1", key=key)
            empty = settings(c, version="16.1", key=key)
            bad = settings(c, E("Settings:Oof", E("Settings:Get"), E("Settings:Set")),
                           version="16.1", key=key)
            alien = post(c, encode(E("Settings:Settings", E("Settings:Get"))), version="16.1",
                         key=key)
            return many, empty, bad, decode(alien.content)

    many, empty, bad, alien = await run(go)
    assert many.child_text("Settings:Status") == "1"
    assert [c.tag for c in many.children] == ["Status", "DevicePassword",
                                             "RightsManagementInformation", "UserInformation"]
    assert many.find("Settings:DevicePassword").child_text("Settings:Status") == "1"
    rm = many.find("Settings:RightsManagementInformation")
    assert rm.child_text("Settings:Status") == "1"
    assert rm.find("Settings:Get").find("RightsManagement:RightsManagementTemplates") \
        .children == []
    assert empty.child_text("Settings:Status") == "2"
    assert bad.find("Settings:Oof").child_text("Settings:Status") == "2"
    assert alien.child_text("Settings:Status") == "2"


# --- the mapping on its own ------------------------------------------------------------------

def test_oof_mapping_round_trips():
    rec = dict(eas_settings.DEFAULT, isEnabled=True, fromDate="2026-01-01T00:00:00Z",
               toDate="2026-01-02T00:00:00Z", textBody="away", subject="S")
    got = eas_settings.oof_get(rec, "Text").find("Settings:Get")
    back = eas_settings.oof_apply(eas_settings.DEFAULT, E("Settings:Set", *got.children))
    assert back == dict(rec, subject=None)
    # a Set with every message disabled clears the reply; none given keeps it
    cleared = eas_settings.oof_apply(rec, E("Settings:Set", E("Settings:OofMessage",
                                     E("Settings:AppliesToInternal"),
                                     E("Settings:Enabled", text="0"))))
    assert cleared["textBody"] is None and cleared["subject"] == "S"
    kept = eas_settings.oof_apply(rec, E("Settings:Set", E("Settings:OofState", text="1")))
    assert kept["textBody"] == "away" and kept["fromDate"] is None
    assert eas_settings.eas_to_utc("2026-03-04T05:06:07Z") == "2026-03-04T05:06:07Z"
    assert eas_settings.eas_to_utc("2026-03-04T06:06:07.250+01:00") == "2026-03-04T05:06:07Z"
