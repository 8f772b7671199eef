"""The Redis implementation of the push store, shared by every worker and host.

The window's store is in :mod:`.redis_window`, the token's in :mod:`.redis_tokens`.

Every key starts with ``prefix`` (several accounts can share one Redis) and
has a time to live. Changes that must not interleave run as Lua scripts.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..lifecycle import Conversation
from .base import DEFAULT_LEASE, Claim, Outcome, PushClaim, ReplayStore
from .redis_handoffs import OPEN_HANDOFF_LUA, RedisHandoffStore, decode_conversation
from .redis_window import WINDOW_LUA, RedisWindowStore

__all__ = ["RedisReplayStore", "RedisWindowStore", "scope_of", "RESTART_SETTLE"]

log = logging.getLogger(__name__)

_DONE = b"D"

#: Seconds a claim waits, right after Redis was found empty (restarted or flushed) since this process last
#: used it, before its handler runs. Workers that answered pushes from their own memory while Redis was
#: away write those replies back within that time (they notice Redis within 0.2 s); a retry claimed meanwhile
#: on another worker then finds its push answered instead of running it again.
RESTART_SETTLE = 1.0


def scope_of(prefix: str, appid: str) -> str:
    """The key prefix of one account's pushes and window: ``{prefix}{appid}:`` with the AppID as a hash tag.

    Every script touches keys of one account only, so they share a Redis Cluster slot.
    """
    return f"{prefix}{{{appid}}}:"


# -- replies to WeChat's retries ----------------------------------------------------------------------------

# A push's key holds "P<lease end, ms of Redis's clock>|<owner>" while it is handled, "D<reply>" once answered.
# Leases are judged by Redis's clock, so hosts whose clocks differ agree on them.
# Redis's clock is read once, when first needed: a claim that stores a known answer needs it only when Redis
# was found empty or the push is claimed already.
_NOW_MS = """
if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 5: to write after TIME
local now_ms
local function now()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end
local function lease_of(ms, owner) return 'P' .. string.format('%.0f', now() + ms) .. '|' .. owner end
local function lease_end(value) return tonumber(string.sub(value, 2, string.find(value, '|', 1, true) - 1)) end
local function owner_of(value) return string.sub(value, string.find(value, '|', 1, true) + 1) end
"""
# KEYS: the push, the sender's window, the query binding, the marker of when Redis was found empty, the
# sender's conversation, then the record, records' index and active users' index of a hand-off.
# ARGV: 1 owner, 2 lease ms, 3 ttl ms, 4 the body digest ("" = no binding), 5 the binding's ttl ms, 6 an
# answer is given ("1"/"0"), 7 the answer, 8 the marker as this process last saw it ("": never), 9 the settle
# ms (RESTART_SETTLE), 10 renew the marker ("1"/"0"), 11 record the grant ("1"/"0"), 12-16 the grant's
# arguments (see RedisWindowStore.grant_args), 17 read the conversation ("1"/"0"), 18 the answer opens a
# hand-off ("1"/"0"), 19 on: open_handoff's arguments (RedisHandoffStore.open_args).
# A tail that would be unused is left out: keys and arguments end where the claim's last use of them does
# (an absent flag reads as "0"); the window's key is the push's own when no grant is recorded.
# Answers {"C"} conflict, {"D", reply}, {"P"} pending, or, claimed, {kind, first, settle ms left, granted,
# marker, conversation}: kind "A" answered (the answer stored as the reply, with its hand-off) or "N" pending
# on the caller; first 1 unless a lapsed lease was taken over; the conversation's HGETALL ({} with the bot).
# An answer is stored only for a user with the bot (it was worked out for one). When the marker changed since
# this process last saw it, Redis was found empty meanwhile (restarted or flushed): for a moment after that no
# answer is stored and no grant recorded, and the caller waits the settle time, then looks again (a reply may
# have been written back meanwhile).
_ACQUIRE = WINDOW_LUA + OPEN_HANDOFF_LUA + _NOW_MS + """
if ARGV[4] ~= '' and not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5])
    and redis.call('GET', KEYS[3]) ~= ARGV[4] then  -- bound already (a retry, rarely): to this body?
  return {'C'}
