"""logflush_py and logflush_c (perf7-overlap): a ticket's wait returns once
a flush that began after it was handed out has completed; a failed flush
fails its ticket and every later one."""
import os

import pytest

from conftest import twin_params


@pytest.mark.parametrize("mod", twin_params("logflush"))
def test_tickets_and_waits(mod, tmp_path):
    fd = os.open(tmp_path / "log", os.O_RDWR | os.O_CREAT, 0o600)
    f = mod.Flusher(fd)
    try:
        os.pwrite(fd, b"x" * 100, 0)
        t1 = f.start()
        t2 = f.start()
        assert t2 > t1
        assert f.wait(t2) == 0
        assert f.wait(t1) == 0          # covered already
        for _ in range(50):
            assert f.wait(f.start()) == 0
    finally:
        f.close()
        f.close()                        # idempotent
        os.close(fd)


@pytest.mark.parametrize("mod", twin_params("logflush"))
def test_a_failed_flush_fails_every_later_ticket(mod, tmp_path):
    r, w = os.pipe()                     # fdatasync of a pipe: EINVAL
    f = mod.Flusher(r)
    try:
        assert f.wait(f.start()) != 0
        assert f.wait(f.start()) != 0
    finally:
        f.close()
        os.close(r)
        os.close(w)
