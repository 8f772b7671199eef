"""sync_msg over HTTP: items and their shape, cursors and paging, scopes, tokens, the limit without a token,
3 days of history."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox.wecom import HISTORY, MAX_LIMIT, UNTOKENED_READS_PER_MINUTE

from ..conftest import Clock
from .conftest import CUSTOMER, OTHER_CUSTOMER, Kf, errcode


def read_all(kf: Kf, token: str, **body) -> list:
    """Every page until has_more is 0 (with a callback token, to stay clear of the limit without one)."""
    items, cursor = [], None
    while True:
        page = kf.sync(cursor=cursor, token=token, **body)
        assert errcode(page) == 0, page
        items += page["msg_list"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items


@pytest.fixture
def token(wecom, kfid, bot) -> str:
    """A callback token for ``kfid`` (a bot is connected, so every item brings one)."""
    wecom.customer_enters(kfid, CUSTOMER)
    wecom.wait_for_callbacks()
    return bot.tokens()[-1]


def test_sync_msg_gives_a_customers_text_with_its_account_and_origin(kf: Kf, wecom, kfid, clock: Clock):
    msgid = wecom.customer_says(kfid, CUSTOMER, "你好")
    page = kf.sync(open_kfid=kfid)
    assert (page["errcode"], page["has_more"]) == (0, 0) and page["next_cursor"]
    assert page["msg_list"] == [{"msgid": msgid, "open_kfid": kfid, "external_userid": CUSTOMER,
                                 "send_time": int(clock.now), "origin": 3, "msgtype": "text",
                                 "text": {"content": "你好"}}]


def test_enter_session_items_have_no_open_kfid_at_the_top(kf: Kf, wecom, kfid):
    wecom.customer_enters(kfid, CUSTOMER, scene="menu_1", scene_param="from=article")
    [item] = kf.sync(open_kfid=kfid)["msg_list"]
    assert set(item) == {"msgid", "send_time", "origin", "msgtype", "event"}
    assert (item["origin"], item["msgtype"]) == (4, "event")
    event = item["event"]
    assert (event["event_type"], event["open_kfid"], event["external_userid"]) == ("enter_session", kfid, CUSTOMER)
    assert (event["scene"], event["scene_param"]) == ("menu_1", "from=article") and event["welcome_code"]


def test_enter_session_without_a_scene_has_none(kf: Kf, wecom, kfid):
    event = wecom.customer_enters(kfid, CUSTOMER)["event"]
    assert "scene" not in event and "scene_param" not in event


@pytest.mark.parametrize("scene, scene_param", [("a" * 33, None), ("bad scene", None), (None, "x=1"),
                                                ("s", "x" * 129)])
def test_customer_enters_refuses_what_no_link_can_carry(wecom, kfid, scene, scene_param):
    with pytest.raises(ValueError, match="scene"):
        wecom.customer_enters(kfid, CUSTOMER, scene, scene_param)


def test_the_cursor_continues_where_the_last_page_ended(kf: Kf, wecom, kfid, token):
    first = kf.sync(open_kfid=kfid, token=token)
    assert len(first["msg_list"]) == 1  # the enter_session of the token fixture
    assert kf.sync(open_kfid=kfid, token=token, cursor=first["next_cursor"])["msg_list"] == []
    msgid = wecom.customer_says(kfid, CUSTOMER, "新消息")
    later = kf.sync(open_kfid=kfid, token=token, cursor=first["next_cursor"])
    assert [m["msgid"] for m in later["msg_list"]] == [msgid]
    assert later["next_cursor"] != first["next_cursor"]


def test_the_same_position_gives_the_same_cursor(kf: Kf, wecom, kfid, token):
    wecom.customer_says(kfid, CUSTOMER, "一")
    one, two = kf.sync(open_kfid=kfid, token=token), kf.sync(open_kfid=kfid, token=token)
    assert one["next_cursor"] == two["next_cursor"]
    assert len(one["next_cursor"].encode()) <= 64


def test_limit_and_has_more_page_through_everything(kf: Kf, wecom, kfid, token):
    msgids = [wecom.customer_says(kfid, CUSTOMER, f"第{n}条") for n in range(7)]
    page = kf.sync(open_kfid=kfid, token=token, limit=3)
    assert (len(page["msg_list"]), page["has_more"]) == (3, 1)
    items = read_all(kf, token, open_kfid=kfid, limit=3)
    assert [m["msgid"] for m in items][1:] == msgids  # after the fixture's enter_session
    exact = kf.sync(open_kfid=kfid, token=token, limit=8)
    assert (len(exact["msg_list"]), exact["has_more"]) == (8, 0)


def test_the_default_and_largest_limit_is_1000(kf: Kf, wecom, kfid, token):
    for n in range(MAX_LIMIT + 4):
        wecom.customer_says(kfid, CUSTOMER, str(n))
    page = kf.sync(open_kfid=kfid, token=token)
    assert (len(page["msg_list"]), page["has_more"]) == (1000, 1)
    rest = kf.sync(open_kfid=kfid, token=token, cursor=page["next_cursor"])
    assert (len(rest["msg_list"]), rest["has_more"]) == (5, 0)


@pytest.mark.parametrize("limit", [0, 1001, -1, "10", 2.5])
def test_limit_must_be_1_to_1000(kf: Kf, kfid, token, limit):
    assert errcode(kf.sync(open_kfid=kfid, token=token, limit=limit)) == 40058


def test_pages_are_per_account_or_for_all_accounts(kf: Kf, wecom, kfid, token):
    other = wecom.add_account("其他")
    mine = wecom.customer_says(kfid, CUSTOMER, "这边")
    theirs = wecom.customer_says(other, OTHER_CUSTOMER, "那边")
    assert [m["msgid"] for m in read_all(kf, token, open_kfid=kfid)][1:] == [mine]
    assert [m["msgid"] for m in read_all(kf, token)][1:] == [mine, theirs]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "x" * 65])
def test_unknown_cursors(kf: Kf, kfid, token, cursor):
    answer = kf.sync(open_kfid=kfid, token=token, cursor=cursor)
    assert errcode(answer) == 40058 and "cursor" in answer["errmsg"]


def test_a_cursor_belongs_to_its_scope(kf: Kf, wecom, kfid, token):
    all_accounts = kf.sync(token=token)["next_cursor"]
    answer = kf.sync(open_kfid=kfid, token=token, cursor=all_accounts)
    assert errcode(answer) == 40058 and "another open_kfid" in answer["errmsg"]


def test_unknown_accounts(kf: Kf, token):
    assert errcode(kf.sync(open_kfid="wk" + "N" * 30, token=token)) == 95004
    assert errcode(kf.sync(open_kfid="nope", token=token)) == 95000


def test_messages_older_than_3_days_are_gone(kf: Kf, wecom, kfid, clock: Clock):
    old = wecom.customer_says(kfid, CUSTOMER, "三天前")
    clock.advance(HISTORY - 1)
    recent = wecom.customer_says(kfid, CUSTOMER, "刚才")
    assert [m["msgid"] for m in kf.sync(open_kfid=kfid)["msg_list"]] == [old, recent]
    clock.advance(1)
    first = kf.sync(open_kfid=kfid)
    assert [m["msgid"] for m in first["msg_list"]] == [recent]


def test_messages_sent_through_the_api_are_not_returned(kf: Kf, wecom, kfid):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.send_text(kfid, "您好")
    assert [m["origin"] for m in kf.sync(open_kfid=kfid)["msg_list"]] == [3]


# -- tokens and the limit without one ------------------------------------------------------

def test_a_callback_token_lives_10_minutes(kf: Kf, kfid, token, clock: Clock):
    clock.advance(599)
    assert errcode(kf.sync(open_kfid=kfid, token=token)) == 0
    clock.advance(1)
    answer = kf.sync(open_kfid=kfid, token=token)
    assert errcode(answer) == 95007 and "token has expired" in answer["errmsg"]


def test_a_token_belongs_to_its_account(kf: Kf, wecom, kfid, token):
    other = wecom.add_account("其他")
    answer = kf.sync(open_kfid=other, token=token)
    assert errcode(answer) == 95007 and "another open_kfid" in answer["errmsg"]
    assert errcode(kf.sync(token=token)) == 0


def test_unknown_tokens(kf: Kf, kfid):
    assert errcode(kf.sync(open_kfid=kfid, token="ENCnot-a-token")) == 95007
    assert errcode(kf.sync(open_kfid=kfid, token="x" * 129)) == 40058


def test_without_a_token_reads_are_limited_per_minute(kf: Kf, kfid, token, clock: Clock):
    codes = [errcode(kf.sync(open_kfid=kfid)) for _ in range(UNTOKENED_READS_PER_MINUTE + 1)]
    assert codes == [0] * UNTOKENED_READS_PER_MINUTE + [45009]
    assert errcode(kf.sync(open_kfid=kfid, token=token)) == 0  # a token is not limited
    clock.advance(59)
    assert errcode(kf.sync(open_kfid=kfid)) == 45009
    clock.advance(1)
    assert errcode(kf.sync(open_kfid=kfid)) == 0


def test_the_limit_slides(kf: Kf, kfid, clock: Clock):
    for _ in range(UNTOKENED_READS_PER_MINUTE // 2):
        kf.sync(open_kfid=kfid)
    clock.advance(30)
    for _ in range(UNTOKENED_READS_PER_MINUTE - UNTOKENED_READS_PER_MINUTE // 2):
        kf.sync(open_kfid=kfid)
    assert errcode(kf.sync(open_kfid=kfid)) == 45009
    clock.advance(30)  # the first half is a minute old
    assert errcode(kf.sync(open_kfid=kfid)) == 0
