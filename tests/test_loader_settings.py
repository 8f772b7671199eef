"""The rule file's settings beyond rules: quotas, unknown users, business hours, hand-off options."""
import textwrap

import pytest

from kf_plugin import RuleFileError, load_rules_text
from kf_plugin.hours import BusinessHours
from kf_plugin.rules import Reply, Transfer
from kf_plugin.window import Quota


def load(body):
    return load_rules_text(textwrap.dedent(body), "rules.yaml")


def problems(body):
    with pytest.raises(RuleFileError) as info:
        load(body)
    return [str(p) for p in info.value.problems]


FULL = """\
version: 1
fallback_text: "客服暂时不在线"
handoff_text: "正在为您接入"
unknown_users: refuse
quotas:
  message: {count: 20, within: 48h}
  click: {count: unlimited, within: 1m}
  scan: {count: 2, within: 90s}
business_hours:
  timezone: Asia/Shanghai
  weekdays: [mon-fri, sun]
  open: "09:00"
  close: "18:00"
  closed_dates: [2026-10-01, "2026-10-02"]
  closed_text: "下班了"
rules:
  - name: vip
    event: CLICK
    event_key: VIP
    kf_account: vip1@gh_x
    require_online: true
    fallback_to_pool: true
    handoff: session
    notice: "您好，我是专属客服"
  - name: human
    keywords: 人工
    require_online: true
"""


def test_every_setting_is_read():
    rules = load(FULL)
    assert (rules.fallback_text, rules.handoff_text, rules.unknown_users) == ("客服暂时不在线", "正在为您接入", "refuse")
    assert rules.quotas == {"message": Quota(20, 172800), "click": Quota(None, 60), "scan": Quota(2, 90)}
    hours = rules.business_hours
    assert isinstance(hours, BusinessHours) and hours.closed_text == "下班了"
    assert hours.timezone == "Asia/Shanghai" and len(hours.closed_dates) == 2
    vip, human = rules.rules
    assert vip.action == Transfer("vip1@gh_x", require_online=True, fallback_to_pool=True, session=True,
                                  notice="您好，我是专属客服")
    assert str(vip.action) == "open a session with vip1@gh_x (if online, else any agent, then notify)"
    assert human.action == Transfer(require_online=True) and rules.needs_agents


def test_defaults():
    rules = load("version: 1\nrules:\n  - name: a\n    keywords: x\n")
    assert (rules.quotas, rules.unknown_users, rules.business_hours, rules.handoff_text) == ({}, "attempt", None, None)
    assert rules.rules[0].action == Transfer() and not rules.needs_agents
    assert not load("version: 1\nrules:\n  - name: a\n    keywords: x\n    reply: hi\n").needs_agents


@pytest.mark.parametrize("body, expected", [
    ("unknown_users: deny", "rules.yaml:2: unknown_users must be 'attempt' or 'refuse', not str 'deny'"),
    ("quotas:\n  mesage: {count: 20, within: 48h}", "rules.yaml:3: unknown key 'mesage' (did you mean 'message'?)"),
    ("quotas:\n  click: {count: 0, within: 1m}",
     "rules.yaml:3: count: must be a whole number of messages (at least 1) or unlimited, not 0"),
    ("quotas:\n  click: {count: lots, within: 1m}",
     "rules.yaml:3: count: must be a whole number of messages (at least 1) or unlimited, not 'lots'"),
    ("quotas:\n  click: {count: 3, within: 1 minute}",
     "rules.yaml:3: within: '1 minute' is not a duration like 48h, 60s, 1m or 2d"),
    ("quotas:\n  click: {count: 3, whithin: 1m}",
     ["rules.yaml:3: missing required key 'within'", "rules.yaml:3: unknown key 'whithin' (did you mean 'within'?)"]),
    ("quotas:\n  click: {count: 3}", "rules.yaml:3: missing required key 'within'"),
    ("quotas: 5", "rules.yaml:2: quotas must be a mapping of keys, not the number 5"),
    ("business_hours:\n  open: '09:00'\n  close: '25:00'", "rules.yaml:4: close: '25:00' is not a time like \"09:00\""),
    ("business_hours:\n  open: 9:00\n  close: '18:00'",
     "rules.yaml:3: open must be a string, not the number 540 — quote it, YAML reads it unquoted as a number"),
    ("business_hours:\n  close: '18:00'", "rules.yaml:2: missing required key 'open'"),
    ("business_hours:\n  timezone: Mars/Base\n  open: '09:00'\n  close: '18:00'",
     "rules.yaml:3: timezone: unknown timezone 'Mars/Base' (use an IANA name like Asia/Shanghai)"),
    ("business_hours:\n  weekdays: mon-frx\n  open: '09:00'\n  close: '18:00'",
     "rules.yaml:3: weekdays: unknown weekday 'frx' (use mon, tue, wed, thu, fri, sat, sun)"),
    ("business_hours:\n  open: '09:00'\n  close: '18:00'\n  closed_dates: [tomorrow]",
     "rules.yaml:5: closed_dates entry 1: 'tomorrow' is not a date like 2026-10-01"),
    ("business_hours:\n  open: '09:00'\n  close: '18:00'\n  colsed_text: x",
     "rules.yaml:5: unknown key 'colsed_text' (did you mean 'closed_text'?)"),
    ("handoff_text: ''", "rules.yaml:2: handoff_text: must not be blank"),
])
def test_invalid_settings(body, expected):
    assert problems(f"version: 1\n{body}\nrules: []\n") == (expected if isinstance(expected, list) else [expected])


@pytest.mark.parametrize("rule, expected", [
    ("keywords: x\n    handoff: sesion", "rules.yaml:5: rule 'r': handoff must be 'transfer' or 'session', not str 'sesion'"),
    ("keywords: x\n    fallback_to_pool: true",
     "rules.yaml:3: rule 'r': fallback_to_pool needs a kf_account to fall back from"),
    ("keywords: x\n    reply: hi\n    notice: n",
     "rules.yaml:3: rule 'r': a rule either replies with a text or hands off, not both: reply does not go with notice"),
    ("keywords: x\n    reply: hi\n    handoff: session\n    require_online: true",
     "rules.yaml:3: rule 'r': a rule either replies with a text or hands off, not both: "
     "reply does not go with require_online, handoff"),
    ("keywords: x\n    require_online: 'yes'", "rules.yaml:5: rule 'r': require_online must be true or false, not str 'yes'"),
    ("keywords: x\n    notice: ' '", "rules.yaml:5: rule 'r': notice: must not be blank"),
])
def test_invalid_handoff_options(rule, expected):
    assert problems(f"version: 1\nrules:\n  - name: r\n    {rule}\n") == [expected]


def test_reply_rules_stay_plain_replies():
    rules = load("version: 1\nrules:\n  - name: r\n    keywords: x\n    reply: hi\n")
    assert rules.rules[0].action == Reply("hi")
