"""The hand-off store on Redis: its key layout and expiries, two workers on one Redis, retried transactions,
the Redis Cluster slot, and decoding the conversation hash."""
from __future__ import annotations

import json
import time
from typing import Any, List

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import WatchError

from kf_plugin.lifecycle import Change, Conversation, Ending, HandoffRecord, Stage
from kf_plugin.state.handoffs import KEEP_USER
from kf_plugin.state.redis_handoffs import RedisHandoffStore, decode_conversation, encode_conversation
from kf_plugin.state.shared import open_state

from .conftest import APPID
from .test_state import eventually, keys_of, run_threads

U = "oUser0001"
A, B = "a@gh_test", "b@gh_test"
SCOPE = "kf:{wxapp}:"
DAY = 86400.0


@pytest.fixture
def connection(redis_url) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def new_store(redis_url: str, **options: Any) -> RedisHandoffStore:
    """A store on a connection of its own, as another worker would have."""
    return RedisHandoffStore(redis.Redis.from_url(redis_url), SCOPE, **options)


def request(at: float, handoff_id: str = "h1") -> Change:
    return Change("request", at, reason="ask-for-human", handoff_id=handoff_id)


def ttl_of(connection: redis.Redis, key: str) -> float:
    return connection.pttl(key) / 1000


# -- the key layout ------------------------------------------------------------------------------------------------

def test_a_queued_user_in_redis(connection, redis_url):
    store, now = new_store(redis_url, keep_records=7 * DAY), time.time()
    store.apply(U, request(now))
    assert keys_of(connection) == sorted([f"{SCOPE}conv:{U}", f"{SCOPE}handoff:h1", f"{SCOPE}handoffs",
                                          f"{SCOPE}active"])
    assert connection.hgetall(f"{SCOPE}conv:{U}") == {b"stage": b"queued", b"since": repr(now).encode(),
                                                       b"reason": b"ask-for-human", b"handoff": b"h1",
                                                       b"noticed": b"0.0"}
    assert json.loads(connection.get(f"{SCOPE}handoff:h1")) == HandoffRecord("h1", U, "ask-for-human", now).to_dict()
    assert connection.zrange(f"{SCOPE}handoffs", 0, -1, withscores=True) == [(b"h1", now)]
    assert connection.zrange(f"{SCOPE}active", 0, -1, withscores=True) == [(U.encode(), now)]
    for key, kept in ((f"conv:{U}", KEEP_USER), ("active", KEEP_USER), ("handoff:h1", 7 * DAY),
                      ("handoffs", 7 * DAY)):
        assert kept - 5 < ttl_of(connection, SCOPE + key) <= kept, key


def test_a_user_with_an_agent_then_back_with_the_bot_in_redis(connection, redis_url):
    store, now = new_store(redis_url), time.time()
    store.apply(U, request(now))
    store.apply(U, Change("accept", now + 1, agent=A))
    assert connection.hgetall(f"{SCOPE}conv:{U}") == {
        b"stage": b"with_agent", b"since": repr(now + 1).encode(), b"agent": A.encode(),
        b"reason": b"ask-for-human", b"handoff": b"h1", b"noticed": b"0.0"}
    store.apply(U, Change("close", now + 2, agent=A))
    assert keys_of(connection) == [f"{SCOPE}handoff:h1", f"{SCOPE}handoffs"]   # absent means with the bot
    assert json.loads(connection.get(f"{SCOPE}handoff:h1"))["outcome"] == "accepted"


def test_a_notice_keeps_the_conversation_and_the_index_48_hours_more(connection, redis_url):
    store, now = new_store(redis_url), time.time()
    store.apply(U, request(now))
    for key in (f"conv:{U}", "active"):
        connection.pexpire(SCOPE + key, 60_000)
    assert store.mark_noticed(U, now + 1, 60)
    assert connection.hget(f"{SCOPE}conv:{U}", "noticed") == repr(now + 1).encode()
    for key in (f"conv:{U}", "active"):
        assert KEEP_USER - 5 < ttl_of(connection, SCOPE + key) <= KEEP_USER, key


def test_recent_and_unanswered_in_redis(connection, redis_url):
    store, now = new_store(redis_url, recent_size=2), time.time()
    for text in ("一", "二", "三"):
        store.remember(U, text, now)
    store.count_unanswered(U, False, now)
    assert connection.lrange(f"{SCOPE}recent:{U}", 0, -1) == ["三".encode(), "二".encode()]
    assert connection.get(f"{SCOPE}unanswered:{U}") == b"1"
    for key in (f"recent:{U}", f"unanswered:{U}"):
        assert KEEP_USER - 5 < ttl_of(connection, SCOPE + key) <= KEEP_USER
    store.count_unanswered(U, True, now)
    assert not connection.exists(f"{SCOPE}unanswered:{U}")


