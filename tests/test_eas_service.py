"""ActiveSync over HTTP end to end (server/eas.py, eas_provision.py,
eas_foldersync.py) against ``serve``: pyactivesync (a third-party EAS
client, run in a thread) drives Provision and FolderSync; raw httpx requests
cover OPTIONS and the error paths (versions, WBXML, auth, query forms,
policy keys).  Our own WBXML codec builds the raw bodies and reads answers;
pyactivesync's codec reads some too, so the two are checked against each
other on the wire."""
import base64
import dataclasses

import httpx
import pytest
import trio
from pyactivesync import Client, FolderType
from pyactivesync._wbxml import WBXMLReader

from conftest import make_config
from imap_helpers import run
from mailaccess import accounts, ids, tokens
from mailaccess.proto.eas import request as R
from mailaccess.server import eas
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.store import ops

WBXML = "application/vnd.ms-sync.wbxml"


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def base(ctx) -> str:
    return f"http://127.0.0.1:{ctx.bound['http'][0][1]}"


def eas_client(ctx, device="dev1", user="alice", pw="pw") -> Client:
    c = Client("unused", user, pw, device_id=device, timeout=30)
    c._transport.base_url = base(ctx) + "/Microsoft-Server-ActiveSync"
    return c


def http(ctx, user="alice", pw="pw") -> httpx.Client:
    return httpx.Client(base_url=base(ctx), auth=(user, pw) if user else None, timeout=30)


def post(c, cmd, body: bytes | None, *, version="14.1", device="raw1", key=None,
         path="/Microsoft-Server-ActiveSync", extra=None):
    headers = {"content-type": WBXML}
    if version is not None:
        headers["ms-asprotocolversion"] = version
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    headers.update(extra or {})
    return c.post(path, params={"Cmd": cmd, "User": "alice", "DeviceId": device,
                                "DeviceType": "test"}, content=body or b"", headers=headers)


def provision_body(key=None, info=False):
    pol = [E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML")]
    if key is not None:
        pol += [E("Provision:PolicyKey", text=str(key)), E("Provision:Status", text="1")]
    kids = []
    if info:
        kids.append(E("Settings:DeviceInformation", E("Settings:Set",
                      E("Settings:Model", text="T1"), E("Settings:OS", text="test"))))
    kids.append(E("Provision:Policies", E("Provision:Policy", *pol)))
    return encode(E("Provision:Provision", *kids))


def provision(c, version="14.1", device="raw1") -> int:
    """Both phases -> the final policy key."""
    r1 = decode(post(c, "Provision", provision_body(), version=version, device=device).content)
    temp = r1.find("Provision:Policies").find("Provision:Policy").child_text("Provision:PolicyKey")
    r2 = decode(post(c, "Provision", provision_body(temp), version=version,
                     device=device).content)
    return int(r2.find("Provision:Policies").find("Provision:Policy")
               .child_text("Provision:PolicyKey"))


def folder_sync(c, key, sync_key="0", version="14.1", device="raw1"):
    r = post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
             E("FolderHierarchy:SyncKey", text=str(sync_key)))),
             version=version, device=device, key=key)
    assert r.status_code == 200, r.text
    return decode(r.content)


def changes(doc):
    ch = doc.find("FolderHierarchy:Changes")
    out = []
    for c in ch.children if ch is not None else []:
        if c.tag == "Count":
            continue
        out.append((c.tag, c.child_text("FolderHierarchy:ServerId"),
                    c.child_text("FolderHierarchy:DisplayName")))
    return out


# --- pyactivesync ----------------------------------------------------------------------------

async def test_pyactivesync_provision_and_folder_list(srv):
    def go():
        with eas_client(srv) as c:
            key = c.provision()
            return key, c.list_folders()

    key, folders = await run(go)
    assert int(key) > 0
    with srv.store.view() as v:
        acc = v.account_by_name("alice").id
        mbx = {ids.mailbox_id(m.id): m for m in v.mailboxes(acc)}
        prov = v.device_state(acc, "dev1", "prov")
    assert b'"key":' + key.encode() in prov and b"pyactivesync" in prov    # DeviceInformation
    by_name = {f.name: f for f in folders}
    assert {f.id for f in folders} == set(mbx)
    assert by_name["INBOX"].type == FolderType.INBOX
    assert by_name["Drafts"].type == FolderType.DRAFTS
    assert by_name["Sent"].type == FolderType.SENT_ITEMS
    assert by_name["Trash"].type == FolderType.DELETED_ITEMS
    assert by_name["Archive"].type == FolderType(12) and by_name["Archive"].parent_id == "0"


