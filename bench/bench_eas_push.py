"""ActiveSync push against `mailaccess serve`: memory per waiting Ping and
the latency from an LMTP delivery to the Ping's answer.

    .venv/bin/python bench/bench_eas_push.py [--pings 1000] [--pushes 100]

(The `push` part of bench/bench_eas.py; kept in its own file until the
branches are joined.)

1. memory: N devices (one user) each FolderSync, then each sends a Ping
   (HeartbeatInterval 3000, INBOX) on its own connection and waits.  The
   serve process's RSS before (after a warm-up round of 50 Pings answered)
   and with all N waiting, divided by N: the whole cost of a waiting Ping,
   its HTTP connection, task and bus subscription included (kernel socket
   buffers are not in RSS).  Then one LMTP delivery answers them all: every
   answer is checked (Status 2, INBOX), and the time until the last one is
   the fan-out time.
2. latency: one device, synced (Sync from key 0 to the end); P times: Ping,
   wait 50 ms for it to be waiting, deliver one message over LMTP (a kept
   LMTP connection), take the Ping's answer (Status 2), Sync the new
   message.  The time from the start of the LMTP transaction (its durable
   commit included) to the Ping answer's arrival -> p50/p99.
"""
from __future__ import annotations

import argparse
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time

import trio

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from common import read_ports, tree_rss_kb  # noqa: E402
from mailaccess.proto.eas.wbxml import E, decode, encode  # noqa: E402

AUTH = "Basic " + __import__("base64").b64encode(b"alice:pw").decode()


