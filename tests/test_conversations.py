"""The hand-off lifecycle on the push path, through real pushes to real apps: where each user is, what moves
them (the rules' hand-offs, WeChat's kf_* session events, a cancel, a lapsed session) and the record each
hand-off leaves — in one worker's memory, and on Redis shared by two workers."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kf_plugin.lifecycle import AGENT_REASON, Ending, Stage
from kf_plugin.testing import WeChatTestClient, message_xml
from kf_plugin.testing.sandbox import SandboxServer

from .conftest import TOKEN
from .lifecycle_apps import (
    LI,
    OPENID,
    WANG,
    EchoBot,
    eventually,
    rules,
    session_event,
    text_push,
)

TRANSFER = "transfer_customer_service"


# -- moves through real pushes -------------------------------------------------------------------------------

def test_a_transfer_rule_queues_the_user_and_opens_a_record(make_worker, state):
    worker = make_worker(**state)
    assert worker.conversation().stage is Stage.BOT and worker.conversation().since == 0
    before = time.time()
    assert worker.says("转人工").message_type == TRANSFER
    conv = worker.conversation()
    assert (conv.stage, conv.reason, conv.agent) == (Stage.QUEUED, "ask-for-human", None)
    assert before <= conv.since <= time.time()
    [record] = worker.handoffs(before - 1)
    assert (record.id, record.openid, record.reason, record.requested_at) == (conv.handoff_id, OPENID,
                                                                              "ask-for-human", conv.since)
    assert record.outcome is None and record.accepted_at is None
    assert worker.handoffs(time.time() + 1) == []


def test_accept_switch_and_close_move_the_user_and_end_the_record_accepted(make_worker, state):
    worker = make_worker(**state)
    worker.says("转人工")
    t0 = worker.conversation().since
    worker.push(session_event("create", WANG, t0 + 10))
    conv = worker.conversation()
    assert (conv.stage, conv.agent, conv.since, conv.reason) == (Stage.WITH_AGENT, WANG, int(t0 + 10), "ask-for-human")
    worker.push(session_event("switch", LI, t0 + 20, from_agent=WANG))
    assert (worker.conversation().stage, worker.conversation().agent) == (Stage.WITH_AGENT, LI)
    worker.push(session_event("close", LI, t0 + 30))
    assert worker.conversation().stage is Stage.BOT
    [record] = worker.handoffs()
    assert (record.outcome, record.agent) == (Ending.ACCEPTED, LI)
    assert (record.accepted_at, record.ended_at) == (int(t0 + 10), int(t0 + 30))
    assert record.waited == int(t0 + 10) - t0


def test_an_accept_in_the_same_second_as_the_request_is_not_stale(make_worker, state):
    """WeChat stamps its events in whole seconds: an agent who accepts within the second of the request
    (a transfer to an online agent opens the session at once) sends an event whose CreateTime is earlier than
    the request's own time, to the fraction."""
    worker = make_worker(**state)
    worker.says("转人工")
    since = worker.conversation().since
    worker.push(session_event("create", WANG, since))   # int(since) <= since
    assert (worker.conversation().stage, worker.conversation().agent) == (Stage.WITH_AGENT, WANG)


def test_a_close_while_queued_ends_the_handoff_accepted(make_worker, state):
    """The accept was missed: the user was served all the same."""
    worker = make_worker(**state)
    worker.says("转人工")
    worker.push(session_event("close", WANG, time.time() + 5))
    assert worker.conversation().stage is Stage.BOT
    [record] = worker.handoffs()
    assert (record.outcome, record.agent, record.reason) == (Ending.ACCEPTED, WANG, "ask-for-human")


def test_an_accept_with_no_request_opens_a_record_of_the_agents(make_worker, state):
    """An agent opened the session from the console (or the request was missed)."""
    worker = make_worker(**state)
    at = time.time()
    worker.push(session_event("create", WANG, at))
    conv = worker.conversation()
    assert (conv.stage, conv.agent, conv.reason) == (Stage.WITH_AGENT, WANG, AGENT_REASON)
    [record] = worker.handoffs()
    assert (record.reason, record.agent, record.accepted_at, record.outcome) == (AGENT_REASON, WANG, int(at), None)


