"""ActiveSync end to end over real HTTP against `mailaccess serve` (issue 9,
Benchmark): the initial Sync of an Inbox of N messages at WindowSize W, as a
phone does it after adding the account, on the corpus the IMAP and JMAP
benchmarks use (bench_imap.corpus: sizes log-uniform 2-50 KB, fixed seed,
loaded through the ingest path LMTP uses).

    .venv/bin/python bench/bench_eas.py [--messages 500,10000] [--windows 50,512]
        [--runs 3] [--body-type 1] [--truncation 5120] [--version 16.1]

Each run is a new device (its own DeviceId) on one kept-alive connection
(http.client, Basic auth): Provision (two phases) and FolderSync first (not
timed), then the timed part: Sync with SyncKey 0 for the Inbox (priming:
a key, no items), then Sync with that key, WindowSize W, FilterType 0 (all)
and a BodyPreference (Type 1 plain text, TruncationSize 5120 by default),
repeated with each new key while the answer has MoreAvailable.  Every
answer is decoded with our WBXML codec and checked: only Adds, each
ServerId once, N in all.  Reported per run: Sync requests, wall seconds,
the server's CPU seconds over the same interval (all its threads, ended
ones included, from /proc/PID/stat), MB received and sent (HTTP bodies), items/s.
Aim (issue 9): 500 messages at WindowSize 512 in <= 0.25 s server time.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from bench_jmap import load_and_start  # noqa: E402
from dovecot import process_tree  # noqa: E402

from mailaccess.proto.eas.wbxml import E, decode, encode  # noqa: E402

AUTH = "Basic " + base64.b64encode(b"alice:pw").decode()
WBXML = "application/vnd.ms-sync.wbxml"


# --- the server's CPU time ----------------------------------------------------------------------

def _pid_cpu(pid: int) -> float:
    """Seconds of CPU the process PID has used, all its threads, those that
    have ended included (/proc/PID/stat utime + stime, in clock ticks).
    Summing the live threads' schedstat instead loses the time of a worker
    thread that ends during the run (Trio's idle thread cache lets threads
    go): the difference could even come out negative."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int) -> float:
    """CPU seconds of the server's whole process tree (the supervisor and
    its workers when [server] workers > 1)."""
    return sum(_pid_cpu(p) for p in process_tree(pid))


# --- a device ------------------------------------------------------------------------------------

