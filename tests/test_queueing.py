"""The queue policy and the agent's context text, built in Python: defaults, checks, notices, cancels, rendering."""
from __future__ import annotations

import dataclasses

import pytest

from kf_plugin import ContextTemplate, QueuePolicy
from kf_plugin.queueing import check_notice, check_template

# --------------------------------------------------------------------------
# QueuePolicy
# --------------------------------------------------------------------------


def test_defaults():
    policy = QueuePolicy()
    assert (policy.quiet, policy.notice, policy.notice_fallback, policy.notice_every) == (True, None, None, 60.0)
    assert (policy.cancel, policy.cancel_text, policy.timeout, policy.timeout_text) == ((), None, None, None)
    assert policy.notice_text(3, 10) is None and policy.notice_text() is None
    assert not policy.is_cancel("取消")


def test_a_policy_is_frozen_and_compares_by_its_settings():
    policy = QueuePolicy(notice="第 {position} 位", cancel=["取消"], cancel_text="好的")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.quiet = False  # type: ignore[misc]
    assert policy == QueuePolicy(notice="第 {position} 位", cancel=("取消",), cancel_text="好的")
    assert policy != QueuePolicy(notice="第 {position} 位")


@pytest.mark.parametrize("given, kept", [
    (["取消", "退出人工"], ("取消", "退出人工")),
    ("取消", ("取消",)),                                # one string is one keyword, not its letters
    (("  Cancel ", "ＱＵＩＴ"), ("cancel", "quit")),      # folded as they are compared
    (["取消", " 取消 ", "STOP", "stop"], ("取消", "stop")),  # without repeats, in their order
])
def test_cancel_keywords_are_normalised(given, kept):
    assert QueuePolicy(cancel=given).cancel == kept


@pytest.mark.parametrize("text, expected", [
    ("取消", True),
    ("  取消\n", True),
    ("CANCEL", True),
    ("ｃａｎｃｅｌ", True),
    ("退出人工", True),
    ("我要取消", False),          # exact match only: a sentence holding the word does not cancel
    ("取消订单", False),
    ("", False),
    (None, False),                # a push without a text (an event, an image)
])
def test_is_cancel(text, expected):
    assert QueuePolicy(cancel=["取消", "Cancel", "退出人工"]).is_cancel(text) is expected


NOTICE = "您排在第 {position} 位，前面还有 {ahead} 位，共 {count} 位"


@pytest.mark.parametrize("notice, fallback, position, count, expected", [
    (NOTICE, "请稍候", 3, 10, "您排在第 3 位，前面还有 2 位，共 10 位"),
    (NOTICE, "请稍候", 1, 1, "您排在第 1 位，前面还有 0 位，共 1 位"),
    (NOTICE, "请稍候", None, 10, "请稍候"),          # the place is unknown
    (NOTICE, "请稍候", 3, None, "请稍候"),           # the count is unknown and the notice says it
    (NOTICE, None, None, None, None),                # nothing to say
    ("前面还有 {ahead} 位", "请稍候", 4, None, "前面还有 3 位"),   # the count is not needed
    ("共 {count} 位在等", "请稍候", None, 7, "共 7 位在等"),      # the place is not needed
    ("请稍候，马上就好", None, None, None, "请稍候，马上就好"),     # no placeholder: always sendable
    (None, "请稍候", 3, 10, "请稍候"),               # only a fallback: it is the notice
    ("{{第 {position} 位}}", "{{稍候}}", 2, None, "{第 2 位}"),   # doubled braces are braces
    ("{{第 {position} 位}}", "{{稍候}}", None, None, "{稍候}"),
    (None, None, 3, 10, None),
])
def test_notice_text(notice, fallback, position, count, expected):
    assert QueuePolicy(notice=notice, notice_fallback=fallback).notice_text(position, count) == expected


@pytest.mark.parametrize("position, count, error", [
    (0, 5, "counts from 1, not 0"),
    (-1, None, "counts from 1, not -1"),
    (None, -1, "cannot be negative, not -1"),
])
def test_notice_text_refuses_impossible_places(position, count, error):
    with pytest.raises(ValueError, match=error):
        QueuePolicy(notice=NOTICE).notice_text(position, count)


