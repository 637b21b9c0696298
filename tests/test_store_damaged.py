"""A damaged or missing store is refused, never silently replaced (the CLI,
as an operator runs it): truncated to half, to zero bytes, a missing data
directory, a foreign file, another program's LMDB.  Every command says what
to do, exits non-zero, and creates nothing; `serve` creates a store only on
its first start in an empty or absent data directory, and says so."""
import os
import shutil
import subprocess
import sys

import lmdb
import pytest

from mailaccess import accounts
from mailaccess.store import Store

RESTORE = "restore the store from a backup"


def cli(*args, stdin="pw\n"):
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mailaccess", *args], capture_output=True,
                          text=True, input=stdin, timeout=120, env=env)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A data directory with one account and some mail."""
    data = tmp_path_factory.mktemp("good") / "data"
    from mailaccess import ingest
    from mailaccess.store import ops

    with Store(data / "store") as s:
        accounts.add_user(s, "alice", "pw")
        with s.view() as v:
            acc = v.account_by_name("alice").id
            inbox = v.mailbox_by_role(acc, "inbox").id
        for i in range(200):
            raw = (f"From: a@b\r\nSubject: m{i}\r\n\r\n" + "x" * 3000 + "\r\n").encode()
            s.write_sync(ops.append, acc, [inbox], ingest.prepare(raw), [])
    return data


def damaged_copy(good, tmp_path, how):
    data = tmp_path / "data"
    shutil.copytree(good, data)
    f = data / "store" / "data.mdb"
    if how == "half":
        os.truncate(f, os.path.getsize(f) // 2)
    elif how == "one-page":
        os.truncate(f, 4096)
    elif how == "zero":
        os.truncate(f, 0)
    elif how == "foreign":
        f.write_bytes(b"not a database " * 10_000)
    elif how == "no-data-file":
        f.unlink()
    return data


COMMANDS = [["check"], ["user", "list"],
            ["backup", "BK"], ["user", "add", "bob", "--password-stdin"],
            ["serve", "--no-demo"]]

WHAT = {"half": "was truncated or only partly copied",
        "one-page": "is not a readable LMDB store",
        "zero": "is empty (0 bytes): the store was truncated",
        "foreign": "is not a readable LMDB store",
        "no-data-file": "holds no data.mdb"}


@pytest.mark.parametrize("how", list(WHAT))
def test_a_damaged_store_is_refused_by_every_command(good, tmp_path, how):
    data = damaged_copy(good, tmp_path, how)
    before = sorted(os.listdir(data / "store"))
    size = os.path.getsize(data / "store" / "data.mdb") if how != "no-data-file" else None
    for argv in COMMANDS:
        argv = [str(tmp_path / a) if a in ("OUT", "BK") else a for a in argv]
        r = cli(*argv, "--data-dir", str(data))
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert WHAT[how] in r.stderr, (argv, r.stderr)
        assert RESTORE in r.stderr, (argv, r.stderr)
        assert "Traceback" not in r.stderr and r.returncode != -7   # no SIGBUS
        # nothing was replaced or created
        if size is not None:
            assert os.path.getsize(data / "store" / "data.mdb") == size
        assert not (data / "store" / "data.mdb").exists() or how != "no-data-file"
        assert "lock.mdb" in before or sorted(os.listdir(data / "store")) == before


def test_another_programs_lmdb_is_refused(tmp_path):
    data = tmp_path / "data"
    os.makedirs(data / "store")
    env = lmdb.open(str(data / "store"), max_dbs=2)
    env.open_db(b"theirs")
    env.close()
    r = cli("check", "--data-dir", str(data))
    assert r.returncode == 1 and "not a mailaccess store" in r.stderr, r.stderr


@pytest.mark.parametrize("argv", [["check"], ["user", "list"], ["reindex"], ["backup", "BK"],
                                  ["export", "alice", "OUT"], ["user", "passwd", "alice",
                                                               "--password-stdin"]])
def test_admin_commands_create_nothing_where_there_is_no_store(tmp_path, argv):
    argv = [str(tmp_path / a) if a in ("OUT", "BK") else a for a in argv]
    missing = tmp_path / "no-such-dir"
    r = cli(*argv, "--data-dir", str(missing))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "there is no mail store at" in r.stderr and "Traceback" not in r.stderr
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(*argv, "--data-dir", str(empty))
    assert r.returncode == 1 and "there is no mail store at" in r.stderr
    assert os.listdir(empty) == []


def test_serve_refuses_a_data_dir_that_lost_its_store(tmp_path):
    """TLS keys from an earlier start, no store: not a first start."""
    data = tmp_path / "data"
    os.makedirs(data / "tls")
    r = cli("serve", "--no-demo", "--data-dir", str(data))
    assert r.returncode == 1
    assert "holds tls but no mail store" in r.stderr and RESTORE in r.stderr
    assert not (data / "store").exists()


def test_user_add_creates_a_store_in_a_new_data_dir_and_says_so(tmp_path):
    data = tmp_path / "new"
    r = cli("user", "add", "alice", "--password-stdin", "--data-dir", str(data))
    assert r.returncode == 0, r.stderr
    assert "creating a new, empty mail store" in r.stderr
    r = cli("check", "--data-dir", str(data))
    assert r.returncode == 0 and "store is consistent" in r.stdout
    r = cli("user", "list", "--data-dir", str(data))
    assert "alice" in r.stdout
