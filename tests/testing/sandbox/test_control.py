"""The control endpoints (``/sandbox/...``) over real HTTP: each calls the facade, answers JSON, and names what
is wrong with 400/404/409/502. The bot is wechat_bot.py on its own loopback port."""
from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from kf_plugin.testing.sandbox.seeding import AgentSeed

from .conftest import START, closed_port
from .wechat_bot import AES_KEY, TOKEN


@pytest.fixture
def staffed(sandbox):
    """wang online, li busy, zhao offline: seeded as ``kf-plugin sandbox --agent`` seeds them."""
    for spec in ("wang@gh_test:online:小王", "li@gh_test:busy", "zhao@gh_test:offline"):
        AgentSeed.parse(spec).add_to(sandbox)
    return sandbox


def where(openid: str, with_agent: Optional[str] = None, waiting: bool = False, bot: Optional[str] = None,
          answer: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"openid": openid, "bot": bot, "answer": answer, "with_agent": with_agent, "waiting": waiting}


def test_state_lists_agents_sessions_queue_and_bot(staffed, control, make_bot):
    bot = make_bot(AES_KEY)
    staffed.interact("oQueued", "message")
    staffed.enqueue("oQueued")
    staffed.interact("oServed", "message")
    staffed.accept("oServed", "wang@gh_test")
    kfid = staffed.wecom.add_account("客服")
    staffed.wecom.add_servicer(kfid, "zhangsan")
    staffed.wecom.add_servicer(kfid, "lisi", receiving=False)
    staffed.wecom.customer_says(kfid, "wmCustomer", "你好")
    staffed.wecom.connect_bot("http://127.0.0.1:5000/wecom/kf", TOKEN, AES_KEY)
    assert control("GET", "/state") == (200, {
        "appid": staffed.appid, "bot": {"url": bot.url, "safe_mode": True},
        "agents": [{"kf_account": "wang@gh_test", "nickname": "小王", "state": "online", "sessions": 1},
                   {"kf_account": "li@gh_test", "nickname": "li", "state": "busy", "sessions": 0},
                   {"kf_account": "zhao@gh_test", "nickname": "zhao", "state": "offline", "sessions": 0}],
        "sessions": [{"openid": "oServed", "kf_account": "wang@gh_test", "since": int(START)}],
        "wait_queue": [{"latest_time": int(START), "openid": "oQueued"}],
        "wecom_accounts": [{"open_kfid": kfid, "name": "客服", "servicers": {"zhangsan": True, "lisi": False},
                            "sessions": [{"external_userid": "wmCustomer", "service_state": 0, "servicer": None}]}],
        "wecom_bot": "http://127.0.0.1:5000/wecom/kf"})


@pytest.mark.parametrize("state, online, status", [("online", True, 1), ("busy", True, 2), ("offline", False, 0),
                                                   ("ONLINE", True, 1)])
def test_an_agent_changes_state(staffed, control, state, online, status):
    code, answer = control("PUT", "/agents/zhao@gh_test", {"state": state})
    assert code == 200 and answer["agent"]["state"] == state.lower()
    agent = staffed.agents["zhao@gh_test"]
    assert (agent["online"], agent["status"]) == (online, status)


@pytest.mark.parametrize("body, message", [
    ({"state": "onlin"}, "unknown agent state 'onlin': did you mean 'online'? (states: online, busy, offline)"),
    ({"state": "away"}, "unknown agent state 'away' (states: online, busy, offline)"),
    ({}, "unknown agent state None (states: online, busy, offline)"),
])
def test_a_bad_state_is_400_with_a_suggestion(staffed, control, body, message):
    assert control("PUT", "/agents/wang@gh_test", body) == (400, {"error": message})
    assert staffed.agents["wang@gh_test"]["online"] is True


def test_an_unknown_agent_is_404_naming_it_and_the_agents(staffed, control):
    assert control("PUT", "/agents/nobody@gh_test", {"state": "online"}) == (404, {
        "error": "no agent 'nobody@gh_test' (the agents: wang@gh_test, li@gh_test, zhao@gh_test)"})


