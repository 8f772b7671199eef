"""The shared-state layer: one contract for the memory and Redis stores, Redis specifics, and failover.

The contract tests run once per engine (``backend`` fixture): ``memory`` always,
``redis`` against the test database of ``redis_url`` (skipped without Redis,
except in CI). The failover tests start their own redis-server on a free port,
so they can stop and restart it.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable, List, Optional

import pytest

from kf_plugin.errors import ConfigError
from kf_plugin.state import (Grant, MemoryReplayStore, MemoryTokenStore, MemoryWindowStore, Token, WindowRecord)
from kf_plugin.state.base import PushClaim
from kf_plugin.state.failover import Failover, FailoverTokenStore, FailoverWindowStore
from kf_plugin.state.failover_replay import FailoverReplayStore
from kf_plugin.state.shared import SharedState, open_state

from .conftest import FakeClock, PrivateRedis

T0 = 1_700_000_000.0
HOUR = 3600.0
JOIN = 10.0      # seconds a test waits for its threads before declaring a hang
POLL_LIMIT = 5.0  # seconds a test polls for an expiry or a server before giving up
APPID = "wxapp"


def eventually(predicate: Callable[[], bool], limit: float = POLL_LIMIT) -> bool:
    """Poll ``predicate`` until it holds or ``limit`` seconds pass (for expiries and servers, not for timing)."""
    deadline = time.monotonic() + limit
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def run_threads(count: int, target: Callable[[int], Any]) -> List[Any]:
    """Run ``target(i)`` in ``count`` threads released together; their results in order."""
    barrier = threading.Barrier(count)
    results: List[Any] = [None] * count
    errors: List[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(JOIN)
            results[i] = target(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert not any(thread.is_alive() for thread in threads), "threads hung"
    assert not errors, errors
    return results


class SignallingCondition(threading.Condition):
    """A Condition (on the store's lock) that tells when someone has started waiting on it (and so released
    its lock)."""

    def __init__(self, lock):
        super().__init__(lock)
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waiting.set()
        return super().wait(timeout)


class PendingSpy:
    """Wraps a Redis store's look at a key; ``seen_pending`` is set once it has found the key pending.

    The tests complete (or release) the key only after that, so what it found was the pending claim.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.seen_pending = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.inner(*args, **kwargs)
        if answer is not None and answer[0] == b"P":
            self.seen_pending.set()
        return answer


# -- the engines ------------------------------------------------------------------------------------------

class Backend:
    """Makes the stores of one engine; ``short_ttl`` and :meth:`lapses` let a test see expiries."""

    def __init__(self, name: str, redis_url: Optional[str] = None):
        self.name = name
        self.clock = FakeClock(T0)
        self.redis = None
        if redis_url is not None:
            import redis
            self.redis = redis.Redis.from_url(redis_url)
        # Memory expiries follow the fake clock; Redis expiries follow real time, so keep them short.
        self.short_ttl = 30.0 if self.redis is None else 0.3

    def replay(self, prefix: str = "kf:wxapp:"):
        if self.redis is None:
            return MemoryReplayStore(clock=self.clock)
        from kf_plugin.state.redis import RedisReplayStore
        return RedisReplayStore(self.redis, prefix, poll=0.005)

    def window(self, prefix: str = "kf:wxapp:"):
        if self.redis is None:
            return MemoryWindowStore()
        from kf_plugin.state.redis import RedisWindowStore
        return RedisWindowStore(self.redis, prefix)

    def tokens(self, appid: str = APPID, prefix: str = "kf:"):
        if self.redis is None:
            return MemoryTokenStore(clock=self.clock)
        from kf_plugin.state.redis_tokens import RedisTokenStore
        return RedisTokenStore(self.redis, appid, prefix)  # real time, as Redis expires keys by it

    def lapses(self, ttl: float, predicate: Callable[[], bool]) -> bool:
        """Let ``ttl`` seconds pass; whether ``predicate`` then holds (Redis: within the polling limit)."""
        if self.redis is None:
            self.clock.advance(ttl)
            return predicate()
        return eventually(predicate)

    def watch_waiting(self, store: Any) -> threading.Event:
        """An event set once ``store.wait`` has seen its key pending (so it is waiting, not returning)."""
        if self.redis is None:
            store._changed = SignallingCondition(store._lock)
            return store._changed.waiting
        spy = PendingSpy(store._peek)
        store._peek = spy
        return spy.seen_pending


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> Backend:
    if request.param == "memory":
        return Backend("memory")
    return Backend("redis", request.getfixturevalue("redis_url"))


# -- ReplayStore contract ---------------------------------------------------------------------------------

def test_replay_claim_is_exclusive(backend):
    store = backend.replay()
    assert store.claim("k", 60) is True
    assert store.claim("k", 60) is False
    assert store.claim("other", 60) is True


@pytest.mark.parametrize("reply", ["<xml><Content>hi</Content></xml>", "", "你好，客服马上来 🙂 ñ €", "P", "D"],
                         ids=["xml", "empty", "unicode", "looks-pending", "looks-done"])
def test_replay_complete_then_wait_returns_the_reply(backend, reply):
    store = backend.replay()
    assert store.claim("k", 60)
    store.complete("k", reply, 60)
    assert store.wait("k", 0.05) == reply
    assert store.claim("k", 60) is False  # a done key is not absent


def test_replay_wait_returns_at_once_when_done(backend):
    store = backend.replay()
    store.claim("k", 60)
    store.complete("k", "done", 60)
    started = time.monotonic()
    assert store.wait("k", 30) == "done"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("reply", ["<xml>r</xml>", ""], ids=["reply", "empty-reply"])
def test_replay_a_claim_given_its_answer_stores_it_as_the_reply(backend, reply):
    store = backend.replay()
    claim = store.acquire(PushClaim("k", 60, answer=reply))
    assert (claim.outcome.name, claim.answered) == ("CLAIMED", True)
    retry = store.acquire(PushClaim("k", 60, answer="another answer"))
    assert (retry.outcome.name, retry.reply, retry.answered) == ("DONE", reply, False)
    store.release("k")                           # nothing pending to release
    assert store.wait("k", 0.05) == reply


