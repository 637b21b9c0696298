"""NOTIFY (RFC 5465): the wire syntax, and news pushed between commands.

Raw-socket conversations: session A says NOTIFY SET and then sends nothing;
session B (or LMTP) delivers, flags, expunges, creates, renames and
subscribes; A reads the untagged responses as they come.  The client
sockets are plain non-blocking sockets read from the test's Trio loop, the
server runs in the same loop: ``wait_all_tasks_blocked`` then means "the
server has done everything it was going to do", which is how the tests see
that something was *not* sent (no sleeps, no timing thresholds).
"""
import functools
import re
import smtplib

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient

from imap_helpers import AsyncRaw, imap_port, literal, msg, run
from mailaccess.proto.imap import events as ev
from mailaccess.proto.imap.commands import CommandError, parse_command
from mailaccess.proto.imap.frames import CommandFrame
from mailaccess.views import imap_notify as nt


# ------------------------------------------------------------------ wire syntax

def parse(text: str):
    return parse_command(CommandFrame(b"a", (text.encode(),)))


def bad(text: str) -> str:
    with pytest.raises(CommandError) as e:
        parse(text)
    return e.value.message


def test_notify_none_and_set():
    assert parse("NOTIFY NONE") == ev.Notify(b"a", None)
    c = parse("notify set status (selected (MessageNew (UID FLAGS) messageexpunge flagchange)) "
              "(subtree (INBOX \"a b\") (MessageNew MessageExpunge)) (Personal (MailboxName)) "
              "(mailboxes x NONE)")
    assert c.status
    sel, sub, per, mbx = c.groups
    assert sel.filter == "SELECTED"
    assert sel.events == ("MessageNew", "MessageExpunge", "FlagChange")
    assert sel.fetch == (ev.FetchItem("UID"), ev.FetchItem("FLAGS"))
    assert sub == ev.NotifyGroup("SUBTREE", ("INBOX", "a b"), ("MessageNew", "MessageExpunge"))
    assert per == ev.NotifyGroup("PERSONAL", (), ("MailboxName",))
    assert mbx == ev.NotifyGroup("MAILBOXES", ("x",), ())


def test_notify_composition_rules_are_bad():
    # RFC 5465 5: MessageNew and MessageExpunge together; FlagChange needs both
    assert "together" in bad("NOTIFY SET (SELECTED (MessageNew))")
    assert "together" in bad("NOTIFY SET (PERSONAL (MessageExpunge))")
    assert "need" in bad("NOTIFY SET (PERSONAL (FlagChange))")
    assert "need" in bad("NOTIFY SET (SELECTED (AnnotationChange))")
    # 6.1: one selected group, message events only there
    assert "only one" in bad("NOTIFY SET (SELECTED NONE) (SELECTED-DELAYED NONE)")
    assert "only message events" in bad("NOTIFY SET (SELECTED (MailboxName))")
    # FETCH attributes only for the selected mailbox
    assert "FETCH" in bad("NOTIFY SET (INBOXES (MessageNew (UID) MessageExpunge))")
    for text in ("NOTIFY", "NOTIFY SET", "NOTIFY SET ()", "NOTIFY SET (PERSONAL ())",
                 "NOTIFY SET (PERSONAL)", "NOTIFY SET (BOGUS NONE)", "NOTIFY SET (SUBTREE NONE)",
                 "NOTIFY GET", "NOTIFY SET STATUS", "NOTIFY SET (PERSONAL (MailboxName) )"):
        bad(text)


EVENT_NAMES = ["MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
               "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange"]
FILTERS = ["SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED",
           "SUBTREE", "MAILBOXES"]
names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                              blacklist_characters='(){%*"\\]&'), min_size=1, max_size=8)


