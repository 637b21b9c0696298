"""Shared pieces of the benchmarks: realistic message generation, a server
subprocess on loopback, and result printing."""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "if so no will more can about said its into than them only some could these two may "
         "first then do any like my now over such our man me even most made after also did "
         "many off before must well back through years much where your way down should "
         "because each just those people how too little state good very make world still own "
         "see men work long get here between both life being under never day same another "
         "know while last might us great old year come since against go came right used take "
         "three invoice meeting project release server mailbox budget quarterly report").split()


def message(i: int, size: int, rng: random.Random | None = None) -> bytes:
    """A plausible plain-text or multipart message of about SIZE bytes."""
    rng = rng or random.Random(i)
    subj = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
    words = []
    n = 0
    while n < size:
        w = rng.choice(WORDS)
        words.append(w)
        n += len(w) + 1
    lines, line = [], []
    for w in words:
        line.append(w)
        if sum(len(x) + 1 for x in line) > 70:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    body = "\r\n".join(lines)
    hdr = (f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
           f"To: Alice <alice@localhost>\r\n"
           f"Subject: {subj}\r\n"
           f"Date: Mon, 3 Nov 2025 {i % 24:02d}:{i % 60:02d}:00 +0000\r\n"
           f"Message-ID: <bench{i}@example.org>\r\n")
    if i % 3 == 0:
        b = f"b{i}"
        return (hdr + f"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"{b}\"\r\n\r\n"
                f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
                f"--{b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>{body[: size // 3]}</p>\r\n"
                f"--{b}--\r\n").encode()
    return (hdr + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()


def start_mailaccess(workdir: str, extra_config: str = "") -> tuple[subprocess.Popen, dict]:
    """Start `mailaccess serve` on ephemeral loopback ports; -> (process, {service: port})."""
    os.makedirs(workdir, exist_ok=True)
    cfg = os.path.join(workdir, "mailaccess.toml")
    with open(cfg, "w") as fh:
        fh.write(f'data_dir = "{workdir}/data"\ndemo_account = false\nlog_level = "warning"\n'
                 '[imap]\nlisten = "127.0.0.1:0"\nlisten_tls = "127.0.0.1:0"\n'
                 '[http]\nlisten = "127.0.0.1:0"\n[lmtp]\nlisten = "127.0.0.1:0"\n' + extra_config)
    subprocess.run([sys.executable, "-m", "mailaccess", "user", "add", "alice",
                    "--password-stdin", "--config", cfg], input=b"pw\n", check=True,
                   capture_output=True)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import logging,sys; from mailaccess.cli import main; "
         "logging.getLogger('mailaccess').setLevel(logging.INFO); sys.exit(main(sys.argv[1:]))",
         "serve", "--config", cfg],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    ports = read_ports(proc, 60)
    if not ports:
        proc.kill()
        raise SystemExit("mailaccess did not start")
    return proc, ports


def read_ports(proc: subprocess.Popen, wait: float) -> dict[str, int]:
    """{service: port} from the startup lines `mailaccess serve` prints,
    read for at most WAIT seconds; the rest of its output is drained."""
    ports: dict[str, int] = {}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        m = re.search(r"^\s+(\w+)\s+127\.0\.0\.1:(\d+)", line)
        if m:
            ports.setdefault(m.group(1), int(m.group(2)))
        if line.startswith("  data"):
            break
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return ports


def tree_rss_kb(pid: int) -> int:
    """RSS of PID and all its descendants (a server with worker processes)."""
    from dovecot import process_tree
    total = 0
    for p in process_tree(pid):
        try:
            total += rss_kb(p)
        except OSError:
            pass
    return total


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def report(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n== {title}")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
