"""Input built to make the JMAP, ActiveSync and outbound code do work that
grows faster than its size (the loop-stall audit, docs/architecture.md).

Each case is a bounded input that took seconds to minutes (or ran out of
memory) before its fix; here it is answered, with the answer checked.  No
timing thresholds: a regression shows as a test that does not finish.
"""
import email
import email.policy

from mailaccess.outbound import autoreply

N = 200_000     # message ids, encoded words: a 2-3 MB header field


def _orig(extra: bytes) -> bytes:
    return (b"From: bob@example.com\r\nTo: alice@localhost\r\n"
            b"Message-ID: <q1@example.com>\r\n" + extra + b"\r\n\r\nhi\r\n")


def _reply(raw: bytes, subject=None):
    vac = {"isEnabled": True, "subject": subject, "textBody": "Away", "htmlBody": None}
    out = autoreply.build_reply(raw, vac, "alice@localhost", "bob@example.com",
                                1_700_000_000, "mx")
    return email.message_from_bytes(out, policy=email.policy.default)


def test_reply_to_a_huge_references_keeps_its_latest_ids():
    """A 3 MB References (14 s at 1.5 MB before: the email package parses
    and folds a field in quadratic time): the reply's References holds the
    latest ids, then the original's Message-ID, within MAX_REFERENCES."""
    refs = b" ".join(b"<m%d@example.com>" % i for i in range(N))
    m = _reply(_orig(b"References: " + refs))
    got = str(m["References"]).split()
    assert got[-1] == "<q1@example.com>"
    assert got[-2] == f"<m{N - 1}@example.com>"
    assert got[:-1] == [f"<m{i}@example.com>" for i in range(N - len(got) + 1, N)]
    assert len(" ".join(got)) <= autoreply.MAX_REFERENCES
    assert len(got) > 100
    assert str(m["In-Reply-To"]) == "<q1@example.com>"


def test_reply_to_a_huge_subject_of_encoded_words_keeps_a_line_of_it():
    """A 2.8 MB Subject of encoded words (out of memory before): the reply's
    subject is its first words, decoded, within a line."""
    m = _reply(_orig(b"Subject: " + b"=?utf-8?q?caf=C3=A9?= " * N))
    subj = str(m["Subject"])
    assert subj.startswith("Auto: café")
    assert set(subj[len("Auto: "):]) == set("café")
    assert len(subj) <= autoreply.MAX_LINE


def test_a_huge_vacation_subject_is_cut_at_a_word():
    m = _reply(_orig(b"Subject: q"), subject="away " * 50_000)
    subj = str(m["Subject"])
    assert subj.startswith("away away") and subj.endswith("away")
    assert len(subj) <= autoreply.MAX_LINE


def test_a_message_id_longer_than_a_line_is_not_replied_to_by_id():
    raw = _orig(b"Subject: q").replace(b"<q1@example.com>", b"<" + b"a" * 2_000_000 + b"@b>")
    m = _reply(raw)
    assert m["In-Reply-To"] is None and m["References"] is None
    assert str(m["Subject"]) == "Auto: q"


# --- address lists (outbound/addresses.parse_field, envelope.header_addresses)

from mailaccess.outbound import addresses, envelope   # noqa: E402
from mailaccess.server import eas_compose              # noqa: E402


def test_a_group_of_many_members_is_refused():
    """email._parseaddr copies a group's list once per member (22 s for
    80,000 members): a group of more than MAX_GROUP elements cannot be read,
    one of MAX_GROUP is read whole."""
    assert addresses.parse_field("g: " + "a@x.org, " * 500_000 + "b@x.org;") is None
    ok = "g: " + ", ".join(f"u{i}@x.org" for i in range(addresses.MAX_GROUP)) + ";"
    assert [a for _n, a in addresses.parse_field(ok)] == \
        [f"u{i}@x.org" for i in range(addresses.MAX_GROUP)]
    many = ", ".join(["g: " + ", ".join(f"u{i}@x.org" for i in range(500)) + ";"] * 200)
    assert len(addresses.parse_field(many)) == 100_000


