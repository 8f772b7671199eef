"""``kf-plugin handoffs``: the records the bot shares through Redis, ``flask kf handoffs`` on the app's memory,
periods, JSON, and what goes wrong."""
from __future__ import annotations

import json
import socket
import time
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from kf_plugin.cli import cli
from kf_plugin.cli.handoff_commands import MEMORY_NOTE, duration, parse_moment
from kf_plugin.lifecycle import Change
from kf_plugin.state.handoffs import HandoffStore
from kf_plugin.state.shared import open_state

T0 = 1_700_000_000.0            # 2023-11-14 22:13:20 UTC
LONG = 20 * 365 * 86400.0       # records from 2023 are still kept
APPID = "wxhandoffs"
WANG, LI = "wang@gh_test", "li@gh_test"
PERIOD = ["--since", "2023-11-14", "--until", "2023-11-14", "--tz", "UTC"]

TABLE = """\
ID  USER  REASON            REQUESTED                  AGENT         WAITED  OUTCOME
h1  oA    ask-for-human     2023-11-14 22:13:20 +0000  wang@gh_test  45s     accepted
h2  oB    complaint         2023-11-14 22:14:20 +0000  -             -       cancelled
h3  oC    stuck             2023-11-14 22:15:20 +0000  li@gh_test    3m05s   with agent
h4  oD    after_unanswered  2023-11-14 22:16:40 +0000  -             -       queued
h5  oE    agent             2023-11-14 22:18:20 +0000  li@gh_test    0s      with agent
5 hand-offs, acceptance rate 75%, median wait 45s, p90 wait 3m05s
"""
SUMMARY = {"count": 5, "accepted": 1, "cancelled": 1, "timed_out": 0, "lapsed": 0, "refused": 0, "open": 3,
           "acceptance_rate": 0.75, "median_wait": 45.0, "p90_wait": 185.0}


def hand_offs(store: HandoffStore) -> None:
    """Five hand-offs of one afternoon: accepted, cancelled, with an agent, still queued, opened by an agent."""
    for openid, change in [
            ("oA", Change("request", T0, reason="ask-for-human", handoff_id="h1")),
            ("oA", Change("accept", T0 + 45, agent=WANG)), ("oA", Change("close", T0 + 600, agent=WANG)),
            ("oB", Change("request", T0 + 60, reason="complaint", handoff_id="h2")), ("oB", Change("cancel", T0 + 90)),
            ("oC", Change("request", T0 + 120, reason="stuck", handoff_id="h3")),
            ("oC", Change("accept", T0 + 305, agent=LI)),
            ("oD", Change("request", T0 + 200, reason="after_unanswered", handoff_id="h4")),
            ("oE", Change("accept", T0 + 300, agent=LI, handoff_id="h5"))]:
        store.apply(openid, change)


@pytest.fixture
def shared_env(redis_url) -> dict:
    """The environment of a CLI process beside a bot whose workers share hand-offs through Redis."""
    hand_offs(open_state(redis_url, APPID, keep_records=LONG).handoffs)
    return {"KF_REDIS_URL": redis_url, "KF_APPID": APPID, "KF_REDIS_PREFIX": None, "KF_HANDOFF_RECORDS_FOR": None}


def test_the_hand_offs_the_bot_shares_through_redis(shared_env):
    result = CliRunner(env=shared_env).invoke(cli, ["handoffs", *PERIOD])
    assert result.exit_code == 0, result.output
    assert result.stdout == TABLE
    assert result.stderr == ""


