"""WeCom's control endpoints (``/sandbox/wecom/...``) over real HTTP: each calls the WeCom facade, answers where
the customer's session stands, and names what is wrong with 400/404/409. The bot is wecom_bot.py (wechatpy's
enterprise crypto) on its own loopback port."""
from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from ..conftest import Control
from .conftest import CUSTOMER, Kf
from .wecom_bot import WeComBot

UNKNOWN_KFID = "wk" + "X" * 30


def customer(kfid: str, external_userid: str = CUSTOMER) -> str:
    return f"/wecom/{kfid}/customers/{external_userid}"


def where(kfid: str, state: int, servicer: Optional[str] = None, bot: Optional[str] = None,
          **extra: Any) -> Dict[str, Any]:
    return dict({"open_kfid": kfid, "external_userid": CUSTOMER, "bot": bot, "service_state": state,
                 "servicer": servicer}, **extra)


def test_a_customer_writes_and_the_bot_is_called_back(wecom, kfid, bot: WeComBot, control: Control):
    code, answer = control("POST", customer(kfid) + "/say", {"text": "你好"})
    [message] = wecom.messages
    assert (code, answer) == (200, where(kfid, 0, bot=bot.url, msgid=message["msgid"]))
    assert (message["origin"], message["text"]) == (3, {"content": "你好"})
    wecom.wait_for_callbacks()
    assert [heard["OpenKfId"] for heard in bot.heard] == [kfid]


def test_a_customer_clicks_an_option_of_a_menu_the_bot_sent(wecom, kfid, control: Control, kf: Kf):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    menu = {"head_content": "请选择", "list": [{"type": "click", "click": {"id": "101", "content": "人工"}}]}
    assert kf.post("/cgi-bin/kf/send_msg", {"touser": CUSTOMER, "open_kfid": kfid, "msgtype": "msgmenu",
                                            "msgmenu": menu})["errcode"] == 0
    code, answer = control("POST", customer(kfid) + "/say", {"text": "人工", "menu_id": "101"})
    assert code == 200 and wecom.messages[-1]["text"] == {"content": "人工", "menu_id": "101"}
    assert control("POST", customer(kfid) + "/say", {"text": "人工", "menu_id": "999"}) == (400, {
        "error": f"menu_id '999' is in no menu sent to {CUSTOMER}: send a msgmenu first"})


def test_servicers_take_write_pass_on_and_end(wecom, kfid, control: Control, kf: Kf):
    wecom.customer_says(kfid, CUSTOMER, "转人工")
    assert kf.trans(kfid, 2)["errcode"] == 0                         # the bot puts the customer in the pool
    code, taken = control("POST", customer(kfid) + "/servicer-takes", {"servicer": "zhangsan"})
    assert code == 200 and {k: v for k, v in taken.items() if k != "event"} == where(kfid, 3, "zhangsan")
    assert taken["event"]["change_type"] == 1 and taken["event"]["msg_code"]
    code, written = control("POST", customer(kfid) + "/servicer-says", {"text": "您好，我是张三"})
    assert (code, written) == (200, where(kfid, 3, "zhangsan", msgid=wecom.messages[-1]["msgid"],
                                          written_by="zhangsan"))
    assert (wecom.messages[-1]["origin"], wecom.messages[-1]["servicer_userid"]) == (5, "zhangsan")
    code, passed = control("POST", customer(kfid) + "/servicer-takes", {"servicer": "lisi"})
    assert code == 200 and (passed["servicer"], passed["event"]["change_type"]) == ("lisi", 2)
    assert passed["event"]["old_servicer_userid"] == "zhangsan"
    code, ended = control("POST", customer(kfid) + "/servicer-ends")
    assert code == 200 and (ended["service_state"], ended["servicer"], ended["ended_by"]) == (4, None, "lisi")
    assert ended["event"]["change_type"] == 3
    assert wecom.service_state(kfid, CUSTOMER) == (4, None)


@pytest.mark.parametrize("path, body, message", [
    (customer(UNKNOWN_KFID) + "/say", {"text": "你好"}, "no 微信客服 account '{bad}' (the accounts: {kfid})"),
    (customer("not-a-kfid") + "/servicer-ends", None, "no 微信客服 account 'not-a-kfid' (the accounts: {kfid})"),
    (customer("{kfid}", "wmNobody") + "/servicer-takes", {"servicer": "zhangsan"},
     "no customer 'wmNobody': nobody with that external_userid has written yet"),
    (customer("{kfid}", "wmNobody") + "/servicer-says", {"text": "hi"},
     "no customer 'wmNobody': nobody with that external_userid has written yet"),
    (customer("{kfid}") + "/servicer-takes", {"servicer": "ghost"},
     "no servicer 'ghost' of {kfid} (its servicers: zhangsan, lisi, wangwu, zhaoliu)"),
])
def test_an_unknown_account_customer_or_servicer_is_404_naming_them(wecom, kfid, control, path, body, message):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    assert control("POST", path.format(kfid=kfid), body) == (404, {
        "error": message.format(kfid=kfid, bad=UNKNOWN_KFID)})


@pytest.mark.parametrize("path, body, message", [
    ("/servicer-takes", {"servicer": "wangwu"}, "wangwu has stopped receiving customers"),
    ("/servicer-takes", {"servicer": "zhaoliu"}, "zhaoliu has not activated WeCom, so cannot take customers"),
    ("/servicer-takes", {"servicer": "zhangsan"}, ("zhangsan can take {customer} only from the pool, another "
                                                   "servicer or an ended session (state 0, servicer -)")),
    ("/servicer-ends", None, "no servicer serves {customer} on {kfid} (state 0)"),
    ("/servicer-says", {"text": "hi"}, "no servicer serves {customer} on {kfid} (state 0)"),
])
def test_what_wecoms_rules_refuse_is_409(wecom, kfid, control, path, body, message):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    assert control("POST", customer(kfid) + path, body) == (409, {
        "error": message.format(kfid=kfid, customer=CUSTOMER)})
    assert wecom.service_state(kfid, CUSTOMER) == (0, None)


@pytest.mark.parametrize("path, body, message", [
    ("/say", {"text": ""}, "'text' must be a non-empty string"),
    ("/say", {}, "'text' must be a non-empty string"),
    ("/say", {"text": "hi", "menu_id": 101}, "'menu_id' must be a non-empty string, got 101"),
    ("/servicer-takes", {}, "'servicer' must be a non-empty string"),
    ("/servicer-says", {"text": 3}, "'text' must be a non-empty string"),
])
def test_bad_input_is_400(wecom, kfid, control, path, body, message):
    assert control("POST", customer(kfid) + path, body) == (400, {"error": message})
    assert wecom.messages == []


def test_a_body_that_is_no_json_object_is_400(wecom, kfid, control):
    assert control("POST", customer(kfid) + "/say", raw=b"[1]") == (400, {
        "error": "the body must be a JSON object, got list"})


def test_the_wecom_endpoints_are_listed_for_an_unknown_path(control):
    code, answer = control("POST", "/wecom/nothing")
    assert code == 404 and answer["error"].endswith(
        "POST /sandbox/wecom/<open_kfid>/customers/<external_userid>/say; "
        "POST /sandbox/wecom/<open_kfid>/customers/<external_userid>/servicer-takes; "
        "POST /sandbox/wecom/<open_kfid>/customers/<external_userid>/servicer-ends; "
        "POST /sandbox/wecom/<open_kfid>/customers/<external_userid>/servicer-says)")
