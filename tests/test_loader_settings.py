"""The rule file's settings beyond rules: quotas, unknown users, business hours, hand-off options, the queue,
the agent's context and after_unanswered triggers."""
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from kf_plugin import NOTHING, ContextTemplate, QueuePolicy, RuleFileError, load_rules_text
from kf_plugin.hours import BusinessHours
from kf_plugin.rules import Reply, Transfer
from kf_plugin.schema import QueueModel
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
    ("keywords: x\n    handoff: sesion",
     "rules.yaml:5: rule 'r': handoff must be 'transfer' or 'session', not str 'sesion' (did you mean 'session'?)"),
    ("keywords: x\n    fallback_to_pool: true",
     "rules.yaml:3: rule 'r': fallback_to_pool needs a kf_account or a servicer to fall back from"),
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


# --------------------------------------------------------------------------
# queue, context and after_unanswered
# --------------------------------------------------------------------------

QUEUED = """\
version: 1
queue:
  while_queued: bot
  notice: "您前面还有 {ahead} 位，请稍候"
  notice_fallback: "正在为您转接人工客服，请耐心等待"
  notice_every: 2m
  cancel: ["取消", "退出人工"]
  cancel_text: "已为您取消转接"
  timeout: 1.5h
  timeout_text: "客服暂时繁忙"
context: "{rule}：{message}\\n最近：{recent}"
rules:
  - name: human
    keywords: 人工
  - name: stuck
    after_unanswered: 3
    handoff: session
  - name: hint
    after_unanswered: 2
    reply: "输入人工联系客服"
  - name: paused
    after_unanswered: 2
    enabled: false
"""


def test_queue_context_and_triggers_are_read():
    rules = load(QUEUED)
    assert rules.queue == QueuePolicy(quiet=False, notice="您前面还有 {ahead} 位，请稍候",
                                      notice_fallback="正在为您转接人工客服，请耐心等待", notice_every=120.0,
                                      cancel=("取消", "退出人工"), cancel_text="已为您取消转接", timeout=5400.0,
                                      timeout_text="客服暂时繁忙")
    assert rules.queue.notice_text(3) == "您前面还有 2 位，请稍候"
    assert rules.context == ContextTemplate("{rule}：{message}\n最近：{recent}") and rules.context.uses_recent
    stuck = rules.rules[1]
    assert (stuck.after_unanswered, stuck.filter, stuck.action, stuck.origin) == (
        3, NOTHING, Transfer(session=True), "rules.yaml:15")
    assert [(r.name, r.after_unanswered) for r in rules.unanswered_triggers] == [("hint", 2), ("stuck", 3)]
    assert [h.name for h in rules.handlers()] == ["human"]


@pytest.mark.parametrize("queue_yaml, expected", [
    ("", QueuePolicy()),                                            # no queue section
    ("queue:\n", QueuePolicy()),                                    # an empty one
    ("queue: {}\n", QueuePolicy()),
    ("queue:\n  while_queued: quiet\n", QueuePolicy(quiet=True)),
    ("queue:\n  while_queued: bot\n", QueuePolicy(quiet=False)),
    ("queue:\n  cancel: 取消\n", QueuePolicy(cancel=("取消",))),      # one word, not a list
    ("queue:\n  cancel: ['  Cancel ', cancel]\n", QueuePolicy(cancel=("cancel",))),
    ("queue:\n  notice: 请稍候\n  notice_every: 30s\n", QueuePolicy(notice="请稍候", notice_every=30.0)),
    ("queue:\n  notice_fallback: 请稍候\n  notice_every: 1d\n", QueuePolicy(notice_fallback="请稍候", notice_every=86400)),
    ("queue:\n  timeout: 45s\n", QueuePolicy(timeout=45.0)),
])
def test_queue_settings(queue_yaml, expected):
    assert load(f"version: 1\n{queue_yaml}rules: []\n").queue == expected


def test_without_context_there_is_no_template():
    assert load("version: 1\nrules: []\n").context is None


Q = "version: 1\nqueue:\n"          # queue keys start on line 3