def test_a_write_trims_records_older_than_keep_records(connection, redis_url):
    store = new_store(redis_url, keep_records=0.3)
    store.apply("oOld", request(time.time(), "old"))
    assert eventually(lambda: not connection.exists(f"{SCOPE}handoff:old"))
    store.apply("oNew", request(time.time(), "new"))
    assert connection.zrange(f"{SCOPE}handoffs", 0, -1) == [b"new"]


def test_active_forgets_a_user_whose_conversation_expired(connection, redis_url):
    store, now = new_store(redis_url), time.time()
    store.apply("oGone", request(now, "h1"))
    store.apply("oHere", request(now + 1, "h2"))
    connection.delete(f"{SCOPE}conv:oGone")   # as its TTL would
    assert [c.openid for c in store.active()] == ["oHere"]
    assert connection.zrange(f"{SCOPE}active", 0, -1) == [b"oHere"]


@pytest.mark.parametrize("decoded", [False, True])
def test_count_queued_reads_each_stage_alone_and_forgets_the_expired(connection, redis_url, monkeypatch, decoded):
    store, now = new_store(redis_url), time.time()
    store.apply("oGone", request(now, "h1"))
    store.apply("oQueued", request(now + 1, "h2"))
    store.apply("oServed", Change("accept", now + 2, agent=A, handoff_id="h3"))
    connection.delete(f"{SCOPE}conv:oGone")   # as its TTL would
    decoded_here: List[str] = []
    monkeypatch.setattr("kf_plugin.state.redis_handoffs.decode_conversation",
                        lambda openid, fields: decoded_here.append(openid))
    counting = RedisHandoffStore(redis.Redis.from_url(redis_url, decode_responses=decoded), SCOPE)
    assert counting.count_queued() == 1 and decoded_here == []   # no conversation read whole
    assert connection.zrange(f"{SCOPE}active", 0, -1) == [b"oQueued", b"oServed"]


def test_a_client_that_decodes_responses(redis_url):
    store, now = RedisHandoffStore(redis.Redis.from_url(redis_url, decode_responses=True), SCOPE), time.time()
    store.apply(U, request(now))
    assert store.mark_noticed(U, now, 60)
    store.apply(U, Change("accept", now + 3, agent=A))
    assert store.conversation(U) == Conversation(U, Stage.WITH_AGENT, now + 3, A, "ask-for-human", "h1")
    assert [c.openid for c in store.active()] == [U] and store.records(0)[0].accepted_at == now + 3
    store.remember(U, "你好", now)
    assert store.recent(U) == ["你好"]


# -- two workers on one Redis -----------------------------------------------------------------------------------------

def test_two_workers_racing_a_request_make_one_hand_off(connection, redis_url):
    workers, now = [new_store(redis_url), new_store(redis_url)], time.time()
    transitions = run_threads(20, lambda i: workers[i % 2].apply(U, request(now, f"h{i:02d}")))
    winners = [t for t in transitions if t.moved]
    assert len(winners) == 1
    assert [key for key in keys_of(connection) if ":handoff:" in key] == [f"{SCOPE}handoff:{winners[0].record.id}"]
    assert workers[1].records(0) == workers[0].records(0) == [winners[0].record]


def test_two_workers_racing_every_change_keep_the_conversation_and_its_record_in_step(redis_url):
    """Each change applied once by one of two workers, all at once, in whatever order: the user's conversation,
    its open record and the index of active users still agree."""
    workers, now = [new_store(redis_url), new_store(redis_url)], time.time()
    changes = [request(now), Change("accept", now + 1, agent=A), Change("switch", now + 2, agent=B),
               Change("close", now + 3, agent=B), Change("timeout", now + 1)]
    for _ in range(5):
        run_threads(len(changes), lambda i: workers[i % 2].apply(U, changes[i]))
        conv = workers[0].conversation(U)
        if conv.stage is Stage.BOT:
            assert workers[1].active() == []
            continue
        record = workers[1].record(conv.handoff_id)
        assert record is not None and record.outcome is None and record.agent == conv.agent
        assert (record.accepted_at is not None) == (conv.stage is Stage.WITH_AGENT)
        assert workers[1].active() == [conv]
        assert workers[0].apply(U, Change("close", now + 10, agent=B)).record.outcome is Ending.ACCEPTED
    assert all(r.outcome is not None for r in workers[1].records(0))


def test_two_workers_notice_a_user_once_per_interval(redis_url):
    workers, now = [new_store(redis_url), new_store(redis_url)], time.time()
    workers[0].apply(U, request(now))
    assert sum(run_threads(20, lambda i: workers[i % 2].mark_noticed(U, now + 1, 60))) == 1
    assert sum(run_threads(20, lambda i: workers[i % 2].mark_noticed(U, now + 30, 60))) == 0
    assert sum(run_threads(20, lambda i: workers[i % 2].mark_noticed(U, now + 61, 60))) == 1
    assert workers[1].conversation(U).noticed_at == now + 61


