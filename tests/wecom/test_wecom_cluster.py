"""微信客服 with several real worker processes sharing one Redis, the sandbox playing WeCom.

Two bot processes (tests/wecom/wecom_workers.py) stand behind a round-robin balancer, so WeCom's callbacks
reach both of them and both pull the one kf account. What the puller promises (kf_plugin/wecom/puller.py):
one pull of an account at a time across the workers (a lease), each customer's messages in order, and every
message handled once — except one whose handler was running when its worker died: a message is recorded as
handled only once its handler returned, so the next pull runs that handler again from the start (whatever
the dead run had done before dying stays done; here it had sent nothing).
"""
from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import signal
import threading
import time
from typing import Dict, List, Tuple

import pytest
import redis
import requests
from flask import Flask, Response, request

from kf_plugin.state.redis_tokens import RedisTokenStore
from kf_plugin.testing.sandbox import Sandbox, SandboxServer
from kf_plugin.wecom import token_store_name
from kf_plugin.wecom.puller import LEASE_PREFIX
from kf_plugin.wecom.state import RedisSeenStore

from ..conftest import AES_KEY
from . import wecom_workers
from .wecom_workers import BLOCK

pytestmark = pytest.mark.timeout(60)

SPAWN = multiprocessing.get_context("spawn")
WECOM_TOKEN = "clusterWecomToken"


def wait_for(predicate, what, timeout=20.0):
    """Poll ``predicate`` until it holds; fail naming ``what()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what()}"
        time.sleep(0.01)


class Balancer:
    """A load balancer in front of the workers: each callback goes to the next live worker in turn."""

    def __init__(self, urls: List[str]):
        self.urls = urls
        self.dead: set = set()
        self.received: Dict[int, int] = collections.Counter()
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.app = Flask("balancer")
        self.app.add_url_rule("/wecom/kf", "forward", self.forward, methods=["GET", "POST"])

    def forward(self) -> Response:
        with self._lock:
            live = [i for i in range(len(self.urls)) if i not in self.dead]
            index = live[next(self._turn) % len(live)]
            self.received[index] += 1
        answer = requests.request(request.method, self.urls[index], params=request.args, data=request.get_data(),
                                  headers={"Content-Type": request.content_type or "text/xml"}, timeout=5)
        return Response(answer.content, answer.status_code)


class Cluster:
    """The sandbox, two workers behind the balancer, and the worker's records in Redis."""

    def __init__(self, sandbox: Sandbox, kfid: str, redis_url: str, workers: List[Tuple[int, int]],
                 balancer: Balancer, url: str):
        self.sandbox, self.kfid, self.balancer, self.url = sandbox, kfid, balancer, url
        self.pids = [pid for pid, _ in workers]
        self.redis = redis.Redis.from_url(redis_url)
        self.seen = RedisSeenStore(self.redis, sandbox.wecom.corpid)
        self.leases = RedisTokenStore(self.redis, token_store_name(sandbox.wecom.corpid))

    def runs(self) -> List[Tuple[int, str, str, str]]:
        """Each handler start: (pid, msgid, customer, text)."""
        entries = [entry.decode().split(" ", 3) for entry in self.redis.lrange("runs", 0, -1)]
        return [(int(pid), msgid, customer, text) for pid, msgid, customer, text in entries]

    def done(self, customer: str) -> List[str]:
        return [text.decode() for text in self.redis.lrange(f"done:{customer}", 0, -1)]

    def replies(self) -> Dict[str, List[str]]:
        """The texts sent to each customer, in the order WeCom took them."""
        sent: Dict[str, List[str]] = collections.defaultdict(list)
        for message in self.sandbox.wecom.sent:
            sent[message["touser"]].append(message["text"]["content"])
        return sent

    def pulling(self) -> bool:
        return self.leases.holder(LEASE_PREFIX + self.kfid) is not None


@pytest.fixture
def cluster(redis_url):
    sandbox = Sandbox()
    kfid = sandbox.wecom.add_account("客服")
    processes = []
    ports = SPAWN.Queue()
    with sandbox.serve() as api:
        for _ in range(2):
            process = SPAWN.Process(target=wecom_workers.serve, daemon=True, args=(
                redis_url, api.url, sandbox.wecom.corpid, sandbox.wecom.secret, WECOM_TOKEN, AES_KEY, ports))
            process.start()
            processes.append(process)
        try:
            workers = sorted(ports.get(timeout=30) for _ in processes)
            balancer = Balancer([f"http://127.0.0.1:{port}/wecom/kf" for _, port in workers])
            with SandboxServer(balancer.app) as front:
                url = front.url + "/wecom/kf"
                sandbox.wecom.connect_bot(url, WECOM_TOKEN, AES_KEY)
                yield Cluster(sandbox, kfid, redis_url, workers, balancer, url)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join(5)


