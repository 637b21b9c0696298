"""The login service (mailaccess/auth) at its own level, over a real store:
the verification pool's bound and overflow, the credential cache, rehashing,
and the failed-login penalty (fake clock and fake sleep: no timing)."""
from __future__ import annotations

import dataclasses
import logging
import threading

import argon2
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as hs

from mailaccess import accounts
from mailaccess.auth.cache import CredentialCache
from mailaccess.auth.hashing import Argon2Params, Hasher
from mailaccess.auth.penalty import Penalty, address_key
from mailaccess.auth.pool import Unavailable, VerifyPool
from mailaccess.auth.service import LoginService, Status
from mailaccess.config import AuthConfig
from mailaccess.store import Store

# small argon2 parameters keep the tests quick; the code paths are the same
FAST = dict(argon2_memory_kib=1024, argon2_time_cost=1, argon2_parallelism=1)
FAST_HASHER = Hasher(Argon2Params(1024, 1, 1))


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    accounts.add_user(s, "alice", "pw", hasher=FAST_HASHER)
    accounts.add_user(s, "mallory", "mine", hasher=FAST_HASHER)
    yield s
    s.close()


class FakeTime:
    """A clock the test moves, and a sleep that only records (and moves it)."""

    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class CountingCheck:
    """Wraps Hasher.check: counts calls and the most running at once; with
    ``hold``, every call waits until the test releases it."""

    def __init__(self, hasher: Hasher, hold: bool = False):
        self.inner = hasher.check
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        hasher.check = self

    def __call__(self, stored, password):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.release.wait(30)
            return self.inner(stored, password)
        finally:
            with self.lock:
                self.running -= 1


def service(store, t: FakeTime | None = None, **cfg) -> LoginService:
    auth_cfg = AuthConfig(**{**FAST, "penalty_initial": 0.0, **cfg})
    t = t or FakeTime()
    return LoginService(store, auth_cfg, clock=t.clock, sleep=t.sleep)


# --- the pool -----------------------------------------------------------------------------------

async def test_concurrent_logins_never_run_more_than_the_pool_and_overflow_is_unavailable(store):
    svc = service(store, verify_threads=3, verify_queue=5)
    check = CountingCheck(svc.hasher, hold=True)
    results = []

    async def one(i):
        results.append(await svc.login("alice", f"wrong{i}", address=f"10.0.0.{i}"))

    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(one, i)
        # every task is either in a verification, waiting for one, or done
        with trio.fail_after(30):
            while svc.pool.running + svc.pool.waiting < 8 or len(results) < 12:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert svc.pool.running == 3 and svc.pool.waiting == 5
        assert [r.status for r in results] == [Status.UNAVAILABLE] * 12
        # the pool counts a verification as running when it hands it to a
        # thread; wait (bounded) until all three threads are inside check
        for _ in range(3000):
            if check.running == 3:
                break
            await trio.sleep(0.01)
        assert check.running == 3
        check.release.set()
    assert sorted(r.status.value for r in results) == ["failed"] * 8 + ["unavailable"] * 12
    assert check.calls == 8          # the refused ones cost no argon2 at all
    assert check.peak == 3 and svc.pool.peak == 3
    assert svc.pool.refused == 12


async def test_eighty_wrong_logins_run_at_most_k_real_argon2_verifications(store):
    svc = service(store, verify_threads=2, verify_queue=100)
    check = CountingCheck(svc.hasher)
    results = []

    async def one(i):
        results.append(await svc.login("alice", "nope", address="10.1.1.1"))

    async with trio.open_nursery() as n:
        for i in range(80):
            n.start_soon(one, i)
    assert [r.status for r in results] == [Status.FAILED] * 80
    assert check.calls == 80 and check.peak <= 2 and svc.pool.peak == 2


async def test_a_caller_cancelled_while_waiting_leaves_the_pool_consistent():
    pool = VerifyPool(1, 1)
    gate = threading.Event()
    async with trio.open_nursery() as n:
        n.start_soon(pool.run, gate.wait)
        await trio.testing.wait_all_tasks_blocked()
        cs = trio.CancelScope()

        async def waiter():
            with cs:
                await pool.run(lambda: None)
        n.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.waiting == 1
        with pytest.raises(Unavailable):
            await pool.run(lambda: None)
        cs.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert pool.waiting == 0
        gate.set()
    assert pool.running == 0
    assert await pool.run(lambda: 42) == 42


# --- the cache ------------------------------------------------------------------------------------

async def test_cache_hits_skip_argon2(store):
    svc = service(store)
    check = CountingCheck(svc.hasher)
    first = await svc.login("alice", "pw")
    second = await svc.login("alice", "pw")
    third = await svc.login("ALICE", "pw")      # names are case-insensitive
    assert first.ok and not first.cached
    assert second.ok and second.cached and third.ok and third.cached
    assert first.account == second.account == third.account
    assert check.calls == 1


