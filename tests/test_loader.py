"""The YAML rule loader: valid files become the right rules, invalid files give precise errors."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import List, Optional

import pytest

from kf_plugin import KfPlugin, RuleFileError, RuleProblem
from kf_plugin.loader import load_rules, load_rules_text
from kf_plugin.rules import Reply, Transfer
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

SOURCE = "rules.yaml"


def load(text: str):
    return load_rules_text(textwrap.dedent(text), SOURCE)


def problems_of(text: str) -> List[str]:
    """The error lines (``str(problem)``) of an invalid rule text; fails if the text loads."""
    with pytest.raises(RuleFileError) as info:
        load(text)
    return [str(problem) for problem in info.value.problems]


def only_rule(rule_yaml: str):
    """Load a file holding one rule (the YAML of its mapping, without the dash) and return that rule."""
    body = textwrap.indent(textwrap.dedent(rule_yaml).strip(), "    ")
    ruleset = load_rules_text(f"version: 1\nrules:\n  -\n{body}\n", SOURCE)
    assert len(ruleset.rules) == 1
    return ruleset.rules[0]


# --------------------------------------------------------------------------
# valid files → Rule objects
# --------------------------------------------------------------------------

@pytest.mark.parametrize("rule_yaml, expected_filter", [
    ("name: r\nkeywords: 人工", "Keyword('人工')"),
    ("name: r\nkeywords: [人工, 客服]", "Keyword('人工', '客服')"),
    ("name: r\nkeywords:\n  - 人工\n  - 客服", "Keyword('人工', '客服')"),
    ("name: r\nkeywords: 人工\nmatch: contains", "Keyword('人工')"),
    ("name: r\nkeywords: 人工\nmatch: exact", "Keyword('人工', match='exact')"),
    ("name: r\nkeywords: [退款, 投诉]\nmatch: prefix", "Keyword('退款', '投诉', match='prefix')"),
    ("name: r\nregex: '投诉|退款'", "Regex('投诉|退款')"),
    ("name: r\nmsg_type: image", "MsgType('image')"),
    ("name: r\nmsg_type: [text, voice]\nkeywords: 人工", "MsgType('text', 'voice') & Keyword('人工')"),
    ("name: r\nmsg_type: voice\nregex: '人工'", "MsgType('voice') & Regex('人工')"),
    ("name: r\nevent: CLICK", "Event('CLICK')"),
    ("name: r\nevent: [CLICK, VIEW]", "Event('CLICK', 'VIEW')"),
    ("name: r\nevent: click", "Event('click')"),
    ("name: r\nmsg_type: event\nevent: CLICK", "MsgType('event') & Event('CLICK')"),
    ("name: r\nevent: CLICK\nevent_key: CONTACT_VIP", "Event('CLICK') & EventKey('CONTACT_VIP')"),
    ("name: r\nevent: subscribe\nevent_key: '123123'", "Event('subscribe') & EventKey('123123')"),
    ("name: r\nevent: CLICK\nevent_key: '0123'", "Event('CLICK') & EventKey('0123')"),
    ("name: r\nevent_key: CONTACT_VIP", "EventKey('CONTACT_VIP')"),
    ("name: r\nevent: CLICK\nevent_key_regex: '^PROMO_\\d+$'", "Event('CLICK') & EventKeyRegex('^PROMO_\\\\d+$')"),
    ("name: r\nusers: oVIP", "Users('oVIP')"),
    ("name: r\nusers: [oA, oB]\nkeywords: 人工", "Users('oA', 'oB') & Keyword('人工')"),
    ("name: r\nevent: [subscribe, SCAN]\nevent_key_regex: '^12'\nusers: oA",
     "Event('subscribe', 'SCAN') & EventKeyRegex('^12') & Users('oA')"),
])
def test_conditions_build_the_right_filter(rule_yaml, expected_filter):
    rule = only_rule(rule_yaml)
    assert rule.name == "r"
    assert repr(rule.filter) == expected_filter
    assert rule.action == Transfer(kf_account=None)
    assert rule.enabled is True


@pytest.mark.parametrize("rule_yaml, expected_action, action_text", [
    ("name: r\nkeywords: 人工", Transfer(kf_account=None), "transfer to customer service"),
    ("name: r\nkeywords: 人工\nkf_account: 'vip1@gh_example'", Transfer(kf_account="vip1@gh_example"),
     "transfer to vip1@gh_example"),
    ("name: r\nkeywords: 几点\nreply: '工作时间 9:00-18:00'", Reply("工作时间 9:00-18:00"),
     "reply '工作时间 9:00-18:00'"),
])
def test_actions(rule_yaml, expected_action, action_text):
    rule = only_rule(rule_yaml)
    assert rule.action == expected_action
    assert str(rule.action) == action_text


@pytest.mark.parametrize("enabled_yaml, expected", [
    ("", True),
    ("enabled: true", True),
    ("enabled: false", False),
    # YAML 1.1 booleans: PyYAML reads yes/no/on/off as booleans, so these are valid.
    ("enabled: yes", True),
    ("enabled: no", False),
    ("enabled: on", True),
    ("enabled: off", False),
])
def test_enabled(enabled_yaml, expected):
    rule = only_rule(f"name: r\nkeywords: 人工\n{enabled_yaml}")
    assert rule.enabled is expected


FULL_FILE = """\
version: 1
fallback_text: "客服暂时不在线，请留言"
rules:
  # a comment line does not shift the line numbers
  - name: ask-for-human
    keywords: ["人工", "客服", "转人工"]
  - name: vip-menu
    event: CLICK
    event_key: CONTACT_VIP
    kf_account: "vip1@gh_example"
  - name: paused
    enabled: false
    regex: "投诉"
  - name: hours
    keywords: 几点
    match: prefix
    reply: "9:00-18:00"
