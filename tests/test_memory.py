"""The memory rules of `mailaccess serve` (server/memory.py, server/workers.py):
a loader forks the workers with the collector held and every object frozen,
then exits; each worker collects again; the supervisor imports none of the
server; glibc's allocator gets a fixed mmap threshold and an arena limit
unless the environment chose them, and a running server trims it."""
from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import trio
import trio.testing

from mailaccess.config import load
from mailaccess.server import memory, workers

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")


def _config(tmp_path, n: int = 2):
    path = tmp_path / "mailaccess.toml"
    path.write_text(f"""
data_dir = "{tmp_path / 'data'}"
demo_account = false
[imap]
listen = "127.0.0.1:0"
listen_tls = "127.0.0.1:0"
[lmtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[auth]
argon2_memory_kib = 64
argon2_time_cost = 1
[server]
workers = {n}
restart_delay = 0.1
stop_timeout = 10
""")
    return load(str(path))


def test_workers_are_forked_frozen_by_a_loader_that_exits(tmp_path, monkeypatch):
    """The supervisor forks one process, the loader, its own objects frozen
    (its collections never walk the pages it shares with the loader).  At
    each fork of a worker the loader's collector is off and its objects are
    frozen (a worker's collections never walk, so never copy, the pages it
    shares with the others); the loader then exits and the workers are the
    supervisor's children (a subreaper), collecting again.  After the
    supervisor returns, the caller's collector is as it was."""
    cfg = _config(tmp_path)
    me = os.getpid()
    real_fork = os.fork
    r, w = os.pipe()

    def fork():
        os.write(w, json.dumps(["fork", os.getpid(), gc.isenabled(),
                                gc.get_freeze_count()]).encode() + b"\n")
        return real_fork()

    def serve_in_worker(fn):
        # in the forked worker, instead of the server: report, and return
        os.write(w, json.dumps(["worker", os.getppid(), gc.isenabled(),
                                gc.get_freeze_count()]).encode() + b"\n")

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(trio, "run", serve_in_worker)
    assert gc.isenabled()
    try:
        workers.Supervisor(cfg).run()          # the workers "exit while starting": it stops
    finally:
        os.close(w)
    with os.fdopen(r, "rb") as fh:
        events = [json.loads(line) for line in fh.read().splitlines()]
    forks = [e[1:] for e in events if e[0] == "fork"]
    in_workers = [e[1:] for e in events if e[0] == "worker"]
    by_supervisor = [f for f in forks if f[0] == me]
    by_loader = [f for f in forks if f[0] != me]
    assert len(by_supervisor) == 1                 # the loader
    assert by_supervisor[0][2] > 1000              # the supervisor's objects are frozen
    loader = {f[0] for f in by_loader}
    assert len(loader) == 1
    # the last two forks start the workers (an earlier one made the certificate)
    assert len(by_loader) >= 2 and len(in_workers) == 2
    for _pid, enabled, frozen in by_loader[-2:]:
        assert not enabled                     # no collection in the loader
        assert frozen > 1000                   # everything imported is frozen
    for ppid, enabled, frozen in in_workers:
        assert ppid == me                      # adopted: the loader is gone
        assert enabled                         # the worker collects its own objects
        assert frozen > 1000                   # ... never the loader's
    assert not os.path.exists(f"/proc/{loader.pop()}")     # exited and reaped
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_supervisor_imports_none_of_the_server(tmp_path):
    """`mailaccess serve` with workers: the supervisor process imports no
    Trio, no store and no service (the loader prepares the store and imports
    them, then exits), so it holds none of their pages once the workers run."""
    _config(tmp_path)                          # writes the config file
    code = f"""
        import sys
        from mailaccess import cli
        from mailaccess.server import workers

        def child(self, index, sock, loader=None):
            return 0                           # the worker exits at once: it stops
        workers.Supervisor._child = child
        status = cli.main(["serve", "--config", {str(tmp_path / "mailaccess.toml")!r}])
        print(status, sorted(m for m in sys.modules if m.split(".")[0] in ("trio", "lmdb")
                             or m.startswith(("mailaccess.store", "mailaccess.server.app",
                                              "mailaccess.server.imap", "mailaccess.auth"))))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == "1 []", out.stderr
    # the loader made the store (the supervisor did not)
    assert (tmp_path / "data" / "store" / "data.mdb").exists()


def test_trim_periodically_trims_every_interval_and_never_at_0(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "trim", lambda: calls.append(trio.current_time()) or True)

    async def main(interval):
        with trio.move_on_after(35):
            await memory.trim_periodically(interval)

    trio.run(main, 10.0, clock=trio.testing.MockClock(autojump_threshold=0))
    assert calls == [10.0, 20.0, 30.0]
    calls.clear()
    trio.run(main, 0.0, clock=trio.testing.MockClock(autojump_threshold=0))
    assert calls == []


def _run(code: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env={**os.environ, **(env or {})}, check=True)
    return out.stdout.strip()


@glibc
def test_tune_malloc_applies_once_and_leaves_the_environment_s_choice():
    code = """
        from mailaccess.server import memory
        print(sorted(memory.tune_malloc().items()), memory.tune_malloc() is memory.tune_malloc())
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, check=True).stdout.strip()
    assert out == (f"[('arena_max', {memory.ARENA_MAX}), "
                   f"('mmap_threshold', {memory.MMAP_THRESHOLD})] True")
    out = _run(code, {"MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"})
    assert out == "[] True"


