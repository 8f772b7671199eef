"""WeComKf against a local stand-in for qyapi.weixin.qq.com: each call's request and parsed answer, refusals
before sending, and WeCom's refusals as typed errors."""
import pytest

from kf_plugin.errors import WeChatNetworkError
from kf_plugin.wecom.api import (
    Customer,
    CustomerBatch,
    KfAccount,
    Servicer,
    ServicerResult,
    ServiceState,
    State,
    Statistic,
    SyncPage,
    WeComKf,
)
from kf_plugin.wecom.client import WeComClient
from kf_plugin.wecom.errors import ServicerUnavailableError, SessionStateError, SyncTokenError

from .fake_qyapi import FakeQyapi, served

KF = "/cgi-bin/kf"
T0, T1 = 1_700_000_000, 1_700_086_400
TEXT = {"msgid": "m1", "open_kfid": "wkA", "external_userid": "wmC", "send_time": T0, "origin": 3,
        "msgtype": "text", "text": {"content": "人工"}}
ENTER = {"msgid": "m2", "send_time": T0, "origin": 4, "msgtype": "event",
         "event": {"event_type": "enter_session", "open_kfid": "wkA", "external_userid": "wmC", "scene": "menu_1",
                   "welcome_code": "WELCOME"}}
MENU_ITEMS = [("101", "满意"), ("102", "不满意"),
              {"type": "view", "view": {"url": "https://x.example", "content": "详情"}}]


@pytest.fixture
def qyapi():
    with served(FakeQyapi()) as fake:
        yield fake


@pytest.fixture
def kf(qyapi):
    return WeComKf(WeComClient(qyapi.corpid, qyapi.secret, api_base_url=qyapi.url, timeout=2))


