"""Message fields: read once, the same way for filters, the index, the window and the replies."""
import pytest

from kf_plugin.messages import (
    account_of,
    event_key_of,
    event_of,
    fold,
    folded_text_of,
    msg_type_of,
    sender_of,
    text_of,
)
from kf_plugin.testing import message_xml
from kf_plugin.webhook import parse_push


def text(content, **kw):
    return parse_push(message_xml(text=content, **kw))


@pytest.mark.parametrize("raw, folded", [
    ("  ＨＥＬＰ ", "help"),
    ("转人工", "转人工"),
    ("\u3000人工\u3000", "人工"),        # ideographic spaces
    ("ＡｂＣ１２３", "abc123"),
    ("Straße", "strasse"),
])
def test_fold(raw, folded):
    assert fold(raw) == folded


def test_sender_and_account_of():
    message = text("x", sender="oU", account="gh_A")
    assert (sender_of(message), account_of(message)) == ("oU", "gh_A") == (message.source, message.target)
    assert sender_of(object()) is None and account_of(object()) is None


@pytest.mark.parametrize("xml, kind, said", [
    (message_xml(text="ＨＥＬＰ me"), "text", "ＨＥＬＰ me"),
    (message_xml(msg_type="voice", extra={"MediaId": "m", "Format": "amr", "Recognition": "转人工"}), "voice",
     "转人工"),
    (message_xml(msg_type="voice", extra={"MediaId": "m", "Format": "amr"}), "voice", None),
    (message_xml(msg_type="IMAGE", extra={"PicUrl": "u", "MediaId": "m"}), "image", None),
    (message_xml(event="CLICK", key="转人工"), "event", None),
])
def test_what_the_user_said(xml, kind, said):
    message = parse_push(xml)
    assert (msg_type_of(message), text_of(message)) == (kind, said)
    assert folded_text_of(message) == (fold(said) if said is not None else None)


@pytest.mark.parametrize("xml, event, key", [
    (message_xml(event="CLICK", key="K"), "click", "K"),
    (message_xml(event="subscribe", key="qrscene_123"), "subscribe_scan", "123"),
    (message_xml(event="SCAN", key="qrscene_123"), "scan", "qrscene_123"),   # only a follow carries the prefix
    (message_xml(event="VIEW"), "view", None),
    (message_xml(text="qrscene_123"), None, None),
])
def test_events_and_their_keys(xml, event, key):
    message = parse_push(xml)
    assert (event_of(message), event_key_of(message)) == (event, key)


def test_each_answer_is_read_once():
    message = text("Ｈi")
    assert folded_text_of(message) == "hi"
    message._data["Content"] = "changed"
    assert (text_of(message), folded_text_of(message)) == ("Ｈi", "hi")
