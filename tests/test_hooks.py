"""``@kf.on_handoff`` hooks through real pushes: each move of a user is heard once, by the worker that made it,
whatever WeChat's retries; a failing hook is logged and the push still answered."""
import time

import pytest

from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.testing import message_xml

from .lifecycle_apps import (
    LI,
    OPENID,
    WANG,
    eventually,
    session_event,
    settled,
    text_push,
)


def test_each_move_is_heard_once_by_the_hooks_of_its_kind(make_worker, state):
    worker = make_worker(**state)
    every, requests, ends = worker.heard(), worker.heard("request"), worker.heard("close", "lapse", "cancel")
    worker.says("转人工")
    t0 = worker.conversation().since
    worker.push(session_event("create", WANG, t0 + 10))
    worker.push(session_event("switch", LI, t0 + 20, from_agent=WANG))
    worker.push(session_event("close", LI, t0 + 30))
    settled(every, 4)
    assert [t.change.kind for t in every] == ["request", "accept", "switch", "close"]
    assert [t.change.kind for t in requests] == ["request"]
    assert [t.change.kind for t in ends] == ["close"]
    request, accept, switch, close = every
    assert (request.before.stage, request.after.stage, request.after.reason) == (Stage.BOT, Stage.QUEUED,
                                                                                 "ask-for-human")
    assert request.record.id == request.after.handoff_id and request.record.outcome is None
    assert (accept.after.stage, accept.after.agent, accept.record.accepted_at) == (Stage.WITH_AGENT, WANG,
                                                                                   int(t0 + 10))
    assert (switch.before.agent, switch.after.agent) == (WANG, LI)
    assert (close.after.stage, close.record.outcome, close.record.id) == (Stage.BOT, Ending.ACCEPTED,
                                                                          request.record.id)


def test_moves_that_move_nobody_are_not_heard(make_worker, state):
    worker = make_worker(**state)
    every = worker.heard()
    worker.push(session_event("close", WANG, time.time()))         # with the bot already
    worker.says("转人工")
    worker.says("人工")                                              # queued already
    t0 = worker.conversation().since
    worker.push(session_event("create", WANG, t0 + 10))
    worker.push(session_event("close", WANG, t0 + 5))                # stale
    assert [t.change.kind for t in settled(every, 2)] == ["request", "accept"]


def test_cancel_and_lapse_are_heard(make_worker, state):
    worker = make_worker(**state)
    every = worker.heard()
    worker.says("转人工")
    worker.says("取消")
    worker.says("转人工")
    worker.push(session_event("create", WANG, time.time()))
    worker.says("你好")
    settled(every, 5)
    assert [t.change.kind for t in every] == ["request", "cancel", "request", "accept", "lapse"]
    assert [t.record.outcome for t in every if t.change.kind in ("cancel", "lapse")] == [Ending.CANCELLED,
                                                                                          Ending.LAPSED]


def test_three_deliveries_of_one_push_are_one_request_hook(make_worker, state):
    """The transfer's answer is planned before the claim; the session's is made under it: both once."""
    worker = make_worker(**state)
    worker.api.sandbox.add_agent(WANG, "小王", wx="wang_wx", online=True)
    worker.plugin.agents.refresh()
    requests = worker.heard("request")
    worker.api.sandbox.interact(OPENID, "message")
    for _ in range(3):
        worker.push(text_push("转人工", msg_id=777))
    worker.api.sandbox.interact("oOther", "click")
    click = message_xml(event="CLICK", key="TALK", sender="oOther")   # events have no MsgId: one CreateTime
    for _ in range(3):
        worker.push(click)
    settled(requests, 2)
    assert sorted((t.after.openid, t.after.reason) for t in requests) == [("oOther", "menu-session"),
                                                                          (OPENID, "ask-for-human")]
    assert len(worker.api.sandbox.calls_to("/customservice/kfsession/create")) == 1


def test_three_deliveries_of_a_session_event_are_one_hook(make_worker, state):
    worker = make_worker(**state)
    accepts = worker.heard("accept")
    xml = session_event("create", WANG, time.time())
    for _ in range(3):
        worker.push(xml)
    assert len(settled(accepts, 1)) == 1


def test_of_two_workers_the_one_that_moved_the_user_hears_it(make_worker, redis_url):
    one, two = make_worker(KF_REDIS_URL=redis_url), make_worker(KF_REDIS_URL=redis_url)
    heard_one, heard_two = one.heard(), two.heard()
    one.says("转人工")
    two.push(session_event("create", WANG, time.time() + 1))
    settled(heard_two, 1)
    assert [t.change.kind for t in heard_one] == ["request"] and [t.change.kind for t in heard_two] == ["accept"]


def test_a_failing_hook_is_logged_and_the_push_still_answered(make_worker, state, caplog):
    worker = make_worker(**state)
    heard = worker.heard("request")

    @worker.plugin.on_handoff("request")
    def broken(transition):
        raise RuntimeError("the CRM is down")

    assert worker.says("转人工").message_type == "transfer_customer_service"
    eventually(lambda: any("hand-off hook" in r.getMessage() for r in caplog.records))
    [logged] = [r for r in caplog.records if "hand-off hook" in r.getMessage()]
    assert "broken" in logged.getMessage() and "request" in logged.getMessage()
    assert logged.exc_info[0] is RuntimeError
    assert len(settled(heard, 1)) == 1                               # the other hooks still ran
    assert worker.conversation().stage is Stage.QUEUED


def test_an_unknown_kind_is_refused(make_worker):
    with pytest.raises(ValueError, match="no such hand-off change: hangup"):
        make_worker().plugin.on_handoff("hangup")
