"""Bad WBXML at the service level, for every registered command
(server/eas.py HANDLERS, so commands added later are covered too) against
``serve``: truncated bodies and headers, too deep, over the body limit (413
before decoding), unknown code page, unknown tag, a string over the limit, bad
mb_u_int32s, a wrong WBXML version or charset.  For 14.0 and later each is
the common status 102 (InvalidWBXML, MS-ASCMD 2.2.2) in the command's own
response root; for 12.1 (no common status codes) HTTP 400; and the server
keeps serving the same device afterwards.  Also: the base64 query form and
OPTIONS for every advertised version (tests/test_eas_service.py covers the
base64 form at 14.1 and the plain form at every version)."""
from __future__ import annotations

import base64
import dataclasses

import httpx
import pytest

from conftest import make_config
from eas_helpers import provision
from imap_helpers import run
from mailaccess import accounts
from mailaccess.proto.eas import codepages
from mailaccess.proto.eas import request as R
from mailaccess.proto.eas.wbxml import HEADER, E, decode, encode
from mailaccess.server.eas import HANDLERS

import trio

WBXML = "application/vnd.ms-sync.wbxml"
LIMIT = 64 * 1024                      # [eas] max_body_bytes here
VERSIONS = ("12.1", "14.0", "14.1", "16.0", "16.1")


@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, eas=dataclasses.replace(c.eas, max_body_bytes=LIMIT))


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    return server


def http(ctx) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{ctx.bound['http'][0][1]}",
                        auth=("alice", "pw"), timeout=30)


def post(c, cmd, body: bytes, *, version, device, key=None):
    headers = {"content-type": WBXML, "ms-asprotocolversion": version}
    if key is not None:
        headers["x-ms-policykey"] = str(key)
    return c.post("/Microsoft-Server-ActiveSync", content=body, headers=headers,
                  params={"Cmd": cmd, "User": "alice", "DeviceId": device, "DeviceType": "t"})


def provision_body(key=None):
    pol = [E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML")]
    if key is not None:
        pol += [E("Provision:PolicyKey", text=str(key)), E("Provision:Status", text="1")]
    return encode(E("Provision:Provision", E("Provision:Policies", E("Provision:Policy", *pol))))


def policy_key(doc) -> str:
    return doc.find("Provision:Policies").find("Provision:Policy").child_text("Provision:PolicyKey")


def folder_sync_status(c, key, version, device) -> str:
    r = post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                                       E("FolderHierarchy:SyncKey", text="0"))),
             version=version, device=device, key=key)
    assert r.status_code == 200, r.text
    return decode(r.content).child_text("FolderHierarchy:Status")


