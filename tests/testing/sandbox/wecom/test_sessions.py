"""Service states over HTTP: get, trans and its allowed changes, 95014, and the servicers' side with its events."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox import WeComError

from .conftest import CUSTOMER, OTHER_CUSTOMER, Kf, errcode


def last_event(wecom):
    return wecom.messages[-1]["event"]


def test_a_customer_never_seen_is_unknown_and_one_who_entered_is_in_state_4(kf: Kf, wecom, kfid):
    assert errcode(kf.state(kfid)) == 40096
    wecom.customer_enters(kfid, CUSTOMER)
    answer = kf.state(kfid)
    assert (answer["errcode"], answer["service_state"], answer["servicer_userid"]) == (0, 4, "")


def test_the_customers_message_moves_4_to_0(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    assert kf.state(kfid)["service_state"] == 0
    assert wecom.service_state(kfid, CUSTOMER) == (0, None)


ALLOWED = {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (3, 3), (3, 4)}
PATHS = {0: [], 1: [1], 2: [2], 3: [3], 4: [3, 4]}  # trans calls that bring a new session to the state


@pytest.mark.parametrize("start", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("target", [0, 1, 2, 3, 4])
def test_trans_allows_exactly_the_documented_changes(kf: Kf, wecom, kfid, start, target):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    for state in PATHS[start]:
        assert errcode(kf.trans(kfid, state, "zhangsan" if state == 3 else None)) == 0
    answer = kf.trans(kfid, target, "lisi" if target == 3 else None)
    if (start, target) in ALLOWED:
        assert errcode(answer) == 0 and kf.state(kfid)["service_state"] == target
    else:
        assert errcode(answer) == 40058 and f"from {start} to {target}" in answer["errmsg"]
        assert kf.state(kfid)["service_state"] == start


def test_state_3_names_its_servicer_and_3_to_3_moves_to_another(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 3, "zhangsan")
    assert kf.state(kfid)["servicer_userid"] == "zhangsan"
    same = kf.trans(kfid, 3, "zhangsan")
    assert errcode(same) == 40058 and "serves the session already" in same["errmsg"]
    assert errcode(kf.trans(kfid, 3, "lisi")) == 0 and kf.state(kfid)["servicer_userid"] == "lisi"
    kf.trans(kfid, 4)
    assert kf.state(kfid) == {"errcode": 0, "errmsg": "ok", "service_state": 4, "servicer_userid": ""}


@pytest.mark.parametrize("servicer, expected", [
    (None, 40058), ("wangwu", 95014), ("zhaoliu", 95014), ("nobody", 95014), ("outsider", 95014)])
def test_state_3_needs_an_activated_receiving_servicer_of_the_account(kf: Kf, wecom, kfid, servicer, expected):
    other = wecom.add_account("其他")
    wecom.add_servicer(other, "outsider")
    wecom.customer_says(kfid, CUSTOMER, "人工")
    answer = kf.trans(kfid, 3, servicer)
    assert errcode(answer) == expected and kf.state(kfid)["service_state"] == 0


def test_state_4_cannot_be_left_by_api_only_by_the_customer(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 3, "zhangsan")
    kf.trans(kfid, 4)
    assert [errcode(kf.trans(kfid, state, "zhangsan")) for state in range(5)] == [40058] * 5
    wecom.customer_says(kfid, CUSTOMER, "又来了")
    assert kf.state(kfid)["service_state"] == 0


@pytest.mark.parametrize("body, expected", [
    ({"external_userid": CUSTOMER, "service_state": 1}, 95000),
    ({"open_kfid": "wk" + "Z" * 30, "external_userid": CUSTOMER, "service_state": 1}, 95004),
    ({"open_kfid": "KFID", "external_userid": "wmNobody", "service_state": 1}, 40096),
    ({"open_kfid": "KFID", "external_userid": CUSTOMER, "service_state": 5}, 40058),
    ({"open_kfid": "KFID", "external_userid": CUSTOMER, "service_state": "1"}, 40058),
    ({"open_kfid": "KFID", "external_userid": CUSTOMER}, 40058),
])
def test_trans_refusals(kf: Kf, wecom, kfid, body, expected):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    body = {k: (kfid if v == "KFID" else v) for k, v in body.items()}
    assert errcode(kf.post("/cgi-bin/kf/service_state/trans", body)) == expected


def test_trans_gives_a_code_on_the_first_pool_and_human_state_and_on_every_end(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    assert "msg_code" not in kf.trans(kfid, 1)
    assert kf.trans(kfid, 2)["msg_code"]
    assert kf.trans(kfid, 3, "zhangsan")["msg_code"]
    assert "msg_code" not in kf.trans(kfid, 3, "lisi")
    assert kf.trans(kfid, 4)["msg_code"]
    wecom.customer_says(kfid, CUSTOMER, "新会话")
    assert kf.trans(kfid, 3, "zhangsan")["msg_code"]  # a new session: its first human state


def test_api_changes_make_no_items(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.trans(kfid, 2)
    kf.trans(kfid, 3, "zhangsan")
    kf.trans(kfid, 4)
    assert [m["msgtype"] for m in wecom.messages] == ["text"]


# -- the servicers' side ----------------------------------------------------------------------

def test_a_servicer_takes_from_the_pool_change_type_1_with_a_code(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 2)
    item = wecom.servicer_takes(kfid, CUSTOMER, "zhangsan")
    event = item["event"]
    assert (item["origin"], item["msgtype"], "open_kfid" in item, "external_userid" in item) == (
        4, "event", False, False)
    assert (event["event_type"], event["change_type"], event["new_servicer_userid"]) == (
        "session_status_change", 1, "zhangsan")
    assert (event["open_kfid"], event["external_userid"], "old_servicer_userid" in event) == (kfid, CUSTOMER, False)
    assert event["msg_code"] and kf.state(kfid)["servicer_userid"] == "zhangsan"


def test_a_transfer_between_servicers_is_change_type_2_without_a_code(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 3, "zhangsan")
    event = wecom.servicer_takes(kfid, CUSTOMER, "lisi")["event"]
    assert (event["change_type"], event["old_servicer_userid"], event["new_servicer_userid"]) == (2, "zhangsan", "lisi")
    assert "msg_code" not in event


def test_ending_is_change_type_3_with_a_code_and_reopening_is_4(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 3, "zhangsan")
    ended = wecom.servicer_ends(kfid, CUSTOMER)["event"]
    assert (ended["change_type"], ended["old_servicer_userid"]) == (3, "zhangsan")
    assert "new_servicer_userid" not in ended
    assert ended["msg_code"] and kf.state(kfid)["service_state"] == 4
    reopened = wecom.servicer_takes(kfid, CUSTOMER, "lisi")["event"]
    assert (reopened["change_type"], reopened["new_servicer_userid"], "msg_code" in reopened) == (4, "lisi", False)
    assert kf.state(kfid)["service_state"] == 3


def test_servicers_write_with_origin_5(wecom, kfid, kf: Kf):
    wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 3, "zhangsan")
    msgid = wecom.servicer_says(kfid, CUSTOMER, "您好，我是张三")
    message = wecom.messages[-1]
    assert message["msgid"] == msgid
    assert (message["origin"], message["servicer_userid"], message["open_kfid"], message["external_userid"]) == (
        5, "zhangsan", kfid, CUSTOMER)
    assert message["text"] == {"content": "您好，我是张三"}


@pytest.mark.parametrize("state", [0, 1, 3])
def test_servicer_takes_refuses_a_new_or_bot_session_or_its_own(kf: Kf, wecom, kfid, state):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    if state:
        kf.trans(kfid, state, "zhangsan" if state == 3 else None)
    with pytest.raises(ValueError, match="can take"):
        wecom.servicer_takes(kfid, CUSTOMER, "zhangsan")


@pytest.mark.parametrize("servicer", ["wangwu", "zhaoliu", "nobody"])
def test_servicer_takes_needs_a_receiving_activated_servicer(kf: Kf, wecom, kfid, servicer):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.trans(kfid, 2)
    with pytest.raises(WeComError) as refused:
        wecom.servicer_takes(kfid, CUSTOMER, servicer)
    assert refused.value.errcode == 95014


def test_servicer_ends_and_says_need_a_servicer(wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    with pytest.raises(ValueError, match="no servicer serves"):
        wecom.servicer_ends(kfid, CUSTOMER)
    with pytest.raises(ValueError, match="no servicer serves"):
        wecom.servicer_says(kfid, CUSTOMER, "在")
    with pytest.raises(WeComError):
        wecom.servicer_ends(kfid, OTHER_CUSTOMER)


def test_receiving_status_changes_are_events_for_each_account_served(kf: Kf, wecom, kfid):
    other = wecom.add_account("其他")
    wecom.add_servicer(other, "zhangsan")
    wecom.set_receiving("zhangsan", False)
    stopped = [m["event"] for m in wecom.messages]
    assert stopped == [
        {"event_type": "servicer_status_change", "servicer_userid": "zhangsan", "status": 2, "open_kfid": kfid},
        {"event_type": "servicer_status_change", "servicer_userid": "zhangsan", "status": 2, "open_kfid": other}]
    wecom.customer_says(kfid, CUSTOMER, "人工")
    assert errcode(kf.trans(kfid, 3, "zhangsan")) == 95014
    wecom.set_receiving("zhangsan", False)  # no change: no event
    wecom.set_receiving("zhangsan", True)
    assert last_event(wecom)["status"] == 1 and len(wecom.messages) == 5
    assert errcode(kf.trans(kfid, 3, "zhangsan")) == 0
    with pytest.raises(ValueError, match="no member"):
        wecom.set_receiving("nobody")