def test_agents_are_added_once(sandbox, control):
    assert control("POST", "/agents", {"kf_account": "wang@gh_test", "state": "busy", "nickname": "小王"}) == (
        200, {"agent": {"kf_account": "wang@gh_test", "nickname": "小王", "state": "busy", "sessions": 0}})
    assert sandbox.agents["wang@gh_test"]["kf_wx"] == "sandbox_wang"
    code, answer = control("POST", "/agents", {"kf_account": "wang@gh_test"})
    assert code == 409 and answer["error"].startswith("cannot add wang@gh_test: 65406")
    code, answer = control("POST", "/agents", {"kf_account": "no-at-sign"})
    assert code == 400 and answer["error"].startswith("cannot add no-at-sign: 65404")
    assert control("POST", "/agents", {"state": "online"}) == (400, {
        "error": "an agent needs its kf account, e.g. wang@gh_test"})


def test_a_whole_conversation_reaches_the_bot(staffed, control, make_bot):
    bot = make_bot(AES_KEY)
    transfer = {"status": 200, "message_type": "transfer_customer_service", "content": None, "kf_account": None}
    code, said = control("POST", "/users/oUser/say", {"text": "人工"})
    assert code == 200 and {k: said["answer"][k] for k in transfer} == transfer
    assert {k: v for k, v in said.items() if k != "answer"} == {k: v for k, v in where(
        "oUser", waiting=True, bot=bot.url).items() if k != "answer"}
    code, accepted = control("POST", "/users/oUser/accept", {})          # wang: the one online (li is busy)
    assert code == 200 and accepted["with_agent"] == "wang@gh_test" and accepted["answer"]["status"] == 200
    assert control("POST", "/users/oUser/say", {"text": "在吗"}) == (
        200, where("oUser", "wang@gh_test", bot=bot.url))                 # to the agent: nothing pushed
    assert control("POST", "/users/oUser/agent-says", {"text": "您好"}) == (
        200, dict(where("oUser", "wang@gh_test", bot=bot.url), written_by="wang@gh_test"))
    code, closed = control("POST", "/users/oUser/close")
    assert code == 200 and closed["closed_by"] == "wang@gh_test" and closed["with_agent"] is None
    code, again = control("POST", "/users/oUser/say", {"text": "你好"})
    assert again["answer"]["content"] == "收到：你好"
    assert [getattr(m, "event", m.type) for m in bot.received] == [
        "text", "kf_create_session", "kf_close_session", "text"]
    assert [(r["opercode"], r["text"]) for r in staffed.records] == [(2003, "在吗"), (2002, "您好")]


def test_an_event_is_pushed_with_its_key(sandbox, control, make_bot):
    bot = make_bot()
    code, answer = control("POST", "/users/oUser/event", {"event": "CLICK", "key": "人工"})
    assert code == 200 and answer["answer"]["message_type"] == "transfer_customer_service" and answer["waiting"]
    assert (bot.received[0].event, bot.received[0].key) == ("click", "人工")
    assert control("POST", "/users/oUser/event", {"event": "CLICK", "key": 3}) == (
        400, {"error": "'key' must be a string, got 3"})


def test_accept_names_an_agent_or_takes_the_one_online(staffed, control):
    staffed.interact("oUser", "message")
    staffed.set_online("li@gh_test", True)
    code, answer = control("POST", "/users/oUser/accept", {})
    assert (code, answer) == (400, {"error": "several agents are online (wang@gh_test, li@gh_test): "
                                             "name the one accepting oUser"})
    assert control("POST", "/users/oUser/accept", {"kf_account": "li@gh_test"}) == (
        200, where("oUser", "li@gh_test"))
    for name in ("wang@gh_test", "li@gh_test"):
        staffed.set_online(name, False)
    assert control("POST", "/users/oOther/accept", {}) == (409, {
        "error": "no agent is online to accept oOther: set one online first"})


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/users/oNobody/accept", {"kf_account": "wang@gh_test"}),
    ("POST", "/users/oNobody/close", None),
    ("POST", "/users/oNobody/agent-says", {"text": "hi"}),
    ("POST", "/users/oNobody/lapse", None),
    ("POST", "/users/oNobody/switch", {"kf_account": "wang@gh_test"}),
])
def test_an_unknown_user_is_404_naming_them(staffed, control, method, path, body):
    assert control(method, path, body) == (404, {"error": "no user 'oNobody': nobody with that openid has written yet"})


