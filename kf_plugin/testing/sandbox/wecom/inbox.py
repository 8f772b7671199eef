"""What ``sync_msg`` reads: the customers' and servicers' messages and the events, in order, with cursors.

- Items are kept in the order they happened. A page holds the items after the cursor's
  position (for one ``open_kfid``, or for every account without one), at most ``limit``
  (1–1000, 1000 by default), and ``has_more`` says whether more follow. Without a cursor a
  read starts at the earliest item of the last 3 days; older items are never returned.
- Cursors are opaque strings the sandbox made (at most 64 bytes); the same position of
  the same scope is always the same string. One of another scope, or one never given
  out, answers 40058.
- Callback tokens are given with each ``kf_msg_or_event`` callback, live 10 minutes and
  belong to its ``open_kfid``; an unknown, expired or other account's token answers 95007.
- Without a token, reads are limited: at most :data:`UNTOKENED_READS_PER_MINUTE` in any 60 s
  for the corp, the next ones answer 45009 until the oldest of them is 60 s old.
- Messages sent through the API are never items (WeCom does not return them).
- Event items carry no ``open_kfid`` / ``external_userid`` at the top level, only inside
  ``event`` (as WeCom sends them); messages carry both.
"""
from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Tuple

from .directory import check_text
from .errors import INVALID_PARAMETER, INVALID_SYNC_TOKEN, WeComError

__all__ = ["Inbox", "Item", "HISTORY", "MAX_LIMIT", "TOKEN_LIFETIME", "UNTOKENED_READS_PER_MINUTE"]

HISTORY = 3 * 86400
MAX_LIMIT = 1000
TOKEN_LIFETIME = 600
UNTOKENED_READS_PER_MINUTE = 10
MAX_CURSOR_BYTES = 64
MAX_TOKEN_BYTES = 128
ALL_ACCOUNTS = "*"


@dataclass(frozen=True)
class Item:
    """One message or event: its place, its account and customer (for filtering), and the JSON sync_msg gives."""

    seq: int
    open_kfid: str
    external_userid: Optional[str]
    send_time: int
    body: Dict[str, Any]
    servicer: Optional[str] = None  # who served the customer when they wrote (statistics)

    @property
    def msgid(self) -> str:
        return str(self.body["msgid"])


@dataclass(frozen=True)
class _CallbackToken:
    open_kfid: str
    expires_at: float


class Inbox:
    """The items of every account, and the cursors and tokens that read them."""

    def __init__(self) -> None:
        self.items: List[Item] = []
        self._cursors: Dict[str, Tuple[str, int]] = {}
        self._cursor_of: Dict[Tuple[str, int], str] = {}
        self._tokens: Dict[str, _CallbackToken] = {}
        self._untokened: Deque[float] = collections.deque()

    def add_message(self, open_kfid: str, external_userid: str, origin: int, message: Dict[str, Any], now: float,
                    servicer: Optional[str] = None) -> Item:
        """A customer's (origin 3) or servicer's (origin 5) message: ``message`` is ``{msgtype, <type>: {...}}``."""
        body: Dict[str, Any] = {"msgid": _msgid(), "open_kfid": open_kfid, "external_userid": external_userid,
                                "send_time": int(now), "origin": origin}
        if origin == 5:
            body["servicer_userid"] = servicer
        body.update(message)
        return self._append(Item(len(self.items) + 1, open_kfid, external_userid, int(now), body, servicer))

    def add_event(self, open_kfid: str, external_userid: Optional[str], event: Dict[str, Any], now: float) -> Item:
        """A system event (origin 4): ``event`` holds ``event_type`` and the event's own fields."""
        body = {"msgid": _msgid(), "send_time": int(now), "origin": 4, "msgtype": "event", "event": event}
        return self._append(Item(len(self.items) + 1, open_kfid, external_userid, int(now), body))

    def _append(self, item: Item) -> Item:
        self.items.append(item)
        return item

    def find(self, msgid: str) -> Optional[Item]:
        return next((item for item in self.items if item.msgid == msgid), None)

    # -- callback tokens ----------------------------------------------------------------

    def issue_token(self, open_kfid: str, now: float) -> str:
        token = "ENC" + secrets.token_urlsafe(33)
        self._tokens[token] = _CallbackToken(open_kfid, now + TOKEN_LIFETIME)
        return token

    # -- reading ---------------------------------------------------------------------------

    def sync(self, body: Dict[str, Any], open_kfid: Optional[str], now: float) -> Dict[str, Any]:
        """The answer to a ``sync_msg`` body whose ``open_kfid`` (None: every account) has been checked.

        :raises WeComError: 40058 a bad limit or cursor, 95007 a bad token, 45009 too many reads without a token.
        """
        limit = body.get("limit", MAX_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
            raise WeComError(INVALID_PARAMETER, f"limit must be an integer in 1..{MAX_LIMIT}")
        scope = open_kfid or ALL_ACCOUNTS
        position = self._position(body.get("cursor"), scope)
        self._admit(body.get("token"), open_kfid, now)
        fresh = [item for item in self.items
                 if item.seq > position and now - item.send_time < HISTORY and scope in (ALL_ACCOUNTS, item.open_kfid)]
        page = fresh[:limit]
        next_position = page[-1].seq if page else position
        return {"next_cursor": self._cursor(scope, next_position), "has_more": int(len(fresh) > limit),
                "msg_list": [dict(item.body) for item in page]}

    def _position(self, cursor: object, scope: str) -> int:
        if cursor is None or cursor == "":
            return 0
        check_text(cursor, "cursor", MAX_CURSOR_BYTES)
        found = self._cursors.get(str(cursor))
        if found is None:
            raise WeComError(INVALID_PARAMETER, "cursor is unknown")
        if found[0] != scope:
            raise WeComError(INVALID_PARAMETER, "cursor was given for another open_kfid")
        return found[1]

    def _admit(self, token: object, open_kfid: Optional[str], now: float) -> None:
        if token is None or token == "":
            while self._untokened and now - self._untokened[0] >= 60:
                self._untokened.popleft()
            if len(self._untokened) >= UNTOKENED_READS_PER_MINUTE:
                raise WeComError(45009, f"without a token sync_msg takes {UNTOKENED_READS_PER_MINUTE} calls a minute")
            self._untokened.append(now)
            return
        check_text(token, "token", MAX_TOKEN_BYTES)
        found = self._tokens.get(str(token))
        if found is None:
            raise WeComError(INVALID_SYNC_TOKEN, "token is unknown")
        if now >= found.expires_at:
            raise WeComError(INVALID_SYNC_TOKEN, "token has expired (callback tokens live 10 minutes)")
        if open_kfid is not None and found.open_kfid != open_kfid:
            raise WeComError(INVALID_SYNC_TOKEN, "token was given for another open_kfid")

    def _cursor(self, scope: str, position: int) -> str:
        key = (scope, position)
        if key not in self._cursor_of:
            cursor = secrets.token_urlsafe(15)
            self._cursor_of[key], self._cursors[cursor] = cursor, key
        return self._cursor_of[key]


def _msgid() -> str:
    return secrets.token_urlsafe(24)