def test_redis_reads_its_clock_only_for_a_claim_that_needs_a_lease(redis_url):
    """A first claim that stores a known answer runs no TIME; a pending claim, and a claim that finds a pending
    one, read Redis's clock (a lease is judged by it)."""
    backend = Backend("redis", redis_url)
    store = backend.replay()
    store.acquire(PushClaim("warm", 60, answer="a"))   # loads the script, notes the found-empty marker

    def clock_reads(claim: PushClaim) -> int:
        before = backend.redis.info("commandstats").get("cmdstat_time", {}).get("calls", 0)
        store.acquire(claim)
        return backend.redis.info("commandstats").get("cmdstat_time", {}).get("calls", 0) - before

    assert clock_reads(PushClaim("known", 60, answer="<xml>r</xml>")) == 0
    assert clock_reads(PushClaim("pending", 60)) == 1
    assert clock_reads(PushClaim("pending", 60, answer="<xml>r</xml>")) == 1
    store.release("pending")


def test_replay_a_claim_given_its_answer_leaves_a_pending_claim_alone(backend):
    store = backend.replay()
    assert store.claim("k", 60)
    claim = store.acquire(PushClaim("k", 60, answer="mine"))
    assert (claim.outcome.name, claim.answered) == ("PENDING", False)
    store.complete("k", "theirs", 60)
    assert store.wait("k", 0.05) == "theirs"


def test_replay_release_of_a_pending_key_lets_a_new_claim_succeed(backend):
    store = backend.replay()
    assert store.claim("k", 60)
    store.release("k")
    assert store.wait("k", 0.05) is None  # absent again
    assert store.claim("k", 60) is True
    assert store.claim("k", 60) is False


@pytest.mark.parametrize("reply", ["<xml>r</xml>", ""], ids=["reply", "empty-reply"])
def test_replay_release_does_not_delete_a_completed_reply(backend, reply):
    store = backend.replay()
    store.claim("k", 60)
    store.complete("k", reply, 60)
    store.release("k")
    assert store.wait("k", 0.05) == reply
    assert store.claim("k", 60) is False


def test_replay_release_of_an_absent_key_does_nothing(backend):
    store = backend.replay()
    store.release("nothing")
    assert store.claim("nothing", 60) is True


def test_replay_wait_on_an_absent_key_returns_none_at_once(backend):
    store = backend.replay()
    started = time.monotonic()
    assert store.wait("absent", 30) is None
    assert time.monotonic() - started < 5


def test_replay_wait_on_a_pending_key_times_out(backend):
    store = backend.replay()
    store.claim("k", 60)
    started = time.monotonic()
    assert store.wait("k", 0.05) is None
    assert 0.05 <= time.monotonic() - started < 5
    assert store.claim("k", 60) is False  # still pending after the timeout


def test_replay_a_waiter_in_another_thread_is_woken_by_complete(backend):
    store = backend.replay()
    waiting = backend.watch_waiting(store)
    store.claim("k", 60)
    result: List[Optional[str]] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait("k", 60)), daemon=True)
    waiter.start()
    assert waiting.wait(JOIN), "the waiter never saw the key pending"
    store.complete("k", "答复", 60)
    waiter.join(JOIN)
    assert not waiter.is_alive(), "complete did not wake the waiter"
    assert result == ["答复"]


def test_replay_a_waiter_is_released_with_none_when_the_claim_is_released(backend):
    store = backend.replay()
    waiting = backend.watch_waiting(store)
    store.claim("k", 60)
    result: List[Optional[str]] = []
    waiter = threading.Thread(target=lambda: result.append(store.wait("k", 60)), daemon=True)
    waiter.start()
    assert waiting.wait(JOIN)
    store.release("k")
    waiter.join(JOIN)
    assert not waiter.is_alive(), "release did not end the wait"
    assert result == [None]


def test_replay_twenty_threads_claiming_one_key_get_exactly_one_claim(backend):
    store = backend.replay()
    results = run_threads(20, lambda i: store.claim("same-key", 60))
    assert results.count(True) == 1
    assert results.count(False) == 19


def test_replay_a_pending_claim_expires_after_its_ttl(backend):
    store = backend.replay()
    assert store.claim("k", backend.short_ttl)
    assert backend.lapses(backend.short_ttl, lambda: store.wait("k", 0) is None and store.claim("k", 60))


def test_replay_a_done_reply_expires_after_its_ttl(backend):
    store = backend.replay()
    store.claim("k", 60)
    store.complete("k", "r", backend.short_ttl)
    assert store.wait("k", 0) == "r"
    assert backend.lapses(backend.short_ttl, lambda: store.wait("k", 0) is None)


def test_memory_replay_keys_live_until_their_ttl():
    clock = FakeClock()
    store = MemoryReplayStore(clock=clock)
    store.claim("pending", 10)
    store.claim("done", 60)
    store.complete("done", "r", 10)
    clock.advance(9.9)
    assert store.claim("pending", 10) is False
    assert store.wait("done", 0) == "r"


# -- WindowStore contract ---------------------------------------------------------------------------------

MESSAGE = Grant("message", 5, T0 + 48 * HOUR)
CLICK = Grant("click", 3, T0 + 60)
PAYMENT = Grant("payment", None, T0 + 48 * HOUR)


def grants_of(store, openid: str, now: float):
    record = store.get(openid, now)
    return None if record is None else sorted(record.grants, key=lambda g: (g.expires_at, g.action))


def test_window_unknown_user(backend):
    store = backend.window()
    assert store.get("oU", T0) is None
    assert store.consume("oU", T0) is None


def test_window_add_grant_then_get(backend):
    store = backend.window()
    store.add_grant("oU", MESSAGE, T0)
    store.add_grant("oU", CLICK, T0)
    store.add_grant("oU", PAYMENT, T0)
    assert grants_of(store, "oU", T0) == [CLICK, MESSAGE, PAYMENT]
    assert store.get("oOther", T0) is None


@pytest.mark.parametrize("now", [1_700_000_000.123456, 1_712_345_678.987654, 1_700_000_000.5],
                         ids=["micro-1", "micro-2", "half"])
def test_window_a_grant_made_at_a_real_clock_time_round_trips_exactly(backend, now):
    """``time.time()`` has microseconds: the grant read back must be the grant recorded."""
    store = backend.window()
    grant = Grant("message", 5, now + 48 * HOUR)
    store.add_grant("oU", grant, now)
    assert store.get("oU", now) == WindowRecord((grant,))
    assert store.consume("oU", now) == Grant("message", 5, now + 48 * HOUR, used=1)


