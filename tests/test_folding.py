"""Folding: Traditional and Simplified Chinese (and the variants people type) match alike, unless a file says not."""
import re
import textwrap
from pathlib import Path

import pytest

from kf_plugin import Folding, Keyword, MessageRouter, QueuePolicy, Requirements, Rule, RuleFileError, RuleSet
from kf_plugin.folding import FOLDINGS, FULL
from kf_plugin.loader import load_rules_text
from kf_plugin.messages import fold, folded_text_of
from kf_plugin.router import INDEX_MIN_ENTRIES
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

# (Traditional or variant, Simplified): what a user in Hong Kong, Taiwan or abroad types, and a rule's word.
PAIRS = [
    ("轉人工", "转人工"), ("客服人員", "客服人员"), ("請問", "请问"), ("帳號", "账号"), ("發票", "发票"),
    ("退貨", "退货"), ("聯繫", "联系"), ("電話", "电话"), ("退款", "退款"), ("訂單", "订单"), ("投訴", "投诉"),
    ("優惠券", "优惠券"), ("會員", "会员"), ("門市", "门市"), ("營業時間", "营业时间"), ("為什麼", "为什么"),
    ("怎麼辦", "怎么办"), ("頭髮", "头发"), ("裡面", "里面"),
    # variants, as OpenCC maps them: Taiwan's 著 and 裡, Hong Kong's 綫 and 爲, and older forms
    ("等著", "等着"), ("裏面", "里面"), ("綫上", "线上"), ("爲何", "为何"), ("着急", "着急"), ("峯會", "峰会"),
    ("麪包", "面包"), ("喫飯", "吃饭"), ("衆籌", "众筹"),
]


def text(said: str):
    return parse_push(message_xml(text=said))


def matches(rule: Rule, said: str) -> bool:
    return bool(rule.filter(text(said)))


@pytest.mark.parametrize("traditional, simplified", PAIRS)
def test_a_simplified_rule_matches_traditional_text(traditional, simplified):
    assert matches(Rule.build("r", keywords=simplified), f"你好，{traditional}。")


@pytest.mark.parametrize("traditional, simplified", PAIRS)
def test_a_traditional_rule_matches_simplified_text(traditional, simplified):
    assert matches(Rule.build("r", keywords=traditional), f"你好，{simplified}。")


@pytest.mark.parametrize("traditional, simplified", PAIRS)
def test_exact_and_prefix_fold_alike(traditional, simplified):
    assert matches(Rule.build("r", keywords=simplified, match="exact"), f"  {traditional} ")
    assert matches(Rule.build("r", keywords=traditional, match="prefix"), f"{simplified}，谢谢")


def test_the_index_finds_rules_in_either_script():
    """Past INDEX_MIN_ENTRIES the router asks the keyword index, which folds words and text the same way."""
    router = MessageRouter()
    for number, (traditional, simplified) in enumerate(PAIRS):
        word = traditional if number % 2 else simplified
        router.add(Keyword(word), lambda message, n=number: n, name=f"rule {number}")
    assert len(PAIRS) > INDEX_MIN_ENTRIES
    for number, (traditional, simplified) in enumerate(PAIRS):
        said = simplified if number % 2 else traditional
        match = router.dispatch_with_handler(text(f"请问{said}"))
        assert match.handler is not None and int(match.handler.name.split()[1]) <= number


def test_foldings_off_leave_the_script_as_written():
    rule = Rule.build("r", keywords="转人工", folding=["width", "case"])
    assert matches(rule, "我要转人工") and matches(rule, "我要 转人工 ")
    assert not matches(rule, "我要轉人工")
    assert matches(Rule.build("r", keywords="ＨＥＬＰ", folding=["width"]), "HELP")
    assert not matches(Rule.build("r", keywords="help", folding=["width"]), "HELP")
    assert not matches(Rule.build("r", keywords="help", folding=["case"]), "ｈｅｌｐ")
    assert matches(Rule.build("r", keywords="help", folding=[], match="exact"), "  help ")


