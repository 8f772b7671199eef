"""WeCom's paths on the sandbox's server: errmsgs, faults, the call log, the kf API switch, bad bodies, crashes."""
from __future__ import annotations

import re

import pytest
import requests

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