# (call, method, path, what WeCom receives: the body of a POST or the query of a GET, its answer, our result)
CALLS = [
    pytest.param(lambda kf: kf.add_account("售后客服", "MEDIA"), "POST", f"{KF}/account/add",
                 {"name": "售后客服", "media_id": "MEDIA"}, {"open_kfid": "wkA"}, "wkA", id="add_account"),
    pytest.param(lambda kf: kf.delete_account("wkA"), "POST", f"{KF}/account/del", {"open_kfid": "wkA"}, {}, None,
                 id="delete_account"),
    pytest.param(lambda kf: kf.update_account("wkA", name="新名字"), "POST", f"{KF}/account/update",
                 {"open_kfid": "wkA", "name": "新名字"}, {}, None, id="update_account-name"),
    pytest.param(lambda kf: kf.update_account("wkA", media_id="M2"), "POST", f"{KF}/account/update",
                 {"open_kfid": "wkA", "media_id": "M2"}, {}, None, id="update_account-avatar"),
    pytest.param(lambda kf: kf.accounts(offset=2, limit=2), "POST", f"{KF}/account/list", {"offset": 2, "limit": 2},
                 {"account_list": [
                     {"open_kfid": "wkA", "name": "客服A", "avatar": "https://a", "manage_privilege": True},
                     {"open_kfid": "wkB", "name": "客服B"}]},
                 (KfAccount("wkA", "客服A", "https://a", True), KfAccount("wkB", "客服B", "", None)), id="accounts"),
    pytest.param(lambda kf: kf.contact_way("wkA", "menu_1"), "POST", f"{KF}/add_contact_way",
                 {"open_kfid": "wkA", "scene": "menu_1"}, {"url": "https://work.weixin.qq.com/kfid/kfc1?enc_scene=X"},
                 "https://work.weixin.qq.com/kfid/kfc1?enc_scene=X", id="contact_way"),
    pytest.param(lambda kf: kf.contact_way("wkA"), "POST", f"{KF}/add_contact_way", {"open_kfid": "wkA"},
                 {"url": "https://work.weixin.qq.com/kfid/kfc1"}, "https://work.weixin.qq.com/kfid/kfc1",
                 id="contact_way-no-scene"),
    pytest.param(lambda kf: kf.add_servicers("wkA", ["zhangsan", "lisi"]), "POST", f"{KF}/servicer/add",
                 {"open_kfid": "wkA", "userid_list": ["zhangsan", "lisi"]},
                 {"result_list": [{"userid": "zhangsan", "errcode": 0, "errmsg": "success"},
                                  {"userid": "lisi", "errcode": 60111, "errmsg": "invalid userid"}]},
                 (ServicerResult("zhangsan", 0, "success"), ServicerResult("lisi", 60111, "invalid userid")),
                 id="add_servicers"),
    pytest.param(lambda kf: kf.remove_servicers("wkA", ["lisi"]), "POST", f"{KF}/servicer/del",
                 {"open_kfid": "wkA", "userid_list": ["lisi"]}, {"result_list": [{"userid": "lisi", "errcode": 0}]},
                 (ServicerResult("lisi", 0, ""),), id="remove_servicers"),
    pytest.param(lambda kf: kf.servicers("wkA"), "GET", f"{KF}/servicer/list", {"open_kfid": "wkA"},
                 {"servicer_list": [{"userid": "zhangsan", "status": 0},
                                    {"userid": "lisi", "status": 1, "stop_type": 1}, {"department_id": 2}]},
                 (Servicer("zhangsan", 0), Servicer("lisi", 1, 1), Servicer(None, department_id=2)), id="servicers"),
    pytest.param(lambda kf: kf.service_state("wkA", "wmC"), "POST", f"{KF}/service_state/get",
                 {"open_kfid": "wkA", "external_userid": "wmC"}, {"service_state": 3, "servicer_userid": "zhangsan"},
                 ServiceState(State.HUMAN, "zhangsan"), id="service_state"),
    pytest.param(lambda kf: kf.service_state("wkA", "wmC"), "POST", f"{KF}/service_state/get",
                 {"open_kfid": "wkA", "external_userid": "wmC"}, {"service_state": 1, "servicer_userid": ""},
                 ServiceState(State.BOT, None), id="service_state-bot"),
    pytest.param(lambda kf: kf.trans("wkA", "wmC", State.HUMAN, "zhangsan"), "POST", f"{KF}/service_state/trans",
                 {"open_kfid": "wkA", "external_userid": "wmC", "service_state": 3, "servicer_userid": "zhangsan"},
                 {"msg_code": "MSG_CODE"}, "MSG_CODE", id="trans-to-servicer"),
    pytest.param(lambda kf: kf.trans("wkA", "wmC", State.POOL), "POST", f"{KF}/service_state/trans",
                 {"open_kfid": "wkA", "external_userid": "wmC", "service_state": 2}, {}, None, id="trans-to-pool"),
    pytest.param(lambda kf: kf.send("wkA", "wmC", "image", {"media_id": "M"}, msgid="m-1"), "POST", f"{KF}/send_msg",
                 {"touser": "wmC", "open_kfid": "wkA", "msgtype": "image", "image": {"media_id": "M"}, "msgid": "m-1"},
                 {"msgid": "m-1"}, "m-1", id="send"),
    pytest.param(lambda kf: kf.send_text("wkA", "wmC", "您好"), "POST", f"{KF}/send_msg",
                 {"touser": "wmC", "open_kfid": "wkA", "msgtype": "text", "text": {"content": "您好"}},
                 {"msgid": "WECOM1"}, "WECOM1", id="send_text"),
    pytest.param(lambda kf: kf.send_msgmenu("wkA", "wmC", "满意吗？", MENU_ITEMS, tail="谢谢"), "POST",
                 f"{KF}/send_msg",
                 {"touser": "wmC", "open_kfid": "wkA", "msgtype": "msgmenu", "msgmenu": {
                     "head_content": "满意吗？", "tail_content": "谢谢", "list": [
                         {"type": "click", "click": {"id": "101", "content": "满意"}},
                         {"type": "click", "click": {"id": "102", "content": "不满意"}}, MENU_ITEMS[2]]}},
                 {"msgid": "WECOM2"}, "WECOM2", id="send_msgmenu"),
    pytest.param(lambda kf: kf.send_on_event("WELCOME", "text", {"content": "欢迎"}), "POST",
                 f"{KF}/send_msg_on_event", {"code": "WELCOME", "msgtype": "text", "text": {"content": "欢迎"}},
                 {"msgid": "E1"}, "E1", id="send_on_event"),
    pytest.param(lambda kf: kf.sync_msg("wkA", "CURSOR", "TOKEN", 500), "POST", f"{KF}/sync_msg",
                 {"open_kfid": "wkA", "limit": 500, "cursor": "CURSOR", "token": "TOKEN"},
                 {"next_cursor": "NEXT", "has_more": 1, "msg_list": [TEXT, ENTER]},
                 SyncPage("NEXT", True, (TEXT, ENTER)), id="sync_msg"),
    pytest.param(lambda kf: kf.sync_msg("wkA"), "POST", f"{KF}/sync_msg", {"open_kfid": "wkA", "limit": 1000},
                 {"next_cursor": "", "has_more": 0, "msg_list": []}, SyncPage(None, False, ()), id="sync_msg-first"),
    pytest.param(lambda kf: kf.sync_msg("wkA", "C1", voice_format=0), "POST", f"{KF}/sync_msg",
                 {"open_kfid": "wkA", "limit": 1000, "cursor": "C1", "voice_format": 0}, {"has_more": 0},
                 SyncPage("C1", False, ()), id="sync_msg-nothing-new-keeps-the-cursor"),
    pytest.param(lambda kf: kf.customers(["wmC", "wmX"], with_context=True), "POST", f"{KF}/customer/batchget",
                 {"external_userid_list": ["wmC", "wmX"], "need_enter_session_context": 1},
                 {"customer_list": [{"external_userid": "wmC", "nickname": "张三", "avatar": "https://a", "gender": 1,
                                     "unionid": "oU", "enter_session_context": {"scene": "menu_1"}}],
                  "invalid_external_userid": ["wmX"]},
                 CustomerBatch((Customer("wmC", "张三", "https://a", 1, "oU", {"scene": "menu_1"}),), ("wmX",)),
                 id="customers"),
    pytest.param(lambda kf: kf.corp_statistics("wkA", T0, T1), "POST", f"{KF}/get_corp_statistic",
                 {"open_kfid": "wkA", "start_time": T0, "end_time": T1},
                 {"statistic_list": [{"stat_time": T0, "statistic": {"session_cnt": 2, "customer_cnt": 1}}]},
                 (Statistic(T0, {"session_cnt": 2, "customer_cnt": 1}),), id="corp_statistics"),
    pytest.param(lambda kf: kf.servicer_statistics("wkA", T0, T1, "zhangsan"), "POST", f"{KF}/get_servicer_statistic",
                 {"open_kfid": "wkA", "start_time": T0, "end_time": T1, "servicer_userid": "zhangsan"},
                 {"statistic_list": [{"stat_time": T1, "statistic": {"session_cnt": 5}}]},
                 (Statistic(T1, {"session_cnt": 5}),), id="servicer_statistics"),
]


