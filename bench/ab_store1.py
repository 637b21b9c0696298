"""Interleaved A/B/C... of the one-message `UID STORE n +FLAGS (\\Flagged)` from
one imaplib client, on bench_imap's realistic corpus (perf7-overlap).

    .venv/bin/python bench/ab_store1.py NMSG ROUNDS BLOCK SPEC [SPEC...]

SPEC is a tree (`/work/main`), a tree with environment settings
(`/work/wt/x:VAR=1,VAR2=2`) or `dovecot`.  Each server is loaded with NMSG
messages of bench_imap's corpus (2-50 KB, as bench_imap does: with a few
hundred tiny messages the gap to Dovecot is much smaller), then ROUNDS
rounds of BLOCK STOREs each, the servers' order reversed every other round,
so that every server sees the same machine load.  Prints per server the
median and best round (µs per STORE) and the server's CPU per STORE (its
process tree, from /proc).  A second line per server gives the percentiles
of the single STOREs' times and how many STOREs apart the slow ones (over
the 90th percentile) most often are: a period of 8 is the checkpoint
(REDO_MAX_COMMITS), whose data flush the next STORE's log flush queues
behind (perf9).  "loop" is the CPU of the busiest worker's main thread
(its Trio loop, which writes a lone STORE itself) per STORE, median over
the rounds: the part of the server's CPU the STORE path owns, without
the checkpoint thread, the other worker and the supervisor.  AB_WORKERS
sets mailaccess's worker count (default 1).

The servers are started from the temp directory: `python -m mailaccess`
puts its working directory first on sys.path, so a server started from a
worktree runs that worktree's code whatever PYTHONPATH says (a script run
from a worktree that starts "/work/main" measures the worktree twice).
"""
import collections
import os
import statistics
import sys
import tempfile
import time
import imaplib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_servers  # noqa: E402
import bench_imap  # noqa: E402
import bench_stress as bs  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")


def cpu(pids) -> float:
    t = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t / TCK


def loop_cpu(pids) -> dict[int, float]:
    """{pid: CPU seconds of its main thread} (the worker's Trio loop)."""
    return {p: cpu([f"{p}/task/{p}"]) for p in pids}


def start(spec: str):
    if spec == "dovecot":
        wd = tempfile.mkdtemp(prefix="abs1-dc-")
        srv = ab_servers._Dovecot(wd, bs.USER, bs.PASSWORD, max_connections=60)
        srv.set_password("{PLAIN}" + bs.PASSWORD)
        srv.start()
        srv.ab_dir = wd
        return srv, srv.ports["imap"]
    tree, _, env = spec.partition(":")
    saved = dict(os.environ)
    try:
        os.environ["PYTHONPATH"] = tree
        for kv in filter(None, env.split(",")):
            k, v = kv.split("=", 1)
            os.environ[k] = v
        wd = tempfile.mkdtemp(prefix="abs1-ma-")
        srv = bs.Mailaccess(wd, 60, int(os.environ.get("AB_WORKERS", "1")))
        srv.start(bs.CHEAP)
        srv.ab_dir = wd
        return srv, srv.port
    finally:
        os.environ.clear()
        os.environ.update(saved)


def loaded(spec: str, msgs: list, servers: list):
    """The server of SPEC, started (appended to SERVERS: ``stop_all`` them),
    MSGS appended to its INBOX by an imaplib client, which has it selected:
    (server, client)."""
    srv, port = start(spec)
    servers.append(srv)
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login(bs.USER, bs.PASSWORD)
    for m in msgs:
        im.append("INBOX", None, None, m)
    im.select("INBOX")
    return srv, im


def stop_all(servers) -> None:
    """Stop every server of SERVERS (the others still when one fails)."""
    for srv in servers:
        try:
            ab_servers.stop(srv)
        except Exception as exc:     # (the others are stopped still)
            print("stop:", exc)


def spread(times: list[float]) -> str:
    """The percentiles of TIMES (seconds, one per command, in order) in µs,
    and the distances (in commands) between the slow ones (over the 90th
    percentile) that occur most often: a periodic stall shows as one
    distance far ahead of the others."""
    q = statistics.quantiles([t * 1e6 for t in times], n=100)
    slow = [i for i, t in enumerate(times) if t * 1e6 > q[89]]
    gaps = collections.Counter(b - a for a, b in zip(slow, slow[1:]))
    top = ", ".join(f"{g} apart x{c}" for g, c in gaps.most_common(3))
    return (f"each STORE: p10 {q[9]:.0f} p50 {q[49]:.0f} p90 {q[89]:.0f} p95 {q[94]:.0f} "
            f"p99 {q[98]:.0f} us; slow ones {top}")


def main() -> None:
    nmsg, rounds, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    specs = sys.argv[4:]
    os.chdir(tempfile.gettempdir())
    msgs, _ = bench_imap.corpus(nmsg)
    servers = []
    try:
        for spec in specs:
            srv, im = loaded(spec, msgs, servers)
            srv.ab = (spec, im, [], [0.0, 0], [], [])
        k = 0
        for r in range(rounds):
            for srv in (servers if r % 2 == 0 else servers[::-1]):
                spec, im, walls, acc, each, loops = srv.ab
                pids = srv.pids() if hasattr(srv, "pids") else []
                clock = time.perf_counter
                l0 = loop_cpu(pids)
                c0, t0 = cpu(pids), clock()
                t = t0
                for i in range(block):
                    n = k + i
                    im.uid("STORE", str(n % nmsg + 1), "+-"[(n // nmsg) % 2] + "FLAGS",
                           r"(\Flagged)")
                    each.append(clock() - t)
                    t += each[-1]
                t1, c1 = clock(), cpu(pids)
                l1 = loop_cpu(pids)
                loops.append(max([l1[p] - l0[p] for p in pids] or [0.0]) / block * 1e6)
                walls.append((t1 - t0) / block * 1e6)
                acc[0] += c1 - c0
                acc[1] += block
            k += block
        for srv in servers:
            spec, im, walls, (c, n), each, loops = srv.ab
            print(f"{spec:50s} median {statistics.median(walls):6.0f} us/STORE  "
                  f"best {min(walls):6.0f}  server cpu {c / n * 1e6:5.0f} us/STORE  "
                  f"loop {statistics.median(loops):4.0f}", flush=True)
        for srv in servers:
            print(f"{srv.ab[0]:50s} {spread(srv.ab[4])}", flush=True)
    finally:
        stop_all(servers)


if __name__ == "__main__":
    main()