def start(workdir: str) -> tuple[subprocess.Popen, dict]:
    """`mailaccess serve` with room for many waiting Pings."""
    os.makedirs(workdir, exist_ok=True)
    cfg = os.path.join(workdir, "mailaccess.toml")
    with open(cfg, "w") as fh:
        fh.write(f'data_dir = "{workdir}/data"\ndemo_account = false\nlog_level = "warning"\n'
                 '[imap]\nlisten = "127.0.0.1:0"\nlisten_tls = "127.0.0.1:0"\n'
                 '[http]\nlisten = "127.0.0.1:0"\nmax_connections = 20000\n'
                 'max_connections_per_ip = 20000\n'
                 '[lmtp]\nlisten = "127.0.0.1:0"\n'
                 '[eas]\nrequire_provisioning = false\nmax_pings = 20000\n'
                 'max_pings_per_user = 20000\nmax_concurrent_requests = 20000\n')
    subprocess.run([sys.executable, "-m", "mailaccess", "user", "add", "alice",
                    "--password-stdin", "--config", cfg], input=b"pw\n", check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "mailaccess", "serve", "--config", cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ports = read_ports(proc, 60)
    if not ports:
        proc.kill()
        raise SystemExit("mailaccess did not start")
    return proc, ports


async def request(port: int, cmd: str, device: str, body: bytes, *, stream=None):
    """One POST on a new connection (or STREAM) -> (status, body bytes)."""
    own = stream is None
    if own:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = (f"POST /Microsoft-Server-ActiveSync?Cmd={cmd}&User=alice&DeviceId={device}"
            f"&DeviceType=bench HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
            f"MS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    try:
        await stream.send_all(head + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed")
            buf += data
        hdr, _, rest = buf.partition(b"\r\n\r\n")
        status = int(hdr.split(b" ", 2)[1])
        length = 0
        for line in hdr.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed")
            rest += data
        return status, rest
    finally:
        if own:
            await stream.aclose()


def ping_body(folder: str, hb: int) -> bytes:
    return encode(E("Ping:Ping", E("Ping:HeartbeatInterval", text=str(hb)),
                    E("Ping:Folders", E("Ping:Folder", E("Ping:Id", text=folder),
                                        E("Ping:Class", text="Email")))))


def ping_answer(raw: bytes) -> tuple[int, list[str]]:
    doc = decode(raw)
    fs = doc.find("Ping:Folders")
    return int(doc.child_text("Ping:Status")), [f.text for f in fs.children] if fs else []


async def folder_sync(port: int, device: str) -> str:
    st, raw = await request(port, "FolderSync", device, encode(E(
        "FolderHierarchy:FolderSync", E("FolderHierarchy:SyncKey", text="0"))))
    assert st == 200, st
    doc = decode(raw)
    for add in doc.find("FolderHierarchy:Changes").findall("FolderHierarchy:Add"):
        if add.child_text("FolderHierarchy:Type") == "2":
            return add.child_text("FolderHierarchy:ServerId")
    raise AssertionError("no Inbox")


async def sync(port: int, device: str, folder: str, key: str) -> tuple[str, int]:
    st, raw = await request(port, "Sync", device, encode(E("AirSync:Sync", E(
        "AirSync:Collections", E("AirSync:Collection", E("AirSync:SyncKey", text=key),
                                 E("AirSync:CollectionId", text=folder),
                                 E("AirSync:WindowSize", text="512"))))))
    assert st == 200, st
    if not raw:
        return key, 0
    coll = decode(raw).find("AirSync:Collections").find("AirSync:Collection")
    cmds = coll.find("AirSync:Commands")
    return (coll.child_text("AirSync:SyncKey"),
            len(cmds.findall("AirSync:Add")) if cmds is not None else 0)


def deliver(lmtp: smtplib.LMTP, i: int) -> None:
    lmtp.sendmail("s@example.org", ["alice@localhost"],
                  f"From: s@example.org\r\nSubject: push {i}\r\n\r\nbody {i}\r\n".encode())


async def gather(n: int, fn) -> None:
    sem = trio.Semaphore(32)

    async def one(i):
        async with sem:
            await fn(i)
    async with trio.open_nursery() as nur:
        for i in range(n):
            nur.start_soon(one, i)


async def ping_round(port: int, lmtp_port: int, devices: list[str], folder: str,
                     settle: float, on_waiting=None) -> float:
    """All DEVICES Ping; after SETTLE s (ON_WAITING called) one delivery
    answers them all -> seconds from the delivery's start to the last answer."""
    answers = []

    async def one(dev):
        st, raw = await request(port, "Ping", dev, ping_body(folder, 3000))
        assert st == 200, st
        answers.append((time.perf_counter(), ping_answer(raw)))

    async with trio.open_nursery() as nur:
        for i, dev in enumerate(devices):
            nur.start_soon(one, dev)
            if i % 50 == 49:
                await trio.sleep(0.01)
        await trio.sleep(settle)
        if on_waiting is not None:
            on_waiting()
        assert not answers, "a Ping answered before the delivery"
        t0 = time.perf_counter()

        def go():
            with smtplib.LMTP("127.0.0.1", lmtp_port, timeout=60) as s:
                deliver(s, -1)
        await trio.to_thread.run_sync(go)
    assert len(answers) == len(devices)
    assert all(a == (2, [folder]) for _, a in answers), answers[:3]
    return max(t for t, _ in answers) - t0


async def memory(proc, ports, n: int) -> None:
    port, lmtp = ports["http"], ports["lmtp"]
    devices = [f"mem{i}" for i in range(n)]
    folders = {}

    async def fs(i):
        folders[i] = await folder_sync(port, devices[i])
    await gather(n, fs)
    folder = folders[0]
    await ping_round(port, lmtp, devices[:50], folder, 1.0)        # warm-up
    await trio.sleep(1.0)
    before = tree_rss_kb(proc.pid)
    seen = {}

    def measure():
        seen["after"] = tree_rss_kb(proc.pid)
    fan = await ping_round(port, lmtp, devices, folder, 3.0 + n / 500, measure)
    after = seen["after"]
    print(f"memory: {n} waiting Pings: serve process tree RSS {before / 1024:.1f} MB -> "
          f"{after / 1024:.1f} MB = {(after - before) / n:.1f} KB per waiting Ping "
          f"(its connection included); one delivery answered all {n} in {fan * 1000:.0f} ms")


async def latency(ports, pushes: int) -> None:
    port, lmtp_port = ports["http"], ports["lmtp"]
    dev = "latency"
    folder = await folder_sync(port, dev)
    key, _ = await sync(port, dev, folder, "0")
    while True:
        key, adds = await sync(port, dev, folder, key)
        if not adds:
            break
    lmtp = smtplib.LMTP("127.0.0.1", lmtp_port, timeout=60)
    lat, commit = [], []
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        for i in range(pushes):
            got = {}

            async def ping():
                st, raw = await request(port, "Ping", dev, ping_body(folder, 300),
                                        stream=stream)
                got["t"] = time.perf_counter()
                got["a"] = (st, ping_answer(raw))

            async with trio.open_nursery() as nur:
                nur.start_soon(ping)
                await trio.sleep(0.05)
                assert not got
                t0 = time.perf_counter()
                await trio.to_thread.run_sync(deliver, lmtp, i)
                commit.append(time.perf_counter() - t0)
            assert got["a"] == (200, (2, [folder])), got
            lat.append(got["t"] - t0)
            key, adds = await sync(port, dev, folder, key)
            assert adds == 1, adds
    finally:
        lmtp.quit()
        await stream.aclose()
    lat.sort()
    print(f"push (LMTP delivery start -> Ping answer): {pushes} deliveries; "
          f"p50 {statistics.median(lat) * 1000:.1f} ms, "
          f"p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms (the LMTP transaction alone: p50 "
          f"{statistics.median(commit) * 1000:.1f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pings", type=int, default=1000)
    ap.add_argument("--pushes", type=int, default=100)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-eas-push-")
    proc, ports = start(work)
    try:
        trio.run(latency, ports, a.pushes)
        trio.run(memory, proc, ports, a.pings)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
