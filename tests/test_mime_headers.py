"""mime/headers.py: the RFC 8621 §4.1.2 parsed forms, property names and
their per-field restrictions; hypothesis round trips through what a mail
writer (the standard library's email package) produces."""
from __future__ import annotations

import datetime
import unicodedata
from email.header import Header
from email.utils import format_datetime, formataddr

import pytest
from hypothesis import assume, example, given, settings, strategies as st

from mailaccess.mime import headers as mh

# --- property names ------------------------------------------------------------------


def test_parse_property():
    hp = mh.parse_property("header:From:asAddresses:all")
    assert (hp.name, hp.form, hp.all) == ("From", "Addresses", True)
    hp = mh.parse_property("header:x-thing")
    assert (hp.name, hp.form, hp.all) == ("x-thing", "Raw", False)
    assert mh.parse_property("header:X:all").all
    for bad in ("header:", "header:X:all:asRaw", "header:X:asraw", "header:X:asNope",
                "header:X:asRaw:all:x", "header:X Y", "header:X:", "from", "header:\u00e9",
                "header:Date:asAddresses", "header:Subject:asDate", "header:Received:asText"):
        assert mh.parse_property(bad) is None, bad


@pytest.mark.parametrize("form,allowed,refused", [
    ("Text", ["Subject", "comments", "Keywords", "List-Id", "X-Any"], ["From", "Date", "Received",
                                                                       "List-Post", "Message-ID"]),
    ("Addresses", ["From", "sender", "Reply-To", "To", "Cc", "Bcc", "Resent-From",
                   "Resent-Sender", "Resent-Reply-To", "Resent-To", "Resent-Cc", "Resent-Bcc",
                   "X-Any"], ["Subject", "Date", "Message-ID", "List-Help", "Return-Path"]),
    ("GroupedAddresses", ["To", "X-Any"], ["Subject", "Keywords"]),
    ("MessageIds", ["Message-ID", "In-Reply-To", "References", "Resent-Message-ID", "X-Any"],
     ["From", "Subject", "Date"]),
    ("Date", ["Date", "Resent-Date", "X-Any"], ["From", "Subject", "Received"]),
    ("URLs", ["List-Help", "List-Unsubscribe", "List-Subscribe", "List-Post", "List-Owner",
              "List-Archive", "X-Any"], ["From", "Subject", "Date"]),
    ("Raw", ["From", "Received", "Date", "X-Any", "List-Post"], []),
])
def test_form_allowed(form, allowed, refused):
    for name in allowed:
        assert mh.form_allowed(name, form), (name, form)
    for name in refused:
        assert not mh.form_allowed(name, form), (name, form)


def test_header_property_last_and_all():
    hdrs = [{"name": "X-A", "value": " one"}, {"name": "x-a", "value": " two"},
            {"name": "Other", "value": " x"}]
    assert mh.header_property(hdrs, mh.parse_property("header:X-A")) == " two"
    assert mh.header_property(hdrs, mh.parse_property("header:x-A:asText:all")) == ["one", "two"]
    assert mh.header_property(hdrs, mh.parse_property("header:Nope")) is None
    assert mh.header_property(hdrs, mh.parse_property("header:Nope:all")) == []


# --- the forms on fixed cases ----------------------------------------------------------

def test_raw_drops_nul_only():
    assert mh.as_raw(" a\r\n b\0c") == " a\r\n bc"


def test_text():
    assert mh.as_text(" =?UTF-8?Q?caf=C3=A9?=\r\n   rest ") == "café   rest"
    # decomposed input comes out NFC; control characters an encoded word carries go
    assert mh.as_text(" =?UTF-8?Q?e=CC=81?=") == "\u00e9"
    assert mh.as_text(" =?UTF-8?Q?a=00b=07c?=") == "abc"
    assert mh.as_text(" =?x-bogus?Q?kept?=") == "=?x-bogus?Q?kept?="


def test_addresses_rfc_example():
    v = (' " James Smythe" <james@example.com>, Friends: jane@example.com, '
         '=?UTF-8?Q?John_Sm=C3=AEth?= <john@example.com>;')
    assert mh.as_addresses(v) == [
        {"name": "James Smythe", "email": "james@example.com"},
        {"name": None, "email": "jane@example.com"},
        {"name": "John Smîth", "email": "john@example.com"}]
    assert mh.as_grouped_addresses(v) == [
        {"name": None, "addresses": [{"name": "James Smythe", "email": "james@example.com"}]},
        {"name": "Friends", "addresses": [
            {"name": None, "email": "jane@example.com"},
            {"name": "John Smîth", "email": "john@example.com"}]}]


def test_grouped_runs_after_a_group():
    v = " a@x, G: b@x;, c@x, d@x, H:;"
    assert mh.as_grouped_addresses(v) == [
        {"name": None, "addresses": [{"name": None, "email": "a@x"}]},
        {"name": "G", "addresses": [{"name": None, "email": "b@x"}]},
        {"name": None, "addresses": [{"name": None, "email": "c@x"}, {"name": None, "email": "d@x"}]},
        {"name": "H", "addresses": []}]


def test_comment_as_name():
    assert mh.as_addresses(" pete@silly.test (Pete Smith)") == [
        {"name": "Pete Smith", "email": "pete@silly.test"}]


