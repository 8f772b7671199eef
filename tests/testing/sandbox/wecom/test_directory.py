"""kf accounts, links, servicers and customers over HTTP."""
from __future__ import annotations

import re

import pytest

from kf_plugin.testing.sandbox import WeComError

from .conftest import CUSTOMER, OTHER_CUSTOMER, Kf, errcode

ADD = "/cgi-bin/kf/account/add"
UPDATE = "/cgi-bin/kf/account/update"
DELETE = "/cgi-bin/kf/account/del"
LIST = "/cgi-bin/kf/account/list"
LINK = "/cgi-bin/kf/add_contact_way"
SERVICER_ADD = "/cgi-bin/kf/servicer/add"
SERVICER_DEL = "/cgi-bin/kf/servicer/del"
SERVICER_LIST = "/cgi-bin/kf/servicer/list"
CUSTOMERS = "/cgi-bin/kf/customer/batchget"


# -- accounts ---------------------------------------------------------------------------------

def test_account_add_list_update_delete(kf: Kf, wecom):
    open_kfid = kf.post(ADD, {"name": "售前客服", "media_id": "media-1"})["open_kfid"]
    assert re.fullmatch(r"wk[A-Za-z0-9_-]{30}", open_kfid)
    [listed] = kf.post(LIST, {"offset": 0, "limit": 100})["account_list"]
    assert listed["open_kfid"] == open_kfid and listed["name"] == "售前客服" and listed["manage_privilege"] is True
    assert listed["avatar"].startswith("https://wework.qpic.cn/")
    assert errcode(kf.post(UPDATE, {"open_kfid": open_kfid, "name": "售后客服"})) == 0
    assert kf.post(LIST, {})["account_list"][0]["name"] == "售后客服"
    assert errcode(kf.post(DELETE, {"open_kfid": open_kfid})) == 0
    assert kf.post(LIST, {})["account_list"] == [] and wecom.accounts == {}


@pytest.mark.parametrize("body, expected", [
    ({"media_id": "m"}, 40058),
    ({"name": "", "media_id": "m"}, 40058),
    ({"name": "一二三四五六七八九十一二三四五六七", "media_id": "m"}, 40058),  # 17 characters
    ({"name": "客服"}, 41006),
    ({"name": "客服", "media_id": "m" * 129}, 40007),
])
def test_account_add_refusals(kf: Kf, body, expected):
    answer = kf.post(ADD, body)
    assert errcode(answer) == expected and "open_kfid" not in answer


def test_account_names_of_16_characters_are_accepted(kf: Kf):
    assert errcode(kf.post(ADD, {"name": "一二三四五六七八九十一二三四五六", "media_id": "m"})) == 0


@pytest.mark.parametrize("open_kfid, expected", [(None, 95000), ("not-an-id", 95000), ("wk" + "A" * 30, 95004)])
@pytest.mark.parametrize("path", [UPDATE, DELETE, LINK])
def test_bad_and_unknown_open_kfids(kf: Kf, path, open_kfid, expected):
    body = {"name": "x"} if open_kfid is None else {"open_kfid": open_kfid, "name": "x"}
    assert errcode(kf.post(path, body)) == expected


def test_account_update_needs_something_to_change(kf: Kf, kfid):
    answer = kf.post(UPDATE, {"open_kfid": kfid})
    assert errcode(answer) == 40058 and "give name or media_id" in answer["errmsg"]


def test_account_list_pages_with_offset_and_limit(kf: Kf, wecom):
    ids = [wecom.add_account(f"客服{n}") for n in range(5)]
    assert [a["open_kfid"] for a in kf.post(LIST, {"offset": 1, "limit": 3})["account_list"]] == ids[1:4]
    assert [a["open_kfid"] for a in kf.get(LIST)["account_list"]] == ids  # old SDKs: GET without a body


@pytest.mark.parametrize("body", [{"offset": -1}, {"limit": 0}, {"limit": 101}, {"offset": "1"}])
def test_account_list_refuses_bad_paging(kf: Kf, body):
    assert errcode(kf.post(LIST, body)) == 40058