@pytest.mark.parametrize("body, expected", [
    pytest.param(Q + "  notic: x\n", ["rules.yaml:3: unknown key 'notic' (did you mean 'notice'?)"], id="queue-key-typo"),
    pytest.param(Q + "  cancle: [取消]\n", ["rules.yaml:3: unknown key 'cancle' (did you mean 'cancel'?)"],
                 id="queue-key-typo-2"),
    pytest.param(Q + "  timeout_txt: x\n  timeout: 1m\n",
                 ["rules.yaml:3: unknown key 'timeout_txt' (did you mean 'timeout_text'?)"], id="queue-key-typo-3"),
    pytest.param(Q + "  owner: me\n", ["rules.yaml:3: unknown key 'owner'"], id="queue-key-no-suggestion"),
    pytest.param("version: 1\nqueu:\n  notice: x\n", ["rules.yaml:2: unknown key 'queu' (did you mean 'queue'?)"],
                 id="queue-itself-misspelt"),
    pytest.param("version: 1\ncontxt: x\n", ["rules.yaml:2: unknown key 'contxt' (did you mean 'context'?)"],
                 id="context-misspelt"),
    pytest.param("version: 1\nqueue: quiet\n", ["rules.yaml:2: queue must be a mapping of keys, not str 'quiet'"],
                 id="queue-not-a-mapping"),
    pytest.param(Q + "  while_queued: quite\n",
                 ["rules.yaml:3: while_queued must be 'quiet' or 'bot', not str 'quite' (did you mean 'quiet'?)"],
                 id="while-queued-typo"),
    pytest.param(Q + "  while_queued: human\n",
                 ["rules.yaml:3: while_queued must be 'quiet' or 'bot', not str 'human'"], id="while-queued-other"),
    pytest.param(Q + "  while_queued: false\n",
                 ["rules.yaml:3: while_queued must be 'quiet' or 'bot', not the boolean false"],
                 id="while-queued-boolean"),
    pytest.param(Q + "  notice: '前面还有 {ahaed} 位'\n",
                 ["rules.yaml:3: notice: unknown placeholder {ahaed} (did you mean {ahead}?); "
                  "the placeholders are {position}, {ahead} and {count}"], id="notice-placeholder-typo"),
    pytest.param(Q + "  notice: '第 {rule} 位'\n",
                 ["rules.yaml:3: notice: unknown placeholder {rule}; "
                  "the placeholders are {position}, {ahead} and {count}"], id="notice-unknown-placeholder"),
    pytest.param(Q + "  notice: '第 {position:03} 位'\n",
                 ["rules.yaml:3: notice: placeholder {position} takes no format or conversion: write {position}"],
                 id="notice-format-spec"),
    pytest.param(Q + "  notice: '第 {position 位'\n",
                 ["rules.yaml:3: notice: a lone { or } (write {{ or }} for a brace itself)"], id="notice-lone-brace"),
    pytest.param(Q + "  notice: ''\n", ["rules.yaml:3: notice: must not be blank"], id="notice-blank"),
    pytest.param(Q + "  notice: 3\n",
                 ["rules.yaml:3: notice must be a string, not the number 3 — quote it, YAML reads it unquoted as a number"],
                 id="notice-number"),
    pytest.param(Q + "  notice_fallback: '前面还有 {ahead} 位'\n",
                 ["rules.yaml:3: notice_fallback: cannot use {ahead}: it is sent when the queue gives no position"],
                 id="fallback-placeholder"),
    pytest.param(Q + "  notice_fallback: '{position} / {count}'\n",
                 ["rules.yaml:3: notice_fallback: cannot use {position} and {count}: "
                  "it is sent when the queue gives no position"], id="fallback-two-placeholders"),
    pytest.param(Q + "  notice_fallback: '请稍候 {positon}'\n",
                 ["rules.yaml:3: notice_fallback: unknown placeholder {positon} (did you mean {position}?); "
                  "the placeholders are {position}, {ahead} and {count}"], id="fallback-placeholder-typo"),
    pytest.param(Q + "  notice: x\n  notice_every: 0s\n",
                 ["rules.yaml:4: notice_every: '0s' is not a duration like 48h, 60s, 1m or 2d"], id="notice-every-zero"),
    pytest.param(Q + "  notice: x\n  notice_every: 60\n",
                 ["rules.yaml:4: notice_every must be a string, not the number 60"
                  " — quote it, YAML reads it unquoted as a number"], id="notice-every-bare-number"),
    pytest.param(Q + "  notice: x\n  notice_every: soon\n",
                 ["rules.yaml:4: notice_every: 'soon' is not a duration like 48h, 60s, 1m or 2d"],
                 id="notice-every-words"),
    pytest.param(Q + "  notice_every: 2m\n",
                 ["rules.yaml:3: notice_every: has no effect without notice or notice_fallback"],
                 id="notice-every-alone"),
    pytest.param(Q + "  cancel: []\n", ["rules.yaml:3: cancel: must list at least one entry"], id="cancel-empty"),
    pytest.param(Q + "  cancel: ['取消', ' ']\n", ["rules.yaml:3: cancel entry 2: must not be blank"],
                 id="cancel-blank-entry"),
    pytest.param(Q + "  cancel:\n    - 取消\n    - ''\n", ["rules.yaml:5: cancel entry 2: must not be blank"],
                 id="cancel-blank-entry-block-list"),
    pytest.param(Q + "  cancel: ''\n", ["rules.yaml:3: cancel: must not be blank"], id="cancel-blank"),
    pytest.param(Q + "  cancel: [取消, 0]\n",
                 ["rules.yaml:3: cancel entry 2 must be a string, not the number 0"
                  " — quote it, YAML reads it unquoted as a number"], id="cancel-number"),
    pytest.param(Q + "  cancel_text: 已取消\n", ["rules.yaml:3: cancel_text: has no effect without cancel"],
                 id="cancel-text-alone"),
    pytest.param(Q + "  cancel: [取消]\n  cancel_text: ' '\n", ["rules.yaml:4: cancel_text: must not be blank"],
                 id="cancel-text-blank"),
    pytest.param(Q + "  timeout: 10 minutes\n",
                 ["rules.yaml:3: timeout: '10 minutes' is not a duration like 48h, 60s, 1m or 2d"], id="timeout-bad"),
    pytest.param(Q + "  timeout: -1m\n", ["rules.yaml:3: timeout: '-1m' is not a duration like 48h, 60s, 1m or 2d"],
                 id="timeout-negative"),
    pytest.param(Q + "  timeout_text: 超时\n", ["rules.yaml:3: timeout_text: has no effect without timeout"],
                 id="timeout-text-alone"),
    pytest.param(Q + "  timeout: never\n  timeout_text: 超时\n",
                 # the timeout is wrong already: no second problem for its text
                 ["rules.yaml:3: timeout: 'never' is not a duration like 48h, 60s, 1m or 2d"],
                 id="timeout-text-with-invalid-timeout"),
    pytest.param("version: 1\ncontext: '{rule}：{mesage}'\n",
                 ["rules.yaml:2: context: unknown placeholder {mesage} (did you mean {message}?); "
                  "the placeholders are {rule}, {message}, {recent} and {openid}"], id="context-placeholder-typo"),
    pytest.param("version: 1\ncontext: '{rule}：{ahead}'\n",
                 ["rules.yaml:2: context: unknown placeholder {ahead}; "
                  "the placeholders are {rule}, {message}, {recent} and {openid}"], id="context-unknown-placeholder"),
    pytest.param("version: 1\ncontext: '{rule!r}'\n",
                 ["rules.yaml:2: context: placeholder {rule} takes no format or conversion: write {rule}"],
                 id="context-conversion"),
    pytest.param("version: 1\ncontext: 'rule}'\n",
                 ["rules.yaml:2: context: a lone { or } (write {{ or }} for a brace itself)"], id="context-lone-brace"),
    pytest.param("version: 1\ncontext: ''\n", ["rules.yaml:2: context: must not be blank"], id="context-blank"),
    pytest.param("version: 1\ncontext: [a]\n", ["rules.yaml:2: context must be a string, not a list"],
                 id="context-list"),
    pytest.param(Q + "  notice: '{positon}'\n  notice_every: 2m\n  cancel_text: x\n  timeout: 0m\n",
                 ["rules.yaml:3: notice: unknown placeholder {positon} (did you mean {position}?); "
                  "the placeholders are {position}, {ahead} and {count}",
                  "rules.yaml:5: cancel_text: has no effect without cancel",
                  "rules.yaml:6: timeout: '0m' is not a duration like 48h, 60s, 1m or 2d"],
                 id="several-queue-problems"),
])
def test_invalid_queue_and_context(body, expected):
    assert problems(body + "rules: []\n") == expected


