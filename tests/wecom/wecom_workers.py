"""A 微信客服 bot in a process of its own, for the multi-process tests (importable, for the spawn start method).

Each worker is a Flask app with kf_plugin serving the WeCom callback, its state in Redis, answering every
customer text ``t`` with ``re t``. Its handler writes to Redis what the test checks:

- ``runs``: one ``{pid} {msgid} {customer} {text}`` entry each time the handler starts;
- ``done:{customer}``: the texts whose handler returned, in the order they returned;
- for the text :data:`BLOCK`, the first run to get there sets ``blocked`` to its pid and never returns (the
  test kills that worker); later runs answer it as any other text.
"""
from __future__ import annotations

import os
import time

import redis

BLOCK = "block here"
LEASE_TTL = 2.0   # seconds: a killed worker's pull lease lapses this long after its last renewal


def serve(redis_url: str, api_url: str, corpid: str, secret: str, token: str, aes_key: str, port_queue) -> None:
    """Serve the bot on a free loopback port (put on ``port_queue``) until killed."""
    import threading

    from flask import Flask

    from kf_plugin import TEXT, KfPlugin, MessageRouter
    from kf_plugin.testing.sandbox import SandboxServer

    connection = redis.Redis.from_url(redis_url)

    def answer(message):
        customer, text = message.source, message.content
        connection.rpush("runs", f"{os.getpid()} {message.raw['msgid']} {customer} {text}")
        if text == BLOCK and connection.set("blocked", os.getpid(), nx=True):
            time.sleep(600)   # the test kills this worker here, inside the pull's page
        connection.rpush(f"done:{customer}", text)
        return f"re {text}"

    router = MessageRouter()
    router.add(TEXT, answer)
    app = Flask("wecom_worker")
    app.config.update(KF_WECOM_CORPID=corpid, KF_WECOM_SECRET=secret, KF_WECOM_TOKEN=token,
                      KF_WECOM_AES_KEY=aes_key, KF_WECOM_API_BASE_URL=api_url, KF_REDIS_URL=redis_url)
    KfPlugin(app, router=router)
    # A short lease, so the test sees a dead worker's account taken over within seconds.
    app.extensions["kf_plugin"].wecom.puller.lease_ttl = LEASE_TTL
    server = SandboxServer(app)   # a threaded loopback server without an access log
    port_queue.put((os.getpid(), server.port))
    threading.Event().wait()
