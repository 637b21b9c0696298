"""The background checkpoint (perf4) loses nothing at any point of it.

A checkpoint now runs in two halves.  Under LMDB's writer lock, riding on a
commit: the snapshot S before that commit is pinned, its meta pages read,
and the log switched to generation g + 1 (a NEXT record ends generation g,
the commit's own record is g + 1's first).  Then, on the checkpoint thread,
beside further commits: env.sync (S's pages durable), header g + 1 (S's
metas, where g + 1's records start) and its fdatasync, then the pin of the
previous snapshot is released.

The test holds the checkpoint thread at each stage in turn, makes
acknowledged writes meanwhile (by the writer thread and by the caller,
``write_here``), and builds power-loss images there with the power-loss
test's model (tests/test_store_powerloss.py: each file as of its last
flush, plus some or all of the pages written since): before the switch,
after the switch (before env.sync), after env.sync (before the header), with
a torn header g + 1, and after the header.  Every image must recover to
exactly the acknowledged writes and pass ``check_store``; the images before
the header must really recover from header g through the NEXT record.
"""
from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import threading

from mailaccess import ingest
from mailaccess.store import lmdb_store, ops, redolog

from test_store_powerloss import _images, _msg, _wait_idle, open_watched, verify_images


def _log_path(tmp_path, data: bytes) -> str:
    p = tmp_path / f"log-{random.random()}"
    p.write_bytes(data)
    return str(p)


def _recovery_path(log_bytes: bytes, tmp_path) -> tuple[int, list[int]]:
    """(the header generation recovery takes, the generations of the
    records it replays) for a log image."""
    fd = os.open(_log_path(tmp_path, log_bytes), os.O_RDONLY)
    try:
        h = redolog.read_header(fd)
        gens = [r.generation for r, _e in redolog.read_records(fd, h.generation, h.txnid,
                                                                 h.start)]
        return h.generation, gens
    finally:
        os.close(fd)


class Hold:
    """A checkpoint-thread hook (``LmdbStore.ckpt_hook``) that holds the
    thread at one stage (``arm``) until released (``go``), and notes every
    stage it passes with its thread's name (``seen``)."""

    def __init__(self, stage: str | None = None):
        self.seen: list[tuple[str, str]] = []
        self.reached = threading.Event()
        self.go = threading.Event()
        self.arm(stage)

    def arm(self, stage: str | None) -> None:
        self.stage = stage
        self.reached.clear()
        self.go.clear()

    def __call__(self, stage: str) -> None:
        self.seen.append((stage, threading.current_thread().name))
        if stage == self.stage:
            self.reached.set()
            assert self.go.wait(60)


def test_a_crash_at_any_point_of_a_background_checkpoint_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_POLL", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    rng = random.Random(20261204)
    path = str(tmp_path / "store")
    st, disk, acc, ib = open_watched(path)
    hold = st.ckpt_hook = Hold()
    model: dict[str, list[str]] = {}
    eids: dict[str, int] = {}
    n = [0]

    def write(here: bool) -> None:
        """One acknowledged write: an append, or a keyword change (by this
        thread, write_here, when HERE and the writer is idle)."""
        if rng.random() < 0.5 or len(eids) < 3:
            i = n[0]
            n[0] += 1
            ap = st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(i)))
            model[f"{i}@pl.test"], eids[f"{i}@pl.test"] = [], ap.email
            return
        picks = rng.sample(sorted(eids), min(len(eids), rng.choice([1, 2, 5])))
        kw = rng.choice(["$flagged", "$seen", "custom"])
        fn = functools.partial(ops.set_keywords, add=[kw])
        box = []
        if not (here and _wait_idle(st) and st.write_here(
                fn, (acc, [eids[m] for m in picks]), lambda r, e: box.append(e))):
            st.write_sync(fn, acc, [eids[m] for m in picks])
        assert box in ([], [None])
        for m in picks:
            model[m] = sorted(set(model[m]) | {kw})

    checks = []      # (image dir, model, expected header generation or None, crosses)

    def crash(name: str, header_gen: int | None, crosses: bool, torn: bool = False) -> None:
        out = tmp_path / name
        dirs = _images(disk, path, str(out), rng)
        for d in dirs:
            if torn:
                # header g + 1 torn by the power cut: its slot holds part of it
                lp = os.path.join(d, "redo.log")
                data = bytearray(open(lp, "rb").read())
                slot = ((header_gen + 1) % 2) * redolog.HEADER_SLOT
                data[slot + 40:slot + 300] = os.urandom(260)
                open(lp, "wb").write(bytes(data))
            checks.append((d, dict(model), header_gen, crosses))

    for rnd in range(3):
        for _ in range(rng.randint(2, 5)):
            write(here=True)
        st._ckpt.wait()            # (none in flight: the next one is this round's)
        gen = st._tail_state()[0]
        assert st.redo.header().generation == gen
        # before the switch: every write so far in generation g
        crash(f"r{rnd}-before", None, False)
        stages = ["switched", "synced", "header"]
        stage = stages[rnd % 3]
        hold.arm(stage)
        while st._tail_state()[0] == gen:      # until a commit switches the log
            write(here=True)
        assert hold.reached.wait(30)
        for _ in range(rng.randint(3, 6)):     # commits beside the checkpoint thread
            write(here=True)
        if stage in ("switched", "synced"):
            crash(f"r{rnd}-{stage}", gen, True)
            if stage == "synced":
                # the header written but torn: recovery takes header g
                hold.go.set()
                hold.arm("header")
                assert hold.reached.wait(30)
                crash(f"r{rnd}-torn", gen, True, torn=True)
        else:
            crash(f"r{rnd}-header", gen + 1, False)
        hold.go.set()
        st._ckpt.wait()
        hold.arm("never")
    st.close()

    # the images before header g + 1 really go through the NEXT record
    for d, _model, header_gen, crosses in checks:
        if header_gen is None:
            continue
        got_gen, gens = _recovery_path(open(os.path.join(d, "redo.log"), "rb").read(),
                                       tmp_path)
        assert got_gen == header_gen, d
        if crosses:
            assert gens and gens[-1] == header_gen + 1, (d, gens)
    verify_images([(d, [want]) for d, want, *_ in checks])


