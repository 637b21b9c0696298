"""Cross-worker push latency, two trees side by side (perf5): interleaved A/B.

    PYTHONPATH=$PWD .venv/bin/python bench/ab_push.py ROUNDS BLOCK [TREE_A TREE_B]

Starts two `mailaccess serve` with 2 worker processes (A from TREE_A, B from
TREE_B; both default to the cwd).  In each, one IMAP session IDLEs on
INBOX on each worker, and a third session APPENDs (it lands on either
worker: it is picked so that the writer's worker is known).  Each round,
BLOCK APPENDs one after the other; for each, the time from the APPEND's
tagged OK to the ``* n EXISTS`` of the IDLE session on the same worker
(the local bus) and of the one on the other worker (the channel through
the supervisor).  Rounds alternate which server goes first.  Prints per
server the median and p90 of both, in ms.  The other-worker figure minus
the same-worker one is what the channel costs.
"""
import os, socket, statistics, sys, tempfile, time, atexit
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs

rounds, block = int(sys.argv[1]), int(sys.argv[2])
trees = sys.argv[3:5] if len(sys.argv) > 4 else [os.getcwd()] * 2
MSG = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: push\r\n\r\nhello\r\n"


class Raw:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.n = 0
        assert self.line().startswith(b"* OK")

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def cmd(self, text, literal=None):
        self.n += 1
        tag = b"t%d" % self.n
        if literal is None:
            self.sock.sendall(tag + b" " + text + b"\r\n")
        else:
            self.sock.sendall(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                assert ln.startswith(tag + b" OK"), ln
                return time.perf_counter()

    def login(self):
        self.cmd(b"LOGIN %s %s" % (bs.USER.encode(), bs.PASSWORD.encode()))
        return self

    def idle(self):
        self.cmd(b"SELECT INBOX")
        self.sock.sendall(b"i IDLE\r\n")
        assert self.line().startswith(b"+")

    def wait_exists(self):
        while True:
            ln = self.line()
            if ln.endswith(b" EXISTS"):
                return time.perf_counter()


def worker_of(sock, pids):
    """The worker process whose file table holds the server side of SOCK."""
    mine, theirs = sock.getsockname()[1], sock.getpeername()[1]
    inode = None
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            f = line.split()
            if int(f[1].split(":")[1], 16) == theirs and int(f[2].split(":")[1], 16) == mine:
                inode = f[9]
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


def one_per_worker(port, pids, make):
    got, extra = {}, []
    for _ in range(200):
        c = make(port)
        for _ in range(100):
            w = worker_of(c.sock, pids)
            if w is not None:
                break
            time.sleep(0.01)
        if w is not None and w not in got:
            got[w] = c
            if len(got) == 2:
                break
        else:
            extra.append(c)
    for c in extra:
        c.sock.close()
    assert len(got) == 2, "connections landed on one worker only"
    return got


os.chdir(tempfile.gettempdir())
servers, started = [], []
atexit.register(lambda: [m.stop() for m in started])
for tree in trees:
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = tree
    ma = bs.Mailaccess(tempfile.mkdtemp(prefix="abp-"), 60, 2)
    ma.start(bs.CHEAP)
    started.append(ma)
    os.environ.clear()
    os.environ.update(saved)
    time.sleep(1.0)                     # both workers accepting
    pids = [p for p in ma.pids() if p != ma.proc.pid]
    idlers = one_per_worker(ma.port, pids, lambda p: Raw(p).login())
    writers = one_per_worker(ma.port, pids, lambda p: Raw(p).login())
    wpid = next(iter(writers))
    writer = writers.pop(wpid)
    for c in writers.values():
        c.sock.close()
    for c in idlers.values():
        c.idle()
    same, other = idlers[wpid], next(c for p, c in idlers.items() if p != wpid)
    servers.append({"tree": tree, "writer": writer, "same": same, "other": other,
                    "local": [], "remote": []})


def round_(s):
    for _ in range(block):
        t_ok = s["writer"].cmd(b"APPEND INBOX", MSG)
        # the EXISTS may have come before the OK: the time is then <= 0
        s["local"].append(s["same"].wait_exists() - t_ok)
        s["remote"].append(s["other"].wait_exists() - t_ok)


for r in range(rounds):
    for s in (servers if r % 2 == 0 else servers[::-1]):
        round_(s)


def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


for name, s in zip("AB", servers):
    loc, rem = [1000 * x for x in s["local"]], [1000 * x for x in s["remote"]]
    print(f"{name}: same worker median {statistics.median(loc):.3f} p90 {q(loc, .9):.3f} ms; "
          f"other worker median {statistics.median(rem):.3f} p90 {q(rem, .9):.3f} ms  "
          f"{s['tree']}")
