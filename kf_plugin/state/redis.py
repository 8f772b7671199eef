"""Redis implementations of the storage interfaces, shared by every worker and host.

Every key starts with ``prefix`` (several accounts can share one Redis) and
has a time to live. Changes that must not interleave run as Lua scripts.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, List, Optional, Tuple

from .base import (
    MAX_GRANTS_PER_USER,
    Grant,
    ReplayStore,
    Token,
    TokenStore,
    WindowRecord,
    WindowStore,
)
from .writebehind import WriteBehind

__all__ = ["RedisReplayStore", "RedisWindowStore", "RedisTokenStore"]

_PENDING = b"P"
_DONE = b"D"

_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# A user's grants: a JSON list of [action, count (-1: no limit), "expires_at", used]. The time travels
# as a string: cjson writes numbers with 14 significant digits, which would round it.
# Every script drops expired grants, then keeps the key until its last grant ends
# (or ARGV[2] seconds for a user with none, so a refusal is remembered).
_LOAD = """
local now = tonumber(ARGV[1])
local grants = {}
local raw = redis.call('GET', KEYS[1])
if raw then
  for _, g in ipairs(cjson.decode(raw)) do
    if tonumber(g[3]) > now then table.insert(grants, g) end
  end
end
"""
_SAVE = """
local last = now + tonumber(ARGV[2])
for _, g in ipairs(grants) do if tonumber(g[3]) > last then last = tonumber(g[3]) end end
if #grants == 0 then redis.call('SET', KEYS[1], '[]')
else redis.call('SET', KEYS[1], cjson.encode(grants)) end
redis.call('PEXPIRE', KEYS[1], math.ceil((last - now) * 1000))
"""
_ADD = _LOAD + """
table.insert(grants, cjson.decode(ARGV[3]))
while #grants > tonumber(ARGV[4]) do  -- drop the grant that expires first
  local first = 1
  for i, g in ipairs(grants) do if tonumber(g[3]) < tonumber(grants[first][3]) then first = i end end
  table.remove(grants, first)
end
""" + _SAVE
_CONSUME = _LOAD + """
local best = nil
for i, g in ipairs(grants) do
  if (g[2] < 0 or g[4] < g[2]) and (best == nil or tonumber(g[3]) < tonumber(grants[best][3])) then best = i end
end
if best == nil then return nil end
grants[best][4] = grants[best][4] + 1
local used = cjson.encode(grants[best])
""" + _SAVE + """
return used
"""
_REVOKE = _LOAD + """
local kept = {}
if ARGV[3] == '1' then
  for _, g in ipairs(grants) do
    if g[2] >= 0 then g[4] = g[2]; table.insert(kept, g) end
  end
end
grants = kept
""" + _SAVE


class RedisReplayStore(ReplayStore):
    """A :class:`ReplayStore` on Redis: ``SET NX`` claims, so only one worker anywhere runs a push.

    Waiting polls every ``poll`` seconds (a retry waits at most a few seconds, rarely).
    """

    def __init__(self, redis: Any, prefix: str = "kf:", poll: float = 0.02, writer: Optional[WriteBehind] = None):
        self.redis = redis
        self.prefix = prefix
        self.poll = poll
        self.writer = writer
        # Forget a pending claim only if it is still pending (the first delivery failed).
        self._release = redis.register_script(_COMPARE_AND_DELETE)

    def _key(self, key: str) -> str:
        return f"{self.prefix}push:{key}"

    def claim(self, key: str, ttl: float) -> bool:
        """See :meth:`ReplayStore.claim`; with a ``writer``, the writes it holds go in the same round trip."""
        command = ("SET", self._key(key), _PENDING, "NX", "PX", _ms(ttl))
        return bool(self.writer.call(command) if self.writer is not None else self.redis.execute_command(*command))

    def complete(self, key: str, reply: str, ttl: float) -> None:
        self.redis.execute_command(*self.complete_command(key, reply, ttl))

    def complete_command(self, key: str, reply: str, ttl: float) -> Tuple[Any, ...]:
        """The Redis command that does :meth:`complete`."""
        return ("SET", self._key(key), _DONE + reply.encode("utf-8"), "PX", _ms(ttl))

    def release(self, key: str) -> None:
        self._release(keys=[self._key(key)], args=[_PENDING])

    def wait(self, key: str, timeout: float) -> Optional[str]:
        deadline = time.monotonic() + timeout
        while True:
            value = self.redis.get(self._key(key))
            if value is None:
                return None
            if value.startswith(_DONE):
                return value[len(_DONE):].decode("utf-8")
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))


class RedisWindowStore(WindowStore):
    """A :class:`WindowStore` on Redis; every change is one Lua script, so concurrent sends never overspend.

    ``remember``: seconds a user whose rights are all gone stays known.
    """

    def __init__(self, redis: Any, prefix: str = "kf:", remember: float = 48 * 3600.0):
        self.redis = redis
        self.prefix = prefix
        self.remember = remember
        self._add = redis.register_script(_ADD)
        self._consume = redis.register_script(_CONSUME)
        self._revoke = redis.register_script(_REVOKE)

    def _key(self, openid: str) -> str:
        return f"{self.prefix}window:{openid}"

    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        raw = self.redis.get(self._key(openid))
        if raw is None:
            return None
        return WindowRecord(tuple(g for g in map(_grant, json.loads(raw)) if g.expires_at > now))

    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        self._add(keys=[self._key(openid)], args=self._grant_args(grant, now))

    def add_grant_command(self, openid: str, grant: Grant, now: float) -> Tuple[Any, ...]:
        """The Redis command that does :meth:`add_grant` (the script travels with it)."""
        return ("EVAL", _ADD, 1, self._key(openid), *self._grant_args(grant, now))

    def _grant_args(self, grant: Grant, now: float) -> List[Any]:
        encoded = json.dumps([grant.action, -1 if grant.count is None else grant.count, repr(grant.expires_at),
                              grant.used])
        return [repr(now), self.remember, encoded, MAX_GRANTS_PER_USER]

    def consume(self, openid: str, now: float) -> Optional[Grant]:
        used = self._consume(keys=[self._key(openid)], args=[now, self.remember])
        return _grant(json.loads(used)) if used is not None else None

    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        self._revoke(keys=[self._key(openid)], args=[now, self.remember, "1" if exhausted else "0"])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _grant(raw: Any) -> Grant:
    action, count, expires_at, used = raw  # expires_at is a string (see above)
    return Grant(action, None if count < 0 else int(count), float(expires_at), int(used))

# A lease is "owner|expires_at" (by the store's clock); PX only cleans up after the holder is long gone.
_ACQUIRE = """
local lease = redis.call('GET', KEYS[1])
if lease then
  local sep = string.find(lease, '|[^|]*$')  -- the last "|": an owner may contain one
  if string.sub(lease, 1, sep - 1) ~= ARGV[1] and tonumber(string.sub(lease, sep + 1)) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[4], 'PX', ARGV[2])