@pytest.mark.parametrize("now, expected", [
    (T0, [CLICK, MESSAGE]),
    (T0 + 59, [CLICK, MESSAGE]),
    (T0 + 60, [MESSAGE]),                 # a grant is over at its expires_at
    (T0 + 61, [MESSAGE]),
    (T0 + 48 * HOUR + 1, []),             # all over: the user stays known
], ids=["start", "before-click-ends", "click-ends", "after-click", "after-all"])
def test_window_get_drops_expired_grants(backend, now, expected):
    store = backend.window()
    store.add_grant("oU", MESSAGE, T0)
    store.add_grant("oU", CLICK, T0)
    assert grants_of(store, "oU", now) == expected


def test_window_consume_uses_the_usable_grant_expiring_first(backend):
    store = backend.window()
    store.add_grant("oU", MESSAGE, T0)
    store.add_grant("oU", CLICK, T0)
    assert store.consume("oU", T0) == Grant("click", 3, T0 + 60, used=1)
    assert store.consume("oU", T0) == Grant("click", 3, T0 + 60, used=2)
    assert grants_of(store, "oU", T0) == [Grant("click", 3, T0 + 60, used=2), MESSAGE]
    assert store.consume("oU", T0) == Grant("click", 3, T0 + 60, used=3)
    # the click grant is used up: the message grant is next, though it expires later
    assert store.consume("oU", T0) == Grant("message", 5, T0 + 48 * HOUR, used=1)
    assert grants_of(store, "oU", T0) == [Grant("click", 3, T0 + 60, used=3),
                                          Grant("message", 5, T0 + 48 * HOUR, used=1)]


def test_window_consume_skips_expired_grants(backend):
    store = backend.window()
    store.add_grant("oU", MESSAGE, T0)
    store.add_grant("oU", CLICK, T0)
    assert store.consume("oU", T0 + 61) == Grant("message", 5, T0 + 48 * HOUR, used=1)


def test_window_consume_picks_by_expiry_not_by_insertion_order(backend):
    store = backend.window()
    late, early = Grant("message", 5, T0 + 200), Grant("follow", 3, T0 + 100)
    store.add_grant("oU", late, T0)
    store.add_grant("oU", early, T0)
    assert store.consume("oU", T0) == Grant("follow", 3, T0 + 100, used=1)


def test_window_an_unlimited_grant_never_runs_out(backend):
    store = backend.window()
    store.add_grant("oU", PAYMENT, T0)
    for used in range(1, 101):
        assert store.consume("oU", T0) == Grant("payment", None, T0 + 48 * HOUR, used=used)
    assert store.consume("oU", T0 + 48 * HOUR - 1) is not None
    assert store.consume("oU", T0 + 48 * HOUR) is None


@pytest.mark.parametrize("grants, now", [
    ([], T0),
    ([Grant("click", 3, T0 + 60, used=3)], T0),
    ([Grant("click", 0, T0 + 60)], T0),
    ([CLICK, PAYMENT], T0 + 48 * HOUR + 1),
], ids=["no-grants", "used-up", "zero-count", "all-expired"])
def test_window_consume_returns_none_when_nothing_is_usable(backend, grants, now):
    store = backend.window()
    store.revoke("oU", T0, exhausted=False)  # known, with nothing
    for grant in grants:
        store.add_grant("oU", grant, T0)
    assert store.consume("oU", now) is None


def test_window_revoke_exhausted_uses_counted_grants_up_and_drops_unlimited_ones(backend):
    store = backend.window()
    store.add_grant("oU", MESSAGE, T0)
    store.add_grant("oU", CLICK, T0)
    store.add_grant("oU", PAYMENT, T0)
    store.consume("oU", T0)  # click used=1
    store.revoke("oU", T0, exhausted=True)
    assert grants_of(store, "oU", T0) == [Grant("click", 3, T0 + 60, used=3),
                                          Grant("message", 5, T0 + 48 * HOUR, used=5)]
    assert store.consume("oU", T0) is None


def test_window_revoke_not_exhausted_drops_every_grant_but_keeps_the_user_known(backend):
    store = backend.window()
    store.add_grant("oU", MESSAGE, T0)
    store.add_grant("oU", PAYMENT, T0)
    store.revoke("oU", T0, exhausted=False)
    assert store.get("oU", T0) == WindowRecord(())
    assert store.consume("oU", T0) is None


@pytest.mark.parametrize("exhausted", [True, False], ids=["45047", "45015"])
def test_window_revoke_makes_an_unknown_user_known(backend, exhausted):
    store = backend.window()
    store.revoke("oNew", T0, exhausted=exhausted)
    assert store.get("oNew", T0) == WindowRecord(())


@pytest.mark.parametrize("exhausted", [True, False], ids=["45047", "45015"])
def test_window_a_new_interaction_after_a_revoke_grants_again(backend, exhausted):
    store = backend.window()
    store.add_grant("oU", CLICK, T0)
    store.revoke("oU", T0, exhausted=exhausted)
    store.add_grant("oU", Grant("message", 5, T0 + 10 + 48 * HOUR), T0 + 10)
    assert store.consume("oU", T0 + 10) == Grant("message", 5, T0 + 10 + 48 * HOUR, used=1)


def test_window_users_are_independent(backend):
    store = backend.window()
    store.add_grant("oA", CLICK, T0)
    store.add_grant("oB", MESSAGE, T0)
    store.revoke("oB", T0, exhausted=True)
    assert store.consume("oA", T0) == Grant("click", 3, T0 + 60, used=1)
    assert store.consume("oB", T0) is None


def test_window_twenty_threads_consuming_a_five_unit_grant_get_exactly_five(backend):
    store = backend.window()
    store.add_grant("oU", Grant("message", 5, T0 + 48 * HOUR), T0)
    results = run_threads(20, lambda i: store.consume("oU", T0))
    granted = [g for g in results if g is not None]
    assert len(granted) == 5
    assert sorted(g.used for g in granted) == [1, 2, 3, 4, 5]
    assert grants_of(store, "oU", T0) == [Grant("message", 5, T0 + 48 * HOUR, used=5)]


# -- TokenStore contract ----------------------------------------------------------------------------------

