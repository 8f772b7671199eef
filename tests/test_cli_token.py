"""kf-plugin token show|refresh, against the sandbox (and Redis for the shared token)."""
import json

import pytest
import redis
from click.testing import CliRunner

from kf_plugin.cli import cli
from kf_plugin.state.shared import open_state
from kf_plugin.tokens import FORCE_REFRESH_DAILY_LIMIT


@pytest.fixture
def run(api):
    def invoke(*args, **env):
        environment = {"KF_APPID": api.sandbox.appid, "KF_SECRET": api.sandbox.secret, "KF_API_BASE_URL": api.url,
                       "KF_REDIS_URL": "", **env}
        return CliRunner().invoke(cli, ["token", *args], env=environment)
    return invoke


def test_show_without_shared_state(run):
    result = run("show")
    assert result.exit_code == 0, result.output
    assert "mode:        stable" in result.stdout and "no token stored" in result.stdout
    assert "this process only (set KF_REDIS_URL to share)" in result.stdout


def test_refresh_then_show_the_shared_token(api, run, redis_url):
    result = run("refresh", KF_REDIS_URL=redis_url)
    assert result.exit_code == 0 and "a valid token is stored" in result.stdout
    token = open_state(redis_url, api.sandbox.appid).tokens.get().value
    shown = run("show", "--json", KF_REDIS_URL=redis_url)
    data = json.loads(shown.stdout)
    assert data["shared"] and 7000 < data["seconds_left"] <= 7200 and "access_token" not in data
    assert token not in shown.output
    assert json.loads(run("show", "--json", "--reveal", KF_REDIS_URL=redis_url).stdout)["access_token"] == token
    assert len(api.sandbox.calls_to("/cgi-bin/stable_token")) == 1      # show reuses the stored token


def test_forced_refresh_replaces_the_token_within_the_daily_limit(api, run, redis_url):
    run("refresh", KF_REDIS_URL=redis_url)
    before = open_state(redis_url, api.sandbox.appid).tokens.get().value
    result = run("refresh", "--force", KF_REDIS_URL=redis_url)
    assert result.exit_code == 0 and "forced a new token" in result.stdout
    assert open_state(redis_url, api.sandbox.appid).tokens.get().value != before
    assert api.sandbox.calls_to("/cgi-bin/stable_token")[-1].body["force_refresh"] is True
    # The limit is counted in the shared store: the 21st forced refresh of the day is refused before any call.
    counter = f"kf:{{{api.sandbox.appid}}}:force-refresh"
    redis.Redis.from_url(redis_url).set(counter, FORCE_REFRESH_DAILY_LIMIT)
    calls = len(api.sandbox.calls)
    refused = run("refresh", "--force", KF_REDIS_URL=redis_url)
    assert refused.exit_code == 1 and "20 forced refreshes a day" in refused.stderr
    assert len(api.sandbox.calls) == calls


def test_wechat_refusing_the_credentials(run):
    result = run("refresh", KF_SECRET="wrong")
    assert result.exit_code == 1 and "40125" in result.stderr and "invalid AppSecret" in result.stderr
    assert "wrong" not in result.stderr
