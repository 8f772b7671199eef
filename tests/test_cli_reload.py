"""``kf-plugin reload`` and ``kf-plugin rules status`` on the reports workers leave in Redis: the table, JSON,
errors, workers that do not answer, and no Redis at all."""
from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from kf_plugin.cli import cli
from kf_plugin.cli.reload_commands import NO_WORKERS
from kf_plugin.state.redis_rules import RuleVersions, WorkerReport

T0 = 1_700_000_000.0            # 2023-11-14 22:13:20 UTC
DIGEST = "5b290104801c" + "0" * 52
ERROR = "1 problem in rule file:\n  /etc/bot/rules.yaml:7: rule 'broken': regex: invalid regular expression"

STATUS = """\
HOST    PID  RULES         LOADED                     RELOAD  LAST ERROR
host-a  101  5b290104801c  2023-11-14 22:13:20 +0000  3       -
host-b  202  5b290104801c  2023-11-14 22:13:20 +0000  3       2023-11-14 22:14:20 +0000 (below)
host-b  303  (Python)      -                          -       -

host-b:202 (2023-11-14 22:14:20 +0000):
1 problem in rule file:
  /etc/bot/rules.yaml:7: rule 'broken': regex: invalid regular expression

note: the workers run 2 different rule sets: compare each host's rule file
"""


@pytest.fixture
def versions(redis_url) -> RuleVersions:
    return RuleVersions.of(redis.Redis.from_url(redis_url), "kf:", "wxcli")


@pytest.fixture
def runner(redis_url) -> CliRunner:
    return CliRunner(env={"KF_REDIS_URL": redis_url, "KF_APPID": "wxcli", "KF_REDIS_PREFIX": None})


def three_workers(versions: RuleVersions) -> None:
    for report in (WorkerReport("host-a", 101, "/etc/bot/rules.yaml", DIGEST, T0, 3),
                   WorkerReport("host-b", 202, "/etc/bot/rules.yaml", DIGEST, T0, 3, ERROR, T0 + 60),
                   WorkerReport("host-b", 303, None, None, None)):
        versions.report(report, ttl=60)


def test_status_shows_each_worker_and_its_error(runner, versions):
    three_workers(versions)
    result = runner.invoke(cli, ["rules", "status", "--tz", "UTC"])
    assert result.exit_code == 1
    assert result.stdout == STATUS
    assert result.stderr == "Error: 1 of 3 workers refused the rule file and keep their rules: host-b:202\n"


def test_status_as_json(runner, versions):
    three_workers(versions)
    result = runner.invoke(cli, ["rules", "status", "--json"])
    workers = json.loads(result.stdout)["workers"]
    assert [(w["host"], w["pid"], w["digest"], w["error"]) for w in workers] == [
        ("host-a", 101, DIGEST, None), ("host-b", 202, DIGEST, ERROR), ("host-b", 303, None, None)]


def test_status_tells_apart_workers_on_different_files(runner, versions):
    versions.report(WorkerReport("host-a", 101, "/etc/bot/rules.yaml", DIGEST, T0), ttl=60)
    versions.report(WorkerReport("host-b", 202, "/etc/bot/rules.yaml", "f" * 64, T0), ttl=60)
    result = runner.invoke(cli, ["rules", "status", "--tz", "UTC"])
    assert result.exit_code == 0
    assert result.stdout.endswith("note: the workers run 2 different rule sets: compare each host's rule file\n")


def test_status_without_workers(runner):
    result = runner.invoke(cli, ["rules", "status"])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {NO_WORKERS}\n")


def test_reload_without_waiting_only_bumps_the_counter(runner, versions):
    three_workers(versions)
    result = runner.invoke(cli, ["reload", "--wait", "0"])
    assert (result.exit_code, result.stdout) == (
        0, "reload 1 requested (3 live workers); each re-reads and validates its own rule file\n")
    assert versions.requested() == 1


def test_reload_names_the_workers_that_did_not_answer(runner, versions):
    three_workers(versions)                                  # none of them runs a watch: nobody answers request 1
    result = runner.invoke(cli, ["reload", "--wait", "0.3", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["request"] == 1
    assert result.stderr == ("Error: 3 of 3 workers did not answer in time: host-a:101, host-b:202, host-b:303 (a "
                             "busy worker answers within KF_RULES_WATCH seconds; see kf-plugin rules status)\n")


def test_without_redis_the_commands_say_what_they_can_reach():
    result = CliRunner(env={"KF_REDIS_URL": None}).invoke(cli, ["reload"])
    assert result.exit_code == 2
    assert "reach the workers through the Redis they share, and KF_REDIS_URL is not set in the environment" in (
        result.stderr)
    assert "kill -HUP PID" in result.stderr


def test_an_unreachable_redis_is_one_line(runner):
    result = CliRunner(env={"KF_REDIS_URL": "redis://127.0.0.1:1/0"}).invoke(cli, ["rules", "status"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot reach the bot's Redis: ")
