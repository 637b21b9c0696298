"""ActiveSync initial Sync in process (eas_sync.run over a temp store, no
HTTP): prime a key, then page through an Inbox of N messages at WindowSize
W with a plain-text BodyPreference, checking that every message arrives
exactly once.  Prints per run: requests, items, wall seconds (the handler
and the WBXML encoding of its answers), process CPU seconds, and the
answers' size.  The end-to-end figure over HTTP is bench_eas.py's.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_eas_sync_inproc.py [N] [W] [--runs 3]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from common import message  # noqa: E402

from mailaccess import accounts, ids, ingest  # noqa: E402
from mailaccess.bus import Bus  # noqa: E402
from mailaccess.proto.eas import request as R  # noqa: E402
from mailaccess.proto.eas.wbxml import E, decode, encode  # noqa: E402
from mailaccess.server import eas, eas_sync  # noqa: E402
from mailaccess.store import Store, ops  # noqa: E402


def body(mbx: int, key, window: int):
    return decode(encode(E("AirSync:Sync", E("AirSync:Collections", E(
        "AirSync:Collection", E("AirSync:SyncKey", text=str(key)),
        E("AirSync:CollectionId", text=ids.mailbox_id(mbx)),
        E("AirSync:WindowSize", text=str(window)),
        E("AirSync:Options", E("AirSyncBase:BodyPreference", E("AirSyncBase:Type", text="1"),
                               E("AirSyncBase:TruncationSize", text="2048"))))))))


async def one_run(store, acc: int, mbx: int, device: str, n: int, window: int) -> str:
    ctx = eas.EasContext(store, Bus(), None, acc, "alice",
                         R.EasRequest("Sync", "alice", device, "bench", "16.1", None))
    out = await eas_sync.run(ctx, body(mbx, 0, window))
    key = out.find("AirSync:Collections").find("AirSync:Collection").child_text("AirSync:SyncKey")
    seen: set[str] = set()
    reqs = size = 0
    c0, t0 = time.process_time(), time.perf_counter()
    while True:
        out = await eas_sync.run(ctx, body(mbx, key, window))
        size += len(encode(out))
        reqs += 1
        c = out.find("AirSync:Collections").find("AirSync:Collection")
        key = c.child_text("AirSync:SyncKey")
        cmds = c.find("AirSync:Commands")
        for a in cmds.children if cmds is not None else []:
            sid = a.child_text("AirSync:ServerId")
            assert a.tag == "Add" and sid not in seen, sid
            seen.add(sid)
        if c.find("AirSync:MoreAvailable") is None:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(seen) == n, (len(seen), n)
    return (f"N={n} WindowSize={window}: {reqs} requests, {len(seen)} items, "
            f"{wall:.3f} s wall, {cpu:.3f} s CPU, {size / 1e6:.2f} MB")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 500
    window = int(args[1]) if len(args) > 1 else 512
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 3
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "data")
        store.start()
        try:
            accounts.add_user(store, "alice", "pw")
            acc = accounts.lookup(store, "alice").id
            with store.view() as v:
                mbx = v.mailbox_by_role(acc, "inbox").id
            now = int(time.time())
            items = [(ingest.prepare(message(i, 3000), received_at=now - i * 60), [])
                     for i in range(n)]
            for k in range(0, n, 500):
                store.write_sync(ops.append_many, acc, mbx, items[k:k + 500])
            for r in range(runs):
                print(trio.run(one_run, store, acc, mbx, f"bench{r}", n, window))
        finally:
            store.close()


if __name__ == "__main__":
    main()
