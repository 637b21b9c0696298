"""A 250 from LMTP means the message is on disk: kill -9 the server partway
through 1,000 deliveries from 20 concurrent clients, restart it, and every
acknowledged message is there and `mailaccess check` passes."""
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.slow


CONFIG = """
data_dir = "{data}"
demo_account = false
[imap]
listen = {{ host = "127.0.0.1", port = 0, enabled = false }}
listen_tls = {{ host = "127.0.0.1", port = 0, enabled = false }}
[http]
listen = "127.0.0.1:0"
[lmtp]
listen = "127.0.0.1:0"
"""


def _past(moment: float) -> bool:
    now = time.monotonic()
    return now >= moment


def start_server(cfg_path):
    proc = subprocess.Popen([sys.executable, "-m", "mailaccess", "serve", "--config", cfg_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # a deadline so a server that never starts fails the test instead of hanging
    give_up = time.monotonic() + 60
    port = None
    lines = []
    while not _past(give_up):
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        m = re.search(r"lmtp listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "mailaccess is ready" in line:
            break
    if port is None:
        proc.kill()
        raise AssertionError("server did not start:\n" + "".join(lines))
    # keep draining output so the server never blocks on a full pipe
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, port


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mailaccess", *args], capture_output=True,
                          text=True, input="pw\n", timeout=120)


def test_kill9_loses_no_acknowledged_delivery(tmp_path):
    cfg = tmp_path / "mailaccess.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data"))
    r = run_cli("user", "add", "alice", "--password-stdin", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    proc, port = start_server(str(cfg))
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(i):
        try:
            with smtplib.LMTP("127.0.0.1", port) as c:
                for j in range(50):
                    if stop.is_set():
                        return
                    mid = f"<{i}.{j}@durability.test>"
                    body = (f"From: s@example.org\r\nTo: alice@localhost\r\nMessage-ID: {mid}\r\n"
                            f"Subject: msg {i}/{j}\r\n\r\n" + "x" * 2000 + "\r\n").encode()
                    c.sendmail("s@example.org", ["alice@localhost"], body)
                    with lock:
                        acked.append(mid.strip("<>"))
        except (smtplib.SMTPException, OSError):
            return  # the server died under us: unacknowledged, may or may not be stored

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    give_up = time.monotonic() + 120
    while len(acked) < 300 and not _past(give_up):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    for t in threads:
        t.join(30)
    n_acked = len(acked)
    assert n_acked >= 300

    # restart: every acknowledged message is there
    # (a restart recovers the store; then a clean SIGTERM shutdown exits 0)
    proc, port = start_server(str(cfg))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    from mailaccess.store import Store

    st = Store(tmp_path / "data" / "store")
    try:
        with st.view() as v:
            a = v.account_by_name("alice").id
            ib = v.mailbox_by_role(a, "inbox").id
            stored = set()
            for _uid, eid in v.uids(a, ib):
                raw = bytes(v.blob(a, v.email(a, eid).blob))
                m = re.search(rb"Message-ID: <([^>]+)>", raw)
                stored.add(m.group(1).decode())
    finally:
        st.close()
    missing = set(acked[:n_acked]) - stored
    assert not missing, f"{len(missing)} acknowledged messages lost"
    r = run_cli("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
