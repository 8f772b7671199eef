"""The bot of bench/wecom_burst.py: kf_plugin serving 微信客服 alone (no Official Account), its state in Redis.

Configured from the KF_* environment variables (KF_WECOM_*, KF_REDIS_URL). One handler of the bot's own takes
every customer text: it records the run, then answers a question (a text ending in "？") with ``答 <text>``
and anything else with nothing. Each run is one line ``<pid> <unix time> <text>`` appended to a file of its
worker's own in ``BENCH_RUNS_DIR`` (opened after gunicorn forks the worker).
"""
from __future__ import annotations

import os
import time
from typing import Optional

from flask import Flask

from kf_plugin import TEXT, KfPlugin, MessageRouter

QUESTION = "？"


def answer_of(text: str) -> Optional[str]:
    """The bot's reply to a customer's text (None: no reply)."""
    return f"答 {text}" if text.endswith(QUESTION) else None


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update({name: value for name, value in os.environ.items() if name.startswith("KF_")})
    runs = RunLog(os.environ["BENCH_RUNS_DIR"])

    def handle(message) -> Optional[str]:
        text = message.content or ""
        runs.write(text)
        return answer_of(text)

    router = MessageRouter()
    router.add(TEXT, handle)
    KfPlugin(app, router=router)
    return app


class RunLog:
    """One append-only file per worker process; one write per run, so lines never interleave."""

    def __init__(self, directory: str):
        self.directory = directory
        self.pid = 0
        self.fd = -1

    def write(self, text: str) -> None:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.fd = os.open(os.path.join(self.directory, f"runs-{self.pid}.log"),
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self.fd, f"{self.pid} {time.time():.6f} {text}\n".encode("utf-8"))