@glibc
def test_a_big_block_freed_in_a_thread_goes_back_to_the_kernel():
    """With the threshold fixed, a block from MMAP_THRESHOLD on is mmapped
    every time and unmapped on free: a thread that verified a password with
    argon2id at m=19 MiB does not keep 19 MiB for good.  (Without it glibc
    raises the threshold to the size of the first such block freed, and the
    next ones stay in the thread's arena.)  Measured against the block's
    own size: this process's resident anonymous memory after three rounds."""
    code = """
        import sys, threading
        from mailaccess.server import memory
        if sys.argv[1] == "tuned":
            memory.tune_malloc()
        BLOCK = 16 * 1024 * 1024

        def anon():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024

        def work(out):
            for _ in range(3):
                b = b"x" * BLOCK       # touched: resident while it lives
                del b
            out.append(anon())

        before = anon()
        out = []
        t = threading.Thread(target=work, args=(out,))
        t.start()
        t.join()
        print((out[0] - before) / BLOCK)
    """
    kept = float(subprocess.run([sys.executable, "-c", textwrap.dedent(code), "tuned"],
                                capture_output=True, text=True, check=True,
                                env={k: v for k, v in os.environ.items()
                                     if not k.startswith("MALLOC_")}).stdout)
    assert kept < 0.5


def test_starting_a_worker_imports_nothing_the_supervisor_did_not(tmp_path):
    """Every module a worker needs to start is imported by the supervisor
    before the fork (Supervisor.preflight and preload): a module first
    imported in a worker is built again, privately, in each one.  What only
    the first start needs (the certificate's generator) is not imported."""
    cfg_path = tmp_path / "mailaccess.toml"
    _config(tmp_path, n=1)                     # writes the config file
    code = f"""
        import sys
        import trio
        from mailaccess.config import load
        from mailaccess.server import app, workers

        cfg = load({str(cfg_path)!r})
        sup = workers.Supervisor(cfg)
        sup.preflight()
        print("trustme" in sys.modules, "cryptography" in sys.modules)
        sup.preload()
        before = set(sys.modules)

        async def main():
            async with trio.open_nursery() as n:
                await n.start(app.serve, cfg)
                print(sorted(set(sys.modules) - before))
                n.cancel_scope.cancel()

        trio.run(main)
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.strip().splitlines()
    # the first start made the certificate, in a child: cryptography is not
    # in the supervisor (nor, then, in its workers)
    assert (tmp_path / "data" / "tls" / "selfsigned-cert.pem").exists()
    assert out[-2] == "False False"
    assert out[-1] == "[]"
