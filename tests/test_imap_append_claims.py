"""An APPEND into the mailbox its session has selected read-write claims
\\Recent in the APPEND's own write (RFC 3501 2.3.2; server/imap_recent.py
``claim_with_append``): the appender is the first session told of the new
message (its catch-up answers the APPEND with the EXISTS), so the message is
recent to it, as when its catch-up claimed it in a second write; the many-
client run (bench_stress) paid a commit more per APPEND for that.  An APPEND
into another mailbox, or from an EXAMINE, claims nothing: the message stays
for the next session that selects or refreshes."""
import re

from imap_helpers import AsyncRaw, msg
from mailaccess import storeio
from mailaccess.store import ops


def literal(data: bytes) -> str:
    return "{%d+}\r\n" % len(data) + data.decode()


def spy_claim_writes(monkeypatch) -> list:
    """The \\Recent claims written on their own (storeio.write of
    ops.claim_recent: imap_recent._take) from here on."""
    claims = []
    real = storeio.write

    async def spy(store, fn, *args, **kw):
        if fn is ops.claim_recent:
            claims.append(args)
        return await real(store, fn, *args, **kw)
    monkeypatch.setattr(storeio, "write", spy)
    return claims


def recent_count(lines: list[bytes]) -> list[int]:
    return [int(m.group(1)) for ln in lines for m in [re.fullmatch(rb"\* (\d+) RECENT", ln)] if m]


def recent_uids(lines: list[bytes]) -> set[int]:
    out = set()
    for ln in lines:
        m = re.match(rb"\* \d+ FETCH \(.*UID (\d+).*FLAGS \(([^)]*)\)", ln) or \
            re.match(rb"\* \d+ FETCH \(.*FLAGS \(([^)]*)\).*UID (\d+)", ln)
        if m:
            a, b = m.groups()
            uid, flags = (a, b) if a.isdigit() else (b, a)
            if b"\\Recent" in flags.split():
                out.add(int(uid))
    return out


async def test_append_into_the_selected_mailbox_claims_in_its_own_write(imap_server,
                                                                         monkeypatch):
    a = await AsyncRaw.login(imap_server)
    b = await AsyncRaw.login(imap_server)
    await a.cmd("APPEND INBOX " + literal(msg("one")))
    await a.cmd("SELECT INBOX")                 # claims message 1
    await b.cmd("SELECT INBOX")
    claims = spy_claim_writes(monkeypatch)
    got = await a.cmd("APPEND INBOX " + literal(msg("two")))
    assert got[-1].startswith(b"t%d OK [APPENDUID " % a.n), got
    assert b"* 2 EXISTS" in got and recent_count(got) == [2], got
    assert claims == []                         # no write of its own for the claim
    assert recent_uids(await a.cmd("UID FETCH 1:* (UID FLAGS)")) == {1, 2}
    # the other session is told of it, not as recent, and claims nothing
    got = await b.cmd("NOOP")
    assert b"* 2 EXISTS" in got and recent_count(got) == [], got
    assert recent_uids(await b.cmd("UID FETCH 1:* (UID FLAGS)")) == set()
    assert claims == []
    # mail that arrived unclaimed before the APPEND is claimed with it
    await b.cmd("UNSELECT")
    await b.cmd("APPEND INBOX " + literal(msg("three")))    # B: nothing selected
    got = await a.cmd("APPEND INBOX " + literal(msg("four")))
    assert b"* 4 EXISTS" in got and recent_count(got) == [4], got
    assert claims == []
    assert recent_uids(await a.cmd("UID FETCH 1:* (UID FLAGS)")) == {1, 2, 3, 4}
    # ... and nobody else sees them recent
    c = await AsyncRaw.login(imap_server)
    assert recent_count(await c.cmd("SELECT INBOX")) == [0]
    for x in (a, b, c):
        x.close()


async def test_append_elsewhere_or_from_examine_claims_nothing(imap_server, monkeypatch):
    a = await AsyncRaw.login(imap_server)
    b = await AsyncRaw.login(imap_server)
    await a.cmd("CREATE Other")
    await a.cmd("SELECT Other")
    await a.cmd("APPEND INBOX " + literal(msg("one")))     # not the selected mailbox
    await b.cmd("EXAMINE INBOX")
    await b.cmd("APPEND INBOX " + literal(msg("two")))     # read-only selection
    got = await b.cmd("NOOP")
    assert recent_count(got) in ([], [2]), got
    assert recent_uids(await b.cmd("UID FETCH 1:* (UID FLAGS)")) == {1, 2}   # shown, not taken
    claims = spy_claim_writes(monkeypatch)
    got = await a.cmd("SELECT INBOX")           # the first read-write selection takes both
    assert recent_count(got) == [2], got
    assert len(claims) == 1
    assert recent_uids(await a.cmd("UID FETCH 1:* (UID FLAGS)")) == {1, 2}
    a.close()
    b.close()
