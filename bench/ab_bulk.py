"""Interleaved A/B (and Dovecot) of bench_imap's bulk STORE (perf4-bulk).

    PYTHONPATH=$PWD .venv/bin/python bench/ab_bulk.py NMSG ROUNDS TREE_A [TREE_B ...] [--dovecot]

Starts one `mailaccess serve` per tree (its default workers, as bench_imap)
and, with --dovecot, Dovecot (sdbox, fsync always); APPENDs NMSG small
messages to each, sets \\Flagged on the first fifth (bench_imap's single
STOREs leave that), then ROUNDS rounds: on every server, in a rotating
order, ``STORE 1:* -FLAGS (\\Seen)`` untimed then ``STORE 1:* +FLAGS
(\\Seen)`` through imaplib, timed (what bench_imap's bulk line times).  All
servers see the same machine load within a round.  Prints per server the
median and best, the server's CPU per STORE (its process tree, every
thread, within 50 ms of the answer), and the median over rounds of each
server's ratio to the first.
TRACE=1 adds a raw-socket pass per server: time to the first byte, to the
tagged OK, and the largest gap between two reads (a chunk's commit in front
of its answer shows as a gap).
"""
import asyncio, atexit, os, socket, statistics, sys, tempfile, time, imaplib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs

args = [a for a in sys.argv[1:] if not a.startswith("--")]
nmsg, rounds, trees = int(args[0]), int(args[1]), args[2:]
with_dovecot = "--dovecot" in sys.argv
corpus = bs.corpus(200)
# bench_imap makes one bulk STORE on a change log far below its size limit;
# the rounds here would push it over (10,000 rows each) and every STORE
# would then wait for the pruning of the one before: raise the limit
# (PRUNE=1 keeps the default).  bench_stress writes the config itself: its
# `open` gets the extra table appended.
if not os.environ.get("PRUNE"):
    class _Cfg:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            return self.fh.write(text + "[store]\nchangelog_max_entries = 100000000\n")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def _open(path, mode="r", *a, **kw):
        fh = open(path, mode, *a, **kw)
        return _Cfg(fh) if str(path).endswith("mailaccess.toml") and "w" in mode else fh
    bs.open = _open
os.chdir(tempfile.gettempdir())     # `python -m` puts the cwd first on sys.path
started: list = []
atexit.register(lambda: [s.stop() for s in started])
servers = []
procs = []          # per server: () -> its process tree's pids


def cpu_ns(pids) -> int:
    """CPU time of every thread of PIDS (ns, /proc/*/task/*/schedstat)."""
    t = 0
    for p in pids:
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/schedstat") as fh:
                    t += int(fh.read().split()[0])
        except OSError:
            pass
    return t


for tree in trees:
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = tree
    ma = bs.Mailaccess(tempfile.mkdtemp(prefix="abb-"), 60, None)
    ma.start(bs.CHEAP)
    started.append(ma)
    os.environ.clear()
    os.environ.update(saved)
    servers.append((os.path.basename(tree.rstrip("/")) or tree, ma.port))
    procs.append(ma.pids)
if with_dovecot:
    import dovecot as dv
    d = dv.Dovecot(tempfile.mkdtemp(prefix="abb-dv-"), bs.USER, bs.PASSWORD)
    d.start()
    started.append(d)
    servers.append(("dovecot", d.ports["imap"]))
    procs.append(d.pids)
conns = []
for name, port in servers:
    asyncio.new_event_loop().run_until_complete(bs.load(port, corpus, nmsg))
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(bs.USER, bs.PASSWORD)
    c.select("INBOX")
    assert c.store(f"1:{nmsg // 5}", "+FLAGS.SILENT", r"(\Flagged)")[0] == "OK"
    conns.append(c)

times = [[] for _ in servers]
cpus = [[] for _ in servers]
for r in range(rounds):
    order = list(range(len(servers)))
    order = order[r % len(order):] + order[:r % len(order)]
    for i in order:
        c = conns[i]
        assert c.store("1:*", "-FLAGS", r"(\Seen)")[0] == "OK"
        pids = procs[i]()
        c0 = cpu_ns(pids)
        t0 = time.perf_counter()
        typ, data = c.store("1:*", "+FLAGS", r"(\Seen)")
        times[i].append(time.perf_counter() - t0)
        time.sleep(0.05)        # what the server does after the answer counts too
        cpus[i].append((cpu_ns(pids) - c0) / 1e9)
        assert typ == "OK" and len(data) == nmsg, (typ, len(data))
ms = lambda x: 1000 * x  # noqa: E731
for (name, _), ts, cs in zip(servers, times, cpus):
    print(f"{name:>12}: median {ms(statistics.median(ts)):6.1f} ms  best {ms(min(ts)):6.1f}  "
          f"server cpu {ms(statistics.median(cs)):5.1f} ms  "
          f"ratio to {servers[0][0]} (median of rounds) "
          f"{statistics.median(t / t0 for t, t0 in zip(ts, times[0])):.2f}")

if os.environ.get("TRACE"):
    for (name, port), c in zip(servers, conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.recv(4096)

        def cmd(tag, line):
            s.sendall(tag + b" " + line + b"\r\n")
            t0 = time.perf_counter()
            data, reads = b"", []
            while not (data.endswith(b"\r\n") and (data.startswith(tag + b" ")
                                                   or b"\r\n" + tag + b" " in data[-200:])):
                chunk = s.recv(1 << 20)
                reads.append((time.perf_counter() - t0, len(chunk)))
                data += chunk
            return reads, data
        cmd(b"a", f"LOGIN {bs.USER} {bs.PASSWORD}".encode())
        cmd(b"b", b"SELECT INBOX")
        for k in range(3):
            cmd(b"c", b"STORE 1:* -FLAGS (\\Seen)")
            reads, data = cmd(b"d", b"STORE 1:* +FLAGS (\\Seen)")
            gaps = sorted(((b[0] - a[0]), a[0]) for a, b in zip(reads, reads[1:]))[-3:]
            print(f"{name:>12}: first byte {ms(reads[0][0]):.1f} ms, OK {ms(reads[-1][0]):.1f} ms,"
                  f" {len(reads)} reads, {len(data)} bytes, largest gaps "
                  + ", ".join(f"{ms(g):.1f} at {ms(at):.1f}" for g, at in reversed(gaps)))
        s.close()
