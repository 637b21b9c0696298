"""facts_py and facts_c: first_groups gives the same answer on any bytes, and
on every ENVELOPE the indexer writes it agrees with a full parse of the
ENVELOPE (the parser SORT used before query/facts.py, kept here as the
oracle)."""
import pytest
from hypothesis import given, settings, strategies as st

from conftest import twin_params
from mailaccess import _speedups
from mailaccess.mime import index as mindex

PY = _speedups.load_py("facts")
C = _speedups.load_c("facts")


def envelope_items(data: bytes):
    """The ENVELOPE as nested lists of bytes/None (None when malformed)."""
    pos = 0
    n = len(data)

    def value():
        nonlocal pos
        while pos < n and data[pos] == 0x20:
            pos += 1
        if pos >= n:
            raise ValueError("truncated")
        c = data[pos]
        if c == 0x28:
            pos += 1
            out = []
            while True:
                while pos < n and data[pos] == 0x20:
                    pos += 1
                if pos >= n:
                    raise ValueError("truncated")
                if data[pos] == 0x29:
                    pos += 1
                    return out
                out.append(value())
        if c == 0x22:
            pos += 1
            buf = bytearray()
            while pos < n and data[pos] != 0x22:
                if data[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                buf.append(data[pos])
                pos += 1
            pos += 1
            return bytes(buf)
        if c == 0x7B:
            close = data.index(b"}", pos)
            size = int(data[pos + 1:close])
            start = close + 3
            pos = start + size
            return data[start:pos]
        end = pos
        while end < n and data[end] not in b" ()":
            end += 1
        atom = data[pos:end]
        pos = end
        return None if atom == b"NIL" else atom

    try:
        v = value()
    except (ValueError, IndexError):
        return None
    return v if isinstance(v, list) else None


def oracle(envelope: bytes) -> tuple:
    items = envelope_items(envelope)
    out = []
    for field in (2, 5, 6):
        g = None
        if items and len(items) > field and isinstance(items[field], list) and items[field]:
            first = items[field][0]
            if isinstance(first, list) and len(first) >= 4 and first[3] is None \
                    and isinstance(first[2], bytes):
                g = first[2]
        out.append(g)
    return tuple(out)


ADDR = st.sampled_from([
    "a@b.org", "Al <al@x.org>", '"Q \\" d" <q@x>', "grp: a@b, c@d;", "undisclosed-recipients:;",
    "=?utf-8?q?Gr=C3=BCppe?=: x@y;", "nohost", "(c) <> ", "\u00e9l\u00e8ve <e@x>",
    '"(x)" <p@q>', "Team: ;, z@w", "a@b (NIL)", "{3}\r\nabc <k@l>", "x\\y@z", ""])
HEADERS = st.lists(st.tuples(st.sampled_from(["From", "To", "Cc", "Subject", "Sender",
                                              "Reply-To", "Bcc", "Message-ID"]),
                             st.one_of(ADDR, st.text(max_size=30))), max_size=8)


def message(headers) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\nbody\r\n").encode(
        "utf-8", "surrogatepass")


@pytest.mark.parametrize("mod", twin_params("facts"))
@settings(max_examples=300, deadline=None)
@given(headers=HEADERS)
def test_written_envelopes_agree_with_the_full_parse(mod, headers):
    env = mindex.index_message(message(headers)).envelope
    assert mod.first_groups(env) == oracle(env)


@settings(max_examples=2000, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from([b"(", b")", b" ", b"NIL", b'"a"', b'"\\"x"', b"{2}\r\nab",
                              b"{9}\r\n", b'"', b"\\", b"{", b"}", b"x", b"((NIL NIL \"g\" NIL))"]),
             max_size=40).map(b"".join)))
def test_twins_agree_on_any_bytes(data):
    got = PY.first_groups(data)
    if C is not None:
        assert C.first_groups(data) == got
    # a well-formed list reads as the full parse does
    if envelope_items(data) is not None and got != (None, None, None):
        assert got == oracle(data)


def test_both_twins_are_there():
    assert C is not None, "facts_c is not built (setup.py build_ext --inplace)"


@pytest.mark.parametrize("mod", twin_params("facts"))
def test_examples(mod):
    env = (b'(NIL "s" ((NIL NIL "Grp" NIL)(NIL NIL "a" "b")) NIL NIL '
           b'((NIL NIL {3}\r\nu\\v NIL)) ((NIL NIL "a" "b")) NIL NIL NIL)')
    assert mod.first_groups(env) == (b"Grp", b"u\\v", None)
    assert mod.first_groups(env[:-1]) == (None, None, None)        # unbalanced
    assert mod.first_groups(b'(NIL "x) ((NIL NIL "g" NIL)))') == (None, None, None)
    assert mod.first_groups(b"") == (None, None, None)