async def test_pyactivesync_sees_a_new_child_folder(srv):
    acc = accounts.lookup(srv.store, "alice").id
    with srv.store.view() as v:
        inbox = v.mailbox_by_role(acc, "inbox").id
    child = srv.store.write_sync(ops.create_mailbox, acc, inbox, "Work")

    def go():
        with eas_client(srv) as c:
            c.provision()
            return c.list_folders()

    folders = await run(go)
    work = [f for f in folders if f.name == "Work"][0]
    assert work.id == ids.mailbox_id(child) and work.parent_id == ids.mailbox_id(inbox)
    assert work.type == FolderType(12)


# --- OPTIONS -----------------------------------------------------------------------------------

async def test_options_advertises_versions_and_only_implemented_commands(srv):
    def go():
        with http(srv) as c:
            return (c.options("/Microsoft-Server-ActiveSync"),
                    c.options("/microsoft-server-activesync"),
                    httpx.options(base(srv) + "/Microsoft-Server-ActiveSync"))

    r, lower, anon = await run(go)
    assert r.status_code == 200 and lower.status_code == 200
    assert r.headers["ms-asprotocolversions"] == "12.1,14.0,14.1,16.0,16.1"
    # exactly the registered commands (eas.EAS_COMMAND_MODULES), nothing planned
    from mailaccess.server import eas
    advertised = r.headers["ms-asprotocolcommands"].split(",")
    assert advertised == list(eas.HANDLERS)
    assert {"Provision", "FolderSync"} <= set(advertised)
    assert r.headers["ms-server-activesync"]
    assert anon.status_code == 401
    assert any(v.startswith("Basic") for v in anon.headers.get_list("www-authenticate"))


# --- transport errors --------------------------------------------------------------------------

async def test_versions_auth_and_malformed_requests(srv):
    def go():
        with http(srv) as c, http(srv, pw="wrong") as bad, http(srv, user=None) as anon:
            body = provision_body()
            return {
                "ok": post(c, "Provision", body).status_code,
                "v16.1": post(c, "Provision", body, version="16.1").status_code,
                "v12.1": post(c, "Provision", body, version="12.1").status_code,
                "v2.5": post(c, "Provision", body, version="2.5"),
                "v15.0": post(c, "Provision", body, version="15.0").status_code,
                "none": post(c, "Provision", body, version=None).status_code,
                "badpw": post(bad, "Provision", body),
                "anon": post(anon, "Provision", body).status_code,
                "nocmd": c.post("/Microsoft-Server-ActiveSync?User=a&DeviceId=x&DeviceType=y",
                                headers={"ms-asprotocolversion": "14.1"}).status_code,
                "unknowncmd": post(c, "Bogus", body).status_code,
                # a command of the protocol the server does not implement (if any)
                "notimpl": post(c, min(R.COMMANDS - set(eas.HANDLERS)), body,
                                version="12.1").status_code
                if R.COMMANDS - set(eas.HANDLERS) else 501,
                "nodev": c.post("/Microsoft-Server-ActiveSync?Cmd=Provision&User=a"
                                "&DeviceType=y", content=body,
                                headers={"ms-asprotocolversion": "14.1"}).status_code,
                "badkey": post(c, "FolderSync", b"", key="12x").status_code,
                "case": post(c, "Provision", body,
                             path="/MICROSOFT-SERVER-ACTIVESYNC").status_code,
            }

    r = await run(go)
    assert r["ok"] == r["v16.1"] == r["v12.1"] == r["case"] == 200
    assert r["v2.5"].status_code == 400
    assert r["v2.5"].headers["ms-asprotocolversions"] == "12.1,14.0,14.1,16.0,16.1"
    assert r["v15.0"] == r["none"] == 400
    assert r["badpw"].status_code == 401 and r["anon"] == 401
    assert r["nocmd"] == r["unknowncmd"] == r["nodev"] == r["badkey"] == 400
    assert r["notimpl"] == 501


