"""APPEND from 4 clients over worker processes, two trees side by side
(perf3-append): interleaved A/B with the clients' spread over the workers
fixed.

    PYTHONPATH=$PWD .venv/bin/python bench/ab_append.py ROUNDS BLOCK TREE_A TREE_B

Starts `mailaccess serve` from each tree (workers = W, default 2), opens
connections until it has the spread SPLIT (default "2/2"; also "3/1",
"4/0": clients per worker process; the kernel gives each connection to one
worker, so bench_imap gets any of them), then ROUNDS rounds of BLOCK
APPENDs of bench_imap's corpus (imaplib, Nagle on unless NODELAY=1),
alternating which server goes first.  Prints per tree the median msg/s,
every round, and the server CPU seconds per 1,000 messages (process tree,
from /proc).  The servers start from a directory with no package in it
(`python -m` puts the working directory first on sys.path).
"""
import os, re, socket, statistics, subprocess, sys, tempfile, threading, time, imaplib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs
import bench_imap

ROUNDS, BLOCK = int(sys.argv[1]), int(sys.argv[2])
trees = [os.path.abspath(t) for t in sys.argv[3:5]]
W = int(os.environ.get("W", "2"))
SPLIT = os.environ.get("SPLIT", "2/2")
want = [int(x) for x in SPLIT.split("/")]
msgs, _ = bench_imap.corpus(BLOCK)
tck = os.sysconf("SC_CLK_TCK")
os.chdir(tempfile.gettempdir())

servers = []
try:
    for tree in trees:
        saved = dict(os.environ)
        os.environ["PYTHONPATH"] = tree
        ma = bs.Mailaccess(tempfile.mkdtemp(prefix="abapp-", dir=os.environ.get("AB_DIR")), 80, W)
        ma.start(bs.CHEAP)
        servers.append(ma)
        os.environ.clear()
        os.environ.update(saved)

    def where(ma) -> dict[int, int]:
        """client port -> server pid, for the established connections (ss)."""
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"sport = :{ma.port}"],
                             capture_output=True, text=True).stdout
        w = {}
        for ln in out.splitlines():
            m = re.search(r"pid=(\d+)", ln)
            peer = re.findall(r"127\.0\.0\.1:(\d+)", ln)
            if m and len(peer) > 1:
                w[int(peer[1])] = int(m.group(1))
        return w

    sets = []
    for ma in servers:
        by: dict[int, list] = {}
        for _ in range(60):
            c = imaplib.IMAP4("127.0.0.1", ma.port)
            c.login(bs.USER, bs.PASSWORD)
            if os.environ.get("NODELAY"):
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            by.setdefault(where(ma).get(c.sock.getsockname()[1], 0), []).append(c)
            g = sorted(by.values(), key=len, reverse=True)
            if W == 1 or (len(g) >= 2 and len(g[0]) >= want[0] and len(g[1]) >= want[1]):
                break
        g = sorted(by.values(), key=len, reverse=True)
        sets.append(g[0][:want[0]] + (g[1][:want[1]] if W > 1 and len(g) > 1 else []))

    def cpu(ma) -> float:
        t = 0
        for p in ma.pids():
            try:
                f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                t += int(f[11]) + int(f[12])
            except OSError:
                pass
        return t / tck

    def run(c, share):
        for m in share:
            assert c.append("INBOX", None, None, m)[0] == "OK"

    res: list[list[float]] = [[], []]
    used = [0.0, 0.0]
    for r in range(ROUNDS):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            conns = sets[i]
            ts = [threading.Thread(target=run, args=(c, msgs[k::len(conns)]))
                  for k, c in enumerate(conns)]
            c0, t0 = cpu(servers[i]), time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            res[i].append(BLOCK / (time.perf_counter() - t0))
            used[i] += cpu(servers[i]) - c0
    for i, tree in enumerate(trees):
        print(f"{'AB'[i]} {SPLIT}: median {statistics.median(res[i]):.0f} msg/s  "
              f"cpu {1000 * used[i] / (ROUNDS * BLOCK):.2f} s/1000  "
              f"rounds {[round(x) for x in res[i]]}  {tree}")
finally:
    for ma in servers:
        ma.stop()
