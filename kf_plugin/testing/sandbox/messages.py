"""Checking a custom-message body (``/cgi-bin/message/custom/send``) the way WeChat does.

Which errcode a malformed body gets (the docs do not say; chosen to match what the
API is seen to answer):

- no ``touser`` → 40003; no or unknown ``msgtype`` → 40008;
- the type's object missing or not an object, or a required field missing → 47001
  with a hint naming the field (``data format error hint: [video.thumb_media_id missing]``),
  except: a missing ``*media_id`` → 40007, empty text ``content`` → 44004,
  an empty ``news.articles`` → 44003;
- text ``content`` over 2048 bytes (UTF-8) → 45002; more than one news article → 45008.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ApiError

__all__ = ["CustomMessage", "parse_custom_message", "MESSAGE_TYPES", "MAX_TEXT_BYTES"]

MAX_TEXT_BYTES = 2048
MAX_NEWS_ARTICLES = 1

#: Required fields of each type's object (optional ones are not listed).
MESSAGE_TYPES: Dict[str, Tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "video": ("media_id", "thumb_media_id"),
    "music": ("musicurl", "hqmusicurl", "thumb_media_id"),
    "news": ("articles",),
    "mpnews": ("media_id",),
    "mpnewsarticle": ("article_id",),
    "msgmenu": ("list",),
    "wxcard": ("card_id",),
    "miniprogrampage": ("title", "appid", "pagepath", "thumb_media_id"),
}


@dataclass(frozen=True)
class CustomMessage:
    touser: str
    msgtype: str
    content: Dict[str, Any]  # the type's object, e.g. {"content": "hi"} for text
    kf_account: Optional[str]

    def record_text(self) -> str:
        """The text kept in the message records: the words of a text, ``[type]`` otherwise."""
        return self.content["content"] if self.msgtype == "text" else f"[{self.msgtype}]"


def parse_custom_message(body: Mapping[str, Any]) -> CustomMessage:
    """The message in a send body.

    :raises ApiError: see the module docstring for which errcode each problem gets.
    """
    touser = body.get("touser")
    if not isinstance(touser, str) or not touser:
        raise ApiError(40003)
    msgtype = body.get("msgtype")
    if msgtype not in MESSAGE_TYPES:
        raise ApiError(40008)
    content = body.get(msgtype)
    if not isinstance(content, dict):
        raise ApiError(47001, f"{msgtype} missing")
    for name in MESSAGE_TYPES[msgtype]:
        _check_field(msgtype, name, content.get(name))
    _check_limits(msgtype, content)
    return CustomMessage(touser, msgtype, content, _kf_account(body))


def _check_field(msgtype: str, name: str, value: Any) -> None:
    if name.endswith("media_id") and not _text(value):
        raise ApiError(40007)
    if name == "content" and not _text(value):
        raise ApiError(44004)
    if name == "articles":
        if not isinstance(value, list) or not value:
            raise ApiError(44003)
        for index, article in enumerate(value):
            for required in ("title", "url"):
                if not isinstance(article, dict) or not _text(article.get(required)):
                    raise ApiError(47001, f"news.articles[{index}].{required} missing")
        return
    if name == "list":
        if not isinstance(value, list) or not value:
            raise ApiError(47001, "msgmenu.list missing")
        for index, option in enumerate(value):
            if not isinstance(option, dict) or not _text(option.get("content")) or not _menu_id(option.get("id")):
                raise ApiError(47001, f"msgmenu.list[{index}] needs id and content")
        return
    if not _text(value):
        raise ApiError(47001, f"{msgtype}.{name} missing")


def _check_limits(msgtype: str, content: Mapping[str, Any]) -> None:
    if msgtype == "text" and len(content["content"].encode("utf-8")) > MAX_TEXT_BYTES:
        raise ApiError(45002)
    if msgtype == "news" and len(content["articles"]) > MAX_NEWS_ARTICLES:
        raise ApiError(45008)


def _kf_account(body: Mapping[str, Any]) -> Optional[str]:
    customservice = body.get("customservice")
    if customservice is None:
        return None
    if not isinstance(customservice, dict) or not _text(customservice.get("kf_account")):
        raise ApiError(47001, "customservice.kf_account missing")
    return customservice["kf_account"]


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _menu_id(value: Any) -> bool:
    return _text(value) or (isinstance(value, int) and not isinstance(value, bool))
