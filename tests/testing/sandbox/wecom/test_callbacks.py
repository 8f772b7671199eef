"""The kf_msg_or_event callbacks, read by a bot written with wechatpy's enterprise crypto alone."""
from __future__ import annotations

import pytest
import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from kf_plugin.errors import ConfigError
from kf_plugin.testing.sandbox import SandboxServer

from ..conftest import Clock, closed_port
from .conftest import CUSTOMER, Kf, errcode
from .wecom_bot import AES_KEY, TOKEN, WeComBot


def test_a_customers_message_is_announced_with_wecom_crypto(wecom, kfid, bot: WeComBot, clock: Clock):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.wait_for_callbacks()
    assert bot.refused == []
    [heard] = bot.heard
    assert heard["ToUserName"] == wecom.corpid and heard["CreateTime"] == str(int(clock.now))
    assert (heard["MsgType"], heard["Event"], heard["OpenKfId"]) == ("event", "kf_msg_or_event", kfid)
    assert heard["Token"].startswith("ENC") and len(heard["Token"]) <= 128
    envelope = xmltodict.parse(bot.raw[0])["xml"]
    assert set(envelope) == {"ToUserName", "Encrypt", "AgentID"}
    assert (envelope["ToUserName"], envelope["AgentID"]) == (wecom.corpid, "1000002")


def test_the_callback_is_logged_with_the_bots_answer(wecom, kfid, bot: WeComBot):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.wait_for_callbacks()
    [callback] = wecom.callbacks
    assert (callback.open_kfid, callback.status, callback.body, callback.error) == (kfid, 200, "success", None)
    assert callback.fields["Token"] == callback.token == bot.heard[0]["Token"]


def test_wechatpy_checks_the_signature_over_the_encrypted_payload(wecom, kfid, bot: WeComBot):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.wait_for_callbacks()
    body = bot.raw[0]
    crypto = WeChatCrypto(TOKEN, AES_KEY, wecom.corpid)
    with pytest.raises(InvalidSignatureException):
        crypto.decrypt_message(body, "0" * 40, "1700000000", "123")


def test_the_callbacks_token_reads_sync_msg(kf: Kf, wecom, kfid, bot: WeComBot):
    msgid = wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.wait_for_callbacks()
    page = kf.sync(open_kfid=bot.heard[0]["OpenKfId"], token=bot.heard[0]["Token"])
    assert errcode(page) == 0 and [m["msgid"] for m in page["msg_list"]] == [msgid]


def test_every_new_message_or_event_brings_a_callback_with_its_own_token(kf: Kf, wecom, kfid, bot: WeComBot):
    wecom.customer_enters(kfid, CUSTOMER, scene="s1")
    msgid = wecom.customer_says(kfid, CUSTOMER, "人工")
    kf.trans(kfid, 2)
    wecom.servicer_takes(kfid, CUSTOMER, "zhangsan")
    wecom.servicer_says(kfid, CUSTOMER, "您好")
    wecom.customer_recalls(kfid, CUSTOMER, msgid)
    wecom.servicer_ends(kfid, CUSTOMER)
    wecom.set_receiving("lisi", False)
    wecom.wait_for_callbacks()
    assert [m.get("event", {}).get("event_type", m["msgtype"]) for m in wecom.messages] == [
        "enter_session", "text", "session_status_change", "text", "user_recall_msg", "session_status_change",
        "servicer_status_change"]
    assert len(bot.heard) == 7 and len(set(bot.tokens())) == 7
    assert [fields["OpenKfId"] for fields in bot.heard] == [kfid] * 7


def test_api_calls_bring_no_callback(kf: Kf, wecom, kfid, bot: WeComBot):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    kf.send_text(kfid, "您好")
    kf.trans(kfid, 2)
    kf.trans(kfid, 3, "zhangsan")
    wecom.wait_for_callbacks()
    assert len(bot.heard) == 1


def test_a_failed_delivery_is_an_event_with_a_callback(kf: Kf, wecom, kfid, bot: WeComBot):
    wecom.customer_says(kfid, CUSTOMER, "你好")
    msgid = kf.send_text(kfid, "您好")["msgid"]
    wecom.fail_delivery(msgid, 10)
    wecom.wait_for_callbacks()
    assert wecom.messages[-1]["event"] == {"event_type": "msg_send_fail", "open_kfid": kfid,
                                           "external_userid": CUSTOMER, "fail_msgid": msgid, "fail_type": 10}
    assert len(bot.heard) == 2
    with pytest.raises(ValueError, match="fail_type"):
        wecom.fail_delivery(msgid, 3)
    with pytest.raises(ValueError, match="no message sent"):
        wecom.fail_delivery("nope")


