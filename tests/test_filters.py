import pytest

from kf_plugin.filters import (
    ALL, EVENT, NOTHING, TEXT, Event, EventKey, EventKeyRegex, Filter, Keyword, MsgType, Regex, Users, as_filter,
)
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

from .conftest import sample


def text(content, **kw):
    return parse_push(message_xml(text=content, **kw))


def event(name, key=None, **kw):
    return parse_push(message_xml(event=name, key=key, **kw))


def voice(recognition):
    return parse_push(message_xml(msg_type="voice", extra={"MediaId": "m", "Format": "amr",
                                                           "Recognition": recognition}))


@pytest.mark.parametrize("words, match, said, expected", [
    (("人工",), "contains", "我要转人工服务", True),
    (("人工",), "contains", "机器人", False),
    (("人工",), "exact", "人工", True),
    (("人工",), "exact", " 人工 ", True),
    (("人工",), "exact", "转人工", False),
    (("人工",), "prefix", "人工客服", True),
    (("人工",), "prefix", "转人工", False),
    (("help",), "exact", "ＨＥＬＰ", True),
    (("HELP",), "contains", "i need help!", True),
    (("ｈｉ",), "exact", "HI", True),
    (("a", "b"), "exact", "b", True),
    (("a", "b"), "prefix", "bz", True),
])
def test_keyword_modes(words, match, said, expected):
    assert Keyword(*words, match=match)(text(said)) is expected


def test_keyword_reads_voice_recognition_and_ignores_events_and_images():
    assert Keyword("人工")(voice("我要人工"))
    assert not Keyword("人工")(event("CLICK", "人工"))
    assert not Keyword("test")(parse_push(sample("image.xml")))


@pytest.mark.parametrize("bad", [dict(words=()), dict(words=(" ",)), dict(words=("a",), match="fuzzy")])
def test_keyword_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        Keyword(*bad["words"], match=bad.get("match", "contains"))


def test_regex_searches_text():
    assert Regex("投诉|退款")(text("我要退款"))
    assert not Regex("^退款")(text("我要退款"))
    assert not Regex(".")(event("CLICK", "x"))


@pytest.mark.parametrize("name, pushed, expected", [
    ("CLICK", ("click", "K"), True),
    ("click", ("CLICK", "K"), True),
    ("VIEW", ("CLICK", "K"), False),
    ("subscribe", ("subscribe", None), True),
    ("subscribe", ("subscribe", "qrscene_123123"), True),
    ("SCAN", ("SCAN", "123123"), True),
    ("kf_create_session", ("kf_create_session", None), True),
    ("scancode_push", ("scancode_push", "6"), True),
])
def test_event(name, pushed, expected):
    assert Event(name)(event(*pushed)) is expected


def test_event_never_matches_messages():
    assert not Event("text")(text("hi"))


@pytest.mark.parametrize("key, pushed, expected", [
    ("CONTACT_VIP", ("CLICK", "CONTACT_VIP"), True),
    ("CONTACT_VIP", ("CLICK", "contact_vip"), False),
    ("123123", ("subscribe", "qrscene_123123"), True),
    ("qrscene_123123", ("subscribe", "qrscene_123123"), True),
    ("123123", ("SCAN", "123123"), True),
    ("qrscene_123123", ("SCAN", "123123"), False),
    ("123", ("subscribe", "qrscene_123123"), False),
    ("last_trade_no_1", ("subscribe", "last_trade_no_1"), True),
])
def test_event_key(key, pushed, expected):
    assert EventKey(key)(event(*pushed)) is expected


def test_event_key_regex_sees_scene_without_prefix():
    assert EventKeyRegex(r"^after_")(event("subscribe", "qrscene_after_sales"))
    assert EventKeyRegex(r"^\d+$")(event("SCAN", "42"))
    assert not EventKeyRegex(".")(text("hi"))


def test_msg_type_and_users():
    assert MsgType("TEXT")(text("x"))
    assert MsgType("image", "voice")(parse_push(sample("voice.xml")))
    assert not MsgType("text")(event("CLICK"))
    assert Users("oA", "oB")(text("x", sender="oB"))
    assert not Users("oA")(text("x", sender="oC"))


def test_ready_made_filters():
    assert ALL(event("CLICK")) and TEXT(text("x")) and EVENT(event("VIEW", "u"))
    assert not TEXT(event("CLICK"))
    assert not NOTHING(text("x")) and not NOTHING(event("CLICK")) and (~NOTHING)(text("x"))


def test_composition_semantics():
    click = event("CLICK", "K")
    assert (Event("CLICK") & EventKey("K"))(click)
    assert not (Event("CLICK") & EventKey("J"))(click)
    assert (EventKey("J") | EventKey("K"))(click)
    assert (~Event("VIEW"))(click)
    assert not (~ALL)(click)


def test_composition_short_circuits():
    seen = []

    def spy(name, value):
        def check(message):
            seen.append(name)
            return value
        check.__qualname__ = name
        return check

    (as_filter(spy("a", False)) & spy("b", True))(text("x"))
    (as_filter(spy("c", True)) | spy("d", True))(text("x"))
    assert seen == ["a", "c"]


@pytest.mark.parametrize("built, shown", [
    (Keyword("人工") & Event("CLICK"), "Keyword('人工') & Event('CLICK')"),
    (Keyword("a", "b", match="exact"), "Keyword('a', 'b', match='exact')"),
    (Event("CLICK") & EventKey("K") & Users("o1"), "Event('CLICK') & EventKey('K') & Users('o1')"),
    ((Event("CLICK") | Event("VIEW")) & EventKey("K"), "(Event('CLICK') | Event('VIEW')) & EventKey('K')"),
    (~(TEXT | EVENT), "~(MsgType('text') | MsgType('event'))"),
    (~TEXT, "~MsgType('text')"),
    (Regex("投诉|退款"), "Regex('投诉|退款')"),
    (EventKeyRegex("^a"), "EventKeyRegex('^a')"),
    (ALL, "ALL"),
    (NOTHING, "NOTHING"),
])
def test_reprs_explain_the_rule(built, shown):
    assert repr(built) == shown


def test_any_callable_is_a_filter_on_either_side():
    def is_vip(message):
        return message.source == "oVIP"
    combined = is_vip & TEXT
    assert isinstance(combined, Filter)
    assert repr(combined) == "test_any_callable_is_a_filter_on_either_side.<locals>.is_vip & MsgType('text')"
    assert combined(text("x", sender="oVIP")) and not combined(text("x", sender="oX"))
    with pytest.raises(TypeError):
        as_filter(42)


def test_filters_tolerate_malformed_fields():
    # The webhook refuses such a push, but a bot's own view may parse it with wechatpy directly:
    # a duplicated Content element parses as a list, and text filters must not crash on it.
    from wechatpy import parse_message
    message = parse_message("<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>"
                         "<MsgType>text</MsgType><Content>x</Content><Content>y</Content></xml>")
    assert not Keyword("x")(message) and not Regex("x")(message)