def test_token_get_and_put(backend):
    store = backend.tokens()
    assert store.get() is None
    first = Token("ACCESS-1", T0 + 7200)
    store.put(first, T0)
    assert store.get() == first
    second = Token("ACCESS-2", T0 + 3600.25)
    store.put(second, T0)
    assert store.get() == second


def test_token_is_gone_once_it_expires(backend):
    store = backend.tokens()
    store.put(Token("SHORT", T0 + backend.short_ttl), T0)
    assert store.get() == Token("SHORT", T0 + backend.short_ttl)
    assert backend.lapses(backend.short_ttl, lambda: store.get() is None)


def test_token_invalidate_is_compare_and_swap(backend):
    store = backend.tokens()
    token = Token("CURRENT", T0 + 7200)
    store.put(token, T0)
    assert store.invalidate("STALE") is False
    assert store.get() == token
    assert store.invalidate("CURRENT") is True
    assert store.get() is None
    assert store.invalidate("CURRENT") is False


def test_token_invalidate_without_a_token(backend):
    assert backend.tokens().invalidate("ANY") is False


OWNERS = [
    ("a", "b"),
    ("web-1:4242:0f3c9a1b", "web-2:4242:0f3c9a1b"),   # what TokenService uses: host:pid:uuid
    ("a", "ab"),
    ("ab", "a"),
    ("a|1", "a|2"),                                   # an owner is any string
    ("a|b", "a"),
    ("a", "a|b"),
    ("工人-1", "工人-2"),
]


@pytest.mark.parametrize("a, b", OWNERS, ids=[f"{a}/{b}" for a, b in OWNERS])
def test_lease_lifecycle(backend, a, b):
    store = backend.tokens()
    steps = [
        (lambda: store.holder("renew"), None),
        (lambda: store.acquire("renew", a, 60), True),      # free
        (lambda: store.holder("renew"), a),
        (lambda: store.acquire("renew", b, 60), False),     # held by another owner
        (lambda: store.holder("renew"), a),
        (lambda: store.acquire("renew", a, 60), True),      # the holder extends it
        (lambda: store.holder("renew"), a),
        (lambda: store.release("renew", b), None),          # not b's to release
        (lambda: store.holder("renew"), a),
        (lambda: store.acquire("renew", b, 60), False),
        (lambda: store.release("renew", a), None),
        (lambda: store.holder("renew"), None),
        (lambda: store.acquire("renew", b, 60), True),      # after release another owner gets it
        (lambda: store.holder("renew"), b),
    ]
    for number, (step, expected) in enumerate(steps):
        assert step() == expected, f"step {number}"


def test_leases_of_different_names_are_independent(backend):
    store = backend.tokens()
    assert store.acquire("leader", "a", 60)
    assert store.acquire("renew", "b", 60)
    assert (store.holder("leader"), store.holder("renew")) == ("a", "b")
    store.release("renew", "b")
    assert store.holder("leader") == "a"


def test_lease_expires_after_its_ttl(backend):
    store = backend.tokens()
    assert store.acquire("leader", "dead-worker", backend.short_ttl)
    assert store.acquire("leader", "b", 60) is False
    assert backend.lapses(backend.short_ttl, lambda: store.holder("leader") is None)
    assert store.acquire("leader", "b", 60) is True
    assert store.holder("leader") == "b"


def test_lease_extension_moves_its_expiry(backend):
    store = backend.tokens()
    assert store.acquire("leader", "a", backend.short_ttl)
    assert store.acquire("leader", "a", 3600)
    # a lease taken now with the short ttl tells when the first one would have ended
    assert store.acquire("probe", "timer", backend.short_ttl)
    assert backend.lapses(backend.short_ttl, lambda: store.holder("probe") is None)
    assert store.holder("leader") == "a"
    assert store.acquire("leader", "b", 60) is False


def test_counter_increments_and_resets_after_its_ttl(backend):
    store = backend.tokens()
    assert [store.count("force-refresh", backend.short_ttl) for _ in range(3)] == [1, 2, 3]
    assert store.count("other", backend.short_ttl) == 1
    assert backend.lapses(backend.short_ttl, lambda: store.count("force-refresh", backend.short_ttl) == 1)
    assert store.count("force-refresh", backend.short_ttl) == 2


def test_counter_is_exact_under_concurrency(backend):
    store = backend.tokens()
    results = run_threads(20, lambda i: store.count("force-refresh", 86400))
    assert sorted(results) == list(range(1, 21))


def test_memory_lease_and_counter_hold_until_their_ttl():
    clock = FakeClock()
    store = MemoryTokenStore(clock=clock)
    store.acquire("leader", "a", 10)
    assert store.count("n", 10) == 1
    clock.advance(9.99)
    assert store.holder("leader") == "a"
    assert store.acquire("leader", "b", 10) is False
    assert store.count("n", 10) == 2
    clock.advance(0.01)
    assert store.holder("leader") is None
    assert store.count("n", 10) == 1


def test_memory_lease_extension_counts_from_the_extension():
    clock = FakeClock()
    store = MemoryTokenStore(clock=clock)
    store.acquire("leader", "a", 10)
    clock.advance(8)
    store.acquire("leader", "a", 10)
    clock.advance(8)  # 16 s after the first acquire, 8 s after the extension
    assert store.holder("leader") == "a"
    clock.advance(2)
    assert store.holder("leader") is None


# -- Redis specifics --------------------------------------------------------------------------------------

@pytest.fixture
def connection(redis_url):
    import redis
    return redis.Redis.from_url(redis_url)


def keys_of(connection) -> List[str]:
    # The test session's own claim on the database is not the stores' business.
    return sorted(key.decode() for key in connection.scan_iter(count=1000) if key != b"kf-test:claimed-by")