def test_recalls_name_a_message_of_the_customer(wecom, kfid):
    with pytest.raises(ValueError, match="no message"):
        wecom.customer_recalls(kfid, CUSTOMER, "nope")


def test_without_a_bot_items_queue_for_sync_msg_only(kf: Kf, wecom, kfid, make_bot):
    wecom.customer_says(kfid, CUSTOMER, "一")
    bot = make_bot()
    wecom.customer_says(kfid, CUSTOMER, "二")
    wecom.disconnect_bot()
    wecom.customer_says(kfid, CUSTOMER, "三")
    wecom.wait_for_callbacks()
    assert len(bot.heard) == 1 and len(kf.sync(open_kfid=kfid)["msg_list"]) == 3


def test_a_bot_configured_for_another_corp_cannot_open_the_callback(wecom, kfid):
    bot = WeComBot("wwanothercorp0000")
    with SandboxServer(bot.app) as served:
        wecom.connect_bot(served.url + "/wecom", TOKEN, AES_KEY)
        wecom.customer_says(kfid, CUSTOMER, "你好")
        wecom.wait_for_callbacks()
    assert bot.heard == [] and len(bot.refused) == 1
    assert wecom.callbacks[0].status == 400


def test_connect_bot_with_another_receive_id(wecom, kfid):
    bot = WeComBot("wwanothercorp0000")
    with SandboxServer(bot.app) as served:
        wecom.connect_bot(served.url + "/wecom", TOKEN, AES_KEY, corpid="wwanothercorp0000")
        wecom.customer_says(kfid, CUSTOMER, "你好")
        wecom.wait_for_callbacks()
    assert bot.heard[0]["ToUserName"] == "wwanothercorp0000"


def test_an_unreachable_bot_is_logged_not_raised(wecom, kfid):
    wecom.connect_bot(f"http://127.0.0.1:{closed_port()}/wecom", TOKEN, AES_KEY, timeout=1)
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.wait_for_callbacks()
    [callback] = wecom.callbacks
    assert callback.status is None and "did not answer" in callback.error


def test_wait_for_callbacks_times_out_on_a_slow_bot(wecom, kfid, bot: WeComBot):
    bot.hold.clear()
    wecom.customer_says(kfid, CUSTOMER, "你好")
    with pytest.raises(TimeoutError):
        wecom.wait_for_callbacks(timeout=0.2)
    bot.hold.set()
    wecom.wait_for_callbacks()
    assert len(bot.heard) == 1


def test_a_bots_error_status_is_logged(wecom, kfid, make_bot):
    make_bot(status=500)
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.wait_for_callbacks()
    assert wecom.callbacks[0].status == 500


def test_verify_bot_checks_the_url_as_wecom_does(wecom, bot: WeComBot):
    assert wecom.verify_bot() is True
    wecom.connect_bot(bot.url, "another-token", AES_KEY)
    assert wecom.verify_bot() is False and bot.refused


def test_verify_bot_needs_a_bot(wecom):
    with pytest.raises(ValueError, match="connect_bot"):
        wecom.verify_bot()


@pytest.mark.parametrize("url, token, corpid, timeout, error", [
    ("ftp://example.com/x", TOKEN, None, 5, ValueError),
    ("http://127.0.0.1:1/x", "", None, 5, ValueError),
    ("http://127.0.0.1:1/x", TOKEN, "", 5, ValueError),
    ("http://127.0.0.1:1/x", TOKEN, None, 0, ValueError),
])
def test_connect_bot_refuses_bad_settings(wecom, url, token, corpid, timeout, error):
    with pytest.raises(error):
        wecom.connect_bot(url, token, AES_KEY, corpid, timeout=timeout)


def test_connect_bot_refuses_a_bad_aes_key(wecom):
    with pytest.raises(ConfigError):
        wecom.connect_bot("http://127.0.0.1:1/x", TOKEN, "short")


def test_a_bot_may_pull_and_answer_inside_its_callback_handler(kf: Kf, wecom, kfid, bot: WeComBot):
    cursor = {}

    def pull_and_reply(fields):
        page = kf.sync(open_kfid=fields["OpenKfId"], token=fields["Token"], cursor=cursor.get("at"))
        cursor["at"] = page["next_cursor"]
        for message in page["msg_list"]:
            if message.get("origin") == 3:
                kf.send_text(fields["OpenKfId"], "收到：" + message["text"]["content"],
                             external_userid=message["external_userid"])
    bot.on_heard = pull_and_reply
    wecom.customer_says(kfid, CUSTOMER, "你好")
    wecom.customer_says(kfid, CUSTOMER, "在吗")
    wecom.wait_for_callbacks()
    assert [s["text"]["content"] for s in wecom.sent] == ["收到：你好", "收到：在吗"]
