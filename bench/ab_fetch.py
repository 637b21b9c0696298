"""Interleaved A/B of bench_imap's header FETCH (perf5-body): ``UID FETCH 1:* (FLAGS ENVELOPE
BODYSTRUCTURE)`` of NMSG messages through imaplib, per tree: median wall ms per command, server
CPU ms per command (/proc, the server's process tree), this client's CPU ms per command.

    .venv/bin/python bench/ab_fetch.py NMSG ROUNDS TREE_A TREE_B   (stores on /dev/shm, AB_WORKERS=1)

A tree named ``dovecot`` is bench/dovecot.py's Dovecot (bench_stress's configuration) instead;
its first FETCH (which fills its cache) is left out, as bench_imap's warm figure leaves it out.
"""
import asyncio, atexit, os, signal, sys, tempfile, time, imaplib, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_servers, bench_stress as bs, bench_imap
N = int(sys.argv[1]); rounds = int(sys.argv[2]); trees = sys.argv[3:5]
msgs, _ = bench_imap.corpus(N)
os.chdir(tempfile.gettempdir())
started = []; atexit.register(lambda: [ab_servers.stop(m) for m in started])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))     # atexit runs on kill too
servers = []
for tree in trees:
    ma = ab_servers.start(tree, "abf-", started)
    asyncio.new_event_loop().run_until_complete(bs.load(ma.port, msgs, N))
    c = imaplib.IMAP4("127.0.0.1", ma.port); c.login(bs.USER, bs.PASSWORD); c.select("INBOX")
    typ, d = c.uid("FETCH", "1:*", bench_imap.HEADER_ITEMS)       # warm-up (Dovecot's cache)
    assert typ == "OK" and len(d) >= N, typ
    servers.append(dict(ma=ma, c=c, wall=[], cpu=0.0, cli=0.0))
    print(tree, "pids", ma.pids(), flush=True)
for r in range(rounds):
    for sv in (servers if r % 2 == 0 else servers[::-1]):
        c0 = bs.tree_cpu(sv["ma"].pids()); p0 = time.process_time(); t0 = time.perf_counter()
        typ, d = sv["c"].uid("FETCH", "1:*", bench_imap.HEADER_ITEMS)
        sv["wall"].append(time.perf_counter() - t0)
        sv["cpu"] += bs.tree_cpu(sv["ma"].pids()) - c0; sv["cli"] += time.process_time() - p0
        assert typ == "OK" and len(d) >= N
for name, sv, tree in zip("AB", servers, trees):
    print(f"{name}: wall median {1000*statistics.median(sv['wall']):.1f} ms best "
          f"{1000*min(sv['wall']):.1f}  server cpu {1000*sv['cpu']/rounds:.1f} ms/cmd  "
          f"client {1000*sv['cli']/rounds:.1f} ms/cmd  {tree}")
