"""ActiveSync devices per account are capped ([eas] max_devices_per_user).

A DeviceId the store does not know, from an account at the cap, gets the
common status 177 MaximumDevicesReached (MS-ASCMD 2.2.2; HTTP 403 for 12.x)
and leaves nothing behind: no device-state rows, no lock file.  Known
devices keep working; forgetting one (the operator's ``mailaccess eas
forget``) frees a slot.  The count and the registration are one write
transaction (ops.admit_device), so two new devices cannot both take the
last slot."""
from __future__ import annotations

import dataclasses
import os

import pytest
import trio
from pyactivesync.exceptions import StatusError

from conftest import make_config
from eas_helpers import eas_client, http, post, provision
from imap_helpers import run
from mailaccess import accounts, config
from mailaccess.proto.eas.wbxml import E, decode, encode
from mailaccess.server import eas, eas_provision as prov
from mailaccess.server.devicelock import SharedLock, lock_path
from mailaccess.store import ops

CAP = 2


@pytest.fixture
def cfg(tmp_path):
    c = make_config(tmp_path)
    return dataclasses.replace(c, eas=dataclasses.replace(c.eas, max_devices_per_user=CAP))


@pytest.fixture
async def srv(server, monkeypatch):
    """alice and bob; device locks are the several-worker kind (a lock file
    per device under DATA/run/locks), so a test sees which devices got one."""
    def shared(self, account, device):
        return SharedLock(lock_path(self.ctx.cfg.data_dir, account, device))

    monkeypatch.setattr(eas.Eas, "_device_lock", shared)
    await trio.to_thread.run_sync(accounts.add_user, server.store, "alice", "pw")
    await trio.to_thread.run_sync(accounts.add_user, server.store, "bob", "pw")
    return server


def folder_sync(c, key, device):
    r = post(c, "FolderSync", encode(E("FolderHierarchy:FolderSync",
                                       E("FolderHierarchy:SyncKey", text="0"))),
             device=device, key=key)
    assert r.status_code == 200
    return decode(r.content).child_text("FolderHierarchy:Status")


def provision_status(c, device, version="14.1"):
    r = post(c, "Provision", encode(E("Provision:Provision", E("Provision:Policies", E(
        "Provision:Policy", E("Provision:PolicyType", text="MS-EAS-Provisioning-WBXML"))))),
        device=device, version=version)
    return r if version.startswith("12") else decode(r.content).child_text("Provision:Status")


def devices(srv, user="alice"):
    acc = accounts.lookup(srv.store, user).id
    with srv.store.view() as v:
        return v.devices(acc)


def has_lock(srv, device, user="alice"):
    acc = accounts.lookup(srv.store, user).id
    return os.path.exists(lock_path(srv.cfg.data_dir, acc, device))


async def test_new_device_at_the_cap_gets_177_and_leaves_nothing(srv):
    def go():
        with http(srv) as c:
            keys = [provision(c, device=d) for d in ("ph1", "ph2")]
            refused = {"prov": provision_status(c, "ph3"),
                       "fs": folder_sync(c, 1, "ph3"),
                       "12.1": provision_status(c, "ph4", version="12.1").status_code}
            known = [folder_sync(c, k, d) for k, d in zip(keys, ("ph1", "ph2"))]
            return refused, known

    refused, known = await run(go)
    assert refused == {"prov": "177", "fs": "177", "12.1": 403}
    assert known == ["1", "1"]                         # known devices keep working
    assert devices(srv) == ["ph1", "ph2"]
    acc = accounts.lookup(srv.store, "alice").id
    with srv.store.view() as v:
        assert v.device_keys(acc, "ph3") == [] and v.device_keys(acc, "ph4") == []
    assert has_lock(srv, "ph1") and has_lock(srv, "ph2")
    assert not has_lock(srv, "ph3") and not has_lock(srv, "ph4")

    def bob():          # the cap is per account
        with http(srv, user="bob") as c:
            return provision_status(c, "ph3")

    assert await run(bob) == "1"


async def test_pyactivesync_new_device_at_the_cap(srv):
    def go():
        for d in ("pa1", "pa2"):
            with eas_client(srv, device=d) as c:
                c.provision()
        with eas_client(srv, device="pa3") as c:
            with pytest.raises(StatusError) as exc:
                c.provision()
        with eas_client(srv, device="pa1") as c:
            c.provision()                               # a known device provisions again
            folders = c.list_folders()
        return exc.value, folders

    err, folders = await run(go)
    assert err.command == "Provision" and err.code == "177"
    assert folders
    assert devices(srv) == ["pa1", "pa2"]


