"""IMAP benchmark: mailaccess against Dovecot on the same generated mailbox.

Both servers get the same N realistic messages (bench/common.py message(),
sizes log-uniform 2-50 KB, fixed seed, a word planted in 1% of them) by
concurrent APPEND, then run the same workloads; every workload checks its
answers (counts, UIDs, bytes, hits) so speed cannot come from being wrong.

Workloads (names for --only): append, select, fetch, body, search, store, idle,
and on a second mailbox loaded in a fixed order (bench/bench_imap_more.py):
sort (UID SORT by ARRIVAL, DATE, SUBJECT, FROM, REVERSE DATE, DATE of UNSEEN,
and DATE again after another connection's APPEND), thread (REFERENCES,
ORDEREDSUBJECT, and again after an APPEND), search2 (UID SEARCH UNSEEN,
LARGER, SINCE, SENTSINCE, FROM, SUBJECT, HEADER Message-ID), fetch2 (UID
FETCH 1:* BODY.PEEK[HEADER], ENVELOPE, BODYSTRUCTURE), expunge (COPY all,
STORE \Deleted, EXPUNGE; MOVE of half).  Their answers are also compared
between the servers (the table's "met" column: same answer).
APPEND always runs (it loads the data).  Short workloads run several times:
"cold" is the first run, "warm" the median of the others (the second
mailbox's: "first" and the best of the others).

Run:  .venv/bin/python bench/bench_imap.py [--messages 10000] [--only NAME[,NAME]] [--keep]
"""
from __future__ import annotations

import argparse
import hashlib
import imaplib
import math
import os
import random
import re
import resource
import selectors
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import message  # noqa: E402
import dovecot as dv  # noqa: E402
import bench_imap_more as more  # noqa: E402

WORKLOADS = ("append", "select", "fetch", "body", "search", "store", "idle") + more.NAMES
USER, PASSWORD = "alice", "pw"
PLANTED = "kumquat"          # planted in 1% of the messages
ABSENT = "zeppelin"          # in none
SEED = 20251103
HEADER_ITEMS = "(FLAGS ENVELOPE BODYSTRUCTURE)"
CRLF = re.compile(rb"\r\n|\r(?!\n)|\n")


# ---------------------------------------------------------------------------------------------
# the corpus

def corpus(n: int) -> tuple[list[bytes], int]:
    """N messages, sizes log-uniform in 2-50 KB; PLANTED in every 100th (from #37)."""
    rng = random.Random(SEED)
    msgs, planted = [], 0
    for i in range(n):
        size = int(math.exp(rng.uniform(math.log(2_000), math.log(50_000))))
        # message() can cut the HTML part between \r and \n; imaplib's APPEND turns a bare
        # CR into CRLF, so normalise first and expect exactly what is sent
        m = CRLF.sub(b"\r\n", message(i, size, random.Random(SEED * 7 + i)))
        if i % 100 == 37:
            m = plant(m, PLANTED)
            planted += 1
        assert PLANTED.encode() not in m or i % 100 == 37
        msgs.append(m)
    return msgs, planted


def plant(m: bytes, word: str) -> bytes:
    """Put WORD at the start of the first text/plain body line."""
    at = m.index(b"\r\n\r\n") + 4
    if b"multipart/" in m[:at]:
        at = m.index(b"\r\n\r\n", at) + 4   # end of the text/plain part's header
    return m[:at] + word.encode() + b" " + m[at:]


# ---------------------------------------------------------------------------------------------
# the two servers

