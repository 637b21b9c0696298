"""The first SEARCH FROM of a fresh server, with and without a SORT before it.

    .venv/bin/python bench/first_search.py TREE [NMSG] [--search-first]

Starts mailaccess from TREE (as ab_store1 does), loads NMSG (default 10,000)
of bench_imap's corpus into INBOX, then on a new connection runs `UID SORT
(FROM)` (unless --search-first), `UID SEARCH FROM sender42@` twice and `UID
SEARCH SUBJECT invoice`, printing each command's time at the client, the
CPU time the server's threads ran meanwhile (schedstat: less sensitive to
other load than the wall time) and the minor page faults its processes
took.  It shows where the
first touch of the message indexes' pages is paid (stop 26: SORT reads the
small msg.facts records now, so the first SEARCH FROM pays it).
"""
import os
import sys
import tempfile
import time
import imaplib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_store1 as ab  # noqa: E402
import bench_imap  # noqa: E402
import bench_stress as bs  # noqa: E402


def minflt(pids) -> int:
    t = 0
    for p in pids:
        try:
            t += int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[7])
        except OSError:
            pass
    return t


def cpu_ns(pids) -> int:
    """CPU nanoseconds the threads of PIDS have run (schedstat)."""
    t = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                t += int(open(f"/proc/{p}/task/{task}/schedstat").read().split()[0])
            except OSError:
                pass
    return t


def server_pids(data_dir: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd = open(f"/proc/{p}/cmdline").read().replace("\0", " ")
            except OSError:
                continue
            if "mailaccess" in cmd and data_dir in cmd:
                out.append(int(p))
    return out


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        raise SystemExit(__doc__)
    tree, n = args[0], int(args[1]) if len(args) > 1 else 10000
    os.chdir(tempfile.gettempdir())
    msgs, _ = bench_imap.corpus(n)
    servers: list = []
    try:
        srv, im = ab.loaded(tree, msgs, servers)
        im.logout()
        pids = server_pids(srv.ab_dir)
        c = imaplib.IMAP4("127.0.0.1", srv.port)
        c.login(bs.USER, bs.PASSWORD)
        c.select("INBOX")
        cmds = [] if "--search-first" in sys.argv else [("UID", "SORT", "(FROM)", "UTF-8", "ALL")]
        cmds += [("UID", "SEARCH", "FROM", "sender42@"), ("UID", "SEARCH", "FROM", "sender42@"),
                 ("UID", "SEARCH", "SUBJECT", "invoice")]
        for cmd in cmds:
            f0, c0 = minflt(pids), cpu_ns(pids)
            t = time.perf_counter()
            typ, d = c._simple_command(*cmd)
            c._untagged_response(typ, d, cmd[1])
            print(f"{' '.join(cmd[1:3]):14} {(time.perf_counter() - t) * 1000:6.1f} ms"
                  f"  server CPU {(cpu_ns(pids) - c0) / 1e6:6.1f} ms"
                  f"  minor faults {minflt(pids) - f0}")
        c.logout()
    finally:
        ab.stop_all(servers)


if __name__ == "__main__":
    main()