async def test_forgetting_a_device_frees_a_slot(srv):
    def fill():
        with http(srv) as c:
            for d in ("ph1", "ph2"):
                provision(c, device=d)
            return provision_status(c, "ph3")

    assert await run(fill) == "177"
    listed = prov.list_devices(srv.store, accounts.lookup(srv.store, "alice").id)
    assert [(d["device"], d["type"], d["provisioned"]) for d in listed] == \
        [("ph1", "test", "yes"), ("ph2", "test", "yes")]
    acc = accounts.lookup(srv.store, "alice").id
    await trio.to_thread.run_sync(prov.forget_device, srv.store, acc, "ph1")
    assert devices(srv) == ["ph2"]

    def again():
        with http(srv) as c:
            k = provision(c, device="ph3")
            return folder_sync(c, k, "ph3"), provision_status(c, "ph1")

    assert await run(again) == ("1", "177")            # ph1 is now a new device: no slot


def test_cli_lists_and_forgets(tmp_path, capsys, monkeypatch):
    import io

    from mailaccess import cli
    from mailaccess.store import Store

    d = ["--data-dir", str(tmp_path / "data")]
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert cli.main(["user", "add", "carol", "--password-stdin"] + d) == 0
    s = Store(tmp_path / "data" / "store")
    s.start()
    try:
        acc = accounts.lookup(s, "carol").id
        assert s.write_sync(ops.admit_device, acc, "ph1", 5, prov.SEEN_KEY,
                            b'{"type":"iPhone","since":1}')
        s.write_sync(ops.put_device_state, acc, "ph2", prov.STATE_KEY, b'{"key":7}')
    finally:
        s.close()
    capsys.readouterr()
    assert cli.main(["eas", "list", "carol"] + d) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ph1\tiPhone\t1970-01-01T00:00:01Z\tno", "ph2\t-\t-\tyes"]
    capsys.readouterr()
    assert cli.main(["eas", "status", "carol", "ph1"] + d) == 0     # seen, not provisioned
    assert capsys.readouterr().out.strip() == "{}"
    assert cli.main(["eas", "forget", "carol", "ph1"] + d) == 0
    capsys.readouterr()
    assert cli.main(["eas", "list", "carol"] + d) == 0
    assert capsys.readouterr().out.splitlines() == ["ph2\t-\t-\tyes"]


async def test_a_lowered_cap_keeps_known_devices(srv):
    """Devices made under a higher cap (here written straight to the store)
    keep working when the configured cap is lower; new ones are refused."""
    acc = accounts.lookup(srv.store, "alice").id
    for d in ("old1", "old2", "old3"):
        await trio.to_thread.run_sync(srv.store.write_sync, ops.put_device_state, acc, d,
                                      "x", b"1")
    assert len(devices(srv)) == CAP + 1

    def go():
        with http(srv) as c:
            k = provision(c, device="old3")
            return folder_sync(c, k, "old3"), provision_status(c, "new1")

    assert await run(go) == ("1", "177")
    assert devices(srv) == ["old1", "old2", "old3"]


async def test_two_new_devices_racing_for_the_last_slot(srv, monkeypatch):
    """Four new devices, one slot left: the store's writer is held until all
    four have passed the read-only look (unknown device, a slot free) and
    queued their admission, so they race for real; the count in the write
    (ops.admit_device) lets exactly one in."""
    import threading

    from mailaccess import storeio

    def one():
        with http(srv) as c:
            provision(c, device="ph1")

    await run(one)
    arrived = []

    class Counting:             # eas.py's storeio: its writes are the admissions
        def __getattr__(self, name):
            return getattr(storeio, name)

        async def write(self, *a, **kw):
            arrived.append(a[2])
            return await storeio.write(*a, **kw)

        async def write_small(self, *a, **kw):
            arrived.append(a[2])
            return await storeio.write_small(*a, **kw)

    monkeypatch.setattr(eas, "storeio", Counting())
    inside, gate = threading.Event(), threading.Event()

    def hold(tx):
        inside.set()
        gate.wait()

    srv.store.submit(hold, done=lambda result, error: None)
    await trio.to_thread.run_sync(inside.wait)
    results = {}

    async def new(d):
        def go():
            with http(srv) as c:
                return provision_status(c, d)
        results[d] = await run(go)

    async with trio.open_nursery() as n:
        for d in ("r1", "r2", "r3", "r4"):
            n.start_soon(new, d)
        while len(arrived) < 4:             # all four past the look, none admitted
            await trio.sleep(0.01)
        gate.set()
    assert sorted(results.values()) == ["1", "177", "177", "177"]
    assert len(devices(srv)) == CAP


