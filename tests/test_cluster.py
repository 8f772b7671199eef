"""Several real processes sharing one Redis: one token, one duplicate-push memory, leader failover,
and a Redis outage in the middle of traffic."""
import multiprocessing
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import redis
import requests

from kf_plugin import MessageRouter, TEXT
from kf_plugin.testing import PushSigner, WeChatTestClient, message_xml
from kf_plugin.testing.sandbox import Sandbox

from . import cluster_workers
from .cluster_workers import RedisClock

SPAWN = multiprocessing.get_context("spawn")
START = 1_700_000_000.0


def wait_for(predicate, timeout=30.0, what="the workers"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what() if callable(what) else what} did not get there in {timeout:.0f} s"
        time.sleep(0.005)


@pytest.fixture
def processes():
    started = []
    yield lambda target, *args: started.append(SPAWN.Process(target=target, args=args, daemon=True)) or started[-1]
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(5)


@pytest.fixture
def sim(redis_url):
    """A sandbox whose clock is the simulated time in Redis."""
    clock = RedisClock(redis_url)
    clock.set(START)
    sandbox = Sandbox(clock=clock)
    with sandbox.serve() as server:
        yield sandbox, server.url, clock, redis.Redis.from_url(redis_url)


def run_steps(connection, clock, steps, step_seconds, workers, on_step=None):
    for step in range(steps):
        clock.set(START + step * step_seconds)
        connection.set("sim:step", step)
        wait_for(lambda: int(connection.get(f"sim:done:{step}") or 0) >= workers(step),
                 what=lambda: f"step {step} (done: {connection.get(f'sim:done:{step}')}, "
                              f"errors: {connection.lrange('errors', 0, -1)}, "
                              f"workers started: {connection.lrange('workers', 0, -1)})")
        if on_step is not None:
            on_step(step)


@pytest.mark.parametrize("mode, step_seconds, path", [("classic", 300, "/cgi-bin/token"),
                                                      ("stable", 60, "/cgi-bin/stable_token")])
def test_eight_workers_fetch_once_per_token_lifetime(sim, processes, redis_url, mode, step_seconds, path):
    sandbox, url, clock, connection = sim
    steps = int(3 * 7200 / step_seconds)
    for _ in range(8):
        processes(cluster_workers.token_worker, redis_url, url, sandbox.appid, sandbox.secret, mode, steps).start()
    run_steps(connection, clock, steps, step_seconds, lambda step: 8)
    assert connection.lrange("errors", 0, -1) == []
    # 21,600 s of traffic, tokens of 7200 s renewed shortly before they expire: 4 tokens, one fetch each.
    assert len(sandbox.calls_to(path)) == 4
    answers = [c.errcode for c in sandbox.calls_to("/cgi-bin/customservice/getkflist")]
    assert len(answers) == 8 * steps and set(answers) == {0}


def test_a_hundred_calls_in_four_processes_hitting_40001_renew_once(api, redis_url, processes):
    connection = redis.Redis.from_url(redis_url)
    for _ in range(4):
        processes(cluster_workers.burst_worker, redis_url, api.url, api.sandbox.appid, api.sandbox.secret, 25).start()
    wait_for(lambda: int(connection.get("ready") or 0) == 4)
    assert len(api.sandbox.calls_to("/cgi-bin/stable_token")) == 1      # one token for all four processes
    api.sandbox.invalidate_tokens()
    api.sandbox.clear_calls()
    api.sandbox.faults.add_latency(0.5, path="/cgi-bin/customservice/getkflist", times=100)
    connection.set("go", 1)
    wait_for(lambda: int(connection.get("finished") or 0) == 4)
    assert connection.lrange("errors", 0, -1) == []
    assert len(api.sandbox.calls_to("/cgi-bin/stable_token")) == 1
    answers = [c.errcode for c in api.sandbox.calls_to("/cgi-bin/customservice/getkflist")]
    assert answers.count(40001) == 100 and answers.count(0) == 100


