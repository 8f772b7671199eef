"""The HTTP side: the call log, unknown paths, crashes, answer format, concurrency, serving and stopping."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from kf_plugin.testing.sandbox import Sandbox

from .conftest import Clock

SEND = "/cgi-bin/message/custom/send"
LIST = "/cgi-bin/customservice/getkflist"
TEXT = {"touser": "oUser1", "msgtype": "text", "text": {"content": "hi"}}


# -- the call log -------------------------------------------------------------------------

def test_calls_record_every_request_in_order(api, sandbox, clock: Clock):
    sandbox.interact("oUser1", "message")
    clock.advance(5)
    api.post(SEND, TEXT)
    api.get("/customservice/kfsession/getsession", openid="oNobody")
    calls = sandbox.calls
    assert [(c.method, c.path) for c in calls] == [
        ("GET", "/cgi-bin/token"), ("POST", SEND), ("GET", "/customservice/kfsession/getsession")]
    token_call, send_call, session_call = calls
    assert token_call.query == {"grant_type": "client_credential", "appid": sandbox.appid,
                                "secret": sandbox.secret}
    assert token_call.body is None and token_call.errcode == 0 and token_call.at == clock.now - 5
    assert send_call.query == {"access_token": api.token}
    assert (send_call.body, send_call.errcode, send_call.status, send_call.at) == (TEXT, 0, 200, clock.now)
    assert (session_call.query["openid"], session_call.errcode) == ("oNobody", 40003)


def test_calls_to_filters_by_path_and_clear_calls_forgets(api, sandbox):
    api.post(SEND, TEXT)
    api.get(LIST)
    api.post(SEND, TEXT)
    assert [c.errcode for c in sandbox.calls_to(SEND)] == [45015, 45015]
    assert len(sandbox.calls_to(SEND.lstrip("/"))) == 2
    sandbox.clear_calls()
    assert sandbox.calls == []


def test_call_snapshots_do_not_change_under_the_reader(api, sandbox):
    before = sandbox.calls
    before[0].errcode = 12345
    api.get(LIST)
    assert len(before) == 1 and sandbox.calls[0].errcode == 0


def test_unparseable_bodies_are_logged_as_none(api, sandbox):
    api.post_raw(SEND, b"{oops")
    assert (sandbox.calls[-1].body, sandbox.calls[-1].errcode) == (None, 47001)


# -- answers ------------------------------------------------------------------------------

def test_unknown_paths_answer_404_with_errcode_minus_one(api, sandbox):
    response = api.http.post(api.url + "/cgi-bin/no/such/api", params={"access_token": api.token}, timeout=10)
    assert response.status_code == 404
    assert response.json()["errcode"] == -1
    assert (sandbox.calls[-1].errcode, sandbox.calls[-1].status) == (-1, 404)


def test_a_crash_inside_a_handler_answers_system_error_and_the_server_lives_on(api, sandbox, monkeypatch):
    def broken() -> list:
        raise RuntimeError("bug in the sandbox")

    monkeypatch.setattr(sandbox.state, "online_list", broken)
    answer = api.get("/cgi-bin/customservice/getonlinekflist")
    assert answer["errcode"] == -1 and answer["errmsg"].startswith("system error rid: ")
    assert api.get(LIST)["errcode"] == 0


def test_answers_are_utf8_json_with_unescaped_chinese(api, sandbox):
    sandbox.add_agent("kf1@test", "客服一号")
    response = api.http.get(api.url + LIST, params={"access_token": api.token}, timeout=10)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "客服一号".encode("utf-8") in response.content
    assert json.loads(response.content)["kf_list"][0]["kf_nick"] == "客服一号"


def test_errors_carry_a_rid_and_success_says_ok(api):
    ok = api.get(LIST)
    assert (ok["errcode"], ok["errmsg"]) == (0, "ok")
    refused = api.get(LIST, token="nope")
    assert re.fullmatch(r"invalid credential, access_token is invalid or not latest "
                        r"rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", refused["errmsg"])


# -- concurrency ----------------------------------------------------------------------------

def test_concurrent_sends_use_each_unit_exactly_once(api, sandbox):
    sandbox.interact("oUser1", "message")  # 5 units
    barrier = threading.Barrier(20)

    def send_one(_: int) -> int:
        barrier.wait()
        return requests.post(api.url + SEND, params={"access_token": api.token}, json=TEXT, timeout=10).json()[
            "errcode"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(send_one, range(20)))
    assert sorted(codes) == [0] * 5 + [45047] * 15
    assert len(sandbox.sent) == 5
    assert len(sandbox.calls_to(SEND)) == 20


def test_concurrent_account_creation_keeps_ids_unique(api, sandbox):
    def add(number: int) -> int:
        return requests.post(api.url + "/customservice/kfaccount/add", params={"access_token": api.token},
                             json={"kf_account": f"kf{number}@test", "nickname": "n"}, timeout=10).json()["errcode"]

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert set(pool.map(add, range(30))) == {0}
    ids = [agent["kf_id"] for agent in sandbox.agents.values()]
    assert len(set(ids)) == 30


# -- serving --------------------------------------------------------------------------------

def test_serve_picks_a_free_loopback_port_and_stop_frees_it(sandbox):
    server = sandbox.serve()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url) and server.port > 0
    assert requests.get(server.url + "/cgi-bin/token", timeout=10).json()["errcode"] == 40002
    server.stop()
    server.stop()  # a second stop does nothing
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/cgi-bin/token", timeout=10)
    with sandbox.serve(port=server.port) as again:  # the port is free again
        assert again.url == server.url


def test_two_servers_share_one_sandbox(sandbox):
    with sandbox.serve() as first, sandbox.serve() as second:
        assert first.port != second.port
        for server in (first, second):
            requests.get(server.url + "/cgi-bin/token", timeout=10)
        assert len(sandbox.calls) == 2


def test_serving_on_a_busy_port_raises_oserror(sandbox):
    with sandbox.serve() as server:
        with pytest.raises(OSError):
            sandbox.serve(port=server.port)


def test_run_blocks_until_ctrl_c():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = f"from kf_plugin.testing.sandbox import Sandbox; Sandbox().run(host='127.0.0.1', port={port})"
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=dict(os.environ, PYTHONUNBUFFERED="1")) as process:
        try:
            banner = process.stdout.readline()
            assert banner.startswith(f"WeChat API sandbox on http://127.0.0.1:{port}")
            answer = requests.get(f"http://127.0.0.1:{port}/cgi-bin/token", timeout=10).json()
            assert answer["errcode"] == 40002
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
            assert "GET /cgi-bin/token" in process.stderr.read()  # the blocking server keeps an access log
        finally:
            if process.poll() is None:
                process.kill()


def test_session_redirects_wechat_urls_to_the_sandbox(server, sandbox):
    http = server.session()
    answer = http.get("https://api.weixin.qq.com/cgi-bin/token", timeout=10,
                      params={"grant_type": "client_credential", "appid": sandbox.appid, "secret": sandbox.secret})
    assert answer.json()["expires_in"] == 7200
    assert http.get("http://api.weixin.qq.com/customservice/kfsession/getwaitcase", timeout=10).json()[
        "errcode"] == 41001
    assert [c.path for c in sandbox.calls] == ["/cgi-bin/token", "/customservice/kfsession/getwaitcase"]


def test_repr_and_api_defaults():
    sandbox = Sandbox()
    assert (sandbox.appid, sandbox.secret, sandbox.kf_enabled) == ("wxsandbox0000000", "sandbox-secret", True)
    with sandbox.serve() as server:
        assert repr(server) == f"<SandboxServer {server.url}>"
    assert repr(server).endswith(" stopped>")
