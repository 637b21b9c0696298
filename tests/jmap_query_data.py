"""A small generated mail account for the JMAP Email/query tests, with what
each message holds kept on the side so tests can work out the expected
answer in plain Python (the reference the server is compared with)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import trio

from mailaccess import ingest
from mailaccess.mime import index as mindex
from mailaccess.proto.jmap.request import parse_request
from mailaccess.query.sort import collate
from mailaccess.server.jmap_api import JmapContext, run_request
from mailaccess.store import ops

import mailaccess.server.jmap_email_query  # noqa: F401  (registers the methods)

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
T0 = 1_762_128_000          # 2025-11-03T00:00:00Z

PEOPLE = [("Alice Smith", "alice@a.org"), ("bob", "bob@b.net"), (None, "carol@c.com"),
          ("Émile Zola", "emile@fr.fr"), ("dave", "dave@d.org"), ("Zed", "zed@z.org")]
SUBJECTS = ["10 apples", "9 pears", "Lunch plans", "quarterly report", "Émile's notes",
            "zebra crossing", "[list] Weekly digest", "apples & <pears>"]
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kiwi", "mango", "plum"]


def _addr(p) -> str:
    name, email = p
    if name is None:
        return email
    if not name.isascii():
        return f"=?utf-8?q?{''.join('=%02X' % b for b in name.encode())}?= <{email}>"
    return f"{name} <{email}>"


@dataclass
class Msg:
    eid: int
    raw: bytes
    frm: tuple
    to: tuple
    cc: tuple | None
    bcc: tuple | None
    subject: str
    body: str
    received_at: int
    sent_at: int | None
    size: int
    has_attachment: bool
    priority: str | None
    keywords: set = field(default_factory=set)
    mailboxes: set = field(default_factory=set)
    thread: int = 0
    message_id: str = ""

    def header_text(self, name: str) -> str:
        v = {"from": self.frm, "to": self.to, "cc": self.cc, "bcc": self.bcc}.get(name)
        if v is None:
            return ""
        return f"{v[0]} <{v[1]}>" if v[0] else v[1]


def make_raw(rng: random.Random, i: int, parent: "Msg | None"):
    frm = rng.choice(PEOPLE)
    to = rng.choice(PEOPLE)
    cc = rng.choice(PEOPLE) if rng.random() < 0.4 else None
    bcc = rng.choice(PEOPLE) if rng.random() < 0.2 else None
    subject = ("Re: " + parent.subject) if parent else rng.choice(SUBJECTS)
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 40 if i % 5 else 400))]
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words) + 1), "Zanzibar")
    body = " ".join(words)
    sent = None if rng.random() < 0.15 else T0 - rng.randint(0, 20) * 86400 + rng.randint(0, 86399)
    priority = rng.choice([None, None, "1", "3"])
    attach = rng.random() < 0.3
    mid = f"<m{i}@test>"
    h = [f"From: {_addr(frm)}", f"To: {_addr(to)}"]
    if cc:
        h.append(f"Cc: {_addr(cc)}")
    if bcc:
        h.append(f"Bcc: {_addr(bcc)}")
    h.append("Subject: " + (subject if subject.isascii() else
                            "=?utf-8?b?" + __import__("base64").b64encode(
                                subject.encode()).decode() + "?="))
    if sent is not None:
        import email.utils
        h.append("Date: " + email.utils.formatdate(sent, usegmt=True))
    h.append(f"Message-ID: {mid}")
    if parent:
        h.append(f"In-Reply-To: {parent.message_id}")
    if priority:
        h.append(f"X-Priority: {priority}")
    h.append("MIME-Version: 1.0")
    if attach:
        h.append('Content-Type: multipart/mixed; boundary="BB"')
        payload = (f"--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
                   "--BB\r\nContent-Type: application/pdf\r\n"
                   'Content-Disposition: attachment; filename="r.pdf"\r\n'
                   "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--BB--\r\n")
    else:
        h.append("Content-Type: text/plain; charset=utf-8")
        payload = body + "\r\n"
    raw = ("\r\n".join(h) + "\r\n\r\n" + payload).encode()
    return raw, dict(frm=frm, to=to, cc=cc, bcc=bcc, subject=subject, body=body, sent_at=sent,
                     has_attachment=attach, priority=priority, message_id=mid)


class Account:
    """The account ACC of STORE with N generated messages in INBOX, Archive
    or both, and helpers to call JMAP methods on it."""

    def __init__(self, store, n: int = 40, seed: int = 7, name: str = "alice",
                 acc: int | None = None):
        self.store = store
        self.acc = acc if acc is not None else store.write_sync(ops.create_account, name, "x")
        with store.view() as v:
            self.inbox = v.mailbox_by_role(self.acc, "inbox").id
        with store.view() as v:
            self.archive = v.mailbox_by_role(self.acc, "archive").id
            self.sent = v.mailbox_by_role(self.acc, "sent").id
        self.ctx = JmapContext(store, None, None, self.acc, name)
        self.msgs: dict[int, Msg] = {}
        rng = random.Random(seed)
        for i in range(n):
            self.add(rng, i)

    def add(self, rng: random.Random, i: int) -> Msg:
        parent = rng.choice(list(self.msgs.values())) if self.msgs and rng.random() < 0.3 \
            else None
        raw, info = make_raw(rng, i, parent)
        where = rng.choice([[self.inbox], [self.inbox], [self.archive],
                            [self.inbox, self.archive], [self.sent, self.archive]])
        kws = {k for k in ("$seen", "$flagged") if rng.random() < 0.4}
        received = T0 - rng.randint(0, 30) * 3600 * 7   # equal receivedAt happen
        new = ingest.prepare(raw, received)
        ap = self.store.write_sync(ops.append, self.acc, where, new, sorted(kws))
        m = Msg(ap.email, raw, received_at=received, size=len(raw), keywords=kws,
                mailboxes=set(where), thread=ap.thread, **info)
        self.msgs[m.eid] = m
        return m

    # --- JMAP ---------------------------------------------------------------------------

    def request(self, *calls, acc: str | None = None) -> list:
        body = json.dumps({"using": USING, "methodCalls": [
            [name, dict({"accountId": acc or f"A{self.acc}"}, **args), str(i)]
            for i, (name, args) in enumerate(calls)]}).encode()
        return trio.run(run_request, self.ctx, parse_request(body))["methodResponses"]

    def call(self, name: str, **args) -> dict:
        """The response arguments; an error response is returned as
        {"error": type, ...}."""
        (resp,) = self.request((name, args))
        if resp[0] == "error":
            return {"error": resp[1]["type"], **resp[1]}
        return resp[1]

    def query(self, filter=None, sort=None, **kw) -> list[int]:
        args = dict(kw)
        if filter is not None:
            args["filter"] = filter
        if sort is not None:
            args["sort"] = sort
        r = self.call("Email/query", **args)
        assert "error" not in r, r
        return [int(i[1:]) for i in r["ids"]]

    # --- reference --------------------------------------------------------------------

    def thread_members(self, m: Msg) -> list[Msg]:
        return [x for x in self.msgs.values() if x.thread == m.thread]


def norm(s: str | None) -> str:
    return mindex.normalize_search(s or "")


def sort_value(acc: Account, m: Msg, prop: str, keyword: str | None, coll=collate):
    if prop == "receivedAt":
        return m.received_at
    if prop == "size":
        return m.size
    if prop == "sentAt":
        return m.sent_at if m.sent_at is not None else m.received_at
    if prop == "subject":
        return coll(mindex.base_subject(m.subject))
    if prop in ("from", "to"):
        p = m.frm if prop == "from" else m.to
        return coll(p[0] if p[0] else p[1])
    if prop == "hasKeyword":
        return keyword in m.keywords
    has = [keyword in x.keywords for x in acc.thread_members(m)]
    return all(has) if prop == "allInThreadHaveKeyword" else any(has)
