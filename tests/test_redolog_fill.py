"""The log's zero-fill is written a page at a time (perf8-write).

A write's length sets the size of the page-cache folios it creates (ext4
with large folios, Linux 6.16 on), and each later small write into a folio
costs in proportion to the folio's blocks: every record of the log is such
a write.  The fill ahead of the records is therefore made of page-sized
writes, never one large one; the file still grows by whole ``GROW`` steps
and reads back as zeros.
"""
from __future__ import annotations

import os

from mailaccess.store import redolog


def test_the_fill_is_written_a_page_at_a_time(tmp_path, monkeypatch):
    log = redolog.RedoLog(str(tmp_path))
    sizes = []
    real = os.pwrite

    def pwrite(fd, data, off):
        if fd == log.fd:
            sizes.append(len(data))
        return real(fd, data, off)

    try:
        monkeypatch.setattr(redolog.os, "pwrite", pwrite)
        log.reserve(redolog.GROW + 1)
        assert log.size == 2 * redolog.GROW == os.fstat(log.fd).st_size
        assert sizes and max(sizes) <= redolog.FILL <= 4096
        assert sum(sizes) == 2 * redolog.GROW
        assert os.pread(log.fd, 2 * redolog.GROW, 0) == bytes(2 * redolog.GROW)
    finally:
        monkeypatch.undo()
        log.close()
