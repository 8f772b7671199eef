"""One access token for every worker of the bot, renewed ahead of time by one of them.

- :meth:`TokenService.current` reads the shared token; only when there is none
  (or it is about to die) does a worker renew it on the spot (the passive path).
  From a shared store, the token read is used again for a few seconds
  (:data:`REUSE_FOR`) without reading the store, while it has more than a minute left.
- :meth:`TokenService.tick`, run by a background job in every process, renews
  ahead of expiry — but only in the process holding the leader lease, so a
  cluster fetches once per token lifetime. If the leader dies, its lease lapses
  and another process's tick takes over well before the token expires.
- :meth:`TokenService.recover` handles an API answer of 40001/40014/42001: the
  token is dropped only if it is still the one that failed (compare-and-swap),
  and one renewal serves every worker that saw the failure (single flight
  through the ``renew`` lease). Its successor replaces the token kept for reuse,
  as every renewal's result does.

A failed renewal never drops a token that still works: the job logs a warning
with the time left and tries again on its next run.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from .errors import KfError, RateLimitedError, is_transient
from .metrics import NO_METRICS, OFFICIAL_ACCOUNT, Metrics
from .state import MemoryTokenStore, Token, TokenStore

__all__ = ["TokenService", "TokenInfo", "STABLE_RENEWAL_WINDOW", "FORCE_REFRESH_DAILY_LIMIT"]

log = logging.getLogger(__name__)

#: WeChat hands out a new stable token only in the last 5 minutes of the old one's
#: life; renewing 30 s into that window leaves room for clock skew.
STABLE_RENEWAL_WINDOW = 270.0
FORCE_REFRESH_DAILY_LIMIT = 20
_MIN_LEFT = 60.0  # a token with less left than this is treated as gone
#: Seconds :meth:`TokenService.current` uses the token it last read or renewed again without reading a
#: shared store (with Redis, a round trip per API call otherwise). A token renewed by another worker meanwhile
#: is seen that much later; the old one keeps working past its successor's fetch, and a call it fails on is
#: recovered as any (:meth:`TokenService.recover`).
REUSE_FOR = 5.0


def _log_retry(state: RetryCallState) -> None:
    # tenacity sets the outcome before it sleeps; the check only keeps a logging hook from raising.
    failure = state.outcome.exception() if state.outcome is not None else "no outcome recorded"
    log.warning("fetching the access token failed (%s); retrying", failure)


@dataclass(frozen=True)
class TokenInfo:
    """What ``kf-plugin token show`` prints: never the token unless asked."""

    mode: str
    expires_at: Optional[float]
    leader: Optional[str]
    me: str
    token: Optional[str]


class TokenService:
    """Keeps one access token fresh for every process sharing ``store``.

    ``fetch(force)`` gets a new token and its lifetime in seconds from WeChat (see
    :meth:`kf_plugin.client.KfClient.request_token`). ``mode`` is ``stable`` or
    ``classic``; ``margin``: renew when less than this many seconds remain (in
    stable mode at most :data:`STABLE_RENEWAL_WINDOW`); ``interval``: how often
    :meth:`tick` runs, which sizes the leader lease; ``wait``: how long a worker
    waits for another one's renewal. ``channel``: whose token it is, in the metrics (:attr:`metrics`).
    ``reuse_for``: seconds (of ``clock``) :meth:`current` reuses the token it last read (0: never); by default
    :data:`REUSE_FOR`, or 0 for a :class:`~kf_plugin.state.MemoryTokenStore` (this process's own: reading it
    costs nothing).
    """

    def __init__(self, fetch: Callable[[bool], Tuple[str, int]], store: Optional[TokenStore] = None, *,
                 mode: str = "stable", margin: float = 600.0, interval: float = 60.0, wait: float = 10.0,
                 clock: Callable[[], float] = time.time, attempts: int = 3, channel: str = OFFICIAL_ACCOUNT,
                 reuse_for: Optional[float] = None):
        self.fetch = retry(retry=retry_if_exception(is_transient), stop=stop_after_attempt(attempts),
                           wait=wait_random_exponential(multiplier=0.2, max=2.0), reraise=True,
                           before_sleep=_log_retry)(fetch)
        self.store = store if store is not None else MemoryTokenStore(clock)
        self.mode = mode
        self.margin = min(margin, STABLE_RENEWAL_WINDOW) if mode == "stable" else margin
        self.interval = interval
        self.wait = wait
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.channel = channel
        if reuse_for is None:
            reuse_for = 0.0 if isinstance(self.store, MemoryTokenStore) else REUSE_FOR
        self.reuse_for = reuse_for
        self.metrics: Metrics = NO_METRICS
        self._last: Optional[Tuple[Token, float]] = None   # the token last read or renewed, and when (clock)

    # -- reading ------------------------------------------------------------------

    def current(self) -> str:
        """The token to call the API with, renewing it first if there is none.

        :raises WeChatAPIError, WeChatNetworkError: no token, and none could be fetched.
        """
        last = self._last
        if last is not None and 0 <= self.clock() - last[1] < self.reuse_for:
            reused = self._usable(last[0], None, _MIN_LEFT)
            if reused is not None:
                return reused.value
        token = self._usable(self.store.get(), None, _MIN_LEFT)
        if token is None:
            return self.renew(min_left=_MIN_LEFT).value
        self._last = (token, self.clock())
        return token.value

    def info(self, reveal: bool = False) -> TokenInfo:
        token = self.store.get()
        return TokenInfo(self.mode, token.expires_at if token else None, self.store.holder("leader"), self.owner,
                         token.value if token is not None and reveal else None)

    # -- renewing -----------------------------------------------------------------

    def renew(self, failed: Optional[str] = None, *, min_left: float = _MIN_LEFT, force: bool = False) -> Token:
        """A token that is not ``failed`` and has more than ``min_left`` seconds left, fetching one if needed.

        Only one worker anywhere fetches at a time; the others wait (up to
        ``wait`` seconds) for its result.

        :raises KfError: another worker's renewal took too long.
        """
        token = self._renew(failed, min_left, force)
        self._last = (token, self.clock())
        return token

    def _renew(self, failed: Optional[str], min_left: float, force: bool) -> Token:
        deadline = time.monotonic() + self.wait
        # One holder per renewal: threads of a process exclude each other too.
        me = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        while True:
            token = self.store.get()
            usable = None if force else self._usable(token, failed, min_left)
            if usable is not None:
                return usable
            # The lease outlives a fetch with its retries, so nobody else fetches meanwhile.
            if self.store.acquire("renew", me, ttl=max(self.wait, 30.0)):
                try:
                    token = self.store.get()
                    usable = None if force else self._usable(token, failed, min_left)
                    if usable is not None:
                        return usable
                    value, lifetime = self.fetch(force)
                    fresh = Token(value, self.clock() + lifetime)
                    self.store.put(fresh, self.clock())
                    log.info("access token renewed; valid for %.0f s", fresh.expires_at - self.clock())
                    self.metrics.token_renewed(self.channel, fresh.expires_at - self.clock())
                    return fresh
                finally:
                    self.store.release("renew", me)
            if time.monotonic() >= deadline:
                raise KfError(f"gave up waiting {self.wait:.0f} s for another worker to renew the access token")
            time.sleep(0.02)

    def _usable(self, token: Optional[Token], failed: Optional[str], min_left: float) -> Optional[Token]:
        """``token``, if there is one, it is not ``failed`` and has more than ``min_left`` seconds left."""
        if token is not None and token.value != failed and token.expires_at - self.clock() > min_left:
            return token
        return None

    def recover(self, failed: str) -> str:
        """WeChat refused ``failed``: drop it if it is still stored, and return its successor."""
        if self.store.invalidate(failed):
            log.info("WeChat refused the stored access token; renewing it")
        return self.renew(failed).value

    def expires_in(self) -> Optional[float]:
        """Seconds the stored token has left (negative: expired), ``None`` when none is stored; also reported
        to :attr:`metrics`."""
        token = self.store.get()
        if token is None:
            return None
        left = token.expires_at - self.clock()
        self.metrics.token_expires_in(self.channel, left)
        return left

    def tick(self) -> None:
        """The scheduled job: renew ahead of expiry if this process leads."""
        if not self.store.acquire("leader", self.owner, ttl=3 * self.interval):
            return
        token = self.store.get()
        if token is not None and token.expires_at - self.clock() > self.margin:
            return
        try:
            self.renew(min_left=self.margin)
        except KfError as exc:
            left = f"the current token is still valid for {token.expires_at - self.clock():.0f} s" if token else \
                "there is no valid token"
            log.warning("could not renew the access token (%s); %s, trying again in %.0f s",
                        exc, left, self.interval)

    def force_refresh(self) -> Token:
        """Invalidate the token at WeChat and get a new one (stable mode: at most 20 a day).

        :raises RateLimitedError: the daily limit is used up (checked before calling WeChat).
        """
        if self.mode == "stable":
            used = self.store.count("force-refresh", ttl=86400)
            if used > FORCE_REFRESH_DAILY_LIMIT:
                raise RateLimitedError(45009, "", "/cgi-bin/stable_token",
                                       f" — refused before calling WeChat: {FORCE_REFRESH_DAILY_LIMIT} forced "
                                       "refreshes a day are allowed")
        return self.renew(force=True)
