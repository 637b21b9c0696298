"""JMAP over HTTP end to end (server/jmap.py, jmap_session.py, jmap_blobs.py):
the Session resource, the API endpoint's request-level errors, upload and
download (message, upload and part blobs; other accounts' blobs are 404),
Blob/copy, Bearer tokens.  Clients: httpx (a third-party HTTP client), run in
a thread while the server runs on the loop."""
import base64
import dataclasses
import hashlib
import json

import httpx
import pytest
import trio

from conftest import make_config
from imap_helpers import connect, msg, run
from mailaccess import accounts, ids, tokens
from mailaccess.proto.jmap import capabilities as cap

CORE = cap.CORE


@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, jmap=dataclasses.replace(c.jmap, max_size_upload=100_000,
                                                           max_calls_in_request=5,
                                                           max_pending_upload_bytes=150_000))


@pytest.fixture
async def srv(server):
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def base(ctx) -> str:
    return f"http://127.0.0.1:{ctx.bound['http'][0][1]}"


def client(ctx, user="alice", pw="pw", **kw) -> httpx.Client:
    return httpx.Client(base_url=base(ctx), auth=(user, pw) if user else None, timeout=30,
                        **kw)


def api(c: httpx.Client, calls, using=(CORE,)) -> httpx.Response:
    return c.post("/jmap/api/", json={"using": list(using), "methodCalls": calls})


# --- the Session resource ------------------------------------------------------------------------

async def test_session_resource_and_well_known_redirect(srv):
    def go():
        with client(srv) as c:
            r = c.get("/.well-known/jmap")
            assert r.status_code == 307
            assert r.headers["location"] == base(srv) + "/jmap/session"
            r = c.get("/.well-known/jmap", follow_redirects=True)
            assert r.status_code == 200
            return r.json(), c.get("/jmap/session", headers={"Host": "mail.example.org:8443"}
                                   ).json()

    s, s2 = await run(go)
    acc = ids.account_id(accounts.lookup(srv.store, "alice").id)
    assert s["username"] == "alice"
    full = {CORE, cap.MAIL, cap.SUBMISSION, cap.VACATION}
    assert s["accounts"][acc]["name"] == "alice"
    assert s["accounts"][acc]["isPersonal"] is True and s["accounts"][acc]["isReadOnly"] is False
    assert set(s["accounts"][acc]["accountCapabilities"]) == full
    assert s["accounts"][acc]["accountCapabilities"][cap.SUBMISSION] == {
        "maxDelayedSend": 0, "submissionExtensions": {}}
    assert s["primaryAccounts"] == {c: acc for c in full}
    core = s["capabilities"][CORE]
    lim = srv.cfg.jmap
    assert core["maxSizeUpload"] == lim.max_size_upload == 100_000
    assert core["maxCallsInRequest"] == 5
    assert core["maxConcurrentRequests"] == lim.max_concurrent_requests
    assert set(core) >= {"maxConcurrentUpload", "maxSizeRequest", "maxObjectsInGet",
                         "maxObjectsInSet", "collationAlgorithms"}
    # every method of mail, submission and vacation is registered; the blob
    # capability (RFC 9404) is not, so it is not advertised
    assert full < set(s["capabilities"]) and cap.BLOB not in s["capabilities"]
    assert s["capabilities"][cap.WEBSOCKET] == {"url": base(srv).replace("http", "ws", 1)
                                                + "/jmap/ws/", "supportsPush": True}
    # absolute URLs from the Host the client used
    assert s["apiUrl"] == base(srv) + "/jmap/api/"
    assert s["downloadUrl"] == (base(srv) + "/jmap/download/{accountId}/{blobId}/{name}"
                                "?accept={type}")
    assert s["uploadUrl"] == base(srv) + "/jmap/upload/{accountId}/"
    assert s["eventSourceUrl"] == (base(srv) + "/jmap/eventsource/?types={types}"
                                   "&closeafter={closeafter}&ping={ping}")
    assert s2["apiUrl"] == "http://mail.example.org:8443/jmap/api/"
    assert s2["state"] == s["state"]


def test_advertised_capabilities_follow_the_registered_methods():
    from mailaccess.server import jmap_session as S

    core = S.REQUIRED_METHODS[CORE]
    mail = S.REQUIRED_METHODS[cap.MAIL]
    assert cap.MAIL not in S.advertised(set(core))
    assert cap.MAIL not in S.advertised(set(core) | set(mail[:-1]))
    assert cap.MAIL in S.advertised(set(core) | set(mail))
    assert S.advertised(set(mail)) == []          # nothing without core


