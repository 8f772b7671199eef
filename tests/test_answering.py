"""How a push is answered around the bot's own handlers, through real pushes: ``@kf.escalate_when`` before
them, the ``after_unanswered`` triggers after them, and the context text a session hand-off shows the agent."""
import logging
import threading
import time

import pytest

from kf_plugin import ALL, Keyword, KfError, MessageRouter
from kf_plugin.lifecycle import Stage
from kf_plugin.testing import message_xml

from .lifecycle_apps import (
    OPENID,
    WANG,
    EchoBot,
    rules,
)

TRANSFER = "transfer_customer_service"


# -- @kf.escalate_when ----------------------------------------------------------------------------------------

def test_a_predicate_that_holds_hands_off_before_the_handlers(make_worker, state):
    bot = EchoBot()
    worker = make_worker(router=bot.router, **state)

    @worker.plugin.escalate_when
    def sounds_angry(message):
        return "生气" in message.content

    assert worker.says("你好").content == "机器人：你好"
    answer = worker.says("我很生气")
    assert answer.message_type == TRANSFER and answer.kf_account is None
    conv = worker.conversation()
    assert (conv.stage, conv.reason) == (Stage.QUEUED, "escalate_when:sounds_angry")
    assert [r.reason for r in worker.handoffs()] == ["escalate_when:sounds_angry"]
    assert bot.heard == ["你好"]


def test_a_predicate_slower_than_the_budget_leaves_the_answer_to_the_handlers(make_worker, state, caplog):
    bot = EchoBot()
    worker = make_worker(router=bot.router, KF_ESCALATE_BUDGET=0.2, **state)
    release = threading.Event()
    worker.plugin.escalate_when(lambda message: release.wait(5))
    started = time.monotonic()
    assert worker.says("你好").content == "机器人：你好"
    assert time.monotonic() - started < 2
    release.set()
    assert worker.conversation().stage is Stage.BOT and worker.handoffs() == []
    assert any("took more than 0.2 s" in r.getMessage() for r in caplog.records)


def test_a_predicate_that_raises_is_logged_and_the_handlers_answer(make_worker, state, caplog):
    bot = EchoBot()
    worker = make_worker(router=bot.router, **state)

    @worker.plugin.escalate_when
    def classifier(message):
        raise RuntimeError("the model is down")

    with caplog.at_level(logging.ERROR, logger="kf_plugin.answering"):
        assert worker.says("你好").content == "机器人：你好"
    [logged] = [r for r in caplog.records if "escalate_when" in r.getMessage()]
    assert "classifier" in logged.getMessage() and logged.exc_info[0] is RuntimeError
    assert worker.conversation().stage is Stage.BOT


def test_a_predicate_with_a_rule_hands_off_with_that_rules_action(make_worker, state):
    worker = make_worker(router=EchoBot().router, **state)
    worker.plugin.escalate_when(rule="vip")(lambda message: "急" in message.content)
    answer = worker.says("很急")
    assert (answer.message_type, answer.kf_account) == (TRANSFER, WANG)
    assert worker.conversation().reason == "vip"


def test_a_predicate_naming_no_rule_in_force_is_refused(make_worker):
    worker = make_worker()
    with pytest.raises(KfError, match="no rule named 'nope' is in force"):
        worker.plugin.escalate_when(rule="nope")(lambda message: True)


def test_predicates_are_not_asked_when_a_rule_answers_or_the_user_waits(make_worker, state):
    asked = []
    worker = make_worker(router=EchoBot().router, **state)
    worker.plugin.escalate_when(lambda message: asked.append(message.content))
    worker.says("营业时间")
    worker.says("转人工")
    worker.says("在吗")
    assert asked == []


# -- after_unanswered -----------------------------------------------------------------------------------------

STUCK = """\
  - name: stuck
    after_unanswered: 3
"""
HINT = """\
  - name: hint
    after_unanswered: 2
    reply: "输入“人工”联系客服"
"""


def greeter() -> MessageRouter:
    """A bot that understands only a greeting."""
    router = MessageRouter("bot")
    router.add(Keyword("你好"), lambda message: "你好！")
    return router


def test_the_nth_unanswered_text_in_a_row_hands_off(make_worker, state):
    worker = make_worker(rules(more=STUCK), router=greeter(), **state)
    assert worker.says("a").body == "success"
    assert worker.says("b").body == "success"
    assert worker.says("c").message_type == TRANSFER
    conv = worker.conversation()
    assert (conv.stage, conv.reason) == (Stage.QUEUED, "stuck")
    assert [r.reason for r in worker.handoffs()] == ["stuck"]


def test_an_answer_starts_the_count_again(make_worker, state):
    worker = make_worker(rules(more=STUCK), router=greeter(), **state)
    assert [worker.says(text).body for text in ("a", "b")] == ["success"] * 2
    assert worker.says("你好").content == "你好！"
    assert [worker.says(text).body for text in ("c", "d")] == ["success"] * 2
    assert worker.says("e").message_type == TRANSFER


def test_a_rule_that_answers_starts_the_count_again(make_worker, state):
    """docs/rules.md: the messages in a row that nothing answered — no rule took them."""
    worker = make_worker(rules(more=STUCK), router=greeter(), **state)
    assert [worker.says(text).body for text in ("a", "b")] == ["success"] * 2
    assert worker.says("营业时间").content == "工作日 9:00–18:00"
    assert [worker.says(text).body for text in ("c", "d")] == ["success"] * 2
    assert worker.says("e").message_type == TRANSFER


