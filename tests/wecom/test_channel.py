"""What the bot does with each message the puller fetched: its answer sent through the API, its hand-off
made with service_state/trans, the lifecycle moved by session_status_change, and nothing sent while a
servicer has the customer or they wait for one."""
from __future__ import annotations

import time
from typing import Any, List, Optional, Tuple

import pytest
from wechatpy.replies import TextReply

from kf_plugin.conversations import Conversations
from kf_plugin.hooks import HandoffHooks
from kf_plugin.lifecycle import Change, Ending, Stage
from kf_plugin.replies import ServicerTransfer, TransferReply
from kf_plugin.rules import RuleSet
from kf_plugin.state.handoffs import MemoryHandoffStore
from kf_plugin.wecom.api import State
from kf_plugin.wecom.channel import WeComAnswers
from kf_plugin.wecom.errors import wecom_error
from kf_plugin.wecom.events import Recalled, SendFailed, ServicerStatusChanged
from kf_plugin.wecom.messages import CUSTOMER, SERVICER, SYSTEM
from kf_plugin.wecom.texts import WeComTexts

KFID, USER = "wkKF0000000000000000000000000001", "wmCUSTOMER00000000000000000001"


class FakeApi:
    """Records the calls the bot makes; ``fails`` maps a call to the errcodes it answers, in turn."""

    def __init__(self, **fails: List[int]):
        self.calls: List[Tuple[Any, ...]] = []
        self.fails = fails

    def _call(self, name: str, *args: Any) -> str:
        self.calls.append((name, *args))
        if self.fails.get(name):
            raise wecom_error(self.fails[name].pop(0), "refused", f"/cgi-bin/kf/{name}")
        return "msgid"

    def send_text(self, kfid, user, content):
        return self._call("send_text", kfid, user, content)

    def send_on_event(self, code, msgtype, body):
        return self._call("send_on_event", code, msgtype, body)

    def trans(self, kfid, user, state, servicer=None):
        self._call("trans", kfid, user, int(state), servicer)
        return f"code-{int(state)}"   # the first move of a session into the pool or to a servicer gives a code


def item(kind: str, body: dict, origin: int = CUSTOMER) -> dict:
    return {"msgid": "m1", "open_kfid": KFID, "external_userid": USER, "send_time": 1764300000, "origin": origin,
            "msgtype": kind, kind: body}


def event(event_type: str, **fields: Any) -> dict:
    raw = item("event", {"event_type": event_type, "open_kfid": KFID, "external_userid": USER, **fields}, SYSTEM)
    return {**raw, "send_time": int(NOW) + 2}


def answers(reply: Any = None, texts: Optional[WeComTexts] = None, events: Any = None,
            **fails: List[int]) -> Tuple[WeComAnswers, FakeApi, Conversations]:
    api = FakeApi(**fails)
    conversations = Conversations(MemoryHandoffStore(), HandoffHooks())

    def route(message, conversation):
        return reply(message) if callable(reply) else reply
    channel = WeComAnswers(api, route, conversations, events=events)
    channel.use_rules(RuleSet(wecom=texts or WeComTexts()))
    return channel, api, conversations


NOW = time.time()


def queue(conversations: Conversations, reason: str = "ask-for-human") -> None:
    """The customer as the rule that handed them off left them: queued."""
    conversations.apply(USER, Change("request", at=NOW, reason=reason, handoff_id="h1"))


@pytest.mark.parametrize("raw, calls", [
    (item("text", {"content": "你好"}), [("send_text", KFID, USER, "收到")]),
    (event("enter_session", scene="menu", welcome_code="W1"), [("send_on_event", "W1", "text", {"content": "收到"})]),
    (item("text", {"content": "您好"}, SERVICER), []),                       # a servicer's own words
    (event("msg_send_fail", fail_msgid="x", fail_type=4), []),              # a system event is no question
], ids=["text", "welcome", "servicer", "send-failed"])
def test_a_text_answer_is_sent_through_the_api(raw, calls):
    channel, api, _ = answers(lambda message: TextReply(content="收到", message=message),
                              WeComTexts(welcome_text="文件的欢迎语"))   # a rule's answer wins over the file's
    channel.handle(raw)
    assert api.calls == calls


