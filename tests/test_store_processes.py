"""The store opened by several processes at once (server/workers.py): a
process whose map another process outgrew adopts the new size for its reads
and its writes, instead of failing (LMDB's MDB_MAP_RESIZED)."""
from __future__ import annotations

import subprocess
import sys

from mailaccess.store.lmdb_store import LmdbStore

GROW = r"""
import sys
from mailaccess.store.lmdb_store import LmdbStore
s = LmdbStore(sys.argv[1], map_size=1 << 20)
s.start()
for i in range(40):
    s.write_sync(lambda tx, i: [tx.put("meta", b"grow-%d-%d" % (i, j), b"x" * 2000)
                                for j in range(50)], i)
print(s.env.info()["map_size"])
s.close()
"""


def test_a_map_grown_by_another_process_is_adopted(tmp_path):
    """Writes first (the writer thread meets the larger map), then reads."""
    path = str(tmp_path / "store")
    store = LmdbStore(path, map_size=1 << 20)
    store.start()
    try:
        store.write_sync(lambda tx: tx.put("meta", b"mine", b"1"))
        r = subprocess.run([sys.executable, "-c", GROW, path], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout) > 1 << 20           # the other process grew the map
        store.write_sync(lambda tx: tx.put("meta", b"after", b"2"))   # a write first
        with store.read() as txn:                # a read past our old map
            assert bytes(txn.get(b"grow-39-49", db=store.db["meta"])) == b"x" * 2000
            assert bytes(txn.get(b"after", db=store.db["meta"])) == b"2"
        assert store.env.info()["map_size"] >= int(r.stdout)
    finally:
        store.close()