end
local marker = redis.call('GET', KEYS[4])
if not marker then
  marker = string.format('%.0f', now())
  redis.call('SET', KEYS[4], marker, 'PX', 604800000)  -- a week, renewed hourly
elseif ARGV[10] == '1' then
  redis.call('PEXPIRE', KEYS[4], 604800000)
end
local settle = 0
if ARGV[8] ~= '' and ARGV[8] ~= marker then settle = math.max(0, tonumber(marker) + tonumber(ARGV[9]) - now()) end
local conv = {}
if ARGV[17] == '1' then conv = redis.call('HGETALL', KEYS[5]) end
local kind, stored = 'A', 'D' .. ARGV[7]
if ARGV[6] ~= '1' or settle > 0 or #conv > 0 then kind, stored = 'N', lease_of(tonumber(ARGV[2]), ARGV[1]) end
local first = 1
if not redis.call('SET', KEYS[1], stored, 'NX', 'PX', ARGV[3]) then
  local value = redis.call('GET', KEYS[1])
  if string.sub(value, 1, 1) == 'D' then return {'D', string.sub(value, 2)} end
  if lease_end(value) > now() then return {'P'} end
  redis.call('SET', KEYS[1], stored, 'KEEPTTL')
  first = 0
end
if kind == 'A' and ARGV[18] == '1' then open_handoff({KEYS[5], KEYS[6], KEYS[7], KEYS[8]}, 19) end
local granted = 0
if first == 1 and ARGV[11] == '1' and settle == 0 then
  add_grant(KEYS[2], tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14], tonumber(ARGV[15]), tonumber(ARGV[16]))
  granted = 1
end
return {kind, first, settle, granted, marker, conv}
"""
_RENEW = _NOW_MS + """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) == 'P' and owner_of(value) == ARGV[1] then
  redis.call('SET', KEYS[1], lease_of(tonumber(ARGV[2]), ARGV[1]), 'KEEPTTL')
  return 1
