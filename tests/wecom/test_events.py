"""微信客服's system events as the hooks get them, and the registry of ``@kf.on_wecom_event`` hooks."""
from __future__ import annotations

import concurrent.futures
import logging

import pytest

from kf_plugin import KfPlugin
from kf_plugin.hooks import WeComEventHooks
from kf_plugin.wecom.events import WECOM_HOOK_EVENTS, Recalled, SendFailed, ServicerStatusChanged, wecom_event

KFID, USER = "wkKF0000000000000000000000000001", "wmCUSTOMER00000000000000000001"


def system(event_type: str, **fields) -> dict:
    return {"msgid": "e1", "open_kfid": KFID, "send_time": 1764300000, "origin": 4, "msgtype": "event",
            "event": {"event_type": event_type, "open_kfid": KFID, "external_userid": USER, **fields}}


@pytest.mark.parametrize("fail_type, reason", [
    (4, "beyond 48 hours of the customer's last message"),
    (5, "the session has ended"),
    (6, "over 5 messages since the customer's last message"),
    (10, "the customer refused messages"),
    (0, "unknown (fail_type 0)"),
    (7, "unknown (fail_type 7)"),
    (None, "unknown (fail_type None)"),
])
def test_a_failed_send_says_why_in_words(fail_type, reason):
    fields = {"fail_msgid": "m9"} if fail_type is None else {"fail_msgid": "m9", "fail_type": fail_type}
    event = wecom_event(system("msg_send_fail", **fields))
    assert isinstance(event, SendFailed)
    assert (event.external_userid, event.open_kfid, event.fail_msgid, event.fail_type, event.at) == (
        USER, KFID, "m9", fail_type, 1764300000.0)
    assert event.reason == reason


def test_a_fail_type_given_as_text_is_read_as_a_number():
    event = wecom_event(system("msg_send_fail", fail_msgid="m9", fail_type="6"))
    assert isinstance(event, SendFailed) and event.fail_type == 6 and event.reason.startswith("over 5 messages")


def test_recalls_and_a_servicers_status():
    customer = wecom_event(system("user_recall_msg", recall_msgid="m1"))
    servicer = wecom_event(system("servicer_recall_msg", recall_msgid="m2", servicer_userid="zhangsan"))
    status = wecom_event(system("servicer_status_change", servicer_userid="lisi", status=1))
    assert isinstance(customer, Recalled) and (customer.recall_msgid, customer.servicer_userid) == ("m1", None)
    assert isinstance(servicer, Recalled) and (servicer.recall_msgid, servicer.servicer_userid) == ("m2", "zhangsan")
    assert isinstance(status, ServicerStatusChanged) and status.receiving and status.stop_type is None


@pytest.mark.parametrize("item", [
    system("enter_session", scene="menu"),                     # the rules' event
    system("session_status_change", change_type=1),            # the lifecycle's
    {"msgid": "m1", "msgtype": "text", "text": {"content": "hi"}},
    {"msgid": "m1", "msgtype": "event", "event": "not an object"},
], ids=["enter-session", "session-change", "text", "malformed"])
def test_other_items_are_no_hook_event(item):
    assert wecom_event(item) is None


def test_an_unknown_event_is_refused_naming_the_known_ones():
    hooks = WeComEventHooks()
    with pytest.raises(ValueError) as info:
        hooks.on("msg_send_failed")
    assert str(info.value) == ("no such 微信客服 event: msg_send_failed (one of msg_send_fail, user_recall_msg, "
                               "servicer_recall_msg, servicer_status_change)")
    with pytest.raises(ValueError, match="enter_session"):   # the rules answer it: no hook hears it here
        KfPlugin().on_wecom_event("enter_session")


def test_hooks_hear_the_events_they_name_or_all_of_them():
    hooks, named, every = WeComEventHooks(), [], []
    hooks.on("msg_send_fail")(named.append)
    hooks.on()(every.append)
    events = [wecom_event(system(kind, fail_msgid="m", recall_msgid="m", servicer_userid="u"))
              for kind in WECOM_HOOK_EVENTS]
    for event in events:
        hooks.run(event, None)
    assert named == events[:1] and every == events


def test_hooks_run_on_the_executor_and_a_failing_one_is_logged_not_raised(caplog):
    hooks, heard = WeComEventHooks(), []

    @hooks.on("msg_send_fail")
    def broken(event):
        raise RuntimeError("the CRM is down")

    hooks.on("msg_send_fail")(heard.append)
    event = wecom_event(system("msg_send_fail", fail_msgid="m9", fail_type=5))
    with caplog.at_level(logging.ERROR), concurrent.futures.ThreadPoolExecutor(1) as executor:
        hooks.run(event, executor)
    assert heard == [event]
    [logged] = [record for record in caplog.records if "微信客服 event hook" in record.getMessage()]
    assert "broken" in logged.getMessage() and "msg_send_fail" in logged.getMessage()
    assert logged.exc_info[0] is RuntimeError
