"""The WBXML codec's twins (mailaccess/_speedups/wbxml_py.py and its compiled
wbxml_c.pyx): the same tree, the same bytes, or the same error (reason,
detail, offset) for every input, over hypothesis trees on every code page,
damaged and arbitrary bytes, and the encoder's refusals; and the compiled
twin is the one wbxml.py uses when it was built."""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailaccess import _speedups
from mailaccess.proto.eas import codepages, wbxml
from mailaccess.proto.eas.wbxml import HEADER, E, Element, WbxmlError

PY = _speedups.load_py("wbxml")
C = _speedups.load_c("wbxml")
needs_c = pytest.mark.skipif(C is None, reason="wbxml_c not built")
H = bytes.fromhex


@pytest.mark.skipif(bool(os.environ.get("MAILACCESS_NO_EXTENSIONS")), reason="extensions disabled")
def test_compiled_codec_loaded():
    assert _speedups.IMPLEMENTATION["wbxml"] == "c"
    assert wbxml._impl.__name__ == "mailaccess._speedups.wbxml_c"


def test_no_extensions_means_py():
    if os.environ.get("MAILACCESS_NO_EXTENSIONS"):
        assert _speedups.IMPLEMENTATION["wbxml"] == "py"


def _decode(mod, data: bytes, limits=wbxml.DEFAULT_LIMITS):
    """wbxml.decode with the loop of MOD: the tree or the error's fields."""
    saved = wbxml._impl
    wbxml._impl = mod
    try:
        return wbxml.decode(data, limits)
    except WbxmlError as e:
        return ("error", e.reason, e.detail, e.offset)
    finally:
        wbxml._impl = saved


def _encode(mod, tree, max_depth: int = 256):
    try:
        return mod.encode_tree(tree, HEADER, wbxml._TOKEN_MAPS, Element, WbxmlError, max_depth)
    except WbxmlError as e:
        return ("error", e.reason, e.detail, e.offset)


def same_decode(data: bytes, limits=wbxml.DEFAULT_LIMITS):
    a = _decode(PY, data, limits)
    if C is not None:
        assert _decode(C, data, limits) == a
    return a


# ---- trees on every code page -----------------------------------------------------------------

ALL_TAGS = [(p, n) for p, tags in codepages.TAGS.items() for n in tags.values()]
SHORT_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                     max_size=40)
TEXT = SHORT_TEXT | st.builds(lambda s, k: s * k, SHORT_TEXT.filter(bool), st.integers(50, 500))
BLOB = st.binary(max_size=40) | st.builds(lambda b, n: (b * n)[:n], st.binary(min_size=1, max_size=8),
                                          st.integers(120, 20_000))


def trees():
    leaf = st.builds(lambda pt, kind, text, blob: Element(
        pt[0], pt[1], [], text if kind == 1 else None, blob if kind == 2 else None),
        st.sampled_from(ALL_TAGS), st.integers(0, 2), TEXT, BLOB)
    return st.recursive(leaf, lambda kids: st.builds(
        lambda pt, cs: Element(pt[0], pt[1], cs), st.sampled_from(ALL_TAGS),
        st.lists(kids, min_size=1, max_size=6)), max_leaves=40)


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_twins_encode_and_decode_alike(tree):
    wire = _encode(PY, tree)
    assert _encode(C, tree) == wire
    assert same_decode(wire) == tree
    for depth in (1, 3):
        assert _encode(C, tree, depth) == _encode(PY, tree, depth)


@needs_c
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.data())
def test_twins_agree_on_damaged_and_cut_encodings(tree, data):
    wire = bytearray(_encode(PY, tree))
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    same_decode(bytes(wire))
    same_decode(bytes(wire[:cut]))
    small = wbxml.Limits(max_depth=data.draw(st.integers(1, 6)),
                         max_elements=data.draw(st.integers(1, 30)),
                         max_string=data.draw(st.integers(0, 50)),
                         max_opaque=data.draw(st.integers(0, 50)))
    same_decode(bytes(wire), small)


@needs_c
@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_twins_agree_on_arbitrary_bytes(data):
    same_decode(data)
    same_decode(HEADER + data)
    same_decode(H("03 01 6A 04") + b"ab\x00c" + data)     # with a string table


