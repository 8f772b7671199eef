"""Access tokens: the classic pool (``/cgi-bin/token``) and the stable pool (``/cgi-bin/stable_token``).

Each token ends either because its 7200 s run out (→ 42001 expired) or because a
newer token replaced it, or :meth:`TokenIssuer.invalidate_all` ran (→ 40001
"not latest"); whichever comes first decides the errcode.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .errors import ApiError

__all__ = ["TokenIssuer", "IssuedToken", "beijing_day", "TOKEN_LIFETIME", "OVERLAP"]

TOKEN_LIFETIME = 7200
#: How long a replaced token keeps working (classic), and how early the stable token renews.
OVERLAP = 300
FORCE_REFRESH_PER_DAY = 20
FORCE_REFRESH_SPACING = 30


def beijing_day(timestamp: float) -> int:
    """The day number a timestamp falls on in UTC+8: WeChat's daily limits reset at Beijing midnight."""
    return int((timestamp + 8 * 3600) // 86400)


@dataclass
class IssuedToken:
    value: str
    pool: str  # "classic" or "stable"
    issued_at: float
    expires_at: float
    revoked_at: float = math.inf

    def cut_off(self, at: float) -> None:
        self.revoked_at = min(self.revoked_at, at)

    def usable(self, now: float) -> bool:
        return now < self.expires_at and now < self.revoked_at


class _DailyCounter:
    """Counts events per Beijing day; only today's count matters."""

    def __init__(self) -> None:
        self.day: Optional[int] = None
        self.count = 0

    def today(self, now: float) -> int:
        return self.count if self.day == beijing_day(now) else 0

    def add(self, now: float) -> None:
        self.count = self.today(now) + 1
        self.day = beijing_day(now)


class TokenIssuer:
    """Issues and checks the access tokens of one appid."""

    def __init__(self, appid: str, secret: str, clock: Callable[[], float], daily_limit: int = 2000):
        self.appid = appid
        self.secret = secret
        self.clock = clock
        self.daily_limit = daily_limit
        self._tokens: Dict[str, IssuedToken] = {}
        self._classic: List[IssuedToken] = []  # newest last; only the last two can still be usable
        self._stable: Optional[IssuedToken] = None
        self._classic_fetches = _DailyCounter()
        self._force_refreshes = _DailyCounter()
        self._last_force_refresh = -math.inf

    def check_credentials(self, grant_type: object, appid: object, secret: object) -> None:
        """:raises ApiError: 40002 wrong grant_type, 41002/40013 missing/unknown appid, 41004/40125 secret."""
        if grant_type != "client_credential":
            raise ApiError(40002)
        if not appid:
            raise ApiError(41002)
        if appid != self.appid:
            raise ApiError(40013)
        if not secret:
            raise ApiError(41004)
        if secret != self.secret:
            raise ApiError(40125)

    def fetch_classic(self) -> Tuple[str, int]:
        """A new classic token and its lifetime; the previous one keeps working for 5 minutes.

        Tokens older than the previous one stop at once: only the two newest classic
        tokens are ever usable, as with WeChat.

        :raises ApiError: 45009 after ``daily_limit`` fetches on this Beijing day.
        """
        now = self.clock()
        if self._classic_fetches.today(now) >= self.daily_limit:
            raise ApiError(45009)
        self._classic_fetches.add(now)
        for older in self._classic[:-1]:
            older.cut_off(now)
        if self._classic:
            self._classic[-1].cut_off(now + OVERLAP)
        token = self._issue("classic", now)
        self._classic = self._classic[-1:] + [token]
        return token.value, TOKEN_LIFETIME

    def fetch_stable(self, force_refresh: bool) -> Tuple[str, int]:
        """The stable token and its remaining lifetime.

        Normal mode answers the same token while more than 5 minutes remain, then a
        new one (the old keeps working until it expires). ``force_refresh`` ends
        every stable token at once and issues a new one.

        :raises ApiError: 45009 on the 21st force refresh of a Beijing day, or one
            less than 30 s after the previous.
        """
        now = self.clock()
        if force_refresh:
            if (self._force_refreshes.today(now) >= FORCE_REFRESH_PER_DAY
                    or now - self._last_force_refresh < FORCE_REFRESH_SPACING):
                raise ApiError(45009)
            self._force_refreshes.add(now)
            self._last_force_refresh = now
            for token in self._tokens.values():
                if token.pool == "stable":
                    token.cut_off(now)
        elif self._stable is not None and self._stable.usable(now):
            remaining = self._stable.expires_at - now
            if remaining > OVERLAP:
                return self._stable.value, int(remaining)
        self._stable = self._issue("stable", now)
        return self._stable.value, TOKEN_LIFETIME

    def verify(self, value: Optional[str]) -> None:
        """:raises ApiError: 41001 no token, 40001 unknown or replaced, 42001 expired."""
        if not value:
            raise ApiError(41001)
        token = self._tokens.get(value)
        if token is None:
            raise ApiError(40001)
        now = self.clock()
        if now >= token.revoked_at and token.revoked_at <= token.expires_at:
            raise ApiError(40001)
        if now >= token.expires_at:
            raise ApiError(42001)

    def invalidate_all(self) -> None:
        """Every token issued so far stops working now (40001), as after a secret reset."""
        now = self.clock()
        for token in self._tokens.values():
            token.cut_off(now)

    def _issue(self, pool: str, now: float) -> IssuedToken:
        # 128 URL-safe characters: real tokens are long (the docs say keep 512 chars of
        # storage), and a client that truncates them should fail here, not in production.
        token = IssuedToken(secrets.token_urlsafe(96), pool, now, now + TOKEN_LIFETIME)
        self._tokens[token.value] = token
        return token
