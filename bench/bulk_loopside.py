"""The loop's CPU for a streamed bulk STORE's answer, in process (stop 27, bulkstore).

    PYTHONPATH=TREE .venv/bin/python bench/bulk_loopside.py [ROUNDS]    (cwd: not a tree)

A store of 10,000 messages, then ROUNDS streamed ``set_keywords_reporting``
(add/remove $seen, STORE_SLICES) whose parts are kept; after each, the
thread's CPU of ``imap_session._slice_answer`` over every part (UID FLAGS,
as a session without CONDSTORE gets them) and of dropping the parts'
records, as the loop does: the median.
"""
import os, sys, time, tempfile, statistics, functools, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs
from mailaccess.store import ops
from mailaccess.server import imap_session as IS
from mailaccess.server.imap_fmt import flags_list
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
top = tempfile.mkdtemp(prefix="bskl-")
s, acc, inbox, eids = bs.loaded_store(os.path.join(top, "store"), 10000)
SL = (100, 400, 1500, 4000)
with s.view() as v:
    m = v.mailbox(acc, inbox)
    pairs = sorted(v.uids(acc, inbox))
uids = [u for u, _ in pairs]
parts = []
def emit(*p): parts.append(p)
tl, tw = [], []
names = ["UID", "FLAGS"]
for r in range(rounds):
    kw = {"add": ["$seen"]} if r % 2 == 0 else {"remove": ["$seen"]}
    parts.clear()
    s.write_sync(ops.set_keywords_reporting, acc, inbox, eids, records=False, emit=emit, slices=SL, **kw)
    sel = SelectedMailbox(acc, inbox, m.uidvalidity, False, Snapshot.from_pairs(pairs, m.highest_ms), m.uidnext)
    flags = functools.partial(flags_list, spell=IS._Spellings(None, acc, s))
    spans = ops.slice_spans(len(uids), SL)
    t0 = time.thread_time()
    out = 0
    for k, (before, recs) in enumerate(parts):
        lo, hi = spans[k]
        late = []
        b = IS._slice_answer(sel, uids[lo:hi], names, flags, None, recs.get, late)
        out += len(b)
    parts.clear()   # the records die here, as on the loop
    del recs
    tl.append(time.thread_time() - t0)
    assert out > 300000, out
print(f"loop slices {1000*statistics.median(tl[2:]):.2f} ms  load {open('/proc/loadavg').read().split()[0]}")
s.close(); shutil.rmtree(top)