def test_an_index_over_rules_that_fold_differently():
    """Each folding has its automaton: a rule without Traditional folding is not found through another's."""
    router = MessageRouter()
    router.add(Keyword("转人工", folding=["width", "case"]), lambda m: "as written", name="as written")
    for number in range(INDEX_MIN_ENTRIES):
        router.add(Keyword(f"产品{number}"), lambda m: None, name=f"filler {number}")
    router.add(Keyword("转人工"), lambda m: "folded", name="folded")
    assert router.dispatch(text("我要转人工")) == "as written"
    assert router.dispatch(text("我要轉人工")) == "folded"
    assert [h.name for h in router.candidates(text("我要轉人工"))] == ["folded"]


def test_regex_rules_see_the_text_as_sent():
    assert not matches(Rule.build("r", regex="转人工"), "轉人工")
    assert matches(Rule.build("r", regex="[转轉]人工"), "轉人工")


@pytest.mark.parametrize("names, folded", [
    (FOLDINGS, "转人工 help"), (["traditional"], "转人工 ＨＥＬＰ"), (["case", "width"], "轉人工 help"),
    ([], "轉人工 ＨＥＬＰ"), (["TRADITIONAL", "Width"], "转人工 HELP"),
])
def test_a_folding_applies_the_steps_it_names(names, folded):
    folding = Folding(names)
    assert folding("  轉人工 ＨＥＬＰ  ") == folded
    assert folded_text_of(text("轉人工 ＨＥＬＰ"), folding) == folded


def test_foldings_compare_by_what_they_fold():
    assert Folding(["case", "width"]) == Folding(["width", "case", "width"]) != FULL
    assert Folding() == FULL and hash(Folding(FOLDINGS)) == hash(FULL)
    assert Folding.of(FULL) is FULL and Folding.of(["case"]) == Folding(["case"])
    assert repr(Folding(["case", "width"])) == "Folding(['width', 'case'])"
    assert str(FULL) == "width, case, traditional"
    assert str(Folding([])) == "none (only surrounding spaces are trimmed)"


def test_a_message_keeps_its_text_folded_once_per_folding():
    message = text("轉人工")
    assert folded_text_of(message) == "转人工"
    assert folded_text_of(message, Folding(["case"])) == "轉人工"
    assert message.__dict__[FULL.cache_key] == "转人工"
    assert message.__dict__[Folding(["case"]).cache_key] == "轉人工"


@pytest.mark.parametrize("names, error, message", [
    (["width", "tradition"], ValueError, "unknown folding 'tradition' (did you mean 'traditional'?)"),
    (["nfkc"], ValueError, "unknown folding 'nfkc'; the foldings are width, case, traditional"),
    ("traditional", TypeError, "a list of foldings, not the string 'traditional'"),
    ([1], TypeError, "a folding is a name"),
])
def test_unknown_foldings_are_refused(names, error, message):
    with pytest.raises(error, match=re.escape(message)):
        Folding(names)
    with pytest.raises(error, match=re.escape(message)):
        Rule.build("r", keywords="人工", folding=names)
    with pytest.raises(error, match=re.escape(message)):
        Rule.build("r", event="CLICK", folding=names)   # refused even where no keyword uses it


def test_the_folding_shows_in_the_keyword_and_its_requirements():
    keyword = Keyword("转人工", folding=["width", "case"])
    assert repr(keyword) == "Keyword('转人工', folding=['width', 'case'])"
    assert repr(Keyword("轉人工")) == "Keyword('轉人工')"
    assert keyword.requires() == Requirements(kinds=("text", "voice"), keywords=["转人工"], folding=["width", "case"])
    assert Keyword("轉人工").requires().keywords == ("转人工",)
    assert (Keyword("轉人工", folding=["case"]) & Keyword("x")).requires().folding == Folding(["case"])