@pytest.mark.parametrize("call, method, path, sent, answer, expected", CALLS)
def test_each_call_sends_what_wecom_expects_and_parses_its_answer(qyapi, kf, call, method, path, sent, answer,
                                                                   expected):
    qyapi.answer(path, answer)
    assert call(kf) == expected
    [made] = qyapi.calls_to(path)
    assert made.method == method
    received = made.body if method == "POST" else {k: v for k, v in made.query.items() if k != "access_token"}
    assert received == sent


REFUSED = [
    (lambda kf: kf.send("wkA", "wmC", "sticker", {}), r"unknown message type 'sticker' \(one of text, image"),
    (lambda kf: kf.send("wkA", "wmC", "link", {"title": "t"}), "a link message needs url, thumb_media_id"),
    (lambda kf: kf.send_text("wkA", "wmC", "x", msgid="has space"), "a msgid is 1–32 characters"),
    (lambda kf: kf.send_text("", "wmC", "x"), "open_kfid must not be empty"),
    (lambda kf: kf.send_text("wkA", "", "x"), "external_userid must not be empty"),
    (lambda kf: kf.send_on_event("C", "image", {"media_id": "M"}), r"'image' \(one of text, msgmenu\)"),
    (lambda kf: kf.send_on_event("", "text", {"content": "x"}), "code must not be empty"),
    (lambda kf: kf.send_msgmenu("wkA", "wmC", "head", []), "a menu holds 1–10 items, not 0"),
    (lambda kf: kf.send_msgmenu("wkA", "wmC", "head", [("1", "x")] * 11), "a menu holds 1–10 items, not 11"),
    (lambda kf: kf.trans("wkA", "wmC", 0), "can be moved to state 1 .* not 0"),
    (lambda kf: kf.trans("wkA", "wmC", State.HUMAN), r"state 3 \(servicer\) needs a servicer_userid"),
    (lambda kf: kf.trans("wkA", "wmC", State.POOL, "zhangsan"), "only state 3 takes one"),
    (lambda kf: kf.sync_msg("wkA", limit=0), "limit of 1–1000 messages, not 0"),
    (lambda kf: kf.sync_msg("wkA", limit=1001), "limit of 1–1000 messages, not 1001"),
    (lambda kf: kf.accounts(limit=101), "limit 1–100"),
    (lambda kf: kf.accounts(offset=-1), "offset ≥ 0"),
    (lambda kf: kf.contact_way("wkA", "bad scene!"), "a scene is at most 32 characters"),
    (lambda kf: kf.contact_way("wkA", "s" * 33), "a scene is at most 32 characters"),
    (lambda kf: kf.customers("wmC"), "external_userids is a list of ids, not the string 'wmC'"),
    (lambda kf: kf.customers([]), "takes 1–100 non-empty ids, not 0"),
    (lambda kf: kf.add_servicers("wkA", ["u"] * 101), "userids takes 1–100 non-empty ids, not 101"),
    (lambda kf: kf.update_account("wkA"), "needs a new name, a new media_id, or both"),
    (lambda kf: kf.corp_statistics("wkA", T1, T0), f"end_time {T0} is before start_time {T1}"),
    (lambda kf: kf.add_account("", "M"), "name must not be empty"),
]


