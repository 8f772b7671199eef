"""The keyword index: the same answers as asking every handler, found without asking them all."""
import ast
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kf_plugin import Event, Filter, Keyword, MessageRouter, MsgType, Regex, Requirements, Users, matching
from kf_plugin.filters import required_keyword
from kf_plugin.matching import KeywordIndex
from kf_plugin.messages import event_key_of, event_of, folded_text_of, msg_type_of, sender_of, text_of
from kf_plugin.router import INDEX_MIN_ENTRIES
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

ALPHABET = "ab人工Ａ 轉转"   # few letters: words collide, overlap and fold into each other (Ａ → a, 轉 → 转)
FOLDINGS = [("width", "case", "traditional"), ("width", "case"), ("traditional",), ()]
words = st.text(ALPHABET, min_size=1, max_size=3).filter(lambda w: w.strip())


# Patterns the index joins into one search, and patterns it must leave to be asked one by one: flags,
# anchors, an empty pattern, backreferences, named groups, a conditional, inline and verbose flags.
REGEXES = [("a+",), ("^人",), ("工$",), ("b.a",), ("A", re.I), ("^$",), ("",), ("a|人b",), (r"(a)\1",),
           (r"(?P<x>b)(?P=x)",), (r"(a)?(?(1)b|人)",), ("(?i)A b",), ("a # comment", re.X), (r"\bab\b",),
           ("(?<!b)a",)]


@st.composite
def filters(draw):
    kind = draw(st.sampled_from(["keyword", "keyword-and-user", "regex", "event", "msgtype"]))
    if kind.startswith("keyword"):
        keyword = Keyword(*draw(st.lists(words, min_size=1, max_size=3)),
                          match=draw(st.sampled_from(["contains", "exact", "prefix"])),
                          folding=draw(st.sampled_from(FOLDINGS)))
        return keyword & Users("oA") if kind == "keyword-and-user" else keyword
    if kind == "regex":
        regex = Regex(*draw(st.sampled_from(REGEXES)))
        return regex & Users("oA") if draw(st.booleans()) else regex
    if kind == "event":
        return Event("CLICK")
    return MsgType("text")


pushes = st.one_of(
    st.builds(lambda text, sender: message_xml(text=text, sender=sender),
              st.text(ALPHABET, max_size=8), st.sampled_from(["oA", "oB"])),
    st.just(message_xml(event="CLICK", key="K")),
    st.just(message_xml(msg_type="image")),
)


def linear(router, message):
    """What a plain scan answers: the first handler whose filter holds."""
    return next((h.name for h in router._entries if h.filter(message)), None)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(filters(), min_size=INDEX_MIN_ENTRIES, max_size=40), st.lists(pushes, min_size=1, max_size=5))
def test_the_index_answers_as_a_linear_scan(rule_filters, xmls):
    router = MessageRouter()
    for number, filter_ in enumerate(rule_filters):
        router.add(filter_, lambda message, n=number: f"rule {n}", name=f"rule {number}")
    for xml in xmls:
        message = parse_push(xml)
        match = router.dispatch_with_handler(message)
        assert (match.handler.name if match.handler else None) == linear(router, message)
        assert [h.name for h in router.candidates(message)] == [h.name for h in router._entries if h.filter(message)]


def spy_on(asked):
    """``spy(name)``: a filter that notes ``name`` in ``asked`` when it is asked, and does not hold."""
    def spy(name):
        def check(message):
            asked.append(name)
            return False
        return check
    return spy


def test_only_handlers_with_a_word_in_the_text_are_asked():
    asked = []
    spy = spy_on(asked)
    router = MessageRouter()
    for i in range(100):
        router.add(Keyword(f"产品{i}") & spy(f"k{i}"), lambda m: "x", name=f"k{i}")
    router.add(spy("catch-all"), lambda m: "x", name="catch-all")
    router.dispatch(parse_push(message_xml(text="我想问产品42和产品7")))
    assert asked == ["k4", "k7", "k42", "catch-all"]       # "产品4" is inside "产品42"
    asked.clear()
    router.dispatch(parse_push(message_xml(event="CLICK", key="K")))
    assert asked == ["catch-all"]                         # events never carry keywords


