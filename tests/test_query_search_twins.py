"""search_py and search_c give identical results (hypothesis)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess import _speedups

PY = _speedups.load_py("search")
C = _speedups.load_c("search")
needs_c = pytest.mark.skipif(C is None, reason="search_c is not built")

# a small alphabet makes hits likely; include multi-byte UTF-8 and newlines
ALPHA = "ab :\né€"
text = st.text(ALPHA, max_size=40).map(lambda s: s.encode("utf-8"))
needle = st.text(ALPHA.replace("\n", ""), max_size=4).map(lambda s: s.encode("utf-8"))
name = st.sampled_from([b"a", b"ab", b"b", b"from"])


@needs_c
@settings(max_examples=400, deadline=None)
@given(st.lists(text, max_size=12), needle)
def test_find_all_equivalent(texts, n):
    expect = [i for i, t in enumerate(texts) if n in t]
    assert PY.find_all(texts, n) == expect
    assert C.find_all(texts, n) == expect
    views = [memoryview(b"xx" + t + b"yy")[2:2 + len(t)] for t in texts]
    assert C.find_all(views, n) == expect
    assert PY.find_all(views, n) == expect


@needs_c
@settings(max_examples=400, deadline=None)
@given(st.lists(text, max_size=12), name, needle)
def test_find_header_equivalent(texts, nm, n):
    py = PY.find_header(texts, nm, n)
    assert C.find_header(texts, nm, n) == py
    assert C.find_header([memoryview(t) for t in texts], nm, n) == py


@pytest.mark.parametrize("impl", [PY] + ([C] if C else []), ids=lambda m: m.__name__[-2:])
def test_find_header_cases(impl):
    hs = [b"from: bob <b@x>\nsubject: hi", b"subject: from: bob", b"x-from: bob", b"from:",
          b""]
    assert impl.find_header(hs, b"from", b"bob") == [0]
    assert impl.find_header(hs, b"from", b"") == [0, 3]
    assert impl.find_header(hs, b"subject", b"from") == [1]
    assert impl.find_header(hs, b"subject", b"bob <") == []
    assert impl.find_all(hs, b"") == [0, 1, 2, 3, 4]
    assert impl.find_all(hs, b"bob") == [0, 1, 2]


@pytest.mark.parametrize("impl", [PY] + ([C] if C else []), ids=lambda m: m.__name__[-2:])
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**63 - 1) | st.sampled_from([0, 9, 10, 2**63, -1, True]),
                max_size=30))
def test_number_list_is_the_joined_decimals(impl, nums):
    """The numbers of a SEARCH answer: C writes ints 0 <= n < 2**63 itself,
    anything else as Python formats it."""
    assert impl.number_list(nums) == b" ".join(b"%d" % n for n in nums)
    assert impl.number_list(iter(nums)) == b" ".join(b"%d" % n for n in nums)
