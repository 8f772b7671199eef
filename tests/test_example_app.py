"""The example bot: its handlers and rules, its configuration, the server and the demo."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

import example_app
from example_app import (
    DEMO_OPERATOR_SETTINGS, DEMO_SETTINGS, DEMO_WECOM_SETTINGS, GREETING, HELP, SURVEY, THANKS, WELCOME, create_app,
)
from example_app.demo import run as run_demo
from kf_plugin import WeChatAPIError
from kf_plugin.config import WECOM_KEYS
from kf_plugin.errors import ConfigError
from kf_plugin.lifecycle import Change, Conversation, Stage, Transition
from kf_plugin.testing import PushSigner, WeChatTestClient
from kf_plugin.testing.sandbox import Sandbox
from kf_plugin.wecom.channel import SESSION_CHANGES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_kf_environment(monkeypatch):
    for name in ("KF_TOKEN", "KF_APPID", "KF_ENCODING_AES_KEY", "KF_RULES", *WECOM_KEYS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def bot(no_kf_environment):
    app = create_app()
    return app, WeChatTestClient(app)


@pytest.mark.parametrize("said, kind, expected", [
    ("你好", "text", GREETING),
    ("HELLO", "text", GREETING),
    ("帮助", "text", HELP),
    ("转人工", "transfer_customer_service", None),
    ("我要投诉", "transfer_customer_service", None),
    ("营业时间", "text", "客服工作时间：工作日 9:00–18:00。"),
    ("随便说说", "text", "收到。回复“帮助”查看我能做什么。"),
    ("不满意", "text", THANKS),
])
def test_messages(bot, said, kind, expected):
    answer = bot[1].send_text(said)
    assert answer.message_type == kind
    if expected is not None:
        assert answer.content == expected


@pytest.mark.parametrize("event, key, kind, agent", [
    ("CLICK", "CONTACT_VIP", "transfer_customer_service", "vip1@gh_example"),
    ("subscribe", "qrscene_after_sales", "transfer_customer_service", None),
    ("subscribe", None, "text", None),
    ("CLICK", "OTHER", None, None),
])
def test_events(bot, event, key, kind, agent):
    answer = bot[1].send_event(event, key)
    assert answer.message_type == kind and answer.kf_account == agent
    if event == "subscribe" and key is None:
        assert answer.content == WELCOME
    if kind is None:
        assert answer.body == "success"


def test_demo_defaults_are_safe_mode(bot):
    app, client = bot
    assert app.config["KF_DEMO"] is True
    assert app.config["KF_ENCODING_AES_KEY"] == DEMO_SETTINGS["KF_ENCODING_AES_KEY"]
    assert "<Encrypt>" in client.send_text("你好").body


def test_demo_defaults_serve_a_demo_corp_on_wecom_too(bot):
    app, _ = bot
    assert {key: app.config[key] for key in DEMO_WECOM_SETTINGS} == DEMO_WECOM_SETTINGS
    assert app.extensions["kf_plugin"].wecom is not None
    assert "微信客服 at /wecom/kf" in app.test_client().get("/").text


def test_wecom_keys_in_the_environment_are_never_mixed_with_the_demo_corp(no_kf_environment):
    no_kf_environment.setenv("KF_WECOM_CORPID", "ww0123456789")
    no_kf_environment.setenv("KF_WECOM_SECRET", "own-secret")
    with pytest.raises(ConfigError, match="KF_WECOM_TOKEN, KF_WECOM_AES_KEY are not set"):
        create_app()
    no_kf_environment.setenv("KF_WECOM_TOKEN", "own-token")
    no_kf_environment.setenv("KF_WECOM_AES_KEY", DEMO_SETTINGS["KF_ENCODING_AES_KEY"])
    app = create_app()
    assert (app.config["KF_WECOM_CORPID"], app.config["KF_WECOM_TOKEN"]) == ("ww0123456789", "own-token")


def test_an_app_configured_in_the_environment_gets_no_demo_corp(no_kf_environment):
    no_kf_environment.setenv("KF_TOKEN", "env-token")
    app = create_app()
    assert "KF_DEMO" not in app.config and app.extensions["kf_plugin"].wecom is None
    assert "微信客服" not in app.test_client().get("/").text


def test_environment_configures_the_app(monkeypatch, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text('version: 1\nrules:\n  - name: only\n    keywords: ["x"]\n    reply: "from env rules"\n',
                     encoding="utf-8")
    monkeypatch.setenv("KF_TOKEN", "env-token")
    monkeypatch.setenv("KF_RULES", str(rules))
    monkeypatch.setenv("KF_MAX_CLOCK_SKEW", "60")
    monkeypatch.delenv("KF_ENCODING_AES_KEY", raising=False)
    app = create_app()
    assert "KF_DEMO" not in app.config and app.config["KF_MAX_CLOCK_SKEW"] == 60
    answer = WeChatTestClient(app).send_text("x")
    assert answer.content == "from env rules" and "<Encrypt>" not in answer.body


def test_without_the_api_there_is_no_queue_copy_nor_survey(bot):
    app, client = bot
    assert app.extensions["kf_plugin"].services.queue is None
    assert app.extensions["kf_plugin"].services.conversations.place is None
    client.send_text("转人工")
    assert client.send_text("还要多久").content == "正在为您转接人工客服，请耐心等待"   # queue.notice_fallback


class FakeAdmin:
    """``send_msgmenu`` records its calls (or raises ``fails``)."""

    def __init__(self, fails=None):
        self.fails, self.menus = fails, []

    def send_msgmenu(self, openid, head, choices):
        if self.fails is not None:
            raise self.fails
        self.menus.append((openid, head, tuple(choices)))


def _closed(openid):
    before = Conversation(openid, Stage.WITH_AGENT, 10.0, agent="wang@gh")
    return Transition(Change("close", at=20.0, agent="wang@gh"), before, Conversation(openid, Stage.BOT, 20.0), None)


@pytest.mark.parametrize("fails", [None, WeChatAPIError(45015, "response out of time limit")])
def test_survey(fails, caplog):
    admin = FakeAdmin(fails=fails)
    example_app.survey(SimpleNamespace(admin=admin), _closed("oUser"))
    assert admin.menus == ([] if fails else [("oUser", SURVEY, example_app.SURVEY_CHOICES)])
    assert ("could not send the survey to oUser" in caplog.text) == (fails is not None)


def test_no_survey_for_a_wecom_customer(caplog):
    admin = FakeAdmin()
    example_app.survey(SimpleNamespace(admin=admin), _closed("wmCustomer0000000000000001"))
    assert admin.menus == [] and "survey" not in caplog.text


def test_demo_runs_end_to_end(caplog):
    lines = []
    assert run_demo(echo=lines.append) == 0
    output = "\n".join(lines)
    assert "FAILED" not in output
    assert output.count("ok:") == 40
    for shown in (
        "ok: the bot greets back",
        "WeChat's wait queue: oDemoUser000000011, oDemoUser000000012, oDemoUser000000001",
        "kf.conversation(oDemoUser000000001): queued, reason ask-for-human",
        "bot ← text: 您前面还有 2 位，请稍候",
        "ok: the bot's own handlers did not run",
        "bot ← text: 已为您取消转接，有问题随时找我",
        "WeChat → bot: kf_create_session, KfAccount xiaowang@gh_example",
        "kf.conversation(oDemoUser000000001): with_agent, agent xiaowang@gh_example",
        "bot ← (not pushed to the bot)",
        "chat record 2003: oDemoUser000000001 → xiaowang@gh_example: 我的订单号是 20240101，还没发货",
        "WeChat → bot: kf_close_session, KfAccount xiaowang@gh_example",
        "WeChat delivered to oDemoUser000000001: 本次人工服务您满意吗？请点选： [满意 / 不满意]",
        "ok: the bot noticed the lapse from the message itself and answered it",
        "oDemoUser000000001: ask-for-human, waited 90 s, accepted",
        "oDemoUser000000011: ask-for-human, never accepted, cancelled",
        "summary: 3 hand-offs, 1 accepted, 1 cancelled, 1 lapsed, 0 open; acceptance rate 67%",
        "the greeting handler ran 1 time(s)",
        "refused by the window tracker with 45047, and WeChat was never called",
        "2 record(s) written",
        # 微信客服
        "rule kf-welcome: Event('enter_session') & Channel('wecom')",
        "联系客服。 (send_msg_on_event with the welcome code)",
        "bot ← text: 你好！我是示例机器人。回复“帮助”查看我能做什么，回复“转人工”联系客服。 (kf/send_msg)",
        "WeCom's service_state: 0 (new session) → 2 (in the pool)",
        "kf.conversation(wmDemoCustomer0000000000000001): queued, reason ask-for-human",
        "sync_msg has session_status_change, change_type 1 (from the pool), new_servicer_userid xiaoli",
        "WeCom's service_state: 2 (in the pool) → 3 (with servicer xiaoli)",
        "kf.conversation(wmDemoCustomer0000000000000001): with_agent, agent xiaoli",
        "wmDemoCustomer0000000000000001 → 我想改一下收货地址\n                              bot ← (nothing sent)",
        "WeCom would answer 95018 on /cgi-bin/kf/send_msg",
        "WeCom's service_state: 3 (with servicer xiaoli) → 4 (ended)",
        "kf.handoffs: wmDemoCustomer0000000000000001: ask-for-human, waited 40 s, accepted by xiaoli",
        # the operator's view
        "/status: 200 with the credential, 401 without",
        '/metrics: kf_handoffs_requested_total{rule="ask-for-human"} ',
        "serves them at http://127.0.0.1:5000/status (user 'demo', password 'kf-demo-status') and "
        "http://127.0.0.1:5000/metrics",
    ):
        assert shown in output
    steps = [line.split(".")[0] for line in lines if line[:1].isdigit()]
    assert steps == [str(n) for n in range(1, 21)]
    assert "could not send the survey" not in caplog.text   # a 微信客服 customer gets none


def test_demo_fails_when_a_step_misbehaves(monkeypatch):
    # The bot no longer knows where users stand in the queue: its notices fall back to the text without a place.
    monkeypatch.setattr("kf_plugin.reconcile.QueueWatch.place", lambda self, openid: (None, None))
    lines = []
    assert run_demo(echo=lines.append) == 1
    failed = [line for line in lines if "FAILED" in line]
    assert failed == ['   FAILED: "您前面还有 2 位，请稍候" (queue.notice of rules.yaml, from WeChat\'s queue)',
                      "demo FAILED: 1 check(s) misbehaved"]


def test_demo_fails_when_a_wecom_step_misbehaves(monkeypatch):
    # The bot no longer hears that a servicer ended a session: it leaves the customer to the servicer.
    monkeypatch.delitem(SESSION_CHANGES, "3")
    lines = []
    assert run_demo(echo=lines.append) == 1
    failed = [line.strip() for line in lines if "FAILED" in line]
    assert failed == ["FAILED: the bot has the customer back",
                      "FAILED: their next message starts a new session: the bot answers again",
                      "FAILED: the hand-off's record: by ask-for-human, waited 40 s, accepted by xiaoli",
                      "demo FAILED: 3 check(s) misbehaved"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_python_m_example_app_serves_the_webhook():
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_", "FLASK_"))}
    server = subprocess.Popen([sys.executable, "-m", "example_app", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/wechat"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "the example app did not start within 20 s"
                time.sleep(0.1)
        signer = PushSigner(DEMO_SETTINGS["KF_TOKEN"], DEMO_SETTINGS["KF_ENCODING_AES_KEY"], DEMO_SETTINGS["KF_APPID"])
        assert requests.get(url, params=signer.verification("hello-echo"), timeout=5).text == "hello-echo"
        query, body = signer.sign("<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName><![CDATA[o]]>"
                                  "</FromUserName><CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                                  "<Content><![CDATA[转人工]]></Content><MsgId>1</MsgId></xml>" % time.time())
        reply = signer.open_reply(requests.post(url, params=query, data=body, timeout=5).text)
        assert "transfer_customer_service" in reply
        wecom = Sandbox(corpid=DEMO_WECOM_SETTINGS["KF_WECOM_CORPID"]).wecom   # WeCom checking the callback URL
        wecom.connect_bot(f"http://127.0.0.1:{port}/wecom/kf", DEMO_WECOM_SETTINGS["KF_WECOM_TOKEN"],
                          DEMO_WECOM_SETTINGS["KF_WECOM_AES_KEY"])
        assert wecom.verify_bot()
        status = f"http://127.0.0.1:{port}{DEMO_OPERATOR_SETTINGS['KF_STATUS_URL']}"
        credential = (DEMO_OPERATOR_SETTINGS["KF_STATUS_USER"], DEMO_OPERATOR_SETTINGS["KF_STATUS_PASSWORD"])
        assert requests.get(status, timeout=5).status_code == 401
        assert "ask-for-human" in requests.get(status, auth=credential, timeout=5).text
        assert "kf_pushes_total" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.terminate()
        server.wait(timeout=10)
    printed = server.stderr.read().decode()
    assert f"status page: http://127.0.0.1:{port}/status (user 'demo', password 'kf-demo-status')" in printed
    assert f"metrics: http://127.0.0.1:{port}/metrics" in printed
