"""The servers of the interleaved A/B harnesses (bench/ab_body.py, bench/ab_fetch.py): one per
tree, its store on /dev/shm; a tree named ``dovecot`` is bench/dovecot.py's Dovecot
(bench_stress's configuration).  Each has ``port`` and ``pids()`` (its process tree); ``stop``
stops it and removes its directory (the stores are in RAM)."""
import os
import shutil
import tempfile

import bench_stress as bs


class _Dovecot(bs.Dovecot):
    def pids(self):
        return bs.dv.process_tree(self.proc.pid)


def stop(srv) -> None:
    try:
        srv.stop()
    finally:
        shutil.rmtree(srv.ab_dir, ignore_errors=True)


def start(tree: str, prefix: str, started: list):
    """The server of TREE (its PYTHONPATH), started; appended to STARTED (``stop`` them at
    exit)."""
    if tree == "dovecot":
        workdir = tempfile.mkdtemp(prefix=prefix + "dc-", dir="/dev/shm")
        srv = _Dovecot(workdir, bs.USER, bs.PASSWORD, max_connections=60)
        srv.ab_dir = workdir
        srv.set_password("{PLAIN}" + bs.PASSWORD)
        srv.start()
        started.append(srv)
        srv.port = srv.ports["imap"]
        return srv
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = tree
    try:
        workdir = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm")
        srv = bs.Mailaccess(workdir, 60, int(os.environ.get("AB_WORKERS", "1")))
        srv.ab_dir = workdir
        srv.start(bs.CHEAP)
        started.append(srv)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return srv
