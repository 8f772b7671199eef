"""In-process implementations of the storage interfaces (one worker)."""
from __future__ import annotations

import enum
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from operator import itemgetter
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

from ..lifecycle import Conversation
from .base import (
    MAX_GRANTS_PER_USER,
    Claim,
    Grant,
    Outcome,
    PushClaim,
    ReplayStore,
    Token,
    TokenStore,
    WindowRecord,
    WindowStore,
)
from .handoffs import HandoffStore


class _Pending(enum.Enum):
    """The value of a claimed key whose reply is not written yet (an enum member, so a type checker can narrow)."""

    PENDING = "pending"


_PENDING = _Pending.PENDING
_Value = Union[str, _Pending]
_Entries = OrderedDict[str, Tuple[_Value, float]]


class MemoryReplayStore(ReplayStore):
    """A :class:`ReplayStore` in a dict, bounded in size.

    ``clock`` (seconds, monotonic) decides expiry and can be replaced in tests;
    waiting always uses real time. At most ``max_entries`` keys (and as many
    bindings) are kept: the oldest go first, so memory stays bounded under any
    load. ``window``: the store that the first claim of a push records its grant
    in (none: the caller records it). ``handoffs``: where claims read their
    sender's conversation and store the hand-off their answer makes (none: they
    read nothing). A pending claim here belongs to this process, which cannot
    die without taking the claim with it: leases matter only to stores shared
    between processes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000,
                 window: Optional[WindowStore] = None, handoffs: Optional[HandoffStore] = None):
        self._clock = clock
        self._max_entries = max_entries
        self._entries: _Entries = OrderedDict()
        self._bindings: _Entries = OrderedDict()
        # Claims take the lock itself (a C-level context manager); the condition on it is for waiting, and is
        # notified only when somebody waits.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiting = 0
        self.window = window
        self.handoffs = handoffs

    def __len__(self) -> int:
        with self._lock:
            _purge(self._entries, self._clock(), self._max_entries)
            return len(self._entries)

    def acquire(self, push: PushClaim) -> Claim:
        handoffs, openid = self.handoffs, push.openid
        conversation: Optional[Conversation]
        if openid is None or handoffs is None:
            conversation, answer = None, push.answer
            refused = self._take(push, answer)
        else:
            # The hand-off store reads the sender's conversation, has _take claim the push with its answer only
            # for a user with the bot, and stores the hand-off that answer makes.
            conversation, answer, refused = handoffs.claim_for(openid, push, self._take)
        if refused is not None:
            return refused
        granted = push.grant is not None and self.window is not None
        if push.grant is not None and self.window is not None:
            self.window.add_grant(push.grant[0], push.grant[1], push.now)
        return Claim(Outcome.CLAIMED, granted=granted, answered=answer is not None, conversation=conversation)

    def take(self, push: PushClaim) -> Optional[Claim]:
        """Claim ``push.key`` pending, checking its binding, and nothing more (no grant, answer or hand-off):
        ``None`` when claimed, else what was found instead (a conflict, a pending claim or a reply)."""
        return self._take(push, None)

    def _take(self, push: PushClaim, answer: Optional[str]) -> Optional[Claim]:
        """Claim ``push.key`` (pending, or answered with ``answer``) under this store's lock; ``None`` when
        claimed, else what was found instead."""
        with self._lock:
            now = self._clock()
            if push.binding is not None:
                query, digest = push.binding
                bound = _get(self._bindings, query, now)
                if bound is None:
                    _put(self._bindings, query, digest, now, push.binding_ttl, self._max_entries)
                elif bound != digest:
                    return Claim(Outcome.CONFLICT)
            value = _get(self._entries, push.key, now)
            if value is _PENDING:
                return Claim(Outcome.PENDING)
            if value is not None:
                return Claim(Outcome.DONE, value)
            _put(self._entries, push.key, _PENDING if answer is None else answer, now, push.ttl,
                 self._max_entries)
            if answer is not None and self._waiting:
                self._changed.notify_all()
            return None

    def complete(self, key: str, reply: str, ttl: float) -> None:
        with self._lock:
            _put(self._entries, key, reply, self._clock(), ttl, self._max_entries)
            if self._waiting:
                self._changed.notify_all()

    def release(self, key: str) -> None:
        with self._lock:
            if _get(self._entries, key, self._clock()) is _PENDING:
                del self._entries[key]
            if self._waiting:
                self._changed.notify_all()

    def replies(self) -> List[Tuple[str, str, float]]:
        """Every reply still kept: ``(key, reply, seconds it is still kept)``."""
        with self._lock:
            now = self._clock()
            return [(key, value, expires - now) for key, (value, expires) in self._entries.items()
                    if isinstance(value, str) and expires > now]

    def wait(self, key: str, timeout: float) -> Optional[str]:
        deadline = time.monotonic() + timeout
        with self._lock:
            self._waiting += 1
            try:
                return self._wait(key, deadline)
            finally:
                self._waiting -= 1

    def _wait(self, key: str, deadline: float) -> Optional[str]:
        while True:
            value = _get(self._entries, key, self._clock())
            if value is None:
                return None
            if value is not _PENDING:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._changed.wait(remaining)


def _purge(entries: _Entries, now: float, limit: int) -> None:
    # Keys are appended in time order with similar TTLs: expired ones sit at the front.
    while entries:
        key, (_, expires) = next(iter(entries.items()))
        if expires > now and len(entries) <= limit:
            break
        del entries[key]


def _get(entries: _Entries, key: str, now: float) -> Optional[_Value]:
    entry = entries.get(key)
    if entry is None:
        return None
    if entry[1] <= now:
        del entries[key]
        return None
    return entry[0]


def _put(entries: _Entries, key: str, value: _Value, now: float, ttl: float,
         limit: int) -> None:
    entries[key] = (value, now + ttl)
    entries.move_to_end(key)
    _purge(entries, now, limit)


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