class MailaccessServer:
    name = "mailaccess"

    def __init__(self, workdir: str, max_sessions: int):
        self.workdir = workdir
        self.max_sessions = max_sessions
        self.proc = None
        self.ports: dict[str, int] = {}

    def start(self) -> "MailaccessServer":
        # common.start_mailaccess() cannot set [imap] keys (extra_config lands after
        # [lmtp]; a second [imap] table is a TOML error), and 1,000 IDLE sessions need
        # max_sessions_per_user raised: write the same config plus that key.
        w = self.workdir
        os.makedirs(w, exist_ok=True)
        cfg = os.path.join(w, "mailaccess.toml")
        with open(cfg, "w") as fh:
            fh.write(f'data_dir = "{w}/data"\ndemo_account = false\nlog_level = "warning"\n'
                     '[imap]\nlisten = "127.0.0.1:0"\nlisten_tls = "127.0.0.1:0"\n'
                     f'max_sessions_per_user = {self.max_sessions}\n'
                     '[http]\nlisten = "127.0.0.1:0"\n[lmtp]\nlisten = "127.0.0.1:0"\n')
        subprocess.run([sys.executable, "-m", "mailaccess", "user", "add", USER,
                        "--password-stdin", "--config", cfg], input=PASSWORD.encode() + b"\n",
                       check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailaccess", "serve", "--config", cfg],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            m = re.search(r"^\s+(\w+)\s+127\.0\.0\.1:(\d+)", line)
            if m:
                self.ports.setdefault(m.group(1), int(m.group(2)))
            if line.startswith("  data"):
                break
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        if "imap" not in self.ports or "lmtp" not in self.ports:
            self.proc.kill()
            raise SystemExit(f"mailaccess did not start (ports {self.ports})")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pids(self) -> list[int]:
        return dv.process_tree(self.proc.pid)

    def notes(self) -> str:
        return ""


class DovecotServer:
    name = "dovecot"

    def __init__(self, workdir: str, max_sessions: int, mail_format: str):
        self.d = dv.Dovecot(workdir, USER, PASSWORD, mail_format=mail_format,
                            max_connections=max_sessions)
        self.ports: dict[str, int] = {}

    def start(self) -> "DovecotServer":
        self.d.start()
        self.ports = self.d.ports
        return self

    def stop(self) -> None:
        self.d.stop()

    def pids(self) -> list[int]:
        return self.d.pids()

    def notes(self) -> str:
        warn = [ln for ln in open(self.d.log, errors="replace")
                if "Warning" in ln or "Error" in ln or "Fatal" in ln]
        return "".join(warn[-10:])


NODELAY = False   # --nodelay: TCP_NODELAY on the benchmark's imaplib sockets


def connect(port: int) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", port)
    if NODELAY:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.login(USER, PASSWORD)
    return c


def ok(typ, data, what: str):
    if typ != "OK":
        raise SystemExit(f"{what}: {typ} {data!r}")
    return data


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------------------
# workloads: each returns {metric: value} and raises on a wrong answer

def w_append(port: int, msgs: list[bytes], clients: int) -> dict:
    errors: list[BaseException] = []
    shares = [msgs[c::clients] for c in range(clients)]

    def run(share):
        try:
            c = connect(port)
            for m in share:
                ok(*c.append("INBOX", None, None, m), "APPEND")
            c.logout()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"APPEND failed: {errors[0]!r}")
    c = connect(port)
    n = int(ok(*c.select("INBOX", readonly=True), "SELECT")[0])
    c.logout()
    if n != len(msgs):
        raise SystemExit(f"APPEND: {n} messages in INBOX, expected {len(msgs)}")
    return {"secs": dt, "msgs_s": len(msgs) / dt, "mb_s": sum(map(len, msgs)) / dt / 1e6}


def w_select(port: int, n: int, runs: int) -> dict:
    times = []
    for _ in range(runs):
        c = connect(port)
        t0 = time.perf_counter()
        data = ok(*c.select("INBOX"), "SELECT")
        times.append(time.perf_counter() - t0)
        if int(data[0]) != n:
            raise SystemExit(f"SELECT: EXISTS {data[0]!r}, expected {n}")
        c.logout()
    return {"cold": times[0], "warm": median(times[1:]), "all": times}


def split_responses(data: list) -> list[bytes]:
    """imaplib FETCH data -> one bytes per message (literals inlined).

    A literal makes imaplib store (line, literal) and then the rest of the line as the
    next element, so a response ends at the first plain-bytes element."""
    out, cur = [], []
    for item in data:
        if isinstance(item, tuple):
            cur.append(item[0])
            cur.append(item[1])
        else:
            cur.append(item)
            out.append(b"".join(cur))
            cur = []
    if cur:
        out.append(b"".join(cur))
    return out