def test_message_ids():
    assert mh.as_message_ids(" <a@b>\r\n (comment <no@no>) <c@d>") == ["a@b", "c@d"]
    assert mh.as_message_ids(" <a @ b>") == ["a@b"]
    assert mh.as_message_ids("   ") is None
    assert mh.as_message_ids(" garbage") is None


def test_dates():
    assert mh.as_date(" Thu, 13 Feb 1969 23:32:54 -0330") == "1969-02-13T23:32:54-03:30"
    assert mh.as_date(" 21 Nov 97 09:55:06 GMT") == "1997-11-21T09:55:06Z"
    assert mh.as_date(" Fri, 21 Nov 1997 09:55:06 -0600 (CST)") == "1997-11-21T09:55:06-06:00"
    assert mh.as_date(" not a date") is None
    assert mh.as_date(" Fri, 21 Nov 99999 09:55:06 -0600") is None


def test_urls():
    v = " <mailto:list@host.com?subject=help> (List Instructions),\r\n <https://x.test/help>"
    assert mh.as_urls(v) == ["mailto:list@host.com?subject=help", "https://x.test/help"]
    assert mh.as_urls(" no urls") is None


# --- hypothesis: round trips and robustness --------------------------------------------

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                              blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                min_size=1, max_size=30).map(lambda s: " ".join(s.split())).filter(bool)
atoms = st.text("abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
emails = st.builds(lambda l, d: f"{l}@{d}.test", atoms, atoms)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | names, emails), min_size=1, max_size=6))
@example([("Smith, John", "j@x.test"), ('Quote " this', "q@x.test")])
def test_addresses_round_trip(items):
    """What the email package writes (quoted, encoded words) we read back."""
    parts = []
    for name, email in items:
        if name is None:
            parts.append(email)
        else:
            parts.append(formataddr((name, email), charset="utf-8"))
    value = " " + ", ".join(parts)
    got = mh.as_addresses(value)
    want = [{"name": (unicodedata.normalize("NFC", n).strip() or None) if n is not None else None,
             "email": e} for n, e in items]
    assert got == want
    grouped = mh.as_grouped_addresses(value)
    assert len(grouped) == 1 and grouped[0]["name"] is None and grouped[0]["addresses"] == want


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80))
def test_text_round_trip(s):
    assume(s.strip() == s and "  " not in s)
    encoded = Header(s, "utf-8").encode()
    assert mh.as_text(" " + encoded) == unicodedata.normalize("NFC", s)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(1900, 1, 1),
                    max_value=datetime.datetime(9998, 12, 31)),
       st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_date_round_trip(dt, offset):
    dt = dt.replace(microsecond=0, tzinfo=datetime.timezone(datetime.timedelta(minutes=offset)))
    got = mh.as_date(" " + format_datetime(dt))
    assert got is not None
    back = datetime.datetime.fromisoformat(got.replace("Z", "+00:00"))
    assert back == dt and back.utcoffset() == dt.utcoffset()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(lambda a, b: f"{a}@{b}", atoms, atoms), min_size=1, max_size=8))
def test_message_ids_round_trip(idlist):
    value = " " + "\r\n ".join(f"<{i}>" for i in idlist)
    assert mh.as_message_ids(value) == idlist


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_every_form_answers_anything(value):
    """Any value (in any form) gives a value of the form's type, never an error."""
    for form in mh.FORMS:
        got = mh.apply_form(value, form)
        if form in ("Raw", "Text"):
            assert isinstance(got, str)
        elif form in ("Addresses", "GroupedAddresses"):
            assert isinstance(got, list)
        elif form == "Date":
            assert got is None or isinstance(got, str)
        else:
            assert got is None or (isinstance(got, list) and all(isinstance(x, str) for x in got))


def test_structured_parse_is_bounded():
    value = " " + ", ".join(f"u{i}@example.com" for i in range(100000))
    got = mh.as_addresses(value)
    assert 0 < len(got) < 100000
    assert sum(len(a["email"]) + 2 for a in got) <= mh.MAX_VALUE + 2


def _phrase(name: str) -> str:
    """NAME as an RFC 5322 phrase: encoded words when not ASCII, else quoted."""
    if not name.isascii():
        return Header(name, "utf-8").encode()
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.none() | names,
                          st.lists(st.tuples(st.none() | names, emails), max_size=4)),
                min_size=1, max_size=4))
def test_grouped_addresses_round_trip(groups):
    """Groups and runs of ungrouped mailboxes come back as written."""
    pieces, want = [], []
    for gname, members in groups:
        addrs = [formataddr((n, e), charset="utf-8") if n is not None else e for n, e in members]
        expect = [{"name": (unicodedata.normalize("NFC", n).strip() or None) if n else None,
                   "email": e} for n, e in members]
        if gname is None:
            if not members:
                continue
            pieces.append(", ".join(addrs))
            if want and want[-1]["name"] is None:       # consecutive runs merge
                want[-1]["addresses"].extend(expect)
            else:
                want.append({"name": None, "addresses": expect})
        else:
            pieces.append(f"{_phrase(gname)}: {', '.join(addrs)};")
            want.append({"name": unicodedata.normalize("NFC", gname).strip() or None,
                         "addresses": expect})
    value = " " + ", ".join(pieces)
    assert mh.as_grouped_addresses(value) == want
    assert mh.as_addresses(value) == [a for g in want for a in g["addresses"]]
