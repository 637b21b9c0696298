"""The server's start-up line about its hot paths (_speedups.describe): an
operator whose build had no C compiler learns that the server runs the pure
twins, and which, and how to build them."""
import logging
import os

import lmdb
import pytest

from mailaccess import _speedups

BUILT = not os.environ.get("MAILACCESS_NO_EXTENSIONS")


def test_every_hot_path_is_named():
    assert _speedups.names() == sorted(
        ["emailrec", "facts", "fetchfmt", "imapscan", "imapsel", "kwone", "msgindex", "search",
         "thread", "wbxml"])


@pytest.mark.skipif(not BUILT, reason="extensions disabled")
def test_all_compiled():
    ok, line = _speedups.describe()
    assert ok and line.startswith(f"hot paths: compiled ({len(_speedups.names())})")


@pytest.mark.skipif(not BUILT, reason="extensions disabled")
def test_a_missing_build_is_named_with_the_way_to_build_it(monkeypatch):
    real = _speedups.load_c
    monkeypatch.setattr(_speedups, "load_c",
                        lambda name: None if name in ("search", "wbxml") else real(name))
    ok, line = _speedups.describe()
    assert not ok
    assert "search, wbxml" in line and "build_ext" in line and "emailrec" not in line


@pytest.mark.skipif(not BUILT, reason="extensions disabled")
def test_the_lmdb_path_of_bulk_flag_writes_is_said(monkeypatch):
    rec = _speedups.load_c("emailrec")
    monkeypatch.setattr(rec, "lmdb_direct", lambda: False)
    ok, line = _speedups.describe()
    assert ok and f"through py-lmdb {lmdb.__version__}" in line


def test_the_twins_when_asked_for(monkeypatch):
    monkeypatch.setattr(_speedups, "NO_EXTENSIONS", True)
    assert _speedups.describe() == (
        True, "hot paths: pure Python (MAILACCESS_NO_EXTENSIONS is set)")


@pytest.fixture
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger="mailaccess")
    return caplog


async def test_the_server_logs_it(info_logs, server):
    caplog = info_logs
    want = _speedups.describe()[1]
    assert any(r.getMessage() == want and r.levelno == logging.INFO
               for r in caplog.records if r.name.startswith("mailaccess"))
