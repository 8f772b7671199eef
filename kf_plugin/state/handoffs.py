"""Where each user is in the hand-off lifecycle, the record of every hand-off, and what the bot needs around it
(a user's last messages, how many went unanswered).

:class:`HandoffStore` is the interface; :class:`MemoryHandoffStore` keeps it in one process, and
:class:`~kf_plugin.state.redis_handoffs.RedisHandoffStore` shares it between workers.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Callable, Generic, List, Optional, Sequence, Tuple, TypeVar

from ..lifecycle import Change, Conversation, Ending, HandoffRecord, Stage, Transition, advance
from .base import PushClaim

__all__ = ["HandoffStore", "MemoryHandoffStore", "KEEP_RECORDS", "KEEP_USER", "RECENT_SIZE", "check_recent_size"]

#: What a claim's ``take`` finds instead of claiming (see :meth:`HandoffStore.claim_for`).
R = TypeVar("R")
#: ``take(push, answer)`` of :meth:`HandoffStore.claim_for`, and what that method returns.
Take = Callable[[PushClaim, Optional[str]], Optional[R]]
Claimed = Tuple[Conversation, Optional[str], Optional[R]]

#: Seconds a hand-off's record is kept after its request (``KF_HANDOFF_RECORDS_FOR``'s default).
KEEP_RECORDS = 30 * 86400.0
#: Seconds a user's conversation, last messages and unanswered count are kept after their last change.
KEEP_USER = 48 * 3600.0
#: How many of a user's last messages are kept.
RECENT_SIZE = 5


class HandoffStore(ABC):
    """Each user's :class:`~kf_plugin.lifecycle.Conversation` and the :class:`~kf_plugin.lifecycle.HandoffRecord`
    of every hand-off.

    Nothing is stored for a user with the bot: :meth:`conversation` gives them with ``since`` 0, so a change
    older than their return to the bot is not recognised as stale (in the queue or with an agent it is). A
    conversation is kept :data:`KEEP_USER` after its last change (then the user is with the bot again), a
    record ``keep_records`` seconds after its request. :meth:`apply` and :meth:`mark_noticed` are atomic across
    every worker that shares the store.
    """

    @abstractmethod
    def conversation(self, openid: str) -> Conversation:
        """Where the user is now (with the bot when nothing is known)."""

    @abstractmethod
    def apply(self, openid: str, change: Change) -> Transition:
        """Advance the user's conversation by ``change`` (see :func:`~kf_plugin.lifecycle.advance`) and store
        the conversation and the record it touched, in one step no other worker's change interleaves with."""

    def open(self, transition: Transition) -> bool:
        """Store ``transition`` — a request worked out for a user with the bot — if the user is still with the
        bot (in one step no other change interleaves with); whether it was stored. The push claim calls it
        with the request it planned; the default applies the request's change again."""
        return self.apply(transition.after.openid, transition.change).moved

    def claim_for(self, openid: str, push: PushClaim, take: Take[R]) -> Claimed[R]:
        """Claim ``push`` of ``openid`` (its ``push.openid``) with ``take``, given where they are, and store the
        hand-off it planned.

        ``take(push, given)`` claims the push in a replay store and returns ``None``, or what it found instead of
        a claim; ``given`` is ``push.answer`` for a user with the bot (it was worked out for one), else ``None``.
        Only when it claimed with that answer is ``push.handoff`` stored (as :meth:`open` stores it). Returns
        the user's conversation, ``given`` and what ``take`` returned.

        The default reads the conversation, claims, then calls :meth:`open`: another change of the user may
        come between (``open`` then stores nothing). A store that can hold off every other change overrides
        it to do all three as one step. ``take`` must not use this store (an override may hold its lock).
        """
        conversation = self.conversation(openid)
        given = push.answer if conversation.stage is Stage.BOT else None
        refused = take(push, given)
        if refused is None and given is not None and push.handoff is not None:
            self.open(push.handoff)
        return conversation, given, refused

    @abstractmethod
    def mark_noticed(self, openid: str, now: float, interval: float) -> bool:
        """Note a queue notice at ``now``: ``True`` only if the user is queued and had none in the last
        ``interval`` seconds (so of several workers asking at once, one sends it)."""

    @abstractmethod
    def active(self, limit: int = 1000) -> List[Conversation]:
        """The users queued or with an agent, the longest in their stage first; at most ``limit``."""

    def in_handoff(self, limit: int = 1000) -> List[Tuple[str, float]]:
        """``(openid, since)`` of the users :meth:`active` lists, in its order: who is in a hand-off and since
        when, without their conversations (a store that indexes them reads only the index; a user whose
        conversation has just ended may still be listed). The default takes them from :meth:`active`."""
        return [(conv.openid, conv.since) for conv in self.active(limit)]

    def conversations(self, openids: Sequence[str]) -> List[Conversation]:
        """Where each of ``openids`` is, in their order (with the bot where nothing is kept)."""
        return [self.conversation(openid) for openid in openids]

    def count_queued(self, limit: int = 1000) -> int:
        """How many of the users :meth:`active` lists are queued (no agent has them yet). The default counts
        them in :meth:`active`; a store that can tell a user's stage without reading their conversation whole
        overrides it."""
        return sum(1 for conv in self.active(limit) if conv.stage is Stage.QUEUED)

    @abstractmethod
    def records(self, since: float, until: Optional[float] = None) -> List[HandoffRecord]:
        """The records of the hand-offs requested from ``since`` to ``until`` (inclusive; ``None``: no end), in
        the order they were requested."""

    @abstractmethod
    def record(self, handoff_id: str) -> Optional[HandoffRecord]:
        """The record ``handoff_id``, or ``None`` when it is unknown or no longer kept."""

    @abstractmethod
    def recent(self, openid: str) -> List[str]:
        """The user's last messages (as :meth:`remember` got them), oldest first."""

    @abstractmethod
    def remember(self, openid: str, text: str, now: float) -> None:
        """Add a message to the user's last messages (only the last ``recent_size`` are kept)."""

    @abstractmethod
    def count_unanswered(self, openid: str, answered: bool, now: float) -> int:
        """The user's consecutive unanswered messages after this one: one more, or 0 when it was ``answered``."""


