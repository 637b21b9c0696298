"""Compiled hot paths and their pure-Python twins: the only place Cython lives.

Each hot path NAME has a pure-Python module ``NAME_py`` (the source of truth)
and a Cython module ``NAME_c`` with the same public functions.  ``load(NAME)``
returns the compiled module when it was built and MAILACCESS_NO_EXTENSIONS is
unset, otherwise the twin; ``IMPLEMENTATION[NAME]`` records which ("c"/"py")
so a test can catch a silently missing build.  Tests import both twins
directly (``load_py`` / ``load_c``) and require identical results.
"""
from __future__ import annotations

import importlib
import os
import types

NO_EXTENSIONS = bool(os.environ.get("MAILACCESS_NO_EXTENSIONS"))

IMPLEMENTATION: dict[str, str] = {}


def load_py(name: str) -> types.ModuleType:
    return importlib.import_module(f"{__name__}.{name}_py")


def load_c(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{name}_c")
    except ImportError:
        return None


def load(name: str) -> types.ModuleType:
    """The implementation of hot path NAME that the rest of the code uses."""
    if not NO_EXTENSIONS:
        mod = load_c(name)
        if mod is not None:
            IMPLEMENTATION[name] = "c"
            return mod
    IMPLEMENTATION[name] = "py"
    return load_py(name)
