"""Interleaved A/B of the store's small write, in process, no server
(perf8-write; from /work/wt/notes/inproc.py).

    python bench/ab_write_inproc.py ROUNDS WRITES TREE_A TREE_B [NMSG]

Each round runs, for each tree in turn (which goes first alternates), one
subprocess with that tree first on sys.path (cwd: a temp directory, so no
other tree leaks in): a store on disk (under $AB_DIR or /tmp) holding NMSG
(default 10,000) messages of bench_stress's corpus, then WRITES
``write_here(set_keywords_one(add=[$flagged]))`` (before stop 27:
``set_keywords_reporting(add=[$flagged], records=True)`` on a list of one)
on distinct messages, 300 us apart, as a lone IMAP client's
``UID STORE n +FLAGS (\\Flagged)`` makes them: once with the real
fdatasync ("sync"), once with fdatasync replaced by a no-op ("nosync":
the CPU of everything else).  Prints per tree and mode the median over the
rounds of: CPU of the writing thread per write (time.thread_time), CPU of
the whole process per write (the checkpoint thread too), wall per write
(minus the 300 us pause), and how many writes fell back to write_sync
(writer busy); then the per-round ratios B/A (median, geometric mean, and
in how many rounds B was lower).  Both trees see the same machine load
within a round: on a shared machine the ratios are the figure to read.

Child mode (internal): ``--child WRITES NMSG`` prints one JSON line.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(writes: int, nmsg: int) -> None:
    sys.path.insert(0, HERE)
    import bench_stress as bs
    from mailaccess.store import ops
    import functools
    import mailaccess

    tree = os.environ["PYTHONPATH"]
    assert mailaccess.__file__.startswith(tree + "/"), (mailaccess.__file__, tree)

    top = tempfile.mkdtemp(prefix="abwi-", dir=os.environ.get("AB_DIR"))
    s, acc, inbox, eids = bs.loaded_store(os.path.join(top, "store"), nmsg)
    time.sleep(0.5)
    # the write _store_one makes in this tree: set_keywords_one (stop 27) or,
    # before it, set_keywords_reporting on a list of one
    one = getattr(ops, "set_keywords_one", None)
    if one is not None:
        fn = functools.partial(one, add=["$flagged"])
    else:
        fn = functools.partial(ops.set_keywords_reporting, add=["$flagged"], records=True)
    box = []

    def done(r, e):
        box.append(e)

    def run(n, off):
        fallback = 0
        t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        for i in range(n):
            eid = eids[(off + i) % nmsg]
            arg = eid if one is not None else [eid]
            if not s.write_here(fn, (acc, inbox, arg), done):
                fallback += 1
                s.write_sync(fn, acc, inbox, arg)
            time.sleep(0.0003)
        t1, c1, p1 = time.perf_counter(), time.thread_time(), time.process_time()
        return {"wall": (t1 - t0) / n * 1e6 - 300, "cpu": (c1 - c0) / n * 1e6,
                "proc": (p1 - p0) / n * 1e6, "fallback": fallback}

    out = {}
    run(200, 0)                       # warm up
    out["sync"] = run(writes, 200)
    real = os.fdatasync
    os.fdatasync = lambda fd: None
    out["nosync"] = run(writes, 200 + writes)
    os.fdatasync = real
    assert all(e is None for e in box), [e for e in box if e is not None][:3]
    s.close()
    shutil.rmtree(top)
    print(json.dumps(out))


def main() -> None:
    rounds, writes = int(sys.argv[1]), int(sys.argv[2])
    trees = [os.path.abspath(t) for t in sys.argv[3:5]]
    nmsg = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    res = {t: [] for t in trees}
    for r in range(rounds):
        order = trees if r % 2 == 0 else trees[::-1]
        for t in order:
            env = dict(os.environ, PYTHONPATH=t)
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", str(writes), str(nmsg)],
                env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{t}: {out.stderr[-3000:]}")
            line = json.loads(out.stdout.strip().splitlines()[-1])
            res[t].append(line)
            print(f"round {r} {os.path.basename(t):>14}: " + "  ".join(
                f"{m} cpu {line[m]['cpu']:.0f} proc {line[m]['proc']:.0f} "
                f"wall {line[m]['wall']:.0f} us" for m in ("nosync", "sync")), flush=True)
    print(f"\nmedians over {rounds} rounds of {writes} writes (us per write):")
    for mode in ("nosync", "sync"):
        for t in trees:
            rs = [x[mode] for x in res[t]]
            med = {k: statistics.median(x[k] for x in rs) for k in ("cpu", "proc", "wall")}
            fb = sum(x["fallback"] for x in rs)
            print(f"  {mode:6} {t:>28}: thread cpu {med['cpu']:6.1f}  process cpu "
                  f"{med['proc']:6.1f}  wall {med['wall']:6.1f}  (write_sync fallbacks {fb})")
        # both trees of a round saw the same load: the per-round ratio B/A
        for k in ("cpu", "proc", "wall"):
            r = [b[mode][k] / a[mode][k] for a, b in zip(res[trees[0]], res[trees[1]])]
            geo = statistics.geometric_mean(r)
            print(f"  {mode:6} B/A {k:4}: median {statistics.median(r):.3f}  geomean {geo:.3f}"
                  f"  (B lower in {sum(x < 1 for x in r)}/{len(r)} rounds)")


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
