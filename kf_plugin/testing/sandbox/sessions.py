"""Who serves whom: open kf sessions and the wait queue."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .errors import ApiError

__all__ = ["SessionBoard", "Session", "MAX_LISTED_WAIT_CASES"]

MAX_LISTED_WAIT_CASES = 100


@dataclass(frozen=True)
class Session:
    openid: str
    kf_account: str
    createtime: int


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

    def waiting(self) -> List[dict]:
        return [{"latest_time": latest, "openid": openid} for openid, latest in self._waiting.items()]

    def wait_cases(self) -> Tuple[int, List[dict]]:
        """The number of waiting users and the first 100 of them, oldest first."""
        return len(self._waiting), self.waiting()[:MAX_LISTED_WAIT_CASES]
