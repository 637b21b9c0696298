"""Email/query and IMAP SEARCH agree on the same mailbox for the conditions
both have (RFC 8621 4.4.1 vs RFC 9051 6.4.4): JMAP through run_request,
IMAP through imaplib against the running server, over one store."""
from __future__ import annotations

import datetime
import re

import trio

from mailaccess.server.jmap_api import JmapContext

from imap_helpers import connect, run
from jmap_query_data import T0, Account


def _day(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%d-%b-%Y")


def _utc(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


# (JMAP FilterCondition, IMAP search key) pairs that mean the same
def pairs(a: Account):
    day = T0 - 2 * 86400
    size = sorted(m.size for m in a.msgs.values())[len(a.msgs) // 2]
    return [
        ({"hasKeyword": "$seen"}, "SEEN"),
        ({"notKeyword": "$seen"}, "UNSEEN"),
        ({"hasKeyword": "$flagged"}, "FLAGGED"),
        ({"minSize": size + 1}, f"LARGER {size}"),
        ({"maxSize": size}, f"SMALLER {size}"),
        ({"after": _utc(day)}, f"SINCE {_day(day)}"),
        ({"before": _utc(day)}, f"BEFORE {_day(day)}"),
        ({"from": "alice"}, 'FROM "alice"'),
        ({"to": "bob@b.net"}, 'TO "bob@b.net"'),
        ({"cc": "carol"}, 'CC "carol"'),
        ({"bcc": "zed"}, 'BCC "zed"'),
        ({"subject": "apples"}, 'SUBJECT "apples"'),
        ({"body": "zanzibar"}, 'BODY "zanzibar"'),
        ({"text": "kiwi"}, 'TEXT "kiwi"'),
        ({"header": ["X-Priority", "1"]}, 'HEADER "X-Priority" "1"'),
        ({"header": ["X-Priority"]}, 'HEADER "X-Priority" ""'),
        ({"operator": "OR", "conditions": [{"hasKeyword": "$seen"}, {"subject": "pears"}]},
         'OR SEEN SUBJECT "pears"'),
        ({"operator": "NOT", "conditions": [{"text": "mango"}]}, 'NOT TEXT "mango"'),
        ({"operator": "AND", "conditions": [{"from": "dave"}, {"body": "plum"}]},
         'FROM "dave" BODY "plum"'),
    ]


async def test_email_query_agrees_with_imap_search(imap_server):
    store = imap_server.store
    with store.view() as v:
        acc = v.account_by_name("alice").id
    a = await trio.to_thread.run_sync(lambda: Account(store, n=50, seed=3, acc=acc))
    a.ctx = JmapContext(store, None, None, acc, "alice")
    c = await run(connect, imap_server)
    try:
        await run(c.select, "INBOX")
        typ, data = await run(c.uid, "FETCH", "1:*", "(EMAILID)")
        eid_of = {}
        for line in data:
            m = re.search(rb"UID (\d+).*EMAILID \(E(\d+)\)", line) or re.search(
                rb"EMAILID \(E(\d+)\).*UID (\d+)", line)
            assert m, line
            u, e = (m.group(1), m.group(2)) if b"UID " + m.group(1) in line else (
                m.group(2), m.group(1))
            eid_of[int(u)] = int(e)
        assert len(eid_of) == len([m for m in a.msgs.values() if a.inbox in m.mailboxes])
        checked = 0
        for jf, key in pairs(a):
            typ, data = await run(c.uid, "SEARCH", "CHARSET", "UTF-8", key)
            assert typ == "OK", (key, data)
            imap = sorted(eid_of[int(u)] for u in data[0].split())
            f = {"operator": "AND", "conditions": [{"inMailbox": f"M{a.inbox}"}, jf]}
            jmap = await trio.to_thread.run_sync(lambda: sorted(a.query(f)))
            assert jmap == imap, (jf, key)
            checked += bool(imap) and len(imap) < len(eid_of)
        assert checked >= len(pairs(a)) - 3      # most pairs split the mailbox
    finally:
        await run(c.logout)
