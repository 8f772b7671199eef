"""Exactly once under faults: a worker killed mid-handler, a Redis that stalls, a Redis that restarts.

Each test delivers pushes as WeChat does (the first delivery, then retries of the same signed request) and
counts the bot's handler runs and the answers: no push may be lost (a retry answered ``success`` although
a reply exists or could be made), and no push may run twice where the guarantee says it cannot.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Dict, List, Tuple

import pytest
import redis
import requests

from kf_plugin import TEXT, MessageRouter
from kf_plugin.testing import PushSigner, WeChatTestClient, message_xml

from . import cluster_workers
from .conftest import APPID, TOKEN
from .test_cluster import SPAWN, processes, wait_for  # noqa: F401  (the fixture)


def counting_router(runs: List[str]) -> MessageRouter:
    router = MessageRouter("bot")

    @router.on(TEXT)
    def answer(message):
        runs.append(message.content)
        return f"reply to {message.content}"
    return router


def test_a_worker_killed_mid_handler_loses_no_push(redis_url, processes):
    ports = SPAWN.Queue()
    doomed = processes(cluster_workers.handler_worker, redis_url, "kill-token", ports, True)
    doomed.start()
    doomed_url = f"http://127.0.0.1:{ports.get(timeout=30)}/wechat"
    processes(cluster_workers.handler_worker, redis_url, "kill-token", ports, False).start()
    survivor_url = f"http://127.0.0.1:{ports.get(timeout=30)}/wechat"
    connection = redis.Redis.from_url(redis_url)
    query, body = PushSigner("kill-token").sign(message_xml(text="转人工", msg_id=987654321))

    def first_delivery():
        try:
            requests.post(doomed_url, params=query, data=body, timeout=30)
        except requests.RequestException:
            pass  # the worker dies under it, as WeChat's first delivery would see it

    threading.Thread(target=first_delivery, daemon=True).start()
    wait_for(lambda: connection.get("hanging") is not None, what="the first delivery's handler")
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(10)

    # WeChat retries 5 s after the first delivery; here at once, so the claim must lapse within the retry's wait.
    retry = requests.post(survivor_url, params=query, data=body, timeout=30)
    assert retry.status_code == 200
    assert "answered by" in retry.text, f"the retry was answered {retry.text!r}: the push was lost"
    assert int(connection.get("handler-runs")) == 2   # the killed run, and the retry's
    again = requests.post(survivor_url, params=query, data=body, timeout=30)
    assert again.text == retry.text


def deliver(client: WeChatTestClient, pushes: Dict[str, Tuple[dict, str]], name: str) -> str:
    query, body = pushes[name]
    answer = client.post(query, body)
    assert answer.status == 200, answer.body
    return answer.body


def test_one_worker_runs_each_push_once_through_a_redis_stall(make_app, private_redis):
    runs: List[str] = []
    app = make_app(router=counting_router(runs), KF_REDIS_URL=private_redis.url, KF_MAX_CLOCK_SKEW=0)
    client = WeChatTestClient(app)
    signer = PushSigner(TOKEN)
    pushes = {f"p{i}": signer.sign(message_xml(text=f"p{i}", msg_id=5000 + i)) for i in range(12)}
    first: Dict[str, str] = {}
    for name in ("p0", "p1", "p2", "p3"):        # claimed and answered in Redis
        first[name] = deliver(client, pushes, name)

    private_redis.process.send_signal(signal.SIGSTOP)   # Redis stalls: every call times out
    try:
        for name in ("p4", "p5", "p6", "p7"):    # handled from this worker's memory
            first[name] = deliver(client, pushes, name)
        for name in ("p0", "p1", "p4", "p5"):    # retries during the stall
            assert deliver(client, pushes, name) == first[name]
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    state = app.extensions["kf_plugin"].services.shared
    wait_for(lambda: not state.replay.failover.degraded, what="the return of Redis")
    for name in ("p8", "p9", "p10", "p11"):
        first[name] = deliver(client, pushes, name)
    for name in sorted(pushes):                  # retries of everything after the stall
        assert deliver(client, pushes, name) == first[name], name

    assert sorted(runs) == sorted(pushes), "a push ran twice, or not at all"
    assert all("reply to" in reply for reply in first.values())


def test_a_second_worker_gets_the_replies_given_while_redis_was_down(make_app, private_redis):
    runs: List[str] = []
    first_worker = make_app(router=counting_router(runs), KF_REDIS_URL=private_redis.url, KF_MAX_CLOCK_SKEW=0)
    second_worker = make_app(router=counting_router(runs), KF_REDIS_URL=private_redis.url, KF_MAX_CLOCK_SKEW=0)
    signer = PushSigner(TOKEN)
    pushes = {f"q{i}": signer.sign(message_xml(text=f"q{i}", msg_id=7000 + i)) for i in range(4)}
    first: Dict[str, str] = {}
    client = WeChatTestClient(first_worker)
    deliver(client, pushes, "q0")   # Redis is up: q0 is claimed there
    private_redis.stop()
    for name in pushes:
        first[name] = deliver(client, pushes, name)
    private_redis.start()           # an empty Redis on the same port: a restart
    state = first_worker.extensions["kf_plugin"].services.shared
    wait_for(lambda: not state.replay.failover.degraded and state.replay.unsent == 0,
             what="the write-back after Redis restarted")
    other = WeChatTestClient(second_worker)
    for name in pushes:              # retries that reach the other worker after Redis is back
        assert deliver(other, pushes, name) == first[name], name
    assert sorted(runs) == sorted(pushes)


def test_a_claim_that_timed_out_does_not_block_retries(make_app, private_redis):
    """Redis executes a claim after its client gave up on it; the push answered meanwhile is not held up."""
    runs: List[str] = []
    first_worker = make_app(router=counting_router(runs), KF_REDIS_URL=private_redis.url, KF_MAX_CLOCK_SKEW=0)
    second_worker = make_app(router=counting_router(runs), KF_REDIS_URL=private_redis.url, KF_MAX_CLOCK_SKEW=0)
    query, body = PushSigner(TOKEN).sign(message_xml(text="late claim", msg_id=8001))
    private_redis.process.send_signal(signal.SIGSTOP)
    try:
        answer = WeChatTestClient(first_worker).post(query, body)   # the claim times out; memory answers
    finally:
        private_redis.process.send_signal(signal.SIGCONT)            # Redis now runs the claim it held
    assert answer.content == "reply to late claim"
    state = first_worker.extensions["kf_plugin"].services.shared
    wait_for(lambda: not state.replay.failover.degraded and state.replay.unsent == 0,
             what="the write-back after the stall")
    started = time.monotonic()
    retry = WeChatTestClient(second_worker).post(query, body)
    assert retry.body == answer.body
    assert time.monotonic() - started < 1, "the retry waited on an orphaned claim"
    assert runs == ["late claim"]