def test_a_huge_group_in_a_header_is_an_invalid_recipient():
    raw = b"From: me@localhost\r\nTo: g: " + b"a@x.org, " * 500_000 + b"b@x.org;\r\n\r\nhi\r\n"
    h = envelope.header_addresses(raw)
    assert len(h.to) == 1 and h.to[0].startswith("g: a@x.org, a@x.org")
    assert not addresses.valid_address(h.to[0])


def test_nested_groups_and_comments_cannot_be_read():
    """A RecursionError inside email._parseaddr before: now None."""
    assert addresses.parse_field("a:" * 100_000) is None
    assert addresses.parse_field("a@x " + "(" * 100_000 + ")" * 100_000) is None
    assert addresses.parse_field("g: a@x.org, h: b@x.org;;") is not None


def test_forwarding_a_header_of_many_continuation_lines():
    """SmartForward's split of the phone's header into fields extended a
    bytes object per continuation line: 131 s for 1,000,000 lines."""
    head = b"Subject: x\r\n" + b" y\r\n" * 1_000_000 + b"To: b@x.org\r\n\r\n"
    fields = eas_compose._split_header_lines(head)
    assert fields == [b"Subject: x\r\n" + b" y\r\n" * 1_000_000, b"To: b@x.org\r\n"]


# --- JMAP requests: read in the worker pool when big

import threading                                        # noqa: E402

import trio                                             # noqa: E402

from mailaccess.proto.jmap import request as jreq       # noqa: E402
from mailaccess.proto.jmap import ws as jws             # noqa: E402
from mailaccess.server import jmap_api                  # noqa: E402


def _on_main_thread(monkeypatch, module, name) -> list:
    """Patch MODULE.NAME to note, per call, whether it ran on the main
    thread (the event loop's); the list of those notes."""
    threads = []
    real = getattr(module, name)

    def spy(*a, **kw):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*a, **kw)

    monkeypatch.setattr(module, name, spy)
    return threads


def _where(parse):
    """(the thread PARSE ran in, its answer) for a small and a big request."""
    seen = []

    def spy(text, limits):
        seen.append(threading.current_thread() is threading.main_thread())
        return parse(text, limits)

    def call(args):
        return {"using": ["urn:ietf:params:jmap:core"],
                "methodCalls": [["Core/echo", args, "c0"]]}

    async def main():
        small = json_bytes(call({"a": 1}))
        big = json_bytes(call({"a": [{}] * 3_000_000}))      # 9 MB: 2.4 s to read before
        return (await jmap_api.parse_off_loop(spy, small, jreq.Limits()),
                await jmap_api.parse_off_loop(spy, big, jreq.Limits()))

    return seen, trio.run(main)


def json_bytes(obj):
    import json
    return json.dumps(obj, separators=(",", ":")).encode()


def test_a_big_jmap_request_is_read_off_the_loop():
    seen, (small, big) = _where(jreq.parse_request)
    assert seen == [True, False]
    assert small.method_calls[0].args == {"a": 1}
    assert len(big.method_calls[0].args["a"]) == 3_000_000


def test_a_too_deep_request_is_still_refused():
    deep = b'{"using":[],"methodCalls":[["Core/echo",{"a":' + b"[" * 300 + b"]" * 300 + b'},"c"]]}'
    try:
        jreq.parse_request(deep, jreq.Limits())
    except jreq.RequestError as exc:
        assert exc.type.endswith(":notJSON")
    else:
        raise AssertionError("accepted")
    ok = b'{"using":[],"methodCalls":[["Core/echo",{"a":' + b"[" * 250 + b"]" * 250 + b'},"c"]]}'
    assert jreq.parse_request(ok, jreq.Limits()).method_calls[0].call_id == "c"


