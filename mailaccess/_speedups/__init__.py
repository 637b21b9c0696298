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


def names() -> list[str]:
    """Every hot path of this package (each has a pure twin ``NAME_py``)."""
    here = os.path.dirname(__file__)
    return sorted(f[:-6] for f in os.listdir(here) if f.endswith("_py.py"))


def describe() -> tuple[bool, str]:
    """What the server runs, for its start-up log -> (all compiled, one
    line).  A hot path whose compiled module is missing (not built: no C
    compiler at setup) runs as its pure twin, correct but several times
    slower; the line says which and how to build them."""
    if NO_EXTENSIONS:
        return True, "hot paths: pure Python (MAILACCESS_NO_EXTENSIONS is set)"
    missing = [n for n in names() if load_c(n) is None]
    if missing:
        return False, (f"hot paths running as pure Python, slower: {', '.join(missing)} "
                       "(their compiled modules are not built; `python setup.py build_ext "
                       "--inplace` in the source tree, or scripts/setup, builds them)")
    line = f"hot paths: compiled ({len(names())})"
    rec = load_c("emailrec")
    if rec is not None:
        import lmdb
        line += ("; bulk flag writes call LMDB directly" if rec.lmdb_direct() else
                 f"; bulk flag writes go through py-lmdb {lmdb.__version__} "
                 "(direct calls need py-lmdb 3.0.0)")
    return True, line
