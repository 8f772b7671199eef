"""The puller's stores: one contract for memory and Redis, the Redis keys, and failover to memory.

The contract tests run once per engine: ``memory`` always, ``redis`` against the test database of
``redis_url`` (skipped without Redis, except in CI). The failover tests use a store that fails as Redis
fails, and one test stops and restarts a redis-server of its own.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest
import redis as redis_py

from kf_plugin.state.failover import Failover
from kf_plugin.wecom.state import (
    CURSOR_TTL,
    SEEN_TTL,
    FailoverCursorStore,
    FailoverSeenStore,
    MemoryCursorStore,
    MemorySeenStore,
    RedisCursorStore,
    RedisSeenStore,
    open_pull_state,
)

from ..conftest import FakeClock

CORPID = "ww1234567890abcdef"
KFID = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"
POLL_LIMIT = 5.0


def eventually(predicate: Callable[[], bool], limit: float = POLL_LIMIT) -> bool:
    """Poll ``predicate`` until it holds or ``limit`` seconds pass (for threads and servers, not for timing)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def connection(redis_url):
    return redis_py.Redis.from_url(redis_url)


@pytest.fixture(params=["memory", "redis"])
def engine(request):
    """``(cursors, seen)`` of one engine; Redis ones in the test's own database."""
    if request.param == "memory":
        return MemoryCursorStore(), MemorySeenStore()
    connection = redis_py.Redis.from_url(request.getfixturevalue("redis_url"))
    return RedisCursorStore(connection, CORPID), RedisSeenStore(connection, CORPID)


# -- the contract ----------------------------------------------------------------------------------------

def test_a_cursor_is_kept_per_account(engine):
    cursors, _ = engine
    assert cursors.get(KFID) is None
    cursors.put(KFID, "4gw7MepFLfgF2VC5npN")
    cursors.put("wkOTHER", "other")
    cursors.put(KFID, "next-游标")
    assert (cursors.get(KFID), cursors.get("wkOTHER")) == ("next-游标", "other")


def test_first_time_is_true_once_per_msgid(engine):
    _, seen = engine
    assert not seen.seen("msg-1")
    assert seen.first_time("msg-1")
    assert seen.seen("msg-1")
    assert not seen.first_time("msg-1")
    assert seen.first_time("msg-2")


def test_first_time_is_true_for_one_caller_among_many(engine):
    _, seen = engine
    results = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait(5)
        results.append(seen.first_time("contended"))
    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(results) == [False] * 7 + [True]


# -- memory specifics --------------------------------------------------------------------------------------

def test_memory_seen_forgets_a_msgid_after_its_ttl():
    clock = FakeClock(100.0)
    seen = MemorySeenStore(ttl=60, clock=clock)
    seen.first_time("m")
    clock.advance(59)
    assert seen.seen("m")
    clock.advance(2)
    assert not seen.seen("m")
    assert seen.first_time("m")


def test_memory_seen_is_bounded_forgetting_the_oldest_first():
    seen = MemorySeenStore(max_entries=3, clock=FakeClock())
    for msgid in ("a", "b", "c", "d", "e"):
        seen.first_time(msgid)
    assert len(seen) == 3
    assert [seen.seen(m) for m in "abcde"] == [False, False, True, True, True]


# -- Redis specifics ---------------------------------------------------------------------------------------

def test_redis_keys_live_under_the_corps_scope_with_a_ttl(connection):
    RedisCursorStore(connection, CORPID, prefix="bot7:").put(KFID, "c1")
    RedisSeenStore(connection, CORPID, prefix="bot7:").first_time("msg-1")
    keys = sorted(key.decode() for key in connection.scan_iter("bot7:*"))
    assert keys == [f"bot7:{{{CORPID}}}:wecom:cursor:{KFID}", f"bot7:{{{CORPID}}}:wecom:seen:msg-1"]
    ttls = {key: connection.pttl(key) / 1000 for key in keys}
    assert CURSOR_TTL - 60 < ttls[keys[0]] <= CURSOR_TTL
    assert SEEN_TTL - 60 < ttls[keys[1]] <= SEEN_TTL


def test_two_corps_do_not_see_each_others_state(connection):
    RedisCursorStore(connection, "wwA").put(KFID, "a")
    RedisSeenStore(connection, "wwA").first_time("m")
    assert RedisCursorStore(connection, "wwB").get(KFID) is None
    assert RedisSeenStore(connection, "wwB").first_time("m")


def test_open_pull_state_without_redis_is_memory():
    state = open_pull_state(None, CORPID)
    assert isinstance(state.cursors, MemoryCursorStore)
    assert isinstance(state.seen, MemorySeenStore)


def test_open_pull_state_with_redis_shares_state_between_workers(connection):
    one, two = open_pull_state(connection, CORPID), open_pull_state(connection, CORPID)
    one.cursors.put(KFID, "c9")
    assert one.seen.first_time("m1")
    assert two.cursors.get(KFID) == "c9"
    assert two.seen.seen("m1")
    assert not two.seen.first_time("m1")


# -- failover ----------------------------------------------------------------------------------------------

class Flaky:
    """Wraps a store; while ``down`` every call fails as a refused Redis connection does."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any) -> Any:
            if self.down:
                raise redis_py.exceptions.ConnectionError("Connection refused")
            return method(*args)
        return call


def test_cursors_fall_back_to_memory_and_are_written_back():
    primary = Flaky(MemoryCursorStore())
    store = FailoverCursorStore(primary, MemoryCursorStore(), Failover("test", clock=FakeClock()))
    store.put(KFID, "c1")
    primary.down = True
    store.put(KFID, "c2")
    assert store.get(KFID) == "c2"
    assert store.failover.degraded
    primary.down = False
    store.get(KFID)   # an operation finds Redis back; the recovery writes the cursor back
    assert eventually(lambda: primary.inner.get(KFID) == "c2")
    assert not store.failover.degraded


def test_seen_falls_back_to_memory_never_forgets_what_this_worker_handled_and_is_written_back():
    primary = Flaky(MemorySeenStore())
    store = FailoverSeenStore(primary, MemorySeenStore(), Failover("test", clock=FakeClock()))
    assert store.first_time("before")
    primary.down = True
    assert store.first_time("during")
    assert not store.first_time("during")
    assert store.seen("before") and store.seen("during")
    primary.down = False
    assert store.seen("during")   # answered by memory; Redis is asked (and found back) for what memory lacks
    assert not store.seen("never")
    assert eventually(lambda: primary.inner.seen("during"))


def test_a_msgid_another_worker_recorded_is_not_a_first_time():
    shared = MemorySeenStore()
    mine = FailoverSeenStore(shared, MemorySeenStore(), Failover("test", clock=FakeClock()))
    shared.first_time("theirs")
    assert mine.seen("theirs")
    assert not mine.first_time("theirs")


def test_a_stopped_redis_falls_back_and_gets_the_cursor_when_it_is_back(private_redis):
    client = private_redis.client()
    state = open_pull_state(client, CORPID)
    state.cursors.put(KFID, "c1")
    private_redis.terminate()
    state.cursors.put(KFID, "c2")
    assert state.seen.first_time("m-during")
    assert state.cursors.get(KFID) == "c2"
    private_redis.start()   # empty: no persistence
    assert eventually(lambda: client.get(f"kf:{{{CORPID}}}:wecom:cursor:{KFID}") == b"c2")
    assert eventually(lambda: client.exists(f"kf:{{{CORPID}}}:wecom:seen:m-during") == 1)
