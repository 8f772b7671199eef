"""Several workers without Redis: one warning per process, from what a real gunicorn exposes."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests

from kf_plugin import deployment

APP_MODULE = """\
from flask import Flask
from kf_plugin import KfPlugin

def create_app():
    app = Flask("workers")
    app.config.update(KF_TOKEN="t", KF_REDIS_URL=REDIS_URL)
    KfPlugin(app)
    return app
"""
WARNING = "worker processes serve this app but KF_REDIS_URL is not set"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_gunicorn(tmp_path, *options, redis_url=None):
    """Serve the app under gunicorn until every worker has answered once; its log."""
    if shutil.which("gunicorn", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("gunicorn is not installed (pip install -e '.[dev]')")
    (tmp_path / "workers_app.py").write_text(f"REDIS_URL = {redis_url!r}\n" + APP_MODULE, encoding="utf-8")
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "WEB_CONCURRENCY"))}
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "--bind",
                               f"127.0.0.1:{port}", *options, "workers_app:create_app()"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.RequestException:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        # Workers load the app as they boot: wait (bounded) until each has said so.
        while log.read_text().count("Booting worker") < int(options[options.index("--workers") + 1]):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return log.read_text()


def test_two_gunicorn_workers_without_redis_warn_once_each(tmp_path):
    log = run_gunicorn(tmp_path, "--workers", "2")
    assert log.count(WARNING) == 2 and "2 worker processes" in log


def test_a_preloaded_app_warns_once_in_the_master(tmp_path):
    assert run_gunicorn(tmp_path, "--workers", "3", "--preload").count("3 " + WARNING) == 1


@pytest.mark.parametrize("options, redis_url", [
    (("--workers", "1"), None),
    (("--workers", "2"), "redis://127.0.0.1:6379/0"),      # nothing connects at start-up
])
def test_no_warning_for_one_worker_or_with_redis(tmp_path, options, redis_url):
    assert WARNING not in run_gunicorn(tmp_path, *options, redis_url=redis_url)


def test_web_concurrency_counts_and_the_warning_is_logged_once_per_process(make_app, monkeypatch, caplog):
    monkeypatch.setattr(deployment, "_warned_in", None)
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    assert deployment.worker_count() == 4
    make_app()
    make_app()
    assert caplog.text.count("4 " + WARNING) == 1


def test_outside_a_server_nothing_is_counted(monkeypatch):
    for name in ("WEB_CONCURRENCY", "SERVER_SOFTWARE"):
        monkeypatch.delenv(name, raising=False)
    assert deployment.worker_count() is None