def test_the_same_push_to_two_processes_runs_the_handler_once(redis_url, processes):
    ports = SPAWN.Queue()
    for _ in range(2):
        processes(cluster_workers.webhook_worker, redis_url, "cluster-token", ports).start()
    urls = [f"http://127.0.0.1:{ports.get(timeout=30)}/wechat" for _ in range(2)]
    query, body = PushSigner("cluster-token").sign(message_xml(text="hello", msg_id=123456789))
    answers = [None, None]

    def deliver(index):
        time.sleep(0.1 * index)   # the second delivery arrives while the first is being handled
        answers[index] = requests.post(urls[index], params=query, data=body, timeout=10)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text == answers[1].text and "answered by the first delivery" in answers[0].text
    assert int(redis.Redis.from_url(redis_url).get("handler-runs")) == 1


def test_a_killed_leader_is_replaced_in_time(sim, processes, redis_url):
    sandbox, url, clock, connection = sim
    steps, step_seconds = int(1.5 * 7200 / 60), 60
    workers = [processes(cluster_workers.token_worker, redis_url, url, sandbox.appid, sandbox.secret, "stable", steps)
               for _ in range(3)]
    for worker in workers:
        worker.start()
    killed = {}

    def kill_the_leader(step):
        if step == 10:
            leader = connection.get(f"kf:{{{sandbox.appid}}}:leader").decode()
            pid = int(leader.split(":")[1])       # the lease reads "host:pid:id|expires_at"
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not any(w.is_alive() and w.pid == pid for w in workers), what="the killed leader")
            killed["pid"], killed["step"] = pid, step

    run_steps(connection, clock, steps, step_seconds, lambda step: 3 if step <= 10 else 2, kill_the_leader)
    assert killed and connection.lrange("errors", 0, -1) == []
    new_leader = connection.get(f"kf:{{{sandbox.appid}}}:leader").decode()
    assert int(new_leader.split(":")[1]) != killed["pid"]   # another process leads now
    assert len(sandbox.calls_to("/cgi-bin/stable_token")) == 2          # renewed once, by the new leader
    assert {c.errcode for c in sandbox.calls_to("/cgi-bin/customservice/getkflist")} == {0}


# -- a Redis outage in the middle of traffic --------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, to stop and start at will."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False
        wait_for(up, 10, "redis-server")

    def stop(self):
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def private_redis(redis_server_url):   # needs redis-server, like the other Redis tests
    server = PrivateRedis()
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def test_a_redis_outage_never_gives_a_5xx_and_sharing_resumes(private_redis, make_app, caplog):
    runs = []
    router = MessageRouter()
    router.add(TEXT, lambda message: runs.append(1) or "hi")
    app = make_app(router=router, KF_REDIS_URL=private_redis.url)
    client = WeChatTestClient(app)
    plugin = app.extensions["kf_plugin"].plugin
    failover = app.extensions["kf_plugin"].services.shared.replay.failover
    connection = redis.Redis.from_url(private_redis.url)

    assert client.send_text("one").content == "hi"
    assert connection.keys("kf:*push:*")                              # state is in Redis

    private_redis.stop()
    answers = [client.send_text(f"during the outage {i}") for i in range(5)]
    assert [a.status for a in answers] == [200] * 5 and all(a.content == "hi" for a in answers)
    assert failover.degraded and caplog.text.count("Redis is unreachable") == 1
    query, body = client.signer.sign(message_xml(text="retried", msg_id=77))
    assert client.post(query, body).content == client.post(query, body).content == "hi"   # dedupe still works
    assert len(runs) == 1 + 5 + 1

    private_redis.start()
    failover.retry_after = 0                                           # do not wait the default 5 s
    connection.flushdb()
    assert client.send_text("after").content == "hi"
    assert not failover.degraded and "Redis is back" in caplog.text
    assert connection.keys("kf:*push:*")                              # shared again
