"""WeCom's paths on the sandbox's server: errmsgs, faults, the call log, the kf API switch, bad bodies, crashes."""
from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from kf_plugin.testing.sandbox import Sandbox, WeComSandbox
from kf_plugin.testing.sandbox.wecom import endpoints

from .conftest import CUSTOMER, Kf, errcode

ERRMSG = re.compile(r"(?P<text>.+), hint: \[\d{25}\], from ip: 127\.0\.0\.1, "
                    r"more info at https://open\.work\.weixin\.qq\.com/devtool/query\?e=(?P<code>-?\d+)")


def test_errors_are_answered_in_wecoms_shape(kf: Kf, kfid):
    answer = kf.send_text(kfid, "hi")
    match = ERRMSG.fullmatch(answer["errmsg"])
    assert match and match["code"] == "40096" and match["text"] == "invalid external_userid"


def test_injected_failures_carry_wecoms_errmsg(kf: Kf, sandbox, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    sandbox.faults.fail_next(95018, path="/cgi-bin/kf/send_msg")
    answer = kf.send_text(kfid, "hi")
    assert answer["errcode"] == 95018
    assert ERRMSG.fullmatch(answer["errmsg"])["text"] == "send msg session status invalid"
    assert errcode(kf.send_text(kfid, "hi")) == 0
    assert [c.fault for c in sandbox.calls_to("/cgi-bin/kf/send_msg")] == ["fail", None]


def test_network_faults_apply_to_wecom_paths(kf: Kf, sandbox, kfid):
    sandbox.faults.http_error(502, path="/cgi-bin/kf/sync_msg")
    response = kf.http.post(kf.url + "/cgi-bin/kf/sync_msg", json={}, params={"access_token": kf.token})
    assert response.status_code == 502
    sandbox.faults.drop_next(path="/cgi-bin/gettoken")
    with pytest.raises(requests.ConnectionError):
        kf.gettoken()


def timed(call, *args):
    started = time.monotonic()
    answer = call(*args)
    return answer, time.monotonic() - started


def test_latency_delays_every_wecom_call_and_no_other(kf: Kf, sandbox, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.latency = 0.2
    for call in (kf.gettoken, lambda: kf.send_text(kfid, "hi"), lambda: kf.sync(open_kfid=kfid)):
        answer, took = timed(call)
        assert errcode(answer) == 0 and took >= 0.2
    started = time.monotonic()
    kf.http.get(kf.url + "/cgi-bin/token", params={"grant_type": "client_credential", "appid": sandbox.appid,
                                                   "secret": sandbox.secret}, timeout=10)
    assert time.monotonic() - started < 0.2                          # the Official Account's API: not delayed
    wecom.latency = 0
    assert timed(kf.gettoken)[1] < 0.2


def test_calls_in_flight_wait_their_latency_side_by_side(kf: Kf, wecom, kfid):
    wecom.latency = 0.3
    answers = []
    calls = [threading.Thread(target=lambda: answers.append(kf.state(kfid)["errcode"])) for _ in range(8)]
    started = time.monotonic()
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    assert answers == [40096] * 8
    assert 0.3 <= time.monotonic() - started < 8 * 0.3 / 2             # overlapping, not one after another


@pytest.mark.parametrize("bad", [-0.1, 61, "0.02", True, None])
def test_a_bad_latency_is_refused(bad):
    with pytest.raises(ValueError, match="latency must be a number of seconds from 0 to 60"):
        Sandbox().wecom.latency = bad
    with pytest.raises(ValueError, match="latency must be a number of seconds from 0 to 60"):
        WeComSandbox(time.time, latency=bad)


def test_the_call_log_has_the_wecom_calls(kf: Kf, sandbox, kfid):
    kf.state(kfid)
    [gettoken, get] = [c for c in sandbox.calls if c.path.startswith("/cgi-bin/")]
    assert (gettoken.path, gettoken.errcode, gettoken.query["corpid"]) == ("/cgi-bin/gettoken", 0, "wwsandbox00000000")
    assert (get.path, get.errcode, get.body) == (
        "/cgi-bin/kf/service_state/get", 40096, {"open_kfid": kfid, "external_userid": CUSTOMER})


def test_switching_the_kf_api_off_answers_95017_but_tokens_still_come(kf: Kf, wecom, kfid):
    wecom.api_enabled = False
    answer = kf.sync(open_kfid=kfid)
    assert errcode(answer) == 95017 and answer["errmsg"].startswith("kf api not enabled")
    assert errcode(kf.gettoken()) == 0
    wecom.api_enabled = True
    assert wecom.api_enabled and errcode(kf.sync(open_kfid=kfid)) == 0


@pytest.mark.parametrize("data", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_bodies_that_are_not_json_objects(kf: Kf, data):
    answer = kf.post_raw("/cgi-bin/kf/service_state/get", data)
    assert errcode(answer) == 40058


def test_a_sandbox_bug_answers_system_busy(kf: Kf, monkeypatch):
    def broken(state, request):
        raise RuntimeError("bug")
    path = "/cgi-bin/kf/sync_msg"
    monkeypatch.setitem(endpoints.WECOM_ENDPOINTS, path, endpoints.WeComEndpoint(path, broken))
    answer = kf.sync()
    assert errcode(answer) == -1 and answer["errmsg"].startswith("system busy")


def test_unknown_kf_paths_are_unknown(kf: Kf):
    response = kf.http.post(kf.url + "/cgi-bin/kf/nope", json={}, params={"access_token": kf.token})
    assert response.status_code == 404 and response.json()["errcode"] == -1