def _rec(gen: int, txnid: int, key: bytes) -> bytes:
    return redolog.encode_record(gen, txnid, redolog.encode_ops(
        [(redolog.PUT, "kw", key, b"v")]))


def _keys(fd: int, gen: int, after: int, start: int = redolog.RECORDS_AT) -> list:
    return [bytes(r.ops[0][2]) for r, _e in redolog.read_records(fd, gen, after, start)]


def test_recovery_follows_a_next_record_and_stops_where_the_chain_breaks(tmp_path):
    log = redolog.RedoLog(str(tmp_path))
    try:
        meta = bytes(redolog.META_BYTES)
        log.write_header(redolog.Header(4, 10, 4096, (meta, meta)))
        tail = log.append(redolog.RECORDS_AT, _rec(4, 11, b"a"))
        tail = log.append(tail, _rec(4, 12, b"b"))
        nxt_at = tail
        start = tail + redolog.next_size()
        end = log.append(tail, redolog.encode_next(4, 12, 5, start) + _rec(5, 13, b"c"))
        log.append(end, _rec(5, 14, b"d"))
        assert _keys(log.fd, 4, 10) == [b"a", b"b", b"c", b"d"]
        assert _keys(log.fd, 5, 12, start) == [b"c", b"d"]     # from header 5
        # a torn record of generation 4 ends everything after it
        os.pwrite(log.fd, b"\xff", redolog.RECORDS_AT + 30)
        assert _keys(log.fd, 4, 10) == []
        log.append(redolog.RECORDS_AT, _rec(4, 11, b"a"))
        # a NEXT naming another generation or offset, or torn: the chain ends
        for bad in (redolog.encode_next(4, 12, 6, start), redolog.encode_next(4, 12, 5, start + 8)):
            os.pwrite(log.fd, bad, nxt_at)
            assert _keys(log.fd, 4, 10) == [b"a", b"b"]
        os.pwrite(log.fd, redolog.encode_next(4, 12, 5, start)[:-1] + b"\0", nxt_at)
        assert _keys(log.fd, 4, 10) == [b"a", b"b"]
    finally:
        log.close()


def test_a_header_of_the_previous_format_is_read(tmp_path):
    """A store left unclean by the previous release (header MAREDO01, no
    start offset: its records start at RECORDS_AT) still recovers."""
    import struct
    import zlib

    m0, m1 = b"\1" * redolog.META_BYTES, b"\2" * redolog.META_BYTES
    body = struct.pack(">8sQQII", b"MAREDO01", 9, 77, 4096, redolog.META_BYTES) + m0 + m1
    h = redolog.decode_header(body + struct.pack(">I", zlib.crc32(body)))
    assert h == redolog.Header(9, 77, 4096, (m0, m1), redolog.RECORDS_AT)
    new = redolog.Header(9, 77, 4096, (m0, m1), 123456)
    assert redolog.decode_header(redolog.encode_header(new)) == new


def test_an_idle_switch_for_other_workers_records_loses_nothing(tmp_path, monkeypatch):
    """perf5: the checkpointing process, idle, switches the log for the
    records other workers wrote (``_idle_switch``: a transaction that
    writes only a NEXT record) and the checkpoint thread flushes; LMDB's
    writer lock is not held through those flushes.  Images at each stage of
    that checkpoint, with acknowledged writes beside it, recover exactly
    the acknowledged writes, through the bare NEXT record before header
    g + 1."""
    monkeypatch.setattr(lmdb_store, "REDO_IDLE", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_POLL", 3600.0)
    monkeypatch.setattr(lmdb_store, "REDO_INTERVAL", 3600.0)
    rng = random.Random(20261209)
    path = str(tmp_path / "store")
    st, disk, acc, ib = open_watched(path)
    hold = st.ckpt_hook = Hold()
    model: dict[str, list[str]] = {}
    checks = []
    n = 0
    try:
        for stage in ("switched", "synced", "header"):
            for _ in range(3):          # (the records another worker would write)
                st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(n)))
                model[f"{n}@pl.test"] = []
                n += 1
            assert _wait_idle(st)
            st._ckpt.wait()
            gen = st._tail_state()[0]
            hold.arm(stage)
            with st._busy:              # (as the writer thread's idle work)
                assert st._idle_switch()
            assert st._tail_state() == (gen + 1, st._gen_start)
            assert hold.reached.wait(30)
            for _ in range(2):          # acknowledged beside the checkpoint
                st.write_sync(ops.append, acc, [ib], ingest.prepare(_msg(n)))
                model[f"{n}@pl.test"] = []
                n += 1
            for d in _images(disk, path, str(tmp_path / f"idle-{stage}"), rng):
                checks.append((d, dict(model), gen if stage != "header" else gen + 1, gen + 1))
            hold.go.set()
            st._ckpt.wait()
            hold.arm("never")
            assert st.redo.header().generation == gen + 1
    finally:
        hold.go.set()
        st.close()
    for d, _model, header_gen, last_gen in checks:
        # before header g + 1: from header g through the NEXT record
        got_gen, gens = _recovery_path(open(os.path.join(d, "redo.log"), "rb").read(),
                                       tmp_path)
        assert got_gen == header_gen and gens and gens[-1] == last_gen, (d, got_gen, gens)
    verify_images([(d, [want]) for d, want, *_g in checks])
