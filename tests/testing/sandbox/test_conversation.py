"""WeChat's side of the conversation: what reaches the bot, transfers, the agent side and its kf_* events.

The bot is served on a real loopback port (wechat_bot.py: wechatpy alone checks and parses
every push); the sandbox's API is served too, and the bot calls it with wechatpy's client.
"""
from __future__ import annotations

import pytest
from wechatpy.events import ClickEvent, KfCloseSessionEvent, KfCreateSessionEvent, KfSwitchSessionEvent

from kf_plugin.testing.sandbox import ApiError, BotUnreachableError

from .conftest import Clock, closed_port
from .wechat_bot import AES_KEY, TOKEN

CREATE = "/customservice/kfsession/create"
CLOSE = "/customservice/kfsession/close"
GET = "/customservice/kfsession/getsession"
WAIT = "/customservice/kfsession/getwaitcase"
RECORDS = "/customservice/msgrecord/getmsglist"
SEND = "/cgi-bin/message/custom/send"


@pytest.fixture
def agents(sandbox):
    sandbox.add_agent("kf1@test", "one", wx="agent_wx1", online=True)
    sandbox.add_agent("kf2@test", "two", wx="agent_wx2", online=True)
    sandbox.add_agent("off@test", "off", wx="agent_wx3")
    return sandbox


@pytest.fixture(params=[None, AES_KEY], ids=["plain", "safe"])
def bot(request, make_bot, agents):
    return make_bot(request.param)


def records(api, clock: Clock):
    answer = api.post(RECORDS, {"starttime": int(clock.now) - 3600, "endtime": int(clock.now), "msgid": 1,
                                "number": 100})
    return [(r["opercode"], r["text"], r["worker"]) for r in answer["recordlist"]]


def in_session(sandbox, clock: Clock, kf_account: str = "kf1@test") -> None:
    sandbox.user_says("oUser1", "人工")
    clock.advance(5)
    sandbox.accept("oUser1", kf_account)
    clock.advance(5)


# -- the user and the bot -----------------------------------------------------------------------

def test_a_transfer_queues_the_user(sandbox, bot, api, clock: Clock):
    answer = sandbox.user_says("oUser1", "人工")
    assert (answer.message_type, answer.kf_account) == ("transfer_customer_service", None)
    assert api.get(WAIT)["waitcaselist"] == [{"latest_time": int(clock.now), "openid": "oUser1"}]
    assert sandbox.sessions == {} and bot.events() == []


def test_queued_users_are_still_pushed_and_keep_their_place(sandbox, bot, clock: Clock):
    sandbox.user_says("oUser2", "人工")
    sandbox.user_says("oUser1", "人工")
    clock.advance(30)
    assert sandbox.user_says("oUser2", "还在吗").content == "收到：还在吗"
    assert [m.content for m in bot.received] == ["人工", "人工", "还在吗"]
    assert sandbox.wait_queue == [{"latest_time": int(clock.now), "openid": "oUser2"},
                                  {"latest_time": int(clock.now) - 30, "openid": "oUser1"}]


def test_accept_opens_the_session_and_pushes_kf_create_session(sandbox, bot, api, clock: Clock):
    sandbox.user_says("oUser1", "人工")
    clock.advance(5)
    answer = sandbox.accept("oUser1", "kf1@test")
    [event] = bot.events()
    assert isinstance(event, KfCreateSessionEvent)
    assert (event.source, event.target, event.account) == ("oUser1", "gh_sandbox", "kf1@test")
    assert event.create_time.timestamp() == int(clock.now)
    assert bot.refused == [] and (answer.status, answer.body) == (200, "success")
    assert api.get(WAIT)["count"] == 0
    assert api.get(GET, openid="oUser1")["kf_account"] == "kf1@test"


def test_in_a_session_the_agent_receives_the_users_texts_not_the_bot(sandbox, bot, api, clock: Clock):
    in_session(sandbox, clock)
    pushed = len(bot.received)
    assert sandbox.user_says("oUser1", "我的订单") is None
    sandbox.agent_says("oUser1", "您好，请讲")
    assert len(bot.received) == pushed
    assert records(api, clock) == [(2003, "我的订单", "kf1@test"), (2002, "您好，请讲", "kf1@test")]


def test_a_lapsed_session_ends_without_an_event_and_the_bot_hears_the_user_again(sandbox, bot, api, clock: Clock):
    in_session(sandbox, clock)
    sandbox.lapse("oUser1")
    assert sandbox.sessions == {} and api.get(GET, openid="oUser1")["kf_account"] == ""
    assert sandbox.user_says("oUser1", "又是我").content == "收到：又是我"
    assert [type(m).__name__ for m in bot.received] == ["TextMessage", "KfCreateSessionEvent", "TextMessage"]


