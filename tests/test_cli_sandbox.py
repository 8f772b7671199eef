"""``kf-plugin sandbox``: seeding the server, and the commands that drive a running one over HTTP.

The commands run with click's runner against a sandbox served on a free loopback port; what
they print and their exit codes are checked: 0 done, 1 refused or unreachable, 2 bad input.
"""
from __future__ import annotations

import json
import socket
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from flask import Flask

import example_app
from kf_plugin.cli import cli
from kf_plugin.cli.sandbox_command import DEMO_BOT, DEMO_WECOM
from kf_plugin.config import SETTINGS
from kf_plugin.testing.sandbox import Sandbox, SandboxServer
from kf_plugin.testing.sandbox.seeding import AgentSeed

from .testing.sandbox.conftest import START, Clock, closed_port
from .testing.sandbox.wechat_bot import TOKEN, WeChatBot
from .testing.sandbox.wecom import wecom_bot
from .testing.sandbox.wecom.conftest import CUSTOMER, Kf


@pytest.fixture
def sandbox() -> Sandbox:
    served = Sandbox(clock=Clock())
    for spec in ("wang@gh_test:online:小王", "li@gh_test:offline"):
        AgentSeed.parse(spec).add_to(served)
    return served


@pytest.fixture
def server(sandbox) -> Iterator[SandboxServer]:
    with sandbox.serve() as running:
        yield running


@pytest.fixture
def kf(server):
    """``kf(*args)``: ``kf-plugin sandbox ARGS --sandbox-url`` the served sandbox."""
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, ["sandbox", *args, "--sandbox-url", server.url])
    return invoke


@pytest.fixture
def bot(sandbox, server) -> Iterator[WeChatBot]:
    """A wechatpy bot (``人工`` → transfer, other texts → ``收到：…``), connected in plain mode."""
    bot = WeChatBot(sandbox, server.url)
    with SandboxServer(bot.app) as served:
        bot.url = served.url + "/wechat"
        sandbox.connect_bot(bot.url, TOKEN)
        yield bot


def lines(result: Any) -> list:
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_a_conversation_by_hand(kf, bot, sandbox):
    assert lines(kf("say", "oUser", "人工")) == ["bot answered: transfer_customer_service",
                                                "oUser: waiting in the queue"]
    assert lines(kf("accept", "oUser")) == ["bot answered: success (no reply)", "oUser: with wang@gh_test"]
    assert lines(kf("say", "oUser", "在吗")) == ["oUser: with wang@gh_test"]
    assert lines(kf("agent-says", "oUser", "您好")) == [
        "wang@gh_test wrote to oUser (a chat record; the bot is not told)", "oUser: with wang@gh_test"]
    assert lines(kf("close", "oUser")) == ["wang@gh_test closed the session with oUser",
                                          "bot answered: success (no reply)", "oUser: with the bot"]
    assert lines(kf("say", "oUser", "你好")) == ['bot answered: text "收到：你好"', "oUser: with the bot"]
    assert [getattr(m, "event", m.type) for m in bot.received] == [
        "text", "kf_create_session", "kf_close_session", "text"]


def test_events_switches_and_lapses(kf, bot, sandbox):
    assert lines(kf("event", "oUser", "CLICK", "找 wang@gh_test")) == [
        "bot answered: transfer_customer_service to wang@gh_test", "oUser: with wang@gh_test"]
    assert lines(kf("agent", "li@gh_test", "online")) == ["li@gh_test (li): online, 0 sessions"]
    assert lines(kf("switch", "oUser", "li@gh_test")) == ["bot answered: success (no reply)", "oUser: with li@gh_test"]
    assert lines(kf("lapse", "oUser")) == ["oUser: with the bot"]
    assert [getattr(m, "event", m.type) for m in bot.received] == [
        "click", "kf_create_session", "kf_switch_session"]


def test_without_a_bot_nothing_is_pushed(kf, sandbox):
    assert lines(kf("say", "oUser", "转人工")) == ["no bot connected: nothing was pushed", "oUser: with the bot"]
    assert sandbox.knows("oUser")


def test_state_plain_and_json(kf, sandbox, bot):
    sandbox.interact("oServed", "message")
    sandbox.accept("oServed", "wang@gh_test")
    sandbox.interact("oQueued", "message")
    sandbox.enqueue("oQueued")
    printed = lines(kf("state"))
    assert printed[:4] == [f"bot: {bot.url} (plain)", "AGENT         NICKNAME  STATE    SESSIONS",
                           "wang@gh_test  小王      online   1", "li@gh_test    li        offline  0"]
    assert [line.split(" since ")[0] for line in printed[4:]] == [
        "sessions: 1", "  oServed with wang@gh_test", "waiting: 1", "  oQueued"]
    assert json.loads(kf("state", "--json").stdout)["sessions"] == [
        {"openid": "oServed", "kf_account": "wang@gh_test", "since": int(START)}]


