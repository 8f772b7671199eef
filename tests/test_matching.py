"""The keyword index: the same answers as asking every handler, found without asking them all."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kf_plugin import Event, Keyword, MessageRouter, MsgType, Regex, Users
from kf_plugin.matching import KeywordIndex, required_keyword
from kf_plugin.router import INDEX_MIN_ENTRIES
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

ALPHABET = "ab人工Ａ "   # few letters: words collide, overlap and fold into each other (Ａ → a)
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
                          match=draw(st.sampled_from(["contains", "exact", "prefix"])))
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