def burst(sandbox: Sandbox, kfid: str, customers: int, each: int, special: Dict[Tuple[int, int], str] = None):
    """Customer c writes message m for m in 0..each-1, the customers taking turns; their texts by customer.

    At most 5 each: WeCom takes 5 sends after a customer's last message (95001 beyond), and each is answered.
    """
    special = special or {}
    written: Dict[str, List[str]] = collections.defaultdict(list)
    for m in range(each):
        for c in range(customers):
            customer = f"wmCluster{c:04d}"
            text = special.get((c, m), f"{customer} #{m}")
            sandbox.wecom.customer_says(kfid, customer, text)
            written[customer].append(text)
    return written


def test_two_workers_pulling_one_account_handle_each_message_once_in_order(cluster):
    written = burst(cluster.sandbox, cluster.kfid, customers=40, each=5)
    total = sum(map(len, written.values()))
    cluster.sandbox.wecom.wait_for_callbacks(timeout=30)
    wait_for(lambda: len(cluster.sandbox.wecom.sent) >= total and not cluster.pulling(),
             lambda: f"{len(cluster.sandbox.wecom.sent)} of {total} replies sent")

    callbacks = cluster.sandbox.wecom.callbacks
    assert len(callbacks) == total and {c.status for c in callbacks} == {200}
    assert sorted(cluster.balancer.received.values()) == [total // 2, total // 2]   # both workers were told
    runs = cluster.runs()
    assert len(runs) == total and len({msgid for _, msgid, _, _ in runs}) == total   # each handled once
    assert {pid for pid, _, _, _ in runs} <= set(cluster.pids)
    assert {customer: cluster.done(customer) for customer in written} == written      # in order per customer
    assert cluster.replies() == {customer: [f"re {t}" for t in texts] for customer, texts in written.items()}


def test_a_worker_killed_inside_a_page_loses_nothing_and_repeats_only_the_running_handler(cluster):
    sandbox, kfid, front = cluster.sandbox, cluster.kfid, cluster.balancer
    sandbox.wecom.disconnect_bot()   # the burst lands before any callback: the first pull gets it as one page
    written = burst(sandbox, kfid, customers=6, each=5, special={(2, 1): BLOCK})
    blocked = "wmCluster0002"
    sandbox.wecom.connect_bot(cluster.url, WECOM_TOKEN, AES_KEY)
    sandbox.wecom.customer_says(kfid, "wmClusterLate", "one more")          # the callback: to worker 0
    written["wmClusterLate"].append("one more")
    wait_for(lambda: cluster.redis.get("blocked") is not None, lambda: f"no handler blocked; runs {cluster.runs()}")
    killed = int(cluster.redis.get("blocked"))
    assert killed == cluster.pids[0]
    msgids = {(m["external_userid"], m["text"]["content"]): m["msgid"] for m in sandbox.wecom.messages}
    waiting = {msgids[blocked, text] for text in written[blocked][1:]}     # the blocked one and those after it
    others = set(msgids.values()) - waiting
    # Kill only once every other message of the page is recorded as handled: then exactly one handler runs.
    wait_for(lambda: all(cluster.seen.seen(msgid) for msgid in others),
             lambda: f"{sum(cluster.seen.seen(m) for m in others)} of {len(others)} recorded")
    assert not waiting & {msgid for _, msgid, _, _ in cluster.runs()} - {msgids[blocked, BLOCK]}

    sandbox.wecom.customer_says(kfid, blocked, "after the kill")           # the callback: to worker 1
    written[blocked].append("after the kill")
    sandbox.wecom.wait_for_callbacks(timeout=10)
    assert dict(front.received) == {0: 1, 1: 1}
    os.kill(killed, signal.SIGKILL)
    front.dead.add(0)
    total = sum(map(len, written.values()))
    wait_for(lambda: len(sandbox.wecom.sent) >= total and not cluster.pulling(),
             lambda: f"{len(sandbox.wecom.sent)} of {total} replies sent; runs {len(cluster.runs())}")

    runs = collections.defaultdict(list)
    for pid, msgid, _, _ in cluster.runs():
        runs[msgid].append(pid)
    survivor = cluster.pids[1]
    assert runs.pop(msgids[blocked, BLOCK]) == [killed, survivor]   # the running handler, run again from the start
    assert set(runs) == set(msgids.values()) - {msgids[blocked, BLOCK]} | {
        m["msgid"] for m in sandbox.wecom.messages if m["text"]["content"] == "after the kill"}
    assert all(len(pids) == 1 for pids in runs.values())               # every other message: once
    assert {customer: cluster.done(customer) for customer in written} == written
    assert cluster.replies() == {customer: [f"re {t}" for t in texts] for customer, texts in written.items()}
