"""kf accounts over HTTP: add, update, delete, head image, invitations, lists, the kf switch."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import ApiError, Sandbox
from kf_plugin.testing.sandbox.endpoints import ENDPOINTS

from .conftest import Api, Clock

ADD = "/customservice/kfaccount/add"
UPDATE = "/customservice/kfaccount/update"
DELETE = "/customservice/kfaccount/del"
HEADIMG = "/customservice/kfaccount/uploadheadimg"
INVITE = "/customservice/kfaccount/inviteworker"
LIST = "/cgi-bin/customservice/getkflist"
ONLINE = "/cgi-bin/customservice/getonlinekflist"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 1000
SEVEN_DAYS = 7 * 86400


def kf_list(api: Api) -> dict:
    answer = api.get(LIST)
    assert answer["errcode"] == 0, answer
    return {entry["kf_account"]: entry for entry in answer["kf_list"]}


def upload(api: Api, kf_account, data: bytes, field: str = "media") -> dict:
    query = {"access_token": api.token}
    if kf_account is not None:
        query["kf_account"] = kf_account
    files = {field: ("head.jpg", data, "image/jpeg")}
    return api.http.post(api.url + HEADIMG, params=query, files=files, timeout=10).json()


# -- add / update / delete ----------------------------------------------------------------

def test_add_lists_the_account(api):
    answer = api.post(ADD, {"kf_account": "test1@test", "nickname": "客服1", "password": "ignored"})
    assert (answer["errcode"], answer["errmsg"]) == (0, "ok")
    assert api.post(ADD, {"kf_account": "test2@test", "nickname": "客服2"})["errcode"] == 0
    listed = kf_list(api)
    assert listed["test1@test"] == {"kf_account": "test1@test", "kf_nick": "客服1", "kf_id": "1001",
                                    "kf_headimgurl": ""}
    assert listed["test2@test"]["kf_id"] == "1002"


@pytest.mark.parametrize("kf_account, nickname, expected", [
    ("abcdefghij@test", "x" * 16, 0),
    ("a_1@gh_example", "客" * 16, 0),
    ("abcdefghijk@test", "ok", 65404),
    ("nodomain", "ok", 65404),
    ("@test", "ok", 65404),
    ("a@", "ok", 65404),
    ("a-b@test", "ok", 65404),
    (None, "ok", 65404),
    (12, "ok", 65404),
    ("ok@test", "", 65403),
    ("ok@test", "   ", 65403),
    ("ok@test", "客" * 17, 65403),
    ("ok@test", None, 65403),
])
def test_add_checks_account_and_nickname(api, kf_account, nickname, expected):
    assert api.post(ADD, {"kf_account": kf_account, "nickname": nickname})["errcode"] == expected
    assert (kf_account in kf_list(api)) == (expected == 0)


def test_add_refuses_an_existing_account(api):
    api.post(ADD, {"kf_account": "test1@test", "nickname": "a"})
    assert api.post(ADD, {"kf_account": "test1@test", "nickname": "b"})["errcode"] == 65406
    assert kf_list(api)["test1@test"]["kf_nick"] == "a"


def test_add_refuses_the_101st_account(api, sandbox):
    for number in range(99):
        sandbox.add_agent(f"kf{number}@test", f"agent {number}")
    assert api.post(ADD, {"kf_account": "kf99@test", "nickname": "100th"})["errcode"] == 0
    assert api.post(ADD, {"kf_account": "kf100@test", "nickname": "101st"})["errcode"] == 65405
    assert len(kf_list(api)) == 100


@pytest.mark.parametrize("body, expected", [
    ({"kf_account": "test1@test", "nickname": "新名字"}, 0),
    ({"kf_account": "nobody@test", "nickname": "x"}, 65401),
    ({"kf_account": "test1@test", "nickname": ""}, 65403),
    ({"kf_account": "test1@test", "nickname": "x" * 17}, 65403),
])
def test_update(api, sandbox, body, expected):
    sandbox.add_agent("test1@test", "old")
    assert api.post(UPDATE, body)["errcode"] == expected
    assert kf_list(api)["test1@test"]["kf_nick"] == ("新名字" if expected == 0 else "old")


def test_delete_by_post_json(api, sandbox):
    sandbox.add_agent("test1@test", "a")
    assert api.post(DELETE, {"kf_account": "test1@test"})["errcode"] == 0
    assert kf_list(api) == {}
    assert api.post(DELETE, {"kf_account": "test1@test"})["errcode"] == 65401


def test_delete_by_legacy_get(api, sandbox):
    sandbox.add_agent("test1@test", "a")
    assert api.get(DELETE, kf_account="test1@test")["errcode"] == 0
    assert kf_list(api) == {}
    assert api.get(DELETE, kf_account="test1@test")["errcode"] == 65401
    assert api.get(DELETE)["errcode"] == 65401


def test_delete_ends_the_accounts_sessions(api, sandbox):
    sandbox.add_agent("test1@test", "a", wx="agent_wx1", online=True)
    sandbox.interact("oUser1", "message")
    api.post("/customservice/kfsession/create", {"kf_account": "test1@test", "openid": "oUser1"})
    assert sandbox.sessions["oUser1"]["kf_account"] == "test1@test"
    api.post(DELETE, {"kf_account": "test1@test"})
    assert sandbox.sessions == {}
    assert api.get("/customservice/kfsession/getsession", openid="oUser1")["kf_account"] == ""


# -- head image -----------------------------------------------------------------------------

def test_upload_head_image_sets_an_http_url(api, sandbox):
    sandbox.add_agent("test1@test", "a")
    assert upload(api, "test1@test", JPEG)["errcode"] == 0
    assert kf_list(api)["test1@test"]["kf_headimgurl"].startswith("http://")
    call = sandbox.calls_to(HEADIMG)[-1]
    assert call.body == {"media": len(JPEG)} and call.query["kf_account"] == "test1@test"


@pytest.mark.parametrize("kf_account, data, field, expected", [
    ("test1@test", b"\xff\xd8" + b"\x00" * (5 * 1024 * 1024 - 2), "media", 0),
    ("test1@test", b"\xff\xd8" + b"\x00" * (5 * 1024 * 1024 - 1), "media", 40009),
    ("test1@test", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "media", 40005),
    ("test1@test", b"", "media", 40005),
    ("test1@test", JPEG, "image", 41005),
    ("nobody@test", JPEG, "media", 65401),
    (None, JPEG, "media", 65401),
])
def test_upload_head_image_errors(api, sandbox, kf_account, data, field, expected):
    sandbox.add_agent("test1@test", "a")
    assert upload(api, kf_account, data, field)["errcode"] == expected
    assert bool(kf_list(api)["test1@test"]["kf_headimgurl"]) == (expected == 0)


# -- invitations --------------------------------------------------------------------------

def test_invite_waits_seven_days_then_expires(api, sandbox, clock: Clock):
    sandbox.add_agent("test1@test", "a")
    assert api.post(INVITE, {"kf_account": "test1@test", "invite_wx": "agent_wx1"})["errcode"] == 0
    entry = kf_list(api)["test1@test"]
    assert (entry["invite_wx"], entry["invite_expire_time"], entry["invite_status"]) == (
        "agent_wx1", int(clock.now) + SEVEN_DAYS, "waiting")
    assert "kf_wx" not in entry
    clock.advance(SEVEN_DAYS - 1)
    api.fetch_token()  # the first one expired long ago
    assert kf_list(api)["test1@test"]["invite_status"] == "waiting"
    clock.advance(1)
    assert kf_list(api)["test1@test"]["invite_status"] == "expired"
    with pytest.raises(ValueError, match="expired invitation"):
        sandbox.accept_invite("test1@test")
    assert api.post(INVITE, {"kf_account": "test1@test", "invite_wx": "agent_wx2"})["errcode"] == 0


def test_accepting_binds_the_account(api, sandbox):
    sandbox.add_agent("test1@test", "a")
    api.post(INVITE, {"kf_account": "test1@test", "invite_wx": "agent_wx1"})
    sandbox.accept_invite("test1@test")
    entry = kf_list(api)["test1@test"]
    assert entry["kf_wx"] == "agent_wx1"
    assert not {"invite_wx", "invite_status", "invite_expire_time"} & set(entry)


def test_rejecting_shows_rejected_and_allows_a_new_invitation(api, sandbox):
    sandbox.add_agent("test1@test", "a")
    api.post(INVITE, {"kf_account": "test1@test", "invite_wx": "agent_wx1"})
    sandbox.reject_invite("test1@test")
    assert kf_list(api)["test1@test"]["invite_status"] == "rejected"
    with pytest.raises(ValueError):
        sandbox.accept_invite("test1@test")
    assert api.post(INVITE, {"kf_account": "test1@test", "invite_wx": "agent_wx1"})["errcode"] == 0
    assert kf_list(api)["test1@test"]["invite_status"] == "waiting"


def test_answering_without_an_invitation_is_a_usage_error(sandbox):
    sandbox.add_agent("test1@test", "a")
    with pytest.raises(ValueError, match="no invitation"):
        sandbox.accept_invite("test1@test")
    with pytest.raises(ApiError) as refused:
        sandbox.reject_invite("nobody@test")
    assert refused.value.errcode == 65401


@pytest.mark.parametrize("invite_wx", ["1abcdef", "short", "has space1", "x" * 21, "", None, 123])
def test_invite_refuses_an_invalid_wechat_id(api, sandbox, invite_wx):
    sandbox.add_agent("test1@test", "a")
    assert api.post(INVITE, {"kf_account": "test1@test", "invite_wx": invite_wx})["errcode"] == 65409


@pytest.mark.parametrize("setup, kf_account, invite_wx, expected", [
    ("none", "nobody@test", "agent_wx1", 65401),
    ("bound", "test1@test", "agent_wx1", 65407),
    ("bound", "test1@test", "agent_wx2", 65412),
    ("invited", "test1@test", "agent_wx1", 65408),
    ("invited", "test1@test", "agent_wx2", 65411),
])
def test_invite_refusals(api, sandbox, setup, kf_account, invite_wx, expected):
    sandbox.add_agent("test1@test", "a", wx="agent_wx1" if setup == "bound" else None)
    if setup == "invited":
        api.post(INVITE, {"kf_account": "test1@test", "invite_wx": "agent_wx1"})
    assert api.post(INVITE, {"kf_account": kf_account, "invite_wx": invite_wx})["errcode"] == expected


def test_a_wechat_user_can_hold_at_most_five_accounts(api, sandbox):
    for number in range(5):
        sandbox.add_agent(f"kf{number}@test", "a", wx="busy_agent")
    sandbox.add_agent("kf5@test", "a")
    assert api.post(INVITE, {"kf_account": "kf5@test", "invite_wx": "busy_agent"})["errcode"] == 65410
    with pytest.raises(ApiError) as refused:
        sandbox.add_agent("kf6@test", "a", wx="busy_agent")
    assert refused.value.errcode == 65410
    assert "kf6@test" not in sandbox.agents  # nothing is left behind by a refused add_agent


def test_accepting_a_sixth_account_is_refused(api, sandbox):
    sandbox.add_agent("kf5@test", "a")
    api.post(INVITE, {"kf_account": "kf5@test", "invite_wx": "busy_agent"})
    for number in range(5):
        sandbox.add_agent(f"kf{number}@test", "a", wx="busy_agent")
    with pytest.raises(ApiError) as refused:
        sandbox.accept_invite("kf5@test")
    assert refused.value.errcode == 65410


# -- online ----------------------------------------------------------------------------------

def test_online_list_shows_online_agents_with_their_open_sessions(api, sandbox):
    sandbox.add_agent("on1@test", "a", wx="agent_wx1", online=True)
    sandbox.add_agent("on2@test", "b", wx="agent_wx2", online=True, status=3)
    sandbox.add_agent("off@test", "c", wx="agent_wx3")
    for openid in ("oUser1", "oUser2"):
        sandbox.interact(openid, "message")
        api.post("/customservice/kfsession/create", {"kf_account": "on1@test", "openid": openid})
    answer = api.get(ONLINE)
    assert answer["errcode"] == 0
    assert answer["kf_online_list"] == [
        {"kf_account": "on1@test", "status": 1, "kf_id": "1001", "accepted_case": 2},
        {"kf_account": "on2@test", "status": 3, "kf_id": "1002", "accepted_case": 0},
    ]
    sandbox.set_online("on2@test", False)
    assert [e["kf_account"] for e in api.get(ONLINE)["kf_online_list"]] == ["on1@test"]


def test_only_bound_accounts_can_be_online(sandbox):
    sandbox.add_agent("test1@test", "a")
    for attempt in (lambda: sandbox.set_online("test1@test"),
                    lambda: sandbox.add_agent("test2@test", "b", online=True)):
        with pytest.raises(ApiError) as refused:
            attempt()
        assert refused.value.errcode == 65402
    assert set(sandbox.agents) == {"test1@test"}
    with pytest.raises(ApiError):
        sandbox.set_online("nobody@test")


def test_agents_view(sandbox):
    sandbox.add_agent("test1@test", "a", wx="agent_wx1", online=True)
    agent = sandbox.agents["test1@test"]
    assert (agent["kf_wx"], agent["online"], agent["status"], agent["accepted_case"]) == ("agent_wx1", True, 1, 0)


# -- the kf switch -----------------------------------------------------------------------------

KF_PATHS = sorted(path for path, endpoint in ENDPOINTS.items() if endpoint.needs_kf)


def test_every_customservice_path_is_behind_the_kf_switch():
    assert KF_PATHS == sorted(p for p in ENDPOINTS if "customservice" in p)


@pytest.mark.parametrize("path", KF_PATHS)
def test_kf_disabled_answers_65400(clock, path):
    sandbox = Sandbox(clock=clock, kf_enabled=False)
    with sandbox.serve() as server:
        api = Api(server.url, sandbox)
        api.fetch_token()
        assert api.post(path, {"kf_account": "test1@test", "nickname": "a"})["errcode"] == 65400
        sandbox.kf_enabled = True
        assert api.post(path, {})["errcode"] != 65400


def test_kf_disabled_still_sends_plain_custom_messages(clock):
    sandbox = Sandbox(clock=clock, kf_enabled=False)
    sandbox.interact("oUser1", "message")
    with sandbox.serve() as server:
        api = Api(server.url, sandbox)
        api.fetch_token()
        text = {"touser": "oUser1", "msgtype": "text", "text": {"content": "hi"}}
        assert api.post("/cgi-bin/message/custom/send", text)["errcode"] == 0
        as_agent = dict(text, customservice={"kf_account": "test1@test"})
        assert api.post("/cgi-bin/message/custom/send", as_agent)["errcode"] == 65400