def bad_bodies(root: str, status_tag: str) -> dict[str, bytes]:
    """Malformed requests shaped like the command's own (its root element)."""
    ns, _, tag = root.partition(":")
    page = codepages.PAGE_OF[ns]
    token = codepages.TOKENS[page][tag]
    start = HEADER + (bytes((0, page)) if page else b"") + bytes((token | 0x40,))
    good = encode(E(root, E(status_tag, text="1")))
    gaps = [t for t in range(0x05, 0x40) if t not in codepages.TAGS[page]]
    unknown = bytes((gaps[0],)) if gaps else bytes((0, 0, 0x2A))
    return {
        "truncated": good[:-2],
        "truncated-in-a-string": good[:-4],
        "truncated-header": good[:3],
        "empty-document": HEADER,
        "too-deep": start + bytes((0, 0)) + b"\x4F" * 40 + b"\x01" * 41,    # 41 > 32 levels
        "unknown-page": start + bytes((0, 26, 0x45, 1, 1)),
        "unknown-page-99": start + bytes((0, 99, 0x45, 1, 1)),
        "unknown-tag": start + unknown + b"\x01",
        "string-over-the-limit": encode(E(root, E(status_tag, text="a" * (LIMIT // 2 + 1)))),
        "mb-u-int32-six-bytes": start + bytes.fromhex("C3 FF FF FF FF FF 7F 01"),
        "mb-u-int32-over-2**32": start + bytes.fromhex("C3 9F FF FF FF 7F 01"),
        "mb-u-int32-truncated": start + bytes.fromhex("C3 FF FF"),
        "opaque-longer-than-the-body": start + bytes.fromhex("C3 8F FF FF FF 7F 01"),
        "wbxml-version-1.2": b"\x02" + good[1:],
        "charset-iso-8859-1": good[:2] + b"\x04" + good[3:],
        "charset-as-bad-mb": good[:2] + bytes.fromhex("FF FF FF FF FF 7F") + good[3:],
        "attribute-bit": start + b"\xC5\x01\x01",
        "text-outside-the-root": good + b"\x03a\x00",
        "bad-utf8": encode(E(root, E(status_tag, text="xy")))[:-4] + b"\xff\xfe\x00\x01\x01",
    }


def test_the_bodies_are_what_they_say():
    # each is refused by the codec for the reason it is named after (the
    # service maps every one to 102/400): checked here so a body that
    # silently became valid cannot make the service test pass vacuously
    from mailaccess.proto.eas.wbxml import Limits, WbxmlError
    lim = Limits(max_size=LIMIT, max_depth=32, max_elements=100_000, max_string=LIMIT // 2)
    want = {"truncated": "truncated", "truncated-in-a-string": "truncated",
            "truncated-header": "truncated", "empty-document": "no-root",
            "too-deep": "too-deep", "unknown-page": "unknown-page",
            "unknown-page-99": "unknown-page", "unknown-tag": "unknown-tag",
            "string-over-the-limit": "string-too-long",
            "mb-u-int32-six-bytes": "mb-u-int32-too-long",
            "mb-u-int32-over-2**32": "mb-u-int32-range", "mb-u-int32-truncated": "truncated",
            "opaque-longer-than-the-body": "opaque-too-long",
            "wbxml-version-1.2": "bad-version", "charset-iso-8859-1": "bad-charset",
            "charset-as-bad-mb": "mb-u-int32-too-long", "attribute-bit": "attributes",
            "text-outside-the-root": "text-outside-root", "bad-utf8": "bad-utf8"}
    for name, c in HANDLERS.items():
        bodies = bad_bodies(c.root, c.status_tag)
        assert set(bodies) == set(want)
        for case, body in bodies.items():
            assert len(body) <= LIMIT
            with pytest.raises(WbxmlError) as e:
                decode(body, lim)
            assert e.value.reason == want[case], (name, case)


@pytest.mark.parametrize("version", ["12.1", "14.0", "16.1"])
async def test_bad_wbxml_for_every_command(srv, version):
    device = "bad" + version.replace(".", "")

    def go():
        out = {}
        with http(srv) as c:
            key = provision(c, version, device)
            for name, cmd in HANDLERS.items():
                for case, body in bad_bodies(cmd.root, cmd.status_tag).items():
                    out[name, case] = post(c, name, body, version=version, device=device,
                                           key=key)
                huge = encode(E(cmd.root, E(cmd.status_tag, text="1"))) + b"\x00" * LIMIT
                out[name, "huge"] = post(c, name, huge, version=version, device=device, key=key)
            # still serving this device, with its policy key and its state
            after = folder_sync_status(c, key, version, device)
            again = provision(c, version, device)
        return out, after, again

    out, after, again = await run(go)
    assert after == "1" and again > 0
    for (name, case), r in out.items():
        cmd = HANDLERS[name]
        if case == "huge":
            assert r.status_code == 413, (name, case)
        elif version == "12.1":
            assert r.status_code == 400, (name, case, r.status_code)
        else:
            assert r.status_code == 200, (name, case, r.status_code)
            assert r.headers["content-type"] == WBXML
            assert decode(r.content) == E(cmd.root, E(cmd.status_tag, text="102")), (name, case)


async def test_many_bad_requests_then_good_ones_from_other_devices(srv):
    # a burst of bad bodies from one device neither blocks nor poisons others
    bodies = list(bad_bodies("FolderHierarchy:FolderSync", "FolderHierarchy:Status").values())

    def go():
        with http(srv) as c:
            key = provision(c, "16.1", "noisy")
            codes = {post(c, "FolderSync", b, version="16.1", device="noisy", key=key).status_code
                     for b in bodies * 5}
            other = provision(c, "14.1", "quiet")
            return codes, folder_sync_status(c, other, "14.1", "quiet"), \
                folder_sync_status(c, key, "16.1", "noisy")

    codes, quiet, noisy = await run(go)
    assert codes == {200} and quiet == noisy == "1"


# ---- every advertised version: base64 query form, OPTIONS -------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
async def test_base64_query_form_at_every_version(srv, version):
    device = "b64" + version.replace(".", "")
    req = R.EasRequest(cmd="Provision", user="alice", device_id=device, device_type="Win",
                       version=version, policy_key=None, locale=0x0409)

    def b64post(c, r, body):
        q = base64.b64encode(R.encode_binary(r)).decode()
        return c.post("/Microsoft-Server-ActiveSync?" + q, content=body,
                      headers={"content-type": WBXML})

    def go():
        with http(srv) as c:
            r1 = b64post(c, req, provision_body())
            temp = policy_key(decode(r1.content))
            r2 = b64post(c, req, provision_body(temp))
            final = int(policy_key(decode(r2.content)))
            fs = dataclasses.replace(req, cmd="FolderSync", policy_key=final)
            body = encode(E("FolderHierarchy:FolderSync", E("FolderHierarchy:SyncKey", text="0")))
            r3 = b64post(c, fs, body)
            # without the policy key: 449 for 12.x, status 142 (not provisioned
            # as far as the request says) for 14.0+
            r4 = b64post(c, dataclasses.replace(fs, policy_key=None), body)
            bad = b64post(c, fs, HEADER + b"\x00\x07\x56")          # truncated WBXML
            return r1, r2, r3, r4, bad

    r1, r2, r3, r4, bad = await run(go)
    assert r1.status_code == r2.status_code == r3.status_code == 200
    doc = decode(r3.content)
    assert doc.child_text("FolderHierarchy:Status") == "1"
    assert len(doc.find("FolderHierarchy:Changes").findall("FolderHierarchy:Add")) >= 5
    if version == "12.1":
        assert r4.status_code == 449 and bad.status_code == 400
    else:
        assert decode(r4.content).child_text("FolderHierarchy:Status") in ("142", "144")
        assert decode(bad.content) == E("FolderHierarchy:FolderSync",
                                        E("FolderHierarchy:Status", text="102"))


@pytest.mark.parametrize("version", VERSIONS + (None,))
async def test_options_the_same_whatever_version_the_client_names(srv, version):
    def go():
        with http(srv) as c:
            headers = {"ms-asprotocolversion": version} if version else {}
            return c.options("/Microsoft-Server-ActiveSync", headers=headers)

    r = await run(go)
    assert r.status_code == 200
    assert r.headers["ms-asprotocolversions"] == ",".join(VERSIONS)
    assert r.headers["ms-asprotocolcommands"].split(",") == list(HANDLERS)
    assert r.headers["ms-server-activesync"]