def test_an_old_close_arriving_after_a_newer_accept_is_ignored(make_worker, state):
    worker = make_worker(**state)
    worker.says("转人工")
    t0 = worker.conversation().since
    worker.push(session_event("create", WANG, t0 + 20))
    worker.push(session_event("close", WANG, t0 + 10))        # from before the accept: delivered late
    assert (worker.conversation().stage, worker.conversation().agent) == (Stage.WITH_AGENT, WANG)
    worker.push(session_event("switch", LI, t0 + 15, from_agent=WANG))   # older than the accept too
    assert worker.conversation().agent == WANG
    worker.push(session_event("close", WANG, t0 + 30))
    assert worker.conversation().stage is Stage.BOT
    [record] = worker.handoffs()
    assert (record.outcome, record.ended_at) == (Ending.ACCEPTED, int(t0 + 30))


def test_a_close_for_a_user_with_the_bot_changes_nothing(make_worker, state):
    worker = make_worker(**state)
    assert worker.push(session_event("close", WANG, time.time())).body == "success"
    assert worker.conversation().stage is Stage.BOT and worker.handoffs() == []


def test_a_queued_users_repeated_request_is_not_a_second_handoff(make_worker, state):
    worker = make_worker(**state)
    assert worker.says("转人工").message_type == TRANSFER
    first = worker.conversation()
    assert worker.says("人工！").message_type == TRANSFER          # WeChat keeps them in the queue
    assert worker.says("我要人工").message_type == TRANSFER
    assert worker.conversation() == first
    assert len(worker.handoffs()) == 1


def test_two_workers_on_one_redis_see_the_same_user(make_worker, redis_url):
    one, two = make_worker(KF_REDIS_URL=redis_url), make_worker(KF_REDIS_URL=redis_url)
    one.says("转人工")
    assert two.conversation() == one.conversation() and two.conversation().stage is Stage.QUEUED
    assert two.says("人工").message_type == TRANSFER                # queued already: no second hand-off
    t0 = one.conversation().since
    two.push(session_event("create", WANG, t0 + 5))
    assert one.conversation().stage is Stage.WITH_AGENT and one.conversation().agent == WANG
    one.push(session_event("close", WANG, t0 + 9))
    assert two.conversation().stage is Stage.BOT
    assert one.handoffs() == two.handoffs() and len(one.handoffs()) == 1
    assert one.handoffs()[0].outcome is Ending.ACCEPTED


def test_workers_in_memory_each_know_their_own_users(make_worker):
    """Without Redis nothing is shared (and init_app warns about it): the other worker sees the bot."""
    one, two = make_worker(), make_worker()
    one.says("转人工")
    assert one.conversation().stage is Stage.QUEUED and two.conversation().stage is Stage.BOT


# -- the quiet bot while queued -----------------------------------------------------------------------------

def test_a_queued_users_text_is_answered_success_and_the_bots_handlers_stay_quiet(make_worker, state):
    bot = EchoBot()
    worker = make_worker(router=bot.router, **state)
    assert worker.says("你好").content == "机器人：你好"
    worker.says("转人工")
    assert worker.says("在吗？").body == "success"
    assert worker.says("还在吗").body == "success"
    assert bot.heard == ["你好"]


def test_while_queued_bot_keeps_the_bots_handlers_answering(make_worker, state):
    bot = EchoBot()
    worker = make_worker(rules(queue="queue:\n  while_queued: bot\n"), router=bot.router, **state)
    worker.says("转人工")
    assert worker.says("在吗？").content == "机器人：在吗？"
    assert worker.conversation().stage is Stage.QUEUED


def test_the_rules_still_answer_a_queued_user(make_worker, state):
    bot = EchoBot()
    worker = make_worker(router=bot.router, **state)
    worker.says("转人工")
    assert worker.says("营业时间").content == "工作日 9:00–18:00"
    assert worker.conversation().stage is Stage.QUEUED and bot.heard == []


