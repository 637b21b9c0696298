"""bench_imap's APPEND x4 interleaved over three servers: tree A, tree B and Dovecot
(perf7-append).

    .venv/bin/python bench/ab_imap_append.py ROUNDS TREE_A TREE_B

bench_imap's own server classes (MailaccessServer from each tree, its default 2 workers;
DovecotServer, sdbox, mail_fsync=always), stores on disk under a temporary directory.
Each server gets NMSG (default 10,000) distinct messages of bench_imap's corpus from 4
imaplib clients, in ROUNDS blocks; the order of the servers is rotated per block, so all
three see the same load from the rest of the machine.  SPLIT (default 2/2) fixes our
clients' spread over the two workers (the kernel picks it in bench_imap).  Prints per
server the median block rate, the rate over all blocks, the server CPU per 1,000 messages
(process tree, from /proc), and each tree's ratio to Dovecot over all blocks.
"""
import os, re, sys, time, tempfile, threading, subprocess, imaplib, statistics, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_imap as bi
ROUNDS = int(sys.argv[1]); trees = [os.path.abspath(t) for t in sys.argv[2:4]]
N = int(os.environ.get("NMSG", "10000"))
msgs, _ = bi.corpus(N)
tck = os.sysconf("SC_CLK_TCK")
root = tempfile.mkdtemp(prefix="ab-imap-append-"); os.chmod(root, 0o711)
os.chdir(root)
def cpu(pids):
    t = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split(); t += int(f[11]) + int(f[12])
        except OSError: pass
    return t / tck
def where(port):
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"sport = :{port}"], capture_output=True, text=True).stdout
    w = {}
    for ln in out.splitlines():
        m = re.search(r"pid=(\d+)", ln); peer = re.findall(r"127\.0\.0\.1:(\d+)", ln)
        if m and len(peer) > 1: w[int(peer[1])] = int(m.group(1))
    return w
servers = []; names = []
try:
    for i, t in enumerate(trees):
        saved = dict(os.environ); os.environ["PYTHONPATH"] = t
        s = bi.MailaccessServer(os.path.join(root, "ma%d" % i), 100).start()
        os.environ.clear(); os.environ.update(saved)
        servers.append(s); names.append("AB"[i] + ":" + t)
    d = bi.DovecotServer(os.path.join(root, "dc"), 100, "sdbox").start(); servers.append(d); names.append("dovecot")
    want = [int(x) for x in os.environ.get("SPLIT", "2/2").split("/")]
    sets = []
    for s in servers:
        port = s.ports["imap"]
        if s is d:
            sets.append([bi.connect(port) for _ in range(4)]); continue
        by = {}
        for _ in range(60):
            c = bi.connect(port)
            by.setdefault(where(port).get(c.sock.getsockname()[1], 0), []).append(c)
            g = sorted(by.values(), key=len, reverse=True)
            if len(g) >= 2 and len(g[0]) >= want[0] and len(g[1]) >= want[1]: break
        g = sorted(by.values(), key=len, reverse=True)
        sets.append(g[0][:want[0]] + g[1][:want[1]])
    block = N // ROUNDS
    res = [[] for _ in servers]; used = [0.0] * len(servers); secs = [0.0] * len(servers)
    pids = [s.pids() for s in servers]
    for r in range(ROUNDS):
        chunk = msgs[r * block:(r + 1) * block]
        order = [(r + k) % len(servers) for k in range(len(servers))]
        for i in order:
            if servers[i] is d: pids[i] = d.pids()
            conns = sets[i]
            def run(c, share):
                for m in share:
                    assert c.append("INBOX", None, None, m)[0] == "OK"
            ts = [threading.Thread(target=run, args=(c, chunk[k::4])) for k, c in enumerate(conns)]
            c0 = cpu(pids[i]); t0 = time.perf_counter()
            for t in ts: t.start()
            for t in ts: t.join()
            dt = time.perf_counter() - t0
            res[i].append(len(chunk) / dt); secs[i] += dt; used[i] += cpu(pids[i]) - c0
    for i, nm in enumerate(names):
        print(f"{nm:40s} median {statistics.median(res[i]):6.0f} msg/s  overall {block*ROUNDS/secs[i]:6.0f} msg/s  cpu {1000*used[i]/(block*ROUNDS):.2f} s/1000  rounds {[round(x) for x in res[i]]}")
    for i in range(2):
        print(f"{'AB'[i]}/dovecot: overall {secs[2]/secs[i]:.2f}x  rounds won {sum(a > b for a, b in zip(res[i], res[2]))}/{ROUNDS}")
finally:
    for s in servers:
        try: s.stop()
        except Exception: pass
    shutil.rmtree(root, ignore_errors=True)
