"""Passive replies rendered compact and safe.

wechatpy's renderer puts newlines between tags, cannot name a designated agent
in a transfer, and wraps text in CDATA without escaping ``]]>`` — so text from a
user or a config file could inject XML. :func:`render_reply` renders any
wechatpy reply without whitespace between top-level tags and with every CDATA
section split safely.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Dict, Optional, Tuple

from wechatpy.replies import BaseReply, TextReply, TransferCustomerServiceReply
from wechatpy.utils import to_text

from .messages import account_of, sender_of

__all__ = ["TransferReply", "ServicerTransfer", "TextReply", "cdata", "render_reply", "to_reply", "as_custom_message"]

_HEADER_FIELDS = ("target", "source", "time")


def cdata(text: str) -> str:
    """Wrap ``text`` in CDATA; a ``]]>`` inside is split across two sections."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _text(value: Any) -> str:
    # What wechatpy's StringField would give (bytes decoded), read straight from the reply's data.
    return value if isinstance(value, str) else to_text(value) if value else ""


def _defuse(value: Any) -> Any:
    # wechatpy's field templates put values inside CDATA verbatim: pre-split any
    # terminator so the section it lands in stays closed where it should.
    if isinstance(value, str):
        return value.replace("]]>", "]]]]><![CDATA[>")
    if isinstance(value, dict):
        return {k: _defuse(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_defuse(v) for v in value]
    return value


class TransferReply(TransferCustomerServiceReply):
    """Hand the conversation to customer service (``transfer_customer_service``).

    ``kf_account`` designates an agent (``<TransInfo><KfAccount>``); without it
    any available agent takes the user.
    """

    def __init__(self, kf_account: Optional[str] = None, *, message: Any = None, **kwargs: Any):
        if kwargs:
            super().__init__(**kwargs)
        else:   # what wechatpy's __init__ makes of no fields (it sets the time), without its loop (every transfer)
            self._data: Dict[str, Any] = {"CreateTime": time.time()}
        self.kf_account = kf_account
        if message is not None:  # addressed as wechatpy would, without its field conversions (on every transfer)
            self._data.setdefault("FromUserName", account_of(message))
            self._data.setdefault("ToUserName", sender_of(message))


class ServicerTransfer(TransferReply):
    """A 微信客服 hand-off (``service_state/trans``): to ``servicer`` (state 3) when one is named, else to the
    pool (state 2). ``to_pool``: whether the pool takes the customer when the servicer cannot (95014); if not,
    the rule file's fallback text answers them and they stay with the bot."""

    def __init__(self, servicer: Optional[str] = None, *, to_pool: bool = True, message: Any = None):
        super().__init__(message=message)
        self.servicer = servicer
        self.to_pool = to_pool


def to_reply(result: Any, message: Any) -> Optional[BaseReply]:
    """Turn a handler's return value into a wechatpy reply addressed to ``message``'s sender.

    A string becomes a :class:`TextReply`; ``None`` stays ``None``; a reply gets
    its To/From swapped from the message.

    :raises TypeError: for any other value.
    """
    if result is None or isinstance(result, BaseReply):
        reply = result
    elif isinstance(result, str):
        reply = TextReply(content=result)
    else:
        raise TypeError(
            f"a handler must return a wechatpy reply, a string or None, not {type(result).__name__}"
        )
    if reply is not None:
        reply._data["FromUserName"] = account_of(message)
        reply._data["ToUserName"] = sender_of(message)
    return reply


def render_reply(reply: BaseReply, now: Optional[float] = None) -> str:
    """Render ``reply`` as compact, injection-safe XML.

    ``now`` sets CreateTime; without it the reply's own time (wechatpy sets one
    when the reply is built), or the current time.
    """
    data = reply._data
    created = now if now is not None else data.get("CreateTime")
    created = int(created if created is not None else time.time())
    nodes = [
        "<xml><ToUserName>", cdata(_text(data.get("ToUserName"))), "</ToUserName>",
        "<FromUserName>", cdata(_text(data.get("FromUserName"))), "</FromUserName>",
        "<CreateTime>", str(created), "</CreateTime>",
        "<MsgType>", cdata(reply.type), "</MsgType>",
    ]
    for name, field in reply._fields.items():
        if name in _HEADER_FIELDS:
            continue
        value = data.get(field.name)
        if value is None:
            value = copy.deepcopy(field.default)
        nodes.append(field.to_xml(_defuse(value)))
    kf_account = getattr(reply, "kf_account", None)
    if kf_account:
        nodes += ["<TransInfo><KfAccount>", cdata(kf_account), "</KfAccount></TransInfo>"]
    nodes.append("</xml>")
    return "".join(nodes)


def as_custom_message(reply: BaseReply) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The customer-service message (``msgtype``, body) that says what a passive ``reply`` said.

    ``None`` for a reply that has no such equivalent (a transfer, say). A news
    reply keeps its first article: custom news messages carry one.
    """
    kind = reply.type
    if kind == "text":
        return "text", {"content": reply.content or ""}
    if kind in ("image", "voice"):
        return kind, {"media_id": reply.media_id}
    if kind == "video":
        return "video", {"media_id": reply.media_id, "thumb_media_id": "", "title": reply.title or "",
                         "description": reply.description or ""}
    if kind == "music":
        return "music", {"title": reply.title or "", "description": reply.description or "",
                         "musicurl": reply.music_url or "", "hqmusicurl": reply.hq_music_url or "",
                         "thumb_media_id": reply.thumb_media_id or ""}
    if kind == "news" and reply.articles:
        first = reply.articles[0]
        return "news", {"articles": [{"title": first.get("title", ""), "description": first.get("description", ""),
                                      "url": first.get("url", ""), "picurl": first.get("image", "")}]}
    return None