async def test_public_url_is_used_for_every_url(tmp_path, nursery):
    from mailaccess.server import app

    c = make_config(tmp_path)
    cfg = dataclasses.replace(c, http=dataclasses.replace(
        c.http, public_url="https://mail.example.org/"))
    ctx = await nursery.start(lambda task_status: app.serve(cfg, task_status=task_status,
                                                             install_signals=False))
    await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
    s = await run(lambda: client(ctx).get("/jmap/session").json())
    assert s["apiUrl"] == "https://mail.example.org/jmap/api/"
    assert s["capabilities"][cap.WEBSOCKET]["url"] == "wss://mail.example.org/jmap/ws/"
    r = await run(lambda: client(ctx, None).get("/.well-known/jmap"))
    assert r.headers["location"] == "https://mail.example.org/jmap/session"


# --- the API endpoint --------------------------------------------------------------------------

async def test_api_deep_json_is_not_json_on_every_python(srv):
    """JSON nested deeper than proto/jmap/request.py's MAX_DEPTH is a 400
    notJSON: json.loads alone made 1200 deep a 500 on 3.11 and ran it on 3.12."""
    def go():
        out = []
        with client(srv) as c:
            for depth in (1200, 5000):
                body = (b'{"using":["urn:ietf:params:jmap:core"],"methodCalls":'
                        b'[["Core/echo",{"x":' + b"[" * depth + b"]" * depth + b'},"c"]]}')
                r = c.post("/jmap/api/", content=body,
                           headers={"content-type": "application/json"})
                out.append((r.status_code, r.json().get("type")))
        return out

    assert await run(go) == [(400, "urn:ietf:params:jmap:error:notJSON")] * 2


async def test_api_echo_and_request_level_errors(srv):
    def go():
        out = {}
        with client(srv) as c:
            r = api(c, [["Core/echo", {"hello": [1, 2]}, "c1"]])
            out["echo"] = (r.status_code, r.json())
            r = c.post("/jmap/api/", content=b'{"using":[]}',
                       headers={"content-type": "text/plain"})
            out["ctype"] = (r.status_code, r.json())
            r = c.post("/jmap/api/", content=b"{nope", headers={"content-type":
                                                                 "application/json"})
            out["notjson"] = (r.status_code, r.json())
            r = c.post("/jmap/api/", json={"using": "x"})
            out["notrequest"] = (r.status_code, r.json())
            r = api(c, [], using=[CORE, "urn:example:nope"])
            out["unknowncap"] = (r.status_code, r.json())
            r = api(c, [["Core/echo", {}, str(i)] for i in range(6)])
            out["limit"] = (r.status_code, r.json())
            r = api(c, [["Nope/get", {}, "a"], ["Core/echo", {"x": 1}, "b"]])
            out["unknownmethod"] = (r.status_code, r.json())
            out["get"] = c.get("/jmap/api/").status_code
        return out

    out = await run(go)
    st, body = out["echo"]
    assert st == 200 and body["methodResponses"] == [["Core/echo", {"hello": [1, 2]}, "c1"]]
    assert body["sessionState"]
    E = "urn:ietf:params:jmap:error:"
    assert out["ctype"][0] == 400 and out["ctype"][1]["type"] == E + "notJSON"
    assert out["notjson"][0] == 400 and out["notjson"][1]["type"] == E + "notJSON"
    assert out["notrequest"][0] == 400 and out["notrequest"][1]["type"] == E + "notRequest"
    assert out["unknowncap"][1]["type"] == E + "unknownCapability"
    assert out["limit"][1] == {"type": E + "limit", "status": 400, "limit": "maxCallsInRequest",
                               "detail": out["limit"][1]["detail"]}
    assert out["unknownmethod"][1]["methodResponses"][0][1]["type"] == "unknownMethod"
    assert out["unknownmethod"][1]["methodResponses"][1] == ["Core/echo", {"x": 1}, "b"]
    assert out["get"] == 405


# --- upload, download, blobs -------------------------------------------------------------------

MULTI = (b"From: a@example.org\r\nTo: alice@localhost\r\nSubject: parts\r\n"
         b"Message-ID: <parts@test>\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
         b"--XX\r\nContent-Type: text/plain\r\n\r\nthe text\r\n"
         b"--XX\r\nContent-Type: application/octet-stream\r\n"
         b"Content-Transfer-Encoding: base64\r\n\r\n"
         + base64.encodebytes(bytes(range(256))).replace(b"\n", b"\r\n")
         + b"--XX--\r\n")


