"""Autodiscover (server/autodiscover.py) against ``serve`` with httpx: the
mobilesync XML answer (authenticated, any path case, Url from public_url or
Host), the Outlook schema refused with ErrorCode 601, bad XML / DTDs /
entity expansion / deep or huge bodies refused (600 or 413) while the server
keeps serving, and the anonymous v2 JSON endpoint."""
import dataclasses
import xml.etree.ElementTree as ET

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import trio

from conftest import make_config, port_of
from imap_helpers import run
from mailaccess import accounts
from mailaccess.server import autodiscover as AD

NS_R = "{" + AD.NS_RESPONSE + "}"
NS_M = "{" + AD.NS_MOBILE_RESPONSE + "}"

MOBILE_REQ = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    f'<Autodiscover xmlns="{AD.NS_MOBILE_REQUEST}"><Request>'
    "<EMailAddress>alice@example.org</EMailAddress>"
    f"<AcceptableResponseSchema>{AD.NS_MOBILE_RESPONSE}</AcceptableResponseSchema>"
    "</Request></Autodiscover>").encode()

OUTLOOK_REQ = (
    f'<Autodiscover xmlns="{AD.NS_OUTLOOK_REQUEST}"><Request>'
    "<EMailAddress>alice@example.org</EMailAddress>"
    "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/"
    "responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>").encode()


@pytest.fixture
def cfg(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    return server


def client(ctx, auth=("alice", "pw")) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port_of(ctx, 'http')}", auth=auth,
                        timeout=30)


def error_code(r) -> tuple[str, str]:
    root = ET.fromstring(r.content)
    err = root.find(f"{NS_R}Response/{NS_R}Error")
    return err.findtext(f"{NS_R}ErrorCode"), err.findtext(f"{NS_R}Message")


async def test_mobilesync_answer(srv):
    def go():
        with client(srv) as c:
            r = c.post("/autodiscover/autodiscover.xml", content=MOBILE_REQ,
                       headers={"content-type": "text/xml"})
            r2 = c.post("/AutoDiscover/AutoDiscover.xml", content=MOBILE_REQ,
                        headers={"host": "mail.example.org"})
            anon = client(srv, auth=None).post("/autodiscover/autodiscover.xml",
                                               content=MOBILE_REQ)
            return r, r2, anon
    r, r2, anon = await run(go)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    resp = ET.fromstring(r.content).find(f"{NS_M}Response")
    assert resp.findtext(f"{NS_M}Culture") == "en:us"
    assert resp.findtext(f"{NS_M}User/{NS_M}EMailAddress") == "alice@example.org"
    assert resp.findtext(f"{NS_M}User/{NS_M}DisplayName") == "alice"
    server = resp.find(f"{NS_M}Action/{NS_M}Settings/{NS_M}Server")
    assert server.findtext(f"{NS_M}Type") == "MobileSync"
    port = port_of(srv, "http")
    assert server.findtext(f"{NS_M}Url") == f"http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"
    url2 = ET.fromstring(r2.content).find(f"{NS_M}Response/{NS_M}Action/{NS_M}Settings/"
                                          f"{NS_M}Server/{NS_M}Url").text
    assert url2 == "http://mail.example.org/Microsoft-Server-ActiveSync"
    assert anon.status_code == 401 and "basic" in anon.headers["www-authenticate"].lower()


async def test_public_url(tmp_path, nursery):
    from mailaccess.server import app
    cfg = make_config(tmp_path)
    cfg = dataclasses.replace(cfg, http=dataclasses.replace(
        cfg.http, public_url="https://mail.example.net/"))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")

    def go():
        with client(ctx) as c:
            return (c.post("/autodiscover/autodiscover.xml", content=MOBILE_REQ),
                    c.get("/autodiscover/autodiscover.json",
                          params={"Email": "alice@example.org", "Protocol": "ActiveSync"}))
    r, j = await run(go)
    assert b"<Url>https://mail.example.net/Microsoft-Server-ActiveSync</Url>" in r.content
    assert j.json() == {"Protocol": "ActiveSync",
                        "Url": "https://mail.example.net/Microsoft-Server-ActiveSync"}
    nursery.cancel_scope.cancel()


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<Autodiscover xmlns="' + AD.NS_MOBILE_REQUEST.encode() + b'"><Request>'
    b"<EMailAddress>&lol3;</EMailAddress></Request></Autodiscover>")

EXTERNAL = (
    b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<Autodiscover xmlns="' + AD.NS_MOBILE_REQUEST.encode() + b'"><Request>'
    b"<EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>")


