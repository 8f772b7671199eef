"""微信客服 end to end: a kf_plugin bot on a real loopback port, the sandbox playing WeCom — its callbacks,
sync_msg, the service states, the event codes — in memory and with Redis."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from kf_plugin import Keyword, MessageRouter
from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.testing.sandbox import Sandbox, SandboxServer
from kf_plugin.wecom.events import SendFailed

from ..conftest import AES_KEY

WECOM_TOKEN = "wecomToken123"
CUSTOMER = "wmCustomer0000000000000000001"
RULES = """\
version: 1
wecom:
  welcome_text:
    default: "您好，有什么可以帮您？"
    vip: "尊敬的会员您好"
  queue_text: "正在为您接入人工客服，请稍候"
  taken_text: "客服已接入，请讲"
  end_text: "本次服务已结束，感谢您的咨询"
rules:
  - name: ask-for-human
    keywords: 转人工
  - name: welcome
    event: enter_session
    event_key: menu
    reply: "欢迎光临，输入“转人工”联系客服"
  - name: official-account-only
    keywords: 公众号
    channel: oa
  - name: stuck
    after_unanswered: 2
  - name: vip
    keywords: 会员
    servicer: zhangsan
"""


def eventually(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the bot did not get there in time"
        time.sleep(0.02)


@dataclass
class Bot:
    app: Any
    sandbox: Sandbox
    kfid: str
    rules: Path

    @property
    def plugin(self) -> Any:
        return self.app.extensions["kf_plugin"].plugin

    def state(self, customer: str = CUSTOMER) -> int:
        return self.sandbox.wecom.service_state(self.kfid, customer)[0]

    def record(self) -> Any:
        with self.app.app_context():
            [record] = self.plugin.handoffs(0)
        return record


@pytest.fixture(params=["memory", "redis"])
def wecom_bot(request, make_app, tmp_path) -> Iterator[Bot]:
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
            yield Bot(app, sandbox, kfid, rules)
        plugin.shutdown()


def texts_sent(sandbox: Sandbox, on_event: Any = "any") -> List[str]:
    """The texts the bot sent (``on_event``: only those sent with a code of that kind; None: with send_msg)."""
    return [message["text"]["content"] for message in sandbox.wecom.sent
            if message["msgtype"] == "text" and on_event in ("any", message["on_event"])]


def test_a_customer_from_welcome_to_a_servicer_and_back(wecom_bot):
    app, sandbox, kfid, plugin = wecom_bot.app, wecom_bot.sandbox, wecom_bot.kfid, wecom_bot.plugin
    sandbox.wecom.customer_enters(kfid, CUSTOMER, scene="menu")   # the rule's welcome wins over the file's
    eventually(lambda: texts_sent(sandbox, "welcome") == ["欢迎光临，输入“转人工”联系客服"])
    sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")
    eventually(lambda: texts_sent(sandbox)[-1:] == ["你好，我是机器人"])
    sandbox.wecom.customer_says(kfid, CUSTOMER, "公众号")                    # a rule of the other channel
    sandbox.wecom.customer_says(kfid, CUSTOMER, "转人工")
    eventually(lambda: texts_sent(sandbox, "pool") == ["正在为您接入人工客服，请稍候"])   # with trans's code
    assert wecom_bot.state() == 2                                           # in the pool
    with app.app_context():
        assert plugin.conversation(CUSTOMER).stage is Stage.QUEUED
        sandbox.wecom.servicer_takes(kfid, CUSTOMER, "zhangsan")
        eventually(lambda: plugin.conversation(CUSTOMER).stage is Stage.WITH_AGENT)
        assert plugin.conversation(CUSTOMER).agent == "zhangsan"
        eventually(lambda: texts_sent(sandbox, "taken") == ["客服已接入，请讲"])
        sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")                  # the servicer's now: the bot is quiet
        sandbox.wecom.servicer_ends(kfid, CUSTOMER)
        eventually(lambda: plugin.conversation(CUSTOMER).stage is Stage.BOT)
        eventually(lambda: texts_sent(sandbox, "end") == ["本次服务已结束，感谢您的咨询"])
    record = wecom_bot.record()
    assert (record.reason, record.agent, record.outcome) == ("ask-for-human", "zhangsan", Ending.ACCEPTED)
    assert texts_sent(sandbox, None) == ["你好，我是机器人"]                  # one send_msg: the rest on codes


@pytest.mark.parametrize("scene, welcome", [("vip", "尊敬的会员您好"), ("qr", "您好，有什么可以帮您？"),
                                            (None, "您好，有什么可以帮您？")], ids=["vip", "other-scene", "no-scene"])
def test_the_files_welcome_by_scene_when_no_rule_answers(wecom_bot, scene, welcome):
    sandbox = wecom_bot.sandbox
    sandbox.wecom.customer_enters(wecom_bot.kfid, CUSTOMER, scene=scene)
    eventually(lambda: texts_sent(sandbox, "welcome") == [welcome])


def test_a_failed_delivery_reaches_the_hook(wecom_bot):
    sandbox, heard = wecom_bot.sandbox, []
    wecom_bot.plugin.on_wecom_event("msg_send_fail")(heard.append)
    sandbox.wecom.customer_says(wecom_bot.kfid, CUSTOMER, "你好")
    eventually(lambda: texts_sent(sandbox) == ["你好，我是机器人"])
    msgid = sandbox.wecom.sent[-1]["msgid"]
    sandbox.wecom.fail_delivery(msgid, fail_type=4)
    eventually(lambda: len(heard) == 1)
    [failed] = heard
    assert isinstance(failed, SendFailed)
    assert (failed.external_userid, failed.open_kfid, failed.fail_msgid, failed.fail_type) == (
        CUSTOMER, wecom_bot.kfid, msgid, 4)
    assert failed.reason == "beyond 48 hours of the customer's last message"


def test_after_unanswered_hands_a_customer_to_the_pool(wecom_bot):
    sandbox = wecom_bot.sandbox
    sandbox.wecom.customer_says(wecom_bot.kfid, CUSTOMER, "嗯")
    sandbox.wecom.customer_says(wecom_bot.kfid, CUSTOMER, "啊？")            # the second unanswered in a row
    eventually(lambda: wecom_bot.state() == 2)
    eventually(lambda: texts_sent(sandbox, "pool") == ["正在为您接入人工客服，请稍候"])
    assert wecom_bot.record().reason == "stuck"


def test_escalate_when_hands_a_customer_to_the_pool(wecom_bot):
    asked = []

    @wecom_bot.plugin.escalate_when
    def complaint(message):
        asked.append(message.content)
        return "投诉" in (message.content or "")

    sandbox = wecom_bot.sandbox
    sandbox.wecom.customer_enters(wecom_bot.kfid, CUSTOMER, scene="menu")   # an event: no predicate is asked
    sandbox.wecom.customer_says(wecom_bot.kfid, CUSTOMER, "你好")
    sandbox.wecom.customer_says(wecom_bot.kfid, CUSTOMER, "我要投诉")
    eventually(lambda: wecom_bot.state() == 2)
    assert asked == ["你好", "我要投诉"]
    assert wecom_bot.record().reason == "escalate_when:complaint"
    eventually(lambda: texts_sent(sandbox, "pool") == ["正在为您接入人工客服，请稍候"])


def test_reloading_the_rules_changes_the_texts(wecom_bot):
    sandbox, kfid = wecom_bot.sandbox, wecom_bot.kfid
    sandbox.wecom.customer_says(kfid, CUSTOMER, "转人工")
    eventually(lambda: wecom_bot.state() == 2)
    sandbox.wecom.servicer_takes(kfid, CUSTOMER, "zhangsan")
    eventually(lambda: texts_sent(sandbox, "taken") == ["客服已接入，请讲"])
    wecom_bot.rules.write_text(RULES.replace("本次服务已结束，感谢您的咨询", "欢迎下次光临"), encoding="utf-8")
    wecom_bot.plugin.reload_rules()
    sandbox.wecom.servicer_ends(kfid, CUSTOMER)
    eventually(lambda: texts_sent(sandbox, "end") == ["欢迎下次光临"])


def test_a_rule_naming_a_servicer_hands_the_customer_to_them(wecom_bot):
    sandbox, kfid, plugin = wecom_bot.sandbox, wecom_bot.kfid, wecom_bot.plugin
    sandbox.wecom.customer_says(kfid, CUSTOMER, "我是会员")
    eventually(lambda: wecom_bot.state() == 3)
    assert sandbox.wecom.service_state(kfid, CUSTOMER) == (3, "zhangsan")
    eventually(lambda: texts_sent(sandbox, "taken") == ["客服已接入，请讲"])
    with wecom_bot.app.app_context():
        eventually(lambda: plugin.conversation(CUSTOMER).stage is Stage.WITH_AGENT)
        assert plugin.conversation(CUSTOMER).agent == "zhangsan"
    assert (wecom_bot.record().reason, wecom_bot.record().agent) == ("vip", "zhangsan")


def test_a_servicer_who_cannot_take_the_customer_leaves_them_with_the_fallback_text(wecom_bot):
    sandbox, kfid = wecom_bot.sandbox, wecom_bot.kfid
    sandbox.wecom.set_receiving("zhangsan", False)                          # 95014: no pool without fallback_to_pool
    sandbox.wecom.customer_says(kfid, CUSTOMER, "我是会员")
    eventually(lambda: texts_sent(sandbox, None) == ["客服暂时不在线，请稍后再试。"])
    assert wecom_bot.state() in (0, 1)
    assert wecom_bot.record().outcome is Ending.REFUSED


def test_a_forged_callback_is_refused(wecom_bot):
    answer = wecom_bot.app.test_client().post("/wecom/kf?msg_signature=0&timestamp=1&nonce=2", data=b"<xml/>")
    assert answer.status_code in (400, 403)


def test_wecom_half_configured_is_refused_naming_what_is_missing(make_app):
    from kf_plugin.errors import ConfigError
    with pytest.raises(ConfigError, match="KF_WECOM_TOKEN, KF_WECOM_AES_KEY are not set"):
        make_app(KF_WECOM_CORPID="ww0123456789", KF_WECOM_SECRET="secret")
