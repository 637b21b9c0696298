"""The failed-login penalty does not count the same wrong password twice
(Dovecot's anvil keeps a checksum of recent failures per address): a client
retrying a stale password is not an attacker; a new guess still counts.
Only a short keyed hash is kept, a bounded number of them.  Fake clock and
fake sleep (no timing), the Penalty itself, the login service, and IMAP."""
from __future__ import annotations

import imaplib
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from imap_helpers import connect, run
from mailaccess.auth.penalty import REPEATS_KEPT, Penalty
from test_auth_pool import FAST_HASHER, PEN, FakeTime, service, store  # noqa: F401 (fixture)
from test_imap_auth_limits import start

A = "203.0.113.7"


def pen(t: FakeTime, entries: int = 100) -> Penalty:
    return Penalty(1.0, 64.0, 60.0, entries, clock=t.clock)


def test_the_same_wrong_password_counts_once():
    t = FakeTime()
    p = pen(t)
    for _ in range(6):
        p.failed(A, "alice", known_user=True, secret="stale")
    assert p.delay(A, None) == 1.0
    assert p.delay("10.0.0.1", "alice") == 1.0      # the user's count too
    p.failed(A, "alice", known_user=True, secret="other")
    assert p.delay(A, None) == 2.0


def test_new_guesses_each_count():
    t = FakeTime()
    p = pen(t)
    for i in range(4):
        p.failed(A, "alice", known_user=True, secret=f"guess{i}")
    assert p.delay(A, None) == 8.0


def test_the_pair_is_user_and_password():
    t = FakeTime()
    p = pen(t)
    p.failed(A, "alice", known_user=True, secret="pw1")
    p.failed(A, "bob", known_user=True, secret="pw1")      # another user: counts
    p.failed(A, "ALICE", known_user=True, secret="pw1")    # user names fold case: repeat
    assert p.delay(A, None) == 2.0


def test_another_address_counts_for_itself():
    t = FakeTime()
    p = pen(t)
    p.failed(A, "alice", known_user=True, secret="x")
    p.failed("198.51.100.1", "alice", known_user=True, secret="x")
    assert p.delay(A, None) == 1.0 and p.delay("198.51.100.1", None) == 1.0
    assert p.delay("192.0.2.99", "alice") == 2.0        # two addresses tried her name


def test_only_the_last_few_are_remembered():
    """Cycling through more passwords than are kept counts every time."""
    t = FakeTime()
    p = Penalty(1.0, 2.0 ** 40, 60.0, 100, clock=t.clock)
    for i in range(REPEATS_KEPT):
        p.failed(A, "alice", known_user=True, secret=f"p{i}")
    for i in range(REPEATS_KEPT):                    # each one is still remembered
        p.failed(A, "alice", known_user=True, secret=f"p{i}")
    assert p.addresses.count("203.0.113.7", t.now) == REPEATS_KEPT
    p.failed(A, "alice", known_user=True, secret="new")      # pushes p0 out
    p.failed(A, "alice", known_user=True, secret="p0")
    assert p.addresses.count("203.0.113.7", t.now) == REPEATS_KEPT + 2


def test_a_repeat_after_the_penalty_is_forgotten_counts_again():
    t = FakeTime()
    p = pen(t)
    p.failed(A, "alice", known_user=True, secret="stale")
    t.now += 61
    assert p.delay(A, None) == 0.0
    p.failed(A, "alice", known_user=True, secret="stale")
    assert p.delay(A, None) == 1.0


def test_no_secret_always_counts():
    """SCRAM proofs change with every nonce: nothing to compare, each counts."""
    t = FakeTime()
    p = pen(t)
    for _ in range(3):
        p.failed(A, "alice", known_user=True)
    assert p.delay(A, None) == 4.0


@settings(max_examples=30, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(0, 300), hs.text(max_size=20)), max_size=400))
def test_memory_is_bounded_and_holds_no_password(attempts):
    t = FakeTime()
    p = pen(t, entries=16)
    for addr, pw in attempts:
        p.failed(f"10.0.{addr // 256}.{addr % 256}", "alice", known_user=True,
                 secret="secret-" + pw)
    assert len(p.tried) <= 16
    for hashes in p.tried.values():
        assert len(hashes) <= REPEATS_KEPT
        assert all(type(h) is bytes and len(h) == 8 for h in hashes)
        assert not any(b"secret-" in h for h in hashes)


def test_the_hash_is_keyed_per_process():
    a, b = Penalty(1.0, 8.0, 60.0, 10), Penalty(1.0, 8.0, 60.0, 10)
    assert a._fingerprint("alice", "pw") != b._fingerprint("alice", "pw")
    assert a._fingerprint("alice", "pw") == a._fingerprint("Alice", "pw")


# --- through the login service and IMAP ------------------------------------------------------


async def test_service_does_not_count_a_retried_password(store, caplog):  # noqa: F811
    t = FakeTime()
    svc = service(store, t, **PEN)
    caplog.set_level(logging.INFO, "mailaccess.auth")
    for _ in range(5):
        assert not (await svc.login("alice", "stale", address=A)).ok
    assert t.slept == [1.0] * 4          # the delay stays at one failure's
    assert "not counted again" in caplog.text
    assert not (await svc.login("alice", "guess", address=A)).ok
    assert svc.penalty.delay(A, None) == 2.0
    # a failure that is not a password (an impossible name) counts each time
    for _ in range(2):
        assert not (await svc.login("", "stale", address=A)).ok
    assert svc.penalty.delay(A, None) == 8.0


async def test_imap_login_retried_with_the_same_password(cfg, nursery):
    ctx = await start(cfg, nursery, penalty_initial=0.001, penalty_max=0.064)

    def go():
        for _ in range(4):
            with pytest.raises(imaplib.IMAP4.error):
                connect(ctx, password="stale")
        connect(ctx).logout()
    await run(go)
    assert ctx.auth.penalty.delay("127.0.0.1", None) == pytest.approx(0.001)
    nursery.cancel_scope.cancel()
