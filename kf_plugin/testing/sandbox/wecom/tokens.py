"""The corp's access token (``/cgi-bin/gettoken?corpid=&corpsecret=``), as WeCom issues and checks it.

Unlike the Official Account's classic token, asking again while the token is valid
answers the same token (and the seconds it has left); a new one is issued once it has
expired or after :meth:`CorpTokens.invalidate_all` (a secret reset), which ends every
token issued so far at once (40014). Every ``gettoken`` call counts in the daily
limit, which resets at Beijing midnight as the Official Account's does.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from ..tokens import beijing_day
from .errors import WeComError

__all__ = ["CorpTokens", "TOKEN_LIFETIME"]

TOKEN_LIFETIME = 7200


@dataclass
class _Token:
    value: str
    expires_at: float
    revoked: bool = False


class CorpTokens:
    """Issues and checks the access tokens of one corp (one secret: the self-built app's)."""

    def __init__(self, corpid: str, secret: str, clock: Callable[[], float], daily_limit: int = 2000):
        self.corpid = corpid
        self.secret = secret
        self.clock = clock
        self.daily_limit = daily_limit
        self._tokens: Dict[str, _Token] = {}
        self._current: Optional[_Token] = None
        self._day: Optional[int] = None
        self._fetches_today = 0

    def check_credentials(self, corpid: object, secret: object) -> None:
        """:raises WeComError: 41002/40013 missing/unknown corpid, 41004/40001 missing/wrong secret."""
        if not corpid:
            raise WeComError(41002)
        if corpid != self.corpid:
            raise WeComError(40013)
        if not secret:
            raise WeComError(41004)
        if secret != self.secret:
            raise WeComError(40001)

    def fetch(self) -> Tuple[str, int]:
        """The valid token and the whole seconds it has left; a new one (7200 s) when none is valid.

        :raises WeComError: 45009 after ``daily_limit`` calls on this Beijing day.
        """
        now = self.clock()
        if self._day != beijing_day(now):
            self._day, self._fetches_today = beijing_day(now), 0
        if self._fetches_today >= self.daily_limit:
            raise WeComError(45009, f"gettoken is limited to {self.daily_limit} calls a day")
        self._fetches_today += 1
        current = self._current
        if current is None or current.revoked or now >= current.expires_at:
            # 128 URL-safe characters: real tokens are long, and a client that truncates them should fail here.
            current = self._current = _Token(secrets.token_urlsafe(96), now + TOKEN_LIFETIME)
            self._tokens[current.value] = current
        return current.value, int(current.expires_at - now)

    def verify(self, value: Optional[str]) -> None:
        """:raises WeComError: 41001 no token, 40014 unknown or invalidated, 42001 expired."""
        if not value:
            raise WeComError(41001)
        token = self._tokens.get(value)
        if token is None or token.revoked:
            raise WeComError(40014)
        if self.clock() >= token.expires_at:
            raise WeComError(42001)

    def invalidate_all(self) -> None:
        """Every token issued so far answers 40014 from now on; the next ``gettoken`` issues a new one."""
        for token in self._tokens.values():
            token.revoked = True
