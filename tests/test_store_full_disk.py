"""A full disk: the writer gets a clear error, nothing half-written, the store
stays consistent and readable, and it works again once space is freed.
Needs root to mount a small tmpfs (CI runs as root); skipped otherwise."""
import hashlib
import os
import subprocess

import pytest

from mailaccess.check import check_store
from mailaccess.store import Store, StoreFullError, ops


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    # 6 MiB: the redo log takes its share first (it is zero-filled up to
    # 2 MiB ahead of its tail, store/redolog.py), the rest fills with mail
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def email(raw):
    return ops.NewEmail(raw=raw, index=b"\x01" + b"\0" * 28, blob=hashlib.sha256(raw).digest(),
                        received_at=0)


def test_full_disk_is_a_clear_error_and_leaves_the_store_consistent(small_fs):
    st = Store(small_fs / "store", map_size=1 << 30)
    st.start()
    acc = st.write_sync(ops.create_account, "a", "h")
    with st.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id
    stored = 0
    with pytest.raises(StoreFullError, match="Free disk space"):
        for _ in range(1000):
            st.write_sync(ops.append, acc, [ib], email(os.urandom(50_000)))
            stored += 1
    assert stored > 10
    with st.view() as v:
        assert v.mailbox(acc, ib).total == stored
    st.close()
    # reopen: the last acknowledged state is there, nothing half-written
    st = Store(small_fs / "store")
    st.start()
    try:
        with st.view() as v:
            assert v.mailbox(acc, ib).total == stored
        # still full: even an expunge may need fresh pages (copy-on-write);
        # if so it fails cleanly with the same clear error
        try:
            st.write_sync(ops.expunge, acc, ib, [stored])
            stored -= 1
        except StoreFullError:
            pass
        # the operator frees space (here: the file system grows); writes work
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)
        st.write_sync(ops.expunge, acc, ib, list(range(1, stored // 2)))
        st.write_sync(ops.append, acc, [ib], email(b"small message after the disk was full"))
        assert check_store(st) == []
    finally:
        st.close()
