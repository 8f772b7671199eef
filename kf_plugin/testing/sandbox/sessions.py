"""Who serves whom: open kf sessions, the wait queue, and the events WeChat pushes when a session changes."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import ApiError

__all__ = ["SessionBoard", "Session", "SessionEvent", "MAX_LISTED_WAIT_CASES",
           "CREATE_SESSION", "CLOSE_SESSION", "SWITCH_SESSION"]

MAX_LISTED_WAIT_CASES = 100
CREATE_SESSION = "kf_create_session"
CLOSE_SESSION = "kf_close_session"
SWITCH_SESSION = "kf_switch_session"


@dataclass(frozen=True)
class Session:
    openid: str
    kf_account: str
    createtime: int


@dataclass(frozen=True)
class SessionEvent:
    """A session opened (``kf_create_session``), closed (``kf_close_session``) or moved (``kf_switch_session``).

    ``kf_account`` is set for create and close, ``from_kf_account`` / ``to_kf_account`` for switch.
    """

    event: str
    openid: str
    kf_account: Optional[str] = None
    from_kf_account: Optional[str] = None
    to_kf_account: Optional[str] = None

    @classmethod
    def created(cls, openid: str, kf_account: str) -> "SessionEvent":
        return cls(CREATE_SESSION, openid, kf_account=kf_account)

    @classmethod
    def closed(cls, openid: str, kf_account: str) -> "SessionEvent":
        return cls(CLOSE_SESSION, openid, kf_account=kf_account)

    @classmethod
    def switched(cls, openid: str, from_kf_account: str, to_kf_account: str) -> "SessionEvent":
        return cls(SWITCH_SESSION, openid, from_kf_account=from_kf_account, to_kf_account=to_kf_account)

    def fields(self) -> Dict[str, str]:
        """The event's own XML fields, named as WeChat names them in the push."""
        if self.event == SWITCH_SESSION:
            return {"FromKfAccount": self.from_kf_account or "", "ToKfAccount": self.to_kf_account or ""}
        return {"KfAccount": self.kf_account or ""}


class SessionBoard:
    """Open sessions by openid, and the users waiting for an agent in arrival order."""

    def __init__(self) -> None:
        self._sessions: Dict[str, Session] = {}
        self._waiting: "OrderedDict[str, int]" = OrderedDict()  # openid -> latest_time

    def serving(self, openid: str) -> Optional[Session]:
        return self._sessions.get(openid)

    def open(self, openid: str, kf_account: str, now: float) -> Session:
        """Open a session and take the user out of the wait queue.

        Opening the session that already exists is accepted and changes nothing.

        :raises ApiError: 65414 another agent serves the user.
        """
        current = self._sessions.get(openid)
        if current is not None:
            if current.kf_account != kf_account:
                raise ApiError(65414)
            return current
        self._waiting.pop(openid, None)
        session = self._sessions[openid] = Session(openid, kf_account, int(now))
        return session

    def close(self, openid: str, kf_account: str) -> None:
        """:raises ApiError: 65413 no session for the user, 65414 another agent serves them."""
        current = self._sessions.get(openid)
        if current is None:
            raise ApiError(65413)
        if current.kf_account != kf_account:
            raise ApiError(65414)
        del self._sessions[openid]

    def switch(self, openid: str, to_kf_account: str, now: float) -> Session:
        """Move the user's session to another agent; the session starts anew at ``now``; the one it left.

        :raises ApiError: 65413 no session for the user.
        :raises ValueError: ``to_kf_account`` serves the user already.
        """
        current = self._sessions.get(openid)
        if current is None:
            raise ApiError(65413)
        if current.kf_account == to_kf_account:
            raise ValueError(f"{openid!r} is served by {to_kf_account} already")
        self._sessions[openid] = Session(openid, to_kf_account, int(now))
        return current

    def lapse(self, openid: str) -> Session:
        """The user's session ends by itself (no close); the session that ended.

        :raises ApiError: 65413 no session for the user.
        """
        current = self._sessions.pop(openid, None)
        if current is None:
            raise ApiError(65413)
        return current

    def end(self, openid: str) -> None:
        """The user's session and waiting place end, whoever held them (the user unfollowed)."""
        self._sessions.pop(openid, None)
        self._waiting.pop(openid, None)

    def end_all_of(self, kf_account: str) -> None:
        for session in self.of_agent(kf_account):
            del self._sessions[session.openid]

    def of_agent(self, kf_account: str) -> List[Session]:
        return sorted((s for s in self._sessions.values() if s.kf_account == kf_account),
                      key=lambda s: s.createtime)

    def all(self) -> List[Session]:
        return list(self._sessions.values())

    def enqueue(self, openid: str, now: float) -> None:
        """The user waits for an agent; waiting again keeps the place and updates ``latest_time``.

        :raises ValueError: the user is in a session already.
        """
        if openid in self._sessions:
            raise ValueError(f"{openid!r} is served by {self._sessions[openid].kf_account}; close the session first")
        self._waiting[openid] = int(now)

    def waits(self, openid: str) -> bool:
        return openid in self._waiting

    def waiting(self) -> List[dict]:
        return [{"latest_time": latest, "openid": openid} for openid, latest in self._waiting.items()]

    def wait_cases(self) -> Tuple[int, List[dict]]:
        """The number of waiting users and the first 100 of them, oldest first."""
        return len(self._waiting), self.waiting()[:MAX_LISTED_WAIT_CASES]