@pytest.mark.parametrize("settings, error", [
    (dict(notice="第 {positon} 位"),
     "notice: unknown placeholder {positon} (did you mean {position}?); "
     "the placeholders are {position}, {ahead} and {count}"),
    (dict(notice="第 {rule} 位"),
     "notice: unknown placeholder {rule}; the placeholders are {position}, {ahead} and {count}"),
    (dict(notice="第 {} 位"), "notice: unknown placeholder {}"),
    (dict(notice="第 {0} 位"), "notice: unknown placeholder {0}"),
    (dict(notice="第 {position.real} 位"), "notice: unknown placeholder {position.real}"),
    (dict(notice="第 {position!r} 位"), "notice: placeholder {position} takes no format or conversion"),
    (dict(notice="第 {position:>3} 位"), "notice: placeholder {position} takes no format or conversion"),
    (dict(notice="第 {position 位"), "notice: a lone { or }"),
    (dict(notice="第 position} 位"), "notice: a lone { or }"),
    (dict(notice="  "), "notice must be a text that is not blank"),
    (dict(notice_fallback="前面还有 {ahead} 位"),
     "notice_fallback: cannot use {ahead}: it is sent when the queue gives no position"),
    (dict(notice_fallback="{position}/{count}"),
     "notice_fallback: cannot use {position} and {count}: it is sent"),
    (dict(notice_fallback="{"), "notice_fallback: a lone { or }"),
    (dict(notice_every=0), "notice_every must be a positive number of seconds, not 0"),
    (dict(notice_every=-5.0), "notice_every must be a positive number of seconds"),
    (dict(notice_every=float("inf")), "notice_every must be a positive number of seconds"),
    (dict(notice_every="60s"), "notice_every must be a positive number of seconds, not '60s'"),
    (dict(timeout=0), "timeout must be a positive number of seconds, not 0"),
    (dict(timeout=True), "timeout must be a positive number of seconds, not True"),
    (dict(cancel=["取消", " "]), "cancel keywords must be texts that are not blank, not ' '"),
    (dict(cancel=[""]), "cancel keywords must be texts that are not blank"),
    (dict(cancel=[3]), "cancel keywords must be texts that are not blank, not 3"),
    (dict(cancel_text="已取消"), "cancel_text has no effect without cancel"),
    (dict(timeout_text="超时了"), "timeout_text has no effect without timeout"),
    (dict(cancel=["取消"], cancel_text=""), "cancel_text must be a text that is not blank"),
])
def test_bad_policies_are_refused(settings, error):
    with pytest.raises(ValueError) as info:
        QueuePolicy(**settings)
    assert str(info.value).startswith(error)


def test_a_full_policy():
    policy = QueuePolicy(quiet=False, notice="前面还有 {ahead} 位", notice_fallback="请稍候", notice_every=120,
                         cancel=["取消"], cancel_text="已取消", timeout=600, timeout_text="客服繁忙")
    assert (policy.quiet, policy.notice_every, policy.timeout) == (False, 120, 600)
    assert policy.notice_text(5) == "前面还有 4 位" and policy.notice_text() == "请稍候"
    assert policy.is_cancel("取消")


# --------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, used", [
    ("plain", ()),
    ("{ahead}", ("ahead",)),
    ("{count} {position} {count} {ahead}", ("count", "position", "ahead")),
    ("{{position}}", ()),
])
def test_check_template_lists_the_placeholders_once_in_order(text, used):
    assert check_template(text, ("position", "ahead", "count")) == used
    assert check_notice(text) == used


def test_check_template_with_nothing_allowed_says_so():
    with pytest.raises(ValueError, match="unknown placeholder {x}; it takes no placeholders"):
        check_template("{x}", ())


# --------------------------------------------------------------------------
# ContextTemplate
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, recent, expected", [
    ("{rule}：{message}\n最近：{recent}", ["你好", "在吗", "人呢"], "stuck：人呢\n最近：你好 / 在吗 / 人呢"),
    ("{rule}：{message}\n最近：{recent}", [], "stuck：人呢\n最近："),
    ("用户 {openid} 因 {rule} 转入", ["x"], "用户 oUser1 因 stuck 转入"),
    ("{{{rule}}}", [], "{stuck}"),
    ("no placeholders", ["x"], "no placeholders"),
    # a value that looks like a placeholder is text, not a template
    ("{message}", [], "人呢"),
])
def test_context_render(text, recent, expected):
    assert ContextTemplate(text).render("stuck", "人呢", recent, "oUser1") == expected


def test_context_values_are_never_read_as_templates():
    rendered = ContextTemplate("{rule}: {message} [{recent}]").render("r", "{openid}", ["{rule}", "}"], "o")
    assert rendered == "r: {openid} [{rule} / }]"


def test_context_separator():
    assert ContextTemplate("{recent}", separator="\n").render("r", "m", ["a", "b"], "o") == "a\nb"


@pytest.mark.parametrize("text, uses_recent", [
    ("{rule}：{message}\n最近：{recent}", True),
    ("{rule}：{message}", False),
    ("{{recent}}", False),
])
def test_context_uses_recent(text, uses_recent):
    assert ContextTemplate(text).uses_recent is uses_recent


@pytest.mark.parametrize("text, error", [
    ("{rule}：{mesage}", "context: unknown placeholder {mesage} (did you mean {message}?); "
                        "the placeholders are {rule}, {message}, {recent} and {openid}"),
    ("{ahead}", "context: unknown placeholder {ahead}; the placeholders are"),
    ("{rule!s}", "context: placeholder {rule} takes no format or conversion"),
    ("{recent[0]}", "context: unknown placeholder {recent[0]}"),
    ("{rule", "context: a lone { or }"),
    ("rule}", "context: a lone { or }"),
    (" ", "context must be a text that is not blank"),
])
def test_bad_context_templates_are_refused(text, error):
    with pytest.raises(ValueError) as info:
        ContextTemplate(text)
    assert str(info.value).startswith(error)


def test_recent_must_be_a_sequence_of_messages():
    with pytest.raises(TypeError, match="not one string"):
        ContextTemplate("{recent}").render("r", "m", "abc", "o")