end
return 0
"""
_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) == 'P' and string.sub(value, string.find(value, '|', 1, true) + 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_PEEK = _NOW_MS + """
local value = redis.call('GET', KEYS[1])
if not value then return nil end
if string.sub(value, 1, 1) == 'D' then return {'D', string.sub(value, 2)} end
if lease_end(value) > now() then return {'P'} end
return {'X'}
"""
# A reply answered from a worker's memory while Redis was away: kept unless the push has a reply already.
_WRITE_BACK = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, 1) == 'D' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class RedisReplayStore(ReplayStore):
    """A :class:`ReplayStore` on Redis, so only one worker anywhere runs a push.

    A claim is one script that also checks the push's query binding, records
    its sender's send rights in ``window`` (a :class:`RedisWindowStore` on the
    same Redis and prefix), reads the sender's conversation in ``handoffs`` (a
    :class:`~.redis_handoffs.RedisHandoffStore`, likewise) and stores a known
    answer with the hand-off it opens. Claims are leases owned by this process: a thread
    renews them while their handlers run, so a worker that dies holds its pushes
    no longer than a lease. Waiting polls every ``poll`` seconds (a retry waits
    at most a few seconds, rarely). ``prefix``: see :func:`scope_of`.
    """

    def __init__(self, redis: Any, prefix: str = "kf:", poll: float = 0.02,
                 window: Optional[RedisWindowStore] = None, handoffs: Optional[RedisHandoffStore] = None):
        self.redis = redis
        self.prefix = prefix
        self.poll = poll
        self.window: Optional[RedisWindowStore] = window
        self.handoffs = handoffs
        from redis.exceptions import NoScriptError
        self._no_script = NoScriptError
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._peek = redis.register_script(_PEEK)
        self._write_back = redis.register_script(_WRITE_BACK)
        self._leases = _LeaseKeeper(self)
        self._marker: bytes = b""   # the found-empty marker as this process last saw it (see _ACQUIRE)
        self._marker_renewed = 0.0

    def key(self, key: str) -> str:
        return f"{self.prefix}push:{key}"

    @property
    def owner(self) -> str:
        """Who this process is in the leases it holds (host, pid and a random part)."""
        return self._leases.current_owner()

    def acquire(self, push: PushClaim) -> Claim:
        keys, args = self._claim_call(push)
        found = self._run_claim(keys, args)
        kind = found[0]
        if kind == b"D":
            return Claim(Outcome.DONE, found[1].decode("utf-8"))
        if kind in (b"C", b"P"):
            return Claim(Outcome.CONFLICT if kind == b"C" else Outcome.PENDING)
        self._marker = found[4]
        granted = found[1] == 0 or found[3] == 1   # a takeover's push had its grant recorded by its first claim
        conversation = None
        if push.openid is not None and self.handoffs is not None:
            fields = found[5]   # the hash as a flat list; empty (nearly always): the user is with the bot
            conversation = (decode_conversation(push.openid, dict(zip(fields[::2], fields[1::2]))) if fields
                            else Conversation(push.openid))
        if kind == b"A":
            return Claim(Outcome.CLAIMED, granted=granted, answered=True, conversation=conversation)
        self._leases.hold(push.key, push.lease, push.ttl)
        if found[2] > 0:
            written_back = self._settle(push.key, found[2] / 1000)
            if written_back is not None:
                return Claim(Outcome.DONE, written_back)
        return Claim(Outcome.CLAIMED, granted=granted, conversation=conversation)

    def _run_claim(self, keys: List[str], args: List[Any]) -> Any:
        """The claim script's answer: an EVALSHA straight through the client (redis-py's Script object wraps
        each call in work of its own), or through the Script where Redis does not know the script (it loads it)."""
        sha = getattr(self._acquire, "sha", None)
        if sha is not None:
            try:
                return self.redis.evalsha(sha, len(keys), *keys, *args)
            except self._no_script:
                pass
        return self._acquire(keys=keys, args=args)

    def _claim_call(self, push: PushClaim) -> Tuple[List[str], List[Any]]:
        """The claim script's keys and arguments (see _ACQUIRE), without an unused tail."""
        push_key = self.key(push.key)
        query, digest = push.binding if push.binding is not None else ("", "")
        keys = [push_key, push_key, f"{self.prefix}query:{query}", f"{self.prefix}found-empty"]
        args: List[Any] = [self.owner, _ms(push.lease), _ms(push.ttl), digest, _ms(push.binding_ttl),
                           "0" if push.answer is None else "1", push.answer or "", self._marker,
                           _ms(RESTART_SETTLE), self._renew_marker()]
        if push.grant is not None and self.window is not None:
            keys[1] = self.window.key(push.grant[0])
            args += ["1", *self.window.grant_args(push.grant[1], push.now)]
        if push.openid is None or self.handoffs is None:
            return keys, args
        if len(args) == 10:
            args += _NO_GRANT
        if push.handoff is None or push.answer is None:
            return [*keys, self.handoffs.conv_key(push.openid)], [*args, "1"]
        handoff_keys, handoff_args = self.handoffs.open_args(push.handoff)
        return [*keys, *handoff_keys], [*args, "1", "1", *handoff_args]

    def _renew_marker(self) -> str:
        """"1" once an hour: the claim then renews the found-empty marker's week-long TTL."""
        now = time.monotonic()
        if now - self._marker_renewed < 3600:
            return "0"
        self._marker_renewed = now
        return "1"

    def _settle(self, key: str, seconds: float) -> Optional[str]:
        """Redis was found empty a moment ago: wait for other workers' write-back, then look again. The reply
        written back over this claim meanwhile, or ``None`` (the push is still this process's to handle)."""
        time.sleep(seconds)
        reply = self.wait(key, 0)
        if reply is not None:
            self._leases.drop(key)
        return reply

    def complete(self, key: str, reply: str, ttl: float) -> None:
        self._leases.drop(key)
        self.redis.set(self.key(key), _DONE + reply.encode("utf-8"), px=_ms(ttl))

    def write_back(self, replies: Iterable[Tuple[str, str, float]]) -> None:
        """Store replies given while Redis was away (or lost by a restart), except where a push has one.

        ``replies``: ``(key, reply, ttl)``; sent in pipelines of a few hundred.
        """
        batch = iter(replies)
        while True:
            chunk = list(itertools.islice(batch, 500))
            if not chunk:
                return
            self._run_each(self._write_back, [([self.key(key)], [_DONE + reply.encode("utf-8"), _ms(ttl)])
                                              for key, reply, ttl in chunk])

    def release(self, key: str) -> None:
        self._leases.drop(key)
        self._release(keys=[self.key(key)], args=[self.owner])

    def renew(self, keys: Iterable[str], lease: float) -> None:
        """Extend the leases this process holds on ``keys`` (one round trip)."""
        self._run_each(self._renew, [([self.key(key)], [self.owner, _ms(lease)]) for key in keys])

    def _run_each(self, script: Any, calls: List[Tuple[List[str], List[Any]]]) -> None:
        """Run ``script`` once per ``(keys, args)``: in one pipeline, or one by one on a Redis Cluster.

        redis-py's cluster pipelines refuse scripts (EVALSHA "is blocked when running redis in cluster mode").
        """
        from redis.cluster import RedisCluster
        if isinstance(self.redis, RedisCluster):
            for keys, args in calls:
                script(keys=keys, args=args)
            return
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        pipe.execute()

    def wait(self, key: str, timeout: float) -> Optional[str]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self._peek(keys=[self.key(key)])
            if answer is None or answer[0] == b"X":
                return None
            if answer[0] == b"D":
                return answer[1].decode("utf-8")
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))


