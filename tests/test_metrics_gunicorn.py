"""The metrics under gunicorn with several workers, set up as docs/operations.md says: prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) and the ``child_exit`` hook. Whichever worker answers a scrape,
it counts every worker's pushes; a worker that dies leaves the live gauges."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, List

import pytest
import requests

from kf_plugin.testing import PushSigner, message_xml

from .conftest import TOKEN
from .test_webhook_server import ROOT, _own_options

PUSHES = 40
CONFIG = """\
from kf_plugin.metrics import child_exit  # gunicorn calls it in the arbiter when a worker exits

workers = 2
"""


def _free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _eventually(predicate, timeout: float = 30.0, what: str = "the workers") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not get there in {timeout:.0f} s"
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path, rules_file: Path) -> Iterator[str]:
    """gunicorn with two workers in multiprocess mode; the base URL (the metrics' directory is tmp_path/prom)."""
    (tmp_path / "prom").mkdir()
    (tmp_path / "gunicorn_conf.py").write_text(CONFIG, encoding="utf-8")
    port = _free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "KF_RULES": str(rules_file)}
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn_conf.py"),
                                *_own_options(), "--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT),
                                "tests.metrics_app:create_app()"], stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "gunicorn.log").read_text(errors="replace")
        try:
            return requests.get(url + "/metrics", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False
    _eventually(up, 60, "gunicorn")
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    log.close()


def _push(url: str, index: int) -> int:
    query, body = PushSigner(TOKEN).sign(message_xml(text="人工", sender=f"oUser{index:023d}", msg_id=9000 + index))
    answer = requests.post(f"{url}/wechat?{urllib.parse.urlencode(query)}", data=body, timeout=10)
    return answer.status_code


def _sample(scraped: str, name: str) -> float:
    values: List[float] = [float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
                           if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} appears {len(values)} times in the scrape"
    return values[0]


def _pids(directory: Path, kind: str) -> List[int]:
    return sorted(int(path.stem.rsplit("_", 1)[1]) for path in directory.glob(f"{kind}_*.db"))


def test_every_scrape_counts_every_workers_pushes(served: str, tmp_path: Path):
    pushed = 0
    deadline = time.monotonic() + 60
    while pushed < PUSHES or len(_pids(tmp_path / "prom", "counter")) < 2:   # the kernel picks the worker
        assert time.monotonic() < deadline, f"one worker took all {pushed} pushes"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda i: _push(served, i), range(pushed, pushed + PUSHES))) == {200}
        pushed += PUSHES
    for _ in range(8):   # the scrapes land on either worker
        scraped = requests.get(served + "/metrics", timeout=5).text
        assert _sample(scraped, 'kf_pushes_total{channel="official_account",status="200"}') == pushed
        assert _sample(scraped, 'kf_rule_matches_total{rule="ask-for-human"}') == pushed
        assert _sample(scraped, 'kf_push_seconds_count{channel="official_account"}') == pushed
        assert "pid=" not in scraped, "gauges are merged across workers, not one series a worker"


def test_a_worker_that_dies_leaves_the_live_gauges(served: str, tmp_path: Path):
    directory = tmp_path / "prom"
    _eventually(lambda: len(_pids(directory, "gauge_livemostrecent")) == 2)
    dead = _pids(directory, "gauge_livemostrecent")[0]
    os.kill(dead, signal.SIGKILL)
    _eventually(lambda: dead not in _pids(directory, "gauge_livemostrecent"), what="child_exit")
    _eventually(lambda: len(_pids(directory, "gauge_livemostrecent")) == 2, what="the new worker")
    assert requests.get(served + "/metrics", timeout=5).status_code == 200
