"""send_msg and send_msg_on_event over HTTP: the message checks, states, the 5-in-48-hours limit, msgids, codes."""
from __future__ import annotations

import pytest

from ..conftest import Clock
from .conftest import CUSTOMER, OTHER_CUSTOMER, Kf, errcode

SEND = "/cgi-bin/kf/send_msg"
MENU = {"head_content": "请选择", "list": [{"type": "click", "click": {"id": "101", "content": "满意"}},
                                        {"type": "view", "view": {"url": "https://example.com", "content": "看看"}}]}


@pytest.fixture
def talking(wecom, kfid) -> str:
    """The customer wrote: a new session in state 0."""
    wecom.customer_says(kfid, CUSTOMER, "你好")
    return kfid


def send(kf: Kf, kfid: str, msgtype: str, content, **extra):
    return kf.post(SEND, dict({"touser": CUSTOMER, "open_kfid": kfid, "msgtype": msgtype, msgtype: content}, **extra))


@pytest.mark.parametrize("msgtype, content", [
    ("text", {"content": "您好"}),
    ("image", {"media_id": "MEDIA"}),
    ("voice", {"media_id": "MEDIA"}),
    ("video", {"media_id": "MEDIA"}),
    ("file", {"media_id": "MEDIA"}),
    ("link", {"title": "t", "desc": "d", "url": "https://example.com", "thumb_media_id": "MEDIA"}),
    ("miniprogram", {"appid": "wx123", "title": "t", "thumb_media_id": "MEDIA", "pagepath": "pages/index"}),
    ("msgmenu", MENU),
    ("location", {"name": "公司", "address": "深圳", "latitude": 22.5, "longitude": 113.9}),
    ("ca_link", {"link_url": "https://work.weixin.qq.com/ca/xyz"}),
])
def test_every_type_is_accepted_and_recorded(kf: Kf, wecom, talking, msgtype, content):
    answer = send(kf, talking, msgtype, content)
    assert errcode(answer) == 0 and answer["msgid"]
    [sent] = wecom.sent
    assert (sent["msgid"], sent["touser"], sent["open_kfid"], sent["msgtype"], sent[msgtype], sent["on_event"]) == (
        answer["msgid"], CUSTOMER, talking, msgtype, content, None)


@pytest.mark.parametrize("body, expected", [
    ({"msgtype": "news", "news": {}}, 40008),
    ({"msgtype": "text"}, 40058),
    ({"msgtype": "text", "text": {"content": ""}}, 44004),
    ({"msgtype": "text", "text": {"content": "字" * 683}}, 45002),  # 2049 bytes
    ({"msgtype": "image", "image": {}}, 41006),
    ({"msgtype": "link", "link": {"title": "t", "url": "u"}}, 40058),
    ({"msgtype": "location", "location": {"latitude": "22", "longitude": 113}}, 40058),
    ({"msgtype": "msgmenu", "msgmenu": {"list": []}}, 40058),
    ({"msgtype": "msgmenu", "msgmenu": {"list": [{"type": "click", "click": {}}]}}, 40058),
    ({"msgtype": "msgmenu", "msgmenu": {"list": [{"type": "bogus"}]}}, 40058),
    ({"msgtype": "text", "text": {"content": "hi"}, "msgid": "x" * 33}, 40058),
    ({"msgtype": "text", "text": {"content": "hi"}, "msgid": "空格 id"}, 40058),
])
def test_malformed_messages(kf: Kf, wecom, talking, body, expected):
    answer = kf.post(SEND, dict(body, touser=CUSTOMER, open_kfid=talking))
    assert errcode(answer) == expected and wecom.sent == []


def test_text_of_2048_bytes_is_accepted(kf: Kf, talking):
    assert errcode(send(kf, talking, "text", {"content": "字" * 682 + "ab"})) == 0


def test_unknown_account_and_customer(kf: Kf, talking):
    assert errcode(kf.send_text("wk" + "Q" * 30, "hi")) == 95004
    assert errcode(kf.send_text(talking, "hi", external_userid="wmNobody")) == 40096