class Meddler:
    """A client whose transactions another worker's write interrupts ``times`` times (after each first read)."""

    def __init__(self, connection: redis.Redis, other: redis.Redis, times: int):
        self.connection, self.other, self.times = connection, other, times
        self.attempts = 0

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.connection.pipeline(transaction=transaction)
        read = pipe.hgetall

        def hgetall(key: str) -> Any:
            self.attempts += 1
            answer = read(key)
            if self.attempts <= self.times:
                self.other.hset(key, mapping={"stage": "queued", "noticed": repr(float(self.attempts))})
            return answer
        pipe.hgetall = hgetall
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def test_a_change_interrupted_by_another_worker_is_made_again(connection, redis_url):
    other = redis.Redis.from_url(redis_url)
    now = time.time()
    other.hset(f"{SCOPE}conv:{U}", mapping=encode_conversation(Conversation(U, Stage.QUEUED, now, None, "ask", "h1")))
    meddler = Meddler(connection, other, times=2)
    transition = RedisHandoffStore(meddler, SCOPE).apply(U, Change("accept", now + 1, agent=A))
    assert meddler.attempts == 3
    assert transition.before.noticed_at == 2.0   # the third read saw the second interruption
    assert RedisHandoffStore(connection, SCOPE).conversation(U).agent == A


def test_a_change_interrupted_every_time_gives_up(connection, redis_url):
    other = redis.Redis.from_url(redis_url)
    meddler = Meddler(connection, other, times=100)
    with pytest.raises(WatchError, match="changed under each of 4 attempts"):
        RedisHandoffStore(meddler, SCOPE, attempts=4).apply(U, Change("accept", time.time(), agent=A))
    assert meddler.attempts == 4
    assert keys_of(connection) == [f"{SCOPE}conv:{U}"]   # the meddler's; nothing of the change
    assert connection.hget(f"{SCOPE}conv:{U}", "stage") == b"queued"


# -- one account, one cluster slot ----------------------------------------------------------------------------------

def exercise(store: Any, openid: str) -> None:
    """Every operation of a hand-off store, leaving every kind of key behind."""
    now = time.time()
    store.apply(openid, request(now, f"h-{openid}"))
    store.mark_noticed(openid, now, 60)
    store.apply(openid, Change("accept", now + 1, agent=A))
    store.apply("oOther", Change("accept", now, agent=B, handoff_id="h-other"))
    store.remember(openid, "hi", now)
    store.count_unanswered(openid, False, now)
    store.active()
    store.records(0)


@pytest.mark.parametrize("appid", [APPID, "wxffffffffffffffff", "default"])
@pytest.mark.parametrize("openid", [U, "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "oUser:with:colons"])
def test_every_key_of_one_account_shares_one_cluster_slot(connection, redis_url, appid, openid):
    state = open_state(redis_url, appid, prefix="bot7:")
    exercise(state.handoffs, openid)
    assert not state.handoffs.failover.degraded
    keys = keys_of(connection)
    assert len(keys) == 8, keys   # conv ×2, handoff ×2, handoffs, active, recent, unanswered
    assert {key_slot(key.encode()) for key in keys} == {key_slot(appid.encode())}
    assert all(key.startswith(f"bot7:{{{appid}}}:") and connection.pttl(key) > 0 for key in keys)


# -- the conversation hash ---------------------------------------------------------------------------------------

CONV = Conversation(U, Stage.WITH_AGENT, 1_700_000_000.125, A, "投诉", "h1", 1_700_000_001.5)


@pytest.mark.parametrize("encode", [lambda s: s.encode("utf-8"), str], ids=["bytes", "text"])
def test_decode_conversation_reads_what_was_written(encode):
    fields = {encode(k): encode(v) for k, v in encode_conversation(CONV).items()}
    assert decode_conversation(U, fields) == CONV


@pytest.mark.parametrize("conv", [CONV, Conversation(U, Stage.QUEUED, 12.0, reason="r", handoff_id="h")])
def test_encode_conversation_leaves_out_what_is_none(conv):
    fields = encode_conversation(conv)
    assert set(fields) == {"stage", "since", "noticed"} | {
        name for name, value in (("agent", conv.agent), ("reason", conv.reason), ("handoff", conv.handoff_id))
        if value is not None}
    assert decode_conversation(U, fields) == conv


def test_an_empty_hash_is_a_user_with_the_bot():
    assert decode_conversation(U, {}) == Conversation(U)


@pytest.mark.parametrize("fields", [{b"stage": b"dancing"}, {b"stage": b"queued", b"since": b"soon"}])
def test_a_hash_kf_plugin_did_not_write_is_refused(fields):
    with pytest.raises(ValueError, match=f"the conversation of '{U}' in Redis is not one kf_plugin wrote"):
        decode_conversation(U, fields)


def test_workers_changing_different_users_at_once(redis_url):
    workers, now = [new_store(redis_url), new_store(redis_url)], time.time()
    users: List[str] = [f"oUser{i:04d}" for i in range(10)]
    run_threads(10, lambda i: workers[i % 2].apply(users[i], request(now + i, f"h{i}")))
    assert [c.openid for c in workers[0].active()] == users
    assert [r.id for r in workers[1].records(0)] == [f"h{i}" for i in range(10)]
