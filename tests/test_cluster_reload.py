"""Two real worker processes sharing one Redis: ``kf-plugin reload`` puts an edited rule file in force in both, a
bad file leaves both on their rules with the error in ``kf-plugin rules status``, and SIGHUP reloads one."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import redis
import requests
from click.testing import CliRunner

from kf_plugin.cli import cli
from kf_plugin.state.redis_rules import RuleVersions
from kf_plugin.testing import Answer, PushSigner, message_xml

from . import cluster_workers

SPAWN = multiprocessing.get_context("spawn")
RULES = 'version: 1\nrules:\n  - name: price\n    keywords: 价格\n    reply: "price list {}"\n'
BAD = RULES.format(3) + '  - name: broken\n    regex: "("\n'
SIGNER = PushSigner("cluster-token")


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:.0f} s"
        time.sleep(0.02)


def ask(port: int) -> str:
    query, body = SIGNER.sign(message_xml(text="价格"))
    response = requests.post(f"http://127.0.0.1:{port}/wechat", params=query, data=body, timeout=10)
    return Answer(response.status_code, response.text, response.headers["Content-Type"], response.text).content


def write_keeping_stamp(path: Path, text: str) -> None:
    """Edit ``path`` so that its size and modification time stay: only a reload request tells the workers."""
    before = path.stat()
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def workers(redis_url, tmp_path):
    """Two workers serving the rule file ``price list 1``; their (pid, port)s, the file, and the environment of
    a CLI process beside them."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(1), encoding="utf-8")
    found = SPAWN.Queue()
    started = [SPAWN.Process(target=cluster_workers.rules_worker, args=(redis_url, str(path), found), daemon=True)
               for _ in range(2)]
    for process in started:
        process.start()
    pids_ports = [found.get(timeout=30) for _ in started]
    env = {"KF_REDIS_URL": redis_url, "KF_APPID": "wxrules", "KF_REDIS_PREFIX": None, "KF_RULES": None}
    yield pids_ports, path, env
    for process in started:
        process.kill()
        process.join(5)


def test_kf_plugin_reload_reaches_both_workers_and_a_bad_file_reaches_none(workers, redis_url):
    pids_ports, path, env = workers
    assert [ask(port) for _, port in pids_ports] == ["price list 1"] * 2    # their first requests start the watch
    versions = RuleVersions.of(redis.Redis.from_url(redis_url), "kf:", "wxrules")
    wait_for(lambda: len(versions.reports()) == 2, "both workers' first reports")
    runner = CliRunner(env=env)

    write_keeping_stamp(path, RULES.format(2))
    result = runner.invoke(cli, ["reload"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("reload 1 requested (2 live workers)")
    assert [ask(port) for _, port in pids_ports] == ["price list 2"] * 2

    path.write_text(BAD, encoding="utf-8")
    result = runner.invoke(cli, ["reload"])
    assert result.exit_code == 1
    assert "2 of 2 workers refused the rule file and keep their rules" in result.output
    problem = f"{path}:7: rule 'broken': regex: invalid regular expression"
    assert result.output.count(problem) == 2
    assert [ask(port) for _, port in pids_ports] == ["price list 2"] * 2

    status = runner.invoke(cli, ["rules", "status"])
    assert status.exit_code == 1 and status.output.count(problem) == 2
    assert {line.split()[1] for line in status.output.splitlines()[1:3]} == {str(pid) for pid, _ in pids_ports}


def test_sighup_reloads_the_worker_it_is_sent_to(workers, redis_url):
    pids_ports, path, _ = workers
    assert [ask(port) for _, port in pids_ports] == ["price list 1"] * 2
    versions = RuleVersions.of(redis.Redis.from_url(redis_url), "kf:", "wxrules")
    wait_for(lambda: len(versions.reports()) == 2, "both workers' watch jobs")   # before it, SIGHUP would end one
    write_keeping_stamp(path, RULES.format(2))
    (first_pid, first_port), (_, second_port) = pids_ports
    os.kill(first_pid, signal.SIGHUP)
    wait_for(lambda: ask(first_port) == "price list 2", "the reload on SIGHUP")
    assert ask(second_port) == "price list 1"                # the other worker was not asked
