"""The WeChat API commands of ``kf-plugin`` (and ``flask kf``) against the sandbox over real HTTP.

Each test checks the exact request the sandbox received, what the command printed
(plain and ``--json``) and its exit code: 0 success, 1 negative answer or API
error (errcode and meaning on stderr), 2 bad input or missing configuration.
"""
from __future__ import annotations

import csv
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import pytest
import requests
from click.testing import CliRunner

from kf_plugin.cli import cli
from kf_plugin.cli import service_commands as cli_admin
from kf_plugin.testing.sandbox import Sandbox
from kf_plugin.window import WindowTracker
from tests.conftest import APPID  # the AppID of the conftest apps

START = 1_700_000_000.0  # 2023-11-15 06:13:20 +0800
SECRET = "cli-secret"
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")
SEND = "/cgi-bin/message/custom/send"
GETMSGLIST = "/customservice/msgrecord/getmsglist"
MEMORY_NOTE = ("note: the 48-hour window is kept in this process's memory: a separate CLI process knows only "
               "the users it has seen itself (set KF_REDIS_URL and KF_APPID to read the state the bot shares)")


class Clock:
    """The sandbox's (and the plugin's) time: ``now``, moved by ``advance``; nothing sleeps."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class WeChat:
    sandbox: Sandbox
    url: str
    clock: Clock


@pytest.fixture
def wechat():
    clock = Clock()
    sandbox = Sandbox(appid=APPID, secret=SECRET, clock=clock)
    with sandbox.serve() as server:
        yield WeChat(sandbox, server.url, clock)


@pytest.fixture
def kf(wechat):
    """``kf(*args, env=None)``: run ``kf-plugin`` with credentials for the sandbox in the environment."""
    runner = CliRunner(env={"KF_APPID": APPID, "KF_SECRET": SECRET, "KF_API_BASE_URL": wechat.url,
                            "KF_API_TIMEOUT": "5"})

    def invoke(*args: str, env: Dict[str, Any] = None):
        return runner.invoke(cli, list(args), env=env)
    return invoke


@pytest.fixture
def staffed(wechat):
    """Two bound agents (wang online), one unbound, and a user who just sent a message."""
    wechat.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    wechat.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat")
    wechat.sandbox.add_agent("zhao@gh_test", "小赵")
    wechat.sandbox.interact("oUser", "message")
    return wechat


def api_calls(sandbox: Sandbox) -> List[Tuple[str, str, Dict[str, str], Any]]:
    """(method, path, query without the token, body) of every call but the token fetches."""
    return [(c.method, c.path, {k: v for k, v in c.query.items() if k != "access_token"}, c.body)
            for c in sandbox.calls if c.path not in TOKEN_PATHS]


def assert_api_error(result: Any, errcode: int, meaning: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"WeChat API error {errcode}" in result.stderr
    assert meaning in result.stderr


# -- credentials and errors ------------------------------------------------------------------

def test_the_token_comes_from_stable_token_with_the_configured_credentials(kf, staffed):
    result = kf("accounts", "list")
    assert result.exit_code == 0, result.output
    first = staffed.sandbox.calls[0]
    assert (first.method, first.path) == ("POST", "/cgi-bin/stable_token")
    assert first.body == {"grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": False}
    assert "access_token" in staffed.sandbox.calls[1].query


def test_options_take_precedence_over_the_environment(kf, wechat):
    result = kf("accounts", "list", "--api-base-url", wechat.url, "--appid", APPID, "--secret", SECRET,
                env={"KF_API_BASE_URL": "http://127.0.0.1:9", "KF_SECRET": "wrong", "KF_APPID": "wrong"})
    assert result.exit_code == 0, result.output
    assert result.stdout == "no customer-service accounts\n"


@pytest.mark.parametrize("env, message", [
    ({"KF_SECRET": None}, "Error: missing credentials: set KF_SECRET in the environment, or pass --secret"),
    ({"KF_APPID": None}, "Error: missing credentials: set KF_APPID in the environment, or pass --appid"),
    ({"KF_APPID": "", "KF_SECRET": None},
     "Error: missing credentials: set KF_APPID and KF_SECRET in the environment, or pass --appid and --secret"),
    ({"KF_API_TIMEOUT": "-1"}, "Error: KF_API_TIMEOUT must not be negative (got -1.0)"),
])
def test_missing_or_bad_configuration_exits_2_before_any_call(kf, wechat, env, message):
    result = kf("accounts", "list", env=env)
    assert result.exit_code == 2
    assert result.stderr == message + "\n"
    assert wechat.sandbox.calls == []


def test_a_timeout_that_is_not_a_number_is_bad_input(kf, wechat):
    result = kf("accounts", "list", env={"KF_API_TIMEOUT": "soon"})
    assert result.exit_code == 2
    assert "'soon' is not a valid float" in result.stderr
    assert wechat.sandbox.calls == []


def test_the_mini_programs_appid_leaves_the_official_accounts_to_kf_appid(kf, wechat):
    result = kf("send", "miniprogrampage", "oUser", "--title", "t", "--appid", "wxmini", "--pagepath", "p",
                "--thumb", "m", env={"KF_APPID": None})
    assert result.exit_code == 2
    assert result.stderr == "Error: missing credentials: set KF_APPID in the environment, or pass --kf-appid\n"


def test_a_wrong_secret_is_an_api_error(kf, wechat):
    result = kf("accounts", "list", env={"KF_SECRET": "wrong"})
    assert_api_error(result, 40125, "invalid AppSecret")
    assert "wrong" not in result.stderr


def test_an_unreachable_api_exits_1(kf):
    result = kf("accounts", "list", env={"KF_API_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach the WeChat API on /cgi-bin/stable_token")


def test_an_unreachable_api_prints_one_line_from_the_installed_command():
    # A real process: under pytest the root logger has handlers, so retries logged on the way stay hidden here.
    command = os.path.join(os.path.dirname(sys.executable), "kf-plugin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_")}
    done = subprocess.run([command, "accounts", "list", "--appid", APPID, "--secret", SECRET, "--api-base-url",
                           f"http://127.0.0.1:{free_port()}", "--api-timeout", "1"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("Error: cannot reach the WeChat API on /cgi-bin/stable_token")


def test_kf_not_enabled_is_an_api_error(kf, wechat):
    wechat.sandbox.kf_enabled = False
    assert_api_error(kf("accounts", "list"), 65400, "customer service is not enabled for this account")


# -- accounts -----------------------------------------------------------------------------

ACCOUNTS_TABLE = """\
ACCOUNT       NICKNAME  ID    WECHAT ID  INVITATION
wang@gh_test  小王      1001  wang_wx    -
li@gh_test    小李      1002  li_wechat  -
zhao@gh_test  小赵      1003  -          zhao_wechat waiting, until 2023-11-22 06:13:20 +0800
"""


def test_accounts_list(kf, staffed):
    assert kf("accounts", "invite", "zhao@gh_test", "zhao_wechat").exit_code == 0
    staffed.sandbox.clear_calls()
    result = kf("accounts", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == ACCOUNTS_TABLE
    assert api_calls(staffed.sandbox) == [("GET", "/cgi-bin/customservice/getkflist", {}, None)]


def test_accounts_list_json(kf, staffed):
    kf("accounts", "invite", "zhao@gh_test", "zhao_wechat")
    result = kf("accounts", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"kf_account": "wang@gh_test", "nickname": "小王", "kf_id": "1001", "headimgurl": "", "wx": "wang_wx",
         "invite_wx": None, "invite_expire_time": None, "invite_status": None},
        {"kf_account": "li@gh_test", "nickname": "小李", "kf_id": "1002", "headimgurl": "", "wx": "li_wechat",
         "invite_wx": None, "invite_expire_time": None, "invite_status": None},
        {"kf_account": "zhao@gh_test", "nickname": "小赵", "kf_id": "1003", "headimgurl": "", "wx": None,
         "invite_wx": "zhao_wechat", "invite_expire_time": int(START) + 7 * 86400, "invite_status": "waiting"},
    ]
    assert "小王" in result.stdout  # not \u escapes


def test_accounts_list_online(kf, staffed):
    staffed.sandbox.interact("oOther", "message")
    kf("sessions", "open", "oOther", "wang@gh_test")
    staffed.sandbox.clear_calls()
    result = kf("accounts", "list", "--online")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ACCOUNT       ID    STATUS  SESSIONS\nwang@gh_test  1001  online  1\n"
    assert api_calls(staffed.sandbox) == [("GET", "/cgi-bin/customservice/getonlinekflist", {}, None)]
    result = kf("accounts", "list", "--online", "--json")
    assert json.loads(result.stdout) == [{"kf_account": "wang@gh_test", "status": 1, "kf_id": "1001",
                                          "accepted_case": 1}]


def test_accounts_list_empty(kf, wechat):
    assert kf("accounts", "list").stdout == "no customer-service accounts\n"
    assert kf("accounts", "list", "--online").stdout == "nobody is online\n"
    assert kf("accounts", "list", "--json").stdout == "[]\n"


@pytest.mark.parametrize("args, path, body, output", [
    (["add", "qian@gh_test", "小钱"], "/customservice/kfaccount/add",
     {"kf_account": "qian@gh_test", "nickname": "小钱"}, "added qian@gh_test (小钱)\n"),
    (["update", "li@gh_test", "李经理"], "/customservice/kfaccount/update",
     {"kf_account": "li@gh_test", "nickname": "李经理"}, "updated li@gh_test: now 李经理\n"),
    (["delete", "li@gh_test"], "/customservice/kfaccount/del", {"kf_account": "li@gh_test"}, "deleted li@gh_test\n"),
    (["invite", "zhao@gh_test", "zhao_wechat"], "/customservice/kfaccount/inviteworker",
     {"kf_account": "zhao@gh_test", "invite_wx": "zhao_wechat"},
     "invited zhao_wechat to work as zhao@gh_test; they accept in WeChat within 7 days\n"),
])
def test_accounts_changes(kf, staffed, args, path, body, output):
    result = kf("accounts", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout == output
    assert api_calls(staffed.sandbox) == [("POST", path, {}, body)]


def test_accounts_changes_reach_wechat(kf, staffed):
    kf("accounts", "add", "qian@gh_test", "小钱")
    kf("accounts", "update", "li@gh_test", "李经理")
    kf("accounts", "delete", "wang@gh_test")
    kf("accounts", "invite", "zhao@gh_test", "zhao_wechat")
    agents = staffed.sandbox.agents
    assert sorted(agents) == ["li@gh_test", "qian@gh_test", "zhao@gh_test"]
    assert agents["li@gh_test"]["kf_nick"] == "李经理"
    assert agents["zhao@gh_test"]["invite_status"] == "waiting"


@pytest.mark.parametrize("args, errcode, meaning", [
    (["add", "wang@gh_test", "again"], 65406, "the customer-service account already exists"),
    (["add", "bad name", "x"], 65404, "illegal customer-service account name"),
    (["add", "new@gh_test", "a nickname far too long"], 65403, "illegal nickname"),
    (["update", "nobody@gh_test", "x"], 65401, "invalid customer-service account"),
    (["delete", "nobody@gh_test"], 65401, "invalid customer-service account"),
    (["invite", "zhao@gh_test", "1bad"], 65409, "invalid WeChat id"),
    (["invite", "wang@gh_test", "wang_wx"], 65407, "that WeChat user is already a worker of this account"),
])
def test_accounts_errors(kf, staffed, args, errcode, meaning):
    assert_api_error(kf("accounts", *args), errcode, meaning)


def test_accounts_avatar(kf, staffed, tmp_path):
    image = tmp_path / "wang.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 996)
    result = kf("accounts", "avatar", "wang@gh_test", str(image))
    assert result.exit_code == 0, result.output
    assert result.stdout == "set the avatar of wang@gh_test\n"
    assert api_calls(staffed.sandbox) == [("POST", "/customservice/kfaccount/uploadheadimg",
                                           {"kf_account": "wang@gh_test"}, {"media": 1000})]
    assert staffed.sandbox.agents["wang@gh_test"]["kf_headimgurl"].startswith("http://mmbiz.qpic.cn/")


def test_accounts_avatar_errors(kf, staffed, tmp_path):
    png = tmp_path / "wang.png"
    png.write_bytes(b"\x89PNG\r\n")
    result = kf("accounts", "avatar", "wang@gh_test", str(png))
    assert result.exit_code == 1
    assert "WeChat API error 40005" in result.stderr and "invalid file type" in result.stderr
    result = kf("accounts", "avatar", "wang@gh_test", str(tmp_path / "missing.jpg"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# -- sessions ------------------------------------------------------------------------------

def test_sessions_open_and_close(kf, staffed):
    result = kf("sessions", "open", "oUser", "wang@gh_test")
    assert result.exit_code == 0, result.output
    assert result.stdout == "opened a session: wang@gh_test serves oUser\n"
    assert staffed.sandbox.sessions == {"oUser": {"kf_account": "wang@gh_test", "createtime": int(START)}}
    result = kf("sessions", "close", "oUser", "wang@gh_test")
    assert result.exit_code == 0, result.output
    assert result.stdout == "closed the session of wang@gh_test with oUser\n"
    assert staffed.sandbox.sessions == {}
    body = {"kf_account": "wang@gh_test", "openid": "oUser"}
    assert api_calls(staffed.sandbox) == [("POST", "/customservice/kfsession/create", {}, body),
                                          ("POST", "/customservice/kfsession/close", {}, body)]


@pytest.mark.parametrize("args, errcode, meaning", [
    (["open", "oUser", "li@gh_test"], 65415, "the worker is not online"),
    (["open", "oUser", "zhao@gh_test"], 65402, "not bound to a WeChat user"),
    (["open", "oUser", "nobody@gh_test"], 65401, "invalid customer-service account"),
    (["open", "oStranger", "wang@gh_test"], 40003, "invalid openid"),
    (["close", "oUser", "wang@gh_test"], 65413, "the customer has no open session"),
])
def test_sessions_errors(kf, staffed, args, errcode, meaning):
    assert_api_error(kf("sessions", *args), errcode, meaning)


def test_closing_another_workers_session(kf, staffed):
    staffed.sandbox.set_online("li@gh_test")
    kf("sessions", "open", "oUser", "wang@gh_test")
    assert_api_error(kf("sessions", "close", "oUser", "li@gh_test"), 65414, "another worker is serving the customer")


def test_sessions_show(kf, staffed):
    kf("sessions", "open", "oUser", "wang@gh_test")
    staffed.sandbox.clear_calls()
    result = kf("sessions", "show", "oUser")
    assert result.exit_code == 0, result.output
    assert result.stdout == "oUser is served by wang@gh_test since 2023-11-15 06:13:20 +0800\n"
    assert api_calls(staffed.sandbox) == [("GET", "/customservice/kfsession/getsession", {"openid": "oUser"}, None)]
    result = kf("sessions", "show", "oUser", "--json", "--tz", "UTC")
    assert json.loads(result.stdout) == {"openid": "oUser", "kf_account": "wang@gh_test", "created": int(START)}
    result = kf("sessions", "show", "oUser", "--tz", "UTC")
    assert result.stdout == "oUser is served by wang@gh_test since 2023-11-14 22:13:20 +0000\n"


def test_sessions_show_without_a_session_exits_1(kf, staffed):
    result = kf("sessions", "show", "oUser")
    assert (result.exit_code, result.stdout) == (1, "oUser has no open session\n")
    result = kf("sessions", "show", "oUser", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"openid": "oUser", "kf_account": None, "created": None}
    assert_api_error(kf("sessions", "show", "oStranger"), 40003, "invalid openid")


def test_an_unknown_time_zone_is_bad_input(kf, staffed):
    result = kf("sessions", "show", "oUser", "--tz", "Mars/Olympus")
    assert result.exit_code == 2
    assert "unknown time zone 'Mars/Olympus'" in result.stderr


def test_sessions_list(kf, staffed):
    staffed.sandbox.interact("oOther", "message")
    kf("sessions", "open", "oUser", "wang@gh_test")
    staffed.clock.advance(90)
    kf("sessions", "open", "oOther", "wang@gh_test")
    staffed.sandbox.clear_calls()
    result = kf("sessions", "list", "wang@gh_test")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("OPENID  SINCE\n"
                             "oUser   2023-11-15 06:13:20 +0800\n"
                             "oOther  2023-11-15 06:14:50 +0800\n")
    assert api_calls(staffed.sandbox) == [("GET", "/customservice/kfsession/getsessionlist",
                                           {"kf_account": "wang@gh_test"}, None)]
    assert json.loads(kf("sessions", "list", "wang@gh_test", "--json").stdout) == [
        {"openid": "oUser", "kf_account": "wang@gh_test", "created": int(START)},
        {"openid": "oOther", "kf_account": "wang@gh_test", "created": int(START) + 90}]
    assert kf("sessions", "list", "li@gh_test").stdout == "li@gh_test serves nobody\n"
    assert_api_error(kf("sessions", "list", "nobody@gh_test"), 65401, "invalid customer-service account")


def test_sessions_waiting(kf, staffed):
    assert kf("sessions", "waiting").stdout == "0 waiting\n"
    staffed.sandbox.enqueue("oUser")
    staffed.clock.advance(60)
    staffed.sandbox.interact("oOther", "message")
    staffed.sandbox.enqueue("oOther")
    staffed.sandbox.clear_calls()
    result = kf("sessions", "waiting")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("2 waiting\n"
                             "OPENID  LAST MESSAGE\n"
                             "oUser   2023-11-15 06:13:20 +0800\n"
                             "oOther  2023-11-15 06:14:20 +0800\n")
    assert api_calls(staffed.sandbox) == [("GET", "/customservice/kfsession/getwaitcase", {}, None)]
    assert json.loads(kf("sessions", "waiting", "--json").stdout) == {
        "count": 2, "users": [{"openid": "oUser", "latest_time": int(START)},
                              {"openid": "oOther", "latest_time": int(START) + 60}]}


def test_sessions_waiting_says_when_wechat_lists_only_the_first_100(kf, wechat):
    for i in range(101):
        wechat.sandbox.interact(f"o{i:03}", "message")
        wechat.sandbox.enqueue(f"o{i:03}")
    result = kf("sessions", "waiting")
    assert result.stdout.splitlines()[0] == "101 waiting (the first 100 listed)"
    assert len(result.stdout.splitlines()) == 102


# -- send and typing --------------------------------------------------------------------------

SENDS = [
    (["text", "oUser", "您好，我是客服小王"], "text", {"content": "您好，我是客服小王"}),
    (["image", "oUser", "MEDIA_IMG"], "image", {"media_id": "MEDIA_IMG"}),
    (["voice", "oUser", "MEDIA_VOICE"], "voice", {"media_id": "MEDIA_VOICE"}),
    (["video", "oUser", "MEDIA_VIDEO", "--thumb", "THUMB", "--title", "教程", "--description", "三分钟"], "video",
     {"media_id": "MEDIA_VIDEO", "thumb_media_id": "THUMB", "title": "教程", "description": "三分钟"}),
    (["music", "oUser", "http://m.example/a.mp3", "--hq-url", "http://m.example/a.flac", "--thumb", "THUMB",
      "--title", "歌", "--description", "d"], "music",
     {"musicurl": "http://m.example/a.mp3", "hqmusicurl": "http://m.example/a.flac", "thumb_media_id": "THUMB",
      "title": "歌", "description": "d"}),
    (["news", "oUser", "--title", "退款说明", "--url", "https://example.com/refund", "--description", "点此查看",
      "--picurl", "https://example.com/p.jpg"], "news",
     {"articles": [{"title": "退款说明", "url": "https://example.com/refund", "description": "点此查看",
                    "picurl": "https://example.com/p.jpg"}]}),
    (["mpnews", "oUser", "MEDIA_NEWS"], "mpnews", {"media_id": "MEDIA_NEWS"}),
    (["mpnewsarticle", "oUser", "ARTICLE_1"], "mpnewsarticle", {"article_id": "ARTICLE_1"}),
    (["msgmenu", "oUser", "--head", "本次服务满意吗？", "--option", "101=满意", "--option", "102=不满意=差",
      "--tail", "谢谢"], "msgmenu",
     {"head_content": "本次服务满意吗？", "list": [{"id": "101", "content": "满意"}, {"id": "102", "content": "不满意=差"}],
      "tail_content": "谢谢"}),
    (["wxcard", "oUser", "CARD_1"], "wxcard", {"card_id": "CARD_1"}),
    (["miniprogrampage", "oUser", "--title", "小程序", "--appid", "wxmini0001", "--pagepath", "pages/index",
      "--thumb", "THUMB"], "miniprogrampage",
     {"title": "小程序", "appid": "wxmini0001", "pagepath": "pages/index", "thumb_media_id": "THUMB"}),
]


@pytest.mark.parametrize("args, msgtype, body", SENDS, ids=[s[1] for s in SENDS])
def test_send_every_type_as_an_agent(kf, staffed, args, msgtype, body):
    result = kf("send", *args, "--as", "wang@gh_test")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"sent {msgtype} to oUser as wang@gh_test\n"
    assert api_calls(staffed.sandbox) == [("POST", SEND, {}, {
        "touser": "oUser", "msgtype": msgtype, msgtype: body, "customservice": {"kf_account": "wang@gh_test"}})]
    assert staffed.sandbox.sent[-1]["kf_account"] == "wang@gh_test"


@pytest.mark.parametrize("args, msgtype, body", SENDS, ids=[s[1] for s in SENDS])
def test_send_every_type_as_the_account_with_no_strict(kf, staffed, args, msgtype, body):
    result = kf("send", *args, "--no-strict")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"sent {msgtype} to oUser\n"
    assert api_calls(staffed.sandbox) == [("POST", SEND, {}, {"touser": "oUser", "msgtype": msgtype, msgtype: body})]


def test_send_music_hq_url_defaults_to_the_music_url(kf, staffed):
    assert kf("send", "music", "oUser", "http://m.example/a.mp3", "--thumb", "T").exit_code == 0
    assert staffed.sandbox.sent[-1]["music"] == {"musicurl": "http://m.example/a.mp3", "title": "", "description": "",
                                                 "hqmusicurl": "http://m.example/a.mp3", "thumb_media_id": "T"}


@pytest.mark.parametrize("args, message", [
    (["msgmenu", "oUser", "--option", "no-equals-sign"], "'no-equals-sign' is not ID=TEXT"),
    (["msgmenu", "oUser", "--option", "=text"], "'=text' is not ID=TEXT"),
    (["msgmenu", "oUser"], "Missing option '--option'"),
    (["news", "oUser", "--title", "t"], "Missing option '--url'"),
    (["video", "oUser", "MEDIA"], "Missing option '--thumb'"),
    (["text", "oUser"], "Missing argument 'CONTENT'"),
    (["sticker", "oUser", "x"], "No such command 'sticker'"),
])
def test_send_bad_input_exits_2_before_any_call(kf, staffed, args, message):
    result = kf("send", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert staffed.sandbox.calls == []


def test_send_outside_the_window(kf, staffed):
    assert_api_error(kf("send", "text", "oStranger", "hi"), 45015,
                     "outside the 48-hour window: the user has not interacted recently, or has unfollowed")
    staffed.clock.advance(48 * 3600)
    assert_api_error(kf("send", "text", "oUser", "hi"), 45015, "outside the 48-hour window")


def test_send_over_the_quota(kf, staffed):
    for _ in range(5):
        assert kf("send", "text", "oUser", "hi").exit_code == 0
    result = kf("send", "text", "oUser", "hi")
    assert_api_error(result, 45047, "over the send quota")
    assert "(WeChat said: out of response count limit" in result.stderr


def test_send_as_an_unknown_agent(kf, staffed):
    assert_api_error(kf("send", "text", "oUser", "hi", "--as", "nobody@gh_test"), 65401,
                     "invalid customer-service account")
    assert staffed.sandbox.sent == []


def test_send_too_long_a_text(kf, staffed):
    assert_api_error(kf("send", "text", "oUser", "长" * 700), 45002, "the content is too long")


def test_typing(kf, staffed):
    result = kf("typing", "oUser")
    assert (result.exit_code, result.stdout) == (0, "showing 'typing…' to oUser for up to 15 s\n")
    result = kf("typing", "oUser", "--cancel")
    assert (result.exit_code, result.stdout) == (0, "stopped showing 'typing…' to oUser\n")
    assert api_calls(staffed.sandbox) == [
        ("POST", "/cgi-bin/message/custom/typing", {}, {"touser": "oUser", "command": "Typing"}),
        ("POST", "/cgi-bin/message/custom/typing", {}, {"touser": "oUser", "command": "CancelTyping"})]


def test_typing_errors(kf, staffed):
    kf("typing", "oUser")
    assert_api_error(kf("typing", "oUser"), 45081, "the user is already being shown 'typing'")
    staffed.clock.advance(31)
    assert_api_error(kf("typing", "oUser"), 45080, "typing needs an interaction from the user in the last 30 seconds")


# -- records export ------------------------------------------------------------------------------

SINCE = 1699977600  # 2023-11-15 00:00:00 +0800
UNTIL = SINCE + 2 * 86400 + 12 * 3600  # 2023-11-17 12:00:00 +0800
DAY = 86400
RECORD_TEXTS = ["你好，我要退款", 'He said "hi", then left', "第一行\n第二行", "ok", "收到",
                "day 2 a", "day 2 b", "day 2, c", "day 3 a", "最后一条"]


def add_records(sandbox: Sandbox) -> List[Dict[str, Any]]:
    """Records over 2.5 days (5, 3 and 2 a day) and one just outside each end; the expected export."""
    sandbox.add_record("oBefore", "too early", at=SINCE - 1)
    times = [SINCE + 100 + i for i in range(5)] + [SINCE + DAY + 50 + i for i in range(3)] + [UNTIL - 1, UNTIL]
    expected = []
    for i, (text, at) in enumerate(zip(RECORD_TEXTS, times)):
        sent = i % 2 == 1
        sandbox.add_record("oUser", text, opercode=2002 if sent else 2003, worker="wang@gh_test" if sent else "",
                           at=at)
        expected.append({"openid": "oUser", "opercode": 2002 if sent else 2003, "text": text, "time": at,
                         "worker": "wang@gh_test" if sent else ""})
    sandbox.add_record("oAfter", "too late", at=UNTIL + 1)
    return expected


# (starttime, endtime, msgid) of every getmsglist call with --page-size 2: msgid 1 is the early
# record, 2–6 day 1, 7–9 day 2, 10–11 day 3, 12 the late one.
EXPECTED_PAGES = [(SINCE, SINCE + DAY - 1, 1), (SINCE, SINCE + DAY - 1, 4), (SINCE, SINCE + DAY - 1, 6),
                  (SINCE + DAY, SINCE + 2 * DAY - 1, 1), (SINCE + DAY, SINCE + 2 * DAY - 1, 9),
                  (SINCE + 2 * DAY, UNTIL, 1), (SINCE + 2 * DAY, UNTIL, 12)]


def record_pages(sandbox: Sandbox) -> List[Tuple[int, int, int]]:
    pages = []
    for call in sandbox.calls_to(GETMSGLIST):
        assert call.method == "POST" and call.body["number"] == 2
        assert call.body["endtime"] - call.body["starttime"] < DAY
        pages.append((call.body["starttime"], call.body["endtime"], call.body["msgid"]))
    return pages


def test_records_export_jsonl(kf, wechat, tmp_path):
    expected = add_records(wechat.sandbox)
    out = tmp_path / "records.jsonl"
    result = kf("records", "export", "--since", "2023-11-15", "--until", "2023-11-17 12:00", "--out", str(out),
                "--page-size", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"wrote 10 records from 2023-11-15 00:00:00 +0800 to 2023-11-17 12:00:00 +0800 "
                             f"to {out}\n")
    assert "exporting" in result.stderr and "10" in result.stderr  # the progress bar
    text = out.read_text(encoding="utf-8")
    assert [json.loads(line) for line in text.splitlines()] == expected
    assert "你好，我要退款" in text
    assert record_pages(wechat.sandbox) == EXPECTED_PAGES
    assert os.listdir(tmp_path) == ["records.jsonl"]


def test_records_export_csv_quietly_with_unix_times(kf, wechat, tmp_path):
    expected = add_records(wechat.sandbox)
    out = tmp_path / "records.csv"
    result = kf("records", "export", "--since", str(SINCE), "--until", str(UNTIL), "--out", str(out),
                "--page-size", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    with out.open(encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["openid", "opercode", "text", "time", "worker"]
    assert rows[1:] == [[r["openid"], str(r["opercode"]), r["text"], str(r["time"]), r["worker"]] for r in expected]
    assert record_pages(wechat.sandbox) == EXPECTED_PAGES


def test_records_export_format_option_beats_the_extension(kf, wechat, tmp_path):
    wechat.sandbox.add_record("oUser", "hi", at=SINCE + 5)
    out = tmp_path / "records.txt"
    assert kf("records", "export", "--since", "2023-11-15", "--until", "2023-11-15", "--out", str(out),
              "--format", "csv", "--quiet").exit_code == 0
    assert out.read_bytes().decode("utf-8") == f"openid,opercode,text,time,worker\r\noUser,2003,hi,{SINCE + 5},\r\n"
    # a date alone as --until is its whole day: one window, 00:00:00–23:59:59
    assert [(c.body["starttime"], c.body["endtime"]) for c in wechat.sandbox.calls_to(GETMSGLIST)] == [
        (SINCE, SINCE + DAY - 1)]


def test_records_export_in_another_time_zone(kf, wechat, tmp_path):
    out = tmp_path / "r.jsonl"
    result = kf("records", "export", "--since", "2023-11-15 06:00", "--until", "2023-11-15 07:30:15", "--tz", "UTC",
                "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    utc_six = 1700028000  # 2023-11-15 06:00:00 UTC
    assert [(c.body["starttime"], c.body["endtime"]) for c in wechat.sandbox.calls_to(GETMSGLIST)] == [
        (utc_six, utc_six + 5415)]
    assert result.stdout == f"wrote 0 records from 2023-11-15 06:00:00 +0000 to 2023-11-15 07:30:15 +0000 to {out}\n"
    assert out.read_text() == ""


@pytest.mark.parametrize("since, until, message", [
    ("yesterday", "2023-11-15", "'yesterday' is not YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or a unix time"),
    ("2023-11-15", "2023-02-30", "day is out of range for month"),
    ("2023-11-16", "2023-11-15 23:59", "--until is before --since"),
])
def test_records_export_bad_period_exits_2(kf, wechat, tmp_path, since, until, message):
    result = kf("records", "export", "--since", since, "--until", until, "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2
    assert message in result.stderr
    assert wechat.sandbox.calls == []
    assert os.listdir(tmp_path) == []


def test_records_export_failing_midway_leaves_no_file(kf, wechat, tmp_path, monkeypatch):
    """After the second page is read, getmsglist fails: nothing is written, the old file stays."""
    add_records(wechat.sandbox)
    real_export = cli_admin.export_records
    written = []

    def export_then_fail(records, *args, **kwargs):
        def records_then_fault():
            for record in records:
                written.append(record)
                yield record
                if len(written) == 3:  # the next page request is the third
                    wechat.sandbox.faults.fail_next(45009, path=GETMSGLIST)
        return real_export(records_then_fault(), *args, **kwargs)

    monkeypatch.setattr(cli_admin, "export_records", export_then_fail)
    out = tmp_path / "records.jsonl"
    out.write_text("the previous export\n", encoding="utf-8")
    result = kf("records", "export", "--since", str(SINCE), "--until", str(UNTIL), "--out", str(out),
                "--page-size", "2", "--quiet")
    assert result.exit_code == 1
    assert "WeChat API error 45009" in result.stderr
    assert "API call frequency or daily limit reached" in result.stderr
    assert f"nothing was written to {out}" in result.stderr
    assert len(written) == 4  # records streamed page by page: two pages were read before the fault
    assert [c.errcode for c in wechat.sandbox.calls_to(GETMSGLIST)] == [0, 0, 45009]
    assert os.listdir(tmp_path) == ["records.jsonl"]
    assert out.read_text(encoding="utf-8") == "the previous export\n"


def test_records_export_into_a_missing_directory(kf, wechat, tmp_path):
    out = tmp_path / "missing" / "r.jsonl"
    result = kf("records", "export", "--since", str(SINCE), "--until", str(SINCE + 10), "--out", str(out), "--quiet")
    assert result.exit_code == 1
    assert f"cannot write {out}" in result.stderr
    assert not out.parent.exists()


# -- window ---------------------------------------------------------------------------------------

def test_window_in_a_separate_process_knows_nobody(wechat):
    result = CliRunner().invoke(cli, ["window", "oUser"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("oUser: can send — no interaction seen: WeChat decides\n"
                             "  known:     no (unknown user)\n"
                             "  remaining: unknown\n"
                             "  until:     unknown\n")
    assert result.stderr == MEMORY_NOTE + "; this command has seen no pushes\n"
    result = CliRunner().invoke(cli, ["window", "oUser", "--json"])
    assert json.loads(result.stdout) == {"openid": "oUser", "known": False, "can_send": True, "remaining": None,
                                         "until": None, "reason": "no interaction seen: WeChat decides",
                                         "until_local": None, "shared_state": False}
    assert wechat.sandbox.calls == []  # the window needs no API call, nor credentials


# -- flask kf ... ----------------------------------------------------------------------------------

@pytest.fixture
def make_kf_app(make_app, wechat):
    """``make_kf_app(**config)``: an app whose KfPlugin talks to the sandbox, on the sandbox's clock."""
    wechat.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    wechat.sandbox.interact("oUser", "message")

    def make(**config: Any):
        settings = dict(KF_APPID=APPID, KF_SECRET=SECRET, KF_API_BASE_URL=wechat.url)
        settings.update(config)
        return make_app(plugin_options={"clock": wechat.clock}, **settings)
    return make