def test_switch_moves_the_session_and_pushes_kf_switch_session(sandbox, bot, api, clock: Clock):
    in_session(sandbox, clock)
    sandbox.switch("oUser1", "kf2@test")
    event = bot.events()[-1]
    assert isinstance(event, KfSwitchSessionEvent)
    assert (event.source, event.from_account, event.to_account) == ("oUser1", "kf1@test", "kf2@test")
    assert sandbox.sessions == {"oUser1": {"kf_account": "kf2@test", "createtime": int(clock.now)}}
    sandbox.user_says("oUser1", "换人了？")
    assert records(api, clock) == [(2003, "换人了？", "kf2@test")]


def test_close_pushes_kf_close_session_and_the_bot_hears_the_user_again(sandbox, bot, clock: Clock):
    in_session(sandbox, clock)
    sandbox.close("oUser1")
    event = bot.events()[-1]
    assert isinstance(event, KfCloseSessionEvent)
    assert (event.source, event.account, event.create_time.timestamp()) == ("oUser1", "kf1@test", int(clock.now))
    assert sandbox.sessions == {}
    assert sandbox.user_says("oUser1", "谢谢").content == "收到：谢谢"


def test_a_transfer_naming_an_online_agent_opens_that_session(sandbox, bot):
    answer = sandbox.user_says("oUser1", "找 kf2@test")
    assert answer.kf_account == "kf2@test"
    assert sandbox.sessions["oUser1"]["kf_account"] == "kf2@test" and sandbox.wait_queue == []
    [event] = bot.events()
    assert (event.event, event.account) == ("kf_create_session", "kf2@test")
    assert [(p.msg_type, p.event) for p in sandbox.pushes] == [("text", None), ("event", "kf_create_session")]


@pytest.mark.parametrize("named", ["off@test", "nobody@test"])
def test_a_transfer_naming_an_agent_who_cannot_take_the_user_queues_them(sandbox, bot, named):
    sandbox.user_says("oUser1", f"找 {named}")
    assert [case["openid"] for case in sandbox.wait_queue] == ["oUser1"]
    assert sandbox.sessions == {} and bot.events() == []


def test_a_transfer_in_a_session_changes_nothing(sandbox, bot, clock: Clock):
    in_session(sandbox, clock)
    sandbox.user_event("oUser1", "CLICK", "人工")  # clicks reach the bot during a session; it transfers again
    assert sandbox.sessions["oUser1"]["kf_account"] == "kf1@test" and sandbox.wait_queue == []


# -- events ----------------------------------------------------------------------------------------

def test_events_reach_the_bot_even_during_a_session(sandbox, bot, clock: Clock):
    in_session(sandbox, clock)
    assert sandbox.user_event("oUser1", "CLICK", "MENU_HELP").body == "success"
    event = bot.received[-1]
    assert isinstance(event, ClickEvent) and (event.source, event.key) == ("oUser1", "MENU_HELP")


@pytest.mark.parametrize("event, action", [
    ("CLICK", "click"), ("scancode_push", "click"), ("scancode_waitmsg", "click"), ("subscribe", "follow"),
    ("SCAN", "scan"), ("VIEW", None), ("LOCATION", None),
])
def test_events_count_in_the_window_as_wechat_counts_them(sandbox, event, action):
    sandbox.user_event("oUser1", event, "KEY")
    customer = sandbox.state.window.get("oUser1")
    actions = [grant.action for grant in customer.grants] if customer is not None else []
    assert actions == ([action] if action else [])


def test_unsubscribe_ends_the_session(sandbox, bot, clock: Clock):
    in_session(sandbox, clock)
    sandbox.user_event("oUser1", "unsubscribe")
    assert sandbox.sessions == {} and bot.received[-1].event == "unsubscribe"


@pytest.mark.parametrize("event, message", [
    ("kf_create_session", "from the agent side"), ("KF_CLOSE_SESSION", "from the agent side"),
    ("", "event must be an event name"),
])
def test_user_events_refuse_what_users_cannot_send(sandbox, event, message):
    with pytest.raises(ValueError, match=message):
        sandbox.user_event("oUser1", event)


# -- the bot's own API calls ------------------------------------------------------------------------

def test_the_bots_own_create_and_close_push_their_events_after_the_answer(sandbox, bot, api, clock: Clock):
    sandbox.user_says("oUser1", "人工")
    sandbox.user_says("oUser1", "接入 kf1@test")  # the bot calls kfsession/create inside its push handler
    sandbox.wait_for_pushes()
    assert bot.log == ["push:text", "push:text", "api answered:0", "push:kf_create_session"]
    assert bot.events()[-1].account == "kf1@test" and api.get(WAIT)["count"] == 0
    clock.advance(5)
    sandbox.user_event("oUser1", "CLICK", "结束 kf1@test")
    sandbox.wait_for_pushes()
    assert bot.log[-3:] == ["push:click", "api answered:0", "push:kf_close_session"]
    assert isinstance(bot.events()[-1], KfCloseSessionEvent) and sandbox.sessions == {}
    assert bot.refused == []


