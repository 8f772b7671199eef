"""Redis implementations of the push and window stores, shared by every worker and host.

The token's store is in :mod:`.redis_tokens`.

Every key starts with ``prefix`` (several accounts can share one Redis) and
has a time to live. Changes that must not interleave run as Lua scripts.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .base import (
    DEFAULT_LEASE,
    MAX_GRANTS_PER_USER,
    Claim,
    Grant,
    Outcome,
    PushClaim,
    ReplayStore,
    WindowRecord,
    WindowStore,
)

__all__ = ["RedisReplayStore", "RedisWindowStore", "scope_of"]

log = logging.getLogger(__name__)

_DONE = b"D"


def scope_of(prefix: str, appid: str) -> str:
    """The key prefix of one account's pushes and window: ``{prefix}{appid}:`` with the AppID as a hash tag.

    Every script touches keys of one account only, so they share a Redis Cluster slot.
    """
    return f"{prefix}{{{appid}}}:"


# -- the 48-hour window -------------------------------------------------------------------------------------

# A user's grants: a JSON list of [action, count (-1: no limit), "expires_at", used]. The time travels
# as a string: cjson writes numbers with 14 significant digits, which would round it.
# Every change drops expired grants, then keeps the key until its last grant ends
# (or `remember` seconds for a user with none, so a refusal is remembered).
_WINDOW = """
local function load_grants(key, now)
  local grants = {}
  local raw = redis.call('GET', key)
  if raw then
    for _, g in ipairs(cjson.decode(raw)) do
      if tonumber(g[3]) > now then table.insert(grants, g) end
    end
  end
  return grants
end
local function save_grants(key, grants, now, remember)
  local last = now + remember
  for _, g in ipairs(grants) do if tonumber(g[3]) > last then last = tonumber(g[3]) end end
  if #grants == 0 then redis.call('SET', key, '[]')
  else redis.call('SET', key, cjson.encode(grants)) end
  redis.call('PEXPIRE', key, math.ceil((last - now) * 1000))
end
local function add_grant(key, now, remember, encoded, most)
  local grants = load_grants(key, now)
  table.insert(grants, cjson.decode(encoded))
  while #grants > most do  -- drop the grant that expires first
    local first = 1
    for i, g in ipairs(grants) do if tonumber(g[3]) < tonumber(grants[first][3]) then first = i end end
    table.remove(grants, first)
  end
  save_grants(key, grants, now, remember)
end
"""
_ADD = _WINDOW + """
add_grant(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))
"""
_CONSUME = _WINDOW + """
local now = tonumber(ARGV[1])
local grants = load_grants(KEYS[1], now)
local best = nil
for i, g in ipairs(grants) do
  if (g[2] < 0 or g[4] < g[2]) and (best == nil or tonumber(g[3]) < tonumber(grants[best][3])) then best = i end
end
if best == nil then return nil end
grants[best][4] = grants[best][4] + 1
local used = cjson.encode(grants[best])
save_grants(KEYS[1], grants, now, tonumber(ARGV[2]))
return used
"""
_REVOKE = _WINDOW + """
local now = tonumber(ARGV[1])
local kept = {}
if ARGV[3] == '1' then
  for _, g in ipairs(load_grants(KEYS[1], now)) do
    if g[2] >= 0 then g[4] = g[2]; table.insert(kept, g) end
  end