T = "version: 1\nrules:\n  - name: stuck\n"   # the rule starts on line 3


@pytest.mark.parametrize("rule_yaml, expected", [
    pytest.param("    after_unanswered: 0\n",
                 "rules.yaml:4: rule 'stuck': after_unanswered: must be a whole number of messages, at least 1, not 0",
                 id="zero"),
    pytest.param("    after_unanswered: -3\n",
                 "rules.yaml:4: rule 'stuck': after_unanswered: must be a whole number of messages, at least 1, not -3",
                 id="negative"),
    pytest.param("    after_unanswered: '3'\n",
                 "rules.yaml:4: rule 'stuck': after_unanswered must be a whole number, not str '3'", id="string"),
    pytest.param("    after_unanswered: 2.5\n",
                 "rules.yaml:4: rule 'stuck': after_unanswered must be a whole number, not the number 2.5", id="float"),
    pytest.param("    after_unanswered: yes\n",
                 "rules.yaml:4: rule 'stuck': after_unanswered must be a whole number, not the boolean true",
                 id="boolean"),
    pytest.param("    after_unaswered: 3\n",
                 "rules.yaml:4: rule 'stuck': unknown key 'after_unaswered' (did you mean 'after_unanswered'?)",
                 id="misspelt"),
    pytest.param("    after_unanswered: 3\n    keywords: 人工\n",
                 "rules.yaml:3: rule 'stuck': after_unanswered cannot be combined with keywords: "
                 "it is a trigger of its own, not a condition on a push", id="with-keywords"),
    pytest.param("    after_unanswered: 3\n    event: CLICK\n    event_key: K\n",
                 "rules.yaml:3: rule 'stuck': after_unanswered cannot be combined with event, event_key: "
                 "it is a trigger of its own, not a condition on a push", id="with-event"),
    pytest.param("    after_unanswered: 3\n    msg_type: text\n",
                 "rules.yaml:3: rule 'stuck': after_unanswered cannot be combined with msg_type: "
                 "it is a trigger of its own, not a condition on a push", id="with-msg-type"),
    pytest.param("    after_unanswered: 3\n    regex: x\n    users: oA\n",
                 "rules.yaml:3: rule 'stuck': after_unanswered cannot be combined with regex, users: "
                 "it is a trigger of its own, not a condition on a push", id="with-regex-and-users"),
    pytest.param("    after_unanswered: 3\n    match: contains\n",
                 "rules.yaml:3: rule 'stuck': after_unanswered cannot be combined with match: "
                 "it is a trigger of its own, not a condition on a push", id="with-match"),
    pytest.param("    after_unanswered: 3\n    reply: hi\n    notice: n\n",
                 "rules.yaml:3: rule 'stuck': a rule either replies with a text or hands off, not both: "
                 "reply does not go with notice", id="contradicting-action"),
    pytest.param("    after_unanswered: 3\n  - name: again\n    after_unanswered: 3\n",
                 "rules.yaml:6: rule 'again': rule 'stuck' already acts after 3 unanswered messages; only one rule can",
                 id="same-count-twice"),
])
def test_invalid_triggers(rule_yaml, expected):
    assert problems(T + rule_yaml) == [expected]


