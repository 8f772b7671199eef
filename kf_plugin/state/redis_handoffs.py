"""The hand-off store on Redis, shared by every worker and host.

Keys (``scope``: :func:`~kf_plugin.state.redis.scope_of`, so every key of one account shares a Redis Cluster
slot; times are unix seconds, written with ``repr()`` so they read back exactly):

- ``{scope}conv:{openid}``: a hash — ``stage`` (``queued`` | ``with_agent``), ``since``, ``agent``, ``reason``,
  ``handoff`` (the open record's id), ``noticed``. Absent means the user is with the bot: going back to the
  bot deletes it. Kept 48 hours after each write. The push claim reads it too (:func:`decode_conversation`).
- ``{scope}handoff:{id}``: a record as JSON (:meth:`~kf_plugin.lifecycle.HandoffRecord.to_dict`), kept
  ``keep_records`` seconds after its request.
- ``{scope}handoffs``: a sorted set of record ids by request time; older than ``keep_records`` trimmed on writes.
- ``{scope}active``: a sorted set of the users not with the bot, by ``since``.
- ``{scope}recent:{openid}``: a list of the user's last messages, newest first; kept 48 hours.
- ``{scope}unanswered:{openid}``: a counter; kept 48 hours, deleted when a message is answered.

A change is rare (the common push never makes one), so it is an optimistic transaction: WATCH the user's
conversation, read it and its record, :func:`~kf_plugin.lifecycle.advance` in Python, MULTI/EXEC the writes,
and start again if another worker changed the conversation meanwhile.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

from ..lifecycle import Change, Conversation, HandoffRecord, Stage, Transition, advance
from .handoffs import KEEP_RECORDS, KEEP_USER, RECENT_SIZE, HandoffStore, check_recent_size

__all__ = ["RedisHandoffStore", "decode_conversation", "encode_conversation", "OPEN_HANDOFF_LUA"]

T = TypeVar("T")
# What a transaction's body answers: its result, and the writes to make (None: nothing to write).
Body = Callable[[Any], Tuple[T, Optional[Callable[[Any], None]]]]
_MGET_CHUNK = 1000
#: A record as stored: ``json.dumps(..., ensure_ascii=False)`` without making an encoder per call.
_record_json = json.JSONEncoder(ensure_ascii=False).encode


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def decode_conversation(openid: str, fields: Mapping[Any, Any]) -> Conversation:
    """The conversation a ``conv`` hash holds (its ``HGETALL``: bytes or text); with the bot when it is empty.

    :raises ValueError: the hash holds an unknown stage or a time that is not a number.
    """
    if not fields:
        return Conversation(openid)
    values = {_text(name): _text(value) for name, value in fields.items()}
    try:
        stage = Stage(values.get("stage"))
        since, noticed = float(values.get("since", 0)), float(values.get("noticed", 0))
    except ValueError:
        raise ValueError(f"the conversation of {openid!r} in Redis is not one kf_plugin wrote: {values}") from None
    return Conversation(openid, stage, since, values.get("agent"), values.get("reason"), values.get("handoff"),
                        noticed)


def encode_conversation(conv: Conversation) -> Dict[str, str]:
    """The ``conv`` hash of a conversation not with the bot (fields that are ``None`` are left out)."""
    fields = {"stage": conv.stage.value, "since": repr(conv.since), "noticed": repr(conv.noticed_at)}
    for name, value in (("agent", conv.agent), ("reason", conv.reason), ("handoff", conv.handoff_id)):
        if value is not None:
            fields[name] = value
    return fields


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# The writes of a request that takes a user from the bot to the queue, for a script that has found the user's
# conversation absent (the push claim: see state/redis.py), as _write makes them in a transaction — except
# that the two indexes are trimmed and their expiry renewed only when asked (once a minute: see open_args),
# as this runs for every hand-off on the push's path.
# keys: the conversation, the record, the records' index, the active users' index. args (from ARGV[first]
# on, see RedisHandoffStore.open_args): openid, record id, requested at, the record as JSON, the record's ms,
# the user's ms, the records' trim bound ("" = leave the indexes be), the records' ms, then the
# conversation's fields and values.
OPEN_HANDOFF_LUA = """
local function open_handoff(keys, first)
  local a = function(i) return ARGV[first + i] end
  redis.call('HSET', keys[1], unpack(ARGV, first + 8, #ARGV))
  redis.call('PEXPIRE', keys[1], a(5))
  redis.call('ZADD', keys[4], a(2), a(0))
  redis.call('SET', keys[2], a(3), 'PX', a(4))
  redis.call('ZADD', keys[3], a(2), a(1))
  if a(6) ~= '' then
    redis.call('PEXPIRE', keys[4], a(5))
    redis.call('ZREMRANGEBYSCORE', keys[3], '-inf', a(6))
    redis.call('PEXPIRE', keys[3], a(7))
  end
end
"""
#: Seconds between two trims of the indexes by hand-offs made on the push's path.
_MAINTAIN_EVERY = 60.0


class RedisHandoffStore(HandoffStore):
    """A :class:`~kf_plugin.state.handoffs.HandoffStore` on Redis (see the module for its keys).

    ``prefix``: the account's scope (:func:`~kf_plugin.state.redis.scope_of`). ``keep_records``: seconds a
    record is kept after its request. ``recent_size``: messages kept per user. ``clock``: unix time, for the
    records' expiry. ``attempts``: how often a change is tried while other workers keep changing the same
    user's conversation.
    """

    def __init__(self, redis: Any, prefix: str = "kf:", keep_records: float = KEEP_RECORDS,
                 recent_size: int = RECENT_SIZE, clock: Callable[[], float] = time.time, attempts: int = 10):
        self.redis = redis
        self.prefix = prefix
        self.keep_records = keep_records
        self.recent_size = check_recent_size(recent_size)
        self.clock = clock
        self.attempts = attempts
        self.records_key = f"{prefix}handoffs"
        self.active_key = f"{prefix}active"
        self._maintained_at = float("-inf")   # when a push's hand-off last trimmed the indexes (open_args)

    def conv_key(self, openid: str) -> str:
        return f"{self.prefix}conv:{openid}"

    def record_key(self, handoff_id: str) -> str:
        return f"{self.prefix}handoff:{handoff_id}"

    def recent_key(self, openid: str) -> str:
        return f"{self.prefix}recent:{openid}"

    def unanswered_key(self, openid: str) -> str:
        return f"{self.prefix}unanswered:{openid}"

    def open_args(self, transition: Transition) -> Tuple[List[str], List[Any]]:
        """The keys and arguments of ``open_handoff`` (:data:`OPEN_HANDOFF_LUA`) that store ``transition``, a
        request from the bot that created its record."""
        conv, record = transition.after, transition.record
        assert record is not None and conv.stage is Stage.QUEUED
        now = self.clock()
        keys = [self.conv_key(conv.openid), self.record_key(record.id), self.records_key, self.active_key]
        fields = [item for pair in encode_conversation(conv).items() for item in pair]
        trim = ""
        if now - self._maintained_at >= _MAINTAIN_EVERY:
            self._maintained_at, trim = now, f"({now - self.keep_records!r}"
        return keys, [conv.openid, record.id, repr(record.requested_at),
                      _record_json(record.to_dict()),
                      _ms(record.requested_at + self.keep_records - now), _ms(KEEP_USER), trim,
                      _ms(self.keep_records), *fields]

    def conversation(self, openid: str) -> Conversation:
        """:raises ValueError: the stored conversation is not one this store wrote."""
        return decode_conversation(openid, self.redis.hgetall(self.conv_key(openid)))

    # -- changes ------------------------------------------------------------------------------------------

    def apply(self, openid: str, change: Change) -> Transition:
        """:raises redis.exceptions.WatchError: other workers changed the user's conversation ``attempts``
        times running while this change was being made."""
        return self._transaction(self.conv_key(openid), lambda pipe: self._advance(pipe, openid, change))

    def _advance(self, pipe: Any, openid: str, change: Change) -> Tuple[Transition, Optional[Callable[[Any], None]]]:
        before = decode_conversation(openid, pipe.hgetall(self.conv_key(openid)))
        raw = pipe.get(self.record_key(before.handoff_id)) if before.handoff_id else None
        open_record = HandoffRecord.from_dict(json.loads(raw)) if raw else None
        after, record = advance(before, open_record, change)
        transition = Transition(change, before, after, record)
        if after == before and record is None:
            return transition, None
        return transition, lambda tx: self._write(tx, after, record)

    def _write(self, tx: Any, conv: Conversation, record: Optional[HandoffRecord]) -> None:
        key = self.conv_key(conv.openid)
        tx.delete(key)  # then the fields now None are gone too
        if conv.stage is Stage.BOT:
            tx.zrem(self.active_key, conv.openid)
        else:
            tx.hset(key, mapping=encode_conversation(conv))
            tx.pexpire(key, _ms(KEEP_USER))
            tx.zadd(self.active_key, {conv.openid: conv.since})
            tx.pexpire(self.active_key, _ms(KEEP_USER))
        if record is not None:
            now = self.clock()
            tx.set(self.record_key(record.id), _record_json(record.to_dict()),
                   px=_ms(record.requested_at + self.keep_records - now))
            tx.zadd(self.records_key, {record.id: record.requested_at})
            tx.zremrangebyscore(self.records_key, "-inf", f"({now - self.keep_records!r}")
            tx.pexpire(self.records_key, _ms(self.keep_records))

    def mark_noticed(self, openid: str, now: float, interval: float) -> bool:
        """:raises redis.exceptions.WatchError: as :meth:`apply`."""
        key = self.conv_key(openid)

        def body(pipe: Any) -> Tuple[bool, Optional[Callable[[Any], None]]]:
            stage, noticed = pipe.hmget(key, "stage", "noticed")
            if stage is None or _text(stage) != Stage.QUEUED.value or now - float(noticed or 0) < interval:
                return False, None
            return True, note

        def note(tx: Any) -> None:
            tx.hset(key, "noticed", repr(now))
            tx.pexpire(key, _ms(KEEP_USER))
            tx.pexpire(self.active_key, _ms(KEEP_USER))   # the index outlives every conversation in it
        return self._transaction(key, body)

    def _transaction(self, key: str, body: Body[T]) -> T:
        """``body(pipe)`` reads with ``key`` watched; its writes then run in MULTI/EXEC, or all again when
        ``key`` changed meanwhile (at most ``attempts`` times)."""
        from redis.exceptions import WatchError
        for _ in range(self.attempts):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    result, write = body(pipe)
                    if write is None:
                        return result
                    pipe.multi()
                    write(pipe)
                    pipe.execute()
                    return result
                except WatchError:
                    continue
        raise WatchError(f"{key} changed under each of {self.attempts} attempts to change it")

    # -- reading ------------------------------------------------------------------------------------------

    def active(self, limit: int = 1000) -> List[Conversation]:
        """:raises ValueError: a stored conversation is not one this store wrote."""
        found = self.conversations([openid for openid, _ in self.in_handoff(limit)])
        return [conv for conv in found if conv.stage is not Stage.BOT]

    def in_handoff(self, limit: int = 1000) -> List[Tuple[str, float]]:
        """The index of active users alone (one read); ``since`` as the index holds it."""
        if limit <= 0:
            return []
        return [(_text(openid), float(since))
                for openid, since in self.redis.zrange(self.active_key, 0, limit - 1, withscores=True)]

    def conversations(self, openids: Sequence[str]) -> List[Conversation]:
        """One pipeline; users the index holds whose conversation expired are dropped from it.

        :raises ValueError: a stored conversation is not one this store wrote."""
        if not openids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for openid in openids:
            pipe.hgetall(self.conv_key(openid))
        found = [decode_conversation(openid, fields) for openid, fields in zip(openids, pipe.execute())]
        expired = [conv.openid for conv in found if conv.stage is Stage.BOT]
        if expired:
            self._forget_expired(expired)
        return found

    def count_queued(self, limit: int = 1000) -> int:
        """The index, then one pipeline of an ``HGET`` of each listed user's stage: no conversation is read whole
        nor decoded. Users the index holds whose conversation expired count for nothing, and are dropped from
        it (as :meth:`conversations` drops them)."""
        openids = [openid for openid, _ in self.in_handoff(limit)]
        if not openids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for openid in openids:
            pipe.hget(self.conv_key(openid), "stage")
        stages = pipe.execute()
        expired = [openid for openid, stage in zip(openids, stages) if stage is None]
        if expired:
            self._forget_expired(expired)
        return sum(1 for stage in stages if stage is not None and _text(stage) == Stage.QUEUED.value)

    def _forget_expired(self, openids: List[str]) -> None:
        """Drop from the index users whose conversation expired (no change took them back to the bot) — unless
        one of them came back meanwhile: then they are left for the next look."""
        from redis.exceptions import WatchError
        keys = [self.conv_key(openid) for openid in openids]
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(*keys)
                if pipe.exists(*keys):
                    return
                pipe.multi()
                pipe.zrem(self.active_key, *openids)
                pipe.execute()
            except WatchError:
                return

    def records(self, since: float, until: Optional[float] = None) -> List[HandoffRecord]:
        """:raises ValueError: a stored record is not one this store wrote."""
        ids = [_text(i) for i in self.redis.zrangebyscore(self.records_key, repr(since),
                                                          "+inf" if until is None else repr(until))]
        found: List[HandoffRecord] = []
        for start in range(0, len(ids), _MGET_CHUNK):
            raws = self.redis.mget([self.record_key(i) for i in ids[start:start + _MGET_CHUNK]])
            found += [HandoffRecord.from_dict(json.loads(raw)) for raw in raws if raw is not None]
        return found

    def record(self, handoff_id: str) -> Optional[HandoffRecord]:
        """:raises ValueError: the stored record is not one this store wrote."""
        raw = self.redis.get(self.record_key(handoff_id))
        return HandoffRecord.from_dict(json.loads(raw)) if raw is not None else None

    # -- around a hand-off --------------------------------------------------------------------------------

    def recent(self, openid: str) -> List[str]:
        return [_text(text) for text in reversed(self.redis.lrange(self.recent_key(openid), 0, -1))]

    def remember(self, openid: str, text: str, now: float) -> None:
        key = self.recent_key(openid)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(key, text)
        pipe.ltrim(key, 0, self.recent_size - 1)
        pipe.pexpire(key, _ms(KEEP_USER))
        pipe.execute()

    def count_unanswered(self, openid: str, answered: bool, now: float) -> int:
        key = self.unanswered_key(openid)
        if answered:
            self.redis.delete(key)
            return 0
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.pexpire(key, _ms(KEEP_USER))
        count, _ = pipe.execute()
        return int(count)
