"""kf sessions and the wait queue over HTTP."""
from __future__ import annotations

import pytest

from .conftest import Clock

CREATE = "/customservice/kfsession/create"
CLOSE = "/customservice/kfsession/close"
GET = "/customservice/kfsession/getsession"
LIST = "/customservice/kfsession/getsessionlist"
WAIT = "/customservice/kfsession/getwaitcase"


@pytest.fixture
def agents(sandbox):
    sandbox.add_agent("on1@test", "one", wx="agent_wx1", online=True)
    sandbox.add_agent("on2@test", "two", wx="agent_wx2", online=True)
    sandbox.add_agent("off@test", "off", wx="agent_wx3")
    sandbox.add_agent("unbound@test", "unbound")
    sandbox.interact("oUser1", "message")
    sandbox.interact("oUser2", "click")
    return sandbox


def test_create_opens_a_session(api, agents, clock: Clock):
    assert api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})["errcode"] == 0
    answer = api.get(GET, openid="oUser1")
    assert (answer["errcode"], answer["kf_account"], answer["createtime"]) == (0, "on1@test", int(clock.now))
    assert agents.sessions == {"oUser1": {"kf_account": "on1@test", "createtime": int(clock.now)}}


def test_nobody_serving_is_an_empty_account_and_time_zero(api, agents):
    answer = api.get(GET, openid="oUser1")
    assert (answer["errcode"], answer["kf_account"], answer["createtime"]) == (0, "", 0)


@pytest.mark.parametrize("openid", ["oNeverSeen", None])
def test_getsession_of_an_unknown_user_is_invalid_openid(api, agents, openid):
    query = {} if openid is None else {"openid": openid}
    assert api.get(GET, **query)["errcode"] == 40003


@pytest.mark.parametrize("kf_account, openid, expected", [
    ("nobody@test", "oUser1", 65401),
    (None, "oUser1", 65401),
    ("unbound@test", "oUser1", 65402),
    ("off@test", "oUser1", 65415),
    ("on1@test", "oNeverSeen", 40003),
    ("on1@test", None, 40003),
    ("on2@test", "oUser2", 65414),
])
def test_create_refusals(api, agents, kf_account, openid, expected):
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser2"})
    assert api.post(CREATE, {"kf_account": kf_account, "openid": openid})["errcode"] == expected
    assert "oUser1" not in agents.sessions
    assert agents.sessions["oUser2"]["kf_account"] == "on1@test"


def test_create_for_an_unfollowed_user_needs_a_subscription(api, agents):
    agents.unsubscribe("oUser1")
    assert api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})["errcode"] == 43004


def test_creating_the_same_session_again_changes_nothing(api, agents, clock: Clock):
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    created = int(clock.now)
    clock.advance(60)
    assert api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})["errcode"] == 0
    assert api.get(GET, openid="oUser1")["createtime"] == created


def test_close(api, agents):
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    assert api.post(CLOSE, {"kf_account": "on1@test", "openid": "oUser1"})["errcode"] == 0
    assert api.get(GET, openid="oUser1")["kf_account"] == ""
    assert api.post(CLOSE, {"kf_account": "on1@test", "openid": "oUser1"})["errcode"] == 65413


@pytest.mark.parametrize("kf_account, openid, expected", [
    ("nobody@test", "oUser1", 65401),
    ("on1@test", "oUser2", 65413),
    ("on1@test", None, 65413),
    ("on2@test", "oUser1", 65414),
])
def test_close_refusals(api, agents, kf_account, openid, expected):
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    assert api.post(CLOSE, {"kf_account": kf_account, "openid": openid})["errcode"] == expected
    assert agents.sessions["oUser1"]["kf_account"] == "on1@test"


def test_an_agent_going_offline_keeps_its_sessions(api, agents):
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    agents.set_online("on1@test", False)
    assert api.get(GET, openid="oUser1")["kf_account"] == "on1@test"
    assert api.post(CLOSE, {"kf_account": "on1@test", "openid": "oUser1"})["errcode"] == 0


def test_session_list(api, agents, clock: Clock):
    for openid in ("oUser2", "oUser1"):
        api.post(CREATE, {"kf_account": "on1@test", "openid": openid})
        clock.advance(10)
    answer = api.get(LIST, kf_account="on1@test")
    assert answer["errcode"] == 0
    start = int(clock.now) - 20
    assert answer["sessionlist"] == [{"createtime": start, "openid": "oUser2"},
                                     {"createtime": start + 10, "openid": "oUser1"}]
    assert api.get(LIST, kf_account="on2@test")["sessionlist"] == []


@pytest.mark.parametrize("query", [{"kf_account": "nobody@test"}, {}])
def test_session_list_of_an_unknown_account(api, agents, query):
    assert api.get(LIST, **query)["errcode"] == 65401


def test_unfollowing_ends_the_session_and_the_wait(api, agents):
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    agents.enqueue("oUser2")
    agents.unsubscribe("oUser1")
    agents.unsubscribe("oUser2")
    assert agents.sessions == {}
    assert api.get(WAIT)["count"] == 0


# -- wait queue ----------------------------------------------------------------------------

def test_wait_queue_lists_oldest_first_and_creating_a_session_removes_the_user(api, agents, clock: Clock):
    agents.enqueue("oUser1")
    clock.advance(5)
    agents.enqueue("oUser2")
    answer = api.get(WAIT)
    start = int(clock.now) - 5
    assert (answer["errcode"], answer["count"]) == (0, 2)
    assert answer["waitcaselist"] == [{"latest_time": start, "openid": "oUser1"},
                                      {"latest_time": start + 5, "openid": "oUser2"}]
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    assert api.get(WAIT)["waitcaselist"] == [{"latest_time": start + 5, "openid": "oUser2"}]


def test_waiting_again_keeps_the_place_with_a_newer_time(api, agents, clock: Clock):
    agents.enqueue("oUser1")
    agents.enqueue("oUser2")
    clock.advance(30)
    agents.enqueue("oUser1")
    assert api.get(WAIT)["waitcaselist"][0] == {"latest_time": int(clock.now), "openid": "oUser1"}


def test_wait_queue_lists_at_most_100_but_counts_all(api, sandbox):
    for number in range(150):
        sandbox.interact(f"oWait{number:03}", "message")
        sandbox.enqueue(f"oWait{number:03}")
    answer = api.get(WAIT)
    assert answer["count"] == 150
    assert [case["openid"] for case in answer["waitcaselist"]] == [f"oWait{n:03}" for n in range(100)]
    assert len(sandbox.wait_queue) == 150


def test_enqueue_usage_errors(api, agents):
    with pytest.raises(ValueError, match="interact first"):
        agents.enqueue("oNeverSeen")
    api.post(CREATE, {"kf_account": "on1@test", "openid": "oUser1"})
    with pytest.raises(ValueError, match="close the session first"):
        agents.enqueue("oUser1")
