"""What filters declare they require of a push, and how ``&`` and ``|`` combine it."""
import re

import pytest

from kf_plugin import (
    ALL,
    EVENT,
    TEXT,
    Event,
    EventKey,
    EventKeyRegex,
    Filter,
    Keyword,
    MsgType,
    Regex,
    Requirements,
    Users,
)
from kf_plugin.filters import as_filter
from kf_plugin.requirements import ANYTHING, requirements_of

TEXTS = frozenset({"text", "voice"})
FOLLOWS = frozenset({"subscribe", "subscribe_scan", "subscribe_scan_product"})


@pytest.mark.parametrize("built, kinds, events, keywords, patterns", [
    (Keyword("人工", "ＨＥＬＰ", match="exact"), TEXTS, None, ("人工", "help"), ()),
    (Regex("退款"), TEXTS, None, None, ("退款",)),
    (MsgType("Image", "voice"), {"image", "voice"}, None, None, ()),
    (TEXT, {"text"}, None, None, ()),
    (Event("CLICK", "view"), {"event"}, {"click", "view"}, None, ()),
    (Event("subscribe"), {"event"}, FOLLOWS, None, ()),
    (EventKey("K"), {"event"}, None, None, ()),
    (EventKeyRegex("^K"), {"event"}, None, None, ()),
    (Users("oA"), None, None, None, ()),          # every push has a sender
    (ALL, None, None, None, ()),
    (as_filter(lambda message: True), None, None, None, ()),
    # &: everything every part requires (kinds and events narrowed, patterns all, one part's words)
    (Keyword("a") & Users("oA") & Regex("x") & Regex("y"), TEXTS, None, ("a",), ("x", "y")),
    (MsgType("text", "image") & Keyword("a") & Keyword("b"), {"text"}, None, ("a",), ()),
    (EVENT & Event("CLICK") & EventKey("K"), {"event"}, {"click"}, None, ()),
    (Event("CLICK") & Event("VIEW"), {"event"}, {"click"}, None, ()),   # cannot hold: either is still true of it
    # |: only kinds and events, and only when every part names them
    (Event("CLICK") | Event("VIEW"), {"event"}, {"click", "view"}, None, ()),
    (Keyword("a") | Event("CLICK"), TEXTS | {"event"}, None, None, ()),
    (Keyword("a") | Keyword("b"), TEXTS, None, None, ()),
    (Keyword("a") | Users("oA"), None, None, None, ()),
    # ~: anything
    (~Keyword("a"), None, None, None, ()),
    (~Event("CLICK"), None, None, None, ()),
])
def test_built_in_filters_declare_what_they_require(built, kinds, events, keywords, patterns):
    declared = built.requires()
    assert (declared.kinds, declared.events, declared.keywords) == (kinds, events, keywords)
    assert tuple(p.pattern for p in declared.patterns) == patterns


def test_requirements_are_normalised_as_the_filters_compare():
    declared = Requirements(kinds=["TEXT"], events=("Subscribe",), keywords=["  ＨＥＬＰ ", "help", "人工"],
                            patterns=["a", re.compile("b", re.I), "a"])
    assert declared.kinds == {"text"} and declared.events == FOLLOWS
    assert declared.keywords == ("help", "人工")
    assert declared.patterns == (re.compile("a"), re.compile("b", re.I))
    assert Requirements() == ANYTHING and hash(declared) == hash(Requirements(**vars(declared)))


@pytest.mark.parametrize("arguments, error, says", [
    (dict(kinds=[]), ValueError, "kinds is empty"),
    (dict(events=set()), ValueError, "events is empty"),
    (dict(keywords=()), ValueError, "keywords is empty"),
    (dict(keywords=["a", " "]), ValueError, "keywords must be non-blank strings, not ' '"),
    (dict(kinds=["text", 1]), ValueError, "kinds must be non-blank strings, not 1"),
    (dict(keywords="help"), TypeError, "keywords must be a collection of strings, not the string 'help'"),
    (dict(patterns="a+"), TypeError, "patterns must be a collection of patterns"),
    (dict(patterns=[re.compile(b"a")]), TypeError, "patterns must be strings or compiled str patterns"),
])
def test_bad_requirements_are_refused_naming_the_problem(arguments, error, says):
    with pytest.raises(error, match=re.escape(says)):
        Requirements(**arguments)


def test_an_invalid_pattern_is_refused_by_re():
    with pytest.raises(re.error):
        Requirements(patterns=["("])


class Declares(Filter):
    def __init__(self, declared):
        self.declared = declared

    def check(self, message):
        return True

    def requires(self):
        return self.declared

    def __repr__(self):
        return "Declares()"


def test_a_filter_of_your_own_joins_and():
    combined = Declares(Requirements(keywords=["vip"])) & Declares(Requirements(kinds=["voice", "text"])) & TEXT
    assert combined.requires() == Requirements(kinds=["text"], keywords=["vip"])
    assert (Declares(None) & Keyword("a")).requires() == Keyword("a").requires()


def test_requires_must_return_requirements_or_none():
    with pytest.raises(TypeError, match=r"Declares\(\)\.requires\(\) returned a dict, not Requirements or None"):
        requirements_of(Declares({"keywords": ["a"]}))
    with pytest.raises(TypeError, match="returned a dict"):
        (Declares({}) & Keyword("a")).requires()
    assert requirements_of(Declares(None)) is ANYTHING and requirements_of(object()) is ANYTHING
