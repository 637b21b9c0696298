"""Many-client IMAP stress benchmark (imaptest style): mailaccess against Dovecot.

Both servers run in the same run on the same data: the same INBOX of N
generated messages (bench/common.py message(), fixed seed) is APPENDed to each,
then every configuration runs against mailaccess and then Dovecot, one server
at a time (the other idles).  A configuration is C clients for S seconds, with
or without LOGIN/LOGOUT per cycle.  Each client is a coroutine on one asyncio
loop speaking raw IMAP (a load generator: no imaplib, a few regexes), looping

    [connect, LOGIN,] SELECT INBOX, 2-6 random commands, [LOGOUT]

where a command is FETCH (UID FLAGS and five header fields of a random
sequence range), UID STORE +FLAGS/-FLAGS of system flags and keywords,
EXPUNGE (after UID STORE +FLAGS.SILENT (\\Deleted) of one message) or APPEND
(with LITERAL+) -- the INBOX grows, since APPENDs outnumber EXPUNGEs.
Without login per cycle (--no-login) a client logs in once and loops from
SELECT.

Every answer is checked; only checks that hold whatever the other clients do:
  - the tagged answer is OK (a FETCH/STORE of a message another session expunged
    may also get NO [EXPUNGEISSUE] (RFC 5530); those are counted, not errors);
  - untagged state is consistent within a session: EXISTS never below the count
    the client holds (EXPUNGEs applied), EXPUNGE and FETCH sequence numbers in
    range, a sequence number keeps its UID, UIDs ascend with sequence numbers;
  - each client owns one keyword ($ownN) that no other client touches and only
    +FLAGS/-FLAGS are used (never FLAGS replace), so every FETCH FLAGS of a
    message the client stored to must show the client's keyword as it last set
    it (skipped when the flags hold \\Deleted: a message expunged by another
    client may be shown with the flags it had then);
  - SELECT: UIDVALIDITY never changes, UIDNEXT never goes backwards and is
    above every UID seen; APPEND: APPENDUID has that UIDVALIDITY and a UID above
    every UID the client has seen; a header FETCH holds the Message-ID.
A wrong answer, a BAD, an unexpected NO, a dropped connection or a command
unanswered for 60 s is an error: it is printed (command and response) and the
client reconnects.

Per server and configuration it reports ops/s (commands answered per second,
LOGIN and LOGOUT included), p50/p99 per command, server CPU seconds per 1,000
ops (utime+stime+cutime+cstime over the server's whole process tree from
/proc, so Dovecot's exited imap processes count), the peak memory of the whole
process tree, sampled every 0.5 s, and this client's own CPU share.  Memory, each
figure its own peak over the samples, summed over the tree's processes
(bench/dovecot.py mem_parts_kb): RSS and PSS (a page shared by N processes
counts 1/N: the fair figure for a tree of forked processes); anon, the
anonymous part of RSS (heap, stacks, arenas; "pss" after it: its PSS); file,
the file-backed part of RSS (code, libraries, mmapped data: page cache the
kernel can drop); and for mailaccess "LMDB", the part of RSS that is pages of
the LMDB map (data.mdb) touched through mmap.  Under the peaks, each process's
RSS/PSS/anon PSS at the sample with the highest summed RSS: the tree's root
(mailaccess: the supervisor; Dovecot: its master) and the others, largest PSS
first (detail only: the peaks above are the sums, sampled as before).

Password hash cost (LOGIN per cycle; --hash picks the profiles):
  same        mailaccess [auth] argon2id m=8 KiB, t=1, p=1; Dovecot verifies a
              {ARGON2ID} hash with the same parameters (libsodium)
  default     each at its default: mailaccess argon2id m=19456 KiB, t=2, p=1
              (its [auth] defaults) with its login cache ([auth] cache_ttl, on);
              Dovecot {PLAIN} (bench/dovecot.py, and the issue's anchor)
  argon2      the same cost at mailaccess's default hash: both verify argon2id
              m=19456 KiB, t=2, p=1 on every LOGIN (mailaccess cache_ttl = 0;
              Dovecot's auth cache is off by default)
mailaccess restarts on its data between profiles; one LOGIN before the clock
lets it rehash to the new parameters.  Dovecot's passwd-file is rewritten (it
is re-read when it changes).  Runs without login per cycle use the "same"
servers (the hash does not matter there).

Run as root (Dovecot):
    .venv/bin/python bench/bench_stress.py            # the full matrix (~4 min)
    .venv/bin/python bench/bench_stress.py --quick    # 10 and 50 clients, 3 s each
    .venv/bin/python bench/bench_stress.py --clients 10,50 --seconds 5 [--no-login | --login]
    .venv/bin/python bench/bench_stress.py --quick --workers 1,2   # mailaccess with 1
                  # and with 2 worker processes ([server] workers), and Dovecot, one run
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import message  # noqa: E402
import dovecot as dv  # noqa: E402

USER, PASSWORD = "alice", "pw"
SEED = 20261203
CHEAP = (8, 1, 1)                 # argon2id m KiB, t, p: the cheapest argon2 allows
DEFAULT = (19456, 2, 1)           # mailaccess's [auth] defaults
# hash-cost profile -> (mailaccess argon2 params, mailaccess login cache on, Dovecot's
# password entry: "cheap"/"default" argon2id hash or PLAIN, title)
PROFILES = {
    "same": (CHEAP, True, "cheap",
             "same cost (argon2id m=8 KiB t=1 p=1 both)"),
    "default": (DEFAULT, True, "plain",
                "each at its default (mailaccess argon2id m=19456 t=2 p=1 + login cache, "
                "Dovecot PLAIN)"),
    "argon2": (DEFAULT, False, "default",
               "same cost at mailaccess's default hash (argon2id m=19456 t=2 p=1 both, "
               "no login cache)"),
}
TIMEOUT = 60.0
HEADERS = "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]"
SHARED_FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$label1", "$label2", "$Junk")
CRLF = re.compile(rb"\r\n|\r(?!\n)|\n")
TICK = os.sysconf("SC_CLK_TCK")

R_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
R_UNTAGGED_NUM = re.compile(rb"^\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)\b", re.I)
R_UID = re.compile(rb"\bUID (\d+)", re.I)
R_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)", re.I)
R_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
R_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.I)
R_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.I)


# ---------------------------------------------------------------------------------------------
# messages

def corpus(n: int) -> list[bytes]:
    """N messages, sizes log-uniform 1-20 KB, CRLF line ends, fixed seed."""
    rng = random.Random(SEED)
    out = []
    for i in range(n):
        size = int(math.exp(rng.uniform(math.log(1_000), math.log(20_000))))
        out.append(CRLF.sub(b"\r\n", message(i, size, random.Random(SEED * 7 + i))))
    return out


def loaded_store(path: str, nmsg: int):
    """An in-process store at PATH (the tree first on sys.path) with user
    "u" and NMSG messages of ``corpus`` in its INBOX, appended 500 per
    commit -> (store, account id, INBOX id, the email ids by UID): the
    in-process write benchmarks (pages_per_store, ab_write_inproc)."""
    from mailaccess import accounts, ingest
    from mailaccess.store import ops
    from mailaccess.store.lmdb_store import LmdbStore
    s = LmdbStore(path)
    s.start()
    accounts.add_user(s, "u", "p")
    with s.view() as v:
        acc = v.account_by_name("u").id
        inbox = v.mailbox_by_role(acc, "inbox").id
    msgs = corpus(400)
    for a in range(0, nmsg, 500):
        items = [(ingest.prepare(msgs[i % len(msgs)]), [])
                 for i in range(a, min(nmsg, a + 500))]
        s.write_sync(ops.append_many, acc, inbox, items)
    with s.view() as v:
        eids = [e for _, e in v.uids(acc, inbox)]
    return s, acc, inbox, eids


# ---------------------------------------------------------------------------------------------
# the servers

def argon2_hash(params: tuple[int, int, int]) -> str:
    import argon2
    m, t, p = params
    return argon2.PasswordHasher(time_cost=t, memory_cost=m, parallelism=p,
                                 type=argon2.Type.ID).hash(PASSWORD)


class Mailaccess:
    """`mailaccess serve` with [auth] argon2 parameters; restartable on its data."""

    def __init__(self, workdir: str, max_sessions: int, workers: int | None = None):
        self.workdir, self.max_sessions = workdir, max_sessions
        self.workers = workers           # [server] workers; None: its default (cores)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.cfg = os.path.join(workdir, "mailaccess.toml")
        self.added = False
        self.log: list[str] = []

    def start(self, argon: tuple[int, int, int], cache: bool = True) -> None:
        w = self.workdir
        os.makedirs(w, exist_ok=True)
        m, t, p = argon
        with open(self.cfg, "w") as fh:
            fh.write(f'data_dir = "{w}/data"\ndemo_account = false\nlog_level = "warning"\n'
                     '[imap]\nlisten = "127.0.0.1:0"\nlisten_tls = "127.0.0.1:0"\n'
                     f'max_sessions_per_user = {self.max_sessions}\n'
                     f'[auth]\nargon2_memory_kib = {m}\nargon2_time_cost = {t}\n'
                     f'argon2_parallelism = {p}\n' + ('' if cache else 'cache_ttl = 0\n') +
                     '[http]\nlisten = "127.0.0.1:0"\n[lmtp]\nlisten = "127.0.0.1:0"\n'
                     + ('' if self.workers is None else
                        f'[server]\nworkers = {self.workers}\n'))
        if not self.added:
            subprocess.run([sys.executable, "-m", "mailaccess", "user", "add", USER,
                            "--password-stdin", "--config", self.cfg],
                           input=PASSWORD.encode() + b"\n", check=True, capture_output=True)
            self.added = True
        self.proc = subprocess.Popen([sys.executable, "-m", "mailaccess", "serve", "--config",
                                      self.cfg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ports = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                break
            mm = re.search(r"^\s+(\w+)\s+127\.0\.0\.1:(\d+)", line)
            if mm:
                ports.setdefault(mm.group(1), int(mm.group(2)))
            if line.startswith("  data"):
                break
        if "imap" not in ports:
            self.proc.kill()
            raise SystemExit(f"mailaccess did not start (ports {ports})")
        self.port = ports["imap"]

        def drain(f=self.proc.stdout, log=self.log):
            for raw in f:
                log.append(raw.decode(errors="replace"))
                del log[:-200]
        threading.Thread(target=drain, daemon=True).start()

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
        return "".join(ln for ln in self.log[-20:] if "WARN" in ln.upper() or "ERROR" in ln.upper()
                       or "Traceback" in ln)


class Dovecot(dv.Dovecot):
    """bench/dovecot.py's private Dovecot; the users file can switch hash scheme
    (passwd-file is re-read when it changes; the auth cache is off)."""

    scheme_entry = "{PLAIN}" + PASSWORD

    def write_config(self) -> None:
        super().write_config()
        self.write_users()

    def set_password(self, entry: str) -> None:
        self.scheme_entry = entry
        if os.path.exists(os.path.join(self.workdir, "users")):
            self.write_users()

    def write_users(self) -> None:
        import grp
        import pwd
        uid = pwd.getpwnam(dv.MAIL_USER).pw_uid
        gid = grp.getgrnam(dv.MAIL_GROUP).gr_gid
        home = os.path.join(self.workdir, "home", self.user)
        path = os.path.join(self.workdir, "users")
        with open(path + ".new", "w") as fh:
            fh.write(f"{self.user}:{self.scheme_entry}:{uid}:{gid}::{home}::\n")
        os.replace(path + ".new", path)


# ---------------------------------------------------------------------------------------------
# process-tree accounting from /proc

def tree_cpu(pids: list[int]) -> float:
    """utime+stime+cutime+cstime of every process in PIDS, seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def tree_mem_kb(pids: list[int], mapped: tuple[str, ...] = ()) -> dict[str, int]:
    """bench/dovecot.py's memory parts (KB) summed over PIDS."""
    return dv.tree_mem_parts_kb(pids, mapped)


