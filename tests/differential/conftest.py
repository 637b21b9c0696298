"""Fixtures for the differential tests: a private Dovecot for the whole session,
emptied before each test, next to the in-process mailaccess of tests/conftest.py."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

ENV = "MAILACCESS_DIFFERENTIAL"


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


@pytest.fixture(scope="session")
def _dovecot_instance():
    if not enabled():
        pytest.skip(f"differential tests run only with {ENV}=1")
    from imapdiff import make_dovecot
    workdir = tempfile.mkdtemp(prefix="mailaccess-diff-dovecot-")
    d = make_dovecot(workdir)
    d.start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def dovecot(_dovecot_instance):
    """The Dovecot peer with an empty mail home (user alice/pw)."""
    home = _dovecot_instance.home()
    for name in os.listdir(home):
        p = os.path.join(home, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)
    return _dovecot_instance
