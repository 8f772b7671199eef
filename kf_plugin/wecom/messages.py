"""微信客服 messages as the router and the rules read them.

``sync_msg`` gives each customer message as JSON; the rules, filters and handlers read Official Account pushes
(wechatpy messages, their fields in ``_data``). :func:`wecom_message` turns one into the other, so one rule
file serves both channels:

- ``FromUserName`` is the customer's ``external_userid``, ``ToUserName`` the ``open_kfid``, ``CreateTime`` the
  ``send_time``, ``MsgId`` the ``msgid``; :attr:`WeComMessage.channel` is ``"wecom"``.
- a text keeps its ``Content``; a click on a menu message (a text with ``menu_id``) keeps its text too, and
  carries ``bizmsgmenuid`` as the Official Account's menu-message clicks do;
- ``image``, ``voice``, ``video``, ``file``: their ``media_id`` as ``MediaId``; ``location``: ``Location_X``,
  ``Location_Y``, ``Label``; ``link``: ``Title``, ``Url``; any other type keeps its name as ``MsgType``;
- an event is ``MsgType`` ``event`` with its ``event_type`` as ``Event``: ``enter_session`` has its ``scene`` as
  ``EventKey`` (what ``event_key`` in a rule matches) and ``scene_param`` as ``SceneParam``;
  ``session_status_change`` carries ``ChangeType``, ``OldServicer``, ``NewServicer``; ``msg_send_fail``
  ``FailMsgId`` and ``FailType``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from wechatpy.messages import BaseMessage

from ..messages import WECOM_EVENTS

__all__ = ["WeComMessage", "wecom_message", "CUSTOMER", "SYSTEM", "SERVICER", "WECOM_EVENTS"]

#: ``origin`` of a message: written by the customer, a system event, written by a servicer (a human).
CUSTOMER, SYSTEM, SERVICER = 3, 4, 5
_MEDIA = ("image", "voice", "video", "file")


class WeComMessage(BaseMessage):
    """A 微信客服 message in the shape of an Official Account push (see the module)."""

    channel = "wecom"

    def __init__(self, message: Dict[str, Any], raw: Mapping[str, Any]):
        super().__init__(message)
        self.type = message.get("MsgType", "unknown")
        self.raw = raw

    @property
    def origin(self) -> Optional[int]:
        """Who wrote it: :data:`CUSTOMER`, :data:`SYSTEM` or :data:`SERVICER`."""
        origin = self.raw.get("origin")
        return origin if isinstance(origin, int) else None

    @property
    def content(self) -> Optional[str]:
        return self.field("Content")

    def field(self, name: str) -> Optional[str]:
        """One of the fields the module lists (``Event``, ``ChangeType``, ``WelcomeCode``…), or ``None``."""
        value = self._data.get(name)
        return value if isinstance(value, str) else None


def wecom_message(item: Mapping[str, Any]) -> WeComMessage:
    """The message of one ``msg_list`` item of ``sync_msg``; an item it cannot read becomes an ``unknown``
    message (routed like any other, never dropped).

    Event items may lack ``open_kfid`` at their top level: the event's own ``open_kfid`` is used then.
    """
    kind = item.get("msgtype")
    found = item.get(kind) if isinstance(kind, str) else None
    body: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    data: Dict[str, Any] = {
        "FromUserName": _text(item.get("external_userid") or body.get("external_userid")),
        "ToUserName": _text(item.get("open_kfid") or body.get("open_kfid")),
        "CreateTime": _text(item.get("send_time")),
        "MsgId": _text(item.get("msgid")),
        "MsgType": kind if isinstance(kind, str) and kind else "unknown",
    }
    if kind == "event":
        data.update(_event_fields(body))
    elif kind == "text":
        data["Content"] = _text(body.get("content"))
        if body.get("menu_id"):
            data["bizmsgmenuid"] = _text(body.get("menu_id"))
    elif kind in _MEDIA:
        data["MediaId"] = _text(body.get("media_id"))
    elif kind == "location":
        data.update(Location_X=_text(body.get("latitude")), Location_Y=_text(body.get("longitude")),
                    Label=_text(body.get("address") or body.get("name")))
    elif kind == "link":
        data.update(Title=_text(body.get("title")), Url=_text(body.get("url")))
    return WeComMessage({k: v for k, v in data.items() if v is not None}, item)


def _event_fields(event: Mapping[str, Any]) -> Dict[str, Any]:
    kind = _text(event.get("event_type")) or "unknown"
    fields: Dict[str, Any] = {"Event": kind}
    if kind == "enter_session":
        fields.update(EventKey=_text(event.get("scene")), SceneParam=_text(event.get("scene_param")),
                      WelcomeCode=_text(event.get("welcome_code")))
    elif kind == "session_status_change":
        fields.update(ChangeType=_text(event.get("change_type")), OldServicer=_text(event.get("old_servicer_userid")),
                      NewServicer=_text(event.get("new_servicer_userid")), MsgCode=_text(event.get("msg_code")))
    elif kind == "msg_send_fail":
        fields.update(FailMsgId=_text(event.get("fail_msgid")), FailType=_text(event.get("fail_type")))
    return fields


def _text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)
