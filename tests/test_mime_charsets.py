"""mime/charsets: the charset names Python's codecs know on some supported
releases only (3.13.0 added windows_31j to encodings.aliases; 3.11.7 and
3.12.1 have the same table), known on every one; and the message indexer's
twins map them to the same codec."""
from __future__ import annotations

import codecs

import pytest

from mailaccess import _speedups
from mailaccess.mime import charsets

SJIS = "\u65e5\u672c\u8a9e\u2460".encode("cp932")     # NEC's circled one: cp932 only


@pytest.mark.parametrize("name", ["WINDOWS-31J", "windows_31j", "csWindows31J", "Windows-31j"])
def test_windows_31j_is_cp932_on_every_python(name):
    info = charsets.lookup(name)
    assert info is not None and info.name == "cp932"
    assert SJIS.decode(info.name) == "\u65e5\u672c\u8a9e\u2460"


def test_other_names_are_pythons():
    assert charsets.lookup("UTF-8").name == "utf-8"
    assert charsets.lookup("ISO-8859-1").name == "iso8859-1"
    assert charsets.lookup("SHIFT_JIS").name == "shift_jis"
    for bad in ("KLINGON", "BASE64", "rot13", "A\x00B", ""):
        assert charsets.lookup(bad) is None, bad


@pytest.mark.parametrize("name", sorted(charsets.CODEC_ALIASES))
def test_the_table_agrees_with_a_python_that_knows_the_name(name):
    """Where this Python's codecs know a name of the table (3.13: windows_31j),
    they mean the same codec."""
    try:
        native = codecs.lookup(name).name
    except LookupError:
        pytest.skip(f"this Python does not know {name}")
    assert native == codecs.lookup(charsets.CODEC_ALIASES[name]).name


@pytest.mark.parametrize("twin", ["py", "c"])
def test_the_indexer_twins_decode_the_tables_names_alike(twin):
    """_speedups/msgindex keeps its own MIME charset table (both twins): it
    decodes every name of this one as this one does."""
    mod = _speedups.load_py("msgindex") if twin == "py" else _speedups.load_c("msgindex")
    if mod is None:
        pytest.skip("the compiled twin is not built")
    for name in charsets.CODEC_ALIASES:
        for spelled in (name, name.upper()):
            assert mod.decode_charset(SJIS, spelled) == SJIS.decode(
                charsets.lookup(spelled).name), spelled
