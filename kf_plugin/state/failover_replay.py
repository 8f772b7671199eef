"""Claims that survive a Redis stall: this process's memory first, then Redis (see :class:`FailoverReplayStore`)."""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, List, Optional, Set, Tuple

from .base import Claim, Grant, Outcome, PushClaim, ReplayStore, WindowStore
from .failover import Failover
from .memory import MemoryReplayStore

if TYPE_CHECKING:
    from .redis import RedisReplayStore

__all__ = ["FailoverReplayStore"]


class FailoverReplayStore(ReplayStore):
    """A :class:`ReplayStore` on ``primary`` (Redis) backed by this process's own memory (``fallback``).

    The memory is asked first, always: it knows every push this process
    claimed or answered, so a retry that reaches the same worker is answered
    from it whatever Redis does (one worker never runs a push twice, nor loses
    a reply, through a Redis stall or restart). A push the memory does not know
    is claimed in Redis. While Redis fails, pushes are claimed and answered in
    memory alone. Once Redis answers again, every reply the memory still keeps
    is written back (where Redis has none: it was away, or restarted empty), with
    the send rights granted meanwhile, so retries that reach other workers get
    them too. At most ``max_unsent`` such pushes are remembered for that.
    """

    def __init__(self, primary: "RedisReplayStore", fallback: MemoryReplayStore, failover: Optional[Failover] = None,
                 max_unsent: int = 10_000):
        self.primary, self.fallback = primary, fallback
        self.failover = failover or Failover("duplicate-push memory")
        self.failover.on_recovery(self.write_back)
        #: Where the grants this store records land: set by :func:`~.shared.open_state` to the
        #: window store with the same primary and fallback.
        self.window: Optional[WindowStore] = None
        self._max_unsent = max_unsent
        # Pushes claimed while Redis was away, with the grant recorded in memory for each (if any).
        self._unsent: "OrderedDict[str, Optional[Tuple[str, Grant, float]]]" = OrderedDict()
        self._mine: Set[str] = set()  # pushes this process is handling now
        self._lock = threading.Lock()

    def acquire(self, push: PushClaim) -> Claim:
        refused = self.fallback.take(push)
        if refused is not None:
            return refused
        if self.failover.bypassing:
            return self._claimed_here(push)
        try:
            shared = self.failover.call(lambda: self.primary.acquire(push))
        except self.failover.errors:
            return self._claimed_here(push)
        if shared.answered:
            self.fallback.complete(push.key, push.answer or "", push.ttl)
        elif shared.outcome is Outcome.CLAIMED:
            with self._lock:
                self._mine.add(push.key)
        else:
            self.fallback.release(push.key)  # another worker has it: wait on Redis, not on ourselves
        return shared

    def _claimed_here(self, push: PushClaim) -> Claim:
        """Redis is away: the push is this process's alone; Redis learns of it once it is back.

        The claim stays pending (any answer given is not stored): the caller completes it, which notes it
        for the write-back."""
        grant = None
        if push.grant is not None and self.fallback.window is not None:
            self.fallback.window.add_grant(push.grant[0], push.grant[1], push.now)
            grant = (*push.grant, push.now)
        with self._lock:
            self._mine.add(push.key)
            self._note_unsent(push.key, grant)
        return Claim(Outcome.CLAIMED, granted=grant is not None)

    def _note_unsent(self, key: str, grant: Optional[Tuple[str, Grant, float]]) -> None:
        """Remember a push Redis has yet to learn of (the oldest are forgotten past ``max_unsent``)."""
        self._unsent[key] = grant
        while len(self._unsent) > self._max_unsent:
            self._unsent.popitem(last=False)

    def complete(self, key: str, reply: str, ttl: float) -> None:
        self.fallback.complete(key, reply, ttl)
        with self._lock:
            self._mine.discard(key)
            claimed_here = key in self._unsent
        if claimed_here:
            if not self.failover.degraded:  # Redis came back while this push was handled: tell it this one
                self._write_back([(key, reply, ttl)], [key])
            return
        if not self.failover.bypassing:
            try:
                self.failover.call(lambda: self.primary.complete(key, reply, ttl))
                return
            except self.failover.errors:
                pass
        with self._lock:
            self._note_unsent(key, None)

    def release(self, key: str) -> None:
        self.fallback.release(key)
        with self._lock:
            self._mine.discard(key)
            if key in self._unsent:
                del self._unsent[key]
                return
        self.failover.run(lambda: self.primary.release(key), lambda: None)

    def wait(self, key: str, timeout: float) -> Optional[str]:
        if key in self._mine:  # handled by another thread of this process: its memory hears first
            return self.fallback.wait(key, timeout)
        return self.failover.run(lambda: self.primary.wait(key, timeout),
                                 lambda: self.fallback.wait(key, timeout))

    @property
    def unsent(self) -> int:
        """How many pushes claimed or answered while Redis was away Redis has yet to learn of."""
        return len(self._unsent)

    def write_back(self) -> None:
        """Tell Redis every reply this process keeps, and the grants made while it was away.

        What fails stays to be written at the next recovery.
        """
        with self._lock:
            keys = [key for key in self._unsent if key not in self._mine]
        self._write_back(self.fallback.replies(), keys)

    def _write_back(self, replies: List[Tuple[str, str, float]], keys: List[str]) -> None:
        """Write ``replies`` and the grants of the pushes ``keys`` claimed while Redis was away."""
        window = self.primary.window
        try:
            self.failover.call(lambda: self.primary.write_back(replies))
            for key in keys:
                grant = self._unsent.get(key)
                if grant is not None and window is not None:
                    openid, rights, granted_at = grant
                    self.failover.call(functools.partial(window.add_grant, openid, rights, granted_at))
                with self._lock:
                    self._unsent.pop(key, None)
        except self.failover.errors:
            return
