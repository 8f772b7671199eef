"""Every kind of redis-py client the plugin accepts, each against a real server the test starts.

A Unix socket URL, TLS (``rediss://`` with a CA made here), a Sentinel-managed
master and a three-node Redis Cluster: for each, the real webhook path answers
a push and its retries once, in two "workers" (two apps, two clients), the
push's send rights are shared, and the token store works. Plus: the keys of
every script the stores run share one Redis Cluster slot.
"""
from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import redis
from flask import Flask
from redis.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry
from redis.sentinel import Sentinel

from kf_plugin import TEXT, MessageRouter
from kf_plugin.lifecycle import Change
from kf_plugin.state.base import Grant, PushClaim, Outcome, Token
from kf_plugin.state.shared import open_state
from kf_plugin.testing import WeChatTestClient, message_xml

from .conftest import APPID, PrivateRedis
from .redis_servers import PrivateSentinel, cluster_options, form_cluster, make_tls_files, wait_until

OPENID = "oRedisClients0001"


class Handler:
    """Answers a text with how many times it ran, and counts its runs per message."""

    def __init__(self) -> None:
        self.runs: "collections.Counter[str]" = collections.Counter()

    def router(self) -> MessageRouter:
        router = MessageRouter("counted")
        router.add(TEXT, self.answer)
        return router

    def answer(self, message: Any) -> str:
        self.runs[message.content] += 1
        return f"{message.content}: run {sum(self.runs.values())}"


def worker(make_app: Callable[..., Flask], request: Any, handler: Handler, *, redis_client: Any = None,
           **config: Any) -> Flask:
    """An app sharing state through ``redis_client`` (``KfPlugin(redis=...)``) or the ``KF_REDIS_URL`` in config."""
    options = {"redis": redis_client} if redis_client is not None else None
    app = make_app(router=handler.router(), plugin_options=options, **config)
    request.addfinalizer(app.extensions["kf_plugin"].plugin.shutdown)
    return app


def check_webhook(first: Flask, first_handler: Handler, second: Flask, second_handler: Handler) -> None:
    """A push answered once, its retries answered alike by both workers, its send rights seen by both."""
    xml = message_xml(text="hello", sender=OPENID)
    answer = WeChatTestClient(first).send(xml)
    assert (answer.status, answer.content) == (200, "hello: run 1"), answer.body
    retry = WeChatTestClient(first).send(xml)
    assert (retry.status, retry.body) == (200, answer.body)
    elsewhere = WeChatTestClient(second).send(xml)
    assert (elsewhere.status, elsewhere.body) == (200, answer.body), "the second worker ran the push again"
    assert first_handler.runs == {"hello": 1} and second_handler.runs == {}

    status = plugin_of(first).window.status(OPENID)
    assert status.known and status.can_send, status
    # The second worker never saw the push: it can know the grant only from the shared server.
    assert plugin_of(second).window.status(OPENID) == status


def plugin_of(app: Flask) -> Any:
    return app.extensions["kf_plugin"].plugin


def check_handoffs(first: Any, second: Any) -> None:
    """The hand-off store of two workers (``open_state`` on ``first`` and ``second``): one transition wins a race,
    both see it, notices and records are shared."""
    mine, theirs = open_state(first, APPID).handoffs, open_state(second, APPID).handoffs
    now = time.time()
    requests = [Change("request", now, reason="ask", handoff_id=f"h{i}") for i in range(2)]
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append((mine, theirs)[i].apply(OPENID, requests[i])))
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(t.moved for t in results) == 1
    assert theirs.conversation(OPENID) == mine.conversation(OPENID)
    assert mine.mark_noticed(OPENID, now, 60) and not theirs.mark_noticed(OPENID, now + 1, 60)
    theirs.apply(OPENID, Change("accept", now + 5, agent="wang@gh_test"))
    assert [c.agent for c in mine.active()] == ["wang@gh_test"]
    assert [r.waited for r in mine.records(now)] == [5]
    mine.remember(OPENID, "hello", now)
    assert theirs.recent(OPENID) == ["hello"]
    assert [mine.count_unanswered(OPENID, False, now), theirs.count_unanswered(OPENID, False, now)] == [1, 2]
    assert not mine.failover.degraded and not theirs.failover.degraded