def test_api_calls_that_change_nothing_push_nothing(sandbox, bot, api):
    sandbox.user_says("oUser1", "hi")
    assert api.post(CREATE, {"kf_account": "off@test", "openid": "oUser1"})["errcode"] == 65415
    assert api.post(CLOSE, {"kf_account": "kf1@test", "openid": "oUser1"})["errcode"] == 65413
    assert api.post(CREATE, {"kf_account": "kf1@test", "openid": "oUser1"})["errcode"] == 0
    assert api.post(CREATE, {"kf_account": "kf1@test", "openid": "oUser1"})["errcode"] == 0  # open already
    sandbox.wait_for_pushes()
    assert [m.event for m in bot.events()] == ["kf_create_session"]


def test_a_background_push_the_bot_does_not_answer_is_logged(sandbox, api, agents):
    url = f"http://127.0.0.1:{closed_port()}/wechat"
    sandbox.connect_bot(url, TOKEN)
    sandbox.interact("oUser1", "message")
    assert api.post(CREATE, {"kf_account": "kf1@test", "openid": "oUser1"})["errcode"] == 0
    sandbox.wait_for_pushes()
    [push] = sandbox.pushes
    assert push.event == "kf_create_session" and push.answer is None and url in push.error


def test_wait_for_pushes_gives_up_on_a_slow_bot(sandbox, bot, api):
    sandbox.interact("oUser1", "message")
    bot.hold.clear()
    api.post(CREATE, {"kf_account": "kf1@test", "openid": "oUser1"})
    with pytest.raises(TimeoutError, match="did not finish within 0.1 s"):
        sandbox.wait_for_pushes(0.1)
    bot.hold.set()
    sandbox.wait_for_pushes()
    assert bot.events()[0].account == "kf1@test"


# -- without a bot, and refusals --------------------------------------------------------------------

def test_without_a_bot_only_the_state_changes(sandbox, api, agents, clock: Clock):
    assert sandbox.user_says("oUser1", "你好") is None
    assert api.post(SEND, {"touser": "oUser1", "msgtype": "text", "text": {"content": "hi"}})["errcode"] == 0
    sandbox.enqueue("oUser1")
    assert sandbox.accept("oUser1", "kf1@test") is None
    assert sandbox.user_says("oUser1", "在吗") is None
    assert sandbox.switch("oUser1", "kf2@test") is None
    assert sandbox.close("oUser1") is None
    api.post(CREATE, {"kf_account": "kf1@test", "openid": "oUser1"})
    sandbox.wait_for_pushes(0)
    assert sandbox.pushes == [] and records(api, clock) == [(2003, "在吗", "kf1@test")]


def test_accepting_a_user_the_agent_serves_already_pushes_nothing(sandbox, bot, clock: Clock):
    in_session(sandbox, clock)
    assert sandbox.accept("oUser1", "kf1@test") is None
    assert len(bot.events()) == 1


@pytest.mark.parametrize("act, errcode", [
    (lambda s: s.close("oUser1"), 65413),
    (lambda s: s.lapse("oUser1"), 65413),
    (lambda s: s.agent_says("oUser1", "hi"), 65413),
    (lambda s: s.switch("oUser1", "kf2@test"), 65413),
    (lambda s: s.accept("oUser1", "off@test"), 65415),
    (lambda s: s.accept("oUser1", "nobody@test"), 65401),
    (lambda s: s.accept("oStranger", "kf1@test"), 40003),
])
def test_agent_side_refusals_without_a_session(sandbox, bot, act, errcode):
    sandbox.user_says("oUser1", "hi")
    with pytest.raises(ApiError) as refused:
        act(sandbox)
    assert refused.value.errcode == errcode
    assert sandbox.sessions == {} and bot.events() == []


@pytest.mark.parametrize("act, error, match", [
    (lambda s: s.accept("oUser1", "kf2@test"), ApiError, "65414"),
    (lambda s: s.switch("oUser1", "off@test"), ApiError, "65415"),
    (lambda s: s.switch("oUser1", "kf1@test"), ValueError, "served by kf1@test already"),
    (lambda s: s.agent_says("oUser1", ""), ValueError, "non-empty"),
    (lambda s: s.user_says("oUser1", ""), ValueError, "non-empty"),
    (lambda s: s.user_says("", "hi"), ValueError, "openid"),
])
def test_agent_side_refusals_in_a_session(sandbox, bot, clock: Clock, act, error, match):
    in_session(sandbox, clock)
    with pytest.raises(error, match=match):
        act(sandbox)
    assert sandbox.sessions["oUser1"]["kf_account"] == "kf1@test" and len(bot.events()) == 1


def test_the_agent_side_raises_when_the_bot_is_gone_after_changing_the_state(sandbox, agents):
    sandbox.interact("oUser1", "message")
    sandbox.connect_bot(f"http://127.0.0.1:{closed_port()}/wechat", TOKEN)
    with pytest.raises(BotUnreachableError):
        sandbox.accept("oUser1", "kf1@test")
    assert sandbox.sessions["oUser1"]["kf_account"] == "kf1@test"
