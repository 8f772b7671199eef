"""One typed facade over the customer-service HTTP API (WeChat's customer-service API docs).

::

    admin = KfAdmin(KfClient(appid, secret, api_base_url=...), window=tracker)
    for agent in admin.online_agents(): ...
    admin.send_text(openid, "您好，我是客服小王", as_account="wang@gh_example")

Every method raises :class:`~kf_plugin.errors.WeChatAPIError` (a subclass for
the codes worth telling apart) or :class:`~kf_plugin.errors.WeChatNetworkError`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .client import KfClient
from .errors import OutsideWindowError, QuotaExceededError, WeChatNetworkError
from .window import WindowTracker

__all__ = ["KfAdmin", "Agent", "OnlineAgent", "Session", "WaitingUser", "WaitQueue", "Record", "MSG_TYPES"]

DAY = 86400
#: Each custom message type and the fields its body needs (WeChat's custom-message API docs).
MSG_TYPES: Dict[str, Tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "video": ("media_id", "thumb_media_id", "title", "description"),
    "music": ("title", "description", "musicurl", "hqmusicurl", "thumb_media_id"),
    "news": ("articles",),
    "mpnews": ("media_id",),
    "mpnewsarticle": ("article_id",),
    "msgmenu": ("head_content", "list", "tail_content"),
    "wxcard": ("card_id",),
    "miniprogrampage": ("title", "appid", "pagepath", "thumb_media_id"),
}


@dataclass(frozen=True)
class Agent:
    """A customer-service account (``getkflist``)."""

    kf_account: str
    nickname: str
    kf_id: Optional[str] = None
    headimgurl: Optional[str] = None
    wx: Optional[str] = None
    invite_wx: Optional[str] = None
    invite_expire_time: Optional[int] = None
    invite_status: Optional[str] = None


@dataclass(frozen=True)
class OnlineAgent:
    """An online customer-service worker (``getonlinekflist``); ``status`` 1 = online."""

    kf_account: str
    status: int
    kf_id: Optional[str]
    accepted_case: int


@dataclass(frozen=True)
class Session:
    openid: str
    kf_account: str
    created: int


@dataclass(frozen=True)
class WaitingUser:
    openid: str
    latest_time: int


@dataclass(frozen=True)
class WaitQueue:
    """``count`` users wait; WeChat lists at most 100 of them in ``users``."""

    count: int
    users: Tuple[WaitingUser, ...]


@dataclass(frozen=True)
class Record:
    """One chat-record line; ``opercode`` 2002 = sent by a worker, 2003 = received from the user."""

    openid: str
    opercode: int
    text: str
    time: int
    worker: str

    def as_dict(self) -> Dict[str, Any]:
        return {"openid": self.openid, "opercode": self.opercode, "text": self.text, "time": self.time,
                "worker": self.worker}


class KfAdmin:
    """Customer-service accounts, sessions, records and custom messages for one official account.

    ``window`` (a :class:`WindowTracker`) makes sends consult and update the
    48-hour window; ``strict`` (default) refuses before the HTTP call a send
    the tracker knows WeChat would refuse.
    """

    def __init__(self, client: KfClient, window: Optional[WindowTracker] = None, strict: bool = True):
        self.client = client
        self.window = window
        self.strict = strict

    def _call(self, method: str, path: str, **kwargs: Any) -> Dict[str, Any]:
        result = self.client.get(path, **kwargs) if method == "GET" else self.client.post(path, **kwargs)
        if not isinstance(result, dict):
            raise WeChatNetworkError(f"the WeChat API answered something other than JSON on {path}")
        return result

    # -- accounts -----------------------------------------------------------

    def add_account(self, kf_account: str, nickname: str) -> None:
        """Create ``kf_account`` (``prefix@gh_id``). :raises KfAccountError: 65403–65406."""
        self._call("POST", "/customservice/kfaccount/add", data={"kf_account": kf_account, "nickname": nickname})

    def update_account(self, kf_account: str, nickname: str) -> None:
        self._call("POST", "/customservice/kfaccount/update", data={"kf_account": kf_account, "nickname": nickname})

    def delete_account(self, kf_account: str) -> None:
        self._call("POST", "/customservice/kfaccount/del", data={"kf_account": kf_account})

    def upload_avatar(self, kf_account: str, image: Union[str, "os.PathLike[str]", bytes]) -> None:
        """Set the account's head image: a JPEG file path or its bytes (≤ 5 MB)."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        self._call("POST", "/customservice/kfaccount/uploadheadimg", params={"kf_account": kf_account},
                   files={"media": ("avatar.jpg", data, "image/jpeg")})

    def invite_worker(self, kf_account: str, invite_wx: str) -> None:
        """Invite the WeChat user ``invite_wx`` to work as ``kf_account``. :raises KfAccountError: 65407–65412."""
        self._call("POST", "/customservice/kfaccount/inviteworker",
                   data={"kf_account": kf_account, "invite_wx": invite_wx})

    def agents(self) -> List[Agent]:
        """Every customer-service account, with its binding and invitation."""
        result = self._call("GET", "/cgi-bin/customservice/getkflist")
        return [Agent(a["kf_account"], a.get("kf_nick", ""), _opt_str(a.get("kf_id")), a.get("kf_headimgurl"),
                      a.get("kf_wx"), a.get("invite_wx"), a.get("invite_expire_time"), a.get("invite_status"))
                for a in result.get("kf_list", [])]

    def online_agents(self) -> List[OnlineAgent]:
        """The workers online now (status 1)."""
        result = self._call("GET", "/cgi-bin/customservice/getonlinekflist")
        return [OnlineAgent(a["kf_account"], int(a.get("status", 0)), _opt_str(a.get("kf_id")),
                            int(a.get("accepted_case", 0)))
                for a in result.get("kf_online_list", [])]

    # -- sessions -----------------------------------------------------------

    def open_session(self, openid: str, kf_account: str, text: Optional[str] = None) -> None:
        """Hand ``openid`` to ``kf_account`` now; ``text`` is shown to the agent (why the user is coming).

        :raises AgentOfflineError: 65415. :raises SessionError: 65414.
        """
        data = {"kf_account": kf_account, "openid": openid, **({"text": text} if text else {})}
        self._call("POST", "/customservice/kfsession/create", data=data)

    def close_session(self, openid: str, kf_account: str) -> None:
        """:raises SessionError: 65413 no session, 65414 another worker's session."""
        self._call("POST", "/customservice/kfsession/close", data={"kf_account": kf_account, "openid": openid})

    def session(self, openid: str) -> Optional[Session]:
        """The user's open session, or ``None``."""
        result = self._call("GET", "/customservice/kfsession/getsession", params={"openid": openid})
        account = result.get("kf_account") or ""
        return Session(openid, account, int(result.get("createtime") or 0)) if account else None

    def sessions(self, kf_account: str) -> List[Session]:
        result = self._call("GET", "/customservice/kfsession/getsessionlist", params={"kf_account": kf_account})
        return [Session(s["openid"], kf_account, int(s.get("createtime", 0))) for s in result.get("sessionlist", [])]

    def waiting(self) -> WaitQueue:
        result = self._call("GET", "/customservice/kfsession/getwaitcase")
        users = tuple(WaitingUser(w["openid"], int(w.get("latest_time", 0))) for w in result.get("waitcaselist", []))
        return WaitQueue(int(result.get("count", len(users))), users)

    # -- chat records ---------------------------------------------------------

    def records(self, since: int, until: int, page_size: int = 10000) -> Iterator[Record]:
        """Every chat record from ``since`` to ``until`` (unix times, inclusive), oldest first.

        Splits the period into windows of at most 24 h and pages through each by msgid.

        :raises ValueError: ``until`` before ``since`` or a page size outside 1–10000.
        """
        if until < since:
            raise ValueError("until must not be before since")
        if not 1 <= page_size <= 10000:
            raise ValueError("page_size must be between 1 and 10000")
        for start, end in _day_windows(int(since), int(until)):
            msgid = 1
            while True:
                page = self._call("POST", "/customservice/msgrecord/getmsglist",
                                  data={"starttime": start, "endtime": end, "msgid": msgid, "number": page_size})
                lines = page.get("recordlist", [])
                for line in lines:
                    yield Record(line.get("openid", ""), int(line.get("opercode", 0)), line.get("text", ""),
                                 int(line.get("time", 0)), line.get("worker", ""))
                if int(page.get("number", len(lines))) < page_size or not lines:
                    break
                msgid = int(page["msgid"])

    # -- custom messages ------------------------------------------------------

    def send(self, openid: str, msgtype: str, body: Dict[str, Any], *, as_account: Optional[str] = None,
             strict: Optional[bool] = None) -> None:
        """Send a customer-service message of any type (see :data:`MSG_TYPES`).

        ``as_account`` sends it as that kf account. ``strict`` overrides the
        facade's setting for this call.

        :raises ValueError: unknown type or missing fields (nothing is sent).
        :raises OutsideWindowError: 45015, from WeChat or predicted by the window tracker.
        :raises QuotaExceededError: 45047, likewise.
        """
        if msgtype not in MSG_TYPES:
            raise ValueError(f"unknown message type {msgtype!r} (one of {', '.join(MSG_TYPES)})")
        missing = [f for f in MSG_TYPES[msgtype] if f not in body]
        if missing:
            raise ValueError(f"a {msgtype} message needs {', '.join(missing)}")
        if self.window is not None and (self.strict if strict is None else strict):
            self.window.check(openid)
        payload: Dict[str, Any] = {"touser": openid, "msgtype": msgtype, msgtype: body}
        if as_account:
            payload["customservice"] = {"kf_account": as_account}
        try:
            self._call("POST", "/cgi-bin/message/custom/send", data=payload)
        except (OutsideWindowError, QuotaExceededError) as exc:
            if self.window is not None:
                self.window.refused(openid, exc.errcode)
            raise
        if self.window is not None:
            self.window.sent(openid)

    def send_text(self, openid: str, content: str, **options: Any) -> None:
        self.send(openid, "text", {"content": content}, **options)

    def send_image(self, openid: str, media_id: str, **options: Any) -> None:
        self.send(openid, "image", {"media_id": media_id}, **options)

    def send_voice(self, openid: str, media_id: str, **options: Any) -> None:
        self.send(openid, "voice", {"media_id": media_id}, **options)

    def send_video(self, openid: str, media_id: str, thumb_media_id: str, title: str = "", description: str = "",
                   **options: Any) -> None:
        self.send(openid, "video", {"media_id": media_id, "thumb_media_id": thumb_media_id, "title": title,
                                    "description": description}, **options)

    def send_music(self, openid: str, musicurl: str, hqmusicurl: str, thumb_media_id: str, title: str = "",
                   description: str = "", **options: Any) -> None:
        self.send(openid, "music", {"title": title, "description": description, "musicurl": musicurl,
                                    "hqmusicurl": hqmusicurl, "thumb_media_id": thumb_media_id}, **options)

    def send_news(self, openid: str, title: str, url: str, description: str = "", picurl: str = "",
                  **options: Any) -> None:
        """A link card (WeChat now takes one article per news message)."""
        self.send(openid, "news", {"articles": [{"title": title, "description": description, "url": url,
                                                 "picurl": picurl}]}, **options)

    def send_mpnews(self, openid: str, media_id: str, **options: Any) -> None:
        self.send(openid, "mpnews", {"media_id": media_id}, **options)

    def send_mpnewsarticle(self, openid: str, article_id: str, **options: Any) -> None:
        self.send(openid, "mpnewsarticle", {"article_id": article_id}, **options)

    def send_msgmenu(self, openid: str, head: str, options_: Sequence[Tuple[str, str]], tail: str = "",
                     **options: Any) -> None:
        """A menu of ``(id, text)`` choices; a click comes back as a text message with ``bizmsgmenuid``."""
        self.send(openid, "msgmenu", {"head_content": head, "list": [{"id": i, "content": c} for i, c in options_],
                                      "tail_content": tail}, **options)

    def send_wxcard(self, openid: str, card_id: str, **options: Any) -> None:
        self.send(openid, "wxcard", {"card_id": card_id}, **options)

    def send_miniprogrampage(self, openid: str, title: str, appid: str, pagepath: str, thumb_media_id: str,
                             **options: Any) -> None:
        self.send(openid, "miniprogrampage", {"title": title, "appid": appid, "pagepath": pagepath,
                                              "thumb_media_id": thumb_media_id}, **options)

    def typing(self, openid: str, typing: bool = True) -> None:
        """Show (or stop showing) "typing…" to the user for up to 15 s.

        :raises WeChatAPIError: 45080 no interaction in the last 30 s, 45081 already typing.
        """
        self._call("POST", "/cgi-bin/message/custom/typing",
                   data={"touser": openid, "command": "Typing" if typing else "CancelTyping"})


def _opt_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _day_windows(since: int, until: int) -> Iterator[Tuple[int, int]]:
    """``[start, end]`` windows of at most 24 h covering ``since``–``until``, without overlap."""
    start = since
    while start <= until:
        end = min(start + DAY - 1, until)
        yield start, end
        start = end + 1