def check_tokens(first: Any, second: Any) -> None:
    """The token store of two workers (``open_state`` on ``first`` and ``second``): put/get/invalidate/acquire."""
    mine, theirs = open_state(first, APPID).tokens, open_state(second, APPID).tokens
    now = time.time()
    token = Token("token-1", now + 7200)
    mine.put(token, now)
    assert theirs.get() == token
    assert not theirs.invalidate("token-0") and mine.get() == token   # only the token that failed is dropped
    assert theirs.invalidate("token-1") and mine.get() is None
    assert mine.acquire("refresh", "worker-a", 30)
    assert not theirs.acquire("refresh", "worker-b", 30) and theirs.holder("refresh") == "worker-a"
    mine.release("refresh", "worker-a")
    assert theirs.acquire("refresh", "worker-b", 30) and mine.holder("refresh") == "worker-b"
    assert [mine.count("fetches", 60), theirs.count("fetches", 60)] == [1, 2]


# -- a Unix socket -------------------------------------------------------------------------------------------

@pytest.fixture
def unix_url(start_private_redis, tmp_path: Path) -> str:
    server = start_private_redis(unix_socket=tmp_path / "redis.sock")
    return f"unix://{server.unix_socket}?db=0"


def test_unix_socket_url_shares_pushes_and_window(make_app, request, unix_url):
    first, second = Handler(), Handler()
    check_webhook(worker(make_app, request, first, KF_REDIS_URL=unix_url), first,
                  worker(make_app, request, second, redis_client=redis.Redis.from_url(unix_url)), second)


def test_unix_socket_url_token_store(unix_url):
    check_tokens(unix_url, redis.Redis.from_url(unix_url))


def test_unix_socket_url_hand_offs(unix_url):
    check_handoffs(unix_url, redis.Redis.from_url(unix_url))


# -- TLS --------------------------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(start_private_redis, tmp_path: Path) -> PrivateRedis:
    server = start_private_redis(tls=make_tls_files(tmp_path))
    plain = redis.Redis(host="127.0.0.1", port=server.port, socket_connect_timeout=1, socket_timeout=1,
                        retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()   # it speaks TLS only: what passes below went through TLS
    return server


def tls_client(server: PrivateRedis) -> redis.Redis:
    """A client made by the bot, with TLS options of its own."""
    assert server.tls is not None
    return redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(server.tls.ca),
                       socket_timeout=1)


def test_tls_url_and_tls_client_share_pushes_and_window(make_app, request, tls_server):
    first, second = Handler(), Handler()
    check_webhook(worker(make_app, request, first, KF_REDIS_URL=tls_server.url), first,
                  worker(make_app, request, second, redis_client=tls_client(tls_server)), second)


def test_tls_token_store(tls_server):
    check_tokens(tls_server.url, tls_client(tls_server))


