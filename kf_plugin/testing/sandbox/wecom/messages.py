"""Checking the message in a ``send_msg`` / ``send_msg_on_event`` body the way WeCom does.

Which errcode a malformed message gets: no or unknown ``msgtype`` → 40008; the type's
object missing, or a required field missing or not a string → 40058 naming the field,
except a missing ``media_id`` → 41006; empty text ``content`` → 44004 and over 2048
bytes → 45002; a ``msgid`` over 32 bytes or outside [0-9a-zA-Z_-] → 40058.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .directory import check_text
from .errors import INVALID_PARAMETER, WeComError

__all__ = ["Outgoing", "parse_outgoing", "SEND_TYPES", "MAX_TEXT_BYTES", "MENU_OPTION_TYPES"]

MAX_TEXT_BYTES = 2048
MAX_MSGID_BYTES = 32
_MSGID = re.compile(r"[0-9a-zA-Z_-]*")

#: The types ``send_msg`` sends and the fields each requires (optional ones are not listed).
SEND_TYPES: Dict[str, Tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "video": ("media_id",),
    "file": ("media_id",),
    "link": ("title", "url", "thumb_media_id"),
    "miniprogram": ("appid", "thumb_media_id", "pagepath"),
    "msgmenu": ("list",),
    "location": ("latitude", "longitude"),
    "ca_link": ("link_url",),
}

#: The option types of a menu and the fields each requires.
MENU_OPTION_TYPES: Dict[str, Tuple[str, ...]] = {
    "click": ("content",),
    "view": ("url", "content"),
    "miniprogram": ("appid", "pagepath", "content"),
    "text": ("content",),
}


@dataclass(frozen=True)
class Outgoing:
    msgtype: str
    content: Dict[str, Any]  # the type's object, e.g. {"content": "hi"} for text
    msgid: Optional[str]  # the caller's, or None for one the sandbox makes

    def menu_ids(self) -> List[str]:
        """The ids of a menu's click options (what the customer's click sends back as ``menu_id``)."""
        if self.msgtype != "msgmenu":
            return []
        return [str(option["click"]["id"]) for option in self.content["list"]
                if option.get("type") == "click" and option["click"].get("id") not in (None, "")]


def parse_outgoing(body: Mapping[str, Any], allowed: Tuple[str, ...] = tuple(SEND_TYPES)) -> Outgoing:
    """The message in a send body, of one of the ``allowed`` types.

    :raises WeComError: see the module docstring for which errcode each problem gets.
    """
    msgtype = body.get("msgtype")
    if msgtype not in SEND_TYPES or msgtype not in allowed:
        raise WeComError(40008, f"msgtype must be one of {', '.join(allowed)}")
    content = body.get(msgtype)
    if not isinstance(content, dict):
        raise WeComError(INVALID_PARAMETER, f"{msgtype} missing")
    for name in SEND_TYPES[msgtype]:
        _check_field(msgtype, name, content.get(name))
    if msgtype == "text" and len(content["content"].encode("utf-8")) > MAX_TEXT_BYTES:
        raise WeComError(45002, f"text.content is over {MAX_TEXT_BYTES} bytes")
    msgid = body.get("msgid")
    if msgid is not None:
        msgid = check_text(msgid, "msgid", MAX_MSGID_BYTES, _MSGID) or None
    return Outgoing(msgtype, content, msgid)


def _check_field(msgtype: str, name: str, value: Any) -> None:
    if name == "media_id" and (value is None or value == ""):
        raise WeComError(41006)
    if msgtype == "text" and not (isinstance(value, str) and value):
        raise WeComError(44004)
    if name == "list":
        _check_menu(value)
    elif name in ("latitude", "longitude"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WeComError(INVALID_PARAMETER, f"{msgtype}.{name} must be a number")
    elif not (isinstance(value, str) and value):
        raise WeComError(INVALID_PARAMETER, f"{msgtype}.{name} missing")


def _check_menu(options: Any) -> None:
    if not isinstance(options, list) or not options:
        raise WeComError(INVALID_PARAMETER, "msgmenu.list must hold at least one option")
    for index, option in enumerate(options):
        kind = option.get("type") if isinstance(option, dict) else None
        if kind not in MENU_OPTION_TYPES:
            raise WeComError(INVALID_PARAMETER, f"msgmenu.list[{index}].type must be one of "
                                                f"{', '.join(MENU_OPTION_TYPES)}")
        detail = option.get(kind)
        for name in MENU_OPTION_TYPES[kind]:
            if not isinstance(detail, dict) or not (isinstance(detail.get(name), str) and detail[name]):
                raise WeComError(INVALID_PARAMETER, f"msgmenu.list[{index}].{kind}.{name} missing")
