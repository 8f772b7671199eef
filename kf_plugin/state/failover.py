"""Keep answering when Redis is down: fall back to in-process state, return when it is back.

While Redis fails, each worker uses its own memory (duplicates across workers
are then possible, as with one process per worker); it tries Redis again every
``retry_after`` seconds, so a request pays a Redis timeout at most that often.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Type, TypeVar

from .base import Grant, ReplayStore, Token, TokenStore, WindowRecord, WindowStore

if TYPE_CHECKING:
    from .writebehind import WriteBehind

__all__ = ["Failover", "FailoverReplayStore", "FailoverWindowStore", "FailoverTokenStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _redis_errors() -> Tuple[Type[BaseException], ...]:
    from redis.exceptions import ConnectionError, TimeoutError
    return (ConnectionError, TimeoutError, OSError)


class Failover:
    """Runs an operation on the primary store, or on the fallback while the primary is failing."""

    def __init__(self, name: str, retry_after: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.retry_after = retry_after
        self.clock = clock
        self._down_since: Optional[float] = None
        self._failed_at = 0.0
        self._lock = threading.Lock()
        self._errors = _redis_errors()

    @property
    def degraded(self) -> bool:
        """Whether the fallback is in use."""
        return self._down_since is not None

    @property
    def bypassing(self) -> bool:
        """Whether operations go straight to the fallback now (Redis failed less than ``retry_after`` ago)."""
        return self._down_since is not None and self.clock() - self._failed_at < self.retry_after

    def run(self, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        if self.bypassing:
            return fallback()
        try:
            result = primary()
        except self._errors as exc:
            with self._lock:
                if self._down_since is None:
                    self._down_since = self.clock()
                    log.warning("Redis is unreachable for the %s (%s); using in-process state until it is back",
                                self.name, exc)
                self._failed_at = self.clock()
            return fallback()
        if self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning("Redis is back for the %s after %.0f s; shared state resumes",
                                self.name, self.clock() - self._down_since)
                    self._down_since = None
        return result


class _OnFailover:
    def __init__(self, primary: Any, fallback: Any, failover: Failover, writer: Optional["WriteBehind"] = None):
        self.primary, self.fallback, self.failover, self.writer = primary, fallback, failover, writer

    def _run(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        return self.failover.run(lambda: getattr(self.primary, operation)(*args, **kwargs),
                                 lambda: getattr(self.fallback, operation)(*args, **kwargs))

    def _after_queued(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """An operation that must come after this process's queued writes (it reads or changes what they wrote)."""
        if self.writer is not None:
            self.writer.flush()
        return self._run(operation, *args, **kwargs)

    def _write_later(self, operation: str, *args: Any) -> None:
        """A write nobody waits for: queued on the writer, if there is one, as the primary's command for it."""
        if self.writer is None:
            self._run(operation, *args)
            return
        fallback = lambda: getattr(self.fallback, operation)(*args)  # noqa: E731
        if self.failover.bypassing:
            fallback()
        else:  # queued: whether Redis takes it is known when it is sent
            self.writer.submit(getattr(self.primary, f"{operation}_command")(*args), fallback)


class FailoverReplayStore(_OnFailover, ReplayStore):
    """A :class:`ReplayStore` on ``primary`` (Redis) that falls back to ``fallback`` (memory).

    With a ``writer``, finished replies are written behind the answer (see :mod:`.writebehind`).
    """

    def __init__(self, primary: ReplayStore, fallback: ReplayStore, failover: Optional[Failover] = None,
                 writer: Optional["WriteBehind"] = None):
        super().__init__(primary, fallback, failover or Failover("duplicate-push memory"), writer)

    def claim(self, key: str, ttl: float) -> bool:
        return self._run("claim", key, ttl)

    def complete(self, key: str, reply: str, ttl: float) -> None:
        self._write_later("complete", key, reply, ttl)

    def release(self, key: str) -> None:
        self._run("release", key)

    def wait(self, key: str, timeout: float) -> Optional[str]:
        return self._after_queued("wait", key, timeout)


class FailoverWindowStore(_OnFailover, WindowStore):
    """A :class:`WindowStore` on ``primary`` (Redis) that falls back to ``fallback`` (memory).

    With a ``writer``, new grants are written behind the answer (see :mod:`.writebehind`).
    """

    def __init__(self, primary: WindowStore, fallback: WindowStore, failover: Optional[Failover] = None,
                 writer: Optional["WriteBehind"] = None):
        super().__init__(primary, fallback, failover or Failover("48-hour window"), writer)

    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        return self._after_queued("get", openid, now)

    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        self._write_later("add_grant", openid, grant, now)

    def consume(self, openid: str, now: float) -> Optional[Grant]:
        return self._after_queued("consume", openid, now)

    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        self._after_queued("revoke", openid, now, exhausted=exhausted)


class FailoverTokenStore(_OnFailover, TokenStore):
    """A :class:`TokenStore` on ``primary`` (Redis) that falls back to ``fallback`` (memory).

    While Redis is down each worker keeps its own token; in stable mode WeChat
    hands them all the same one, so nobody invalidates anybody.
    """

    def __init__(self, primary: TokenStore, fallback: TokenStore, failover: Optional[Failover] = None):
        super().__init__(primary, fallback, failover or Failover("access token"))

    def get(self) -> Optional[Token]:
        return self._run("get")

    def put(self, token: Token, now: float) -> None:
        self._run("put", token, now)

    def invalidate(self, value: str) -> bool:
        return self._run("invalidate", value)

    def acquire(self, name: str, owner: str, ttl: float) -> bool:
        return self._run("acquire", name, owner, ttl)

    def release(self, name: str, owner: str) -> None:
        self._run("release", name, owner)

    def holder(self, name: str) -> Optional[str]:
        return self._run("holder", name)

    def count(self, name: str, ttl: float) -> int:
        return self._run("count", name, ttl)