def exercise(name: str, state: SharedState) -> None:
    """Run one kind of operation through ``state`` (each step leaves at least one key)."""
    if name == "claim":
        state.replay.claim("push-1", 30)
    elif name == "complete":
        state.replay.claim("push-1", 30)
        state.replay.complete("push-1", "<xml/>", 30)
    elif name == "release-then-claim":
        state.replay.claim("push-1", 30)
        state.replay.release("push-1")
        state.replay.claim("push-1", 30)
    elif name == "add-grant":
        state.window.add_grant("oU", Grant("message", 5, time.time() + 48 * HOUR), time.time())
    elif name == "add-expired-grant":
        state.window.add_grant("oU", Grant("click", 3, time.time() - 1), time.time())
    elif name == "consume":
        state.window.add_grant("oU", Grant("click", 3, time.time() + 60), time.time())
        state.window.consume("oU", time.time())
    elif name == "consume-unknown":
        state.window.consume("oU", time.time())  # may leave nothing, but nothing without a TTL
    elif name == "revoke-exhausted":
        state.window.add_grant("oU", Grant("click", 3, time.time() + 60), time.time())
        state.window.revoke("oU", time.time(), exhausted=True)
    elif name == "revoke-unknown-user":
        state.window.revoke("oU", time.time(), exhausted=False)
    elif name == "put-token":
        state.tokens.put(Token("ACCESS", time.time() + 7200), time.time())
    elif name == "invalidate-wrong":
        state.tokens.put(Token("ACCESS", time.time() + 7200), time.time())
        state.tokens.invalidate("OTHER")
    elif name == "acquire":
        state.tokens.acquire("leader", "me", 180)
    elif name == "extend":
        state.tokens.acquire("leader", "me", 180)
        state.tokens.acquire("leader", "me", 180)
    elif name == "count":
        state.tokens.count("force-refresh", 86400)
        state.tokens.count("force-refresh", 86400)
    else:  # pragma: no cover
        raise AssertionError(name)


OPERATIONS = ["claim", "complete", "release-then-claim", "add-grant", "add-expired-grant", "consume",
              "consume-unknown", "revoke-exhausted", "revoke-unknown-user", "put-token", "invalidate-wrong",
              "acquire", "extend", "count"]
LEAVES_NO_KEY = {"consume-unknown"}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_redis_key_has_a_ttl_and_the_configured_prefix(redis_url, connection, operation):
    state = open_state(redis_url, APPID, prefix="bot7:")
    exercise(operation, state)
    keys = keys_of(connection)
    if operation not in LEAVES_NO_KEY:
        assert keys, "the operation wrote nothing to Redis"
    for key in keys:
        assert connection.pttl(key) > 0, f"{key} has no TTL (PTTL {connection.pttl(key)})"
        assert (key.startswith(("bot7:{wxapp}:", "bot7:{wechatpy:wxapp_access_token}:"))
                or key == "wechatpy:wxapp_access_token"), key
    assert state.replay.failover.degraded is False


def test_redis_keys_after_a_mix_of_operations(redis_url, connection):
    state = open_state(redis_url, APPID)
    for operation in OPERATIONS:
        exercise(operation, state)
    keys = keys_of(connection)
    assert "wechatpy:wxapp_access_token" in keys
    assert all(key.startswith(("kf:{wxapp}:", "kf:{wechatpy:wxapp_access_token}:"))
               for key in keys if key != "wechatpy:wxapp_access_token"), keys
    assert all(connection.pttl(key) > 0 for key in keys)


def test_redis_window_key_lives_until_its_last_grant_ends(connection):
    from kf_plugin.state.redis import RedisWindowStore
    store = RedisWindowStore(connection, "kf:wxapp:", remember=600)
    now = time.time()
    store.add_grant("oU", Grant("message", 5, now + 48 * HOUR), now)
    assert 48 * HOUR * 1000 - 5000 < connection.pttl("kf:wxapp:window:oU") <= 48 * HOUR * 1000
    store.revoke("oU", now, exhausted=False)  # nothing left: remembered for ``remember``
    assert 595_000 < connection.pttl("kf:wxapp:window:oU") <= 600_000


def test_redis_token_is_stored_where_and_how_wechatpy_reads_it(connection):
    from wechatpy.session.redisstorage import RedisStorage

    from kf_plugin.state.redis_tokens import RedisTokenStore
    store = RedisTokenStore(connection, APPID)
    now = time.time()
    store.put(Token("ACCESS-令牌", now + 7200), now)
    assert json.loads(connection.get(f"wechatpy:{APPID}_access_token")) == "ACCESS-令牌"  # JSON, as wechatpy keeps it
    assert RedisStorage(connection).get(f"{APPID}_access_token") == "ACCESS-令牌"
    assert 7195_000 < connection.pttl(f"wechatpy:{APPID}_access_token") <= 7200_000


def test_open_state_token_is_readable_by_wechatpy(redis_url, connection):
    import redis
    from wechatpy.session.redisstorage import RedisStorage
    state = open_state(redis_url, APPID)
    state.tokens.put(Token("FROM-OPEN-STATE", time.time() + 7200), time.time())
    assert RedisStorage(redis.Redis.from_url(redis_url)).get(f"{APPID}_access_token") == "FROM-OPEN-STATE"


def test_open_state_session_prefix_is_wechatpys_prefix(redis_url, connection):
    from wechatpy.session.redisstorage import RedisStorage
    state = open_state(redis_url, APPID, session_prefix="sess")
    state.tokens.put(Token("T", time.time() + 7200), time.time())
    assert RedisStorage(connection, prefix="sess").get(f"{APPID}_access_token") == "T"
    assert RedisStorage(connection).get(f"{APPID}_access_token") is None


def test_redis_token_written_by_plain_wechatpy_is_read_with_an_expiry_from_its_ttl(connection):
    from wechatpy.session.redisstorage import RedisStorage

    from kf_plugin.state.redis_tokens import RedisTokenStore
    clock = FakeClock(T0)
    RedisStorage(connection).set(f"{APPID}_access_token", "WECHATPY-TOKEN", 7200)
    token = RedisTokenStore(connection, APPID, clock=clock).get()
    assert token is not None and token.value == "WECHATPY-TOKEN"
    assert T0 + 7190 <= token.expires_at <= T0 + 7200


@pytest.mark.parametrize("ours_first", ["invalidated", "overwritten"])
def test_redis_token_wechatpy_writes_later_carries_its_own_expiry(connection, ours_first):
    """Our expiry belongs to our token: a token wechatpy stores afterwards must not inherit it."""
    from wechatpy.session.redisstorage import RedisStorage

    from kf_plugin.state.redis_tokens import RedisTokenStore
    clock = FakeClock(T0)
    store = RedisTokenStore(connection, APPID, clock=clock)
    store.put(Token("OURS", T0 + 7200), T0)
    if ours_first == "invalidated":
        assert store.invalidate("OURS")
    RedisStorage(connection).set(f"{APPID}_access_token", "THEIRS", 300)
    token = store.get()
    assert token is not None and token.value == "THEIRS"
    assert T0 + 290 <= token.expires_at <= T0 + 300, f"expires in {token.expires_at - T0:.0f} s, key TTL is 300 s"


