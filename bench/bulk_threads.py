"""Server CPU per bulk STORE, per thread (stop 27, bulkstore).

    .venv/bin/python bench/bulk_threads.py TREE [TREE ...]     env: N (10000), R (15),
        SPY=PREFIX (py-spy --native --threads raw profiles), PERF=PREFIX (perf record),
        COPY=1 (the STORE of \\Deleted on a copy of INBOX: every email in two mailboxes)

One `mailaccess serve` per tree (1 worker, change-log limit raised as in
ab_bulk), NMSG messages, then R rounds, trees alternated: a raw-socket
``STORE 1:* -FLAGS (\\Seen)``, then ``STORE 1:* +FLAGS (\\Seen)`` measured:
each thread's CPU (/proc/PID/task/TID/schedstat) from before the command to
50 ms after its tagged OK.  Prints per tree the median per thread ("tPID.TID";
TID = PID is the event loop, the busiest other one the store's writer) and
of their sum, and the raw-socket client's wall time to the tagged OK ("wall").
"""
import asyncio, os, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs
nmsg = int(os.environ.get("N", "10000")); rounds = int(os.environ.get("R", "15"))
trees = sys.argv[1:]
corpus = bs.corpus(200)
os.chdir(tempfile.gettempdir())
class _Cfg:
    def __init__(self, fh): self.fh = fh
    def write(self, text): return self.fh.write(text + "[store]\nchangelog_max_entries = 100000000\n")
    def __enter__(self): return self
    def __exit__(self, *e): self.fh.close()
def _open(path, mode="r", *a, **kw):
    fh = open(path, mode, *a, **kw)
    return _Cfg(fh) if str(path).endswith("mailaccess.toml") and "w" in mode else fh
bs.open = _open
def threads(pids):
    out = {}
    for p in pids:
        for t in os.listdir(f"/proc/{p}/task"):
            try:
                name = open(f"/proc/{p}/task/{t}/comm").read().strip()
                ns = int(open(f"/proc/{p}/task/{t}/schedstat").read().split()[0])
            except OSError: continue
            out[(p, t, name)] = ns
    return out
servers = []
for tree in trees:
    saved = dict(os.environ); os.environ["PYTHONPATH"] = tree
    ma = bs.Mailaccess(tempfile.mkdtemp(prefix="thr-"), 60, 1); ma.start(bs.CHEAP)
    os.environ.clear(); os.environ.update(saved)
    asyncio.new_event_loop().run_until_complete(bs.load(ma.port, corpus, nmsg))
    s = socket.create_connection(("127.0.0.1", ma.port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.recv(4096)
    servers.append((tree, ma, s))
def cmd(s, tag, line):
    s.sendall(tag + b" " + line + b"\r\n"); data = b""
    while not (data.endswith(b"\r\n") and (data.startswith(tag + b" ") or b"\r\n" + tag + b" " in data[-200:])):
        data += s.recv(1 << 20)
    assert b" OK " in data[data.rfind(tag + b" "):], data[-200:]
    return data
FLAG = b"\\Seen"
for tree, ma, s in servers:
    cmd(s, b"a", f"LOGIN {bs.USER} {bs.PASSWORD}".encode()); cmd(s, b"b", b"SELECT INBOX")
    if os.environ.get("COPY"):      # bench_imap_more's case: \Deleted in a copy of INBOX
        cmd(s, b"b1", b"CREATE Copy"); cmd(s, b"b2", b"UID COPY 1:* Copy")
        cmd(s, b"b3", b"SELECT Copy")
        FLAG = b"\\Deleted"
res = {tree: {} for tree in trees}
spy = []
if os.environ.get("SPY"):
    for i, (tree, ma, s) in enumerate(servers):
        spy.append(subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "-p", str(ma.pids()[0]), "--native", "--threads", "-o", f"{os.environ['SPY']}{i}.txt", "-f", "raw", "-r", "500", "-d", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.5)
if os.environ.get("PERF"):
    for i, (tree, ma, s) in enumerate(servers):
        spy.append(subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384", "-F", "1000", "-p", str(ma.pids()[0]), "-o", f"{os.environ['PERF']}{i}.data"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)
for r in range(rounds):
    for tree, ma, s in (servers if r % 2 == 0 else servers[::-1]):
        cmd(s, b"c", b"STORE 1:* -FLAGS (" + FLAG + b")")
        time.sleep(0.05)
        pids = ma.pids(); t0 = threads(pids)
        w0 = time.perf_counter()
        d = cmd(s, b"d", b"STORE 1:* +FLAGS (" + FLAG + b")")
        res[tree].setdefault("wall", []).append((time.perf_counter() - w0) * 1e3)
        assert d.count(b"FETCH") == nmsg
        time.sleep(0.05)
        t1 = threads(pids)
        per = {}
        for k, v in t1.items():
            dv = v - t0.get(k, 0)
            if dv > 20000:
                name = "loop" if k[0] == k[1] else f"t{k[0]}.{k[1]}"
                per[name] = per.get(name, 0) + dv
        for k, v in per.items(): res[tree].setdefault(k, []).append(v / 1e6)
        res[tree].setdefault("ALL", []).append(sum(per.values()) / 1e6)
for p in spy: p.send_signal(2); p.wait()
print("load", open("/proc/loadavg").read().strip())
for tree in trees:
    print(tree, " ".join(f"{k}={statistics.median(v):.2f}" for k, v in sorted(res[tree].items(), key=lambda kv: -statistics.median(kv[1])) if statistics.median(v) > 0.05 or k == "ALL"))
for tree, ma, s in servers: s.close(); ma.stop()
