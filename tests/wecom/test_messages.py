"""微信客服 messages as the rules read them: every kind sync_msg gives, and the rules of one file on both channels."""
from __future__ import annotations

import pytest

from kf_plugin import Channel, Keyword, Rule, RuleSet, load_rules
from kf_plugin.messages import event_key_of, event_of, msg_type_of, sender_of, text_of
from kf_plugin.wecom.messages import CUSTOMER, SERVICER, wecom_message

KFID, USER = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw", "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"


def item(msgtype, body, **top):
    return {"msgid": "from_msgid_4622416642169452483", "open_kfid": KFID, "external_userid": USER,
            "send_time": 1615478585, "origin": CUSTOMER, "msgtype": msgtype, msgtype: body, **top}


@pytest.mark.parametrize("raw, kind, text, event, key", [
    (item("text", {"content": "转人工"}), "text", "转人工", None, None),
    (item("text", {"content": "满意", "menu_id": "101"}), "text", "满意", None, None),
    (item("image", {"media_id": "2iSLeVyqzk4"}), "image", None, None, None),
    (item("event", {"event_type": "enter_session", "open_kfid": KFID, "external_userid": USER, "scene": "menu",
                    "scene_param": "vip", "welcome_code": "aaa"}, open_kfid=None, external_userid=None),
     "event", None, "enter_session", "menu"),
    (item("event", {"event_type": "session_status_change", "open_kfid": KFID, "external_userid": USER,
                    "change_type": 3, "old_servicer_userid": "zhangsan"}),
     "event", None, "session_status_change", None),
    (item("channels", {"title": "a video"}), "channels", None, None, None),
    ({"msgid": "x"}, "unknown", None, None, None),
], ids=["text", "menu-click", "image", "enter-session-without-top-level-ids", "session-status", "other-kind",
        "unreadable"])
def test_wecom_message(raw, kind, text, event, key):
    message = wecom_message(raw)
    read = (msg_type_of(message), text_of(message), event_of(message), event_key_of(message))
    assert read == (kind, text, event, key)
    assert message.channel == "wecom"
    if raw.get("msgtype"):
        assert sender_of(message) == USER and message.source == USER and message.target == KFID


def test_a_menu_click_carries_its_menu_id_and_a_servicer_message_its_origin():
    assert wecom_message(item("text", {"content": "满意", "menu_id": "101"}))._data["bizmsgmenuid"] == "101"
    assert wecom_message(item("text", {"content": "您好"}, origin=SERVICER)).origin == SERVICER


def test_one_rule_file_serves_both_channels(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("""\
version: 1
rules:
  - name: wecom-only
    keywords: 人工
    channel: wecom
  - name: welcome
    event: enter_session
    event_key: menu
  - name: everywhere
    keywords: 转人工
""", encoding="utf-8")
    router = load_rules(path).to_router()
    from kf_plugin.testing import message_xml
    from kf_plugin.webhook import parse_push
    oa = parse_push(message_xml(text="人工"))
    assert router.dispatch_with_handler(wecom_message(item("text", {"content": "人工"}))).handler.name == "wecom-only"
    assert router.dispatch_with_handler(oa).handler is None
    entered = item("event", {"event_type": "enter_session", "scene": "menu"})
    assert router.dispatch_with_handler(wecom_message(entered)).handler.name == "welcome"
    assert router.dispatch_with_handler(parse_push(message_xml(text="转人工"))).handler.name == "everywhere"


@pytest.mark.parametrize("conditions, error", [
    ({"channel": "wecom"}, "give the conditions too"),
    ({"keywords": "x", "channel": "sms"}, "unknown channel 'sms'"),
])
def test_channel_refusals(conditions, error):
    with pytest.raises(ValueError, match=error):
        Rule.build("r", **conditions)


def test_channel_filter_reads_like_the_others():
    assert repr(Keyword("人工") & Channel("wecom")) == "Keyword('人工') & Channel('wecom')"
    assert RuleSet.of([Rule.build("r", keywords="x", channel="oa")]).rules[0].filter(
        wecom_message(item("text", {"content": "x"}))) is False
