import pytest

from kf_plugin import Reply, Rule, RuleSet, Transfer
from kf_plugin.rules import build_filter
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push


def push(**kw):
    return parse_push(message_xml(**kw))


@pytest.mark.parametrize("conditions, pushed, expected", [
    (dict(keywords=["人工", "客服"]), dict(text="找客服"), True),
    (dict(keywords="人工", match="exact"), dict(text="转人工"), False),
    (dict(regex=r"\d{6}"), dict(text="订单 123456"), True),
    (dict(event="CLICK", event_key="K"), dict(event="CLICK", key="K"), True),
    (dict(event=["CLICK", "VIEW"]), dict(event="VIEW", key="u"), True),
    (dict(event="subscribe", event_key="123123"), dict(event="subscribe", key="qrscene_123123"), True),
    (dict(event_key="K"), dict(event="SCAN", key="K"), True),
    (dict(event_key_regex="^vip_"), dict(event="CLICK", key="vip_gold"), True),
    (dict(msg_type="image"), dict(msg_type="image"), True),
    (dict(msg_type=["text", "voice"], users=["oA"]), dict(text="x", sender="oA"), True),
    (dict(keywords="x", users="oA"), dict(text="x", sender="oB"), False),
    (dict(users="oA"), dict(event="CLICK", key="K", sender="oA"), True),
    (dict(msg_type="text", keywords="人工", regex="转"), dict(text="转人工"), True),
    (dict(msg_type="text", keywords="人工", regex="^人"), dict(text="转人工"), False),
])
def test_conditions_must_all_hold(conditions, pushed, expected):
    assert build_filter(**conditions)(push(**pushed)) is expected


@pytest.mark.parametrize("conditions, error", [
    ({}, "at least one condition"),
    (dict(keywords="a", event="CLICK"), "never match"),
    (dict(regex="a", event_key="K"), "never match"),
    (dict(msg_type="image", keywords="a"), "need msg_type text or voice"),
    (dict(msg_type="text", event="CLICK"), "need msg_type event"),
    (dict(regex="("), "missing"),
    (dict(keywords=[" "]), "non-blank"),
])
def test_bad_conditions_are_refused(conditions, error):
    with pytest.raises(Exception, match=error):
        build_filter(**conditions)


def test_rule_actions():
    message = push(text="转人工", sender="oU", account="gh_A")
    transfer = Rule.build("t", keywords="人工", kf_account="a@b")
    reply = transfer(message)
    assert reply.type == "transfer_customer_service" and reply.kf_account == "a@b"
    assert (reply.target, reply.source) == ("oU", "gh_A")
    assert transfer.action == Transfer("a@b") and str(transfer.action) == "transfer to a@b"
    text = Rule.build("r", keywords="人工", reply="稍等")
    assert text(message).content == "稍等" and text.action == Reply("稍等")
    assert str(Transfer()) == "transfer to customer service"
    with pytest.raises(ValueError, match="not both"):
        Rule.build("x", keywords="a", reply="r", kf_account="k")


def test_ruleset_active_rules_and_router():
    rules = RuleSet.of([Rule.build("on", keywords="a"), Rule.build("off", keywords="a", enabled=False)],
                       fallback_text="later")
    assert [r.name for r in rules.active] == ["on"]
    match = rules.to_router().dispatch_with_handler(push(text="a"))
    assert match.handler.name == "on"
    with pytest.raises(ValueError, match="two rules are named 'a'"):
        RuleSet.of([Rule.build("a", keywords="x"), Rule.build("a", keywords="y")])