@st.composite
def groups(draw):
    f = draw(st.sampled_from(FILTERS))
    boxes = draw(st.lists(names, min_size=1, max_size=3)) if f in ("SUBTREE", "MAILBOXES") else []
    events = draw(st.lists(st.sampled_from(EVENT_NAMES), unique=True, max_size=5))
    return f, boxes, events


def render(status, gs) -> str:
    out = []
    for f, boxes, events in gs:
        g = f
        if boxes:
            g += " (" + " ".join(boxes) + ")" if len(boxes) > 1 else " " + boxes[0]
        g += " (" + " ".join(events) + ")" if events else " NONE"
        out.append("(" + g + ")")
    return "NOTIFY SET " + ("STATUS " if status else "") + " ".join(out)


def legal(gs) -> bool:
    if sum(f.startswith("SELECTED") for f, _b, _e in gs) > 1:
        return False
    for f, _b, events in gs:
        e = set(events)
        if ("MessageNew" in e) != ("MessageExpunge" in e):
            return False
        if e & {"FlagChange", "AnnotationChange"} and "MessageNew" not in e:
            return False
        if f.startswith("SELECTED") and e - {"MessageNew", "MessageExpunge", "FlagChange",
                                             "AnnotationChange"}:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(groups(), min_size=1, max_size=4))
