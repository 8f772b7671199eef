import pytest
import xmltodict
from wechatpy.replies import ArticlesReply, ImageReply, TextReply, TransferCustomerServiceReply

from kf_plugin.replies import TransferReply, cdata, render_reply, to_reply
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push

from .conftest import sample

INBOUND = parse_push(sample("event_kf_create_session.xml"))  # from fromuser to touser at 1399197672


def test_transfer_reply_matches_the_documented_bytes():
    reply = TransferReply(message=INBOUND, time=1399197672)
    # The docs' sample swaps To/From relative to our inbound sample: compare with the fields swapped back.
    reply.source, reply.target = "fromuser", "touser"
    assert render_reply(reply) == sample("transfer_expected.xml").strip()


def test_transfer_to_agent_matches_the_documented_bytes():
    reply = TransferReply(kf_account="test1@test", time=1399197672)
    reply.source, reply.target = "fromuser", "touser"
    assert render_reply(reply) == sample("transfer_to_agent_expected.xml").strip()


def test_transfer_swaps_to_and_from_and_has_no_whitespace():
    xml = render_reply(TransferReply(message=INBOUND))
    fields = xmltodict.parse(xml)["xml"]
    assert (fields["ToUserName"], fields["FromUserName"]) == ("fromuser", "touser")
    assert "\n" not in xml and "> <" not in xml


def test_create_time_defaults_to_now():
    reply = TransferReply()
    reply._data.pop("CreateTime")
    assert "<CreateTime>1700000000</CreateTime>" in render_reply(reply, now=1700000000.4)


def test_plain_wechatpy_transfer_reply_renders_compact_too():
    xml = render_reply(TransferCustomerServiceReply(message=INBOUND))
    assert "<MsgType><![CDATA[transfer_customer_service]]></MsgType></xml>" in xml and "\n" not in xml


@pytest.mark.parametrize("evil", ["]]>", "a]]>b", "]]><MsgType>news</MsgType><![CDATA[", "]]]]>>", "<![CDATA[x]]>"])
def test_text_is_safe_against_cdata_injection(evil):
    xml = render_reply(TextReply(message=INBOUND, content=evil))
    fields = xmltodict.parse(xml)["xml"]
    assert fields["Content"] == evil and fields["MsgType"] == "text"


def test_kf_account_and_nested_fields_are_safe_too():
    xml = render_reply(TransferReply(kf_account="a]]>b", message=INBOUND))
    assert xmltodict.parse(xml)["xml"]["TransInfo"]["KfAccount"] == "a]]>b"
    image = render_reply(ImageReply(message=INBOUND, media_id="m]]>1"))
    assert xmltodict.parse(image)["xml"]["Image"]["MediaId"] == "m]]>1"
    news = render_reply(ArticlesReply(message=INBOUND, articles=[
        {"title": "t]]>", "description": "d", "image": "http://i", "url": "http://u"}]))
    assert xmltodict.parse(news)["xml"]["Articles"]["item"]["Title"] == "t]]>"


def test_cdata_helper():
    assert cdata("x") == "<![CDATA[x]]>"
    assert xmltodict.parse(f"<a>{cdata('1]]>2]]>3')}</a>")["a"] == "1]]>2]]>3"


def test_to_reply_accepts_replies_strings_and_none():
    message = parse_push(message_xml(text="x", sender="oU", account="gh_A"))
    text = to_reply("hello", message)
    assert text.content == "hello" and (text.target, text.source) == ("oU", "gh_A")
    assert to_reply(None, message) is None
    transfer = to_reply(TransferReply(), message)
    assert (transfer.target, transfer.source) == ("oU", "gh_A")
    with pytest.raises(TypeError, match="not int"):
        to_reply(42, message)


def test_transfer_reply_is_addressed_as_wechatpy_addresses_it():
    ours, theirs = TransferReply(message=INBOUND), TransferCustomerServiceReply(message=INBOUND)
    assert (ours.source, ours.target) == (theirs.source, theirs.target) == ("touser", "fromuser")
    given = TransferReply(message=INBOUND, source="gh_other", target="oOther")
    assert (given.source, given.target) == ("gh_other", "oOther")


def test_transfer_reply_holds_the_fields_wechatpy_gives_it():
    ours, theirs = TransferReply(message=INBOUND), TransferCustomerServiceReply(message=INBOUND)
    assert set(ours._data) == set(theirs._data) == {"CreateTime", "FromUserName", "ToUserName"}
    assert abs(ours.time - theirs.time) < 5
    assert render_reply(ours, now=1700000000) == render_reply(theirs, now=1700000000)
    bare = TransferReply()
    assert set(bare._data) == set(TransferCustomerServiceReply()._data) == {"CreateTime"}


def test_render_reply_decodes_bytes_addresses_as_wechatpy_does():
    reply = TransferReply(source=b"gh_A", target="oU")
    fields = xmltodict.parse(render_reply(reply, now=1700000000))["xml"]
    assert (fields["FromUserName"], fields["ToUserName"]) == ("gh_A", "oU")
    assert fields["ToUserName"] == reply.target and fields["FromUserName"] == reply.source
