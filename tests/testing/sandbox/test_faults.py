"""Fault injection over real HTTP: fail_next, latency, dropped connections, HTTP errors, token invalidation."""
from __future__ import annotations

import re
import time

import pytest
import requests

from kf_plugin.testing.sandbox import Faults

from .conftest import Api

SEND = "/cgi-bin/message/custom/send"
LIST = "/cgi-bin/customservice/getkflist"
TEXT = {"touser": "oUser1", "msgtype": "text", "text": {"content": "hi"}}
RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


@pytest.fixture
def user(sandbox):
    sandbox.interact("oUser1", "message")


def test_fail_next_answers_the_errcode_once_instead_of_handling(api, sandbox, user):
    sandbox.faults.fail_next(45009)
    answer = api.post(SEND, TEXT)
    assert answer["errcode"] == 45009
    assert answer["errmsg"].startswith("reach max api daily quota limit rid: ") and RID.search(answer["errmsg"])
    assert sandbox.sent == []  # not handled: nothing sent, no quota used
    call = sandbox.calls[-1]
    assert (call.errcode, call.status, call.fault) == (45009, 200, "fail")
    assert [api.post(SEND, TEXT)["errcode"] for _ in range(6)] == [0] * 5 + [45047]


@pytest.mark.parametrize("times", [1, 2, 5])
def test_fail_next_counts(api, sandbox, times):
    sandbox.faults.fail_next(-1, times=times)
    codes = [api.get(LIST)["errcode"] for _ in range(times + 2)]
    assert codes == [-1] * times + [0, 0]
    assert sandbox.faults.pending == []


@pytest.mark.parametrize("path", [SEND, SEND.lstrip("/"), SEND + "?ignored=1"])
def test_fail_next_path_filter(api, sandbox, user, path):
    sandbox.faults.fail_next(45015, times=2, path=path)
    assert api.get(LIST)["errcode"] == 0
    assert api.fetch_token()
    assert [api.post(SEND, TEXT)["errcode"] for _ in range(3)] == [45015, 45015, 0]


def test_fail_next_can_hit_the_token_endpoint(api, sandbox):
    sandbox.faults.fail_next(40164, path="/cgi-bin/token", errmsg="invalid ip 1.2.3.4, not in whitelist")
    answer = api.get("/cgi-bin/token", token=None, grant_type="client_credential", appid=sandbox.appid,
                     secret=sandbox.secret)
    assert answer == {"errcode": 40164, "errmsg": "invalid ip 1.2.3.4, not in whitelist"}  # errmsg as given
    assert api.fetch_token()


def test_replacing_faults_apply_oldest_first(api, sandbox):
    sandbox.faults.http_error(503)
    sandbox.faults.fail_next(40001)
    first = api.http.get(api.url + LIST, params={"access_token": api.token}, timeout=10)
    assert first.status_code == 503
    assert api.get(LIST)["errcode"] == 40001
    assert api.get(LIST)["errcode"] == 0


def test_latency_delays_the_answer(api, sandbox):
    sandbox.faults.add_latency(0.3, path=LIST, times=1)
    started = time.monotonic()
    assert api.get(LIST)["errcode"] == 0
    assert time.monotonic() - started >= 0.3
    assert sandbox.faults.pending == []


def test_latency_until_cleared_and_only_on_its_path(api, sandbox, user):
    sandbox.faults.add_latency(0.1, path=SEND)
    api.get(LIST)
    for _ in range(2):
        started = time.monotonic()
        assert api.post(SEND, TEXT)["errcode"] == 0
        assert time.monotonic() - started >= 0.1
    assert [(f.kind, f.remaining) for f in sandbox.faults.pending] == [("latency", None)]
    sandbox.faults.clear()
    assert sandbox.faults.pending == []


