"""The wire layer's fast paths give what the general code gives.

parse_command answers an argument-less command (NOOP, LOGOUT, ...) without
the grammar Reader; the answer must be the event the full parser makes of
the same frame, in any letter case, and anything else (arguments, a stray
space, UID EXPUNGE) still goes through the parser (errors included).
"""
import pytest
from hypothesis import given, strategies as st

from mailaccess.proto.imap import commands as C
from mailaccess.proto.imap.errors import CommandError
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.proto.imap.grammar import Reader


def full_parse(frame: CommandFrame):
    """parse_command without its fast path."""
    r = C.Reader(frame.parts, max_depth=C.DEFAULT_MAX_DEPTH, max_ranges=C.DEFAULT_MAX_RANGES)
    name = r.keyword()
    cmd = C.COMMAND_PARSERS[name](r, frame.tag, C._Ctx(False, False))
    r.end()
    return cmd


BARE = sorted(n.decode() for n in C._BARE)


def test_every_bare_command_has_a_fast_path_entry():
    # the fast path covers exactly the parsers that take no arguments
    assert set(BARE) == {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "UNAUTHENTICATE",
                         "NAMESPACE", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE"}


@given(st.sampled_from(BARE), st.lists(st.booleans(), min_size=14, max_size=14),
       st.from_regex(rb"[A-Za-z0-9.]{1,8}", fullmatch=True))
def test_fast_path_equals_the_parser(name, upper, tag):
    wire = "".join(c.upper() if u else c.lower() for c, u in zip(name, upper)).encode()
    frame = CommandFrame(tag, (wire,))
    assert C.parse_command(frame) == full_parse(frame)
    assert type(C.parse_command(frame)) is type(full_parse(frame))


@pytest.mark.parametrize("piece", [b"NOOP ", b"NOOP x", b" NOOP", b"NOOPS", b"LOGOUT now"])
def test_not_bare_goes_through_the_parser(piece):
    with pytest.raises(CommandError):
        C.parse_command(CommandFrame(b"t1", (piece,)))


def test_uid_expunge_is_not_bare():
    cmd = C.parse_command(CommandFrame(b"t1", (b"UID EXPUNGE 1:3",)))
    assert cmd.uid and cmd.uids is not None


def test_bad_tag_still_refused():
    with pytest.raises(CommandError) as info:
        C.parse_command(CommandFrame(b"t{1", (b"NOOP",)))
    assert info.value.tag is None


def test_reader_import():     # the helper above uses the module's own Reader
    assert C.Reader is Reader