# ---------------------------------------------------------------------------------------------
# a raw IMAP connection

class Failure(Exception):
    """A wrong answer: (command, what was wrong, the response)."""

    def __init__(self, command: str, what: str, response: bytes = b""):
        super().__init__(command, what, response)
        self.command, self.what, self.response = command, what, response

    def __str__(self):
        resp = self.response[:300].decode(errors="replace").replace("\r\n", "\\r\\n")
        return f"{self.command}: {self.what}" + (f" -- {resp}" if resp else "")


class Resp:
    """One response: the text with each literal replaced by an empty string
    (lines joined) and the literals."""
    __slots__ = ("text", "literals")

    def __init__(self, text: bytes, literals: list[bytes]):
        self.text, self.literals = text, literals


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r, self.w = reader, writer
        self.n = 0

    @classmethod
    async def open(cls, port: int) -> "Conn":
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        c = cls(r, w)
        greeting = await c.read_resp()
        if not greeting.text.startswith(b"* OK"):
            raise Failure("greeting", "not * OK", greeting.text)
        return c

    async def read_resp(self) -> Resp:
        line = await self.r.readuntil(b"\r\n")
        m = R_LITERAL.search(line)
        if not m:
            return Resp(line, [])
        parts, lits = [], []
        while m:
            parts.append(line[:m.start()] + b'""')
            lits.append(await self.r.readexactly(int(m.group(1))))
            line = await self.r.readuntil(b"\r\n")
            m = R_LITERAL.search(line)
        parts.append(line)
        return Resp(b"".join(parts), lits)

    async def command(self, text: bytes, literal: bytes | None = None
                      ) -> tuple[bytes, list[Resp]]:
        """Send `TAG TEXT` (with a LITERAL+ literal appended); -> (tagged line, untagged)."""
        self.n += 1
        tag = b"a%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text + b"\r\n")
        else:
            self.w.write(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        untagged = []
        prefix = tag + b" "
        while True:
            resp = await self.read_resp()
            if resp.text.startswith(prefix):
                return resp.text[len(prefix):], untagged
            if resp.text.startswith(b"+"):
                raise Failure(text.split(b" ", 1)[0].decode(), "unexpected continuation", resp.text)
            untagged.append(resp)

    def close(self) -> None:
        try:
            self.w.close()
        except Exception:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------------------------
# one client

class Stats:
    def __init__(self):
        self.lat: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.expungeissue = 0
        self.ops = 0

    def add(self, cmd: str, seconds: float) -> None:
        self.lat.setdefault(cmd, []).append(seconds)
        self.ops += 1


class Client:
    """One simulated user; its session state and checks (see the module docstring)."""

    def __init__(self, idx: int, port: int, login_cycle: bool, msgs: list[bytes], stats: Stats,
                 shared: dict):
        self.idx, self.port, self.login_cycle = idx, port, login_cycle
        self.msgs, self.stats, self.shared = msgs, stats, shared
        self.rng = random.Random(SEED * 31 + idx)
        self.own = f"$own{idx}"
        self.own_l = self.own.lower().encode()
        self.expect: dict[int, bool] = {}       # uid -> own keyword expected set
        self.max_uid = 0
        self.uidnext = 0
        self.conn: Conn | None = None
        self.count = 0
        self.uids: list[int | None] = []
        self.storing: set[int] = set()          # UIDs under a running STORE: not checked

    # -- sending and checking ---------------------------------------------------------------

    async def run_cmd(self, name: str, text: bytes, literal: bytes | None = None,
                      allow_expungeissue: bool = False) -> tuple[bytes, list[Resp]]:
        t0 = time.perf_counter()
        try:
            tagged, untagged = await asyncio.wait_for(self.conn.command(text, literal), TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure(name, f"no answer in {TIMEOUT:.0f} s", text) from None
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError) as exc:
            raise Failure(name, f"connection lost ({type(exc).__name__})", text) from None
        self.stats.add(name, time.perf_counter() - t0)
        if not tagged.startswith(b"OK"):
            if allow_expungeissue and tagged.upper().startswith(b"NO [EXPUNGEISSUE]"):
                self.stats.expungeissue += 1
            else:
                raise Failure(name, "tagged answer not OK", tagged)
        for resp in untagged:
            self.check_untagged(name, resp)
        return tagged, untagged

    def check_untagged(self, name: str, resp: Resp) -> None:
        text = resp.text
        if text.startswith(b"* BAD") or text.startswith(b"* NO"):
            raise Failure(name, "untagged BAD/NO", text)
        if text.startswith(b"* BYE") and name != "LOGOUT":
            raise Failure(name, "unexpected BYE", text)
        m = R_UNTAGGED_NUM.match(text)
        if not m:
            return
        n, kind = int(m.group(1)), m.group(2).upper()
        if kind == b"EXISTS":
            if n < self.count:
                raise Failure(name, f"EXISTS {n} below the {self.count} messages held "
                                    "(no EXPUNGE for the difference)", text)
            self.uids.extend([None] * (n - self.count))
            self.count = n
        elif kind == b"EXPUNGE":
            if not 1 <= n <= self.count:
                raise Failure(name, f"EXPUNGE {n} out of range 1..{self.count}", text)
            gone = self.uids.pop(n - 1)
            self.count -= 1
            if gone is not None:
                self.expect.pop(gone, None)
        elif kind == b"FETCH":
            if not 1 <= n <= self.count:
                raise Failure(name, f"FETCH {n} out of range 1..{self.count}", text)
            um = R_UID.search(text)
            uid = self.uids[n - 1]
            if um:
                u = int(um.group(1))
                if uid is not None and uid != u:
                    raise Failure(name, f"sequence {n} was UID {uid}, now UID {u}", text)
                if uid is None:
                    self.check_order(name, n, u, text)
                    self.uids[n - 1] = u
                uid = u
                if u > self.max_uid:
                    self.max_uid = u
            fm = R_FLAGS.search(text)
            if fm and uid is not None and uid in self.expect and uid not in self.storing:
                flags = fm.group(1).lower().split()
                if b"\\deleted" not in flags:
                    have = self.own_l in flags
                    if have != self.expect[uid]:
                        raise Failure(name, f"UID {uid}: own keyword {self.own} "
                                            f"{'missing' if self.expect[uid] else 'present'} "
                                            "after this client's STORE", text)
            if resp.literals and b"HEADER.FIELDS" in text.upper():
                lit = resp.literals[0]
                if len(lit) > 2 and b"message-id:" not in lit.lower():
                    raise Failure(name, "header fetch without Message-ID", text + b" " + lit)

    def check_order(self, name: str, n: int, u: int, text: bytes) -> None:
        i = n - 2
        while i >= 0 and n - i < 64:
            if self.uids[i] is not None:
                if self.uids[i] >= u:
                    raise Failure(name, f"UID {u} at sequence {n} not above UID "
                                        f"{self.uids[i]} at {i + 1}", text)
                break
            i -= 1
        i = n
        while i < self.count and i - n < 64:
            if self.uids[i] is not None:
                if self.uids[i] <= u:
                    raise Failure(name, f"UID {u} at sequence {n} not below UID "
                                        f"{self.uids[i]} at {i + 1}", text)
                break
            i += 1

    # -- the commands -----------------------------------------------------------------------

    async def login(self) -> None:
        self.conn = await Conn.open(self.port)
        await self.run_cmd("LOGIN", f"LOGIN {USER} {PASSWORD}".encode())

    async def logout(self) -> None:
        await self.run_cmd("LOGOUT", b"LOGOUT")
        self.conn.close()
        self.conn = None

    async def select(self) -> None:
        self.count, self.uids = 0, []
        tagged, untagged = await self.run_cmd("SELECT", b"SELECT INBOX")
        blob = b" ".join(r.text for r in untagged) + b" " + tagged
        v, nx = R_UIDVALIDITY.search(blob), R_UIDNEXT.search(blob)
        if not v or not nx or not any(R_UNTAGGED_NUM.match(r.text) for r in untagged):
            raise Failure("SELECT", "no EXISTS, UIDVALIDITY or UIDNEXT", blob)
        v, nx = int(v.group(1)), int(nx.group(1))
        known = self.shared.setdefault("uidvalidity", v)
        if v != known:
            raise Failure("SELECT", f"UIDVALIDITY changed from {known} to {v}", blob)
        if nx < self.uidnext or nx <= self.max_uid:
            raise Failure("SELECT", f"UIDNEXT {nx} below an earlier UIDNEXT {self.uidnext} "
                                    f"or a UID seen ({self.max_uid})", blob)
        self.uidnext = nx

    async def fetch(self) -> None:
        if self.count == 0:
            return
        a = self.rng.randint(1, self.count)
        b = min(self.count, a + self.rng.randint(0, 19))
        await self.run_cmd("FETCH", f"FETCH {a}:{b} (UID FLAGS {HEADERS})".encode(),
                           allow_expungeissue=True)

    def known(self, k: int) -> list[int]:
        have = [u for u in self.uids if u is not None]
        return self.rng.sample(have, min(k, len(have)))

    async def store(self) -> None:
        uids = self.known(self.rng.randint(1, 3))
        if not uids:
            return await self.fetch()
        add = self.rng.random() < 0.6
        flags = self.rng.sample(SHARED_FLAGS, self.rng.randint(0, 2)) + [self.own]
        uidset = ",".join(map(str, sorted(uids)))
        self.storing = set(uids)
        try:
            tagged, untagged = await self.run_cmd(
                "STORE", f"UID STORE {uidset} {'+' if add else '-'}FLAGS ({' '.join(flags)})"
                .encode(), allow_expungeissue=True)
        finally:
            self.storing = set()
        # the STORE's own FETCH responses show the keyword as just set; a message with
        # no FETCH in the answer is gone (expunged by another client): no expectation
        seen: dict[int, bytes] = {}
        for r in untagged:
            m = R_UNTAGGED_NUM.match(r.text)
            if m and m.group(2).upper() == b"FETCH":
                um = R_UID.search(r.text)
                fm = R_FLAGS.search(r.text)
                if um and fm and int(um.group(1)) in uids:
                    seen[int(um.group(1))] = fm.group(1).lower().split()
        for u in uids:
            if u in seen:
                flags_now = seen[u]
                if b"\\deleted" not in flags_now and (self.own_l in flags_now) != add:
                    raise Failure("STORE", f"UID {u}: the STORE's FETCH shows {self.own} "
                                           f"{'missing' if add else 'present'}",
                                  b" ".join(r.text for r in untagged) + b" " + tagged)
                self.expect[u] = add
            else:
                self.expect.pop(u, None)

    async def expunge(self) -> None:
        uids = self.known(1)
        if not uids:
            return await self.fetch()
        await self.run_cmd("STORE", f"UID STORE {uids[0]} +FLAGS.SILENT (\\Deleted)".encode(),
                           allow_expungeissue=True)
        await self.run_cmd("EXPUNGE", b"EXPUNGE")

    async def append(self) -> None:
        msg = self.rng.choice(self.msgs)
        tagged, _ = await self.run_cmd("APPEND", b"APPEND INBOX (\\Seen)", msg)
        m = R_APPENDUID.search(tagged)
        if not m:
            raise Failure("APPEND", "no APPENDUID", tagged)
        v, u = int(m.group(1)), int(m.group(2))
        if v != self.shared.get("uidvalidity", v) or u <= self.max_uid:
            raise Failure("APPEND", f"APPENDUID {v} {u}: UIDVALIDITY "
                                    f"{self.shared.get('uidvalidity')}, a UID above "
                                    f"{self.max_uid} expected", tagged)
        self.max_uid = u

    async def one(self) -> None:
        x = self.rng.random()
        if x < 0.40:
            await self.fetch()
        elif x < 0.70:
            await self.store()
        elif x < 0.80:
            await self.expunge()
        else:
            await self.append()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            try:
                if self.conn is None:
                    await self.login()
                await self.select()
                for _ in range(self.rng.randint(2, 6)):
                    await self.one()
                if self.login_cycle:
                    await self.logout()
            except Failure as f:
                self.stats.errors.append(str(f))
                if self.conn:
                    self.conn.close()
                    self.conn = None
                await asyncio.sleep(0.05)
            except OSError as exc:
                self.stats.errors.append(f"connect: {exc}")
                self.conn = None
                await asyncio.sleep(0.05)
        if self.conn is not None:
            try:
                await self.logout()
            except Failure as f:
                self.stats.errors.append(str(f))
                self.conn.close()


# ---------------------------------------------------------------------------------------------
# a configuration on one server

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def run_config(port: int, pids_of, clients: int, seconds: float, login_cycle: bool,
                     msgs: list[bytes], mapped: tuple[str, ...] = ()) -> dict:
    stats = Stats()
    shared: dict = {}
    cs = [Client(i, port, login_cycle, msgs, stats, shared) for i in range(clients)]
    if not login_cycle:            # log in before the clock starts
        async def first_login(c):
            try:
                await c.login()
            except (Failure, OSError) as exc:      # counted; the client retries in run()
                stats.errors.append(str(exc))
                if c.conn:
                    c.conn.close()
                c.conn = None
        await asyncio.gather(*(first_login(c) for c in cs))
        stats.lat.clear()
        stats.ops = 0
    peak = dict.fromkeys(dv.MEM_PARTS, 0)
    # each process's parts at the sample with the highest summed RSS (the
    # breakdown printed under the peaks; the peaks are the sums, as before)
    at_peak: list[tuple[int, dict[str, int]]] = []
    stop = asyncio.Event()

    async def sample():
        while not stop.is_set():
            procs = [(pid, dv.mem_parts_kb(pid, mapped)) for pid in pids_of()]
            total = dict.fromkeys(dv.MEM_PARTS, 0)
            for _, parts in procs:
                for k, v in parts.items():
                    total[k] += v
            if total["rss"] >= peak["rss"]:
                at_peak[:] = procs
            for k, v in total.items():
                peak[k] = max(peak[k], v)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.ensure_future(sample())
    cpu0, me0, t0 = tree_cpu(pids_of()), time.process_time(), time.monotonic()
    await asyncio.gather(*(c.run(t0 + seconds) for c in cs))
    elapsed = time.monotonic() - t0
    cpu1, me1 = tree_cpu(pids_of()), time.process_time()
    stop.set()
    await sampler
    ops = stats.ops
    return {"ops": ops, "elapsed": elapsed, "ops_s": ops / elapsed,
            "cpu_per_k": (cpu1 - cpu0) / ops * 1000 if ops else float("nan"),
            "cpu_share": (cpu1 - cpu0) / elapsed,
            "client_cpu": (me1 - me0) / elapsed,
            "rss_mb": peak["rss"] / 1024, "pss_mb": peak["pss"] / 1024,
            "mem_mb": {k: v / 1024 for k, v in peak.items()},
            "procs_mb": [(pid, {k: v / 1024 for k, v in parts.items()})
                         for pid, parts in at_peak],
            "lat": {k: (len(v), pct(v, 0.5) * 1000, pct(v, 0.99) * 1000)
                    for k, v in stats.lat.items()},
            "errors": stats.errors, "expungeissue": stats.expungeissue}


async def warm_login(port: int) -> None:
    c = await Conn.open(port)
    tagged, _ = await c.command(f"LOGIN {USER} {PASSWORD}".encode())
    if not tagged.startswith(b"OK"):
        raise SystemExit(f"LOGIN after a hash change answered {tagged!r}")
    await c.command(b"LOGOUT")
    c.close()


async def load(port: int, msgs: list[bytes], n: int) -> None:
    """APPEND N messages (cycling through MSGS) from 8 connections."""
    async def one(share):
        c = await Conn.open(port)
        tagged, _ = await c.command(f"LOGIN {USER} {PASSWORD}".encode())
        assert tagged.startswith(b"OK"), tagged
        for i in share:
            tagged, _ = await c.command(b"APPEND INBOX", msgs[i % len(msgs)])
            if not tagged.startswith(b"OK"):
                raise SystemExit(f"loading: APPEND answered {tagged!r}")
        await c.command(b"LOGOUT")
        c.close()
    # the first message alone: Dovecot 2.3.19 creates INBOX and its list
    # index on the first APPEND, and 8 processes doing that at once can
    # panic on the list index's fcntl lock (EDEADLK, seen 2026-12-05)
    await one(range(0, min(n, 1)))
    await asyncio.gather(*(one(range(k, n, 8)) for k in range(1, 8)),
                         one(range(8, n, 8)))


# ---------------------------------------------------------------------------------------------
# printing

CMDS = ("LOGIN", "SELECT", "FETCH", "STORE", "EXPUNGE", "APPEND", "LOGOUT")


def show(label: str, res: dict) -> None:
    errs = len(res["errors"])
    print(f"  {label:<34} {res['ops_s']:8.0f} ops/s  {res['ops']:6d} ops  "
          f"cpu {res['cpu_per_k']:6.2f} s/1k ops ({res['cpu_share']:.2f} cores)  "
          f"client cpu {res['client_cpu']:.2f}  errors {errs}"
          + (f"  EXPUNGEISSUE {res['expungeissue']}" if res["expungeissue"] else ""), flush=True)
    m = res["mem_mb"]
    print(f"  {'':<34} peak MB: RSS {m['rss']:.0f} (PSS {m['pss']:.0f}) = anon {m['anon']:.0f} "
          f"(PSS {m['pss_anon']:.0f}) + file {m['file']:.0f} (PSS {m['pss_file']:.0f})"
          + (f"; LMDB map pages in RSS {m['mapped']:.0f}" if m["mapped"] else ""), flush=True)
    procs = res.get("procs_mb") or []
    if procs:
        # the first is the tree's root (mailaccess: the supervisor)
        (_, root), rest = procs[0], procs[1:]

        def cell(p):
            return f"{p['rss']:.0f}/{p['pss']:.0f}/{p['pss_anon']:.0f}"
        rest.sort(key=lambda x: -x[1]["pss"])
        shown = " ".join(cell(p) for _, p in rest[:4]) + (" ..." if len(rest) > 4 else "")
        print(f"  {'':<34} at the RSS peak, RSS/PSS/anon PSS MB: root {cell(root)}; "
              f"{len(rest)} more: {shown}", flush=True)
    cells = []
    for c in CMDS:
        if c in res["lat"]:
            n, p50, p99 = res["lat"][c]
            cells.append(f"{c} {p50:.1f}/{p99:.1f}")
    print(f"  {'':<34} p50/p99 ms: " + "  ".join(cells), flush=True)
    for e in res["errors"][:8]:
        print(f"  {'':<34} ERROR {e}", flush=True)
    if errs > 8:
        print(f"  {'':<34} ... {errs - 8} more errors", flush=True)


# ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", help="comma-separated client counts (default 10,50,200)")
    ap.add_argument("--seconds", type=float, help="seconds per configuration (default 5)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--no-login", action="store_true",
                      help="only runs where sessions stay logged in")
    mode.add_argument("--login", action="store_true", help="only runs with LOGIN per cycle")
    ap.add_argument("--quick", action="store_true",
                    help="defaults for a short run: 10 and 50 clients, 3 s per "
                         "configuration, 300 messages")
    ap.add_argument("--messages", type=int, help="INBOX size at the start (default 1000)")
    ap.add_argument("--hash", default="same,default,argon2",
                    help="hash-cost profiles for the login runs (comma-separated): same, "
                         "default, argon2")
    ap.add_argument("--servers", default="mailaccess,dovecot")
    ap.add_argument("--workers", default="",
                    help="mailaccess [server] workers, comma-separated: one mailaccess "
                         "server per value, each on its own copy of the data (default: "
                         "one server at its default, a worker per core)")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = ap.parse_args()
    quick = ("10,50", 3.0, 300) if args.quick else ("10,50,200", 5.0, 1000)
    args.clients = args.clients or quick[0]
    args.seconds = args.seconds or quick[1]
    args.messages = args.messages or quick[2]
    counts = [int(x) for x in args.clients.split(",") if x]
    profiles = [p for p in args.hash.split(",") if p]
    servers = [s for s in args.servers.split(",") if s]
    want = max(counts) * 4 + 2048
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))

    msgs = corpus(400)
    root = tempfile.mkdtemp(prefix="bench-stress-")
    os.chmod(root, 0o755)
    wcounts = [int(x) for x in args.workers.split(",") if x]
    mas: dict[str, Mailaccess] = {}
    if "mailaccess" in servers:
        i = servers.index("mailaccess")
        if wcounts:
            names = [f"mailaccess-w{w}" for w in wcounts]
            for name, w in zip(names, wcounts):
                mas[name] = Mailaccess(os.path.join(root, name), max(counts) + 50, w)
            servers[i:i + 1] = names
        else:
            mas["mailaccess"] = Mailaccess(os.path.join(root, "mailaccess"), max(counts) + 50)
    dc = Dovecot(os.path.join(root, "dovecot"), USER, PASSWORD,
                 max_connections=max(counts) + 50)
    entries = {"cheap": "{ARGON2ID}" + argon2_hash(CHEAP),
               "default": "{ARGON2ID}" + argon2_hash(DEFAULT),
               "plain": "{PLAIN}" + PASSWORD}
    print(f"bench_stress: clients {counts}, {args.seconds:g} s per configuration, "
          f"INBOX starts at {args.messages} messages; {dv.version(dc.binary)}; "
          f"{os.cpu_count()} cores", flush=True)
    loop = asyncio.new_event_loop()
    try:
        for ma in mas.values():
            ma.start(CHEAP)
            loop.run_until_complete(load(ma.port, msgs, args.messages))
        if "dovecot" in servers:
            dc.set_password(entries["cheap"])
            dc.start()
            loop.run_until_complete(load(dc.ports["imap"], msgs, args.messages))
        plan = []
        if not args.no_login:
            for prof in profiles:
                plan += [(prof, c, True) for c in counts]
        if not args.login:
            plan += [("same", c, False) for c in counts]
        current = "same"
        summary = []
        for prof, c, login_cycle in plan:
            if prof != current:
                params, cache, entry, _ = PROFILES[prof]
                for ma in mas.values():
                    ma.stop()
                    ma.start(params, cache)
                    # one login before the clock: mailaccess rehashes to the new parameters
                    loop.run_until_complete(warm_login(ma.port))
                if "dovecot" in servers:
                    dc.set_password(entries[entry])
                    loop.run_until_complete(warm_login(dc.ports["imap"]))
                current = prof
            title = (f"{c} clients, " + ("LOGIN per cycle" if login_cycle else "stay logged in")
                     + (f", hash: {PROFILES[prof][3]}" if login_cycle else ""))
            print(f"\n== {title}", flush=True)
            row = {}
            for s in servers:
                if s in mas:
                    res = loop.run_until_complete(run_config(
                        mas[s].port, mas[s].pids, c, args.seconds, login_cycle, msgs,
                        mapped=("/data.mdb",)))
                else:
                    res = loop.run_until_complete(run_config(
                        dc.ports["imap"], dc.pids, c, args.seconds, login_cycle, msgs))
                show(s, res)
                row[s] = res
            for name in mas:
                if name in row and "dovecot" in row and row["dovecot"]["ops"] \
                        and row[name]["ops"]:
                    a, b = row[name], row["dovecot"]
                    print(f"  {name + ' / dovecot':<34} ops/s {a['ops_s'] / b['ops_s']:.2f}x  "
                          f"cpu per op {a['cpu_per_k'] / b['cpu_per_k']:.2f}x", flush=True)
            summary.append((title, row))
        print("\n== summary (ops/s; server CPU s per 1,000 ops; peak MB: RSS / PSS / "
              "anon RSS / anon PSS; errors)")
        for title, row in summary:
            cells = [f"{s} {r['ops_s']:.0f} ops/s, {r['cpu_per_k']:.2f} s/1k, "
                     f"{r['rss_mb']:.0f}/{r['pss_mb']:.0f}/{r['mem_mb']['anon']:.0f}/"
                     f"{r['mem_mb']['pss_anon']:.0f} MB, {len(r['errors'])} err"
                     for s, r in row.items()]
            print(f"  {title}\n      " + " | ".join(cells))
        for s, srv in [*mas.items(), ("dovecot", dc)]:
            if s in servers:
                notes = srv.notes() if s in mas else "".join(
                    ln for ln in open(dc.log, errors="replace").readlines()[-400:]
                    if "Error" in ln or "Fatal" in ln or "Panic" in ln)[-3000:]
                if notes.strip():
                    print(f"\n{s} log (warnings/errors):\n{notes}")
    finally:
        for ma in mas.values():
            ma.stop()
        dc.stop()
        loop.close()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
