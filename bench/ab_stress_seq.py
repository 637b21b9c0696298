"""Interleaved A/B of the server CPU per command of bench_stress's 10-client mix
(stay logged in), the commands sent one at a time over the 10 connections (a
lock around each command), so the server does the same work whatever the
machine's load: on a shared machine the concurrent run's CPU per command
swings by 20% from run to run, this by a few percent.  No group commit
happens here (each write is alone), so the figure is above the concurrent
run's; it is for comparing trees.

    cd /tmp && .venv/bin/python bench/ab_stress_seq.py ROUNDS OPS TREE [TREE...]

Each TREE gets its own `mailaccess serve` (bench_stress.Mailaccess, its
default workers, PYTHONPATH=TREE) and INBOX of 1,000 messages; then ROUNDS
rounds, the trees' order reversed every other round, each running OPS
commands.  Prints the server CPU (its process tree, /proc) per command.
"""
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs  # noqa: E402

rounds, block = int(sys.argv[1]), int(sys.argv[2])
trees = sys.argv[3:]
root = tempfile.mkdtemp(prefix="ab-stress-seq-")
msgs = bs.corpus(400)
loop = asyncio.new_event_loop()
servers = []
for i, t in enumerate(trees):
    os.environ["PYTHONPATH"] = t
    ma = bs.Mailaccess(os.path.join(root, f"s{i}"), 60)
    ma.start(bs.CHEAP)
    loop.run_until_complete(bs.load(ma.port, msgs, 1000))
    servers.append(ma)

lock = asyncio.Lock()
real_command = bs.Conn.command
async def locked(self, text, literal=None):
    async with lock:
        return await real_command(self, text, literal)
bs.Conn.command = locked

async def setup(ma):
    stats = bs.Stats(); shared = {}
    cs = [bs.Client(i, ma.port, False, msgs, stats, shared) for i in range(10)]
    for c in cs:
        await c.login()
    return stats, cs

async def run_block(stats, cs, n):
    start = stats.ops
    async def one(c):
        while stats.ops - start < n:
            await c.select()
            for _ in range(c.rng.randint(2, 6)):
                await c.one()
    await asyncio.gather(*(one(c) for c in cs))
    return stats.ops - start

state = [loop.run_until_complete(setup(ma)) for ma in servers]
res = {t: [] for t in trees}
for r in range(rounds):
    order = list(range(len(trees))) if r % 2 == 0 else list(reversed(range(len(trees))))
    for i in order:
        ma = servers[i]; stats, cs = state[i]
        pids = ma.pids()
        c0 = bs.tree_cpu(pids); t0 = time.monotonic()
        n = loop.run_until_complete(run_block(stats, cs, block))
        c1 = bs.tree_cpu(pids)
        res[trees[i]].append((c1 - c0) / n * 1e6)
        if stats.errors:
            print("ERRORS", trees[i], stats.errors[:3]); stats.errors.clear()
    print(f"round {r}: " + "  ".join(f"{os.path.basename(t.rstrip('/'))} {res[t][-1]:.0f}" for t in trees), flush=True)
for t in trees:
    xs = res[t]
    print(f"{t}: median {statistics.median(xs):.0f} us/op  mean {statistics.mean(xs):.0f}  min {min(xs):.0f}  ({len(xs)} blocks of {block} ops)")
for ma in servers:
    ma.stop()
shutil.rmtree(root, ignore_errors=True)