def test_a_given_msgid_is_answered_and_cannot_be_used_twice(kf: Kf, wecom, talking):
    assert kf.send_text(talking, "一", msgid="order-1")["msgid"] == "order-1"
    again = kf.send_text(talking, "二", msgid="order-1")
    assert errcode(again) == 40058 and "msgid order-1 has been used" in again["errmsg"]
    assert [s["msgid"] for s in wecom.sent] == ["order-1"]


@pytest.mark.parametrize("state", [2, 3, 4])
def test_send_works_only_in_states_0_and_1(kf: Kf, talking, state):
    assert errcode(kf.send_text(talking, "在 0")) == 0
    kf.trans(talking, 1)
    assert errcode(kf.send_text(talking, "在 1")) == 0
    for step in {2: [2], 3: [3], 4: [3, 4]}[state]:
        kf.trans(talking, step, "zhangsan" if step == 3 else None)
    answer = kf.send_text(talking, "不行")
    assert errcode(answer) == 95018 and answer["errmsg"].startswith("send msg session status invalid")


def test_a_customer_never_written_to_cannot_be_sent_to(kf: Kf, wecom, kfid):
    wecom.customer_enters(kfid, CUSTOMER)
    assert errcode(kf.send_text(kfid, "欢迎")) == 95018


def test_five_messages_per_customer_message(kf: Kf, wecom, talking, clock: Clock):
    assert [errcode(kf.send_text(talking, str(n))) for n in range(6)] == [0, 0, 0, 0, 0, 95001]
    clock.advance(60)
    wecom.customer_says(talking, CUSTOMER, "还有问题")
    assert [errcode(kf.send_text(talking, str(n))) for n in range(6)] == [0, 0, 0, 0, 0, 95001]


def test_the_limit_is_per_customer_and_account(kf: Kf, wecom, talking):
    other = wecom.add_account("其他")
    wecom.customer_says(talking, OTHER_CUSTOMER, "我也在")
    wecom.customer_says(other, CUSTOMER, "这边")
    for _ in range(5):
        kf.send_text(talking, "x")
    assert errcode(kf.send_text(talking, "x")) == 95001
    assert errcode(kf.send_text(talking, "x", external_userid=OTHER_CUSTOMER)) == 0
    assert errcode(kf.send_text(other, "x")) == 0


def test_48_hours_after_the_customers_last_message_nothing_can_be_sent(kf: Kf, wecom, talking, clock: Clock):
    clock.advance(48 * 3600 - 1)
    assert errcode(kf.send_text(talking, "还在")) == 0
    clock.advance(1)
    answer = kf.send_text(talking, "太晚")
    assert errcode(answer) == 95001 and "48 hours" in answer["errmsg"]
    wecom.customer_says(talking, CUSTOMER, "我回来了")
    assert errcode(kf.send_text(talking, "欢迎回来")) == 0


def test_api_messages_are_not_items(kf: Kf, wecom, talking):
    kf.send_text(talking, "您好")
    assert [m["origin"] for m in wecom.messages] == [3]


# -- send_msg_on_event ------------------------------------------------------------------------------

def welcome_code(wecom, kfid, customer=CUSTOMER):
    return wecom.customer_enters(kfid, customer)["event"].get("welcome_code")


def test_a_welcome_code_sends_one_text_or_menu_within_20_seconds(kf: Kf, wecom, kfid, clock: Clock):
    code = welcome_code(wecom, kfid)
    clock.advance(19)
    answer = kf.on_event(code, "欢迎光临")
    assert errcode(answer) == 0 and answer["msgid"]
    assert wecom.sent[-1]["on_event"] == "welcome" and wecom.sent[-1]["text"] == {"content": "欢迎光临"}
    again = kf.on_event(code)
    assert errcode(again) == 40058 and "one message per code" in again["errmsg"]


def test_a_welcome_code_expires_after_20_seconds(kf: Kf, wecom, kfid, clock: Clock):
    code = welcome_code(wecom, kfid)
    clock.advance(20)
    answer = kf.on_event(code)
    assert errcode(answer) == 40058 and "expired" in answer["errmsg"]


def test_a_welcome_code_takes_a_menu_but_not_an_image(kf: Kf, wecom, kfid):
    code = welcome_code(wecom, kfid)
    assert errcode(kf.post("/cgi-bin/kf/send_msg_on_event",
                           {"code": code, "msgtype": "image", "image": {"media_id": "m"}})) == 40008
    assert errcode(kf.post("/cgi-bin/kf/send_msg_on_event", {"code": code, "msgtype": "msgmenu", "msgmenu": MENU})) == 0