async def test_configured_versions_limit_what_is_accepted(tmp_path, nursery):
    from mailaccess.server import app

    c = make_config(tmp_path)
    c = dataclasses.replace(c, eas=dataclasses.replace(c.eas, versions=("14.1",)))
    ctx = await nursery.start(lambda task_status: app.serve(c, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")

    def go():
        with http(ctx) as h:
            return (h.options("/Microsoft-Server-ActiveSync"),
                    post(h, "Provision", provision_body(), version="16.1").status_code,
                    post(h, "Provision", provision_body(), version="14.1").status_code)

    opt, v16, v14 = await run(go)
    assert opt.headers["ms-asprotocolversions"] == "14.1"
    assert (v16, v14) == (400, 200)
    nursery.cancel_scope.cancel()


async def test_bad_wbxml_is_102_for_14_and_400_for_12(srv):
    deep = bytes((3, 1, 106, 0)) + bytes((0, 7)) + bytes((0x56,)) * 200   # FolderSync nested
    unknown_page = bytes((3, 1, 106, 0, 0, 99, 0x45, 1))
    truncated = provision_body()[:-3]

    def go():
        with http(srv) as c:
            key = provision(c)
            key12 = provision(c, version="12.1", device="old1")
            out = {}
            for name, body in (("deep", deep), ("page", unknown_page), ("trunc", truncated)):
                out[name] = post(c, "FolderSync", body, key=key)
                out[name + "12"] = post(c, "FolderSync", body, version="12.1", device="old1",
                                        key=key12)
            out["after"] = folder_sync(c, key)
            return out

    out = await run(go)
    for name in ("deep", "page", "trunc"):
        r = out[name]
        assert r.status_code == 200 and r.headers["content-type"] == WBXML
        doc = decode(r.content)
        assert doc.qname == "FolderHierarchy:FolderSync"
        assert doc.child_text("FolderHierarchy:Status") == "102", name
        assert out[name + "12"].status_code == 400
    assert out["after"].child_text("FolderHierarchy:Status") == "1"     # still serving


async def test_base64_query_form(srv):
    req = R.EasRequest(cmd="Provision", user="alice", device_id="0a1b2c3d", device_type="Win",
                       version="14.1", policy_key=None, locale=0x0409)

    def go():
        with http(srv) as c:
            q = base64.b64encode(R.encode_binary(req)).decode()
            r1 = c.post("/Microsoft-Server-ActiveSync?" + q.replace("=", "%3D"),
                        content=provision_body(), headers={"content-type": WBXML})
            temp = decode(r1.content).find("Provision:Policies").find(
                "Provision:Policy").child_text("Provision:PolicyKey")
            q2 = base64.b64encode(R.encode_binary(req)).decode()
            r2 = c.post("/Microsoft-Server-ActiveSync?" + q2, content=provision_body(temp),
                        headers={"content-type": WBXML})
            final = int(decode(r2.content).find("Provision:Policies").find(
                "Provision:Policy").child_text("Provision:PolicyKey"))
            fs = dataclasses.replace(req, cmd="FolderSync", policy_key=final)
            body = encode(E("FolderHierarchy:FolderSync", E("FolderHierarchy:SyncKey", text="0")))
            r3 = c.post("/Microsoft-Server-ActiveSync?"
                        + base64.b64encode(R.encode_binary(fs)).decode(), content=body,
                        headers={"content-type": WBXML})
            bad = c.post("/Microsoft-Server-ActiveSync?" + base64.b64encode(
                R.encode_binary(fs)[:-3]).decode(), content=body, headers={"content-type": WBXML})
            v = dataclasses.replace(fs, version="2.5")
            badv = c.post("/Microsoft-Server-ActiveSync?" + base64.b64encode(
                R.encode_binary(v)).decode(), content=body, headers={"content-type": WBXML})
            return r1, r3, bad, badv

    r1, r3, bad, badv = await run(go)
    assert r1.status_code == 200
    assert r3.status_code == 200
    doc = decode(r3.content)
    assert doc.child_text("FolderHierarchy:Status") == "1" and changes(doc)
    assert bad.status_code == 400 and badv.status_code == 400
    acc = accounts.lookup(srv.store, "alice").id
    with srv.store.view() as v:
        assert v.device_state(acc, "0a1b2c3d", "prov") is not None


async def test_bearer_token_and_app_password(srv):
    acc = accounts.lookup(srv.store, "alice").id
    secret = await trio.to_thread.run_sync(tokens.add, srv.store, "alice", "phone")

    def go():
        with httpx.Client(base_url=base(srv), timeout=30,
                          headers={"authorization": "Bearer " + secret}) as c:
            a = post(c, "Provision", provision_body()).status_code
        with http(srv, pw=secret) as c:
            b = post(c, "Provision", provision_body()).status_code
        with httpx.Client(base_url=base(srv), timeout=30,
                          headers={"authorization": "Bearer mat_nope"}) as c:
            d = post(c, "Provision", provision_body()).status_code
        return a, b, d

    assert await run(go) == (200, 200, 401)


# --- Provision ---------------------------------------------------------------------------------

async def test_provision_two_phases_and_policy_statuses(srv):
    def go():
        with http(srv) as c:
            out = {}
            r1 = post(c, "Provision", provision_body(info=True))
            out["r1"] = decode(r1.content)
            out["r1_apy"] = WBXMLReader(r1.content).parse()
            pol = out["r1"].find("Provision:Policies").find("Provision:Policy")
            temp = pol.child_text("Provision:PolicyKey")
            # the temporary key is no policy key for other commands
            out["with_temp"] = folder_sync(c, temp)
            out["wrong_ack"] = decode(post(c, "Provision", provision_body(int(temp) ^ 1)).content)
            r2 = decode(post(c, "Provision", provision_body(temp)).content)
            out["r2"] = r2
            final = r2.find("Provision:Policies").find("Provision:Policy").child_text(
                "Provision:PolicyKey")
            out["final"] = final
            out["no_key"] = folder_sync(c, None)
            out["bad_key"] = folder_sync(c, int(final) ^ 0x55)
            out["good"] = folder_sync(c, final)
            out["old_dev"] = post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                                  E("FolderHierarchy:SyncKey", text="0"))),
                                  version="12.1", device="other")
            out["replay_temp"] = decode(post(c, "Provision", provision_body(temp)).content)
            return out

    o = await run(go)
    r1 = o["r1"]
    assert r1.child_text("Provision:Status") == "1"
    assert r1.find("Settings:DeviceInformation").child_text("Settings:Status") == "1"
    pol = r1.find("Provision:Policies").find("Provision:Policy")
    assert pol.child_text("Provision:PolicyType") == "MS-EAS-Provisioning-WBXML"
    doc = pol.find("Provision:Data").find("Provision:EASProvisionDoc")
    assert doc.child_text("Provision:DevicePasswordEnabled") == "0"
    assert doc.child_text("Provision:RequireDeviceEncryption") == "0"
    assert o["with_temp"].child_text("FolderHierarchy:Status") == "144"
    wrong = o["wrong_ack"].find("Provision:Policies").find("Provision:Policy")
    assert wrong.child_text("Provision:Status") == "5" and wrong.find("Provision:PolicyKey") \
        is None
    pol2 = o["r2"].find("Provision:Policies").find("Provision:Policy")
    assert pol2.child_text("Provision:Status") == "1" and pol2.find("Provision:Data") is None
    assert o["final"] != pol.child_text("Provision:PolicyKey")
    assert o["no_key"].child_text("FolderHierarchy:Status") == "142"
    assert o["bad_key"].child_text("FolderHierarchy:Status") == "144"
    assert o["good"].child_text("FolderHierarchy:Status") == "1"
    assert o["old_dev"].status_code == 449
    # a temporary key is good for one acknowledgement
    assert o["replay_temp"].find("Provision:Policies").find("Provision:Policy").child_text(
        "Provision:Status") == "5"
    # pyactivesync's codec reads our answer the same way
    from pyactivesync._wbxml import find, text_of
    assert text_of(find(o["r1_apy"], "Provision.PolicyKey")) == pol.child_text(
        "Provision:PolicyKey")


