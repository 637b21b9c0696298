"""FETCH of the simple items (and the stress run's header fields) over a
mailbox of N realistic messages, in process:
``build_fetch`` with each twin of the ``fetchfmt`` hot path, and with the
Python loop it falls back to.  No sockets, no client parsing: this is the
server's own cost of ``UID FETCH 1:* (...)``.
Run: .venv/bin/python bench/bench_fetchfmt.py [--messages N] [--repeat R] [--keep DIR]"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_search import build  # noqa: E402
from common import report  # noqa: E402

from mailaccess import _speedups  # noqa: E402
from mailaccess.proto.imap import events as ev  # noqa: E402
from mailaccess.server import imap_session  # noqa: E402
from mailaccess.views.imap_selected import SelectedMailbox, Snapshot  # noqa: E402

# bench/bench_stress.py's FETCH: flags and five header fields
STRESS_HEADERS = ev.FetchBody(ev.Section((), "HEADER.FIELDS", (
    "FROM", "TO", "SUBJECT", "DATE", "MESSAGE-ID")), peek=True)
REQUESTS = [
    ("UID FLAGS", ["UID", "FLAGS"]),
    ("UID FLAGS BODY.PEEK[HEADER.FIELDS (5 fields)]", ["UID", "FLAGS", STRESS_HEADERS]),
    ("FLAGS ENVELOPE BODYSTRUCTURE", ["UID", "FLAGS", "ENVELOPE", "BODYSTRUCTURE"]),
    ("UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ",
     ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"]),
]


CLOCK = time.perf_counter


def best_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--keep", help="store directory to build once and reuse")
    ap.add_argument("--cpu", action="store_true",
                    help="time the process's CPU time, not wall time (a busy machine)")
    args = ap.parse_args()
    if args.cpu:
        global CLOCK
        CLOCK = time.process_time
    path = args.keep or tempfile.mkdtemp(prefix="bench-fetchfmt-")
    store, acc, mbx = build(path, args.messages)
    twins = [("py", _speedups.load_py("fetchfmt"))]
    c = _speedups.load_c("fetchfmt")
    if c is not None:
        twins.append(("c", c))
    saved = imap_session._fetchfmt
    rows = []
    try:
        with store.view() as v:
            m = v.mailbox(acc, mbx)
            pairs = v.uids(acc, mbx)
            sel = SelectedMailbox(acc, mbx, m.uidvalidity, True,
                                  Snapshot.from_pairs(pairs, m.highest_ms), m.uidnext)
            uids = list(sel.uids)
            rows.append(("messages", str(len(uids))))
            for label, names in REQUESTS:
                items = tuple(ev.FetchItem(n) if isinstance(n, str) else n for n in names)
                answers = set()
                for name, mod in twins:
                    imap_session._fetchfmt = mod
                    run = lambda: imap_session.build_fetch(v, acc, sel, uids, items, True)  # noqa
                    answers.add(tuple(run()))
                    rows.append((f"{label} [{name}]", f"{best_ms(run, args.repeat):8.1f} ms"))
                run = lambda: imap_session.build_fetch(v, acc, sel, uids, items, True,  # noqa
                                                       simple=False)
                answers.add(tuple(run()))
                rows.append((f"{label} [loop]", f"{best_ms(run, max(1, args.repeat // 4)):8.1f} ms"))
                assert len(answers) == 1, "twins and loop disagree"
    finally:
        imap_session._fetchfmt = saved
        store.close()
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    report(f"build_fetch over {args.messages} messages (best of {args.repeat}"
           f"{', CPU time' if args.cpu else ''})", rows)


if __name__ == "__main__":
    main()
