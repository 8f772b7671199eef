"""Typed calls of the 微信客服 API (WeCom's ``/cgi-bin/kf/`` endpoints), answered with frozen dataclasses.

::

    kf = WeComKf(WeComClient(corpid, secret, token_store=store))
    page = kf.sync_msg(open_kfid, cursor, token)
    if kf.service_state(open_kfid, customer).state in (State.NEW, State.BOT):
        kf.send_text(open_kfid, customer, "您好")

Every call raises ``ValueError`` for a bad argument (nothing is sent), a
:class:`~kf_plugin.wecom.errors.WeComAPIError` (a subclass for the codes worth telling
apart: ``SendWindowError``, ``SessionStateError``, ...) or a
:class:`~kf_plugin.errors.WeChatNetworkError` (also for an answer lacking what it must hold).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import WeChatNetworkError
from .client import WeComClient

__all__ = ["WeComKf", "State", "KfAccount", "Servicer", "ServicerResult", "ServiceState", "Customer",
           "CustomerBatch", "Statistic", "SyncPage", "menu", "SEND_MSG_TYPES", "EVENT_MSG_TYPES", "MAX_MENU_ITEMS"]

#: Each message type ``send_msg`` takes and the fields its body must hold.
SEND_MSG_TYPES: Dict[str, Tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "video": ("media_id",),
    "file": ("media_id",),
    "link": ("title", "url", "thumb_media_id"),
    "miniprogram": ("appid", "thumb_media_id", "pagepath"),
    "msgmenu": ("list",),
    "location": ("latitude", "longitude"),
}
#: The types ``send_msg_on_event`` takes (welcome, pool and end-of-session messages).
EVENT_MSG_TYPES = ("text", "msgmenu")
MAX_MENU_ITEMS = 10
MAX_IDS = 100
_MSGID = re.compile(r"[0-9A-Za-z_-]{1,32}")
_SCENE = re.compile(r"[0-9A-Za-z_-]{0,32}")

MenuItem = Union[Tuple[str, str], Mapping[str, Any]]


class State(enum.IntEnum):
    """A customer's service state (``service_state``)."""

    NEW = 0      # not handled yet
    BOT = 1      # with the bot (智能助手)
    POOL = 2     # waiting in the pool (待接入池)
    HUMAN = 3    # with a servicer (人工接待)
    ENDED = 4    # ended; the customer's next message makes it NEW


@dataclass(frozen=True)
class KfAccount:
    open_kfid: str
    name: str
    avatar: str = ""
    manage_privilege: Optional[bool] = None


@dataclass(frozen=True)
class Servicer:
    """A servicer (``userid``) or a department of servicers; ``status`` 0 receiving, 1 stopped;
    ``stop_type`` 0 stopped, 1 suspended."""

    userid: Optional[str]
    status: Optional[int] = None
    stop_type: Optional[int] = None
    department_id: Optional[int] = None


@dataclass(frozen=True)
class ServicerResult:
    """WeCom's answer for one userid of ``servicer/add`` or ``servicer/del``."""

    userid: str
    errcode: int
    errmsg: str = ""

    @property
    def ok(self) -> bool:
        return self.errcode == 0


@dataclass(frozen=True)
class ServiceState:
    """Where a customer's session is (see :class:`State`) and who serves it."""

    state: int
    servicer_userid: Optional[str] = None


@dataclass(frozen=True)
class Customer:
    external_userid: str
    nickname: str = ""
    avatar: str = ""
    gender: int = 0
    unionid: Optional[str] = None
    enter_session_context: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class CustomerBatch:
    """``customer/batchget``: the customers found, and the ids WeCom called invalid."""

    customers: Tuple[Customer, ...]
    invalid: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Statistic:
    """One day of statistics: ``values`` as WeCom names them (``session_cnt``, ``customer_cnt``, ...)."""

    stat_time: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class SyncPage:
    """A page of ``sync_msg``: messages and events as WeCom gives them, oldest first. ``next_cursor``: where the
    next page starts (the cursor asked with, when WeCom gave none), so it can always be stored."""

    next_cursor: Optional[str]
    has_more: bool
    messages: Tuple[Dict[str, Any], ...]


