"""Shared fixtures: trio mode comes from pyproject; helpers for both twins."""
import pytest

from mailaccess import _speedups


def twin_params(name: str):
    """pytest params for the available implementations of hot path NAME."""
    params = [pytest.param(_speedups.load_py(name), id="py")]
    mod = _speedups.load_c(name)
    if mod is not None:
        params.append(pytest.param(mod, id="c"))
    return params
