"""Interleaved A/B/C... of the server CPU (and wall time) every IMAP command pays, from one
imaplib client on a selected INBOX of bench_imap's realistic corpus (perf8-cmd).

    .venv/bin/python bench/ab_cmd.py NMSG ROUNDS BLOCK SPEC [SPEC...]

SPEC as in bench/ab_store1.py (a tree, `tree:VAR=1,...`, or `dovecot`; the servers are
started by its ``start``, from the temp directory).  Each server gets NMSG messages of
bench_imap's corpus, all of them \\Seen; then ROUNDS rounds, the servers' order reversed
every other round, each server running BLOCK commands of each workload in turn:

- ``noop``:     NOOP
- ``store0``:   UID STORE n +FLAGS (\\Seen): changes nothing (the flag is set already)
- ``fetch``:    UID FETCH n (FLAGS)
- ``store1``:   UID STORE n +FLAGS (\\Flagged) / -FLAGS: changes one message (alternating
  + and - on each pass over the mailbox, as ab_store1 does)

Prints per server and workload the median round (µs per command, wall) and the server's CPU
per command (its process tree, from /proc: the figure to trust on a shared machine).
AB_WORKERS sets mailaccess's worker count (default 1).
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_store1  # noqa: E402
import bench_imap  # noqa: E402


def _workloads(nmsg: int):
    def noop(im, n):
        im.noop()

    def store0(im, n):
        im.uid("STORE", str(n % nmsg + 1), "+FLAGS", r"(\Seen)")

    def fetch(im, n):
        im.uid("FETCH", str(n % nmsg + 1), "(FLAGS)")

    def store1(im, n):
        im.uid("STORE", str(n % nmsg + 1), "+-"[(n // nmsg) % 2] + "FLAGS", r"(\Flagged)")

    return [("noop", noop), ("store0", store0), ("fetch", fetch), ("store1", store1)]


def main() -> None:
    nmsg, rounds, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    specs = sys.argv[4:]
    os.chdir(tempfile.gettempdir())
    msgs, _ = bench_imap.corpus(nmsg)
    work = _workloads(nmsg)
    servers = []
    try:
        for spec in specs:
            srv, im = ab_store1.loaded(spec, msgs, servers)
            im.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Seen)")
            srv.ab = (spec, im, {name: ([], [0.0, 0]) for name, _ in work})
        k = 0
        for r in range(rounds):
            for srv in (servers if r % 2 == 0 else servers[::-1]):
                spec, im, acc = srv.ab
                pids = srv.pids() if hasattr(srv, "pids") else []
                for name, fn in work:
                    walls, cpu = acc[name]
                    c0, t0 = ab_store1.cpu(pids), time.perf_counter()
                    for i in range(block):
                        fn(im, k + i)
                    t1, c1 = time.perf_counter(), ab_store1.cpu(pids)
                    walls.append((t1 - t0) / block * 1e6)
                    cpu[0] += c1 - c0
                    cpu[1] += block
            k += block
        for name, _ in work:
            for srv in servers:
                spec, im, acc = srv.ab
                walls, (c, n) = acc[name]
                print(f"{name:7s} {spec:40s} wall median {statistics.median(walls):6.0f} us  "
                      f"best {min(walls):6.0f}  server cpu {c / n * 1e6:5.0f} us/cmd", flush=True)
    finally:
        ab_store1.stop_all(servers)


if __name__ == "__main__":
    main()