def test_add_agent(kf, sandbox):
    assert lines(kf("add-agent", "zhao@gh_test:busy:小赵")) == ["zhao@gh_test (小赵): busy, 0 sessions"]
    assert sandbox.agents["zhao@gh_test"]["status"] == 2
    result = kf("add-agent", "zhao@gh_test:bsy")
    assert result.exit_code == 2 and "did you mean 'busy'?" in result.stderr


@pytest.mark.parametrize("args, code, error", [
    (["agent", "wang@gh_test", "onlin"], 2,
     "unknown agent state 'onlin': did you mean 'online'? (states: online, busy, offline)"),
    (["agent", "ghost@gh_test", "online"], 1, "no agent 'ghost@gh_test' (the agents: wang@gh_test, li@gh_test)"),
    (["close", "oNobody"], 1, "no user 'oNobody': nobody with that openid has written yet"),
    (["accept", "oUser", "--agent", "li@gh_test"], 1, "li@gh_test is offline: set them online first"),
    (["close", "oUser"], 1, "oUser is in no session with an agent"),
])
def test_errors_are_one_line(kf, sandbox, args, code, error):
    sandbox.interact("oUser", "message")
    result = kf(*args)
    assert (result.exit_code, result.stderr, result.stdout) == (code, f"Error: {error}\n", "")


# -- 微信客服 ------------------------------------------------------------------------------------

@pytest.fixture
def kfid(sandbox) -> str:
    """A 微信客服 account with two receiving servicers (zhangsan, lisi) and one stopped (wangwu)."""
    open_kfid = sandbox.wecom.add_account("客服")
    for userid in ("zhangsan", "lisi"):
        sandbox.wecom.add_servicer(open_kfid, userid)
    sandbox.wecom.add_servicer(open_kfid, "wangwu", receiving=False)
    return open_kfid


NO_CALLBACK = "no 微信客服 bot connected: no callback (the item waits for sync_msg)"


def test_a_wecom_customer_and_servicers_by_hand(kf, sandbox, server, kfid):
    assert lines(kf("customer-says", kfid, CUSTOMER, "转人工")) == [
        f"{CUSTOMER} wrote to {kfid} (msgid {sandbox.wecom.messages[-1]['msgid']})", NO_CALLBACK,
        f"{CUSTOMER} on {kfid}: new, not handled yet (state 0)"]
    api = Kf(server.url, sandbox.wecom)
    api.fetch_token()
    assert api.trans(kfid, 2)["errcode"] == 0                        # the bot puts the customer in the pool
    assert lines(kf("servicer-takes", kfid, CUSTOMER, "zhangsan")) == [
        f"zhangsan took {CUSTOMER} from the pool", NO_CALLBACK, f"{CUSTOMER} on {kfid}: with zhangsan (state 3)"]
    assert lines(kf("servicer-says", kfid, CUSTOMER, "您好"))[0] == (
        f"zhangsan wrote to {CUSTOMER} (msgid {sandbox.wecom.messages[-1]['msgid']})")
    assert lines(kf("servicer-takes", kfid, CUSTOMER, "lisi"))[0] == f"lisi took {CUSTOMER} from zhangsan"
    assert lines(kf("servicer-ends", kfid, CUSTOMER)) == [
        f"lisi ended the session with {CUSTOMER}", NO_CALLBACK, f"{CUSTOMER} on {kfid}: ended (state 4)"]
    assert lines(kf("servicer-takes", kfid, CUSTOMER, "zhangsan"))[0] == (
        f"zhangsan reopened the ended session with {CUSTOMER}")
    assert [(m["origin"], m.get("event", {}).get("change_type")) for m in sandbox.wecom.messages] == [
        (3, None), (4, 1), (5, None), (4, 2), (4, 3), (4, 4)]


def test_a_wecom_bot_is_called_back_and_json_is_the_answer(kf, sandbox, kfid):
    bot = wecom_bot.WeComBot(sandbox.wecom.corpid)
    with SandboxServer(bot.app) as served:
        sandbox.wecom.connect_bot(served.url + "/wecom", wecom_bot.TOKEN, wecom_bot.AES_KEY)
        assert lines(kf("customer-says", kfid, CUSTOMER, "你好"))[1] == (
            f"kf_msg_or_event callback to the bot at {served.url}/wecom")
        answer = json.loads(kf("customer-says", kfid, CUSTOMER, "在吗", "--json").stdout)
        sandbox.wecom.wait_for_callbacks()
    assert answer == {"open_kfid": kfid, "external_userid": CUSTOMER, "bot": served.url + "/wecom",
                      "service_state": 0, "servicer": None, "msgid": sandbox.wecom.messages[-1]["msgid"]}
    assert [heard["OpenKfId"] for heard in bot.heard] == [kfid, kfid]


def test_state_shows_wecom_accounts_sessions_and_bot(kf, sandbox, kfid):
    sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")
    assert lines(kf("state"))[-3:] == [
        "微信客服 bot: none", f"微信客服 account {kfid} (客服), servicers: zhangsan, lisi, wangwu (stopped)",
        f"  {CUSTOMER}: new, not handled yet (state 0)"]