def test_latency_adds_to_an_injected_error(api, sandbox):
    sandbox.faults.add_latency(0.2, times=1)
    sandbox.faults.fail_next(-1)
    started = time.monotonic()
    assert api.get(LIST)["errcode"] == -1
    assert time.monotonic() - started >= 0.2


def test_a_timeout_shorter_than_the_latency_fails_the_client(api, sandbox):
    sandbox.faults.add_latency(0.5, times=1)
    with pytest.raises(requests.Timeout):
        api.http.get(api.url + LIST, params={"access_token": api.token}, timeout=0.1)


def test_drop_closes_the_connection_without_an_answer(api, sandbox, user):
    sandbox.faults.drop_next(times=2, path=SEND)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            api.http.post(api.url + SEND, params={"access_token": api.token}, json=TEXT, timeout=10)
    assert sandbox.sent == []
    assert api.post(SEND, TEXT)["errcode"] == 0
    dropped = sandbox.calls_to(SEND)[:2]
    assert [(c.errcode, c.status, c.fault) for c in dropped] == [(None, None, "drop")] * 2
    assert dropped[0].body == TEXT  # the request was read before the connection was closed


def test_drop_leaves_other_paths_alone(api, sandbox):
    sandbox.faults.drop_next(path=SEND)
    assert api.get(LIST)["errcode"] == 0
    assert len(sandbox.faults.pending) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_http_error(api, sandbox, status):
    sandbox.faults.http_error(status, path=LIST)
    response = api.http.get(api.url + LIST, params={"access_token": api.token}, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(requests.HTTPError):
        response.raise_for_status()
    call = sandbox.calls[-1]
    assert (call.errcode, call.status, call.fault) == (None, status, "http_error")
    assert api.get(LIST)["errcode"] == 0


def test_http_error_default_is_502_once(api, sandbox):
    sandbox.faults.http_error()
    codes = [api.http.get(api.url + LIST, params={"access_token": api.token}, timeout=10).status_code
             for _ in range(2)]
    assert codes == [502, 200]


def test_invalidate_tokens_ends_both_pools(api, sandbox):
    stable = api.post("/cgi-bin/stable_token", {"grant_type": "client_credential", "appid": sandbox.appid,
                                                "secret": sandbox.secret}, token=None)["access_token"]
    classic = api.token
    sandbox.invalidate_tokens()
    for token in (classic, stable):
        answer = api.get(LIST, token=token)
        assert answer["errcode"] == 40001
        assert answer["errmsg"].startswith("invalid credential, access_token is invalid or not latest rid: ")
    assert api.get(LIST, token=api.fetch_token())["errcode"] == 0
    fresh_stable = api.post("/cgi-bin/stable_token", {"grant_type": "client_credential", "appid": sandbox.appid,
                                                      "secret": sandbox.secret}, token=None)
    assert fresh_stable["access_token"] != stable
    assert api.get(LIST, token=fresh_stable["access_token"])["errcode"] == 0


@pytest.mark.parametrize("add, message", [
    (lambda f: f.fail_next(0), "non-zero int"),
    (lambda f: f.fail_next("45009"), "non-zero int"),
    (lambda f: f.fail_next(-1, times=0), "positive int"),
    (lambda f: f.drop_next(times=None), "positive int"),
    (lambda f: f.http_error(200), "400..599"),
    (lambda f: f.add_latency(-0.1), "≥ 0"),
    (lambda f: f.add_latency(1, times=0), "positive int or None"),
    (lambda f: f.fail_next(-1, path="/"), "API path"),
])
def test_bad_fault_arguments_are_refused(add, message):
    faults = Faults()
    with pytest.raises(ValueError, match=message):
        add(faults)
    assert faults.pending == []


def test_faults_match_unknown_paths_too(sandbox, server):
    sandbox.faults.fail_next(45009)
    client = Api(server.url, sandbox)
    response = client.http.get(server.url + "/no/such/api", timeout=10)
    assert (response.status_code, response.json()["errcode"]) == (200, 45009)
