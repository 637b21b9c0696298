"""The wire layer's fast paths give what the general code gives.

parse_command answers an argument-less command (NOOP, LOGOUT, ...) without
the grammar Reader; the answer must be the event the full parser makes of
the same frame, in any letter case, and anything else (arguments, a stray
space, UID EXPUNGE) still goes through the parser (errors included).
"""
import pytest
from hypothesis import given, settings, strategies as st

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


# --- STORE on one message (perf4) -------------------------------------------------------

def parse_slow(frame: CommandFrame, monkeypatch_ctx):
    """parse_command with its STORE fast path off: the parser's event, or
    the CommandError it raises (as (tag, message, code))."""
    with monkeypatch_ctx() as mp:
        mp.setattr(C, "_STORE_ONE", C.re.compile(rb"(?!)"))
        try:
            return C.parse_command(frame)
        except CommandError as exc:
            return (exc.tag, exc.message, exc.code)


def parse_fast(frame: CommandFrame):
    try:
        return C.parse_command(frame)
    except CommandError as exc:
        return (exc.tag, exc.message, exc.code)


_GOOD_FLAGS = st.sampled_from([b"\\Flagged", b"\\seen", b"\\DELETED", b"\\Recent", b"\\Foo",
                               b"$Junk", b"foo", b"a.b", b"k" * 200])
_BAD_FLAGS = st.sampled_from([b"\\", b"", b"x]", b"(x", b"x" * 300, b"\\" + b"k" * 250,
                              b"caf\xc3\xa9", b"a\\b", b"*", b"%"])


def _mostly(good: list, bad: list):
    """GOOD most of the time (a whole valid command is then common), BAD else."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(good),
                     st.sampled_from(bad))


@settings(max_examples=600)
@given(_mostly([b"", b"UID ", b"uid "], [b"Uid  ", b"UID", b"UIDX "]),
       _mostly([b"STORE", b"store", b"StOrE"], [b"STORES", b"STOR"]),
       _mostly([b"1", b"12", b"999999999"],
               [b"4294967295", b"4294967296", b"0", b"01", b"1:3", b"*", b"$", b"1,2", b" 1", b""]),
       _mostly([b"+FLAGS", b"-flags", b"FLAGS", b"+FLAGS.SILENT", b"-Flags.Silent", b"FLAGS.SILENT"],
               [b"+FLAG", b"*FLAGS", b"(UNCHANGEDSINCE 5) +FLAGS"]),
       st.lists(st.one_of(_GOOD_FLAGS, _GOOD_FLAGS, _GOOD_FLAGS, _BAD_FLAGS), max_size=4),
       _mostly([(b" (", b")")], [(b" (", b") "), (b" ", b""), (b"  (", b")"), (b" (", b"")]),
       _mostly([b" "], [b"  "]))
def test_store_fast_path_equals_the_parser(uid, store, num, item, flags, brackets, sep):
    wire = uid + store + b" " + num + b" " + item + brackets[0] + sep.join(flags) + brackets[1]
    _fast_is_slow(wire, parse_slow)


def _fast_is_slow(wire: bytes, slow) -> None:
    """WIRE parses to the same event (or error) with and without the fast path."""
    import pytest as _pytest
    frame = CommandFrame(b"A7", (wire,))
    fast = parse_fast(frame)
    slow = slow(frame, _pytest.MonkeyPatch.context)
    assert fast == slow, wire
    assert type(fast) is type(slow)


def test_store_fast_path_takes_the_usual_store():
    """The fast path matches a client's single flag change (so it is in use)."""
    m = C._STORE_ONE.match(b"UID STORE 1234 +FLAGS (\\Flagged)")
    assert m is not None and C._store_one(b"t", m) == C.parse_command(
        CommandFrame(b"t", (b"UID STORE 1234 +FLAGS (\\Flagged)",)))
    assert C._store_one(b"t", C._STORE_ONE.match(b"STORE 1 FLAGS (" + b"k" * 300 + b")")) is None


# --- FETCH of one number or range, items without arguments (perf8-cmd) --------------------

def parse_slow_fetch(frame: CommandFrame, monkeypatch_ctx):
    """parse_command with its FETCH fast path off (the parser's event or error)."""
    with monkeypatch_ctx() as mp:
        mp.setattr(C, "_FETCH_ONE", C.re.compile(rb"(?!)"))
        return parse_fast(frame)