return 1
"""
_RELEASE_LEASE = """
local lease = redis.call('GET', KEYS[1])
if lease and string.sub(lease, 1, string.find(lease, '|[^|]*$') - 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Drop the token (and our note of its expiry) only if it is still the one that failed.
_INVALIDATE_TOKEN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
"""
_COUNT = """
local value = redis.call('INCR', KEYS[1])
if value == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
"""


class RedisTokenStore(TokenStore):
    """A :class:`TokenStore` on Redis, readable by wechatpy.

    The token is stored exactly as wechatpy's ``RedisStorage(redis, prefix=session_prefix)``
    stores it — key ``{session_prefix}:{appid}_access_token``, JSON-encoded, expiring
    with the token — so a plain ``WeChatClient`` with that storage uses the token
    kept fresh here and never fetches its own. Its expiry (by ``clock``), the leases and
    the counters live under ``{prefix}{appid}:``.
    """

    def __init__(self, redis: Any, appid: str, prefix: str = "kf:", session_prefix: str = "wechatpy",
                 clock: Callable[[], float] = time.time):
        self.redis = redis
        self.key = f"{session_prefix}:{appid}_access_token"
        self.prefix = f"{prefix}{appid}:"
        self.expiry_key = self.prefix + "token-expires-at"
        self.clock = clock
        self._invalidate = redis.register_script(_INVALIDATE_TOKEN)
        self._acquire = redis.register_script(_ACQUIRE)
        self._release_lease = redis.register_script(_RELEASE_LEASE)
        self._count = redis.register_script(_COUNT)

    def get(self) -> Optional[Token]:
        raw, note = self.redis.mget(self.key, self.expiry_key)
        if raw is None:
            return None
        value = json.loads(raw)
        if note is not None:
            noted_value, expires_at = json.loads(note)
            if noted_value == value:
                return Token(value, expires_at)
        # Stored by someone else (a plain WeChatClient): the key's TTL is all we know.
        return Token(value, self.clock() + max(self.redis.pttl(self.key), 0) / 1000)

    def put(self, token: Token, now: float) -> None:
        ttl = max(1, int((token.expires_at - now) * 1000))
        pipe = self.redis.pipeline()
        pipe.set(self.key, json.dumps(token.value), px=ttl)
        pipe.set(self.expiry_key, json.dumps([token.value, token.expires_at]), px=ttl)
        pipe.execute()

    def invalidate(self, value: str) -> bool:
        return bool(self._invalidate(keys=[self.key, self.expiry_key], args=[json.dumps(value)]))

    def acquire(self, name: str, owner: str, ttl: float) -> bool:
        now = self.clock()
        return bool(self._acquire(keys=[self.prefix + name],
                                  args=[owner, max(1, int(ttl * 1000)), repr(now), repr(now + ttl)]))

    def release(self, name: str, owner: str) -> None:
        self._release_lease(keys=[self.prefix + name], args=[owner])

    def holder(self, name: str) -> Optional[str]:
        lease = self.redis.get(self.prefix + name)
        if lease is None:
            return None
        owner, _, expires_at = lease.decode("utf-8").rpartition("|")
        return owner if float(expires_at) > self.clock() else None

    def count(self, name: str, ttl: float) -> int:
        return int(self._count(keys=[self.prefix + name], args=[max(1, int(ttl * 1000))]))