def w_fetch_headers(conn: imaplib.IMAP4, n: int, ids: set[int], runs: int) -> dict:
    times, summary = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        data = ok(*conn.uid("FETCH", "1:*", HEADER_ITEMS), "UID FETCH")
        times.append(time.perf_counter() - t0)
        resp = split_responses(data)
        uids, seen = set(), set()
        for r in resp:
            m = re.search(rb"UID (\d+)", r)
            if not m or b"ENVELOPE (" not in r or b"BODYSTRUCTURE (" not in r or b"FLAGS (" not in r:
                raise SystemExit(f"FETCH: incomplete response {r[:300]!r}")
            uids.add(int(m.group(1)))
            mid = re.search(rb"<bench(\d+)@example\.org>", r)
            if not mid:
                raise SystemExit(f"FETCH: no Message-ID in envelope {r[:300]!r}")
            seen.add(int(mid.group(1)))
        if len(resp) != n or len(uids) != n or seen != ids:
            raise SystemExit(f"FETCH: {len(resp)} responses, {len(uids)} UIDs, "
                             f"{len(seen)} Message-IDs; expected {n}")
        summary = sorted(uids)
    return {"cold": times[0], "warm": median(times[1:]), "all": times, "uids": summary}


def uid_sets(uids: list[int], batch: int) -> list[str]:
    out = []
    for i in range(0, len(uids), batch):
        chunk = uids[i:i + batch]
        if chunk[-1] - chunk[0] == len(chunk) - 1:
            out.append(f"{chunk[0]}:{chunk[-1]}")
        else:
            out.append(",".join(map(str, chunk)))
    return out


def w_body(conn: imaplib.IMAP4, uids: list[int], want: dict[bytes, int], total: int,
           runs: int, batch: int) -> dict:
    times = []
    for _ in range(runs):
        bodies = []
        t0 = time.perf_counter()
        for s in uid_sets(uids, batch):
            data = ok(*conn.uid("FETCH", s, "(BODY.PEEK[])"), "UID FETCH BODY[]")
            bodies.extend(item[1] for item in data if isinstance(item, tuple))
        times.append(time.perf_counter() - t0)
        got = sum(map(len, bodies))
        if len(bodies) != len(uids) or got != total:
            raise SystemExit(f"BODY[]: {len(bodies)} bodies, {got} bytes; "
                             f"expected {len(uids)}, {total}")
        have: dict[bytes, int] = {}
        for b in bodies:
            h = hashlib.sha1(b).digest()
            have[h] = have.get(h, 0) + 1
        if have != want:
            raise SystemExit("BODY[]: fetched bodies differ from the appended messages")
    best = min(times)
    return {"cold": times[0], "best": best, "mb_s": total / best / 1e6,
            "mb_s_cold": total / times[0] / 1e6, "all": times}


def w_search(conn: imaplib.IMAP4, planted: int, runs: int) -> dict:
    res = {}
    for word, want in ((PLANTED, planted), (ABSENT, 0)):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            data = ok(*conn.uid("SEARCH", "TEXT", word), "UID SEARCH")
            times.append(time.perf_counter() - t0)
            hits = len(data[0].split()) if data and data[0] else 0
            if hits != want:
                raise SystemExit(f"SEARCH TEXT {word}: {hits} hits, expected {want}")
        res[word] = {"cold": times[0], "warm": median(times[1:]), "hits": hits, "all": times}
    return res


BULK_MODES = ("+FLAGS", "-FLAGS", "+FLAGS")   # the last leaves every message \Seen


def w_store(conn: imaplib.IMAP4, uids: list[int], n_single: int) -> dict:
    targets = uids[:n_single]
    t0 = time.perf_counter()
    for u in targets:
        ok(*conn.uid("STORE", str(u), "+FLAGS", r"(\Flagged)"), "UID STORE")
    single = time.perf_counter() - t0
    # three bulk STOREs, each changing every message (+, -, + \Seen): one run moves by
    # 1.3x between two runs of the same server on this machine; the median is reported
    bulks = []
    for mode in BULK_MODES:
        t0 = time.perf_counter()
        data = ok(*conn.store("1:*", mode, r"(\Seen)"), "STORE 1:*")
        bulks.append(time.perf_counter() - t0)
        lines = sum(1 for d in data if d)
        if lines != len(uids):
            raise SystemExit(f"STORE 1:* {mode}: {lines} untagged FETCH, expected {len(uids)}")
    bulk = median(bulks)
    flagged = ok(*conn.uid("SEARCH", "FLAGGED"), "SEARCH FLAGGED")[0].split()
    unseen = ok(*conn.uid("SEARCH", "UNSEEN"), "SEARCH UNSEEN")[0].split()
    seen = ok(*conn.uid("SEARCH", "SEEN"), "SEARCH SEEN")[0].split()
    if sorted(map(int, flagged)) != sorted(targets):
        raise SystemExit(f"STORE: {len(flagged)} \\Flagged, expected {len(targets)}")
    if unseen or len(seen) != len(uids):
        raise SystemExit(f"STORE: {len(unseen)} unseen / {len(seen)} seen after STORE 1:*")
    fetch_lines = sum(1 for d in data if d)
    return {"single_secs": single, "single_s": len(targets) / single, "bulk": bulk,
            "bulk_all": bulks, "bulk_untagged": fetch_lines}