def check_recent_size(size: int) -> int:
    """``size`` if it is a number of messages to keep. :raises ValueError: it is below 1."""
    if size < 1:
        raise ValueError(f"recent_size must be at least 1 (the messages kept per user), not {size}")
    return size


K = TypeVar("K")
V = TypeVar("V")


def _same(value: Any) -> Any:
    return value


class _Expiring(Generic[K, V]):
    """A dict of at most ``limit`` entries, each with an expiry; the least recently written go first.

    ``encode`` turns a value into what is kept and ``decode`` back: conversations and records are kept as
    tuples of strings and numbers, which the garbage collector stops tracking — a worker keeping many
    thousands of them would otherwise have every full collection walk them all.
    """

    def __init__(self, limit: int, encode: Callable[[V], Any] = _same, decode: Callable[[Any], V] = _same):
        self.limit = limit
        self.encode, self.decode = encode, decode
        self.entries: "OrderedDict[K, Tuple[Any, float]]" = OrderedDict()

    def get(self, key: K, now: float) -> Optional[V]:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self.entries[key]
            return None
        return self.decode(entry[0])

    def put(self, key: K, value: V, expires_at: float) -> None:
        self.entries[key] = (self.encode(value), expires_at)
        self.entries.move_to_end(key)
        while len(self.entries) > self.limit:
            self.entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self.entries.pop(key, None)

    def live(self, now: float) -> List[V]:
        return [self.decode(kept) for kept, expires_at in self.entries.values() if expires_at > now]


_STAGES = {stage.value: stage for stage in Stage}
_ENDINGS = {ending.value: ending for ending in Ending}


def _conversation_row(conv: Conversation) -> Tuple[Any, ...]:
    return (conv.openid, conv.stage.value, conv.since, conv.agent, conv.reason, conv.handoff_id, conv.noticed_at)


def _conversation_of(row: Tuple[Any, ...]) -> Conversation:
    return Conversation(row[0], _STAGES[row[1]], *row[2:])


def _record_row(record: HandoffRecord) -> Tuple[Any, ...]:
    return (record.id, record.openid, record.reason, record.requested_at, record.agent, record.accepted_at,
            record.ended_at, None if record.outcome is None else record.outcome.value)


def _record_of(row: Tuple[Any, ...]) -> HandoffRecord:
    ended = row[7]
    return HandoffRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                         None if ended is None else _ENDINGS[ended])


