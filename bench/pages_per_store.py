"""LMDB pages and table writes of one one-message keyword STORE (perf5).

    PYTHONPATH=$PWD .venv/bin/python bench/pages_per_store.py [NMSG] [M] [KEYWORD]
    PYTHONPATH=$PWD .venv/bin/python bench/pages_per_store.py [NMSG] [M] --append

Opens a store in a temporary directory (the tree on PYTHONPATH), appends
NMSG messages (3,000) to one INBOX, then runs M (500) one-message
``set_keywords_reporting(..., add=[KEYWORD])`` (\\Flagged), each its own
commit, as IMAP ``UID STORE n +FLAGS`` does.  Prints the table writes of one
commit, from its redo record (what the log replays: table, put/delete), and
the pages each commit made LMDB write: a read transaction held over the M
commits keeps LMDB from reusing any page freed meanwhile (as the redo log's
pin does between checkpoints), so the growth of the file's last page number
divided by M is the pages written per commit (B-tree pages copied on write,
LMDB's main and free DBs included).  Every table touched costs at least its
leaf, plus a branch per level above it.  --append: the M commits are
one-message APPENDs (``ops.append`` of bench_imap's corpus, prepared
beforehand) instead, as IMAP APPEND does (stop 27: what a per-email row
table adds to each).
"""
import collections, os, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs
from mailaccess.store import ops, redolog

nmsg = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
m = int(sys.argv[2]) if len(sys.argv) > 2 else 500
kw = sys.argv[3] if len(sys.argv) > 3 else "\\Flagged"
appending = kw == "--append"
assert m < nmsg
s, acc, inbox, eids = bs.loaded_store(os.path.join(tempfile.mkdtemp(prefix="pps-"), "store"), nmsg)
records = []
encode = redolog.encode_ops


def spy(o):
    records.append(list(o))
    return encode(o)


redolog.encode_ops = spy
pin = s.env.begin(write=False)
first = s.env.info()["last_pgno"]
if appending:
    from mailaccess import ingest
    news = [ingest.prepare(r + b"\r\n%d\r\n" % i) for i, r in enumerate(bs.corpus(m))]
    first = s.env.info()["last_pgno"]
    for new in news:
        s.write_sync(ops.append, acc, [inbox], new)
else:
    for eid in eids[:m]:
        s.write_sync(ops.set_keywords_reporting, acc, inbox, [eid], add=[kw], records=True)
grown = s.env.info()["last_pgno"] - first
pin.abort()
redolog.encode_ops = encode
one = records[-1]
print(f"one commit: {len(one)} table writes (+ meta redo.tail, written with the record)")
for (op, table), n in sorted(collections.Counter((op, t) for op, t, _, _ in one).items(),
                             key=lambda x: x[0][1]):
    print(f"  {table:10} {'put' if op == redolog.PUT else 'delete' if op == redolog.DELETE else op}"
          f" x{n}")
with s.env.begin() as t:
    for table in sorted({t_ for _, t_, _, _ in one} | {"meta"}):
        st = t.stat(s.db[table])
        print(f"  {table:10} depth {st['depth']}, {st['entries']} entries")
print(f"pages written per commit (file growth under a held snapshot): {grown / m:.1f}")
s.close()
