"""微信客服 end to end: a kf_plugin bot on a real loopback port, the sandbox playing WeCom — its callbacks,
sync_msg, the service states — in memory and with Redis."""
from __future__ import annotations

import time
from typing import Any, Iterator, Tuple

import pytest

from kf_plugin import Keyword, MessageRouter
from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.testing.sandbox import Sandbox, SandboxServer

from ..conftest import AES_KEY

WECOM_TOKEN = "wecomToken123"
CUSTOMER = "wmCustomer0000000000000000001"
RULES = """\
version: 1
rules:
  - name: ask-for-human
    keywords: 转人工
  - name: welcome
    event: enter_session
    reply: "欢迎光临，输入“转人工”联系客服"
  - name: official-account-only
    keywords: 公众号
    channel: oa
"""


def eventually(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the bot did not get there in time"
        time.sleep(0.02)


@pytest.fixture(params=["memory", "redis"])
def wecom_bot(request, make_app, tmp_path) -> Iterator[Tuple[Any, Sandbox, str]]:
    sandbox = Sandbox()
    kfid = sandbox.wecom.add_account("客服")
    sandbox.wecom.add_servicer(kfid, "zhangsan")
    rules = tmp_path / "wecom.yaml"
    rules.write_text(RULES, encoding="utf-8")
    router = MessageRouter()
    router.add(Keyword("你好"), lambda message: "你好，我是机器人")
    state = {"KF_REDIS_URL": request.getfixturevalue("redis_url")} if request.param == "redis" else {}
    with sandbox.serve() as api:
        app = make_app(router=router, KF_RULES=str(rules), KF_TOKEN=None, KF_WECOM_CORPID=sandbox.wecom.corpid,
                       KF_WECOM_SECRET=sandbox.wecom.secret, KF_WECOM_TOKEN=WECOM_TOKEN,
                       KF_WECOM_AES_KEY=AES_KEY, KF_WECOM_API_BASE_URL=api.url, **state)
        plugin = app.extensions["kf_plugin"].plugin
        with SandboxServer(app) as served:
            sandbox.wecom.connect_bot(served.url + "/wecom/kf", WECOM_TOKEN, AES_KEY)
            yield app, sandbox, kfid
        plugin.shutdown()


def texts_sent(sandbox: Sandbox):
    return [message["text"]["content"] for message in sandbox.wecom.sent if message["msgtype"] == "text"]


def test_a_customer_from_welcome_to_a_servicer_and_back(wecom_bot):
    app, sandbox, kfid = wecom_bot
    plugin = app.extensions["kf_plugin"].plugin
    sandbox.wecom.customer_enters(kfid, CUSTOMER, scene="menu")
    eventually(lambda: texts_sent(sandbox) == ["欢迎光临，输入“转人工”联系客服"])   # with the welcome code
    sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")
    eventually(lambda: texts_sent(sandbox)[-1:] == ["你好，我是机器人"])
    sandbox.wecom.customer_says(kfid, CUSTOMER, "公众号")                    # a rule of the other channel
    sandbox.wecom.customer_says(kfid, CUSTOMER, "转人工")
    eventually(lambda: sandbox.wecom.service_state(kfid, CUSTOMER)[0] == 2)  # in the pool
    with app.app_context():
        assert plugin.conversation(CUSTOMER).stage is Stage.QUEUED
        sandbox.wecom.servicer_takes(kfid, CUSTOMER, "zhangsan")
        eventually(lambda: plugin.conversation(CUSTOMER).stage is Stage.WITH_AGENT)
        assert plugin.conversation(CUSTOMER).agent == "zhangsan"
        sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")                  # the servicer's now: the bot is quiet
        sandbox.wecom.servicer_ends(kfid, CUSTOMER)
        eventually(lambda: plugin.conversation(CUSTOMER).stage is Stage.BOT)
        [record] = plugin.handoffs(0)
    assert (record.reason, record.agent, record.outcome) == ("ask-for-human", "zhangsan", Ending.ACCEPTED)
    assert texts_sent(sandbox) == ["欢迎光临，输入“转人工”联系客服", "你好，我是机器人"]


def test_a_forged_callback_is_refused(wecom_bot):
    app, _, _ = wecom_bot
    answer = app.test_client().post("/wecom/kf?msg_signature=0&timestamp=1&nonce=2", data=b"<xml/>")
    assert answer.status_code in (400, 403)


def test_wecom_half_configured_is_refused_naming_what_is_missing(make_app):
    from kf_plugin.errors import ConfigError
    with pytest.raises(ConfigError, match="KF_WECOM_TOKEN, KF_WECOM_AES_KEY are not set"):
        make_app(KF_WECOM_CORPID="ww0123456789", KF_WECOM_SECRET="secret")
