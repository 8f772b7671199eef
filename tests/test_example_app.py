"""The example bot: its handlers and rules, its configuration, the server and the demo."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from example_app import DEMO_SETTINGS, GREETING, HELP, WELCOME, create_app
from example_app.demo import run as run_demo
from kf_plugin.testing import PushSigner, WeChatTestClient

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bot(monkeypatch):
    for name in ("KF_TOKEN", "KF_APPID", "KF_ENCODING_AES_KEY", "KF_RULES"):
        monkeypatch.delenv(name, raising=False)
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


def test_demo_runs_end_to_end():
    lines = []
    assert run_demo(echo=lines.append) == 0
    output = "\n".join(lines)
    assert "FAILED" not in output
    assert output.count("ok:") == 10
    assert "agent vip1@gh_example" in output and "the greeting handler ran 1 time(s)" in output
    assert "a session with xiaowang@gh_example is open" in output
    assert "refused by the window tracker with 45047, and WeChat was never called" in output
    assert "2 record(s) written" in output


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
    finally:
        server.terminate()
        server.wait(timeout=10)