def test_no_welcome_code_within_48_hours_of_a_welcome_or_an_api_message(kf: Kf, wecom, kfid, clock: Clock):
    kf.on_event(welcome_code(wecom, kfid))
    clock.advance(3600)
    assert welcome_code(wecom, kfid) is None
    clock.advance(47 * 3600)
    assert welcome_code(wecom, kfid) is not None
    wecom.customer_says(kfid, OTHER_CUSTOMER, "你好")
    kf.send_text(kfid, "您好", external_userid=OTHER_CUSTOMER)
    assert welcome_code(wecom, kfid, OTHER_CUSTOMER) is None


def test_unknown_codes(kf: Kf):
    assert errcode(kf.on_event("no-such-code")) == 40058
    assert errcode(kf.post("/cgi-bin/kf/send_msg_on_event", {"msgtype": "text", "text": {"content": "x"}})) == 40058


def test_pool_and_taken_codes_need_their_state_and_allow_text_only(kf: Kf, wecom, talking, clock: Clock):
    pool = kf.trans(talking, 2)["msg_code"]
    assert errcode(kf.post("/cgi-bin/kf/send_msg_on_event",
                           {"code": pool, "msgtype": "msgmenu", "msgmenu": MENU})) == 40008
    taken = kf.trans(talking, 3, "zhangsan")["msg_code"]
    answer = kf.on_event(pool, "排队中")
    assert errcode(answer) == 95018 and "needs service_state 2" in answer["errmsg"]
    clock.advance(48 * 3600 - 1)
    assert errcode(kf.on_event(taken, "人工客服已接入")) == 0
    assert wecom.sent[-1]["on_event"] == "taken"


def test_a_taken_code_expires_after_48_hours(kf: Kf, talking, clock: Clock):
    taken = kf.trans(talking, 3, "zhangsan")["msg_code"]
    clock.advance(48 * 3600)
    assert errcode(kf.on_event(taken)) == 40058


def test_an_end_code_sends_within_20_seconds_while_the_session_is_ended(kf: Kf, wecom, talking, clock: Clock):
    kf.trans(talking, 3, "zhangsan")
    code = wecom.servicer_ends(talking, CUSTOMER)["event"]["msg_code"]
    clock.advance(19)
    assert errcode(kf.post("/cgi-bin/kf/send_msg_on_event", {"code": code, "msgtype": "msgmenu", "msgmenu": MENU})) == 0
    assert wecom.sent[-1]["on_event"] == "end"


def test_an_end_code_is_void_once_the_customer_writes_again(kf: Kf, wecom, talking):
    kf.trans(talking, 3, "zhangsan")
    code = kf.trans(talking, 4)["msg_code"]
    wecom.customer_says(talking, CUSTOMER, "再问一下")
    assert errcode(kf.on_event(code, "感谢咨询")) == 95018


def test_event_messages_do_not_count_in_the_5(kf: Kf, wecom, kfid):
    code = welcome_code(wecom, kfid)
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.on_event(code)
    assert [errcode(kf.send_text(kfid, str(n))) for n in range(6)] == [0, 0, 0, 0, 0, 95001]


def test_a_used_msgid_is_refused_on_events_too_and_the_code_survives(kf: Kf, wecom, kfid):
    code = welcome_code(wecom, kfid)
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.send_text(kfid, "一", msgid="m-1")
    refused = kf.on_event(code, msgid="m-1")
    assert errcode(refused) == 40058 and "msgid m-1 has been used" in refused["errmsg"]
    assert errcode(kf.on_event(code, msgid="m-2")) == 0


def test_menu_clicks_come_back_with_the_menu_id(kf: Kf, wecom, talking):
    with pytest.raises(ValueError, match="no menu sent"):
        wecom.customer_says(talking, CUSTOMER, "满意", menu_id="101")
    send(kf, talking, "msgmenu", MENU)
    wecom.customer_says(talking, CUSTOMER, "满意", menu_id="101")
    assert wecom.messages[-1]["text"] == {"content": "满意", "menu_id": "101"}