"""


def test_a_whole_file(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(FULL_FILE, encoding="utf-8")
    ruleset = load_rules(path)
    assert ruleset.source == str(path)
    assert ruleset.fallback_text == "客服暂时不在线，请留言"
    assert [(r.name, repr(r.filter), r.action, r.enabled, r.origin) for r in ruleset.rules] == [
        ("ask-for-human", "Keyword('人工', '客服', '转人工')", Transfer(None), True, f"{path}:5"),
        ("vip-menu", "Event('CLICK') & EventKey('CONTACT_VIP')", Transfer("vip1@gh_example"), True, f"{path}:7"),
        ("paused", "Regex('投诉')", Transfer(None), False, f"{path}:11"),
        ("hours", "Keyword('几点', match='prefix')", Reply("9:00-18:00"), True, f"{path}:14"),
    ]
    assert [r.name for r in ruleset.active] == ["ask-for-human", "vip-menu", "hours"]
    assert [h.name for h in ruleset.to_router().handlers] == ["ask-for-human", "vip-menu", "hours"]


@pytest.mark.parametrize("text, fallback", [
    ("version: 1\nrules: []\n", None),
    ("version: 1\nfallback_text: 请留言\nrules: []\n", "请留言"),
])
def test_fallback_text_is_optional_and_an_empty_rule_list_is_valid(text, fallback):
    ruleset = load_rules_text(text, SOURCE)
    assert ruleset.rules == ()
    assert ruleset.fallback_text == fallback


def test_origin_uses_the_source_name_and_the_line_of_the_rule():
    ruleset = load("""\
        version: 1

        rules:
          - name: first
            keywords: a

          - keywords: b
            name: second
        """)
    assert [r.origin for r in ruleset.rules] == ["rules.yaml:4", "rules.yaml:7"]


def test_a_byte_order_mark_and_crlf_line_ends_are_accepted():
    text = "\ufeffversion: 1\r\nrules:\r\n  - name: a\r\n    keywords: x\r\n"
    ruleset = load_rules_text(text, SOURCE)
    assert [(r.name, r.origin) for r in ruleset.rules] == [("a", "rules.yaml:3")]


# --------------------------------------------------------------------------
# behaviour: which rule answers a message
# --------------------------------------------------------------------------

ROUTING_RULES = """\
version: 1
rules:
  - name: disabled-catch-all
    enabled: false
    msg_type: [text, voice, image, event]
  - name: vip-only
    users: oVIP
    keywords: 人工
    kf_account: "vip1@gh_example"
  - name: exact-human
    keywords: 人工
    match: exact
  - name: refund-prefix
    keywords: 退款
    match: prefix
  - name: help
    keywords: [HELP, 客服]
  - name: complaint
    regex: "投诉|差评"
  - name: photo
    msg_type: image
  - name: vip-menu
    event: click
    event_key: CONTACT_VIP
    kf_account: "vip2@gh_example"
  - name: promo-menu
    event: [CLICK, VIEW]
    event_key_regex: '^PROMO_\\d+$'
  - name: qr-follow
    event: subscribe
    event_key: "123123"
  - name: any-follow
    event: subscribe
  - name: qr-scan
    event: SCAN
    event_key: "123123"
  - name: hours
    keywords: 几点
    reply: "9:00-18:00"
