"""The sans-IO ActiveSync request parser (proto/eas/request.py): both query
forms, headers, bounds.  Hypothesis: base64 round trips, every strict prefix
of an encoded query refused, arbitrary input gives an EasRequest or
BadRequest and nothing else."""
import base64
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaccess.proto.eas import request as R

H = [("ms-asprotocolversion", "14.1")]


def test_plain_form():
    q = "Cmd=FolderSync&User=alice%40example.org&DeviceId=ABC123&DeviceType=iPhone"
    r = R.parse(q, H + [("x-ms-policykey", "3942919513")])
    assert (r.cmd, r.user, r.device_id, r.device_type) == (
        "FolderSync", "alice@example.org", "ABC123", "iPhone")
    assert r.version == "14.1" and r.policy_key == 3942919513 and not r.encoded


def test_plain_form_keys_and_command_are_case_insensitive_and_params_kept():
    r = R.parse("cmd=sync&user=a&deviceid=d&devicetype=t&CollectionId=M3&SaveInSent=T", H)
    assert r.cmd == "Sync" and r.params == {"CollectionId": "M3"} and r.save_in_sent


@pytest.mark.parametrize("q, why", [
    ("", "empty"),
    ("Cmd=Nope&User=a&DeviceId=d&DeviceType=t", "Cmd"),
    ("Cmd=Sync&DeviceId=d&DeviceType=t", "User"),
    ("Cmd=Sync&User=a&DeviceType=t", "DeviceId"),
    ("Cmd=Sync&User=a&DeviceId=d", "DeviceType"),
    ("Cmd=Sync&User=a&DeviceId=d%2Cx&DeviceType=t", "DeviceId"),
    ("Cmd=Sync&Cmd=Ping&User=a&DeviceId=d&DeviceType=t", "twice"),
    ("Cmd=Sync&User=a%00b&DeviceId=d&DeviceType=t", "User"),
    ("Cmd=Sync&User=a&DeviceId=" + "d" * 129 + "&DeviceType=t", "DeviceId"),
    ("Cmd=Sync&User=a&DeviceId=d&DeviceType=t&x=" + "y" * 3000, "long"),
])
def test_plain_form_refusals(q, why):
    with pytest.raises(R.BadRequest, match=why):
        R.parse(q, H)


@pytest.mark.parametrize("key", ["x", "-1", "4294967296", "1" * 11])
def test_policy_key_bounds(key):
    with pytest.raises(R.BadRequest, match="PolicyKey"):
        R.parse("Cmd=Sync&User=a&DeviceId=d&DeviceType=t", H + [("x-ms-policykey", key)])


def test_doubled_version_header_is_refused():
    with pytest.raises(R.BadRequest, match="more than one"):
        R.parse("Cmd=Sync&User=a&DeviceId=d&DeviceType=t", H + H)


def test_check_version():
    adv = ("12.1", "14.1")
    assert R.check_version("14.1", adv) == "14.1"
    for v in (None, "14.0", "16.1", "2.5", "14.1 ", "x"):
        with pytest.raises(R.BadRequest):
            R.check_version(v, adv)


def test_base64_form_known_bytes():
    # MS-ASHTTP 2.2.1.1.1.1: 14.1, Sync (0), locale 0x0409, a 4-byte device id,
    # a policy key, device type "SP", CollectionId "M5", Options SaveInSent, User "bob"
    raw = bytes([141, 0, 0x09, 0x04, 4, 0xDE, 0xAD, 0xBE, 0xEF, 4, 1, 0, 0, 0, 2]) + b"SP" \
        + bytes([1, 2]) + b"M5" + bytes([7, 1, 1, 8, 3]) + b"bob"
    r = R.parse(urllib.parse.quote(base64.b64encode(raw).decode()), [])
    assert (r.cmd, r.version, r.locale, r.device_id, r.policy_key, r.device_type) == (
        "Sync", "14.1", 0x0409, "deadbeef", 1, "SP")
    assert r.params == {"CollectionId": "M5"} and r.user == "bob"
    assert r.save_in_sent and not r.accept_multipart and r.encoded