# --- IDLE: raw sockets, one selector -----------------------------------------------------------

class IdleClient:
    __slots__ = ("sock", "buf", "state", "t_exists", "exists")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.state = "greeting"
        self.t_exists = None
        self.exists = 0


def open_idlers(port: int, count: int, n_exists: int, parallel: int = 50, *, idle: bool = True,
                user: str = USER, password: str = PASSWORD) -> tuple[list, float]:
    """COUNT logged-in, SELECTed, IDLEing connections -> (clients, seconds to
    set up).  IDLE=False: they stop after the SELECT (bench_idle_memory's
    "quiet" sessions)."""
    sel = selectors.DefaultSelector()
    clients: list[IdleClient] = []
    started = ready = 0
    t0 = time.perf_counter()

    def launch():
        nonlocal started
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        c = IdleClient(s)
        clients.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        started += 1

    while started < min(parallel, count):
        launch()
    deadline = time.monotonic() + 600
    while ready < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"IDLE setup: only {ready}/{count} ready after 600 s")
        for key, _ in sel.select(timeout=5):
            c: IdleClient = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit(f"IDLE setup: server closed a connection in state {c.state}")
            c.buf += data
            while b"\r\n" in c.buf:
                line, c.buf = c.buf.split(b"\r\n", 1)
                if c.state == "greeting":
                    c.sock.sendall(f"a1 LOGIN {user} {password}\r\n".encode())
                    c.state = "login"
                elif c.state == "login" and line.startswith(b"a1 "):
                    if not line.startswith(b"a1 OK"):
                        raise SystemExit(f"IDLE setup: LOGIN {line!r}")
                    c.sock.sendall(b"a2 SELECT INBOX\r\n")
                    c.state = "select"
                elif c.state == "select":
                    m = re.match(rb"\* (\d+) EXISTS", line)
                    if m:
                        c.exists = int(m.group(1))
                    elif line.startswith(b"a2 "):
                        if not line.startswith(b"a2 OK") or c.exists != n_exists:
                            raise SystemExit(f"IDLE setup: SELECT {line!r} EXISTS {c.exists}")
                        if idle:
                            c.sock.sendall(b"a3 IDLE\r\n")
                            c.state = "idle-wait"
                        else:
                            c.state = "selected"
                            ready += 1
                            if started < count:
                                launch()
                elif c.state == "idle-wait" and line.startswith(b"+"):
                    c.state = "idle"
                    ready += 1
                    if started < count:
                        launch()
    dt = time.perf_counter() - t0
    for c in clients:
        sel.unregister(c.sock)
    sel.close()
    return clients, dt


def deliver_and_wait(clients: list, lmtp_port: int, msg: bytes, want_exists: int,
                     timeout: float = 120) -> dict:
    """Deliver MSG by LMTP; per connection, seconds until '* want_exists EXISTS'."""
    sel = selectors.DefaultSelector()
    for c in clients:
        c.t_exists = None
        sel.register(c.sock, selectors.EVENT_READ, c)
    lmtp = smtplib.LMTP("127.0.0.1", lmtp_port)
    lmtp.ehlo_or_helo_if_needed()
    ack: dict = {}

    def send():
        try:
            lmtp.sendmail("bench@example.org", [f"{USER}@localhost"], msg)
            ack["t"] = time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            ack["error"] = exc

    t0 = time.perf_counter()
    th = threading.Thread(target=send)
    th.start()
    waiting = len(clients)
    deadline = time.monotonic() + timeout
    pat = re.compile(rb"\* (\d+) EXISTS")
    while waiting and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            c: IdleClient = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            now = time.perf_counter()
            if not data:
                raise SystemExit("delivery: server closed an IDLE connection")
            c.buf += data
            while b"\r\n" in c.buf:
                line, c.buf = c.buf.split(b"\r\n", 1)
                m = pat.match(line)
                if m and int(m.group(1)) >= want_exists and c.t_exists is None:
                    c.t_exists = now - t0
                    waiting -= 1
    th.join()
    lmtp.quit()
    sel.close()
    if "error" in ack:
        raise SystemExit(f"LMTP delivery failed: {ack['error']!r}")
    if waiting:
        raise SystemExit(f"delivery: {waiting}/{len(clients)} connections saw no EXISTS "
                         f"in {timeout} s")
    lat = sorted(c.t_exists for c in clients)
    q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))]  # noqa: E731
    return {"p50": q(0.50), "p99": q(0.99), "max": lat[-1], "min": lat[0],
            "ack": ack["t"] - t0}