def test_a_big_websocket_message_is_read_off_the_loop():
    seen = []

    def spy(text, limits):
        seen.append(threading.current_thread() is threading.main_thread())
        return jws.parse_message(text, limits)

    msg = json_bytes({"@type": "Request", "using": ["urn:ietf:params:jmap:core"],
                      "methodCalls": [["Core/echo", {"a": [{}] * 100_000}, "c0"]]}).decode()
    m = trio.run(jmap_api.parse_off_loop, spy, msg, jreq.Limits())
    assert seen == [False]
    assert len(m.request.method_calls[0].args["a"]) == 100_000


# --- Email/get: body values decoded in the worker pool

import pytest                                           # noqa: E402

from jmap_email_helpers import Env                      # noqa: E402
from mailaccess.mime import jmapbody                    # noqa: E402


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


async def test_body_values_are_decoded_off_the_loop(env, monkeypatch):
    """A 50 MB text part took 0.3 s to decode on the loop, per id asked."""
    threads = _on_main_thread(monkeypatch, jmapbody, "body_value")
    line = "caf\u00e9 and more\n"
    raw = ("From: a@x.org\r\nSubject: big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           + line.replace("\n", "\r\n") * 200_000).encode()
    eid = env.add(raw)
    env.ctx.response_bytes = 0
    res = await env.get([eid, "Enope"], properties=["subject", "bodyValues"],
                        fetchAllBodyValues=True)
    (e,) = res["list"]
    assert res["notFound"] == ["Enope"]
    assert e["subject"] == "big"
    (bv,) = e["bodyValues"].values()
    assert bv["value"] == line * 200_000 and not bv["isTruncated"]
    assert threads == [False]
    assert env.ctx.response_bytes == len(line) * 200_000
    threads.clear()
    res = await env.get([eid], properties=["subject", "preview"])     # no body values
    assert res["list"][0]["preview"].startswith("café and more")
    assert threads == []


# --- end to end over HTTP: a big request in, a big response out

import httpx                                            # noqa: E402

from imap_helpers import run                            # noqa: E402
from mailaccess import accounts, ids                    # noqa: E402
from mailaccess.proto.jmap import capabilities as cap   # noqa: E402


async def test_big_request_and_big_body_values_over_http(server, monkeypatch):
    """All go through the worker pool (request of 64 KB or more, its result
    references, a response with 1 MB or more of body values); the answers
    are whole."""
    from mailaccess.proto.jmap import refs
    threads = _on_main_thread(monkeypatch, refs, "resolve_args")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    acc = ids.account_id(accounts.lookup(server.store, "alice").id)
    url = f"http://127.0.0.1:{server.bound['http'][0][1]}"
    text = "x" * 70 + "\n"
    raw = ("From: a@x.org\r\nSubject: big\r\n\r\n" + text.replace("\n", "\r\n") * 30_000).encode()
    using = [cap.CORE, cap.MAIL]

    def go():
        with httpx.Client(base_url=url, auth=("alice", "pw"), timeout=60) as c:
            blob = c.post(f"/jmap/upload/{acc}/", content=raw,
                          headers={"content-type": "message/rfc822"}).json()["blobId"]
            r = c.post("/jmap/api/", json={"using": using, "methodCalls": [
                ["Mailbox/query", {"accountId": acc, "filter": {"role": "inbox"}}, "m"]]})
            inbox = r.json()["methodResponses"][0][1]["ids"][0]
            r = c.post("/jmap/api/", json={"using": using, "methodCalls": [
                ["Email/import", {"accountId": acc, "emails": {"k": {
                    "blobId": blob, "mailboxIds": {inbox: True}}}}, "i"],
                ["Core/echo", {"pad": ["y" * 100] * 1000}, "e"],         # a 100 KB request
                ["Core/echo", {"#pad": {"resultOf": "e", "name": "Core/echo",
                                        "path": "/pad/*"}}, "r"],
                ["Email/get", {"accountId": acc, "ids": ["#k"], "fetchAllBodyValues": True,
                               "properties": ["subject", "bodyValues"]}, "g"]]})
            return r.status_code, r.json()["methodResponses"]

    status, (imp, echo, ref, get) = await run(go)
    assert status == 200
    assert ref[1] == echo[1]
    assert threads[-4:] == [True, True, False, True]      # the one with a reference
    assert imp[0] == "Email/import" and "k" in imp[1]["created"]
    assert echo[1] == {"pad": ["y" * 100] * 1000}
    (e,) = get[1]["list"]
    assert e["subject"] == "big"
    assert list(e["bodyValues"].values())[0]["value"] == text * 30_000


# --- ActiveSync Sync: the phone's Change commands, its draft Adds

from mailaccess.proto.eas.wbxml import E                # noqa: E402
from mailaccess.server import eas_sync, eas_sync_client, eas_syncstate   # noqa: E402
from mailaccess.server.eas_sync_request import CollOptions              # noqa: E402


class _Rec:
    def __init__(self, eid):
        self.last_ms = 5

    def member(self, mbx):
        return object()


class _View:
    def email(self, acc, eid):
        return _Rec(eid)


def test_many_changes_against_many_changed_items():
    """Each Change made a set of the snapshot's changed ids: 50,000 Changes
    with 200,000 items changed on the server is 10^10 steps; now one set."""
    n_cmds, n_changed = 50_000, 200_000
    snap = eas_syncstate.Snapshot(1, 10, changed=eas_syncstate.packed(range(1, n_changed + 1)))
    cmds = E("AirSync:Commands", *[
        E("AirSync:Change", E("AirSync:ServerId", text=ids.email_id(e)),
          E("AirSync:ApplicationData", E("Email:Read", text="1")))
        for e in range(n_changed - n_cmds // 2 + 1, n_changed + n_cmds // 2 + 1)])
    out = eas_sync_client.check_commands(_View(), 1, 1, cmds, snap, CollOptions(conflict=1),
                                         16, None, {})
    # the server wins (Conflict 1) for the items it changed; the rest are taken
    assert len(out.responses) == n_cmds // 2
    assert all(r.child_text("AirSync:Status") == "7" for r in out.responses)
    assert [e for e, _a, _r in out.changes] == list(range(n_changed + 1,
                                                          n_changed + n_cmds // 2 + 1))


async def test_a_draft_add_is_composed_off_the_loop(monkeypatch):
    threads = _on_main_thread(monkeypatch, eas_sync, "_draft_message")
    app = E("AirSync:ApplicationData", E("Email:To", text="a@x.org"),
            E("Email:Subject", text="draft"),
            E("AirSyncBase:Body", E("AirSyncBase:Type", text="1"),
              E("AirSyncBase:Data", text="caf\u00e9\n" * 100_000)))
    client = eas_sync_client.ClientOps()
    client.adds.append(("c1", app))
    ((cid, new, kws),) = await eas_sync._prepare_adds(client)
    assert threads == [False]
    assert cid == "c1" and "$draft" in [k.lower() for k in kws]
    assert b"Subject: draft" in new.raw and len(new.raw) > 500_000


# --- JMAP Email/set: a big create is checked and written out off the loop

from mailaccess.server import jmap_email_set                            # noqa: E402


@pytest.mark.parametrize("request_bytes, off", [(100, False), (10_000_000, True)])
async def test_email_set_create_of_a_big_request_off_the_loop(env, monkeypatch,
                                                             request_bytes, off):
    """Checking and writing 170,000 addresses (a 10 MB request) took 0.6 s."""
    threads = _on_main_thread(monkeypatch, jmap_email_set, "plan_message")
    env.ctx.request_bytes = request_bytes
    to = [{"name": "Zoë", "email": f"u{i}@x.org"} for i in range(20_000)]
    name, res = await env.call("Email/set", create={"k": {
        "mailboxIds": {f"M{env.inbox}": True}, "to": to, "subject": "café " * 1000,
        "bodyValues": {"1": {"value": "hi"}}, "textBody": [{"partId": "1", "type": "text/plain"}]}})
    assert name == "Email/set" and "k" in res["created"], res
    assert threads == [not off]
    e = await env.one(res["created"]["k"]["id"], properties=["to", "subject"])
    assert e["to"] == to
    assert e["subject"] == ("café " * 1000).strip()


# --- ActiveSync ResolveRecipients: a To longer than a line is no address

from mailaccess.server import eas_misc                  # noqa: E402


def test_a_huge_resolve_recipients_query_is_not_one_address():
    """The address-list parser took 2 s for a 9 MB To; a To is up to 16 MB
    and a request holds 100 of them."""
    assert eas_misc._one_address("x" * 16_000_000) == ""
    assert eas_misc._one_address("a@x.org, " * 1_500_000) == ""
    name = "N" * (eas_misc.MAX_QUERY - len(" <bob@x.org>"))
    assert eas_misc._one_address(f"{name} <bob@x.org>") == "bob@x.org"
    assert eas_misc._one_address(f"{name}N <bob@x.org>") == ""
    assert eas_misc._one_address("Bob <bob@x.org>") == "bob@x.org"


async def test_a_big_activesync_request_is_decoded_off_the_loop(server, monkeypatch):
    """ResolveRecipients with 100 To of 100 KB each (10 MB of WBXML): the
    WBXML is decoded in the worker pool (0.09 s at the element limit), and
    no To is read as an address list on the loop."""
    from eas_helpers import post, provision
    from mailaccess.proto.eas.wbxml import decode, encode
    from mailaccess.server import eas

    threads = _on_main_thread(monkeypatch, eas, "decode")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    big = "a@x.org, " * 11_000
    body = encode(E("ResolveRecipients:ResolveRecipients",
                    *[E("ResolveRecipients:To", text=big) for _ in range(99)],
                    E("ResolveRecipients:To", text="alice@localhost")))
    url = f"http://127.0.0.1:{server.bound['http'][0][1]}"

    def go():
        with httpx.Client(base_url=url, auth=("alice", "pw"), timeout=60) as c:
            key = provision(c)
            r = post(c, "ResolveRecipients", body, key=key)
            assert r.status_code == 200, r.text
            return decode(r.content)

    doc = await run(go)
    assert len(body) > 9_000_000
    assert threads[-1] is False and all(threads[:-1])      # only the big one off the loop
    got = doc.findall("ResolveRecipients:Response")
    assert len(got) == 100
    assert [r.child_text("ResolveRecipients:Status") for r in got[:99]] == ["4"] * 99
    last = got[-1].find("ResolveRecipients:Recipient")
    assert last.child_text("ResolveRecipients:EmailAddress") == "alice@localhost"


# --- WebSocket: a message in more frames than MAX_FRAGMENTS is refused

from mailaccess.server import http_ws                  # noqa: E402


async def _ws_receive(frames: list[tuple[str, bool]]):
    """What the server's WebSocket receives for FRAMES (text, fin) sent by a
    client, and the close code the client gets back (None: none)."""
    import trio.testing
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import CloseConnection, Message

    client_stream, server_stream = trio.testing.memory_stream_pair()
    ws = http_ws.WebSocket(server_stream, b"", max_message=10_000_000, write_timeout=5,
                           subprotocol=None, request=None)
    client = Connection(ConnectionType.CLIENT)
    data = b"".join(client.send(Message(data=t, message_finished=fin)) for t, fin in frames)
    got = []

    async def feed():
        await client_stream.send_all(data)

    async with trio.open_nursery() as n:
        n.start_soon(feed)
        got.append(await ws.receive())
    code = None
    if ws.closed:
        client.receive_data(await client_stream.receive_some(65536))
        code = next((e.code for e in client.events() if isinstance(e, CloseConnection)), None)
    return got[0], code


async def test_a_websocket_message_in_too_many_frames_is_refused():
    n = http_ws.MAX_FRAGMENTS
    text, code = await _ws_receive([("ab", False)] * (n - 1) + [("cd", True)])
    assert text == "ab" * (n - 1) + "cd" and code is None
    text, code = await _ws_receive([("ab", False)] * n + [("cd", True)])
    assert text is None and code == 1009


# --- JMAP: blobs read and decoded in the worker pool (Email/parse, import, set)

from mailaccess.server import jmap_email              # noqa: E402

_INNER = (b"From: c@x.org\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n"
          + b"caf\xc3\xa9 line\r\n" * 50_000)
_OUTER = (b"From: a@x.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
          b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
          b"Content-Type: message/rfc822\r\n\r\n" + _INNER + b"\r\n--b--\r\n")


def _inner_blob(env) -> str:
    eid = env.add(_OUTER)
    with env.store.view() as v:
        rec = v.email(env.acc, ids.parse("E", eid))
    return ids.part_blob_id(rec.blob, "2")


async def test_email_parse_off_the_loop(env, monkeypatch):
    threads = _on_main_thread(monkeypatch, jmap_email, "read_blob")
    bid = _inner_blob(env)
    name, res = await env.call("Email/parse", blobIds=[bid, "Gnope"], fetchAllBodyValues=True,
                               properties=["subject", "bodyValues"])
    assert name == "Email/parse", res
    assert threads == [False, False]
    assert res["notFound"] == ["Gnope"]
    e = res["parsed"][bid]
    assert e["subject"] == "inner"
    assert list(e["bodyValues"].values())[0]["value"] == "café line\n" * 50_000


async def test_email_import_of_a_part_blob_off_the_loop(env, monkeypatch):
    threads = _on_main_thread(monkeypatch, jmap_email_set, "read_blob")
    bid = _inner_blob(env)
    name, res = await env.call("Email/import", emails={"k": {
        "blobId": bid, "mailboxIds": {f"M{env.inbox}": True}}})
    assert name == "Email/import" and "k" in res["created"], res
    assert threads == [False]
    e = await env.one(res["created"]["k"]["id"], properties=["subject", "size"])
    assert e == {"id": res["created"]["k"]["id"], "subject": "inner", "size": len(_INNER)}


async def test_email_set_with_an_attachment_off_the_loop(env, monkeypatch):
    threads = _on_main_thread(monkeypatch, jmap_email_set, "plan_message")
    bid = _inner_blob(env)
    name, res = await env.call("Email/set", create={"k": {
        "mailboxIds": {f"M{env.inbox}": True}, "subject": "fwd",
        "bodyValues": {"1": {"value": "hi"}}, "textBody": [{"partId": "1", "type": "text/plain"}],
        "attachments": [{"blobId": bid, "type": "message/rfc822"}]}})
    assert name == "Email/set" and "k" in res["created"], res
    assert threads == [False]
    e = await env.one(res["created"]["k"]["id"], properties=["attachments"])
    assert [(a["type"], a["size"]) for a in e["attachments"]] == [("message/rfc822", len(_INNER))]


# --- JMAP result references: each item copied once, whatever the '*' depth

from hypothesis import given, settings                  # noqa: E402
from hypothesis import strategies as st                 # noqa: E402

from mailaccess.proto.jmap import refs                  # noqa: E402


def _old_walk(tokens, at, value):
    """The walk before (a list per '*', extended into the one above)."""
    while at < len(tokens):
        tok = tokens[at]
        if isinstance(value, list):
            if tok == "*":
                out = []
                for item in value:
                    r = _old_walk(tokens, at + 1, item)
                    out.extend(r) if isinstance(r, list) else out.append(r)
                return out
            value = value[refs._index(tok, len(value))]
        elif isinstance(value, dict):
            if tok not in value:
                raise refs.PointerError(tok)
            value = value[tok]
        else:
            raise refs.PointerError(tok)
        at += 1
    return value


_json = st.recursive(st.integers(0, 9) | st.text("ab", max_size=2),
                     lambda kids: st.lists(kids, max_size=4)
                     | st.dictionaries(st.sampled_from("ab"), kids, max_size=2), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(_json, st.lists(st.sampled_from(["*", "0", "1", "a", "b"]), max_size=6))
def test_star_paths_answer_as_before(doc, tokens):
    path = "".join("/" + t for t in tokens)
    try:
        want = _old_walk(tokens, 0, doc)
    except refs.PointerError:
        with pytest.raises(refs.PointerError):
            refs.evaluate(path, doc)
    else:
        assert refs.evaluate(path, doc) == want


def test_a_deep_star_path_over_many_items():
    doc = list(range(1_000_000))
    for _ in range(249):
        doc = [{"x": doc}]
    got = refs.evaluate("/*/x" * 249 + "/*", doc)
    assert len(got) == 1_000_000 and got[:3] == [0, 1, 2] and got[-1] == 999_999


async def test_a_sync_answer_is_encoded_off_the_loop(server, monkeypatch):
    """A Sync window of whole bodies can be hundreds of MB (61 MB took 0.25 s
    to encode): Sync, ItemOperations, Search and Find answers are encoded in
    the worker pool, the others (Provision here) on the loop."""
    import eas_helpers as H
    from mailaccess.server import eas

    threads = _on_main_thread(monkeypatch, eas, "encode")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    acc = H.account(server.store)
    inbox = H.role(server.store, acc, "inbox")
    eids = await trio.to_thread.run_sync(H.fill, server.store, acc, inbox, 5)

    def go():
        with H.http(server) as c:
            key = H.provision(c)
            first = H.collections(H.sync(c, key, H.sync_body(H.collection(H.cid(inbox), 0))))
            k1 = first[H.cid(inbox)].key
            return H.collections(H.sync(c, key, H.sync_body(
                H.collection(H.cid(inbox), k1, window=10))))

    got = (await run(go))[H.cid(inbox)]
    assert sorted(got.add_ids) == sorted(H.sid(e) for e in eids)
    assert threads[:2] == [True, True]          # the two Provision answers
    assert threads[2:] == [False, False]        # the two Sync answers


async def test_email_get_of_a_message_with_a_big_index_off_the_loop(env, monkeypatch):
    """Anyone can send a message with a 10 MB To: reading its index took
    Email/get 1.0 s on the loop (77 ms for a 1 MB text message)."""
    threads = _on_main_thread(monkeypatch, jmap_email, "content_properties")
    to = ", ".join(f"User {i} <u{i}@x.org>" for i in range(30_000))
    big = env.add(f"From: a@x.org\r\nTo: {to}\r\nSubject: wide\r\n\r\nhi\r\n".encode())
    small = env.add(b"From: a@x.org\r\nTo: b@x.org\r\nSubject: narrow\r\n\r\nhi\r\n")
    jmap_email.LIST_CACHE.data.clear()
    res = await env.get([small, big], properties=["subject", "to", "preview"])
    # the small one read on the loop (and cached); at the big one the
    # Email/get starts again in the pool, where the small one is a cache hit
    assert threads == [True, False]
    s, b = res["list"]
    assert (s["subject"], s["to"], s["preview"]) == ("narrow", [{"name": None,
                                                                 "email": "b@x.org"}], "hi")
    assert b["subject"] == "wide" and len(b["to"]) == 30_000
    assert b["to"][-1] == {"name": "User 29999", "email": "u29999@x.org"}
    threads.clear()
    res = await env.get([small], properties=["subject", "to", "preview"])
    assert threads == [] and res["list"][0]["subject"] == "narrow"     # cached, on the loop
    await env.get([small], properties=["bodyStructure"])
    assert threads == [True]