async def test_upload_download_and_other_accounts_blobs(srv):
    alice = ids.account_id(accounts.lookup(srv.store, "alice").id)
    bob = ids.account_id(accounts.lookup(srv.store, "bob").id)

    def append():
        c = connect(srv)
        c.append("INBOX", None, None, MULTI)
        c.logout()

    await run(append)
    h = hashlib.sha256(MULTI).digest()

    def go():
        out = {}
        with client(srv) as c, client(srv, "bob") as b:
            r = c.post(f"/jmap/upload/{alice}/", content=b"hello upload",
                       headers={"content-type": "text/plain; charset=utf-8"})
            out["upload"] = (r.status_code, r.json())
            blob = r.json()["blobId"]
            r = c.get(f"/jmap/download/{alice}/{blob}/hello%20there.txt",
                      params={"accept": "text/plain"})
            out["download"] = (r.status_code, r.content, dict(r.headers))
            r = c.get(f"/jmap/download/{alice}/{ids.blob_id(h)}/m.eml",
                      params={"accept": "message/rfc822"})
            out["message"] = (r.status_code, r.content)
            r = c.get(f"/jmap/download/{alice}/{ids.part_blob_id(h, '2')}/x.bin")
            out["part"] = (r.status_code, r.content, r.headers["content-type"])
            r = c.get(f"/jmap/download/{alice}/{ids.part_blob_id(h, '9')}/x.bin")
            out["nopart"] = r.status_code
            r = c.get(f"/jmap/download/{alice}/{blob}/x", params={"accept": "text/html\r\nX: y"})
            out["badaccept"] = r.headers["content-type"]
            # bob: alice's blobs do not exist for him, in any account id
            out["bob"] = [b.get(f"/jmap/download/{acc}/{bid}/x").status_code
                          for acc in (alice, bob) for bid in (blob, ids.blob_id(h))]
            out["bob_upload"] = b.post(f"/jmap/upload/{alice}/", content=b"x").status_code
            r = c.post(f"/jmap/upload/{alice}/", content=b"x" * 100_001)
            out["big"] = (r.status_code, r.json())
            # Blob/copy within the one account; another account's ids are refused
            r = api(c, [["Blob/copy", {"fromAccountId": alice, "accountId": alice,
                                       "blobIds": [blob, "Bnope"]}, "0"],
                        ["Blob/copy", {"fromAccountId": bob, "accountId": alice,
                                       "blobIds": [blob]}, "1"],
                        ["Blob/copy", {"fromAccountId": alice, "accountId": bob,
                                       "blobIds": [blob]}, "2"]])
            out["copy"] = r.json()["methodResponses"]
            r = api(b, [["Blob/copy", {"fromAccountId": bob, "accountId": bob,
                                       "blobIds": [blob]}, "0"]])
            out["bobcopy"] = r.json()["methodResponses"]
        return out

    out = await run(go)
    st, up = out["upload"]
    assert st == 201
    assert up == {"accountId": alice, "blobId": ids.blob_id(hashlib.sha256(b"hello upload")
                                                            .digest()),
                  "type": "text/plain; charset=utf-8", "size": 12}
    st, data, headers = out["download"]
    assert st == 200 and data == b"hello upload"
    assert headers["content-type"] == "text/plain"
    assert headers["content-disposition"] == "attachment; filename*=UTF-8''hello%20there.txt"
    assert out["message"] == (200, MULTI)
    assert out["part"] == (200, bytes(range(256)), "application/octet-stream")
    assert out["nopart"] == 404
    assert out["badaccept"] == "application/octet-stream"
    assert out["bob"] == [404, 404, 404, 404]
    assert out["bob_upload"] == 404
    assert out["big"][0] == 413 and out["big"][1]["limit"] == "maxSizeUpload"
    copy = out["copy"]
    blob = up["blobId"]
    assert copy[0] == ["Blob/copy", {"fromAccountId": alice, "accountId": alice,
                                     "copied": {blob: blob},
                                     "notCopied": {"Bnope": {"type": "notFound"}}}, "0"]
    assert copy[1] == ["error", {"type": "fromAccountNotFound"}, "1"]
    assert copy[2] == ["error", {"type": "accountNotFound"}, "2"]
    assert out["bobcopy"][0][1]["notCopied"] == {blob: {"type": "notFound"}}


async def test_pending_uploads_per_account_are_capped(srv):
    alice = ids.account_id(accounts.lookup(srv.store, "alice").id)

    def go():
        with client(srv) as c:
            url = f"/jmap/upload/{alice}/"
            first = c.post(url, content=b"a" * 90_000).status_code
            again = c.post(url, content=b"a" * 90_000).status_code      # same blob: free
            other = c.post(url, content=b"b" * 90_000)
            small = c.post(url, content=b"c" * 50_000).status_code
            return first, again, other.status_code, other.json()["detail"], small

    first, again, other, detail, small = await run(go)
    assert (first, again, other, small) == (201, 201, 413, 201)
    assert "150000 bytes" in detail