@pytest.mark.parametrize("raw, why", [
    (bytes([141, 200, 0, 0]), "command code"),
    (bytes([141, 0, 0, 0, 0, 0, 1]) + b"T", "DeviceId"),
    (bytes([141, 0, 0, 0, 1, 7, 3, 1, 2, 3]), "policy key"),
    (bytes([141, 0, 0, 0, 1, 7, 0, 1]) + b"T" + bytes([9, 1]) + b"x", "tag"),
    (bytes([141, 0, 0, 0, 1, 7, 0, 1]) + b"T" + bytes([8, 5]) + b"ab", "truncated"),
    (bytes([141, 0, 0, 0, 1, 7, 0, 1]) + b"T" + bytes([7, 2, 1, 1, 8, 1]) + b"a", "Options"),
    (bytes([141, 0, 0, 0, 1, 7, 0, 1]) + b"T" + bytes([8, 0]), "User"),
    (bytes([141, 0, 0, 0, 1, 7, 0, 1]) + b"T" + bytes([1, 1]) + b"a" + bytes([1, 1]) + b"b",
     "twice"),
])
def test_base64_form_refusals(raw, why):
    with pytest.raises(R.BadRequest, match=why):
        R.decode_binary(raw)


def test_base64_form_the_specification_example():
    # MS-ASHTTP 2.2.1.1.1.1: a string device id, no policy key, no parameters
    r = R.parse("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l", [])
    assert (r.version, r.cmd, r.locale, r.device_id, r.policy_key, r.device_type, r.user) == (
        "14.0", "Sync", 0x0409, "v140Device", None, "SmartPhone", "")


def test_base64_device_id_string_or_hex():
    assert R.device_id_of(b"Appl123") == "Appl123"
    assert R.device_id_of(bytes.fromhex("deadbeef")) == "deadbeef"
    assert R.device_id_of(b"a,b") == "612c62"


def test_not_base64_is_refused():
    with pytest.raises(R.BadRequest, match="base64"):
        R.parse("!!!", [])


_ident = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
                 min_size=1, max_size=30)
requests = st.builds(
    R.EasRequest,
    cmd=st.sampled_from(sorted(R.COMMANDS)),
    user=st.text(st.characters(min_codepoint=0x20, blacklist_characters="\x7f",
                               blacklist_categories=("Cs",)), max_size=40),
    device_id=st.binary(min_size=1, max_size=16).map(R.device_id_of),
    device_type=_ident,
    version=st.sampled_from(R.VERSIONS),
    policy_key=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    locale=st.integers(0, 0xFFFF),
    params=st.dictionaries(st.sampled_from(["AttachmentName", "CollectionId", "ItemId",
                                            "LongId", "ParentId", "Occurrence"]),
                           st.text(max_size=40).filter(lambda s: len(s.encode()) < 256),
                           max_size=4),
    accept_multipart=st.booleans(),
    save_in_sent=st.booleans(),
    encoded=st.just(True),
)


@given(requests)
@settings(max_examples=300, deadline=None)
def test_base64_round_trip(req):
    raw = R.encode_binary(req)
    q = urllib.parse.quote(base64.b64encode(raw).decode(), safe="")
    assert R.parse(q, []) == req


@given(requests, st.data())
@settings(max_examples=300, deadline=None)
def test_a_prefix_is_refused_unless_it_ends_between_parameters(req, data):
    """A cut inside the fixed fields or inside a parameter is refused; a cut
    between parameters is a shorter, complete request (whose encoding is
    exactly that prefix)."""
    raw = R.encode_binary(req)
    cut = data.draw(st.integers(0, len(raw) - 1))
    try:
        got = R.decode_binary(raw[:cut])
    except R.BadRequest:
        return
    assert R.encode_binary(got) == raw[:cut]
    assert set(got.params.items()) <= set(req.params.items())


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_parse_or_bad_request(raw):
    try:
        r = R.decode_binary(raw)
    except R.BadRequest:
        return
    assert r.cmd in R.COMMANDS and r.device_id


@given(st.text(max_size=300), st.lists(st.tuples(st.sampled_from(
    ["ms-asprotocolversion", "x-ms-policykey", "ms-asacceptmultipart"]), st.text(max_size=20)),
    max_size=3))
@settings(max_examples=500, deadline=None)
def test_arbitrary_query_parse_or_bad_request(q, headers):
    try:
        R.parse(q, headers)
    except R.BadRequest:
        pass