def test_regex_handlers_are_asked_only_when_one_of_their_patterns_is_in_the_text():
    asked = []
    spy = spy_on(asked)
    router = MessageRouter()
    for i in range(20):
        router.add(spy(f"r{i}") & Regex(f"订单\\s*{i}[0-9]+号$"), lambda m: "x", name=f"r{i}")
    router.add(spy("backreference") & Regex(r"(退)\1"), lambda m: "x", name="backreference")  # asked anyway
    router.dispatch(parse_push(message_xml(text="你好")))
    assert asked == ["backreference"]
    asked.clear()
    router.dispatch(parse_push(message_xml(text="订单 1234号")))
    assert asked == [f"r{i}" for i in range(20)] + ["backreference"]  # one matches: each is asked, in order
    asked.clear()
    router.dispatch(parse_push(message_xml(msg_type="image")))
    assert asked == ["backreference"]  # no text: no pattern can match (the one left out is still asked)


def test_which_patterns_missed_decides_which_regex_handlers_are_asked_message_after_message():
    asked = []
    spy = spy_on(asked)
    router = MessageRouter()
    for i in range(10):
        router.add(spy(f"zh{i}") & Regex(f"订单{i}"), lambda m: "x", name=f"zh{i}")
        router.add(spy(f"en{i}") & Regex(f"order {i}", re.IGNORECASE), lambda m: "x", name=f"en{i}")
    expected = {"订单3": [f"zh{i}" for i in range(10)], "ORDER 3": [f"en{i}" for i in range(10)],
                "订单3 order 3": [name for i in range(10) for name in (f"zh{i}", f"en{i}")], "你好": []}
    for text in ["订单3", "ORDER 3", "你好", "订单3 order 3", "订单3", "你好", "ORDER 3"]:
        asked.clear()
        router.dispatch(parse_push(message_xml(text=text)))
        assert asked == expected[text], text


@pytest.mark.parametrize("patterns, text, answer", [
    ([r"(b)x", r"(a)\1"], "aa", r"(a)\1"),                     # joined, \1 would mean (b)
    ([r"(?P<n>b)x", r"(?P<n>a)(?P=n)"], "aa", r"(?P<n>a)(?P=n)"),
    ([r"(b)?x", r"(a)?(?(1)a|人)"], "aa", r"(a)?(?(1)a|人)"),
    ([r"(?i)A", "b"], "a", r"(?i)A"),                            # an inline global flag cannot be joined
    (["A", "b"], "a", None),
])
def test_patterns_that_cannot_be_joined_still_answer(patterns, text, answer):
    router = MessageRouter()
    for i in range(INDEX_MIN_ENTRIES):
        router.add(Keyword(f"never{i}"), lambda m: "keyword")
    for pattern in patterns:
        router.add(Regex(pattern), lambda m, p=pattern: p)
    assert router.dispatch(parse_push(message_xml(text=text))) == answer


def test_the_index_follows_changes():
    router = MessageRouter()
    for i in range(INDEX_MIN_ENTRIES):
        router.add(Keyword(f"w{i}"), lambda m, i=i: f"old {i}")
    assert router.dispatch(parse_push(message_xml(text="w3"))) == "old 3"
    router.add(Keyword("new"), lambda m: "added")
    assert router.dispatch(parse_push(message_xml(text="new"))) == "added"
    router.replace([])
    assert router.dispatch(parse_push(message_xml(text="w3"))) is None


@pytest.mark.parametrize("built, required", [
    (Keyword("a"), "Keyword('a')"),
    (Keyword("a") & Users("o"), "Keyword('a')"),
    (Users("o") & Keyword("b"), "Keyword('b')"),
    (Keyword("a") | Keyword("b"), None),                  # either may hold: neither is required
    (~Keyword("a"), None),
    (Regex("a"), None),
])
def test_required_keyword(built, required):
    found = required_keyword(built)
    assert (repr(found) if found else None) == required


def test_index_counts():
    handlers = [type("H", (), {"filter": f})() for f in (Keyword("a"), Regex("b"), Keyword("c") & Users("o"),
                                                         Regex(r"(x)\1") & Users("o"), Regex("y", re.I))]
    index = KeywordIndex(handlers)
    assert index.indexed == 2 and index.always == [1, 3, 4]
    assert index.regex_indexed == 2  # "b" and "y" (each with its own flags); the backreference is asked


class OrderNumber(Filter):
    """A filter of a bot's own: a text naming an order ("订单" or "order" and digits), noting each time it is asked."""

    def __init__(self, asked):
        self.asked = asked

    def check(self, message):
        self.asked.append(text_of(message))
        said = folded_text_of(message) or ""
        return any(word in said for word in ("订单", "order")) and re.search(r"\d", said) is not None

    def requires(self):
        return Requirements(keywords=["订单", "ORDER"])

    def __repr__(self):
        return "OrderNumber()"


