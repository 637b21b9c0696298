"""JMAP over HTTP: API round trips and push latency against `mailaccess serve`.

    .venv/bin/python bench/bench_jmap_http.py [--clients 10] [--requests 500] [--pushes 100]

1. C client processes, each with one kept-alive connection (http.client),
   send R `Core/echo` API requests with Basic credentials (each one
   authenticated: the credential cache, not argon2) -> requests/s, p50/p99.
2. An EventSource client (closeafter=no) and P sequential LMTP deliveries:
   the time from the start of each delivery to its StateChange event (the
   delivery's durable commit included) -> p50/p99.
Every answer is checked.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import start_mailaccess  # noqa: E402

AUTH = "Basic " + base64.b64encode(b"alice:pw").decode()
BODY = json.dumps({"using": ["urn:ietf:params:jmap:core"],
                   "methodCalls": [["Core/echo", {"hello": "world"}, "c"]]}).encode()


def client(port: int, n: int, out) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", "/jmap/api/", BODY, {"Authorization": AUTH,
                                              "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        lat.append(time.perf_counter() - t0)
        assert r.status == 200 and json.loads(data)["methodResponses"][0][0] == "Core/echo"
    out.put(lat)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def echo(port: int, clients: int, requests: int) -> None:
    q = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client, args=(port, requests, q))
             for _ in range(clients)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    lats = []
    for _ in procs:
        lats += q.get()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t0
    print(f"Core/echo: {len(lats)} requests from {clients} clients in {dt:.2f}s = "
          f"{len(lats) / dt:.0f}/s; p50 {statistics.median(lats) * 1000:.1f} ms, "
          f"p99 {pct(lats, 0.99) * 1000:.1f} ms")


def push(http_port: int, lmtp_port: int, pushes: int) -> None:
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
    c.request("GET", "/jmap/eventsource/?types=Email&closeafter=no&ping=0",
              headers={"Authorization": AUTH})
    r = c.getresponse()
    assert r.status == 200
    events = []
    got = threading.Condition()

    def reader():
        for line in r:
            if line.startswith(b"data:"):
                with got:
                    events.append(time.perf_counter())
                    got.notify_all()

    threading.Thread(target=reader, daemon=True).start()
    with got:
        got.wait_for(lambda: events, timeout=30)       # the initial state
    lat = []
    s = smtplib.LMTP("127.0.0.1", lmtp_port, timeout=60)
    for i in range(pushes):
        before = len(events)
        t0 = time.perf_counter()
        s.sendmail("s@example.org", ["alice@localhost"],
                   f"From: s@example.org\r\nSubject: push {i}\r\n\r\nbody {i}\r\n".encode())
        with got:
            assert got.wait_for(lambda: len(events) > before, timeout=30)
            lat.append(events[before] - t0)
    s.quit()
    print(f"push (LMTP delivery -> EventSource StateChange): {pushes} deliveries; "
          f"p50 {statistics.median(lat) * 1000:.1f} ms, p99 {pct(lat, 0.99) * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--pushes", type=int, default=100)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-jmap-http-")
    proc, ports = start_mailaccess(work, '[jmap]\nmax_concurrent_requests = 64\n')
    try:
        echo(ports["http"], a.clients, a.requests)
        push(ports["http"], ports["lmtp"], a.pushes)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
