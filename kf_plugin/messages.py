"""The fields of a pushed message, read the same way everywhere.

Filters, the rule index, the 48-hour window and the replies all ask a wechatpy
message the same few questions — who sent it, to which account, what kind it
is, which event, what the user said. The answers are read from the fields as
WeChat sent them (``message._data``), not through wechatpy's converted
attributes, so a malformed field reads as ``None`` instead of raising; each
answer is computed once per message and kept on it.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .folding import FULL, Folding

__all__ = [
    "fold", "channel_of", "msg_type_of", "event_of", "event_key_of", "sender_of", "account_of", "text_of",
    "folded_text_of",
    "TEXT_KINDS", "QR_SCENE_PREFIX", "SUBSCRIBE_EVENTS", "WECOM_EVENTS",
]

#: The kinds of message whose text a user typed or said: Content of ``text``, Recognition of ``voice``.
TEXT_KINDS = frozenset({"text", "voice"})
QR_SCENE_PREFIX = "qrscene_"
#: wechatpy renames a follow through a parametric QR code to ``subscribe_scan`` (and strips ``qrscene_`` from
#: EventKey); for rules it is still a follow.
SUBSCRIBE_EVENTS = frozenset({"subscribe", "subscribe_scan", "subscribe_scan_product"})
#: The events of 微信客服 (their ``event_type``), which rules may name in ``event:`` too.
WECOM_EVENTS = frozenset({"enter_session", "msg_send_fail", "servicer_status_change", "session_status_change",
                          "user_recall_msg", "servicer_recall_msg"})


def fold(text: str) -> str:
    """Normalise text for keyword comparison with every folding (:data:`~kf_plugin.folding.FULL`).

    Folds full-width and half-width forms (NFKC), case, Traditional Chinese and its variants, and surrounding
    spaces, so ``"  ＨＥＬＰ "`` and ``"help"`` compare equal, and ``"轉人工"`` and ``"转人工"`` do.
    """
    return FULL(text)


def _field(message: Any, name: str) -> Optional[str]:
    value = getattr(message, "_data", {}).get(name)
    return value if isinstance(value, str) else None


def _cached(message: Any, name: str, compute: Callable[[Any], Any]) -> Any:
    # Every rule asks the same few questions of a message: answer each once.
    cache = message.__dict__
    if name not in cache:
        cache[name] = compute(message)
    return cache[name]


def _lower_field(name: str) -> Callable[[Any], Optional[str]]:
    def read(message: Any) -> Optional[str]:
        value = _field(message, name)
        return value.lower() if value is not None else None
    return read


_read_msg_type = _lower_field("MsgType")
_read_event = _lower_field("Event")


def channel_of(message: Any) -> str:
    """The channel a message came through: ``wecom`` (微信客服) when it says so, else ``oa`` (the Official
    Account's webhook; wechatpy's messages say nothing)."""
    return getattr(message, "channel", "oa")


def msg_type_of(message: Any) -> Optional[str]:
    """The message's MsgType, lower case (``text``, ``event``, ...)."""
    return _cached(message, "_kf_msg_type", _read_msg_type)


def event_of(message: Any) -> Optional[str]:
    """The event name of an event push, lower case; ``None`` for messages."""
    if msg_type_of(message) != "event":
        return None
    return _cached(message, "_kf_event", _read_event)


def event_key_of(message: Any) -> Optional[str]:
    """The EventKey of an event push, with ``qrscene_`` removed for follows."""
    if msg_type_of(message) != "event":
        return None
    key = _field(message, "EventKey")
    if key is not None and event_of(message) in SUBSCRIBE_EVENTS and key.startswith(QR_SCENE_PREFIX):
        key = key[len(QR_SCENE_PREFIX):]
    return key


def sender_of(message: Any) -> Optional[str]:
    """The sender's OpenID (FromUserName), read without wechatpy's field conversion."""
    return _field(message, "FromUserName")


def account_of(message: Any) -> Optional[str]:
    """The official account the message was sent to (ToUserName)."""
    return _field(message, "ToUserName")


def text_of(message: Any) -> Optional[str]:
    """The text a user said: Content of a text message, Recognition of a voice message."""
    return _cached(message, "_kf_text", _read_text)


def _read_text(message: Any) -> Optional[str]:
    kind = msg_type_of(message)
    if kind == "text":
        return _field(message, "Content")
    if kind == "voice":
        return _field(message, "Recognition")
    return None


def folded_text_of(message: Any, folding: Folding = FULL) -> Optional[str]:
    """:func:`text_of` passed through ``folding`` (every folding by default): what keywords are compared against."""
    cache = message.__dict__
    key = folding.cache_key
    if key not in cache:
        text = text_of(message)
        cache[key] = folding(text) if text is not None else None
    return cache[key]