NOTICES = """\
queue:
  notice_fallback: "正在为您转接人工客服，请耐心等待"
  notice_every: 60s
"""


def test_the_queue_notice_answers_at_most_once_per_notice_every(make_worker, clock, state):
    bot = EchoBot()
    worker = make_worker(rules(queue=NOTICES), router=bot.router, clock=clock, **state)
    worker.says("转人工")
    assert worker.says("在吗").content == "正在为您转接人工客服，请耐心等待"
    clock.advance(30)
    assert worker.says("在吗？").body == "success"
    assert worker.says("转人工").message_type == TRANSFER          # a repeated request: no notice due
    clock.advance(31)
    assert worker.says("人工").content == "正在为您转接人工客服，请耐心等待"   # due again: it answers the request
    assert bot.heard == [] and len(worker.handoffs()) == 1


def test_a_notice_without_placeholders_is_sent_as_it_is(make_worker, clock, state):
    worker = make_worker(rules(queue='queue:\n  notice: "请稍候，客服马上就来"\n'), clock=clock, **state)
    worker.says("转人工")
    assert worker.says("在吗").content == "请稍候，客服马上就来"


def test_a_notice_with_a_place_falls_back_when_the_place_is_unknown(make_worker, clock, state):
    queue = 'queue:\n  notice: "您前面还有 {ahead} 位"\n  notice_fallback: "请耐心等待"\n'
    worker = make_worker(rules(queue=queue), clock=clock, **state)
    worker.says("转人工")
    assert worker.says("在吗").content == "请耐心等待"


def test_two_workers_send_one_notice_per_notice_every(make_worker, clock, redis_url):
    one = make_worker(rules(queue=NOTICES), clock=clock, KF_REDIS_URL=redis_url)
    two = make_worker(rules(queue=NOTICES), clock=clock, KF_REDIS_URL=redis_url)
    one.says("转人工")
    assert two.says("在吗").content == "正在为您转接人工客服，请耐心等待"
    clock.advance(59)
    assert one.says("在吗？").body == "success"
    clock.advance(2)
    assert one.says("还要等多久").content == "正在为您转接人工客服，请耐心等待"
    assert two.says("好吧").body == "success"


# -- cancel ---------------------------------------------------------------------------------------------------

def test_a_cancel_word_takes_a_queued_user_back_to_the_bot(make_worker, state):
    bot = EchoBot()
    worker = make_worker(router=bot.router, **state)
    worker.says("转人工")
    assert worker.says("取消订单").body == "success"              # not the whole message: still waiting
    assert worker.conversation().stage is Stage.QUEUED
    assert worker.says(" 退出人工 ").content == "已为您取消转接"
    assert worker.conversation().stage is Stage.BOT
    [record] = worker.handoffs()
    assert record.outcome is Ending.CANCELLED and record.ended_at is not None
    assert worker.says("取消").content == "机器人：取消"            # with the bot a cancel word is a text
    assert bot.heard == ["取消"]


def test_a_cancel_word_is_compared_trimmed_and_folded(make_worker, state):
    worker = make_worker(rules(queue='queue:\n  cancel: [Quit]\n  cancel_text: "好的"\n'), **state)
    worker.says("转人工")
    assert worker.says(" ＱＵＩＴ ").content == "好的"
    assert worker.conversation().stage is Stage.BOT


def test_a_cancel_without_cancel_text_answers_the_default(make_worker, state):
    worker = make_worker(rules(queue='queue:\n  cancel: 取消\n'), **state)
    worker.says("转人工")
    assert worker.says("取消").content == "已为您取消转接人工客服。"
    assert worker.handoffs()[0].outcome is Ending.CANCELLED


def test_a_cancel_is_one_move_across_two_workers(make_worker, redis_url):
    one, two = make_worker(KF_REDIS_URL=redis_url), make_worker(KF_REDIS_URL=redis_url)
    one.says("转人工")
    assert two.says("取消").content == "已为您取消转接"
    assert one.says("取消").body == "success"                      # with the bot now, and no handler of its own
    assert one.handoffs()[0].outcome is Ending.CANCELLED


