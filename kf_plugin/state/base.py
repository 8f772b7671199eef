"""Storage interfaces."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional


class ReplayStore(ABC):
    """Remembers the reply given to a push, so WeChat's retries get the same answer.

    A key goes through three states: absent → pending (claimed by the worker
    handling the push) → done (holding the rendered reply). Every state has a
    time to live, so a worker that dies while handling cannot block a key forever.
    """

    @abstractmethod
    def claim(self, key: str, ttl: float) -> bool:
        """Mark ``key`` pending; ``True`` only for the caller that found it absent."""

    @abstractmethod
    def complete(self, key: str, reply: str, ttl: float) -> None:
        """Store the reply for ``key`` (``""`` for "nothing to say") and wake waiters."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Forget a pending ``key`` whose handling failed, so a retry may try again."""

    @abstractmethod
    def wait(self, key: str, timeout: float) -> Optional[str]:
        """The stored reply of ``key``, waiting up to ``timeout`` seconds while it is pending.

        ``None`` when the key is absent, or still pending when the time is up.
        """
