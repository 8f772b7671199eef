import pytest

from kf_plugin import NOTHING, ContextTemplate, Keyword, QueuePolicy, Reply, Rule, RuleSet, Transfer
from kf_plugin.replies import ServicerTransfer
from kf_plugin.rules import build_filter
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push
from kf_plugin.wecom.messages import wecom_message


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


@pytest.mark.parametrize("options, servicer, to_pool", [
    (dict(kf_account="a@b"), None, True),                                  # the Official Account's agent: the pool
    (dict(servicer="zhangsan"), "zhangsan", False),                        # the servicer, else the fallback text
    (dict(servicer="zhangsan", fallback_to_pool=True), "zhangsan", True),  # the servicer, else the pool
    (dict(handoff="session", require_online=True, notice="稍等"), None, True),   # Official Account options
], ids=["kf-account", "servicer", "servicer-or-pool", "oa-options"])
def test_a_transfer_for_a_wecom_customer_names_a_servicer(options, servicer, to_pool):
    wecom = wecom_message({"msgid": "m", "open_kfid": "wkKF", "external_userid": "wmU", "send_time": 1, "origin": 3,
                           "msgtype": "text", "text": {"content": "转人工"}})
    rule = Rule.build("t", keywords="人工", **options)
    reply = rule(wecom)
    assert isinstance(reply, ServicerTransfer) and (reply.servicer, reply.to_pool) == (servicer, to_pool)
    oa = rule(push(text="转人工"))
    assert not isinstance(oa, ServicerTransfer) and oa.kf_account == options.get("kf_account")


def test_a_servicer_is_an_action_of_its_own():
    assert Rule.build("t", keywords="a", servicer="zs", fallback_to_pool=True).action.api_options == ()
    assert "on 微信客服 servicer zs" in str(Rule.build("t", keywords="a", servicer="zs").action)
    with pytest.raises(ValueError, match="not both: reply does not go with servicer"):
        Rule.build("x", keywords="a", reply="r", servicer="zs")
    with pytest.raises(ValueError, match="needs a kf_account or a servicer"):
        Rule.build("x", keywords="a", fallback_to_pool=True)


def test_ruleset_active_rules_and_router():
    rules = RuleSet.of([Rule.build("on", keywords="a"), Rule.build("off", keywords="a", enabled=False)],
                       fallback_text="later")
    assert [r.name for r in rules.active] == ["on"]
    match = rules.to_router().dispatch_with_handler(push(text="a"))
    assert match.handler.name == "on"
    with pytest.raises(ValueError, match="two rules are named 'a'"):
        RuleSet.of([Rule.build("a", keywords="x"), Rule.build("a", keywords="y")])


# --------------------------------------------------------------------------
# after_unanswered: triggers
# --------------------------------------------------------------------------

def test_a_trigger_built_in_python():
    rule = Rule.build("stuck", after_unanswered=3, kf_account="a@gh")
    assert (rule.after_unanswered, rule.filter, rule.action) == (3, NOTHING, Transfer("a@gh"))
    assert Rule("stuck", after_unanswered=3) == Rule.build("stuck", after_unanswered=3)
    assert Rule.build("hint", after_unanswered=2, reply="输入人工").action == Reply("输入人工")
    assert Rule.build("r", keywords="a").after_unanswered is None


@pytest.mark.parametrize("conditions, named", [
    (dict(keywords="人工"), "keywords"),
    (dict(regex="x"), "regex"),
    (dict(event="CLICK", event_key="K"), "event, event_key"),
    (dict(msg_type="text"), "msg_type"),
    (dict(event_key_regex="^a"), "event_key_regex"),
    (dict(users="oA"), "users"),
    (dict(match="exact"), "match"),
])
def test_a_trigger_takes_no_condition(conditions, named):
    with pytest.raises(ValueError) as info:
        Rule.build("stuck", after_unanswered=3, **conditions)
    assert str(info.value) == (f"after_unanswered cannot be combined with {named}: "
                               "it is a trigger of its own, not a condition on a push")


@pytest.mark.parametrize("rule, error", [
    (lambda: Rule.build("s", after_unanswered=0), "after_unanswered must be a whole number of at least 1, not 0"),
    (lambda: Rule.build("s", after_unanswered=-2), "at least 1, not -2"),
    (lambda: Rule.build("s", after_unanswered=2.5), "at least 1, not 2.5"),
    (lambda: Rule.build("s", after_unanswered=True), "at least 1, not True"),
    (lambda: Rule.build("s", after_unanswered="3"), "at least 1, not '3'"),
    (lambda: Rule("s", Keyword("a"), after_unanswered=3),
     "after_unanswered cannot be combined with a filter (Keyword('a'))"),
    (lambda: Rule("s"), "rule 's' needs a filter, or after_unanswered"),
    (lambda: Rule("s", NOTHING), "rule 's' needs a filter, or after_unanswered"),
    (lambda: Rule.build("s", after_unanswered=3, reply="r", kf_account="k"), "not both"),
])
def test_bad_triggers_are_refused(rule, error):
    with pytest.raises(ValueError) as info:
        rule()
    assert error in str(info.value)


TRIGGERS = RuleSet.of([
    Rule.build("human", keywords="人工"),
    Rule.build("stuck", after_unanswered=3),
    Rule.build("paused", after_unanswered=1, enabled=False),
    Rule.build("hint", after_unanswered=2, reply="输入人工"),
])


def test_triggers_are_listed_fewest_messages_first_and_only_when_enabled():
    assert [(r.name, r.after_unanswered) for r in TRIGGERS.unanswered_triggers] == [("hint", 2), ("stuck", 3)]
    assert RuleSet().unanswered_triggers == ()


@pytest.mark.parametrize("pushed", [
    dict(text="你好"), dict(text="人工客服"), dict(event="CLICK", key="K"), dict(msg_type="image"),
    dict(event="subscribe"), dict(text=""),
])
def test_a_trigger_never_matches_a_push(pushed):
    """Triggers are not handlers: only the rules with conditions route pushes, and a trigger's filter holds for none."""
    assert [handler.name for handler in TRIGGERS.handlers()] == ["human"]
    match = TRIGGERS.to_router().dispatch_with_handler(push(**pushed))
    assert match.handler is None or match.handler.name == "human"
    assert NOTHING(push(**pushed)) is False
    # even made into a handler by hand, a trigger takes nothing
    assert TRIGGERS.rules[1].as_handler().filter(push(**pushed)) is False


def test_two_enabled_triggers_cannot_share_a_count():
    with pytest.raises(ValueError, match="rules 'a' and 'b' both act after 3 unanswered messages; only one can"):
        RuleSet.of([Rule.build("a", after_unanswered=3), Rule.build("b", after_unanswered=3)])
    # a disabled one is no trigger
    RuleSet.of([Rule.build("a", after_unanswered=3), Rule.build("b", after_unanswered=3, enabled=False)])


def test_queue_and_context_are_ruleset_settings():
    default = RuleSet()
    assert (default.queue, default.context) == (QueuePolicy(), None)
    rules = RuleSet.of([Rule.build("a", keywords="x")], queue=QueuePolicy(quiet=False, cancel=["取消"]),
                       context=ContextTemplate("{rule}: {message}"))
    assert rules.queue.is_cancel(" 取消 ") and not rules.queue.quiet
    assert rules.context is not None and rules.context.render("a", "x", [], "o") == "a: x"
