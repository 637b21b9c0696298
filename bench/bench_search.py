"""SEARCH TEXT over a mailbox of N realistic messages (5-20 KB), both twins
of the ``search`` hot path.  One word sits in ~1% of the messages, the other
in none.  Run: .venv/bin/python bench/bench_search.py [--messages N] [--keep DIR]"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import message, report  # noqa: E402

from mailaccess import _speedups, ingest  # noqa: E402
from mailaccess.query import engine, model, sort, thread  # noqa: E402
from mailaccess.store import Store, ops  # noqa: E402

RARE = "zanzibar"
ABSENT = "quixotically"


def _raw(i: int, rng: random.Random) -> bytes:
    raw = message(i, rng.randint(5_000, 20_000), rng)
    if i % 100 == 7:  # ~1%: the rare word somewhere in the body
        head, _, body = raw.partition(b"\r\n\r\n")
        cut = rng.randint(0, len(body) // 2)
        body = body[:cut] + b" Zanzibar " + body[cut:]
        raw = head + b"\r\n\r\n" + body
    return raw


def build(path: str, n: int) -> tuple[Store, int, int]:
    """A store at PATH with account "alice" and N messages in INBOX (reused
    when PATH already holds one of that size)."""
    store = Store(path)
    store.start()
    with store.view() as v:
        a = v.account_by_name("alice")
        if a is not None:
            mbx = v.mailbox_by_role(a.id, "inbox")
            if mbx.total == n:
                return store, a.id, mbx.id
    acc = store.write_sync(ops.create_account, "alice", "x")
    with store.view() as v:
        mbx = v.mailbox_by_role(acc, "inbox").id
    rng = random.Random(1)
    done = threading.Semaphore(0)
    errors = []

    def cb(_res, err):
        if err is not None:
            errors.append(err)
        done.release()

    t0 = time.perf_counter()
    for i in range(n):
        new = ingest.prepare(_raw(i, rng), 1_760_000_000 + i * 60)
        store.submit(ops.append, acc, [mbx], new, [], done=cb)
    for _ in range(n):
        done.acquire()
    if errors:
        raise errors[0]
    print(f"built {n} messages in {time.perf_counter() - t0:.1f} s")
    return store, acc, mbx


def timeit(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", help="store directory to build once and reuse")
    args = ap.parse_args()
    path = args.keep or tempfile.mkdtemp(prefix="bench-search-")
    store, acc, mbx = build(path, args.messages)
    twins = [("py", _speedups.load_py("search"))]
    c = _speedups.load_c("search")
    if c is not None:
        twins.append(("c", c))
    rows = []
    try:
        with store.view() as v:
            cands = v.uids(acc, mbx)
            total = sum(v.email(acc, e).size for _, e in cands)
            rows.append(("messages", f"{len(cands)} ({total / 1e6:.0f} MB)"))
            results = {}
            for word in (RARE, ABSENT):
                q = model.Text(word)
                for name, mod in twins:
                    hits = engine.search(v, acc, cands, q, mailbox=mbx, impl=mod)
                    results.setdefault(word, set()).add(tuple(hits))
                    ms = timeit(lambda: engine.search(v, acc, cands, q, mailbox=mbx, impl=mod),
                                args.repeat)
                    rows.append((f"TEXT {word!r} [{name}]", f"{ms:8.1f} ms  ({len(hits)} hits)"))
                    results.setdefault((word, "ms"), {})[name] = ms
                if len(twins) == 2:
                    r = results[(word, "ms")]
                    rows.append((f"TEXT {word!r} py/c", f"{r['py'] / r['c']:.2f}x"))
                assert len(results[word]) == 1, "twins disagree"
            # combined with cheap conditions: only unseen messages get scanned
            q = model.And([model.Not(model.Keyword("$seen")), model.Larger(15_000),
                           model.Text(RARE)])
            ms = timeit(lambda: engine.search(v, acc, cands, q, mailbox=mbx), args.repeat)
            rows.append(("UNSEEN LARGER 15000 TEXT [loaded]", f"{ms:8.1f} ms"))
            ms = timeit(lambda: engine.search(v, acc, cands, model.From("sender7@"),
                                              mailbox=mbx), args.repeat)
            rows.append(("FROM 'sender7@' [loaded]", f"{ms:8.1f} ms"))
            for keys in (["arrival"], ["date"], ["subject"], ["from"]):
                sk = [sort.SortKey(k) for k in keys]
                ms = timeit(lambda: sort.sort(v, acc, cands, sk), 1)
                rows.append((f"SORT ({' '.join(keys).upper()})", f"{ms:8.1f} ms"))
            ms = timeit(lambda: thread.thread_references(v, acc, cands), 1)
            rows.append(("THREAD REFERENCES", f"{ms:8.1f} ms"))
            # the scan alone, texts already in memory
            texts = []
            for _, e in cands:
                rec = v.email(acc, e)
                texts.append(engine._field_bytes(v.blob_index(acc, rec.blob), engine.F_TEXT))
            for word in (RARE, ABSENT):
                needle = word.encode()
                for name, mod in twins:
                    ms = timeit(lambda: mod.find_all(texts, needle), args.repeat)
                    rows.append((f"scan only {word!r} [{name}]", f"{ms:8.1f} ms"))
    finally:
        store.close()
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    report("SEARCH TEXT", rows)


if __name__ == "__main__":
    main()