def test_deleting_an_account_forgets_its_sessions(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.post(DELETE, {"open_kfid": kfid})
    assert errcode(kf.state(kfid)) == 95004
    with pytest.raises(WeComError) as refused:
        wecom.customer_says(kfid, CUSTOMER, "还在吗")
    assert refused.value.errcode == 95004


# -- links ----------------------------------------------------------------------------------------

def test_contact_way_links_with_and_without_scene(kf: Kf, kfid):
    plain = kf.post(LINK, {"open_kfid": kfid})["url"]
    scened = kf.post(LINK, {"open_kfid": kfid, "scene": "menu_1"})["url"]
    assert re.fullmatch(r"https://work\.weixin\.qq\.com/kf/kfc[0-9a-f]{16}", plain)
    assert re.fullmatch(r"https://work\.weixin\.qq\.com/kf/kfc[0-9a-f]{16}\?enc_scene=ENC\S+", scened)


@pytest.mark.parametrize("scene", ["a" * 33, "中文", "a b", 7])
def test_contact_way_refuses_bad_scenes(kf: Kf, kfid, scene):
    assert errcode(kf.post(LINK, {"open_kfid": kfid, "scene": scene})) == 40058


# -- servicers ---------------------------------------------------------------------------------

def test_servicer_list_shows_receiving_status(kf: Kf, kfid):
    assert kf.get(SERVICER_LIST, open_kfid=kfid)["servicer_list"] == [
        {"userid": "zhangsan", "status": 0}, {"userid": "lisi", "status": 0},
        {"userid": "wangwu", "status": 1}, {"userid": "zhaoliu", "status": 0}]


def test_servicer_add_and_del_answer_per_userid(kf: Kf, wecom, kfid):
    wecom.add_member("sunqi")
    added = kf.post(SERVICER_ADD, {"open_kfid": kfid, "userid_list": ["sunqi", "nobody", "zhangsan"]})
    assert errcode(added) == 0
    assert [(r["userid"], r["errcode"]) for r in added["result_list"]] == [
        ("sunqi", 0), ("nobody", 60111), ("zhangsan", 0)]
    assert [s["userid"] for s in kf.get(SERVICER_LIST, open_kfid=kfid)["servicer_list"]][-1] == "sunqi"
    removed = kf.post(SERVICER_DEL, {"open_kfid": kfid, "userid_list": ["sunqi", "nobody"]})
    assert [(r["userid"], r["errcode"]) for r in removed["result_list"]] == [("sunqi", 0), ("nobody", 60111)]
    assert "sunqi" not in wecom.accounts[kfid]["servicers"]


@pytest.mark.parametrize("userids", [None, [], "zhangsan", [1], ["u"] * 101])
@pytest.mark.parametrize("path", [SERVICER_ADD, SERVICER_DEL])
def test_servicer_changes_need_1_to_100_userids(kf: Kf, kfid, path, userids):
    assert errcode(kf.post(path, {"open_kfid": kfid, "userid_list": userids})) == 40058


def test_servicer_list_of_an_unknown_account(kf: Kf):
    assert errcode(kf.get(SERVICER_LIST, open_kfid="wk" + "B" * 30)) == 95004
    assert errcode(kf.get(SERVICER_LIST)) == 95000


# -- customers ---------------------------------------------------------------------------------

def test_customer_batchget_lists_profiles_and_the_unknown_apart(kf: Kf, wecom, kfid):
    wecom.add_customer(CUSTOMER, "小明", gender=1, unionid="oUnion1")
    wecom.customer_enters(kfid, OTHER_CUSTOMER, scene="menu_1", scene_param="a=1")
    answer = kf.post(CUSTOMERS, {"external_userid_list": [CUSTOMER, OTHER_CUSTOMER, "wmNobody"]})
    first, second = answer["customer_list"]
    assert (first["external_userid"], first["nickname"], first["gender"], first["unionid"]) == (
        CUSTOMER, "小明", 1, "oUnion1")
    assert second["external_userid"] == OTHER_CUSTOMER and "unionid" not in second
    assert "enter_session_context" not in second
    assert answer["invalid_external_userid"] == ["wmNobody"]
    with_context = kf.post(CUSTOMERS, {"external_userid_list": [OTHER_CUSTOMER], "need_enter_session_context": 1})
    assert with_context["customer_list"][0]["enter_session_context"] == {"scene": "menu_1", "scene_param": "a=1"}


@pytest.mark.parametrize("ids", [None, [], [1], ["wm"] * 101])
def test_customer_batchget_needs_1_to_100_ids(kf: Kf, ids):
    assert errcode(kf.post(CUSTOMERS, {"external_userid_list": ids})) == 40058


def test_add_customer_refuses_what_cannot_be(wecom):
    with pytest.raises(ValueError, match="external_userid"):
        wecom.add_customer("")
    with pytest.raises(ValueError, match="gender"):
        wecom.add_customer(CUSTOMER, gender=3)


def test_add_servicer_refuses_a_malformed_userid_and_an_unknown_account(wecom, kfid):
    with pytest.raises(ValueError, match="userid"):
        wecom.add_servicer(kfid, "not a userid")
    with pytest.raises(WeComError) as refused:
        wecom.add_servicer("wk" + "C" * 30, "zhangsan")
    assert refused.value.errcode == 95004
