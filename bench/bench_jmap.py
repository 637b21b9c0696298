"""JMAP end to end over real HTTP against `mailaccess serve` (issue 8,
Benchmark), on the same 10,000-message account the IMAP benchmark uses
(bench_imap.corpus: sizes log-uniform 2-50 KB, fixed seed), with the same
work done over IMAP on the same server for comparison.

    .venv/bin/python bench/bench_jmap.py [--messages 10000] [--clients 10]
        [--requests 200] [--body-messages 2000] [--pushes 100]

1. list: C client processes, each with one kept-alive connection
   (http.client), send R requests of Email/query (inMailbox INBOX, sort
   receivedAt desc, limit 50) + Email/get (#ids, the list properties) ->
   round trips/s, p50/p99.  Every answer is checked (50 emails, newest first).
   IMAP, same clients and the same 50 messages: `UID FETCH <50 uids> (UID
   FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)`; and the whole page with its
   query: `UID SORT (REVERSE ARRIVAL) UTF-8 ALL` (all 10,000 UIDs back) + that
   FETCH, two round trips, as a client without CONTEXT=SORT does it.
2. bodies: Email/get of BODY-MESSAGES messages, 50 per request, with
   bodyStructure and fetchAllBodyValues -> MB/s of message bytes; IMAP `UID
   FETCH <50 uids> BODY.PEEK[]` over the same messages.
3. push: P sequential LMTP deliveries; the time from the start of each
   delivery to the StateChange on an EventSource client and on a WebSocket
   client (RFC 8887, websocket-client), both connected at once -> p50/p99.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import imaplib
import json
import multiprocessing
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from bench_imap import corpus  # noqa: E402

AUTH = "Basic " + base64.b64encode(b"alice:pw").decode()
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
LIST_PROPS = ["id", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "from", "to",
              "subject", "sentAt", "hasAttachment", "preview"]
IMAP_LIST = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)"


# --- the server ----------------------------------------------------------------------------------

def load_and_start(workdir: str, n: int, profile: str = ""
                   ) -> tuple[subprocess.Popen, dict, str, list[str]]:
    """Write N corpus messages into a fresh store (the ingest path LMTP uses,
    500 per transaction), then start `serve` on it -> (process, ports, account
    id, the messages' email ids in receivedAt order)."""
    from mailaccess import accounts, config, ids, ingest
    from mailaccess.store import Store, ops

    os.makedirs(workdir, exist_ok=True)
    cfg_path = os.path.join(workdir, "mailaccess.toml")
    with open(cfg_path, "w") as fh:
        fh.write(f'data_dir = "{workdir}/data"\ndemo_account = false\nlog_level = "warning"\n'
                 '[imap]\nlisten = "127.0.0.1:0"\nlisten_tls = "127.0.0.1:0"\n'
                 '[http]\nlisten = "127.0.0.1:0"\n[lmtp]\nlisten = "127.0.0.1:0"\n'
                 # 10 clients of one user at once: above the default per-user limit (8)
                 '[jmap]\nmax_concurrent_requests = 64\n')
    cfg = config.load(cfg_path)
    msgs, _ = corpus(n)
    t0 = time.perf_counter()
    store = Store(cfg.store_path)
    store.start()
    try:
        acc = accounts.add_user(store, "alice", "pw")
        with store.view() as v:
            inbox = v.mailbox_by_role(acc, "inbox").id
        batch = []
        for i, m in enumerate(msgs):
            batch.append((ingest.prepare(m, 1_700_000_000 + i), []))
            if len(batch) == 500:
                store.write_sync(ops.append_many, acc, inbox, batch)
                batch = []
        if batch:
            store.write_sync(ops.append_many, acc, inbox, batch)
        with store.view() as v:
            order = [ids.email_id(e.id) for e in sorted(v.emails(acc),
                                                        key=lambda e: (e.received_at, e.id))]
    finally:
        store.close()
    print(f"loaded {n} messages ({sum(map(len, msgs)) / 1e6:.0f} MB) in "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    prof = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen([sys.executable, *prof, "-m", "mailaccess", "serve", "--config",
                             cfg_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ports = common.read_ports(proc, 120)
    if not {"http", "imap", "lmtp"} <= set(ports):
        proc.kill()
        raise SystemExit(f"mailaccess did not start: {ports}")
    return proc, ports, ids.account_id(acc), order


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def ms(x):
    return f"{x * 1000:.1f} ms"


# --- 1. list pages -------------------------------------------------------------------------------

def jmap_list_body(acc: str, inbox: str) -> bytes:
    return json.dumps({"using": USING, "methodCalls": [
        ["Email/query", {"accountId": acc, "filter": {"inMailbox": inbox},
                         "sort": [{"property": "receivedAt", "isAscending": False}],
                         "limit": 50}, "q"],
        ["Email/get", {"accountId": acc, "properties": LIST_PROPS,
                       "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"],
    ]}).encode()


def post(c: http.client.HTTPConnection, body: bytes) -> dict:
    c.request("POST", "/jmap/api/", body, {"Authorization": AUTH,
                                          "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"HTTP {r.status}: {data[:300]!r}")
    return json.loads(data)


def jmap_list_client(port, body, want, n, out) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        res = post(c, body)
        lat.append(time.perf_counter() - t0)
        q, g = res["methodResponses"]
        if q[1].get("ids") != want or [e["id"] for e in g[1]["list"]] != want:
            raise SystemExit(f"wrong page: {str(res)[:300]}")
    out.put(lat)


def imap_connect(port) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    c.login("alice", "pw")
    c.select("INBOX", readonly=True)
    return c


def imap_list_client(port, uids, with_sort, n, out) -> None:
    c = imap_connect(port)
    uidset = ",".join(map(str, uids))
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        if with_sort:
            typ, data = c.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL")
            got = [int(x) for x in data[0].split()[:50]]
            if got != uids:
                raise SystemExit(f"SORT: {got[:5]} != {uids[:5]}")
        typ, data = c.uid("FETCH", uidset, IMAP_LIST)
        lat.append(time.perf_counter() - t0)
        if typ != "OK" or sum(1 for d in data if isinstance(d, bytes) and b"ENVELOPE" in d) != 50:
            raise SystemExit(f"FETCH: {typ} {str(data)[:300]}")
    c.logout()
    out.put(lat)


def concurrent(target, args, clients: int) -> tuple[float, list[float]]:
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=target, args=args + (q,)) for _ in range(clients)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    lats = []
    for _ in procs:
        lats += q.get()
    for p in procs:
        p.join()
    return time.perf_counter() - t0, lats


def row(rows, name, dt, lats, unit="round trips"):
    rows.append((name, f"{len(lats) / dt:.0f} {unit}/s", ms(statistics.median(lats)),
                 ms(pct(lats, 0.99))))


# --- 2. bodies -----------------------------------------------------------------------------------

def jmap_bodies(port, acc, eids) -> tuple[float, int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    total, t0 = 0, time.perf_counter()
    for i in range(0, len(eids), 50):
        chunk = eids[i:i + 50]
        res = post(c, json.dumps({"using": USING, "methodCalls": [
            ["Email/get", {"accountId": acc, "ids": chunk,
                           "properties": ["id", "size", "bodyStructure", "bodyValues"],
                           "fetchAllBodyValues": True}, "b"]]}).encode())
        lst = res["methodResponses"][0][1]["list"]
        if [e["id"] for e in lst] != chunk or not all(e["bodyValues"] for e in lst):
            raise SystemExit(f"Email/get bodies: {str(res)[:300]}")
        total += sum(e["size"] for e in lst)
    return time.perf_counter() - t0, total


def imap_bodies(port, uids) -> tuple[float, int]:
    c = imap_connect(port)
    total, t0 = 0, time.perf_counter()
    for i in range(0, len(uids), 50):
        typ, data = c.uid("FETCH", ",".join(map(str, uids[i:i + 50])), "BODY.PEEK[]")
        got = [d[1] for d in data if isinstance(d, tuple)]
        if typ != "OK" or len(got) != len(uids[i:i + 50]):
            raise SystemExit("FETCH BODY.PEEK[]: short answer")
        total += sum(map(len, got))
    dt = time.perf_counter() - t0
    c.logout()
    return dt, total


# --- 3. push -------------------------------------------------------------------------------------

def push(http_port, lmtp_port, pushes) -> tuple[list[float], list[float]]:
    import websocket

    es_times, ws_times = [], []
    cond = threading.Condition()
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
    c.request("GET", "/jmap/eventsource/?types=Email&closeafter=no&ping=0",
              headers={"Authorization": AUTH})
    r = c.getresponse()
    assert r.status == 200, r.status
    ws = websocket.create_connection(f"ws://127.0.0.1:{http_port}/jmap/ws/", timeout=120,
                                     subprotocols=["jmap"], header=[f"Authorization: {AUTH}"])
    ws.send(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": ["Email"],
                        "pushState": None}))

    def es_reader():
        for line in r:
            if line.startswith(b"data:"):
                with cond:
                    es_times.append(time.perf_counter())
                    cond.notify_all()

    def ws_reader():
        while True:
            try:
                m = json.loads(ws.recv())
            except Exception:
                return
            if m.get("@type") == "StateChange":
                with cond:
                    ws_times.append(time.perf_counter())
                    cond.notify_all()

    threading.Thread(target=es_reader, daemon=True).start()
    threading.Thread(target=ws_reader, daemon=True).start()
    with cond:
        cond.wait_for(lambda: es_times, timeout=30)      # the EventSource's initial state
    time.sleep(0.5)
    es_lat, ws_lat = [], []
    s = smtplib.LMTP("127.0.0.1", lmtp_port, timeout=60)
    for i in range(pushes):
        with cond:
            e0, w0 = len(es_times), len(ws_times)
        t0 = time.perf_counter()
        s.sendmail("s@example.org", ["alice@localhost"],
                   f"From: s@example.org\r\nSubject: push {i}\r\n\r\nbody {i}\r\n".encode())
        with cond:
            ok = cond.wait_for(lambda: len(es_times) > e0 and len(ws_times) > w0, timeout=30)
            if not ok:
                raise SystemExit(f"push {i}: no StateChange ({len(es_times)}, {len(ws_times)})")
            es_lat.append(es_times[e0] - t0)
            ws_lat.append(ws_times[w0] - t0)
        time.sleep(0.02)          # let both streams settle: one delivery, one event each
    s.quit()
    ws.close()
    return es_lat, ws_lat


# --- main ----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=200, help="list round trips per client")
    ap.add_argument("--body-messages", type=int, default=2000)
    ap.add_argument("--pushes", type=int, default=100)
    ap.add_argument("--only", default="list,bodies,push")
    ap.add_argument("--profile", default="", help="run the server under cProfile into FILE")
    a = ap.parse_args()
    only = set(a.only.split(","))
    work = tempfile.mkdtemp(prefix="bench-jmap-")
    proc, ports, acc, order = load_and_start(work, a.messages, a.profile)
    rows: list[tuple[str, str, str, str]] = []
    try:
        c = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=60)
        res = post(c, json.dumps({"using": USING, "methodCalls": [
            ["Mailbox/query", {"accountId": acc, "filter": {"role": "inbox"}}, "m"]]}).encode())
        inbox = res["methodResponses"][0][1]["ids"][0]
        want = order[::-1][:50]
        imap = imap_connect(ports["imap"])
        typ, data = imap.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL")
        all_uids = [int(x) for x in data[0].split()]
        imap.logout()
        uids50 = all_uids[:50]
        if "list" in only:
            body = jmap_list_body(acc, inbox)
            post(c, body)                                   # warm the caches once
            dt, lats = concurrent(jmap_list_client, (ports["http"], body, want, a.requests),
                                  a.clients)
            row(rows, f"JMAP Email/query(50, receivedAt desc) + Email/get({len(LIST_PROPS)} "
                "list properties), 1 request", dt, lats)
            dt, lats = concurrent(imap_list_client, (ports["imap"], uids50, False, a.requests),
                                  a.clients)
            row(rows, "IMAP UID FETCH <the 50 uids> (UID FLAGS INTERNALDATE RFC822.SIZE "
                "ENVELOPE)", dt, lats)
            dt, lats = concurrent(imap_list_client, (ports["imap"], uids50, True,
                                                     max(1, a.requests // 4)), a.clients)
            row(rows, "IMAP UID SORT (REVERSE ARRIVAL) ALL + that FETCH (2 round trips)", dt,
                lats, "pages")
        if "bodies" in only:
            k = min(a.body_messages, len(order))
            dt, total = jmap_bodies(ports["http"], acc, order[:k])
            rows.append((f"JMAP Email/get bodyStructure+bodyValues (all), {k} messages, 50 "
                         "per request", f"{total / dt / 1e6:.1f} MB/s", "", ""))
            dt, total = imap_bodies(ports["imap"], sorted(all_uids)[:k])
            rows.append((f"IMAP UID FETCH BODY.PEEK[], {k} messages, 50 per command",
                         f"{total / dt / 1e6:.1f} MB/s", "", ""))
        if "push" in only:
            es, ws = push(ports["http"], ports["lmtp"], a.pushes)
            rows.append((f"push LMTP delivery -> EventSource StateChange ({a.pushes})", "",
                         ms(statistics.median(es)), ms(pct(es, 0.99))))
            rows.append((f"push LMTP delivery -> WebSocket StateChange ({a.pushes})", "",
                         ms(statistics.median(ws)), ms(pct(ws, 0.99))))
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"\n{a.messages} messages, {a.clients} clients x {a.requests} list round trips\n")
    print("| work | rate | p50 | p99 |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