@pytest.mark.parametrize("servicer, fails, calls", [
    (None, {}, [("trans", KFID, USER, State.POOL, None)]),
    ("zhangsan", {}, [("trans", KFID, USER, State.HUMAN, "zhangsan")]),
    ("zhangsan", {"trans": [95014]}, [("trans", KFID, USER, State.HUMAN, "zhangsan"),
                                      ("trans", KFID, USER, State.POOL, None)]),
], ids=["pool", "servicer", "servicer-not-receiving"])
def test_a_transfer_is_a_service_state_trans(servicer, fails, calls):
    channel, api, _ = answers(lambda message: TransferReply(kf_account=servicer, message=message), **fails)
    channel.handle(item("text", {"content": "转人工"}))
    assert api.calls == calls


def test_a_transfer_wecom_refuses_takes_the_customer_back_to_the_bot(caplog):
    channel, api, conversations = answers(lambda message: TransferReply(message=message), trans=[95016])
    routed = item("text", {"content": "转人工"})
    channel.route = lambda message, _: queue(conversations) or TransferReply(message=message)   # the rule queues them
    channel.handle(routed)
    assert conversations.of(USER).stage is Stage.BOT
    assert conversations.store.records(0)[0].outcome is Ending.REFUSED
    assert "could not answer 微信客服 customer" in caplog.text


@pytest.mark.parametrize("change_type, servicer, stage, ending", [
    (1, "zhangsan", Stage.WITH_AGENT, None),     # taken from the pool
    (2, "lisi", Stage.WITH_AGENT, None),         # transferred to another servicer
    (3, None, Stage.BOT, Ending.ACCEPTED),       # ended
    (4, None, Stage.QUEUED, None),               # reopened: nothing moves here
])
def test_session_status_change_moves_the_customer(change_type, servicer, stage, ending):
    channel, api, conversations = answers()
    queue(conversations)
    if change_type == 3:
        conversations.apply(USER, Change("accept", at=NOW + 1, agent="zhangsan"))
    channel.handle(event("session_status_change", change_type=change_type, new_servicer_userid=servicer))
    assert conversations.of(USER).stage is stage
    record = conversations.store.records(0)[0]
    assert record.outcome is ending
    assert api.calls == []


@pytest.mark.parametrize("stage_change", ["queued", "with-servicer"])
def test_nothing_is_sent_while_the_customer_waits_or_a_servicer_has_them(stage_change):
    routed = []
    channel, api, conversations = answers(lambda message: routed.append(message) or TextReply(content="x"))
    queue(conversations)
    if stage_change == "with-servicer":
        conversations.apply(USER, Change("accept", at=NOW + 1, agent="zhangsan"))
    channel.handle(item("text", {"content": "还在吗"}))
    assert (routed, api.calls) == ([], [])


# -- the 5 messages within 48 hours -----------------------------------------------------------------------------

def test_a_customers_message_allows_five_answers_and_the_sixth_is_not_tried():
    from kf_plugin.errors import QuotaExceededError
    from kf_plugin.state import MemoryWindowStore
    from kf_plugin.window import WindowTracker
    channel, api, _ = answers(lambda message: TextReply(content="收到", message=message))
    channel.window = WindowTracker(MemoryWindowStore())
    channel.handle(item("text", {"content": "在吗"}))            # the message grants 5, the answer uses 1
    for _ in range(4):
        channel._send_text(KFID, USER, "还有")
    with pytest.raises(QuotaExceededError):
        channel._send_text(KFID, USER, "第六条")
    assert len(api.calls) == 5


def test_wecoms_95001_uses_the_customers_sends_up():
    from kf_plugin.errors import QuotaExceededError
    from kf_plugin.state import MemoryWindowStore
    from kf_plugin.window import WindowTracker
    channel, api, _ = answers(lambda message: TextReply(content="收到", message=message), send_text=[95001])
    channel.window = WindowTracker(MemoryWindowStore())
    channel.handle(item("text", {"content": "在吗"}))            # WeCom says the sends are used up
    with pytest.raises(QuotaExceededError):
        channel._send_text(KFID, USER, "再试")                   # refused before any call
    assert len(api.calls) == 1


# -- the rule file's texts, sent with an event's code -------------------------------------------------------------

