"""Two trees (or two settings) side by side on one busy machine: interleaved
A/B of the single-client write path (perf2).

    PYTHONPATH=$PWD .venv/bin/python bench/ab_write.py store|append NMSG ROUNDS BLOCK \
        'ENV_A' 'ENV_B' [TREE_A TREE_B]

Starts two `mailaccess serve` (workers = 1), A from TREE_A with the
environment ENV_A ("K=V K2=V2", or "" for none), B likewise (trees default to
the cwd: an A/B of a setting).  store: loads NMSG messages into each, then
ROUNDS rounds of BLOCK single `UID STORE n +FLAGS (\\Flagged)` (one client),
alternating which server goes first; append: ROUNDS rounds of BLOCK APPENDs
from 4 imaplib clients each (bench_imap's corpus).  Prints per server the
median and best round (ms per command, or msg/s) and the server CPU seconds
per 1,000 commands over all rounds (its process tree, from /proc).  Both
servers see the same machine load within a round, so the ratio is worth more
than two runs one after the other.  AB_DIR=/dev/shm puts both stores on
tmpfs (flushes cost nothing: the CPU of the rest).  AB_WORKERS=N runs both
with N worker processes ([server] workers; bench_imap runs the default, one
per core).
"""
import asyncio, atexit, os, sys, tempfile, time, imaplib, threading, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs

mode, nmsg, rounds, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
envs = [dict(x.split("=", 1) for x in a.split()) if a else {} for a in sys.argv[5:7]]
trees = sys.argv[7:9] if len(sys.argv) > 8 else [os.getcwd()] * 2
tck = os.sysconf("SC_CLK_TCK")
if mode == "append":
    import bench_imap
    corpus, _ = bench_imap.corpus(block)
else:
    corpus = bs.corpus(400)


def cpu(ma) -> float:
    t = 0
    for p in ma.pids():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t / tck


# `python -m mailaccess` puts its working directory first on sys.path: run
# from a tree, both servers would import that tree's code whatever
# PYTHONPATH says.  Start them from a directory that holds no package.
os.chdir(tempfile.gettempdir())
servers = []
started: list = []      # stopped at exit, also when a check fails
atexit.register(lambda: [m.stop() for m in started])
for env, tree in zip(envs, trees):
    saved = dict(os.environ)
    os.environ.update(env)
    os.environ["PYTHONPATH"] = tree
    ma = bs.Mailaccess(tempfile.mkdtemp(prefix="abw-", dir=os.environ.get("AB_DIR")), 60,
                       int(os.environ.get("AB_WORKERS", "1")))
    ma.start(bs.CHEAP)
    started.append(ma)
    os.environ.clear()
    os.environ.update(saved)
    if mode == "store":
        asyncio.new_event_loop().run_until_complete(bs.load(ma.port, corpus, nmsg))
    conns = []
    for _ in range(1 if mode == "store" else 4):
        c = imaplib.IMAP4("127.0.0.1", ma.port)
        c.login(bs.USER, bs.PASSWORD)
        conns.append(c)
    if mode == "store":
        conns[0].select("INBOX")
    servers.append({"ma": ma, "conns": conns, "rounds": [], "cpu": 0.0, "uid": 1})


def store_round(s) -> float:
    c = s["conns"][0]
    t0 = time.perf_counter()
    for _ in range(block):
        assert c.uid("STORE", str(s["uid"]), "+FLAGS", r"(\Flagged)")[0] == "OK"
        s["uid"] += 1
    return 1000 * (time.perf_counter() - t0) / block


def append_round(s) -> float:
    def run(c, share):
        for m in share:
            assert c.append("INBOX", None, None, m)[0] == "OK"
    ts = [threading.Thread(target=run, args=(c, corpus[k::4])) for k, c in enumerate(s["conns"])]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(corpus) / (time.perf_counter() - t0)


for r in range(rounds):
    for s in (servers if r % 2 == 0 else servers[::-1]):
        c0 = cpu(s["ma"])
        s["rounds"].append((store_round if mode == "store" else append_round)(s))
        s["cpu"] += cpu(s["ma"]) - c0
unit = "ms/cmd" if mode == "store" else "msg/s"
for name, s, env, tree in zip("AB", servers, sys.argv[5:7], trees):
    best = min(s["rounds"]) if mode == "store" else max(s["rounds"])
    print(f"{name}: median {statistics.median(s['rounds']):.3f} {unit}  best {best:.3f}  "
          f"cpu {1000 * s['cpu'] / (rounds * block):.3f} s/1000  [{env}] {tree}")
for s in servers:
    s["ma"].stop()
