"""The bot of bench/faults.py: kf_plugin's endpoint (init_app, no kf rules) and one handler of the bot's own.

The handler answers every text push with ``echo <MsgId>`` (the same reply however often it runs, so a retry
answered by a second run is a duplicate run, not a lost reply). It records each run from the bot's side:
``S <MsgId> <pid> <unix time>`` when it starts and ``E …`` when it returns, one line per write, appended to
a file of its worker's own in ``BENCH_RUNS_DIR``. A push asking for a human ("转人工") sleeps
``BENCH_SLOW_SECONDS`` first, so the benchmark can kill the worker while the handler runs.
"""
from __future__ import annotations

import os
import time

from flask import Flask

from kf_plugin import KfPlugin

from .common import APPID, TOKEN, TRIGGER, URL


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update({name: value for name, value in os.environ.items() if name.startswith("KF_")})
    app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID, KF_URL=URL)
    plugin = KfPlugin(app)
    runs = RunLog(os.environ["BENCH_RUNS_DIR"])
    slow = float(os.environ.get("BENCH_SLOW_SECONDS", "2"))

    @plugin.router.on(name="echo")
    def echo(message):
        runs.write("S", message.id)
        if TRIGGER in (getattr(message, "content", "") or ""):
            time.sleep(slow)
        runs.write("E", message.id)
        return f"echo {message.id}"

    return app


class RunLog:
    """One append-only file per worker process (opened after gunicorn forks it)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.pid = 0
        self.fd = -1

    def write(self, kind: str, msg_id: object) -> None:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.fd = os.open(os.path.join(self.directory, f"runs-{self.pid}.log"),
                              os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self.fd, f"{kind} {msg_id} {self.pid} {time.time():.3f}\n".encode("ascii"))