class WeComKf:
    """The 微信客服 API of one corp, through ``client``."""

    def __init__(self, client: WeComClient):
        self.client = client

    # -- accounts -----------------------------------------------------------------

    def add_account(self, name: str, media_id: str) -> str:
        """Create a kf account named ``name`` with the avatar ``media_id`` (an uploaded image); its open_kfid."""
        _need(name=name, media_id=media_id)
        path = "/cgi-bin/kf/account/add"
        return _text(self.client.post(path, {"name": name, "media_id": media_id}), "open_kfid", path)

    def delete_account(self, open_kfid: str) -> None:
        _need(open_kfid=open_kfid)
        self.client.post("/cgi-bin/kf/account/del", {"open_kfid": open_kfid})

    def update_account(self, open_kfid: str, name: Optional[str] = None, media_id: Optional[str] = None) -> None:
        """Rename the account, change its avatar, or both."""
        _need(open_kfid=open_kfid)
        if not name and not media_id:
            raise ValueError("update_account needs a new name, a new media_id, or both")
        changes = {key: value for key, value in (("name", name), ("media_id", media_id)) if value}
        self.client.post("/cgi-bin/kf/account/update", {"open_kfid": open_kfid, **changes})

    def accounts(self, offset: int = 0, limit: int = 100) -> Tuple[KfAccount, ...]:
        """One page of the corp's kf accounts (``limit`` 1–100)."""
        if offset < 0 or not 1 <= limit <= 100:
            raise ValueError(f"accounts needs offset ≥ 0 and limit 1–100, not offset={offset}, limit={limit}")
        path = "/cgi-bin/kf/account/list"
        result = self.client.post(path, {"offset": offset, "limit": limit}, idempotent=True)
        return tuple(KfAccount(str(a.get("open_kfid", "")), str(a.get("name", "")), str(a.get("avatar", "")),
                               None if a.get("manage_privilege") is None else bool(a["manage_privilege"]))
                     for a in _list(result, "account_list", path))

    def contact_way(self, open_kfid: str, scene: str = "") -> str:
        """The account's link (for a QR code, a menu, a page); ``scene`` comes back in ``enter_session``.

        :raises ValueError: ``scene`` is longer than 32 characters or holds other than ``0-9A-Za-z_-``.
        """
        _need(open_kfid=open_kfid)
        if not _SCENE.fullmatch(scene):
            raise ValueError(f"a scene is at most 32 characters of 0-9 A-Z a-z _ -, not {scene!r}")
        path = "/cgi-bin/kf/add_contact_way"
        body = {"open_kfid": open_kfid, **({"scene": scene} if scene else {})}
        return _text(self.client.post(path, body, idempotent=True), "url", path)

    # -- servicers ----------------------------------------------------------------

    def add_servicers(self, open_kfid: str, userids: Sequence[str]) -> Tuple[ServicerResult, ...]:
        """Make ``userids`` servicers of the account; WeCom answers for each (see :attr:`ServicerResult.ok`)."""
        return self._servicers("/cgi-bin/kf/servicer/add", open_kfid, userids)

    def remove_servicers(self, open_kfid: str, userids: Sequence[str]) -> Tuple[ServicerResult, ...]:
        return self._servicers("/cgi-bin/kf/servicer/del", open_kfid, userids)

    def _servicers(self, path: str, open_kfid: str, userids: Sequence[str]) -> Tuple[ServicerResult, ...]:
        _need(open_kfid=open_kfid)
        ids = _ids(userids, "userids")
        result = self.client.post(path, {"open_kfid": open_kfid, "userid_list": ids})
        return tuple(ServicerResult(str(r.get("userid", "")), _opt_int(r.get("errcode")) or 0, str(r.get("errmsg", "")))
                     for r in _list(result, "result_list", path))

    def servicers(self, open_kfid: str) -> Tuple[Servicer, ...]:
        """The account's servicers and servicer departments."""
        _need(open_kfid=open_kfid)
        path = "/cgi-bin/kf/servicer/list"
        result = self.client.get(path, {"open_kfid": open_kfid})
        return tuple(Servicer(_opt_str(s.get("userid")), _opt_int(s.get("status")), _opt_int(s.get("stop_type")),
                              _opt_int(s.get("department_id")))
                     for s in _list(result, "servicer_list", path))

    # -- sessions -----------------------------------------------------------------

    def service_state(self, open_kfid: str, external_userid: str) -> ServiceState:
        """Where the customer's session is now (:class:`State`) and who serves it."""
        _need(open_kfid=open_kfid, external_userid=external_userid)
        path = "/cgi-bin/kf/service_state/get"
        result = self.client.post(path, {"open_kfid": open_kfid, "external_userid": external_userid},
                                  idempotent=True)
        state = _opt_int(result.get("service_state"))
        if state is None:
            raise WeChatNetworkError(f"the WeCom API answered without service_state on {path}")
        return ServiceState(state, _opt_str(result.get("servicer_userid")) or None)

    def trans(self, open_kfid: str, external_userid: str, state: int,
              servicer_userid: Optional[str] = None) -> Optional[str]:
        """Move the customer to ``state``; the ``msg_code`` for :meth:`send_on_event`, if WeCom gave one.

        WeCom allows 0→1/2/3, 1→2/3, 2→3, 3→3 (another servicer) and 3→4.

        :raises ValueError: ``state`` is not 1–4; state 3 without ``servicer_userid``, or another with one.
        :raises SessionStateError: 95016, WeCom does not allow this change.
        :raises ServicerUnavailableError: 95014 / 95019, the servicer cannot take the customer.
        """
        _need(open_kfid=open_kfid, external_userid=external_userid)
        if state not in (State.BOT, State.POOL, State.HUMAN, State.ENDED):
            raise ValueError(f"a customer can be moved to state 1 (bot), 2 (pool), 3 (servicer) or 4 (ended), "
                             f"not {state!r}")
        if (state == State.HUMAN) != bool(servicer_userid):
            raise ValueError("state 3 (servicer) needs a servicer_userid, and only state 3 takes one")
        body = {"open_kfid": open_kfid, "external_userid": external_userid, "service_state": int(state),
                **({"servicer_userid": servicer_userid} if servicer_userid else {})}
        return _opt_str(self.client.post("/cgi-bin/kf/service_state/trans", body).get("msg_code")) or None

    # -- messages -----------------------------------------------------------------

    def send(self, open_kfid: str, external_userid: str, msgtype: str, body: Mapping[str, Any],
             msgid: Optional[str] = None) -> str:
        """Send a message of any type (see :data:`SEND_MSG_TYPES`); its msgid (``msgid``, or WeCom's).

        Sending is allowed in states 0 and 1, up to 5 messages within 48 hours of the
        customer's last message; success means WeCom accepted it, not that it arrived.

        :raises ValueError: unknown type, missing fields, or a msgid not of 1–32 ``0-9A-Za-z_-``.
        :raises SendWindowError: 95001 / 95002, wait for the customer's next message.
        :raises SessionStateError: 95018, the customer is in the pool or with a servicer.
        """
        _need(open_kfid=open_kfid, external_userid=external_userid)
        message = _message(msgtype, body, msgid, SEND_MSG_TYPES)
        path = "/cgi-bin/kf/send_msg"
        result = self.client.post(path, {"touser": external_userid, "open_kfid": open_kfid, **message})
        return _text(result, "msgid", path)

    def send_text(self, open_kfid: str, external_userid: str, content: str, msgid: Optional[str] = None) -> str:
        return self.send(open_kfid, external_userid, "text", {"content": content}, msgid)

    def send_msgmenu(self, open_kfid: str, external_userid: str, head: str, items: Sequence[MenuItem],
                     tail: str = "", msgid: Optional[str] = None) -> str:
        """A menu: ``(id, text)`` click items (a click comes back as a text message whose ``menu_id`` is the id),
        or items as WeCom spells them (``{"type": "view", "view": {...}}``)."""
        return self.send(open_kfid, external_userid, "msgmenu", menu(head, items, tail), msgid)

    def send_on_event(self, code: str, msgtype: str, body: Mapping[str, Any], msgid: Optional[str] = None) -> str:
        """Answer an event with its ``code`` (welcome_code, msg_code): one text or menu message per code.
        :raises ValueError: no code, a type other than text or msgmenu, missing fields, or a bad msgid."""
        _need(code=code)
        message = _message(msgtype, body, msgid, {t: SEND_MSG_TYPES[t] for t in EVENT_MSG_TYPES})
        path = "/cgi-bin/kf/send_msg_on_event"
        return _text(self.client.post(path, {"code": code, **message}), "msgid", path)

    def sync_msg(self, open_kfid: str, cursor: Optional[str] = None, token: Optional[str] = None,
                 limit: int = 1000, voice_format: Optional[int] = None) -> SyncPage:
        """The next page of the account's messages and events after ``cursor`` (from the start of the last
        3 days without one). ``token``: the callback's (10 minutes); without it WeCom limits the rate hard.
        ``voice_format``: 0 amr, 1 silk.

        :raises ValueError: ``limit`` outside 1–1000.
        :raises SyncTokenError: 95007, the token expired: pull without it.
        """
        _need(open_kfid=open_kfid)
        if not 1 <= limit <= 1000:
            raise ValueError(f"sync_msg takes a limit of 1–1000 messages, not {limit}")
        options = (("cursor", cursor), ("token", token), ("voice_format", voice_format))
        body = {"open_kfid": open_kfid, "limit": limit, **{key: value for key, value in options if value is not None}}
        path = "/cgi-bin/kf/sync_msg"
        result = self.client.post(path, body, idempotent=True)
        return SyncPage(_opt_str(result.get("next_cursor")) or cursor, bool(result.get("has_more")),
                        tuple(dict(m) for m in _list(result, "msg_list", path)))

    # -- customers and statistics -------------------------------------------------

    def customers(self, external_userids: Sequence[str], with_context: bool = False) -> CustomerBatch:
        """Up to 100 customers' profiles; ``with_context`` adds how each last entered a session."""
        ids = _ids(external_userids, "external_userids")
        path = "/cgi-bin/kf/customer/batchget"
        result = self.client.post(path, {"external_userid_list": ids,
                                         "need_enter_session_context": int(with_context)}, idempotent=True)
        found = tuple(Customer(str(c.get("external_userid", "")), str(c.get("nickname", "")),
                               str(c.get("avatar", "")), _opt_int(c.get("gender")) or 0, _opt_str(c.get("unionid")),
                               c.get("enter_session_context"))
                      for c in _list(result, "customer_list", path))
        invalid = result.get("invalid_external_userid") or []
        return CustomerBatch(found, tuple(str(i) for i in invalid) if isinstance(invalid, list) else ())

    def corp_statistics(self, open_kfid: str, start_time: int, end_time: int) -> Tuple[Statistic, ...]:
        """The account's daily statistics from ``start_time`` to ``end_time`` (unix times of days' starts)."""
        return self._statistics("/cgi-bin/kf/get_corp_statistic", open_kfid, start_time, end_time, {})

    def servicer_statistics(self, open_kfid: str, start_time: int, end_time: int,
                            servicer_userid: Optional[str] = None) -> Tuple[Statistic, ...]:
        """Daily statistics of the account's servicers, or of one."""
        extra = {"servicer_userid": servicer_userid} if servicer_userid else {}
        return self._statistics("/cgi-bin/kf/get_servicer_statistic", open_kfid, start_time, end_time, extra)

    def _statistics(self, path: str, open_kfid: str, start_time: int, end_time: int,
                    extra: Dict[str, Any]) -> Tuple[Statistic, ...]:
        _need(open_kfid=open_kfid)
        if end_time < start_time:
            raise ValueError(f"end_time {end_time} is before start_time {start_time}")
        body = {"open_kfid": open_kfid, "start_time": int(start_time), "end_time": int(end_time), **extra}
        result = self.client.post(path, body, idempotent=True)
        return tuple(Statistic(_opt_int(s.get("stat_time")) or 0, dict(s.get("statistic") or {}))
                     for s in _list(result, "statistic_list", path))


