"""The hand-off store: one contract for memory and Redis, memory's bounds, failover, and open_state.

The contract tests run once per engine (``backend``): ``memory`` on a fake clock, ``redis`` against the test
database of ``redis_url`` (skipped without Redis, except in CI) on real time with short expiries. The Redis
key layout, two workers on one Redis and the cluster slot are in tests/test_redis_handoffs.py.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Callable, Optional

import pytest

from kf_plugin.lifecycle import Change, Conversation, Ending, HandoffRecord, Stage
from kf_plugin.state import HandoffStore, MemoryHandoffStore
from kf_plugin.state.failover import Failover, FailoverHandoffStore
from kf_plugin.state.handoffs import KEEP_RECORDS, KEEP_USER
from kf_plugin.state.shared import SharedState, open_state

from .conftest import FakeClock
from .test_state import APPID, T0, eventually, run_threads

U, V = "oUser0001", "oUser0002"
A, B = "a@gh_test", "b@gh_test"


class Backend:
    """Makes hand-off stores of one engine; :meth:`now` is the time they run on, :meth:`lapses` lets it pass."""

    def __init__(self, name: str, redis_url: Optional[str] = None):
        self.name = name
        self.clock = FakeClock(T0)
        self.redis = None
        if redis_url is not None:
            import redis
            self.redis = redis.Redis.from_url(redis_url)
        # Memory expiries follow the fake clock; Redis expiries follow real time, so keep them short.
        self.short = 30.0 if self.redis is None else 0.3

    def store(self, keep_records: float = KEEP_RECORDS, recent_size: int = 5) -> HandoffStore:
        if self.redis is None:
            return MemoryHandoffStore(keep_records, recent_size=recent_size, clock=self.clock)
        from kf_plugin.state.redis_handoffs import RedisHandoffStore
        return RedisHandoffStore(self.redis, "kf:{wxapp}:", keep_records, recent_size)

    def now(self) -> float:
        return self.clock() if self.redis is None else time.time()

    def lapses(self, seconds: float, predicate: Callable[[], bool]) -> bool:
        """Let ``seconds`` pass; whether ``predicate`` then holds (Redis: within the polling limit)."""
        if self.redis is None:
            self.clock.advance(seconds)
            return predicate()
        return eventually(predicate)


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> Backend:
    if request.param == "memory":
        return Backend("memory")
    return Backend("redis", request.getfixturevalue("redis_url"))


def request(at: float, handoff_id: str = "h1", reason: str = "ask-for-human") -> Change:
    return Change("request", at, reason=reason, handoff_id=handoff_id)


# -- conversations and transitions ----------------------------------------------------------------------------

def test_an_unknown_user_is_with_the_bot(backend):
    store = backend.store()
    assert store.conversation(U) == Conversation(U)
    assert store.active() == [] and store.records(0) == [] and store.record("h1") is None
    assert store.recent(U) == [] and store.mark_noticed(U, backend.now(), 60) is False


def test_a_whole_hand_off_through_the_store(backend):
    store, now = backend.store(), backend.now()
    moved = store.apply(U, request(now))
    assert moved.moved and moved.before == Conversation(U)
    assert store.conversation(U) == moved.after == Conversation(U, Stage.QUEUED, now, None, "ask-for-human", "h1")
    assert store.record("h1") == moved.record == HandoffRecord("h1", U, "ask-for-human", now)
    accepted = store.apply(U, Change("accept", now + 30, agent=A))
    assert accepted.before == moved.after
    assert store.conversation(U) == Conversation(U, Stage.WITH_AGENT, now + 30, A, "ask-for-human", "h1")
    assert store.active() == [store.conversation(U)]
    closed = store.apply(U, Change("close", now + 90, agent=A))
    assert closed.after == Conversation(U, Stage.BOT, now + 90)
    assert store.conversation(U) == Conversation(U)   # nothing is kept of a user with the bot
    assert store.active() == []
    assert store.record("h1") == store.records(now)[0] == HandoffRecord(
        "h1", U, "ask-for-human", now, agent=A, accepted_at=now + 30, ended_at=now + 90, outcome=Ending.ACCEPTED)


def test_times_round_trip_exactly(backend):
    store, at = backend.store(), backend.now() + 0.123456789
    store.apply(U, request(at))
    assert store.conversation(U).since == at and store.record("h1").requested_at == at


@pytest.mark.parametrize("late", [Change("close", 0, agent=A), Change("lapse", 0), Change("switch", 0, agent=B),
                                  Change("accept", 0, agent=B)], ids=lambda change: change.kind)
def test_a_change_older_than_the_stage_writes_nothing(backend, late):
    store, now = backend.store(), backend.now()
    store.apply(U, request(now))
    current = store.apply(U, Change("accept", now + 10, agent=A)).after
    stale = store.apply(U, Change(late.kind, now + 5, agent=late.agent))
    assert (stale.moved, stale.record, stale.before, stale.after) == (False, None, current, current)
    assert store.conversation(U) == current
    assert store.record("h1") == HandoffRecord("h1", U, "ask-for-human", now, agent=A, accepted_at=now + 10)


def test_a_change_older_than_a_return_to_the_bot_is_taken_as_new(backend):
    """Nothing is kept of a user with the bot (no key: the push claim reads one round trip less), so when
    they came back to the bot is forgotten: an event delayed past the close opens a hand-off again."""
    store, now = backend.store(), backend.now()
    store.apply(U, Change("accept", now, agent=A, handoff_id="h1"))
    store.apply(U, Change("close", now + 10, agent=A))
    late = store.apply(U, Change("accept", now + 5, agent=A, handoff_id="h2"))
    assert late.moved and late.after.stage is Stage.WITH_AGENT and late.record.id == "h2"


def test_a_repeated_request_keeps_the_first_hand_off(backend):
    store, now = backend.store(), backend.now()
    store.apply(U, request(now, "h1"))
    again = store.apply(U, request(now + 5, "h2"))
    assert not again.moved and again.record is None
    assert [r.id for r in store.records(0)] == ["h1"] and store.record("h2") is None


def test_an_accept_without_a_request_opens_a_record(backend):
    store, now = backend.store(), backend.now()
    transition = store.apply(U, Change("accept", now, agent=A, handoff_id="h9"))
    assert transition.after == Conversation(U, Stage.WITH_AGENT, now, A, "agent", "h9")
    assert store.record("h9") == HandoffRecord("h9", U, "agent", now, agent=A, accepted_at=now)


def test_back_with_the_bot_a_new_request_starts_afresh(backend):
    store, now = backend.store(), backend.now()
    store.apply(U, request(now, "h1"))
    assert store.mark_noticed(U, now + 1, 60)
    store.apply(U, Change("timeout", now + 600))
    store.apply(U, request(now + 700, "h2", reason="stuck"))
    assert store.conversation(U) == Conversation(U, Stage.QUEUED, now + 700, None, "stuck", "h2", 0.0)
    assert [(r.id, r.outcome) for r in store.records(0)] == [("h1", Ending.TIMED_OUT), ("h2", None)]


def test_twenty_threads_requesting_one_user_make_one_hand_off(backend):
    store, now = backend.store(), backend.now()
    transitions = run_threads(20, lambda i: store.apply(U, request(now + i / 1000, f"h{i:02d}")))
    winners = [t for t in transitions if t.moved]
    assert len(winners) == 1 and winners[0].record is not None
    assert [r.id for r in store.records(0)] == [winners[0].record.id]
    assert store.conversation(U).handoff_id == winners[0].record.id


# -- the active users and the records -------------------------------------------------------------------------

def test_active_lists_queued_and_served_users_longest_first(backend):
    store, now = backend.store(), backend.now()
    store.apply("oC", request(now + 3, "hc"))
    store.apply("oA", request(now + 1, "ha"))
    store.apply("oB", Change("accept", now + 2, agent=A, handoff_id="hb"))
    store.apply("oD", request(now + 4, "hd"))
    store.apply("oD", Change("cancel", now + 5))
    assert [(c.openid, c.stage) for c in store.active()] == [
        ("oA", Stage.QUEUED), ("oB", Stage.WITH_AGENT), ("oC", Stage.QUEUED)]
    assert [c.openid for c in store.active(limit=2)] == ["oA", "oB"]
    assert store.active(limit=0) == []


def test_in_handoff_lists_who_since_when_as_active_does(backend):
    store, now = backend.store(), backend.now()
    store.apply("oC", request(now + 3, "hc"))
    store.apply("oA", request(now + 1, "ha"))
    store.apply("oB", Change("accept", now + 2, agent=A, handoff_id="hb"))
    assert store.in_handoff() == [("oA", now + 1), ("oB", now + 2), ("oC", now + 3)]
    assert store.in_handoff(limit=1) == [("oA", now + 1)] and store.in_handoff(limit=0) == []


def test_count_queued_counts_the_users_active_lists_that_no_agent_has(backend):
    store, now = backend.store(), backend.now()
    assert store.count_queued() == 0
    store.apply("oA", request(now + 1, "ha"))
    store.apply("oB", Change("accept", now + 2, agent=A, handoff_id="hb"))
    store.apply("oC", request(now + 3, "hc"))
    store.apply("oD", request(now + 4, "hd"))
    store.apply("oD", Change("cancel", now + 5))
    assert store.count_queued() == 2
    assert store.count_queued(limit=2) == 1 and store.count_queued(limit=0) == 0
    store.apply("oA", Change("accept", now + 6, agent=B))
    assert store.count_queued() == 1


def test_conversations_reads_the_users_asked_for_in_order(backend):
    store, now = backend.store(), backend.now()
    store.apply("oA", request(now + 1, "ha"))
    store.apply("oB", Change("accept", now + 2, agent=A, handoff_id="hb"))
    found = store.conversations(["oB", "oNobody", "oA"])
    assert [(c.openid, c.stage) for c in found] == [("oB", Stage.WITH_AGENT), ("oNobody", Stage.BOT),
                                                      ("oA", Stage.QUEUED)]
    assert found[0] == store.conversation("oB") and store.conversations([]) == []


def test_records_by_request_time_within_inclusive_bounds(backend):
    store, now = backend.store(), backend.now()
    for i, openid in enumerate(["o2", "o0", "o1", "o3"]):
        store.apply(openid, request(now + int(openid[1]) * 10, f"h-{i}"))
    assert [r.openid for r in store.records(now)] == ["o0", "o1", "o2", "o3"]
    assert [r.openid for r in store.records(now + 10, now + 20)] == ["o1", "o2"]
    assert [r.openid for r in store.records(now + 11, now + 29)] == ["o2"]
    assert store.records(now + 31) == []


def test_records_expire_keep_records_after_their_request(backend):
    store, now = backend.store(keep_records=backend.short), backend.now()
    store.apply(U, request(now))
    store.apply(V, Change("accept", now, agent=A, handoff_id="h2"))
    assert len(store.records(0)) == 2
    assert backend.lapses(backend.short, lambda: store.records(0) == [] and store.record("h1") is None)
    later = backend.now()
    store.apply("oLater", request(later, "h3"))
    assert [r.id for r in store.records(0)] == ["h3"]


# -- queue notices ----------------------------------------------------------------------------------------------

def test_a_notice_at_most_once_per_interval(backend):
    store, now = backend.store(), backend.now()
    store.apply(U, request(now))
    assert store.mark_noticed(U, now + 1, 60) is True
    assert store.conversation(U).noticed_at == now + 1
    assert store.mark_noticed(U, now + 60, 60) is False
    assert store.mark_noticed(U, now + 61, 60) is True
    assert store.conversation(U).noticed_at == now + 61


@pytest.mark.parametrize("stage", ["bot", "with_agent", "back"])
def test_only_a_queued_user_is_noticed(backend, stage):
    store, now = backend.store(), backend.now()
    if stage == "with_agent":
        store.apply(U, Change("accept", now, agent=A))
    if stage == "back":
        store.apply(U, request(now))
        store.apply(U, Change("cancel", now + 1))
    assert store.mark_noticed(U, now + 5, 0) is False
    assert store.conversation(U).noticed_at == 0


def test_twenty_threads_noticing_one_user_send_one_notice(backend):
    store, now = backend.store(), backend.now()
    store.apply(U, request(now))
    assert sum(run_threads(20, lambda i: store.mark_noticed(U, now + 1, 60))) == 1


# -- last messages and unanswered counts -------------------------------------------------------------------------

def test_recent_keeps_the_last_messages_oldest_first(backend):
    store, now = backend.store(recent_size=3), backend.now()
    for i in range(5):
        store.remember(U, f"第{i}条", now + i)
    store.remember(V, "other", now)
    assert store.recent(U) == ["第2条", "第3条", "第4条"]
    assert store.recent(V) == ["other"]


def test_count_unanswered_counts_and_resets(backend):
    store, now = backend.store(), backend.now()
    assert [store.count_unanswered(U, False, now + i) for i in range(3)] == [1, 2, 3]
    assert store.count_unanswered(V, False, now) == 1
    assert store.count_unanswered(U, True, now + 4) == 0
    assert store.count_unanswered(U, False, now + 5) == 1
    assert store.count_unanswered(V, False, now + 5) == 2


@pytest.mark.parametrize("size", [0, -1])
def test_recent_size_must_be_positive(backend, size):
    with pytest.raises(ValueError, match=f"recent_size must be at least 1 .*not {size}"):
        backend.store(recent_size=size)


# -- memory: expiry by the clock and bounds ------------------------------------------------------------------------

def test_memory_forgets_a_user_48_hours_after_their_last_change():
    clock = FakeClock(T0)
    store = MemoryHandoffStore(clock=clock)
    store.apply(U, request(T0))
    store.remember(U, "hello", T0)
    store.count_unanswered(U, False, T0)
    clock.advance(KEEP_USER - 1)
    assert store.conversation(U).stage is Stage.QUEUED and store.recent(U) == ["hello"]
    assert store.mark_noticed(U, clock(), 60)   # a write: the conversation is kept 48 h from now
    clock.advance(KEEP_USER - 1)
    assert store.conversation(U).stage is Stage.QUEUED and store.recent(U) == []
    assert store.count_unanswered(U, False, clock()) == 1
    clock.advance(1)
    assert store.conversation(U) == Conversation(U) and store.active() == []


def test_memory_keeps_at_most_max_users_and_max_records():
    store = MemoryHandoffStore(max_users=2, max_records=3, clock=FakeClock(T0))
    for i in range(4):
        store.apply(f"o{i}", request(T0 + i, f"h{i}"))
        store.remember(f"o{i}", "hi", T0)
    assert [c.openid for c in store.active()] == ["o2", "o3"]
    assert store.conversation("o0") == Conversation("o0")
    assert [r.id for r in store.records(0)] == ["h1", "h2", "h3"]
    assert store.recent("o1") == [] and store.recent("o3") == ["hi"]


# -- failover ---------------------------------------------------------------------------------------------------------

def dead_redis_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


def test_hand_offs_fall_back_to_memory_while_redis_is_unreachable(caplog):
    caplog.set_level(logging.WARNING, logger="kf_plugin.state.failover")
    state = open_state(dead_redis_url(), APPID)
    handoffs = state.handoffs
    assert isinstance(handoffs, FailoverHandoffStore)
    assert handoffs.failover is state.replay.failover   # one verdict on whether Redis is up
    now = time.time()
    assert handoffs.apply(U, request(now)).moved
    assert handoffs.failover.degraded
    assert handoffs.conversation(U).stage is Stage.QUEUED and handoffs.active()[0].openid == U
    assert handoffs.count_queued() == 1
    assert handoffs.mark_noticed(U, now, 60) and not handoffs.mark_noticed(U, now + 1, 60)
    assert [r.id for r in handoffs.records(0)] == ["h1"] and handoffs.record("h1") is not None
    handoffs.remember(U, "hi", now)
    assert handoffs.recent(U) == ["hi"] and handoffs.count_unanswered(U, False, now) == 1
    assert "unreachable" in caplog.text


def test_hand_offs_through_a_redis_that_stops_and_comes_back(private_redis):
    state = open_state(private_redis.url, APPID)
    handoffs, failover = state.handoffs, state.handoffs.failover
    clock = FakeClock()
    failover.clock, failover.retry_after, failover.probe = clock, 5, None
    now = time.time()
    handoffs.apply(U, request(now, "up"))
    assert private_redis.client().exists("kf:{wxapp}:conv:" + U)
    private_redis.stop()
    clock.advance(5)
    handoffs.apply(V, request(now, "down"))          # this worker's memory
    assert failover.degraded and handoffs.conversation(V).stage is Stage.QUEUED
    private_redis.start()                             # empty
    clock.advance(5)
    assert handoffs.conversation(V) == Conversation(V)   # Redis again: what memory held is not written back
    assert not failover.degraded
    handoffs.apply(V, request(now + 1, "back"))
    assert handoffs.record("back") is not None and private_redis.client().exists("kf:{wxapp}:handoff:back")


def test_a_failover_store_built_by_hand(private_redis):
    from kf_plugin.state.redis_handoffs import RedisHandoffStore
    failover = Failover("hand-built hand-offs", retry_after=0)
    store = FailoverHandoffStore(RedisHandoffStore(private_redis.client(), "kf:x:"), MemoryHandoffStore(), failover)
    store.apply(U, request(time.time()))
    assert private_redis.client().exists("kf:x:conv:" + U)
    private_redis.stop()
    assert store.conversation(U) == Conversation(U) and failover.degraded


# -- open_state --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [None, ""])
def test_open_state_without_redis_keeps_hand_offs_in_memory(url):
    state = open_state(url, APPID, keep_records=60)
    assert isinstance(state.handoffs, MemoryHandoffStore) and state.handoffs.keep_records == 60


def test_open_state_with_redis_shares_hand_offs(redis_url):
    first, second = open_state(redis_url, APPID, keep_records=60), open_state(redis_url, APPID)
    assert first.handoffs.primary.keep_records == 60 and second.handoffs.primary.keep_records == KEEP_RECORDS
    first.handoffs.apply(U, request(time.time()))
    assert second.handoffs.conversation(U).stage is Stage.QUEUED
    assert open_state(redis_url, "wxother").handoffs.conversation(U) == Conversation(U)


def test_shared_state_built_without_hand_offs_keeps_them_in_memory():
    memory = open_state(None, APPID)
    state = SharedState(memory.replay, memory.window, memory.tokens)
    assert isinstance(state.handoffs, MemoryHandoffStore) and state.handoffs is not memory.handoffs


def test_memory_keeps_conversations_and_records_out_of_the_garbage_collectors_sight():
    """A worker keeping many thousands of hand-offs must not make every full collection walk them."""
    import gc

    store = MemoryHandoffStore(clock=lambda: 102.0)
    store.apply("oU", Change("request", at=100.0, reason="r", handoff_id="h1"))
    store.apply("oU", Change("accept", at=101.0, agent="wang@gh"))
    gc.collect()
    gc.collect()   # a tuple is let go once what it holds is: the rows first, then the entries holding them
    kept = [*store._conversations.entries.values(), *store._records.entries.values()]
    assert len(kept) == 2 and not any(gc.is_tracked(entry) for entry in kept)
    assert store.conversation("oU").stage is Stage.WITH_AGENT and store.record("h1").agent == "wang@gh"