@pytest.mark.parametrize("args, code, error", [
    (["customer-says", "wk" + "X" * 30, CUSTOMER, "hi"], 1, "no 微信客服 account '{bad}' (the accounts: {kfid})"),
    (["servicer-takes", "{kfid}", "wmNobody", "zhangsan"], 1,
     "no customer 'wmNobody': nobody with that external_userid has written yet"),
    (["servicer-takes", "{kfid}", CUSTOMER, "ghost"], 1,
     "no servicer 'ghost' of {kfid} (its servicers: zhangsan, lisi, wangwu)"),
    (["servicer-takes", "{kfid}", CUSTOMER, "wangwu"], 1, "wangwu has stopped receiving customers"),
    (["servicer-ends", "{kfid}", CUSTOMER], 1, f"no servicer serves {CUSTOMER} on {{kfid}} (state 0)"),
    (["customer-says", "{kfid}", CUSTOMER, ""], 2, "'text' must be a non-empty string"),
    (["customer-says", "{kfid}", CUSTOMER, "1", "--menu-id", "9"], 2,
     f"menu_id '9' is in no menu sent to {CUSTOMER}: send a msgmenu first"),
])
def test_wecom_errors_are_one_line(kf, sandbox, kfid, args, code, error):
    sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")
    result = kf(*[arg.format(kfid=kfid) for arg in args])
    expected = error.format(kfid=kfid, bad="wk" + "X" * 30)
    assert (result.exit_code, result.stderr, result.stdout) == (code, f"Error: {expected}\n", "")


def test_no_sandbox_running_is_one_line():
    url = f"http://127.0.0.1:{closed_port()}"
    result = CliRunner().invoke(cli, ["sandbox", "say", "oUser", "hi", "--sandbox-url", url])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: no sandbox is running at {url} (start one with `kf-plugin sandbox`, "
                             "or point --sandbox-url at it)\n")


def test_something_else_at_the_url_is_named():
    with SandboxServer(Flask("not_a_sandbox")) as other:
        result = CliRunner().invoke(cli, ["sandbox", "state", "--sandbox-url", other.url])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {other.url} is not a kf_plugin sandbox (HTTP 404 to GET /sandbox/state)\n"


def test_a_server_option_with_a_command_is_refused():
    result = CliRunner().invoke(cli, ["sandbox", "--port", "9000", "state"])
    assert result.exit_code == 2
    assert "Error: --port is an option of the sandbox server, not of `sandbox state`" in result.stderr


# -- the server's own options (each fails before serving) ---------------------------------------

@pytest.mark.parametrize("args, error", [
    (["--agent", "wang@gh_test:onlin"], ("Invalid value for '--agent': unknown agent state 'onlin': did you mean "
                                        "'online'? (states: online, busy, offline)")),
    (["--agent", "no_at_sign"], "--agent no_at_sign: 65404: illegal kf account"),
    (["--bot-url", "ftp://bot"],
     "the bot (--bot-url, --token, --aes-key): the bot's URL must be http(s)://host[:port]/path, got 'ftp://bot'"),
    (["--aes-key", "short"], ("the bot (--bot-url, --token, --aes-key): KF_ENCODING_AES_KEY must be the 43 letters "
                             "and digits shown in the WeChat console (got 5 characters)")),
    (["--wecom-account", "客服", "--servicer", "bad!"],
     ("微信客服 (--wecom-account, --servicer, --wecom-bot-url ...): userid must be 1-64 letters, digits or _@.- "
     "(got 'bad!')")),
    (["--wecom-account", "a name of over sixteen"],
     ("微信客服 (--wecom-account, --servicer, --wecom-bot-url ...): 40058: invalid parameter (name must be 1 to 16 "
     "characters)")),
])
def test_bad_seeds_are_refused_before_serving(args, error):
    result = CliRunner().invoke(cli, ["sandbox", "--port", str(closed_port()), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == f"Error: {error}"
    assert result.stdout == ""


def test_a_busy_port_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["sandbox", "--port", str(port), "--agent", "wang@gh_test"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert "agent wang@gh_test: online" in result.stdout


def test_the_defaults_are_the_example_apps_demo_credentials():
    demo, wecom = example_app.DEMO_SETTINGS, example_app.DEMO_WECOM_SETTINGS
    assert (DEMO_BOT["appid"], DEMO_BOT["token"], DEMO_BOT["aes_key"]) == (
        demo["KF_APPID"], demo["KF_TOKEN"], demo["KF_ENCODING_AES_KEY"])
    assert DEMO_BOT["url"] == "http://127.0.0.1:5000" + SETTINGS["KF_URL"].default
    assert (DEMO_WECOM["corpid"], DEMO_WECOM["secret"], DEMO_WECOM["token"], DEMO_WECOM["aes_key"]) == (
        wecom["KF_WECOM_CORPID"], wecom["KF_WECOM_SECRET"], wecom["KF_WECOM_TOKEN"], wecom["KF_WECOM_AES_KEY"])
    assert DEMO_WECOM["url"] == "http://127.0.0.1:5000" + SETTINGS["KF_WECOM_URL"].default