class _LeaseKeeper:
    """Renews the leases of the pushes this process is handling, from a thread of its own.

    A push answered within a third of its lease (nearly all) is never renewed.
    The thread runs while claims are held (it starts with a claim, again after a
    fork, and ends when none is left) and renews what is due every so often; a
    failed renewal is retried at the next round.
    """

    def __init__(self, store: RedisReplayStore):
        self._store = store
        self._held: Dict[str, Tuple[float, float, float]] = {}   # key → (lease, last taken or renewed, key's end)
        self._lock = threading.Lock()
        self._pid = 0
        self._running = False
        self.owner = ""
        self._ident: Tuple[int, str] = (0, "")   # (pid, owner), set together for current_owner's unlocked read

    def current_owner(self) -> str:
        pid, owner = self._ident   # one read: never a pid with another process's owner
        if pid == os.getpid():
            return owner
        with self._lock:
            self._check_pid()
            return self.owner

    def hold(self, key: str, lease: float, ttl: float) -> None:
        with self._lock:
            self._check_pid()
            now = time.monotonic()
            self._held[key] = (lease, now, now + ttl)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="kf-leases", daemon=True).start()

    def drop(self, key: str) -> None:
        with self._lock:
            self._held.pop(key, None)

    def _check_pid(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{self._pid}:{secrets.token_hex(4)}"
        self._ident = (self._pid, self.owner)
        self._held.clear()      # a forked child holds none of its parent's claims,
        self._running = False   # nor runs its thread

    def _due(self, now: float) -> Optional[Dict[float, List[str]]]:
        """The keys to renew now, by lease; ``None`` (and the thread stops) when nothing is held."""
        due: Dict[float, List[str]] = {}
        with self._lock:
            if not self._held or self._pid != os.getpid():
                self._running = False
                return None
            for key, (lease, since, until) in list(self._held.items()):
                if now >= until:   # the key itself is gone from Redis: a handler that never ended
                    del self._held[key]
                elif now - since >= lease / 3:
                    due.setdefault(lease, []).append(key)
                    self._held[key] = (lease, now, until)
        return due

    def _tick(self) -> float:
        with self._lock:
            return min((held[0] for held in self._held.values()), default=DEFAULT_LEASE) / 6

    def _run(self) -> None:
        while True:
            time.sleep(self._tick())
            due = self._due(time.monotonic())
            if due is None:
                return
            for lease, keys in due.items():
                try:
                    self._store.renew(keys, lease)
                except Exception as exc:  # Redis away: the failover answers pushes; try again next round
                    log.debug("could not renew %d claim(s): %s", len(keys), exc)


#: The claim's arguments 11-16 when it records no grant but reads the conversation (arguments 17 on).
_NO_GRANT = ("0", "", "", "", "", "")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
