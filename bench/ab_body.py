"""Interleaved A/B of UID FETCH <100 uids> (BODY.PEEK[]) (perf4-body): per tree, raw-socket MB/s
(reads until the tagged OK: no client parse), imaplib MB/s, server CPU ms/MB (/proc, the
server's process tree, exited children included), this client's CPU ms/MB in the imaplib rounds.

    .venv/bin/python bench/ab_body.py NMSG ROUNDS TREE_A TREE_B   (stores on /dev/shm, AB_WORKERS=1)

A tree named ``dovecot`` is bench/dovecot.py's Dovecot (bench_stress's configuration) instead.
"""
import asyncio, atexit, os, signal, sys, tempfile, time, imaplib, socket, statistics, hashlib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_servers, bench_stress as bs, bench_imap
N = int(sys.argv[1]); rounds = int(sys.argv[2]); trees = sys.argv[3:5]
msgs, _ = bench_imap.corpus(N)
total = sum(map(len, msgs))
def cpu(ma):
    return bs.tree_cpu(ma.pids())
os.chdir(tempfile.gettempdir())
started = []; atexit.register(lambda: [ab_servers.stop(m) for m in started])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))     # atexit runs on kill too
servers = []
for tree in trees:
    ma = ab_servers.start(tree, "abb-", started)
    asyncio.new_event_loop().run_until_complete(bs.load(ma.port, msgs, N))
    c = imaplib.IMAP4("127.0.0.1", ma.port); c.login(bs.USER, bs.PASSWORD); c.select("INBOX")
    typ, d = c.uid("SEARCH", "ALL"); uids = [int(x) for x in d[0].split()]
    sets = [",".join(map(str, uids[i:i+100])) for i in range(0, len(uids), 100)]
    s = socket.create_connection(("127.0.0.1", ma.port)); f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (bs.USER.encode(), bs.PASSWORD.encode()))
    while not f.readline().startswith(b"b "): pass
    servers.append(dict(ma=ma, c=c, s=s, f=f, sets=sets, raw=[], lib=[], cpu_raw=0.0, cpu_lib=0.0,
                        cli=0.0))
    print(tree, "pids", ma.pids(), flush=True)
# correctness check once with imaplib
for sv in servers:
    want = sorted(hashlib.sha1(m).digest() for m in msgs)
    got = []
    for st in sv["sets"]:
        typ, d = sv["c"].uid("FETCH", st, "(BODY.PEEK[])")
        got += [hashlib.sha1(x[1]).digest() for x in d if isinstance(x, tuple)]
    assert sorted(got) == want, "bodies differ"
def raw_round(sv):
    s, f = sv["s"], sv["f"]; t0 = time.perf_counter(); n = 0
    for k, st in enumerate(sv["sets"]):
        tag = b"r%d" % k
        s.sendall(tag + b" UID FETCH " + st.encode() + b" (BODY.PEEK[])\r\n")
        # read until tagged line: consume literals properly
        while True:
            line = f.readline()
            if line.startswith(tag + b" "): assert b" OK" in line, line; break
            while line.endswith(b"}\r\n"):
                ln = int(line[line.rindex(b"{")+1:-3]); n += len(f.read(ln)); line = f.readline()
    dt = time.perf_counter() - t0; assert n == total, (n, total); return total / dt / 1e6
def lib_round(sv):
    t0 = time.perf_counter()
    for st in sv["sets"]:
        sv["c"].uid("FETCH", st, "(BODY.PEEK[])")
    return total / (time.perf_counter() - t0) / 1e6
for r in range(rounds):
    for sv in (servers if r % 2 == 0 else servers[::-1]):
        c0 = cpu(sv["ma"]); sv["raw"].append(raw_round(sv)); sv["cpu_raw"] += cpu(sv["ma"]) - c0
        c0 = cpu(sv["ma"]); p0 = time.process_time()
        sv["lib"].append(lib_round(sv))
        sv["cpu_lib"] += cpu(sv["ma"]) - c0; sv["cli"] += time.process_time() - p0
mb = total / 1e6 * rounds
for name, sv, tree in zip("AB", servers, trees):
    print(f"{name}: raw median {statistics.median(sv['raw']):.0f} MB/s best {max(sv['raw']):.0f}  "
          f"imaplib median {statistics.median(sv['lib']):.0f} best {max(sv['lib']):.0f}  "
          f"server cpu raw {1000*sv['cpu_raw']/mb:.2f} ms/MB lib {1000*sv['cpu_lib']/mb:.2f} ms/MB  "
          f"client (imaplib) {1000*sv['cli']/mb:.2f} ms/MB  {tree}")
if os.environ.get("HOLD"):
    print("holding", flush=True); time.sleep(float(os.environ["HOLD"]))
