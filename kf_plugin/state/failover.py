"""Keep answering when Redis is down: fall back to in-process state, return when it is back.

While Redis fails, each worker uses its own memory (a retry that reaches
another worker may then run its push again); it tries Redis again every
``retry_after`` seconds, so a request pays a Redis timeout at most that often.
Each worker's memory of the pushes it answered is kept whatever Redis does, and
what it answered while Redis was away is written back once Redis returns (the claims:
:mod:`.failover_replay`).
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable, Generic, List, Optional, Sequence, Tuple, Type, TypeVar

from ..lifecycle import Change, Conversation, HandoffRecord, Transition
from .base import Grant, Token, TokenStore, WindowRecord, WindowStore
from .handoffs import HandoffStore

__all__ = ["Failover", "FailoverWindowStore", "FailoverTokenStore", "FailoverHandoffStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _redis_errors() -> Tuple[Type[BaseException], ...]:
    from redis.exceptions import ConnectionError, TimeoutError
    return (ConnectionError, TimeoutError, OSError)


def _slow_failure(exc: BaseException) -> bool:
    """Whether ``exc`` cost a timeout (a stalled or unreachable host), not a quick refusal (Redis not running)."""
    from redis.exceptions import TimeoutError as RedisTimeout
    return isinstance(exc, (RedisTimeout, TimeoutError))


class Failover:
    """Runs an operation on the primary store, or on the fallback while the primary is failing.

    ``probe`` (e.g. the Redis client's ``ping``): while the primary is down, a
    thread tries it every ``probe_every`` seconds, so the return of Redis is
    noticed at once, even by a worker that gets no requests. After a timeout,
    operations themselves try the primary again only every ``retry_after``
    seconds, so a request pays a Redis timeout at most that often; after a
    refusal (Redis not running: it costs a fraction of a millisecond) every
    operation tries it, so a restarted Redis is used from the first request
    after it. Callbacks registered with :meth:`on_recovery` then run, in a
    thread of their own.
    """

    def __init__(self, name: str, retry_after: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 probe: Optional[Callable[[], Any]] = None, probe_every: float = 0.2):
        self.name = name
        self.retry_after = retry_after
        self.probe_every = probe_every
        self.clock = clock
        self.probe = probe
        self.errors = _redis_errors()
        self._down_since: Optional[float] = None
        self._failed_at = 0.0
        self._slow = False      # whether the last failure cost a timeout
        self._lock = threading.Lock()
        self._recovery: List[Callable[[], None]] = []
        self._watchers: List[Callable[[bool], None]] = []

    @property
    def degraded(self) -> bool:
        """Whether the fallback is in use."""
        return self._down_since is not None

    @property
    def bypassing(self) -> bool:
        """Whether operations go straight to the fallback now (Redis timed out less than ``retry_after`` ago)."""
        return self._down_since is not None and self._slow and self.clock() - self._failed_at < self.retry_after

    def on_recovery(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (in a thread of its own) each time the primary answers again after failing."""
        self._recovery.append(callback)

    def watch(self, watcher: Callable[[bool], None]) -> None:
        """Call ``watcher(degraded)`` now and at each change, on the thread that noticed (exceptions logged)."""
        self._watchers.append(watcher)
        _tell([watcher], self.degraded)

    def run(self, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``primary()``; ``fallback()`` instead while bypassing or when it fails as Redis fails."""
        if self.bypassing:
            return fallback()
        try:
            return self.call(primary)
        except self.errors:
            return fallback()

    def call(self, primary: Callable[[], T]) -> T:
        """``primary()``, noting whether Redis failed or came back; its errors propagate."""
        try:
            result = primary()
        except self.errors as exc:
            self._failed(exc)
            raise
        if self._down_since is not None:
            self._recovered()
        return result

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._failed_at, self._slow = self.clock(), _slow_failure(exc)
            if self._down_since is not None:
                return
            self._down_since = self._failed_at
        log.warning("Redis is unreachable for the %s (%s); using in-process state until it is back", self.name, exc)
        _tell(self._watchers, True)
        if self.probe is not None:
            threading.Thread(target=_probe_until_back, args=(weakref.ref(self),), name="kf-redis-probe",
                             daemon=True).start()

    def _recovered(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            down_for, self._down_since = self.clock() - self._down_since, None
        log.warning("Redis is back for the %s after %.0f s; shared state resumes", self.name, down_for)
        _tell(self._watchers, False)
        for callback in self._recovery:
            threading.Thread(target=_logged(callback), name="kf-redis-recovery", daemon=True).start()


def _tell(watchers: List[Callable[[bool], None]], degraded: bool) -> None:
    for watcher in watchers:
        try:
            watcher(degraded)
        except Exception:  # a watcher (a metric) must not turn a Redis failure into a failed push
            log.exception("a watcher of the Redis failover failed")

def _probe_until_back(ref: "weakref.ReferenceType[Failover]") -> None:
    """Try the primary every so often until it answers; ``ref``: the failover, held weakly (one nobody uses any
    more ends its probe)."""
    while True:
        failover = ref()
        if failover is None or not failover.degraded or failover.probe is None:
            return
        pause, probe = failover.probe_every, failover.probe
        del failover
        time.sleep(pause)
        failover = ref()
        if failover is None or not failover.degraded:
            return
        try:
            failover.call(probe)
        except failover.errors:
            pass
        del failover


def _logged(callback: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            callback()
        except Exception:  # a recovery step failing must not go unnoticed, nor kill anything
            log.exception("after Redis came back, %r failed", callback)
    return run


S = TypeVar("S")


class _OnFailover(Generic[S]):
    def __init__(self, primary: S, fallback: S, failover: Failover):
        self.primary, self.fallback, self.failover = primary, fallback, failover

    def _on_either(self, operation: Callable[[S], T]) -> T:
        """``operation(primary)``, or ``operation(fallback)`` while the primary fails."""
        return self.failover.run(lambda: operation(self.primary), lambda: operation(self.fallback))


class FailoverWindowStore(_OnFailover[WindowStore], WindowStore):
    """A :class:`WindowStore` on ``primary`` (Redis) that falls back to ``fallback`` (memory)."""

    def __init__(self, primary: WindowStore, fallback: WindowStore, failover: Optional[Failover] = None):
        super().__init__(primary, fallback, failover or Failover("48-hour window"))

    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        return self._on_either(lambda store: store.get(openid, now))

    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        self._on_either(lambda store: store.add_grant(openid, grant, now))

    def consume(self, openid: str, now: float) -> Optional[Grant]:
        return self._on_either(lambda store: store.consume(openid, now))

    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        self._on_either(lambda store: store.revoke(openid, now, exhausted=exhausted))


class FailoverTokenStore(_OnFailover[TokenStore], TokenStore):
    """A :class:`TokenStore` on ``primary`` (Redis) that falls back to ``fallback`` (memory).

    While Redis is down each worker keeps its own token; in stable mode WeChat
    hands them all the same one, so nobody invalidates anybody.
    """

    def __init__(self, primary: TokenStore, fallback: TokenStore, failover: Optional[Failover] = None):
        super().__init__(primary, fallback, failover or Failover("access token"))

    def get(self) -> Optional[Token]:
        return self._on_either(lambda store: store.get())

    def put(self, token: Token, now: float) -> None:
        self._on_either(lambda store: store.put(token, now))

    def invalidate(self, value: str) -> bool:
        return self._on_either(lambda store: store.invalidate(value))

    def acquire(self, name: str, owner: str, ttl: float) -> bool:
        return self._on_either(lambda store: store.acquire(name, owner, ttl))

    def release(self, name: str, owner: str) -> None:
        self._on_either(lambda store: store.release(name, owner))

    def holder(self, name: str) -> Optional[str]:
        return self._on_either(lambda store: store.holder(name))

    def count(self, name: str, ttl: float) -> int:
        return self._on_either(lambda store: store.count(name, ttl))


class FailoverHandoffStore(_OnFailover[HandoffStore], HandoffStore):
    """A :class:`HandoffStore` on ``primary`` (Redis) that falls back to ``fallback`` (memory).

    While Redis is down each worker keeps the hand-offs it sees in its own memory; that memory is not written
    back (a queue position or a notice is short-lived, and the transitions WeChat reports next set things right).
    """

    def __init__(self, primary: HandoffStore, fallback: HandoffStore, failover: Optional[Failover] = None):
        super().__init__(primary, fallback, failover or Failover("hand-offs"))

    def conversation(self, openid: str) -> Conversation:
        return self._on_either(lambda store: store.conversation(openid))

    def apply(self, openid: str, change: Change) -> Transition:
        return self._on_either(lambda store: store.apply(openid, change))

    def mark_noticed(self, openid: str, now: float, interval: float) -> bool:
        return self._on_either(lambda store: store.mark_noticed(openid, now, interval))

    def active(self, limit: int = 1000) -> List[Conversation]:
        return self._on_either(lambda store: store.active(limit))

    def in_handoff(self, limit: int = 1000) -> List[Tuple[str, float]]:
        return self._on_either(lambda store: store.in_handoff(limit))

    def conversations(self, openids: Sequence[str]) -> List[Conversation]:
        return self._on_either(lambda store: store.conversations(openids))

    def count_queued(self, limit: int = 1000) -> int:
        return self._on_either(lambda store: store.count_queued(limit))

    def records(self, since: float, until: Optional[float] = None) -> List[HandoffRecord]:
        return self._on_either(lambda store: store.records(since, until))

    def record(self, handoff_id: str) -> Optional[HandoffRecord]:
        return self._on_either(lambda store: store.record(handoff_id))

    def recent(self, openid: str) -> List[str]:
        return self._on_either(lambda store: store.recent(openid))

    def remember(self, openid: str, text: str, now: float) -> None:
        self._on_either(lambda store: store.remember(openid, text, now))

    def count_unanswered(self, openid: str, answered: bool, now: float) -> int:
        return self._on_either(lambda store: store.count_unanswered(openid, answered, now))
