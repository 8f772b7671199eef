"""What the WeCom puller keeps between pulls: each kf account's ``sync_msg`` cursor and the msgids handled.

One small interface each, with a memory implementation (one process) and a Redis one (every worker of a
corp), and failover from Redis to memory as the Official Account's state does (:mod:`kf_plugin.state.failover`).
Redis keys are ``{prefix}{corpid}:wecom:...`` — the corp's scope as :func:`kf_plugin.state.redis.scope_of` makes
it, with the corpid as the Redis Cluster hash tag — and every key has a time to live.
"""
from __future__ import annotations

import functools
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from ..state.failover import Failover
from ..state.redis import scope_of

__all__ = ["CursorStore", "SeenStore", "MemoryCursorStore", "MemorySeenStore", "RedisCursorStore",
           "RedisSeenStore", "FailoverCursorStore", "FailoverSeenStore", "PullState", "open_pull_state",
           "CURSOR_TTL", "SEEN_TTL"]

#: Seconds a cursor is kept after its last use. Past that the next pull starts as a first run (skipping
#: history): sync_msg keeps only 3 days of messages, so an older cursor would have little left to give.
CURSOR_TTL = 30 * 24 * 3600.0
#: Seconds a handled msgid is remembered. A msgid comes again only when a page is replayed — after a worker
#: died before storing the cursor, or while a lapsed lease let two workers pull — which is minutes later.
SEEN_TTL = 24 * 3600.0


class CursorStore(ABC):
    """Where each kf account's ``sync_msg`` cursor is kept: the position after the last page handled."""

    @abstractmethod
    def get(self, open_kfid: str) -> Optional[str]:
        """The stored cursor of ``open_kfid``; ``None`` if there is none (a first run)."""

    @abstractmethod
    def put(self, open_kfid: str, cursor: str) -> None:
        """Store ``cursor`` as ``open_kfid``'s position."""


class SeenStore(ABC):
    """The msgids already handled, each remembered for a while (a time to live), in bounded space."""

    @abstractmethod
    def seen(self, msgid: str) -> bool:
        """Whether ``msgid`` was recorded and is still remembered."""

    @abstractmethod
    def first_time(self, msgid: str) -> bool:
        """Record ``msgid``; ``True`` only for the caller that found it unrecorded (atomic)."""


class MemoryCursorStore(CursorStore):
    """A :class:`CursorStore` in a dict (one entry per kf account: a corp has few)."""

    def __init__(self) -> None:
        self._cursors: Dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, open_kfid: str) -> Optional[str]:
        with self._lock:
            return self._cursors.get(open_kfid)

    def put(self, open_kfid: str, cursor: str) -> None:
        with self._lock:
            self._cursors[open_kfid] = cursor


class MemorySeenStore(SeenStore):
    """A :class:`SeenStore` of at most ``max_entries`` msgids, each kept ``ttl`` seconds (by ``clock``,
    monotonic); past the bound the oldest are forgotten first."""

    def __init__(self, ttl: float = SEEN_TTL, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._expiry: "OrderedDict[str, float]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._expiry)

    def seen(self, msgid: str) -> bool:
        with self._lock:
            expires = self._expiry.get(msgid)
            return expires is not None and expires > self._clock()

    def first_time(self, msgid: str) -> bool:
        with self._lock:
            now = self._clock()
            expires = self._expiry.get(msgid)
            if expires is not None and expires > now:
                return False
            self._expiry[msgid] = now + self.ttl
            self._expiry.move_to_end(msgid)
            self._purge(now)
            return True

    def _purge(self, now: float) -> None:
        # Entries are appended in time order with one TTL: the expired ones sit at the front.
        while self._expiry:
            msgid, expires = next(iter(self._expiry.items()))
            if expires > now and len(self._expiry) <= self.max_entries:
                return
            del self._expiry[msgid]


def wecom_scope(prefix: str, corpid: str) -> str:
    """``{prefix}{corpid}:wecom:``: the corp's scope (the corpid as hash tag) and a part of its own."""
    return f"{scope_of(prefix, corpid)}wecom:"


class RedisCursorStore(CursorStore):
    """A :class:`CursorStore` on Redis: ``{prefix}{corpid}:wecom:cursor:{open_kfid}``, kept ``ttl`` seconds
    after each put."""

    def __init__(self, redis: Any, corpid: str, prefix: str = "kf:", ttl: float = CURSOR_TTL):
        self.redis = redis
        self.prefix = wecom_scope(prefix, corpid)
        self.ttl = ttl

    def key(self, open_kfid: str) -> str:
        return f"{self.prefix}cursor:{open_kfid}"

    def get(self, open_kfid: str) -> Optional[str]:
        value = self.redis.get(self.key(open_kfid))
        return None if value is None else value.decode("utf-8")

    def put(self, open_kfid: str, cursor: str) -> None:
        self.redis.set(self.key(open_kfid), cursor.encode("utf-8"), px=_ms(self.ttl))


class RedisSeenStore(SeenStore):
    """A :class:`SeenStore` on Redis: one key per msgid, ``{prefix}{corpid}:wecom:seen:{msgid}``, expiring after
    ``ttl`` seconds (so the space is bounded by the messages of one ``ttl``)."""

    def __init__(self, redis: Any, corpid: str, prefix: str = "kf:", ttl: float = SEEN_TTL):
        self.redis = redis
        self.prefix = wecom_scope(prefix, corpid)
        self.ttl = ttl

    def key(self, msgid: str) -> str:
        return f"{self.prefix}seen:{msgid}"

    def seen(self, msgid: str) -> bool:
        return bool(self.redis.exists(self.key(msgid)))

    def first_time(self, msgid: str) -> bool:
        return bool(self.redis.set(self.key(msgid), b"1", nx=True, px=_ms(self.ttl)))


class FailoverCursorStore(CursorStore):
    """A :class:`CursorStore` on ``primary`` (Redis) that falls back to ``fallback`` (this process's memory).

    Every cursor is also written to the memory, so a worker that loses Redis goes on from where it last was;
    cursors stored while Redis was away are written to it once it is back (the last writer wins: a cursor
    older than another worker's only replays pages, which the msgid dedupe makes harmless).
    """

    def __init__(self, primary: CursorStore, fallback: CursorStore, failover: Optional[Failover] = None):
        self.primary, self.fallback = primary, fallback
        self.failover = failover or Failover("WeCom sync cursors")
        self.failover.on_recovery(self.write_back)
        self._unsent: Dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, open_kfid: str) -> Optional[str]:
        return self.failover.run(lambda: self.primary.get(open_kfid), lambda: self.fallback.get(open_kfid))

    def put(self, open_kfid: str, cursor: str) -> None:
        self.fallback.put(open_kfid, cursor)

        def note_unsent() -> None:
            with self._lock:
                self._unsent[open_kfid] = cursor
        self.failover.run(lambda: self.primary.put(open_kfid, cursor), note_unsent)

    def write_back(self) -> None:
        """Store in Redis the cursors put while it was away; what fails waits for the next recovery."""
        with self._lock:
            unsent = dict(self._unsent)
        for open_kfid, cursor in unsent.items():
            try:
                self.failover.call(functools.partial(self.primary.put, open_kfid, cursor))
            except self.failover.errors:
                return
            with self._lock:
                if self._unsent.get(open_kfid) == cursor:
                    del self._unsent[open_kfid]