@pytest.mark.parametrize("call, message", REFUSED)
def test_bad_arguments_are_refused_before_anything_is_sent(qyapi, kf, call, message):
    with pytest.raises(ValueError, match=message):
        call(kf)
    assert qyapi.calls == []


@pytest.mark.parametrize("call, path, errcode, cls", [
    (lambda kf: kf.send_text("wkA", "wmC", "hi"), f"{KF}/send_msg", 95018, SessionStateError),
    (lambda kf: kf.trans("wkA", "wmC", State.HUMAN, "lisi"), f"{KF}/service_state/trans", 95014,
     ServicerUnavailableError),
    (lambda kf: kf.sync_msg("wkA", "C", "EXPIRED"), f"{KF}/sync_msg", 95007, SyncTokenError),
])
def test_wecom_refusals_come_out_typed(qyapi, kf, call, path, errcode, cls):
    qyapi.fail_next(path, errcode)
    with pytest.raises(cls, match=f"WeCom API error {errcode} on {path}"):
        call(kf)


@pytest.mark.parametrize("call, path, answer, message", [
    (lambda kf: kf.send_text("wkA", "wmC", "hi"), f"{KF}/send_msg", {}, "answered without msgid"),
    (lambda kf: kf.add_account("客服", "M"), f"{KF}/account/add", {"open_kfid": ""}, "answered without open_kfid"),
    (lambda kf: kf.service_state("wkA", "wmC"), f"{KF}/service_state/get", {}, "answered without service_state"),
    (lambda kf: kf.sync_msg("wkA"), f"{KF}/sync_msg", {"msg_list": "nope"}, "msg_list that is not a list of objects"),
])
def test_an_answer_lacking_what_it_must_hold_is_a_network_error(qyapi, kf, call, path, answer, message):
    qyapi.answer(path, answer)
    with pytest.raises(WeChatNetworkError, match=message):
        call(kf)


def test_a_pull_that_timed_out_is_pulled_again_but_a_send_is_not(qyapi):
    kf = WeComKf(WeComClient(qyapi.corpid, qyapi.secret, api_base_url=qyapi.url, timeout=0.2))
    qyapi.answer(f"{KF}/sync_msg", {"next_cursor": "N", "has_more": 0, "msg_list": [TEXT]})
    qyapi.hold(f"{KF}/sync_msg")
    assert kf.sync_msg("wkA", "C").messages == (TEXT,)
    qyapi.hold(f"{KF}/send_msg")
    with pytest.raises(WeChatNetworkError, match="timed out"):
        kf.send_text("wkA", "wmC", "hi")
    assert len(qyapi.calls_to(f"{KF}/sync_msg")) == 2 and len(qyapi.calls_to(f"{KF}/send_msg")) == 1


def test_the_states():
    assert [int(s) for s in State] == [0, 1, 2, 3, 4]
    assert ServiceState(3).state == State.HUMAN and ServicerResult("u", 0).ok and not ServicerResult("u", 1).ok
