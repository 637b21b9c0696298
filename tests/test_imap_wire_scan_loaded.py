"""The compiled imapscan twin is the one in use (aiohttp test_c_parser_loaded)."""
import os

import pytest

from mailaccess import _speedups
from mailaccess.proto.imap import receiver


@pytest.mark.skipif(bool(os.environ.get("MAILACCESS_NO_EXTENSIONS")), reason="extensions disabled")
def test_c_scanner_loaded():
    assert _speedups.IMPLEMENTATION["imapscan"] == "c"
    assert receiver._scan.__name__ == "mailaccess._speedups.imapscan_c"


def test_no_extensions_means_py():
    if os.environ.get("MAILACCESS_NO_EXTENSIONS"):
        assert _speedups.IMPLEMENTATION["imapscan"] == "py"