def mem(pids: list[int]) -> tuple[int, int, int]:
    """(sum RSS KB, sum PSS KB, processes)."""
    rss = pss = 0
    for p in pids:
        r, s = dv.mem_kb(p)
        rss += r
        pss += s
    return rss, pss, len(pids)


def w_idle(server, n_exists: int, conns: int, rounds: int) -> dict:
    time.sleep(1)
    before = mem(server.pids())
    clients, setup = open_idlers(server.ports["imap"], conns, n_exists)
    time.sleep(2)
    after = mem(server.pids())
    res = {"before": before, "after": after, "setup": setup,
           "rss_per_conn": (after[0] - before[0]) / conns,
           "pss_per_conn": (after[1] - before[1]) / conns}
    deliveries = []
    for r in range(rounds):
        m = message(10_000_000 + r, 5_000)
        deliveries.append(deliver_and_wait(clients, server.ports["lmtp"], m, n_exists + r + 1))
        time.sleep(0.5)
    res["deliveries"] = deliveries
    # the round with the median p99
    res["delivery"] = sorted(deliveries, key=lambda d: d["p99"])[len(deliveries) // 2]
    for c in clients:
        try:
            c.sock.close()
        except OSError:
            pass
    time.sleep(1)
    return res


# ---------------------------------------------------------------------------------------------

def _names(text: str) -> frozenset:
    """--only's value: workload names, comma-separated."""
    names = frozenset(filter(None, text.split(",")))
    bad = names - set(WORKLOADS)
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {sorted(bad)}; "
                                         f"names: {', '.join(WORKLOADS)}")
    return names


def run_server(server, msgs, planted, args, only) -> dict:
    res: dict = {}
    n = len(msgs)
    print(f"[{server.name}] APPEND {n} messages, {args.clients} clients ...", flush=True)
    res["append"] = w_append(server.ports["imap"], msgs, args.clients)
    print(f"[{server.name}]   {res['append']['msgs_s']:.0f} msg/s", flush=True)
    want = lambda w: only is None or w in only  # noqa: E731
    ids = set(range(n))
    if want("select"):
        res["select"] = w_select(server.ports["imap"], n, args.repeat)
        print(f"[{server.name}] SELECT {fmt_s(res['select']['warm'])}", flush=True)
    conn = connect(server.ports["imap"])
    ok(*conn.select("INBOX"), "SELECT")
    uids = [int(u) for u in ok(*conn.uid("SEARCH", "ALL"), "UID SEARCH ALL")[0].split()]
    if len(uids) != n:
        raise SystemExit(f"UID SEARCH ALL: {len(uids)} UIDs, expected {n}")
    if want("fetch"):
        res["fetch"] = w_fetch_headers(conn, n, ids, max(3, args.repeat - 2))
        if res["fetch"].pop("uids") != uids:
            raise SystemExit("FETCH: UIDs differ from UID SEARCH ALL")
        print(f"[{server.name}] FETCH headers cold {fmt_s(res['fetch']['cold'])} "
              f"warm {fmt_s(res['fetch']['warm'])}", flush=True)
    if want("body"):
        hashes: dict[bytes, int] = {}
        for m in msgs:
            h = hashlib.sha1(m).digest()
            hashes[h] = hashes.get(h, 0) + 1
        res["body"] = w_body(conn, uids, hashes, sum(map(len, msgs)), 2, args.batch)
        print(f"[{server.name}] BODY[] {res['body']['mb_s']:.1f} MB/s", flush=True)
    if want("search"):
        res["search"] = w_search(conn, planted, args.repeat)
        print(f"[{server.name}] SEARCH TEXT {fmt_s(res['search'][PLANTED]['warm'])}", flush=True)
    if want("store"):
        res["store"] = w_store(conn, uids, min(args.store, n))
        print(f"[{server.name}] STORE {res['store']['single_s']:.0f}/s, bulk "
              f"{fmt_s(res['store']['bulk'])}", flush=True)
    conn.logout()
    if want("idle"):
        print(f"[{server.name}] opening {args.idle} IDLE connections ...", flush=True)
        res["idle"] = w_idle(server, n, args.idle, args.deliveries)
        d = res["idle"]["delivery"]
        print(f"[{server.name}]   setup {res['idle']['setup']:.1f} s, "
              f"{res['idle']['rss_per_conn']:.0f} KB/conn, delivery p99 {fmt_s(d['p99'])}",
              flush=True)
    # last: their 60,000-odd changes (a second mailbox of N, COPY, EXPUNGE,
    # MOVE) would take the account's change log past its 100,000 rows
    # ([store] changelog_max_entries) during the bulk STOREs, which then pay
    # the pruning of the rows they push out (stop 24: 50 / 92 / 106 ms), and
    # the memory their caches free would show in the IDLE figure
    res.update(more.run(want, server.name, server.ports["imap"], connect, (USER, PASSWORD),
                        msgs, args.repeat))
    return res