_GOOD_ITEMS = st.sampled_from([b"FLAGS", b"uid", b"Flags", b"RFC822.SIZE", b"INTERNALDATE",
                               b"MODSEQ", b"envelope", b"BODY", b"BODYSTRUCTURE", b"EMAILID",
                               b"RFC822.HEADER", b"SAVEDATE", b"THREADID", b"RFC822"])
_BAD_ITEMS = st.sampled_from([b"ALL", b"fast", b"FULL", b"PREVIEW", b"BODY[]", b"BODY.PEEK[1]",
                              b"FLAG", b"", b"BINARY.SIZE[1]", b"X-GM-MSGID", b"FLAGS)",
                              b"(FLAGS", b"caf\xc3\xa9", b"UID (CHANGEDSINCE 4)"])


@settings(max_examples=800)
@given(_mostly([b"", b"UID ", b"uid "], [b"Uid  ", b"UID", b"UIDX "]),
       _mostly([b"FETCH", b"fetch", b"FeTcH"], [b"FETCHES", b"FETC", b"STORE"]),
       _mostly([b"1", b"12", b"999999999", b"*", b"1:*", b"5:3", b"*:7", b"1:999999999"],
               [b"4294967295", b"4294967296", b"0", b"01", b"1:0", b"$", b"1,2", b" 1", b"",
                b"1:", b":1", b"1::2", b"1:2:3"]),
       st.lists(st.one_of(_GOOD_ITEMS, _GOOD_ITEMS, _GOOD_ITEMS, _BAD_ITEMS), max_size=4),
       _mostly([(b" (", b")"), (b" ", b"")], [(b" (", b") "), (b"  (", b")"), (b" (", b""),
                                              (b" ", b" (CHANGEDSINCE 5)")]),
       _mostly([b" "], [b"  ", b""]),
       st.sampled_from([b"ALL", b"FAST", b"full", b"FLAGS", None]))
def test_fetch_fast_path_equals_the_parser(uid, fetch, num, items, brackets, sep, alone):
    if alone is not None and brackets == (b" ", b""):
        items = [alone]             # a macro or a name alone, without parentheses
    wire = uid + fetch + b" " + num + brackets[0] + sep.join(items) + brackets[1]
    _fast_is_slow(wire, parse_slow_fetch)


def test_fetch_fast_path_takes_the_usual_fetch():
    """The fast path matches a client's flag check and sync (so it is in use)."""
    for wire in (b"UID FETCH 1234 (FLAGS)", b"UID FETCH 1:* (UID FLAGS MODSEQ)", b"FETCH 3 ALL"):
        m = C._FETCH_ONE.match(wire)
        assert m is not None and C._fetch_one(b"t", m) == C.parse_command(
            CommandFrame(b"t", (wire,)))
    assert C._FETCH_ONE.match(b"UID FETCH 1 (BODY.PEEK[])") is None
    assert C._fetch_one(b"t", C._FETCH_ONE.match(b"FETCH 1 (PREVIEW)")) is None


# --- STORE on a sequence set (bench_stress: UID STORE 1009,1013 -FLAGS (...)) ------------

@settings(max_examples=600)
@given(_mostly([b"", b"UID "], [b"UID"]),
       _mostly([b"1:3", b"1,2", b"5,1:3", b"*", b"3:*", b"*:4", b"1:3,7,9:12", b"12"],
               [b"$", b"1,$", b"1,,2", b",1", b"1,", b"1::2", b"0:3", b"1:0", b"01,2",
                b"1:4294967296", b"4294967295,1", b"1,2,3,4,5,6", b"**", b"1:2:3"]),
       _mostly([b"+FLAGS", b"-FLAGS.SILENT", b"FLAGS"], [b"+FLAG"]),
       st.lists(st.one_of(_GOOD_FLAGS, _GOOD_FLAGS, _BAD_FLAGS), min_size=1, max_size=3),
       st.sampled_from([C.DEFAULT_MAX_RANGES, 3]))
def test_store_set_fast_path_equals_the_parser(uid, num, item, flags, max_ranges):
    wire = uid + b"STORE " + num + b" " + item + b" (" + b" ".join(flags) + b")"
    frame = CommandFrame(b"A7", (wire,))

    def parse(**kw):
        try:
            return C.parse_command(frame, max_ranges=max_ranges)
        except CommandError as exc:
            return (exc.tag, exc.message, exc.code)
    fast = parse()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "_STORE_ONE", C.re.compile(rb"(?!)"))
        slow = parse()
    assert fast == slow, wire
    assert type(fast) is type(slow)


