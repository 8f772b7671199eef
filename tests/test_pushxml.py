"""kf_plugin.pushxml gives what wechatpy.parse_message (and xmltodict under it) gives, faster for plain pushes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Tuple

import pytest
import xmltodict
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy import parse_message as wechatpy_parse_message
from wechatpy.events import EVENT_TYPES
from wechatpy.messages import MESSAGE_TYPES

from kf_plugin import pushxml
from kf_plugin.pushxml import parse_fields, parse_message, plain_fields

DATA = Path(__file__).parent / "data"
SAMPLES = sorted(p for p in DATA.glob("*.xml") if not p.name.endswith("_expected.xml"))
HEAD = ("<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime>")


def outcome(parse: Callable[[str], Any], xml: str) -> Tuple[Any, ...]:
    """What ``parse`` makes of ``xml``: the message's class and fields, the value, or the exception's type."""
    try:
        result = parse(xml)
    except Exception as exc:
        return ("raises", type(exc))
    if hasattr(result, "_data"):
        return (type(result), result._data)
    return ("value", result)


def assert_same(xml: str) -> None:
    assert outcome(parse_message, xml) == outcome(wechatpy_parse_message, xml)
    assert outcome(parse_fields, xml) == outcome(lambda x: xmltodict.parse(x)["xml"], xml)


def is_flat(xml: str) -> bool:
    """Whether ``xml`` is read by the one regular expression (the fastest path)."""
    return pushxml._flat_fields(xml) is not None


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_push_parses_as_wechatpy_parses_it_on_the_fast_path(path: Path) -> None:
    xml = path.read_text("utf-8")
    assert plain_fields(xml) is not None
    assert_same(xml)


def test_the_usual_pushes_are_flat() -> None:
    flat = [path.name for path in SAMPLES if is_flat(path.read_text("utf-8"))]
    assert {"text.xml", "voice.xml", "event_click.xml", "event_subscribe.xml", "event_location.xml"} <= set(flat), flat


def push(msg_type: str, **fields: str) -> str:
    return HEAD + f"<MsgType><![CDATA[{msg_type}]]></MsgType>" + "".join(
        f"<{name}><![CDATA[{value}]]></{name}>" for name, value in fields.items()) + "<MsgId>1</MsgId></xml>"


KINDS = (
    [push(kind) for kind in MESSAGE_TYPES]
    + [push("event", Event=event.upper()) for event in EVENT_TYPES if not event.startswith("device_")]
    + [push(event) for event in EVENT_TYPES if event.startswith("device_")]
    + [push("device_event", Event="bind"), push("device_text"), push("DEVICE_EVENT", Event="UNBIND")]
    + [push("event", Event="subscribe", EventKey=key)
       for key in ("qrscene_123", "qrscene_", "scanbarcode|x", "scanimage|y", "last_trade_no", "")]
    + [push("event", Event="SUBSCRIBE", EventKey="qrscene_7"), push("event"), push("event", Event="no_such_event"),
       push("no_such_type"), push("TEXT", Content="大写"), push("event", Event="CLICK", EventKey="人工")]
)


@pytest.mark.parametrize("xml", KINDS)
def test_every_message_and_event_type_wechatpy_knows_gets_its_class_and_fields(xml: str) -> None:
    assert plain_fields(xml) is not None
    assert_same(xml)


@pytest.mark.parametrize("xml", [
    '<!DOCTYPE xml [<!ENTITY e "expanded">]><xml><MsgType>text</MsgType><Content>&e;</Content></xml>',
    '<xml xmlns:a="urn:x"><MsgType>text</MsgType></xml>',
    '<xml><MsgType xmlns="urn:x">text</MsgType></xml>',
    '<xml id="1"><MsgType>text</MsgType></xml>',
    '<xml><MsgType kind="x">text</MsgType></xml>',
    "<xml><MsgType>text</MsgType><Info>text<a>1</a></Info></xml>",
    "<xml><MsgType>text</MsgType><Info><a>1</a>text</Info></xml>",
    "<xml><MsgType>text</MsgType>" + "<a>" * 9 + "deep" + "</a>" * 9 + "</xml>",
    "<xml>loose<MsgType>text</MsgType></xml>",
    "<xml><MsgType>text</MsgType>loose</xml>",
    "<root><MsgType>text</MsgType></root>",
    "<xml></xml>",
    "<xml><MsgType>text</MsgType>",
    "<xml><a:MsgType>text</a:MsgType></xml>",
    "<xml><MsgType>text</MsgType><xml:lang>zh</xml:lang></xml>",          # the tree builder would say {uri}lang
    "<xml><MsgType>text</MsgType><Info><xml:space>x</xml:space></Info></xml>",
    "<xml><xml:MsgType>text</xml:MsgType></xml>",
    "not xml",
])
def test_documents_that_are_not_plain_pushes_go_to_wechatpy_and_come_out_the_same(xml: str) -> None:
    assert plain_fields(xml) is None
    assert_same(xml)


@pytest.mark.parametrize("xml", [
    "<xml><MsgType>text</MsgType><Content><a>1</a></Content></xml>",
    "<xml><MsgType>text</MsgType><Content>1</Content><Content>2</Content><Content/></xml>",
    "<xml><MsgType>event</MsgType><Event>pic_weixin</Event><SendPicsInfo><Count>2</Count><PicList>"
    "<item><PicMd5Sum>a</PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item></PicList></SendPicsInfo></xml>",
    "<xml><MsgType>text</MsgType>" + "<a>" * 8 + "deep" + "</a>" * 8 + "</xml>",
    "<xml><MsgType/></xml>",
    "<xml><MsgType><a>text</a></MsgType></xml>",
])
def test_nested_repeated_and_empty_elements_come_out_as_in_xmltodict(xml: str) -> None:
    assert plain_fields(xml) is not None
    assert_same(xml)


def test_text_is_kept_as_xmltodict_keeps_it() -> None:
    xml = ("<?xml version='1.0' encoding='GBK'?><xml>\n  <MsgType><![CDATA[text]]></MsgType>\n"
           "  <Content>  a<!-- c -->b<?pi x?> &amp; &#x41; <![CDATA[]]]]><![CDATA[>]]>\r\n</Content>"
           "<Empty/><Blank> </Blank></xml>")
    assert plain_fields(xml) == {"MsgType": "text", "Content": "ab & A ]]>", "Empty": None, "Blank": None}
    assert_same(xml)


_NAMES = st.sampled_from(["MsgType", "Event", "EventKey", "Content", "MsgId", "a:b", "xml:lang", "xml:MsgType", "X"])
_CHARACTERS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6).map(
    lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
_WELL_FORMED = ["text", "event", "EVENT", "subscribe", "qrscene_1", "scanimage|", "device_text", "device_event",
                " ", "\n\t", "\u3000", "&#x20;", "&amp;", "&lt;", "&#xD;", "<![CDATA[ x ]]>", "<![CDATA[]]>",
                "<![CDATA[]]]]><![CDATA[>]]>", "<!-- c -->", "<?pi x?>"]
_PLAIN_TEXTS = st.lists(st.one_of(_CHARACTERS, st.sampled_from(_WELL_FORMED)), max_size=4).map("".join)
_TEXTS = st.lists(st.one_of(_CHARACTERS, st.sampled_from(_WELL_FORMED + ["]]>", "&undefined;", "<i/>", "<i>n</i>"])),
                  max_size=4).map("".join)
_ELEMENTS = st.builds(
    lambda name, attrs, text, self_closing: f"<{name}{attrs}/>" if self_closing else f"<{name}{attrs}>{text}</{name}>",
    _NAMES, st.sampled_from(["", "", "", ' k="v"', ' xmlns="urn:x"']), _TEXTS, st.booleans())
_DOCUMENTS = st.builds(
    lambda prolog, root, attrs, lead, elements, gaps: (
        f"{prolog}<{root}{attrs}>{lead}" + "".join(e + g for e, g in zip(elements, gaps)) + f"</{root}>"),
    st.sampled_from(["", "", "<?xml version='1.0'?>", "<?xml version='1.0' encoding='GBK'?>\n",
                     '<!DOCTYPE xml [<!ENTITY e "x">]>', "<!-- c -->"]),
    st.sampled_from(["xml", "xml", "xml", "root"]),
    st.sampled_from(["", "", "", ' id="1"', ' xmlns:a="urn:x"']),
    st.sampled_from(["", "", "\n  ", "t"]),
    st.lists(_ELEMENTS, max_size=6),
    st.lists(st.sampled_from(["", "", "\n", " ", "x", "<!-- c -->", "&#x20;"]), min_size=6, max_size=6),
)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(_DOCUMENTS)
def test_any_document_parses_as_wechatpy_and_xmltodict_parse_it(xml: str) -> None:
    assert_same(xml)


_PLAIN_PUSHES = st.builds(
    lambda msg_type, others: HEAD + f"<MsgType>{msg_type}</MsgType>" + "".join(
        f"<{name}>{text}</{name}>" for name, text in others.items()) + "</xml>",
    st.sampled_from(["text", "event", "image", "EVENT", "device_event", "no_such_type"]),
    st.dictionaries(st.sampled_from(["Event", "EventKey", "Content", "MsgId", "X"]), _PLAIN_TEXTS, max_size=4),
)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(_PLAIN_PUSHES)
def test_plain_pushes_take_the_fast_path(xml: str) -> None:
    assert plain_fields(xml) is not None
    assert_same(xml)


@pytest.mark.parametrize("xml, fields", [
    (HEAD + "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[a]]]]></Content></xml>", {"Content": "a]]"}),
    (HEAD + "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ <b>&amp;</b> ]]></Content></xml>",
     {"Content": "<b>&amp;</b>"}),
    (HEAD + "<MsgType>text</MsgType><Content>\u3000 x > y \u3000</Content></xml>", {"Content": "x > y"}),
    (HEAD + "<MsgType>text</MsgType><Content><![CDATA[ \n ]]></Content><MsgId></MsgId>\n</xml>\n",
     {"Content": None, "MsgId": None}),
])
def test_flat_documents_read_as_xmltodict_reads_them(xml: str, fields: dict) -> None:
    assert is_flat(xml)
    parsed = plain_fields(xml)
    assert parsed is not None and {name: parsed[name] for name in fields} == fields
    assert_same(xml)


@pytest.mark.parametrize("xml", [
    HEAD + "<MsgType>text</MsgType><Content><![CDATA[a\r\nb]]></Content></xml>",   # XML makes \r\n a \n
    HEAD + "<MsgType>text</MsgType><Content>a &amp; b</Content></xml>",
    HEAD + "<MsgType>text</MsgType><Content><![CDATA[a]]><![CDATA[b]]></Content></xml>",
    HEAD + "<MsgType>text</MsgType><Content><![CDATA[a]]> </Content></xml>",
    HEAD + "<MsgType>text</MsgType><Content>a]]>b</Content></xml>",                   # not well-formed
    HEAD + "<MsgType>text</MsgType><Content>1</Content><Content>2</Content></xml>",  # a list
    HEAD + "<MsgType>text</MsgType><Content/></xml>",
    HEAD + "<MsgType>text</MsgType><Content>\x01</Content></xml>",                   # not a character XML has
    HEAD + "<MsgType>text</MsgType><Content>x</content></xml>",
    "<?xml version='1.0'?>" + HEAD + "<MsgType>text</MsgType></xml>",
    " " + HEAD + "<MsgType>text</MsgType></xml>",
    HEAD + "<MsgType>text</MsgType></xml>x",                                          # after the document
    "<xmL>" + HEAD[5:] + "<MsgType>text</MsgType></xml>",                             # the root's tags differ
])
def test_documents_the_expression_leaves_to_the_parsers_come_out_the_same(xml: str) -> None:
    assert not is_flat(xml)
    assert_same(xml)


_FLAT_TEXTS = st.lists(st.one_of(st.characters(blacklist_categories=("Cs",)),
                                 st.sampled_from(["]", "]]", ">", "]]>", "\r", "\u3000", "\x85", " ", "\n"])),
                       max_size=8).map("".join)
_FLAT_PUSHES = st.builds(
    lambda msg_type, others, gaps: HEAD + f"<MsgType><![CDATA[{msg_type}]]></MsgType>" + "".join(
        f"{gap}<{name}><![CDATA[{text}]]></{name}>" if cdata else f"{gap}<{name}>{text}</{name}>"
        for (name, (text, cdata)), gap in zip(others.items(), gaps)) + "</xml>",
    st.sampled_from(["text", "event", "voice"]),
    st.dictionaries(st.sampled_from(["Event", "EventKey", "Content", "MsgId", "Recognition", "X.y-z"]),
                    st.tuples(_FLAT_TEXTS, st.booleans()), max_size=5),
    st.lists(st.sampled_from(["", "\n", " \t", "\r\n"]), min_size=5, max_size=5),
)


@settings(max_examples=1500, deadline=None, derandomize=True, database=None)
@given(_FLAT_PUSHES)
def test_any_flat_looking_push_parses_as_wechatpy_parses_it(xml: str) -> None:
    assert_same(xml)