async def test_uploads_expire_and_are_swept(srv):
    from mailaccess import storeio
    from mailaccess.server import jmap_blobs

    acc = accounts.lookup(srv.store, "alice").id
    up = await jmap_blobs.store_upload(srv.store, acc, b"short-lived", "text/plain", 3600)
    with srv.store.view() as v:
        assert jmap_blobs.read_blob(v, acc, up["blobId"]) == b"short-lived"
    import time
    later = int(time.time()) + 3601
    from mailaccess.store import uploads
    with srv.store.view() as v:
        assert uploads.pending_bytes(v, acc) == len(b"short-lived")
    assert await storeio.write(srv.store, jmap_blobs.sweep_uploads, later) == 1
    with srv.store.view() as v:
        assert jmap_blobs.read_blob(v, acc, up["blobId"]) is None
        assert uploads.pending_bytes(v, acc) == 0


# --- Bearer tokens -----------------------------------------------------------------------------

async def test_bearer_tokens_authenticate_and_revoke(srv):
    token = await trio.to_thread.run_sync(tokens.add, srv.store, "alice", "phone")
    assert token.startswith("mat_")
    with srv.store.view() as v:       # only the digest is stored
        from mailaccess.store import tokens as st
        rows = st.list_tokens(v, accounts.lookup(srv.store, "alice").id)
    assert [r.name for r in rows] == ["phone"] and rows[0].digest == tokens.digest(token)

    def go(tok):
        with httpx.Client(base_url=base(srv), timeout=30) as c:
            bearer = c.get("/jmap/session", headers={"authorization": f"Bearer {tok}"})
            as_password = c.get("/jmap/session", auth=("alice", tok))
            wrong_user = c.get("/jmap/session", auth=("bob", tok))
            return bearer.status_code, as_password.status_code, wrong_user.status_code, \
                bearer.json().get("username") if bearer.status_code == 200 else None

    assert await run(go, token) == (200, 200, 401, "alice")
    with srv.store.view() as v:
        assert st.list_tokens(v, accounts.lookup(srv.store, "alice").id)[0].last_used > 0
    await trio.to_thread.run_sync(tokens.revoke, srv.store, "alice", "phone")
    assert (await run(go, token))[:3] == (401, 401, 401)


def test_token_cli(tmp_path, capsys, monkeypatch):
    import io

    from mailaccess import cli

    d = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert cli.main(["user", "add", "carol", "--password-stdin"] + d) == 0
    capsys.readouterr()
    assert cli.main(["token", "add", "carol", "laptop"] + d) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("mat_") and len(token) > 40
    assert cli.main(["token", "add", "carol", "laptop"] + d) == 1      # names are unique
    assert "exists" in capsys.readouterr().err
    assert cli.main(["token", "list", "carol"] + d) == 0
    out = capsys.readouterr().out
    assert out.startswith("laptop\tcreated ") and "last used never" in out
    assert token not in out
    assert cli.main(["token", "revoke", "carol", "laptop"] + d) == 0
    capsys.readouterr()
    assert cli.main(["token", "revoke", "carol", "laptop"] + d) == 1
    assert cli.main(["token", "list", "nobody"] + d) == 1
    with pytest.raises(SystemExit) as e:
        cli.main(["token", "--help"])
    assert e.value.code == 0
    assert "app-password" in capsys.readouterr().out


async def test_trusted_proxy_forwarded_address_and_scheme(tmp_path, nursery):
    """Behind a trusted proxy the client's address (X-Forwarded-For, last
    entry) is what the login penalty counts, and X-Forwarded-Proto the
    scheme of the Session's URLs; from anyone else both headers are ignored."""
    from mailaccess.server import app

    c = make_config(tmp_path)

    async def start(trusted):
        cfg = dataclasses.replace(c, data_dir=str(tmp_path / f"d{len(trusted)}"),
                                  http=dataclasses.replace(c.http, trusted_proxies=trusted))
        ctx = await nursery.start(lambda task_status: app.serve(
            cfg, task_status=task_status, install_signals=False))
        await trio.to_thread.run_sync(accounts.add_user, ctx.store, "alice", "pw")
        return ctx

    headers = {"x-forwarded-for": "198.51.100.7, 203.0.113.9", "x-forwarded-proto": "https"}
    for trusted, scheme, counted in ((("127.0.0.1",), "https", "203.0.113.9"),
                                     ((), "http", "127.0.0.1")):
        ctx = await start(trusted)

        def go():
            with client(ctx) as cl:
                s = cl.get("/jmap/session", headers=headers).json()
                bad = cl.get("/jmap/session", headers=headers, auth=("alice", "wrong"))
            return s["apiUrl"], bad.status_code

        seen = []
        real = ctx.auth.record
        ctx.auth.record = lambda address, user, **kw: (seen.append(address), real(
            address, user, **kw))[1]
        api_url, status = await run(go)
        assert api_url.startswith(scheme + "://") and status == 401
        assert set(seen) == {counted}