async def test_changed_policy_asks_for_refresh(srv):
    def go():
        with http(srv) as c:
            return provision(c)

    key = await run(go)
    from mailaccess.server.http import service_of
    svc = service_of(srv)
    from mailaccess.server import eas as eas_mod
    post_route = [r for r in svc.routes if r.path == eas_mod.PATH and r.method == "POST"][0]
    e = post_route.handler.__self__
    e.cfg = dataclasses.replace(e.cfg, device_password_enabled=True)

    def go2():
        with http(srv) as c:
            a = folder_sync(c, key)
            r1 = decode(post(c, "Provision", provision_body()).content)
            doc = r1.find("Provision:Policies").find("Provision:Policy").find(
                "Provision:Data").find("Provision:EASProvisionDoc")
            return a, doc.child_text("Provision:DevicePasswordEnabled"), folder_sync(
                c, provision(c))

    a, pw, again = await run(go2)
    assert a.child_text("FolderHierarchy:Status") == "143"
    assert pw == "1"
    assert again.child_text("FolderHierarchy:Status") == "1"


# --- FolderSync --------------------------------------------------------------------------------

async def test_folder_sync_incremental_replay_and_bad_key(srv):
    acc = accounts.lookup(srv.store, "alice").id

    def first():
        with http(srv) as c:
            key = provision(c)
            return key, folder_sync(c, key)

    key, full = await run(first)
    k1 = full.child_text("FolderHierarchy:SyncKey")
    assert k1 != "0" and len(changes(full)) == int(
        full.find("FolderHierarchy:Changes").child_text("FolderHierarchy:Count"))
    with srv.store.view() as v:
        archive = v.mailbox_by_role(acc, "archive").id
        trash = v.mailbox_by_role(acc, "trash").id
    new = srv.store.write_sync(ops.create_mailbox, acc, 0, "Projects")
    sub = srv.store.write_sync(ops.create_mailbox, acc, new, "Q3")
    srv.store.write_sync(ops.delete_mailbox, acc, archive)
    srv.store.write_sync(ops.rename_mailbox, acc, trash, 0, "Bin")

    def second():
        with http(srv) as c:
            same = folder_sync(c, key, k1)       # nothing seen yet: the changes
            k2 = same.child_text("FolderHierarchy:SyncKey")
            replay = folder_sync(c, key, k1)     # the answer was lost: same again
            k3 = replay.child_text("FolderHierarchy:SyncKey")
            quiet = folder_sync(c, key, k3)
            stale = folder_sync(c, key, "999")
            garbage = folder_sync(c, key, "abc")
            return same, k2, replay, k3, quiet, stale, garbage

    same, k2, replay, k3, quiet, stale, garbage = await run(second)
    want = [("Update", ids.mailbox_id(trash), "Bin"), ("Delete", ids.mailbox_id(archive), None),
            ("Add", ids.mailbox_id(new), "Projects"), ("Add", ids.mailbox_id(sub), "Q3")]
    assert changes(same) == want
    assert changes(replay) == want
    assert k2 != k1 and k3 != k1
    assert changes(quiet) == [] and quiet.child_text("FolderHierarchy:SyncKey") == k3
    assert stale.child_text("FolderHierarchy:Status") == "9"
    assert garbage.child_text("FolderHierarchy:Status") == "9"