def fmt_s(x: float) -> str:
    if x != x:
        return "-"
    if x < 1:
        return f"{x * 1000:.1f} ms"
    return f"{x:.2f} s"


def table(a: dict, d: dict, args, planted: int, notes: list[str]) -> None:
    rows = []   # (workload, mailaccess, dovecot, ratio, target, met)

    def add(name, va, vd, fmt, higher_better, target=None, need=None, check=None):
        if va is None or vd is None:
            return
        ratio = (va / vd) if higher_better else (vd / va if va else float("inf"))
        met = ""
        if check is not None:
            met = "yes" if check(va, ratio) else "NO"
        elif need is not None:
            met = "yes" if ratio >= need else "NO"
        rows.append((name, fmt(va), fmt(vd), f"{ratio:.2f}x", target or "", met))

    g = lambda r, *ks: _get(r, ks)  # noqa: E731
    per_s = lambda x: f"{x:,.0f}/s"  # noqa: E731
    add("APPEND msgs/s", g(a, "append", "msgs_s"), g(d, "append", "msgs_s"), per_s, True,
        ">= 1x", 1.0)
    add("APPEND MB/s", g(a, "append", "mb_s"), g(d, "append", "mb_s"), lambda x: f"{x:.1f}",
        True)
    add("SELECT INBOX (cold)", g(a, "select", "cold"), g(d, "select", "cold"), fmt_s, False)
    add("SELECT INBOX (warm med)", g(a, "select", "warm"), g(d, "select", "warm"), fmt_s, False)
    add("FETCH 1:* hdrs (cold)", g(a, "fetch", "cold"), g(d, "fetch", "cold"), fmt_s, False)
    add("FETCH 1:* hdrs (warm med)", g(a, "fetch", "warm"), g(d, "fetch", "warm"), fmt_s, False,
        ">= 5x", 5.0)
    add("BODY[] MB/s (best of 2)", g(a, "body", "mb_s"), g(d, "body", "mb_s"),
        lambda x: f"{x:.1f}", True, ">= 1x", 1.0)
    add("BODY[] MB/s (first)", g(a, "body", "mb_s_cold"), g(d, "body", "mb_s_cold"),
        lambda x: f"{x:.1f}", True)
    add(f"SEARCH TEXT hit (cold)", g(a, "search", PLANTED, "cold"),
        g(d, "search", PLANTED, "cold"), fmt_s, False)
    add(f"SEARCH TEXT hit (warm med)", g(a, "search", PLANTED, "warm"),
        g(d, "search", PLANTED, "warm"), fmt_s, False, ">= 20x", 20.0)
    add(f"SEARCH TEXT miss (warm med)", g(a, "search", ABSENT, "warm"),
        g(d, "search", ABSENT, "warm"), fmt_s, False, ">= 20x", 20.0)
    add(f"UID STORE x{args.store} (1/cmd)", g(a, "store", "single_s"), g(d, "store", "single_s"),
        per_s, True, ">= 1x", 1.0)
    add("STORE 1:* +/-FLAGS (\\Seen) med3", g(a, "store", "bulk"), g(d, "store", "bulk"), fmt_s,
        False, ">= 1x", 1.0)
    more.rows(a, d, lambda name, va, vd, same: add(
        name, va, vd, fmt_s, False, "same answer", check=lambda v, r, same=same: same))
    kb = lambda x: f"{x:,.0f} KB"  # noqa: E731
    add(f"RSS per IDLE conn", g(a, "idle", "rss_per_conn"), g(d, "idle", "rss_per_conn"), kb,
        False, "<= 100 KB", check=lambda v, r: v <= 100)
    add(f"PSS per IDLE conn", g(a, "idle", "pss_per_conn"), g(d, "idle", "pss_per_conn"), kb,
        False)
    add(f"{args.idle} IDLE: setup time", g(a, "idle", "setup"), g(d, "idle", "setup"), fmt_s,
        False)
    for p in ("p50", "p99", "max"):
        add(f"delivery->EXISTS {p}", g(a, "idle", "delivery", p), g(d, "idle", "delivery", p),
            fmt_s, False, "< 200 ms" if p == "p99" else None,
            check=(lambda v, r: v < 0.2) if p == "p99" else None)
    add("delivery LMTP 250 after", g(a, "idle", "delivery", "ack"),
        g(d, "idle", "delivery", "ack"), fmt_s, False)

    hdr = ("workload", "mailaccess", "dovecot", "ratio", "target", "met")
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(6)]
    line = "  ".join(f"{{:<{w[0]}}}" if i == 0 else f"{{:>{w[i]}}}" for i in range(6))
    print(f"\n== IMAP: mailaccess vs Dovecot, {args.messages} messages "
          f"(ratio > 1 = mailaccess better)")
    print(line.format(*hdr))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(line.format(*r))
    for n in notes:
        print("  * " + n)