def test_the_hand_offs_as_json(shared_env):
    result = CliRunner(env=shared_env).invoke(cli, ["handoffs", *PERIOD, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert set(shown) == {"handoffs", "summary"}
    assert shown["summary"] == SUMMARY
    assert [h["id"] for h in shown["handoffs"]] == ["h1", "h2", "h3", "h4", "h5"]
    assert shown["handoffs"][0] == {"id": "h1", "openid": "oA", "reason": "ask-for-human", "requested_at": T0,
                                    "agent": WANG, "accepted_at": T0 + 45, "ended_at": T0 + 600,
                                    "outcome": "accepted"}


@pytest.mark.parametrize("period,ids", [
    (["--since", "2023-11-14 22:14", "--until", "2023-11-14 22:16:40", "--tz", "UTC"], ["h2", "h3", "h4"]),
    (["--since", "2023-11-15T06:15:00+08:00"], ["h3", "h4", "h5"]),   # an offset of its own
    (["--since", "2023-11-15 06:15", "--tz", "Asia/Shanghai"], ["h3", "h4", "h5"]),
    (["--since", str(int(T0) + 200), "--until", str(int(T0) + 200)], ["h4"]),
    (["--since", "2023-11-15", "--tz", "UTC"], []),
])
def test_periods(shared_env, period, ids):
    result = CliRunner(env=shared_env).invoke(cli, ["handoffs", *period, "--json"])
    assert result.exit_code == 0, result.output
    assert [h["id"] for h in json.loads(result.stdout)["handoffs"]] == ids


def test_by_default_the_last_24_hours(redis_url):
    store, now = open_state(redis_url, APPID).handoffs, time.time()
    store.apply("oOld", Change("request", now - 25 * 3600, reason="old", handoff_id="old"))
    store.apply("oNew", Change("request", now - 23 * 3600, reason="new", handoff_id="new"))
    result = CliRunner(env={"KF_REDIS_URL": redis_url, "KF_APPID": APPID}).invoke(cli, ["handoffs", "--json"])
    assert [h["id"] for h in json.loads(result.stdout)["handoffs"]] == ["new"]
    result = CliRunner(env={"KF_REDIS_URL": redis_url, "KF_APPID": APPID}).invoke(cli, ["handoffs", "--since", "2d"])
    assert result.stdout.splitlines()[-1] == "2 hand-offs, acceptance rate -, median wait -, p90 wait -"


def test_an_empty_period(shared_env):
    result = CliRunner(env=shared_env).invoke(cli, ["handoffs", "--since", "2023-11-16", "--until", "2023-11-16",
                                                   "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("no hand-offs requested from 2023-11-16 00:00:00 +0000 to 2023-11-16 23:59:59 +0000\n"
                             "0 hand-offs, acceptance rate -, median wait -, p90 wait -\n")


# -- flask kf handoffs: the app's own state ----------------------------------------------------------------------

def test_flask_kf_handoffs_reads_the_apps_memory(make_app):
    app = make_app(KF_HANDOFF_RECORDS_FOR=LONG)
    hand_offs(app.extensions["kf_plugin"].services.shared.handoffs)
    result = app.test_cli_runner().invoke(args=["kf", "handoffs", *PERIOD], env={"KF_REDIS_URL": None})
    assert result.exit_code == 0, result.output
    assert result.stdout == TABLE
    assert result.stderr == MEMORY_NOTE + "\n"


def test_flask_kf_handoffs_reads_the_apps_redis(make_app, redis_url):
    hand_offs(open_state(redis_url, "wx0123456789abcdef", keep_records=LONG).handoffs)
    app = make_app(KF_REDIS_URL=redis_url)     # the app's AppID is the conftest's
    result = app.test_cli_runner().invoke(args=["kf", "handoffs", *PERIOD, "--json"], env={"KF_APPID": "wxwrong"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"] == SUMMARY and result.stderr == ""


def test_a_separate_process_without_redis_has_no_hand_offs():
    result = CliRunner(env={"KF_REDIS_URL": None}).invoke(cli, ["handoffs", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["count"] == 0
    assert result.stderr == MEMORY_NOTE + "\n"


# -- what goes wrong ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options,message", [
    (["--since", "yesterday"], "'yesterday' is neither a duration ago (30m, 24h, 7d) nor a date or time"),
    (["--since", "2023-11-15", "--until", "2023-11-14"], "--until is before --since"),
    (["--since", "2023-02-30"], "'2023-02-30' is neither"),
])
def test_a_bad_period_is_refused(options, message):
    result = CliRunner(env={"KF_REDIS_URL": None}).invoke(cli, ["handoffs", *options])
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_bad_setting_is_refused():
    result = CliRunner(env={"KF_REDIS_URL": None, "KF_HANDOFF_RECORDS_FOR": "a month"}).invoke(cli, ["handoffs"])
    assert result.exit_code == 2
    assert "KF_HANDOFF_RECORDS_FOR must be a number" in result.stderr


def test_unreachable_redis_is_an_error_not_an_empty_period():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    result = CliRunner(env={"KF_REDIS_URL": url, "KF_APPID": APPID}).invoke(cli, ["handoffs"])
    assert result.exit_code == 1
    assert result.stderr == "Error: Redis is unreachable (KF_REDIS_URL): the hand-off records could not be read\n"
    assert result.stdout == ""


# -- the pieces ---------------------------------------------------------------------------------------------------

NOW = T0
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("text,tz,end_of_day,expected", [
    ("24h", timezone.utc, False, NOW - 86400),
    ("7d", timezone.utc, False, NOW - 7 * 86400),
    ("90s", timezone.utc, True, NOW - 90),
    ("2023-11-14", timezone.utc, False, 1_699_920_000),
    ("2023-11-14", timezone.utc, True, 1_700_006_399),
    ("2023-11-15", SHANGHAI, False, 1_699_977_600),
    ("2023-11-14 22:13", timezone.utc, False, NOW - 20),
    ("2023-11-14T22:13:20", timezone.utc, False, NOW),
    ("2023-11-15T06:13:20+08:00", timezone.utc, False, NOW),
    ("2023-11-14T22:13:20.5", timezone.utc, False, NOW + 0.5),
    ("1700000000", SHANGHAI, False, NOW),
])
def test_parse_moment(text, tz, end_of_day, expected):
    assert parse_moment(text, tz, NOW, end_of_day=end_of_day) == expected


@pytest.mark.parametrize("seconds,shown", [(None, "-"), (0, "0s"), (44.6, "45s"), (59.4, "59s"), (60, "1m00s"),
                                           (185, "3m05s"), (3599, "59m59s"), (3600, "1h00m"), (7620, "2h07m"),
                                           (-1, "0s")])
def test_duration(seconds, shown):
    assert duration(seconds) == shown