def load(body: str) -> RuleSet:
    return load_rules_text(textwrap.dedent(body), "rules.yaml")


def test_a_file_folds_every_way_unless_it_says_otherwise():
    ruleset = load("""\
        version: 1
        queue:
          cancel: 取消
        rules:
          - name: human
            keywords: 转人工
        """)
    assert ruleset.folding == FULL and ruleset.queue.folding == FULL
    assert matches(ruleset.rules[0], "轉人工") and ruleset.queue.is_cancel("  取消 ")


@pytest.mark.parametrize("setting, names", [
    ("folding: [width, case]", ("width", "case")),
    ("folding: traditional", ("traditional",)),
    ("folding: []", ()),
    ("folding:\n  - case\n  - Traditional", ("case", "traditional")),
])
def test_a_file_chooses_its_foldings(setting, names):
    ruleset = load(f"version: 1\n{setting}\nqueue:\n  cancel: 取消\nrules:\n  - name: human\n    keywords: 转人工\n")
    assert ruleset.folding.names == names
    assert ruleset.rules[0].filter.folding == ruleset.folding == ruleset.queue.folding
    assert matches(ruleset.rules[0], "轉人工") == ("traditional" in names)


def test_a_file_without_traditional_folding_keeps_its_cancel_words_as_written():
    ruleset = load("version: 1\nfolding: [width, case]\nqueue:\n  cancel: 取消\nrules: []\n")
    assert ruleset.queue.is_cancel("取消") and not ruleset.queue.is_cancel("取銷")
    assert QueuePolicy(cancel=["取消"]).is_cancel("取銷") is False   # 銷 is 销, not 消: different words
    leave = QueuePolicy(cancel=["退出人工"])
    assert leave.is_cancel("退出人工") and leave.is_cancel("退齣人工")


@pytest.mark.parametrize("body, expected", [
    ("version: 1\nfolding: [width, case, tradtional]\nrules: []\n",
     ["rules.yaml:2: folding entry 3: unknown folding 'tradtional' (did you mean 'traditional'?)"]),
    ("version: 1\nfolding:\n  - width\n  - cas\nrules: []\n",
     ["rules.yaml:4: folding entry 2: unknown folding 'cas' (did you mean 'case'?)"]),
    ("version: 1\nfolding: simplified\nrules: []\n",
     ["rules.yaml:2: folding: unknown folding 'simplified'"]),
    ("version: 1\nfolding: true\nrules: []\n",
     ["rules.yaml:2: folding must be a string or a list of strings, not the boolean true"]),
    ("version: 1\nfoldings: [width]\nrules: []\n",
     ["rules.yaml:2: unknown key 'foldings' (did you mean 'folding'?)"]),
])
def test_invalid_folding_settings(body, expected):
    with pytest.raises(RuleFileError) as info:
        load(body)
    assert [str(problem) for problem in info.value.problems] == expected


def test_an_invalid_folding_still_lets_the_rules_be_checked():
    with pytest.raises(RuleFileError) as info:
        load("version: 1\nfolding: [nope]\nrules:\n  - name: r\n    keywords: ''\n")
    assert [str(p) for p in info.value.problems] == [
        "rules.yaml:2: folding entry 1: unknown folding 'nope'",
        "rules.yaml:5: rule 'r': keywords: must not be blank",
    ]


def test_the_documented_foldings_hold():
    """docs/rules.md's table of foldings: every pair it names compares equal, and regional words do not."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    section = page.split("### Traditional and Simplified Chinese: `folding`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `(\w+)`", row).group(1) for row in rows] == list(FOLDINGS)
    for row in rows:
        name = re.match(r"\| `(\w+)`", row).group(1)
        for group in re.findall(r"`[^`]+`(?: = `[^`]+`)+", row):
            forms = re.findall(r"`([^`]+)`", group)
            assert len({Folding([name])(form) for form in forms}) == 1, (name, forms)
    assert fold("軟體") != fold("软件") and fold("滑鼠") != fold("鼠标")