def _get(r, ks):
    for k in ks:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def code_version() -> str:
    """The commit the server code came from (read-only git query), '+dirty' if modified."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no",
                                "mailaccess"], capture_output=True, text=True).stdout.strip()
        return (head or "unknown") + (" +uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


def raise_limits(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new_hard = hard if hard == resource.RLIM_INFINITY or hard >= want else want
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, new_hard))


def raise_inotify(conns: int) -> str:
    """Dovecot's IDLE uses one inotify instance per imap process; Linux allows 128
    per user by default, past that Dovecot falls back to polling every 30 s."""
    path = "/proc/sys/fs/inotify/max_user_instances"
    try:
        cur = int(open(path).read())
        if cur < conns * 2 + 256:
            with open(path, "w") as fh:
                fh.write(str(conns * 2 + 256))
            return f"fs.inotify.max_user_instances raised {cur} -> {conns * 2 + 256}"
        return f"fs.inotify.max_user_instances = {cur}"
    except OSError as exc:
        return f"could not raise fs.inotify.max_user_instances ({exc}); Dovecot IDLE may poll"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--only", type=_names,
                    help="run APPEND plus these workloads (comma-separated names)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directories")
    ap.add_argument("--clients", type=int, default=4, help="concurrent APPEND clients")
    ap.add_argument("--repeat", type=int, default=5, help="runs of the short workloads")
    ap.add_argument("--batch", type=int, default=100, help="UIDs per BODY[] FETCH")
    ap.add_argument("--store", type=int, default=2000, help="single-message UID STOREs")
    ap.add_argument("--idle", type=int, default=1000, help="IDLE connections")
    ap.add_argument("--deliveries", type=int, default=3, help="deliveries to the IDLE sessions")
    ap.add_argument("--dovecot-format", default="sdbox", choices=("sdbox", "mdbox", "maildir"))
    ap.add_argument("--servers", default="mailaccess,dovecot")
    ap.add_argument("--nodelay", action="store_true",
                    help="set TCP_NODELAY on the imaplib client sockets (imaplib sends an "
                         "APPEND literal and its CRLF in two writes; with Nagle on, the CRLF "
                         "waits for the server's ACK)")
    args = ap.parse_args()
    global NODELAY
    NODELAY = args.nodelay
    only = args.only    # None: all; {"append"}: APPEND alone

    raise_limits(args.idle * 2 + 1024)
    notes = []
    if only is None or "idle" in only:
        notes.append(raise_inotify(args.idle))
    binary = dv.ensure_installed()
    print(f"generating {args.messages} messages (seed {SEED}) ...", flush=True)
    msgs, planted = corpus(args.messages)
    total = sum(map(len, msgs))
    print(f"  {total / 1e6:.1f} MB, mean {total / len(msgs) / 1000:.1f} KB, "
          f"'{PLANTED}' planted in {planted}", flush=True)

    root = tempfile.mkdtemp(prefix="bench-imap-")
    os.chmod(root, 0o711)   # Dovecot's auth and mail processes must traverse it
    results: dict[str, dict] = {}
    try:
        for name in args.servers.split(","):
            work = os.path.join(root, name)
            if name == "mailaccess":
                server = MailaccessServer(work, args.idle + 100)
            else:
                server = DovecotServer(work, args.idle + 100, args.dovecot_format)
            server.start()
            try:
                results[name] = run_server(server, msgs, planted, args, only)
                if server.notes():
                    print(f"[{name}] log warnings:\n{server.notes()}")
            finally:
                server.stop()
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    notes += [
        f"mailaccess {code_version()}",
        f"{dv.version(binary)}, mail_location={args.dovecot_format}, mail_fsync=always, "
        "no FTS plugin (SEARCH TEXT scans the message files), default cache decisions "
        "(ENVELOPE/BODYSTRUCTURE enter dovecot.index.cache on the first FETCH)",
        f"{len(msgs)} messages, {total / 1e6:.1f} MB; APPEND by {args.clients} imaplib clients"
        + (" with TCP_NODELAY" if args.nodelay else " (Nagle on, imaplib's default)"),
        "cold = first run, warm med = median of the later runs "
        f"(SELECT/SEARCH {args.repeat} runs, FETCH {max(3, args.repeat - 2)}, BODY[] 2)",
        f"BODY[]: {args.batch} UIDs per UID FETCH; every body's SHA-1 checked",
        "STORE 1:*: median of three bulk STOREs on every message (+FLAGS, -FLAGS, +FLAGS "
        "\\Seen), each changing all of them; every run's untagged FETCH count checked",
        "IDLE memory: sum over the server's process tree (Dovecot: master, login, auth, "
        "one imap process per connection); PSS splits shared pages between processes",
        f"delivery: LMTP to both servers, {args.deliveries} deliveries, the round with the "
        "median p99 shown; time from the LMTP send to each '* n EXISTS'",
    ]
    if "mailaccess" in results and "dovecot" in results:
        table(results["mailaccess"], results["dovecot"], args, planted, notes)
    for name, r in results.items():
        if "idle" in r:
            i = r["idle"]
            print(f"  {name}: memory before {i['before'][0]:,} KB RSS / {i['before'][1]:,} KB "
                  f"PSS in {i['before'][2]} processes, after {i['after'][0]:,} KB RSS / "
                  f"{i['after'][1]:,} KB PSS in {i['after'][2]} processes")
            for k, dd in enumerate(i["deliveries"]):
                print(f"  {name}: delivery {k + 1}: p50 {fmt_s(dd['p50'])} p99 {fmt_s(dd['p99'])} "
                      f"max {fmt_s(dd['max'])} (LMTP 250 after {fmt_s(dd['ack'])})")
        for wk in ("select", "fetch"):
            if wk in r:
                print(f"  {name}: {wk} runs: " + ", ".join(fmt_s(x) for x in r[wk]["all"]))
        if "search" in r:
            for word in (PLANTED, ABSENT):
                s = r["search"][word]
                print(f"  {name}: SEARCH TEXT {word} ({s['hits']} hits) runs: "
                      + ", ".join(fmt_s(x) for x in s["all"]))
        if "store" in r:
            print(f"  {name}: STORE 1:* returned {r['store']['bulk_untagged']} untagged lines; "
                  "runs (" + ", ".join(BULK_MODES) + "): "
                  + ", ".join(fmt_s(x) for x in r["store"].get("bulk_all", [])))


if __name__ == "__main__":
    main()
