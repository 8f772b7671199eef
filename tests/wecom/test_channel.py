"""What the bot does with each message the puller fetched: its answer sent through the API, its hand-off
made with service_state/trans, the lifecycle moved by session_status_change, and nothing sent while a
servicer has the customer or they wait for one."""
from __future__ import annotations

import time
from typing import Any, List, Tuple

import pytest
from wechatpy.replies import TextReply

from kf_plugin.conversations import Conversations
from kf_plugin.hooks import HandoffHooks
from kf_plugin.lifecycle import Change, Ending, Stage
from kf_plugin.replies import TransferReply
from kf_plugin.state.handoffs import MemoryHandoffStore
from kf_plugin.wecom.api import State
from kf_plugin.wecom.channel import WeComAnswers
from kf_plugin.wecom.errors import wecom_error
from kf_plugin.wecom.messages import CUSTOMER, SERVICER, SYSTEM

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
        return self._call("trans", kfid, user, int(state), servicer)


def item(kind: str, body: dict, origin: int = CUSTOMER) -> dict:
    return {"msgid": "m1", "open_kfid": KFID, "external_userid": USER, "send_time": 1764300000, "origin": origin,
            "msgtype": kind, kind: body}


def event(event_type: str, **fields: Any) -> dict:
    raw = item("event", {"event_type": event_type, "open_kfid": KFID, "external_userid": USER, **fields}, SYSTEM)
    return {**raw, "send_time": int(NOW) + 2}


def answers(reply: Any = None, **fails: List[int]) -> Tuple[WeComAnswers, FakeApi, Conversations]:
    api = FakeApi(**fails)
    conversations = Conversations(MemoryHandoffStore(), HandoffHooks())

    def route(message, conversation):
        return reply(message) if callable(reply) else reply
    return WeComAnswers(api, route, conversations), api, conversations


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
    channel, api, _ = answers(lambda message: TextReply(content="收到", message=message))
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