def menu(head: str, items: Sequence[MenuItem], tail: str = "") -> Dict[str, Any]:
    """A ``msgmenu`` body: ``(id, text)`` pairs become click items, mappings are taken as WeCom spells them.

    :raises ValueError: no items, or more than :data:`MAX_MENU_ITEMS`.
    """
    if not 1 <= len(items) <= MAX_MENU_ITEMS:
        raise ValueError(f"a menu holds 1–{MAX_MENU_ITEMS} items, not {len(items)}")
    entries = [dict(item) if isinstance(item, Mapping) else _click(*item) for item in items]
    return {"head_content": head, "list": entries, "tail_content": tail}


def _click(menu_id: str, content: str) -> Dict[str, Any]:
    return {"type": "click", "click": {"id": menu_id, "content": content}}


def _message(msgtype: str, body: Mapping[str, Any], msgid: Optional[str],
             types: Mapping[str, Tuple[str, ...]]) -> Dict[str, Any]:
    """The message part of a send: ``msgtype``, its body and the msgid."""
    if msgtype not in types:
        raise ValueError(f"unknown message type {msgtype!r} (one of {', '.join(types)})")
    missing = [field for field in types[msgtype] if field not in body]
    if missing:
        raise ValueError(f"a {msgtype} message needs {', '.join(missing)}")
    if msgid is not None and not _MSGID.fullmatch(msgid):
        raise ValueError(f"a msgid is 1–32 characters of 0-9 A-Z a-z _ -, not {msgid!r}")
    return {"msgtype": msgtype, msgtype: dict(body), **({"msgid": msgid} if msgid is not None else {})}


def _need(**values: str) -> None:
    empty = [name for name, value in values.items() if not value]
    if empty:
        raise ValueError(f"{', '.join(empty)} must not be empty")


def _ids(values: Sequence[str], name: str) -> List[str]:
    if isinstance(values, str):
        raise ValueError(f"{name} is a list of ids, not the string {values!r}")
    ids = list(values)
    if not 1 <= len(ids) <= MAX_IDS or not all(ids):
        raise ValueError(f"{name} takes 1–{MAX_IDS} non-empty ids, not {len(ids)}")
    return ids


def _list(result: Mapping[str, Any], key: str, path: str) -> List[Dict[str, Any]]:
    items = result.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise WeChatNetworkError(f"the WeCom API answered {key} that is not a list of objects on {path}")
    return items


def _text(result: Mapping[str, Any], key: str, path: str) -> str:
    value = result.get(key)
    if not isinstance(value, str) or not value:
        raise WeChatNetworkError(f"the WeCom API answered without {key} on {path}")
    return value


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _opt_int(value: Any) -> Optional[int]:
    """``value`` as a number; ``None`` when it is missing or not a number."""
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None

