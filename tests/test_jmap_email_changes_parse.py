"""Email/changes (RFC 8621 §4.3 over the change log) and Email/parse (§4.9
over read_blob), through run_request on a temp store; and the IMAP view of
the same message (ENVELOPE) agreeing with Email/get."""
from __future__ import annotations

import email.header

import pytest
import trio

from mailaccess import ids
from mailaccess.server import jmap_email
from mailaccess.store import ops

from jmap_email_helpers import CORPUS, Env, corpus, crlf


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


MSG = crlf("From: A <a@example.com>\nTo: b@example.com\nSubject: hello\n"
           "Content-Type: text/plain\n\nhi there\n")


# --- Email/changes -----------------------------------------------------------------

async def test_changes_created_updated_destroyed(env):
    e1 = env.add(MSG)
    state0 = (await env.get([]))["state"]
    e2 = env.add(MSG + b"2")
    n1, n2 = ids.parse("E", e1), ids.parse("E", e2)
    env.store.write_sync(ops.set_keywords, env.acc, [n1], add=["$flagged"])
    name, res = await env.call("Email/changes", sinceState=state0)
    assert name == "Email/changes"
    assert res["oldState"] == state0 and res["newState"] == (await env.get([]))["state"]
    assert res["created"] == [e2] and res["updated"] == [e1] and res["destroyed"] == []
    assert res["hasMoreChanges"] is False
    state1 = res["newState"]
    env.store.write_sync(ops.destroy_emails, env.acc, [n2])
    name, res = await env.call("Email/changes", sinceState=state1)
    assert res["destroyed"] == [e2] and res["created"] == [] and res["updated"] == []
    # created then destroyed since state0: only destroyed (or nothing) is reported
    name, res = await env.call("Email/changes", sinceState=state0)
    assert e2 not in res["created"] and e1 in res["updated"]


async def test_changes_paging_and_errors(env):
    state0 = (await env.get([]))["state"]
    made = [env.add(MSG + str(i).encode()) for i in range(5)]
    seen, state, rounds = [], state0, 0
    while True:
        name, res = await env.call("Email/changes", sinceState=state, maxChanges=2)
        assert name == "Email/changes" and len(res["created"]) <= 2
        seen += res["created"]
        state = res["newState"]
        rounds += 1
        if not res["hasMoreChanges"]:
            break
    assert sorted(seen) == sorted(made) and rounds >= 3
    for bad in ({"sinceState": 5}, {"sinceState": state0, "maxChanges": 0}, {}):
        name, res = await env.call("Email/changes", **bad)
        assert name == "error" and res["type"] == "invalidArguments", bad
    name, res = await env.call("Email/changes", sinceState="not-a-state")
    assert name == "error" and res["type"] == "cannotCalculateChanges"


# --- Email/parse ---------------------------------------------------------------------

async def test_parse_a_stored_message_agrees_with_get(env):
    eid = env.add(corpus("14-related-inline.eml"))
    got = await env.one(eid, properties=list(jmap_email.EMAIL_PROPERTIES),
                        fetchAllBodyValues=True)
    name, res = await env.call("Email/parse", blobIds=[got["blobId"]],
                               properties=list(jmap_email.EMAIL_PROPERTIES),
                               fetchAllBodyValues=True)
    assert name == "Email/parse"
    assert res["notFound"] is None and res["notParsable"] is None
    parsed = res["parsed"][got["blobId"]]
    for p in ("id", "mailboxIds", "keywords", "receivedAt", "threadId"):
        assert parsed[p] is None
    assert parsed["blobId"] == got["blobId"] and parsed["size"] == got["size"]
    for p in jmap_email.EMAIL_PROPERTIES:
        if p not in ("id", "mailboxIds", "keywords", "receivedAt", "threadId"):
            assert parsed[p] == got[p], p


async def test_parse_defaults_not_found_not_parsable(env):
    eid = env.add(MSG)
    empty = env.add(b"")
    blob = (await env.one(eid, properties=["blobId"]))["blobId"]
    empty_blob = (await env.one(empty, properties=["blobId"]))["blobId"]
    missing = "B" + "0" * 64
    name, res = await env.call("Email/parse", blobIds=[blob, empty_blob, missing, "junk"])
    assert list(res["parsed"]) == [blob]
    assert list(res["parsed"][blob]) == list(jmap_email.PARSE_DEFAULT_PROPERTIES)
    assert res["parsed"][blob]["subject"] == "hello"
    assert res["notParsable"] == [empty_blob]
    assert res["notFound"] == [missing, "junk"]
    name, res = await env.call("Email/parse", blobIds="x")
    assert name == "error" and res["type"] == "invalidArguments"
    name, res = await env.call("Email/parse", blobIds=[blob], properties=["nope"])
    assert name == "error" and res["type"] == "invalidArguments"