def test_a_filter_of_your_own_that_declares_keywords_joins_the_index():
    asked = []
    router = MessageRouter()
    for i in range(INDEX_MIN_ENTRIES):
        router.add(Keyword(f"产品{i}"), lambda m, i=i: f"product {i}")
    router.add(OrderNumber(asked) & Users("oA"), lambda m: "order", name="order")
    assert KeywordIndex(router._entries).indexed == INDEX_MIN_ENTRIES + 1
    for said in ["你好", "产品3", "转人工", "Ｏｒｄｅｒ"]:
        router.dispatch(parse_push(message_xml(text=said, sender="oA")))
    router.dispatch(parse_push(message_xml(event="CLICK", key="订单1")))
    assert asked == ["Ｏｒｄｅｒ"]  # only the text holding one of its words reached it
    assert router.dispatch(parse_push(message_xml(text="我的订单 123", sender="oA"))) == "order"
    assert router.dispatch(parse_push(message_xml(text="ORDER 9", sender="oB"))) is None
    assert asked == ["Ｏｒｄｅｒ", "我的订单 123", "ORDER 9"]


class Declared(Filter):
    """A filter of a bot's own that holds by ``holds`` and declares ``requirements``; notes each time it is asked."""

    def __init__(self, name, holds, requirements, asked):
        self.name, self.holds, self.requirements, self.asked = name, holds, requirements, asked

    def check(self, message):
        self.asked.append(self.name)
        return self.holds(message)

    def requires(self):
        return self.requirements

    def __repr__(self):
        return self.name


def test_a_filter_of_your_own_that_declares_kinds_and_events_is_asked_only_about_those():
    asked = []
    router = MessageRouter()
    for i in range(INDEX_MIN_ENTRIES):
        router.add(Keyword(f"w{i}"), lambda m: "keyword")
    router.add(Declared("menu", lambda m: event_key_of(m) == "MENU", Requirements(events=["CLICK"]), asked),
               lambda m: "menu")
    router.add(Declared("images", lambda m: msg_type_of(m) == "image", Requirements(kinds=["image"]), asked),
               lambda m: "image")
    assert router.dispatch(parse_push(message_xml(event="CLICK", key="MENU"))) == "menu"
    assert router.dispatch(parse_push(message_xml(event="VIEW", key="MENU"))) is None
    assert router.dispatch(parse_push(message_xml(msg_type="image"))) == "image"
    assert asked == ["menu", "images"]  # neither asked about the view; the image filter about no event


# Filters of a bot's own whose declarations are true of them: the index must answer as a linear scan with them,
# and with every way of combining them.
OWN = [
    ("own-words", lambda m: "人" in (folded_text_of(m) or "") and len(folded_text_of(m)) > 1,
     Requirements(keywords=["人"])),
    ("own-pattern", lambda m: re.search("a+b", text_of(m) or "") is not None, Requirements(patterns=["a+b"])),
    ("own-click", lambda m: event_of(m) == "click" and event_key_of(m) == "K",
     Requirements(kinds=["event"], events=["click"])),
    ("own-image", lambda m: msg_type_of(m) == "image", Requirements(kinds=["image"])),
    ("own-none", lambda m: sender_of(m) == "oB", None),
]


@st.composite
def composed(draw):
    def leaf():
        if draw(st.booleans()):
            return draw(filters())
        name, holds, requirements = draw(st.sampled_from(OWN))
        return Declared(name, holds, requirements, [])
    combined = leaf()
    for _ in range(draw(st.integers(0, 2))):
        operation = draw(st.sampled_from(["&", "|", "~"]))
        combined = ~combined if operation == "~" else combined & leaf() if operation == "&" else combined | leaf()
    return combined


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(composed(), min_size=INDEX_MIN_ENTRIES, max_size=30),
       st.lists(st.one_of(pushes, st.just(message_xml(event="VIEW", key="K")),
                          st.just(message_xml(msg_type="image", sender="oB"))), min_size=1, max_size=5))
def test_the_index_answers_as_a_linear_scan_with_filters_of_your_own_combined(rule_filters, xmls):
    router = MessageRouter()
    for number, filter_ in enumerate(rule_filters):
        router.add(filter_, lambda message, n=number: f"rule {n}", name=f"rule {number}")
    for xml in xmls:
        message = parse_push(xml)
        assert [h.name for h in router.candidates(message)] == [h.name for h in router._entries if h.filter(message)]


def test_the_index_reads_requirements_only():
    # No filter classes to test instances against and no private names: what a filter declares is all it sees.
    tree = ast.parse(pathlib.Path(matching.__file__).read_text(encoding="utf-8"))
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert not [name for module, name in imported if module == "filters" or name.startswith("_")]
