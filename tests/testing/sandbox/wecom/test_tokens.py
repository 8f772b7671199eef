"""gettoken over HTTP: credentials, the same token while valid, expiry, invalidation, the daily limit, and the
token check of every kf path."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import Sandbox
from kf_plugin.testing.sandbox.tokens import beijing_day
from kf_plugin.testing.sandbox.wecom.endpoints import WECOM_ENDPOINTS

from ..conftest import START, Clock
from .conftest import Kf

CHECK = "/cgi-bin/kf/account/list"  # any call that needs a token


@pytest.fixture
def client(server, wecom) -> Kf:
    return Kf(server.url, wecom)


def check(client: Kf, token: str) -> int:
    """The errcode a call made with ``token`` gets."""
    return client.post(CHECK, {}, token=token)["errcode"]


def test_gettoken_answers_a_long_token_for_7200_seconds(client):
    answer = client.gettoken()
    assert (answer["errcode"], answer["errmsg"], answer["expires_in"]) == (0, "ok", 7200)
    assert len(answer["access_token"]) >= 100
    assert check(client, answer["access_token"]) == 0


@pytest.mark.parametrize("corpid, corpsecret, expected", [
    (None, True, 41002),
    ("", True, 41002),
    ("wwsomeoneelse0000", True, 40013),
    (True, None, 41004),
    (True, "not-the-secret", 40001),
])
def test_gettoken_credential_errors(client, corpid, corpsecret, expected):
    answer = client.gettoken(corpid, corpsecret)
    assert answer["errcode"] == expected and "access_token" not in answer
    assert answer["errmsg"].endswith(f"more info at https://open.work.weixin.qq.com/devtool/query?e={expected}")


def test_gettoken_answers_the_same_token_while_it_is_valid(client, clock: Clock):
    first = client.gettoken()
    clock.advance(1000)
    again = client.gettoken()
    assert again["access_token"] == first["access_token"] and again["expires_in"] == 6200


def test_the_token_expires_after_7200_seconds_and_the_next_gettoken_issues_a_new_one(client, clock: Clock):
    old = client.gettoken()["access_token"]
    clock.advance(7199)
    assert check(client, old) == 0
    clock.advance(1)
    assert check(client, old) == 42001
    renewed = client.gettoken()
    assert renewed["access_token"] != old and renewed["expires_in"] == 7200
    assert check(client, renewed["access_token"]) == 0


def test_invalidated_tokens_answer_40014_and_gettoken_issues_a_new_one(client, wecom):
    old = client.gettoken()["access_token"]
    wecom.invalidate_tokens()
    assert check(client, old) == 40014
    new = client.gettoken()["access_token"]
    assert new != old and check(client, new) == 0


def test_the_official_accounts_tokens_are_not_wecoms(client, sandbox: Sandbox):
    oa_token = client.get("/cgi-bin/token", token=None, grant_type="client_credential", appid=sandbox.appid,
                          secret=sandbox.secret)["access_token"]
    assert check(client, oa_token) == 40014
    wecom_token = client.gettoken()["access_token"]
    assert client.get("/cgi-bin/customservice/getkflist", token=wecom_token)["errcode"] == 40001


def test_the_daily_limit_counts_every_gettoken_and_resets_at_beijing_midnight(clock: Clock):
    sandbox = Sandbox(clock=clock, token_daily_limit=3)
    with sandbox.serve() as server:
        client = Kf(server.url, sandbox.wecom)
        assert [client.gettoken()["errcode"] for _ in range(4)] == [0, 0, 0, 45009]
        clock.now = (beijing_day(START) + 1) * 86400 - 8 * 3600 - 1
        assert client.gettoken()["errcode"] == 45009
        clock.advance(1)
        assert client.gettoken()["errcode"] == 0


KF_PATHS = sorted(path for path, endpoint in WECOM_ENDPOINTS.items() if endpoint.needs_token)


def test_every_path_but_gettoken_needs_a_token():
    assert sorted(set(WECOM_ENDPOINTS) - set(KF_PATHS)) == ["/cgi-bin/gettoken"]
    assert len(KF_PATHS) == 16 and all(path.startswith("/cgi-bin/kf/") for path in KF_PATHS)


@pytest.mark.parametrize("path", KF_PATHS)
def test_missing_unknown_and_expired_tokens_on_every_kf_path(client, clock: Clock, path):
    token = client.gettoken()["access_token"]
    assert client.post(path, {}, token=None)["errcode"] == 41001
    assert client.post(path, {}, token="")["errcode"] == 41001
    assert client.post(path, {}, token="x" * 128)["errcode"] == 40014
    clock.advance(7200)
    answer = client.post(path, {}, token=token)
    assert answer["errcode"] == 42001
    assert answer["errmsg"].startswith("access_token expired, hint: [")
