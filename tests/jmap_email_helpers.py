"""A temp store fed with messages, and JMAP calls on it through run_request
(for the Email/get, Email/changes and Email/parse tests)."""
from __future__ import annotations

import json
from pathlib import Path

from mailaccess import ingest
from mailaccess.proto.jmap.request import parse_request
from mailaccess.server import jmap_email  # noqa: F401  (registers Email/get, ...)
from mailaccess.server.jmap_api import JmapContext, run_request
from mailaccess.store import Store, ops

CORPUS = Path(__file__).parent / "corpus"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


class Env:
    """A store with account alice (and bob); ``await env.call(...)``."""

    def __init__(self, tmp_path):
        self.store = Store(str(tmp_path / "data"))
        self.store.start()
        self.acc = self.store.write_sync(ops.create_account, "alice", "h")
        self.bob = self.store.write_sync(ops.create_account, "bob", "h")
        with self.store.view() as v:
            self.inbox = v.mailbox_by_role(self.acc, "inbox").id
        self.ctx = JmapContext(self.store, None, None, self.acc, "alice")

    @property
    def account_id(self) -> str:
        return f"A{self.acc}"

    def add(self, raw: bytes, keywords=("$seen",), received_at: int = 1_700_000_000,
            acc: int | None = None) -> str:
        acc = self.acc if acc is None else acc
        with self.store.view() as v:
            mbx = v.mailbox_by_role(acc, "inbox").id
        a = self.store.write_sync(ops.append, acc, [mbx], ingest.prepare(raw, received_at),
                                  list(keywords))
        return f"E{a.email}"

    async def request(self, calls) -> list:
        body = json.dumps({"using": USING, "methodCalls": calls}).encode()
        out = await run_request(self.ctx, parse_request(body))
        json.dumps(out)         # every response must be JSON
        return out["methodResponses"]

    async def call(self, name: str, **args) -> tuple[str, dict]:
        args.setdefault("accountId", self.account_id)
        (resp,) = await self.request([[name, args, "c"]])
        return resp[0], resp[1]

    async def get(self, ids, **args) -> dict:
        """Email/get that must succeed; the list as {id: email}."""
        name, res = await self.call("Email/get", ids=ids, **args)
        assert name == "Email/get", res
        return res

    async def one(self, eid: str, **args) -> dict:
        res = await self.get([eid], **args)
        assert res["notFound"] == []
        return res["list"][0]

    def close(self):
        self.store.close()


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
