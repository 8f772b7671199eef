"""One Redis round trip per push: the request-path connection and the writes queued behind answers.

Against real redis-servers: the session's test database (``redis_url``) and,
where a test stops Redis, needs a password or a Unix socket, a server of its own.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from typing import Any, Callable, List

import pytest

from kf_plugin.state import Grant, MemoryReplayStore, MemoryWindowStore, WindowRecord
from kf_plugin.state.failover import Failover, FailoverReplayStore, FailoverWindowStore
from kf_plugin.state.shared import open_state
from kf_plugin.state.writebehind import RespConnection, WriteBehind

from .conftest import FakeClock

redis = pytest.importorskip("redis")
pytest.importorskip("hiredis")

T0 = 1_700_000_000.0
APPID = "wxapp"
WAIT = 5.0  # seconds a test polls for the background thread before failing


def eventually(predicate: Callable[[], bool], limit: float = WAIT) -> bool:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def connection(redis_url):
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def resp(connection):
    fast = RespConnection.for_client(connection)
    yield fast
    fast.close()


class Recorder:
    """Fallbacks that note what ran."""

    def __init__(self):
        self.ran: List[str] = []

    def __call__(self, name: str) -> Callable[[], None]:
        return lambda: self.ran.append(name)


def writer_for(connection, failover: Failover = None, **options: Any) -> WriteBehind:
    return WriteBehind(RespConnection.for_client(connection), failover or Failover("test"), **options)


# -- RespConnection -------------------------------------------------------------------------------------------

def test_commands_go_in_one_round_trip_with_their_replies_in_order(resp, connection):
    replies = resp.execute([("SET", "a", "1"), ("INCR", "a"), ("GET", "a"), ("GET", "missing"),
                            ("SET", "a", "x", "NX")])
    assert replies == [b"OK", 2, b"2", None, None]
    assert connection.get("a") == b"2"  # the same database as the redis-py client's


def test_an_error_reply_is_a_value_and_the_connection_goes_on(resp):
    replies = resp.execute([("SET", "s", "text"), ("INCR", "s"), ("GET", "s")])
    assert isinstance(replies[1], redis.exceptions.ResponseError) and "not an integer" in str(replies[1])
    assert replies[2] == b"text"
    assert resp.execute([("PING",)]) == [b"PONG"]


def test_it_uses_the_database_of_the_url(redis_url, connection):
    other = (connection.connection_pool.connection_kwargs["db"] % 15) + 1
    url = redis_url.rsplit("/", 1)[0] + f"/{other}"
    fast = RespConnection.for_client(redis.Redis.from_url(url))
    try:
        fast.execute([("SET", "kf-test:db-probe", "here", "PX", 5000)])
        assert redis.Redis.from_url(url).get("kf-test:db-probe") == b"here"
        assert connection.get("kf-test:db-probe") is None
    finally:
        redis.Redis.from_url(url).delete("kf-test:db-probe")
        fast.close()


def test_a_connection_the_server_closed_is_replaced_before_use(resp, connection):
    resp.execute([("CLIENT", "SETNAME", "kf-fast")])
    killed = connection.client_kill_filter(_type=None, skipme=True, _id=_client_id(connection, "kf-fast"))
    assert killed == 1
    assert resp.execute([("SET", "after-kill", "1")]) == [b"OK"]


def _client_id(connection, name: str) -> int:
    return next(c["id"] for c in connection.client_list() if c.get("name") == name)


def test_password_and_unix_socket(start_private_redis, tmp_path):
    server = start_private_redis(password="s3cret pass", unix_socket=tmp_path / "redis.sock")
    for url in (f"redis://:s3cret%20pass@127.0.0.1:{server.port}/2",
                f"unix://:s3cret%20pass@{tmp_path / 'redis.sock'}?db=2"):
        fast = RespConnection.for_client(redis.Redis.from_url(url))
        assert fast.execute([("SET", "k", url)]) == [b"OK"]
        assert redis.Redis.from_url(url).get("k") == url.encode()
        fast.close()


def test_a_wrong_password_is_a_connection_error_naming_it(start_private_redis):
    server = start_private_redis(password="right")
    fast = RespConnection.for_client(redis.Redis.from_url(f"redis://:wrong@127.0.0.1:{server.port}/0"))
    with pytest.raises(redis.exceptions.ConnectionError, match="refused AUTH"):
        fast.execute([("PING",)])


def test_a_stopped_server_is_a_connection_error_and_a_restarted_one_is_used_again(private_redis):
    fast = RespConnection.for_client(private_redis.client())
    assert fast.execute([("PING",)]) == [b"PONG"]
    private_redis.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        fast.execute([("PING",)])
    private_redis.start()
    assert fast.execute([("PING",)]) == [b"PONG"]


def test_tls_is_left_to_redis_py():
    assert RespConnection.for_client(redis.Redis.from_url("rediss://127.0.0.1:6380/0")) is None


def test_without_hiredis_there_is_no_fast_connection(monkeypatch, connection):
    import builtins
    real_import = builtins.__import__

    def no_hiredis(name, *args, **kwargs):
        if name == "hiredis":
            raise ImportError("No module named 'hiredis'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_hiredis)
    assert RespConnection.for_client(connection) is None


def _count_on(fast: RespConnection, key: str, times: int = 300) -> bool:
    """Whether ``times`` INCRs of ``key`` each got their own reply, 1 to ``times`` (no reply read by another)."""
    return [fast.execute([("INCR", key)])[0] for _ in range(times)] == list(range(1, times + 1))


def _count_in_child(fast: RespConnection, key: str, results) -> None:
    results.put((key, _count_on(fast, key)))


def test_a_forked_child_opens_its_own_socket(resp):
    assert resp.execute([("PING",)]) == [b"PONG"]  # the parent's socket is open before the fork
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    children = [context.Process(target=_count_in_child, args=(resp, f"child-{i}", results)) for i in range(3)]
    for child in children:
        child.start()
    assert _count_on(resp, "parent")  # at the same time as the children
    for child in children:
        child.join(WAIT)
        assert child.exitcode == 0
    assert sorted(results.get(timeout=WAIT) for _ in children) == [(f"child-{i}", True) for i in range(3)]
    assert resp.execute([("GET", "parent")]) == [b"300"]


def test_threads_share_it_safely(resp):
    def count(_: int) -> None:
        for _ in range(200):
            resp.execute([("INCR", "shared"), ("INCR", "shared")])
    threads = [threading.Thread(target=count, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert resp.execute([("GET", "shared")]) == [b"1600"]


# -- WriteBehind ----------------------------------------------------------------------------------------------

def test_queued_writes_go_with_the_next_call_before_it(connection):
    writer = writer_for(connection, linger=60)
    fallbacks = Recorder()
    writer.submit(("SET", "w1", "a"), fallbacks("w1"))
    writer.submit(("APPEND", "w1", "b"), fallbacks("w1b"))
    assert writer.queued == 2 and connection.get("w1") is None  # nothing sent yet (linger: 60 s)
    assert writer.call(("GET", "w1")) == b"ab"  # sent first, in order, then the call
    assert writer.queued == 0 and fallbacks.ran == []


def test_flush_sends_what_is_queued(connection):
    writer = writer_for(connection, linger=60)
    writer.submit(("SET", "w2", "x"), Recorder()("w2"))
    writer.flush()
    assert connection.get("w2") == b"x" and writer.queued == 0
    writer.flush()  # nothing queued: nothing to do


def test_a_quiet_spell_sends_them_in_the_background(connection):
    writer = writer_for(connection, linger=0.02)
    writer.submit(("SET", "w3", "later"), Recorder()("w3"))
    assert eventually(lambda: connection.get("w3") == b"later")
    assert writer.queued == 0


def test_while_claims_keep_coming_they_carry_the_writes_and_the_thread_sends_nothing(connection, monkeypatch):
    writer = writer_for(connection, linger=0.05)
    senders = []
    execute = writer.connection.execute
    monkeypatch.setattr(writer.connection, "execute",
                        lambda commands: senders.append(threading.current_thread().name) or execute(commands))
    for i in range(40):  # 0.2 s of pushes, one every 5 ms: each queued write waits less than linger
        writer.submit(("SET", f"steady-{i}", i), Recorder()(f"steady-{i}"))
        writer.call(("SET", f"claim-{i}", "P", "NX"))
        time.sleep(0.005)
    assert set(senders) == {threading.current_thread().name} and connection.get("steady-39") == b"39"
    writer.submit(("SET", "after-the-pushes", 1), Recorder()("after"))
    assert eventually(lambda: connection.get("after-the-pushes") == b"1")  # the quiet spell: the thread's turn
    assert senders[-1] == "kf-write-behind"


def test_a_long_queue_is_sent_by_the_submitter(connection):
    writer = writer_for(connection, linger=60, max_queued=5)
    for i in range(5):
        writer.submit(("RPUSH", "w4", i), Recorder()(f"w4-{i}"))
    assert writer.queued == 0
    assert connection.lrange("w4", 0, -1) == [b"0", b"1", b"2", b"3", b"4"]


def test_after_close_writes_are_sent_at_once(connection):
    writer = writer_for(connection, linger=60)
    writer.submit(("SET", "w5", "queued"), Recorder()("w5"))
    writer.close()
    assert connection.get("w5") == b"queued"
    writer.submit(("SET", "w6", "direct"), Recorder()("w6"))
    assert connection.get("w6") == b"direct" and writer.queued == 0


def test_a_refused_queued_write_is_logged_and_the_call_still_answers(connection, caplog):
    writer = writer_for(connection, linger=60)
    connection.set("w7", "text")
    writer.submit(("INCR", "w7"), Recorder()("w7"))
    with caplog.at_level(logging.ERROR, logger="kf_plugin.state.writebehind"):
        assert writer.call(("SET", "w8", "1", "NX")) == b"OK"
    assert any("refused a queued INCR" in r.getMessage() for r in caplog.records)


def test_a_refused_call_raises(connection):
    writer = writer_for(connection)
    connection.set("w9", "text")
    with pytest.raises(redis.exceptions.ResponseError):
        writer.call(("INCR", "w9"))


def test_when_redis_is_down_the_fallbacks_run_once_each(private_redis):
    clock = FakeClock()
    failover = Failover("test", retry_after=5, clock=clock)
    writer = writer_for(private_redis.client(), failover, linger=60)
    fallbacks = Recorder()
    writer.submit(("SET", "a", "1"), fallbacks("a"))
    private_redis.stop()
    # A call that cannot reach Redis: the queued write falls back, the call's error propagates (to Failover).
    with pytest.raises(redis.exceptions.ConnectionError):
        writer.call(("SET", "claim", "P", "NX"))
    assert fallbacks.ran == ["a"]
    writer.submit(("SET", "b", "1"), fallbacks("b"))
    writer.flush()  # through the failover: Redis is marked down, the write falls back
    assert fallbacks.ran == ["a", "b"] and failover.degraded
    writer.submit(("SET", "c", "1"), fallbacks("c"))
    writer.flush()  # still within retry_after: straight to the fallback
    assert fallbacks.ran == ["a", "b", "c"]
    private_redis.start()
    clock.advance(5)
    writer.submit(("SET", "d", "1"), fallbacks("d"))
    writer.flush()
    assert fallbacks.ran == ["a", "b", "c"] and not failover.degraded
    assert private_redis.client().get("d") == b"1"


def test_queued_writes_are_sent_at_exit(redis_url, tmp_path):
    import subprocess
    import sys
    script = (
        "import redis, sys\n"
        "from kf_plugin.state.failover import Failover\n"
        "from kf_plugin.state.writebehind import RespConnection, WriteBehind\n"
        f"writer = WriteBehind(RespConnection.for_client(redis.Redis.from_url({redis_url!r})), Failover('t'),"
        " linger=60)\n"
        "writer.submit(('SET', 'at-exit', 'sent'), lambda: None)\n"
        "assert writer.queued == 1\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert redis.Redis.from_url(redis_url).get("at-exit") == b"sent"


# -- the stores with a writer -----------------------------------------------------------------------------------

def test_open_state_for_the_webhook_writes_behind(redis_url, connection):
    state = open_state(redis_url, APPID, write_behind=True)
    assert state.writer is not None and state.replay.primary.writer is state.writer
    assert open_state(redis_url, APPID).writer is None  # everyone else writes at once


def test_a_push_costs_one_round_trip_and_reads_see_the_queued_writes(redis_url, connection):
    state = open_state(redis_url, APPID, write_behind=True)
    state.writer.linger = 60
    now = time.time()
    assert state.replay.claim("p1", 60) is True
    state.replay.complete("p1", "<xml>reply</xml>", 60)
    state.window.add_grant("o1", Grant("message", 5, now + 3600), now)
    assert state.writer.queued == 2
    assert connection.get("kf:wxapp:push:p1") == b"P"  # claimed, reply not yet sent

    assert state.replay.claim("p2", 60) is True  # the next claim carries them
    assert state.writer.queued == 0
    assert connection.get("kf:wxapp:push:p1") == b"D<xml>reply</xml>"
    assert connection.pttl("kf:wxapp:push:p1") > 50_000

    state.replay.complete("p2", "", 60)
    assert state.replay.wait("p2", 0.1) == ""  # wait sends it first
    state.window.add_grant("o2", Grant("click", 3, now + 60), now)
    assert state.window.get("o2", now) == WindowRecord((Grant("click", 3, now + 60),))
    state.window.add_grant("o2", Grant("message", 5, now + 3600), now)
    assert state.window.consume("o2", now) == Grant("click", 3, now + 60, used=1)


def test_a_retry_in_another_worker_gets_the_reply_once_it_is_sent(redis_url):
    first = open_state(redis_url, APPID, write_behind=True)
    other = open_state(redis_url, APPID, write_behind=True)
    first.writer.linger = 0.05
    assert first.replay.claim("p", 60) is True
    first.replay.complete("p", "the reply", 60)
    assert other.replay.claim("p", 60) is False
    assert other.replay.wait("p", 2.0) == "the reply"  # sent by the first worker's thread after 50 ms


def test_failover_stores_send_queued_writes_to_memory_while_redis_is_down(private_redis):
    connection = private_redis.client()
    clock = FakeClock()
    failover = Failover("test", retry_after=5, clock=clock)
    writer = writer_for(connection, failover, linger=60)
    from kf_plugin.state.redis import RedisReplayStore, RedisWindowStore
    replay = FailoverReplayStore(RedisReplayStore(connection, "kf:t:", writer=writer), MemoryReplayStore(),
                                 failover, writer)
    window = FailoverWindowStore(RedisWindowStore(connection, "kf:t:"), MemoryWindowStore(), failover, writer)
    assert replay.claim("k", 60) is True
    replay.complete("k", "queued reply", 60)
    window.add_grant("o", Grant("message", 5, T0 + 3600), T0)
    private_redis.stop()
    assert replay.claim("k2", 60) is True  # Redis down: memory claims, the queued writes went to memory
    assert failover.degraded
    assert replay.fallback.wait("k", 0) == "queued reply"
    assert window.fallback.get("o", T0) == WindowRecord((Grant("message", 5, T0 + 3600),))
    replay.complete("k2", "direct", 60)  # degraded: straight to memory, nothing queued
    assert writer.queued == 0 and replay.wait("k2", 0) == "direct"
