"""server/devicelock.py: the ActiveSync device lock across worker processes.

Another process holds the lock through a child process (fork) that takes
the flock and waits for a word on a pipe; no timing threshold decides a
result: "still blocked" is checked by a non-blocking attempt, not a clock."""
from __future__ import annotations

import fcntl
import os

import pytest
import trio

from mailaccess.server.devicelock import SharedLock, lock_path


_HOLDERS: list = []


@pytest.fixture(autouse=True)
def _release_holders():
    yield
    while _HOLDERS:
        h = _HOLDERS.pop()
        if h.pid:
            h.release()


class Holder:
    """A child process holding PATH's flock until released."""

    def __init__(self, path: str):
        _HOLDERS.append(self)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.go_r, self.go_w = os.pipe()
        held_r, held_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT)
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(held_w, b"x")
                os.read(self.go_r, 1)
            finally:
                os._exit(0)
        os.read(held_r, 1)

    def release(self) -> None:
        if self.pid:
            os.write(self.go_w, b"x")
            os.waitpid(self.pid, 0)
            self.pid = 0


def free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_paths_are_per_account_and_device(tmp_path):
    a = lock_path(str(tmp_path), 1, "dev")
    assert a == lock_path(str(tmp_path), 1, "dev")
    assert a != lock_path(str(tmp_path), 2, "dev") != lock_path(str(tmp_path), 1, "dev2")
    assert a.startswith(str(tmp_path / "run" / "locks"))


async def test_waits_for_another_process_then_holds_it(tmp_path):
    path = lock_path(str(tmp_path), 1, "phone")
    other = Holder(path)
    lock = SharedLock(path)
    got = trio.Event()

    async def take():
        async with lock:
            got.set()
            assert not free(path)              # held against other processes
            await trio.sleep(0)

    async with trio.open_nursery() as n:
        n.start_soon(take)
        await trio.sleep(0.2)
        assert not got.is_set()                # blocked by the other process
        await trio.to_thread.run_sync(other.release)
        with trio.fail_after(30):
            await got.wait()
    assert free(path)                          # released after the block


async def test_a_cancelled_wait_leaves_the_lock_free(tmp_path):
    path = lock_path(str(tmp_path), 1, "phone")
    other = Holder(path)
    lock = SharedLock(path)
    with trio.move_on_after(0.2) as scope:
        await lock.acquire()
    assert scope.cancelled_caught and not lock.locked()
    await trio.to_thread.run_sync(other.release)
    # the abandoned thread got the flock and gave it back
    with trio.fail_after(30):
        while not free(path):
            await trio.sleep(0.01)
    async with lock:
        pass


async def test_tasks_of_one_process_take_turns(tmp_path):
    path = lock_path(str(tmp_path), 3, "tablet")
    lock = SharedLock(path)
    inside = []

    async def one(i):
        async with lock:
            inside.append(i)
            assert len(inside) == 1
            await trio.sleep(0.01)
            inside.remove(i)

    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(one, i)
    assert free(path)


async def test_release_around_a_long_wait_lets_another_process_in(tmp_path):
    """What EasContext.released does for Ping: release, wait, take back."""
    path = lock_path(str(tmp_path), 1, "phone")
    lock = SharedLock(path)
    await lock.acquire()
    assert not free(path)
    lock.release()
    assert free(path)
    await lock.acquire()
    assert not free(path)
    lock.release()
