"""Sans-IO rules of outbound mail (mailaccess/outbound): sender addresses,
envelope derivation (RFC 8621 §7), Bcc removal, the retry schedule; and the
relay client against a port nobody listens on; the [smtp] config."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mailaccess import config
from mailaccess.outbound import addresses, envelope as env, retry
from mailaccess.server import outbound

from address_release import STRICT, other_release
from smtp_sink import free_port


def test_own_addresses_and_may_send_from():
    own = addresses.own_addresses("Alice", ("example.org", "Example.NET"))
    assert own == {"alice@example.org", "alice@example.net"}
    assert addresses.may_send_from("ALICE@example.org", own)
    assert addresses.may_send_from("alice+lists@example.net", own)
    assert not addresses.may_send_from("alicex@example.org", own)
    assert not addresses.may_send_from("+x@example.org", own)
    assert addresses.own_addresses("bob@ex.com", ("example.org",)) == {"bob@ex.com"}
    assert addresses.default_address("alice", ("example.org",)) == "alice@example.org"


@pytest.mark.parametrize("a,ok", [
    ("a@b", True), ("a.b+c@ex-ample.org", True), ('"a.b"@x.org', True), ('"a b"@x.org', False), ("a@[127.0.0.1]", True),
    ("", False), ("a", False), ("a b@x", False), ("a@", False), ("@x", False),
    ("a@x\r\nRCPT TO:<b@y>", False), ("a@-x.org", False), ("x" * 250 + "@y.org", False),
])
def test_valid_address(a, ok):
    assert addresses.valid_address(a) is ok


def h(raw: str):
    return env.header_addresses(raw.encode())


def test_derive_envelope():
    x = h("From: A <a@x.org>\r\nSender: s@x.org\r\nTo: b@y.org, B <b@Y.ORG>\r\n"
          "Cc: c@z.org\r\nBcc: b@y.org, d@w.org\r\n\r\nbody")
    assert env.derive_mail_from(x) == "s@x.org"
    assert env.derive_rcpt_to(x) == ["b@y.org", "c@z.org", "d@w.org"]
    assert env.derive_mail_from(h("From: a@x.org\r\n\r\n")) == "a@x.org"
    assert env.derive_mail_from(h("To: a@x.org\r\n\r\n")) is None
    with pytest.raises(env.EnvelopeError):
        env.derive_mail_from(h("From: a@x.org, b@x.org\r\n\r\n"))
    with pytest.raises(env.EnvelopeError):
        env.derive_mail_from(h("From: a@x.org\r\nFrom: b@x.org\r\n\r\n"))


@pytest.mark.parametrize("other", [False, True], ids=["this-python", "other-release"])
def test_a_field_the_parser_cannot_read_is_an_invalid_recipient(monkeypatch, other):
    """Whichever way this Python's parser answers a malformed field (its
    fragments, or nothing at all), the field yields a recipient that fails
    the address check: the sender is told "invalid recipient" (ActiveSync
    116, JMAP invalidRecipients), not "no recipient"."""
    if other:
        other_release(monkeypatch)
    for value in STRICT:
        to = h(f"To: {value}\r\n\r\n").to
        assert to and not all(addresses.valid_address(a) for a in to), (value, to)
    # fields that name nobody, on purpose or by being blank, stay empty
    for value in ("undisclosed-recipients:;", '"Undisclosed recipients": ;', "  "):
        assert h(f"To: {value}\r\nCc: c@z.org\r\n\r\n").to == [], value
    assert h("To: a@x.org, \r\n\r\n").to == ["a@x.org"]
    assert env.derive_rcpt_to(h("To: A <a@x.org>\r\nCc: team: b@y.org;\r\n\r\n")) == \
        ["a@x.org", "b@y.org"]
    # fields a release with the CVE-2023-27043 fix (3.13) answers with
    # ('', '') although they are good: a comma in a comment, a last comma
    assert h("To: j@x.org (Doe, John)\r\nCc: a@x.org,\r\n\r\n").to == ["j@x.org"]
    assert h("To: j@x.org (Doe, John)\r\nCc: a@x.org,\r\n\r\n").cc == ["a@x.org"]
    # nor does one such field hide the others (Bcc is read as one list)
    assert h("Bcc: a b@@c\r\nBcc: d@y.org\r\n\r\n").bcc[1:] == ["d@y.org"]


def test_wire_bytes_drops_bcc_only():
    raw = (b"From: a@x\r\nBcc: one@x,\r\n two@x\r\nTo: b@x\r\nbcc: three@x\r\n\r\n"
           b"Bcc: in the body stays\r\n")
    assert env.wire_bytes(raw) == b"From: a@x\r\nTo: b@x\r\n\r\nBcc: in the body stays\r\n"


@given(st.lists(st.sampled_from([b"From: a@x", b"Bcc: b@x", b" cont", b"To: c@x",
                                 b"X-Bcc: d@x", b"\tmore"]), max_size=12),
       st.binary(max_size=50))
def test_wire_bytes_property(lines, body):
    head = b"".join(l + b"\r\n" for l in lines if not l.startswith((b" ", b"\t")) or lines)
    raw = head + b"\r\n" + body.replace(b"\r\n\r\n", b"")
    out = env.wire_bytes(raw)
    out_head = out[:out.find(b"\r\n\r\n") + 2] if b"\r\n\r\n" in out else out
    assert not any(l.lower().startswith(b"bcc:") for l in out_head.split(b"\r\n"))
    assert out.endswith(raw[raw.find(b"\r\n\r\n") + 4:])   # the body is untouched
    assert env.wire_bytes(out) == out                        # idempotent


def test_retry_schedule():
    assert [retry.outcome(c) for c in (250, 251, 421, 451, 550, 554)] == \
        ["yes", "yes", "queued", "queued", "no", "no"]
    assert [retry.backoff(n, 60, 3600) for n in (1, 2, 3, 7, 20)] == [60, 120, 240, 3600, 3600]


def test_relay_unreachable_is_temporary():
    cfg = config.SmtpConfig(relay_host="127.0.0.1", relay_port=free_port(), timeout=5)
    out = outbound.relay(cfg, "localhost", "a@x.org", ["b@y.org", "c@y.org"], b"Subject: x\r\n\r\n")
    assert set(out) == {"b@y.org", "c@y.org"}
    assert all(s == "queued" and r.startswith("451 ") for s, r in out.values())


def test_smtp_config_from_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[smtp]\nrelay_host = "mx"\nrelay_port = 587\nstarttls = true\nhold = 5\n'
                 '[vacation]\nperiod_days = 3\n')
    c = config.load(str(p))
    assert (c.smtp.relay_host, c.smtp.relay_port, c.smtp.starttls, c.smtp.hold) == \
        ("mx", 587, True, 5.0)
    assert c.vacation.period_days == 3
    p.write_text('[smtp]\nrelay = "mx"\n')
    with pytest.raises(config.ConfigError):
        config.load(str(p))


# parse_field's answers: one rule on every release (None: cannot be read)
PARSE_FIELD = [
    ("a@x.org, b@y.org", [("", "a@x.org"), ("", "b@y.org")]),
    ('"Doe, John" <j@x.org>', [("Doe, John", "j@x.org")]),
    ("j@x.org (Doe, John)", [("Doe, John", "j@x.org")]),
    ("a@x.org (a\\) b, c)", [("a) b, c", "a@x.org")]),
    ("a@x.org,", [("", "a@x.org")]),
    ("a@x.org,, b@y.org", [("", "a@x.org"), ("", ""), ("", "b@y.org")]),
    ("a@x.org,\r\n b@y.org", [("", "a@x.org"), ("", "b@y.org")]),
    ("g: a@x.org, b@y.org;", [("", "a@x.org"), ("", "b@y.org")]),
    ("undisclosed-recipients:;", [("", "")]),
    ("", []), ("  ", []),
    ("a b@@c", None), ("a@x.org, a b@@c", None), ("a@x.org b@y.org", None),
    ("a@x.org <b@y.org>", None), ("a@x.org; b@y.org", None), ("a@x.org (c", None),
    ("alice@example.org)<bob@example.com>", None), ('"open <a@x.org>', None),
    ("a@[1.2.3.4", None),
]


@pytest.mark.parametrize("other", [False, True], ids=["this-python", "other-release"])
def test_parse_field_is_the_same_on_every_release(monkeypatch, other):
    if other:
        other_release(monkeypatch)
    for value, want in PARSE_FIELD:
        assert addresses.parse_field(value) == want, value


def test_parse_field_is_linear():
    """Behaviour, no timing: fields of 200,000 characters that a quadratic
    reader (a rescan per comma or parenthesis) would not finish within the
    suite's time; each is unreadable."""
    for bad in ("(" * 200_000, '"' + "\\," * 100_000, "a@x.org, " * 50_000 + "(", "," * 200_000):
        assert addresses.parse_field(bad) is None