# --- remote wipe -------------------------------------------------------------------------------

async def test_remote_wipe(srv):
    from mailaccess.server import eas_provision as prov

    acc = accounts.lookup(srv.store, "alice").id

    def setup():
        with http(srv) as c:
            return provision(c), provision(c, version="12.1", device="old1")

    key, key12 = await run(setup)
    await trio.to_thread.run_sync(prov.request_wipe, srv.store, acc, "raw1")
    await trio.to_thread.run_sync(prov.request_wipe, srv.store, acc, "old1")

    def go():
        with http(srv) as c:
            fs = folder_sync(c, key)
            fs12 = post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                        E("FolderHierarchy:SyncKey", text="0"))), version="12.1",
                        device="old1", key=key12).status_code
            p1 = decode(post(c, "Provision", provision_body()).content)
            ack = decode(post(c, "Provision", encode(E("Provision:Provision", E(
                "Provision:RemoteWipe", E("Provision:Status", text="1"))))).content)
            again = decode(post(c, "Provision", provision_body()).content)
            other = folder_sync(c, provision(c, device="raw2"), device="raw2")
            return fs, fs12, p1, ack, again, other

    fs, fs12, p1, ack, again, other = await run(go)
    assert fs.child_text("FolderHierarchy:Status") == "140"
    assert fs12 == 449
    assert p1.child_text("Provision:Status") == "1" and p1.find("Provision:RemoteWipe") \
        is not None and p1.find("Provision:Policies") is None
    assert ack.child_text("Provision:Status") == "1" and ack.find("Provision:RemoteWipe") is None
    assert again.find("Provision:RemoteWipe") is not None      # wiped until forgotten
    assert other.child_text("FolderHierarchy:Status") == "1"   # other devices unaffected
    st = prov.device_status(srv.store, acc, "raw1")
    assert st["wipe"] == "done" and st["wipe_status"] == "1"
    await trio.to_thread.run_sync(prov.forget_device, srv.store, acc, "raw1")

    def after():
        with http(srv) as c:
            return folder_sync(c, provision(c))

    assert (await run(after)).child_text("FolderHierarchy:Status") == "1"


