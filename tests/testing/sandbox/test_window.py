"""The 48-hour window and quotas over HTTP, and typing."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import DEFAULT_QUOTAS, Sandbox
from kf_plugin.testing.sandbox.window import build_quotas

from .conftest import Api, Clock

SEND = "/cgi-bin/message/custom/send"
TYPING = "/cgi-bin/message/custom/typing"
USER = "oUser1"
HOURS_48 = 48 * 3600


def send(api: Api, touser: str = USER) -> int:
    return api.post(SEND, {"touser": touser, "msgtype": "text", "text": {"content": "hi"}})["errcode"]


def typing(api: Api, command: str = "Typing", touser: str = USER) -> int:
    return api.post(TYPING, {"touser": touser, "command": command})["errcode"]


def test_default_quotas_are_the_current_docs():
    assert DEFAULT_QUOTAS == {"message": (5, HOURS_48), "click": (3, 60), "follow": (3, 60), "scan": (3, 60),
                              "payment": (None, HOURS_48)}


LIMITED = [("message", 5, HOURS_48), ("click", 3, 60), ("follow", 3, 60), ("scan", 3, 60)]


@pytest.mark.parametrize("action, count, validity", LIMITED)
def test_counted_grants_run_out_then_expire(api, sandbox, clock: Clock, action, count, validity):
    sandbox.interact(USER, action)
    assert [send(api) for _ in range(count + 1)] == [0] * count + [45047]
    clock.advance(validity - 1)
    api.fetch_token()
    assert send(api) == 45047
    clock.advance(1)
    assert send(api) == 45015
    assert len(sandbox.sent) == count


@pytest.mark.parametrize("action, count, validity", LIMITED + [("payment", None, HOURS_48)])
def test_grants_expire_after_their_validity(api, sandbox, clock: Clock, action, count, validity):
    sandbox.interact(USER, action)
    clock.advance(validity - 1)
    api.fetch_token()
    assert send(api) == 0
    clock.advance(1)
    assert send(api) == 45015


def test_payment_grants_are_unlimited(api, sandbox):
    sandbox.interact(USER, "payment")
    assert all(send(api) == 0 for _ in range(50))


def test_never_interacted_is_outside_the_window(api):
    answer = api.post(SEND, {"touser": "oStranger", "msgtype": "text", "text": {"content": "hi"}})
    assert answer["errcode"] == 45015
    assert answer["errmsg"].startswith("response out of time limit or subscription is canceled rid: ")


def test_over_quota_message(api, sandbox):
    sandbox.interact(USER, "click")
    for _ in range(3):
        send(api)
    answer = api.post(SEND, {"touser": USER, "msgtype": "text", "text": {"content": "hi"}})
    assert answer["errmsg"].startswith("out of response count limit rid: ")


def test_unfollowing_closes_the_window_until_a_new_interaction(api, sandbox):
    sandbox.interact(USER, "message")
    sandbox.unsubscribe(USER)
    assert send(api) == 45015
    sandbox.interact(USER, "follow")
    assert [send(api) for _ in range(4)] == [0, 0, 0, 45047]  # the old message grant is gone for good


def test_unsubscribing_an_unknown_user_is_a_usage_error(sandbox):
    with pytest.raises(ValueError, match="interact first"):
        sandbox.unsubscribe("oStranger")


def test_the_grant_expiring_first_is_used_first(api, sandbox, clock: Clock):
    sandbox.interact(USER, "message")
    sandbox.interact(USER, "click")
    assert [send(api) for _ in range(3)] == [0, 0, 0]  # the click's 60-second units
    clock.advance(60)
    assert [send(api) for _ in range(6)] == [0] * 5 + [45047]  # the message's five are all still there


def test_grants_add_up(api, sandbox):
    sandbox.interact(USER, "message")
    sandbox.interact(USER, "message")
    assert [send(api) for _ in range(11)] == [0] * 10 + [45047]


def test_interaction_time_can_be_in_the_past(api, sandbox, clock: Clock):
    sandbox.interact(USER, "message", at=clock.now - HOURS_48 + 10)
    assert send(api) == 0
    clock.advance(10)
    assert send(api) == 45015


def test_quota_table_can_be_overridden(clock: Clock):
    sandbox = Sandbox(clock=clock, quotas={"message": (20, HOURS_48), "payment": (20, HOURS_48)})
    sandbox.interact(USER, "message")
    sandbox.interact("oPayer", "payment")
    with sandbox.serve() as server:
        api = Api(server.url, sandbox)
        api.fetch_token()
        assert [send(api) for _ in range(21)] == [0] * 20 + [45047]
        assert [send(api, "oPayer") for _ in range(21)] == [0] * 20 + [45047]
        sandbox.interact("oClicker", "click")
        assert [send(api, "oClicker") for _ in range(4)] == [0, 0, 0, 45047]  # other rows keep their defaults


@pytest.mark.parametrize("quotas, message", [
    ({"rights_claim": (3, 60)}, "unknown action"),
    ({"message": 5}, "must be"),
    ({"message": (0, 60)}, "positive int or None"),
    ({"message": (True, 60)}, "positive int or None"),
    ({"message": (2.5, 60)}, "positive int or None"),
    ({"message": (5, 0)}, "positive seconds"),
    ({"message": (5, "1h")}, "positive seconds"),
])
def test_bad_quota_tables_are_refused(quotas, message):
    with pytest.raises(ValueError, match=message):
        build_quotas(quotas)


def test_unknown_actions_are_refused(sandbox):
    with pytest.raises(ValueError, match="unknown action"):
        sandbox.interact(USER, "rights_claim")
    with pytest.raises(ValueError, match="openid"):
        sandbox.interact("", "message")


# -- typing ---------------------------------------------------------------------------------

def test_typing_lasts_15_seconds_and_can_be_cancelled(api, sandbox, clock: Clock):
    sandbox.interact(USER, "message")
    assert typing(api) == 0
    clock.advance(14)
    assert typing(api) == 45081
    assert typing(api, "CancelTyping") == 0
    assert typing(api) == 0
    clock.advance(15)
    assert typing(api) == 0
    assert sandbox.sent == []  # typing uses no quota and sends nothing
    assert [send(api) for _ in range(5)] == [0] * 5


def test_typing_needs_an_interaction_in_the_last_30_seconds(api, sandbox, clock: Clock):
    sandbox.interact(USER, "click")
    clock.advance(30)
    assert typing(api) == 0
    assert typing(api, "CancelTyping") == 0
    clock.advance(1)
    assert typing(api) == 45080
    assert typing(api, "CancelTyping") == 45080
    sandbox.interact(USER, "message")
    assert typing(api) == 0


def test_a_message_sent_ends_typing(api, sandbox):
    sandbox.interact(USER, "message")
    assert typing(api) == 0
    assert send(api) == 0
    assert typing(api) == 0


@pytest.mark.parametrize("command", ["typing", "Cancel", "", None, 1])
def test_typing_commands(api, sandbox, command):
    sandbox.interact(USER, "message")
    assert typing(api, command) == 45072


@pytest.mark.parametrize("setup, touser, expected", [
    ("none", "oStranger", 45080),
    ("unfollowed", USER, 45080),
    ("none", "", 40003),
    ("none", None, 40003),
])
def test_typing_for_users_who_cannot_see_it(api, sandbox, setup, touser, expected):
    sandbox.interact(USER, "message")
    if setup == "unfollowed":
        sandbox.unsubscribe(USER)
    assert typing(api, touser=touser) == expected


def test_typing_body_errors(api):
    assert api.post(TYPING, None)["errcode"] == 44002
    assert api.post_raw(TYPING, b"nope")["errcode"] == 47001