def test_store_set_fast_path_takes_a_set():
    m = C._STORE_ONE.match(b"UID STORE 1009,1013 -FLAGS ($own1 \\Seen)")
    assert m is not None
    cmd = C._store_one(b"t", m)
    assert cmd is not None and cmd.set.ranges == ((1009, 1009), (1013, 1013))
    assert C._store_one(b"t", C._STORE_ONE.match(b"STORE 1,2,3 FLAGS (x)"), max_ranges=2) is None


# --- FETCH item lists kept by their wire text (bench_stress: FETCH a:b (UID FLAGS
#     BODY.PEEK[HEADER.FIELDS (...)])) ---------------------------------------------------

def _fetch_parse(wire: bytes, max_depth: int = C.DEFAULT_MAX_DEPTH):
    try:
        return C.parse_command(CommandFrame(b"A7", (wire,)), max_depth=max_depth)
    except CommandError as exc:
        return (exc.tag, exc.message, exc.code)


def _fetch_uncached(wire: bytes, max_depth: int = C.DEFAULT_MAX_DEPTH):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "_FETCH_DEPTH", 1 << 30)      # the kept lists never consulted
        mp.setattr(C, "_FETCH_TAILS", {})
        return _fetch_parse(wire, max_depth)


_ITEM_LISTS = [
    b"(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])",
    b"(FLAGS BODY[HEADER.FIELDS.NOT (X-A)]<0.100>)", b"BODY.PEEK[1.2.MIME]",
    b"(BINARY.PEEK[1]<5.10> BINARY.SIZE[1])", b"(PREVIEW (LAZY) UID)", b"(PREVIEW)",
    b"(UID FLAGS) (CHANGEDSINCE 5)", b"(UID FLAGS) (CHANGEDSINCE 5 VANISHED)",
    b"ALL", b"(ALL)", b"FULL", b"(BODY[])", b"(BODY[HEADER.FIELDS ()])", b"(BODY[TEXT)",
    b"(UID FLAGS", b"(UID  FLAGS)", b"( UID FLAGS )", b"(BODY[HEADER.FIELDS (\"A B\")])",
    b"(X-NOPE)", b"(BODY.PEEK[0])", b"(BODY[MIME])", b"(BINARY[1.TEXT])", b"(uid flags)",
    b"(BODY.PEEK[HEADER.FIELDS (FROM)] BODY.PEEK[HEADER.FIELDS (FROM)])",
]


@settings(max_examples=400)
@given(st.sampled_from([b"", b"UID "]), st.sampled_from([b"1", b"2:5", b"1,3:*", b"$", b"0"]),
       st.sampled_from(_ITEM_LISTS), st.sampled_from([C.DEFAULT_MAX_DEPTH, 2, 1]))
def test_fetch_kept_item_lists_equal_the_parser(uid, num, items, depth):
    wire = uid + b"FETCH " + num + b" " + items
    slow = _fetch_uncached(wire, depth)
    for _ in range(2):          # the second parse reads a kept list, if one was kept
        fast = _fetch_parse(wire, depth)
        assert fast == slow, wire
        assert type(fast) is type(slow)


def test_fetch_item_lists_are_kept_and_bounded(monkeypatch):
    monkeypatch.setattr(C, "_FETCH_TAILS", {})
    items = b"(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"
    first = C.parse_command(CommandFrame(b"a", (b"FETCH 1:5 " + items,)))
    assert list(C._FETCH_TAILS) == [items]
    calls = []
    monkeypatch.setattr(C, "_fetch_att", lambda r: calls.append(1))
    again = C.parse_command(CommandFrame(b"b", (b"UID FETCH 7 " + items,)))
    assert calls == [] and again.items == first.items and again.uid and again.tag == b"b"
    monkeypatch.undo()
    # a list with modifiers, a failing one or a shallow Reader keeps nothing
    monkeypatch.setattr(C, "_FETCH_TAILS", {})
    _fetch_parse(b"UID FETCH 1 (UID FLAGS) (CHANGEDSINCE 5)")
    _fetch_parse(b"FETCH 1 (UID FLAGS")
    _fetch_parse(b"FETCH 1 (UID FLAGS)", max_depth=1)
    assert C._FETCH_TAILS == {}
    # bounded: no more lists past _FETCH_TAILS_MAX, none longer than _FETCH_TAIL_BYTES
    for i in range(C._FETCH_TAILS_MAX + 10):
        _fetch_parse(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (X-%d)])" % i)
    _fetch_parse(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (" + b"X " * 300 + b"Y)])")
    assert len(C._FETCH_TAILS) == C._FETCH_TAILS_MAX
    assert max(map(len, C._FETCH_TAILS)) <= C._FETCH_TAIL_BYTES
