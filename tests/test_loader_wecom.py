"""The rule file's ``wecom:`` section: the texts 微信客服 sends with an event's code, and its errors at their
lines."""
import textwrap

import pytest

from kf_plugin import RuleFileError, RuleSet, load_rules_text
from kf_plugin.wecom.texts import WeComTexts


def load(body: str) -> RuleSet:
    return load_rules_text(textwrap.dedent(body), "rules.yaml")


def problems(body: str):
    with pytest.raises(RuleFileError) as info:
        load(body)
    return [str(p) for p in info.value.problems]


def test_every_text_is_read():
    rules = load("""\
        version: 1
        wecom:
          welcome_text:
            default: "您好，请问有什么可以帮您？"
            menu: "您好，请选择服务"
            vip-2024: "尊敬的会员您好"
          queue_text: "正在为您接入人工客服，请稍候"
          taken_text: "客服已接入"
          end_text: "本次服务已结束，感谢您的咨询"
        rules: []
        """)
    scenes = {"default": "您好，请问有什么可以帮您？", "menu": "您好，请选择服务", "vip-2024": "尊敬的会员您好"}
    assert rules.wecom == WeComTexts(
        welcome_text=scenes,
        queue_text="正在为您接入人工客服，请稍候", taken_text="客服已接入", end_text="本次服务已结束，感谢您的咨询")


@pytest.mark.parametrize("section, expected", [
    ("", WeComTexts()),
    ("wecom:\n", WeComTexts()),
    ("wecom: {}\n", WeComTexts()),
    ("wecom:\n  welcome_text: 欢迎\n", WeComTexts(welcome_text="欢迎")),
    ("wecom:\n  welcome_text: {menu: 菜单}\n", WeComTexts(welcome_text={"menu": "菜单"})),
    ("wecom:\n  welcome_text: {'123': 数字}\n", WeComTexts(welcome_text={"123": "数字"})),   # a quoted scene
    ("wecom:\n  end_text: 再见\n", WeComTexts(end_text="再见")),
], ids=["none", "empty", "empty-mapping", "one-welcome", "by-scene", "numeric-scene", "end-only"])
def test_each_form(section, expected):
    assert load(f"version: 1\n{section}rules: []\n").wecom == expected


@pytest.mark.parametrize("scene, expected", [
    ("menu", "菜单"), ("qr", "扫码"), ("other", "您好"), (None, "您好"), ("", "您好"),
])
def test_a_welcome_by_scene_falls_back_to_default(scene, expected):
    texts = WeComTexts(welcome_text={"default": "您好", "menu": "菜单", "qr": "扫码"})
    assert texts.welcome_for(scene) == expected


def test_without_default_a_scene_not_listed_gets_no_welcome():
    texts = WeComTexts(welcome_text={"menu": "菜单"})
    assert (texts.welcome_for("menu"), texts.welcome_for("qr"), texts.welcome_for(None)) == ("菜单", None, None)
    assert WeComTexts(welcome_text="欢迎").welcome_for("anything") == "欢迎"


W = "version: 1\nwecom:\n"           # the section's keys start on line 3


