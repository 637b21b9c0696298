"""Build the Cython hot paths in mailaccess/_speedups.

Everything else lives in pyproject.toml.  Each compiled module ``*_c.pyx`` has
a pure-Python twin ``*_py.py`` with the same interface; if Cython or a C
compiler is missing, or MAILACCESS_NO_EXTENSIONS is set, the package installs
without the compiled modules and runs on the twins (with a warning at build
time, and mailaccess._speedups.IMPLEMENTATION says which one is loaded).
"""
import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that degrades to the pure-Python twins instead of failing."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, broken toolchain
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc, ext.name)

    @staticmethod
    def _warn(exc, name="extensions"):
        sys.stderr.write(
            f"\nWARNING: could not compile {name} ({exc}).\n"
            "mailaccess will run on its pure-Python twins: correct, but slower.\n"
            "Install a C compiler and the Python headers (apt-get install gcc python3-dev)"
            " and reinstall to get the compiled hot paths.\n\n"
        )


def extensions():
    if os.environ.get("MAILACCESS_NO_EXTENSIONS"):
        sys.stderr.write("MAILACCESS_NO_EXTENSIONS set: building pure-Python only\n")
        return []
    if sys.implementation.name != "cpython":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write(
            "\nWARNING: Cython is not installed; building without the compiled hot paths.\n\n"
        )
        return []
    sources = sorted(glob.glob("mailaccess/_speedups/*_c.pyx"))
    extra = []
    if os.environ.get("MAILACCESS_SANITIZE"):
        extra = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    from setuptools import Extension

    out = []
    for src in sources:
        ext = Extension(
            "mailaccess._speedups." + os.path.basename(src)[:-4],
            [src],
            include_dirs=["csrc"],
            extra_compile_args=["-O2"] + extra,
            extra_link_args=extra,
        )
        try:
            # one module at a time, so a module that fails to cythonize only
            # costs that module (it falls back to its twin)
            out.extend(cythonize(
                [ext],
                compiler_directives={
                    "language_level": 3,
                    "boundscheck": False,
                    "wraparound": False,
                    "cdivision": True,
                    "embedsignature": True,
                },
                quiet=True,
            ))
        except Exception as exc:
            OptionalBuildExt._warn(exc, ext.name)
    return out


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