@pytest.fixture
def wrong_env() -> Dict[str, str]:
    """Credentials in the environment that would fail: flask kf must read the app's config first."""
    return {"KF_APPID": "wxwrong", "KF_SECRET": "wrong", "KF_API_BASE_URL": f"http://127.0.0.1:{free_port()}"}


def test_flask_kf_accounts_list(make_kf_app, wechat, wrong_env):
    app = make_kf_app()
    result = app.test_cli_runner().invoke(args=["kf", "accounts", "list"], env=wrong_env)
    assert result.exit_code == 0, result.output
    assert result.stdout == ("ACCOUNT       NICKNAME  ID    WECHAT ID  INVITATION\n"
                             "wang@gh_test  小王      1001  wang_wx    -\n")
    assert wechat.sandbox.calls[0].body["secret"] == SECRET
    assert api_calls(wechat.sandbox) == [("GET", "/cgi-bin/customservice/getkflist", {}, None)]


def test_flask_command_kf_accounts_list_in_an_app_context(make_kf_app, wechat, wrong_env, monkeypatch):
    """The same through the ``flask`` command's own group, which pushes an app context."""
    from flask.cli import FlaskGroup
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")  # FlaskGroup sets it; restored after the test
    app = make_kf_app()
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False)
    result = CliRunner().invoke(group, ["kf", "accounts", "list", "--json"], env=wrong_env)
    assert result.exit_code == 0, result.output
    assert [a["kf_account"] for a in json.loads(result.stdout)] == ["wang@gh_test"]


