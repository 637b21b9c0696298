"""The compiled search twin is the one in use unless MAILACCESS_NO_EXTENSIONS is set."""
import os

import pytest

from mailaccess import _speedups
from mailaccess.query import engine


@pytest.mark.skipif(bool(os.environ.get("MAILACCESS_NO_EXTENSIONS")),
                    reason="MAILACCESS_NO_EXTENSIONS forces the pure-Python twins")
def test_search_c_loaded():
    assert engine._impl is not None
    assert _speedups.IMPLEMENTATION["search"] == "c"
    assert engine._impl.__name__.endswith("search_c")


def test_no_extensions_means_py():
    if os.environ.get("MAILACCESS_NO_EXTENSIONS"):
        assert _speedups.IMPLEMENTATION["search"] == "py"
