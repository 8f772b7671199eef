"""In-process implementations of the storage interfaces (one worker)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import replace
from operator import itemgetter
from typing import Callable, Dict, Iterable, Optional, Tuple

from .base import (
    MAX_GRANTS_PER_USER,
    Grant,
    ReplayStore,
    Token,
    TokenStore,
    WindowRecord,
    WindowStore,
)

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


# A grant as a plain tuple (action, count, expires_at, used): the garbage collector stops tracking a tuple of
# strings and numbers, so 200,000 users' records cost it nothing, where Grant objects would be traversed in
# every full collection.
_Row = Tuple[str, Optional[int], float, int]


def _row(grant: Grant) -> _Row:
    return (grant.action, grant.count, grant.expires_at, grant.used)


_expires_at = itemgetter(2)


class MemoryWindowStore(WindowStore):
    """A :class:`WindowStore` in a dict of at most ``max_users`` users (the least recently updated go first)."""

    def __init__(self, max_users: int = 200_000):
        self._max_users = max_users
        self._records: "OrderedDict[str, Tuple[_Row, ...]]" = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, openid: str, now: float) -> Optional[Tuple[Grant, ...]]:
        rows = self._records.get(openid)
        if rows is None:
            return None
        return tuple(Grant(*row) for row in rows if row[2] > now)

    def _store(self, openid: str, grants: Iterable[Grant]) -> None:
        self._store_rows(openid, tuple(map(_row, grants)))

    def _store_rows(self, openid: str, rows: Tuple[_Row, ...]) -> None:
        self._records[openid] = rows
        self._records.move_to_end(openid)
        while len(self._records) > self._max_users:
            self._records.popitem(last=False)

    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        with self._lock:
            grants = self._live(openid, now)
            return WindowRecord(grants) if grants is not None else None

    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        new = _row(grant)
        with self._lock:
            rows = self._records.get(openid)
            if rows:  # rows rather than Grants: this runs on every push
                live = [row for row in rows if row[2] > now]
                live.append(new)
                live.sort(key=_expires_at)
                self._store_rows(openid, tuple(live[-MAX_GRANTS_PER_USER:]))
            else:
                self._store_rows(openid, (new,))

    def consume(self, openid: str, now: float) -> Optional[Grant]:
        with self._lock:
            grants = list(self._live(openid, now) or ())
            usable = [g for g in grants if g.usable(now)]
            if not usable:
                return None
            chosen = min(usable, key=lambda g: g.expires_at)
            used = replace(chosen, used=chosen.used + 1)
            grants[grants.index(chosen)] = used
            self._store(openid, grants)
            return used

    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        with self._lock:
            grants = self._live(openid, now) or ()
            # An unlimited grant cannot be used up: WeChat said no, so stop trusting it.
            self._store(openid, [replace(g, used=g.count) for g in grants if g.count is not None] if exhausted else ())


class MemoryTokenStore(TokenStore):
    """A :class:`TokenStore` for one process. ``clock``: unix time, replaceable in tests."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._token: Optional[Token] = None
        self._leases: Dict[str, Tuple[str, float]] = {}
        self._counters: Dict[str, Tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self) -> Optional[Token]:
        token = self._token
        return token if token is not None and token.expires_at > self._clock() else None

    def put(self, token: Token, now: float) -> None:
        self._token = token

    def invalidate(self, value: str) -> bool:
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None
                return True
            return False

    def acquire(self, name: str, owner: str, ttl: float) -> bool:
        with self._lock:
            now = self._clock()
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[name] = (owner, now + ttl)
            return True

    def release(self, name: str, owner: str) -> None:
        with self._lock:
            if self._leases.get(name, ("", 0))[0] == owner:
                del self._leases[name]

    def holder(self, name: str) -> Optional[str]:
        held = self._leases.get(name)
        return held[0] if held is not None and held[1] > self._clock() else None

    def count(self, name: str, ttl: float) -> int:
        with self._lock:
            now = self._clock()
            value, resets = self._counters.get(name, (0, now + ttl))
            if resets <= now:
                value, resets = 0, now + ttl
            self._counters[name] = (value + 1, resets)
            return value + 1