async def test_failed_logins_never_fill_the_cache(store):
    svc = service(store)
    check = CountingCheck(svc.hasher)
    for _ in range(3):
        assert (await svc.login("alice", "wrong")).status is Status.FAILED
        assert (await svc.login("nobody", "pw")).status is Status.FAILED
    assert len(svc.cache) == 0 and check.calls == 6
    assert (await svc.login("alice", "pw")).ok
    assert len(svc.cache) == 1 and check.calls == 7


async def test_a_password_change_invalidates_the_cache(store):
    svc = service(store)
    check = CountingCheck(svc.hasher)
    assert (await svc.login("alice", "pw")).ok
    await trio.to_thread.run_sync(
        lambda: accounts.set_password(store, "alice", "new", hasher=FAST_HASHER))
    r = await svc.login("alice", "pw")
    assert r.status is Status.FAILED and check.calls == 2    # verified again, refused
    assert (await svc.login("alice", "new")).ok


async def test_a_deleted_account_is_not_served_from_the_cache(store):
    svc = service(store)
    assert (await svc.login("mallory", "mine")).ok
    await trio.to_thread.run_sync(accounts.delete_user, store, "mallory")
    assert (await svc.login("mallory", "mine")).status is Status.FAILED


async def test_cache_entries_expire_and_are_bounded():
    t = FakeTime()
    c = CredentialCache(ttl=60, size=3, clock=t.clock)
    c.put("alice", "pw", 1, "h")
    assert c.get("alice", "pw").account == 1
    t.now += 61
    assert c.get("alice", "pw") is None
    for i in range(10):
        c.put(f"u{i}", "pw", i, "h")
    assert len(c) == 3 and c.get("u9", "pw") is not None and c.get("u0", "pw") is None


def test_cache_keeps_no_password_and_its_key_is_per_process():
    a, b = CredentialCache(60, 10), CredentialCache(60, 10)
    a.put("alice", "s3cret-password", 1, "h")
    (key,) = a._entries
    assert len(key) == 32 and b"s3cret" not in key
    assert b.get("alice", "s3cret-password") is None   # another key, another process
    assert a.get("alice", "s3cret-passwore") is None
    assert CredentialCache(0, 10).get("alice", "pw") is None    # ttl 0: disabled


# --- parameters and rehash ----------------------------------------------------------------------

async def test_existing_hashes_keep_verifying_and_are_rehashed_on_login(store):
    old = Hasher(Argon2Params(2048, 1, 2))
    await trio.to_thread.run_sync(lambda: accounts.add_user(store, "olduser", "pw", hasher=old))
    svc = service(store)        # configured: FAST (1024 KiB, t=1, p=1)
    before = accounts.lookup(store, "olduser").password_hash
    assert "m=2048" in before

    assert (await svc.login("olduser", "wrong")).status is Status.FAILED
    assert accounts.lookup(store, "olduser").password_hash == before     # not on a failure

    assert (await svc.login("olduser", "pw")).ok
    after = accounts.lookup(store, "olduser")
    assert "m=1024,t=1,p=1" in after.password_hash
    assert not argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1) \
        .check_needs_rehash(after.password_hash)
    assert after.scram       # the SCRAM verifiers are kept
    svc.cache.clear()
    check = CountingCheck(svc.hasher)
    assert (await svc.login("olduser", "pw")).ok
    assert accounts.lookup(store, "olduser").password_hash == after.password_hash   # once
    assert check.calls == 1


def test_rehash_never_overwrites_a_password_changed_meanwhile(store):
    a = accounts.lookup(store, "alice")
    accounts.set_password(store, "alice", "changed", hasher=FAST_HASHER)
    assert store.write_sync(accounts.replace_hash, a.id, a.password_hash, "bogus") is False
    assert accounts.authenticate(store, "alice", "changed")


def test_default_parameters_are_the_chosen_ones():
    cfg = AuthConfig()
    assert (cfg.argon2_memory_kib, cfg.argon2_time_cost, cfg.argon2_parallelism) == (19456, 2, 1)
    h = accounts.hash_password("pw")
    assert h.startswith("$argon2id$") and "m=19456,t=2,p=1" in h


# --- names that cannot be account names ------------------------------------------------------

@pytest.mark.parametrize("name", ["", " ", "a b", "x\0y", "é" * 200, "a" * 256])
async def test_impossible_names_fail_without_argon2_or_a_store_key(store, name):
    svc = service(store)
    check = CountingCheck(svc.hasher)
    assert (await svc.login(name, "pw")).status is Status.FAILED
    assert check.calls == 0
    assert svc.scram_lookup(name) is None and accounts.lookup(store, name) is None


@pytest.fixture(scope="module")
def names_store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("names") / "data")
    s.start()
    yield s
    s.close()


