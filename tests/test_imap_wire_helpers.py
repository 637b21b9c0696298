"""numset, modutf7 and date helpers: tables and hypothesis round trips."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailaccess.proto.imap import modutf7
from mailaccess.proto.imap.dates import format_datetime, parse_date, parse_datetime
from mailaccess.proto.imap.errors import ParseError
from mailaccess.proto.imap.numset import STAR, NumSet, format_ints

# ------------------------------------------------------------------ numset


def test_numset_parse_and_format():
    ns = NumSet.parse(b"1:3,5,7:*,*:9,$")
    assert ns.ranges == ((1, 3), (5, 5), (7, STAR), (STAR, 9)) and ns.saved
    assert str(ns) == "1:3,5,7:*,*:9,$"
    assert ns.normalized(10, saved=[4]) == [(1, 5), (7, 10)]
    assert ns.normalized(6, saved=[]) == [(1, 3), (5, 9)]
    assert list(NumSet.parse("5:3").iter(10)) == [3, 4, 5]
    assert NumSet.parse("5:*").normalized(3) == [(3, 5)]  # * below the start
    assert NumSet.parse("4,2,3").count(10) == 3
    assert NumSet.parse("1:*").contains(7, 7) and not NumSet.parse("1:5").contains(6, 9)
    with pytest.raises(ValueError):
        NumSet.parse("$").normalized(5)


@pytest.mark.parametrize("bad", ["", "0", "1:0", "01", "1,", ",1", "a", "1:2:3", "4294967296", "1 2", "-1"])
def test_numset_rejects(bad):
    with pytest.raises(ParseError):
        NumSet.parse(bad)


def test_numset_limits():
    with pytest.raises(ParseError) as info:
        NumSet.parse(",".join(["1"] * 11), max_ranges=10)
    assert info.value.code == "LIMIT"
    with pytest.raises(ParseError):
        NumSet.parse("$", allow_saved=False)


def test_format_ints():
    assert format_ints([9, 1, 2, 3, 7]) == b"1:3,7,9"
    assert format_ints([5, 6, 1, 2], sort=False) == b"5:6,1:2"
    assert NumSet.from_ints([]).to_bytes() == b""


_ranges = st.lists(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
        lambda t: (t[0] or STAR, t[1] or STAR)
    ),
    min_size=1,
    max_size=20,
)


@given(_ranges, st.booleans())
def test_numset_round_trip(ranges, saved):
    ns = NumSet(tuple(ranges), saved)
    assert NumSet.parse(str(ns)) == ns


@given(st.sets(st.integers(1, 500)), st.integers(0, 600))
def test_numset_semantics(nums, largest):
    ns = NumSet.from_ints(nums)
    assert set(ns.iter(largest)) == nums
    for n in range(0, 505, 7):
        assert ns.contains(n, largest) == (n in nums)
    resolved = ns.resolve(largest)
    assert set(resolved.iter(0)) == nums


@given(_ranges, st.integers(1, 1000))
def test_numset_normalized_is_sorted_disjoint(ranges, largest):
    spans = NumSet(tuple((min(a, 2000), min(b, 2000)) for a, b in ranges)).normalized(largest)
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert a <= b < c - 1 < d


# ----------------------------------------------------------------- modutf7

VECTORS = [
    ("INBOX", b"INBOX"),
    ("a&b", b"a&-b"),
    ("&", b"&-"),
    ("~peter/mail/\u53f0\u5317/\u65e5\u672c\u8a9e", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Entw\u00fcrfe", b"Entw&APw-rfe"),
    ("\u00e9t\u00e9", b"&AOk-t&AOk-"),
    ("\U0001f600", b"&2D3eAA-"),
    ("", b""),
]


@pytest.mark.parametrize("text,wire", VECTORS)
def test_modutf7_vectors(text, wire):
    assert modutf7.encode(text) == wire
    assert modutf7.decode(wire) == text


@pytest.mark.parametrize(
    "wire",
    [b"&", b"&U,BTFw", b"&AGE-", b"&AOk-&AOk-", b"&ZeVnLIqe", b"\xc3\xa4", b"a\tb", b"&2D0-", b"&AOl-", b"&A-", b"&!!-", b"&AOk=-"],
)
def test_modutf7_strict(wire):
    with pytest.raises(ParseError):
        modutf7.decode(wire)


@given(st.text())
def test_modutf7_round_trip(text):
    wire = modutf7.encode(text)
    assert all(0x20 <= c <= 0x7E for c in wire)
    assert modutf7.decode(wire) == text
    assert modutf7.encode(modutf7.decode(wire)) == wire


@given(st.binary(max_size=30) | st.text(alphabet="&-AOkZeVnLIq,+/a", max_size=20).map(str.encode))
def test_modutf7_decode_never_crashes(data):
    try:
        text = modutf7.decode(data)
    except ParseError:
        return
    assert modutf7.encode(text) == data  # accepted input is canonical


# ------------------------------------------------------------------- dates


def test_dates():
    assert parse_date(b"1-Feb-1994") == dt.date(1994, 2, 1)
    assert parse_date(b"01-feb-1994") == dt.date(1994, 2, 1)
    d = parse_datetime(b"17-Jul-1996 02:44:25 -0700")
    assert d == dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7)))
    assert parse_datetime(b" 7-Jul-1996 02:44:25 +0000").day == 7
    assert format_datetime(d) == b'"17-Jul-1996 02:44:25 -0700"'
    assert format_datetime(dt.datetime(2024, 3, 5, 1, 2, 3)) == b'" 5-Mar-2024 01:02:03 +0000"'
    for bad in (b"17-Jul-96 02:44:25 -0700", b"17-Jul-1996 02:44:25", b"31-Feb-2000 00:00:00 +0000", b"1-Jul-1996 02:44:25 +0000"):
        with pytest.raises(ParseError):
            parse_datetime(bad)


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(9999, 1, 1)),
       st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_datetime_round_trip(when, offset_min):
    aware = when.replace(microsecond=0, tzinfo=dt.timezone(dt.timedelta(minutes=offset_min)))
    assert parse_datetime(format_datetime(aware)[1:-1]) == aware


# ------------------------------------------- modutf7 for Maildir++ folder names
# The importer and exporter used their own copy; these are that copy's
# results, kept as the reference the shared functions must still give.

def _ref_encode(name: str, force: str = "") -> str:
    import base64

    out, run = [], []

    def flush():
        if run:
            b = "".join(run).encode("utf-16-be", "surrogatepass")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E and ch not in force:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _ref_decode(name: str) -> str:
    import base64

    if "&" not in name:
        return name
    out, i, n = [], 0, len(name)
    while i < n:
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        j = name.find("-", i + 1)
        if j < 0:
            out.append(name[i:])
            break
        if j == i + 1:
            out.append("&")
        else:
            chunk = name[i + 1:j].replace(",", "/")
            try:
                b = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
                out.append(b.decode("utf-16-be", "surrogatepass"))
            except (ValueError, UnicodeDecodeError):
                out.append(name[i:j + 1])
        i = j + 1
    return "".join(out)


@given(st.text(max_size=30), st.sampled_from(["", "./", "/"]))
def test_modutf7_force_matches_maildir_names(text, force):
    assert modutf7.encode(text, force).decode("ascii") == _ref_encode(text, force)
    if not force:
        assert modutf7.encode(text) == modutf7.encode(text, "")


@given(st.one_of(st.text(alphabet="&-,+/AZaz09Bé.\x00", max_size=30), st.text(max_size=30)))
def test_modutf7_lenient_decode_matches_maildir_names(text):
    assert modutf7.decode(text, strict=False) == _ref_decode(text)
    assert modutf7.decode(modutf7.encode(text, "./"), strict=False) == text