@pytest.mark.parametrize("path, body, status, message", [
    ("/users/oUser/close", None, 409, "oUser is in no session with an agent"),
    ("/users/oUser/lapse", None, 409, "oUser is in no session with an agent"),
    ("/users/oUser/accept", {"kf_account": "zhao@gh_test"}, 409, "zhao@gh_test is offline: set them online first"),
    ("/users/oUser/accept", {"kf_account": "ghost@gh_test"}, 404,
     "no agent 'ghost@gh_test' (the agents: wang@gh_test, li@gh_test, zhao@gh_test)"),
    ("/users/oUser/say", {"text": ""}, 400, "'text' must be a non-empty string"),
    ("/users/oUser/say", {}, 400, "'text' must be a non-empty string"),
])
def test_refusals_name_the_user_or_agent(staffed, control, path, body, status, message):
    staffed.interact("oUser", "message")
    assert control("POST", path, body) == (status, {"error": message})


def test_switch_and_lapse(staffed, control):
    staffed.interact("oUser", "message")
    staffed.accept("oUser", "wang@gh_test")
    assert control("POST", "/users/oUser/switch", {"kf_account": "li@gh_test"}) == (200, where("oUser", "li@gh_test"))
    assert control("POST", "/users/oUser/accept", {"kf_account": "wang@gh_test"}) == (409, {
        "error": "oUser is served by another agent: switch the session instead"})
    assert control("POST", "/users/oUser/lapse") == (200, where("oUser"))
    assert staffed.sessions == {}


@pytest.mark.parametrize("raw, message", [(b"[1, 2]", "the body must be a JSON object, got list"),
                                          (b"{not json", "the body must be a JSON object (UTF-8)")])
def test_a_body_that_is_no_json_object_is_400(sandbox, control, raw, message):
    assert control("POST", "/users/oUser/say", raw=raw) == (400, {"error": message})


@pytest.mark.parametrize("method, path", [("GET", "/nothing"), ("GET", "/users/oUser/say"), ("DELETE", "/state"),
                                          ("GET", "")])
def test_an_unknown_endpoint_is_404_listing_them(sandbox, control, method, path):
    code, answer = control(method, path)
    assert code == 404
    assert answer["error"].startswith(f"no control endpoint {method} /sandbox{path or '/'} (the endpoints: "
                                      "GET /sandbox/state; POST /sandbox/agents;")


def test_a_bot_that_does_not_answer_is_502_and_the_change_stands(staffed, control):
    url = f"http://127.0.0.1:{closed_port()}/wechat"
    staffed.connect_bot(url, TOKEN)
    staffed.interact("oUser", "message")
    code, answer = control("POST", "/users/oUser/accept", {"kf_account": "wang@gh_test"})
    assert code == 502
    assert answer["error"].startswith(f"the bot at {url} did not answer the push: ConnectionError")
    assert answer["error"].endswith("(the session is open all the same)")
    assert staffed.sessions["oUser"]["kf_account"] == "wang@gh_test"
    code, answer = control("POST", "/users/oUser/say", {"text": "hi"})
    assert code == 200 and answer["answer"] is None                     # in a session: nothing to push
    staffed.lapse("oUser")
    code, answer = control("POST", "/users/oUser/say", {"text": "hi"})
    assert code == 502 and answer["error"].startswith(f"the bot at {url} did not answer the push")


def test_control_calls_are_not_api_calls(staffed, control):
    staffed.faults.fail_next(-1)
    assert control("GET", "/state")[0] == 200
    assert control("POST", "/users/oUser/say", {"text": "hi"})[0] == 200
    assert staffed.calls == []


def test_a_sandbox_bug_is_500_in_the_same_shape(sandbox, control, monkeypatch, caplog):
    def broken(openid: str, text: str) -> None:
        raise RuntimeError("a bug")
    monkeypatch.setattr(sandbox, "user_says", broken)
    assert control("POST", "/users/oUser/say", {"text": "hi"}) == (500, {
        "error": "the sandbox failed on POST /sandbox/users/oUser/say: see its log"})
    assert "RuntimeError: a bug" in caplog.text
