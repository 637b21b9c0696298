"""The compiled indexer is the one in use unless MAILACCESS_NO_EXTENSIONS is set."""
import os

import pytest

from mailaccess import _speedups
import mailaccess.mime.index  # noqa: F401  (selects the implementation at import)


@pytest.mark.skipif(bool(os.environ.get("MAILACCESS_NO_EXTENSIONS")), reason="extensions disabled")
def test_c_msgindex_loaded():
    assert _speedups.IMPLEMENTATION["msgindex"] == "c"


@pytest.mark.skipif(not os.environ.get("MAILACCESS_NO_EXTENSIONS"), reason="extensions enabled")
def test_py_msgindex_when_disabled():
    assert _speedups.IMPLEMENTATION["msgindex"] == "py"
