"""微信客服's system events that no rule answers, as the objects ``@kf.on_wecom_event`` hooks receive.

``sync_msg`` gives them as ``msgtype: event`` items (origin 4):

- ``msg_send_fail`` (:class:`SendFailed`): WeCom could not deliver a message the bot sent — ``fail_msgid``
  and ``fail_type`` (4 beyond 48 hours, 5 the session has ended, 6 over 5 messages, 10 the customer refused
  messages; any other number is named as it is);
- ``user_recall_msg`` and ``servicer_recall_msg`` (:class:`Recalled`): a message was recalled;
- ``servicer_status_change`` (:class:`ServicerStatusChanged`): a servicer started or stopped receiving
  (it names no customer).

``enter_session`` goes to the rules and ``session_status_change`` moves the hand-off lifecycle (its hooks are
``@kf.on_handoff``'s), so neither is here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Union

__all__ = ["WECOM_HOOK_EVENTS", "FAIL_REASONS", "SendFailed", "Recalled", "ServicerStatusChanged", "WeComEvent",
           "wecom_event"]

#: The events ``@kf.on_wecom_event`` hooks may hear.
WECOM_HOOK_EVENTS = ("msg_send_fail", "user_recall_msg", "servicer_recall_msg", "servicer_status_change")
#: ``msg_send_fail``'s ``fail_type`` → why the message was not delivered.
FAIL_REASONS: Dict[int, str] = {
    4: "beyond 48 hours of the customer's last message",
    5: "the session has ended",
    6: "over 5 messages since the customer's last message",
    10: "the customer refused messages",
}


@dataclass(frozen=True)
class _Event:
    """What every event has: its name, the kf account, when WeCom recorded it, and the item as WeCom gave it."""

    event: str
    open_kfid: str
    at: float
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class SendFailed(_Event):
    """``msg_send_fail``: the message ``fail_msgid`` sent to ``external_userid`` was not delivered."""

    external_userid: str = ""
    fail_msgid: str = ""
    fail_type: Optional[int] = None

    @property
    def reason(self) -> str:
        """Why, in words (``"beyond 48 hours …"``); a ``fail_type`` with no known meaning is named by number."""
        known = FAIL_REASONS.get(self.fail_type) if self.fail_type is not None else None
        return known or f"unknown (fail_type {self.fail_type})"


@dataclass(frozen=True)
class Recalled(_Event):
    """``user_recall_msg`` (the customer) or ``servicer_recall_msg`` (``servicer_userid``) recalled ``recall_msgid``."""

    external_userid: str = ""
    recall_msgid: str = ""
    servicer_userid: Optional[str] = None


@dataclass(frozen=True)
class ServicerStatusChanged(_Event):
    """``servicer_status_change``: ``servicer_userid`` now receives customers (``status`` 1) or not (2;
    ``stop_type`` 0 stopped, 1 suspended)."""

    servicer_userid: str = ""
    status: Optional[int] = None
    stop_type: Optional[int] = None

    @property
    def receiving(self) -> bool:
        return self.status == 1


WeComEvent = Union[SendFailed, Recalled, ServicerStatusChanged]


def wecom_event(item: Mapping[str, Any]) -> Optional[WeComEvent]:
    """The event of one ``msg_list`` item, or ``None`` when it is none of :data:`WECOM_HOOK_EVENTS`."""
    body = item.get("event") if item.get("msgtype") == "event" else None
    if not isinstance(body, Mapping):
        return None
    kind = body.get("event_type")
    common: Dict[str, Any] = {"event": kind, "open_kfid": _text(body.get("open_kfid") or item.get("open_kfid")),
                              "at": float(_number(item.get("send_time")) or 0), "raw": item}
    customer = _text(body.get("external_userid") or item.get("external_userid"))
    if kind == "msg_send_fail":
        return SendFailed(**common, external_userid=customer, fail_msgid=_text(body.get("fail_msgid")),
                          fail_type=_number(body.get("fail_type")))
    if kind in ("user_recall_msg", "servicer_recall_msg"):
        return Recalled(**common, external_userid=customer, recall_msgid=_text(body.get("recall_msgid")),
                        servicer_userid=_text(body.get("servicer_userid")) or None)
    if kind == "servicer_status_change":
        return ServicerStatusChanged(**common, servicer_userid=_text(body.get("servicer_userid")),
                                     status=_number(body.get("status")), stop_type=_number(body.get("stop_type")))
    return None


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


def _number(value: Any) -> Optional[int]:
    """``value`` as a whole number; ``None`` when it is missing or not a number."""
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None