end
save_grants(KEYS[1], kept, now, tonumber(ARGV[2]))
"""


class RedisWindowStore(WindowStore):
    """A :class:`WindowStore` on Redis; every change is one Lua script, so concurrent sends never overspend.

    ``prefix``: see :func:`scope_of`. ``remember``: seconds a user whose rights are all gone stays known.
    """

    def __init__(self, redis: Any, prefix: str = "kf:", remember: float = 48 * 3600.0):
        self.redis = redis
        self.prefix = prefix
        self.remember = remember
        self._add = redis.register_script(_ADD)
        self._consume = redis.register_script(_CONSUME)
        self._revoke = redis.register_script(_REVOKE)

    def key(self, openid: str) -> str:
        return f"{self.prefix}window:{openid}"

    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        raw = self.redis.get(self.key(openid))
        if raw is None:
            return None
        return WindowRecord(tuple(g for g in map(_grant, json.loads(raw)) if g.expires_at > now))

    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        self._add(keys=[self.key(openid)], args=self.grant_args(grant, now))

    def grant_args(self, grant: Grant, now: float) -> List[Any]:
        """The script arguments that add ``grant``: now, remember, the encoded grant, the most grants kept."""
        encoded = json.dumps([grant.action, -1 if grant.count is None else grant.count, repr(grant.expires_at),
                              grant.used])
        return [repr(now), self.remember, encoded, MAX_GRANTS_PER_USER]

    def consume(self, openid: str, now: float) -> Optional[Grant]:
        used = self._consume(keys=[self.key(openid)], args=[now, self.remember])
        return _grant(json.loads(used)) if used is not None else None

    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        self._revoke(keys=[self.key(openid)], args=[now, self.remember, "1" if exhausted else "0"])


def _grant(raw: Any) -> Grant:
    action, count, expires_at, used = raw  # expires_at is a string (see above)
    return Grant(action, None if count < 0 else int(count), float(expires_at), int(used))


# -- replies to WeChat's retries ----------------------------------------------------------------------------

# A push's key holds "P<lease end, ms of Redis's clock>|<owner>" while it is handled, "D<reply>" once answered.
# Leases are judged by Redis's clock, so hosts whose clocks differ agree on them.
_NOW_MS = """
if redis.replicate_commands then redis.replicate_commands() end  -- Redis < 7: TIME before writes
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function lease_of(ms, owner) return 'P' .. string.format('%.0f', now_ms + ms) .. '|' .. owner end
local function lease_end(value) return tonumber(string.sub(value, 2, string.find(value, '|', 1, true) - 1)) end
local function owner_of(value) return string.sub(value, string.find(value, '|', 1, true) + 1) end
"""
# KEYS: the push, the sender's window, the query binding. ARGV: owner, lease ms, ttl ms, record the grant
# ("1"/"0"), the grant's four arguments (see RedisWindowStore.grant_args), the body digest ("" = no binding),
# the binding's ttl ms. Answers {"C"} conflict, {"D", reply}, {"P"} pending, {"T"} taken over, {"N"} new.
_ACQUIRE = _WINDOW + _NOW_MS + """
if ARGV[9] ~= '' then
  local bound = redis.call('GET', KEYS[3])
  if not bound then redis.call('SET', KEYS[3], ARGV[9], 'PX', ARGV[10])
  elseif bound ~= ARGV[9] then return {'C'} end
end
local value = redis.call('GET', KEYS[1])
if value then
  if string.sub(value, 1, 1) == 'D' then return {'D', string.sub(value, 2)} end
  if lease_end(value) > now_ms then return {'P'} end
  redis.call('SET', KEYS[1], lease_of(tonumber(ARGV[2]), ARGV[1]), 'KEEPTTL')
  return {'T'}
end
redis.call('SET', KEYS[1], lease_of(tonumber(ARGV[2]), ARGV[1]), 'PX', ARGV[3])
if ARGV[4] == '1' then
  add_grant(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]))
end
return {'N'}
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
if lease_end(value) > now_ms then return {'P'} end
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

    A claim is one script that also checks the push's query binding and records
    its sender's send rights in ``window`` (a :class:`RedisWindowStore` on the
    same Redis and prefix). Claims are leases owned by this process: a thread
    renews them while their handlers run, so a worker that dies holds its pushes
    no longer than a lease. Waiting polls every ``poll`` seconds (a retry waits
    at most a few seconds, rarely). ``prefix``: see :func:`scope_of`.
    """

    def __init__(self, redis: Any, prefix: str = "kf:", poll: float = 0.02,
                 window: Optional[RedisWindowStore] = None):
        self.redis = redis
        self.prefix = prefix
        self.poll = poll
        self.window: Optional[RedisWindowStore] = window
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._peek = redis.register_script(_PEEK)
        self._write_back = redis.register_script(_WRITE_BACK)
        self._leases = _LeaseKeeper(self)

    def key(self, key: str) -> str:
        return f"{self.prefix}push:{key}"

    @property
    def owner(self) -> str:
        """Who this process is in the leases it holds (host, pid and a random part)."""
        return self._leases.current_owner()

    def acquire(self, push: PushClaim) -> Claim:
        grant_args: List[Any] = ["0", "", "", "", ""]
        window_key = self.key(push.key)
        if push.grant is not None and self.window is not None:
            openid, grant = push.grant
            window_key = self.window.key(openid)
            grant_args = ["1", *self.window.grant_args(grant, push.now)]
        query, digest = push.binding if push.binding is not None else ("", "")
        answer = self._acquire(
            keys=[self.key(push.key), window_key, f"{self.prefix}query:{query}"],
            args=[self.owner, _ms(push.lease), _ms(push.ttl), *grant_args, digest, _ms(push.binding_ttl)])
        state = answer[0]
        if state in (b"N", b"T"):
            self._leases.hold(push.key, push.lease, push.ttl)
            return Claim(Outcome.CLAIMED, granted=state == b"T" or grant_args[0] == "1")
        if state == b"D":
            return Claim(Outcome.DONE, answer[1].decode("utf-8"))
        return Claim(Outcome.CONFLICT if state == b"C" else Outcome.PENDING)

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

    def current_owner(self) -> str:
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


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