def test_two_accounts_do_not_see_each_others_state(redis_url):
    a, b = open_state(redis_url, "wxA"), open_state(redis_url, "wxB")
    now = time.time()
    assert a.replay.claim("push", 60) and b.replay.claim("push", 60)
    a.replay.complete("push", "from-a", 60)
    assert b.replay.wait("push", 0.05) is None  # b's claim is still pending
    a.window.add_grant("oU", Grant("message", 5, now + HOUR), now)
    assert b.window.get("oU", now) is None
    assert b.window.consume("oU", now) is None
    a.tokens.put(Token("TOKEN-A", now + 7200), now)
    assert b.tokens.get() is None
    assert b.tokens.invalidate("TOKEN-A") is False
    assert a.tokens.get().value == "TOKEN-A"
    assert a.tokens.acquire("leader", "worker-a", 60)
    assert b.tokens.holder("leader") is None
    assert b.tokens.acquire("leader", "worker-b", 60)
    assert a.tokens.count("force-refresh", 60) == 1
    assert b.tokens.count("force-refresh", 60) == 1


def test_two_prefixes_do_not_see_each_others_state(connection):
    from kf_plugin.state.redis import RedisReplayStore, RedisWindowStore
    from kf_plugin.state.redis_tokens import RedisTokenStore
    now = time.time()
    replay_a, replay_b = RedisReplayStore(connection, "one:"), RedisReplayStore(connection, "two:")
    window_a, window_b = RedisWindowStore(connection, "one:"), RedisWindowStore(connection, "two:")
    tokens_a, tokens_b = RedisTokenStore(connection, APPID, "one:"), RedisTokenStore(connection, APPID, "two:")
    assert replay_a.claim("k", 60) and replay_b.claim("k", 60)
    window_a.revoke("oU", now, exhausted=True)
    assert window_b.get("oU", now) is None
    assert tokens_a.acquire("leader", "a", 60) and tokens_b.acquire("leader", "b", 60)
    assert tokens_a.count("n", 60) == 1 and tokens_b.count("n", 60) == 1


# -- Failover: unit ---------------------------------------------------------------------------------------

FAILOVER_LOG = "kf_plugin.state.failover"


def warnings_of(caplog) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == FAILOVER_LOG and r.levelno == logging.WARNING]


class FlakyPrimary:
    """A primary operation that fails with ``error`` while ``down``; counts its calls."""

    def __init__(self, error: BaseException):
        self.error = error
        self.down = False
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.down:
            raise self.error
        return "primary"


def _redis_error(name: str) -> BaseException:
    from redis import exceptions
    return {"connection": exceptions.ConnectionError("refused"), "timeout": exceptions.TimeoutError("slow"),
            "os": ConnectionRefusedError(111, "refused"), "socket-timeout": TimeoutError("timed out")}[name]


@pytest.mark.parametrize("error", ["connection", "os"])
def test_failover_after_a_refusal_tries_the_primary_on_every_operation(caplog, error):
    caplog.set_level(logging.WARNING, logger=FAILOVER_LOG)
    failover = Failover("test state", retry_after=5, clock=FakeClock())
    primary = FlakyPrimary(_redis_error(error))
    primary.down = True
    for calls in range(1, 4):     # a refusal costs little: the next operation tries again at once
        assert failover.run(primary, lambda: "fallback") == "fallback"
        assert (primary.calls, failover.degraded, failover.bypassing) == (calls, True, False)
    primary.down = False
    assert failover.run(primary, lambda: "fallback") == "primary"
    assert not failover.degraded
    assert [m.split(" ")[2] for m in warnings_of(caplog)] == ["unreachable", "back"]


@pytest.mark.parametrize("error", ["timeout", "socket-timeout"])
def test_failover_falls_back_warns_once_retries_and_comes_back(caplog, error):
    caplog.set_level(logging.WARNING, logger=FAILOVER_LOG)
    clock = FakeClock()
    failover = Failover("test state", retry_after=5, clock=clock)
    primary = FlakyPrimary(_redis_error(error))
    fallback = lambda: "fallback"  # noqa: E731

    assert failover.run(primary, fallback) == "primary"
    assert failover.degraded is False and warnings_of(caplog) == []

    primary.down = True
    assert failover.run(primary, fallback) == "fallback"
    assert failover.degraded is True
    assert primary.calls == 2
    for _ in range(10):  # within retry_after: Redis is not even tried
        assert failover.run(primary, fallback) == "fallback"
    assert primary.calls == 2
    for _ in range(3):   # each retry fails again: no new warning
        clock.advance(5)
        assert failover.run(primary, fallback) == "fallback"
    assert primary.calls == 5
    assert len(warnings_of(caplog)) == 1
    assert "unreachable" in warnings_of(caplog)[0] and "test state" in warnings_of(caplog)[0]

    primary.down = False
    clock.advance(4.5)
    assert failover.run(primary, fallback) == "fallback"  # not yet time to retry
    assert primary.calls == 5
    clock.advance(0.5)
    assert failover.run(primary, fallback) == "primary"
    assert failover.degraded is False
    assert failover.run(primary, fallback) == "primary"
    messages = warnings_of(caplog)
    assert len(messages) == 2 and "back" in messages[1]


def test_failover_lets_other_errors_through():
    failover = Failover("test state", clock=FakeClock())

    def broken():
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        failover.run(broken, lambda: "fallback")
    assert failover.degraded is False


# -- Failover: against a redis-server the test stops and starts ---------------------------------------------

def use_everything(state: SharedState, tag: str) -> None:
    """One of every operation, each checked: they must work whichever store answers."""
    now = float(int(time.time()))  # whole seconds: grant precision is tested on its own above
    assert state.replay.claim(f"push-{tag}", 60) is True
    assert state.replay.claim(f"push-{tag}", 60) is False
    state.replay.complete(f"push-{tag}", f"reply-{tag}", 60)
    assert state.replay.wait(f"push-{tag}", 0.05) == f"reply-{tag}"
    state.window.add_grant(f"o{tag}", Grant("click", 3, now + 60), now)
    assert state.window.consume(f"o{tag}", now) == Grant("click", 3, now + 60, used=1)
    assert state.window.get(f"o{tag}", now) == WindowRecord((Grant("click", 3, now + 60, used=1),))
    state.tokens.put(Token(f"token-{tag}", now + 7200), now)
    assert state.tokens.get().value == f"token-{tag}"
    assert state.tokens.acquire(f"leader-{tag}", "me", 60) is True
    assert state.tokens.acquire(f"leader-{tag}", "other", 60) is False
    assert state.tokens.holder(f"leader-{tag}") == "me"
    assert state.tokens.count(f"n-{tag}", 60) == 1