def test_flask_kf_sends_consult_the_apps_window(make_kf_app, wechat):
    """The plugin saw a menu click (3 sends within a minute): the 4th is refused before any HTTP call."""
    app = make_kf_app()
    plugin = app.extensions["kf_plugin"].plugin
    plugin.window.record_action("oUser", "click")
    runner = app.test_cli_runner()
    for _ in range(3):
        assert runner.invoke(args=["kf", "send", "text", "oUser", "hi"]).exit_code == 0
    wechat.sandbox.clear_calls()
    result = runner.invoke(args=["kf", "send", "text", "oUser", "hi", "--as", "wang@gh_test"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: WeChat API error 45047: over the send quota")
    assert "refused before calling WeChat (send quota used up); --no-strict sends anyway" in result.stderr
    assert wechat.sandbox.calls == []
    result = runner.invoke(args=["kf", "send", "text", "oUser", "hi", "--as", "wang@gh_test", "--no-strict"])
    assert result.exit_code == 0, result.output
    assert api_calls(wechat.sandbox) == [("POST", SEND, {}, {"touser": "oUser", "msgtype": "text",
                                                             "text": {"content": "hi"},
                                                             "customservice": {"kf_account": "wang@gh_test"}})]
    assert len(wechat.sandbox.sent) == 4  # the sandbox's own window (a message: 5 sends) still allowed it


def test_flask_kf_window_shows_what_the_app_has_seen(make_kf_app, wechat):
    app = make_kf_app()
    app.extensions["kf_plugin"].plugin.window.record_action("oUser", "click")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["kf", "window", "oUser"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("oUser: can send — within the window\n"
                             "  known:     yes\n"
                             "  remaining: 3\n"
                             "  until:     2023-11-15 06:14:20 +0800\n")
    assert result.stderr == MEMORY_NOTE + "\n"
    for _ in range(3):
        runner.invoke(args=["kf", "send", "text", "oUser", "hi"])
    result = runner.invoke(args=["kf", "window", "oUser", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"openid": "oUser", "known": True, "can_send": False, "remaining": 0,
                                         "until": START + 60, "reason": "send quota used up",
                                         "until_local": "2023-11-15 06:14:20 +0800", "shared_state": False}
    assert runner.invoke(args=["kf", "window", "oUser"]).stdout.startswith("oUser: cannot send — send quota used up")


def test_flask_kf_options_on_the_command_line_beat_the_apps_config(make_kf_app, wechat):
    app = make_kf_app(KF_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["kf", "accounts", "list"]).exit_code == 1  # the plugin's URL is dead
    result = runner.invoke(args=["kf", "accounts", "list", "--api-base-url", wechat.url])
    assert result.exit_code == 0, result.output
    assert "wang@gh_test" in result.stdout
    assert wechat.sandbox.calls[0].body["appid"] == APPID  # the rest from the app's config


def test_flask_kf_without_credentials_exits_2(make_kf_app, wechat):
    app = make_kf_app(KF_SECRET=None)
    result = app.test_cli_runner().invoke(args=["kf", "accounts", "list"], env={"KF_SECRET": None})
    assert result.exit_code == 2
    assert result.stderr == ("Error: missing credentials: set KF_SECRET in the app's config or the environment, "
                             "or pass --secret\n")
    assert wechat.sandbox.calls == []


def test_flask_kf_falls_back_to_the_environment(make_kf_app, wechat):
    app = make_kf_app(KF_SECRET=None)
    result = app.test_cli_runner().invoke(args=["kf", "accounts", "list", "--json"], env={"KF_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert [a["kf_account"] for a in json.loads(result.stdout)] == ["wang@gh_test"]


# -- kf-plugin sandbox ---------------------------------------------------------------------------------

def read_until(process: subprocess.Popen, marker: str, timeout: float = 30.0) -> List[str]:
    """Lines of the process's stdout up to the one containing ``marker`` (fails after ``timeout``).

    A thread reads: select() on the pipe would miss lines already in the reader's buffer.
    """
    lines: "queue.Queue[str]" = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
    threading.Thread(target=pump, daemon=True).start()
    seen: List[str] = []
    deadline = time.monotonic() + timeout
    while not seen or marker not in seen[-1]:
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())).rstrip("\n"))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} from the sandbox; got {seen} (exit code {process.poll()})")
    return seen


def test_kf_plugin_sandbox_serves_tokens():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from kf_plugin.cli import main; main()", "sandbox", "--port", str(port),
         "--appid", "wxstandalone01", "--secret", "standalone"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        assert read_until(process, "Ctrl-C") == [
            "settings for kf_plugin:", f"  KF_API_BASE_URL={url}", "  KF_APPID=wxstandalone01",
            "  KF_SECRET=standalone", f"  KF_WECOM_API_BASE_URL={url}", "  KF_WECOM_CORPID=wwdemo0000000000",
            "  KF_WECOM_SECRET=kf-demo-wecom-secret",
            "pushes to the bot at http://127.0.0.1:5000/wechat (token 'kf-demo-token', safe mode)",
            "drive it: kf-plugin sandbox say OPENID TEXT · accept OPENID · close OPENID · state · --help",
            f"WeChat API sandbox on {url} (Ctrl-C to stop)"]
        http = requests.Session()
        http.trust_env = False
        answer = http.get(url + "/cgi-bin/token", params={"grant_type": "client_credential", "appid": "wxstandalone01",
                                                          "secret": "standalone"}, timeout=10).json()
        assert answer["expires_in"] == 7200 and len(answer["access_token"]) >= 100
        wrong = http.get(url + "/cgi-bin/token", params={"grant_type": "client_credential", "appid": "wxstandalone01",
                                                         "secret": "nope"}, timeout=10).json()
        assert wrong["errcode"] == 40125
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode == 0


def test_kf_plugin_sandbox_on_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["sandbox", "--port", str(port)])
    assert result.exit_code == 1
    assert f"Error: cannot listen on 127.0.0.1:{port}:" in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_window_reads_the_state_the_bot_shares_through_redis(redis_url):
    """What one process recorded (a bot worker) is what `kf-plugin window` shows from another."""
    from kf_plugin.state.shared import open_state
    bot_side = WindowTracker(open_state(redis_url, "wxshared").window)
    bot_side.record_action("oShared", "message")
    bot_side.sent("oShared")
    result = CliRunner().invoke(cli, ["window", "oShared", "--json"],
                                env={"KF_REDIS_URL": redis_url, "KF_APPID": "wxshared"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["known"], shown["can_send"], shown["remaining"], shown["shared_state"]) == (True, True, 4, True)
    assert "note:" not in result.stderr