async def test_parse_an_attached_message(env, monkeypatch):
    """An attached message's part blob (read_blob's part blobs are the HTTP
    work's; stood in for here) parses, indexed on the spot, and its parts
    are named as parts of the outer message."""
    raw = corpus("09-nested-rfc822.eml")
    eid = env.add(raw)
    e = await env.one(eid, properties=["attachments", "blobId"])
    (att,) = e["attachments"]
    assert att["type"] == "message/rfc822"
    sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    inner = raw[raw.index(sep) + len(sep):]
    real = jmap_email.read_blob
    monkeypatch.setattr(jmap_email, "read_blob",
                        lambda v, acc, b: inner if b == att["blobId"] else real(v, acc, b))
    name, res = await env.call("Email/parse", blobIds=[att["blobId"]],
                               properties=["subject", "from", "textBody", "attachments",
                                           "bodyValues", "size"],
                               fetchTextBodyValues=True)
    p = res["parsed"][att["blobId"]]
    h = ids.parse_blob(e["blobId"])
    assert p["subject"] == "inner" and p["from"] == [{"name": None, "email": "inner@example.com"}]
    assert p["size"] == len(inner)
    assert [x["blobId"] for x in p["textBody"]] == [ids.part_blob_id(h, "1.1")]
    assert [x["blobId"] for x in p["attachments"]] == [ids.part_blob_id(h, "1.2")]
    assert p["bodyValues"]["1"]["value"] == "Café inside a message"


# --- IMAP and JMAP agree ----------------------------------------------------------------

def _decoded(b) -> str | None:
    if b is None:
        return None
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else b
    try:
        return str(email.header.make_header(email.header.decode_header(s)))
    except LookupError:         # an unknown charset: JMAP keeps the word as written
        return s


async def test_imap_envelope_agrees_with_email_get(imap_server):
    """The same messages seen by an IMAP client (ENVELOPE, by imapclient) and
    by Email/get: from, to, cc, subject, messageId and the ids (OBJECTID)."""
    from imapclient import IMAPClient

    from conftest import port_of
    from jmap_email_helpers import USING  # noqa: F401
    from mailaccess.server.jmap_api import JmapContext
    store = imap_server.store
    with store.view() as v:
        acc = v.account_by_name("alice").id
    names = ["10-encoded-words.eml", "12-groups.eml", "05-8bit-headers.eml"]
    raws = [crlf("From: \"Doe, Jane\" <jane@example.com>\nTo: =?UTF-8?Q?J=C3=B6rg?= <j@x.test>, "
                 "b@y.test\nCc: Team: c@z.test;\nSubject: =?UTF-8?B?w6lsw6h2ZQ==?= report\n"
                 "Message-ID: <m1@example.com>\n\nbody\n")] + [corpus(n) for n in names]
    port = port_of(imap_server, "imap")

    def imap_side():
        c = IMAPClient("127.0.0.1", port=port, ssl=False)
        c.login("alice", "pw")
        for r in raws:
            c.append("INBOX", r)
        c.select_folder("INBOX")
        out = c.fetch(c.search("ALL"), ["ENVELOPE", "EMAILID"])
        c.logout()
        return out

    fetched = await trio.to_thread.run_sync(imap_side)
    env = Env.__new__(Env)
    env.store, env.acc = store, acc
    env.ctx = JmapContext(store, None, None, acc, "alice")
    for _uid, data in sorted(fetched.items()):
        envl = data[b"ENVELOPE"]
        eid = data[b"EMAILID"][0].decode() if isinstance(data[b"EMAILID"], tuple) else \
            data[b"EMAILID"].decode()
        e = await env.one(eid, properties=["from", "to", "cc", "subject", "messageId"])
        assert _decoded(envl.subject) == e["subject"]

        def addrs(lst):
            out = []
            for a in lst or ():
                if a.host is None:          # group markers
                    continue
                out.append(((_decoded(a.name) or None) if a.name else None,
                            f"{a.mailbox.decode()}@{a.host.decode()}"))
            return out
        for imap_list, jmap_list in ((envl.from_, e["from"]), (envl.to, e["to"]),
                                     (envl.cc, e["cc"])):
            assert addrs(imap_list) == [(x["name"], x["email"]) for x in jmap_list or ()]
        if envl.message_id:
            assert e["messageId"] == [envl.message_id.decode().strip("<>")]


async def test_jmapc_models_read_our_responses(env):
    """A real client library's models (jmapc) decode Email/get with every
    property and Email/changes as we send them (types, dates, nesting)."""
    from jmapc.methods import EmailChangesResponse, EmailGetResponse

    state0 = (await env.get([]))["state"]
    eids = [env.add(p.read_bytes()) for p in sorted(CORPUS.glob("*.eml"))]
    name, res = await env.call("Email/get", ids=eids,
                               properties=list(jmap_email.EMAIL_PROPERTIES),
                               bodyProperties=list(jmap_email.BODY_PROPERTIES),
                               fetchAllBodyValues=True)
    resp = EmailGetResponse.from_dict(res)
    assert [e.id for e in resp.data] == eids
    by_id = {e.id: e for e in resp.data}
    e = by_id[eids[9]]                               # 10-encoded-words.eml
    assert e.mail_from[0].name == "Keld Jørn Simonsen"
    assert e.received_at.year == 2023 and e.text_body[0].part_id == "1"
    name, res = await env.call("Email/changes", sinceState=state0)
    ch = EmailChangesResponse.from_dict(res)
    assert sorted(ch.created) == sorted(eids)