async def test_errors_and_hostile_bodies(srv):
    deep = b"<Autodiscover>" + b"<a>" * 50 + b"</a>" * 50 + b"</Autodiscover>"

    def go():
        out = {}
        with client(srv) as c:
            def post(body):
                return c.post("/autodiscover/autodiscover.xml", content=body)
            out["outlook"] = post(OUTLOOK_REQ)
            out["other_schema"] = post(MOBILE_REQ.replace(b"mobilesync/responseschema",
                                                          b"foo/responseschema"))
            for name, body in [("bad", b"<Autodiscover><Request>"), ("empty", b""),
                               ("not_xml", b"hello"), ("laughs", BILLION_LAUGHS),
                               ("external", EXTERNAL), ("deep", deep),
                               ("wrong_root", b"<Other/>"),
                               ("no_email", MOBILE_REQ.replace(
                                   b"<EMailAddress>alice@example.org</EMailAddress>", b""))]:
                out[name] = post(body)
            out["huge"] = post(b"<Autodiscover>" + b" " * (AD.MAX_BODY + 1) + b"</Autodiscover>")
            out["after"] = post(MOBILE_REQ)
        return out
    out = await run(go)
    code, message = error_code(out["outlook"])
    assert out["outlook"].status_code == 200 and code == "601"
    assert "ActiveSync" in message
    assert error_code(out["other_schema"])[0] == "601"
    for name in ("bad", "empty", "not_xml", "laughs", "external", "deep", "wrong_root",
                 "no_email"):
        assert out[name].status_code == 200, name
        assert error_code(out[name])[0] == "600", name
    assert b"root:" not in out["external"].content and b"lollol" not in out["laughs"].content
    assert out["huge"].status_code == 413
    assert out["after"].status_code == 200 and b"MobileSync" in out["after"].content


def test_parser_refuses_dtds_without_expanding():
    with pytest.raises(AD.BadRequest):
        AD.parse_request(BILLION_LAUGHS)
    with pytest.raises(AD.BadRequest):
        AD.parse_request(EXTERNAL)
    with pytest.raises(AD.BadRequest):
        AD.parse_request(b'<!DOCTYPE Autodiscover><Autodiscover/>')
    r = AD.parse_request(MOBILE_REQ)
    assert r.root_ns == AD.NS_MOBILE_REQUEST
    assert r.fields == {"EMailAddress": "alice@example.org",
                        "AcceptableResponseSchema": AD.NS_MOBILE_RESPONSE}


async def test_json_v2(srv):
    port = port_of(srv, "http")

    def go():
        with client(srv, auth=None) as c:
            return {
                "ok": c.get("/autodiscover/autodiscover.json",
                            params={"Email": "alice@example.org", "Protocol": "ActiveSync"}),
                "case": c.get("/Autodiscover/Autodiscover.json",
                              params={"email": "alice@example.org", "protocol": "activesync"}),
                "v1path": c.get("/autodiscover/autodiscover.json/v1.0/alice@example.org",
                                params={"Protocol": "ActiveSync"}),
                "v1": c.get("/autodiscover/autodiscover.json",
                            params={"Email": "alice@example.org", "Protocol": "AutodiscoverV1"}),
                "ews": c.get("/autodiscover/autodiscover.json",
                             params={"Email": "alice@example.org", "Protocol": "Ews"}),
                "none": c.get("/autodiscover/autodiscover.json",
                              params={"Email": "alice@example.org"}),
                "no_email": c.get("/autodiscover/autodiscover.json",
                                  params={"Protocol": "ActiveSync"}),
                "other_path": c.get("/autodiscover/autodiscover.jsonx"),
            }
    out = await run(go)
    url = f"http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"
    for k in ("ok", "case", "v1path"):
        assert out[k].status_code == 200, k
        assert out[k].json() == {"Protocol": "ActiveSync", "Url": url}
    assert out["v1"].json() == {"Protocol": "AutodiscoverV1",
                                "Url": f"http://127.0.0.1:{port}/autodiscover/autodiscover.xml"}
    for k in ("ews", "none"):
        assert out[k].status_code == 400 and out[k].json()["ErrorCode"] == "InvalidProtocol"
    assert out["no_email"].status_code == 400
    assert out["other_path"].status_code == 404


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400),
                 st.builds(lambda a, b: a + b, st.sampled_from([MOBILE_REQ, OUTLOOK_REQ,
                                                                BILLION_LAUGHS, EXTERNAL]),
                           st.binary(max_size=40)),
                 st.builds(lambda r, i: r[:i], st.sampled_from([MOBILE_REQ, BILLION_LAUGHS]),
                           st.integers(0, 400))))
def test_parser_answers_any_bytes_with_a_request_or_bad_request(body):
    try:
        r = AD.parse_request(body)
    except AD.BadRequest:
        return
    assert r.root == "Autodiscover"
    assert all(len(v) <= AD.MAX_TEXT for v in r.fields.values())