def test_tls_without_the_ca_is_refused(tls_server):
    untrusting = redis.Redis.from_url(tls_server.url.partition("?")[0], socket_connect_timeout=1,
                                      retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        untrusting.ping()


# -- a Sentinel-managed master ---------------------------------------------------------------------------------

@pytest.fixture
def sentinel_port(start_private_redis, tmp_path: Path, request) -> int:
    master = start_private_redis()
    sentinel = PrivateSentinel(tmp_path, master.port)
    request.addfinalizer(sentinel.terminate)
    sentinel.start()
    return sentinel.port


def master_for(sentinel_port: int) -> redis.Redis:
    """The master as a bot finds it: through the Sentinel, a client of its own (one per worker)."""
    sentinel = Sentinel([("127.0.0.1", sentinel_port)], socket_timeout=1, socket_connect_timeout=1)
    return sentinel.master_for("mymaster", socket_timeout=1, socket_connect_timeout=1)


def test_sentinel_master_shares_pushes_and_window(make_app, request, sentinel_port):
    first, second = Handler(), Handler()
    check_webhook(worker(make_app, request, first, redis_client=master_for(sentinel_port)), first,
                  worker(make_app, request, second, redis_client=master_for(sentinel_port)), second)


def test_sentinel_master_token_store(sentinel_port):
    check_tokens(master_for(sentinel_port), master_for(sentinel_port))


def _answers(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def promotable(sentinel: PrivateSentinel) -> bool:
    """Whether the Sentinel knows a replica it could promote (connected, and linked to its master)."""
    replicas = sentinel.client().sentinel_slaves("mymaster")
    return any(not r["is_disconnected"] and r["master-link-status"] == "ok" for r in replicas)


def test_sentinel_failover_keeps_the_reply_for_a_worker_that_knew_the_old_master(make_app, request,
                                                                                 start_private_redis, tmp_path):
    """The master is replaced: a worker whose client was connected to the old one answers a retry from the new."""
    master = start_private_redis(options=["--repl-diskless-sync-delay", "0"])   # the replica syncs at once
    replica = start_private_redis(options=["--replicaof", "127.0.0.1", str(master.port)])
    wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up", "the replica's sync")
    sentinel = PrivateSentinel(tmp_path, master.port)
    request.addfinalizer(sentinel.terminate)
    sentinel.start()
    wait_until(lambda: promotable(sentinel), "the Sentinel finding the replica")
    first, second = Handler(), Handler()
    first_app = worker(make_app, request, first, redis_client=master_for(sentinel.port))
    second_app = worker(make_app, request, second, redis_client=master_for(sentinel.port))
    xml = message_xml(text="before the failover", sender=OPENID)
    answer = WeChatTestClient(first_app).send(xml)
    assert WeChatTestClient(second_app).send(message_xml(text="warm-up", sender=OPENID)).status == 200
    # Both replies have reached the replica (Redis replicates asynchronously: a failover may lose the last writes).
    wait_until(lambda: len(replica.client().keys("kf:*push:*")) == 2, "the replies' replication")

    sentinel.client().execute_command("SENTINEL FAILOVER", "mymaster")
    wait_until(lambda: sentinel.client().sentinel_get_master_addr_by_name("mymaster")[1] == replica.port
               and replica.client().info("replication")["role"] == "master", "the failover to the replica")
    master.stop()
    # The worker's client finds the new master once it reconnects (before that, a push would be answered from
    # the worker's memory, and a retry it never saw would run again: the failover's documented limit).
    wait_until(lambda: _answers(second_app.extensions["kf_plugin"].services.shared.redis), "the client's reconnection")

    retry = WeChatTestClient(second_app).send(xml)
    assert (retry.status, retry.body) == (200, answer.body)
    assert first.runs == {"before the failover": 1} and second.runs == {"warm-up": 1}
    assert plugin_of(second_app).window.status(OPENID) == plugin_of(first_app).window.status(OPENID)


# -- a Redis Cluster -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster_nodes(tmp_path_factory) -> Iterator[List[PrivateRedis]]:
    """Three redis-servers joined into one cluster, shared by this module's tests."""
    from .conftest import require_redis_server
    require_redis_server()
    directory = tmp_path_factory.mktemp("cluster")
    nodes = [PrivateRedis(directory) for _ in range(3)]
    try:
        for node in nodes:
            node.options += cluster_options(directory, node.port)
            node.start()
        form_cluster(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.terminate()


@pytest.fixture
def cluster(cluster_nodes) -> Callable[[int], RedisCluster]:
    """``cluster(i)`` → a new cluster client that starts from node ``i``; the nodes are emptied first."""
    for node in cluster_nodes:
        node.client().flushall()
        node.client().script_flush()   # every script is new to the cluster, as after a restart

    def connect(first_node: int = 0) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=cluster_nodes[first_node].port, socket_timeout=1)
    return connect


def test_cluster_shares_pushes_and_window(make_app, request, cluster):
    first, second = Handler(), Handler()
    check_webhook(worker(make_app, request, first, redis_client=cluster(0)), first,
                  worker(make_app, request, second, redis_client=cluster(1)), second)


def test_cluster_token_store(cluster):
    check_tokens(cluster(0), cluster(2))


def test_cluster_hand_offs(cluster):
    """A change is a WATCH/MULTI transaction on the slot's node: redis-py's cluster client runs it there."""
    check_handoffs(cluster(0), cluster(2))


def test_cluster_runs_the_pipelined_scripts(cluster):
    """Renewing leases and writing replies back run their scripts in pipelines, which a cluster does not preload."""
    replay = open_state(cluster(0), APPID).replay.primary
    assert replay.acquire(PushClaim("renewed", ttl=60, lease=1.0)).outcome is Outcome.CLAIMED
    replay._leases.drop("renewed")   # renewed by hand here, not by the keeper's thread with its 1 s lease
    replay.renew(["renewed"], 30.0)
    # The lease is judged by the server's clock; the servers run on this machine, so time.time() is theirs.
    assert lease_end_ms(cluster(1), replay.key("renewed")) - time.time() * 1000 > 20_000, "the lease was not renewed"

    replay.write_back([("answered elsewhere", "the reply", 60.0)])
    others = open_state(cluster(2), APPID).replay.primary
    claim = others.acquire(PushClaim("answered elsewhere", ttl=60))
    assert (claim.outcome, claim.reply) == (Outcome.DONE, "the reply")


def lease_end_ms(connection: Any, key: str) -> int:
    """When the lease in ``key`` ends, by the server's clock: its value is ``P<end ms>|<owner>``."""
    value = connection.get(key)
    assert value is not None and value.startswith(b"P"), value
    return int(value[1:].partition(b"|")[0])



# -- the keys of each script: one Redis Cluster slot ----------------------------------------------------------

class SlotRecorder:
    """A redis-py client that notes, for each script run (and each MGET), the cluster slots of its keys."""

    def __init__(self, connection: redis.Redis):
        self.connection = connection
        self.registered: List[str] = []
        self.slots: Dict[str, List[set]] = collections.defaultdict(list)   # script → slots of each run

    def register_script(self, text: str) -> Callable[..., Any]:
        script = self.connection.register_script(text)
        self.registered.append(text)

        def run(keys: List[str], args: Any = (), client: Any = None) -> Any:
            self.slots[text].append({key_slot(key.encode()) for key in keys})
            return script(keys=keys, args=args, client=client)
        return run

    def mget(self, *keys: str) -> Any:
        self.slots["MGET"].append({key_slot(key.encode()) for key in keys})
        return self.connection.mget(*keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def run_every_script(recorder: SlotRecorder, appid: str, openid: str) -> None:
    """Drives every operation of the Redis stores that runs a script."""
    state = open_state(recorder, appid)
    replay, window, tokens = state.replay.primary, state.window.primary, state.tokens.primary
    now, push = time.time(), f"m:{openid}:10001"
    grant = (openid, Grant("message", 5, now + 3600))
    claim = PushClaim(push, ttl=60, grant=grant, now=now, binding=("timestamp=1&nonce=2", "digest"), binding_ttl=60)
    assert replay.acquire(claim).outcome is Outcome.CLAIMED
    replay.renew([push], 3.0)
    assert replay.wait(push, 0) is None
    replay.complete(push, "the reply", 60)
    assert replay.acquire(PushClaim(f"{push}-2", ttl=60)).outcome is Outcome.CLAIMED
    replay.release(f"{push}-2")
    replay.write_back([(f"{push}-3", "written back", 60)])
    window.add_grant(openid, grant[1], now)
    assert window.consume(openid, now) is not None
    window.revoke(openid, now, exhausted=True)
    tokens.put(Token("token", now + 7200), now)
    assert tokens.get() is not None and tokens.invalidate("token")
    assert tokens.acquire("refresh", "me", 30)
    tokens.release("refresh", "me")
    assert tokens.count("fetches", 60) == 1


@pytest.mark.parametrize("appid", [APPID, "wxffffffffffffffff", "default"])
@pytest.mark.parametrize("openid", [OPENID, "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "oUser:with:colons"])
def test_the_keys_of_every_script_share_one_cluster_slot(redis_url, appid, openid):
    recorder = SlotRecorder(redis.Redis.from_url(redis_url))
    run_every_script(recorder, appid, openid)
    never_run = [text.strip().splitlines()[0] for text in recorder.registered if text not in recorder.slots]
    assert not never_run, f"scripts not exercised (so not checked): {never_run}"
    for script, runs in recorder.slots.items():
        assert all(len(slots) == 1 for slots in runs), f"keys in several slots {runs} for:\n{script}"