@needs_c
@pytest.mark.parametrize("wire", [
    "03 01 6A 00 45 03 61 62",                  # truncated inline string
    "03 01 6A 00 45 03",                        # STR_I at the very end
    "03 01 6A 00 45 03 FF 00 01",               # bad UTF-8
    "03 01 6A 00 45 C3 9F FF FF FF 7F",         # 2**32 and over
    "03 01 6A 00 45 C3 8F FF FF FF 7F 01",      # 4 GiB announced
    "03 01 6A 00 45 83 00 01",                  # STR_T without a table
    "03 01 6A 03 61 62 63 45 83 01 01",         # STR_T: no NUL after the offset
    "03 01 6A 04 61 62 00 63 45 83 01 02 81 69 83 03 01",   # STR_T, ENTITY, unterminated
    "03 01 6A 00 45 02 90 80 80 00 01",         # entity over U+10FFFF
    "03 01 6A 00 00 1A 45 01",                  # page 26
    "03 01 6A 00 00 19 7F 01",                  # page 25, token 0x3F
])
def test_twins_agree_on_edge_vectors(wire):
    r = same_decode(H(wire))
    assert isinstance(r, tuple)
    assert _decode(PY, H(wire)) == r


@needs_c
def test_twins_agree_on_the_encoders_refusals():
    bad = [
        Element(0, "NoSuchTag"), Element(26, "Sync"), Element(-1, "Sync"), Element("0", "Sync"),
        Element(0, "Sync", [Element(0, "Status")], text="1"),
        Element(0, "Status", text="a\x00b"), Element(0, "Status", text="\ud800"),
        Element(0, "Status", opaque="text"), Element(0, "Status", text=b"bytes"),
        Element(0, "Sync", ["child"]), Element(0, "Sync", ("tuple",)), "not an element",
        Element(0, "Status", text="x", opaque=b"y"),
        Element(0, "Sync", [Element(0, "Sync", [Element(0, "Sync", [Element(0, "Status")])])]),
    ]
    for tree in bad:
        r = _encode(PY, tree, 2)
        assert r[0] == "error", tree
        assert _encode(C, tree, 2) == r
    ok = Element(0, "Status", opaque=bytearray(b"\x00" * 200))
    assert _encode(C, ok) == _encode(PY, ok)
    assert _encode(PY, ok)[-204:] == H("C3 81 48") + b"\x00" * 200 + H("01")


@needs_c
@given(st.integers(-5, 2**36))
def test_twins_mb_u_int32(n):
    def run(mod, fn):
        try:
            return fn(mod)
        except WbxmlError as e:
            return ("error", e.reason, e.detail, e.offset)
    wire = run(PY, lambda m: m.mb_u_int32(n, WbxmlError))
    assert run(C, lambda m: m.mb_u_int32(n, WbxmlError)) == wire
    if isinstance(wire, bytes):
        for cut in range(len(wire) + 1):
            data = wire[:cut]
            assert (run(C, lambda m: m.read_mb(data, 0, len(data), WbxmlError))
                    == run(PY, lambda m: m.read_mb(data, 0, len(data), WbxmlError)))
    long = bytes([0x80 | (n & 0x7F)] * 5) + b"\x01"
    assert (run(C, lambda m: m.read_mb(long, 0, len(long), WbxmlError))
            == run(PY, lambda m: m.read_mb(long, 0, len(long), WbxmlError)))


class Plain:
    """An element class without slots: the compiled twin calls it as the
    pure one does (its field-by-field fast path is for wbxml.Element)."""

    def __init__(self, page, tag):
        self.page, self.tag, self.children, self.text, self.opaque = page, tag, [], None, None

    qname = property(lambda self: f"{self.page}:{self.tag}")

    def __eq__(self, other):
        return vars(self) == vars(other)


@needs_c
def test_twins_with_another_element_class():
    wire = wbxml.encode(E("AirSync:Sync", E("AirSync:Status", text="1"),
                          E("AirSyncBase:Data", opaque=b"\x00\x01")))
    args = (wire, 4, b"", wbxml._TAG_ROWS, Plain, WbxmlError, 10, 10, 10, 10)
    a, b = PY.decode_body(*args), C.decode_body(*args)
    assert type(b) is Plain and a == b and b.children[1].opaque == b"\x00\x01"