def test_eas_cli(tmp_path, capsys, monkeypatch):
    import io
    import json

    from mailaccess import cli
    from mailaccess.server import eas_provision as prov
    from mailaccess.store import Store

    d = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert cli.main(["user", "add", "carol", "--password-stdin"] + d) == 0
    assert cli.main(["eas", "status", "carol", "ph1"] + d) == 1
    assert cli.main(["eas", "wipe", "carol", "ph1"] + d) == 0
    capsys.readouterr()
    assert cli.main(["eas", "status", "carol", "ph1"] + d) == 0
    assert json.loads(capsys.readouterr().out) == {"wipe": "pending"}
    assert cli.main(["eas", "forget", "carol", "ph1"] + d) == 0
    assert cli.main(["eas", "status", "carol", "ph1"] + d) == 1
    assert cli.main(["eas", "wipe", "nobody", "ph1"] + d) != 0
    s = Store(tmp_path / "data" / "store")
    s.start()
    try:
        assert prov.device_status(s, accounts.lookup(s, "carol").id, "ph1") is None
    finally:
        s.close()


def test_eas_config_section(tmp_path):
    from mailaccess import config

    p = tmp_path / "c.toml"
    p.write_text('[eas]\nversions = ["14.1", "16.1"]\ndevice_password_enabled = true\n'
                 'min_password_length = 6\n')
    c = config.load(str(p))
    assert c.eas.versions == ("14.1", "16.1") and c.eas.device_password_enabled
    from mailaccess.server.eas_provision import policy_doc
    assert ("MinDevicePasswordLength", "6") in policy_doc(c.eas)
    for bad in ('versions = ["2.5"]', "versions = []", "max_body_bytes = 10",
                "unknown_thing = 1"):
        p.write_text("[eas]\n" + bad + "\n")
        with pytest.raises(config.ConfigError):
            config.load(str(p))


# --- limits and the credential cache --------------------------------------------------------------

async def test_concurrent_requests_per_user_are_capped_with_retry_after(srv):
    from contextlib import ExitStack

    from mailaccess.server.http import service_of

    svc = service_of(srv)
    acc = accounts.lookup(srv.store, "alice").id
    with ExitStack() as held:
        for _ in range(svc.slot_limits["eas"]):     # the user's other EAS requests, in flight
            held.enter_context(svc.slot("eas", acc))

        def busy():
            with http(srv) as c:
                return post(c, "Provision", provision_body())

        r = await run(busy)
        assert r.status_code == 503 and r.headers["retry-after"]
    with http(srv) as c:
        assert (await run(lambda: post(c, "Provision", provision_body()))).status_code == 200


async def test_basic_auth_goes_through_the_credential_cache(srv):
    auth = srv.auth
    calls = []
    real = auth.hasher.check

    def counting(*a):
        calls.append(1)
        return real(*a)

    auth.hasher.check = counting
    try:
        def go():
            with http(srv) as c:
                key = provision(c)
                return [folder_sync(c, key).child_text("FolderHierarchy:Status")
                        for _ in range(5)]

        assert await run(go) == ["1"] * 5
    finally:
        auth.hasher.check = real
    assert len(calls) <= 1          # 7 requests, at most one argon2 verification


@pytest.mark.parametrize("version", ["12.1", "14.0", "14.1", "16.0", "16.1"])
async def test_every_advertised_version_provisions_and_syncs_folders(srv, version):
    def go():
        with http(srv) as c:
            key = provision(c, version=version, device="v" + version.replace(".", ""))
            full = folder_sync(c, key, version=version, device="v" + version.replace(".", ""))
            info = post(c, "Provision", provision_body(info=True), version=version,
                        device="i" + version.replace(".", ""))
            return full, decode(info.content)

    full, info = await run(go)
    assert full.child_text("FolderHierarchy:Status") == "1" and len(changes(full)) >= 5
    # DeviceInformation in Provision is 14.1 and later
    want = "1" if version in ("14.1", "16.0", "16.1") else "2"
    assert info.child_text("Provision:Status") == want