def redis_keys(server: PrivateRedis) -> List[str]:
    return sorted(key.decode() for key in server.client().scan_iter())


def test_failover_through_a_redis_that_stops_and_comes_back(private_redis, caplog):
    caplog.set_level(logging.WARNING, logger=FAILOVER_LOG)
    state = open_state(private_redis.url, APPID)
    failover = state.replay.failover
    assert state.window.failover is failover and state.tokens.failover is failover  # one verdict
    clock = FakeClock()
    failover.clock = clock
    failover.retry_after = 5
    failover.probe = None   # requests alone decide when Redis is tried again here (the probe: its own test)

    use_everything(state, "up")
    assert "kf:{wxapp}:push:push-up" in redis_keys(private_redis)
    assert "kf:{wxapp}:window:oup" in redis_keys(private_redis)
    assert "wechatpy:wxapp_access_token" in redis_keys(private_redis)
    assert failover.degraded is False and warnings_of(caplog) == []

    private_redis.stop()
    for round_ in range(3):  # Redis refuses: every operation tries it, then falls back
        use_everything(state, f"down{round_}")
        assert failover.degraded is True and not failover.bypassing
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "unreachable" in messages[0]

    private_redis.start()  # same port, empty: the next operation uses it
    use_everything(state, "back")
    assert failover.degraded is False
    keys = redis_keys(private_redis)
    assert "kf:{wxapp}:push:push-back" in keys and "kf:{wxapp}:window:oback" in keys
    # What was answered from memory while Redis was away is written back once it answers again.
    written_back = [f"kf:{{wxapp}}:push:push-down{round_}" for round_ in range(3)]
    assert eventually(lambda: set(written_back) <= set(redis_keys(private_redis))), redis_keys(private_redis)
    assert private_redis.client().get("kf:{wxapp}:push:push-down2") == b"Dreply-down2"
    assert state.replay.unsent == 0
    assert private_redis.client().get("wechatpy:wxapp_access_token") == b'"token-back"'
    messages = warnings_of(caplog)
    assert len(messages) == 2 and "back" in messages[1]


def test_failover_with_retry_after_zero_tries_redis_on_every_operation(private_redis, caplog):
    caplog.set_level(logging.WARNING, logger=FAILOVER_LOG)
    state = open_state(private_redis.url, APPID)
    state.tokens.failover.retry_after = 0
    state.tokens.failover.probe = None
    private_redis.stop()
    for round_ in range(5):
        use_everything(state, f"down{round_}")
    assert state.tokens.failover.degraded is True
    assert len(warnings_of(caplog)) == 1
    private_redis.start()
    use_everything(state, "back")
    assert state.tokens.failover.degraded is False
    assert "kf:{wxapp}:push:push-back" in redis_keys(private_redis)
    assert len(warnings_of(caplog)) == 2


def test_failover_stores_built_by_hand(private_redis, caplog):
    from kf_plugin.state.redis import RedisReplayStore, RedisWindowStore
    from kf_plugin.state.redis_tokens import RedisTokenStore
    caplog.set_level(logging.WARNING, logger=FAILOVER_LOG)
    connection = private_redis.client()
    clock = FakeClock()
    failover = Failover("hand-built state", retry_after=1, clock=clock)
    state = SharedState(
        FailoverReplayStore(RedisReplayStore(connection, "kf:wxapp:"), MemoryReplayStore(), failover),
        FailoverWindowStore(RedisWindowStore(connection, "kf:wxapp:"), MemoryWindowStore(), failover),
        FailoverTokenStore(RedisTokenStore(connection, APPID), MemoryTokenStore(), failover))
    use_everything(state, "up")
    private_redis.stop()
    use_everything(state, "down")
    assert failover.degraded
    private_redis.start()
    clock.advance(1)
    use_everything(state, "back")
    assert not failover.degraded
    assert "kf:wxapp:push:push-back" in redis_keys(private_redis)
    assert [m.split(" ")[0] for m in warnings_of(caplog)] == ["Redis", "Redis"]
    assert "hand-built state" in warnings_of(caplog)[0]


# -- open_state ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [None, ""], ids=["none", "empty"])
def test_open_state_without_a_url_gives_memory_stores(url):
    state = open_state(url, APPID)
    assert isinstance(state.replay, MemoryReplayStore)
    assert isinstance(state.window, MemoryWindowStore)
    assert isinstance(state.tokens, MemoryTokenStore)
    assert state.redis is None


@pytest.mark.parametrize("url", ["not-a-url", "http://127.0.0.1:6379/0", "127.0.0.1:6379"])
def test_open_state_rejects_what_is_not_a_redis_url(url):
    with pytest.raises(ConfigError, match="KF_REDIS_URL"):
        open_state(url, APPID)


def test_open_state_never_connects():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    started = time.monotonic()
    state = open_state(f"redis://127.0.0.1:{dead_port}/0", APPID)
    assert time.monotonic() - started < 1
    assert isinstance(state.replay, FailoverReplayStore)
    assert isinstance(state.window, FailoverWindowStore)
    assert isinstance(state.tokens, FailoverTokenStore)
    assert state.redis is not None
    assert state.replay.failover.degraded is False  # nothing tried yet
    assert state.replay.claim("k", 60) is True      # the first use finds Redis down and falls back
    assert state.replay.failover.degraded is True


# -- FailoverReplayStore: memory first, written back ----------------------------------------------------------