@settings(max_examples=200, deadline=None)
@given(name=hs.text(max_size=300))
def test_lookup_never_raises_for_any_name(names_store, name):
    assert accounts.lookup(names_store, name) is None
    assert accounts.scram_lookup(names_store, name) is None


# --- the penalty --------------------------------------------------------------------------------

PEN = dict(penalty_initial=1.0, penalty_max=8.0, penalty_decay=60.0)


async def test_penalty_grows_per_address_and_a_correct_password_does_not_reset_it(store, caplog):
    t = FakeTime()
    svc = service(store, t, **PEN)
    attacker = "203.0.113.7"
    caplog.set_level(logging.INFO, "mailaccess.auth")
    for i in range(4):      # four guesses (a repeated password would not count again)
        assert (await svc.login("alice", f"guess{i}", address=attacker)).status is Status.FAILED
    # waited before attempts 2, 3, 4: 1, 2, 4 seconds
    assert t.slept == [1.0, 2.0, 4.0]
    assert "failed login from 203.0.113.7 for 'alice'; penalty now 8s" in caplog.text
    # the attacker logs in to their own account: the address keeps its penalty
    assert (await svc.login("mallory", "mine", address=attacker)).ok
    assert t.slept[-1] == 8.0
    assert svc.penalty.delay(attacker, "alice") == 8.0
    assert svc.penalty.delay(attacker, None) == 8.0
    # ... and it applies to cache hits too (a right guess is not answered sooner)
    t.slept.clear()
    assert (await svc.login("mallory", "mine", address=attacker)).cached
    assert t.slept == [8.0]
    # another address is not slowed for another user
    t.slept.clear()
    assert (await svc.login("mallory", "mine", address="198.51.100.1")).ok
    assert t.slept == []


async def test_penalty_grows_per_user_name_across_addresses(store):
    t = FakeTime()
    svc = service(store, t, **PEN)
    # alice logged in before from home: that address stays trusted for her
    assert (await svc.login("alice", "pw", address="192.0.2.10")).ok
    for i in range(4):      # one guess each from four addresses
        await svc.login("alice", "guess", address=f"203.0.113.{i}")
        await svc.login("nobody", "guess", address=f"203.0.113.{100 + i}")
    assert svc.penalty.delay("198.51.100.9", "alice") == 8.0    # a fifth address
    assert svc.penalty.delay("198.51.100.9", "ALICE") == 8.0
    assert svc.penalty.delay("198.51.100.9", "nobody") == 0.0   # unknown names: no record
    assert svc.penalty.delay("192.0.2.10", "alice") == 0.0      # her own address
    t.slept.clear()
    assert (await svc.login("alice", "pw", address="192.0.2.10")).ok
    assert t.slept == []


def test_penalty_decays_with_time_and_is_capped():
    t = FakeTime()
    p = Penalty(1.0, 8.0, 60.0, 100, clock=t.clock)
    for _ in range(20):
        p.failed("10.0.0.1", None, known_user=False)
    assert p.delay("10.0.0.1", None) == 8.0         # capped
    t.now += 60 * 3                                  # three quiet periods: still at the cap
    assert p.delay("10.0.0.1", None) == 8.0
    t.now += 60
    assert p.delay("10.0.0.1", None) == 4.0
    t.now += 60 * 10
    assert p.delay("10.0.0.1", None) == 0.0
    assert not p.addresses.entries      # forgotten entirely


def test_penalty_memory_is_bounded():
    t = FakeTime()
    p = Penalty(1.0, 8.0, 60.0, 50, clock=t.clock)
    for i in range(5000):
        p.failed(f"10.{i // 256 % 256}.{i % 256}.1", f"user{i}", known_user=True)
        p.succeeded(f"10.{i // 256 % 256}.{i % 256}.2", f"user{i}")
    assert len(p.addresses.entries) <= 50 and len(p.users.entries) <= 50
    assert len(p.trusted) <= 50


def test_penalty_units_ipv6_by_64_and_mapped_ipv4():
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    t = FakeTime()
    p = Penalty(1.0, 8.0, 60.0, 100, clock=t.clock)
    p.failed("2001:db8::1", None, known_user=False)
    p.failed("2001:db8::2", None, known_user=False)
    assert p.delay("2001:db8::3", None) == 2.0


async def test_penalty_zero_disables_it(store):
    t = FakeTime()
    svc = service(store, t)
    for _ in range(5):
        await svc.login("alice", "guess", address="10.0.0.1")
    assert t.slept == [] and svc.penalty.delay("10.0.0.1", "alice") == 0.0


def test_config_rejects_impossible_argon2_parameters():
    with pytest.raises(ValueError):
        AuthConfig(argon2_time_cost=0)
    with pytest.raises(ValueError):
        AuthConfig(argon2_memory_kib=8, argon2_parallelism=4)
    with pytest.raises(ValueError):
        AuthConfig(verify_threads=0)
    assert dataclasses.replace(AuthConfig(), verify_threads=4).verify_threads == 4