def test_a_catch_all_handler_is_the_fallback_not_an_answer(make_worker, state):
    router = greeter()
    router.add(ALL, lambda message: "没听懂")
    worker = make_worker(rules(more=STUCK), router=router, **state)
    assert [worker.says(text).content for text in ("a", "b")] == ["没听懂"] * 2
    assert worker.says("你好").content == "你好！"
    assert [worker.says(text).content for text in ("c", "d")] == ["没听懂"] * 2
    assert worker.says("e").message_type == TRANSFER


def test_a_hint_at_two_and_a_human_at_three(make_worker, state):
    worker = make_worker(rules(more=HINT + STUCK), router=greeter(), **state)
    assert worker.says("a").body == "success"
    assert worker.says("b").content == "输入“人工”联系客服"
    assert worker.says("c").message_type == TRANSFER
    assert worker.conversation().reason == "stuck"


def test_triggers_without_handlers_of_the_bot(make_worker, state):
    """A bot that has no handlers of its own: every text no rule takes is unanswered."""
    worker = make_worker(rules(more=HINT), **state)
    assert worker.says("a").body == "success"
    assert worker.says("b").content == "输入“人工”联系客服"


def test_events_neither_count_nor_start_the_count_again(make_worker, state):
    worker = make_worker(rules(more=STUCK), router=greeter(), **state)
    worker.says("a")
    assert worker.clicks("OTHER").body == "success"
    worker.says("b")
    assert worker.says("c").message_type == TRANSFER


def test_a_handoff_by_a_trigger_starts_the_count_again(make_worker, state):
    """Back with the bot after the hand-off, the user gets the triggers as anyone does."""
    worker = make_worker(rules(more=HINT + STUCK), router=greeter(), **state)
    for text in ("a", "b", "c"):
        worker.says(text)
    assert worker.says("取消").content == "已为您取消转接"
    assert worker.says("d").body == "success"
    assert worker.says("e").content == "输入“人工”联系客服"


def test_two_workers_count_one_users_messages_together(make_worker, redis_url):
    one = make_worker(rules(more=STUCK), router=greeter(), KF_REDIS_URL=redis_url)
    two = make_worker(rules(more=STUCK), router=greeter(), KF_REDIS_URL=redis_url)
    assert one.says("a").body == "success"
    assert two.says("b").body == "success"
    assert one.says("c").message_type == TRANSFER
    assert two.conversation().reason == "stuck"


# -- context ---------------------------------------------------------------------------------------------------

CONTEXT = 'context: "{rule}：{message}\\n最近：{recent}"'
SESSION_BY_WORD = """\
  - name: human-session
    keywords: 真人
    handoff: session
"""


def created(api):
    """The bodies of the bot's kfsession/create calls."""
    return [call.body for call in api.sandbox.calls_to("/customservice/kfsession/create")]


def test_a_session_handoff_shows_the_agent_the_context(api, make_worker, state):
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    worker = make_worker(rules(context=CONTEXT), **state)
    worker.plugin.agents.refresh()
    for text in ("我的订单", "一直没发货"):
        worker.says(text)
    assert worker.clicks("TALK").content == "正在为您接入客服"
    assert created(api) == [{"kf_account": WANG, "openid": OPENID,
                             "text": "menu-session：[click]\n最近：我的订单 / 一直没发货"}]
    assert worker.conversation().reason == "menu-session"


def test_the_context_keeps_the_last_five_messages_with_the_one_that_handed_off(api, make_worker, state):
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    worker = make_worker(rules(context=CONTEXT, more=SESSION_BY_WORD), **state)
    worker.plugin.agents.refresh()
    for text in ("1", "2", "营业时间", "4", "5"):   # a rule's answer is remembered too
        worker.says(text)
    assert worker.says("找真人").content == "正在为您接入客服"
    assert created(api)[-1]["text"] == "human-session：找真人\n最近：2 / 营业时间 / 4 / 5 / 找真人"


def test_two_workers_remember_one_users_messages_together(api, make_worker, redis_url):
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    one = make_worker(rules(context=CONTEXT, more=SESSION_BY_WORD), KF_REDIS_URL=redis_url)
    two = make_worker(rules(context=CONTEXT, more=SESSION_BY_WORD), KF_REDIS_URL=redis_url)
    two.plugin.agents.refresh()
    one.says("在吗")
    two.says("找真人")
    assert created(api)[-1]["text"] == "human-session：找真人\n最近：在吗 / 找真人"


def test_a_trigger_that_opens_a_session_names_itself_in_the_context(api, make_worker, state):
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    trigger = "  - name: stuck\n    after_unanswered: 2\n    handoff: session\n"
    worker = make_worker(rules(context='context: "{rule}：{message}（{openid}）"', more=trigger), **state)
    worker.plugin.agents.refresh()
    worker.says("a")
    assert worker.says("b").content == "正在为您接入客服"
    assert created(api) == [{"kf_account": WANG, "openid": OPENID, "text": f"stuck：b（{OPENID}）"}]
    assert worker.conversation().reason == "stuck"


def test_without_context_the_session_is_opened_without_text(api, make_worker, state):
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    worker = make_worker(**state)
    worker.plugin.agents.refresh()
    worker.says("你好")
    worker.clicks("TALK")
    assert created(api) == [{"kf_account": WANG, "openid": OPENID}]
    assert worker.app.extensions["kf_plugin"].services.shared.handoffs.recent(OPENID) == []


def test_escalate_when_is_not_asked_about_events(make_worker):
    asked = []
    worker = make_worker(router=EchoBot().router)
    worker.plugin.escalate_when(lambda message: asked.append(message) or True)
    worker.push(message_xml(event="CLICK", key="NOTHING_HERE", sender=OPENID))
    assert asked == [] and worker.conversation().stage is Stage.BOT