def test_a_push_claimed_while_redis_was_away_is_written_back_when_it_finishes_after_redis_returned(private_redis):
    state = open_state(private_redis.url, APPID)
    replay, failover = state.replay, state.replay.failover
    failover.retry_after = 0
    now = time.time()
    private_redis.stop()
    claim = replay.acquire(PushClaim("slow-push", 60, grant=("oSlow", Grant("message", 5, now + 3600)), now=now))
    assert claim.outcome.name == "CLAIMED" and claim.granted and failover.degraded
    private_redis.start()
    failover.call(private_redis.client().ping)   # Redis is back while the handler still runs
    assert not failover.degraded
    replay.complete("slow-push", "the slow reply", 60)
    assert private_redis.client().get("kf:{wxapp}:push:slow-push") == b"Dthe slow reply"
    assert eventually(lambda: private_redis.client().get("kf:{wxapp}:window:oSlow") is not None)
    assert replay.unsent == 0


def test_a_claim_right_after_redis_restarted_empty_finds_the_reply_another_worker_writes_back(private_redis):
    answering, retrying = open_state(private_redis.url, APPID), open_state(private_redis.url, APPID)
    for worker in (answering, retrying):          # both have used Redis before it goes away
        assert worker.replay.claim(f"before-{id(worker)}", 60)
    private_redis.stop()
    assert answering.replay.claim("retried", 60)  # answered from its own memory while Redis is away
    answering.replay.complete("retried", "the first reply", 60)
    private_redis.start()                         # empty: what was answered meanwhile is not there
    # WeChat's retry reaches the other worker before the answering one has noticed Redis is back.
    claim = retrying.replay.acquire(PushClaim("retried", 60, answer="a second reply"))
    assert (claim.outcome.name, claim.reply) == ("DONE", "the first reply")
    assert answering.replay.unsent == 0


def test_a_process_that_never_saw_redis_does_not_wait_on_its_first_claim(connection, monkeypatch):
    from kf_plugin.state.redis import RedisReplayStore
    store = RedisReplayStore(connection, "kf:{wxapp}:")
    monkeypatch.setattr(store, "_settle", lambda *args: pytest.fail("a new deployment's first claim waited"))
    assert store.acquire(PushClaim("first", 60, answer="reply")).answered
    assert RedisReplayStore(connection, "kf:{wxapp}:").acquire(PushClaim("second", 60)).outcome.name == "CLAIMED"


def test_a_claim_loads_its_script_where_redis_does_not_know_it(private_redis):
    import redis
    from kf_plugin.state.redis import RedisReplayStore
    connection = redis.Redis.from_url(private_redis.url)
    store = RedisReplayStore(connection, "kf:{wxapp}:")
    assert store.acquire(PushClaim("before", 60)).outcome.name == "CLAIMED"
    connection.script_flush()   # as a restart of Redis does
    assert store.acquire(PushClaim("after", 60)).outcome.name == "CLAIMED"
    assert store.acquire(PushClaim("after", 60)).outcome.name == "PENDING"


def test_a_retry_on_the_same_worker_is_answered_from_memory_while_redis_is_down(private_redis):
    state = open_state(private_redis.url, APPID)
    assert state.replay.claim("answered", 60)
    state.replay.complete("answered", "the reply", 60)
    private_redis.stop()
    started = time.monotonic()
    claim = state.replay.acquire(PushClaim("answered", 60))
    assert (claim.outcome.name, claim.reply) == ("DONE", "the reply")
    assert time.monotonic() - started < 0.5, "the retry waited on the unreachable Redis"
    assert not state.replay.failover.degraded   # memory answered: Redis was not even asked


@pytest.mark.parametrize("option", ["prefix", "session_prefix"])
def test_open_state_refuses_a_prefix_with_braces(redis_url, option):
    with pytest.raises(ConfigError, match="braces"):
        open_state(redis_url, APPID, **{option: "bot{1}:"})


def test_a_claim_is_renewed_while_held_and_taken_over_once_its_holder_stops_renewing(connection):
    from kf_plugin.state.redis import RedisReplayStore, RedisWindowStore
    holder = RedisReplayStore(connection, "kf:{wxapp}:", window=RedisWindowStore(connection, "kf:{wxapp}:"))
    other = RedisReplayStore(connection, "kf:{wxapp}:", window=RedisWindowStore(connection, "kf:{wxapp}:"))
    assert holder.owner != other.owner
    now = time.time()
    push = PushClaim("held", 30, lease=0.6, grant=("oHeld", Grant("message", 5, now + 3600)), now=now)
    assert holder.acquire(push).outcome.name == "CLAIMED"
    deadline = time.monotonic() + 2.0       # more than three leases: renewed all along
    while time.monotonic() < deadline:
        assert other.acquire(push).outcome.name == "PENDING"
        time.sleep(0.05)
    holder._leases.drop("held")             # the holder dies: nobody renews its claim
    assert eventually(lambda: other.acquire(push).outcome.name == "CLAIMED")   # taken over
    taken = other.acquire(push)
    assert taken.outcome.name == "PENDING"  # now the other's own claim
    assert RedisWindowStore(connection, "kf:{wxapp}:").get("oHeld", now).grants[0].count == 5
    assert len(RedisWindowStore(connection, "kf:{wxapp}:").get("oHeld", now).grants) == 1  # granted once


def test_the_probe_notices_redis_is_back_without_any_request_and_writes_back(private_redis, caplog):
    caplog.set_level(logging.WARNING, logger=FAILOVER_LOG)
    state = open_state(private_redis.url, APPID)
    failover = state.replay.failover
    private_redis.stop()
    assert state.replay.claim("answered-while-down", 60)
    state.replay.complete("answered-while-down", "reply", 60)
    assert failover.degraded
    private_redis.start()
    # No request comes; within a few probes Redis is used again and learns what was answered meanwhile.
    assert eventually(lambda: not failover.degraded and state.replay.unsent == 0)
    assert private_redis.client().get("kf:{wxapp}:push:answered-while-down") == b"Dreply"
    assert not failover.bypassing


def test_a_client_that_would_wait_long_on_a_stalled_redis_is_reported(redis_url, caplog):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    caplog.set_level(logging.WARNING, logger="kf_plugin.state.shared")
    open_state(redis.Redis(host="127.0.0.1", socket_timeout=1, socket_connect_timeout=1,
                           retry=Retry(NoBackoff(), 0)), APPID)
    assert caplog.records == []
    open_state(redis.Redis(host="127.0.0.1", socket_timeout=5, retry=Retry(NoBackoff(), 10)), APPID)
    assert len(caplog.records) == 1 and "up to 55 s per command" in caplog.records[0].getMessage()