class FailoverSeenStore(SeenStore):
    """A :class:`SeenStore` on ``primary`` (Redis) backed by this process's own memory (``fallback``).

    The memory is asked first, always, and records every msgid this process handles, so one worker never
    handles a message twice whatever Redis does. msgids recorded while Redis was away (at most ``max_unsent``)
    are written to it once it is back, so a worker taking a kf account over skips them too.
    """

    def __init__(self, primary: SeenStore, fallback: SeenStore, failover: Optional[Failover] = None,
                 max_unsent: int = 10_000):
        self.primary, self.fallback = primary, fallback
        self.failover = failover or Failover("WeCom message dedupe")
        self.failover.on_recovery(self.write_back)
        self.max_unsent = max_unsent
        self._unsent: "OrderedDict[str, None]" = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, msgid: str) -> bool:
        return self.fallback.seen(msgid) or self.failover.run(lambda: self.primary.seen(msgid), lambda: False)

    def first_time(self, msgid: str) -> bool:
        here = self.fallback.first_time(msgid)

        def note_unsent() -> bool:
            with self._lock:
                self._unsent[msgid] = None
                while len(self._unsent) > self.max_unsent:
                    self._unsent.popitem(last=False)
            return here
        shared = self.failover.run(lambda: self.primary.first_time(msgid), note_unsent)
        return here and shared

    def write_back(self) -> None:
        """Record in Redis the msgids handled while it was away; what fails waits for the next recovery."""
        with self._lock:
            unsent = list(self._unsent)
        for msgid in unsent:
            try:
                self.failover.call(functools.partial(self.primary.first_time, msgid))
            except self.failover.errors:
                return
            with self._lock:
                self._unsent.pop(msgid, None)


@dataclass(frozen=True)
class PullState:
    """The puller's stores for one corp."""

    cursors: CursorStore
    seen: SeenStore


def open_pull_state(redis: Optional[Any], corpid: str, prefix: str = "kf:", *,
                    failover: Optional[Failover] = None, seen_ttl: float = SEEN_TTL,
                    cursor_ttl: float = CURSOR_TTL, max_seen: int = 100_000) -> PullState:
    """Memory stores, or — with ``redis`` (a redis-py client) — Redis stores falling back to memory while Redis
    is down. ``failover``: share the verdict on whether Redis is up with the rest of the bot's state (e.g. the
    one :func:`kf_plugin.state.shared.open_state` made); a new one otherwise. ``max_seen`` bounds the msgids
    kept in memory. Nothing connects yet.
    """
    own_seen = MemorySeenStore(ttl=seen_ttl, max_entries=max_seen)
    if redis is None:
        return PullState(MemoryCursorStore(), own_seen)
    failover = failover or Failover("WeCom pull state", probe=redis.ping)
    return PullState(
        FailoverCursorStore(RedisCursorStore(redis, corpid, prefix, cursor_ttl), MemoryCursorStore(), failover),
        FailoverSeenStore(RedisSeenStore(redis, corpid, prefix, seen_ttl), own_seen, failover))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