@pytest.mark.parametrize("body, expected", [
    pytest.param(W + "  welcom_text: x\n", ["rules.yaml:3: unknown key 'welcom_text' (did you mean 'welcome_text'?)"],
                 id="key-typo"),
    pytest.param(W + "  queue_txt: x\n", ["rules.yaml:3: unknown key 'queue_txt' (did you mean 'queue_text'?)"],
                 id="key-typo-2"),
    pytest.param(W + "  owner: me\n", ["rules.yaml:3: unknown key 'owner'"], id="key-no-suggestion"),
    pytest.param("version: 1\nwecm:\n  end_text: x\n", ["rules.yaml:2: unknown key 'wecm' (did you mean 'wecom'?)"],
                 id="section-misspelt"),
    pytest.param("version: 1\nwecom: yes\n", ["rules.yaml:2: wecom must be a mapping of keys, not the boolean true"],
                 id="section-not-a-mapping"),
    pytest.param(W + "  welcome_text: 3\n",
                 ["rules.yaml:3: welcome_text must be a text, or a mapping of scene to text, not the number 3"],
                 id="welcome-number"),
    pytest.param(W + "  welcome_text: [a, b]\n",
                 ["rules.yaml:3: welcome_text must be a text, or a mapping of scene to text, not a list"],
                 id="welcome-list"),
    pytest.param(W + "  welcome_text: ' '\n", ["rules.yaml:3: welcome_text: must not be blank"], id="welcome-blank"),
    pytest.param(W + "  welcome_text:\n    default: x\n    menu: ''\n", ["rules.yaml:5: menu: must not be blank"],
                 id="scene-text-blank"),
    pytest.param(W + "  welcome_text:\n    default: x\n    menu: 3\n",
                 [("rules.yaml:5: menu must be a string, not the number 3 — quote it, YAML reads it unquoted "
                  "as a number")],
                 id="scene-text-number"),
    pytest.param(W + "  welcome_text:\n    default: x\n    'a b': y\n",
                 ["rules.yaml:5: welcome_text: 'a b' is not a scene: a scene is 1–32 characters of 0-9 A-Z a-z _ -"],
                 id="scene-with-a-space"),
    pytest.param(W + "  welcome_text:\n    default: x\n    " + "s" * 33 + ": y\n",
                 [(f"rules.yaml:5: welcome_text: '{'s' * 33}' is not a scene: a scene is 1–32 characters of "
                  "0-9 A-Z a-z _ -")], id="scene-too-long"),
    pytest.param(W + "  welcome_text:\n    default: x\n    123: y\n",
                 ["rules.yaml:5: welcome_text: each key must be a string, not the number 123 — quote it"],
                 id="scene-unquoted-number"),
    pytest.param(W + "  queue_text: 3\n",
                 [("rules.yaml:3: queue_text must be a string, not the number 3 — quote it, YAML reads it unquoted "
                  "as a number")], id="queue-text-number"),
    pytest.param(W + "  taken_text: ''\n", ["rules.yaml:3: taken_text: must not be blank"], id="taken-text-blank"),
    pytest.param(W + "  end_text: true\n",
                 [("rules.yaml:3: end_text must be a string, not the boolean true — quote it, YAML reads it unquoted "
                  "as a boolean")], id="end-text-boolean"),
    pytest.param(W + "  end_text: [a]\n", ["rules.yaml:3: end_text must be a string, not a list"],
                 id="end-text-list"),
])
def test_each_mistake_is_reported_at_its_line(body, expected):
    assert problems(body + "rules: []\n") == expected


def test_every_mistake_of_the_section_is_reported_together():
    found = problems(W + "  queue_txt: x\n  welcome_text: 3\n  end_text: ''\nrules: []\n")
    assert [problem.split(":")[1] for problem in found] == ["3", "4", "5"]


@pytest.mark.parametrize("arguments, message", [
    ({"welcome_text": " "}, "blank 微信客服 text: welcome_text"),
    ({"welcome_text": {"menu": ""}}, "blank 微信客服 text: welcome_text menu"),
    ({"queue_text": "", "end_text": " "}, "blank 微信客服 text: queue_text, end_text"),
    ({"welcome_text": {"a b": "x"}}, "'a b' is not a scene"),
])
def test_texts_built_in_python_are_checked_too(arguments, message):
    with pytest.raises(ValueError, match=message):
        WeComTexts(**arguments)


def test_the_texts_keep_a_copy_of_the_callers_mapping():
    scenes = {"menu": "菜单"}
    texts = WeComTexts(welcome_text=scenes)
    scenes["menu"] = "changed"
    assert texts.welcome_for("menu") == "菜单"
