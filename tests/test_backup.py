"""`mailaccess backup DIR` under load: the server keeps delivering while the
backup runs; the copy is consistent (check passes), holds every message
acknowledged before it began, restores into a fresh data directory, and is
served from there."""
import imaplib
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time

import pytest

from mailaccess.store import Store, StoreError
from mailaccess.store.backup import backup_store

CONFIG = """
data_dir = "{data}"
demo_account = false
[imap]
listen = {{ host = "127.0.0.1", port = 0 }}
listen_tls = {{ host = "127.0.0.1", port = 0, enabled = false }}
login_failure_delay = 0
[http]
listen = {{ host = "127.0.0.1", port = 0, enabled = false }}
[lmtp]
listen = "127.0.0.1:0"
"""


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mailaccess", *args], capture_output=True,
                          text=True, input="pw\n", timeout=120)


def start_server(cfg_path):
    """-> (process, {service: port}) once the server is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "mailaccess", "serve", "--config",
                             str(cfg_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ports, lines = {}, []
    while True:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            proc.kill()
            raise AssertionError("server did not start:\n" + "".join(lines))
        lines.append(line)
        m = re.search(r"(\w+) listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            ports[m.group(1)] = int(m.group(2))
        if "mailaccess is ready" in line:
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, ports


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def subjects(port):
    c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    c.login("alice", "pw")
    c.select("INBOX", readonly=True)
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    c.logout()
    return {m.decode() for m in re.findall(rb"Subject: (msg \d+)", b"".join(
        p[1] if isinstance(p, tuple) else b"" for p in data))}


def test_backup_under_load_restores_and_serves(tmp_path):
    cfg = tmp_path / "live.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "live"))
    assert cli("user", "add", "alice", "--password-stdin", "--config", str(cfg)).returncode == 0
    proc, ports = start_server(cfg)
    acked: list[str] = []
    stop_writer = threading.Event()

    def writer():   # the load: one LMTP client appending as fast as it can
        with smtplib.LMTP("127.0.0.1", ports["lmtp"]) as c:
            i = 0
            while not stop_writer.is_set():
                body = (f"From: s@example.org\r\nTo: alice@localhost\r\nSubject: msg {i}\r\n\r\n"
                        + "y" * 4000 + "\r\n").encode()
                c.sendmail("s@example.org", ["alice@localhost"], body)
                acked.append(f"msg {i}")
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(acked) < 100:
            time.sleep(0.01)
        before = list(acked)
        r = cli("backup", str(tmp_path / "bk"), "--config", str(cfg))
        during = len(acked) - len(before)
        assert r.returncode == 0, r.stderr
        assert "backed up" in r.stdout
        time.sleep(0.2)
    finally:
        stop_writer.set()
        t.join(60)
        stop(proc)
    assert during > 0 or len(acked) > len(before)   # the writer ran on meanwhile

    # restore into a fresh data directory and serve it
    fresh = tmp_path / "restored"
    os.makedirs(fresh)
    shutil.copytree(tmp_path / "bk" / "store", fresh / "store")
    r = cli("check", "--data-dir", str(fresh))
    assert r.returncode == 0 and "store is consistent" in r.stdout, r.stdout + r.stderr
    cfg2 = tmp_path / "restored.toml"
    cfg2.write_text(CONFIG.format(data=fresh))
    proc, ports = start_server(cfg2)
    try:
        got = subjects(ports["imap"])
    finally:
        stop(proc)
    assert set(before) <= got             # everything acknowledged before the backup
    assert got <= set(acked)              # and nothing that never was


def test_backup_never_overwrites(tmp_path):
    with Store(tmp_path / "s") as s:
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("keep")
        with pytest.raises(StoreError, match="not an empty directory"):
            backup_store(s, tmp_path / "full")
        assert os.listdir(tmp_path / "full") == ["x"]
        out = backup_store(s, tmp_path / "new")
        assert out == str(tmp_path / "new" / "store" / "data.mdb")
        assert os.listdir(tmp_path / "new") == ["store"]   # no partial left behind