WELCOMES = WeComTexts(welcome_text={"default": "您好", "menu": "请选择服务"})


@pytest.mark.parametrize("texts, fields, calls", [
    (WELCOMES, {"scene": "menu", "welcome_code": "W1"}, [("send_on_event", "W1", "text", {"content": "请选择服务"})]),
    (WELCOMES, {"scene": "qr", "welcome_code": "W1"}, [("send_on_event", "W1", "text", {"content": "您好"})]),
    (WELCOMES, {"welcome_code": "W1"}, [("send_on_event", "W1", "text", {"content": "您好"})]),
    (WeComTexts(welcome_text="欢迎"), {"scene": "qr", "welcome_code": "W1"},
     [("send_on_event", "W1", "text", {"content": "欢迎"})]),
    (WeComTexts(welcome_text={"menu": "请选择服务"}), {"scene": "qr", "welcome_code": "W1"}, []),   # no default
    (WELCOMES, {"scene": "menu"}, []),                        # no welcome code: WeCom allows no welcome now
    (WeComTexts(), {"scene": "menu", "welcome_code": "W1"}, []),
], ids=["by-scene", "other-scene", "no-scene", "one-text", "no-default", "no-code", "no-welcome"])
def test_the_files_welcome_when_nothing_answered_enter_session(texts, fields, calls):
    channel, api, _ = answers(None, texts)
    channel.handle(event("enter_session", **fields))
    assert api.calls == calls


def test_no_welcome_while_the_customer_waits_for_a_servicer():
    channel, api, conversations = answers(None, WELCOMES)
    queue(conversations)
    channel.handle(event("enter_session", scene="menu", welcome_code="W1"))
    assert api.calls == []


@pytest.mark.parametrize("servicer, fails, texts, sent", [
    (None, {}, WeComTexts(queue_text="请稍候"), ("code-2", "请稍候")),
    ("zhangsan", {}, WeComTexts(queue_text="请稍候", taken_text="客服已接入"), ("code-3", "客服已接入")),
    ("zhangsan", {"trans": [95014]}, WeComTexts(queue_text="请稍候", taken_text="客服已接入"), ("code-2", "请稍候")),
    (None, {}, WeComTexts(taken_text="客服已接入"), None),
], ids=["pool", "servicer", "servicer-not-receiving", "no-queue-text"])
def test_a_hand_off_sends_the_files_text_with_the_code_trans_gave(servicer, fails, texts, sent):
    channel, api, _ = answers(lambda message: TransferReply(kf_account=servicer, message=message), texts, **fails)
    channel.handle(item("text", {"content": "转人工"}))
    on_event = [call for call in api.calls if call[0] == "send_on_event"]
    assert on_event == ([("send_on_event", sent[0], "text", {"content": sent[1]})] if sent else [])


@pytest.mark.parametrize("change_type, fields, calls", [
    (1, {"new_servicer_userid": "zhangsan", "msg_code": "C1"}, [("send_on_event", "C1", "text", {"content": "接入"})]),
    (3, {"old_servicer_userid": "zhangsan", "msg_code": "C3"}, [("send_on_event", "C3", "text", {"content": "再见"})]),
    (2, {"new_servicer_userid": "lisi", "msg_code": "C2"}, []),          # a transfer: no text of the file's
    (3, {"old_servicer_userid": "zhangsan"}, []),                         # no code: nothing can be sent
], ids=["taken", "ended", "transferred", "ended-without-code"])
def test_session_changes_send_the_files_taken_and_end_texts(change_type, fields, calls):
    channel, api, conversations = answers(None, WeComTexts(taken_text="接入", end_text="再见"))
    queue(conversations)
    if change_type != 1:
        conversations.apply(USER, Change("accept", at=NOW + 1, agent="zhangsan"))
    channel.handle(event("session_status_change", change_type=change_type, **fields))
    assert api.calls == calls


def test_a_refused_code_is_logged_with_its_meaning_and_the_lifecycle_still_moves(caplog):
    channel, api, conversations = answers(None, WeComTexts(end_text="再见"), send_on_event=[40058])
    queue(conversations)
    conversations.apply(USER, Change("accept", at=NOW + 1, agent="zhangsan"))
    channel.handle(event("session_status_change", change_type=3, msg_code="C3"))
    assert conversations.of(USER).stage is Stage.BOT
    assert "could not send the end_text to 微信客服 customer" in caplog.text
    assert "40058" in caplog.text and "invalid parameter" in caplog.text