def test_a_disabled_trigger_may_share_a_count():
    rules = load(T + "    after_unanswered: 3\n  - name: old\n    after_unanswered: 3\n    enabled: false\n")
    assert [r.name for r in rules.unanswered_triggers] == ["stuck"]


def test_the_documented_example_loads():
    """The complete example of docs/rules.md's queue section is a valid file saying what the page says."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    section = page.split("## Waiting for a human", 1)[1].split("\n## ", 1)[0]
    rules = load(re.findall(r"```yaml\n(.+?)```", section, re.S)[0])
    assert rules.queue == QueuePolicy(quiet=True, notice="您前面还有 {ahead} 位，请稍候",
                                      notice_fallback="正在为您转接人工客服，请耐心等待", notice_every=60.0,
                                      cancel=("取消", "退出人工"), cancel_text="已为您取消转接，有问题随时找我",
                                      timeout=600.0, timeout_text="客服暂时繁忙，请留言，我们会尽快回复您")
    assert rules.context is not None
    assert rules.context.render("stuck", "人呢", ["在吗", "人呢"], "o") == "stuck：人呢\n最近：在吗 / 人呢"
    assert [(r.name, r.after_unanswered) for r in rules.unanswered_triggers] == [("stuck", 3)]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert documented == set(QueueModel.model_fields)


def test_the_documented_python_example_builds_the_same_settings():
    page = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    [snippet] = [block for block in re.findall(r"```python\n(.+?)```", page, re.S) if "QueuePolicy(" in block]
    loaded = []
    exec(compile(snippet, "docs/rules.md", "exec"), {"kf": SimpleNamespace(load_rules=loaded.append)})
    [rules] = loaded
    assert [(r.name, r.after_unanswered) for r in rules.rules] == [("ask-for-human", None), ("stuck", 3)]
    assert rules.queue.notice_text(2) == "您前面还有 1 位" and rules.queue.timeout == 600
    assert rules.context.render("stuck", "在吗", [], "o") == "stuck：在吗"
