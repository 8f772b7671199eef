"""Access tokens over HTTP: classic overlap, stable idempotence and renewal, force refresh, daily limits."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import Sandbox
from kf_plugin.testing.sandbox.endpoints import ENDPOINTS
from kf_plugin.testing.sandbox.tokens import beijing_day

from .conftest import START, Api, Clock

APPID, SECRET = "wxsandbox0000000", "sandbox-secret"
CHECK = "/cgi-bin/customservice/getkflist"  # any call that needs a token


def classic(api: Api, **overrides) -> dict:
    query = dict(grant_type="client_credential", appid=APPID, secret=SECRET)
    query.update(overrides)
    return api.get("/cgi-bin/token", token=None, **{k: v for k, v in query.items() if v is not None})


def stable(api: Api, force_refresh=False, **overrides) -> dict:
    body = dict(grant_type="client_credential", appid=APPID, secret=SECRET, force_refresh=force_refresh)
    body.update(overrides)
    return api.post("/cgi-bin/stable_token", {k: v for k, v in body.items() if v is not None}, token=None)


def check(api: Api, token: str) -> int:
    """The errcode a call made with ``token`` gets."""
    return api.get(CHECK, token=token)["errcode"]


@pytest.fixture
def client(server, sandbox) -> Api:
    return Api(server.url, sandbox)


def next_beijing_midnight(now: float) -> float:
    return (beijing_day(now) + 1) * 86400 - 8 * 3600


# -- classic -------------------------------------------------------------------------

def test_classic_token_answer_shape_and_each_fetch_is_new(client):
    first, second = classic(client), classic(client)
    assert first["errcode"] == 0 and first["errmsg"] == "ok"
    assert first["expires_in"] == 7200
    assert len(first["access_token"]) >= 100
    assert first["access_token"] != second["access_token"]
    assert check(client, first["access_token"]) == 0


@pytest.mark.parametrize("overrides, expected", [
    ({"grant_type": "password"}, 40002),
    ({"grant_type": None}, 40002),
    ({"appid": "wxsomeoneelse00000"}, 40013),
    ({"appid": None}, 41002),
    ({"secret": "not-the-secret"}, 40125),
    ({"secret": None}, 41004),
])
def test_classic_token_credential_errors(client, overrides, expected):
    answer = classic(client, **overrides)
    assert answer["errcode"] == expected
    assert "access_token" not in answer


def test_classic_previous_token_works_five_more_minutes(client, clock: Clock):
    old = classic(client)["access_token"]
    clock.advance(1000)
    new = classic(client)["access_token"]
    clock.advance(299)
    assert (check(client, old), check(client, new)) == (0, 0)
    clock.advance(1)
    assert (check(client, old), check(client, new)) == (40001, 0)


def test_classic_overlap_never_outlives_the_tokens_own_expiry(client, clock: Clock):
    old = classic(client)["access_token"]
    clock.advance(7100)
    classic(client)
    clock.advance(99)
    assert check(client, old) == 0
    clock.advance(1)  # 7200 s after issue, 100 s into the overlap
    assert check(client, old) == 42001


def test_classic_only_the_two_newest_tokens_work(client):
    first, second, third = (classic(client)["access_token"] for _ in range(3))
    assert [check(client, t) for t in (first, second, third)] == [40001, 0, 0]


def test_classic_token_expires_after_7200_seconds(client, clock: Clock):
    token = classic(client)["access_token"]
    clock.advance(7199)
    assert check(client, token) == 0
    clock.advance(1)
    assert check(client, token) == 42001


def test_classic_daily_limit_resets_at_beijing_midnight(clock: Clock):
    sandbox = Sandbox(clock=clock, token_daily_limit=3)
    with sandbox.serve() as server:
        client = Api(server.url, sandbox)
        assert [classic(client)["errcode"] for _ in range(4)] == [0, 0, 0, 45009]
        clock.now = next_beijing_midnight(START) - 1
        assert classic(client)["errcode"] == 45009
        clock.advance(1)
        assert classic(client)["errcode"] == 0


def test_classic_default_daily_limit_is_2000(client, sandbox):
    for _ in range(1999):  # the bulk without HTTP, to keep the test fast
        sandbox.state.tokens.fetch_classic()
    assert classic(client)["errcode"] == 0
    assert classic(client)["errcode"] == 45009


# -- token checks on every other endpoint ----------------------------------------------

TOKEN_PATHS = sorted(path for path, endpoint in ENDPOINTS.items() if endpoint.needs_token)


def test_every_endpoint_but_the_token_endpoints_needs_a_token():
    assert sorted(set(ENDPOINTS) - set(TOKEN_PATHS)) == ["/cgi-bin/stable_token", "/cgi-bin/token"]
    assert len(TOKEN_PATHS) == 15


@pytest.mark.parametrize("path", TOKEN_PATHS)
def test_missing_unknown_and_expired_tokens(client, clock: Clock, path):
    token = classic(client)["access_token"]
    assert client.post(path, {}, token=None)["errcode"] == 41001
    assert client.post(path, {}, token="")["errcode"] == 41001
    assert client.post(path, {}, token="x" * 128)["errcode"] == 40001
    clock.advance(7200)
    answer = client.post(path, {}, token=token)
    assert answer["errcode"] == 42001
    assert answer["errmsg"].startswith("access_token expired rid: ")


# -- stable ----------------------------------------------------------------------------

def test_stable_token_is_idempotent_and_counts_down(client, clock: Clock):
    first = stable(client)
    assert first["errcode"] == 0 and first["expires_in"] == 7200 and len(first["access_token"]) >= 100
    clock.advance(1000)
    again = stable(client)
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 6200
    clock.advance(5899)  # 301 s left
    assert stable(client)["access_token"] == first["access_token"]


def test_stable_token_renews_in_its_last_five_minutes_and_the_old_one_lives_on(client, clock: Clock):
    old = stable(client)["access_token"]
    clock.advance(6900)  # 300 s left
    renewed = stable(client)
    assert renewed["access_token"] != old and renewed["expires_in"] == 7200
    assert stable(client)["access_token"] == renewed["access_token"]
    clock.advance(299)
    assert (check(client, old), check(client, renewed["access_token"])) == (0, 0)
    clock.advance(1)
    assert (check(client, old), check(client, renewed["access_token"])) == (42001, 0)


def test_stable_token_after_expiry_is_new(client, clock: Clock):
    old = stable(client)["access_token"]
    clock.advance(9000)
    renewed = stable(client)
    assert renewed["access_token"] != old and renewed["expires_in"] == 7200


def test_stable_and_classic_pools_are_separate(client):
    stable_token = stable(client)["access_token"]
    classic_tokens = [classic(client)["access_token"] for _ in range(3)]
    assert check(client, stable_token) == 0
    assert stable(client)["access_token"] == stable_token
    assert stable(client, force_refresh=True)["errcode"] == 0
    assert check(client, classic_tokens[-1]) == 0


def test_force_refresh_ends_the_current_stable_token_at_once(client):
    old = stable(client)["access_token"]
    forced = stable(client, force_refresh=True)
    assert forced["access_token"] != old and forced["expires_in"] == 7200
    assert check(client, old) == 40001
    assert check(client, forced["access_token"]) == 0
    assert stable(client)["access_token"] == forced["access_token"]


def test_force_refresh_needs_30_seconds_between(client, clock: Clock):
    assert stable(client, force_refresh=True)["errcode"] == 0
    clock.advance(29)
    assert stable(client, force_refresh=True)["errcode"] == 45009
    assert stable(client)["errcode"] == 0  # normal mode is not limited
    clock.advance(1)
    assert stable(client, force_refresh=True)["errcode"] == 0


def test_force_refresh_at_most_20_per_beijing_day(client, clock: Clock):
    codes = []
    for _ in range(21):
        codes.append(stable(client, force_refresh=True)["errcode"])
        clock.advance(30)
    assert codes == [0] * 20 + [45009]
    clock.now = next_beijing_midnight(clock.now)
    assert stable(client, force_refresh=True)["errcode"] == 0


@pytest.mark.parametrize("overrides, expected", [
    ({"grant_type": "password"}, 40002),
    ({"appid": "wxsomeoneelse00000"}, 40013),
    ({"appid": None}, 41002),
    ({"secret": "not-the-secret"}, 40125),
    ({"secret": None}, 41004),
    ({"force_refresh": "yes"}, 47001),
])
def test_stable_token_body_errors(client, overrides, expected):
    assert stable(client, **overrides)["errcode"] == expected


@pytest.mark.parametrize("raw, expected", [
    (b"", 44002),
    (b"   ", 44002),
    (b"{not json", 47001),
    (b"[1, 2]", 47001),
    (b"\xff\xfe", 47001),
])
def test_stable_token_unreadable_bodies(client, raw, expected):
    assert client.post_raw("/cgi-bin/stable_token", raw, token=None)["errcode"] == expected