def test_loading_other_rules_changes_the_texts():
    channel, api, conversations = answers(None, WeComTexts(end_text="再见"))
    channel.use_rules(RuleSet(wecom=WeComTexts(end_text="欢迎再来")))
    conversations.apply(USER, Change("accept", at=NOW, agent="zhangsan"))
    channel.handle(event("session_status_change", change_type=3, msg_code="C3"))
    assert api.calls == [("send_on_event", "C3", "text", {"content": "欢迎再来"})]


# -- system events, to the hooks ----------------------------------------------------------------------------------

def servicer_status(**fields: Any) -> dict:
    """A servicer_status_change item: it names no customer."""
    return {"msgid": "m1", "open_kfid": KFID, "send_time": int(NOW) + 2, "origin": SYSTEM, "msgtype": "event",
            "event": {"event_type": "servicer_status_change", "open_kfid": KFID, **fields}}


AT = int(NOW) + 2


@pytest.mark.parametrize("raw, expected", [
    (event("msg_send_fail", fail_msgid="m9", fail_type=4), SendFailed("msg_send_fail", KFID, AT, {}, USER, "m9", 4)),
    (event("user_recall_msg", recall_msgid="m8"), Recalled("user_recall_msg", KFID, AT, {}, USER, "m8")),
    (event("servicer_recall_msg", recall_msgid="m7", servicer_userid="zhangsan"),
     Recalled("servicer_recall_msg", KFID, AT, {}, USER, "m7", "zhangsan")),
    (servicer_status(servicer_userid="zhangsan", status=2, stop_type=1),
     ServicerStatusChanged("servicer_status_change", KFID, AT, {}, "zhangsan", 2, 1)),
], ids=["send-failed", "customer-recalled", "servicer-recalled", "servicer-status"])
def test_system_events_reach_the_hooks_as_typed_events(raw, expected):
    heard = []
    channel, api, _ = answers(lambda message: TextReply(content="收到", message=message), events=heard.append)
    channel.handle(raw)
    assert heard == [expected] and api.calls == []
    assert heard[0].raw is raw


def test_without_hooks_a_system_event_is_dropped_quietly():
    channel, api, conversations = answers(lambda message: TextReply(content="收到", message=message))
    channel.handle(event("msg_send_fail", fail_msgid="m9", fail_type=4))
    assert api.calls == [] and conversations.of(USER).stage is Stage.BOT


@pytest.mark.parametrize("to_pool, fails, calls, stage", [
    (True, {}, [("trans", KFID, USER, State.HUMAN, "zhangsan")], Stage.WITH_AGENT),
    (True, {"trans": [95014]}, [("trans", KFID, USER, State.HUMAN, "zhangsan"),
                                ("trans", KFID, USER, State.POOL, None)], Stage.QUEUED),
    (False, {"trans": [95014]}, [("trans", KFID, USER, State.HUMAN, "zhangsan"),
                                 ("send_text", KFID, USER, "稍后再试")], Stage.BOT),
], ids=["servicer-takes", "not-receiving-to-pool", "not-receiving-fallback-text"])
def test_a_rules_servicer_transfer(to_pool, fails, calls, stage):
    """A rule naming a servicer: with them at once (WeCom sends no event for it), else the pool when the rule
    falls back to it, else the file's fallback text and the customer stays with the bot."""
    channel, api, conversations = answers(**fails)
    channel.use_rules(RuleSet(fallback_text="稍后再试"))
    channel.route = lambda message, _: queue(conversations) or ServicerTransfer("zhangsan", to_pool=to_pool,
                                                                                message=message)
    channel.handle(item("text", {"content": "转人工"}))
    assert api.calls == calls
    current = conversations.of(USER)
    assert current.stage is stage
    assert current.agent == ("zhangsan" if stage is Stage.WITH_AGENT else None)
    if stage is Stage.BOT:
        assert conversations.store.records(0)[0].outcome is Ending.REFUSED
