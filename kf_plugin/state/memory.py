"""In-process implementations of the storage interfaces (one worker)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Optional, Tuple

from .base import ReplayStore

_PENDING = object()


class MemoryReplayStore(ReplayStore):
    """A :class:`ReplayStore` in a dict, bounded in size.

    ``clock`` (seconds, monotonic) decides expiry and can be replaced in tests;
    waiting always uses real time. At most ``max_entries`` keys are kept: the
    oldest go first, so memory stays bounded under any load.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000):
        self._clock = clock
        self._max_entries = max_entries
        self._entries: "OrderedDict[str, Tuple[object, float]]" = OrderedDict()
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            self._purge()
            return len(self._entries)

    def _purge(self) -> None:
        # Keys are appended in time order with similar TTLs: expired ones sit at the front.
        now = self._clock()
        while self._entries:
            key, (_, expires) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self._max_entries:
                break
            del self._entries[key]

    def _get(self, key: str) -> Optional[object]:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            return None
        return entry[0]

    def _put(self, key: str, value: object, ttl: float) -> None:
        self._entries[key] = (value, self._clock() + ttl)
        self._entries.move_to_end(key)
        self._purge()

    def claim(self, key: str, ttl: float) -> bool:
        with self._changed:
            if self._get(key) is not None:
                return False
            self._put(key, _PENDING, ttl)
            return True

    def complete(self, key: str, reply: str, ttl: float) -> None:
        with self._changed:
            self._put(key, reply, ttl)
            self._changed.notify_all()

    def release(self, key: str) -> None:
        with self._changed:
            if self._get(key) is _PENDING:
                del self._entries[key]
            self._changed.notify_all()

    def wait(self, key: str, timeout: float) -> Optional[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = self._get(key)
                if value is None:
                    return None
                if value is not _PENDING:
                    return value  # type: ignore[return-value]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