"""


def _text(text, sender="oUser"):
    return message_xml(text=text, sender=sender)


@pytest.mark.parametrize("xml, expected_rule", [
    # keywords: exact / prefix / contains, folded case and full-width forms
    (_text("人工"), "exact-human"),
    (_text("  人工 "), "exact-human"),
    (_text("人工", sender="oVIP"), "vip-only"),
    (_text("我要人工服务", sender="oVIP"), "vip-only"),
    (_text("我要人工服务"), None),
    (_text("退款 订单 123"), "refund-prefix"),
    (_text("我要退款"), None),
    (_text("help me"), "help"),
    (_text("Ｈｅｌｐ"), "help"),
    (_text("找客服"), "help"),
    # regex
    (_text("我要投诉"), "complaint"),
    (_text("给个差评"), "complaint"),
    # voice messages are matched on their speech recognition
    (message_xml(msg_type="voice", extra={"Recognition": "投诉一下", "MediaId": "m", "Format": "amr"}),
     "complaint"),
    (message_xml(msg_type="image", extra={"PicUrl": "http://x/p.jpg", "MediaId": "m"}), "photo"),
    # events: case-insensitive names, exact keys, key regex
    (message_xml(event="CLICK", key="CONTACT_VIP"), "vip-menu"),
    (message_xml(event="CLICK", key="CONTACT_VIP2"), None),
    (message_xml(event="CLICK", key="contact_vip"), None),
    (message_xml(event="CLICK", key="PROMO_12"), "promo-menu"),
    (message_xml(event="VIEW", key="PROMO_7"), "promo-menu"),
    (message_xml(event="CLICK", key="PROMO_X"), None),
    # a follow through a parametric QR code: EventKey is qrscene_<scene>
    (message_xml(event="subscribe", key="qrscene_123123"), "qr-follow"),
    (message_xml(event="subscribe", key="qrscene_999"), "any-follow"),
    (message_xml(event="subscribe"), "any-follow"),
    (message_xml(event="SCAN", key="123123"), "qr-scan"),
    (message_xml(event="SCAN", key="qrscene_123123"), None),
    (message_xml(event="unsubscribe"), None),
    # the disabled catch-all never answers
    (_text("你好"), None),
    (message_xml(msg_type="video", extra={"MediaId": "m", "ThumbMediaId": "t"}), None),
])
def test_which_rule_answers(xml, expected_rule):
    router = load_rules_text(ROUTING_RULES, SOURCE).to_router()
    match = router.dispatch_with_handler(parse_push(xml))
    answered = match.handler.name if match.handler is not None else None
    assert answered == expected_rule
    if expected_rule is None:
        assert match.result is None


@pytest.mark.parametrize("xml, msg_type, kf_account, content", [
    (_text("人工", sender="oVIP"), "transfer_customer_service", "vip1@gh_example", None),
    (_text("人工"), "transfer_customer_service", None, None),
    (message_xml(event="CLICK", key="CONTACT_VIP"), "transfer_customer_service", "vip2@gh_example", None),
    (_text("请问几点下班"), "text", None, "9:00-18:00"),
])
def test_the_answer_is_the_rules_action(xml, msg_type, kf_account, content):
    router = load_rules_text(ROUTING_RULES, SOURCE).to_router()
    message = parse_push(xml)
    reply = router.dispatch(message)
    assert reply.type == msg_type
    assert getattr(reply, "kf_account", None) == kf_account
    if content is not None:
        assert reply.content == content


# --------------------------------------------------------------------------
# invalid files → every problem, with file, line and rule
# --------------------------------------------------------------------------

R = "version: 1\nrules:\n"   # rules start on line 3

INVALID = [
    pytest.param("version: 1\nrulez: []\nrules:\n  - name: a\n    keywords: x\n",
                 ["rules.yaml:2: unknown key 'rulez' (did you mean 'rules'?)"], id="unknown-top-level-key"),
    pytest.param("version: 1\nowner: me\nrules: []\n",
                 ["rules.yaml:2: unknown key 'owner'"], id="unknown-top-level-key-no-suggestion"),
    pytest.param(R + "  - name: a\n    keyword: x\n",
                 ["rules.yaml:4: rule 'a': unknown key 'keyword' (did you mean 'keywords'?)"],
                 id="unknown-rule-key-did-you-mean"),
    pytest.param(R + "  - name: a\n    event: CLICK\n    eventkey: K\n",
                 ["rules.yaml:5: rule 'a': unknown key 'eventkey' (did you mean 'event_key'?)"],
                 id="unknown-rule-key-did-you-mean-2"),
    pytest.param("rules:\n  - name: a\n    keywords: x\n",
                 ["rules.yaml:1: missing required key 'version'"], id="missing-version"),
    pytest.param("version: 2\nrules:\n  - name: a\n    keywords: x\n",
                 ["rules.yaml:1: version: unsupported version 2; this kf_plugin reads version 1"],
                 id="unsupported-version"),
    pytest.param("version: \"1\"\nrules: []\n",
                 ["rules.yaml:1: version must be a whole number, not str '1'"], id="version-as-string"),
    pytest.param("version: 1.5\nrules: []\n",
                 ["rules.yaml:1: version must be a whole number, not the number 1.5"], id="version-as-float"),
    pytest.param("version: 1\n",
                 ["rules.yaml:1: missing required key 'rules'"], id="missing-rules"),
    pytest.param("version: 1\nfallback_text: 42\nrules: []\n",
                 ["rules.yaml:2: fallback_text must be a string, not the number 42"
                  " — quote it, YAML reads it unquoted as a number"], id="fallback-text-number"),
    pytest.param(R + "  - just-a-string\n",
                 ["rules.yaml:3: rule '#1': each rule must be a mapping of keys, not str 'just-a-string'"],
                 id="rule-is-a-string"),
    pytest.param(R + "  - name: a\n    keywords: x\n  -\n",
                 ["rules.yaml:5: rule '#2': each rule must be a mapping of keys, not empty (null)"],
                 id="rule-is-empty"),
    pytest.param(R + "  - keywords: x\n",
                 ["rules.yaml:3: rule '#1': missing required key 'name'"], id="missing-name"),
    pytest.param(R + "  - name: \"  \"\n    keywords: x\n",
                 # A blank name names nothing: the rule is named by its position, as for a missing name.
                 ["rules.yaml:3: rule '#1': name: must not be blank"], id="blank-name"),
    pytest.param(R + "  - name: 42\n    keywords: x\n",
                 ["rules.yaml:3: rule '#1': name must be a string, not the number 42"
                  " — quote it, YAML reads it unquoted as a number"], id="name-is-a-number"),
    pytest.param(R + "  - name: off\n    keywords: x\n",
                 ["rules.yaml:3: rule '#1': name must be a string, not the boolean false"
                  " — quote it, YAML reads it unquoted as a boolean"], id="name-is-yaml-boolean"),
    pytest.param(R + "  - name: a\n    keywords: x\n  - name: b\n    keywords: y\n  - name: a\n    keywords: z\n",
                 ["rules.yaml:7: rule 'a': duplicate rule name (first used at line 3)"], id="duplicate-names"),
    pytest.param(R + "  - name: a\n    regex: \"(投诉\"\n",
                 ["rules.yaml:4: rule 'a': regex: invalid regular expression:"
                  " missing ), unterminated subpattern at position 0"], id="invalid-regex"),
    pytest.param(R + "  - name: a\n    event: CLICK\n    event_key_regex: \"[a-\"\n",
                 ["rules.yaml:5: rule 'a': event_key_regex: invalid regular expression:"
                  " unterminated character set at position 0"], id="invalid-event-key-regex"),
    pytest.param(R + "  - name: a\n    kf_account: x@gh\n",
                 ["rules.yaml:3: rule 'a': a rule needs at least one condition"
                  " (msg_type, keywords, regex, event, event_key, event_key_regex or users)"], id="no-condition"),
    pytest.param(R + "  - name: a\n    enabled: false\n",
                 ["rules.yaml:3: rule 'a': a rule needs at least one condition"
                  " (msg_type, keywords, regex, event, event_key, event_key_regex or users)"],
                 id="no-condition-even-when-disabled"),
    pytest.param(R + "  - name: a\n    keywords: x\n    event: CLICK\n",
                 ["rules.yaml:3: rule 'a': keywords/regex look at messages and event/event_key at events:"
                  " no push has both, so this rule could never match"], id="keywords-and-event"),
    pytest.param(R + "  - name: a\n    msg_type: image\n    keywords: x\n",
                 ["rules.yaml:3: rule 'a': keywords/regex need msg_type text or voice, not image"],
                 id="image-with-keywords"),
    pytest.param(R + "  - name: a\n    msg_type: text\n    event: CLICK\n",
                 ["rules.yaml:3: rule 'a': event conditions need msg_type event, not text"],
                 id="text-with-event"),
    pytest.param(R + "  - name: a\n    event: clik\n",
                 ["rules.yaml:4: rule 'a': event: unknown event 'clik' (did you mean 'click'?)"],
                 id="unknown-event"),
    pytest.param(R + "  - name: a\n    msg_type: txt\n",
                 ["rules.yaml:4: rule 'a': msg_type: unknown message type 'txt' (did you mean 'text'?)"],
                 id="unknown-msg-type"),
    pytest.param(R + "  - name: a\n    keywords: x\n    match: fuzzy\n",
                 ["rules.yaml:5: rule 'a': match must be 'contains', 'exact' or 'prefix', not str 'fuzzy'"],
                 id="match-fuzzy"),
    pytest.param(R + "  - name: a\n    keywords: x\n    enabled: \"yes\"\n",
                 ["rules.yaml:5: rule 'a': enabled must be true or false, not str 'yes'"],
                 id="enabled-quoted-yes"),
    pytest.param(R + "  - name: a\n    event: CLICK\n    event_key: 123\n",
                 ["rules.yaml:5: rule 'a': event_key must be a string, not the number 123"
                  " — quote it, YAML reads it unquoted as a number"], id="event-key-unquoted-number"),
    pytest.param(R + "  - name: a\n    event: CLICK\n    event_key: 0123\n",
                 # YAML 1.1 reads 0123 as the octal number 83; the hint says to quote it.
                 ["rules.yaml:5: rule 'a': event_key must be a string, not the number 83"
                  " — quote it, YAML reads it unquoted as a number"], id="event-key-octal-looking"),
    pytest.param(R + "  - name: a\n    event: CLICK\n    event_key: yes\n",
                 ["rules.yaml:5: rule 'a': event_key must be a string, not the boolean true"
                  " — quote it, YAML reads it unquoted as a boolean"], id="event-key-yaml-boolean"),
    pytest.param(R + "  - name: a\n    keywords: [help, 42]\n",
                 ["rules.yaml:4: rule 'a': keywords entry 2 must be a string, not the number 42"
                  " — quote it, YAML reads it unquoted as a number"], id="keyword-list-with-number"),
    pytest.param(R + "  - name: a\n    keywords:\n      - help\n      - 人工\n      - 42\n",
                 ["rules.yaml:7: rule 'a': keywords entry 3 must be a string, not the number 42"
                  " — quote it, YAML reads it unquoted as a number"], id="keyword-block-list-with-number"),
    pytest.param(R + "  - name: a\n    keywords: [help, \" \"]\n",
                 ["rules.yaml:4: rule 'a': keywords entry 2: must not be blank"], id="blank-keyword"),
    pytest.param(R + "  - name: a\n    keywords:\n      - help\n      - 人工\n      - ''\n",
                 # the blank entry is on line 7 (as for the number above), not on line 5
                 ["rules.yaml:7: rule 'a': keywords entry 3: must not be blank"], id="blank-keyword-in-block-list"),
    pytest.param(R + "  - name: a\n    event:\n      - CLICK\n      - VEIW\n",
                 # the unknown event is on line 6, not on line 5 where the list starts
                 ["rules.yaml:6: rule 'a': event entry 2: unknown event 'VEIW' (did you mean 'view'?)"],
                 id="unknown-event-in-block-list"),
    pytest.param(R + "  - name: a\n    keywords: ''\n",
                 ["rules.yaml:4: rule 'a': keywords: must not be blank"], id="blank-keyword-string"),
    pytest.param(R + "  - name: a\n    keywords: []\n",
                 ["rules.yaml:4: rule 'a': keywords: must list at least one entry"], id="empty-keywords-list"),
    pytest.param(R + "  - name: a\n    users: []\n",
                 ["rules.yaml:4: rule 'a': users: must list at least one entry"], id="empty-users-list"),
    pytest.param(R + "  - name: a\n    keywords: {a: 1}\n",
                 ["rules.yaml:4: rule 'a': keywords must be a string or a list of strings, not a mapping"],
                 id="keywords-mapping"),
    pytest.param(R + "  - name: a\n    keywords: x\n    kf_account: \" \"\n",
                 ["rules.yaml:5: rule 'a': kf_account: must not be blank"], id="blank-kf-account"),
    pytest.param(R + "  - name: a\n    keywords: x\n    reply: hi\n    kf_account: a@gh\n",
                 ["rules.yaml:3: rule 'a': a rule either replies with a text or hands off, not both: reply does not go with kf_account"],
                 id="reply-and-kf-account"),
    pytest.param(R + "  - name: a\n    keywords: x\n  - name: b\n    event: CLICK\n    event: VIEW\n",
                 # the duplicate key is inside rule 'b': the error names it, like every other rule problem
                 ["rules.yaml:7: rule 'b': duplicate key 'event' (first at line 6)"],
                 id="duplicate-yaml-key-in-rule"),
    pytest.param("version: 1\nversion: 1\nrules: []\n",
                 ["rules.yaml:2: duplicate key 'version' (first at line 1)"], id="duplicate-yaml-key-top-level"),
    pytest.param("",
                 ["rules.yaml: the file is empty; expected a mapping with 'version' and 'rules'"], id="empty-file"),
    pytest.param("# only a comment\n\n",
                 ["rules.yaml: the file is empty; expected a mapping with 'version' and 'rules'"],
                 id="only-comments"),
    pytest.param("- version: 1\n- rules: []\n",
                 ["rules.yaml:1: the top level must be a mapping with 'version' and 'rules'"], id="top-level-list"),
    pytest.param("!!set {version, rules}\n",
                 ["rules.yaml:1: the top level must be a mapping with 'version' and 'rules'"], id="top-level-set"),
    pytest.param("\n\njust text\n",
                 ["rules.yaml:3: the top level must be a mapping with 'version' and 'rules'"], id="top-level-scalar"),
    pytest.param("version: 1\nrules:\n  - name: a\n    keywords: x\n   regex: y\n",
                 ["rules.yaml:5: not valid YAML: expected <block end>, but found '<block mapping start>'"],
                 id="bad-indentation"),
    pytest.param("version: 1\nrules:\n  - name: a\n\tkeywords: x\n",
                 ["rules.yaml:4: not valid YAML: found character '\\t' that cannot start any token"], id="tab"),
    pytest.param(
        "version: 1\n"                     # 1
        "rules:\n"                         # 2
        "  - name: a\n"                    # 3
        "    regex: \"(\"\n"               # 4
        "  - name: b\n"                    # 5
        "    keyword: x\n"                 # 6
        "  - name: a\n"                    # 7
        "    event: clik\n"                # 8
        "    event_key: 7\n"               # 9
        "extra: 1\n",                      # 10
        ["rules.yaml:4: rule 'a': regex: invalid regular expression: missing ), unterminated subpattern at position 0",
         "rules.yaml:6: rule 'b': unknown key 'keyword' (did you mean 'keywords'?)",
         "rules.yaml:7: rule 'a': duplicate rule name (first used at line 3)",
         "rules.yaml:8: rule 'a': event: unknown event 'clik' (did you mean 'click'?)",
         "rules.yaml:9: rule 'a': event_key must be a string, not the number 7"
         " — quote it, YAML reads it unquoted as a number",
         "rules.yaml:10: unknown key 'extra'"],
        id="several-problems-sorted-by-line"),
    pytest.param(R + "  - name: a\n    keyword: x\n    enabled: 'no'\n    match: fuzzy\n",
                 ["rules.yaml:4: rule 'a': unknown key 'keyword' (did you mean 'keywords'?)",
                  "rules.yaml:5: rule 'a': enabled must be true or false, not str 'no'",
                  "rules.yaml:6: rule 'a': match must be 'contains', 'exact' or 'prefix', not str 'fuzzy'"],
                 id="several-problems-in-one-rule"),
    pytest.param("version: 2\nrulez: 1\n",
                 ["rules.yaml:1: version: unsupported version 2; this kf_plugin reads version 1",
                  "rules.yaml:1: missing required key 'rules'",
                  "rules.yaml:2: unknown key 'rulez' (did you mean 'rules'?)"],
                 id="several-top-level-problems"),
]


@pytest.mark.parametrize("text, expected", INVALID)
def test_invalid_files(text: str, expected: List[str]):
    assert problems_of(text) == expected


def test_the_error_lists_every_problem_under_a_header():
    with pytest.raises(RuleFileError) as info:
        load_rules_text(R + "  - name: a\n    regex: \"(\"\n  - name: a\n    keyword: x\n", SOURCE)
    assert info.value.problems == [
        RuleProblem(SOURCE, 4, "regex: invalid regular expression: missing ), unterminated subpattern at position 0",
                    "a"),
        RuleProblem(SOURCE, 5, "duplicate rule name (first used at line 3)", "a"),
        RuleProblem(SOURCE, 6, "unknown key 'keyword' (did you mean 'keywords'?)", "a"),
    ]
    assert str(info.value) == (
        "3 problems in rule file:\n"
        "  rules.yaml:4: rule 'a': regex: invalid regular expression: missing ), unterminated subpattern at position 0\n"
        "  rules.yaml:5: rule 'a': duplicate rule name (first used at line 3)\n"
        "  rules.yaml:6: rule 'a': unknown key 'keyword' (did you mean 'keywords'?)"
    )


@pytest.mark.parametrize("text, line", [
    pytest.param("version: 1\nrules:\n  name: a\n  keywords: x\n", 3, id="mapping"),
    pytest.param("version: 1\nrules: hello\n", 2, id="string"),
    pytest.param("version: 1\nrules:\n", 2, id="null"),
])
def test_rules_that_are_not_a_list(text: str, line: int):
    """``rules`` must be a list of rules; the message must not offer "a string" (a string is refused)."""
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"rules.yaml:{line}: rules must be a list")
    assert "string" not in problems[0]


@pytest.mark.parametrize("text, line", [
    pytest.param("version: 1\nrules:\n  - name: a\n   keywords: x\n", 4, id="bad-indentation"),
    pytest.param("version: 1\nrules:\n  - name: a\n    keywords: x\n  - name: b\n      keywords: y\n", 6,
                 id="over-indented"),
    # The '[' opened on line 4 is never closed. PyYAML only notices on line 5 (or at the end of the
    # file), but what is wrong is line 4: the error must point there (PyYAML's context mark).
    pytest.param("version: 1\nrules:\n  - name: a\n    keywords: [x, y\n  - name: b\n    keywords: z\n", 4,
                 id="unclosed-bracket"),
    pytest.param("version: 1\nrules:\n  - name: a\n    keywords: [x, y\n", 4, id="unclosed-bracket-at-end"),
    pytest.param("version: 1\nrules:\n  - name: a\n    keywords: \"x\n  - name: b\n    keywords: z\n", 4,
                 id="unclosed-quote"),
])
def test_not_yaml_names_the_line(text: str, line: int):
    with pytest.raises(RuleFileError) as info:
        load_rules_text(text, SOURCE)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.rule) == (SOURCE, line, None)
    assert problem.message.startswith("not valid YAML: ")


def test_two_documents_give_a_complete_message():
    """PyYAML says "expected a single document in the stream ... but found another document"."""
    [problem] = problems_of("version: 1\nrules: []\n---\nversion: 1\n")
    assert problem.startswith("rules.yaml:3: not valid YAML: ")
    assert "single document" in problem


def test_enabled_yes_is_a_boolean_and_valid():
    ruleset = load(R + "  - name: a\n    keywords: x\n    enabled: yes\n  - name: b\n    keywords: y\n    enabled: no\n")
    assert [(r.name, r.enabled) for r in ruleset.rules] == [("a", True), ("b", False)]
    assert [r.name for r in ruleset.active] == ["a"]


# --------------------------------------------------------------------------
# load_rules(path)
# --------------------------------------------------------------------------

def test_missing_file(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(RuleFileError) as info:
        load_rules(path)
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.rule) == (str(path), None, None)
    assert str(problem) == f"{path}: cannot read the file: No such file or directory"


def test_a_directory_is_not_a_rule_file(tmp_path: Path):
    with pytest.raises(RuleFileError) as info:
        load_rules(tmp_path)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{tmp_path}: cannot read the file: ")


def test_non_utf8_file(tmp_path: Path):
    path = tmp_path / "gbk.yaml"
    text = "version: 1\nrules:\n  - name: 人工\n    keywords: 人工\n"
    data = text.encode("gbk")
    path.write_bytes(data)
    first_bad = next(i for i, b in enumerate(data) if b >= 0x80)
    with pytest.raises(RuleFileError) as info:
        load_rules(path)
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(path), None)
    assert str(problem).startswith(f"{path}: not UTF-8 text: ")
    assert str(problem).endswith(f" at byte {first_bad}")


def test_load_rules_accepts_str_paths_and_reports_them(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text(R + "  - name: a\n    keyword: x\n", encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        load_rules(str(path))
    assert [str(p) for p in info.value.problems] == [
        f"{path}:4: rule 'a': unknown key 'keyword' (did you mean 'keywords'?)"]


# --------------------------------------------------------------------------
# KfPlugin.reload_rules
# --------------------------------------------------------------------------

OLD_RULES = R + "  - name: ask-for-human\n    keywords: 人工\n"
NEW_RULES = R + "  - name: complaint\n    regex: 投诉\n    kf_account: c1@gh\n"
BROKEN_RULES = R + "  - name: ask-for-human\n    keywords: 人工\n    regex: \"(\"\n"


def _reply_type(plugin: KfPlugin, text: str) -> Optional[str]:
    reply = plugin.handle(parse_push(message_xml(text=text)))
    return reply.type if reply is not None else None


def test_reload_keeps_the_old_rules_when_the_file_becomes_invalid(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(OLD_RULES, encoding="utf-8")
    plugin = KfPlugin(rules=path)
    old = plugin.rules
    assert [r.name for r in old.rules] == ["ask-for-human"]
    assert _reply_type(plugin, "转人工") == "transfer_customer_service"

    path.write_text(BROKEN_RULES, encoding="utf-8")
    with pytest.raises(RuleFileError) as info:
        plugin.reload_rules()
    assert [str(p) for p in info.value.problems] == [
        f"{path}:5: rule 'ask-for-human': regex: invalid regular expression:"
        " missing ), unterminated subpattern at position 0"]
    assert plugin.rules is old
    assert _reply_type(plugin, "转人工") == "transfer_customer_service"
    assert _reply_type(plugin, "我要投诉") is None

    path.write_text(NEW_RULES, encoding="utf-8")
    new = plugin.reload_rules()
    assert plugin.rules is new
    assert [r.name for r in new.rules] == ["complaint"]
    assert _reply_type(plugin, "转人工") is None
    reply = plugin.handle(parse_push(message_xml(text="我要投诉")))
    assert (reply.type, reply.kf_account) == ("transfer_customer_service", "c1@gh")


def test_reload_keeps_the_old_rules_when_the_file_disappears(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    path.write_text(OLD_RULES, encoding="utf-8")
    plugin = KfPlugin(rules=str(path))
    old = plugin.rules
    path.unlink()
    with pytest.raises(RuleFileError) as info:
        plugin.reload_rules()
    assert str(info.value.problems[0]) == f"{path}: cannot read the file: No such file or directory"
    assert plugin.rules is old
    assert _reply_type(plugin, "人工") == "transfer_customer_service"