# -- a lapsed session -----------------------------------------------------------------------------------------

def test_a_message_from_a_user_with_an_agent_means_the_session_lapsed(make_worker, state):
    bot = EchoBot()
    worker = make_worker(router=bot.router, **state)
    worker.says("转人工")
    worker.push(session_event("create", WANG, time.time()))
    assert worker.conversation().stage is Stage.WITH_AGENT
    assert worker.says("你好").content == "机器人：你好"
    assert worker.conversation().stage is Stage.BOT
    [record] = worker.handoffs()
    assert (record.outcome, record.agent) == (Ending.LAPSED, WANG)


def test_a_lapsed_users_message_that_a_rule_answers_is_answered_by_the_rule(make_worker, state):
    """The rule's answer is planned for a user with the bot; the claim finds them with an agent, so the push is
    answered under it, after the lapse."""
    worker = make_worker(**state)
    worker.push(session_event("create", WANG, time.time()))
    assert worker.says("营业时间").content == "工作日 9:00–18:00"
    assert worker.conversation().stage is Stage.BOT
    assert worker.handoffs()[0].outcome is Ending.LAPSED


def test_an_event_from_a_user_with_an_agent_is_no_lapse(make_worker, state):
    """WeChat pushes a user's menu clicks during a session too: only a message means it lapsed."""
    worker = make_worker(**state)
    worker.push(session_event("create", WANG, time.time()))
    assert worker.clicks("OTHER").body == "success"
    assert (worker.conversation().stage, worker.conversation().agent) == (Stage.WITH_AGENT, WANG)


def test_after_a_lapse_a_request_opens_a_new_handoff(make_worker, state):
    worker = make_worker(**state)
    worker.says("转人工")
    worker.push(session_event("create", WANG, time.time()))
    assert worker.says("转人工").message_type == TRANSFER            # lapsed, then asked again
    assert worker.conversation().stage is Stage.QUEUED
    assert [r.outcome for r in worker.handoffs()] == [Ending.LAPSED, None]


# -- exactly once -----------------------------------------------------------------------------------------

def test_a_planned_transfer_retried_three_times_stores_one_request(make_worker, state):
    worker = make_worker(**state)
    requests = worker.heard("request")
    worker.api.sandbox.interact(OPENID, "message")
    xml = text_push("转人工", msg_id=4242)
    answers = [worker.push(xml) for _ in range(3)]
    assert {a.body for a in answers} == {answers[0].body} and answers[0].message_type == TRANSFER
    assert len(worker.handoffs()) == 1 and worker.conversation().stage is Stage.QUEUED
    eventually(lambda: requests)
    time.sleep(0.2)                                               # room for a second hook, were one run
    assert len(requests) == 1


def test_a_planned_transfer_retried_through_two_workers_stores_one_request(make_worker, redis_url):
    one, two = make_worker(KF_REDIS_URL=redis_url), make_worker(KF_REDIS_URL=redis_url)
    heard_one, heard_two = one.heard("request"), two.heard("request")
    one.api.sandbox.interact(OPENID, "message")
    xml = text_push("转人工", msg_id=4343)
    answers = [one.push(xml), two.push(xml), one.push(xml)]
    assert {a.body for a in answers} == {answers[0].body} and answers[0].message_type == TRANSFER
    assert len(two.handoffs()) == 1
    eventually(lambda: heard_one)
    time.sleep(0.2)
    assert (len(heard_one), len(heard_two)) == (1, 0)


DELIVERED = {"transfer": lambda: text_push("转人工", msg_id=4545),
             "session": lambda: message_xml(event="CLICK", key="TALK", sender=OPENID)}


