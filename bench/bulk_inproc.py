"""The writer's CPU of a streamed bulk STORE, in process (stop 27, bulkstore).

    PYTHONPATH=TREE .venv/bin/python bench/bulk_inproc.py [ROUNDS]     (cwd: not a tree)
    COPY=1 ...: the STORE on a copy of INBOX (every email in two mailboxes,
    bench_imap_more's STORE 1:* +FLAGS \\Deleted), the keyword $deleted

A store of 10,000 messages (bench_stress.loaded_store), then ROUNDS
``set_keywords_reporting`` on all of them, streamed in STORE_SLICES with an
EMIT that keeps the parts, alternating add/remove.  Prints the medians
(first two rounds left out) of the writer thread's CPU inside the
transaction, of ``logical.rewrite_keywords`` (apply_keywords) within it,
and of the process (the commit, the flush, the checkpoint thread).
Alternate trees run after run (the machine's load moves between runs).
"""
import os, sys, time, tempfile, statistics, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs
from mailaccess.store import ops, logical
import mailaccess
print(mailaccess.__file__)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
top = tempfile.mkdtemp(prefix="bski-")
s, acc, inbox, eids = bs.loaded_store(os.path.join(top, "store"), 10000)
time.sleep(0.3)
if os.environ.get("COPY"):
    dst = s.write_sync(ops.create_mailbox, acc, 0, "Copy")
    dst = getattr(dst, "id", dst)
    for a in range(0, len(eids), 1000):
        s.write_sync(ops.copy, acc, eids[a:a + 1000], dst)
    inbox = dst
    KW = "$deleted"
else:
    KW = "$seen"
SL = (100, 400, 1500, 4000)
tin, tproc, tap = [], [], []
orig = logical.rewrite_keywords
acc_t = [0.0]
def wrapped(*a, **k):
    t0 = time.thread_time(); r = orig(*a, **k); acc_t[0] += time.thread_time() - t0; return r
logical.rewrite_keywords = wrapped
ops.logical.rewrite_keywords = wrapped
def fn(tx, *a, **k):
    t0 = time.thread_time()
    r = ops.set_keywords_reporting(tx, *a, **k)
    tin.append(time.thread_time() - t0)
    return r
parts = []
def emit(*p): parts.append(p)
for r in range(rounds):
    kw = {"add": [KW]} if r % 2 == 0 else {"remove": [KW]}
    acc_t[0] = 0
    p0 = time.process_time()
    s.write_sync(fn, acc, inbox, eids, records=False, emit=emit, slices=SL, **kw)
    tproc.append(time.process_time() - p0)
    tap.append(acc_t[0])
    parts.clear()
    time.sleep(0.02)
m = lambda x: f"{1000*statistics.median(x[2:]):.2f}"
print(f"in tx {m(tin)} ms, rewrite_keywords {m(tap)} ms, process {m(tproc)} ms  load {open('/proc/loadavg').read().split()[0]}")
s.close(); shutil.rmtree(top)
