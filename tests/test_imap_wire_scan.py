"""imapscan twins: unit cases on each, hypothesis equivalence between them."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess import _speedups
from conftest import twin_params

PY = _speedups.load_py("imapscan")
C = _speedups.load_c("imapscan")


@pytest.fixture(params=twin_params("imapscan"))
def scan(request):
    return request.param


@pytest.mark.parametrize(
    "buf,pos,q,expected",
    [
        (b"a1 NOOP\r\n", 0, 0, (8, 0)),
        (b"a1 NOOP", 0, 0, (-1, 0)),
        (b'a1 "x\r\n', 0, 0, (6, 1)),
        (b'a1 "x\\', 0, 0, (-1, 2)),
        (b'"\r\n', 1, 2, (2, 1)),  # escaped CR keeps the quote open
        (b'a" b\n', 0, 1, (4, 0)),
        (b'"\\"" x\n', 0, 0, (6, 0)),
        (b"abc\ndef\n", 4, 0, (7, 0)),
        (b"", 0, 0, (-1, 0)),
    ],
)
def test_scan_line(scan, buf, pos, q, expected):
    assert scan.scan_line(buf, pos, len(buf), q) == expected
    assert scan.scan_line(bytearray(buf), pos, len(buf), q) == expected


@pytest.mark.parametrize(
    "line,expected",
    [
        (b"a1 LOGIN {3}", (1, 3, 9)),
        (b"a1 LOGIN {3+}", (3, 3, 9)),
        (b"a1 APPEND x ~{12}", (5, 12, 12)),
        (b"a1 APPEND x ~{12+}", (7, 12, 12)),
        (b"{0}", (1, 0, 0)),
        (b"a1 X {}", (-1, 0, 5)),
        (b"a1 X {+}", (-1, 0, 5)),
        (b"a1 X foo}", (0, 0, 9)),
        (b"a1 X {1a}", (0, 0, 9)),
        (b"}", (0, 0, 1)),
        (b"a1 X {99999999999999999999999999}", (1, 1 << 62, 5)),
        (b"a1 X {0000000000000000000000000007}", (1, 7, 5)),
        (b"", (0, 0, 0)),
    ],
)
def test_literal_header(scan, line, expected):
    assert scan.literal_header(line, 0, len(line)) == expected


_bytes = st.lists(
    st.sampled_from([b"a", b" ", b'"', b"\\", b"\n", b"\r", b"{", b"}", b"+", b"~", b"0", b"7", b"\x00", b"\xff"]),
    max_size=50,
).map(b"".join) | st.binary(max_size=64)


@pytest.mark.skipif(C is None, reason="compiled twin not built")
@settings(max_examples=500)
@given(buf=_bytes, pos=st.integers(-2, 70), end=st.integers(-2, 70), q=st.sampled_from([0, 1, 2]))
def test_twins_agree(buf, pos, end, q):
    assert PY.scan_line(buf, pos, end, q) == C.scan_line(buf, pos, end, q)
    start = max(0, min(pos, len(buf)))
    assert PY.literal_header(buf, start, end) == C.literal_header(buf, start, end)


@settings(max_examples=300)
@given(buf=_bytes, cut=st.integers(0, 64))
def test_scan_is_resumable(buf, cut):
    """Scanning in two steps with the carried quote state equals one scan."""
    whole = PY.scan_line(buf, 0, len(buf), 0)
    cut = min(cut, len(buf))
    lf, q = PY.scan_line(buf, 0, cut, 0)
    if lf >= 0:
        assert (lf, q) == whole
    else:
        assert PY.scan_line(buf, cut, len(buf), q) == whole