@pytest.mark.parametrize("kind", list(DELIVERED))
def test_deliveries_at_once_through_two_workers_store_one_request(api, make_worker, redis_url, kind):
    """WeChat's three deliveries of one push, arriving together at two workers: one request, one record, one
    session opened — the transfer stored with the claim, the session made under it."""
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    api.sandbox.interact(OPENID, "click")
    workers = [make_worker(KF_REDIS_URL=redis_url) for _ in range(2)]
    heard = [worker.heard("request") for worker in workers]
    workers[0].plugin.agents.refresh()
    xml = DELIVERED[kind]()
    local = threading.local()

    def deliver(worker):
        if not hasattr(local, "clients"):
            local.clients = {}                                    # a test client is not shared between threads
        client = local.clients.setdefault(id(worker), WeChatTestClient(worker.app))
        return client.send(xml)

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(deliver, [workers[0], workers[1], workers[0]]))
    assert len({answer.body for answer in answers}) == 1 and answers[0].status == 200
    assert len(workers[1].handoffs()) == 1 and workers[1].conversation().stage is Stage.QUEUED
    eventually(lambda: heard[0] or heard[1])
    time.sleep(0.2)
    assert len(heard[0]) + len(heard[1]) == 1
    assert len(api.sandbox.calls_to("/customservice/kfsession/create")) == (kind == "session")


# -- the whole conversation, with the sandbox as WeChat ----------------------------------------------------------

@pytest.fixture
def wechat(api, make_worker, state):
    """A worker served on a port, with the sandbox pushing to it as WeChat does (on the sandbox's clock, which
    stamps the pushes)."""
    api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    api.sandbox.add_agent(LI, "小李", wx="li_wechat", online=True)
    bot = EchoBot()
    worker = make_worker(router=bot.router, clock=api.clock, **state)
    with SandboxServer(worker.app) as served:
        api.sandbox.connect_bot(served.url + "/wechat", TOKEN)
        yield worker, bot
        api.sandbox.disconnect_bot()


def test_the_sandbox_plays_a_whole_handoff(api, wechat):
    worker, bot = wechat
    sandbox = api.sandbox
    assert sandbox.user_says(OPENID, "转人工").message_type == TRANSFER
    assert sandbox.wait_queue[0]["openid"] == OPENID and worker.conversation().stage is Stage.QUEUED
    assert sandbox.user_says(OPENID, "在吗").body == "success"        # queued: still pushed, the bot quiet
    api.clock.advance(30)
    sandbox.accept(OPENID, WANG)
    assert (worker.conversation().stage, worker.conversation().agent) == (Stage.WITH_AGENT, WANG)
    assert sandbox.user_says(OPENID, "你好") is None                  # the agent has it, the bot never sees it
    api.clock.advance(60)
    sandbox.switch(OPENID, LI)
    assert worker.conversation().agent == LI
    api.clock.advance(60)
    sandbox.close(OPENID)
    assert worker.conversation().stage is Stage.BOT
    assert sandbox.user_says(OPENID, "谢谢").content == "机器人：谢谢"
    [record] = worker.handoffs()
    assert (record.outcome, record.agent, record.reason) == (Ending.ACCEPTED, LI, "ask-for-human")
    assert record.waited == pytest.approx(30, abs=1)               # WeChat stamps its events in whole seconds
    assert bot.heard == ["谢谢"]


def test_the_sandbox_opens_a_named_agents_session_at_once(api, wechat):
    worker, _ = wechat
    assert api.sandbox.user_says(OPENID, "VIP").kf_account == WANG     # WeChat opens wang's session at once
    assert (worker.conversation().stage, worker.conversation().agent) == (Stage.WITH_AGENT, WANG)
    [record] = worker.handoffs()
    assert (record.reason, record.agent) == ("vip", WANG) and record.waited is not None


def test_the_sandbox_lapses_a_session(api, wechat):
    worker, bot = wechat
    api.sandbox.user_says(OPENID, "转人工")
    api.sandbox.accept(OPENID, WANG)
    api.sandbox.lapse(OPENID)
    assert api.sandbox.user_says(OPENID, "还在吗").content == "机器人：还在吗"
    assert worker.conversation().stage is Stage.BOT
    assert worker.handoffs()[0].outcome is Ending.LAPSED
    assert bot.heard == ["还在吗"]