class MemoryHandoffStore(HandoffStore):
    """A :class:`HandoffStore` in this process's memory, under one lock.

    At most ``max_users`` users' conversations (and as many users' last messages and counts) and
    ``max_records`` records are kept; past that the least recently changed are forgotten (a forgotten
    conversation is with the bot again). ``clock`` (unix time) decides expiry; ``now`` arguments are the
    caller's time for what they record.
    """

    def __init__(self, keep_records: float = KEEP_RECORDS, max_records: int = 100_000, max_users: int = 200_000,
                 recent_size: int = RECENT_SIZE, clock: Callable[[], float] = time.time):
        self.keep_records = keep_records
        self.recent_size = check_recent_size(recent_size)
        self._clock = clock
        self._lock = threading.Lock()
        self._conversations: _Expiring[str, Conversation] = _Expiring(max_users, _conversation_row,
                                                                       _conversation_of)
        self._records: _Expiring[str, HandoffRecord] = _Expiring(max_records, _record_row, _record_of)
        self._recent: _Expiring[str, Tuple[str, ...]] = _Expiring(max_users)
        self._unanswered: _Expiring[str, int] = _Expiring(max_users)

    def conversation(self, openid: str) -> Conversation:
        with self._lock:
            return self._conversations.get(openid, self._clock()) or Conversation(openid)

    def apply(self, openid: str, change: Change) -> Transition:
        with self._lock:
            now = self._clock()
            before = self._conversations.get(openid, now) or Conversation(openid)
            open_record = self._records.get(before.handoff_id, now) if before.handoff_id else None
            after, record = advance(before, open_record, change)
            if after != before:
                self._keep(after, now)
            if record is not None:
                self._records.put(record.id, record, record.requested_at + self.keep_records)
            return Transition(change, before, after, record)

    def open(self, transition: Transition) -> bool:
        with self._lock:
            kept = self._conversations.get(transition.after.openid, self._clock())
            if transition.record is None or kept is not None:
                return False   # not with the bot any more: another change came first
            self._keep_request(transition.after, transition.record)
            return True

    def claim_for(self, openid: str, push: PushClaim, take: Take[R]) -> Claimed[R]:
        """As :meth:`HandoffStore.claim_for`, under one hold of this store's lock: no other change of the user
        comes between the read, the claim and the hand-off (``take`` takes its replay store's lock inside this
        one, never the other way round)."""
        with self._lock:
            kept = self._conversations.get(openid, self._clock())   # None: the user is with the bot
            given = push.answer if kept is None else None
            refused = take(push, given)
            planned = push.handoff
            if refused is None and given is not None and planned is not None and planned.record is not None:
                self._keep_request(planned.after, planned.record)
        return (Conversation(openid) if kept is None else kept), given, refused

    def _keep_request(self, after: Conversation, record: HandoffRecord) -> None:
        """Store a request's outcome (``after``, queued) and its ``record`` for a user found with the bot, under
        the lock."""
        self._keep(after, self._clock())
        self._records.put(record.id, record, record.requested_at + self.keep_records)

    def _keep(self, conv: Conversation, now: float) -> None:
        if conv.stage is Stage.BOT:
            self._conversations.pop(conv.openid)
        else:
            self._conversations.put(conv.openid, conv, now + KEEP_USER)

    def mark_noticed(self, openid: str, now: float, interval: float) -> bool:
        with self._lock:
            conv = self._conversations.get(openid, self._clock())
            if conv is None or conv.stage is not Stage.QUEUED or now - conv.noticed_at < interval:
                return False
            self._keep(replace(conv, noticed_at=now), self._clock())
            return True

    def active(self, limit: int = 1000) -> List[Conversation]:
        with self._lock:
            found = self._conversations.live(self._clock())
        return sorted(found, key=lambda conv: conv.since)[:limit]

    def records(self, since: float, until: Optional[float] = None) -> List[HandoffRecord]:
        with self._lock:
            kept = self._records.live(self._clock())
        chosen = [r for r in kept if r.requested_at >= since and (until is None or r.requested_at <= until)]
        return sorted(chosen, key=lambda record: (record.requested_at, record.id))

    def record(self, handoff_id: str) -> Optional[HandoffRecord]:
        with self._lock:
            return self._records.get(handoff_id, self._clock())

    def recent(self, openid: str) -> List[str]:
        with self._lock:
            return list(self._recent.get(openid, self._clock()) or ())

    def remember(self, openid: str, text: str, now: float) -> None:
        with self._lock:
            kept = self._recent.get(openid, now) or ()
            self._recent.put(openid, (*kept, text)[-self.recent_size:], now + KEEP_USER)

    def count_unanswered(self, openid: str, answered: bool, now: float) -> int:
        with self._lock:
            if answered:
                self._unanswered.pop(openid)
                return 0
            count = (self._unanswered.get(openid, now) or 0) + 1
            self._unanswered.put(openid, count, now + KEEP_USER)
            return count