def test_admit_device_counts_in_the_write(tmp_path):
    from mailaccess.store import Store

    s = Store(tmp_path / "store")
    s.start()
    try:
        accounts.add_user(s, "dave", "pw")
        acc = accounts.lookup(s, "dave").id
        # device ids that prefix one another count once each (one seek per device)
        for d in ("ph", "phone", "phone2"):
            s.write_sync(ops.put_device_state, acc, d, "a", b"1")
            s.write_sync(ops.put_device_state, acc, d, "b", b"1")
        with s.view() as v:
            assert v.devices(acc) == ["ph", "phone", "phone2"]
            assert v.devices(acc, limit=2) == ["ph", "phone"]
            assert v.device_known(acc, "phone") and not v.device_known(acc, "phon")
        assert not s.write_sync(ops.admit_device, acc, "new", 3, "seen", b"{}")
        assert s.write_sync(ops.admit_device, acc, "phone", 3, "seen", b"{}")   # known
        assert s.write_sync(ops.admit_device, acc, "new", 4, "seen", b"{}")
        assert not s.write_sync(ops.admit_device, acc, "new2", 4, "seen", b"{}")
        with s.view() as v:
            assert v.device_keys(acc, "new2") == [] and len(v.devices(acc)) == 4
    finally:
        s.close()


def test_config(tmp_path):
    assert config.EasConfig().max_devices_per_user == 100
    p = tmp_path / "c.toml"
    p.write_text("[eas]\nmax_devices_per_user = 3\n")
    assert config.load(str(p)).eas.max_devices_per_user == 3
    p.write_text("[eas]\nmax_devices_per_user = 0\n")
    with pytest.raises(config.ConfigError):
        config.load(str(p))


_OTHER_WORKER = r"""
import sys
from mailaccess.store import Store, ops
s = Store(sys.argv[1])
s.start()
acc = int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
with s.view() as v:
    print(len(v.devices(acc)), flush=True)     # the look: the other process's admission
sys.stdin.readline()                           # is not committed yet
print(s.write_sync(ops.admit_device, acc, "theirs", 2, "seen", b"{}"), flush=True)
s.close()
"""


def test_admission_across_processes(tmp_path):
    """Two worker processes, one slot left: this one admits its device in a
    write transaction that stays open while the other process looks (a slot
    is free) and then admits its own; LMDB's single writer makes the other's
    count see this one's device, so it is refused."""
    import subprocess
    import sys
    import threading

    from mailaccess.store import Store

    path = str(tmp_path / "store")
    s = Store(path)
    s.start()
    try:
        accounts.add_user(s, "erin", "pw")
        acc = accounts.lookup(s, "erin").id
        s.write_sync(ops.put_device_state, acc, "first", "seen", b"{}")
        inside, gate = threading.Event(), threading.Event()

        def mine(tx):
            ok = ops.admit_device(tx, acc, "mine", 2, "seen", b"{}")
            inside.set()
            gate.wait()
            return ok

        box = []
        other = subprocess.Popen([sys.executable, "-c", _OTHER_WORKER, path, str(acc)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout.readline().strip() == "ready"  # opened before we write
            s.submit(mine, done=lambda result, error: box.append((result, error)))
            inside.wait()
            other.stdin.write("look\n")
            other.stdin.flush()
            assert other.stdout.readline().strip() == "1"      # it saw a free slot
            other.stdin.write("go\n")
            other.stdin.flush()
            gate.set()
            assert other.stdout.readline().strip() == "False"
            assert other.wait(timeout=300) == 0
        finally:
            gate.set()
            if other.poll() is None:
                other.kill()
                other.wait()
        s.write_sync(lambda tx: None)
        assert box == [(True, None)]
        with s.view() as v:
            assert v.devices(acc) == ["first", "mine"]
    finally:
        s.close()