class Device:
    """One kept-alive HTTP connection speaking ActiveSync as device DEVICE_ID;
    counts the bytes each way."""

    def __init__(self, port: int, device_id: str, version: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.device_id = device_id
        self.version = version
        self.policy_key: str | None = None
        self.sent = self.received = self.requests = 0

    def post(self, cmd: str, root):
        body = encode(root)
        headers = {"Authorization": AUTH, "Content-Type": WBXML,
                   "MS-ASProtocolVersion": self.version, "User-Agent": "bench_eas"}
        if self.policy_key:
            headers["X-MS-PolicyKey"] = self.policy_key
        self.conn.request("POST", f"/Microsoft-Server-ActiveSync?Cmd={cmd}&User=alice"
                          f"&DeviceId={self.device_id}&DeviceType=bench", body, headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"{cmd}: HTTP {r.status} {data[:200]!r}")
        self.sent += len(body)
        self.received += len(data)
        self.requests += 1
        return decode(data)

    def provision(self) -> None:
        def req(key=None):
            pol = [E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML")]
            if key:
                pol += [E("Provision:PolicyKey", text=key), E("Provision:Status", text="1")]
            return E("Provision:Provision", E("Provision:Policies", E("Provision:Policy", *pol)))

        def key_of(doc):
            return doc.find("Provision:Policies").find("Provision:Policy").child_text(
                "Provision:PolicyKey")

        temp = key_of(self.post("Provision", req()))
        self.policy_key = key_of(self.post("Provision", req(temp)))

    def inbox(self) -> str:
        doc = self.post("FolderSync", E("FolderHierarchy:FolderSync",
                                        E("FolderHierarchy:SyncKey", text="0")))
        assert doc.child_text("FolderHierarchy:Status") == "1", doc
        for add in doc.find("FolderHierarchy:Changes").findall("FolderHierarchy:Add"):
            if add.child_text("FolderHierarchy:Type") == "2":          # the default Inbox
                return add.child_text("FolderHierarchy:ServerId")
        raise SystemExit("FolderSync: no Inbox")

    def sync(self, collection: str, key: str, window: int | None, body_type: int,
             truncation: int):
        kids = [E("AirSync:SyncKey", text=key), E("AirSync:CollectionId", text=collection)]
        if window is not None:
            kids += [E("AirSync:GetChanges"), E("AirSync:WindowSize", text=str(window)),
                     E("AirSync:Options", E("AirSync:FilterType", text="0"),
                       E("AirSyncBase:BodyPreference",
                         E("AirSyncBase:Type", text=str(body_type)),
                         E("AirSyncBase:TruncationSize", text=str(truncation))))]
        doc = self.post("Sync", E("AirSync:Sync", E("AirSync:Collections",
                                                    E("AirSync:Collection", *kids))))
        col = doc.find("AirSync:Collections").find("AirSync:Collection")
        status = col.child_text("AirSync:Status")
        if status != "1":
            raise SystemExit(f"Sync: status {status}")
        return col


def initial_sync(port: int, pid: int, device_id: str, n: int, window: int, args) -> dict:
    dev = Device(port, device_id, args.version)
    dev.provision()
    inbox = dev.inbox()
    dev.sent = dev.received = dev.requests = 0
    seen: set[str] = set()
    c0, t0 = server_cpu(pid), time.perf_counter()
    col = dev.sync(inbox, "0", None, args.body_type, args.truncation)
    key = col.child_text("AirSync:SyncKey")
    while True:
        col = dev.sync(inbox, key, window, args.body_type, args.truncation)
        key = col.child_text("AirSync:SyncKey")
        cmds = col.find("AirSync:Commands")
        for c in cmds.children if cmds is not None else []:
            sid = c.child_text("AirSync:ServerId")
            if c.tag != "Add" or sid in seen:
                raise SystemExit(f"unexpected {c.tag} {sid}")
            seen.add(sid)
        if col.find("AirSync:MoreAvailable") is None:
            break
    wall, cpu = time.perf_counter() - t0, server_cpu(pid) - c0
    dev.conn.close()
    if len(seen) != n:
        raise SystemExit(f"{len(seen)} items synced, {n} expected")
    return {"requests": dev.requests, "wall": wall, "cpu": cpu,
            "mb_in": dev.received / 1e6, "mb_out": dev.sent / 1e6, "items": len(seen)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", default="500,10000")
    ap.add_argument("--windows", default="50,512")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--body-type", type=int, default=1)
    ap.add_argument("--truncation", type=int, default=5120)
    ap.add_argument("--version", default="16.1")
    ap.add_argument("--profile", default="", help="cProfile the server into this file")
    args = ap.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    for n in (int(x) for x in args.messages.split(",")):
        workdir = tempfile.mkdtemp(prefix="bench_eas_")
        proc, ports, _acc, _order = load_and_start(workdir, n, args.profile)
        try:
            for w in windows:
                rows = []
                results = []
                for r in range(args.runs):
                    res = initial_sync(ports["http"], proc.pid, f"bench{n}w{w}r{r}", n, w, args)
                    results.append(res)
                    rows.append((f"run {r + 1}",
                                 f"{res['requests']} Sync requests, {res['wall']:.3f} s wall, "
                                 f"{res['cpu']:.3f} s server CPU, {res['mb_in']:.2f} MB down, "
                                 f"{res['mb_out'] * 1000:.1f} KB up, "
                                 f"{res['items'] / res['wall']:.0f} items/s"))
                rows.append(("median", f"{statistics.median(x['wall'] for x in results):.3f} s wall, "
                             f"{statistics.median(x['cpu'] for x in results):.3f} s server CPU"))
                common.report(f"EAS initial Sync: {n} messages, WindowSize {w}, "
                              f"BodyPreference Type {args.body_type} "
                              f"TruncationSize {args.truncation}, {args.version}", rows)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