def test_notify_set_parses_exactly_the_legal_commands(status, gs):
    text = render(status, gs)
    if not legal(gs):
        bad(text)
        return
    c = parse(text)
    assert c.status == status
    assert [(g.filter, list(g.mailboxes), list(g.events)) for g in c.groups] == \
        [(f, b, e) for f, b, e in gs]
    # the session's view: supported events compile, the others are NO [BADEVENT]
    unsupported = {e for _f, _b, es in gs for e in es} - set(nt.SUPPORTED)
    if unsupported:
        with pytest.raises(nt.Unsupported) as exc:
            nt.NotifySpec.from_command(c)
        assert set(exc.value.events) == unsupported
    else:
        spec = nt.NotifySpec.from_command(c)
        assert len(spec.rules) == sum(not f.startswith("SELECTED") for f, _b, _e in gs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_notify_parser_never_raises_anything_else(tail):
    try:
        parse_command(CommandFrame(b"a", (b"NOTIFY " + tail,)))
    except CommandError:
        pass


def test_first_matching_group_wins():
    spec = nt.NotifySpec.from_command(parse(
        "NOTIFY SET (MAILBOXES Spam NONE) (SUBTREE Lists (MailboxName)) "
        "(PERSONAL (MessageNew MessageExpunge))"))
    assert spec.events_for("Spam", True) == frozenset()
    assert spec.events_for("Lists", False) == {"MailboxName"}
    assert spec.events_for("Lists/imap", False) == {"MailboxName"}
    assert spec.events_for("Listsx", False) == {"MessageNew", "MessageExpunge"}
    spec = nt.NotifySpec.from_command(parse("NOTIFY SET (SUBSCRIBED (MessageNew MessageExpunge))"))
    assert spec.events_for("a", True) and not spec.events_for("a", False)


# ------------------------------------------------------------- raw conversations

# \\Recent (RFC 3501; another change's subject) is left out of what line() returns.
login = functools.partial(AsyncRaw.login, hide_recent=True)


def lmtp_deliver(ctx, rcpt, data):
    with smtplib.LMTP("127.0.0.1", ctx.bound["lmtp"][0][1]) as c:
        c.sendmail("s@example.org", [rcpt], data)


async def append(c: AsyncRaw, box: str, data: bytes) -> None:
    await c.cmd(f"APPEND {box} " + literal(data))


async def test_capability_advertises_notify(imap_server):
    a = await login(imap_server)
    caps = await a.cmd("CAPABILITY")
    assert b" NOTIFY" in caps[0]
    a.close()


async def test_selected_and_other_mailbox_news_arrive_without_a_command(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Lists")
    await append(b, "INBOX", msg("first"))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
                "MessageExpunge FlagChange)) (MAILBOXES Lists (MessageNew MessageExpunge))")
    # LMTP delivery to the selected mailbox: EXISTS, then the FETCH asked for
    await run(lmtp_deliver, imap_server, "alice@localhost", msg("pushed"))
    got = await a.until(lambda l: b"FETCH" in l)
    assert got[0] == b"* 2 EXISTS"
    assert got[-1].startswith(b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {")
    assert b"Subject: pushed" in got[-1]
    # another mailbox: STATUS
    await append(b, "Lists", msg("to lists"))
    got = await a.until(lambda l: l.startswith(b"* STATUS"))
    assert got == [b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]
    # a flag change in the selected mailbox
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 +FLAGS (\\Flagged)")
    got = await a.until(lambda l: b"FETCH" in l)
    assert got[-1] == b"* 1 FETCH (UID 1 FLAGS (\\Flagged))"
    # an expunge: EXPUNGE at once (SELECTED, not SELECTED-DELAYED)
    await b.cmd("STORE 1 +FLAGS (\\Deleted)")
    await b.cmd("EXPUNGE")
    got = await a.until(lambda l: l.endswith(b"EXPUNGE"))
    assert got[-1] == b"* 1 EXPUNGE"
    # message 1 was recent to A (its SELECT claimed it): one fewer now
    assert await a.idle_output() == b"* 1 RECENT\r\n"
    a.close()
    b.close()


async def test_mailbox_name_and_subscription_changes(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))")
    await b.cmd("CREATE Work")
    got = await a.until(lambda l: l.startswith(b"* LIST"))
    assert got == [b'* LIST (\\HasNoChildren) "/" Work']
    await b.cmd("CREATE Work/Sub")
    await a.until(lambda l: l.startswith(b"* LIST"))
    await b.cmd("RENAME Work Play")
    got = [await a.line(), await a.line()]
    assert sorted(got) == [b'* LIST (\\HasChildren) "/" Play ("OLDNAME" (Work))',
                           b'* LIST (\\HasNoChildren) "/" Play/Sub ("OLDNAME" (Work/Sub))']
    await b.cmd("SUBSCRIBE Play")
    got = await a.until(lambda l: l.startswith(b"* LIST"))
    assert got == [b'* LIST (\\HasChildren \\Subscribed) "/" Play']
    await b.cmd("UNSUBSCRIBE Play")
    got = await a.until(lambda l: l.startswith(b"* LIST"))
    assert got == [b'* LIST (\\HasChildren) "/" Play']
    await b.cmd("DELETE Play/Sub")
    got = await a.until(lambda l: l.startswith(b"* LIST"))
    assert got == [b'* LIST (\\NonExistent) "/" Play/Sub']
    assert await a.idle_output() == b""
    a.close()
    b.close()


async def test_status_option_and_no_news_for_unwatched_events(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Lists")
    await b.cmd("CREATE Other")
    await append(b, "Lists", msg("one"))
    got = await a.cmd("NOTIFY SET STATUS (MAILBOXES (Lists Other) (MessageNew MessageExpunge))")
    st_lines = [l for l in got if l.startswith(b"* STATUS")]
    assert st_lines[0].startswith(b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ")
    assert st_lines[0].endswith(b" UNSEEN 1)")
    assert st_lines[1].startswith(b"* STATUS Other (MESSAGES 0 UIDNEXT 1 UIDVALIDITY ")
    # a flag change is not one of the events asked for; INBOX is not watched
    await b.cmd("SELECT Lists")
    await b.cmd("STORE 1 +FLAGS (\\Seen)")
    await append(b, "INBOX", msg("inbox"))
    await b.cmd("CREATE Third")
    assert await a.idle_output() == b""
    # an expunge is
    await b.cmd("STORE 1 +FLAGS (\\Deleted)")
    await b.cmd("EXPUNGE")
    got = await a.until(lambda l: l.startswith(b"* STATUS"))
    assert got == [b"* STATUS Lists (MESSAGES 0 UIDNEXT 2 UNSEEN 0)"]
    # NOTIFY NONE: silence
    await a.cmd("NOTIFY NONE")
    await append(b, "Lists", msg("two"))
    assert await a.idle_output() == b""
    a.close()
    b.close()


async def test_news_waits_for_the_running_command(imap_server):
    """A command that has started arriving (here: its line without the CRLF)
    holds the news back until its tagged answer is out (RFC 5465 5)."""
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Lists")
    await a.cmd("NOTIFY SET (MAILBOXES Lists (MessageNew MessageExpunge))")
    a.send(b"x1 NOOP")
    await trio.testing.wait_all_tasks_blocked()
    await append(b, "Lists", msg("during"))
    assert await a.idle_output() == b""
    a.send(b"\r\n")
    got = await a.until(lambda l: l.startswith(b"* STATUS"))
    assert got[0] == b"x1 OK NOOP completed"
    assert got[1] == b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"
    a.close()
    b.close()


async def test_news_waits_for_a_command_in_progress(imap_server, monkeypatch):
    """A command the server is still working on (held here at a gate) is
    answered whole before any news (the connection's turn)."""
    from mailaccess.server.imap_session import ImapSession
    gate = trio.Event()
    real = ImapSession.do_noop

    async def slow_noop(self, cmd):
        await gate.wait()
        return await real(self, cmd)

    monkeypatch.setattr(ImapSession, "do_noop", slow_noop)
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Lists")
    await a.cmd("NOTIFY SET (MAILBOXES Lists (MessageNew MessageExpunge))")
    a.send(b"x1 NOOP\r\n")
    await trio.testing.wait_all_tasks_blocked()
    await append(b, "Lists", msg("during"))
    assert await a.idle_output() == b""
    gate.set()
    got = await a.until(lambda l: l.startswith(b"* STATUS"))
    assert got == [b"x1 OK NOOP completed", b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]
    a.close()
    b.close()


async def test_messagenew_fetch_follows_an_exists_a_command_sent(imap_server):
    """A message announced by a command's own catch-up (it arrived while the
    command was coming in) still gets its MessageNew FETCH, after the command."""
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("SELECT INBOX")
    await a.cmd("NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge))")
    a.send(b"x1 NOOP")
    await trio.testing.wait_all_tasks_blocked()
    await append(b, "INBOX", msg("during"))
    assert await a.idle_output() == b""
    a.send(b"\r\n")
    got = await a.until(lambda l: b"FETCH" in l)
    assert [l for l in got if b"RECENT" not in l] == \
        [b"* 1 EXISTS", b"x1 OK NOOP completed", b"* 1 FETCH (UID 1)"]
    a.close()
    b.close()


async def test_condstore_and_qresync_shape_the_news(imap_server):
    """With CONDSTORE on, STATUS carries HIGHESTMODSEQ (RFC 5465 5.2); with
    QRESYNC, expunges in the selected mailbox are VANISHED (5.3)."""
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Lists")
    await append(b, "INBOX", msg("one"))
    await a.cmd("ENABLE QRESYNC")
    await a.cmd("SELECT INBOX")
    await a.cmd("NOTIFY SET (SELECTED (MessageNew MessageExpunge)) "
                "(MAILBOXES Lists (MessageNew MessageExpunge))")
    await append(b, "Lists", msg("l"))
    got = await a.until(lambda l: l.startswith(b"* STATUS"))
    assert re.fullmatch(rb"\* STATUS Lists \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1 "
                        rb"HIGHESTMODSEQ \d+\)", got[-1]), got
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    await b.cmd("EXPUNGE")
    got = await a.until(lambda l: l.startswith(b"* VANISHED"))
    assert got[-1] == b"* VANISHED 1"
    a.close()
    b.close()


async def test_selected_delayed_keeps_expunges_for_a_command(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await append(b, "INBOX", msg("one"))
    await append(b, "INBOX", msg("two"))
    await a.cmd("SELECT INBOX")
    await a.cmd("NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))")
    await b.cmd("SELECT INBOX")
    await b.cmd("STORE 1 +FLAGS (\\Deleted)")
    await b.cmd("EXPUNGE")
    assert await a.idle_output() == b""
    await append(b, "INBOX", msg("three"))
    got = await a.until(lambda l: l.endswith(b"EXISTS"))
    assert got == [b"* 3 EXISTS"]          # the expunged message keeps its number
    assert b"EXPUNGE" not in await a.idle_output()
    got = await a.cmd("NOOP")
    assert got[0] == b"* 1 EXPUNGE"
    a.close()
    b.close()


async def test_unsupported_events_are_no_badevent(imap_server):
    a = await login(imap_server)
    for ev_name in ("AnnotationChange", "MailboxMetadataChange", "ServerMetadataChange",
                    "SomeFutureEvent"):
        events = "MessageNew MessageExpunge " + ev_name
        if ev_name.endswith("MetadataChange") or ev_name == "SomeFutureEvent":
            group = f"(PERSONAL ({ev_name}))"
        else:
            group = f"(SELECTED ({events}))"
        a.send(b"n1 NOTIFY SET " + group.encode() + b"\r\n")
        line = await a.line()
        assert line.startswith(b"n1 NO [BADEVENT (MessageNew MessageExpunge FlagChange "
                               b"MailboxName SubscriptionChange)]"), line
    a.send(b"n2 NOTIFY SET (SELECTED (MessageNew))\r\n")
    assert (await a.line()).startswith(b"n2 BAD")
    a.close()


async def test_overflow_sends_notificationoverflow_and_stops(imap_server, monkeypatch):
    monkeypatch.setattr(nt, "MAX_LINES", 2)
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("SELECT INBOX")
    await a.cmd("NOTIFY SET (SELECTED (MessageNew (UID) MessageExpunge))")
    # one MULTIAPPEND: three new messages in one commit, one wake-up
    await b.cmd("APPEND INBOX " + literal(msg("1")) + " " + literal(msg("2")) + " "
                + literal(msg("3")))
    got = await a.until(lambda l: b"NOTIFICATIONOVERFLOW" in l)
    assert got[-1].startswith(b"* OK [NOTIFICATIONOVERFLOW]")
    await append(b, "INBOX", msg("4"))
    assert await a.idle_output() == b""     # NOTIFY NONE is in effect
    got = await a.cmd("NOOP")
    assert b"* 4 EXISTS" in got
    a.close()
    b.close()


async def test_idle_with_notify_sends_what_notify_asked_for(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Lists")
    await a.cmd("SELECT INBOX")
    await a.cmd("NOTIFY SET (SELECTED (MessageNew MessageExpunge)) "
                "(PERSONAL (MessageNew MessageExpunge))")
    a.send(b"i1 IDLE\r\n")
    assert (await a.line()).startswith(b"+")
    await append(b, "Lists", msg("l"))
    assert await a.until(lambda l: l.startswith(b"* STATUS")) == \
        [b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]
    await append(b, "INBOX", msg("i"))
    assert await a.until(lambda l: l.endswith(b"EXISTS")) == [b"* 1 EXISTS"]
    a.send(b"DONE\r\n")
    assert (await a.until(lambda l: l.startswith(b"i1 ")))[-1].startswith(b"i1 OK")
    a.close()
    b.close()


async def test_selected_mailbox_deleted_under_notify(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await b.cmd("CREATE Doomed")
    await a.cmd("SELECT Doomed")
    await a.cmd("NOTIFY SET (SELECTED (MessageNew MessageExpunge))")
    await b.cmd("DELETE Doomed")
    got = await a.until(lambda l: l.startswith(b"* BYE"))
    assert got[-1].startswith(b"* BYE")
    with pytest.raises(EOFError):
        await a.line()
    a.close()
    b.close()


async def test_unauthenticate_ends_notify(imap_server):
    a = await login(imap_server)
    b = await login(imap_server)
    await a.cmd("NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
    await a.cmd("UNAUTHENTICATE")
    await append(b, "INBOX", msg("x"))
    assert await a.idle_output() == b""
    a.close()
    b.close()


async def test_notify_holds_one_subscription_and_no_queue(imap_server):
    """Bounded memory: however many changes, one subscription with at most one
    merged pending notification; none at all after NOTIFY NONE."""
    a = await login(imap_server)
    b = await login(imap_server)
    await append(b, "INBOX", msg("x"))
    await a.cmd("NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange))")
    with imap_server.store.view() as v:
        acc = v.account_by_name("alice").id
    a.send(b"x1 NOOP")          # a command arriving: news is held back meanwhile
    await trio.testing.wait_all_tasks_blocked()
    await b.cmd("SELECT INBOX")
    for _ in range(50):
        await b.cmd("STORE 1 FLAGS (\\Seen)")
        await b.cmd("STORE 1 FLAGS ()")
    await trio.testing.wait_all_tasks_blocked()
    subs, pending = imap_server.bus.holding(acc)
    assert (subs, pending) == (1, 1)    # a's one subscription (b never idles), merged
    a.send(b"\r\n")
    await a.until(lambda l: l.startswith(b"* STATUS"))
    await a.cmd("NOTIFY NONE")
    await trio.testing.wait_all_tasks_blocked()
    assert imap_server.bus.holding(acc) == (0, 0)
    a.close()
    b.close()


# ---------------------------------------------------------------------- imapclient

async def test_imapclient_notify_and_unsolicited_status(imap_server):
    """imapclient has no NOTIFY method; its ``_raw_command`` sends one, and
    ``idle_check`` collects the untagged responses that follow."""
    c = await run(lambda: IMAPClient("127.0.0.1", port=imap_port(imap_server), ssl=False,
                                     timeout=30))
    await run(c.login, "alice", "pw")
    assert b"NOTIFY" in await run(c.capabilities)
    await run(c.create_folder, "Lists")
    await run(c.select_folder, "INBOX")
    data = await run(lambda: c._raw_command(
        b"NOTIFY", [b"SET", b"(SELECTED", b"(MessageNew", b"(UID", b"FLAGS)",
                    b"MessageExpunge))", b"(MAILBOXES", b"Lists", b"(MessageNew",
                    b"MessageExpunge))"], uid=False))
    assert data[0] == "OK"
    # IDLE with NOTIFY in effect sends what NOTIFY asked for (RFC 5465 4)
    await run(c.idle)
    b = await login(imap_server)
    await append(b, "Lists", msg("a"))
    await append(b, "INBOX", msg("b"))
    seen = []
    with trio.fail_after(30):
        while (1, b"EXISTS") not in seen:
            seen += await run(c.idle_check, 5)
    await run(c.idle_done)
    assert (b"STATUS", b"Lists", (b"MESSAGES", 1, b"UIDNEXT", 2, b"UNSEEN", 1)) in seen, seen
    fetches = [r for r in seen if r[:2] == (1, b"FETCH")]
    assert fetches and fetches[0][2][:2] == (b"UID", 1), seen
    await run(c.logout)
    b.close()


# ------------------------------------------------- the watch against a real store

def _new_email(raw: bytes):
    import hashlib
    from mailaccess.store import ops
    return ops.NewEmail(raw=raw, index=b"\x00idx", blob=hashlib.sha256(raw).digest(),
                        received_at=1_700_000_000, message_id=None, thread_refs=(),
                        subject_hash=b"s" * 8)


LIST_RE = re.compile(r'^\* LIST \(([^)]*)\) "/" (\S+)(?: \("OLDNAME" \((\S+)\)\))?$')
STATUS_RE = re.compile(r"^\* STATUS (\S+) \((.*)\)$")

ops_strategy = st.lists(st.tuples(
    st.sampled_from(["create", "delete", "rename", "sub", "unsub", "append", "flag",
                     "expunge"]),
    st.sampled_from(["a", "b", "c", "INBOX"]), st.sampled_from(["a", "b", "c"])),
    min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(ops_strategy)
def test_watch_reports_exactly_what_changed(tmp_path_factory, steps):
    """Each store change, seen through a PERSONAL watch of every event, gives
    exactly the LIST or STATUS a model of the change expects, with the
    store's numbers (and nothing for a change that changed nothing)."""
    from mailaccess.store import Store, ops
    store = Store(tmp_path_factory.mktemp("w") / "data")
    store.start()
    try:
        acc = store.write_sync(ops.create_account, "alice", "hash")
        cmd = parse("NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange "
                    "MailboxName SubscriptionChange))")
        with store.view() as v:
            watch = nt.Watch(nt.NotifySpec.from_command(cmd), nt.scan(v, acc))
        for k, (op, name, other) in enumerate(steps):
            with store.view() as v:
                m = v.mailbox_by_path(acc, [name])
                dst = v.mailbox_by_path(acc, [other])
                uids = v.uids(acc, m.id) if m else []
            want: set = set()
            if op == "create" and m is None:
                store.write_sync(ops.create_mailbox_path, acc, [name])
                want = {("LIST", name, None)}
            elif m is None or (name == "INBOX" and op in ("delete", "rename")):
                continue
            elif op == "delete":
                store.write_sync(ops.delete_mailbox, acc, m.id)
                want = {("GONE", name, None)}
            elif op == "rename" and dst is None:
                store.write_sync(ops.move_mailbox_to_path, acc, m.id, [other])
                want = {("LIST", other, name)}
            elif op in ("sub", "unsub") and m.subscribed != (op == "sub"):
                store.write_sync(ops.update_mailbox, acc, m.id, subscribed=op == "sub")
                want = {("LIST", name, None)}
            elif op == "append":
                store.write_sync(ops.append, acc, [m.id], _new_email(b"m%d" % k))
                want = {("STATUS", name, None)}
            elif op in ("flag", "expunge") and uids:
                if op == "flag":        # a toggle: always a change
                    with store.view() as v:
                        on = "$flagged" in v.keywords(acc, uids[0][1])
                    store.write_sync(ops.set_keywords, acc, [uids[0][1]],
                                     **{"remove" if on else "add": ["$flagged"]})
                else:
                    store.write_sync(ops.expunge, acc, m.id, [uids[0][0]])
                want = {("STATUS", name, None)}
            got = set()
            with store.view() as v:
                lines = watch.catch_up(v, acc, None, condstore=False, utf8=False)
                for line in lines:
                    text = line.decode().rstrip("\r\n")
                    lm, sm = LIST_RE.match(text), STATUS_RE.match(text)
                    if lm:
                        kind = "GONE" if "\\NonExistent" in lm.group(1) else "LIST"
                        got.add((kind, lm.group(2), lm.group(3)))
                        box = v.mailbox_by_path(acc, [lm.group(2)])
                        assert (kind == "GONE") == (box is None)
                        if box is not None:
                            assert ("\\Subscribed" in lm.group(1)) == box.subscribed
                    else:
                        assert sm, text
                        got.add(("STATUS", sm.group(1), None))
                        box = v.mailbox_by_path(acc, [sm.group(1)])
                        assert sm.group(2).startswith(
                            f"MESSAGES {box.total} UIDNEXT {box.uidnext} ")
                        assert f"UNSEEN {box.unseen}" in sm.group(2)
                        assert f"HIGHESTMODSEQ {box.highest_ms}" in sm.group(2)
            assert got == want, (op, name, other, lines)
    finally:
        store.close()
