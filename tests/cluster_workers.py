"""Worker processes for the multi-process tests (importable, for the spawn start method).

Simulated time lives in Redis (key ``sim:now``) so the sandbox and every worker
see the same clock; steps are handed out through ``sim:step`` and acknowledged
through ``sim:done:{step}``.
"""
from __future__ import annotations

import os
import threading
import time
from typing import List

import redis

from kf_plugin.client import KfClient
from kf_plugin.state.redis_tokens import RedisTokenStore


class RedisClock:
    """Simulated unix time, shared through Redis."""

    def __init__(self, url: str, key: str = "sim:now"):
        self.redis = redis.Redis.from_url(url)
        self.key = key

    def __call__(self) -> float:
        return float(self.redis.get(self.key))

    def set(self, now: float) -> None:
        self.redis.set(self.key, repr(now))


def _client(redis_url: str, api_url: str, appid: str, secret: str, mode: str, clock=None) -> KfClient:
    connection = redis.Redis.from_url(redis_url)
    store = RedisTokenStore(connection, appid, clock=clock or time.time)
    client = KfClient(appid, secret, api_base_url=api_url, token_mode=mode, token_store=store, timeout=5)
    if clock is not None:
        client.tokens.clock = clock
    return client


def token_worker(redis_url: str, api_url: str, appid: str, secret: str, mode: str, steps: int) -> None:
    """Each step: the token job's tick, then an API call; failures go to the list ``errors``."""
    try:
        _token_steps(redis_url, api_url, appid, secret, mode, steps)
    except BaseException:
        import traceback
        redis.Redis.from_url(redis_url).rpush("errors", traceback.format_exc())
        raise


def _token_steps(redis_url: str, api_url: str, appid: str, secret: str, mode: str, steps: int) -> None:
    connection = redis.Redis.from_url(redis_url)
    client = _client(redis_url, api_url, appid, secret, mode, RedisClock(redis_url))
    connection.rpush("workers", client.tokens.owner)
    for step in range(steps):
        while int(connection.get("sim:step") or -1) < step:
            time.sleep(0.002)
        try:
            client.tokens.tick()
            client.get("/cgi-bin/customservice/getkflist")
        except Exception as exc:  # reported to the test through Redis
            connection.rpush("errors", f"step {step}: {exc!r}")
        connection.incr(f"sim:done:{step}")


def burst_worker(redis_url: str, api_url: str, appid: str, secret: str, threads: int) -> None:
    """Get a token, wait for the go signal, then make ``threads`` concurrent API calls."""
    connection = redis.Redis.from_url(redis_url)
    client = _client(redis_url, api_url, appid, secret, "stable")
    client.get("/cgi-bin/customservice/getkflist")
    connection.incr("ready")
    while not connection.get("go"):
        time.sleep(0.002)
    barrier = threading.Barrier(threads)
    errors: List[str] = []

    def call() -> None:
        barrier.wait()
        try:
            client.get("/cgi-bin/customservice/getkflist")
        except Exception as exc:  # reported to the test through Redis
            errors.append(repr(exc))

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for error in errors:
        connection.rpush("errors", error)
    connection.incr("finished")


def webhook_worker(redis_url: str, token: str, port_queue) -> None:
    """Serve a bot whose slow handler counts its runs in Redis; report the port, serve until killed."""
    connection = redis.Redis.from_url(redis_url)

    def slow(message):
        connection.incr("handler-runs")
        time.sleep(0.5)  # the other worker's delivery arrives meanwhile
        return f"answered by the first delivery at {time.time()}"
    _serve(slow, redis_url, token, port_queue)


def handler_worker(redis_url: str, token: str, port_queue, hang: bool) -> None:
    """Serve a bot that counts its handler's runs in Redis; with ``hang``, the handler never returns
    (the test kills this worker while it runs). Report the port, serve until killed."""
    connection = redis.Redis.from_url(redis_url)

    def answer(message):
        connection.incr("handler-runs")
        if hang:
            connection.set("hanging", os.getpid())
            time.sleep(600)
        return f"answered by {os.getpid()}"
    _serve(answer, redis_url, token, port_queue)


def _serve(handler, redis_url: str, token: str, port_queue) -> None:
    """A bot answering text with ``handler``, its state in Redis, on a free port (put on ``port_queue``)."""
    from flask import Flask
    from werkzeug.serving import make_server

    from kf_plugin import KfPlugin, MessageRouter, TEXT

    router = MessageRouter()
    router.add(TEXT, handler)
    app = Flask("cluster_bot")
    app.config.update(KF_TOKEN=token, KF_REDIS_URL=redis_url, KF_APPID="wxcluster")
    KfPlugin(app, router=router)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port_queue.put(server.server_port)
    server.serve_forever()


def rules_worker(redis_url: str, rules_path: str, port_queue) -> None:
    """Serve a bot whose answers come from the rule file at ``rules_path`` (watched every 0.2 s, reloads asked
    through Redis); report its pid and port, serve until killed."""
    from flask import Flask
    from werkzeug.serving import make_server

    from kf_plugin import KfPlugin

    app = Flask("rules_bot")
    app.config.update(KF_TOKEN="cluster-token", KF_REDIS_URL=redis_url, KF_APPID="wxrules", KF_RULES=rules_path,
                      KF_RULES_WATCH=0.2)
    KfPlugin(app)   # in this process's main thread, where SIGHUP is free: the plugin takes it
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port_queue.put((os.getpid(), server.server_port))
    server.serve_forever()
